//! The billing grid: monthly boundaries anchored on a local date, at local midnight.
//!
//! Boundary `k` is the local midnight of `anchor + k months` (clamped to the month's last day,
//! always computed from the anchor so the day comes back). Periods are half-open
//! `[boundary k, boundary k+1)`.

use chrono::{DateTime, Datelike, Duration, LocalResult, Months, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;

/// How long a license term or a bundle cadence lasts on the grid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Term {
    /// One grid period.
    Monthly,
    /// Twelve grid periods, counted from the anchor (or from a bundle's start).
    Annual,
}

impl Term {
    /// Grid periods in one term.
    pub fn periods(self) -> u32 {
        match self {
            Term::Monthly => 1,
            Term::Annual => 12,
        }
    }

    /// The index of the first boundary of the term containing period `k`, for terms that
    /// start at boundary `origin`.
    pub fn term_start(self, origin: u32, k: u32) -> u32 {
        origin + (k - origin) / self.periods() * self.periods()
    }

    /// Whether a term (counted from `origin`) starts at boundary `k`.
    pub fn starts_at(self, origin: u32, k: u32) -> bool {
        k >= origin && (k - origin).is_multiple_of(self.periods())
    }

    /// Whether a term (counted from `origin`) ends at boundary `k`.
    pub fn ends_at(self, origin: u32, k: u32) -> bool {
        k > origin && self.starts_at(origin, k)
    }

    /// The name used in files and messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Term::Monthly => "monthly",
            Term::Annual => "annual",
        }
    }
}

/// The local midnight that starts `date` in `tz`, as an instant.
///
/// A midnight that does not exist (a DST gap) maps to the first instant after the gap; an
/// ambiguous one (a DST overlap) to the earlier instant.
pub fn local_midnight(tz: Tz, date: NaiveDate) -> DateTime<Utc> {
    let midnight = date.and_hms_opt(0, 0, 0).expect("midnight is a valid time");
    let mut local = midnight;
    // Gaps are whole minutes long and never longer than a day; walk forward to the first
    // local minute that exists. Its earliest instant is the first instant after the gap.
    for _ in 0..=24 * 60 {
        match tz.from_local_datetime(&local) {
            LocalResult::Single(t) => return t.with_timezone(&Utc),
            LocalResult::Ambiguous(early, _) => return early.with_timezone(&Utc),
            LocalResult::None => local += Duration::minutes(1),
        }
    }
    unreachable!("no time zone has a gap longer than a day")
}

/// A company's billing grid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grid {
    /// The company's IANA zone.
    pub tz: Tz,
    /// Boundary 0, a local date.
    pub anchor: NaiveDate,
}

impl Grid {
    /// Builds the grid of a company.
    pub fn new(tz: Tz, anchor: NaiveDate) -> Self {
        Grid { tz, anchor }
    }

    /// The local date of boundary `k`.
    pub fn boundary_date(&self, k: u32) -> NaiveDate {
        self.anchor
            .checked_add_months(Months::new(k))
            .expect("boundary within chrono's date range")
    }

    /// The instant of boundary `k`.
    pub fn boundary_at(&self, k: u32) -> DateTime<Utc> {
        local_midnight(self.tz, self.boundary_date(k))
    }

    /// The local calendar date of an instant in the company's zone.
    pub fn local_date(&self, t: DateTime<Utc>) -> NaiveDate {
        t.with_timezone(&self.tz).date_naive()
    }

    /// The index of the period containing `t`, or `None` before the anchor.
    pub fn period_index(&self, t: DateTime<Utc>) -> Option<u32> {
        if t < self.boundary_at(0) {
            return None;
        }
        let d = self.local_date(t);
        let months =
            (d.year() - self.anchor.year()) * 12 + d.month() as i32 - self.anchor.month() as i32;
        let mut k = months.saturating_sub(1).max(0) as u32;
        while self.boundary_at(k + 1) <= t {
            k += 1;
        }
        while k > 0 && self.boundary_at(k) > t {
            k -= 1;
        }
        Some(k)
    }

    /// The index of the first boundary strictly after `t`.
    pub fn first_boundary_after(&self, t: DateTime<Utc>) -> u32 {
        match self.period_index(t) {
            Some(k) => k + 1,
            None => 0,
        }
    }

    /// The index of the boundary at exactly `t`, if there is one.
    pub fn boundary_index_at(&self, t: DateTime<Utc>) -> Option<u32> {
        self.period_index(t).filter(|&k| self.boundary_at(k) == t)
    }

    /// The index of the boundary falling on local date `date`, if there is one.
    pub fn boundary_index_on(&self, date: NaiveDate) -> Option<u32> {
        self.boundary_index_at(local_midnight(self.tz, date))
            .filter(|&k| self.boundary_date(k) == date)
    }

    /// Local calendar days from `from` (inclusive) to `to` (exclusive).
    pub fn days_between(from: NaiveDate, to: NaiveDate) -> i64 {
        (to - from).num_days()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::{d, t};
    use proptest::prelude::*;

    #[test]
    fn month_end_anchor_comes_back_to_31() {
        let g = Grid::new(chrono_tz::UTC, d("2026-01-31"));
        let dates: Vec<_> = (0..5).map(|k| g.boundary_date(k).to_string()).collect();
        assert_eq!(
            dates,
            [
                "2026-01-31",
                "2026-02-28",
                "2026-03-31",
                "2026-04-30",
                "2026-05-31"
            ]
        );
        let leap = Grid::new(chrono_tz::UTC, d("2028-02-29"));
        assert_eq!(leap.boundary_date(1), d("2028-03-29"));
        assert_eq!(leap.boundary_date(12), d("2029-02-28"));
        assert_eq!(leap.boundary_date(48), d("2032-02-29"));
    }

    #[test]
    fn dst_gap_midnight_is_first_instant_after_the_gap() {
        // America/Santiago jumps from 00:00 to 01:00 on 2026-09-06.
        let g = Grid::new(chrono_tz::America::Santiago, d("2026-08-06"));
        assert_eq!(g.boundary_at(0), t("2026-08-06T04:00:00Z"));
        assert_eq!(g.boundary_at(1), t("2026-09-06T04:00:00Z"));
        assert_eq!(g.boundary_at(2), t("2026-10-06T03:00:00Z"));
        assert_eq!(g.period_index(t("2026-09-06T03:59:59Z")), Some(0));
        assert_eq!(g.period_index(t("2026-09-06T04:00:00Z")), Some(1));
    }

    #[test]
    fn ambiguous_midnight_takes_the_earlier_instant() {
        // America/Havana falls back from 01:00 to 00:00 on 2026-11-01, so that local midnight
        // happens twice: at 04:00Z (CDT) and 05:00Z (CST).
        let havana = chrono_tz::America::Havana;
        let first = local_midnight(havana, d("2026-11-01"));
        let midnight = d("2026-11-01").and_hms_opt(0, 0, 0).unwrap();
        let LocalResult::Ambiguous(a, b) = havana.from_local_datetime(&midnight) else {
            panic!("the zone data must have Havana's overlap on 2026-11-01");
        };
        assert!(a < b);
        assert_eq!(first, a.with_timezone(&Utc));
        assert_eq!(first, t("2026-11-01T04:00:00Z"));
    }

    #[test]
    fn event_at_boundary_belongs_to_the_period_that_starts_there() {
        let g = Grid::new(chrono_tz::America::New_York, d("2026-01-31"));
        let b1 = g.boundary_at(1);
        assert_eq!(b1, t("2026-02-28T05:00:00Z"));
        assert_eq!(g.period_index(b1), Some(1));
        assert_eq!(g.period_index(b1 - Duration::seconds(1)), Some(0));
        assert_eq!(
            g.period_index(g.boundary_at(0) - Duration::seconds(1)),
            None
        );
        assert_eq!(g.first_boundary_after(b1), 2);
        assert_eq!(g.boundary_index_on(d("2026-03-31")), Some(2));
        assert_eq!(g.boundary_index_on(d("2026-03-30")), None);
    }

    #[test]
    fn annual_terms_run_twelve_periods_from_the_origin() {
        assert!(Term::Annual.starts_at(0, 0));
        assert!(!Term::Annual.ends_at(0, 0));
        assert!(Term::Annual.ends_at(0, 12));
        assert!(!Term::Annual.starts_at(0, 5));
        assert_eq!(Term::Annual.term_start(0, 17), 12);
        assert_eq!(Term::Monthly.term_start(0, 17), 17);
        assert!(Term::Monthly.ends_at(0, 1));
        assert_eq!(Term::Annual.term_start(3, 14), 3);
        assert_eq!(Term::Annual.term_start(3, 15), 15);
    }

    fn zones() -> impl Strategy<Value = Tz> {
        prop::sample::select(vec![
            chrono_tz::UTC,
            chrono_tz::America::New_York,
            chrono_tz::America::Santiago,
            chrono_tz::America::Havana,
            chrono_tz::Europe::London,
            chrono_tz::Australia::Lord_Howe,
            chrono_tz::Asia::Kolkata,
            chrono_tz::Pacific::Apia,
        ])
    }

    proptest! {
        /// The twelve periods of a year tile it exactly: each starts where the previous ended,
        /// every instant of the year falls in exactly one, and they add up to the year.
        #[test]
        fn periods_of_a_year_tile_it(
            tz in zones(),
            days in 0i64..3000,
            start in 0u32..30,
            probe in 0i64..(366 * 86_400),
        ) {
            let anchor = d("2024-01-01") + Duration::days(days);
            let g = Grid::new(tz, anchor);
            let mut total = Duration::zero();
            for k in start..start + 12 {
                let (a, b) = (g.boundary_at(k), g.boundary_at(k + 1));
                prop_assert!(a < b);
                prop_assert_eq!(g.period_index(a), Some(k));
                prop_assert_eq!(g.period_index(b - Duration::microseconds(1)), Some(k));
                // 28 to 31 days, give or take a DST hour (Lord Howe shifts half an hour).
                prop_assert!(b - a >= Duration::hours(28 * 24 - 1));
                prop_assert!(b - a <= Duration::hours(31 * 24 + 1));
                total += b - a;
            }
            prop_assert_eq!(total, g.boundary_at(start + 12) - g.boundary_at(start));
            let instant = g.boundary_at(start) + Duration::seconds(probe);
            if instant < g.boundary_at(start + 12) {
                let k = g.period_index(instant).unwrap();
                prop_assert!(g.boundary_at(k) <= instant && instant < g.boundary_at(k + 1));
            }
        }

        /// A boundary's date always keeps the anchor's day of month, clamped to the month.
        #[test]
        fn boundary_day_comes_back(days in 0i64..3000, k in 0u32..60) {
            let anchor = d("2024-01-01") + Duration::days(days);
            let g = Grid::new(chrono_tz::UTC, anchor);
            let b = g.boundary_date(k);
            let last_day = (b.with_day(1).unwrap() + Months::new(1) - Duration::days(1)).day();
            prop_assert_eq!(b.day(), anchor.day().min(last_day));
        }
    }
}
