//! Proves the harness against the real Envoy, without the filter: routing to the echo upstreams, byte-exact header
//! round trips, admin stats and logs, config validation and rejection, several Envoys at once.

use std::time::Duration;

use serde_json::json;
use tollgate_e2e::{
    Cases, Envoy, Request, Response, Scratch, Upstream, envoy_expect_rejected, free_port, render,
    send, send_raw, wait_until, workspace_root, yaml_string,
};

const TEMPLATE: &str = "tests/fixtures/harness-envoy.yaml";

/// An Envoy on the harness template in front of the two upstreams (the sim port leads nowhere).
fn start(staging: &Upstream, production: &Upstream, concurrency: u32, access_log: &str) -> Envoy {
    Envoy::start(
        &config(staging, production, access_log, &json!({"hello": "world"})),
        concurrency,
    )
}

fn config(
    staging: &Upstream,
    production: &Upstream,
    access_log: &str,
    filter_config: &serde_json::Value,
) -> String {
    let template = std::fs::read_to_string(workspace_root().join(TEMPLATE)).unwrap();
    render(
        &template,
        &[
            ("ADMIN_PORT", "0".into()),
            ("LISTEN_PORT", "0".into()),
            ("SIM_PORT", free_port().to_string()),
            ("STAGING_PORT", staging.port.to_string()),
            ("PRODUCTION_PORT", production.port.to_string()),
            ("FILTER_CONFIG", yaml_string(&filter_config.to_string())),
            ("ACCESS_LOG", access_log.to_owned()),
        ],
    )
}

fn get(envoy: &Envoy, request: Request) -> Response {
    send(envoy.listen_port, &request).unwrap_or_else(|e| panic!("no answer from Envoy: {e}"))
}

#[test]
fn envoy_routes_requests_and_round_trips_bytes() {
    let staging = Upstream::start("staging");
    let production = Upstream::start("production");
    let scratch = Scratch::new("harness");
    let access_log = scratch.path().join("access.log");
    let envoy = start(&staging, &production, 2, &access_log.display().to_string());
    assert_ne!(envoy.listen_port, 0);
    assert_eq!(envoy.listener_port("main"), Some(envoy.listen_port));

    let mut cases = Cases::new("harness against Envoy");
    cases.case("prefix routes reach their upstream", || {
        let response = get(&envoy, Request::get("/staging/a?b=c"));
        assert_eq!(response.status, 200);
        assert_eq!(response.upstream().as_deref(), Some("staging"));
        assert_eq!(response.json()["path"], "/staging/a?b=c");
        assert_eq!(staging.last().path, "/staging/a?b=c");
        let response = get(&envoy, Request::get("/production"));
        assert_eq!(response.upstream().as_deref(), Some("production"));
    });
    cases.case("cluster_header route follows the header", || {
        let to = |cluster: &str| {
            get(
                &envoy,
                Request::get("/any").header("x-route-cluster", cluster),
            )
        };
        assert_eq!(to("production").upstream().as_deref(), Some("production"));
        assert_eq!(to("staging").upstream().as_deref(), Some("staging"));
        assert_eq!(to("nonexistent").status, 503);
        assert_eq!(get(&envoy, Request::get("/any")).status, 503);
    });
    cases.case("direct_response never reaches an upstream", || {
        staging.clear();
        production.clear();
        let response = get(&envoy, Request::get("/direct"));
        assert_eq!((response.status, response.text().as_str()), (200, "direct"));
        assert!(staging.received().is_empty() && production.received().is_empty());
    });
    cases.case("FILTER_CONFIG survives YAML quoting", || {
        let tricky = json!({"quote": "a\"b", "backslash": "c\\d", "newline": "e\nf", "unicode": "é€", "colon": "g: h"});
        let envoy = Envoy::start(&config(&staging, &production, "/dev/null", &tricky), 1);
        assert_eq!(get(&envoy, Request::get("/config")).text(), tricky.to_string());
    });
    cases.case("non-UTF-8 header bytes round-trip", || {
        let raw: &[u8] = b"caf\xe9 \xff\x80 end";
        get(&envoy, Request::get("/staging/raw").header("x-raw", raw));
        assert_eq!(staging.last().header_bytes("x-raw"), Some(raw));
    });
    cases.case("repeated headers arrive in order", || {
        get(
            &envoy,
            Request::get("/staging/rep")
                .header("x-rep", "1")
                .header("x-rep", "2"),
        );
        let last = staging.last();
        let values: Vec<&[u8]> = last
            .headers
            .iter()
            .filter(|(n, _)| n == "x-rep")
            .map(|(_, v)| v.as_slice())
            .collect();
        // Envoy may fold repeated headers into one comma-separated value.
        assert!(values == [b"1", b"2"] || values == [b"1,2"], "{values:?}");
    });
    cases.case("large headers pass, oversized heads get 431", || {
        let big = "v".repeat(16 * 1024);
        get(&envoy, Request::get("/staging/big").header("x-big", &big));
        assert_eq!(
            staging.last().header("x-big").map(|v| v.len()),
            Some(big.len())
        );
        let huge = "v".repeat(100 * 1024);
        assert_eq!(
            get(
                &envoy,
                Request::get("/staging/huge").header("x-huge", &huge)
            )
            .status,
            431
        );
    });
    cases.case("bodies arrive intact with either framing", || {
        let body: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
        get(&envoy, Request::post("/staging/len").body(body.clone()));
        assert_eq!(staging.last().body, body);
        get(
            &envoy,
            Request::post("/production/chunked")
                .body(body.clone())
                .chunked(),
        );
        assert_eq!(production.last().body, body);
        let response = get(
            &envoy,
            Request::post("/staging/form").form(&[("user_key", "k1"), ("x", "y")]),
        );
        assert_eq!(response.json()["body"], "user_key=k1&x=y");
    });
    cases.case("raw requests work, malformed ones get 400", || {
        let response = send_raw(
            envoy.listen_port,
            b"GET /staging/raw-bytes HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
        )
        .unwrap();
        assert_eq!(response.upstream().as_deref(), Some("staging"));
        let response = send_raw(
            envoy.listen_port,
            b"GET /staging HTTP/1.1\r\nbad header\r\n\r\n",
        )
        .unwrap();
        assert_eq!(response.status, 400);
    });
    cases.case("the upstream's status reaches the client", || {
        production.set_status(500);
        let status = get(&envoy, Request::get("/production/fail")).status;
        production.set_status(200);
        assert_eq!(status, 500);
        assert_eq!(get(&envoy, Request::get("/production/ok")).status, 200);
    });
    cases.case("Envoy reuses upstream connections", || {
        for _ in 0..10 {
            get(&envoy, Request::get("/staging/pool"));
        }
        assert!(
            staging.connections() < staging.received().len(),
            "{} connections",
            staging.connections()
        );
    });
    cases.case("stats are readable", || {
        let stats = envoy.stats();
        assert!(
            stats["http.ingress.downstream_rq_total"] >= 10,
            "{:?}",
            stats.get("http.ingress.downstream_rq_total")
        );
        assert!(envoy.stat("cluster.staging.upstream_rq_total").unwrap() >= 10);
        assert!(envoy.stat("cluster.production.upstream_rq_5xx").unwrap() >= 1);
        assert_eq!(envoy.stat("no.such.stat"), None);
    });
    cases.case("access log and Envoy log are readable", || {
        let log = wait_until(Duration::from_secs(5), Duration::from_millis(20), || {
            let text = std::fs::read_to_string(&access_log).unwrap_or_default();
            text.contains("GET /direct 200 -").then_some(text)
        });
        let log = log.expect("no access log entry for /direct");
        assert!(log.contains("GET /staging/a?b=c 200 staging"), "{log}");
        assert!(envoy.log().contains("[warning]"), "{}", envoy.log());
        assert!(
            envoy
                .wait_log("[warning]", Duration::from_secs(1))
                .is_some()
        );
    });
    cases.finish();
}

#[test]
fn validate_accepts_the_template_and_rejects_broken_configs() {
    let staging = Upstream::start("staging");
    let production = Upstream::start("production");
    let good = config(&staging, &production, "/dev/null", &json!({}));
    assert_eq!(Envoy::validate(&good), Ok(()));
    let broken_yaml = good.replacen("static_resources:", "static_resources: [", 1);
    assert!(Envoy::validate(&broken_yaml).is_err());
    let unknown_field = good.replacen(
        "stat_prefix: ingress",
        "stat_prefix: ingress\n          no_such_field: 1",
        1,
    );
    let error = Envoy::validate(&unknown_field).unwrap_err();
    assert!(error.contains("no_such_field"), "{error}");
}

#[test]
fn a_rejected_config_hands_back_the_log() {
    let staging = Upstream::start("staging");
    let production = Upstream::start("production");
    let good = config(&staging, &production, "/dev/null", &json!({}));
    // Two clusters with one name: valid YAML and schema, refused when Envoy builds its configuration.
    let duplicate = good.replacen(
        "  - name: production\n",
        "  - name: staging\n    type: STATIC\n    load_assignment: {cluster_name: staging}\n  - name: production\n",
        1,
    );
    let log = envoy_expect_rejected(&duplicate);
    assert!(log.contains("staging"), "{log}");
    assert!(
        log.contains("[critical]") || log.contains("[error]"),
        "{log}"
    );
}

#[test]
fn a_failed_start_panics_with_the_log() {
    let staging = Upstream::start("staging");
    let production = Upstream::start("production");
    let good = config(&staging, &production, "/dev/null", &json!({}));
    let bad = good.replacen(
        "route: {cluster: staging}",
        "route: {cluster: no_such_cluster}",
        1,
    );
    let panic = std::panic::catch_unwind(|| Envoy::start(&bad, 1)).unwrap_err();
    let message = panic.downcast_ref::<String>().unwrap();
    assert!(message.contains("Envoy did not start"), "{message}");
    assert!(message.contains("no_such_cluster"), "{message}");
    // The failed start kept its directory for debugging; this failure was expected.
    if let Some(dir) = message
        .lines()
        .find_map(|l| l.strip_prefix("config and logs in "))
    {
        std::fs::remove_dir_all(dir).unwrap();
    }
}

#[test]
fn two_envoys_run_at_once() {
    let staging = Upstream::start("staging");
    let production = Upstream::start("production");
    let (a, b) = std::thread::scope(|scope| {
        let a = scope.spawn(|| start(&staging, &production, 1, "/dev/null"));
        let b = scope.spawn(|| start(&staging, &production, 1, "/dev/null"));
        (a.join().unwrap(), b.join().unwrap())
    });
    assert_ne!(a.admin_port, b.admin_port);
    assert_ne!(a.listen_port, b.listen_port);
    for envoy in [&a, &b] {
        assert_eq!(
            get(envoy, Request::get("/production/both"))
                .upstream()
                .as_deref(),
            Some("production")
        );
    }
    assert_eq!(production.received().len(), 2);
    drop(a);
    assert_eq!(get(&b, Request::get("/staging/still")).status, 200);
}
