//! Re-running closed cycles for finance (SPEC §8): one boundary of one company, or every
//! closed boundary in a date range. The command line and a replay's `rerun` events take this
//! same path. Each re-run is its own transaction; racing re-runs issue each adjustment once
//! (the adjustment's number is claimed), and the loser computes again from what is issued.

use std::collections::BTreeSet;

use chrono::{DateTime, NaiveDate, Utc};

use crate::domain::close::{CompanyClose, Step};
use crate::domain::grid::local_midnight;
use crate::domain::invoice::Document;
use crate::domain::model::{Company, Event, EventKind, World};
use crate::domain::money::Currency;
use crate::domain::rerun::{
    AdjustmentNote, Finding, check_reason, closed_boundary, corrections_cutoff, find,
    ledger_as_closed,
};
use crate::domain::wallets::LedgerEntry;
use crate::domain::words::CompanyId;
use crate::store::{Adjustment, RerunCommit, RerunRun, Store};

use super::Clock;
use super::close::next_open;

/// How often a re-run that lost the race for its adjustment's number is computed again.
const ATTEMPTS: usize = 5;

/// What finance asks of a re-run, whichever boundaries it covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RerunOptions {
    /// Why: recorded with the adjustment; may not be empty.
    pub reason: String,
    /// Who: recorded with the adjustment.
    pub by: String,
    /// Only compute and report the difference; write nothing.
    pub dry_run: bool,
    /// The re-run's instant: the price corrections recorded up to it count, and a card
    /// company's adjustment is charged then.
    pub at: DateTime<Utc>,
}

/// Why a re-run did not happen.
#[derive(Debug, thiserror::Error)]
pub enum RerunError {
    /// The request can't be granted (unknown company, a date that is not a closed boundary,
    /// no reason): bad input, nothing was written.
    #[error("{0}")]
    Refused(String),
    /// Anything else; nothing was written.
    #[error(transparent)]
    Failed(#[from] anyhow::Error),
}

/// How a re-run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The boundary was billed right; a real re-run recorded `identical`.
    Identical,
    /// A dry run found a difference; nothing was written.
    WouldAdjust,
    /// The adjustment in the finding was issued.
    Adjusted,
}

impl Outcome {
    /// How the outcome reads in logs and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Identical => "identical",
            Outcome::WouldAdjust => "would adjust",
            Outcome::Adjusted => "adjusted",
        }
    }
}

/// What one re-run found and did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RerunReport {
    /// The company.
    pub company: CompanyId,
    /// The boundary's local date.
    pub boundary: NaiveDate,
    /// The comparison, and the adjustment it issues or would issue.
    pub finding: Finding,
    /// How it ended.
    pub outcome: Outcome,
}

/// A company's history as a re-run reads it once, for any number of its boundaries.
struct History {
    events: Vec<Event>,
    ledger: Vec<LedgerEntry>,
}

impl History {
    async fn read<S: Store>(store: &S, company: &CompanyId) -> anyhow::Result<History> {
        let ids = std::slice::from_ref(company);
        Ok(History {
            events: store.accepted_events(Some(ids)).await?,
            ledger: store
                .ledger(Some(ids))
                .await?
                .into_iter()
                .map(|r| r.entry)
                .collect(),
        })
    }
}

/// The latest boundary of `company` whose every step is done.
async fn closed_through<S: Store>(store: &S, company: &CompanyId) -> anyhow::Result<Option<u32>> {
    let finished: BTreeSet<(u32, Step)> = store
        .progress(Some(std::slice::from_ref(company)))
        .await?
        .into_iter()
        .map(|s| (s.boundary_index, s.step))
        .collect();
    Ok(next_open(&finished).checked_sub(1))
}

/// Re-runs boundary `boundary` of `company`: rebuilds its document with the corrections
/// recorded up to the re-run, compares it with what was billed, and (unless a dry run)
/// records the outcome, issuing the adjustment when there is a difference.
pub async fn rerun<S: Store>(
    store: &S,
    world: &World,
    company: &str,
    boundary: NaiveDate,
    options: &RerunOptions,
    clock: Clock<'_>,
) -> Result<RerunReport, RerunError> {
    check_reason(&options.reason).map_err(RerunError::Refused)?;
    let company = world
        .companies
        .get(company)
        .ok_or_else(|| RerunError::Refused(format!("unknown company {company:?}")))?;
    let closed = closed_through(store, &company.id).await?;
    let k = closed_boundary(company, boundary, closed).map_err(RerunError::Refused)?;
    let history = History::read(store, &company.id).await?;
    rerun_boundary(store, world, company, &history, k, options, clock).await
}

/// Re-runs every closed boundary of every company whose local date lies in `[from, to]`,
/// companies in id order, each boundary in its own transaction. A boundary that fails is
/// reported with its error and the others go on.
pub async fn rerun_all<S: Store>(
    store: &S,
    world: &World,
    (from, to): (NaiveDate, NaiveDate),
    options: &RerunOptions,
    clock: Clock<'_>,
) -> Result<Vec<Result<RerunReport, (CompanyId, NaiveDate, String)>>, RerunError> {
    check_reason(&options.reason).map_err(RerunError::Refused)?;
    if to < from {
        return Err(RerunError::Refused(format!(
            "--to {to} is before --from {from}"
        )));
    }
    let mut out = Vec::new();
    for company in world.companies.values() {
        let grid = company.grid();
        // The first boundary on or after `from`.
        let first = match grid.period_index(local_midnight(company.time_zone, from)) {
            None => 0,
            Some(p) if grid.boundary_date(p) >= from => p,
            Some(p) => p + 1,
        };
        let Some(last) = closed_through(store, &company.id).await? else {
            continue;
        };
        if first > last || grid.boundary_date(first) > to {
            continue;
        }
        let history = History::read(store, &company.id).await?;
        for k in (first..=last).take_while(|&k| grid.boundary_date(k) <= to) {
            let done = rerun_boundary(store, world, company, &history, k, options, clock).await;
            out.push(done.map_err(|e| (company.id.clone(), grid.boundary_date(k), e.to_string())));
        }
    }
    Ok(out)
}

/// Performs a `rerun` event at its instant through the same path as the command line, if
/// it was accepted when taken in (a rejected or duplicate event did nothing; its verdict is
/// recorded). The adjustment records the event's reference as who asked for it. `None` when
/// the event is not an accepted re-run.
pub async fn perform_event<S: Store>(
    store: &S,
    world: &World,
    event: &Event,
    clock: Clock<'_>,
) -> anyhow::Result<Option<Result<RerunReport, String>>> {
    let EventKind::Rerun {
        boundary,
        reason,
        dry_run,
    } = &event.kind
    else {
        return Ok(None);
    };
    let accepted = store
        .accepted_events(Some(std::slice::from_ref(&event.company)))
        .await?;
    if !accepted.contains(event) {
        return Ok(None);
    }
    let options = RerunOptions {
        reason: reason.clone(),
        by: event.reference(),
        dry_run: *dry_run,
        at: event.at,
    };
    match rerun(store, world, &event.company, *boundary, &options, clock).await {
        Ok(report) => {
            let currency = &world.companies[&event.company].currency;
            log_report(&report, &options, currency);
            Ok(Some(Ok(report)))
        }
        Err(RerunError::Refused(reason)) => {
            tracing::error!(event = %event.reference(), "re-run not made: {reason}");
            Ok(Some(Err(reason)))
        }
        Err(RerunError::Failed(e)) => Err(e),
    }
}

/// One log line for the outcome, and one for each line that differs: what a dry run in a
/// replay shows of its difference.
fn log_report(report: &RerunReport, options: &RerunOptions, currency: &Currency) {
    let f = &report.finding;
    let number = f.adjustment.as_ref().map_or("", |d| d.number.as_str());
    tracing::info!(
        company = %report.company,
        boundary = %report.boundary,
        dry_run = options.dry_run,
        outcome = report.outcome.as_str(),
        adjustment = number,
        lines = f.deltas.len(),
        billed = %currency.format_amount(f.billed),
        rebuilt = %currency.format_amount(f.rebuilt),
        delta = %currency.format_amount(f.total()),
        "re-run of {}", f.invoice
    );
    for d in &f.deltas {
        tracing::info!(
            invoice = %f.invoice,
            kind = d.key.kind.as_str(),
            office = d.key.office.as_deref().unwrap_or(""),
            product = %d.key.product,
            source = %d.key.source,
            billed = %currency.format_amount(d.before),
            rebuilt = %currency.format_amount(d.after),
            delta = %currency.format_amount(d.delta()),
            "re-run difference"
        );
    }
}

/// Re-runs boundary `k` of `company` from its `history`, retrying when another re-run issued
/// an adjustment of the same boundary first.
async fn rerun_boundary<S: Store>(
    store: &S,
    world: &World,
    company: &Company,
    history: &History,
    k: u32,
    options: &RerunOptions,
    clock: Clock<'_>,
) -> Result<RerunReport, RerunError> {
    let grid = company.grid();
    let boundary_at = grid.boundary_at(k);
    if options.at < boundary_at {
        return Err(RerunError::Refused(format!(
            "a re-run at {} can't precede boundary {} of {}",
            options.at.to_rfc3339(),
            grid.boundary_date(k),
            company.id
        )));
    }
    let started_at = clock();
    let rebuilt = rebuild(store, world, company, history, k, options.at).await?;
    for _ in 0..ATTEMPTS {
        let issued = store.issued_at(&company.id, k).await?;
        let adjustments: Vec<Document> = issued
            .adjustments
            .iter()
            .map(|a| a.document.clone())
            .collect();
        let finding = find(
            company,
            k,
            issued.document.as_ref(),
            &adjustments,
            rebuilt.as_ref(),
            options.at,
        );
        let report = |outcome| RerunReport {
            company: company.id.clone(),
            boundary: grid.boundary_date(k),
            finding: finding.clone(),
            outcome,
        };
        let outcome = match (finding.identical(), options.dry_run) {
            (true, _) => Outcome::Identical,
            (false, true) => Outcome::WouldAdjust,
            (false, false) => Outcome::Adjusted,
        };
        if options.dry_run {
            return Ok(report(outcome));
        }
        let run = RerunRun {
            company: company.id.clone(),
            boundary_index: k,
            boundary_at,
            boundary: grid.boundary_date(k),
            started_at,
            finished_at: clock(),
            adjustment: finding.adjustment.clone().map(|document| Adjustment {
                document,
                note: AdjustmentNote {
                    adjusts: finding.invoice.clone(),
                    reason: options.reason.clone(),
                    by: options.by.clone(),
                    at: options.at,
                },
            }),
            card_charge: finding.card_charge.clone(),
        };
        match store.record_rerun(&run).await? {
            RerunCommit::Recorded => return Ok(report(outcome)),
            RerunCommit::Raced => {
                tracing::info!(
                    company = %company.id,
                    boundary = %grid.boundary_date(k),
                    "another re-run issued an adjustment of this boundary first: comparing again"
                );
            }
        }
    }
    Err(RerunError::Failed(anyhow::anyhow!(
        "other re-runs of {} at {} kept issuing adjustments first",
        company.id,
        grid.boundary_date(k)
    )))
}

/// The document at boundary `k` rebuilt from what it was built from, with the corrections
/// recorded up to `at`.
async fn rebuild<S: Store>(
    store: &S,
    world: &World,
    company: &Company,
    history: &History,
    k: u32,
    at: DateTime<Utc>,
) -> anyhow::Result<Option<Document>> {
    let rated_later = store.rated_late_after(&company.id, k).await?;
    let ledger = ledger_as_closed(history.ledger.clone(), &rated_later);
    let close = CompanyClose::new(world, company, &history.events, ledger, Vec::new());
    let (document, _) = close
        .document_at(k, corrections_cutoff(at))
        .map_err(anyhow::Error::msg)?;
    Ok(document)
}
