//! The plan usage view: what each wallet of each scope was given, has spent and still holds,
//! with the usage accepted since the last close priced in (provisional, nothing written).

use chrono::{DateTime, Utc};

use crate::domain::close::CompanyClose;
use crate::domain::model::{Company, CreditSharing, World};
use crate::domain::wallets::PlanUsageView;
use crate::domain::words::{OfficeId, Scope};
use crate::store::Store;

/// The plan usage of `company` at `at` (of one office's scope if given): the ledger as it
/// stands, plus the usage accepted since the last close priced and drawn down in memory.
/// Under company-wide credit sharing an office has no wallets of its own, so it is shown the
/// company's.
pub async fn plan_usage<S: Store>(
    store: &S,
    world: &World,
    company: &Company,
    office: Option<&OfficeId>,
    at: DateTime<Utc>,
) -> anyhow::Result<PlanUsageView> {
    let ids = [company.id.clone()];
    let events = store.accepted_events(Some(&ids)).await?;
    let ledger = store
        .ledger(Some(&ids))
        .await?
        .into_iter()
        .map(|r| r.entry)
        .collect();
    let unrated = store
        .unrated_usage(&[(company.id.clone(), at + chrono::Duration::microseconds(1))])
        .await?;
    let close = CompanyClose::new(world, company, &events, ledger, unrated);
    let (wallets, provisional) = close.provisional_wallets(at);
    let scope = match (office, company.credit_sharing) {
        (Some(o), CreditSharing::Office) => Some(Scope::Office(o.clone())),
        _ => None,
    };
    let rows = wallets
        .plan_usage(at)
        .into_iter()
        .filter(|r| scope.as_ref().is_none_or(|s| *s == r.scope))
        .collect();
    let grid = company.grid();
    let k = grid.period_index(at).unwrap_or(0);
    Ok(PlanUsageView {
        rows,
        provisional,
        period_start: grid.boundary_date(k),
        period_end: grid.boundary_date(k + 1),
    })
}
