//! A coverage-free mutation fuzzer for the reader, on stable Rust.
//!
//! Seeds are real journals (swap's, under `journal/tests/corpus/`, and
//! ones written here through the API: varied payloads, several groups, a
//! compacted file, an empty and a header-only one). Each input is a seed
//! mutated a few times (bit flips, byte and token inserts, deletions,
//! truncation, line duplication, deletion and swaps, splices, number and
//! member replacement, `{"v":` fragments, zeros, random bytes), and then,
//! often, re-checksummed and re-chained so the walk gets past the checksum
//! into the rules behind it. Every input goes through `verify` and
//! `read::<Value>`, and a sample through `Journal::<Value>::open` on a
//! copy. Checked:
//!
//! - nothing panics;
//! - `verify` and `read` classify the input exactly as a reference model
//!   written here from `docs/journal-format.md` (independent CRC-32C,
//!   timestamp parser and walk): clean, torn (offset, line, length) or
//!   corrupt (offset, line), or a newer version; `read` returns the
//!   model's records (seq, offset, ts, group, payload);
//! - a torn input cut at the reported offset is clean with the same
//!   records;
//! - `open` repairs exactly a torn tail (copy kept, file cut at the
//!   offset, appendable afterwards), and refuses corruption and newer
//!   versions leaving the file byte-identical and no copy behind.
//!
//! `JOURNAL_FUZZ_SEED` (default: fixed), `JOURNAL_FUZZ_ITERS` and
//! `JOURNAL_FUZZ_SECS` (stop at whichever comes first) steer a run. The
//! input under test is written to `target/tmp/journal-fuzz-<pid>/input.jsonl`
//! before each run, so an abort leaves it behind; a failing input is saved
//! under `target/tmp/journal-fuzz-failures/`. Inputs that once failed are
//! kept as `journal/tests/corpus/regress-*.jsonl` and checked first.

use std::collections::BTreeMap;
use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use journal::{Journal, OpenError, OpenOptions, ReadError, Tail};
use serde::de::{Deserialize, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::Value;

const PREFIX: &[u8] = b"{\"v\":";
const CRC_OPEN: &[u8] = b",\"crc\":\"";
const CRC_TAIL: usize = CRC_OPEN.len() + 8 + 2;
const DEFAULT_SEED: u64 = 0x6a6f_7572_6e61_6c21;
/// About 15 s in a debug build on an idle 2-vCPU machine.
const DEFAULT_ITERS: u64 = 50_000;

// ---------------------------------------------------------------- PRNG

/// splitmix64.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

// ------------------------------------------------------ reference model

/// CRC-32C, table-driven from the polynomial in the spec.
fn crc32c(parts: &[&[u8]]) -> u32 {
    static TABLE: OnceLock<[u32; 256]> = OnceLock::new();
    let table = TABLE.get_or_init(|| {
        let mut t = [0u32; 256];
        for (i, slot) in t.iter_mut().enumerate() {
            let mut c = i as u32;
            for _ in 0..8 {
                c = if c & 1 != 0 { 0x82f6_3b78 ^ (c >> 1) } else { c >> 1 };
            }
            *slot = c;
        }
        t
    });
    let mut crc = !0u32;
    for part in parts {
        for &b in *part {
            crc = table[((crc ^ u32::from(b)) & 0xff) as usize] ^ (crc >> 8);
        }
    }
    !crc
}

fn hex8(b: &[u8]) -> Option<u32> {
    if b.len() != 8 || !b.iter().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    u32::from_str_radix(std::str::from_utf8(b).ok()?, 16).ok()
}

/// Rule 3: the frame and the checksum.
fn frame_crc(l: &[u8]) -> Option<u32> {
    let n = l.len();
    if n < PREFIX.len() + CRC_TAIL || !l.starts_with(PREFIX) || !l[n - CRC_TAIL..].starts_with(CRC_OPEN) {
        return None;
    }
    if !l.ends_with(b"\"}") {
        return None;
    }
    let stored = hex8(&l[n - 10..n - 2])?;
    (stored == crc32c(&[&l[..n - CRC_TAIL], b"}"])).then_some(stored)
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ`, years 1970–9999, to Unix milliseconds.
fn ts_ms(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    if b.len() != 24 || !b.is_ascii() {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u64> {
        b[r].iter().try_fold(0u64, |a, c| c.is_ascii_digit().then(|| a * 10 + u64::from(c - b'0')))
    };
    let seps = [(4, b'-'), (7, b'-'), (10, b'T'), (13, b':'), (16, b':'), (19, b'.'), (23, b'Z')];
    if seps.iter().any(|&(i, c)| b[i] != c) {
        return None;
    }
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hh, mi, ss, ms) = (num(11..13)?, num(14..16)?, num(17..19)?, num(20..23)?);
    let leap = |y: u64| y % 4 == 0 && (y % 100 != 0 || y % 400 == 0);
    let mdays = [31, if leap(y) { 29 } else { 28 }, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    if y < 1970 || !(1..=12).contains(&m) || d == 0 || d > mdays[m as usize - 1] || hh > 23 || mi > 59 || ss > 59 {
        return None;
    }
    let leaps_to = |y: u64| y / 4 - y / 100 + y / 400;
    let days =
        365 * (y - 1970) + leaps_to(y - 1) - leaps_to(1969) + mdays[..m as usize - 1].iter().sum::<u64>() + d - 1;
    Some(((days * 24 + hh) * 60 + mi) * 60_000 + ss * 1000 + ms)
}

/// An object's members in order, duplicates kept.
struct Members(Vec<(String, Box<RawValue>)>);

impl<'de> Deserialize<'de> for Members {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Members, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Members;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Members, A::Error> {
                let mut v = Vec::new();
                while let Some(kv) = m.next_entry::<String, Box<RawValue>>()? {
                    v.push(kv);
                }
                Ok(Members(v))
            }
        }
        d.deserialize_map(V)
    }
}

impl Members {
    fn get(&self, k: &str) -> Option<&str> {
        self.0.iter().find(|(n, _)| n == k).map(|(_, v)| v.get())
    }
    fn count(&self, k: &str) -> usize {
        self.0.iter().filter(|(n, _)| n == k).count()
    }
}

/// A string member that the walk borrows: no escapes.
fn plain_str(raw: &str) -> Option<&str> {
    let s = raw.strip_prefix('"')?.strip_suffix('"')?;
    (!s.contains(['\\', '"'])).then_some(s)
}

fn is_header(m: &Members, group: &str) -> bool {
    let one = |k| m.count(k) <= 1;
    let str_is =
        |k, want: &str| m.get(k).and_then(|r| serde_json::from_str::<String>(r).ok()).is_some_and(|s| s == want);
    group.is_empty()
        && ["kind", "format", "created_by", "compacted_dropped"].into_iter().all(one)
        && str_is("kind", "header")
        && str_is("format", "journal")
        && m.get("created_by").is_none_or(|r| serde_json::from_str::<String>(r).is_ok())
        && m.get("compacted_dropped").is_none_or(|r| serde_json::from_str::<Option<u64>>(r).is_ok())
}

/// What the spec says an input is. `records` counts the header.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Class {
    Clean { records: u64 },
    Torn { records: u64, offset: u64, line: u64, len: u64 },
    Corrupt { offset: u64, line: u64 },
    Newer { found: u32 },
    Io(String),
}

impl Class {
    fn name(&self) -> &'static str {
        match self {
            Class::Clean { .. } => "clean",
            Class::Torn { .. } => "torn",
            Class::Corrupt { .. } => "corrupt",
            Class::Newer { .. } => "newer",
            Class::Io(_) => "io",
        }
    }

    /// The same with the header not counted, as `read` and `open` see it.
    fn payload_view(&self) -> Class {
        match *self {
            Class::Clean { records } => Class::Clean { records: records.saturating_sub(1) },
            Class::Torn { records, offset, line, len } => {
                Class::Torn { records: records.saturating_sub(1), offset, line, len }
            }
            ref other => other.clone(),
        }
    }
}

/// A record as the model accepted it.
#[derive(Debug, PartialEq)]
struct ModelRecord {
    seq: u64,
    offset: u64,
    ts_ms: u64,
    group: String,
    data: Value,
}

/// The reading rules of docs/journal-format.md, written out again.
/// `decode_payload` stands for "decodes as the caller's type" (verify:
/// always true).
fn model(bytes: &[u8], decode_payload: bool) -> (Class, Vec<ModelRecord>) {
    let mut pos = 0usize;
    let mut expected = 0u64;
    let mut prev = 0u32;
    let mut out = Vec::new();
    loop {
        if pos == bytes.len() {
            return (Class::Clean { records: expected }, out);
        }
        let corrupt = Class::Corrupt { offset: pos as u64, line: expected + 1 };
        let Some(nl) = bytes[pos..].iter().position(|&c| c == b'\n').map(|i| pos + i) else {
            return (invalid_at(bytes, pos, expected), out);
        };
        let l = &bytes[pos..nl];
        let Some(crc) = frame_crc(l) else {
            return (invalid_at(bytes, pos, expected), out);
        };
        let digits = &l[PREFIX.len()..];
        let digits = &digits[..digits.iter().position(|&c| c == b',').unwrap_or(digits.len())];
        if digits.is_empty() || digits.len() > 9 || !digits.iter().all(u8::is_ascii_digit) {
            return (corrupt, out);
        }
        let version: u32 = std::str::from_utf8(digits).unwrap().parse().unwrap();
        if version > 1 {
            return (Class::Newer { found: version }, out);
        }
        if version == 0 {
            return (corrupt, out);
        }
        let Ok(m) = serde_json::from_slice::<Members>(l) else { return (corrupt, out) };
        let names = ["v", "seq", "ts", "prev", "group", "data", "crc"];
        if m.0.len() != names.len() || names.iter().any(|n| m.count(n) != 1) {
            return (corrupt, out);
        }
        let field = |k| m.get(k).unwrap();
        let typed = (
            serde_json::from_str::<u32>(field("v")).ok(),
            serde_json::from_str::<u64>(field("seq")).ok(),
            plain_str(field("ts")),
            plain_str(field("prev")),
            serde_json::from_str::<String>(field("group")).ok(),
            plain_str(field("crc")),
        );
        let (Some(_), Some(seq), Some(ts), Some(prev_hex), Some(group), Some(_)) = typed else {
            return (corrupt, out);
        };
        if seq != expected || hex8(prev_hex.as_bytes()) != Some(prev) {
            return (corrupt, out);
        }
        let Some(ts_ms) = ts_ms(ts) else { return (corrupt, out) };
        let data = field("data");
        if expected == 0 {
            match serde_json::from_str::<Members>(data) {
                Ok(h) if is_header(&h, &group) => {}
                _ => return (corrupt, out),
            }
        } else {
            match serde_json::from_str::<Value>(data) {
                Ok(data) => out.push(ModelRecord { seq, offset: pos as u64, ts_ms, group, data }),
                Err(_) if decode_payload => return (corrupt, out),
                Err(_) => {}
            }
        }
        prev = crc;
        expected += 1;
        pos = nl + 1;
    }
}

/// The line at `pos` is invalid: corrupt if a valid record starts at any
/// `{"v":` after it or if it is not the last line, else a torn tail.
fn invalid_at(bytes: &[u8], pos: usize, expected: u64) -> Class {
    let mut s = pos + 1;
    while s < bytes.len() {
        let Some(i) = bytes[s..].windows(PREFIX.len()).position(|w| w == PREFIX) else { break };
        s += i;
        let Some(e) = bytes[s..].iter().position(|&c| c == b'\n').map(|j| s + j) else { break };
        let cand = &bytes[s..e];
        if frame_crc(cand).is_some() && serde_json::from_slice::<IgnoredAny>(cand).is_ok() {
            return Class::Corrupt { offset: pos as u64, line: expected + 1 };
        }
        s += 1;
    }
    if bytes[pos..bytes.len() - 1].contains(&b'\n') {
        return Class::Corrupt { offset: pos as u64, line: expected + 1 };
    }
    Class::Torn { records: expected, offset: pos as u64, line: expected + 1, len: (bytes.len() - pos) as u64 }
}

// -------------------------------------------------------- the checks

fn classify(r: Result<(u64, Tail), &ReadError>) -> Class {
    match r {
        Ok((records, Tail::Clean)) => Class::Clean { records },
        Ok((records, Tail::Torn { offset, line, len })) => Class::Torn { records, offset, line, len },
        Err(ReadError::Corrupt { offset, line, .. }) => Class::Corrupt { offset: *offset, line: *line },
        Err(ReadError::NewerVersion { found, .. }) => Class::Newer { found: *found },
        Err(e) => Class::Io(e.to_string()),
    }
}

fn ensure(ok: bool, what: impl FnOnce() -> String) -> Result<(), String> {
    if ok {
        Ok(())
    } else {
        Err(what())
    }
}

fn same_records(got: &[journal::Record<Value>], want: &[ModelRecord]) -> bool {
    got.len() == want.len()
        && got.iter().zip(want).all(|(g, w)| {
            (g.seq, g.offset, g.ts_ms, &g.group, &g.data) == (w.seq, w.offset, w.ts_ms, &w.group, &w.data)
        })
}

fn read_class(p: &Path) -> (Class, Vec<journal::Record<Value>>) {
    match journal::read::<Value>(p) {
        Ok(r) => (classify(Ok((r.records.len() as u64, r.tail))), r.records),
        Err(e) => (classify(Err(&e)), Vec::new()),
    }
}

/// Runs every check on one input; returns verify's classification, and
/// whether `read` refused a payload that `verify` accepted.
fn check(input: &[u8], work: &Path, with_open: bool) -> Result<(Class, bool), String> {
    let p = work.join("input.jsonl");
    std::fs::write(&p, input).map_err(|e| format!("writing the input: {e}"))?;

    let (want, _) = model(input, false);
    let got = classify(journal::verify(&p).as_ref().map(|r| (r.records, r.tail.clone())));
    ensure(got == want, || format!("verify says {got:?}, the spec says {want:?}"))?;
    if let Ok(r) = journal::verify(&p) {
        ensure(r.bytes == input.len() as u64, || format!("verify reports {} bytes of {}", r.bytes, input.len()))?;
    }

    let (want_read, model_records) = model(input, true);
    let want_read = want_read.payload_view();
    let (got, records) = read_class(&p);
    ensure(got == want_read, || format!("read::<Value> says {got:?}, the spec says {want_read:?}"))?;
    let readable = matches!(want_read, Class::Clean { .. } | Class::Torn { .. });
    ensure(!readable || same_records(&records, &model_records), || {
        format!("read::<Value> returned {records:?}, the spec gives {model_records:?}")
    })?;

    if let Class::Torn { offset, .. } = want_read {
        let cut = work.join("cut.jsonl");
        std::fs::write(&cut, &input[..offset as usize]).map_err(|e| e.to_string())?;
        let (got, again) = read_class(&cut);
        let want = Class::Clean { records: model_records.len() as u64 };
        ensure(got == want, || format!("cut at the torn offset {offset}, read says {got:?}, not {want:?}"))?;
        ensure(again == records, || format!("cut at the torn offset {offset}, the records differ"))?;
    }
    ensure(std::fs::read(&p).map_err(|e| e.to_string())? == input, || "verify or read changed the file".into())?;

    if with_open {
        check_open(input, work, &want_read, &records)?;
    }
    let payload_refused = want.payload_view() != want_read;
    Ok((want, payload_refused))
}

fn check_open(input: &[u8], work: &Path, want: &Class, records: &[journal::Record<Value>]) -> Result<(), String> {
    let dir = work.join("open");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir(&dir).map_err(|e| e.to_string())?;
    let p = dir.join("journal.jsonl");
    std::fs::write(&p, input).map_err(|e| e.to_string())?;
    let files = |dir: &Path| -> Vec<String> {
        let mut v: Vec<String> =
            std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        v.sort();
        v
    };
    let opened = Journal::<Value>::open(&p, &OpenOptions::default());
    let after = std::fs::read(&p).map_err(|e| e.to_string())?;
    match (want, opened) {
        (Class::Clean { .. } | Class::Torn { .. }, Ok((mut j, o))) => {
            ensure(o.records == records, || format!("open returned {:?}, read {records:?}", o.records))?;
            match (want, &o.repaired) {
                (Class::Clean { .. }, None) => {
                    if input.is_empty() {
                        ensure(matches!(model(&after, false).0, Class::Clean { records: 1 }), || {
                            "open of an empty file did not leave exactly a header".into()
                        })?;
                    } else {
                        ensure(after == input, || "open changed a clean file".into())?;
                    }
                }
                (Class::Torn { offset, line, len, .. }, Some((tail, copy))) => {
                    let want_tail = Tail::Torn { offset: *offset, line: *line, len: *len };
                    ensure(*tail == want_tail, || format!("open repaired {tail:?}, expected {want_tail:?}"))?;
                    let copied = std::fs::read(copy).map_err(|e| e.to_string())?;
                    ensure(copied == input, || "the torn copy is not the original bytes".into())?;
                    if *offset == 0 {
                        ensure(matches!(model(&after, false).0, Class::Clean { records: 1 }), || {
                            "open of an all-torn file did not leave exactly a header".into()
                        })?;
                    } else {
                        ensure(after == input[..*offset as usize], || format!("open did not cut at {offset}"))?;
                    }
                }
                (_, r) => return Err(format!("open repaired {r:?}, expected {want:?}")),
            }
            let n = match model(&std::fs::read(&p).map_err(|e| e.to_string())?, false).0 {
                Class::Clean { records } => records,
                other => return Err(format!("after open the file is {other:?}")),
            };
            j.append("fuzz", serde_json::json!({"after": "open"})).map_err(|e| format!("append after open: {e}"))?;
            drop(j);
            let after_append = model(&std::fs::read(&p).map_err(|e| e.to_string())?, false).0;
            ensure(after_append == Class::Clean { records: n + 1 }, || {
                format!("after open and one append the file is {after_append:?}")
            })?;
        }
        (Class::Corrupt { .. } | Class::Newer { .. }, Err(OpenError::Read(e))) => {
            let got = classify(Err(&e));
            ensure(got == *want, || format!("open refused with {got:?}, expected {want:?}"))?;
            ensure(after == input, || "open changed a refused file".into())?;
            let left = files(&dir);
            ensure(left == ["journal.jsonl", "journal.lock"], || format!("open of a refused file left {left:?}"))?;
        }
        (_, Ok(_)) => return Err(format!("open accepted an input that is {want:?}")),
        (_, Err(e)) => return Err(format!("open failed with {e}, expected {want:?}")),
    }
    std::fs::remove_dir_all(&dir).map_err(|e| e.to_string())?;
    Ok(())
}

// ------------------------------------------------------------ seeds

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests").join("corpus")
}

/// Journals written through the API, plus the files in tests/corpus/.
fn seeds() -> Vec<(String, Vec<u8>)> {
    let dir = tempfile::tempdir().unwrap();
    let mut out = Vec::new();
    let payloads = [
        serde_json::json!({"kind": "intent", "step": {"step": "stop_old", "id": "70ee016f", "timeout_s": 10}}),
        serde_json::json!("quote \" backslash \\ newline \n tab \t nul \u{0} snowman ☃ λ 🦀"),
        serde_json::json!([u64::MAX, -1, 1.5e300, 0, -0.0, true, false, null]),
        serde_json::json!({}),
        serde_json::json!([]),
        serde_json::json!({"nested": {"a": [{"b": [1, {"c": "d"}]}]}, "empty": ""}),
        serde_json::json!(null),
        serde_json::json!(12345678901234567u64),
    ];
    // Several interleaved groups, every payload shape.
    let p = dir.path().join("mixed").join("journal.jsonl");
    let (mut j, _) = Journal::<Value>::open(&p, &OpenOptions::default()).unwrap();
    for (i, data) in payloads.iter().enumerate() {
        j.append(["d-1", "", "grp \"λ\"\n", "d-2"][i % 4], data.clone()).unwrap();
    }
    drop(j);
    out.push(("api-mixed".into(), std::fs::read(&p).unwrap()));

    // Four finished deploys, compacted to the last one.
    let p = dir.path().join("compacted").join("journal.jsonl");
    let (mut j, _) = Journal::<Value>::open(&p, &OpenOptions::default()).unwrap();
    for g in 0..4 {
        let group = format!("2026112{g}T000000.000Z-{g}");
        j.append(&group, serde_json::json!({"kind": "begin", "app": "web"})).unwrap();
        j.append(&group, payloads[0].clone()).unwrap();
        j.append(&group, serde_json::json!({"kind": "end", "outcome": "deployed"})).unwrap();
    }
    let dropped = j.compact(1, |_, recs| recs.iter().any(|r| r.data["kind"] == "end")).unwrap();
    assert_eq!(dropped, 9);
    j.append("2026112T9-9", serde_json::json!({"kind": "begin"})).unwrap();
    drop(j);
    let compacted = std::fs::read(&p).unwrap();
    out.push(("api-compacted".into(), compacted.clone()));

    // Header only, and empty.
    let p = dir.path().join("header").join("journal.jsonl");
    drop(Journal::<Value>::open(&p, &OpenOptions::default()).unwrap());
    out.push(("api-header-only".into(), std::fs::read(&p).unwrap()));
    out.push(("empty".into(), Vec::new()));
    // A torn append (half of a record's line, no LF) and zeros after a crash.
    let mut torn = compacted.clone();
    let last = compacted[..compacted.len() - 1].iter().rposition(|&c| c == b'\n').map_or(0, |i| i + 1);
    torn.extend_from_slice(&compacted[last..last + (compacted.len() - last) / 2]);
    out.push(("api-torn".into(), torn));
    let mut zeros = compacted;
    zeros.extend_from_slice(&[0u8; 300]);
    out.push(("api-zeros".into(), zeros));

    let mut files: Vec<PathBuf> = std::fs::read_dir(corpus_dir()).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort_by_key(|p| (!p.file_name().unwrap().to_string_lossy().starts_with("regress-"), p.clone()));
    for f in files {
        out.push((f.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read(&f).unwrap()));
    }
    out
}

// --------------------------------------------------------- mutations

fn split_lines(b: &[u8]) -> Vec<Vec<u8>> {
    b.split_inclusive(|&c| c == b'\n').map(<[u8]>::to_vec).collect()
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Makes `line` checksum again (rebuilding a damaged checksum member when
/// a `,"crc":"` is left), optionally setting its `prev` and `seq` first.
fn fix_line(line: &mut Vec<u8>, prev: Option<u32>, seq: Option<u64>) -> Option<u32> {
    let had_nl = line.last() == Some(&b'\n');
    if had_nl {
        line.pop();
    }
    let result = (|| {
        if let Some(seq) = seq {
            let at = find(line, b"\"seq\":")? + 6;
            let end = at + line[at..].iter().position(|c| !c.is_ascii_digit()).unwrap_or(line.len() - at);
            line.splice(at..end, seq.to_string().into_bytes());
        }
        if let Some(prev) = prev {
            let at = find(line, b"\"prev\":\"")? + 8;
            if line.len() >= at + 8 {
                line.splice(at..at + 8, format!("{prev:08x}").into_bytes());
            }
        }
        let at = line.windows(CRC_OPEN.len()).rposition(|w| w == CRC_OPEN)?;
        line.truncate(at);
        let crc = crc32c(&[line, b"}"]);
        line.extend_from_slice(format!(",\"crc\":\"{crc:08x}\"}}").as_bytes());
        Some(crc)
    })();
    if had_nl {
        line.push(b'\n');
    }
    result
}

const TOKENS: &[&str] = &[
    "\n",
    "{\"v\":",
    "{\"v\":1,",
    "{\"v\":2,",
    "\"",
    "\\",
    "}",
    "{",
    ",",
    ":",
    "[",
    "]",
    "0",
    "9",
    "\u{0}",
    "\r\n",
    " ",
    "λ",
    "\u{feff}",
    "\\u0000",
    "\\ud800",
    ",\"crc\":\"00000000\"}",
    ",\"x\":1",
    "\"seq\":1,",
    "null",
];

const NUMBERS: &[&str] = &[
    "0",
    "1",
    "2",
    "-1",
    "01",
    "1.0",
    "1e2",
    "4294967295",
    "4294967296",
    "999999999",
    "1000000000",
    "18446744073709551615",
    "18446744073709551616",
    "-0",
    "1e400",
];

const TIMESTAMPS: &[&str] = &[
    "2024-02-29T12:00:00.000Z",
    "2023-02-29T12:00:00.000Z",
    "1970-01-01T00:00:00.000Z",
    "1969-12-31T23:59:59.999Z",
    "9999-12-31T23:59:59.999Z",
    "2026-11-28T24:00:00.000Z",
    "2026-11-28T23:60:00.000Z",
    "2026-11-28T23:59:60.000Z",
    "2026-13-01T00:00:00.000Z",
    "2026-00-10T00:00:00.000Z",
    "2026-11-00T00:00:00.000Z",
    "2026-11-28t15:09:57.123z",
    "2026-11-28T15:09:57Z",
    "2026-11-28T15:09:57.123+00:00",
    "\\u0032026-11-28T15:09:57.123Z",
    "2100-02-29T00:00:00.000Z",
    "2000-02-29T00:00:00.000Z",
    "+026-11-28T15:09:57.123Z",
    "２026-11-28T15:09:57.123Z",
];

const DATA: &[&str] = &[
    "null",
    "{}",
    "[]",
    "\"\\ud800\"",
    "\"\\udc00x\"",
    "\"\\u0000\"",
    "1e400",
    "-0",
    "18446744073709551616",
    "{\"a\":1,\"a\":2}",
    "{\"kind\":\"header\",\"format\":\"journal\"}",
    "{\"kind\":\"header\",\"format\":\"journal\",\"created_by\":5}",
    "{\"kind\":\"header\",\"format\":\"journal\",\"created_by\":null}",
    "{\"kind\":\"header\",\"format\":\"journal\",\"kind\":\"header\"}",
    "{\"kind\":\"header\",\"format\":\"journal\",\"compacted_dropped\":-1}",
    "{\"kind\":\"header\",\"format\":\"journal\",\"compacted_dropped\":null,\"extra\":[1]}",
    "{\"kind\":\"he\\u0061der\",\"format\":\"journal\"}",
    "{\"kind\":\"header\"}",
    "[\"header\",\"journal\"]",
    "[\"header\",\"journal\",\"x\",null]",
    "\"header\"",
];

fn nested(depth: usize) -> String {
    let mut s = "[".repeat(depth);
    s.push_str(&"]".repeat(depth));
    s
}

/// Replaces the value of member `name` in one line with `value`.
fn replace_member(line: &mut Vec<u8>, name: &str, value: &[u8]) {
    let key = format!("\"{name}\":");
    let Some(at) = find(line, key.as_bytes()).map(|i| i + key.len()) else { return };
    let end = if name == "data" {
        line.windows(CRC_OPEN.len()).rposition(|w| w == CRC_OPEN).filter(|&e| e >= at)
    } else if line.get(at) == Some(&b'"') {
        line[at + 1..].iter().position(|&c| c == b'"').map(|i| at + i + 2)
    } else {
        line[at..].iter().position(|&c| c == b',' || c == b'}').map(|i| at + i)
    };
    if let Some(end) = end {
        line.splice(at..end, value.iter().copied());
    }
}

fn mutate(rng: &mut Rng, input: &mut Vec<u8>, others: &[(String, Vec<u8>)]) {
    for _ in 0..1 + rng.below(4) {
        let len = input.len();
        let at = rng.below(len + 1);
        match rng.below(17) {
            0 if len > 0 => {
                let i = rng.below(len);
                input[i] ^= 1 << rng.below(8);
            }
            1 => {
                let bytes: Vec<u8> = (0..1 + rng.below(8)).map(|_| rng.next() as u8).collect();
                input.splice(at..at, bytes);
            }
            2 => {
                let t = rng.pick(TOKENS).as_bytes();
                input.splice(at..at, t.iter().copied());
            }
            3 if len > 0 => {
                let span = if rng.below(4) == 0 { len } else { 16.min(len) };
                let n = 1 + rng.below(span);
                let s = rng.below(len);
                input.drain(s..(s + n).min(len));
            }
            4 => input.truncate(at),
            5..=7 => {
                let mut lines = split_lines(input);
                if !lines.is_empty() {
                    let (a, b) = (rng.below(lines.len()), rng.below(lines.len()));
                    match rng.below(3) {
                        0 => {
                            let l = lines[a].clone();
                            lines.insert(b, l);
                        }
                        1 => {
                            lines.remove(a);
                        }
                        _ => lines.swap(a, b),
                    }
                    *input = lines.concat();
                }
            }
            8 => {
                let other = &rng.pick(others).1;
                let from = rng.below(other.len() + 1);
                input.truncate(at);
                input.extend_from_slice(&other[from..]);
            }
            9 => {
                let lines = split_lines(&rng.pick(others).1);
                if !lines.is_empty() {
                    let l = rng.pick(&lines).clone();
                    input.splice(at..at, l);
                }
            }
            10 => {
                let digits: Vec<usize> = (0..len).filter(|&i| input[i].is_ascii_digit()).collect();
                if !digits.is_empty() {
                    let s = *rng.pick(&digits);
                    let e = s + input[s..].iter().position(|c| !c.is_ascii_digit()).unwrap_or(len - s);
                    let n = rng.pick(NUMBERS).as_bytes();
                    input.splice(s..e, n.iter().copied());
                }
            }
            11 if len > 0 => {
                let i = rng.below(len);
                input[i] = *rng.pick(&[0, b'\n', b'"', b'\\', b'{', b'}', b'0', b'f', b'A', 0x80, 0xff, b' ']);
            }
            12 => {
                let n = 1 + rng.below(64);
                let zero = rng.below(2) == 0;
                input.extend((0..n).map(|_| if zero { 0 } else { rng.next() as u8 }));
            }
            13 | 14 => {
                let mut lines = split_lines(input);
                if !lines.is_empty() {
                    let i = if rng.below(4) == 0 { 0 } else { rng.below(lines.len()) };
                    let value = match rng.below(7) {
                        0 => ("v", rng.pick(NUMBERS).to_string()),
                        1 => ("seq", rng.pick(NUMBERS).to_string()),
                        2 => ("ts", format!("\"{}\"", rng.pick(TIMESTAMPS))),
                        3 => ("prev", rng.pick(&["\"00000000\"", "\"FFFFFFFF\"", "\"0000000\"", "1"]).to_string()),
                        4 => ("group", rng.pick(&["\"\"", "\"\\u0041\"", "1", "null", "\"\\\"\""]).to_string()),
                        5 => ("data", nested(*rng.pick(&[127, 128, 129, 200, 3000]))),
                        _ => ("data", rng.pick(DATA).to_string()),
                    };
                    replace_member(&mut lines[i], value.0, value.1.as_bytes());
                    *input = lines.concat();
                }
            }
            15 => {
                let nls: Vec<usize> = (0..len).filter(|&i| input[i] == b'\n').collect();
                if !nls.is_empty() {
                    let i = *rng.pick(&nls);
                    if rng.below(2) == 0 {
                        input.remove(i);
                    } else {
                        input[i] = b' ';
                    }
                }
            }
            _ if len > 0 => {
                let s = rng.below(len);
                let e = (s + 1 + rng.below(64)).min(len);
                let piece = input[s..e].to_vec();
                input.splice(at..at, piece);
            }
            _ => {}
        }
    }
    // Get past the checksum, and often past the chain too.
    match rng.below(6) {
        0 | 1 => {}
        2 => {
            let mut lines = split_lines(input);
            if !lines.is_empty() {
                let i = rng.below(lines.len());
                fix_line(&mut lines[i], None, None);
                *input = lines.concat();
            }
        }
        3 => {
            let mut lines = split_lines(input);
            lines.iter_mut().for_each(|l| {
                fix_line(l, None, None);
            });
            *input = lines.concat();
        }
        _ => {
            let renumber = rng.below(2) == 0;
            let mut lines = split_lines(input);
            let mut prev = 0;
            for (i, l) in lines.iter_mut().enumerate() {
                if let Some(crc) = fix_line(l, Some(prev), renumber.then_some(i as u64)) {
                    prev = crc;
                }
            }
            *input = lines.concat();
        }
    }
}

// ------------------------------------------------------------ driver

fn env_u64(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    let v = v.trim();
    let parsed = match v.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => v.parse(),
    };
    Some(parsed.unwrap_or_else(|_| panic!("{name}={v} is not a number")))
}

fn escaped(b: &[u8]) -> String {
    let shown = &b[..b.len().min(4096)];
    let more = if b.len() > shown.len() { format!("… ({} bytes in all)", b.len()) } else { String::new() };
    format!("{}{more}", shown.escape_ascii())
}

/// Saves a failing input under target/tmp/journal-fuzz-failures/ and
/// returns where.
fn save_failure(seed: u64, label: &str, input: &[u8]) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("journal-fuzz-failures");
    std::fs::create_dir_all(&dir).unwrap();
    let saved = dir.join(format!("seed-{seed:x}-{}.jsonl", label.replace([' ', '/'], "-")));
    std::fs::write(&saved, input).unwrap();
    saved
}

#[test]
fn reader_classifies_every_input_as_the_spec_does() {
    let seed = env_u64("JOURNAL_FUZZ_SEED").unwrap_or(DEFAULT_SEED);
    let iters = env_u64("JOURNAL_FUZZ_ITERS").unwrap_or(DEFAULT_ITERS);
    let secs = env_u64("JOURNAL_FUZZ_SECS");
    let deadline = secs.map(|s| Instant::now() + Duration::from_secs(s));
    println!(
        "journal fuzz: seed {seed:#x}, at most {iters} iterations{}",
        match secs {
            Some(s) => format!(" or {s} s"),
            None => String::new(),
        }
    );
    let work = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("journal-fuzz-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).unwrap();

    let seeds = seeds();
    let mut classes: BTreeMap<&'static str, u64> = BTreeMap::new();
    // With JOURNAL_FUZZ_KEEP_GOING set, a failure is saved and counted and
    // the run goes on (for long runs); the test still fails at the end.
    let keep_going = std::env::var_os("JOURNAL_FUZZ_KEEP_GOING").is_some();
    let mut failures: BTreeMap<String, u64> = BTreeMap::new();
    let run = |classes: &mut BTreeMap<&'static str, u64>,
               failures: &mut BTreeMap<String, u64>,
               label: &str,
               input: &[u8],
               with_open: bool| {
        let why = match catch_unwind(AssertUnwindSafe(|| check(input, &work, with_open))) {
            Ok(Ok((class, payload_refused))) => {
                *classes.entry(class.name()).or_default() += 1;
                if payload_refused {
                    *classes.entry("verify-ok-read-refused-payload").or_default() += 1;
                }
                return;
            }
            Ok(Err(why)) => why,
            Err(panic) => {
                let msg = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                format!("panic: {msg}")
            }
        };
        let kind: String = why.chars().take_while(|c| !c.is_ascii_digit() && *c != '{').collect();
        let seen = failures.entry(kind).or_default();
        *seen += 1;
        if *seen <= 3 || !keep_going {
            let saved = save_failure(seed, label, input);
            let msg = format!("seed {seed:#x}, {label}: {why}\ninput saved to {}", saved.display());
            if !keep_going {
                panic!("journal fuzz failure, {msg}\ninput: b\"{}\"", escaped(input));
            }
            println!("journal fuzz FAILURE, {msg}");
        }
    };
    let start = Instant::now();
    for (name, bytes) in &seeds {
        let class = model(bytes, true).0;
        if !name.starts_with("regress-") {
            assert!(matches!(class, Class::Clean { .. } | Class::Torn { .. }), "seed {name} is {class:?}");
        }
        run(&mut classes, &mut failures, &format!("seed input {name}"), bytes, true);
    }
    let mut rng = Rng(seed);
    let mut done = 0u64;
    while done < iters && deadline.is_none_or(|d| Instant::now() < d) {
        let mut input = rng.pick(&seeds).1.clone();
        mutate(&mut rng, &mut input, &seeds);
        let with_open = rng.below(16) == 0;
        run(&mut classes, &mut failures, &format!("iteration {done}"), &input, with_open);
        done += 1;
        if done % 100_000 == 0 {
            println!(
                "journal fuzz: {done} executions, {:.0} s, {classes:?}, failures {failures:?}",
                start.elapsed().as_secs_f64()
            );
        }
    }
    let elapsed = start.elapsed();
    println!(
        "journal fuzz: seed {seed:#x}: {done} mutated inputs + {} seeds in {:.1} s ({:.0}/s); classes {classes:?}",
        seeds.len(),
        elapsed.as_secs_f64(),
        done as f64 / elapsed.as_secs_f64(),
    );
    let _ = std::fs::remove_dir_all(&work);
    assert!(failures.is_empty(), "journal fuzz failures by kind: {failures:#?}");
}
