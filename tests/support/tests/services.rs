//! The guards of the shared services remove what they made, and a missing service fails the
//! test with a message naming the script that starts it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use test_support::mariadb::{MariaDb, TestDatabase};
use test_support::ports::free_port;
use test_support::zookeeper::{self, Namespace};
use zookeeper_client as zk;

#[tokio::test]
#[should_panic(expected = "deploy/mariadb.sh start")]
async fn mysql_a_missing_server_names_the_script_that_starts_it() {
    let server = MariaDb {
        host_port: format!("127.0.0.1:{}", free_port()),
        ..MariaDb::from_env()
    };
    server.create_database("support_test_never").await;
}

#[tokio::test]
#[should_panic(expected = "deploy/zookeeper.sh start")]
async fn zk_a_missing_server_names_the_script_that_starts_it() {
    Namespace::new(&format!("127.0.0.1:{}", free_port()), "support-test").await;
}

/// Whether database `name` exists.
async fn database_exists(server: &MariaDb, name: &str) -> bool {
    let mut admin = server.connect().await.unwrap();
    let found: Option<String> = sqlx::query_scalar(
        "SELECT schema_name FROM information_schema.schemata WHERE schema_name = ?",
    )
    .bind(name)
    .fetch_optional(&mut admin)
    .await
    .unwrap();
    found.is_some()
}

#[tokio::test]
async fn mysql_a_test_database_is_dropped_with_its_open_connections() {
    let database = TestDatabase::create("support_test").await;
    let name = database.name().to_owned();
    let server = database.server().clone();
    let mut open = database.connect().await;
    sqlx::query("CREATE TABLE t (id INT PRIMARY KEY)")
        .execute(&mut open)
        .await
        .unwrap();
    assert!(database_exists(&server, &name).await);
    assert!(
        TestDatabase::attach(&name)
            .url()
            .ends_with(&format!("/{name}")),
        "an attached handle names the same database"
    );
    assert!(
        database_exists(&server, &name).await,
        "dropping an attached handle leaves the database alone"
    );

    drop(database);
    assert!(!database_exists(&server, &name).await, "{name} left behind");
    assert!(
        sqlx::query("SELECT 1").execute(&mut open).await.is_err(),
        "the open connection was ended"
    );
}

/// Creates `paths` below `root` (and `root` itself), open to anyone.
async fn create_tree(client: &zk::Client, root: &str, paths: &[&str]) {
    let persistent = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
    for path in [""].iter().chain(paths) {
        client
            .create(&format!("{root}{path}"), b"x", &persistent)
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn zk_a_namespace_is_deleted_with_its_tree() {
    let servers = zookeeper::servers();
    let client = zk::Client::connect(&servers).await.unwrap();
    let tree = ["/nodes", "/nodes/console", "/nodes/console/n1", "/leader"];

    let explicit = Namespace::new(&servers, "support-test").await;
    create_tree(&client, explicit.path(), &tree).await;
    explicit.delete().await;
    assert_eq!(client.check_stat(explicit.path()).await.unwrap(), None);

    let dropped = Namespace::new(&servers, "support-test").await;
    let path = dropped.path().to_owned();
    create_tree(&client, &path, &tree).await;
    drop(Namespace::attach(&servers, &path));
    assert!(
        client.check_stat(&path).await.unwrap().is_some(),
        "dropping an attached handle leaves the namespace alone"
    );
    drop(dropped);
    assert_eq!(client.check_stat(&path).await.unwrap(), None);
}

#[tokio::test]
#[should_panic(expected = "deploy/etcd.sh start")]
async fn etcd_a_missing_server_names_the_script_that_starts_it() {
    test_support::etcd::Namespace::new(&format!("127.0.0.1:{}", free_port()), "support-test").await;
}

#[tokio::test]
async fn etcd_a_namespace_is_deleted_with_its_keys() {
    use test_support::etcd;
    let endpoints = etcd::endpoints();
    let mut client = etcd::client(&endpoints).await.unwrap();
    let keys_below = |client: &mut etcd_client::Client, path: String| {
        let mut client = client.clone();
        async move {
            let options = etcd_client::GetOptions::new()
                .with_prefix()
                .with_count_only();
            client
                .get(format!("{path}/"), Some(options))
                .await
                .unwrap()
                .count()
        }
    };

    let explicit = etcd::Namespace::new(&endpoints, "support-test").await;
    client
        .put(format!("{}/keys/a", explicit.path()), "1", None)
        .await
        .unwrap();
    explicit.delete().await;
    assert_eq!(keys_below(&mut client, explicit.path().to_owned()).await, 0);

    let dropped = etcd::Namespace::new(&endpoints, "support-test").await;
    let path = dropped.path().to_owned();
    client
        .put(format!("{path}/locks/b/1"), "", None)
        .await
        .unwrap();
    drop(etcd::Namespace::attach(&endpoints, &path));
    assert_eq!(
        keys_below(&mut client, path.clone()).await,
        1,
        "an attached handle leaves it alone"
    );
    drop(dropped);
    assert_eq!(keys_below(&mut client, path).await, 0);
}
