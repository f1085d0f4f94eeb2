//! How ZooKeeper errors become [`RegistryError`]s, in one place.

use registry_api::RegistryError;
use zookeeper_client as zk;

/// The backend's type name, in configuration and in errors.
pub(crate) const BACKEND: &str = "zookeeper";

/// Converts an error of an operation on `path`.
///
/// Connection loss is [`RegistryError::NotConnected`]; an expired or moved session is
/// [`RegistryError::SessionLost`]; a request that timed out, was throttled, reached a read-only
/// server or was cut by the client's connection trouble is [`RegistryError::Transient`]; a node whose ACL shuts this client out names the digest
/// setting. Everything else is a [`RegistryError::Backend`] error, which a retry does not fix.
pub(crate) fn from_zk(error: zk::Error, path: &str) -> RegistryError {
    match error {
        zk::Error::ConnectionLoss => RegistryError::NotConnected { backend: BACKEND },
        zk::Error::Timeout | zk::Error::Throttled | zk::Error::NotReadOnly => {
            RegistryError::Transient {
                backend: BACKEND,
                message: format!("{error} (at {path})"),
            }
        }
        // The client's own connection trouble, e.g. "no response from connection in 800ms" for
        // the requests in flight when it gives up on a connection: a retry on the next one can
        // succeed. (Its other custom errors, TLS set-up, arise only when connecting.)
        zk::Error::Custom(_) => RegistryError::Transient {
            backend: BACKEND,
            message: format!("{error} (at {path})"),
        },
        zk::Error::SessionExpired | zk::Error::SessionMoved | zk::Error::ClientClosed => {
            RegistryError::SessionLost { backend: BACKEND }
        }
        zk::Error::NoAuth => RegistryError::Backend {
            backend: BACKEND,
            message: format!(
                "not authorized at {path}: the node's ACL does not admit this client's credentials \
                 (registry.zookeeper.digest)"
            ),
        },
        zk::Error::NoChildrenForEphemerals => RegistryError::InvalidPath {
            path: path.to_owned(),
            reason: "its parent is ephemeral, and ephemeral keys cannot have children".to_owned(),
        },
        zk::Error::BadArguments(reason) => RegistryError::InvalidPath {
            path: path.to_owned(),
            reason: (*reason).to_owned(),
        },
        other => RegistryError::Backend {
            backend: BACKEND,
            message: format!("{other} (at {path})"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transient_and_final_errors_keep_their_meaning() {
        assert!(from_zk(zk::Error::ConnectionLoss, "/a").is_transient());
        assert_eq!(
            from_zk(zk::Error::SessionExpired, "/a"),
            RegistryError::SessionLost { backend: BACKEND }
        );
        assert!(matches!(
            from_zk(zk::Error::NoChildrenForEphemerals, "/a/b"),
            RegistryError::InvalidPath { path, .. } if path == "/a/b"
        ));
        let no_auth = from_zk(zk::Error::NoAuth, "/a");
        assert!(
            !no_auth.is_transient(),
            "a retry does not fix a refused ACL"
        );
        let no_auth = no_auth.to_string();
        assert!(no_auth.contains("registry.zookeeper.digest"), "{no_auth}");
        for passing in [zk::Error::Timeout, zk::Error::Throttled] {
            assert!(from_zk(passing.clone(), "/a").is_transient(), "{passing}");
        }
        for lasting in [zk::Error::BadArguments(&"bad"), zk::Error::Unimplemented] {
            assert!(!from_zk(lasting.clone(), "/a").is_transient(), "{lasting}");
        }
    }
}
