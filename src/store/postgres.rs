//! The PostgreSQL store, for production: several instances share one database and coordinate
//! through it alone.

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, Postgres, Transaction};

use super::codec;
use super::sql::sql_store;
use crate::domain::usage::Rating;
use crate::domain::wallets::LedgerEntry;

/// A PostgreSQL-backed store.
#[derive(Clone)]
pub struct PgStore {
    pub(crate) pool: PgPool,
}

impl PgStore {
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
        Ok(PgStore { pool })
    }

    pub(crate) async fn begin_write(&self) -> anyhow::Result<Transaction<'static, Postgres>> {
        Ok(self.pool.begin().await?)
    }

    pub(crate) async fn run_migrations(&self) -> anyhow::Result<()> {
        sqlx::migrate!("sql/migrations/postgres")
            .run(&self.pool)
            .await?;
        Ok(())
    }

    /// Appends ledger entries, in order, as one `UNNEST` of arrays per chunk: one small
    /// statement, planned once, whatever the number of rows.
    pub(crate) async fn insert_ledger(
        tx: &mut Transaction<'static, Postgres>,
        entries: &[(&str, &LedgerEntry)],
    ) -> anyhow::Result<()> {
        for chunk in entries.chunks(10_000) {
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
                ats.push(codec::instant(e.at));
                scopes.push(e.scope.clone());
                wallets.push(e.wallet.clone());
                kinds.push(e.kind.as_str().to_string());
                amounts.push(codec::money(e.amount)?);
                references.push(e.reference.clone());
                expiries.push(e.expires_at.map(codec::instant));
            }
            sqlx::query(
                "INSERT INTO ledger_entries (company_id, at, scope, wallet, entry, amount, reference, expires_at) \
                 SELECT c, a, s, w, e, m, r, x FROM UNNEST($1::text[], $2::int8[], $3::text[], $4::text[], \
                 $5::text[], $6::int8[], $7::text[], $8::int8[]) WITH ORDINALITY AS u(c, a, s, w, e, m, r, x, n) \
                 ORDER BY n",
            )
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

    /// Appends usage ratings as one `UNNEST` of arrays per chunk.
    pub(crate) async fn insert_ratings(
        tx: &mut Transaction<'static, Postgres>,
        ratings: &[(&str, &Rating)],
    ) -> anyhow::Result<()> {
        for chunk in ratings.chunks(10_000) {
            let companies: Vec<String> = chunk.iter().map(|(c, _)| c.to_string()).collect();
            let ids: Vec<String> = chunk.iter().map(|(_, r)| r.id.clone()).collect();
            let boundaries: Vec<i64> = chunk
                .iter()
                .map(|(_, r)| i64::from(r.boundary_index))
                .collect();
            let sources: Vec<String> = chunk
                .iter()
                .map(|(_, r)| r.wallet_sources.clone())
                .collect();
            let late: Vec<bool> = chunk.iter().map(|(_, r)| r.late).collect();
            sqlx::query(
                "INSERT INTO usage_ratings (company_id, id, boundary_index, wallet_sources, late) \
                 SELECT * FROM UNNEST($1::text[], $2::text[], $3::int8[], $4::text[], $5::bool[])",
            )
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

sql_store!(PgStore, sqlx::Postgres);
