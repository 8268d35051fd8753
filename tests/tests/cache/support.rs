//! What the cache scenarios share: the filter config, the traffic (requests whose usage and response code are
//! known from their number), the expected accounting computed from what the clients received, and readers for the
//! simulator's counters and Envoy's stats.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};
use tollgate_e2e::{
    Envoy, Request, STATUS_HEADER, Sample, Sim, Stack, StackOptions, wait_until, workspace_root,
};

pub const TEMPLATE: &str = "envoy/test.template.yaml";
pub const SINGLETON_TEMPLATE: &str = "envoy/test-singleton.template.yaml";
/// `svc-cache` (100 applications `app-000`…`app-099` with keys `key-000`…, plus `limited-app`, `suspend-app`,
/// `rekey-app`) and one service per failure policy, each with applications `<fault>-<role>` (key `key`).
pub const SEED: &str = "tests/e2e/cache-seed.json";

pub const CACHE_SERVICE: &str = "svc-cache";
pub const CACHE_HOST: &str = "cache.test";
/// The metrics of `svc-cache`, `hits` being the parent of the others.
pub const METRICS: [&str; 5] = ["hits", "get_items", "create_item", "search", "bulk"];

/// The filter config: `services`, the simulator as backend with `timeout_ms`, and `cache` settings.
pub fn filter_config(cache: Value, timeout_ms: u64, services: Vec<Value>) -> Value {
    json!({
        "backend": {
            "cluster": "threescale_backend",
            "authority": "backend.tollgate.test",
            "timeout_ms": timeout_ms,
        },
        "cache": cache,
        "services": services,
    })
}

/// A service authorized with `x-app-id` / `x-app-key` headers, routed by plan (`Basic` and `Limited` to
/// `production`), with `failure` as its failure policy and `fail_open_cluster` `staging` (so a request let
/// through without a known plan is told apart by the upstream that answers).
pub fn service(id: &str, host: &str, failure: Value) -> Value {
    let mut failure = failure;
    if failure
        .get("policy")
        .is_some_and(|p| p != "deny" && p != "allow_cached")
    {
        failure["fail_open_cluster"] = json!("staging");
    }
    json!({
        "id": id,
        "service_token": format!("tok-{}", id.trim_start_matches("svc-")),
        "match": { "hosts": [host] },
        "credentials": {
            "kind": "app_id",
            "locations": ["header"],
            "headers": { "app_id": "x-app-id", "app_key": "x-app-key" },
        },
        "mapping_rules": [
            { "method": "GET", "pattern": "/items", "metric": "get_items" },
            { "method": "POST", "pattern": "/items$", "metric": "create_item" },
            { "method": "GET", "pattern": "/search", "metric": "search", "delta": 2 },
            { "method": "GET", "pattern": "/items/bulk", "metric": "bulk", "delta": 3 },
        ],
        "plans": { "routes": {
            "Basic": { "cluster": "production" },
            "Limited": { "cluster": "production" },
        } },
        "failure": failure,
    })
}

/// `svc-cache` in cache mode with response codes (the defaults) and the `deny` policy.
pub fn cache_service() -> Value {
    service(CACHE_SERVICE, CACHE_HOST, json!({ "policy": "deny" }))
}

/// Stack options for `config` on the test template with `concurrency` workers.
pub fn options(template: &str, config: Value, concurrency: u32) -> StackOptions {
    let mut options = StackOptions::new(template, config, SEED);
    options.concurrency = concurrency;
    let jwks = workspace_root().join("tests/fixtures/jwt/jwks.json");
    options
        .extra_vars
        .push(("JWKS_PATH".into(), jwks.display().to_string()));
    options
}

pub fn start(config: Value, concurrency: u32) -> Stack {
    Stack::start(options(TEMPLATE, config, concurrency))
}

/// A request of `app` (key `key`) on `host`, its upstream answering `status`.
pub fn request(host: &str, route: Route, app: &str, key: &str, status: u16) -> Request {
    route
        .request()
        .header("host", host)
        .header("x-app-id", app)
        .header("x-app-key", key)
        .header(STATUS_HEADER, status.to_string())
}

/// The requests the traffic is made of, with the usage the mapping rules give them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// `GET /items/…`: get_items 1.
    Items,
    /// `POST /items`: create_item 1.
    Create,
    /// `GET /search?q=…`: search 2.
    Search,
    /// `GET /items/bulk`: get_items 1 and bulk 3 (two rules match).
    Bulk,
}

impl Route {
    pub const ALL: [Route; 4] = [Route::Items, Route::Create, Route::Search, Route::Bulk];

    pub fn request(self) -> Request {
        match self {
            Route::Items => Request::get("/items/42"),
            Route::Create => Request::post("/items"),
            Route::Search => Request::get("/search?q=tollgate"),
            Route::Bulk => Request::get("/items/bulk"),
        }
    }

    /// Usage per metric as reported (3scale adds children to `hits` itself).
    pub fn usage(self) -> &'static [(&'static str, u64)] {
        match self {
            Route::Items => &[("get_items", 1)],
            Route::Create => &[("create_item", 1)],
            Route::Search => &[("search", 2)],
            Route::Bulk => &[("get_items", 1), ("bulk", 3)],
        }
    }
}

/// Statuses the echo upstreams answer with in mixed traffic: tracked codes, a code only its class tracks (201),
/// and errors (usage of a forwarded request counts even when the upstream then fails).
pub const STATUSES: [u16; 6] = [200, 201, 404, 500, 503, 200];

/// Deterministic mixed traffic over `svc-cache` applications: request `seq` is for application `seq % n`, its
/// route and upstream status vary with `seq` so every application sees every combination.
#[derive(Clone, Debug)]
pub struct Traffic {
    pub host: String,
    pub apps: Vec<(String, String)>,
}

impl Traffic {
    /// `app-000`… with their keys, on `cache.test`.
    pub fn cache_apps(count: usize) -> Traffic {
        Traffic::cache_apps_from(0, count)
    }

    pub fn cache_apps_from(first: usize, count: usize) -> Traffic {
        Traffic {
            host: CACHE_HOST.to_owned(),
            apps: (first..first + count)
                .map(|i| (format!("app-{i:03}"), format!("key-{i:03}")))
                .collect(),
        }
    }

    /// Application index, route and upstream status of request `seq`.
    pub fn at(&self, seq: u64) -> (usize, Route, u16) {
        let n = self.apps.len() as u64;
        let app = (seq % n) as usize;
        let round = seq / n;
        let route = Route::ALL[(round % 4) as usize];
        let status = STATUSES[((round / 4 + seq) % STATUSES.len() as u64) as usize];
        (app, route, status)
    }

    pub fn request(&self, seq: u64) -> Request {
        let (app, route, status) = self.at(seq);
        let (id, key) = &self.apps[app];
        request(&self.host, route, id, key, status)
    }

    /// The request of every sequence number, for a load.
    pub fn requests(&self) -> impl Fn(u64) -> Request + Send + Sync + 'static {
        let traffic = self.clone();
        move |seq| traffic.request(seq)
    }

    /// What 3scale must end up with: the usage and codes of every request that reached an upstream.
    pub fn expected(&self, samples: &[Sample]) -> Expected {
        let mut expected = Expected::default();
        for sample in samples.iter().filter(|s| s.reached_upstream()) {
            let (app, route, _) = self.at(sample.seq);
            let status = sample.status.unwrap_or_default();
            expected.add(&self.apps[app].0, route, Some(status));
        }
        for (app, _) in &self.apps {
            expected.apps.entry(app.clone()).or_default();
        }
        expected
    }
}

/// Usage (eternity, every metric of `svc-cache`, `hits` included) and response codes per application.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Expected {
    pub apps: BTreeMap<String, Accounting>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Accounting {
    pub usage: BTreeMap<String, u64>,
    pub codes: BTreeMap<String, u64>,
}

impl Expected {
    /// One request of `app` on `route`, its upstream answering `status` (`None`: not reported with a code).
    pub fn add(&mut self, app: &str, route: Route, status: Option<u16>) {
        let account = self.apps.entry(app.to_owned()).or_default();
        for (metric, delta) in route.usage() {
            *account.usage.entry((*metric).to_owned()).or_default() += delta;
            *account.usage.entry("hits".to_owned()).or_default() += delta;
        }
        if let Some(status) = status {
            for code in tracked_codes(status) {
                *account.codes.entry(code).or_default() += 1;
            }
        }
    }

    /// Usage units as Tollgate counts them (children only: 3scale derives `hits`).
    pub fn units(&self) -> u64 {
        self.apps
            .values()
            .flat_map(|account| account.usage.iter())
            .filter(|(metric, _)| *metric != "hits")
            .map(|(_, units)| units)
            .sum()
    }
}

/// The counters apisonator keeps for one response code: the code itself when tracked, and its class.
pub fn tracked_codes(status: u16) -> Vec<String> {
    let mut codes = vec![format!("{}XX", status / 100)];
    if [200, 403, 404, 500, 503].contains(&status) {
        codes.push(status.to_string());
    }
    codes
}

/// The simulator's usage (eternity) of every `svc-cache` metric, and its response codes, for `app`.
pub fn sim_accounting(sim: &Sim, service: &str, app: &str, metrics: &[&str]) -> Accounting {
    let usage = sim.usage(service, app);
    let codes = sim.response_codes(service, app);
    Accounting {
        usage: metrics
            .iter()
            .filter_map(|metric| {
                let n = usage["metrics"][metric]["eternity"].as_u64().unwrap_or(0);
                (n > 0).then(|| ((*metric).to_owned(), n))
            })
            .collect(),
        codes: codes["codes"]
            .as_object()
            .map(|codes| {
                codes
                    .iter()
                    .filter_map(|(code, n)| Some((code.clone(), n.as_u64().filter(|&n| n > 0)?)))
                    .collect()
            })
            .unwrap_or_default(),
    }
}

/// What the simulator holds for every application of `expected`.
pub fn sim_state(sim: &Sim, service: &str, expected: &Expected) -> Expected {
    Expected {
        apps: expected
            .apps
            .keys()
            .map(|app| (app.clone(), sim_accounting(sim, service, app, &METRICS)))
            .collect(),
    }
}

/// Differences between what the simulator holds and what was expected, one line per application.
pub fn differences(actual: &Expected, expected: &Expected, with_codes: bool) -> Vec<String> {
    expected
        .apps
        .iter()
        .filter_map(|(app, want)| {
            let got = actual.apps.get(app).cloned().unwrap_or_default();
            let usage_differs = got.usage != want.usage;
            let codes_differ = with_codes && got.codes != want.codes;
            (usage_differs || codes_differ).then(|| {
                format!(
                    "{app}: usage {:?} (expected {:?}), codes {:?} (expected {:?})",
                    got.usage, want.usage, got.codes, want.codes
                )
            })
        })
        .collect()
}

/// Waits until the simulator's usage (and codes, when `with_codes`) equal `expected`, then makes sure they stay
/// so for `settle` (no late double report). Panics with the differences on timeout.
pub fn assert_reported(
    sim: &Sim,
    service: &str,
    expected: &Expected,
    with_codes: bool,
    timeout: Duration,
    settle: Duration,
) {
    let mut last = Vec::new();
    let matched = wait_until(timeout, Duration::from_millis(100), || {
        last = differences(&sim_state(sim, service, expected), expected, with_codes);
        last.is_empty().then_some(())
    });
    assert!(
        matched.is_some(),
        "after {timeout:?} the simulator still differs from what the clients got:\n{}",
        last.join("\n")
    );
    std::thread::sleep(settle);
    let after = differences(&sim_state(sim, service, expected), expected, with_codes);
    assert!(
        after.is_empty(),
        "the simulator changed after matching (a late or double report):\n{}",
        after.join("\n")
    );
}

/// A `wasmcustom.tollgate.<name>` counter (0 before the filter first defines it).
pub fn stat(envoy: &Envoy, name: &str) -> u64 {
    envoy
        .stat(&format!("wasmcustom.tollgate.{name}"))
        .unwrap_or(0)
}

/// Every `wasmcustom.tollgate.*` counter, for failure messages.
pub fn tollgate_stats(envoy: &Envoy) -> BTreeMap<String, u64> {
    envoy
        .stats()
        .into_iter()
        .filter_map(|(name, value)| {
            Some((name.strip_prefix("wasmcustom.tollgate.")?.to_owned(), value))
        })
        .filter(|(_, value)| *value > 0)
        .collect()
}

/// Envoy's VM reloads of the filter (`FAIL_RELOAD`): the sum of every reload counter Envoy keeps for it.
pub fn vm_reloads(envoy: &Envoy) -> u64 {
    envoy
        .stats()
        .into_iter()
        .filter(|(name, _)| name.starts_with("wasm.") && name.contains("reload"))
        .filter(|(name, _)| !name.contains("backoff"))
        .map(|(_, value)| value)
        .sum()
}

/// No Rust panic and no VM failure in Envoy's log.
pub fn assert_no_vm_failure(envoy: &Envoy) {
    let log = envoy.log();
    let bad: Vec<&str> = log
        .lines()
        .filter(|line| {
            line.contains("panicked")
                || line.contains("Function: proxy_on")
                || line.contains("wasm failed")
                || line.contains("VM failed")
        })
        .take(5)
        .collect();
    assert!(bad.is_empty(), "the VM failed:\n{}", bad.join("\n"));
    assert_eq!(vm_reloads(envoy), 0, "VM reloads");
}

/// Simulator call counters of one endpoint, all services.
pub fn calls(sim: &Sim, endpoint: &str) -> u64 {
    sim.calls()["total"][endpoint].as_u64().unwrap_or(0)
}

/// Polls `probe` until it holds or `timeout` passes; panics with `what` and the probe's last description.
pub fn wait_for(what: &str, timeout: Duration, mut probe: impl FnMut() -> Result<(), String>) {
    let mut last = String::new();
    let done = wait_until(timeout, Duration::from_millis(50), || match probe() {
        Ok(()) => Some(()),
        Err(why) => {
            last = why;
            None
        }
    });
    assert!(done.is_some(), "{what}: not after {timeout:?}: {last}");
}

/// Summary of samples for failure messages: count per (status, upstream or error code).
pub fn outcomes(samples: &[Sample]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for sample in samples {
        let key = match (&sample.status, &sample.upstream, &sample.error_code) {
            (None, _, _) => format!(
                "no answer ({})",
                sample.failure.as_deref().unwrap_or_default()
            ),
            (Some(status), Some(upstream), _) => format!("{status} from {upstream}"),
            (Some(status), None, Some(code)) => format!("{status} {code}"),
            (Some(status), None, None) => format!("{status}"),
        };
        *counts.entry(key).or_default() += 1;
    }
    counts
}

/// The slowest answer among `samples`.
pub fn slowest(samples: &[Sample]) -> Duration {
    samples.iter().map(|s| s.latency).max().unwrap_or_default()
}

/// Connections each Envoy worker accepted on the main listener, by worker index.
pub fn connections_per_worker(stack: &Stack) -> Vec<u64> {
    let mut per_worker: Vec<u64> = Vec::new();
    for (name, n) in stack.envoy.stats() {
        if !name.starts_with("listener.") || name.starts_with("listener.admin.") {
            continue;
        }
        let Some(rest) = name.strip_suffix(".downstream_cx_total") else {
            continue;
        };
        let Some(worker) = rest
            .rsplit_once(".worker_")
            .and_then(|(_, index)| index.parse::<usize>().ok())
        else {
            continue;
        };
        if per_worker.len() <= worker {
            per_worker.resize(worker + 1, 0);
        }
        per_worker[worker] += n;
    }
    per_worker
}
