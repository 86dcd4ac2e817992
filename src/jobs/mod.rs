//! The jobs: closing boundaries (§8), taking in events, running due work, and replaying a
//! fixture under a simulated clock. Each is a function of (store, as_of); none reads the wall
//! clock.

pub mod close;
mod history;
pub mod ingest;
pub mod replay;
pub mod status;
pub mod usage_intake;

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};

use crate::domain::model::{Company, World};
use crate::store::{Fenced, Lease, StepFailure, Store};

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

/// How `run_due` coordinates with other instances: each company is leased for `ttl` and
/// every step commit renews the lease and checks its fence.
#[derive(Debug, Clone)]
pub struct LeaseConfig {
    /// This process's token (host, pid, start).
    pub owner: String,
    /// How long a lease lasts without renewal; a crashed holder's companies are taken over
    /// after it.
    pub ttl: chrono::Duration,
}

/// Which work `run_due` may do, and how.
#[derive(Debug, Clone, Default)]
pub struct DueOptions {
    /// Only this company.
    pub company: Option<String>,
    /// Only these companies (a replay's boundary instant).
    pub companies: Option<BTreeSet<String>>,
    /// Only this step (each boundary's earlier steps must be done).
    pub job: Option<String>,
    /// Per company, the last boundary index that may be closed (a replay's end).
    pub last_boundary: Option<BTreeMap<String, u32>>,
    /// Lease companies while closing them (production); `None` in a single-process replay.
    pub lease: Option<LeaseConfig>,
    /// Shows companies done on a terminal.
    pub progress: Option<indicatif::ProgressBar>,
}

/// What `run_due` did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DueReport {
    /// (company, boundary date) fully closed by this run, oldest first per company.
    pub closed: Vec<(String, chrono::NaiveDate)>,
    /// Steps completed.
    pub steps: usize,
    /// Companies parked: a step failed (recorded with its error); the others went on.
    pub failed: Vec<(String, String)>,
    /// Companies with due work that another live instance holds.
    pub busy: Vec<String>,
}

/// Closes, per company in id order, every boundary at or before `as_of` not yet closed,
/// oldest first, so missed ticks and downtime are caught up by one run. A company whose step
/// fails is parked (the failure is recorded) and the others go on.
pub async fn run_due<S: Store>(
    store: &S,
    world: &World,
    as_of: DateTime<Utc>,
    options: &DueOptions,
    clock: Clock<'_>,
) -> anyhow::Result<DueReport> {
    if let Some(job) = &options.job
        && !STEPS.contains(&job.as_str())
    {
        anyhow::bail!("unknown job {job:?} (one of {})", STEPS.join(", "));
    }
    let companies: Vec<&Company> = world
        .companies
        .values()
        .filter(|c| options.company.as_ref().is_none_or(|w| *w == c.id))
        .filter(|c| {
            options
                .companies
                .as_ref()
                .is_none_or(|set| set.contains(&c.id))
        })
        .collect();
    let mut done: BTreeMap<String, BTreeSet<(u32, String)>> = BTreeMap::new();
    let ids: Vec<String> = companies.iter().map(|c| c.id.clone()).collect();
    for (company, k, job) in store.open_steps(&ids).await? {
        done.entry(company).or_default().insert((k, job));
    }
    if let Some(p) = &options.progress {
        p.set_length(companies.len() as u64);
    }
    let wanted = |job: &str| options.job.as_ref().is_none_or(|j| j == job);
    let mut report = DueReport::default();
    for company in companies {
        if let Some(p) = &options.progress {
            p.inc(1);
        }
        let grid = company.grid();
        let mut finished = done.remove(&company.id).unwrap_or_default();
        let closed = |finished: &BTreeSet<(u32, String)>, k: u32| {
            STEPS.iter().all(|j| finished.contains(&(k, j.to_string())))
        };
        // Closes run oldest first, so the closed boundaries are a prefix of the grid.
        let mut k = finished
            .iter()
            .map(|(k, _)| *k)
            .filter(|&k| closed(&finished, k))
            .max()
            .map_or(0, |k| k + 1);
        let cap = options
            .last_boundary
            .as_ref()
            .map(|m| m.get(&company.id).copied());
        let due =
            |k: u32| grid.boundary_at(k) <= as_of && cap.is_none_or(|c| c.is_some_and(|c| k <= c));
        if !due(k) {
            continue;
        }
        let lease = match &options.lease {
            None => None,
            Some(cfg) => {
                let now = clock();
                match store
                    .acquire_lease(&company.id, &cfg.owner, now, now + cfg.ttl)
                    .await?
                {
                    Some(fence) => Some(Lease {
                        owner: cfg.owner.clone(),
                        fence,
                        ttl_micros: cfg.ttl.num_microseconds().unwrap_or(i64::MAX),
                    }),
                    None => {
                        report.busy.push(company.id.clone());
                        continue;
                    }
                }
            }
        };
        let events = store.accepted_events(Some(&company.id)).await?;
        while due(k) {
            let done_here = |job: &str| finished.contains(&(k, job.to_string()));
            let result = close::close_boundary(
                store,
                world,
                company,
                &events,
                k,
                &done_here,
                &wanted,
                lease.as_ref(),
                clock,
            )
            .await;
            match result {
                Ok(r) => {
                    report.steps += r.completed;
                    for job in r.done {
                        finished.insert((k, job.to_string()));
                    }
                    if !closed(&finished, k) {
                        break;
                    }
                    report
                        .closed
                        .push((company.id.clone(), grid.boundary_date(k)));
                }
                Err(e) => {
                    let message = format!("closing {}: {e}", grid.boundary_date(k));
                    if e.source.downcast_ref::<Fenced>().is_none() {
                        store
                            .record_failure(&StepFailure {
                                job: e.job.to_string(),
                                company: company.id.clone(),
                                boundary_index: k,
                                boundary: grid.boundary_date(k),
                                error: format!("{:#}", e.source),
                                failed_at: clock(),
                            })
                            .await?;
                    }
                    report.failed.push((company.id.clone(), message));
                    break;
                }
            }
            k += 1;
        }
        if let Some(l) = &lease {
            store.release_lease(&company.id, &l.owner, l.fence).await?;
        }
    }
    Ok(report)
}
