//! The set-up with Tollgate's reporter as an Envoy singleton service (`envoy/test-singleton.template.yaml`): the
//! config passes `envoy --mode validate`, reports still arrive exactly, and the flushes come from the singleton.
//!
//! To tell who flushed, the workers are configured to flush only every 60 s and the reporter every 200 ms: usage
//! that reaches 3scale within seconds was sent by the reporter. The same workers without the singleton (the
//! control) report nothing in that time.

use std::time::Duration;

use serde_json::{Value, json};
use tollgate_e2e::{Cases, Envoy, LoadSpec, Stack, run_load, yaml_string};

use crate::support::{
    CACHE_SERVICE, Expected, SINGLETON_TEMPLATE, TEMPLATE, Traffic, assert_no_vm_failure,
    assert_reported, cache_service, filter_config, options, outcomes, sim_state, stat,
};

/// The workers' config: reports every 60 s, so any report sooner comes from the singleton.
fn workers_config() -> Value {
    filter_config(
        json!({ "report_interval_ms": 60_000 }),
        2000,
        vec![cache_service()],
    )
}

fn reporter_config() -> Value {
    let mut config = workers_config();
    config["cache"]["report_interval_ms"] = json!(200);
    config["role"] = json!("reporter");
    config
}

fn start(template: &str) -> Stack {
    let mut options = options(template, workers_config(), 2);
    options.extra_vars.push((
        "REPORTER_CONFIG".into(),
        yaml_string(&reporter_config().to_string()),
    ));
    Stack::start(options)
}

fn send_traffic(stack: &Stack) -> Expected {
    let traffic = Traffic::cache_apps(5);
    let spec = LoadSpec {
        rate: Some(500.0),
        clients: 4,
        total: Some(600),
        duration: None,
    };
    let samples = run_load(stack.envoy.listen_port, &spec, traffic.requests());
    let through = samples.iter().filter(|s| s.reached_upstream()).count();
    assert_eq!(through, 600, "{:?}", outcomes(&samples));
    traffic.expected(&samples)
}

#[test]
fn the_singleton_reporter_flushes_and_reports_arrive_exactly() {
    if tollgate_e2e::skip_without_simulator("counters") {
        return;
    }
    let stack = start(SINGLETON_TEMPLATE);
    let mut cases = Cases::new("singleton reporter");
    cases.case("the config passes envoy --mode validate", || {
        Envoy::validate(stack.yaml()).unwrap_or_else(|why| panic!("{why}"));
    });
    cases.case("the singleton was configured as the reporter", || {
        assert!(
            stack
                .envoy
                .wait_log("(Reporter)", Duration::from_secs(5))
                .is_some(),
            "{}",
            stack.envoy.log()
        );
    });
    let expected = send_traffic(&stack);
    cases.case(
        "usage arrives exactly, within seconds (so the singleton flushed)",
        || {
            assert_reported(
                &stack.sim,
                CACHE_SERVICE,
                &expected,
                false,
                Duration::from_secs(5),
                Duration::from_millis(500),
            );
            assert_eq!(stat(&stack.envoy, "reports.sent"), expected.units());
        },
    );
    cases.case("response codes arrive exactly", || {
        assert_reported(
            &stack.sim,
            CACHE_SERVICE,
            &expected,
            true,
            Duration::from_secs(3),
            Duration::ZERO,
        );
    });
    cases.case("no VM failure", || assert_no_vm_failure(&stack.envoy));
    cases.finish();
}

#[test]
fn without_the_singleton_the_same_workers_do_not_report_that_soon() {
    if tollgate_e2e::skip_without_simulator("counters") {
        return;
    }
    // The control for the test above: the same worker config on the template without the singleton.
    let stack = start(TEMPLATE);
    // The first tick (200 ms after configuration) finds no flush recorded yet and flushes at once: let it pass,
    // so that the next worker flush is 60 s away.
    std::thread::sleep(Duration::from_secs(1));
    let expected = send_traffic(&stack);
    std::thread::sleep(Duration::from_secs(3));
    let reported = sim_state(&stack.sim, CACHE_SERVICE, &expected);
    let units: u64 = reported
        .apps
        .values()
        .flat_map(|account| account.usage.iter())
        .filter(|(metric, _)| *metric != "hits")
        .map(|(_, n)| n)
        .sum();
    assert_eq!(
        units, 0,
        "the workers flushed before their 60 s interval: {reported:?}"
    );
    assert_no_vm_failure(&stack.envoy);
}
