//! Planning a company's due boundaries: each step not done yet is computed in memory by the
//! domain's [`CompanyClose`] and paired with its [`StepRun`], ready to be committed.

use std::collections::BTreeSet;

use chrono::{DateTime, NaiveDate, Utc};

use crate::domain::close::{CompanyClose, Step, StepEffects};
use crate::store::{Lease, StepRun};

use super::Clock;

/// A step that failed, and why.
#[derive(Debug, thiserror::Error)]
#[error("step {step}: {reason}")]
pub struct StepError {
    /// The step.
    pub step: Step,
    /// What went wrong.
    pub reason: String,
}

/// One company's due work, computed in memory and not yet committed.
#[derive(Debug)]
pub struct CompanyPlan {
    /// The company.
    pub company: crate::domain::words::CompanyId,
    /// Steps to commit, in order.
    pub steps: Vec<(StepRun, StepEffects)>,
    /// Boundaries fully closed once the steps are committed.
    pub closed: Vec<NaiveDate>,
    /// The step that failed: (boundary index, boundary date, error).
    pub failure: Option<(u32, NaiveDate, StepError)>,
}

/// What a plan is computed under.
pub struct PlanContext<'a> {
    /// Boundaries at or before this instant are due.
    pub as_of: DateTime<Utc>,
    /// The last boundary index that may be closed, if capped (a replay's end).
    pub last: Option<u32>,
    /// Only this step (each boundary's earlier steps must be done).
    pub only: Option<Step>,
    /// The lease the company is closed under.
    pub lease: Option<&'a Lease>,
    /// The company's intake version when its history was read.
    pub intake_version: i64,
    /// The wall clock, for the audit columns.
    pub clock: Clock<'a>,
}

/// The first boundary not fully closed, given a company's completed steps. Closes run oldest
/// first, so the closed boundaries are a prefix of the grid.
pub fn next_open(finished: &BTreeSet<(u32, Step)>) -> u32 {
    finished
        .iter()
        .map(|(k, _)| *k)
        .filter(|&k| Step::ALL.iter().all(|s| finished.contains(&(k, *s))))
        .max()
        .map_or(0, |k| k + 1)
}

/// Computes one company's due boundaries, oldest first, from its history, stopping at a
/// failing step (the company is then parked) or at a boundary left open by `only`.
pub fn plan_company(
    close: &mut CompanyClose<'_>,
    mut finished: BTreeSet<(u32, Step)>,
    cx: &PlanContext<'_>,
) -> CompanyPlan {
    let company = close.company().clone();
    let grid = company.grid();
    let due = |k: u32| grid.boundary_at(k) <= cx.as_of && cx.last.is_none_or(|c| k <= c);
    let mut plan = CompanyPlan {
        company: company.id.clone(),
        steps: Vec::new(),
        closed: Vec::new(),
        failure: None,
    };
    let mut k = next_open(&finished);
    while due(k) {
        for step in Step::ALL {
            if finished.contains(&(k, step)) {
                continue;
            }
            if cx.only.is_some_and(|only| only != step) {
                // A later step may not run before this one.
                break;
            }
            let started_at = (cx.clock)();
            let computed = crate::failpoint::error(&format!("{step}:{}", company.id))
                .map_err(|e| e.to_string())
                .and_then(|()| close.step(k, step));
            match computed {
                Ok(effects) => {
                    crate::failpoint::hit(&format!("before-commit:{step}"));
                    let run = StepRun {
                        step,
                        company: company.id.clone(),
                        boundary_index: k,
                        boundary_at: grid.boundary_at(k),
                        boundary: grid.boundary_date(k),
                        started_at,
                        finished_at: (cx.clock)(),
                        lease: cx.lease.cloned(),
                        intake_version: cx.intake_version,
                    };
                    finished.insert((k, step));
                    plan.steps.push((run, effects));
                }
                Err(reason) => {
                    plan.failure = Some((k, grid.boundary_date(k), StepError { step, reason }));
                    return plan;
                }
            }
        }
        if !Step::ALL.iter().all(|s| finished.contains(&(k, *s))) {
            break;
        }
        plan.closed.push(grid.boundary_date(k));
        k += 1;
    }
    plan
}
