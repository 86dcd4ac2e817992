//! Replaying a fixture: a simulated clock walks through every boundary and event, doing at
//! each instant exactly what the scheduler and the feeds would do then: first the
//! boundaries due (companies in id order, all steps of one before the next), then the events
//! in file order, then the usage rows in file order. A `rerun` event is made at its instant,
//! once the events before it are taken in, through the same code as `billrun rerun`.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use crate::domain::model::EventKind;
use crate::domain::words::CompanyId;
use crate::fixture::Fixture;
use crate::jobs::intake::{Intake, IntakeReport, Taken, USAGE_CHUNK, take_in};
use crate::jobs::rerun::perform_event;
use crate::jobs::{DueOptions, run_due};
use crate::mail::{MailSettings, Sender, deliver_due};
use crate::store::Store;

/// What a replay did.
#[derive(Debug, Clone, Default)]
pub struct ReplayReport {
    /// The simulated clock's last instant.
    pub until: Option<DateTime<Utc>>,
    /// Boundaries closed.
    pub boundaries: usize,
    /// Events taken in.
    pub events: IntakeReport,
    /// Usage rows taken in.
    pub usage: IntakeReport,
    /// Companies whose close failed.
    pub failed: Vec<(CompanyId, String)>,
    /// `rerun` events made (dry runs included; rejected ones are not made).
    pub reruns: usize,
}

#[derive(Default)]
struct Instant {
    boundaries: bool,
    events: Vec<usize>,
    usage: Vec<usize>,
}

/// Per company, the last boundary a replay closes: with `until`, every boundary at or before
/// it; without, the first boundary strictly after the latest instant in the fixture.
pub fn last_boundaries(
    fixture: &Fixture,
    until: Option<DateTime<Utc>>,
) -> BTreeMap<CompanyId, Option<u32>> {
    let usage_instants = fixture
        .usage
        .iter()
        .flat_map(|l| [l.occurred_at, l.arrival].into_iter().flatten());
    let latest = fixture
        .events
        .iter()
        .map(|e| e.at)
        .chain(usage_instants)
        .max();
    fixture
        .world
        .companies
        .values()
        .map(|c| {
            let grid = c.grid();
            let last = match (until, latest) {
                (Some(t), _) => grid.period_index(t),
                (None, Some(t)) => Some(grid.first_boundary_after(t)),
                (None, None) => Some(0),
            };
            (c.id.clone(), last)
        })
        .collect()
}

/// Loads `fixture` into `store` (which must be fresh) and drives it through time.
pub async fn replay<S: Store>(
    store: &S,
    fixture: &Fixture,
    until: Option<DateTime<Utc>>,
) -> anyhow::Result<ReplayReport> {
    replay_with_mail(store, fixture, until, None, None).await
}

/// [`replay`], delivering the usage emails each boundary queues as the scheduler would,
/// right after the closes, at the simulated instant; `progress` counts the instants walked.
pub async fn replay_with_mail<S: Store>(
    store: &S,
    fixture: &Fixture,
    until: Option<DateTime<Utc>>,
    mail: Option<&MailSettings>,
    progress: Option<&indicatif::ProgressBar>,
) -> anyhow::Result<ReplayReport> {
    store.migrate().await?;
    if !store.world().await?.companies.is_empty() {
        anyhow::bail!("replay needs a fresh database, and this one already holds companies");
    }
    store.save_world(&fixture.world).await?;

    let last = last_boundaries(fixture, until);
    let mut instants: BTreeMap<DateTime<Utc>, Instant> = BTreeMap::new();
    for company in fixture.world.companies.values() {
        let grid = company.grid();
        if let Some(last) = last[&company.id] {
            for k in 0..=last {
                instants.entry(grid.boundary_at(k)).or_default().boundaries = true;
            }
        }
    }
    for (i, e) in fixture.events.iter().enumerate() {
        if until.is_none_or(|u| e.at <= u) {
            instants.entry(e.at).or_default().events.push(i);
        }
    }
    // A row whose arrival can't be read is taken in (and rejected) at the first instant.
    let first = instants
        .keys()
        .next()
        .copied()
        .unwrap_or(DateTime::<Utc>::MIN_UTC);
    for (i, line) in fixture.usage.iter().enumerate() {
        let at = line.arrival.unwrap_or(first);
        if until.is_none_or(|u| at <= u) {
            instants.entry(at).or_default().usage.push(i);
        }
    }

    let filter = DueOptions {
        last_boundary: Some(
            last.iter()
                .filter_map(|(c, k)| k.map(|k| (c.clone(), k)))
                .collect(),
        ),
        ..Default::default()
    };
    // Between two boundary instants nothing is closed, and taking in usage writes nothing that
    // events read (usage is debited only by closes), so the events and then the usage rows of
    // the whole stretch can be taken in as two batches, each in arrival order: the same
    // outcome as instant by instant, at the cost of two transactions per stretch.
    let mut report = ReplayReport::default();
    let mut events = Vec::new();
    let mut usage = Vec::new();
    let bar = progress
        .cloned()
        .unwrap_or_else(indicatif::ProgressBar::hidden);
    bar.set_length(instants.len() as u64);
    for (&t, work) in &instants {
        bar.inc(1);
        if work.boundaries {
            take_in_pending(store, fixture, &mut events, &mut usage, &mut report).await?;
            let clock = move || t;
            let options = DueOptions {
                companies: Some(
                    fixture
                        .world
                        .companies
                        .values()
                        .filter(|c| c.grid().boundary_index_at(t).is_some())
                        .map(|c| c.id.clone())
                        .collect(),
                ),
                ..filter.clone()
            };
            let due = run_due(store, &fixture.world.companies, t, &options, &clock).await?;
            report.boundaries += due.closed.len();
            report.failed.extend(due.failed);
            if let Some(mail) = mail {
                let sender = Sender {
                    owner: "replay".to_string(),
                    claim: chrono::Duration::hours(1),
                };
                deliver_due(store, &fixture.world.companies, mail, &sender, t).await?;
            }
        }
        for &i in &work.events {
            events.push(i);
            if matches!(fixture.events[i].kind, EventKind::Rerun { .. }) {
                // Made at its instant: the events up to it are taken in (usage waits, as it
                // does for every event of the stretch), then the re-run is made.
                take_in_pending(store, fixture, &mut events, &mut Vec::new(), &mut report).await?;
                let clock = move || t;
                if let Some(done) =
                    perform_event(store, &fixture.world, &fixture.events[i], &clock).await?
                {
                    report.reruns += usize::from(done.is_ok());
                }
            }
        }
        usage.extend(work.usage.iter().copied());
        report.until = Some(t);
    }
    take_in_pending(store, fixture, &mut events, &mut usage, &mut report).await?;
    bar.finish();
    Ok(report)
}

/// Takes in the pending events, then the pending usage rows, in arrival order.
async fn take_in_pending<S: Store>(
    store: &S,
    fixture: &Fixture,
    events: &mut Vec<usize>,
    usage: &mut Vec<usize>,
    report: &mut ReplayReport,
) -> anyhow::Result<()> {
    if events.is_empty() && usage.is_empty() {
        return Ok(());
    }
    let events: Vec<_> = events
        .drain(..)
        .map(|i| fixture.events[i].clone())
        .collect();
    let usage: Vec<_> = usage.drain(..).map(|i| fixture.usage[i].clone()).collect();
    let intake = Intake {
        world: &fixture.world,
        save_world: false,
        events: &events,
        usage_companies: usage.iter().map(|l| l.company.clone()).collect(),
        usage: Box::new(usage.into_iter().map(Ok)),
        files: &[],
        usage_chunk: USAGE_CHUNK,
    };
    match take_in(store, intake).await? {
        Taken::Recorded { events, usage } => {
            report.events.add(&events);
            report.usage.add(&usage);
            Ok(())
        }
        Taken::FilesTaken(_) => anyhow::bail!("a replay records no files"),
    }
}
