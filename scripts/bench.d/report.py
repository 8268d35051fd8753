"""Turns target/bench/results.json into docs/benchmarks.md: the goals beside the results, the tables,
the micro-benchmarks, the hostcall profile, the method and how to reproduce.

Every sentence about a goal is chosen from what was measured, so a fresh run never leaves an old
verdict behind; `python3 scripts/bench.d/report.py` re-renders the doc from the last results.json.
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# The project's performance goals.
CPU_BUDGET_US = 10.0
THROUGHPUT_FLOOR = 0.75
LATENCY_BUDGET_US = 50.0
SLOW_BACKEND_BUDGET_US = 1000.0
CALLS_PER_1000_CEILING = 10.0
WASM_CEILING_BYTES = 600 * 1024
# How much slower V8 runs the filter's Rust than native code (1.5-3x; the middle is used for estimates).
V8_SLOWDOWN = 2.0
# A core this busy during a saturation run was the bottleneck.
BUSY_PCT = 90.0

# What one hostcall costs inside V8 on this kind of machine: measured in
# shared/reference/envoy-proxy-wasm-notes.md §5.1, or estimated from the closest measured call.
HOSTCALL_NS: dict[str, tuple[float | None, str]] = {
    "get_http_request_headers (the map)": (1400, "measured for a small request's whole header map"),
    "get_http_request_header (found)": (594, "measured"),
    "get_http_request_header (absent)": (102, "measured"),
    "set_http_request_header": (174, "measured (includes the route-cache clear)"),
    "remove_http_request_header": (174, "estimate: as a header set"),
    "get_property": (661, "measured (612–701 by property)"),
    "set_property (filter state)": (174, "estimate: sends bytes only, as a header set"),
    "increment_metric": (54, "measured"),
    "get_current_time": (100, "estimate: returns 8 bytes, no guest allocation"),
    "get_http_call_response_header": (594, "estimate: as a request header read"),
    "get_http_call_response_body": (701, "estimate: a returned buffer, as get_property"),
    "dispatch_http_call": (None, "not measured alone: the callout's whole cost shows in the per-request rows"),
    "resume_http_request": (None, "not measured"),
    "set_http_response_header": (174, "estimate: as a request header set"),
    "get_shared_data": (601, "measured for an 8-byte value; more for a larger entry"),
    "set_shared_data": (142, "measured for 64 bytes, no CAS"),
    "enqueue_shared_queue": (328, "measured (32 bytes)"),
    "dequeue_shared_queue": (582, "measured"),
}


# --------------------------------------------------------------------------------------------------
# Number formatting


def number(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "–"
    return f"{value:,.{digits}f}"


def spread(summary: dict | None, digits: int = 0) -> str:
    """`median (min–max)`, or the single value of a one-run smoke test."""
    if not summary:
        return "–"
    median = number(summary["median"], digits)
    if len(summary["runs"]) < 2:
        return median
    return f"{median} ({number(summary['min'], digits)}–{number(summary['max'], digits)})"


def median(config: dict | None, name: str) -> float | None:
    if not config:
        return None
    value = config["summary"].get(name)
    return value["median"] if value else None


def limited_by(config: dict) -> str:
    """Which side held a saturation run back, from how busy each core was."""
    envoy, load = median(config, "saturation_envoy_busy_pct"), median(config, "saturation_load_busy_pct")
    if envoy is None or load is None:
        return "–"
    if envoy >= BUSY_PCT:
        return "Envoy"
    if load >= BUSY_PCT:
        return "**load core**"
    return "connections × latency"


def signed(value: float | None, unit: str, digits: int = 0) -> str:
    if value is None:
        return "–"
    return f"{value:+,.{digits}f} {unit}"


# --------------------------------------------------------------------------------------------------
# Goals

# Set by write_doc: verdicts of a smoke or partial run say so.
_RUN_KIND = "benchmark"


def verdict(met: bool) -> str:
    word = "met" if met else "NOT MET"
    if _RUN_KIND != "benchmark":
        return f"**{word}** (in this {_RUN_KIND} run)"
    return f"**{word}**"


def is_cut(config: dict) -> bool:
    """A build with the path cut short (--cuts): shown in its own section, not beside the real rows."""
    return config["name"].startswith("cut_")


def table_rows(results: dict) -> list[dict]:
    return [config for config in results["configurations"] if not is_cut(config)]


def by_name(results: dict) -> dict[str, dict]:
    return {config["name"]: config for config in results["configurations"]}


def cache_hit_estimate(results: dict) -> dict | None:
    """The cache-hit path priced from the micro-benchmarks: hostcalls, own work (× V8), the empty filter."""
    micro = results.get("micro") or {}
    phases = micro.get("hostcalls_per_request") or {}
    bench = (micro.get("benchmarks") or {}).get("whole_request/cache_hit")
    if not phases.get("cache_hit") or not phases.get("cache_hit_answered_locally", {}).get("true") or not bench:
        return None
    _, totals = hostcall_rows(phases, ["cache_hit"])
    hostcalls = totals.get("cache_hit", 0.0) / 1000
    own = V8_SLOWDOWN * bench["median_ns"] / 1000
    return {
        "hostcalls": hostcalls,
        "own": own,
        "allocs": bench.get("allocs_per_op"),
        "total": hostcalls + own,
    }


def goal_cache_hit(rows: dict[str, dict], reference: dict, results: dict) -> list[str]:
    lines = [
        f"### Cache-hit path: added CPU ≤ {CPU_BUDGET_US:.0f} µs/request, saturation ≥ {THROUGHPUT_FLOOR}× "
        f"Envoy alone, added median latency ≤ {LATENCY_BUDGET_US:.0f} µs at 1,000 requests/s",
        "",
    ]
    cache, per_request = rows.get("cache"), rows.get("per_request")
    if cache is None:
        lines.append(
            "**Not measured in this run**: no cache-hit row. The cache rows are not in the default run until "
            "the cache is final (`default=False` in `CONFIGURATIONS`, `scripts/bench.d/run.py`); "
            "`scripts/bench --only envoy cache per_request cache_5ms per_request_5ms` runs them."
        )
        if per_request:
            ratio = per_request["summary"]["vs_reference"]
            lines += [
                "",
                f"For comparison, per-request mode (one `authrep` per request) adds "
                f"{signed(ratio.get('added_cpu_us_saturation'), 'µs', 1)} of Envoy CPU per request at saturation, "
                f"runs at {number(ratio.get('saturation_rps_ratio'), 2)}× Envoy alone's throughput and adds "
                f"{signed(ratio.get('added_p50_us_fixed_rate'), 'µs')} to the median at 1,000 requests/s.",
                "",
                "What limits it: every request pays a callout (Envoy builds an HTTP request, waits for the simulator, "
                "parses the answer) and its XML parse inside V8. What will move it: the cache (one shared-data "
                "read and write per request instead of a callout), then the hostcall cuts listed under "
                "[Profile](#profile-of-the-request-path-hostcalls-and-allocations).",
            ]
        return lines
    ratio = cache["summary"]["vs_reference"]
    cpu, throughput, p50 = (
        ratio.get("added_cpu_us_saturation"),
        ratio.get("saturation_rps_ratio"),
        ratio.get("added_p50_us_fixed_rate"),
    )
    checks = [
        ("added CPU", cpu is not None and cpu <= CPU_BUDGET_US, signed(cpu, "µs/request", 1)),
        ("throughput", throughput is not None and throughput >= THROUGHPUT_FLOOR, f"{number(throughput, 2)}×"),
        ("added median latency", p50 is not None and p50 <= LATENCY_BUDGET_US, signed(p50, "µs")),
    ]
    for what, met, measured in checks:
        lines.append(f"- {what}: {measured}: {verdict(met)}")
    reference_p50 = reference["summary"].get("fixed_p50_us") or {}
    if p50 is not None and reference_p50 and abs(p50) < reference_p50["max"] - reference_p50["min"]:
        lines += [
            "",
            f"The added median is smaller than run-to-run noise: Envoy alone's median at 1,000 requests/s ranged "
            f"{number(reference_p50['min'])}–{number(reference_p50['max'])} µs over the runs. Read it as "
            "\"no measurable added latency at this rate\", not as a precise figure.",
        ]
    if limited_by(reference) != "Envoy":
        lines += [
            "",
            f"Row 1 was not limited by Envoy ({limited_by(reference)}), so the throughput ratio understates "
            "what the filter costs; the added CPU per request is the comparison to trust.",
        ]
    if not all(met for _, met, _ in checks):
        stages = cut_stages(results)
        if stages:
            parts = "; ".join(f"{label_short} {signed(cost, 'µs', 1)}" for label_short, _, _, cost in stages)
            lines += [
                "",
                f"What limits it, measured stage by stage ([table](#where-a-cache-hits-time-goes-measured)): "
                f"{parts}. What would move it: the items listed under the profile.",
            ]
            lines += counted_limits(results)
        else:
            estimate = cache_hit_estimate(results)
            parts = (
                f"the profile below prices {estimate['hostcalls']:.1f} µs of hostcalls and {estimate['own']:.1f} µs "
                f"of the filter's own work ({number(estimate['allocs'])} allocations)"
                if estimate
                else "the cache-hit path's hostcalls"
            )
            lines += [
                "",
                f"What limits it: {parts}; the rest is V8's entry into the module for each callback, Envoy's side "
                "of each hostcall and the usage reports flushed on ticks, which `scripts/bench --cuts` measures "
                "stage by stage. What would move it: the items listed under the profile.",
            ]
    return lines


# The stages of a cache hit, each build doing all the previous one did and more: (row, short label, label;
# None: the row's own label).
STAGES = [
    ("cut_entered", "entering the module", None),
    ("cut_service", "headers and service", None),
    ("cut_forward", "credentials, mapping rules, forwarding", None),
    ("cache_no_codes", "cache decision and batched reports",
     "+ the cache: decided from the worker's lease (renewed with one CAS on the shared entry when it runs "
     "out or expires); usage reported in batches (`report_response_codes: false`)"),
    ("cache", "response codes",
     "+ response codes: the `:status` read at the end of the request into the lease, one report "
     "transaction per request (the default)"),
]


def cut_stages(results: dict) -> list[tuple[str, str, float, float]]:
    """(short label, row label, added CPU, this stage's cost) per measured stage; empty without the cuts."""
    rows = by_name(results)
    if not any(name in rows for name in ("cut_entered", "cut_service", "cut_forward")):
        return []
    stages, previous = [], 0.0
    for name, short, label in STAGES:
        config = rows.get(name)
        added = config["summary"]["vs_reference"].get("added_cpu_us_saturation") if config else None
        if added is None:
            continue
        stages.append((short, label or config["label"], added, added - previous))
        previous = added
    return stages


def cut_noise(results: dict) -> float:
    """Half the run-to-run range of Envoy's CPU per request, the median over the reference and the stage rows."""
    rows = by_name(results)
    names = ["envoy"] + [name for name, _, _ in STAGES]
    halves = [
        (cpu["max"] - cpu["min"]) / 2
        for name in names
        if (cpu := (rows.get(name) or {}).get("summary", {}).get("saturation_cpu_us"))
    ]
    return statistics.median(halves) if halves else 0.0


def labelled_stats_lines(results: dict) -> list[str]:
    """What the per-service stats cost a cache hit: the module against its build without them."""
    rows = by_name(results)
    full, unlabelled = rows.get("cache"), rows.get("cut_unlabelled")
    if not full or not unlabelled:
        return []
    with_stats, without = median(full, "saturation_cpu_us"), median(unlabelled, "saturation_cpu_us")
    if with_stats is None or without is None:
        return []
    cost = with_stats - without
    counted = labelled_stats_counted(results)
    timed = (
        f"Every stat counted for its service too (`docs/observability.md`): {signed(cost, 'µs', 1)} per cache hit "
        f"(`cache` against `cut_unlabelled`, the same module without the per-service counters), a difference of "
        f"medians to read against the run-to-run noise stated below (±{cut_noise(results):.1f} µs)"
    )
    if counted is None:
        verdict_text = f": {verdict(cost <= 1.0)}."
    else:
        instructions = counted_difference(results, "cache", "cut_unlabelled")
        verdict_text = (
            f"; counted, {instructions:+,} instructions per request ({signed(counted, 'µs', 1)} at Envoy alone's "
            f"rate): {verdict(counted <= 1.0)}. Counters are summed in the VM and handed to Envoy at each tick, "
            "so a hit's stats cost no hostcall."
        )
    return ["", "### Per-service stats: at most 1 µs of Envoy CPU per cache hit", "", timed + verdict_text]


def counted_difference(results: dict, name: str, other: str) -> int | None:
    """Instructions per request of one counted row over another; None when either was not counted."""
    rows = (results.get("instructions") or {}).get("rows") or {}
    if name not in rows or other not in rows:
        return None
    return rows[name]["total"] - rows[other]["total"]


def labelled_stats_counted(results: dict) -> float | None:
    """The per-service stats' counted cost per hit, priced at Envoy alone's rate; None when not counted."""
    difference = counted_difference(results, "cache", "cut_unlabelled")
    price = us_per_instruction(results)
    return difference * price if difference is not None and price else None


def cuts_section(results: dict) -> list[str]:
    stages = cut_stages(results)
    lines = ["## Where a cache hit's time goes (measured)", ""]
    if not stages:
        return lines + [
            "Not measured in this run: `scripts/bench --cuts` builds the module with the path cut short at each "
            "stage and measures each build beside the others.",
        ]
    lines += [
        "Builds of the module with the path cut short (`scripts/bench.d/cuts.py`: an early return added to the "
        "committed source), measured in the same interleaved runs as the rows above; each stage does all the "
        "previous one did. Added CPU: Envoy's CPU per request at saturation minus Envoy alone's.",
        "",
    ]
    rows = [
        [f"{index}. {label}", signed(added, "µs", 1), signed(cost, "µs", 1)]
        for index, (_, label, added, cost) in enumerate(stages, 1)
    ]
    lines += table(["build", "added CPU", "this stage"], rows)
    lines += labelled_stats_lines(results)
    missing = results.get("cuts_missing") or {}
    if missing:
        lines += ["", "Not measured: " + "; ".join(f"`{name}` {why}" for name, why in missing.items()) + "."]
    lines += [
        "",
        f"Differences of medians; a row's CPU per request varied by about ±{cut_noise(results):.1f} µs from run "
        "to run (half its range, the median over these rows): read the stages, not the decimals. An empty proxy-wasm filter (the SDK's defaults for every callback) measured within that "
        "noise of Envoy alone in a one-off run on this machine (3 × 8 s), so stage 1 is what entering "
        "Tollgate's own callbacks costs.",
        "",
        "Which side of the boundary the time is on: `perf record` of the Envoy under cache-hit load "
        "(`report_response_codes: false`, 2026-11-29, one-off; Envoy's binary is stripped, so by module only) "
        "put 10.6 % of its CPU in V8-compiled code, about 4.6 µs per request: the module's own work. The rest "
        "of what Tollgate adds is in Envoy's binary, which links V8: the hostcalls' implementations and V8's "
        "calls in and out of the module. Fewer hostcalls and callbacks move the number more than faster Rust. "
        "The instruction counts below split it exactly.",
    ]
    return lines


def counted_stages(results: dict) -> list[tuple[str, str, dict, dict]]:
    """(short label, row label, counts, this stage's counts) per counted stage; empty without the counts."""
    counts = results.get("instructions") or {}
    rows, labels = counts.get("rows") or {}, counts.get("labels") or {}
    envoy = rows.get("envoy")
    if not envoy:
        return []
    stages, previous = [], envoy
    for name, short, _ in STAGES:  # the timed stages' builds, counted
        row = rows.get(name)
        if not row:
            continue
        stage = {side: row[side] - previous[side] for side in ("module", "host", "total")}
        stages.append((short, labels.get(name, name), row, stage))
        previous = row
    return stages


def us_per_instruction(results: dict) -> float | None:
    """Envoy alone's measured CPU per request over its counted instructions: a price for the counts."""
    envoy_counts = ((results.get("instructions") or {}).get("rows") or {}).get("envoy")
    cpu = median(by_name(results).get("envoy"), "saturation_cpu_us")
    return cpu / envoy_counts["total"] if envoy_counts and cpu else None


def thousands(value: float) -> str:
    return f"{value / 1000:+.1f} k" if value else "0"


def counted_limits(results: dict) -> list[str]:
    """The goal's gap in counted instructions: what the floor of any module is, what is the module's own."""
    stages = counted_stages(results)
    rows = (results.get("instructions") or {}).get("rows") or {}
    envoy, full, entered = rows.get("envoy"), rows.get("cache"), rows.get("cut_entered")
    price = us_per_instruction(results)
    if not stages or not envoy or not full or not entered or not price:
        return []
    budget = CPU_BUDGET_US / price
    return [
        "",
        f"Counted ([instructions](#where-a-cache-hits-instructions-go-counted), exact where the timings are "
        f"not): the goal is about {budget:,.0f} instructions per request at Envoy alone's measured rate. Entering "
        f"the module's callbacks and returning at once already takes {entered['total'] - envoy['total']:,}; the "
        f"whole hit adds {full['total'] - envoy['total']:,}, of which {full['module'] - envoy['module']:,} are "
        "the module's own code and the rest the host's side of its callbacks and four hostcalls.",
    ]


def instructions_section(results: dict) -> list[str]:
    lines = ["## Where a cache hit's instructions go (counted)", ""]
    stages = counted_stages(results)
    if not stages:
        return lines + [
            "Not counted in this run: `scripts/bench --instructions` runs each stage's Envoy under callgrind "
            "(`scripts/bench.d/instructions.py`).",
        ]
    counts = results["instructions"]
    rows, method = counts["rows"], counts["method"]
    envoy = rows["envoy"]
    price = us_per_instruction(results)
    lines += [
        "Envoy's instructions per request under valgrind's callgrind (`scripts/bench.d/instructions.py`), "
        "the same builds as the stages above. Counts hardly move with the machine's load (two passes agreed "
        "within 0.2 %, 2 % for the row without leases, whose compare-and-swaps vary), so the stages are "
        f"exact where the timings are ±{cut_noise(results):.1f} µs. Each row: {method['requests']:,} sequential "
        f"requests over {method['applications']} applications after {method['warmup']} unrecorded ones, minus "
        "what the same Envoy does idle for as long. A busy application's steady state: leases of "
        f"{method['cache']['lease_ms'] / 1000:.0f} s, reports every minute, a one-hour ttl (Envoy runs about "
        "50 times slower under valgrind, so time-driven work would otherwise be charged per request; the "
        "timed rows price it: their 100 applications at about 100 requests/s each renew a 50 ms lease every few "
        "requests, these every 64). *Module*: code V8 compiled from `tollgate.wasm`; *host*: Envoy's binary "
        "(V8 included: entering the module's callbacks, answering its hostcalls, proxying) and libc.",
        "",
        f"Envoy alone: {envoy['total']:,} instructions per request"
        + (f" ({median(by_name(results).get('envoy'), 'saturation_cpu_us'):.1f} µs measured: "
           f"{price * 1000:.2f} ns each)." if price else "."),
        "",
    ]
    table_rows = []
    for index, (short, label, row, stage) in enumerate(stages, 1):
        cells = [f"{index}. {label}", thousands(row["total"] - envoy["total"]), thousands(stage["total"]),
                 thousands(stage["module"]), thousands(stage["host"])]
        if price:
            cells.append(signed(stage["total"] * price, "µs", 1))
        table_rows.append(cells)
    header = ["build", "added", "this stage", "in the module", "on the host"] + (["≈ at Envoy's rate"] if price else [])
    lines += table(header, table_rows)
    full = rows.get("cache")
    if full:
        added = full["total"] - envoy["total"]
        lines += [
            "",
            f"A cache hit adds {added:,} instructions to Envoy's {envoy['total']:,} (+{added / envoy['total']:.0%}): "
            f"{full['module'] - envoy['module']:,} in the module's code, "
            f"{full['host'] - envoy['host']:,} on the host's side"
            + (f"; at Envoy alone's measured rate, {added * price:.1f} µs." if price else "."),
        ]
    unleased = rows.get("cache_no_lease")
    if full and unleased:
        saved = unleased["total"] - full["total"]
        lines.append(
            f"Without leases (`lease_ms: 0`) a hit costs {saved:,} more "
            f"({unleased['module'] - full['module']:,} in the module: decoding and encoding the entry; "
            f"{unleased['host'] - full['host']:,} on the host: the shared-data reads and CAS writes)."
        )
    refused = sum(row.get("not_200", 0) for row in rows.values())
    if refused:
        lines.append(f"{refused} counted requests were not answered 200: the counts include refusals.")
    return lines


def goal_slow_backend(rows: dict[str, dict], reference: dict) -> list[str]:
    lines = [
        "### 3scale answering after 5 ms: Tollgate's median within 1 ms of Envoy without the filter",
        "",
    ]
    cache, per_request = rows.get("cache_5ms"), rows.get("per_request_5ms")
    base = median(reference, "fixed_p50_us")
    if per_request:
        added = median(per_request, "fixed_p50_us")
        lines.append(
            f"Per-request mode pays the round trip on every request: median {number(added)} µs against "
            f"{number(base)} µs for Envoy alone ({signed(None if added is None or base is None else added - base, 'µs')})."
        )
        lines.append("")
    if cache is None:
        lines += [
            "**Not measured in this run**: no cache row (see above). What will move it: cache hits never wait for "
            "3scale; refreshes happen in the background.",
        ]
        return lines
    value = median(cache, "fixed_p50_us")
    added = None if value is None or base is None else value - base
    met = added is not None and added <= SLOW_BACKEND_BUDGET_US
    lines.append(f"Cache hits: median {number(value)} µs ({signed(added, 'µs')}): {verdict(met)}")
    if not met:
        lines += [
            "",
            "What limits it: requests that still wait for 3scale (misses and entries too stale for the failure "
            "policy). What would move it: refreshing before entries expire, so that no request waits.",
        ]
    return lines


def goal_backend_calls(rows: dict[str, dict], method: dict) -> list[str]:
    lines = [
        f"### Fewer than {CALLS_PER_1000_CEILING:.0f} backend calls per 1,000 requests at steady state "
        f"({method['applications']} applications, {method['fixed_rate']:,} requests/s)",
        "",
    ]
    cache, per_request = rows.get("cache"), rows.get("per_request")
    if per_request:
        lines.append(
            f"Per-request mode: {number(median(per_request, 'fixed_backend_calls_per_1000'), 1)} calls per "
            "1,000 requests at the fixed rate (one `authrep` each)."
        )
        lines.append("")
    if cache is None:
        lines.append(
            "**Not met yet**: without the cache every request is a backend call. What will move it: "
            "the cache (a refresh per application per TTL, usage batched into `POST /transactions.xml`)."
        )
        return lines
    value = median(cache, "fixed_backend_calls_per_1000")
    met = value is not None and value < CALLS_PER_1000_CEILING
    lines.append(f"Cache hits: {number(value, 1)} calls per 1,000 requests: {verdict(met)}")
    if not met:
        lines += [
            "",
            "What limits it: refreshes per application per TTL plus report flushes, over a run this short. What "
            "would move it: a longer TTL for authorized entries, larger report batches, a longer flush interval.",
        ]
    return lines


def goal_wasm(results: dict) -> list[str]:
    size = results["wasm_bytes"]
    met = size < WASM_CEILING_BYTES
    lines = [
        "### `.wasm` under 600 KB as built by default (threescale-wasm-auth, the module Tollgate replaces, ships 1.45 MB)",
        "",
        # The size does not depend on how the run went: no smoke caveat.
        f"`tollgate.wasm`: {size:,} bytes ({size / 1024:.1f} KB): **{'met' if met else 'NOT MET'}**",
    ]
    if met and size > WASM_CEILING_BYTES * 0.9:
        lines += [
            "",
            f"Only {(WASM_CEILING_BYTES - size) / 1024:.0f} KB of margin: the next features can push it over. "
            "What would move it: `twiggy top` on the module to find the largest items to cut.",
        ]
    if not met:
        lines += [
            "",
            "What limits it: the crates linked in (serde_json, quick-xml, the SDK), formatting code, and "
            "`opt-level = 3`, chosen for the cache hit's instructions (`Cargo.toml`: `\"s\"` would be 726 KB and "
            "about 6,000 more instructions per hit). What would move it: `opt-level = \"s\"` or `\"z\"`, fewer "
            "`format!` paths, `twiggy top` on the module to find the largest items.",
        ]
    return lines


def goal_faults() -> list[str]:
    return [
        "### Faults during 1,000 requests/s: no hung request, no VM panic, the failure policy on every request, "
        "no usage lost over a 30 s outage",
        "",
        "Not a benchmark row: asserted by the end-to-end tests in `tests/tests/cache/` (part of `scripts/test`), "
        "in the real Envoy against the simulator: `outage.rs` refuses connections for 30 s in the middle of a "
        "1,000 requests/s load (about 37,000 requests) and checks zero usage lost, no uncertain report, every "
        "cached application served by the cache, uncached ones refused with 503 at once (slowest answer about "
        "30 ms); `faults.rs` runs every failure policy under every fault (refused, slow beyond the timeout, 5xx, "
        "garbage) and checks each answer's status, that it came within the backend timeout plus 300 ms, no VM "
        "reload or panic, and that usage let through reaches 3scale once it is back; `accounting.rs` checks a "
        "VM reload loses no pending usage.",
    ]


# --------------------------------------------------------------------------------------------------
# Tables


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def mode_of(config: dict) -> str | None:
    settings = config["service_settings"]
    if settings is None:
        return None
    return settings.get("mode", "cache")


def by_endpoint(config: dict) -> str:
    """The fixed-rate runs' backend calls by endpoint, e.g. `authorize 3, report 2`."""
    totals: dict[str, int] = {}
    for run in config["runs"]:
        for name, count in run.get("fixed_rate", {}).get("backend_calls_by_endpoint", {}).items():
            totals[name] = totals.get(name, 0) + count
    return ", ".join(f"{name} {count:,}" for name, count in sorted(totals.items())) or "none"


def checks(results: dict) -> list[str]:
    """What would make a row measure something else than its label says."""
    problems = []
    for config in table_rows(results):
        label, summary, mode = config["label"], config["summary"], mode_of(config)
        if summary["errors"]:
            problems.append(f"{label}: {summary['errors']} failed requests (non-2xx or socket errors).")
        calls = median(config, "fixed_backend_calls_per_1000")
        expected = 2000 if (config["service_settings"] or {}).get("report_response_codes", True) else 1000
        if mode == "per_request" and calls is not None and abs(calls - expected) > expected * 0.05:
            problems.append(
                f"{label}: {calls:,.0f} backend calls per 1,000 requests where per-request mode makes "
                f"{expected:,} ({by_endpoint(config)})."
            )
        if mode == "cache" and calls is not None and calls >= 500:
            problems.append(f"{label}: {calls:,.0f} backend calls per 1,000 requests: the cache did not answer.")
        if mode is not None:
            seen = sum(
                run.get(phase, {}).get("requests", 0) for run in config["runs"] for phase in ("saturation", "fixed_rate")
            )
            allowed = sum(
                run.get(phase, {}).get("filter_allowed", 0) for run in config["runs"] for phase in ("saturation", "fixed_rate")
            )
            if seen and allowed < seen * 0.99:
                problems.append(f"{label}: the filter allowed {allowed:,} of {seen:,} requests.")
    if not problems:
        return [
            "Checks passed: every request was answered 200, every filtered request was allowed by Tollgate, and "
            "each row's backend calls match its mode.",
            "",
        ]
    return ["**Checks failed** (these rows do not measure what their label says):", ""] + [
        f"- {problem}" for problem in problems
    ] + [""]


def results_tables(results: dict) -> list[str]:
    method = results["method"]
    configs = table_rows(results)
    lines = [
        "## Results",
        "",
        f"Each cell: median over {method['runs']} run(s) of {method['duration_s']} s, with (min–max) when there "
        "are several runs. Ratios and differences compare medians with row 1.",
        "",
        *checks(results),
        f"### Saturation (closed loop: wrk, {method['wrk_connections']} connections)",
        "",
    ]
    rows = []
    for index, config in enumerate(configs, 1):
        s, ratio = config["summary"], config["summary"]["vs_reference"]
        rows.append([
            f"{index}. {config['label']}",
            spread(s["saturation_rps"]),
            f"{number(ratio.get('saturation_rps_ratio'), 2)}×",
            spread(s["saturation_cpu_us"], 1),
            signed(ratio.get("added_cpu_us_saturation"), "µs", 1) if index > 1 else "–",
            spread(s["saturation_p50_us"]),
            f"{number(median(config, 'saturation_envoy_busy_pct'))} % / {number(median(config, 'saturation_load_busy_pct'))} %",
            limited_by(config),
        ])
    lines += table(
        ["configuration", "requests/s", "× row 1", "Envoy CPU µs/request", "added CPU", "p50 µs (wrk)",
         "core busy: Envoy / load", "limited by"],
        rows,
    )
    lines += [
        "",
        "Envoy's CPU per request is the CPU time of the whole Envoy process (every thread, V8's included) from "
        "`/proc/PID/stat`, divided by the requests wrk completed: the sturdiest number here, as it does not "
        f"depend on which side was the bottleneck. \"Limited by\": a core at least {BUSY_PCT:.0f} % busy. When the "
        "load core (wrk, the upstream Envoy and the simulator together) is the limit, that row's requests/s is "
        "a floor for Envoy; when neither core is, the connections were waiting (for 3scale, in the 5 ms rows).",
        "",
        f"### Latency at a fixed {method['fixed_rate']:,} requests/s (open loop: oha, "
        f"{method['oha_connections']} connections, latency corrected for coordinated omission)",
        "",
    ]
    rows = []
    for index, config in enumerate(configs, 1):
        s, ratio = config["summary"], config["summary"]["vs_reference"]
        rows.append([
            f"{index}. {config['label']}",
            spread(s["fixed_p50_us"]),
            spread(s["fixed_p90_us"]),
            spread(s["fixed_p99_us"]),
            spread(s["fixed_p99_9_us"]),
            signed(ratio.get("added_p50_us_fixed_rate"), "µs") if index > 1 else "–",
            spread(s["fixed_cpu_us"], 1),
            number(median(config, "fixed_rps")),
        ])
    lines += table(
        ["configuration", "p50 µs", "p90 µs", "p99 µs", "p99.9 µs", "added p50", "Envoy CPU µs/request",
         "achieved req/s"],
        rows,
    )
    lines += [
        "",
        "Envoy's CPU per request at this rate is several times the saturation figure: with a request every "
        "millisecond, Envoy wakes up for each event (request, callout answer, upstream answer) instead of "
        "handling many per wakeup. Compare it between rows, not with the saturation column.",
        "",
        "### Backend calls, memory, errors",
        "",
    ]
    rows = []
    for index, config in enumerate(configs, 1):
        s = config["summary"]
        filtered = config["service_settings"] is not None
        rows.append([
            f"{index}. {config['label']}",
            f"{config['backend_latency_ms']} ms" if filtered else "–",
            spread(s["fixed_backend_calls_per_1000"], 1) if filtered else "–",
            spread(s["saturation_backend_calls_per_1000"], 1) if filtered else "–",
            spread(s["envoy_rss_mib"], 1),
            str(s["errors"]),
        ])
    lines += table(
        ["configuration", "3scale latency", f"backend calls / 1,000 req at {method['fixed_rate']:,}/s",
         "… at saturation", "Envoy RSS MiB", "failed requests"],
        rows,
    )
    lines += [
        "",
        "Backend calls are the simulator's counters for the configuration's own service (authorize, authrep and "
        "report endpoints), so background calls of the idle Envoys never count. Failed requests: non-2xx "
        "answers and socket errors over all runs; a row with failures measured something else than the "
        "configuration says.",
    ]
    return lines


def micro_tables(results: dict) -> list[str]:
    micro = results.get("micro") or {}
    lines = ["## Micro-benchmarks (native)", ""]
    if "benchmarks" not in micro:
        lines.append(f"Not run ({micro.get('error', 'skipped with --no-micro')[:300]}).")
        return lines
    lines += [
        "`cargo bench -p tollgate` (`filter/benches/hot_paths.rs`, divan, the release profile: `opt-level = 3`, "
        "LTO), on the machine below. Native code: V8 runs the same functions roughly 1.5–3× slower (the notes' "
        "quick-xml pass: 0.8 µs in V8 for a 400-byte document). Allocations are counted by divan's allocator.",
        "",
    ]
    descriptions = {
        "config/load": "`Config::load` of `scripts/bench.d/filter.json` (once per VM, not per request)",
        "credentials/extract_credentials/query": "`credentials::extract`: `app_id`/`app_key` in the query",
        "credentials/extract_credentials/header": "`credentials::extract`: in headers, after an empty query",
        "credentials/extract_credentials/missing": "`credentials::extract`: none anywhere (`auth_missing`)",
        "mapping_rules/evaluate/first_rule": "`MappingRules::evaluate`, 8 rules: the first matches",
        "mapping_rules/evaluate/seventh_rule": "… the 7th matches (`/items/{id}$`: the Envoy runs' request)",
        "mapping_rules/evaluate/query_condition": "… the 6th matches, through a query condition",
        "mapping_rules/evaluate/no_match": "… none matches",
        "mapping_rules/parse_query": "`Args::parse` of a 4-parameter query string",
        "xml_parse/parse_status_body/authorized": "`parse_status`: authorized, 4 usage reports (observed)",
        "xml_parse/parse_status_body/all_periods": "… 7 usage reports, escaped plan name (observed)",
        "xml_parse/parse_status_body/unlimited": "… no usage reports (observed)",
        "xml_parse/parse_status_body/exceeded": "… limits exceeded (observed)",
        "xml_parse/parse_status_body/with_hierarchy": "… authorized with the `hierarchy` extension (observed)",
        "whole_request/request_headers": "`Flow` request phase: headers to dispatched authrep (counting host)",
        "whole_request/per_request_authorized": "`Flow` per-request mode end to end: request, answer, response",
        "whole_request/cache_hit": "`Flow` cache mode, a hit from the worker's lease: request, response and log phases",
        "cache_decision/decode_admit_encode": "the cache decision on an entry (4 limits, hierarchy): decode, admit, encode",
        "cache_decision/record_with_code": "the end of a request: decode, usage and its code into the report, encode",
        "report/body_of_200_requests": "a report body: one application's 200 requests, a transaction each (codes tracked)",
        "flush/tick_with_10000_applications_waiting": "a flushing tick with 10,000 applications queued (at most 2,000 slots taken per tick)",
    }
    rows = []
    order = list(descriptions)
    for name, bench in sorted(
        micro["benchmarks"].items(), key=lambda item: (order.index(item[0]) if item[0] in order else len(order), item[0])
    ):
        rows.append([
            f"`{name}`",
            descriptions.get(name, ""),
            number(bench["median_ns"], 1 if bench["median_ns"] < 100 else 0),
            number(bench.get("allocs_per_op"), 1 if (bench.get("allocs_per_op") or 0) % 1 else 0),
        ])
    lines += table(["benchmark", "what", "median ns/op", "allocations/op"], rows)
    return lines


def callout_share(results: dict, hostcalls_ns: float, native_ns: float | None) -> list[str]:
    """How much of per-request mode's measured added CPU the filter's own work explains."""
    per_request = by_name(results).get("per_request")
    added = per_request["summary"]["vs_reference"].get("added_cpu_us_saturation") if per_request else None
    if added is None or native_ns is None:
        return []
    own_us = (hostcalls_ns + V8_SLOWDOWN * native_ns) / 1000
    return [
        f"Per-request mode measured {added:+.1f} µs of Envoy CPU per request (saturation table). Its priced "
        f"hostcalls and the filter's own work (native time × {V8_SLOWDOWN:g} for V8) explain about {own_us:.0f} µs "
        "of it; the rest is what the callout costs Envoy itself (an HTTP/1.1 request to the simulator through "
        "Envoy's async client, its answer, resuming the filter chain) and V8's entry into the module for each of "
        "the three callbacks. The cache removes the callout, not only the XML parse.",
        "",
    ]


def hostcall_rows(phases: dict[str, dict[str, int]], names: list[str]) -> tuple[list[list[str]], dict[str, float]]:
    rows, totals = [], {}
    for phase in names:
        for name, count in sorted(phases.get(phase, {}).items()):
            price, source = HOSTCALL_NS.get(name, (None, "not measured"))
            cost = None if price is None else price * count
            if cost is not None:
                totals[phase] = totals.get(phase, 0.0) + cost
            rows.append([phase.replace("_", " "), f"`{name}`", str(count), number(price), number(cost), source])
    return rows, totals


def cache_hit_profile(results: dict, phases: dict, benches: dict) -> list[str]:
    hit = phases.get("cache_hit")
    answered = phases.get("cache_hit_answered_locally", {})
    if not hit or not answered.get("true"):
        return [
            "### Cache hit",
            "",
            "Not profiled: in this build the second request for an application still called 3scale (or was "
            "refused), so there is no cache-hit path to profile yet.",
        ]
    rows, totals = hostcall_rows(phases, ["cache_hit"])
    entry_bytes = next(iter(phases.get("cache_entry_bytes", {}).values()), None)
    bench = benches.get("whole_request/cache_hit", {})
    priced = totals.get("cache_hit", 0.0) / 1000
    native = (bench.get("median_ns") or 0.0) / 1000
    estimate = priced + V8_SLOWDOWN * native  # as cache_hit_estimate
    lines = [
        "### Cache hit",
        "",
        "Mode `cache`, the application's entry already in shared data (a first request filled it) and the worker "
        "holding a lease on it (a second request took it), then the same request again: the request, response and "
        f"log phases, decided from the lease. The entry is {number(entry_bytes)} bytes; it is read and written only "
        "when the lease is renewed (every 64 requests at most at this rate) or returned.",
        "",
    ]
    lines += table(["phase", "hostcall", "per request", "ns each", "ns", "price"], rows)
    cache = by_name(results).get("cache")
    measured = cache["summary"]["vs_reference"].get("added_cpu_us_saturation") if cache else None
    lines += [
        "",
        f"Priced hostcalls ≈ {priced:.1f} µs; the filter's own native work {number(bench.get('median_ns'))} ns "
        f"with {number(bench.get('allocs_per_op'))} allocations. Estimate: {priced:.1f} µs + {V8_SLOWDOWN:g} × "
        f"{native:.1f} µs ≈ {estimate:.0f} µs"
        + (f"; measured: {measured:+.1f} µs (cache row)" if measured is not None else "")
        + ". The model leaves out V8's entry into the module for each callback, Envoy's own work behind each "
        "hostcall and the reports flushed on ticks; [the measured stages](#where-a-cache-hits-time-goes-measured) "
        "price all of it.",
        "",
        "What was cut on the way (each measured with this page's method):",
        "",
        "- worker-local leases (`docs/design.md`, Leases): a hit no longer reads, decodes, encodes and "
        "compare-and-swaps the shared entry, and its response code no longer updates it a second time; both "
        "happen once per lease, in the renewal's one CAS;",
        "- counters are summed in the VM and handed to Envoy at each tick (50 ms), instead of three to six "
        "`increment_metric` per request with the per-service stats;",
        "- the five filter-state writes for access logs only with `filter_state: true` (off by default);",
        "- the request headers come in one hostcall (the whole map) instead of one per header, about ten per "
        "request;",
        "- a configuration with a single service answering every host chooses it without reading the route "
        "metadata, the route name or the Host (the route-metadata property alone cost about 2.7 µs);",
        "- Tollgate's internal headers are removed only when a client sent them (a removal also clears Envoy's "
        "route cache); the cluster filter state is written only for form requests;",
        "- the JSON configuration is read by a small walker instead of serde derive, which bought room in the "
        "module's size (the release profile's choice of `opt-level` is in `Cargo.toml`);",
        "- tried and dropped: response codes folded into the entries on ticks through a shared queue instead of "
        "a second update at the end of each request. It saved about 3 µs but made usage depend on every VM "
        "folding its queue in time, and the 30 s outage test lost usage with it (leases keep the codes in the "
        "worker and return them in the renewal's CAS, which a dying VM's loss bounds).",
        "",
        "What costs most on a hit now (counted in "
        "[instructions](#where-a-cache-hits-instructions-go-counted)):",
        "",
        "- V8's entries into the module (stage 1): the SDK exports every callback, so Envoy enters the module "
        "for the context's creation, the request headers, the response headers and body, the log, the end and "
        "the deletion of every request; nothing inside the module moves that;",
        "- the request's own hostcalls: its headers (the whole map copied into the VM), the time, the `:path` "
        "rewritten without the credentials, the `:status` read for the report. A hostcall that returns bytes "
        "also calls back into the module to allocate them: reading `:status` alone is most of stage 5;",
        "- the filter's own work: credentials, mapping rules, the cache key and the lease, with the allocations "
        "counted above (about 40 % of what a hit adds, in the *module* column).",
    ]
    return lines


def profile_section(results: dict) -> list[str]:
    micro = results.get("micro") or {}
    phases = micro.get("hostcalls_per_request") or {}
    lines = ["## Profile of the request path (hostcalls and allocations)", ""]
    if not phases:
        lines.append("Not available (the micro-benchmarks did not run).")
        return lines
    benches = micro.get("benchmarks", {})
    lines += [
        "Requests driven through `tollgate::flow::Flow` against a counting host (printed by "
        "`filter/benches/hot_paths.rs`); allocations from the micro-benchmarks above. Prices are V8's on this "
        "kind of machine, as measured in a real Envoy where measured; the others are "
        "estimates from the closest measured call.",
        "",
        "### Per-request mode (one authrep)",
        "",
    ]
    rows, totals = hostcall_rows(phases, ["request", "answer", "response"])
    lines += table(["phase", "hostcall", "per request", "ns each", "ns", "price"], rows)
    request_bench = benches.get("whole_request/request_headers", {})
    whole_bench = benches.get("whole_request/per_request_authorized", {})
    priced = sum(totals.values())
    lines += [
        "",
        f"Priced hostcalls ≈ {priced / 1000:.1f} µs (request phase {totals.get('request', 0.0) / 1000:.1f}, answer "
        f"phase {totals.get('answer', 0.0) / 1000:.1f}), plus the callout. The filter's own native work: "
        f"{number(request_bench.get('median_ns'))} ns and {number(request_bench.get('allocs_per_op'))} allocations "
        f"for the request phase, {number(whole_bench.get('median_ns'))} ns and "
        f"{number(whole_bench.get('allocs_per_op'))} allocations for the whole request. The XML parse is the largest "
        f"part ({number(benches.get('xml_parse/parse_status_body/authorized', {}).get('median_ns'))} ns natively "
        "for the observed authorized body); the cache pays it once per refresh, not per request.",
        "",
        *callout_share(results, priced, whole_bench.get("median_ns")),
    ]
    lines += cache_hit_profile(results, phases, benches)
    return lines


# --------------------------------------------------------------------------------------------------
# The document


def header_lines(results: dict) -> list[str]:
    lines = ["# Benchmarks", ""]
    method = results["method"]
    if results["kind"] == "smoke":
        lines += [
            f"> **Smoke run, not a result.** Made with `scripts/bench --quick` ({method['runs']} run × "
            f"{method['duration_s']} s per configuration) on a machine busy with other builds, to check the "
            "harness. Only the shape of the numbers means anything. `scripts/bench` on a quiet machine replaces "
            "this page.",
            "",
        ]
    elif results["kind"] == "partial":
        lines += [
            f"> **Partial run**: {method['runs']} run(s) × {method['duration_s']} s, "
            f"{len(results['configurations'])} configuration(s); the method asks for every configuration, at "
            "least 5 runs of 15 s.",
            "",
        ]
    lines += [
        f"Written by `scripts/bench` on {results['started']} (commit `{results['versions']['tollgate_commit']}`). "
        "Raw data, run by run: `target/bench/results.json`. Tollgate against Envoy without it (the limit) and "
        "against per-request authorization (the behaviour of threescale-wasm-auth, the module Tollgate replaces: one `authrep` per request).",
        "",
    ]
    return lines


def method_section(results: dict) -> list[str]:
    method = results["method"]
    return [
        "## Method",
        "",
        f"- One Envoy under test per configuration, `--concurrency {method['envoy_concurrency']}`, all pinned to "
        f"core {method['envoy_core']} with `taskset`; only the one being measured gets load. wrk, oha, the "
        f"fixed upstream (a second Envoy answering 200 from a `direct_response` route) and tollgate-sim (one "
        f"worker thread) share core {method['load_core']}. Everything on loopback, HTTP/1.1 keep-alive.",
        f"- Every configuration is warmed up ({method['warmup_s']} s of unrecorded load), then measured "
        f"{method['runs']} time(s), interleaved: each run measures every configuration once, in an order that "
        "rotates from run to run.",
        f"- One measurement: saturation with wrk for {method['duration_s']} s (`-t1 -c{method['wrk_connections']}`, "
        f"closed loop), then latency with oha for {method['duration_s']} s at a fixed "
        f"{method['fixed_rate']:,} requests/s (`-q {method['fixed_rate']} --latency-correction`, open loop). "
        "Around each: Envoy's CPU time (`/proc/PID/stat`, all threads), both cores' busy time (`/proc/stat`), "
        "the simulator's call counters (`GET /_sim/calls`, per service), and after both, Envoy's RSS "
        "(`/proc/PID/status`).",
        f"- Requests: `GET /items/N?app_id=app-N&app_key=key-N` over {method['applications']} "
        "applications (wrk takes them in turn, oha at random), all on one plan with limits far above the load, so every request is authorized and forwarded; "
        "the filter config is `scripts/bench.d/filter.json` (one service, 8 mapping rules, the 7th matches; "
        "credentials stripped before the upstream) with each row's settings on top: `mode`, and for the "
        "per-request rows `report_response_codes: false`, so that they make one `authrep` per request as "
        "threescale-wasm-auth does (with response codes tracked, per-request mode calls `authorize` before and reports after). "
        "3scale's slowness comes from the simulator's fault "
        "injection (`latency_ms` on every transaction endpoint).",
        "- Closed-loop rows with a 5 ms backend are bounded by connections / latency (Little's law): "
        f"{method['wrk_connections']} connections / 5 ms = {method['wrk_connections'] * 200:,} requests/s at most.",
        "- A benchmark, not a test: nothing here fails CI.",
    ]


def reproduce_section() -> list[str]:
    return [
        "## How to reproduce",
        "",
        "```sh",
        "scripts/bench            # 5 runs x 15 s per configuration, about 3 minutes per configuration",
        "scripts/bench --quick    # smoke run: 1 run x 3 s",
        "scripts/bench --cuts     # and where a cache hit's time goes: builds cut short at each stage",
        "scripts/bench --cuts --instructions   # and each stage's instructions, counted under callgrind",
        "scripts/bench --only envoy --runs 1 --duration 3 --instructions   # the counts, with a timed reference",
        "scripts/bench --only envoy cache cache_no_codes --cuts --runs 3 --duration 8   # only that, quicker",
        "TOLLGATE_BENCH_WASM=other.wasm scripts/bench --only envoy cache   # measure another build",
        "scripts/bench --only envoy per_request --runs 3   # a subset (the first one is the reference)",
        "python3 scripts/bench.d/report.py   # re-render this page from target/bench/results.json",
        "```",
        "",
        "`scripts/bench` installs what is missing (Envoy through `scripts/setup`, wrk from Debian, oha from "
        "crates.io into `.tools/`), builds the `.wasm` and the simulator in release, runs the micro-benchmarks, "
        "then the end-to-end runs, and writes this page and `target/bench/results.json`. Logs, the generated "
        "Envoy configs and callgrind's dumps (`callgrind_annotate` reads them) stay in `target/bench/work/`. For meaningful numbers: a quiet machine with at least two "
        "cores, nothing else running. Configurations are entries of `CONFIGURATIONS` in "
        "`scripts/bench.d/run.py`.",
    ]


def machine_section(results: dict) -> list[str]:
    m, v = results["machine"], results["versions"]
    rows = [
        ["cores", str(m["cores"])],
        ["CPU", m["cpu_model"]],
        ["virtualization", m.get("virtualization", "unknown")],
        ["kernel", m["kernel"]],
        ["Envoy", v["envoy"]],
        ["wrk", v["wrk"]],
        ["oha", v["oha"]],
        ["rustc", v["rustc"]],
        ["Tollgate commit", v["tollgate_commit"]],
        ["`.wasm` size", f"{results['wasm_bytes']:,} bytes"],
    ]
    return ["## Machine and versions", ""] + table(["", ""], rows)


def plots_section(results: dict) -> list[str]:
    """Draws the run (docs/benchmarks/*.svg, written here) and embeds the figures."""
    import plots  # a sibling module

    written = plots.write(results, ROOT / "docs" / "benchmarks")
    if not written:
        return []
    lines = ["## Plots", ""]
    for name, caption in written:
        lines += [f"![{caption}](benchmarks/{name})", ""]
    return lines[:-1]


def write_doc(results: dict) -> str:
    global _RUN_KIND
    _RUN_KIND = results["kind"]
    rows = by_name(results)
    reference = results["configurations"][0]
    lines = header_lines(results)
    lines += ["## Goals and where they stand", ""]
    for section in (
        goal_cache_hit(rows, reference, results),
        goal_slow_backend(rows, reference),
        goal_backend_calls(rows, results["method"]),
        goal_wasm(results),
        goal_faults(),
    ):
        lines += section + [""]
    for section in (
        results_tables(results),
        plots_section(results),
        cuts_section(results),
        instructions_section(results),
        micro_tables(results),
        profile_section(results),
        method_section(results),
        reproduce_section(),
        machine_section(results),
    ):
        lines += section + [""]
    return "\n".join(lines).rstrip("\n") + "\n"


if __name__ == "__main__":
    sys.dont_write_bytecode = True
    sys.path.insert(0, str(Path(__file__).parent))
    source = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "target" / "bench" / "results.json"
    (ROOT / "docs" / "benchmarks.md").write_text(write_doc(json.loads(source.read_text())))
    print("bench: wrote docs/benchmarks.md")
