"""The naive service's retry storm: do the lab DNS and LB fleet count every query and request?

Targets: the naive service's storm reaches >= 10x the hardened service's request rate, at
the lab DNS (endpoint emptied) and at the LB fleet (every LB answering 500), and the lab
counts exactly what the services sent: counted / sent = 1.00, nothing dropped.

One embedded lab (``Lab(load_topology(...))``, in this process); the reference services
(:mod:`chaos_dynamo.services.reference`) as real processes with the lab's environment and
the attribution contract, each its own service name = SDK app id, its own DNS source
address 127.0.0.24x and a call log in a temporary directory:

* the hardened and the naive service, each 2 instances at ``--rate 5`` with 8 workers
  (the retry experiment's defaults: same workload, different retry policy), all started
  together;
* baseline (all healthy): the hardened service's LB request rate, attributed by app id;
* DNS storm: the endpoint emptied (``empty_endpoint``) and the LBs' keep-alive connections
  closed; each naive attempt makes a new client, whose lookup fails (A and AAAA asked);
* LB storm: the endpoint restored, every LB answering every request with 500; each naive
  attempt is an LB request, retried at once;
* the services stopped (SIGTERM, waited for), then both sides read.

*Sent* is the services' own account: DNS queries counted inside each service process by
a thin wrapper around the DNS client's send-one-message functions (``--child`` mode of
this file: it wraps them, then runs the reference service unchanged); LB requests =
attempts with an HTTP status in the call log. *Counted* is the lab's: DNS queries by
source address (``counters()``, never trimmed) and LB requests by app id (the request
log). Both are whole-lifetime totals of processes started and stopped inside the run, so
no attempt straddles a window edge. Rates are the lab's counts inside each fault window
over its length.

The storm's size is the naive client's, not the lab's: every attempt builds a new boto3
session and client (tens of ms of CPU), so on a small machine the naive processes run out
of CPU first. The ``naive: CPU during LB storm`` row shows how many cores they used; a
ratio below 10x with the naive processes near the machine's core count is a ceiling of the
load generator, and the counted/sent rows still say whether the lab kept up with it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

try:
    from bench import _common as common
except ImportError:  # run as a script: the repo root is not on sys.path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from bench import _common as common

from chaos_dynamo.clock import wait_until
from chaos_dynamo.lab.lab import Lab
from chaos_dynamo.lab.state import LabInfo

NAME = "storm"
TARGET_RATIO = 10.0
TABLE = "chaos-dynamo-bench-storm"
INSTANCES, RATE, CONCURRENCY = 2, 5.0, 8
"""Per service (hardened and naive alike): the retry experiment's defaults
(``experiments/empty-endpoint-retry.json``: ``service_instances``, ``service_rate``) and
the reference service's default worker count. Same workload, different retry policy."""
ADDRESSES = [f"127.0.0.{240 + i}" for i in range(10)]
"""DNS source addresses of the bench's services (one each; the hardened one first)."""
BASELINE_S, STORM_S, GAP_S = 10.0, 12.0, 1.0
QUICK_BASELINE_S, QUICK_STORM_S, QUICK_GAP_S = 2.0, 2.5, 0.5
READY_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 15.0
SETTLE_S = 5.0
"""How long the lab may take to read queries still in its socket buffer after the stop."""


# --- the service processes ----------------------------------------------------------------


@dataclass
class Service:
    """One reference-service process of the bench (its own service name and address)."""

    name: str
    kind: str
    address: str
    process: subprocess.Popen[bytes]
    ready_file: Path
    counts_file: Path
    output: Path

    def tail(self) -> str:
        try:
            return self.output.read_text(errors="replace")[-2000:]
        except OSError:
            return ""

    def counts(self) -> dict[str, int]:
        """What the process counted itself (written at exit); {} if it died before."""
        try:
            return dict(json.loads(self.counts_file.read_text()))
        except (OSError, ValueError):
            return {}


def _start(info: LabInfo, folder: Path, name: str, kind: str, address: str, rate: float,
           concurrency: int, seed: int) -> Service:
    ready, counts, output = (folder / f"{name}.{ext}" for ext in ("ready", "counts", "out"))
    env = common.clean_env() | info.env() | {
        "CHAOS_DYNAMO_SERVICE": name, "AWS_SDK_UA_APP_ID": name,
        "CHAOS_DYNAMO_SOURCE_ADDRESS": address, "CHAOS_DYNAMO_CALL_LOG": str(folder / "calls")}
    command = [sys.executable, str(Path(__file__).resolve()), "--child", str(counts),
               "--kind", kind, "--rate", f"{rate:g}", "--concurrency", str(concurrency),
               "--seed", str(seed), "--table", TABLE, "--http", "127.0.0.1:0",
               "--ready-file", str(ready)]
    with output.open("wb") as out:
        process = subprocess.Popen(command, env=env, cwd=common.REPO_ROOT, stdout=out,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    return Service(name, kind, address, process, ready, counts, output)


def _wait_ready(services: Sequence[Service]) -> None:
    def all_ready() -> bool:
        for s in services:
            if s.process.poll() is not None:
                raise RuntimeError(f"{s.name} exited {s.process.returncode} before it was "
                                   f"ready:\n{s.tail()}")
        return all(s.ready_file.exists() for s in services)

    if not wait_until(all_ready, timeout=READY_TIMEOUT_S, interval=0.1):
        late = [s.name for s in services if not s.ready_file.exists()]
        raise RuntimeError(f"not ready within {READY_TIMEOUT_S:g} s: {late}")


def _stop(services: Sequence[Service]) -> dict[str, int | None]:
    """SIGTERM every process, then wait for each (SIGKILL past the timeout); exit codes."""
    for s in services:
        if s.process.poll() is None:
            s.process.terminate()
    codes: dict[str, int | None] = {}
    for s in services:
        try:
            codes[s.name] = s.process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            s.process.kill()
            s.process.wait(timeout=STOP_TIMEOUT_S)
            codes[s.name] = None  # did not stop on SIGTERM
    return codes


@contextmanager
def _services(info: LabInfo, folder: Path, token: str) -> Iterator[list[Service]]:
    """The hardened service and the naive instances, started together, always stopped."""
    kinds = ["hardened"] * INSTANCES + ["naive"] * INSTANCES
    services: list[Service] = []
    try:
        for index, kind in enumerate(kinds):
            name = f"storm-{token}-{kind}-{index}"
            services.append(_start(info, folder, name, kind, ADDRESSES[index], RATE,
                                   CONCURRENCY, seed=index))
        _wait_ready(services)
        yield services
    finally:
        _stop(services)


# --- the lab side ---------------------------------------------------------------------------


def _dns_counters(lab: Lab) -> dict[str, Any]:
    assert lab.dns is not None
    return dict(lab.dns.counters())


def _dns_by_client(lab: Lab) -> dict[str, int]:
    return {str(k): int(v) for k, v in _dns_counters(lab)["by_client"].items()}


def _dns_health(lab: Lab) -> dict[str, int]:
    counters = _dns_counters(lab)
    return {k: int(counters[k]) for k in ("total", "dropped", "errors")}


def _lb_health(lab: Lab) -> dict[str, int]:
    assert lab.fleet is not None
    total = lab.fleet.counters()["total"]
    return {k: int(total.get(k, 0)) for k in ("requests", "dropped", "bad_requests",
                                              "upstream_errors", "injected_errors")}


def _lb_requests_by_app(lab: Lab, since: float, until: float = float("inf")) -> dict[str, int]:
    """LB requests per SDK app id (``app/<id>`` in the User-Agent) in [since, until]."""
    from chaos_dynamo.services.attribution import app_id

    assert lab.fleet is not None
    counts: dict[str, int] = {}
    for record in lab.fleet.request_log(since=since):
        if record.time <= until:
            key = app_id(record.user_agent) or ""
            counts[key] = counts.get(key, 0) + 1
    return counts


def _delta(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {k: after.get(k, 0) - before.get(k, 0) for k in after}


@contextmanager
def _empty_endpoint(lab: Lab, info: LabInfo) -> Iterator[dict[str, Any]]:
    """The endpoint resolving to nothing, LB keep-alive connections closed; restored after."""
    from chaos_dynamo.endpoint.actions import empty_endpoint, restore_endpoint

    assert lab.fleet is not None
    config = {"chaos_dynamo_api": info.api_url}
    try:
        emptied = empty_endpoint(configuration=config)
        closed = lab.fleet.close_connections()
        yield {"emptied": emptied, "closed_connections": closed}
    finally:
        restore_endpoint(configuration=config)


@contextmanager
def _lbs_failing(lab: Lab) -> Iterator[None]:
    """Every LB answers every DynamoDB request with 500; faults reset after."""
    assert lab.fleet is not None
    try:
        for lb in lab.fleet:
            lb.set_error_rate(1.0, status=500, seed=lab.topology.seed)
        yield
    finally:
        for lb in lab.fleet:
            lb.reset_faults()


def _cpu_seconds(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far; NaN where /proc cannot tell."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return float("nan")


def _window(seconds: float, lab: Lab, services: Sequence[Service]) -> dict[str, Any]:
    """Hold for ``seconds``; what the lab DNS counted by client, and the CPU each service used."""
    def read() -> tuple[dict[str, int], dict[str, float]]:
        return _dns_by_client(lab), {s.name: _cpu_seconds(s.process.pid) for s in services}

    (dns0, cpu0), started = read(), time.time()
    time.sleep(seconds)
    ended, (dns1, cpu1) = time.time(), read()
    return {"start": started, "end": ended, "dns_by_client": _delta(dns1, dns0),
            "cpu_seconds": {n: cpu1[n] - cpu0[n] for n in cpu1},
            "lb": _lb_requests_by_app(lab, started, ended)}


# --- the measurement --------------------------------------------------------------------------


def _phases(lab: Lab, info: LabInfo, services: list[Service], durations: tuple[float, float, float]
            ) -> dict[str, Any]:
    """Baseline, DNS storm, LB storm: what the lab counted inside each window."""
    baseline_s, storm_s, gap_s = durations
    phases: dict[str, Any] = {}
    common.progress(f"storm: baseline, {baseline_s:g} s (all healthy)")
    phases["baseline"] = _window(baseline_s, lab, services)
    common.progress(f"storm: DNS storm, endpoint empty for {storm_s:g} s")
    with _empty_endpoint(lab, info) as fault:
        phases["dns_storm"] = _window(storm_s, lab, services) | fault
    time.sleep(gap_s)  # the naive backlog drains; not measured
    common.progress(f"storm: LB storm, every LB answering 500 for {storm_s:g} s")
    with _lbs_failing(lab):
        phases["lb_storm"] = _window(storm_s, lab, services)
    return phases


def _sent(services: Sequence[Service], calls_dir: Path, phases: dict[str, Any]
          ) -> dict[str, dict[str, Any]]:
    """Each service's own account, from its counts file and its call log; also, per phase,
    the attempts it started inside the window (``phases[...]["attempts"]``)."""
    from chaos_dynamo.calllog import read_calls

    sent: dict[str, dict[str, Any]] = {}
    for s in services:
        calls = read_calls(calls_dir, s.name)
        attempts = [a for c in calls for a in c.attempts]
        sent[s.name] = {
            "kind": s.kind, "address": s.address, "process": s.counts(),
            "calls": len(calls),
            "attempts": len(attempts),
            "lb_requests": sum(a.status is not None for a in attempts),
            "dns_failures": sum(a.dns_failure for a in attempts),
            "other_failures": sum(a.status is None and not a.dns_failure and a.end is not None
                                  for a in attempts),
            "unfinished": sum(a.end is None for a in attempts),
        }
        for phase in phases.values():
            phase.setdefault("attempts", {})[s.name] = sum(
                phase["start"] <= a.start <= phase["end"] for a in attempts)
    return sent


def _measure(lab: Lab, durations: tuple[float, float, float]) -> dict[str, Any]:
    info = lab.info()
    token = uuid.uuid4().hex[:6]
    with tempfile.TemporaryDirectory(prefix="chaos-dynamo-bench-storm-") as tmp:
        folder = Path(tmp)
        dns_before, dns_health, lb_health = _dns_by_client(lab), _dns_health(lab), _lb_health(lab)
        since = time.time()
        common.progress(f"storm: starting the hardened and the naive reference services, "
                        f"each {INSTANCES} x (--rate {RATE:g} --concurrency {CONCURRENCY})")
        with _services(info, folder, token) as services:
            phases = _phases(lab, info, services, durations)
            common.progress("storm: stopping the services (SIGTERM, waited for)")
            exit_codes = _stop(services)
        sent = _sent(services, folder / "calls", phases)
        addresses = {s.name: s.address for s in services}

        def counted() -> dict[str, dict[str, int]]:
            dns = _delta(_dns_by_client(lab), dns_before)
            lb = _lb_requests_by_app(lab, since)
            return {n: {"dns": dns.get(a, 0), "lb": lb.get(n, 0)} for n, a in addresses.items()}

        def settled() -> bool:
            now = counted()
            return all(now[n]["dns"] == sent[n]["process"].get("sent", -1)
                       and lb_within(now[n]["lb"], sent[n]) for n in now)

        wait_until(settled, timeout=SETTLE_S, interval=0.1)  # else report the difference
        lab_counts = counted()
        lb_logged = sum(_lb_requests_by_app(lab, since).values())
        lb_delta = _delta(_lb_health(lab), lb_health)
    return {"phases": phases, "sent": sent, "counted": lab_counts, "exit_codes": exit_codes,
            "dns_health": _delta(_dns_health(lab), dns_health), "lb_health": lb_delta,
            "lb_log_complete": lb_logged == lb_delta["requests"],
            "services": {s.name: {"kind": s.kind, "address": s.address} for s in services}}


# --- figures ------------------------------------------------------------------------------------


def summarize(raw: dict[str, Any]) -> dict[str, Any]:
    """Rates, ratios and counted/sent from the raw measurement (pure)."""
    services = raw["services"]
    naive = [n for n, s in services.items() if s["kind"] == "naive"]
    hardened = [n for n, s in services.items() if s["kind"] == "hardened"]
    phases = raw["phases"]

    def seconds(phase: str) -> float:
        return float(phases[phase]["end"] - phases[phase]["start"])

    def lb_rate(phase: str, names: list[str]) -> float:
        return float(sum(phases[phase]["lb"].get(n, 0) for n in names)) / seconds(phase)

    def dns_rate(phase: str, names: list[str]) -> float:
        by_client = phases[phase]["dns_by_client"]
        return float(sum(by_client.get(services[n]["address"], 0) for n in names)) / seconds(phase)

    def attempt_rate(phase: str, names: list[str]) -> float:
        return float(sum(phases[phase]["attempts"].get(n, 0) for n in names)) / seconds(phase)

    def cores(phase: str, names: list[str]) -> float:
        return float(sum(phases[phase]["cpu_seconds"].get(n, 0.0) for n in names)) / seconds(phase)

    hardened_rate = lb_rate("baseline", hardened)
    dns_sent = sum(int(raw["sent"][n]["process"].get("sent", 0)) for n in services)
    lb_sent = sum(int(raw["sent"][n]["lb_requests"]) for n in services)
    dns_counted = sum(raw["counted"][n]["dns"] for n in services)
    lb_counted = sum(raw["counted"][n]["lb"] for n in services)
    dns_exact = {n: raw["counted"][n]["dns"] == raw["sent"][n]["process"].get("sent")
                 for n in services}
    lb_exact = {n: lb_within(raw["counted"][n]["lb"], raw["sent"][n]) for n in services}
    return {
        "hardened_lb_rate": hardened_rate,
        "naive_lb_rate_baseline": lb_rate("baseline", naive),
        "naive_dns_rate_dns_storm": dns_rate("dns_storm", naive),
        "naive_lb_rate_lb_storm": lb_rate("lb_storm", naive),
        "hardened_dns_rate_dns_storm": dns_rate("dns_storm", hardened),
        "dns_sent": dns_sent, "dns_counted": dns_counted,
        "lb_sent": lb_sent, "lb_counted": lb_counted,
        "dns_exact_per_service": dns_exact, "lb_exact_per_service": lb_exact,
        "dns_timeouts": sum(int(raw["sent"][n]["process"].get("timeouts", 0)) for n in services),
        "lb_uncertain": sum(raw["sent"][n]["other_failures"] + raw["sent"][n]["unfinished"]
                            for n in services),
        "naive_attempts": sum(raw["sent"][n]["attempts"] for n in naive),
        "naive_dns_failures": sum(raw["sent"][n]["dns_failures"] for n in naive),
        "naive_attempt_rate_dns_storm": attempt_rate("dns_storm", naive),
        "naive_attempt_rate_lb_storm": attempt_rate("lb_storm", naive),
        "naive_cores_dns_storm": cores("dns_storm", naive),
        "naive_cores_lb_storm": cores("lb_storm", naive),
        "naive_cpu_ms_per_attempt_lb_storm": common.ratio(
            1000.0 * cores("lb_storm", naive), lb_rate("lb_storm", naive)),
        "storm_seconds": seconds("dns_storm"),
    }


def lb_within(counted: int, sent: dict[str, Any]) -> bool:
    """The LB counted every attempt that got a response, and nothing more than the attempts
    that may have reached it without one (cut off at exit, or failed after sending)."""
    uncertain = int(sent["other_failures"]) + int(sent["unfinished"])
    return int(sent["lb_requests"]) <= counted <= int(sent["lb_requests"]) + uncertain


def _exact(name: str, counted: int, sent: int, exact: dict[str, bool], note: str) -> common.Metric:
    ok = sent > 0 and all(exact.values())
    note = f"{note}; {sum(exact.values())}/{len(exact)} services exact"
    return common.Metric(name, common.ratio(counted, sent), "x", "= 1.00 (counted == sent)", ok,
                         note)


def _add_metrics(result: common.BenchResult, raw: dict[str, Any], s: dict[str, Any]) -> None:
    hardened = s["hardened_lb_rate"]
    result.add(common.info("hardened: LB rate, baseline", hardened, "req/s",
                           f"{INSTANCES} x --rate {RATE:g}, attributed by app id"))
    result.add(common.info("naive: DNS rate, DNS storm", s["naive_dns_rate_dns_storm"], "qps",
                           f"{INSTANCES} x {CONCURRENCY} workers, lab-counted; "
                           f"{s['naive_attempt_rate_dns_storm']:.0f} attempts/s, "
                           "each looking up A and AAAA"))
    result.add(common.at_least("ratio naive DNS storm / hardened",
                               common.ratio(s["naive_dns_rate_dns_storm"], hardened),
                               TARGET_RATIO, "x", "queries/s over requests/s"))
    result.add(common.info("naive: LB rate, LB storm", s["naive_lb_rate_lb_storm"], "req/s",
                           "every LB answering 500, lab-counted"))
    result.add(common.at_least("ratio naive LB storm / hardened",
                               common.ratio(s["naive_lb_rate_lb_storm"], hardened),
                               TARGET_RATIO, "x"))
    result.add(common.info("naive: CPU during LB storm", s["naive_cores_lb_storm"], "cores",
                           f"{s['naive_cpu_ms_per_attempt_lb_storm']:.0f} ms per attempt "
                           f"(a new client each); {os.cpu_count()} CPUs"))
    result.add(_exact("DNS counted / sent", s["dns_counted"], s["dns_sent"],
                      s["dns_exact_per_service"], f"{s['dns_counted']:,} of {s['dns_sent']:,}; "
                      f"{s['dns_timeouts']} client timeouts"))
    result.add(_exact("LB counted / sent", s["lb_counted"], s["lb_sent"],
                      s["lb_exact_per_service"], f"{s['lb_counted']:,} of {s['lb_sent']:,}; "
                      f"{s['lb_uncertain']} attempts without a response"
                      + ("" if raw["lb_log_complete"] else "; LB log trimmed")))
    dns, lb = raw["dns_health"], raw["lb_health"]
    result.add(common.at_most("lab DNS dropped + errors", dns["dropped"] + dns["errors"], 0, ""))
    result.add(common.at_most("LB dropped + bad requests", lb["dropped"] + lb["bad_requests"],
                              0, "", f"{lb['upstream_errors']} upstream errors"))


def measure(lab: Lab, quick: bool = False) -> common.BenchResult:
    """The benchmark against a running ``lab`` (the smoke test passes its session lab)."""
    durations = ((QUICK_BASELINE_S, QUICK_STORM_S, QUICK_GAP_S) if quick
                 else (BASELINE_S, STORM_S, GAP_S))
    raw = _measure(lab, durations)
    summary = summarize(raw)
    result = common.BenchResult(NAME)
    _add_metrics(result, raw, summary)
    result.details = {"summary": summary, "durations_s": durations,
                      "per_service": {"instances": INSTANCES, "rate": RATE,
                                      "concurrency": CONCURRENCY}} | raw
    return result


def run(quick: bool = False) -> common.BenchResult:
    """Start an embedded lab, measure, stop it; ``quick`` shortens every window."""
    from chaos_dynamo.config import load_topology

    common.progress("storm: starting an embedded lab")
    with Lab(load_topology(None, seed=7, propagation_delay=0.05, resync_interval=0.0)) as lab:
        return measure(lab, quick)


# --- the service process (``--child``) ------------------------------------------------------------


def child(argv: Sequence[str]) -> int:
    """Run a reference service, counting every DNS message its shim sends.

    ``argv`` = COUNTS_FILE then the reference service's own arguments. The shim is already
    installed (at interpreter start, from the environment). The DNS client's one-message
    exchanges (``_ask_udp``, ``_ask_tcp``: one query sent each, retries included) are
    wrapped to count, and the service then runs unchanged. At exit, queries stop being
    sent (a worker still inside a lookup gets an OSError, as the process is ending) and
    the counts are written: ``sent``, ``answered``, ``timeouts`` (sent, no answer in
    time) and ``errors`` (the socket failed; possibly never sent).
    """
    from chaos_dynamo import callhooks
    from chaos_dynamo.dns import client
    from chaos_dynamo.errors import ChaosDynamoError
    from chaos_dynamo.services import reference

    counts_file, args = Path(argv[0]), list(argv[1:])
    lock = threading.Lock()
    counts = {"sent": 0, "answered": 0, "timeouts": 0, "errors": 0}
    open_ = [True]

    def counting(ask: Callable[..., Any]) -> Callable[..., Any]:
        def counted_ask(*a: Any, **kw: Any) -> Any:
            with lock:
                if not open_[0]:
                    raise OSError("the service is exiting")
                counts["sent"] += 1
            outcome = "answered"
            try:
                return ask(*a, **kw)
            except TimeoutError:
                outcome = "timeouts"
                raise
            except BaseException:
                outcome = "errors"
                raise
            finally:
                with lock:
                    counts[outcome] += 1
        return counted_ask

    client._ask_udp = counting(client._ask_udp)
    client._ask_tcp = counting(client._ask_tcp)
    try:
        code, clean = reference.run(reference.parse_args(args))
    except ChaosDynamoError as exc:
        print(f"reference: error: {exc}", file=sys.stderr, flush=True)
        code, clean = 1, True
    with lock:
        open_[0] = False
        document = dict(counts) | {f"call_log_{k}": v for k, v in callhooks.stats().items()}
    partial = counts_file.with_suffix(".tmp")
    partial.write_text(json.dumps(document), encoding="utf-8")
    os.replace(partial, counts_file)
    sys.stdout.flush()
    sys.stderr.flush()
    if not clean:
        os._exit(code)  # as reference.main: a worker stuck in botocore is not waited for
    return code


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        sys.exit(child(sys.argv[2:]))
    common.main_for(run)
