//! What finance reads at a terminal: the differences a re-run found, a range of re-runs, and
//! one issued document with its adjustments (as text, or JSON for tools).

use chrono::SecondsFormat;
use rust_decimal::Decimal;
use serde_json::{Value, json};

use billrun::domain::invoice::{Document, Line};
use billrun::domain::model::Company;
use billrun::domain::money::Currency;
use billrun::domain::rerun::{AdjustmentNote, Finding};
use billrun::domain::words::CompanyId;
use billrun::jobs::rerun::{Outcome, RerunReport};
use billrun::store::{Adjustment, IssuedDocument};

use crate::cli::render::table;

/// An instant as files write it.
fn instant(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// An amount with its sign, for deltas: `+5.00`, `-11.92`, `0.00`.
fn signed(currency: &Currency, d: Decimal) -> String {
    let s = currency.format_amount(d);
    if d > Decimal::ZERO {
        format!("+{s}")
    } else {
        s
    }
}

/// The lines a re-run found different (before, after, delta), and the documents' totals.
fn deltas_table(finding: &Finding, currency: &Currency) -> String {
    let mut rows = vec![
        [
            "line kind",
            "office",
            "product",
            "billed",
            "rebuilt",
            "delta",
            "description",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for d in &finding.deltas {
        rows.push(vec![
            d.key.kind.as_str().to_string(),
            d.key.office.as_deref().unwrap_or("").to_string(),
            d.key.product.clone(),
            currency.format_amount(d.before),
            currency.format_amount(d.after),
            signed(currency, d.delta()),
            d.description.clone(),
        ]);
    }
    rows.push(vec![
        "total".into(),
        String::new(),
        String::new(),
        currency.format_amount(finding.billed),
        currency.format_amount(finding.rebuilt),
        signed(currency, finding.total()),
        String::new(),
    ]);
    table(&rows, "", &[3, 4, 5])
}

/// What `rerun --company C --boundary D` prints.
pub fn rerun_text(report: &RerunReport, company: &Company, dry_run: bool) -> String {
    let f = &report.finding;
    let currency = &company.currency;
    let head = format!("{} {}: {}", report.company, report.boundary, f.invoice);
    match report.outcome {
        Outcome::Identical => format!(
            "{head} is billed exactly as rebuilt ({} {}): nothing to adjust{}\n",
            currency.format_amount(f.billed),
            currency.code(),
            if dry_run {
                " (dry run: nothing written)"
            } else {
                "; recorded as identical"
            }
        ),
        Outcome::WouldAdjust => format!(
            "{head} differs from its rebuild (dry run: nothing written)\n{}",
            deltas_table(f, currency)
        ),
        Outcome::Adjusted => {
            let number = f.adjustment.as_ref().map_or("", |d| d.number.as_str());
            let mut out = format!(
                "{head} differs from its rebuild: issued {number} ({} {})\n{}",
                signed(currency, f.total()),
                currency.code(),
                deltas_table(f, currency)
            );
            if let Some(c) = &f.card_charge {
                let what = if c.amount < Decimal::ZERO {
                    "refunded to"
                } else {
                    "charged to"
                };
                out.push_str(&format!(
                    "{} {} {what} the card at {}\n",
                    currency.format_amount(c.amount.abs()),
                    currency.code(),
                    instant(c.at)
                ));
            }
            out
        }
    }
}

/// What `rerun --all` prints: one line per (company, boundary) re-run, then the totals.
pub fn rerun_all_text(
    results: &[Result<RerunReport, (CompanyId, chrono::NaiveDate, String)>],
    currency_of: impl Fn(&CompanyId) -> Currency,
) -> String {
    let mut rows = vec![
        [
            "company",
            "boundary",
            "outcome",
            "adjustment",
            "lines",
            "delta",
            "currency",
        ]
        .map(String::from)
        .to_vec(),
    ];
    let (mut adjusted, mut identical, mut failed) = (0, 0, 0);
    let mut totals: std::collections::BTreeMap<String, (Currency, Decimal)> = Default::default();
    for r in results {
        match r {
            Ok(report) => {
                let f = &report.finding;
                let currency = currency_of(&report.company);
                let outcome = report.outcome.as_str();
                if report.outcome == Outcome::Identical {
                    identical += 1;
                } else {
                    adjusted += 1;
                    totals
                        .entry(currency.code().to_string())
                        .or_insert_with(|| (currency.clone(), Decimal::ZERO))
                        .1 += f.total();
                }
                rows.push(vec![
                    report.company.to_string(),
                    report.boundary.to_string(),
                    outcome.into(),
                    f.adjustment
                        .as_ref()
                        .filter(|_| report.outcome == Outcome::Adjusted)
                        .map_or(String::new(), |d| d.number.clone()),
                    f.deltas.len().to_string(),
                    signed(&currency, f.total()),
                    currency.code().to_string(),
                ]);
            }
            Err((company, boundary, error)) => {
                failed += 1;
                rows.push(vec![
                    company.to_string(),
                    boundary.to_string(),
                    format!("failed: {error}"),
                ]);
            }
        }
    }
    let mut out = table(&rows, "", &[4, 5]);
    let sums: Vec<String> = totals
        .iter()
        .map(|(code, (currency, t))| format!("{} {code}", signed(currency, *t)))
        .collect();
    out.push_str(&format!(
        "re-runs: {} ({adjusted} {}, {identical} identical, {failed} failed){}{}\n",
        results.len(),
        if results
            .iter()
            .any(|r| matches!(r, Ok(x) if x.outcome == Outcome::WouldAdjust))
        {
            "would adjust"
        } else {
            "adjusted"
        },
        if sums.is_empty() { "" } else { "; delta " },
        sums.join(", ")
    ));
    out
}

/// The lines of a document as a table, with its total.
fn lines_table(d: &Document) -> String {
    let cur = &d.currency;
    let mut rows = vec![
        [
            "#",
            "line kind",
            "office",
            "product",
            "description",
            "quantity",
            "unit price",
            "amount",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for (i, l) in d.lines.iter().enumerate() {
        rows.push(vec![
            (i + 1).to_string(),
            match l.corrects {
                Some(k) => format!("{} ({})", l.kind.as_str(), k.as_str()),
                None => l.kind.as_str().to_string(),
            },
            l.office.as_deref().unwrap_or("").to_string(),
            l.product.clone(),
            l.description.clone(),
            l.quantity.map(|q| q.to_string()).unwrap_or_default(),
            l.unit_price
                .map(|p| cur.format_price(p))
                .unwrap_or_default(),
            cur.format_amount(l.amount),
        ]);
    }
    let mut total = vec![String::new(); 8];
    total[1] = "total".into();
    total[7] = cur.format_amount(d.total());
    rows.push(total);
    table(&rows, "", &[0, 5, 6, 7])
}

/// What `invoice NUMBER` prints: the header, each line, the total, and who issued an
/// adjustment or which adjustments were issued for the document.
pub fn document_text(issued: &IssuedDocument, company: &Company) -> String {
    let d = &issued.document;
    let cur = &d.currency;
    let mut out = format!(
        "{} {}\ncompany   {} ({})\nboundary  {} (period {} up to {})\ncurrency  {}\n",
        d.kind.as_str(),
        d.number,
        d.company,
        company.name,
        d.boundary,
        d.period_start,
        d.period_end,
        cur.code()
    );
    if let Some(note) = &issued.note {
        out.push_str(&format!(
            "adjusts   {}\nissued    {} by {}\nreason    {}\n",
            note.adjusts,
            instant(note.at),
            note.by,
            note.reason
        ));
    }
    out.push('\n');
    out.push_str(&lines_table(d));
    if !issued.adjustments.is_empty() {
        out.push_str("\nadjustments issued for it\n");
        let mut rows = Vec::new();
        let mut total = d.total();
        for a in &issued.adjustments {
            total += a.document.total();
            rows.push(vec![
                a.document.number.clone(),
                signed(cur, a.document.total()),
                instant(a.note.at),
                format!("by {}", a.note.by),
                a.note.reason.clone(),
            ]);
        }
        out.push_str(&table(&rows, "", &[1]));
        out.push_str(&format!(
            "total with adjustments  {}\n",
            cur.format_amount(total)
        ));
    }
    out
}

fn note_json(note: &AdjustmentNote) -> Value {
    json!({
        "adjusts": note.adjusts,
        "issued_at": instant(note.at),
        "issued_by": note.by,
        "reason": note.reason,
    })
}

fn lines_json(d: &Document) -> Value {
    let cur = &d.currency;
    let line = |(i, l): (usize, &Line)| {
        json!({
            "line_no": i + 1,
            "line_kind": l.kind.as_str(),
            "corrects": l.corrects.map(|k| k.as_str()),
            "office": l.office.as_deref(),
            "product": l.product,
            "description": l.description,
            "quantity": l.quantity,
            "unit_price": l.unit_price.map(|p| cur.format_price(p)),
            "amount": cur.format_amount(l.amount),
        })
    };
    Value::Array(d.lines.iter().enumerate().map(line).collect())
}

/// What `invoice NUMBER --format json` prints: the same as the text, amounts as decimal
/// strings.
pub fn document_json(issued: &IssuedDocument, company: &Company) -> String {
    let d = &issued.document;
    let cur = &d.currency;
    let adjustment = |a: &Adjustment| {
        let mut v = note_json(&a.note);
        v["number"] = json!(a.document.number);
        v["total"] = json!(cur.format_amount(a.document.total()));
        v["lines"] = lines_json(&a.document);
        v
    };
    // What the boundary's bill comes to with its adjustments; an adjustment has none of its own.
    let with_adjustments = issued.note.is_none().then(|| {
        cur.format_amount(
            d.total()
                + issued
                    .adjustments
                    .iter()
                    .map(|a| a.document.total())
                    .sum::<Decimal>(),
        )
    });
    let doc = json!({
        "number": d.number,
        "company": d.company.as_str(),
        "company_name": company.name,
        "kind": d.kind.as_str(),
        "boundary": d.boundary.to_string(),
        "period_start": d.period_start.to_string(),
        "period_end": d.period_end.to_string(),
        "currency": cur.code(),
        "adjustment_of": issued.note.as_ref().map(note_json),
        "lines": lines_json(d),
        "total": cur.format_amount(d.total()),
        "adjustments": issued.adjustments.iter().map(adjustment).collect::<Vec<_>>(),
        "total_with_adjustments": with_adjustments,
    });
    format!(
        "{}\n",
        serde_json::to_string_pretty(&doc).unwrap_or_default()
    )
}
