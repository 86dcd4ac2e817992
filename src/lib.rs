//! billrun: closes the billing cycles of a cloud-telephony company.
//!
//! See `ARCHITECTURE.md` for the code map. Data flows one way: input (`fixture`) → `jobs` →
//! `domain` decides → `store` records → `export` reports; `replay` drives a fixture through
//! the jobs under a simulated clock.

pub mod domain;
pub mod export;
pub mod failpoint;
pub mod fixture;
pub mod jobs;
pub mod mail;
pub mod replay;
pub mod scheduler;
pub mod store;
pub mod synthetic;

#[cfg(test)]
mod testkit;
