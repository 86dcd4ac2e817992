//! Closing one boundary of one company: the steps of a close, in order, each claimed per
//! (job, company, boundary) and committed with its effects.
//!
//! Every step computes from what was recorded for instants before the boundary, never from
//! the state at the moment it runs, so a close that is weeks late writes what an on-time close
//! writes. A company's history (events, ledger, unrated usage) is read once into a
//! [`CompanyClose`] and the steps are computed in memory; `run_due` commits them, each still
//! claimed by its own `job_runs` row.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;

use crate::domain::account::Account;
use crate::domain::invoice::{
    arrears, bundle_lines, credit_lines, document, invoice_number, license_lines,
};
use crate::domain::model::{Billing, BundleKind, Company, CreditSharing, Event, World};
use crate::domain::usage::{Rating, Unrated};
use crate::domain::wallets::{EntryKind, GrantRank, LedgerEntry, Wallets};
use crate::store::{CardCharge, Lease, StepEffects, StepRun};

use super::history::{account, book_as_of, price_list};

/// The steps of a close, in the order they run.
pub const STEPS: [&str; 5] = ["rate", "expire", "apply-removals", "invoice", "grant"];

/// The instant "now" for audit columns: the wall clock in production, the simulated clock in
/// a replay. Nothing else in the jobs reads time.
pub type Clock<'a> = &'a (dyn Fn() -> DateTime<Utc> + Sync);

/// A step that failed, and why.
#[derive(Debug, thiserror::Error)]
#[error("step {job}: {source:#}")]
pub struct StepError {
    /// The step.
    pub job: &'static str,
    /// What went wrong.
    pub source: anyhow::Error,
}

/// One company's history, read once, and the steps computed from it in memory.
pub struct CompanyClose<'a> {
    world: &'a World,
    company: &'a Company,
    events: &'a [Event],
    account: Account,
    ledger: Vec<LedgerEntry>,
    /// Unrated usage, in (occurred_at, id) order.
    unrated: Vec<Unrated>,
    ranks: BTreeMap<String, GrantRank>,
}

impl<'a> CompanyClose<'a> {
    /// `events` are the company's accepted events, `ledger` its entries in the order made,
    /// `unrated` its accepted usage not yet rated.
    pub fn new(
        world: &'a World,
        company: &'a Company,
        events: &'a [Event],
        ledger: Vec<LedgerEntry>,
        mut unrated: Vec<Unrated>,
    ) -> Self {
        unrated.sort_by(|a, b| (a.occurred_at, &a.id).cmp(&(b.occurred_at, &b.id)));
        let mut ranks = BTreeMap::new();
        for (i, a) in world.allowances_of(&company.id).enumerate() {
            ranks
                .entry(format!("allowance:{}", a.service))
                .or_insert((0, i));
        }
        for (i, b) in world.bundles_of(&company.id).enumerate() {
            ranks.entry(b.id.clone()).or_insert((1, i));
        }
        CompanyClose {
            world,
            company,
            events,
            account: account(world, company, events),
            ledger,
            unrated,
            ranks,
        }
    }

    /// The wallets folded from the entries made for instants before `before`.
    pub(crate) fn wallets_before(&self, before: DateTime<Utc>) -> Wallets {
        Wallets::fold(self.ledger.iter().filter(|e| e.at < before), &|r| {
            let name = r.split('@').next().unwrap_or(r);
            self.ranks.get(name).copied().unwrap_or((2, 0))
        })
    }

    /// Computes one step of boundary `k` and takes its effects into the in-memory history.
    pub fn step(&mut self, k: u32, job: &str) -> anyhow::Result<StepEffects> {
        crate::failpoint::error(&format!("{job}:{}", self.company.id))?;
        let effects = match job {
            "rate" => self.rate(k),
            "expire" => {
                let at = self.company.grid().boundary_at(k);
                let ledger = self.wallets_before(at).expire(at);
                StepEffects {
                    items: ledger.len() as i64,
                    ledger,
                    ..Default::default()
                }
            }
            "apply-removals" => {
                let at = self.company.grid().boundary_at(k);
                let book = book_as_of(self.world, self.company, self.events, at, at)?;
                let removals: Vec<_> = book
                    .applied_removals()
                    .iter()
                    .filter(|r| r.boundary == k)
                    .cloned()
                    .collect();
                StepEffects {
                    items: removals.len() as i64,
                    removals,
                    ..Default::default()
                }
            }
            "invoice" => self.invoice(k)?,
            "grant" => {
                let ledger = grant(self.world, self.company, k);
                StepEffects {
                    items: ledger.len() as i64,
                    ledger,
                    ..Default::default()
                }
            }
            other => anyhow::bail!("unknown step {other}"),
        };
        self.ledger.extend(effects.ledger.iter().cloned());
        Ok(effects)
    }

    /// `rate`: debits every unrated usage row that occurred and arrived before the boundary,
    /// in (occurred_at, id) order, with the recharges its debits trigger.
    fn rate(&mut self, k: u32) -> StepEffects {
        let grid = self.company.grid();
        let at = grid.boundary_at(k);
        let (due, later): (Vec<Unrated>, Vec<Unrated>) = std::mem::take(&mut self.unrated)
            .into_iter()
            .partition(|u| u.occurred_at < at && u.received_at < at);
        self.unrated = later;
        let mut effects = StepEffects::default();
        if due.is_empty() {
            return effects;
        }
        let mut wallets = self.wallets_before(at);
        for u in &due {
            let late = grid.first_boundary_after(u.occurred_at) < k;
            let debit_at = if late { u.received_at } else { u.occurred_at };
            let entries = if u.cost > Decimal::ZERO {
                wallets.charge(
                    &usage_scope(self.company, u),
                    &u.service,
                    u.cost,
                    debit_at,
                    &u.id,
                    self.account.auto_recharge(debit_at),
                )
            } else {
                Vec::new()
            };
            let sources: Vec<&str> = entries
                .iter()
                .filter(|e| e.kind == EntryKind::Debit)
                .map(|e| e.wallet.as_str())
                .collect();
            effects.ratings.push(Rating {
                id: u.id.clone(),
                boundary_index: k,
                wallet_sources: sources.join("+"),
                late,
            });
            if self.company.billing == Billing::Card {
                for e in entries.iter().filter(|e| e.kind == EntryKind::Recharge) {
                    effects.card_charges.push(self.card_charge(
                        e.at,
                        "auto_recharge",
                        e.amount,
                        &e.reference,
                    ));
                }
            }
            effects.ledger.extend(entries);
        }
        effects.items = effects.ratings.len() as i64;
        effects
    }

    /// `invoice`: the document at boundary `k`, the settle entries of its arrears, and
    /// the card charge of a card statement.
    fn invoice(&self, k: u32) -> anyhow::Result<StepEffects> {
        let (world, company) = (self.world, self.company);
        let grid = company.grid();
        let at = grid.boundary_at(k);
        let book = book_as_of(world, company, self.events, at, at)?;
        let prices = price_list(world, self.events);
        let mut lines = license_lines(
            company,
            &world.products,
            &prices,
            k,
            book.pools(),
            book.purchases(),
            at,
        );
        lines.extend(bundle_lines(company, world.bundles_of(&company.id), k));
        if k > 0 {
            let from = grid.boundary_at(k - 1);
            let made: Vec<LedgerEntry> = self
                .ledger
                .iter()
                .filter(|e| from <= e.at && e.at < at)
                .cloned()
                .collect();
            lines.extend(credit_lines(company, &made));
        }
        let number = invoice_number(&company.id, grid.boundary_date(k));
        let (arrears_lines, settles) = arrears(company, &self.wallets_before(at), at, &number);
        lines.extend(arrears_lines);
        let mut effects = StepEffects {
            ledger: settles,
            ..Default::default()
        };
        if let Some(doc) = document(company, &grid, k, lines) {
            let total = doc.total();
            if company.billing == Billing::Card && !total.is_zero() {
                effects.card_charges.push(self.card_charge(
                    at,
                    "card_statement",
                    total,
                    &doc.number,
                ));
            }
            effects.items = doc.lines.len() as i64;
            effects.document = Some(doc);
        }
        Ok(effects)
    }

    fn card_charge(
        &self,
        at: DateTime<Utc>,
        kind: &str,
        amount: Decimal,
        reference: &str,
    ) -> CardCharge {
        CardCharge {
            at,
            company: self.company.id.clone(),
            kind: kind.to_string(),
            amount,
            currency: self.company.currency.code().to_string(),
            reference: reference.to_string(),
        }
    }
}

/// The wallet scope that pays for a usage row.
fn usage_scope(company: &Company, usage: &Unrated) -> String {
    match company.credit_sharing {
        CreditSharing::Company => "company".to_string(),
        CreditSharing::Office if usage.service == "ai_agent" => company.primary_office.clone(),
        CreditSharing::Office => usage.office.clone(),
    }
}

/// The scopes holding wallets, in file order.
fn scopes(world: &World, company: &Company) -> Vec<String> {
    match company.credit_sharing {
        CreditSharing::Company => vec!["company".to_string()],
        CreditSharing::Office => {
            let mut offices: Vec<String> = world
                .offices_of(&company.id)
                .map(|o| o.id.clone())
                .collect();
            offices.sort();
            offices
        }
    }
}

/// `grant`: allowances (every period) and bundles (each cadence period) starting at `k`, by
/// scope, allowances before bundles, each in scenario order.
fn grant(world: &World, company: &Company, k: u32) -> Vec<LedgerEntry> {
    let grid = company.grid();
    let (at, date) = (grid.boundary_at(k), grid.boundary_date(k));
    let allowances: Vec<_> = world.allowances_of(&company.id).collect();
    let bundles: Vec<_> = world.bundles_of(&company.id).collect();
    let mut entries = Vec::new();
    for scope in scopes(world, company) {
        for a in &allowances {
            let primary_only = company.credit_sharing == CreditSharing::Office
                && a.service == "ai_agent"
                && scope != company.primary_office;
            if primary_only {
                continue;
            }
            let wallet = format!("allowance:{}", a.service);
            entries.push(LedgerEntry {
                at,
                scope: scope.clone(),
                reference: format!("{wallet}@{date}"),
                wallet,
                kind: EntryKind::Grant,
                amount: a.amount,
                expires_at: Some(grid.boundary_at(k + 1)),
            });
        }
        for b in bundles.iter().filter(|b| b.scope == scope) {
            let Some(start) = grid.boundary_index_on(b.start) else {
                continue;
            };
            if !b.cadence.starts_at(start, k) {
                continue;
            }
            entries.push(LedgerEntry {
                at,
                scope: scope.clone(),
                wallet: match b.kind {
                    BundleKind::Telephony => "telephony",
                    BundleKind::Ai => "ai",
                }
                .to_string(),
                kind: EntryKind::Grant,
                amount: b.credits,
                reference: format!("{}@{date}", b.id),
                expires_at: Some(grid.boundary_at(k + b.cadence.periods())),
            });
        }
    }
    entries
}

/// The steps of boundary `k` that `wanted` selects and that are not `done` yet, computed in
/// order (a step runs only once every step before it is done), ready to be committed under
/// `lease`. A failing step ends the list; the steps before it are kept.
pub fn plan_boundary(
    close: &mut CompanyClose<'_>,
    k: u32,
    done: &dyn Fn(&str) -> bool,
    wanted: &dyn Fn(&str) -> bool,
    lease: Option<&Lease>,
    clock: Clock<'_>,
) -> BoundaryPlan {
    let grid = close.company.grid();
    let mut plan = BoundaryPlan::default();
    for job in STEPS {
        if done(job) {
            plan.done.push(job);
            continue;
        }
        if !wanted(job) {
            // A later step may not run before this one.
            break;
        }
        let started_at = clock();
        match close.step(k, job) {
            Ok(effects) => {
                crate::failpoint::hit(&format!("before-commit:{job}"));
                let run = StepRun {
                    job,
                    company: close.company.id.clone(),
                    boundary_index: k,
                    boundary_at: grid.boundary_at(k),
                    boundary: grid.boundary_date(k),
                    started_at,
                    finished_at: clock(),
                    lease: lease.cloned(),
                };
                plan.done.push(job);
                plan.steps.push((run, effects));
            }
            Err(source) => {
                plan.failure = Some(StepError { job, source });
                break;
            }
        }
    }
    plan
}

/// What [`plan_boundary`] computed.
#[derive(Debug, Default)]
pub struct BoundaryPlan {
    /// Steps to commit, in order.
    pub steps: Vec<(StepRun, StepEffects)>,
    /// Every step of the boundary done once these are committed, in order.
    pub done: Vec<&'static str>,
    /// The step that failed, if one did.
    pub failure: Option<StepError>,
}
