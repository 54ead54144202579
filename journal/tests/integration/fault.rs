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
    assert_eq!(Fault::parse("eio:4"), Some(Fault::Eio(4)));
    for bad in ["after:0", "eio:0", "after", "after:", "after:x", "during:1", "after:-1", "", ":3", "after:1:2"] {
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

/// The note a writer leaves when it can neither sync a record nor cut it
/// off: lock-free readers ignore the bytes after it, and the next opener
/// cuts them (keeping a copy) and removes the note.
#[test]
fn an_unsynced_note_hides_the_bytes_after_it_from_every_reader() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal.jsonl");
    let (mut j, _) = Journal::<Step>::open(&path, &OpenOptions::default()).unwrap();
    j.append("g", note(0)).unwrap();
    let durable = std::fs::metadata(&path).unwrap().len();
    j.append("g", note(1)).unwrap();
    drop(j);
    let total = std::fs::metadata(&path).unwrap().len();
    let mark = dir.path().join("journal.unsynced");
    std::fs::write(&mark, format!("{durable}\n")).unwrap();
    let torn = Tail::Torn { offset: durable, line: 3, len: total - durable };
    let replay = journal::read::<Step>(&path).unwrap();
    assert_eq!((texts(&replay.records), replay.tail.clone()), (vec![note(0)], torn.clone()));
    assert_eq!(journal::verify(&path).unwrap().tail, torn);
    let (_, opened) = Journal::<Step>::open(&path, &OpenOptions::default()).unwrap();
    assert_eq!(texts(&opened.records), vec![note(0)]);
    assert_eq!(opened.repaired.map(|r| r.0), Some(torn));
    assert_eq!(std::fs::metadata(&path).unwrap().len(), durable);
    assert!(!mark.exists(), "the note outlived the cut");
}

/// A reservation allocates blocks past the end without changing the size
/// (or, where the file system cannot, checks the free space).
#[test]
fn reserve_allocates_without_growing_the_file() {
    use std::os::unix::fs::MetadataExt as _;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal.jsonl");
    let (mut j, _) = Journal::<Step>::open(&path, &OpenOptions::default()).unwrap();
    let before = std::fs::metadata(&path).unwrap();
    match j.reserve(1 << 20).unwrap() {
        journal::Reserved::Allocated => {
            let after = std::fs::metadata(&path).unwrap();
            assert_eq!(after.len(), before.len());
            assert!(after.blocks() * 512 >= 1 << 20, "{} blocks", after.blocks());
        }
        journal::Reserved::Available(free) => assert!(free >= 1 << 20),
    }
    j.append("g", note(0)).unwrap();
    drop(j);
    assert_eq!(journal::verify(&path).unwrap().tail, Tail::Clean);
}
