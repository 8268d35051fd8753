"""Where a cache hit's time goes, measured: builds of the module with the path cut short.

Each cut is a copy of the committed source (a git worktree at HEAD) with one early return added, built
in release like the real module. Benchmarked beside the full module and Envoy alone, the cuts give the
cost of each stage of a cache hit as the difference of Envoy's CPU per request, which prices what a
model of hostcalls and native timings cannot (V8's entries into the module, Envoy's side of each call).

A cut whose anchor text is no longer in the source is reported as not applicable, never guessed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Cut:
    name: str
    # What the build still does, for the table: each cut does everything the previous one did.
    label: str
    file: str
    anchor: str
    # Inserted right after the anchor.
    insert: str


CUTS = [
    Cut(
        "cut_entered",
        "the module is entered for each callback and returns at once",
        "filter/src/glue/mod.rs",
        "fn on_http_request_headers(&mut self, _headers: usize, end_of_stream: bool) -> ProxyAction {\n",
        "        if true {\n            return ProxyAction::Continue;\n        }\n",
    ),
    Cut(
        "cut_service",
        "+ the request headers read, forged internal headers removed, the service found",
        "filter/src/flow/mod.rs",
        "            return self.unmatched(&view);\n        };\n",
        "        if true {\n            self.stage = Stage::Done;\n"
        "            return Action::Continue;\n        }\n",
    ),
    Cut(
        "cut_forward",
        "+ credentials, mapping rules, the request forwarded (credentials stripped, filter state), no cache",
        "filter/src/flow/cached.rs",
        "    pub(super) fn authorize_cached(&mut self, host: &impl Host, decided: Decided) -> Action {\n",
        "        if true {\n"
        "            let allow = Allow { plan: None, rate_limit: None, report: None, fail_open: false };\n"
        "            return self.forward(host, decided, allow);\n        }\n",
    ),
]


# Not a stage: the whole module without its per-service stats, to price them (the module's own Envoy-wide stats
# are kept). Measured beside `cache`, the difference is what labelling every stat by service costs a hit.
UNLABELLED = Cut(
    "cut_unlabelled",
    "Tollgate, cache hits, without per-service stats",
    "filter/src/hostcalls/adapter.rs",
    "    fn add_for(&self, label: &str, stat: Stat, n: u64) {\n        self.add_global(stat, n);\n",
    "        if true {\n            return;\n        }\n",
)
CUTS.append(UNLABELLED)


def build(root: Path, work: Path, log) -> dict[str, Path | str]:
    """Builds every cut; the value is the .wasm, or why that cut could not be built."""
    tree = work / "cuts-tree"
    target = root / "target" / "bench-cuts"
    remove_worktree(root, tree)
    subprocess.run(["git", "worktree", "add", "--detach", "--force", str(tree), "HEAD"], cwd=root, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    built: dict[str, Path | str] = {}
    try:
        for cut in CUTS:
            built[cut.name] = build_one(cut, tree, target, work, log)
    finally:
        remove_worktree(root, tree)
    return built


def build_one(cut: Cut, tree: Path, target: Path, work: Path, log) -> Path | str:
    subprocess.run(["git", "checkout", "--", "filter"], cwd=tree, check=True)
    source = tree / cut.file
    text = source.read_text()
    if text.count(cut.anchor) != 1:
        return f"not applicable: its anchor is not (exactly once) in {cut.file}"
    source.write_text(text.replace(cut.anchor, cut.anchor + cut.insert))
    log(f"building {cut.name} (HEAD with an early return in {cut.file})")
    env = {**os.environ, "CARGO_TARGET_DIR": str(target), "RUSTFLAGS": "-A warnings"}
    done = subprocess.run(
        ["cargo", "build", "--quiet", "--release", "--target", "wasm32-wasip1", "-p", "tollgate"],
        cwd=tree, env=env, capture_output=True, text=True,
    )
    if done.returncode != 0:
        return "did not build: " + (done.stderr.strip().splitlines() or ["(no output)"])[-1]
    wasm = work / f"{cut.name}.wasm"
    shutil.copyfile(target / "wasm32-wasip1" / "release" / "tollgate.wasm", wasm)
    return wasm


def remove_worktree(root: Path, tree: Path) -> None:
    subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=root,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    shutil.rmtree(tree, ignore_errors=True)
    subprocess.run(["git", "worktree", "prune"], cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
