//! License pools: purchases (restore first, then add), scheduled removals, assignments, and the
//! removals applied at the end of each license term.
//!
//! The state of a company's pools at any instant is a pure function of its pools at load, its
//! accepted license events before that instant, and the boundaries passed: [`LicenseBook`]
//! folds them in time order. Whether a job ran on time never changes the state.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;

use super::grid::{Grid, Term};
use super::model::{
    Billing, Company, Event, EventKind, InitialPool, Party, PartyKind, Product, World,
};
use super::words::OfficeId;

/// The message for a contracted company's removal without finance's override.
pub const CONTRACTED_REMOVAL: &str =
    "contracted plan: license removals go through your Customer Success Manager";

/// Which pool: an office's seats of one product.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PoolKey {
    /// The office.
    pub office: OfficeId,
    /// The product code.
    pub product: String,
}

impl PoolKey {
    /// The pool of `product` in `office`.
    pub fn new(office: &OfficeId, product: &str) -> Self {
        PoolKey {
            office: office.clone(),
            product: product.to_string(),
        }
    }
}

/// One license pool's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pool {
    /// Paid seats.
    pub quantity: i64,
    /// Seats to be removed at the end of the current term.
    pub pending_removal: i64,
    /// Seats assigned to users.
    pub assigned: i64,
}

impl Pool {
    /// Seats that may still be assigned or scheduled for removal.
    pub fn free(&self) -> i64 {
        self.quantity - self.pending_removal - self.assigned
    }
}

/// A purchase that added seats, to be prorated onto the next invoice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Purchase {
    /// `events.jsonl:<line>` of the purchase.
    pub reference: String,
    /// When it was made.
    pub at: DateTime<Utc>,
    /// The pool.
    pub pool: PoolKey,
    /// Seats added (after restoring scheduled removals).
    pub added: i64,
}

/// Removals applied to one pool at one boundary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppliedRemoval {
    /// The boundary index.
    pub boundary: u32,
    /// The pool.
    pub pool: PoolKey,
    /// Seats removed.
    pub removed: i64,
}

/// From an instant on, a user holds this product (or none).
type Holding = (DateTime<Utc>, Option<String>);

/// Which product each user of a company held when: the part of a [`LicenseBook`] that rating
/// reads, small enough to keep for every company of a large intake. It holds the changes the
/// events made; a user they never touched holds what the scenario gave them.
#[derive(Debug, Clone, Default)]
pub struct Holdings(BTreeMap<String, Vec<Holding>>);

impl Holdings {
    /// The product `user` held at `at` (a change at that very instant counts): `opening`, the
    /// product the scenario gave them, until an event changed it. `None` for groups and users
    /// without a license. Rating uses it: some rates depend on the caller's product.
    pub fn product_at<'a>(
        &'a self,
        user: &str,
        at: DateTime<Utc>,
        opening: Option<&'a str>,
    ) -> Option<&'a str> {
        let changed = self
            .0
            .get(user)
            .and_then(|changes| changes.iter().rev().find(|(from, _)| *from <= at));
        match changed {
            Some((_, product)) => product.as_deref(),
            None => opening,
        }
    }
}

/// The license side of one company, folded through time.
#[derive(Debug, Clone)]
pub struct LicenseBook {
    grid: Grid,
    billing: Billing,
    terms: BTreeMap<String, Term>,
    users: BTreeMap<String, PartyKind>,
    pools: BTreeMap<PoolKey, Pool>,
    holders: BTreeMap<String, PoolKey>,
    /// Per user, from which instant on they held which product (or none), oldest first.
    holdings: Holdings,
    purchases: Vec<Purchase>,
    removals: Vec<AppliedRemoval>,
    /// Boundaries `< next_boundary` have been passed.
    next_boundary: u32,
}

impl LicenseBook {
    /// The pools of a company at load: scenario pools, with users given a product counted as
    /// assigned in their own office's pool.
    pub fn new<'a>(
        company: &Company,
        products: &BTreeMap<String, Product>,
        pools: impl IntoIterator<Item = &'a InitialPool>,
        parties: impl IntoIterator<Item = &'a Party>,
    ) -> Self {
        let mut book = LicenseBook {
            grid: company.grid(),
            billing: company.billing,
            terms: products
                .values()
                .map(|p| (p.code.clone(), p.term))
                .collect(),
            users: BTreeMap::new(),
            pools: BTreeMap::new(),
            holders: BTreeMap::new(),
            holdings: Holdings::default(),
            purchases: Vec::new(),
            removals: Vec::new(),
            next_boundary: 0,
        };
        for p in pools {
            book.pools
                .entry(PoolKey::new(&p.office, &p.product))
                .or_default()
                .quantity += p.quantity;
        }
        for party in parties {
            book.users.insert(party.id.clone(), party.kind);
            if let Some(product) = &party.product {
                let key = PoolKey::new(&party.office, product);
                book.pools.entry(key.clone()).or_default().assigned += 1;
                book.holders.insert(party.id.clone(), key);
            }
        }
        book
    }

    /// A company's book at load, before any event.
    pub fn opening(world: &World, company: &Company) -> Self {
        LicenseBook::new(
            company,
            &world.products,
            world.pools_of(&company.id),
            world.parties_of(&company.id),
        )
    }

    /// The book after the company's accepted `events` (in recorded order) before `before`,
    /// with every boundary up to and including `through` passed. Accepted events were checked
    /// when taken in; one that no longer applies (the scenario was reloaded with other pools)
    /// is an error naming it.
    pub fn as_of(
        world: &World,
        company: &Company,
        events: &[Event],
        before: DateTime<Utc>,
        through: DateTime<Utc>,
    ) -> Result<Self, String> {
        let mut book = LicenseBook::opening(world, company);
        for e in events.iter().filter(|e| e.at < before) {
            book.apply(e.at, &e.reference(), &e.kind)
                .map_err(|reason| {
                    format!(
                        "recorded event {} of {} no longer applies: {reason}",
                        e.reference(),
                        company.id
                    )
                })?;
        }
        book.advance_to(through);
        Ok(book)
    }

    /// The book after every one of the company's accepted `events`, with only the boundaries
    /// up to the last of them passed.
    pub fn after(world: &World, company: &Company, events: &[Event]) -> Result<Self, String> {
        LicenseBook::as_of(
            world,
            company,
            events,
            DateTime::<Utc>::MAX_UTC,
            DateTime::<Utc>::MIN_UTC,
        )
    }

    /// Records that `user` holds the seat of `pool` (or none) from `at` on.
    fn hold(&mut self, at: DateTime<Utc>, user: &str, pool: Option<PoolKey>) {
        let product = pool.as_ref().map(|k| k.product.clone());
        match pool {
            Some(key) => self.holders.insert(user.to_string(), key),
            None => self.holders.remove(user),
        };
        self.holdings
            .0
            .entry(user.to_string())
            .or_default()
            .push((at, product));
    }

    /// Passes every boundary at or before `t`, applying the removals due there.
    pub fn advance_to(&mut self, t: DateTime<Utc>) {
        while self.grid.boundary_at(self.next_boundary) <= t {
            let k = self.next_boundary;
            for (key, pool) in self.pools.iter_mut() {
                let term = self
                    .terms
                    .get(&key.product)
                    .copied()
                    .unwrap_or(Term::Monthly);
                if pool.pending_removal > 0 && term.ends_at(0, k) {
                    self.removals.push(AppliedRemoval {
                        boundary: k,
                        pool: key.clone(),
                        removed: pool.pending_removal,
                    });
                    pool.quantity -= pool.pending_removal;
                    pool.pending_removal = 0;
                    debug_assert!(pool.quantity >= pool.assigned, "fewer seats than holders");
                }
            }
            self.next_boundary += 1;
        }
    }

    /// Applies an event at `at` (after passing the boundaries up to it). License events that
    /// break a license rule are refused with the reason; other events leave the pools alone.
    pub fn apply(
        &mut self,
        at: DateTime<Utc>,
        reference: &str,
        event: &EventKind,
    ) -> Result<(), String> {
        self.advance_to(at);
        match event {
            EventKind::LicensePurchase {
                office,
                product,
                quantity,
            } => {
                let key = PoolKey::new(office, product);
                let pool = self.pools.entry(key.clone()).or_default();
                let restored = (*quantity).min(pool.pending_removal);
                pool.pending_removal -= restored;
                let added = quantity - restored;
                pool.quantity += added;
                if added > 0 {
                    self.purchases.push(Purchase {
                        reference: reference.to_string(),
                        at,
                        pool: key,
                        added,
                    });
                }
                Ok(())
            }
            EventKind::LicenseRemoval {
                office,
                product,
                quantity,
                override_,
            } => {
                if self.billing == Billing::Invoiced && !override_ {
                    return Err(CONTRACTED_REMOVAL.to_string());
                }
                let key = PoolKey::new(office, product);
                let free = self.pools.get(&key).map_or(0, Pool::free);
                if *quantity > free {
                    return Err(format!(
                        "not enough free seats: requested {quantity}, free {free}"
                    ));
                }
                self.pools.entry(key).or_default().pending_removal += quantity;
                Ok(())
            }
            EventKind::LicenseAssign {
                office,
                product,
                user,
            } => {
                self.check_user(user)?;
                if self.holders.contains_key(user) {
                    return Err(format!("user {user} already holds a license"));
                }
                let key = PoolKey::new(office, product);
                match self.pools.get_mut(&key) {
                    Some(pool) if pool.free() > 0 => pool.assigned += 1,
                    _ => return Err(format!("no free seat in pool {office}/{product}")),
                }
                self.hold(at, user, Some(key));
                Ok(())
            }
            EventKind::LicenseUnassign { user } => {
                self.check_user(user)?;
                let key = self
                    .holders
                    .get(user)
                    .cloned()
                    .ok_or_else(|| format!("user {user} holds no license"))?;
                if let Some(pool) = self.pools.get_mut(&key) {
                    pool.assigned -= 1;
                    debug_assert!(pool.assigned >= 0, "assigned seats went negative");
                }
                self.hold(at, user, None);
                Ok(())
            }
            EventKind::LicenseTransfer { from_user, to_user } => {
                self.check_user(from_user)?;
                self.check_user(to_user)?;
                if from_user == to_user {
                    return Err("cannot transfer a license to the same user".to_string());
                }
                if !self.holders.contains_key(from_user) {
                    return Err(format!("user {from_user} holds no license"));
                }
                if self.holders.contains_key(to_user) {
                    return Err(format!("user {to_user} already holds a license"));
                }
                let key = self.holders.get(from_user).cloned();
                self.hold(at, from_user, None);
                self.hold(at, to_user, key);
                Ok(())
            }
            _ => Ok(()),
        }
    }

    fn check_user(&self, id: &str) -> Result<(), String> {
        match self.users.get(id) {
            Some(PartyKind::User) => Ok(()),
            Some(PartyKind::Group) => Err(format!("{id} is a group: groups hold no license")),
            None => Err(format!("unknown user {id}")),
        }
    }

    /// The pools as they stand.
    pub fn pools(&self) -> &BTreeMap<PoolKey, Pool> {
        &self.pools
    }

    /// The product a user holds now, if any.
    pub fn product_of(&self, user: &str) -> Option<&str> {
        self.holders.get(user).map(|k| k.product.as_str())
    }

    /// Which product each user held when, by the scenario's assignments and the events
    /// applied so far.
    pub fn holdings(&self) -> &Holdings {
        &self.holdings
    }

    /// The holdings alone, for a caller that only rates from here on.
    pub fn into_holdings(self) -> Holdings {
        self.holdings
    }

    /// Every purchase that added seats, in the order made.
    pub fn purchases(&self) -> &[Purchase] {
        &self.purchases
    }

    /// Every removal applied at a boundary passed so far.
    pub fn applied_removals(&self) -> &[AppliedRemoval] {
        &self.removals
    }
}

/// The unrounded proration of seats added on `date` for the rest of the term
/// `[term_start, term_end)`: `added × unit_price × remaining_days / term_days`, with the
/// remaining and term days; `None` when the amount is beyond what a decimal can hold.
pub fn proration(
    added: i64,
    unit_price: Decimal,
    date: NaiveDate,
    term_start: NaiveDate,
    term_end: NaiveDate,
) -> Option<(Decimal, i64, i64)> {
    let remaining = Grid::days_between(date, term_end);
    let term_days = Grid::days_between(term_start, term_end);
    let amount = Decimal::from(added)
        .checked_mul(unit_price)?
        .checked_mul(Decimal::from(remaining))?
        .checked_div(Decimal::from(term_days))?;
    Some((amount, remaining, term_days))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::money::Currency;
    use crate::testkit::{d, t};
    use proptest::prelude::*;
    use std::str::FromStr;

    fn company(billing: Billing) -> Company {
        Company {
            time_zone: chrono_tz::America::New_York,
            anchor: d("2026-01-31"),
            billing,
            ..crate::testkit::company("acme")
        }
    }

    fn products() -> BTreeMap<String, Product> {
        let mut m = BTreeMap::new();
        for (code, term, price) in [
            ("talk", Term::Monthly, "25.00"),
            ("sell", Term::Annual, "480.00"),
        ] {
            m.insert(
                code.to_string(),
                Product {
                    code: code.into(),
                    name: code.into(),
                    term,
                    unit_price: Decimal::from_str(price).unwrap(),
                },
            );
        }
        m
    }

    fn user(id: &str, product: Option<&str>) -> Party {
        Party {
            id: id.into(),
            kind: PartyKind::User,
            company: "acme".into(),
            office: "nyc".into(),
            name: id.into(),
            phone: None,
            product: product.map(std::sync::Arc::from),
        }
    }

    fn book(billing: Billing) -> LicenseBook {
        let pools = [
            InitialPool {
                company: "acme".into(),
                office: "nyc".into(),
                product: "talk".into(),
                quantity: 5,
            },
            InitialPool {
                company: "acme".into(),
                office: "nyc".into(),
                product: "sell".into(),
                quantity: 2,
            },
        ];
        let users = [
            user("ada", Some("talk")),
            user("bob", None),
            user("cy", None),
        ];
        LicenseBook::new(&company(billing), &products(), &pools, &users)
    }

    fn removal(product: &str, quantity: i64, override_: bool) -> EventKind {
        EventKind::LicenseRemoval {
            office: "nyc".into(),
            product: product.into(),
            quantity,
            override_,
        }
    }

    fn purchase(product: &str, quantity: i64) -> EventKind {
        EventKind::LicensePurchase {
            office: "nyc".into(),
            product: product.into(),
            quantity,
        }
    }

    fn key(product: &str) -> PoolKey {
        PoolKey::new(&"nyc".into(), product)
    }

    #[test]
    fn contracted_removal_needs_override_and_free_seats() {
        let mut b = book(Billing::Invoiced);
        let t = t("2026-02-10T12:00:00Z");
        assert_eq!(
            b.apply(t, "e:1", &removal("talk", 1, false)),
            Err(CONTRACTED_REMOVAL.into())
        );
        assert_eq!(
            b.apply(t, "e:2", &removal("talk", 5, true)),
            Err("not enough free seats: requested 5, free 4".into())
        );
        assert_eq!(b.apply(t, "e:3", &removal("talk", 4, true)), Ok(()));
        assert_eq!(b.pools()[&key("talk")].pending_removal, 4);
    }

    #[test]
    fn card_company_removal_is_applied_at_term_end() {
        let mut b = book(Billing::Card);
        b.apply(t("2026-02-10T12:00:00Z"), "e:1", &removal("talk", 2, false))
            .unwrap();
        b.apply(t("2026-02-10T12:00:00Z"), "e:2", &removal("sell", 1, false))
            .unwrap();
        b.advance_to(t("2026-02-28T04:59:59Z"));
        assert_eq!(b.pools()[&key("talk")].quantity, 5);
        b.advance_to(t("2026-02-28T05:00:00Z"));
        assert_eq!(
            b.pools()[&key("talk")],
            Pool {
                quantity: 3,
                pending_removal: 0,
                assigned: 1
            }
        );
        // The annual pool keeps its seat until the annual term ends at boundary 12.
        assert_eq!(b.pools()[&key("sell")].pending_removal, 1);
        b.advance_to(t("2027-01-31T05:00:00Z"));
        assert_eq!(b.pools()[&key("sell")].quantity, 1);
        let boundaries: Vec<_> = b.applied_removals().iter().map(|r| r.boundary).collect();
        assert_eq!(boundaries, [1, 12]);
    }

    #[test]
    fn purchase_restores_before_adding() {
        let mut b = book(Billing::Card);
        let t = t("2026-02-10T12:00:00Z");
        b.apply(t, "e:1", &removal("talk", 3, false)).unwrap();
        b.apply(t, "e:2", &purchase("talk", 2)).unwrap();
        assert_eq!(
            b.pools()[&key("talk")],
            Pool {
                quantity: 5,
                pending_removal: 1,
                assigned: 1
            }
        );
        assert!(b.purchases().is_empty(), "a pure restore is free");
        b.apply(t, "e:3", &purchase("talk", 4)).unwrap();
        assert_eq!(
            b.pools()[&key("talk")],
            Pool {
                quantity: 8,
                pending_removal: 0,
                assigned: 1
            }
        );
        assert_eq!(b.purchases()[0].added, 3);
        assert_eq!(b.purchases()[0].reference, "e:3");
    }

    #[test]
    fn assignments_follow_the_free_seat_rule() {
        let mut b = book(Billing::Card);
        let t = t("2026-02-10T12:00:00Z");
        let assign = |u: &str, p: &str| EventKind::LicenseAssign {
            office: "nyc".into(),
            product: p.into(),
            user: u.into(),
        };
        assert_eq!(
            b.apply(t, "1", &assign("ada", "sell")),
            Err("user ada already holds a license".into())
        );
        b.apply(t, "2", &assign("bob", "sell")).unwrap();
        b.apply(t, "3", &removal("sell", 1, false)).unwrap();
        assert_eq!(
            b.apply(t, "4", &assign("cy", "sell")),
            Err("no free seat in pool nyc/sell".into())
        );
        let transfer = |f: &str, to: &str| EventKind::LicenseTransfer {
            from_user: f.into(),
            to_user: to.into(),
        };
        assert_eq!(
            b.apply(t, "5", &transfer("cy", "ada")),
            Err("user cy holds no license".into())
        );
        assert_eq!(
            b.apply(t, "6", &transfer("bob", "ada")),
            Err("user ada already holds a license".into())
        );
        assert_eq!(
            b.apply(t, "7", &transfer("bob", "bob")),
            Err("cannot transfer a license to the same user".into())
        );
        b.apply(t, "8", &transfer("bob", "cy")).unwrap();
        assert_eq!(b.product_of("cy"), Some("sell"));
        assert_eq!(b.product_of("bob"), None);
        b.apply(t, "9", &EventKind::LicenseUnassign { user: "cy".into() })
            .unwrap();
        assert_eq!(
            b.apply(t, "10", &EventKind::LicenseUnassign { user: "cy".into() }),
            Err("user cy holds no license".into())
        );
        assert_eq!(b.pools()[&key("sell")].assigned, 0);
    }

    #[test]
    fn proration_counts_local_days() {
        let d = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
        let (amount, remaining, days) = proration(
            3,
            Decimal::from(25),
            d("2026-02-10"),
            d("2026-01-31"),
            d("2026-02-28"),
        )
        .unwrap();
        assert_eq!((remaining, days), (18, 28));
        assert_eq!(
            Currency::from_code("USD").unwrap().round_line(amount),
            Decimal::from_str("48.21").unwrap()
        );
        let (full, _, _) = proration(
            2,
            Decimal::from(25),
            d("2026-01-31"),
            d("2026-01-31"),
            d("2026-02-28"),
        )
        .unwrap();
        assert_eq!(full, Decimal::from(50));
        assert_eq!(
            proration(
                i64::MAX,
                Decimal::MAX,
                d("2026-01-31"),
                d("2026-01-31"),
                d("2026-02-28"),
            ),
            None,
            "an amount beyond a decimal is refused, not a panic"
        );
    }

    proptest! {
        /// Splitting a term at any day into prorated parts sums to the full fee within a cent
        /// per part.
        #[test]
        fn prorations_of_a_split_term_sum_to_the_whole(
            start_days in 0i64..2000,
            cuts in prop::collection::btree_set(1i64..365, 0..6),
            price_cents in 1i64..100_000,
            seats in 1i64..50,
            annual in any::<bool>(),
        ) {
            let usd = Currency::from_code("USD").unwrap();
            let grid = Grid::new(chrono_tz::UTC, NaiveDate::from_ymd_opt(2024, 1, 1).unwrap() + chrono::Duration::days(start_days));
            let (start, end) = if annual { (grid.boundary_date(0), grid.boundary_date(12)) } else { (grid.boundary_date(0), grid.boundary_date(1)) };
            let days = Grid::days_between(start, end);
            let mut points: Vec<i64> = cuts.into_iter().filter(|c| *c < days).collect();
            points.insert(0, 0);
            points.push(days);
            let price = Decimal::new(price_cents, 2);
            let mut total = Decimal::ZERO;
            let parts = points.len() as i64 - 1;
            for w in points.windows(2) {
                // Seats held from day w[0] to day w[1]: bought at w[0] for the rest of the term,
                // minus what buying at w[1] would have cost.
                let at = |n: i64| start + chrono::Duration::days(n);
                let (from_here, _, _) = proration(seats, price, at(w[0]), start, end).unwrap();
                let (from_next, _, _) = proration(seats, price, at(w[1]), start, end).unwrap();
                total += usd.round_line(from_here - from_next);
            }
            let full = usd.round_line(Decimal::from(seats) * price);
            prop_assert!((total - full).abs() <= Decimal::new(parts, 2));
        }
    }
}
