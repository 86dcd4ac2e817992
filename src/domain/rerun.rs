//! Re-running a closed cycle (SPEC §8, §12.22): the document at a boundary is rebuilt from
//! what it was built from, with the price corrections recorded up to the re-run, and compared
//! line by line with what was billed for that boundary (the issued document plus the
//! adjustments issued since). A difference is made up by one adjustment document of delta
//! lines; no difference, no document. Issued documents never change.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;

use super::account::CardCharge;
use super::invoice::{Document, DocumentKind, Line, LineKind, invoice_number};
use super::model::{Billing, Company};
use super::wallets::{EntryKind, LedgerEntry};
use super::words::{CardChargeKind, OfficeId};

/// Refuses a re-run without a reason: an adjustment records why it was issued.
pub fn check_reason(reason: &str) -> Result<(), String> {
    if reason.trim().is_empty() {
        Err("the reason is empty: say why the cycle is re-run".to_string())
    } else {
        Ok(())
    }
}

/// The index of the boundary of `company` on local date `date`, if it is closed: boundaries up
/// to `closed_through` are. Otherwise the reason a re-run of it is refused.
pub fn closed_boundary(
    company: &Company,
    date: NaiveDate,
    closed_through: Option<u32>,
) -> Result<u32, String> {
    let grid = company.grid();
    let Some(k) = grid.boundary_index_on(date) else {
        if date < company.anchor {
            return Err(format!(
                "{date} is before the first boundary of {} ({})",
                company.id, company.anchor
            ));
        }
        let before = grid
            .period_index(super::grid::local_midnight(company.time_zone, date))
            .unwrap_or(0);
        return Err(format!(
            "{date} is not a boundary of {} (the boundaries around it are {} and {})",
            company.id,
            grid.boundary_date(before),
            grid.boundary_date(before + 1)
        ));
    };
    match closed_through {
        Some(c) if k <= c => Ok(k),
        Some(c) => Err(format!(
            "boundary {date} of {} is not closed yet (closed through {})",
            company.id,
            grid.boundary_date(c)
        )),
        None => Err(format!(
            "boundary {date} of {} is not closed yet (no boundary of it is closed)",
            company.id
        )),
    }
}

/// The cut-off for the price corrections a re-run at `at` counts: every one recorded up to and
/// including its instant. Instants are kept to the microsecond, so that is every one recorded
/// before the next microsecond.
pub fn corrections_cutoff(at: DateTime<Utc>) -> DateTime<Utc> {
    at + chrono::Duration::microseconds(1)
}

/// The ledger as the close of a boundary saw it, from the entries recorded since: without the
/// debits (and the recharges they triggered) of usage that a later close rated late, whose
/// entries are dated when the usage arrived, possibly before the boundary. Those were billed by
/// the later close; counting them again would bill them twice.
pub fn ledger_as_closed(
    entries: Vec<LedgerEntry>,
    rated_later: &BTreeSet<String>,
) -> Vec<LedgerEntry> {
    if rated_later.is_empty() {
        return entries;
    }
    entries
        .into_iter()
        .filter(|e| {
            let usage = match e.kind {
                EntryKind::Debit => e.reference.as_str(),
                EntryKind::Recharge => e
                    .reference
                    .rsplit_once("#recharge")
                    .map_or(e.reference.as_str(), |(id, _)| id),
                _ => return true,
            };
            !rated_later.contains(usage)
        })
        .collect()
}

/// Which line of a boundary's documents a re-run compares (§12.22): its kind, office and
/// product, and what it was built from where those don't tell lines apart (a proration's
/// purchase, a credit line's ledger entry).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct LineKey {
    /// The kind of the line (of the corrected line, for an adjustment line).
    pub kind: LineKind,
    /// The office; `None` for company-wide lines.
    pub office: Option<OfficeId>,
    /// Product or bundle id; empty where none applies.
    pub product: String,
    /// What the line was built from; empty where kind, office and product suffice.
    pub source: String,
}

impl LineKey {
    /// The key of a line; an adjustment line has the key of the line it corrects.
    pub fn of(line: &Line) -> LineKey {
        LineKey {
            kind: line.corrects.unwrap_or(line.kind),
            office: line.office.clone(),
            product: line.product.clone(),
            source: line.source.clone(),
        }
    }
}

/// A line whose rebuilt amount differs from what was billed for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineDelta {
    /// Which line.
    pub key: LineKey,
    /// What it bills, for people: the rebuilt line's description, or the billed one's when it
    /// vanished.
    pub description: String,
    /// What was billed for it: the issued amount plus every earlier adjustment of it.
    pub before: Decimal,
    /// What the rebuilt document bills for it (zero when the line vanished).
    pub after: Decimal,
}

impl LineDelta {
    /// The adjustment the line needs: `after − before`.
    pub fn delta(&self) -> Decimal {
        self.after - self.before
    }
}

/// Compares line by line what was billed for a boundary (`billed`: the issued document's lines,
/// then its adjustments' lines, in the order issued) with the rebuilt lines. Returns the lines
/// that differ, in the rebuilt document's order, then the vanished ones in the order billed.
pub fn compare(billed: &[Line], rebuilt: &[Line]) -> Vec<LineDelta> {
    let mut rows: BTreeMap<LineKey, LineDelta> = BTreeMap::new();
    let mut row = |line: &Line, order: &mut Vec<LineKey>| -> LineKey {
        let key = LineKey::of(line);
        rows.entry(key.clone()).or_insert_with(|| {
            order.push(key.clone());
            LineDelta {
                key: key.clone(),
                description: String::new(),
                before: Decimal::ZERO,
                after: Decimal::ZERO,
            }
        });
        key
    };
    let mut rebuilt_order = Vec::new();
    for line in rebuilt {
        row(line, &mut rebuilt_order);
    }
    let mut vanished_order = Vec::new();
    for line in billed {
        row(line, &mut vanished_order);
    }
    for line in rebuilt {
        let r = rows.get_mut(&LineKey::of(line)).expect("keyed above");
        r.after += line.amount;
        r.description = line.description.clone();
    }
    for line in billed {
        let r = rows.get_mut(&LineKey::of(line)).expect("keyed above");
        r.before += line.amount;
        if r.description.is_empty() {
            r.description = line.description.clone();
        }
    }
    rebuilt_order
        .into_iter()
        .chain(vanished_order)
        .filter_map(|key| rows.remove(&key))
        .filter(|r| !r.delta().is_zero())
        .collect()
}

/// The number of the `n`th adjustment (from 1) of the document numbered `invoice`.
pub fn adjustment_number(invoice: &str, n: usize) -> String {
    format!("{invoice}-A{n}")
}

/// A document number read back: `<company>-<YYYYMMDD>` for the document at a boundary,
/// `<company>-<YYYYMMDD>-A<n>` for its `n`th adjustment. Company ids never end in a date, so a
/// number names one company.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocumentNumber {
    /// The company.
    pub company: super::words::CompanyId,
    /// The boundary's local date.
    pub boundary: NaiveDate,
    /// The adjustment's `n`, for an adjustment.
    pub adjustment: Option<u32>,
}

impl DocumentNumber {
    /// Reads a document number; `None` when `s` is not one.
    pub fn parse(s: &str) -> Option<DocumentNumber> {
        let (rest, adjustment) = match s.rsplit_once("-A") {
            Some((rest, n))
                if !n.is_empty()
                    && !n.starts_with('0')
                    && n.bytes().all(|b| b.is_ascii_digit()) =>
            {
                (rest, Some(n.parse().ok()?))
            }
            _ => (s, None),
        };
        let (company, date) = rest.rsplit_once('-')?;
        if date.len() != 8 || !date.bytes().all(|b| b.is_ascii_digit()) || company.is_empty() {
            return None;
        }
        let boundary = NaiveDate::parse_from_str(date, "%Y%m%d").ok()?;
        Some(DocumentNumber {
            company: company.into(),
            boundary,
            adjustment,
        })
    }
}

/// Who issued an adjustment, for which document, why and when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdjustmentNote {
    /// The number of the document at the boundary it adjusts.
    pub adjusts: String,
    /// Why the cycle was re-run, as finance gave it.
    pub reason: String,
    /// Who re-ran it.
    pub by: String,
    /// The re-run's instant.
    pub at: DateTime<Utc>,
}

/// What a re-run of one boundary finds, and what it would issue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// The number of the boundary's document (whether or not one was issued).
    pub invoice: String,
    /// The lines that differ; none when the boundary was billed right.
    pub deltas: Vec<LineDelta>,
    /// What was billed for the boundary: the issued document's total and its adjustments'.
    pub billed: Decimal,
    /// What the rebuilt document bills.
    pub rebuilt: Decimal,
    /// The adjustment that makes up the difference; `None` when nothing differs.
    pub adjustment: Option<Document>,
    /// For a card company, the charge (negative: refund) of the adjustment's total at the
    /// re-run's instant; `None` when the total is zero.
    pub card_charge: Option<CardCharge>,
}

impl Finding {
    /// Whether the boundary was billed exactly as the rebuilt document bills it.
    pub fn identical(&self) -> bool {
        self.deltas.is_empty()
    }

    /// The sum of the deltas: what the adjustment adds to the boundary's bill.
    pub fn total(&self) -> Decimal {
        self.deltas.iter().map(LineDelta::delta).sum()
    }
}

/// Compares what was billed for boundary `k` of `company` (its `issued` document, if any, and
/// the `adjustments` issued for it, oldest first) with the `rebuilt` document, and builds the
/// adjustment a re-run at `at` issues: one line per difference (line kind `adjustment`, the
/// corrected line's office and product, no quantity or unit price, amount = new − old),
/// numbered after the earlier adjustments.
pub fn find(
    company: &Company,
    k: u32,
    issued: Option<&Document>,
    adjustments: &[Document],
    rebuilt: Option<&Document>,
    at: DateTime<Utc>,
) -> Finding {
    let grid = company.grid();
    let invoice = invoice_number(&company.id, grid.boundary_date(k));
    let billed: Vec<Line> = issued
        .into_iter()
        .chain(adjustments)
        .flat_map(|d| d.lines.iter().cloned())
        .collect();
    let rebuilt_lines = rebuilt.map_or(&[][..], |d| &d.lines[..]);
    let deltas = compare(&billed, rebuilt_lines);
    let billed_total = billed.iter().map(|l| l.amount).sum();
    let rebuilt_total = rebuilt_lines.iter().map(|l| l.amount).sum();
    if deltas.is_empty() {
        return Finding {
            invoice,
            deltas,
            billed: billed_total,
            rebuilt: rebuilt_total,
            adjustment: None,
            card_charge: None,
        };
    }
    let currency = &company.currency;
    let lines = deltas
        .iter()
        .map(|d| Line {
            kind: LineKind::Adjustment,
            office: d.key.office.clone(),
            product: d.key.product.clone(),
            description: format!(
                "{}: billed {}, now {}",
                d.description,
                currency.format_amount(d.before),
                currency.format_amount(d.after)
            ),
            quantity: None,
            unit_price: None,
            amount: d.delta(),
            source: d.key.source.clone(),
            corrects: Some(d.key.kind),
        })
        .collect();
    let boundary = grid.boundary_date(k);
    let document = Document {
        number: adjustment_number(&invoice, adjustments.len() + 1),
        company: company.id.clone(),
        kind: DocumentKind::Adjustment,
        boundary_index: k,
        boundary,
        period_start: boundary,
        period_end: grid.boundary_date(k + 1),
        lines,
        currency: currency.clone(),
    };
    let total = document.total();
    let card_charge = (company.billing == Billing::Card && !total.is_zero()).then(|| {
        CardCharge::new(
            company,
            at,
            CardChargeKind::Adjustment,
            total,
            &document.number,
        )
    });
    Finding {
        invoice,
        deltas,
        billed: billed_total,
        rebuilt: rebuilt_total,
        adjustment: Some(document),
        card_charge,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::close::{CompanyClose, Step};
    use crate::domain::grid::Term;
    use crate::domain::model::{EventKind, InitialPool, Product, World};
    use crate::domain::words::{Scope, Wallet};
    use crate::testkit::{company, d, dec, event, t, world_with};

    fn line(kind: LineKind, product: &str, source: &str, amount: &str) -> Line {
        Line {
            kind,
            office: Some("nyc".into()),
            product: product.into(),
            description: format!("{} {product}", kind.as_str()),
            quantity: Some(1),
            unit_price: Some(dec(amount)),
            amount: dec(amount),
            source: source.into(),
            corrects: None,
        }
    }

    fn doc(number: &str, kind: DocumentKind, lines: Vec<Line>) -> Document {
        let c = company("acme");
        Document {
            number: number.into(),
            company: c.id.clone(),
            kind,
            boundary_index: 1,
            boundary: d("2026-02-01"),
            period_start: d("2026-02-01"),
            period_end: d("2026-03-01"),
            lines,
            currency: c.currency,
        }
    }

    fn issued() -> Document {
        doc(
            "acme-20260201",
            DocumentKind::Invoice,
            vec![
                line(LineKind::LicenseFee, "talk", "", "250.00"),
                line(LineKind::Proration, "talk", "events.jsonl:3", "48.21"),
                line(LineKind::Proration, "talk", "events.jsonl:7", "10.00"),
                line(LineKind::BundleFee, "tel", "", "15.00"),
            ],
        )
    }

    #[test]
    fn the_same_lines_are_identical_and_issue_nothing() {
        let c = company("acme");
        let at = t("2026-02-10T00:00:00Z");
        let f = find(&c, 1, Some(&issued()), &[], Some(&issued()), at);
        assert!(f.identical());
        assert_eq!((f.adjustment, f.card_charge), (None, None));
        assert_eq!(f.invoice, "acme-20260201");
    }

    #[test]
    fn differences_are_matched_by_kind_office_product_and_purchase() {
        let c = company("acme");
        let mut rebuilt = issued();
        rebuilt.lines[0].amount = dec("240.00");
        // The second purchase's proration changes, the first one's does not: they are told
        // apart by their purchase, not by office and product.
        rebuilt.lines[2].amount = dec("9.60");
        rebuilt.lines.remove(3);
        rebuilt
            .lines
            .push(line(LineKind::UsageArrears, "", "", "0.53"));
        let f = find(
            &c,
            1,
            Some(&issued()),
            &[],
            Some(&rebuilt),
            t("2026-02-10T00:00:00Z"),
        );
        let view: Vec<_> = f
            .deltas
            .iter()
            .map(|d| (d.key.kind, d.key.source.as_str(), d.before, d.after))
            .collect();
        assert_eq!(
            view,
            [
                (LineKind::LicenseFee, "", dec("250.00"), dec("240.00")),
                (
                    LineKind::Proration,
                    "events.jsonl:7",
                    dec("10.00"),
                    dec("9.60")
                ),
                (LineKind::UsageArrears, "", dec("0"), dec("0.53")),
                // A vanished line comes last, taken back whole.
                (LineKind::BundleFee, "", dec("15.00"), dec("0")),
            ]
        );
        let a = f.adjustment.clone().expect("an adjustment");
        assert_eq!(
            (a.number.as_str(), a.kind, a.total()),
            ("acme-20260201-A1", DocumentKind::Adjustment, dec("-24.87"))
        );
        assert!(a.lines.iter().all(|l| l.kind == LineKind::Adjustment
            && l.quantity.is_none()
            && l.unit_price.is_none()));
        assert_eq!(a.lines[1].corrects, Some(LineKind::Proration));
        assert_eq!(a.lines[1].source, "events.jsonl:7");
        assert_eq!(a.lines[3].amount, dec("-15.00"));
        assert_eq!(
            a.lines[0].description,
            "license_fee talk: billed 250.00, now 240.00"
        );
        assert_eq!(f.card_charge, None, "an invoiced company is not charged");
        assert_eq!((f.billed, f.rebuilt), (dec("323.21"), dec("298.34")));
        assert_eq!(f.total(), f.rebuilt - f.billed);
    }

    #[test]
    fn earlier_adjustments_count_as_billed_so_a_repeat_adds_nothing() {
        let c = company("acme");
        let at = t("2026-02-10T00:00:00Z");
        let mut rebuilt = issued();
        rebuilt.lines[0].amount = dec("240.00");
        let first = find(&c, 1, Some(&issued()), &[], Some(&rebuilt), at);
        let a1 = first.adjustment.expect("A1");
        let again = find(
            &c,
            1,
            Some(&issued()),
            std::slice::from_ref(&a1),
            Some(&rebuilt),
            at,
        );
        assert!(again.identical(), "{:?}", again.deltas);
        // A later correction back to the first price is a second adjustment against both.
        let back = find(&c, 1, Some(&issued()), &[a1], Some(&issued()), at);
        let a2 = back.adjustment.expect("A2");
        assert_eq!(
            (a2.number.as_str(), a2.total()),
            ("acme-20260201-A2", dec("10.00"))
        );
    }

    #[test]
    fn a_boundary_without_a_document_is_adjusted_by_every_new_line() {
        let c = company("acme");
        let rebuilt = issued();
        let f = find(&c, 1, None, &[], Some(&rebuilt), t("2026-02-10T00:00:00Z"));
        assert_eq!(f.deltas.len(), 4);
        assert_eq!(f.total(), dec("323.21"));
        assert!(find(&c, 1, None, &[], None, t("2026-02-10T00:00:00Z")).identical());
    }

    #[test]
    fn a_card_company_is_charged_or_refunded_at_the_rerun() {
        let c = Company {
            billing: Billing::Card,
            ..company("acme")
        };
        let at = t("2026-02-10T09:30:00Z");
        let mut rebuilt = issued();
        rebuilt.lines[0].amount = dec("240.00");
        let f = find(&c, 1, Some(&issued()), &[], Some(&rebuilt), at);
        let charge = f.card_charge.expect("a refund");
        assert_eq!(
            (
                charge.at,
                charge.kind,
                charge.amount,
                charge.reference.as_str()
            ),
            (
                at,
                CardChargeKind::Adjustment,
                dec("-10.00"),
                "acme-20260201-A1"
            )
        );
        // Deltas that cancel out issue a document but charge nothing.
        rebuilt.lines[3].amount = dec("25.00");
        let f = find(&c, 1, Some(&issued()), &[], Some(&rebuilt), at);
        assert!(f.adjustment.is_some() && f.card_charge.is_none());
    }

    #[test]
    fn only_closed_boundaries_may_be_rerun() {
        let c = company("acme");
        assert_eq!(closed_boundary(&c, d("2026-02-01"), Some(2)), Ok(1));
        assert_eq!(closed_boundary(&c, d("2026-01-01"), Some(0)), Ok(0));
        assert_eq!(
            closed_boundary(&c, d("2026-03-01"), Some(1)),
            Err("boundary 2026-03-01 of acme is not closed yet (closed through 2026-02-01)".into())
        );
        assert_eq!(
            closed_boundary(&c, d("2026-01-01"), None),
            Err(
                "boundary 2026-01-01 of acme is not closed yet (no boundary of it is closed)"
                    .into()
            )
        );
        assert_eq!(
            closed_boundary(&c, d("2026-02-15"), Some(5)),
            Err(
                "2026-02-15 is not a boundary of acme (the boundaries around it are 2026-02-01 and 2026-03-01)"
                    .into()
            )
        );
        assert_eq!(
            closed_boundary(&c, d("2025-12-01"), Some(5)),
            Err("2025-12-01 is before the first boundary of acme (2026-01-01)".into())
        );
        assert!(check_reason("  ").is_err());
        assert!(check_reason("price check").is_ok());
    }

    #[test]
    fn usage_rated_late_by_a_later_close_is_not_part_of_an_earlier_one() {
        let entry = |kind, reference: &str| LedgerEntry {
            at: t("2026-01-20T00:00:00Z"),
            scope: Scope::Company,
            wallet: Wallet::Universal,
            kind,
            amount: dec("-1"),
            reference: reference.into(),
            expires_at: None,
        };
        let entries = vec![
            entry(EntryKind::Debit, "u-1"),
            entry(EntryKind::Debit, "late"),
            entry(EntryKind::Recharge, "late#recharge1"),
            entry(EntryKind::Recharge, "u-1#recharge1"),
            entry(EntryKind::Purchase, "late"),
        ];
        let kept: Vec<_> = ledger_as_closed(entries, &BTreeSet::from(["late".to_string()]))
            .into_iter()
            .map(|e| e.reference)
            .collect();
        assert_eq!(kept, ["u-1", "u-1#recharge1", "late"]);
    }

    #[test]
    fn document_numbers_read_back() {
        let n = DocumentNumber::parse("acme-east-20260228-A12").unwrap();
        assert_eq!(
            (n.company.as_str(), n.boundary, n.adjustment),
            ("acme-east", d("2026-02-28"), Some(12))
        );
        let n = DocumentNumber::parse(&adjustment_number("a-20260131", 1)).unwrap();
        assert_eq!((n.company.as_str(), n.adjustment), ("a", Some(1)));
        assert_eq!(
            DocumentNumber::parse("acme-20260228").unwrap().adjustment,
            None
        );
        for bad in [
            "acme",
            "acme-2026022",
            "acme-20260230",
            "-20260228",
            "acme-20260228-A",
            "acme-20260228-A01",
        ] {
            assert_eq!(DocumentNumber::parse(bad), None, "{bad}");
        }
    }

    /// acme with 10 `talk` seats at 25.00 in `nyc`.
    fn talk_world() -> World {
        let c = company("acme");
        let mut w = world_with(&c, &["nyc"], &[]);
        w.products.insert(
            "talk".into(),
            Product {
                code: "talk".into(),
                name: "Talk".into(),
                term: Term::Monthly,
                unit_price: dec("25.00"),
            },
        );
        w.pools.push(InitialPool {
            company: c.id.clone(),
            office: "nyc".into(),
            product: "talk".into(),
            quantity: 10,
        });
        w.indexed()
    }

    #[test]
    fn a_close_rebuilt_later_bills_a_correction_recorded_after_it() {
        let world = talk_world();
        let c = &world.companies["acme"];
        let mut purchase = event(
            "2026-01-11T09:00:00Z",
            EventKind::LicensePurchase {
                office: "nyc".into(),
                product: "talk".into(),
                quantity: 2,
            },
        );
        purchase.company = c.id.clone();
        let mut correction = event(
            "2026-02-05T00:00:00Z",
            EventKind::PriceCorrection {
                product: "talk".into(),
                unit_price: dec("24.00"),
                from: d("2026-01-01"),
            },
        );
        correction.company = c.id.clone();
        correction.line = 2;
        let events = [purchase, correction];
        let mut close = CompanyClose::new(&world, c, &events, Vec::new(), Vec::new());
        let mut issued = None;
        for k in 0..=1 {
            for step in Step::ALL {
                let effects = close.step(k, step).unwrap();
                if k == 1 && step == Step::Invoice {
                    issued = effects.document;
                }
            }
        }
        let issued = issued.expect("boundary 1 billed");
        let at_close = c.grid().boundary_at(1);
        let (as_closed, _) = close.document_at(1, at_close).unwrap();
        assert_eq!(
            as_closed.as_ref(),
            Some(&issued),
            "rebuilt as it was closed"
        );
        let rerun_at = t("2026-02-10T00:00:00Z");
        let before = find(c, 1, Some(&issued), &[], as_closed.as_ref(), rerun_at);
        assert!(before.identical());
        let (rebuilt, _) = close.document_at(1, corrections_cutoff(rerun_at)).unwrap();
        let f = find(c, 1, Some(&issued), &[], rebuilt.as_ref(), rerun_at);
        let view: Vec<_> = f
            .deltas
            .iter()
            .map(|d| (d.key.kind, d.before, d.after))
            .collect();
        // 12 × 25.00 → 12 × 24.00; 2 × 25.00 × 21/31 = 33.87 → 2 × 24.00 × 21/31 = 32.52.
        assert_eq!(
            view,
            [
                (LineKind::LicenseFee, dec("300.00"), dec("288.00")),
                (LineKind::Proration, dec("33.87"), dec("32.52")),
            ]
        );
        // A correction recorded exactly at the re-run counts; one a microsecond later doesn't.
        let (same_instant, _) = close
            .document_at(1, corrections_cutoff(t("2026-02-05T00:00:00Z")))
            .unwrap();
        assert_eq!(same_instant, rebuilt);
        let (just_before, _) = close
            .document_at(1, corrections_cutoff(t("2026-02-04T23:59:59.999999Z")))
            .unwrap();
        assert_eq!(just_before.as_ref(), Some(&issued));
    }
}
