//! Damage the disk could do, and damage it should not: a torn last record
//! must be found and repaired to exactly the complete records; damage to an
//! earlier record must be refused everywhere, at the right offset, with
//! nothing changed.

use journal::{Journal, OpenError, OpenOptions, ReadError, Tail};

use crate::util::{reference, torn_copies, Step};

const RECORDS: usize = 5;

#[test]
fn truncation_anywhere_in_the_last_record_is_a_torn_tail_repaired_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let (path, offsets) = reference(dir.path(), RECORDS);
    let original = std::fs::read(&path).unwrap();
    let last = offsets[RECORDS] as usize;
    let end = original.len();
    let complete = journal::read::<Step>(&path).unwrap().records;
    assert_eq!(complete.len(), RECORDS);
    for cut in last..end {
        let case = tempfile::tempdir().unwrap();
        let p = case.path().join("journal.jsonl");
        std::fs::write(&p, &original[..cut]).unwrap();
        let expect_tail = if cut == last {
            Tail::Clean
        } else {
            Tail::Torn { offset: last as u64, line: RECORDS as u64 + 1, len: (cut - last) as u64 }
        };
        let report = journal::verify(&p).unwrap();
        assert_eq!(report.tail, expect_tail, "cut at {cut}");
        assert_eq!(report.records, RECORDS as u64);
        let replay = journal::read::<Step>(&p).unwrap();
        assert_eq!(replay.tail, expect_tail);
        assert_eq!(replay.records, complete[..RECORDS - 1]);
        assert_eq!(std::fs::read(&p).unwrap(), &original[..cut], "read changed the file");

        let (mut j, opened) = Journal::<Step>::open(&p, &OpenOptions::default()).unwrap();
        assert_eq!(opened.records, complete[..RECORDS - 1]);
        assert_eq!(std::fs::read(&p).unwrap(), &original[..last], "cut at {cut}");
        match opened.repaired {
            None => assert_eq!(cut, last),
            Some((tail, copy)) => {
                assert_eq!(tail, expect_tail);
                assert_eq!(std::fs::read(&copy).unwrap(), &original[..cut]);
                assert_eq!(crate::util::mode(&copy), 0o600);
                assert_eq!(torn_copies(case.path()), vec![copy]);
            }
        }
        // The repaired journal takes appends again, chained to what is left.
        let rec = j.append("after", complete[RECORDS - 1].data.clone()).unwrap();
        assert_eq!(rec.seq, RECORDS as u64);
        drop(j);
        assert_eq!(journal::read::<Step>(&p).unwrap().records.len(), RECORDS);
    }
}

fn expect_corrupt<T: std::fmt::Debug>(r: Result<T, ReadError>, offset: u64, line: u64, what: &str) {
    match r {
        Err(ReadError::Corrupt { offset: o, line: l, .. }) if (o, l) == (offset, line) => {}
        other => panic!("{what}: expected corruption at byte {offset} line {line}, got {other:?}"),
    }
}

#[test]
fn a_flipped_bit_in_any_earlier_record_is_refused_at_that_record() {
    let dir = tempfile::tempdir().unwrap();
    let (path, offsets) = reference(dir.path(), RECORDS);
    let original = std::fs::read(&path).unwrap();
    let case = tempfile::tempdir().unwrap();
    let p = case.path().join("journal.jsonl");
    let mut cases = 0;
    // Every record but the last (header included): damage there is
    // followed by the last record, which checksums.
    for rec in 0..RECORDS {
        let (start, end) = (offsets[rec] as usize, offsets[rec + 1] as usize);
        for byte in start..end {
            for bit in 0..8 {
                let mut damaged = original.clone();
                damaged[byte] ^= 1 << bit;
                std::fs::write(&p, &damaged).unwrap();
                let what = format!("record {rec}, byte {byte}, bit {bit}");
                let (offset, line) = (start as u64, rec as u64 + 1);
                expect_corrupt(journal::verify(&p), offset, line, &what);
                expect_corrupt(journal::read::<Step>(&p), offset, line, &what);
                // Opening is the costly check (lock, fsyncs on success);
                // once per byte covers every byte.
                if bit == byte % 8 {
                    match Journal::<Step>::open(&p, &OpenOptions::default()) {
                        Err(OpenError::Read(e)) => expect_corrupt(Err::<(), _>(e), offset, line, &what),
                        other => panic!("{what}: open gave {:?}", other.map(|_| ())),
                    }
                    assert_eq!(std::fs::read(&p).unwrap(), damaged, "{what}: open changed the file");
                    assert!(torn_copies(case.path()).is_empty(), "{what}");
                }
                cases += 1;
            }
        }
    }
    assert_eq!(cases, offsets[RECORDS] * 8);
}

#[test]
fn appended_zeros_or_garbage_are_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = reference(dir.path(), 3);
    let original = std::fs::read(&path).unwrap();
    let mut junk: Vec<Vec<u8>> = vec![vec![0], vec![0; 4096], b"\n".to_vec(), b"\0\0\0\n".to_vec()];
    junk.push((0..3000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).filter(|&c| c != b'\n').collect());
    junk.push(b"{\"v\":1,\"seq\":4,\"crc\":\"00000000\"}\n".to_vec());
    for (i, tail) in junk.iter().enumerate() {
        let case = tempfile::tempdir().unwrap();
        let p = case.path().join("journal.jsonl");
        let mut bytes = original.clone();
        bytes.extend_from_slice(tail);
        std::fs::write(&p, &bytes).unwrap();
        let expect = Tail::Torn { offset: original.len() as u64, line: 5, len: tail.len() as u64 };
        assert_eq!(journal::verify(&p).unwrap().tail, expect, "junk {i}");
        assert_eq!(journal::read::<Step>(&p).unwrap().records.len(), 3);
        let (_, opened) = Journal::<Step>::open(&p, &OpenOptions::default()).unwrap();
        assert_eq!(opened.records.len(), 3);
        assert_eq!(opened.repaired.unwrap().0, expect);
        assert_eq!(std::fs::read(&p).unwrap(), original);
    }
}

#[test]
fn a_valid_record_after_an_invalid_line_is_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let (path, offsets) = reference(dir.path(), 3);
    let original = std::fs::read(&path).unwrap();
    let (second_last, last) = (offsets[2] as usize, offsets[3] as usize);
    // A torn prefix of the second-to-last record with the last record after it.
    let mut bytes = original[..second_last].to_vec();
    bytes.extend_from_slice(&original[second_last..second_last + 20]);
    bytes.push(b'\n');
    bytes.extend_from_slice(&original[last..]);
    let p = dir.path().join("spliced.jsonl");
    std::fs::write(&p, &bytes).unwrap();
    expect_corrupt(journal::verify(&p), second_last as u64, 3, "spliced");
    // A whole record dropped from the middle: each line checksums, the chain does not.
    let mut bytes = original[..second_last].to_vec();
    bytes.extend_from_slice(&original[last..]);
    std::fs::write(&p, &bytes).unwrap();
    match journal::verify(&p) {
        Err(ReadError::Corrupt { offset, line: 3, reason, .. }) if offset == second_last as u64 => {
            assert!(reason.contains("sequence gap"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
}

/// A line a newer build wrote: `v` 2, checksummed by the documented rule.
fn newer_line(seq: u64, prev: &str) -> String {
    let head = format!(
        "{{\"v\":2,\"seq\":{seq},\"ts\":\"2030-01-01T00:00:00.000Z\",\"prev\":\"{prev}\",\"group\":\"g\",\"data\":{{\"new\":true}},\"extra\":[]"
    );
    let crc = crc32c::crc32c(format!("{head}}}").as_bytes());
    format!("{head},\"crc\":\"{crc:08x}\"}}\n")
}

#[test]
fn newer_version_is_refused_not_repaired() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = reference(dir.path(), 2);
    let text = std::fs::read_to_string(&path).unwrap();
    let last: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    let mut bytes = text.clone().into_bytes();
    bytes.extend_from_slice(newer_line(3, last["crc"].as_str().unwrap()).as_bytes());
    std::fs::write(&path, &bytes).unwrap();
    for r in [journal::verify(&path).map(|_| ()), journal::read::<Step>(&path).map(|_| ())] {
        assert!(matches!(r, Err(ReadError::NewerVersion { found: 2, .. })), "{r:?}");
    }
    let r = Journal::<Step>::open(&path, &OpenOptions::default());
    assert!(matches!(r, Err(OpenError::Read(ReadError::NewerVersion { found: 2, .. }))));
    assert_eq!(std::fs::read(&path).unwrap(), bytes);
    // A whole file from a newer build, header included.
    std::fs::write(&path, newer_line(0, "00000000")).unwrap();
    assert!(matches!(journal::verify(&path), Err(ReadError::NewerVersion { found: 2, .. })));
}

#[test]
fn reading_a_missing_journal_is_an_io_error() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("nope.jsonl");
    assert!(matches!(journal::read::<Step>(&p), Err(ReadError::Io { .. })));
    assert!(matches!(journal::verify(&p), Err(ReadError::Io { .. })));
}

/// A crash tears at most the one line being appended, so two or more
/// invalid lines at the end are damage, not a torn append: refused at the
/// first of them, with the file left as it was.
#[test]
fn two_or_more_invalid_trailing_lines_are_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = reference(dir.path(), 3);
    let original = std::fs::read(&path).unwrap();
    let junk: [&[u8]; 4] =
        [b"\n\n", b"\n\n\n", b"{\"v\":1,\"seq\":4}\n{\"v\":1,\"crc\":\"00000000\"}\n", b"\0\0\0\0\n\0\0\0\0\0"];
    for (i, tail) in junk.iter().enumerate() {
        let case = tempfile::tempdir().unwrap();
        let p = case.path().join("journal.jsonl");
        let mut bytes = original.clone();
        bytes.extend_from_slice(tail);
        std::fs::write(&p, &bytes).unwrap();
        let what = format!("junk {i}");
        expect_corrupt(journal::verify(&p), original.len() as u64, 5, &what);
        expect_corrupt(journal::read::<Step>(&p), original.len() as u64, 5, &what);
        match Journal::<Step>::open(&p, &OpenOptions::default()) {
            Err(OpenError::Read(e)) => expect_corrupt(Err::<(), _>(e), original.len() as u64, 5, &what),
            other => panic!("{what}: open gave {:?}", other.map(|_| ())),
        }
        assert_eq!(std::fs::read(&p).unwrap(), bytes, "{what}: open changed the file");
        assert!(torn_copies(case.path()).is_empty(), "{what}");
    }
}

/// A flipped bit in the second-to-last record (say, a deploy's `commit`)
/// followed by a torn last record must not be cut away as one torn tail:
/// that would silently turn a committed deploy into an uncommitted one.
#[test]
fn a_damaged_record_before_a_torn_last_record_is_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let (path, offsets) = reference(dir.path(), RECORDS);
    let original = std::fs::read(&path).unwrap();
    let (second_last, last) = (offsets[RECORDS - 1] as usize, offsets[RECORDS] as usize);
    let case = tempfile::tempdir().unwrap();
    let p = case.path().join("journal.jsonl");
    // Every byte but the LF (damage there glues the two lines into one,
    // which a torn append can leave, and is refused by the checksum of the
    // first when the last is whole).
    for byte in second_last..last - 1 {
        for cut in [last + 1, (last + original.len()) / 2, original.len() - 1] {
            let mut damaged = original[..cut].to_vec();
            damaged[byte] ^= 0x10;
            std::fs::write(&p, &damaged).unwrap();
            let what = format!("byte {byte}, cut at {cut}");
            let (offset, line) = (second_last as u64, RECORDS as u64);
            expect_corrupt(journal::verify(&p), offset, line, &what);
            expect_corrupt(journal::read::<Step>(&p), offset, line, &what);
            if byte % 16 == 0 {
                match Journal::<Step>::open(&p, &OpenOptions::default()) {
                    Err(OpenError::Read(e)) => expect_corrupt(Err::<(), _>(e), offset, line, &what),
                    other => panic!("{what}: open gave {:?}", other.map(|_| ())),
                }
                assert_eq!(std::fs::read(&p).unwrap(), damaged, "{what}: open changed the file");
            }
        }
    }
}
