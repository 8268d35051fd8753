//! A 3scale (or whatever stands between Envoy and it) that misbehaves: answers cut after their headers,
//! bodies that trickle past the timeout, reports answered in seconds. The VM never panics, every request is
//! answered by its failure policy within the backend timeout (plus Envoy's own time), Envoy's main thread
//! keeps answering, and what one VM learnt (the metrics 3scale accepted) serves every VM.

use std::time::{Duration, Instant};

use serde_json::json;
use tollgate_e2e::test_hooks_wasm_path;
use tollgate_e2e::{Cases, Connection, Load, LoadSpec, Request, Stack, StackOptions, send};

use crate::support::{
    CACHE_HOST, Route, Traffic, assert_no_vm_failure, cache_service, calls, filter_config, options,
    outcomes, request, service, start, stat, tollgate_stats, wait_for,
};

const TIMEOUT_MS: u64 = 1000;
/// What an answer may take beyond the backend timeout: Envoy's own work on a loaded test machine.
const MARGIN: Duration = Duration::from_millis(1500);

fn items(app: &str, key: &str) -> Request {
    request(CACHE_HOST, Route::Items, app, key, 200)
}

#[test]
fn answers_cut_after_their_headers_or_trickling_get_the_failure_policy_in_time() {
    if tollgate_e2e::skip_without_simulator("faults") {
        return;
    }
    let config = filter_config(
        json!({ "report_interval_ms": 300 }),
        TIMEOUT_MS,
        vec![cache_service()],
    );
    let stack = start(config, 1);
    let mut cases = Cases::new("a misbehaving 3scale");
    for (what, fault, app) in [
        (
            "cut after the headers",
            json!({ "endpoint": "*", "cut_after_headers": true }),
            "app-000",
        ),
        (
            "trickling past the timeout",
            json!({ "endpoint": "*", "trickle_ms": 400 }),
            "app-001",
        ),
    ] {
        stack.sim.fault(fault);
        let key = app.replace("app", "key");
        let asked = Instant::now();
        let response = stack.try_send(&items(app, &key));
        let took = asked.elapsed();
        cases.case(
            &format!("an authorization {what} is answered 503 in time"),
            || {
                let response = response.as_ref().expect("an answer");
                assert_eq!(response.status, 503, "{}", response.text());
                assert!(
                    response.text().contains("backend_unavailable"),
                    "{}",
                    response.text()
                );
                assert!(
                    took < Duration::from_millis(TIMEOUT_MS) + MARGIN,
                    "took {took:?}"
                );
            },
        );
        stack.sim.clear_faults();
    }
    cases.case("once 3scale answers whole again, requests pass", || {
        let response = stack.send(&items("app-002", "key-002"));
        assert_eq!(response.status, 200, "{}", response.text());
    });
    // A report whose answer is cut: the usage may have been applied, so it is counted uncertain, not resent.
    stack
        .sim
        .fault(json!({ "endpoint": "report", "cut_after_headers": true }));
    let reported = stack.send(&items("app-002", "key-002"));
    cases.case(
        "a report cut after its headers is counted uncertain",
        || {
            assert_eq!(reported.status, 200, "{}", reported.text());
            wait_for("the cut report", Duration::from_secs(10), || {
                let uncertain = stat(&stack.envoy, "reports.uncertain");
                (uncertain > 0)
                    .then_some(())
                    .ok_or_else(|| format!("{:?}", tollgate_stats(&stack.envoy)))
            });
        },
    );
    cases.case("no VM panicked or was reloaded", || {
        assert_no_vm_failure(&stack.envoy)
    });
    cases.finish();
}

/// The slowest admin `/ready` answer while `busy` runs: Envoy's main thread, where the flush runs.
fn slowest_ready(stack: &Stack, busy: impl FnOnce()) -> Duration {
    let admin = stack.envoy.admin_port;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let stop = std::sync::Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut slowest = Duration::ZERO;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let asked = Instant::now();
                let _ = send(admin, &Request::get("/ready"));
                slowest = slowest.max(asked.elapsed());
                std::thread::sleep(Duration::from_millis(50));
            }
            slowest
        })
    };
    busy();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    sampler.join().unwrap_or_default()
}

#[test]
fn reports_answered_in_seconds_do_not_stall_envoy() {
    if tollgate_e2e::skip_without_simulator("faults") {
        return;
    }
    // Reports every second, answered after 4.5 s (within their 5 s timeout): every application soon has its
    // maximum of reports in flight, and more usage waiting.
    let config = filter_config(
        json!({ "report_interval_ms": 1000 }),
        TIMEOUT_MS,
        vec![cache_service()],
    );
    let stack = start(config, 2);
    let traffic = Traffic::cache_apps(20);
    for (app, key) in &traffic.apps {
        assert_eq!(stack.send(&items(app, key)).status, 200);
    }
    stack
        .sim
        .fault(json!({ "endpoint": "report", "latency_ms": 4500 }));
    let spec = LoadSpec {
        rate: Some(200.0),
        clients: 2,
        total: None,
        duration: Some(Duration::from_secs(12)),
    };
    let mut samples = Vec::new();
    let slowest = slowest_ready(&stack, || {
        samples = Load::start(stack.envoy.listen_port, &spec, traffic.requests()).finish();
    });
    let slowest_request = samples.iter().map(|s| s.latency).max().unwrap_or_default();
    println!(
        "slow reports: {} requests, slowest {slowest_request:?}, slowest /ready {slowest:?}, {:?}",
        samples.len(),
        tollgate_stats(&stack.envoy)
    );
    let mut cases = Cases::new("reports answered in 4.5 s");
    cases.case("Envoy's main thread kept answering (/ready)", || {
        assert!(
            slowest < Duration::from_millis(500),
            "slowest /ready {slowest:?}"
        );
    });
    cases.case("requests were not held up", || {
        let answered = samples.iter().filter(|s| s.status.is_some()).count();
        assert_eq!(answered, samples.len(), "{:?}", outcomes(&samples));
        assert!(
            slowest_request < Duration::from_millis(500),
            "slowest {slowest_request:?}"
        );
    });
    cases.case("reports were sent", || {
        assert!(calls(&stack.sim, "report") > 0);
    });
    cases.finish();
}

#[test]
fn an_application_is_asked_once_per_envoy_not_once_per_worker() {
    if tollgate_e2e::skip_without_simulator("counters") {
        return;
    }
    let config = filter_config(json!({}), TIMEOUT_MS, vec![cache_service()]);
    let stack = start(config, 2);
    assert_eq!(stack.send(&items("app-000", "key-000")).status, 200);
    // Fresh connections spread over both workers.
    for _ in 0..30 {
        assert_eq!(stack.send(&items("app-000", "key-000")).status, 200);
    }
    let workers: Vec<u64> = stack
        .envoy
        .stats()
        .into_iter()
        .filter(|(name, _)| {
            name.starts_with("listener.")
                && name.contains(".worker_")
                && name.ends_with(".downstream_cx_total")
        })
        .filter(|(name, _)| !name.contains("admin"))
        .map(|(_, value)| value)
        .filter(|value| *value > 0)
        .collect();
    let mut cases = Cases::new("one Envoy, two workers");
    cases.case("both workers served requests", || {
        assert!(workers.len() >= 2, "connections per worker: {workers:?}");
    });
    cases.case("3scale was asked once", || {
        assert_eq!(calls(&stack.sim, "authorize"), 1, "{:?}", stack.sim.calls());
    });
    cases.finish();
}

#[test]
fn a_fresh_vm_decides_from_the_cache_while_3scale_is_down() {
    if tollgate_e2e::skip_without_simulator("refusal fault") {
        return;
    }
    let config = filter_config(
        json!({ "ttl_seconds": 60 }),
        TIMEOUT_MS,
        vec![cache_service()],
    );
    let mut options: StackOptions = options(crate::support::TEMPLATE, config, 1);
    options.wasm = Some(test_hooks_wasm_path());
    let stack = Stack::start(options);
    assert_eq!(stack.send(&items("app-000", "key-000")).status, 200);
    let _ = stack.try_send(&items("app-000", "key-000").header("x-tollgate-test-crash", "1"));
    // A new VM serves requests (of another metric, so that this VM does not learn `get_items` itself).
    wait_for("a new VM serves requests", Duration::from_secs(20), || {
        let response = stack
            .try_send(&request(
                CACHE_HOST,
                Route::Search,
                "app-001",
                "key-001",
                200,
            ))
            .map_err(|e| e.to_string())?;
        (response.status == 200)
            .then_some(())
            .ok_or_else(|| format!("{} {}", response.status, response.text()))
    });
    stack.sim.refuse_for(20_000);
    let mut connection = Connection::new(stack.envoy.listen_port);
    let response = connection.send(&items("app-000", "key-000")).unwrap();
    let mut cases = Cases::new("a reloaded VM during an outage");
    cases.case(
        "the cached application is served (policy deny, within 2 × ttl)",
        || {
            assert_eq!(response.status, 200, "{}", response.text());
        },
    );
    cases.finish();
}

#[test]
fn a_proxys_bare_answer_is_3scale_unavailable_and_the_failure_policy_decides() {
    if tollgate_e2e::skip_without_simulator("faults") {
        return;
    }
    let config = filter_config(
        json!({ "report_interval_ms": 300 }),
        TIMEOUT_MS,
        vec![
            service("svc-deny", "deny.test", json!({ "policy": "deny" })),
            service("svc-allow", "allow.test", json!({ "policy": "allow" })),
            // A wrong service token: apisonator's own 403 `<error>`.
            {
                let mut wrong = cache_service();
                wrong["service_token"] = json!("not-the-token");
                wrong
            },
        ],
    );
    let stack = start(config, 1);
    let mut cases = Cases::new("an answer that is not apisonator's");
    for status in [404, 403] {
        stack.sim.fault(json!({
            "endpoint": "*", "status": status, "content_type": "text/html",
            "body": "<html><body>Not Found</body></html>",
        }));
        let deny = stack.send(&request(
            "deny.test",
            Route::Items,
            "refused-new",
            "key",
            200,
        ));
        cases.case(
            &format!("a bare {status} under deny: 503 backend_unavailable"),
            || {
                assert_eq!(deny.status, 503, "{}", deny.text());
                assert!(
                    deny.text().contains("backend_unavailable"),
                    "{}",
                    deny.text()
                );
            },
        );
        let allow = stack.send(&request(
            "allow.test",
            Route::Items,
            "refused-new",
            "key",
            200,
        ));
        cases.case(&format!("a bare {status} under allow: let through"), || {
            assert_eq!(allow.status, 200, "{}", allow.text());
            assert_eq!(
                allow.upstream().as_deref(),
                Some("staging"),
                "fail-open cluster"
            );
        });
    }
    stack.sim.clear_faults();
    let wrong_token = stack.send(&items("app-000", "key-000"));
    cases.case("apisonator's own 403 error keeps its category", || {
        assert_eq!(wrong_token.status, 500, "{}", wrong_token.text());
        assert!(
            wrong_token.text().contains("backend_misconfigured"),
            "{}",
            wrong_token.text()
        );
    });
    cases.finish();
}
