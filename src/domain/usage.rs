//! Usage as billing keeps it: an accepted, priced usage row and the close that rated it.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;

/// An accepted usage row, priced when it was taken in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Usage {
    /// The company.
    pub company: String,
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
    pub office: String,
    /// The user or group (may be empty).
    pub party: String,
    /// Service.
    pub service: String,
    /// Type within the service (may be empty).
    pub usage_type: String,
    /// `inbound`, `outbound` or empty.
    pub direction: String,
    /// The remote party's number (may be empty).
    pub remote_number: String,
    /// The company's number used (may be empty).
    pub number_used: String,
    /// Call duration as written (may be empty).
    pub duration_s: String,
    /// Billed seconds, segments, messages, pages, sessions or units.
    pub billable_quantity: i64,
    /// `second`, `segment`, `message`, `page`, `session` or `unit`.
    pub unit: String,
    /// The rate's price as written in the rate card.
    pub rate: String,
    /// Calls: `first/next`; empty otherwise.
    pub increment: String,
    /// The exact cost, six decimals.
    pub cost: Decimal,
    /// Every column but `received_at`, to tell duplicates from conflicts.
    pub content: String,
}

/// How a close paid for one usage row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rating {
    /// The usage id.
    pub id: String,
    /// The boundary whose close rated it.
    pub boundary_index: u32,
    /// Wallets drawn from, joined by `+` in draw-down order; empty at zero cost.
    pub wallet_sources: String,
    /// Rated by a later close than its period's.
    pub late: bool,
}

/// What a close needs of a usage row not yet rated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unrated {
    /// The company.
    pub company: String,
    /// The usage id.
    pub id: String,
    /// When it happened.
    pub occurred_at: DateTime<Utc>,
    /// When it reached billing.
    pub received_at: DateTime<Utc>,
    /// Its office (the wallet scope under office sharing).
    pub office: String,
    /// Its service (the draw-down order).
    pub service: String,
    /// Its exact cost.
    pub cost: Decimal,
}
