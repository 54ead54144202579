//! Crash and failure tests through the storage seam: what a crash between
//! an append's write and its sync leaves, and what a failed write or sync
//! does to the handle. Real files cannot be made to crash at these points.

use std::sync::{Arc, Mutex};

use crate::storage::mem::{MemState, MemStorage};
use crate::{AppendError, Journal, Tail};

fn journal_on(mem: &MemStorage, dir: &std::path::Path) -> (Journal<String>, crate::Opened<String>) {
    Journal::attach(&dir.join("journal.jsonl"), Box::new(mem.clone()), None, None).unwrap()
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
    assert_eq!(s.syncs, syncs_before + 1, "a failed sync was retried");
    assert_eq!(s.writes, 3, "a poisoned handle wrote");
}

#[test]
fn failed_write_poisons_and_leaves_a_repairable_tail() {
    let dir = tempfile::tempdir().unwrap();
    let mem = new_mem();
    let (mut j, _) = journal_on(&mem, dir.path());
    j.append("g", "one".into()).unwrap();
    {
        let mut s = mem.0.lock().unwrap();
        s.fail_write = Some(s.writes + 1);
    }
    assert!(matches!(j.append("g", "two".into()), Err(AppendError::Io { .. })));
    assert!(matches!(j.append("g", "two".into()), Err(AppendError::Poisoned { .. })));
    drop(j);
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
