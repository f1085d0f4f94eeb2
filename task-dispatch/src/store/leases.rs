//! App leases: which session may act on an app. Taken over by [`Store::adopt_app`] from nobody,
//! from a session that is no longer current, or from a node the caller's membership says is
//! gone (fencing it first); given back by [`Store::release_app`].

use super::fencing::fence;
use super::model::{App, AppId, NodeLease};
use super::named::{Named, Param};
use super::{Store, on_pool};
use crate::affinity::HostId;
use crate::clock::unix_millis;
use crate::error::{Error, Result};

/// What [`Store::adopt_app`] found.
#[derive(Debug, Clone, PartialEq)]
pub enum Adoption {
    /// The caller's session holds the lease (now or already): it may act on the app.
    Adopted(App),
    /// A live node's current session holds it; it releases it once it sees the same
    /// membership, or loses it when it dies.
    HeldBy(NodeLease),
    /// The app no longer exists.
    Gone,
    /// A copy of the app may be running on this other host ([`App::host`]): only a node there
    /// may take the lease. Nothing was changed, nobody was fenced.
    OnOtherHost(HostId),
}

/// Takes the lease of an app as last read (its version), for the caller's current session.
static TAKE_LEASE: Named = Named::new(concat!(
    "UPDATE apps SET owner_node = :node, owner_epoch = :epoch, version = version + 1, \
     updated_at = :now WHERE id = :app AND version = :app_version AND ",
    fence!()
));

impl Store {
    /// Takes the app's lease for `lease`'s session on `host`, so that it may act on and
    /// monitor the app.
    ///
    /// An app whose copy may run on another host than the caller's ([`App::host`]) is left
    /// alone ([`Adoption::OnOtherHost`]): nobody here could see that copy, so nobody here may
    /// act on it or fence its holder. Otherwise the lease is taken when it is free, already ours (any epoch of our node id), held by a
    /// session that is no longer current, or held by a node for which `is_live` says false —
    /// that node's session is fenced first ([`Store::fence_node`], conditional on the epoch
    /// recorded in the lease, so a node that has meanwhile registered again is left alone). A
    /// live holder keeps it until it releases it ([`Store::release_app`]).
    ///
    /// # Notable behaviors
    /// Idempotent. Nothing about the app's state changes: adoption attaches, it never restarts.
    ///
    /// # Notable errors
    /// [`Error::Fenced`] if the caller's own session is no longer current.
    pub async fn adopt_app(
        &self,
        lease: &NodeLease,
        app_id: AppId,
        host: Option<&HostId>,
        is_live: impl Fn(&str) -> bool,
    ) -> Result<Adoption> {
        // A few rounds: each lost race means someone else wrote the app meanwhile.
        for _ in 0..5 {
            let Some(app) = self.find_app(app_id).await? else {
                return Ok(Adoption::Gone);
            };
            // The version condition of the take below keeps this true until it lands.
            if let Some(pinned) = app.host.as_ref().filter(|pinned| Some(*pinned) != host) {
                return Ok(Adoption::OnOtherHost(pinned.clone()));
            }
            match &app.lease {
                Some(held) if held == lease => return Ok(Adoption::Adopted(app)),
                Some(held) if held.node_id != lease.node_id => {
                    let current = self.node_epoch(&held.node_id).await? == Some(held.epoch);
                    if current && is_live(&held.node_id) {
                        return Ok(Adoption::HeldBy(held.clone()));
                    }
                    if current {
                        self.fence_node(held).await?;
                    }
                }
                _ => {}
            }
            let now = unix_millis();
            let values: [(&str, Param<'_>); 5] = [
                ("node", lease.node_id.as_str().into()),
                ("epoch", lease.epoch.into()),
                ("now", now.into()),
                ("app", app_id.into()),
                ("app_version", app.version.into()),
            ];
            let taken = on_pool!(self, db => {
                TAKE_LEASE.bind(&values).execute(db).await?.rows_affected()
            });
            if taken == 1 {
                return Ok(Adoption::Adopted(App {
                    version: app.version + 1,
                    lease: Some(lease.clone()),
                    updated_at: now,
                    ..app
                }));
            }
            self.check_epoch(lease).await?;
        }
        Err(Error::Conflict(format!(
            "app {app_id} kept changing while adopting it"
        )))
    }

    /// Gives the app's lease up, if `lease` holds it; returns whether it did. Called when
    /// ownership moves to a live node, after the last action has finished.
    pub async fn release_app(&self, lease: &NodeLease, app_id: AppId) -> Result<bool> {
        const SQL: &str = "UPDATE apps SET owner_node = NULL, owner_epoch = NULL, \
             version = version + 1, updated_at = ? \
             WHERE id = ? AND owner_node = ? AND owner_epoch = ?";
        let released = on_pool!(self, db => {
            sqlx::query(SQL)
                .bind(unix_millis())
                .bind(app_id)
                .bind(&lease.node_id)
                .bind(lease.epoch)
                .execute(db)
                .await?
                .rows_affected()
        });
        Ok(released == 1)
    }
}
