//! The command line, and what it selects: registries, dispatch modes, scenarios.

use clap::{Parser, ValueEnum};
use cluster_tests::RegistryKind;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RegistryArg {
    Zookeeper,
    Mysql,
    Both,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ModeArg {
    Ours,
    Baseline,
    Both,
}

/// How the nodes dispatch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Mode {
    /// This project: wake-ups, an indexed 1 s fallback poll.
    Ours,
    /// `CONSOLE_BENCHMARK_DISPATCH=streampark`.
    Baseline,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Self::Ours => "ours",
            Self::Baseline => "baseline",
        }
    }
}

/// `zookeeper ours`: how progress lines and warnings name one run.
pub fn run_label(registry: RegistryKind, mode: Mode) -> String {
    format!("{} {}", registry.config_name(), mode.name())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, ValueEnum)]
pub enum Scenario {
    Latency,
    Throughput,
    Idle,
    Failover,
    Handoff,
    Memory,
    /// Added (issue 13); not in the default list: it needs Flink (a private session cluster).
    Flink,
}

/// The command line.
#[derive(Debug, Clone, Parser)]
#[command(about = "Benchmarks 3-node console clusters: ours against the StreamPark baseline")]
pub struct Args {
    /// The registry (or both, one after the other).
    #[arg(long, value_enum, default_value = "both")]
    registry: RegistryArg,
    /// The dispatch mode (or both, one after the other).
    #[arg(long, value_enum, default_value = "both")]
    mode: ModeArg,
    /// The scenarios to run (they always run in the documented order).
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "latency,throughput,idle,failover,handoff,memory"
    )]
    scenario: Vec<Scenario>,
    /// Apps of the throughput, idle and memory scenarios.
    #[arg(long, default_value_t = 1000)]
    pub apps: usize,
    /// Sequential samples of the latency scenario (one fresh app each).
    #[arg(long, default_value_t = 200)]
    pub latency_samples: usize,
    /// Requests in flight in the throughput scenario and during set-up.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// Length of the idle window (and of the background window before it), in seconds.
    #[arg(long, default_value_t = 20)]
    pub idle_seconds: u64,
    /// RUNNING apps of the failover and handoff cluster.
    #[arg(long, default_value_t = 300)]
    pub failover_apps: usize,
    /// Sequential starts of the flink scenario (one fresh app each).
    #[arg(long, default_value_t = 20)]
    pub flink_samples: usize,
    /// Jobs RUNNING in the flink scenario's second window (its private Flink gets 2 slots more).
    #[arg(long, default_value_t = 50)]
    pub flink_jobs: usize,
    /// Length of each of the flink scenario's windows, in seconds.
    #[arg(long, default_value_t = 20)]
    pub flink_window_seconds: u64,
    /// `registry.mysql.heartbeat_interval_ms` (the harness's short test timing by default;
    /// DESIGN.md's default is 1000).
    #[arg(long, default_value_t = 200)]
    pub mysql_heartbeat_ms: u64,
    /// `registry.mysql.session_timeout_ms` (DESIGN.md's default is 5000).
    #[arg(long, default_value_t = 1000)]
    pub mysql_session_ms: u64,
}

impl Args {
    pub fn runs(&self, scenario: Scenario) -> bool {
        self.scenario.contains(&scenario)
    }

    pub fn registries(&self) -> Vec<RegistryKind> {
        match self.registry {
            RegistryArg::Zookeeper => vec![RegistryKind::Zookeeper],
            RegistryArg::Mysql => vec![RegistryKind::Mysql],
            RegistryArg::Both => vec![RegistryKind::Zookeeper, RegistryKind::Mysql],
        }
    }

    pub fn modes(&self) -> Vec<Mode> {
        match self.mode {
            ModeArg::Ours => vec![Mode::Ours],
            ModeArg::Baseline => vec![Mode::Baseline],
            ModeArg::Both => vec![Mode::Ours, Mode::Baseline],
        }
    }
}
