"""Run chaos-dynamo's benchmarks, print a summary table, write ``bench/results.json``.

Usage::

    python bench/run.py                 # everything (about 11 minutes)
    python bench/run.py --quick         # shorter loads, one lab-start run
    python bench/run.py --only dns      # one benchmark (repeat --only for more)

The machine is assumed noisy: each benchmark measures its candidates side by side in one
run and reports ratios next to absolute figures. A missed target prints ``MISS`` and still
exits 0; a benchmark that could not measure at all (it raised) makes the exit code 1.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

try:
    from bench import _common as common
except ImportError:  # run as a script: the repo root is not on sys.path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from bench import _common as common

from bench import (
    bench_dns,
    bench_explorer,
    bench_failover,
    bench_lab_start,
    bench_lb,
    bench_lease,
    bench_race,
    bench_storm,
)

BENCHMARKS: dict[str, Callable[[bool], common.BenchResult]] = {
    bench_lab_start.NAME: bench_lab_start.run,
    bench_dns.NAME: bench_dns.run,
    bench_lb.NAME: bench_lb.run,
    bench_explorer.NAME: bench_explorer.run,
    bench_race.NAME: bench_race.run,
    bench_storm.NAME: bench_storm.run,
    bench_lease.NAME: bench_lease.run,
    bench_failover.NAME: bench_failover.run,
}
RESULTS_PATH = common.BENCH_DIR / "results.json"


def _arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="chaos-dynamo benchmarks")
    parser.add_argument("--quick", action="store_true", help="shorter loads, fewer runs")
    parser.add_argument("--only", action="append", choices=sorted(BENCHMARKS), metavar="NAME",
                        help=f"run only this benchmark ({', '.join(BENCHMARKS)}); repeatable")
    parser.add_argument("--json", type=Path, default=RESULTS_PATH, help="where to write results")
    return parser.parse_args(argv)


def _machine() -> dict[str, Any]:
    """What the figures were measured on, load included (the box is shared)."""
    return {"python": platform.python_version(), "platform": platform.platform(),
            "cpus": os.cpu_count(), "loadavg_1m": round(os.getloadavg()[0], 2)}


def _run_one(name: str, quick: bool) -> tuple[common.BenchResult | None, str]:
    """Run one benchmark; a crash is reported and returned as text, not raised."""
    print(f"== {name}", flush=True)
    try:
        result = common.timed(BENCHMARKS[name], quick)
    except Exception:  # noqa: BLE001 - one broken benchmark must not hide the others
        error = traceback.format_exc()
        print(f"!! {name} failed:\n{error}", flush=True)
        return None, error
    print(f"   {name} done in {result.seconds:.1f} s", flush=True)
    return result, ""


def _json_safe(value: Any) -> Any:
    """NaN and infinities become null (JSON has no NaN); containers are walked."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [_json_safe(v) for v in value]
    return value


def _write_json(path: Path, document: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(_json_safe(document), indent=2, default=str, allow_nan=False)
    path.write_text(text + "\n", encoding="utf-8")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the chosen benchmarks; 0 unless one of them could not run at all."""
    args = _arguments(argv)
    names = args.only or list(BENCHMARKS)
    machine = _machine()
    started = time.perf_counter()
    results: list[common.BenchResult] = []
    errors: dict[str, str] = {}
    for name in names:
        result, error = _run_one(name, args.quick)
        if result is not None:
            results.append(result)
        else:
            errors[name] = error
    total = time.perf_counter() - started
    machine["loadavg_1m_after"] = round(os.getloadavg()[0], 2)
    print()
    print(common.summary_table(results))
    misses = [f"{r.name}: {m.name}" for r in results for m in r.metrics if m.ok is False]
    print()
    print(f"targets: {sum(m.ok is True for r in results for m in r.metrics)} PASS, "
          f"{len(misses)} MISS{'' if not misses else ' -> ' + '; '.join(misses)}")
    for name in errors:
        print(f"ERROR: benchmark {name} did not run (see the traceback above)")
    print(f"total {total:.1f} s on {machine['cpus']} CPUs, load average "
          f"{machine['loadavg_1m']} before / {machine['loadavg_1m_after']} after"
          f"{' (--quick)' if args.quick else ''}")
    _write_json(args.json, {"machine": machine, "quick": args.quick, "seconds": round(total, 1),
                            "benchmarks": [r.to_json() for r in results], "errors": errors})
    print(f"results written to {args.json.resolve()}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
