"""What an LB knows: its traffic (cumulative counters and the bounded log of
:class:`RequestRecord`), its per-request fault knobs (latency, health, seeded errors), its
``refuse_for`` window and its per-connection ``intermittent`` knob.

No sockets and no clock reads here: the LB stamps records and deadlines itself.
"""

from __future__ import annotations

import itertools
import random
import threading
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from chaos_dynamo.lbfleet._responses import ERROR_CODES


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """One request an LB read in full (health checks excluded).

    Attributes:
        time: wall-clock seconds (the LB's clock ``now``) when the request had been read.
        lb: name of the LB that answered.
        client: the client's IP address; client_port its source port (one per connection).
        operation: the DynamoDB operation from ``X-Amz-Target``, or ``"unknown"``.
        status: the HTTP status the LB answered; 0 when it went down before answering.
        latency: seconds from reading the request to having the response ready (the LB's
            clock ``monotonic``): injected latency plus the upstream's time.
        user_agent: the ``User-Agent`` header, kept whole: the SDK app id in it
            (``app/<id>``) is how a request is attributed to a service.
        service: the ``X-Chaos-Dynamo-Service`` header (an explicit service name), or ``""``.
    """

    time: float
    lb: str
    client: str
    client_port: int
    operation: str
    status: int
    latency: float
    user_agent: str
    service: str = ""


def _operation(target: str) -> str:
    """``DynamoDB_20120810.GetItem`` -> ``GetItem``; no target -> ``unknown``."""
    operation = target.rpartition(".")[2].strip()
    return operation or "unknown"


class _Traffic:
    """Cumulative counters and the bounded request log, under one lock.

    They change together, so a reader never sees a request in one and not the other; the
    log may forget old records, the counters never do.
    """

    _EVENTS = (
        "connections_accepted",
        "connections_aged_out",
        "connections_closed",
        "upstream_errors",
        "injected_errors",
        "dropped",
        "health_checks",
        "bad_requests",
        "connections_refused_intermittent",
        "connections_blackholed",
    )

    def __init__(self, log_limit: int) -> None:
        self._lock = threading.Lock()
        self._log: deque[RequestRecord] = deque(maxlen=log_limit)
        self._requests = 0
        self._by_client: Counter[str] = Counter()
        self._by_operation: Counter[str] = Counter()
        self._by_status: Counter[str] = Counter()
        self._events: Counter[str] = Counter(dict.fromkeys(self._EVENTS, 0))

    def add_request(self, record: RequestRecord, event: str | None = None) -> None:
        """Count one request (and, optionally, one event such as ``upstream_errors``)."""
        with self._lock:
            self._requests += 1
            self._by_client[record.client] += 1
            self._by_operation[record.operation] += 1
            self._by_status[str(record.status)] += 1
            if event is not None:
                self._events[event] += 1
            self._log.append(record)

    def add_event(self, event: str) -> None:
        with self._lock:
            self._events[event] += 1

    def snapshot(self) -> dict[str, Any]:
        """All counters as plain JSON-serializable dicts."""
        with self._lock:
            return {
                "requests": self._requests,
                "by_client": dict(self._by_client),
                "by_operation": dict(self._by_operation),
                "by_status": dict(self._by_status),
                **dict(self._events),
            }

    def records(self) -> list[RequestRecord]:
        with self._lock:
            return list(self._log)


def _select_records(
    records: list[RequestRecord], since: float | None, client: str | None, operation: str | None
) -> list[RequestRecord]:
    """Records at or after ``since`` from ``client`` for ``operation`` (None = any), by time."""
    chosen = [
        r
        for r in records
        if (since is None or r.time >= since)
        and (client is None or r.client == client)
        and (operation is None or r.operation == operation)
    ]
    return sorted(chosen, key=lambda r: r.time)


def _sum_counts(documents: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Add counter documents key by key (nested dicts recursively)."""
    total: dict[str, Any] = {}
    for document in documents:
        for key, value in document.items():
            if isinstance(value, dict):
                total[key] = _sum_counts([total.get(key, {}), value])
            else:
                total[key] = total.get(key, 0) + value
    return total


class _Faults:
    """The per-request fault knobs (latency, injected errors, health), thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self._latency = 0.0
            self._unhealthy = False
            self._error_rate = 0.0
            self._error_code = "InternalServerError"
            self._error_seed = 0
            self._rng = random.Random(0)

    def set_latency(self, seconds: float) -> None:
        with self._lock:
            self._latency = seconds

    def set_unhealthy(self, unhealthy: bool) -> None:
        with self._lock:
            self._unhealthy = unhealthy

    def set_error_rate(self, rate: float, code: str, seed: int) -> None:
        """``code`` is a key of ``_responses.ERROR_CODES`` (the LB checks it)."""
        with self._lock:
            self._error_rate, self._error_code, self._error_seed = rate, code, seed
            self._rng = random.Random(seed)

    def latency(self) -> float:
        with self._lock:
            return self._latency

    def unhealthy(self) -> bool:
        with self._lock:
            return self._unhealthy

    def draw_error(self) -> tuple[str, int] | None:
        """(error code, sequence number) of an error to inject into this request, or None.

        The seeded generator is drawn once per DynamoDB request, in arrival order, so a
        sequential client sees the same statuses every run.
        """
        with self._lock:
            if self._error_rate <= 0 or self._rng.random() >= self._error_rate:
                return None
            return self._error_code, next(self._ids)

    def describe(self) -> dict[str, Any]:
        with self._lock:
            return {
                "latency": self._latency,
                "unhealthy": self._unhealthy,
                "error_rate": self._error_rate,
                "error_status": ERROR_CODES[self._error_code],
                "error_code": self._error_code,
                "error_seed": self._error_seed,
            }


@dataclass
class _Refusal:
    """A ``refuse_for`` window: the wall-time timer thread and its bookkeeping deadline."""

    until: float
    cancelled: threading.Event
    thread: threading.Thread | None = None


INTERMITTENT_MODES = ("refuse", "blackhole")
"""What the ``intermittent`` knob does to a connection it picks: reset it at once, or hold
it open without ever reading or answering."""


@dataclass(frozen=True, slots=True)
class Intermittent:
    """The ``intermittent`` knob, checked (``_validate._intermittent``).

    Attributes:
        rate: the fraction of new connections picked, 0.0..1.0.
        mode: one of :data:`INTERMITTENT_MODES`.
        seconds: how long the knob stays on; None: until cleared.
        seed: with the LB's name, seeds the draw (``random.Random(f"{seed}:{name}")``).
    """

    rate: float
    mode: str = "refuse"
    seconds: float | None = None
    seed: int = 0


class _IntermittentWindow:
    """One setting of the ``intermittent`` knob: its seeded draw and its timer.

    The generator is drawn once per accepted connection, in accept order, so the same seed
    and the same connection order pick the same connections every run. Not thread-safe:
    the LB draws under its own lock.
    """

    def __init__(self, knob: Intermittent, lb_name: str, until: float | None) -> None:
        self.knob = knob
        self.until = until
        self.cancelled = threading.Event()
        self.thread: threading.Thread | None = None
        self._rng = random.Random(f"{knob.seed}:{lb_name}")

    def draw(self) -> bool:
        """True when the next connection is to be refused or blackholed."""
        return self._rng.random() < self.knob.rate

    def describe(self, now: float) -> dict[str, Any]:
        left = None if self.until is None else max(0.0, self.until - now)
        return {"rate": self.knob.rate, "mode": self.knob.mode, "seconds_left": left,
                "seed": self.knob.seed}
