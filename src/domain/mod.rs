//! The business rules as plain functions and types: no I/O, no async, no SQL.

pub mod account;
pub mod grid;
pub mod invoice;
pub mod licenses;
pub mod model;
pub mod money;
pub mod rating;
pub mod sms;
pub mod usage;
pub mod wallets;
