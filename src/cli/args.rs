//! The command line's words: flags, commands and their arguments (clap derive).

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

use billrun::domain::close::Step;

/// The version and the git commit it was built from.
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("BILLRUN_GIT_COMMIT"),
    ")"
);

/// What `--help` tells beyond the flags: exit statuses and the environment.
const AFTER_HELP: &str = "\
Exit status:
  0  all done
  1  a failure; nothing half-written
  2  bad usage, input or configuration (also: a database without the billrun schema)
  3  done, but some input items were rejected (they are listed)
  4  work left undone: a company is parked, or (status --check) overdue

Environment:
  BILLRUN_DATABASE_URL  the database (--database)
  BILLRUN_LOG           log filter, e.g. debug or billrun=debug
                        (default info,sqlx=warn,tokio_cron_scheduler=warn)
  BILLRUN_LOG_FORMAT    plain or json (--log-format)
  NO_COLOR              set and non-empty: no colours in log lines (colours only on a terminal)
  BILLRUN_SMTP_URL, BILLRUN_OUTBOX, BILLRUN_MAIL_FROM, BILLRUN_METRICS_FILE: see the flags";

#[derive(Parser)]
#[command(
    name = "billrun",
    version = VERSION,
    about = "Closes billing cycles: licenses, credits, invoices, usage emails",
    after_help = AFTER_HELP
)]
pub struct Cli {
    /// Database URL: sqlite://PATH or postgres://USER@HOST/DB. Given before the command; not
    /// used by replay (see --into) or gen.
    #[arg(
        long,
        env = "BILLRUN_DATABASE_URL",
        default_value = "sqlite://billrun.db",
        hide_env_values = true
    )]
    pub database: String,

    /// Send usage emails to this SMTP server: smtp://[USER:PASSWORD@]HOST[:PORT] (STARTTLS when
    /// offered) or smtps://… (TLS). Without it, emails are written to the outbox folder.
    #[arg(long, global = true, env = "BILLRUN_SMTP_URL", hide_env_values = true)]
    pub smtp: Option<String>,

    /// The outbox folder for usage emails when no SMTP server is set.
    #[arg(
        long,
        global = true,
        env = "BILLRUN_OUTBOX",
        default_value = "outbox",
        hide_env_values = true
    )]
    pub outbox: PathBuf,

    /// Extra trusted root certificates (PEM) for the SMTP server's TLS.
    #[arg(long, global = true, env = "BILLRUN_SMTP_CA", hide_env_values = true)]
    pub smtp_ca: Option<PathBuf>,

    /// The From address of usage emails.
    #[arg(
        long,
        global = true,
        env = "BILLRUN_MAIL_FROM",
        default_value = "billrun <billrun@localhost>"
    )]
    pub mail_from: String,

    /// Attach a usage CSV larger than this many bytes gzip-compressed (.csv.gz).
    #[arg(
        long,
        global = true,
        env = "BILLRUN_ATTACH_GZIP_ABOVE",
        default_value_t = billrun::mail::DEFAULT_GZIP_ABOVE
    )]
    pub attach_gzip_above: u64,

    /// Log lines as plain text or JSON.
    #[arg(
        long,
        global = true,
        value_enum,
        env = "BILLRUN_LOG_FORMAT",
        default_value_t = LogFormat::Plain
    )]
    pub log_format: LogFormat,

    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// Every secret the command line was given (database and SMTP passwords), which no output
    /// may show.
    pub fn secrets(&self) -> Vec<String> {
        let mut urls = vec![self.database.as_str()];
        urls.extend(self.smtp.as_deref());
        if let Command::Replay(r) = &self.command {
            urls.extend(r.into.as_deref());
        }
        urls.into_iter()
            .flat_map(billrun::store::url_secrets)
            .collect()
    }
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
    /// With --check, only validate the schedule and print its next five wake-ups.
    Schedule(ScheduleArgs),
    /// Closed and pending boundaries, leases, parked companies, rejected items, the email
    /// queue. With --check, exit 4 when a company is parked or overdue (for monitoring).
    Status(StatusArgs),
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
    /// Show each wallet's committed, spent and available credits, per scope, with the usage
    /// accepted since the last close priced in (provisional).
    PlanUsage {
        /// The company.
        #[arg(long)]
        company: String,
        /// Only the wallets of this office's scope.
        #[arg(long)]
        office: Option<String>,
        /// The instant (RFC 3339); default now.
        #[arg(long)]
        as_of: Option<String>,
    },
    /// Write the usage history of a grid period as CSV.
    ExportUsage(ExportArgs),
    /// Re-run closed boundaries: rebuild each document with the price corrections recorded
    /// since, and issue an adjustment for any difference (or only print it, with --dry-run).
    Rerun(RerunArgs),
    /// Show one issued document: header, lines, total, and the adjustments issued for it.
    Invoice {
        /// The document number: `<company>-<YYYYMMDD>`, or `<company>-<YYYYMMDD>-A<n>` for an
        /// adjustment.
        number: String,
        /// Text for people, or JSON for tools.
        #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
        format: OutputFormat,
    },
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell) on stdout.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff) on stdout: `billrun man > billrun.1`.
    Man,
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
pub struct ScheduleArgs {
    /// The schedule file.
    #[arg(long, default_value = "jobs/schedule.toml")]
    pub config: PathBuf,
    /// Validate the schedule file and print the next five wake-ups (RFC 3339, UTC, one a
    /// line), then exit.
    #[arg(long)]
    pub check: bool,
    /// With --check: list the wake-ups strictly after this instant (RFC 3339); default now.
    #[arg(long, requires = "check")]
    pub from: Option<String>,
    /// After every run, write a Prometheus textfile here (for node_exporter's textfile
    /// collector), atomically.
    #[arg(long, env = "BILLRUN_METRICS_FILE")]
    pub metrics_file: Option<PathBuf>,
}

#[derive(clap::Args)]
pub struct StatusArgs {
    /// Only this company, in every section.
    #[arg(long)]
    pub company: Option<String>,
    /// The instant (RFC 3339); default now.
    #[arg(long)]
    pub as_of: Option<String>,
    /// Exit 4 when any company is parked or has a boundary due longer than --max-lag ago.
    #[arg(long)]
    pub check: bool,
    /// How long a due boundary may wait before --check calls it overdue (1h, 90min, 2h 30m).
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    pub max_lag: std::time::Duration,
    /// Text for people, or JSON for tools.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub format: OutputFormat,
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
    /// After the run, write a Prometheus textfile here (for node_exporter's textfile
    /// collector), atomically.
    #[arg(long, env = "BILLRUN_METRICS_FILE")]
    pub metrics_file: Option<PathBuf>,
}

/// How a report is printed.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// Aligned text for people.
    Text,
    /// JSON for tools.
    Json,
}

#[derive(clap::Args)]
pub struct RerunArgs {
    /// The company whose boundary is re-run (with --boundary).
    #[arg(
        long,
        required_unless_present = "all",
        conflicts_with = "all",
        requires = "boundary"
    )]
    pub company: Option<String>,
    /// The boundary's local date (YYYY-MM-DD).
    #[arg(long, requires = "company")]
    pub boundary: Option<String>,
    /// Every closed boundary of every company whose local date lies in [--from, --to].
    #[arg(long, requires = "from")]
    pub all: bool,
    /// First local date of the range (with --all).
    #[arg(long, requires = "all")]
    pub from: Option<String>,
    /// Last local date of the range (with --all); default --from.
    #[arg(long, requires = "all")]
    pub to: Option<String>,
    /// Why the cycle is re-run; recorded with every adjustment issued.
    #[arg(long)]
    pub reason: String,
    /// Print the differences and write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Who re-runs it, as recorded with the adjustment; default the user running billrun.
    #[arg(long)]
    pub by: Option<String>,
    /// The re-run's instant (RFC 3339): corrections recorded up to it count, and a card
    /// company's adjustment is charged then; default now.
    #[arg(long)]
    pub as_of: Option<String>,
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

#[derive(clap::Args)]
pub struct ExportArgs {
    /// The company.
    #[arg(long)]
    pub company: String,
    /// Only this office.
    #[arg(long)]
    pub office: Option<String>,
    /// The grid period starting in this month of the company's zone (YYYY-MM).
    #[arg(long)]
    pub month: String,
    /// Only this user or group (id).
    #[arg(long)]
    pub user: Option<String>,
    /// Only this service.
    #[arg(long)]
    pub service: Option<String>,
    /// Only rows paid from this wallet (allowance:<service>, telephony, ai, universal).
    #[arg(long)]
    pub wallet: Option<String>,
    /// Only rows costing at least this.
    #[arg(long)]
    pub min_amount: Option<String>,
    /// Only rows costing at most this.
    #[arg(long)]
    pub max_amount: Option<String>,
    /// Export as this admin sees it: an office admin gets only their own office.
    #[arg(long)]
    pub admin: Option<String>,
    /// The file to write; default usage-history-YYYY-MM-DD.csv (today in the company's zone).
    #[arg(long)]
    pub out: Option<PathBuf>,
}
