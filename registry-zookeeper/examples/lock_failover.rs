//! How long a waiter waits for a lock whose holder was killed with SIGKILL, against a real
//! ZooKeeper; the baseline, measured in the same run, is a graceful hand-over (release → waiter).
//!
//! ```text
//! cargo run --release -p registry-zookeeper --example lock_failover -- \
//!     [--servers 127.0.0.1:2181] [--session-timeout-ms 2000] [--runs 7]
//! ```
//!
//! Each run starts this program again as a child process that takes the lock and reports its
//! fencing token, queues a waiter in this process, kills the child with SIGKILL and times how long
//! the waiter takes to get the lock. It prints one JSON line:
//! `{"session_timeout_ms","runs","sigkill_to_lock_ms":{"median","min","max"},
//!   "release_to_lock_ms":{"median","min","max"},"median_over_session_timeout",
//!   "median_over_release"}`.

use std::error::Error;
use std::process::Stdio;
use std::time::{Duration, Instant};

use registry_api::Registry;
use registry_zookeeper::{ZookeeperConfig, ZookeeperRegistry};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::Command;

const LOCK: &str = "/failover/lock";
const HOLDING: &str = "HOLDING";

type Result<T> = std::result::Result<T, Box<dyn Error>>;

#[derive(Debug, Clone)]
struct Options {
    servers: String,
    session_timeout_ms: u64,
    runs: usize,
}

fn options(args: &[String]) -> Result<Options> {
    let mut options = Options {
        servers: std::env::var("CONSOLE_TEST_ZK").unwrap_or_else(|_| "127.0.0.1:2181".to_owned()),
        session_timeout_ms: 2000,
        runs: 7,
    };
    let mut args = args.iter();
    while let Some(flag) = args.next() {
        let value = args.next().ok_or(format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--servers" => options.servers = value.clone(),
            "--session-timeout-ms" => options.session_timeout_ms = value.parse()?,
            "--runs" => options.runs = value.parse()?,
            other => return Err(format!("unknown option {other}").into()),
        }
    }
    if options.runs == 0 {
        return Err("--runs must be at least 1".into());
    }
    Ok(options)
}

fn config(options: &Options, namespace: &str) -> ZookeeperConfig {
    ZookeeperConfig {
        servers: options.servers.clone(),
        namespace: namespace.to_owned(),
        session_timeout_ms: options.session_timeout_ms,
        connect_timeout_ms: 10_000,
        ..ZookeeperConfig::default()
    }
}

async fn connected(config: ZookeeperConfig) -> Result<ZookeeperRegistry> {
    let client = ZookeeperRegistry::new(config)?;
    client
        .connect(Duration::from_secs(10))
        .await
        .map_err(|error| format!("{error}; is ZooKeeper running? (deploy/zookeeper.sh start)"))?;
    Ok(client)
}

/// The child: take the lock, say so, hold it until killed.
async fn hold(options: &Options, namespace: &str) -> Result<()> {
    let client = connected(config(options, namespace)).await?;
    let guard = client.lock(LOCK, Some(Duration::from_secs(30))).await?;
    println!("{HOLDING} {}", guard.fencing_token());
    let mut stdin = tokio::io::stdin();
    let mut buf = [0u8; 16];
    while matches!(stdin.read(&mut buf).await, Ok(n) if n > 0) {}
    Ok(())
}

/// Waits until a second contender is queued on the lock.
async fn wait_queued(client: &ZookeeperRegistry) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while client.children(LOCK).await?.len() < 2 {
        if Instant::now() > deadline {
            return Err("the waiter did not queue up within 10s".into());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(())
}

/// One SIGKILL run: the time from the kill to the waiter holding the lock.
async fn sigkill_run(
    options: &Options,
    namespace: &str,
    waiter: &ZookeeperRegistry,
) -> Result<Duration> {
    let mut child = Command::new(std::env::current_exe()?)
        .args(["--hold", namespace, "--servers", &options.servers])
        .args([
            "--session-timeout-ms",
            &options.session_timeout_ms.to_string(),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let stdout = child.stdout.take().ok_or("child stdout is not piped")?;
    let mut lines = BufReader::new(stdout).lines();
    let token: u64 = loop {
        let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .map_err(|_| "the holder did not report within 30s")??
            .ok_or("the holder exited before taking the lock")?;
        if let Some(token) = line.strip_prefix(HOLDING) {
            break token.trim().parse()?;
        }
    };
    let attempt = waiter.lock(LOCK, Some(Duration::from_secs(60)));
    tokio::pin!(attempt);
    tokio::select! {
        got = &mut attempt => return Err(format!("the waiter got the lock while it was held: {got:?}").into()),
        queued = wait_queued(waiter) => queued?,
    }
    child.start_kill()?; // SIGKILL
    let killed = Instant::now();
    let guard = attempt.await?;
    let took = killed.elapsed();
    child.wait().await?;
    if guard.fencing_token() <= token {
        return Err(format!(
            "token {} after the killed holder's {token}",
            guard.fencing_token()
        )
        .into());
    }
    guard.release().await?;
    Ok(took)
}

/// One baseline run: the time from a graceful release to the waiter holding the lock.
async fn release_run(holder: &ZookeeperRegistry, waiter: &ZookeeperRegistry) -> Result<Duration> {
    let guard = holder.lock(LOCK, Some(Duration::from_secs(10))).await?;
    let attempt = waiter.lock(LOCK, Some(Duration::from_secs(10)));
    tokio::pin!(attempt);
    tokio::select! {
        got = &mut attempt => return Err(format!("the waiter got a held lock: {got:?}").into()),
        queued = wait_queued(waiter) => queued?,
    }
    let released = Instant::now();
    guard.release().await?;
    let next = attempt.await?;
    let took = released.elapsed();
    next.release().await?;
    Ok(took)
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn summary(mut samples: Vec<Duration>) -> (f64, f64, f64) {
    samples.sort();
    let median = samples[samples.len() / 2];
    let min = samples.first().copied().unwrap_or_default();
    let max = samples.last().copied().unwrap_or_default();
    (millis(median), millis(min), millis(max))
}

async fn measure(options: &Options) -> Result<()> {
    let namespace = format!("/lock-failover-{}", uuid::Uuid::new_v4().simple());
    let waiter = connected(config(options, &namespace)).await?;
    let holder = connected(config(options, &namespace)).await?;
    let mut kills = Vec::new();
    let mut releases = Vec::new();
    for _ in 0..options.runs {
        kills.push(sigkill_run(options, &namespace, &waiter).await?);
        releases.push(release_run(&holder, &waiter).await?);
    }
    let session_timeout = waiter.session_timeout();
    holder.close().await?;
    waiter.close().await?;
    let admin = connected(config(options, "/")).await?;
    admin.delete(&namespace).await?;
    admin.close().await?;

    let (kill_median, kill_min, kill_max) = summary(kills);
    let (release_median, release_min, release_max) = summary(releases);
    println!(
        "{}",
        serde_json::json!({
            "session_timeout_ms": session_timeout.as_millis() as u64,
            "runs": options.runs,
            "sigkill_to_lock_ms": { "median": kill_median, "min": kill_min, "max": kill_max },
            "release_to_lock_ms": { "median": release_median, "min": release_min, "max": release_max },
            "median_over_session_timeout": kill_median / millis(session_timeout),
            "median_over_release": kill_median / release_median,
        })
    );
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--hold") {
        let namespace = args.get(1).ok_or("--hold needs a namespace")?.clone();
        return hold(&options(&args[2..])?, &namespace).await;
    }
    measure(&options(&args)?).await
}
