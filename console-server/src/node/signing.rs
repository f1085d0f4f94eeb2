//! The cluster credential of node-to-node calls (`/internal/*`): each request is signed with
//! HMAC-SHA256 under a key every node of the cluster holds, and the receiver checks the signature.
//!
//! # Why a signature, not a shared bearer secret
//! A node calls whatever address a registry entry names. A bearer secret would go to that address
//! in clear, so anyone who can write one registry entry could collect it. A signature proves
//! knowledge of the key without sending it: the key never leaves the node.
//!
//! # What is signed
//! `v1`, the method, the path with its query, the sender's node id, the time (milliseconds since
//! the Unix epoch) and the body, each separated by a newline. The header is
//! `x-console-signature: v1 <time> <sender> <hex MAC>`.
//!
//! # Replay
//! A signature is accepted within [`MAX_SKEW`] of the receiver's clock. There is no nonce cache:
//! every internal call is a hint that at most makes the receiver read its database or registry
//! sooner (a wake-up, a departure notice), so replaying one within the window costs a read and
//! changes nothing.
//!
//! # Where the key comes from
//! `cluster.secret` when configured (the same on every node), else a random key drawn once and
//! kept in the task database ([`task_dispatch::ClusterSettings::node_key`]): every node already
//! has full access to that database, so this trusts nobody new and needs no configuration.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use registry_api::Secret;
use sha2::{Digest, Sha256};

/// The header that carries a node-to-node call's signature.
pub const SIGNATURE_HEADER: &str = "x-console-signature";

/// How far a signature's time may be from the receiver's clock.
pub const MAX_SKEW: Duration = Duration::from_secs(60);

const VERSION: &str = "v1";

/// The key that signs and checks node-to-node calls. Cheap to clone; prints as `***`.
#[derive(Clone)]
pub struct NodeKey(Arc<[u8; 32]>);

impl fmt::Debug for NodeKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("NodeKey(***)")
    }
}

/// Why a signature was refused; the message is safe to answer with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("node-to-node calls need an {SIGNATURE_HEADER} header")]
    Missing,
    #[error("the {SIGNATURE_HEADER} header is malformed")]
    Malformed,
    #[error("the signature's time is more than {}s from this node's clock", MAX_SKEW.as_secs())]
    Stale,
    #[error("the signature does not match: the caller does not hold this cluster's key")]
    Mismatch,
}

impl NodeKey {
    /// The key of this cluster: derived from `cluster.secret` when it is set, else `shared_hex`,
    /// the key kept in the task database.
    pub fn new(configured: &Secret, shared_hex: &str) -> Self {
        let mut key = [0u8; 32];
        if configured.is_empty() {
            // A key this node drew itself (64 hex digits); anything else is hashed like a secret.
            match decode_hex(shared_hex) {
                Some(bytes) if bytes.len() == key.len() => key.copy_from_slice(&bytes),
                _ => key.copy_from_slice(&Sha256::digest(shared_hex.as_bytes())),
            }
        } else {
            let mut hasher = Sha256::new();
            hasher.update(b"console-server node key\n");
            hasher.update(configured.expose().as_bytes());
            key.copy_from_slice(&hasher.finalize());
        }
        Self(Arc::new(key))
    }

    /// The header value that signs a request from `sender` at `now_ms`.
    pub fn sign(&self, method: &str, path: &str, body: &[u8], sender: &str, now_ms: i64) -> String {
        let mac = self.mac(method, path, body, sender, now_ms).finalize();
        format!(
            "{VERSION} {now_ms} {sender} {}",
            encode_hex(&mac.into_bytes())
        )
    }

    /// Checks `header` for a request; returns the sender's node id.
    ///
    /// # Notable errors
    /// A [`SignatureError`] saying why; the MAC is compared in constant time.
    pub fn verify<'h>(
        &self,
        header: Option<&'h str>,
        method: &str,
        path: &str,
        body: &[u8],
        now_ms: i64,
    ) -> Result<&'h str, SignatureError> {
        let header = header.ok_or(SignatureError::Missing)?;
        let mut fields = header.split(' ');
        let (Some(VERSION), Some(time), Some(sender), Some(mac), None) = (
            fields.next(),
            fields.next(),
            fields.next(),
            fields.next(),
            fields.next(),
        ) else {
            return Err(SignatureError::Malformed);
        };
        let time: i64 = time.parse().map_err(|_| SignatureError::Malformed)?;
        let mac = decode_hex(mac).ok_or(SignatureError::Malformed)?;
        let skew = now_ms.abs_diff(time);
        if skew > u64::try_from(MAX_SKEW.as_millis()).unwrap_or(u64::MAX) {
            return Err(SignatureError::Stale);
        }
        self.mac(method, path, body, sender, time)
            .verify_slice(&mac)
            .map_err(|_| SignatureError::Mismatch)?;
        Ok(sender)
    }

    fn mac(&self, method: &str, path: &str, body: &[u8], sender: &str, time: i64) -> Hmac<Sha256> {
        let mut mac = match <Hmac<Sha256> as KeyInit>::new_from_slice(&*self.0) {
            Ok(mac) => mac,
            Err(_) => unreachable!("HMAC takes a key of any length"),
        };
        for part in [VERSION, method, path, sender, &time.to_string()] {
            mac.update(part.as_bytes());
            mac.update(b"\n");
        }
        mac.update(body);
        mac
    }
}

fn encode_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000_000;

    fn key(secret: &str) -> NodeKey {
        NodeKey::new(&Secret::new(secret), &"ab".repeat(32))
    }

    #[test]
    fn a_signed_request_verifies_and_names_its_sender() {
        let key = key("");
        let header = key.sign("POST", "/internal/v1/wake", b"{}", "n1", NOW);
        assert_eq!(
            key.verify(
                Some(&header),
                "POST",
                "/internal/v1/wake",
                b"{}",
                NOW + 5_000
            ),
            Ok("n1")
        );
    }

    #[test]
    fn anything_changed_is_refused() {
        let key = key("s3cret");
        let header = key.sign("POST", "/internal/v1/left", b"{\"a\":1}", "n1", NOW);
        let verify = |header: &str, path: &str, body: &[u8], now| {
            key.verify(Some(header), "POST", path, body, now)
                .map(str::to_owned)
        };
        assert_eq!(
            verify(&header, "/internal/v1/wake", b"{\"a\":1}", NOW),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(&header, "/internal/v1/left", b"{\"a\":1}", NOW),
            Ok("n1".to_owned())
        );
        assert_eq!(
            verify(&header, "/internal/v1/left", b"{\"a\":2}", NOW),
            Err(SignatureError::Mismatch)
        );
        let other_sender = header.replace(" n1 ", " n2 ");
        assert_eq!(
            verify(&other_sender, "/internal/v1/left", b"{\"a\":1}", NOW),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(&header, "/internal/v1/left", b"{\"a\":1}", NOW + 61_000),
            Err(SignatureError::Stale)
        );
        assert_eq!(
            key.verify(None, "POST", "/internal/v1/left", b"", NOW),
            Err(SignatureError::Missing)
        );
        assert_eq!(
            verify("v1 x n1 00", "/internal/v1/left", b"", NOW),
            Err(SignatureError::Malformed)
        );
    }

    #[test]
    fn another_clusters_key_does_not_verify() {
        let ours = key("one");
        let header = key("two").sign("POST", "/internal/v1/wake", b"", "n1", NOW);
        assert_eq!(
            ours.verify(Some(&header), "POST", "/internal/v1/wake", b"", NOW),
            Err(SignatureError::Mismatch)
        );
        // The configured secret wins over the database's key.
        let shared = key("");
        let header = shared.sign("POST", "/internal/v1/wake", b"", "n1", NOW);
        assert_eq!(
            ours.verify(Some(&header), "POST", "/internal/v1/wake", b"", NOW),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn the_key_never_prints() {
        assert_eq!(format!("{:?}", key("s3cret")), "NodeKey(***)");
    }
}
