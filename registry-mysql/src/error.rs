//! How database failures become registry errors, and which of them cost the connection.

use registry_api::RegistryError;
use sqlx::mysql::MySqlDatabaseError;

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
}

impl From<sqlx::Error> for OpError {
    fn from(error: sqlx::Error) -> Self {
        Self::Sql(error)
    }
}

/// MySQL/MariaDB error numbers that mean the connection (not the statement) is gone.
const CONNECTION_GONE: &[u16] = &[
    1053, // ER_SERVER_SHUTDOWN
    1077, // ER_NORMAL_SHUTDOWN
    1152, // ER_ABORTING_CONNECTION
    1317, // ER_QUERY_INTERRUPTED
    1927, // ER_CONNECTION_KILLED (MariaDB)
    2006, // CR_SERVER_GONE_ERROR
    2013, // CR_SERVER_LOST
    3169, // ER_SESSION_WAS_KILLED (MySQL)
];

/// Deadlock (1213) and lock wait timeout (1205): the transaction was rolled back; retry it.
const RETRYABLE: &[u16] = &[1205, 1213];

/// ER_DUP_ENTRY.
pub(crate) const DUPLICATE_KEY: u16 = 1062;

/// The MySQL error number of a server-side error.
pub(crate) fn error_number(error: &sqlx::Error) -> Option<u16> {
    match error {
        sqlx::Error::Database(db) => db
            .try_downcast_ref::<MySqlDatabaseError>()
            .map(MySqlDatabaseError::number),
        _ => None,
    }
}

impl OpError {
    /// Whether the connection must be thrown away: its state is unknown or it is broken.
    pub(crate) fn costs_connection(&self) -> bool {
        match self {
            Self::Sql(sqlx::Error::Database(_)) => self
                .sql_number()
                .is_some_and(|n| CONNECTION_GONE.contains(&n)),
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
            Self::TimedOut => true,
            Self::Busy | Self::Contended | Self::Refused(_) => false,
        }
    }

    /// Whether running the whole operation again may succeed at once.
    pub(crate) fn is_retryable(&self) -> bool {
        match self {
            Self::Contended => true,
            Self::Sql(_) => self.sql_number().is_some_and(|n| RETRYABLE.contains(&n)),
            _ => false,
        }
    }

    /// Whether the server answered with an error (as opposed to not answering at all).
    pub(crate) fn is_server_answer(&self) -> bool {
        matches!(self, Self::Sql(sqlx::Error::Database(_))) && !self.costs_connection()
    }

    fn sql_number(&self) -> Option<u16> {
        match self {
            Self::Sql(error) => error_number(error),
            _ => None,
        }
    }

    /// The registry error a caller sees; `doing` says what was attempted.
    pub(crate) fn into_registry(self, doing: &str) -> RegistryError {
        match self {
            Self::Refused(error) => error,
            Self::Sql(error) => RegistryError::Backend {
                backend: BACKEND,
                message: format!("{doing}: {error}"),
            },
            Self::TimedOut => RegistryError::Backend {
                backend: BACKEND,
                message: format!(
                    "{doing}: the database did not answer in time; the connection was dropped and the outcome is unknown"
                ),
            },
            Self::Busy => RegistryError::Backend {
                backend: BACKEND,
                message: format!("{doing}: the client's connection stayed busy for too long"),
            },
            Self::Contended => RegistryError::Backend {
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
            Self::TimedOut => f.write_str("timed out"),
            Self::Busy => f.write_str("connection busy"),
            Self::Contended => f.write_str("contended"),
            Self::Refused(error) => error.fmt(f),
        }
    }
}
