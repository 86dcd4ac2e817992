//! The master data of a billing world: companies, offices, users, products, pools, bundles,
//! allowances and rates, and the events people record against them.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::grid::{Grid, Term};
use super::money::Currency;
use super::words::{CompanyId, Direction, OfficeId, Scope, Service, UsageType, Wallet};

/// How a company pays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Billing {
    /// Contracted: receives invoices; license removals need finance's override.
    Invoiced,
    /// Self-serve: statements and credit purchases are charged to a card.
    Card,
}

impl Billing {
    /// The name used in files.
    pub fn as_str(self) -> &'static str {
        match self {
            Billing::Invoiced => "invoiced",
            Billing::Card => "card",
        }
    }
}

/// Who owns the credit wallets of a company.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CreditSharing {
    /// One set of wallets for the whole company.
    Company,
    /// One set of wallets per office.
    Office,
}

/// Auto-recharge settings of a company.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AutoRecharge {
    /// Recharge when `universal` falls below this.
    pub threshold: Decimal,
    /// Credits added by one recharge.
    pub amount: Decimal,
}

/// A customer company.
#[derive(Debug, Clone, PartialEq)]
pub struct Company {
    /// Unique id, `[a-z0-9_-]+`.
    pub id: CompanyId,
    /// Display name.
    pub name: String,
    /// IANA time zone of the company's grid.
    pub time_zone: Tz,
    /// Invoice currency.
    pub currency: Currency,
    /// Boundary 0 of the grid, a local date.
    pub anchor: NaiveDate,
    /// Invoiced or card.
    pub billing: Billing,
    /// Whether the card on file is verified (card companies).
    pub card_verified: bool,
    /// Company-wide or per-office wallets.
    pub credit_sharing: CreditSharing,
    /// The office whose scope pays for AI-agent usage under office sharing.
    pub primary_office: OfficeId,
    /// Auto-recharge settings at load; `None` = off.
    pub auto_recharge: Option<AutoRecharge>,
}

impl Company {
    /// The company's billing grid.
    pub fn grid(&self) -> Grid {
        Grid::new(self.time_zone, self.anchor)
    }
}

/// An office of a company.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Office {
    /// Unique id (never `company`).
    pub id: OfficeId,
    /// The company it belongs to.
    pub company: CompanyId,
    /// Display name.
    pub name: String,
}

/// Whether a party is a person or a shared line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartyKind {
    /// A team member, who may hold a license.
    User,
    /// A department, contact center or other shared line; never holds a license.
    Group,
}

/// A user or group: the "Team member/Group" of usage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Party {
    /// Unique id (users and groups share one namespace).
    pub id: String,
    /// User or group.
    pub kind: PartyKind,
    /// The company it belongs to.
    pub company: CompanyId,
    /// The office it belongs to.
    pub office: OfficeId,
    /// Display name.
    pub name: String,
    /// Its phone number, if any.
    pub phone: Option<String>,
    /// The license product assigned at load (users only); the users of one product share its
    /// code.
    pub product: Option<Arc<str>>,
}

/// Whose usage an admin may see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminRole {
    /// The whole company.
    Company,
    /// Only this office.
    Office(OfficeId),
}

/// A recipient of monthly usage emails.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admin {
    /// Email address.
    pub email: String,
    /// The company.
    pub company: CompanyId,
    /// What the admin may see.
    pub role: AdminRole,
}

/// A license product.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Product {
    /// Unique code.
    pub code: String,
    /// Display name.
    pub name: String,
    /// Monthly or annual term.
    pub term: Term,
    /// Price per seat per term.
    pub unit_price: Decimal,
}

/// A license pool as it stands at load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitialPool {
    /// The company.
    pub company: CompanyId,
    /// The office.
    pub office: OfficeId,
    /// The product.
    pub product: String,
    /// Paid seats.
    pub quantity: i64,
}

/// What a bundle's credits pay for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BundleKind {
    /// Calling, messaging, fax, speech IVR, omnichannel.
    Telephony,
    /// AI-agent sessions.
    Ai,
}

impl BundleKind {
    /// The wallet its credits are granted to.
    pub fn wallet(self) -> Wallet {
        match self {
            BundleKind::Telephony => Wallet::Telephony,
            BundleKind::Ai => Wallet::Ai,
        }
    }
}

/// A pre-purchased commitment of credits.
#[derive(Debug, Clone, PartialEq)]
pub struct Bundle {
    /// Unique id.
    pub id: String,
    /// The company.
    pub company: CompanyId,
    /// The company or an office, per the company's credit sharing.
    pub scope: Scope,
    /// Telephony or AI.
    pub kind: BundleKind,
    /// Credits granted each cadence period.
    pub credits: Decimal,
    /// Fee billed each cadence period.
    pub fee: Decimal,
    /// Monthly or annual.
    pub cadence: Term,
    /// The boundary (a local date) at which it starts.
    pub start: NaiveDate,
}

/// A plan allowance: credits for one service, granted every grid period.
#[derive(Debug, Clone, PartialEq)]
pub struct Allowance {
    /// The company.
    pub company: CompanyId,
    /// The service it covers.
    pub service: Service,
    /// Credits per grid period.
    pub amount: Decimal,
}

/// One entry of the rate card.
#[derive(Debug, Clone, PartialEq)]
pub struct Rate {
    /// Service.
    pub service: Service,
    /// Type within the service; `None` only for speech_ivr and omnichannel.
    pub usage_type: Option<UsageType>,
    /// The direction it applies to; `None` for both.
    pub direction: Option<Direction>,
    /// E.164 prefix of the remote number.
    pub prefix: Option<String>,
    /// Applies to users holding this product.
    pub product: Option<String>,
    /// Price per minute, segment, message, page, session or unit.
    pub price: Decimal,
    /// Calls only: billing increment `first/next`.
    pub increment: Option<(u32, u32)>,
}

/// The companies by id: what planning a run, its emails and its status need of the master data.
pub type Companies = BTreeMap<CompanyId, Company>;

/// Everything a scenario defines.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct World {
    /// Companies by id.
    pub companies: BTreeMap<CompanyId, Company>,
    /// Offices, in scenario order.
    pub offices: Vec<Office>,
    /// Users and groups, in scenario order.
    pub parties: Vec<Party>,
    /// Admins, in scenario order.
    pub admins: Vec<Admin>,
    /// Products by code.
    pub products: BTreeMap<String, Product>,
    /// Pools at load.
    pub pools: Vec<InitialPool>,
    /// Bundles, in scenario order.
    pub bundles: Vec<Bundle>,
    /// Allowances, in scenario order.
    pub allowances: Vec<Allowance>,
    /// The rate card, in scenario order.
    pub rates: Vec<Rate>,
    index: WorldIndex,
}

/// Positions in the lists of `World`, per company, so that per-row look-ups don't scan every
/// company's data. Built by [`World::indexed`]; until then look-ups scan.
#[derive(Debug, Clone, Default, PartialEq)]
struct WorldIndex {
    built: bool,
    companies: BTreeMap<CompanyId, CompanyIndex>,
    /// The positions of the users and groups, in the order of their ids.
    parties_by_id: Vec<usize>,
}

/// One company's positions in each list of `World`.
#[derive(Debug, Clone, Default, PartialEq)]
struct CompanyIndex {
    offices: Vec<usize>,
    parties: Vec<usize>,
    pools: Vec<usize>,
    allowances: Vec<usize>,
    bundles: Vec<usize>,
}

/// `company`'s positions, new if it has none yet.
fn positions<'m>(
    companies: &'m mut BTreeMap<CompanyId, CompanyIndex>,
    company: &CompanyId,
) -> &'m mut CompanyIndex {
    companies.entry(company.clone()).or_default()
}

impl World {
    /// The world with its per-company index built; call once the lists are complete.
    pub fn indexed(mut self) -> World {
        let mut companies: BTreeMap<CompanyId, CompanyIndex> = BTreeMap::new();
        for (i, o) in self.offices.iter().enumerate() {
            positions(&mut companies, &o.company).offices.push(i);
        }
        for (i, p) in self.parties.iter().enumerate() {
            positions(&mut companies, &p.company).parties.push(i);
        }
        for (i, p) in self.pools.iter().enumerate() {
            positions(&mut companies, &p.company).pools.push(i);
        }
        for (i, a) in self.allowances.iter().enumerate() {
            positions(&mut companies, &a.company).allowances.push(i);
        }
        for (i, b) in self.bundles.iter().enumerate() {
            positions(&mut companies, &b.company).bundles.push(i);
        }
        let mut parties_by_id: Vec<usize> = (0..self.parties.len()).collect();
        parties_by_id.sort_by(|&a, &b| self.parties[a].id.cmp(&self.parties[b].id));
        self.index = WorldIndex {
            built: true,
            companies,
            parties_by_id,
        };
        self
    }

    fn of<'a, T>(
        &'a self,
        list: &'a [T],
        positions: fn(&CompanyIndex) -> &Vec<usize>,
        company: &'a str,
        owner: fn(&T) -> &str,
    ) -> Box<dyn Iterator<Item = &'a T> + 'a> {
        if self.index.built {
            Box::new(
                self.index
                    .companies
                    .get(company)
                    .map(positions)
                    .into_iter()
                    .flatten()
                    .map(move |&i| &list[i]),
            )
        } else {
            Box::new(list.iter().filter(move |x| owner(x) == company))
        }
    }

    /// The offices of a company.
    pub fn offices_of<'a>(&'a self, company: &'a str) -> impl Iterator<Item = &'a Office> + 'a {
        self.of(&self.offices, |c| &c.offices, company, |o| &o.company)
    }

    /// The users and groups of a company.
    pub fn parties_of<'a>(&'a self, company: &'a str) -> impl Iterator<Item = &'a Party> + 'a {
        self.of(&self.parties, |c| &c.parties, company, |p| &p.company)
    }

    /// The pools of a company at load.
    pub fn pools_of<'a>(&'a self, company: &'a str) -> impl Iterator<Item = &'a InitialPool> + 'a {
        self.of(&self.pools, |c| &c.pools, company, |p| &p.company)
    }

    /// The allowances of a company, in scenario order.
    pub fn allowances_of<'a>(
        &'a self,
        company: &'a str,
    ) -> impl Iterator<Item = &'a Allowance> + 'a {
        self.of(&self.allowances, |c| &c.allowances, company, |a| &a.company)
    }

    /// The bundles of a company, in scenario order.
    pub fn bundles_of<'a>(&'a self, company: &'a str) -> impl Iterator<Item = &'a Bundle> + 'a {
        self.of(&self.bundles, |c| &c.bundles, company, |b| &b.company)
    }

    /// Finds a user or group.
    pub fn party(&self, id: &str) -> Option<&Party> {
        if self.index.built {
            let parties = &self.parties;
            let by_id = &self.index.parties_by_id;
            by_id
                .binary_search_by(|&i| parties[i].id.as_str().cmp(id))
                .ok()
                .map(|at| &parties[by_id[at]])
        } else {
            self.parties.iter().find(|p| p.id == id)
        }
    }
}

/// What an event records. Names and fields follow `events.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventKind {
    /// Buy seats (restoring scheduled removals first).
    LicensePurchase {
        /// Office of the pool.
        office: OfficeId,
        /// Product of the pool.
        product: String,
        /// Seats bought.
        quantity: i64,
    },
    /// Schedule seats for removal at the end of the term.
    LicenseRemoval {
        /// Office of the pool.
        office: OfficeId,
        /// Product of the pool.
        product: String,
        /// Seats to remove.
        quantity: i64,
        /// Finance's override of the contracted-plan rule.
        #[serde(rename = "override")]
        override_: bool,
    },
    /// Give a user a seat of a pool.
    LicenseAssign {
        /// Office of the pool.
        office: OfficeId,
        /// Product of the pool.
        product: String,
        /// The user.
        user: String,
    },
    /// Take a user's license back.
    LicenseUnassign {
        /// The user.
        user: String,
    },
    /// Move a license from one user to another.
    LicenseTransfer {
        /// The holder.
        from_user: String,
        /// The new holder.
        to_user: String,
    },
    /// Buy credits.
    CreditPurchase {
        /// The scope whose `universal` wallet is credited.
        scope: Scope,
        /// Credits bought.
        amount: Decimal,
    },
    /// The card passed its verification charge.
    CardVerified,
    /// Change (or turn off, with `None`) auto-recharge.
    AutoRechargeSettings {
        /// New settings; `None` turns auto-recharge off.
        settings: Option<AutoRecharge>,
    },
    /// Correct a product's price for terms starting on or after `from`.
    PriceCorrection {
        /// The product.
        product: String,
        /// New price per seat per term.
        unit_price: Decimal,
        /// First local date of the terms it applies to.
        from: NaiveDate,
    },
    /// Finance re-runs a closed cycle.
    Rerun {
        /// The boundary (local date) to re-run.
        boundary: NaiveDate,
        /// Why.
        reason: String,
        /// Only report the difference.
        dry_run: bool,
    },
}

impl EventKind {
    /// The `type` name of the event.
    pub fn type_name(&self) -> &'static str {
        match self {
            EventKind::LicensePurchase { .. } => "license_purchase",
            EventKind::LicenseRemoval { .. } => "license_removal",
            EventKind::LicenseAssign { .. } => "license_assign",
            EventKind::LicenseUnassign { .. } => "license_unassign",
            EventKind::LicenseTransfer { .. } => "license_transfer",
            EventKind::CreditPurchase { .. } => "credit_purchase",
            EventKind::CardVerified => "card_verified",
            EventKind::AutoRechargeSettings { .. } => "auto_recharge_settings",
            EventKind::PriceCorrection { .. } => "price_correction",
            EventKind::Rerun { .. } => "rerun",
        }
    }
}

/// An event as recorded: where it came from and what it says.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// When it happened.
    pub at: DateTime<Utc>,
    /// The company.
    pub company: CompanyId,
    /// The file it was read from (`events.jsonl`).
    pub source: String,
    /// Its 1-based line in that file.
    pub line: i64,
    /// Optional producer id, for deduplication of production feeds.
    pub id: Option<String>,
    /// What it records.
    pub kind: EventKind,
}

impl Event {
    /// The ledger and invoice reference of the event: its `id` when it has one (so two feeds
    /// never share a reference), else `events.jsonl:<line>`.
    pub fn reference(&self) -> String {
        match &self.id {
            Some(id) => id.clone(),
            None => format!("{}:{}", self.source, self.line),
        }
    }
}
