//! Self-inflicted crashes leave exactly the file state they promise, in a
//! process that really dies of SIGKILL.

use std::os::unix::process::ExitStatusExt as _;

use journal::{Fault, Journal, OpenOptions, Tail};

use crate::child::{note, spawn};
use crate::util::Step;

#[test]
fn fault_specs_parse() {
    assert_eq!(Fault::parse("after:3"), Some(Fault::After(3)));
    assert_eq!(Fault::parse("before:1"), Some(Fault::Before(1)));
    assert_eq!(Fault::parse("torn:12"), Some(Fault::Torn(12)));
    assert_eq!(Fault::parse(" torn : 2 "), Some(Fault::Torn(2)));
    for bad in ["after:0", "after", "after:", "after:x", "during:1", "after:-1", "", ":3", "after:1:2"] {
        assert_eq!(Fault::parse(bad), None, "{bad:?}");
    }
}

/// Runs a child appending 5 records with `fault` armed; returns the path.
fn crash(dir: &std::path::Path, fault: &str) -> std::path::PathBuf {
    let path = dir.join("journal.jsonl");
    let status = spawn(&format!("fault:{fault}:5:{}", path.display())).wait().unwrap();
    assert_eq!(status.signal(), Some(libc::SIGKILL), "{fault}: {status:?}");
    path
}

fn texts(records: &[journal::Record<Step>]) -> Vec<Step> {
    records.iter().map(|r| r.data.clone()).collect()
}

#[test]
fn after_n_leaves_n_records() {
    for n in [1, 3] {
        let dir = tempfile::tempdir().unwrap();
        let path = crash(dir.path(), &format!("after:{n}"));
        let replay = journal::read::<Step>(&path).unwrap();
        assert_eq!(replay.tail, Tail::Clean);
        assert_eq!(texts(&replay.records), (0..n).map(note).collect::<Vec<_>>());
    }
}

#[test]
fn before_n_leaves_n_minus_one_records() {
    for n in [1, 3] {
        let dir = tempfile::tempdir().unwrap();
        let path = crash(dir.path(), &format!("before:{n}"));
        let replay = journal::read::<Step>(&path).unwrap();
        assert_eq!(replay.tail, Tail::Clean);
        assert_eq!(texts(&replay.records), (0..n - 1).map(note).collect::<Vec<_>>());
    }
}

#[test]
fn torn_n_leaves_a_torn_tail_that_open_repairs() {
    let dir = tempfile::tempdir().unwrap();
    let path = crash(dir.path(), "torn:3");
    let replay = journal::read::<Step>(&path).unwrap();
    assert!(matches!(replay.tail, Tail::Torn { line: 4, len, .. } if len > 0), "{:?}", replay.tail);
    assert_eq!(texts(&replay.records), (0..2).map(note).collect::<Vec<_>>());
    let (mut j, opened) = Journal::<Step>::open(&path, &OpenOptions::default()).unwrap();
    assert_eq!(opened.records.len(), 2);
    assert!(opened.repaired.is_some());
    // Counting restarts with the new handle: a recovery can be crashed the same way.
    j.append("g", note(2)).unwrap();
    drop(j);
    assert_eq!(journal::verify(&path).unwrap().tail, Tail::Clean);
}

#[test]
fn before_the_first_record_of_a_new_file_leaves_just_the_header() {
    let dir = tempfile::tempdir().unwrap();
    let path = crash(dir.path(), "before:1");
    let report = journal::verify(&path).unwrap();
    assert_eq!((report.records, report.tail), (1, Tail::Clean));
}
