//! How database failures become registry errors, and which of them cost the connection.

use registry_api::RegistryError;
use sqlx::mysql::MySqlDatabaseError;

/// How often a call is retried at once after a deadlock, a lock-wait timeout or a lost
/// optimistic check ([`OpError::is_retryable`]).
pub(crate) const MAX_ATTEMPTS: u32 = 8;

/// The backend's name in errors and configuration.
pub(crate) const BACKEND: &str = "mysql";

/// Why one database operation of the backend did not complete.
#[derive(Debug)]
pub(crate) enum OpError {
    /// The database or the connection to it failed.
    Sql(sqlx::Error),
    /// The operation took longer than allowed; the connection is in an unknown state.
    TimedOut,
    /// Another task of this client held the connection for longer than allowed.
    Busy,
    /// A conditional write matched nothing: somebody changed the row in between. Retry.
    Contended,
    /// The operation was refused for a registry reason (conflict, bad path, session gone).
    Refused(RegistryError),
    /// A statement of a transaction's final packet (sequence numbers, events, `COMMIT`) failed:
    /// the transaction may still be open, holding its locks, so the connection is dropped and
    /// the server rolls it back.
    Unfinished(sqlx::Error),
}

impl From<sqlx::Error> for OpError {
    fn from(error: sqlx::Error) -> Self {
        Self::Sql(error)
    }
}

/// What a MySQL/MariaDB error number means to the backend. [`classify`] is the one place that
/// reads error numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ServerError {
    /// The connection (not the statement) is gone: the server shut down, killed or lost it.
    ConnectionGone,
    /// The transaction was rolled back (deadlock, lock wait timeout): run it again at once.
    RolledBack,
    /// The server is overloaded or the statement ran out of time: try again later.
    Busy,
    /// A unique key refused an insert (`ER_DUP_ENTRY`).
    DuplicateKey,
    /// Anything else (a permission, a missing table or database, a bad statement): a retry does
    /// not fix it.
    Refused,
}

/// Classifies a MySQL/MariaDB error number.
pub(crate) fn classify(number: u16) -> ServerError {
    match number {
        1053 // ER_SERVER_SHUTDOWN
        | 1077 // ER_NORMAL_SHUTDOWN
        | 1152 // ER_ABORTING_CONNECTION
        | 1317 // ER_QUERY_INTERRUPTED
        | 1927 // ER_CONNECTION_KILLED (MariaDB)
        | 2006 // CR_SERVER_GONE_ERROR
        | 2013 // CR_SERVER_LOST
        | 3169 // ER_SESSION_WAS_KILLED (MySQL)
        => ServerError::ConnectionGone,
        1205 // ER_LOCK_WAIT_TIMEOUT
        | 1213 // ER_LOCK_DEADLOCK
        => ServerError::RolledBack,
        1040 // ER_CON_COUNT_ERROR: too many connections
        | 1203 // ER_TOO_MANY_USER_CONNECTIONS
        | 1969 // ER_STATEMENT_TIMEOUT (MariaDB max_statement_time)
        | 3024 // ER_QUERY_TIMEOUT (MySQL max_execution_time)
        => ServerError::Busy,
        1062 => ServerError::DuplicateKey, // ER_DUP_ENTRY
        // 1044/1045/1142 access denied, 1049 unknown database, 1146 no such table, ...
        _ => ServerError::Refused,
    }
}

/// The error number of a server-side error; `None` for errors the server did not send.
pub(crate) fn error_number(error: &sqlx::Error) -> Option<u16> {
    match error {
        sqlx::Error::Database(db) => db
            .try_downcast_ref::<MySqlDatabaseError>()
            .map(MySqlDatabaseError::number),
        _ => None,
    }
}

/// The classification of a server-side error; `None` for errors the server did not send.
pub(crate) fn server_error(error: &sqlx::Error) -> Option<ServerError> {
    error_number(error).map(classify)
}

/// Whether a `SET` named a variable this server does not have (`ER_UNKNOWN_SYSTEM_VARIABLE`:
/// MariaDB-only variables on MySQL).
pub(crate) fn is_unknown_variable(error: &sqlx::Error) -> bool {
    error_number(error) == Some(1193)
}

/// Whether an insert was refused by a unique key.
pub(crate) fn is_duplicate_key(error: &sqlx::Error) -> bool {
    server_error(error) == Some(ServerError::DuplicateKey)
}

impl OpError {
    /// Whether the connection must be thrown away: its state is unknown or it is broken.
    pub(crate) fn costs_connection(&self) -> bool {
        match self {
            Self::Sql(sqlx::Error::Database(_)) => {
                self.server_error() == Some(ServerError::ConnectionGone)
            }
            Self::Sql(error) => matches!(
                error,
                sqlx::Error::Io(_)
                    | sqlx::Error::Tls(_)
                    | sqlx::Error::Protocol(_)
                    | sqlx::Error::PoolTimedOut
                    | sqlx::Error::PoolClosed
                    | sqlx::Error::WorkerCrashed
                    | sqlx::Error::BeginFailed
            ),
            Self::TimedOut | Self::Unfinished(_) => true,
            Self::Busy | Self::Contended | Self::Refused(_) => false,
        }
    }

    /// Whether running the whole operation again may succeed at once.
    pub(crate) fn is_retryable(&self) -> bool {
        match self {
            Self::Contended => true,
            Self::Sql(_) | Self::Unfinished(_) => {
                self.server_error() == Some(ServerError::RolledBack)
            }
            _ => false,
        }
    }

    /// Whether the same operation may succeed later without anyone stepping in: the connection
    /// comes back, the server's load passes, the contention ends. Refusals (bad credentials, no
    /// such database, a schema from the future, a conflict) are not transient.
    pub(crate) fn is_transient(&self) -> bool {
        match self {
            Self::TimedOut | Self::Busy | Self::Contended | Self::Unfinished(_) => true,
            Self::Refused(error) => error.is_transient(),
            Self::Sql(_) if self.costs_connection() => true,
            Self::Sql(_) => matches!(
                self.server_error(),
                Some(ServerError::RolledBack | ServerError::Busy)
            ),
        }
    }

    fn server_error(&self) -> Option<ServerError> {
        match self {
            Self::Sql(error) | Self::Unfinished(error) => server_error(error),
            _ => None,
        }
    }

    /// The registry error a caller sees; `doing` says what was attempted.
    pub(crate) fn into_registry(self, doing: &str) -> RegistryError {
        match self {
            Self::Refused(error) => error,
            Self::Sql(_) if self.is_transient() => RegistryError::Transient {
                backend: BACKEND,
                message: format!("{doing}: {self}"),
            },
            Self::Sql(error) => RegistryError::Backend {
                backend: BACKEND,
                message: format!("{doing}: {error}"),
            },
            Self::Unfinished(error) => RegistryError::Transient {
                backend: BACKEND,
                message: format!(
                    "{doing}: the commit failed half-way ({error}); the connection was dropped, so the server rolls the write back"
                ),
            },
            Self::TimedOut => RegistryError::Transient {
                backend: BACKEND,
                message: format!(
                    "{doing}: the database did not answer in time; the connection was dropped and the outcome is unknown"
                ),
            },
            Self::Busy => RegistryError::Transient {
                backend: BACKEND,
                message: format!("{doing}: the client's connection stayed busy for too long"),
            },
            Self::Contended => RegistryError::Transient {
                backend: BACKEND,
                message: format!("{doing}: the row kept changing under concurrent writers"),
            },
        }
    }
}

impl std::fmt::Display for OpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Sql(error) => error.fmt(f),
            Self::Unfinished(error) => write!(f, "commit failed half-way: {error}"),
            Self::TimedOut => f.write_str("timed out"),
            Self::Busy => f.write_str("connection busy"),
            Self::Contended => f.write_str("contended"),
            Self::Refused(error) => error.fmt(f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_numbers_are_classified_by_what_they_mean_for_a_retry() {
        assert_eq!(classify(2006), ServerError::ConnectionGone);
        assert_eq!(classify(2013), ServerError::ConnectionGone);
        assert_eq!(classify(1205), ServerError::RolledBack);
        assert_eq!(classify(1213), ServerError::RolledBack);
        assert_eq!(classify(1040), ServerError::Busy);
        assert_eq!(classify(1062), ServerError::DuplicateKey);
        for refused in [1044, 1045, 1049, 1142, 1146] {
            assert_eq!(classify(refused), ServerError::Refused, "{refused}");
        }
    }

    #[test]
    fn only_failures_that_pass_become_transient_registry_errors() {
        for passing in [OpError::TimedOut, OpError::Busy, OpError::Contended] {
            let error = passing.into_registry("put /a");
            assert!(error.is_transient(), "{error:?}");
        }
        let io = OpError::Sql(sqlx::Error::Io(std::io::ErrorKind::ConnectionReset.into()));
        assert!(io.costs_connection() && io.is_transient());
        assert!(io.into_registry("get /a").is_transient());
        let refused = OpError::Refused(RegistryError::Conflict {
            path: "/a".to_owned(),
            reason: "held".to_owned(),
        });
        assert!(!refused.is_transient());
        let undecodable = OpError::Sql(sqlx::Error::RowNotFound);
        assert!(!undecodable.is_transient());
        assert!(matches!(
            undecodable.into_registry("get /a"),
            RegistryError::Backend { .. }
        ));
    }
}
