//! Persistence in the words of the domain: one [`Store`] trait with a SQLite and a PostgreSQL
//! implementation. Nothing outside this module sees a driver type.
//!
//! Money is kept as integer micro-units and instants as integer microseconds (UTC) in both
//! databases, converted at this boundary.

mod codec;
pub mod postgres;
mod sql;
pub mod sqlite;

use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;

use crate::domain::invoice::Document;
use crate::domain::licenses::AppliedRemoval;
use crate::domain::model::{Event, World};
use crate::domain::usage::{Rating, Unrated, Usage};
use crate::domain::wallets::LedgerEntry;

pub use postgres::PgStore;
pub use sqlite::SqliteStore;

/// An event as it arrived, with the verdict of the rules.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedEvent {
    /// The event.
    pub event: Event,
    /// `None` when accepted, else why it was rejected.
    pub rejection: Option<String>,
}

/// A row of `rejections.csv`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// `events.jsonl` or `usage.csv`.
    pub source: String,
    /// 1-based line in that file.
    pub line: i64,
    /// The usage id; empty for events.
    pub id: String,
    /// Why.
    pub reason: String,
}

/// A row of `job_runs`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobRun {
    /// The step's name (`invoice`).
    pub job: String,
    /// The company.
    pub company: String,
    /// Boundary index on the company's grid.
    pub boundary_index: u32,
    /// The boundary's local date.
    pub boundary: NaiveDate,
    /// `ok` or `failed`.
    pub status: String,
    /// What the step wrote.
    pub items: i64,
    /// The error of a failed step.
    pub error: Option<String>,
}

/// A charge to a card company's card.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardCharge {
    /// When it was charged.
    pub at: DateTime<Utc>,
    /// The company.
    pub company: String,
    /// `card_statement`, `credit_purchase`, `auto_recharge` or `adjustment`.
    pub kind: String,
    /// The amount charged (negative for a refund).
    pub amount: Decimal,
    /// ISO 4217 code.
    pub currency: String,
    /// The invoice number or event reference.
    pub reference: String,
}

/// A company taken for closing by one process: the fence it raised and how long it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The holder's token (host, process, start).
    pub owner: String,
    /// The fencing token: raised by every take-over.
    pub fence: i64,
    /// Each step commit extends the lease to this many microseconds after its wall clock.
    pub ttl_micros: i64,
}

/// A step's commit was refused: another process took the company over after this one's lease
/// ran out, so this one's late writes must not land.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("lease on {company} was taken over by another instance: this run's writes are refused")]
pub struct Fenced {
    /// The company.
    pub company: String,
}

/// A failed attempt at a step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepFailure {
    /// The step.
    pub job: String,
    /// The company.
    pub company: String,
    /// Boundary index.
    pub boundary_index: u32,
    /// Boundary local date.
    pub boundary: NaiveDate,
    /// What went wrong.
    pub error: String,
    /// Wall-clock time of the failure.
    pub failed_at: DateTime<Utc>,
}

/// A step of one (company, boundary) and when it ran.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepRun {
    /// The step's name.
    pub job: &'static str,
    /// The company.
    pub company: String,
    /// Boundary index.
    pub boundary_index: u32,
    /// Boundary instant.
    pub boundary_at: DateTime<Utc>,
    /// Boundary local date.
    pub boundary: NaiveDate,
    /// Wall-clock start.
    pub started_at: DateTime<Utc>,
    /// Wall-clock end of the computation.
    pub finished_at: DateTime<Utc>,
    /// The lease the step runs under; `None` for a single-process replay.
    pub lease: Option<Lease>,
}

/// What a step writes, committed together with its completion.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StepEffects {
    /// What the step wrote, as counted in `job_runs.items`.
    pub items: i64,
    /// Removals applied to pools.
    pub removals: Vec<AppliedRemoval>,
    /// The document issued.
    pub document: Option<Document>,
    /// Card charges made.
    pub card_charges: Vec<CardCharge>,
    /// Ledger entries, in the order made.
    pub ledger: Vec<LedgerEntry>,
    /// Usage rows rated.
    pub ratings: Vec<Rating>,
}

/// Events taken in together, with what the accepted ones wrote.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EventBatch {
    /// The events and their verdicts, in arrival order.
    pub events: Vec<RecordedEvent>,
    /// Ledger entries of accepted purchases: (company, entry).
    pub ledger: Vec<(String, LedgerEntry)>,
    /// Card charges of accepted purchases.
    pub card_charges: Vec<CardCharge>,
}

/// Usage rows taken in together.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UsageBatch {
    /// Accepted rows.
    pub accepted: Vec<Usage>,
    /// Refused rows: (company if known, rejection).
    pub rejections: Vec<(Option<String>, Rejection)>,
}

/// A ledger entry as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerRow {
    /// The order it was made in, across all companies.
    pub seq: i64,
    /// The company.
    pub company: String,
    /// The entry.
    pub entry: LedgerEntry,
}

/// Storage for billrun. Every write that belongs together is one transaction.
#[allow(async_fn_in_trait)]
pub trait Store {
    /// Creates or upgrades the schema.
    async fn migrate(&self) -> anyhow::Result<()>;

    /// Records master data: the companies, products and rates of `world` replace those with
    /// the same keys.
    async fn save_world(&self, world: &World) -> anyhow::Result<()>;

    /// Reads all master data.
    async fn world(&self) -> anyhow::Result<World>;

    /// Records events with their verdicts, a rejection for each refused one, and what the
    /// accepted ones wrote, in one transaction.
    async fn record_events(&self, batch: &EventBatch) -> anyhow::Result<()>;

    /// Records accepted usage rows and rejections, in one transaction.
    async fn record_usage(&self, batch: &UsageBatch) -> anyhow::Result<()>;

    /// The content of accepted usage rows with these ids: (id, content).
    async fn usage_contents(&self, ids: &[String]) -> anyhow::Result<Vec<(String, String)>>;

    /// For each (company, until), its accepted usage not yet rated that occurred and was
    /// received before `until`, in (company, occurred_at, id) order.
    async fn unrated_usage(
        &self,
        bounds: &[(String, DateTime<Utc>)],
    ) -> anyhow::Result<Vec<Unrated>>;

    /// The accepted events of `companies` (only those of the given types, if any), in
    /// arrival order.
    async fn accepted_events_in(
        &self,
        companies: &[String],
        types: Option<&[&str]>,
    ) -> anyhow::Result<Vec<Event>>;

    /// The ledger entries of `companies`, in the order made.
    async fn ledger_in(&self, companies: &[String]) -> anyhow::Result<Vec<LedgerRow>>;

    /// Rated usage with its rating (of one company, or all), in (occurred_at, id) order.
    async fn usage_records(&self, company: Option<&str>) -> anyhow::Result<Vec<(Usage, Rating)>>;

    /// Ledger entries (of one company, or all), in the order made.
    async fn ledger(&self, company: Option<&str>) -> anyhow::Result<Vec<LedgerRow>>;

    /// The accepted events (of one company, or all), in arrival order.
    async fn accepted_events(&self, company: Option<&str>) -> anyhow::Result<Vec<Event>>;

    /// The latest `at` of any recorded event of a company.
    async fn last_event_at(&self, company: &str) -> anyhow::Result<Option<DateTime<Utc>>>;

    /// Every step that completed: (company, boundary index, job).
    async fn completed_steps(&self) -> anyhow::Result<Vec<(String, u32, String)>>;

    /// For these companies, the completed steps of their latest fully closed boundary and of
    /// every later one: what `run_due` needs to know where each company stands.
    async fn open_steps(&self, companies: &[String]) -> anyhow::Result<Vec<(String, u32, String)>>;

    /// For each company with a completed step, the latest boundary index with one.
    async fn latest_closes(&self) -> anyhow::Result<Vec<(String, u32)>>;

    /// Claims steps of one company and, if nobody completed any of them before, writes their
    /// effects and completions in one transaction. Returns false (writing nothing) when one
    /// was already done; fails with [`Fenced`] (writing nothing) when the lease of the runs was
    /// taken over.
    async fn commit_steps(&self, steps: &[(StepRun, StepEffects)]) -> anyhow::Result<bool>;

    /// [`Store::commit_steps`] for one step.
    async fn commit_step(&self, run: &StepRun, effects: &StepEffects) -> anyhow::Result<bool> {
        self.commit_steps(&[(run.clone(), effects.clone())]).await
    }

    /// Takes each of `companies` for `owner` until `until`, unless another holder's lease on
    /// it lives past `now`; each company taken has its fence raised. Returns the companies taken
    /// with their fences.
    async fn acquire_leases(
        &self,
        companies: &[String],
        owner: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> anyhow::Result<Vec<(String, i64)>>;

    /// Gives back the companies `owner` still holds among `companies`.
    async fn release_leases(&self, companies: &[String], owner: &str) -> anyhow::Result<()>;

    /// Records a failed attempt at a step.
    async fn record_failure(&self, failure: &StepFailure) -> anyhow::Result<()>;

    /// Every failed attempt, oldest first.
    async fn failures(&self) -> anyhow::Result<Vec<StepFailure>>;

    /// Every issued document with its lines.
    async fn documents(&self) -> anyhow::Result<Vec<Document>>;

    /// Every job run, in execution order.
    async fn job_runs(&self) -> anyhow::Result<Vec<JobRun>>;

    /// Every rejection, in the order recorded.
    async fn rejections(&self) -> anyhow::Result<Vec<Rejection>>;

    /// Every card charge, in the order made.
    async fn card_charges(&self) -> anyhow::Result<Vec<CardCharge>>;
}

/// A store chosen at run time from a database URL.
#[derive(Clone)]
pub enum AnyStore {
    /// `sqlite://…`
    Sqlite(SqliteStore),
    /// `postgres://…`
    Postgres(PgStore),
}

impl AnyStore {
    /// Connects to `url` (`sqlite://path`, `postgres://…`), creating a SQLite file on first use.
    pub async fn connect(url: &str) -> anyhow::Result<AnyStore> {
        if url.starts_with("sqlite:") {
            Ok(AnyStore::Sqlite(SqliteStore::connect(url).await?))
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Ok(AnyStore::Postgres(PgStore::connect(url).await?))
        } else {
            anyhow::bail!(
                "unsupported database URL {}: use sqlite://PATH or postgres://…",
                redact_url(url)
            )
        }
    }
}

impl AnyStore {
    /// Closes every connection (SQLite then checkpoints its write-ahead log).
    pub async fn close(&self) {
        match self {
            AnyStore::Sqlite(s) => s.pool.close().await,
            AnyStore::Postgres(s) => s.pool.close().await,
        }
    }
}

/// Runs `$body` with `$s` bound to the concrete store inside an [`AnyStore`].
#[macro_export]
macro_rules! with_store {
    ($any:expr, $s:ident => $body:expr) => {
        match $any {
            $crate::store::AnyStore::Sqlite($s) => $body,
            $crate::store::AnyStore::Postgres($s) => $body,
        }
    };
}

/// A URL with its password replaced by `***`, for logs and errors.
pub fn redact_url(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => match rest.split_once('@') {
            Some((userinfo, host)) => {
                let user = userinfo.split(':').next().unwrap_or("");
                if userinfo.contains(':') {
                    format!("{scheme}://{user}:***@{host}")
                } else {
                    format!("{scheme}://{user}@{host}")
                }
            }
            None => url.to_string(),
        },
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn passwords_never_show() {
        assert_eq!(
            redact_url("postgres://bill:s3cret@db:5432/billing"),
            "postgres://bill:***@db:5432/billing"
        );
        assert_eq!(redact_url("postgres://bill@db/x"), "postgres://bill@db/x");
        assert_eq!(redact_url("sqlite://billrun.db"), "sqlite://billrun.db");
    }
}
