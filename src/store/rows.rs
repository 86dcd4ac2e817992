//! Rows as both databases store them, and their conversions to and from domain values.
//!
//! Every column holds an integer or text: money as micro-units, instants as microseconds
//! since the epoch (UTC), local dates as `YYYY-MM-DD`, the words of the domain by their file
//! names. Reading a value the domain does not know is an error naming the column, never a
//! silent default.

use std::str::FromStr;
use std::sync::Arc;

use anyhow::{Context, anyhow};
use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;

use crate::domain::account::CardCharge;
use crate::domain::close::Step;
use crate::domain::grid::Term;
use crate::domain::invoice::{Document, DocumentKind, Line, LineKind};
use crate::domain::model::{
    Admin, AdminRole, Allowance, AutoRecharge, Billing, Bundle, BundleKind, Company, CreditSharing,
    Event, InitialPool, Office, Party, PartyKind, Product, Rate,
};
use crate::domain::money::{Currency, from_micros, to_micros};
use crate::domain::rerun::AdjustmentNote;
use crate::domain::usage::{Rating, Unrated, Usage};
use crate::domain::wallets::{EntryKind, LedgerEntry};
use crate::domain::words::{OfficeId, Scope, Wallet};

use super::{CompletedStep, JobRun, LedgerRow, RatedUsage, Rejection, StepFailure};

/// An amount as integer micro-units.
pub fn money(amount: Decimal) -> anyhow::Result<i64> {
    to_micros(amount).ok_or_else(|| anyhow!("{amount} does not fit the store's micro-units"))
}

/// Integer micro-units as an amount.
pub fn amount(micros: i64) -> Decimal {
    from_micros(micros)
}

/// A price as micro-units and the number of decimals it was written with, so that it reads
/// back as written (`0.0250`).
pub fn price(p: Decimal) -> anyhow::Result<(i64, i64)> {
    Ok((money(p)?, i64::from(p.scale())))
}

/// A price from its micro-units and written decimals.
pub fn price_from(micros: i64, scale: i64) -> anyhow::Result<Decimal> {
    let mut p = from_micros(micros);
    let scale = u32::try_from(scale).with_context(|| format!("stored price scale {scale}"))?;
    if scale < p.scale() {
        p = p.normalize();
        if p.scale() > scale {
            anyhow::bail!("stored price {p} has more than {scale} decimals");
        }
    }
    p.rescale(scale);
    Ok(p)
}

/// An instant as microseconds since the epoch.
pub fn instant(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

/// Microseconds since the epoch as an instant.
pub fn at(micros: i64) -> anyhow::Result<DateTime<Utc>> {
    DateTime::from_timestamp_micros(micros).ok_or_else(|| anyhow!("instant {micros} out of range"))
}

/// A local date as `YYYY-MM-DD`.
pub fn date(d: NaiveDate) -> String {
    d.format("%Y-%m-%d").to_string()
}

/// `YYYY-MM-DD` as a local date.
pub fn parse_date(s: &str) -> anyhow::Result<NaiveDate> {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").with_context(|| format!("stored date {s:?}"))
}

/// A boundary index from its column.
pub fn index(i: i64) -> anyhow::Result<u32> {
    u32::try_from(i).with_context(|| format!("stored boundary index {i}"))
}

/// A word of the domain from its column.
pub fn word<T: FromStr<Err = String>>(column: &str, s: &str) -> anyhow::Result<T> {
    s.parse()
        .map_err(|e: String| anyhow!("stored {column}: {e}"))
}

/// An optional word, stored as empty text when absent.
pub fn opt_word<T: FromStr<Err = String>>(column: &str, s: &str) -> anyhow::Result<Option<T>> {
    (!s.is_empty()).then(|| word(column, s)).transpose()
}

/// A currency from its ISO 4217 code.
pub fn currency(code: &str) -> anyhow::Result<Currency> {
    Currency::from_code(code).ok_or_else(|| anyhow!("stored currency {code:?}"))
}

/// The `office` column of a line or bundle: empty for the company.
pub fn office_text(office: Option<&OfficeId>) -> String {
    office.map(|o| o.to_string()).unwrap_or_default()
}

/// Reads one of a closed set of names.
fn one_of<T: Copy>(column: &str, s: &str, options: &[(&str, T)]) -> anyhow::Result<T> {
    options
        .iter()
        .find(|(name, _)| *name == s)
        .map(|(_, v)| *v)
        .ok_or_else(|| anyhow!("stored {column}: unknown value {s:?}"))
}

const TERMS: &[(&str, Term)] = &[("monthly", Term::Monthly), ("annual", Term::Annual)];

/// Names a bundle kind as stored.
pub fn bundle_kind(kind: BundleKind) -> &'static str {
    match kind {
        BundleKind::Telephony => "telephony",
        BundleKind::Ai => "ai",
    }
}

/// Names a credit sharing as stored.
pub fn credit_sharing(sharing: CreditSharing) -> &'static str {
    match sharing {
        CreditSharing::Company => "company",
        CreditSharing::Office => "office",
    }
}

/// Names a party kind as stored.
pub fn party_kind(kind: PartyKind) -> &'static str {
    match kind {
        PartyKind::User => "user",
        PartyKind::Group => "group",
    }
}

/// `companies`.
#[derive(sqlx::FromRow)]
pub struct CompanyRow {
    id: String,
    name: String,
    time_zone: String,
    currency: String,
    anchor: String,
    billing: String,
    card_verified: bool,
    credit_sharing: String,
    primary_office: String,
    ar_threshold: Option<i64>,
    ar_amount: Option<i64>,
}

impl CompanyRow {
    pub fn into_domain(self) -> anyhow::Result<Company> {
        Ok(Company {
            time_zone: self
                .time_zone
                .parse()
                .map_err(|_| anyhow!("stored time zone {:?}", self.time_zone))?,
            currency: currency(&self.currency)?,
            anchor: parse_date(&self.anchor)?,
            billing: one_of(
                "billing",
                &self.billing,
                &[("invoiced", Billing::Invoiced), ("card", Billing::Card)],
            )?,
            card_verified: self.card_verified,
            credit_sharing: one_of(
                "credit_sharing",
                &self.credit_sharing,
                &[
                    ("company", CreditSharing::Company),
                    ("office", CreditSharing::Office),
                ],
            )?,
            primary_office: self.primary_office.into(),
            auto_recharge: match (self.ar_threshold, self.ar_amount) {
                (Some(t), Some(a)) => Some(AutoRecharge {
                    threshold: amount(t),
                    amount: amount(a),
                }),
                (None, None) => None,
                _ => anyhow::bail!("stored auto-recharge of {} is half set", self.id),
            },
            id: self.id.into(),
            name: self.name,
        })
    }
}

/// `offices`.
#[derive(sqlx::FromRow)]
pub struct OfficeRow {
    company_id: String,
    id: String,
    name: String,
}

impl OfficeRow {
    pub fn into_domain(self) -> Office {
        Office {
            id: self.id.into(),
            company: self.company_id.into(),
            name: self.name,
        }
    }
}

/// `parties`: users and groups.
#[derive(sqlx::FromRow)]
pub struct PartyRow {
    company_id: String,
    id: String,
    kind: String,
    office_id: String,
    name: String,
    phone: Option<String>,
    product: Option<String>,
}

impl PartyRow {
    pub fn into_domain(self) -> anyhow::Result<Party> {
        Ok(Party {
            id: self.id,
            kind: one_of(
                "party kind",
                &self.kind,
                &[("user", PartyKind::User), ("group", PartyKind::Group)],
            )?,
            company: self.company_id.into(),
            office: self.office_id.into(),
            name: self.name,
            phone: self.phone,
            product: self.product.map(Arc::from),
        })
    }
}

/// `admins`.
#[derive(sqlx::FromRow)]
pub struct AdminRow {
    company_id: String,
    email: String,
    office_id: Option<String>,
}

impl AdminRow {
    pub fn into_domain(self) -> Admin {
        Admin {
            email: self.email,
            company: self.company_id.into(),
            role: self
                .office_id
                .map_or(AdminRole::Company, |o| AdminRole::Office(o.into())),
        }
    }
}

/// `products`.
#[derive(sqlx::FromRow)]
pub struct ProductRow {
    code: String,
    name: String,
    term: String,
    unit_price: i64,
}

impl ProductRow {
    pub fn into_domain(self) -> anyhow::Result<Product> {
        Ok(Product {
            term: one_of("term", &self.term, TERMS)?,
            code: self.code,
            name: self.name,
            unit_price: amount(self.unit_price),
        })
    }
}

/// `initial_pools`.
#[derive(sqlx::FromRow)]
pub struct PoolRow {
    company_id: String,
    office_id: String,
    product: String,
    quantity: i64,
}

impl PoolRow {
    pub fn into_domain(self) -> InitialPool {
        InitialPool {
            company: self.company_id.into(),
            office: self.office_id.into(),
            product: self.product,
            quantity: self.quantity,
        }
    }
}

/// `bundles`.
#[derive(sqlx::FromRow)]
pub struct BundleRow {
    company_id: String,
    id: String,
    scope: String,
    kind: String,
    credits: i64,
    fee: i64,
    cadence: String,
    start: String,
}

impl BundleRow {
    pub fn into_domain(self) -> anyhow::Result<Bundle> {
        Ok(Bundle {
            id: self.id,
            company: self.company_id.into(),
            scope: Scope::parse(&self.scope),
            kind: one_of(
                "bundle kind",
                &self.kind,
                &[("telephony", BundleKind::Telephony), ("ai", BundleKind::Ai)],
            )?,
            credits: amount(self.credits),
            fee: amount(self.fee),
            cadence: one_of("cadence", &self.cadence, TERMS)?,
            start: parse_date(&self.start)?,
        })
    }
}

/// `allowances`.
#[derive(sqlx::FromRow)]
pub struct AllowanceRow {
    company_id: String,
    service: String,
    amount: i64,
}

impl AllowanceRow {
    pub fn into_domain(self) -> anyhow::Result<Allowance> {
        Ok(Allowance {
            company: self.company_id.into(),
            service: word("service", &self.service)?,
            amount: amount(self.amount),
        })
    }
}

/// `rates`: the rate card.
#[derive(sqlx::FromRow)]
pub struct RateRow {
    service: String,
    usage_type: Option<String>,
    direction: Option<String>,
    prefix: Option<String>,
    product: Option<String>,
    price_micros: i64,
    price_scale: i64,
    increment_first: Option<i64>,
    increment_next: Option<i64>,
}

impl RateRow {
    pub fn into_domain(self) -> anyhow::Result<Rate> {
        let service = word("service", &self.service)?;
        let increment = match (self.increment_first, self.increment_next) {
            (Some(first), Some(next)) => Some((
                u32::try_from(first).context("stored increment")?,
                u32::try_from(next).context("stored increment")?,
            )),
            (None, None) => None,
            _ => anyhow::bail!("stored rate increment is half set"),
        };
        Ok(Rate {
            usage_type: self
                .usage_type
                .map(|t| {
                    crate::domain::words::UsageType::parse_for(service, &t)
                        .map_err(|e| anyhow!("stored usage_type: {e}"))
                })
                .transpose()?,
            service,
            direction: self.direction.map(|d| word("direction", &d)).transpose()?,
            prefix: self.prefix,
            product: self.product,
            price: price_from(self.price_micros, self.price_scale)?,
            increment,
        })
    }
}

/// `events`: every event as it arrived.
#[derive(sqlx::FromRow)]
pub struct EventRow {
    company_id: String,
    at: i64,
    source: String,
    line: i64,
    event_id: Option<String>,
    payload: String,
}

impl EventRow {
    pub fn into_domain(self) -> anyhow::Result<Event> {
        Ok(Event {
            at: at(self.at)?,
            company: self.company_id.into(),
            source: self.source,
            line: self.line,
            id: self.event_id,
            kind: serde_json::from_str(&self.payload).context("stored event payload")?,
        })
    }
}

/// `ledger_entries`.
#[derive(sqlx::FromRow)]
pub struct LedgerDbRow {
    seq: i64,
    company_id: String,
    at: i64,
    scope: String,
    wallet: String,
    entry: String,
    amount: i64,
    reference: String,
    expires_at: Option<i64>,
}

impl LedgerDbRow {
    pub fn into_domain(self) -> anyhow::Result<LedgerRow> {
        Ok(LedgerRow {
            seq: self.seq,
            company: self.company_id.into(),
            entry: LedgerEntry {
                at: at(self.at)?,
                scope: Scope::parse(&self.scope),
                wallet: word("wallet", &self.wallet)?,
                kind: EntryKind::parse(&self.entry)
                    .ok_or_else(|| anyhow!("stored ledger entry kind {:?}", self.entry))?,
                amount: amount(self.amount),
                reference: self.reference,
                expires_at: self.expires_at.map(at).transpose()?,
            },
        })
    }
}

/// `usage` joined with `usage_ratings`: a rated usage record.
#[derive(sqlx::FromRow)]
pub struct RatedUsageRow {
    company_id: String,
    id: String,
    source: String,
    line: i64,
    occurred_at: i64,
    received_at: i64,
    office: String,
    party: String,
    service: String,
    usage_type: String,
    direction: String,
    remote_number: String,
    number_used: String,
    duration_s: String,
    billable_quantity: i64,
    unit: String,
    rate_micros: i64,
    rate_scale: i64,
    increment: String,
    cost: i64,
    content: String,
    boundary_index: i64,
    wallet_sources: String,
    late: bool,
}

impl RatedUsageRow {
    pub fn into_domain(self) -> anyhow::Result<RatedUsage> {
        let service = word("service", &self.service)?;
        let usage_type = if self.usage_type.is_empty() {
            None
        } else {
            Some(
                crate::domain::words::UsageType::parse_for(service, &self.usage_type)
                    .map_err(|e| anyhow!("stored usage_type: {e}"))?,
            )
        };
        let usage = Usage {
            company: self.company_id.into(),
            id: self.id.clone(),
            source: self.source,
            line: self.line,
            occurred_at: at(self.occurred_at)?,
            received_at: at(self.received_at)?,
            office: self.office.into(),
            party: self.party,
            service,
            usage_type,
            direction: opt_word("direction", &self.direction)?,
            remote_number: self.remote_number,
            number_used: self.number_used,
            duration_s: (!self.duration_s.is_empty())
                .then(|| self.duration_s.parse::<i64>())
                .transpose()
                .with_context(|| format!("stored duration_s {:?}", self.duration_s))?,
            billable_quantity: self.billable_quantity,
            unit: word("unit", &self.unit)?,
            rate: price_from(self.rate_micros, self.rate_scale)?,
            increment: increment_from(&self.increment)?,
            cost: amount(self.cost),
            content: self.content,
        };
        let rating = Rating {
            id: self.id,
            boundary_index: index(self.boundary_index)?,
            wallet_sources: wallets_from(&self.wallet_sources)?,
            late: self.late,
        };
        Ok(RatedUsage { usage, rating })
    }
}

/// The columns of `usage`, in the order [`UsageValues::text`] and the inserts write them.
pub const USAGE_COLUMNS: &str = "company_id, id, source, line, occurred_at, received_at, office, \
     party, service, usage_type, direction, remote_number, number_used, duration_s, \
     billable_quantity, unit, rate_micros, rate_scale, increment, cost, content";

/// An accepted usage row as its columns hold it.
pub struct UsageValues<'a> {
    pub company: &'a str,
    pub id: &'a str,
    pub source: &'a str,
    pub line: i64,
    pub occurred_at: i64,
    pub received_at: i64,
    pub office: &'a str,
    pub party: &'a str,
    pub service: &'static str,
    pub usage_type: &'static str,
    pub direction: &'static str,
    pub remote_number: &'a str,
    pub number_used: &'a str,
    pub duration_s: String,
    pub billable_quantity: i64,
    pub unit: &'static str,
    pub rate_micros: i64,
    pub rate_scale: i64,
    pub increment: String,
    pub cost: i64,
    pub content: &'a str,
}

impl<'a> UsageValues<'a> {
    /// The columns of `u`; `Err` when an amount does not fit the store.
    pub fn of(u: &'a Usage) -> anyhow::Result<Self> {
        let (rate_micros, rate_scale) = price(u.rate)?;
        Ok(UsageValues {
            company: u.company.as_str(),
            id: &u.id,
            source: &u.source,
            line: u.line,
            occurred_at: instant(u.occurred_at),
            received_at: instant(u.received_at),
            office: u.office.as_str(),
            party: &u.party,
            service: u.service.as_str(),
            usage_type: u.usage_type.map_or("", |t| t.as_str()),
            direction: u.direction.map_or("", |d| d.as_str()),
            remote_number: &u.remote_number,
            number_used: &u.number_used,
            duration_s: u.duration_s.map(|d| d.to_string()).unwrap_or_default(),
            billable_quantity: u.billable_quantity,
            unit: u.unit.as_str(),
            rate_micros,
            rate_scale,
            increment: increment_text(u.increment),
            cost: money(u.cost)?,
            content: &u.content,
        })
    }

    /// The columns as text, in [`USAGE_COLUMNS`] order (for PostgreSQL's `COPY`).
    pub fn text(&self) -> [std::borrow::Cow<'_, str>; 21] {
        use std::borrow::Cow::{Borrowed, Owned};
        [
            Borrowed(self.company),
            Borrowed(self.id),
            Borrowed(self.source),
            Owned(self.line.to_string()),
            Owned(self.occurred_at.to_string()),
            Owned(self.received_at.to_string()),
            Borrowed(self.office),
            Borrowed(self.party),
            Borrowed(self.service),
            Borrowed(self.usage_type),
            Borrowed(self.direction),
            Borrowed(self.remote_number),
            Borrowed(self.number_used),
            Borrowed(&self.duration_s),
            Owned(self.billable_quantity.to_string()),
            Borrowed(self.unit),
            Owned(self.rate_micros.to_string()),
            Owned(self.rate_scale.to_string()),
            Borrowed(&self.increment),
            Owned(self.cost.to_string()),
            Borrowed(self.content),
        ]
    }
}

/// A call's billing increment as stored: `first/next`, empty for other services.
pub fn increment_text(increment: Option<(u32, u32)>) -> String {
    increment
        .map(|(first, next)| format!("{first}/{next}"))
        .unwrap_or_default()
}

fn increment_from(s: &str) -> anyhow::Result<Option<(u32, u32)>> {
    if s.is_empty() {
        return Ok(None);
    }
    let (first, next) = s
        .split_once('/')
        .ok_or_else(|| anyhow!("stored increment {s:?}"))?;
    Ok(Some((
        first
            .parse()
            .with_context(|| format!("stored increment {s:?}"))?,
        next.parse()
            .with_context(|| format!("stored increment {s:?}"))?,
    )))
}

/// The wallets a charge drew from, as stored: joined by `+` in draw-down order.
pub fn wallets_text(wallets: &[Wallet]) -> String {
    wallets
        .iter()
        .map(Wallet::to_string)
        .collect::<Vec<_>>()
        .join("+")
}

fn wallets_from(s: &str) -> anyhow::Result<Vec<Wallet>> {
    if s.is_empty() {
        return Ok(Vec::new());
    }
    s.split('+').map(|w| word("wallet_sources", w)).collect()
}

/// What a close needs of an unrated usage row.
#[derive(sqlx::FromRow)]
pub struct UnratedRow {
    company_id: String,
    id: String,
    occurred_at: i64,
    received_at: i64,
    office: String,
    service: String,
    cost: i64,
}

impl UnratedRow {
    pub fn into_domain(self) -> anyhow::Result<Unrated> {
        Ok(Unrated {
            company: self.company_id.into(),
            id: self.id,
            occurred_at: at(self.occurred_at)?,
            received_at: at(self.received_at)?,
            office: self.office.into(),
            service: word("service", &self.service)?,
            cost: amount(self.cost),
        })
    }
}

/// A completed step, from `job_runs`.
#[derive(sqlx::FromRow)]
pub struct CompletedRow {
    company_id: String,
    boundary_index: i64,
    job: String,
}

impl CompletedRow {
    pub fn into_domain(self) -> anyhow::Result<CompletedStep> {
        Ok(CompletedStep {
            company: self.company_id.into(),
            boundary_index: index(self.boundary_index)?,
            step: word("job", &self.job)?,
        })
    }
}

/// `job_runs`.
#[derive(sqlx::FromRow)]
pub struct JobRunRow {
    job: String,
    status: String,
    company_id: String,
    boundary_index: i64,
    boundary_date: String,
    items: i64,
}

impl JobRunRow {
    pub fn into_domain(self) -> anyhow::Result<JobRun> {
        Ok(JobRun {
            job: word("job", &self.job)?,
            status: word("status", &self.status)?,
            company: self.company_id.into(),
            boundary_index: index(self.boundary_index)?,
            boundary: parse_date(&self.boundary_date)?,
            items: self.items,
        })
    }
}

/// `job_failures`.
#[derive(sqlx::FromRow)]
pub struct FailureRow {
    company_id: String,
    boundary_index: i64,
    boundary_date: String,
    job: String,
    error: String,
    failed_at: i64,
}

impl FailureRow {
    pub fn into_domain(self) -> anyhow::Result<StepFailure> {
        Ok(StepFailure {
            step: word::<Step>("job", &self.job)?,
            company: self.company_id.into(),
            boundary_index: index(self.boundary_index)?,
            boundary: parse_date(&self.boundary_date)?,
            error: self.error,
            failed_at: at(self.failed_at)?,
        })
    }
}

/// `invoices`.
#[derive(sqlx::FromRow)]
pub struct InvoiceRow {
    company_id: String,
    number: String,
    kind: String,
    boundary_index: i64,
    boundary: String,
    period_start: String,
    period_end: String,
    currency: String,
}

impl InvoiceRow {
    /// The document without its lines.
    pub fn into_domain(self) -> anyhow::Result<Document> {
        Ok(Document {
            kind: DocumentKind::parse(&self.kind)
                .ok_or_else(|| anyhow!("stored document kind {:?}", self.kind))?,
            number: self.number,
            company: self.company_id.into(),
            boundary_index: index(self.boundary_index)?,
            boundary: parse_date(&self.boundary)?,
            period_start: parse_date(&self.period_start)?,
            period_end: parse_date(&self.period_end)?,
            lines: Vec::new(),
            currency: currency(&self.currency)?,
        })
    }
}

/// `invoice_lines`.
#[derive(sqlx::FromRow)]
pub struct LineRow {
    pub company_id: String,
    pub number: String,
    kind: String,
    office: String,
    product: String,
    description: String,
    quantity: Option<i64>,
    unit_price: Option<i64>,
    amount: i64,
    source: String,
    corrects: Option<String>,
}

impl LineRow {
    pub fn into_domain(self) -> anyhow::Result<Line> {
        Ok(Line {
            kind: LineKind::parse(&self.kind)
                .ok_or_else(|| anyhow!("stored line kind {:?}", self.kind))?,
            office: (!self.office.is_empty()).then(|| self.office.into()),
            product: self.product,
            description: self.description,
            quantity: self.quantity,
            unit_price: self.unit_price.map(amount),
            amount: amount(self.amount),
            source: self.source,
            corrects: self
                .corrects
                .map(|k| {
                    LineKind::parse(&k).ok_or_else(|| anyhow!("stored corrected line kind {k:?}"))
                })
                .transpose()?,
        })
    }
}

/// `invoice_adjustments`: who issued an adjustment, why and when.
#[derive(sqlx::FromRow)]
pub struct AdjustmentNoteRow {
    pub number: String,
    adjusts: String,
    reason: String,
    issued_by: String,
    issued_at: i64,
}

impl AdjustmentNoteRow {
    pub fn into_domain(self) -> anyhow::Result<AdjustmentNote> {
        Ok(AdjustmentNote {
            adjusts: self.adjusts,
            reason: self.reason,
            by: self.issued_by,
            at: at(self.issued_at)?,
        })
    }
}

/// `rejections`.
#[derive(sqlx::FromRow)]
pub struct RejectionRow {
    company_id: Option<String>,
    source: String,
    line: i64,
    item_id: String,
    reason: String,
}

impl RejectionRow {
    pub fn into_domain(self) -> Rejection {
        Rejection {
            company: self.company_id.map(Into::into),
            source: self.source,
            line: self.line,
            id: self.item_id,
            reason: self.reason,
        }
    }
}

/// `card_charges`.
#[derive(sqlx::FromRow)]
pub struct CardChargeRow {
    company_id: String,
    at: i64,
    kind: String,
    amount: i64,
    currency: String,
    reference: String,
}

impl CardChargeRow {
    pub fn into_domain(self) -> anyhow::Result<CardCharge> {
        Ok(CardCharge {
            at: at(self.at)?,
            company: self.company_id.into(),
            kind: word("card charge kind", &self.kind)?,
            amount: amount(self.amount),
            currency: currency(&self.currency)?,
            reference: self.reference,
        })
    }
}

/// `usage_spend`: what a close's rated usage drew from one wallet.
#[derive(sqlx::FromRow)]
pub struct SpendRow {
    pub company_id: String,
    boundary_index: i64,
    office: String,
    service: String,
    wallet: String,
    amount: i64,
}

impl SpendRow {
    /// (boundary index, office, service, wallet, amount).
    pub fn into_domain(
        self,
    ) -> anyhow::Result<(
        u32,
        crate::domain::words::OfficeId,
        crate::domain::words::Service,
        Wallet,
        Decimal,
    )> {
        Ok((
            index(self.boundary_index)?,
            self.office.into(),
            word("service", &self.service)?,
            word("wallet", &self.wallet)?,
            amount(self.amount),
        ))
    }
}

/// A row of the usage history: `usage` with office and party names and its wallets.
#[derive(sqlx::FromRow)]
pub struct HistoryDbRow {
    id: String,
    occurred_at: i64,
    office: String,
    party: String,
    remote_number: String,
    service: String,
    usage_type: String,
    direction: String,
    duration_s: String,
    billable_quantity: i64,
    unit: String,
    rate_micros: i64,
    rate_scale: i64,
    increment: String,
    cost: i64,
    wallet_sources: String,
}

impl HistoryDbRow {
    /// The record, its office and its user or group named from `names`.
    pub fn into_domain(
        self,
        names: &CompanyNames,
    ) -> anyhow::Result<crate::domain::usage_history::HistoryRecord> {
        let service = word("service", &self.service)?;
        Ok(crate::domain::usage_history::HistoryRecord {
            usage_type: (!self.usage_type.is_empty())
                .then(|| {
                    crate::domain::words::UsageType::parse_for(service, &self.usage_type)
                        .map_err(|e| anyhow!("stored usage_type: {e}"))
                })
                .transpose()?,
            id: self.id,
            occurred_at: at(self.occurred_at)?,
            office_name: names
                .offices
                .get(&self.office)
                .cloned()
                .unwrap_or_else(|| self.office.clone()),
            party_name: names.parties.get(&self.party).cloned().unwrap_or_default(),
            office: self.office.into(),
            remote_number: self.remote_number,
            service,
            direction: opt_word("direction", &self.direction)?,
            duration_s: (!self.duration_s.is_empty())
                .then(|| self.duration_s.parse::<i64>())
                .transpose()
                .with_context(|| format!("stored duration_s {:?}", self.duration_s))?,
            billable_quantity: self.billable_quantity,
            unit: word("unit", &self.unit)?,
            rate: price_from(self.rate_micros, self.rate_scale)?,
            increment: increment_from(&self.increment)?,
            wallet_sources: wallets_from(&self.wallet_sources)?,
            cost: amount(self.cost),
        })
    }
}

/// The names of a company's offices and of its users and groups, by id.
#[derive(Default)]
pub struct CompanyNames {
    pub offices: std::collections::HashMap<String, String>,
    pub parties: std::collections::HashMap<String, String>,
}

/// `usage_emails`.
#[derive(sqlx::FromRow)]
pub struct EmailRow {
    company_id: String,
    boundary_index: i64,
    boundary_date: String,
    recipient: String,
    scope: String,
    message_id: String,
    subject: String,
    summary: String,
    attachment: String,
    status: String,
    attempts: i64,
    next_attempt_at: i64,
    last_error: Option<String>,
}

impl EmailRow {
    pub fn into_domain(self) -> anyhow::Result<super::QueuedEmail> {
        use crate::domain::usage_history::ExportScope;
        Ok(super::QueuedEmail {
            company: self.company_id.into(),
            boundary_index: index(self.boundary_index)?,
            boundary: parse_date(&self.boundary_date)?,
            recipient: self.recipient,
            scope: if self.scope == "company" {
                ExportScope::Company
            } else {
                ExportScope::Office(self.scope.into())
            },
            message_id: self.message_id,
            subject: self.subject,
            summary: self.summary,
            attachment: self.attachment,
            status: word("email status", &self.status)?,
            attempts: self.attempts,
            next_attempt_at: at(self.next_attempt_at)?,
            last_error: self.last_error,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prices_read_back_as_written() {
        for written in ["0.0250", "25.00", "0", "12.5", "0.000001", "480.000000"] {
            let p: Decimal = written.parse().unwrap();
            let (micros, scale) = price(p).unwrap();
            assert_eq!(price_from(micros, scale).unwrap().to_string(), written);
        }
    }

    #[test]
    fn unknown_words_are_refused_not_defaulted() {
        assert!(word::<Wallet>("wallet", "credits").is_err());
        assert!(one_of("term", "weekly", TERMS).is_err());
        assert!(wallets_from("universal+nope").is_err());
        assert_eq!(
            wallets_from("allowance:calling+universal").unwrap(),
            [
                Wallet::Allowance(crate::domain::words::Service::Calling),
                Wallet::Universal
            ]
        );
        assert_eq!(increment_from("30/6").unwrap(), Some((30, 6)));
        assert!(increment_from("30").is_err());
    }
}
