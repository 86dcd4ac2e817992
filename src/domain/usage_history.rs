//! The usage history an admin may see: whose rows (the scope rule), which rows (a grid period,
//! filters), and how each row is written to a CSV that a spreadsheet opens safely.
//!
//! Every export path — the `export-usage` command, the monthly email, a replay — asks
//! [`ExportScope::resolve`] (or [`ExportScope::for_admin`]) whose rows it may show, and the
//! store applies that scope to every query it runs: filters can only narrow it.

use std::borrow::Cow;

use chrono::{DateTime, Datelike, NaiveDate, SecondsFormat, Utc};
use chrono_tz::Tz;
use rust_decimal::Decimal;

use super::grid::Grid;
use super::model::{Admin, AdminRole};
use super::money::format_micro;
use super::words::{CompanyId, Direction, OfficeId, Service, Unit, UsageType, Wallet};

/// Whose usage an export holds: the whole company, or one office.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ExportScope {
    /// Every office of the company.
    Company,
    /// This office only.
    Office(OfficeId),
}

impl ExportScope {
    /// What an admin receives: a company admin the whole company, an office admin only
    /// their own office.
    pub fn for_admin(admin: &Admin) -> ExportScope {
        match &admin.role {
            AdminRole::Company => ExportScope::Company,
            AdminRole::Office(o) => ExportScope::Office(o.clone()),
        }
    }

    /// The scope of a request: `viewer` is the role of the admin asking (none for an
    /// operator, who may see everything), `office` the office asked for. An office admin
    /// asking for another office is refused; asking for nothing gives their own office.
    pub fn resolve(
        viewer: Option<&AdminRole>,
        office: Option<&OfficeId>,
    ) -> Result<ExportScope, String> {
        match (viewer, office) {
            (Some(AdminRole::Office(own)), Some(asked)) if own != asked => Err(format!(
                "an admin of office {own} may not export office {asked}"
            )),
            (Some(AdminRole::Office(own)), _) => Ok(ExportScope::Office(own.clone())),
            (_, Some(asked)) => Ok(ExportScope::Office(asked.clone())),
            (_, None) => Ok(ExportScope::Company),
        }
    }

    /// The office the export is limited to, if any.
    pub fn office(&self) -> Option<&OfficeId> {
        match self {
            ExportScope::Company => None,
            ExportScope::Office(o) => Some(o),
        }
    }

    /// Whether a row of `office` belongs to the export.
    pub fn covers(&self, office: &OfficeId) -> bool {
        self.office().is_none_or(|o| o == office)
    }

    /// `company` or the office id, as file names write it.
    pub fn as_str(&self) -> &str {
        match self {
            ExportScope::Company => "company",
            ExportScope::Office(o) => o.as_str(),
        }
    }

    /// Company-wide exports have an `Office` column; an office's export doesn't need one.
    pub fn has_office_column(&self) -> bool {
        *self == ExportScope::Company
    }
}

/// Optional filters of an export. Each narrows the rows of the scope; none widens it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HistoryFilter {
    /// Only this user or group (by id).
    pub party: Option<String>,
    /// Only this service.
    pub service: Option<Service>,
    /// Only rows paid (at least in part) from this wallet.
    pub wallet: Option<Wallet>,
    /// Only rows costing at least this.
    pub min_cost: Option<Decimal>,
    /// Only rows costing at most this.
    pub max_cost: Option<Decimal>,
}

/// Which rows of a company an export reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    /// Every accepted row that occurred in `[from, until)`, rated or not (an `export-usage`
    /// of a month).
    OccurredIn {
        /// Start of the period.
        from: DateTime<Utc>,
        /// End of the period (exclusive).
        until: DateTime<Utc>,
    },
    /// The rows rated by the close of boundary `k` (the emailed CSV of the period ending
    /// there): late rows of earlier periods first, then the period `[from, until)`.
    RatedBy {
        /// The boundary index.
        k: u32,
        /// Start of the period ending at the boundary.
        from: DateTime<Utc>,
        /// The boundary.
        until: DateTime<Utc>,
    },
}

/// A request for a company's usage history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryQuery {
    /// The company.
    pub company: CompanyId,
    /// Whose rows: applied to every query, whatever the filters say.
    pub scope: ExportScope,
    /// Which rows.
    pub selection: Selection,
    /// Narrowing filters.
    pub filter: HistoryFilter,
}

/// The grid period a `--month YYYY-MM` names: the one starting in that month in the
/// company's zone. Every month holds exactly one boundary, since boundary `k` is
/// `anchor + k months`. `None` before the anchor's month.
pub fn month_period(grid: &Grid, year: i32, month: u32) -> Option<u32> {
    let months = (year - grid.anchor.year()) * 12 + month as i32 - grid.anchor.month() as i32;
    u32::try_from(months).ok()
}

/// Parses `YYYY-MM`.
pub fn parse_month(s: &str) -> Result<(i32, u32), String> {
    let bad = || format!("{s:?} is not a month (YYYY-MM)");
    let (y, m) = s.split_once('-').ok_or_else(bad)?;
    if y.len() != 4 || m.len() != 2 {
        return Err(bad());
    }
    let year: i32 = y.parse().map_err(|_| bad())?;
    let month: u32 = m.parse().map_err(|_| bad())?;
    if !(1..=12).contains(&month) {
        return Err(bad());
    }
    Ok((year, month))
}

/// One row of the usage history, as the store reads it: names, not ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryRecord {
    /// The usage id (not written; keeps the order stable).
    pub id: String,
    /// When it happened.
    pub occurred_at: DateTime<Utc>,
    /// The office id.
    pub office: OfficeId,
    /// The office's name.
    pub office_name: String,
    /// The user's or group's name (empty when the row names none).
    pub party_name: String,
    /// The remote party's number.
    pub remote_number: String,
    /// Service.
    pub service: Service,
    /// Type within the service.
    pub usage_type: Option<UsageType>,
    /// Direction, where the service has one.
    pub direction: Option<Direction>,
    /// Call duration as reported.
    pub duration_s: Option<i64>,
    /// Billed quantity.
    pub billable_quantity: i64,
    /// What it counts.
    pub unit: Unit,
    /// Price per unit, as written in the rate card.
    pub rate: Decimal,
    /// Calls: billing increment.
    pub increment: Option<(u32, u32)>,
    /// Wallets paid from, in draw-down order; empty when not rated yet or free.
    pub wallet_sources: Vec<Wallet>,
    /// Exact cost.
    pub cost: Decimal,
}

/// The header of a usage-history CSV, in this order.
pub fn history_header(scope: &ExportScope) -> Vec<&'static str> {
    let mut h = vec![
        "Date/Time",
        "Office",
        "Team member/Group",
        "Phone number",
        "Service",
        "Type",
        "Direction",
        "Duration (s)",
        "Quantity",
        "Unit",
        "Rate",
        "Billing increment",
        "Wallet source",
        "Cost",
    ];
    if !scope.has_office_column() {
        h.remove(1);
    }
    h
}

/// The cells of one row, text cells made formula-safe.
pub fn history_cells(r: &HistoryRecord, tz: Tz, scope: &ExportScope) -> Vec<String> {
    let text = |s: &str| neutralise(s).into_owned();
    let mut cells = vec![
        local_time(r.occurred_at, tz),
        text(&r.office_name),
        text(&r.party_name),
        text(&r.remote_number),
        r.service.as_str().to_string(),
        r.usage_type.map_or("", UsageType::as_str).to_string(),
        r.direction.map_or("", Direction::as_str).to_string(),
        r.duration_s.map(|d| d.to_string()).unwrap_or_default(),
        r.billable_quantity.to_string(),
        r.unit.as_str().to_string(),
        r.rate.to_string(),
        r.increment
            .map(|(first, next)| format!("{first}/{next}"))
            .unwrap_or_default(),
        r.wallet_sources
            .iter()
            .map(Wallet::to_string)
            .collect::<Vec<_>>()
            .join("+"),
        format_micro(r.cost),
    ];
    if !scope.has_office_column() {
        cells.remove(1);
    }
    cells
}

/// An instant as ISO 8601 with the zone's offset at that instant: `2026-02-11T09:03:09-05:00`.
pub fn local_time(t: DateTime<Utc>, tz: Tz) -> String {
    t.with_timezone(&tz)
        .to_rfc3339_opts(SecondsFormat::AutoSi, false)
}

/// A text cell that a spreadsheet would run as a formula — it starts with `=`, `+`, `-`, `@`,
/// a tab or a carriage return — is prefixed with an apostrophe, which spreadsheets show as
/// text. A plain number (`-12.5`) or a phone number (`+1 (212) 555-0101`) is left as it is:
/// it computes nothing and must stay readable.
pub fn neutralise(cell: &str) -> Cow<'_, str> {
    let risky = cell.starts_with(['=', '+', '-', '@', '\t', '\r']);
    if risky && !is_plain_number(cell) && !is_phone_number(cell) {
        Cow::Owned(format!("'{cell}"))
    } else {
        Cow::Borrowed(cell)
    }
}

/// `[+-]digits[.digits]`.
fn is_plain_number(s: &str) -> bool {
    let body = s.strip_prefix(['+', '-']).unwrap_or(s);
    let (int, frac) = body.split_once('.').unwrap_or((body, "0"));
    !int.is_empty()
        && int.bytes().all(|b| b.is_ascii_digit())
        && !frac.is_empty()
        && frac.bytes().all(|b| b.is_ascii_digit())
}

/// An optional `+`, then digits with the separators people write in numbers (spaces,
/// hyphens, dots, parentheses): at least 3 digits, and every group after the first (a
/// country code may be one digit) of two digits or more, so that `+1-2` is not taken for one.
fn is_phone_number(s: &str) -> bool {
    let body = s.strip_prefix('+').unwrap_or(s);
    if body.is_empty() || !body.starts_with(|c: char| c.is_ascii_digit() || c == '(') {
        return false;
    }
    let allowed = body
        .chars()
        .all(|c| c.is_ascii_digit() || matches!(c, ' ' | '-' | '.' | '(' | ')'));
    let digits = body.chars().filter(char::is_ascii_digit).count();
    // The first group may be a one-digit country code.
    let groups_ok = body.split(['-', ' ', '.']).skip(1).all(|g| {
        g.trim_matches(['(', ')'])
            .chars()
            .filter(char::is_ascii_digit)
            .count()
            >= 2
    });
    allowed && digits >= 3 && groups_ok
}

/// The file name of an export: `usage-history-YYYY-MM-DD.csv`, the date being the export's
/// (or, for an emailed CSV, the boundary's) local date.
pub fn export_file_name(date: NaiveDate) -> String {
    format!("usage-history-{}.csv", date.format("%Y-%m-%d"))
}

/// The name a replay gives an emailed CSV in `exports/`:
/// `<company>--<company|office id>--usage-history-<date>.csv`.
pub fn exports_file_name(company: &CompanyId, scope: &ExportScope, date: NaiveDate) -> String {
    format!("{company}--{}--{}", scope.as_str(), export_file_name(date))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::{d, dec, t};

    fn office_admin(office: &str) -> Admin {
        Admin {
            email: format!("{office}@x.example"),
            company: "acme".into(),
            role: AdminRole::Office(office.into()),
        }
    }

    #[test]
    fn an_office_admin_sees_only_their_own_office() {
        let sf = office_admin("sf");
        assert_eq!(
            ExportScope::for_admin(&sf),
            ExportScope::Office("sf".into())
        );
        let nyc = OfficeId::from("nyc");
        assert!(ExportScope::resolve(Some(&sf.role), Some(&nyc)).is_err());
        assert_eq!(
            ExportScope::resolve(Some(&sf.role), None),
            Ok(ExportScope::Office("sf".into()))
        );
        assert_eq!(
            ExportScope::resolve(Some(&sf.role), Some(&"sf".into())),
            Ok(ExportScope::Office("sf".into()))
        );
        let sf_scope = ExportScope::for_admin(&sf);
        assert!(sf_scope.covers(&"sf".into()) && !sf_scope.covers(&nyc));
    }

    #[test]
    fn a_company_admin_or_operator_sees_what_they_ask_for() {
        assert_eq!(ExportScope::resolve(None, None), Ok(ExportScope::Company));
        assert_eq!(
            ExportScope::resolve(Some(&AdminRole::Company), Some(&"nyc".into())),
            Ok(ExportScope::Office("nyc".into()))
        );
        assert!(ExportScope::Company.covers(&"anything".into()));
        assert!(ExportScope::Company.has_office_column());
        assert!(!ExportScope::Office("sf".into()).has_office_column());
    }

    #[test]
    fn formula_cells_are_neutralised_and_numbers_stay() {
        for risky in [
            "=1+1",
            "=HYPERLINK(\"http://x\",\"y\")",
            "+SUM(A1)",
            "-2+3",
            "@Night desk",
            "\tx",
            "\r=1",
            "+1-2",
            "-",
            "+",
        ] {
            assert_eq!(neutralise(risky), format!("'{risky}"), "{risky:?}");
        }
        for safe in [
            "+12125550101",
            "+1 (212) 555-0101",
            "+44 20 7123 4567",
            "-12.5",
            "+3",
            "42",
            "Ada Lovelace",
            "",
            "a=b",
        ] {
            assert_eq!(neutralise(safe), safe, "{safe:?}");
        }
    }

    #[test]
    fn months_name_the_period_starting_in_them() {
        let grid = Grid::new(chrono_tz::America::New_York, d("2026-01-31"));
        assert_eq!(month_period(&grid, 2026, 2), Some(1));
        assert_eq!(grid.boundary_date(1), d("2026-02-28"));
        assert_eq!(month_period(&grid, 2027, 1), Some(12));
        assert_eq!(month_period(&grid, 2025, 12), None);
        assert_eq!(parse_month("2026-03"), Ok((2026, 3)));
        for bad in ["2026-13", "2026-3", "26-03", "2026/03", "March"] {
            assert!(parse_month(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn rows_are_written_with_local_times_names_and_safe_cells() {
        let r = HistoryRecord {
            id: "c-1".into(),
            occurred_at: t("2026-02-11T14:03:09Z"),
            office: "nyc".into(),
            office_name: "New York".into(),
            party_name: "=cmd".into(),
            remote_number: "+442071234567".into(),
            service: Service::Calling,
            usage_type: Some(UsageType::International),
            direction: Some(Direction::Outbound),
            duration_s: Some(187),
            billable_quantity: 192,
            unit: Unit::Second,
            rate: dec("0.0250"),
            increment: Some((6, 6)),
            wallet_sources: vec![Wallet::Allowance(Service::Calling), Wallet::Universal],
            cost: dec("0.08"),
        };
        let tz = chrono_tz::America::New_York;
        let cells = history_cells(&r, tz, &ExportScope::Company);
        assert_eq!(
            cells,
            [
                "2026-02-11T09:03:09-05:00",
                "New York",
                "'=cmd",
                "+442071234567",
                "calling",
                "international",
                "outbound",
                "187",
                "192",
                "second",
                "0.0250",
                "6/6",
                "allowance:calling+universal",
                "0.080000"
            ]
        );
        let office = ExportScope::Office("nyc".into());
        assert_eq!(history_cells(&r, tz, &office).len(), 13);
        assert_eq!(history_header(&office)[1], "Team member/Group");
        assert_eq!(history_header(&ExportScope::Company).len(), 14);
    }

    #[test]
    fn file_names_follow_the_dates_and_scopes() {
        assert_eq!(
            export_file_name(d("2026-02-28")),
            "usage-history-2026-02-28.csv"
        );
        assert_eq!(
            exports_file_name(
                &"acme".into(),
                &ExportScope::Office("sf".into()),
                d("2026-02-28")
            ),
            "acme--sf--usage-history-2026-02-28.csv"
        );
        assert_eq!(
            exports_file_name(&"acme".into(), &ExportScope::Company, d("2026-02-28")),
            "acme--company--usage-history-2026-02-28.csv"
        );
    }
}
