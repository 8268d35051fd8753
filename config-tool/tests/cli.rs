//! `tollgate-config`'s commands: their output and exit statuses.

#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

mod common;

use common::{run, run_with_env, write};

const NATIVE: &str = r#"{"backend": {"cluster": "3scale"}, "services": [{"id": "a",
  "service_token": {"env": "A_TOKEN"}, "credentials": {"kind": "user_key"},
  "mapping_rules": [{"method": "GET", "pattern": "/", "metric": "hits"}]}]}"#;

fn export(pattern: &str, status: u16) -> String {
    format!(
        r#"{{"proxy_configs": [{{"proxy_config": {{"id": 1, "version": 3, "environment": "production",
        "content": {{"id": 16, "backend_version": "1", "backend_authentication_value": "secret-token",
        "proxy": {{"error_status_no_match": {status}, "policy_chain": [{{"name": "cors"}}],
        "proxy_rules": [{{"http_method": "GET", "pattern": "{pattern}", "metric_system_name": "hits"}}]}}}}}}}}]}}"#
    )
}

#[test]
fn help_documents_every_command() {
    let (code, out, _) = run(&["--help"]);
    assert_eq!(code, 0);
    for command in [
        "validate FILE",
        "convert FILE",
        "diff OLD NEW",
        "Exit status",
    ] {
        assert!(out.contains(command), "{command} missing");
    }
    let (code, _, err) = run(&["frobnicate"]);
    assert_eq!(code, 2);
    assert!(err.contains("Usage:"));
}

#[test]
fn validate_gives_the_module_message_and_exit_status() {
    let file = write("native.json", NATIVE);
    let (code, _, err) = run(&["validate", &file]);
    assert_eq!(code, 1);
    assert!(
        err.ends_with("config error at services[0].service_token: environment variable `A_TOKEN` is not set in the VM (vm_config.environment_variables)\n"),
        "{err}"
    );
    let (code, out, _) = run_with_env(&["validate", &file], &[("A_TOKEN", "t")]);
    assert_eq!((code, out.as_str()), (0, "valid: 1 service(s)\n"));
    let bad = write("bad.json", &export("no-slash", 404));
    let (code, _, err) = run(&["validate", &bad]);
    assert_eq!(code, 1);
    assert!(
        err.contains("config error at apicast.config.proxy_configs[0].proxy_config.content.proxy.proxy_rules[0].pattern: "),
        "{err}"
    );
    let (code, _, _) = run(&["validate", "/nonexistent/file.json"]);
    assert_eq!(code, 2);
}

#[test]
fn validate_warns_per_service_and_never_prints_secrets() {
    let file = write("export.json", &export("/", 404));
    let (code, out, err) = run(&["validate", &file]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "valid: 1 service(s)\n");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("warning: service 16") && err.contains("policy `cors`"));
    assert!(!err.contains("secret-token"));
}

#[test]
fn convert_prints_tollgate_json_that_validates_the_same() {
    let file = write("export.json", &export("/orders", 404));
    let (code, out, _) = run(&["convert", &file]);
    assert_eq!(code, 0);
    let document: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        document["services"][0]["mapping_rules"][0]["pattern"],
        "/orders"
    );
    assert_eq!(document["services"][0]["errors"]["no_match"]["status"], 404);
    let converted = write("converted.json", &out);
    let (code, out, err) = run(&["validate", &converted]);
    assert_eq!(
        (code, out.as_str(), err.as_str()),
        (0, "valid: 1 service(s)\n", "")
    );
    let (code, out, _) = run(&["diff", &file, &converted]);
    assert_eq!(code, 0);
    assert_eq!(
        out,
        "no change in services, mapping rules, credentials or error replies\n"
    );
}

#[test]
fn diff_names_rule_credential_and_error_changes() {
    let old = write("old.json", &export("/orders", 404));
    let new = write(
        "new.json",
        &export("/orders/{id}", 412)
            .replace(r#""backend_version": "1""#, r#""backend_version": "2""#),
    );
    let (code, out, _) = run(&["diff", &old, &new]);
    assert_eq!(code, 0);
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines.contains(&"service 16: - rule GET /orders -> hits +1"),
        "{out}"
    );
    assert!(
        lines.contains(&"service 16: + rule GET /orders/{id} -> hits +1"),
        "{out}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("service 16: credentials [user_key in query,form")),
        "{out}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("service 16: error no_match: 404") && l.contains("-> 412")),
        "{out}"
    );
    let native = write("native.json", NATIVE);
    let (code, out, _) = run_with_env(&["diff", &old, &native], &[("A_TOKEN", "t")]);
    assert_eq!(code, 0);
    assert_eq!(out, "+ service a\n- service 16\n");
}
