//! A service in the 3scale portal's own format (an `apicast` section holding a portal export) in the
//! real Envoy: the credentials location, mapping rules and error settings of the portal decide the
//! answers, and what Tollgate does not do is warned about once per service and counted.

use serde_json::{Value, json};
use tollgate_e2e::{Request, Stack, StackOptions, workspace_root};

const TEMPLATE: &str = "envoy/test.template.yaml";
const SEED: &str = "tests/e2e/seed.json";

fn config() -> Value {
    let path = workspace_root().join("tests/e2e/filter.json");
    let native: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let content = json!({
        "id": "svc-userkey", "system_name": "userkey", "backend_version": "1",
        "backend_authentication_type": "service_token", "backend_authentication_value": "tok-userkey",
        "proxy": {
            "hosts": ["apicast.test"], "credentials_location": "headers", "auth_user_key": "user_key",
            "api_backend": "https://ignored.example.com",
            "error_no_match": "no rule for this", "error_status_no_match": 412,
            "proxy_rules": [{"http_method": "GET", "pattern": "/items", "metric_system_name": "get_items",
                             "delta": 2, "querystring_parameters": {}}],
            "policy_chain": [{"name": "apicast", "version": "builtin"}, {"name": "cors"}]
        }
    });
    json!({
        "backend": native["backend"],
        "apicast": {
            "config": {"proxy_configs": [{"proxy_config": {"id": 1, "version": 4, "environment": "production", "content": content}}]},
            "settings": {"userkey": {"mode": "per_request"}}
        }
    })
}

fn get(path: &str) -> Request {
    Request::get(path).header("host", "apicast.test")
}

#[test]
fn a_portal_export_serves_as_apicast_would() {
    if tollgate_e2e::skip_without_simulator("request log") {
        return;
    }
    let options = StackOptions::new(TEMPLATE, config(), SEED);
    let mut options = options;
    let jwks = workspace_root().join("tests/fixtures/jwt/jwks.json");
    options
        .extra_vars
        .push(("JWKS_PATH".into(), jwks.display().to_string()));
    let stack = Stack::start(options);

    // credentials_location "headers" with auth_user_key "user_key": the User-Key header; the rule's
    // delta; 3scale asked on the request (`mode` layered on by system_name).
    let allowed = stack.send(&get("/items").header("user-key", "prod-user-key"));
    assert_eq!(allowed.status, 200, "{}", allowed.text());
    let asked = stack.sim.requests().iter().any(|r| {
        r["path"] == "/transactions/authorize.xml"
            && r["query"]
                .as_str()
                .unwrap_or_default()
                .ends_with("service_id=svc-userkey&user_key=prod-user-key&usage%5Bget_items%5D=2")
    });
    assert!(asked, "{:?}", stack.sim.requests());

    // The query string is not a location of this service.
    let in_query = stack.send(&get("/items?user_key=prod-user-key"));
    assert_eq!(in_query.status, 401);
    assert_eq!(in_query.text(), "Authentication parameters missing");
    assert_eq!(
        in_query.header("content-type").as_deref(),
        Some("text/plain; charset=utf-8")
    );

    // The portal's own no_match reply.
    let no_match = stack.send(&get("/other").header("user-key", "prod-user-key"));
    assert_eq!(
        (no_match.status, no_match.text().as_str()),
        (412, "no rule for this")
    );

    // APIcast's default auth_failed reply for an unknown key.
    let failed = stack.send(&get("/items").header("user-key", "nobody"));
    assert_eq!(
        (failed.status, failed.text().as_str()),
        (403, "Authentication failed")
    );

    let log = stack.envoy.log();
    assert_eq!(
        log.matches("service svc-userkey: ignored, not supported: policy `cors`")
            .count(),
        1,
        "one warning per service, whatever the number of VMs:\n{log}"
    );
    assert!(!log.contains("tok-userkey"), "the service token leaked");
    assert_eq!(
        stack
            .envoy
            .stat("wasmcustom.tollgate.config.unsupported_services"),
        Some(1)
    );
}
