#!/usr/bin/env python3
"""The benchmark runner behind scripts/bench (which builds and installs what it needs, then runs this).

Starts tollgate-sim, one fixed upstream (an Envoy with a direct_response route) and one Envoy under test
per configuration, all on loopback; then, run after run, measures each configuration in turn (the order
rotates every run, so none always goes first): saturation throughput with wrk (closed loop) and latency at
a fixed request rate with oha (open loop, corrected for coordinated omission), with Envoy's CPU time from
/proc, the simulator's call counters and Envoy's RSS around each measurement. Also runs the native
micro-benchmarks (filter/benches/hot_paths.rs). Writes target/bench/results.json and docs/benchmarks.md.

Placement on the 2-core machine the goals were set on: every Envoy under test is pinned to core 0 and runs
with --concurrency 1; the load generators, the upstream and the simulator share core 1. While one Envoy
under test is measured the others only run their timers, and each one's CPU time is read on its own.

Python 3.11 standard library only: a benchmark harness is not worth a dependency.
"""

from __future__ import annotations

import argparse
import copy
import datetime
import json
import os
import platform
import re
import select
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
OUT_DIR = ROOT / "target" / "bench"
DOC = ROOT / "docs" / "benchmarks.md"
TARGET_DIR = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
# TOLLGATE_BENCH_WASM measures another build of the module (e.g. one with a part of the path cut out).
WASM = Path(os.environ.get("TOLLGATE_BENCH_WASM", TARGET_DIR / "wasm32-wasip1" / "release" / "tollgate.wasm"))
SIM = TARGET_DIR / "release" / "tollgate-sim"
OHA_LOCAL = ROOT / ".tools" / "bin" / "oha"

ENVOY_CORE = "0"
LOAD_CORE = "1"
APPLICATIONS = 100
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
TRANSACTION_ENDPOINTS = ("authorize", "authrep", "oauth_authorize", "oauth_authrep", "report")


@dataclass(frozen=True)
class Configuration:
    """One row of the results: which Envoy, which filter settings, how fast 3scale answers."""

    name: str
    label: str
    # None: Envoy without the filter. Otherwise fields set on every service of bench.d/filter.json.
    service_settings: dict | None
    backend_latency_ms: int = 0
    # Rows not run by default can still be picked with --only.
    default: bool = True
    # Another build of the module (the cuts); None: the one under test.
    wasm: Path | None = None
    # The services come from the simulated admin portal (PORTAL_SERVICES of them), which publishes a
    # new version of one of them every second during the run.
    portal: bool = False
    # Fields set on the configuration's `cache` object.
    cache_settings: dict | None = None


PEER = {"mode": "per_request", "report_response_codes": False}

# The rows, in the order of the tables; the first one (no filter) is the reference for the ratios.
# Adding a configuration is one entry here.
CONFIGURATIONS = [
    Configuration("envoy", "Envoy without the filter (the limit)", None),
    # Mode `cache` is the default; naming it keeps each row saying what it measures.
    Configuration("cache", "Tollgate, cache hits", {"mode": "cache"}),
    # threescale-wasm-auth's behaviour: one authrep per request (tracking response codes would add a report after each).
    Configuration("per_request", "Tollgate per-request (one authrep per request)", PEER),
    Configuration("cache_5ms", "Tollgate, cache hits, 3scale answering after 5 ms", {"mode": "cache"}, 5),
    Configuration("per_request_5ms", "Tollgate per-request, 3scale answering after 5 ms", PEER, 5),
    # A configuration switch under load: every VM recompiles 1,000 services once a second.
    Configuration(
        "portal",
        "Tollgate, cache hits, 1,000 services x 20 rules from the admin portal, a new version every second",
        {"mode": "cache"},
        portal=True,
    ),
    # What tracking response codes costs a cache hit (the end-of-request update of the entry).
    Configuration(
        "cache_no_codes",
        "Tollgate, cache hits, response codes not reported",
        {"mode": "cache", "report_response_codes": False},
        default=False,
    ),
    # What the worker-local leases buy: every cache hit decided in the shared entry, as before them.
    Configuration(
        "cache_no_lease",
        "Tollgate, cache hits, without leases (`lease_ms: 0`)",
        {"mode": "cache"},
        default=False,
        cache_settings={"lease_ms": 0},
    ),
    # Leases twenty times longer: what renewing them costs at this rate (100 applications, one worker).
    Configuration(
        "cache_lease_1s",
        "Tollgate, cache hits, leases of 1 s (`lease_ms: 1000`)",
        {"mode": "cache"},
        default=False,
        cache_settings={"lease_ms": 1000},
    ),
    # The same with almost no background work (reports every minute, refreshes every hour): what the
    # reports and refreshes cost a hit at this rate.
    Configuration(
        "cache_quiet",
        "Tollgate, cache hits, leases of 1 s, reports every 60 s, ttl 1 h",
        {"mode": "cache"},
        default=False,
        cache_settings={"lease_ms": 1000, "report_interval_ms": 60000, "ttl_seconds": 3600},
    ),
]


# --------------------------------------------------------------------------------------------------
# Small helpers


def log(message: str) -> None:
    print(f"bench: {message}", flush=True)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def http(method: str, url: str, body: dict | None = None, timeout: float = 5.0) -> tuple[int, bytes]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def answers(url: str, status: int) -> bool:
    try:
        return http("GET", url, timeout=1)[0] == status
    except OSError:
        return False


def render(template: str, values: dict[str, str]) -> str:
    for name, value in values.items():
        template = template.replace("{{" + name + "}}", value)
    return template


def command_output(args: list[str]) -> str:
    try:
        done = subprocess.run(args, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return (done.stdout + done.stderr).strip()


def first_line(text: str) -> str:
    return text.splitlines()[0].strip() if text else "unknown"


# --------------------------------------------------------------------------------------------------
# Processes


class Process:
    """A child process with its log file; stopped with SIGTERM, then SIGKILL."""

    def __init__(self, name: str, args: list[str], log_path: Path, capture_stdout: bool = False):
        self.name = name
        self.log_path = log_path
        self.log_file = open(log_path, "wb")
        self.popen = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE if capture_stdout else self.log_file,
            stderr=self.log_file,
        )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        if self.alive():
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        self.log_file.close()


def pinned(core: str, args: list[str]) -> list[str]:
    """taskset execs the command, so the child's pid is the command's own."""
    return ["taskset", "-c", core, *args]


def wait_until(what: str, deadline_s: float, check) -> None:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if check():
            return
        time.sleep(0.05)
    raise RuntimeError(f"{what}: not ready after {deadline_s:.0f} s")


def start_sim(work: Path, seed: Path) -> tuple[Process, str, str]:
    """The simulator, with its admin portal: the process, the backend's and the portal's addresses."""
    sim = Process(
        "tollgate-sim",
        pinned(LOAD_CORE, [str(SIM), "--listen", "127.0.0.1:0", "--portal-listen", "127.0.0.1:0",
                           "--seed", str(seed), "--threads", "1"]),
        work / "sim.log",
        capture_stdout=True,
    )
    # It prints one line once it accepts connections; give up after 30 s rather than hang.
    ready, _, _ = select.select([sim.popen.stdout], [], [], 30) if sim.popen.stdout else ([], [], [])
    line = sim.popen.stdout.readline().decode(errors="replace") if ready and sim.popen.stdout else ""
    match = re.match(r"tollgate-sim listening on (\S+)", line)
    portal_line = sim.popen.stdout.readline().decode(errors="replace") if match and sim.popen.stdout else ""
    portal = re.match(r"tollgate-sim portal listening on (\S+)", portal_line)
    if not match or not portal:
        sim.stop()
        raise RuntimeError(f"the simulator did not start: {line!r} {portal_line!r}\n{sim.log_tail()}")
    return sim, match.group(1), portal.group(1)


def render_envoy(configuration: Configuration, listen_port: int, upstream_port: int, sim_address: str,
                 portal_address: str) -> str:
    """The Envoy under test for one configuration ({{ADMIN_PORT}} left for start_envoy)."""
    fragment = (HERE / "tollgate-filter.yaml").read_text()
    tollgate = render(fragment, {
        "WASM_PATH": str(configuration.wasm or WASM),
        # JSON text as a double-quoted YAML scalar: JSON string escapes are YAML's too.
        "FILTER_CONFIG": json.dumps(json.dumps(filter_config(configuration))),
    }) if configuration.service_settings is not None else ""
    return render((HERE / "envoy.template.yaml").read_text(), {
        "LISTEN_PORT": str(listen_port),
        "UPSTREAM_PORT": str(upstream_port),
        "SIM_PORT": sim_address.rsplit(":", 1)[1],
        "PORTAL_PORT": portal_address.rsplit(":", 1)[1],
        "TOLLGATE_FILTER": tollgate.rstrip("\n"),
    })


_base_id = 7300


def start_envoy(name: str, work: Path, envoy: str, yaml: str, core: str,
                prefix: list[str] | None = None) -> tuple[Process, int]:
    """Starts Envoy on `yaml` (whose {{ADMIN_PORT}} it fills) and waits for /ready; returns it and its admin port.
    `prefix`: a command Envoy runs under (valgrind for the instruction counts)."""
    global _base_id
    _base_id += 1
    admin_port = free_port()
    config = work / f"{name}.yaml"
    config.write_text(render(yaml, {"ADMIN_PORT": str(admin_port)}))
    args = [
        envoy, "-c", str(config), "--concurrency", "1", "--disable-hot-restart",
        "--base-id", str(_base_id), "-l", "warn", "--log-path", str(work / f"{name}.envoy.log"),
    ]
    process = Process(name, pinned(core, [*(prefix or []), *args]), work / f"{name}.out.log")

    def ready() -> bool:
        if not process.alive():
            raise RuntimeError(f"Envoy {name} exited:\n{process.log_tail()}\n{tail(work / f'{name}.envoy.log')}")
        try:
            return http("GET", f"http://127.0.0.1:{admin_port}/ready", timeout=1)[0] == 200
        except OSError:
            return False

    wait_until(f"Envoy {name}", 600 if prefix else 60, ready)
    return process, admin_port


def tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


# --------------------------------------------------------------------------------------------------
# What is measured around each load run


def process_cpu_seconds(pid: int) -> float:
    """utime + stime of the whole process (every thread, V8's included), from /proc/PID/stat."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat.rsplit(")", 1)[1].split()
    # After the command name: state is field 3, utime field 14, stime field 15 (1-based).
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def process_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def core_times(core: str) -> tuple[int, int]:
    """(busy, total) jiffies of one core, from /proc/stat."""
    for line in Path("/proc/stat").read_text().splitlines():
        parts = line.split()
        if parts and parts[0] == f"cpu{core}":
            values = [int(v) for v in parts[1:]]
            idle = values[3] + (values[4] if len(values) > 4 else 0)
            return sum(values) - idle, sum(values)
    return 0, 0


def backend_calls(sim_url: str, service: str | None) -> dict[str, int]:
    """The simulator's counters of the service's transaction calls, by endpoint."""
    if service is None:
        return {}
    status, body = http("GET", f"{sim_url}/_sim/calls")
    if status != 200:
        return {}
    counts = json.loads(body).get("services", {}).get(service, {})
    return {endpoint: int(counts.get(endpoint, 0)) for endpoint in TRANSACTION_ENDPOINTS}


def tollgate_allowed(admin_port: int) -> int | None:
    """The filter's own count of requests let through (None without the filter)."""
    try:
        status, body = http("GET", f"http://127.0.0.1:{admin_port}/stats?filter=tollgate.allowed&format=json")
    except OSError:
        return None
    if status != 200:
        return None
    for stat in json.loads(body).get("stats", []):
        if stat.get("name", "").endswith("tollgate.allowed"):
            return int(stat.get("value", 0))
    return None


@dataclass
class Snapshot:
    wall: float
    envoy_cpu: float
    load_core: tuple[int, int]
    backend_calls: dict[str, int]
    allowed: int | None

    @staticmethod
    def take(target: "Target", sim_url: str) -> "Snapshot":
        return Snapshot(
            wall=time.monotonic(),
            envoy_cpu=process_cpu_seconds(target.process.pid),
            load_core=core_times(LOAD_CORE),
            backend_calls=backend_calls(sim_url, target.service_id),
            allowed=tollgate_allowed(target.admin_port) if target.service_id else None,
        )


def around(before: Snapshot, after: Snapshot, requests: int) -> dict:
    """What one load run cost Envoy and the backend, per request."""
    wall = after.wall - before.wall
    cpu = after.envoy_cpu - before.envoy_cpu
    busy = after.load_core[0] - before.load_core[0]
    total = after.load_core[1] - before.load_core[1]
    calls = {name: after.backend_calls.get(name, 0) - before.backend_calls.get(name, 0) for name in after.backend_calls}
    all_calls = sum(calls.values())
    result = {
        "envoy_cpu_s": round(cpu, 3),
        "envoy_cpu_us_per_request": round(cpu / requests * 1e6, 2) if requests else None,
        "envoy_core_busy_pct": round(cpu / wall * 100, 1) if wall else None,
        "load_core_busy_pct": round(busy / total * 100, 1) if total else None,
        "backend_calls": all_calls,
        "backend_calls_by_endpoint": {name: n for name, n in calls.items() if n},
        "backend_calls_per_1000": round(all_calls / requests * 1000, 2) if requests else None,
    }
    if before.allowed is not None and after.allowed is not None:
        result["filter_allowed"] = after.allowed - before.allowed
    return result


# --------------------------------------------------------------------------------------------------
# Load generators


def seconds(text: str) -> float:
    """wrk's durations: 850.00us, 1.63ms, 2.01s, 1.00m."""
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text.strip())
    if not match:
        return float("nan")
    value, unit = float(match.group(1)), match.group(2)
    return value * {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}[unit]


def run_wrk(url: str, paths: Path, duration: int, connections: int) -> dict:
    """Closed loop: as many requests as `connections` keep-alive connections can push."""
    args = pinned(LOAD_CORE, [
        "wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency", "-s", str(HERE / "spread.lua"),
        url, "--", str(paths),
    ])
    out = subprocess.run(args, capture_output=True, text=True, timeout=duration + 60).stdout
    result: dict = {"tool": "wrk", "connections": connections, "duration_s": duration}
    if match := re.search(r"(\d+) requests in ([\d.]+\w+)", out):
        result["requests"] = int(match.group(1))
        result["elapsed_s"] = seconds(match.group(2))
    if match := re.search(r"Requests/sec:\s+([\d.]+)", out):
        result["rps"] = float(match.group(1))
    result["non_2xx"] = int(m.group(1)) if (m := re.search(r"Non-2xx or 3xx responses: (\d+)", out)) else 0
    if match := re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out):
        result["socket_errors"] = sum(int(g) for g in match.groups())
    else:
        result["socket_errors"] = 0
    for pct in ("50", "90", "99"):
        if match := re.search(rf"^\s+{pct}%\s+(\S+)", out, re.MULTILINE):
            result[f"p{pct}_us"] = round(seconds(match.group(1)) * 1e6, 1)
    if "requests" not in result:
        result["error"] = out[-2000:] or "wrk printed nothing"
    return result


def oha_binary() -> str | None:
    if OHA_LOCAL.exists():
        return str(OHA_LOCAL)
    return shutil.which("oha")


def run_oha(oha: str, urls: Path, duration: int, rate: int, connections: int) -> dict:
    """Open loop at a fixed rate; latencies count from when each request was due, not when it was sent."""
    args = pinned(LOAD_CORE, [
        oha, "--no-tui", "--output-format", "json", "-z", f"{duration}s", "-q", str(rate), "-c", str(connections),
        "--latency-correction", "-w", "--urls-from-file", str(urls),
    ])
    done = subprocess.run(args, capture_output=True, text=True, timeout=duration + 60)
    result: dict = {"tool": "oha", "rate": rate, "connections": connections, "duration_s": duration}
    try:
        report = json.loads(done.stdout)
    except json.JSONDecodeError:
        result["error"] = (done.stdout + done.stderr)[-2000:] or "oha printed nothing"
        return result
    summary = report.get("summary", {})
    codes = report.get("statusCodeDistribution", {})
    errors = report.get("errorDistribution", {})
    result["requests"] = sum(int(n) for n in codes.values())
    result["rps"] = round(float(summary.get("requestsPerSec") or 0), 1)
    result["non_2xx"] = sum(int(n) for code, n in codes.items() if not str(code).startswith("2"))
    result["socket_errors"] = sum(int(n) for n in errors.values())
    percentiles = report.get("latencyPercentiles", {})
    for name in ("p50", "p90", "p99", "p99.9"):
        if percentiles.get(name) is not None:
            result[f"{name.replace('.', '_')}_us"] = round(float(percentiles[name]) * 1e6, 1)
    return result


# --------------------------------------------------------------------------------------------------
# The bench


@dataclass
class Target:
    """One Envoy under test, for one configuration."""

    configuration: Configuration
    process: Process
    admin_port: int
    listen_port: int
    service_id: str | None
    runs: list[dict] = field(default_factory=list)


def service_id_of(configuration: Configuration) -> str | None:
    """A service per configuration, so the simulator counts each one's calls apart from idle Envoys' ticks."""
    if configuration.portal:
        return str(PORTAL_FIRST_ID)  # the portal numbers its services
    return None if configuration.service_settings is None else f"bench-{configuration.name}"


PORTAL_SERVICES = 1000
PORTAL_RULES = 20
PORTAL_FIRST_ID = 900000
PORTAL_TOKEN = "bench-portal-token"


def filter_config(configuration: Configuration) -> dict:
    config = json.loads((HERE / "filter.json").read_text())
    if configuration.cache_settings:
        config.setdefault("cache", {}).update(configuration.cache_settings)
    if configuration.portal:
        del config["services"]
        config["portal"] = {
            "cluster": "threescale_portal", "authority": "portal.bench.local", "access_token": PORTAL_TOKEN,
            "refresh_interval_ms": 1000,
            "settings": {str(PORTAL_FIRST_ID): copy.deepcopy(configuration.service_settings or {})},
        }
        return config
    for service in config["services"]:
        service["id"] = service_id_of(configuration)
        service["service_token"] = f"token-{configuration.name}"
        service.update(copy.deepcopy(configuration.service_settings or {}))
    return config


def metric_names() -> list[str]:
    rules = json.loads((HERE / "filter.json").read_text())["services"][0]["mapping_rules"]
    return sorted({rule["metric"] for rule in rules} - {"hits"})


def write_seed(work: Path, configurations: list[Configuration]) -> Path:
    """One service per filtered configuration, each with the same 100 applications on one generous plan."""
    services = []
    for configuration in configurations:
        service_id = service_id_of(configuration)
        if service_id is None:
            continue
        services.append({
            "id": service_id,
            "provider_key": f"pk-{configuration.name}",
            "backend_version": "2",
            "service_tokens": [f"token-{configuration.name}"],
            "metrics": [{"name": "hits"}] + [{"name": m, "parent": "hits"} for m in metric_names()],
            "plans": [{
                "id": "bench",
                "name": "Bench",
                "limits": {
                    "hits": {"minute": 10**12, "month": 10**15},
                    "get_item": {"hour": 10**13},
                },
            }],
            "applications": [
                {"id": f"app-{n}", "plan": "bench", "keys": [f"key-{n}"]} for n in range(1, APPLICATIONS + 1)
            ],
        })
    seed = work / "seed.json"
    document = {"services": services}
    portal = next((c for c in configurations if c.portal), None)
    if portal is not None:
        document["portal"] = {
            "access_tokens": [PORTAL_TOKEN],
            "services": [
                {"id": PORTAL_FIRST_ID + n, "production": [portal_content(portal, n, 0)]} for n in range(PORTAL_SERVICES)
            ],
        }
    seed.write_text(json.dumps(document, indent=1))
    return seed


def portal_content(configuration: Configuration, n: int, version: int) -> dict:
    """Service n of the portal in APIcast's format: the first is bench.d/filter.json's service (answering
    every host), the others answer their own host; each has PORTAL_RULES rules (`version` varies one)."""
    bench = json.loads((HERE / "filter.json").read_text())["services"][0]
    rules = [
        {"http_method": r["method"], "pattern": r["pattern"], "metric_system_name": r["metric"],
         "delta": 1, "last": r.get("last", False)}
        for r in bench["mapping_rules"]
    ] if n == 0 else []
    while len(rules) < PORTAL_RULES:
        rules.insert(0, {"http_method": "GET", "pattern": f"/v{version}/extra{len(rules)}/{{id}}",
                         "metric_system_name": "hits", "delta": 1})
    return {
        "backend_version": "2",
        "backend_authentication_type": "service_token",
        "backend_authentication_value": f"token-{configuration.name}",
        "proxy": {
            "hosts": ["*"] if n == 0 else [f"s{n}.bench.local"],
            "credentials_location": "query",
            "proxy_rules": rules,
        },
    }


class Publisher:
    """Publishes a new version of one portal service every second, in a thread, while the run lasts."""

    def __init__(self, portal_url: str, configuration: Configuration):
        self.url = f"{portal_url}/_sim/portal/services/{PORTAL_FIRST_ID + 1}/proxy/configs/production?access_token={PORTAL_TOKEN}"
        self.configuration = configuration
        self.stop_event = threading.Event()
        self.published = 0
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self) -> None:
        while not self.stop_event.wait(1.0):
            status, _ = http("POST", self.url, portal_content(self.configuration, 1, self.published + 1))
            self.published += status == 201

    def stop(self) -> None:
        self.stop_event.set()
        self.thread.join(timeout=5)


def write_request_lists(work: Path) -> tuple[Path, list[str]]:
    """The same 100 requests for both generators, one application each (the 7th mapping rule matches)."""
    paths = [f"/items/{n}?app_id=app-{n}&app_key=key-{n}" for n in range(1, APPLICATIONS + 1)]
    path_list = work / "paths.txt"
    path_list.write_text("\n".join(paths) + "\n")
    return path_list, paths


def set_backend_latency(sim_url: str, latency_ms: int) -> None:
    if latency_ms:
        status, body = http("PUT", f"{sim_url}/_sim/faults", {"endpoint": "*", "latency_ms": latency_ms})
    else:
        status, body = http("DELETE", f"{sim_url}/_sim/faults")
    if status not in (200, 204):
        raise RuntimeError(f"the simulator refused the fault setting: {status} {body[:200]!r}")


def measure(target: Target, sim_url: str, paths: Path, url_list: Path, options, oha: str | None) -> dict:
    set_backend_latency(sim_url, target.configuration.backend_latency_ms)
    base = f"http://127.0.0.1:{target.listen_port}"
    run: dict = {}

    before = Snapshot.take(target, sim_url)
    saturation = run_wrk(base, paths, options.duration, options.connections)
    after = Snapshot.take(target, sim_url)
    saturation.update(around(before, after, saturation.get("requests", 0)))
    run["saturation"] = saturation

    if oha:
        before = Snapshot.take(target, sim_url)
        fixed = run_oha(oha, url_list, options.duration, options.rate, options.rate_connections)
        after = Snapshot.take(target, sim_url)
        fixed.update(around(before, after, fixed.get("requests", 0)))
        run["fixed_rate"] = fixed

    run["envoy_rss_mib"] = round(process_rss_mib(target.process.pid), 1)
    return run


def summarize(values: list[float]) -> dict | None:
    values = [v for v in values if v is not None and v == v]
    if not values:
        return None
    median = statistics.median(values)
    return {
        "median": round(median, 2),
        "min": round(min(values), 2),
        "max": round(max(values), 2),
        "spread_pct": round((max(values) - min(values)) / median * 100, 1) if median else None,
        "runs": values,
    }


SUMMARIZED = {
    "saturation_rps": ("saturation", "rps"),
    "saturation_cpu_us": ("saturation", "envoy_cpu_us_per_request"),
    "saturation_envoy_busy_pct": ("saturation", "envoy_core_busy_pct"),
    "saturation_load_busy_pct": ("saturation", "load_core_busy_pct"),
    "saturation_p50_us": ("saturation", "p50_us"),
    "saturation_backend_calls_per_1000": ("saturation", "backend_calls_per_1000"),
    "fixed_rps": ("fixed_rate", "rps"),
    "fixed_p50_us": ("fixed_rate", "p50_us"),
    "fixed_p90_us": ("fixed_rate", "p90_us"),
    "fixed_p99_us": ("fixed_rate", "p99_us"),
    "fixed_p99_9_us": ("fixed_rate", "p99_9_us"),
    "fixed_cpu_us": ("fixed_rate", "envoy_cpu_us_per_request"),
    "fixed_backend_calls_per_1000": ("fixed_rate", "backend_calls_per_1000"),
    "envoy_rss_mib": (None, "envoy_rss_mib"),
}


def summarize_target(target: Target) -> dict:
    summary = {}
    for name, (phase, key) in SUMMARIZED.items():
        values = [(run.get(phase, {}) if phase else run).get(key) for run in target.runs]
        summary[name] = summarize(values)
    errors = 0
    for run in target.runs:
        for phase in ("saturation", "fixed_rate"):
            part = run.get(phase, {})
            errors += part.get("non_2xx", 0) + part.get("socket_errors", 0) + (1 if "error" in part else 0)
    summary["errors"] = errors
    return summary


def add_ratios(summaries: dict[str, dict], reference: str) -> None:
    base = summaries[reference]

    def median(summary: dict, name: str) -> float | None:
        value = summary.get(name)
        return value["median"] if value else None

    for summary in summaries.values():
        ratios = {}
        rps, base_rps = median(summary, "saturation_rps"), median(base, "saturation_rps")
        if rps is not None and base_rps:
            ratios["saturation_rps_ratio"] = round(rps / base_rps, 3)
        for name, source in (
            ("added_cpu_us_saturation", "saturation_cpu_us"),
            ("added_cpu_us_fixed_rate", "fixed_cpu_us"),
            ("added_p50_us_fixed_rate", "fixed_p50_us"),
            ("added_p99_us_fixed_rate", "fixed_p99_us"),
        ):
            value, base_value = median(summary, source), median(base, source)
            if value is not None and base_value is not None:
                ratios[name] = round(value - base_value, 1)
        summary["vs_reference"] = ratios


# --------------------------------------------------------------------------------------------------
# Micro-benchmarks (divan)


def run_micro(quick: bool) -> dict:
    """Runs filter/benches/hot_paths.rs and reads divan's table: median ns/op and allocations/op per leaf."""
    args = ["cargo", "bench", "-p", "tollgate", "--bench", "hot_paths", "--", "--color", "never"]
    if quick:
        args += ["--sample-count", "20"]
    done = subprocess.run(args, cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        return {"error": done.stderr[-3000:]}
    return parse_divan(done.stdout)


def to_ns(text: str) -> float | None:
    match = re.fullmatch(r"([\d.]+)\s*(ps|ns|µs|us|ms|s)", text.strip())
    if not match:
        return None
    factor = {"ps": 1e-3, "ns": 1.0, "µs": 1e3, "us": 1e3, "ms": 1e6, "s": 1e9}[match.group(2)]
    return round(float(match.group(1)) * factor, 1)


def parse_divan(output: str) -> dict:
    """divan prints a tree; columns are separated by │ at the header's positions."""
    hostcalls: dict[str, dict[str, int]] = {}
    benches: dict[str, dict] = {}
    lines = output.splitlines()
    header = next((line for line in lines if "fastest" in line and "median" in line), None)
    if header is None:
        return {"error": "no divan table in the output", "raw": output[-3000:]}
    separators = [i for i, char in enumerate(header) if char == "│"]
    stack: list[tuple[int, str]] = []
    current: str | None = None
    pending_alloc = False
    for line in lines:
        if line.startswith("hostcalls: "):
            phase, count, name = line[len("hostcalls: "):].split(" ", 2)
            hostcalls.setdefault(phase, {})[name] = int(count)
            continue
        if line is header or len(line) <= separators[0]:
            continue
        first = line[: separators[0]]
        median_column = line[separators[1] + 1 : separators[2]].strip() if len(separators) > 2 else ""
        label_start = next((i for i, char in enumerate(first) if char.isalnum() or char == "_"), None)
        if label_start is None:
            continue
        label = first[label_start:].split()
        if pending_alloc and current and label and label[0][0].isdigit():
            benches[current]["allocs_per_op"] = float(median_column.split()[0]) if median_column else None
            pending_alloc = False
            continue
        if label[0] in ("alloc:", "max", "dealloc:", "grow:"):
            pending_alloc = label[0] == "alloc:"
            continue
        if label[0][0].isdigit():
            continue
        while stack and stack[-1][0] >= label_start:
            stack.pop()
        stack.append((label_start, label[0]))
        median = to_ns(median_column)
        if median is not None:
            current = "/".join(name for _, name in stack)
            benches[current] = {"median_ns": median, "allocs_per_op": 0.0}
    return {"benchmarks": benches, "hostcalls_per_request": hostcalls}


# --------------------------------------------------------------------------------------------------
# Machine, versions


def machine() -> dict:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cores": os.cpu_count(),
        "cpu_model": model,
        "kernel": platform.release(),
        "virtualization": first_line(command_output(["systemd-detect-virt"])) or "unknown",
    }


def versions(envoy: str, oha: str | None) -> dict:
    wrk = next((line for line in command_output(["wrk", "-v"]).splitlines() if line.startswith("wrk")), "unknown")
    commit = command_output(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"]) or "unknown"
    dirty = command_output(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"])
    return {
        "tollgate_commit": first_line(commit) + ("+changes" if dirty else ""),
        "envoy": first_line(command_output([envoy, "--version"])).split("version: ")[-1],
        "wrk": wrk.split(" Copyright")[0],
        "oha": first_line(command_output([oha, "--version"])) if oha else "not installed",
        "rustc": first_line(command_output(["rustc", "--version"])),
        "python": platform.python_version(),
    }


# --------------------------------------------------------------------------------------------------
# Main


def parse_options(argv: list[str]):
    parser = argparse.ArgumentParser(prog="scripts/bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 run x 3 s, 1 s warm-up")
    parser.add_argument("--runs", type=int, help="runs per configuration (default 5)")
    parser.add_argument("--duration", type=int, help="seconds per measurement (default 15)")
    parser.add_argument("--warmup", type=int, help="seconds of unrecorded load per configuration first (default 5)")
    parser.add_argument("--rate", type=int, default=1000, help="fixed request rate for latency (default 1000)")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections (default 32)")
    parser.add_argument("--rate-connections", type=int, default=16, help="oha connections (default 16)")
    names = ", ".join(c.name if c.default else f"{c.name} (only with --only)" for c in CONFIGURATIONS)
    parser.add_argument(
        "--only", nargs="+", metavar="NAME", help=f"only these configurations, the first is the reference: {names}"
    )
    parser.add_argument("--no-micro", action="store_true", help="skip the micro-benchmarks")
    parser.add_argument("--no-doc", action="store_true", help="do not rewrite docs/benchmarks.md")
    parser.add_argument(
        "--cuts",
        action="store_true",
        help="also measure builds with the cache-hit path cut short (bench.d/cuts.py): where its time goes",
    )
    parser.add_argument(
        "--instructions",
        action="store_true",
        help="also count Envoy's instructions per request under callgrind, by stage (bench.d/instructions.py)",
    )
    options = parser.parse_args(argv)
    options.runs = options.runs or (1 if options.quick else 5)
    options.duration = options.duration or (3 if options.quick else 15)
    options.warmup = options.warmup if options.warmup is not None else (1 if options.quick else 5)
    return options


def run_kind(options) -> str:
    """`benchmark` only when the run follows the method (every configuration, at least 5 runs of 15 s)."""
    if options.quick:
        return "smoke"
    selected = set(options.only or [])
    every_default = all(c.name in selected for c in CONFIGURATIONS if c.default)
    if options.runs < 5 or options.duration < 15 or (options.only and not every_default):
        return "partial"
    return "benchmark"


def selected_configurations(options) -> list[Configuration]:
    if not options.only:
        return [c for c in CONFIGURATIONS if c.default]
    known = {c.name: c for c in CONFIGURATIONS}
    unknown = [name for name in options.only if name not in known]
    if unknown:
        raise SystemExit(f"bench: unknown configuration(s) {unknown}; known: {list(known)}")
    return [known[name] for name in options.only]


def sibling(name: str):
    """A module of bench.d needed only with some options (cuts, instructions)."""
    sys.dont_write_bytecode = True  # no __pycache__ in the source tree
    sys.path.insert(0, str(HERE))
    return __import__(name)


def add_cuts(configurations: list[Configuration], built: dict) -> dict[str, str]:
    """Appends the cache rows the stages need and one cache-mode row per cut built; returns why the
    cuts not built are missing."""
    CUTS = sibling("cuts").CUTS
    # The stages end with the real module, without and with response codes.
    known = {c.name: c for c in CONFIGURATIONS}
    for name in ("cache", "cache_no_codes"):
        if all(c.name != name for c in configurations):
            configurations.append(known[name])
    missing = {}
    for cut in CUTS:
        wasm = built.get(cut.name)
        if isinstance(wasm, Path):
            configurations.append(Configuration(cut.name, cut.label, {"mode": "cache"}, default=False, wasm=wasm))
        else:
            log(f"{cut.name}: {wasm}")
            missing[cut.name] = str(wasm)
    return missing


def main(argv: list[str]) -> int:
    options = parse_options(argv)
    configurations = selected_configurations(options)
    envoy = command_output([str(ROOT / "scripts" / "envoy-path")])
    if not envoy or not Path(envoy).exists():
        raise SystemExit("bench: no Envoy; run scripts/setup")
    oha = oha_binary()
    if oha is None:
        log("oha is missing: latency at a fixed rate will not be measured")
    started = datetime.datetime.now(datetime.timezone.utc)
    work = OUT_DIR / "work"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)

    micro = {} if options.no_micro else (log("micro-benchmarks (cargo bench -p tollgate)") or run_micro(options.quick))
    instructions = sibling("instructions") if options.instructions else None
    if instructions and (why := instructions.available()):
        log(f"instructions not counted: {why}")
        instructions = None
    built = sibling("cuts").build(ROOT, work, log) if options.cuts or instructions else {}
    cut_notes = add_cuts(configurations, built) if options.cuts else {}
    counted = instructions.configurations(Configuration, built) if instructions else []

    seed = write_seed(work, configurations + counted)
    paths, path_list = write_request_lists(work)
    processes: list[Process] = []
    publishers: list[Publisher] = []
    targets: list[Target] = []
    counts: dict | None = None
    try:
        sim, sim_address, portal_address = start_sim(work, seed)
        processes.append(sim)
        sim_url = f"http://{sim_address}"

        upstream_port = free_port()
        upstream_yaml = render((HERE / "upstream.yaml").read_text(), {"LISTEN_PORT": str(upstream_port)})
        upstream, _ = start_envoy("upstream", work, envoy, upstream_yaml, LOAD_CORE)
        processes.append(upstream)

        def envoy_yaml(configuration: Configuration, listen_port: int) -> str:
            return render_envoy(configuration, listen_port, upstream_port, sim_address, portal_address)

        for configuration in configurations:
            listen_port = free_port()
            yaml = envoy_yaml(configuration, listen_port)
            process, admin_port = start_envoy(configuration.name, work, envoy, yaml, ENVOY_CORE)
            processes.append(process)
            if configuration.portal:
                first = f"http://127.0.0.1:{listen_port}{path_list[0]}"
                wait_until(f"Envoy {configuration.name}: services from the portal", 60, lambda: answers(first, 200))
                publishers.append(Publisher(f"http://{portal_address}", configuration))
            targets.append(Target(configuration, process, admin_port, listen_port, service_id_of(configuration)))
        # oha takes full URLs; every Envoy has its own port, so one list per target.
        for target in targets:
            (work / f"urls-{target.configuration.name}.txt").write_text(
                "".join(f"http://127.0.0.1:{target.listen_port}{p}\n" for p in path_list)
            )

        log(f"warm-up: {options.warmup} s per configuration")
        for target in targets:
            set_backend_latency(sim_url, target.configuration.backend_latency_ms)
            if options.warmup:
                run_wrk(f"http://127.0.0.1:{target.listen_port}", paths, options.warmup, options.connections)

        for run_index in range(options.runs):
            shift = run_index % len(targets)
            for target in targets[shift:] + targets[:shift]:
                name = target.configuration.name
                log(f"run {run_index + 1}/{options.runs}: {name}")
                url_list = work / f"urls-{name}.txt"
                result = measure(target, sim_url, paths, url_list, options, oha)
                result["run"] = run_index + 1
                target.runs.append(result)
                sat, fixed = result["saturation"], result.get("fixed_rate", {})
                log(
                    f"  {sat.get('rps', 0):.0f} req/s, {sat.get('envoy_cpu_us_per_request')} µs CPU/req; "
                    f"at {options.rate}/s p50 {fixed.get('p50_us')} µs p99 {fixed.get('p99_us')} µs; "
                    f"backend calls/1000 {fixed.get('backend_calls_per_1000', sat.get('backend_calls_per_1000'))}"
                )
        set_backend_latency(sim_url, 0)

        if instructions:
            def start_counted(configuration: Configuration, prefix: list[str]) -> tuple[Process, int, int]:
                port = free_port()
                yaml = envoy_yaml(configuration, port)
                process, admin_port = start_envoy(configuration.name, work, envoy, yaml, ENVOY_CORE, prefix)
                return process, port, admin_port

            counts = instructions.measure(counted, start_counted, path_list, work, log)
            counts["method"]["valgrind"] = first_line(command_output(["valgrind", "--version"]))
    finally:
        for publisher in publishers:
            publisher.stop()
            log(f"portal: {publisher.published} versions published during the run")
        for process in reversed(processes):
            process.stop()

    summaries = {t.configuration.name: summarize_target(t) for t in targets}
    add_ratios(summaries, configurations[0].name)
    results = {
        "kind": run_kind(options),
        "started": started.isoformat(timespec="seconds"),
        "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine(),
        "versions": versions(envoy, oha),
        "wasm_bytes": WASM.stat().st_size,
        "method": {
            "runs": options.runs,
            "duration_s": options.duration,
            "warmup_s": options.warmup,
            "wrk_connections": options.connections,
            "fixed_rate": options.rate,
            "oha_connections": options.rate_connections,
            "applications": APPLICATIONS,
            "envoy_core": ENVOY_CORE,
            "load_core": LOAD_CORE,
            "envoy_concurrency": 1,
        },
        "configurations": [
            {
                "name": t.configuration.name,
                "label": t.configuration.label,
                "service_settings": t.configuration.service_settings,
                "backend_latency_ms": t.configuration.backend_latency_ms,
                "summary": summaries[t.configuration.name],
                "runs": t.runs,
            }
            for t in targets
        ],
        "micro": micro,
        # Cuts asked for (--cuts) that could not be built, and why.
        "cuts_missing": cut_notes,
        # Envoy's instructions per request under callgrind (--instructions), by stage and side.
        "instructions": counts,
    }
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    (OUT_DIR / "results.json").write_text(json.dumps(results, indent=1, ensure_ascii=False) + "\n")
    log(f"wrote {(OUT_DIR / 'results.json').relative_to(ROOT)}")
    if not options.no_doc:
        sys.dont_write_bytecode = True  # no __pycache__ in the source tree
        sys.path.insert(0, str(HERE))
        from report import write_doc  # noqa: E402  (a sibling module, imported once the results exist)

        DOC.write_text(write_doc(results))
        log(f"wrote {DOC.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
