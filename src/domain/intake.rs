//! Taking in what people did: each event is judged by the rules as of its own instant and
//! accepted (with what it writes) or rejected with the reason.

use super::account::{Account, CardCharge};
use super::licenses::{Holdings, LicenseBook};
use super::model::{Billing, Company, Event, EventKind, World};
use super::rerun::{check_reason, closed_boundary};
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

    /// Which product each user held when, after every event accepted so far: what rating
    /// usage reads, once the events are judged.
    pub fn into_holdings(self) -> Holdings {
        self.book.into_holdings()
    }

    /// Judges `event` (the next in arrival order); an accepted one is taken into the state.
    ///
    /// In order: a repeated id is a duplicate (same content) or a rejection; then an event
    /// earlier than the company's latest recorded event, before the anchor, or dated in a
    /// period already closed is refused; then the rules of its kind (a credit purchase's card
    /// and scope, a license event's pool rules).
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
        let latest = self.accepted.last().map(|e| e.at);
        let verdict = if let Some(latest) = latest
            && event.at < latest
        {
            // History is only ever extended: an event behind what is recorded would change
            // what earlier events were judged against.
            Err(format!(
                "out of order: {} is earlier than the latest recorded event of {} ({})",
                event.at.to_rfc3339(),
                company.id,
                latest.to_rfc3339()
            ))
        } else if event.at < grid.boundary_at(0) {
            Err(format!("before the company's anchor {}", company.anchor))
        } else if let Some(k) = self.closed_through
            && event.at < grid.boundary_at(k)
        {
            Err(format!(
                "its period is already closed (boundary {})",
                grid.boundary_date(k)
            ))
        } else if let EventKind::Rerun {
            boundary, reason, ..
        } = &event.kind
        {
            // A re-run needs its boundary closed by the time it is made. The boundary whose
            // close has started counts: the re-run itself checks that every step is done.
            check_reason(reason)
                .and_then(|()| closed_boundary(company, *boundary, self.closed_through))
                .map(|_| ())
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::account::CARD_NOT_VERIFIED;
    use crate::domain::licenses::CONTRACTED_REMOVAL;
    use crate::domain::words::Scope;
    use crate::testkit::{company, dec, event, world_with};

    fn purchase(at: &str, id: Option<&str>, amount: &str) -> Event {
        let mut e = event(
            at,
            EventKind::CreditPurchase {
                scope: Scope::Company,
                amount: dec(amount),
            },
        );
        e.company = "acme".into();
        e.id = id.map(str::to_string);
        e
    }

    #[test]
    fn repeated_ids_are_no_ops_or_conflicts() {
        let c = company("acme");
        let world = world_with(&c, &["nyc"], &[]);
        let mut intake = CompanyIntake::new(&world, &c, Vec::new(), None).unwrap();
        let first = purchase("2026-01-05T00:00:00Z", Some("p-1"), "10");
        assert!(matches!(
            intake.judge(&first),
            Verdict::Accepted {
                ledger: Some(_),
                ..
            }
        ));
        assert_eq!(intake.judge(&first), Verdict::Duplicate);
        let changed = purchase("2026-01-05T00:00:00Z", Some("p-1"), "11");
        assert_eq!(
            intake.judge(&changed),
            Verdict::Rejected("duplicate id p-1 with different content".into())
        );
    }

    #[test]
    fn events_before_the_anchor_or_in_a_closed_period_are_refused() {
        let c = company("acme");
        let world = world_with(&c, &["nyc"], &[]);
        let mut intake = CompanyIntake::new(&world, &c, Vec::new(), Some(1)).unwrap();
        assert_eq!(
            intake.judge(&purchase("2025-12-31T23:59:59Z", None, "1")),
            Verdict::Rejected("before the company's anchor 2026-01-01".into())
        );
        assert_eq!(
            intake.judge(&purchase("2026-01-31T23:59:59Z", None, "1")),
            Verdict::Rejected("its period is already closed (boundary 2026-02-01)".into())
        );
        assert!(matches!(
            intake.judge(&purchase("2026-02-01T00:00:00Z", None, "1")),
            Verdict::Accepted { .. }
        ));
    }

    #[test]
    fn a_rerun_event_needs_a_closed_boundary_and_a_reason() {
        let c = company("acme");
        let world = world_with(&c, &["nyc"], &[]);
        let mut intake = CompanyIntake::new(&world, &c, Vec::new(), Some(1)).unwrap();
        let rerun = |at: &str, boundary: &str, reason: &str| {
            let mut e = event(
                at,
                EventKind::Rerun {
                    boundary: crate::testkit::d(boundary),
                    reason: reason.into(),
                    dry_run: false,
                },
            );
            e.company = "acme".into();
            e
        };
        assert_eq!(
            intake.judge(&rerun("2026-02-05T00:00:00Z", "2026-03-01", "check")),
            Verdict::Rejected(
                "boundary 2026-03-01 of acme is not closed yet (closed through 2026-02-01)".into()
            )
        );
        assert!(matches!(
            intake.judge(&rerun("2026-02-05T00:00:00Z", "2026-02-01", " ")),
            Verdict::Rejected(_)
        ));
        assert_eq!(
            intake.judge(&rerun("2026-02-05T00:00:00Z", "2026-02-01", "check")),
            Verdict::Accepted {
                ledger: None,
                card_charge: None
            }
        );
    }

    #[test]
    fn history_is_only_extended_but_a_resent_event_is_recognised() {
        let c = company("acme");
        let world = world_with(&c, &["nyc"], &[]);
        let mut intake = CompanyIntake::new(&world, &c, Vec::new(), None).unwrap();
        let first = purchase("2026-01-05T00:00:00Z", Some("p-1"), "10");
        let second = purchase("2026-01-09T00:00:00Z", Some("p-2"), "10");
        assert!(matches!(intake.judge(&first), Verdict::Accepted { .. }));
        assert!(matches!(intake.judge(&second), Verdict::Accepted { .. }));
        assert_eq!(
            intake.judge(&first),
            Verdict::Duplicate,
            "a resent older event"
        );
        assert_eq!(
            intake.judge(&purchase("2026-01-08T00:00:00Z", Some("p-3"), "1")),
            Verdict::Rejected(
                "out of order: 2026-01-08T00:00:00+00:00 is earlier than the latest recorded event of acme (2026-01-09T00:00:00+00:00)".into()
            )
        );
        assert!(matches!(
            intake.judge(&purchase("2026-01-09T00:00:00Z", Some("p-4"), "1")),
            Verdict::Accepted { .. }
        ));
    }

    #[test]
    fn a_card_purchase_needs_a_verified_card_and_is_charged_at_once() {
        let mut c = company("acme");
        c.billing = Billing::Card;
        c.card_verified = false;
        let world = world_with(&c, &["nyc"], &[]);
        let mut intake = CompanyIntake::new(&world, &c, Vec::new(), None).unwrap();
        let buy = purchase("2026-01-05T00:00:00Z", Some("p-7"), "20");
        assert_eq!(
            intake.judge(&buy),
            Verdict::Rejected(CARD_NOT_VERIFIED.into())
        );
        let mut verified = event("2026-01-06T00:00:00Z", EventKind::CardVerified);
        verified.company = "acme".into();
        assert!(matches!(
            intake.judge(&verified),
            Verdict::Accepted { ledger: None, .. }
        ));
        let buy = purchase("2026-01-07T00:00:00Z", Some("p-8"), "20");
        let Verdict::Accepted {
            ledger: Some(entry),
            card_charge: Some(charge),
        } = intake.judge(&buy)
        else {
            panic!("a verified card's purchase is accepted and charged");
        };
        assert_eq!(
            (entry.kind, entry.amount, entry.reference.as_str()),
            (EntryKind::Purchase, dec("20"), "p-8")
        );
        assert_eq!(
            (charge.kind, charge.reference.as_str()),
            (CardChargeKind::CreditPurchase, "p-8")
        );
    }

    #[test]
    fn a_contracted_removal_needs_finance() {
        let c = company("acme");
        let world = world_with(&c, &["nyc"], &[]);
        let mut intake = CompanyIntake::new(&world, &c, Vec::new(), None).unwrap();
        let mut removal = event(
            "2026-01-05T00:00:00Z",
            EventKind::LicenseRemoval {
                office: "nyc".into(),
                product: "talk".into(),
                quantity: 1,
                override_: false,
            },
        );
        removal.company = "acme".into();
        assert_eq!(
            intake.judge(&removal),
            Verdict::Rejected(CONTRACTED_REMOVAL.into())
        );
    }
}
