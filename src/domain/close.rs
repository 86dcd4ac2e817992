//! Closing a boundary of one company, computed in memory: the steps of a close in order, each
//! answering what it writes.
//!
//! Every step computes from what was recorded for instants before the boundary, never from
//! the state at the moment it runs, so a close that is weeks late writes what an on-time close
//! writes. A company's history (its accepted events, its ledger, its unrated usage) is handed
//! to a [`CompanyClose`] once; each step's effects are taken into that history, so the next
//! step and the next boundary see them.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;

use super::account::{Account, CardCharge};
use super::credits::{grant_ranks, grants, rank_of, usage_scope};
use super::grid::Grid;
use super::invoice::{
    Document, PriceList, arrears, bundle_lines, credit_lines, document, invoice_number,
    license_lines,
};
use super::licenses::{AppliedRemoval, LicenseBook};
use super::model::{Billing, Company, Event, World};
use super::money::storable;
use super::usage::{Rating, Unrated};
use super::usage_email::{EmailContext, EmailDraft, Spend, draft};
use super::wallets::{EntryKind, GrantRank, LedgerEntry, Wallets};
use super::words::CardChargeKind;

/// A step of a close. Steps run in this order, each once per (company, boundary).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, clap::ValueEnum)]
pub enum Step {
    /// Rate every unrated usage row that occurred and arrived before the boundary.
    Rate,
    /// Expire what is left of the grants ending at the boundary.
    Expire,
    /// Apply the license removals due at the boundary.
    ApplyRemovals,
    /// Build the document at the boundary.
    Invoice,
    /// Grant the allowances and bundles of the periods starting at the boundary.
    Grant,
    /// Queue each admin's email of the usage rated by the close (none at the anchor).
    UsageEmail,
}

impl Step {
    /// Every step, in the order a close runs them.
    pub const ALL: [Step; 6] = [
        Step::Rate,
        Step::Expire,
        Step::ApplyRemovals,
        Step::Invoice,
        Step::Grant,
        Step::UsageEmail,
    ];

    /// The name used in files and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Step::Rate => "rate",
            Step::Expire => "expire",
            Step::ApplyRemovals => "apply-removals",
            Step::Invoice => "invoice",
            Step::Grant => "grant",
            Step::UsageEmail => "usage-email",
        }
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Step {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Step::ALL
            .into_iter()
            .find(|j| j.as_str() == s)
            .ok_or_else(|| format!("unknown step {s:?}"))
    }
}

/// What a step writes, committed together with its completion.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StepEffects {
    /// What the step wrote, as counted in `job_runs.items`.
    pub items: i64,
    /// Removals applied to pools.
    pub removals: Vec<AppliedRemoval>,
    /// The document issued.
    pub document: Option<Document>,
    /// Card charges made.
    pub card_charges: Vec<CardCharge>,
    /// Ledger entries, in the order made.
    pub ledger: Vec<LedgerEntry>,
    /// Usage rows rated.
    pub ratings: Vec<Rating>,
    /// What the rated rows cost, by office, service and wallet (the `rate` step).
    pub spend: Spend,
    /// Emails queued (the `usage-email` step).
    pub emails: Vec<EmailDraft>,
}

impl StepEffects {
    /// Refuses effects holding an amount beyond what the store keeps (micro-units in 64 bits,
    /// about ±9.2 × 10¹² currency units): the company is parked with the reason instead of a
    /// figure being cut or a write failing half-way.
    pub fn check_storable(&self) -> Result<(), String> {
        let beyond = |what: &str, amount: Decimal| {
            (!storable(amount))
                .then(|| format!("{what} {amount} is beyond the range the store keeps"))
        };
        let ledger = self.ledger.iter().find_map(|e| {
            beyond(
                &format!("{} entry {}", e.kind.as_str(), e.reference),
                e.amount,
            )
        });
        let lines = self.document.iter().flat_map(|d| {
            d.lines
                .iter()
                .flat_map(|l| [Some(l.amount), l.unit_price].into_iter().flatten())
                .chain([d.total()])
                .map(move |a| (d.number.as_str(), a))
        });
        let line = lines
            .into_iter()
            .find_map(|(number, a)| beyond(&format!("an amount of {number}"), a));
        let charge = self
            .card_charges
            .iter()
            .find_map(|c| beyond(&format!("card charge {}", c.reference), c.amount));
        match ledger.or(line).or(charge) {
            Some(reason) => Err(reason),
            None => Ok(()),
        }
    }
}

/// Whether usage that occurred at `occurred_at` and is rated by the close of boundary `k` is
/// late: its own period closed before `k`.
pub fn is_late(grid: &Grid, occurred_at: DateTime<Utc>, k: u32) -> bool {
    grid.first_boundary_after(occurred_at) < k
}

/// One company's history, read once, and the steps computed from it in memory.
pub struct CompanyClose<'a> {
    world: &'a World,
    company: &'a Company,
    events: &'a [Event],
    account: Account,
    prices: PriceList,
    ledger: Vec<LedgerEntry>,
    /// Unrated usage, in (occurred_at, id) order.
    unrated: Vec<Unrated>,
    ranks: BTreeMap<String, GrantRank>,
    /// The spend of closes by boundary index: the one before the first open boundary (read
    /// from the store) and those rated since.
    spend: BTreeMap<u32, Spend>,
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
        CompanyClose {
            world,
            company,
            events,
            account: Account::from_events(world, company, events),
            prices: PriceList::from_events(&world.products, events),
            ledger,
            unrated,
            ranks: grant_ranks(world, company),
            spend: BTreeMap::new(),
        }
    }

    /// The close with the recorded spend of earlier closes, by boundary index: the usage
    /// email of a boundary compares with the previous close. A boundary missing from
    /// `spend` spent nothing.
    pub fn with_spend(mut self, spend: BTreeMap<u32, Spend>) -> Self {
        self.spend = spend;
        self
    }

    /// The company being closed.
    pub fn company(&self) -> &Company {
        self.company
    }

    /// The wallets folded from the entries made for instants before `before`.
    pub fn wallets_before(&self, before: DateTime<Utc>) -> Wallets {
        Wallets::fold(self.ledger.iter().filter(|e| e.at < before), &|r| {
            rank_of(&self.ranks, r)
        })
    }

    /// The wallets at `at` as the next close would leave them if it ran now: the ledger up
    /// to `at`, then every unrated row that occurred and arrived by `at` priced and drawn
    /// down in (occurred_at, id) order, with the recharges it would trigger. Nothing is
    /// recorded: the numbers are provisional until the close. Returns the wallets and the
    /// number of rows drawn down.
    pub fn provisional_wallets(&self, at: DateTime<Utc>) -> (Wallets, usize) {
        let grid = self.company.grid();
        let mut wallets = self.wallets_before(at + chrono::Duration::microseconds(1));
        let next = grid.first_boundary_after(at);
        let mut rows = 0;
        for u in self
            .unrated
            .iter()
            .filter(|u| u.occurred_at <= at && u.received_at <= at)
        {
            rows += 1;
            if u.cost <= Decimal::ZERO {
                continue;
            }
            let debit_at = if is_late(&grid, u.occurred_at, next) {
                u.received_at
            } else {
                u.occurred_at
            };
            wallets.charge(
                &usage_scope(self.company, u.service, &u.office),
                u.service,
                u.cost,
                debit_at,
                &u.id,
                self.account.auto_recharge(debit_at),
            );
        }
        (wallets, rows)
    }

    /// Computes `step` of boundary `k` and takes its effects into the in-memory history. An
    /// error (a recorded event that no longer applies) parks the company.
    pub fn step(&mut self, k: u32, step: Step) -> Result<StepEffects, String> {
        let effects = match step {
            Step::Rate => self.rate(k),
            Step::Expire => self.expire(k),
            Step::ApplyRemovals => self.apply_removals(k)?,
            Step::Invoice => self.invoice(k)?,
            Step::Grant => {
                let ledger = grants(self.world, self.company, k);
                StepEffects {
                    items: ledger.len() as i64,
                    ledger,
                    ..Default::default()
                }
            }
            Step::UsageEmail => self.usage_email(k),
        };
        effects.check_storable()?;
        self.ledger.extend(effects.ledger.iter().cloned());
        if step == Step::Rate {
            self.spend.insert(k, effects.spend.clone());
        }
        Ok(effects)
    }

    /// `rate`: debits every unrated usage row that occurred and arrived before the boundary,
    /// in (occurred_at, id) order, each followed by the recharges its debits trigger. A row
    /// rated after its own period closed is late and debited when it arrived.
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
            let late = is_late(&grid, u.occurred_at, k);
            let debit_at = if late { u.received_at } else { u.occurred_at };
            let entries = if u.cost > Decimal::ZERO {
                wallets.charge(
                    &usage_scope(self.company, u.service, &u.office),
                    u.service,
                    u.cost,
                    debit_at,
                    &u.id,
                    self.account.auto_recharge(debit_at),
                )
            } else {
                Vec::new()
            };
            effects.ratings.push(Rating {
                id: u.id.clone(),
                boundary_index: k,
                wallet_sources: entries
                    .iter()
                    .filter(|e| e.kind == EntryKind::Debit)
                    .map(|e| e.wallet)
                    .collect(),
                late,
            });
            if self.company.billing == Billing::Card {
                for e in entries.iter().filter(|e| e.kind == EntryKind::Recharge) {
                    effects.card_charges.push(CardCharge::new(
                        self.company,
                        e.at,
                        CardChargeKind::AutoRecharge,
                        e.amount,
                        &e.reference,
                    ));
                }
            }
            for e in entries.iter().filter(|e| e.kind == EntryKind::Debit) {
                effects.spend.add(&u.office, u.service, e.wallet, -e.amount);
            }
            effects.ledger.extend(entries);
        }
        effects.items = effects.ratings.len() as i64;
        effects
    }

    /// `usage-email`: one email per admin of the company with the usage rated by the close
    /// of boundary `k`, compared with the previous close. The anchor closes no period, so it
    /// sends none.
    fn usage_email(&self, k: u32) -> StepEffects {
        if k == 0 {
            return StepEffects::default();
        }
        let (world, company) = (self.world, self.company);
        let grid = company.grid();
        let nothing = Spend::default();
        let current = self.spend.get(&k).unwrap_or(&nothing);
        // The first period has nothing to compare with.
        let previous = (k >= 2).then(|| self.spend.get(&(k - 1)).unwrap_or(&nothing));
        let emails: Vec<EmailDraft> = world
            .admins
            .iter()
            .filter(|a| a.company == company.id)
            .map(|admin| {
                let office_name = match &admin.role {
                    super::model::AdminRole::Company => None,
                    super::model::AdminRole::Office(o) => world
                        .offices_of(&company.id)
                        .find(|x| &x.id == o)
                        .map(|x| x.name.as_str()),
                };
                let cx = EmailContext {
                    company,
                    office_name,
                    period_start: grid.boundary_date(k - 1),
                    boundary: grid.boundary_date(k),
                    current,
                    previous,
                };
                draft(admin, &cx)
            })
            .collect();
        StepEffects {
            items: emails.len() as i64,
            emails,
            ..Default::default()
        }
    }

    /// `expire`: what is left of every grant ending at the boundary.
    fn expire(&self, k: u32) -> StepEffects {
        let at = self.company.grid().boundary_at(k);
        let ledger = self.wallets_before(at).expire(at);
        StepEffects {
            items: ledger.len() as i64,
            ledger,
            ..Default::default()
        }
    }

    /// The license book as of boundary `k`, its removals applied.
    fn book_at(&self, k: u32) -> Result<LicenseBook, String> {
        let at = self.company.grid().boundary_at(k);
        LicenseBook::as_of(self.world, self.company, self.events, at, at)
    }

    /// `apply-removals`: the removals due at the boundary.
    fn apply_removals(&self, k: u32) -> Result<StepEffects, String> {
        let removals: Vec<_> = self
            .book_at(k)?
            .applied_removals()
            .iter()
            .filter(|r| r.boundary == k)
            .cloned()
            .collect();
        Ok(StepEffects {
            items: removals.len() as i64,
            removals,
            ..Default::default()
        })
    }

    /// `invoice`: the document at boundary `k`, the settle entries of its arrears, and
    /// the card charge of a card statement.
    fn invoice(&self, k: u32) -> Result<StepEffects, String> {
        let company = self.company;
        let at = company.grid().boundary_at(k);
        let (document, settles) = self.document_at(k, at)?;
        let mut effects = StepEffects {
            ledger: settles,
            ..Default::default()
        };
        if let Some(doc) = document {
            let total = doc.total();
            if company.billing == Billing::Card && !total.is_zero() {
                effects.card_charges.push(CardCharge::new(
                    company,
                    at,
                    CardChargeKind::CardStatement,
                    total,
                    &doc.number,
                ));
            }
            effects.items = doc.lines.len() as i64;
            effects.document = Some(doc);
        }
        Ok(effects)
    }

    /// The document at boundary `k` as its close builds it, and the settle entries of its
    /// arrears, pricing licenses with the corrections recorded before `corrections_before`:
    /// the boundary itself for the close, the re-run's instant for a re-run (SPEC §12.21,
    /// §12.22). Everything else comes from what was recorded before the boundary: the license
    /// events, and the ledger entries of the period (credit lines) and before it (arrears), so
    /// a re-run rebuilds those lines exactly as they were issued. `None` when there are no
    /// lines.
    pub fn document_at(
        &self,
        k: u32,
        corrections_before: DateTime<Utc>,
    ) -> Result<(Option<Document>, Vec<LedgerEntry>), String> {
        let (world, company) = (self.world, self.company);
        let grid = company.grid();
        let at = grid.boundary_at(k);
        let book = self.book_at(k)?;
        let mut lines = license_lines(
            company,
            &world.products,
            &self.prices,
            k,
            book.pools(),
            book.purchases(),
            corrections_before,
        )?;
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
        Ok((document(company, &grid, k, lines), settles))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::grid::Term;
    use crate::domain::model::{AutoRecharge, Bundle, BundleKind};
    use crate::domain::words::{Scope, Service, Wallet};
    use crate::testkit::{company, dec, t, world_with};

    fn unrated(id: &str, occurred: &str, received: &str, service: Service, cost: &str) -> Unrated {
        Unrated {
            company: "acme".into(),
            id: id.into(),
            occurred_at: t(occurred),
            received_at: t(received),
            office: "nyc".into(),
            service,
            cost: dec(cost),
        }
    }

    /// An invoiced company on a UTC grid from 2026-01-01, with a calling allowance of 10.00
    /// and a monthly telephony bundle of 5.00 credits (fee 4.00).
    fn world() -> World {
        let c = company("acme");
        let mut w = world_with(&c, &["nyc"], &[Service::Calling]);
        w.bundles.push(Bundle {
            id: "tel".into(),
            company: c.id.clone(),
            scope: Scope::Company,
            kind: BundleKind::Telephony,
            credits: dec("5"),
            fee: dec("4"),
            cadence: Term::Monthly,
            start: c.anchor,
        });
        w.indexed()
    }

    /// Closes every boundary up to `last`, step by step, collecting the effects.
    fn close_through(close: &mut CompanyClose<'_>, last: u32) -> Vec<(u32, Step, StepEffects)> {
        let mut out = Vec::new();
        for k in 0..=last {
            for step in Step::ALL {
                out.push((k, step, close.step(k, step).expect("step")));
            }
        }
        out
    }

    #[test]
    fn a_close_rates_in_order_expires_invoices_and_grants() {
        let world = world();
        let c = &world.companies["acme"];
        let usage = vec![
            // Listed out of order: rating goes by (occurred_at, id).
            unrated(
                "b",
                "2026-01-20T00:00:00Z",
                "2026-01-20T00:00:00Z",
                Service::Calling,
                "12",
            ),
            unrated(
                "a",
                "2026-01-05T00:00:00Z",
                "2026-01-05T00:00:00Z",
                Service::Calling,
                "2",
            ),
            unrated(
                "z",
                "2026-01-06T00:00:00Z",
                "2026-01-06T00:00:00Z",
                Service::Fax,
                "0",
            ),
        ];
        let mut close = CompanyClose::new(&world, c, &[], Vec::new(), usage);
        let effects = close_through(&mut close, 1);
        let rate = &effects
            .iter()
            .find(|(k, s, _)| (*k, *s) == (1, Step::Rate))
            .unwrap()
            .2;
        let order: Vec<_> = rate
            .ratings
            .iter()
            .map(|r| (r.id.as_str(), r.wallet_sources.clone()))
            .collect();
        assert_eq!(
            order,
            [
                ("a", vec![Wallet::Allowance(Service::Calling)]),
                ("z", vec![]),
                // 8 left in the allowance, 4 from the bundle's 5 telephony credits.
                (
                    "b",
                    vec![Wallet::Allowance(Service::Calling), Wallet::Telephony]
                ),
            ]
        );
        let expire = &effects
            .iter()
            .find(|(k, s, _)| (*k, *s) == (1, Step::Expire))
            .unwrap()
            .2;
        assert_eq!(
            expire
                .ledger
                .iter()
                .map(|e| (e.wallet, e.amount))
                .collect::<Vec<_>>(),
            [(Wallet::Telephony, dec("-1"))],
            "the spent allowance ends silently, the bundle's remainder expires"
        );
        let invoice = &effects
            .iter()
            .find(|(k, s, _)| (*k, *s) == (1, Step::Invoice))
            .unwrap()
            .2;
        let doc = invoice.document.as_ref().expect("a bundle fee is billed");
        assert_eq!(
            (doc.number.as_str(), doc.total()),
            ("acme-20260201", dec("4"))
        );
        let grant = &effects
            .iter()
            .find(|(k, s, _)| (*k, *s) == (1, Step::Grant))
            .unwrap()
            .2;
        assert_eq!(grant.items, 2);
    }

    #[test]
    fn usage_rated_after_its_period_closed_is_late_and_debited_on_arrival() {
        let world = world();
        let c = &world.companies["acme"];
        let usage = vec![unrated(
            "f",
            "2026-01-28T00:00:00Z",
            "2026-02-02T00:00:00Z",
            Service::Fax,
            "30",
        )];
        let mut close = CompanyClose::new(&world, c, &[], Vec::new(), usage);
        let effects = close_through(&mut close, 2);
        let ratings: Vec<_> = effects
            .iter()
            .flat_map(|(k, _, e)| e.ratings.iter().map(move |r| (*k, r)))
            .collect();
        assert_eq!(ratings.len(), 1);
        let (k, r) = ratings[0];
        assert_eq!(
            (k, r.late),
            (2, true),
            "received after boundary 1: rated by boundary 2, late"
        );
        let debits: Vec<_> = effects
            .iter()
            .flat_map(|(_, _, e)| e.ledger.iter())
            .filter(|e| e.kind == EntryKind::Debit)
            .collect();
        assert!(debits.iter().all(|e| e.at == t("2026-02-02T00:00:00Z")));
        assert!(is_late(&c.grid(), t("2026-01-31T23:59:59Z"), 2));
        assert!(!is_late(&c.grid(), t("2026-02-01T00:00:00Z"), 2));
    }

    #[test]
    fn a_card_company_is_charged_for_each_recharge_and_its_statement() {
        let mut world = world();
        let c = world.companies.get_mut("acme").unwrap();
        c.billing = Billing::Card;
        c.auto_recharge = Some(AutoRecharge {
            threshold: dec("5"),
            amount: dec("10"),
        });
        let world = world.indexed();
        let c = &world.companies["acme"];
        let usage = vec![unrated(
            "u",
            "2026-01-05T00:00:00Z",
            "2026-01-05T00:00:00Z",
            Service::AiAgent,
            "12",
        )];
        let mut close = CompanyClose::new(&world, c, &[], Vec::new(), usage);
        let effects = close_through(&mut close, 1);
        let charges: Vec<_> = effects
            .iter()
            .flat_map(|(_, _, e)| e.card_charges.iter())
            .map(|c| (c.kind, c.amount, c.reference.as_str()))
            .collect();
        assert_eq!(
            charges,
            [
                (CardChargeKind::CardStatement, dec("4"), "acme-20260101"),
                // −12 needs two recharges of 10 to reach the threshold of 5.
                (CardChargeKind::AutoRecharge, dec("10"), "u#recharge1"),
                (CardChargeKind::AutoRecharge, dec("10"), "u#recharge2"),
                (CardChargeKind::CardStatement, dec("4"), "acme-20260201"),
            ]
        );
    }

    #[test]
    fn an_amount_beyond_the_store_parks_the_company() {
        let mut world = world();
        world.bundles[0].fee = dec("9300000000000");
        let world = world.indexed();
        let c = &world.companies["acme"];
        let mut close = CompanyClose::new(&world, c, &[], Vec::new(), Vec::new());
        for step in [Step::Rate, Step::Expire, Step::ApplyRemovals] {
            close.step(0, step).unwrap();
        }
        let err = close.step(0, Step::Invoice).unwrap_err();
        assert!(err.contains("beyond the range the store keeps"), "{err}");
    }

    #[test]
    fn steps_read_and_write_their_names() {
        for s in Step::ALL {
            assert_eq!(s.as_str().parse::<Step>(), Ok(s));
        }
        assert!("shred".parse::<Step>().is_err());
    }
}
