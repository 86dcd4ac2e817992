//! Taking in events: each is judged by the rules as of its own instant, and recorded accepted
//! or rejected with the reason. A batch is recorded in one transaction.

use std::collections::BTreeMap;

use crate::domain::licenses::LicenseBook;
use crate::domain::model::{Event, World};
use crate::store::{RecordedEvent, Store};

use super::history::opening_book;

/// What taking in a batch of events did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IngestReport {
    /// Events accepted.
    pub accepted: usize,
    /// Events rejected (each with a row in `rejections`).
    pub rejected: usize,
    /// Events already recorded with the same id and content.
    pub duplicates: usize,
}

/// Judges and records `events` (in file order) against what the store already holds.
pub async fn ingest_events<S: Store>(
    store: &S,
    world: &World,
    events: &[Event],
) -> anyhow::Result<IngestReport> {
    let mut report = IngestReport::default();
    let mut books: BTreeMap<&str, (LicenseBook, Vec<Event>)> = BTreeMap::new();
    let mut recorded = Vec::with_capacity(events.len());
    let closed = closed_through(store).await?;
    for event in events {
        let company = world
            .companies
            .get(&event.company)
            .ok_or_else(|| anyhow::anyhow!("unknown company {}", event.company))?;
        if !books.contains_key(event.company.as_str()) {
            let past = store.accepted_events(Some(&event.company)).await?;
            let mut book = opening_book(world, company);
            for e in &past {
                book.apply(e.at, &e.reference(), &e.kind).map_err(|r| {
                    anyhow::anyhow!("recorded event {} no longer applies: {r}", e.reference())
                })?;
            }
            books.insert(&event.company, (book, past));
        }
        let (book, past) = books
            .get_mut(event.company.as_str())
            .expect("inserted above");

        if let Some(id) = &event.id
            && let Some(earlier) = past.iter().find(|e| e.id.as_ref() == Some(id))
        {
            if earlier.kind == event.kind && earlier.at == event.at {
                report.duplicates += 1;
                continue;
            }
            report.rejected += 1;
            recorded.push(RecordedEvent {
                event: event.clone(),
                rejection: Some(format!("duplicate id {id} with different content")),
            });
            continue;
        }

        let grid = company.grid();
        let verdict = if event.at < grid.boundary_at(0) {
            Err(format!("before the company's anchor {}", company.anchor))
        } else if let Some(k) = closed.get(&event.company).copied().flatten()
            && event.at < grid.boundary_at(k)
        {
            Err(format!(
                "its period is already closed (boundary {})",
                grid.boundary_date(k)
            ))
        } else {
            book.apply(event.at, &event.reference(), &event.kind)
        };
        match verdict {
            Ok(()) => {
                report.accepted += 1;
                past.push(event.clone());
                recorded.push(RecordedEvent {
                    event: event.clone(),
                    rejection: None,
                });
            }
            Err(reason) => {
                report.rejected += 1;
                recorded.push(RecordedEvent {
                    event: event.clone(),
                    rejection: Some(reason),
                });
            }
        }
    }
    store.record_events(&recorded).await?;
    Ok(report)
}

/// For each company, the latest boundary whose close has started (any step completed).
async fn closed_through<S: Store>(store: &S) -> anyhow::Result<BTreeMap<String, Option<u32>>> {
    let mut closed: BTreeMap<String, Option<u32>> = BTreeMap::new();
    for (company, k, _) in store.completed_steps().await? {
        let entry = closed.entry(company).or_default();
        *entry = Some(entry.map_or(k, |e| e.max(k)));
    }
    Ok(closed)
}
