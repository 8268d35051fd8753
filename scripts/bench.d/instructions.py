"""Where a cache hit's work goes, counted: Envoy's instructions per request under callgrind.

Timing Envoy on a shared two-core machine moves by ±10 µs per request from run to run, more than some
stages cost. Instructions do not move: valgrind's callgrind counts every instruction Envoy executes,
whatever else the machine does. Each row runs one Envoy under callgrind (V8 and the module included),
sends it the same sequential requests, and subtracts what the same Envoy does idle for as long (its
timers and the module's ticks), so a row is the work one request costs.

Code is split by where it lives: V8 compiles the module's WebAssembly into anonymous memory, so
instructions at addresses that belong to no file and lie above 4 GiB are the module's own work;
everything else (Envoy's binary, which links V8, and libc) is the host's side: callbacks entered,
hostcalls answered, the request proxied.

The rows are a busy application's steady state: leases of 10 s (64 requests each at the most), reports
every minute, a one-hour ttl, 10 applications in turn. Under valgrind Envoy runs ~50 times slower, so
time-driven work (50 ms leases expiring, report flushes) would otherwise be charged per request far
more than at full speed; the timed rows price that work.
"""

from __future__ import annotations

import http.client
import re
import shutil
import subprocess
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

REQUESTS = 2000
WARMUP = 500
APPLICATIONS = 10
BUSY = {"lease_ms": 10000, "report_interval_ms": 60000, "ttl_seconds": 3600}
JIT_FLOOR = 1 << 32



@dataclass(frozen=True)
class Row:
    name: str
    label: str
    # The cut build it counts (bench.d/cuts.py); None: the module under test, or no module with `filtered` off.
    cut: str | None = None
    filtered: bool = True
    service: dict = field(default_factory=dict)  # over {"mode": "cache"}
    cache: dict = field(default_factory=dict)  # over BUSY


# Each stage's row does all the previous one did; the last two are the default without one part.
ROWS = [
    Row("envoy", "Envoy without the filter", filtered=False),
    Row("cut_entered", "the module entered for each callback, returning at once", cut="cut_entered"),
    Row("cut_service", "+ headers read, forged internal headers removed, the service found", cut="cut_service"),
    Row("cut_forward", "+ credentials, mapping rules, the request forwarded, no cache", cut="cut_forward"),
    Row("cache_no_codes", "+ the cache decision from the lease (response codes not reported)",
        service={"report_response_codes": False}),
    Row("cache", "+ the response code read and kept for the report (the default)"),
    Row("cache_no_lease", "the default without leases (`lease_ms: 0`): the shared entry on every request",
        cache={"lease_ms": 0}),
    Row("cut_unlabelled", "the default without per-service stats", cut="cut_unlabelled"),
]


def available() -> str | None:
    """Why the count cannot run here, or None."""
    missing = [tool for tool in ("valgrind", "callgrind_control") if not shutil.which(tool)]
    return f"not installed: {', '.join(missing)}" if missing else None


def configurations(configuration_type, cut_builds: dict) -> list:
    """The rows as bench Configurations (the simulator's seed needs their services before it starts);
    a row whose cut was not built is left out."""
    rows = []
    for row in ROWS:
        wasm = cut_builds.get(row.cut) if row.cut else None
        if row.cut and not isinstance(wasm, Path):
            continue
        rows.append(configuration_type(
            f"ic_{row.name}", row.label, {"mode": "cache", **row.service} if row.filtered else None,
            default=False, wasm=wasm, cache_settings={**BUSY, **row.cache} if row.filtered else None,
        ))
    return rows


def measure(rows: list, start, paths: list[str], work: Path, log) -> dict:
    """Counts each row; `start(configuration, args_prefix)` starts its Envoy and returns (process, port, admin)."""
    results = {}
    for configuration in rows:
        log(f"instructions: {configuration.name} under callgrind ({REQUESTS} requests)")
        out = work / f"callgrind.{configuration.name}"
        prefix = ["valgrind", "--tool=callgrind", "--smc-check=all", f"--callgrind-out-file={out}"]
        process, port, _ = start(configuration, prefix)
        try:
            results[configuration.name.removeprefix("ic_")] = count_row(process.pid, port, paths, out)
        finally:
            process.stop()
    return {
        "method": {"requests": REQUESTS, "warmup": WARMUP, "applications": APPLICATIONS, "cache": BUSY},
        "labels": {row.name: row.label for row in ROWS},
        "rows": results,
    }


def count_row(pid: int, port: int, paths: list[str], out: Path) -> dict:
    send(port, paths, WARMUP)
    control(pid, "-z")
    started = time.monotonic()
    refused = send(port, paths, REQUESTS)
    wall = time.monotonic() - started
    load = dump(pid, out, "load")
    control(pid, "-z")
    time.sleep(wall)
    idle = dump(pid, out, "idle")
    per_request = {side: (load[side] - idle[side]) / REQUESTS for side in ("module", "host")}
    return {
        "module": round(per_request["module"]),
        "host": round(per_request["host"]),
        "total": round(per_request["module"] + per_request["host"]),
        "idle_per_s": round((idle["module"] + idle["host"]) / wall),
        "not_200": refused,
    }


def send(port: int, paths: list[str], n: int) -> int:
    """n sequential requests on one connection, the applications in turn; how many were not answered 200."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    refused = 0
    for i in range(n):
        connection.request("GET", paths[i % APPLICATIONS])
        answer = connection.getresponse()
        answer.read()
        refused += answer.status != 200
    connection.close()
    return refused


def control(pid: int, *args: str) -> None:
    subprocess.run(["callgrind_control", *args, str(pid)], check=True, capture_output=True, timeout=300)


def dump(pid: int, out: Path, trigger: str) -> Counter:
    """Dumps the counts since the last zeroing and returns them by side."""
    before = set(out.parent.glob(out.name + ".*"))
    control(pid, "-d", trigger)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for path in set(out.parent.glob(out.name + ".*")) - before:
            text = path.read_text(errors="replace")
            if f"Trigger: dump {trigger}" in text[:4000] and "totals:" in text:
                return by_side(text)
        time.sleep(0.2)
    raise RuntimeError(f"callgrind did not dump {trigger} for {out.name}")


def by_side(text: str) -> Counter:
    """Self cost of every function, summed by side: the module's JIT-compiled code or the host."""
    names: dict[str, str] = {}
    side = "host"
    sides: Counter = Counter()
    skip_next = False
    current_object = ""
    for line in text.splitlines():
        spec = re.match(r"^(c?ob|c?fn)=\((\d+)\)(?: (.*))?$", line)
        if spec:
            kind, ident, name = spec.groups()
            table = kind.lstrip("c")
            if name is not None:
                names[f"{table}{ident}"] = name
            if kind == "ob":
                current_object = names.get(f"ob{ident}", "")
            elif kind == "fn":
                side = side_of(current_object, names.get(f"fn{ident}", ""))
            continue
        if line.startswith("calls="):
            skip_next = True  # the next cost line is the callee's inclusive cost
            continue
        if line[:1].isdigit() or line[:1] in "+-*":
            if skip_next:
                skip_next = False
                continue
            fields = line.split()
            if len(fields) >= 2:
                sides[side] += int(fields[1])
    return sides


def side_of(object_name: str, function: str) -> str:
    address = re.match(r"0x([0-9a-fA-F]+)$", function)
    jit = object_name == "???" and address is not None and int(address.group(1), 16) >= JIT_FLOOR
    return "module" if jit else "host"

