//! What an on-call engineer asks first: which boundaries are closed, which are due, which
//! companies are parked and why.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, NaiveDate, Utc};

use crate::domain::close::Step;
use crate::domain::model::Companies;
use crate::domain::words::CompanyId;
use crate::store::{LeaseRecord, StepFailure, Store};

use super::close::next_open;

/// A boundary: its local date and its instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Boundary {
    /// The local date in the company's zone.
    pub date: NaiveDate,
    /// The instant (UTC).
    pub at: DateTime<Utc>,
}

/// Who holds a company's lease, since and until when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseHolder {
    /// The holder's token: `billrun:<host>:<process id>:<start, microseconds>`.
    pub owner: String,
    /// When the holder took the company (renewals keep it); `None` for a lease taken before
    /// the database recorded it.
    pub since: Option<DateTime<Utc>>,
    /// When the lease runs out unless renewed.
    pub until: DateTime<Utc>,
}

/// One company's closes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompanyStatus {
    /// The company.
    pub company: CompanyId,
    /// The latest boundary whose every step is done.
    pub closed_through: Option<NaiveDate>,
    /// Boundaries at or before the instant that are not closed yet, oldest first.
    pub pending: Vec<Boundary>,
    /// The next boundary after the instant.
    pub next: NaiveDate,
    /// Failed steps not completed since: why the company is parked.
    pub parked: Vec<StepFailure>,
    /// Who holds the company's lease, if anyone does.
    pub lease: Option<LeaseHolder>,
}

impl CompanyStatus {
    /// The oldest pending boundary due longer than `lag` before `as_of`: the company is
    /// overdue.
    pub fn overdue(&self, as_of: DateTime<Utc>, lag: chrono::Duration) -> Option<Boundary> {
        self.pending.first().copied().filter(|b| b.at + lag < as_of)
    }
}

/// The state of every company's closes at an instant (of one company, if given).
pub async fn status<S: Store>(
    store: &S,
    companies: &Companies,
    as_of: DateTime<Utc>,
    company: Option<&CompanyId>,
) -> anyhow::Result<Vec<CompanyStatus>> {
    let filter = company.map(std::slice::from_ref);
    let mut done: BTreeMap<CompanyId, BTreeSet<(u32, Step)>> = BTreeMap::new();
    for s in store.progress(filter).await? {
        done.entry(s.company)
            .or_default()
            .insert((s.boundary_index, s.step));
    }
    let mut latest_failure: BTreeMap<(CompanyId, u32, Step), StepFailure> = BTreeMap::new();
    for f in store.failures().await? {
        latest_failure.insert((f.company.clone(), f.boundary_index, f.step), f);
    }
    let mut out = Vec::new();
    for c in companies
        .values()
        .filter(|c| company.is_none_or(|w| *w == c.id))
    {
        let grid = c.grid();
        let finished = done.remove(&c.id).unwrap_or_default();
        let open = next_open(&finished);
        let mut pending = Vec::new();
        let mut k = open;
        while grid.boundary_at(k) <= as_of {
            pending.push(Boundary {
                date: grid.boundary_date(k),
                at: grid.boundary_at(k),
            });
            k += 1;
        }
        // A failure at a boundary before the ones read is of a boundary closed since.
        let parked = latest_failure
            .iter()
            .filter(|((company, k, step), _)| {
                *company == c.id && *k + 1 >= open && !finished.contains(&(*k, *step))
            })
            .map(|(_, f)| f.clone())
            .collect();
        out.push(CompanyStatus {
            company: c.id.clone(),
            closed_through: open.checked_sub(1).map(|k| grid.boundary_date(k)),
            pending,
            next: grid.boundary_date(grid.first_boundary_after(as_of)),
            parked,
            lease: None,
        });
    }
    let ids: Vec<CompanyId> = out.iter().map(|c| c.company.clone()).collect();
    let mut holders: BTreeMap<CompanyId, LeaseHolder> = store
        .lease_holders(&ids)
        .await?
        .into_iter()
        .filter(LeaseRecord::held)
        .map(|l| {
            let holder = LeaseHolder {
                owner: l.owner,
                since: (l.since.timestamp_micros() > 0).then_some(l.since),
                until: l.until,
            };
            (l.company, holder)
        })
        .collect();
    for c in &mut out {
        c.lease = holders.remove(&c.company);
    }
    Ok(out)
}
