//! What an operator's view of the cluster reads (the web console, `GET /api/v1/events`):
//! filtered pages of apps, one app's task history, counts by state, and the rows changed since
//! a moment. Any node may call these; none of them writes.
//!
//! Indexes: `apps_state_id` (state filter, counts), `apps_updated_at` and `tasks_updated_at`
//! (changes since a moment, migration 0003), `tasks_app_status_id` (one app's tasks).

use super::model::{App, AppId, AppRow, Page, Task, TaskRow};
use super::{Store, app_columns, on_pool, task_columns};
use crate::error::{Error, Result};
use crate::state::AppState;

/// Which apps a listing keeps. The default keeps every app.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AppFilter {
    /// Keep apps in one of these states (none: any state).
    pub states: Vec<AppState>,
    /// Keep apps whose name contains this text, ignoring ASCII case (`None` or empty: any
    /// name). `%` and `_` match themselves.
    pub name_contains: Option<String>,
}

/// The largest page of [`Store::tasks_of_app`].
pub const MAX_TASK_PAGE_SIZE: u32 = 200;

/// The escape character of `LIKE` patterns: not a backslash, which MySQL strings treat
/// specially and SQLite does not.
const LIKE_ESCAPE: char = '!';

impl Store {
    /// One page of the apps `filter` keeps, in id order, with how many it keeps in all.
    /// `page` counts from 1, `size` from 1 to [`super::MAX_PAGE_SIZE`].
    ///
    /// # Notable errors
    /// [`Error::InvalidInput`] for page 0, a size out of range or a name filter over 255
    /// characters.
    pub async fn list_apps_where(
        &self,
        filter: &AppFilter,
        page: u32,
        size: u32,
    ) -> Result<Page<App>> {
        check_page(page, size, super::MAX_PAGE_SIZE)?;
        let mut conditions = Vec::new();
        let mut binds: Vec<String> = Vec::new();
        if !filter.states.is_empty() {
            let marks = vec!["?"; filter.states.len()].join(", ");
            conditions.push(format!("state IN ({marks})"));
            binds.extend(filter.states.iter().map(|s| s.as_str().to_owned()));
        }
        if let Some(name) = filter.name_contains.as_deref().filter(|n| !n.is_empty()) {
            if name.chars().count() > 255 {
                return Err(Error::InvalidInput(
                    "a name filter has at most 255 characters".into(),
                ));
            }
            conditions.push(format!("LOWER(name) LIKE ? ESCAPE '{LIKE_ESCAPE}'"));
            binds.push(format!("%{}%", like_escaped(&name.to_ascii_lowercase())));
        }
        let filter_sql = if conditions.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", conditions.join(" AND "))
        };
        let items_sql = format!(
            "SELECT {} FROM apps{filter_sql} ORDER BY id LIMIT ? OFFSET ?",
            app_columns!()
        );
        let total_sql = format!("SELECT COUNT(*) FROM apps{filter_sql}");
        let offset = i64::from(page - 1) * i64::from(size);
        let (rows, total): (Vec<AppRow>, i64) = on_pool!(self, db => {
            // Safe: the SQL is made of fixed text; every value is bound.
            let mut items = sqlx::query_as(sqlx::AssertSqlSafe(items_sql.as_str()));
            let mut count = sqlx::query_scalar(sqlx::AssertSqlSafe(total_sql.as_str()));
            for value in &binds {
                items = items.bind(value);
                count = count.bind(value);
            }
            let rows = items.bind(i64::from(size)).bind(offset).fetch_all(db).await?;
            (rows, count.fetch_one(db).await?)
        });
        let items = rows
            .into_iter()
            .map(App::try_from)
            .collect::<Result<Vec<_>>>()?;
        Ok(Page { items, total })
    }

    /// How many apps are in each state, cluster-wide (states without apps are left out).
    pub async fn count_apps_by_state(&self) -> Result<Vec<(AppState, i64)>> {
        const SQL: &str = "SELECT state, COUNT(*) FROM apps GROUP BY state ORDER BY state";
        let rows: Vec<(String, i64)> =
            on_pool!(self, db => sqlx::query_as(SQL).fetch_all(db).await?);
        rows.into_iter()
            .map(|(state, count)| {
                let state = state
                    .parse()
                    .map_err(|e| Error::Corrupt(format!("app state {state:?}: {e}")))?;
                Ok((state, count))
            })
            .collect()
    }

    /// How many apps each node holds the lease of (`owner_node`), cluster-wide, from the task
    /// store itself: unlike the counts nodes publish in the registry, it never lags behind a
    /// takeover. Nodes holding none are left out; a fenced node may still appear until its apps
    /// are adopted.
    pub async fn count_apps_by_owner(&self) -> Result<Vec<(String, i64)>> {
        const SQL: &str = "SELECT owner_node, COUNT(*) FROM apps WHERE owner_node IS NOT NULL \
                           GROUP BY owner_node ORDER BY owner_node";
        Ok(on_pool!(self, db => sqlx::query_as(SQL).fetch_all(db).await?))
    }

    /// One page of the app's tasks, newest first, with how many it has in all (finished tasks
    /// are purged after the retention period). `size` is 1 to [`MAX_TASK_PAGE_SIZE`]. An
    /// unknown app has no tasks (an empty page, not an error).
    ///
    /// # Notable errors
    /// [`Error::InvalidInput`] for page 0 or a size out of range.
    pub async fn tasks_of_app(&self, app_id: AppId, page: u32, size: u32) -> Result<Page<Task>> {
        check_page(page, size, MAX_TASK_PAGE_SIZE)?;
        const ITEMS: &str = concat!(
            "SELECT ",
            task_columns!(),
            " FROM tasks WHERE app_id = ? ORDER BY id DESC LIMIT ? OFFSET ?"
        );
        const TOTAL: &str = "SELECT COUNT(*) FROM tasks WHERE app_id = ?";
        let offset = i64::from(page - 1) * i64::from(size);
        let (rows, total): (Vec<TaskRow>, i64) = on_pool!(self, db => {
            let rows = sqlx::query_as(ITEMS)
                .bind(app_id)
                .bind(i64::from(size))
                .bind(offset)
                .fetch_all(db)
                .await?;
            (rows, sqlx::query_scalar(TOTAL).bind(app_id).fetch_one(db).await?)
        });
        let items = rows
            .into_iter()
            .map(Task::try_from)
            .collect::<Result<Vec<_>>>()?;
        Ok(Page { items, total })
    }

    /// Up to `limit` apps whose `updated_at` is at or after `since_ms` (milliseconds since the
    /// Unix epoch), oldest change first (index `apps_updated_at`).
    ///
    /// # Notable behaviors
    /// `updated_at` is the writing node's clock, taken before its transaction commits: a
    /// change can become visible after a later one. Readers that follow changes read with an
    /// overlap and tell repeats apart by `version`.
    pub async fn apps_updated_since(&self, since_ms: i64, limit: u32) -> Result<Vec<App>> {
        const SQL: &str = concat!(
            "SELECT ",
            app_columns!(),
            " FROM apps WHERE updated_at >= ? ORDER BY updated_at, id LIMIT ?"
        );
        let rows: Vec<AppRow> = on_pool!(self, db => {
            sqlx::query_as(SQL).bind(since_ms).bind(i64::from(limit)).fetch_all(db).await?
        });
        rows.into_iter().map(App::try_from).collect()
    }

    /// Up to `limit` tasks whose `updated_at` is at or after `since_ms`, oldest change first
    /// (index `tasks_updated_at`; never the whole table). Same caveat as
    /// [`Store::apps_updated_since`].
    pub async fn tasks_updated_since(&self, since_ms: i64, limit: u32) -> Result<Vec<Task>> {
        const SQL: &str = concat!(
            "SELECT ",
            task_columns!(),
            " FROM tasks WHERE updated_at >= ? ORDER BY updated_at, id LIMIT ?"
        );
        let rows: Vec<TaskRow> = on_pool!(self, db => {
            sqlx::query_as(SQL).bind(since_ms).bind(i64::from(limit)).fetch_all(db).await?
        });
        rows.into_iter().map(Task::try_from).collect()
    }

    /// How many apps exist.
    pub async fn count_apps(&self) -> Result<i64> {
        const SQL: &str = "SELECT COUNT(*) FROM apps";
        Ok(on_pool!(self, db => sqlx::query_scalar(SQL).fetch_one(db).await?))
    }

    /// The ids of every app, in order (the primary key alone): how a follower of changes finds
    /// which apps were deleted once [`Store::count_apps`] says some were.
    pub async fn app_ids(&self) -> Result<Vec<AppId>> {
        const SQL: &str = "SELECT id FROM apps ORDER BY id";
        Ok(on_pool!(self, db => sqlx::query_scalar(SQL).fetch_all(db).await?))
    }
}

fn check_page(page: u32, size: u32, max: u32) -> Result<()> {
    if page == 0 {
        return Err(Error::InvalidInput("page counts from 1".into()));
    }
    if size == 0 || size > max {
        return Err(Error::InvalidInput(format!(
            "page size must be 1 to {max}, got {size}"
        )));
    }
    Ok(())
}

/// `text` with the `LIKE` wildcards and the escape character escaped.
fn like_escaped(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '%' | '_') || c == LIKE_ESCAPE {
            escaped.push(LIKE_ESCAPE);
        }
        escaped.push(c);
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::like_escaped;

    #[test]
    fn like_patterns_match_wildcards_literally() {
        assert_eq!(like_escaped("a%b_c!d"), "a!%b!_c!!d");
        assert_eq!(like_escaped("plain"), "plain");
    }
}
