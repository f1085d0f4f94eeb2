//! The spec of a `flink` app (issue 13): `{"jar", "entry_class", "args", "parallelism",
//! "rest_url"}`, checked at create so that a mistake is a 400 naming the field, not a failed
//! start later.

use std::num::NonZeroU32;
use std::path::PathBuf;

use serde::Deserialize;
use serde_json::Value;

use crate::executor::ExecutorError;

/// A parsed, checked `flink` spec.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlinkSpec {
    /// The job's jar: an absolute path this node can read; uploaded to Flink once per content.
    pub jar: PathBuf,
    /// The class with `main`; missing: the jar's `Main-Class`.
    #[serde(default)]
    pub entry_class: Option<String>,
    /// The program's arguments.
    #[serde(default)]
    pub args: Vec<String>,
    /// Missing: the cluster's `parallelism.default`.
    #[serde(default)]
    pub parallelism: Option<NonZeroU32>,
    /// Another session cluster than `executors.flink.rest_url` for this app.
    #[serde(default)]
    pub rest_url: Option<String>,
}

impl FlinkSpec {
    /// Parses and checks `spec`.
    ///
    /// # Notable errors
    /// [`ExecutorError::InvalidSpec`] naming the field: an unknown field, a relative or
    /// unreadable `jar`, an `entry_class` that is not a Java class name, `parallelism` 0, a
    /// `rest_url` that is not an http(s) URL.
    pub fn parse(spec: &Value) -> Result<Self, ExecutorError> {
        // The path names the field a type error is in (`spec.parallelism: invalid value ...`);
        // unknown and missing fields are named by serde's own message.
        let spec: Self = serde_path_to_error::deserialize(spec.clone()).map_err(|error| {
            let path = error.path().to_string();
            let at = if path == "." {
                String::new()
            } else {
                format!(".{path}")
            };
            invalid(format!("spec{at}: {}", error.into_inner()))
        })?;
        if !spec.jar.is_absolute() {
            return Err(invalid(format!(
                "spec.jar must be an absolute path, got {:?}",
                spec.jar
            )));
        }
        match std::fs::metadata(&spec.jar) {
            Ok(meta) if meta.is_file() => {}
            Ok(_) => return Err(invalid(format!("spec.jar {:?} is not a file", spec.jar))),
            Err(error) => {
                return Err(invalid(format!(
                    "spec.jar {:?} cannot be read: {error}",
                    spec.jar
                )));
            }
        }
        if let Some(class) = &spec.entry_class {
            let valid = !class.is_empty()
                && class.len() <= 1024
                && class
                    .chars()
                    .all(|c| c.is_alphanumeric() || "._$".contains(c));
            if !valid {
                return Err(invalid(format!(
                    "spec.entry_class {class:?} is not a Java class name"
                )));
            }
        }
        if spec.args.iter().any(|arg| arg.contains('\0')) {
            return Err(invalid("spec.args must not contain NUL characters"));
        }
        if let Some(url) = &spec.rest_url {
            let parsed = reqwest::Url::parse(url)
                .map_err(|error| invalid(format!("spec.rest_url {url:?}: {error}")))?;
            if !matches!(parsed.scheme(), "http" | "https") || parsed.host().is_none() {
                return Err(invalid(format!(
                    "spec.rest_url {url:?} must be an http:// or https:// URL with a host"
                )));
            }
        }
        Ok(spec)
    }
}

fn invalid(reason: impl Into<String>) -> ExecutorError {
    ExecutorError::InvalidSpec {
        reason: reason.into(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn every_field_is_checked_and_named() {
        let jar = tempfile::NamedTempFile::new().unwrap();
        let path = jar.path().display().to_string();
        let ok = FlinkSpec::parse(
            &json!({"jar": path, "entry_class": "a.B$C", "args": ["--x", "1"], "parallelism": 2}),
        )
        .unwrap();
        assert_eq!(ok.parallelism.map(NonZeroU32::get), Some(2));
        for (spec, field) in [
            (json!({"jar": "relative.jar"}), "spec.jar"),
            (json!({"jar": "/nonexistent/x.jar"}), "spec.jar"),
            (json!({"jar": "/tmp"}), "spec.jar"),
            (
                json!({"jar": path, "entry_class": "a b"}),
                "spec.entry_class",
            ),
            (json!({"jar": path, "parallelism": 0}), "spec.parallelism"),
            (json!({"jar": path, "rest_url": "ftp://x"}), "spec.rest_url"),
            (json!({"jar": path, "args": "--x"}), "spec.args"),
            (json!({"jar": path, "args": ["a", 1]}), "spec.args[1]"),
            (json!({"jar": path, "command": ["x"]}), "`command`"),
            (json!({}), "`jar`"),
        ] {
            let error = FlinkSpec::parse(&spec).expect_err(&spec.to_string());
            assert!(error.to_string().contains(field), "{spec}: {error}");
        }
    }
}
