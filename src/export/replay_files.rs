//! The files a replay writes (`invoices.csv`, `ledger.csv`, …), written from the store as it stands.

use std::path::Path;

use anyhow::Context;
use chrono::{DateTime, SecondsFormat, Utc};

use crate::domain::model::World;
use crate::domain::money::{Currency, format_micro};
use crate::jobs::book_as_of;
use crate::store::Store;

use super::csv_file::write_csv;

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

fn currency(code: &str) -> anyhow::Result<Currency> {
    Currency::from_code(code).with_context(|| format!("stored currency {code:?}"))
}

/// Writes the replay files into `out` (created if missing), for one company or all.
pub async fn dump<S: Store>(store: &S, out: &Path, company: Option<&str>) -> anyhow::Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let world = store.world().await?;
    let wanted = |c: &str| company.is_none_or(|w| w == c);

    let mut docs = store.documents().await?;
    docs.retain(|d| wanted(&d.company));
    docs.sort_by(|a, b| {
        (a.boundary, &a.company, &a.number).cmp(&(b.boundary, &b.company, &b.number))
    });
    let mut rows = Vec::new();
    for d in &docs {
        let cur = currency(&d.currency)?;
        for (i, l) in d.lines.iter().enumerate() {
            rows.push(vec![
                d.number.clone(),
                d.company.clone(),
                d.kind.as_str().to_string(),
                d.boundary.to_string(),
                d.period_start.to_string(),
                d.period_end.to_string(),
                (i + 1).to_string(),
                l.kind.as_str().to_string(),
                l.office.clone(),
                l.product.clone(),
                l.description.clone(),
                l.quantity.map(|q| q.to_string()).unwrap_or_default(),
                l.unit_price
                    .map(|p| cur.format_price(p))
                    .unwrap_or_default(),
                cur.format_amount(l.amount),
                d.currency.clone(),
            ]);
        }
    }
    write_csv(&out.join("invoices.csv"), INVOICES, rows)?;

    // Balances are the running sums of the entries, never stored.
    let mut balances: std::collections::BTreeMap<(String, String, String), rust_decimal::Decimal> =
        Default::default();
    let mut rows = Vec::new();
    for (i, r) in store.ledger(None).await?.into_iter().enumerate() {
        let e = &r.entry;
        let balance = balances
            .entry((r.company.clone(), e.scope.clone(), e.wallet.clone()))
            .or_default();
        *balance += e.amount;
        if !wanted(&r.company) {
            continue;
        }
        rows.push(vec![
            (i + 1).to_string(),
            rfc3339(e.at),
            r.company.clone(),
            e.scope.clone(),
            e.wallet.clone(),
            e.kind.as_str().to_string(),
            format_micro(e.amount),
            format_micro(*balance),
            e.reference.clone(),
        ]);
    }
    write_csv(&out.join("ledger.csv"), LEDGER, rows)?;

    let records = store.usage_records(company).await?;
    write_csv(
        &out.join("usage_records.csv"),
        USAGE_RECORDS,
        records.into_iter().map(|(u, r)| {
            vec![
                u.id,
                rfc3339(u.occurred_at),
                u.company,
                u.office,
                u.party,
                u.service,
                u.usage_type,
                u.direction,
                u.remote_number,
                u.billable_quantity.to_string(),
                u.unit,
                u.rate,
                u.increment,
                format_micro(u.cost),
                r.wallet_sources,
                r.late.to_string(),
            ]
        }),
    )?;

    write_csv(
        &out.join("licenses.csv"),
        LICENSES,
        license_rows(store, &world, &wanted).await?,
    )?;

    let mut charges = store.card_charges().await?;
    charges.retain(|c| wanted(&c.company));
    // Stable: charges at one instant of one company stay in the order made.
    charges.sort_by(|a, b| (a.at, &a.company).cmp(&(b.at, &b.company)));
    let mut rows = Vec::new();
    for c in &charges {
        rows.push(vec![
            rfc3339(c.at),
            c.company.clone(),
            c.kind.clone(),
            currency(&c.currency)?.format_amount(c.amount),
            c.currency.clone(),
            c.reference.clone(),
        ]);
    }
    write_csv(&out.join("card_charges.csv"), CARD_CHARGES, rows)?;

    let mut rejections = store.rejections().await?;
    rejections.sort_by(|a, b| (&a.source, a.line).cmp(&(&b.source, b.line)));
    write_csv(
        &out.join("rejections.csv"),
        REJECTIONS,
        rejections
            .into_iter()
            .map(|r| vec![r.source, r.line.to_string(), r.id, r.reason]),
    )?;

    let runs = store.job_runs().await?;
    write_csv(
        &out.join("job_runs.csv"),
        JOB_RUNS,
        runs.into_iter().filter(|r| wanted(&r.company)).map(|r| {
            vec![
                r.job,
                r.company,
                r.boundary.to_string(),
                r.status,
                r.items.to_string(),
            ]
        }),
    )?;
    Ok(())
}

/// Each company's pools after every recorded event and every boundary up to its latest
/// closed boundary or latest event, whichever is later.
async fn license_rows<S: Store>(
    store: &S,
    world: &World,
    wanted: &dyn Fn(&str) -> bool,
) -> anyhow::Result<Vec<Vec<String>>> {
    let mut closed: std::collections::BTreeMap<String, u32> = Default::default();
    for (company, k, _) in store.completed_steps().await? {
        let e = closed.entry(company).or_insert(k);
        *e = (*e).max(k);
    }
    let mut rows = Vec::new();
    for company in world.companies.values().filter(|c| wanted(&c.id)) {
        let grid = company.grid();
        let events = store.accepted_events(Some(&company.id)).await?;
        let last_event = events.iter().map(|e| e.at).max();
        let last_close = closed.get(&company.id).map(|&k| grid.boundary_at(k));
        let Some(as_of) = last_event.max(last_close) else {
            // Nothing happened yet: the pools stand as loaded.
            let book = book_as_of(
                world,
                company,
                &[],
                grid.boundary_at(0),
                grid.boundary_at(0) - chrono::Duration::microseconds(1),
            )?;
            push_pools(&mut rows, &company.id, &book);
            continue;
        };
        let book = book_as_of(
            world,
            company,
            &events,
            as_of + chrono::Duration::microseconds(1),
            as_of,
        )?;
        push_pools(&mut rows, &company.id, &book);
    }
    Ok(rows)
}

fn push_pools(
    rows: &mut Vec<Vec<String>>,
    company: &str,
    book: &crate::domain::licenses::LicenseBook,
) {
    for ((office, product), pool) in book.pools() {
        rows.push(vec![
            company.to_string(),
            office.clone(),
            product.clone(),
            pool.quantity.to_string(),
            pool.pending_removal.to_string(),
            pool.assigned.to_string(),
        ]);
    }
}
