//! What the bench reads from outside the nodes: MariaDB's `SHOW GLOBAL STATUS`, ZooKeeper's
//! `mntr`, the nodes' `/metrics`, their RSS; and the arithmetic of the figures.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cluster_tests::services::{self, MariaDb};
use cluster_tests::{Api, RegistryKind};
use sqlx::mysql::MySqlConnection;
use sqlx::{AssertSqlSafe, Connection};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

/// Microseconds since the Unix epoch: the clock the noop executor's `started_at_us` reads.
pub fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| {
            i64::try_from(since.as_micros()).unwrap_or(i64::MAX)
        })
}

pub fn ms(duration: Duration) -> f64 {
    round3(duration.as_secs_f64() * 1000.0)
}

pub fn round3(value: f64) -> f64 {
    (value * 1000.0).round() / 1000.0
}

/// p50/p99/mean/max/min in milliseconds (nearest rank), 0 when empty.
#[derive(Debug, Default)]
pub struct Stats {
    pub p50: f64,
    pub p99: f64,
    pub mean: f64,
    pub max: f64,
    pub min: f64,
}

impl Stats {
    pub fn of(values: &[f64]) -> Self {
        if values.is_empty() {
            return Self::default();
        }
        let mut sorted = values.to_vec();
        sorted.sort_by(f64::total_cmp);
        let rank = |p: f64| {
            let index = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
            round3(sorted[index])
        };
        Self {
            p50: rank(0.50),
            p99: rank(0.99),
            mean: round3(sorted.iter().sum::<f64>() / sorted.len() as f64),
            max: round3(sorted[sorted.len() - 1]),
            min: round3(sorted[0]),
        }
    }
}

/// Counter deltas over one measurement window.
#[derive(Debug, Clone)]
pub struct Window {
    pub seconds: f64,
    pub questions: u64,
    pub selects: u64,
    /// `Rows_read` (MariaDB): what the statements cost, not only how many there were.
    pub rows_read: u64,
    pub zk_packets: Option<u64>,
    /// `cluster_test_*` databases on the server that are not this cluster's.
    pub other_test_databases: u64,
}

impl Window {
    pub fn questions_per_s(&self) -> f64 {
        self.questions as f64 / self.seconds
    }

    pub fn selects_per_s(&self) -> f64 {
        self.selects as f64 / self.seconds
    }

    pub fn rows_read_per_s(&self) -> f64 {
        self.rows_read as f64 / self.seconds
    }
}

/// One reading of the counters.
struct Reading {
    questions: u64,
    selects: u64,
    rows_read: u64,
    zk_packets: Option<u64>,
    at: Instant,
}

/// Reads the counters, waits `window`, reads them again. The bench's own statements in between
/// are the second `SHOW GLOBAL STATUS` (and the `mntr` connection for ZooKeeper): the same in
/// every window, so subtracting the background window removes them. `ours` are the databases
/// of the cluster measured (not counted as other test databases).
pub async fn measure_window(
    registry: RegistryKind,
    window: Duration,
    ours: &[String],
) -> Result<Window, String> {
    let mariadb = MariaDb::from_env();
    let mut connection = mariadb.connect().await?;
    let others_before = other_test_databases(&mut connection, ours).await?;
    let zookeeper = (registry == RegistryKind::Zookeeper).then(|| {
        services::zookeeper_servers()
            .split(',')
            .next()
            .unwrap_or_default()
            .to_owned()
    });
    let before = read_counters(&mut connection, zookeeper.as_deref()).await?;
    // The measurement window itself: nothing happens on purpose.
    tokio::time::sleep(window).await;
    let after = read_counters(&mut connection, zookeeper.as_deref()).await?;
    let others_after = other_test_databases(&mut connection, ours).await?;
    let _ = connection.close().await;
    Ok(Window {
        seconds: after.at.duration_since(before.at).as_secs_f64(),
        questions: after.questions.saturating_sub(before.questions),
        selects: after.selects.saturating_sub(before.selects),
        rows_read: after.rows_read.saturating_sub(before.rows_read),
        zk_packets: match (before.zk_packets, after.zk_packets) {
            (Some(before), Some(after)) => Some(after.saturating_sub(before)),
            _ => None,
        },
        other_test_databases: others_before.max(others_after),
    })
}

async fn read_counters(
    connection: &mut MySqlConnection,
    zookeeper: Option<&str>,
) -> Result<Reading, String> {
    let at = Instant::now();
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SHOW GLOBAL STATUS WHERE Variable_name IN ('Questions', 'Com_select', 'Rows_read')",
    )
    .fetch_all(&mut *connection)
    .await
    .map_err(|error| format!("SHOW GLOBAL STATUS: {error}"))?;
    let value = |name: &str| -> Result<u64, String> {
        rows.iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .and_then(|(_, value)| value.parse().ok())
            .ok_or_else(|| format!("SHOW GLOBAL STATUS has no {name}: {rows:?}"))
    };
    let zk_packets = match zookeeper {
        Some(server) => Some(zk_packets_received(server).await?),
        None => None,
    };
    Ok(Reading {
        questions: value("Questions")?,
        selects: value("Com_select")?,
        rows_read: value("Rows_read")?,
        zk_packets,
        at,
    })
}

/// `zk_packets_received` of ZooKeeper's `mntr` (whitelisted by `deploy/zookeeper.sh`).
async fn zk_packets_received(server: &str) -> Result<u64, String> {
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(server).await?;
        stream.write_all(b"mntr").await?;
        let mut text = String::new();
        stream.read_to_string(&mut text).await?;
        Ok::<_, std::io::Error>(text)
    };
    let text = tokio::time::timeout(Duration::from_secs(5), exchange)
        .await
        .map_err(|_| format!("mntr to {server} timed out"))?
        .map_err(|error| format!("mntr to {server}: {error}"))?;
    text.lines()
        .find_map(|line| {
            let (key, value) = line.split_once('\t')?;
            (key == "zk_packets_received").then(|| value.trim().parse().ok())?
        })
        .ok_or_else(|| {
            format!(
                "mntr of {server} has no zk_packets_received (is mntr in 4lw.commands.whitelist?): {:?}",
                text.chars().take(200).collect::<String>()
            )
        })
}

/// How many `cluster_test_*` databases other than `ours` the server has: another test run
/// that may load MariaDB while a window is measured.
async fn other_test_databases(
    connection: &mut MySqlConnection,
    ours: &[String],
) -> Result<u64, String> {
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME LIKE 'cluster\\_test\\_%'",
    )
    .fetch_all(&mut *connection)
    .await
    .map_err(|error| format!("listing databases: {error}"))?;
    Ok(names.iter().filter(|name| !ours.contains(name)).count() as u64)
}

pub async fn count_rows(mariadb: &MariaDb, database: &str, table: &str) -> Result<i64, String> {
    let mut connection = mariadb.connect().await?;
    let count = sqlx::query_scalar(AssertSqlSafe(format!(
        "SELECT COUNT(*) FROM `{database}`.`{table}`"
    )))
    .fetch_one(&mut connection)
    .await
    .map_err(|error| format!("counting {database}.{table}: {error}"));
    let _ = connection.close().await;
    count
}

/// VmRSS of process `pid` in MiB.
pub fn rss_mib(pid: i32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib: f64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(round3(kib / 1024.0))
}

/// Sums a counter over the `/metrics` of `apis` (node id and API).
pub async fn counter_sum(apis: &[(String, Api)], name: &str) -> f64 {
    let mut sum = 0.0;
    for (node, api) in apis {
        let text = api
            .metrics()
            .await
            .unwrap_or_else(|error| panic!("scraping {node}: {error}"));
        sum += metric(&text, name).unwrap_or(0.0);
    }
    sum
}

/// The value of the sample `key` (a metric name, with its labels if it has any) in Prometheus
/// text; counters are also found under their `_total` name.
pub fn metric(text: &str, key: &str) -> Option<f64> {
    let total = format!("{key}_total");
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| {
            let (name, value) = line.rsplit_once(' ')?;
            (name == key || name == total)
                .then(|| value.trim().parse().ok())
                .flatten()
        })
}
