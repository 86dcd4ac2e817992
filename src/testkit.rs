//! Builders shared by the unit tests: instants, dates, amounts, and small companies and
//! worlds with only what a test sets.

use std::str::FromStr;

use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;

use crate::domain::model::{
    Allowance, Billing, Company, CreditSharing, Event, EventKind, Office, World,
};
use crate::domain::money::Currency;
use crate::domain::words::Service;

/// An RFC 3339 instant.
pub fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .expect("test instant")
        .with_timezone(&Utc)
}

/// A `YYYY-MM-DD` date.
pub fn d(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").expect("test date")
}

/// A decimal amount.
pub fn dec(s: &str) -> Decimal {
    Decimal::from_str(s).expect("test amount")
}

/// An invoiced USD company in UTC, anchored on 2026-01-01, sharing credits company-wide,
/// primary office `nyc`.
pub fn company(id: &str) -> Company {
    Company {
        id: id.into(),
        name: id.to_uppercase(),
        time_zone: chrono_tz::UTC,
        currency: Currency::from_code("USD").expect("USD"),
        anchor: d("2026-01-01"),
        billing: Billing::Invoiced,
        card_verified: true,
        credit_sharing: CreditSharing::Company,
        primary_office: "nyc".into(),
        auto_recharge: None,
    }
}

/// A world of `company` with these offices and an allowance of 10.00 for each service.
pub fn world_with(company: &Company, offices: &[&str], allowances: &[Service]) -> World {
    let mut world = World::default();
    world.companies.insert(company.id.clone(), company.clone());
    for o in offices {
        world.offices.push(Office {
            id: (*o).into(),
            company: company.id.clone(),
            name: o.to_uppercase(),
        });
    }
    for s in allowances {
        world.allowances.push(Allowance {
            company: company.id.clone(),
            service: *s,
            amount: dec("10.00"),
        });
    }
    world.indexed()
}

/// An event of company `c` at `at`, on line 1 of `events.jsonl`.
pub fn event(at: &str, kind: EventKind) -> Event {
    Event {
        at: t(at),
        company: "c".into(),
        source: "events.jsonl".into(),
        line: 1,
        id: None,
        kind,
    }
}
