//! Integration tests of the journal through its public API, in one binary
//! (one link on a small machine). Tests that need a second process re-run
//! this binary with `JOURNAL_CHILD` set; see `child`.

mod child;
mod damage;
mod fault;
mod fuzz;
mod lock;
mod roundtrip;
mod util;
