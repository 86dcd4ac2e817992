//! The jobs: taking in events and usage, running due closes under leases, and the views of
//! where closing stands. Each is a function of (store, as_of) plus a clock used only for audit
//! columns and leases; the rules they apply are in `domain`.

pub mod close;
pub mod intake;
pub mod plan_usage;
pub mod rerun;
pub mod run_due;
pub mod status;

use chrono::{DateTime, Utc};

pub use plan_usage::plan_usage;
pub use run_due::{DueOptions, DueReport, LeaseConfig, run_due};

/// The instant "now" for audit columns and leases: the wall clock in production, the simulated
/// clock in a replay. Nothing else in the jobs reads time.
pub type Clock<'a> = &'a (dyn Fn() -> DateTime<Utc> + Sync);
