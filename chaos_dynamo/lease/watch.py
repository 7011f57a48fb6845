"""The lease watcher: samples the user's lease table into a timeline file, on a thread.

Every ``interval`` seconds it scans the table (:mod:`chaos_dynamo.lease.table`) and appends
one :class:`~chaos_dynamo.lease.timeline.Sample` to ``<lab state dir>/leases/<table>.jsonl``
(truncated when the watcher starts). A sample also carries:

- ``attempts``: the requests the lease-holding service had sent to DynamoDB so far,
  counted from the lab's LB request log (``GET /_chaos_dynamo/lb/log?since=T``) and
  attributed to the service by :mod:`chaos_dynamo.services.attribution` (its
  ``X-Chaos-Dynamo-Service`` header, the SDK app id in its User-Agent, or its recorded
  source address); None when no service is named.
- ``double_owned``: takeovers of live leases and version regressions seen so far
  (:class:`chaos_dynamo.lease.measure.DoubleOwnerTracker`).

The LB log is fetched incrementally by time. An LB logs a request when it has answered
it, stamped with the time it arrived, so a slow request shows up late with an early
time: each fetch reaches back over an overlap (at least 10 s, and twice the longer of
the slowest latency seen and the longest queue wait of the lab's DynamoDB capacity seen,
``waiting x service_time``, which grows before the slow requests are logged), and
records already counted are recognised and skipped.

A scan that takes long (a big table) stretches the interval to at least twice the scan
time, so the watcher never spends more than half its time scanning. A failed scan is
logged once (until scans succeed again) and sampling goes on.

Next to the timeline, ``<table>.watcher.json`` says who is watching: the service whose
requests are the attempts, the interval, and the last failed scan's error (so a probe
that finds the timeline gone stale can say why). Each watcher of a file holds a
generation number: once a newer watcher has started on the same file, an older thread
(one that did not stop in time) never writes to it again.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chaos_dynamo.clock import REAL_CLOCK, Clock
from chaos_dynamo.errors import ChaosDynamoError, ConfigError
from chaos_dynamo.lab.state import LabInfo
from chaos_dynamo.lease import measure, timeline
from chaos_dynamo.lease.measure import DoubleOwnerTracker
from chaos_dynamo.lease.schema import LeaseSchema
from chaos_dynamo.lease.table import LeaseReader
from chaos_dynamo.lease.timeline import Sample
from chaos_dynamo.services import registry
from chaos_dynamo.services.attribution import request_service

logger = logging.getLogger("chaostoolkit")

DEFAULT_INTERVAL = 1.0
MIN_OVERLAP = 10.0
"""Seconds each LB log fetch reaches back, at least (requests logged late)."""


def timeline_path(table: str, state: str | Path | None = None) -> Path:
    """``<lab state dir>/leases/<table>.jsonl``: where the watcher of ``table`` writes."""
    return registry.state_dir(state) / "leases" / f"{table}.jsonl"


def status_path(path: str | Path) -> Path:
    """The watcher's status file next to the timeline ``path``: ``<table>.watcher.json``."""
    path = Path(path)
    return path.with_name(f"{path.stem}.watcher.json")


def read_status(path: str | Path) -> dict[str, Any] | None:
    """The status the watcher of the timeline ``path`` last wrote, or None."""
    try:
        data = json.loads(status_path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


# --- the service's requests, from the lab's LB log -------------------------------------


@dataclass(frozen=True)
class LbRecord:
    """What the attempt counter reads of an LB request record."""

    time: float
    lb: str
    client: str
    client_port: int
    latency: float
    user_agent: str = ""
    service: str = ""


LbLog = Callable[[float], list[LbRecord]]
"""Returns the LB records at or after a time (the lab's API; a fake in tests)."""
QueueWait = Callable[[], float]
"""Returns the seconds a request arriving now would wait for DynamoDB's capacity."""


def http_lb_log(info: LabInfo) -> LbLog:
    """The lab's ``/_chaos_dynamo/lb/log`` as an :data:`LbLog`."""
    from chaos_dynamo.endpoint import _lab

    api = info.api_url.rstrip("/")
    lbs = info.scope_lbs  # in a namespace, its load balancers' requests only

    def fetch(since: float) -> list[LbRecord]:
        return [LbRecord(time=float(r["time"]), lb=str(r.get("lb", "")), client=str(r.get("client", "")),
                         client_port=int(r.get("client_port", 0)), latency=float(r.get("latency", 0.0)),
                         user_agent=str(r.get("user_agent") or ""), service=str(r.get("service") or ""))
                for r in _lab.http_json(f"{api}/_chaos_dynamo/lb/log?since={since!r}")
                if lbs is None or str(r.get("lb", "")) in lbs]

    return fetch


def http_queue_wait(info: LabInfo) -> QueueWait:
    """``waiting x service_time`` from the lab's ``/_chaos_dynamo/dynamodb/capacity``
    (0 when the lab cannot say: the overlap then rests on the latencies seen)."""
    from chaos_dynamo.endpoint import _lab

    url = f"{info.api_url.rstrip('/')}/_chaos_dynamo/dynamodb/capacity"

    def wait() -> float:
        try:
            capacity = _lab.http_json(url, timeout=2.0)
            return float(capacity.get("waiting") or 0) * float(capacity.get("service_time") or 0.0)
        except (ChaosDynamoError, AttributeError, TypeError, ValueError):
            return 0.0

    return wait


def registry_addresses(state: str | Path | None) -> Callable[[], Mapping[str, str]]:
    """Source address -> service name, re-read from the service registry on each call."""
    return lambda: registry.addresses_by_service(registry.list_records(state))


class AttemptCounter:
    """The cumulative number of LB requests attributed to ``service`` since ``start``."""

    def __init__(self, service: str, fetch: LbLog, addresses: Callable[[], Mapping[str, str]],
                 start: float, queue_wait: QueueWait | None = None) -> None:
        self.service = service
        self._fetch = fetch
        self._addresses = addresses
        self._queue_wait = queue_wait
        self._start = start
        self._newest = start
        self._max_latency = 0.0
        self._seen: dict[tuple[float, str, str, int], float] = {}
        self._count = 0

    @property
    def overlap(self) -> float:
        return max(MIN_OVERLAP, 2 * self._max_latency + 1.0)

    def count(self, until: float) -> int:
        """Requests of the service that arrived from ``start`` to ``until``, as logged by now."""
        if self._queue_wait is not None:
            # Requests queued now are logged only once served, stamped with their arrival.
            self._max_latency = max(self._max_latency, self._queue_wait())
        since = max(self._start, self._newest - self.overlap)
        by_address = self._addresses()
        for record in self._fetch(since):
            if record.time < self._start or record.time > until:
                continue  # later ones are counted by a later call
            key = (record.time, record.lb, record.client, record.client_port)
            if key in self._seen:
                continue
            self._seen[key] = record.time
            self._newest = max(self._newest, record.time)
            self._max_latency = max(self._max_latency, record.latency)
            if request_service(record, by_address) == self.service:
                self._count += 1
        horizon = self._newest - self.overlap
        if len(self._seen) > 1000:
            self._seen = {k: t for k, t in self._seen.items() if t >= horizon}
        return self._count


# --- one sample ---------------------------------------------------------------------------


class Sampler:
    """Scans the table and makes one :class:`Sample` (with attempts and double owners)."""

    def __init__(self, reader: LeaseReader, attempts: AttemptCounter | None = None, *,
                 versioned: bool = True, clock: Clock = REAL_CLOCK) -> None:
        self.reader = reader
        self.attempts = attempts
        self.tracker = DoubleOwnerTracker(versioned)
        self.clock = clock

    def sample(self) -> tuple[Sample, float]:
        """(the sample, seconds the scan took); errors of the scan propagate."""
        began = self.clock.monotonic()
        pages = self.reader.pages()
        took = self.clock.monotonic() - began
        t = max(page.t for page in pages)
        double = self.tracker.feed_pages(pages)
        attempts = self.attempts.count(t) if self.attempts is not None else None
        return measure.sample_of_pages(pages, attempts, double), took


def make_attempts(service: str, lab: LabInfo | None, state: str | Path | None, start: float,
                  lb_log: LbLog | None = None, queue_wait: QueueWait | None = None) -> AttemptCounter | None:
    """An attempt counter for ``service`` ("" -> None: attempts unknown).

    Raises:
        ConfigError: a service is named but there is no lab to read the LB log from.
    """
    if not service:
        return None
    if lb_log is None:
        if lab is None:
            raise ConfigError("service", f"counting the requests of {service!r} needs the lab's LB log "
                              "and no lab is running", "start the lab, or give service \"\"")
        lb_log = http_lb_log(lab)
        queue_wait = queue_wait or http_queue_wait(lab)
    return AttemptCounter(service, lb_log, registry_addresses(state), start, queue_wait)


# --- generations: one writer per timeline file ---------------------------------------------

_generations: dict[Path, int] = {}
_generations_lock = threading.Lock()


# --- the watcher thread ------------------------------------------------------------------


Waiter = Callable[[threading.Event, float], bool]
"""Blocks up to some seconds or until the event is set; returns whether it is set."""


def _event_wait(event: threading.Event, seconds: float) -> bool:
    return event.wait(seconds)


class Watcher:
    """Samples ``reader`` every ``interval`` seconds into the timeline file ``path``.

    Args:
        schema: the table's schema (its name for logs; a version-less table tracks owners only).
        reader: what scans the table (give it bounded timeouts: see
            :data:`chaos_dynamo.lease.table.WATCHER_LIMITS`).
        path: the timeline file (truncated by :meth:`start`).
        interval: seconds between samples (stretched to twice a slow scan).
        service: whose LB requests are the attempts ("" = unknown).
        lab: the lab whose LB log is read (needed when ``service`` is set, unless ``lb_log``).
        state: the lab state file (for the service registry's source addresses).
        clock: the clock samples are stamped and paced by.
        lb_log: the LB log source (default: the lab's API).
        queue_wait: DynamoDB's queue wait now (default: the lab's API when ``lab`` is given).
        wait: how the thread waits between samples (default: on its stop event; tests
            drive a fake clock with it).
    """

    def __init__(self, schema: LeaseSchema, reader: LeaseReader, path: str | Path,
                 interval: float = DEFAULT_INTERVAL, service: str = "", lab: LabInfo | None = None, *,
                 state: str | Path | None = None, clock: Clock = REAL_CLOCK,
                 lb_log: LbLog | None = None, queue_wait: QueueWait | None = None,
                 wait: Waiter = _event_wait) -> None:
        if isinstance(interval, bool) or not isinstance(interval, int | float) or not 0 < interval <= 3600:
            raise ConfigError("interval", f"{interval!r} is not a duration in seconds",
                              "use a number above 0 and at most 3600")
        self.schema = schema
        self.reader = reader
        self.path = Path(path)
        self.interval = float(interval)
        self.effective_interval = self.interval
        self.service = service
        self.clock = clock
        self._lab = lab
        self._state = state
        self._lb_log = lb_log
        self._queue_wait = queue_wait
        self._wait = wait
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.generation = 0
        self.samples = 0
        self.failures = 0
        self._failing: str | None = None
        self._last_error: dict[str, Any] | None = None
        self._started = 0.0

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def current(self) -> bool:
        """Whether this watcher may still write its file (not stopped, not superseded)."""
        return not self._stop.is_set() and _generations.get(self.path) == self.generation

    def start(self) -> Sample:
        """Truncate the file, take the first sample here (its errors propagate: a wrong
        table or schema is reported to the caller), then sample on a thread."""
        if self._thread is not None or self.generation:
            raise RuntimeError("this watcher has already been started")
        attempts = make_attempts(self.service, self._lab, self._state, self.clock.now(), self._lb_log,
                                 self._queue_wait)
        sampler = Sampler(self.reader, attempts, versioned=bool(self.schema.version), clock=self.clock)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with _generations_lock:  # from here on, older watchers of this file write nothing
            self.generation = _generations.get(self.path, 0) + 1
            _generations[self.path] = self.generation
            self.path.write_text("", encoding="utf-8")
        self._started = self.clock.now()
        self._write_status()
        first, took = sampler.sample()
        self._write(first, took)
        self._thread = threading.Thread(target=self._run, args=(sampler,),
                                        name=f"lease-watcher-{self.schema.table}", daemon=True)
        self._thread.start()
        logger.info("lease watcher: sampling table %s every %g s into %s (%d leases, %d live; attempts "
                    "of %s)", self.schema.table, self.effective_interval, self.path, first.total, first.live,
                    repr(self.service) if self.service else "no service")
        return first

    def stop(self, timeout: float = 30.0) -> None:
        """Stop sampling and wait for the thread (a scan in progress finishes first; one
        that does not finish in ``timeout`` can no longer write)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                logger.warning("lease watcher of %s did not stop within %g s; it will write nothing more",
                               self.schema.table, timeout)
        logger.info("lease watcher of %s stopped: %d samples, %d failed scans", self.schema.table,
                    self.samples, self.failures)

    def _write(self, sample: Sample, took: float) -> bool:
        with _generations_lock:
            if not self.current:
                return False
            timeline.append(self.path, [sample])
        self.samples += 1
        stretched = max(self.interval, 2 * took)
        if abs(stretched - self.effective_interval) > 0.25 * self.effective_interval:
            if stretched > self.interval:
                logger.info("lease watcher: a scan of %s takes %.2f s, so sampling every %.2f s",
                            self.schema.table, took, stretched)
            self.effective_interval = stretched
        return True

    def _write_status(self) -> None:
        """``<table>.watcher.json`` (replaced whole: a reader never sees half of it)."""
        status = {"table": self.schema.table, "service": self.service, "interval": self.interval,
                  "started": self._started, "generation": self.generation, "pid": os.getpid(),
                  "failing": self._failing is not None, "failures": self.failures,
                  "last_error": self._last_error}
        target = status_path(self.path)
        temporary = target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}")
        with _generations_lock:
            if not self.current:
                return
            try:
                temporary.write_text(json.dumps(status), encoding="utf-8")
                os.replace(temporary, target)
            except OSError as exc:
                logger.warning("lease watcher: could not write %s: %s", target, exc)

    def _run(self, sampler: Sampler) -> None:
        due = self.clock.monotonic() + self.effective_interval
        while not self._wait(self._stop, max(0.0, due - self.clock.monotonic())):
            if not self.current:
                return
            try:
                sample, took = sampler.sample()
            except Exception as exc:  # noqa: BLE001 - keep sampling; say it once
                self.failures += 1
                message = f"{type(exc).__name__}: {exc}"
                if message != self._failing:
                    logger.warning("lease watcher: a scan of %s failed (%s); retrying every %g s",
                                   self.schema.table, message, self.effective_interval)
                self._failing = message
                self._last_error = {"t": self.clock.now(), "error": message}
                self._write_status()
                due = self.clock.monotonic() + self.effective_interval
                continue
            if self._failing is not None:
                logger.info("lease watcher: scans of %s succeed again", self.schema.table)
                self._failing = None
                self._write_status()
            try:
                if not self._write(sample, took):
                    return  # stopped, or a newer watcher owns the file
            except OSError as exc:
                self.failures += 1
                logger.warning("lease watcher: could not write %s: %s", self.path, exc)
            due = max(due + self.effective_interval, self.clock.monotonic())

    def describe(self) -> dict[str, Any]:
        return {"table": self.schema.table, "path": str(self.path), "interval": self.interval,
                "effective_interval": self.effective_interval, "service": self.service,
                "samples": self.samples, "failures": self.failures, "running": self.running,
                "generation": self.generation}
