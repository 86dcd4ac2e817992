//! The command line's words: flags, commands and their arguments (clap derive).

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

use billrun::domain::close::Step;

#[derive(Parser)]
#[command(
    name = "billrun",
    version,
    about = "Closes billing cycles: licenses, credits, invoices, usage emails"
)]
pub struct Cli {
    /// Database URL: sqlite://PATH or postgres://USER@HOST/DB.
    #[arg(
        long,
        global = true,
        env = "BILLRUN_DATABASE_URL",
        default_value = "sqlite://billrun.db",
        hide_env_values = true
    )]
    pub database: String,

    /// Log lines as plain text or JSON.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Plain)]
    pub log_format: LogFormat,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Plain,
    Json,
}

#[derive(Subcommand)]
pub enum Command {
    /// Create or upgrade the schema.
    Migrate,
    /// Load a fixture or a production feed (scenario.toml, events.jsonl, usage.csv), all or nothing.
    Load {
        /// The folder holding the files.
        fixture: PathBuf,
    },
    /// Do all work due as of an instant.
    RunDue(RunDueArgs),
    /// The daemon: wake on the schedule, run due work, stop cleanly on SIGTERM or SIGINT.
    Schedule {
        /// The schedule file.
        #[arg(long, default_value = "jobs/schedule.toml")]
        config: PathBuf,
    },
    /// Closed and pending boundaries, parked companies and their errors.
    Status {
        /// Only this company.
        #[arg(long)]
        company: Option<String>,
        /// The instant (RFC 3339); default now.
        #[arg(long)]
        as_of: Option<String>,
    },
    /// Replay a fixture into a fresh database under a simulated clock and write its files.
    Replay(ReplayArgs),
    /// Write a synthetic fixture of any size, for benchmarks.
    Gen {
        /// Companies.
        #[arg(long)]
        companies: usize,
        /// Usage rows in all.
        #[arg(long)]
        events: usize,
        /// Where to write the fixture.
        #[arg(long)]
        out: PathBuf,
        /// Random seed: the same seed writes the same files.
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Show each wallet's committed, spent and available credits, per scope.
    PlanUsage {
        /// The company.
        #[arg(long)]
        company: String,
        /// The instant (RFC 3339); default now.
        #[arg(long)]
        as_of: Option<String>,
    },
    /// Write the files of a replay from the database as it stands.
    Dump {
        /// Where to write the files.
        #[arg(long)]
        out: PathBuf,
        /// Only this company.
        #[arg(long)]
        company: Option<String>,
    },
}

#[derive(clap::Args)]
pub struct RunDueArgs {
    /// The instant (RFC 3339); default now.
    #[arg(long)]
    pub as_of: Option<String>,
    /// Only this company.
    #[arg(long)]
    pub company: Option<String>,
    /// Only this step; the steps before it must be done.
    #[arg(long, value_enum)]
    pub job: Option<Step>,
    /// How long a company stays leased to this run without renewal (a heartbeat renews it
    /// while the run works; a crashed holder's companies are taken over after it, or at once
    /// when the holder is provably gone).
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub lease_seconds: u64,
}

#[derive(clap::Args)]
pub struct ReplayArgs {
    /// The fixture folder.
    pub fixture: PathBuf,
    /// Where to write the files.
    #[arg(long)]
    pub out: PathBuf,
    /// Stop the clock at this instant (RFC 3339, inclusive).
    #[arg(long)]
    pub until: Option<String>,
    /// Replay into this (empty) database instead of a temporary SQLite file.
    #[arg(long = "into")]
    pub into: Option<String>,
}
