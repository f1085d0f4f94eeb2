//! How ZooKeeper errors become [`RegistryError`]s, in one place.

use registry_api::RegistryError;
use zookeeper_client as zk;

/// The backend's type name, in configuration and in errors.
pub(crate) const BACKEND: &str = "zookeeper";

/// Converts an error of an operation on `path`.
///
/// Connection loss is transient ([`RegistryError::NotConnected`]); an expired or moved session is
/// [`RegistryError::SessionLost`]; a node whose ACL shuts this client out names the digest setting.
pub(crate) fn from_zk(error: zk::Error, path: &str) -> RegistryError {
    match error {
        zk::Error::ConnectionLoss => RegistryError::NotConnected { backend: BACKEND },
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
        let no_auth = from_zk(zk::Error::NoAuth, "/a").to_string();
        assert!(no_auth.contains("registry.zookeeper.digest"), "{no_auth}");
    }
}
