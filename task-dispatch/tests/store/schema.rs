//! Connecting: URLs, the SQLite directory, migrations when nodes start together, and the
//! indexes the dispatcher's queries read through. One backend each.

use task_dispatch::{Action, Error, Store};

use crate::common;
use crate::new_app;

#[tokio::test]
async fn sqlite_creates_the_missing_parent_directory() {
    let db = common::TestDb::sqlite().await;
    let path = db.url.trim_start_matches("sqlite://").to_owned();
    assert!(!std::path::Path::new(&path).exists());
    let store = db.store().await;
    assert!(std::path::Path::new(&path).exists());
    store.close().await;
    db.cleanup().await;
}

#[tokio::test]
async fn unsupported_and_unreachable_urls_fail_clearly() {
    let err = Store::connect("postgres://u:secret@h/db")
        .await
        .unwrap_err();
    assert!(matches!(err, Error::UnsupportedUrl(_)));
    assert!(!err.to_string().contains("secret"), "{err}");
    let err = Store::connect("mysql://root@127.0.0.1:1/nothing")
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Database(_)), "{err:?}");
}

const DIGITS: &str = "(SELECT 0 d UNION ALL SELECT 1 UNION ALL SELECT 2 UNION ALL SELECT 3 \
     UNION ALL SELECT 4 UNION ALL SELECT 5 UNION ALL SELECT 6 UNION ALL SELECT 7 \
     UNION ALL SELECT 8 UNION ALL SELECT 9)";

/// Nodes of a new cluster start together on an empty database: exactly one migrates, the
/// others wait for it (sqlx's own migration lock does not wait on MariaDB).
#[tokio::test]
async fn mysql_nodes_starting_together_migrate_once() {
    let db = common::TestDb::mysql().await;
    let connects = (0..6).map(|_| Store::connect(&db.url));
    for outcome in futures::future::join_all(connects).await {
        outcome.expect("every node connects while another migrates");
    }
    db.cleanup().await;
}

/// Issue 12, finding 16: the fenced writes count on REPEATABLE READ, so a server whose default
/// is READ COMMITTED must not change what the store's connections use. The test sets the
/// server's global default for a moment (every connection of this project sets its own level,
/// so nothing else running meanwhile depends on it) and restores it whatever happens.
#[tokio::test]
async fn mysql_connections_use_repeatable_read_whatever_the_server_default() {
    struct RestoreGlobal(common::TestDb, String);
    impl Drop for RestoreGlobal {
        fn drop(&mut self) {
            let sql = format!("SET GLOBAL tx_isolation = '{}'", self.1);
            let url = self.0.url.clone();
            // A runtime of its own: drop may run while the test's runtime unwinds.
            std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                runtime.block_on(async move {
                    use sqlx::{Connection, Executor};
                    let mut conn = sqlx::mysql::MySqlConnection::connect(&url).await.unwrap();
                    conn.execute(sqlx::AssertSqlSafe(sql)).await.unwrap();
                });
            })
            .join()
            .unwrap();
        }
    }
    let db = common::TestDb::mysql().await;
    let before = {
        use sqlx::Connection;
        let mut conn = sqlx::mysql::MySqlConnection::connect(&db.url)
            .await
            .unwrap();
        let level: String = sqlx::query_scalar("SELECT @@GLOBAL.tx_isolation")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        level
    };
    db.execute("SET GLOBAL tx_isolation = 'READ-COMMITTED'".to_owned())
        .await;
    let restore = RestoreGlobal(db, before);
    let store = restore.0.store().await;
    let level = store.isolation_level().await.unwrap();
    drop(store);
    drop(restore);
    assert_eq!(level.as_deref(), Some("REPEATABLE-READ"));
}

/// The dispatcher's queries read through their indexes, not the whole task or app table.
#[tokio::test]
async fn mysql_dispatcher_queries_use_indexes() {
    let db = common::TestDb::mysql().await;
    let store = db.store().await;
    let app = store.create_app(new_app("e")).await.unwrap();
    // A history of 10,000 finished tasks, as a long-lived cluster has, and one unfinished.
    db.execute(format!(
        "INSERT INTO tasks (app_id, action, status, attempts, version, created_at, updated_at) \
         SELECT {} + (a.d + 10 * b.d + 100 * c.d + 1000 * e.d) % 50, 'start', 'SUCCEEDED', \
             1, 2, 0, 0 \
         FROM {DIGITS} a, {DIGITS} b, {DIGITS} c, {DIGITS} e",
        app.id
    ))
    .await;
    // And 1,000 apps that have stopped, as the tasks' joins read them.
    db.execute(format!(
        "INSERT INTO apps (name, executor, spec, state, version, created_at, updated_at) \
         SELECT 'old', 'process', '{{}}', 'STOPPED', 1, 0, 0 FROM {DIGITS} a, {DIGITS} b, {DIGITS} c"
    ))
    .await;
    store
        .submit_task(app.id, Action::Start, None)
        .await
        .unwrap();
    db.execute("ANALYZE TABLE tasks, apps".to_owned()).await;
    let mut conn = <sqlx::mysql::MySqlConnection as sqlx::Connection>::connect(&db.url)
        .await
        .unwrap();
    for query in [
        // The poll, and the check of woken apps.
        "SELECT DISTINCT t.app_id, a.host FROM tasks t JOIN apps a ON a.id = t.app_id \
         WHERE t.status IN ('PENDING', 'RUNNING') ORDER BY t.app_id",
        "SELECT DISTINCT t.app_id, a.host FROM tasks t JOIN apps a ON a.id = t.app_id \
         WHERE t.status IN ('PENDING', 'RUNNING') AND t.app_id IN (1, 2, 3)",
        "SELECT id FROM tasks WHERE app_id = 1 AND status IN ('PENDING', 'RUNNING') ORDER BY id LIMIT 1",
        "SELECT id, host FROM apps WHERE state IN ('STARTING', 'RUNNING', 'STOPPING')",
        // The event stream's change feed (Store::tasks_updated_since), from a recent moment.
        "SELECT id FROM tasks WHERE updated_at >= 99999999999999 ORDER BY updated_at, id LIMIT 100",
    ] {
        let plan: Vec<(Option<String>, Option<String>, Option<String>)> =
            sqlx::query(sqlx::AssertSqlSafe(format!("EXPLAIN {query}")))
                .fetch_all(&mut conn)
                .await
                .unwrap()
                .into_iter()
                .map(|row: sqlx::mysql::MySqlRow| {
                    use sqlx::Row;
                    (row.get("type"), row.get("key"), row.get("rows"))
                })
                .collect();
        for (access, key, rows) in plan {
            assert_ne!(access.as_deref(), Some("ALL"), "{query}: full scan");
            assert!(key.is_some(), "{query}: no index");
            // EXPLAIN's `rows` is a VARCHAR on MariaDB.
            let rows: u64 = rows.expect("EXPLAIN gives a row estimate").parse().unwrap();
            assert!(rows < 100, "{query}: reads {rows} rows");
        }
    }
    drop(conn);
    db.cleanup().await;
}

/// The same on SQLite: every step of the plan is a SEARCH through an index, never a SCAN.
#[tokio::test]
async fn sqlite_dispatcher_queries_use_indexes() {
    let db = common::TestDb::sqlite().await;
    let store = db.store().await;
    let app = store.create_app(new_app("e")).await.unwrap();
    store
        .submit_task(app.id, Action::Start, None)
        .await
        .unwrap();
    let mut conn = <sqlx::sqlite::SqliteConnection as sqlx::Connection>::connect(&db.url)
        .await
        .unwrap();
    for query in [
        "SELECT DISTINCT t.app_id, a.host FROM tasks t JOIN apps a ON a.id = t.app_id \
         WHERE t.status IN ('PENDING', 'RUNNING') ORDER BY t.app_id",
        "SELECT DISTINCT t.app_id, a.host FROM tasks t JOIN apps a ON a.id = t.app_id \
         WHERE t.status IN ('PENDING', 'RUNNING') AND t.app_id IN (1, 2, 3)",
        "SELECT id FROM tasks WHERE app_id = 1 AND status IN ('PENDING', 'RUNNING') ORDER BY id LIMIT 1",
        "SELECT id, host FROM apps WHERE state IN ('STARTING', 'RUNNING', 'STOPPING')",
        "SELECT id FROM tasks WHERE updated_at >= 99999999999999 ORDER BY updated_at, id LIMIT 100",
        "SELECT id FROM apps WHERE updated_at >= 99999999999999 ORDER BY updated_at, id LIMIT 100",
    ] {
        let details: Vec<String> =
            sqlx::query(sqlx::AssertSqlSafe(format!("EXPLAIN QUERY PLAN {query}")))
                .fetch_all(&mut conn)
                .await
                .unwrap()
                .into_iter()
                .map(|row: sqlx::sqlite::SqliteRow| {
                    use sqlx::Row;
                    row.get::<String, _>("detail")
                })
                .collect();
        assert!(
            details.iter().any(|d| d.starts_with("SEARCH")),
            "{query}: {details:?}"
        );
        assert!(
            !details.iter().any(|d| d.starts_with("SCAN")),
            "{query}: {details:?}"
        );
    }
    drop(conn);
    store.close().await;
    db.cleanup().await;
}
