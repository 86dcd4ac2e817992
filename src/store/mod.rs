//! Persistence in the words of the domain: one [`Store`] trait, implemented once over SQL
//! ([`SqlStore`]) for SQLite and PostgreSQL. Nothing outside this module sees a driver type.
//!
//! Money is kept as integer micro-units and instants as integer microseconds (UTC) in both
//! databases; rows are read into the types of `rows` and converted to domain values there,
//! refusing any value the domain does not know.

mod backend;
pub mod postgres;
mod reruns;
mod rows;
mod sql;
pub mod sqlite;
mod usage_sql;

use std::collections::{BTreeMap, BTreeSet};
use std::str::FromStr;

use chrono::{DateTime, NaiveDate, Utc};

use crate::domain::account::CardCharge;
use crate::domain::close::{Step, StepEffects};
use crate::domain::invoice::Document;
use crate::domain::job::{Job, JobStatus};
use crate::domain::model::{Companies, Event, World};
use crate::domain::rerun::AdjustmentNote;
use crate::domain::usage::{Rating, Unrated, Usage};
use crate::domain::usage_email::Spend;
use crate::domain::usage_history::{ExportScope, HistoryQuery, HistoryRecord};
use crate::domain::wallets::LedgerEntry;
use crate::domain::words::CompanyId;

pub use backend::Backend;
pub use postgres::PgStore;
pub use sql::SqlStore;
pub use sqlite::SqliteStore;

/// An event as it arrived, with the verdict of the rules.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedEvent {
    /// The event.
    pub event: Event,
    /// `None` when accepted, else why it was rejected.
    pub rejection: Option<String>,
}

/// A row of `rejections.csv`: an item the rules refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// The company, when the item named one that exists.
    pub company: Option<CompanyId>,
    /// `events.jsonl` or `usage.csv`.
    pub source: String,
    /// 1-based line in that file.
    pub line: i64,
    /// The usage id; empty for events.
    pub id: String,
    /// Why.
    pub reason: String,
}

/// A row of `job_runs`: a step that completed, or a re-run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobRun {
    /// The step, or `rerun`.
    pub job: Job,
    /// `ok` for a step; `adjusted` or `identical` for a re-run.
    pub status: JobStatus,
    /// The company.
    pub company: CompanyId,
    /// Boundary index on the company's grid.
    pub boundary_index: u32,
    /// The boundary's local date.
    pub boundary: NaiveDate,
    /// What the step wrote; for a re-run, the lines of its adjustment.
    pub items: i64,
}

/// A step that completed for a company at a boundary.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct CompletedStep {
    /// The company.
    pub company: CompanyId,
    /// Boundary index on the company's grid.
    pub boundary_index: u32,
    /// The step.
    pub step: Step,
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

/// A company's lease as recorded, for seeing who holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseRecord {
    /// The company held.
    pub company: CompanyId,
    /// The holder's token: `billrun:<host>:<process id>:<start, microseconds>`.
    pub owner: String,
    /// When this holder took the company (renewals keep it; the epoch when unknown).
    pub since: DateTime<Utc>,
    /// When the lease runs out unless renewed; the epoch once given back.
    pub until: DateTime<Utc>,
}

impl LeaseRecord {
    /// Whether someone holds it: a lease given back runs until the epoch.
    pub fn held(&self) -> bool {
        self.until.timestamp_micros() > 0
    }
}

/// A failed attempt at a step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepFailure {
    /// The step.
    pub step: Step,
    /// The company.
    pub company: CompanyId,
    /// Boundary index.
    pub boundary_index: u32,
    /// Boundary local date.
    pub boundary: NaiveDate,
    /// What went wrong.
    pub error: String,
    /// Wall-clock time of the failure.
    pub failed_at: DateTime<Utc>,
}

/// A file taken in by `load`, known by the SHA-256 of its content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadedFile {
    /// Hex SHA-256 of the file's bytes.
    pub sha256: String,
    /// The file's name as given to `load`.
    pub name: String,
    /// When it was loaded (wall clock).
    pub loaded_at: DateTime<Utc>,
}

/// What an intake needs to know before it judges events, read inside its transaction: the
/// companies' accepted events and how far their closing has got.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IntakeSnapshot {
    /// The accepted events of the companies taking something in, in arrival order.
    pub events: Vec<Event>,
    /// Per company, the latest boundary whose close has started.
    pub closed: BTreeMap<CompanyId, u32>,
}

/// What an intake asks to be taken in together.
#[derive(Debug, Clone, Copy)]
pub struct IntakeRequest<'a> {
    /// Master data to record first (a scenario), if any.
    pub world: Option<&'a World>,
    /// The files this intake records as loaded.
    pub files: &'a [LoadedFile],
    /// Every company the incoming events and usage name: they are locked, in id order, before
    /// anything is read.
    pub companies: &'a [CompanyId],
}

/// The rules an intake applies, called by [`Store::take_in`] inside its transaction: first
/// the events against the snapshot, then the usage a chunk at a time, each chunk against the
/// content of its ids accepted before (in this intake too).
pub trait IntakeJudge: Send {
    /// Judges the events.
    fn events(&mut self, snapshot: &IntakeSnapshot) -> anyhow::Result<EventBatch>;

    /// Reads the next chunk of usage rows and returns their ids; `None` when there are none
    /// left.
    fn next_usage(&mut self) -> anyhow::Result<Option<Vec<String>>>;

    /// Judges the chunk read last; `accepted` holds the content of those of its ids that
    /// were accepted before.
    fn usage(&mut self, accepted: &BTreeMap<String, String>) -> anyhow::Result<UsageBatch>;
}

/// What an intake did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IntakeOutcome {
    /// Everything was recorded.
    Recorded,
    /// Another load recorded one of these files first: nothing was written.
    FilesTaken(Vec<String>),
}

/// A step of one (company, boundary) and when it ran.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepRun {
    /// The step.
    pub step: Step,
    /// The company.
    pub company: CompanyId,
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
    /// The company's intake version when its history was read: the commit is refused if
    /// anything was taken in for the company since.
    pub intake_version: i64,
}

/// What a commit of steps did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommitOutcome {
    /// Every step and its effects were written.
    Committed,
    /// Another run had completed one of the steps: nothing was written.
    AlreadyDone,
    /// Another instance took a company over after this run's lease ran out: nothing was
    /// written, and this run's writes for that company must stop.
    Fenced {
        /// The companies whose lease was lost.
        companies: Vec<CompanyId>,
    },
    /// Something was taken in for these companies after their history was read: nothing
    /// was written; their steps must be computed again.
    Changed {
        /// The companies whose history grew.
        companies: Vec<CompanyId>,
    },
}

/// Events taken in together, with what the accepted ones wrote.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EventBatch {
    /// The events and their verdicts, in arrival order.
    pub events: Vec<RecordedEvent>,
    /// Ledger entries of accepted purchases: (company, entry).
    pub ledger: Vec<(CompanyId, LedgerEntry)>,
    /// Card charges of accepted purchases.
    pub card_charges: Vec<CardCharge>,
}

/// Usage rows taken in together.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UsageBatch {
    /// Accepted rows.
    pub accepted: Vec<Usage>,
    /// Refused rows.
    pub rejections: Vec<Rejection>,
}

/// A ledger entry as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerRow {
    /// The order it was made in, across all companies.
    pub seq: i64,
    /// The company.
    pub company: CompanyId,
    /// The entry.
    pub entry: LedgerEntry,
}

/// A usage row with how a close rated it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RatedUsage {
    /// The accepted row.
    pub usage: Usage,
    /// Its rating.
    pub rating: Rating,
}

/// Where a queued usage email stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum EmailStatus {
    /// Waiting to be sent (again).
    Queued,
    /// Accepted by the server (or written to the outbox).
    Sent,
    /// Refused for good (a permanent 5xx, an address that can't be used).
    Failed,
}

impl EmailStatus {
    /// The name stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            EmailStatus::Queued => "queued",
            EmailStatus::Sent => "sent",
            EmailStatus::Failed => "failed",
        }
    }
}

impl std::str::FromStr for EmailStatus {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        [EmailStatus::Queued, EmailStatus::Sent, EmailStatus::Failed]
            .into_iter()
            .find(|v| v.as_str() == s)
            .ok_or_else(|| format!("unknown email status {s:?}"))
    }
}

/// A usage email in the queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedEmail {
    /// The company.
    pub company: CompanyId,
    /// The boundary whose close queued it.
    pub boundary_index: u32,
    /// That boundary's local date.
    pub boundary: NaiveDate,
    /// The admin's address.
    pub recipient: String,
    /// Whose usage the attachment holds.
    pub scope: ExportScope,
    /// The deterministic `Message-ID`.
    pub message_id: String,
    /// The subject.
    pub subject: String,
    /// The body's summary.
    pub summary: String,
    /// The attachment's file name.
    pub attachment: String,
    /// Where it stands.
    pub status: EmailStatus,
    /// Tries so far (claims, including a try that crashed).
    pub attempts: i64,
    /// When it is due (queued) or was last claimed.
    pub next_attempt_at: DateTime<Utc>,
    /// Why the last try failed.
    pub last_error: Option<String>,
}

/// How a try to send an email ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EmailOutcome {
    /// The server accepted it (or it was written to the outbox) at this instant.
    Sent(DateTime<Utc>),
    /// It failed for now; try again at `next` (a server down, a 4xx, a timeout).
    Retry {
        /// Why.
        error: String,
        /// When to try again.
        next: DateTime<Utc>,
    },
    /// It was refused for good; never tried again.
    Failed(String),
}

/// An adjustment as issued: the document, and who issued it, why and when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Adjustment {
    /// The adjustment document (kind `adjustment`).
    pub document: Document,
    /// Who issued it for which document, why and when.
    pub note: AdjustmentNote,
}

/// What was issued for one boundary of a company.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IssuedAt {
    /// The document issued at the boundary; `None` when it had no lines.
    pub document: Option<Document>,
    /// The adjustments issued for it since, oldest first.
    pub adjustments: Vec<Adjustment>,
}

/// One issued document as finance reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedDocument {
    /// The document.
    pub document: Document,
    /// For an adjustment: who issued it for which document, why and when.
    pub note: Option<AdjustmentNote>,
    /// For the document at a boundary: the adjustments issued for it, oldest first.
    pub adjustments: Vec<Adjustment>,
}

/// A real re-run of a boundary, to be recorded in one transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RerunRun {
    /// The company.
    pub company: CompanyId,
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
    /// The adjustment it issues; `None` when the boundary was billed right.
    pub adjustment: Option<Adjustment>,
    /// A card company's charge or refund of the adjustment.
    pub card_charge: Option<CardCharge>,
}

/// What recording a re-run did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RerunCommit {
    /// The re-run's row, and its adjustment if any, were written.
    Recorded,
    /// Another re-run issued an adjustment with the same number first: nothing was written;
    /// the re-run must be computed again from what is issued now.
    Raced,
}

/// Storage for billrun. Every write that belongs together is one transaction. A `companies`
/// argument of `None` means every company.
#[allow(async_fn_in_trait)]
pub trait Store {
    /// Creates or upgrades the schema.
    async fn migrate(&self) -> anyhow::Result<()>;

    /// Whether the database holds billrun's schema, up to date or behind; reads only.
    async fn schema(&self) -> anyhow::Result<Schema>;

    /// Records master data: the companies, products and rates of `world` replace those with
    /// the same keys.
    async fn save_world(&self, world: &World) -> anyhow::Result<()>;

    /// Reads all master data.
    async fn world(&self) -> anyhow::Result<World> {
        self.world_of(None).await
    }

    /// Reads the companies alone, without their offices, users or other master data.
    async fn companies(&self) -> anyhow::Result<Companies>;

    /// Reads the master data of `companies`: their companies, offices, users and groups,
    /// admins, pools, bundles and allowances, with every product and the whole rate card.
    async fn world_of(&self, companies: Option<&[CompanyId]>) -> anyhow::Result<World>;

    /// The files among `sha256s` that were loaded before.
    async fn loaded_files(&self, sha256s: &[String]) -> anyhow::Result<Vec<LoadedFile>>;

    /// Takes in a batch in one transaction: records the files as loaded (unless another load
    /// recorded one first: then nothing is written), records the master data, locks the
    /// companies against closes and other intakes, and has `judge` judge the events and then
    /// the usage, chunk by chunk, writing what it answers. A failure or a crash at any point
    /// leaves nothing.
    async fn take_in<J: IntakeJudge>(
        &self,
        request: IntakeRequest<'_>,
        judge: &mut J,
    ) -> anyhow::Result<IntakeOutcome>;

    /// Each company's intake version, to be handed back with its steps' commit.
    async fn intake_versions(
        &self,
        companies: &[CompanyId],
    ) -> anyhow::Result<BTreeMap<CompanyId, i64>>;

    /// For each (company, until), its accepted usage not yet rated that occurred and was
    /// received before `until`.
    async fn unrated_usage(
        &self,
        bounds: &[(CompanyId, DateTime<Utc>)],
    ) -> anyhow::Result<Vec<Unrated>>;

    /// The accepted events of `companies`, in arrival order.
    async fn accepted_events(&self, companies: Option<&[CompanyId]>) -> anyhow::Result<Vec<Event>>;

    /// The ledger entries of `companies`, in the order made.
    async fn ledger(&self, companies: Option<&[CompanyId]>) -> anyhow::Result<Vec<LedgerRow>>;

    /// Rated usage of one company (or all) with its rating, in (occurred_at, id) order.
    async fn usage_records(&self, company: Option<&CompanyId>) -> anyhow::Result<Vec<RatedUsage>>;

    /// Streams every ledger entry, in the order made, into `sink`, one at a time (memory does
    /// not grow with the entries).
    async fn each_ledger_row(
        &self,
        sink: &mut (dyn FnMut(LedgerRow) -> anyhow::Result<()> + Send),
    ) -> anyhow::Result<()>;

    /// Streams the rated usage of one company (or all), in (occurred_at, id) order, into
    /// `sink`, one row at a time.
    async fn each_usage_record(
        &self,
        company: Option<&CompanyId>,
        sink: &mut (dyn FnMut(RatedUsage) -> anyhow::Result<()> + Send),
    ) -> anyhow::Result<()>;

    /// Where `companies` stand: the completed steps of each one's latest fully closed
    /// boundary and of every later boundary. Closes run oldest first, so every earlier boundary
    /// is closed.
    async fn progress(&self, companies: Option<&[CompanyId]>)
    -> anyhow::Result<Vec<CompletedStep>>;

    /// Claims steps and, if nobody completed any of them before, writes their effects and
    /// completions in one transaction; every company whose steps run under a lease must
    /// still be held by it (the leases are renewed), and nothing may have been taken in for it
    /// since its history was read. Otherwise nothing is written.
    async fn commit_steps(&self, steps: &[(StepRun, StepEffects)])
    -> anyhow::Result<CommitOutcome>;

    /// Takes each of `companies` for `owner` until `until`, unless another holder's lease on
    /// it lives past `now`; each company taken has its fence raised. Returns the companies taken
    /// with their fences.
    async fn acquire_leases(
        &self,
        companies: &[CompanyId],
        owner: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> anyhow::Result<BTreeMap<CompanyId, i64>>;

    /// Gives back the companies `owner` still holds among `companies`.
    async fn release_leases(&self, companies: &[CompanyId], owner: &str) -> anyhow::Result<()>;

    /// Extends to `until` the leases `owner` still holds among `companies` (a heartbeat while
    /// their work runs).
    async fn renew_leases(
        &self,
        companies: &[CompanyId],
        owner: &str,
        until: DateTime<Utc>,
    ) -> anyhow::Result<()>;

    /// Who holds each of `companies` (that anyone holds), since and until when.
    async fn lease_holders(&self, companies: &[CompanyId]) -> anyhow::Result<Vec<LeaseRecord>>;

    /// Takes `company` from `dead_owner`, whose process is provably gone, raising the fence;
    /// `None` when someone else took it meanwhile.
    async fn take_over(
        &self,
        company: &CompanyId,
        dead_owner: &str,
        owner: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> anyhow::Result<Option<i64>>;

    /// Among `owners` (lease tokens), those with a live database session, when the database
    /// can tell (PostgreSQL: sessions named after their owner in `pg_stat_activity`); `None`
    /// when it can't.
    async fn live_owners(&self, owners: &[String]) -> anyhow::Result<Option<BTreeSet<String>>>;

    /// Records a failed attempt at a step.
    async fn record_failure(&self, failure: &StepFailure) -> anyhow::Result<()>;

    /// Every failed attempt, oldest first.
    async fn failures(&self) -> anyhow::Result<Vec<StepFailure>>;

    /// Every issued document with its lines.
    async fn documents(&self) -> anyhow::Result<Vec<Document>>;

    /// What was issued for boundary `boundary_index` of `company`: its document and the
    /// adjustments issued for it.
    async fn issued_at(&self, company: &CompanyId, boundary_index: u32)
    -> anyhow::Result<IssuedAt>;

    /// The issued document numbered `number` of `company`, with who issued it if it is an
    /// adjustment, or the adjustments issued for it.
    async fn issued_document(
        &self,
        company: &CompanyId,
        number: &str,
    ) -> anyhow::Result<Option<IssuedDocument>>;

    /// The ids of the usage of `company` that closes of boundaries after `boundary_index`
    /// rated late.
    async fn rated_late_after(
        &self,
        company: &CompanyId,
        boundary_index: u32,
    ) -> anyhow::Result<BTreeSet<String>>;

    /// Records a real re-run in one transaction: its adjustment (claimed by its number, so
    /// that racing re-runs issue it once), a card company's charge of it, and its `job_runs`
    /// row (`adjusted`, or `identical` without an adjustment).
    async fn record_rerun(&self, rerun: &RerunRun) -> anyhow::Result<RerunCommit>;

    /// Every job run, in execution order.
    async fn job_runs(&self) -> anyhow::Result<Vec<JobRun>>;

    /// Every rejection, in the order recorded.
    async fn rejections(&self) -> anyhow::Result<Vec<Rejection>>;

    /// Every card charge, in the order made.
    async fn card_charges(&self) -> anyhow::Result<Vec<CardCharge>>;

    /// For each (company, from), the spend recorded by its closes at boundary `from` and
    /// later, by boundary index.
    async fn usage_spend(
        &self,
        from: &[(CompanyId, u32)],
    ) -> anyhow::Result<BTreeMap<CompanyId, BTreeMap<u32, Spend>>>;

    /// Streams the usage history `query` asks for, oldest first, into `sink`, one row at a
    /// time (memory does not grow with the rows). Returns the number of rows.
    async fn usage_history(
        &self,
        query: &HistoryQuery,
        sink: &mut (dyn FnMut(HistoryRecord) -> anyhow::Result<()> + Send),
    ) -> anyhow::Result<u64>;

    /// Claims up to `limit` queued emails due at `now` for `owner` until `until`: nobody
    /// else takes them before then. Returns them in key order.
    async fn claim_due_emails(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
        limit: i64,
    ) -> anyhow::Result<Vec<QueuedEmail>>;

    /// Records how `owner`'s try of an email ended; `false` when the claim was lost (it ran
    /// out and another sender took the email), and then nothing is changed.
    async fn finish_email(
        &self,
        email: &QueuedEmail,
        owner: &str,
        outcome: &EmailOutcome,
    ) -> anyhow::Result<bool>;

    /// The number of emails sent, and every email not sent (queued or failed), in key order;
    /// of one company, or all.
    async fn email_backlog(
        &self,
        company: Option<&CompanyId>,
    ) -> anyhow::Result<(i64, Vec<QueuedEmail>)>;
}

/// For each company with a completed step, the latest boundary with one: where its closing
/// has got to, read from [`Store::progress`].
pub fn latest_closes(progress: &[CompletedStep]) -> BTreeMap<CompanyId, u32> {
    let mut latest = BTreeMap::new();
    for s in progress {
        let k = latest.entry(s.company.clone()).or_insert(s.boundary_index);
        *k = (*k).max(s.boundary_index);
    }
    latest
}

/// How a command may use its database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Create the database (a SQLite file) when it is missing: `migrate` and `load`.
    Create,
    /// Read and write an existing database.
    Write,
    /// Only read an existing database (a SQLite file is opened read-only).
    ReadOnly,
}

/// A SQLite database file that does not exist, opened without [`Access::Create`].
#[derive(Debug, thiserror::Error)]
#[error("the database file does not exist")]
pub struct Missing;

/// A database URL of no kind billrun knows.
#[derive(Debug, thiserror::Error)]
#[error("unsupported database URL {0}: use sqlite://PATH or postgres://…")]
pub struct UnsupportedUrl(pub String);

/// How far a database holds billrun's schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schema {
    /// No billrun schema at all.
    Missing,
    /// Migrated, but not with every migration this build knows: `applied` of `known`.
    Behind {
        /// Migrations applied.
        applied: usize,
        /// Migrations this build knows.
        known: usize,
    },
    /// Every migration this build knows is applied.
    Current,
}

impl Schema {
    /// Compares the migrations a build knows with those a database applied.
    pub fn of(known: impl Iterator<Item = i64>, applied: &[i64]) -> Schema {
        let known: Vec<i64> = known.collect();
        let done = known.iter().filter(|v| applied.contains(v)).count();
        if done == known.len() {
            Schema::Current
        } else {
            Schema::Behind {
                applied: done,
                known: known.len(),
            }
        }
    }
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
    /// PostgreSQL sessions are named `session` (the process's lease token).
    pub async fn connect(url: &str, session: &str) -> anyhow::Result<AnyStore> {
        Self::open(url, session, Access::Create).await
    }

    /// Connects to `url` as `access` allows (see [`SqliteStore::open`]). An unknown scheme is
    /// an [`UnsupportedUrl`] error.
    pub async fn open(url: &str, session: &str, access: Access) -> anyhow::Result<AnyStore> {
        if url.starts_with("sqlite:") {
            Ok(AnyStore::Sqlite(SqliteStore::open(url, access).await?))
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            let mut options =
                sqlx::postgres::PgConnectOptions::from_str(url)?.application_name(session);
            if access == Access::ReadOnly {
                // The server then refuses any write, whatever the role may do.
                options = options.options([("default_transaction_read_only", "on")]);
            }
            Ok(AnyStore::Postgres(PgStore::connect_with(options).await?))
        } else {
            Err(UnsupportedUrl(redact_url(url)).into())
        }
    }

    /// Whether the database holds billrun's schema.
    pub async fn schema(&self) -> anyhow::Result<Schema> {
        match self {
            AnyStore::Sqlite(s) => s.schema().await,
            AnyStore::Postgres(s) => s.schema().await,
        }
    }

    /// Closes every connection (SQLite then checkpoints its write-ahead log).
    pub async fn close(&self) {
        match self {
            AnyStore::Sqlite(s) => s.close().await,
            AnyStore::Postgres(s) => s.close().await,
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

/// Query parameters whose value is a secret (PostgreSQL's `password`, `sslpassword`, and any
/// other key naming a password or secret).
fn secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    key.contains("password") || key.contains("secret") || key == "pass" || key == "pwd"
}

/// Splits `scheme://userinfo@rest`: the userinfo ends at the last `@` before the query, since a
/// password may hold an unencoded `@`. A password holding `?` before its `@` moves that `@` into
/// what looks like the query; then the last `@` of the whole URL ends the userinfo.
fn split_userinfo(rest: &str) -> Option<(&str, &str)> {
    let query = rest.find('?').unwrap_or(rest.len());
    if let Some(at) = rest[..query].rfind('@') {
        return Some((&rest[..at], &rest[at + 1..]));
    }
    let at = rest.rfind('@')?;
    // `host/db?user=a@b` names no password before the host: nothing to hide there.
    if rest[..query].contains(':') && !rest[query..at].contains('=') {
        return Some((&rest[..at], &rest[at + 1..]));
    }
    None
}

/// A URL with every password replaced by `***`, for logs and errors: the one in
/// `user:password@` (an unencoded `@` in it included) and the values of `password=`,
/// `sslpassword=` and other secret query parameters.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return redact_query(url);
    };
    let rest = match split_userinfo(rest) {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or("");
            if userinfo.contains(':') {
                format!("{user}:***@{host}")
            } else {
                format!("{user}@{host}")
            }
        }
        None => rest.to_string(),
    };
    format!("{scheme}://{}", redact_query(&rest))
}

/// `text` with the values of secret `key=value` parameters replaced by `***`.
fn redact_query(text: &str) -> String {
    let Some((head, query)) = text.split_once('?') else {
        return text.to_string();
    };
    let params: Vec<String> = query
        .split('&')
        .map(|p| match p.split_once('=') {
            Some((k, _)) if secret_key(k) => format!("{k}=***"),
            _ => p.to_string(),
        })
        .collect();
    format!("{head}?{}", params.join("&"))
}

/// The secrets a URL carries, as written and percent-decoded: its password and the values of
/// its secret query parameters. Output that might echo the URL is scrubbed of them.
pub fn url_secrets(url: &str) -> Vec<String> {
    let mut out = Vec::new();
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    if let Some((userinfo, _)) = split_userinfo(rest)
        && let Some((_, password)) = userinfo.split_once(':')
    {
        out.push(password.to_string());
    }
    if let Some((_, query)) = rest.split_once('?') {
        for p in query.split('&') {
            if let Some((k, v)) = p.split_once('=')
                && secret_key(k)
            {
                out.push(v.to_string());
            }
        }
    }
    let decoded: Vec<String> = out
        .iter()
        .filter_map(|s| {
            url::form_urlencoded::parse(format!("x={s}").as_bytes())
                .next()
                .map(|(_, v)| v.into_owned())
        })
        .chain(out.iter().filter_map(|s| percent_decode(s)))
        .collect();
    out.extend(decoded);
    out.retain(|s| !s.is_empty());
    out.sort();
    out.dedup();
    out
}

/// `%XX` sequences decoded, when they make UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(b) = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(b);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// `text` with every one of `secrets` replaced by `***`: for messages that a driver or a
/// library built from a URL and may quote it.
pub fn scrub(text: &str, secrets: &[String]) -> String {
    let mut out = text.to_string();
    // Longest first, so that a secret holding another is hidden whole.
    let mut sorted: Vec<&String> = secrets.iter().filter(|s| !s.is_empty()).collect();
    sorted.sort_by_key(|s| std::cmp::Reverse(s.len()));
    for s in sorted {
        out = out.replace(s.as_str(), "***");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{redact_url, scrub, url_secrets};

    #[test]
    fn passwords_never_show() {
        assert_eq!(
            redact_url("postgres://bill:s3cret@db:5432/billing"),
            "postgres://bill:***@db:5432/billing"
        );
        assert_eq!(redact_url("postgres://bill@db/x"), "postgres://bill@db/x");
        assert_eq!(redact_url("sqlite://billrun.db"), "sqlite://billrun.db");
    }

    #[test]
    fn every_form_of_password_is_masked() {
        let cases = [
            ("postgres://bill:p@ss@db/x", "postgres://bill:***@db/x"),
            (
                "postgres://bill@db/x?password=hunter2&sslmode=require",
                "postgres://bill@db/x?password=***&sslmode=require",
            ),
            (
                "postgres://db/x?sslpassword=hunter2",
                "postgres://db/x?sslpassword=***",
            ),
            (
                "smtp://mailer:s%40cret@relay:587",
                "smtp://mailer:***@relay:587",
            ),
            ("postgres://bill:a?b@db/x", "postgres://bill:***@db/x"),
            ("postgres://db/x?user=a@b", "postgres://db/x?user=a@b"),
        ];
        for (url, shown) in cases {
            assert_eq!(redact_url(url), shown, "{url}");
        }
    }

    #[test]
    fn secrets_are_found_as_written_and_decoded() {
        let secrets = url_secrets("smtp://mailer:s%40cret@relay?password=x%2By");
        for s in ["s%40cret", "s@cret", "x%2By", "x+y"] {
            assert!(secrets.contains(&s.to_string()), "{s} in {secrets:?}");
        }
        assert_eq!(
            scrub("login as mailer with s@cret failed", &secrets),
            "login as mailer with *** failed"
        );
        assert!(url_secrets("postgres://bill@db/x").is_empty());
    }
}
