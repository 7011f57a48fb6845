"""Route 53 health checks on the lab: what they cost the lab DNS, how many checks the lab
runs on schedule, how fast an answer follows a failing target, and whether the lab (its
checkers idle) still answers DNS as fast as a bare server and as fast as recorded.

One target: churning health costs the DNS less than 2x (checked qps / churning qps <= 2).
Everything else is a measurement, printed with the ratio it is judged by.

Answers under health churn
    A bare :class:`~chaos_dynamo.dns.server.LabDNS` (the lab's DNS class, nothing else
    around it) in a process of its own serves one zone shaped like the failover demo:
    ``app`` is a failover pair, PRIMARY an alias to ``pool`` (six weighted records, one per
    target), SECONDARY an alias to ``standby``; six filler names make nine answer names,
    as many as the default lab serves. The same closed loop (``bench/dns_load.py``, 32 in
    flight, another process; 2 queries for ``app`` : 1 for ``pool`` : 1 NXDOMAIN) runs
    against four variants, interleaved, order rotated each round:

    - *plain*: the records without HealthCheckId and EvaluateTargetHealth;
    - *checked*: with them (every pool record has a check), all healthy;
    - *churn*: checked, and ``LabDNS.set_health`` flips one pool check every 50 ms; each
      flip swaps the table, so the answer cache starts empty again;
    - *churn + timeline*: churn plus what the lab does on every status change besides
      (``Lab._on_health_change``): ``LabDNS.members`` of every answer name and an
      :class:`~chaos_dynamo.lab.answers.AnswerTimeline` entry.

Health-checker capacity (on a lab: a detached one, or the one passed in)
    N HTTP checks on the LB fleet's ``/_lb/health`` (IPAddress = an LB, round robin;
    RequestInterval 10, FailureThreshold 3) over R checker regions, created through the
    lab's Route 53 API (each create makes the lab re-read every check; N grows within one
    R). At the lab's speedup S the schedule asks for N x R x S / 10 probes/s. Over a
    window: probes run, skipped (too many in flight) and failed (the lab's status
    counters ``health_checks``), and the lab process's CPU seconds (``/proc``; the checkers
    and the LB that answers them are both in it) per 1,000 probes. Then the lab DNS's
    closed-loop qps while checking, interleaved with the bare LabDNS process (below) on
    the same queries: lab / bare now, over lab / bare before any check existed. Then the
    reaction: a weighted ``pool-bench-*`` name in the lab's regional zone holds one record
    per LB, each with the HealthCheckId of a check on that LB; LB 1 gets ``{"unhealthy":
    true}``, and the answer timeline (``GET /_chaos_dynamo/route53/answers?name=...``) says
    when the DNS stopped answering its address; the fault is cleared, and the same for its
    return. Theory: RequestInterval / S x FailureThreshold (the last checker needed to flip
    reaches its threshold within it).

The lab's DNS against a bare server and against the record
    On the same lab, before any health check: the lab DNS's closed-loop qps against the
    bare LabDNS process serving a copy of the lab's zones (read through the lab's Route 53
    API), the same queries (bench_dns's mix), interleaved: the ratio is what the rest of
    the lab process costs its DNS. Then (after the lab is down) ``bench.run --only dns
    --quick`` runs as its own process, twice, writing to a temporary file (never
    ``bench/results.json``), and its figures are printed next to the ones recorded in
    ``bench/results.json`` (when it holds a dns run) and the README's Benchmarks table.

About 5 minutes (``--quick``: 2); ``--checks 6x3,200x8`` measures other configurations.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote

try:
    from bench import _common as common
except ImportError:  # run as a script: the repo root is not on sys.path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from bench import _common as common

from bench import bench_dns
from chaos_dynamo.clock import wait_until
from chaos_dynamo.lab.state import LabInfo
from chaos_dynamo.route53.healthchecks import CHECKER_REGIONS, HEALTHY_FRACTION
from chaos_dynamo.route53.records import AliasTarget, RecordSet, ZoneSnapshot

NAME = "failover"
SEED = 6
LOOPBACK = "127.0.0.1"
DNS_HOST_FLAG = "--dns-host"
"""Runs this file as the bare LabDNS process (a line protocol on stdin/stdout)."""
WINDOW = bench_dns.WINDOW
TARGET_CHURN_COST = 2.0
"""Churning health may cost the DNS at most this factor of its checked-but-steady qps."""
CHURN_EVERY = 0.05
"""Seconds between two flips of one health check."""
POOL = 6
FILLER_NAMES = 6
"""With app, pool and standby: nine answer names, as in the default lab."""
ZONE = "bench-failover.lab."
ZONE_ID = "ZBENCHFAILOVER"
APP, POOL_NAME, STANDBY = f"app.{ZONE}", f"pool.{ZONE}", f"standby.{ZONE}"
FLIPPED = "hc-pool-1"
HEALTHY = {f"hc-pool-{i + 1}": True for i in range(POOL)}
MIX = (f"{APP}:answer:2", f"{POOL_NAME}:answer:1", f"no-such-name.{ZONE}:nxdomain:1")
VARIANTS: tuple[tuple[str, bool, str], ...] = (
    ("plain", False, "off"), ("checked", True, "off"),
    ("churn", True, "dns"), ("churn + timeline", True, "timeline"))
"""(name, records carry health checks, churn: off | dns (set_health) | timeline (the lab's work))."""
PAIRS = (("checked", "plain"), ("checked", "churn"), ("checked", "churn + timeline"))
"""Ratios of the churn part, each the median over rounds of one round's ratio."""
REQUEST_INTERVAL = 10
"""Seconds between two checks of one checker on AWS's clock (the lab divides by its speedup)."""
HEALTH_PATH = "/_lb/health"
README = common.REPO_ROOT / "README.md"
RESULTS = common.BENCH_DIR / "results.json"


@dataclass(frozen=True)
class Settings:
    """Sizes and durations of one run.

    Attributes:
        dns_seconds: one closed load of the churn part; dns_rounds: its interleaved rounds
            (the median qps of each variant is kept, and of each round's ratios).
        checks: (health checks, checker regions) configurations, in order; consecutive ones
            with the same region count grow the same set of checks.
        window: seconds the probe rate and CPU are measured over, per configuration.
        failure_threshold: FailureThreshold of every check (the reaction's theory).
        lab_dns_seconds: one closed load on the lab's DNS; lab_dns_rounds: rounds of lab
            against the bare server.
        dns_bench_runs: runs of ``bench.run --only dns --quick`` for the record (0: none).
        reaction_timeout: seconds to wait for an answer to drop or regain a target.
    """

    dns_seconds: float = 3.0
    dns_rounds: int = 3
    checks: tuple[tuple[int, int], ...] = ((6, 3), (30, 3), (100, 3), (6, 8), (30, 8), (100, 8))
    window: float = 8.0
    failure_threshold: int = 3
    lab_dns_seconds: float = 1.0
    lab_dns_rounds: int = 4
    dns_bench_runs: int = 2
    reaction_timeout: float = 30.0


DEFAULT = Settings()
QUICK = Settings(dns_seconds=1.5, dns_rounds=2, checks=((6, 8), (30, 8), (100, 8)), window=4.0,
                 lab_dns_seconds=1.0, lab_dns_rounds=2, dns_bench_runs=1)
SMOKE = Settings(dns_seconds=0.5, dns_rounds=1, checks=((6, 3),), window=1.5, failure_threshold=1,
                 lab_dns_seconds=0.5, lab_dns_rounds=1, dns_bench_runs=0, reaction_timeout=15.0)
"""Seconds, not minutes: what the CI smoke test runs on the session's lab."""


# --- the bare LabDNS process ------------------------------------------------------------


def bench_zone(checked: bool) -> ZoneSnapshot:
    """The failover demo's shape in one zone; ``checked``: pool records carry health checks
    and both aliases evaluate their target's health."""
    records = [RecordSet(POOL_NAME, "A", 5, (f"127.0.0.{11 + i}",), set_identifier=f"lb-{i + 1}",
                         weight=1, health_check_id=f"hc-pool-{i + 1}" if checked else None)
               for i in range(POOL)]
    records.append(RecordSet(STANDBY, "A", 5, ("127.0.0.30",)))
    for set_id, role, target in (("primary", "PRIMARY", POOL_NAME), ("standby", "SECONDARY", STANDBY)):
        records.append(RecordSet(APP, "A", alias=AliasTarget(ZONE_ID, target, checked),
                                 set_identifier=set_id, failover=role))
    records += [RecordSet(f"svc-{i}.{ZONE}", "A", 300, (f"127.0.1.{i + 1}",))
                for i in range(FILLER_NAMES)]
    return ZoneSnapshot(ZONE_ID, ZONE, tuple(records), serial=1)


class _Churn:
    """Flips one health check every :data:`CHURN_EVERY` s on a fixed grid, in a thread."""

    def __init__(self, dns: Any) -> None:
        self._dns = dns
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.flips = 0
        self.cpu_s = 0.0

    def start(self, timeline: bool) -> None:
        self.stop()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(timeline,), name="churn", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        thread, self._thread = self._thread, None
        if thread is not None:
            self._stop.set()
            thread.join(timeout=5)

    def _run(self, timeline: bool) -> None:
        from chaos_dynamo.lab.answers import AnswerTimeline

        answers = AnswerTimeline() if timeline else None
        dns, start, up, flips = self._dns, time.perf_counter(), True, 0
        while not self._stop.wait(max(0.0, start + (flips + 1) * CHURN_EVERY - time.perf_counter())):
            flips += 1
            began = time.thread_time()  # CPU, not wall: waiting for the GIL is the DNS's turn
            up = not up
            dns.set_health(HEALTHY | {FLIPPED: up})
            if answers is not None:  # what Lab._note_answers does after each set_health
                served = {}
                for name in dns.answer_names():
                    members = dns.members(name)
                    served[name] = (members.addresses, members.roles)
                answers.record(time.time(), served, "health")
            self.cpu_s += time.thread_time() - began
            self.flips += 1


def dns_host(stdin: IO[str] = sys.stdin, stdout: IO[str] = sys.stdout) -> int:
    """Serve a bare LabDNS on 127.0.0.1 until stdin closes; one JSON request per line.

    Requests: ``{"cmd": "variant", "checked": bool, "churn": "off"|"dns"|"timeline"}``,
    ``{"cmd": "zones", "zones": [{"id", "name", "records": [boto3 record sets]}]}``,
    ``{"cmd": "stats"}`` (process CPU seconds, flips). Each gets one JSON line back.
    """
    from chaos_dynamo.dns.server import LabDNS

    dns = LabDNS(LOOPBACK, 0, seed=SEED).start()
    churn = _Churn(dns)

    def reply(message: dict[str, Any]) -> None:
        stdout.write(json.dumps(message) + "\n")
        stdout.flush()

    reply({"port": dns.address[1]})
    try:
        for line in stdin:
            request = json.loads(line)
            command = request["cmd"]
            if command == "variant":
                churn.stop()
                dns.publish(bench_zone(bool(request["checked"])))
                dns.set_health(HEALTHY)
                if request["churn"] != "off":
                    churn.start(timeline=request["churn"] == "timeline")
                reply({"ok": True})
            elif command == "zones":
                churn.stop()
                for zone in request["zones"]:
                    records = tuple(RecordSet.from_api(r) for r in zone["records"])
                    dns.publish(ZoneSnapshot(zone["id"], zone["name"], records, serial=1))
                reply({"ok": True})
            elif command == "stats":
                reply({"cpu_s": time.process_time(), "flips": churn.flips, "flip_cpu_s": churn.cpu_s,
                       "t": time.perf_counter()})
            else:
                reply({"error": f"unknown command {command!r}"})
    finally:
        churn.stop()
        dns.stop()
    return 0


class DnsHost:
    """The bare LabDNS process, seen from the benchmark."""

    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), DNS_HOST_FLAG],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            cwd=common.REPO_ROOT, env=common.clean_env())
        self.port = int(self._read()["port"])

    @property
    def server(self) -> tuple[str, int]:
        return (LOOPBACK, self.port)

    def ask(self, **request: Any) -> dict[str, Any]:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        answer = self._read()
        if "error" in answer:
            raise RuntimeError(f"the bare LabDNS process: {answer['error']}")
        return answer

    def _read(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            self.process.kill()
            _, err = self.process.communicate(timeout=10)
            raise RuntimeError(f"the bare LabDNS process exited {self.process.returncode}:\n{err[-2000:]}")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()


@contextmanager
def dns_host_process() -> Iterator[DnsHost]:
    host = DnsHost()
    try:
        yield host
    finally:
        host.close()


# --- loads --------------------------------------------------------------------------------


def closed_load(server: tuple[str, int], mix: Sequence[str], duration: float) -> dict[str, Any]:
    """``bench/dns_load.py`` closed loop (32 in flight) in its own process; its summary."""
    cmd = [sys.executable, str(common.BENCH_DIR / "dns_load.py"), "--server",
           f"{server[0]}:{server[1]}", "--mode", "closed", "--duration", str(duration),
           "--window", str(WINDOW)]
    for spec in mix:
        cmd += ["--name", spec]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60,
                          env=common.clean_env(), check=False)
    if done.returncode != 0:
        raise RuntimeError(f"dns_load.py failed ({done.returncode}): {done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def process_cpu(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (Linux ``/proc``; NaN elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return math.nan
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _load_average() -> float:
    return round(os.getloadavg()[0], 2)


def _median_of(runs: Sequence[dict[str, Any]], key: str) -> float:
    return common.median([float(r[key]) for r in runs if r.get(key) is not None])


# --- part 1: answers under health churn ------------------------------------------------------


def churn_throughput(host: DnsHost, s: Settings) -> dict[str, Any]:
    """Every variant under the same closed loop, interleaved; raw runs and a summary each."""
    from chaos_dynamo.dns.client import query

    host.ask(cmd="variant", checked=True, churn="off")
    answer = query(host.server, APP, "A", timeout=2.0, retries=2)
    if len(answer.addresses) != 1 or not answer.addresses[0].startswith("127.0.0."):
        raise RuntimeError(f"the bare LabDNS answered {APP} with {answer}; expected one pool address")
    closed_load(host.server, MIX, 0.3)  # warm-up
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name, _, _ in VARIANTS}
    for round_ in range(s.dns_rounds):
        shift = round_ % len(VARIANTS)
        for name, checked, churn in VARIANTS[shift:] + VARIANTS[:shift]:
            common.progress(f"failover: bare LabDNS, {name}, closed loop {s.dns_seconds:g} s "
                            f"(round {round_ + 1}/{s.dns_rounds})")
            host.ask(cmd="variant", checked=checked, churn=churn)
            before = host.ask(cmd="stats")
            load = closed_load(host.server, MIX, s.dns_seconds)
            after = host.ask(cmd="stats")
            wall = after["t"] - before["t"]
            runs[name].append(load | {
                "dns_cpu_s": after["cpu_s"] - before["cpu_s"], "wall_s": wall,
                "flips": after["flips"] - before["flips"],
                "flip_cpu_s": after["flip_cpu_s"] - before["flip_cpu_s"]})
    summary = {}
    for name, chosen in runs.items():
        answered = sum(r["answered"] for r in chosen)
        flips = sum(r["flips"] for r in chosen)
        summary[name] = {
            "qps": _median_of(chosen, "qps"), "p99_ms": _median_of(chosen, "p99_ms"),
            "answered": answered, "wrong": sum(r["wrong"] for r in chosen),
            "lost": sum(r["lost"] for r in chosen),
            "cpu_us_per_query": 1e6 * common.ratio(sum(r["dns_cpu_s"] for r in chosen), answered),
            "flips": flips, "flips_per_s": common.ratio(flips, sum(r["wall_s"] for r in chosen)),
            "flip_cpu_ms": 1000 * common.ratio(sum(r["flip_cpu_s"] for r in chosen), flips)}
    # Each round runs every variant back to back: its ratios are paired in time, which a
    # machine whose load drifts between rounds does not skew.
    paired = {f"{a} / {b}": common.median([common.ratio(x["qps"], y["qps"])
                                           for x, y in zip(runs[a], runs[b], strict=True)])
              for a, b in PAIRS}
    return {"runs": runs, "summary": summary, "paired": paired}


# --- part 3a: the lab's DNS against the bare server -------------------------------------------


def _lab_zones(info: LabInfo) -> list[dict[str, Any]]:
    """Every hosted zone of the lab with its record sets, read through its Route 53 API."""
    from chaos_dynamo.route53.backend import make_client

    r53 = make_client("route53", info.api_url, info.region)
    zones = []
    for zone in r53.list_hosted_zones()["HostedZones"]:
        records: list[dict[str, Any]] = []
        for page in r53.get_paginator("list_resource_record_sets").paginate(HostedZoneId=zone["Id"]):
            records += page["ResourceRecordSets"]
        zones.append({"id": zone["Id"], "name": zone["Name"], "records": records})
    return zones


def serve_lab_zones(info: LabInfo, host: DnsHost) -> LabInfo:
    """Have the bare LabDNS serve a copy of the lab's zones; a LabInfo that points at it."""
    host.ask(cmd="zones", zones=_lab_zones(info))
    bare = dataclasses.replace(info, dns_host=LOOPBACK, dns_port=host.port)
    bench_dns.check_answers(info)
    bench_dns.check_answers(bare)
    return bare


def lab_and_bare(info: LabInfo, bare: LabInfo, host: DnsHost, seconds: float, rounds: int,
                 what: str) -> dict[str, Any]:
    """The lab's DNS and the bare LabDNS, same queries (bench_dns's mix), interleaved; the
    median qps of each, and the median over rounds of one round's lab / bare ratio."""
    targets = (("lab", info), ("bare", bare))
    runs: dict[str, list[dict[str, Any]]] = {"lab": [], "bare": []}
    for round_ in range(rounds):
        for name, target in targets[round_ % 2:] + targets[:round_ % 2]:
            common.progress(f"failover: {name} DNS, closed loop {seconds:g} s, {what}")
            cpu, host_cpu = process_cpu(info.pid), host.ask(cmd="stats")["cpu_s"]
            load = bench_dns.python_load(target, "closed", seconds)
            load["cpu_s"] = (process_cpu(info.pid) - cpu if name == "lab"
                             else host.ask(cmd="stats")["cpu_s"] - host_cpu)
            runs[name].append(load)

    def cpu_us(name: str) -> float:
        return 1e6 * common.ratio(sum(r["cpu_s"] for r in runs[name]),
                                  sum(r["answered"] for r in runs[name]))

    return {"runs": runs, "lab_qps": _median_of(runs["lab"], "qps"),
            "bare_qps": _median_of(runs["bare"], "qps"),
            "ratio": common.median([common.ratio(a["qps"], b["qps"])
                                    for a, b in zip(runs["lab"], runs["bare"], strict=True)]),
            "wrong": sum(r["wrong"] for rs in runs.values() for r in rs),
            "lab_cpu_us_per_query": cpu_us("lab"), "bare_cpu_us_per_query": cpu_us("bare")}


# --- part 2: health-checker capacity and reaction -----------------------------------------------


class HealthScratch:
    """Health checks, pool records and the LB fault this benchmark makes on a lab; undone by
    :meth:`cleanup`, so a shared lab is left as it was."""

    def __init__(self, info: LabInfo, token: str) -> None:
        from chaos_dynamo.route53.backend import make_client

        self.info = info
        self.r53 = make_client("route53", info.api_url, info.region)
        self.zone = f"{info.region}.amazonaws.com"
        self.zone_id = info.zones[self.zone]
        self.pool = f"pool-bench-{token}.{self.zone}"
        self.token = token
        self.checks: list[str] = []
        self.regions = 0
        self.records: list[dict[str, Any]] = []
        self.faulted: set[str] = set()

    def url(self, path: str) -> str:
        return f"{self.info.api_url}/_chaos_dynamo/{path}"

    def get(self, path: str) -> Any:
        from chaos_dynamo.endpoint._lab import http_json

        return http_json(self.url(path))

    def post(self, path: str, body: Any) -> Any:
        from chaos_dynamo.endpoint._lab import http_json

        return http_json(self.url(path), body)

    def grow(self, count: int, regions: int, failure_threshold: int) -> float:
        """Have ``count`` checks over ``regions`` regions (starting afresh when the region
        count changes or the set must shrink); wall seconds the creates took."""
        if regions != self.regions or count < len(self.checks):
            self.drop_all()
        self.regions = regions
        lbs = self.info.load_balancers
        started = time.perf_counter()
        while len(self.checks) < count:
            lb = lbs[len(self.checks) % len(lbs)]
            config = {"Type": "HTTP", "IPAddress": lb["address"], "Port": self.info.lb_port,
                      "ResourcePath": HEALTH_PATH, "RequestInterval": REQUEST_INTERVAL,
                      "FailureThreshold": failure_threshold, "Regions": list(CHECKER_REGIONS[:regions])}
            created = self.r53.create_health_check(
                CallerReference=f"chaos-dynamo-bench-{self.token}-{regions}-{len(self.checks)}",
                HealthCheckConfig=config)
            self.checks.append(str(created["HealthCheck"]["Id"]))
        seconds = time.perf_counter() - started
        if not self.records:
            self._create_pool()
        return seconds

    def _create_pool(self) -> None:
        """One weighted record per LB (that has a check), with the HealthCheckId of its check."""
        lbs = self.info.load_balancers
        self.records = [
            {"Name": self.pool, "Type": "A", "TTL": 5, "SetIdentifier": lb["name"], "Weight": 1,
             "ResourceRecords": [{"Value": lb["address"]}], "HealthCheckId": self.checks[i]}
            for i, lb in enumerate(lbs[:len(self.checks)])]
        self._change("CREATE", self.records)

    def _change(self, action: str, records: Sequence[dict[str, Any]]) -> None:
        change = self.r53.change_resource_record_sets(
            HostedZoneId=self.zone_id,
            ChangeBatch={"Changes": [{"Action": action, "ResourceRecordSet": r} for r in records]})
        waiter = self.r53.get_waiter("resource_record_sets_changed")
        waiter.wait(Id=change["ChangeInfo"]["Id"], WaiterConfig={"Delay": 0.05, "MaxAttempts": 600})

    def drop_all(self) -> None:
        if self.records:
            records, self.records = self.records, []
            self._change("DELETE", records)
        while self.checks:
            self.r53.delete_health_check(HealthCheckId=self.checks[-1])
            self.checks.pop()

    def fault(self, lb: str, unhealthy: bool) -> None:
        self.faulted.add(lb)
        self.post(f"lb/{lb}/faults", {"unhealthy": unhealthy})

    def cleanup(self) -> None:
        for lb in sorted(self.faulted):
            self.post(f"lb/{lb}/faults", {"unhealthy": False})
        self.drop_all()

    def health_counters(self) -> dict[str, Any]:
        summary: dict[str, Any] = self.get("status")["health_checks"]
        return {**summary["counters"], "total": summary["total"], "unhealthy": len(summary["unhealthy"])}

    def answers(self, since: float) -> list[dict[str, Any]]:
        entries: list[dict[str, Any]] = self.get(
            f"route53/answers?name={quote(self.pool.rstrip('.'))}&since={since!r}")
        return entries


def _reaction(scratch: HealthScratch, lb: dict[str, Any], unhealthy: bool,
              timeout: float) -> dict[str, Any]:
    """Turn ``lb``'s health endpoint bad (or good again); seconds until the pool's answer
    drops (or regains) its address, and until its check changed status."""
    address, check = lb["address"], scratch.checks[0]
    started = time.time()
    scratch.fault(lb["name"], unhealthy)
    seen: list[dict[str, Any]] = []

    def answered() -> bool:
        seen[:] = [e for e in scratch.answers(started)
                   if e["time"] >= started and (address in e["addresses"]) is not unhealthy]
        return bool(seen)

    found = wait_until(answered, timeout=timeout, interval=0.05)
    transitions = [t for t in scratch.get(f"route53/health/log?since={started!r}")
                   if t["id"] == check and t["healthy"] is not unhealthy]
    return {"seconds": seen[0]["time"] - started if found else math.nan,
            "check_seconds": transitions[0]["time"] - started if transitions else math.nan,
            "addresses": seen[0]["addresses"] if found else None, "cause": seen[0]["cause"] if found else None}


def checker_capacity(info: LabInfo, bare: LabInfo, host: DnsHost, s: Settings, token: str,
                     idle_ratio: float) -> dict[str, Any]:
    """Each (checks, regions) configuration: probe rate, CPU, DNS qps against the bare
    LabDNS (``bare``, served by ``host``), reaction."""
    scratch = HealthScratch(info, token)
    speedup = float(info.health_check_speedup)
    interval = REQUEST_INTERVAL / speedup
    lb = dict(info.load_balancers[0])
    common.progress(f"failover: idle lab CPU, {min(2.0, s.window):g} s")
    cpu, started = process_cpu(info.pid), time.perf_counter()
    time.sleep(min(2.0, s.window))
    idle_cpu = common.ratio(process_cpu(info.pid) - cpu, time.perf_counter() - started)
    before = scratch.health_counters()
    configs = []
    try:
        for count, regions in s.checks:
            label = f"{count} checks x {regions} regions"
            scheduled = count * regions / interval
            common.progress(f"failover: {label}: creating checks (scheduled {scheduled:,.0f} probes/s)")
            create_s = scratch.grow(count, regions, s.failure_threshold)
            # New checkers start staggered over one interval; then every one runs.
            time.sleep(interval + 0.5)
            common.progress(f"failover: {label}: measuring {s.window:g} s")
            first, cpu, started = scratch.health_counters(), process_cpu(info.pid), time.perf_counter()
            time.sleep(s.window)
            last, cpu_s = scratch.health_counters(), process_cpu(info.pid) - cpu
            window = time.perf_counter() - started
            delta = {k: last[k] - first[k] for k in ("probes", "failures", "skipped", "transitions")}
            during = scratch.health_counters()
            dns = lab_and_bare(info, bare, host, s.lab_dns_seconds, s.lab_dns_rounds,
                               f"{label} checking")
            after_load = scratch.health_counters()
            common.progress(f"failover: {label}: {lb['name']} unhealthy, then healthy again")
            down = _reaction(scratch, lb, True, s.reaction_timeout)
            up = _reaction(scratch, lb, False, s.reaction_timeout)
            configs.append({
                "checks": count, "regions": regions, "label": label, "create_s": create_s,
                "scheduled_per_s": scheduled, "window_s": window, **delta,
                "achieved_per_s": common.ratio(delta["probes"], window),
                "ratio": common.ratio(delta["probes"] / window, scheduled),
                "unhealthy_at_end": last["unhealthy"], "lab_cpu_s": cpu_s,
                "lab_cpu_share": common.ratio(cpu_s, window),
                "cpu_s_per_1000": 1000 * common.ratio(cpu_s, delta["probes"]),
                "dns": {k: v for k, v in dns.items() if k != "runs"}, "dns_runs": dns["runs"],
                "dns_wrong": dns["wrong"], "dns_qps_ratio": common.ratio(dns["ratio"], idle_ratio),
                "skipped_during_dns": after_load["skipped"] - during["skipped"],
                "failures_during_dns": after_load["failures"] - during["failures"],
                "down": down, "up": up})
    finally:
        scratch.cleanup()
    after = scratch.health_counters()
    return {"speedup": speedup, "interval_s": interval, "failure_threshold": s.failure_threshold,
            "theory_s": interval * s.failure_threshold, "idle_cpu_share": idle_cpu,
            "configs": configs, "lb": lb["name"], "pool": scratch.pool,
            "checks_before": before["total"], "checks_after": after["total"],
            "lb_faults_after": scratch.get("status")["load_balancers"][lb["name"]]["faults"]}


# --- part 3b: the dns benchmark against the record ---------------------------------------------


_DNS_FIGURES = {"py_closed": "py closed: max throughput", "dnsperf_closed": "dnsperf closed: max throughput",
                "py_paced_p99": "py paced: p99 latency"}


def _dns_figures(document: dict[str, Any]) -> dict[str, Any] | None:
    """The dns benchmark's headline figures from a results document (None: it has no dns run)."""
    runs = [b for b in document.get("benchmarks", []) if b.get("name") == "dns"]
    if not runs:
        return None
    metrics = {m["name"]: m["value"] for m in runs[0]["metrics"]}
    machine = document.get("machine", {})
    return {key: metrics.get(name) for key, name in _DNS_FIGURES.items()} | {
        "quick": document.get("quick"), "loadavg_1m": machine.get("loadavg_1m"),
        "loadavg_1m_after": machine.get("loadavg_1m_after")}


def readme_dns_record(text: str) -> dict[str, Any] | None:
    """The README's recorded flat-out DNS range (``| DNS, flat out ... | 16,700-22,000
    queries/s (dnsperf: 20,100-23,400) |``) and the load it states; None if not found."""
    row = re.search(r"^\|\s*DNS, flat out[^|]*\|\s*([\d,]+)-([\d,]+) queries/s"
                    r"(?:\s*\(dnsperf: ([\d,]+)-([\d,]+)\))?", text, re.M)
    if row is None:
        return None
    low, high, dnsperf_low, dnsperf_high = (None if g is None else float(g.replace(",", ""))
                                            for g in row.groups())
    load = re.search(r"load average ([\d.]+-[\d.]+)", text[:row.start()][-2000:])
    return {"py_closed_low": low, "py_closed_high": high, "dnsperf_low": dnsperf_low,
            "dnsperf_high": dnsperf_high, "load": load.group(1) if load else None}


def dns_record(runs: int) -> dict[str, Any]:
    """``bench.run --only dns --quick`` ``runs`` times now (to a temporary file), and what
    bench/results.json and the README recorded."""
    recorded_json = None
    if RESULTS.exists():
        try:
            recorded_json = _dns_figures(json.loads(RESULTS.read_text(encoding="utf-8")))
        except (OSError, ValueError):
            recorded_json = None
    readme = readme_dns_record(README.read_text(encoding="utf-8")) if README.exists() else None
    now = []
    with tempfile.TemporaryDirectory(prefix="chaos-dynamo-bench-failover-") as tmp:
        for index in range(runs):
            out = Path(tmp) / f"dns-{index}.json"
            common.progress(f"failover: bench.run --only dns --quick, run {index + 1}/{runs}")
            done = subprocess.run([sys.executable, "-m", "bench.run", "--only", "dns", "--quick",
                                   "--json", str(out)], capture_output=True, text=True, timeout=600,
                                  cwd=common.REPO_ROOT, env=common.clean_env(), check=False)
            if done.returncode != 0 or not out.exists():
                raise RuntimeError(f"bench.run --only dns exited {done.returncode}:\n{done.stdout[-2000:]}"
                                   f"{done.stderr[-2000:]}")
            figures = _dns_figures(json.loads(out.read_text(encoding="utf-8")))
            if figures is None:
                raise RuntimeError(f"bench.run --only dns wrote no dns figures to {out}")
            now.append(figures)
    return {"now": now, "results_json": recorded_json, "readme": readme}


# --- figures ----------------------------------------------------------------------------------


def _fmt(value: float | None, unit: str = "") -> str:
    return "n/a" if value is None or math.isnan(value) else common.format_value(value, unit)


def _add_churn(result: common.BenchResult, churn: dict[str, Any]) -> None:
    summary, paired = churn["summary"], churn["paired"]

    def note(v: dict[str, Any]) -> str:
        text = (f"p99 {_fmt(v['p99_ms'], 'ms')}; DNS CPU {v['cpu_us_per_query']:.0f} us/query; "
                f"lost {v['lost']}, wrong {v['wrong']}")
        if v["flips"]:
            text += f"; {v['flips_per_s']:.1f} flips/s, {v['flip_cpu_ms']:.2f} ms CPU each"
        return text

    for name, _, _ in VARIANTS:
        result.add(common.info(f"bare DNS, {name}: max qps", summary[name]["qps"], "qps", note(summary[name])))
    rounds = f"median of {len(churn['runs']['plain'])} rounds' ratios"
    result.add(common.info("ratio checked / plain qps", paired["checked / plain"], "x",
                           f"{rounds}; health is looked at when the cache fills only"))
    result.add(common.at_most("churn cost: checked / churn qps", paired["checked / churn"],
                              TARGET_CHURN_COST, "x",
                              f"{rounds}; set_health every {CHURN_EVERY * 1000:.0f} ms"))
    result.add(common.info("churn + timeline cost: checked / that qps", paired["checked / churn + timeline"],
                           "x", f"{rounds}; set_health + the lab's answer-timeline work per flip"))


def _add_lab_dns(result: common.BenchResult, lab: dict[str, Any]) -> None:
    result.add(common.info("lab DNS, no checks: max qps", lab["lab_qps"], "qps",
                           f"bare LabDNS, same zones and queries: {lab['bare_qps']:,.0f} qps; CPU "
                           f"{lab['lab_cpu_us_per_query']:.0f} vs {lab['bare_cpu_us_per_query']:.0f} us/query"))
    result.add(common.info("ratio lab / bare LabDNS qps", lab["ratio"], "x",
                           f"median of {len(lab['runs']['lab'])} rounds' ratios: what the rest of "
                           "the lab process costs its DNS"))


def _add_capacity(result: common.BenchResult, capacity: dict[str, Any]) -> None:
    theory = capacity["theory_s"]
    rule = (f"{REQUEST_INTERVAL} s / {capacity['speedup']:g} x FailureThreshold "
            f"{capacity['failure_threshold']} = {theory:g} s")
    for c in capacity["configs"]:
        label, regions = c["label"], c["regions"]
        result.add(common.info(f"{label}: probes achieved / scheduled", c["ratio"], "x",
                               f"{c['achieved_per_s']:,.0f}/s of {c['scheduled_per_s']:,.0f}/s; "
                               f"skipped {c['skipped']}, failed {c['failures']}, "
                               f"transitions {c['transitions']}"))
        result.add(common.info(f"{label}: lab CPU per 1,000 probes", c["cpu_s_per_1000"], "s",
                               f"lab at {c['lab_cpu_share']:.0%} of a core "
                               f"(idle {capacity['idle_cpu_share']:.1%}); checker + LB side"))
        dns = c["dns"]
        result.add(common.info(f"{label}: lab DNS qps checking / none", c["dns_qps_ratio"], "x",
                               f"lab / bare {dns['ratio']:.2f} x ({dns['lab_qps']:,.0f} vs "
                               f"{dns['bare_qps']:,.0f} qps) over lab / bare with no checks; "
                               f"meanwhile {c['skipped_during_dns']} probes skipped, "
                               f"{c['failures_during_dns']} failed"))
        down, up = c["down"], c["up"]
        result.add(common.info(f"{label}: failing LB out of answer", down["seconds"], "s",
                               f"{common.ratio(down['seconds'], theory):.2f} x theory ({rule}); "
                               f"check flipped at {_fmt(down['check_seconds'], 's')}"))
        need = math.floor(HEALTHY_FRACTION * regions) + 1
        result.add(common.info(f"{label}: LB back in answer", up["seconds"], "s",
                               f"{common.ratio(up['seconds'], theory):.2f} x theory; {need} of "
                               f"{regions} checkers healthy suffice (> {HEALTHY_FRACTION:.0%})"))


def _add_record(result: common.BenchResult, record: dict[str, Any]) -> None:
    for index, run in enumerate(record["now"]):
        result.add(common.info(f"dns bench now, run {index + 1}: py closed", run["py_closed"] or math.nan,
                               "qps", f"dnsperf {_fmt(run['dnsperf_closed'], 'qps')}; paced p99 "
                               f"{_fmt(run['py_paced_p99'], 'ms')}; load {run['loadavg_1m']}"
                               f"-{run['loadavg_1m_after']}"))
    best_now = max((r["py_closed"] or math.nan for r in record["now"]), default=math.nan)
    loads = [x for r in record["now"] for x in (r["loadavg_1m"], r["loadavg_1m_after"]) if x is not None]
    now_load = f"{min(loads):g}-{max(loads):g}" if loads else "n/a"
    recorded = record["results_json"]
    if recorded is not None:
        result.add(common.info("dns recorded, results.json: py closed", recorded["py_closed"] or math.nan,
                               "qps", f"dnsperf {_fmt(recorded['dnsperf_closed'], 'qps')}; load "
                               f"{recorded['loadavg_1m']}-{recorded['loadavg_1m_after']}"
                               f"{' (--quick)' if recorded['quick'] else ''}"))
        result.add(common.info("ratio dns now / results.json", common.ratio(best_now, recorded["py_closed"] or math.nan),
                               "x", f"best run now (load {now_load})"))
    readme = record["readme"]
    if readme is not None:
        result.add(common.info("dns recorded, README: py closed (high)", readme["py_closed_high"], "qps",
                               f"{readme['py_closed_low']:,.0f}-{readme['py_closed_high']:,.0f}; dnsperf "
                               f"{_fmt(readme['dnsperf_low'])}-{_fmt(readme['dnsperf_high'])}; "
                               f"load {readme['load']}"))
        result.add(common.info("ratio dns now / README high", common.ratio(best_now, readme["py_closed_high"]),
                               "x", f"best run now (load {now_load}; the README's: {readme['load']})"))
    if recorded is None and readme is None:
        result.add(common.info("dns recorded", math.nan, "qps", "no record found"))


def measure(info: LabInfo, s: Settings = DEFAULT) -> common.BenchResult:
    """The parts that need a lab (the smoke test passes its session lab); the dns record
    (runs of the dns benchmark) is :func:`run`'s."""
    token = uuid.uuid4().hex[:6]
    loads = [_load_average()]
    with dns_host_process() as host:
        bare = serve_lab_zones(info, host)
        lab_dns = lab_and_bare(info, bare, host, s.lab_dns_seconds, s.lab_dns_rounds, "no checks")
        loads.append(_load_average())
        churn = churn_throughput(host, s)
        host.ask(cmd="variant", checked=True, churn="off")  # the bare server idle but for loads
        loads.append(_load_average())
        capacity = checker_capacity(info, bare, host, s, token, lab_dns["ratio"])
        loads.append(_load_average())
    result = common.BenchResult(NAME)
    _add_churn(result, churn)
    _add_lab_dns(result, lab_dns)
    _add_capacity(result, capacity)
    result.details = {"settings": asdict(s), "churn": churn, "lab_dns": lab_dns, "capacity": capacity,
                      "loadavg_1m": loads}
    return result


def run(quick: bool = False, settings: Settings | None = None) -> common.BenchResult:
    """Start a detached lab, measure, stop it, then run the dns benchmark for the record."""
    s = settings or (QUICK if quick else DEFAULT)
    with common.detached_lab() as info:
        result = measure(info, s)
    if s.dns_bench_runs:
        record = dns_record(s.dns_bench_runs)
        result.details["dns_record"] = record
        result.details["loadavg_1m"].append(_load_average())
        _add_record(result, record)
    loads = result.details["loadavg_1m"]
    result.add(common.info("load average (1 min), max seen", max(loads), "",
                           f"samples {', '.join(f'{x:g}' for x in loads)}"))
    return result


def parse_checks(text: str) -> tuple[tuple[int, int], ...]:
    """``6x3,200x8`` -> ((6, 3), (200, 8)): health checks x checker regions (3..8)."""
    configs = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        count, sep, regions = part.partition("x")
        if not (sep and count.isdigit() and regions.isdigit() and int(count) >= 1
                and 3 <= int(regions) <= len(CHECKER_REGIONS)):
            raise argparse.ArgumentTypeError(
                f"{part!r} is not CHECKSxREGIONS; use e.g. 6x3,200x8 (regions 3 to {len(CHECKER_REGIONS)})")
        configs.append((int(count), int(regions)))
    return tuple(configs)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="shorter loads, fewer configurations")
    parser.add_argument("--checks", type=parse_checks, metavar="NxR,NxR",
                        help="health-check configurations (default "
                             f"{','.join(f'{n}x{r}' for n, r in DEFAULT.checks)})")
    parser.add_argument("--dns-bench-runs", type=int, metavar="N",
                        help=f"runs of the dns benchmark for the record (default {DEFAULT.dns_bench_runs})")
    parser.add_argument("--json", type=Path, help="also write the result here")
    args = parser.parse_args(argv)
    s = QUICK if args.quick else DEFAULT
    if args.checks:
        s = dataclasses.replace(s, checks=args.checks)
    if args.dns_bench_runs is not None:
        s = dataclasses.replace(s, dns_bench_runs=args.dns_bench_runs)
    result = common.timed(lambda _quick: run(settings=s), args.quick)
    print(common.summary_table([result]))
    print(f"({result.name}: {result.seconds:.1f} s)")
    if args.json:
        args.json.write_text(json.dumps(result.to_json(), indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    if sys.argv[1:] == [DNS_HOST_FLAG]:
        sys.exit(dns_host())
    sys.exit(main())
