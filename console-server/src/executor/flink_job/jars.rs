//! Jar uploads: once per jar content and Flink cluster, keyed by the content's SHA-256, and
//! again when Flink lost the upload (a restarted JobManager forgets what it did not keep).

use std::collections::HashMap;
use std::path::Path;

use sha2::{Digest, Sha256};
use tokio::sync::Mutex;

use crate::executor::ExecutorError;
use crate::executor::flink::{FlinkRestClient, JarId};

/// The uploaded jars of this node, by (REST URL, content hash).
#[derive(Debug, Default)]
pub struct JarCache {
    uploaded: Mutex<HashMap<(String, [u8; 32]), JarId>>,
}

impl JarCache {
    /// The id of `jar` on `client`'s cluster, uploading it if this node has not (or `fresh`
    /// says the cached id is gone).
    ///
    /// # Notable errors
    /// [`ExecutorError::Spawn`] when the jar cannot be read or uploaded.
    pub async fn jar_id(
        &self,
        client: &FlinkRestClient,
        jar: &Path,
        fresh: bool,
    ) -> Result<JarId, ExecutorError> {
        let bytes = tokio::fs::read(jar)
            .await
            .map_err(|error| ExecutorError::Spawn {
                program: jar.display().to_string(),
                reason: format!("cannot read the jar: {error}"),
            })?;
        let key = (client.rest_url().to_string(), Sha256::digest(&bytes).into());
        // Held across the upload: two starts of apps with one jar upload it once.
        let mut uploaded = self.uploaded.lock().await;
        if !fresh && let Some(id) = uploaded.get(&key) {
            return Ok(id.clone());
        }
        let id = client
            .upload_jar(jar)
            .await
            .map_err(|error| ExecutorError::Spawn {
                program: jar.display().to_string(),
                reason: format!("upload to Flink failed: {error}"),
            })?;
        tracing::info!(jar = %jar.display(), jar_id = id.as_str(), "jar uploaded to Flink");
        uploaded.insert(key, id.clone());
        Ok(id)
    }
}
