//! Running due work: per company in id order, every boundary at or before the instant that is
//! not closed yet, oldest first, so missed ticks and downtime are caught up by one run.
//! Companies are taken in chunks under leases; a chunk's history is read in a few bulk
//! queries, its steps computed in memory and committed in one transaction.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, NaiveDate, Utc};

use crate::domain::close::{CompanyClose, Step};
use crate::domain::model::{Company, Event, World};
use crate::domain::usage::Unrated;
use crate::domain::wallets::LedgerEntry;
use crate::domain::words::CompanyId;
use crate::store::{CommitOutcome, Lease, StepFailure, Store};

use super::Clock;
use super::close::{CompanyPlan, PlanContext, next_open, plan_company};

/// Companies leased, read and committed together.
const CHUNK: usize = 256;

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
    /// Only these companies (`--company`, or a replay's boundary instant).
    pub companies: Option<BTreeSet<CompanyId>>,
    /// Only this step (each boundary's earlier steps must be done).
    pub only: Option<Step>,
    /// Per company, the last boundary index that may be closed (a replay's end); a company
    /// missing from it has nothing due.
    pub last_boundary: Option<BTreeMap<CompanyId, u32>>,
    /// Lease companies while closing them (production); `None` in a single-process replay.
    pub lease: Option<LeaseConfig>,
    /// Shows companies done on a terminal.
    pub progress: Option<indicatif::ProgressBar>,
}

/// What `run_due` did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DueReport {
    /// (company, boundary date) fully closed by this run, oldest first per company.
    pub closed: Vec<(CompanyId, NaiveDate)>,
    /// Steps completed.
    pub steps: usize,
    /// Companies parked: a step failed (recorded with its error); the others went on.
    pub failed: Vec<(CompanyId, String)>,
    /// Companies with due work that another live instance holds.
    pub busy: Vec<CompanyId>,
}

/// Closes, per company in id order, every boundary at or before `as_of` not yet closed,
/// oldest first. A company whose step fails is parked (the failure is recorded) and the
/// others go on.
pub async fn run_due<S: Store>(
    store: &S,
    world: &World,
    as_of: DateTime<Utc>,
    options: &DueOptions,
    clock: Clock<'_>,
) -> anyhow::Result<DueReport> {
    let companies: Vec<&Company> = world
        .companies
        .values()
        .filter(|c| {
            options
                .companies
                .as_ref()
                .is_none_or(|set| set.contains(&c.id))
        })
        .collect();
    let ids: Vec<CompanyId> = companies.iter().map(|c| c.id.clone()).collect();
    let mut done = finished_steps(store, &ids).await?;
    // Each company's last due boundary bounds what its close reads.
    let last_due = |c: &Company| -> Option<DateTime<Utc>> {
        let grid = c.grid();
        let mut last = grid.period_index(as_of)?;
        if let Some(caps) = &options.last_boundary {
            last = last.min(*caps.get(&c.id)?);
        }
        let finished = done.get(&c.id).cloned().unwrap_or_default();
        (next_open(&finished) <= last).then(|| grid.boundary_at(last))
    };
    let due: Vec<(CompanyId, DateTime<Utc>)> = companies
        .iter()
        .filter_map(|c| last_due(c).map(|until| (c.id.clone(), until)))
        .collect();
    if let Some(p) = &options.progress {
        p.set_length(due.len() as u64);
    }
    let mut report = DueReport::default();
    for chunk in due.chunks(CHUNK) {
        let mut chunk: Vec<(CompanyId, DateTime<Utc>)> = chunk.to_vec();
        let mut fences: BTreeMap<CompanyId, i64> = BTreeMap::new();
        if let Some(cfg) = &options.lease {
            let now = clock();
            let ids: Vec<CompanyId> = chunk.iter().map(|(c, _)| c.clone()).collect();
            fences = store
                .acquire_leases(&ids, &cfg.owner, now, now + cfg.ttl)
                .await?;
            report.busy.extend(
                chunk
                    .iter()
                    .filter(|(c, _)| !fences.contains_key(c))
                    .map(|(c, _)| c.clone()),
            );
            chunk.retain(|(c, _)| fences.contains_key(c));
            // Another instance may have closed some of these companies since `done` was read:
            // read their progress again now that they are ours.
            let ids: Vec<CompanyId> = chunk.iter().map(|(c, _)| c.clone()).collect();
            done.extend(finished_steps(store, &ids).await?);
        }
        let mut histories = load_histories(store, &chunk).await?;
        // The usage email of a company's first open boundary compares with the close before.
        let spend_from: Vec<(CompanyId, u32)> = chunk
            .iter()
            .map(|(c, _)| {
                let open = done.get(c).map_or(0, next_open);
                (c.clone(), open.saturating_sub(1))
            })
            .collect();
        let mut spend = store.usage_spend(&spend_from).await?;
        let mut plans = Vec::with_capacity(chunk.len());
        for (id, _) in &chunk {
            if let Some(p) = &options.progress {
                p.inc(1);
            }
            let lease = options.lease.as_ref().map(|cfg| Lease {
                owner: cfg.owner.clone(),
                fence: fences[id],
                ttl_micros: cfg.ttl.num_microseconds().unwrap_or(i64::MAX),
            });
            let company = &world.companies[id];
            let history = histories.remove(id).unwrap_or_default();
            let mut close = CompanyClose::new(
                world,
                company,
                &history.events,
                history.ledger,
                history.unrated,
            )
            .with_spend(spend.remove(id).unwrap_or_default());
            let cx = PlanContext {
                as_of,
                last: options
                    .last_boundary
                    .as_ref()
                    .and_then(|caps| caps.get(id).copied()),
                only: options.only,
                lease: lease.as_ref(),
                clock,
            };
            plans.push(plan_company(
                &mut close,
                done.remove(id).unwrap_or_default(),
                &cx,
            ));
        }
        commit_plans(store, plans, clock, &mut report).await?;
        if let Some(cfg) = &options.lease {
            let ids: Vec<CompanyId> = chunk.into_iter().map(|(c, _)| c).collect();
            store.release_leases(&ids, &cfg.owner).await?;
        }
    }
    Ok(report)
}

/// Each company's completed steps, as far back as its latest fully closed boundary.
async fn finished_steps<S: Store>(
    store: &S,
    companies: &[CompanyId],
) -> anyhow::Result<BTreeMap<CompanyId, BTreeSet<(u32, Step)>>> {
    let mut done: BTreeMap<CompanyId, BTreeSet<(u32, Step)>> = companies
        .iter()
        .map(|c| (c.clone(), BTreeSet::new()))
        .collect();
    if companies.is_empty() {
        return Ok(done);
    }
    for s in store.progress(Some(companies)).await? {
        done.entry(s.company)
            .or_default()
            .insert((s.boundary_index, s.step));
    }
    Ok(done)
}

/// Commits the plans of a chunk of companies in one transaction. If another run got to one of
/// them first, or one's lease was taken over, each company is committed on its own instead, so
/// that only that one is left out.
async fn commit_plans<S: Store>(
    store: &S,
    plans: Vec<CompanyPlan>,
    clock: Clock<'_>,
    report: &mut DueReport,
) -> anyhow::Result<()> {
    let all: Vec<_> = plans.iter().flat_map(|p| p.steps.iter().cloned()).collect();
    let together = store.commit_steps(&all).await? == CommitOutcome::Committed;
    for plan in plans {
        if !together && !plan.steps.is_empty() {
            match store.commit_steps(&plan.steps).await? {
                CommitOutcome::Committed => {}
                CommitOutcome::AlreadyDone => {
                    // Someone committed these steps despite our lease: leave the company to
                    // them rather than build on a history we did not read.
                    report.busy.push(plan.company.clone());
                    continue;
                }
                CommitOutcome::Fenced { .. } => {
                    report.failed.push((
                        plan.company.clone(),
                        format!(
                            "lease on {} was taken over by another instance: this run's writes were refused",
                            plan.company
                        ),
                    ));
                    continue;
                }
            }
        }
        report.steps += plan.steps.len();
        for (run, _) in &plan.steps {
            crate::failpoint::hit(&format!("after-commit:{}", run.step));
        }
        report
            .closed
            .extend(plan.closed.iter().map(|d| (plan.company.clone(), *d)));
        if let Some((k, boundary, e)) = plan.failure {
            store
                .record_failure(&StepFailure {
                    step: e.step,
                    company: plan.company.clone(),
                    boundary_index: k,
                    boundary,
                    error: e.reason.clone(),
                    failed_at: clock(),
                })
                .await?;
            report
                .failed
                .push((plan.company, format!("closing {boundary}: {e}")));
        }
    }
    Ok(())
}

/// What a company's close reads.
#[derive(Default)]
struct History {
    events: Vec<Event>,
    ledger: Vec<LedgerEntry>,
    unrated: Vec<Unrated>,
}

/// The histories of `companies`, read in three queries; each company's unrated usage up to
/// the boundary `until` it gives.
async fn load_histories<S: Store>(
    store: &S,
    bounds: &[(CompanyId, DateTime<Utc>)],
) -> anyhow::Result<BTreeMap<CompanyId, History>> {
    let mut out: BTreeMap<CompanyId, History> = BTreeMap::new();
    if bounds.is_empty() {
        return Ok(out);
    }
    let companies: Vec<CompanyId> = bounds.iter().map(|(c, _)| c.clone()).collect();
    for e in store.accepted_events(Some(&companies)).await? {
        out.entry(e.company.clone()).or_default().events.push(e);
    }
    for r in store.ledger(Some(&companies)).await? {
        out.entry(r.company).or_default().ledger.push(r.entry);
    }
    for u in store.unrated_usage(bounds).await? {
        out.entry(u.company.clone()).or_default().unrated.push(u);
    }
    Ok(out)
}
