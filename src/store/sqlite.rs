//! The SQLite store: a file, nothing to install. WAL with a busy timeout lets readers and one
//! writer work at once; writers take the lock up front with `BEGIN IMMEDIATE`, because a
//! deferred transaction that reads before it writes fails with "database is locked" instead of
//! waiting.

use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Sqlite, SqlitePool, Transaction};

use super::sql::sql_store;

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
}

sql_store!(SqliteStore, sqlx::Sqlite);
