//! The one integration-test binary: every test module is compiled into it, so
//! the shared harness and the swap binary are built once, not per file.

#[path = "../support/mod.rs"]
mod support;

mod cli;
mod crash;
mod deploy;
mod dockerignore;
mod faults;
mod ops;
mod registry;
mod services;
mod smoke;
mod start_first;
mod strategy;
