//! The process (command line, listening line, signals, logging) and the `/_sim/` API: call
//! counters, the request log, usage and response codes, reset and the clock.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use serde_json::json;
use support::{OTHER, REFERENCE, Sim, seed_path};

#[test]
fn listens_on_a_free_port_and_exits_cleanly_on_sigterm() {
    let sim = Sim::start(Some("demo.json"));
    assert!(sim.addr.starts_with("127.0.0.1:") && sim.port() != 0);
    assert_eq!(sim.get("/status").status, 200);
    let status = sim.terminate();
    assert!(status.success(), "{status:?}");
}

#[test]
fn exits_cleanly_on_sigint_too() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tollgate-sim"))
        .args(["--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.starts_with("tollgate-sim listening on 127.0.0.1:"));
    Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(child.wait().unwrap().success());
}

#[test]
fn listens_on_the_port_it_is_given() {
    let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = probe.local_addr().unwrap().port();
    drop(probe);
    let mut child = Command::new(env!("CARGO_BIN_EXE_tollgate-sim"))
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(
        line.trim(),
        format!("tollgate-sim listening on 127.0.0.1:{port}")
    );
    let r = support::send(&format!("127.0.0.1:{port}"), "GET", "/status", &[], None).unwrap();
    assert_eq!(r.status, 200);
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn bad_command_lines_and_seeds_exit_with_2() {
    let dir = std::env::temp_dir().join(format!("tollgate-sim-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let broken = dir.join("broken.json");
    std::fs::write(
        &broken,
        r#"{"services":[{"id":"s","provider_key":"p","backend_version":"7"}]}"#,
    )
    .unwrap();
    let cases: Vec<Vec<String>> = vec![
        vec![],
        vec!["--listen".into(), "not-an-address".into()],
        vec!["--listen".into(), "127.0.0.1:0".into(), "--surprise".into()],
        vec![
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--seed".into(),
            "/no/such/seed.json".into(),
        ],
        vec![
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--seed".into(),
            broken.display().to_string(),
        ],
    ];
    for args in cases {
        let out = Command::new(env!("CARGO_BIN_EXE_tollgate-sim"))
            .args(&args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("tollgate-sim"),
            "{args:?}"
        );
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn debug_logging_writes_one_line_per_request() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tollgate-sim"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--log-level",
            "debug",
            "--seed",
            &seed_path("other.json"),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line.trim().rsplit(' ').next().unwrap().to_owned();
    for target in [
        "/status",
        "/transactions/authorize.xml?service_token=acme-token-widgets&service_id=4242&app_id=widget-keyless",
        "/nope",
    ] {
        support::send(&addr, "GET", target, &[], None).unwrap();
    }
    child.kill().unwrap();
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    child.wait().unwrap();
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 3, "{stderr}");
    assert!(lines[0].contains("GET /status -> 200"));
    assert!(
        lines[1].contains("GET /transactions/authorize.xml?service_token=acme-token-widgets")
            && lines[1].contains("-> 200")
    );
    assert!(lines[2].contains("GET /nope -> 404"));
    // Quiet by default.
    let mut child = Command::new(env!("CARGO_BIN_EXE_tollgate-sim"))
        .args(["--listen", "127.0.0.1:0"])
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    support::send(
        line.trim().rsplit(' ').next().unwrap(),
        "GET",
        "/status",
        &[],
        None,
    )
    .unwrap();
    child.kill().unwrap();
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    child.wait().unwrap();
    assert!(stderr.is_empty(), "{stderr}");
}

#[test]
fn call_counters() {
    let f = &OTHER;
    let sim = f.start();
    sim.get(&f.url("authrep", f.all_app, f.all_key, "&usage%5Brequests%5D=1"));
    sim.get(&f.url("authrep", "nope", None, ""));
    sim.get(&f.url("authorize", f.all_app, f.all_key, ""));
    sim.get("/transactions/oauth_authrep.xml?service_token=acme-token-oidc&service_id=acme-oidc&app_id=acme-client");
    sim.get("/transactions/oauth_authorize.xml?service_token=acme-token-oidc&service_id=acme-oidc&app_id=acme-client");
    sim.post_form("/transactions.xml", "service_token=acme-token-widgets&service_id=4242&transactions[0][app_id]=widget-app-2&transactions[0][usage][requests]=1");
    sim.get("/transactions/authrep.xml?usage=%zz");
    sim.get("/check.txt");
    sim.get("/nope");
    // Internal and /_sim/ calls are not public: not counted.
    sim.get("/internal/services/4242/errors/");
    let (_, calls) = sim.json("GET", "/_sim/calls", "");
    assert_eq!(
        calls["total"],
        json!({"authorize": 1, "authrep": 3, "oauth_authorize": 1, "oauth_authrep": 1, "report": 1, "status": 1, "other": 2, "faulted": 0})
    );
    assert_eq!(
        calls["services"]["4242"],
        json!({"authorize": 1, "authrep": 2, "oauth_authorize": 0, "oauth_authrep": 0, "report": 1, "status": 0, "other": 0})
    );
    assert_eq!(calls["services"]["acme-oidc"]["oauth_authrep"], 1);
    assert_eq!(calls["services"]["acme-oidc"]["oauth_authorize"], 1);
}

#[test]
fn request_log_shows_what_was_sent() {
    let sim = Sim::start(Some("reference.json"));
    let target = "/transactions/authrep.xml?service_token=tok1&service_id=svc1&user_key=ukey1&usage%5Bhits%5D=2";
    let options = "rejection_reason_header=1&limit_headers=1&no_body=1";
    let r = sim.request(
        "GET",
        target,
        &[("3scale-options", options), ("User-Agent", "Tollgate/test")],
        None,
    );
    assert_eq!(r.status, 200);
    sim.post_form("/transactions.xml", "service_token=tok1&service_id=svc1&transactions%5B0%5D%5Bapp_id%5D=app1&transactions%5B0%5D%5Busage%5D%5Bhits%5D=1&bin=%FF");
    let (status, log) = sim.json("GET", "/_sim/requests", "");
    assert_eq!(status, 200);
    let entries = log.as_array().unwrap();
    assert_eq!(
        entries.len(),
        3,
        "the readiness /status poll, the authrep, the report"
    );
    let authrep = &entries[1];
    assert_eq!(authrep["method"], "GET");
    assert_eq!(authrep["path"], "/transactions/authrep.xml");
    assert_eq!(
        authrep["query"],
        "service_token=tok1&service_id=svc1&user_key=ukey1&usage%5Bhits%5D=2"
    );
    assert_eq!(authrep["headers"]["3scale-options"], options);
    assert_eq!(authrep["headers"]["user-agent"], "Tollgate/test");
    assert_eq!(authrep["body"], "");
    assert_eq!(authrep["status"], 200);
    let report = &entries[2];
    assert_eq!(
        (report["method"].as_str(), report["status"].as_i64()),
        (Some("POST"), Some(202))
    );
    assert!(report["body"].as_str().unwrap().ends_with("&bin=%FF"));
    let (_, last) = sim.json("GET", "/_sim/requests?limit=1", "");
    assert_eq!(last.as_array().unwrap().len(), 1);
    assert_eq!(last[0]["path"], "/transactions.xml");
    assert_eq!(sim.json("GET", "/_sim/requests?limit=x", "").0, 400);
}

#[test]
fn usage_and_response_codes_endpoints() {
    let f = &REFERENCE;
    let sim = f.start();
    sim.get("/transactions/authrep.xml?service_token=tok1&service_id=svc1&app_id=app1&app_key=key1&usage%5Bget_hello%5D=2&log%5Bcode%5D=404");
    let (status, usage) = sim.json("GET", "/_sim/services/svc1/applications/app1/usage", "");
    assert_eq!(status, 200);
    let two =
        json!({"minute": 2, "hour": 2, "day": 2, "week": 2, "month": 2, "year": 2, "eternity": 2});
    let zero =
        json!({"minute": 0, "hour": 0, "day": 0, "week": 0, "month": 0, "year": 0, "eternity": 0});
    assert_eq!(
        usage,
        json!({"metrics": {"hits": two, "get_hello": two, "disabled_m": zero, "unlimited_m": zero}})
    );
    let (_, codes) = sim.json(
        "GET",
        "/_sim/services/svc1/applications/app1/response_codes",
        "",
    );
    assert_eq!(codes, json!({"codes": {"404": 1, "4XX": 1}}));
    for path in [
        "/_sim/services/nope/applications/app1/usage",
        "/_sim/services/svc1/applications/nope/usage",
        "/_sim/services/nope/applications/app1/response_codes",
    ] {
        let (status, v) = sim.json("GET", path, "");
        assert_eq!(
            (status, v["status"].as_str()),
            (404, Some("not_found")),
            "{path}"
        );
    }
    assert_eq!(sim.json("GET", "/_sim/nothing", "").0, 404);
}

#[test]
fn reset_zeroes_state_but_keeps_configuration() {
    let f = &OTHER;
    let sim = f.start();
    sim.get(&f.url(
        "authrep",
        f.all_app,
        f.all_key,
        "&usage%5Brequests%5D=1&log%5Bcode%5D=200",
    ));
    sim.post_form("/transactions.xml", "service_token=acme-token-widgets&service_id=4242&transactions[0][app_id]=nope&transactions[0][usage][requests]=1");
    sim.json(
        "PUT",
        "/_sim/faults",
        r#"{"endpoint":"report","status":503}"#,
    );
    // Configuration created through the internal API survives too.
    sim.json(
        "POST",
        "/internal/services/4242/applications/late-app",
        r#"{"application":{"state":"active","plan_id":"free-for-all","plan_name":"Late"}}"#,
    );
    assert_eq!(sim.errors("4242")["count"], 1);
    let (status, _) = sim.json("POST", "/_sim/reset", "");
    assert_eq!(status, 200);
    assert_eq!(sim.usage_in("4242", f.all_app, "requests", "eternity"), 0);
    let (_, codes) = sim.json(
        "GET",
        &format!(
            "/_sim/services/4242/applications/{}/response_codes",
            f.all_app
        ),
        "",
    );
    assert_eq!(codes, json!({"codes": {}}));
    assert_eq!(sim.errors("4242")["count"], 0);
    let (_, faults) = sim.json("GET", "/_sim/faults", "");
    assert_eq!(faults, json!({"faults": []}));
    let (_, requests) = sim.json("GET", "/_sim/requests", "");
    assert_eq!(requests, json!([]));
    let (_, calls) = sim.json("GET", "/_sim/calls", "");
    assert_eq!(calls["total"]["authrep"], 0);
    assert_eq!(calls["services"], json!({}));
    // Seeded and created configuration still answers.
    assert_eq!(
        sim.get(&f.url("authrep", f.all_app, f.all_key, "&usage%5Brequests%5D=1"))
            .status,
        200
    );
    let r = sim.get("/transactions/authorize.xml?service_token=acme-token-widgets&service_id=4242&app_id=late-app");
    assert!(r.text().contains("<plan>Late</plan>"));
    assert_eq!(sim.post_form("/transactions.xml", "service_token=acme-token-widgets&service_id=4242&transactions[0][app_id]=late-app&transactions[0][usage][requests]=1").status, 202);
}

#[test]
fn clock_endpoint() {
    let sim = Sim::start(None);
    let (status, clock) = sim.json("PUT", "/_sim/clock", r#"{"now":"2027-06-30 23:59:58"}"#);
    assert_eq!(
        (status, clock["now"].as_str(), clock["frozen"].as_bool()),
        (200, Some("2027-06-30 23:59:58 +0000"), Some(true))
    );
    let (_, clock) = sim.json("PUT", "/_sim/clock", r#"{"advance_s":2}"#);
    assert_eq!(clock["now"], "2027-07-01 00:00:00 +0000");
    let (_, clock) = sim.json("PUT", "/_sim/clock", r#"{"now":0,"advance_s":60}"#);
    assert_eq!(
        (clock["now"].as_str(), clock["epoch"].as_i64()),
        (Some("1970-01-01 00:01:00 +0000"), Some(60))
    );
    let (_, clock) = sim.json("GET", "/_sim/clock", "");
    assert_eq!(clock["epoch"], 60);
    for bad in [
        "{}",
        r#"{"now":"tomorrow"}"#,
        r#"{"now":1.5}"#,
        r#"{"advance_s":"x"}"#,
        "nope",
    ] {
        assert_eq!(sim.json("PUT", "/_sim/clock", bad).0, 400, "{bad}");
    }
    let (_, clock) = sim.json("DELETE", "/_sim/clock", "");
    assert_eq!(clock["frozen"], false);
    assert!(clock["epoch"].as_i64().unwrap() > 1_700_000_000);
}

#[test]
fn seed_into_loads_a_seed_through_the_internal_api() {
    for seed in ["demo.json", "reference.json", "other.json"] {
        let seeded = Sim::start(Some(seed));
        let empty = Sim::start(None);
        let out = Command::new(env!("CARGO_BIN_EXE_tollgate-sim"))
            .args([
                "seed",
                "--into",
                &format!("http://{}", empty.addr),
                &seed_path(seed),
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains("internal API calls"));
        // Both answer every service's applications alike: the internal API built the same backend.
        let text = std::fs::read_to_string(seed_path(seed)).unwrap();
        let parsed: serde_json::Value = serde_json::from_str(&text).unwrap();
        for service in parsed["services"].as_array().unwrap() {
            let sid = service["id"].as_str().unwrap();
            for app in service["applications"].as_array().unwrap() {
                let id = app["id"].as_str().unwrap();
                let path = format!("/internal/services/{sid}/applications/{id}/utilization/");
                assert_eq!(
                    empty.get(&path).text(),
                    seeded.get(&path).text(),
                    "{seed} {sid} {id}"
                );
                let path = format!("/internal/services/{sid}/applications/{id}/keys/");
                assert_eq!(
                    empty.get(&path).text(),
                    seeded.get(&path).text(),
                    "{seed} {sid} {id}"
                );
            }
        }
    }
    let bad = Command::new(env!("CARGO_BIN_EXE_tollgate-sim"))
        .args(["seed", "--into", "https://example.invalid", "x.json"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(1));
}
