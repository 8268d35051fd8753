//! Limits decided from the cache: with two Envoy workers hammering one application, usage past its limit stays
//! within one request per worker per refresh interval and 3scale ends up with exactly what was let through; a
//! suspended application or a changed key is refused within one TTL; two Envoy instances stay within the formula
//! of docs/design.md.

use std::time::{Duration, Instant};

use serde_json::json;
use tollgate_e2e::{Cases, Connection, Envoy, LoadSpec, run_load};

use crate::support::{
    CACHE_HOST, CACHE_SERVICE, Route, assert_no_vm_failure, cache_service, connections_per_worker,
    filter_config, outcomes, request, start, tollgate_stats, wait_for,
};

/// `limited-app`'s plan: hits ≤ 50 for eternity (a period that cannot roll over during the test).
const LIMIT: u64 = 50;
const WORKERS: u32 = 2;

/// Hammers `limited-app` for `duration` from 12 clients (spread over both workers by the kernel), the upstream
/// answering after `upstream_delay`, and checks the overshoot against the refresh intervals the run spans, then
/// 3scale's final usage against what was let through.
fn hammer(ttl_seconds: u64, duration: Duration, upstream_delay: Duration) {
    let config = filter_config(
        json!({ "ttl_seconds": ttl_seconds, "report_interval_ms": 200 }),
        2000,
        vec![cache_service()],
    );
    let stack = start(config, WORKERS);
    stack.production.set_delay(upstream_delay);
    let spec = LoadSpec {
        // Far more than the limit, without starving the scenarios that run alongside.
        rate: Some(4000.0),
        clients: 12,
        total: None,
        duration: Some(duration),
    };
    let started = Instant::now();
    let samples = run_load(stack.envoy.listen_port, &spec, |_| {
        request(CACHE_HOST, Route::Items, "limited-app", "limited-key", 200)
    });
    let elapsed = started.elapsed();
    let allowed = samples.iter().filter(|s| s.reached_upstream()).count() as u64;
    let limited = samples
        .iter()
        .filter(|s| s.status == Some(429) && s.error_code.as_deref() == Some("limits_exceeded"))
        .count() as u64;
    // Refresh intervals the run spans: the first fill starts one, every ttl after it another.
    let intervals = (elapsed.as_secs_f64() / ttl_seconds as f64).floor() as u64 + 1;
    let bound = LIMIT + u64::from(WORKERS) * intervals;
    println!(
        "limits (ttl {ttl_seconds} s): {} requests in {elapsed:?}, {allowed} allowed (bound {bound}), {limited} limited, connections per worker {:?}: {:?}\n  stats {:?}, 3scale calls {}",
        samples.len(),
        connections_per_worker(&stack),
        outcomes(&samples),
        tollgate_stats(&stack.envoy),
        stack.sim.calls()["total"]
    );
    let mut cases = Cases::new(&format!(
        "limits with 2 workers, ttl {ttl_seconds} s, upstream delay {upstream_delay:?}"
    ));
    cases.case("both workers served requests", || {
        let per_worker = connections_per_worker(&stack);
        assert!(per_worker.iter().all(|&n| n > 0), "{per_worker:?}");
    });
    cases.case(
        "every request allowed or refused with limits_exceeded",
        || {
            assert_eq!(
                allowed + limited,
                samples.len() as u64,
                "{:?}",
                outcomes(&samples)
            );
            assert!(limited > 0, "the limit was reached");
        },
    );
    cases.case("allowed ≤ limit + W per refresh interval", || {
        assert!(allowed >= LIMIT, "{allowed} allowed, the limit is {LIMIT}");
        assert!(allowed <= bound, "{allowed} allowed, bound {bound}");
    });
    cases.case("3scale's usage equals what was let through", || {
        wait_for("the usage reported", Duration::from_secs(10), || {
            let usage = stack.sim.usage(CACHE_SERVICE, "limited-app");
            let hits = usage["metrics"]["hits"]["eternity"].as_u64().unwrap_or(0);
            (hits == allowed).then_some(()).ok_or_else(|| {
                format!(
                    "3scale has {hits}, {allowed} were allowed; {:?}",
                    tollgate_stats(&stack.envoy)
                )
            })
        });
    });
    cases.case("no VM failure", || assert_no_vm_failure(&stack.envoy));
    cases.finish();
}

#[test]
fn two_workers_overshoot_a_limit_by_at_most_one_request_each_per_refresh() {
    if tollgate_e2e::skip_without_simulator("counters (and a fresh eternity limit)") {
        return;
    }
    hammer(20, Duration::from_secs(2), Duration::ZERO);
}

#[test]
fn two_workers_stay_within_the_bound_across_several_refreshes() {
    if tollgate_e2e::skip_without_simulator("counters (and a fresh eternity limit)") {
        return;
    }
    hammer(1, Duration::from_secs(4), Duration::ZERO);
}

/// M Envoy instances share 3scale, not their cache: each admits against the quota left at its last refresh, so
/// the formula of docs/design.md is allowed ≤ L + (M − 1) × R per refresh interval, R ≤ L the quota left then.
/// Within one interval (ttl 20 s, a 2 s run): at most 2 × L for two instances, and never more than 3scale is told.
#[test]
fn two_envoy_instances_overshoot_by_at_most_the_quota_left_at_a_refresh() {
    if tollgate_e2e::skip_without_simulator("counters (and a fresh eternity limit)") {
        return;
    }
    const INSTANCES: u64 = 2;
    let config = filter_config(
        json!({ "ttl_seconds": 20, "report_interval_ms": 200 }),
        2000,
        vec![cache_service()],
    );
    let stack = start(config, 1);
    let second = Envoy::start(stack.yaml(), 1);
    let spec = LoadSpec {
        rate: Some(2000.0),
        clients: 6,
        total: None,
        duration: Some(Duration::from_secs(2)),
    };
    let load = |port: u16| {
        run_load(port, &spec, |_| {
            request(CACHE_HOST, Route::Items, "limited-app", "limited-key", 200)
        })
    };
    let (first_samples, second_samples) = std::thread::scope(|scope| {
        let first = scope.spawn(|| load(stack.envoy.listen_port));
        let second = load(second.listen_port);
        (first.join().unwrap(), second)
    });
    let allowed_by = |samples: &[tollgate_e2e::Sample]| {
        samples.iter().filter(|s| s.reached_upstream()).count() as u64
    };
    let allowed = allowed_by(&first_samples) + allowed_by(&second_samples);
    let bound = LIMIT + (INSTANCES - 1) * LIMIT;
    println!(
        "two instances: {} + {} requests, {} + {} allowed (bound {bound})",
        first_samples.len(),
        second_samples.len(),
        allowed_by(&first_samples),
        allowed_by(&second_samples)
    );
    let mut cases = Cases::new("limits with two Envoy instances sharing 3scale");
    cases.case(
        "each instance let some through and refused the rest",
        || {
            for samples in [&first_samples, &second_samples] {
                assert!(allowed_by(samples) > 0);
                assert!(
                    samples.iter().any(|s| s.status == Some(429)),
                    "{:?}",
                    outcomes(samples)
                );
            }
        },
    );
    cases.case(
        "allowed ≤ L + (M − 1) × R within one refresh interval",
        || {
            assert!(allowed >= LIMIT, "{allowed} allowed, the limit is {LIMIT}");
            assert!(allowed <= bound, "{allowed} allowed, bound {bound}");
        },
    );
    cases.case("3scale's usage equals what both let through", || {
        wait_for("the usage reported", Duration::from_secs(10), || {
            let usage = stack.sim.usage(CACHE_SERVICE, "limited-app");
            let hits = usage["metrics"]["hits"]["eternity"].as_u64().unwrap_or(0);
            (hits == allowed)
                .then_some(())
                .ok_or_else(|| format!("3scale has {hits}, {allowed} were allowed"))
        });
    });
    cases.case("no VM failure", || {
        assert_no_vm_failure(&stack.envoy);
        assert_no_vm_failure(&second);
    });
    cases.finish();
}

/// Requests still waiting for a slow upstream when the entry is filled again or refreshed count on the limit too.
#[test]
fn requests_in_flight_at_a_refresh_still_count_against_the_limit() {
    if tollgate_e2e::skip_without_simulator("counters (and a fresh eternity limit)") {
        return;
    }
    hammer(20, Duration::from_secs(2), Duration::from_millis(200));
}

/// Sends one request every 25 ms until `refused` holds for the answer; how long that took.
fn time_until_refused(
    connection: &mut Connection,
    app: &str,
    key: &str,
    refused: impl Fn(u16, &str) -> bool,
) -> Duration {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(10) {
        let response = connection
            .send(&request(CACHE_HOST, Route::Items, app, key, 200))
            .unwrap();
        let code = response
            .json()
            .pointer("/error/code")
            .and_then(|c| c.as_str().map(str::to_owned))
            .unwrap_or_default();
        if refused(response.status, &code) {
            return started.elapsed();
        }
        assert_eq!(response.status, 200, "{}", response.text());
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("{app} still allowed after 10 s");
}

#[test]
fn a_suspended_application_or_a_changed_key_is_refused_within_one_ttl() {
    const TTL: Duration = Duration::from_secs(1);
    const MARGIN: Duration = Duration::from_millis(500);
    let config = filter_config(
        json!({ "ttl_seconds": TTL.as_secs(), "report_interval_ms": 200 }),
        2000,
        vec![cache_service()],
    );
    let stack = start(config, 1);
    let sim = &stack.sim;
    let mut connection = Connection::new(stack.envoy.listen_port);
    let mut send = |app: &str, key: &str| {
        connection
            .send(&request(CACHE_HOST, Route::Items, app, key, 200))
            .unwrap()
    };
    assert_eq!(send("suspend-app", "suspend-key").status, 200);
    assert_eq!(send("rekey-app", "old-key").status, 200);
    let application = |app: &str| format!("/internal/services/{CACHE_SERVICE}/applications/{app}");
    let mut cases = Cases::new("suspensions and key changes");
    cases.case(
        "a suspended application is refused (app_inactive) within one TTL",
        || {
            let (status, body) = sim.put_json(
                &application("suspend-app"),
                &json!({ "application": { "state": "suspended" } }),
            );
            assert!((200..300).contains(&status), "{status} {body}");
            let mut connection = Connection::new(stack.envoy.listen_port);
            let took = time_until_refused(
                &mut connection,
                "suspend-app",
                "suspend-key",
                |status, code| status == 403 && code == "app_inactive",
            );
            println!("suspension seen after {took:?}");
            assert!(took <= TTL + MARGIN, "{took:?}");
            for _ in 0..5 {
                let again = connection
                    .send(&request(
                        CACHE_HOST,
                        Route::Items,
                        "suspend-app",
                        "suspend-key",
                        200,
                    ))
                    .unwrap();
                assert_eq!(
                    again.status,
                    403,
                    "the cached denial stands: {}",
                    again.text()
                );
            }
        },
    );
    cases.case(
        "and allowed again within one TTL of its reactivation",
        || {
            let (status, body) = sim.put_json(
                &application("suspend-app"),
                &json!({ "application": { "state": "active" } }),
            );
            assert!((200..300).contains(&status), "{status} {body}");
            let mut connection = Connection::new(stack.envoy.listen_port);
            let started = Instant::now();
            loop {
                let response = connection
                    .send(&request(
                        CACHE_HOST,
                        Route::Items,
                        "suspend-app",
                        "suspend-key",
                        200,
                    ))
                    .unwrap();
                if response.status == 200 {
                    break;
                }
                assert!(
                    started.elapsed() <= TTL + MARGIN,
                    "still {}",
                    response.status
                );
                std::thread::sleep(Duration::from_millis(25));
            }
            println!("reactivation seen after {:?}", started.elapsed());
        },
    );
    cases.case(
        "an application key removed is refused (auth_failed) within one TTL",
        || {
            // A fresh entry right before the change, so the change waits for a background refresh.
            let mut connection = Connection::new(stack.envoy.listen_port);
            time_until_refused(&mut connection, "rekey-app", "old-key", |status, _| {
                status == 200
            });
            let keys = format!("{}/keys/", application("rekey-app"));
            assert!((200..300).contains(&sim.delete(&format!("{keys}old-key"))));
            let (status, body) =
                sim.post_json(&keys, &json!({ "application_key": { "value": "new-key" } }));
            assert!((200..300).contains(&status), "{status} {body}");
            let took =
                time_until_refused(&mut connection, "rekey-app", "old-key", |status, code| {
                    status == 403 && code == "auth_failed"
                });
            println!("key change seen after {took:?}");
            assert!(took <= TTL + MARGIN, "{took:?}");
        },
    );
    cases.case("the new key is allowed at once", || {
        let mut connection = Connection::new(stack.envoy.listen_port);
        let response = connection
            .send(&request(
                CACHE_HOST,
                Route::Items,
                "rekey-app",
                "new-key",
                200,
            ))
            .unwrap();
        assert_eq!(response.status, 200, "{}", response.text());
    });
    cases.case("no VM failure", || assert_no_vm_failure(&stack.envoy));
    cases.finish();
}
