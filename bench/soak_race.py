"""Soak: the stale-plan race experiment, many times in a row on one lab; every run must reproduce.

Usage::

    python bench/soak_race.py                 # 20 runs of experiments/dns-stale-plan-race.json
    python bench/soak_race.py --runs 5 --experiment experiments/dns-stale-plan-fenced.json

Each run is ``chaos-dynamo run EXPERIMENT --state-file ...`` (the real ``chaos`` CLI) against one
lab started with ``chaos-dynamo lab up --detach``. A run counts when it exits 0 with the verdict
the experiment declares (REPRODUCED for the race, HELD for the fenced design); the race's trace
digest (one seed) must be the same on every run. Prints ``N/N`` and exits 0 only when all did.
"""

from __future__ import annotations

import argparse
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

from chaos_dynamo.lab.state import write_state

RACE = common.REPO_ROOT / "experiments" / "dns-stale-plan-race.json"
RUN_TIMEOUT_S = 300.0


def race_digest(journal: Path) -> str:
    """The trace digest the race action returned, from the run's journal."""
    data = json.loads(journal.read_text(encoding="utf-8"))
    for run in data.get("run", []):
        if run.get("activity", {}).get("provider", {}).get("func") == "run_race_scenario":
            return str((run.get("output") or {}).get("digest", "?"))
    return "?"


def soak(runs: int, experiment: Path) -> int:
    expected = "verdict: HELD" if "fenced" in experiment.name else "verdict: REPRODUCED"
    passed, digests, seconds = 0, set(), []
    with common.detached_lab() as info, tempfile.TemporaryDirectory(prefix="chaos-dynamo-soak-") as tmp:
        state_file = Path(tmp) / "lab.json"
        write_state(info, state_file)
        for number in range(1, runs + 1):
            journal = Path(tmp) / f"journal-{number}.json"
            started = time.perf_counter()
            result = subprocess.run([*common.cli_command(), "run", str(experiment), "--journal", str(journal),
                                     "--state-file", str(state_file)], capture_output=True, text=True,
                                    timeout=RUN_TIMEOUT_S, env=common.clean_env(), cwd=tmp)
            elapsed = time.perf_counter() - started
            seconds.append(elapsed)
            ok = result.returncode == 0 and expected in result.stdout
            digest = race_digest(journal) if journal.exists() else "?"
            digests.add(digest)
            passed += ok
            verdict = next((line for line in result.stdout.splitlines() if line.startswith("verdict:")),
                           f"no verdict (exit {result.returncode})")
            print(f"run {number:>2}/{runs}: {'ok  ' if ok else 'FAIL'} {elapsed:5.1f} s  digest {digest}  {verdict}",
                  flush=True)
            if not ok:
                print(result.stdout[-3000:] + result.stderr[-2000:], file=sys.stderr)
    same = len(digests) == 1
    print(f"{passed}/{runs} runs {'reproduced the race' if 'REPRODUCED' in expected else 'held'}; "
          f"{len(digests)} distinct trace digest(s){'' if same else ' (expected 1)'}; "
          f"median {common.median(seconds):.1f} s per run")
    return 0 if passed == runs and same else 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=20, help="how many runs in a row (default 20)")
    parser.add_argument("--experiment", type=Path, default=RACE, help="the experiment (default: the race)")
    args = parser.parse_args()
    if args.runs < 1:
        parser.error("--runs must be 1 or more")
    sys.exit(soak(args.runs, args.experiment.resolve()))


if __name__ == "__main__":
    main()
