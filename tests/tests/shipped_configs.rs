//! The Envoy configurations shipped for users are valid for Envoy 1.40 (`envoy --mode validate`), with
//! the built module: the demo (filter only and with the reporter singleton) and docker-compose's.

use tollgate_e2e::{Envoy, render, wasm_path, workspace_root};

fn read(path: &str) -> String {
    std::fs::read_to_string(workspace_root().join(path)).unwrap()
}

fn demo(path: &str) -> String {
    let ports = [
        ("LISTEN_PORT", 1),
        ("ADMIN_PORT", 2),
        ("SIM_PORT", 3),
        ("STAGING_PORT", 4),
        ("PRODUCTION_PORT", 5),
    ];
    let mut vars: Vec<(&str, String)> = ports
        .iter()
        .map(|(name, port)| (*name, port.to_string()))
        .collect();
    vars.push(("WASM_PATH", wasm_path().display().to_string()));
    render(&read(path), &vars)
}

#[test]
fn the_demo_configurations_are_valid() {
    for path in ["envoy/demo.yaml", "envoy/demo-singleton.yaml"] {
        if let Err(error) = Envoy::validate(&demo(path)) {
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
    assert!(Envoy::validate(&broken).is_err());
}
