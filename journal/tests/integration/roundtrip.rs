//! What is appended comes back, through `read`, `open` and `verify`, for
//! arbitrary payloads; and the file is the documented, checkable format.

use journal::{Journal, OpenOptions, Tail};
use proptest::prelude::*;

use crate::util::{mode, Note, Step};

fn step() -> impl Strategy<Value = Step> {
    let text = prop_oneof![any::<String>(), "[\"\\\\\n\t\u{0}a-zé☃😀]{0,12}"];
    prop_oneof![
        (text.clone(), proptest::option::of(text.clone()))
            .prop_map(|(step, container)| Step::Intent { step, container }),
        (text.clone(), proptest::collection::vec(text.clone(), 0..3), any::<i64>())
            .prop_map(|(step, ids, code)| Step::Done { step, ids, code }),
        (text, any::<bool>()).prop_map(|(text, ok)| Step::Note(Note { text, ok })),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    #[test]
    fn arbitrary_records_round_trip(records in proptest::collection::vec(("[a-z0-9\"\n-]{0,8}", step()), 0..12)) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.jsonl");
        let (mut j, opened) = Journal::<Step>::open(&path, &OpenOptions::default()).unwrap();
        prop_assert!(opened.records.is_empty());
        let mut appended = Vec::new();
        for (group, data) in &records {
            appended.push(j.append(group, data.clone()).unwrap());
        }
        drop(j);
        let replay = journal::read::<Step>(&path).unwrap();
        prop_assert_eq!(replay.tail, Tail::Clean);
        prop_assert_eq!(&replay.records, &appended);
        let (_, opened) = Journal::<Step>::open(&path, &OpenOptions::default()).unwrap();
        prop_assert_eq!(&opened.records, &appended);
        prop_assert!(opened.repaired.is_none());
        let report = journal::verify(&path).unwrap();
        prop_assert_eq!(report.records, records.len() as u64 + 1);
        prop_assert_eq!(report.bytes, std::fs::metadata(&path).unwrap().len());
        for (i, r) in appended.iter().enumerate() {
            prop_assert_eq!(r.seq, i as u64 + 1);
        }
    }
}

/// An independent reader of the documented format: every line is JSON, its
/// CRC-32C over the line without the `,"crc":"…"` member matches, the chain
/// and sequence hold, and `ts` is RFC 3339 UTC with milliseconds.
#[test]
fn file_is_the_documented_format() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = crate::util::reference(dir.path(), 5);
    let text = std::fs::read_to_string(&path).unwrap();
    let mut prev = "00000000".to_string();
    for (i, line) in text.lines().enumerate() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let crc = v["crc"].as_str().unwrap().to_string();
        let member = format!(",\"crc\":\"{crc}\"");
        assert!(line.ends_with(&format!("{member}}}")));
        let head = &line[..line.len() - member.len() - 1];
        assert_eq!(format!("{:08x}", crc32c::crc32c(format!("{head}}}").as_bytes())), crc);
        assert!(line.starts_with("{\"v\":1,\"seq\":"));
        assert_eq!(v["v"], 1);
        assert_eq!(v["seq"], i as u64);
        assert_eq!(v["prev"], prev.as_str());
        let ts = v["ts"].as_str().unwrap();
        assert_eq!(ts.len(), 24, "{ts}");
        assert!(ts.starts_with("20") && ts.ends_with('Z') && &ts[10..11] == "T");
        if i == 0 {
            assert_eq!(v["data"]["kind"], "header");
            assert_eq!(v["data"]["format"], "journal");
            assert_eq!(v["group"], "");
        }
        prev = crc;
    }
    let replay = journal::read::<Step>(&path).unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
    assert!(replay.records.iter().all(|r| r.ts_ms <= now && now - r.ts_ms < 600_000));
}

#[test]
fn files_and_directories_are_private() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state").join("app").join("journal.jsonl");
    let (mut j, _) = Journal::<Step>::open(&path, &OpenOptions::default()).unwrap();
    j.append("g", Step::Note(Note { text: "x".into(), ok: true })).unwrap();
    assert_eq!(mode(&path), 0o600);
    assert_eq!(mode(&journal::lock_path(&path)), 0o600);
    assert_eq!(journal::lock_path(&path), path.with_file_name("journal.lock"));
    assert_eq!(mode(path.parent().unwrap()), 0o700);
    assert_eq!(mode(path.parent().unwrap().parent().unwrap()), 0o700);
}

#[test]
fn payload_of_the_wrong_type_is_corruption_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let (path, offsets) = crate::util::reference(dir.path(), 3);
    let err = journal::read::<u32>(&path).unwrap_err();
    match err {
        journal::ReadError::Corrupt { offset, line, reason, .. } => {
            assert_eq!((offset, line), (offsets[1], 2));
            assert!(reason.contains("payload") && reason.contains("u32"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    // Structure alone is fine.
    assert_eq!(journal::verify(&path).unwrap().tail, Tail::Clean);
}

#[test]
fn compaction_keeps_recent_and_unfinished_groups_and_stays_appendable() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal.jsonl");
    let (mut j, _) = Journal::<Step>::open(&path, &OpenOptions::default()).unwrap();
    let done = |g: &str| Step::Done { step: g.into(), ids: vec![], code: 0 };
    let intent = |g: &str| Step::Intent { step: g.into(), container: None };
    // d1 unfinished and interleaved with d2.
    j.append("d1", intent("d1")).unwrap();
    j.append("d2", intent("d2")).unwrap();
    j.append("d2", done("d2")).unwrap();
    j.append("d3", intent("d3")).unwrap();
    j.append("d3", done("d3")).unwrap();
    j.append("d4", intent("d4")).unwrap();
    j.append("d4", done("d4")).unwrap();
    let is_done = |_: &str, recs: &[journal::Record<Step>]| recs.iter().any(|r| matches!(r.data, Step::Done { .. }));
    assert_eq!(j.compact(1, is_done).unwrap(), 4);
    assert_eq!(j.compact(1, is_done).unwrap(), 0);
    assert_eq!(mode(&path), 0o600);
    j.append("d5", intent("d5")).unwrap();
    drop(j);
    let replay = journal::read::<Step>(&path).unwrap();
    let got: Vec<(u64, &str)> = replay.records.iter().map(|r| (r.seq, r.group.as_str())).collect();
    assert_eq!(got, [(1, "d1"), (2, "d4"), (3, "d4"), (4, "d5")]);
    let header: serde_json::Value =
        serde_json::from_str(std::fs::read_to_string(&path).unwrap().lines().next().unwrap()).unwrap();
    assert_eq!(header["data"]["compacted_dropped"], 4);
    assert!(!path.with_file_name("journal.jsonl.compact-tmp").exists());
}

#[test]
fn a_journal_removed_or_replaced_under_its_writer_is_detached() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app").join("journal.jsonl");
    let note = |t: &str| Step::Note(Note { text: t.into(), ok: true });
    let (mut j, _) = Journal::<Step>::open(&path, &OpenOptions::default()).unwrap();
    j.append("d1", note("a")).unwrap();
    assert!(!j.detached().unwrap(), "a journal at its path is not detached");
    // Compaction replaces the file itself: the handle follows it.
    j.compact(1, |_, _| true).unwrap();
    j.append("d2", note("b")).unwrap();
    assert!(!j.detached().unwrap(), "compaction detached the writer from its own file");

    std::fs::remove_file(&path).unwrap();
    j.append("d3", note("c")).expect("an unlinked file still takes appends");
    assert!(j.detached().unwrap(), "removed, yet not detached");
    drop(j);

    let (j, _) = Journal::<Step>::open(&path, &OpenOptions::default()).unwrap();
    let other = dir.path().join("other.jsonl");
    std::fs::write(&other, b"").unwrap();
    std::fs::rename(&other, &path).unwrap();
    assert!(j.detached().unwrap(), "replaced, yet not detached");
}
