//! `RateLimit-Limit`, `RateLimit-Remaining`, `RateLimit-Reset` (the IETF draft's names, as
//! APIcast's `rate_limit_headers` policy emits them): the most constraining usage limit, told
//! to the client.
//!
//! The choice follows apisonator's own `3scale-limit-*` headers: among the limits that apply to
//! the request, the one leaving the fewest identical calls, ties going to the longer period.

use crate::backend::{Hierarchy, Period, UsageReport};
use crate::usage::Usage;
use crate::verdict::LimitHeaders;

/// The values of the three headers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimit {
    pub limit: u64,
    pub remaining: u64,
    /// Seconds until the limit's period ends; `None` when it never does (eternity).
    pub reset: Option<u64>,
}

/// The usage reports that constrain a request, each with the delta the request puts on it
/// (children's usage counts on their ancestors).
///
/// apisonator checks the limits of the requested metrics and their ancestors only, and every
/// limit when the request asks for no usage; a request whose deltas are all 0 asks for none.
pub fn applicable_reports<'r>(
    reports: &'r [UsageReport],
    hierarchy: &'r Hierarchy,
    usage: &'r Usage,
) -> impl Iterator<Item = (&'r UsageReport, u64)> + 'r {
    let asks_usage = usage.iter().any(|(_, delta)| delta > 0);
    reports.iter().filter_map(move |report| {
        let delta = hierarchy.applied_delta(&report.metric, usage);
        (delta > 0 || !asks_usage).then_some((report, delta))
    })
}

/// The most constraining limit for `usage`, or `None` when no limit applies.
///
/// `current_value`s are taken as already including this request, as in apisonator's authorized
/// answers; a request without usage counts as one call on every metric.
pub fn most_constraining(
    reports: &[UsageReport],
    hierarchy: &Hierarchy,
    usage: &Usage,
    now: u64,
) -> Option<RateLimit> {
    applicable_reports(reports, hierarchy, usage)
        .map(|(report, delta)| (report, calls_remaining(report, delta)))
        .min_by(|(a, a_left), (b, b_left)| a_left.cmp(b_left).then_with(|| b.period.cmp(&a.period)))
        .map(|(report, remaining)| RateLimit {
            limit: report.max_value,
            remaining,
            reset: seconds_to_reset(report, now),
        })
}

/// Identical calls left under one limit: `floor((max - current) / delta)`, 0 once reached.
fn calls_remaining(report: &UsageReport, delta: u64) -> u64 {
    report.max_value.saturating_sub(report.current_value) / delta.max(1)
}

fn seconds_to_reset(report: &UsageReport, now: u64) -> Option<u64> {
    match report.period {
        Period::Eternity => None,
        _ => report.period_end.map(|end| end.saturating_sub(now)),
    }
}

/// The headers from apisonator's `3scale-limit-*` answer; `None` when it reports nothing
/// constraining (`-1/-1`, no max value).
pub fn from_limit_headers(limits: &LimitHeaders) -> Option<RateLimit> {
    let limit = u64::try_from(limits.max_value?).ok()?;
    if limits.remaining < 0 && limits.reset < 0 {
        return None;
    }
    Some(RateLimit {
        limit,
        remaining: u64::try_from(limits.remaining).unwrap_or(0),
        reset: u64::try_from(limits.reset).ok(),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    /// 2026-11-24 18:09:51 UTC.
    const NOW: u64 = 1_795_543_791;
    const MINUTE_END: u64 = 1_795_543_800;
    const DAY_END: u64 = 1_795_564_800;
    const MONTH_END: u64 = 1_796_083_200;

    use crate::usage::usage_of as usage;

    fn report(
        metric: &str,
        period: Period,
        end: Option<u64>,
        max_value: u64,
        current_value: u64,
    ) -> UsageReport {
        UsageReport {
            metric: metric.into(),
            period,
            period_start: None,
            period_end: end,
            max_value,
            current_value,
            exceeded: current_value > max_value,
        }
    }

    fn hits_under_get_hello() -> Hierarchy {
        let mut hierarchy = Hierarchy::new();
        hierarchy.add("hits", "get_hello");
        hierarchy.add("hits", "disabled_m");
        hierarchy
    }

    #[test]
    fn captured_200_example() {
        // 3scale-limit-remaining: 996, -reset: 21009, -max-value: 1000.
        let reports = [
            report("hits", Period::Month, Some(MONTH_END), 20_000, 4),
            report("hits", Period::Day, Some(DAY_END), 1000, 4),
        ];
        let now = DAY_END - 21_009;
        let limit = most_constraining(&reports, &Hierarchy::new(), &usage(&[("hits", 1)]), now);
        assert_eq!(
            limit,
            Some(RateLimit {
                limit: 1000,
                remaining: 996,
                reset: Some(21_009)
            })
        );
    }

    #[test]
    fn captured_409_example() {
        // Minute limit 2, usage[hits]=3: remaining 0, reset 9, max 2.
        let reports = [report("hits", Period::Minute, Some(MINUTE_END), 2, 0)];
        let limit = most_constraining(&reports, &Hierarchy::new(), &usage(&[("hits", 3)]), NOW);
        assert_eq!(
            limit,
            Some(RateLimit {
                limit: 2,
                remaining: 0,
                reset: Some(9)
            })
        );
    }

    #[test]
    fn remaining_counts_identical_calls() {
        let reports = [report("hits", Period::Hour, Some(MINUTE_END), 100, 10)];
        let get = |delta| {
            most_constraining(&reports, &Hierarchy::new(), &usage(&[("hits", delta)]), NOW)
                .unwrap()
                .remaining
        };
        assert_eq!(get(1), 90);
        assert_eq!(get(3), 30);
        assert_eq!(get(7), 12);
        assert_eq!(get(91), 0);
        // Over the limit (parallel calls can push it there): 0, never negative.
        let over = [report("hits", Period::Hour, Some(MINUTE_END), 100, 130)];
        assert_eq!(
            most_constraining(&over, &Hierarchy::new(), &usage(&[("hits", 1)]), NOW)
                .unwrap()
                .remaining,
            0
        );
    }

    #[test]
    fn child_usage_counts_on_ancestors() {
        let reports = [
            report("hits", Period::Day, Some(DAY_END), 1000, 400),
            report("get_hello", Period::Hour, Some(MINUTE_END), 100, 10),
        ];
        // usage[get_hello]=3 puts 3 on hits too: hits leaves 200, get_hello 30.
        let limit = most_constraining(
            &reports,
            &hits_under_get_hello(),
            &usage(&[("get_hello", 3)]),
            NOW,
        );
        assert_eq!(limit.unwrap().remaining, 30);
        // usage[hits]=1 + usage[get_hello]=1: 2 on hits (300), 1 on get_hello (90).
        let limit = most_constraining(
            &reports,
            &hits_under_get_hello(),
            &usage(&[("hits", 1), ("get_hello", 1)]),
            NOW,
        );
        assert_eq!(limit.unwrap().remaining, 90);
        let limit = most_constraining(
            &reports,
            &hits_under_get_hello(),
            &usage(&[("hits", 2)]),
            NOW,
        )
        .unwrap();
        assert_eq!(
            (limit.limit, limit.remaining, limit.reset),
            (1000, 300, Some(DAY_END - NOW))
        );
    }

    #[test]
    fn ties_go_to_the_longer_period() {
        let reports = [
            report("hits", Period::Minute, Some(MINUTE_END), 10, 5),
            report("hits", Period::Month, Some(MONTH_END), 105, 100),
            report("hits", Period::Day, Some(DAY_END), 1005, 1000),
        ];
        let limit =
            most_constraining(&reports, &Hierarchy::new(), &usage(&[("hits", 1)]), NOW).unwrap();
        assert_eq!(limit.limit, 105);
        assert_eq!(limit.reset, Some(MONTH_END - NOW));
    }

    #[test]
    fn limits_of_other_metrics_do_not_apply() {
        let reports = [
            report("hits", Period::Day, Some(DAY_END), 1000, 0),
            report("other", Period::Minute, Some(MINUTE_END), 1, 1),
        ];
        let limit =
            most_constraining(&reports, &Hierarchy::new(), &usage(&[("hits", 1)]), NOW).unwrap();
        assert_eq!(limit.limit, 1000);
        assert_eq!(
            most_constraining(
                &reports,
                &Hierarchy::new(),
                &usage(&[("unlimited", 1)]),
                NOW
            ),
            None
        );
        // A zero delta does not make a metric requested.
        let limit = most_constraining(
            &reports,
            &Hierarchy::new(),
            &usage(&[("hits", 1), ("other", 0)]),
            NOW,
        );
        assert_eq!(limit.unwrap().limit, 1000);
    }

    #[test]
    fn without_usage_every_limit_counts_one_call() {
        let reports = [
            report("hits", Period::Day, Some(DAY_END), 1000, 0),
            report("other", Period::Minute, Some(MINUTE_END), 5, 2),
        ];
        for empty in [Usage::new(), usage(&[("hits", 0)])] {
            let limit = most_constraining(&reports, &Hierarchy::new(), &empty, NOW).unwrap();
            assert_eq!((limit.limit, limit.remaining, limit.reset), (5, 3, Some(9)));
        }
    }

    #[test]
    fn eternity_never_resets_and_disabled_metrics_leave_nothing() {
        let reports = [
            report("hits", Period::Day, Some(DAY_END), 1000, 0),
            report("disabled_m", Period::Eternity, None, 0, 0),
        ];
        let limit = most_constraining(
            &reports,
            &hits_under_get_hello(),
            &usage(&[("disabled_m", 1)]),
            NOW,
        );
        assert_eq!(
            limit,
            Some(RateLimit {
                limit: 0,
                remaining: 0,
                reset: None
            })
        );
    }

    #[test]
    fn no_reports_no_limit_and_past_ends_reset_now() {
        assert_eq!(
            most_constraining(&[], &Hierarchy::new(), &usage(&[("hits", 1)]), NOW),
            None
        );
        let stale = [report("hits", Period::Minute, Some(NOW - 5), 10, 1)];
        let limit =
            most_constraining(&stale, &Hierarchy::new(), &usage(&[("hits", 1)]), NOW).unwrap();
        assert_eq!(limit.reset, Some(0));
        let missing_end = [report("hits", Period::Minute, None, 10, 1)];
        let limit = most_constraining(&missing_end, &Hierarchy::new(), &usage(&[("hits", 1)]), NOW)
            .unwrap();
        assert_eq!(limit.reset, None);
    }

    #[test]
    fn extreme_values_do_not_overflow() {
        let reports = [report("hits", Period::Year, Some(u64::MAX), u64::MAX, 0)];
        let limit = most_constraining(
            &reports,
            &Hierarchy::new(),
            &usage(&[("hits", u64::MAX)]),
            0,
        )
        .unwrap();
        assert_eq!((limit.remaining, limit.reset), (1, Some(u64::MAX)));
        let limit =
            most_constraining(&reports, &Hierarchy::new(), &Usage::new(), u64::MAX).unwrap();
        assert_eq!((limit.remaining, limit.reset), (u64::MAX, Some(0)));
    }

    #[test]
    fn from_apisonator_headers() {
        let headers = |remaining, reset, max_value| LimitHeaders {
            remaining,
            reset,
            max_value,
        };
        assert_eq!(
            from_limit_headers(&headers(996, 21_009, Some(1000))),
            Some(RateLimit {
                limit: 1000,
                remaining: 996,
                reset: Some(21_009)
            })
        );
        assert_eq!(
            from_limit_headers(&headers(0, 9, Some(2))),
            Some(RateLimit {
                limit: 2,
                remaining: 0,
                reset: Some(9)
            })
        );
        // Disabled metric: remaining 0, reset -1, max 0.
        assert_eq!(
            from_limit_headers(&headers(0, -1, Some(0))),
            Some(RateLimit {
                limit: 0,
                remaining: 0,
                reset: None
            })
        );
        // Unconstrained: -1/-1 without max value (or with one).
        assert_eq!(from_limit_headers(&headers(-1, -1, None)), None);
        assert_eq!(from_limit_headers(&headers(-1, -1, Some(10))), None);
        assert_eq!(from_limit_headers(&headers(5, 10, None)), None);
        assert_eq!(from_limit_headers(&headers(5, 10, Some(-3))), None);
    }
}
