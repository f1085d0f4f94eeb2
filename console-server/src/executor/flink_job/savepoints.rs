//! An app's savepoints on disk: Flink writes each app's under `<savepoint_dir>/app-<id>/`
//! (the target directory the executor gives it), and the console reads that directory to find
//! the newest to restore, to list them, and to keep only the newest `retention`.
//!
//! Each savepoint the console took has a `console.json` beside Flink's `_metadata`: the job id
//! and the kind (`stop`, `manual`) Flink's directory name does not carry in full.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

/// What the console records in a savepoint's directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavepointNote {
    pub job_id: String,
    /// `stop` (a stop with a savepoint) or `manual` (`POST /api/v1/apps/{id}/savepoint`).
    pub kind: String,
    /// Milliseconds since the Unix epoch.
    pub created_at: i64,
}

/// One savepoint as `GET /api/v1/apps/{id}/savepoints` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Savepoint {
    pub location: String,
    pub kind: String,
    pub created_at: i64,
    pub job_id: Option<String>,
}

/// `<savepoint_dir>/app-<id>`.
pub fn app_dir(savepoint_dir: &Path, app_id: i64) -> PathBuf {
    savepoint_dir.join(format!("app-{app_id}"))
}

/// The app's complete savepoints (those with Flink's `_metadata`), newest first.
pub fn list(savepoint_dir: &Path, app_id: i64) -> Vec<Savepoint> {
    let Ok(entries) = std::fs::read_dir(app_dir(savepoint_dir, app_id)) else {
        return Vec::new();
    };
    let mut found: Vec<Savepoint> = entries
        .flatten()
        .filter(|entry| {
            entry
                .file_name()
                .to_string_lossy()
                .starts_with("savepoint-")
        })
        .filter(|entry| entry.path().join("_metadata").is_file())
        .map(|entry| {
            let path = entry.path();
            let note: Option<SavepointNote> = std::fs::read(path.join("console.json"))
                .ok()
                .and_then(|bytes| serde_json::from_slice(&bytes).ok());
            let modified = entry
                .metadata()
                .and_then(|meta| meta.modified())
                .ok()
                .and_then(|at| at.duration_since(SystemTime::UNIX_EPOCH).ok())
                .map_or(0, |since| {
                    i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
                });
            Savepoint {
                location: format!("file:{}", path.display()),
                kind: note
                    .as_ref()
                    .map_or_else(|| "unknown".to_owned(), |n| n.kind.clone()),
                created_at: note.as_ref().map_or(modified, |n| n.created_at),
                job_id: note.map(|n| n.job_id),
            }
        })
        .collect();
    found.sort_by(|a, b| {
        b.created_at
            .cmp(&a.created_at)
            .then(b.location.cmp(&a.location))
    });
    found
}

/// Writes the note of a savepoint Flink just completed at `location` (`file:/...` or a path).
/// A note already there is kept: a task re-run that finds its savepoint again does not make it
/// look newer.
pub fn record(location: &str, note: &SavepointNote) -> std::io::Result<()> {
    use std::io::Write as _;
    let path = local_path(location).join("console.json");
    let body = serde_json::to_vec(note).map_err(std::io::Error::other)?;
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
    {
        Ok(mut file) => file.write_all(&body),
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(error) => Err(error),
    }
}

/// Deletes all but the newest `keep` (at least one) of the app's savepoints.
pub fn prune(savepoint_dir: &Path, app_id: i64, keep: usize) {
    for old in list(savepoint_dir, app_id).into_iter().skip(keep.max(1)) {
        let path = local_path(&old.location);
        if let Err(error) = std::fs::remove_dir_all(&path) {
            tracing::warn!(path = %path.display(), %error, "cannot delete an old savepoint");
        } else {
            tracing::info!(app_id, path = %path.display(), "old savepoint deleted (retention)");
        }
    }
}

/// The local path of a `file:` location.
fn local_path(location: &str) -> PathBuf {
    let path = location
        .strip_prefix("file://")
        .or_else(|| location.strip_prefix("file:"))
        .unwrap_or(location);
    PathBuf::from(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn savepoint(dir: &Path, app: i64, name: &str, created_at: Option<i64>) -> String {
        let path = app_dir(dir, app).join(name);
        std::fs::create_dir_all(&path).unwrap();
        std::fs::write(path.join("_metadata"), b"x").unwrap();
        let location = format!("file:{}", path.display());
        if let Some(created_at) = created_at {
            let note = SavepointNote {
                job_id: "ab".repeat(16),
                kind: "stop".to_owned(),
                created_at,
            };
            record(&location, &note).unwrap();
        }
        location
    }

    #[test]
    fn newest_first_incomplete_ones_left_out_and_pruned_to_the_newest() {
        let dir = tempfile::tempdir().unwrap();
        let old = savepoint(dir.path(), 7, "savepoint-aaaaaa-1", Some(1_000));
        let new = savepoint(dir.path(), 7, "savepoint-aaaaaa-2", Some(2_000));
        std::fs::create_dir_all(app_dir(dir.path(), 7).join("savepoint-aaaaaa-3")).unwrap();
        savepoint(dir.path(), 8, "savepoint-bbbbbb-1", Some(3_000));
        let listed = list(dir.path(), 7);
        assert_eq!(
            listed
                .iter()
                .map(|s| s.location.clone())
                .collect::<Vec<_>>(),
            [new.clone(), old]
        );
        assert_eq!(listed[0].kind, "stop");
        assert_eq!(
            listed[0].job_id.as_deref(),
            Some("abababababababababababababababab")
        );
        // A second note (a re-run finding the savepoint again) keeps the first.
        let again = SavepointNote {
            job_id: "cd".repeat(16),
            kind: "manual".to_owned(),
            created_at: 9_000,
        };
        record(&new, &again).unwrap();
        assert_eq!(list(dir.path(), 7)[0].created_at, 2_000);
        prune(dir.path(), 7, 0);
        assert_eq!(list(dir.path(), 7).len(), 1, "never fewer than one");
        assert_eq!(list(dir.path(), 7)[0].location, new);
        assert_eq!(list(dir.path(), 8).len(), 1, "another app's are untouched");
        assert!(list(dir.path(), 9).is_empty());
    }
}
