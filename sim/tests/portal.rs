//! The admin portal on its own listener: access tokens, services, proxy config versions per
//! environment (paged), publishing and promoting, and faults.

mod support;

use serde_json::Value;
use support::{Sim, send};

fn start() -> (Sim, String) {
    let mut sim = Sim::start_with_args(Some("portal.json"), &["--portal-listen", "127.0.0.1:0"]);
    let portal = sim.portal_addr();
    (sim, portal)
}

fn call(portal: &str, method: &str, target: &str, body: Option<&str>) -> (u16, Value) {
    let r = send(portal, method, target, &[], body.map(str::as_bytes)).unwrap();
    let value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
    (r.status, value)
}

fn get(portal: &str, target: &str) -> (u16, Value) {
    let sep = if target.contains('?') { '&' } else { '?' };
    call(
        portal,
        "GET",
        &format!("{target}{sep}access_token=portal-token"),
        None,
    )
}

fn versions(answer: &Value) -> Vec<(u64, u64)> {
    answer["proxy_configs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let c = &c["proxy_config"];
            (
                c["content"]["id"].as_u64().unwrap(),
                c["version"].as_u64().unwrap(),
            )
        })
        .collect()
}

#[test]
fn without_the_access_token_every_call_is_403() {
    let (_sim, portal) = start();
    for target in [
        "/admin/api/services.json",
        "/admin/api/account/proxy_configs/production.json",
        "/admin/api/services.json?access_token=wrong",
    ] {
        assert_eq!(call(&portal, "GET", target, None).0, 403, "{target}");
    }
    // The token as the password of HTTP Basic.
    let basic = send(
        &portal,
        "GET",
        "/admin/api/services.json",
        &[("Authorization", "Basic dXNlcjpwb3J0YWwtdG9rZW4=")],
        None,
    )
    .unwrap();
    assert_eq!(basic.status, 200);
}

#[test]
fn services_and_their_versions_per_environment() {
    let (_sim, portal) = start();
    let (status, services) = get(&portal, "/admin/api/services.json");
    assert_eq!(status, 200);
    assert_eq!(services["services"][0]["service"]["system_name"], "api");
    assert_eq!(
        services["services"][1]["service"]["system_name"],
        "service_17"
    );
    let (_, latest) = get(
        &portal,
        "/admin/api/account/proxy_configs/production.json?version=latest",
    );
    assert_eq!(versions(&latest), [(16, 2), (17, 1)]);
    let (_, staging) = get(
        &portal,
        "/admin/api/account/proxy_configs/staging.json?version=latest",
    );
    assert_eq!(versions(&staging), [(16, 1)]);
    let (_, by_host) = get(
        &portal,
        "/admin/api/account/proxy_configs/production.json?host=other.test",
    );
    assert_eq!(versions(&by_host), [(17, 1)]);
    let (_, all) = get(
        &portal,
        "/admin/api/services/16/proxy/configs/production.json",
    );
    assert_eq!(versions(&all), [(16, 1), (16, 2)]);
    let (status, one) = get(
        &portal,
        "/admin/api/services/16/proxy/configs/production/1.json",
    );
    assert_eq!(status, 200);
    assert_eq!(
        one["proxy_config"]["content"]["proxy"]["proxy_rules"][0]["pattern"],
        "/v1"
    );
    assert_eq!(one["proxy_config"]["environment"], "production");
    let (_, latest) = get(
        &portal,
        "/admin/api/services/16/proxy/configs/production/latest.json",
    );
    assert_eq!(latest["proxy_config"]["version"], 2);
    assert_eq!(
        get(
            &portal,
            "/admin/api/services/16/proxy/configs/production/9.json"
        )
        .0,
        404
    );
    assert_eq!(
        get(
            &portal,
            "/admin/api/services/99/proxy/configs/production/latest.json"
        )
        .0,
        404
    );
}

#[test]
fn publishing_and_promoting_add_versions() {
    let (_sim, portal) = start();
    let content = r#"{"backend_version": "1", "proxy": {"hosts": ["api.test"], "proxy_rules": [
        {"http_method": "GET", "pattern": "/v3", "metric_system_name": "hits", "delta": 1}]}}"#;
    let (status, published) = call(
        &portal,
        "POST",
        "/_sim/portal/services/16/proxy/configs/staging?access_token=portal-token",
        Some(content),
    );
    assert_eq!(status, 201, "{published}");
    assert_eq!(published["proxy_config"]["version"], 2);
    let (status, promoted) = call(
        &portal,
        "POST",
        "/admin/api/services/16/proxy/configs/staging/2/promote.json?to=production&access_token=portal-token",
        None,
    );
    assert_eq!(status, 201);
    assert_eq!(promoted["proxy_config"]["version"], 3);
    let (_, latest) = get(
        &portal,
        "/admin/api/services/16/proxy/configs/production/latest.json",
    );
    assert_eq!(
        latest["proxy_config"]["content"]["proxy"]["proxy_rules"][0]["pattern"],
        "/v3"
    );
    // A new service appears in the account's export.
    let (status, _) = call(
        &portal,
        "POST",
        "/_sim/portal/services/40/proxy/configs/production?access_token=portal-token",
        Some(content),
    );
    assert_eq!(status, 201);
    let (_, export) = get(&portal, "/admin/api/account/proxy_configs/production.json");
    assert_eq!(versions(&export), [(16, 3), (17, 1), (40, 1)]);
}

#[test]
fn the_account_export_is_paged() {
    let (_sim, portal) = start();
    let content = r#"{"proxy": {"proxy_rules": []}}"#;
    for id in 100..1300 {
        let target = format!(
            "/_sim/portal/services/{id}/proxy/configs/production?access_token=portal-token"
        );
        assert_eq!(call(&portal, "POST", &target, Some(content)).0, 201);
    }
    let mut seen = 0;
    for page in 1..=3 {
        let (_, answer) = get(
            &portal,
            &format!("/admin/api/account/proxy_configs/production.json?page={page}&per_page=500"),
        );
        seen += versions(&answer).len();
    }
    assert_eq!(seen, 1202);
    let (_, past_the_end) = get(
        &portal,
        "/admin/api/account/proxy_configs/production.json?page=4",
    );
    assert_eq!(versions(&past_the_end), []);
    let (_, capped) = get(
        &portal,
        "/admin/api/account/proxy_configs/production.json?per_page=5000",
    );
    assert_eq!(versions(&capped).len(), 500);
}

#[test]
fn portal_faults_are_injected_by_name() {
    let (sim, portal) = start();
    let (status, _) = sim.json(
        "PUT",
        "/_sim/faults",
        r#"{"endpoint": "portal", "status": 503, "times": 1}"#,
    );
    assert_eq!(status, 200);
    assert_eq!(get(&portal, "/admin/api/services.json").0, 503);
    assert_eq!(get(&portal, "/admin/api/services.json").0, 200);
    sim.json(
        "PUT",
        "/_sim/faults",
        r#"{"endpoint": "portal", "garbage": true, "times": 1}"#,
    );
    let garbage = send(
        &portal,
        "GET",
        "/admin/api/services.json?access_token=portal-token",
        &[],
        None,
    )
    .unwrap();
    assert!(serde_json::from_slice::<Value>(&garbage.body).is_err());
    // `*` is apisonator's endpoints only.
    sim.json("PUT", "/_sim/faults", r#"{"endpoint": "*", "status": 500}"#);
    assert_eq!(get(&portal, "/admin/api/services.json").0, 200);
    sim.json(
        "PUT",
        "/_sim/faults",
        r#"{"endpoint": "portal", "close": true}"#,
    );
    assert!(
        send(
            &portal,
            "GET",
            "/admin/api/services.json?access_token=portal-token",
            &[],
            None
        )
        .is_err()
    );
    let (_, calls) = sim.json("GET", "/_sim/calls", "");
    assert!(calls["total"]["portal"].as_u64().unwrap() >= 5, "{calls}");
    // The access token is not in the request log.
    let (_, requests) = sim.json("GET", "/_sim/requests", "");
    assert!(!requests.to_string().contains("portal-token"));
}
