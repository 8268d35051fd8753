//! The real Envoy binary as a child process: start it on a YAML config, read its admin API and log, stop it.

use std::collections::HashMap;
use std::fs::File;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// How long Tollgate may take to hand its counters to Envoy: two ticks of its root context.
pub const COUNTERS_FLUSHED: std::time::Duration = std::time::Duration::from_millis(120);

use crate::client::{Request, Response, send};
use crate::paths::envoy_binary;
use crate::process::{tail, terminate, wait_until};
use crate::scratch::Scratch;

/// How long Envoy may take to become ready (it usually needs 1-3 s, more with several V8 workers).
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a stopped Envoy gets to exit after SIGTERM before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// How many log lines a failure message shows.
const LOG_LINES: usize = 50;

/// How to run Envoy.
#[derive(Debug, Clone)]
pub struct EnvoyOptions {
    /// Worker threads (`--concurrency`).
    pub concurrency: u32,
    /// `-l`; `$TOLLGATE_ENVOY_LOG_LEVEL` overrides it, to debug a failing test without editing it.
    pub log_level: String,
    /// `--component-log-level`; by default `wasm:info`, so the filter's own log lines show at `-l warn`.
    pub component_log_level: Option<String>,
    /// Extra environment variables of the Envoy process (secrets read through `host_env_keys`).
    pub env: Vec<(String, String)>,
    /// More command-line arguments (e.g. `--drain-time-s 1` for a test that replaces a listener).
    pub extra_args: Vec<String>,
}

impl Default for EnvoyOptions {
    fn default() -> EnvoyOptions {
        EnvoyOptions {
            concurrency: 1,
            log_level: "warn".to_owned(),
            component_log_level: Some("wasm:info".to_owned()),
            env: Vec::new(),
            extra_args: Vec::new(),
        }
    }
}

/// A running Envoy. Several can run at once: hot restart (the shared memory keyed by `--base-id`) is disabled, and
/// configs should bind port 0 for the admin and listeners, whose real ports are read back from the admin API.
/// Dropping it sends SIGTERM, then SIGKILL after 5 s.
#[derive(Debug)]
pub struct Envoy {
    /// The admin port, as Envoy bound it.
    pub admin_port: u16,
    /// The port of the first listener in the config, as Envoy bound it (0 when there is none).
    pub listen_port: u16,
    child: Child,
    scratch: Scratch,
}

impl Envoy {
    /// Starts Envoy on `yaml` with `concurrency` workers and waits until admin `/ready` answers 200. Panics with the
    /// end of Envoy's log when it exits or is not ready within 30 s.
    pub fn start(yaml: &str, concurrency: u32) -> Envoy {
        Envoy::start_with(
            yaml,
            &EnvoyOptions {
                concurrency,
                ..EnvoyOptions::default()
            },
        )
    }

    pub fn start_with(yaml: &str, options: &EnvoyOptions) -> Envoy {
        let mut envoy = Envoy::spawn(yaml, options);
        if let Err(why) = envoy.wait_ready(READY_TIMEOUT) {
            panic!(
                "Envoy did not start: {why}\nconfig and logs in {}\n--- last log lines ---\n{}",
                envoy.scratch.path().display(),
                tail(&envoy.log(), LOG_LINES)
            );
        }
        envoy.listen_port = envoy.listener_ports().first().map_or(0, |(_, port)| *port);
        envoy
    }

    /// Checks a config with `envoy --mode validate`; the error is Envoy's output.
    pub fn validate(yaml: &str) -> Result<(), String> {
        Envoy::validate_in(yaml, None, &[])
    }

    /// [`Envoy::validate`] run in `dir` (relative paths in the config are resolved from there) with `env` added to
    /// Envoy's environment. Validation loads the wasm module and configures it, so a filter configuration the module
    /// refuses (or a `{"env": ...}` secret missing from the environment) fails it too.
    pub fn validate_in(yaml: &str, dir: Option<&Path>, env: &[(&str, &str)]) -> Result<(), String> {
        let scratch = Scratch::new("envoy-validate");
        let config = scratch.write("envoy.yaml", yaml);
        let mut command = Command::new(envoy_binary());
        if let Some(dir) = dir {
            command.current_dir(dir);
        }
        let output = command
            .envs(env.iter().copied())
            .arg("--mode")
            .arg("validate")
            .arg("-c")
            .arg(&config)
            .args(["-l", "warn", "--disable-hot-restart"])
            .output()
            .unwrap_or_else(|e| panic!("cannot run Envoy: {e}"));
        crate::process::succeeded(&output)
    }

    /// Envoy's log so far (the `--log-path` file, then whatever it wrote to stdout/stderr).
    pub fn log(&self) -> String {
        let mut log = self.scratch.read("envoy.log");
        log.push_str(&self.scratch.read("stdout.log"));
        log
    }

    /// Waits up to `timeout` for the log to contain `needle`; the log as it then is, or `None` on timeout.
    pub fn wait_log(&self, needle: &str, timeout: Duration) -> Option<String> {
        wait_until(timeout, Duration::from_millis(50), || {
            let log = self.log();
            log.contains(needle).then_some(log)
        })
    }

    /// GET on the admin API; panics when Envoy does not answer.
    pub fn admin_get(&self, path: &str) -> Response {
        send(self.admin_port, &Request::get(path)).unwrap_or_else(|e| {
            panic!(
                "Envoy admin GET {path}: {e}\n{}",
                tail(&self.log(), LOG_LINES)
            )
        })
    }

    /// Counters and gauges by name (histograms left out), once the module has handed over its counters: it adds
    /// them up in each VM and gives Envoy the sums at every tick (50 ms), so a read waits for two ticks.
    pub fn stats(&self) -> HashMap<String, u64> {
        std::thread::sleep(COUNTERS_FLUSHED);
        let response = self.admin_get("/stats?format=json");
        parse_stats(&response.json())
    }

    /// One counter or gauge; `None` when Envoy has no stat of that name (custom metrics appear when first defined).
    pub fn stat(&self, name: &str) -> Option<u64> {
        self.stats().remove(name)
    }

    /// Every listener's name and bound port, in config order.
    pub fn listener_ports(&self) -> Vec<(String, u16)> {
        let listeners = self.admin_get("/listeners?format=json").json();
        let statuses = listeners["listener_statuses"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        statuses
            .iter()
            .filter_map(|status| {
                let name = status["name"].as_str()?.to_owned();
                let port = status["local_address"]["socket_address"]["port_value"].as_u64()?;
                Some((name, u16::try_from(port).ok()?))
            })
            .collect()
    }

    /// The bound port of the listener called `name`.
    pub fn listener_port(&self, name: &str) -> Option<u16> {
        self.listener_ports()
            .into_iter()
            .find_map(|(listener, port)| (listener == name).then_some(port))
    }

    /// Whether the process has exited (e.g. crashed), without waiting.
    pub fn has_exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The directory holding `envoy.yaml`, `envoy.log` and `stdout.log`.
    pub fn dir(&self) -> &Path {
        self.scratch.path()
    }

    fn spawn(yaml: &str, options: &EnvoyOptions) -> Envoy {
        let scratch = Scratch::new("envoy");
        let config = scratch.write("envoy.yaml", yaml);
        let output = File::create(scratch.path().join("stdout.log"))
            .unwrap_or_else(|e| panic!("cannot create Envoy's output file: {e}"));
        let errors = output
            .try_clone()
            .unwrap_or_else(|e| panic!("cannot share Envoy's output file: {e}"));
        let log_level =
            std::env::var("TOLLGATE_ENVOY_LOG_LEVEL").unwrap_or_else(|_| options.log_level.clone());
        let mut command = Command::new(envoy_binary());
        command
            .arg("-c")
            .arg(&config)
            .arg("--concurrency")
            .arg(options.concurrency.to_string())
            .arg("--disable-hot-restart")
            .arg("--base-id")
            .arg(unique_base_id().to_string())
            .arg("-l")
            .arg(log_level)
            .arg("--log-path")
            .arg(scratch.path().join("envoy.log"))
            // Logs reach their files within 50 ms (the default is 10 s), so tests can read them right away.
            .args(["--file-flush-interval-msec", "50"])
            .arg("--admin-address-path")
            .arg(scratch.path().join("admin-address"))
            .stdin(Stdio::null())
            .stdout(output)
            .stderr(errors);
        command.envs(options.env.iter().map(|(name, value)| (name, value)));
        if let Some(levels) = &options.component_log_level {
            command.arg("--component-log-level").arg(levels);
        }
        command.args(&options.extra_args);
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", envoy_binary().display()));
        Envoy {
            admin_port: 0,
            listen_port: 0,
            child,
            scratch,
        }
    }

    /// Waits for the admin address file, then for `/ready` = 200.
    fn wait_ready(&mut self, timeout: Duration) -> Result<(), String> {
        let ready = wait_until(timeout, Duration::from_millis(50), || {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(Err(format!("Envoy exited ({status})")));
            }
            if self.admin_port == 0 {
                self.admin_port = parse_admin_port(&self.scratch.read("admin-address"))?;
            }
            let response = send(self.admin_port, &Request::get("/ready")).ok()?;
            (response.status == 200).then_some(Ok(()))
        });
        ready.unwrap_or_else(|| Err(format!("not ready after {timeout:?}")))
    }
}

impl Drop for Envoy {
    fn drop(&mut self) {
        terminate(&mut self.child, STOP_GRACE);
    }
}

/// Starts Envoy on a config that must be refused (e.g. a filter config the plugin rejects) and returns its log once
/// it has exited or logged an error or critical line. Panics when Envoy stays up without complaining.
pub fn envoy_expect_rejected(yaml: &str) -> String {
    let mut envoy = Envoy::spawn(yaml, &EnvoyOptions::default());
    let complained = |envoy: &Envoy| {
        envoy
            .log()
            .lines()
            .any(|line| line.contains("[error]") || line.contains("[critical]"))
    };
    let settled = wait_until(READY_TIMEOUT, Duration::from_millis(50), || {
        if envoy.has_exited() {
            return Some(true);
        }
        if complained(&envoy) {
            // Let it finish logging (and exit, as it does on a bad static listener).
            wait_until(Duration::from_secs(2), Duration::from_millis(50), || {
                envoy.has_exited().then_some(())
            });
            return Some(true);
        }
        None
    });
    if settled.is_none() {
        panic!(
            "Envoy accepted a config that should be rejected (still running after {READY_TIMEOUT:?}, no error logged)\n{}",
            tail(&envoy.log(), LOG_LINES)
        );
    }
    envoy.log()
}

/// Counters and gauges from admin `/stats?format=json`: `{"stats":[{"name":..,"value":..},{"histograms":..}]}`.
fn parse_stats(json: &serde_json::Value) -> HashMap<String, u64> {
    json["stats"]
        .as_array()
        .map(|stats| {
            stats
                .iter()
                .filter_map(|stat| {
                    Some((stat["name"].as_str()?.to_owned(), stat["value"].as_u64()?))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The port in the `--admin-address-path` file (`127.0.0.1:PORT`).
fn parse_admin_port(text: &str) -> Option<u16> {
    text.trim()
        .rsplit(':')
        .next()?
        .parse()
        .ok()
        .filter(|&port| port != 0)
}

/// A base id no other Envoy of this machine's test runs uses, in case hot restart is ever turned back on.
fn unique_base_id() -> u32 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    (std::process::id() % 100_000) * 100 + NEXT.fetch_add(1, Ordering::Relaxed) % 100
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn stats_keep_numeric_counters_and_gauges_only() {
        let stats = parse_stats(&json!({"stats": [
            {"name": "http.ingress.downstream_rq_total", "value": 3},
            {"name": "server.version", "value": "text"},
            {"name": "negative", "value": -1},
            {"histograms": {"computed_quantiles": []}}
        ]}));
        assert_eq!(stats.len(), 1);
        assert_eq!(stats["http.ingress.downstream_rq_total"], 3);
        assert!(parse_stats(&json!({})).is_empty());
        assert!(parse_stats(&json!({"stats": "nope"})).is_empty());
    }

    #[test]
    fn admin_port_from_the_address_file() {
        assert_eq!(parse_admin_port("127.0.0.1:39999"), Some(39999));
        assert_eq!(parse_admin_port("127.0.0.1:39999\n"), Some(39999));
        assert_eq!(parse_admin_port("[::1]:80"), Some(80));
        assert_eq!(parse_admin_port(""), None);
        assert_eq!(parse_admin_port("127.0.0.1:0"), None);
        assert_eq!(parse_admin_port("127.0.0.1:"), None);
    }

    #[test]
    fn base_ids_differ() {
        assert_ne!(unique_base_id(), unique_base_id());
    }
}
