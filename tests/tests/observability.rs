//! What an operator sees: Tollgate's stats per service in Envoy's Prometheus output, labelled by the tag extractors
//! of the shipped configurations.

use std::collections::BTreeMap;

use serde_json::{Value, json};
use tollgate_e2e::{Cases, Request, Stack, StackOptions, workspace_root};

const TEMPLATE: &str = "envoy/test.template.yaml";
const SEED: &str = "tests/e2e/seed.json";

fn filter_config() -> Value {
    let path = workspace_root().join("tests/e2e/filter.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The end-to-end filter configuration in Envoy, two workers.
fn start() -> Stack {
    let mut options = StackOptions::new(TEMPLATE, filter_config(), SEED);
    options.concurrency = 2;
    let jwks = workspace_root().join("tests/fixtures/jwt/jwks.json");
    options
        .extra_vars
        .push(("JWKS_PATH".into(), jwks.display().to_string()));
    Stack::start(options)
}

/// One sample of `/stats/prometheus`: the metric's name and labels.
type Series = (String, BTreeMap<String, String>);

/// Every sample of Envoy's Prometheus output, by name and labels.
fn prometheus(stack: &Stack) -> BTreeMap<Series, f64> {
    std::thread::sleep(tollgate_e2e::COUNTERS_FLUSHED);
    let body = stack.envoy.admin_get("/stats/prometheus").text();
    body.lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => (name, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            let labels = labels
                .split(',')
                .filter(|pair| !pair.is_empty())
                .filter_map(|pair| {
                    let (key, value) = pair.split_once('=')?;
                    Some((key.to_owned(), value.trim_matches('"').to_owned()))
                })
                .collect();
            Some(((name.to_owned(), labels), value.parse().ok()?))
        })
        .collect()
}

fn value(samples: &BTreeMap<Series, f64>, name: &str, labels: &[(&str, &str)]) -> f64 {
    let labels = labels
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    samples
        .get(&(name.to_owned(), labels))
        .copied()
        .unwrap_or(0.0)
}

#[test]
fn stats_per_service_reach_prometheus_with_their_labels() {
    let stack = start();
    let appid = |query: &str| Request::get(&format!("/items?{query}")).header("host", "appid.test");
    for _ in 0..3 {
        assert_eq!(
            stack.send(&appid("app_id=prod-app&app_key=wrong")).status,
            403
        );
    }
    for _ in 0..2 {
        assert_eq!(
            stack
                .send(&appid("app_id=prod-app&app_key=prod-key"))
                .status,
            200
        );
    }
    // 3scale failing for the other service.
    stack
        .sim
        .fault(json!({"endpoint": "authrep", "status": 500}));
    let userkey = Request::get("/items?user_key=prod-user-key").header("host", "userkey.test");
    for _ in 0..4 {
        assert_eq!(stack.send(&userkey).status, 503);
    }
    stack.sim.clear_faults();
    let unmatched = Request::get("/items").header("host", "nobody.test");
    let _ = stack.send(&unmatched);

    // The gauges are set by the background tick: once one is there, every series is.
    let samples = tollgate_e2e::wait_until(
        std::time::Duration::from_secs(5),
        std::time::Duration::from_millis(100),
        || {
            let samples = prometheus(&stack);
            let ticked = samples
                .keys()
                .any(|(name, _)| name == "tollgate_reports_queued_applications");
            ticked.then_some(samples)
        },
    )
    .expect("the background tick set its gauges");
    let mut cases = Cases::new("stats per service in Prometheus");
    let denied = "tollgate_service_denied";
    cases.case("refusals by service and category", || {
        let appid = ("tollgate_service", "svc-appid");
        let userkey = ("tollgate_service", "svc-userkey");
        let auth_failed = ("tollgate_category", "auth_failed");
        let unavailable = ("tollgate_category", "backend_unavailable");
        assert_eq!(value(&samples, denied, &[auth_failed, appid]), 3.0);
        assert_eq!(value(&samples, denied, &[unavailable, userkey]), 4.0);
        assert_eq!(value(&samples, denied, &[auth_failed, userkey]), 0.0);
        assert_eq!(value(&samples, denied, &[unavailable, appid]), 0.0);
    });
    cases.case("allowed requests by service", || {
        let allowed = "tollgate_service_allowed";
        assert_eq!(
            value(&samples, allowed, &[("tollgate_service", "svc-appid")]),
            2.0
        );
        assert_eq!(
            value(&samples, allowed, &[("tollgate_service", "svc-userkey")]),
            0.0
        );
    });
    cases.case("3scale's failures by service", || {
        let errors = "tollgate_service_backend_errors";
        assert_eq!(
            value(&samples, errors, &[("tollgate_service", "svc-userkey")]),
            4.0
        );
        assert_eq!(
            value(&samples, errors, &[("tollgate_service", "svc-appid")]),
            0.0
        );
    });
    cases.case(
        "3scale's answers by service, endpoint and status class",
        || {
            let answers = "tollgate_service_backend_answers";
            let of = |service, class| {
                value(
                    &samples,
                    answers,
                    &[
                        ("tollgate_endpoint", "authrep"),
                        ("tollgate_service", service),
                        ("tollgate_status_class", class),
                    ],
                )
            };
            assert_eq!(of("svc-appid", "2xx"), 2.0);
            assert_eq!(of("svc-appid", "4xx"), 3.0, "auth_failed is a 409");
            assert_eq!(of("svc-userkey", "5xx"), 4.0);
            assert_eq!(of("svc-userkey", "2xx"), 0.0);
        },
    );
    cases.case(
        "the Envoy-wide family is apart and adds up to the services",
        || {
            let all = "tollgate_denied";
            assert_eq!(
                value(&samples, all, &[("tollgate_category", "auth_failed")]),
                3.0
            );
            assert_eq!(
                value(
                    &samples,
                    all,
                    &[("tollgate_category", "backend_unavailable")]
                ),
                4.0
            );
            // A request of no service counts for the Envoy only.
            let not_found = ("tollgate_category", "service_not_found");
            assert_eq!(value(&samples, all, &[not_found]), 1.0);
            assert!(
                !samples.keys().any(|(name, labels)| name == denied
                    && labels.get("tollgate_category").map(String::as_str)
                        == Some("service_not_found")),
                "no service's series for it"
            );
        },
    );
    cases.case(
        "every metric the dashboard and the alert rules use is one Envoy exports",
        || {
            let exported: Vec<&str> = samples.keys().map(|(name, _)| name.as_str()).collect();
            for name in monitoring_metrics() {
                // A service's counters appear once they count; their Envoy-wide twin always exists.
                let found = exported.contains(&name.as_str())
                    || exported.contains(&format!("{name}_bucket").as_str())
                    || (name.contains("_service_")
                        && exported.contains(&name.replacen("_service_", "_", 1).as_str()));
                assert!(found, "{name} is not exported");
            }
        },
    );
    cases.case("no series is named after anything a client sent", || {
        let services: Vec<&str> = samples
            .keys()
            .filter_map(|(_, labels)| labels.get("tollgate_service").map(String::as_str))
            .collect();
        assert!(
            services
                .iter()
                .all(|s| ["svc-appid", "svc-userkey"].contains(s)),
            "{services:?}"
        );
    });
    cases.finish();
}

/// The stats tag extractors of a configuration file: Envoy's YAML (its `stats_config` block alone, so that
/// templates with placeholders elsewhere read too), or the Istio bootstrap override.
fn stats_tags(path: &str) -> Value {
    let text = std::fs::read_to_string(workspace_root().join(path)).unwrap();
    if path.starts_with("envoy/istio/") {
        let document = tollgate_e2e::yaml_documents(&text).remove(0);
        let bootstrap = document["data"]["custom_bootstrap.json"].as_str().unwrap();
        return serde_json::from_str::<Value>(bootstrap).unwrap()["stats_config"]["stats_tags"]
            .clone();
    }
    let block: Vec<&str> = text
        .lines()
        .skip_while(|line| !line.starts_with("stats_config:"))
        .take_while(|line| line.starts_with("stats_config:") || line.starts_with(' '))
        .collect();
    let document = tollgate_e2e::yaml_documents(&block.join("\n"));
    document
        .first()
        .map_or(Value::Null, |d| d["stats_config"]["stats_tags"].clone())
}

#[test]
fn every_shipped_configuration_labels_the_stats_the_same_way() {
    let tested = stats_tags(TEMPLATE);
    assert_eq!(tested.as_array().map(Vec::len), Some(4), "{tested}");
    for path in [
        "envoy/demo.yaml",
        "envoy/demo-singleton.yaml",
        "envoy/demo-portal.yaml",
        "envoy/docker/envoy.yaml",
        "envoy/production/saas.yaml",
        "envoy/production/on-premises.yaml",
        "envoy/test-singleton.template.yaml",
        "envoy/istio/stats.yaml",
    ] {
        assert_eq!(stats_tags(path), tested, "{path}");
    }
}

#[test]
fn an_outage_is_one_line_when_it_starts_and_one_when_it_ends_whatever_the_workers() {
    let stack = start();
    let userkey = Request::get("/items?user_key=prod-user-key").header("host", "userkey.test");
    assert_eq!(stack.send(&userkey).status, 200);
    stack
        .sim
        .fault(json!({"endpoint": "authrep", "status": 500}));
    // Both workers meet the outage: requests on several connections at once.
    let statuses: Vec<u16> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..12)
            .map(|_| scope.spawn(|| stack.send(&userkey).status))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(statuses.iter().all(|s| *s == 503), "{statuses:?}");
    stack.sim.clear_faults();
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(stack.send(&userkey).status, 200);
    assert_eq!(stack.send(&userkey).status, 200);
    let ended = stack
        .envoy
        .wait_log("3scale outage ended", std::time::Duration::from_secs(5));
    let log = stack.envoy.log();
    let lines = |needle: &str| -> Vec<String> {
        log.lines()
            .filter(|line| line.contains(needle))
            .map(str::to_owned)
            .collect()
    };
    let mut cases = Cases::new("outage log lines");
    cases.case(
        "one start line, naming the service, cluster, endpoint, cause and policy",
        || {
            let started = lines("3scale outage started");
            assert_eq!(started.len(), 1, "{started:#?}");
            let line = &started[0];
            for part in [
                "service svc-userkey",
                "authrep through cluster `threescale_backend` failed after ",
                " ms (timeout 2000 ms): 3scale answered HTTP 500",
                "failure policy `deny`",
            ] {
                assert!(line.contains(part), "{part:?} in {line}");
            }
        },
    );
    cases.case(
        "one end line, with what the failure policy did meanwhile",
        || {
            assert!(ended.is_some(), "no end line");
            let ended = lines("3scale outage ended");
            assert_eq!(ended.len(), 1, "{ended:#?}");
            assert!(
                ended[0].contains("allowed 0 request(s) and refused 12"),
                "{}",
                ended[0]
            );
        },
    );
    cases.case("no per-request unavailability lines besides", || {
        assert!(lines("3scale unavailable").is_empty());
    });
    cases.finish();
}

/// The metric names `monitoring/dashboard.json` and `monitoring/alerts.yaml` query (Envoy exports a module's own
/// stats to Prometheus without its `envoy_` prefix and without `wasmcustom`).
fn monitoring_metrics() -> Vec<String> {
    const PREFIX: &str = "tollgate_";
    let mut names = Vec::new();
    for file in ["monitoring/dashboard.json", "monitoring/alerts.yaml"] {
        let text = std::fs::read_to_string(workspace_root().join(file)).unwrap();
        for (at, _) in text.match_indices(PREFIX) {
            let name: String = text[at..]
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                .collect();
            let name = name.strip_suffix("_bucket").unwrap_or(&name).to_owned();
            let label = [
                "tollgate_service",
                "tollgate_category",
                "tollgate_endpoint",
                "tollgate_status_class",
            ]
            .contains(&name.as_str());
            if !label && !names.contains(&name) {
                names.push(name);
            }
        }
    }
    assert!(names.len() >= 10, "{names:?}");
    names
}
