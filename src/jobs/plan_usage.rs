//! The plan usage view: what each wallet of each scope was given, has spent and still holds.

use chrono::{DateTime, Utc};

use crate::domain::close::CompanyClose;
use crate::domain::model::Company;
use crate::domain::model::World;
use crate::domain::wallets::PlanUsage;
use crate::store::Store;

/// The plan usage of `company` at `at`: every wallet of every scope, from the ledger as it
/// stands.
pub async fn plan_usage<S: Store>(
    store: &S,
    world: &World,
    company: &Company,
    at: DateTime<Utc>,
) -> anyhow::Result<Vec<PlanUsage>> {
    let ids = [company.id.clone()];
    let events = store.accepted_events(Some(&ids)).await?;
    let ledger = store
        .ledger(Some(&ids))
        .await?
        .into_iter()
        .map(|r| r.entry)
        .collect();
    let close = CompanyClose::new(world, company, &events, ledger, Vec::new());
    Ok(close
        .wallets_before(at + chrono::Duration::microseconds(1))
        .plan_usage(at))
}
