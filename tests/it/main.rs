//! One integration-test binary: golden replays through the real binary, the store suite on
//! both backends, and the command line.

mod cli;
mod export;
mod golden;
mod mail;
mod production;
mod store;
mod support;
