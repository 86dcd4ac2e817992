//! The business rules as plain functions and types: no I/O, no async, no SQL.

pub mod account;
pub mod close;
pub mod credits;
pub mod grid;
pub mod intake;
pub mod invoice;
pub mod job;
pub mod licenses;
pub mod limits;
pub mod model;
pub mod money;
pub mod rating;
pub mod rerun;
pub mod sms;
pub mod usage;
pub mod usage_email;
pub mod usage_history;
pub mod wallets;
pub mod words;
