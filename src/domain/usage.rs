//! Usage: a metered row as it arrives, the checks that accept or reject it, its billable
//! quantity and price, and how a close rated it.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use sha2::{Digest, Sha256};

use super::licenses::Holdings;
use super::model::{Company, World};
use super::money::storable;
use super::rating::{RateCard, billed_seconds, increment_of, usage_cost};
use super::sms;
use super::words::{CompanyId, Direction, OfficeId, Service, Unit, UsageType, Wallet};

/// A usage row as it arrived, its fields read into their types. Whether it is accepted is
/// decided by [`judge`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageInput {
    /// The producer's id.
    pub id: String,
    /// When it happened.
    pub occurred_at: DateTime<Utc>,
    /// When it reached billing (`occurred_at` when the feed leaves it empty).
    pub received_at: DateTime<Utc>,
    /// The office, as written.
    pub office: String,
    /// The user or group, as written (may be empty).
    pub party: String,
    /// The service.
    pub service: Service,
    /// Its type, where the service has types.
    pub usage_type: Option<UsageType>,
    /// Its direction, where given.
    pub direction: Option<Direction>,
    /// The remote party's E.164 number, where given.
    pub remote_number: Option<String>,
    /// The company's number used (may be empty).
    pub number_used: String,
    /// Call duration in seconds.
    pub duration_s: Option<i64>,
    /// SMS segments, when the feed counted them.
    pub segments: Option<i64>,
    /// SMS text, to count segments from.
    pub body: String,
    /// Fax pages.
    pub pages: Option<i64>,
    /// AI-agent sessions.
    pub sessions: Option<i64>,
    /// Speech IVR or omnichannel units.
    pub units: Option<i64>,
    /// The digest of every column but `received_at` ([`content_digest`]): two rows with one id
    /// are the same row when it is equal.
    pub content: String,
}

/// The hexadecimal SHA-256 of `fields` joined by U+001F: what is kept of a usage row's content
/// to tell a repeated row from a conflicting one with the same id.
pub fn content_digest<'a>(fields: impl IntoIterator<Item = &'a str>) -> String {
    let mut hasher = Sha256::new();
    for (i, field) in fields.into_iter().enumerate() {
        if i > 0 {
            hasher.update("\u{1f}");
        }
        hasher.update(field);
    }
    format!("{:x}", hasher.finalize())
}

/// Whether `stored`, the content recorded for an accepted row, is that of a row whose digest is
/// `digest`. A row accepted before content was kept as its digest holds the columns
/// themselves, joined by U+001F, and is compared by their digest.
fn same_content(stored: &str, digest: &str) -> bool {
    stored == digest || (stored.len() != digest.len() && content_digest([stored]) == digest)
}

/// A usage row of a feed file: where it came from, and its fields, or why they can't be read
/// (the row is then rejected with that reason).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageLine {
    /// The file (`usage.csv`).
    pub source: String,
    /// The 1-based line on which the row starts.
    pub line: i64,
    /// The `id` column as written.
    pub id: String,
    /// The `company` column as written.
    pub company: String,
    /// When it happened, if that can be read.
    pub occurred_at: Option<DateTime<Utc>>,
    /// When it reached billing (`received_at`, else `occurred_at`), if that can be read.
    pub arrival: Option<DateTime<Utc>>,
    /// The fields, or the first one that can't be read and why.
    pub input: Result<UsageInput, String>,
}

/// The billable quantity of a usage row before billing increments: a call's seconds, an SMS's
/// segments (as given, else counted from its body), one per MMS, fax pages, AI sessions, or
/// units. `Err` names the field that is missing or out of range.
pub fn quantity(input: &UsageInput) -> Result<u64, String> {
    let at_least_one = |field: &str, value: Option<i64>| match value {
        None => Err(format!("{field}: missing")),
        Some(n) if n < 1 => Err(format!("{field}: {n} must be at least 1")),
        Some(n) => Ok(n.unsigned_abs()),
    };
    match (input.service, input.usage_type) {
        (Service::Calling, _) => match input.duration_s {
            None => Err("duration_s: missing".to_string()),
            Some(n) if n < 0 => Err(format!("duration_s: {n} is negative")),
            Some(n) => Ok(n.unsigned_abs()),
        },
        (Service::Messaging, Some(t)) if t.is_sms() => match input.segments {
            None => Ok(u64::from(sms::segments(&input.body))),
            given => at_least_one("segments", given),
        },
        (Service::Messaging, _) => Ok(1),
        (Service::Fax, _) => at_least_one("pages", input.pages),
        (Service::AiAgent, _) => at_least_one("sessions", input.sessions),
        (Service::SpeechIvr | Service::Omnichannel, _) => at_least_one("units", input.units),
    }
}

/// Checks one usage row of `company` and prices it: before the anchor, an unknown office or
/// user, a missing or out-of-range quantity, a conflicting duplicate and a missing rate are
/// rejections (`Err` is the reason). `Ok(None)` is a duplicate of an accepted row (`earlier`
/// is the content of the row accepted before with the same id, if any): a no-op. `holdings`
/// gives the product each user held when the usage occurred.
pub fn judge(
    input: &UsageInput,
    source: (&str, i64),
    world: &World,
    company: &Company,
    holdings: &Holdings,
    card: &RateCard,
    earlier: Option<&str>,
) -> Result<Option<Usage>, String> {
    if input.occurred_at < company.grid().boundary_at(0) {
        return Err(format!("before the company's anchor {}", company.anchor));
    }
    let Some(office) = world
        .offices_of(&company.id)
        .find(|o| o.id == input.office.as_str())
    else {
        return Err(format!(
            "unknown office {} of company {}",
            input.office, company.id
        ));
    };
    let party = input.party.as_str();
    let opening = if party.is_empty() {
        None
    } else {
        let Some(p) = world.parties_of(&company.id).find(|p| p.id == party) else {
            return Err(format!(
                "unknown user or group {party} of company {}",
                company.id
            ));
        };
        p.product.as_deref()
    };
    let quantity = quantity(input)?;
    if let Some(earlier) = earlier {
        return if same_content(earlier, &input.content) {
            Ok(None)
        } else {
            Err(format!("duplicate id {} with different content", input.id))
        };
    }
    let product = (!party.is_empty())
        .then(|| holdings.product_at(party, input.occurred_at, opening))
        .flatten();
    let remote = input.remote_number.as_deref();
    let rate = card
        .lookup(
            input.service,
            input.usage_type,
            input.direction,
            remote,
            product,
        )
        .ok_or_else(|| {
            format!(
                "no rate for {}/{}/{} (remote {}, product {})",
                input.service.as_str(),
                input.usage_type.map_or("-", UsageType::as_str),
                input.direction.map_or("-", Direction::as_str),
                remote.unwrap_or("-"),
                product.unwrap_or("-")
            )
        })?;
    let (billable, increment) = if input.service == Service::Calling {
        let (first, next) = increment_of(rate);
        (billed_seconds(quantity, first, next), Some((first, next)))
    } else {
        (quantity, None)
    };
    let cost = usage_cost(input.service, rate.price, billable)
        .filter(|c| storable(*c))
        .ok_or_else(|| {
            format!(
                "cost of {billable} {} at {} is beyond the range of amounts",
                Unit::of(input.service, input.usage_type).as_str(),
                rate.price
            )
        })?;
    Ok(Some(Usage {
        company: company.id.clone(),
        id: input.id.clone(),
        source: source.0.to_string(),
        line: source.1,
        occurred_at: input.occurred_at,
        received_at: input.received_at,
        office: office.id.clone(),
        party: party.to_string(),
        service: input.service,
        usage_type: input.usage_type,
        direction: input.direction,
        remote_number: remote.unwrap_or_default().to_string(),
        number_used: input.number_used.clone(),
        duration_s: input.duration_s,
        billable_quantity: i64::try_from(billable).map_err(|_| "quantity too large".to_string())?,
        unit: Unit::of(input.service, input.usage_type),
        rate: rate.price,
        increment,
        cost,
        content: input.content.clone(),
    }))
}

/// An accepted usage row, priced when it was taken in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Usage {
    /// The company.
    pub company: CompanyId,
    /// The producer's id, unique among accepted rows.
    pub id: String,
    /// The file it came from.
    pub source: String,
    /// Its line in that file.
    pub line: i64,
    /// When it happened.
    pub occurred_at: DateTime<Utc>,
    /// When it reached billing.
    pub received_at: DateTime<Utc>,
    /// The office it belongs to.
    pub office: OfficeId,
    /// The user or group (may be empty).
    pub party: String,
    /// Service.
    pub service: Service,
    /// Type within the service (none for speech IVR and omnichannel).
    pub usage_type: Option<UsageType>,
    /// Which way it went, where the service has a direction.
    pub direction: Option<Direction>,
    /// The remote party's number (may be empty).
    pub remote_number: String,
    /// The company's number used (may be empty).
    pub number_used: String,
    /// Call duration in seconds, where given.
    pub duration_s: Option<i64>,
    /// Billed seconds, segments, messages, pages, sessions or units.
    pub billable_quantity: i64,
    /// What the billable quantity counts.
    pub unit: Unit,
    /// The rate's price, with the decimals it was written with in the rate card.
    pub rate: Decimal,
    /// Calls: the billing increment `(first, next)`.
    pub increment: Option<(u32, u32)>,
    /// The exact cost, six decimals.
    pub cost: Decimal,
    /// The digest of every column but `received_at`, to tell duplicates from conflicts.
    pub content: String,
}

/// How a close paid for one usage row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rating {
    /// The usage id.
    pub id: String,
    /// The boundary whose close rated it.
    pub boundary_index: u32,
    /// Wallets drawn from, in draw-down order; none at zero cost.
    pub wallet_sources: Vec<Wallet>,
    /// Rated by a later close than its period's.
    pub late: bool,
}

/// What a close needs of a usage row not yet rated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unrated {
    /// The company.
    pub company: CompanyId,
    /// The usage id.
    pub id: String,
    /// When it happened.
    pub occurred_at: DateTime<Utc>,
    /// When it reached billing.
    pub received_at: DateTime<Utc>,
    /// Its office (the wallet scope under office sharing).
    pub office: OfficeId,
    /// Its service (the draw-down order).
    pub service: Service,
    /// Its exact cost.
    pub cost: Decimal,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::grid::Term;
    use crate::domain::licenses::LicenseBook;
    use crate::domain::model::{Event, EventKind, InitialPool, Party, PartyKind, Product, Rate};
    use crate::testkit::{company, dec, t, world_with};
    use std::collections::BTreeMap;

    fn input(service: Service, usage_type: Option<UsageType>) -> UsageInput {
        UsageInput {
            id: "u-1".into(),
            occurred_at: t("2026-01-10T10:00:00Z"),
            received_at: t("2026-01-10T10:00:00Z"),
            office: "nyc".into(),
            party: "ada".into(),
            service,
            usage_type,
            direction: Some(Direction::Outbound),
            remote_number: Some("+12125550000".into()),
            number_used: String::new(),
            duration_s: None,
            segments: None,
            body: String::new(),
            pages: None,
            sessions: None,
            units: None,
            content: content_digest(["u-1", "as written"]),
        }
    }

    /// acme with office nyc, user ada holding `talk` until 2026-01-15, a local-call rate of
    /// 0.02/min and a free one for Talk holders.
    fn world() -> World {
        let c = company("acme");
        let mut w = world_with(&c, &["nyc"], &[]);
        w.products.insert(
            "talk".into(),
            Product {
                code: "talk".into(),
                name: "Talk".into(),
                term: Term::Monthly,
                unit_price: dec("25"),
            },
        );
        w.pools.push(InitialPool {
            company: c.id.clone(),
            office: "nyc".into(),
            product: "talk".into(),
            quantity: 1,
        });
        w.parties.push(Party {
            id: "ada".into(),
            kind: PartyKind::User,
            company: c.id.clone(),
            office: "nyc".into(),
            name: "Ada".into(),
            phone: None,
            product: Some("talk".into()),
        });
        let rate = |product: Option<&str>, price: &str| Rate {
            service: Service::Calling,
            usage_type: Some(UsageType::Local),
            direction: None,
            prefix: None,
            product: product.map(str::to_string),
            price: dec(price),
            increment: Some((6, 6)),
        };
        w.rates = vec![rate(None, "0.0200"), rate(Some("talk"), "0")];
        w.indexed()
    }

    fn judged(
        input: &UsageInput,
        accepted: &BTreeMap<String, String>,
    ) -> Result<Option<Usage>, String> {
        let world = world();
        let c = &world.companies["acme"];
        let unassign = Event {
            at: t("2026-01-15T00:00:00Z"),
            company: c.id.clone(),
            source: "events.jsonl".into(),
            line: 1,
            id: None,
            kind: EventKind::LicenseUnassign { user: "ada".into() },
        };
        let book = LicenseBook::after(&world, c, &[unassign]).unwrap();
        let card = RateCard::new(&world.rates).unwrap();
        let earlier = accepted.get(&input.id).map(String::as_str);
        judge(
            input,
            ("usage.csv", 2),
            &world,
            c,
            book.holdings(),
            &card,
            earlier,
        )
    }

    #[test]
    fn the_quantity_depends_on_the_service() {
        let mut call = input(Service::Calling, Some(UsageType::Local));
        assert_eq!(quantity(&call), Err("duration_s: missing".into()));
        call.duration_s = Some(-5);
        assert_eq!(quantity(&call), Err("duration_s: -5 is negative".into()));
        call.duration_s = Some(0);
        assert_eq!(quantity(&call), Ok(0));
        let mut sms = input(Service::Messaging, Some(UsageType::A2pSms));
        assert_eq!(quantity(&sms), Ok(1), "an empty body is one segment");
        sms.body = "A".repeat(161);
        assert_eq!(quantity(&sms), Ok(2));
        sms.segments = Some(3);
        assert_eq!(quantity(&sms), Ok(3), "given segments are used as is");
        sms.segments = Some(0);
        assert_eq!(quantity(&sms), Err("segments: 0 must be at least 1".into()));
        assert_eq!(
            quantity(&input(Service::Messaging, Some(UsageType::P2pMms))),
            Ok(1)
        );
        assert_eq!(
            quantity(&input(Service::Fax, Some(UsageType::Fax))),
            Err("pages: missing".into())
        );
        let mut ivr = input(Service::SpeechIvr, None);
        ivr.units = Some(250);
        assert_eq!(quantity(&ivr), Ok(250));
    }

    #[test]
    fn the_product_held_when_the_call_happened_picks_the_rate() {
        let mut call = input(Service::Calling, Some(UsageType::Local));
        call.duration_s = Some(61);
        let held = judged(&call, &BTreeMap::new()).unwrap().unwrap();
        assert_eq!((held.cost, held.billable_quantity), (dec("0"), 66));
        call.occurred_at = t("2026-01-20T10:00:00Z");
        call.received_at = call.occurred_at;
        let after = judged(&call, &BTreeMap::new()).unwrap().unwrap();
        // 66 s at 0.02/min = 0.022.
        assert_eq!(
            (after.cost, after.increment, after.unit),
            (dec("0.022"), Some((6, 6)), Unit::Second)
        );
    }

    #[test]
    fn rows_the_live_system_would_refuse_are_rejected_with_a_reason() {
        let mut call = input(Service::Calling, Some(UsageType::Local));
        call.duration_s = Some(5);
        let none = BTreeMap::new();
        let mut early = call.clone();
        early.occurred_at = t("2025-12-31T23:59:59Z");
        assert_eq!(
            judged(&early, &none),
            Err("before the company's anchor 2026-01-01".into())
        );
        let mut office = call.clone();
        office.office = "paris".into();
        assert_eq!(
            judged(&office, &none),
            Err("unknown office paris of company acme".into())
        );
        let mut user = call.clone();
        user.party = "zed".into();
        assert_eq!(
            judged(&user, &none),
            Err("unknown user or group zed of company acme".into())
        );
        let mut intl = call.clone();
        intl.usage_type = Some(UsageType::International);
        assert!(
            judged(&intl, &none)
                .unwrap_err()
                .starts_with("no rate for calling/international/outbound")
        );
        let same = BTreeMap::from([("u-1".to_string(), call.content.clone())]);
        assert_eq!(
            judged(&call, &same),
            Ok(None),
            "the same row again is a no-op"
        );
        let other = BTreeMap::from([("u-1".to_string(), content_digest(["u-1", "other"]))]);
        assert_eq!(
            judged(&call, &other),
            Err("duplicate id u-1 with different content".into())
        );
        let legacy = BTreeMap::from([("u-1".to_string(), "u-1\u{1f}as written".to_string())]);
        assert_eq!(
            judged(&call, &legacy),
            Ok(None),
            "a row recorded with its columns is the same as its digest"
        );
        let legacy_other = BTreeMap::from([("u-1".to_string(), "u-1\u{1f}other!".to_string())]);
        assert_eq!(
            judged(&call, &legacy_other),
            Err("duplicate id u-1 with different content".into())
        );
        let mut huge = call.clone();
        huge.usage_type = Some(UsageType::Local);
        huge.party = String::new();
        huge.duration_s = Some(i64::MAX);
        assert!(
            judged(&huge, &none)
                .unwrap_err()
                .contains("beyond the range of amounts")
        );
    }
}
