//! `tollgate-config fetch` against the simulator playing the admin portal.

#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use common::{run_with_env, write};

/// tollgate-sim (built by `cargo build -p tollgate-sim`, as scripts/test does first) with a portal.
struct Portal {
    child: Child,
    url: String,
}

impl Drop for Portal {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn portal() -> Portal {
    let exe = std::env::current_exe().unwrap();
    let sim = exe.parent().unwrap().parent().unwrap().join("tollgate-sim");
    assert!(
        sim.is_file(),
        "{} missing: run `cargo build -p tollgate-sim` first",
        sim.display()
    );
    let rule = |pattern: &str| {
        format!(
            r#"{{"backend_version": "1", "backend_authentication_value": "tok", "proxy": {{"hosts": ["a.test"],
            "proxy_rules": [{{"http_method": "GET", "pattern": "{pattern}", "metric_system_name": "hits"}}]}}}}"#
        )
    };
    let seed = format!(
        r#"{{"services": [], "portal": {{"access_tokens": ["the-token"], "services": [
          {{"id": 16, "production": [{}, {}]}}, {{"id": 17, "production": [{}]}}]}}}}"#,
        rule("/v1"),
        rule("/v2"),
        rule("/")
    );
    let seed = write("seed.json", &seed);
    let mut child = Command::new(sim)
        .args([
            "--listen",
            "127.0.0.1:0",
            "--portal-listen",
            "127.0.0.1:0",
            "--seed",
            &seed,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    lines.next();
    let line = lines.next().unwrap().unwrap();
    let addr = line
        .strip_prefix("tollgate-sim portal listening on ")
        .unwrap()
        .to_string();
    std::thread::spawn(move || lines.for_each(drop));
    Portal {
        child,
        url: format!("http://{addr}"),
    }
}

#[test]
fn fetch_writes_an_export_recording_each_version() {
    let portal = portal();
    let out = write("fetched.json", "");
    let token = [("THREESCALE_PORTAL_TOKEN", "the-token")];
    let (code, stdout, stderr) = run_with_env(&["fetch", &portal.url, "-o", &out], &token);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("service 16 production v2\nservice 17 production v1"),
        "{stderr}"
    );
    assert_eq!(stdout, "valid: 2 service(s)\n");
    let export: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert_eq!(export["proxy_configs"][0]["proxy_config"]["version"], 2);

    // A pinned version, then what changed between the two files.
    let pinned = write("pinned.json", "");
    let (code, _, stderr) = run_with_env(
        &["fetch", &portal.url, "--service", "16@1", "-o", &pinned],
        &token,
    );
    assert_eq!(code, 0, "{stderr}");
    let (_, diff, _) = run_with_env(&["diff", &out, &pinned], &[]);
    assert!(
        diff.contains("service 16: - rule GET /v2 -> hits +1"),
        "{diff}"
    );
    assert!(diff.contains("- service 17"), "{diff}");
}

#[test]
fn fetch_fails_clearly() {
    let portal = portal();
    let token = [("THREESCALE_PORTAL_TOKEN", "wrong")];
    let (code, _, stderr) = run_with_env(&["fetch", &portal.url], &token);
    assert_eq!(code, 1);
    assert!(stderr.contains("the portal answered 403"), "{stderr}");
    let token = [("THREESCALE_PORTAL_TOKEN", "the-token")];
    let (code, _, stderr) = run_with_env(&["fetch", &portal.url, "--service", "16@9"], &token);
    assert_eq!(code, 1);
    assert!(stderr.contains("404"), "{stderr}");
    let (code, _, stderr) = run_with_env(&["fetch", &portal.url], &[]);
    assert_eq!(code, 2);
    assert!(stderr.contains("THREESCALE_PORTAL_TOKEN"), "{stderr}");
    assert!(!stderr.contains("the-token"));
}
