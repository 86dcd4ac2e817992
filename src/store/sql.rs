//! The [`Store`] over SQL, written once for both databases. Both speak `$n` placeholders,
//! `ON CONFLICT` and `RETURNING`, and billrun stores only integers and text, so one body of
//! SQL serves both; what differs is behind [`Backend`]. Longer statements live in
//! `sql/queries/`.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use futures_util::TryStreamExt;
use sqlx::{ColumnIndex, Decode, Encode, Executor, IntoArguments, Pool, QueryBuilder, Type};

use super::backend::Backend;
use super::rows::{self, *};
use super::{
    CommitOutcome, CompletedStep, EmailOutcome, EventBatch, IntakeJudge, IntakeOutcome,
    IntakeRequest, IntakeSnapshot, JobRun, LeaseRecord, LedgerRow, LoadedFile, QueuedEmail,
    RatedUsage, Rejection, StepFailure, StepRun, Store, UsageBatch,
};
use crate::domain::account::CardCharge;
use crate::domain::close::StepEffects;
use crate::domain::invoice::Document;
use crate::domain::model::{AdminRole, Companies, Company, Event, World};
use crate::domain::usage::{Rating, Unrated};
use crate::domain::wallets::LedgerEntry;
use crate::domain::words::CompanyId;

/// Rows per multi-row statement of the shared SQL: well under SQLite's 32 766 parameters.
const CHUNK: usize = 500;

/// Rows written in bulk (usage, ratings, ledger entries) after which the database's planner
/// statistics are first brought up to date.
const ANALYZE_AFTER: u64 = 100_000;

/// A store over a SQL database.
pub struct SqlStore<DB: Backend> {
    pub(super) pool: Pool<DB>,
    /// Rows written in bulk since the statistics were last brought up to date, and before.
    written: Arc<Mutex<Written>>,
}

/// Rows written in bulk by this process.
#[derive(Default)]
struct Written {
    since_analyze: u64,
    before_analyze: u64,
    /// The tables written since.
    tables: BTreeSet<&'static str>,
}

impl<DB: Backend> Clone for SqlStore<DB> {
    fn clone(&self) -> Self {
        SqlStore {
            pool: self.pool.clone(),
            written: self.written.clone(),
        }
    }
}

impl<DB: Backend> SqlStore<DB> {
    /// A store over an open pool.
    pub(crate) fn new(pool: Pool<DB>) -> Self {
        SqlStore {
            pool,
            written: Arc::default(),
        }
    }

    /// Counts `rows` written in bulk to `tables` and, once enough are, brings the planner's
    /// statistics of the tables written since up to date: the queries after a bulk load or
    /// close would otherwise be planned for the tables as they were before it (or, on a new
    /// database, as empty). After the first time, only once the rows written since have
    /// doubled what was written before, so that a long run analyzes a few times, not once per
    /// commit.
    async fn wrote(&self, rows: usize, tables: &[&'static str]) -> anyhow::Result<()> {
        let due: Option<Vec<&'static str>> = {
            let mut w = self.written.lock().unwrap_or_else(|e| e.into_inner());
            w.since_analyze += rows as u64;
            w.tables.extend(tables);
            (w.since_analyze >= ANALYZE_AFTER.max(w.before_analyze)).then(|| {
                w.before_analyze += w.since_analyze;
                w.since_analyze = 0;
                std::mem::take(&mut w.tables).into_iter().collect()
            })
        };
        if let Some(tables) = due {
            DB::analyze(&self.pool, &tables).await?;
        }
        Ok(())
    }

    /// Closes every connection (SQLite then checkpoints its write-ahead log).
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// The connection pool, for the other SQL modules of the store.
    pub(super) fn pool(&self) -> &Pool<DB> {
        &self.pool
    }

    /// Runs `read` on a connection of its own, readied for a long streamed read
    /// ([`Backend::prepare_stream`]). It goes back to the pool as it was taken
    /// ([`Backend::end_stream`]) or, if the read failed, is closed: a read cut short must not
    /// leave a pooled connection with the settings of a stream.
    pub(super) async fn streamed<T>(
        &self,
        read: impl AsyncFnOnce(&mut DB::Connection) -> anyhow::Result<T>,
    ) -> anyhow::Result<T> {
        let mut conn = self.pool().acquire().await?;
        DB::prepare_stream(&mut conn).await?;
        match read(&mut conn).await {
            Ok(out) => {
                DB::end_stream(conn).await?;
                Ok(out)
            }
            Err(e) => {
                // The read's error is the one to report; closing can only add noise.
                let _ = conn.close().await;
                Err(e)
            }
        }
    }
}

/// Writes ` WHERE company_id IN (…)` (or nothing for every company) into `qb`.
fn push_companies<DB: Backend>(qb: &mut QueryBuilder<DB>, column: &str, companies: &[CompanyId])
where
    for<'q> String: Encode<'q, DB> + Type<DB>,
{
    qb.push(format!(" {column} IN ("));
    let mut sep = qb.separated(", ");
    for c in companies {
        sep.push_bind(c.to_string());
    }
    qb.push(")");
}

/// The companies to read, in chunks a statement can bind: every company is one chunk of none.
fn company_chunks(companies: Option<&[CompanyId]>) -> Vec<Option<&[CompanyId]>> {
    match companies {
        None => vec![None],
        Some(list) => list.chunks(CHUNK).map(Some).collect(),
    }
}

impl<DB> SqlStore<DB>
where
    DB: Backend,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    DB::Arguments: IntoArguments<DB>,
    for<'q> i64: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'q> String: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'q> bool: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB> + ColumnIndex<DB::Row>,
    for<'q> Option<i64>: Encode<'q, DB> + Decode<'q, DB>,
    for<'q> Option<String>: Encode<'q, DB> + Decode<'q, DB>,
    usize: ColumnIndex<DB::Row>,
{
    /// Reads rows of `T` with `sql`, once per chunk of `companies`: `sql` ends where a
    /// `WHERE` clause on `column` would go, and `order` follows it.
    async fn rows_of<T>(
        conn: &mut DB::Connection,
        sql: &str,
        column: &str,
        companies: Option<&[CompanyId]>,
        order: &str,
    ) -> anyhow::Result<Vec<T>>
    where
        T: for<'r> sqlx::FromRow<'r, DB::Row> + Send + Unpin,
    {
        let mut out = Vec::new();
        for chunk in company_chunks(companies) {
            let mut qb = QueryBuilder::<DB>::new(sql);
            if let Some(chunk) = chunk {
                qb.push(if sql.contains(" WHERE ") {
                    " AND"
                } else {
                    " WHERE"
                });
                push_companies(&mut qb, column, chunk);
            }
            qb.push(format!(" {order}"));
            out.extend(qb.build_query_as::<T>().fetch_all(&mut *conn).await?);
        }
        Ok(out)
    }

    /// The companies among `companies` (every one for `None`), by id.
    async fn read_companies(
        conn: &mut DB::Connection,
        companies: Option<&[CompanyId]>,
    ) -> anyhow::Result<Companies> {
        let rows: Vec<CompanyRow> = Self::rows_of(
            conn,
            "SELECT id, name, time_zone, currency, anchor, billing, card_verified, credit_sharing, \
             primary_office, ar_threshold, ar_amount FROM companies",
            "id",
            companies,
            "ORDER BY id",
        )
        .await?;
        rows.into_iter()
            .map(|row| {
                let c = row.into_domain()?;
                Ok((c.id.clone(), c))
            })
            .collect()
    }

    pub(super) async fn insert_card_charges(
        tx: &mut sqlx::Transaction<'static, DB>,
        charges: &[CardCharge],
    ) -> anyhow::Result<()> {
        for chunk in charges.chunks(CHUNK) {
            let values = chunk
                .iter()
                .map(|c| Ok((c, rows::money(c.amount)?)))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let mut qb = QueryBuilder::<DB>::new(
                "INSERT INTO card_charges (company_id, at, kind, amount, currency, reference) ",
            );
            qb.push_values(values, |mut b, (c, amount)| {
                b.push_bind(c.company.to_string())
                    .push_bind(rows::instant(c.at))
                    .push_bind(c.kind.as_str().to_string())
                    .push_bind(amount)
                    .push_bind(c.currency.code().to_string())
                    .push_bind(c.reference.clone());
            });
            qb.build().execute(&mut **tx).await?;
        }
        Ok(())
    }

    async fn insert_rejections(
        tx: &mut sqlx::Transaction<'static, DB>,
        rejections: &[Rejection],
    ) -> anyhow::Result<()> {
        for chunk in rejections.chunks(CHUNK) {
            let mut qb = QueryBuilder::<DB>::new(
                "INSERT INTO rejections (company_id, source, line, item_id, reason) ",
            );
            qb.push_values(chunk, |mut b, r| {
                b.push_bind(r.company.as_ref().map(|c| c.to_string()))
                    .push_bind(r.source.clone())
                    .push_bind(r.line)
                    .push_bind(r.id.clone())
                    .push_bind(r.reason.clone());
            });
            qb.build().execute(&mut **tx).await?;
        }
        Ok(())
    }

    pub(super) async fn insert_document(
        tx: &mut sqlx::Transaction<'static, DB>,
        d: &Document,
    ) -> anyhow::Result<()> {
        Self::insert_documents(tx, &[d]).await
    }

    /// Records documents and their lines, in as few statements as their number allows.
    pub(super) async fn insert_documents(
        tx: &mut sqlx::Transaction<'static, DB>,
        docs: &[&Document],
    ) -> anyhow::Result<()> {
        for chunk in docs.chunks(CHUNK) {
            let values = chunk
                .iter()
                .map(|d| Ok((*d, rows::money(d.total())?)))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let mut qb = QueryBuilder::<DB>::new(
                "INSERT INTO invoices (company_id, number, kind, boundary_index, boundary, \
                 period_start, period_end, currency, total) ",
            );
            qb.push_values(values, |mut b, (d, total)| {
                b.push_bind(d.company.to_string())
                    .push_bind(d.number.clone())
                    .push_bind(d.kind.as_str().to_string())
                    .push_bind(i64::from(d.boundary_index))
                    .push_bind(rows::date(d.boundary))
                    .push_bind(rows::date(d.period_start))
                    .push_bind(rows::date(d.period_end))
                    .push_bind(d.currency.code().to_string())
                    .push_bind(total);
            });
            qb.build().execute(&mut **tx).await?;
        }
        let mut lines = Vec::new();
        for d in docs {
            for (i, l) in d.lines.iter().enumerate() {
                lines.push((
                    *d,
                    i as i64 + 1,
                    l,
                    l.unit_price.map(rows::money).transpose()?,
                    rows::money(l.amount)?,
                ));
            }
        }
        for chunk in lines.chunks(CHUNK / 2) {
            let mut qb = QueryBuilder::<DB>::new(
                "INSERT INTO invoice_lines (company_id, number, line_no, kind, office, product, \
                 description, quantity, unit_price, amount, source, corrects) ",
            );
            qb.push_values(chunk, |mut b, (d, no, l, price, amount)| {
                b.push_bind(d.company.to_string())
                    .push_bind(d.number.clone())
                    .push_bind(*no)
                    .push_bind(l.kind.as_str().to_string())
                    .push_bind(rows::office_text(l.office.as_ref()))
                    .push_bind(l.product.clone())
                    .push_bind(l.description.clone())
                    .push_bind(l.quantity)
                    .push_bind(*price)
                    .push_bind(*amount)
                    .push_bind(l.source.clone())
                    .push_bind(l.corrects.map(|k| k.as_str().to_string()));
            });
            qb.build().execute(&mut **tx).await?;
        }
        Ok(())
    }

    /// Records the license removals the steps applied.
    async fn insert_removals(
        tx: &mut sqlx::Transaction<'static, DB>,
        steps: &[(StepRun, StepEffects)],
    ) -> anyhow::Result<()> {
        let removals: Vec<_> = steps
            .iter()
            .flat_map(|(run, e)| e.removals.iter().map(move |r| (&run.company, r)))
            .collect();
        for chunk in removals.chunks(CHUNK) {
            let mut qb = QueryBuilder::<DB>::new(
                "INSERT INTO license_removals (company_id, boundary_index, office_id, product, \
                 quantity) ",
            );
            qb.push_values(chunk, |mut b, (company, r)| {
                b.push_bind(company.to_string())
                    .push_bind(i64::from(r.boundary))
                    .push_bind(r.pool.office.to_string())
                    .push_bind(r.pool.product.clone())
                    .push_bind(r.removed);
            });
            qb.build().execute(&mut **tx).await?;
        }
        Ok(())
    }

    async fn write_world(
        tx: &mut sqlx::Transaction<'static, DB>,
        world: &World,
    ) -> anyhow::Result<()> {
        Self::write_companies(tx, world).await?;
        Self::write_people(tx, world).await?;
        Self::write_holdings(tx, world).await?;
        Self::write_rates(tx, world).await
    }

    /// The companies of `world`, replacing what was recorded under their ids (their offices,
    /// people, pools, bundles and allowances are written anew).
    async fn write_companies(
        tx: &mut sqlx::Transaction<'static, DB>,
        world: &World,
    ) -> anyhow::Result<()> {
        let companies: Vec<&Company> = world.companies.values().collect();
        for chunk in companies.chunks(CHUNK) {
            let ids: Vec<CompanyId> = chunk.iter().map(|c| c.id.clone()).collect();
            for table in [
                "offices",
                "parties",
                "admins",
                "initial_pools",
                "bundles",
                "allowances",
            ] {
                let mut qb = QueryBuilder::<DB>::new(format!("DELETE FROM {table} WHERE"));
                push_companies(&mut qb, "company_id", &ids);
                qb.build().execute(&mut **tx).await?;
            }
            let values = chunk
                .iter()
                .map(|c| {
                    Ok(match &c.auto_recharge {
                        Some(a) => (
                            c,
                            Some(rows::money(a.threshold)?),
                            Some(rows::money(a.amount)?),
                        ),
                        None => (c, None, None),
                    })
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            let mut qb = QueryBuilder::<DB>::new(
                "INSERT INTO companies (id, name, time_zone, currency, anchor, billing, \
                 card_verified, credit_sharing, primary_office, ar_threshold, ar_amount) ",
            );
            qb.push_values(values, |mut b, (c, threshold, amount)| {
                b.push_bind(c.id.to_string())
                    .push_bind(c.name.clone())
                    .push_bind(c.time_zone.name().to_string())
                    .push_bind(c.currency.code().to_string())
                    .push_bind(rows::date(c.anchor))
                    .push_bind(c.billing.as_str().to_string())
                    .push_bind(c.card_verified)
                    .push_bind(rows::credit_sharing(c.credit_sharing).to_string())
                    .push_bind(c.primary_office.to_string())
                    .push_bind(threshold)
                    .push_bind(amount);
            });
            qb.push("\n");
            qb.push(include_str!("../../sql/queries/upsert_company.sql"));
            qb.build().execute(&mut **tx).await?;
            // Every company has an intake row, so that closes and intakes always lock one.
            let mut qb =
                QueryBuilder::<DB>::new("INSERT INTO company_intake (company_id, version) ");
            qb.push_values(&ids, |mut b, id| {
                b.push_bind(id.to_string()).push_bind(0i64);
            });
            qb.push(" ON CONFLICT (company_id) DO NOTHING");
            qb.build().execute(&mut **tx).await?;
        }
        Ok(())
    }

    /// Offices, users and groups, admins.
    async fn write_people(
        tx: &mut sqlx::Transaction<'static, DB>,
        world: &World,
    ) -> anyhow::Result<()> {
        let offices: Vec<_> = world.offices.iter().enumerate().collect();
        for chunk in offices.chunks(CHUNK) {
            let mut qb =
                QueryBuilder::<DB>::new("INSERT INTO offices (company_id, id, name, ord) ");
            qb.push_values(chunk, |mut b, (ord, o)| {
                b.push_bind(o.company.to_string())
                    .push_bind(o.id.to_string())
                    .push_bind(o.name.clone())
                    .push_bind(*ord as i64);
            });
            qb.build().execute(&mut **tx).await?;
        }
        let parties: Vec<_> = world.parties.iter().enumerate().collect();
        for chunk in parties.chunks(CHUNK) {
            let mut qb = QueryBuilder::<DB>::new(
                "INSERT INTO parties (company_id, id, kind, office_id, name, phone, product, ord) ",
            );
            qb.push_values(chunk, |mut b, (ord, p)| {
                b.push_bind(p.company.to_string())
                    .push_bind(p.id.clone())
                    .push_bind(rows::party_kind(p.kind))
                    .push_bind(p.office.to_string())
                    .push_bind(p.name.clone())
                    .push_bind(p.phone.clone())
                    .push_bind(p.product.as_deref().map(str::to_string))
                    .push_bind(*ord as i64);
            });
            qb.build().execute(&mut **tx).await?;
        }
        let admins: Vec<_> = world.admins.iter().enumerate().collect();
        for chunk in admins.chunks(CHUNK) {
            let mut qb =
                QueryBuilder::<DB>::new("INSERT INTO admins (company_id, email, office_id, ord) ");
            qb.push_values(chunk, |mut b, (ord, a)| {
                let office = match &a.role {
                    AdminRole::Company => None,
                    AdminRole::Office(o) => Some(o.to_string()),
                };
                b.push_bind(a.company.to_string())
                    .push_bind(a.email.clone())
                    .push_bind(office)
                    .push_bind(*ord as i64);
            });
            qb.build().execute(&mut **tx).await?;
        }
        Ok(())
    }

    /// Products, pools at load, bundles and allowances.
    async fn write_holdings(
        tx: &mut sqlx::Transaction<'static, DB>,
        world: &World,
    ) -> anyhow::Result<()> {
        for p in world.products.values() {
            sqlx::query(
                "INSERT INTO products (code, name, term, unit_price) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (code) DO UPDATE SET name = excluded.name, term = excluded.term, \
                 unit_price = excluded.unit_price",
            )
            .bind(p.code.clone())
            .bind(p.name.clone())
            .bind(p.term.as_str())
            .bind(rows::money(p.unit_price)?)
            .execute(&mut **tx)
            .await?;
        }
        let pools: Vec<_> = world.pools.iter().enumerate().collect();
        for chunk in pools.chunks(CHUNK) {
            let mut qb = QueryBuilder::<DB>::new(
                "INSERT INTO initial_pools (company_id, office_id, product, quantity, ord) ",
            );
            qb.push_values(chunk, |mut b, (ord, p)| {
                b.push_bind(p.company.to_string())
                    .push_bind(p.office.to_string())
                    .push_bind(p.product.clone())
                    .push_bind(p.quantity)
                    .push_bind(*ord as i64);
            });
            qb.build().execute(&mut **tx).await?;
        }
        let bundles = world
            .bundles
            .iter()
            .enumerate()
            .map(|(ord, b)| Ok((ord, b, rows::money(b.credits)?, rows::money(b.fee)?)))
            .collect::<anyhow::Result<Vec<_>>>()?;
        for chunk in bundles.chunks(CHUNK) {
            let mut qb = QueryBuilder::<DB>::new(
                "INSERT INTO bundles (company_id, id, scope, kind, credits, fee, cadence, start, ord) ",
            );
            qb.push_values(chunk, |mut b, (ord, bundle, credits, fee)| {
                b.push_bind(bundle.company.to_string())
                    .push_bind(bundle.id.clone())
                    .push_bind(bundle.scope.to_string())
                    .push_bind(rows::bundle_kind(bundle.kind))
                    .push_bind(*credits)
                    .push_bind(*fee)
                    .push_bind(bundle.cadence.as_str())
                    .push_bind(rows::date(bundle.start))
                    .push_bind(*ord as i64);
            });
            qb.build().execute(&mut **tx).await?;
        }
        let allowances = world
            .allowances
            .iter()
            .enumerate()
            .map(|(ord, a)| Ok((ord, a, rows::money(a.amount)?)))
            .collect::<anyhow::Result<Vec<_>>>()?;
        for chunk in allowances.chunks(CHUNK) {
            let mut qb = QueryBuilder::<DB>::new(
                "INSERT INTO allowances (company_id, ord, service, amount) ",
            );
            qb.push_values(chunk, |mut b, (ord, a, amount)| {
                b.push_bind(a.company.to_string())
                    .push_bind(*ord as i64)
                    .push_bind(a.service.as_str())
                    .push_bind(*amount);
            });
            qb.build().execute(&mut **tx).await?;
        }
        Ok(())
    }

    /// The rate card, replaced whole when `world` has one.
    async fn write_rates(
        tx: &mut sqlx::Transaction<'static, DB>,
        world: &World,
    ) -> anyhow::Result<()> {
        if !world.rates.is_empty() {
            sqlx::query("DELETE FROM rates").execute(&mut **tx).await?;
            let rates = world
                .rates
                .iter()
                .enumerate()
                .map(|(ord, r)| Ok((ord, r, rows::price(r.price)?)))
                .collect::<anyhow::Result<Vec<_>>>()?;
            for chunk in rates.chunks(CHUNK) {
                let mut qb = QueryBuilder::<DB>::new(
                    "INSERT INTO rates (ord, service, usage_type, direction, prefix, product, \
                     price_micros, price_scale, increment_first, increment_next) ",
                );
                qb.push_values(chunk, |mut b, (ord, r, (micros, scale))| {
                    b.push_bind(*ord as i64)
                        .push_bind(r.service.as_str())
                        .push_bind(r.usage_type.map(|t| t.as_str().to_string()))
                        .push_bind(r.direction.map(|d| d.as_str().to_string()))
                        .push_bind(r.prefix.clone())
                        .push_bind(r.product.clone())
                        .push_bind(*micros)
                        .push_bind(*scale)
                        .push_bind(r.increment.map(|(f, _)| i64::from(f)))
                        .push_bind(r.increment.map(|(_, n)| i64::from(n)));
                });
                qb.build().execute(&mut **tx).await?;
            }
        }
        Ok(())
    }

    /// Records events with their verdicts, a rejection for each refused one, and what the
    /// accepted ones wrote.
    async fn write_events(
        tx: &mut sqlx::Transaction<'static, DB>,
        batch: &EventBatch,
    ) -> anyhow::Result<()> {
        if batch.events.is_empty() {
            return Ok(());
        }
        let (next,): (i64,) = sqlx::query_as("SELECT COALESCE(MAX(seq), 0) + 1 FROM events")
            .fetch_one(&mut **tx)
            .await?;
        let events = batch
            .events
            .iter()
            .enumerate()
            .map(|(i, r)| Ok((next + i as i64, r, serde_json::to_string(&r.event.kind)?)))
            .collect::<anyhow::Result<Vec<_>>>()?;
        for chunk in events.chunks(CHUNK) {
            let mut qb = QueryBuilder::<DB>::new(
                "INSERT INTO events (company_id, seq, at, source, line, event_id, kind, payload, accepted) ",
            );
            qb.push_values(chunk, |mut b, (seq, r, payload)| {
                let e = &r.event;
                b.push_bind(e.company.to_string())
                    .push_bind(*seq)
                    .push_bind(rows::instant(e.at))
                    .push_bind(e.source.clone())
                    .push_bind(e.line)
                    .push_bind(e.id.clone())
                    .push_bind(e.kind.type_name())
                    .push_bind(payload.clone())
                    .push_bind(r.rejection.is_none());
            });
            qb.build().execute(&mut **tx).await?;
        }
        let rejections: Vec<Rejection> = batch
            .events
            .iter()
            .filter_map(|r| {
                r.rejection.as_ref().map(|reason| Rejection {
                    company: Some(r.event.company.clone()),
                    source: r.event.source.clone(),
                    line: r.event.line,
                    id: String::new(),
                    reason: reason.clone(),
                })
            })
            .collect();
        Self::insert_rejections(tx, &rejections).await?;
        let entries: Vec<(&CompanyId, &LedgerEntry)> =
            batch.ledger.iter().map(|(c, e)| (c, e)).collect();
        DB::insert_ledger(tx, &entries).await?;
        Self::insert_card_charges(tx, &batch.card_charges).await?;
        Ok(())
    }

    /// Renews the lease of every company whose steps run under one; `false` (and nothing is
    /// changed) when one of them is no longer held by the same owner and fence.
    async fn check_leases(
        tx: &mut sqlx::Transaction<'static, DB>,
        steps: &[(StepRun, StepEffects)],
    ) -> anyhow::Result<Vec<CompanyId>> {
        let mut held: BTreeMap<&CompanyId, (&super::Lease, i64)> = BTreeMap::new();
        for (run, _) in steps {
            if let Some(lease) = &run.lease {
                let until = rows::instant(run.finished_at).saturating_add(lease.ttl_micros);
                let e = held.entry(&run.company).or_insert((lease, until));
                e.1 = e.1.max(until);
            }
        }
        let leases: Vec<(&CompanyId, &super::Lease, i64)> =
            held.into_iter().map(|(c, (l, u))| (c, l, u)).collect();
        let mut lost = Vec::new();
        for chunk in leases.chunks(CHUNK / 4) {
            let mut qb =
                QueryBuilder::<DB>::new("UPDATE company_leases SET lease_until = CASE company_id");
            for (company, _, until) in chunk {
                qb.push(" WHEN ")
                    .push_bind(company.to_string())
                    .push(" THEN ")
                    .push_bind(*until);
            }
            qb.push(" END WHERE ");
            let mut sep = qb.separated(" OR ");
            for (company, lease, _) in chunk {
                sep.push("(company_id = ")
                    .push_bind_unseparated(company.to_string())
                    .push_unseparated(" AND owner = ")
                    .push_bind_unseparated(lease.owner.clone())
                    .push_unseparated(" AND fence = ")
                    .push_bind_unseparated(lease.fence)
                    .push_unseparated(")");
            }
            qb.push(" RETURNING company_id");
            let renewed: Vec<(String,)> = qb.build_query_as().fetch_all(&mut **tx).await?;
            lost.extend(
                chunk
                    .iter()
                    .filter(|(c, _, _)| !renewed.iter().any(|(r,)| r == c.as_str()))
                    .map(|(c, _, _)| (*c).clone()),
            );
        }
        Ok(lost)
    }

    /// Locks the intake row of every company of `steps` and names those whose version moved
    /// since their history was read.
    async fn check_intake(
        tx: &mut sqlx::Transaction<'static, DB>,
        steps: &[(StepRun, StepEffects)],
    ) -> anyhow::Result<Vec<CompanyId>> {
        let seen: BTreeMap<&CompanyId, i64> = steps
            .iter()
            .map(|(run, _)| (&run.company, run.intake_version))
            .collect();
        let companies: Vec<CompanyId> = seen.keys().map(|c| (*c).clone()).collect();
        let mut changed = Vec::new();
        for chunk in companies.chunks(CHUNK) {
            let mut qb =
                QueryBuilder::<DB>::new("UPDATE company_intake SET version = version WHERE");
            push_companies(&mut qb, "company_id", chunk);
            qb.push(" RETURNING company_id, version");
            let rows: Vec<(String, i64)> = qb.build_query_as().fetch_all(&mut **tx).await?;
            let now: BTreeMap<String, i64> = rows.into_iter().collect();
            changed.extend(
                chunk
                    .iter()
                    .filter(|c| now.get(c.as_str()).copied().unwrap_or(0) != seen[*c])
                    .cloned(),
            );
        }
        Ok(changed)
    }

    /// Records `files` as loaded; `false` (and nothing recorded) when one was recorded before.
    async fn claim_files(
        tx: &mut sqlx::Transaction<'static, DB>,
        files: &[LoadedFile],
    ) -> anyhow::Result<bool> {
        if files.is_empty() {
            return Ok(true);
        }
        let mut qb = QueryBuilder::<DB>::new("INSERT INTO loaded_files (sha256, name, loaded_at) ");
        qb.push_values(files, |mut b, f| {
            b.push_bind(f.sha256.clone())
                .push_bind(f.name.clone())
                .push_bind(rows::instant(f.loaded_at));
        });
        qb.push(" ON CONFLICT (sha256) DO NOTHING RETURNING sha256");
        let claimed: Vec<(String,)> = qb.build_query_as().fetch_all(&mut **tx).await?;
        Ok(claimed.len() == files.len())
    }

    /// Raises the intake version of `companies`, in id order so that intakes never deadlock.
    async fn bump_intake(
        tx: &mut sqlx::Transaction<'static, DB>,
        companies: &[CompanyId],
    ) -> anyhow::Result<()> {
        let mut sorted = companies.to_vec();
        sorted.sort();
        sorted.dedup();
        for chunk in sorted.chunks(CHUNK) {
            let mut qb =
                QueryBuilder::<DB>::new("INSERT INTO company_intake (company_id, version) ");
            qb.push_values(chunk, |mut b, c| {
                b.push_bind(c.to_string()).push_bind(1_i64);
            });
            qb.push(" ");
            qb.push(include_str!("../../sql/queries/bump_intake.sql"));
            qb.build().execute(&mut **tx).await?;
        }
        Ok(())
    }

    /// What an intake of `companies` needs to know, read inside its transaction.
    async fn snapshot(
        conn: &mut DB::Connection,
        companies: &[CompanyId],
    ) -> anyhow::Result<IntakeSnapshot> {
        if companies.is_empty() {
            return Ok(IntakeSnapshot::default());
        }
        let events: Vec<EventRow> = Self::rows_of(
            &mut *conn,
            "SELECT company_id, at, source, line, event_id, payload FROM events WHERE accepted",
            "company_id",
            Some(companies),
            "ORDER BY seq",
        )
        .await?;
        let progress: Vec<CompletedRow> = Self::rows_of(
            &mut *conn,
            include_str!("../../sql/queries/progress.sql"),
            "j.company_id",
            Some(companies),
            "",
        )
        .await?;
        let progress = progress
            .into_iter()
            .map(CompletedRow::into_domain)
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(IntakeSnapshot {
            events: events
                .into_iter()
                .map(EventRow::into_domain)
                .collect::<anyhow::Result<_>>()?,
            closed: super::latest_closes(&progress),
        })
    }

    /// Claims one `job_runs` row per step; `false` when one was already claimed.
    async fn claim_steps(
        tx: &mut sqlx::Transaction<'static, DB>,
        steps: &[(StepRun, StepEffects)],
    ) -> anyhow::Result<bool> {
        let mut claimed = 0;
        for chunk in steps.chunks(CHUNK / 4) {
            let mut qb = QueryBuilder::<DB>::new(
                "INSERT INTO job_runs (company_id, boundary_index, boundary_at, boundary_date, job, \
                 status, items, started_at, finished_at) ",
            );
            qb.push_values(chunk, |mut b, (run, effects)| {
                b.push_bind(run.company.to_string())
                    .push_bind(i64::from(run.boundary_index))
                    .push_bind(rows::instant(run.boundary_at))
                    .push_bind(rows::date(run.boundary))
                    .push_bind(run.step.as_str())
                    .push_bind("ok")
                    .push_bind(effects.items)
                    .push_bind(rows::instant(run.started_at))
                    .push_bind(rows::instant(run.finished_at));
            });
            // Re-runs have rows of their own, any number per boundary, outside the claim.
            qb.push(
                " ON CONFLICT (company_id, boundary_index, job) WHERE job <> 'rerun' \
                 DO NOTHING RETURNING seq",
            );
            let rows: Vec<(i64,)> = qb.build_query_as().fetch_all(&mut **tx).await?;
            claimed += rows.len();
        }
        Ok(claimed == steps.len())
    }
}

impl<DB> Store for SqlStore<DB>
where
    DB: Backend,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    DB::Arguments: IntoArguments<DB>,
    for<'q> i64: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'q> String: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'q> bool: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB> + ColumnIndex<DB::Row>,
    for<'q> Option<i64>: Encode<'q, DB> + Decode<'q, DB>,
    for<'q> Option<String>: Encode<'q, DB> + Decode<'q, DB>,
    usize: ColumnIndex<DB::Row>,
{
    async fn migrate(&self) -> anyhow::Result<()> {
        DB::migrate(&self.pool).await
    }

    async fn schema(&self) -> anyhow::Result<super::Schema> {
        DB::schema(&self.pool).await
    }

    async fn save_world(&self, world: &World) -> anyhow::Result<()> {
        let mut tx = DB::begin_write(&self.pool).await?;
        Self::write_world(&mut tx, world).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn companies(&self) -> anyhow::Result<Companies> {
        let mut conn = self.pool.acquire().await?;
        Self::read_companies(&mut conn, None).await
    }

    async fn world_of(&self, companies: Option<&[CompanyId]>) -> anyhow::Result<World> {
        let mut conn = self.pool.acquire().await?;
        let conn = &mut *conn;
        let mut world = World::default();
        world.companies = Self::read_companies(conn, companies).await?;
        // Each list in scenario order, company by company.
        const ORDER: &str = "ORDER BY ord, company_id";
        let offices: Vec<OfficeRow> = Self::rows_of(
            conn,
            "SELECT company_id, id, name FROM offices",
            "company_id",
            companies,
            ORDER,
        )
        .await?;
        world.offices = offices.into_iter().map(OfficeRow::into_domain).collect();
        let parties: Vec<PartyRow> = Self::rows_of(
            conn,
            "SELECT company_id, id, kind, office_id, name, phone, product FROM parties",
            "company_id",
            companies,
            ORDER,
        )
        .await?;
        world.parties = parties
            .into_iter()
            .map(PartyRow::into_domain)
            .collect::<anyhow::Result<_>>()?;
        let admins: Vec<AdminRow> = Self::rows_of(
            conn,
            "SELECT company_id, email, office_id FROM admins",
            "company_id",
            companies,
            ORDER,
        )
        .await?;
        world.admins = admins.into_iter().map(AdminRow::into_domain).collect();
        let products: Vec<ProductRow> =
            sqlx::query_as("SELECT code, name, term, unit_price FROM products ORDER BY code")
                .fetch_all(&mut *conn)
                .await?;
        for row in products {
            let p = row.into_domain()?;
            world.products.insert(p.code.clone(), p);
        }
        let pools: Vec<PoolRow> = Self::rows_of(
            conn,
            "SELECT company_id, office_id, product, quantity FROM initial_pools",
            "company_id",
            companies,
            ORDER,
        )
        .await?;
        world.pools = pools.into_iter().map(PoolRow::into_domain).collect();
        let bundles: Vec<BundleRow> = Self::rows_of(
            conn,
            "SELECT company_id, id, scope, kind, credits, fee, cadence, start FROM bundles",
            "company_id",
            companies,
            ORDER,
        )
        .await?;
        world.bundles = bundles
            .into_iter()
            .map(BundleRow::into_domain)
            .collect::<anyhow::Result<_>>()?;
        let allowances: Vec<AllowanceRow> = Self::rows_of(
            conn,
            "SELECT company_id, service, amount FROM allowances",
            "company_id",
            companies,
            ORDER,
        )
        .await?;
        world.allowances = allowances
            .into_iter()
            .map(AllowanceRow::into_domain)
            .collect::<anyhow::Result<_>>()?;
        let rates: Vec<RateRow> = sqlx::query_as(
            "SELECT service, usage_type, direction, prefix, product, price_micros, price_scale, \
             increment_first, increment_next FROM rates ORDER BY ord",
        )
        .fetch_all(&mut *conn)
        .await?;
        world.rates = rates
            .into_iter()
            .map(RateRow::into_domain)
            .collect::<anyhow::Result<_>>()?;
        Ok(world.indexed())
    }

    async fn loaded_files(&self, sha256s: &[String]) -> anyhow::Result<Vec<LoadedFile>> {
        let mut out = Vec::new();
        for chunk in sha256s.chunks(CHUNK) {
            let mut qb = QueryBuilder::<DB>::new(
                "SELECT sha256, name, loaded_at FROM loaded_files WHERE sha256 IN (",
            );
            let mut sep = qb.separated(", ");
            for h in chunk {
                sep.push_bind(h.clone());
            }
            qb.push(") ORDER BY loaded_at, sha256");
            let rows: Vec<(String, String, i64)> =
                qb.build_query_as().fetch_all(&self.pool).await?;
            for (sha256, name, at) in rows {
                out.push(LoadedFile {
                    sha256,
                    name,
                    loaded_at: rows::at(at)?,
                });
            }
        }
        Ok(out)
    }

    async fn take_in<J: IntakeJudge>(
        &self,
        request: IntakeRequest<'_>,
        judge: &mut J,
    ) -> anyhow::Result<IntakeOutcome> {
        let mut tx = DB::begin_write(&self.pool).await?;
        let mut rows = 0;
        if !Self::claim_files(&mut tx, request.files).await? {
            tx.rollback().await?;
            return Ok(IntakeOutcome::FilesTaken(
                request.files.iter().map(|f| f.name.clone()).collect(),
            ));
        }
        // New master data changes what a close of its companies computes, as their events
        // and usage do: a close that read the old refuses to commit and is done again.
        let mut bumped = request.companies.to_vec();
        if let Some(world) = request.world {
            Self::write_world(&mut tx, world).await?;
            bumped.extend(world.companies.keys().cloned());
        }
        Self::bump_intake(&mut tx, &bumped).await?;
        let snapshot = Self::snapshot(&mut tx, request.companies).await?;
        let events = judge.events(&snapshot)?;
        Self::write_events(&mut tx, &events).await?;
        // The chunks are pipelined: while one chunk's rows are written (by a task of their
        // own, on another thread), the next is judged and the one after it read. A chunk's
        // duplicate check runs before the write of the chunk before it begins, so the rows
        // being written are looked up in memory.
        let mut ids = judge.next_usage()?;
        let mut judged: Option<UsageBatch> = None;
        loop {
            let mut accepted = match &ids {
                Some(ids) => DB::usage_contents(&mut tx, ids).await?,
                None => BTreeMap::new(),
            };
            let Some(batch) = judged.take() else {
                if ids.is_none() {
                    break;
                }
                judged = Some(judge_chunk(judge, &accepted)?);
                ids = judge.next_usage()?;
                continue;
            };
            Self::insert_rejections(&mut tx, &batch.rejections).await?;
            rows += batch.accepted.len();
            let Some(next_ids) = ids else {
                DB::insert_usage(&mut tx, &batch.accepted).await?;
                break;
            };
            let wanted: HashSet<&str> = next_ids.iter().map(String::as_str).collect();
            for u in &batch.accepted {
                if wanted.contains(u.id.as_str()) {
                    accepted.insert(u.id.clone(), u.content.clone());
                }
            }
            let mut writing = tx;
            let write = tokio::spawn(async move {
                let written = DB::insert_usage(&mut writing, &batch.accepted).await;
                (writing, written)
            });
            let next = judge_chunk(judge, &accepted);
            let upcoming = if next.is_ok() {
                judge.next_usage()
            } else {
                Ok(None)
            };
            let (back, written) = write.await?;
            tx = back;
            written?;
            judged = Some(next?);
            ids = upcoming?;
        }
        crate::failpoint::hit("commit:load");
        tx.commit().await?;
        self.wrote(rows, &["usage"]).await?;
        Ok(IntakeOutcome::Recorded)
    }

    async fn intake_versions(
        &self,
        companies: &[CompanyId],
    ) -> anyhow::Result<BTreeMap<CompanyId, i64>> {
        let mut out = BTreeMap::new();
        for chunk in companies.chunks(CHUNK) {
            let mut qb =
                QueryBuilder::<DB>::new("SELECT company_id, version FROM company_intake WHERE");
            push_companies(&mut qb, "company_id", chunk);
            let rows: Vec<(String, i64)> = qb.build_query_as().fetch_all(&self.pool).await?;
            out.extend(rows.into_iter().map(|(c, v)| (CompanyId::from(c), v)));
        }
        Ok(out)
    }

    async fn unrated_usage(
        &self,
        bounds: &[(CompanyId, DateTime<Utc>)],
    ) -> anyhow::Result<Vec<Unrated>> {
        let mut out = Vec::new();
        for chunk in bounds.chunks(CHUNK) {
            let mut qb = QueryBuilder::<DB>::new("WITH bounds (company_id, until) AS (");
            qb.push_values(chunk, |mut b, (company, until)| {
                b.push_bind(company.to_string())
                    .push_bind(rows::instant(*until));
            });
            qb.push(") ");
            qb.push(include_str!("../../sql/queries/unrated_usage.sql"));
            let rows: Vec<UnratedRow> = qb.build_query_as().fetch_all(&self.pool).await?;
            for r in rows {
                out.push(r.into_domain()?);
            }
        }
        Ok(out)
    }

    async fn accepted_events(&self, companies: Option<&[CompanyId]>) -> anyhow::Result<Vec<Event>> {
        let mut conn = self.pool.acquire().await?;
        let rows: Vec<EventRow> = Self::rows_of(
            &mut conn,
            "SELECT company_id, at, source, line, event_id, payload FROM events WHERE accepted",
            "company_id",
            companies,
            "ORDER BY seq",
        )
        .await?;
        rows.into_iter().map(EventRow::into_domain).collect()
    }

    async fn ledger(&self, companies: Option<&[CompanyId]>) -> anyhow::Result<Vec<LedgerRow>> {
        let mut conn = self.pool.acquire().await?;
        let rows: Vec<LedgerDbRow> = Self::rows_of(
            &mut conn,
            "SELECT seq, company_id, at, scope, wallet, entry, amount, reference, expires_at \
                 FROM ledger_entries",
            "company_id",
            companies,
            "ORDER BY seq",
        )
        .await?;
        rows.into_iter().map(LedgerDbRow::into_domain).collect()
    }

    async fn usage_records(&self, company: Option<&CompanyId>) -> anyhow::Result<Vec<RatedUsage>> {
        let companies = company.map(std::slice::from_ref);
        let mut conn = self.pool.acquire().await?;
        let rows: Vec<RatedUsageRow> = Self::rows_of(
            &mut conn,
            include_str!("../../sql/queries/rated_usage.sql"),
            "u.company_id",
            companies,
            "ORDER BY u.occurred_at, u.id",
        )
        .await?;
        rows.into_iter().map(RatedUsageRow::into_domain).collect()
    }

    async fn each_ledger_row(
        &self,
        sink: &mut (dyn FnMut(LedgerRow) -> anyhow::Result<()> + Send),
    ) -> anyhow::Result<()> {
        self.streamed(async |conn| {
            let mut rows = sqlx::query_as::<_, LedgerDbRow>(
                "SELECT seq, company_id, at, scope, wallet, entry, amount, reference, expires_at \
                 FROM ledger_entries ORDER BY seq",
            )
            .fetch(conn);
            while let Some(row) = rows.try_next().await? {
                sink(row.into_domain()?)?;
            }
            Ok(())
        })
        .await
    }

    async fn each_usage_record(
        &self,
        company: Option<&CompanyId>,
        sink: &mut (dyn FnMut(RatedUsage) -> anyhow::Result<()> + Send),
    ) -> anyhow::Result<()> {
        self.streamed(async |conn| {
            let mut qb = QueryBuilder::<DB>::new(include_str!("../../sql/queries/rated_usage.sql"));
            if let Some(company) = company {
                qb.push(" WHERE u.company_id = ")
                    .push_bind(company.to_string());
            }
            qb.push(" ORDER BY u.occurred_at, u.id");
            let mut rows = qb.build_query_as::<RatedUsageRow>().fetch(conn);
            while let Some(row) = rows.try_next().await? {
                sink(row.into_domain()?)?;
            }
            Ok(())
        })
        .await
    }

    async fn progress(
        &self,
        companies: Option<&[CompanyId]>,
    ) -> anyhow::Result<Vec<CompletedStep>> {
        let mut conn = self.pool.acquire().await?;
        let rows: Vec<CompletedRow> = Self::rows_of(
            &mut conn,
            include_str!("../../sql/queries/progress.sql"),
            "j.company_id",
            companies,
            "",
        )
        .await?;
        rows.into_iter().map(CompletedRow::into_domain).collect()
    }

    async fn commit_steps(
        &self,
        steps: &[(StepRun, StepEffects)],
    ) -> anyhow::Result<CommitOutcome> {
        if steps.is_empty() {
            return Ok(CommitOutcome::Committed);
        }
        let mut tx = DB::begin_write(&self.pool).await?;
        let lost = Self::check_leases(&mut tx, steps).await?;
        if !lost.is_empty() {
            tx.rollback().await?;
            return Ok(CommitOutcome::Fenced { companies: lost });
        }
        let changed = Self::check_intake(&mut tx, steps).await?;
        if !changed.is_empty() {
            tx.rollback().await?;
            return Ok(CommitOutcome::Changed { companies: changed });
        }
        // A step someone else completed claims no row, and then nothing is written.
        if !Self::claim_steps(&mut tx, steps).await? {
            tx.rollback().await?;
            return Ok(CommitOutcome::AlreadyDone);
        }
        for (run, _) in steps {
            crate::failpoint::hit(&format!("commit:{}", run.step));
        }
        // What the steps write, each kind in one multi-row statement per chunk of rows.
        Self::insert_removals(&mut tx, steps).await?;
        let documents: Vec<&Document> = steps
            .iter()
            .filter_map(|(_, e)| e.document.as_ref())
            .collect();
        Self::insert_documents(&mut tx, &documents).await?;
        let charges: Vec<CardCharge> = steps
            .iter()
            .flat_map(|(_, e)| e.card_charges.iter().cloned())
            .collect();
        Self::insert_card_charges(&mut tx, &charges).await?;
        let spends: Vec<(&StepRun, &crate::domain::usage_email::Spend)> =
            steps.iter().map(|(run, e)| (run, &e.spend)).collect();
        Self::insert_spend(&mut tx, &spends).await?;
        let emails: Vec<(&StepRun, &crate::domain::usage_email::EmailDraft)> = steps
            .iter()
            .flat_map(|(run, e)| e.emails.iter().map(move |m| (run, m)))
            .collect();
        Self::queue_emails(&mut tx, &emails).await?;
        // The ledger entries and ratings of all the steps, in step order.
        let entries: Vec<(&CompanyId, &LedgerEntry)> = steps
            .iter()
            .flat_map(|(run, effects)| effects.ledger.iter().map(move |e| (&run.company, e)))
            .collect();
        DB::insert_ledger(&mut tx, &entries).await?;
        // Ratings in their key's order (a close rates in time order, and ids come in none):
        // each lands beside the one before in the table's B-tree instead of on a page of its own.
        let mut ratings: Vec<(&CompanyId, &Rating)> = steps
            .iter()
            .flat_map(|(run, effects)| effects.ratings.iter().map(move |r| (&run.company, r)))
            .collect();
        ratings.sort_unstable_by(|(a, x), (b, y)| (a, &x.id).cmp(&(b, &y.id)));
        DB::insert_ratings(&mut tx, &ratings).await?;
        tx.commit().await?;
        self.wrote(
            entries.len() + ratings.len(),
            &["ledger_entries", "usage_ratings"],
        )
        .await?;
        Ok(CommitOutcome::Committed)
    }

    async fn acquire_leases(
        &self,
        companies: &[CompanyId],
        owner: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> anyhow::Result<BTreeMap<CompanyId, i64>> {
        let mut taken = BTreeMap::new();
        for chunk in companies.chunks(CHUNK) {
            let mut tx = DB::begin_write(&self.pool).await?;
            let mut qb = QueryBuilder::<DB>::new(
                "INSERT INTO company_leases (company_id, owner, fence, lease_until, taken_at) ",
            );
            qb.push_values(chunk, |mut b, company| {
                b.push_bind(company.to_string())
                    .push_bind(owner.to_string())
                    .push_bind(1_i64)
                    .push_bind(rows::instant(until))
                    .push_bind(rows::instant(now));
            });
            // Taken when nobody holds it, its lease ran out, or this owner holds it already;
            // every take raises the fence. A holder that still holds it keeps its `taken_at`.
            qb.push(
                " ON CONFLICT (company_id) DO UPDATE SET owner = excluded.owner, \
                 fence = company_leases.fence + 1, lease_until = excluded.lease_until, \
                 taken_at = CASE WHEN company_leases.owner = excluded.owner \
                 AND company_leases.lease_until > excluded.taken_at \
                 THEN company_leases.taken_at ELSE excluded.taken_at END \
                 WHERE company_leases.lease_until <= ",
            );
            qb.push_bind(rows::instant(now));
            qb.push(" OR company_leases.owner = excluded.owner RETURNING company_id, fence");
            let rows: Vec<(String, i64)> = qb.build_query_as().fetch_all(&mut *tx).await?;
            tx.commit().await?;
            taken.extend(rows.into_iter().map(|(c, f)| (CompanyId::from(c), f)));
        }
        Ok(taken)
    }

    async fn release_leases(&self, companies: &[CompanyId], owner: &str) -> anyhow::Result<()> {
        for chunk in companies.chunks(CHUNK) {
            let mut qb =
                QueryBuilder::<DB>::new("UPDATE company_leases SET lease_until = 0 WHERE owner = ");
            qb.push_bind(owner.to_string()).push(" AND");
            push_companies(&mut qb, "company_id", chunk);
            qb.build().execute(&self.pool).await?;
        }
        Ok(())
    }

    async fn renew_leases(
        &self,
        companies: &[CompanyId],
        owner: &str,
        until: DateTime<Utc>,
    ) -> anyhow::Result<()> {
        for chunk in companies.chunks(CHUNK) {
            let mut qb = QueryBuilder::<DB>::new("UPDATE company_leases SET lease_until = ");
            qb.push_bind(rows::instant(until))
                .push(" WHERE owner = ")
                .push_bind(owner.to_string())
                .push(" AND");
            push_companies(&mut qb, "company_id", chunk);
            qb.build().execute(&self.pool).await?;
        }
        Ok(())
    }

    async fn lease_holders(&self, companies: &[CompanyId]) -> anyhow::Result<Vec<LeaseRecord>> {
        let mut out = Vec::new();
        for chunk in companies.chunks(CHUNK) {
            let mut qb = QueryBuilder::<DB>::new(
                "SELECT company_id, owner, taken_at, lease_until FROM company_leases WHERE",
            );
            push_companies(&mut qb, "company_id", chunk);
            let rows: Vec<(String, String, i64, i64)> =
                qb.build_query_as().fetch_all(&self.pool).await?;
            for (company, owner, since, until) in rows {
                out.push(LeaseRecord {
                    company: CompanyId::from(company),
                    owner,
                    since: rows::at(since)?,
                    until: rows::at(until)?,
                });
            }
        }
        Ok(out)
    }

    async fn take_over(
        &self,
        company: &CompanyId,
        dead_owner: &str,
        owner: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> anyhow::Result<Option<i64>> {
        let mut tx = DB::begin_write(&self.pool).await?;
        let fence: Option<(i64,)> = sqlx::query_as(
            "UPDATE company_leases SET owner = $1, fence = fence + 1, lease_until = $2, \
             taken_at = $3 WHERE company_id = $4 AND owner = $5 RETURNING fence",
        )
        .bind(owner.to_string())
        .bind(rows::instant(until))
        .bind(rows::instant(now))
        .bind(company.to_string())
        .bind(dead_owner.to_string())
        .fetch_optional(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(fence.map(|(f,)| f))
    }

    async fn live_owners(&self, owners: &[String]) -> anyhow::Result<Option<BTreeSet<String>>> {
        DB::live_sessions(&self.pool, owners).await
    }

    async fn record_failure(&self, f: &StepFailure) -> anyhow::Result<()> {
        let mut tx = DB::begin_write(&self.pool).await?;
        sqlx::query(
            "INSERT INTO job_failures (company_id, boundary_index, boundary_date, job, error, \
             failed_at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(f.company.to_string())
        .bind(i64::from(f.boundary_index))
        .bind(rows::date(f.boundary))
        .bind(f.step.as_str())
        .bind(f.error.clone())
        .bind(rows::instant(f.failed_at))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn failures(&self) -> anyhow::Result<Vec<StepFailure>> {
        let rows: Vec<FailureRow> = sqlx::query_as(
            "SELECT company_id, boundary_index, boundary_date, job, error, failed_at \
             FROM job_failures ORDER BY seq",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(FailureRow::into_domain).collect()
    }

    async fn documents(&self) -> anyhow::Result<Vec<Document>> {
        let heads: Vec<InvoiceRow> = sqlx::query_as(
            "SELECT company_id, number, kind, boundary_index, boundary, period_start, period_end, \
             currency FROM invoices ORDER BY boundary, company_id, number",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut docs = Vec::with_capacity(heads.len());
        let mut index = BTreeMap::new();
        for h in heads {
            let d = h.into_domain()?;
            index.insert((d.company.to_string(), d.number.clone()), docs.len());
            docs.push(d);
        }
        let lines: Vec<LineRow> = sqlx::query_as(
            "SELECT company_id, number, kind, office, product, description, quantity, unit_price, \
             amount, source, corrects FROM invoice_lines ORDER BY company_id, number, line_no",
        )
        .fetch_all(&self.pool)
        .await?;
        for l in lines {
            // Lines without a head read belong to a document issued between the two reads
            // (documents are inserted whole and never change): left for the next read.
            if let Some(&i) = index.get(&(l.company_id.clone(), l.number.clone())) {
                docs[i].lines.push(l.into_domain()?);
            }
        }
        Ok(docs)
    }

    async fn issued_at(
        &self,
        company: &CompanyId,
        boundary_index: u32,
    ) -> anyhow::Result<super::IssuedAt> {
        self.read_issued_at(company, boundary_index).await
    }

    async fn issued_document(
        &self,
        company: &CompanyId,
        number: &str,
    ) -> anyhow::Result<Option<super::IssuedDocument>> {
        self.read_issued_document(company, number).await
    }

    async fn rated_late_after(
        &self,
        company: &CompanyId,
        boundary_index: u32,
    ) -> anyhow::Result<BTreeSet<String>> {
        self.read_rated_late_after(company, boundary_index).await
    }

    async fn record_rerun(&self, rerun: &super::RerunRun) -> anyhow::Result<super::RerunCommit> {
        self.write_rerun(rerun).await
    }

    async fn job_runs(&self) -> anyhow::Result<Vec<JobRun>> {
        let rows: Vec<JobRunRow> = sqlx::query_as(
            "SELECT job, status, company_id, boundary_index, boundary_date, items FROM job_runs \
             ORDER BY seq",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(JobRunRow::into_domain).collect()
    }

    async fn rejections(&self) -> anyhow::Result<Vec<Rejection>> {
        let rows: Vec<RejectionRow> = sqlx::query_as(
            "SELECT company_id, source, line, item_id, reason FROM rejections ORDER BY seq",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(RejectionRow::into_domain).collect())
    }

    async fn card_charges(&self) -> anyhow::Result<Vec<CardCharge>> {
        let rows: Vec<CardChargeRow> = sqlx::query_as(
            "SELECT company_id, at, kind, amount, currency, reference FROM card_charges ORDER BY seq",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(CardChargeRow::into_domain).collect()
    }

    async fn usage_spend(
        &self,
        from: &[(CompanyId, u32)],
    ) -> anyhow::Result<BTreeMap<CompanyId, BTreeMap<u32, crate::domain::usage_email::Spend>>> {
        self.spend_from(from).await
    }

    async fn usage_history(
        &self,
        query: &crate::domain::usage_history::HistoryQuery,
        sink: &mut (
                 dyn FnMut(crate::domain::usage_history::HistoryRecord) -> anyhow::Result<()> + Send
             ),
    ) -> anyhow::Result<u64> {
        self.stream_history(query, sink).await
    }

    async fn claim_due_emails(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
        limit: i64,
    ) -> anyhow::Result<Vec<QueuedEmail>> {
        self.claim_emails(owner, now, until, limit).await
    }

    async fn finish_email(
        &self,
        email: &QueuedEmail,
        owner: &str,
        outcome: &EmailOutcome,
    ) -> anyhow::Result<bool> {
        self.finish(email, owner, outcome).await
    }

    async fn email_backlog(
        &self,
        company: Option<&CompanyId>,
    ) -> anyhow::Result<(i64, Vec<QueuedEmail>)> {
        self.backlog(company).await
    }
}

/// Judges the chunk of usage read last and sorts its accepted rows by company, then time: a
/// company's rows of a chunk share pages, which its close, its exports and its emails read
/// together.
fn judge_chunk<J: IntakeJudge>(
    judge: &mut J,
    accepted: &BTreeMap<String, String>,
) -> anyhow::Result<UsageBatch> {
    let mut usage = judge.usage(accepted)?;
    usage.accepted.sort_unstable_by(|a, b| {
        (&a.company, a.occurred_at, &a.id).cmp(&(&b.company, b.occurred_at, &b.id))
    });
    Ok(usage)
}
