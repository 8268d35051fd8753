//! Running the built `tollgate-config` on files written for the test.

#![allow(dead_code, clippy::unwrap_used)]

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

static NEXT: AtomicUsize = AtomicUsize::new(0);

/// Writes `text` into a fresh file of the system's temporary directory; returns its path.
pub fn write(name: &str, text: &str) -> String {
    let dir: PathBuf = std::env::temp_dir().join(format!(
        "tollgate-config-test-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_string_lossy().into_owned()
}

/// Exit code, stdout and stderr of `tollgate-config args...`.
pub fn run(args: &[&str]) -> (i32, String, String) {
    run_with_env(args, &[])
}

pub fn run_with_env(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_tollgate-config"))
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8(output.stdout).unwrap(),
        String::from_utf8(output.stderr).unwrap(),
    )
}
