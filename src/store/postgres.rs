//! The PostgreSQL store, for production: several instances share one database and coordinate
//! through it alone.

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Pool, Postgres, Transaction};

use super::backend::Backend;
use super::rows;
use super::sql::SqlStore;
use crate::domain::usage::Rating;
use crate::domain::wallets::LedgerEntry;
use crate::domain::words::CompanyId;

/// A PostgreSQL-backed store.
pub type PgStore = SqlStore<Postgres>;

/// Rows per `UNNEST` insert: one small statement, planned once, whatever the number of rows.
const ROWS_PER_INSERT: usize = 10_000;

impl SqlStore<Postgres> {
    /// Connects to a `postgres://` URL.
    pub async fn connect(url: &str) -> anyhow::Result<Self> {
        let options = PgConnectOptions::from_str(url)?;
        Self::connect_with(options).await
    }

    /// Connects with explicit options (tests use this to pin a schema).
    pub async fn connect_with(options: PgConnectOptions) -> anyhow::Result<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await?;
        Ok(SqlStore::new(pool))
    }
}

impl Backend for Postgres {
    async fn begin_write(pool: &Pool<Self>) -> anyhow::Result<Transaction<'static, Self>> {
        Ok(pool.begin().await?)
    }

    async fn migrate(pool: &Pool<Self>) -> anyhow::Result<()> {
        sqlx::migrate!("sql/migrations/postgres").run(pool).await?;
        Ok(())
    }

    async fn prepare_stream(_conn: &mut Self::Connection) -> anyhow::Result<()> {
        // The server keeps the pages; the client holds one row at a time.
        Ok(())
    }

    async fn insert_ledger(
        tx: &mut Transaction<'static, Self>,
        entries: &[(&CompanyId, &LedgerEntry)],
    ) -> anyhow::Result<()> {
        for chunk in entries.chunks(ROWS_PER_INSERT) {
            let mut companies = Vec::with_capacity(chunk.len());
            let mut ats = Vec::with_capacity(chunk.len());
            let mut scopes = Vec::with_capacity(chunk.len());
            let mut wallets = Vec::with_capacity(chunk.len());
            let mut kinds = Vec::with_capacity(chunk.len());
            let mut amounts = Vec::with_capacity(chunk.len());
            let mut references = Vec::with_capacity(chunk.len());
            let mut expiries: Vec<Option<i64>> = Vec::with_capacity(chunk.len());
            for (company, e) in chunk {
                companies.push(company.to_string());
                ats.push(rows::instant(e.at));
                scopes.push(e.scope.to_string());
                wallets.push(e.wallet.to_string());
                kinds.push(e.kind.as_str().to_string());
                amounts.push(rows::money(e.amount)?);
                references.push(e.reference.clone());
                expiries.push(e.expires_at.map(rows::instant));
            }
            sqlx::query(include_str!("../../sql/queries/postgres/insert_ledger.sql"))
                .bind(companies)
                .bind(ats)
                .bind(scopes)
                .bind(wallets)
                .bind(kinds)
                .bind(amounts)
                .bind(references)
                .bind(expiries)
                .execute(&mut **tx)
                .await?;
        }
        Ok(())
    }

    async fn insert_ratings(
        tx: &mut Transaction<'static, Self>,
        ratings: &[(&CompanyId, &Rating)],
    ) -> anyhow::Result<()> {
        for chunk in ratings.chunks(ROWS_PER_INSERT) {
            let companies: Vec<String> = chunk.iter().map(|(c, _)| c.to_string()).collect();
            let ids: Vec<String> = chunk.iter().map(|(_, r)| r.id.clone()).collect();
            let boundaries: Vec<i64> = chunk
                .iter()
                .map(|(_, r)| i64::from(r.boundary_index))
                .collect();
            let sources: Vec<String> = chunk
                .iter()
                .map(|(_, r)| rows::wallets_text(&r.wallet_sources))
                .collect();
            let late: Vec<bool> = chunk.iter().map(|(_, r)| r.late).collect();
            sqlx::query(include_str!(
                "../../sql/queries/postgres/insert_ratings.sql"
            ))
            .bind(companies)
            .bind(ids)
            .bind(boundaries)
            .bind(sources)
            .bind(late)
            .execute(&mut **tx)
            .await?;
        }
        Ok(())
    }
}
