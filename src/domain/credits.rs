//! Where credits come from and who pays: the scopes that hold wallets, the grants of
//! allowances and bundles at a boundary, and the scope a usage charge is drawn from.

use std::collections::BTreeMap;

use super::model::{Company, CreditSharing, World};
use super::wallets::{EntryKind, GrantRank, LedgerEntry};
use super::words::{OfficeId, Scope, Service, Wallet};

/// The scopes holding wallets, in file order: the company alone when it shares credits
/// company-wide, else each of its offices by id.
pub fn wallet_scopes(world: &World, company: &Company) -> Vec<Scope> {
    match company.credit_sharing {
        CreditSharing::Company => vec![Scope::Company],
        CreditSharing::Office => {
            let mut offices: Vec<Scope> = world
                .offices_of(&company.id)
                .map(|o| Scope::Office(o.id.clone()))
                .collect();
            offices.sort();
            offices
        }
    }
}

/// The scope that pays for usage of `service` in `office`: the company when it shares credits
/// company-wide; else the office, except AI-agent usage, which the primary office pays for.
pub fn usage_scope(company: &Company, service: Service, office: &OfficeId) -> Scope {
    match company.credit_sharing {
        CreditSharing::Company => Scope::Company,
        CreditSharing::Office if service == Service::AiAgent => {
            Scope::Office(company.primary_office.clone())
        }
        CreditSharing::Office => Scope::Office(office.clone()),
    }
}

/// Whether `scope` gets the allowance of `service`: under office sharing the AI-agent
/// allowance goes to the primary office only (all AI usage is charged there); every other
/// allowance goes to every scope.
pub fn gets_allowance(company: &Company, scope: &Scope, service: Service) -> bool {
    !(company.credit_sharing == CreditSharing::Office
        && service == Service::AiAgent
        && scope.office() != Some(&company.primary_office))
}

/// How each of a company's grants sorts within an expiry or a grant step, by the grant's
/// source (`allowance:<service>` or a bundle id): allowances first, then bundles, each in
/// scenario order.
pub fn grant_ranks(world: &World, company: &Company) -> BTreeMap<String, GrantRank> {
    let mut ranks = BTreeMap::new();
    for (i, a) in world.allowances_of(&company.id).enumerate() {
        ranks
            .entry(Wallet::Allowance(a.service).to_string())
            .or_insert((0, i));
    }
    for (i, b) in world.bundles_of(&company.id).enumerate() {
        ranks.entry(b.id.clone()).or_insert((1, i));
    }
    ranks
}

/// The rank of a grant by its ledger reference (`<source>@<period start>`); an unknown
/// source sorts last.
pub fn rank_of(ranks: &BTreeMap<String, GrantRank>, reference: &str) -> GrantRank {
    let source = reference.split('@').next().unwrap_or(reference);
    ranks.get(source).copied().unwrap_or((2, 0))
}

/// The grants made at boundary `k`: every allowance (each grid period) and every bundle whose
/// cadence period starts there, by scope, allowances before bundles, each in scenario order.
/// Each grant expires at the end of its period.
pub fn grants(world: &World, company: &Company, k: u32) -> Vec<LedgerEntry> {
    let grid = company.grid();
    let (at, date) = (grid.boundary_at(k), grid.boundary_date(k));
    let mut entries = Vec::new();
    for scope in wallet_scopes(world, company) {
        for a in world.allowances_of(&company.id) {
            if !gets_allowance(company, &scope, a.service) {
                continue;
            }
            let wallet = Wallet::Allowance(a.service);
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
        for b in world.bundles_of(&company.id).filter(|b| b.scope == scope) {
            let Some(start) = grid.boundary_index_on(b.start) else {
                continue;
            };
            if !b.cadence.starts_at(start, k) {
                continue;
            }
            entries.push(LedgerEntry {
                at,
                scope: scope.clone(),
                wallet: b.kind.wallet(),
                kind: EntryKind::Grant,
                amount: b.credits,
                reference: format!("{}@{date}", b.id),
                expires_at: Some(grid.boundary_at(k + b.cadence.periods())),
            });
        }
    }
    entries
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::{company, d, world_with};

    #[test]
    fn office_sharing_grants_the_ai_allowance_to_the_primary_office_only() {
        let mut c = company("orbit");
        c.credit_sharing = CreditSharing::Office;
        c.primary_office = "tyo".into();
        let world = world_with(&c, &["tyo", "osa"], &[Service::Calling, Service::AiAgent]);
        let entries = grants(&world, &c, 0);
        let got: Vec<(String, String)> = entries
            .iter()
            .map(|e| (e.scope.to_string(), e.wallet.to_string()))
            .collect();
        assert_eq!(
            got,
            [
                ("osa".into(), "allowance:calling".into()),
                ("tyo".into(), "allowance:calling".into()),
                ("tyo".into(), "allowance:ai_agent".into()),
            ]
        );
        assert_eq!(entries[0].reference, "allowance:calling@2026-01-01");
        assert_eq!(
            entries[0].expires_at,
            Some(c.grid().boundary_at(1)),
            "an allowance lasts one period"
        );
    }

    #[test]
    fn company_sharing_grants_every_allowance_to_the_company() {
        let c = company("acme");
        let world = world_with(&c, &["nyc", "sf"], &[Service::Calling, Service::AiAgent]);
        let scopes: Vec<Scope> = grants(&world, &c, 3).into_iter().map(|e| e.scope).collect();
        assert_eq!(scopes, [Scope::Company, Scope::Company]);
        assert_eq!(wallet_scopes(&world, &c), [Scope::Company]);
    }

    #[test]
    fn ai_usage_is_paid_by_the_primary_office_under_office_sharing() {
        let mut c = company("orbit");
        let osa = OfficeId::from("osa");
        assert_eq!(usage_scope(&c, Service::AiAgent, &osa), Scope::Company);
        c.credit_sharing = CreditSharing::Office;
        c.primary_office = "tyo".into();
        assert_eq!(
            usage_scope(&c, Service::AiAgent, &osa),
            Scope::Office("tyo".into())
        );
        assert_eq!(
            usage_scope(&c, Service::Calling, &osa),
            Scope::Office(osa.clone())
        );
        assert_eq!(d("2026-01-01"), c.anchor);
    }

    #[test]
    fn grants_sort_allowances_before_bundles_and_unknown_sources_last() {
        let c = company("acme");
        let world = world_with(&c, &["nyc"], &[Service::Fax, Service::Calling]);
        let ranks = grant_ranks(&world, &c);
        assert_eq!(rank_of(&ranks, "allowance:fax@2026-01-01"), (0, 0));
        assert_eq!(rank_of(&ranks, "allowance:calling@2026-02-01"), (0, 1));
        assert_eq!(rank_of(&ranks, "gone@2026-02-01"), (2, 0));
    }
}
