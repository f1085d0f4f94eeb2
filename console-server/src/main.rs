//! `console-server`: one node of the clustered console.
//!
//! ```text
//! console-server [--config FILE]        # or CONSOLE_CONFIG=FILE; no file: the embedded default
//! ```

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use console_server::ConsoleConfig;

/// Command line of `console-server`.
#[derive(Debug, Parser)]
#[command(
    version,
    about = "One node of the clustered stream-application console"
)]
struct Args {
    /// The YAML configuration file; without one the embedded default runs (standalone registry,
    /// SQLite under ./data). Any key can be overridden with CONSOLE__SECTION__KEY variables.
    #[arg(long, env = "CONSOLE_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    init_tracing();
    let config = match ConsoleConfig::load(args.config.as_deref()) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("console-server: configuration error: {error}");
            return ExitCode::from(2);
        }
    };
    let hooks = match console_server::BenchmarkHooks::from_env() {
        Ok(hooks) => hooks,
        Err(error) => {
            eprintln!("console-server: {error}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("console-server: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(console_server::run(config, hooks)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error}");
            eprintln!("console-server: {error}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only on a terminal: under systemd or redirected to a file they are noise.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .init();
}
