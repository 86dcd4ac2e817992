//! The `billrun` command line: parse, build a context, run the command. The only place that
//! reads the wall clock or the environment.

mod cli;

use std::io::IsTerminal;
use std::process::ExitCode;

use chrono::Utc;
use clap::Parser;

use cli::args::{Cli, LogFormat};
use cli::output::LogWriter;
use cli::{Context, EXIT_FAILURE, EXIT_INPUT, Failure};

// Closing a month allocates millions of small values across the async and SQLite threads;
// mimalloc handles that with far less contention than the system allocator.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The log filter when `BILLRUN_LOG` is unset: billrun's own lines, and only warnings from the
/// database driver and the cron library, which are chatty at `info`.
const DEFAULT_LOG: &str = "info,sqlx=warn,tokio_cron_scheduler=warn";

fn main() -> ExitCode {
    let args = Cli::parse();
    // Test hooks exist only in debug builds: no environment variable can crash a release.
    #[cfg(debug_assertions)]
    if let Ok(point) = std::env::var("BILLRUN_FAILPOINT") {
        billrun::failpoint::arm(point);
    }
    let terminal = std::io::stderr().is_terminal();
    let writer = LogWriter::new(args.secrets());
    let colour = terminal && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    init_logging(args.log_format, colour, writer.clone());
    let cx = Context {
        clock: Box::new(Utc::now),
        lease_owner: lease_owner(),
        holder_gone: std::sync::Arc::new(holder_gone),
        terminal,
        user: ["USER", "LOGNAME"]
            .into_iter()
            .find_map(|name| std::env::var(name).ok().filter(|u| !u.trim().is_empty())),
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
            eprintln!("error: {}", writer.scrub(&msg));
            ExitCode::from(EXIT_INPUT)
        }
        Err(Failure::Other(e)) => {
            eprintln!("error: {}", writer.scrub(&format!("{e:#}")));
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

/// Log lines on stderr: `BILLRUN_LOG` filters them (default [`DEFAULT_LOG`]); colours only on
/// a terminal and never with `NO_COLOR` set.
fn init_logging(format: LogFormat, colour: bool, writer: LogWriter) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("BILLRUN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(DEFAULT_LOG));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour)
        .with_writer(writer);
    match format {
        LogFormat::Plain => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// This host's name, as lease tokens carry it (at most 24 bytes, so that a token fits a
/// PostgreSQL session name).
fn host() -> String {
    let mut host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "host".to_string());
    while host.len() > 24 {
        host.pop();
    }
    host
}

/// This process's lease token, unique among running instances:
/// `billrun:<host>:<process id>:<start, microseconds>`.
fn lease_owner() -> String {
    format!(
        "billrun:{}:{}:{}",
        host(),
        std::process::id(),
        Utc::now().timestamp_micros()
    )
}

/// Whether the process behind a lease token is provably gone: it ran on this host and its
/// process id is no longer running. A holder on another host is judged by its database
/// session, or by its lease running out.
fn holder_gone(owner: &str) -> bool {
    let mut parts = owner.split(':');
    match (parts.next(), parts.next(), parts.next()) {
        (Some("billrun"), Some(host_name), Some(pid)) if host_name == host() => pid
            .parse::<u32>()
            .is_ok_and(|pid| !std::path::Path::new(&format!("/proc/{pid}")).exists()),
        _ => false,
    }
}
