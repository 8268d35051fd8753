//! The Istio and Kubernetes files shipped in `envoy/istio/` are valid for the versions they claim: every Istio
//! resource against the schema of its CRD in Istio 1.27 (`envoy/istio/schemas/`, derived by `derive.py` there),
//! every Kubernetes object against Kubernetes 1.30, strictly (an unknown field is an error). The plugin
//! configurations they carry are loaded by the module in Envoy, and the files agree with one another.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use tollgate_e2e::{
    Stack, StackOptions, check_jsonschema, kubernetes_validate, workspace_root, yaml_documents,
};

const ISTIO: &str = "1.27.0";
const KUBERNETES: &str = "1.30.0";

fn istio_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(workspace_root().join("envoy/istio"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "yaml"))
        .collect();
    files.sort();
    files
}

fn documents(path: &Path) -> Vec<Value> {
    yaml_documents(&std::fs::read_to_string(path).unwrap())
}

fn all_documents() -> Vec<Value> {
    istio_files()
        .iter()
        .flat_map(|path| documents(path))
        .collect()
}

fn of_kind<'d>(documents: &'d [Value], kind: &str) -> Vec<&'d Value> {
    documents.iter().filter(|d| d["kind"] == kind).collect()
}

/// Validates one document with the validator its apiVersion calls for.
fn validate(document: &Value) -> Result<(), String> {
    let api_version = document["apiVersion"].as_str().unwrap_or_default();
    if api_version.contains(".istio.io/") {
        let kind = document["kind"].as_str().unwrap_or_default();
        let schema =
            workspace_root().join(format!("envoy/istio/schemas/istio-{ISTIO}/{kind}.json"));
        if !schema.is_file() {
            return Err(format!("no schema for {kind} ({})", schema.display()));
        }
        check_jsonschema(&schema, document)
    } else {
        kubernetes_validate(KUBERNETES, document)
    }
}

#[test]
fn every_istio_and_kubernetes_manifest_is_valid_for_the_versions_it_claims() {
    let mut failures = Vec::new();
    let mut checked = 0;
    for path in istio_files() {
        for document in documents(&path) {
            checked += 1;
            if let Err(error) = validate(&document) {
                failures.push(format!(
                    "{} ({} {}):\n{error}",
                    path.display(),
                    document["kind"],
                    document["metadata"]["name"]
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(checked >= 10, "only {checked} documents found");
}

#[test]
fn a_broken_manifest_is_caught_by_the_same_checks() {
    let documents = all_documents();
    let plugin = of_kind(&documents, "WasmPlugin")[0].clone();
    let mut misspelt = plugin.clone();
    misspelt["spec"]["failStrategy"] = json!("FAIL_RELAOD");
    assert!(validate(&misspelt).is_err(), "an unknown failStrategy");
    let mut unknown_field = plugin;
    unknown_field["spec"]["matchh"] = json!([{ "mode": "SERVER" }]);
    assert!(validate(&unknown_field).is_err(), "an unknown field");
    let mut deployment = of_kind(&documents, "Deployment")[0].clone();
    deployment["spec"]["replica"] = json!(2);
    assert!(
        validate(&deployment).is_err(),
        "an unknown Deployment field"
    );
}

#[test]
fn the_wasm_plugins_are_set_up_for_tollgate_and_agree_with_the_other_files() {
    let documents = all_documents();
    let plugins = of_kind(&documents, "WasmPlugin");
    assert!(plugins.len() >= 2);
    let external_hosts: Vec<&str> = of_kind(&documents, "ServiceEntry")
        .iter()
        .flat_map(|entry| entry["spec"]["hosts"].as_array().unwrap())
        .filter_map(Value::as_str)
        .collect();
    let proxy_env: Vec<&str> = of_kind(&documents, "Deployment")
        .iter()
        .flat_map(|d| {
            d["spec"]["template"]["spec"]["containers"]
                .as_array()
                .unwrap()
        })
        .filter(|container| container["name"] == "istio-proxy")
        .flat_map(|container| container["env"].as_array().unwrap())
        .filter_map(|env| env["name"].as_str())
        .collect();
    for plugin in plugins {
        let spec = &plugin["spec"];
        let name = &plugin["metadata"]["namespace"];
        assert_eq!(spec["match"], json!([{ "mode": "SERVER" }]), "{name}");
        assert_eq!(spec["failStrategy"], "FAIL_RELOAD", "{name}");
        assert_eq!(spec["phase"], "AUTHZ", "{name}");
        assert!(
            spec["url"].as_str().unwrap().starts_with("oci://"),
            "{name}"
        );
        let sha256 = spec["sha256"].as_str().unwrap();
        assert!(
            sha256.len() == 64 && sha256.bytes().all(|b| b.is_ascii_hexdigit()),
            "{name}: {sha256}"
        );
        let cluster = spec["pluginConfig"]["backend"]["cluster"].as_str().unwrap();
        let host = cluster.strip_prefix("outbound|443||").unwrap_or_else(|| {
            panic!("{name}: {cluster} is not Istio's name of an outbound cluster on 443")
        });
        assert!(
            external_hosts.contains(&host),
            "{name}: no ServiceEntry for {host}"
        );
        assert_eq!(spec["pluginConfig"]["backend"]["authority"], host);
        let vm_env: Vec<&str> = spec["vmConfig"]["env"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|env| env["name"].as_str())
            .collect();
        for variable in env_secrets(&spec["pluginConfig"]) {
            assert!(
                vm_env.contains(&variable.as_str()),
                "{name}: {variable} is not in vmConfig.env"
            );
            assert!(
                proxy_env.contains(&variable.as_str()),
                "{name}: {variable} is not put into the istio-proxy container"
            );
        }
    }
}

/// The names of the environment variables the configuration's secrets come from (`{"env": NAME}`).
fn env_secrets(config: &Value) -> Vec<String> {
    match config {
        Value::Object(fields) if fields.len() == 1 && fields.contains_key("env") => {
            vec![fields["env"].as_str().unwrap().to_owned()]
        }
        Value::Object(fields) => fields.values().flat_map(env_secrets).collect(),
        Value::Array(items) => items.iter().flat_map(env_secrets).collect(),
        _ => Vec::new(),
    }
}

/// `{"env": NAME}` secrets replaced by a value, as the sidecar's environment would provide.
fn with_inline_secrets(config: &Value) -> Value {
    match config {
        Value::Object(fields) if fields.len() == 1 && fields.contains_key("env") => {
            json!("from-the-environment")
        }
        Value::Object(fields) => Value::Object(
            fields
                .iter()
                .map(|(key, value)| (key.clone(), with_inline_secrets(value)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(with_inline_secrets).collect()),
        other => other.clone(),
    }
}

#[test]
fn the_plugin_configurations_are_accepted_by_the_module() {
    for plugin in of_kind(&all_documents(), "WasmPlugin") {
        let config = with_inline_secrets(&plugin["spec"]["pluginConfig"]);
        let mut options =
            StackOptions::new("envoy/test.template.yaml", config, "tests/e2e/seed.json");
        let jwks = workspace_root().join("tests/fixtures/jwt/jwks.json");
        options
            .extra_vars
            .push(("JWKS_PATH".into(), jwks.display().to_string()));
        // Envoy exits on a filter configuration the module refuses: being ready means it was accepted.
        let stack = Stack::start(options);
        assert!(stack.envoy.log().contains("tollgate: configured"));
    }
}
