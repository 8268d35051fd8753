//! The module's OCI image (`scripts/image`), inspected with an independent tool, skopeo: the layout is a valid OCI
//! image whose digest is the sha256 the script prints (what Istio's `WasmPlugin.spec.sha256` checks), in the Wasm
//! image "compat" variant, and its one layer holds exactly the built `tollgate.wasm` as `plugin.wasm`. The push path
//! is exercised against a local registry (Debian's `docker-registry`): the registry serves the same digest.

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use serde_json::Value;
use tollgate_e2e::{Scratch, free_port, wait_until, wasm_path, workspace_root};

const TAG: &str = env!("CARGO_PKG_VERSION");

fn run(command: &mut Command) -> Output {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e} (scripts/setup installs it)"));
    assert!(
        output.status.success(),
        "{command:?} failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// Builds the layout of `wasm` into `out` and returns the sha256 the script printed.
fn build_image(wasm: &Path, out: &Path) -> String {
    let output = run(Command::new(workspace_root().join("scripts/image"))
        .arg("--wasm")
        .arg(wasm)
        .arg("--out")
        .arg(out));
    let stdout = String::from_utf8_lossy(&output.stdout);
    stdout
        .lines()
        .find_map(|line| line.strip_prefix("sha256: "))
        .unwrap_or_else(|| panic!("no sha256 line in:\n{stdout}"))
        .to_owned()
}

fn skopeo_json(args: &[&str]) -> Value {
    let output = run(Command::new("skopeo").args(args));
    serde_json::from_slice(&output.stdout).unwrap()
}

/// Copies the image out of the layout with skopeo (which checks every blob against its digest) and returns the
/// files of its one layer, unpacked with tar.
fn unpack_with_skopeo(layout: &Path, scratch: &Scratch) -> Result<Vec<(String, Vec<u8>)>, String> {
    unpack_image(&[&format!("oci:{}:{TAG}", layout.display())], scratch)
}

/// [`unpack_with_skopeo`] from any image source skopeo reads (`source` ends with the reference).
fn unpack_image(source: &[&str], scratch: &Scratch) -> Result<Vec<(String, Vec<u8>)>, String> {
    let copy = scratch.path().join("copy");
    let _ = std::fs::remove_dir_all(&copy);
    let output = Command::new("skopeo")
        .arg("copy")
        .args(source)
        .arg(format!("dir:{}", copy.display()))
        .output()
        .unwrap();
    if !output.status.success() {
        return Err(String::from_utf8_lossy(&output.stderr).into_owned());
    }
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(copy.join("manifest.json")).unwrap()).unwrap();
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 1, "one layer: {manifest}");
    let digest = layers[0]["digest"].as_str().unwrap();
    let blob = copy.join(digest.trim_start_matches("sha256:"));
    let files = scratch.path().join("files");
    let _ = std::fs::remove_dir_all(&files);
    std::fs::create_dir_all(&files).unwrap();
    run(Command::new("tar")
        .arg("-xzf")
        .arg(&blob)
        .arg("-C")
        .arg(&files));
    Ok(std::fs::read_dir(&files)
        .unwrap()
        .map(|entry| {
            let entry = entry.unwrap();
            (
                entry.file_name().to_string_lossy().into_owned(),
                std::fs::read(entry.path()).unwrap(),
            )
        })
        .collect())
}

#[test]
fn the_oci_image_holds_exactly_the_module_and_its_digest_is_the_printed_sha256() {
    let scratch = Scratch::new("image");
    let layout = scratch.path().join("layout");
    let wasm = wasm_path();
    let sha256 = build_image(&wasm, &layout);
    assert_eq!(sha256.len(), 64, "{sha256}");

    let reference = format!("oci:{}:{TAG}", layout.display());
    let inspected = skopeo_json(&["inspect", &reference]);
    assert_eq!(inspected["Digest"], format!("sha256:{sha256}"));
    let manifest = skopeo_json(&["inspect", "--raw", &reference]);
    assert_eq!(
        manifest["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    assert_eq!(
        manifest["annotations"]["module.wasm.image/variant"], "compat",
        "{manifest}"
    );
    assert_eq!(
        manifest["layers"][0]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+gzip"
    );

    let files = unpack_with_skopeo(&layout, &scratch).unwrap_or_else(|e| panic!("{e}"));
    let names: Vec<&str> = files.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(names, ["plugin.wasm"]);
    assert!(
        files[0].1 == std::fs::read(&wasm).unwrap(),
        "plugin.wasm differs from {}",
        wasm.display()
    );

    let again = build_image(&wasm, &scratch.path().join("again"));
    assert_eq!(again, sha256, "the same module gives the same digest");
}

#[test]
fn a_layout_whose_layer_was_altered_is_refused_by_the_same_inspection() {
    let scratch = Scratch::new("image-broken");
    let layout = scratch.path().join("layout");
    build_image(&wasm_path(), &layout);
    let blobs = layout.join("blobs/sha256");
    let layer = std::fs::read_dir(&blobs)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .max_by_key(|path| std::fs::metadata(path).unwrap().len())
        .unwrap();
    let mut bytes = std::fs::read(&layer).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&layer, bytes).unwrap();
    let refused = unpack_with_skopeo(&layout, &scratch);
    assert!(
        refused.is_err(),
        "skopeo copied a layer that no longer matches its digest"
    );
}

#[test]
fn the_dockerfile_builds_the_same_content() {
    let dockerfile =
        std::fs::read_to_string(workspace_root().join("envoy/image/Dockerfile")).unwrap();
    let instructions: Vec<&str> = dockerfile
        .lines()
        .filter(|line| !line.trim().is_empty() && !line.starts_with('#'))
        .collect();
    assert_eq!(
        instructions,
        ["FROM scratch", "COPY tollgate.wasm /plugin.wasm"]
    );
}

/// A registry on loopback, plain HTTP, storing into a scratch directory; stopped when dropped.
struct Registry {
    port: u16,
    child: Child,
}

impl Registry {
    fn start(scratch: &Scratch) -> Registry {
        let port = free_port();
        let config = scratch.write(
            "registry.yml",
            format!(
                "version: 0.1\nlog: {{ level: warn }}\nstorage:\n  filesystem: {{ rootdirectory: {} }}\nhttp:\n  addr: 127.0.0.1:{port}\n",
                scratch.path().join("storage").display()
            ),
        );
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run docker-registry (scripts/setup installs it): {e}")
            });
        let up = wait_until(Duration::from_secs(20), Duration::from_millis(50), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).ok()
        });
        assert!(up.is_some(), "the registry did not start on {port}");
        Registry { port, child }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn pushing_to_a_registry_keeps_the_digest_and_the_module() {
    let scratch = Scratch::new("image-push");
    let registry = Registry::start(&scratch);
    let wasm = wasm_path();
    let reference = format!("127.0.0.1:{}/tollgate", registry.port);
    let output = run(Command::new(workspace_root().join("scripts/image"))
        .arg("--wasm")
        .arg(&wasm)
        .arg("--out")
        .arg(scratch.path().join("layout"))
        .args(["push", &reference, "--dest-tls-verify=false"]));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let sha256 = stdout
        .lines()
        .find_map(|line| line.strip_prefix("sha256: "))
        .unwrap_or_else(|| panic!("no sha256 line in:\n{stdout}"));
    let pushed = format!("docker://{reference}:{TAG}");
    let inspected = skopeo_json(&["inspect", "--tls-verify=false", &pushed]);
    assert_eq!(inspected["Digest"], format!("sha256:{sha256}"));
    let files = unpack_image(&["--src-tls-verify=false", &pushed], &scratch)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(files.len(), 1);
    assert!(files[0].0 == "plugin.wasm" && files[0].1 == std::fs::read(&wasm).unwrap());
}
