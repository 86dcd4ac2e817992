//! Taking in usage rows: each row is checked (company, anchor, office, user, fields,
//! duplicate, rate, in that order) and either accepted with its price or rejected with its
//! line and reason. Nothing is priced at zero silently. Debiting happens later, in a close.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;

use crate::domain::model::{Company, World};
use crate::domain::rating::{RateCard, billed_seconds, increment_of, unit_of, usage_cost};
use crate::domain::sms;
use crate::domain::usage::Usage;
use crate::fixture::usage::UsageRow;
use crate::fixture::values;
use crate::store::{Rejection, Store, UsageBatch};

use super::history::Holdings;
use super::ingest::IngestReport;

/// The events that change which product a user holds.
const ASSIGNMENTS: [&str; 3] = ["license_assign", "license_unassign", "license_transfer"];

/// The instant a replay feeds a row in: its `received_at`, or `occurred_at` when that is
/// empty; `None` when neither can be read (the row is then taken in, and rejected, first).
pub fn arrival(row: &UsageRow) -> Option<DateTime<Utc>> {
    match row.get("received_at") {
        "" => values::instant(row.get("occurred_at")).ok(),
        s => values::instant(s).ok(),
    }
}

/// Every column but `received_at`: what makes two rows with one id the same row.
fn content(row: &UsageRow) -> String {
    row.fields[..row.fields.len() - 1].join("\u{1f}")
}

fn whole(field: &str, s: &str) -> Result<i64, String> {
    s.parse::<i64>()
        .map_err(|_| format!("{field}: {s:?} is not a whole number"))
}

fn at_least_one(field: &str, s: &str) -> Result<u64, String> {
    if s.is_empty() {
        return Err(format!("{field}: missing"));
    }
    let n = whole(field, s)?;
    if n < 1 {
        return Err(format!("{field}: {n} must be at least 1"));
    }
    Ok(n as u64)
}

fn opt(s: &str) -> Option<&str> {
    (!s.is_empty()).then_some(s)
}

/// Checks and prices one row; `Err` is the rejection reason.
fn judge(
    row: &UsageRow,
    world: &World,
    company: &Company,
    holdings: &Holdings,
    card: &RateCard,
    accepted: &BTreeMap<String, String>,
) -> Result<Option<Usage>, String> {
    let occurred_at =
        values::instant(row.get("occurred_at")).map_err(|m| format!("occurred_at: {m}"))?;
    if occurred_at < company.grid().boundary_at(0) {
        return Err(format!("before the company's anchor {}", company.anchor));
    }
    let received_at = match row.get("received_at") {
        "" => occurred_at,
        s => values::instant(s).map_err(|m| format!("received_at: {m}"))?,
    };
    if received_at < occurred_at {
        return Err("received_at: earlier than occurred_at".to_string());
    }
    let office = row.get("office");
    if !world.offices_of(&company.id).any(|o| o.id == office) {
        return Err(format!("unknown office {office} of company {}", company.id));
    }
    let party = row.get("user");
    if !party.is_empty() && !world.parties_of(&company.id).any(|p| p.id == party) {
        return Err(format!(
            "unknown user or group {party} of company {}",
            company.id
        ));
    }
    let service = values::service(row.get("service")).map_err(|m| format!("service: {m}"))?;
    let usage_type = match (service.as_str(), row.get("type")) {
        ("speech_ivr" | "omnichannel", "") => String::new(),
        (s, t) => values::usage_type(s, t).map_err(|m| format!("type: {m}"))?,
    };
    let direction = match (service.as_str(), row.get("direction")) {
        ("calling" | "messaging" | "fax", "") => return Err("direction: missing".to_string()),
        (_, "") => String::new(),
        (_, d) => values::direction(d).map_err(|m| format!("direction: {m}"))?,
    };
    let remote = row.get("remote_number");
    if !remote.is_empty() {
        values::e164(remote).map_err(|m| format!("remote_number: {m}"))?;
    }
    let quantity = match (service.as_str(), usage_type.as_str()) {
        ("calling", _) => {
            let d = row.get("duration_s");
            if d.is_empty() {
                return Err("duration_s: missing".to_string());
            }
            let n = whole("duration_s", d)?;
            if n < 0 {
                return Err(format!("duration_s: {n} is negative"));
            }
            n as u64
        }
        ("messaging", "a2p_sms" | "p2p_sms") => match row.get("segments") {
            "" => u64::from(sms::segments(row.get("body"))),
            s => at_least_one("segments", s)?,
        },
        ("messaging", _) => 1,
        ("fax", _) => at_least_one("pages", row.get("pages"))?,
        ("ai_agent", _) => at_least_one("sessions", row.get("sessions"))?,
        _ => at_least_one("units", row.get("units"))?,
    };

    let id = row.get("id");
    if id.is_empty() {
        return Err("id: missing".to_string());
    }
    let content = content(row);
    if let Some(earlier) = accepted.get(id) {
        return if *earlier == content {
            Ok(None)
        } else {
            Err(format!("duplicate id {id} with different content"))
        };
    }

    let product = opt(party).and_then(|p| holdings.product_at(p, occurred_at));
    let rate = card
        .lookup(
            &service,
            opt(&usage_type),
            opt(&direction),
            opt(remote),
            product,
        )
        .ok_or_else(|| {
            format!(
                "no rate for {service}/{}/{} (remote {}, product {})",
                opt(&usage_type).unwrap_or("-"),
                opt(&direction).unwrap_or("-"),
                opt(remote).unwrap_or("-"),
                product.unwrap_or("-")
            )
        })?;
    let (billable, increment) = if service == "calling" {
        let (first, next) = increment_of(rate);
        (
            billed_seconds(quantity, first, next),
            format!("{first}/{next}"),
        )
    } else {
        (quantity, String::new())
    };
    let cost: Decimal = usage_cost(&service, rate.price, billable);
    Ok(Some(Usage {
        company: company.id.clone(),
        id: id.to_string(),
        source: row.source.clone(),
        line: row.line,
        occurred_at,
        received_at,
        office: office.to_string(),
        party: party.to_string(),
        unit: unit_of(&service, opt(&usage_type)).to_string(),
        service,
        usage_type,
        direction,
        remote_number: remote.to_string(),
        number_used: row.get("number_used").to_string(),
        duration_s: row.get("duration_s").to_string(),
        billable_quantity: i64::try_from(billable).map_err(|_| "quantity too large".to_string())?,
        rate: rate.price.to_string(),
        increment,
        cost,
        content,
    }))
}

/// Judges and records usage `rows` (in arrival order) against the recorded world.
pub async fn ingest_usage<S: Store>(
    store: &S,
    world: &World,
    rows: &[UsageRow],
) -> anyhow::Result<IngestReport> {
    let mut report = IngestReport::default();
    if rows.is_empty() {
        return Ok(report);
    }
    let card = RateCard::new(&world.rates)
        .map_err(|d| anyhow::anyhow!("the rate card has duplicate entries: {d}"))?;
    let ids: Vec<String> = rows.iter().map(|r| r.get("id").to_string()).collect();
    let mut accepted: BTreeMap<String, String> =
        store.usage_contents(&ids).await?.into_iter().collect();
    let companies: Vec<String> = rows
        .iter()
        .map(|r| r.get("company").to_string())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut events: BTreeMap<String, Vec<crate::domain::model::Event>> = BTreeMap::new();
    for e in store
        .accepted_events_in(&companies, Some(&ASSIGNMENTS))
        .await?
    {
        events.entry(e.company.clone()).or_default().push(e);
    }
    let mut holdings: BTreeMap<String, Holdings> = BTreeMap::new();
    let mut batch = UsageBatch::default();
    for row in rows {
        let reject = |company: Option<String>, reason: String| {
            (
                company,
                Rejection {
                    source: row.source.clone(),
                    line: row.line,
                    id: row.get("id").to_string(),
                    reason,
                },
            )
        };
        let company_id = row.get("company");
        let Some(company) = world.companies.get(company_id) else {
            batch
                .rejections
                .push(reject(None, format!("unknown company {company_id}")));
            report.rejected += 1;
            continue;
        };
        if !holdings.contains_key(company_id) {
            let past = events
                .get(company_id)
                .map(Vec::as_slice)
                .unwrap_or_default();
            holdings.insert(company_id.to_string(), Holdings::new(world, company, past));
        }
        match judge(row, world, company, &holdings[company_id], &card, &accepted) {
            Ok(Some(usage)) => {
                accepted.insert(usage.id.clone(), usage.content.clone());
                batch.accepted.push(usage);
                report.accepted += 1;
            }
            Ok(None) => report.duplicates += 1,
            Err(reason) => {
                batch
                    .rejections
                    .push(reject(Some(company.id.clone()), reason));
                report.rejected += 1;
            }
        }
    }
    store.record_usage(&batch).await?;
    Ok(report)
}
