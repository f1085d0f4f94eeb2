//! Database URLs without their passwords, for logs and error messages.

/// `url` with the password of its user info replaced by `***`
/// (`mysql://root:secret@h/db` → `mysql://root:***@h/db`); a URL without one is returned as it
/// is. The console uses it for every database URL it prints.
/// Everything between the user name and the last `@` counts as the password, whatever it holds
/// (`/`, `:` and `@` included), and a URL without a scheme is read the same way.
#[must_use]
pub fn redact_url(url: &str) -> String {
    let start = url.find("://").map_or(0, |at| at + 3);
    // The last `@` ends the user info: a password may contain `@` itself.
    let Some(at) = url[start..].rfind('@').map(|at| start + at) else {
        return url.to_owned();
    };
    match url[start..at].split_once(':') {
        Some((user, _password)) => format!("{}{user}:***{}", &url[..start], &url[at..]),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_hides_only_the_password() {
        assert_eq!(
            redact_url("mysql://root:secret@h:3306/db"),
            "mysql://root:***@h:3306/db"
        );
        assert_eq!(redact_url("mysql://root@h/db"), "mysql://root@h/db");
        assert_eq!(redact_url("postgres://h/db"), "postgres://h/db");
        assert_eq!(
            redact_url("mysql://u:p@ss@h/db"),
            "mysql://u:***@h/db",
            "a password with '@'"
        );
        for (url, redacted) in [
            ("mysql://u:pa/ss@h/db", "mysql://u:***@h/db"),
            ("mysql://u:a:b/c@d@h:3306/db", "mysql://u:***@h:3306/db"),
            ("u:pa/ss@h/db", "u:***@h/db"),
            ("postgres://u:pa?ss@h/db", "postgres://u:***@h/db"),
        ] {
            assert_eq!(redact_url(url), redacted, "{url}");
        }
        assert_eq!(
            redact_url("sqlite://data/console.db"),
            "sqlite://data/console.db"
        );
    }
}
