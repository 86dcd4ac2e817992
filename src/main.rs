//! The `billrun` command line: parse, build a context, call the library. The only place that
//! reads the wall clock or the environment.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use chrono::{DateTime, Utc};
use clap::{Parser, Subcommand, ValueEnum};

use billrun::fixture::{Fixture, LoadError};
use billrun::jobs::{
    self, DueOptions, ingest::ingest_events, replay::replay, usage_intake::ingest_usage,
};
use billrun::store::{AnyStore, SqliteStore, Store, redact_url};
use billrun::{export, with_store};

// Closing a month allocates millions of small values across the async and SQLite threads;
// mimalloc handles that with far less contention than the system allocator.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Exit status: all done.
const EXIT_OK: u8 = 0;
/// Exit status: a failure; nothing half-written.
const EXIT_FAILURE: u8 = 1;
/// Exit status: bad usage or input.
const EXIT_INPUT: u8 = 2;
/// Exit status: done, but some items were rejected or parked.
const EXIT_PARTIAL: u8 = 3;

#[derive(Parser)]
#[command(
    name = "billrun",
    version,
    about = "Closes billing cycles: licenses, credits, invoices, usage emails"
)]
struct Cli {
    /// Database URL: sqlite://PATH or postgres://USER@HOST/DB.
    #[arg(
        long,
        global = true,
        env = "BILLRUN_DATABASE_URL",
        default_value = "sqlite://billrun.db",
        hide_env_values = true
    )]
    database: String,

    /// Log lines as plain text or JSON.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Plain)]
    log_format: LogFormat,

    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Plain,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Create or upgrade the schema.
    Migrate,
    /// Load a fixture or a production feed (scenario.toml, events.jsonl, usage.csv), all or nothing.
    Load {
        /// The folder holding the files.
        fixture: PathBuf,
    },
    /// Do all work due as of an instant.
    RunDue {
        /// The instant (RFC 3339); default now.
        #[arg(long)]
        as_of: Option<String>,
        /// Only this company.
        #[arg(long)]
        company: Option<String>,
        /// Only this step (rate, expire, apply-removals, invoice, grant).
        #[arg(long)]
        job: Option<String>,
        /// How long a company stays leased to this run without renewal.
        #[arg(long, default_value_t = 300)]
        lease_seconds: u64,
    },
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
    Replay {
        /// The fixture folder.
        fixture: PathBuf,
        /// Where to write the files.
        #[arg(long)]
        out: PathBuf,
        /// Stop the clock at this instant (RFC 3339, inclusive).
        #[arg(long)]
        until: Option<String>,
        /// Replay into this (empty) database instead of a temporary SQLite file.
        #[arg(long = "into")]
        into: Option<String>,
    },
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

/// An error that decides the exit status.
enum Failure {
    Input(String),
    Other(anyhow::Error),
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Failure::Other(e)
    }
}

impl From<LoadError> for Failure {
    fn from(e: LoadError) -> Self {
        Failure::Input(e.to_string())
    }
}

/// `--as-of`, or the wall clock when it is absent.
fn instant_or_now(as_of: Option<String>) -> Result<DateTime<Utc>, Failure> {
    match as_of {
        Some(s) => parse_instant("as-of", &s),
        None => Ok(Utc::now()),
    }
}

/// Refuses a `--company` the database does not know.
fn known_company(
    world: &billrun::domain::model::World,
    company: Option<&str>,
) -> Result<(), Failure> {
    match company {
        Some(c) if !world.companies.contains_key(c) => {
            Err(Failure::Input(format!("--company: unknown company {c:?}")))
        }
        _ => Ok(()),
    }
}

fn parse_instant(flag: &str, s: &str) -> Result<DateTime<Utc>, Failure> {
    billrun::fixture::values::instant(s).map_err(|m| Failure::Input(format!("--{flag}: {m}")))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Ok(point) = std::env::var("BILLRUN_FAILPOINT") {
        billrun::failpoint::arm(point);
    }
    init_logging(cli.log_format);
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
    let result = runtime.block_on(async {
        let result = run(cli).await;
        let stores = OPENED
            .lock()
            .map(|mut l| std::mem::take(&mut *l))
            .unwrap_or_default();
        for store in stores {
            store.close().await;
        }
        result
    });
    match result {
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

/// Every store a command opened, closed cleanly when it ends (SQLite then checkpoints its
/// write-ahead log into the database file).
static OPENED: std::sync::Mutex<Vec<AnyStore>> = std::sync::Mutex::new(Vec::new());

fn opened(store: AnyStore) -> AnyStore {
    if let Ok(mut list) = OPENED.lock() {
        list.push(store.clone());
    }
    store
}

async fn connect(url: &str) -> Result<AnyStore, Failure> {
    AnyStore::connect(url)
        .await
        .map(opened)
        .with_context(|| format!("connecting to {}", redact_url(url)))
        .map_err(Failure::Other)
}

async fn run(cli: Cli) -> Result<u8, Failure> {
    let wall = || Utc::now();
    match cli.command {
        Command::Migrate => {
            let store = connect(&cli.database).await?;
            with_store!(&store, s => s.migrate().await?);
            tracing::info!(database = %redact_url(&cli.database), "schema is up to date");
            Ok(EXIT_OK)
        }
        Command::Load { fixture } => {
            let store = connect(&cli.database).await?;
            with_store!(&store, s => load(s, &fixture).await)
        }
        Command::RunDue {
            as_of,
            company,
            job,
            lease_seconds,
        } => {
            let as_of = instant_or_now(as_of)?;
            if let Some(j) = &job
                && !jobs::STEPS.contains(&j.as_str())
            {
                return Err(Failure::Input(format!(
                    "--job: unknown job {j:?} (one of {})",
                    jobs::STEPS.join(", ")
                )));
            }
            let store = connect(&cli.database).await?;
            with_store!(&store, s => {
                s.migrate().await?;
                let world = s.world().await?;
                known_company(&world, company.as_deref())?;
                let options = DueOptions {
                    company,
                    companies: None,
                    job,
                    last_boundary: None,
                    lease: Some(lease_config(lease_seconds)),
                    progress: Some(progress_bar()),
                };
                let report = jobs::run_due(s, &world, as_of, &options, &wall).await?;
                Ok(report_due(&report))
            })
        }
        Command::Schedule { config } => {
            let src = std::fs::read_to_string(&config)
                .map_err(|e| Failure::Input(format!("{}: {e}", config.display())))?;
            let schedule = billrun::scheduler::parse_config(&config.display().to_string(), &src)?;
            let store = connect(&cli.database).await?;
            let shutdown = tokio_util::sync::CancellationToken::new();
            spawn_signal_handler(shutdown.clone());
            with_store!(&store, s => {
                s.migrate().await?;
                let lease = lease_config(schedule.lease.as_secs());
                billrun::scheduler::run(&schedule, shutdown, || {
                    let lease = lease.clone();
                    async move {
                        let world = s.world().await?;
                        let options = DueOptions { lease: Some(lease), ..Default::default() };
                        let report = jobs::run_due(s, &world, wall(), &options, &wall).await?;
                        report_due(&report);
                        Ok(())
                    }
                })
                .await?;
                Ok(EXIT_OK)
            })
        }
        Command::Status { company, as_of } => {
            let as_of = instant_or_now(as_of)?;
            let store = connect(&cli.database).await?;
            with_store!(&store, s => {
                s.migrate().await?;
                let world = s.world().await?;
                known_company(&world, company.as_deref())?;
                let rows = jobs::status::status(s, &world, as_of, company.as_deref()).await?;
                let rejections = s.rejections().await?.len();
                print!("{}", export::text::status_text(&rows, rejections));
                Ok(if rows.iter().any(|r| !r.parked.is_empty()) { EXIT_PARTIAL } else { EXIT_OK })
            })
        }
        Command::Replay {
            fixture,
            out,
            until,
            into,
        } => {
            let until = until.map(|s| parse_instant("until", &s)).transpose()?;
            let fx = Fixture::read(&fixture)?;
            let tmp = tempfile::tempdir().context("creating a temporary folder")?;
            let store = match &into {
                Some(url) => connect(url).await?,
                None => {
                    let url = format!("sqlite://{}", tmp.path().join("replay.db").display());
                    opened(AnyStore::Sqlite(SqliteStore::connect(&url).await?))
                }
            };
            with_store!(&store, s => {
                let report = replay(s, &fx, until).await?;
                export::replay_files::dump(s, &out, None).await?;
                tracing::info!(
                    boundaries = report.boundaries,
                    accepted = report.events.accepted,
                    rejected = report.events.rejected,
                    usage_accepted = report.usage.accepted,
                    usage_rejected = report.usage.rejected,
                    out = %out.display(),
                    "replay finished"
                );
                for (company, error) in &report.failed {
                    tracing::error!(company = %company, "{error}");
                }
                let rejected = report.events.rejected + report.usage.rejected;
                Ok(if rejected > 0 || !report.failed.is_empty() { EXIT_PARTIAL } else { EXIT_OK })
            })
        }
        Command::Gen {
            companies,
            events,
            out,
            seed,
        } => {
            billrun::synthetic::generate(
                billrun::synthetic::GenOptions {
                    companies,
                    events,
                    seed,
                },
                &out,
            )?;
            tracing::info!(companies, events, out = %out.display(), "fixture written");
            Ok(EXIT_OK)
        }
        Command::PlanUsage { company, as_of } => {
            let as_of = instant_or_now(as_of)?;
            let store = connect(&cli.database).await?;
            with_store!(&store, s => {
                let world = s.world().await?;
                let Some(c) = world.companies.get(&company) else {
                    return Err(Failure::Input(format!("--company: unknown company {company:?}")));
                };
                let rows = jobs::plan_usage(s, &world, &company, as_of).await?;
                print!("{}", export::text::plan_usage_table(&rows, &c.currency));
                Ok(EXIT_OK)
            })
        }
        Command::Dump { out, company } => {
            let store = connect(&cli.database).await?;
            with_store!(&store, s => {
                export::replay_files::dump(s, &out, company.as_deref()).await?;
                Ok(EXIT_OK)
            })
        }
    }
}

/// This process's lease settings: a token naming host, process and start.
fn lease_config(seconds: u64) -> jobs::LeaseConfig {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "host".to_string());
    jobs::LeaseConfig {
        owner: format!(
            "{host}:{}:{}",
            std::process::id(),
            Utc::now().timestamp_micros()
        ),
        ttl: chrono::Duration::seconds(i64::try_from(seconds).unwrap_or(i64::MAX / 1_000_000)),
    }
}

/// A progress bar on a terminal; hidden otherwise, so logs stay plain lines.
fn progress_bar() -> indicatif::ProgressBar {
    use std::io::IsTerminal;
    if std::io::stderr().is_terminal() {
        let bar = indicatif::ProgressBar::new(0);
        if let Ok(style) =
            indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} companies {elapsed}")
        {
            bar.set_style(style);
        }
        bar
    } else {
        indicatif::ProgressBar::hidden()
    }
}

/// Logs what a run did and picks the exit status.
fn report_due(report: &jobs::DueReport) -> u8 {
    tracing::info!(
        boundaries = report.closed.len(),
        steps = report.steps,
        parked = report.failed.len(),
        busy = report.busy.len(),
        "run-due finished"
    );
    for company in &report.busy {
        tracing::info!(company = %company, "held by another instance; left to it");
    }
    for (company, error) in &report.failed {
        tracing::error!(company = %company, "parked: {error}");
    }
    if report.failed.is_empty() {
        EXIT_OK
    } else {
        EXIT_PARTIAL
    }
}

/// Cancels `token` on SIGTERM or SIGINT.
fn spawn_signal_handler(token: tokio_util::sync::CancellationToken) {
    tokio::spawn(async move {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!("cannot listen for SIGTERM: {e}");
                    return;
                }
            };
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received"),
            _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
        }
        token.cancel();
    });
}

/// `load`: a folder with a scenario is validated whole and recorded; a folder with only
/// `events.jsonl` and/or `usage.csv` is a production feed appended to the recorded world.
async fn load<S: Store>(store: &S, dir: &std::path::Path) -> Result<u8, Failure> {
    store.migrate().await?;
    let fx = if dir.join("scenario.toml").exists() {
        Fixture::read(dir)?
    } else {
        let world = store.world().await?;
        Fixture::read_feed(dir, world, None)?
    };
    if dir.join("scenario.toml").exists() {
        store.save_world(&fx.world).await?;
    }
    let events = ingest_events(store, &fx.world, &fx.events).await?;
    let usage = ingest_usage(store, &fx.world, &fx.usage).await?;
    tracing::info!(
        events_accepted = events.accepted,
        events_rejected = events.rejected,
        usage_accepted = usage.accepted,
        usage_rejected = usage.rejected,
        duplicates = events.duplicates + usage.duplicates,
        "loaded"
    );
    Ok(if events.rejected + usage.rejected > 0 {
        EXIT_PARTIAL
    } else {
        EXIT_OK
    })
}
