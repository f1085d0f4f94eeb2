//! Checks for what else loads the host or the services while the bench measures: other test
//! runs (their databases, consoles and apps), compilers, other MariaDB/ZooKeeper clients. What
//! they find is a warning in [`Figures`], listed under the summary table; nothing is retried
//! but the background window.

use std::time::Duration;

use cluster_tests::{RegistryKind, processes};

use crate::measure::{Window, measure_window};
use crate::report::Figures;
use crate::setup::Bench;

/// A background window counts as quiet below this many statements per second (the bench's own
/// second `SHOW GLOBAL STATUS` is one per window).
const QUIET_QUESTIONS_PER_S: f64 = 0.5;
/// Background windows tried before the quietest one is taken anyway.
const BACKGROUND_ATTEMPTS: usize = 3;

/// Nothing but the bench's own statements in `window`, and no other test database around.
pub fn is_quiet(window: &Window) -> bool {
    window.questions_per_s() < QUIET_QUESTIONS_PER_S && window.other_test_databases == 0
}

/// The background window before a cluster starts: retried while it is not quiet (another
/// client loads MariaDB or ZooKeeper), up to [`BACKGROUND_ATTEMPTS`] times; the quietest is
/// taken, with a warning if none was quiet.
pub async fn quiet_background(
    registry: RegistryKind,
    length: Duration,
    label: &str,
    figures: &mut Figures,
) -> Window {
    let mut quietest: Option<Window> = None;
    for attempt in 1..=BACKGROUND_ATTEMPTS {
        eprintln!(
            "background window {attempt}: {length:?} of MariaDB/ZooKeeper counters before the cluster starts"
        );
        let window = measure_window(registry, length, &[])
            .await
            .unwrap_or_else(|error| panic!("background window: {error}"));
        let quiet = is_quiet(&window);
        if !quiet {
            eprintln!(
                "background window {attempt} is not quiet: {} statements, {} other test databases",
                window.questions, window.other_test_databases
            );
        }
        if quietest
            .as_ref()
            .is_none_or(|best| window.questions < best.questions)
        {
            quietest = Some(window);
        }
        if quiet {
            break;
        }
    }
    let Some(window) = quietest else {
        panic!("no background window was measured");
    };
    if !is_quiet(&window) {
        figures.warn(format!(
            "{label} idle: no quiet background window in {BACKGROUND_ATTEMPTS} attempts; the \
             quietest had {} statements in {:.1} s and {} other test databases, so the idle \
             figures are off by about that much",
            window.questions, window.seconds, window.other_test_databases
        ));
    }
    window
}

/// Warns when `count` other `cluster_test_*` databases were seen at either end of an idle
/// window of run `label`.
pub fn check_other_databases(label: &str, count: u64, figures: &mut Figures) {
    if count > 0 {
        figures.warn(format!(
            "{label} idle: {count} other cluster_test_* databases existed at the \
             start or end of a window: another test run may have loaded MariaDB meanwhile"
        ));
    }
}

/// Warns when processes of other test runs (their consoles and apps) or compilers run on
/// the host: they take CPU from the cluster of `bench` (a point sample from `/proc`).
pub fn check_neighbours(bench: &Bench, when: &str, figures: &mut Figures) {
    let tag = bench.cluster.run_dir().display().to_string();
    let mut others = 0;
    let mut compilers = 0;
    for process in processes::all_processes() {
        if process
            .env(processes::RUN_TAG_VAR)
            .is_some_and(|other| other != tag)
        {
            others += 1;
        } else if process
            .cmdline
            .first()
            .is_some_and(|program| program.ends_with("rustc"))
        {
            compilers += 1;
        }
    }
    if others + compilers > 0 {
        figures.warn(format!(
            "{} {when}: {others} processes of other test runs and {compilers} rustc \
             processes were running on this host; CPU-bound figures may be disturbed",
            bench.label()
        ));
    }
}
