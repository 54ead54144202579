//! Format identity in one place: the line layout, the checksum rule, the
//! header, and the walk that classifies a file as clean, torn or corrupt.
//! `docs/journal-format.md` specifies the same rules in prose; a change
//! here is a change there.

use std::borrow::Cow;
use std::io::Write as _;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::{time, Tail, FORMAT_VERSION};

/// Every line of every version starts with these bytes, then the version
/// in decimal and a comma; this is what lets an old reader recognise a
/// newer record and refuse it instead of calling it damage.
pub(crate) const LINE_PREFIX: &[u8] = b"{\"v\":";

/// The checksum member that ends every line, between the record's last
/// member and the closing brace: `,"crc":"` + 8 lowercase hex digits + `"`.
const CRC_MEMBER_OPEN: &[u8] = b",\"crc\":\"";

/// Bytes from the start of the checksum member to the end of the line
/// (newline excluded): `,"crc":"xxxxxxxx"}`.
const CRC_TAIL_LEN: usize = CRC_MEMBER_OPEN.len() + 8 + 2;

/// `prev` of the header: there is no earlier record.
pub(crate) const NO_PREV: u32 = 0;

/// Checksum of one line as stored: CRC-32C (Castagnoli) over the line with
/// its `,"crc":"xxxxxxxx"` member removed, i.e. over `head` followed by
/// the closing `}`. Defined on bytes, not on parsed JSON, so any reader
/// can check it before trusting a single field.
pub(crate) fn line_crc(head: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(head), b"}")
}

/// The header's payload: identifies the file and, after a compaction, says
/// how much history was dropped.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Header {
    /// Always `"header"`.
    pub kind: String,
    /// Always `"journal"`.
    pub format: String,
    /// The writing library and its version, for post-mortems.
    #[serde(default)]
    pub created_by: String,
    /// Records dropped by the compaction that wrote this header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compacted_dropped: Option<u64>,
}

impl Header {
    pub(crate) fn new(compacted_dropped: Option<u64>) -> Header {
        Header {
            kind: "header".into(),
            format: "journal".into(),
            created_by: concat!("journal/", env!("CARGO_PKG_VERSION")).into(),
            compacted_dropped,
        }
    }
}

/// Appends one complete line (newline included) to `buf`; returns its
/// checksum, which the next record carries as `prev`.
pub(crate) fn encode_line<D: Serialize + ?Sized>(
    buf: &mut Vec<u8>,
    seq: u64,
    ts_ms: u64,
    prev: u32,
    group: &str,
    data: &D,
) -> Result<u32, serde_json::Error> {
    let start = buf.len();
    buf.extend_from_slice(LINE_PREFIX);
    // Writes into a Vec cannot fail.
    let _ = write!(buf, "{FORMAT_VERSION},\"seq\":{seq},\"ts\":\"");
    buf.extend_from_slice(&time::format_ms(ts_ms));
    let _ = write!(buf, "\",\"prev\":\"{prev:08x}\",\"group\":");
    let encoded = serde_json::to_writer(&mut *buf, group).and_then(|()| {
        buf.extend_from_slice(b",\"data\":");
        serde_json::to_writer(&mut *buf, data)
    });
    if let Err(e) = encoded {
        buf.truncate(start);
        return Err(e);
    }
    let crc = line_crc(&buf[start..]);
    buf.extend_from_slice(CRC_MEMBER_OPEN);
    let _ = writeln!(buf, "{crc:08x}\"}}");
    Ok(crc)
}

/// Checks the frame and checksum of one line (newline excluded) and
/// returns the checksum. Nothing else in a line is trusted before this.
pub(crate) fn check_line(line: &[u8]) -> Result<u32, String> {
    let n = line.len();
    if n < LINE_PREFIX.len() + CRC_TAIL_LEN || !line.starts_with(LINE_PREFIX) {
        return Err("not a journal record".into());
    }
    let tail = &line[n - CRC_TAIL_LEN..];
    if !tail.starts_with(CRC_MEMBER_OPEN) || !tail.ends_with(b"\"}") {
        return Err("no checksum at the end of the line".into());
    }
    let stored = parse_hex8(&tail[CRC_MEMBER_OPEN.len()..CRC_MEMBER_OPEN.len() + 8])
        .ok_or("checksum is not 8 lowercase hex digits")?;
    let computed = line_crc(&line[..n - CRC_TAIL_LEN]);
    if stored != computed {
        return Err(format!("checksum mismatch (stored {stored:08x}, computed {computed:08x})"));
    }
    Ok(stored)
}

/// The version number after [`LINE_PREFIX`], read from the bytes so that a
/// line of any version yields it.
fn line_version(line: &[u8]) -> Option<u32> {
    let rest = &line[LINE_PREFIX.len()..];
    let end = rest.iter().position(|&c| c == b',')?;
    let digits = &rest[..end];
    if digits.is_empty() || digits.len() > 9 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

fn parse_hex8(b: &[u8]) -> Option<u32> {
    if b.len() != 8 || !b.iter().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    u32::from_str_radix(std::str::from_utf8(b).ok()?, 16).ok()
}

/// A version-1 line, exactly its members.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LineV1<'a> {
    #[allow(dead_code)]
    v: u32,
    seq: u64,
    ts: &'a str,
    prev: &'a str,
    #[serde(borrow)]
    group: Cow<'a, str>,
    #[serde(borrow)]
    data: &'a RawValue,
    #[allow(dead_code)]
    crc: &'a str,
}

/// One valid record as the walk hands it over, payload still undecoded.
#[derive(Debug)]
pub(crate) struct Frame<'a> {
    pub seq: u64,
    pub ts_ms: u64,
    pub group: Cow<'a, str>,
    pub data: &'a RawValue,
    pub offset: u64,
}

/// What a walk that did not fail found.
#[derive(Debug)]
pub(crate) struct Walked {
    /// Valid records, header included.
    pub records: u64,
    /// Bytes up to the end of the last valid record.
    pub valid_len: u64,
    /// Checksum of the last valid record ([`NO_PREV`] when there is none).
    pub last_crc: u32,
    pub tail: Tail,
}

/// Why a walk refused the file; the caller adds the path.
#[derive(Debug)]
pub(crate) enum WalkError {
    Corrupt { offset: u64, line: u64, reason: String },
    Newer { found: u32 },
}

impl WalkError {
    pub(crate) fn at(self, path: &std::path::Path) -> crate::ReadError {
        match self {
            WalkError::Corrupt { offset, line, reason } => {
                crate::ReadError::Corrupt { path: path.to_path_buf(), offset, line, reason }
            }
            WalkError::Newer { found } => crate::ReadError::NewerVersion { path: path.to_path_buf(), found },
        }
    }
}

/// Walks `bytes` from the start, handing every valid record after the
/// header to `each` (whose error marks that record corrupt), and stops at
/// the first line that is not a valid next record.
///
/// A line whose checksum holds is never a torn append (a torn write leaves
/// a prefix or garbage, which does not checksum), so any other fault in it
/// — a newer version, a broken chain, a sequence gap, a bad timestamp, a
/// payload `each` rejects — is final. A line whose checksum fails is a torn
/// tail only if it is the last line (no LF before the file's last byte) and
/// no checksummed record starts anywhere after it.
pub(crate) fn walk<'a>(
    bytes: &'a [u8],
    mut each: impl FnMut(Frame<'a>) -> Result<(), String>,
) -> Result<Walked, WalkError> {
    let mut pos = 0usize;
    let mut expected_seq = 0u64;
    let mut prev = NO_PREV;
    while pos < bytes.len() {
        let line_no = expected_seq + 1;
        let rest = &bytes[pos..];
        let Some(nl) = rest.iter().position(|&c| c == b'\n') else {
            return torn_or_corrupt(bytes, pos, expected_seq, prev, "last line has no newline".into());
        };
        let line = &rest[..nl];
        let crc = match check_line(line) {
            Ok(crc) => crc,
            Err(reason) => return torn_or_corrupt(bytes, pos, expected_seq, prev, reason),
        };
        let corrupt = |reason: String| WalkError::Corrupt { offset: pos as u64, line: line_no, reason };
        let version = line_version(line).ok_or_else(|| corrupt("unreadable format version".into()))?;
        if version > FORMAT_VERSION {
            return Err(WalkError::Newer { found: version });
        }
        if version == 0 {
            return Err(corrupt("format version 0 does not exist".into()));
        }
        let rec: LineV1<'a> = serde_json::from_slice(line)
            .map_err(|e| corrupt(format!("checksum holds but the line is not a record: {e}")))?;
        if rec.seq != expected_seq {
            return Err(corrupt(format!("sequence gap: expected seq {expected_seq}, found {}", rec.seq)));
        }
        if parse_hex8(rec.prev.as_bytes()) != Some(prev) {
            return Err(corrupt(format!(
                "chain broken: prev is {:?}, previous record's checksum is {prev:08x}",
                rec.prev
            )));
        }
        let ts_ms = time::parse_ms(rec.ts).ok_or_else(|| corrupt(format!("bad timestamp {:?}", rec.ts)))?;
        if expected_seq == 0 {
            // serde would also read a struct from a JSON array: the spec
            // says the header's data is an object.
            let is_object = rec.data.get().trim_start().starts_with('{');
            let header: Result<Header, _> = serde_json::from_str(rec.data.get());
            match header {
                Ok(h) if is_object && h.kind == "header" && h.format == "journal" && rec.group.is_empty() => {}
                _ => return Err(corrupt("first record is not a journal header".into())),
            }
        } else {
            each(Frame { seq: rec.seq, ts_ms, group: rec.group, data: rec.data, offset: pos as u64 })
                .map_err(corrupt)?;
        }
        prev = crc;
        expected_seq += 1;
        pos += nl + 1;
    }
    Ok(Walked { records: expected_seq, valid_len: pos as u64, last_crc: prev, tail: Tail::Clean })
}

fn torn_or_corrupt(bytes: &[u8], pos: usize, records: u64, last_crc: u32, reason: String) -> Result<Walked, WalkError> {
    if let Some(later) = valid_record_after(bytes, pos) {
        return Err(WalkError::Corrupt {
            offset: pos as u64,
            line: records + 1,
            reason: format!("{reason}; a valid record follows at byte {later}"),
        });
    }
    // A crash tears at most the one line being appended, and that line's
    // only LF is its last byte: an LF before the end means two or more
    // invalid lines, damage a torn append cannot leave. Cutting them could
    // drop a damaged `commit` and turn a committed deploy into a rollback.
    let tail = &bytes[pos..];
    if let Some(lf) = tail[..tail.len() - 1].iter().position(|&c| c == b'\n') {
        return Err(WalkError::Corrupt {
            offset: pos as u64,
            line: records + 1,
            reason: format!("{reason}; another line follows at byte {}", pos + lf + 1),
        });
    }
    Ok(Walked {
        records,
        valid_len: pos as u64,
        last_crc,
        tail: Tail::Torn { offset: pos as u64, line: records + 1, len: (bytes.len() - pos) as u64 },
    })
}

/// Offset of the first record after the invalid line at `bad` that
/// checksums and parses as JSON. Candidates start at any `{"v":` after
/// `bad`, not only at line starts: a lost newline glues the next record to
/// the damaged line, and that record must still count.
fn valid_record_after(bytes: &[u8], bad: usize) -> Option<usize> {
    let mut seg_start = bad + 1;
    while seg_start < bytes.len() {
        let nl = seg_start + bytes[seg_start..].iter().position(|&c| c == b'\n')?;
        let seg = &bytes[seg_start..nl];
        let mut from = 0;
        while let Some(i) = find(&seg[from..], LINE_PREFIX) {
            let start = from + i;
            let cand = &seg[start..];
            if check_line(cand).is_ok() && serde_json::from_slice::<serde::de::IgnoredAny>(cand).is_ok() {
                return Some(seg_start + start);
            }
            from = start + 1;
        }
        seg_start = nl + 1;
    }
    None
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Bytes of a whole journal: a fresh header then `records`, renumbered
/// from 1 and chained. Used by compaction (with raw payloads) and by tools
/// that need a valid journal without a thousand fsyncs.
pub(crate) fn encode_journal<'r, D: Serialize + ?Sized + 'r>(
    header_ts_ms: u64,
    header: &Header,
    records: impl IntoIterator<Item = (&'r str, u64, &'r D)>,
) -> Result<(Vec<u8>, u64, u32), serde_json::Error> {
    let mut buf = Vec::new();
    let mut prev = encode_line(&mut buf, 0, header_ts_ms, NO_PREV, "", header)?;
    let mut seq = 1;
    for (group, ts_ms, data) in records {
        prev = encode_line(&mut buf, seq, ts_ms, prev, group, data)?;
        seq += 1;
    }
    Ok((buf, seq, prev))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn journal_of(payloads: &[&str]) -> Vec<u8> {
        let values: Vec<serde_json::Value> = payloads.iter().map(|p| serde_json::json!(p)).collect();
        encode_journal(1000, &Header::new(None), values.iter().map(|v| ("g", 2000, v))).unwrap().0
    }

    #[test]
    fn line_matches_documented_layout() {
        let mut buf = Vec::new();
        let crc =
            encode_line(&mut buf, 3, 1_795_878_597_123, 0x1a2b3c4d, "d-1", &serde_json::json!({"k":"a\"b\n"})).unwrap();
        let line = std::str::from_utf8(&buf).unwrap();
        let head =
            r#"{"v":1,"seq":3,"ts":"2026-11-28T15:09:57.123Z","prev":"1a2b3c4d","group":"d-1","data":{"k":"a\"b\n"}"#;
        assert_eq!(line, format!("{head},\"crc\":\"{crc:08x}\"}}\n"));
        assert_eq!(crc, crc32c::crc32c(format!("{head}}}").as_bytes()));
        assert_eq!(buf.iter().filter(|&&c| c == b'\n').count(), 1);
    }

    /// The worked example in docs/journal-format.md, whose checksums were
    /// computed by an independent bit-by-bit CRC-32C implementation.
    #[test]
    fn documented_example_lines() {
        let mut buf = Vec::new();
        let h = encode_line(&mut buf, 0, 1_795_878_597_123, NO_PREV, "", &Header::new(None)).unwrap();
        let data = serde_json::json!({"kind": "intent", "step": "stop-old"});
        encode_line(&mut buf, 1, 1_795_878_598_004, h, "d-7f3a", &data).unwrap();
        let expected = concat!(
            r#"{"v":1,"seq":0,"ts":"2026-11-28T15:09:57.123Z","prev":"00000000","group":"","#,
            r#""data":{"kind":"header","format":"journal","created_by":"journal/0.1.0"},"crc":"85b2b46e"}"#,
            "\n",
            r#"{"v":1,"seq":1,"ts":"2026-11-28T15:09:58.004Z","prev":"85b2b46e","group":"d-7f3a","#,
            r#""data":{"kind":"intent","step":"stop-old"},"crc":"f738afc4"}"#,
            "\n",
        );
        assert_eq!(std::str::from_utf8(&buf).unwrap(), expected);
        assert_eq!(crc32c::crc32c(b"123456789"), 0xe306_9283);
    }

    #[test]
    fn clean_walk_counts_header() {
        let bytes = journal_of(&["a", "b"]);
        let mut seen = Vec::new();
        let w = walk(&bytes, |f| {
            seen.push((f.seq, f.data.get().to_string()));
            Ok(())
        })
        .unwrap();
        assert_eq!(w.records, 3);
        assert_eq!(w.valid_len, bytes.len() as u64);
        assert_eq!(w.tail, Tail::Clean);
        assert_eq!(seen, vec![(1, "\"a\"".to_string()), (2, "\"b\"".to_string())]);
    }

    #[test]
    fn empty_file_is_clean_and_empty() {
        let w = walk(b"", |_| Ok(())).unwrap();
        assert_eq!((w.records, w.valid_len, w.tail), (0, 0, Tail::Clean));
    }

    #[test]
    fn duplicated_last_line_is_corrupt_not_torn() {
        let mut bytes = journal_of(&["a", "b"]);
        let last_start = bytes[..bytes.len() - 1].iter().rposition(|&c| c == b'\n').unwrap() + 1;
        let last = bytes[last_start..].to_vec();
        bytes.extend_from_slice(&last);
        match walk(&bytes, |_| Ok(())) {
            Err(WalkError::Corrupt { offset, line, reason }) => {
                assert_eq!(offset as usize, bytes.len() - last.len());
                assert_eq!(line, 4);
                assert!(reason.contains("sequence gap"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn torn_prefix_glued_to_a_later_record_is_corrupt() {
        let bytes = journal_of(&["a", "b"]);
        let last_start = bytes[..bytes.len() - 1].iter().rposition(|&c| c == b'\n').unwrap() + 1;
        let mut glued = bytes[..last_start].to_vec();
        glued.extend_from_slice(&bytes[last_start..last_start + 10]);
        glued.extend_from_slice(&bytes[last_start..]);
        assert!(matches!(
            walk(&glued, |_| Ok(())),
            Err(WalkError::Corrupt { offset, .. }) if offset as usize == last_start
        ));
    }

    #[test]
    fn payload_rejection_is_corruption_at_that_record() {
        let bytes = journal_of(&["a", "b"]);
        let second = bytes.iter().position(|&c| c == b'\n').unwrap() + 1;
        let err = walk(&bytes, |f| if f.seq == 1 { Err("nope".into()) } else { Ok(()) }).unwrap_err();
        assert!(matches!(err, WalkError::Corrupt { offset, line: 2, .. } if offset as usize == second));
    }

    proptest! {
        #[test]
        fn any_group_and_string_round_trip(group in ".*", s in any::<String>(), seq in 1u64..u64::MAX, prev in any::<u32>()) {
            let mut buf = Vec::new();
            let crc = encode_line(&mut buf, seq, 5, prev, &group, &s).unwrap();
            let line = &buf[..buf.len() - 1];
            prop_assert_eq!(check_line(line), Ok(crc));
            let rec: LineV1 = serde_json::from_slice(line).unwrap();
            prop_assert_eq!(rec.group.as_ref(), group.as_str());
            prop_assert_eq!(serde_json::from_str::<String>(rec.data.get()).unwrap(), s);
            prop_assert_eq!(rec.seq, seq);
        }
    }
}
