//! Registry paths: `/`-separated, absolute, matched on segment boundaries.
//!
//! A valid path starts with `/`, has no empty, `.` or `..` segments, no trailing `/` (except the
//! root `/` itself) and no NUL or control characters. These are ZooKeeper's rules, applied to every
//! backend so that code written against one backend works on all of them.

use crate::error::{RegistryError, Result};

/// The root path.
pub const ROOT: &str = "/";

/// Checks that `path` is a valid registry path.
///
/// # Notable errors
/// [`RegistryError::InvalidPath`] naming the rule that was broken.
pub fn validate(path: &str) -> Result<()> {
    let invalid = |reason: &str| {
        Err(RegistryError::InvalidPath {
            path: path.to_owned(),
            reason: reason.to_owned(),
        })
    };
    if !path.starts_with('/') {
        return invalid("must start with '/'");
    }
    if path == ROOT {
        return Ok(());
    }
    if path.ends_with('/') {
        return invalid("must not end with '/'");
    }
    if path.chars().any(char::is_control) {
        return invalid("must not contain control characters");
    }
    for segment in path[1..].split('/') {
        match segment {
            "" => return invalid("must not contain empty segments ('//')"),
            "." | ".." => return invalid("must not contain '.' or '..' segments"),
            _ => {}
        }
    }
    Ok(())
}

/// Checks that `path` is valid and not the root: the root cannot hold a value or be deleted.
pub fn validate_key(path: &str) -> Result<()> {
    validate(path)?;
    if path == ROOT {
        return Err(RegistryError::InvalidPath {
            path: path.to_owned(),
            reason: "the root cannot hold a value or be deleted".to_owned(),
        });
    }
    Ok(())
}

/// Whether `path` is `prefix` itself or lies below it, on segment boundaries:
/// `/nodes/a` covers `/nodes/a/x` but not `/nodes/ab`.
pub fn is_within(prefix: &str, path: &str) -> bool {
    if prefix == ROOT {
        return path.starts_with('/');
    }
    match path.strip_prefix(prefix) {
        Some("") => true,
        Some(rest) => rest.starts_with('/'),
        None => false,
    }
}

/// The name of the direct child of `parent` on the way to `path`, if `path` lies strictly below
/// `parent`: `child_of("/a", "/a/b/c") == Some("b")`. This is how implied parents become children.
pub fn child_of<'p>(parent: &str, path: &'p str) -> Option<&'p str> {
    let rest = if parent == ROOT {
        path.strip_prefix('/')?
    } else {
        path.strip_prefix(parent)?.strip_prefix('/')?
    };
    let name = rest.split('/').next()?;
    (!name.is_empty()).then_some(name)
}

/// The parent of `path`, or `None` for the root.
pub fn parent(path: &str) -> Option<&str> {
    if path == ROOT {
        return None;
    }
    match path.rfind('/') {
        Some(0) => Some(ROOT),
        Some(i) => Some(&path[..i]),
        None => None,
    }
}

/// `parent` joined with one more segment.
pub fn join(parent: &str, name: &str) -> String {
    if parent == ROOT {
        format!("/{name}")
    } else {
        format!("{parent}/{name}")
    }
}

/// Every proper ancestor of `path` from the top down, excluding the root:
/// `ancestors("/a/b/c")` yields `/a`, `/a/b`. Backends that store real parent nodes create these.
pub fn ancestors(path: &str) -> impl Iterator<Item = &str> {
    path.match_indices('/')
        .map(|(i, _)| i)
        .filter(|&i| i > 0)
        .map(move |i| &path[..i])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validate_accepts_plain_paths_and_rejects_the_rest() {
        for good in [
            "/",
            "/a",
            "/a/b",
            "/nodes/console/127.0.0.1:10000",
            "/a-b_c.d",
        ] {
            assert_eq!(validate(good), Ok(()), "{good}");
        }
        for bad in [
            "", "a", "/a/", "//a", "/a//b", "/./a", "/a/..", "/a\0b", "/a\nb",
        ] {
            assert!(validate(bad).is_err(), "{bad:?} should be rejected");
        }
        assert!(validate_key("/").is_err());
    }

    #[test]
    fn within_respects_segment_boundaries() {
        assert!(is_within("/a", "/a"));
        assert!(is_within("/a", "/a/b"));
        assert!(!is_within("/a", "/ab"));
        assert!(!is_within("/a/b", "/a"));
        assert!(is_within("/", "/anything"));
    }

    #[test]
    fn child_of_names_direct_and_implied_children() {
        assert_eq!(child_of("/a", "/a/b"), Some("b"));
        assert_eq!(child_of("/a", "/a/b/c"), Some("b"));
        assert_eq!(child_of("/", "/a/b"), Some("a"));
        assert_eq!(child_of("/a", "/a"), None);
        assert_eq!(child_of("/a", "/ab/c"), None);
    }

    #[test]
    fn parent_join_and_ancestors() {
        assert_eq!(parent("/a/b"), Some("/a"));
        assert_eq!(parent("/a"), Some("/"));
        assert_eq!(parent("/"), None);
        assert_eq!(join("/", "a"), "/a");
        assert_eq!(join("/a", "b"), "/a/b");
        assert_eq!(ancestors("/a/b/c").collect::<Vec<_>>(), ["/a", "/a/b"]);
        assert_eq!(ancestors("/a").count(), 0);
    }
}
