//! Calendar days and timestamps, without a clock: callers pass the time in.

use std::fmt;

/// Days since 1970-01-01 (proleptic Gregorian, UTC).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Day(pub i32);

impl Day {
    pub const MIN: Day = Day(i32::MIN);
    pub const MAX: Day = Day(i32::MAX);

    /// From a civil date (Howard Hinnant's `days_from_civil`).
    pub fn from_ymd(y: i32, m: u32, d: u32) -> Day {
        let y = if m <= 2 { y - 1 } else { y };
        let era = if y >= 0 { y } else { y - 399 } / 400;
        let yoe = y - era * 400;
        let m = m as i32;
        let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i32 - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        Day(era * 146_097 + doe - 719_468)
    }

    /// The civil date of this day (`civil_from_days`).
    pub fn ymd(self) -> (i32, u32, u32) {
        let z = self.0 + 719_468;
        let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
        let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
        let y = yoe + era * 400 + i32::from(m <= 2);
        (y, m, d)
    }

    /// The UTC day containing a Unix time in seconds.
    pub fn from_unix(secs: i64) -> Day {
        Day(secs.div_euclid(86_400) as i32)
    }

    /// Parses `YYYY-MM-DD`.
    pub fn parse(s: &str) -> Option<Day> {
        let mut it = s.splitn(3, '-');
        let y: i32 = it.next()?.parse().ok()?;
        let m: u32 = it.next()?.parse().ok()?;
        let d: u32 = it.next()?.parse().ok()?;
        if s.len() != 10 || !(1..=12).contains(&m) || !(1..=31).contains(&d) {
            return None;
        }
        let day = Day::from_ymd(y, m, d);
        (day.ymd() == (y, m, d)).then_some(day)
    }
}

impl fmt::Display for Day {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (y, m, d) = self.ymd();
        write!(f, "{y:04}-{m:02}-{d:02}")
    }
}

/// A wall-clock time as Unix seconds and nanoseconds (not `std::time::Instant`, which
/// is monotonic and has no calendar), passed into the core by the shell.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct UnixTime {
    pub secs: i64,
    pub nanos: u32,
}

impl UnixTime {
    pub fn from_secs(secs: i64) -> Self {
        UnixTime { secs, nanos: 0 }
    }

    pub fn day(self) -> Day {
        Day::from_unix(self.secs)
    }

    pub fn to_timestamp(self) -> prost_types::Timestamp {
        prost_types::Timestamp { seconds: self.secs, nanos: self.nanos as i32 }
    }

    /// Now, from the system clock: for shells and for verifiers that check expiry now.
    /// The only clock read in the library crates; the core may not call it (see
    /// `core/clippy.toml`).
    #[allow(clippy::disallowed_methods)]
    pub fn now() -> Self {
        let d = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        UnixTime { secs: d.as_secs() as i64, nanos: d.subsec_nanos() }
    }

    /// RFC 3339 text in UTC, e.g. `2026-11-28T12:00:00Z`.
    pub fn rfc3339(self) -> String {
        let (h, rem) = (self.secs.rem_euclid(86_400) / 3600, self.secs.rem_euclid(3600));
        format!("{}T{:02}:{:02}:{:02}Z", self.day(), h, rem / 60, rem % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_round_trip() {
        assert_eq!(Day::from_ymd(1970, 1, 1), Day(0));
        assert_eq!(Day::from_ymd(2025, 3, 21).to_string(), "2025-03-21");
        for n in [-800_000, -1, 0, 1, 19_000, 20_000, 60_000] {
            let (y, m, d) = Day(n).ymd();
            assert_eq!(Day::from_ymd(y, m, d), Day(n));
        }
        assert_eq!(Day::parse("2024-02-29"), Some(Day::from_ymd(2024, 2, 29)));
        assert_eq!(Day::parse("2023-02-29"), None);
        assert_eq!(UnixTime::from_secs(1_764_331_200).rfc3339(), "2025-11-28T12:00:00Z");
    }
}
