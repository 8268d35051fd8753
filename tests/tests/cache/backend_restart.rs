//! apisonator's listener restarted gracefully in the middle of the traffic, while it also closes kept-alive
//! connections as requests arrive on them (as puma does): every admitted unit of usage and every response code
//! reaches 3scale exactly once, in both modes. A report Envoy saw cut before any answer ("connection
//! termination") never reached apisonator, and is sent again.

use std::time::Duration;

use serde_json::json;
use tollgate_e2e::{Cases, Load, LoadSpec};

use crate::support::{
    CACHE_SERVICE, Traffic, assert_no_vm_failure, assert_reported, cache_service, filter_config,
    outcomes, start, stat, tollgate_stats,
};

fn across_a_restart(mode: &str) {
    let mut service = cache_service();
    service["mode"] = json!(mode);
    let config = filter_config(json!({ "report_interval_ms": 500 }), 2000, vec![service]);
    let stack = start(config, 2);
    stack
        .sim
        .fault(json!({ "endpoint": "*", "close_kept_alive_after": 10 }));
    let traffic = Traffic::cache_apps(5);
    let spec = LoadSpec {
        rate: Some(50.0),
        clients: 2,
        total: Some(600),
        duration: None,
    };
    let load = Load::start(stack.envoy.listen_port, &spec, traffic.requests());
    std::thread::sleep(Duration::from_secs(3));
    stack.sim.restart_for(2000);
    let samples = load.finish();
    let expected = traffic.expected(&samples);
    let admitted = samples.iter().filter(|s| s.reached_upstream()).count();
    println!(
        "{mode} across a restart: {} requests, {admitted} admitted: {:?}; {:?}",
        samples.len(),
        outcomes(&samples),
        tollgate_stats(&stack.envoy)
    );
    let mut cases = Cases::new(&format!(
        "{mode}: a graceful restart, kept-alive connections closed"
    ));
    cases.case("most requests were admitted", || {
        assert_eq!(samples.len(), 600);
        assert!(admitted >= 400, "{:?}", outcomes(&samples));
    });
    cases.case("3scale has every admitted unit and code, exactly", || {
        assert_reported(
            &stack.sim,
            CACHE_SERVICE,
            &expected,
            true,
            Duration::from_secs(40),
            Duration::from_secs(2),
        );
    });
    cases.case("nothing was counted uncertain or dropped", || {
        assert_eq!(stat(&stack.envoy, "reports.uncertain"), 0);
        assert_eq!(stat(&stack.envoy, "reports.dropped"), 0);
    });
    cases.case("no VM failure", || assert_no_vm_failure(&stack.envoy));
    cases.finish();
}

#[test]
fn cache_mode_counts_exactly_across_a_graceful_restart() {
    if tollgate_e2e::skip_without_simulator("graceful restart and counters") {
        return;
    }
    across_a_restart("cache");
}

#[test]
fn per_request_mode_counts_exactly_across_a_graceful_restart() {
    if tollgate_e2e::skip_without_simulator("graceful restart and counters") {
        return;
    }
    across_a_restart("per_request");
}
