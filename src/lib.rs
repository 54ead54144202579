//! swap: replace a single-instance Docker container with a new version
//! without ever losing the old one. An event-sourced step engine: every step
//! is journaled before and after it runs; a restarted process replays the
//! journal, observes Docker, and finishes or rolls back the deploy.
//!
//! # Layout
//! - The command line: [`cli`] (the flags as typed); [`app`] (validated into
//!   requests, run, mapped to exit codes by [`error`]).
//! - The deploy pipeline: [`deploy`] (observe, plan, then execute);
//!   [`strategy`] (stop-first or start-first, and what start-first
//!   requires); [`step`] (each step's observe / apply / compensate); [`run`] (their
//!   journaled execution, and the wait for a call in flight); [`health`]
//!   (the gate before the commit point); [`recover`] (finish or reverse an
//!   unfinished deploy); [`spec`] (the candidate's definition, cloned);
//!   [`context`] (build contexts); [`pull`] (the image from its registry,
//!   before anything changes, with the login from [`credentials`]).
//! - The journal's story: [`record`] (its payload; the journal itself is
//!   the `journal` crate, which knows nothing of Docker); [`history`]
//!   (records turned into deploys, the unfinished one, recovery's inputs);
//!   [`query`] (the read-only commands) and [`render`] (how they look);
//!   [`compact`] (the one journal command that writes).
//! - The engine boundary: [`docker`] (the engine trait); [`bollard_engine`]
//!   (the real engine, the only module naming bollard); [`docker_host`]
//!   (which engine the environment names, refused when swap cannot talk to
//!   it as asked). An in-memory engine for exhaustive crash simulation is
//!   part of the simulation tests (`tests/sim/memory.rs`), not of swap.
//! - The process: [`retry`] (backoff, in one place); [`report`] (human and
//!   JSON progress, the events typed in [`progress`]); [`state`] (the
//!   state directory); [`signal`] (Ctrl-C ends a deploy with a rollback, not
//!   a crash; a hangup changes nothing).

pub mod app;
pub mod bollard_engine;
pub mod cli;
pub mod compact;
pub mod context;
pub mod credentials;
pub mod deploy;
pub mod docker;
pub mod docker_host;
pub mod error;
pub mod health;
pub mod history;
pub mod progress;
pub mod pull;
pub mod query;
pub mod record;
pub mod recover;
pub mod render;
pub mod report;
pub mod retry;
pub mod run;
pub mod signal;
pub mod spec;
pub mod state;
pub mod step;
pub mod strategy;
