//! The SQLite store: a file, nothing to install. WAL with a busy timeout lets readers and one
//! writer work at once; writers take the lock up front with `BEGIN IMMEDIATE`, because a
//! deferred transaction that reads before it writes fails with "database is locked" instead of
//! waiting.

use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{QueryBuilder, Sqlite, SqlitePool, Transaction};

use super::codec;
use super::sql::sql_store;
use crate::domain::usage::Rating;
use crate::domain::wallets::LedgerEntry;

/// A SQLite-backed store.
#[derive(Clone)]
pub struct SqliteStore {
    pub(crate) pool: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating on first use) the database at a `sqlite://PATH` URL.
    pub async fn connect(url: &str) -> anyhow::Result<Self> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(30))
            .foreign_keys(true)
            // A month of usage is hundreds of MB of rows and indexes; SQLite's default 2 MB
            // page cache would re-read index pages from disk for every insert.
            .pragma("cache_size", "-262144")
            .pragma("temp_store", "memory");
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await?;
        Ok(SqliteStore { pool })
    }

    pub(crate) async fn begin_write(&self) -> anyhow::Result<Transaction<'static, Sqlite>> {
        Ok(self.pool.begin_with("BEGIN IMMEDIATE").await?)
    }

    pub(crate) async fn run_migrations(&self) -> anyhow::Result<()> {
        sqlx::migrate!("sql/migrations/sqlite")
            .run(&self.pool)
            .await?;
        Ok(())
    }

    /// Appends ledger entries, in order, in many-row inserts.
    pub(crate) async fn insert_ledger(
        tx: &mut Transaction<'static, Sqlite>,
        entries: &[(&str, &LedgerEntry)],
    ) -> anyhow::Result<()> {
        for chunk in entries.chunks(500) {
            let rows = chunk
                .iter()
                .map(|(c, e)| Ok((*c, *e, codec::money(e.amount)?)))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let mut qb = QueryBuilder::<Sqlite>::new(
                "INSERT INTO ledger_entries (company_id, at, scope, wallet, entry, amount, reference, expires_at) ",
            );
            qb.push_values(rows, |mut b, (company, e, amount)| {
                b.push_bind(company.to_string())
                    .push_bind(codec::instant(e.at))
                    .push_bind(e.scope.clone())
                    .push_bind(e.wallet.clone())
                    .push_bind(e.kind.as_str())
                    .push_bind(amount)
                    .push_bind(e.reference.clone())
                    .push_bind(e.expires_at.map(codec::instant));
            });
            qb.build().execute(&mut **tx).await?;
        }
        Ok(())
    }

    /// Appends usage ratings in many-row inserts.
    pub(crate) async fn insert_ratings(
        tx: &mut Transaction<'static, Sqlite>,
        ratings: &[(&str, &Rating)],
    ) -> anyhow::Result<()> {
        for chunk in ratings.chunks(500) {
            let mut qb = QueryBuilder::<Sqlite>::new(
                "INSERT INTO usage_ratings (company_id, id, boundary_index, wallet_sources, late) ",
            );
            qb.push_values(chunk, |mut b, (company, r)| {
                b.push_bind(company.to_string())
                    .push_bind(r.id.clone())
                    .push_bind(i64::from(r.boundary_index))
                    .push_bind(r.wallet_sources.clone())
                    .push_bind(r.late);
            });
            qb.build().execute(&mut **tx).await?;
        }
        Ok(())
    }
}

sql_store!(SqliteStore, sqlx::Sqlite);
