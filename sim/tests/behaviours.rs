//! The simulator's semantics, each run on two seeds that share no ids, names, plans or limits
//! (`reference.json` and `other.json`): status bodies, caller and application errors, limit
//! headers, metric hierarchy, calendar periods at their boundaries, batch reports.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod support;

use support::{FIXTURES, Fixture, Report, Sim, error_xml, status_xml};

fn reset(sim: &Sim) {
    assert_eq!(sim.json("POST", "/_sim/reset", "").0, 200);
}

#[test]
fn status_bodies() {
    for f in FIXTURES {
        let sim = f.start();
        let r = sim.get(&f.url("authorize", f.all_app, f.all_key, ""));
        assert_eq!(
            (r.status, r.text()),
            (
                200,
                status_xml(None, None, f.all_plan_xml, &f.all_reports(0), "")
            ),
            "{}",
            f.seed
        );
        let r = sim.get(&f.url(
            "authrep",
            f.all_app,
            f.all_key,
            &format!("&usage%5B{}%5D=2", f.child),
        ));
        assert_eq!(
            r.text(),
            status_xml(None, None, f.all_plan_xml, &f.all_reports(2), ""),
            "{}",
            f.seed
        );
        let r = sim.get(&f.url("authorize", f.unlimited_app, None, ""));
        let expected = format!(
            "{}<status><authorized>true</authorized><plan>{}</plan></status>",
            support::XML_DECL,
            f.unlimited_plan
        );
        assert_eq!((r.status, r.text()), (200, expected));
        let r = sim.get(&f.url("authorize", f.suspended_app, f.suspended_key, ""));
        assert_eq!(r.status, 409);
        assert!(
            r.text().contains(
                "<authorized>false</authorized><reason>application is not active</reason>"
            ),
            "{}",
            f.seed
        );
    }
}

#[test]
fn caller_and_application_errors() {
    for f in FIXTURES {
        let sim = f.start();
        let (s, t, pk) = (f.service, f.token, f.provider_key);
        let cases = [
            (
                format!("app_id={}", f.all_app),
                403,
                "provider_key_or_service_token_required",
                "Provider key or service token are required".to_owned(),
            ),
            (
                format!("service_token={t}"),
                422,
                "service_id_missing",
                "Service ID is missing".to_owned(),
            ),
            (
                format!("service_token={t}x&service_id={s}"),
                403,
                "service_token_invalid",
                format!("service token \"{t}x\" or service id \"{s}\" is invalid"),
            ),
            (
                format!("provider_key={pk}x"),
                403,
                "provider_key_invalid_or_service_missing",
                format!("provider key \"{pk}x\" invalid and/or service ID missing"),
            ),
            (
                format!("provider_key={pk}x&service_id={s}"),
                403,
                "provider_key_invalid",
                format!("provider key \"{pk}x\" is invalid"),
            ),
            (
                format!("provider_key={pk}&service_id={s}0"),
                403,
                "service_id_invalid",
                format!("service id \"{s}0\" is invalid"),
            ),
            (
                format!("service_token={t}&service_id={s}&app_id={}x", f.all_app),
                404,
                "application_not_found",
                format!("application with id=\"{}x\" was not found", f.all_app),
            ),
            (
                format!("service_token={t}&service_id={s}&user_key={}", f.all_app),
                403,
                "user_key_invalid",
                format!("user key \"{}\" is invalid", f.all_app),
            ),
            (
                format!(
                    "{}&usage%5B{}x%5D=1",
                    f.creds(f.all_app, f.all_key),
                    f.parent
                ),
                404,
                "metric_invalid",
                format!("metric \"{}x\" is invalid", f.parent),
            ),
            (
                format!(
                    "{}&usage%5B{}%5D=1.5",
                    f.creds(f.all_app, f.all_key),
                    f.child
                ),
                403,
                "usage_value_invalid",
                format!("usage value \"1.5\" for metric \"{}\" is invalid", f.child),
            ),
        ];
        for (query, status, code, message) in cases {
            let r = sim.get(&format!("/transactions/authrep.xml?{query}"));
            assert_eq!(
                (r.status, r.text()),
                (status, error_xml(code, &message)),
                "{} {query}",
                f.seed
            );
        }
        // Provider key instead of a token, default service when service_id is omitted.
        let r = sim.get(&format!(
            "/transactions/authorize.xml?provider_key={pk}&app_id={}{}",
            f.all_app,
            f.all_key
                .map(|k| format!("&app_key={k}"))
                .unwrap_or_default()
        ));
        assert_eq!(r.status, 200, "{}", f.seed);
        // The key is required when the application has keys.
        if let Some(key) = f.all_key {
            let r = sim.get_opts(
                &f.url("authorize", f.all_app, Some(&format!("{key}x")), ""),
                "rejection_reason_header=1",
            );
            assert_eq!(
                r.header("3scale-rejection-reason"),
                Some("application_key_invalid")
            );
            assert!(r.text().contains(&format!(
                "<reason>application key \"{key}x\" is invalid</reason>"
            )));
        }
    }
}

#[test]
fn limit_header_arithmetic() {
    let options = "limit_headers=1&rejection_reason_header=1";
    for f in FIXTURES {
        let sim = f.start();
        let n = f.minute_limit;
        let authrep = |usage: &str, metric: &str| {
            sim.get_opts(
                &f.url(
                    "authrep",
                    f.small_app,
                    f.small_key,
                    &format!("&usage%5B{metric}%5D={usage}"),
                ),
                options,
            )
        };
        for k in 1..=n {
            let r = authrep("1", f.parent);
            assert_eq!(r.status, 200, "{}", f.seed);
            let remaining = (n - k).to_string();
            assert_eq!(
                r.limits(),
                (
                    Some(remaining.as_str()),
                    Some("9"),
                    Some(n.to_string().as_str())
                ),
                "{} call {k}",
                f.seed
            );
        }
        let r = authrep("1", f.parent);
        assert_eq!(r.status, 409);
        assert_eq!(r.header("3scale-rejection-reason"), Some("limits_exceeded"));
        assert_eq!(
            r.limits(),
            (Some("0"), Some("9"), Some(n.to_string().as_str()))
        );
        assert_eq!(
            sim.usage_in(f.service, f.small_app, f.parent, "minute"),
            n,
            "denied calls record nothing"
        );

        // Identical calls remaining = floor((max - current after this call) / usage of this call).
        reset(&sim);
        let r = authrep("2", f.parent);
        assert_eq!(r.limits().0, Some(((n - 2) / 2).to_string().as_str()));
        // Child usage counts on the parent's limit.
        reset(&sim);
        let r = authrep("1", f.child);
        assert_eq!(
            r.limits().0,
            Some((n - 1).to_string().as_str()),
            "{}",
            f.seed
        );
        // authorize: the predicted usage is not added to the current value.
        reset(&sim);
        let r = sim.get_opts(
            &f.url(
                "authorize",
                f.small_app,
                f.small_key,
                &format!("&usage%5B{}%5D=1", f.parent),
            ),
            options,
        );
        assert_eq!(
            r.limits(),
            (
                Some(n.to_string().as_str()),
                Some("9"),
                Some(n.to_string().as_str())
            )
        );
        // Without usage, or with usage 0: unconstrained, no max-value.
        let r = sim.get_opts(&f.url("authorize", f.small_app, f.small_key, ""), options);
        assert_eq!(r.limits(), (Some("-1"), Some("-1"), None));
        let r = authrep("0", f.parent);
        assert_eq!(
            (r.status, r.limits()),
            (200, (Some("-1"), Some("-1"), None))
        );
        // A disabled metric: 0 remaining, no reset, max-value 0 (APIcast's "auth failed").
        let r = sim.get_opts(
            &f.url(
                "authorize",
                f.disabled_app,
                f.disabled_key,
                &format!("&usage%5B{}%5D=1", f.disabled),
            ),
            options,
        );
        assert_eq!(r.status, 409);
        assert_eq!(r.header("3scale-rejection-reason"), Some("limits_exceeded"));
        assert_eq!(r.limits(), (Some("0"), Some("-1"), Some("0")), "{}", f.seed);
        // No limits at all.
        let r = sim.get_opts(
            &f.url(
                "authrep",
                f.unlimited_app,
                None,
                &format!("&usage%5B{}%5D=5", f.parent),
            ),
            options,
        );
        assert_eq!(
            (r.status, r.limits()),
            (200, (Some("-1"), Some("-1"), None))
        );
        // Other rejections carry only the reason.
        let r = sim.get_opts(
            &f.url(
                "authrep",
                f.suspended_app,
                f.suspended_key,
                &format!("&usage%5B{}%5D=1", f.parent),
            ),
            options,
        );
        assert_eq!(
            (r.header("3scale-rejection-reason"), r.limits()),
            (Some("application_not_active"), (None, None, None))
        );
        // The longest period wins a tie: with the seven limits of all_app the minute one is tightest.
        let r = sim.get_opts(
            &f.url(
                "authrep",
                f.all_app,
                f.all_key,
                &format!("&usage%5B{}%5D=1", f.parent),
            ),
            options,
        );
        let tightest = *f.all_maxes.iter().min().unwrap();
        assert_eq!(
            r.limits().2,
            Some(tightest.to_string().as_str()),
            "{}",
            f.seed
        );
    }
}

#[test]
fn metric_hierarchy() {
    for f in FIXTURES {
        let sim = f.start();
        let authrep = |usage: &str, options: &str| {
            let r = sim.get_opts(&f.url("authrep", f.all_app, f.all_key, usage), options);
            assert_eq!(r.status, 200, "{} {usage}: {}", f.seed, r.text());
            r
        };
        authrep(&format!("&usage%5B{}%5D=2", f.child), "");
        for period in ["minute", "hour", "day", "week", "month", "year", "eternity"] {
            assert_eq!(
                sim.usage_in(f.service, f.all_app, f.parent, period),
                2,
                "{} {period}",
                f.seed
            );
            assert_eq!(sim.usage_in(f.service, f.all_app, f.child, period), 2);
        }
        // Parent and child at once: the parent counts both.
        authrep(
            &format!("&usage%5B{}%5D=1&usage%5B{}%5D=1", f.parent, f.child),
            "",
        );
        assert_eq!(sim.usage_in(f.service, f.all_app, f.parent, "day"), 4);
        assert_eq!(sim.usage_in(f.service, f.all_app, f.child, "day"), 3);
        // flat_usage: the caller already propagated.
        authrep(&format!("&usage%5B{}%5D=1", f.child), "flat_usage=1");
        assert_eq!(sim.usage_in(f.service, f.all_app, f.parent, "day"), 4);
        assert_eq!(sim.usage_in(f.service, f.all_app, f.child, "day"), 4);
        // Set operations propagate as sets.
        authrep(&format!("&usage%5B{}%5D=%2310", f.child), "");
        assert_eq!(sim.usage_in(f.service, f.all_app, f.parent, "day"), 10);
        assert_eq!(sim.usage_in(f.service, f.all_app, f.child, "eternity"), 10);
        // hierarchy=1: one <metric> per usage report, duplicates included.
        let r = sim.get_opts(&f.url("authorize", f.all_app, f.all_key, ""), "hierarchy=1");
        let element = format!(
            "<metric name=\"{}\" children=\"{}\"/>",
            f.parent, f.children
        );
        assert!(
            r.text().ends_with(&format!(
                "<hierarchy>{}</hierarchy></status>",
                element.repeat(7)
            )),
            "{}",
            r.text()
        );
        if let Some((grandchild, middle)) = f.grandchild {
            authrep(&format!("&usage%5B{grandchild}%5D=1"), "");
            assert_eq!(sim.usage_in(f.service, f.all_app, grandchild, "day"), 1);
            assert_eq!(sim.usage_in(f.service, f.all_app, middle, "day"), 1);
            assert_eq!(sim.usage_in(f.service, f.all_app, f.parent, "day"), 11);
        }
    }
}

#[test]
fn periods_at_their_boundaries() {
    for f in FIXTURES {
        let sim = f.start();
        let bump = || {
            let r = sim.get(&f.url(
                "authrep",
                f.all_app,
                f.all_key,
                &format!("&usage%5B{}%5D=1", f.parent),
            ));
            assert_eq!(r.status, 200, "{}", r.text());
            r
        };
        // New Year's Eve, last second (a Thursday).
        sim.freeze("2026-12-31 23:59:59");
        let r = bump();
        for bounds in [
            "<period_start>2026-01-01 00:00:00 +0000</period_start><period_end>2027-01-01 00:00:00 +0000</period_end>",
            "<period_start>2026-12-01 00:00:00 +0000</period_start><period_end>2027-01-01 00:00:00 +0000</period_end>",
            "<period_start>2026-12-28 00:00:00 +0000</period_start><period_end>2027-01-04 00:00:00 +0000</period_end>",
            "<period_start>2026-12-31 00:00:00 +0000</period_start><period_end>2027-01-01 00:00:00 +0000</period_end>",
            "<period_start>2026-12-31 23:00:00 +0000</period_start><period_end>2027-01-01 00:00:00 +0000</period_end>",
            "<period_start>2026-12-31 23:59:00 +0000</period_start><period_end>2027-01-01 00:00:00 +0000</period_end>",
        ] {
            assert!(r.text().contains(bounds), "{} {bounds}", f.seed);
        }
        sim.advance(1);
        let usage = sim.usage(f.service, f.all_app, f.parent);
        let expected = serde_json::json!({"minute": 0, "hour": 0, "day": 0, "week": 1, "month": 0, "year": 0, "eternity": 1});
        assert_eq!(usage, expected, "{}", f.seed);
        let r = sim.get(&f.url("authorize", f.all_app, f.all_key, ""));
        assert!(r.text().contains("<period_start>2027-01-01 00:00:00 +0000</period_start><period_end>2028-01-01 00:00:00 +0000</period_end>"));
        assert!(r.text().contains("<period_start>2027-01-01 00:00:00 +0000</period_start><period_end>2027-01-01 00:01:00 +0000</period_end>"));
        // Sunday's last second, then Monday: only the week rolls over (and shorter periods).
        sim.freeze("2027-01-03 23:59:59");
        bump();
        assert_eq!(sim.usage_in(f.service, f.all_app, f.parent, "week"), 2);
        sim.advance(1);
        let usage = sim.usage(f.service, f.all_app, f.parent);
        assert_eq!(
            usage,
            serde_json::json!({"minute": 0, "hour": 0, "day": 0, "week": 0, "month": 1, "year": 1, "eternity": 2})
        );
        // End of an hour inside a day.
        sim.freeze("2027-01-04 10:59:59");
        bump();
        sim.advance(1);
        let usage = sim.usage(f.service, f.all_app, f.parent);
        assert_eq!(
            (
                usage["minute"].as_i64(),
                usage["hour"].as_i64(),
                usage["day"].as_i64()
            ),
            (Some(0), Some(0), Some(1))
        );
        // Leap day.
        sim.freeze("2028-02-29 12:00:00");
        let r = sim.get(&f.url("authorize", f.all_app, f.all_key, ""));
        assert!(r.text().contains("<period_start>2028-02-01 00:00:00 +0000</period_start><period_end>2028-03-01 00:00:00 +0000</period_end>"));
        assert!(r.text().contains("<period_start>2028-02-28 00:00:00 +0000</period_start><period_end>2028-03-06 00:00:00 +0000</period_end>"));
        // A minute limit used up at :59 is free again one second later.
        sim.freeze("2027-05-05 05:05:59");
        let small = || {
            sim.get(&f.url(
                "authrep",
                f.small_app,
                f.small_key,
                &format!("&usage%5B{}%5D=1", f.parent),
            ))
            .status
        };
        for _ in 0..f.minute_limit {
            assert_eq!(small(), 200);
        }
        assert_eq!(small(), 409);
        sim.advance(1);
        assert_eq!(small(), 200, "{}", f.seed);
    }
}

#[test]
fn real_clock_periods_bracket_now() {
    for f in FIXTURES {
        let sim = Sim::start(Some(f.seed));
        let epoch = || {
            sim.json("GET", "/_sim/clock", "").1["epoch"]
                .as_i64()
                .unwrap()
        };
        let before = epoch();
        let text = sim
            .get(&f.url("authorize", f.all_app, f.all_key, ""))
            .text();
        let after = epoch();
        assert_eq!(sim.json("GET", "/_sim/clock", "").1["frozen"], false);
        let times: Vec<i64> = text
            .split("<period_start>")
            .skip(1)
            .map(|s| {
                let start = parse_time(&s[..25]);
                let end = parse_time(&s[s.find("<period_end>").unwrap() + 12..][..25]);
                assert!(
                    start <= after && before < end,
                    "{start} {before} {after} {end}"
                );
                end - start
            })
            .collect();
        // year, month, week, day, hour, minute
        assert_eq!(times.len(), 6);
        assert!(times[0] >= 365 * 86_400 && times[1] >= 28 * 86_400);
        assert_eq!(&times[2..], &[7 * 86_400, 86_400, 3_600, 60]);
    }
}

/// `YYYY-MM-DD HH:MM:SS +0000` to epoch seconds (test-side, independent of the simulator).
fn parse_time(s: &str) -> i64 {
    assert!(s.ends_with(" +0000"), "{s}");
    let n = |a: usize, b: usize| s[a..b].parse::<i64>().unwrap();
    let (y, m, d) = (n(0, 4), n(5, 7), n(8, 10));
    let y2 = if m <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + d - 1;
    let days = era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468;
    days * 86_400 + n(11, 13) * 3_600 + n(14, 16) * 60 + n(17, 19)
}

#[test]
fn batch_reports_are_all_or_nothing() {
    for f in FIXTURES {
        let sim = f.start();
        let good = format!(
            "transactions[0][app_id]={}&transactions[0][usage][{}]=1",
            f.all_app, f.parent
        );
        let base = format!("service_token={}&service_id={}&{good}", f.token, f.service);
        let voiding = [
            (
                format!(
                    "transactions[1][app_id]={}zz&transactions[1][usage][{}]=1",
                    f.all_app, f.parent
                ),
                "application_not_found",
            ),
            (
                format!(
                    "transactions[1][app_id]={}&transactions[1][usage][{}zz]=1",
                    f.all_app, f.parent
                ),
                "metric_invalid",
            ),
            (
                format!(
                    "transactions[1][app_id]={}&transactions[1][usage][{}]=x",
                    f.all_app, f.parent
                ),
                "usage_value_invalid",
            ),
            (
                format!(
                    "transactions[1][app_id]={}&transactions[1][usage][{}]=1&transactions[1][timestamp]=2020-01-01%2000:00:00",
                    f.all_app, f.parent
                ),
                "transaction_timestamp_too_old",
            ),
            (
                format!(
                    "transactions[1][app_id]={}&transactions[1][usage][{}]=1&transactions[1][timestamp]=2099-01-01%2000:00:00",
                    f.all_app, f.parent
                ),
                "transaction_timestamp_too_new",
            ),
        ];
        for (i, (bad, code)) in voiding.iter().enumerate() {
            let r = sim.post_form("/transactions.xml", &format!("{base}&{bad}"));
            assert_eq!(r.status, 202, "{bad}");
            assert_eq!(
                sim.usage_in(f.service, f.all_app, f.parent, "eternity"),
                0,
                "{} {bad}",
                f.seed
            );
            let errors = sim.errors(f.service);
            assert_eq!(errors["count"], i + 1);
            assert_eq!(errors["errors"][0]["code"], *code, "{bad}");
            assert_eq!(errors["errors"][0]["context_info"], serde_json::json!({}));
        }
        // Over-limit reports are accepted: reports never check limits.
        let over = f.all_maxes[6] + 1;
        let r = sim.post_form("/transactions.xml", &format!("service_token={}&service_id={}&transactions[0][app_id]={}&transactions[0][usage][{}]={over}", f.token, f.service, f.all_app, f.parent));
        assert_eq!(r.status, 202);
        assert_eq!(sim.usage_in(f.service, f.all_app, f.parent, "minute"), over);
        let r = sim.get(&f.url("authorize", f.all_app, f.all_key, ""));
        assert_eq!(r.status, 409);
        assert!(r.text().contains("period=\"minute\" exceeded=\"true\">"));
        // Log codes are stored with usage only.
        let r = sim.post_form("/transactions.xml", &format!("service_token={}&service_id={}&transactions[0][app_id]={}&transactions[0][usage][{}]=1&transactions[0][log][code]=503&transactions[1][app_id]={}&transactions[1][log][code]=404", f.token, f.service, f.unlimited_app, f.parent, f.unlimited_app));
        assert_eq!(r.status, 202);
        let (_, codes) = sim.json(
            "GET",
            &format!(
                "/_sim/services/{}/applications/{}/response_codes",
                f.service, f.unlimited_app
            ),
            "",
        );
        assert_eq!(
            codes,
            serde_json::json!({"codes": {"503": 1, "5XX": 1}}),
            "{}",
            f.seed
        );
    }
}

#[test]
fn authrep_response_codes() {
    for f in FIXTURES {
        let sim = f.start();
        let with_code = |code: &str, usage: &str| {
            sim.get(&f.url(
                "authrep",
                f.unlimited_app,
                None,
                &format!("&usage%5B{}%5D={usage}&log%5Bcode%5D={code}", f.parent),
            ))
        };
        for code in [
            "200", "201", "302", "403", "404", "418", "500", "502", "503", "abc", "2000",
        ] {
            assert_eq!(with_code(code, "1").status, 200);
        }
        with_code("200", "0");
        let (_, codes) = sim.json(
            "GET",
            &format!(
                "/_sim/services/{}/applications/{}/response_codes",
                f.service, f.unlimited_app
            ),
            "",
        );
        let expected = serde_json::json!({"codes": {"200": 1, "2XX": 2, "403": 1, "404": 1, "4XX": 3, "500": 1, "503": 1, "5XX": 3}});
        assert_eq!(codes, expected, "{}", f.seed);
        // Denied calls record no code either.
        sim.get(&f.url(
            "authrep",
            f.suspended_app,
            f.suspended_key,
            &format!("&usage%5B{}%5D=1&log%5Bcode%5D=200", f.parent),
        ));
        let (_, codes) = sim.json(
            "GET",
            &format!(
                "/_sim/services/{}/applications/{}/response_codes",
                f.service, f.suspended_app
            ),
            "",
        );
        assert_eq!(codes, serde_json::json!({"codes": {}}));
    }
}

#[test]
fn demo_seed_has_what_the_demo_needs() {
    let sim = Sim::start(Some("demo.json"));
    let q = |svc: &str, tok: &str, creds: &str, usage: &str| {
        sim.get(&format!("/transactions/authrep.xml?service_token={tok}&service_id={svc}&{creds}&usage%5B{usage}%5D=1"))
    };
    let plan = |r: &support::Response| {
        r.text()
            .split("<plan>")
            .nth(1)
            .and_then(|s| s.split("</plan>").next())
            .map(str::to_owned)
    };
    let r = q(
        "svc-appid",
        "demo-token-appid",
        "app_id=sandbox-app&app_key=sandbox-key",
        "get_items",
    );
    assert_eq!((r.status, plan(&r).as_deref()), (200, Some("Sandbox")));
    let r = q(
        "svc-appid",
        "demo-token-appid",
        "app_id=sandbox-app&app_key=sandbox-key",
        "create_item",
    );
    assert_eq!(r.status, 409, "writes are disabled on Sandbox");
    let r = q(
        "svc-appid",
        "demo-token-appid",
        "app_id=prod-app&app_key=prod-key",
        "create_item",
    );
    assert_eq!((r.status, plan(&r).as_deref()), (200, Some("Production")));
    let r = q(
        "svc-appid",
        "demo-token-appid",
        "app_id=suspended-app&app_key=suspended-key",
        "get_items",
    );
    assert!(r.text().contains("application is not active"));
    let r = q(
        "svc-userkey",
        "demo-token-userkey",
        "user_key=sandbox-user-key",
        "get_items",
    );
    assert_eq!((r.status, plan(&r).as_deref()), (200, Some("Sandbox")));
    let r = q(
        "svc-userkey",
        "demo-token-userkey",
        "user_key=prod-user-key",
        "create_item",
    );
    assert_eq!((r.status, plan(&r).as_deref()), (200, Some("Production")));
    let r = sim.get("/transactions/oauth_authrep.xml?service_token=demo-token-oidc&service_id=svc-oidc&app_id=oidc-prod&usage%5Bhits%5D=1");
    assert_eq!((r.status, plan(&r).as_deref()), (200, Some("Production")));
    let r = q(
        "svc-oidc",
        "demo-token-oidc",
        "app_id=oidc-sandbox",
        "get_items",
    );
    assert_eq!((r.status, plan(&r).as_deref()), (200, Some("Sandbox")));
    // Sandbox: 5 hits per minute.
    for _ in 0..3 {
        q(
            "svc-appid",
            "demo-token-appid",
            "app_id=sandbox-app&app_key=sandbox-key",
            "get_items",
        );
    }
    assert_eq!(
        q(
            "svc-appid",
            "demo-token-appid",
            "app_id=sandbox-app&app_key=sandbox-key",
            "get_items"
        )
        .status,
        200
    );
    assert_eq!(
        q(
            "svc-appid",
            "demo-token-appid",
            "app_id=sandbox-app&app_key=sandbox-key",
            "get_items"
        )
        .status,
        409
    );
}

#[test]
fn fixtures_are_independent() {
    // Guard: the two seeds must not share the ids the behaviour tests use.
    let (a, b): (&Fixture, &Fixture) = (FIXTURES[0], FIXTURES[1]);
    for (x, y) in [
        (a.service, b.service),
        (a.token, b.token),
        (a.provider_key, b.provider_key),
        (a.parent, b.parent),
        (a.child, b.child),
        (a.all_app, b.all_app),
        (a.small_app, b.small_app),
    ] {
        assert_ne!(x, y);
    }
    assert_ne!(a.minute_limit, b.minute_limit);
    assert_ne!(a.all_maxes, b.all_maxes);
    let _ = Report {
        metric: "",
        period: "",
        bounds: None,
        max: 0,
        current: 0,
        exceeded: false,
    };
}

#[test]
fn referrer_filters_and_service_state() {
    // other.json: a suspended service that requires referrer filters.
    let sim = Sim::start(Some("other.json"));
    let base =
        "/transactions/authorize.xml?service_token=other-token&service_id=4444&app_id=ref-app";
    let reason = |extra: &str| {
        let r = sim.get_opts(&format!("{base}{extra}"), "rejection_reason_header=1");
        assert_eq!(r.status, 409);
        let text = r.text();
        let reason = text
            .split("<reason>")
            .nth(1)
            .unwrap()
            .split("</reason>")
            .next()
            .unwrap()
            .to_owned();
        (
            r.header("3scale-rejection-reason").unwrap().to_owned(),
            reason,
        )
    };
    assert_eq!(
        reason(""),
        ("referrer_not_allowed".into(), "referrer is missing".into())
    );
    assert_eq!(
        reason("&referrer=evil.com"),
        (
            "referrer_not_allowed".into(),
            "referrer \"evil.com\" is not allowed".into()
        )
    );
    assert_eq!(
        reason("&referrer=acme.test"),
        (
            "referrer_not_allowed".into(),
            "referrer \"acme.test\" is not allowed".into()
        )
    );
    assert_eq!(
        reason("&referrer=www.acme.test"),
        ("service_not_active".into(), "service is not active".into())
    );
    assert_eq!(
        reason("&referrer=partner.example"),
        ("service_not_active".into(), "service is not active".into())
    );
    assert_eq!(
        reason("&referrer=*"),
        ("service_not_active".into(), "service is not active".into())
    );

    // reference.json: the same rules set up through the internal API.
    let sim = Sim::start(Some("reference.json"));
    let (status, _) = sim.json(
        "PUT",
        "/internal/services/svc1",
        r#"{"service":{"referrer_filters_required":true}}"#,
    );
    assert_eq!(status, 200);
    let (status, _) = sim.json(
        "POST",
        "/internal/services/svc1/applications/app_unl/referrer_filters",
        r#"{"referrer_filter":"*.example.com"}"#,
    );
    assert_eq!(status, 201);
    let base = "/transactions/authorize.xml?service_token=tok1&service_id=svc1&app_id=app_unl";
    assert_eq!(
        sim.get(&format!("{base}&referrer=api.example.com")).status,
        200
    );
    let r = sim.get(&format!("{base}&referrer=example.com"));
    assert!(
        r.text()
            .contains("<reason>referrer \"example.com\" is not allowed</reason>")
    );
    // Applications without filters are not checked.
    assert_eq!(
        sim.get("/transactions/authorize.xml?service_token=tok1&service_id=svc1&app_id=app_basic")
            .status,
        200
    );
    let (status, _) = sim.json(
        "PUT",
        "/internal/services/svc1",
        r#"{"service":{"state":"suspended"}}"#,
    );
    assert_eq!(status, 200);
    let r =
        sim.get("/transactions/authorize.xml?service_token=tok1&service_id=svc1&app_id=app_basic");
    assert!(r.text().contains("<reason>service is not active</reason>"));
}
