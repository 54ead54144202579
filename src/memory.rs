//! An in-memory Docker engine for crash simulation.
