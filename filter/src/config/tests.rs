#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]

use super::*;
use crate::category::Category;
use crate::credentials::{Kind, Location};

const VALID: &str = r#"{
  "backend": {"cluster": "threescale_backend", "authority": "su1.3scale.net", "timeout_ms": 500},
  "headers": {"cluster": "X-Route-Cluster"},
  "errors": {"format": "xml"},
  "services": [
    {
      "id": "svc-appid",
      "service_token": {"env": "APPID_TOKEN"},
      "match": {"hosts": ["api.example.com", "*.api.example.com"], "route_names": ["appid"]},
      "credentials": {"kind": "app_id", "locations": ["header", "query", "basic"],
                      "headers": {"app_id": "X-App-Id", "app_key": "x-app-key"}},
      "mapping_rules": [
        {"method": "GET", "pattern": "/items", "metric": "get_items"},
        {"method": "POST", "pattern": "/items$", "metric": "create_item", "delta": 2, "last": true}
      ],
      "plans": {"routes": {"Sandbox": {"cluster": "staging", "host": "sandbox.internal"},
                           "Production": {"cluster": "production"}}},
      "upstream": {"secret_header": {"value": "s3cret"}, "send_app_id": true, "send_plan": true},
      "rate_limit_headers": true,
      "errors": {"limits_exceeded": {"status": 503, "headers": {"x-why": "quota"}}}
    },
    {
      "id": "svc-oidc",
      "provider_key": "pk",
      "credentials": {"kind": "oidc", "jwt": {"payload_in_metadata": "claims", "claim": "client_id"}},
      "mapping_rules": [{"method": "ANY", "pattern": "/", "metric": "hits"}]
    }
  ]
}"#;

fn env(name: &str) -> Option<String> {
    (name == "APPID_TOKEN").then(|| "token-from-env".to_string())
}

fn load(json: &str) -> Result<Config, ConfigError> {
    Config::load(json.as_bytes(), &env)
}

fn error_of(json: &str) -> ConfigError {
    load(json).unwrap_err()
}

/// The valid configuration with one JSON value set (replaced or added).
fn with(pointer: &str, value: serde_json::Value) -> String {
    let mut doc: serde_json::Value = serde_json::from_str(VALID).unwrap();
    let (parent, key) = pointer.rsplit_once('/').unwrap();
    match doc.pointer_mut(parent).unwrap() {
        serde_json::Value::Object(map) => {
            map.insert(key.to_string(), value);
        }
        serde_json::Value::Array(items) => items[key.parse::<usize>().unwrap()] = value,
        other => panic!("cannot set {pointer} in {other}"),
    }
    doc.to_string()
}

#[test]
fn a_complete_configuration_compiles() {
    let config = load(VALID).unwrap();
    assert_eq!(config.backend.cluster, "threescale_backend");
    assert_eq!(config.backend.timeout, Duration::from_millis(500));
    assert_eq!(config.headers.cluster, "x-route-cluster");
    assert_eq!(config.headers.host, "x-tollgate-host");
    assert!(config.uses_route_names);
    assert!(!config.pass_unknown);
    let appid = &config.services[0];
    assert_eq!(appid.debug_secret, "token-from-env");
    assert_eq!(appid.credentials.kind, Kind::AppId);
    assert_eq!(
        appid.credentials.locations,
        vec![Location::Header, Location::Query, Location::Basic]
    );
    assert_eq!(appid.credentials.headers.app_id, "x-app-id");
    assert_eq!(appid.mapping_rules.len(), 2);
    let routing = appid.routing.as_ref().unwrap();
    assert_eq!(
        routing.route(Some("Sandbox")).unwrap().host.as_deref(),
        Some("sandbox.internal")
    );
    assert_eq!(routing.route(Some("Gold")), None);
    assert_eq!(
        appid.secret_header,
        Some(("x-3scale-proxy-secret-token".into(), "s3cret".into()))
    );
    let limits = appid.replies.get(Category::LimitsExceeded).unwrap();
    assert_eq!(limits.status, 503);
    assert_eq!(limits.content_type, "application/xml; charset=utf-8");
    let oidc = &config.services[1];
    assert_eq!(oidc.credentials.kind, Kind::Oidc);
    assert_eq!(oidc.credentials.jwt_claim, "client_id");
    assert_eq!(oidc.jwt.payload_key, "claims");
    assert_eq!(oidc.jwt.filter, "envoy.filters.http.jwt_authn");
}

#[test]
fn unknown_fields_are_refused_with_their_path() {
    let e = error_of(&with(
        "/services/0/mapping_rules/1/lats",
        serde_json::json!(true),
    ));
    assert_eq!(e.path, "services[0].mapping_rules[1].lats");
    assert!(e.reason.contains("unknown field `lats`"), "{}", e.reason);
}

#[test]
fn semantic_errors_name_the_json_path() {
    let cases = [
        (
            "/services/0/mapping_rules/0/pattern",
            serde_json::json!("/items/{id"),
            "services[0].mapping_rules[0].pattern",
        ),
        (
            "/services/0/mapping_rules/0/method",
            serde_json::json!("GE T"),
            "services[0].mapping_rules[0].method",
        ),
        (
            "/services/0/mapping_rules/0/metric",
            serde_json::json!("a b"),
            "services[0].mapping_rules[0].metric",
        ),
        (
            "/services/0/match/hosts/1",
            serde_json::json!(""),
            "services[0].match.hosts[1]",
        ),
        (
            "/services/0/plans/routes/Sandbox/cluster",
            serde_json::json!(""),
            "services[0].plans.routes.Sandbox.cluster",
        ),
        (
            "/services/0/errors/limits_exceeded/status",
            serde_json::json!(42),
            "services[0].errors.limits_exceeded.status",
        ),
        (
            "/backend/timeout_ms",
            serde_json::json!(0),
            "backend.timeout_ms",
        ),
        ("/backend/cluster", serde_json::json!(""), "backend.cluster"),
        (
            "/services/1/id",
            serde_json::json!("svc-appid"),
            "services[1].id",
        ),
        (
            "/services/0/credentials/locations",
            serde_json::json!([]),
            "services[0].credentials.locations",
        ),
        (
            "/services/0/mapping_rules",
            serde_json::json!([]),
            "services[0].mapping_rules",
        ),
        (
            "/services/0/mapping_rules/0/delta",
            serde_json::json!(-1),
            "services[0].mapping_rules[0].delta",
        ),
    ];
    for (pointer, value, path) in cases {
        let e = error_of(&with(pointer, value));
        assert_eq!(e.path, path, "{pointer}: {e}");
        assert!(!e.reason.is_empty());
    }
}

#[test]
fn secrets_come_from_the_vm_environment_and_missing_ones_are_named() {
    let e = error_of(&with(
        "/services/0/service_token",
        serde_json::json!({"env": "NOPE"}),
    ));
    assert_eq!(e.path, "services[0].service_token");
    assert!(e.reason.contains("NOPE"));
    let e = error_of(&with(
        "/services/0/service_token",
        serde_json::json!({"vars": "X"}),
    ));
    assert!(e.reason.contains("unknown field"), "{e}");
}

#[test]
fn a_service_needs_exactly_one_way_to_authenticate_to_3scale() {
    let both = with("/services/1/service_token", serde_json::json!("t"));
    assert_eq!(error_of(&both).path, "services[1]");
    let mut doc: serde_json::Value = serde_json::from_str(VALID).unwrap();
    doc["services"][1]
        .as_object_mut()
        .unwrap()
        .remove("provider_key");
    assert_eq!(error_of(&doc.to_string()).path, "services[1]");
}

#[test]
fn oidc_services_do_not_take_locations() {
    let mut doc: serde_json::Value = serde_json::from_str(VALID).unwrap();
    doc["services"][1]["credentials"]["locations"] = serde_json::json!(["query"]);
    assert_eq!(error_of(&doc.to_string()).path, "services[1].credentials");
}

#[test]
fn empty_or_malformed_documents_are_refused() {
    assert_eq!(error_of("").path, ".");
    assert_eq!(error_of("  ").path, ".");
    assert!(load("{").is_err());
    assert!(load("[]").is_err());
    assert_eq!(
        error_of(r#"{"backend":{"cluster":"b"},"services":[]}"#).path,
        "services"
    );
    let display = error_of(&with("/backend/timeout_ms", serde_json::json!(0))).to_string();
    assert!(
        display.starts_with("config error at backend.timeout_ms: "),
        "{display}"
    );
}
