//! Exact accounting: what the clients got through is what 3scale ends up with, usage and response codes, with a
//! healthy backend, a slow one, and one slower than the timeout (the uncertain case, counted); a cache hit makes
//! no callout and the steady state needs few backend calls; `per_request` mode reports codes after the response.

use std::time::Duration;

use serde_json::json;
use tollgate_e2e::{Cases, Connection, LoadSpec, Stack, run_load};

use crate::support::{
    CACHE_HOST, CACHE_SERVICE, Expected, Route, Traffic, assert_no_vm_failure, assert_reported,
    cache_service, calls, filter_config, outcomes, request, start, stat, tollgate_stats, wait_for,
};

/// Sends `total` requests of `traffic` from `clients` keep-alive clients, expects every one to reach an upstream,
/// and returns what 3scale must end up with.
fn send_mixed(
    stack: &Stack,
    traffic: &Traffic,
    clients: usize,
    total: u64,
    rate: Option<f64>,
) -> Expected {
    let spec = LoadSpec {
        rate,
        clients,
        total: Some(total),
        duration: None,
    };
    let samples = run_load(stack.envoy.listen_port, &spec, traffic.requests());
    assert_eq!(samples.len() as u64, total);
    let through = samples.iter().filter(|s| s.reached_upstream()).count();
    assert_eq!(
        through as u64,
        total,
        "every request of a healthy backend reaches its upstream: {:?}",
        outcomes(&samples)
    );
    traffic.expected(&samples)
}

/// The report stats agree with the expected units: all sent, none retried away, dropped or uncertain.
fn assert_stats_settled(stack: &Stack, expected: &Expected) {
    let units = expected.units();
    wait_for(
        "reports.sent reaches the units sent",
        Duration::from_secs(5),
        || {
            let sent = stat(&stack.envoy, "reports.sent");
            (sent == units)
                .then_some(())
                .ok_or_else(|| format!("reports.sent {sent}, expected {units}"))
        },
    );
    let stats = tollgate_stats(&stack.envoy);
    for name in ["reports.uncertain", "reports.dropped"] {
        assert_eq!(stats.get(name), None, "{name}: {stats:?}");
    }
}

#[test]
fn exact_accounting_with_a_healthy_backend() {
    let config = filter_config(
        json!({ "report_interval_ms": 200 }),
        2000,
        vec![cache_service()],
    );
    let stack = start(config, 1);
    let traffic = Traffic::cache_apps(6);
    // 4 clients, 1,200 requests at 600/s: about 10 flushes happen while requests are in flight.
    let expected = send_mixed(&stack, &traffic, 4, 1200, Some(600.0));
    let mut cases = Cases::new("exact accounting, healthy backend");
    accounting_cases(&mut cases, &stack, &expected);
    cases.case("an authorize per miss, the rest cache hits", || {
        let misses = stat(&stack.envoy, "cache.misses");
        // One fill per application, plus one per metric a worker has not seen 3scale accept yet (a client may
        // race another to it).
        assert!((6..=6 + 3 * 4).contains(&misses), "misses {misses}");
        assert_eq!(calls(&stack.sim, "authorize"), misses);
        assert_eq!(calls(&stack.sim, "authrep"), 0);
        assert_eq!(stat(&stack.envoy, "cache.hits") + misses, 1200);
    });
    cases.case("stats: every unit sent, none uncertain or dropped", || {
        assert_stats_settled(&stack, &expected);
    });
    cases.case("no VM failure", || assert_no_vm_failure(&stack.envoy));
    cases.finish();
}

/// Usage and codes checked separately, so a lost response code does not hide exact usage (or the reverse).
fn accounting_cases(cases: &mut Cases, stack: &Stack, expected: &Expected) {
    cases.case("usage per application and metric", || {
        assert_reported(
            &stack.sim,
            CACHE_SERVICE,
            expected,
            false,
            Duration::from_secs(10),
            Duration::from_millis(500),
        );
    });
    cases.case("response codes per application", || {
        assert_reported(
            &stack.sim,
            CACHE_SERVICE,
            expected,
            true,
            Duration::from_secs(3),
            Duration::ZERO,
        );
    });
}

#[test]
fn exact_accounting_with_a_backend_slower_than_usual_within_the_timeout() {
    if tollgate_e2e::skip_without_simulator("latency fault") {
        return;
    }
    let config = filter_config(
        json!({ "report_interval_ms": 200 }),
        2000,
        vec![cache_service()],
    );
    let stack = start(config, 1);
    // Every authorize and report takes 150 ms (the usage is applied at once, the answer waits).
    stack
        .sim
        .fault(json!({ "endpoint": "*", "latency_ms": 150 }));
    let traffic = Traffic::cache_apps(5);
    let expected = send_mixed(&stack, &traffic, 4, 500, Some(400.0));
    let mut cases = Cases::new("exact accounting, slow backend");
    accounting_cases(&mut cases, &stack, &expected);
    cases.case("stats: every unit sent, none uncertain or dropped", || {
        assert_stats_settled(&stack, &expected);
    });
    cases.case("no VM failure", || assert_no_vm_failure(&stack.envoy));
    cases.finish();
}

#[test]
fn reports_slower_than_the_timeout_are_applied_by_3scale_and_counted_uncertain() {
    if tollgate_e2e::skip_without_simulator("latency fault") {
        return;
    }
    let config = filter_config(
        json!({ "report_interval_ms": 200, "report_timeout_ms": 500 }),
        500,
        vec![cache_service()],
    );
    let stack = start(config, 1);
    let traffic = Traffic::cache_apps(4);
    // Fill the cache while the backend is healthy, and wait for that usage to be reported.
    let mut expected = send_mixed(&stack, &traffic, 1, 16, None);
    assert_reported(
        &stack.sim,
        CACHE_SERVICE,
        &expected,
        false,
        Duration::from_secs(5),
        Duration::ZERO,
    );
    let sent_before = stat(&stack.envoy, "reports.sent");
    // Reports now answer after 1.2 s, beyond the 500 ms timeout: 3scale applies them, Tollgate cannot know.
    stack
        .sim
        .fault(json!({ "endpoint": "report", "latency_ms": 1200 }));
    let slow = Traffic { ..traffic.clone() };
    let during = send_mixed(&stack, &slow, 4, 400, Some(400.0));
    let during_units = during.units();
    for (app, account) in during.apps {
        let total = expected.apps.entry(app).or_default();
        for (metric, n) in account.usage {
            *total.usage.entry(metric).or_default() += n;
        }
    }
    let mut cases = Cases::new("reports slower than the timeout");
    cases.case(
        "3scale applied every unit (the simulator applies before the delay)",
        || {
            assert_reported(
                &stack.sim,
                CACHE_SERVICE,
                &expected,
                false,
                Duration::from_secs(10),
                Duration::ZERO,
            );
        },
    );
    cases.case(
        "uncertain + reported == units sent during the slow period, uncertain > 0",
        || {
            wait_for("every unit settled", Duration::from_secs(10), || {
                let sent = stat(&stack.envoy, "reports.sent") - sent_before;
                let uncertain = stat(&stack.envoy, "reports.uncertain");
                (sent + uncertain == during_units)
                    .then_some(())
                    .ok_or_else(|| {
                        format!(
                            "sent {sent} + uncertain {uncertain} != {during_units}: {:?}",
                            tollgate_stats(&stack.envoy)
                        )
                    })
            });
            let uncertain = stat(&stack.envoy, "reports.uncertain");
            assert!(uncertain > 0, "{:?}", tollgate_stats(&stack.envoy));
            assert_eq!(stat(&stack.envoy, "reports.dropped"), 0);
        },
    );
    cases.case("usage after the backend recovers is reported again", || {
        stack.sim.clear_faults();
        let sent = stat(&stack.envoy, "reports.sent");
        let mut connection = Connection::new(stack.envoy.listen_port);
        for (app, key) in &traffic.apps {
            let response = connection
                .send(&request(CACHE_HOST, Route::Items, app, key, 200))
                .unwrap();
            assert_eq!(response.status, 200, "{}", response.text());
            expected.add(app, Route::Items, Some(200));
        }
        wait_for("reports.sent grows", Duration::from_secs(5), || {
            let now = stat(&stack.envoy, "reports.sent");
            (now >= sent + 4)
                .then_some(())
                .ok_or_else(|| format!("reports.sent {now}"))
        });
        assert_reported(
            &stack.sim,
            CACHE_SERVICE,
            &expected,
            false,
            Duration::from_secs(5),
            Duration::ZERO,
        );
    });
    cases.case("no VM failure", || assert_no_vm_failure(&stack.envoy));
    cases.finish();
}

/// Sum of the simulator's calls on its transaction endpoints.
fn backend_calls(stack: &Stack) -> u64 {
    [
        "authorize",
        "authrep",
        "oauth_authorize",
        "oauth_authrep",
        "report",
    ]
    .iter()
    .map(|endpoint| calls(&stack.sim, endpoint))
    .sum()
}

#[test]
fn cache_hits_make_no_callout_and_the_steady_state_needs_few_backend_calls() {
    let config = filter_config(json!({}), 2000, vec![cache_service()]);
    let stack = start(config, 1);
    let traffic = Traffic::cache_apps(100);
    let mut connection = Connection::new(stack.envoy.listen_port);
    let mut expected = Expected::default();
    let mut send = |app: usize, route: Route| {
        let (id, key) = &traffic.apps[app];
        let response = connection
            .send(&request(CACHE_HOST, route, id, key, 200))
            .unwrap();
        assert_eq!(response.status, 200, "{}", response.text());
        expected.add(id, route, Some(200));
    };
    // Warm up: every route once (each metric is learnt once per worker), then every application once.
    for route in Route::ALL {
        send(0, route);
    }
    for app in 1..100 {
        send(app, Route::Items);
    }
    let mut cases = Cases::new("cache hits and backend calls");
    cases.case(
        "warm-up: one authorize per application or new metric",
        || {
            assert_eq!(calls(&stack.sim, "authorize"), 100 + 3);
            assert_eq!(stat(&stack.envoy, "cache.misses"), 103);
        },
    );
    cases.case(
        "a burst of 200 cache hits makes no authorization callout",
        || {
            let authorizations = calls(&stack.sim, "authorize") + calls(&stack.sim, "authrep");
            let hits = stat(&stack.envoy, "cache.hits");
            for i in 0..200 {
                send(i % 100, Route::ALL[i % 4]);
            }
            assert_eq!(
                calls(&stack.sim, "authorize") + calls(&stack.sim, "authrep"),
                authorizations
            );
            assert_eq!(stat(&stack.envoy, "cache.hits"), hits + 200);
            assert_eq!(stat(&stack.envoy, "cache.misses"), 103);
        },
    );
    cases.case("steady state: fewer than 10 backend calls per 1,000 requests (100 apps, 1,000/s)", || {
        let before = backend_calls(&stack);
        let spec = LoadSpec {
            rate: Some(1000.0),
            clients: 4,
            total: Some(3000),
            duration: None,
        };
        let samples = run_load(stack.envoy.listen_port, &spec, traffic.requests());
        let after = backend_calls(&stack);
        let through = samples.iter().filter(|s| s.reached_upstream()).count();
        assert_eq!(through, 3000, "{:?}", outcomes(&samples));
        let window = samples.last().map(|s| s.sent_at).unwrap_or_default();
        let per_thousand = (after - before) as f64 * 1000.0 / 3000.0;
        println!(
            "steady state: {} backend calls for 3000 requests in {window:?} ({per_thousand:.1} per 1,000)",
            after - before
        );
        assert!(window >= Duration::from_millis(2900), "{window:?}");
        assert!(per_thousand < 10.0, "{per_thousand} calls per 1,000 requests");
        assert_eq!(calls(&stack.sim, "authorize"), 103, "no authorize at steady state");
        let steady = traffic.expected(&samples);
        for (app, account) in steady.apps {
            let total = expected.apps.entry(app).or_default();
            for (metric, n) in account.usage {
                *total.usage.entry(metric).or_default() += n;
            }
            for (code, n) in account.codes {
                *total.codes.entry(code).or_default() += n;
            }
        }
    });
    cases.case("and every unit of it reaches 3scale", || {
        assert_reported(
            &stack.sim,
            CACHE_SERVICE,
            &expected,
            false,
            Duration::from_secs(10),
            Duration::ZERO,
        );
    });
    cases.case("no VM failure", || assert_no_vm_failure(&stack.envoy));
    cases.finish();
}

#[test]
fn per_request_mode_authorizes_before_and_reports_usage_with_codes_after() {
    let mut per_request = cache_service();
    per_request["mode"] = json!("per_request");
    per_request["report_response_codes"] = json!(true);
    let config = filter_config(
        json!({ "report_interval_ms": 200 }),
        2000,
        vec![per_request],
    );
    let stack = start(config, 1);
    let traffic = Traffic::cache_apps(5);
    let expected = send_mixed(&stack, &traffic, 2, 200, None);
    let mut cases = Cases::new("per_request mode with response codes");
    accounting_cases(&mut cases, &stack, &expected);
    cases.case(
        "one authorize and one report per request, no authrep",
        || {
            wait_for("a report per request", Duration::from_secs(5), || {
                let reports = calls(&stack.sim, "report");
                (reports == 200)
                    .then_some(())
                    .ok_or_else(|| format!("{reports} reports"))
            });
            assert_eq!(calls(&stack.sim, "authorize"), 200);
            assert_eq!(calls(&stack.sim, "authrep"), 0);
            assert_eq!(stat(&stack.envoy, "cache.hits"), 0);
        },
    );
    cases.case("every report carries one log[code]", || {
        let reports: Vec<String> = stack
            .sim
            .requests_limit(10_000)
            .iter()
            .filter(|r| r["path"] == "/transactions.xml")
            .map(|r| r["body"].as_str().unwrap_or_default().to_owned())
            .collect();
        assert_eq!(reports.len(), 200);
        for body in &reports {
            assert_eq!(
                body.matches("%5Blog%5D%5Bcode%5D=").count() + body.matches("[log][code]=").count(),
                1,
                "{body}"
            );
        }
    });
    cases.case("no VM failure", || assert_no_vm_failure(&stack.envoy));
    cases.finish();
}

/// An application of `svc-cache` on a plan allowing 5 hits a minute, created through the internal API.
fn five_a_minute(sim: &tollgate_e2e::Sim, app: &str) {
    let internal = "/internal/services/svc-cache";
    let (status, body) = sim.put_json(
        &format!("{internal}/plans/p-five/usagelimits/1/minute"),
        &json!({ "usagelimit": { "minute": 5 } }),
    );
    assert!(status < 300, "{status} {body}");
    let (status, body) = sim.post_json(
        &format!("{internal}/applications/{app}"),
        &json!({ "application": { "state": "active", "plan_id": "p-five", "plan_name": "Five" } }),
    );
    assert!(status < 300, "{status} {body}");
    let (status, body) = sim.post_json(
        &format!("{internal}/applications/{app}/keys/"),
        &json!({ "application_key": { "value": "five-key" } }),
    );
    assert!(status < 300, "{status} {body}");
}

#[test]
fn per_request_mode_with_codes_holds_a_limit_for_bursts() {
    let mut per_request = cache_service();
    per_request["mode"] = json!("per_request");
    per_request["plans"]["routes"]["Five"] = json!({ "cluster": "production" });
    let config = filter_config(
        json!({ "report_interval_ms": 1000 }),
        2000,
        vec![per_request],
    );
    let stack = start(config, 2);
    stack.sim.within_one_minute();
    let (seq, conc) = (
        stack.sim.fresh_name("five-seq"),
        stack.sim.fresh_name("five-conc"),
    );
    five_a_minute(&stack.sim, &seq);
    five_a_minute(&stack.sim, &conc);
    let sequential: Vec<u16> = (0..8)
        .map(|_| {
            stack
                .send(&request(CACHE_HOST, Route::Items, &seq, "five-key", 200))
                .status
        })
        .collect();
    let concurrent: Vec<u16> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8)
            .map(|_| {
                scope.spawn(|| {
                    stack
                        .send(&request(CACHE_HOST, Route::Items, &conc, "five-key", 200))
                        .status
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let count = |statuses: &[u16], status: u16| statuses.iter().filter(|s| **s == status).count();
    let mut cases = Cases::new("per_request bursts, response codes on, 5 hits a minute");
    cases.case("a sequential burst of 8: 5 × 200 and 3 × 429", || {
        assert_eq!(sequential, [200, 200, 200, 200, 200, 429, 429, 429]);
    });
    cases.case("a concurrent burst of 8: 5 × 200 and 3 × 429", || {
        assert_eq!(
            (count(&concurrent, 200), count(&concurrent, 429)),
            (5, 3),
            "{concurrent:?}"
        );
    });
    cases.case(
        "3scale counts the 10 admitted requests, with their codes",
        || {
            for app in [&seq, &conc] {
                wait_for("the reports", Duration::from_secs(10), || {
                    // The limit's counter, as any 3scale backend shows it.
                    let hits = stack
                        .sim
                        .utilization("svc-cache", app, "hits", "minute")
                        .unwrap_or(0);
                    (hits == 5)
                        .then_some(())
                        .ok_or_else(|| format!("{app}: {hits} hits"))
                });
                let codes = stack.sim.response_codes("svc-cache", app)["codes"]["200"]
                    .as_u64()
                    .unwrap_or(0);
                assert_eq!(codes, 5, "{app}: codes 200");
            }
        },
    );
    cases.finish();
}

#[test]
fn a_refresh_does_not_forget_usage_accepted_but_not_yet_applied() {
    if tollgate_e2e::skip_without_simulator("worker (paused)") {
        return;
    }
    let mut service = cache_service();
    service["plans"]["routes"]["Five"] = json!({ "cluster": "production" });
    let config = filter_config(
        json!({ "ttl_seconds": 1, "report_interval_ms": 200 }),
        2000,
        vec![service],
    );
    let stack = start(config, 1);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    stack.sim.freeze_clock(json!(now - now % 60 + 5));
    five_a_minute(&stack.sim, "five-lag");
    // apisonator's worker stopped: reports are accepted (202) and not applied.
    stack.sim.worker(json!({ "paused": true }));
    let send = || {
        stack
            .send(&request(
                CACHE_HOST,
                Route::Items,
                "five-lag",
                "five-key",
                200,
            ))
            .status
    };
    let first: Vec<u16> = (0..3).map(|_| send()).collect();
    // Past the ttl, the three reported and accepted; the next request refreshes the entry, whose
    // counters (still 0) do not include them.
    wait_for("the first report accepted", Duration::from_secs(5), || {
        (stat(&stack.envoy, "reports.sent") >= 3)
            .then_some(())
            .ok_or_else(|| format!("{:?}", tollgate_stats(&stack.envoy)))
    });
    std::thread::sleep(Duration::from_millis(1200));
    let mut then = vec![send()];
    wait_for("the refresh", Duration::from_secs(5), || {
        (stat(&stack.envoy, "cache.refreshes") >= 1)
            .then_some(())
            .ok_or_else(|| format!("{:?}", tollgate_stats(&stack.envoy)))
    });
    std::thread::sleep(Duration::from_millis(200));
    then.extend((0..4).map(|_| send()));
    let admitted = first.iter().chain(&then).filter(|s| **s == 200).count();
    stack.sim.worker(json!({ "paused": false }));
    let mut cases = Cases::new("a refresh while apisonator's worker is stopped");
    cases.case("no more than the limit was admitted", || {
        assert_eq!(first, [200, 200, 200]);
        assert_eq!(admitted, 5, "then {then:?}");
    });
    cases.case(
        "once the worker runs, 3scale counts every admitted request",
        || {
            wait_for("the usage", Duration::from_secs(10), || {
                let hits = stack.sim.usage("svc-cache", "five-lag")["metrics"]["hits"]["minute"]
                    .as_u64()
                    .unwrap_or(0);
                (hits == admitted as u64)
                    .then_some(())
                    .ok_or_else(|| format!("{hits} hits, {admitted} admitted"))
            });
        },
    );
    cases.finish();
}
