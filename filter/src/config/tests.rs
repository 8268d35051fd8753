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
fn settings_that_cannot_do_what_was_meant_are_refused() {
    let services = |n: usize| {
        let service = |i: usize| {
            serde_json::json!({"id": format!("s{i}"), "provider_key": "pk",
                "credentials": {"kind": "user_key"},
                "mapping_rules": [{"method": "ANY", "pattern": "/", "metric": "hits"}]})
        };
        serde_json::Value::Array((0..n).map(service).collect())
    };
    let cases = [
        (
            "/headers/cluster",
            serde_json::json!("host"),
            "headers.cluster",
            "Envoy or HTTP",
        ),
        (
            "/headers/plan",
            serde_json::json!("Authorization"),
            "headers.plan",
            "Envoy or HTTP",
        ),
        (
            "/headers/host",
            serde_json::json!("x-route-cluster"),
            "headers.host",
            "also headers.cluster",
        ),
        (
            "/headers/debug",
            serde_json::json!("x-envoy-original-path"),
            "headers.debug",
            "Envoy",
        ),
        (
            "/headers/app_id",
            serde_json::json!("x-app-key"),
            "services[0].credentials.headers",
            "Tollgate's own",
        ),
        (
            "/services/0/mapping_rules/0/method",
            serde_json::json!("get"),
            "services[0].mapping_rules[0].method",
            "write `GET`",
        ),
        (
            "/services/0/mapping_rules/0/method",
            serde_json::json!("FETCH"),
            "services[0].mapping_rules[0].method",
            "not a method",
        ),
        (
            "/services/0/mapping_rules/0/delta",
            serde_json::json!(9_223_372_036_854_775_808u64),
            "services[0].mapping_rules[0].delta",
            "more than",
        ),
        (
            "/services/0/errors/limits_exceeded/status",
            serde_json::json!(200),
            "services[0].errors.limits_exceeded.status",
            "refusal",
        ),
        (
            "/services/0/errors/limits_exceeded/body",
            serde_json::json!("x".repeat(10 * 1024 * 1024)),
            "services[0].errors.limits_exceeded.body",
            "at most",
        ),
        (
            "/services/0/mapping_rules/0/pattern",
            serde_json::json!("/a$b"),
            "services[0].mapping_rules[0].pattern",
            "`$` ends a pattern",
        ),
        ("/services", services(10_000), "services", "at most 5000"),
    ];
    for (pointer, value, path, reason) in cases {
        let e = error_of(&with(pointer, value));
        assert_eq!(e.path, path, "{pointer}: {e}");
        assert!(e.reason.contains(reason), "{pointer}: {e}");
    }
    assert!(
        load(&with("/services", services(1_200))).is_ok(),
        "1,200 services load"
    );
}

#[test]
fn settings_that_count_nothing_load_with_a_warning() {
    let config = load(&with(
        "/services/0/mapping_rules/0/delta",
        serde_json::json!(0),
    ))
    .unwrap();
    assert_eq!(
        config.warnings,
        ["services[0].mapping_rules[0].delta: 0 matches requests but counts nothing"]
    );
    assert!(load(VALID).unwrap().warnings.is_empty());
}

#[test]
fn failure_settings_that_could_never_apply_are_rejected() {
    let fail_open = serde_json::json!({"policy": "allow", "fail_open_cluster": "fallback"});
    let routed = load(&with("/services/0/failure", fail_open.clone())).unwrap();
    assert_eq!(
        routed.services[0].failure.fail_open_cluster.as_deref(),
        Some("fallback")
    );
    // svc-oidc has no `plans`.
    let e = error_of(&with("/services/1/failure", fail_open));
    assert_eq!(
        (e.path.as_str(), e.reason.as_str()),
        (
            "services[1].failure.fail_open_cluster",
            "needs `plans`: without plan routing Tollgate sets no cluster header"
        )
    );

    let mut doc: serde_json::Value =
        serde_json::from_str(&with("/services/1/mode", serde_json::json!("per_request"))).unwrap();
    doc["services"][1]["failure"] = serde_json::json!({"policy": "allow_cached"});
    let e = error_of(&doc.to_string());
    assert_eq!(e.path, "services[1].failure.policy");
    assert!(
        e.reason.starts_with("allow_cached needs `mode` `cache`"),
        "{e}"
    );
    doc["services"][1]["failure"] = serde_json::json!({"policy": "allow"});
    assert!(
        load(&doc.to_string()).is_ok(),
        "other policies apply per request"
    );
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

fn raw_of(json: &str) -> raw::RawConfig {
    json::decode(json.as_bytes()).unwrap()
}

#[test]
fn absent_fields_take_their_documented_defaults() {
    let raw = raw_of(VALID);
    let oidc = &raw.services[1];
    let rule = &oidc.mapping_rules[0];
    assert_eq!((rule.delta, rule.last), (1, false));
    let rule = &raw.services[0].mapping_rules[1];
    assert_eq!((rule.delta, rule.last), (2, true));
    assert_eq!(oidc.mode, Mode::Cache);
    assert!(!oidc.referrer && !oidc.rate_limit_headers);
    assert!(oidc.selector.is_none() && oidc.plans.is_none() && oidc.failure.is_none());
    assert_eq!(oidc.report_response_codes, None);
    assert_eq!(oidc.credentials.locations, None);
    assert!(raw.role.is_none() && raw.cache.is_none() && raw.unknown_service.is_none());
    assert_eq!(raw.backend.path_prefix, None);
    let upstream = raw.services[0].upstream.as_ref().unwrap();
    assert_eq!(upstream.secret_header.as_ref().unwrap().name, None);
    let limits = raw.services[0]
        .errors
        .as_ref()
        .unwrap()
        .limits_exceeded
        .as_ref()
        .unwrap();
    assert_eq!(limits.format, None);
    assert_eq!(
        limits.headers.get("x-why").map(String::as_str),
        Some("quota")
    );
    let failure = raw_of(&with("/services/0/failure", serde_json::json!({})));
    let failure = failure.services[0].failure.as_ref().unwrap();
    assert_eq!(failure.policy, Policy::Deny);
    assert!(failure.allowed.is_empty());
}

/// Every field of every object, so that each struct's list of fields and what it reads agree.
#[test]
fn every_documented_field_is_read() {
    let full = serde_json::json!({
        "backend": {"cluster": "c", "authority": "a", "path_prefix": "/p", "timeout_ms": 9},
        "unknown_service": "pass",
        "headers": {"cluster": "h1", "host": "h2", "app_id": "h3", "plan": "h4", "debug": "h5"},
        "errors": {"format": "text", "auth_missing": {}, "auth_failed": {}, "app_inactive": {},
                   "method_disabled": {}, "limits_exceeded": {}, "no_match": {},
                   "service_not_found": {}, "no_route_for_plan": {}, "backend_unavailable": {},
                   "backend_misconfigured": {"status": 502, "message": "m", "format": "xml",
                       "content_type": "t", "body": "b", "headers": {"x": "y"}, "grpc_status": 13}},
        "form_body_limit_bytes": 10,
        "cache": {"slots": 32, "ttl_seconds": 5, "report_interval_ms": 60, "report_batch_size": 7,
                  "key_prefix": "k"},
        "role": "reporter",
        "services": [{
            "id": "s",
            "service_token": "t",
            "provider_key": {"env": "PK"},
            "match": {"route_names": ["r"], "hosts": ["h"]},
            "credentials": {"kind": "user_key", "locations": ["form", "bearer"],
                            "params": {"user_key": "p1", "app_id": "p2", "app_key": "p3"},
                            "headers": {"user_key": "q1", "app_id": "q2", "app_key": "q3"},
                            "jwt": {"filter": "f", "payload_in_metadata": "m", "claim": "c"},
                            "default": {"user_key": "u", "app_id": "i", "app_key": {"env": "K"}},
                            "strip": false},
            "referrer": true,
            "mapping_rules": [{"method": "GET", "pattern": "/", "metric": "hits", "delta": 0,
                               "last": true}],
            "plans": {"routes": {"Gold": {"cluster": "g", "host": "gh"}},
                      "default": {"cluster": "d"}},
            "upstream": {"secret_header": {"name": "n", "value": "v"}, "send_app_id": true,
                         "send_plan": true},
            "rate_limit_headers": true,
            "errors": {"format": "json"},
            "mode": "per_request",
            "failure": {"policy": "allow_listed", "max_staleness_seconds": 3, "allowed": ["a"],
                        "fail_open_cluster": "fo"},
            "report_response_codes": false
        }]
    });
    let raw = raw_of(&full.to_string());
    let b = &raw.backend;
    assert_eq!(
        (
            &*b.cluster,
            b.authority.as_deref(),
            b.path_prefix.as_deref(),
            b.timeout_ms
        ),
        ("c", Some("a"), Some("/p"), Some(9))
    );
    assert_eq!(raw.unknown_service, Some(raw::UnknownService::Pass));
    let h = raw.headers.as_ref().unwrap();
    let names = [&h.cluster, &h.host, &h.app_id, &h.plan, &h.debug];
    assert!(names.iter().all(|name| name.is_some()));
    let errors = raw.errors.as_ref().unwrap();
    assert_eq!(errors.format, Some(raw::RawFormat::Text));
    let categories = [
        &errors.auth_missing,
        &errors.auth_failed,
        &errors.app_inactive,
        &errors.method_disabled,
        &errors.limits_exceeded,
        &errors.no_match,
        &errors.service_not_found,
        &errors.no_route_for_plan,
        &errors.backend_unavailable,
    ];
    assert!(categories.iter().all(|category| category.is_some()));
    let reply = errors.backend_misconfigured.as_ref().unwrap();
    assert_eq!(reply.status, Some(502));
    assert_eq!(reply.message.as_deref(), Some("m"));
    assert_eq!(reply.format, Some(raw::RawFormat::Xml));
    assert_eq!(reply.content_type.as_deref(), Some("t"));
    assert_eq!(reply.body.as_deref(), Some("b"));
    assert_eq!(reply.headers.len(), 1);
    assert_eq!(reply.grpc_status, Some(13));
    assert_eq!(raw.form_body_limit_bytes, Some(10));
    let c = raw.cache.as_ref().unwrap();
    assert_eq!(
        (
            c.slots,
            c.ttl_seconds,
            c.report_interval_ms,
            c.report_batch_size
        ),
        (Some(32), Some(5), Some(60), Some(7))
    );
    assert_eq!(c.key_prefix.as_deref(), Some("k"));
    assert_eq!(raw.role, Some(Role::Reporter));

    let s = &raw.services[0];
    assert_eq!(s.id, "s");
    assert_eq!(s.service_token, Some(secret::Secret::Inline("t".into())));
    assert_eq!(s.provider_key, Some(secret::Secret::Env("PK".into())));
    let selector = s.selector.as_ref().unwrap();
    assert_eq!((selector.route_names.len(), selector.hosts.len()), (1, 1));
    let cr = &s.credentials;
    assert_eq!(cr.kind, raw::RawKind::UserKey);
    assert_eq!(
        cr.locations,
        Some(vec![raw::RawLocation::Form, raw::RawLocation::Bearer])
    );
    for names in [cr.params.as_ref().unwrap(), cr.headers.as_ref().unwrap()] {
        assert!(names.user_key.is_some() && names.app_id.is_some() && names.app_key.is_some());
    }
    let jwt = cr.jwt.as_ref().unwrap();
    assert!(jwt.filter.is_some() && jwt.payload_in_metadata.is_some() && jwt.claim.is_some());
    let default = cr.default.as_ref().unwrap();
    assert_eq!(default.user_key, Some(secret::Secret::Inline("u".into())));
    assert_eq!(default.app_id.as_deref(), Some("i"));
    assert_eq!(default.app_key, Some(secret::Secret::Env("K".into())));
    assert_eq!(cr.strip, Some(false));
    assert!(s.referrer && s.rate_limit_headers);
    let rule = &s.mapping_rules[0];
    assert_eq!(
        (
            &*rule.method,
            &*rule.pattern,
            &*rule.metric,
            rule.delta,
            rule.last
        ),
        ("GET", "/", "hits", 0, true)
    );
    let plans = s.plans.as_ref().unwrap();
    assert_eq!(plans.routes["Gold"].host.as_deref(), Some("gh"));
    assert_eq!(plans.default.as_ref().unwrap().cluster, "d");
    let upstream = s.upstream.as_ref().unwrap();
    let secret_header = upstream.secret_header.as_ref().unwrap();
    assert_eq!(secret_header.name.as_deref(), Some("n"));
    assert_eq!(secret_header.value, secret::Secret::Inline("v".into()));
    assert!(upstream.send_app_id && upstream.send_plan);
    assert_eq!(
        s.errors.as_ref().unwrap().format,
        Some(raw::RawFormat::Json)
    );
    assert_eq!(s.mode, Mode::PerRequest);
    let failure = s.failure.as_ref().unwrap();
    assert_eq!(failure.policy, Policy::AllowListed);
    assert_eq!(failure.max_staleness_seconds, Some(3));
    assert_eq!(failure.allowed, vec!["a".to_string()]);
    assert_eq!(failure.fail_open_cluster.as_deref(), Some("fo"));
    assert_eq!(s.report_response_codes, Some(false));
}

#[test]
fn null_is_the_same_as_an_absent_optional_field() {
    let raw = raw_of(&with("/services/0/plans", serde_json::Value::Null));
    assert!(raw.services[0].plans.is_none());
    let e = error_of(&with("/services/0/referrer", serde_json::Value::Null));
    assert_eq!(e.path, "services[0].referrer");
    assert_eq!(e.reason, "invalid type: null, expected a boolean");
}

#[test]
fn type_errors_say_what_was_expected_and_what_was_found() {
    let cases = [
        (
            "/backend/timeout_ms",
            serde_json::json!("x"),
            "backend.timeout_ms",
            "invalid type: string \"x\", expected a non-negative integer",
        ),
        (
            "/services/0/mapping_rules/0/delta",
            serde_json::json!(-1),
            "services[0].mapping_rules[0].delta",
            "invalid value: integer `-1`, expected a non-negative integer",
        ),
        (
            "/services/0/errors/limits_exceeded/status",
            serde_json::json!(70000),
            "services[0].errors.limits_exceeded.status",
            "invalid value: integer `70000`, expected an integer from 0 to 65535",
        ),
        (
            "/services/0/match/hosts",
            serde_json::json!("api.example.com"),
            "services[0].match.hosts",
            "invalid type: string \"api.example.com\", expected an array",
        ),
        (
            "/services/0/credentials",
            serde_json::json!(["app_id"]),
            "services[0].credentials",
            "invalid type: an array, expected an object",
        ),
        (
            "/services/0/plans/routes/Sandbox/hots",
            serde_json::json!("x"),
            "services[0].plans.routes.Sandbox.hots",
            "unknown field `hots`, expected one of `cluster`, `host`",
        ),
        (
            "/backend/clusterr",
            serde_json::json!("x"),
            "backend.clusterr",
            "unknown field `clusterr`, expected one of `cluster`, `authority`, `path_prefix`, `timeout_ms`",
        ),
        (
            "/services/0/mapping_rules/1/lats",
            serde_json::json!(true),
            "services[0].mapping_rules[1].lats",
            "unknown field `lats`, expected one of `method`, `pattern`, `metric`, `delta`, `last`",
        ),
    ];
    for (pointer, value, path, reason) in cases {
        let e = error_of(&with(pointer, value));
        assert_eq!((e.path.as_str(), e.reason.as_str()), (path, reason));
    }
    let mut doc: serde_json::Value = serde_json::from_str(VALID).unwrap();
    doc["backend"].as_object_mut().unwrap().remove("cluster");
    let e = error_of(&doc.to_string());
    assert_eq!(
        (e.path.as_str(), e.reason.as_str()),
        ("backend", "missing field `cluster`")
    );
}

#[test]
fn enums_list_their_allowed_values() {
    let cases = [
        (
            "/services/0/credentials/kind",
            "services[0].credentials.kind",
            "`user_key`, `app_id`, `oidc`",
        ),
        (
            "/services/0/credentials/locations/1",
            "services[0].credentials.locations[1]",
            "`query`, `form`, `header`, `basic`, `bearer`",
        ),
        (
            "/services/0/mode",
            "services[0].mode",
            "`cache`, `per_request`",
        ),
        (
            "/services/0/failure",
            "services[0].failure.policy",
            "`deny`, `allow_cached`, `allow_listed`, `allow`",
        ),
        ("/errors/format", "errors.format", "`json`, `xml`, `text`"),
        ("/role", "role", "`filter`, `reporter`"),
        ("/unknown_service", "unknown_service", "`deny`, `pass`"),
    ];
    for (pointer, path, allowed) in cases {
        let value = if pointer.ends_with("failure") {
            serde_json::json!({"policy": "bogus"})
        } else {
            serde_json::json!("bogus")
        };
        let e = error_of(&with(pointer, value));
        assert_eq!(e.path, path);
        assert_eq!(
            e.reason,
            format!("unknown variant `bogus`, expected one of {allowed}")
        );
    }
    let e = error_of(&with("/role", serde_json::json!(true)));
    assert_eq!(
        e.reason,
        "invalid type: boolean `true`, expected one of `filter`, `reporter`"
    );
}

#[test]
fn a_secret_is_a_string_or_an_env_object() {
    let secret_at = |value: serde_json::Value| error_of(&with("/services/0/service_token", value));
    let e = secret_at(serde_json::json!(42));
    assert_eq!(e.path, "services[0].service_token");
    assert_eq!(
        e.reason,
        r#"invalid type: integer `42`, expected a string or {"env": "VARIABLE_NAME"}"#
    );
    let e = secret_at(serde_json::json!({"env": "APPID_TOKEN", "default": "x"}));
    assert_eq!(e.path, "services[0].service_token.default");
    assert_eq!(e.reason, "unknown field `default`, expected `env`");
    let e = secret_at(serde_json::json!({}));
    assert_eq!(
        (e.path.as_str(), e.reason.as_str()),
        ("services[0].service_token", "missing field `env`")
    );
    let e = secret_at(serde_json::json!({"env": ["A"]}));
    assert_eq!(e.path, "services[0].service_token.env");
    let duplicated = VALID.replace(
        r#"{"env": "APPID_TOKEN"}"#,
        r#"{"env": "APPID_TOKEN", "env": "OTHER"}"#,
    );
    assert_eq!(error_of(&duplicated).reason, "duplicate field `env`");
    let inline = load(&with(
        "/services/0/service_token",
        serde_json::json!("inline-token"),
    ))
    .unwrap();
    assert_eq!(inline.services[0].debug_secret, "inline-token");
}

#[test]
fn syntax_errors_are_at_the_root_with_line_and_column() {
    let e = error_of(r#"{"backend": {"cluster": "b"},"#);
    assert_eq!(e.path, ".");
    assert!(e.reason.contains("at line 1 column"), "{}", e.reason);
    let e = error_of(&VALID.replacen("\"timeout_ms\": 500}", "\"timeout_ms\": 500,}", 1));
    assert_eq!(
        (e.path.as_str(), e.reason.as_str()),
        (".", "trailing comma at line 2 column 97")
    );
    let e = error_of(&format!("{VALID} {{}}"));
    assert_eq!(e.path, ".");
    assert!(e.reason.starts_with("trailing characters"), "{}", e.reason);
    assert_eq!(
        error_of("[]").reason,
        "invalid type: an array, expected an object"
    );
}

#[test]
fn the_first_problem_in_document_order_is_reported() {
    let e = error_of(r#"{"nope": 1, "backend": 5}"#);
    assert_eq!(e.path, "nope");
    let e =
        error_of(r#"{"backend": {"cluster": "b"}, "backend": {"cluster": "c"}, "services": []}"#);
    assert_eq!(
        (e.path.as_str(), e.reason.as_str()),
        ("backend", "duplicate field `backend`")
    );
}

#[test]
fn keys_that_are_not_plain_names_are_quoted_in_paths() {
    // Found by the `config` fuzz target: an empty key gave an empty path.
    let e = error_of(r#"{"": 10}"#);
    assert_eq!(e.path, r#"[""]"#);
    let e = error_of(&with(
        "/services/0/plans/routes/Gold plan",
        serde_json::json!({"cluster": ""}),
    ));
    assert_eq!(e.path, r#"services[0].plans.routes["Gold plan"].cluster"#);
}
