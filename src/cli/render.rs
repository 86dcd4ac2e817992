//! Reports for people at a terminal: the status of closes and the plan usage view.

use billrun::domain::money::Currency;
use billrun::domain::wallets::{PlanUsage, PlanUsageView};
use billrun::jobs::status::CompanyStatus;

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

/// The status report as text.
pub fn status_text(rows: &[CompanyStatus], rejections: usize) -> String {
    let mut out = String::from("company  closed through  pending  next boundary\n");
    for r in rows {
        let closed = r.closed_through.map_or("-".to_string(), |d| d.to_string());
        out.push_str(&format!(
            "{}  {closed}  {}  {}\n",
            r.company,
            r.pending.len(),
            r.next
        ));
    }
    let parked: Vec<_> = rows.iter().flat_map(|r| &r.parked).collect();
    if parked.is_empty() {
        out.push_str("parked: none\n");
    } else {
        out.push_str("parked (retried by the next run):\n");
        for f in parked {
            out.push_str(&format!(
                "  {} {} {} at {}: {}\n",
                f.company,
                f.boundary,
                f.step,
                f.failed_at.to_rfc3339(),
                f.error
            ));
        }
    }
    out.push_str(&format!(
        "rejected items: {rejections} (see rejections.csv from `billrun dump`)\n"
    ));
    out
}

/// The usage email queue: how many were sent, and each one waiting or refused, with its
/// tries, next try and last error.
pub fn email_queue_text(sent: i64, pending: &[billrun::store::QueuedEmail]) -> String {
    use billrun::store::EmailStatus;
    let queued = pending
        .iter()
        .filter(|e| e.status == EmailStatus::Queued)
        .count();
    let failed = pending.len() - queued;
    let mut out = format!("email queue: {sent} sent, {queued} queued, {failed} failed\n");
    for e in pending {
        let when = match e.status {
            EmailStatus::Queued => format!("next try {}", e.next_attempt_at.to_rfc3339()),
            _ => "not retried".to_string(),
        };
        out.push_str(&format!(
            "  {} {} {} {} after {} tries, {when}{}\n",
            e.status.as_str(),
            e.company,
            e.boundary,
            e.recipient,
            e.attempts,
            e.last_error
                .as_deref()
                .map(|m| format!(": {m}"))
                .unwrap_or_default()
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use billrun::domain::close::Step;
    use billrun::domain::words::{Scope, Service, Wallet};
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
                pending: vec![date("2026-02-01"), date("2026-03-01")],
                next: date("2026-04-01"),
                parked: vec![StepFailure {
                    step: Step::Invoice,
                    company: "alpha".into(),
                    boundary_index: 1,
                    boundary: date("2026-02-01"),
                    error: "recorded event e-7 of alpha no longer applies".into(),
                    failed_at: Utc.with_ymd_and_hms(2026, 3, 2, 0, 0, 5).unwrap(),
                }],
            },
            CompanyStatus {
                company: "beta".into(),
                closed_through: None,
                pending: vec![],
                next: date("2026-04-15"),
                parked: vec![],
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
