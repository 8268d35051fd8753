//! The Envoy configurations shipped for users are valid for Envoy 1.40 (`envoy --mode validate`, which also loads
//! the built module and has it check its filter configuration): the demo (filter only and with the reporter
//! singleton) as shipped, docker-compose's, and the production examples (3scale SaaS, on-premises with a private CA).
//! docker-compose.yml itself is checked by `docker compose config` or `docker-compose config`, whichever works here
//! (neither needs a Docker daemon); without either the check says it is skipped.

use std::path::Path;
use std::process::Command;

use tollgate_e2e::{Envoy, Scratch, target_dir, wasm_path, workspace_root, yaml_documents};

fn read(path: &str) -> String {
    std::fs::read_to_string(workspace_root().join(path)).unwrap()
}

/// The shipped demo configuration: valid as it is, from the repository's root (where its relative path to the
/// module leads, when the module is built in the default target directory).
fn demo(path: &str) -> String {
    let yaml = read(path);
    if target_dir() == workspace_root().join("target") {
        yaml
    } else {
        yaml.replace(
            "filename: target/wasm32-wasip1/release/tollgate.wasm",
            &format!("filename: {}", wasm_path().display()),
        )
    }
}

#[test]
fn the_demo_configurations_are_valid_as_shipped() {
    for path in ["envoy/demo.yaml", "envoy/demo-singleton.yaml"] {
        let yaml = demo(path);
        assert!(!yaml.contains("{{"), "{path} holds template placeholders");
        if let Err(error) = Envoy::validate_in(&yaml, Some(&workspace_root()), &[]) {
            panic!("{path} is not a valid Envoy configuration:\n{error}");
        }
    }
}

#[test]
fn the_docker_compose_envoy_configuration_is_valid() {
    let yaml = read("envoy/docker/envoy.yaml").replace(
        "/etc/tollgate/tollgate.wasm",
        &wasm_path().display().to_string(),
    );
    assert!(
        yaml.contains("address: sim, port_value: 3001"),
        "the compose service name"
    );
    if let Err(error) = Envoy::validate(&yaml) {
        panic!("envoy/docker/envoy.yaml is not a valid Envoy configuration:\n{error}");
    }
    let compose = read("docker-compose.yml");
    assert!(
        compose.contains("image: envoyproxy/envoy:v1.40.0"),
        "the official image, same version as the tests"
    );
    assert!(compose.contains("./envoy/docker/envoy.yaml:/etc/envoy/envoy.yaml"));
}

#[test]
fn an_invalid_configuration_is_caught_by_the_same_check() {
    let broken =
        demo("envoy/demo.yaml").replace("cluster_header: x-tollgate-cluster", "cluster_header: ''");
    assert!(Envoy::validate_in(&broken, Some(&workspace_root()), &[]).is_err());
}

/// A production example with the paths of this machine: the built module, and for the on-premises example a
/// private CA made for the test. The service token comes from Envoy's environment, as the examples say.
fn validate_production(yaml: &str, scratch: &Scratch) -> Result<(), String> {
    let ca = scratch.path().join("ca.pem");
    if !ca.is_file() {
        let key = scratch.path().join("ca.key");
        let made = Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            ])
            .args(["-subj", "/CN=Tollgate test private CA"])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&ca)
            .output()
            .unwrap();
        assert!(made.status.success(), "{made:?}");
    }
    let rendered = yaml
        .replace(
            "/usr/local/lib/tollgate/tollgate.wasm",
            &wasm_path().display().to_string(),
        )
        .replace("/etc/tollgate/3scale-ca.pem", &ca.display().to_string());
    Envoy::validate_in(
        &rendered,
        None,
        &[("TOLLGATE_SERVICE_TOKEN", "from-the-environment")],
    )
}

#[test]
fn the_production_examples_are_valid() {
    let scratch = Scratch::new("production");
    for path in [
        "envoy/production/saas.yaml",
        "envoy/production/on-premises.yaml",
    ] {
        let yaml = read(path);
        if let Err(error) = validate_production(&yaml, &scratch) {
            panic!("{path} is not a valid Envoy configuration:\n{error}");
        }
        assert!(yaml.contains("failure_policy: FAIL_RELOAD"), "{path}");
        assert!(
            yaml.contains("address: 127.0.0.1, port_value: 9901"),
            "{path}: admin on loopback"
        );
    }
    let saas = read("envoy/production/saas.yaml");
    for tls in [
        "sni: su1.3scale.net",
        "trusted_ca: { filename: /etc/ssl/certs/ca-certificates.crt }",
        "matcher: { exact: su1.3scale.net }",
    ] {
        assert!(saas.contains(tls), "saas.yaml: {tls}");
    }
    assert!(Path::new("/etc/ssl/certs/ca-certificates.crt").is_file());
}

#[test]
fn a_broken_production_example_is_caught() {
    let scratch = Scratch::new("production-broken");
    let yaml = read("envoy/production/on-premises.yaml");
    let missing_token = Envoy::validate_in(
        &yaml.replace(
            "/usr/local/lib/tollgate/tollgate.wasm",
            &wasm_path().display().to_string(),
        ),
        None,
        &[],
    );
    assert!(
        missing_token.is_err(),
        "the CA file and the token are missing"
    );
    let typo = yaml.replace("sni: backend-3scale", "snii: backend-3scale");
    assert!(validate_production(&typo, &scratch).is_err());
    let bad_filter_config =
        yaml.replace(r#""metric": "hits""#, r#""metric": "hits", "lats": true"#);
    assert!(validate_production(&bad_filter_config, &scratch).is_err());
}

/// `docker compose` (the CLI plugin) if it works here, else `docker-compose`, else None.
fn compose_command() -> Option<Vec<&'static str>> {
    let works = |program: &str, args: &[&str]| {
        Command::new(program)
            .args(args)
            .output()
            .is_ok_and(|output| output.status.success())
    };
    if works("docker", &["compose", "version"]) {
        Some(vec!["docker", "compose"])
    } else if works("docker-compose", &["version"]) {
        Some(vec!["docker-compose"])
    } else {
        None
    }
}

/// `config` of a compose file: the normalised file, or the tool's complaint.
fn compose_config(compose: &[&str], file: &Path) -> Result<String, String> {
    let output = Command::new(compose[0])
        .args(&compose[1..])
        .arg("--project-directory")
        .arg(workspace_root())
        .arg("-f")
        .arg(file)
        .arg("config")
        .output()
        .unwrap();
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).into_owned())
    }
}

#[test]
fn docker_compose_validates_and_builds_as_the_user_with_a_cargo_cache() {
    let Some(compose) = compose_command() else {
        eprintln!(
            "skipped: neither `docker compose` nor `docker-compose` works here (scripts/setup installs one)"
        );
        return;
    };
    let file = workspace_root().join("docker-compose.yml");
    let normalised =
        compose_config(&compose, &file).unwrap_or_else(|e| panic!("{compose:?} config: {e}"));
    let config = yaml_documents(&normalised).remove(0);
    let services = &config["services"];
    let build = &services["build"];
    assert!(
        build["user"]
            .as_str()
            .is_some_and(|user| !user.starts_with("0:") && !user.starts_with("root")),
        "the build runs as the user: {build}"
    );
    assert_eq!(build["environment"]["CARGO_HOME"], "/cargo-home");
    assert!(config["volumes"].get("cargo-cache").is_some(), "{config}");
    let published = |service: &str| -> Vec<(String, String)> {
        services[service]["ports"]
            .as_array()
            .unwrap()
            .iter()
            .map(|port| match port {
                serde_json::Value::String(short) => {
                    let parts: Vec<&str> = short.split(':').collect();
                    let ip = if parts.len() == 3 { parts[0] } else { "" };
                    (ip.to_owned(), parts[parts.len() - 2].to_owned())
                }
                long => (
                    long["host_ip"].as_str().unwrap_or_default().to_owned(),
                    long["published"].to_string().trim_matches('"').to_owned(),
                ),
            })
            .collect()
    };
    assert!(
        published("envoy").contains(&("127.0.0.1".to_owned(), "9901".to_owned())),
        "Envoy's admin on the host's loopback only: {:?}",
        published("envoy")
    );
    for service in ["sim", "envoy"] {
        assert!(
            services[service]["healthcheck"]["test"].is_array(),
            "{service} has a health check"
        );
    }
    assert_eq!(
        services["envoy"]["depends_on"]["sim"]["condition"],
        "service_healthy"
    );

    let scratch = Scratch::new("compose-broken");
    let broken = scratch.write(
        "docker-compose.yml",
        read("docker-compose.yml").replace("    healthcheck:\n", "    health_check:\n"),
    );
    assert!(
        compose_config(&compose, &broken).is_err(),
        "a misspelt key is refused by the same check"
    );
}
