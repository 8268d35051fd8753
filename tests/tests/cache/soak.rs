//! The fault soak (`scripts/soak [MINUTES]`): a steady 100 requests/s over 20 cached applications for
//! MINUTES (`TOLLGATE_SOAK_MINUTES`, default 2) while 3scale cycles through every fault it can show, ten
//! seconds each. Checked at the end: no VM panic or reload, no answer slower than the backend timeout plus
//! a margin, every admitted unit of usage reported exactly, and Envoy's main thread (where the flush runs)
//! never busy for more than 100 ms at a time, measured as the slowest of its `/ready` answers, asked every
//! 50 ms. Ignored by `cargo test`: `scripts/soak` runs it, and `scripts/test` runs the 2-minute version.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tollgate_e2e::{Cases, Load, LoadSpec, Request, Stack, send};

use crate::support::{
    CACHE_SERVICE, Route, Traffic, assert_no_vm_failure, assert_reported, cache_service,
    filter_config, outcomes, request, slowest, start, tollgate_stats,
};

const TIMEOUT_MS: u64 = 1000;
/// Beyond the backend timeout: Envoy's own work, on a machine also running the load and the simulator.
const MARGIN: Duration = Duration::from_millis(1000);
const FAULT_FOR: Duration = Duration::from_secs(10);
const MAIN_THREAD_BUDGET: Duration = Duration::from_millis(100);

/// Every fault, as the simulator's `/_sim/faults` takes it (`refuse`: its listener closes for the period).
/// `garbage` and `close` apply to authorizations only: a report answered that way may or may not have been
/// applied by a real apisonator, so it is counted uncertain and not resent, while the simulator applies
/// nothing: that ambiguity is the backend's, not a loss the soak could hold against Tollgate.
fn faults() -> Vec<(&'static str, Option<Value>)> {
    vec![
        ("healthy", None),
        ("connections refused", Some(json!("refuse"))),
        (
            "503 from 3scale",
            Some(json!({ "endpoint": "*", "status": 503 })),
        ),
        (
            "a proxy's bare 404",
            Some(
                json!({ "endpoint": "*", "status": 404, "content_type": "text/html", "body": "<html>404</html>" }),
            ),
        ),
        (
            "garbage authorizations",
            Some(json!({ "endpoint": "authorize", "garbage": true })),
        ),
        (
            "authorizations closed unanswered",
            Some(json!({ "endpoint": "authorize", "close": true })),
        ),
        (
            "slow answers (300 ms)",
            Some(json!({ "endpoint": "*", "latency_ms": 300 })),
        ),
        (
            "slow reports (4.5 s)",
            Some(json!({ "endpoint": "report", "latency_ms": 4500 })),
        ),
        (
            "answers cut after their headers",
            Some(json!({ "endpoint": "*", "cut_after_headers": true })),
        ),
        (
            "bodies trickling past the timeout",
            Some(json!({ "endpoint": "*", "trickle_ms": 300 })),
        ),
    ]
}

fn minutes() -> u64 {
    std::env::var("TOLLGATE_SOAK_MINUTES")
        .ok()
        .and_then(|m| m.parse().ok())
        .unwrap_or(2)
}

/// Samples `/ready` every 50 ms until stopped; returns every answer's time, sorted.
fn watch_main_thread(
    admin_port: u16,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<Vec<Duration>> {
    std::thread::spawn(move || {
        let mut times = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            let asked = Instant::now();
            let _ = send(admin_port, &Request::get("/ready"));
            times.push(asked.elapsed());
            std::thread::sleep(Duration::from_millis(50));
        }
        times.sort();
        times
    })
}

fn apply(stack: &Stack, fault: &Option<Value>) {
    stack.sim.clear_faults();
    match fault {
        None => {}
        // Listening again well before the next period, when the simulator is told its next fault.
        Some(Value::String(refuse)) if refuse == "refuse" => stack
            .sim
            .refuse_for((FAULT_FOR - Duration::from_secs(2)).as_millis() as u64),
        Some(fault) => stack.sim.fault(fault.clone()),
    }
}

#[test]
#[ignore = "long: run by scripts/soak (and the 2-minute version by scripts/test)"]
fn soak_under_every_3scale_fault() {
    if tollgate_e2e::skip_without_simulator("faults") {
        return;
    }
    let duration = Duration::from_secs(60 * minutes());
    let config = filter_config(
        json!({ "ttl_seconds": 30, "report_interval_ms": 1000 }),
        TIMEOUT_MS,
        vec![cache_service()],
    );
    let stack = start(config, 2);
    let traffic = Traffic::cache_apps(20);
    for (app, key) in &traffic.apps {
        for route in Route::ALL {
            assert_eq!(
                stack
                    .send(&request(&traffic.host, route, app, key, 200))
                    .status,
                200
            );
        }
    }
    let mut warmed = traffic.expected(&[]);
    for (app, _) in &traffic.apps {
        for route in Route::ALL {
            warmed.add(app, route, Some(200));
        }
    }
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = watch_main_thread(stack.envoy.admin_port, Arc::clone(&stop));
    let spec = LoadSpec {
        rate: Some(100.0),
        clients: 4,
        total: None,
        duration: Some(duration),
    };
    let load = Load::start(stack.envoy.listen_port, &spec, traffic.requests());
    let started = Instant::now();
    let faults = faults();
    let mut cycle = 0;
    while started.elapsed() + FAULT_FOR <= duration {
        let (name, fault) = &faults[cycle % faults.len()];
        println!("soak {:>4} s: {name}", started.elapsed().as_secs());
        apply(&stack, fault);
        std::thread::sleep(FAULT_FOR);
        cycle += 1;
    }
    stack.sim.clear_faults();
    let samples = load.finish();
    // Settle: every pending report goes out once 3scale answers normally again.
    std::thread::sleep(Duration::from_secs(3));
    stop.store(true, Ordering::Relaxed);
    let ready = watcher.join().unwrap_or_default();
    let slowest_ready = ready.last().copied().unwrap_or_default();
    let p99_ready = ready
        .get(ready.len() * 99 / 100)
        .copied()
        .unwrap_or_default();
    let over_budget = ready.iter().filter(|t| **t > MAIN_THREAD_BUDGET).count();
    let mut expected = traffic.expected(&samples);
    for (app, account) in warmed.apps {
        let entry = expected.apps.entry(app).or_default();
        for (metric, n) in account.usage {
            *entry.usage.entry(metric).or_default() += n;
        }
        for (code, n) in account.codes {
            *entry.codes.entry(code).or_default() += n;
        }
    }
    println!(
        "soak: {} requests in {:?}, {} fault periods, slowest answer {:?}, /ready: {} samples, p99 {:?}, \
         slowest {:?}, {} over {:?}\n  {:?}\n  {:?}",
        samples.len(),
        duration,
        cycle,
        slowest(&samples),
        ready.len(),
        p99_ready,
        slowest_ready,
        over_budget,
        MAIN_THREAD_BUDGET,
        outcomes(&samples),
        tollgate_stats(&stack.envoy)
    );
    let mut cases = Cases::new("fault soak");
    cases.case(
        "every request was answered, none slower than the timeout plus a margin",
        || {
            let unanswered = samples.iter().filter(|s| s.status.is_none()).count();
            assert_eq!(unanswered, 0, "{:?}", outcomes(&samples));
            let limit = Duration::from_millis(TIMEOUT_MS) + MARGIN;
            assert!(slowest(&samples) < limit, "slowest {:?}", slowest(&samples));
        },
    );
    cases.case("no VM panicked or was reloaded", || {
        assert_no_vm_failure(&stack.envoy)
    });
    cases.case(
        "Envoy's main thread was never busy for more than 100 ms",
        || {
            assert!(
                slowest_ready < MAIN_THREAD_BUDGET,
                "slowest /ready {slowest_ready:?}"
            );
        },
    );
    cases.case(
        "3scale has every admitted unit and response code, exactly",
        || {
            assert_reported(
                &stack.sim,
                CACHE_SERVICE,
                &expected,
                true,
                Duration::from_secs(20),
                Duration::from_secs(2),
            );
        },
    );
    cases.finish();
}
