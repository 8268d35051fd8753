"""SVG plots of a benchmark run, written next to docs/benchmarks.md and embedded in it.

Plain SVG written here (no plotting library: nothing to install, and the files diff as text). Two figures:
latency percentiles per configuration at the fixed rate (log scale: the per-request rows are tens of
milliseconds, the others hundreds of microseconds), and saturation throughput beside Envoy's CPU per request.
Bars are medians over the runs; the thin line on each bar spans the runs' min to max.
"""

from __future__ import annotations

import math
from html import escape
from pathlib import Path

WIDTH = 900
BAR_AREA_LEFT = 330
ROW_HEIGHT = 22
COLOURS = ["#4c78a8", "#f58518", "#54a24b", "#e45756"]


def _rows(results: dict) -> list[dict]:
    return [c for c in results["configurations"] if c.get("summary")]


def _label(index: int, configuration: dict) -> str:
    label = f"{index}. {configuration['label']}"
    return label if len(label) <= 52 else label[:51] + "…"


def _header(height: int, title: str) -> list[str]:
    return [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
        f'viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="12">',
        f'<rect width="{WIDTH}" height="{height}" fill="white"/>',
        f'<text x="10" y="20" font-size="14" font-weight="bold">{escape(title)}</text>',
    ]


def _stat(configuration: dict, key: str) -> tuple[float, float, float] | None:
    stat = configuration["summary"].get(key)
    if not stat or stat.get("median") is None:
        return None
    return stat["median"], stat["min"], stat["max"]


def latency_svg(results: dict) -> str:
    """p50, p90, p99 at the fixed rate, per configuration, on a log scale."""
    rows = _rows(results)
    keys = [("fixed_p50_us", "p50"), ("fixed_p90_us", "p90"), ("fixed_p99_us", "p99")]
    values = [v for c in rows for k, _ in keys if (v := _stat(c, k))]
    if not values:
        return ""
    low = 10 ** math.floor(math.log10(max(1.0, min(v[1] for v in values))))
    high = 10 ** math.ceil(math.log10(max(v[2] for v in values)))
    span = WIDTH - BAR_AREA_LEFT - 70

    def x(value: float) -> float:
        return BAR_AREA_LEFT + span * (math.log10(max(value, low)) - math.log10(low)) / (
            math.log10(high) - math.log10(low)
        )

    group = ROW_HEIGHT * len(keys) + 10
    height = 70 + group * len(rows) + 30
    rate = results.get("method", {}).get("rate", 1000)
    out = _header(height, f"Latency at a fixed {rate:,} requests/s (µs, log scale; median of the runs, min–max)")
    for n, (_, name) in enumerate(keys):
        out.append(f'<rect x="{BAR_AREA_LEFT + 90 * n}" y="32" width="12" height="12" fill="{COLOURS[n]}"/>')
        out.append(f'<text x="{BAR_AREA_LEFT + 90 * n + 16}" y="43">{name}</text>')
    top = 60
    for i, configuration in enumerate(rows):
        y0 = top + i * group
        out.append(f'<text x="10" y="{y0 + group / 2}">{escape(_label(i + 1, configuration))}</text>')
        for n, (key, _) in enumerate(keys):
            stat = _stat(configuration, key)
            if not stat:
                continue
            median, lo, hi = stat
            y = y0 + n * ROW_HEIGHT
            out.append(
                f'<rect x="{BAR_AREA_LEFT}" y="{y}" width="{x(median) - BAR_AREA_LEFT:.1f}" '
                f'height="{ROW_HEIGHT - 6}" fill="{COLOURS[n]}"/>'
            )
            mid = y + (ROW_HEIGHT - 6) / 2
            out.append(f'<line x1="{x(lo):.1f}" x2="{x(hi):.1f}" y1="{mid}" y2="{mid}" stroke="black"/>')
            out.append(f'<text x="{x(hi) + 4:.1f}" y="{mid + 4}">{median:,.0f}</text>')
    axis = top + group * len(rows) + 5
    decade = low
    while decade <= high:
        out.append(f'<line x1="{x(decade):.1f}" x2="{x(decade):.1f}" y1="{top - 5}" y2="{axis}" stroke="#ccc"/>')
        out.append(f'<text x="{x(decade):.1f}" y="{axis + 15}" text-anchor="middle">{decade:,.0f}</text>')
        decade *= 10
    out.append("</svg>")
    return "\n".join(out) + "\n"


def throughput_svg(results: dict) -> str:
    """Saturation requests/s and Envoy's CPU per request, side by side, per configuration."""
    rows = _rows(results)
    panels = [("saturation_rps", "requests/s (wrk, closed loop)"), ("saturation_cpu_us", "Envoy CPU µs per request")]
    half = (WIDTH - BAR_AREA_LEFT - 30) / 2
    height = 70 + ROW_HEIGHT * len(rows) + 20
    out = _header(height, "Saturation throughput and Envoy's CPU per request (median of the runs, min–max)")
    for p, (key, title) in enumerate(panels):
        left = BAR_AREA_LEFT + p * (half + 20)
        stats = [_stat(c, key) for c in rows]
        top_value = max((s[2] for s in stats if s), default=0) or 1
        out.append(f'<text x="{left}" y="50" font-weight="bold">{escape(title)}</text>')
        for i, stat in enumerate(stats):
            if not stat:
                continue
            median, lo, hi = stat
            y = 60 + i * ROW_HEIGHT

            def x(value: float, left: float = left) -> float:
                return left + (half - 60) * value / top_value

            out.append(
                f'<rect x="{left}" y="{y}" width="{x(median) - left:.1f}" height="{ROW_HEIGHT - 6}" '
                f'fill="{COLOURS[p]}"/>'
            )
            mid = y + (ROW_HEIGHT - 6) / 2
            out.append(f'<line x1="{x(lo):.1f}" x2="{x(hi):.1f}" y1="{mid}" y2="{mid}" stroke="black"/>')
            out.append(f'<text x="{x(hi) + 4:.1f}" y="{mid + 4}">{median:,.0f}</text>')
    for i, configuration in enumerate(rows):
        out.append(f'<text x="10" y="{60 + i * ROW_HEIGHT + 12}">{escape(_label(i + 1, configuration))}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def write(results: dict, directory: Path) -> list[tuple[str, str]]:
    """Writes the figures into `directory`; returns (file name, caption) of each written."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, caption, svg in [
        ("latency.svg", "Latency percentiles at the fixed rate", latency_svg(results)),
        ("throughput.svg", "Saturation throughput and CPU per request", throughput_svg(results)),
    ]:
        if svg:
            (directory / name).write_text(svg)
            written.append((name, caption))
    return written
