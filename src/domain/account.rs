//! A company's account: its payment settings through time (whether its card is verified and
//! which auto-recharge settings are in force, as of any instant), and the charges made to a
//! card company's card.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;

use super::model::{AutoRecharge, Billing, Company, CreditSharing, Event, EventKind, World};
use super::money::Currency;
use super::words::{CardChargeKind, CompanyId, OfficeId, Scope};

/// A charge to a card company's card (negative for a refund).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardCharge {
    /// When it was charged.
    pub at: DateTime<Utc>,
    /// The company.
    pub company: CompanyId,
    /// What it paid for.
    pub kind: CardChargeKind,
    /// The amount charged.
    pub amount: Decimal,
    /// The company's currency.
    pub currency: Currency,
    /// The invoice number, event reference or recharge reference.
    pub reference: String,
}

impl CardCharge {
    /// A charge of `amount` to `company`'s card at `at`.
    pub fn new(
        company: &Company,
        at: DateTime<Utc>,
        kind: CardChargeKind,
        amount: Decimal,
        reference: &str,
    ) -> Self {
        CardCharge {
            at,
            company: company.id.clone(),
            kind,
            amount,
            currency: company.currency.clone(),
            reference: reference.to_string(),
        }
    }
}

/// The message for a credit purchase on an unverified card.
pub const CARD_NOT_VERIFIED: &str = "card not verified: confirm the verification charge first";

/// Payment settings folded from the scenario and the accepted events.
#[derive(Debug, Clone)]
pub struct Account {
    billing: Billing,
    credit_sharing: CreditSharing,
    offices: Vec<OfficeId>,
    verified_from: Option<DateTime<Utc>>,
    recharge: Vec<(DateTime<Utc>, Option<AutoRecharge>)>,
}

impl Account {
    /// The settings after the company's accepted `events`, in recorded order.
    pub fn from_events(world: &World, company: &Company, events: &[Event]) -> Self {
        let offices = world
            .offices_of(&company.id)
            .map(|o| o.id.clone())
            .collect();
        let mut account = Account::new(company, offices);
        for e in events {
            account.apply(e);
        }
        account
    }

    /// The settings at load; `offices` are the company's office ids.
    pub fn new(company: &Company, offices: Vec<OfficeId>) -> Self {
        Account {
            billing: company.billing,
            credit_sharing: company.credit_sharing,
            offices,
            verified_from: company.card_verified.then_some(DateTime::<Utc>::MIN_UTC),
            recharge: vec![(DateTime::<Utc>::MIN_UTC, company.auto_recharge.clone())],
        }
    }

    /// Takes in an accepted event (in recorded order).
    pub fn apply(&mut self, e: &Event) {
        match &e.kind {
            EventKind::CardVerified => {
                self.verified_from.get_or_insert(e.at);
            }
            EventKind::AutoRechargeSettings { settings } => {
                self.recharge.push((e.at, settings.clone()));
            }
            _ => {}
        }
    }

    /// Whether the card is verified at `at`.
    pub fn card_verified(&self, at: DateTime<Utc>) -> bool {
        self.verified_from.is_some_and(|v| v <= at)
    }

    /// The auto-recharge settings in force at `at`, if any and if they can be charged: a card
    /// company with an unverified card gets none.
    pub fn auto_recharge(&self, at: DateTime<Utc>) -> Option<&AutoRecharge> {
        if self.billing == Billing::Card && !self.card_verified(at) {
            return None;
        }
        self.recharge
            .iter()
            .rev()
            .find(|(from, _)| *from <= at)
            .and_then(|(_, s)| s.as_ref())
    }

    /// Whether `scope` holds wallets under the company's credit sharing.
    pub fn holds_wallets(&self, scope: &Scope) -> bool {
        match (self.credit_sharing, scope) {
            (CreditSharing::Company, Scope::Company) => true,
            (CreditSharing::Office, Scope::Office(o)) => self.offices.contains(o),
            _ => false,
        }
    }

    /// Checks a credit purchase of the company at `at`.
    pub fn check_purchase(&self, scope: &Scope, at: DateTime<Utc>) -> Result<(), String> {
        if self.billing == Billing::Card && !self.card_verified(at) {
            return Err(CARD_NOT_VERIFIED.to_string());
        }
        if !self.holds_wallets(scope) {
            let sharing = match self.credit_sharing {
                CreditSharing::Company => "company",
                CreditSharing::Office => "office",
            };
            return Err(format!(
                "scope {scope} holds no wallets under credit_sharing = \"{sharing}\""
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::{dec, event, t};

    fn company(billing: Billing, verified: bool) -> Company {
        Company {
            billing,
            card_verified: verified,
            credit_sharing: CreditSharing::Office,
            primary_office: "a".into(),
            auto_recharge: Some(AutoRecharge {
                threshold: dec("5"),
                amount: dec("25"),
            }),
            ..crate::testkit::company("c")
        }
    }

    #[test]
    fn settings_follow_the_events_in_force() {
        let office = Scope::Office("a".into());
        let mut a = Account::new(&company(Billing::Card, false), vec!["a".into(), "b".into()]);
        assert_eq!(
            a.check_purchase(&office, t("2026-01-02T00:00:00Z")),
            Err(CARD_NOT_VERIFIED.into())
        );
        assert!(
            a.auto_recharge(t("2026-01-02T00:00:00Z")).is_none(),
            "unverified card: no recharge"
        );
        a.apply(&event("2026-01-03T00:00:00Z", EventKind::CardVerified));
        assert!(a.check_purchase(&office, t("2026-01-03T00:00:00Z")).is_ok());
        assert_eq!(
            a.check_purchase(&Scope::Company, t("2026-01-03T00:00:00Z")),
            Err("scope company holds no wallets under credit_sharing = \"office\"".into())
        );
        assert_eq!(
            a.auto_recharge(t("2026-01-03T00:00:00Z")).unwrap().amount,
            dec("25")
        );
        a.apply(&event(
            "2026-01-04T00:00:00Z",
            EventKind::AutoRechargeSettings { settings: None },
        ));
        assert!(a.auto_recharge(t("2026-01-04T00:00:00Z")).is_none());
        assert!(a.auto_recharge(t("2026-01-03T12:00:00Z")).is_some());
        let invoiced = Account::new(&company(Billing::Invoiced, false), vec!["a".into()]);
        assert!(invoiced.auto_recharge(t("2026-01-02T00:00:00Z")).is_some());
    }
}
