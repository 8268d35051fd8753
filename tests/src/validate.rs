//! Validators for the files shipped to users, run by the tests: YAML read with PyYAML, Istio resources checked with
//! check-jsonschema against schemas derived from Istio's CRDs, Kubernetes objects with kubernetes-validate. All three
//! live in the project's `.venv`, where `scripts/setup` installs them.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::paths::workspace_root;
use crate::scratch::Scratch;

/// A program of the project's `.venv`.
pub fn venv_bin(name: &str) -> PathBuf {
    workspace_root().join(".venv/bin").join(name)
}

/// Every document of a YAML stream, as JSON values (empty documents left out). Panics on YAML that does not parse.
pub fn yaml_documents(yaml: &str) -> Vec<Value> {
    const TO_JSON: &str = "import json, sys, yaml\n\
        print(json.dumps([d for d in yaml.safe_load_all(sys.stdin) if d is not None]))";
    let mut child = Command::new(venv_bin("python"))
        .args(["-c", TO_JSON])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run .venv/bin/python (scripts/setup creates it): {e}"));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(yaml.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "not valid YAML:\n{}\n{yaml}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice::<Vec<Value>>(&output.stdout).unwrap()
}

/// Validates `document` against the JSON schema in `schema` with check-jsonschema; the error is its report.
pub fn check_jsonschema(schema: &Path, document: &Value) -> Result<(), String> {
    run_on_document(
        Command::new(venv_bin("check-jsonschema"))
            .arg("--schemafile")
            .arg(schema),
        document,
    )
}

/// Validates a Kubernetes object with kubernetes-validate, strictly (unknown fields are errors), against the
/// schemas of Kubernetes `version` (e.g. "1.30.0").
pub fn kubernetes_validate(version: &str, document: &Value) -> Result<(), String> {
    run_on_document(
        Command::new(venv_bin("kubernetes-validate")).args(["-k", version, "--strict"]),
        document,
    )
}

fn run_on_document(command: &mut Command, document: &Value) -> Result<(), String> {
    let scratch = Scratch::new("validate");
    let file = scratch.write("document.json", document.to_string());
    let output = command
        .arg(&file)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?} (scripts/setup installs it): {e}"));
    crate::process::succeeded(&output)
}
