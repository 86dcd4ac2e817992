//! Invoice documents and their lines: license fees for terms starting at a boundary,
//! prorations of seats added during the closed period, and the prices in force.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;

use super::grid::Grid;
use super::licenses::{Pool, PoolKey, Purchase, proration};
use super::model::{Billing, Bundle, BundleKind, Company, Event, EventKind, Product};
use super::money::Currency;
use super::wallets::{EntryKind, LedgerEntry, Wallets};
use super::words::{CompanyId, OfficeId, Wallet};

/// What kind of document a company gets at a boundary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DocumentKind {
    /// For invoiced companies.
    Invoice,
    /// For card companies: same lines, charged to the card.
    CardStatement,
    /// A correction issued by a re-run.
    Adjustment,
}

impl DocumentKind {
    /// The regular document of a company.
    pub fn for_billing(billing: Billing) -> Self {
        match billing {
            Billing::Invoiced => DocumentKind::Invoice,
            Billing::Card => DocumentKind::CardStatement,
        }
    }

    /// The name used in files.
    pub fn as_str(self) -> &'static str {
        match self {
            DocumentKind::Invoice => "invoice",
            DocumentKind::CardStatement => "card_statement",
            DocumentKind::Adjustment => "adjustment",
        }
    }

    /// Parses the name used in files.
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Invoice, Self::CardStatement, Self::Adjustment]
            .into_iter()
            .find(|k| k.as_str() == s)
    }
}

/// What an invoice line bills.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LineKind {
    /// Seats for a term starting at the boundary.
    LicenseFee,
    /// Seats added during the period, for the rest of their term.
    Proration,
    /// A bundle's fee for a cadence period starting at the boundary.
    BundleFee,
    /// Credits bought by an invoiced company.
    CreditPurchase,
    /// An auto-recharge of an invoiced company.
    AutoRecharge,
    /// A negative `universal` balance brought back to zero.
    UsageArrears,
    /// The delta of a re-run.
    Adjustment,
}

impl LineKind {
    /// The name used in files.
    pub fn as_str(self) -> &'static str {
        match self {
            LineKind::LicenseFee => "license_fee",
            LineKind::Proration => "proration",
            LineKind::BundleFee => "bundle_fee",
            LineKind::CreditPurchase => "credit_purchase",
            LineKind::AutoRecharge => "auto_recharge",
            LineKind::UsageArrears => "usage_arrears",
            LineKind::Adjustment => "adjustment",
        }
    }

    /// Parses the name used in files.
    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::LicenseFee,
            Self::Proration,
            Self::BundleFee,
            Self::CreditPurchase,
            Self::AutoRecharge,
            Self::UsageArrears,
            Self::Adjustment,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }
}

/// One line of a document; `amount` is already rounded to the currency's minor unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// What it bills.
    pub kind: LineKind,
    /// The office (none for company-wide lines).
    pub office: Option<OfficeId>,
    /// Product or bundle id (empty where none applies).
    pub product: String,
    /// Free text for people.
    pub description: String,
    /// Seats or units; `None` on adjustment lines.
    pub quantity: Option<i64>,
    /// Price per unit; `None` on adjustment lines.
    pub unit_price: Option<Decimal>,
    /// The rounded amount.
    pub amount: Decimal,
    /// What the line was built from (a purchase's `events.jsonl:<line>`), for matching
    /// lines on a re-run; empty where kind, office and product identify the line.
    pub source: String,
    /// On an adjustment line, the kind of the line it corrects: with `office`, `product` and
    /// `source` it names that line, so a later re-run adds it to what was billed for it.
    /// `None` on every other line.
    pub corrects: Option<LineKind>,
}

/// A document issued at a boundary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document {
    /// `<company>-<YYYYMMDD>`, `-A<n>` for adjustments.
    pub number: String,
    /// The company.
    pub company: CompanyId,
    /// Invoice, card statement or adjustment.
    pub kind: DocumentKind,
    /// Boundary index on the company's grid.
    pub boundary_index: u32,
    /// The boundary's local date.
    pub boundary: NaiveDate,
    /// First local date of the grid period starting at the boundary.
    pub period_start: NaiveDate,
    /// The exclusive end of that period: the next boundary's local date.
    pub period_end: NaiveDate,
    /// The lines, in file order: license fees, prorations, bundle fees, credit lines, arrears.
    pub lines: Vec<Line>,
    /// The company's currency.
    pub currency: Currency,
}

impl Document {
    /// The sum of the rounded lines.
    pub fn total(&self) -> Decimal {
        self.lines.iter().map(|l| l.amount).sum()
    }
}

/// The invoice number of a company's document at a boundary date.
pub fn invoice_number(company: &CompanyId, boundary: NaiveDate) -> String {
    format!("{company}-{}", boundary.format("%Y%m%d"))
}

/// A recorded price correction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PriceCorrection {
    /// When it was recorded.
    pub recorded_at: DateTime<Utc>,
    /// The product.
    pub product: String,
    /// Applies to terms starting on or after this local date.
    pub from: NaiveDate,
    /// The new price per seat per term.
    pub unit_price: Decimal,
}

/// The prices of one company: scenario prices and its corrections, in recorded order. Built
/// from the company's accepted events by [`PriceList::from_events`].
#[derive(Debug, Clone, Default)]
pub struct PriceList {
    base: BTreeMap<String, Decimal>,
    corrections: Vec<PriceCorrection>,
}

impl PriceList {
    /// Prices from the products, corrected by `corrections` (in the order recorded).
    pub fn new(products: &BTreeMap<String, Product>, corrections: Vec<PriceCorrection>) -> Self {
        PriceList {
            base: products
                .values()
                .map(|p| (p.code.clone(), p.unit_price))
                .collect(),
            corrections,
        }
    }

    /// The company's prices with every correction among its accepted `events`.
    pub fn from_events(products: &BTreeMap<String, Product>, events: &[Event]) -> Self {
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
        PriceList::new(products, corrections)
    }

    /// The price of a term of `product` starting on `term_start`, counting only corrections
    /// recorded before `recorded_before`; the last recorded correction that applies wins.
    pub fn price(
        &self,
        product: &str,
        term_start: NaiveDate,
        recorded_before: DateTime<Utc>,
    ) -> Decimal {
        self.corrections
            .iter()
            .rev()
            .find(|c| {
                c.product == product && c.from <= term_start && c.recorded_at < recorded_before
            })
            .map(|c| c.unit_price)
            .or_else(|| self.base.get(product).copied())
            .unwrap_or_default()
    }
}

/// `1 seat`, `3 seats`: a count of seats as a person writes it.
fn seats(n: i64) -> String {
    if n == 1 {
        "1 seat".to_string()
    } else {
        format!("{n} seats")
    }
}

/// Builds the license lines of the document at boundary `k`.
///
/// `pools` are the pools after the removals due at the boundary; `purchases` are every
/// purchase of the company (those made in the period ending at `k` are billed);
/// `recorded_before` limits the price corrections that count (the boundary itself, or a
/// re-run's instant). `Err` names a line whose amount is beyond what a decimal can hold.
pub fn license_lines(
    company: &Company,
    products: &BTreeMap<String, Product>,
    prices: &PriceList,
    k: u32,
    pools: &BTreeMap<PoolKey, Pool>,
    purchases: &[Purchase],
    recorded_before: DateTime<Utc>,
) -> Result<Vec<Line>, String> {
    let grid = company.grid();
    let currency = &company.currency;
    let mut lines = Vec::new();
    for (
        PoolKey {
            office,
            product: code,
        },
        pool,
    ) in pools
    {
        let Some(product) = products.get(code) else {
            continue;
        };
        if pool.quantity <= 0 || !product.term.starts_at(0, k) {
            continue;
        }
        let start = grid.boundary_date(k);
        let end = grid.boundary_date(k + product.term.periods());
        let price = prices.price(code, start, recorded_before);
        let quantity = Decimal::from(pool.quantity);
        lines.push(Line {
            kind: LineKind::LicenseFee,
            office: Some(office.clone()),
            product: code.clone(),
            description: format!(
                "{}: {}, {start} to {end}",
                product.name,
                seats(pool.quantity)
            ),
            quantity: Some(pool.quantity),
            unit_price: Some(price),
            amount: currency.round_line(quantity.checked_mul(price).ok_or_else(|| {
                format!("the license fee of {office}/{code} is beyond the range of amounts")
            })?),
            source: String::new(),
            corrects: None,
        });
    }
    if k == 0 {
        return Ok(lines);
    }
    let (period_start, period_end) = (grid.boundary_at(k - 1), grid.boundary_at(k));
    for p in purchases
        .iter()
        .filter(|p| period_start <= p.at && p.at < period_end)
    {
        let Some(product) = products.get(&p.pool.product) else {
            continue;
        };
        let term_start = product.term.term_start(0, k - 1);
        let (start, end) = (
            grid.boundary_date(term_start),
            grid.boundary_date(term_start + product.term.periods()),
        );
        let price = prices.price(&p.pool.product, start, recorded_before);
        let date = grid.local_date(p.at);
        let (amount, remaining, days) =
            proration(p.added, price, date, start, end).ok_or_else(|| {
                format!(
                    "the proration of {} is beyond the range of amounts",
                    p.reference
                )
            })?;
        lines.push(Line {
            kind: LineKind::Proration,
            office: Some(p.pool.office.clone()),
            product: p.pool.product.clone(),
            description: format!(
                "{}: {} added {date}, prorated {remaining}/{days} days",
                product.name,
                seats(p.added)
            ),
            quantity: Some(p.added),
            unit_price: Some(price),
            amount: currency.round_line(amount),
            source: p.reference.clone(),
            corrects: None,
        });
    }
    Ok(lines)
}

/// The `bundle_fee` lines of boundary `k`: one per bundle whose cadence period starts there,
/// in scenario order.
pub fn bundle_lines<'a>(
    company: &Company,
    bundles: impl IntoIterator<Item = &'a Bundle>,
    k: u32,
) -> Vec<Line> {
    let grid = company.grid();
    bundles
        .into_iter()
        .filter(|b| b.company == company.id)
        .filter_map(|b| {
            let start = grid.boundary_index_on(b.start)?;
            b.cadence.starts_at(start, k).then(|| Line {
                kind: LineKind::BundleFee,
                office: b.scope.office().cloned(),
                product: b.id.clone(),
                description: format!(
                    "Bundle {}: {} {} credits, {} to {}",
                    b.id,
                    b.credits.normalize(),
                    match b.kind {
                        BundleKind::Telephony => "telephony",
                        BundleKind::Ai => "AI",
                    },
                    grid.boundary_date(k),
                    grid.boundary_date(k + b.cadence.periods())
                ),
                quantity: Some(1),
                unit_price: Some(b.fee),
                amount: company.currency.round_line(b.fee),
                source: String::new(),
                corrects: None,
            })
        })
        .collect()
}

/// The `credit_purchase` and `auto_recharge` lines of an invoiced company: one per purchase
/// or recharge entry made during the closed period, in the order made.
pub fn credit_lines(company: &Company, entries: &[LedgerEntry]) -> Vec<Line> {
    if company.billing != Billing::Invoiced {
        return Vec::new();
    }
    entries
        .iter()
        .filter_map(|e| {
            let (kind, what) = match e.kind {
                EntryKind::Purchase => (LineKind::CreditPurchase, "Credit purchase"),
                EntryKind::Recharge => (LineKind::AutoRecharge, "Auto-recharge"),
                _ => return None,
            };
            Some(Line {
                kind,
                office: e.scope.office().cloned(),
                product: String::new(),
                // The reference stays in `source`: a file position means nothing to a reader.
                description: format!("{what} on {}", company.grid().local_date(e.at)),
                quantity: Some(1),
                unit_price: Some(e.amount),
                amount: company.currency.round_line(e.amount),
                source: e.reference.clone(),
                corrects: None,
            })
        })
        .collect()
}

/// For an invoiced company, the `usage_arrears` line and `settle` entry of each scope whose
/// `universal` is negative (scopes in file order), unless the rounded amount is zero.
pub fn arrears(
    company: &Company,
    wallets: &Wallets,
    at: DateTime<Utc>,
    invoice: &str,
) -> (Vec<Line>, Vec<LedgerEntry>) {
    let mut lines = Vec::new();
    let mut settles = Vec::new();
    if company.billing != Billing::Invoiced {
        return (lines, settles);
    }
    let negative = wallets
        .balances()
        .filter(|(_, w, b)| *w == Wallet::Universal && *b < Decimal::ZERO)
        .map(|(s, _, b)| (s, -b));
    for (scope, owed) in negative {
        let rounded = company.currency.round_line(owed);
        if rounded.is_zero() {
            continue;
        }
        lines.push(Line {
            kind: LineKind::UsageArrears,
            office: scope.office().cloned(),
            product: String::new(),
            description: format!("Usage beyond credits ({scope})"),
            quantity: Some(1),
            unit_price: Some(rounded),
            amount: rounded,
            source: String::new(),
            corrects: None,
        });
        settles.push(LedgerEntry {
            at,
            scope: scope.clone(),
            wallet: Wallet::Universal,
            kind: EntryKind::Settle,
            amount: owed,
            reference: invoice.to_string(),
            expires_at: None,
        });
    }
    (lines, settles)
}

/// Wraps the lines of boundary `k` in the company's document, or `None` when there are none.
pub fn document(company: &Company, grid: &Grid, k: u32, lines: Vec<Line>) -> Option<Document> {
    if lines.is_empty() {
        return None;
    }
    let boundary = grid.boundary_date(k);
    Some(Document {
        number: invoice_number(&company.id, boundary),
        company: company.id.clone(),
        kind: DocumentKind::for_billing(company.billing),
        boundary_index: k,
        boundary,
        period_start: boundary,
        period_end: grid.boundary_date(k + 1),
        lines,
        currency: company.currency.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::grid::Term;
    use crate::domain::words::Scope;
    use crate::testkit::{company, d, dec, t};

    fn entry(kind: EntryKind, scope: Scope, amount: &str, reference: &str) -> LedgerEntry {
        LedgerEntry {
            at: t("2026-01-10T12:00:00Z"),
            scope,
            wallet: Wallet::Universal,
            kind,
            amount: dec(amount),
            reference: reference.into(),
            expires_at: None,
        }
    }

    fn talk() -> BTreeMap<String, Product> {
        BTreeMap::from([(
            "talk".to_string(),
            Product {
                code: "talk".into(),
                name: "Talk".into(),
                term: Term::Monthly,
                unit_price: dec("25.00"),
            },
        )])
    }

    #[test]
    fn an_invoiced_company_gets_a_line_per_purchase_and_recharge() {
        let c = company("acme");
        let made = [
            entry(EntryKind::Purchase, Scope::Company, "100.00", "p-1"),
            entry(
                EntryKind::Debit,
                Scope::Company,
                "-3.000000",
                "usage that bills nothing here",
            ),
            entry(
                EntryKind::Recharge,
                Scope::Office("nyc".into()),
                "25.00",
                "u-9#recharge1",
            ),
        ];
        let lines = credit_lines(&c, &made);
        let view: Vec<_> = lines
            .iter()
            .map(|l| (l.kind, l.office.clone(), l.amount, l.source.as_str()))
            .collect();
        assert_eq!(
            view,
            [
                (LineKind::CreditPurchase, None, dec("100.00"), "p-1"),
                (
                    LineKind::AutoRecharge,
                    Some("nyc".into()),
                    dec("25.00"),
                    "u-9#recharge1"
                ),
            ]
        );
        assert_eq!(lines[0].description, "Credit purchase on 2026-01-10");
        assert!(
            lines.iter().all(|l| !l.description.contains(&l.source)),
            "a reference is for matching, not for reading"
        );
        let card = Company {
            billing: Billing::Card,
            ..c
        };
        assert!(
            credit_lines(&card, &made).is_empty(),
            "a card company was charged at once"
        );
    }

    #[test]
    fn arrears_round_half_up_once_and_settle_the_exact_balance() {
        let c = company("acme");
        let mut w = Wallets::default();
        // 0.525 owed: half-up gives 0.53 (banker's rounding would give 0.52).
        w.apply(
            &entry(EntryKind::Debit, Scope::Company, "-0.525000", "u-1"),
            (0, 0),
        );
        // 0.004 owed rounds to nothing: neither line nor settle.
        w.apply(
            &entry(
                EntryKind::Debit,
                Scope::Office("osa".into()),
                "-0.004000",
                "u-2",
            ),
            (0, 0),
        );
        w.apply(
            &entry(
                EntryKind::Debit,
                Scope::Office("nyc".into()),
                "-1.005000",
                "u-3",
            ),
            (0, 0),
        );
        let at = t("2026-02-01T00:00:00Z");
        let (lines, settles) = arrears(&c, &w, at, "acme-20260201");
        let amounts: Vec<_> = lines.iter().map(|l| (l.office.clone(), l.amount)).collect();
        assert_eq!(
            amounts,
            [(None, dec("0.53")), (Some("nyc".into()), dec("1.01"))],
            "scopes in file order, each rounded half-up"
        );
        let settled: Vec<_> = settles
            .iter()
            .map(|e| (e.scope.to_string(), e.amount))
            .collect();
        assert_eq!(
            settled,
            [
                ("company".to_string(), dec("0.525")),
                ("nyc".to_string(), dec("1.005"))
            ]
        );
        assert!(
            settles
                .iter()
                .all(|e| e.reference == "acme-20260201" && e.at == at)
        );
        let card = Company {
            billing: Billing::Card,
            ..c
        };
        assert_eq!(
            arrears(&card, &w, at, "x"),
            (vec![], vec![]),
            "carried forward"
        );
    }

    #[test]
    fn license_fees_bill_terms_starting_at_the_boundary_and_prorate_purchases() {
        let c = company("acme");
        let pools = BTreeMap::from([
            (
                PoolKey::new(&"nyc".into(), "talk"),
                Pool {
                    quantity: 3,
                    pending_removal: 1,
                    assigned: 1,
                },
            ),
            (PoolKey::new(&"sf".into(), "talk"), Pool::default()),
        ]);
        let purchases = [Purchase {
            reference: "events.jsonl:4".into(),
            at: t("2026-01-11T09:00:00Z"),
            pool: PoolKey::new(&"nyc".into(), "talk"),
            added: 2,
        }];
        let prices = PriceList::new(&talk(), Vec::new());
        let at = c.grid().boundary_at(1);
        let lines = license_lines(&c, &talk(), &prices, 1, &pools, &purchases, at).unwrap();
        let view: Vec<_> = lines
            .iter()
            .map(|l| (l.kind, l.quantity, l.amount))
            .collect();
        // 3 seats × 25.00; an empty pool bills nothing; 2 × 25.00 × 21/31 = 33.870967… → 33.87.
        assert_eq!(
            view,
            [
                (LineKind::LicenseFee, Some(3), dec("75.00")),
                (LineKind::Proration, Some(2), dec("33.87")),
            ]
        );
        assert_eq!(lines[1].source, "events.jsonl:4");
        assert_eq!(
            lines[1].description,
            "Talk: 2 seats added 2026-01-11, prorated 21/31 days"
        );
        assert_eq!(seats(1), "1 seat");
        assert_eq!(seats(0), "0 seats");
        assert!(
            license_lines(&c, &talk(), &prices, 0, &pools, &purchases, at)
                .unwrap()
                .iter()
                .all(|l| l.kind == LineKind::LicenseFee),
            "nothing is prorated at the anchor"
        );
    }

    #[test]
    fn bundle_fees_follow_their_cadence_from_their_start() {
        let c = company("acme");
        let bundle = |id: &str, cadence, start| Bundle {
            id: id.into(),
            company: c.id.clone(),
            scope: Scope::Company,
            kind: BundleKind::Telephony,
            credits: dec("500"),
            fee: dec("450.005"),
            cadence,
            start: d(start),
        };
        let bundles = [
            bundle("m", Term::Monthly, "2026-02-01"),
            bundle("y", Term::Annual, "2026-01-01"),
        ];
        let at = |k| {
            bundle_lines(&c, &bundles, k)
                .into_iter()
                .map(|l| (l.product, l.amount))
                .collect::<Vec<_>>()
        };
        assert_eq!(at(0), [("y".to_string(), dec("450.01"))]);
        assert_eq!(at(1), [("m".to_string(), dec("450.01"))]);
        assert_eq!(at(12).len(), 2, "the annual bundle renews a year on");
    }

    #[test]
    fn the_last_recorded_correction_that_applies_wins() {
        let mut products = BTreeMap::new();
        products.insert(
            "talk".to_string(),
            Product {
                code: "talk".into(),
                name: "Talk".into(),
                term: crate::domain::grid::Term::Monthly,
                unit_price: Decimal::from(25),
            },
        );
        let c = |at: &str, from: &str, price: i64| PriceCorrection {
            recorded_at: t(at),
            product: "talk".into(),
            from: d(from),
            unit_price: Decimal::from(price),
        };
        let prices = PriceList::new(
            &products,
            vec![
                c("2026-02-01T00:00:00Z", "2026-03-01", 30),
                c("2026-02-05T00:00:00Z", "2026-02-01", 20),
            ],
        );
        let before = t("2026-04-01T00:00:00Z");
        assert_eq!(
            prices.price("talk", d("2026-01-31"), before),
            Decimal::from(25)
        );
        assert_eq!(
            prices.price("talk", d("2026-02-28"), before),
            Decimal::from(20)
        );
        // Recorded last wins even though the earlier one's `from` is later.
        assert_eq!(
            prices.price("talk", d("2026-03-31"), before),
            Decimal::from(20)
        );
        // Corrections recorded at or after the cut-off do not count.
        assert_eq!(
            prices.price("talk", d("2026-03-31"), t("2026-02-05T00:00:00Z")),
            Decimal::from(30)
        );
        assert_eq!(
            invoice_number(&"acme".into(), d("2026-02-28")),
            "acme-20260228"
        );
    }
}
