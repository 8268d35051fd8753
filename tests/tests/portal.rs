//! The configuration from the 3scale admin portal, in the real Envoy against the simulator's portal:
//! boot from the portal, new versions picked up by every worker, an invalid version rejected while
//! the others update, the portal failing at boot and mid-run, paging, and secrets kept out of logs
//! and `/config_dump`.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use tollgate_e2e::{
    Envoy, EnvoyOptions, Request, Response, Scratch, Sim, Upstream, free_port, render, send,
    sim_binary, wait_until, wasm_path, workspace_root, yaml_string,
};

const TOKEN: &str = "portal-secret-token";
const WAIT: Duration = Duration::from_secs(20);

/// A service's `content` as the portal publishes it: user_key in the query, one rule.
fn content(id: u64, pattern: &str) -> Value {
    json!({
        "backend_version": "1",
        "backend_authentication_type": "service_token",
        "backend_authentication_value": format!("svc-token-{id}"),
        "proxy": {
            "hosts": [format!("s{id}.test")],
            "credentials_location": "query",
            "proxy_rules": [{"http_method": "GET", "pattern": pattern, "metric_system_name": "hits", "delta": 1}]
        }
    })
}

/// The backend's seed: every service with its token and one application (`key-<id>`).
fn backend_seed(ids: &[u64]) -> Value {
    let services: Vec<Value> = ids
        .iter()
        .map(|id| {
            json!({
                "id": id.to_string(), "provider_key": "pk", "backend_version": "1",
                "service_tokens": [format!("svc-token-{id}")],
                "metrics": [{"name": "hits"}],
                "plans": [{"id": "basic", "name": "Basic"}],
                "applications": [{"id": format!("app-{id}"), "plan": "basic", "user_key": format!("key-{id}")}]
            })
        })
        .collect();
    json!({"services": services})
}

fn portal_seed(ids: &[u64]) -> Value {
    let services: Vec<Value> = ids
        .iter()
        .map(|id| json!({"id": id, "production": [content(*id, "/v1")]}))
        .collect();
    json!({"services": [], "portal": {"access_tokens": [TOKEN], "services": services}})
}

/// The simulator playing the portal, on a known port; killed on drop.
struct Portal {
    port: u16,
    control: u16,
    child: Child,
}

impl Portal {
    fn start(port: u16, seed: &Path) -> Portal {
        let control = free_port();
        let child = Command::new(sim_binary())
            .args(["--listen", &format!("127.0.0.1:{control}")])
            .args(["--portal-listen", &format!("127.0.0.1:{port}")])
            .arg("--seed")
            .arg(seed)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let portal = Portal {
            port,
            control,
            child,
        };
        wait_until(Duration::from_secs(10), Duration::from_millis(20), || {
            send(portal.control, &Request::get("/status"))
                .ok()
                .filter(|r| r.status == 200)
        })
        .expect("the portal simulator did not start");
        portal
    }

    fn publish(&self, id: u64, content: &Value) -> u64 {
        let path =
            format!("/_sim/portal/services/{id}/proxy/configs/production?access_token={TOKEN}");
        let r = send(self.port, &Request::post(&path).json(content)).unwrap();
        assert_eq!(r.status, 201, "{}", r.text());
        r.json()["proxy_config"]["version"].as_u64().unwrap()
    }

    fn fault(&self, fault: &Value) {
        let r = send(self.control, &Request::put("/_sim/faults").json(fault)).unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
    }

    fn clear_faults(&self) {
        send(self.control, &Request::delete("/_sim/faults")).unwrap();
    }
}

impl Drop for Portal {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct World {
    envoy: Envoy,
    _backend: Sim,
    _upstream: Upstream,
    scratch: Scratch,
    /// The listener's template variables but the filter configuration.
    listener_vars: Vec<(&'static str, String)>,
}

fn filter_config(refresh_ms: u64) -> Value {
    json!({
        "backend": {"cluster": "threescale_backend", "authority": "backend.test"},
        "portal": {
            "cluster": "portal", "authority": "portal.test",
            "access_token": {"env": "TOLLGATE_TEST_PORTAL_TOKEN"},
            "environment": "production", "refresh_interval_ms": refresh_ms, "timeout_ms": 1000
        }
    })
}

fn start(ids: &[u64], portal_port: u16, concurrency: u32, log_level: &str) -> World {
    let scratch = Scratch::new("portal-e2e");
    let backend_seed = scratch.write("backend.json", backend_seed(ids).to_string());
    let backend = Sim::start(&backend_seed);
    let upstream = Upstream::start("production");
    let listener_vars = vec![
        ("LISTEN_PORT", free_port().to_string()),
        ("WASM_PATH", wasm_path().display().to_string()),
    ];
    write_listener(&scratch, &listener_vars, &filter_config(300));
    let template =
        std::fs::read_to_string(workspace_root().join("tests/e2e/portal.template.yaml")).unwrap();
    let yaml = render(
        &template,
        &[
            ("ADMIN_PORT", "0".into()),
            ("SIM_ADDRESS", backend.address().ip().to_string()),
            ("SIM_PORT", backend.port.to_string()),
            ("PRODUCTION_PORT", upstream.port.to_string()),
            ("PORTAL_PORT", portal_port.to_string()),
            (
                "LDS_PATH",
                scratch.path().join("lds.yaml").display().to_string(),
            ),
        ],
    );
    let envoy = Envoy::start_with(
        &yaml,
        &EnvoyOptions {
            concurrency,
            log_level: log_level.into(),
            env: vec![("TOLLGATE_TEST_PORTAL_TOKEN".into(), TOKEN.into())],
            ..EnvoyOptions::default()
        },
    );
    World {
        envoy,
        _backend: backend,
        _upstream: upstream,
        scratch,
        listener_vars,
    }
}

/// Writes the listener (LDS) with `config` as the filter's configuration; replaced atomically, as
/// Envoy's file watcher expects.
fn write_listener(scratch: &Scratch, vars: &[(&str, String)], config: &Value) {
    let path = workspace_root().join("tests/e2e/portal-listener.template.yaml");
    let template = std::fs::read_to_string(path).unwrap();
    let mut vars = vars.to_vec();
    vars.push(("FILTER_CONFIG", yaml_string(&config.to_string())));
    let written = scratch.write("lds.next.yaml", render(&template, &vars));
    std::fs::rename(written, scratch.path().join("lds.yaml")).unwrap();
}

impl World {
    /// A configuration update through Envoy: the filter's new configuration.
    fn configure(&self, config: &Value) {
        write_listener(&self.scratch, &self.listener_vars, config);
    }

    /// GET on a new connection (so that both workers serve some).
    fn get(&self, id: u64, path: &str) -> Response {
        let request = Request::get(&format!("{path}?user_key=key-{id}"))
            .header("host", format!("s{id}.test"))
            .header("connection", "close");
        send(self.envoy.listen_port, &request).unwrap()
    }

    /// Waits until `id`'s `path` is answered `status` (the portal's change arrived).
    fn wait_status(&self, id: u64, path: &str, status: u16) {
        let arrived = wait_until(WAIT, Duration::from_millis(50), || {
            (self.get(id, path).status == status).then_some(())
        });
        assert!(
            arrived.is_some(),
            "service {id} {path} never answered {status}; last: {} {}\n{}",
            self.get(id, path).status,
            self.get(id, path).text(),
            tail(&self.envoy.log())
        );
    }

    /// Waits until one worker serves the change, then gives every worker a few ticks (200 ms each)
    /// to switch too: `n` requests on new connections then all answer `status`.
    fn wait_everywhere(&self, n: usize, id: u64, path: &str, status: u16) {
        self.wait_status(id, path, status);
        std::thread::sleep(Duration::from_millis(1000));
        self.all(n, id, path, status);
    }

    /// Every one of `n` requests (new connections) answers `status`.
    fn all(&self, n: usize, id: u64, path: &str, status: u16) {
        for _ in 0..n {
            let r = self.get(id, path);
            assert_eq!(r.status, status, "service {id} {path}: {}", r.text());
        }
    }

    fn stat(&self, name: &str) -> u64 {
        self.envoy
            .stat(&format!("wasmcustom.tollgate.{name}"))
            .unwrap_or(0)
    }
}

fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

fn seed_file(scratch: &Scratch, seed: &Value) -> std::path::PathBuf {
    scratch.write("portal.json", seed.to_string())
}

#[test]
fn follows_the_portal_across_versions_workers_and_failures() {
    if tollgate_e2e::skip_without_simulator("admin portal") {
        return;
    }
    let scratch = Scratch::new("portal-seed");
    let seed = seed_file(&scratch, &portal_seed(&[16, 17]));
    let portal = Portal::start(free_port(), &seed);
    let world = start(&[16, 17], portal.port, 2, "debug");

    // Boot from the portal.
    world.wait_everywhere(10, 16, "/v1", 200);
    world.all(10, 17, "/v1", 200);
    assert_eq!(world.stat("portal.service.16.version"), 1);

    // A new version reaches every worker: the request that was no_match passes.
    assert_eq!(world.get(16, "/v2").status, 404);
    assert_eq!(portal.publish(16, &content(16, "/v2")), 2);
    world.wait_everywhere(20, 16, "/v2", 200);
    world.all(10, 16, "/v1", 404);
    world
        .envoy
        .wait_log("tollgate: service 16 production v1 -> v2", WAIT)
        .expect("the change is logged");

    // An invalid version of 16 is rejected; 17 still updates.
    let mut invalid = content(16, "/v3");
    invalid["proxy"]["proxy_rules"][0]["pattern"] = json!("no-leading-slash");
    assert_eq!(portal.publish(16, &invalid), 3);
    assert_eq!(portal.publish(17, &content(17, "/new")), 2);
    world.wait_everywhere(10, 17, "/new", 200);
    world.all(10, 16, "/v2", 200);
    let log = world
        .envoy
        .wait_log("service 16 production v3 rejected", WAIT)
        .expect("the rejection is logged");
    assert_eq!(
        log.matches("service 16 production v3 rejected").count(),
        1,
        "{}",
        tail(&log)
    );
    assert!(world.stat("portal.rejections") >= 1);
    assert_eq!(world.stat("portal.service.16.version"), 2);
    assert_eq!(world.stat("portal.service.17.version"), 2);

    // The portal failing mid-run: the last good configuration keeps serving, then it catches up.
    let errors = world.stat("portal.errors");
    portal.fault(&json!({"endpoint": "portal", "status": 503}));
    wait_until(WAIT, Duration::from_millis(50), || {
        (world.stat("portal.errors") > errors).then_some(())
    })
    .expect("portal errors counted");
    world.all(5, 16, "/v2", 200);
    portal.fault(&json!({"endpoint": "portal", "garbage": true}));
    let errors = world.stat("portal.errors");
    wait_until(WAIT, Duration::from_millis(50), || {
        (world.stat("portal.errors") > errors).then_some(())
    })
    .expect("garbage counted as an error");
    world.all(5, 17, "/new", 200);
    portal.clear_faults();
    assert_eq!(portal.publish(16, &content(16, "/v4")), 4);
    world.wait_status(16, "/v4", 200);
    assert!(world.stat("portal.fetches") >= 3);

    // Secrets: the access token nowhere in Envoy's debug log (it travels as HTTP Basic), and the
    // service tokens in none of Tollgate's lines. (Envoy's router prints every callout's path at
    // debug level, and apisonator's protocol puts the service token in the authorization's query.)
    let log = world.envoy.log();
    assert!(log.contains("[debug]"), "the log is at debug level");
    assert!(!log.contains(TOKEN), "the access token in Envoy's log");
    let tollgate_lines: Vec<&str> = log.lines().filter(|l| l.contains("wasm log")).collect();
    assert!(tollgate_lines.iter().any(|l| l.contains("v1 -> v2")));
    for secret in ["svc-token-16", "svc-token-17"] {
        assert!(
            !tollgate_lines.iter().any(|l| l.contains(secret)),
            "{secret} in Tollgate's log"
        );
    }
    let dump = world.envoy.admin_get("/config_dump").text();
    assert!(dump.contains("TOLLGATE_TEST_PORTAL_TOKEN"));
    assert!(!dump.contains(TOKEN), "the access token in /config_dump");
}

#[test]
fn the_portal_down_at_boot_answers_config_unavailable_until_it_comes() {
    if tollgate_e2e::skip_without_simulator("admin portal") {
        return;
    }
    let port = free_port();
    let world = start(&[16], port, 1, "warn");
    let r = world.get(16, "/v1");
    assert_eq!(r.status, 503, "{}", r.text());
    let body: Value = serde_json::from_str(&r.text()).unwrap();
    assert_eq!(body["error"]["code"], "config_unavailable");
    wait_until(WAIT, Duration::from_millis(50), || {
        (world.stat("portal.errors") >= 1).then_some(())
    })
    .expect("the failed fetch is counted");
    let scratch = Scratch::new("portal-seed");
    let _portal = Portal::start(port, &seed_file(&scratch, &portal_seed(&[16])));
    world.wait_status(16, "/v1", 200);
}

#[test]
fn pages_through_1200_services() {
    if tollgate_e2e::skip_without_simulator("admin portal") {
        return;
    }
    let ids: Vec<u64> = (1000..2200).collect();
    let scratch = Scratch::new("portal-seed");
    let portal = Portal::start(free_port(), &seed_file(&scratch, &portal_seed(&ids)));
    let world = start(&ids, portal.port, 1, "warn");
    world.wait_status(2199, "/v1", 200);
    world.all(1, 1000, "/v1", 200);
    world.all(1, 1700, "/v1", 200);
    assert_eq!(world.stat("portal.service.2199.version"), 1);
}

#[test]
fn a_pin_rolls_back_and_a_missing_version_keeps_the_current_one() {
    if tollgate_e2e::skip_without_simulator("admin portal") {
        return;
    }
    let scratch = Scratch::new("portal-seed");
    let mut seed = portal_seed(&[16]);
    seed["portal"]["services"][0]["production"] = json!([content(16, "/v1"), content(16, "/v2")]);
    let portal = Portal::start(free_port(), &seed_file(&scratch, &seed));
    let world = start(&[16], portal.port, 2, "warn");
    world.wait_status(16, "/v2", 200);

    // Pin to the older version: a configuration update through Envoy rolls the service back.
    let mut pinned = filter_config(300);
    pinned["portal"]["versions"] = json!({"16": 1});
    world.configure(&pinned);
    world.wait_everywhere(10, 16, "/v1", 200);
    world.all(10, 16, "/v2", 404);
    world
        .envoy
        .wait_log("service 16 production v2 -> v1", WAIT)
        .expect("the rollback is logged");

    // A pin to a version the portal does not have: an error, and v1 keeps serving.
    let rejections = world.stat("portal.rejections");
    pinned["portal"]["versions"] = json!({"16": 9});
    world.configure(&pinned);
    world
        .envoy
        .wait_log("service 16 production has no version 9", WAIT)
        .expect("the missing pin is logged");
    assert!(world.stat("portal.rejections") > rejections);
    world.all(10, 16, "/v1", 200);

    // Back to latest.
    pinned["portal"]["versions"] = json!({"16": "latest"});
    world.configure(&pinned);
    world.wait_status(16, "/v2", 200);
    drop(portal);
}
