//! etcd errors as [`RegistryError`]s: connection trouble is transient, the rest is not.

use registry_api::RegistryError;

/// The backend's type name.
pub(crate) const BACKEND: &str = "etcd";

/// gRPC codes that pass by themselves: cancelled, deadline exceeded, resource exhausted,
/// aborted, unavailable.
const TRANSIENT_CODES: [i32; 5] = [1, 4, 8, 10, 14];

pub(crate) fn registry_error(error: etcd_client::Error) -> RegistryError {
    let transient = match &error {
        etcd_client::Error::GRpcStatus(status) => {
            TRANSIENT_CODES.contains(&i32::from(status.code()))
        }
        etcd_client::Error::TransportError(_)
        | etcd_client::Error::IoError(_)
        | etcd_client::Error::WatchError(_)
        | etcd_client::Error::LeaseKeepAliveError(_) => true,
        _ => false,
    };
    let message = error.to_string();
    if transient {
        RegistryError::Transient {
            backend: BACKEND,
            message,
        }
    } else {
        RegistryError::Backend {
            backend: BACKEND,
            message,
        }
    }
}
