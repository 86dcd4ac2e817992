//! Conversions between domain values and the columns both databases store.

use anyhow::{Context, anyhow};
use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;

use crate::domain::money::{from_micros, to_micros};

/// An amount as integer micro-units.
pub fn money(amount: Decimal) -> anyhow::Result<i64> {
    to_micros(amount).ok_or_else(|| anyhow!("{amount} does not fit six decimal places"))
}

/// Integer micro-units as an amount.
pub fn amount(micros: i64) -> Decimal {
    from_micros(micros)
}

/// An instant as microseconds since the epoch.
pub fn instant(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

/// Microseconds since the epoch as an instant.
pub fn at(micros: i64) -> anyhow::Result<DateTime<Utc>> {
    DateTime::from_timestamp_micros(micros).ok_or_else(|| anyhow!("instant {micros} out of range"))
}

/// A local date as `YYYY-MM-DD`.
pub fn date(d: NaiveDate) -> String {
    d.format("%Y-%m-%d").to_string()
}

/// `YYYY-MM-DD` as a local date.
pub fn parse_date(s: &str) -> anyhow::Result<NaiveDate> {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").with_context(|| format!("stored date {s:?}"))
}

/// A boundary index from its column.
pub fn index(i: i64) -> anyhow::Result<u32> {
    u32::try_from(i).with_context(|| format!("boundary index {i}"))
}
