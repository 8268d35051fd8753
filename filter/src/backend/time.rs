//! Timestamps in 3scale answers (`2026-11-24 18:00:00 +0000`) as UNIX seconds.
//!
//! Usage reports carry the start and end of their period as civil dates. The cache and the
//! `RateLimit-Reset` header need "seconds until the period ends", so the dates become UNIX seconds
//! here with a few lines of proleptic-Gregorian arithmetic instead of a date crate (the `.wasm`
//! size matters, and nothing else in the filter needs calendars).

/// Parses `YYYY-MM-DD HH:MM:SS` followed by an optional UTC offset into UNIX seconds.
///
/// apisonator prints `+0000`; its old documentation shows `+00:00`, so both forms and any other
/// offset (`-0530`, `+05:30`) are accepted, as are `Z` and `UTC`. No offset means UTC. A `T`
/// may separate date and time. Returns `None` for anything malformed, out of range, or before
/// 1970.
pub fn parse_timestamp(text: &str) -> Option<u64> {
    let text = text.trim();
    let (date, rest) = text.split_at_checked(10)?;
    let (separator, rest) = rest.split_at_checked(1)?;
    if separator != " " && separator != "T" {
        return None;
    }
    let (time, zone) = rest.split_at_checked(8)?;
    let days = parse_date(date)?;
    let seconds_of_day = parse_time(time)?;
    let offset = parse_offset(zone.trim_start())?;
    let local = days.checked_mul(86_400)?.checked_add(seconds_of_day)?;
    u64::try_from(local.checked_sub(offset)?).ok()
}

/// Days since 1970-01-01 of a valid `YYYY-MM-DD`.
fn parse_date(date: &str) -> Option<i64> {
    let mut fields = date.split('-');
    let year = digits(fields.next()?, 4)?;
    let month = digits(fields.next()?, 2)?;
    let day = digits(fields.next()?, 2)?;
    if fields.next().is_some() || !(1..=12).contains(&month) {
        return None;
    }
    if day < 1 || day > days_in_month(year, month) {
        return None;
    }
    Some(days_from_civil(year, month, day))
}

/// Seconds since midnight of a valid `HH:MM:SS`.
fn parse_time(time: &str) -> Option<i64> {
    let mut fields = time.split(':');
    let hour = digits(fields.next()?, 2)?;
    let minute = digits(fields.next()?, 2)?;
    let second = digits(fields.next()?, 2)?;
    if fields.next().is_some() || hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    Some(hour * 3600 + minute * 60 + second)
}

/// The zone's offset east of UTC in seconds: empty, `Z`, `UTC`, `±HHMM` or `±HH:MM`.
fn parse_offset(zone: &str) -> Option<i64> {
    if zone.is_empty() || zone == "Z" || zone == "UTC" {
        return Some(0);
    }
    let (sign, rest) = zone.split_at_checked(1)?;
    let sign = match sign {
        "+" => 1,
        "-" => -1,
        _ => return None,
    };
    let (hours, minutes) = rest.split_at_checked(2)?;
    let minutes = minutes.strip_prefix(':').unwrap_or(minutes);
    let hours = digits(hours, 2)?;
    let minutes = digits(minutes, 2)?;
    if hours > 23 || minutes > 59 {
        return None;
    }
    Some(sign * (hours * 3600 + minutes * 60))
}

/// A fixed-width run of ASCII digits as a number (`str::parse` would also accept a sign).
fn digits(text: &str, width: usize) -> Option<i64> {
    if text.len() != width || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

fn is_leap_year(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap_year(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days from 1970-01-01 to a proleptic-Gregorian date (negative before 1970).
///
/// Counts in 400-year eras that start on March 1st, so the leap day is the last day of its
/// "year" and every month length except February's is fixed: the day of the year is a linear
/// formula of the month.
pub fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year.rem_euclid(400);
    let month_from_march = (month + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    // 719_468 days separate 0000-03-01 (the start of era 0) from 1970-01-01.
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn apisonator_format_is_utc_seconds() {
        assert_eq!(parse_timestamp("1970-01-01 00:00:00 +0000"), Some(0));
        assert_eq!(
            parse_timestamp("2026-11-24 18:00:00 +0000"),
            Some(1_795_543_200)
        );
        assert_eq!(
            parse_timestamp("2026-12-01 00:00:00 +0000"),
            Some(1_796_083_200)
        );
        assert_eq!(
            parse_timestamp("2027-01-01 00:00:00 +0000"),
            Some(1_798_761_600)
        );
    }

    #[test]
    fn documented_variants_are_accepted() {
        let utc = parse_timestamp("2026-11-24 18:00:00 +0000");
        assert_eq!(parse_timestamp("2026-11-24 18:00:00 +00:00"), utc);
        assert_eq!(parse_timestamp("2026-11-24 18:00:00"), utc);
        assert_eq!(parse_timestamp("2026-11-24T18:00:00Z"), utc);
        assert_eq!(parse_timestamp("2026-11-24 18:00:00 UTC"), utc);
        assert_eq!(parse_timestamp("  2026-11-24 18:00:00 +0000\n"), utc);
        assert_eq!(parse_timestamp("2026-11-24 18:00:00+0000"), utc);
    }

    #[test]
    fn offsets_are_east_of_utc() {
        let utc = parse_timestamp("2026-11-24 18:00:00 +0000").unwrap();
        assert_eq!(parse_timestamp("2026-11-24 19:00:00 +0100"), Some(utc));
        assert_eq!(parse_timestamp("2026-11-24 23:30:00 +05:30"), Some(utc));
        assert_eq!(parse_timestamp("2026-11-24 12:00:00 -0600"), Some(utc));
        assert_eq!(parse_timestamp("2026-11-24 12:00:00 -06:00"), Some(utc));
    }

    #[test]
    fn calendar_edges() {
        assert_eq!(
            parse_timestamp("2024-02-29 00:00:00 +0000"),
            Some(1_709_164_800)
        );
        assert_eq!(
            parse_timestamp("2000-02-29 00:00:00 +0000"),
            Some(951_782_400)
        );
        assert_eq!(parse_timestamp("2023-02-29 00:00:00 +0000"), None);
        assert_eq!(parse_timestamp("2100-02-29 00:00:00 +0000"), None);
        assert_eq!(parse_timestamp("2026-04-31 00:00:00 +0000"), None);
        assert_eq!(
            parse_timestamp("2026-12-31 23:59:59 +0000"),
            Some(1_798_761_599)
        );
        assert_eq!(
            parse_timestamp("9999-12-31 23:59:59 +0000"),
            Some(253_402_300_799)
        );
    }

    #[test]
    fn days_from_civil_matches_known_dates() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(1969, 12, 31), -1);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(days_from_civil(2026, 11, 23), 20_780);
        // 2026-11-23 is a Monday (the observed week start); 1970-01-01 was a Thursday.
        assert_eq!((days_from_civil(2026, 11, 23) + 3).rem_euclid(7), 0);
    }

    #[test]
    fn consecutive_days_are_86400_seconds_apart_for_centuries() {
        let mut previous = parse_timestamp("1970-01-01 00:00:00").unwrap();
        for year in 1970..2100 {
            for month in 1..=12 {
                for day in 1..=days_in_month(year, month) {
                    let text = format!("{year:04}-{month:02}-{day:02} 00:00:00 +0000");
                    let now = parse_timestamp(&text).unwrap();
                    if (year, month, day) != (1970, 1, 1) {
                        assert_eq!(now - previous, 86_400, "{text}");
                    }
                    previous = now;
                }
            }
        }
    }

    #[test]
    fn malformed_input_is_refused() {
        for text in [
            "",
            "2026",
            "2026-11-24",
            "2026-11-24 18:00",
            "2026-11-24 18:00:00 +",
            "2026-11-24 18:00:00 +00",
            "2026-11-24 18:00:00 +000",
            "2026-11-24 18:00:00 +00000",
            "2026-11-24 18:00:00 0000",
            "2026-11-24 18:00:00 +2400",
            "2026-11-24 18:00:00 +0060",
            "2026-11-24 24:00:00 +0000",
            "2026-11-24 18:60:00 +0000",
            "2026-11-24 18:00:60 +0000",
            "2026-13-24 18:00:00 +0000",
            "2026-00-24 18:00:00 +0000",
            "2026-11-00 18:00:00 +0000",
            "2026/11/24 18:00:00 +0000",
            "2026-11-24_18:00:00 +0000",
            "+026-11-24 18:00:00 +0000",
            "2026-+1-24 18:00:00 +0000",
            "2026-11-24 18:00:0x +0000",
            "1969-12-31 23:59:59 +0000",
            "1970-01-01 00:00:00 +0100",
            "2026-11-24 18:00:00 +0000 trailing",
            "２０２６-11-24 18:00:00 +0000",
            "2026-11-2é 18:00:00",
        ] {
            assert_eq!(parse_timestamp(text), None, "{text:?}");
        }
    }

    #[test]
    fn never_panics_on_any_prefix_or_byte_flip() {
        let good = "2026-11-24 18:00:00 +05:30";
        for end in 0..=good.len() {
            let _ = parse_timestamp(&good[..end]);
        }
        for position in 0..good.len() {
            for byte in [b'0', b'9', b' ', b':', b'-', b'+', b'x', 0xC3] {
                let mut bytes = good.as_bytes().to_vec();
                bytes[position] = byte;
                if let Ok(text) = String::from_utf8(bytes) {
                    let _ = parse_timestamp(&text);
                }
            }
        }
    }
}
