//! One integration-test binary: golden replays through the real binary, the store suite on
//! both backends, the command line, and the deployment kit.

mod cli;
mod deploy;
mod export;
mod golden;
mod intake;
mod mail;
mod ops;
mod postgres_socket;
mod production;
mod reruns;
mod scale;
mod store;
mod support;
