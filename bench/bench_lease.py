"""Leases at scale: what a lease probe costs on a big table, how fast a real fleet renews on
the lab, and how fast the in-memory model runs 100,000 leases.

No targets on the probe's cost (it is a measurement); targets on what must hold: the fleet
reaches its renewal rate with every lease live, nothing it was told had landed is missing
from the table, and the model runs 100,000 leases at least 10x faster than real time (10
simulated minutes in under one wall minute).

One detached lab (``chaos-dynamo lab up --detach``, its own process), three parts:

Probe cost
    One evaluation of ``live_lease_fraction`` = a consistent, paged Scan of the table, each
    item decoded, then counted (:mod:`chaos_dynamo.lease.table`, :mod:`~chaos_dynamo.lease.measure`).
    Measured three ways, side by side, on tables of the reference fleets' lease items:

    - *emulator*: the real probe, reading the lab's DynamoDB (moto) directly, on a
      10,000-item table and one a tenth that size (the cost as fixed + per item);
    - *client*: the same probe call against a loopback server that answers each Scan page
      from bytes prepared in advance (pages cut at DynamoDB's 1 MB, as DynamoDB pages):
      the probe's own cost (HTTP, botocore parsing, decode, count) with a store that costs
      nothing;
    - *decode+measure*: decoding pages already in DynamoDB's JSON shape and counting, no
      HTTP at all.

    moto serialises about 1 ms per item, and for every 1 MB page it sorts and walks the
    whole table again, so a 100,000-item table (7 pages) takes minutes to scan (197 s
    measured once here, against 12 s for 10,000 items in one page; 52 s to write it). By
    default 100,000 items are measured on the client and decode+measure paths only, and
    the emulator's time for them is *extrapolated* along the line through its two measured
    sizes: a lower bound (1.6x short of that one measurement), and the table says so.
    ``--lease-items-lab 100000`` measures the real thing (about 6 minutes).

Renewal throughput on the lab
    The hardened reference fleet (``python -m chaos_dynamo.lease.reference``) as a real
    process with the lab's environment: 10,000 leases, H = 100 s, E = 300 s, so its
    schedule asks for 100 renewals/s through the endpoint's name (lab DNS, LB fleet,
    emulator). Setup (table + leases, BatchWriteItem through the endpoint) is timed from
    the process start to its ready file. Leases fall due from the moment setup starts
    (their setup expiry minus E tells when), so those due during setup are caught up
    first, flat out (``renew_concurrency`` 8 in flight); its peak 2-second rate is about
    the lab's renewal ceiling. The warm-up waits until the fleet has caught up with its
    schedule (renewals due by now, less those done or in flight, within three standard
    deviations of the random phases plus half a second of renewals) at two readings in a
    row. Then, over the measuring window, the fleet's ``/metrics`` (``renewals_ok``,
    ``believed_live``, once a second) give the achieved rate, how far behind its schedule
    it ended, and whether any lease was lost. H is longer than setup, warm-up and window
    together, so the schedule is known throughout (a lease renewed late falls due again H
    after that). After a SIGTERM, one scan of the table checks, lab-side, that the
    versions grew by at least the renewals the fleet was told succeeded and that every
    lease is live. A short ramp then
    starts smaller fleets (H = 10 s, measured over H: each lease due once) at 150, 200,
    300 renewals/s, one after the other, and stops at the first that falls short of 90%
    of its target: the highest rate held is the lab's sustainable renewal rate.

In-memory model at 100,000 leases
    :func:`chaos_dynamo.lease.sim.simulate` with the hardened manager, H = 60 s, E = 180 s,
    ``Server(None, 0.005, 0.01)``, 64 renewals in flight, 300 s simulated: once undisturbed,
    once with a 30 s outage (every op fails fast, half the leases fall due meanwhile and are
    retried). ``renew_retry`` is raised to 5 s for both: at the default 0.5 s, 50,000
    failing leases would be retried 100,000 times a second, and the run would take minutes.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
import zlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

try:
    from bench import _common as common
except ImportError:  # run as a script: the repo root is not on sys.path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from bench import _common as common

from chaos_dynamo.clock import wait_until
from chaos_dynamo.lab.state import LabInfo
from chaos_dynamo.lease.fleet import FleetParams

NAME = "lease"
OWNER = "bench-lease-0"
"""Owner of the probe tables' leases."""
FLEET_SERVICE = "bench-lease-fleet"
FLEET_OWNER = f"{FLEET_SERVICE}-0"
"""Owner the fleet writes (``<CHAOS_DYNAMO_SERVICE>-<CHAOS_DYNAMO_INSTANCE>``)."""
PAGE_BYTES = 1024 * 1024
"""DynamoDB stops a Scan page at 1 MB of items (item sizes as DynamoDB counts them)."""
SERVER = (None, 0.005, 0.01)
"""The model's store: unlimited slots, 5 ms service time, 10 ms base latency."""
MODEL_CONCURRENCY = 64
SEED = 5
TARGET_RATE_RATIO = 0.95
"""The fleet must achieve at least this fraction of its scheduled renewal rate."""
RAMP_PASS = 0.9
"""A ramp step is sustained when it achieves at least this fraction of its target."""
MODEL_SPEEDUP = 10.0
"""The model must simulate at least this many seconds per wall second (600 s in 60 s)."""
SETTLED = 1.10
"""Warm-up ends when the fleet's 2-second renewal rate is at most this times the target..."""
RENEW_CONCURRENCY = FleetParams().renew_concurrency
"""... and it was below the reference fleet's renewals in flight (its default) at the last
two readings: while it catches up, every slot is busy."""
POLL_S = 1.0
STOP_TIMEOUT_S = 15.0


@dataclass(frozen=True)
class Settings:
    """Sizes and durations of one run.

    Attributes:
        lab_items: items of the probe table read through the emulator (a table a tenth
            that size is measured too, for the per-item cost's linearity).
        model_items: items of the table measured without the emulator (client and
            decode+measure); the emulator's time for it is extrapolated unless
            ``lab_items`` is as large.
        evaluations: probe evaluations per client/decode measurement (the median is kept).
        lab_evaluations: probe evaluations through the emulator (1 above 20,000 items).
        fleet_leases, renew_every, expiry: the fleet on the lab (target rate leases / H).
        window: seconds the fleet's renewal rate is measured over, after the warm-up.
            Setup + warm-up + window should stay under H: a lease renewed late while the
            fleet catches up falls due again H later, bunched with the others.
        warmup_max: the warm-up ends after this many seconds even if not settled.
        ramp: target renewal rates of the ramp after the main fleet, run until one falls
            short (empty: no ramp).
        ramp_renew_every: H of the ramp's fleets (leases = rate x H, E = 3 H).
        ramp_window: measuring window of one ramp step (H: each lease is due once in it,
            however bunched the catch-up left them).
        ramp_warmup_max: warm-up limit of one ramp step (a fleet that cannot reach its
            target never settles).
        model_leases, model_renew_every, model_expiry, model_renew_retry: the model's fleet.
        model_duration: seconds simulated per run.
        outage: (start, end) of the model's outage, seconds since its start.
    """

    lab_items: int = 10_000
    model_items: int = 100_000
    evaluations: int = 3
    lab_evaluations: int = 2
    fleet_leases: int = 10_000
    renew_every: float = 100.0
    expiry: float = 300.0
    window: float = 30.0
    warmup_max: float = 30.0
    ramp: tuple[float, ...] = (150.0, 200.0, 300.0)
    ramp_renew_every: float = 10.0
    ramp_window: float = 10.0
    ramp_warmup_max: float = 5.0
    model_leases: int = 100_000
    model_renew_every: float = 60.0
    model_expiry: float = 180.0
    model_renew_retry: float = 5.0
    model_duration: float = 300.0
    outage: tuple[float, float] = (60.0, 90.0)

    @property
    def target_rate(self) -> float:
        return self.fleet_leases / self.renew_every


DEFAULT = Settings()
QUICK = Settings(lab_items=2_000, model_items=20_000, fleet_leases=2_000, renew_every=40.0,
                 expiry=120.0, window=10.0, warmup_max=15.0, ramp=(), model_leases=20_000,
                 model_duration=120.0, outage=(30.0, 45.0))
SMOKE = Settings(lab_items=300, model_items=1_000, evaluations=2, lab_evaluations=1,
                 fleet_leases=400, renew_every=20.0, expiry=60.0, window=3.0, warmup_max=5.0,
                 ramp=(40.0,), ramp_renew_every=2.0, ramp_window=2.0, ramp_warmup_max=3.0,
                 model_leases=1_000, model_duration=60.0, outage=(10.0, 20.0))
"""Seconds, not minutes: what the CI smoke test runs on the session's lab."""


# --- lease items and their pages ----------------------------------------------------------


def lease_items(count: int, expires_at: float) -> list[dict[str, Any]]:
    """``count`` leases as the reference fleets write them, in DynamoDB's JSON shape."""
    from chaos_dynamo.lease.reference import lease_items as fleet_items

    return fleet_items(FleetParams(leases=count), OWNER, expires_at)


def item_size(item: dict[str, Any]) -> int:
    """An item's size as DynamoDB counts it for the 1 MB page limit: each attribute's name
    plus its value (a string's UTF-8 bytes; a number's significant digits / 2 + 1)."""
    size = 0
    for name, value in item.items():
        size += len(name.encode())
        if "S" in value:
            size += len(value["S"].encode())
        else:
            digits = Decimal(value["N"]).normalize().as_tuple().digits
            size += (len(digits) + 1) // 2 + 1
    return size


def dynamodb_pages(items: Sequence[dict[str, Any]], limit: int = PAGE_BYTES
                   ) -> list[list[dict[str, Any]]]:
    """``items`` cut into Scan pages as DynamoDB cuts them (at most ``limit`` bytes each)."""
    pages: list[list[dict[str, Any]]] = [[]]
    used = 0
    for item in items:
        size = item_size(item)
        if pages[-1] and used + size > limit:
            pages.append([])
            used = 0
        pages[-1].append(item)
        used += size
    return pages


@contextmanager
def canned_scan(table: str, pages: Sequence[Sequence[dict[str, Any]]]) -> Iterator[str]:
    """A loopback server that answers ``Scan`` of ``table`` with ``pages`` (prepared bytes,
    ``ExclusiveStartKey`` -> the next page); yields its URL. Anything else is a 400."""
    bodies: list[bytes] = []
    following: dict[str, int] = {}  # last key of page i -> i + 1
    for index, page in enumerate(pages):
        answer: dict[str, Any] = {"Items": list(page), "Count": len(page),
                                  "ScannedCount": len(page)}
        if index + 1 < len(pages):
            last = page[-1]["lease_id"]
            answer["LastEvaluatedKey"] = {"lease_id": last}
            following[last["S"]] = index + 1
        bodies.append(json.dumps(answer, separators=(",", ":")).encode())

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:  # noqa: N802 - stdlib name
            request = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
            target = self.headers.get("X-Amz-Target", "")
            if target != "DynamoDB_20120810.Scan" or request.get("TableName") != table:
                self._send(400, json.dumps({"__type": "com.amazon.coral.validate#ValidationException",
                                            "message": f"canned server: only Scan of {table}"}
                                           ).encode())
                return
            start = request.get("ExclusiveStartKey", {}).get("lease_id", {}).get("S")
            self._send(200, bodies[following[start] if start else 0])

        def _send(self, status: int, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/x-amz-json-1.0")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("x-amz-crc32", str(zlib.crc32(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                              name="canned-scan", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


# --- part 1: probe cost ----------------------------------------------------------------------


def _emulator_client(info: LabInfo) -> Any:
    from chaos_dynamo.lease.table import ReadTarget, make_client

    if not info.emulator_url.startswith("http://127."):
        raise RuntimeError(f"{info.emulator_url} is not a loopback address: refusing to write")
    return make_client(ReadTarget(info.emulator_url.rstrip("/"), info.region, True, True))


def _create_table(client: Any, table: str) -> None:
    client.create_table(TableName=table, BillingMode="PAY_PER_REQUEST",
                        AttributeDefinitions=[{"AttributeName": "lease_id", "AttributeType": "S"}],
                        KeySchema=[{"AttributeName": "lease_id", "KeyType": "HASH"}])


def _populate(client: Any, table: str, items: Sequence[dict[str, Any]]) -> float:
    """Create ``table`` in the emulator and write ``items`` (BatchWriteItem, 25 at a time,
    unprocessed ones again); wall seconds."""
    started = time.perf_counter()
    _create_table(client, table)
    todo = [{"PutRequest": {"Item": item}} for item in items]
    while todo:
        batch, todo = todo[:25], todo[25:]
        answer = client.batch_write_item(RequestItems={table: batch})
        todo.extend(answer.get("UnprocessedItems", {}).get(table, []))
    return time.perf_counter() - started


def _delete_tables(client: Any, tables: Sequence[str]) -> None:
    for table in tables:
        try:
            client.delete_table(TableName=table)
        except Exception:  # noqa: BLE001, S110 - best effort: the lab goes away anyway
            pass


def _timed(call: Callable[[], Any], times: int) -> tuple[list[float], Any]:
    """Wall seconds of ``times`` calls, and the last call's value."""
    seconds: list[float] = []
    value: Any = None
    for _ in range(times):
        started = time.perf_counter()
        value = call()
        seconds.append(time.perf_counter() - started)
    return seconds, value


def _figures(seconds: list[float], items: int, value: Any) -> dict[str, Any]:
    median = common.median(seconds)
    return {"items": items, "seconds": seconds, "median_s": median,
            "items_per_s": common.ratio(items, median), "per_item_ms": 1000.0 * median / items,
            "value": value}


def _probe_call(table: str, endpoint: str, configuration: dict[str, Any]) -> Callable[[], float]:
    """One evaluation of the real ``live_lease_fraction`` probe."""
    from chaos_dynamo.lease.probes import live_lease_fraction

    return lambda: live_lease_fraction(table, endpoint=endpoint, configuration=configuration)


def _decode_and_measure(pages: Sequence[Sequence[dict[str, Any]]]) -> Callable[[], float]:
    """The probe's pipeline after the Scan: decode every item, count the live ones."""
    from chaos_dynamo.lease import measure
    from chaos_dynamo.lease.schema import LeaseSchema

    schema = LeaseSchema.from_arguments("chaos-dynamo-bench-lease")

    def evaluate() -> float:
        items = (schema.decode(item) for page in pages for item in page)
        return measure.sample_of(items, time.time()).live_fraction

    return evaluate


def probe_costs(info: LabInfo, s: Settings, token: str) -> dict[str, Any]:
    """The probe's seconds per evaluation through the emulator, on the client path and on
    decode+measure, at ``lab_items`` (and a tenth of it) and ``model_items``."""
    client = _emulator_client(info)
    configuration = {"chaos_dynamo_api": info.api_url}
    expires_at = time.time() + 86_400.0
    small = max(1, s.lab_items // 10)
    lab_evaluations = s.lab_evaluations if s.lab_items <= 20_000 else 1
    out: dict[str, Any] = {"emulator": {}, "client": {}, "decode": {}, "populate_s": {},
                           "pages": {}}
    tables = [f"bench-lease-probe-{token}-{n}" for n in (small, s.lab_items)]
    try:
        for table, n in zip(tables, (small, s.lab_items), strict=True):
            common.progress(f"lease: writing {n:,} leases into the emulator (BatchWriteItem)")
            out["populate_s"][n] = _populate(client, table, lease_items(n, expires_at))
            common.progress(f"lease: live_lease_fraction through the emulator, {n:,} items, "
                            f"{lab_evaluations} evaluation(s)")
            seconds, value = _timed(_probe_call(table, "", configuration), lab_evaluations)
            out["emulator"][n] = _figures(seconds, n, value)
    finally:
        _delete_tables(client, tables)
    for n in sorted({s.lab_items, s.model_items}):
        pages = dynamodb_pages(lease_items(n, expires_at))
        out["pages"][n] = len(pages)
        table = "chaos-dynamo-bench-lease"
        common.progress(f"lease: the probe against a store that costs nothing, {n:,} items "
                        f"({len(pages)} page(s) of <= 1 MB), {s.evaluations} evaluations each")
        with canned_scan(table, pages) as url:
            seconds, value = _timed(_probe_call(table, url, {}), s.evaluations)
        out["client"][n] = _figures(seconds, n, value)
        seconds, value = _timed(_decode_and_measure(pages), s.evaluations)
        out["decode"][n] = _figures(seconds, n, value)
    return out


# --- part 2: a real fleet's renewal throughput ------------------------------------------------


@dataclass(frozen=True)
class Poll:
    """One reading of the fleet's ``/metrics``."""

    t: float  # perf_counter seconds
    wall: float  # epoch seconds (the fleet's clock)
    renewals_ok: int
    renewals_failed: int
    believed_live: int
    jobs_started: int
    in_flight_ops: int


_METRIC = re.compile(r"^chaos_dynamo_lease_(\w+) (\S+)$", re.M)


def read_metrics(url: str) -> Poll:
    """The fleet's counters from its Prometheus text."""
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    t, wall = time.perf_counter(), time.time()
    values = {name: float(value) for name, value in _METRIC.findall(text)}
    return Poll(t, wall, int(values["renewals_ok_total"]), int(values["renewals_failed_total"]),
                int(values["believed_live"]), int(values["jobs_started_total"]),
                int(values["in_flight_ops"]))


def _rate(first: Poll, last: Poll) -> float:
    return common.ratio(last.renewals_ok - first.renewals_ok, last.t - first.t)


@dataclass(frozen=True)
class Schedule:
    """The renewals a fleet's schedule asks for, from its start.

    The fleet writes every lease with ``expires_at = started + E`` at setup and spreads the
    first renewals uniformly at random over ``[started, started + H)``: by ``t`` about
    ``leases * (t - started) / H`` are due, give or take the binomial spread of the phases.
    Only the first H is predictable this way (a lease renewed late is due again H after
    that), so :meth:`backlog` is None past it.
    """

    started: float
    leases: int
    renew_every: float

    def due(self, t: float) -> float:
        return self.leases * max(0.0, t - self.started) / self.renew_every

    def tolerance(self, t: float) -> float:
        """Three standard deviations of the phases' spread, plus half a second of renewals."""
        q = min(1.0, max(0.0, (t - self.started) / self.renew_every))
        return 3.0 * math.sqrt(self.leases * q * (1.0 - q)) + 0.5 * self.leases / self.renew_every

    def backlog(self, poll: Poll) -> float | None:
        """Renewals due by ``poll`` and neither done nor in flight (None past the first H)."""
        if poll.wall - self.started >= self.renew_every:
            return None
        return self.due(poll.wall) - poll.renewals_ok - poll.in_flight_ops


def _schedule(info: LabInfo, table: str, leases: int, renew_every: float,
              expiry: float) -> Schedule | None:
    """The fleet's schedule, from a lease it has not renewed yet (None if none is found)."""
    page = _emulator_client(info).scan(TableName=table, ConsistentRead=True, Limit=50)
    for item in page.get("Items", []):
        if item["version"]["N"] == "1":
            return Schedule(float(item["expires_at"]["N"]) - expiry, leases, renew_every)
    return None


def _every_second(url: str, seconds: float, polls: list[Poll],
                  done: Callable[[list[Poll]], bool] = lambda _: False) -> None:
    """Append a reading to ``polls`` every :data:`POLL_S` for ``seconds`` (or until ``done``)."""
    start = polls[-1].t if polls else time.perf_counter()
    tick = 1
    while True:
        due = start + tick * POLL_S
        time.sleep(max(0.0, due - time.perf_counter()))
        polls.append(read_metrics(url))
        tick += 1
        if polls[-1].t - start >= seconds - 1e-3 or done(polls):
            return


@dataclass
class FleetProcess:
    process: subprocess.Popen[bytes]
    ready_file: Path
    output: Path

    def tail(self) -> str:
        try:
            return self.output.read_text(errors="replace")[-2000:]
        except OSError:
            return ""

    def stop(self) -> int | None:
        """SIGTERM, waited for (SIGKILL past the timeout: None)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=STOP_TIMEOUT_S)
            return None

    def final_counters(self) -> dict[str, int]:
        """The fleet's last word (its ``stopped:`` line): renewals_ok, jobs_ok, ops_sent ..."""
        text = self.tail()
        line = next((ln for ln in reversed(text.splitlines()) if " stopped: " in ln), "")
        return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)(?:/\d+)?", line)}


def _start_fleet(info: LabInfo, folder: Path, table: str, leases: int, renew_every: float,
                 expiry: float) -> FleetProcess:
    ready, output = folder / f"{table}.ready", folder / f"{table}.out"
    env = common.clean_env() | info.env() | {
        "CHAOS_DYNAMO_SERVICE": FLEET_SERVICE, "CHAOS_DYNAMO_INSTANCE": "0",
        "CHAOS_DYNAMO_EXIT_WITH_PARENT": str(os.getpid())}
    setup_timeout = max(60.0, leases / 100.0)
    command = [sys.executable, "-m", "chaos_dynamo.lease.reference", "--manager", "hardened",
               "--leases", str(leases), "--renew-every", f"{renew_every:g}",
               "--expiry", f"{expiry:g}", "--table", table, "--seed", str(SEED),
               "--http", "127.0.0.1:0", "--ready-file", str(ready),
               "--setup-timeout", f"{setup_timeout:g}"]
    with output.open("wb") as out:
        process = subprocess.Popen(command, env=env, cwd=common.REPO_ROOT, stdout=out,
                                   stderr=subprocess.STDOUT)
    fleet = FleetProcess(process, ready, output)

    def ready_or_gone() -> bool:
        if process.poll() is not None:
            raise RuntimeError(f"the lease fleet exited {process.returncode} before it was "
                               f"ready:\n{fleet.tail()}")
        return ready.exists()

    try:
        if not wait_until(ready_or_gone, timeout=setup_timeout + 30.0, interval=0.05):
            raise RuntimeError(f"the lease fleet was not ready within {setup_timeout + 30:g} s:"
                               f"\n{fleet.tail()}")
    except BaseException:
        fleet.stop()
        raise
    return fleet


def _lab_check(info: LabInfo, table: str, stopped_at: float,
               schedule: Schedule | None) -> dict[str, Any]:
    """One scan of the fleet's table after it stopped: writes landed, leases live, and how
    far the landed renewals were behind the schedule at the stop."""
    from chaos_dynamo.lease import table as lease_table
    from chaos_dynamo.lease.schema import LeaseSchema

    items = lease_table.scan_leases(_emulator_client(info), LeaseSchema.from_arguments(table))
    writes = sum(i.version for i in items) - len(items)
    behind: float | None = None
    if schedule is not None and stopped_at - schedule.started < schedule.renew_every:
        rate = schedule.leases / schedule.renew_every
        behind = max(0.0, schedule.due(stopped_at) - writes) / rate
    return {"items": len(items), "live": sum(i.expires_at > stopped_at for i in items),
            "writes": writes, "behind_s": behind, "owners": sorted({i.owner for i in items})}


def fleet_run(info: LabInfo, folder: Path, table: str, leases: int, renew_every: float,
              expiry: float, window: float, warmup_max: float, check: bool = True
              ) -> dict[str, Any]:
    """Start a hardened fleet, warm it up, measure its renewal rate over ``window``, stop it,
    and (``check``) scan its table."""
    target = leases / renew_every
    spawned = time.perf_counter()
    fleet = _start_fleet(info, folder, table, leases, renew_every, expiry)
    try:
        setup_s = time.perf_counter() - spawned
        url = json.loads(fleet.ready_file.read_text())["metrics_url"]
        common.progress(f"lease: fleet ready after {setup_s:.1f} s; warm-up (renewals due "
                        f"during setup caught up), at most {warmup_max:g} s")
        warm = [read_metrics(url)]
        schedule = _schedule(info, table, leases, renew_every, expiry)

        def settled(polls: list[Poll]) -> bool:
            if len(polls) < 3:
                return False
            if schedule is not None and schedule.backlog(polls[-1]) is not None:
                # Caught up with the schedule at the last two readings.
                return all((schedule.backlog(p) or 0.0) <= schedule.tolerance(p.wall)
                           for p in polls[-2:])
            # Past the first H: no longer pinned at the renewal concurrency, and back near the
            # target (either alone is fooled by one slow second on a busy machine).
            return (_rate(polls[-3], polls[-1]) <= SETTLED * target
                    and all(p.in_flight_ops < RENEW_CONCURRENCY for p in polls[-2:]))

        _every_second(url, warmup_max, warm, settled)
        peaks = [_rate(a, b) for a, b in zip(warm, warm[2:], strict=False)]
        common.progress(f"lease: measuring {window:g} s at a target of {target:,.0f} renewals/s")
        polls = [warm[-1]]
        _every_second(url, window, polls)
        stopped_at = time.time()
        code = fleet.stop()
    except BaseException:
        fleet.stop()
        raise
    first, last = polls[0], polls[-1]
    backlog = schedule.backlog(last) if schedule is not None else None
    out: dict[str, Any] = {
        "leases": leases, "renew_every": renew_every, "expiry": expiry, "target_rate": target,
        "setup_s": setup_s, "warmup_s": warm[-1].t - warm[0].t,
        "settled": settled(warm),
        "peak_rate": max(peaks, default=float("nan")),
        "window_s": last.t - first.t, "renewals": last.renewals_ok - first.renewals_ok,
        "rate": _rate(first, last), "renewals_failed": last.renewals_failed - first.renewals_failed,
        "min_believed_live": min(p.believed_live for p in polls),
        "jobs_started": last.jobs_started, "exit_code": code,
        "started": schedule.started if schedule is not None else None,
        "backlog": backlog,
        "behind_s": None if backlog is None else max(0.0, backlog) / target,
        "tolerance_s": None if backlog is None or schedule is None
        else schedule.tolerance(last.wall) / target,
        "final": fleet.final_counters(),
        "polls": [asdict(p) | {"t": round(p.t - spawned, 3)} for p in warm[:-1] + polls]}
    if check:
        common.progress(f"lease: scanning the fleet's {leases:,} leases (lab-side check)")
        out["lab"] = _lab_check(info, table, stopped_at, schedule)
    return out


def fleet_throughput(info: LabInfo, s: Settings, token: str) -> dict[str, Any]:
    """The fleet at ``s``'s size, then the ramp's steps (until one falls short)."""
    client = _emulator_client(info)
    tables: list[str] = []
    with tempfile.TemporaryDirectory(prefix="chaos-dynamo-bench-lease-") as tmp:
        try:
            table = f"bench-lease-fleet-{token}"
            tables.append(table)
            common.progress(f"lease: starting the hardened reference fleet, {s.fleet_leases:,} "
                            f"leases, H = {s.renew_every:g} s, E = {s.expiry:g} s")
            main = fleet_run(info, Path(tmp), table, s.fleet_leases, s.renew_every, s.expiry,
                             s.window, s.warmup_max)
            ramp: list[dict[str, Any]] = []
            for rate in s.ramp:
                leases = max(1, round(rate * s.ramp_renew_every))
                table = f"bench-lease-ramp-{token}-{len(ramp)}"
                tables.append(table)
                common.progress(f"lease: ramp step {rate:g} renewals/s ({leases:,} leases, "
                                f"H = {s.ramp_renew_every:g} s)")
                step = fleet_run(info, Path(tmp), table, leases, s.ramp_renew_every,
                                 3 * s.ramp_renew_every, s.ramp_window, s.ramp_warmup_max,
                                 check=False)
                step["sustained"] = step["rate"] >= RAMP_PASS * step["target_rate"]
                ramp.append({k: v for k, v in step.items() if k != "polls"})
                if not step["sustained"]:
                    break
        finally:
            _delete_tables(client, tables)
    return {"main": main, "ramp": ramp}


# --- part 3: the in-memory model at 100,000 leases -------------------------------------------------


def model_run(s: Settings, outage: bool) -> dict[str, Any]:
    """One run of the model with the hardened manager; wall time and what it simulated."""
    from chaos_dynamo.lease.managers import make_manager
    from chaos_dynamo.lease.sim import Scenario, Server, Window, simulate

    params = FleetParams(leases=s.model_leases, renew_every=s.model_renew_every,
                         expiry=s.model_expiry, renew_retry=s.model_renew_retry,
                         renew_concurrency=MODEL_CONCURRENCY)
    scenario = Scenario(duration=s.model_duration,
                        outages=(Window(*s.outage),) if outage else ())
    manager = make_manager("hardened", random.Random(f"bench-lease-{SEED}"))
    started = time.perf_counter()
    result = simulate(params, manager, Server(*SERVER), scenario, seed=SEED)
    wall = time.perf_counter() - started
    stats = result.stats
    return {"leases": s.model_leases, "simulated_s": s.model_duration,
            "outage": list(s.outage) if outage else None, "wall_s": wall,
            "sim_per_wall": common.ratio(s.model_duration, wall), "events": result.events,
            "events_per_s": common.ratio(result.events, wall), "served": result.served,
            "ops_sent": stats.ops_sent, "renewals_ok": stats.renewals_ok,
            "renewals_failed": stats.renewals_failed, "jobs_started": stats.jobs_started,
            "min_live_fraction": min(x.live_fraction for x in result.samples),
            "final_live_fraction": result.samples[-1].live_fraction,
            "stalls": result.stalls, "digest": result.digest}


def model_runs(s: Settings) -> dict[str, Any]:
    runs: dict[str, Any] = {}
    for name, outage in (("steady", False), ("outage", True)):
        what = f"a {s.outage[1] - s.outage[0]:g} s outage" if outage else "no fault"
        common.progress(f"lease: model, {s.model_leases:,} leases, {s.model_duration:g} s "
                        f"simulated, hardened, {what}")
        runs[name] = model_run(s, outage)
    return runs


# --- figures ---------------------------------------------------------------------------------------


def summarize(s: Settings, probe: dict[str, Any]) -> dict[str, Any]:
    """The emulator's cost as fixed + per item (a line through its two measured sizes), the
    extrapolation to ``model_items`` and the ratios to the client path (pure)."""
    lab, big = s.lab_items, s.model_items
    emulator = probe["emulator"]
    small = min(emulator)
    at_lab, at_small = emulator[lab]["median_s"], emulator[small]["median_s"]
    per_item = common.ratio(at_lab - at_small, lab - small) if lab > small else at_lab / lab
    measured_big = big in emulator
    emulator_big = emulator[big]["median_s"] if measured_big else at_lab + per_item * (big - lab)
    return {
        "emulator_per_item_ms": 1000.0 * per_item,
        "emulator_fixed_s": at_lab - per_item * lab,
        "emulator_big_s": emulator_big, "emulator_big_measured": measured_big,
        "ratio_lab": common.ratio(at_lab, probe["client"][lab]["median_s"]),
        "ratio_big": common.ratio(emulator_big, probe["client"][big]["median_s"]),
        "ratio_decode_big": common.ratio(emulator_big, probe["decode"][big]["median_s"]),
    }


def _n(count: int) -> str:
    return f"{count:,}"


def _add_probe(result: common.BenchResult, s: Settings, probe: dict[str, Any],
               summary: dict[str, Any]) -> None:
    lab, big = s.lab_items, s.model_items
    for n in sorted(set(probe["emulator"]) | {lab, big}):
        emulator = probe["emulator"].get(n)
        if emulator is not None:
            result.add(common.info(f"probe {_n(n)} items: via emulator", emulator["median_s"], "s",
                                   f"{emulator['items_per_s']:,.0f} items/s, moto, measured"))
        else:
            pages = f"{probe['pages'][lab]} -> {probe['pages'][big]} pages"
            result.add(common.info(f"probe {_n(n)} items: via emulator", summary["emulator_big_s"],
                                   "s", f"EXTRAPOLATED linearly from {_n(lab)} items, not "
                                   f"measured: a lower bound (moto sorts the table for every "
                                   f"1 MB page; {pages}); --lease-items-lab {big} measures it"))
        if n not in probe["client"]:
            continue
        client, decode = probe["client"][n], probe["decode"][n]
        result.add(common.info(f"probe {_n(n)} items: client only", client["median_s"], "s",
                               f"{client['items_per_s']:,.0f} items/s; HTTP + botocore + decode "
                               f"+ count, {probe['pages'][n]} page(s), store costs 0"))
        result.add(common.info(f"probe {_n(n)} items: decode+measure", decode["median_s"], "s",
                               f"{decode['items_per_s']:,.0f} items/s; no HTTP"))
    small = min(probe["emulator"])
    result.add(common.info("emulator cost per item", summary["emulator_per_item_ms"], "ms",
                           f"line through {_n(small)} and {_n(lab)} items; fixed "
                           f"{summary['emulator_fixed_s']:+.2f} s per evaluation"))
    decode = f"emulator / decode+measure {summary['ratio_decode_big']:.0f} x"
    if big != lab:
        result.add(common.info(f"ratio emulator / client, {_n(lab)}", summary["ratio_lab"], "x",
                               "measured"))
    result.add(common.info(f"ratio emulator / client, {_n(big)}", summary["ratio_big"], "x",
                           ("measured" if summary["emulator_big_measured"] else
                            "emulator extrapolated") + f"; {decode}"))


def _add_fleet(result: common.BenchResult, s: Settings, fleet: dict[str, Any]) -> None:
    main = fleet["main"]
    target, leases = main["target_rate"], main["leases"]
    result.add(common.info("fleet setup (table + leases)", main["setup_s"], "s",
                           f"{_n(leases)} leases via the endpoint, process start to ready; "
                           f"{leases / main['setup_s']:,.0f} leases/s"))
    result.add(common.at_least(f"fleet renewals/s (target {target:,.0f})", main["rate"],
                               TARGET_RATE_RATIO * target, "/s",
                               f"{main['renewals']:,} in {main['window_s']:.0f} s; "
                               f"{main['renewals_failed']} failed; "
                               f"warm-up {main['warmup_s']:.0f} s"
                               + ("" if main["settled"] else " (not settled)")))
    caught_up = main["warmup_s"] >= 5 * POLL_S  # two whole 2-s windows inside the catch-up
    if main["behind_s"] is None:
        result.add(common.info("fleet behind schedule, end", float("nan"), "s",
                               "window ends past H: the schedule is not predictable"))
    else:
        result.add(common.at_most("fleet behind schedule, end", main["behind_s"],
                                  round(main["tolerance_s"], 2), "s",
                                  f"{max(0.0, main['backlog']):,.0f} renewals due, not done or "
                                  "in flight; limit: 3 sd of the random phases + 0.5 s"))
    result.add(common.info("fleet peak 2-s rate (catch-up)", main["peak_rate"], "/s",
                           "renewals due during setup, drained flat out (8 in flight): "
                           "about the lab's ceiling" if caught_up else
                           "catch-up too short to show the ceiling: a lower bound"))
    result.add(common.at_least("fleet: min leases held", main["min_believed_live"], leases, "",
                               "the fleet's /metrics, every second of the window"))
    lab = main["lab"]
    behind = "n/a" if lab["behind_s"] is None else f"{lab['behind_s']:.1f} s"
    result.add(common.at_least("lab: leases live at stop", lab["live"], leases, "",
                               f"landed renewals {behind} behind schedule at the stop"))
    acknowledged = main["final"].get("renewals_ok", 0) + main["final"].get("jobs_ok", 0)
    result.add(common.at_least("lab writes / acknowledged", common.ratio(lab["writes"], acknowledged),
                               1.0, "x", f"version growth {lab['writes']:,} vs {acknowledged:,} "
                               "OK answers (> 1: writes timed out or in flight at stop)"))
    if fleet["ramp"]:
        steps = [main | {"sustained": main["rate"] >= RAMP_PASS * target}, *fleet["ramp"]]
        held = [step for step in steps if step["sustained"]]
        best = max(held, key=lambda step: step["target_rate"]) if held else None
        path = ", ".join(f"{st['target_rate']:g}->{st['rate']:.0f}" for st in steps)
        result.add(common.info("ramp: max sustained renewals/s",
                               best["rate"] if best else float("nan"), "/s",
                               f"target->achieved: {path}; sustained = >= "
                               f"{RAMP_PASS:.0%} of target"))


def _add_model(result: common.BenchResult, s: Settings, model: dict[str, Any]) -> None:
    for name, run in model.items():
        what = "steady" if run["outage"] is None else \
            f"{run['outage'][1] - run['outage'][0]:g} s outage"
        row = f"model {_n(run['leases'])}, {what}: sim s / wall s"
        note = (f"{run['simulated_s']:g} s in {run['wall_s']:.1f} s; {run['events']:,} events, "
                f"{run['events_per_s']:,.0f} events/s")
        if run["outage"] is not None:
            note += (f"; {run['renewals_failed']:,} failed renewals retried, "
                     f"min live {run['min_live_fraction']:.3f}")
        if name == "steady":
            result.add(common.at_least(row, run["sim_per_wall"], MODEL_SPEEDUP, "x", note))
        else:
            result.add(common.info(row, run["sim_per_wall"], "x", note))


def measure(info: LabInfo, s: Settings = DEFAULT) -> common.BenchResult:
    """The benchmark against a running lab (the smoke test passes its session lab)."""
    token = uuid.uuid4().hex[:6]
    model = model_runs(s)
    probe = probe_costs(info, s, token)
    fleet = fleet_throughput(info, s, token)
    summary = summarize(s, probe)
    result = common.BenchResult(NAME)
    _add_probe(result, s, probe, summary)
    _add_fleet(result, s, fleet)
    _add_model(result, s, model)
    result.details = {"settings": asdict(s), "summary": summary, "probe": probe,
                      "fleet": fleet, "model": model}
    return result


def run(quick: bool = False, settings: Settings | None = None) -> common.BenchResult:
    """Start a detached lab, measure, stop it; ``quick`` runs smaller sizes."""
    s = settings or (QUICK if quick else DEFAULT)
    with common.detached_lab() as info:
        return measure(info, s)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="smaller sizes")
    parser.add_argument("--lease-items-lab", type=int, metavar="N",
                        help="items of the probe table read through the emulator (default "
                             f"{DEFAULT.lab_items:,}; 100000 measures the big table for real: "
                             "minutes)")
    parser.add_argument("--model-items", type=int, metavar="N",
                        help=f"items of the big table (default {DEFAULT.model_items:,})")
    parser.add_argument("--fleet-leases", type=int, metavar="N",
                        help=f"leases of the fleet on the lab (default {DEFAULT.fleet_leases:,})")
    parser.add_argument("--renew-every", type=float, metavar="H",
                        help=f"the fleet's H (default {DEFAULT.renew_every:g}; E = 3 H)")
    parser.add_argument("--window", type=float, metavar="SECONDS",
                        help=f"measuring window of the fleet (default {DEFAULT.window:g})")
    parser.add_argument("--ramp", metavar="RATE,RATE",
                        help="target renewals/s of the ramp after the main fleet (default "
                             f"{','.join(f'{r:g}' for r in DEFAULT.ramp)}; 0 for none)")
    parser.add_argument("--json", type=Path, help="also write the result here")
    args = parser.parse_args(argv)
    s = QUICK if args.quick else DEFAULT
    changes: dict[str, Any] = {}
    if args.lease_items_lab:
        changes["lab_items"] = args.lease_items_lab
    if args.model_items:
        changes["model_items"] = args.model_items
    if args.fleet_leases:
        changes["fleet_leases"] = args.fleet_leases
    if args.renew_every:
        changes |= {"renew_every": args.renew_every, "expiry": 3 * args.renew_every}
    if args.window:
        changes["window"] = args.window
    if args.ramp is not None:
        changes["ramp"] = tuple(r for r in (float(x) for x in args.ramp.split(",") if x.strip())
                                if r > 0)
    s = replace(s, **changes)
    result = common.timed(lambda _quick: run(settings=s), args.quick)
    print(common.summary_table([result]))
    print(f"({result.name}: {result.seconds:.1f} s)")
    if args.json:
        args.json.write_text(json.dumps(result.to_json(), indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
