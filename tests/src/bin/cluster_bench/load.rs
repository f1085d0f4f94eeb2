//! Where a scenario's work went: CPU time of MariaDB, of each node and of the bench itself (from
//! `/proc/<pid>/stat`), and the statements MariaDB executed (`Questions`), between the start and
//! the end of a window. Added, issue 15: the bottleneck shows in the output, not in a note.

use std::collections::BTreeMap;

use serde_json::{Value, json};
use tokio::time::Instant;

use crate::measure::round3;
use crate::setup::Bench;

/// A window being measured; [`LoadMeter::finish`] reads the counters again.
pub struct LoadMeter {
    processes: Vec<(String, u32)>,
    ticks: Vec<Option<u64>>,
    questions: Option<u64>,
    at: Instant,
}

/// What a window cost.
pub struct Load {
    /// Percent of one core per process (`mariadb`, each node id, `bench`); 200 is the whole
    /// two-core machine.
    pub cpu_pct: BTreeMap<String, f64>,
    /// Statements MariaDB executed in the window, all clients (the cluster's registry, if it
    /// is MySQL, included).
    pub statements: Option<u64>,
}

impl LoadMeter {
    /// Starts a window over MariaDB, the bench's live nodes and the bench process.
    pub async fn start(bench: &Bench) -> Self {
        let mut processes = Vec::new();
        if let Some(pid) = mariadb_pid() {
            processes.push(("mariadb".to_owned(), pid));
        }
        for index in bench.cluster.live() {
            let node = bench.cluster.node(index);
            if let Some(pid) = node.pid().and_then(|pid| u32::try_from(pid).ok()) {
                processes.push((node.id.clone(), pid));
            }
        }
        processes.push(("bench".to_owned(), std::process::id()));
        let questions = questions().await;
        let ticks = processes.iter().map(|(_, pid)| cpu_ticks(*pid)).collect();
        Self {
            processes,
            ticks,
            questions,
            at: Instant::now(),
        }
    }

    /// Ends the window.
    pub async fn finish(self) -> Load {
        let seconds = self.at.elapsed().as_secs_f64();
        let per_second = clock_ticks_per_second();
        let mut cpu_pct = BTreeMap::new();
        for ((name, pid), before) in self.processes.iter().zip(&self.ticks) {
            if let (Some(before), Some(after)) = (before, cpu_ticks(*pid)) {
                let busy = after.saturating_sub(*before) as f64 / per_second;
                cpu_pct.insert(name.clone(), round3(100.0 * busy / seconds));
            }
        }
        let statements = match (self.questions, questions().await) {
            // The second reading's own statement is not the cluster's.
            (Some(before), Some(after)) => Some(after.saturating_sub(before).saturating_sub(1)),
            _ => None,
        };
        Load {
            cpu_pct,
            statements,
        }
    }
}

impl Load {
    /// `{"cpu_pct": {...}, "nodes_cpu_pct": x, "statements": n, "statements_per_task": x}` for
    /// `tasks` tasks.
    pub fn json(&self, tasks: usize) -> Value {
        json!({
            "cpu_pct": self.cpu_pct,
            "nodes_cpu_pct": self.nodes_cpu_pct(),
            "statements": self.statements,
            "statements_per_task": self.statements_per(tasks),
        })
    }

    pub fn statements_per(&self, tasks: usize) -> Option<f64> {
        self.statements
            .filter(|_| tasks > 0)
            .map(|statements| round3(statements as f64 / tasks as f64))
    }

    /// The CPU of the cluster's nodes together (every process but MariaDB and the bench).
    pub fn nodes_cpu_pct(&self) -> f64 {
        round3(
            self.cpu_pct
                .iter()
                .filter(|(name, _)| !matches!(name.as_str(), "mariadb" | "bench"))
                .map(|(_, pct)| pct)
                .sum(),
        )
    }

    /// `mariadb 120%, n1 30%, ...` for the log.
    pub fn cpu_line(&self) -> String {
        self.cpu_pct
            .iter()
            .map(|(name, pct)| format!("{name} {pct:.0}%"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// MariaDB's `Questions` counter (statements sent by clients), or `None` if unreadable.
async fn questions() -> Option<u64> {
    let mut connection = cluster_tests::services::MariaDb::from_env()
        .connect()
        .await
        .ok()?;
    let row: (String, String) = sqlx::query_as("SHOW GLOBAL STATUS LIKE 'Questions'")
        .fetch_one(&mut connection)
        .await
        .ok()?;
    row.1.parse().ok()
}

/// The pid of the MariaDB server on this machine (`mariadbd`, or `mysqld` on older packages).
fn mariadb_pid() -> Option<u32> {
    std::fs::read_dir("/proc").ok()?.find_map(|entry| {
        let entry = entry.ok()?;
        let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
        let comm = std::fs::read_to_string(entry.path().join("comm")).ok()?;
        matches!(comm.trim(), "mariadbd" | "mysqld").then_some(pid)
    })
}

/// User plus system CPU time of `pid`, in clock ticks (fields 14 and 15 of `/proc/<pid>/stat`;
/// counted after the command name, which may contain spaces).
fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

fn clock_ticks_per_second() -> f64 {
    // SAFETY: sysconf only reads a configuration value.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 { ticks as f64 } else { 100.0 }
}
