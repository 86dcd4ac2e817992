//! What differs between the two databases: how a store connects, how a write transaction
//! begins, the migrations, and the bulk inserts of the rows a close writes by the thousand.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;

use sqlx::{Pool, Transaction};

use crate::domain::usage::{Rating, Usage};
use crate::domain::wallets::LedgerEntry;
use crate::domain::words::CompanyId;

/// A database billrun can store its data in.
pub trait Backend: sqlx::Database + sqlx::database::HasStatementCache {
    /// Begins a transaction that will write. SQLite takes its write lock up front, since a
    /// deferred transaction that reads before it writes fails instead of waiting.
    fn begin_write(
        pool: &Pool<Self>,
    ) -> impl Future<Output = anyhow::Result<Transaction<'static, Self>>> + Send;

    /// Creates or upgrades the schema.
    fn migrate(pool: &Pool<Self>) -> impl Future<Output = anyhow::Result<()>>;

    /// Whether the database holds billrun's schema, and how far it is migrated; reads only.
    fn schema(pool: &Pool<Self>) -> impl Future<Output = anyhow::Result<super::Schema>>;
    /// Brings the planner's statistics of `tables` up to date.
    fn analyze(
        pool: &Pool<Self>,
        tables: &[&'static str],
    ) -> impl Future<Output = anyhow::Result<()>> + Send;

    /// Appends accepted usage rows, in as few statements as their number allows.
    fn insert_usage(
        tx: &mut Transaction<'static, Self>,
        usage: &[Usage],
    ) -> impl Future<Output = anyhow::Result<()>> + Send;

    /// The content of the accepted usage rows with these ids, by id: the duplicate check of
    /// an intake, one lookup per id through the index on `usage.id`.
    fn usage_contents(
        conn: &mut Self::Connection,
        ids: &[String],
    ) -> impl Future<Output = anyhow::Result<BTreeMap<String, String>>> + Send;

    /// Readies a connection for a long streamed read (an export of any size), so the memory it
    /// holds does not grow with the rows read.
    fn prepare_stream(
        conn: &mut Self::Connection,
    ) -> impl Future<Output = anyhow::Result<()>> + Send;

    /// Ends a streamed read on a connection readied by [`Backend::prepare_stream`]: puts the
    /// pool's settings back and gives it back.
    fn end_stream(
        conn: sqlx::pool::PoolConnection<Self>,
    ) -> impl Future<Output = anyhow::Result<()>> + Send;

    /// Appends ledger entries in the order given, in as few statements as their number allows.
    fn insert_ledger(
        tx: &mut Transaction<'static, Self>,
        entries: &[(&CompanyId, &LedgerEntry)],
    ) -> impl Future<Output = anyhow::Result<()>> + Send;

    /// Among `owners` (lease tokens, which each process also gives its database sessions as
    /// their name), those with a live session; `None` when the database can't tell.
    fn live_sessions(
        pool: &Pool<Self>,
        owners: &[String],
    ) -> impl Future<Output = anyhow::Result<Option<BTreeSet<String>>>> + Send;

    /// Appends usage ratings, in as few statements as their number allows.
    fn insert_ratings(
        tx: &mut Transaction<'static, Self>,
        ratings: &[(&CompanyId, &Rating)],
    ) -> impl Future<Output = anyhow::Result<()>> + Send;
}
