//! The `billrun` command line: parse, build a context, call the library. The only place that
//! reads the wall clock or the environment.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use chrono::{DateTime, Utc};
use clap::{Parser, Subcommand, ValueEnum};

use billrun::fixture::{Fixture, LoadError};
use billrun::jobs::{
    self, DueFilter, ingest::ingest_events, replay::replay, usage_intake::ingest_usage,
};
use billrun::store::{AnyStore, SqliteStore, Store, redact_url};
use billrun::{export, with_store};

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

fn parse_instant(flag: &str, s: &str) -> Result<DateTime<Utc>, Failure> {
    billrun::fixture::values::instant(s).map_err(|m| Failure::Input(format!("--{flag}: {m}")))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
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
    match runtime.block_on(run(cli)) {
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

async fn connect(url: &str) -> Result<AnyStore, Failure> {
    AnyStore::connect(url)
        .await
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
        Command::RunDue { as_of, company } => {
            let as_of = match as_of {
                Some(s) => parse_instant("as-of", &s)?,
                None => wall(),
            };
            let store = connect(&cli.database).await?;
            with_store!(&store, s => {
                s.migrate().await?;
                let world = s.world().await?;
                if let Some(c) = &company
                    && !world.companies.contains_key(c)
                {
                    return Err(Failure::Input(format!("--company: unknown company {c:?}")));
                }
                let filter = DueFilter { company, last_boundary: None };
                let report = jobs::run_due(s, &world, as_of, &filter, &wall).await?;
                tracing::info!(boundaries = report.closed.len(), steps = report.steps, "run-due finished");
                for (company, error) in &report.failed {
                    tracing::error!(company = %company, "{error}");
                }
                Ok(if report.failed.is_empty() { EXIT_OK } else { EXIT_PARTIAL })
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
                    AnyStore::Sqlite(SqliteStore::connect(&url).await?)
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
        Command::PlanUsage { company, as_of } => {
            let as_of = match as_of {
                Some(s) => parse_instant("as-of", &s)?,
                None => wall(),
            };
            let store = connect(&cli.database).await?;
            with_store!(&store, s => {
                let world = s.world().await?;
                let Some(c) = world.companies.get(&company) else {
                    return Err(Failure::Input(format!("--company: unknown company {company:?}")));
                };
                let rows = jobs::plan_usage(s, &world, &company, as_of).await?;
                print!("{}", plan_usage_table(&rows, &c.currency));
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

/// The plan usage view as an aligned text table.
fn plan_usage_table(
    rows: &[billrun::domain::wallets::PlanUsage],
    currency: &billrun::domain::money::Currency,
) -> String {
    let money = |d: Option<rust_decimal::Decimal>| {
        d.map(|d| currency.format_amount(d))
            .unwrap_or_else(|| "-".into())
    };
    let mut table = vec![
        ["scope", "wallet", "committed", "spent", "available", "used"]
            .map(String::from)
            .to_vec(),
    ];
    for r in rows {
        table.push(vec![
            r.scope.clone(),
            r.wallet.clone(),
            money(r.committed),
            money(r.spent),
            money(Some(r.available)),
            r.used_percent()
                .map(|p| format!("{p}%"))
                .unwrap_or_else(|| "-".into()),
        ]);
    }
    let widths: Vec<usize> = (0..6)
        .map(|i| table.iter().map(|r| r[i].len()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in &table {
        let cells: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(i, c)| {
                if i < 2 {
                    format!("{c:<w$}", w = widths[i])
                } else {
                    format!("{c:>w$}", w = widths[i])
                }
            })
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
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
