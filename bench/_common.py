"""What every benchmark shares: result values, statistics, progress lines and a detached lab.

A benchmark returns a :class:`BenchResult`: a list of :class:`Metric` rows (value, unit,
target, verdict) plus free-form details for ``results.json``. Verdicts are ``PASS``,
``MISS`` or ``info`` (no target). Nothing here decides an exit code: a missed target is
reported, not raised.
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from chaos_dynamo.lab.state import LabInfo, read_state

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
CLI_TIMEOUT_S = 120.0
"""Upper bound on one ``chaos-dynamo lab up/down`` call: a hung CLI must not hang the bench."""


@dataclass(frozen=True)
class Metric:
    """One measured figure, with its target when it has one.

    Attributes:
        name: what was measured, as the summary table shows it.
        value: the figure, in ``unit``.
        unit: "s", "ms", "qps", "x" (a ratio), "" (a count) ...
        target: the target as text ("<= 3 s"); empty for an informational figure.
        ok: True/False against the target; None when there is no target.
        note: a short qualifier printed after the verdict.
    """

    name: str
    value: float
    unit: str
    target: str = ""
    ok: bool | None = None
    note: str = ""

    @property
    def verdict(self) -> str:
        """``PASS``, ``MISS`` or ``info``."""
        if self.ok is None:
            return "info"
        return "PASS" if self.ok else "MISS"


@dataclass
class BenchResult:
    """What one benchmark measured: table rows plus details for the JSON file."""

    name: str
    metrics: list[Metric] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def add(self, metric: Metric) -> None:
        """Append one row."""
        self.metrics.append(metric)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict, verdicts included."""
        rows = [asdict(m) | {"verdict": m.verdict} for m in self.metrics]
        return {"name": self.name, "seconds": round(self.seconds, 2), "metrics": rows,
                "details": self.details}


def at_most(name: str, value: float, limit: float, unit: str, note: str = "") -> Metric:
    """A metric whose target is ``value <= limit``."""
    return Metric(name, value, unit, f"<= {_num(limit)} {unit}".strip(), value <= limit, note)


def at_least(name: str, value: float, limit: float, unit: str, note: str = "") -> Metric:
    """A metric whose target is ``value >= limit``."""
    return Metric(name, value, unit, f">= {_num(limit)} {unit}".strip(), value >= limit, note)


def info(name: str, value: float, unit: str, note: str = "") -> Metric:
    """A metric reported without a target."""
    return Metric(name, value, unit, "", None, note)


def _num(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 or value == int(value) else f"{value:g}"


# --- statistics ---------------------------------------------------------------------


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile (``pct`` in 0..100); NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100.0 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def median(values: Sequence[float]) -> float:
    """The median (mean of the middle two for an even count); NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def ratio(numerator: float, denominator: float) -> float:
    """``numerator / denominator``; NaN when the denominator is 0 or NaN."""
    if not denominator or math.isnan(denominator):
        return math.nan
    return numerator / denominator


# --- output ---------------------------------------------------------------------------


def progress(message: str) -> None:
    """One progress line, flushed at once so a long step shows while it runs."""
    print(f"  .. {message}", flush=True)


def format_value(value: float, unit: str) -> str:
    """``2.413 s``, ``5,012 qps``, ``1.07 x``: enough digits to compare, no more."""
    if math.isnan(value):
        return "n/a"
    if unit == "qps" or (abs(value) >= 1000 and unit != "s"):
        text = f"{value:,.0f}"
    elif unit in ("x", "%"):
        text = f"{value:.2f}"
    elif unit == "" and value == int(value):
        text = f"{value:.0f}"
    else:
        text = f"{value:.3f}" if abs(value) < 10 else f"{value:.1f}"
    return f"{text} {unit}".rstrip()


def summary_table(results: Sequence[BenchResult]) -> str:
    """Every metric of every result as one aligned text table."""
    header = ("benchmark", "metric", "value", "target", "verdict")
    rows = [header]
    for result in results:
        for m in result.metrics:
            verdict = m.verdict + (f" ({m.note})" if m.note else "")
            rows.append((result.name, m.name, format_value(m.value, m.unit), m.target, verdict))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header) - 1)]
    lines = []
    for index, row in enumerate(rows):
        cells = [cell.ljust(width) for cell, width in zip(row[:-1], widths, strict=True)]
        lines.append("  ".join(cells + [row[-1]]).rstrip())
        if index == 0:
            lines.append("  ".join("-" * w for w in widths) + "  -------")
    return "\n".join(lines)


# --- processes and the lab ------------------------------------------------------------


def clean_env() -> dict[str, str]:
    """This environment without AWS_* and CHAOS_DYNAMO_*: a child must not find another lab
    or switch on the getaddrinfo shim by inheritance."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "CHAOS_DYNAMO_"))}


def cli_command() -> list[str]:
    """How to run ``chaos-dynamo`` from this interpreter's environment."""
    script = Path(sys.executable).parent / "chaos-dynamo"
    return [str(script)] if script.exists() else [sys.executable, "-m", "chaos_dynamo.cli"]


def run_cli(args: Sequence[str], timeout: float = CLI_TIMEOUT_S) -> tuple[float, str]:
    """Run ``chaos-dynamo ARGS`` to completion; return (wall seconds, output).

    Raises:
        RuntimeError: the command failed, with its output.
    """
    started = time.perf_counter()
    done = subprocess.run([*cli_command(), *args], capture_output=True, text=True,
                          timeout=timeout, env=clean_env(), cwd=REPO_ROOT, check=False)
    elapsed = time.perf_counter() - started
    output = done.stdout + done.stderr
    if done.returncode != 0:
        raise RuntimeError(f"`chaos-dynamo {' '.join(args)}` exited {done.returncode}:\n{output}")
    return elapsed, output


def lab_down(state_file: Path) -> float:
    """``lab down`` for ``state_file``; return its wall seconds (a no-op if none is up)."""
    elapsed, _ = run_cli(["lab", "down", "--state-file", str(state_file)])
    return elapsed


@contextmanager
def detached_lab(config_toml: str = "") -> Iterator[LabInfo]:
    """A lab started with ``chaos-dynamo lab up --detach``, as a user runs it; always
    stopped with ``lab down`` on the way out.

    Args:
        config_toml: a topology file's text (``--config``); the defaults when empty.
    """
    with tempfile.TemporaryDirectory(prefix="chaos-dynamo-bench-") as tmp:
        state_file = Path(tmp) / "lab.json"
        args = ["lab", "up", "--detach", "--state-file", str(state_file)]
        if config_toml:
            config = Path(tmp) / "lab.toml"
            config.write_text(config_toml, encoding="utf-8")
            args += ["--config", str(config)]
        try:
            progress("starting a lab: chaos-dynamo lab up --detach"
                     + (" --config (" + " ".join(config_toml.split()) + ")" if config_toml else ""))
            run_cli(args)
            yield read_state(state_file)
        finally:
            lab_down(state_file)


def timed(bench: Callable[[bool], BenchResult], quick: bool) -> BenchResult:
    """Run one benchmark and record how long it took."""
    started = time.perf_counter()
    result = bench(quick)
    result.seconds = time.perf_counter() - started
    return result


def main_for(bench: Callable[[bool], BenchResult]) -> None:
    """Command line of a benchmark run alone: ``--quick``, then its table on stdout."""
    parser = argparse.ArgumentParser(description=sys.modules[bench.__module__].__doc__)
    parser.add_argument("--quick", action="store_true", help="shorter loads, fewer runs")
    args = parser.parse_args()
    result = timed(bench, args.quick)
    print(summary_table([result]))
    print(f"({result.name}: {result.seconds:.1f} s)")
