//! The `billrun` command line: parse, build a context, run the command. The only place that
//! reads the wall clock or the environment.

mod cli;

use std::io::IsTerminal;
use std::process::ExitCode;

use chrono::Utc;
use clap::Parser;

use cli::args::{Cli, LogFormat};
use cli::{Context, EXIT_FAILURE, EXIT_INPUT, Failure};

// Closing a month allocates millions of small values across the async and SQLite threads;
// mimalloc handles that with far less contention than the system allocator.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let args = Cli::parse();
    if let Ok(point) = std::env::var("BILLRUN_FAILPOINT") {
        billrun::failpoint::arm(point);
    }
    init_logging(args.log_format);
    let cx = Context {
        clock: Box::new(Utc::now),
        lease_owner: lease_owner(),
        terminal: std::io::stderr().is_terminal(),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: starting the runtime: {e}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    match runtime.block_on(cli::run(args, &cx)) {
        Ok(code) => ExitCode::from(code),
        Err(Failure::Input(msg)) => {
            eprintln!("error: {msg}");
            ExitCode::from(EXIT_INPUT)
        }
        Err(Failure::Other(e)) => {
            eprintln!("error: {e:#}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("BILLRUN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Plain => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// This process's lease token: host, process id and start, unique among running instances.
fn lease_owner() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "host".to_string());
    format!(
        "{host}:{}:{}",
        std::process::id(),
        Utc::now().timestamp_micros()
    )
}
