//! Node-to-node signatures made the way `console-server/src/node/signing.rs` documents them
//! (docs/DESIGN.md, "HTTP API"), written out independently so that tests check the contract:
//! `x-console-signature: v1 <ms since epoch> <sender> <hex HMAC-SHA256>` over `v1`, the method,
//! the path, the sender and the time, each followed by a newline, then the body.

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

/// The header the signature goes in.
pub const HEADER: &str = "x-console-signature";

/// The key a cluster configured with `cluster.secret = secret` signs with.
pub fn key_from_secret(secret: &str) -> Vec<u8> {
    let mut hasher = Sha256::new();
    hasher.update(b"console-server node key\n");
    hasher.update(secret.as_bytes());
    hasher.finalize().to_vec()
}

/// The key kept in the task database (`cluster_settings.node_key`, 64 hex digits).
///
/// # Panics
/// When `hex` is not hex.
pub fn key_from_hex(hex: &str) -> Vec<u8> {
    (0..hex.len())
        .step_by(2)
        .map(|i| {
            u8::from_str_radix(&hex[i..i + 2], 16)
                .unwrap_or_else(|error| panic!("node key {hex:?} is not hex: {error}"))
        })
        .collect()
}

/// The header value signing `method path` with `body` from `sender`, now.
pub fn sign(key: &[u8], method: &str, path: &str, body: &[u8], sender: &str) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_millis())
        .to_string();
    let Ok(mut mac) = <Hmac<Sha256> as KeyInit>::new_from_slice(key) else {
        unreachable!("HMAC takes a key of any length")
    };
    for part in ["v1", method, path, sender, &now] {
        mac.update(part.as_bytes());
        mac.update(b"\n");
    }
    mac.update(body);
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    format!("v1 {now} {sender} {hex}")
}
