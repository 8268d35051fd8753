//! Worker-local leases (docs/design.md, "Leases"): units a worker holds and does not use come back to the others
//! within the lease's expiry; a suspension still bites within one ttl with every worker busy; a VM that dies under
//! load loses at most what its leases admitted since their last renewal.

use std::time::{Duration, Instant};

use serde_json::json;
use tollgate_e2e::{Cases, Connection, Load, LoadSpec, Response, Stack, test_hooks_wasm_path};

use crate::support::{
    CACHE_HOST, CACHE_SERVICE, Route, Traffic, assert_no_vm_failure, cache_service,
    connections_per_worker, filter_config, options, request, sim_state, start, vm_reloads,
    wait_for,
};

/// `limited-app`'s plan: hits ≤ 50 for eternity.
const LIMIT: u64 = 50;
/// The most requests one lease holds (filter/src/lease/mod.rs, `MAX_REQUESTS`).
const MAX_REQUESTS: u64 = 64;

fn limited(connection: &mut Connection) -> Response {
    connection
        .send(&request(
            CACHE_HOST,
            Route::Items,
            "limited-app",
            "limited-key",
            200,
        ))
        .unwrap()
}

/// Opens `connection` with a request that touches no limit that matters, and says which worker accepted it.
fn worker_of(stack: &Stack, connection: &mut Connection) -> usize {
    let before = connections_per_worker(stack);
    let response = connection
        .send(&request(
            CACHE_HOST,
            Route::Items,
            "app-000",
            "key-000",
            200,
        ))
        .unwrap();
    assert_eq!(response.status, 200, "{}", response.text());
    let after = connections_per_worker(stack);
    (0..after.len())
        .find(|&worker| after[worker] > before[worker])
        .unwrap_or_else(|| panic!("no worker took the connection: {before:?} {after:?}"))
}

/// Two connections on two different workers.
fn one_per_worker(stack: &Stack) -> (Connection, Connection) {
    let mut first = Connection::new(stack.envoy.listen_port);
    let first_worker = worker_of(stack, &mut first);
    for _ in 0..40 {
        let mut second = Connection::new(stack.envoy.listen_port);
        if worker_of(stack, &mut second) != first_worker {
            return (first, second);
        }
    }
    panic!("every connection went to worker {first_worker}");
}

#[test]
fn units_a_worker_holds_come_back_within_its_lease_and_the_other_worker_admits_them() {
    if tollgate_e2e::skip_without_simulator("fresh eternity limit") {
        return;
    }
    // Leases of 1 s, so that the steps below take far less than one on any machine.
    const LEASE: Duration = Duration::from_millis(1000);
    let config = filter_config(
        json!({ "report_interval_ms": 200, "lease_ms": LEASE.as_millis() as u64 }),
        2000,
        vec![cache_service()],
    );
    let stack = start(config, 2);
    let (mut a, mut b) = one_per_worker(&stack);
    // Worker B uses all but 8 of the limit, then lets its leases go back.
    for n in 0..LIMIT - 8 {
        let response = limited(&mut b);
        assert_eq!(response.status, 200, "request {n}: {}", response.text());
    }
    std::thread::sleep(LEASE + Duration::from_millis(300));
    // Worker A's first lease: a quarter of the 8 left, 2 requests; it uses one and goes quiet.
    assert_eq!(limited(&mut a).status, 200);
    let a_stopped = Instant::now();
    let mut b_allowed = 0;
    let refused = loop {
        let response = limited(&mut b);
        if response.status != 200 {
            break response;
        }
        b_allowed += 1;
        assert!(b_allowed < 10, "worker B never refused");
    };
    let held_for = a_stopped.elapsed();
    let before_return = LIMIT - 8 + 1 + b_allowed;
    let returned_after = loop {
        let response = limited(&mut b);
        if response.status == 200 {
            break a_stopped.elapsed();
        }
        assert!(
            a_stopped.elapsed() < LEASE * 3,
            "worker A's unit never came back: {}",
            response.text()
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let after = limited(&mut b);
    println!(
        "leases: B refused after {before_return} allowed ({held_for:?} after A's request); A's unit admitted by B \
         {returned_after:?} after A went quiet (lease {LEASE:?})"
    );
    let mut cases = Cases::new("a lease returned within its expiry");
    cases.case("worker B was refused while A's lease held a unit", || {
        assert!(held_for < LEASE, "the steps took {held_for:?}");
        assert_eq!(refused.status, 429, "{}", refused.text());
        assert_eq!(before_return, LIMIT - 1);
    });
    cases.case(
        "the unit came back within the lease and a tick, and B admitted it",
        || {
            assert!(returned_after >= held_for);
            assert!(
                returned_after <= LEASE + Duration::from_millis(400),
                "{returned_after:?}"
            );
        },
    );
    cases.case("then exactly the limit was admitted", || {
        assert_eq!(after.status, 429, "{}", after.text());
    });
    cases.case("3scale counts exactly the limit", || {
        wait_for("the usage reported", Duration::from_secs(10), || {
            let usage = stack.sim.usage(CACHE_SERVICE, "limited-app");
            let hits = usage["metrics"]["hits"]["eternity"].as_u64().unwrap_or(0);
            (hits == LIMIT)
                .then_some(())
                .ok_or_else(|| format!("3scale has {hits}"))
        });
    });
    cases.case("no VM failure", || assert_no_vm_failure(&stack.envoy));
    cases.finish();
}

#[test]
fn a_suspension_bites_within_one_ttl_while_every_worker_decides_from_leases() {
    if tollgate_e2e::skip_without_simulator("seeded application to suspend") {
        return;
    }
    const TTL: Duration = Duration::from_secs(1);
    const MARGIN: Duration = Duration::from_millis(500);
    const CLIENTS: usize = 12;
    let config = filter_config(
        json!({ "ttl_seconds": TTL.as_secs(), "report_interval_ms": 200 }),
        2000,
        vec![cache_service()],
    );
    let stack = start(config, 2);
    let started = Instant::now();
    let suspend_at = Duration::from_millis(1500);
    let run_for = Duration::from_millis(4000);
    let port = stack.envoy.listen_port;
    let (outcomes, suspended_at) = std::thread::scope(|scope| {
        let clients: Vec<_> = (0..CLIENTS)
            .map(|_| {
                scope.spawn(move || {
                    let mut connection = Connection::new(port);
                    let mut seen = Vec::new();
                    while started.elapsed() < run_for {
                        let response = connection
                            .send(&request(
                                CACHE_HOST,
                                Route::Items,
                                "suspend-app",
                                "suspend-key",
                                200,
                            ))
                            .unwrap();
                        seen.push((started.elapsed(), response.status));
                        std::thread::sleep(Duration::from_millis(4));
                    }
                    seen
                })
            })
            .collect();
        std::thread::sleep(suspend_at);
        let (status, body) = stack.sim.put_json(
            &format!("/internal/services/{CACHE_SERVICE}/applications/suspend-app"),
            &json!({ "application": { "state": "suspended" } }),
        );
        assert!((200..300).contains(&status), "{status} {body}");
        let suspended_at = started.elapsed();
        let outcomes: Vec<(Duration, u16)> = clients
            .into_iter()
            .flat_map(|client| client.join().unwrap())
            .collect();
        (outcomes, suspended_at)
    });
    let last_allowed = outcomes
        .iter()
        .filter(|(at, status)| *at > suspended_at && *status == 200)
        .map(|(at, _)| *at)
        .max()
        .unwrap_or(suspended_at);
    let bit_after = last_allowed - suspended_at;
    println!(
        "suspension under load: {} requests from {CLIENTS} clients, the last allowed {bit_after:?} after the \
         suspension, connections per worker {:?}",
        outcomes.len(),
        connections_per_worker(&stack)
    );
    let mut cases = Cases::new("a suspension with every worker leasing");
    cases.case("both workers served the application", || {
        let per_worker = connections_per_worker(&stack);
        assert!(
            per_worker.len() == 2 && per_worker.iter().all(|&n| n > 0),
            "{per_worker:?}"
        );
    });
    cases.case("allowed before the suspension", || {
        assert!(
            outcomes
                .iter()
                .any(|(at, status)| *at < suspended_at && *status == 200)
        );
    });
    cases.case("refused by every worker within one ttl of it", || {
        assert!(bit_after <= TTL + MARGIN, "{bit_after:?}");
    });
    cases.case("and every request after that refused", || {
        let after: Vec<_> = outcomes
            .iter()
            .filter(|(at, _)| *at > last_allowed)
            .collect();
        assert!(!after.is_empty());
        assert!(after.iter().all(|(_, status)| *status == 403), "{after:?}");
    });
    cases.finish();
}

#[test]
fn a_vm_reload_under_load_loses_at_most_what_its_leases_admitted() {
    if tollgate_e2e::skip_without_simulator("counters") {
        return;
    }
    const APPS: usize = 5;
    const CLIENTS: usize = 4;
    let config = filter_config(
        json!({ "report_interval_ms": 200 }),
        1000,
        vec![cache_service()],
    );
    let mut options = options(crate::support::TEMPLATE, config, 1);
    options.wasm = Some(test_hooks_wasm_path());
    let stack = Stack::start(options);
    let traffic = Traffic::cache_apps(APPS);
    let spec = LoadSpec {
        rate: Some(800.0),
        clients: CLIENTS,
        total: None,
        duration: Some(Duration::from_secs(4)),
    };
    let load = Load::start(stack.envoy.listen_port, &spec, traffic.requests());
    std::thread::sleep(Duration::from_millis(2000));
    let crash = stack.try_send(
        &request(CACHE_HOST, Route::Items, "app-000", "key-000", 200)
            .header("x-tollgate-test-crash", "1"),
    );
    let samples = load.finish();
    let allowed = traffic.expected(&samples);
    // Reports go out every 200 ms: wait until 3scale's count stops moving.
    let mut reported = sim_state(&stack.sim, CACHE_SERVICE, &allowed).units();
    for _ in 0..20 {
        std::thread::sleep(Duration::from_millis(500));
        let now = sim_state(&stack.sim, CACHE_SERVICE, &allowed).units();
        if now == reported && now > 0 {
            break;
        }
        reported = now;
    }
    let lost = allowed.units().saturating_sub(reported);
    // A request costs at most 2 units of the metrics counted here (search).
    let bound = (APPS as u64 * MAX_REQUESTS + CLIENTS as u64) * 2;
    println!(
        "VM reload under load: {} requests, {} units allowed, {reported} reported, {lost} lost (bound {bound}); \
         crash request {:?}",
        samples.len(),
        allowed.units(),
        crash.as_ref().map(|r| r.status)
    );
    let mut cases = Cases::new("a VM reload under load");
    cases.case("Envoy reloaded the VM and the load went on", || {
        assert!(vm_reloads(&stack.envoy) > 0);
        assert!(samples.iter().filter(|s| s.reached_upstream()).count() > 1000);
    });
    cases.case("nothing was reported twice", || {
        let state = sim_state(&stack.sim, CACHE_SERVICE, &allowed);
        for (app, want) in &allowed.apps {
            let got = &state.apps[app];
            for (metric, units) in &got.usage {
                let expected = want.usage.get(metric).copied().unwrap_or(0);
                assert!(*units <= expected, "{app} {metric}: {units} > {expected}");
            }
        }
    });
    cases.case(
        "at most one lease per application and the requests in flight were lost",
        || {
            assert!(lost <= bound, "{lost} > {bound}");
        },
    );
    cases.finish();
}
