//! Period rollover: a cached limit whose period ended starts again from zero.
//!
//! 3scale's periods are calendar periods in UTC, not sliding windows: a minute limit resets at
//! every `hh:mm:00`, a week limit every Monday 00:00, a month limit on the 1st. Between refreshes
//! the cache must reset its counters at the same instants as apisonator, or it would refuse calls
//! that 3scale would allow right after a boundary.

use crate::backend::time::days_from_civil;
use crate::backend::{Period, UsageReport};

const MINUTE: u64 = 60;
const HOUR: u64 = 3_600;
const DAY: u64 = 86_400;
/// 1970-01-01 was a Thursday: three days after a Monday.
const THURSDAY_FROM_MONDAY: u64 = 3;

/// The end of the `period` that contains `now` (UNIX seconds): the first boundary after `now`.
/// `None` for eternity, which never ends, and for instants too far away to compute.
pub fn period_end_after(period: Period, now: u64) -> Option<u64> {
    match period {
        Period::Minute => next_multiple(now, MINUTE),
        Period::Hour => next_multiple(now, HOUR),
        Period::Day => next_multiple(now, DAY),
        Period::Week => {
            let days = now / DAY;
            let since_monday = (days + THURSDAY_FROM_MONDAY) % 7;
            (days + 7 - since_monday).checked_mul(DAY)
        }
        Period::Month => {
            let (year, month) = year_month(now / DAY)?;
            let (year, month) = if month == 12 {
                (year + 1, 1)
            } else {
                (year, month + 1)
            };
            seconds_at(days_from_civil(year, month, 1))
        }
        Period::Year => {
            let (year, _) = year_month(now / DAY)?;
            seconds_at(days_from_civil(year + 1, 1, 1))
        }
        Period::Eternity => None,
    }
}

/// Rolls `report` (and the usage `used` on it) into the period containing `now` when its own
/// period has ended: counters restart at 0 and the end moves to the next boundary, however many
/// periods were skipped. Returns whether anything changed.
///
/// A report without an end (eternity, or a malformed answer) never rolls.
pub fn roll(report: &mut UsageReport, used: &mut u64, now: u64) -> bool {
    let Some(end) = report.period_end else {
        return false;
    };
    if now < end || report.period == Period::Eternity {
        return false;
    }
    let Some(next_end) = period_end_after(report.period, now) else {
        return false;
    };
    report.period_end = Some(next_end);
    report.current_value = 0;
    report.exceeded = false;
    *used = 0;
    true
}

fn next_multiple(now: u64, length: u64) -> Option<u64> {
    (now / length).checked_add(1)?.checked_mul(length)
}

fn seconds_at(days: i64) -> Option<u64> {
    u64::try_from(days).ok()?.checked_mul(DAY)
}

/// The civil year and month (1-12) of day `days` since 1970-01-01.
///
/// Estimates the year from the mean Gregorian year and corrects it with `days_from_civil`,
/// which keeps a single calendar formula in the crate.
fn year_month(days: u64) -> Option<(i64, i64)> {
    let days = i64::try_from(days).ok()?;
    // 146_097 days per 400 years; the estimate is off by at most one year either way.
    let mut year = 1970 + days.checked_mul(400)? / 146_097;
    if days_from_civil(year, 1, 1) > days {
        year -= 1;
    } else if days_from_civil(year + 1, 1, 1) <= days {
        year += 1;
    }
    let month = (1..=12)
        .rev()
        .find(|&month| days_from_civil(year, month, 1) <= days)?;
    Some((year, month))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use crate::backend::time::parse_timestamp;

    fn at(text: &str) -> u64 {
        parse_timestamp(text).unwrap()
    }

    fn report(period: Period, end: Option<u64>, current: u64) -> UsageReport {
        UsageReport {
            metric: "hits".into(),
            period,
            period_start: None,
            period_end: end,
            max_value: 10,
            current_value: current,
            exceeded: current > 10,
        }
    }

    #[test]
    fn ends_of_the_period_containing_now() {
        let now = at("2026-11-24 18:09:51");
        let cases = [
            (Period::Minute, "2026-11-24 18:10:00"),
            (Period::Hour, "2026-11-24 19:00:00"),
            (Period::Day, "2026-11-25 00:00:00"),
            (Period::Week, "2026-11-30 00:00:00"),
            (Period::Month, "2026-12-01 00:00:00"),
            (Period::Year, "2027-01-01 00:00:00"),
        ];
        for (period, end) in cases {
            assert_eq!(period_end_after(period, now), Some(at(end)), "{period:?}");
        }
        assert_eq!(period_end_after(Period::Eternity, now), None);
    }

    #[test]
    fn a_boundary_instant_belongs_to_the_period_it_starts() {
        let cases = [
            (Period::Minute, "2026-11-24 18:10:00", "2026-11-24 18:11:00"),
            (Period::Hour, "2026-11-24 19:00:00", "2026-11-24 20:00:00"),
            (Period::Day, "2026-11-25 00:00:00", "2026-11-26 00:00:00"),
            (Period::Week, "2026-11-30 00:00:00", "2026-12-07 00:00:00"),
            (Period::Month, "2026-12-01 00:00:00", "2027-01-01 00:00:00"),
            (Period::Year, "2027-01-01 00:00:00", "2028-01-01 00:00:00"),
        ];
        for (period, now, end) in cases {
            assert_eq!(
                period_end_after(period, at(now)),
                Some(at(end)),
                "{period:?}"
            );
            assert_eq!(
                period_end_after(period, at(now) - 1),
                Some(at(now)),
                "{period:?} one second earlier"
            );
        }
    }

    #[test]
    fn weeks_start_on_monday_even_at_the_epoch() {
        // 1970-01-01 (Thursday) belongs to the week ending Monday 1970-01-05.
        assert_eq!(
            period_end_after(Period::Week, 0),
            Some(at("1970-01-05 00:00:00"))
        );
        assert_eq!(
            period_end_after(Period::Week, at("1970-01-04 23:59:59")),
            Some(at("1970-01-05 00:00:00"))
        );
        // Sunday 2026-11-29 23:59:59 → Monday the 30th.
        assert_eq!(
            period_end_after(Period::Week, at("2026-11-29 23:59:59")),
            Some(at("2026-11-30 00:00:00"))
        );
    }

    #[test]
    fn months_and_years_follow_the_calendar() {
        let cases = [
            ("2024-02-28 12:00:00", "2024-03-01 00:00:00"),
            ("2024-02-29 23:59:59", "2024-03-01 00:00:00"),
            ("2023-02-28 23:59:59", "2023-03-01 00:00:00"),
            ("2100-02-28 00:00:00", "2100-03-01 00:00:00"),
            ("2000-02-29 00:00:00", "2000-03-01 00:00:00"),
            ("2026-04-30 23:59:59", "2026-05-01 00:00:00"),
            ("2026-12-31 23:59:59", "2027-01-01 00:00:00"),
            ("1970-01-01 00:00:00", "1970-02-01 00:00:00"),
        ];
        for (now, end) in cases {
            assert_eq!(
                period_end_after(Period::Month, at(now)),
                Some(at(end)),
                "{now}"
            );
        }
        assert_eq!(
            period_end_after(Period::Year, at("2024-12-31 23:59:59")),
            Some(at("2025-01-01 00:00:00"))
        );
        assert_eq!(
            period_end_after(Period::Year, at("2024-01-01 00:00:00")),
            Some(at("2025-01-01 00:00:00"))
        );
    }

    #[test]
    fn month_ends_match_every_first_of_month_for_centuries() {
        for year in 1970..2200 {
            for month in 1..=12 {
                let first = seconds_at(days_from_civil(year, month, 1)).unwrap();
                let (next_year, next_month) = if month == 12 {
                    (year + 1, 1)
                } else {
                    (year, month + 1)
                };
                let next = seconds_at(days_from_civil(next_year, next_month, 1)).unwrap();
                assert_eq!(period_end_after(Period::Month, first), Some(next));
                assert_eq!(period_end_after(Period::Month, next - 1), Some(next));
            }
        }
    }

    #[test]
    fn roll_restarts_counters_after_skipped_periods() {
        let end = at("2026-11-24 18:10:00");
        let cases = [
            (Period::Minute, "2026-11-24 18:47:13", "2026-11-24 18:48:00"),
            (Period::Hour, "2026-11-25 03:00:00", "2026-11-25 04:00:00"),
            (Period::Day, "2026-12-03 01:00:00", "2026-12-04 00:00:00"),
            (Period::Week, "2027-01-13 09:00:00", "2027-01-18 00:00:00"),
            (Period::Month, "2027-03-15 00:00:00", "2027-04-01 00:00:00"),
            (Period::Year, "2031-07-01 00:00:00", "2032-01-01 00:00:00"),
        ];
        for (period, now, next) in cases {
            let mut limit = report(period, Some(end), 25);
            let mut used = 7;
            assert!(roll(&mut limit, &mut used, at(now)), "{period:?}");
            assert_eq!(limit.period_end, Some(at(next)), "{period:?}");
            assert_eq!((limit.current_value, used, limit.exceeded), (0, 0, false));
        }
    }

    #[test]
    fn roll_leaves_running_and_endless_periods_alone() {
        let end = at("2026-11-24 18:10:00");
        let mut limit = report(Period::Minute, Some(end), 5);
        let mut used = 3;
        assert!(!roll(&mut limit, &mut used, end - 1));
        assert_eq!(
            (limit.current_value, used, limit.period_end),
            (5, 3, Some(end))
        );
        assert!(roll(&mut limit, &mut used, end));
        assert_eq!(limit.period_end, Some(end + 60));

        let mut eternity = report(Period::Eternity, None, 9);
        assert!(!roll(&mut eternity, &mut used, u64::MAX));
        assert_eq!(eternity.current_value, 9);
        let mut no_end = report(Period::Day, None, 9);
        assert!(!roll(&mut no_end, &mut used, u64::MAX));
    }

    #[test]
    fn extreme_instants_never_panic() {
        for period in Period::ALL {
            for now in [0, 1, 59, u64::MAX / 2, u64::MAX - 1, u64::MAX] {
                let _ = period_end_after(period, now);
            }
            let mut limit = report(period, Some(0), 1);
            let mut used = 1;
            let _ = roll(&mut limit, &mut used, u64::MAX);
        }
    }
}
