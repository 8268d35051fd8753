//! Proves the simulator side of the harness: `Sim` drives a real `tollgate-sim` (seeded, faulted, restarted), and
//! `Stack` composes it with the echo upstreams and Envoy (without the filter).

use std::time::Duration;

use serde_json::json;
use tollgate_e2e::{Cases, Request, Sim, Stack, StackOptions, send, wait_until, workspace_root};

const SEED: &str = "tests/fixtures/harness-seed.json";
const AUTHREP: &str =
    "/transactions/authrep.xml?service_token=tok1&service_id=svc1&user_key=uk1&usage%5Bhits%5D=1";

fn hits_this_minute(sim: &Sim) -> u64 {
    sim.usage("svc1", "app1")["metrics"]["hits"]["minute"]
        .as_u64()
        .unwrap()
}

#[test]
fn sim_is_seeded_observed_faulted_and_restarted() {
    if tollgate_e2e::skip_without_simulator("process, counters and faults") {
        return;
    }
    let mut sim = Sim::start(&workspace_root().join(SEED));
    let mut cases = Cases::new("tollgate-sim through the harness");
    cases.case("status answers", || {
        assert_eq!(sim.get_json("/status")["status"], "ok");
    });
    cases.case(
        "the seed authorizes its application and counts usage",
        || {
            let response = sim.send(&Request::get(AUTHREP));
            assert_eq!(response.status, 200, "{}", response.text());
            assert!(
                response.text().contains("<authorized>true</authorized>"),
                "{}",
                response.text()
            );
            assert!(
                response.text().contains("<plan>Basic</plan>"),
                "{}",
                response.text()
            );
            assert_eq!(hits_this_minute(&sim), 1);
        },
    );
    cases.case("calls and requests are recorded", || {
        assert_eq!(sim.calls()["total"]["authrep"], 1);
        assert_eq!(sim.calls()["services"]["svc1"]["authrep"], 1);
        let requests = sim.requests();
        assert!(
            requests
                .iter()
                .any(|r| r["path"] == "/transactions/authrep.xml"),
            "{requests:?}"
        );
        assert_eq!(sim.requests_limit(1).len(), 1);
        assert!(sim.response_codes("svc1", "app1")["codes"].is_object());
    });
    cases.case("faults apply to their endpoint until cleared", || {
        sim.fault(json!({"endpoint": "authrep", "status": 503}));
        assert_eq!(sim.send(&Request::get(AUTHREP)).status, 503);
        sim.clear_faults();
        assert_eq!(sim.send(&Request::get(AUTHREP)).status, 200);
        assert_eq!(hits_this_minute(&sim), 2);
    });
    cases.case("reset forgets usage and counters", || {
        sim.reset();
        assert_eq!(hits_this_minute(&sim), 0);
        assert_eq!(sim.calls()["total"]["authrep"], 0);
    });
    cases.case("the clock can be frozen and moved", || {
        sim.freeze_clock(json!("2026-01-01 00:00:30"));
        assert_eq!(sim.clock()["frozen"], true);
        let frozen = sim.clock()["epoch"].as_i64().unwrap();
        sim.advance_clock(60);
        assert_eq!(sim.clock()["epoch"].as_i64().unwrap(), frozen + 60);
        sim.unfreeze_clock();
        assert_eq!(sim.clock()["frozen"], false);
    });
    cases.case("refuse_for refuses connections for a while", || {
        sim.refuse_for(300);
        assert!(send(sim.port, &Request::get("/status")).is_err());
        let back = wait_until(Duration::from_secs(5), Duration::from_millis(20), || {
            send(sim.port, &Request::get("/status")).ok()
        });
        assert_eq!(back.map(|r| r.status), Some(200));
    });
    cases.case("stop and restart keep the port and the seed", || {
        let port = sim.port;
        sim.stop();
        assert!(send(port, &Request::get("/status")).is_err());
        sim.restart();
        assert_eq!(sim.port, port);
        assert_eq!(sim.send(&Request::get(AUTHREP)).status, 200);
        assert!(sim.log().contains("listening on"), "{}", sim.log());
    });
    cases.finish();
}

#[test]
fn an_empty_sim_is_seeded_through_the_internal_api() {
    if tollgate_e2e::skip_without_simulator("counters (an empty backend of its own)") {
        return;
    }
    let sim = Sim::start_empty();
    let (status, _) = sim.post_json(
        "/internal/services/",
        &json!({"service": {"id": "s9", "provider_key": "pk9", "backend_version": "2", "state": "active"}}),
    );
    assert!((200..300).contains(&status), "{status}");
    let (status, body) = sim.post_json(
        "/internal/services/s9/applications/a9",
        &json!({"application": {"state": "active", "plan_id": "p", "plan_name": "P"}}),
    );
    assert!((200..300).contains(&status), "{status} {body}");
    let (status, _) = sim.post_json(
        "/internal/services/s9/metrics/1",
        &json!({"metric": {"name": "hits"}}),
    );
    assert!((200..300).contains(&status), "{status}");
    let response = sim.send(&Request::get(
        "/transactions/authorize.xml?provider_key=pk9&service_id=s9&app_id=a9",
    ));
    assert_eq!(response.status, 200, "{}", response.text());
    assert!((200..300).contains(&sim.delete("/internal/services/s9/applications/a9")));
}

#[test]
fn stack_puts_envoy_in_front_of_the_upstreams_and_the_sim() {
    if tollgate_e2e::skip_without_simulator("counters") {
        return;
    }
    let stack = Stack::start(StackOptions {
        concurrency: 2,
        ..StackOptions::new(
            "tests/fixtures/harness-envoy.yaml",
            json!({"services": []}),
            SEED,
        )
    });
    let status = stack.send(&Request::get("/sim/status"));
    assert_eq!(status.json()["status"], "ok");
    let staged = stack.send(&Request::get("/staging/x"));
    assert_eq!(staged.upstream().as_deref(), Some("staging"));
    assert_eq!(stack.staging.last().path, "/staging/x");
    let routed = stack.send(&Request::get("/y").header("x-route-cluster", "production"));
    assert_eq!(routed.upstream().as_deref(), Some("production"));
    assert_eq!(
        stack.send(&Request::get("/config")).json(),
        json!({"services": []})
    );
    // The access log shows the path as rewritten for the sim route.
    let log = stack.wait_access_log(|log| log.lines().count() >= 4);
    assert!(log.contains("GET /status 200 threescale"), "{log}");
    assert!(
        stack
            .yaml()
            .contains(&format!("port_value: {}", stack.sim.port))
    );
}
