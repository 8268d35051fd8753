#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]

use super::*;
use crate::args::Args;
use crate::category::Category;
use crate::credentials::{Kind, Location};

fn no_env(_: &str) -> Option<String> {
    None
}

fn with_apicast(section: &str) -> String {
    format!(r#"{{"backend": {{"cluster": "3scale"}}, "apicast": {section}}}"#)
}

/// A configuration that compiled, with its warnings.
struct Compiled {
    config: Config,
    warnings: Vec<String>,
}

fn load_ok(json: &str) -> Compiled {
    let loaded = load(json.as_bytes(), &no_env).unwrap_or_else(|e| panic!("{e}"));
    Compiled {
        config: loaded.config.unwrap(),
        warnings: loaded.warnings,
    }
}

fn load_err(json: &str) -> ConfigError {
    load(json.as_bytes(), &no_env).unwrap_err()
}

const EXPORT: &str = r#"{"proxy_configs": [
  {"proxy_config": {"id": 4021, "version": 7, "environment": "production",
   "content": {"id": 16, "system_name": "api", "backend_version": "1",
     "backend_authentication_type": "service_token", "backend_authentication_value": "s3cr3t",
     "proxy": {"hosts": ["api.example.com"], "credentials_location": "query",
       "auth_user_key": "User_Key", "api_backend": "https://echo.example.com:443",
       "error_status_auth_failed": 403, "error_auth_failed": "Authentication failed",
       "error_headers_auth_failed": "text/plain; charset=us-ascii",
       "proxy_rules": [
         {"id": 11, "http_method": "GET", "pattern": "/", "metric_system_name": "hits", "delta": 3,
          "last": false, "parameters": [], "querystring_parameters": {}}],
       "policy_chain": [{"name": "apicast", "version": "builtin", "configuration": {}}]}}}},
  {"proxy_config": {"id": 4022, "version": 2, "environment": "production",
   "content": {"id": 17, "system_name": "second", "backend_version": "2",
     "backend_authentication_type": "provider_key", "backend_authentication_value": "pk",
     "proxy": {"hosts": ["two.example.com"], "credentials_location": "headers",
       "auth_app_id": "X-App-Id", "auth_app_key": "X-App-Key",
       "error_no_match": "nothing here", "error_status_no_match": "412",
       "proxy_rules": [
         {"http_method": "POST", "pattern": "/orders$", "metric_system_name": "orders",
          "delta": "2", "last": true},
         {"http_method": "get", "pattern": "/search", "metric_system_name": "search",
          "querystring_parameters": {"q": "{q}"}}]}}}}
]}"#;

#[test]
fn a_portal_export_loads_as_it_is() {
    let loaded = load_ok(&with_apicast(&format!(r#"{{"config": {EXPORT}}}"#)));
    assert!(loaded.warnings.is_empty());
    let services = &loaded.config.services;
    assert_eq!(services.len(), 2);
    let first = &services[0];
    assert_eq!(first.id, "16");
    assert_eq!(first.debug_secret, "s3cr3t");
    assert_eq!(first.credentials.kind, Kind::UserKey);
    assert_eq!(
        first.credentials.locations,
        [Location::Query, Location::Form]
    );
    assert_eq!(first.credentials.params.user_key, "user_key");
    let failed = first.replies.get(Category::AuthFailed).unwrap();
    assert_eq!(failed.status, 403);
    assert_eq!(failed.content_type, "text/plain; charset=us-ascii");
    assert_eq!(failed.body(None), b"Authentication failed");
    let second = &services[1];
    assert_eq!(second.credentials.kind, Kind::AppId);
    assert_eq!(second.credentials.locations, [Location::Header]);
    assert_eq!(second.credentials.headers.app_id, "x-app-id");
    assert_eq!(second.credentials.headers.app_key, "x-app-key");
    let no_match = second.replies.get(Category::NoMatch).unwrap();
    assert_eq!(
        (no_match.status, no_match.body(None)),
        (412, b"nothing here".to_vec())
    );
}

#[test]
fn absent_fields_take_apicast_defaults() {
    let config = r#"{"services": [{"id": 5, "proxy": {"proxy_rules": [
        {"http_method": "GET", "pattern": "/", "metric_system_name": "hits"}]}}]}"#;
    let json = with_apicast(&format!(r#"{{"config": {config}}}"#))
        .replace(r#""apicast""#, r#""services": [], "apicast""#);
    let loaded = load(json.as_bytes(), &no_env);
    // No service token in the portal config and none layered on: the compiler's own error,
    // placed at the portal service.
    let error = loaded.unwrap_err();
    assert!(
        error.path.starts_with("apicast.config.services[0]"),
        "{error}"
    );
    let json = with_apicast(&format!(
        r#"{{"config": {config}, "settings": {{"5": {{"service_token": "t"}}}}}}"#
    ));
    let service = &load_ok(&json).config.services[0];
    assert_eq!(service.credentials.kind, Kind::UserKey);
    assert_eq!(service.credentials.params.user_key, "user_key");
    let expected = [
        (Category::AuthFailed, 403, "Authentication failed"),
        (
            Category::AuthMissing,
            401,
            "Authentication parameters missing",
        ),
        (Category::LimitsExceeded, 429, "Limits exceeded"),
        (Category::NoMatch, 404, "No Mapping Rule matched"),
        (Category::AppInactive, 403, "Authentication failed"),
    ];
    for (category, status, message) in expected {
        let reply = service.replies.get(category).unwrap();
        assert_eq!(reply.status, status, "{category:?}");
        assert_eq!(reply.body(None), message.as_bytes(), "{category:?}");
        assert_eq!(reply.content_type, "text/plain; charset=utf-8");
    }
}

#[test]
fn rules_keep_apicast_order_deltas_and_query_conditions() {
    let loaded = load_ok(&with_apicast(&format!(r#"{{"config": {EXPORT}}}"#)));
    let rules = &loaded.config.services[1].mapping_rules;
    let post = rules.evaluate(b"POST", b"/orders", &Args::default());
    assert_eq!(post.usage.get("orders"), 2);
    let search = rules.evaluate(b"GET", b"/search", &Args::parse(b"q=x"));
    assert_eq!(search.usage.get("search"), 1);
    let no_query = rules.evaluate(b"GET", b"/search", &Args::default());
    assert!(no_query.usage.is_empty());
}

#[test]
fn settings_layer_on_by_system_name_then_id() {
    let json = with_apicast(&format!(
        r#"{{"config": {EXPORT}, "settings": {{
          "api": {{"mode": "per_request", "rate_limit_headers": true}},
          "16": {{"mode": "cache"}},
          "second": {{"plans": {{"routes": {{"Gold": {{"cluster": "gold"}}}}}}}}}}}}"#
    ));
    let services = load_ok(&json).config.services;
    assert_eq!(services[0].mode, crate::config::Mode::Cache);
    assert!(services[0].rate_limit_headers);
    assert!(services[1].routing.is_some());
}

#[test]
fn settings_for_no_service_and_bad_settings_name_their_path() {
    let json = with_apicast(&format!(
        r#"{{"config": {EXPORT}, "settings": {{"99": {{"mode": "cache"}}}}}}"#
    ));
    assert_eq!(load_err(&json).path, "apicast.settings.99");
    let json = with_apicast(&format!(
        r#"{{"config": {EXPORT}, "settings": {{"api": {{"mode": "sometimes"}}}}}}"#
    ));
    assert_eq!(load_err(&json).path, "apicast.settings.api.mode");
}

#[test]
fn compiler_errors_name_the_portal_field() {
    let bad = EXPORT.replace(r#""pattern": "/orders$""#, r#""pattern": "orders""#);
    let error = load_err(&with_apicast(&format!(r#"{{"config": {bad}}}"#)));
    assert_eq!(
        error.path,
        "apicast.config.proxy_configs[1].proxy_config.content.proxy.proxy_rules[0].pattern"
    );
    let bad = EXPORT.replace(
        r#""metric_system_name": "hits""#,
        r#""metric_system_name": "h i""#,
    );
    let error = load_err(&with_apicast(&format!(r#"{{"config": {bad}}}"#)));
    assert_eq!(
        error.path,
        "apicast.config.proxy_configs[0].proxy_config.content.proxy.proxy_rules[0].metric_system_name"
    );
    let bad = EXPORT.replace(
        r#""credentials_location": "headers""#,
        r#""credentials_location": "cookie""#,
    );
    let error = load_err(&with_apicast(&format!(r#"{{"config": {bad}}}"#)));
    assert_eq!(
        error.path,
        "apicast.config.proxy_configs[1].proxy_config.content.proxy.credentials_location"
    );
    let twice = format!(r#"[{EXPORT}, {EXPORT}]"#);
    let error = load_err(&with_apicast(&format!(r#"{{"config": {twice}}}"#)));
    assert_eq!(
        error.path,
        "apicast.config[1].proxy_configs[0].proxy_config.content.id"
    );
}

const UNSUPPORTED: &str = r#"{"services": [{"id": 7, "backend_version": "oauth",
  "backend_authentication_type": "service_token", "backend_authentication_value": "t",
  "proxy": {"hostname_rewrite": "internal", "authentication_method": "oidc",
    "jwt_claim_with_client_id": "{{ jwt.aud }}", "jwt_claim_with_client_id_type": "liquid",
    "proxy_rules": [{"http_method": "GET", "pattern": "/", "metric_system_name": "hits"}],
    "policy_chain": [{"name": "cors"}, {"name": "apicast"}, {"name": "rate_limit"}]}}]}"#;

#[test]
fn what_tollgate_does_not_do_is_named_once_per_service() {
    let loaded = load_ok(&with_apicast(&format!(r#"{{"config": {UNSUPPORTED}}}"#)));
    assert_eq!(loaded.warnings.len(), 1);
    let warning = &loaded.warnings[0];
    for named in [
        "service 7",
        "policy `cors`",
        "policy `rate_limit`",
        "Liquid",
        "hostname_rewrite",
    ] {
        assert!(warning.contains(named), "{named} missing in {warning}");
    }
    assert!(!warning.contains("`apicast`"));
    assert_eq!(loaded.config.services[0].credentials.jwt_claim, "azp");
}

#[test]
fn strict_refuses_what_tollgate_does_not_do() {
    let error = load_err(&with_apicast(&format!(
        r#"{{"config": {UNSUPPORTED}, "strict": true}}"#
    )));
    assert_eq!(error.path, "apicast.config.services[0]");
    assert!(error.reason.contains("policy `cors`"), "{error}");
}

#[test]
fn mapped_policies_apply() {
    let config = r#"{"id": 3, "backend_authentication_value": "t", "proxy": {
      "proxy_rules": [{"http_method": "ANY", "pattern": "/", "metric_system_name": "hits"}],
      "jwt_claim_with_client_id": "client_id",
      "policy_chain": [{"name": "3scale_referrer"},
        {"name": "default_credentials", "configuration": {"auth_type": "user_key", "user_key": "anon"}},
        {"name": "apicast"}]}}"#;
    let loaded = load_ok(&with_apicast(&format!(r#"{{"config": {config}}}"#)));
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    let service = &loaded.config.services[0];
    assert!(service.referrer);
    assert!(service.default_credentials.is_some());
}

#[test]
fn native_services_and_portal_services_load_together() {
    let json = format!(
        r#"{{"backend": {{"cluster": "3scale"}},
        "services": [{{"id": "local", "service_token": "x", "credentials": {{"kind": "user_key"}},
          "mapping_rules": [{{"method": "GET", "pattern": "/", "metric": "hits"}}]}}],
        "apicast": {{"config": {EXPORT}}}}}"#
    );
    let ids: Vec<String> = load_ok(&json)
        .config
        .services
        .iter()
        .map(|s| s.id.clone())
        .collect();
    assert_eq!(ids, ["local", "16", "17"]);
}

#[test]
fn section_errors_name_their_path() {
    assert_eq!(
        load_err(&with_apicast(r#"{"confg": {}}"#)).path,
        "apicast.confg"
    );
    assert_eq!(load_err(&with_apicast(r#"{}"#)).path, "apicast.config");
    assert_eq!(
        load_err(&with_apicast(r#"{"config": {"foo": 1}}"#)).path,
        "apicast.config"
    );
    assert_eq!(
        load_err(&with_apicast(
            r#"{"config": {"services": [{"id": 1, "proxy": {"proxy_rules": 3}}]}}"#
        ))
        .path,
        "apicast.config.services[0].proxy.proxy_rules"
    );
}

#[test]
fn a_plain_configuration_is_untouched() {
    let plain = r#"{"backend": {"cluster": "3scale"}, "services": [{"id": "a", "service_token": "x",
      "credentials": {"kind": "user_key"},
      "mapping_rules": [{"method": "GET", "pattern": "/", "metric": "hits"}]}]}"#;
    assert!(load_ok(plain).warnings.is_empty());
    assert_eq!(
        load_err("{").path,
        Config::load(b"{", &no_env).unwrap_err().path
    );
    assert_eq!(
        load_err("  ").reason,
        Config::load(b"  ", &no_env).unwrap_err().reason
    );
}

#[test]
fn convert_writes_tollgate_json() {
    let converted = convert(
        with_apicast(&format!(r#"{{"config": {EXPORT}}}"#)).as_bytes(),
        &no_env,
    )
    .unwrap();
    let services = converted.document["services"].as_array().unwrap();
    assert_eq!(services[1]["mapping_rules"][1]["pattern"], "/search?q={q}");
    assert_eq!(services[0]["credentials"]["locations"][1], "form");
    assert!(converted.document.get("apicast").is_none());
}

fn with_portal(section: &str) -> String {
    format!(r#"{{"backend": {{"cluster": "3scale"}}, "portal": {section}}}"#)
}

fn token_env(name: &str) -> Option<String> {
    (name == "PORTAL_TOKEN").then(|| "secret".to_string())
}

#[test]
fn a_portal_section_alone_waits_for_the_portal() {
    let json = with_portal(
        r#"{"cluster": "portal", "access_token": {"env": "PORTAL_TOKEN"}, "services": [16, "17"],
            "versions": {"16": 3, "17": "latest"}, "environment": "staging", "refresh_interval_ms": 1000}"#,
    );
    let loaded = load(json.as_bytes(), &token_env).unwrap();
    assert!(loaded.config.is_none());
    let (settings, _) = loaded.portal.unwrap();
    assert_eq!(settings.authority, "portal");
    assert_eq!(settings.access_token, "secret");
    assert_eq!(
        settings.services,
        Some(vec!["16".to_string(), "17".to_string()])
    );
    assert_eq!(settings.pins, [("16".to_string(), 3)]);
    assert_eq!(settings.environment, "staging");
    assert!(!settings.identity().contains("secret"));
}

#[test]
fn portal_section_errors_name_their_path() {
    let cases = [
        // A missing field is named at its object, as everywhere in the configuration.
        (r#"{"access_token": "t"}"#, "portal"),
        (r#"{"cluster": "p"}"#, "portal"),
        (
            r#"{"cluster": "p", "access_token": {"env": "NOPE"}}"#,
            "portal.access_token",
        ),
        (
            r#"{"cluster": "p", "access_token": "t", "environment": "prod"}"#,
            "portal.environment",
        ),
        (
            r#"{"cluster": "p", "access_token": "t", "versions": {"16": 0}}"#,
            "portal.versions.16",
        ),
        (
            r#"{"cluster": "p", "access_token": "t", "services": []}"#,
            "portal.services",
        ),
        (
            r#"{"cluster": "p", "access_token": "t", "refresh_interval_ms": 5}"#,
            "portal.refresh_interval_ms",
        ),
        (
            r#"{"cluster": "p", "access_token": "t", "refresh": 5}"#,
            "portal.refresh",
        ),
    ];
    for (section, path) in cases {
        let error = load(with_portal(section).as_bytes(), &token_env).unwrap_err();
        assert_eq!(error.path, path, "{section}: {error}");
    }
    // The rest of the configuration is checked at load, before any service arrives.
    let bad_backend =
        r#"{"backend": {"cluster": ""}, "portal": {"cluster": "p", "access_token": "t"}}"#;
    assert!(
        load(bad_backend.as_bytes(), &no_env)
            .unwrap_err()
            .path
            .starts_with("backend")
    );
}

#[test]
fn local_services_are_the_starting_point() {
    let json = format!(
        r#"{{"backend": {{"cluster": "3scale"}}, "apicast": {{"config": {EXPORT}}},
           "portal": {{"cluster": "p", "access_token": "t"}}}}"#
    );
    let loaded = load(json.as_bytes(), &no_env).unwrap();
    assert_eq!(loaded.config.unwrap().services.len(), 2);
    assert!(loaded.portal.is_some());
}
