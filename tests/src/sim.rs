//! `tollgate-sim`, the stand-in 3scale backend, as a child process, plus its internal API (`/_sim/...`) for
//! assertions and fault injection. With `TOLLGATE_E2E_BACKEND` set, the backend named there instead (see
//! `backend.rs`): seeded the same way, without the simulator's own API.

use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use serde_json::{Value, json};

use crate::backend::{External, external_backend, needs_simulator};
use crate::client::{Request, Response, send, send_to};
use crate::paths::sim_binary;
use crate::process::{tail, terminate, wait_until};
use crate::scratch::Scratch;

const READY_TIMEOUT: Duration = Duration::from_secs(15);
const STOP_GRACE: Duration = Duration::from_secs(5);

/// A running simulator on 127.0.0.1:`port`, killed on drop. The first start binds port 0 and reads the real port
/// from the simulator's `listening on ADDR` line, so no other process can take it in between; restarts reuse it.
#[derive(Debug)]
pub struct Sim {
    pub port: u16,
    /// The external backend used instead of a simulator of this test's own.
    external: Option<&'static External>,
    seed: Option<PathBuf>,
    child: Option<Child>,
    scratch: Scratch,
}

impl Sim {
    /// Starts `tollgate-sim --listen 127.0.0.1:0 --seed FILE` and waits until `GET /status` answers 200.
    pub fn start(seed: &Path) -> Sim {
        Sim::launch(Some(seed.to_path_buf()))
    }

    /// Starts a simulator without seed data (tests then seed it through `/internal/...`).
    pub fn start_empty() -> Sim {
        Sim::launch(None)
    }

    fn launch(seed: Option<PathBuf>) -> Sim {
        if let Some(seed) = &seed {
            assert!(seed.is_file(), "sim seed {} does not exist", seed.display());
        }
        let mut sim = Sim {
            port: 0,
            external: external_backend(),
            seed,
            child: None,
            scratch: Scratch::new("sim"),
        };
        match sim.external {
            Some(backend) => sim.seed_external(backend),
            None => sim.restart(),
        }
        sim
    }

    /// Whether this is an external backend (`TOLLGATE_E2E_BACKEND`), not a simulator of the test's own.
    pub fn is_external(&self) -> bool {
        self.external.is_some()
    }

    /// Where the backend listens: 127.0.0.1:`port`, or the external backend's address.
    pub fn address(&self) -> SocketAddr {
        self.external.map_or_else(
            || SocketAddr::from(([127, 0, 0, 1], self.port)),
            |backend| backend.address,
        )
    }

    /// Loads the seed into the external backend through its internal API (`tollgate-sim seed --into`), once per
    /// seed file and test process: loading it again while another test runs would undo that test's changes
    /// (a suspended application, a removed key).
    fn seed_external(&mut self, backend: &External) {
        static SEEDED: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());
        self.port = backend.address.port();
        let Some(seed) = &self.seed else {
            return;
        };
        let mut seeded = SEEDED.lock().unwrap_or_else(PoisonError::into_inner);
        if seeded.contains(seed) {
            return;
        }
        seeded.push(seed.clone());
        let output = Command::new(sim_binary())
            .args(["seed", "--into", &backend.url])
            .arg(seed)
            .output()
            .unwrap_or_else(|e| panic!("cannot run tollgate-sim seed: {e}"));
        assert!(
            output.status.success(),
            "seeding {} with {} failed:\n{}",
            backend.url,
            seed.display(),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// Stops the process (SIGTERM, then SIGKILL); its port refuses connections until [`Sim::restart`].
    pub fn stop(&mut self) {
        if self.is_external() {
            needs_simulator("process (a stop)");
        }
        self.kill();
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            terminate(&mut child, STOP_GRACE);
        }
    }

    /// Starts the simulator again on the same port with the same seed (stopping it first if needed). State that
    /// the simulator only keeps in memory is lost, as after a backend restart.
    pub fn restart(&mut self) {
        if self.is_external() {
            needs_simulator("process (a restart)");
        }
        self.stop();
        let output = File::options()
            .create(true)
            .append(true)
            .open(self.scratch.path().join("sim.log"))
            .unwrap_or_else(|e| panic!("cannot create the sim log: {e}"));
        let errors = output
            .try_clone()
            .unwrap_or_else(|e| panic!("cannot share the sim log: {e}"));
        let mut command = Command::new(sim_binary());
        command
            .arg("--listen")
            .arg(format!("127.0.0.1:{}", self.port))
            .stdin(Stdio::null())
            .stdout(output)
            .stderr(errors);
        if let Some(seed) = &self.seed {
            command.arg("--seed").arg(seed);
        }
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", sim_binary().display()));
        self.child = Some(child);
        self.wait_ready();
    }

    /// Waits for the bound port (first start only), then for `GET /status` = 200.
    fn wait_ready(&mut self) {
        let scratch = &self.scratch;
        let port = &mut self.port;
        let child = self.child.as_mut();
        let ready = child.and_then(|child| {
            wait_until(READY_TIMEOUT, Duration::from_millis(25), || {
                if let Ok(Some(status)) = child.try_wait() {
                    return Some(Err(format!("exited ({status})")));
                }
                if *port == 0 {
                    *port = bound_port(&scratch.read("sim.log"))?;
                }
                let response = send(*port, &Request::get("/status")).ok()?;
                (response.status == 200).then_some(Ok(()))
            })
        });
        match ready {
            Some(Ok(())) => {}
            Some(Err(why)) => panic!("tollgate-sim {why}\n{}", tail(&self.log(), 50)),
            None => panic!(
                "tollgate-sim not ready after {READY_TIMEOUT:?}\n{}",
                tail(&self.log(), 50)
            ),
        }
    }

    /// What the simulator printed (all runs).
    pub fn log(&self) -> String {
        self.scratch.read("sim.log")
    }

    /// Sends any request to the simulator; panics when it does not answer.
    pub fn send(&self, request: &Request) -> Response {
        if self.is_external() && request.path.starts_with("/_sim") {
            needs_simulator(&format!("own API ({} {})", request.method, request.path));
        }
        send_to(self.address(), request)
            .unwrap_or_else(|e| panic!("tollgate-sim {} {}: {e}", request.method, request.path))
    }

    /// GET expecting 200 and JSON.
    pub fn get_json(&self, path: &str) -> Value {
        let response = self.send(&Request::get(path));
        assert_eq!(
            response.status,
            200,
            "GET {path} on the sim: {}",
            response.text()
        );
        response.json()
    }

    /// POST a JSON body; the answer's status and body (JSON, `Null` when empty, a string when not JSON).
    pub fn post_json(&self, path: &str, body: &Value) -> (u16, Value) {
        answer(self.send(&Request::post(path).json(body)))
    }

    pub fn put_json(&self, path: &str, body: &Value) -> (u16, Value) {
        answer(self.send(&Request::put(path).json(body)))
    }

    pub fn delete(&self, path: &str) -> u16 {
        self.send(&Request::delete(path)).status
    }

    /// Forgets counters, usage, stored codes and faults (`POST /_sim/reset`).
    pub fn reset(&self) {
        self.expect_success("POST /_sim/reset", &Request::post("/_sim/reset"));
    }

    /// Call counters per endpoint and per service (`GET /_sim/calls`).
    pub fn calls(&self) -> Value {
        self.get_json("/_sim/calls")
    }

    /// The requests the simulator received, as it records them (`GET /_sim/requests`).
    pub fn requests(&self) -> Vec<Value> {
        as_list(self.get_json("/_sim/requests"), "requests")
    }

    /// The last `limit` requests (`GET /_sim/requests?limit=N`).
    pub fn requests_limit(&self, limit: usize) -> Vec<Value> {
        as_list(
            self.get_json(&format!("/_sim/requests?limit={limit}")),
            "requests",
        )
    }

    /// Usage of every metric per period for one application.
    pub fn usage(&self, service: &str, app: &str) -> Value {
        self.get_json(&format!(
            "/_sim/services/{service}/applications/{app}/usage"
        ))
    }

    /// The current value of a limited metric for one application and period, read as 3scale's admin portal reads
    /// it (`GET /internal/.../utilization/`), so it works against any backend; `None` when no limit covers it.
    pub fn utilization(&self, service: &str, app: &str, metric: &str, period: &str) -> Option<u64> {
        let found = self.get_json(&format!(
            "/internal/services/{service}/applications/{app}/utilization/"
        ));
        found["utilization"]
            .as_array()?
            .iter()
            .find(|limit| limit["metric_name"] == metric && limit["period"] == period)?["current_value"]
            .as_u64()
    }

    /// Response codes stored for one application (`log[code]`).
    pub fn response_codes(&self, service: &str, app: &str) -> Value {
        self.get_json(&format!(
            "/_sim/services/{service}/applications/{app}/response_codes"
        ))
    }

    /// Injects a fault: `{"endpoint":..,"latency_ms":..,"status":..,"garbage":..,"close":..}`.
    pub fn fault(&self, spec: Value) {
        self.expect_success(
            "PUT /_sim/faults",
            &Request::put("/_sim/faults").json(&spec),
        );
    }

    pub fn clear_faults(&self) {
        self.expect_success("DELETE /_sim/faults", &Request::delete("/_sim/faults"));
    }

    /// Makes the simulator refuse connections for `ms` milliseconds.
    pub fn refuse_for(&self, ms: u64) {
        let request = Request::post("/_sim/faults/refuse").json(&json!({ "for_ms": ms }));
        self.expect_success("POST /_sim/faults/refuse", &request);
    }

    /// A graceful restart of the simulator's listener: answers in progress are sent, idle connections closed,
    /// connections refused for `ms`.
    pub fn restart_for(&self, ms: u64) {
        let request = Request::post("/_sim/faults/restart").json(&json!({ "for_ms": ms }));
        self.expect_success("POST /_sim/faults/restart", &request);
    }

    /// apisonator's background worker: `{"delay_ms": N}` (lagging) and/or `{"paused": bool}`.
    pub fn worker(&self, settings: Value) {
        let request = Request::put("/_sim/worker").json(&settings);
        self.expect_success("PUT /_sim/worker", &request);
    }

    /// The simulator's clock (`GET /_sim/clock`: `now`, `epoch`, `frozen`).
    pub fn clock(&self) -> Value {
        self.get_json("/_sim/clock")
    }

    /// Freezes the clock at `now` (epoch seconds, or a `"YYYY-MM-DD HH:MM:SS"` string), so period boundaries are
    /// deterministic.
    pub fn freeze_clock(&self, now: Value) {
        let request = Request::put("/_sim/clock").json(&json!({ "now": now }));
        self.expect_success("PUT /_sim/clock", &request);
    }

    /// Makes the next seconds of a test fall in one minute of 3scale's clock: the simulator's clock frozen 5 s into
    /// the current minute; an external backend's clock (which cannot be frozen) waited on, when fewer than 25 s of
    /// the minute are left.
    pub fn within_one_minute(&self) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        if self.is_external() {
            if now % 60 > 35 {
                std::thread::sleep(Duration::from_secs(61 - now % 60));
            }
            return;
        }
        self.freeze_clock(json!(now - now % 60 + 5));
    }

    /// A name for an application this test creates: as given against the simulator (fresh for each test), made
    /// unique to this run against an external backend (which keeps what earlier runs created and counted).
    pub fn fresh_name(&self, name: &str) -> String {
        if !self.is_external() {
            return name.to_owned();
        }
        static RUN: std::sync::OnceLock<u128> = std::sync::OnceLock::new();
        let run = RUN.get_or_init(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis())
        });
        format!("{name}-{run}")
    }

    /// Moves the clock forward (or back) by `seconds`.
    pub fn advance_clock(&self, seconds: i64) {
        let request = Request::put("/_sim/clock").json(&json!({ "advance_s": seconds }));
        self.expect_success("PUT /_sim/clock", &request);
    }

    /// Lets the clock follow real time again.
    pub fn unfreeze_clock(&self) {
        self.expect_success("DELETE /_sim/clock", &Request::delete("/_sim/clock"));
    }

    fn expect_success(&self, what: &str, request: &Request) {
        let response = self.send(request);
        assert!(
            (200..300).contains(&response.status),
            "{what} on the sim answered {}: {}",
            response.status,
            response.text()
        );
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        self.kill();
    }
}

fn answer(response: Response) -> (u16, Value) {
    let body = if response.body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&response.body).unwrap_or_else(|_| Value::String(response.text()))
    };
    (response.status, body)
}

/// The port in the simulator's `tollgate-sim listening on 127.0.0.1:PORT` line.
fn bound_port(log: &str) -> Option<u16> {
    log.lines().find_map(|line| {
        let (_, address) = line.split_once("listening on ")?;
        let address: std::net::SocketAddr = address.trim().parse().ok()?;
        Some(address.port()).filter(|&port| port != 0)
    })
}

/// A list answer, either a bare array or an object holding it under `field`.
fn as_list(value: Value, field: &str) -> Vec<Value> {
    match value {
        Value::Array(items) => items,
        Value::Object(mut object) => match object.remove(field) {
            Some(Value::Array(items)) => items,
            _ => panic!(
                "sim answer has no {field:?} list: {}",
                Value::Object(object)
            ),
        },
        other => panic!("sim answer is not a list: {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bound_port_comes_from_the_listening_line() {
        assert_eq!(
            bound_port("tollgate-sim listening on 127.0.0.1:40123\n"),
            Some(40123)
        );
        assert_eq!(
            bound_port("noise\ntollgate-sim listening on [::1]:80\nmore"),
            Some(80)
        );
        assert_eq!(bound_port("tollgate-sim listening on 127.0.0.1:0"), None);
        assert_eq!(bound_port("listening on nowhere"), None);
        assert_eq!(bound_port(""), None);
    }

    #[test]
    fn lists_come_bare_or_wrapped() {
        assert_eq!(as_list(json!([1, 2]), "requests"), vec![json!(1), json!(2)]);
        assert_eq!(
            as_list(json!({"requests": [3]}), "requests"),
            vec![json!(3)]
        );
        assert!(std::panic::catch_unwind(|| as_list(json!({"other": []}), "requests")).is_err());
        assert!(std::panic::catch_unwind(|| as_list(json!(5), "requests")).is_err());
    }

    #[test]
    fn answers_parse_json_empty_and_text() {
        let response = |body: &[u8]| Response {
            status: 201,
            headers: vec![],
            body: body.to_vec(),
        };
        assert_eq!(answer(response(br#"{"a":1}"#)), (201, json!({"a": 1})));
        assert_eq!(answer(response(b"")), (201, Value::Null));
        assert_eq!(answer(response(b"<xml/>")), (201, json!("<xml/>")));
    }
}
