//! Measures the database load of idle registry clients: statements per second per client at
//! rest, against a baseline with no client measured in the same run.
//!
//! ```text
//! cargo run --release -p registry-mysql --example idle_load -- [--clients 10] [--seconds 10] [--heartbeat-ms 1000]
//! ```
//!
//! Uses `CONSOLE_TEST_MYSQL_URL` (default `mysql://root@127.0.0.1:3306`), creates and drops a
//! database of its own, and prints one JSON line. The counter is the server's global `Questions`
//! (statements sent by clients; prepares and pings are not counted), so run it on a quiet
//! server. Each client holds one subscription, so its poll carries the event branch. The target
//! is one heartbeat plus one poll per interval: `2000 / heartbeat_ms` statements per second.

use std::str::FromStr;
use std::time::{Duration, Instant};

use registry_api::{Registry, Secret};
use registry_mysql::{MysqlConfig, MysqlRegistry};
use sqlx::mysql::{MySqlConnectOptions, MySqlConnection};
use sqlx::{AssertSqlSafe, ConnectOptions, Connection};

struct Args {
    clients: usize,
    seconds: u64,
    heartbeat_ms: u64,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        clients: 10,
        seconds: 10,
        heartbeat_ms: 1_000,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let number = |v: &str| v.parse::<u64>().map_err(|e| format!("{flag} {v}: {e}"));
        match flag.as_str() {
            "--clients" => args.clients = number(&value)? as usize,
            "--seconds" => args.seconds = number(&value)?,
            "--heartbeat-ms" => args.heartbeat_ms = number(&value)?,
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    if args.clients == 0 || args.seconds == 0 || args.heartbeat_ms == 0 {
        return Err("--clients, --seconds and --heartbeat-ms must be positive".to_owned());
    }
    Ok(args)
}

/// `(host:port, username, password)` from `CONSOLE_TEST_MYSQL_URL`.
fn server() -> (String, String, String) {
    let url = std::env::var("CONSOLE_TEST_MYSQL_URL")
        .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306".to_owned());
    let rest = url.strip_prefix("mysql://").unwrap_or(&url);
    let authority = rest.split('/').next().unwrap_or_default();
    let (user_info, host_port) = authority.rsplit_once('@').unwrap_or(("root", authority));
    let (user, password) = user_info.split_once(':').unwrap_or((user_info, ""));
    (host_port.to_owned(), user.to_owned(), password.to_owned())
}

async fn counters(admin: &mut MySqlConnection) -> Result<(u64, u64), sqlx::Error> {
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SHOW GLOBAL STATUS WHERE Variable_name IN ('Questions', 'Com_stmt_prepare')",
    )
    .fetch_all(&mut *admin)
    .await?;
    let get = |name: &str| {
        rows.iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0)
    };
    Ok((get("Questions"), get("Com_stmt_prepare")))
}

/// Statements and prepares per second over `seconds`.
async fn rate(admin: &mut MySqlConnection, seconds: u64) -> Result<(f64, f64), sqlx::Error> {
    let (q0, p0) = counters(admin).await?;
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let (q1, p1) = counters(admin).await?;
    let elapsed = started.elapsed().as_secs_f64();
    Ok((
        (q1.saturating_sub(q0)) as f64 / elapsed,
        (p1.saturating_sub(p0)) as f64 / elapsed,
    ))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = parse_args()?;
    let (host_port, user, password) = server();
    let mut options =
        MySqlConnectOptions::from_str(&format!("mysql://{host_port}"))?.username(&user);
    if !password.is_empty() {
        options = options.password(&password);
    }
    let mut admin = options.connect().await.map_err(|error| {
        format!("MariaDB/MySQL at {host_port} does not answer ({error}); start it with `deploy/mariadb.sh start`")
    })?;
    let database = format!("registry_idle_{}", std::process::id());
    sqlx::query(AssertSqlSafe(format!("CREATE DATABASE `{database}`")))
        .execute(&mut admin)
        .await?;

    let outcome = measure(&args, &mut admin, &host_port, &user, &password, &database).await;

    sqlx::query(AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS `{database}`"
    )))
    .execute(&mut admin)
    .await?;
    admin.close().await?;
    let line = outcome?;
    println!("{line}");
    Ok(())
}

async fn measure(
    args: &Args,
    admin: &mut MySqlConnection,
    host_port: &str,
    user: &str,
    password: &str,
    database: &str,
) -> Result<String, Box<dyn std::error::Error>> {
    let (baseline, _) = rate(admin, args.seconds).await?;

    let config = MysqlConfig {
        url: format!("mysql://{host_port}/{database}"),
        username: user.to_owned(),
        password: Secret::new(password),
        heartbeat_interval_ms: args.heartbeat_ms,
        session_timeout_ms: args.heartbeat_ms * 5,
        table_prefix: "registry_".to_owned(),
    };
    let mut clients = Vec::new();
    let mut subscriptions = Vec::new();
    for i in 0..args.clients {
        let client = MysqlRegistry::new(config.clone())?;
        client.connect(Duration::from_secs(15)).await?;
        client
            .put(
                &format!("/idle/node-{i}"),
                b"up",
                registry_api::Mode::Ephemeral,
            )
            .await?;
        subscriptions.push(client.subscribe("/idle").await?);
        clients.push(client);
    }
    // Let the start-up writes' events be read and every client settle into its rhythm.
    tokio::time::sleep(Duration::from_millis(args.heartbeat_ms * 3)).await;
    let (loaded, prepares) = rate(admin, args.seconds).await?;

    for client in &clients {
        client.close().await?;
    }
    drop(subscriptions);

    let per_client = (loaded - baseline).max(0.0) / args.clients as f64;
    let target = 2_000.0 / args.heartbeat_ms as f64;
    Ok(format!(
        "{{\"clients\":{},\"seconds\":{},\"heartbeat_ms\":{},\"baseline_qps\":{:.2},\"loaded_qps\":{:.2},\
         \"qps_per_client\":{:.3},\"target_per_client\":{:.3},\"ratio_to_target\":{:.3},\"prepares_per_s\":{:.2}}}",
        args.clients,
        args.seconds,
        args.heartbeat_ms,
        baseline,
        loaded,
        per_client,
        target,
        per_client / target,
        prepares
    ))
}
