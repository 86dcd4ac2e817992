//! Money: exact decimals, currencies and their minor units, rounding and formatting.
//!
//! Amounts are `rust_decimal::Decimal` everywhere. Storage keeps them as integer micro-units
//! (10⁻⁶), so every stored amount must fit six decimal places. Invoice lines are rounded half-up
//! (away from zero) to the currency's minor unit, once per line.

use rust_decimal::{Decimal, RoundingStrategy};

/// Decimal places kept for usage costs, balances and every stored amount.
pub const MICRO_DP: u32 = 6;

/// An ISO 4217 currency with its minor unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Currency {
    code: String,
    minor: u32,
}

impl Currency {
    /// Looks a currency up by its ISO 4217 code; `None` for an unknown code.
    pub fn from_code(code: &str) -> Option<Currency> {
        let c = iso_currency::Currency::from_code(code)?;
        // Currencies without a minor unit in ISO 4217 (gold, SDR …) are not billable.
        let minor = c.exponent()?;
        Some(Currency {
            code: c.code().to_string(),
            minor: u32::from(minor),
        })
    }

    /// The ISO 4217 code, e.g. `USD`.
    pub fn code(&self) -> &str {
        &self.code
    }

    /// Digits after the decimal point: 2 for USD, 0 for JPY, 3 for KWD.
    pub fn minor_units(&self) -> u32 {
        self.minor
    }

    /// Rounds an invoice line amount half-up (away from zero) to the minor unit.
    pub fn round_line(&self, amount: Decimal) -> Decimal {
        amount.round_dp_with_strategy(self.minor, RoundingStrategy::MidpointAwayFromZero)
    }

    /// Formats an amount with exactly the currency's minor digits (`25.00`, `2500`).
    pub fn format_amount(&self, amount: Decimal) -> String {
        let mut a = self.round_line(amount);
        a.rescale(self.minor);
        a.to_string()
    }

    /// Formats a unit price with the minor digits, and more only when the price has more
    /// (`25.00`, `0.025`).
    pub fn format_price(&self, price: Decimal) -> String {
        let mut p = price.normalize();
        if p.scale() < self.minor {
            p.rescale(self.minor);
        }
        p.to_string()
    }

    /// Whether an amount is expressible in whole minor units.
    pub fn fits_minor_unit(&self, amount: Decimal) -> bool {
        amount.normalize().scale() <= self.minor
    }
}

/// Rounds half-up at the sixth decimal place, where a division made it necessary.
pub fn round_micro(amount: Decimal) -> Decimal {
    amount.round_dp_with_strategy(MICRO_DP, RoundingStrategy::MidpointAwayFromZero)
}

/// Converts an amount to integer micro-units; `None` when it has more than six decimals or
/// does not fit an `i64`.
pub fn to_micros(amount: Decimal) -> Option<i64> {
    if amount.normalize().scale() > MICRO_DP {
        return None;
    }
    let scaled = amount.checked_mul(Decimal::from(1_000_000))?;
    i64::try_from(scaled).ok()
}

/// Whether an amount can be stored: six decimals at most, and within the range of 64-bit
/// micro-units (about ±9.2 × 10¹²).
pub fn storable(amount: Decimal) -> bool {
    to_micros(amount).is_some()
}

/// Converts integer micro-units back to an amount with six decimals.
pub fn from_micros(micros: i64) -> Decimal {
    Decimal::new(micros, MICRO_DP)
}

/// Formats an amount with six decimals, as ledger amounts and costs are written.
pub fn format_micro(amount: Decimal) -> String {
    let mut a = round_micro(amount);
    a.rescale(MICRO_DP);
    a.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::dec;
    use proptest::prelude::*;

    #[test]
    fn currencies_know_their_minor_units() {
        assert_eq!(Currency::from_code("USD").unwrap().minor_units(), 2);
        assert_eq!(Currency::from_code("JPY").unwrap().minor_units(), 0);
        assert_eq!(Currency::from_code("KWD").unwrap().minor_units(), 3);
        assert!(Currency::from_code("XXX").is_none());
        assert!(Currency::from_code("usd").is_none());
    }

    #[test]
    fn lines_round_half_up_away_from_zero() {
        let usd = Currency::from_code("USD").unwrap();
        assert_eq!(usd.round_line(dec("2.345")), dec("2.35"));
        assert_eq!(usd.round_line(dec("2.355")), dec("2.36"));
        assert_eq!(usd.round_line(dec("-2.345")), dec("-2.35"));
        assert_eq!(usd.round_line(dec("2.3449999")), dec("2.34"));
        let jpy = Currency::from_code("JPY").unwrap();
        assert_eq!(jpy.format_amount(dec("2500.5")), "2501");
    }

    #[test]
    fn formats_follow_the_currency() {
        let usd = Currency::from_code("USD").unwrap();
        assert_eq!(usd.format_amount(dec("25")), "25.00");
        assert_eq!(usd.format_amount(dec("-0.5")), "-0.50");
        assert_eq!(usd.format_price(dec("25")), "25.00");
        assert_eq!(usd.format_price(dec("0.0250")), "0.025");
        assert_eq!(usd.format_price(dec("480.000")), "480.00");
        assert_eq!(format_micro(dec("-0.0125")), "-0.012500");
    }

    #[test]
    fn micros_refuse_more_than_six_decimals() {
        assert_eq!(to_micros(dec("1.5")), Some(1_500_000));
        assert_eq!(to_micros(dec("0.0000001")), None);
        assert_eq!(to_micros(dec("1.2500000")), Some(1_250_000));
        assert_eq!(from_micros(-12_500), dec("-0.0125"));
    }

    proptest! {
        #[test]
        fn micros_round_trip(m in -1_000_000_000_000i64..1_000_000_000_000) {
            prop_assert_eq!(to_micros(from_micros(m)), Some(m));
        }

        /// Rounding moves a line by at most half a minor unit.
        #[test]
        fn rounding_is_within_half_a_cent(m in -1_000_000_000_000i64..1_000_000_000_000) {
            let usd = Currency::from_code("USD").unwrap();
            let a = from_micros(m);
            prop_assert!((usd.round_line(a) - a).abs() <= dec("0.005"));
        }
    }
}
