//! The jobs: closing boundaries, taking in events, running due work, and replaying a
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
use crate::store::{Fenced, Lease, StepEffects, StepFailure, StepRun, Store};

pub use close::{Clock, STEPS};
pub use history::book_as_of;

use crate::domain::wallets::PlanUsage;

/// The plan usage of a company at `at` : every wallet of every scope.
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
    let events = store.accepted_events(Some(&company.id)).await?;
    let ids = [company.id.clone()];
    let ledger = store
        .ledger_in(&ids)
        .await?
        .into_iter()
        .map(|r| r.entry)
        .collect();
    let close = close::CompanyClose::new(world, company, &events, ledger, Vec::new());
    Ok(close
        .wallets_before(at + chrono::Duration::microseconds(1))
        .plan_usage(at))
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
    let wanted = |job: &str| options.job.as_ref().is_none_or(|j| j == job);
    // Each company's last due boundary bounds what its close reads.
    let last_due = |c: &Company| -> Option<DateTime<Utc>> {
        let grid = c.grid();
        let mut last = grid.period_index(as_of)?;
        if let Some(caps) = &options.last_boundary {
            last = last.min(*caps.get(&c.id)?);
        }
        (next_open(done.get(&c.id)) <= last).then(|| grid.boundary_at(last))
    };
    let due: Vec<(String, DateTime<Utc>)> = companies
        .iter()
        .filter_map(|c| last_due(c).map(|until| (c.id.clone(), until)))
        .collect();
    let by_id: BTreeMap<&str, &Company> = companies.iter().map(|c| (c.id.as_str(), *c)).collect();
    if let Some(p) = &options.progress {
        p.set_length(due.len() as u64);
    }
    let mut report = DueReport::default();
    // Companies are taken in chunks: their leases, their progress and their history are read
    // and written a chunk at a time, and each company's boundaries are committed one by one.
    for chunk in due.chunks(256) {
        let mut chunk: Vec<(String, DateTime<Utc>)> = chunk.to_vec();
        let mut fences: BTreeMap<String, i64> = BTreeMap::new();
        if let Some(cfg) = &options.lease {
            let now = clock();
            let ids: Vec<String> = chunk.iter().map(|(c, _)| c.clone()).collect();
            fences = store
                .acquire_leases(&ids, &cfg.owner, now, now + cfg.ttl)
                .await?
                .into_iter()
                .collect();
            for (c, _) in chunk.iter().filter(|(c, _)| !fences.contains_key(c)) {
                report.busy.push(c.clone());
            }
            chunk.retain(|(c, _)| fences.contains_key(c));
            // Another instance may have closed some of these companies since `done` was read:
            // read their progress again now that they are ours.
            let ids: Vec<String> = chunk.iter().map(|(c, _)| c.clone()).collect();
            for c in &ids {
                done.remove(c);
            }
            for (c, k, job) in store.open_steps(&ids).await? {
                done.entry(c).or_default().insert((k, job));
            }
        }
        let mut histories = load_histories(store, &chunk).await?;
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
            plans.push(plan_company(
                world,
                by_id[id.as_str()],
                histories.remove(id).unwrap_or_default(),
                done.remove(id).unwrap_or_default(),
                Run {
                    as_of,
                    options,
                    lease: lease.as_ref(),
                    wanted: &wanted,
                    clock,
                },
            ));
        }
        commit_plans(store, plans, clock, &mut report).await?;
        if let Some(cfg) = &options.lease {
            let ids: Vec<String> = chunk.into_iter().map(|(c, _)| c).collect();
            store.release_leases(&ids, &cfg.owner).await?;
        }
    }
    Ok(report)
}

/// What a run closes under: its instant, its options, the company's lease and the steps wanted.
struct Run<'a> {
    as_of: DateTime<Utc>,
    options: &'a DueOptions,
    lease: Option<&'a Lease>,
    wanted: &'a dyn Fn(&str) -> bool,
    clock: Clock<'a>,
}

/// One company's due work, computed in memory and not yet committed.
struct CompanyPlan {
    company: String,
    steps: Vec<(StepRun, StepEffects)>,
    /// Boundaries fully closed once the steps are committed.
    closed: Vec<chrono::NaiveDate>,
    /// The step that failed: (boundary index, boundary date, error).
    failure: Option<(u32, chrono::NaiveDate, close::StepError)>,
}

/// Computes one company's due boundaries, oldest first, from its history, stopping at a
/// failing step (the company is then parked) or at a boundary left open by `--job`.
fn plan_company(
    world: &World,
    company: &Company,
    history: History,
    mut finished: BTreeSet<(u32, String)>,
    run: Run<'_>,
) -> CompanyPlan {
    let Run {
        as_of,
        options,
        lease,
        wanted,
        clock,
    } = run;
    let grid = company.grid();
    let mut k = next_open(Some(&finished));
    let cap = options
        .last_boundary
        .as_ref()
        .map(|m| m.get(&company.id).copied());
    let due =
        |k: u32| grid.boundary_at(k) <= as_of && cap.is_none_or(|c| c.is_some_and(|c| k <= c));
    let mut close = close::CompanyClose::new(
        world,
        company,
        &history.events,
        history.ledger,
        history.unrated,
    );
    let mut plan = CompanyPlan {
        company: company.id.clone(),
        steps: Vec::new(),
        closed: Vec::new(),
        failure: None,
    };
    while due(k) {
        let done_here = |job: &str| finished.contains(&(k, job.to_string()));
        let boundary = close::plan_boundary(&mut close, k, &done_here, wanted, lease, clock);
        plan.steps.extend(boundary.steps);
        for job in &boundary.done {
            finished.insert((k, job.to_string()));
        }
        if let Some(e) = boundary.failure {
            plan.failure = Some((k, grid.boundary_date(k), e));
            break;
        }
        if !STEPS.iter().all(|j| finished.contains(&(k, j.to_string()))) {
            break;
        }
        plan.closed.push(grid.boundary_date(k));
        k += 1;
    }
    plan
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
    let all: Vec<(StepRun, StepEffects)> =
        plans.iter().flat_map(|p| p.steps.iter().cloned()).collect();
    let together = match store.commit_steps(&all).await {
        Ok(committed) => committed,
        Err(e) if e.downcast_ref::<Fenced>().is_some() => false,
        Err(e) => return Err(e),
    };
    for plan in plans {
        if !together && !plan.steps.is_empty() {
            match store.commit_steps(&plan.steps).await {
                Ok(true) => {}
                Ok(false) => {
                    // Someone committed these steps despite our lease: leave the company to
                    // them rather than build on a history we did not read.
                    report.busy.push(plan.company.clone());
                    continue;
                }
                Err(e) if e.downcast_ref::<Fenced>().is_some() => {
                    report.failed.push((plan.company.clone(), format!("{e:#}")));
                    continue;
                }
                Err(e) => return Err(e),
            }
        }
        report.steps += plan.steps.len();
        for (run, _) in &plan.steps {
            crate::failpoint::hit(&format!("after-commit:{}", run.job));
        }
        report
            .closed
            .extend(plan.closed.iter().map(|d| (plan.company.clone(), *d)));
        if let Some((k, boundary, e)) = plan.failure {
            store
                .record_failure(&StepFailure {
                    job: e.job.to_string(),
                    company: plan.company.clone(),
                    boundary_index: k,
                    boundary,
                    error: format!("{:#}", e.source),
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

/// The first boundary not fully closed, given a company's completed steps. Closes run oldest
/// first, so the closed boundaries are a prefix of the grid.
fn next_open(finished: Option<&BTreeSet<(u32, String)>>) -> u32 {
    let Some(finished) = finished else { return 0 };
    finished
        .iter()
        .map(|(k, _)| *k)
        .filter(|&k| STEPS.iter().all(|j| finished.contains(&(k, j.to_string()))))
        .max()
        .map_or(0, |k| k + 1)
}

/// What a company's close reads.
#[derive(Default)]
struct History {
    events: Vec<crate::domain::model::Event>,
    ledger: Vec<crate::domain::wallets::LedgerEntry>,
    unrated: Vec<crate::domain::usage::Unrated>,
}

/// The histories of `companies`, read in three queries; each company's unrated usage up to
/// the boundary `until` it gives.
async fn load_histories<S: Store>(
    store: &S,
    companies: &[(String, DateTime<Utc>)],
) -> anyhow::Result<BTreeMap<String, History>> {
    let bounds = companies;
    let companies: Vec<String> = companies.iter().map(|(c, _)| c.clone()).collect();
    let companies = companies.as_slice();
    let mut out: BTreeMap<String, History> = BTreeMap::new();
    if companies.is_empty() {
        return Ok(out);
    }
    for e in store.accepted_events_in(companies, None).await? {
        out.entry(e.company.clone()).or_default().events.push(e);
    }
    for r in store.ledger_in(companies).await? {
        out.entry(r.company).or_default().ledger.push(r.entry);
    }
    for u in store.unrated_usage(bounds).await? {
        out.entry(u.company.clone()).or_default().unrated.push(u);
    }
    Ok(out)
}
