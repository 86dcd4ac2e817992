//! The limits every input figure must lie within (SPEC §12.27).
//!
//! They keep every figure a close computes from the inputs far inside what the arithmetic and
//! the storage can hold: micro-units of ±10¹² currency units times a quantity of 10⁹ still fit
//! a `Decimal`, and every date of a grid stays inside chrono's range. An input beyond them is
//! refused where it is read (a load error for the scenario and events, a rejection for a usage
//! row); each check returns the message for the reader to attach a file, line and field to.

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use rust_decimal::Decimal;

/// The largest money amount, price or credit, in currency units (either sign).
pub const MAX_AMOUNT_UNITS: i64 = 1_000_000_000_000;

/// The largest quantity: seats, pages, sessions, units, segments, seconds.
pub const MAX_QUANTITY: i64 = 1_000_000_000;

/// The first year an instant or date may fall in.
pub const FIRST_YEAR: i32 = 2000;

/// The last year an instant or date may fall in.
pub const LAST_YEAR: i32 = 2199;

/// An amount within ±[`MAX_AMOUNT_UNITS`].
pub fn amount(d: Decimal) -> Result<Decimal, String> {
    if d.abs() <= Decimal::from(MAX_AMOUNT_UNITS) {
        Ok(d)
    } else {
        Err(format!(
            "{d} is beyond the limit of ±{MAX_AMOUNT_UNITS} currency units"
        ))
    }
}

/// A quantity within ±[`MAX_QUANTITY`] (whether it may be zero or negative is the reader's
/// rule, not this one).
pub fn quantity(n: i64) -> Result<i64, String> {
    if n.unsigned_abs() <= MAX_QUANTITY.unsigned_abs() {
        Ok(n)
    } else {
        Err(format!("{n} is beyond the limit of {MAX_QUANTITY}"))
    }
}

fn year(y: i32, shown: impl std::fmt::Display) -> Result<(), String> {
    if (FIRST_YEAR..=LAST_YEAR).contains(&y) {
        Ok(())
    } else {
        Err(format!(
            "{shown} is outside the years {FIRST_YEAR}–{LAST_YEAR}"
        ))
    }
}

/// A local date within the years [`FIRST_YEAR`]–[`LAST_YEAR`].
pub fn date(d: NaiveDate) -> Result<NaiveDate, String> {
    year(d.year(), d).map(|()| d)
}

/// An instant whose UTC date lies within the years [`FIRST_YEAR`]–[`LAST_YEAR`].
pub fn instant(t: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    year(t.year(), t.to_rfc3339()).map(|()| t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    #[test]
    fn figures_at_the_limits_pass_and_beyond_them_fail() {
        let dec = |s: &str| Decimal::from_str(s).unwrap();
        assert!(amount(dec("1000000000000")).is_ok());
        assert!(amount(dec("-1000000000000")).is_ok());
        assert_eq!(
            amount(dec("1000000000000.01")),
            Err("1000000000000.01 is beyond the limit of ±1000000000000 currency units".into())
        );
        assert!(amount(dec("-1000000000001")).is_err());
        assert_eq!(quantity(1_000_000_000), Ok(1_000_000_000));
        assert_eq!(quantity(-1_000_000_000), Ok(-1_000_000_000));
        assert_eq!(
            quantity(1_000_000_001),
            Err("1000000001 is beyond the limit of 1000000000".into())
        );
        assert!(quantity(i64::MIN).is_err());
        let day = |y, m, d| NaiveDate::from_ymd_opt(y, m, d).unwrap();
        assert!(date(day(2000, 1, 1)).is_ok());
        assert!(date(day(2199, 12, 31)).is_ok());
        assert_eq!(
            date(day(1999, 12, 31)),
            Err("1999-12-31 is outside the years 2000–2199".into())
        );
        assert!(date(day(2200, 1, 1)).is_err());
        let at = |d: NaiveDate| d.and_hms_opt(0, 0, 0).unwrap().and_utc();
        assert!(instant(at(day(2000, 1, 1))).is_ok());
        assert!(instant(at(day(2200, 1, 1))).is_err());
    }
}
