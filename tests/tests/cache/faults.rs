//! The failure policies under every fault mode, and a VM reload.
//!
//! Each policy is a service of its own (`deny.test`, `allow-cached.test`, `stale.test` = allow_cached with a 3 s
//! maximum staleness, `listed.test`, `allow.test`), all with ttl 2 s (horizon 4 s) and a 500 ms backend timeout.
//! Under each fault (3scale refusing connections, answering after 1.5 s, answering 500, answering garbage) every
//! policy is asked for an application cached a moment ago (`fresh`), one cached long enough ago to be past the
//! horizon (`old`), one never seen (`new`) and one on `listed.test`'s allow list (`listed`); `allow-cached.test`
//! also for a cached denial (`old` with a wrong key). Every answer must be the documented one, within the backend
//! timeout plus a margin; once 3scale is back, the usage let through reaches it.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tollgate_e2e::{Cases, Request, Response, Stack, StackOptions, send, test_hooks_wasm_path};

use crate::support::{
    CACHE_HOST, CACHE_SERVICE, Expected, Route, Traffic, assert_no_vm_failure, assert_reported,
    cache_service, filter_config, options, request, service, start, stat, tollgate_stats,
    vm_reloads, wait_for,
};

const TIMEOUT_MS: u64 = 500;
const TTL_S: u64 = 2;
/// How much later than the backend timeout an answer may come.
const MARGIN: Duration = Duration::from_millis(300);
/// The time a fault stays on after the last request, so that reports are flushed (every 200 ms) into it.
const HOLD: Duration = Duration::from_millis(700);

const MODES: [&str; 4] = ["refused", "slow", "error", "garbage"];
const POLICIES: [(&str, &str); 5] = [
    ("svc-deny", "deny.test"),
    ("svc-allow-cached", "allow-cached.test"),
    ("svc-stale", "stale.test"),
    ("svc-listed", "listed.test"),
    ("svc-allow", "allow.test"),
];

fn policies_config() -> Value {
    let listed: Vec<String> = MODES.iter().map(|mode| format!("{mode}-listed")).collect();
    let failures = [
        json!({ "policy": "deny" }),
        json!({ "policy": "allow_cached" }),
        json!({ "policy": "allow_cached", "max_staleness_seconds": 3 }),
        json!({ "policy": "allow_listed", "allowed": listed }),
        json!({ "policy": "allow" }),
    ];
    let services = POLICIES
        .iter()
        .zip(failures)
        .map(|((id, host), failure)| service(id, host, failure))
        .collect();
    filter_config(
        json!({ "ttl_seconds": TTL_S, "report_interval_ms": 200 }),
        TIMEOUT_MS,
        services,
    )
}

/// What a request must get: the upstream that answers, or a refusal's status and code.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Outcome {
    Upstream(String),
    Refused(u16, String),
}

fn upstream(name: &str) -> Outcome {
    Outcome::Upstream(name.to_owned())
}

fn refused(status: u16, code: &str) -> Outcome {
    Outcome::Refused(status, code.to_owned())
}

/// The documented outcome for one policy and application role while 3scale cannot answer.
fn documented(service: &str, role: &str) -> Outcome {
    match (service, role) {
        // Within the horizon every policy decides from the cache, without asking.
        (_, "fresh") => upstream("production"),
        // allow_cached: the last decision stands up to the maximum staleness (1 h), denials included.
        ("svc-allow-cached", "old") => upstream("production"),
        ("svc-allow-cached", "old-denied") => refused(403, "auth_failed"),
        // allow: everything passes, to the plan's cluster when the plan is known, else the fail-open cluster.
        ("svc-allow", "old") => upstream("production"),
        ("svc-allow", _) => upstream("staging"),
        // allow_listed: listed applications pass (plan unknown: the fail-open cluster).
        ("svc-listed", "listed") => upstream("staging"),
        _ => refused(503, "backend_unavailable"),
    }
}

/// The request of `role` in fault mode `mode` on `host`.
fn role_request(host: &str, mode: &str, role: &str) -> Request {
    let (app, key) = match role {
        "old-denied" => (format!("{mode}-old"), "wrong-key"),
        _ => (format!("{mode}-{role}"), "key"),
    };
    request(host, Route::Items, &app, key, 200)
}

/// The roles asked for on `service`.
fn roles(service: &str) -> Vec<&'static str> {
    let mut roles = vec!["fresh", "old", "new", "listed"];
    if service == "svc-allow-cached" {
        roles.push("old-denied");
    }
    roles
}

fn outcome_of(response: &Response) -> Outcome {
    if let Some(name) = response.upstream() {
        return Outcome::Upstream(name);
    }
    let body: Option<Value> = serde_json::from_slice(&response.body).ok();
    let code = body
        .as_ref()
        .and_then(|body| body.pointer("/error/code"))
        .and_then(Value::as_str)
        .map_or_else(|| response.text(), str::to_owned);
    Outcome::Refused(response.status, code)
}

/// Injects `mode` on every 3scale endpoint; for `refused`, 3scale stays away for `refuse_ms`.
fn inject(stack: &Stack, mode: &str, refuse_ms: u64) {
    match mode {
        "refused" => stack.sim.refuse_for(refuse_ms),
        "slow" => stack
            .sim
            .fault(json!({ "endpoint": "*", "latency_ms": 1500 })),
        "error" => stack.sim.fault(json!({ "endpoint": "*", "status": 500 })),
        "garbage" => stack.sim.fault(json!({ "endpoint": "*", "garbage": true })),
        _ => unreachable!("{mode}"),
    }
}

/// Waits until the simulator answers again (after a refusal) and clears every fault.
fn recover(stack: &Stack) {
    wait_for("3scale back", Duration::from_secs(10), || {
        send(stack.sim.port, &Request::get("/status"))
            .map(|_| ())
            .map_err(|e| e.to_string())
    });
    stack.sim.clear_faults();
}

/// One request's result: what it got, and how long it took.
struct Asked {
    service: &'static str,
    role: &'static str,
    outcome: Result<Outcome, String>,
    latency: Duration,
}

/// Asks every policy for every role at once (2 requests each, one after the other), each on its own connection.
fn ask_all(stack: &Stack, mode: &'static str) -> Vec<Asked> {
    let port = stack.envoy.listen_port;
    let threads: Vec<_> = POLICIES
        .iter()
        .flat_map(|&(service, host)| {
            roles(service)
                .into_iter()
                .map(move |role| (service, host, role))
        })
        .map(|(service, host, role)| {
            std::thread::spawn(move || {
                (0..2)
                    .map(|_| {
                        let started = Instant::now();
                        let outcome = send(port, &role_request(host, mode, role))
                            .map(|response| outcome_of(&response))
                            .map_err(|e| e.to_string());
                        Asked {
                            service,
                            role,
                            outcome,
                            latency: started.elapsed(),
                        }
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    threads
        .into_iter()
        .flat_map(|thread| thread.join().unwrap_or_default())
        .collect()
}

/// Usage (get_items) let through per (service, application).
type Allowed = BTreeMap<(String, String), u64>;

fn let_through(allowed: &mut Allowed, service: &str, app: &str) {
    *allowed
        .entry((service.to_owned(), app.to_owned()))
        .or_default() += 1;
}

fn hits_of(stack: &Stack, service: &str, app: &str) -> u64 {
    stack.sim.usage(service, app)["metrics"]["get_items"]["eternity"]
        .as_u64()
        .unwrap_or(0)
}

#[test]
fn every_failure_policy_under_every_fault_mode() {
    if tollgate_e2e::skip_without_simulator("faults") {
        return;
    }
    let stack = start(policies_config(), 1);
    let mut allowed = Allowed::new();
    // Entries that will be past every horizon (4 s; 3 s for stale.test) when the faults come.
    for (service, host) in POLICIES {
        for mode in MODES {
            let response = stack.send(&role_request(host, mode, "old"));
            assert_eq!(
                response.status,
                200,
                "{service} {mode}-old: {}",
                response.text()
            );
            let_through(&mut allowed, service, &format!("{mode}-old"));
            if service == "svc-allow-cached" {
                let denied = stack.send(&role_request(host, mode, "old-denied"));
                assert_eq!(denied.status, 403, "{}", denied.text());
            }
        }
    }
    std::thread::sleep(Duration::from_secs(2 * TTL_S) + Duration::from_millis(500));

    let mut cases = Cases::new("failure policies under faults");
    for mode in MODES {
        for (service, host) in POLICIES {
            let response = stack.send(&role_request(host, mode, "fresh"));
            assert_eq!(
                response.status,
                200,
                "{service} {mode}-fresh: {}",
                response.text()
            );
            let_through(&mut allowed, service, &format!("{mode}-fresh"));
        }
        let uncertain_before = stat(&stack.envoy, "reports.uncertain");
        let dropped_before = stat(&stack.envoy, "reports.dropped");
        let faulted = Instant::now();
        inject(&stack, mode, 2500);
        let asked = ask_all(&stack, mode);
        let elapsed = faulted.elapsed();
        if elapsed < HOLD + Duration::from_millis(600) {
            std::thread::sleep(HOLD + Duration::from_millis(600) - elapsed);
        }
        recover(&stack);
        for answer in &asked {
            if matches!(answer.outcome, Ok(Outcome::Upstream(_))) {
                let app = match answer.role {
                    "old-denied" => format!("{mode}-old"),
                    role => format!("{mode}-{role}"),
                };
                let_through(&mut allowed, answer.service, &app);
            }
        }
        for (service, _) in POLICIES {
            for role in roles(service) {
                let name = format!("{mode}: {service} {role} → {:?}", documented(service, role));
                let answers: Vec<&Asked> = asked
                    .iter()
                    .filter(|a| a.service == service && a.role == role)
                    .collect();
                cases.case(&name, || {
                    assert_eq!(answers.len(), 2);
                    for answer in &answers {
                        assert_eq!(
                            answer.outcome.as_ref().map_err(String::as_str),
                            Ok(&documented(service, role)),
                        );
                        assert!(
                            answer.latency <= Duration::from_millis(TIMEOUT_MS) + MARGIN,
                            "answered after {:?}",
                            answer.latency
                        );
                    }
                });
            }
        }
        let apps: Vec<(String, String)> = allowed
            .keys()
            .filter(|(_, app)| app.starts_with(&format!("{mode}-")))
            .cloned()
            .collect();
        let allowed_now = allowed.clone();
        cases.case(
            &format!("{mode}: usage let through reaches 3scale, or is counted"),
            || {
                let mut missing = 0;
                let settled = tollgate_e2e::wait_until(
                    Duration::from_secs(5),
                    Duration::from_millis(100),
                    || {
                        missing = 0;
                        let mut extra = Vec::new();
                        for key in &apps {
                            let want = allowed_now[key];
                            let got = hits_of(&stack, &key.0, &key.1);
                            if got > want {
                                extra.push(format!("{key:?}: {got} > {want}"));
                            }
                            missing += want.saturating_sub(got);
                        }
                        assert!(extra.is_empty(), "counted twice: {extra:?}");
                        (missing == 0).then_some(())
                    },
                );
                if settled.is_none() {
                    let uncertain = stat(&stack.envoy, "reports.uncertain") - uncertain_before;
                    let dropped = stat(&stack.envoy, "reports.dropped") - dropped_before;
                    assert!(
                        missing <= uncertain + dropped,
                        "{missing} units let through never reached 3scale and only {} were counted \
                     uncertain or dropped (lost silently); {:?}",
                        uncertain + dropped,
                        tollgate_stats(&stack.envoy)
                    );
                    assert!(
                        mode != "refused" && mode != "error",
                        "{missing} units missing although a refused or 500 report is retried"
                    );
                }
            },
        );
    }
    cases.case("no VM failure, no reload", || {
        assert_no_vm_failure(&stack.envoy)
    });
    cases.finish();
}

#[test]
fn a_vm_reload_loses_no_pending_usage() {
    if tollgate_e2e::skip_without_simulator("counters") {
        return;
    }
    let config = filter_config(
        json!({ "report_interval_ms": 5000 }),
        1000,
        vec![cache_service()],
    );
    let mut options: StackOptions = options(crate::support::TEMPLATE, config, 1);
    options.wasm = Some(test_hooks_wasm_path());
    let stack = Stack::start(options);
    let traffic = Traffic::cache_apps(5);
    // Learn every metric first (each is a miss once), then cache hits whose usage waits for the next flush.
    let mut samples = Vec::new();
    let spec = tollgate_e2e::LoadSpec {
        rate: None,
        clients: 2,
        total: Some(120),
        duration: None,
    };
    samples.extend(tollgate_e2e::run_load(
        stack.envoy.listen_port,
        &spec,
        traffic.requests(),
    ));
    let before_crash = traffic.expected(&samples);
    // The workers' leases go back to the shared cache within a lease period and a tick of the last request (what a
    // VM dying under load loses is measured by `a_vm_reload_under_load_loses_at_most_its_leases`).
    std::thread::sleep(Duration::from_millis(150));
    let pending = stat(&stack.envoy, "reports.sent") < before_crash.units();
    let crash = stack.try_send(
        &request(CACHE_HOST, Route::Items, "app-000", "key-000", 200)
            .header("x-tollgate-test-crash", "1"),
    );
    println!(
        "crash request: {:?}",
        crash.as_ref().map(|r| (r.status, r.text()))
    );
    // Requests after the crash: the first may meet the dead VM, then a new one serves them.
    let mut after = Vec::new();
    wait_for("a new VM serves requests", Duration::from_secs(20), || {
        let response = stack
            .try_send(&request(
                CACHE_HOST,
                Route::Items,
                "app-001",
                "key-001",
                200,
            ))
            .map_err(|e| e.to_string())?;
        let ok = response.upstream().is_some();
        after.push(ok);
        ok.then_some(())
            .ok_or_else(|| format!("{} {}", response.status, response.text()))
    });
    let mut expected: Expected = before_crash.clone();
    for _ in after.iter().filter(|ok| **ok) {
        expected.add("app-001", Route::Items, Some(200));
    }
    let stats: BTreeMap<String, u64> = stack
        .envoy
        .stats()
        .into_iter()
        .filter(|(name, _)| name.starts_with("wasm"))
        .collect();
    println!("after the reload: {stats:?}");
    let mut cases = Cases::new("VM reload");
    cases.case("usage was still pending when the VM died", || {
        assert!(
            pending,
            "a flush came first: {:?}",
            tollgate_stats(&stack.envoy)
        );
    });
    cases.case("the crash request did not reach an upstream", || {
        if let Ok(response) = &crash {
            assert!(response.upstream().is_none(), "{}", response.text());
        }
    });
    cases.case("Envoy reloaded the VM", || {
        assert!(vm_reloads(&stack.envoy) > 0, "{stats:?}");
    });
    cases.case(
        "after the reload and a flush, 3scale has every unit allowed",
        || {
            assert_reported(
                &stack.sim,
                CACHE_SERVICE,
                &expected,
                false,
                Duration::from_secs(12),
                Duration::ZERO,
            );
            assert_eq!(stat(&stack.envoy, "reports.uncertain"), 0);
        },
    );
    cases.finish();
}
