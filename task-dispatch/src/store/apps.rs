//! Apps: create, get, list, delete. Any node may call these.

use super::model::{App, AppId, AppRow, NewApp, Page};
use super::{InsertedId, Store, app_columns, on_pool};
use crate::affinity::{AppPlacement, HostId};
use crate::clock::unix_millis;
use crate::error::{Entity, Error, Result};
use crate::state::AppState;

/// The largest page [`Store::list_apps`] returns.
pub const MAX_PAGE_SIZE: u32 = 1000;

impl Store {
    /// Creates an app in state CREATED, owned by nobody until a task or a membership change
    /// makes its owner adopt it.
    ///
    /// # Notable errors
    /// [`Error::InvalidInput`] for an empty or over-long name (255) or executor (64).
    pub async fn create_app(&self, new: NewApp) -> Result<App> {
        validate_text("name", &new.name, 255)?;
        validate_text("executor", &new.executor, 64)?;
        let spec = new.spec.to_string();
        let now = unix_millis();
        const SQL: &str = "INSERT INTO apps (name, executor, spec, state, handle, version, \
             owner_node, owner_epoch, last_error, created_at, updated_at) \
             VALUES (?, ?, ?, ?, NULL, 1, NULL, NULL, NULL, ?, ?)";
        let id = on_pool!(self, db => {
            sqlx::query(SQL)
                .bind(&new.name)
                .bind(&new.executor)
                .bind(&spec)
                .bind(AppState::Created.as_str())
                .bind(now)
                .bind(now)
                .execute(db)
                .await?
                .inserted_id()
        });
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
        let deleted = on_pool!(self, db => {
            sqlx::query(SQL).bind(id).bind(id).execute(db).await?.rows_affected()
        });
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

/// Placements from `(id, host)` rows.
pub(super) fn placements(rows: Vec<(AppId, Option<String>)>) -> Vec<AppPlacement> {
    rows.into_iter()
        .map(|(id, host)| AppPlacement::new(id, host.map(HostId::new)))
        .collect()
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
