//! Crash and failure tests through the storage seam: what a crash between
//! an append's write and its sync leaves, and what a failed write or sync
//! does to the handle. Real files cannot be made to crash at these points.

use std::sync::{Arc, Mutex};

use crate::storage::mem::{MemState, MemStorage};
use crate::{AppendError, Fault, Journal, ReserveError, Tail, Unsynced};

fn journal_on(mem: &MemStorage, dir: &std::path::Path) -> (Journal<String>, crate::Opened<String>) {
    Journal::attach(&dir.join("journal.jsonl"), Box::new(mem.clone()), None, None).unwrap()
}

/// Reopening finds exactly the record `one`, with nothing to repair, and
/// the next append continues the sequence: what could not be made durable
/// was removed by the writer that failed.
#[track_caller]
fn assert_reopens_clean_with_only_one(mem: &MemStorage, dir: &std::path::Path) {
    let (mut j, opened) = journal_on(mem, dir);
    assert_eq!(opened.records.iter().map(|r| r.data.as_str()).collect::<Vec<_>>(), ["one"]);
    assert!(opened.repaired.is_none());
    assert_eq!(j.append("g", "two".into()).unwrap().seq, 2);
}

fn new_mem() -> MemStorage {
    MemStorage(Arc::new(Mutex::new(MemState::default())))
}

/// A crash after any append's write but before its sync may leave none,
/// part or all of that record on the disk. Every such image must open to
/// exactly the acknowledged records, plus the unacknowledged one only when
/// it landed whole, and every append acknowledged before must be durable.
#[test]
fn crash_between_write_and_sync_loses_only_the_unacknowledged_record() {
    let dir = tempfile::tempdir().unwrap();
    let mem = new_mem();
    let (mut j, _) = journal_on(&mem, dir.path());
    let payloads: Vec<String> = (0..4).map(|i| format!("step {i} \"quoted\"\n✓")).collect();
    for p in &payloads {
        j.append("d1", p.clone()).unwrap();
    }
    drop(j);
    let state = mem.0.lock().unwrap();
    // The first snapshot is the header's write, then one per append.
    assert_eq!(state.after_write.len(), 1 + payloads.len());
    for (k, (data, durable)) in state.after_write.iter().enumerate().skip(1) {
        let acked = k - 1;
        let undurable = data.len() - durable;
        assert!(undurable > 0, "record {k} was synced before its write");
        for extra in 0..=undurable {
            let image = MemState::crash_image(data, *durable, extra);
            let path = dir.path().join(format!("crash-{k}-{extra}.jsonl"));
            std::fs::write(&path, &image).unwrap();
            let replay = crate::read::<String>(&path).unwrap();
            let whole = extra == undurable;
            let expect = if whole { acked + 1 } else { acked };
            let got: Vec<&String> = replay.records.iter().map(|r| &r.data).collect();
            assert_eq!(got, payloads[..expect].iter().collect::<Vec<_>>(), "k={k} extra={extra}");
            assert_eq!(replay.tail == Tail::Clean, whole || extra == 0, "k={k} extra={extra}");
            let (_, opened) = Journal::<String>::open(&path, &crate::OpenOptions::default()).unwrap();
            assert_eq!(opened.records.len(), expect);
            assert_eq!(opened.repaired.is_some(), !(whole || extra == 0));
        }
    }
}

#[test]
fn failed_sync_poisons_and_is_not_retried() {
    let dir = tempfile::tempdir().unwrap();
    let mem = new_mem();
    let (mut j, _) = journal_on(&mem, dir.path());
    j.append("g", "one".into()).unwrap();
    let syncs_before = {
        let mut s = mem.0.lock().unwrap();
        s.fail_sync = Some(s.syncs + 1);
        s.syncs
    };
    assert!(matches!(j.append("g", "two".into()), Err(AppendError::Io { .. })));
    assert!(matches!(j.append("g", "three".into()), Err(AppendError::Poisoned { .. })));
    assert!(matches!(j.compact(0, |_, _| true), Err(AppendError::Poisoned { .. })));
    let s = mem.0.lock().unwrap();
    // The one sync after the failed one makes the cut-off durable; the
    // failed sync itself is not retried.
    assert_eq!(s.syncs, syncs_before + 2, "a failed sync was retried");
    assert_eq!(s.writes, 3, "a poisoned handle wrote");
}

/// After a failed `fdatasync` the record is still in the page cache: a
/// reopen on the same boot (the same `MemState`, whose `data` is the page
/// cache) must not find it, or recovery could act on a record — say a
/// `commit` — the writer reported as not written.
#[test]
fn failed_sync_removes_the_record_before_anyone_reopens() {
    let dir = tempfile::tempdir().unwrap();
    let mem = new_mem();
    let (mut j, _) = journal_on(&mem, dir.path());
    j.append("g", "one".into()).unwrap();
    {
        let mut s = mem.0.lock().unwrap();
        s.fail_sync = Some(s.syncs + 1);
    }
    match j.append("g", "commit".into()) {
        Err(e @ AppendError::Io { unsynced: Unsynced::Removed, .. }) => assert!(e.record_dropped()),
        other => panic!("{other:?}"),
    }
    drop(j);
    {
        let s = mem.0.lock().unwrap();
        assert_eq!(s.data.len(), s.durable, "unsynced bytes left in the file");
    }
    assert_reopens_clean_with_only_one(&mem, dir.path());
}

/// When even the cut fails, a note makes the next opener refuse the
/// unsynced record (cut it as a torn tail) and then clear the note.
#[test]
fn failed_sync_and_failed_cut_mark_the_record_unsynced() {
    let dir = tempfile::tempdir().unwrap();
    let mem = new_mem();
    let (mut j, _) = journal_on(&mem, dir.path());
    j.append("g", "one".into()).unwrap();
    let len_before = {
        let mut s = mem.0.lock().unwrap();
        s.fail_sync = Some(s.syncs + 1);
        s.fail_truncate = true;
        s.data.len()
    };
    match j.append("g", "commit".into()) {
        Err(e @ AppendError::Io { unsynced: Unsynced::Marked, .. }) => assert!(e.record_dropped()),
        other => panic!("{other:?}"),
    }
    drop(j);
    {
        let mut s = mem.0.lock().unwrap();
        assert_eq!(s.mark, Some(len_before as u64));
        assert!(s.data.len() > len_before, "the whole unsynced record is in the page cache");
        s.fail_truncate = false;
    }
    let (mut j, opened) = journal_on(&mem, dir.path());
    assert_eq!(opened.records.iter().map(|r| r.data.as_str()).collect::<Vec<_>>(), ["one"]);
    let (tail, _) = opened.repaired.expect("the unsynced record is cut");
    assert!(matches!(tail, Tail::Torn { line: 3, offset, .. } if offset == len_before as u64), "{tail:?}");
    assert_eq!(mem.0.lock().unwrap().mark, None, "note left after the cut");
    assert_eq!(j.append("g", "two".into()).unwrap().seq, 2);
}

#[test]
fn failed_sync_cut_and_mark_say_the_record_may_survive() {
    let dir = tempfile::tempdir().unwrap();
    let mem = new_mem();
    let (mut j, _) = journal_on(&mem, dir.path());
    {
        let mut s = mem.0.lock().unwrap();
        s.fail_sync = Some(s.syncs + 1);
        s.fail_truncate = true;
        s.fail_mark = true;
    }
    match j.append("g", "one".into()) {
        Err(e @ AppendError::Io { unsynced: Unsynced::Unknown, .. }) => assert!(!e.record_dropped()),
        other => panic!("{other:?}"),
    }
}

#[test]
fn eio_fault_fails_the_nth_sync_and_removes_the_record() {
    let dir = tempfile::tempdir().unwrap();
    let mem = new_mem();
    let (mut j, _) =
        Journal::<String>::attach(&dir.path().join("journal.jsonl"), Box::new(mem.clone()), None, Some(Fault::Eio(2)))
            .unwrap();
    j.append("g", "one".into()).unwrap();
    match j.append("g", "two".into()) {
        Err(AppendError::Io { source, unsynced: Unsynced::Removed, .. }) => {
            assert_eq!(source.raw_os_error(), Some(libc::EIO))
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(j.append("g", "three".into()), Err(AppendError::Poisoned { .. })));
    drop(j);
    let (_, opened) = journal_on(&mem, dir.path());
    assert_eq!(opened.records.iter().map(|r| r.data.as_str()).collect::<Vec<_>>(), ["one"]);
}

#[test]
fn reservation_beyond_the_free_space_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mem = new_mem();
    let (mut j, _) = journal_on(&mem, dir.path());
    let len = mem.0.lock().unwrap().data.len() as u64;
    mem.0.lock().unwrap().space = Some(len + 1000);
    assert_eq!(j.reserve(1000).unwrap(), crate::Reserved::Allocated);
    assert!(matches!(j.reserve(1001), Err(ReserveError::NoSpace { needed: 1001, .. })));
    // A refused reservation changes nothing: the journal still appends.
    j.append("g", "one".into()).unwrap();
}

#[test]
fn failed_write_poisons_and_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let mem = new_mem();
    let (mut j, _) = journal_on(&mem, dir.path());
    j.append("g", "one".into()).unwrap();
    {
        let mut s = mem.0.lock().unwrap();
        s.fail_write = Some(s.writes + 1);
    }
    assert!(matches!(j.append("g", "two".into()), Err(AppendError::Io { unsynced: Unsynced::Removed, .. })));
    assert!(matches!(j.append("g", "two".into()), Err(AppendError::Poisoned { .. })));
    drop(j);
    assert_reopens_clean_with_only_one(&mem, dir.path());
}

#[test]
fn failed_write_and_cut_poison_and_leave_a_repairable_tail() {
    let dir = tempfile::tempdir().unwrap();
    let mem = new_mem();
    let (mut j, _) = journal_on(&mem, dir.path());
    j.append("g", "one".into()).unwrap();
    {
        let mut s = mem.0.lock().unwrap();
        s.fail_write = Some(s.writes + 1);
        s.fail_truncate = true;
    }
    assert!(matches!(j.append("g", "two".into()), Err(AppendError::Io { .. })));
    assert!(matches!(j.append("g", "two".into()), Err(AppendError::Poisoned { .. })));
    drop(j);
    mem.0.lock().unwrap().fail_truncate = false;
    let (mut j, opened) = journal_on(&mem, dir.path());
    assert_eq!(opened.records.iter().map(|r| r.data.as_str()).collect::<Vec<_>>(), ["one"]);
    let (tail, copy) = opened.repaired.expect("torn tail repaired");
    assert!(matches!(tail, Tail::Torn { line: 3, .. }));
    assert!(copy.exists());
    let rec = j.append("g", "two".into()).unwrap();
    assert_eq!(rec.seq, 2);
}

#[test]
fn encode_failure_does_not_poison() {
    use std::collections::HashMap;
    let dir = tempfile::tempdir().unwrap();
    let mem = new_mem();
    let (mut j, _) =
        Journal::<HashMap<Vec<u8>, u8>>::attach(&dir.path().join("j.jsonl"), Box::new(mem.clone()), None, None)
            .unwrap();
    let bad: HashMap<Vec<u8>, u8> = [(vec![1u8], 1u8)].into();
    assert!(matches!(j.append("g", bad), Err(AppendError::Encode(_))));
    let rec = j.append("g", HashMap::new()).unwrap();
    assert_eq!(rec.seq, 1);
}

#[test]
fn compaction_through_the_seam_keeps_the_chain() {
    let dir = tempfile::tempdir().unwrap();
    let mem = new_mem();
    let (mut j, _) = journal_on(&mem, dir.path());
    for g in ["a", "b", "c"] {
        j.append(g, format!("{g}-start")).unwrap();
        j.append(g, format!("{g}-end")).unwrap();
    }
    j.append("d", "d-start".into()).unwrap();
    let dropped = j.compact(1, |_, recs| recs.last().is_some_and(|r| r.data.ends_with("-end"))).unwrap();
    assert_eq!(dropped, 4);
    j.append("d", "d-end".into()).unwrap();
    drop(j);
    let (_, opened) = journal_on(&mem, dir.path());
    let got: Vec<(u64, &str)> = opened.records.iter().map(|r| (r.seq, r.data.as_str())).collect();
    assert_eq!(got, [(1, "c-start"), (2, "c-end"), (3, "d-start"), (4, "d-end")]);
}
