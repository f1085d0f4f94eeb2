//! Facts the nodes of one cluster share through the task database: drawn once, by whichever node
//! comes first, and read by every node after it.
//!
//! Every node already has full access to this database (it is where fencing happens), so a value
//! kept here is known exactly to the nodes of the cluster and to nobody else.

use super::{Store, is_unique_violation, on_pool};
use crate::error::{Error, Result};

/// What [`Store::cluster_settings`] returns.
#[derive(Clone, PartialEq, Eq)]
pub struct ClusterSettings {
    /// A random id of this cluster (32 hex digits), the same on every node and stable for the
    /// life of the database: it tells this cluster's apps from another cluster's on a shared host.
    pub cluster_id: String,
    /// A random 256-bit key (64 hex digits) that signs node-to-node calls when no
    /// `cluster.secret` is configured. Never sent anywhere.
    pub node_key: String,
}

impl std::fmt::Debug for ClusterSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterSettings")
            .field("cluster_id", &self.cluster_id)
            .field("node_key", &"***")
            .finish()
    }
}

impl Store {
    /// The cluster's shared settings, drawn at random the first time any node asks.
    ///
    /// # Notable behaviors
    /// Idempotent and safe under races: two first callers each try to insert their draw, the
    /// database keeps one, and both return the kept one.
    ///
    /// # Notable errors
    /// Database errors; [`Error::InvalidInput`] if the random source of the OS fails.
    pub async fn cluster_settings(&self) -> Result<ClusterSettings> {
        Ok(ClusterSettings {
            cluster_id: self.shared_random("cluster_id", 16).await?,
            node_key: self.shared_random("node_key", 32).await?,
        })
    }

    /// The value of setting `name`, inserting `bytes` random bytes (as hex) if it has none.
    async fn shared_random(&self, name: &str, bytes: usize) -> Result<String> {
        if let Some(value) = self.setting(name).await? {
            return Ok(value);
        }
        let mut draw = vec![0u8; bytes];
        getrandom::fill(&mut draw)
            .map_err(|error| Error::InvalidInput(format!("no randomness from the OS: {error}")))?;
        let value: String = draw.iter().map(|byte| format!("{byte:02x}")).collect();
        let inserted = on_pool!(self, db => {
            sqlx::query("INSERT INTO cluster_settings (name, value) VALUES (?, ?)")
                .bind(name)
                .bind(&value)
                .execute(db)
                .await
                .map(|_| ())
        });
        match inserted {
            Ok(_) => Ok(value),
            // Another node drew first: its value is the cluster's.
            Err(error) if is_unique_violation(&error) => self
                .setting(name)
                .await?
                .ok_or_else(|| Error::InvalidInput(format!("cluster setting {name} vanished"))),
            Err(error) => Err(error.into()),
        }
    }

    async fn setting(&self, name: &str) -> Result<Option<String>> {
        Ok(on_pool!(self, db => {
            sqlx::query_scalar("SELECT value FROM cluster_settings WHERE name = ?")
                .bind(name)
                .fetch_optional(db)
                .await?
        }))
    }
}
