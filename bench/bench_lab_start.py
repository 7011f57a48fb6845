"""Lab start: how long until a lab is ready, from a cold process.

Target: ``chaos-dynamo lab up --detach --state-file TMP`` returns (the lab is ready then)
within 3 s, interpreter start and imports included.

Side by side in each of the runs (median reported):

* ``lab up --detach`` wall time, measured around the whole CLI process; it returns once
  the detached child (a second interpreter) has written its state file; then ``lab down``,
  always, also timed;
* a fresh interpreter that times ``import`` of the lab, then ``Lab(load_topology(None))
  .start()`` (moto is imported inside the first start), ``stop()``, and a second
  ``start()`` with everything imported, to show where the time goes;
* a bare interpreter (``python -c pass``), the floor every process pays.
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

NAME = "lab_start"
TARGET_S = 3.0
RUNS, QUICK_RUNS = 3, 1
CHILD_TIMEOUT_S = 120.0


def _run_child() -> dict[str, float]:
    """``_lab_start_child.py`` in its own interpreter; adds the process's whole wall time."""
    started = time.perf_counter()
    done = subprocess.run([sys.executable, str(common.BENCH_DIR / "_lab_start_child.py")],
                          capture_output=True, text=True, timeout=CHILD_TIMEOUT_S,
                          env=common.clean_env(), cwd=common.REPO_ROOT, check=False)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"the in-process lab child failed: {done.stderr[-2000:]}")
    figures: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return figures | {"process_s": elapsed}


def _bare_interpreter() -> float:
    """Wall seconds of ``python -c pass`` in this venv (the .pth shim hook included)."""
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], check=True, timeout=30, env=common.clean_env())
    return time.perf_counter() - started


def _lab_up_down(folder: Path, index: int) -> dict[str, float]:
    """One ``lab up --detach`` then ``lab down``, both timed; down runs even if up fails."""
    state_file = folder / f"lab-{index}.json"
    try:
        up_s, _ = common.run_cli(["lab", "up", "--detach", "--state-file", str(state_file)])
    finally:
        down_s = common.lab_down(state_file)
    return {"up_s": up_s, "down_s": down_s}


def _measure(runs: int) -> list[dict[str, float]]:
    samples = []
    with tempfile.TemporaryDirectory(prefix="chaos-dynamo-bench-start-") as tmp:
        for index in range(runs):
            common.progress(f"lab_start: run {index + 1}/{runs}: lab up --detach / lab down")
            sample = _lab_up_down(Path(tmp), index)
            common.progress(f"lab_start: run {index + 1}/{runs}: in-process Lab.start() "
                            "in a fresh interpreter")
            sample |= {f"inproc_{k}": v for k, v in _run_child().items()}
            sample["bare_python_s"] = common.median([_bare_interpreter() for _ in range(3)])
            samples.append(sample)
    return samples


def _add_metrics(result: common.BenchResult, med: dict[str, float], runs: int) -> None:
    up = med["up_s"]
    result.add(common.at_most(f"lab up --detach (median of {runs})", up, TARGET_S, "s",
                              "wall time of the CLI process"))
    result.add(common.info("lab down", med["down_s"], "s"))
    result.add(common.info("in-process: import lab", med["inproc_import_s"], "s"))
    result.add(common.info("in-process: Lab.start() cold", med["inproc_start_s"], "s",
                           "imports moto on first start"))
    result.add(common.info("in-process: Lab.start() warm", med["inproc_warm_start_s"], "s",
                           "second start, same process"))
    result.add(common.info("in-process: Lab.stop()", med["inproc_stop_s"], "s"))
    result.add(common.info("bare interpreter start", med["bare_python_s"], "s"))
    inproc = med["inproc_import_s"] + med["inproc_start_s"]
    result.add(common.info("ratio lab up / target", up / TARGET_S, "x"))
    result.add(common.info("ratio (import + cold start) / lab up", common.ratio(inproc, up), "x",
                           "the rest is two interpreters and the CLI"))
    result.add(common.info("ratio warm / cold start", common.ratio(
        med["inproc_warm_start_s"], med["inproc_start_s"]), "x"))


def run(quick: bool = False) -> common.BenchResult:
    """Measure lab start-up; ``quick`` makes one run instead of three."""
    runs = QUICK_RUNS if quick else RUNS
    samples = _measure(runs)
    med = {key: common.median([s[key] for s in samples]) for key in samples[0]}
    result = common.BenchResult(NAME)
    _add_metrics(result, med, runs)
    result.details = {"runs": runs, "samples": samples, "medians": med}
    return result


if __name__ == "__main__":
    common.main_for(run)
