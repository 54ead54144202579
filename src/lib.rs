//! swap: replace a single-instance Docker container with a new version
//! without ever losing the old one. An event-sourced step engine: every step
//! is journaled before and after it runs; a restarted process replays the
//! journal, observes Docker, and finishes or rolls back the deploy.
//!
//! # Layout
//! - [`cli`]: the flags as typed; [`app`]: validated into requests, run,
//!   mapped to exit codes ([`error`]).
//! - [`deploy`]: observe, plan, then execute; [`recover`]: finish or reverse
//!   an unfinished deploy; [`query`]: the read-only commands.
//! - [`step`]: each step's observe / apply / compensate; [`run`]: their
//!   journaled execution; [`health`]: the gate before the commit point.
//! - [`record`]: the journal's payload; the journal itself is the `journal`
//!   crate, which knows nothing of Docker.
//! - [`spec`]: the candidate's definition; [`context`]: build contexts;
//!   [`pull`]: the image from its registry, before anything changes, with
//!   the login from the Docker config ([`credentials`]).
//! - [`docker`]: the engine trait; [`bollard_engine`]: the real engine, the
//!   only module naming bollard; [`docker_host`]: which engine the
//!   environment names, refused when swap cannot talk to it as asked; [`memory`]: an in-memory engine for
//!   exhaustive crash simulation.
//! - [`report`]: human and JSON progress; [`state`]: the state directory;
//!   [`signal`]: Ctrl-C ends a deploy with a rollback, not a crash.

pub mod app;
pub mod bollard_engine;
pub mod cli;
pub mod context;
pub mod credentials;
pub mod deploy;
pub mod docker;
pub mod docker_host;
pub mod error;
pub mod health;
pub mod memory;
pub mod pull;
pub mod query;
pub mod record;
pub mod recover;
pub mod report;
pub mod run;
pub mod signal;
pub mod spec;
pub mod state;
pub mod step;
