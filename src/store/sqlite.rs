//! The SQLite store: a file, nothing to install. WAL with a busy timeout lets readers and one
//! writer work at once; writers take the lock up front with `BEGIN IMMEDIATE`, because a
//! deferred transaction that reads before it writes fails with "database is locked" instead of
//! waiting.

use std::collections::{BTreeMap, BTreeSet};
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Pool, QueryBuilder, Sqlite, Transaction};

use super::backend::Backend;
use super::rows;
use super::sql::SqlStore;
use super::{Access, Missing, Schema};
use crate::domain::usage::{Rating, Usage};
use crate::domain::wallets::LedgerEntry;
use crate::domain::words::CompanyId;

/// A SQLite-backed store.
pub type SqliteStore = SqlStore<Sqlite>;

/// Rows SQLite's thread may read ahead of the task taking them.
const ROW_BUFFER: usize = 4_096;

/// Each connection's page cache (`PRAGMA cache_size`, negative: KiB), see [`SqlStore::open`].
const PAGE_CACHE: &str = "-65536";

/// Where each connection keeps its temporary tables and sorts, outside a streamed read.
const TEMP_STORE: &str = "memory";

/// The page cache of a connection during a streamed read (see [`Backend::prepare_stream`]).
const STREAM_PAGE_CACHE: &str = "-8192";

/// The page size of a database billrun creates (SQLite's default is 4 KiB). A month's usage
/// and its indexes are B-trees of hundreds of MB: larger pages make them shallower, with fewer
/// splits while a load inserts and fewer pages per company while a close reads. A load and
/// close of a million-row month, run for run: 4 KiB 27.5 s, 8 KiB 23.6 s, 16 KiB 5–7 % less
/// again; a ten-million-row load 367 s → 176 s (BENCHMARKS.md, item 23). A database that
/// exists keeps the size it was made with.
const PAGE_SIZE: u32 = 16_384;

/// Rows per multi-row insert: SQLite binds at most 32 766 parameters per statement.
const ROWS_PER_INSERT: usize = 500;

impl SqlStore<Sqlite> {
    /// Opens (creating on first use) the database at a `sqlite://PATH` URL.
    pub async fn connect(url: &str) -> anyhow::Result<Self> {
        Self::open(url, Access::Create).await
    }

    /// Opens the database at a `sqlite://PATH` URL as `access` allows: only
    /// [`Access::Create`] makes a missing file ([`Missing`] otherwise), and
    /// [`Access::ReadOnly`] opens the file read-only and changes no setting stored in it.
    pub async fn open(url: &str, access: Access) -> anyhow::Result<Self> {
        let options = SqliteConnectOptions::from_str(url)?;
        let file = options.get_filename();
        let in_memory = file.as_os_str().is_empty() || file.as_os_str() == ":memory:";
        if access != Access::Create && !in_memory && !file.exists() {
            return Err(Missing.into());
        }
        let options = options
            .create_if_missing(access == Access::Create)
            .busy_timeout(Duration::from_secs(30))
            .foreign_keys(true)
            .row_buffer_size(ROW_BUFFER);
        if access == Access::ReadOnly {
            let pool = SqlitePoolOptions::new()
                .max_connections(4)
                .connect_with(
                    options
                        .read_only(true)
                        .pragma("cache_size", PAGE_CACHE)
                        .pragma("temp_store", TEMP_STORE),
                )
                .await?;
            return Ok(SqlStore::new(pool));
        }
        let options = options
            .page_size(PAGE_SIZE)
            .synchronous(SqliteSynchronous::Normal)
            // A month of usage is hundreds of MB of rows and indexes; SQLite's default 2 MB
            // page cache would re-read index pages from disk for every insert. The cache is
            // per connection and a close uses all four (two chunks in flight, each reading
            // and committing): 64 MiB each, at most 256 MiB in all, keeps a process with
            // the chunks beside it under 512 MiB at ten million rows.
            .pragma("cache_size", PAGE_CACHE)
            .pragma("temp_store", TEMP_STORE);
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await?;
        // WAL is stored in the file: set when it is created (and migrated), so that opening a
        // database that is not billrun's writes nothing to it.
        if access == Access::Create && !in_memory {
            ensure_wal(&pool).await?;
        }
        Ok(SqlStore::new(pool))
    }
}

/// Puts the file in WAL mode unless it is already. Switching needs the file to itself, and
/// SQLite answers "database is locked" at once rather than waiting while another process
/// holds it (several loads starting together on a new file): so it is retried, for as long
/// as the busy timeout.
async fn ensure_wal(pool: &Pool<Sqlite>) -> anyhow::Result<()> {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(pool)
            .await?;
        if mode.eq_ignore_ascii_case("wal") {
            return Ok(());
        }
        let switched: Result<String, sqlx::Error> = sqlx::query_scalar("PRAGMA journal_mode = WAL")
            .fetch_one(pool)
            .await;
        match switched {
            Ok(m) if m.eq_ignore_ascii_case("wal") => return Ok(()),
            _ if std::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Ok(m) => anyhow::bail!("the database stays in journal mode {m}, not WAL"),
            Err(e) => return Err(e.into()),
        }
    }
}

impl Backend for Sqlite {
    async fn begin_write(pool: &Pool<Self>) -> anyhow::Result<Transaction<'static, Self>> {
        Ok(pool.begin_with("BEGIN IMMEDIATE").await?)
    }

    async fn migrate(pool: &Pool<Self>) -> anyhow::Result<()> {
        // SQLite's migrator takes no lock: two processes migrating a new file at once would both
        // create the tables. Holding the write lock for the whole run serializes them; the
        // migrator's own transactions nest inside as savepoints.
        let migrator = sqlx::migrate!("sql/migrations/sqlite");
        let known: Vec<i64> = migrator.iter().map(|m| m.version).collect();
        // Up to date: every migration applied, nothing to write, so no lock to wait for. (No
        // table yet: an error, so the migrator runs.)
        let applied: Vec<i64> = sqlx::query_scalar(
            "SELECT version FROM _sqlx_migrations WHERE success ORDER BY version",
        )
        .fetch_all(pool)
        .await
        .unwrap_or_default();
        if known.iter().all(|v| applied.contains(v)) {
            return Ok(());
        }
        let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
        migrator.run(&mut *tx).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn schema(pool: &Pool<Self>) -> anyhow::Result<Schema> {
        let tables: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'",
        )
        .fetch_one(pool)
        .await?;
        if tables == 0 {
            return Ok(Schema::Missing);
        }
        let applied: Vec<i64> = sqlx::query_scalar(
            "SELECT version FROM _sqlx_migrations WHERE success ORDER BY version",
        )
        .fetch_all(pool)
        .await?;
        Ok(Schema::of(
            sqlx::migrate!("sql/migrations/sqlite")
                .iter()
                .map(|m| m.version),
            &applied,
        ))
    }

    async fn analyze(_pool: &Pool<Self>, _tables: &[&'static str]) -> anyhow::Result<()> {
        // SQLite plans these queries by their indexes alone.
        Ok(())
    }

    async fn live_sessions(
        _pool: &Pool<Self>,
        _owners: &[String],
    ) -> anyhow::Result<Option<BTreeSet<String>>> {
        // A SQLite file has no sessions to see: a holder's liveness is judged by its process.
        Ok(None)
    }

    async fn insert_usage(
        tx: &mut Transaction<'static, Self>,
        usage: &[Usage],
    ) -> anyhow::Result<()> {
        let rows = usage
            .iter()
            .map(rows::UsageValues::of)
            .collect::<anyhow::Result<Vec<_>>>()?;
        // 21 columns: 1 000 rows bind 21 000 parameters, under SQLite's limit.
        for chunk in rows.chunks(1_000) {
            usage_insert(chunk).build().execute(&mut **tx).await?;
        }
        Ok(())
    }

    async fn usage_contents(
        conn: &mut Self::Connection,
        ids: &[String],
    ) -> anyhow::Result<BTreeMap<String, String>> {
        let mut out = BTreeMap::new();
        for chunk in ids.chunks(ROWS_PER_INSERT) {
            let mut qb = QueryBuilder::<Sqlite>::new("SELECT id, content FROM usage WHERE id IN (");
            let mut sep = qb.separated(", ");
            for id in chunk {
                sep.push_bind(id.as_str());
            }
            qb.push(")");
            let rows: Vec<(String, String)> = qb.build_query_as().fetch_all(&mut *conn).await?;
            out.extend(rows);
        }
        Ok(out)
    }

    async fn prepare_stream(conn: &mut Self::Connection) -> anyhow::Result<()> {
        // The store's connections keep a 64 MiB page cache for closes; a streamed export reads
        // every page of the usage table once, and would fill it. 8 MiB is plenty for one pass.
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "PRAGMA cache_size = {STREAM_PAGE_CACHE}"
        )))
        .execute(&mut *conn)
        .await?;
        // A sort too large for that cache spills to a temporary file, not to memory.
        sqlx::query("PRAGMA temp_store = FILE")
            .execute(&mut *conn)
            .await?;
        Ok(())
    }

    async fn end_stream(mut conn: sqlx::pool::PoolConnection<Self>) -> anyhow::Result<()> {
        // The pool's settings again (both pools open with the same), and back to the pool
        // with its prepared statements: a run's emails each stream their rows, and a new
        // connection per email (a thread, an empty cache) cost more than their reads.
        for (pragma, value) in [("cache_size", PAGE_CACHE), ("temp_store", TEMP_STORE)] {
            sqlx::query(sqlx::AssertSqlSafe(format!("PRAGMA {pragma} = {value}")))
                .execute(&mut *conn)
                .await?;
        }
        Ok(())
    }

    async fn insert_ledger(
        tx: &mut Transaction<'static, Self>,
        entries: &[(&CompanyId, &LedgerEntry)],
    ) -> anyhow::Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        // The key is (company, seq): `seq` continues the order made, taken under the write
        // lock this transaction holds.
        let last: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(seq), 0) FROM ledger_entries")
            .fetch_one(&mut **tx)
            .await?;
        for (n, chunk) in entries.chunks(ROWS_PER_INSERT).enumerate() {
            let first = last + 1 + (n * ROWS_PER_INSERT) as i64;
            let rows = chunk
                .iter()
                .zip(first..)
                .map(|((c, e), seq)| Ok((*c, *e, seq, rows::money(e.amount)?)))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let mut qb = QueryBuilder::<Sqlite>::new(
                "INSERT INTO ledger_entries (company_id, seq, at, scope, wallet, entry, amount, reference, expires_at) ",
            );
            qb.push_values(rows, |mut b, (company, e, seq, amount)| {
                b.push_bind(company.to_string())
                    .push_bind(seq)
                    .push_bind(rows::instant(e.at))
                    .push_bind(e.scope.to_string())
                    .push_bind(e.wallet.to_string())
                    .push_bind(e.kind.as_str())
                    .push_bind(amount)
                    .push_bind(e.reference.clone())
                    .push_bind(e.expires_at.map(rows::instant));
            });
            qb.build().execute(&mut **tx).await?;
        }
        Ok(())
    }

    async fn insert_ratings(
        tx: &mut Transaction<'static, Self>,
        ratings: &[(&CompanyId, &Rating)],
    ) -> anyhow::Result<()> {
        for chunk in ratings.chunks(ROWS_PER_INSERT) {
            let mut qb = QueryBuilder::<Sqlite>::new(
                "INSERT INTO usage_ratings (company_id, id, boundary_index, wallet_sources, late) ",
            );
            qb.push_values(chunk, |mut b, (company, r)| {
                b.push_bind(company.to_string())
                    .push_bind(r.id.clone())
                    .push_bind(i64::from(r.boundary_index))
                    .push_bind(rows::wallets_text(&r.wallet_sources))
                    .push_bind(r.late);
            });
            qb.build().execute(&mut **tx).await?;
        }
        Ok(())
    }
}

/// One multi-row insert of usage rows.
fn usage_insert(chunk: &[rows::UsageValues<'_>]) -> QueryBuilder<Sqlite> {
    let mut qb =
        QueryBuilder::<Sqlite>::new(format!("INSERT INTO usage ({}) ", rows::USAGE_COLUMNS));
    qb.push_values(chunk, |mut b, u| {
        b.push_bind(u.company)
            .push_bind(u.id)
            .push_bind(u.source)
            .push_bind(u.line)
            .push_bind(u.occurred_at)
            .push_bind(u.received_at)
            .push_bind(u.office)
            .push_bind(u.party)
            .push_bind(u.service)
            .push_bind(u.usage_type)
            .push_bind(u.direction)
            .push_bind(u.remote_number)
            .push_bind(u.number_used)
            .push_bind(u.duration_s.as_str())
            .push_bind(u.billable_quantity)
            .push_bind(u.unit)
            .push_bind(u.rate_micros)
            .push_bind(u.rate_scale)
            .push_bind(u.increment.as_str())
            .push_bind(u.cost)
            .push_bind(u.content);
    });
    qb
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The page cache of every connection the pool holds now.
    async fn pooled_cache_sizes(store: &SqliteStore) -> Vec<i64> {
        let mut held = Vec::new();
        for _ in 0..store.pool().size() {
            held.push(store.pool().acquire().await.unwrap());
        }
        let mut sizes = Vec::new();
        for conn in &mut held {
            sizes.push(
                sqlx::query_scalar("PRAGMA cache_size")
                    .fetch_one(&mut **conn)
                    .await
                    .unwrap(),
            );
        }
        sizes
    }

    #[tokio::test]
    async fn a_stream_leaves_the_pool_as_it_found_it_however_it_ends() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let store = SqliteStore::connect(&url).await.unwrap();
        let pool_cache: i64 = PAGE_CACHE.parse().unwrap();
        let read = store
            .streamed(async |conn| {
                let size: i64 = sqlx::query_scalar("PRAGMA cache_size")
                    .fetch_one(conn)
                    .await?;
                Ok(size)
            })
            .await
            .unwrap();
        assert_eq!(
            read,
            STREAM_PAGE_CACHE.parse::<i64>().unwrap(),
            "a stream reads with the small cache"
        );
        assert!(
            pooled_cache_sizes(&store)
                .await
                .iter()
                .all(|s| *s == pool_cache)
        );
        // The pool's size while the stream holds its connection: connections handed back
        // above may still be on their way, and the stream may have opened a new one.
        let mut during = 0;
        let cut_short: anyhow::Result<()> = store
            .streamed(async |_| {
                during = store.pool().size();
                anyhow::bail!("the reader gave up")
            })
            .await;
        assert_eq!(cut_short.unwrap_err().to_string(), "the reader gave up");
        // Its connection was closed, not handed back with the stream's settings.
        assert_eq!(store.pool().size(), during - 1);
        let sizes = pooled_cache_sizes(&store).await;
        assert!(sizes.iter().all(|s| *s == pool_cache), "{sizes:?}");
    }
}
