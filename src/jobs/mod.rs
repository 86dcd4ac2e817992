//! The jobs: closing boundaries (§8), taking in events, running due work, and replaying a
//! fixture under a simulated clock. Each is a function of (store, as_of); none reads the wall
//! clock.

pub mod close;
mod history;
pub mod ingest;
pub mod replay;
pub mod usage_intake;

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};

use crate::domain::model::World;
use crate::store::Store;

pub use close::{Clock, STEPS};
pub use history::book_as_of;

use crate::domain::wallets::PlanUsage;

/// The plan usage of a company at `at` (§ plan usage view): every wallet of every scope.
pub async fn plan_usage<S: Store>(
    store: &S,
    world: &World,
    company: &str,
    at: DateTime<Utc>,
) -> anyhow::Result<Vec<PlanUsage>> {
    let company = world
        .companies
        .get(company)
        .ok_or_else(|| anyhow::anyhow!("unknown company {company}"))?;
    let (wallets, _) = history::wallets_before(
        store,
        world,
        company,
        at + chrono::Duration::microseconds(1),
    )
    .await?;
    Ok(wallets.plan_usage(at))
}

/// Which work `run_due` may do.
#[derive(Debug, Clone, Default)]
pub struct DueFilter {
    /// Only this company.
    pub company: Option<String>,
    /// Per company, the last boundary index that may be closed (a replay's end).
    pub last_boundary: Option<BTreeMap<String, u32>>,
}

/// What `run_due` did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DueReport {
    /// (company, boundary date) closed by this run, oldest first per company.
    pub closed: Vec<(String, chrono::NaiveDate)>,
    /// Steps completed.
    pub steps: usize,
    /// Companies whose close failed, with the error; the others went on.
    pub failed: Vec<(String, String)>,
}

/// Closes, per company in id order, every boundary at or before `as_of` not yet closed,
/// oldest first, so missed ticks and downtime are caught up by one run.
pub async fn run_due<S: Store>(
    store: &S,
    world: &World,
    as_of: DateTime<Utc>,
    filter: &DueFilter,
    clock: Clock<'_>,
) -> anyhow::Result<DueReport> {
    let mut done: BTreeMap<String, BTreeSet<(u32, String)>> = BTreeMap::new();
    for (company, k, job) in store.completed_steps().await? {
        done.entry(company).or_default().insert((k, job));
    }
    let mut report = DueReport::default();
    for company in world.companies.values() {
        if filter.company.as_ref().is_some_and(|c| *c != company.id) {
            continue;
        }
        let grid = company.grid();
        let finished = done.remove(&company.id).unwrap_or_default();
        let closed = |k: u32| STEPS.iter().all(|j| finished.contains(&(k, j.to_string())));
        // Closes run oldest first, so the closed boundaries are a prefix of the grid.
        let mut k = finished
            .iter()
            .map(|(k, _)| *k)
            .filter(|&k| closed(k))
            .max()
            .map_or(0, |k| k + 1);
        let cap = filter
            .last_boundary
            .as_ref()
            .map(|m| m.get(&company.id).copied());
        let mut events = None;
        while grid.boundary_at(k) <= as_of && cap.is_none_or(|c| c.is_some_and(|c| k <= c)) {
            if events.is_none() {
                events = Some(store.accepted_events(Some(&company.id)).await?);
            }
            let done_here = |job: &str| finished.contains(&(k, job.to_string()));
            match close::close_boundary(
                store,
                world,
                company,
                events.as_deref().unwrap_or_default(),
                k,
                &done_here,
                clock,
            )
            .await
            {
                Ok(r) => {
                    report.steps += r.completed;
                    report
                        .closed
                        .push((company.id.clone(), grid.boundary_date(k)));
                }
                Err(e) => {
                    report.failed.push((
                        company.id.clone(),
                        format!("closing {}: {e:#}", grid.boundary_date(k)),
                    ));
                    break;
                }
            }
            k += 1;
        }
    }
    Ok(report)
}
