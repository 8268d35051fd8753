//! Upgrading the module in a running Envoy, under load, to a build whose cache format differs: no usage admitted
//! by either build is lost or reported twice.
//!
//! One Envoy whose listener comes from an LDS file (`envoy/test-upgrade.template.yaml`). It starts with the shipped
//! module (cache format 2), configured to report only every 60 s, so that the usage of every request stays pending in
//! cache entries. Under load, the listener file is replaced by one running the build made with
//! `--features test-next-cache-format` (format 3) and reporting every 200 ms: Envoy starts the new module beside the
//! old one (same `vm_id`, so the same shared data), drains the old one's connections and drops it. The old usage
//! can only reach 3scale through the new build reading format-2 entries; while both run, the old build meets
//! format-3 entries it cannot read and must neither drop them nor lose their place in the report queue.

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};
use tollgate_e2e::{
    Cases, Envoy, EnvoyOptions, Load, LoadSpec, Scratch, Sim, Upstream, free_port,
    next_format_wasm_path, render, wait_until, wasm_path, workspace_root, yaml_string,
};

use crate::support::{
    CACHE_SERVICE, SEED, Traffic, assert_no_vm_failure, assert_reported, cache_service,
    filter_config, outcomes, sim_state,
};

const BOOTSTRAP: &str = "envoy/test-upgrade.template.yaml";
const LISTENER: &str = "envoy/test-upgrade-listener.template.yaml";

fn read(path: &str) -> String {
    std::fs::read_to_string(workspace_root().join(path)).unwrap()
}

/// The LDS file: listener `main` on `port`, version `version`, running `wasm` with `config`.
fn listener(version: u32, port: u16, wasm: &Path, config: &Value) -> String {
    render(
        &read(LISTENER),
        &[
            ("VERSION", version.to_string()),
            ("LISTEN_PORT", port.to_string()),
            ("WASM_PATH", wasm.display().to_string()),
            ("FILTER_CONFIG", yaml_string(&config.to_string())),
        ],
    )
}

/// Usage units the simulator holds for the traffic's applications (children of `hits` only).
fn reported_units(sim: &Sim, traffic: &Traffic) -> u64 {
    let nothing = traffic.expected(&[]);
    sim_state(sim, CACHE_SERVICE, &nothing).units()
}

fn wait_started(load: &Load, at_least: u64) {
    let started = wait_until(Duration::from_secs(60), Duration::from_millis(20), || {
        (load.started() >= at_least).then_some(())
    });
    assert!(
        started.is_some(),
        "the load did not reach {at_least} requests"
    );
}

#[test]
fn swapping_the_module_under_load_for_another_cache_format_loses_no_usage() {
    if tollgate_e2e::skip_without_simulator("counters") {
        return;
    }
    let sim = Sim::start(&workspace_root().join(SEED));
    let staging = Upstream::start("staging");
    let production = Upstream::start("production");
    let scratch = Scratch::new("upgrade");
    let port = free_port();
    let old_config = filter_config(
        json!({ "report_interval_ms": 60_000 }),
        2000,
        vec![cache_service()],
    );
    let new_config = filter_config(
        json!({ "report_interval_ms": 200 }),
        2000,
        vec![cache_service()],
    );
    let lds = scratch.write("lds.yaml", listener(1, port, &wasm_path(), &old_config));
    let bootstrap = render(
        &read(BOOTSTRAP),
        &[
            ("ADMIN_PORT", "0".to_owned()),
            ("LDS_PATH", lds.display().to_string()),
            ("LDS_DIR", scratch.path().display().to_string()),
            ("SIM_ADDRESS", sim.address().ip().to_string()),
            ("SIM_PORT", sim.port.to_string()),
            ("STAGING_PORT", staging.port.to_string()),
            ("PRODUCTION_PORT", production.port.to_string()),
        ],
    );
    let envoy = Envoy::start_with(
        &bootstrap,
        &EnvoyOptions {
            concurrency: 2,
            // The old listener's connections are closed within a second of the swap, then its module is dropped.
            extra_args: ["--drain-time-s", "1", "--drain-strategy", "immediate"]
                .map(str::to_owned)
                .to_vec(),
            ..EnvoyOptions::default()
        },
    );
    // The first tick flushes at once (no flush recorded yet); after it the old build reports only in 60 s.
    std::thread::sleep(Duration::from_secs(1));

    let traffic = Traffic::cache_apps(20);
    let spec = LoadSpec {
        rate: Some(150.0),
        clients: 4,
        total: None,
        duration: None,
    };
    let load = Load::start(port, &spec, traffic.requests());
    let mut cases = Cases::new("upgrade to another cache format");
    wait_started(&load, 300);
    cases.case(
        "before the swap, the usage is pending in the old build's cache",
        || {
            assert_eq!(reported_units(&sim, &traffic), 0);
        },
    );

    // The operator's upgrade: a new listener file, moved into place.
    let next = scratch.write(
        "lds.next.yaml",
        listener(2, port, &next_format_wasm_path(), &new_config),
    );
    std::fs::rename(&next, &lds).unwrap();
    let swapped = wait_until(Duration::from_secs(30), Duration::from_millis(50), || {
        (envoy.stat("listener_manager.lds.update_success")? >= 2).then_some(())
    });
    let after_swap = load.started();
    wait_started(&load, after_swap + 450);
    let samples = load.stop();
    cases.case("Envoy took the new listener", || {
        assert!(swapped.is_some(), "{}", envoy.log());
        assert_eq!(envoy.stat("listener_manager.lds.update_rejected"), Some(0));
    });
    cases.case("the load went through the swap", || {
        let through = samples.iter().filter(|s| s.reached_upstream()).count();
        assert!(
            through * 100 >= samples.len() * 95,
            "{through} of {} reached an upstream: {:?}",
            samples.len(),
            outcomes(&samples)
        );
    });
    let expected = traffic.expected(&samples);
    cases.case(
        "3scale gets exactly the usage and codes of every request, from both builds",
        || {
            assert_reported(
                &sim,
                CACHE_SERVICE,
                &expected,
                true,
                Duration::from_secs(30),
                Duration::from_secs(1),
            );
        },
    );
    cases.case("no VM failure", || assert_no_vm_failure(&envoy));
    cases.finish();
}
