//! Taking in what people did: each event is judged by the rules as of its own instant and
//! accepted (with what it writes) or rejected with the reason.

use super::account::{Account, CardCharge};
use super::licenses::LicenseBook;
use super::model::{Billing, Company, Event, EventKind, World};
use super::wallets::{EntryKind, LedgerEntry};
use super::words::{CardChargeKind, Wallet};

/// What the rules say of an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Accepted, with the ledger entry and card charge it writes (a credit purchase).
    Accepted {
        /// A credit purchase's entry in `universal`.
        ledger: Option<LedgerEntry>,
        /// A card company's credit purchase, charged at once.
        card_charge: Option<CardCharge>,
    },
    /// Refused, with the reason.
    Rejected(String),
    /// The same id with the same content was accepted before: a no-op.
    Duplicate,
}

/// One company's state for judging its events in arrival order: its license book, its
/// account and its accepted events so far.
pub struct CompanyIntake<'a> {
    company: &'a Company,
    book: LicenseBook,
    account: Account,
    accepted: Vec<Event>,
    closed_through: Option<u32>,
}

impl<'a> CompanyIntake<'a> {
    /// The state after the company's accepted `past` events. `closed_through` is the latest
    /// boundary whose close has started: an event dated before it is too late for its period.
    pub fn new(
        world: &World,
        company: &'a Company,
        past: Vec<Event>,
        closed_through: Option<u32>,
    ) -> Result<Self, String> {
        let book = LicenseBook::after(world, company, &past)?;
        Ok(CompanyIntake {
            company,
            book,
            account: Account::from_events(world, company, &past),
            accepted: past,
            closed_through,
        })
    }

    /// The license book after every event accepted so far: which product each user held
    /// when, for rating usage.
    pub fn book(&self) -> &LicenseBook {
        &self.book
    }

    /// Judges `event` (the next in arrival order); an accepted one is taken into the state.
    ///
    /// In order: a repeated id is a duplicate (same content) or a rejection; then an event
    /// before the anchor, or dated in a period already closed, is refused; then the rules of
    /// its kind (a credit purchase's card and scope, a license event's pool rules).
    pub fn judge(&mut self, event: &Event) -> Verdict {
        if let Some(id) = &event.id
            && let Some(earlier) = self.accepted.iter().find(|e| e.id.as_ref() == Some(id))
        {
            return if earlier.kind == event.kind && earlier.at == event.at {
                Verdict::Duplicate
            } else {
                Verdict::Rejected(format!("duplicate id {id} with different content"))
            };
        }
        let company = self.company;
        let grid = company.grid();
        let verdict = if event.at < grid.boundary_at(0) {
            Err(format!("before the company's anchor {}", company.anchor))
        } else if let Some(k) = self.closed_through
            && event.at < grid.boundary_at(k)
        {
            Err(format!(
                "its period is already closed (boundary {})",
                grid.boundary_date(k)
            ))
        } else if let EventKind::CreditPurchase { scope, .. } = &event.kind {
            self.account.check_purchase(scope, event.at)
        } else {
            self.book.apply(event.at, &event.reference(), &event.kind)
        };
        if let Err(reason) = verdict {
            return Verdict::Rejected(reason);
        }
        self.account.apply(event);
        self.accepted.push(event.clone());
        match &event.kind {
            EventKind::CreditPurchase { scope, amount } => Verdict::Accepted {
                ledger: Some(LedgerEntry {
                    at: event.at,
                    scope: scope.clone(),
                    wallet: Wallet::Universal,
                    kind: EntryKind::Purchase,
                    amount: *amount,
                    reference: event.reference(),
                    expires_at: None,
                }),
                card_charge: (company.billing == Billing::Card).then(|| {
                    CardCharge::new(
                        company,
                        event.at,
                        CardChargeKind::CreditPurchase,
                        *amount,
                        &event.reference(),
                    )
                }),
            },
            _ => Verdict::Accepted {
                ledger: None,
                card_charge: None,
            },
        }
    }
}
