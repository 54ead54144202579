//! The real Docker engine, through bollard.
