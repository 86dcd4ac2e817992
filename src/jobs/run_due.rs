//! Running due work: per company in id order, every boundary at or before the instant that is
//! not closed yet, oldest first, so missed ticks and downtime are caught up by one run.
//! Companies are taken in chunks under leases; a chunk's history is read in a few bulk
//! queries, its steps computed in memory and committed in one transaction.

use std::collections::{BTreeMap, BTreeSet};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use chrono::{DateTime, NaiveDate, Utc};
use futures_util::{FutureExt, StreamExt};

use crate::domain::close::{CompanyClose, Step};
use crate::domain::model::{Companies, Company, Event};
use crate::domain::usage::Unrated;
use crate::domain::wallets::LedgerEntry;
use crate::domain::words::CompanyId;
use crate::store::{CommitOutcome, Lease, LeaseRecord, StepFailure, Store};

use super::Clock;
use super::close::{CompanyPlan, PlanContext, next_open, plan_company};

/// Companies leased, read and committed together.
const CHUNK: usize = 128;

/// Chunks in progress at once.
const IN_FLIGHT: usize = 2;

/// How often a company whose history grew while it was being closed is closed again before
/// the run leaves it to the next one.
const ATTEMPTS: usize = 5;

/// How `run_due` coordinates with other instances: each company is leased for `ttl`, kept
/// alive by a heartbeat while its work runs, and every step commit renews the lease and checks
/// its fence.
#[derive(Clone)]
pub struct LeaseConfig {
    /// This process's token (host, pid, start).
    pub owner: String,
    /// How long a lease lasts without renewal.
    pub ttl: chrono::Duration,
    /// Whether the process behind another holder's token is provably gone (same host, process
    /// no longer running), so its companies can be taken over at once.
    pub holder_gone: Arc<dyn Fn(&str) -> bool + Send + Sync>,
}

impl std::fmt::Debug for LeaseConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaseConfig")
            .field("owner", &self.owner)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
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
    /// Companies with work due when the run started.
    pub due: usize,
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
/// others go on. Leases taken are given back on every way out, a panic included.
pub async fn run_due<S: Store>(
    store: &S,
    directory: &Companies,
    as_of: DateTime<Utc>,
    options: &DueOptions,
    clock: Clock<'_>,
) -> anyhow::Result<DueReport> {
    let companies: Vec<&Company> = directory
        .values()
        .filter(|c| {
            options
                .companies
                .as_ref()
                .is_none_or(|set| set.contains(&c.id))
        })
        .collect();
    let ids: Vec<CompanyId> = companies.iter().map(|c| c.id.clone()).collect();
    let done = finished_steps(store, &ids).await?;
    let due: Vec<(CompanyId, DateTime<Utc>)> = companies
        .iter()
        .filter_map(|c| {
            last_due(c, as_of, options, done.get(&c.id)).map(|until| (c.id.clone(), until))
        })
        .collect();
    if let Some(p) = &options.progress {
        p.set_length(due.len() as u64);
    }
    let mut report = DueReport {
        due: due.len(),
        ..Default::default()
    };
    drop(done);
    let run = Run {
        store,
        directory,
        as_of,
        options,
        clock,
    };
    run.all_chunks(&due, &mut report).await?;
    if let Some(p) = &options.progress {
        p.finish();
    }
    Ok(report)
}

/// The instant of `company`'s last boundary due as of `as_of`, if any is not closed yet.
fn last_due(
    company: &Company,
    as_of: DateTime<Utc>,
    options: &DueOptions,
    finished: Option<&BTreeSet<(u32, Step)>>,
) -> Option<DateTime<Utc>> {
    let grid = company.grid();
    let mut last = grid.period_index(as_of)?;
    if let Some(caps) = &options.last_boundary {
        last = last.min(*caps.get(&company.id)?);
    }
    let open = finished.map_or(0, next_open);
    (open <= last).then(|| grid.boundary_at(last))
}

/// One run's settings, shared by its chunks.
struct Run<'a, S> {
    store: &'a S,
    /// Every company, to plan by; a chunk reads its own master data.
    directory: &'a Companies,
    as_of: DateTime<Utc>,
    options: &'a DueOptions,
    clock: Clock<'a>,
}

impl<S: Store> Run<'_, S> {
    /// Closes the companies of `due`, a chunk at a time, two chunks in progress at once:
    /// while one is computed here, the other's reads or writes are with the database. Their
    /// companies are disjoint, as with two instances. A chunk that fails or panics stops new
    /// ones from starting, but the one beside it is run to its end, so that it gives its
    /// leases back, before the failure is passed on.
    async fn all_chunks(
        &self,
        due: &[(CompanyId, DateTime<Utc>)],
        report: &mut DueReport,
    ) -> anyhow::Result<()> {
        let stop = AtomicBool::new(false);
        let mut parts = futures_util::stream::iter(due.chunks(CHUNK))
            .map(|chunk| {
                let stop = &stop;
                async move {
                    if stop.load(Ordering::Relaxed) {
                        return None;
                    }
                    let part = AssertUnwindSafe(self.chunk_to_end(chunk.to_vec()))
                        .catch_unwind()
                        .await;
                    if !matches!(part, Ok(Ok(_))) {
                        stop.store(true, Ordering::Relaxed);
                    }
                    Some(part)
                }
            })
            .buffered(IN_FLIGHT);
        let mut failure = None;
        while let Some(part) = parts.next().await {
            match part {
                None => {}
                Some(Ok(Ok((part, companies)))) => {
                    report.closed.extend(part.closed);
                    report.steps += part.steps;
                    report.failed.extend(part.failed);
                    report.busy.extend(part.busy);
                    if let Some(p) = &self.options.progress {
                        p.inc(companies as u64);
                    }
                }
                Some(end) => {
                    failure.get_or_insert(end);
                }
            }
        }
        match failure {
            Some(Err(panic)) => std::panic::resume_unwind(panic),
            Some(Ok(Err(e))) => Err(e),
            _ => Ok(()),
        }
    }

    /// Closes `chunk`, again for the companies whose history grew meanwhile (up to
    /// `ATTEMPTS` times); returns what it did and the number of companies it was given.
    async fn chunk_to_end(
        &self,
        chunk: Vec<(CompanyId, DateTime<Utc>)>,
    ) -> anyhow::Result<(DueReport, usize)> {
        let companies = chunk.len();
        let mut report = DueReport::default();
        let mut pending = chunk;
        for _ in 0..ATTEMPTS {
            if pending.is_empty() {
                break;
            }
            pending = self.chunk(pending, &mut report).await?;
        }
        // Companies whose history kept growing while they were closed wait for the next run.
        report.busy.extend(pending.into_iter().map(|(c, _)| c));
        Ok((report, companies))
    }

    /// Leases, closes and commits a chunk of companies; returns those whose history grew while
    /// they were closed, to be closed again.
    async fn chunk(
        &self,
        chunk: Vec<(CompanyId, DateTime<Utc>)>,
        report: &mut DueReport,
    ) -> anyhow::Result<Vec<(CompanyId, DateTime<Utc>)>> {
        let Some(cfg) = &self.options.lease else {
            return self.close(chunk, &BTreeMap::new(), report).await;
        };
        let ids: Vec<CompanyId> = chunk.iter().map(|(c, _)| c.clone()).collect();
        let fences = self.acquire(&ids, cfg).await?;
        report
            .busy
            .extend(ids.iter().filter(|c| !fences.contains_key(*c)).cloned());
        let held: Vec<CompanyId> = fences.keys().cloned().collect();
        let chunk: Vec<_> = chunk
            .into_iter()
            .filter(|(c, _)| fences.contains_key(c))
            .collect();
        let work = AssertUnwindSafe(async {
            tokio::select! {
                result = self.close(chunk, &fences, report) => result,
                never = heartbeat(self.store, &held, cfg, self.clock) => never,
            }
        })
        .catch_unwind()
        .await;
        // Given back however the work ended, so that no instance waits for an expiry.
        let released = self.store.release_leases(&held, &cfg.owner).await;
        match work {
            Ok(result) => {
                let retry = result?;
                released?;
                Ok(retry)
            }
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }

    /// Takes the leases of `companies`: those nobody holds or whose lease ran out, and those
    /// whose holder is provably gone.
    async fn acquire(
        &self,
        companies: &[CompanyId],
        cfg: &LeaseConfig,
    ) -> anyhow::Result<BTreeMap<CompanyId, i64>> {
        let now = (self.clock)();
        let until = lease_until(now, cfg.ttl);
        let mut fences = self
            .store
            .acquire_leases(companies, &cfg.owner, now, until)
            .await?;
        let busy: Vec<CompanyId> = companies
            .iter()
            .filter(|c| !fences.contains_key(*c))
            .cloned()
            .collect();
        if busy.is_empty() {
            return Ok(fences);
        }
        let holders = self.store.lease_holders(&busy).await?;
        let mut owners: Vec<String> = holders.iter().map(|l| l.owner.clone()).collect();
        owners.sort();
        owners.dedup();
        owners.push(cfg.owner.clone());
        let sessions = self.store.live_owners(&owners).await?;
        for LeaseRecord {
            company,
            owner: holder,
            ..
        } in holders
        {
            let gone = (cfg.holder_gone)(&holder)
                || sessions
                    .as_ref()
                    .is_some_and(|live| !live.contains(&holder));
            if gone
                && let Some(fence) = self
                    .store
                    .take_over(&company, &holder, &cfg.owner, now, until)
                    .await?
            {
                tracing::info!(company = %company, holder = %holder, "took over a lease whose holder is gone");
                fences.insert(company, fence);
            }
        }
        Ok(fences)
    }

    /// Whether closing `company` through the boundary at `until` runs a `rate` step.
    fn rates(
        &self,
        company: &Company,
        until: DateTime<Utc>,
        finished: Option<&BTreeSet<(u32, Step)>>,
    ) -> bool {
        if self.options.only.is_some_and(|only| only != Step::Rate) {
            return false;
        }
        let grid = company.grid();
        let Some(last) = grid.period_index(until) else {
            return true;
        };
        let open = finished.map_or(0, next_open);
        (open..=last).any(|k| finished.is_none_or(|f| !f.contains(&(k, Step::Rate))))
    }

    /// Reads, closes and commits the companies of `chunk`; returns those to close again.
    async fn close(
        &self,
        chunk: Vec<(CompanyId, DateTime<Utc>)>,
        fences: &BTreeMap<CompanyId, i64>,
        report: &mut DueReport,
    ) -> anyhow::Result<Vec<(CompanyId, DateTime<Utc>)>> {
        crate::failpoint::error("close-chunk")?;
        let ids: Vec<CompanyId> = chunk.iter().map(|(c, _)| c.clone()).collect();
        // The chunk that starts with a given company only (`close-chunk:ID`).
        if let Some(first) = ids.first() {
            crate::failpoint::error(&format!("close-chunk:{first}"))?;
        }
        // Read now that the companies are ours: another instance may have closed some since.
        let mut done = finished_steps(self.store, &ids).await?;
        // Only a `rate` step reads unrated usage: a run of the later steps of a boundary
        // whose usage is rated reads none.
        let rating: Vec<(CompanyId, DateTime<Utc>)> = chunk
            .iter()
            .filter(|(c, until)| self.rates(&self.directory[c], *until, done.get(c)))
            .cloned()
            .collect();
        let mut histories = load_histories(self.store, &ids, &rating).await?;
        // The chunk's own master data, read after its intake versions: a scenario loaded
        // since changes them, and the commit is refused and the close done again.
        let world = self.store.world_of(Some(&ids)).await?;
        // The usage email of a company's first open boundary compares with the close before.
        let spend_from: Vec<(CompanyId, u32)> = ids
            .iter()
            .map(|c| {
                let open = done.get(c).map_or(0, next_open);
                (c.clone(), open.saturating_sub(1))
            })
            .collect();
        let mut spend = self.store.usage_spend(&spend_from).await?;
        let mut plans = Vec::with_capacity(chunk.len());
        for id in &ids {
            let lease = self.options.lease.as_ref().map(|cfg| Lease {
                owner: cfg.owner.clone(),
                fence: fences[id],
                ttl_micros: cfg.ttl.num_microseconds().unwrap_or(i64::MAX),
            });
            let history = histories.remove(id).unwrap_or_default();
            // Companies are never removed from the master data.
            let company = world
                .companies
                .get(id)
                .ok_or_else(|| anyhow::anyhow!("company {id} has no master data"))?;
            let mut close = CompanyClose::new(
                &world,
                company,
                &history.events,
                history.ledger,
                history.unrated,
            )
            .with_spend(spend.remove(id).unwrap_or_default());
            let cx = PlanContext {
                as_of: self.as_of,
                last: self
                    .options
                    .last_boundary
                    .as_ref()
                    .and_then(|caps| caps.get(id).copied()),
                only: self.options.only,
                lease: lease.as_ref(),
                intake_version: history.intake_version,
                clock: self.clock,
            };
            plans.push(plan_company(
                &mut close,
                done.remove(id).unwrap_or_default(),
                &cx,
            ));
        }
        let changed = commit_plans(self.store, plans, self.clock, report).await?;
        Ok(chunk
            .into_iter()
            .filter(|(c, _)| changed.contains(c))
            .collect())
    }
}

/// The end of a lease taken at `now`, saturating instead of overflowing.
fn lease_until(now: DateTime<Utc>, ttl: chrono::Duration) -> DateTime<Utc> {
    now.checked_add_signed(ttl)
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// Renews the leases of `companies` every third of their time to live, for as long as it is
/// polled: the work it runs beside can take longer than a lease.
async fn heartbeat<S: Store>(
    store: &S,
    companies: &[CompanyId],
    cfg: &LeaseConfig,
    clock: Clock<'_>,
) -> anyhow::Result<Vec<(CompanyId, DateTime<Utc>)>> {
    let period = (cfg.ttl / 3)
        .to_std()
        .unwrap_or(std::time::Duration::from_secs(1))
        .max(std::time::Duration::from_millis(100));
    loop {
        tokio::time::sleep(period).await;
        if let Err(e) = store
            .renew_leases(companies, &cfg.owner, lease_until(clock(), cfg.ttl))
            .await
        {
            // The commit renews and checks the lease anyway; a missed beat only risks a
            // take-over, which fencing makes safe.
            tracing::warn!("lease heartbeat failed: {e:#}");
        }
    }
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
/// them first, one's lease was taken over, or one's history grew, each company is committed
/// on its own instead, so that only that one is left out. Returns the companies whose history
/// grew since it was read: they must be closed again.
async fn commit_plans<S: Store>(
    store: &S,
    plans: Vec<CompanyPlan>,
    clock: Clock<'_>,
    report: &mut DueReport,
) -> anyhow::Result<BTreeSet<CompanyId>> {
    let all: Vec<_> = plans.iter().flat_map(|p| p.steps.iter().cloned()).collect();
    let together = store.commit_steps(&all).await? == CommitOutcome::Committed;
    let mut changed = BTreeSet::new();
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
                CommitOutcome::Changed { .. } => {
                    changed.insert(plan.company.clone());
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
    Ok(changed)
}

/// What a company's close reads.
#[derive(Default)]
struct History {
    intake_version: i64,
    events: Vec<Event>,
    ledger: Vec<LedgerEntry>,
    unrated: Vec<Unrated>,
}

/// The histories of `companies`, read in a few queries; the unrated usage of those in
/// `rating`, each up to the boundary `until` it gives. The intake versions are read first, so
/// that anything taken in after them makes the commit refuse the close.
async fn load_histories<S: Store>(
    store: &S,
    companies: &[CompanyId],
    rating: &[(CompanyId, DateTime<Utc>)],
) -> anyhow::Result<BTreeMap<CompanyId, History>> {
    let mut out: BTreeMap<CompanyId, History> = BTreeMap::new();
    if companies.is_empty() {
        return Ok(out);
    }
    for (c, version) in store.intake_versions(companies).await? {
        out.entry(c).or_default().intake_version = version;
    }
    for e in store.accepted_events(Some(companies)).await? {
        out.entry(e.company.clone()).or_default().events.push(e);
    }
    for r in store.ledger(Some(companies)).await? {
        out.entry(r.company).or_default().ledger.push(r.entry);
    }
    for u in store.unrated_usage(rating).await? {
        out.entry(u.company.clone()).or_default().unrated.push(u);
    }
    Ok(out)
}
