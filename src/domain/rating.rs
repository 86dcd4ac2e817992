//! Rating: the rate card, billing increments and the cost of a usage event.
//!
//! A usage event is priced by the most specific rate card entry that matches it. The card is
//! indexed once, so that finding an event's rate costs a handful of map look-ups (one per digit of
//! the remote number at most) instead of a scan of the card.

use std::collections::BTreeMap;

use rust_decimal::{Decimal, RoundingStrategy};

use crate::domain::model::Rate;
use crate::domain::money::MICRO_DP;
use crate::domain::words::{Direction, Service, UsageType};

/// The billing increment of a call whose rate gives none: whole minutes.
pub const DEFAULT_INCREMENT: (u32, u32) = (60, 60);

/// Seconds billed for a call of `duration_s` seconds under the increment `first/next`: nothing
/// for 0 s, else `first + ceil(max(0, d - first) / next) × next`.
///
/// A `next` of 0 is not a valid increment (the rate card loader refuses it); it is treated as 1,
/// per-second billing after the first block, so that this function has no input it panics on.
/// Results that would not fit a `u64` saturate.
pub fn billed_seconds(duration_s: u64, first: u32, next: u32) -> u64 {
    if duration_s == 0 {
        return 0;
    }
    let first = u64::from(first);
    let next = u64::from(next.max(1));
    let rest = duration_s.saturating_sub(first);
    first.saturating_add(rest.div_ceil(next).saturating_mul(next))
}

/// The increment `first/next` a call is billed with under `rate`: its own, or
/// [`DEFAULT_INCREMENT`].
pub fn increment_of(rate: &Rate) -> (u32, u32) {
    rate.increment.unwrap_or(DEFAULT_INCREMENT)
}

/// The exact cost of a usage event: `price × quantity`, where for calls `price` is per minute
/// and `billable_quantity` is billed seconds, so the cost is `price × seconds / 60` rounded
/// half-up to 6 decimal places.
///
/// Only the division by 60 can produce more decimals than a price has, so only calls are
/// rounded; every other product of a price (at most 6 decimals) and a count is exact.
///
/// `None` when the cost is beyond what a decimal can hold (about 7.9 × 10²⁸).
pub fn usage_cost(service: Service, price: Decimal, billable_quantity: u64) -> Option<Decimal> {
    let cost = price.checked_mul(Decimal::from(billable_quantity))?;
    if service == Service::Calling {
        Some(
            cost.checked_div(Decimal::from(60))?
                .round_dp_with_strategy(MICRO_DP, RoundingStrategy::MidpointAwayFromZero),
        )
    } else {
        Some(cost)
    }
}

/// Two rate card entries with the same service, type, direction, prefix and product: a load
/// error, since neither would be more specific than the other.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("rate {second} repeats rate {first}: same service, type, direction, prefix and product")]
pub struct DuplicateRate {
    /// Position of the earlier entry in the slice the card was built from (0-based).
    pub first: usize,
    /// Position of the later entry (0-based).
    pub second: usize,
}

/// The rate card, indexed for look-ups by service, type, product, prefix and direction.
#[derive(Debug, Clone, Default)]
pub struct RateCard {
    /// The entries, in card order; the indexes below point into it.
    rates: Vec<Rate>,
    /// Entries by service, then by type.
    services: BTreeMap<Service, ServiceRates>,
}

/// The entries of one service.
#[derive(Debug, Clone, Default)]
struct ServiceRates {
    /// Entries without a type (speech IVR, omnichannel).
    untyped: TypeRates,
    /// Entries by type.
    typed: BTreeMap<UsageType, TypeRates>,
}

/// The entries of one (service, type).
///
/// Product rates sit in tables of their own because a product rate beats every other rate: the
/// product table of the user's product is searched first, and the general table only when it has
/// no match.
#[derive(Debug, Clone, Default)]
struct TypeRates {
    /// Entries without a product.
    general: PrefixTable,
    /// Entries for one product, by product.
    by_product: BTreeMap<String, PrefixTable>,
}

/// Entries that differ only by prefix and direction.
#[derive(Debug, Clone, Default)]
struct PrefixTable {
    /// Entries without a prefix.
    unprefixed: Directions,
    /// Entries by prefix. Probing the remote number's own prefixes, longest first, finds the
    /// longest matching one in at most `longest` look-ups, however large the card.
    by_prefix: BTreeMap<String, Directions>,
    /// Length in bytes of the longest prefix in `by_prefix`, so probing starts there.
    longest: usize,
}

/// Entries that differ only by direction.
#[derive(Debug, Clone, Default)]
struct Directions {
    /// The entry without a direction, which matches both.
    any: Option<usize>,
    /// Entries by direction.
    explicit: BTreeMap<Direction, usize>,
}

impl Directions {
    /// Puts entry `index` in its slot, or names the entry already there. After an error the
    /// slot holds the new entry, which does not matter: the card being built is refused.
    fn insert(&mut self, direction: Option<Direction>, index: usize) -> Result<(), usize> {
        let existing = match direction {
            None => self.any.replace(index),
            Some(d) => self.explicit.insert(d, index),
        };
        existing.map_or(Ok(()), Err)
    }

    /// The best entry for an event's direction: an explicit direction beats none.
    fn best(&self, direction: Option<Direction>) -> Option<usize> {
        direction
            .and_then(|d| self.explicit.get(&d).copied())
            .or(self.any)
    }
}

impl PrefixTable {
    /// Puts entry `index` in its slot, or names the entry already there.
    fn insert(
        &mut self,
        prefix: Option<&str>,
        direction: Option<Direction>,
        index: usize,
    ) -> Result<(), usize> {
        match prefix {
            None => self.unprefixed.insert(direction, index),
            Some(p) => {
                self.longest = self.longest.max(p.len());
                self.by_prefix
                    .entry(p.to_string())
                    .or_default()
                    .insert(direction, index)
            }
        }
    }

    /// The best entry for an event: the longest prefix of the remote number that has an entry
    /// for the event's direction, then the unprefixed entries.
    fn best(&self, direction: Option<Direction>, remote_number: Option<&str>) -> Option<usize> {
        let prefixed = remote_number.and_then(|number| {
            (0..=number.len().min(self.longest))
                .rev()
                .filter(|&len| number.is_char_boundary(len))
                .find_map(|len| self.by_prefix.get(&number[..len])?.best(direction))
        });
        prefixed.or_else(|| self.unprefixed.best(direction))
    }
}

impl RateCard {
    /// Indexes a rate card. Two entries with the same service, type, direction, prefix and
    /// product are refused, because no rule could choose between them.
    pub fn new(rates: &[Rate]) -> Result<RateCard, DuplicateRate> {
        let mut card = RateCard {
            rates: rates.to_vec(),
            services: BTreeMap::new(),
        };
        for (index, rate) in rates.iter().enumerate() {
            let service = card.services.entry(rate.service).or_default();
            let type_rates = match rate.usage_type {
                None => &mut service.untyped,
                Some(t) => service.typed.entry(t).or_default(),
            };
            let table = match &rate.product {
                None => &mut type_rates.general,
                Some(p) => type_rates.by_product.entry(p.clone()).or_default(),
            };
            table
                .insert(rate.prefix.as_deref(), rate.direction, index)
                .map_err(|first| DuplicateRate {
                    first,
                    second: index,
                })?;
        }
        Ok(card)
    }

    /// The entries, in card order.
    pub fn rates(&self) -> &[Rate] {
        &self.rates
    }

    /// The rate of a usage event, or `None` when no entry matches (the event is then rejected).
    ///
    /// An entry matches when its service and type equal the event's, and its direction, prefix
    /// and product are each absent or equal to the event's direction, a prefix of the remote
    /// number, and the product the user held. Among matches a product rate beats
    /// any other, then the longest prefix wins, then an explicit direction beats none. An event
    /// without a remote number matches only unprefixed entries, and one without a product (a
    /// group, or a user without a license) only entries without a product. An empty prefix, if a
    /// card has one, matches every remote number and counts as longer than no prefix.
    pub fn lookup(
        &self,
        service: Service,
        usage_type: Option<UsageType>,
        direction: Option<Direction>,
        remote_number: Option<&str>,
        product: Option<&str>,
    ) -> Option<&Rate> {
        let service = self.services.get(&service)?;
        let type_rates = match usage_type {
            None => &service.untyped,
            Some(t) => service.typed.get(&t)?,
        };
        let for_product = product
            .and_then(|p| type_rates.by_product.get(p))
            .and_then(|table| table.best(direction, remote_number));
        let index = for_product.or_else(|| type_rates.general.best(direction, remote_number))?;
        self.rates.get(index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::dec;
    use proptest::prelude::*;

    fn cost(service: Service, price: Decimal, quantity: u64) -> Decimal {
        usage_cost(service, price, quantity).expect("within a decimal's range")
    }

    fn rate(
        service: &str,
        usage_type: Option<&str>,
        direction: Option<&str>,
        prefix: Option<&str>,
        product: Option<&str>,
        price: &str,
    ) -> Rate {
        let service: Service = service.parse().expect("test service");
        Rate {
            service,
            usage_type: usage_type.map(|t| UsageType::parse_for(service, t).expect("test type")),
            direction: direction.map(|d| d.parse().expect("test direction")),
            prefix: prefix.map(str::to_string),
            product: product.map(str::to_string),
            price: dec(price),
            increment: None,
        }
    }

    /// Looks a usage up by the names files use; a name the domain does not know matches
    /// nothing.
    fn find<'a>(
        card: &'a RateCard,
        service: &str,
        usage_type: Option<&str>,
        direction: Option<&str>,
        remote: Option<&str>,
        product: Option<&str>,
    ) -> Option<&'a Rate> {
        let service: Service = service.parse().ok()?;
        let usage_type = match usage_type {
            Some(t) => Some(UsageType::parse_for(service, t).ok()?),
            None => None,
        };
        let direction = match direction {
            Some(d) => Some(d.parse::<Direction>().ok()?),
            None => None,
        };
        card.lookup(service, usage_type, direction, remote, product)
    }

    #[test]
    fn billed_seconds_examples() {
        assert_eq!(billed_seconds(0, 60, 60), 0);
        assert_eq!(billed_seconds(1, 60, 60), 60);
        assert_eq!(billed_seconds(60, 60, 60), 60);
        assert_eq!(billed_seconds(61, 60, 60), 120);
        assert_eq!(billed_seconds(1, 6, 6), 6);
        assert_eq!(billed_seconds(7, 6, 6), 12);
        assert_eq!(billed_seconds(12, 6, 6), 12);
        assert_eq!(billed_seconds(1, 30, 6), 30);
        assert_eq!(billed_seconds(30, 30, 6), 30);
        assert_eq!(billed_seconds(31, 30, 6), 36);
        assert_eq!(billed_seconds(125, 30, 6), 126);
        assert_eq!(billed_seconds(5, 1, 1), 5);
        // No first block: every second is in a `next` block.
        assert_eq!(billed_seconds(7, 0, 6), 12);
    }

    #[test]
    fn billed_seconds_never_panics() {
        assert_eq!(billed_seconds(10, 60, 0), 60);
        assert_eq!(billed_seconds(70, 60, 0), 70);
        assert_eq!(billed_seconds(u64::MAX, 60, 60), u64::MAX);
        assert_eq!(billed_seconds(u64::MAX, 0, 7), u64::MAX);
    }

    #[test]
    fn increment_defaults_to_whole_minutes() {
        let mut r = rate("calling", Some("local"), None, None, None, "0.01");
        assert_eq!(increment_of(&r), (60, 60));
        r.increment = Some((30, 6));
        assert_eq!(increment_of(&r), (30, 6));
    }

    #[test]
    fn call_cost_is_per_minute_rounded_half_up_to_six_places() {
        assert_eq!(cost(Service::Calling, dec("0.02"), 60), dec("0.02"));
        assert_eq!(cost(Service::Calling, dec("0.02"), 126), dec("0.042"));
        assert_eq!(cost(Service::Calling, dec("0.01"), 0), Decimal::ZERO);
        // 0.01 × 7 / 60 = 0.0011666… → 0.001167
        assert_eq!(cost(Service::Calling, dec("0.01"), 7), dec("0.001167"));
        // 0.01 × 1 / 60 = 0.000166… → 0.000167
        assert_eq!(cost(Service::Calling, dec("0.01"), 1), dec("0.000167"));
        // 0.000003 × 10 / 60 = 0.0000005: a true midpoint goes up, not to even.
        assert_eq!(cost(Service::Calling, dec("0.000003"), 10), dec("0.000001"));
        // 0.000009 × 10 / 60 = 0.0000015 → 0.000002 (banker's rounding would also give this;
        // the case above is the one that tells them apart).
        assert_eq!(cost(Service::Calling, dec("0.000009"), 10), dec("0.000002"));
        assert!(cost(Service::Calling, dec("0.0123"), 37).scale() <= MICRO_DP);
    }

    #[test]
    fn other_costs_are_exact_products() {
        assert_eq!(cost(Service::Messaging, dec("0.0079"), 3), dec("0.0237"));
        assert_eq!(cost(Service::Fax, dec("0.07"), 12), dec("0.84"));
        assert_eq!(cost(Service::AiAgent, dec("0.123456"), 7), dec("0.864192"));
        assert_eq!(
            cost(Service::SpeechIvr, dec("0.000001"), 1),
            dec("0.000001")
        );
        assert_eq!(cost(Service::Omnichannel, dec("1.5"), 0), Decimal::ZERO);
    }

    /// A card like the product's own: free local calls for Talk, paid for the others,
    /// international by prefix.
    fn sample_card() -> RateCard {
        RateCard::new(&[
            rate("calling", Some("local"), None, None, None, "0.01"),
            rate(
                "calling",
                Some("local"),
                Some("outbound"),
                None,
                None,
                "0.02",
            ),
            rate("calling", Some("local"), None, None, Some("talk"), "0"),
            rate(
                "calling",
                Some("toll_free"),
                Some("inbound"),
                None,
                None,
                "0.02",
            ),
            rate(
                "calling",
                Some("toll_free"),
                Some("outbound"),
                None,
                None,
                "0",
            ),
            rate("calling", Some("international"), None, None, None, "0.50"),
            rate(
                "calling",
                Some("international"),
                None,
                Some("+44"),
                None,
                "0.10",
            ),
            rate(
                "calling",
                Some("international"),
                Some("outbound"),
                Some("+44"),
                None,
                "0.12",
            ),
            rate(
                "calling",
                Some("international"),
                None,
                Some("+447"),
                None,
                "0.30",
            ),
            rate(
                "calling",
                Some("international"),
                None,
                Some("+1"),
                Some("sell"),
                "0.05",
            ),
            rate("messaging", Some("a2p_sms"), None, None, None, "0.0079"),
            rate("speech_ivr", None, None, None, None, "0.004"),
        ])
        .expect("no duplicates")
    }

    fn price(
        card: &RateCard,
        q: (&str, Option<&str>, Option<&str>, Option<&str>, Option<&str>),
    ) -> Option<Decimal> {
        find(card, q.0, q.1, q.2, q.3, q.4).map(|r| r.price)
    }

    #[test]
    fn product_rate_beats_the_default() {
        let card = sample_card();
        let local = |dir, product| {
            price(
                &card,
                (
                    "calling",
                    Some("local"),
                    Some(dir),
                    Some("+15551234567"),
                    product,
                ),
            )
        };
        assert_eq!(local("inbound", Some("talk")), Some(dec("0")));
        assert_eq!(local("outbound", Some("talk")), Some(dec("0")));
        assert_eq!(local("inbound", Some("support")), Some(dec("0.01")));
        assert_eq!(local("outbound", Some("support")), Some(dec("0.02")));
        assert_eq!(local("outbound", None), Some(dec("0.02")));
    }

    #[test]
    fn product_rate_beats_a_longer_prefix() {
        let card = sample_card();
        let r = find(
            &card,
            "calling",
            Some("international"),
            Some("outbound"),
            Some("+15551234567"),
            Some("sell"),
        );
        assert_eq!(r.map(|r| r.price), Some(dec("0.05")));
        // Without the product, the unprefixed default.
        let r = find(
            &card,
            "calling",
            Some("international"),
            Some("outbound"),
            Some("+15551234567"),
            Some("talk"),
        );
        assert_eq!(r.map(|r| r.price), Some(dec("0.50")));
    }

    #[test]
    fn longest_prefix_then_explicit_direction() {
        let card = sample_card();
        let intl = |dir, number| {
            price(
                &card,
                (
                    "calling",
                    Some("international"),
                    Some(dir),
                    Some(number),
                    None,
                ),
            )
        };
        assert_eq!(intl("inbound", "+442071234567"), Some(dec("0.10")));
        assert_eq!(intl("outbound", "+442071234567"), Some(dec("0.12")));
        // +447 is longer than +44 and beats its explicit direction.
        assert_eq!(intl("outbound", "+447700900123"), Some(dec("0.30")));
        assert_eq!(intl("outbound", "+33123456789"), Some(dec("0.50")));
        // A prefix longer than the number cannot match.
        assert_eq!(intl("outbound", "+4"), Some(dec("0.50")));
        assert_eq!(intl("outbound", "+44"), Some(dec("0.12")));
    }

    #[test]
    fn a_prefixed_entry_of_the_other_direction_falls_back_to_a_shorter_prefix() {
        let card = RateCard::new(&[
            rate(
                "calling",
                Some("international"),
                None,
                Some("+4"),
                None,
                "0.40",
            ),
            rate(
                "calling",
                Some("international"),
                Some("outbound"),
                Some("+44"),
                None,
                "0.12",
            ),
        ])
        .expect("no duplicates");
        let p = |dir| {
            price(
                &card,
                (
                    "calling",
                    Some("international"),
                    Some(dir),
                    Some("+4420"),
                    None,
                ),
            )
        };
        assert_eq!(p("outbound"), Some(dec("0.12")));
        assert_eq!(p("inbound"), Some(dec("0.40")));
    }

    #[test]
    fn no_match_is_none() {
        let card = sample_card();
        assert_eq!(
            find(
                &card,
                "calling",
                Some("domestic"),
                Some("inbound"),
                Some("+1555"),
                None
            ),
            None
        );
        assert_eq!(find(&card, "video", Some("local"), None, None, None), None);
        assert_eq!(find(&card, "calling", None, None, None, None), None);
        assert_eq!(find(&card, "speech_ivr", Some("x"), None, None, None), None);
        // Direction-specific only, and the event has no direction.
        assert_eq!(
            find(&card, "calling", Some("toll_free"), None, None, None),
            None
        );
        let empty = RateCard::new(&[]).expect("empty card");
        assert_eq!(
            find(&empty, "calling", Some("local"), None, None, None),
            None
        );
    }

    #[test]
    fn untyped_and_unprefixed_entries() {
        let card = sample_card();
        assert_eq!(
            price(&card, ("speech_ivr", None, None, None, None)),
            Some(dec("0.004"))
        );
        assert_eq!(
            price(
                &card,
                (
                    "speech_ivr",
                    None,
                    Some("inbound"),
                    Some("+1"),
                    Some("talk")
                )
            ),
            Some(dec("0.004"))
        );
        // No remote number: only unprefixed entries.
        assert_eq!(
            price(
                &card,
                (
                    "calling",
                    Some("international"),
                    Some("outbound"),
                    None,
                    None
                )
            ),
            Some(dec("0.50"))
        );
        assert_eq!(
            price(
                &card,
                (
                    "messaging",
                    Some("a2p_sms"),
                    Some("outbound"),
                    Some("+44"),
                    None
                )
            ),
            Some(dec("0.0079"))
        );
    }

    #[test]
    fn duplicates_are_refused() {
        let a = rate(
            "calling",
            Some("local"),
            Some("inbound"),
            Some("+1"),
            Some("talk"),
            "0.01",
        );
        let b = rate(
            "calling",
            Some("local"),
            Some("inbound"),
            Some("+1"),
            None,
            "0.01",
        );
        let err = RateCard::new(&[a.clone(), b.clone(), a.clone()]).expect_err("duplicate");
        assert_eq!(
            err,
            DuplicateRate {
                first: 0,
                second: 2
            }
        );
        assert_eq!(
            err.to_string(),
            "rate 2 repeats rate 0: same service, type, direction, prefix and product"
        );
        // Differing only in price or increment is still a duplicate.
        let mut c = b.clone();
        c.price = dec("9");
        c.increment = Some((6, 6));
        assert_eq!(
            RateCard::new(&[b.clone(), c]).map(|_| ()),
            Err(DuplicateRate {
                first: 0,
                second: 1
            })
        );
        let untyped = rate("omnichannel", None, None, None, None, "1");
        assert!(RateCard::new(&[untyped.clone(), untyped]).is_err());
        assert!(RateCard::new(&[a, b]).is_ok());
    }

    #[test]
    fn non_ascii_numbers_do_not_panic() {
        let card = RateCard::new(&[rate(
            "calling",
            Some("international"),
            None,
            Some("+4é"),
            None,
            "1",
        )])
        .expect("no duplicates");
        assert_eq!(
            price(
                &card,
                ("calling", Some("international"), None, Some("+4éé"), None)
            ),
            Some(dec("1"))
        );
        assert_eq!(
            find(
                &card,
                "calling",
                Some("international"),
                None,
                Some("+é4"),
                None
            ),
            None
        );
    }

    // The reference: scan the whole card and keep the best-ranked match.

    fn matches(r: &Rate, q: &Query) -> bool {
        r.service == q.service
            && r.usage_type == q.usage_type
            && r.direction.is_none_or(|d| Some(d) == q.direction)
            && r.prefix
                .as_ref()
                .is_none_or(|p| q.remote.as_ref().is_some_and(|n| n.starts_with(p.as_str())))
            && r.product
                .as_ref()
                .is_none_or(|p| Some(p) == q.product.as_ref())
    }

    fn rank(r: &Rate) -> (bool, Option<usize>, bool) {
        (
            r.product.is_some(),
            r.prefix.as_ref().map(String::len),
            r.direction.is_some(),
        )
    }

    fn naive_lookup<'a>(rates: &'a [Rate], q: &Query) -> Option<&'a Rate> {
        rates
            .iter()
            .filter(|r| matches(r, q))
            .max_by_key(|r| rank(r))
    }

    type Key<'a> = (
        Service,
        Option<UsageType>,
        Option<Direction>,
        Option<&'a str>,
        Option<&'a str>,
    );

    fn key(r: &Rate) -> Key<'_> {
        (
            r.service,
            r.usage_type,
            r.direction,
            r.prefix.as_deref(),
            r.product.as_deref(),
        )
    }

    #[derive(Debug, Clone)]
    struct Query {
        service: Service,
        usage_type: Option<UsageType>,
        direction: Option<Direction>,
        remote: Option<String>,
        product: Option<String>,
    }

    impl Query {
        fn lookup<'a>(&self, card: &'a RateCard) -> Option<&'a Rate> {
            card.lookup(
                self.service,
                self.usage_type,
                self.direction,
                self.remote.as_deref(),
                self.product.as_deref(),
            )
        }
    }

    fn opt(values: &'static [&'static str]) -> impl Strategy<Value = Option<String>> {
        prop::option::of(prop::sample::select(values).prop_map(str::to_string))
    }

    fn opt_of<T: Clone + std::fmt::Debug + 'static>(
        values: &'static [T],
    ) -> impl Strategy<Value = Option<T>> {
        prop::option::of(prop::sample::select(values))
    }

    const SERVICES: &[Service] = &[Service::Calling, Service::Messaging];
    const TYPES: &[UsageType] = &[UsageType::Local, UsageType::International];
    const DIRECTIONS: &[Direction] = &[Direction::Inbound, Direction::Outbound];
    const PREFIXES: &[&str] = &["", "+", "+1", "+12", "+123", "+4", "+44", "+447", "+4471"];
    const PRODUCTS: &[&str] = &["talk", "sell"];
    const NUMBERS: &[&str] = &[
        "+1234567", "+12", "+1999", "+447123", "+4471", "+44", "+4", "+33", "",
    ];

    fn any_rate() -> impl Strategy<Value = Rate> {
        (
            prop::sample::select(SERVICES),
            opt_of(TYPES),
            opt_of(DIRECTIONS),
            opt(PREFIXES),
            opt(PRODUCTS),
            0u32..1000,
        )
            .prop_map(
                |(service, usage_type, direction, prefix, product, cents)| Rate {
                    service,
                    usage_type,
                    direction,
                    prefix,
                    product,
                    price: Decimal::new(i64::from(cents), 3),
                    increment: None,
                },
            )
    }

    fn any_query() -> impl Strategy<Value = Query> {
        (
            prop::sample::select(SERVICES),
            opt_of(TYPES),
            opt_of(DIRECTIONS),
            opt(NUMBERS),
            opt(PRODUCTS),
        )
            .prop_map(|(service, usage_type, direction, remote, product)| Query {
                service,
                usage_type,
                direction,
                remote,
                product,
            })
    }

    /// Keeps the first entry of each key, so the card loads.
    fn dedup(rates: Vec<Rate>) -> Vec<Rate> {
        let mut out: Vec<Rate> = Vec::new();
        for r in rates {
            if !out.iter().any(|o| key(o) == key(&r)) {
                out.push(r);
            }
        }
        out
    }

    /// Exact half-up rounding of `price × seconds / 60` to 6 places, in integers.
    fn reference_call_cost(price: Decimal, seconds: u64) -> Decimal {
        let mantissa = price.mantissa();
        let scale = price.scale();
        let num = mantissa * i128::from(seconds) * 1_000_000;
        let den = 60 * 10i128.pow(scale);
        let rounded = (2 * num + den) / (2 * den);
        Decimal::from_i128_with_scale(rounded, MICRO_DP)
    }

    proptest! {
        #[test]
        fn lookup_agrees_with_a_scan(
            rates in prop::collection::vec(any_rate(), 0..40),
            queries in prop::collection::vec(any_query(), 1..20),
        ) {
            let rates = dedup(rates);
            let card = RateCard::new(&rates).expect("deduplicated");
            for q in &queries {
                let fast = q.lookup(&card);
                let slow = naive_lookup(&rates, q);
                prop_assert_eq!(fast, slow, "query {:?}", q);
                if let Some(r) = fast {
                    prop_assert!(matches(r, q));
                }
            }
        }

        #[test]
        fn duplicates_are_found_exactly(rates in prop::collection::vec(any_rate(), 0..40)) {
            let first_dup = (0..rates.len()).find_map(|j| {
                (0..j).find(|&i| key(&rates[i]) == key(&rates[j])).map(|i| DuplicateRate { first: i, second: j })
            });
            prop_assert_eq!(RateCard::new(&rates).err(), first_dup);
        }

        #[test]
        fn the_chosen_rate_is_never_beaten(
            rates in prop::collection::vec(any_rate(), 0..40),
            q in any_query(),
        ) {
            let rates = dedup(rates);
            let card = RateCard::new(&rates).expect("deduplicated");
            let chosen = q.lookup(&card);
            let matching: Vec<&Rate> = rates.iter().filter(|r| matches(r, &q)).collect();
            prop_assert_eq!(chosen.is_some(), !matching.is_empty());
            if let Some(c) = chosen {
                for r in &matching {
                    prop_assert!(rank(r) < rank(c) || key(r) == key(c));
                }
            }
            // Without duplicates no two matches tie, so the choice never depends on card order.
            for (i, a) in matching.iter().enumerate() {
                for b in &matching[i + 1..] {
                    prop_assert_ne!(rank(a), rank(b));
                }
            }
        }

        #[test]
        fn billed_seconds_cover_the_call_in_whole_increments(
            d in 0u64..100_000, first in 0u32..200, next in 1u32..200,
        ) {
            let b = billed_seconds(d, first, next);
            if d == 0 {
                prop_assert_eq!(b, 0);
            } else {
                let first = u64::from(first);
                let next = u64::from(next);
                prop_assert!(b >= d);
                prop_assert!(b >= first);
                prop_assert_eq!((b - first) % next, 0);
                // Minimal: one increment less would not cover the call.
                prop_assert!(b == first || b - next < d);
            }
        }

        #[test]
        fn billed_seconds_are_monotone(d in 0u64..100_000, first in 0u32..200, next in 1u32..200) {
            prop_assert!(billed_seconds(d + 1, first, next) >= billed_seconds(d, first, next));
        }

        #[test]
        fn call_cost_rounds_exactly_half_up(
            mantissa in 0i64..100_000_000, scale in 0u32..=6, seconds in 0u64..10_000_000,
        ) {
            let price = Decimal::new(mantissa, scale);
            let cost = cost(Service::Calling, price, seconds);
            prop_assert_eq!(cost, reference_call_cost(price, seconds));
            prop_assert!(cost.scale() <= MICRO_DP);
        }

        #[test]
        fn other_costs_are_exact(mantissa in 0i64..100_000_000, scale in 0u32..=6, q in 0u64..10_000_000) {
            let price = Decimal::new(mantissa, scale);
            let cost = cost(Service::Messaging, price, q);
            prop_assert_eq!(cost, Decimal::from_i128_with_scale(i128::from(mantissa) * i128::from(q), scale));
        }

        #[test]
        fn call_cost_of_whole_minutes_is_price_times_minutes(
            mantissa in 0i64..100_000_000, scale in 0u32..=6, minutes in 0u64..100_000,
        ) {
            let price = Decimal::new(mantissa, scale);
            prop_assert_eq!(cost(Service::Calling, price, minutes * 60), price * Decimal::from(minutes));
        }
    }
}
