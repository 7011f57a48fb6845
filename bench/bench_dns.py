"""Lab DNS: throughput and tail latency under loopback load from a separate process.

Target: >= 5,000 queries/s, and p99 <= 5 ms at an offered 5,000 queries/s.

The lab runs as users run it (``chaos-dynamo lab up --detach``, its own process); the
load comes from other processes: ``bench/dns_load.py`` (Python, raw UDP), and ``dnsperf``
when it is installed. Each runs the same two loads, side by side in one run:

* paced: 5,000 queries/s for ~5 s, on schedule (p99 is measured here);
* closed: 32 queries in flight on one socket for ~5 s (maximum throughput).

A second lab, with the 2-second resync loop switched off (``resync_interval = 0``), runs
the Python paced load once more, so the table shows how much of the tail that loop causes
(each resync re-reads every zone through boto3 inside the lab process and republishes it).

The mix is three queries for the endpoint name (a weighted answer through the alias to
the active plan) to one for a name that never existed (NXDOMAIN). dnsperf 2.10 prints
average and maximum latency but no percentiles, so its p99 is not available.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

try:
    from bench import _common as common
except ImportError:  # run as a script: the repo root is not on sys.path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from bench import _common as common

from chaos_dynamo.dns.client import query
from chaos_dynamo.lab.state import LabInfo

NAME = "dns"
TARGET_QPS = 5000.0
TARGET_P99_MS = 5.0
WINDOW = 32
ENDPOINT_WEIGHT, NXDOMAIN_WEIGHT = 3, 1
NO_RESYNC_TOML = "[lab]\nresync_interval = 0\n"
MIN_ANSWERED = 0.999
"""Fraction of paced queries that must be answered for the p99 to count."""


def _mix(info: LabInfo) -> list[tuple[str, str, int]]:
    """(name, expectation, weight): the endpoint (weighted alias) and a name that never was."""
    endpoint = info.primary_endpoint
    return [(endpoint.name, "answer", ENDPOINT_WEIGHT),
            (f"no-such-name.{endpoint.zone}", "nxdomain", NXDOMAIN_WEIGHT)]


def check_answers(info: LabInfo) -> dict[str, Any]:
    """Ask once for each name of the mix; raise unless the lab answers as expected."""
    seen: dict[str, Any] = {}
    for name, expect, _ in _mix(info):
        answer = query(info.dns, name, "A", timeout=2.0, retries=2)
        good = answer.rcode == "NXDOMAIN" if expect == "nxdomain" else bool(answer.addresses)
        if not good:
            raise RuntimeError(f"lab DNS answered {name} with {answer}; expected {expect}")
        seen[name] = {"rcode": answer.rcode, "addresses": list(answer.addresses)}
    return seen


# --- the Python generator -------------------------------------------------------------


def python_load(info: LabInfo, mode: str, duration: float, rate: float = TARGET_QPS) -> dict[str, Any]:
    """Run ``bench/dns_load.py`` in its own process; return its JSON summary."""
    cmd = [sys.executable, str(common.BENCH_DIR / "dns_load.py"),
           "--server", f"{info.dns_host}:{info.dns_port}", "--mode", mode,
           "--duration", str(duration), "--window", str(WINDOW), "--rate", str(rate)]
    for name, expect, weight in _mix(info):
        cmd += ["--name", f"{name}:{expect}:{weight}"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60,
                          env=common.clean_env(), check=False)
    if done.returncode != 0:
        raise RuntimeError(f"dns_load.py failed ({done.returncode}): {done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout)
    return result


# --- dnsperf ----------------------------------------------------------------------------

_DNSPERF_FIELDS = {
    "sent": r"Queries sent:\s+(\d+)",
    "completed": r"Queries completed:\s+(\d+)",
    "lost": r"Queries lost:\s+(\d+)",
    "qps": r"Queries per second:\s+([\d.]+)",
    "avg_s": r"Average Latency \(s\):\s+([\d.]+)",
    "min_s": r"Average Latency \(s\):\s+[\d.]+ \(min ([\d.]+)",
    "max_s": r"Average Latency \(s\):.*max ([\d.]+)\)",
    "stddev_s": r"Latency StdDev \(s\):\s+([\d.]+)",
}


def parse_dnsperf(output: str) -> dict[str, float]:
    """The figures of dnsperf's statistics block; raise if the block is missing."""
    found: dict[str, float] = {}
    for key, pattern in _DNSPERF_FIELDS.items():
        match = re.search(pattern, output)
        if match:
            found[key] = float(match.group(1))
    if "qps" not in found:
        raise RuntimeError(f"no statistics in dnsperf's output:\n{output[-2000:]}")
    return found


def dnsperf_load(info: LabInfo, data_file: Path, duration: float, rate: float | None) -> dict[str, Any]:
    """Run dnsperf against the lab DNS, paced at ``rate`` or closed-loop when None."""
    cmd = ["dnsperf", "-s", info.dns_host, "-p", str(info.dns_port), "-d", str(data_file),
           "-l", f"{duration:g}", "-q", str(WINDOW if rate is None else 256), "-c", "1",
           "-T", "1", "-t", "1"]
    if rate is not None:
        cmd += ["-Q", f"{rate:.0f}"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 30, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"dnsperf failed ({done.returncode}): {done.stderr[-2000:]}")
    figures = parse_dnsperf(done.stdout)
    ms = {k.replace("_s", "_ms"): round(v * 1000, 4) for k, v in figures.items() if k.endswith("_s")}
    return {k: v for k, v in figures.items() if not k.endswith("_s")} | ms | {"rate": rate}


def write_dnsperf_data(info: LabInfo, folder: Path) -> Path:
    """The mix as a dnsperf data file (one ``NAME A`` line per query of the cycle)."""
    path = folder / "queries.txt"
    lines = [f"{name} A" for name, _, weight in _mix(info) for _ in range(weight)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# --- the benchmark ----------------------------------------------------------------------


def _measure(info: LabInfo, duration: float, with_dnsperf: bool) -> dict[str, Any]:
    """All loads, interleaved Python / dnsperf; returns the raw summaries."""
    runs: dict[str, Any] = {"answers": check_answers(info)}
    common.progress("dns: warm-up (0.5 s)")
    python_load(info, "closed", 0.5)
    with tempfile.TemporaryDirectory(prefix="chaos-dynamo-dnsperf-") as tmp:
        data_file = write_dnsperf_data(info, Path(tmp))
        for mode in ("paced", "closed"):
            common.progress(f"dns: python generator, {mode}, {duration:g} s")
            runs[f"python_{mode}"] = python_load(info, mode, duration)
            if with_dnsperf:
                common.progress(f"dns: dnsperf, {mode}, {duration:g} s")
                rate = TARGET_QPS if mode == "paced" else None
                runs[f"dnsperf_{mode}"] = dnsperf_load(info, data_file, duration, rate)
    return runs


def _lab_counters(info: LabInfo) -> dict[str, Any]:
    """The lab DNS's own counters (total, errors, dropped) from the control API."""
    from chaos_dynamo.endpoint._lab import http_json

    counters = http_json(f"{info.api_url}/_chaos_dynamo/status")["counters"]["dns"]
    return {k: counters[k] for k in ("total", "errors", "dropped", "by_rcode")}


def _python_metrics(result: common.BenchResult, runs: dict[str, Any]) -> None:
    paced, closed = runs["python_paced"], runs["python_closed"]
    answered = paced["answered"] / max(1, paced["sent"])
    p99 = paced["p99_ms"] if paced["p99_ms"] is not None else float("nan")
    result.add(common.info("py paced: achieved rate", paced["qps"], "qps",
                           f"offered {TARGET_QPS:,.0f}, lost {paced['lost']}, wrong {paced['wrong']}"))
    result.add(common.info("py paced: p50 latency", paced["p50_ms"], "ms"))
    metric = common.at_most("py paced: p99 latency", p99, TARGET_P99_MS, "ms",
                            f"{paced['slow']} over 5 ms; sender lag p99 "
                            f"{paced['send_lag_p99_ms']:.1f} ms")
    if answered < MIN_ANSWERED:
        metric = common.Metric(metric.name, p99, "ms", metric.target, False,
                               f"only {answered:.1%} answered")
    result.add(metric)
    result.add(common.info("py paced: max latency", paced["max_ms"], "ms"))
    result.add(common.at_least("py closed: max throughput", closed["qps"], TARGET_QPS, "qps",
                               f"window {WINDOW}, lost {closed['lost']}, wrong {closed['wrong']}"))
    result.add(common.info("py closed: p99 at saturation", closed["p99_ms"], "ms"))
    result.add(common.info("ratio max qps / target", closed["qps"] / TARGET_QPS, "x"))
    result.add(common.info("ratio paced p99 / target", p99 / TARGET_P99_MS, "x"))


def _dnsperf_metrics(result: common.BenchResult, runs: dict[str, Any]) -> None:
    paced, closed = runs["dnsperf_paced"], runs["dnsperf_closed"]
    result.add(common.info("dnsperf paced: achieved rate", paced["qps"], "qps",
                           f"offered {TARGET_QPS:,.0f}, lost {paced.get('lost', 0):.0f}"))
    result.add(common.info("dnsperf paced: avg latency", paced.get("avg_ms", float("nan")), "ms",
                           "dnsperf 2.10 gives no p99"))
    result.add(common.info("dnsperf paced: max latency", paced.get("max_ms", float("nan")), "ms"))
    result.add(common.at_least("dnsperf closed: max throughput", closed["qps"], TARGET_QPS, "qps",
                               f"window {WINDOW}, lost {closed.get('lost', 0):.0f}"))
    result.add(common.info("dnsperf closed: avg latency", closed.get("avg_ms", float("nan")), "ms"))
    result.add(common.info("ratio dnsperf / python max qps",
                           common.ratio(closed["qps"], runs["python_closed"]["qps"]), "x"))


def _no_resync_metrics(result: common.BenchResult, runs: dict[str, Any]) -> None:
    paced = runs["python_paced_no_resync"]
    result.add(common.info("py paced, resync off: p99", paced["p99_ms"], "ms",
                           f"{paced['slow']} of {paced['answered']} over 5 ms "
                           f"(resync on: {runs['python_paced']['slow']})"))
    result.add(common.info("py paced, resync off: max", paced["max_ms"], "ms"))


def run(quick: bool = False) -> common.BenchResult:
    """Measure the lab DNS; ``quick`` shortens each load from 5 s to 2 s."""
    duration = 2.0 if quick else 5.0
    with_dnsperf = shutil.which("dnsperf") is not None
    result = common.BenchResult(NAME)
    with common.detached_lab() as info:
        runs = _measure(info, duration, with_dnsperf)
        runs["lab_counters"] = _lab_counters(info)
    with common.detached_lab(NO_RESYNC_TOML) as info:
        check_answers(info)
        common.progress(f"dns: python generator, paced, resync off, {duration:g} s")
        runs["python_paced_no_resync"] = python_load(info, "paced", duration)
    _python_metrics(result, runs)
    _no_resync_metrics(result, runs)
    if with_dnsperf:
        _dnsperf_metrics(result, runs)
    else:
        common.progress("dns: dnsperf not installed; Python generator only")
    result.details = runs | {"duration_s": duration, "window": WINDOW, "dnsperf": with_dnsperf,
                             "mix": f"{ENDPOINT_WEIGHT} endpoint : {NXDOMAIN_WEIGHT} NXDOMAIN"}
    return result


if __name__ == "__main__":
    common.main_for(run)
