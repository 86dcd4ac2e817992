//! Taking in events and usage rows: in one transaction, the store locks the companies named,
//! hands over what they hold, the domain judges each item in arrival order, and the verdicts,
//! rejections and what the accepted items write are recorded together, or nothing is.

use std::collections::{BTreeMap, BTreeSet};

use crate::domain::intake::{CompanyIntake, Verdict};
use crate::domain::model::{Event, World};
use crate::domain::rating::RateCard;
use crate::domain::usage::{UsageLine, judge};
use crate::domain::words::CompanyId;
use crate::store::{
    EventBatch, IntakeOutcome, IntakeRequest, IntakeSnapshot, IntakeWrites, LoadedFile,
    RecordedEvent, Rejection, Store, UsageBatch,
};

/// What taking in a batch did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IntakeReport {
    /// Items accepted.
    pub accepted: usize,
    /// Items rejected (each with a row in `rejections`).
    pub rejected: usize,
    /// Items already recorded with the same id and content.
    pub duplicates: usize,
}

impl IntakeReport {
    /// Adds another report's counts.
    pub fn add(&mut self, other: &IntakeReport) {
        self.accepted += other.accepted;
        self.rejected += other.rejected;
        self.duplicates += other.duplicates;
    }
}

/// One intake: master data (if a scenario came with it), events and usage, in arrival order,
/// and the files they came from.
pub struct Intake<'a> {
    /// The world the items refer to.
    pub world: &'a World,
    /// Record `world` as the master data first.
    pub save_world: bool,
    /// Events, in arrival order.
    pub events: &'a [Event],
    /// Usage rows, in arrival order.
    pub usage: &'a [UsageLine],
    /// The files taken in, recorded so that the same content is never taken in twice.
    pub files: &'a [LoadedFile],
}

/// What an intake did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Taken {
    /// The items were judged and recorded.
    Recorded {
        /// The events.
        events: IntakeReport,
        /// The usage rows.
        usage: IntakeReport,
    },
    /// Another load recorded these files first: nothing was written.
    FilesTaken(Vec<String>),
}

/// Judges and records an intake in one transaction.
pub async fn take_in<S: Store>(store: &S, intake: &Intake<'_>) -> anyhow::Result<Taken> {
    let world = intake.world;
    let mut companies: BTreeSet<CompanyId> =
        intake.events.iter().map(|e| e.company.clone()).collect();
    companies.extend(
        intake
            .usage
            .iter()
            .filter_map(|l| world.companies.get(l.company.as_str()))
            .map(|c| c.id.clone()),
    );
    let companies: Vec<CompanyId> = companies.into_iter().collect();
    let usage_ids: Vec<String> = intake.usage.iter().map(|l| l.id.clone()).collect();
    let request = IntakeRequest {
        world: intake.save_world.then_some(world),
        files: intake.files,
        companies: &companies,
        usage_ids: &usage_ids,
    };
    let mut reports = (IntakeReport::default(), IntakeReport::default());
    let outcome = store
        .take_in(request, |snapshot| {
            let (writes, events, usage) = judge_all(world, intake, snapshot)?;
            reports = (events, usage);
            Ok(writes)
        })
        .await?;
    Ok(match outcome {
        IntakeOutcome::Recorded => Taken::Recorded {
            events: reports.0,
            usage: reports.1,
        },
        IntakeOutcome::FilesTaken(names) => Taken::FilesTaken(names),
    })
}

/// Judges every event, then every usage row, against what the store holds.
fn judge_all(
    world: &World,
    intake: &Intake<'_>,
    snapshot: &IntakeSnapshot,
) -> anyhow::Result<(IntakeWrites, IntakeReport, IntakeReport)> {
    let mut past: BTreeMap<&CompanyId, Vec<Event>> = BTreeMap::new();
    for e in &snapshot.events {
        past.entry(&e.company).or_default().push(e.clone());
    }
    let mut judges: BTreeMap<CompanyId, CompanyIntake<'_>> = BTreeMap::new();
    let named = intake.events.iter().map(|e| e.company.as_str()).chain(
        intake
            .usage
            .iter()
            .map(|l| l.company.as_str())
            .filter(|c| world.companies.contains_key(*c)),
    );
    for id in named {
        if judges.contains_key(id) {
            continue;
        }
        let company = world
            .companies
            .get(id)
            .ok_or_else(|| anyhow::anyhow!("unknown company {id}"))?;
        let history = past.remove(&company.id).unwrap_or_default();
        let closed = snapshot.closed.get(&company.id).copied();
        let judge =
            CompanyIntake::new(world, company, history, closed).map_err(anyhow::Error::msg)?;
        judges.insert(company.id.clone(), judge);
    }
    let (events, event_report) = judge_events(intake.events, &mut judges);
    let (usage, usage_report) = judge_usage(world, intake.usage, &judges, &snapshot.usage)?;
    Ok((IntakeWrites { events, usage }, event_report, usage_report))
}

fn judge_events(
    events: &[Event],
    judges: &mut BTreeMap<CompanyId, CompanyIntake<'_>>,
) -> (EventBatch, IntakeReport) {
    let mut report = IntakeReport::default();
    let mut batch = EventBatch::default();
    for event in events {
        let Some(judge) = judges.get_mut(&event.company) else {
            continue;
        };
        let rejection = match judge.judge(event) {
            Verdict::Duplicate => {
                report.duplicates += 1;
                continue;
            }
            Verdict::Rejected(reason) => {
                report.rejected += 1;
                Some(reason)
            }
            Verdict::Accepted {
                ledger,
                card_charge,
            } => {
                report.accepted += 1;
                batch
                    .ledger
                    .extend(ledger.map(|e| (event.company.clone(), e)));
                batch.card_charges.extend(card_charge);
                None
            }
        };
        batch.events.push(RecordedEvent {
            event: event.clone(),
            rejection,
        });
    }
    (batch, report)
}

fn judge_usage(
    world: &World,
    lines: &[UsageLine],
    judges: &BTreeMap<CompanyId, CompanyIntake<'_>>,
    recorded: &BTreeMap<String, String>,
) -> anyhow::Result<(UsageBatch, IntakeReport)> {
    let mut report = IntakeReport::default();
    let mut batch = UsageBatch::default();
    if lines.is_empty() {
        return Ok((batch, report));
    }
    let card = RateCard::new(&world.rates)
        .map_err(|d| anyhow::anyhow!("the rate card has duplicate entries: {d}"))?;
    let mut accepted = recorded.clone();
    for line in lines {
        let company = world.companies.get(line.company.as_str());
        let verdict = match (company, &line.input) {
            (None, _) => Err(format!("unknown company {}", line.company)),
            (Some(_), Err(reason)) => Err(reason.clone()),
            (Some(c), Ok(input)) => judge(
                input,
                (&line.source, line.line),
                world,
                c,
                judges[&c.id].book(),
                &card,
                &accepted,
            ),
        };
        match verdict {
            Ok(Some(usage)) => {
                accepted.insert(usage.id.clone(), usage.content.clone());
                batch.accepted.push(usage);
                report.accepted += 1;
            }
            Ok(None) => report.duplicates += 1,
            Err(reason) => {
                batch.rejections.push(Rejection {
                    company: company.map(|c| c.id.clone()),
                    source: line.source.clone(),
                    line: line.line,
                    id: line.id.clone(),
                    reason,
                });
                report.rejected += 1;
            }
        }
    }
    Ok((batch, report))
}
