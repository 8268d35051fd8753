//! The filter in the real Envoy, one table of cases: each is a real HTTP request through Envoy, and
//! each asserts the answer (status, error code, headers), which upstream was reached (or that none
//! was), and what the 3scale simulator saw (its call counters and usage).

use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use tollgate_e2e::{
    Cases, Request, Response, Stack, StackOptions, envoy_expect_rejected, render, workspace_root,
    yaml_string,
};

const TEMPLATE: &str = "envoy/test.template.yaml";
const SEED: &str = "tests/e2e/seed.json";

fn filter_config() -> Value {
    let path = workspace_root().join("tests/e2e/filter.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn options(config: Value) -> StackOptions {
    let mut options = StackOptions::new(TEMPLATE, config, SEED);
    let jwks = workspace_root().join("tests/fixtures/jwt/jwks.json");
    options
        .extra_vars
        .push(("JWKS_PATH".into(), jwks.display().to_string()));
    options
}

fn get(host: &str, path: &str) -> Request {
    Request::get(path).header("host", host)
}

fn basic(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64url(format!("{user}:{password}").as_bytes(), false)
    )
}

/// Base64 (standard alphabet, padded) or base64url (unpadded), enough for Basic and JWTs.
fn base64url(bytes: &[u8], url: bool) -> String {
    let alphabet: &[u8] = if url {
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    } else {
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    };
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(alphabet[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
        if !url {
            out.push_str(&"=".repeat(3 - chunk.len()));
        }
    }
    out
}

/// An RS256 JWT signed with a test key (`openssl dgst`), as an identity provider would issue it.
fn jwt(claims: Value, key: &str) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mut claims = claims;
    claims["iss"] = json!("https://issuer.tollgate.test");
    claims["exp"] = json!(now + 3600);
    let header = json!({"alg": "RS256", "typ": "JWT", "kid": "tollgate-test"});
    let signing_input = format!(
        "{}.{}",
        base64url(header.to_string().as_bytes(), true),
        base64url(claims.to_string().as_bytes(), true)
    );
    let key_path = workspace_root().join("tests/fixtures/jwt").join(key);
    let scratch = std::env::temp_dir().join(format!("tollgate-jwt-{}-{now}", std::process::id()));
    std::fs::write(&scratch, &signing_input).unwrap();
    let signature = Command::new("openssl")
        .args(["dgst", "-sha256", "-sign"])
        .arg(&key_path)
        .arg(&scratch)
        .output()
        .expect("openssl signs the test JWT");
    let _ = std::fs::remove_file(&scratch);
    assert!(
        signature.status.success(),
        "openssl: {}",
        String::from_utf8_lossy(&signature.stderr)
    );
    format!("{signing_input}.{}", base64url(&signature.stdout, true))
}

/// Shared state between cases: the stack, reset before each case.
struct World {
    stack: Stack,
}

impl World {
    fn send(&self, request: Request) -> Response {
        self.stack.send(&request)
    }

    fn fresh(&self) {
        // An external backend keeps its counters: the checks reading them are skipped there.
        if !self.stack.sim.is_external() {
            self.stack.sim.reset();
        }
        self.stack.staging.clear();
        self.stack.production.clear();
    }

    fn calls(&self, endpoint: &str) -> u64 {
        self.stack.sim.calls()["total"][endpoint]
            .as_u64()
            .unwrap_or(0)
    }

    fn service_calls(&self, service: &str, endpoint: &str) -> u64 {
        self.stack.sim.calls()["services"][service][endpoint]
            .as_u64()
            .unwrap_or(0)
    }

    fn usage(&self, service: &str, app: &str, metric: &str, period: &str) -> u64 {
        let usage = self.stack.sim.usage(service, app);
        usage["metrics"][metric][period]
            .as_u64()
            .unwrap_or_else(|| panic!("no {metric}/{period} usage for {app}: {usage}"))
    }

    /// The query strings the simulator received on its authorization endpoints.
    fn backend_queries(&self) -> Vec<String> {
        self.stack
            .sim
            .requests()
            .iter()
            .filter(|r| {
                r["path"]
                    .as_str()
                    .is_some_and(|p| p.starts_with("/transactions/"))
            })
            .map(|r| {
                format!(
                    "{}?{}",
                    r["path"].as_str().unwrap(),
                    r["query"].as_str().unwrap_or("")
                )
            })
            .collect()
    }

    fn upstream_count(&self) -> usize {
        self.stack.staging.received().len() + self.stack.production.received().len()
    }

    /// A refusal: status, error code in the JSON body, nothing upstream.
    fn assert_refused(&self, response: &Response, status: u16, code: &str) {
        assert_eq!(response.status, status, "body: {}", response.text());
        assert_eq!(
            response.json()["error"]["code"],
            code,
            "body: {}",
            response.text()
        );
        assert_eq!(
            self.upstream_count(),
            0,
            "a refused request reached an upstream"
        );
    }

    /// An allowed request: 200 from `upstream`, exactly one authrep.
    fn assert_allowed(&self, response: &Response, upstream: &str) {
        assert_eq!(response.status, 200, "body: {}", response.text());
        assert_eq!(
            response.upstream().as_deref(),
            Some(upstream),
            "body: {}",
            response.text()
        );
        assert_eq!(
            self.calls("authrep"),
            1,
            "one authrep per request: {:?}",
            self.backend_queries()
        );
    }

    /// The access log line of the request whose path holds `marker`, once Envoy wrote it.
    fn access_log_line(&self, marker: &str) -> String {
        let log = self.stack.wait_access_log(|log| log.contains(marker));
        log.lines().find(|l| l.contains(marker)).unwrap().to_owned()
    }

    fn last_received(&self, upstream: &str) -> tollgate_e2e::Received {
        match upstream {
            "staging" => self.stack.staging.last(),
            _ => self.stack.production.last(),
        }
    }
}

fn all_values(received: &tollgate_e2e::Received, name: &str) -> Vec<String> {
    received
        .headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
        .collect()
}

const PROD: &str = "app_id=prod-app&app_key=prod-key";

#[test]
fn the_filter_in_envoy() {
    let world = World {
        stack: Stack::start(options(filter_config())),
    };
    let mut cases = Cases::new("tollgate in Envoy 1.40");
    credentials(&world, &mut cases);
    categories(&world, &mut cases);
    routing(&world, &mut cases);
    mapping_rules(&world, &mut cases);
    debug_and_observability(&world, &mut cases);
    robustness(&world, &mut cases);
    cases.finish();
}

fn case(cases: &mut Cases, world: &World, name: &str, check: impl FnOnce()) {
    world.fresh();
    cases.case(name, check);
}

fn credentials(w: &World, cases: &mut Cases) {
    case(
        cases,
        w,
        "app_id + app_key in the query: production, one authrep, credentials stripped",
        || {
            let r = w.send(get("appid.test", &format!("/items?{PROD}&page=2")));
            w.assert_allowed(&r, "production");
            let got = w.last_received("production");
            assert_eq!(got.path, "/items?page=2");
            assert_eq!(got.header("x-tollgate-app-id").as_deref(), Some("prod-app"));
            assert_eq!(got.header("x-tollgate-plan").as_deref(), Some("Production"));
            assert_eq!(
                got.header("x-3scale-proxy-secret-token").as_deref(),
                Some("upstream-secret")
            );
            assert_eq!(
                got.header("x-tollgate-cluster"),
                None,
                "the routing header stops at the route"
            );
            assert_eq!(w.usage("svc-appid", "prod-app", "get_items", "day"), 1);
            assert_eq!(
                w.usage("svc-appid", "prod-app", "hits", "day"),
                1,
                "child usage counts on the parent"
            );
            let queries = w.backend_queries();
            assert_eq!(
                queries,
                vec![
                    "/transactions/authrep.xml?service_token=tok-appid&service_id=svc-appid&app_id=prod-app&app_key=prod-key&usage%5Bget_items%5D=1"
                ]
            );
            let sent = &w.stack.sim.requests()[0];
            assert_eq!(
                sent["headers"]["3scale-options"],
                "rejection_reason_header=1&limit_headers=1&hierarchy=1"
            );
        },
    );
    case(
        cases,
        w,
        "app credentials in headers, removed before the upstream",
        || {
            let r = w.send(
                get("appid.test", "/items")
                    .header("x-app-id", "prod-app")
                    .header("x-app-key", "prod-key-2"),
            );
            w.assert_allowed(&r, "production");
            let got = w.last_received("production");
            assert_eq!(got.header("x-app-id"), None);
            assert_eq!(got.header("x-app-key"), None);
        },
    );
    case(
        cases,
        w,
        "credentials in the query (used) and in headers and Basic (not used): every location removed",
        || {
            let r = w.send(
                get("appid.test", &format!("/items?{PROD}&page=2"))
                    .header("x-app-id", "other-app")
                    .header("x-app-key", "other-key")
                    .header("authorization", basic("other-app", "other-key")),
            );
            w.assert_allowed(&r, "production");
            assert!(w.backend_queries()[0].contains("app_id=prod-app&app_key=prod-key"));
            let got = w.last_received("production");
            assert_eq!(got.header("x-app-id"), None);
            assert_eq!(got.header("x-app-key"), None);
            assert_eq!(got.header("authorization"), None);
            assert_eq!(got.path, "/items?page=2");
        },
    );
    case(
        cases,
        w,
        "a Bearer token the upstream needs is kept when Basic holds no credentials",
        || {
            let r = w.send(
                get("appid.test", &format!("/items?{PROD}"))
                    .header("authorization", "Bearer upstream-token"),
            );
            w.assert_allowed(&r, "production");
            let got = w.last_received("production");
            assert_eq!(
                got.header("authorization").as_deref(),
                Some("Bearer upstream-token")
            );
        },
    );
    case(
        cases,
        w,
        "Authorization: Basic app_id:app_key, removed before the upstream",
        || {
            let r = w.send(
                get("appid.test", "/items").header("authorization", basic("prod-app", "prod-key")),
            );
            w.assert_allowed(&r, "production");
            assert_eq!(w.last_received("production").header("authorization"), None);
            assert!(w.backend_queries()[0].contains("app_id=prod-app&app_key=prod-key"));
        },
    );
    case(
        cases,
        w,
        "form body credentials: decided at end of body, fields stripped",
        || {
            let r = w.send(Request::post("/items").header("host", "appid.test").form(&[
                ("name", "widget"),
                ("app_id", "prod-app"),
                ("app_key", "prod-key"),
            ]));
            w.assert_allowed(&r, "production");
            let got = w.last_received("production");
            assert_eq!(String::from_utf8_lossy(&got.body), "name=widget");
            assert_eq!(got.header("content-length").as_deref(), Some("11"));
            assert_eq!(w.usage("svc-appid", "prod-app", "create_item", "day"), 1);
        },
    );
    case(
        cases,
        w,
        "a form body of a Sandbox app reaches staging through filter state",
        || {
            let r = w.send(
                Request::put("/items")
                    .header("host", "appid.test")
                    .form(&[("app_id", "sandbox-app"), ("app_key", "sandbox-key")]),
            );
            w.assert_refused(&r, 404, "no_match");
            w.fresh();
            let r = w.send(
                Request::post("/search?q=x")
                    .header("host", "appid.test")
                    .form(&[
                        ("type", "book"),
                        ("app_id", "sandbox-app"),
                        ("app_key", "sandbox-key"),
                    ]),
            );
            assert_eq!(
                r.status, 404,
                "rule conditions read the form too, and GET rules do not match a POST"
            );
        },
    );
    case(
        cases,
        w,
        "a refused form request never reaches an upstream",
        || {
            let r = w.send(
                Request::post("/items")
                    .header("host", "appid.test")
                    .form(&[("app_id", "prod-app"), ("app_key", "wrong")]),
            );
            w.assert_refused(&r, 403, "auth_failed");
        },
    );
    case(
        cases,
        w,
        "a form body ended by trailers is decided, never let through undecided",
        || {
            let r = w.send(
                Request::post("/items")
                    .header("host", "appid.test")
                    .form(&[("name", "widget")])
                    .trailer("x-checksum", "1"),
            );
            w.assert_refused(&r, 401, "auth_missing");
            w.fresh();
            let r = w.send(
                Request::post("/items")
                    .header("host", "appid.test")
                    .form(&[
                        ("name", "widget"),
                        ("app_id", "prod-app"),
                        ("app_key", "prod-key"),
                    ])
                    .trailer("x-checksum", "1"),
            );
            w.assert_allowed(&r, "production");
            let got = w.last_received("production");
            assert_eq!(String::from_utf8_lossy(&got.body), "name=widget");
            assert_eq!(w.usage("svc-appid", "prod-app", "create_item", "day"), 1);
        },
    );
    case(
        cases,
        w,
        "a form post decided at the end of its body: header credentials removed, secret token sent",
        || {
            let r = w.send(
                Request::post("/items")
                    .header("host", "appid.test")
                    .header("x-app-id", "prod-app")
                    .header("x-app-key", "prod-key")
                    .form(&[("name", "widget")]),
            );
            w.assert_allowed(&r, "production");
            let got = w.last_received("production");
            assert_eq!(got.header("x-app-id"), None);
            assert_eq!(got.header("x-app-key"), None);
            assert_eq!(
                got.header("x-3scale-proxy-secret-token").as_deref(),
                Some("upstream-secret")
            );
            assert_eq!(String::from_utf8_lossy(&got.body), "name=widget");
        },
    );
    case(
        cases,
        w,
        "a form post with credentials in the query keeps header routing",
        || {
            let r = w.send(
                Request::post("/items?app_id=prod-app&app_key=prod-key")
                    .header("host", "appid.test")
                    .form(&[("name", "widget")]),
            );
            w.assert_allowed(&r, "production");
            let got = w.last_received("production");
            assert_eq!(got.header("x-tollgate-plan").as_deref(), Some("Production"));
            assert_eq!(String::from_utf8_lossy(&got.body), "name=widget");
        },
    );
    case(
        cases,
        w,
        "the first location in the list wins (query before header)",
        || {
            let r = w.send(
                get("appid.test", &format!("/items?{PROD}")).header("x-app-id", "sandbox-app"),
            );
            w.assert_allowed(&r, "production");
            assert!(w.backend_queries()[0].contains("app_id=prod-app"));
        },
    );
    case(
        cases,
        w,
        "an app_key without app_id is no credentials: 401 with WWW-Authenticate",
        || {
            let r = w.send(get("appid.test", "/items?app_key=prod-key"));
            w.assert_refused(&r, 401, "auth_missing");
            assert_eq!(
                r.header("www-authenticate").as_deref(),
                Some("Basic realm=\"svc-appid\"")
            );
            assert_eq!(w.calls("authrep"), 0);
        },
    );
    case(
        cases,
        w,
        "an application without keys passes with app_id alone",
        || {
            let r = w.send(get("appid.test", "/items?app_id=keyless-app"));
            w.assert_allowed(&r, "production");
        },
    );
    case(
        cases,
        w,
        "user_key in a header (x-api-key), provider key from the VM environment",
        || {
            let r = w.send(get("userkey.test", "/items").header("x-api-key", "prod-user-key"));
            w.assert_allowed(&r, "production");
            assert_eq!(w.last_received("production").header("x-api-key"), None);
            assert_eq!(
                w.backend_queries(),
                vec![
                    "/transactions/authrep.xml?provider_key=from-the-vm-environment&service_id=svc-userkey&user_key=prod-user-key&usage%5Bget_items%5D=1"
                ]
            );
            assert_eq!(w.usage("svc-userkey", "uk-prod-app", "get_items", "day"), 1);
        },
    );
    case(cases, w, "user_key in the query, stripped", || {
        let r = w.send(get("userkey.test", "/items?user_key=prod-user-key&x=1"));
        w.assert_allowed(&r, "production");
        assert_eq!(w.last_received("production").path, "/items?x=1");
    });
    case(
        cases,
        w,
        "user_key as a Bearer token, Authorization removed",
        || {
            let r = w.send(
                get("userkey.test", "/items").header("authorization", "Bearer prod-user-key"),
            );
            w.assert_allowed(&r, "production");
            assert_eq!(w.last_received("production").header("authorization"), None);
        },
    );
    case(
        cases,
        w,
        "OIDC: azp of a jwt_authn-verified token, authrep.xml with app_id, routed by plan",
        || {
            let token = jwt(json!({"azp": "oidc-sandbox", "aud": "api"}), "private.pem");
            let r = w.send(
                get("oidc.test", "/items").header("authorization", format!("Bearer {token}")),
            );
            w.assert_allowed(&r, "staging");
            assert_eq!(
                w.backend_queries(),
                vec![
                    "/transactions/authrep.xml?service_token=tok-oidc&service_id=svc-oidc&app_id=oidc-sandbox&usage%5Bget_items%5D=1"
                ]
            );
            assert_eq!(
                w.last_received("staging")
                    .header("x-tollgate-app-id")
                    .as_deref(),
                Some("oidc-sandbox")
            );
            assert_eq!(w.usage("svc-oidc", "oidc-sandbox", "get_items", "day"), 1);
        },
    );
    case(
        cases,
        w,
        "OIDC: a token signed by another key is jwt_authn's 401, 3scale never asked",
        || {
            let token = jwt(json!({"azp": "oidc-prod"}), "other-private.pem");
            let r = w.send(
                get("oidc.test", "/items").header("authorization", format!("Bearer {token}")),
            );
            assert_eq!(r.status, 401);
            assert_eq!(w.calls("authrep"), 0);
            assert_eq!(w.upstream_count(), 0);
        },
    );
    case(cases, w, "OIDC: no token is jwt_authn's 401", || {
        let r = w.send(get("oidc.test", "/items"));
        assert_eq!(r.status, 401);
        assert_eq!(w.calls("authrep"), 0);
    });
    case(
        cases,
        w,
        "OIDC: a list claim (aud) uses its first element",
        || {
            let token = jwt(json!({"aud": ["oidc-prod", "other"]}), "private.pem");
            let r = w.send(
                get("oidc-aud.test", "/items").header("authorization", format!("Bearer {token}")),
            );
            w.assert_allowed(&r, "production");
            assert!(w.backend_queries()[0].contains("app_id=oidc-prod"));
        },
    );
    case(
        cases,
        w,
        "referrer sent to 3scale; a foreign referrer is auth_failed",
        || {
            let ok = w.send(
                get("referrer.test", "/items?app_id=ref-app&app_key=ref-key")
                    .header("referer", "www.partner.example"),
            );
            w.assert_allowed(&ok, "production");
            assert!(
                w.backend_queries()[0].contains("referrer=www.partner.example"),
                "{:?}",
                w.backend_queries()
            );
            w.fresh();
            let bad = w.send(
                get("referrer.test", "/items?app_id=ref-app&app_key=ref-key")
                    .header("referer", "evil.example"),
            );
            w.assert_refused(&bad, 403, "auth_failed");
        },
    );
    case(
        cases,
        w,
        "default credentials when none are sent (anonymous access)",
        || {
            let r = w.send(get("anon.test", "/items"));
            w.assert_allowed(&r, "staging");
            assert!(w.backend_queries()[0].contains("app_id=anonymous-app&app_key=anonymous-key"));
        },
    );
    case(
        cases,
        w,
        "unusable credentials (non-UTF-8) are auth_failed without asking 3scale",
        || {
            let r = w.send(get("appid.test", "/items").header("x-app-id", b"caf\xe9".as_slice()));
            w.assert_refused(&r, 403, "auth_failed");
            assert_eq!(w.calls("authrep"), 0);
        },
    );
}

fn categories(w: &World, cases: &mut Cases) {
    case(cases, w, "wrong app_key: auth_failed, no upstream", || {
        let r = w.send(get("appid.test", "/items?app_id=prod-app&app_key=wrong"));
        w.assert_refused(&r, 403, "auth_failed");
        assert_eq!(w.calls("authrep"), 1);
        assert_eq!(
            w.usage("svc-appid", "prod-app", "hits", "day"),
            0,
            "denied authreps record nothing"
        );
    });
    case(cases, w, "unknown application: auth_failed", || {
        let r = w.send(get("appid.test", "/items?app_id=nobody&app_key=x"));
        w.assert_refused(&r, 403, "auth_failed");
    });
    case(cases, w, "unknown user_key: auth_failed", || {
        let r = w.send(get("userkey.test", "/items").header("x-api-key", "nobody"));
        assert_eq!(r.status, 403);
        assert!(
            r.text().contains("<code>auth_failed</code>"),
            "{}",
            r.text()
        );
        assert_eq!(w.upstream_count(), 0);
    });
    case(cases, w, "suspended application: app_inactive", || {
        let r = w.send(get(
            "appid.test",
            "/items?app_id=suspended-app&app_key=suspended-key",
        ));
        w.assert_refused(&r, 403, "app_inactive");
    });
    case(
        cases,
        w,
        "a write on a plan that gives it limit 0: method_disabled, not limits_exceeded",
        || {
            let r = w.send(
                Request::post("/items?app_id=sandbox-app&app_key=sandbox-key")
                    .header("host", "appid.test"),
            );
            w.assert_refused(&r, 403, "method_disabled");
            assert_eq!(r.header("retry-after"), None);
        },
    );
    case(
        cases,
        w,
        "limits exceeded: 429 with Retry-After and RateLimit-*, usage stops at the limit",
        || {
            let tiny = "/items?app_id=tiny-app&app_key=tiny-key";
            for i in 0..2 {
                let r = w.send(get("appid.test", tiny));
                assert_eq!(r.status, 200, "request {i}: {}", r.text());
            }
            assert_eq!(
                w.last_received("production")
                    .header("x-tollgate-plan")
                    .as_deref(),
                Some("Tiny")
            );
            w.stack.production.clear();
            let r = w.send(get("appid.test", tiny));
            w.assert_refused(&r, 429, "limits_exceeded");
            let retry_after: u64 = r.header("retry-after").unwrap().parse().unwrap();
            assert!(
                retry_after > 0 && retry_after <= 366 * 86_400,
                "yearly limit resets within a year: {retry_after}"
            );
            assert_eq!(r.header("ratelimit-limit").as_deref(), Some("2"));
            assert_eq!(r.header("ratelimit-remaining").as_deref(), Some("0"));
            assert_eq!(r.header("ratelimit-reset"), r.header("retry-after"));
            assert_eq!(w.usage("svc-appid", "tiny-app", "hits", "year"), 2);
        },
    );
    case(
        cases,
        w,
        "RateLimit-* headers on successful answers when enabled",
        || {
            let r = w.send(get("appid.test", &format!("/items?{PROD}")));
            w.assert_allowed(&r, "production");
            assert_eq!(r.header("ratelimit-limit").as_deref(), Some("100000"));
            assert_eq!(r.header("ratelimit-remaining").as_deref(), Some("99999"));
        },
    );
    case(
        cases,
        w,
        "no mapping rule: no_match, 3scale not asked",
        || {
            let r = w.send(get("appid.test", &format!("/nothing?{PROD}")));
            w.assert_refused(&r, 404, "no_match");
            assert_eq!(w.calls("authrep"), 0);
        },
    );
    case(
        cases,
        w,
        "missing credentials are reported before a missing rule",
        || {
            let r = w.send(get("appid.test", "/nothing"));
            w.assert_refused(&r, 401, "auth_missing");
        },
    );
    case(
        cases,
        w,
        "no service for the host: service_not_found",
        || {
            let r = w.send(get("unknown.test", &format!("/items?{PROD}")));
            w.assert_refused(&r, 404, "service_not_found");
            assert_eq!(w.calls("authrep"), 0);
        },
    );
    case(
        cases,
        w,
        "a plan without a cluster: no_route_for_plan",
        || {
            let r = w.send(get("appid.test", "/items?app_id=gold-app&app_key=gold-key"));
            w.assert_refused(&r, 403, "no_route_for_plan");
            assert_eq!(w.calls("authrep"), 1);
        },
    );
    case(
        cases,
        w,
        "3scale refuses the gateway's token: backend_misconfigured, logged with the code",
        || {
            let r = w.send(get(
                "misconf.test",
                "/items?app_id=misconf-app&app_key=misconf-key",
            ));
            w.assert_refused(&r, 500, "backend_misconfigured");
            let logged = w
                .stack
                .envoy
                .wait_log("service_token_invalid", std::time::Duration::from_secs(5));
            assert!(logged.is_some(), "the 3scale code is logged");
            assert!(
                !w.stack.envoy.log().contains("wrong-token"),
                "the token itself is never logged"
            );
        },
    );
    case(
        cases,
        w,
        "a mapping rule naming an unknown metric: backend_misconfigured",
        || {
            let r = w.send(get(
                "badmetric.test",
                "/x?app_id=badmetric-app&app_key=badmetric-key",
            ));
            w.assert_refused(&r, 500, "backend_misconfigured");
        },
    );
    for (fault, label) in [
        (json!({"endpoint": "authrep", "status": 503}), "a 5xx"),
        (
            json!({"endpoint": "authrep", "garbage": true}),
            "a garbage body",
        ),
        (
            json!({"endpoint": "authrep", "close": true}),
            "a closed connection",
        ),
    ] {
        case(
            cases,
            w,
            &format!("3scale answering {label}: backend_unavailable (503), never a 403"),
            || {
                w.stack.sim.fault(fault.clone());
                let r = w.send(get("appid.test", &format!("/items?{PROD}")));
                w.stack.sim.clear_faults();
                w.assert_refused(&r, 503, "backend_unavailable");
            },
        );
    }
    case(
        cases,
        w,
        "3scale slower than the timeout: backend_unavailable within timeout + margin",
        || {
            w.stack
                .sim
                .fault(json!({"endpoint": "authrep", "latency_ms": 3500}));
            let started = std::time::Instant::now();
            let r = w.send(get("appid.test", &format!("/items?{PROD}")));
            let took = started.elapsed();
            w.stack.sim.clear_faults();
            w.assert_refused(&r, 503, "backend_unavailable");
            assert!(
                took.as_millis() < 2000 + 500,
                "answered after {took:?} (timeout 2 s)"
            );
        },
    );
    case(
        cases,
        w,
        "3scale's latency is an Envoy histogram (tollgate.backend.latency_ms)",
        || {
            // Calls that took 250 ms to 1 s: only this case's slowed call lands there (the others
            // answer within milliseconds, or time out after 2 s). Envoy names custom metrics
            // without their `wasmcustom.` namespace in this format.
            let slow_calls = || {
                std::thread::sleep(tollgate_e2e::COUNTERS_FLUSHED);
                let text = w.stack.envoy.admin_get("/stats/prometheus").text();
                let bucket = |le: &str| {
                    let name = format!("tollgate_backend_latency_ms_bucket{{le=\"{le}\"}} ");
                    text.lines()
                        .find_map(|l| l.strip_prefix(&name)?.parse::<u64>().ok())
                        .unwrap_or(0)
                };
                bucket("1000") - bucket("250")
            };
            // Envoy merges the workers' histograms after answering the read that asked for it:
            // read once to have earlier calls merged, then take the baseline.
            slow_calls();
            std::thread::sleep(std::time::Duration::from_millis(300));
            let before = slow_calls();
            w.stack
                .sim
                .fault(json!({"endpoint": "authrep", "latency_ms": 300}));
            let r = w.send(get("appid.test", &format!("/items?{PROD}")));
            w.stack.sim.clear_faults();
            w.assert_allowed(&r, "production");
            let after = tollgate_e2e::wait_until(
                std::time::Duration::from_secs(5),
                std::time::Duration::from_millis(100),
                || Some(slow_calls()).filter(|&n| n > before),
            );
            assert!(after.is_some(), "no call of 250 ms to 1 s observed");
        },
    );
    case(
        cases,
        w,
        "configured errors: status, XML template with request id, extra header",
        || {
            for _ in 0..2 {
                assert_eq!(
                    w.send(get("userkey.test", "/items").header("x-api-key", "tiny-user-key"))
                        .status,
                    200
                );
            }
            w.stack.production.clear();
            let r = w.send(get("userkey.test", "/items").header("x-api-key", "tiny-user-key"));
            assert_eq!(r.status, 402);
            assert_eq!(
                r.header("content-type").as_deref(),
                Some("application/xml; charset=utf-8")
            );
            assert_eq!(r.header("x-quota").as_deref(), Some("exhausted"));
            let body = r.text();
            assert!(
                body.starts_with(
                    "<quota><code>limits_exceeded</code><msg>Quota &lt;used&gt; up</msg><id>"
                ),
                "{body}"
            );
            let id = body
                .split("<id>")
                .nth(1)
                .unwrap()
                .trim_end_matches("</id></quota>");
            assert!(
                id.len() >= 8 && id.chars().all(|c| c.is_ascii_hexdigit() || c == '-'),
                "request id {id:?}"
            );
            assert_eq!(w.upstream_count(), 0);
        },
    );
    case(
        cases,
        w,
        "configured errors: a text body for auth_missing",
        || {
            let r = w.send(get("userkey.test", "/items"));
            assert_eq!(r.status, 401);
            assert_eq!(
                r.header("content-type").as_deref(),
                Some("text/plain; charset=utf-8")
            );
            assert_eq!(r.text(), "Send your API key in X-API-Key\n");
            assert_eq!(
                r.header("www-authenticate").as_deref(),
                Some("APIKey realm=\"svc-userkey\"")
            );
        },
    );
    case(cases, w, "gRPC clients get a gRPC status", || {
        let r = w.send(get("appid.test", "/grpc").header("content-type", "application/grpc"));
        assert_eq!(
            r.header("grpc-status").as_deref(),
            Some("16"),
            "{:?}",
            r.headers
        );
        assert!(
            r.header("grpc-message")
                .is_some_and(|m| m.contains("Authentication"))
        );
        assert_eq!(w.upstream_count(), 0);
    });
}

fn routing(w: &World, cases: &mut Cases) {
    case(
        cases,
        w,
        "Sandbox plan: staging cluster, Host rewritten for the plan",
        || {
            let r = w.send(get(
                "appid.test",
                "/items?app_id=sandbox-app&app_key=sandbox-key",
            ));
            w.assert_allowed(&r, "staging");
            let got = w.last_received("staging");
            assert_eq!(got.header("host").as_deref(), Some("sandbox.internal"));
            assert_eq!(
                got.header("x-tollgate-host").as_deref(),
                Some("sandbox.internal")
            );
        },
    );
    case(
        cases,
        w,
        "Production plan: production cluster, Host untouched",
        || {
            let r = w.send(get("appid.test", &format!("/items?{PROD}")));
            w.assert_allowed(&r, "production");
            assert_eq!(
                w.last_received("production").header("host").as_deref(),
                Some("appid.test")
            );
        },
    );
    case(
        cases,
        w,
        "forged routing, Host and identity headers are ignored",
        || {
            let r = w.send(
                get("appid.test", &format!("/items?{PROD}"))
                    .header("x-tollgate-cluster", "staging")
                    .header("x-tollgate-host", "evil.internal")
                    .header("x-tollgate-plan", "Gold")
                    .header("x-tollgate-app-id", "someone-else"),
            );
            w.assert_allowed(&r, "production");
            let got = w.last_received("production");
            assert_eq!(got.header("host").as_deref(), Some("appid.test"));
            assert_eq!(all_values(&got, "x-tollgate-plan"), vec!["Production"]);
            assert_eq!(all_values(&got, "x-tollgate-app-id"), vec!["prod-app"]);
        },
    );
    case(
        cases,
        w,
        "forged headers are removed even without credentials in play",
        || {
            let r = w.send(get("appid.test", "/items").header("x-tollgate-cluster", "staging"));
            w.assert_refused(&r, 401, "auth_missing");
        },
    );
    case(
        cases,
        w,
        "route metadata names the service (before host globs)",
        || {
            let r =
                w.send(get("appid.test", "/by-metadata/x").header("x-api-key", "prod-user-key"));
            w.assert_allowed(&r, "production");
            assert_eq!(w.service_calls("svc-userkey", "authrep"), 1);
        },
    );
    case(cases, w, "the route name selects the service", || {
        let r = w.send(get("other.test", &format!("/by-name/x?{PROD}")));
        w.assert_allowed(&r, "production");
        assert_eq!(w.service_calls("svc-appid", "authrep"), 1);
    });
    case(
        cases,
        w,
        "a route with the filter disabled passes without credentials",
        || {
            let r = w.send(get("appid.test", "/public/x"));
            assert_eq!(r.status, 200);
            assert_eq!(r.upstream().as_deref(), Some("production"));
            assert_eq!(w.calls("authrep"), 0);
        },
    );
}

/// The metric deltas a path should cost, or None for `no_match`.
type Expected = Option<Vec<(&'static str, u64)>>;

fn mapping_rules(w: &World, cases: &mut Cases) {
    // (path, expected metric deltas or None for no_match)
    let table: Vec<(&str, Expected)> = vec![
        ("/items/42", Some(vec![("get_items", 1)])),
        ("/exact", Some(vec![("exact_m", 1)])),
        ("/exact/more", None),
        ("/users/7/orders", Some(vec![("orders", 1)])),
        ("/users//orders", None),
        ("/files/report.json", Some(vec![("exact_m", 3)])),
        ("/files/report.json/x", None),
        (
            "/search?type=book&q=rust",
            Some(vec![("search_books", 1), ("search_any", 1)]),
        ),
        ("/search?q=rust&type=cd", Some(vec![("search_any", 1)])),
        ("/search?type=book", None),
        ("/prefix/deep", Some(vec![("prefix_m", 3)])),
        (
            "/stop/after",
            Some(vec![("stop_m", 1), ("after_stop_m", 0)]),
        ),
        ("//admin", Some(vec![("admin_m", 1)])),
        ("/public/../admin", Some(vec![("admin_m", 1)])),
        ("/x/%2e%2e/admin", Some(vec![("admin_m", 1)])),
    ];
    for (path, expected) in table {
        case(cases, w, &format!("mapping rules: GET {path}"), || {
            let separator = if path.contains('?') { '&' } else { '?' };
            let r = w.send(get("appid.test", &format!("{path}{separator}{PROD}")));
            match &expected {
                None => {
                    w.assert_refused(&r, 404, "no_match");
                    assert_eq!(w.calls("authrep"), 0);
                }
                Some(deltas) => {
                    w.assert_allowed(&r, "production");
                    let total: u64 = deltas.iter().map(|(_, d)| d).sum();
                    for (metric, delta) in deltas {
                        assert_eq!(
                            w.usage("svc-appid", "prod-app", metric, "day"),
                            *delta,
                            "{metric}"
                        );
                    }
                    assert_eq!(
                        w.usage("svc-appid", "prod-app", "hits", "day"),
                        total,
                        "summed on hits"
                    );
                }
            }
        });
    }
}

fn debug_and_observability(w: &World, cases: &mut Cases) {
    case(
        cases,
        w,
        "debug headers with the service token; never forwarded upstream",
        || {
            let r = w.send(
                get("appid.test", &format!("/prefix/deep?{PROD}"))
                    .header("x-3scale-debug", "tok-appid"),
            );
            w.assert_allowed(&r, "production");
            assert_eq!(
                r.header("x-3scale-matched-rules").as_deref(),
                Some("/prefix, /prefix/deep")
            );
            assert_eq!(
                r.header("x-3scale-usage").as_deref(),
                Some("usage%5Bprefix_m%5D=3")
            );
            assert_eq!(
                r.header("x-3scale-service-id").as_deref(),
                Some("svc-appid")
            );
            assert_eq!(r.header("x-3scale-plan").as_deref(), Some("Production"));
            let credentials = r.header("x-3scale-credentials").unwrap();
            assert!(
                credentials.starts_with("app_id=prod-app&app_key="),
                "{credentials}"
            );
            assert!(
                !credentials.contains("prod-key"),
                "the key is masked: {credentials}"
            );
            assert_eq!(w.last_received("production").header("x-3scale-debug"), None);
        },
    );
    case(cases, w, "debug headers on refusals too", || {
        let r = w.send(
            get("appid.test", "/items?app_id=prod-app&app_key=wrong")
                .header("x-3scale-debug", "tok-appid"),
        );
        assert_eq!(r.status, 403);
        assert_eq!(
            r.header("x-3scale-matched-rules").as_deref(),
            Some("/items")
        );
    });
    case(cases, w, "a wrong debug secret shows nothing", || {
        let r = w.send(
            get("appid.test", &format!("/items?{PROD}")).header("x-3scale-debug", "tok-appie"),
        );
        w.assert_allowed(&r, "production");
        assert_eq!(r.header("x-3scale-matched-rules"), None);
        assert_eq!(r.header("x-3scale-credentials"), None);
    });
    case(
        cases,
        w,
        "service, application and plan in the access log (filter state)",
        || {
            let r = w.send(get(
                "appid.test",
                &format!("/items?{PROD}&marker=accesslog"),
            ));
            w.assert_allowed(&r, "production");
            let line = w.access_log_line("marker=accesslog");
            assert!(
                line.contains(
                    "service=svc-appid app=prod-app plan=Production category=allowed usage="
                ),
                "{line}"
            );
            assert!(line.contains("get_items:1"), "{line}");
        },
    );
    case(
        cases,
        w,
        "a refusal's service and category in the access log",
        || {
            let r = w.send(get(
                "appid.test",
                "/items?app_id=prod-app&app_key=wrong&marker=refusedlog",
            ));
            w.assert_refused(&r, 403, "auth_failed");
            let line = w.access_log_line("marker=refusedlog");
            assert!(
                line.contains("403 service=svc-appid app=- plan=- category=auth_failed usage=-"),
                "{line}"
            );
        },
    );
    case(
        cases,
        w,
        "Envoy stats count decisions and backend calls",
        || {
            let before = w
                .stack
                .envoy
                .stat("wasmcustom.tollgate.denied.no_match")
                .unwrap_or(0);
            w.send(get("appid.test", &format!("/nothing?{PROD}")));
            let after = w
                .stack
                .envoy
                .stat("wasmcustom.tollgate.denied.no_match")
                .unwrap_or(0);
            assert_eq!(after, before + 1);
            assert!(
                w.stack
                    .envoy
                    .stat("wasmcustom.tollgate.allowed")
                    .unwrap_or(0)
                    > 0
            );
            assert!(
                w.stack
                    .envoy
                    .stat("wasmcustom.tollgate.backend.calls")
                    .unwrap_or(0)
                    > 0
            );
        },
    );
    case(cases, w, "secrets never appear in Envoy's log", || {
        let log = w.stack.envoy.log();
        for secret in [
            "prod-key",
            "tok-appid",
            "from-the-vm-environment",
            "upstream-secret",
        ] {
            assert!(!log.contains(secret), "{secret} in the log");
        }
    });
}

fn robustness(w: &World, cases: &mut Cases) {
    let next_request_works = || {
        w.fresh();
        let r = w.send(get("appid.test", &format!("/items?{PROD}")));
        w.assert_allowed(&r, "production");
    };
    case(
        cases,
        w,
        "non-UTF-8 bytes in every header Tollgate reads: no VM panic",
        || {
            let bytes = b"\xff\xfe\xc3(".as_slice();
            for header in [
                "x-app-id",
                "x-app-key",
                "authorization",
                "x-3scale-debug",
                "x-tollgate-cluster",
                "content-type",
            ] {
                let r = w.send(get("appid.test", "/items").header(header, bytes));
                assert!(r.status == 401 || r.status == 403, "{header}: {}", r.status);
            }
            let r = w.send(
                get("referrer.test", "/items?app_id=ref-app&app_key=ref-key")
                    .header("referer", bytes),
            );
            assert_eq!(r.status, 403, "a referrer 3scale cannot read is not sent");
            next_request_works();
        },
    );
    case(
        cases,
        w,
        "an oversized header value: refused, Envoy keeps serving",
        || {
            let huge = "k".repeat(60 * 1024);
            let r = w.send(get("appid.test", "/items").header("x-app-id", huge.as_str()));
            assert_eq!(r.status, 403, "{}", r.text());
            assert_eq!(w.calls("authrep"), 0);
            next_request_works();
        },
    );
    case(
        cases,
        w,
        "percent-encoded garbage in the query: refused, no panic",
        || {
            let r = w.send(get("appid.test", "/items?app_id=%ff%fe&app_key=%00"));
            assert_eq!(r.status, 403);
            next_request_works();
        },
    );
    case(
        cases,
        w,
        "the VM never panicked or reloaded during the whole table",
        || {
            assert_eq!(
                w.stack.envoy.stat("wasm.tollgate.vm_reload").unwrap_or(0),
                0,
                "vm reloads"
            );
            let log = w.stack.envoy.log();
            assert!(!log.contains("panicked"), "a panic in the log");
        },
    );
}

/// Envoy's log after it refused to load `config`.
fn refused_log(config: &Value) -> String {
    let template = std::fs::read_to_string(workspace_root().join(TEMPLATE)).unwrap();
    let yaml = render(
        &template,
        &[
            ("ADMIN_PORT", "0".into()),
            ("LISTEN_PORT", "0".into()),
            ("SIM_ADDRESS", "127.0.0.1".into()),
            ("SIM_PORT", "1".into()),
            ("STAGING_PORT", "1".into()),
            ("PRODUCTION_PORT", "1".into()),
            ("WASM_PATH", tollgate_e2e::wasm_path().display().to_string()),
            ("FILTER_CONFIG", yaml_string(&config.to_string())),
            ("ACCESS_LOG", "/dev/null".into()),
            (
                "JWKS_PATH",
                workspace_root()
                    .join("tests/fixtures/jwt/jwks.json")
                    .display()
                    .to_string(),
            ),
        ],
    );
    envoy_expect_rejected(&yaml)
}

#[test]
fn a_bad_configuration_is_refused_at_load_with_its_path() {
    let mut config = filter_config();
    config["services"][0]["mapping_rules"][2]["pattern"] = json!("/items/{id");
    let log = refused_log(&config);
    assert!(
        log.contains("tollgate: config error at services[0].mapping_rules[2].pattern: "),
        "Envoy's log does not name the path:\n{log}"
    );
}

/// A change to the filter configuration.
type Change = fn(&mut Value);

#[test]
fn settings_that_cannot_do_what_was_meant_are_refused_at_load() {
    let mut cases = Cases::new("refused settings");
    let changes: [(&str, Change); 7] = [
        ("headers.cluster", |c| {
            c["headers"] = json!({ "cluster": "host" })
        }),
        ("services[0].credentials.headers", |c| {
            c["headers"] = json!({ "app_id": "x-app-key" })
        }),
        ("services[0].mapping_rules[0].method", |c| {
            c["services"][0]["mapping_rules"][0]["method"] = json!("get")
        }),
        ("services[0].mapping_rules[0].method", |c| {
            c["services"][0]["mapping_rules"][0]["method"] = json!("FETCH")
        }),
        ("services[0].mapping_rules[0].delta", |c| {
            c["services"][0]["mapping_rules"][0]["delta"] = json!(9_223_372_036_854_775_808u64)
        }),
        ("services[0].mapping_rules[0].pattern", |c| {
            c["services"][0]["mapping_rules"][0]["pattern"] = json!("/a$b")
        }),
        ("services[0].errors.limits_exceeded.status", |c| {
            c["services"][0]["errors"] = json!({ "limits_exceeded": { "status": 200 } })
        }),
    ];
    for (n, (path, change)) in changes.into_iter().enumerate() {
        let mut config = filter_config();
        change(&mut config);
        let log = refused_log(&config);
        cases.case(&format!("{n}: {path}"), || {
            assert!(
                log.contains(&format!("tollgate: config error at {path}: ")),
                "Envoy's log does not name the path:\n{log}"
            );
        });
    }
    cases.finish();
}

#[test]
fn an_unknown_backend_cluster_is_a_loud_misconfiguration() {
    let mut config = filter_config();
    config["backend"]["cluster"] = json!("no_such_cluster");
    let stack = Stack::start(options(config));
    for _ in 0..3 {
        let r = stack.send(&get("appid.test", &format!("/items?{PROD}")));
        assert_eq!(r.status, 500, "{}", r.text());
        assert_eq!(r.json()["error"]["code"], "backend_misconfigured");
    }
    assert_eq!(
        stack
            .envoy
            .stat("wasmcustom.tollgate.backend.dispatch_failures"),
        Some(3)
    );
    let log = stack
        .envoy
        .wait_log("no_such_cluster", std::time::Duration::from_secs(5))
        .unwrap_or_default();
    assert_eq!(
        log.matches("no_such_cluster").count(),
        1,
        "logged once:\n{log}"
    );
    assert_eq!(
        stack.staging.received().len() + stack.production.received().len(),
        0
    );
}

/// Envoy's log from byte `start` on, once the lines of what happened since had time to be written.
fn log_after(stack: &Stack, start: usize) -> String {
    std::thread::sleep(Duration::from_secs(1));
    stack
        .envoy
        .log()
        .get(start..)
        .unwrap_or_default()
        .to_string()
}

#[test]
fn envoy_debug_logs_show_secrets_unless_http_and_router_stay_at_info() {
    let stack = Stack::start(options(filter_config()));
    let logging = |query: &str| {
        let r = tollgate_e2e::send(
            stack.envoy.admin_port,
            &Request::post(&format!("/logging?{query}")),
        )
        .unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
    };
    let secrets = ["tok-appid", "prod-key"];
    let leaked = |log: &str| -> Vec<&str> {
        secrets
            .iter()
            .copied()
            .filter(|s| log.contains(s))
            .collect()
    };
    // Envoy's log lines of one authorized request.
    let logged = || {
        let before = stack.envoy.log().len();
        let status = stack
            .send(&get("appid.test", &format!("/items?{PROD}")))
            .status;
        assert_eq!(status, 200);
        log_after(&stack, before)
    };
    let mut cases = Cases::new("what Envoy logs");
    logging("level=debug");
    let debug_log = logged();
    cases.case(
        "at debug level, Envoy itself prints the callout's path and the request's",
        || {
            assert_eq!(leaked(&debug_log), secrets, "{debug_log}");
        },
    );
    logging("http=info");
    logging("router=info");
    let quiet_log = logged();
    cases.case(
        "with http and router at info (everything else at debug), no secret",
        || {
            assert!(leaked(&quiet_log).is_empty(), "{quiet_log}");
            assert!(
                quiet_log.contains("[debug]"),
                "other components still log at debug: {quiet_log}"
            );
        },
    );
    cases.finish();
}
