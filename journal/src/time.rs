//! Wall-clock timestamps as the journal writes them: RFC 3339, UTC, with
//! milliseconds, so a person reading the file with `jq` or `less` sees a date
//! and a program gets exact milliseconds back. Written by hand (Howard
//! Hinnant's civil-date algorithms) to keep the crate free of a date library.

use std::time::{SystemTime, UNIX_EPOCH};

/// Length of every timestamp this module writes: `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub(crate) const TS_LEN: usize = 24;

/// Last millisecond a four-digit year can express (9999-12-31T23:59:59.999Z).
pub(crate) const MAX_MS: u64 = 253_402_300_799_999;

const MS_PER_DAY: u64 = 86_400_000;

/// Milliseconds since the Unix epoch; a clock set before 1970 reads as 0
/// rather than failing an append.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(MAX_MS))
        .unwrap_or(0)
        .min(MAX_MS)
}

/// Formats `ms` (clamped to [`MAX_MS`]) as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub(crate) fn format_ms(ms: u64) -> [u8; TS_LEN] {
    let ms = ms.min(MAX_MS);
    let days = ms / MS_PER_DAY;
    let rem = ms % MS_PER_DAY;
    let (y, m, d) = civil_from_days(days as i64);
    let (hh, mm, ss, milli) = (rem / 3_600_000, rem / 60_000 % 60, rem / 1000 % 60, rem % 1000);
    let mut out = *b"0000-00-00T00:00:00.000Z";
    put(&mut out[0..4], y as u64);
    put(&mut out[5..7], u64::from(m));
    put(&mut out[8..10], u64::from(d));
    put(&mut out[11..13], hh);
    put(&mut out[14..16], mm);
    put(&mut out[17..19], ss);
    put(&mut out[20..23], milli);
    out
}

/// Parses exactly the form [`format_ms`] writes; anything else (other
/// offsets, missing milliseconds, impossible dates) is `None`, because a
/// record whose checksum is valid was written by this format and nothing
/// else.
pub(crate) fn parse_ms(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    if b.len() != TS_LEN {
        return None;
    }
    for (i, want) in [(4, b'-'), (7, b'-'), (10, b'T'), (13, b':'), (16, b':'), (19, b'.'), (23, b'Z')] {
        if b[i] != want {
            return None;
        }
    }
    let y = get(&b[0..4])?;
    let m = get(&b[5..7])?;
    let d = get(&b[8..10])?;
    let (hh, mm, ss, milli) = (get(&b[11..13])?, get(&b[14..16])?, get(&b[17..19])?, get(&b[20..23])?);
    if y < 1970 || !(1..=12).contains(&m) || d < 1 || d > days_in_month(y, m) || hh > 23 || mm > 59 || ss > 59 {
        return None;
    }
    let days = days_from_civil(y as i64, m as u32, d as u32);
    Some(days as u64 * MS_PER_DAY + hh * 3_600_000 + mm * 60_000 + ss * 1000 + milli)
}

fn put(out: &mut [u8], mut v: u64) {
    for slot in out.iter_mut().rev() {
        *slot = b'0' + (v % 10) as u8;
        v /= 10;
    }
}

fn get(b: &[u8]) -> Option<u64> {
    b.iter().try_fold(0u64, |acc, c| c.is_ascii_digit().then(|| acc * 10 + u64::from(c - b'0')))
}

fn days_in_month(y: u64, m: u64) -> u64 {
    match m {
        2 if y % 4 == 0 && (y % 100 != 0 || y % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian
/// calendar; eras of 400 years make the leap rules a table lookup.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// The inverse of [`civil_from_days`].
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = i64::from(if m > 2 { m - 3 } else { m + 9 });
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn fmt(ms: u64) -> String {
        String::from_utf8(format_ms(ms).to_vec()).unwrap()
    }

    #[test]
    fn known_instants() {
        assert_eq!(fmt(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(fmt(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(fmt(1_795_878_597_123), "2026-11-28T15:09:57.123Z");
        assert_eq!(fmt(4_107_542_399_999), "2100-02-28T23:59:59.999Z");
        assert_eq!(fmt(MAX_MS), "9999-12-31T23:59:59.999Z");
        assert_eq!(fmt(u64::MAX), "9999-12-31T23:59:59.999Z");
    }

    #[test]
    fn rejects_what_it_never_writes() {
        for bad in [
            "2026-11-28T15:09:57Z",
            "2026-11-28T15:09:57.123+00:00",
            "2026-02-29T00:00:00.000Z",
            "2100-02-29T00:00:00.000Z",
            "2026-13-01T00:00:00.000Z",
            "2026-11-28 15:09:57.123Z",
            "1969-12-31T23:59:59.999Z",
            "2026-11-28T24:00:00.000Z",
        ] {
            assert_eq!(parse_ms(bad), None, "{bad}");
        }
        assert_eq!(parse_ms("2000-02-29T00:00:00.000Z"), Some(951_782_400_000));
    }

    proptest! {
        #[test]
        fn round_trips(ms in 0..=MAX_MS) {
            let s = fmt(ms);
            prop_assert_eq!(parse_ms(&s), Some(ms));
        }
    }
}
