"""The lease fleet against an in-memory store with finite capacity: the model.

Discrete-event simulation in virtual time of the SAME :class:`~chaos_dynamo.lease.fleet.LeaseFleet`
and :class:`~chaos_dynamo.lease.managers.Manager` objects the lab driver runs, so a policy can
be judged in seconds before it is judged on the lab. The store is:

- an in-memory table with exactly the conditional semantics of :mod:`chaos_dynamo.lease.ops`
  (:class:`MemoryTable`);
- a server (:class:`Server`) of ``slots`` FIFO slots (None: unlimited); a request holds its
  slot for ``service_time + base_latency`` (the service time in force when it starts). This
  is DynamoDB's finite capacity, as the lab's ``slots``/``service_time`` fault emulates;
- a client timeout: when the server would answer after ``send + op.timeout``, the fleet gets
  ``TIMEOUT`` at that moment, yet the request keeps its place and its write still lands when
  the server reaches it (a client that gives up does not take its request back: wasted work,
  the fuel of congestive collapse);
- faults from a :class:`Scenario`: outages (the endpoint resolves to nothing: every op sent
  fails fast with ``ERROR "dns"``), slow windows (recovery-time latency) and expiry bursts
  (the ``expire_leases`` fault: bump the version, put the expiry in the past).

Samples are the lease watcher's (:class:`chaos_dynamo.lease.timeline.Sample`), so the same
checkers judge the model and the lab. Runs are deterministic: one seed, one trace, one
digest (sha256 over every answer's time, op kind, key and outcome).

What it shows with the lab's defaults (``Server(2, 0.03, 0.01)``: ~50 requests/s;
``FleetParams()``: 100 leases, E = 10 s, jobs of 4 ops with a 0.6 s deadline), after a 12 s
outage and 5 s of slow recovery: the naive manager never re-establishes a lease (16 jobs
keep the server saturated, every job times out, goodput ~0 while attempts run at the
server's capacity); the hardened one is back at 99% about 20 s after the trigger ends.
A burst of a few expired leases (up to ~15) is recovered by both: only a mass expiry
tips the naive fleet over, and it stays over (metastable).
"""

from __future__ import annotations

import hashlib
import heapq
import math
import random
from array import array
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from chaos_dynamo.errors import ConfigError
from chaos_dynamo.lease import timeline
from chaos_dynamo.lease.fleet import (
    FleetParams,
    FleetStats,
    LeaseFleet,
    fleet_rng,
    lease_keys,
    validate,
)
from chaos_dynamo.lease.managers import Manager
from chaos_dynamo.lease.ops import Kind, LeaseItem, Op, Outcome, Result

__all__ = ["DNS_DELAY", "MemoryTable", "Scenario", "Server", "SimResult", "Window",
           "simulate", "validate_model"]

# Enum members read through the class cost ~0.2 us each on 3.11; these run per event.
_RENEW, _READ, _ACQUIRE = Kind.RENEW, Kind.READ, Kind.ACQUIRE
_OK, _CONDITION_FAILED, _TIMEOUT, _ERROR = (Outcome.OK, Outcome.CONDITION_FAILED,
                                            Outcome.TIMEOUT, Outcome.ERROR)

DNS_DELAY = 0.001
"""Seconds until an op sent during an outage fails (a resolver's empty answer is quick)."""

OWNER = "sim-0"
MAX_SAMPLES = 1_000_000


@dataclass(frozen=True)
class Server:
    """The store's capacity: ``slots`` requests served at once (None: unlimited), FIFO.

    Each request holds its slot for ``service_time + base_latency`` seconds; capacity is
    about ``slots / (service_time + base_latency)`` requests per second.
    """

    slots: int | None = 2
    service_time: float = 0.03
    base_latency: float = 0.01


@dataclass(frozen=True)
class Window:
    """``[start, end)`` in seconds since the simulation's start."""

    start: float
    end: float


@dataclass(frozen=True)
class Scenario:
    """What happens to the store during a run (times in seconds since the start).

    Attributes:
        duration: seconds simulated.
        outages: the endpoint resolves to nothing: every op sent fails fast (``ERROR "dns"``).
        slow: ``(window, service_time)``: the service time of requests starting in the window.
        expire_bursts: ``(at, count)``: ``count`` seeded-chosen live leases get their version
            bumped and their expiry put in the past (the ``expire_leases`` fault).
        sample_every: seconds between two samples of the table.
    """

    duration: float
    outages: tuple[Window, ...] = ()
    slow: tuple[tuple[Window, float], ...] = ()
    expire_bursts: tuple[tuple[float, int], ...] = ()
    sample_every: float = 1.0


@dataclass(frozen=True)
class SimResult:
    """One run of the model.

    Attributes:
        samples: the table every ``sample_every`` seconds (attempts: ops the fleet sent).
        markers: ``trigger_start`` at the first fault's start, ``trigger_end`` at the last
            fault's end (none without faults).
        stats: the fleet's counters at the end.
        manager: the manager's settings and counters at the end.
        digest: sha256 of the trace (every answer: time, op kind, key, outcome).
        served: requests the server finished (writes applied or reads answered).
        wasted: of those, the ones whose client had already timed out.
        events: answers delivered to the fleet (the trace's length).
        stalls: times the fleet asked to be woken when it had nothing to do (a
            fleet/manager bug the model works around; 0 in a healthy run).
    """

    samples: list[timeline.Sample]
    markers: list[timeline.Marker]
    stats: FleetStats
    manager: dict[str, Any]
    digest: str
    served: int = 0
    wasted: int = 0
    events: int = 0
    stalls: int = 0

    @property
    def timeline(self) -> timeline.Timeline:
        return timeline.Timeline(tuple(self.samples), tuple(self.markers))


class MemoryTable:
    """Leases in memory, with the conditional writes of :mod:`chaos_dynamo.lease.ops`.

    Rows are kept as plain tuples (a model run makes a million writes); :meth:`get`
    returns a :class:`LeaseItem`.

    Args:
        grid: ``(start, step)`` of the sample times, when samples will be taken only at
            ``start + j * step`` (non-decreasing ``j``): :meth:`live_at` is then O(1) per
            write instead of a scan (each lease is filed under the first sample time that
            sees it expired).
    """

    def __init__(self, grid: tuple[float, float] | None = None) -> None:
        self._rows: dict[str, tuple[str, float, int]] = {}  # key -> (owner, expires_at, version)
        self.version_sum = 0
        self._grid = grid
        self._bucket: dict[str, int] = {}
        self._counts: dict[int, int] = {}
        self._cursor = -1  # the last sample index counted
        self._expired = 0  # leases filed at or before the cursor

    def __len__(self) -> int:
        return len(self._rows)

    def keys(self) -> list[str]:
        return list(self._rows)

    def get(self, key: str) -> LeaseItem | None:
        row = self._rows.get(key)
        return None if row is None else LeaseItem(key, row[0], row[1], row[2])

    def put(self, item: LeaseItem) -> None:
        self._write(item.key, item.owner, item.expires_at, item.version)

    def _file(self, expires_at: float) -> int:
        assert self._grid is not None
        start, step = self._grid
        if expires_at <= start:
            return 0
        j = math.ceil((expires_at - start) / step)
        # Guard the float division: j is the first index with start + j * step >= expires_at.
        if start + j * step < expires_at:
            j += 1
        elif start + (j - 1) * step >= expires_at:
            j -= 1
        return j

    def _write(self, key: str, owner: str, expires_at: float, version: int) -> None:
        rows = self._rows
        old = rows.get(key)
        if old is not None:
            self.version_sum -= old[2]
        rows[key] = (owner, expires_at, version)
        self.version_sum += version
        grid = self._grid
        if grid is None:
            return
        counts = self._counts
        if old is not None:
            was = self._bucket[key]
            counts[was] -= 1
            if was <= self._cursor:
                self._expired -= 1
        start, step = grid
        if expires_at <= start:
            j = 0
        else:  # _file(), inlined: a model run makes a million writes
            j = math.ceil((expires_at - start) / step)
            if start + j * step < expires_at:
                j += 1
            elif start + (j - 1) * step >= expires_at:
                j -= 1
        self._bucket[key] = j
        counts[j] = counts.get(j, 0) + 1
        if j <= self._cursor:
            self._expired += 1

    def apply(self, op: Op) -> Result:
        """The op's effect on the table, and its answer (OK or CONDITION_FAILED)."""
        row = self._rows.get(op.key)
        kind = op.kind
        if kind is _READ:
            item = None if row is None else LeaseItem(op.key, row[0], row[1], row[2])
            return Result(op.id, _OK, item)
        if kind is _RENEW:
            ok = row is not None and row[2] == op.version and row[0] == op.owner
        else:
            ok = row is None or (row[2] == op.version
                                 and (row[0] == op.owner or row[1] < op.now))
        if not ok:
            return Result(op.id, _CONDITION_FAILED)
        self._write(op.key, op.owner, op.expires_at, op.version + 1)
        return Result(op.id, _OK)

    def live_at(self, t: float) -> int:
        """Leases whose expiry is after ``t`` (with a grid: ``t`` a sample time, not decreasing)."""
        if self._grid is None:
            return sum(1 for row in self._rows.values() if row[1] > t)
        j = self._file(t)
        counts = self._counts
        while self._cursor < j:
            self._cursor += 1
            self._expired += counts.get(self._cursor, 0)
        return len(self._rows) - self._expired


def _check_number(name: str, value: object, *, allow_zero: bool = True) -> float:
    ok = (not isinstance(value, bool) and isinstance(value, int | float) and math.isfinite(value)
          and (value >= 0 if allow_zero else value > 0))
    if not ok:
        bound = ">= 0" if allow_zero else "> 0"
        raise ConfigError(name, f"must be a finite number {bound}, got {value!r}",
                          f"set {name} {bound}")
    return float(value)  # type: ignore[arg-type]


def _check_window(name: str, window: object) -> Window:
    if not isinstance(window, Window):
        raise ConfigError(name, f"must be a Window(start, end), got {window!r}",
                          "use Window(start=..., end=...)")
    _check_number(f"{name}.start", window.start)
    _check_number(f"{name}.end", window.end)
    if window.end <= window.start:
        raise ConfigError(f"{name}.end", f"must be after start ({window.start}), got {window.end}",
                          "give the window a positive length")
    return window


def validate_model(server: Server, scenario: Scenario) -> None:
    """Check the server and the scenario; :class:`ConfigError` names the bad field."""
    slots = server.slots
    if slots is not None and (isinstance(slots, bool) or not isinstance(slots, int) or slots < 1):
        raise ConfigError("server.slots", f"must be an integer >= 1 or None, got {slots!r}",
                          "use None for unlimited capacity")
    _check_number("server.service_time", server.service_time)
    _check_number("server.base_latency", server.base_latency)
    duration = _check_number("scenario.duration", scenario.duration, allow_zero=False)
    if duration > 7 * 86400:
        raise ConfigError("scenario.duration", f"at most a week of virtual time, got {duration}",
                          "simulate a shorter run")
    every = _check_number("scenario.sample_every", scenario.sample_every, allow_zero=False)
    if duration / every > MAX_SAMPLES:
        raise ConfigError("scenario.sample_every",
                          f"{every} s makes more than {MAX_SAMPLES} samples over {duration} s",
                          "sample less often")
    for i, window in enumerate(scenario.outages):
        _check_window(f"scenario.outages[{i}]", window)
    for i, slow in enumerate(scenario.slow):
        if not isinstance(slow, tuple) or len(slow) != 2:
            raise ConfigError(f"scenario.slow[{i}]", f"must be (Window, service_time), got {slow!r}",
                              "use (Window(start, end), seconds)")
        _check_window(f"scenario.slow[{i}]", slow[0])
        _check_number(f"scenario.slow[{i}].service_time", slow[1])
    for i, burst in enumerate(scenario.expire_bursts):
        if (not isinstance(burst, tuple) or len(burst) != 2 or isinstance(burst[1], bool)
                or not isinstance(burst[1], int) or burst[1] < 0):
            raise ConfigError(f"scenario.expire_bursts[{i}]",
                              f"must be (at, count) with count an integer >= 0, got {burst!r}",
                              "use (seconds, count)")
        _check_number(f"scenario.expire_bursts[{i}].at", burst[0])


def _markers(scenario: Scenario, start: float) -> list[timeline.Marker]:
    spans: list[tuple[float, float]] = [(w.start, w.end) for w in scenario.outages]
    spans += [(w.start, w.end) for w, _ in scenario.slow]
    spans += [(at, at) for at, _ in scenario.expire_bursts]
    if not spans:
        return []
    return [timeline.Marker(start + min(s for s, _ in spans), timeline.TRIGGER_START),
            timeline.Marker(start + max(e for _, e in spans), timeline.TRIGGER_END)]


def _in(windows: Sequence[tuple[float, float]], t: float) -> bool:
    return any(a <= t < b for a, b in windows)


# Event kinds, in the order they run at one instant.
_EV_FINISH = 0  # the server finished a request
_EV_DELIVER = 1  # an answer reaches the fleet (fast failures)
_EV_TIMEOUT = 2  # a client stops waiting
_EV_BURST = 3  # an expire_leases burst
_EV_SAMPLE = 4  # read the table


class _Run:
    """The mutable state of one :func:`simulate` call."""

    def __init__(self, params: FleetParams, manager: Manager, server: Server, scenario: Scenario,
                 seed: int, start: float) -> None:
        self.params = params
        self.server = server
        self.scenario = scenario
        self.start = start
        self.end = start + scenario.duration
        self.table = MemoryTable(grid=(start, scenario.sample_every))
        expires = start + params.expiry
        self.keys = lease_keys(params)
        for key in self.keys:
            self.table.put(LeaseItem(key, OWNER, expires, 1))
        self.fleet = LeaseFleet(params, manager, owner=OWNER, now=start, rng=fleet_rng(seed))
        self.fault_rng = random.Random(f"chaos-dynamo/lease-sim/faults/{seed}")
        self.outages = [(start + w.start, start + w.end) for w in scenario.outages]
        self.slow = [(start + w.start, start + w.end, st) for w, st in scenario.slow]
        self.events: list[tuple[float, int, int, Any]] = []
        self.seq = 0
        self.busy = 0
        self.slots = server.slots
        self.base_latency = server.base_latency
        self.waiting: deque[Op] = deque()  # requests waiting for a slot, in arrival order
        # op id -> its client deadline, while the client still waits for the answer
        self.pending: dict[int, float] = {}
        self.hash = hashlib.sha256()
        self.trace_times = array("d")
        self.trace_text: list[str] = []
        self.delivered = 0
        self.served = 0
        self.wasted = 0
        self.stalls = 0
        self.samples: list[timeline.Sample] = []

    def push(self, t: float, kind: int, payload: Any) -> None:
        self.seq += 1
        heapq.heappush(self.events, (t, kind, self.seq, payload))

    def service_time(self, t: float) -> float:
        for a, b, st in self.slow:
            if a <= t < b:
                return st
        return self.server.service_time

    def send(self, ops: list[Op], now: float) -> None:
        if not ops:
            return
        if self.outages and _in(self.outages, now):
            for op in ops:
                self.push(now + DNS_DELAY, _EV_DELIVER,
                          (op, Result(op.id, _ERROR, detail="dns")))
            return
        slots = self.slots
        pending = self.pending
        for op in ops:
            deadline = now + op.timeout
            pending[op.id] = deadline
            if slots is None or self.busy < slots:
                self.busy += 1
                if self._start_service(op, now) > deadline:
                    self.push(deadline, _EV_TIMEOUT, op)
            else:
                self.waiting.append(op)
                self.push(deadline, _EV_TIMEOUT, op)

    def _start_service(self, op: Op, now: float) -> float:
        service = self.service_time(now) if self.slow else self.server.service_time
        finish = now + service + self.base_latency
        self.seq += 1
        heapq.heappush(self.events, (finish, _EV_FINISH, self.seq, op))
        return finish

    def trace(self, now: float, text: str) -> None:
        """One trace event: its time (as a double) and its text go into the digest."""
        self.trace_times.append(now - self.start)
        self.trace_text.append(text)
        if len(self.trace_text) >= 65536:
            self.flush_trace()

    def flush_trace(self) -> None:
        self.hash.update(self.trace_times.tobytes())
        self.hash.update("\n".join(self.trace_text).encode())
        self.trace_times = array("d")
        self.trace_text = []

    def deliver(self, op: Op, result: Result, now: float) -> None:
        self.delivered += 1
        # (inlined trace(); str + StrEnum concatenates the plain text, cheaper than format)
        self.trace_times.append(now - self.start)
        text = self.trace_text
        text.append(op.kind + " " + op.key + " " + result.outcome)
        if len(text) >= 65536:
            self.flush_trace()
        ops = self.fleet.complete(result, now)
        if ops:
            self.send(ops, now)

    def finish(self, op: Op, now: float) -> None:
        self.served += 1
        result = self.table.apply(op)
        if self.waiting:
            self._start_service(self.waiting.popleft(), now)  # the slot passes on, FIFO
        else:
            self.busy -= 1
        if self.pending.pop(op.id, None) is None:
            self.wasted += 1  # the client gave up; the write landed anyway
            return
        self.deliver(op, result, now)

    def timeout(self, op: Op, now: float) -> None:
        if self.pending.pop(op.id, None) is None:
            return  # answered in time
        self.deliver(op, Result(op.id, _TIMEOUT), now)

    def burst(self, count: int, now: float) -> None:
        live = [key for key in self.keys
                if (item := self.table.get(key)) is not None and item.expires_at > now]
        for key in self.fault_rng.sample(live, min(count, len(live))):
            item = self.table.get(key)
            assert item is not None
            self.table.put(LeaseItem(key, item.owner, now - 1.0, item.version + 1))
        self.trace(now, f"burst {count}")

    def sample(self, now: float) -> None:
        live = self.table.live_at(now)
        total = len(self.table)
        self.samples.append(timeline.Sample(
            t=now, total=total, live=live, expired=total - live,
            version_sum=self.table.version_sum, attempts=self.fleet.ops_sent))

    def run(self) -> None:
        scenario = self.scenario
        for at, count in scenario.expire_bursts:
            self.push(self.start + at, _EV_BURST, count)
        self.push(self.start, _EV_SAMPLE, 0)
        events = self.events
        fleet = self.fleet
        clock = self.start  # virtual time: never goes back
        last_poll = -math.inf
        acted = True  # something happened since the last poll
        while True:
            wake = fleet.next_wake()
            if wake < clock:
                wake = clock
            if wake <= last_poll and not acted:
                # The fleet asked to be woken at a time it has already been polled at,
                # with nothing new since: nudge virtual time forward instead of spinning.
                self.stalls += 1
                wake = last_poll + 1e-6
            t_event = events[0][0] if events else math.inf
            if t_event <= wake:
                if t_event > self.end:
                    break
                t, kind, _, payload = heapq.heappop(events)
                clock = t
                acted = True
                if kind == _EV_FINISH:
                    self.finish(payload, t)
                elif kind == _EV_DELIVER:
                    self.deliver(payload[0], payload[1], t)
                elif kind == _EV_TIMEOUT:
                    self.timeout(payload, t)
                elif kind == _EV_BURST:
                    self.burst(payload, t)
                else:
                    self.sample(t)
                    following = self.start + (payload + 1) * scenario.sample_every
                    if following <= self.end + 1e-9:
                        self.push(following, _EV_SAMPLE, payload + 1)
            else:
                if wake > self.end:
                    break
                clock = last_poll = wake
                acted = False
                ops = fleet.poll(wake)
                if ops:
                    acted = True
                    self.send(ops, wake)


def simulate(params: FleetParams, manager: Manager, server: Server, scenario: Scenario, *,
             seed: int, start: float = 1_700_000_000.0) -> SimResult:
    """Run ``params``' fleet under ``manager`` against ``server`` through ``scenario``.

    Args:
        params: the fleet (validated).
        manager: a fresh manager (it keeps state: build a new one per run; its random
            source should be seeded for the run to be replayable).
        server: the store's capacity.
        scenario: duration and faults.
        seed: seeds the fleet's renewal phases and the fault choices.
        start: epoch seconds of the run's start (sample times are absolute).

    Raises:
        ConfigError: a bad field of params, server or scenario.
    """
    validate(params)
    validate_model(server, scenario)
    run = _Run(params, manager, server, scenario, seed, start)
    run.run()
    run.flush_trace()
    return SimResult(samples=run.samples, markers=_markers(scenario, start),
                     stats=run.fleet.stats(), manager=manager.describe(),
                     digest=run.hash.hexdigest(), served=run.served, wasted=run.wasted,
                     events=run.delivered, stalls=run.stalls)
