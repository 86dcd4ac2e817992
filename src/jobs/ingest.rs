//! Taking in events: each is judged by the rules as of its own instant, and recorded accepted
//! or rejected with the reason, with what an accepted one writes (a credit purchase's ledger
//! entry and card charge). A batch is recorded in one transaction.

use std::collections::BTreeMap;

use crate::domain::account::Account;
use crate::domain::licenses::LicenseBook;
use crate::domain::model::{Billing, Event, EventKind, World};
use crate::domain::wallets::{EntryKind, LedgerEntry, UNIVERSAL};
use crate::store::{CardCharge, EventBatch, RecordedEvent, Store};

use super::history::{account, opening_book};

/// What taking in a batch did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IngestReport {
    /// Items accepted.
    pub accepted: usize,
    /// Items rejected (each with a row in `rejections`).
    pub rejected: usize,
    /// Items already recorded with the same id and content.
    pub duplicates: usize,
}

impl IngestReport {
    /// Adds another report's counts.
    pub fn add(&mut self, other: &IngestReport) {
        self.accepted += other.accepted;
        self.rejected += other.rejected;
        self.duplicates += other.duplicates;
    }
}

struct CompanyState {
    book: LicenseBook,
    account: Account,
    past: Vec<Event>,
}

/// Judges and records `events` (in file order) against what the store already holds.
pub async fn ingest_events<S: Store>(
    store: &S,
    world: &World,
    events: &[Event],
) -> anyhow::Result<IngestReport> {
    let mut report = IngestReport::default();
    let mut states: BTreeMap<&str, CompanyState> = BTreeMap::new();
    let mut batch = EventBatch::default();
    let closed = closed_through(store).await?;
    for event in events {
        let company = world
            .companies
            .get(&event.company)
            .ok_or_else(|| anyhow::anyhow!("unknown company {}", event.company))?;
        if !states.contains_key(event.company.as_str()) {
            let past = store.accepted_events(Some(&event.company)).await?;
            let mut book = opening_book(world, company);
            for e in &past {
                book.apply(e.at, &e.reference(), &e.kind).map_err(|r| {
                    anyhow::anyhow!("recorded event {} no longer applies: {r}", e.reference())
                })?;
            }
            let account = account(world, company, &past);
            states.insert(
                &event.company,
                CompanyState {
                    book,
                    account,
                    past,
                },
            );
        }
        let state = states
            .get_mut(event.company.as_str())
            .expect("inserted above");

        if let Some(id) = &event.id
            && let Some(earlier) = state.past.iter().find(|e| e.id.as_ref() == Some(id))
        {
            if earlier.kind == event.kind && earlier.at == event.at {
                report.duplicates += 1;
            } else {
                report.rejected += 1;
                batch.events.push(RecordedEvent {
                    event: event.clone(),
                    rejection: Some(format!("duplicate id {id} with different content")),
                });
            }
            continue;
        }

        let grid = company.grid();
        let verdict = if event.at < grid.boundary_at(0) {
            Err(format!("before the company's anchor {}", company.anchor))
        } else if let Some(k) = closed.get(&event.company).copied()
            && event.at < grid.boundary_at(k)
        {
            Err(format!(
                "its period is already closed (boundary {})",
                grid.boundary_date(k)
            ))
        } else if let EventKind::CreditPurchase { scope, .. } = &event.kind {
            state.account.check_purchase(scope, event.at)
        } else {
            state.book.apply(event.at, &event.reference(), &event.kind)
        };
        match verdict {
            Ok(()) => {
                report.accepted += 1;
                state.account.apply(event);
                if let EventKind::CreditPurchase { scope, amount } = &event.kind {
                    batch.ledger.push((
                        company.id.clone(),
                        LedgerEntry {
                            at: event.at,
                            scope: scope.clone(),
                            wallet: UNIVERSAL.to_string(),
                            kind: EntryKind::Purchase,
                            amount: *amount,
                            reference: event.reference(),
                            expires_at: None,
                        },
                    ));
                    if company.billing == Billing::Card {
                        batch.card_charges.push(CardCharge {
                            at: event.at,
                            company: company.id.clone(),
                            kind: "credit_purchase".to_string(),
                            amount: *amount,
                            currency: company.currency.code().to_string(),
                            reference: event.reference(),
                        });
                    }
                }
                state.past.push(event.clone());
                batch.events.push(RecordedEvent {
                    event: event.clone(),
                    rejection: None,
                });
            }
            Err(reason) => {
                report.rejected += 1;
                batch.events.push(RecordedEvent {
                    event: event.clone(),
                    rejection: Some(reason),
                });
            }
        }
    }
    store.record_events(&batch).await?;
    Ok(report)
}

/// For each company, the latest boundary whose close has started (any step completed).
async fn closed_through<S: Store>(store: &S) -> anyhow::Result<BTreeMap<String, u32>> {
    Ok(store.latest_closes().await?.into_iter().collect())
}
