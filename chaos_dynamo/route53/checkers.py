"""Route 53's health checkers, run by the lab against its own loopback targets.

::

    HealthCheckRunner (one scheduler thread)
       | every checker (one per check and region) is due every RequestInterval / speedup,
       | checker i of n starting at i * interval / n
       v
    bounded thread pool --> Prober: a NEW TCP connection per check, from 127.0.0.1
       |                     HTTP: GET ResourcePath, 2xx/3xx = success (STR_MATCH: SearchString
       |                     in the first 5120 bytes of the body); TCP: connect only
       v
    HealthEvaluator.record() --status changed--> on_change(statuses, transitions)

The scheduler never probes itself: a blackholed target holds its probe's connection for
the whole timeout, so probes run on a pool of at most ``max_in_flight`` threads, and a
probe that would go past that cap is skipped (and counted) rather than queued behind
others. Timeouts follow AWS (connect 4 s and status 2 s for HTTP, 10 s for TCP), scaled
with the interval but never below 1 s.

Safety: the prober connects to loopback addresses only. A FullyQualifiedDomainName is
resolved through the lab DNS's zones (an injected ``resolve``), never through the
machine's resolver; a resolved address off loopback is a failed check, not a connection.
"""

from __future__ import annotations

import heapq
import http
import ipaddress
import itertools
import socket
import threading
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

from chaos_dynamo.clock import REAL_CLOCK, Clock
from chaos_dynamo.route53.healthchecks import (
    SEARCH_BYTES,
    CheckResult,
    HealthCheckConfig,
    HealthEvaluator,
    not_evaluated_reason,
)

__all__ = [
    "CONNECT_TIMEOUT",
    "RESPONSE_TIMEOUT",
    "TCP_TIMEOUT",
    "HealthCheckRunner",
    "Probe",
    "Prober",
    "Timeouts",
    "Transition",
    "timeouts_for",
]

CONNECT_TIMEOUT = 4.0
"""AWS: an HTTP checker must connect within 4 s..."""
RESPONSE_TIMEOUT = 2.0
"""...and get a status line within 2 s after connecting."""
TCP_TIMEOUT = 10.0
"""AWS: a TCP checker must connect within 10 s."""
MIN_TIMEOUT = 1.0
"""The lab scales timeouts with the interval, but never below this."""
USER_AGENT = "Amazon-Route53-Health-Check-Service (chaos-dynamo lab)"

_REFUSED = ("Failure: Connection refused. The endpoint or the internet connection is down, "
            "or the host is unreachable.")
_TIMED_OUT = ("Failure: Connection timed out. The endpoint or the internet connection is down, "
              "or requests are being blocked by your firewall.")


@dataclass(frozen=True)
class Timeouts:
    """Seconds a probe may take: to connect (HTTP), to get the status line, to connect (TCP)."""

    connect: float
    response: float
    tcp: float


def timeouts_for(request_interval: float, speedup: float) -> Timeouts:
    """AWS's timeouts for a check whose interval runs ``speedup`` times faster.

    Each is ``min(AWS timeout, max(1 s, interval in real seconds))``.
    """
    interval = request_interval / speedup

    def scaled(limit: float) -> float:
        return min(limit, max(MIN_TIMEOUT, interval))

    return Timeouts(scaled(CONNECT_TIMEOUT), scaled(RESPONSE_TIMEOUT), scaled(TCP_TIMEOUT))


# --- one probe -------------------------------------------------------------------------


class Probe(Protocol):
    """Runs one checker's check; ``close`` ends probes in flight at once (lab stopping)."""

    def __call__(self, config: HealthCheckConfig, timeouts: Timeouts) -> CheckResult: ...

    def close(self) -> None: ...


class _Timeout(Exception):
    pass


class Prober:
    """Checks a target the way a Route 53 checker does, on a new TCP connection each time.

    Args:
        resolve: a name -> the addresses the lab DNS answers for it (no other resolver is
            ever used); an empty answer means the lab does not serve the name.
        source: the checkers' source address (reported as the observation's IPAddress).
        clock: stamps results (``now``) and measures the response deadline (``monotonic``).
    """

    def __init__(self, resolve: Callable[[str], Sequence[str]], *, source: str = "127.0.0.1",
                 clock: Clock = REAL_CLOCK) -> None:
        self.resolve = resolve
        self.source = source
        self._clock = clock
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._closed = False

    def __call__(self, config: HealthCheckConfig, timeouts: Timeouts) -> CheckResult:
        target = self._target(config)
        if isinstance(target, str):
            return self._result(False, target)
        address, host = target
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        with self._lock:
            if self._closed:
                sock.close()
                return self._result(False, "Failure: the lab is stopping its health checkers")
            self._open.add(sock)
        try:
            return self._check(sock, config, timeouts, address, host)
        finally:
            with self._lock:
                self._open.discard(sock)
            sock.close()

    def close(self) -> None:
        """Cut every connection in flight (their probes fail at once); refuse new ones."""
        with self._lock:
            self._closed = True
            sockets = list(self._open)
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _target(self, config: HealthCheckConfig) -> tuple[str, str] | str:
        """(address to connect to, Host header), or the failure status to report."""
        port = config.effective_port
        if config.ip_address:
            address = config.ip_address.strip()
        elif config.fqdn:
            name = config.fqdn.strip().rstrip(".")
            answers = list(self.resolve(name))
            if not answers:
                return f"Failure: name not served by the lab: {name} has no address in the lab DNS's zones"
            # Deterministic: the lowest IPv4 address the name can answer with.
            address = sorted(answers, key=lambda a: (":" in a, a))[0]
        else:
            return "Failure: the health check has neither IPAddress nor FullyQualifiedDomainName"
        if not _is_loopback(address):
            return f"Failure: the lab checks loopback addresses only (the target resolved to {address})"
        host = (config.fqdn or address).strip().rstrip(".")
        if ":" in host:
            host = f"[{host}]"
        if port != 80:
            host = f"{host}:{port}"
        return address, host

    def _check(self, sock: socket.socket, config: HealthCheckConfig, timeouts: Timeouts,
               address: str, host: str) -> CheckResult:
        tcp = config.type == "TCP"
        try:
            if sock.family == socket.AF_INET and self.source:
                sock.bind((self.source, 0))
            sock.settimeout(timeouts.tcp if tcp else timeouts.connect)
            sock.connect((address, config.effective_port))
        except TimeoutError:
            return self._result(False, _TIMED_OUT)
        except ConnectionRefusedError:
            return self._result(False, _REFUSED)
        except OSError as exc:
            return self._result(False, f"Failure: {exc.strerror or exc}. Resolved IP: {address}")
        if tcp:
            return self._result(True, "Success: TCP connection established")
        try:
            return self._http(sock, config, timeouts, host)
        except _Timeout:
            return self._result(False, f"Failure: Response timed out. The endpoint did not send an "
                                       f"HTTP status line within {timeouts.response:g} s after connecting.")
        except ConnectionResetError:
            return self._result(False, "Failure: Connection reset by peer. The endpoint closed the "
                                       "connection before answering.")
        except OSError as exc:
            return self._result(False, f"Failure: {exc.strerror or exc}. Resolved IP: {address}")

    def _http(self, sock: socket.socket, config: HealthCheckConfig, timeouts: Timeouts, host: str) -> CheckResult:
        path = config.resource_path if config.resource_path.startswith("/") else "/" + config.resource_path
        request = (f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: {USER_AGENT}\r\n"
                   "Accept: */*\r\nConnection: close\r\n\r\n")
        deadline = self._clock.monotonic() + timeouts.response
        sock.settimeout(timeouts.response)
        sock.sendall(request.encode("latin-1", "replace"))
        want_body = config.search_string is not None and config.type == "HTTP_STR_MATCH"
        data = b""
        while True:
            remaining = deadline - self._clock.monotonic()
            if remaining <= 0:
                if _status_line(data) is not None and want_body:
                    break  # search what arrived in time
                raise _Timeout
            sock.settimeout(remaining)
            try:
                chunk = sock.recv(8192)
            except TimeoutError:
                if _status_line(data) is not None and want_body:
                    break
                raise _Timeout from None
            if not chunk:
                break
            data += chunk
            if _status_line(data) is not None and (not want_body or _body_complete(data)):
                break
        status = _status_line(data)
        if status is None:
            return self._result(False, "Failure: The endpoint closed the connection without "
                                       "sending an HTTP status line.")
        code, reason = status
        text = f"HTTP Status Code {code}, {reason}"
        if not 200 <= code < 400:
            return self._result(False, f"Failure: {text}")
        if want_body:
            assert config.search_string is not None
            body = _body(data)[:SEARCH_BYTES]
            if config.search_string.encode("utf-8") not in body:
                return self._result(False, f"Failure: Search string not found in the first "
                                           f"{SEARCH_BYTES} bytes of the response body ({text})")
        return self._result(True, f"Success: {text}")

    def _result(self, ok: bool, status: str) -> CheckResult:
        return CheckResult(ok=ok, status=status, checked_at=self._clock.now())


def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def _status_line(data: bytes) -> tuple[int, str] | None:
    """(code, reason) once the status line has arrived, else None."""
    end = data.find(b"\r\n")
    if end < 0:
        return None
    parts = data[:end].decode("latin-1").split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        return (0, "not an HTTP response")
    code = int(parts[1])
    reason = parts[2].strip() if len(parts) > 2 and parts[2].strip() else _phrase(code)
    return code, reason


def _phrase(code: int) -> str:
    try:
        return http.HTTPStatus(code).phrase
    except ValueError:
        return "Unknown"


def _split(data: bytes) -> tuple[dict[str, str], bytes] | None:
    end = data.find(b"\r\n\r\n")
    if end < 0:
        return None
    headers: dict[str, str] = {}
    for line in data[:end].decode("latin-1").split("\r\n")[1:]:
        key, _, value = line.partition(":")
        headers[key.strip().lower()] = value.strip()
    return headers, data[end + 4:]


def _body(data: bytes) -> bytes:
    split = _split(data)
    if split is None:
        return b""
    headers, raw = split
    if "chunked" in headers.get("transfer-encoding", "").lower():
        return _dechunk(raw)
    return raw


def _body_complete(data: bytes) -> bool:
    """Enough of the body is in to search it: all of it, or SEARCH_BYTES of it."""
    split = _split(data)
    if split is None:
        return False
    headers, raw = split
    body = _body(data)
    if len(body) >= SEARCH_BYTES:
        return True
    length = headers.get("content-length", "")
    if length.isdigit():
        return len(raw) >= int(length)
    if "chunked" in headers.get("transfer-encoding", "").lower():
        return raw.endswith(b"0\r\n\r\n")
    return False


def _dechunk(raw: bytes) -> bytes:
    out = b""
    while raw:
        line, sep, rest = raw.partition(b"\r\n")
        if not sep:
            break
        try:
            size = int(line.split(b";", 1)[0].strip() or b"0", 16)
        except ValueError:
            break
        if size == 0:
            break
        out += rest[:size]
        raw = rest[size + 2:]
    return out


# --- scheduling --------------------------------------------------------------------------


@dataclass(frozen=True)
class Transition:
    """A health check's status changed (or it appeared or went away)."""

    time: float
    id: str
    healthy: bool
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {"time": self.time, "id": self.id, "healthy": self.healthy, "reason": self.reason}


OnChange = Callable[[dict[str, bool], list[Transition]], None]
"""(every health check id -> healthy, the transitions that led there)."""


@dataclass
class _Checker:
    config: HealthCheckConfig
    region: str
    timeouts: Timeouts
    interval: float
    generation: int


class HealthCheckRunner:
    """Runs every configured health check's checkers and feeds the evaluator.

    Args:
        evaluator: where results go; the runner configures it too.
        probe: runs one check (a :class:`Prober` in the lab).
        on_change: called with the statuses and transitions after any status changed,
            one call at a time, in order, the latest statuses always last.
        speedup: health-check time runs this many times faster than real time.
        max_in_flight: most probes running at once; a probe due beyond it is skipped.
    """

    def __init__(self, evaluator: HealthEvaluator, probe: Probe, *, on_change: OnChange = lambda s, t: None,
                 speedup: float = 10.0, clock: Clock = REAL_CLOCK, max_in_flight: int = 64,
                 log_limit: int = 100_000) -> None:
        self.evaluator = evaluator
        self.probe = probe
        self.on_change = on_change
        self.speedup = float(speedup)
        self._clock = clock
        self._max_in_flight = max_in_flight
        self._lock = threading.Lock()  # checkers, schedule, counters, pending reasons
        self._notify_lock = threading.Lock()  # on_change calls, in order
        self._checkers: dict[tuple[str, str], _Checker] = {}
        self._heap: list[tuple[float, int, tuple[str, str], int]] = []
        self._seq = itertools.count()
        self._generation = itertools.count(1)
        self._reasons: dict[str, str] = {}
        self._statuses: dict[str, bool] = evaluator.statuses()
        self._log: deque[Transition] = deque(maxlen=log_limit)
        self._counters = {"probes": 0, "failures": 0, "skipped": 0, "transitions": 0}
        self._in_flight = 0
        self._idle = threading.Condition(self._lock)
        self._executor: ThreadPoolExecutor | None = None
        self._thread: threading.Thread | None = None
        self._wake = threading.Event()
        self._stopping = False

    # --- lifecycle ---------------------------------------------------------------------
    def start(self) -> HealthCheckRunner:
        self._executor = ThreadPoolExecutor(max_workers=self._max_in_flight, thread_name_prefix="r53-checker")
        self._thread = threading.Thread(target=self._loop, name="r53-health-scheduler", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop scheduling, cut probes in flight and wait (at most ``timeout``) for them."""
        with self._lock:
            self._stopping = True
        self._wake.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout=timeout)
        self.probe.close()
        executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)
            with self._idle:
                self._idle.wait_for(lambda: self._in_flight == 0, timeout=timeout)
            executor.shutdown(wait=True)

    def _loop(self) -> None:
        while True:
            self._wake.clear()
            with self._lock:
                if self._stopping:
                    return
            delay = self.run_pending()
            self._wake.wait(timeout=delay)

    # --- configuration -----------------------------------------------------------------
    def configure(self, configs: Iterable[HealthCheckConfig]) -> list[Transition]:
        """Evaluate and check ``configs`` from now on; return the status transitions.

        A checker whose check is unchanged keeps its schedule; a new or changed check's
        checkers start staggered over one interval from now. CALCULATED and disabled
        checks have no checkers, nor have checks the lab cannot evaluate
        (:func:`~chaos_dynamo.route53.healthchecks.not_evaluated_reason`: a type it does
        not support, a target off loopback): those count as healthy.
        """
        configs = list(configs)
        with self._lock:
            before = {c.id: c for c in self.evaluator.configs()}
            self.evaluator.configure(configs)
            now = self._clock.monotonic()
            wanted: dict[tuple[str, str], _Checker] = {}
            for config in configs:
                if config.calculated or config.disabled or not_evaluated_reason(config) is not None:
                    continue
                interval = config.request_interval / self.speedup
                timeouts = timeouts_for(config.request_interval, self.speedup)
                regions = config.regions
                for index, region in enumerate(regions):
                    key = (config.id, region)
                    old = self._checkers.get(key)
                    if old is not None and old.config == config:
                        wanted[key] = old
                        continue
                    checker = _Checker(config, region, timeouts, interval, next(self._generation))
                    wanted[key] = checker
                    due = now + index * interval / len(regions)
                    heapq.heappush(self._heap, (due, next(self._seq), key, checker.generation))
            self._checkers = wanted
            for config in configs:
                old_config = before.get(config.id)
                not_evaluated = not_evaluated_reason(config)
                if not_evaluated is not None and old_config != config:
                    self._reasons.setdefault(config.id, f"not evaluated by the lab: {not_evaluated}")
                elif old_config is None:
                    self._reasons.setdefault(config.id, "created: healthy until its checkers have enough data")
                elif old_config != config:
                    self._reasons.setdefault(config.id, "configuration changed")
            for check_id in set(before) - {c.id for c in configs}:
                self._reasons.setdefault(check_id, "deleted: records that name it count as healthy")
            # Drop schedule entries of forgotten checkers so the heap stays small.
            self._heap = [e for e in self._heap if self._current(e[2], e[3])]
            heapq.heapify(self._heap)
        self._wake.set()
        return self._notify(deleted=set(before) - {c.id for c in configs})

    def configs(self) -> list[HealthCheckConfig]:
        return self.evaluator.configs()

    # --- scheduling --------------------------------------------------------------------
    def run_pending(self) -> float | None:
        """Start every checker that is due; return seconds until the next one (None: none)."""
        now = self._clock.monotonic()
        start: list[_Checker] = []
        with self._lock:
            while self._heap and self._heap[0][0] <= now:
                due, _, key, generation = heapq.heappop(self._heap)
                checker = self._checkers.get(key)
                if checker is None or checker.generation != generation or self._stopping:
                    continue
                following = due + checker.interval
                if following <= now:  # fell behind (a busy machine): no burst to catch up
                    following = now + checker.interval
                heapq.heappush(self._heap, (following, next(self._seq), key, generation))
                if self._in_flight >= self._max_in_flight:
                    self._counters["skipped"] += 1
                    continue
                self._in_flight += 1
                start.append(checker)
            delay = None if not self._heap else max(0.0, self._heap[0][0] - now)
        for checker in start:
            self._submit(checker)
        return delay

    def _submit(self, checker: _Checker) -> None:
        executor = self._executor
        if executor is None:  # not started (tests drive run_pending): probe inline
            try:
                self._probe(checker)
            finally:
                self._done()
            return
        try:
            future = executor.submit(self._probe, checker)
        except RuntimeError:  # shut down meanwhile
            self._done()
            return
        future.add_done_callback(self._finished)

    def _finished(self, future: Future[None]) -> None:
        self._done()

    def _done(self) -> None:
        with self._idle:
            self._in_flight -= 1
            self._idle.notify_all()

    def _current(self, key: tuple[str, str], generation: int) -> bool:
        checker = self._checkers.get(key)
        return checker is not None and checker.generation == generation

    def _probe(self, checker: _Checker) -> None:
        try:
            result = self.probe(checker.config, checker.timeouts)
        except Exception as exc:  # noqa: BLE001 - a broken probe is a failed check, not a dead runner
            result = CheckResult(False, f"Failure: the lab's checker failed ({type(exc).__name__}: {exc})",
                                 self._clock.now())
        with self._lock:
            if self._stopping or not self._current((checker.config.id, checker.region), checker.generation):
                return  # reconfigured or stopping: this result is about a check that is gone
            self._counters["probes"] += 1
            self._counters["failures"] += not result.ok
            changed = self.evaluator.record(checker.config.id, checker.region, result)
            if changed:
                self._reasons[checker.config.id] = result.status
        if changed:
            self._notify()

    # --- status changes ------------------------------------------------------------------
    def _notify(self, deleted: Iterable[str] = ()) -> list[Transition]:
        with self._notify_lock:
            with self._lock:
                if self._stopping:
                    return []
                statuses = self.evaluator.statuses()
                reasons, self._reasons = self._reasons, {}
            now = self._clock.now()
            transitions = [
                Transition(now, check_id, healthy, reasons.get(check_id) or self._derived_reason(check_id, statuses))
                for check_id, healthy in statuses.items() if self._statuses.get(check_id) != healthy
            ]
            transitions += [Transition(now, check_id, True, reasons.get(check_id, "deleted"))
                            for check_id in sorted(set(deleted)) if check_id in self._statuses]
            self._statuses = statuses
            if not transitions:
                return []
            with self._lock:
                self._log.extend(transitions)
                self._counters["transitions"] += len(transitions)
            self.on_change(dict(statuses), list(transitions))
            return transitions

    def _derived_reason(self, check_id: str, statuses: Mapping[str, bool]) -> str:
        """Why a check nobody reported on changed: a CALCULATED check's children did."""
        config = next((c for c in self.evaluator.configs() if c.id == check_id), None)
        if config is None or not config.calculated:
            return "status changed"
        up = sum(bool(statuses.get(child)) for child in config.children)
        threshold = config.health_threshold if config.health_threshold is not None else len(config.children)
        inverted = ", inverted" if config.inverted else ""
        return (f"Calculated: {up} of {len(config.children)} child health checks healthy "
                f"(HealthThreshold {threshold}{inverted})")

    # --- reading -------------------------------------------------------------------------
    def statuses(self) -> dict[str, bool]:
        return self.evaluator.statuses()

    def log(self, since: float | None = None) -> list[dict[str, Any]]:
        """Status transitions, oldest first: ``{"time", "id", "healthy", "reason"}``."""
        with self._lock:
            chosen = [t for t in self._log if since is None or t.time >= since]
        return [t.to_json() for t in chosen]

    def counters(self) -> dict[str, int]:
        """Probes run, failed, skipped (too many in flight), status transitions; checks in flight."""
        with self._lock:
            return {**self._counters, "in_flight": self._in_flight}
