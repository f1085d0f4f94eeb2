//! Apps: create, get, list, delete. Any node may call these.

use super::model::{App, AppId, AppRow, MAX_APP_WEIGHT, NewApp, Page};
use super::{InsertedId, Store, app_columns, in_write_tx, on_pool};
use crate::affinity::{AppPlacement, HostId};
use crate::clock::unix_millis;
use crate::error::{Entity, Error, Result};
use crate::state::AppState;

/// The largest page [`Store::list_apps`] returns.
pub const MAX_PAGE_SIZE: u32 = 1000;

impl Store {
    /// Creates an app in state CREATED, owned by nobody until a task or a membership change
    /// makes its owner adopt it. Bumps the app set's version in the same transaction
    /// ([`Store::app_set_version`]).
    ///
    /// # Notable errors
    /// [`Error::InvalidInput`] for an empty or over-long name (255) or executor (64), or a
    /// weight outside 1..=[`MAX_APP_WEIGHT`].
    pub async fn create_app(&self, new: NewApp) -> Result<App> {
        validate_text("name", &new.name, 255)?;
        validate_text("executor", &new.executor, 64)?;
        check_weight(new.weight)?;
        let spec = new.spec.to_string();
        let now = unix_millis();
        const SQL: &str = "INSERT INTO apps (name, executor, spec, state, handle, version, \
             owner_node, owner_epoch, last_error, created_at, updated_at, weight) \
             VALUES (?, ?, ?, ?, NULL, 1, NULL, NULL, NULL, ?, ?, ?)";
        let id = in_write_tx!(self, conn => {
            let id = sqlx::query(SQL)
                .bind(&new.name)
                .bind(&new.executor)
                .bind(&spec)
                .bind(AppState::Created.as_str())
                .bind(now)
                .bind(now)
                .bind(i64::from(new.weight))
                .execute(&mut *conn)
                .await?
                .inserted_id();
            sqlx::query(BUMP_APP_SET).execute(&mut *conn).await?;
            Ok::<_, Error>(id)
        })?;
        Ok(App {
            id,
            name: new.name,
            executor: new.executor,
            spec: new.spec,
            state: AppState::Created,
            handle: None,
            version: 1,
            lease: None,
            last_error: None,
            created_at: now,
            updated_at: now,
            host: None,
            weight: new.weight,
        })
    }

    /// The app with this id.
    ///
    /// # Notable errors
    /// [`Error::NotFound`].
    pub async fn get_app(&self, id: AppId) -> Result<App> {
        self.find_app(id).await?.ok_or(Error::NotFound {
            entity: Entity::App,
            id,
        })
    }

    pub(crate) async fn find_app(&self, id: AppId) -> Result<Option<App>> {
        const SQL: &str = concat!("SELECT ", app_columns!(), " FROM apps WHERE id = ?");
        let row: Option<AppRow> = on_pool!(self, db => {
            sqlx::query_as(SQL).bind(id).fetch_optional(db).await?
        });
        row.map(App::try_from).transpose()
    }

    /// One page of apps in id order: `page` counts from 1, `size` from 1 to [`MAX_PAGE_SIZE`].
    ///
    /// # Notable errors
    /// [`Error::InvalidInput`] for page 0 or a size out of range.
    pub async fn list_apps(&self, page: u32, size: u32) -> Result<Page<App>> {
        self.list_apps_where(&super::AppFilter::default(), page, size)
            .await
    }

    /// Deletes an app that is CREATED, STOPPED or FAILED, has no unfinished task, and no copy
    /// that may still run ([`App::host`] unset). Its finished tasks stay readable.
    ///
    /// # Notable errors
    /// [`Error::NotFound`]; [`Error::AppActive`] while the app is STARTING, RUNNING or STOPPING or
    /// has PENDING/RUNNING tasks; [`Error::MayStillRun`] for a FAILED app whose copy may still run
    /// on its host (a stop, run there, clears that). The checks and the delete are one
    /// statement, so a task submitted concurrently either blocks the delete or finds the app
    /// gone.
    pub async fn delete_app(&self, id: AppId) -> Result<()> {
        const SQL: &str = "DELETE FROM apps WHERE id = ? \
             AND state IN ('CREATED', 'STOPPED', 'FAILED') AND host IS NULL \
             AND NOT EXISTS (SELECT 1 FROM tasks \
                 WHERE tasks.app_id = ? AND tasks.status IN ('PENDING', 'RUNNING'))";
        let deleted = in_write_tx!(self, conn => {
            let deleted = sqlx::query(SQL).bind(id).bind(id).execute(&mut *conn).await?.rows_affected();
            if deleted == 1 {
                sqlx::query(BUMP_APP_SET).execute(&mut *conn).await?;
            }
            Ok::<_, Error>(deleted)
        })?;
        if deleted == 1 {
            return Ok(());
        }
        let app = self.get_app(id).await?;
        let unfinished_tasks = !self.unfinished_actions(id).await?.is_empty();
        match app.host {
            Some(host) if !app.state.is_active() && !unfinished_tasks => {
                Err(Error::MayStillRun { id, host })
            }
            _ => Err(Error::AppActive {
                id,
                state: app.state,
                unfinished_tasks,
            }),
        }
    }

    /// The STARTING, RUNNING and STOPPING apps with their hosts, by id (index `apps_state_id`,
    /// then each row by key): the apps whose owner must monitor them.
    pub async fn active_apps(&self) -> Result<Vec<AppPlacement>> {
        // Sorted here: an ORDER BY makes MariaDB walk the whole primary key instead.
        const SQL: &str = "SELECT id, host FROM apps \
             WHERE state IN ('STARTING', 'RUNNING', 'STOPPING')";
        let mut rows: Vec<(AppId, Option<String>)> =
            on_pool!(self, db => sqlx::query_as(SQL).fetch_all(db).await?);
        rows.sort_unstable_by_key(|(id, _)| *id);
        Ok(placements(rows))
    }
}

impl Store {
    /// Sets app `id`'s weight (issue 16) while it is idle (CREATED, STOPPED or FAILED, with no
    /// unfinished task), so that no owner write can meet the change: the app's version and the
    /// app set's version grow in one transaction, and every node places the apps again at its
    /// next poll. Setting the weight it has changes nothing.
    ///
    /// # Notable errors
    /// [`Error::InvalidInput`] for a weight outside 1..=[`MAX_APP_WEIGHT`]; [`Error::NotFound`];
    /// [`Error::Conflict`] while the app is active or has unfinished tasks.
    pub async fn set_app_weight(&self, id: AppId, weight: u32) -> Result<App> {
        check_weight(weight)?;
        const SQL: &str = "UPDATE apps SET weight = ?, version = version + 1, updated_at = ? \
             WHERE id = ? AND weight <> ? AND state IN ('CREATED', 'STOPPED', 'FAILED') \
             AND NOT EXISTS (SELECT 1 FROM tasks \
                 WHERE tasks.app_id = ? AND tasks.status IN ('PENDING', 'RUNNING'))";
        let now = unix_millis();
        let changed = in_write_tx!(self, conn => {
            let changed = sqlx::query(SQL)
                .bind(i64::from(weight))
                .bind(now)
                .bind(id)
                .bind(i64::from(weight))
                .bind(id)
                .execute(&mut *conn)
                .await?
                .rows_affected();
            if changed == 1 {
                sqlx::query(BUMP_APP_SET).execute(&mut *conn).await?;
            }
            Ok::<_, Error>(changed)
        })?;
        let app = self.get_app(id).await?;
        if changed == 0 && app.weight != weight {
            let unfinished = !self.unfinished_actions(id).await?.is_empty();
            return Err(Error::Conflict(format!(
                "app {id} is {}{}: stop it and let its tasks finish before changing its weight",
                app.state,
                if unfinished {
                    " with unfinished tasks"
                } else {
                    ""
                }
            )));
        }
        Ok(app)
    }

    /// The version of the app set: it grows with every app created or deleted (in the same
    /// transaction), so a reader that saw version `v` and the set read after it knows the set
    /// is unchanged while the version stays `v`. One primary-key read.
    pub async fn app_set_version(&self) -> Result<i64> {
        const SQL: &str = "SELECT version FROM app_set WHERE id = 1";
        Ok(on_pool!(self, db => sqlx::query_scalar(SQL).fetch_one(db).await?))
    }

    /// Every app's id and weight, by id, with the app set's version they belong to: the version
    /// is read first, so a change committed during the read shows as a newer version at the
    /// next [`Store::app_set_version`] and the set is read again.
    pub async fn app_set(&self) -> Result<AppSet> {
        let version = self.app_set_version().await?;
        const SQL: &str = "SELECT id, weight FROM apps ORDER BY id";
        let rows: Vec<(AppId, i64)> =
            on_pool!(self, db => sqlx::query_as(SQL).fetch_all(db).await?);
        let weights = rows
            .into_iter()
            .map(|(id, weight)| {
                u32::try_from(weight)
                    .ok()
                    .filter(|weight| (1..=MAX_APP_WEIGHT).contains(weight))
                    .map(|weight| (id, weight))
                    .ok_or_else(|| Error::Corrupt(format!("app {id}: weight {weight}")))
            })
            .collect::<Result<_>>()?;
        Ok(AppSet { version, weights })
    }
}

/// Every app with its weight, as of one version of the app set ([`Store::app_set`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppSet {
    /// The app set's version ([`Store::app_set_version`]).
    pub version: i64,
    /// `(id, weight)` by id.
    pub weights: Vec<(AppId, u32)>,
}

/// Bumps the app set's version; runs in the transaction of the change.
const BUMP_APP_SET: &str = "UPDATE app_set SET version = version + 1 WHERE id = 1";

/// Placements from `(id, host)` rows.
pub(super) fn placements(rows: Vec<(AppId, Option<String>)>) -> Vec<AppPlacement> {
    rows.into_iter()
        .map(|(id, host)| AppPlacement::new(id, host.map(HostId::new)))
        .collect()
}

fn check_weight(weight: u32) -> Result<()> {
    if (1..=MAX_APP_WEIGHT).contains(&weight) {
        Ok(())
    } else {
        Err(Error::InvalidInput(format!(
            "weight must be 1 to {MAX_APP_WEIGHT}, got {weight}"
        )))
    }
}

fn validate_text(field: &str, value: &str, max_chars: usize) -> Result<()> {
    if value.trim().is_empty() {
        return Err(Error::InvalidInput(format!("{field} must not be empty")));
    }
    if value.chars().count() > max_chars {
        return Err(Error::InvalidInput(format!(
            "{field} must be at most {max_chars} characters"
        )));
    }
    Ok(())
}
