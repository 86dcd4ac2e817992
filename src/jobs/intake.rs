//! Taking in events and usage rows: the domain judges each against what the store already
//! holds, and the batch is recorded in one transaction with its verdicts, rejections and what
//! the accepted items write.

use std::collections::{BTreeMap, BTreeSet};

use crate::domain::intake::{CompanyIntake, Verdict};
use crate::domain::licenses::LicenseBook;
use crate::domain::model::{Event, World};
use crate::domain::rating::RateCard;
use crate::domain::usage::{UsageLine, judge};
use crate::domain::words::CompanyId;
use crate::store::{EventBatch, RecordedEvent, Rejection, Store, UsageBatch, latest_closes};

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

/// Judges `events` (in arrival order) against what the store holds and records them.
pub async fn take_in_events<S: Store>(
    store: &S,
    world: &World,
    events: &[Event],
) -> anyhow::Result<IntakeReport> {
    let mut report = IntakeReport::default();
    if events.is_empty() {
        return Ok(report);
    }
    let companies: BTreeSet<CompanyId> = events.iter().map(|e| e.company.clone()).collect();
    let companies: Vec<CompanyId> = companies.into_iter().collect();
    let mut past: BTreeMap<CompanyId, Vec<Event>> = BTreeMap::new();
    for e in store.accepted_events(Some(&companies)).await? {
        past.entry(e.company.clone()).or_default().push(e);
    }
    let closed = latest_closes(&store.progress(Some(&companies)).await?);
    let mut judges: BTreeMap<CompanyId, CompanyIntake<'_>> = BTreeMap::new();
    for id in &companies {
        let company = world
            .companies
            .get(id)
            .ok_or_else(|| anyhow::anyhow!("unknown company {id}"))?;
        let intake = CompanyIntake::new(
            world,
            company,
            past.remove(id).unwrap_or_default(),
            closed.get(id).copied(),
        )
        .map_err(anyhow::Error::msg)?;
        judges.insert(id.clone(), intake);
    }
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
    store.record_events(&batch).await?;
    Ok(report)
}

/// Judges usage `lines` (in arrival order) against the recorded world and records them.
pub async fn take_in_usage<S: Store>(
    store: &S,
    world: &World,
    lines: &[UsageLine],
) -> anyhow::Result<IntakeReport> {
    let mut report = IntakeReport::default();
    if lines.is_empty() {
        return Ok(report);
    }
    let card = RateCard::new(&world.rates)
        .map_err(|d| anyhow::anyhow!("the rate card has duplicate entries: {d}"))?;
    let ids: Vec<String> = lines.iter().map(|l| l.id.clone()).collect();
    let mut accepted: BTreeMap<String, String> =
        store.usage_contents(&ids).await?.into_iter().collect();
    let companies: BTreeSet<CompanyId> = lines
        .iter()
        .filter(|l| world.companies.contains_key(l.company.as_str()))
        .map(|l| CompanyId::from(l.company.as_str()))
        .collect();
    let companies: Vec<CompanyId> = companies.into_iter().collect();
    let mut events: BTreeMap<CompanyId, Vec<Event>> = BTreeMap::new();
    for e in store.accepted_events(Some(&companies)).await? {
        events.entry(e.company.clone()).or_default().push(e);
    }
    let mut books: BTreeMap<CompanyId, LicenseBook> = BTreeMap::new();
    let mut batch = UsageBatch::default();
    for line in lines {
        let company = world.companies.get(line.company.as_str());
        let verdict = match company {
            None => Err(format!("unknown company {}", line.company)),
            Some(c) => {
                if !books.contains_key(&c.id) {
                    // Which product each user held when: every accepted event applied.
                    let past = events.get(&c.id).map(Vec::as_slice).unwrap_or_default();
                    let book = LicenseBook::after(world, c, past).map_err(anyhow::Error::msg)?;
                    books.insert(c.id.clone(), book);
                }
                line.input
                    .as_ref()
                    .map_err(String::clone)
                    .and_then(|input| {
                        judge(
                            input,
                            (&line.source, line.line),
                            world,
                            c,
                            &books[&c.id],
                            &card,
                            &accepted,
                        )
                    })
            }
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
    store.record_usage(&batch).await?;
    Ok(report)
}
