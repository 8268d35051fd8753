//! Time: the simulator's "now" (real or frozen by tests), UTC calendar periods and the formats
//! apisonator prints.
//!
//! Usage limits are calendar-aligned in UTC (minute … year, weeks start on Monday), so the whole
//! simulator works in whole seconds since the UNIX epoch plus a sub-second part that only the
//! limit-reset header needs. The calendar arithmetic is the classic days-from-civil algorithm.

use std::time::{SystemTime, UNIX_EPOCH};

/// A point in time: seconds since the UNIX epoch (may be negative) and nanoseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Instant {
    pub secs: i64,
    pub nanos: u32,
}

impl Instant {
    pub fn from_secs(secs: i64) -> Self {
        Self { secs, nanos: 0 }
    }

    fn wall_clock() -> Self {
        match SystemTime::now().duration_since(UNIX_EPOCH) {
            Ok(d) => Self {
                secs: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
                nanos: d.subsec_nanos(),
            },
            Err(_) => Self::from_secs(0),
        }
    }
}

/// The clock the simulator reads: the wall clock, or a time frozen through `/_sim/clock` so that
/// tests can stand exactly on a period boundary.
#[derive(Clone, Copy, Debug, Default)]
pub struct Clock {
    frozen: Option<Instant>,
}

impl Clock {
    pub fn now(&self) -> Instant {
        self.frozen.unwrap_or_else(Instant::wall_clock)
    }

    pub fn freeze(&mut self, at: Instant) {
        self.frozen = Some(at);
    }

    /// Moves a frozen clock forward (or back); freezes a running one at now + `secs`.
    pub fn advance(&mut self, secs: i64) {
        let now = self.now();
        self.frozen = Some(Instant {
            secs: now.secs.saturating_add(secs),
            nanos: now.nanos,
        });
    }

    pub fn unfreeze(&mut self) {
        self.frozen = None;
    }

    pub fn is_frozen(&self) -> bool {
        self.frozen.is_some()
    }
}

/// Usage-limit periods, in the order apisonator lists usage reports (longest first).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Period {
    Eternity,
    Year,
    Month,
    Week,
    Day,
    Hour,
    Minute,
}

impl Period {
    pub const ALL: [Period; 7] = [
        Period::Eternity,
        Period::Year,
        Period::Month,
        Period::Week,
        Period::Day,
        Period::Hour,
        Period::Minute,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Period::Eternity => "eternity",
            Period::Year => "year",
            Period::Month => "month",
            Period::Week => "week",
            Period::Day => "day",
            Period::Hour => "hour",
            Period::Minute => "minute",
        }
    }

    pub fn parse(name: &str) -> Option<Period> {
        Period::ALL.into_iter().find(|p| p.name() == name)
    }

    /// Position in [`Period::ALL`], used to index per-period arrays.
    pub fn index(self) -> usize {
        self as usize
    }

    /// Granularity rank: larger means a longer period (eternity is the longest).
    pub fn granularity(self) -> u8 {
        6 - self as u8
    }

    /// Start of the period containing `t` (eternity starts at the epoch).
    pub fn start(self, t: i64) -> i64 {
        let day = t.div_euclid(86_400);
        match self {
            Period::Eternity => 0,
            Period::Minute => t - t.rem_euclid(60),
            Period::Hour => t - t.rem_euclid(3_600),
            Period::Day => day * 86_400,
            // 1970-01-01 was a Thursday: day 4 (counting from 0) of the week that began Monday 1969-12-29.
            Period::Week => (day - (day + 3).rem_euclid(7)) * 86_400,
            Period::Month => {
                let (y, m, _) = civil_from_days(day);
                days_from_civil(y, m, 1) * 86_400
            }
            Period::Year => {
                let (y, _, _) = civil_from_days(day);
                days_from_civil(y, 1, 1) * 86_400
            }
        }
    }

    /// End of the period containing `t` (= start of the next one).
    pub fn finish(self, t: i64) -> i64 {
        let start = self.start(t);
        match self {
            Period::Eternity => days_from_civil(9999, 12, 31) * 86_400,
            Period::Minute => start + 60,
            Period::Hour => start + 3_600,
            Period::Day => start + 86_400,
            Period::Week => start + 7 * 86_400,
            Period::Month => {
                let (y, m, _) = civil_from_days(start.div_euclid(86_400));
                let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
                days_from_civil(ny, nm, 1) * 86_400
            }
            Period::Year => {
                let (y, _, _) = civil_from_days(start.div_euclid(86_400));
                days_from_civil(y + 1, 1, 1) * 86_400
            }
        }
    }

    /// Seconds until the period ends, rounded up (`-1` for eternity): the `3scale-limit-reset` value.
    pub fn remaining_secs(self, now: Instant) -> i64 {
        match self {
            Period::Eternity => -1,
            // ceil(finish - (secs + nanos)) equals finish - secs for any 0 <= nanos < 1 s.
            _ => self.finish(now.secs) - now.secs,
        }
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (day may overflow the month: it rolls on).
pub fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The (year, month, day) of a day number since 1970-01-01.
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (
        year,
        u32::try_from(month).unwrap_or(1),
        u32::try_from(day).unwrap_or(1),
    )
}

/// `YYYY-MM-DD HH:MM:SS`, the common part of every format apisonator prints.
fn date_time(t: i64) -> String {
    let (y, m, d) = civil_from_days(t.div_euclid(86_400));
    let s = t.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        s / 3_600,
        s / 60 % 60,
        s % 60
    )
}

/// Ruby's `strftime('%Y-%m-%d %H:%M:%S %z')` in UTC: the `period_start`/`period_end` format.
pub fn format_period_time(t: i64) -> String {
    format!("{} +0000", date_time(t))
}

/// Ruby's `Time#to_s` in UTC: the timestamp format of stored integration errors.
pub fn format_error_time(t: i64) -> String {
    format!("{} UTC", date_time(t))
}

/// Parses a transaction `timestamp` as apisonator does: a UNIX epoch (Ruby `Integer()`), or a
/// date `YYYY-MM-DD[ HH:MM[:SS[.frac]]]` with an optional `Z`/`UTC` or `±HH[:MM]` offset.
/// `None` means "use now" (blank or unparsable).
pub fn parse_transaction_time(input: &str) -> Option<i64> {
    parse_ruby_integer(input).or_else(|| parse_date_time(input.trim()))
}

/// Ruby's strict `Integer("...")`: optional whitespace and sign, then decimal digits, or a
/// `0x`/`0b`/`0o`/leading-`0` radix prefix; underscores only between digits.
fn parse_ruby_integer(input: &str) -> Option<i64> {
    let s =
        input.trim_matches(|c: char| matches!(c, '\t' | '\n' | '\u{0b}' | '\u{0c}' | '\r' | ' '));
    let (negative, unsigned) = match s.as_bytes().first()? {
        b'-' => (true, s.get(1..)?),
        b'+' => (false, s.get(1..)?),
        _ => (false, s),
    };
    let lower = unsigned.to_ascii_lowercase();
    let (radix, digits) = if let Some(rest) = lower.strip_prefix("0x") {
        (16, rest)
    } else if let Some(rest) = lower.strip_prefix("0b") {
        (2, rest)
    } else if let Some(rest) = lower.strip_prefix("0o") {
        (8, rest)
    } else if lower.len() > 1 && lower.starts_with('0') {
        (8, lower.get(1..)?)
    } else {
        (10, lower.as_str())
    };
    if digits.is_empty()
        || digits.starts_with('_')
        || digits.ends_with('_')
        || digits.contains("__")
    {
        return None;
    }
    let cleaned: String = digits.chars().filter(|&c| c != '_').collect();
    let value = i64::from_str_radix(&cleaned, radix).ok()?;
    Some(if negative { -value } else { value })
}

fn parse_date_time(s: &str) -> Option<i64> {
    let (date, rest) = s.split_at_checked(10)?;
    let mut parts = date.split('-');
    let year: i64 = parse_digits(parts.next()?, 4)?;
    let month: u32 = u32::try_from(parse_digits(parts.next()?, 2)?).ok()?;
    let day: u32 = u32::try_from(parse_digits(parts.next()?, 2)?).ok()?;
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    let rest = rest.trim_start_matches([' ', 'T', 't']);
    let (clock, zone) = split_zone(rest);
    let mut seconds_of_day = 0;
    if !clock.is_empty() {
        let clock = clock.split('.').next().unwrap_or("");
        let mut fields = clock.split(':');
        let hour = parse_digits(fields.next()?, 2)?;
        let minute = parse_digits(fields.next()?, 2)?;
        let second = match fields.next() {
            Some(f) => parse_digits(f, 2)?,
            None => 0,
        };
        if fields.next().is_some() || hour > 24 || minute > 59 || second > 60 {
            return None;
        }
        seconds_of_day = hour * 3_600 + minute * 60 + second;
    }
    let offset = parse_offset(zone.trim())?;
    Some(days_from_civil(year, month, day) * 86_400 + seconds_of_day - offset)
}

/// Splits `HH:MM:SS +01:00` into the clock and the zone.
fn split_zone(rest: &str) -> (&str, &str) {
    let at = rest.find(|c: char| c == '+' || c == '-' || c == ' ' || c.is_ascii_alphabetic());
    match at {
        Some(i) => rest.split_at_checked(i).unwrap_or((rest, "")),
        None => (rest, ""),
    }
}

/// The zone's offset from UTC in seconds: empty, `Z`, `UTC`, `GMT`, `±HH`, `±HHMM`, `±HH:MM`.
fn parse_offset(zone: &str) -> Option<i64> {
    if zone.is_empty() || ["z", "utc", "gmt"].contains(&zone.to_ascii_lowercase().as_str()) {
        return Some(0);
    }
    let (sign, digits) = match zone.as_bytes().first()? {
        b'+' => (1, zone.get(1..)?),
        b'-' => (-1, zone.get(1..)?),
        _ => return None,
    };
    let digits: String = digits.chars().filter(|&c| c != ':').collect();
    let (hours, minutes) = match digits.len() {
        2 => (parse_digits(&digits, 2)?, 0),
        4 => (
            parse_digits(digits.get(..2)?, 2)?,
            parse_digits(digits.get(2..)?, 2)?,
        ),
        _ => return None,
    };
    Some(sign * (hours * 3_600 + minutes * 60))
}

fn parse_digits(s: &str, len: usize) -> Option<i64> {
    if s.len() != len || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    /// 2026-11-24 18:09:51 UTC, the moment of the protocol reference's captures (a Tuesday).
    const CAPTURE: i64 = 1_795_543_791;

    #[test]
    fn civil_round_trip() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        for day in [-800_000, -1, 0, 59, 10_957, 20_000, 2_932_896] {
            let (y, m, d) = civil_from_days(day);
            assert_eq!(days_from_civil(y, m, d), day);
        }
        assert_eq!(
            days_from_civil(2026, 2, 31),
            days_from_civil(2026, 3, 3),
            "days roll over"
        );
    }

    #[test]
    fn capture_time_is_what_the_reference_shows() {
        assert_eq!(format_period_time(CAPTURE), "2026-11-24 18:09:51 +0000");
        assert_eq!(format_error_time(CAPTURE), "2026-11-24 18:09:51 UTC");
    }

    #[test]
    fn periods_match_the_reference_captures() {
        let f = |p: Period| {
            (
                format_period_time(p.start(CAPTURE)),
                format_period_time(p.finish(CAPTURE)),
            )
        };
        assert_eq!(f(Period::Minute).0, "2026-11-24 18:09:00 +0000");
        assert_eq!(f(Period::Minute).1, "2026-11-24 18:10:00 +0000");
        assert_eq!(f(Period::Hour).0, "2026-11-24 18:00:00 +0000");
        assert_eq!(f(Period::Hour).1, "2026-11-24 19:00:00 +0000");
        assert_eq!(f(Period::Day).0, "2026-11-24 00:00:00 +0000");
        assert_eq!(f(Period::Day).1, "2026-11-25 00:00:00 +0000");
        assert_eq!(f(Period::Week).0, "2026-11-23 00:00:00 +0000");
        assert_eq!(f(Period::Week).1, "2026-11-30 00:00:00 +0000");
        assert_eq!(f(Period::Month).0, "2026-11-01 00:00:00 +0000");
        assert_eq!(f(Period::Month).1, "2026-12-01 00:00:00 +0000");
        assert_eq!(f(Period::Year).0, "2026-01-01 00:00:00 +0000");
        assert_eq!(f(Period::Year).1, "2027-01-01 00:00:00 +0000");
    }

    #[test]
    fn boundaries_belong_to_the_next_period() {
        let new_year = days_from_civil(2027, 1, 1) * 86_400;
        for p in [
            Period::Minute,
            Period::Hour,
            Period::Day,
            Period::Month,
            Period::Year,
        ] {
            assert_eq!(p.start(new_year), new_year, "{p:?}");
            assert_eq!(p.finish(new_year - 1), new_year, "{p:?}");
            assert!(p.start(new_year - 1) < new_year);
        }
        // 2027-01-01 is a Friday: its week began Monday 2026-12-28.
        assert_eq!(
            format_period_time(Period::Week.start(new_year)),
            "2026-12-28 00:00:00 +0000"
        );
        let monday = days_from_civil(2026, 11, 30) * 86_400;
        assert_eq!(Period::Week.start(monday), monday);
        assert_eq!(Period::Week.start(monday - 1), monday - 7 * 86_400);
    }

    #[test]
    fn leap_years_and_month_ends() {
        let feb29 = days_from_civil(2028, 2, 29) * 86_400 + 5;
        assert_eq!(
            format_period_time(Period::Month.finish(feb29)),
            "2028-03-01 00:00:00 +0000"
        );
        let dec = days_from_civil(2026, 12, 31) * 86_400 + 86_399;
        assert_eq!(
            format_period_time(Period::Month.finish(dec)),
            "2027-01-01 00:00:00 +0000"
        );
        assert_eq!(
            format_period_time(Period::Day.finish(dec)),
            "2027-01-01 00:00:00 +0000"
        );
    }

    #[test]
    fn pre_epoch_times_work() {
        assert_eq!(
            format_period_time(Period::Minute.start(-1)),
            "1969-12-31 23:59:00 +0000"
        );
        assert_eq!(
            format_period_time(Period::Week.start(0)),
            "1969-12-29 00:00:00 +0000"
        );
    }

    #[test]
    fn remaining_seconds_round_up_and_eternity_is_minus_one() {
        let now = Instant {
            secs: CAPTURE,
            nanos: 300_000_000,
        };
        assert_eq!(Period::Minute.remaining_secs(now), 9);
        assert_eq!(
            Period::Minute.remaining_secs(Instant::from_secs(CAPTURE - 51)),
            60
        );
        assert_eq!(Period::Eternity.remaining_secs(now), -1);
        assert_eq!(Period::Hour.remaining_secs(now), 50 * 60 + 9);
    }

    #[test]
    fn period_names_round_trip() {
        for p in Period::ALL {
            assert_eq!(Period::parse(p.name()), Some(p));
        }
        assert_eq!(Period::parse("second"), None);
        assert!(Period::Eternity.granularity() > Period::Year.granularity());
        assert!(Period::Hour.granularity() > Period::Minute.granularity());
    }

    #[test]
    fn transaction_timestamps() {
        assert_eq!(parse_transaction_time("2026-11-24 18:09:51"), Some(CAPTURE));
        assert_eq!(
            parse_transaction_time("2026-11-24T18:09:51Z"),
            Some(CAPTURE)
        );
        assert_eq!(
            parse_transaction_time("2026-11-24 19:09:51 +01:00"),
            Some(CAPTURE)
        );
        assert_eq!(
            parse_transaction_time("2026-11-24 17:09:51 -0100"),
            Some(CAPTURE)
        );
        assert_eq!(
            parse_transaction_time("2026-11-24 18:09:51 UTC"),
            Some(CAPTURE)
        );
        assert_eq!(parse_transaction_time("2026-11-24"), Some(CAPTURE - 65_391));
        assert_eq!(
            parse_transaction_time("2026-11-24 18:09"),
            Some(CAPTURE - 51)
        );
        assert_eq!(parse_transaction_time("1795543791"), Some(CAPTURE));
        assert_eq!(parse_transaction_time(" 1795543791 "), Some(CAPTURE));
        assert_eq!(parse_transaction_time("0x10"), Some(16));
        assert_eq!(parse_transaction_time("010"), Some(8));
        assert_eq!(parse_transaction_time("1_000"), Some(1000));
        for junk in [
            "",
            "  ",
            "yesterday",
            "2026-13-01",
            "2026-11-24 25:00:00",
            "1__0",
            "2026-11-24 18:09:51 +5",
            "1.5",
        ] {
            assert_eq!(parse_transaction_time(junk), None, "{junk:?}");
        }
    }

    #[test]
    fn clock_freezes_and_advances() {
        let mut clock = Clock::default();
        assert!(!clock.is_frozen());
        clock.freeze(Instant::from_secs(100));
        assert_eq!(clock.now(), Instant::from_secs(100));
        clock.advance(59);
        assert_eq!(clock.now().secs, 159);
        clock.advance(-200);
        assert_eq!(clock.now().secs, -41);
        clock.unfreeze();
        assert!(clock.now().secs > 1_700_000_000);
    }
}
