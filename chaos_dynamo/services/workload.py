"""The reference services' open-loop workload, their health and their Prometheus metrics.

Open loop: logical calls arrive on a fixed schedule (call ``k`` is due at ``start + k / rate``)
whatever the service's state, as user requests do; a slow or failing dependency makes the
queue grow, it does not slow the arrivals. :class:`OpenLoop` emits the calls,
:class:`Driver` queues them for ``concurrency`` worker threads (shedding when a bounded
queue is full), :class:`Metrics` counts what happened, :class:`StatusServer` serves
``GET /health`` and ``GET /metrics`` on a loopback address.

Nothing here knows boto3: a worker runs an *executor*, a function that performs one
logical call and raises if it failed (see :mod:`chaos_dynamo.services.reference`).
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import math
import os
import queue
import random
import re
import threading
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from chaos_dynamo.clock import Clock
from chaos_dynamo.errors import ConfigError

__all__ = [
    "HEALTH_THRESHOLD",
    "HEALTH_WINDOW",
    "Call",
    "CallPlan",
    "Driver",
    "Metrics",
    "MetricsSnapshot",
    "OpenLoop",
    "PROMETHEUS_TEXT",
    "RouteServer",
    "StatusServer",
    "Stopped",
    "http_arg",
    "parse_http_address",
    "render_metrics",
    "seed_arg",
    "table_arg",
    "write_ready_file",
]

HEALTH_WINDOW = 3.0
"""Seconds of completed calls /health judges."""
HEALTH_THRESHOLD = 0.9
"""Fraction of those calls that must have succeeded (shed calls count as failed)."""

Executor = Callable[["Call"], None]
"""Performs one logical call; returns when it succeeded, raises when it failed."""


class Stopped(Exception):
    """The service is shutting down: the call was abandoned (counted as nothing)."""


@dataclass(frozen=True)
class Call:
    """One logical call.

    Attributes:
        index: its number in the schedule, from 0.
        operation: ``PutItem`` or ``GetItem``.
        key: the item's partition key.
        scheduled: the monotonic time it was due (latency is measured from here).
    """

    index: int
    operation: str
    key: str
    scheduled: float


class CallPlan:
    """The seeded sequence of calls: a PutItem on a random key, then a GetItem of that key.

    Every pair's key is its own (``k<random>-<pair number>``), so no two logical calls send
    the same request: the call log joins a failed call with a repetition of its request
    into one logical call (an application's retry), and distinct calls must never be taken
    for one.

    Args:
        seed: the same seed gives the same keys in the same order.
        keys: how many distinct random prefixes are drawn from (``k0`` ... ``k<keys-1>``).
    """

    def __init__(self, seed: int, keys: int = 1000) -> None:
        self._rng = random.Random(seed)
        self._keys = keys
        self._key = ""

    def call(self, index: int, scheduled: float) -> Call:
        """The call at ``index``; indexes must be asked for in order 0, 1, 2..."""
        if index % 2 == 0:
            self._key = f"k{self._rng.randrange(self._keys)}-{index // 2}"
            return Call(index, "PutItem", self._key, scheduled)
        return Call(index, "GetItem", self._key, scheduled)


class OpenLoop:
    """Emits logical calls at ``rate`` per second, against the start time (no drift).

    Call ``k`` is due at ``start + k / rate``; when the loop wakes late (a loaded machine),
    every call already due is emitted at once, so the count by time ``t`` is always
    ``floor(t * rate) + 1``.

    Args:
        rate: logical calls per second (> 0).
        submit: receives each call (e.g. :meth:`Driver.submit`); must not block.
        plan: what each call is.
        clock: ``monotonic`` and ``sleep``; a service passes a clock whose sleep returns
            early when ``stop`` is set, so a stop is seen at once.
        stop: set to end the loop.
        duration: end after this many seconds (None: until ``stop``).
    """

    def __init__(self, rate: float, submit: Callable[[Call], object], *, plan: CallPlan,
                 clock: Clock, stop: threading.Event, duration: float | None = None) -> None:
        if not (rate > 0 and math.isfinite(rate)):
            raise ValueError(f"rate must be a positive number, not {rate!r}")
        self.rate = rate
        self.submit = submit
        self.plan = plan
        self.clock = clock
        self.stop = stop
        self.duration = duration
        self.emitted = 0

    def run(self) -> int:
        """Emit calls until stopped or ``duration`` has passed; return how many."""
        start = self.clock.monotonic()
        end = math.inf if self.duration is None else start + self.duration
        while not self.stop.is_set():
            due = start + self.emitted / self.rate
            if due >= end:
                break
            delay = due - self.clock.monotonic()
            if delay > 0:
                self.clock.sleep(delay)
                continue
            self.submit(self.plan.call(self.emitted, due))
            self.emitted += 1
        return self.emitted


@dataclass(frozen=True)
class MetricsSnapshot:
    kind: str
    scheduled: int
    ok: int
    error: int
    shed: int
    attempts: int
    seconds_sum: float
    seconds_count: int
    inflight: int
    queue_depth: int
    breaker_open: bool


class Metrics:
    """The service's counters, and its health over the last ``window`` seconds.

    Thread-safe. ``queue_depth`` and ``breaker_open`` are read when a snapshot is taken.
    """

    def __init__(self, kind: str, clock: Clock, *, window: float = HEALTH_WINDOW,
                 threshold: float = HEALTH_THRESHOLD,
                 queue_depth: Callable[[], int] = lambda: 0,
                 breaker_open: Callable[[], bool] = lambda: False) -> None:
        self.kind = kind
        self.clock = clock
        self.window = window
        self.threshold = threshold
        self.queue_depth = queue_depth
        self.breaker_open = breaker_open
        self._lock = threading.Lock()
        self._scheduled = 0
        self._ok = 0
        self._error = 0
        self._shed = 0
        self._attempts = 0
        self._seconds_sum = 0.0
        self._seconds_count = 0
        self._inflight = 0
        self._recent: deque[tuple[float, bool]] = deque()

    def record_scheduled(self) -> None:
        with self._lock:
            self._scheduled += 1

    def record_attempt(self, n: int = 1) -> None:
        with self._lock:
            self._attempts += n

    def record_started(self) -> None:
        with self._lock:
            self._inflight += 1

    def record_shed(self) -> None:
        """A call refused because the queue was full: it failed at once, with no attempt."""
        with self._lock:
            self._shed += 1
            self._complete(False)

    def record_finished(self, ok: bool, seconds: float) -> None:
        """A call that had started has ended (``seconds`` since it was due)."""
        with self._lock:
            self._inflight -= 1
            if ok:
                self._ok += 1
            else:
                self._error += 1
            self._seconds_sum += max(0.0, seconds)
            self._seconds_count += 1
            self._complete(ok)

    def record_abandoned(self) -> None:
        """A started call given up at shutdown: neither ok nor error."""
        with self._lock:
            self._inflight -= 1

    def _complete(self, ok: bool) -> None:
        now = self.clock.monotonic()
        self._recent.append((now, ok))
        self._prune(now)

    def _prune(self, now: float) -> None:
        while self._recent and now - self._recent[0][0] > self.window:
            self._recent.popleft()

    def snapshot(self) -> MetricsSnapshot:
        depth = self.queue_depth()
        breaker = self.breaker_open()
        with self._lock:
            return MetricsSnapshot(self.kind, self._scheduled, self._ok, self._error, self._shed,
                                   self._attempts, self._seconds_sum, self._seconds_count,
                                   self._inflight, depth, breaker)

    def health(self) -> tuple[int, dict[str, Any]]:
        """``(200, body)`` when healthy, else ``(503, body)``; ``body["healthy"]`` says which.

        Healthy: at least one call completed in the last ``window`` seconds and at least
        ``threshold`` of those succeeded. Before any call has completed: 503, "starting".
        """
        snap = self.snapshot()
        with self._lock:
            now = self.clock.monotonic()
            self._prune(now)
            completed = len(self._recent)
            ok = sum(1 for _, good in self._recent if good)
            ever = self._ok + self._error + self._shed
        body: dict[str, Any] = {
            "kind": self.kind, "window_seconds": self.window, "threshold": self.threshold,
            "completed": completed, "ok": ok, "failed": completed - ok,
            "success_ratio": round(ok / completed, 4) if completed else None,
            "inflight": snap.inflight, "queue_depth": snap.queue_depth,
            "breaker_open": snap.breaker_open,
        }
        if ever == 0:
            return 503, {"healthy": False, "reason": "starting", **body}
        if completed == 0:
            return 503, {"healthy": False,
                         "reason": f"no call completed in the last {self.window:g} s", **body}
        if ok / completed < self.threshold:
            return 503, {"healthy": False,
                         "reason": f"{ok} of {completed} calls succeeded in the last "
                                   f"{self.window:g} s (below {self.threshold:.0%})", **body}
        return 200, {"healthy": True, **body}


_METRICS = (
    ("calls_total", "counter", "Logical calls completed, by outcome (shed: refused at once "
     "because the work queue was full)."),
    ("scheduled_total", "counter", "Logical calls the open-loop schedule emitted."),
    ("attempts_total", "counter", "Attempts (HTTP requests sent or tried, including those "
     "that failed to resolve or connect) made for logical calls."),
    ("call_seconds", "summary", "Seconds from when a logical call was due to when it ended "
     "(queueing included; shed calls excluded)."),
    ("inflight", "gauge", "Logical calls being worked on."),
    ("queue_depth", "gauge", "Logical calls waiting for a worker."),
    ("breaker_open", "gauge", "1 while the circuit breaker is open or half-open, else 0."),
)
PREFIX = "chaos_dynamo_service_"


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def render_metrics(snap: MetricsSnapshot) -> str:
    """The snapshot in the Prometheus text exposition format (version 0.0.4)."""
    values: dict[str, list[tuple[str, float]]] = {
        "calls_total": [('{outcome="ok"}', snap.ok), ('{outcome="error"}', snap.error),
                        ('{outcome="shed"}', snap.shed)],
        "scheduled_total": [("", snap.scheduled)],
        "attempts_total": [("", snap.attempts)],
        "call_seconds": [("_sum", snap.seconds_sum), ("_count", snap.seconds_count)],
        "inflight": [("", snap.inflight)],
        "queue_depth": [("", snap.queue_depth)],
        "breaker_open": [("", 1 if snap.breaker_open else 0)],
    }
    lines: list[str] = []
    for name, kind, help_text in _METRICS:
        lines.append(f"# HELP {PREFIX}{name} {help_text}")
        lines.append(f"# TYPE {PREFIX}{name} {kind}")
        for suffix, value in values[name]:
            lines.append(f"{PREFIX}{name}{suffix} {_number(value)}")
    return "\n".join(lines) + "\n"


class Driver:
    """A work queue and ``concurrency`` daemon worker threads running ``execute``.

    Args:
        execute: performs one call (raises on failure, :class:`Stopped` at shutdown).
        metrics: where outcomes are counted.
        concurrency: worker threads.
        capacity: queue capacity; None for an unbounded queue. When full, a call is shed.
        clock: ``monotonic`` for latencies.
        stop: set to make the workers exit (after the call each is running, if any).
    """

    def __init__(self, execute: Executor, metrics: Metrics, *, concurrency: int,
                 capacity: int | None, clock: Clock, stop: threading.Event) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be >= 1")
        self.execute = execute
        self.metrics = metrics
        self.concurrency = concurrency
        self.clock = clock
        self.stop = stop
        self.queue: queue.Queue[Call] = queue.Queue(maxsize=capacity or 0)
        self._threads: list[threading.Thread] = []

    def depth(self) -> int:
        return self.queue.qsize()

    def submit(self, call: Call) -> bool:
        """Queue ``call``; False when the queue was full and the call was shed."""
        self.metrics.record_scheduled()
        try:
            self.queue.put_nowait(call)
        except queue.Full:
            self.metrics.record_shed()
            return False
        return True

    def start(self) -> None:
        for n in range(self.concurrency):
            thread = threading.Thread(target=self._work, name=f"worker-{n}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def _work(self) -> None:
        while not self.stop.is_set():
            try:
                call = self.queue.get(timeout=0.25)
            except queue.Empty:
                continue
            if self.stop.is_set():
                return
            self.metrics.record_started()
            try:
                self.execute(call)
            except Stopped:
                self.metrics.record_abandoned()
                return
            except Exception:
                self.metrics.record_finished(False, self.clock.monotonic() - call.scheduled)
            else:
                self.metrics.record_finished(True, self.clock.monotonic() - call.scheduled)

    def join(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds (real time) for the workers; True if all ended."""
        deadline = self.clock.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - self.clock.monotonic()))
        return not any(thread.is_alive() for thread in self._threads)


def parse_http_address(text: str) -> tuple[str, int]:
    """``127.0.0.1:8080`` -> ("127.0.0.1", 8080); ``localhost`` means 127.0.0.1.

    Raises:
        ConfigError: naming ``--http``, when it is not HOST:PORT or the host is not an IPv4
            loopback address (the service serves its health on loopback only).
    """
    host, sep, port_text = text.strip().rpartition(":")
    if not sep or not host or not port_text.isdigit() or int(port_text) > 65535:
        raise ConfigError("--http", f"{text!r} is not HOST:PORT",
                          "give a loopback address and a port, e.g. 127.0.0.1:0 (0: any free port)")
    if host == "localhost":
        host = "127.0.0.1"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    if address is None or address.version != 4 or not address.is_loopback:
        raise ConfigError("--http", f"{host!r} is not an IPv4 loopback address",
                          "the service serves /health and /metrics on 127.0.0.x only: "
                          "give e.g. 127.0.0.1:0")
    return host, int(port_text)


_TABLE_NAME = re.compile(r"^[A-Za-z0-9_.-]{3,255}$")


def seed_arg(text: str) -> int:
    """argparse type of ``--seed``: an integer."""
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None


def table_arg(text: str) -> str:
    """argparse type of ``--table``: a DynamoDB table name."""
    if not _TABLE_NAME.match(text):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a DynamoDB table name (3-255 of A-Z a-z 0-9 _ . -)")
    return text


def http_arg(text: str) -> tuple[str, int]:
    """argparse type of ``--http``: a loopback HOST:PORT (see :func:`parse_http_address`)."""
    try:
        return parse_http_address(text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(f"{exc.problem}; {exc.fix}") from None


def write_ready_file(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` as JSON atomically, so a reader never sees half a file."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(data, sort_keys=True), encoding="utf-8")
    os.replace(tmp, path)


Route = Callable[[], tuple[int, str, str]]
"""A GET handler: () -> (status, content type, body)."""

PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8"


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], routes: Mapping[str, Route]) -> None:
        self.routes = routes
        super().__init__(address, _Handler)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802 - stdlib name
        path = self.path.split("?", 1)[0]
        route = self.server.routes.get(path)
        if route is None:
            known = " or ".join(sorted(self.server.routes))
            status, content_type, text = 404, "application/json", json.dumps(
                {"error": f"no such path {path}; try {known}"}) + "\n"
        else:
            status, content_type, text = route()
        data = text.encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass


class RouteServer:
    """GET routes (``/health``, ``/metrics``...) on a loopback address, in a daemon thread."""

    def __init__(self, host: str, port: int, routes: Mapping[str, Route]) -> None:
        parse_http_address(f"{host}:{port}")  # loopback only
        self._server = _Server((host, port), routes)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1},
                                         name="status-http", daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        if isinstance(host, bytes):
            host = host.decode()
        return f"http://{host}:{port}"

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        if self._thread.is_alive():
            self._server.shutdown()
        self._server.server_close()


class StatusServer(RouteServer):
    """``GET /health`` and ``GET /metrics`` of a workload's :class:`Metrics`."""

    def __init__(self, host: str, port: int, metrics: Metrics) -> None:
        def health() -> tuple[int, str, str]:
            status, body = metrics.health()
            return status, "application/json", json.dumps(body, sort_keys=True) + "\n"

        def prometheus() -> tuple[int, str, str]:
            return 200, PROMETHEUS_TEXT, render_metrics(metrics.snapshot())

        super().__init__(host, port, {"/health": health, "/metrics": prometheus})
