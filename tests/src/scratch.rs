//! Temporary directories for configs, logs and seeds of one test.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

/// A fresh directory under `$TMPDIR/tollgate-e2e/`, removed on drop unless the test is failing (then its path is
/// printed, so Envoy's config and log can be read) or `TOLLGATE_KEEP` is set.
#[derive(Debug)]
pub struct Scratch {
    path: PathBuf,
}

impl Scratch {
    pub fn new(label: &str) -> Scratch {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir()
            .join("tollgate-e2e")
            .join(format!("{label}-{}-{n}", std::process::id()));
        // A directory left by an earlier process with the same pid is stale.
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()));
        Scratch { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes `contents` to `name` in this directory and returns the file's path.
    pub fn write(&self, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let file = self.path.join(name);
        fs::write(&file, contents)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", file.display()));
        file
    }

    /// A file's text, empty when it does not exist (yet).
    pub fn read(&self, name: &str) -> String {
        fs::read(self.path.join(name))
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .unwrap_or_default()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if std::thread::panicking() || std::env::var_os("TOLLGATE_KEEP").is_some() {
            eprintln!("kept {}", self.path.display());
        } else {
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directories_are_distinct_writable_and_removed() {
        let a = Scratch::new("t");
        let b = Scratch::new("t");
        assert_ne!(a.path(), b.path());
        let file = a.write("x.txt", "hello");
        assert_eq!(a.read("x.txt"), "hello");
        assert_eq!(a.read("absent"), "");
        assert!(file.is_file());
        let path = a.path().to_path_buf();
        drop(a);
        assert!(!path.exists() || std::env::var_os("TOLLGATE_KEEP").is_some());
    }
}
