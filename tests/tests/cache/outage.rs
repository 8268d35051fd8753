//! A 30 s outage in the middle of 1,000 requests/s: 3scale refuses connections, cached applications keep being
//! served (policy `deny`, entries within their horizon of 2 × ttl), an application nobody asked for before is
//! refused at once, and once 3scale is back every unit of usage reaches it: zero loss, nothing uncertain.

use std::time::{Duration, Instant};

use serde_json::json;
use tollgate_e2e::{Cases, Connection, Load, LoadSpec};

use crate::support::{
    CACHE_HOST, CACHE_SERVICE, Route, Traffic, assert_no_vm_failure, assert_reported,
    cache_service, filter_config, outcomes, request, slowest, start, stat, tollgate_stats,
};

/// When the outage starts after the load started, and how long it lasts.
const OUTAGE_AT: Duration = Duration::from_secs(3);
const OUTAGE: Duration = Duration::from_secs(30);
/// The load goes on this long after 3scale is back.
const AFTER: Duration = Duration::from_secs(4);
/// Backend timeout of the filter. The catch-up flush after the outage sends every pending unit at once, in
/// several large calls; on a loaded machine the simulator may take over a second for them, and a call that times
/// out after it was sent is (rightly) counted uncertain. 3 s keeps this scenario about loss, not about timeouts.
const TIMEOUT_MS: u64 = 3000;

#[test]
fn a_30_s_outage_at_1000_requests_per_second_loses_no_usage() {
    if tollgate_e2e::skip_without_simulator("refusal fault") {
        return;
    }
    // ttl 25 s: the horizon (50 s) covers the warm-up, the outage and the refreshes after it.
    let config = filter_config(
        json!({ "ttl_seconds": 25, "report_interval_ms": 1000 }),
        TIMEOUT_MS,
        vec![cache_service()],
    );
    let stack = start(config, 1);
    let traffic = Traffic::cache_apps(50);
    let mut warm = Connection::new(stack.envoy.listen_port);
    for (app, key) in &traffic.apps {
        for route in Route::ALL {
            let response = warm
                .send(&request(CACHE_HOST, route, app, key, 200))
                .unwrap();
            assert_eq!(response.status, 200, "warm-up: {}", response.text());
        }
    }
    let mut expected = traffic.expected(&[]);
    for (app, _) in &traffic.apps {
        for route in Route::ALL {
            expected.add(app, route, Some(200));
        }
    }

    let spec = LoadSpec {
        rate: Some(1000.0),
        clients: 4,
        total: None,
        duration: Some(OUTAGE_AT + OUTAGE + AFTER),
    };
    let started = Instant::now();
    let load = Load::start(stack.envoy.listen_port, &spec, traffic.requests());
    std::thread::sleep(OUTAGE_AT);
    stack.sim.refuse_for(OUTAGE.as_millis() as u64);
    let outage_started = started.elapsed();
    // An application the cache has never seen, asked for during the outage: refused at once (policy deny).
    std::thread::sleep(Duration::from_secs(5));
    let mut unknown = Connection::new(stack.envoy.listen_port);
    let asked = Instant::now();
    let uncached = unknown.send(&request(
        CACHE_HOST,
        Route::Items,
        "app-099",
        "key-099",
        200,
    ));
    let uncached_latency = asked.elapsed();
    let samples = load.finish();
    let total = samples.len();
    expected = {
        let during = traffic.expected(&samples);
        let mut all = expected;
        for (app, account) in during.apps {
            let entry = all.apps.entry(app).or_default();
            for (metric, n) in account.usage {
                *entry.usage.entry(metric).or_default() += n;
            }
            for (code, n) in account.codes {
                *entry.codes.entry(code).or_default() += n;
            }
        }
        all
    };
    let in_outage: Vec<_> = samples
        .iter()
        .filter(|s| s.sent_at > outage_started && s.sent_at < outage_started + OUTAGE)
        .cloned()
        .collect();
    println!(
        "outage: {total} requests, {} during the outage, slowest {:?}: {:?}",
        in_outage.len(),
        slowest(&samples),
        outcomes(&samples)
    );

    let mut cases = Cases::new("30 s outage at 1,000 requests/s");
    cases.case("the load held about 1,000 requests/s", || {
        let seconds = (OUTAGE_AT + OUTAGE + AFTER).as_secs() as usize;
        assert!(total >= seconds * 950, "{total} requests in {seconds} s");
        assert!(
            in_outage.len() >= 28_000,
            "{} during the outage",
            in_outage.len()
        );
    });
    cases.case(
        "every request of a cached application was served (deny: within 2 × ttl)",
        || {
            let served = samples.iter().filter(|s| s.reached_upstream()).count();
            assert_eq!(served, total, "{:?}", outcomes(&samples));
            assert!(
                slowest(&samples) < Duration::from_millis(TIMEOUT_MS + 500),
                "slowest {:?}",
                slowest(&samples)
            );
        },
    );
    cases.case(
        "an uncached application is refused at once with backend_unavailable",
        || {
            let response = uncached.as_ref().expect("an answer");
            assert_eq!(response.status, 503, "{}", response.text());
            assert_eq!(response.json()["error"]["code"], "backend_unavailable");
            assert!(
                uncached_latency < Duration::from_millis(TIMEOUT_MS + 300),
                "{uncached_latency:?}"
            );
        },
    );
    cases.case(
        "zero loss: 3scale's usage equals the usage of every request served",
        || {
            assert_reported(
                &stack.sim,
                CACHE_SERVICE,
                &expected,
                false,
                Duration::from_secs(15),
                Duration::from_millis(1500),
            );
        },
    );
    cases.case("reports were retried, none uncertain or dropped", || {
        let stats = tollgate_stats(&stack.envoy);
        assert!(stat(&stack.envoy, "reports.retried") > 0, "{stats:?}");
        assert_eq!(stat(&stack.envoy, "reports.uncertain"), 0, "{stats:?}");
        assert_eq!(stat(&stack.envoy, "reports.dropped"), 0, "{stats:?}");
        assert_eq!(
            stat(&stack.envoy, "reports.sent"),
            expected.units(),
            "{stats:?}"
        );
    });
    cases.case("response codes of every request served", || {
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
