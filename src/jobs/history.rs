//! A company's recorded history folded into domain state, as of an instant.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use crate::domain::account::Account;
use crate::domain::invoice::{PriceCorrection, PriceList};
use crate::domain::licenses::LicenseBook;
use crate::domain::model::{Company, Event, EventKind, World};

/// A company's license book at load, before any event.
pub fn opening_book(world: &World, company: &Company) -> LicenseBook {
    LicenseBook::new(
        company,
        &world.products,
        world.pools_of(&company.id),
        world.parties_of(&company.id),
    )
}

/// The license book after the accepted `events` before `before`, with every boundary up to
/// and including `through` passed.
pub fn book_as_of(
    world: &World,
    company: &Company,
    events: &[Event],
    before: DateTime<Utc>,
    through: DateTime<Utc>,
) -> anyhow::Result<LicenseBook> {
    let mut book = opening_book(world, company);
    for e in events.iter().filter(|e| e.at < before) {
        book.apply(e.at, &e.reference(), &e.kind)
            .map_err(|reason| {
                anyhow::anyhow!(
                    "recorded event {} of {} no longer applies: {reason}",
                    e.reference(),
                    company.id
                )
            })?;
    }
    book.advance_to(through);
    Ok(book)
}

/// The company's prices with every correction it recorded, in recorded order.
pub fn price_list(world: &World, events: &[Event]) -> PriceList {
    let corrections = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::PriceCorrection {
                product,
                unit_price,
                from,
            } => Some(PriceCorrection {
                recorded_at: e.at,
                product: product.clone(),
                from: *from,
                unit_price: *unit_price,
            }),
            _ => None,
        })
        .collect();
    PriceList::new(&world.products, corrections)
}

/// The company's payment settings after its accepted `events`.
pub fn account(world: &World, company: &Company, events: &[Event]) -> Account {
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

/// Which license product each user held when: the scenario's assignments, then every change
/// made by the accepted `events`, in order.
#[derive(Debug, Clone, Default)]
pub struct Holdings {
    changes: BTreeMap<String, Vec<Holding>>,
}

/// From an instant on, a user holds this product (or none).
type Holding = (DateTime<Utc>, Option<String>);

impl Holdings {
    /// Folds a company's accepted assignment events (others are ignored). They were checked
    /// when taken in, so they are applied as recorded.
    pub fn new(world: &World, company: &Company, events: &[Event]) -> Self {
        let mut holdings = Holdings::default();
        let mut current: BTreeMap<String, Option<String>> = BTreeMap::new();
        for p in world.parties_of(&company.id) {
            holdings
                .changes
                .entry(p.id.clone())
                .or_default()
                .push((DateTime::<Utc>::MIN_UTC, p.product.clone()));
            current.insert(p.id.clone(), p.product.clone());
        }
        for e in events {
            let changes: Vec<(&String, Option<String>)> = match &e.kind {
                EventKind::LicenseAssign { user, product, .. } => {
                    vec![(user, Some(product.clone()))]
                }
                EventKind::LicenseUnassign { user } => vec![(user, None)],
                EventKind::LicenseTransfer { from_user, to_user } => {
                    let product = current.get(from_user).cloned().flatten();
                    vec![(from_user, None), (to_user, product)]
                }
                _ => continue,
            };
            for (user, product) in changes {
                current.insert(user.clone(), product.clone());
                holdings
                    .changes
                    .entry(user.clone())
                    .or_default()
                    .push((e.at, product));
            }
        }
        holdings
    }

    /// The product `party` held at `at` (events at that very instant count); `None` for
    /// groups and users without a license.
    pub fn product_at(&self, party: &str, at: DateTime<Utc>) -> Option<&str> {
        self.changes
            .get(party)?
            .iter()
            .rev()
            .find(|(t, _)| *t <= at)
            .and_then(|(_, p)| p.as_deref())
    }
}
