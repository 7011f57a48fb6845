"""Interleaving explorer: how fast it finds the race and how fast it proves the fix.

Targets (in process, this interpreter, imports already done):

* the naive design's shortest counterexample at the CLI defaults (3 Enactors x 4 plans x
  1 endpoint, keep 1): <= 2 s;
* every interleaving of the fenced design at 3 Enactors x 4 plans x 2 endpoints,
  exhausted with no violation: <= 60 s.

Side figures: states per second of each search, the counterexample's length, the full
us-east-1 story (``--target enactor-stuck``), and the wall time of ``chaos-dynamo
explore`` as a user runs it (a fresh interpreter, its imports and the trace file included).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

try:
    from bench import _common as common
except ImportError:  # run as a script: the repo root is not on sys.path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from bench import _common as common

from chaos_dynamo.control.enactor import Design
from chaos_dynamo.control.explorer import ANY, STUCK, Bounds, ExploreResult, explore

NAME = "explorer"
TARGET_NAIVE_S = 2.0
TARGET_FENCED_S = 60.0
NAIVE = Bounds(Design.NAIVE)  # the CLI defaults
FENCED = Bounds(Design.FENCED, enactors=3, plans=4, endpoints=2)
RUNS, QUICK_RUNS = 3, 1


def _search(bounds: Bounds, target: str) -> tuple[float, ExploreResult]:
    started = time.perf_counter()
    result = explore(bounds, target=target)
    return time.perf_counter() - started, result


def _naive(runs: int) -> tuple[float, ExploreResult]:
    """Median wall time to the naive counterexample over ``runs`` runs; the last result."""
    times, result = [], None
    for i in range(runs):
        common.progress(f"explorer: naive {NAIVE.label}, run {i + 1}/{runs}")
        elapsed, result = _search(NAIVE, "empty-endpoint")
        times.append(elapsed)
    assert result is not None
    if result.violation is None:
        raise RuntimeError("the naive design showed no counterexample: the explorer is broken")
    return common.median(times), result


def _fenced() -> tuple[float, ExploreResult]:
    common.progress(f"explorer: fenced {FENCED.label}, exhaustive")
    elapsed, result = _search(FENCED, ANY)
    if result.violation is not None or not result.exhaustive:
        raise RuntimeError(f"the fenced design did not come out clean: {result.as_dict()}")
    return elapsed, result


def _cli_wall() -> tuple[float, int]:
    """``chaos-dynamo explore`` at its defaults, as a user runs it; (seconds, exit code)."""
    with tempfile.TemporaryDirectory(prefix="chaos-dynamo-explore-") as tmp:
        started = time.perf_counter()
        done = subprocess.run([*common.cli_command(), "explore"], capture_output=True, text=True,
                              timeout=120, env=common.clean_env(), cwd=tmp, check=False)
        elapsed = time.perf_counter() - started
        if done.returncode != 1 or not (Path(tmp) / "traces").is_dir():
            raise RuntimeError(f"`chaos-dynamo explore` exited {done.returncode}:\n{done.stdout}{done.stderr}")
    return elapsed, done.returncode


def _details(result: ExploreResult, seconds: float) -> dict[str, Any]:
    return result.as_dict() | {"measured_s": round(seconds, 4), "findings": {
        k: len(f.steps) for k, f in result.findings.items()}, "stuck": result.stuck is not None}


def run(quick: bool = False) -> common.BenchResult:
    """Measure the explorer; ``quick`` times the naive search once instead of three times."""
    result = common.BenchResult(NAME)
    naive_s, naive = _naive(QUICK_RUNS if quick else RUNS)
    fenced_s, fenced = _fenced()
    common.progress("explorer: naive, to the stuck Enactor")
    story_s, story = _search(NAIVE, STUCK)
    common.progress("explorer: chaos-dynamo explore (a fresh process)")
    cli_s, _ = _cli_wall()
    assert naive.violation is not None and story.violation is not None
    result.add(common.at_most(f"naive {NAIVE.label}: time to counterexample", naive_s, TARGET_NAIVE_S, "s",
                              f"{len(naive.violation.steps)} steps, {naive.states:,} states"))
    result.add(common.info("ratio naive time / target", naive_s / TARGET_NAIVE_S, "x"))
    result.add(common.info("naive: states/s", naive.states / naive_s, ""))
    result.add(common.at_most(f"fenced {FENCED.label}: time to exhaust", fenced_s, TARGET_FENCED_S, "s",
                              f"{fenced.states:,} states, depth {fenced.depth}, no violation"))
    result.add(common.info("ratio fenced time / target", fenced_s / TARGET_FENCED_S, "x"))
    result.add(common.info("fenced: states/s", fenced.states / fenced_s, ""))
    result.add(common.info(f"naive {NAIVE.label}: time to stuck Enactor", story_s, "s",
                           f"{len(story.violation.steps)} steps, {story.states:,} states"))
    result.add(common.info("cli: chaos-dynamo explore wall", cli_s, "s", "fresh interpreter, exit 1"))
    result.details = {"naive": _details(naive, naive_s), "fenced": _details(fenced, fenced_s),
                      "stuck_story": _details(story, story_s), "cli_wall_s": round(cli_s, 3),
                      "runs": QUICK_RUNS if quick else RUNS, "cpus": os.cpu_count()}
    return result


if __name__ == "__main__":
    common.main_for(run)
