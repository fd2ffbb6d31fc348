//! Pickup codes and a store's local day.
//!
//! A pickup code (`A-042`) is what a customer hears called out and reads on
//! the pickup board: short, per store and per local day of the store's time
//! zone, and numbered in the order the processors confirm orders. The n-th
//! confirmed order of a store's day gets code n: `A-001` to `A-999`, then
//! `B-001`, ... `Z-999` (25 974 a day, far beyond any shop's rush; after
//! that the letters wrap and codes repeat within the day, which a board
//! tolerates better than a code that no longer fits on it).
//!
//! The number comes from a per-(store, day) counter the store bumps inside
//! the very transaction that inserts the confirmed order (`apply_batch`), so
//! a replayed batch, which inserts nothing, burns no number, and two
//! partitions confirming orders of one store never draw the same one. A
//! store's day is the date of the order's `placed_at` in the store's time
//! zone (`local_day`), so an order and its code belong to the same day as
//! the manager's "today" and the day's figures.
//!
//! Time zones come from the IANA database compiled into the binary (jiff's
//! `tzdb-bundle-always`): a box without `/usr/share/zoneinfo` gets the same
//! days as any other. An unknown zone name counts as UTC rather than
//! refusing an order that is already durable.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Codes per letter: `A-001` ... `A-999`.
pub const PER_LETTER: u32 = 999;
const LETTERS: u32 = 26;

/// A short per-store, per-day pickup code such as `A-042`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PickupCode(String);

impl PickupCode {
    /// The code of the `n`-th (1-based) confirmed order of a store's day.
    /// `n = 0` is treated as 1: counters start at 1.
    pub fn nth(n: u32) -> Self {
        let i = n.max(1) - 1;
        let letter = char::from(b'A' + ((i / PER_LETTER) % LETTERS) as u8);
        Self(format!("{letter}-{:03}", i % PER_LETTER + 1))
    }

    /// A code as typed by staff: one letter, `-`, three digits `001`..`999`;
    /// the letter may be lower case.
    pub fn parse(s: &str) -> Option<Self> {
        let b = s.as_bytes();
        if b.len() != 5 || !b[0].is_ascii_alphabetic() || b[1] != b'-' || !b[2..].iter().all(u8::is_ascii_digit) {
            return None;
        }
        if &s[2..] == "000" {
            return None;
        }
        Some(Self(format!("{}-{}", char::from(b[0].to_ascii_uppercase()), &s[2..])))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Display for PickupCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn zone(time_zone: &str) -> jiff::tz::TimeZone {
    jiff::tz::TimeZone::get(time_zone).unwrap_or(jiff::tz::TimeZone::UTC)
}

/// The calendar date (`YYYY-MM-DD`) of the instant `at_ms` (epoch ms) in
/// `time_zone` (an IANA name; unknown names count as UTC).
pub fn local_day(time_zone: &str, at_ms: i64) -> String {
    let ts = jiff::Timestamp::from_millisecond(at_ms).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    ts.to_zoned(zone(time_zone)).date().to_string()
}

/// The instants `[start, end)` (epoch ms) of the local date `day`
/// (`YYYY-MM-DD`) in `time_zone`: 23, 24 or 25 hours around a DST change.
/// `None` if `day` is not a date.
pub fn day_bounds(time_zone: &str, day: &str) -> Option<(i64, i64)> {
    let date: jiff::civil::Date = day.parse().ok()?;
    let tz = zone(time_zone);
    let start = date.to_zoned(tz.clone()).ok()?;
    let end = date.tomorrow().ok()?.to_zoned(tz).ok()?;
    Some((start.timestamp().as_millisecond(), end.timestamp().as_millisecond()))
}

/// The local hour (0..=23) of `at_ms` in `time_zone`.
pub fn local_hour(time_zone: &str, at_ms: i64) -> u8 {
    let ts = jiff::Timestamp::from_millisecond(at_ms).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    ts.to_zoned(zone(time_zone)).hour() as u8
}

/// The longest first name on the pickup board, in characters.
pub const MAX_NAME: usize = 24;

/// A first name for the pickup board as the client sent it, trimmed: 1 to
/// [`MAX_NAME`] characters and no control characters, or why not.
pub fn clean_name(raw: &str) -> Result<String, &'static str> {
    let name = raw.trim();
    let n = name.chars().count();
    if n == 0 || n > MAX_NAME {
        return Err("name must be 1 to 24 characters");
    }
    if name.chars().any(char::is_control) {
        return Err("name must not contain control characters");
    }
    Ok(name.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_count_through_the_letters() {
        let c = |n| PickupCode::nth(n).into_string();
        assert_eq!(c(1), "A-001");
        assert_eq!(c(42), "A-042");
        assert_eq!(c(999), "A-999");
        assert_eq!(c(1000), "B-001");
        assert_eq!(c(1998), "B-999");
        assert_eq!(c(26 * 999), "Z-999");
        assert_eq!(c(26 * 999 + 1), "A-001", "the letters wrap");
        assert_eq!(c(0), "A-001");
    }

    #[test]
    fn typed_codes_parse_to_their_canonical_form() {
        assert_eq!(PickupCode::parse("a-042"), Some(PickupCode::nth(42)));
        assert_eq!(PickupCode::parse("B-001"), Some(PickupCode::nth(1000)));
        for bad in ["", "A42", "A-42", "A-0042", "A-000", "1-001", "A_001", "AA-01"] {
            assert_eq!(PickupCode::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_day_is_the_store_s_local_day() {
        // 2026-03-01T23:30:00Z: still the 1st in London, already the 2nd in Tokyo,
        // the 1st in New York (18:30).
        let at = 1_772_407_800_000;
        assert_eq!(local_day("Europe/London", at), "2026-03-01");
        assert_eq!(local_day("Asia/Tokyo", at), "2026-03-02");
        assert_eq!(local_day("America/New_York", at), "2026-03-01");
        assert_eq!(local_day("Not/AZone", at), "2026-03-01", "unknown zones count as UTC");
        assert_eq!(local_hour("America/New_York", at), 18);
    }

    #[test]
    fn day_bounds_follow_daylight_saving() {
        // London springs forward on 2026-03-29: a 23-hour day.
        let (s, e) = day_bounds("Europe/London", "2026-03-29").unwrap();
        assert_eq!(e - s, 23 * 3_600_000);
        assert_eq!(local_day("Europe/London", s), "2026-03-29");
        assert_eq!(local_day("Europe/London", s - 1), "2026-03-28");
        assert_eq!(local_day("Europe/London", e), "2026-03-30");
        let (s, e) = day_bounds("UTC", "2026-01-02").unwrap();
        assert_eq!((s, e - s), (1_767_312_000_000, 86_400_000));
        assert_eq!(day_bounds("UTC", "2026-13-01"), None);
    }

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(clean_name("  Ada ").unwrap(), "Ada");
        assert_eq!(clean_name("Zoë").unwrap(), "Zoë");
        assert!(clean_name("   ").is_err());
        assert!(clean_name(&"x".repeat(25)).is_err());
        assert!(clean_name(&"é".repeat(24)).is_ok());
        assert!(clean_name("a\nb").is_err());
    }
}
