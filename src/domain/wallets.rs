//! Wallets and the ledger: grants, debits in draw-down order, expiry, purchases,
//! auto-recharge and settlement.
//!
//! Every balance change is a [`LedgerEntry`]; a balance is the sum of its entries and is never
//! stored. [`Wallets`] folds a company's entries to know what each wallet and each grant holds,
//! and answers what a charge, an expiry or a grant writes next.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;

use super::model::AutoRecharge;
use super::words::{Scope, Service, Wallet};

/// What a ledger entry records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    /// Credits granted by an allowance or a bundle, expiring at `expires_at`.
    Grant,
    /// A charge for usage drawn from one wallet.
    Debit,
    /// The remainder of a grant at its end.
    Expire,
    /// A manual credit purchase.
    Purchase,
    /// An auto-recharge.
    Recharge,
    /// A negative `universal` brought back to zero by an invoice.
    Settle,
}

impl EntryKind {
    /// The name used in files.
    pub fn as_str(self) -> &'static str {
        match self {
            EntryKind::Grant => "grant",
            EntryKind::Debit => "debit",
            EntryKind::Expire => "expire",
            EntryKind::Purchase => "purchase",
            EntryKind::Recharge => "recharge",
            EntryKind::Settle => "settle",
        }
    }

    /// Parses the name used in files.
    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::Grant,
            Self::Debit,
            Self::Expire,
            Self::Purchase,
            Self::Recharge,
            Self::Settle,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }
}

/// One balance change of one wallet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerEntry {
    /// When it took effect.
    pub at: DateTime<Utc>,
    /// The scope owning the wallet.
    pub scope: Scope,
    /// The wallet.
    pub wallet: Wallet,
    /// What it records.
    pub kind: EntryKind,
    /// Signed change of the balance.
    pub amount: Decimal,
    /// What it refers to: usage id, `events.jsonl:<line>`, `<id>#recharge<n>`, `<grant>@<date>`, invoice
    /// number.
    pub reference: String,
    /// Grants only: when the grant ends.
    pub expires_at: Option<DateTime<Utc>>,
}

/// How a grant sorts within an expiry or grant step: allowances before bundles, each in
/// scenario order.
pub type GrantRank = (u8, usize);

#[derive(Debug, Clone)]
struct LiveGrant {
    scope: Scope,
    wallet: Wallet,
    reference: String,
    amount: Decimal,
    remaining: Decimal,
    expires_at: DateTime<Utc>,
    rank: GrantRank,
    order: usize,
}

/// The wallets of one company, folded from its ledger.
#[derive(Debug, Clone, Default)]
pub struct Wallets {
    balances: BTreeMap<(Scope, Wallet), Decimal>,
    grants: Vec<LiveGrant>,
    granted: usize,
}

impl Wallets {
    /// Folds `entries` in the order they were made. `rank` places each grant (by reference)
    /// among the grants of an expiry step.
    pub fn fold<'a>(
        entries: impl IntoIterator<Item = &'a LedgerEntry>,
        rank: &dyn Fn(&str) -> GrantRank,
    ) -> Self {
        let mut w = Wallets::default();
        for e in entries {
            w.apply(e, rank(&e.reference));
        }
        w
    }

    /// Applies one entry. Debits of a granted wallet are spent from the grant that expires
    /// first (then the one granted first).
    pub fn apply(&mut self, e: &LedgerEntry, rank: GrantRank) {
        *self
            .balances
            .entry((e.scope.clone(), e.wallet))
            .or_default() += e.amount;
        match e.kind {
            EntryKind::Grant => {
                self.grants.push(LiveGrant {
                    scope: e.scope.clone(),
                    wallet: e.wallet,
                    reference: e.reference.clone(),
                    amount: e.amount,
                    remaining: e.amount,
                    expires_at: e.expires_at.unwrap_or(DateTime::<Utc>::MAX_UTC),
                    rank,
                    order: self.granted,
                });
                self.granted += 1;
            }
            EntryKind::Debit if e.wallet != Wallet::Universal => {
                let mut left = -e.amount;
                let mut live: Vec<&mut LiveGrant> = self
                    .grants
                    .iter_mut()
                    .filter(|g| {
                        g.scope == e.scope && g.wallet == e.wallet && g.remaining > Decimal::ZERO
                    })
                    .collect();
                live.sort_by_key(|g| (g.expires_at, g.order));
                for g in live {
                    let take = left.min(g.remaining);
                    g.remaining -= take;
                    left -= take;
                    if left.is_zero() {
                        break;
                    }
                }
            }
            EntryKind::Expire => {
                self.grants.retain(|g| {
                    !(g.scope == e.scope && g.wallet == e.wallet && g.reference == e.reference)
                });
            }
            _ => {}
        }
    }

    /// A wallet's balance: the sum of its entries.
    pub fn balance(&self, scope: &Scope, wallet: Wallet) -> Decimal {
        self.balances
            .get(&(scope.clone(), wallet))
            .copied()
            .unwrap_or_default()
    }

    /// Every (scope, wallet) with entries, and its balance, scopes in file order.
    pub fn balances(&self) -> impl Iterator<Item = (&Scope, Wallet, Decimal)> {
        self.balances.iter().map(|((s, w), b)| (s, *w, *b))
    }

    /// Charges `cost` for `service` to `scope` at `at`: one debit per wallet drawn from, in
    /// draw-down order, whatever is left going to `universal` even below zero. After a debit of
    /// `universal` leaves it below the threshold of `recharge`, recharges of its amount follow
    /// until it is at or above the threshold. The entries are applied and returned.
    pub fn charge(
        &mut self,
        scope: &Scope,
        service: Service,
        cost: Decimal,
        at: DateTime<Utc>,
        usage_id: &str,
        recharge: Option<&AutoRecharge>,
    ) -> Vec<LedgerEntry> {
        let mut entries = Vec::new();
        let mut left = cost;
        for wallet in Wallet::draw_down(service) {
            if left <= Decimal::ZERO {
                break;
            }
            let take = if wallet == Wallet::Universal {
                left
            } else {
                left.min(self.balance(scope, wallet).max(Decimal::ZERO))
            };
            if take <= Decimal::ZERO {
                continue;
            }
            left -= take;
            let debit = LedgerEntry {
                at,
                scope: scope.clone(),
                wallet,
                kind: EntryKind::Debit,
                amount: -take,
                reference: usage_id.to_string(),
                expires_at: None,
            };
            self.apply(&debit, (0, 0));
            entries.push(debit);
            if wallet == Wallet::Universal
                && let Some(r) = recharge
            {
                let mut n = 0;
                while self.balance(scope, Wallet::Universal) < r.threshold {
                    n += 1;
                    let e = LedgerEntry {
                        at,
                        scope: scope.clone(),
                        wallet: Wallet::Universal,
                        kind: EntryKind::Recharge,
                        amount: r.amount,
                        reference: format!("{usage_id}#recharge{n}"),
                        expires_at: None,
                    };
                    self.apply(&e, (0, 0));
                    entries.push(e);
                }
            }
        }
        debug_assert!(left <= Decimal::ZERO, "a charge is debited in full");
        entries
    }

    /// The `expire` entries of every grant ending at or before `at` with credits left, in
    /// expiry-step order (scope, then rank); spent grants end silently. Applied and returned.
    pub fn expire(&mut self, at: DateTime<Utc>) -> Vec<LedgerEntry> {
        let mut ending: Vec<LiveGrant> = self
            .grants
            .iter()
            .filter(|g| g.expires_at <= at)
            .cloned()
            .collect();
        ending.sort_by(|a, b| (&a.scope, a.rank, a.order).cmp(&(&b.scope, b.rank, b.order)));
        self.grants.retain(|g| g.expires_at > at);
        let mut entries = Vec::new();
        for g in ending.into_iter().filter(|g| g.remaining > Decimal::ZERO) {
            let e = LedgerEntry {
                at,
                scope: g.scope,
                wallet: g.wallet,
                kind: EntryKind::Expire,
                amount: -g.remaining,
                reference: g.reference,
                expires_at: None,
            };
            *self
                .balances
                .entry((e.scope.clone(), e.wallet))
                .or_default() += e.amount;
            entries.push(e);
        }
        entries
    }
}

/// One line of the plan usage view: what a wallet of a scope was given, has spent and still
/// holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanUsage {
    /// The scope owning the wallet.
    pub scope: Scope,
    /// The wallet.
    pub wallet: Wallet,
    /// Credits of the grants live at the instant (`None` for `universal`).
    pub committed: Option<Decimal>,
    /// What those grants have paid for.
    pub spent: Option<Decimal>,
    /// The wallet's balance.
    pub available: Decimal,
}

impl PlanUsage {
    /// Spent as a percentage of committed, to one decimal.
    pub fn used_percent(&self) -> Option<Decimal> {
        match (self.committed, self.spent) {
            (Some(c), Some(s)) if !c.is_zero() => {
                Some((s * Decimal::ONE_HUNDRED / c).round_dp_with_strategy(
                    1,
                    rust_decimal::RoundingStrategy::MidpointAwayFromZero,
                ))
            }
            _ => None,
        }
    }
}

/// The plan usage of a company at an instant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanUsageView {
    /// One row per scope and wallet.
    pub rows: Vec<PlanUsage>,
    /// Usage rows accepted since the last close and drawn down in memory.
    pub provisional: usize,
    /// First local day of the billing period containing the instant.
    pub period_start: chrono::NaiveDate,
    /// The boundary ending it (local date, exclusive).
    pub period_end: chrono::NaiveDate,
}

impl Wallets {
    /// The plan usage of every wallet at `at`: granted wallets from their live grants, and
    /// `universal` by balance; scopes in file order, then wallet.
    pub fn plan_usage(&self, at: DateTime<Utc>) -> Vec<PlanUsage> {
        let mut rows: BTreeMap<(Scope, Wallet), PlanUsage> = BTreeMap::new();
        for g in self.grants.iter().filter(|g| g.expires_at > at) {
            let row = rows
                .entry((g.scope.clone(), g.wallet))
                .or_insert_with(|| PlanUsage {
                    scope: g.scope.clone(),
                    wallet: g.wallet,
                    committed: Some(Decimal::ZERO),
                    spent: Some(Decimal::ZERO),
                    available: Decimal::ZERO,
                });
            row.committed = row.committed.map(|c| c + g.amount);
            row.spent = row.spent.map(|s| s + g.amount - g.remaining);
            row.available += g.remaining;
        }
        for ((scope, wallet), balance) in &self.balances {
            if *wallet == Wallet::Universal {
                rows.insert(
                    (scope.clone(), *wallet),
                    PlanUsage {
                        scope: scope.clone(),
                        wallet: *wallet,
                        committed: None,
                        spent: None,
                        available: *balance,
                    },
                );
            }
        }
        rows.into_values().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const CO: Scope = Scope::Company;
    const CALL: Wallet = Wallet::Allowance(Service::Calling);

    #[test]
    fn plan_usage_shows_committed_spent_and_available() {
        let mut w = Wallets::default();
        w.apply(&grant(CALL, 10, "allowance:calling@2026-03-01", 31), (0, 0));
        w.apply(&grant(Wallet::Telephony, 40, "tel@2026-03-01", 31), (1, 0));
        w.charge(&CO, Service::Calling, Decimal::from(13), t(5), "c-1", None);
        w.charge(&CO, Service::AiAgent, Decimal::from(2), t(5), "a-1", None);
        let rows = w.plan_usage(t(6));
        let view: Vec<_> = rows
            .iter()
            .map(|r| {
                (
                    r.wallet,
                    r.committed,
                    r.spent,
                    r.available,
                    r.used_percent(),
                )
            })
            .collect();
        assert_eq!(
            view,
            [
                (
                    CALL,
                    Some(Decimal::from(10)),
                    Some(Decimal::from(10)),
                    Decimal::ZERO,
                    Some(Decimal::from(100))
                ),
                (
                    Wallet::Telephony,
                    Some(Decimal::from(40)),
                    Some(Decimal::from(3)),
                    Decimal::from(37),
                    Some(Decimal::new(75, 1))
                ),
                (Wallet::Universal, None, None, Decimal::from(-2), None),
            ]
        );
        // After the grants end, only universal remains.
        assert_eq!(w.plan_usage(t(31)).len(), 1);
    }

    /// Midnight UTC of a day of March 2026.
    fn t(day: u32) -> DateTime<Utc> {
        crate::testkit::t(&format!("2026-03-{day:02}T00:00:00Z"))
    }

    fn grant(wallet: Wallet, amount: i64, reference: &str, expires: u32) -> LedgerEntry {
        LedgerEntry {
            at: t(1),
            scope: CO,
            wallet,
            kind: EntryKind::Grant,
            amount: Decimal::from(amount),
            reference: reference.into(),
            expires_at: Some(t(expires)),
        }
    }

    fn recharge(threshold: i64, amount: i64) -> AutoRecharge {
        AutoRecharge {
            threshold: Decimal::from(threshold),
            amount: Decimal::from(amount),
        }
    }

    fn summary(entries: &[LedgerEntry]) -> Vec<(Wallet, &'static str, Decimal)> {
        entries
            .iter()
            .map(|e| (e.wallet, e.kind.as_str(), e.amount))
            .collect()
    }

    #[test]
    fn draw_down_splits_across_wallets_in_order() {
        let mut w = Wallets::default();
        w.apply(&grant(CALL, 10, "allowance:calling@2026-03-01", 31), (0, 0));
        w.apply(&grant(Wallet::Telephony, 5, "tel@2026-03-01", 31), (1, 0));
        let entries = w.charge(&CO, Service::Calling, Decimal::from(18), t(5), "c-1", None);
        assert_eq!(
            summary(&entries),
            [
                (CALL, "debit", Decimal::from(-10)),
                (Wallet::Telephony, "debit", Decimal::from(-5)),
                (Wallet::Universal, "debit", Decimal::from(-3)),
            ]
        );
        assert_eq!(w.balance(&CO, Wallet::Universal), Decimal::from(-3));
        // AI usage never touches telephony.
        let ai = w.charge(&CO, Service::AiAgent, Decimal::ONE, t(5), "a-1", None);
        assert_eq!(
            summary(&ai),
            [(Wallet::Universal, "debit", Decimal::from(-1))]
        );
    }

    #[test]
    fn recharges_repeat_until_the_threshold_is_reached() {
        let mut w = Wallets::default();
        let entries = w.charge(
            &CO,
            Service::Fax,
            Decimal::from(12),
            t(5),
            "f-1",
            Some(&recharge(5, 7)),
        );
        assert_eq!(
            summary(&entries),
            [
                (Wallet::Universal, "debit", Decimal::from(-12)),
                (Wallet::Universal, "recharge", Decimal::from(7)),
                (Wallet::Universal, "recharge", Decimal::from(7)),
                (Wallet::Universal, "recharge", Decimal::from(7)),
            ]
        );
        assert_eq!(entries[3].reference, "f-1#recharge3");
        assert_eq!(w.balance(&CO, Wallet::Universal), Decimal::from(9));
        // A debit that leaves universal at or above the threshold triggers nothing.
        let more = w.charge(
            &CO,
            Service::Fax,
            Decimal::from(4),
            t(6),
            "f-2",
            Some(&recharge(5, 7)),
        );
        assert_eq!(more.len(), 1);
    }

    #[test]
    fn earliest_expiring_grant_is_spent_first_and_only_remainders_expire() {
        let mut w = Wallets::default();
        w.apply(
            &grant(Wallet::Telephony, 100, "annual@2026-01-01", 31),
            (1, 0),
        );
        w.apply(
            &grant(Wallet::Telephony, 10, "monthly@2026-03-01", 15),
            (1, 1),
        );
        w.charge(&CO, Service::Calling, Decimal::from(12), t(5), "c-1", None);
        // The monthly grant (ending first) is spent, the annual one gives 2.
        let expired = w.expire(t(15));
        assert!(expired.is_empty(), "a spent grant expires silently");
        let expired = w.expire(t(31));
        assert_eq!(
            summary(&expired),
            [(Wallet::Telephony, "expire", Decimal::from(-98))]
        );
        assert_eq!(expired[0].reference, "annual@2026-01-01");
        assert_eq!(w.balance(&CO, Wallet::Telephony), Decimal::ZERO);
    }

    #[test]
    fn expiry_lists_allowances_before_bundles_by_scope() {
        let mut w = Wallets::default();
        let mut office = grant(Wallet::Telephony, 3, "b@x", 10);
        office.scope = Scope::Office("sf".into());
        w.apply(&office, (1, 0));
        w.apply(&grant(Wallet::Telephony, 3, "b@x", 10), (1, 0));
        let fax = Wallet::Allowance(Service::Fax);
        w.apply(&grant(fax, 3, "allowance:fax@x", 10), (0, 1));
        w.apply(&grant(CALL, 3, "allowance:calling@x", 10), (0, 0));
        let order: Vec<_> = w
            .expire(t(10))
            .into_iter()
            .map(|e| (e.scope.to_string(), e.wallet))
            .collect();
        assert_eq!(
            order,
            [
                ("company".to_string(), CALL),
                ("company".to_string(), fax),
                ("company".to_string(), Wallet::Telephony),
                ("sf".to_string(), Wallet::Telephony),
            ]
        );
    }

    #[derive(Debug, Clone)]
    enum Op {
        Grant(u8, i64, u32),
        Charge(u8, i64),
        Expire(u32),
        Purchase(i64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0u8..3, 1i64..50_000_000, 2u32..28).prop_map(|(w, a, d)| Op::Grant(w, a, d)),
            (0u8..4, 0i64..30_000_000).prop_map(|(s, c)| Op::Charge(s, c)),
            (2u32..28).prop_map(Op::Expire),
            (1i64..20_000_000).prop_map(Op::Purchase),
        ]
    }

    proptest! {
        /// After any sequence of operations every balance equals the sum of its entries, a
        /// re-fold of the entries gives the same wallets, no granted wallet goes negative
        /// (no double spend), and every charge is debited in full.
        #[test]
        fn balances_are_the_sum_of_their_entries(ops in prop::collection::vec(op(), 1..60)) {
            let wallets = [CALL, Wallet::Telephony, Wallet::Ai];
            let services = [Service::Calling, Service::Messaging, Service::AiAgent, Service::Fax];
            let mut w = Wallets::default();
            let mut log: Vec<LedgerEntry> = Vec::new();
            let r = recharge(5, 3);
            for (i, op) in ops.into_iter().enumerate() {
                match op {
                    Op::Grant(wi, amount, day) => {
                        let e = LedgerEntry { reference: format!("g{i}"), ..grant(wallets[wi as usize], 0, "", day) };
                        let e = LedgerEntry { amount: Decimal::new(amount, 6), ..e };
                        w.apply(&e, (0, i));
                        log.push(e);
                    }
                    Op::Charge(si, cost) => {
                        let cost = Decimal::new(cost, 6);
                        let entries = w.charge(&CO, services[si as usize], cost, t(1), &format!("u{i}"), Some(&r));
                        let debited: Decimal = entries.iter().filter(|e| e.kind == EntryKind::Debit).map(|e| -e.amount).sum();
                        prop_assert_eq!(debited, cost);
                        log.extend(entries);
                    }
                    Op::Expire(day) => log.extend(w.expire(t(day))),
                    Op::Purchase(amount) => {
                        let e = LedgerEntry { at: t(1), scope: CO, wallet: Wallet::Universal, kind: EntryKind::Purchase, amount: Decimal::new(amount, 6), reference: format!("p{i}"), expires_at: None };
                        w.apply(&e, (0, 0));
                        log.push(e);
                    }
                }
                for wallet in wallets {
                    prop_assert!(w.balance(&CO, wallet) >= Decimal::ZERO, "{} went negative", wallet);
                }
            }
            let mut sums: BTreeMap<Wallet, Decimal> = BTreeMap::new();
            for e in &log {
                *sums.entry(e.wallet).or_default() += e.amount;
            }
            for (wallet, sum) in &sums {
                prop_assert_eq!(w.balance(&CO, *wallet), *sum);
            }
            let ranks: BTreeMap<String, GrantRank> = log.iter().enumerate().map(|(i, e)| (e.reference.clone(), (0, i))).collect();
            let refold = Wallets::fold(&log, &|r| ranks.get(r).copied().unwrap_or((0, 0)));
            for (wallet, sum) in &sums {
                prop_assert_eq!(refold.balance(&CO, *wallet), *sum);
            }
        }
    }
}
