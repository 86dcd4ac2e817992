//! Closing one boundary of one company: the steps of §8, in order, each claimed per
//! (job, company, boundary) and committed with its effects in one transaction.
//!
//! Every step computes from the events recorded before the boundary, never from the state at
//! the moment it runs, so a close that is weeks late writes what an on-time close writes.

use chrono::{DateTime, Utc};

use rust_decimal::Decimal;

use crate::domain::invoice::{
    arrears, bundle_lines, credit_lines, document, invoice_number, license_lines,
};
use crate::domain::model::{Billing, BundleKind, Company, CreditSharing, Event, World};
use crate::domain::usage::{Rating, Usage};
use crate::domain::wallets::{EntryKind, LedgerEntry};
use crate::store::{CardCharge, Lease, StepEffects, StepRun, Store};

use super::history::{account, book_as_of, price_list, wallets_before};

/// The steps of a close, in the order they run.
pub const STEPS: [&str; 5] = ["rate", "expire", "apply-removals", "invoice", "grant"];

/// The instant "now" for audit columns: the wall clock in production, the simulated clock in
/// a replay. Nothing else in the jobs reads time.
pub type Clock<'a> = &'a (dyn Fn() -> DateTime<Utc> + Sync);

/// What closing a boundary did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CloseReport {
    /// Steps this call completed.
    pub completed: usize,
    /// Steps found already completed (by an earlier or concurrent run).
    pub skipped: usize,
    /// Every step of the boundary now known to be done, in order.
    pub done: Vec<&'static str>,
}

/// The wallet scope that pays for a usage row.
fn usage_scope(company: &Company, usage: &Usage) -> String {
    match company.credit_sharing {
        CreditSharing::Company => "company".to_string(),
        CreditSharing::Office if usage.service == "ai_agent" => company.primary_office.clone(),
        CreditSharing::Office => usage.office.clone(),
    }
}

/// The scopes holding wallets, in file order.
fn scopes(world: &World, company: &Company) -> Vec<String> {
    match company.credit_sharing {
        CreditSharing::Company => vec!["company".to_string()],
        CreditSharing::Office => {
            let mut offices: Vec<String> = world
                .offices_of(&company.id)
                .map(|o| o.id.clone())
                .collect();
            offices.sort();
            offices
        }
    }
}

/// `rate`: debits every unrated usage row that occurred and arrived before the boundary, in
/// (occurred_at, id) order, with the recharges its debits trigger.
async fn rate<S: Store>(
    store: &S,
    world: &World,
    company: &Company,
    events: &[Event],
    k: u32,
) -> anyhow::Result<StepEffects> {
    let grid = company.grid();
    let at = grid.boundary_at(k);
    let usage = store.unrated_usage(&company.id, at).await?;
    let mut effects = StepEffects::default();
    if usage.is_empty() {
        return Ok(effects);
    }
    let (mut wallets, _) = wallets_before(store, world, company, at).await?;
    let account = account(world, company, events);
    for u in &usage {
        let late = grid.first_boundary_after(u.occurred_at) < k;
        let debit_at = if late { u.received_at } else { u.occurred_at };
        let entries = if u.cost > Decimal::ZERO {
            wallets.charge(
                &usage_scope(company, u),
                &u.service,
                u.cost,
                debit_at,
                &u.id,
                account.auto_recharge(debit_at),
            )
        } else {
            Vec::new()
        };
        let sources: Vec<&str> = entries
            .iter()
            .filter(|e| e.kind == EntryKind::Debit)
            .map(|e| e.wallet.as_str())
            .collect();
        effects.ratings.push(Rating {
            id: u.id.clone(),
            boundary_index: k,
            wallet_sources: sources.join("+"),
            late,
        });
        if company.billing == Billing::Card {
            for e in entries.iter().filter(|e| e.kind == EntryKind::Recharge) {
                effects.card_charges.push(CardCharge {
                    at: e.at,
                    company: company.id.clone(),
                    kind: "auto_recharge".to_string(),
                    amount: e.amount,
                    currency: company.currency.code().to_string(),
                    reference: e.reference.clone(),
                });
            }
        }
        effects.ledger.extend(entries);
    }
    effects.items = effects.ratings.len() as i64;
    Ok(effects)
}

/// `grant`: allowances (every period) and bundles (each cadence period) starting at `k`, by
/// scope, allowances before bundles, each in scenario order.
fn grant(world: &World, company: &Company, k: u32) -> Vec<LedgerEntry> {
    let grid = company.grid();
    let (at, date) = (grid.boundary_at(k), grid.boundary_date(k));
    let mut entries = Vec::new();
    for scope in scopes(world, company) {
        for a in world.allowances.iter().filter(|a| a.company == company.id) {
            let primary_only = company.credit_sharing == CreditSharing::Office
                && a.service == "ai_agent"
                && scope != company.primary_office;
            if primary_only {
                continue;
            }
            let wallet = format!("allowance:{}", a.service);
            entries.push(LedgerEntry {
                at,
                scope: scope.clone(),
                reference: format!("{wallet}@{date}"),
                wallet,
                kind: EntryKind::Grant,
                amount: a.amount,
                expires_at: Some(grid.boundary_at(k + 1)),
            });
        }
        for b in world
            .bundles
            .iter()
            .filter(|b| b.company == company.id && b.scope == scope)
        {
            let Some(start) = grid.boundary_index_on(b.start) else {
                continue;
            };
            if !b.cadence.starts_at(start, k) {
                continue;
            }
            entries.push(LedgerEntry {
                at,
                scope: scope.clone(),
                wallet: match b.kind {
                    BundleKind::Telephony => "telephony",
                    BundleKind::Ai => "ai",
                }
                .to_string(),
                kind: EntryKind::Grant,
                amount: b.credits,
                reference: format!("{}@{date}", b.id),
                expires_at: Some(grid.boundary_at(k + b.cadence.periods())),
            });
        }
    }
    entries
}

/// Computes the effects of one step of boundary `k`.
async fn step_effects<S: Store>(
    store: &S,
    world: &World,
    company: &Company,
    events: &[Event],
    k: u32,
    job: &str,
) -> anyhow::Result<StepEffects> {
    let grid = company.grid();
    let at = grid.boundary_at(k);
    let mut effects = StepEffects::default();
    match job {
        "rate" => return rate(store, world, company, events, k).await,
        "expire" => {
            let (mut wallets, _) = wallets_before(store, world, company, at).await?;
            effects.ledger = wallets.expire(at);
            effects.items = effects.ledger.len() as i64;
        }
        "apply-removals" => {
            let book = book_as_of(world, company, events, at, at)?;
            effects.removals = book
                .applied_removals()
                .iter()
                .filter(|r| r.boundary == k)
                .cloned()
                .collect();
            effects.items = effects.removals.len() as i64;
        }
        "invoice" => {
            let book = book_as_of(world, company, events, at, at)?;
            let prices = price_list(world, events);
            let mut lines = license_lines(
                company,
                &world.products,
                &prices,
                k,
                book.pools(),
                book.purchases(),
                at,
            );
            lines.extend(bundle_lines(company, &world.bundles, k));
            let (wallets, entries) = wallets_before(store, world, company, at).await?;
            if k > 0 {
                let from = grid.boundary_at(k - 1);
                let made: Vec<LedgerEntry> = entries
                    .into_iter()
                    .filter(|e| from <= e.at && e.at < at)
                    .collect();
                lines.extend(credit_lines(company, &made));
            }
            let number = invoice_number(&company.id, grid.boundary_date(k));
            let (arrears_lines, settles) = arrears(company, &wallets, at, &number);
            lines.extend(arrears_lines);
            effects.ledger = settles;
            if let Some(doc) = document(company, &grid, k, lines) {
                let total = doc.total();
                if company.billing == Billing::Card && !total.is_zero() {
                    effects.card_charges.push(CardCharge {
                        at,
                        company: company.id.clone(),
                        kind: "card_statement".to_string(),
                        amount: total,
                        currency: doc.currency.clone(),
                        reference: doc.number.clone(),
                    });
                }
                effects.items = doc.lines.len() as i64;
                effects.document = Some(doc);
            }
        }
        "grant" => {
            effects.ledger = grant(world, company, k);
            effects.items = effects.ledger.len() as i64;
        }
        other => anyhow::bail!("unknown step {other}"),
    }
    Ok(effects)
}

/// A step that failed, and why.
#[derive(Debug, thiserror::Error)]
#[error("step {job}: {source:#}")]
pub struct StepError {
    /// The step.
    pub job: &'static str,
    /// What went wrong.
    pub source: anyhow::Error,
}

/// Runs, in order, the steps of boundary `k` of `company` that `wanted` selects and that are
/// not `done` yet, under `lease` if given. A step runs only once every step before it is done.
/// `events` are the company's accepted events.
#[allow(clippy::too_many_arguments)]
pub async fn close_boundary<S: Store>(
    store: &S,
    world: &World,
    company: &Company,
    events: &[Event],
    k: u32,
    done: &dyn Fn(&str) -> bool,
    wanted: &dyn Fn(&str) -> bool,
    lease: Option<&Lease>,
    clock: Clock<'_>,
) -> Result<CloseReport, StepError> {
    let grid = company.grid();
    let mut report = CloseReport::default();
    for job in STEPS {
        if done(job) {
            report.skipped += 1;
            report.done.push(job);
            continue;
        }
        if !wanted(job) {
            // A later step may not run before this one.
            break;
        }
        let started_at = clock();
        let fail = |source: anyhow::Error| StepError { job, source };
        let effects = step_effects(store, world, company, events, k, job)
            .await
            .map_err(fail)?;
        crate::failpoint::hit(&format!("before-commit:{job}"));
        let run = StepRun {
            job,
            company: company.id.clone(),
            boundary_index: k,
            boundary_at: grid.boundary_at(k),
            boundary: grid.boundary_date(k),
            started_at,
            finished_at: clock(),
            lease: lease.cloned(),
        };
        if store.commit_step(&run, &effects).await.map_err(fail)? {
            report.completed += 1;
        } else {
            report.skipped += 1;
        }
        report.done.push(job);
        crate::failpoint::hit(&format!("after-commit:{job}"));
    }
    Ok(report)
}
