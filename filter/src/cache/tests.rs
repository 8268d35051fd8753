//! Entry behaviour: decisions, refreshes, reporting bookkeeping and the stored form.
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::unreachable
)]

use super::*;
use crate::backend::time::parse_timestamp;
use crate::backend::{AuthStatus, Hierarchy, Period, UsageReport, parse_status};
use crate::category::Category;
use crate::credentials::Credentials;
use crate::ratelimit::RateLimit;
use crate::usage::Usage;
use crate::verdict::Verdict;

/// 2026-11-24 18:09:51 UTC.
const NOW: u64 = 1_795_543_791;
const NOW_MS: u64 = NOW * 1000;
const MINUTE_END: u64 = 1_795_543_800;
const HOUR_END: u64 = 1_795_546_800;
const DAY_END: u64 = 1_795_564_800;
const MONTH_END: u64 = 1_796_083_200;

/// The observed authorize answer (reference §4.2) with its observed hierarchy section.
const AUTHORIZED: &str = r#"<?xml version="1.0" encoding="UTF-8"?><status><authorized>true</authorized><plan>Production</plan><usage_reports><usage_report metric="hits" period="month"><period_start>2026-11-01 00:00:00 +0000</period_start><period_end>2026-12-01 00:00:00 +0000</period_end><max_value>20000</max_value><current_value>0</current_value></usage_report><usage_report metric="hits" period="day"><period_start>2026-11-24 00:00:00 +0000</period_start><period_end>2026-11-25 00:00:00 +0000</period_end><max_value>1000</max_value><current_value>0</current_value></usage_report><usage_report metric="get_hello" period="hour"><period_start>2026-11-24 18:00:00 +0000</period_start><period_end>2026-11-24 19:00:00 +0000</period_end><max_value>100</max_value><current_value>0</current_value></usage_report><usage_report metric="disabled_m" period="eternity"><max_value>0</max_value><current_value>0</current_value></usage_report></usage_reports><hierarchy><metric name="hits" children="get_hello disabled_m"/><metric name="hits" children="get_hello disabled_m"/><metric name="get_hello" children=""/><metric name="disabled_m" children=""/></hierarchy></status>"#;
/// Observed: stored usage already over the minute limit (409, `exceeded="true"`).
const EXCEEDED: &str = r#"<?xml version="1.0" encoding="UTF-8"?><status><authorized>false</authorized><reason>usage limits are exceeded</reason><plan>Basic</plan><usage_reports><usage_report metric="hits" period="minute" exceeded="true"><period_start>2026-11-24 18:09:00 +0000</period_start><period_end>2026-11-24 18:10:00 +0000</period_end><max_value>2</max_value><current_value>3</current_value></usage_report></usage_reports></status>"#;

use crate::usage::usage_of as usage;

fn status(xml: &str) -> AuthStatus {
    parse_status(xml.as_bytes()).unwrap()
}

fn key() -> String {
    cache_key("42", &Credentials::UserKey("k1".into()), None)
}

fn authorized() -> Entry {
    Entry::new(key(), Answer::Authorized, Some(&status(AUTHORIZED)), NOW_MS).unwrap()
}

fn report(metric: &str, period: Period, end: Option<u64>, max: u64, current: u64) -> UsageReport {
    UsageReport {
        metric: metric.into(),
        period,
        period_start: None,
        period_end: end,
        max_value: max,
        current_value: current,
        exceeded: current > max,
    }
}

fn with_limits(reports: Vec<UsageReport>, links: &[(&str, &str)]) -> Entry {
    let mut hierarchy = Hierarchy::new();
    for (parent, child) in links {
        hierarchy.add(parent, child);
    }
    let status = AuthStatus {
        authorized: true,
        reason: None,
        plan: Some("Basic".into()),
        usage_reports: reports,
        hierarchy,
    };
    Entry::new(key(), Answer::Authorized, Some(&status), NOW_MS).unwrap()
}

/// (metric, period) → (effective current, used).
fn limit(entry: &Entry, metric: &str, period: Period) -> (u64, u64) {
    entry
        .limits()
        .find(|(r, _)| r.metric == metric && r.period == period)
        .map(|(r, used)| (r.current_value, used))
        .unwrap()
}

fn allowed(admission: &Admission) -> Option<RateLimit> {
    match admission {
        Admission::Allowed { rate_limit, .. } => *rate_limit,
        other => panic!("expected allowed, got {other:?}"),
    }
}

fn refused(admission: &Admission) -> (Category, Option<u64>) {
    match admission {
        Admission::Refused {
            category,
            retry_after,
            ..
        } => (*category, *retry_after),
        other => panic!("expected refused, got {other:?}"),
    }
}

fn pending(entry: &Entry) -> Vec<(u16, &str, u64)> {
    entry
        .pending()
        .map(|t| (t.code, t.metric.as_str(), t.delta))
        .collect()
}

mod decisions {
    use super::*;

    #[test]
    fn child_usage_counts_on_its_parent() {
        let mut entry = authorized();
        let admission = entry.admit(&usage(&[("get_hello", 3)]), NOW);
        assert_eq!(
            admission,
            Admission::Allowed {
                plan: Some("Production".into()),
                rate_limit: Some(RateLimit {
                    limit: 100,
                    remaining: 32,
                    reset: Some(HOUR_END - NOW)
                }),
            }
        );
        assert_eq!(limit(&entry, "hits", Period::Month), (3, 3));
        assert_eq!(limit(&entry, "hits", Period::Day), (3, 3));
        assert_eq!(limit(&entry, "get_hello", Period::Hour), (3, 3));
        assert_eq!(limit(&entry, "disabled_m", Period::Eternity), (0, 0));
        // Pending usage stays raw: 3scale applies the hierarchy itself.
        assert_eq!(pending(&entry), vec![(0, "get_hello", 3)]);
        // hits and a child at once: 2 on hits, 1 on get_hello.
        entry.admit(&usage(&[("hits", 1), ("get_hello", 1)]), NOW);
        assert_eq!(limit(&entry, "hits", Period::Day), (5, 5));
        assert_eq!(limit(&entry, "get_hello", Period::Hour), (4, 4));
        assert_eq!(pending(&entry), vec![(0, "get_hello", 4), (0, "hits", 1)]);
    }

    #[test]
    fn a_request_is_allowed_up_to_the_limit_and_refused_past_it() {
        let mut entry = authorized();
        for _ in 0..33 {
            allowed(&entry.admit(&usage(&[("get_hello", 3)]), NOW));
        }
        // 99 of 100: one call of 1 fits, a call of 2 does not.
        assert_eq!(limit(&entry, "get_hello", Period::Hour), (99, 99));
        let before = entry.clone();
        let admission = entry.admit(&usage(&[("get_hello", 2)]), NOW);
        assert_eq!(
            refused(&admission),
            (Category::LimitsExceeded, Some(HOUR_END - NOW))
        );
        if let Admission::Refused {
            rate_limit, plan, ..
        } = &admission
        {
            assert_eq!(rate_limit.unwrap().remaining, 0);
            assert_eq!(rate_limit.unwrap().limit, 100);
            assert_eq!(plan.as_deref(), Some("Production"));
        }
        assert_eq!(entry, before, "a refusal changes nothing");
        let last = allowed(&entry.admit(&usage(&[("get_hello", 1)]), NOW)).unwrap();
        assert_eq!((last.limit, last.remaining), (100, 0));
        refused(&entry.admit(&usage(&[("get_hello", 1)]), NOW));
        // hits itself still has room: 900 left today.
        let hits = allowed(&entry.admit(&usage(&[("hits", 1)]), NOW)).unwrap();
        assert_eq!((hits.limit, hits.remaining), (1000, 899));
    }

    #[test]
    fn a_limit_of_zero_disables_the_method() {
        let mut entry = authorized();
        let before = entry.clone();
        let admission = entry.admit(&usage(&[("disabled_m", 1)]), NOW);
        assert_eq!(refused(&admission), (Category::MethodDisabled, None));
        assert_eq!(entry, before);
        // Disabled wins over an exceeded limit that blocks too.
        let mut entry = with_limits(
            vec![
                report("hits", Period::Minute, Some(MINUTE_END), 1, 1),
                report("writes", Period::Eternity, None, 0, 0),
            ],
            &[("hits", "writes")],
        );
        assert_eq!(
            refused(&entry.admit(&usage(&[("writes", 1)]), NOW)),
            (Category::MethodDisabled, None)
        );
        // A zero delta does not request the metric.
        allowed(&entry.admit(&usage(&[("writes", 0)]), NOW));
    }

    #[test]
    fn multi_level_hierarchy() {
        // hits ← api ← {get, post}; limits at every level.
        let mut entry = with_limits(
            vec![
                report("hits", Period::Day, Some(DAY_END), 10, 0),
                report("api", Period::Hour, Some(HOUR_END), 6, 0),
                report("get", Period::Minute, Some(MINUTE_END), 3, 0),
            ],
            &[
                ("hits", "api"),
                ("api", "get"),
                ("api", "post"),
                ("hits", "other"),
            ],
        );
        for _ in 0..3 {
            allowed(&entry.admit(&usage(&[("get", 1)]), NOW));
        }
        assert_eq!(
            refused(&entry.admit(&usage(&[("get", 1)]), NOW)),
            (Category::LimitsExceeded, Some(MINUTE_END - NOW))
        );
        for _ in 0..3 {
            allowed(&entry.admit(&usage(&[("post", 1)]), NOW));
        }
        assert_eq!(limit(&entry, "api", Period::Hour), (6, 6));
        assert_eq!(
            refused(&entry.admit(&usage(&[("post", 1)]), NOW)),
            (Category::LimitsExceeded, Some(HOUR_END - NOW))
        );
        // `other` is under hits only: 4 left today.
        for _ in 0..4 {
            allowed(&entry.admit(&usage(&[("other", 1)]), NOW));
        }
        assert_eq!(limit(&entry, "hits", Period::Day), (10, 10));
        // Blocked by the day and the minute at once: retry when both are over.
        assert_eq!(
            refused(&entry.admit(&usage(&[("get", 1)]), NOW)),
            (Category::LimitsExceeded, Some(DAY_END - NOW))
        );
        // A metric outside the hierarchy's limited branches is never blocked.
        allowed(&entry.admit(&usage(&[("unlimited", 5)]), NOW));
    }

    #[test]
    fn exceeded_report_blocks_only_its_metric_and_ancestors() {
        let exceeded = status(EXCEEDED);
        let verdict = Verdict::Denied {
            category: Category::LimitsExceeded,
            reason: "limits_exceeded".into(),
            status: Some(exceeded),
            limits: None,
            retry_after: Some(9),
        };
        let (answer, status) = Answer::from_verdict(&verdict).unwrap();
        assert_eq!(answer, Answer::LimitsOnly);
        let mut entry = Entry::new(key(), answer, status, NOW_MS).unwrap();
        assert!(entry.confirmed());
        assert_eq!(
            refused(&entry.admit(&usage(&[("hits", 1)]), NOW)),
            (Category::LimitsExceeded, Some(9))
        );
        // No usage: every limit is checked, and hits is over.
        refused(&entry.admit(&Usage::new(), NOW));
        // Same app, usage[unlimited_m]=1: allowed, as 3scale answers.
        let admission = entry.admit(&usage(&[("unlimited_m", 1)]), NOW);
        assert_eq!(allowed(&admission), None);
        assert_eq!(pending(&entry), vec![(0, "unlimited_m", 1)]);
        // The next minute the limit has rolled over.
        let next = allowed(&entry.admit(&usage(&[("hits", 2)]), MINUTE_END + 5)).unwrap();
        assert_eq!((next.limit, next.remaining, next.reset), (2, 0, Some(55)));
    }

    #[test]
    fn retry_after_is_unknown_when_an_eternal_limit_blocks() {
        let mut entry = with_limits(
            vec![
                report("hits", Period::Eternity, None, 5, 5),
                report("hits", Period::Minute, Some(MINUTE_END), 1, 1),
            ],
            &[],
        );
        assert_eq!(
            refused(&entry.admit(&usage(&[("hits", 1)]), NOW)),
            (Category::LimitsExceeded, None)
        );
        // Only the minute blocks a request once the eternity limit has room.
        let mut entry = with_limits(
            vec![
                report("hits", Period::Eternity, None, 50, 5),
                report("hits", Period::Minute, Some(MINUTE_END), 1, 1),
            ],
            &[],
        );
        assert_eq!(
            refused(&entry.admit(&usage(&[("hits", 1)]), NOW)),
            (Category::LimitsExceeded, Some(MINUTE_END - NOW))
        );
    }

    #[test]
    fn no_usage_checks_every_limit_and_charges_nothing() {
        let mut entry = authorized();
        let rate_limit = allowed(&entry.admit(&Usage::new(), NOW)).unwrap();
        // Counts as one call everywhere: the disabled metric leaves none.
        assert_eq!(rate_limit.limit, 0);
        assert!(pending(&entry).is_empty());
        assert_eq!(limit(&entry, "hits", Period::Day), (0, 0));
        allowed(&entry.admit(&usage(&[("hits", 0)]), NOW));
        assert!(!entry.has_pending());
    }

    #[test]
    fn denied_and_unknown_answers_refuse_without_charging() {
        let mut entry = Entry::new(
            key(),
            Answer::Denied {
                category: Category::AppInactive,
                reason: "application_not_active".into(),
            },
            Some(&status(AUTHORIZED)),
            NOW_MS,
        )
        .unwrap();
        assert!(!entry.confirmed());
        let before = entry.clone();
        assert_eq!(
            entry.admit(&usage(&[("hits", 1)]), NOW),
            Admission::Refused {
                category: Category::AppInactive,
                retry_after: None,
                rate_limit: None,
                plan: Some("Production".into()),
            }
        );
        assert_eq!(entry, before);

        let mut unknown = Entry::new(key(), Answer::Unknown, None, NOW_MS).unwrap();
        assert_eq!(unknown.refreshed_at_ms, 0);
        assert!(!unknown.confirmed());
        assert_eq!(
            refused(&unknown.admit(&usage(&[("hits", 1)]), NOW)),
            (Category::BackendUnavailable, None)
        );
        unknown.admit_unchecked(&usage(&[("hits", 2)]), NOW);
        assert_eq!(pending(&unknown), vec![(0, "hits", 2)]);
    }

    #[test]
    fn unchecked_usage_is_charged_past_the_limits() {
        let mut entry = with_limits(
            vec![report("hits", Period::Minute, Some(MINUTE_END), 2, 2)],
            &[],
        );
        entry.admit_unchecked(&usage(&[("hits", 3)]), NOW);
        assert_eq!(limit(&entry, "hits", Period::Minute), (5, 3));
        assert!(entry.usage_reports()[0].exceeded);
        // A period that ended first rolls, then takes the usage.
        entry.admit_unchecked(&usage(&[("hits", 1)]), MINUTE_END);
        assert_eq!(limit(&entry, "hits", Period::Minute), (1, 1));
        assert_eq!(entry.pending_units(), 4);
    }

    #[test]
    fn limits_roll_over_between_refreshes() {
        let mut entry = with_limits(
            vec![
                report("hits", Period::Month, Some(MONTH_END), 1000, 990),
                report("hits", Period::Minute, Some(MINUTE_END), 2, 0),
            ],
            &[],
        );
        allowed(&entry.admit(&usage(&[("hits", 2)]), NOW));
        refused(&entry.admit(&usage(&[("hits", 1)]), NOW));
        // Three minutes later: the minute restarted, the month did not.
        let later = MINUTE_END + 150;
        let rate = allowed(&entry.admit(&usage(&[("hits", 1)]), later)).unwrap();
        assert_eq!(limit(&entry, "hits", Period::Minute), (1, 1));
        assert_eq!(limit(&entry, "hits", Period::Month), (993, 3));
        assert_eq!(rate.reset, Some(MINUTE_END + 180 - later));
        let minute = entry.usage_reports()[1].period_end;
        assert_eq!(minute, Some(MINUTE_END + 180));
        // A new month.
        allowed(&entry.admit(&usage(&[("hits", 1)]), MONTH_END + 1));
        assert_eq!(limit(&entry, "hits", Period::Month), (1, 1));
        assert_eq!(
            entry.usage_reports()[0].period_end,
            parse_timestamp("2027-01-01 00:00:00")
        );
    }
}

mod refreshes {
    use super::*;

    #[test]
    fn refresh_keeps_unacknowledged_usage_and_drops_acknowledged() {
        let mut entry = authorized();
        entry.admit(&usage(&[("get_hello", 3)]), NOW);
        entry.take_pending(1, NOW_MS);
        assert_eq!(entry.ack(1), 3);
        entry.admit(&usage(&[("get_hello", 4)]), NOW);
        entry.take_pending(2, NOW_MS);
        entry.admit(&usage(&[("hits", 2)]), NOW);
        assert!(entry.claim_refresh(NOW_MS, 1000));
        // 3scale counted the acknowledged 3 only.
        let xml = AUTHORIZED
            .replace(
                "<current_value>0</current_value>",
                "<current_value>3</current_value>",
            )
            .replace("<plan>Production</plan>", "<plan>Gold</plan>");
        assert!(entry.refresh(Answer::Authorized, Some(&status(&xml)), NOW_MS + 500));
        assert_eq!(entry.refreshed_at_ms, NOW_MS + 500);
        assert_eq!(entry.refreshing_since_ms(), None);
        assert_eq!(entry.plan.as_deref(), Some("Gold"));
        // Unacknowledged: 4 in flight on get_hello, 2 pending on hits.
        assert_eq!(limit(&entry, "hits", Period::Day), (9, 6));
        assert_eq!(limit(&entry, "get_hello", Period::Hour), (7, 4));
        assert_eq!(limit(&entry, "disabled_m", Period::Eternity), (3, 0));
        assert_eq!(entry.pending_units(), 2);
        assert_eq!(entry.inflight_units(), 4);
        // Once the batch is acknowledged and 3scale's next answer includes it, it counts once.
        entry.ack(2);
        let xml = AUTHORIZED.replace(
            "<current_value>0</current_value>",
            "<current_value>7</current_value>",
        );
        entry.refresh(Answer::Authorized, Some(&status(&xml)), NOW_MS + 900);
        assert_eq!(limit(&entry, "hits", Period::Day), (9, 2));
        assert_eq!(limit(&entry, "get_hello", Period::Hour), (7, 0));
    }

    #[test]
    fn refresh_rolls_an_answer_that_arrived_after_its_period_ended() {
        let mut entry = with_limits(
            vec![report("hits", Period::Minute, Some(MINUTE_END), 5, 0)],
            &[],
        );
        entry.admit(&usage(&[("hits", 2)]), NOW);
        let stale = AuthStatus {
            authorized: true,
            usage_reports: vec![report("hits", Period::Minute, Some(MINUTE_END), 5, 4)],
            ..AuthStatus::default()
        };
        entry.refresh(Answer::Authorized, Some(&stale), (MINUTE_END + 1) * 1000);
        // The backend's 4 belong to the last minute; the 2 pending will land in this one.
        assert_eq!(limit(&entry, "hits", Period::Minute), (2, 2));
        assert_eq!(entry.usage_reports()[0].period_end, Some(MINUTE_END + 60));
    }

    #[test]
    fn requests_in_progress_keep_counting_across_a_refresh() {
        let mut entry = authorized();
        let request = usage(&[("get_hello", 3)]);
        entry.admit_awaiting_code(&request, NOW);
        assert_eq!(entry.pending().count(), 0, "not reportable before its code");
        entry.refresh(Answer::Authorized, Some(&status(AUTHORIZED)), NOW_MS);
        let used: Vec<u64> = entry.limits().map(|(_, used)| used).collect();
        assert_eq!(
            used,
            vec![3, 3, 3, 0],
            "hits month/day and get_hello hour still count it"
        );
        entry.record(&request, 200, NOW);
        assert_eq!(pending(&entry), vec![(200, "get_hello", 3)]);
        entry.refresh(Answer::Authorized, Some(&status(AUTHORIZED)), NOW_MS);
        let used: Vec<u64> = entry.limits().map(|(_, used)| used).collect();
        assert_eq!(used, vec![3, 3, 3, 0], "counted once: now as pending");
        // A request whose VM died never ends: its usage is let go after the awaiting timeout.
        entry.admit_awaiting_code(&usage(&[("hits", 5)]), NOW);
        entry.refresh(
            Answer::Authorized,
            Some(&status(AUTHORIZED)),
            NOW_MS + AWAITING_TIMEOUT_MS + 1,
        );
        let hits_month = entry.limits().next().map(|(_, used)| used);
        assert_eq!(hits_month, Some(3));
        let copy = Entry::decode(&entry.encode()).unwrap();
        assert_eq!(copy, entry);
    }

    /// Requests keep coming and ending; a few died with their VM. Their units are let go once
    /// older than the timeout, while the others' keep counting: usage is taken back by minute.
    #[test]
    fn usage_of_requests_that_died_expires_under_steady_traffic() {
        let mut entry = authorized();
        let one = usage(&[("get_hello", 1)]);
        entry.admit_awaiting_code(&usage(&[("get_hello", 4)]), NOW);
        let minutes = AWAITING_TIMEOUT_MS / 60_000 + 2;
        for minute in 1..=minutes {
            let at = NOW + minute * 60;
            entry.admit_awaiting_code(&one, at);
            entry.record(&one, 200, at);
            entry.admit_awaiting_code(&one, at + 30);
            entry.refresh(
                Answer::Authorized,
                Some(&status(AUTHORIZED)),
                (at + 31) * 1000,
            );
            let awaiting = entry
                .limits()
                .find(|(r, _)| r.metric == "get_hello")
                .map(|(_, u)| u);
            // Counted: the 2 × minute − 1 requests that ended (pending, nothing flushed here), the
            // one in progress, and the units of the requests that died until they expire (timed
            // by whole minutes: between 10 and 11 minutes after their admission).
            let timeout = AWAITING_TIMEOUT_MS / 60_000;
            if minute < timeout {
                assert_eq!(awaiting, Some(2 * minute + 4), "minute {minute}: kept");
            } else if minute > timeout {
                assert_eq!(awaiting, Some(2 * minute), "minute {minute}: let go");
            }
            entry.record(&one, 200, at + 30);
            let copy = Entry::decode(&entry.encode());
            assert_eq!(
                copy.as_ref(),
                Some(&entry),
                "minute {minute}: encoded as it is"
            );
        }
    }

    #[test]
    fn a_request_refused_after_admission_releases_its_usage() {
        let mut entry = authorized();
        let kept = usage(&[("get_hello", 2)]);
        let refused = usage(&[("get_hello", 3)]);
        entry.admit_awaiting_code(&kept, NOW);
        entry.admit_awaiting_code(&refused, NOW);
        entry.give_back(&refused, NOW);
        assert_eq!(limit(&entry, "hits", Period::Day), (2, 2));
        assert_eq!(limit(&entry, "get_hello", Period::Hour), (2, 2));
        entry.refresh(Answer::Authorized, Some(&status(AUTHORIZED)), NOW_MS);
        assert_eq!(
            limit(&entry, "get_hello", Period::Hour),
            (2, 2),
            "a refresh no longer counts it"
        );
        entry.record(&kept, 200, NOW);
        assert_eq!(
            pending(&entry),
            vec![(200, "get_hello", 2)],
            "nor reports it"
        );
        entry.refresh(Answer::Authorized, Some(&status(AUTHORIZED)), NOW_MS);
        assert_eq!(limit(&entry, "get_hello", Period::Hour), (2, 2));
    }

    #[test]
    fn refresh_replaces_the_answer_and_confirmation() {
        let mut entry = Entry::new(key(), Answer::Unknown, None, NOW_MS).unwrap();
        entry.admit_unchecked(&usage(&[("get_hello", 2)]), NOW);
        assert!(!entry.confirmed());
        entry.refresh(Answer::Authorized, Some(&status(AUTHORIZED)), NOW_MS);
        assert!(entry.confirmed());
        assert_eq!(limit(&entry, "hits", Period::Month), (2, 2));
        let long_reason = "x".repeat(300) + "é";
        entry.refresh(
            Answer::Denied {
                category: Category::AuthFailed,
                reason: long_reason,
            },
            None,
            NOW_MS,
        );
        assert!(!entry.confirmed());
        assert!(entry.usage_reports().is_empty() && entry.hierarchy().is_empty());
        assert_eq!(entry.plan, None);
        match &entry.answer {
            Answer::Denied { reason, .. } => assert_eq!(reason.len(), MAX_REASON_BYTES),
            other => panic!("{other:?}"),
        }
        // Usage is never lost by a refresh.
        assert_eq!(pending(&entry), vec![(0, "get_hello", 2)]);
    }

    #[test]
    fn oversized_answers_and_keys_are_not_cached() {
        let many = AuthStatus {
            authorized: true,
            usage_reports: (0..=MAX_REPORTS)
                .map(|i| report(&format!("m{i}"), Period::Day, Some(DAY_END), 1, 0))
                .collect(),
            ..AuthStatus::default()
        };
        assert!(Entry::new(key(), Answer::Authorized, Some(&many), NOW_MS).is_none());
        let long_names = AuthStatus {
            authorized: true,
            usage_reports: (0..20)
                .map(|i| {
                    report(
                        &format!("{i}{}", "m".repeat(200)),
                        Period::Day,
                        Some(DAY_END),
                        1,
                        0,
                    )
                })
                .collect(),
            ..AuthStatus::default()
        };
        assert!(Entry::new(key(), Answer::Authorized, Some(&long_names), NOW_MS).is_none());
        let long_plan = AuthStatus {
            authorized: true,
            plan: Some("p".repeat(MAX_ANSWER_BYTES)),
            ..AuthStatus::default()
        };
        assert!(Entry::new(key(), Answer::Authorized, Some(&long_plan), NOW_MS).is_none());
        assert!(Entry::new("k".repeat(MAX_KEY_BYTES + 1), Answer::Unknown, None, NOW_MS).is_none());
        assert!(Entry::new("k".repeat(MAX_KEY_BYTES), Answer::Unknown, None, NOW_MS).is_some());

        // A refresh with an oversized answer leaves the entry as it was, claim released.
        let mut entry = authorized();
        entry.admit(&usage(&[("hits", 1)]), NOW);
        assert!(entry.claim_refresh(NOW_MS, 1000));
        let mut before = entry.clone();
        assert!(!entry.refresh(Answer::Authorized, Some(&many), NOW_MS + 1));
        before.refreshing_since_ms = None;
        assert_eq!(entry, before);
        // Within bounds: a plan with 100 limits on 50 methods is cached.
        let big = AuthStatus {
            authorized: true,
            usage_reports: (0..100)
                .map(|i| {
                    report(
                        &format!("method_{}", i / 2),
                        Period::Day,
                        Some(DAY_END),
                        1,
                        0,
                    )
                })
                .collect(),
            ..AuthStatus::default()
        };
        let entry = Entry::new(key(), Answer::Authorized, Some(&big), NOW_MS).unwrap();
        assert!(entry.encode().len() < MAX_ANSWER_BYTES);
    }

    #[test]
    fn answers_from_verdicts() {
        let authorized = Verdict::Authorized {
            status: status(AUTHORIZED),
            limits: None,
        };
        let (answer, status_doc) = Answer::from_verdict(&authorized).unwrap();
        assert_eq!(answer, Answer::Authorized);
        assert_eq!(status_doc.unwrap().plan.as_deref(), Some("Production"));
        let disabled = Verdict::Denied {
            category: Category::MethodDisabled,
            reason: "limits_exceeded".into(),
            status: Some(status(EXCEEDED)),
            limits: None,
            retry_after: None,
        };
        assert_eq!(
            Answer::from_verdict(&disabled).unwrap().0,
            Answer::LimitsOnly
        );
        // Limits exceeded without readable limits: denied until the next refresh.
        let blind = Verdict::Denied {
            category: Category::LimitsExceeded,
            reason: "limits_exceeded".into(),
            status: None,
            limits: None,
            retry_after: None,
        };
        assert_eq!(
            Answer::from_verdict(&blind).unwrap(),
            (
                Answer::Denied {
                    category: Category::LimitsExceeded,
                    reason: "limits_exceeded".into()
                },
                None
            )
        );
        let bad_key = Verdict::Denied {
            category: Category::AuthFailed,
            reason: "user_key_invalid".into(),
            status: None,
            limits: None,
            retry_after: None,
        };
        assert_eq!(
            Answer::from_verdict(&bad_key).unwrap().0,
            Answer::Denied {
                category: Category::AuthFailed,
                reason: "user_key_invalid".into()
            }
        );
        assert!(Answer::from_verdict(&Verdict::Unavailable { detail: "x".into() }).is_none());
        let misconfigured = Verdict::Misconfigured {
            code: "x".into(),
            detail: "y".into(),
        };
        assert!(Answer::from_verdict(&misconfigured).is_none());
    }

    #[test]
    fn one_refresh_at_a_time_unless_stuck() {
        let mut entry = authorized();
        assert!(entry.claim_refresh(NOW_MS, 5_000));
        assert!(!entry.claim_refresh(NOW_MS + 1, 5_000));
        assert!(!entry.claim_refresh(NOW_MS + 5_000, 5_000));
        assert_eq!(entry.refreshing_since_ms(), Some(NOW_MS));
        // The claimer died: taken over after `stuck_after_ms`.
        assert!(entry.claim_refresh(NOW_MS + 5_001, 5_000));
        assert_eq!(entry.refreshing_since_ms(), Some(NOW_MS + 5_001));
        entry.refresh(
            Answer::Authorized,
            Some(&status(AUTHORIZED)),
            NOW_MS + 6_000,
        );
        assert!(entry.claim_refresh(NOW_MS + 6_001, 5_000));
        // A clock going backwards does not wedge the claim.
        assert!(!entry.claim_refresh(0, 5_000));
        assert_eq!(entry.age_ms(NOW_MS + 7_000), 1_000);
        assert_eq!(entry.age_ms(0), 0);
    }
}

mod reporting {
    use super::*;

    #[test]
    fn codes_move_pending_usage_between_buckets() {
        let mut entry = authorized();
        let request = usage(&[("get_hello", 1), ("hits", 1)]);
        entry.admit(&request, NOW);
        entry.admit(&request, NOW);
        entry.record_code(&request, 200);
        assert_eq!(
            pending(&entry),
            vec![
                (0, "get_hello", 1),
                (0, "hits", 1),
                (200, "get_hello", 1),
                (200, "hits", 1)
            ]
        );
        entry.record_code(&request, 503);
        assert_eq!(
            pending(&entry),
            vec![
                (200, "get_hello", 1),
                (200, "hits", 1),
                (503, "get_hello", 1),
                (503, "hits", 1)
            ]
        );
        // The usage was already sent: the code is lost, the usage is not.
        entry.admit(&request, NOW);
        entry.take_pending(1, NOW_MS);
        entry.record_code(&request, 404);
        assert_eq!(entry.pending().count(), 0);
        assert_eq!(entry.inflight_units(), 6);
    }

    #[test]
    fn take_pending_groups_transactions_and_clears_dirty() {
        let mut entry = authorized();
        entry.dirty = true;
        let request = usage(&[("get_hello", 2)]);
        entry.admit(&request, NOW);
        entry.record_code(&request, 200);
        entry.admit(&usage(&[("hits", 1)]), NOW);
        assert!(entry.has_pending());
        let transactions = entry.take_pending(9, NOW_MS);
        assert_eq!(
            transactions,
            vec![
                Transaction {
                    code: None,
                    requests: 1,
                    usage: vec![("hits".into(), 1)]
                },
                Transaction {
                    code: Some(200),
                    requests: 1,
                    usage: vec![("get_hello".into(), 2)]
                },
            ]
        );
        assert!(!entry.dirty && !entry.has_pending());
        assert_eq!(entry.inflight()[0].id, 9);
        assert_eq!(entry.inflight()[0].sent_at_ms, NOW_MS);
        assert!(entry.take_pending(10, NOW_MS).is_empty());
        assert_eq!(entry.inflight().len(), 1);
    }

    #[test]
    fn batch_outcomes_and_abandoned_batches() {
        let mut entry = authorized();
        for (batch, units) in [(1, 1), (2, 2), (3, 4)] {
            entry.admit(&usage(&[("hits", units)]), NOW);
            entry.take_pending(batch, NOW_MS + batch * 1000);
        }
        assert_eq!(entry.abandoned_batches(NOW_MS + 10_000, 7_500), vec![1, 2]);
        assert_eq!(entry.retry(2), 2);
        assert_eq!(entry.pending_units(), 2);
        assert_eq!(entry.forget(1), 1);
        assert_eq!(entry.ack(3), 4);
        assert_eq!((entry.ack(3), entry.forget(3), entry.retry(3)), (0, 0, 0));
        assert!(entry.abandoned_batches(u64::MAX, 0).is_empty());
        // Forgotten or not, what was admitted stays charged until the next refresh.
        assert_eq!(limit(&entry, "hits", Period::Day), (7, 7));
    }

    /// A tiny deterministic generator: the sequences are reproducible from their seed.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    #[derive(Default)]
    struct Totals {
        admitted: u64,
        acked: u64,
        forgotten: u64,
    }

    #[test]
    fn usage_is_conserved_over_random_sequences() {
        let metrics = ["hits", "get_hello", "disabled_m", "unlimited"];
        let codes = [
            200, 201, 204, 301, 400, 401, 403, 404, 429, 500, 503, 0, 42, 1000,
        ];
        for seed in 1..=200u64 {
            let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
            let mut entry = authorized();
            let mut totals = Totals::default();
            let mut next_batch = 0;
            let mut now = NOW;
            for step in 0..300 {
                let metric = metrics[rng.below(4) as usize];
                let request = usage(&[(metric, rng.below(5)), ("hits", rng.below(2))]);
                match rng.below(10) {
                    0..=2 => {
                        let before = entry.pending_units() + entry.inflight_units();
                        if let Admission::Allowed { .. } = entry.admit(&request, now) {
                            totals.admitted += request.units();
                        }
                        let after = entry.pending_units() + entry.inflight_units();
                        assert!(after >= before);
                        if rng.below(2) == 0 {
                            entry.record_code(
                                &request,
                                codes[rng.below(codes.len() as u64) as usize],
                            );
                        }
                    }
                    3 => {
                        entry.admit_unchecked(&request, now);
                        totals.admitted += request.units();
                    }
                    4 | 5 => {
                        next_batch += 1;
                        entry.take_pending(next_batch, now * 1000);
                    }
                    6 => {
                        if let Some(batch) = entry.inflight().first().map(|b| b.id) {
                            totals.acked += entry.ack(batch);
                        }
                    }
                    7 => {
                        if let Some(batch) = entry.inflight().last().map(|b| b.id) {
                            entry.retry(batch);
                        }
                    }
                    8 => {
                        for batch in entry.abandoned_batches(now * 1000, 30_000) {
                            totals.forgotten += entry.forget(batch);
                        }
                    }
                    _ => {
                        now += rng.below(90);
                        let xml = AUTHORIZED.replace(
                            "<current_value>0</current_value>",
                            &format!("<current_value>{}</current_value>", rng.below(50)),
                        );
                        entry.refresh(Answer::Authorized, Some(&status(&xml)), now * 1000);
                        // used = unacknowledged usage landing on each limit.
                        let unreported = |on: &str| -> u64 {
                            entry
                                .pending()
                                .chain(entry.inflight().iter().flat_map(|b| b.tallies.iter()))
                                .chain(entry.accepted().iter())
                                .filter(|t| t.metric != REQUESTS)
                                .filter(|t| {
                                    t.metric == on || (on == "hits" && t.metric != "unlimited")
                                })
                                .map(|t| t.delta)
                                .sum()
                        };
                        for (report, used) in entry.limits() {
                            if report.period_end.is_none_or(|end| end > now) {
                                assert_eq!(
                                    used,
                                    unreported(&report.metric),
                                    "seed {seed} step {step}"
                                );
                            }
                        }
                    }
                }
                assert_eq!(
                    totals.admitted,
                    totals.acked
                        + entry.pending_units()
                        + entry.inflight_units()
                        + totals.forgotten,
                    "seed {seed} step {step}"
                );
                assert!(entry.inflight().len() <= MAX_BATCHES);
                let decoded = Entry::decode(&entry.encode()).unwrap();
                assert_eq!(decoded, entry, "seed {seed} step {step}");
            }
        }
    }
}

mod stored_form {
    use super::*;

    /// An entry with every field set to something other than its default.
    fn full_entry() -> Entry {
        let mut hierarchy = Hierarchy::new();
        hierarchy.add("hits", "get_hello");
        hierarchy.add("hits", "ünïcode");
        let status = AuthStatus {
            authorized: false,
            reason: None,
            plan: Some("All & <Periods>".into()),
            usage_reports: vec![
                report("hits", Period::Eternity, None, 130, 7),
                report(
                    "hits",
                    Period::Year,
                    parse_timestamp("2027-01-01 00:00:00"),
                    101,
                    5,
                ),
                report(
                    "get_hello",
                    Period::Minute,
                    Some(MINUTE_END),
                    u64::MAX,
                    u64::MAX - 1,
                ),
                report("ünïcode", Period::Week, Some(1_796_083_200), 0, 0),
            ],
            hierarchy,
        };
        let mut entry = Entry::new(
            "s1:1u300:".to_owned() + &"k".repeat(300),
            Answer::Denied {
                category: Category::AppInactive,
                reason: "application_not_active".into(),
            },
            Some(&status),
            NOW_MS,
        )
        .unwrap();
        entry.admit_unchecked(&usage(&[("get_hello", 1), ("ünïcode", 2)]), NOW);
        entry.take_pending(u64::MAX, u64::MAX);
        entry.admit_unchecked(&usage(&[("other", 300)]), NOW);
        entry.take_pending(3, NOW_MS);
        let request = usage(&[("hits", 5), ("get_hello", 1)]);
        entry.admit_unchecked(&request, NOW);
        entry.record_code(&usage(&[("hits", 2)]), 999);
        entry.record_code(&usage(&[("get_hello", 1)]), 100);
        entry.dirty = true;
        entry.claim_refresh(u64::MAX, 0);
        entry
    }

    #[test]
    fn every_field_survives_a_round_trip() {
        let entry = full_entry();
        assert!(entry.dirty && entry.refreshing_since_ms().is_some());
        assert_eq!(entry.inflight().len(), 2);
        assert_eq!(entry.pending().count(), 3);
        let bytes = entry.encode();
        assert_eq!(bytes[0], VERSION);
        let decoded = Entry::decode(&bytes).unwrap();
        assert_eq!(decoded, entry);
        assert_eq!(decoded.encode(), bytes);
        assert_eq!(stored_key(&bytes), Some(entry.key.as_str()));

        for answer in [Answer::Authorized, Answer::LimitsOnly, Answer::Unknown] {
            let mut other = entry.clone();
            other.answer = answer;
            other.plan = None;
            other.dirty = false;
            other.refresh(other.answer.clone(), None, 0);
            assert_eq!(Entry::decode(&other.encode()).unwrap(), other);
        }
        for category in Category::ALL {
            let mut other = entry.clone();
            other.answer = Answer::Denied {
                category,
                reason: String::new(),
            };
            assert_eq!(Entry::decode(&other.encode()).unwrap(), other);
        }
        let mut empty_plan = entry.clone();
        empty_plan.plan = Some(String::new());
        assert_eq!(Entry::decode(&empty_plan.encode()).unwrap(), empty_plan);
    }

    #[test]
    fn a_typical_entry_is_small() {
        let mut entry = authorized();
        entry.admit(&usage(&[("get_hello", 1)]), NOW);
        entry.admit(&usage(&[("hits", 1)]), NOW);
        entry.record_code(&usage(&[("get_hello", 1)]), 200);
        entry.record_code(&usage(&[("hits", 1)]), 404);
        entry.admit(&usage(&[("get_hello", 1)]), NOW);
        let bytes = entry.encode();
        // Quoted in the module documentation.
        assert_eq!(bytes.len(), 129);
    }

    #[test]
    fn truncations_and_trailing_bytes_are_refused() {
        let bytes = full_entry().encode();
        for end in 0..bytes.len() {
            assert!(
                Entry::decode(&bytes[..end]).is_none(),
                "prefix of {end} bytes"
            );
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(Entry::decode(&longer).is_none());
        let mut older = bytes.clone();
        older[0] = OLDEST_READABLE - 1;
        assert!(Entry::decode(&older).is_none());
        assert!(!is_newer(&older));
        assert_eq!(stored_key(&[]), None);
        assert_eq!(stored_key(&[VERSION, 5, b'a']), None);
    }

    #[test]
    fn entries_of_a_newer_format_are_recognised_by_their_key_but_not_decoded() {
        let entry = full_entry();
        let mut newer = entry.encode();
        newer[0] = VERSION + 1;
        newer.extend_from_slice(b"whatever a later layout holds");
        assert!(Entry::decode(&newer).is_none());
        assert!(is_newer(&newer));
        assert_eq!(stored_key(&newer), Some(entry.key.as_str()));
        assert!(!is_newer(&entry.encode()));
        assert!(!is_newer(&[]));
    }

    #[test]
    fn corrupted_bytes_never_panic() {
        let bytes = full_entry().encode();
        let mut decoded = 0;
        for position in 0..bytes.len() {
            for value in [0x00, 0x01, 0x07, 0x08, 0x0f, 0x7f, 0x80, 0xc3, 0xff] {
                let mut corrupt = bytes.clone();
                corrupt[position] = value;
                if let Some(entry) = Entry::decode(&corrupt) {
                    decoded += 1;
                    // Whatever decodes re-encodes to itself, and can still decide.
                    assert_eq!(Entry::decode(&entry.encode()).unwrap(), entry);
                    let mut entry = entry;
                    entry.admit(&usage(&[("hits", 1)]), NOW);
                    entry.take_pending(1, 0);
                }
            }
        }
        assert!(decoded > 0);
    }

    #[test]
    fn garbage_never_panics() {
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        for length in 0..2000 {
            let bytes: Vec<u8> = (0..length % 200)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    (state >> 24) as u8
                })
                .collect();
            let _ = Entry::decode(&bytes);
            let mut versioned = bytes.clone();
            versioned.insert(0, VERSION);
            let _ = Entry::decode(&versioned);
            let _ = stored_key(&versioned);
        }
        // Counts claiming more items than bytes left, varints that never end or overflow.
        for bytes in [
            vec![
                VERSION, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f,
            ],
            vec![
                VERSION, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01,
            ],
            vec![VERSION, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f],
            vec![VERSION, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        ] {
            assert!(Entry::decode(&bytes).is_none());
        }
    }
}

/// `cargo test -p tollgate --release -- --ignored --nocapture cache_hit_cost`
#[test]
#[ignore = "timing, run in release"]
fn cache_hit_cost() {
    // Four limits on two metrics, never reached: every hit is allowed and charged.
    let entry = with_limits(
        vec![
            report("hits", Period::Month, Some(MONTH_END), 1 << 40, 0),
            report("hits", Period::Day, Some(DAY_END), 1 << 40, 0),
            report("get_hello", Period::Hour, Some(HOUR_END), 1 << 40, 0),
            report("get_hello", Period::Minute, Some(MINUTE_END), 1 << 40, 0),
        ],
        &[("hits", "get_hello")],
    );
    let mut bytes = entry.encode();
    let request = usage(&[("get_hello", 1)]);
    let rounds = 200_000u64;
    let started = std::time::Instant::now();
    for round in 0..rounds {
        let mut entry = Entry::decode(&bytes).unwrap();
        let admission = entry.admit(&request, NOW + round / 100_000);
        assert!(matches!(admission, Admission::Allowed { .. }));
        std::hint::black_box(&admission);
        entry.record_code(&request, 200);
        if round % 1000 == 0 {
            entry.take_pending(round, 0);
            entry.ack(round);
        }
        bytes = entry.encode();
    }
    let per_hit = started.elapsed() / u32::try_from(rounds).unwrap();
    println!(
        "decode + admit + record_code + encode: {per_hit:?} per hit, {} bytes",
        bytes.len()
    );
}

mod accepted_usage {
    use super::*;

    /// The authorized answer with `current` on every limit.
    fn answer_with(current: u64) -> AuthStatus {
        status(&AUTHORIZED.replace(
            "<current_value>0</current_value>",
            &format!("<current_value>{current}</current_value>"),
        ))
    }

    fn hits_used(entry: &Entry) -> u64 {
        entry
            .limits()
            .find(|(report, _)| report.metric == "hits" && report.period == Period::Day)
            .map(|(report, _)| report.current_value)
            .unwrap()
    }

    /// An entry with 3 requests of `get_hello` reported and accepted (202).
    fn reported_three() -> Entry {
        let mut entry = authorized();
        for _ in 0..3 {
            entry.admit_unchecked(&usage(&[("get_hello", 1)]), NOW);
        }
        entry.take_pending(1, NOW_MS);
        entry.ack(1);
        entry
    }

    #[test]
    fn a_refresh_that_does_not_show_accepted_usage_keeps_counting_it() {
        let mut entry = reported_three();
        assert_eq!(hits_used(&entry), 3);
        // apisonator's worker has not applied the report yet: its counters still say 0.
        entry.refresh(Answer::Authorized, Some(&answer_with(0)), NOW_MS + 5_000);
        assert_eq!(hits_used(&entry), 3, "still counted");
        assert_eq!(Entry::decode(&entry.encode()).as_ref(), Some(&entry));
        // Now it has: the answer shows it, and it is not counted twice.
        entry.refresh(Answer::Authorized, Some(&answer_with(3)), NOW_MS + 10_000);
        assert_eq!(hits_used(&entry), 3);
        assert!(entry.accepted().is_empty());
    }

    #[test]
    fn accepted_usage_is_counted_for_a_bounded_time_at_most() {
        let mut entry = reported_three();
        entry.refresh(
            Answer::Authorized,
            Some(&answer_with(0)),
            NOW_MS + ACCEPTED_KEPT_MS + 1,
        );
        assert_eq!(hits_used(&entry), 0, "let go after {ACCEPTED_KEPT_MS} ms");
    }

    #[test]
    fn entries_without_accepted_usage_keep_the_earlier_layout() {
        let mut entry = reported_three();
        entry.refresh(Answer::Authorized, Some(&answer_with(3)), NOW_MS + 1_000);
        let bytes = entry.encode();
        let mut with = reported_three();
        with.refresh(Answer::Authorized, Some(&answer_with(0)), NOW_MS + 1_000);
        assert!(
            with.encode().len() > bytes.len(),
            "the accepted section only when needed"
        );
        assert_eq!(Entry::decode(&bytes), Some(entry));
    }
}

mod accepted_section {
    use super::*;

    #[test]
    fn an_empty_accepted_section_is_refused() {
        // Found by the `cache_entry` fuzz target: the section is written only when it holds usage, so an
        // empty one decoded to an entry that encoded differently.
        let mut bytes = authorized().encode();
        bytes.extend_from_slice(&[0, 7]); // no tallies, accepted_at_ms 7
        assert_eq!(Entry::decode(&bytes), None);
    }
}
