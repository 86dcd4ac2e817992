//! What an on-call engineer asks first: which boundaries are closed, which are due, which
//! companies are parked and why.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, NaiveDate, Utc};

use crate::domain::model::World;
use crate::store::{StepFailure, Store};

use super::STEPS;

/// One company's closes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompanyStatus {
    /// The company.
    pub company: String,
    /// The latest boundary whose every step is done.
    pub closed_through: Option<NaiveDate>,
    /// Boundaries at or before the instant that are not closed yet, oldest first.
    pub pending: Vec<NaiveDate>,
    /// The next boundary after the instant.
    pub next: NaiveDate,
    /// Failed steps not completed since: why the company is parked.
    pub parked: Vec<StepFailure>,
}

/// The state of every company's closes at an instant.
pub async fn status<S: Store>(
    store: &S,
    world: &World,
    as_of: DateTime<Utc>,
    company: Option<&str>,
) -> anyhow::Result<Vec<CompanyStatus>> {
    let mut done: BTreeMap<String, BTreeSet<(u32, String)>> = BTreeMap::new();
    for (c, k, job) in store.completed_steps().await? {
        done.entry(c).or_default().insert((k, job));
    }
    let mut latest_failure: BTreeMap<(String, u32, String), StepFailure> = BTreeMap::new();
    for f in store.failures().await? {
        latest_failure.insert((f.company.clone(), f.boundary_index, f.job.clone()), f);
    }
    let mut out = Vec::new();
    for c in world
        .companies
        .values()
        .filter(|c| company.is_none_or(|w| w == c.id))
    {
        let grid = c.grid();
        let finished = done.remove(&c.id).unwrap_or_default();
        let closed = |k: u32| STEPS.iter().all(|j| finished.contains(&(k, j.to_string())));
        let last = finished
            .iter()
            .map(|(k, _)| *k)
            .filter(|&k| closed(k))
            .max();
        let mut pending = Vec::new();
        let mut k = last.map_or(0, |k| k + 1);
        while grid.boundary_at(k) <= as_of {
            pending.push(grid.boundary_date(k));
            k += 1;
        }
        let parked = latest_failure
            .iter()
            .filter(|((company, k, job), _)| {
                *company == c.id && !finished.contains(&(*k, job.clone()))
            })
            .map(|(_, f)| f.clone())
            .collect();
        out.push(CompanyStatus {
            company: c.id.clone(),
            closed_through: last.map(|k| grid.boundary_date(k)),
            pending,
            next: grid.boundary_date(grid.first_boundary_after(as_of)),
            parked,
        });
    }
    Ok(out)
}
