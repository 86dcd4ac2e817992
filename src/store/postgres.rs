//! The PostgreSQL store, for production: several instances share one database and coordinate
//! through it alone.

use std::collections::{BTreeMap, BTreeSet};
use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, PgConnection, Pool, Postgres, Transaction};

use super::Schema;
use super::backend::Backend;
use super::rows;
use super::sql::SqlStore;
use crate::domain::usage::{Rating, Usage};
use crate::domain::wallets::LedgerEntry;
use crate::domain::words::CompanyId;

/// A PostgreSQL-backed store.
pub type PgStore = SqlStore<Postgres>;

/// Rows per buffer sent down a `COPY`.
const COPY_ROWS: usize = 10_000;

/// How long opening a connection may take before the server counts as unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A connection error in words an operator acts on: "connection refused" said as such.
fn connect_error(e: sqlx::Error) -> anyhow::Error {
    if let sqlx::Error::Io(io) = &e
        && io.kind() == std::io::ErrorKind::ConnectionRefused
    {
        return anyhow::anyhow!("connection refused (is PostgreSQL running and listening there?)");
    }
    e.into()
}

/// billrun reads a company's rows through keys that lead with the company. At the default
/// `random_page_cost` (4, for spinning disks) PostgreSQL read the whole usage table for each
/// chunk of a close (three processes, 0.4–0.9 s) rather than look up its 128 companies (0.2 s,
/// one process): sessions plan with 1.1, unless the URL's `options` set it.
fn planner_settings(options: PgConnectOptions) -> PgConnectOptions {
    if options
        .get_options()
        .is_some_and(|o| o.contains("random_page_cost"))
    {
        options
    } else {
        options.options([("random_page_cost", "1.1")])
    }
}

impl SqlStore<Postgres> {
    /// Connects to a `postgres://` URL.
    pub async fn connect(url: &str) -> anyhow::Result<Self> {
        let options = PgConnectOptions::from_str(url)?;
        Self::connect_with(options).await
    }

    /// Connects with explicit options (tests use this to pin a schema). One connection is
    /// opened first, under a timeout of its own, so that a server that refuses or does not
    /// answer is reported as such (not as a pool that timed out).
    pub async fn connect_with(options: PgConnectOptions) -> anyhow::Result<Self> {
        let options = planner_settings(options);
        match tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect_with(&options)).await {
            Ok(Ok(first)) => first.close().await?,
            Ok(Err(e)) => return Err(connect_error(e)),
            Err(_) => anyhow::bail!(
                "no answer from the server within {} s",
                CONNECT_TIMEOUT.as_secs()
            ),
        }
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

    async fn schema(pool: &Pool<Self>) -> anyhow::Result<Schema> {
        let table: Option<String> =
            sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations')::text")
                .fetch_one(pool)
                .await?;
        if table.is_none() {
            return Ok(Schema::Missing);
        }
        let applied: Vec<i64> = sqlx::query_scalar(
            "SELECT version FROM _sqlx_migrations WHERE success ORDER BY version",
        )
        .fetch_all(pool)
        .await?;
        Ok(Schema::of(
            sqlx::migrate!("sql/migrations/postgres")
                .iter()
                .map(|m| m.version),
            &applied,
        ))
    }

    async fn analyze(pool: &Pool<Self>, tables: &[&'static str]) -> anyhow::Result<()> {
        // Autovacuum gets there eventually (when it runs at all); the next queries of a bulk
        // load or close are planned now. The table names are the store's constants.
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "ANALYZE {}",
            tables.join(", ")
        )))
        .execute(pool)
        .await?;
        Ok(())
    }

    async fn live_sessions(
        pool: &Pool<Self>,
        owners: &[String],
    ) -> anyhow::Result<Option<BTreeSet<String>>> {
        let names: Vec<String> = sqlx::query_scalar(
            "SELECT DISTINCT application_name FROM pg_stat_activity \
             WHERE application_name = ANY($1) OR pid = pg_backend_pid()",
        )
        .bind(owners)
        .fetch_all(pool)
        .await?;
        let mine: Option<String> = sqlx::query_scalar("SELECT current_setting('application_name')")
            .fetch_optional(pool)
            .await?;
        // A role that can't see other sessions' names can't tell who is gone.
        match mine {
            Some(me) if !me.is_empty() && names.contains(&me) => {
                Ok(Some(names.into_iter().collect()))
            }
            _ => Ok(None),
        }
    }

    async fn insert_usage(
        tx: &mut Transaction<'static, Self>,
        usage: &[Usage],
    ) -> anyhow::Result<()> {
        if usage.is_empty() {
            return Ok(());
        }
        // COPY takes the rows as one stream, with no statement or parameter per row. Empty
        // text is text, not NULL, in the columns that may be empty.
        let statement = format!(
            "COPY usage ({}) FROM STDIN WITH (FORMAT csv, FORCE_NOT_NULL (party, usage_type, \
             direction, remote_number, number_used, duration_s, increment))",
            rows::USAGE_COLUMNS
        );
        let mut copy = tx.copy_in_raw(&statement).await?;
        for chunk in usage.chunks(COPY_ROWS) {
            let mut csv = csv::WriterBuilder::new()
                .has_headers(false)
                .from_writer(Vec::new());
            for u in chunk {
                csv.write_record(
                    rows::UsageValues::of(u)?
                        .text()
                        .iter()
                        .map(|c| c.as_bytes()),
                )?;
            }
            copy.send(csv.into_inner()?).await?;
        }
        copy.finish().await?;
        Ok(())
    }

    async fn usage_contents(
        conn: &mut Self::Connection,
        ids: &[String],
    ) -> anyhow::Result<BTreeMap<String, String>> {
        // Within the load's own transaction the planner has no statistics of the rows it
        // added: it takes the list of ids for a large share of the table and scans all of it,
        // once per chunk, so that a load grew with the square of its rows. Each id is one
        // index lookup; only this statement is told so.
        sqlx::query("SET LOCAL enable_seqscan = off")
            .execute(&mut *conn)
            .await?;
        // Planned with the ids themselves, never as a prepared statement's generic plan: the
        // hash index's matches are checked again against the list, which PostgreSQL looks up
        // in a hash table only when the list is a constant; as a parameter it reads the whole
        // list for every row found, 22 s a chunk when a load is retried and every id is found.
        let rows: Vec<(String, String)> =
            sqlx::query_as("SELECT id, content FROM usage WHERE id = ANY($1)")
                .bind(ids)
                .persistent(false)
                .fetch_all(&mut *conn)
                .await?;
        sqlx::query("SET LOCAL enable_seqscan TO DEFAULT")
            .execute(&mut *conn)
            .await?;
        Ok(rows.into_iter().collect())
    }

    async fn prepare_stream(_conn: &mut Self::Connection) -> anyhow::Result<()> {
        // The server keeps the pages; the client holds one row at a time.
        Ok(())
    }

    async fn end_stream(conn: sqlx::pool::PoolConnection<Self>) -> anyhow::Result<()> {
        // Nothing was changed: the connection and its prepared statements serve the next
        // stream (a run's emails each stream their rows).
        drop(conn);
        Ok(())
    }

    async fn insert_ledger(
        tx: &mut Transaction<'static, Self>,
        entries: &[(&CompanyId, &LedgerEntry)],
    ) -> anyhow::Result<()> {
        // COPY numbers the entries (`seq`) in the order they are sent.
        let rows = entries.iter().map(|(company, e)| {
            Ok([
                company.to_string(),
                rows::instant(e.at).to_string(),
                e.scope.to_string(),
                e.wallet.to_string(),
                e.kind.as_str().to_string(),
                rows::money(e.amount)?.to_string(),
                e.reference.clone(),
                e.expires_at
                    .map(|x| rows::instant(x).to_string())
                    .unwrap_or_default(),
            ])
        });
        let buffers = csv_buffers(rows)?;
        copy_in(
            tx,
            "COPY ledger_entries (company_id, at, scope, wallet, entry, amount, reference, \
             expires_at) FROM STDIN WITH (FORMAT csv, FORCE_NOT_NULL (scope, wallet, entry, \
             reference))",
            buffers,
        )
        .await
    }

    async fn insert_ratings(
        tx: &mut Transaction<'static, Self>,
        ratings: &[(&CompanyId, &Rating)],
    ) -> anyhow::Result<()> {
        let rows = ratings.iter().map(|(company, r)| {
            Ok([
                company.to_string(),
                r.id.clone(),
                r.boundary_index.to_string(),
                rows::wallets_text(&r.wallet_sources),
                r.late.to_string(),
            ])
        });
        let buffers = csv_buffers(rows)?;
        copy_in(
            tx,
            "COPY usage_ratings (company_id, id, boundary_index, wallet_sources, late) \
             FROM STDIN WITH (FORMAT csv, FORCE_NOT_NULL (id, wallet_sources))",
            buffers,
        )
        .await
    }
}

/// `rows` as CSV text (empty cells are NULL unless the `COPY` forces them), `COPY_ROWS` rows
/// to a buffer.
fn csv_buffers<const N: usize>(
    rows: impl Iterator<Item = anyhow::Result<[String; N]>>,
) -> anyhow::Result<Vec<Vec<u8>>> {
    let writer = || {
        csv::WriterBuilder::new()
            .has_headers(false)
            .from_writer(Vec::new())
    };
    let mut buffers = Vec::new();
    let mut csv = writer();
    let mut buffered = 0;
    for row in rows {
        csv.write_record(row?)?;
        buffered += 1;
        if buffered == COPY_ROWS {
            let full = std::mem::replace(&mut csv, writer());
            buffers.push(full.into_inner()?);
            buffered = 0;
        }
    }
    if buffered > 0 {
        buffers.push(csv.into_inner()?);
    }
    Ok(buffers)
}

/// Sends `buffers` down one `COPY … FROM STDIN (FORMAT csv)`: no statement or parameter per
/// row.
async fn copy_in(
    tx: &mut Transaction<'static, Postgres>,
    statement: &str,
    buffers: Vec<Vec<u8>>,
) -> anyhow::Result<()> {
    if buffers.is_empty() {
        return Ok(());
    }
    let mut copy = tx.copy_in_raw(statement).await?;
    for buffer in buffers {
        copy.send(buffer).await?;
    }
    copy.finish().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_plan_for_fast_storage_unless_the_url_says_otherwise() {
        let plain = PgConnectOptions::from_str("postgres://u@h/db").unwrap();
        assert_eq!(
            planner_settings(plain).get_options(),
            Some("-c random_page_cost=1.1")
        );
        let own = PgConnectOptions::from_str("postgres://u@h/db?options=-c%20random_page_cost%3D2")
            .unwrap();
        assert_eq!(
            planner_settings(own).get_options(),
            Some("-c random_page_cost=2")
        );
    }
}
