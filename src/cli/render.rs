//! Reports for people at a terminal: the status of closes and the plan usage view.

use billrun::domain::money::Currency;
use billrun::domain::wallets::{PlanUsage, PlanUsageView};
use billrun::jobs::status::{CompanyStatus, LeaseHolder};
use billrun::store::{EmailStatus, QueuedEmail};
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::json;

/// The plan usage view as an aligned text table.
pub fn plan_usage_table(rows: &[PlanUsage], currency: &Currency) -> String {
    let money = |d: Option<rust_decimal::Decimal>| {
        d.map(|d| currency.format_amount(d))
            .unwrap_or_else(|| "-".into())
    };
    let mut table = vec![
        ["scope", "wallet", "committed", "spent", "available", "used"]
            .map(String::from)
            .to_vec(),
    ];
    for r in rows {
        table.push(vec![
            r.scope.to_string(),
            r.wallet.to_string(),
            money(r.committed),
            money(r.spent),
            money(Some(r.available)),
            r.used_percent()
                .map(|p| format!("{p}%"))
                .unwrap_or_else(|| "-".into()),
        ]);
    }
    let widths: Vec<usize> = (0..6)
        .map(|i| table.iter().map(|r| r[i].len()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in &table {
        let cells: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(i, c)| {
                if i < 2 {
                    format!("{c:<w$}", w = widths[i])
                } else {
                    format!("{c:>w$}", w = widths[i])
                }
            })
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// What the plan usage table stands for: the billing period, the currency, and whether
/// usage not yet closed is priced in.
pub fn plan_usage_notes(view: &PlanUsageView, currency: &Currency) -> String {
    let mut out = format!(
        "billing period {} to {} (exclusive), amounts in {}\n",
        view.period_start,
        view.period_end,
        currency.code()
    );
    if view.provisional > 0 {
        out.push_str(&format!(
            "provisional: includes {} usage rows accepted since the last close, priced and drawn \
             down here only; the close at {} records them\n",
            view.provisional, view.period_end
        ));
    }
    out
}

/// Rows as aligned columns, two spaces apart, each line starting with `indent`; the columns
/// listed in `right` are aligned right (numbers).
pub(crate) fn table(rows: &[Vec<String>], indent: &str, right: &[usize]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|i| {
            rows.iter()
                .filter_map(|r| r.get(i))
                .map(|c| c.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let cells: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(i, c)| {
                if right.contains(&i) {
                    format!("{c:>w$}", w = widths[i])
                } else {
                    format!("{c:<w$}", w = widths[i])
                }
            })
            .collect();
        out.push_str(indent);
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// A lease as a person reads it: the holder's host and process, since when it runs, and
/// until when it holds the company.
fn lease_text(lease: Option<&LeaseHolder>) -> String {
    let Some(lease) = lease else {
        return "-".to_string();
    };
    let mut parts = lease.owner.split(':');
    let who = match (parts.next(), parts.next(), parts.next()) {
        (Some("billrun"), Some(host), Some(pid)) => format!("{host} pid {pid}"),
        _ => lease.owner.clone(),
    };
    let since = lease
        .since
        .map(|t| format!(" since {}", t.to_rfc3339_opts(SecondsFormat::Secs, true)))
        .unwrap_or_default();
    format!(
        "{who}{since} until {}",
        lease.until.to_rfc3339_opts(SecondsFormat::Secs, true)
    )
}

/// The status report as text: one aligned line per company (closed through, boundaries
/// pending, next boundary, lease), then each pending boundary with its UTC instant, the
/// parked companies and the rejected items.
pub fn status_text(rows: &[CompanyStatus], rejections: usize) -> String {
    let mut lines = vec![
        [
            "company",
            "closed through",
            "pending",
            "next boundary",
            "lease",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for r in rows {
        lines.push(vec![
            r.company.to_string(),
            r.closed_through.map_or("-".to_string(), |d| d.to_string()),
            r.pending.len().to_string(),
            r.next.to_string(),
            lease_text(r.lease.as_ref()),
        ]);
    }
    let mut out = table(&lines, "", &[2]);
    let pending: Vec<Vec<String>> = rows
        .iter()
        .flat_map(|r| {
            r.pending.iter().map(|b| {
                vec![
                    r.company.to_string(),
                    b.date.to_string(),
                    b.at.to_rfc3339_opts(SecondsFormat::Secs, true),
                ]
            })
        })
        .collect();
    if pending.is_empty() {
        out.push_str("pending boundaries: none\n");
    } else {
        out.push_str("pending boundaries (local date, UTC instant):\n");
        out.push_str(&table(&pending, "  ", &[]));
    }
    let parked: Vec<Vec<String>> = rows
        .iter()
        .flat_map(|r| &r.parked)
        .map(|f| {
            vec![
                f.company.to_string(),
                f.boundary.to_string(),
                f.step.to_string(),
                f.failed_at.to_rfc3339_opts(SecondsFormat::Secs, true),
                f.error.clone(),
            ]
        })
        .collect();
    if parked.is_empty() {
        out.push_str("parked: none\n");
    } else {
        out.push_str("parked (retried by the next run):\n");
        out.push_str(&table(&parked, "  ", &[]));
    }
    out.push_str(&format!(
        "rejected items: {rejections} (see rejections.csv from `billrun dump`)\n"
    ));
    out
}

/// The usage email queue: how many were sent, and each one waiting or refused, with its
/// tries, next try and last error.
pub fn email_queue_text(sent: i64, pending: &[QueuedEmail]) -> String {
    let queued = pending
        .iter()
        .filter(|e| e.status == EmailStatus::Queued)
        .count();
    let failed = pending.len() - queued;
    let mut out = format!("email queue: {sent} sent, {queued} queued, {failed} failed\n");
    let rows: Vec<Vec<String>> = pending
        .iter()
        .map(|e| {
            let when = match e.status {
                EmailStatus::Queued => format!(
                    "next try {}",
                    e.next_attempt_at.to_rfc3339_opts(SecondsFormat::Secs, true)
                ),
                _ => "not retried".to_string(),
            };
            vec![
                e.status.as_str().to_string(),
                e.company.to_string(),
                e.boundary.to_string(),
                e.recipient.clone(),
                format!("after {} tries", e.attempts),
                when,
                e.last_error.clone().unwrap_or_default(),
            ]
        })
        .collect();
    out.push_str(&table(&rows, "  ", &[]));
    out
}

/// The whole status as JSON, for tools: each company with its pending boundaries, lease and
/// parked steps, whether it is overdue by `lag`, the rejected items and the email queue.
pub fn status_json(
    rows: &[CompanyStatus],
    rejections: usize,
    (sent, emails): (i64, &[QueuedEmail]),
    as_of: DateTime<Utc>,
    lag: chrono::Duration,
) -> String {
    let instant = |t: DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::Secs, true);
    let companies: Vec<serde_json::Value> = rows
        .iter()
        .map(|r| {
            json!({
                "company": r.company.to_string(),
                "closed_through": r.closed_through.map(|d| d.to_string()),
                "pending": r.pending.iter().map(|b| json!({
                    "boundary": b.date.to_string(),
                    "at": instant(b.at),
                })).collect::<Vec<_>>(),
                "next_boundary": r.next.to_string(),
                "overdue": r.overdue(as_of, lag).is_some(),
                "lease": r.lease.as_ref().map(|l| json!({
                    "owner": l.owner,
                    "since": l.since.map(instant),
                    "until": instant(l.until),
                })),
                "parked": r.parked.iter().map(|f| json!({
                    "boundary": f.boundary.to_string(),
                    "step": f.step.to_string(),
                    "failed_at": instant(f.failed_at),
                    "error": f.error,
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    let emails: Vec<serde_json::Value> = emails
        .iter()
        .map(|e| {
            json!({
                "status": e.status.as_str(),
                "company": e.company.to_string(),
                "boundary": e.boundary.to_string(),
                "recipient": e.recipient,
                "attempts": e.attempts,
                "next_attempt_at": instant(e.next_attempt_at),
                "last_error": e.last_error,
            })
        })
        .collect();
    let queued = emails.iter().filter(|e| e["status"] == "queued").count();
    let report = json!({
        "as_of": instant(as_of),
        "max_lag_seconds": lag.num_seconds(),
        "companies": companies,
        "rejected_items": rejections,
        "emails": {
            "sent": sent,
            "queued": queued,
            "failed": emails.len() - queued,
            "unsent": emails,
        },
    });
    format!("{report:#}\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use billrun::domain::close::Step;
    use billrun::domain::words::{Scope, Service, Wallet};
    use billrun::jobs::status::Boundary;
    use billrun::store::StepFailure;
    use chrono::{NaiveDate, TimeZone, Utc};
    use rust_decimal::Decimal;

    fn date(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    #[test]
    fn the_status_report_reads_at_a_glance() {
        let rows = [
            CompanyStatus {
                company: "alpha".into(),
                closed_through: Some(date("2026-01-01")),
                pending: vec![
                    Boundary {
                        date: date("2026-02-01"),
                        at: Utc.with_ymd_and_hms(2026, 2, 1, 5, 0, 0).unwrap(),
                    },
                    Boundary {
                        date: date("2026-03-01"),
                        at: Utc.with_ymd_and_hms(2026, 3, 1, 5, 0, 0).unwrap(),
                    },
                ],
                next: date("2026-04-01"),
                parked: vec![StepFailure {
                    step: Step::Invoice,
                    company: "alpha".into(),
                    boundary_index: 1,
                    boundary: date("2026-02-01"),
                    error: "recorded event e-7 of alpha no longer applies".into(),
                    failed_at: Utc.with_ymd_and_hms(2026, 3, 2, 0, 0, 5).unwrap(),
                }],
                lease: Some(LeaseHolder {
                    owner: "billrun:bill-01:4242:1772409600000000".into(),
                    since: Some(Utc.with_ymd_and_hms(2026, 3, 2, 0, 0, 2).unwrap()),
                    until: Utc.with_ymd_and_hms(2026, 3, 2, 0, 0, 35).unwrap(),
                }),
            },
            CompanyStatus {
                company: "beta".into(),
                closed_through: None,
                pending: vec![],
                next: date("2026-04-15"),
                parked: vec![],
                lease: None,
            },
        ];
        insta::assert_snapshot!(status_text(&rows, 3));
    }

    #[test]
    fn the_plan_usage_table_aligns_its_columns() {
        let usd = Currency::from_code("USD").unwrap();
        let rows = [
            PlanUsage {
                scope: Scope::Company,
                wallet: Wallet::Allowance(Service::Calling),
                committed: Some(Decimal::new(1000, 2)),
                spent: Some(Decimal::new(1000, 2)),
                available: Decimal::ZERO,
            },
            PlanUsage {
                scope: Scope::Office("nyc".into()),
                wallet: Wallet::Telephony,
                committed: Some(Decimal::new(50000, 2)),
                spent: Some(Decimal::new(3750, 2)),
                available: Decimal::new(46250, 2),
            },
            PlanUsage {
                scope: Scope::Office("nyc".into()),
                wallet: Wallet::Universal,
                committed: None,
                spent: None,
                available: Decimal::new(-525, 3),
            },
        ];
        insta::assert_snapshot!(plan_usage_table(&rows, &usd));
    }
}
