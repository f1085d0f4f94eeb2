//! Database URLs without their passwords, for logs and error messages.

/// `url` with the password of its user info replaced by `***`
/// (`mysql://root:secret@h/db` → `mysql://root:***@h/db`); a URL without one is returned as it
/// is. The console uses it for every database URL it prints.
#[must_use]
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    // The last `@` ends the user info: a password may contain `@` itself.
    let Some((credentials, host)) = rest.rsplit_once('@') else {
        return url.to_owned();
    };
    match credentials.split_once(':') {
        Some((user, _password)) => format!("{scheme}://{user}:***@{host}"),
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
        assert_eq!(
            redact_url("sqlite://data/console.db"),
            "sqlite://data/console.db"
        );
    }
}
