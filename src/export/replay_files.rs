//! The files a replay writes (`invoices.csv`, `ledger.csv`, …), written from the store as it stands.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context;
use chrono::{DateTime, SecondsFormat, Utc};
use rust_decimal::Decimal;

use crate::domain::account::CardCharge;
use crate::domain::invoice::Document;
use crate::domain::licenses::LicenseBook;
use crate::domain::model::World;
use crate::domain::money::format_micro;
use crate::domain::words::{CompanyId, Scope, Wallet};
use crate::store::{JobRun, LedgerRow, RatedUsage, Rejection, Store, latest_closes};

use super::csv_file::{CsvFile, write_csv};

/// `invoices.csv` columns.
pub const INVOICES: &[&str] = &[
    "invoice_number",
    "company",
    "kind",
    "boundary",
    "period_start",
    "period_end",
    "line_no",
    "line_kind",
    "office",
    "product",
    "description",
    "quantity",
    "unit_price",
    "amount",
    "currency",
];
/// `ledger.csv` columns.
pub const LEDGER: &[&str] = &[
    "seq",
    "at",
    "company",
    "scope",
    "wallet",
    "entry",
    "amount",
    "balance_after",
    "reference",
];
/// `usage_records.csv` columns.
pub const USAGE_RECORDS: &[&str] = &[
    "id",
    "occurred_at",
    "company",
    "office",
    "user",
    "service",
    "type",
    "direction",
    "remote_number",
    "billable_quantity",
    "unit",
    "rate",
    "increment",
    "cost",
    "wallet_sources",
    "late",
];
/// `licenses.csv` columns.
pub const LICENSES: &[&str] = &[
    "company",
    "office",
    "product",
    "quantity",
    "pending_removal",
    "assigned",
];
/// `card_charges.csv` columns.
pub const CARD_CHARGES: &[&str] = &["at", "company", "kind", "amount", "currency", "reference"];
/// `rejections.csv` columns.
pub const REJECTIONS: &[&str] = &["source", "line", "id", "reason"];
/// `job_runs.csv` columns.
pub const JOB_RUNS: &[&str] = &["job", "company", "boundary", "status", "items"];

/// An instant as written in every file: RFC 3339 UTC, `2026-02-03T14:00:00Z`.
pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// How many files [`dump`] writes.
const FILES: u64 = 7;

/// Writes the replay files into `out` (created if missing), for one company or all; `bar`
/// counts the files written.
pub async fn dump<S: Store>(
    store: &S,
    out: &Path,
    company: Option<&CompanyId>,
    bar: &indicatif::ProgressBar,
) -> anyhow::Result<()> {
    bar.set_length(FILES);
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let world = store.world().await?;
    let wanted = |c: &CompanyId| company.is_none_or(|w| w == c);

    let mut docs = store.documents().await?;
    docs.retain(|d| wanted(&d.company));
    write_csv(&out.join("invoices.csv"), INVOICES, invoice_rows(docs))?;
    bar.inc(1);
    write_ledger(store, &out.join("ledger.csv"), &wanted).await?;
    bar.inc(1);
    let mut records = CsvFile::create(&out.join("usage_records.csv"), USAGE_RECORDS)?;
    store
        .each_usage_record(company, &mut |r| records.write(usage_record_row(r)))
        .await?;
    records.finish()?;
    bar.inc(1);
    write_csv(
        &out.join("licenses.csv"),
        LICENSES,
        license_rows(store, &world, &wanted).await?,
    )?;
    bar.inc(1);
    let mut charges = store.card_charges().await?;
    charges.retain(|c| wanted(&c.company));
    write_csv(
        &out.join("card_charges.csv"),
        CARD_CHARGES,
        card_charge_rows(charges),
    )?;
    bar.inc(1);
    let mut rejections = store.rejections().await?;
    rejections.retain(|r| company.is_none() || r.company.as_ref().is_some_and(&wanted));
    write_csv(
        &out.join("rejections.csv"),
        REJECTIONS,
        rejection_rows(rejections),
    )?;
    bar.inc(1);
    let mut runs = store.job_runs().await?;
    runs.retain(|r| wanted(&r.company));
    write_csv(&out.join("job_runs.csv"), JOB_RUNS, job_run_rows(runs))?;
    bar.inc(1);
    bar.finish();
    Ok(())
}

/// `invoices.csv`: every line of every document, by (boundary, company, number, line).
fn invoice_rows(mut docs: Vec<Document>) -> Vec<Vec<String>> {
    docs.sort_by(|a, b| {
        (a.boundary, &a.company, &a.number).cmp(&(b.boundary, &b.company, &b.number))
    });
    let mut rows = Vec::new();
    for d in &docs {
        let cur = &d.currency;
        for (i, l) in d.lines.iter().enumerate() {
            rows.push(vec![
                d.number.clone(),
                d.company.to_string(),
                d.kind.as_str().to_string(),
                d.boundary.to_string(),
                d.period_start.to_string(),
                d.period_end.to_string(),
                (i + 1).to_string(),
                l.kind.as_str().to_string(),
                l.office.as_ref().map(|o| o.to_string()).unwrap_or_default(),
                l.product.clone(),
                l.description.clone(),
                l.quantity.map(|q| q.to_string()).unwrap_or_default(),
                l.unit_price
                    .map(|p| cur.format_price(p))
                    .unwrap_or_default(),
                cur.format_amount(l.amount),
                cur.code().to_string(),
            ]);
        }
    }
    rows
}

/// `ledger.csv`: the entries of the wanted companies in the order made, each with its
/// wallet's running balance (balances are sums of entries, never stored). `seq` counts every
/// company's entries. The entries are streamed: only the balances are held.
async fn write_ledger<S: Store>(
    store: &S,
    path: &Path,
    wanted: &(dyn Fn(&CompanyId) -> bool + Sync),
) -> anyhow::Result<()> {
    let mut file = CsvFile::create(path, LEDGER)?;
    let mut balances: BTreeMap<(CompanyId, Scope, Wallet), Decimal> = BTreeMap::new();
    let mut i = 0;
    store
        .each_ledger_row(&mut |r| {
            i += 1;
            let e = &r.entry;
            let key = (r.company.clone(), e.scope.clone(), e.wallet);
            let balance = balances.entry(key).or_default();
            *balance += e.amount;
            if !wanted(&r.company) {
                return Ok(());
            }
            file.write(ledger_row(i, &r, *balance))
        })
        .await?;
    file.finish()
}

/// A row of `ledger.csv`: the `i`-th entry made, and its wallet's balance after it.
fn ledger_row(i: usize, r: &LedgerRow, balance: Decimal) -> Vec<String> {
    let e = &r.entry;
    vec![
        i.to_string(),
        rfc3339(e.at),
        r.company.to_string(),
        e.scope.to_string(),
        e.wallet.to_string(),
        e.kind.as_str().to_string(),
        format_micro(e.amount),
        format_micro(balance),
        e.reference.clone(),
    ]
}

/// A row of `usage_records.csv`.
fn usage_record_row(
    RatedUsage {
        usage: u,
        rating: r,
    }: RatedUsage,
) -> Vec<String> {
    vec![
        u.id,
        rfc3339(u.occurred_at),
        u.company.to_string(),
        u.office.to_string(),
        u.party,
        u.service.as_str().to_string(),
        u.usage_type.map_or("", |t| t.as_str()).to_string(),
        u.direction.map_or("", |d| d.as_str()).to_string(),
        u.remote_number,
        u.billable_quantity.to_string(),
        u.unit.as_str().to_string(),
        u.rate.to_string(),
        u.increment
            .map(|(first, next)| format!("{first}/{next}"))
            .unwrap_or_default(),
        format_micro(u.cost),
        r.wallet_sources
            .iter()
            .map(|w| w.to_string())
            .collect::<Vec<_>>()
            .join("+"),
        r.late.to_string(),
    ]
}

/// `card_charges.csv`, by (at, company), charges of one instant in the order made.
fn card_charge_rows(mut charges: Vec<CardCharge>) -> Vec<Vec<String>> {
    charges.sort_by(|a, b| (a.at, &a.company).cmp(&(b.at, &b.company)));
    charges
        .into_iter()
        .map(|c| {
            vec![
                rfc3339(c.at),
                c.company.to_string(),
                c.kind.as_str().to_string(),
                c.currency.format_amount(c.amount),
                c.currency.code().to_string(),
                c.reference,
            ]
        })
        .collect()
}

/// `rejections.csv`, by source, then line as a number.
fn rejection_rows(mut rejections: Vec<Rejection>) -> Vec<Vec<String>> {
    rejections.sort_by(|a, b| (&a.source, a.line).cmp(&(&b.source, b.line)));
    rejections
        .into_iter()
        .map(|r| vec![r.source, r.line.to_string(), r.id, r.reason])
        .collect()
}

/// `job_runs.csv`, in execution order: the steps of closes and the re-runs between them.
fn job_run_rows(runs: Vec<JobRun>) -> Vec<Vec<String>> {
    runs.into_iter()
        .map(|r| {
            vec![
                r.job.as_str().to_string(),
                r.company.to_string(),
                r.boundary.to_string(),
                r.status.as_str().to_string(),
                r.items.to_string(),
            ]
        })
        .collect()
}

/// Each company's pools after every recorded event and every boundary up to its latest
/// closed boundary or latest event, whichever is later.
async fn license_rows<S: Store>(
    store: &S,
    world: &World,
    wanted: &dyn Fn(&CompanyId) -> bool,
) -> anyhow::Result<Vec<Vec<String>>> {
    let closed = latest_closes(&store.progress(None).await?);
    let mut rows = Vec::new();
    for company in world.companies.values().filter(|c| wanted(&c.id)) {
        let grid = company.grid();
        let events = store
            .accepted_events(Some(std::slice::from_ref(&company.id)))
            .await?;
        let last_event = events.iter().map(|e| e.at).max();
        let last_close = closed.get(&company.id).map(|&k| grid.boundary_at(k));
        let Some(as_of) = last_event.max(last_close) else {
            // Nothing happened yet: the pools stand as loaded.
            let book = LicenseBook::opening(world, company);
            push_pools(&mut rows, &company.id, &book);
            continue;
        };
        let book = LicenseBook::as_of(
            world,
            company,
            &events,
            as_of + chrono::Duration::microseconds(1),
            as_of,
        )
        .map_err(anyhow::Error::msg)?;
        push_pools(&mut rows, &company.id, &book);
    }
    Ok(rows)
}

fn push_pools(rows: &mut Vec<Vec<String>>, company: &CompanyId, book: &LicenseBook) {
    for (key, pool) in book.pools() {
        rows.push(vec![
            company.to_string(),
            key.office.to_string(),
            key.product.clone(),
            pool.quantity.to_string(),
            pool.pending_removal.to_string(),
            pool.assigned.to_string(),
        ]);
    }
}
