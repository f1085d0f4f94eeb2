//! Node sessions and fencing: every owner write is refused once its session is not current.
//!
//! # The fencing protocol
//! - `node_epochs` holds one row per node id. [`Store::register_node`] increments its epoch
//!   atomically each time the node (re)registers; the returned [`NodeLease`] (node id + epoch)
//!   identifies that session.
//! - Every owner write (`leases.rs`, `claims.rs`, `outcomes.rs`) is a conditional update that
//!   also requires the caller's epoch to be the current one (`fence!`). A node that
//!   registered again, or that another node fenced ([`Store::fence_node`]), has its late writes
//!   refused with [`Error::Fenced`].
//! - An app's lease (`apps.owner_node`, `apps.owner_epoch`) names the session allowed to act on
//!   it (`leases.rs`); task claims record the claiming session, and finishing a task requires
//!   that claim and the app's lease (`claims.rs`, `outcomes.rs`).

use super::model::NodeLease;
use super::{Store, in_write_tx, is_unique_violation, on_pool};
use crate::clock::unix_millis;
use crate::error::{Error, Result};

/// The fence every owner write carries, as SQL with the named parameters `:node` and `:epoch`
/// (see `named.rs`): the writer's session epoch is still the current one.
macro_rules! fence {
    () => {
        "EXISTS (SELECT 1 FROM node_epochs \
         WHERE node_epochs.node_id = :node AND node_epochs.epoch = :epoch)"
    };
}

pub(crate) use fence;

impl Store {
    /// Starts a new session for `node_id`: increments its epoch atomically (creating the row at
    /// epoch 1) and returns it. Writes carrying any older epoch of this node are refused from
    /// now on.
    ///
    /// # Notable errors
    /// [`Error::InvalidInput`] for an empty or over-long (255) node id.
    pub async fn register_node(&self, node_id: &str) -> Result<NodeLease> {
        if node_id.is_empty() || node_id.chars().count() > 255 {
            return Err(Error::InvalidInput(
                "a node id has 1 to 255 characters".into(),
            ));
        }
        // Two first registrations of one id can race on the insert: the loser retries once,
        // and then finds the row.
        let mut attempt = 0;
        loop {
            attempt += 1;
            let now = unix_millis();
            let result: Result<i64> = in_write_tx!(self, conn => {
                let bumped = sqlx::query(
                    "UPDATE node_epochs SET epoch = epoch + 1, registered_at = ? \
                     WHERE node_id = ?",
                )
                .bind(now)
                .bind(node_id)
                .execute(&mut *conn)
                .await?
                .rows_affected();
                if bumped == 0 {
                    sqlx::query(
                        "INSERT INTO node_epochs (node_id, epoch, registered_at) VALUES (?, 1, ?)",
                    )
                    .bind(node_id)
                    .bind(now)
                    .execute(&mut *conn)
                    .await?;
                }
                let epoch: i64 =
                    sqlx::query_scalar("SELECT epoch FROM node_epochs WHERE node_id = ?")
                        .bind(node_id)
                        .fetch_one(&mut *conn)
                        .await?;
                Ok(epoch)
            });
            match result {
                Ok(epoch) => {
                    return Ok(NodeLease {
                        node_id: node_id.to_owned(),
                        epoch,
                    });
                }
                Err(Error::Database(e)) if attempt == 1 && is_unique_violation(&e) => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// The current epoch of `node_id`, if it ever registered.
    pub async fn node_epoch(&self, node_id: &str) -> Result<Option<i64>> {
        const SQL: &str = "SELECT epoch FROM node_epochs WHERE node_id = ?";
        Ok(on_pool!(self, db => {
            sqlx::query_scalar(SQL).bind(node_id).fetch_optional(db).await?
        }))
    }

    /// Fences one session of a node: its epoch moves on if it is still `lease.epoch`, so every
    /// later write of that session is refused. Returns whether it did (false when the node has
    /// registered again since, which fences the old session anyway).
    pub async fn fence_node(&self, lease: &NodeLease) -> Result<bool> {
        const SQL: &str =
            "UPDATE node_epochs SET epoch = epoch + 1 WHERE node_id = ? AND epoch = ?";
        let fenced = on_pool!(self, db => {
            sqlx::query(SQL)
                .bind(&lease.node_id)
                .bind(lease.epoch)
                .execute(db)
                .await?
                .rows_affected()
        });
        Ok(fenced == 1)
    }

    /// Ok while `lease` is the node's current session, [`Error::Fenced`] otherwise.
    pub async fn check_epoch(&self, lease: &NodeLease) -> Result<()> {
        if self.node_epoch(&lease.node_id).await? == Some(lease.epoch) {
            Ok(())
        } else {
            Err(Error::Fenced {
                node: lease.node_id.clone(),
                epoch: lease.epoch,
            })
        }
    }

    /// Turns a lost conditional update into [`Error::Fenced`] when the reason is that the
    /// caller's session is no longer current.
    pub(super) async fn explain<T>(&self, lease: &NodeLease, result: Result<T>) -> Result<T> {
        match result {
            Err(Error::Conflict(message)) => {
                self.check_epoch(lease).await?;
                Err(Error::Conflict(message))
            }
            other => other,
        }
    }
}
