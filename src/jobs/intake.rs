//! Taking in events and usage rows: in one transaction, the store locks the companies named,
//! hands over what they hold, the domain judges each item in arrival order, and the verdicts,
//! rejections and what the accepted items write are recorded together, or nothing is.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::domain::intake::{CompanyIntake, Verdict};
use crate::domain::licenses::{Holdings, LicenseBook};
use crate::domain::model::{Event, World};
use crate::domain::rating::RateCard;
use crate::domain::usage::{UsageLine, judge};
use crate::domain::words::CompanyId;
use crate::store::{
    EventBatch, IntakeJudge, IntakeOutcome, IntakeRequest, IntakeSnapshot, LoadedFile,
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

/// Usage rows taken in a chunk at a time: enough that each company has a run of rows in
/// most chunks (they are stored by company within a chunk), few enough to hold.
pub const USAGE_CHUNK: usize = 50_000;

/// One intake: master data (if a scenario came with it), events and usage, in arrival order,
/// and the files they came from.
pub struct Intake<'a> {
    /// The world the items refer to.
    pub world: &'a World,
    /// Record `world` as the master data first.
    pub save_world: bool,
    /// Events, in arrival order.
    pub events: &'a [Event],
    /// Usage rows, in arrival order, read as they are taken in; a row that can't be read at
    /// all fails the intake.
    pub usage: Box<dyn Iterator<Item = anyhow::Result<UsageLine>> + Send + 'a>,
    /// The `company` column of every usage row, once each (they are locked up front).
    pub usage_companies: BTreeSet<String>,
    /// The files taken in, recorded so that the same content is never taken in twice.
    pub files: &'a [LoadedFile],
    /// Usage rows judged and written at a time: [`USAGE_CHUNK`], smaller in tests.
    pub usage_chunk: usize,
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
pub async fn take_in<S: Store>(store: &S, intake: Intake<'_>) -> anyhow::Result<Taken> {
    let world = intake.world;
    let mut companies: BTreeSet<CompanyId> =
        intake.events.iter().map(|e| e.company.clone()).collect();
    companies.extend(
        intake
            .usage_companies
            .iter()
            .filter_map(|c| world.companies.get(c.as_str()))
            .map(|c| c.id.clone()),
    );
    let companies: Vec<CompanyId> = companies.into_iter().collect();
    let request = IntakeRequest {
        world: intake.save_world.then_some(world),
        files: intake.files,
        companies: &companies,
    };
    let mut judge = Judge {
        world,
        events: intake.events,
        usage: intake.usage,
        holdings: BTreeMap::new(),
        card: None,
        chunk: Vec::new(),
        chunk_rows: intake.usage_chunk.max(1),
        events_report: IntakeReport::default(),
        usage_report: IntakeReport::default(),
    };
    Ok(match store.take_in(request, &mut judge).await? {
        IntakeOutcome::Recorded => Taken::Recorded {
            events: judge.events_report,
            usage: judge.usage_report,
        },
        IntakeOutcome::FilesTaken(names) => Taken::FilesTaken(names),
    })
}

/// The rules of intake applied to one batch, as the store hands over what it holds.
struct Judge<'a> {
    world: &'a World,
    events: &'a [Event],
    usage: Box<dyn Iterator<Item = anyhow::Result<UsageLine>> + Send + 'a>,
    /// Per company, which product each user held when, for the usage rows: what is left of
    /// its state for judging events once they are judged, or built from the world for a
    /// company of usage alone.
    holdings: BTreeMap<CompanyId, Holdings>,
    card: Option<RateCard>,
    /// The usage rows read last.
    chunk: Vec<UsageLine>,
    /// How many are read at a time.
    chunk_rows: usize,
    events_report: IntakeReport,
    usage_report: IntakeReport,
}

impl IntakeJudge for Judge<'_> {
    fn events(&mut self, snapshot: &IntakeSnapshot) -> anyhow::Result<EventBatch> {
        let world = self.world;
        let mut past: BTreeMap<&CompanyId, Vec<Event>> = BTreeMap::new();
        for e in &snapshot.events {
            past.entry(&e.company).or_default().push(e.clone());
        }
        let mut incoming: BTreeMap<&CompanyId, Vec<usize>> = BTreeMap::new();
        for (i, e) in self.events.iter().enumerate() {
            incoming.entry(&e.company).or_default().push(i);
            past.entry(&e.company).or_default();
        }
        // A company's events are judged against its own state alone, so one company's state
        // is held at a time: built from the snapshot, extended by what this intake accepts,
        // and kept only as the holdings its usage rows are judged against.
        let mut verdicts: Vec<(usize, Verdict)> = Vec::with_capacity(self.events.len());
        for (id, history) in past {
            let mut judge = company_intake(world, id, history, snapshot)?;
            for &i in incoming.get(id).into_iter().flatten() {
                verdicts.push((i, judge.judge(&self.events[i])));
            }
            self.holdings.insert(id.clone(), judge.into_holdings());
        }
        verdicts.sort_unstable_by_key(|(i, _)| *i);
        let (batch, report) = record_verdicts(self.events, verdicts);
        self.events_report = report;
        Ok(batch)
    }

    fn next_usage(&mut self) -> anyhow::Result<Option<Vec<String>>> {
        self.chunk.clear();
        self.chunk.reserve_exact(self.chunk_rows);
        for line in self.usage.by_ref().take(self.chunk_rows) {
            self.chunk.push(line?);
        }
        Ok((!self.chunk.is_empty()).then(|| self.chunk.iter().map(|l| l.id.clone()).collect()))
    }

    fn usage(&mut self, accepted: &BTreeMap<String, String>) -> anyhow::Result<UsageBatch> {
        if self.card.is_none() {
            self.card = Some(
                RateCard::new(&self.world.rates)
                    .map_err(|d| anyhow::anyhow!("the rate card has duplicate entries: {d}"))?,
            );
        }
        let mut lines = std::mem::take(&mut self.chunk);
        // The content of the rows of this chunk accepted so far, by id.
        let mut here: HashMap<&str, &str> = HashMap::new();
        let mut batch = UsageBatch {
            accepted: Vec::with_capacity(lines.len()),
            ..UsageBatch::default()
        };
        for line in &lines {
            let earlier = accepted
                .get(&line.id)
                .map(String::as_str)
                .or_else(|| here.get(line.id.as_str()).copied());
            let verdict = self.judge_usage(line, earlier)?;
            match verdict {
                Ok(Some(usage)) => {
                    if let Ok(input) = &line.input {
                        here.insert(&line.id, &input.content);
                    }
                    batch.accepted.push(usage);
                    self.usage_report.accepted += 1;
                }
                Ok(None) => self.usage_report.duplicates += 1,
                Err(reason) => {
                    batch.rejections.push(Rejection {
                        company: self
                            .world
                            .companies
                            .get(line.company.as_str())
                            .map(|c| c.id.clone()),
                        source: line.source.clone(),
                        line: line.line,
                        id: line.id.clone(),
                        reason,
                    });
                    self.usage_report.rejected += 1;
                }
            }
        }
        // The next chunk is read into the room of this one.
        drop(here);
        lines.clear();
        self.chunk = lines;
        Ok(batch)
    }
}

impl<'a> Judge<'a> {
    /// One usage row's verdict (`Err` is the rejection reason).
    fn judge_usage(
        &mut self,
        line: &UsageLine,
        earlier: Option<&str>,
    ) -> anyhow::Result<Result<Option<crate::domain::usage::Usage>, String>> {
        let world = self.world;
        let Some(company) = world.companies.get(line.company.as_str()) else {
            return Ok(Err(format!("unknown company {}", line.company)));
        };
        let input = match &line.input {
            Ok(input) => input,
            Err(reason) => return Ok(Err(reason.clone())),
        };
        if !self.holdings.contains_key(&company.id) {
            // No event of the company was ever accepted: its book is as loaded.
            let book = LicenseBook::after(world, company, &[]).map_err(anyhow::Error::msg)?;
            self.holdings
                .insert(company.id.clone(), book.into_holdings());
        }
        let card = self.card.as_ref().expect("built before the first chunk");
        Ok(judge(
            input,
            (&line.source, line.line),
            world,
            company,
            &self.holdings[&company.id],
            card,
            earlier,
        ))
    }
}

/// A company's state for judging, from its recorded history.
fn company_intake<'a>(
    world: &'a World,
    id: &CompanyId,
    history: Vec<Event>,
    snapshot: &IntakeSnapshot,
) -> anyhow::Result<CompanyIntake<'a>> {
    let company = world
        .companies
        .get(id)
        .ok_or_else(|| anyhow::anyhow!("unknown company {id}"))?;
    CompanyIntake::new(world, company, history, snapshot.closed.get(id).copied())
        .map_err(anyhow::Error::msg)
}

/// The verdicts of `events` (each with its event's index, in arrival order) as a batch to
/// record.
fn record_verdicts(
    events: &[Event],
    verdicts: Vec<(usize, Verdict)>,
) -> (EventBatch, IntakeReport) {
    let mut report = IntakeReport::default();
    let mut batch = EventBatch {
        events: Vec::with_capacity(verdicts.len()),
        ..EventBatch::default()
    };
    for (i, verdict) in verdicts {
        let event = &events[i];
        let rejection = match verdict {
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
