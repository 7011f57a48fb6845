"""The race experiment end to end, against a no-op ``chaos run`` measured in the same run.

Target: ``chaos-dynamo run experiments/dns-stale-plan-race.json`` (a fresh process that
starts its own lab, runs the real ``chaos`` CLI on the race, judges the journal and stops
the lab) takes <= 10x a ``chaos run`` of an experiment whose one probe is ``true``: the
race costs a few seconds, not minutes. Runs alternate so machine noise hits both.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

try:
    from bench import _common as common
except ImportError:  # run as a script: the repo root is not on sys.path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from bench import _common as common

NAME = "race"
TARGET_RATIO = 10.0
RACE = common.REPO_ROOT / "experiments" / "dns-stale-plan-race.json"
NOOP = {
    "version": "1.0.0", "title": "no-op", "description": "one probe that always holds",
    "steady-state-hypothesis": {"title": "true holds", "probes": [{
        "type": "probe", "name": "true", "tolerance": 0,
        "provider": {"type": "process", "path": "true"}}]},
    "method": [{"type": "probe", "name": "true-again", "provider": {"type": "process", "path": "true"}}],
}


def _chaos() -> str:
    return str(Path(sys.executable).with_name("chaos"))


def _time(command: list[str], cwd: Path, expect: int) -> float:
    started = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=600,
                          env=common.clean_env(), check=False)
    elapsed = time.perf_counter() - started
    if done.returncode != expect:
        raise RuntimeError(f"{' '.join(command)} exited {done.returncode}, expected {expect}:\n"
                           f"{done.stdout[-3000:]}{done.stderr[-3000:]}")
    return elapsed


def run(quick: bool = False) -> common.BenchResult:
    runs = 1 if quick else 3
    result = common.BenchResult(NAME)
    race_times: list[float] = []
    noop_times: list[float] = []
    with tempfile.TemporaryDirectory(prefix="chaos-dynamo-race-bench-") as tmp:
        cwd = Path(tmp)
        noop = cwd / "noop.json"
        noop.write_text(json.dumps(NOOP), encoding="utf-8")
        for i in range(runs):
            common.progress(f"race: no-op chaos run {i + 1}/{runs}")
            noop_times.append(_time([_chaos(), "--no-version-check", "run", "--journal-path",
                                     str(cwd / "noop-journal.json"), str(noop)], cwd, 0))
            common.progress(f"race: chaos-dynamo run (lab included) {i + 1}/{runs}")
            race_times.append(_time([*common.cli_command(), "run", str(RACE), "--journal",
                                     str(cwd / "race-journal.json")], cwd, 0))
    race_s, noop_s = common.median(race_times), common.median(noop_times)
    result.add(common.info("race experiment wall (median)", race_s, "s", "lab start, chaos run, verdict, lab stop"))
    result.add(common.info("no-op chaos run wall (median)", noop_s, "s"))
    result.add(common.at_most("ratio race / no-op chaos run", common.ratio(race_s, noop_s), TARGET_RATIO, "x"))
    result.details = {"race_s": race_times, "noop_s": noop_times, "runs": runs}
    return result


if __name__ == "__main__":
    common.main_for(run)
