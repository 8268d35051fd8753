//! APIcast compatibility: the configurations of APIcast's own examples (`examples/configuration`) and
//! tests (`t/apicast.t`, `t/apicast-mapping-rules.t`, the credentials of `configuration/service.lua`),
//! reproduced as inputs of our own, load through `tollgate-config` and the module's loader and behave
//! as APIcast documents. APIcast's test configurations often omit the service id and the service
//! token; Tollgate requires both, so the inputs here add them.

#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]

mod common;

use common::{run, write};
use tollgate::args::Args;
use tollgate::category::Category;
use tollgate::config::{Config, Service};
use tollgate::credentials::{Kind, Location};
use tollgate::portal::{self, Loaded};

/// A configuration that compiled, with its warnings.
struct Compiled {
    config: Config,
    warnings: Vec<String>,
}

fn load(apicast: &str) -> Compiled {
    let json =
        format!(r#"{{"backend": {{"cluster": "3scale"}}, "apicast": {{"config": {apicast}}}}}"#);
    let loaded: Loaded = portal::load(json.as_bytes(), &|_| None).unwrap_or_else(|e| panic!("{e}"));
    Compiled {
        config: loaded.config.unwrap(),
        warnings: loaded.warnings,
    }
}

/// One service of APIcast's test shape: id 42, the service token APIcast's tests use.
fn one(backend_version: &str, proxy: &str) -> Service {
    let config = format!(
        r#"{{"services": [{{"id": 42, "backend_version": {backend_version},
        "backend_authentication_type": "service_token", "backend_authentication_value": "token-value",
        "proxy": {proxy}}}]}}"#
    );
    let mut loaded = load(&config);
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    std::rc::Rc::try_unwrap(loaded.config.services.remove(0)).unwrap()
}

fn reply(service: &Service, category: Category) -> (u16, String, String) {
    let reply = service.replies.get(category).unwrap();
    (
        reply.status,
        String::from_utf8(reply.body(None)).unwrap(),
        reply.content_type.clone(),
    )
}

fn hits(service: &Service, method: &str, path: &str, args: Args) -> u64 {
    let matched = service
        .mapping_rules
        .evaluate(method.as_bytes(), path.as_bytes(), &args);
    matched.usage.iter().map(|(_, delta)| delta).sum()
}

const RULE: &str =
    r#"{"pattern": "/", "http_method": "GET", "metric_system_name": "hits", "delta": 1}"#;

/// examples/configuration/example-config.json: an account-level `provider_key` beside the services,
/// app_id/app_key in the query, every error setting given (content types in us-ascii), a
/// `secret_token` and a null `hostname_rewrite`.
const EXAMPLE_CONFIG: &str = r#"{"id": 1234567, "provider_key": "account-key", "services": [{
  "id": 654321, "backend_version": "2",
  "backend_authentication_type": "service_token", "backend_authentication_value": "service-token-1",
  "proxy": {"api_backend": "https://echo.example.com:443", "auth_app_key": "app_key",
    "auth_app_id": "app_id", "auth_user_key": "user_key", "credentials_location": "query",
    "error_auth_failed": "Authentication failed", "error_limits_exceeded": "Limits exceeded",
    "error_auth_missing": "Authentication parameters missing", "error_status_auth_failed": 403,
    "error_headers_auth_failed": "text/plain; charset=us-ascii", "error_status_limits_exceeded": 429,
    "error_headers_limits_exceeded": "text/plain; charset=us-ascii", "error_status_auth_missing": 403,
    "error_headers_auth_missing": "text/plain; charset=us-ascii", "error_no_match": "No Mapping Rule matched",
    "error_status_no_match": 404, "error_headers_no_match": "text/plain; charset=us-ascii",
    "secret_token": "shared-secret", "hostname_rewrite": null, "oauth_login_url": null,
    "hosts": ["localhost", "api.staging.example.com"],
    "backend": {"endpoint": "https://su1.3scale.net", "host": "su1.3scale.net"},
    "proxy_rules": [{"http_method": "GET", "pattern": "/", "metric_system_name": "hits", "delta": 1,
      "parameters": [], "querystring_parameters": {}}]}}]}"#;

#[test]
fn examples_example_config_loads_as_is() {
    let file = write("example-config.json", EXAMPLE_CONFIG);
    let (code, out, err) = run(&["validate", &file]);
    assert_eq!(
        (code, out.trim(), err.as_str()),
        (0, "valid: 1 service(s)", "")
    );
    let loaded = load(EXAMPLE_CONFIG);
    let service = &loaded.config.services[0];
    assert_eq!(service.id, "654321");
    assert_eq!(service.credentials.kind, Kind::AppId);
    assert_eq!(
        service.credentials.locations,
        [Location::Query, Location::Form]
    );
    let missing = reply(service, Category::AuthMissing);
    assert_eq!(missing.0, 403);
    assert_eq!(missing.2, "text/plain; charset=us-ascii");
    let secret = service.secret_header.as_ref().unwrap();
    assert_eq!(secret.1, "shared-secret");
    assert_eq!(service.debug_secret, "service-token-1");
}

#[test]
fn examples_multiservice_routes_by_host_with_its_own_rules() {
    let config = r#"{"services": [
      {"id": 16, "backend_authentication_type": "service_token", "backend_authentication_value": "one",
       "backend_version": "1", "proxy": {"api_backend": "https://echo.example.com/one", "hosts": ["api"],
       "proxy_rules": [{"http_method": "GET", "pattern": "/", "metric_system_name": "one", "delta": 1}]}},
      {"id": 32, "backend_authentication_type": "service_token", "backend_authentication_value": "two",
       "backend_version": "1", "proxy": {"api_backend": "https://echo.example.com/two", "hosts": ["monitoring"],
       "proxy_rules": [{"http_method": "GET", "pattern": "/", "metric_system_name": "two", "delta": 2}]}}]}"#;
    let loaded = load(config);
    let services = &loaded.config.services;
    assert_eq!(services.len(), 2);
    assert!(services[0].hosts.iter().any(|h| h.matches(b"api")));
    assert!(!services[0].hosts.iter().any(|h| h.matches(b"monitoring")));
    assert!(services[1].hosts.iter().any(|h| h.matches(b"monitoring")));
    let usage = services[1]
        .mapping_rules
        .evaluate(b"GET", b"/x", &Args::default())
        .usage;
    assert_eq!(usage.get("two"), 2);
}

/// examples/configuration/echo.json: no service token (APIcast's example talks to an echo backend),
/// `hostname_rewrite`, and the policy named by its module.
const ECHO: &str = r#"{"services": [{"id": 1234, "backend_version": 1,
  "proxy": {"api_backend": "http://127.0.0.1:8081", "hostname_rewrite": "echo",
    "hosts": ["localhost", "127.0.0.1"], "policy_chain": [{"name": "apicast.policy.apicast"}],
    "proxy_rules": [
      {"http_method": "GET", "pattern": "/", "metric_system_name": "hits", "delta": 1},
      {"http_method": "POST", "pattern": "/", "metric_system_name": "hits", "delta": 1}]}}]}"#;

#[test]
fn examples_echo_names_what_it_lacks_and_what_is_not_honoured() {
    let file = write("echo.json", ECHO);
    let (code, _, err) = run(&["validate", &file]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("config error at apicast.config.services[0]"),
        "{err}"
    );
    let with_token = ECHO.replace(
        r#""backend_version": 1,"#,
        r#""backend_version": 1, "backend_authentication_value": "t","#,
    );
    let file = write("echo-token.json", &with_token);
    let (code, out, err) = run(&["validate", &file]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("valid: 1 service(s)"));
    assert!(
        err.contains("service 1234") && err.contains("hostname_rewrite"),
        "{err}"
    );
    assert!(
        !err.contains("policy"),
        "the apicast policy is Tollgate's own: {err}"
    );
}

#[test]
fn t_apicast_1_auth_missing_message_and_status_are_configurable() {
    let service = one(
        "1",
        &format!(
            r#"{{"error_auth_missing": "credentials missing!", "error_status_auth_missing": 401, "proxy_rules": [{RULE}]}}"#
        ),
    );
    let (status, body, _) = reply(&service, Category::AuthMissing);
    assert_eq!((status, body.as_str()), (401, "credentials missing!"));
}

#[test]
fn t_apicast_2_auth_missing_defaults() {
    let service = one("2", &format!(r#"{{"proxy_rules": [{RULE}]}}"#));
    assert_eq!(service.credentials.kind, Kind::AppId);
    let reply = reply(&service, Category::AuthMissing);
    assert_eq!(
        reply,
        (
            401,
            "Authentication parameters missing".into(),
            "text/plain; charset=utf-8".into()
        )
    );
}

#[test]
fn t_apicast_4_and_5_no_match_default_and_configured() {
    let service = one("1", &format!(r#"{{"proxy_rules": [{RULE}]}}"#));
    assert_eq!(reply(&service, Category::NoMatch).0, 404);
    assert_eq!(
        reply(&service, Category::NoMatch).1,
        "No Mapping Rule matched"
    );
    let service = one(
        "1",
        &format!(
            r#"{{"error_no_match": "no mapping rules!", "error_status_no_match": 412, "proxy_rules": [{RULE}]}}"#
        ),
    );
    assert_eq!(
        reply(&service, Category::NoMatch),
        (
            412,
            "no mapping rules!".into(),
            "text/plain; charset=utf-8".into()
        )
    );
}

#[test]
fn t_apicast_6_7_17_auth_failed_and_limits_exceeded() {
    let service = one("1", &format!(r#"{{"proxy_rules": [{RULE}]}}"#));
    assert_eq!(
        reply(&service, Category::AuthFailed).1,
        "Authentication failed"
    );
    assert_eq!(reply(&service, Category::AuthFailed).0, 403);
    assert_eq!(
        reply(&service, Category::LimitsExceeded),
        (
            429,
            "Limits exceeded".into(),
            "text/plain; charset=utf-8".into()
        )
    );
    let service = one(
        "1",
        &format!(
            r#"{{"error_auth_failed": "credentials invalid!", "error_status_auth_failed": 402, "proxy_rules": [{RULE}]}}"#
        ),
    );
    assert_eq!(reply(&service, Category::AuthFailed).0, 402);
    assert_eq!(
        reply(&service, Category::AuthFailed).1,
        "credentials invalid!"
    );
}

#[test]
fn t_apicast_9_10_11_query_values_fixed_and_variable() {
    let fixed = one(
        "1",
        r#"{"proxy_rules": [{"pattern": "/foo?bar=baz", "querystring_parameters": {"bar": "baz"},
        "http_method": "GET", "metric_system_name": "bar", "delta": 1}]}"#,
    );
    assert_eq!(
        hits(&fixed, "GET", "/foo", Args::parse(b"bar=foo&user_key=k")),
        0
    );
    assert_eq!(
        hits(&fixed, "GET", "/foo", Args::parse(b"bar=baz&user_key=k")),
        1
    );
    let variable = one(
        "1",
        r#"{"proxy_rules": [{"pattern": "/foo?bar={baz}", "querystring_parameters": {"bar": "{baz}"},
        "http_method": "GET", "metric_system_name": "bar", "delta": 1}]}"#,
    );
    assert_eq!(
        hits(
            &variable,
            "GET",
            "/foo",
            Args::parse(b"bar={foo}&user_key=k")
        ),
        1
    );
    assert_eq!(
        hits(&variable, "GET", "/foo", Args::parse(b"user_key=k")),
        0
    );
}

#[test]
fn t_mapping_rules_1_repeated_argument_last_value_counts() {
    let service = one(
        "1",
        r#"{"proxy_rules": [{"pattern": "/{env}/video/encode?size={size}&speed=2x",
        "http_method": "GET", "metric_system_name": "hits", "delta": 2,
        "querystring_parameters": {"size": "{size}", "speed": "2x"}}]}"#,
    );
    let args = Args::parse(b"size=100&speed=3x&user_key=foo&speed=2x");
    assert_eq!(hits(&service, "GET", "/staging/video/encode", args), 2);
}

#[test]
fn t_mapping_rules_4_body_parameters_count_and_win() {
    let service = one(
        "1",
        r#"{"proxy_rules": [{"pattern": "/foo?a_param=val1&another_param=val2",
        "http_method": "POST", "metric_system_name": "bar", "delta": 7,
        "querystring_parameters": {"a_param": "val1", "another_param": "val2"}}]}"#,
    );
    let mut args = Args::parse(b"a_param=val3&another_param=val2&user_key=somekey");
    args.extend(b"a_param=val1");
    assert_eq!(hits(&service, "POST", "/foo", args), 7);
}

#[test]
fn t_mapping_rules_5_last_stops_at_the_first_matching_last_rule() {
    let service = one(
        "1",
        r#"{"proxy_rules": [
        {"http_method": "GET", "last": false, "pattern": "/", "metric_system_name": "hits", "delta": 1},
        {"http_method": "GET", "last": true, "pattern": "/i_dont_match", "metric_system_name": "hits", "delta": 100},
        {"http_method": "GET", "last": true, "pattern": "/abc", "metric_system_name": "hits", "delta": 2},
        {"http_method": "GET", "pattern": "/abc/def", "metric_system_name": "hits", "delta": 10}]}"#,
    );
    assert_eq!(
        hits(&service, "GET", "/abc/def", Args::parse(b"user_key=uk")),
        3
    );
}

#[test]
fn t_mapping_rules_6_escaped_characters_in_patterns() {
    let service = one(
        "1",
        r#"{"proxy_rules": [{"pattern": "/foo%20/bar/", "http_method": "GET",
        "metric_system_name": "hits", "delta": 1}]}"#,
    );
    assert_eq!(hits(&service, "GET", "/foo%20/bar/", Args::default()), 1);
}

#[test]
fn service_lua_credentials_locations() {
    let headers = one(
        "2",
        &format!(
            r#"{{"credentials_location": "headers", "auth_app_id": "X_App_Id", "auth_app_key": "app_key", "proxy_rules": [{RULE}]}}"#
        ),
    );
    assert_eq!(headers.credentials.locations, [Location::Header]);
    assert_eq!(headers.credentials.headers.app_id, "x-app-id");
    assert_eq!(headers.credentials.headers.app_key, "app-key");
    let authorization = one(
        "1",
        &format!(r#"{{"credentials_location": "authorization", "proxy_rules": [{RULE}]}}"#),
    );
    assert_eq!(
        authorization.credentials.locations,
        [Location::Basic, Location::Bearer]
    );
    let query = one(
        "1",
        &format!(r#"{{"auth_user_key": "Key", "proxy_rules": [{RULE}]}}"#),
    );
    assert_eq!(
        query.credentials.locations,
        [Location::Query, Location::Form]
    );
    assert_eq!(query.credentials.params.user_key, "key");
}
