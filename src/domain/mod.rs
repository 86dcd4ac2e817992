//! The business rules as plain functions and types: no I/O, no async, no SQL.

pub mod grid;
pub mod invoice;
pub mod licenses;
pub mod model;
pub mod money;
