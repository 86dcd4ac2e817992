//! Closing one boundary of one company: the steps of §8, in order, each claimed per
//! (job, company, boundary) and committed with its effects in one transaction.
//!
//! Every step computes from the events recorded before the boundary, never from the state at
//! the moment it runs, so a close that is weeks late writes what an on-time close writes.

use chrono::{DateTime, Utc};

use crate::domain::invoice::{document, license_lines};
use crate::domain::model::{Billing, Company, Event, World};
use crate::store::{CardCharge, StepEffects, StepRun, Store};

use super::history::{book_as_of, price_list};

/// The steps of a close, in the order they run.
pub const STEPS: [&str; 4] = ["expire", "apply-removals", "invoice", "grant"];

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
}

/// Computes the effects of one step of boundary `k`.
fn step_effects(
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
        "apply-removals" => {
            let book = book_as_of(world, company, events, at, at)?;
            effects.removals = book
                .applied_removals()
                .iter()
                .filter(|r| r.boundary == k)
                .cloned()
                .collect();
        }
        "invoice" => {
            let book = book_as_of(world, company, events, at, at)?;
            let prices = price_list(world, events);
            let lines = license_lines(
                company,
                &world.products,
                &prices,
                k,
                book.pools(),
                book.purchases(),
                at,
            );
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
                effects.document = Some(doc);
            }
        }
        // Wallets arrive with the credit half of billing; until then these steps find nothing
        // to expire or grant and say so with zero items.
        "expire" | "grant" => {}
        other => anyhow::bail!("unknown step {other}"),
    }
    Ok(effects)
}

/// Runs the steps of boundary `k` of `company` that are not `done` yet, in order.
/// `events` are the company's accepted events.
pub async fn close_boundary<S: Store>(
    store: &S,
    world: &World,
    company: &Company,
    events: &[Event],
    k: u32,
    done: &dyn Fn(&str) -> bool,
    clock: Clock<'_>,
) -> anyhow::Result<CloseReport> {
    let grid = company.grid();
    let mut report = CloseReport::default();
    for job in STEPS {
        if done(job) {
            report.skipped += 1;
            continue;
        }
        let started_at = clock();
        let effects = step_effects(world, company, events, k, job)?;
        let run = StepRun {
            job,
            company: company.id.clone(),
            boundary_index: k,
            boundary_at: grid.boundary_at(k),
            boundary: grid.boundary_date(k),
            started_at,
            finished_at: clock(),
        };
        if store.commit_step(&run, &effects).await? {
            report.completed += 1;
        } else {
            report.skipped += 1;
        }
    }
    Ok(report)
}
