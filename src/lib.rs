//! swap: replace a single-instance Docker container with a new version
//! without ever losing the old one.
//!
//! # Layout
//! - [`docker`]: the engine trait and the plain types it speaks.
//! - [`bollard_engine`]: the real engine; the only module that names bollard.
//! - [`memory`]: an in-memory engine for exhaustive crash simulation.

pub mod bollard_engine;
pub mod docker;
pub mod memory;
