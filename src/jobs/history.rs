//! A company's recorded history folded into domain state, as of an instant.

use chrono::{DateTime, Utc};

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
