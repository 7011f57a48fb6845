"""Retry measurements: pure functions over what the lab logged and what a service's SDK did.

Nothing here does I/O or reads a clock. :mod:`chaos_dynamo.retry.probes` fetches the lab's
logs, the service registry and the call log, passes ``now``, and turns the results into
Chaos Toolkit probe outputs. The meaning, unit and a sensible tolerance of every number are
in ``docs/probes/retry.md``; this module is the definition.

Windows (:func:`find_windows`)
    From the endpoint's availability timeline (one entry each time the number of addresses
    its name resolves to changes), the *outage* is the most recent interval with no
    address; if it is still going on it ends ``now``. The *baseline* is the
    ``baseline_seconds`` just before the outage began, the *recovery* the
    ``recovery_seconds`` just after it ended. All windows are half-open: ``[start, end)``.
    With no outage since the service started (a steady-state check before the method), the
    latest half of ``baseline_seconds`` stands in for both outage and recovery and is
    compared with the half before it, so every ratio is about 1 for a service at rest.

Attribution (:func:`attribute`)
    LB requests are the service's by :func:`chaos_dynamo.services.attribution.request_service`
    (explicit header, SDK app id in the User-Agent, or source address); DNS queries by
    :func:`~chaos_dynamo.services.attribution.query_service` (source address only). Only
    queries for the endpoint's name count. A service with no recorded source address has
    its DNS numbers taken from *all* queries for the name, and says so in its notes.
    Traffic of other services and unattributed traffic is kept, per owner, for the details.

Attempts
    A server-side attempt is an LB request of the service, or a failed lookup of the
    endpoint's name by the service. ``getaddrinfo`` (what botocore, through urllib3, calls
    for each new connection) asks A and AAAA once each per lookup, so a window's failed
    lookups are ``max(failed A answers, failed AAAA answers)``, not their sum. An answer
    fails when it is NXDOMAIN, SERVFAIL or REFUSED, or has no address of a type the endpoint
    serves (an IPv4-only endpoint's empty AAAA answer is normal, not a failure).

Floors
    A baseline rate in a denominator is floored at one attempt (or request) per baseline
    window, so a service idle before the outage gives a large finite ratio, not a division
    by zero; the DNS storm's baseline is floored at ``min_baseline_qps`` instead (a service
    that reuses connections looks its endpoint up rarely at rest).
"""

from __future__ import annotations

import bisect
import math
import statistics
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any, Protocol

from chaos_dynamo.calllog import Call
from chaos_dynamo.errors import ConfigError, LabError
from chaos_dynamo.services.attribution import (
    AttributableQuery,
    AttributableRequest,
    query_service,
    request_service,
)

UNATTRIBUTED = "(unattributed)"
"""Owner of traffic no rule attributes (parenthesised: never a valid service name)."""
FAILED_RCODES = frozenset({"NXDOMAIN", "SERVFAIL", "REFUSED"})
ADDRESS_TYPES = ("A", "AAAA")
SYNC_WINDOW = 0.010
"""Two retry attempts of different processes closer than this are "synchronized"."""
MIN_GAP = 0.001
"""Inter-attempt gaps below this (an immediate retry) are taken as this, so ratios exist."""
STATISTICS = ("max", "mean", "p50", "p95", "p99")
MAX_SECONDS = 86_400.0

STEADY = "steady"
OUTAGE = "outage"
ONGOING = "ongoing"


class LoggedRequest(AttributableRequest, Protocol):
    """What a probe reads of an LB request (:class:`chaos_dynamo.lbfleet._state.RequestRecord`)."""

    @property
    def time(self) -> float: ...


class LoggedQuery(AttributableQuery, Protocol):
    """What a probe reads of a DNS query (:class:`chaos_dynamo.dns.server.QueryRecord`)."""

    @property
    def time(self) -> float: ...
    @property
    def name(self) -> str: ...
    @property
    def qtype(self) -> str: ...
    @property
    def rcode(self) -> str: ...
    @property
    def answers(self) -> int: ...


def check_seconds(field_name: str, value: object, high: float = MAX_SECONDS) -> float:
    """A positive, finite number of seconds (not a bool); ConfigError naming the field otherwise."""
    if (isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)
            or not 0 < value <= high):
        raise ConfigError(field_name, f"{value!r} is not a duration in seconds",
                          f"use a number above 0 and at most {high:g}")
    return float(value)


def normalize_name(name: str) -> str:
    """DNS names compare case-insensitively, with or without the trailing dot."""
    return name.lower().rstrip(".")


# --- windows -------------------------------------------------------------------------


@dataclass(frozen=True)
class Window:
    """``[start, end)`` in wall-clock seconds."""

    start: float
    end: float

    @property
    def seconds(self) -> float:
        return max(0.0, self.end - self.start)

    def count(self, times: Sequence[float]) -> int:
        """How many of the sorted ``times`` fall in the window."""
        if self.end <= self.start:
            return 0
        return bisect.bisect_left(times, self.end) - bisect.bisect_left(times, self.start)

    def rate(self, times: Sequence[float]) -> float:
        """Events per second in the window (0 for an empty window)."""
        return self.count(times) / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, float]:
        return {"start": self.start, "end": self.end, "seconds": self.seconds}


@dataclass(frozen=True)
class Windows:
    """The three windows a measurement compares.

    Attributes:
        kind: ``outage`` (the endpoint was empty and is back), ``ongoing`` (still empty:
            the recovery window is empty) or ``steady`` (no outage since the service
            started: outage and recovery are both the latest ``baseline_seconds``).
    """

    endpoint: str
    kind: str
    baseline: Window
    outage: Window
    recovery: Window

    @property
    def span(self) -> Window:
        """From the outage's start to the recovery's end (just the outage if none)."""
        return Window(self.outage.start, max(self.outage.end, self.recovery.end))

    def to_dict(self) -> dict[str, Any]:
        return {"endpoint": self.endpoint, "kind": self.kind, "baseline": self.baseline.to_dict(),
                "outage": self.outage.to_dict(), "recovery": self.recovery.to_dict()}


def outages(timeline: Iterable[Mapping[str, Any]], endpoint: str) -> list[tuple[float, float | None]]:
    """Every interval in which ``endpoint`` resolved to no address, oldest first.

    ``timeline`` holds ``{"time", "endpoint", "addresses"}`` entries (any endpoint, any
    order); an interval still open has end None.
    """
    name = normalize_name(endpoint)
    entries = sorted((float(e["time"]), int(e["addresses"])) for e in timeline
                     if normalize_name(str(e.get("endpoint", ""))) == name)
    found: list[tuple[float, float | None]] = []
    start: float | None = None
    for when, addresses in entries:
        if addresses == 0 and start is None:
            start = when
        elif addresses > 0 and start is not None:
            found.append((start, when))
            start = None
    if start is not None:
        found.append((start, None))
    return found


def find_windows(timeline: Iterable[Mapping[str, Any]], endpoint: str, now: float,
                 baseline_seconds: float, recovery_seconds: float,
                 started_at: float | None = None, subject: str = "the service") -> Windows:
    """The baseline, outage and recovery windows (see the module's docstring).

    Args:
        timeline: the lab's availability entries.
        endpoint: the endpoint's DNS name.
        now: the current wall-clock time (ends an ongoing outage or the steady windows).
        started_at: when ``subject`` started (None: unknown). An outage that ended before
            it does not count, and no window may start before it.
        subject: what ``started_at`` belongs to, for the error message.

    Raises:
        ConfigError: a duration is not a positive number of seconds.
        LabError: the baseline window would start before ``started_at``: there is not
            enough history to compare with.
    """
    b = check_seconds("baseline_seconds", baseline_seconds)
    r = check_seconds("recovery_seconds", recovery_seconds)
    name = normalize_name(endpoint)
    candidates = outages(timeline, name)
    last = candidates[-1] if candidates else None
    if last is not None and started_at is not None and last[1] is not None and last[1] <= started_at:
        last = None  # over before the service started: nothing it could have retried
    if last is None:
        # Halves of one baseline: a service warmed up for baseline_seconds can be checked.
        latest = Window(now - b / 2, now)
        windows = Windows(name, STEADY, Window(now - b, now - b / 2), latest, latest)
    else:
        began, ended = last
        kind = OUTAGE if ended is not None else ONGOING
        end = ended if ended is not None else now
        recovery = Window(end, end + r) if ended is not None else Window(end, end)
        windows = Windows(name, kind, Window(began - b, began), Window(began, end), recovery)
    if started_at is not None and windows.baseline.start < started_at:
        raise LabError(_too_young(windows, started_at, now, b, subject))
    return windows


def _too_young(windows: Windows, started_at: float, now: float, b: float, subject: str) -> str:
    if windows.kind == STEADY:
        ran = max(0.0, now - started_at)
        return (f"{subject} has not run long enough: it started {ran:.1f} s ago, and comparing the "
                f"two halves of a {b:g} s baseline needs {b:g} s; wait "
                f"{b - ran:.1f} s more, or lower baseline_seconds")
    lead = windows.outage.start - started_at
    if lead <= 0:
        return (f"{windows.endpoint} went empty {-lead:.1f} s before {subject} started, so there is "
                f"no baseline to compare with; start {subject} at least {b:g} s before emptying "
                "the endpoint")
    return (f"{subject} has not run long enough: {windows.endpoint} went empty {lead:.1f} s after "
            f"it started, and the baseline needs {b:g} s before the outage; start it earlier, "
            f"or lower baseline_seconds to at most {math.floor(lead * 10) / 10:g}")


# --- attribution ---------------------------------------------------------------------


@dataclass(frozen=True)
class Traffic:
    """A service's LB requests and DNS queries for one endpoint, as sorted times.

    Attributes:
        lb: times of the service's LB requests.
        dns: times of its queries for the endpoint name (every client's when
            ``dns_scope`` is ``all``).
        dns_failed: qtype -> times of those queries whose answer failed the lookup.
        dns_scope: ``service`` (by source address) or ``all`` (no source address known, or
            no query ever came from it: a service whose resolver is not the Python shim).
        lb_by_owner / dns_by_owner: every owner's times (service name, or
            :data:`UNATTRIBUTED`), so nothing is lost.
    """

    service: str
    endpoint: str
    lb: tuple[float, ...]
    dns: tuple[float, ...]
    dns_failed: Mapping[str, tuple[float, ...]]
    dns_scope: str
    lb_by_owner: Mapping[str, tuple[float, ...]] = field(default_factory=dict)
    dns_by_owner: Mapping[str, tuple[float, ...]] = field(default_factory=dict)

    @property
    def notes(self) -> tuple[str, ...]:
        if self.dns_scope == "all":
            return (f"no query for {self.endpoint} came from a source address recorded for service "
                    f"{self.service!r}, so its DNS numbers count every query for that name (all "
                    "clients); a Python service started by `chaos-dynamo service start` sends its "
                    "lookups from its own address",)
        return ()

    def failed_lookups(self, window: Window) -> int:
        """Failed lookups in ``window``: max over A and AAAA (one of each per getaddrinfo)."""
        return max(window.count(self.dns_failed.get(q, ())) for q in ADDRESS_TYPES)

    def attempts(self, window: Window) -> int:
        """Server-side attempts in ``window``: LB requests plus failed lookups."""
        return window.count(self.lb) + self.failed_lookups(window)

    def owners(self, window: Window) -> dict[str, dict[str, int]]:
        """LB requests and DNS queries for the name in ``window``, per owner (all traffic)."""
        return {
            "lb": {o: n for o, t in sorted(self.lb_by_owner.items()) if (n := window.count(t))},
            "dns": {o: n for o, t in sorted(self.dns_by_owner.items()) if (n := window.count(t))},
        }


def attribute(requests: Iterable[LoggedRequest], queries: Iterable[LoggedQuery], service: str,
              endpoint: str, by_address: Mapping[str, str],
              served_types: Sequence[str] = ("A",)) -> Traffic:
    """Sort the lab's logs into the service's traffic for ``endpoint`` (see module docstring).

    Args:
        by_address: source address -> service name (from the service registry).
        served_types: the address types the endpoint has (``A``, plus ``AAAA`` for a
            dual-stack endpoint): an empty answer of another type is not a failure.
    """
    lb_by_owner: dict[str, list[float]] = defaultdict(list)
    for request in requests:
        lb_by_owner[request_service(request, by_address) or UNATTRIBUTED].append(float(request.time))
    by_address_known = service in by_address.values()
    name = normalize_name(endpoint)
    dns_by_owner: dict[str, list[float]] = defaultdict(list)
    seen: list[tuple[str, float, str | None]] = []  # (owner, time, failed address type)
    for query in queries:
        if normalize_name(query.name) != name:
            continue
        owner = query_service(query, by_address) or UNATTRIBUTED
        when = float(query.time)
        dns_by_owner[owner].append(when)
        failed_type = query.qtype if query.qtype in ADDRESS_TYPES and (
            query.rcode in FAILED_RCODES or (query.answers == 0 and query.qtype in served_types)) else None
        seen.append((owner, when, failed_type))
    # A recorded source address only the Python shim uses: a service in another language
    # resolves from wherever its resolver sends from, so with no query from its address at
    # all, every query for the endpoint's name is counted (as for an unrecorded service).
    own_scope = by_address_known and service in dns_by_owner
    scoped: list[float] = []
    failed: dict[str, list[float]] = {q: [] for q in ADDRESS_TYPES}
    for owner, when, failed_type in seen:
        if own_scope and owner != service:
            continue
        scoped.append(when)
        if failed_type is not None:
            failed[failed_type].append(when)
    return Traffic(
        service=service, endpoint=name,
        lb=tuple(sorted(lb_by_owner.get(service, ()))), dns=tuple(sorted(scoped)),
        dns_failed={q: tuple(sorted(t)) for q, t in failed.items()},
        dns_scope="service" if own_scope else "all",
        lb_by_owner={o: tuple(sorted(t)) for o, t in lb_by_owner.items()},
        dns_by_owner={o: tuple(sorted(t)) for o, t in dns_by_owner.items()},
    )


# --- measurements --------------------------------------------------------------------


@dataclass(frozen=True)
class Measurement:
    """A probe's number, what it was computed from, and anything the reader must know."""

    value: float
    details: dict[str, Any]
    notes: tuple[str, ...] = ()


def _floored_rate(count: int, window: Window) -> float:
    """``count`` per second over ``window``, floored at one event per window."""
    return max(count, 1) / window.seconds


def _attempts_detail(traffic: Traffic, window: Window) -> dict[str, Any]:
    lb, dns = window.count(traffic.lb), traffic.failed_lookups(window)
    return {"lb_requests": lb, "failed_lookups": dns, "attempts": lb + dns,
            "per_second": (lb + dns) / window.seconds if window.seconds > 0 else 0.0}


def retry_amplification(traffic: Traffic, windows: Windows) -> Measurement:
    """Attempts per second in the worse of outage and recovery over the baseline's.

    ``max(rate(outage), rate(recovery)) / max(rate(baseline), 1 per baseline window)``.
    """
    parts = {"baseline": _attempts_detail(traffic, windows.baseline),
             "outage": _attempts_detail(traffic, windows.outage)}
    if windows.kind == OUTAGE:
        parts["recovery"] = _attempts_detail(traffic, windows.recovery)
    base = _floored_rate(parts["baseline"]["attempts"], windows.baseline)
    worst = max(parts["outage"]["per_second"], parts.get("recovery", {"per_second": 0.0})["per_second"])
    details = {"windows": windows.to_dict(), "attempts": parts, "baseline_rate": base,
               "baseline_floored": parts["baseline"]["attempts"] < 1, "dns_scope": traffic.dns_scope,
               "owners": traffic.owners(windows.span)}
    return Measurement(worst / base, details, traffic.notes)


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (the smallest value with at least p% of values at or below it)."""
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return float(ordered[rank - 1])


def summarize(values: Sequence[float], statistic: str) -> float:
    """``max``, ``mean`` or ``p50``/``p95``/``p99`` (nearest rank) of non-empty ``values``."""
    if statistic == "max":
        return float(max(values))
    if statistic == "mean":
        return statistics.fmean(values)
    return percentile(values, float(statistic[1:]))


def check_statistic(statistic: object) -> str:
    if statistic not in STATISTICS:
        raise ConfigError("statistic", f"{statistic!r} is not a statistic", f"use one of {list(STATISTICS)}")
    return str(statistic)


def calls_in(calls: Iterable[Call], window: Window) -> list[Call]:
    """Calls that started in ``window`` and had sent at least one attempt."""
    return [c for c in calls if window.start <= c.start < window.end and c.attempts]


def attempts_per_call(calls: Iterable[Call], windows: Windows, statistic: str = "max") -> Measurement | None:
    """Attempts per logical call, exactly, from the call log (None: no call in the window).

    Counts every call that started from the outage's start to the recovery's end; a call
    still retrying counts the attempts it has made so far. Calls that never sent an attempt
    are left out.
    """
    statistic = check_statistic(statistic)
    chosen = calls_in(calls, windows.span)
    if not chosen:
        return None
    counts = [len(c.attempts) for c in chosen]
    histogram: dict[int, int] = defaultdict(int)
    for n in counts:
        histogram[n] += 1
    details = {
        "windows": windows.to_dict(), "statistic": statistic, "estimated": False,
        "calls": len(chosen), "in_flight": sum(1 for c in chosen if not c.finished),
        "failed": sum(1 for c in chosen if c.finished and not c.ok),
        "dns_failures": sum(1 for c in chosen for a in c.attempts if a.dns_failure),
        "histogram": dict(sorted(histogram.items())),
        **{s: summarize(counts, s) for s in STATISTICS},
    }
    return Measurement(summarize(counts, statistic), details)


def estimated_attempts_per_call(traffic: Traffic, windows: Windows) -> Measurement:
    """Attempts per call estimated from server-side counts (a service without a call log).

    ``attempts(outage..recovery) / (baseline LB request rate * its duration)``: the calls
    the service would have made at its baseline pace, each one attempt at baseline. A mean,
    and only as good as that assumption.
    """
    span = windows.span
    base_requests = windows.baseline.count(traffic.lb)
    expected = _floored_rate(base_requests, windows.baseline) * span.seconds
    attempts = traffic.attempts(span)
    details = {"windows": windows.to_dict(), "statistic": "mean", "estimated": True,
               "attempts": attempts, "lb_requests": span.count(traffic.lb),
               "failed_lookups": traffic.failed_lookups(span), "expected_calls": expected,
               "baseline_lb_requests": base_requests, "dns_scope": traffic.dns_scope}
    return Measurement(attempts / expected if expected > 0 else 0.0, details, traffic.notes)


def dns_query_storm(traffic: Traffic, windows: Windows, min_baseline_qps: float = 1.0) -> Measurement:
    """Queries per second for the endpoint's name while it was empty, over the service's
    baseline request rate.

    ``qps(outage) / max(LB requests/s at baseline, min_baseline_qps)``; every query for the
    name counts (A, AAAA, any answer). The denominator is the service's pace at rest, not
    its lookup rate at rest: a client that keeps connections alive hardly looks the name up
    at rest, one that opens a connection per request looks it up per request, and either
    way a lookup (A and AAAA: 2 queries) per attempt at its usual pace reads about 2.
    """
    floor = check_seconds("min_baseline_qps", min_baseline_qps, high=1e9)
    during, base = windows.outage.rate(traffic.dns), windows.baseline.rate(traffic.dns)
    pace = windows.baseline.rate(traffic.lb)
    details = {"windows": windows.to_dict(), "outage_qps": during, "baseline_qps": base,
               "baseline_request_rate": pace,
               "outage_queries": windows.outage.count(traffic.dns),
               "baseline_queries": windows.baseline.count(traffic.dns),
               "baseline_floored": pace < floor, "dns_scope": traffic.dns_scope,
               "owners": traffic.owners(windows.outage)["dns"]}
    return Measurement(during / max(pace, floor), details, traffic.notes)


def recovery_herd(traffic: Traffic, windows: Windows, bin_seconds: float = 1.0) -> Measurement | None:
    """Peak LB request rate in ``bin_seconds`` bins across the recovery window, over baseline.

    Bins start at the recovery's start; a tail shorter than a bin is left out. None while
    the outage is still going on (there is no recovery yet).

    Raises:
        ConfigError: ``bin_seconds`` is not a duration or longer than the recovery window.
    """
    width = check_seconds("bin_seconds", bin_seconds)
    if windows.kind == ONGOING:
        return None
    recovery = windows.recovery
    n = math.floor(recovery.seconds / width + 1e-9)
    if n < 1:
        raise ConfigError("bin_seconds", f"{width:g} s is longer than the recovery window "
                          f"({recovery.seconds:g} s)", "use a bin no longer than recovery_seconds")
    bins = [Window(recovery.start + i * width, recovery.start + (i + 1) * width).count(traffic.lb)
            for i in range(n)]
    base_requests = windows.baseline.count(traffic.lb)
    base = _floored_rate(base_requests, windows.baseline)
    peak = max(bins)
    details = {"windows": windows.to_dict(), "bin_seconds": width, "bins": bins,
               "peak_rate": peak / width, "peak_bin": bins.index(peak), "baseline_rate": base,
               "baseline_floored": base_requests < 1}
    return Measurement(peak / width / base, details)


def request_rate(traffic: Traffic, window: Window) -> float:
    """The service's LB requests per second in ``window``."""
    return window.rate(traffic.lb)


# --- backoff shape ---------------------------------------------------------------------


def gaps(call: Call) -> list[float]:
    """Seconds between the end of each attempt and the start of the next (the backoff).

    An attempt with no recorded end is measured from its start.
    """
    out = []
    for prev, nxt in pairwise(call.attempts):
        begin = prev.end if prev.end is not None else prev.start
        out.append(max(0.0, nxt.start - begin))
    return out


def backoff_shape(calls: Iterable[Call], windows: Windows, min_growth: float = 1.5,
                  min_jitter: float = 0.1, sync_window: float = SYNC_WINDOW) -> dict[str, Any]:
    """How retried calls spaced their attempts, from the call log.

    Returns a dict (numbers are None where there is nothing to compute them from):

    - ``calls``: calls that started in the outage..recovery span and were retried;
    - ``growth``: median ratio of successive gaps of a call (gaps under 1 ms count as 1 ms):
      about 2 for exponential backoff, 1 for a fixed delay or immediate retries;
    - ``jitter``: median over k of the coefficient of variation (population) of the k-th
      gap across calls: about 0.58 for full jitter, near 0 without jitter;
    - ``synchronized``: fraction of retry attempts (number >= 2) with a retry attempt of
      another process (different pid) within ``sync_window`` seconds;
      ``synchronized_by_chance``: that fraction for independent processes at the same rates;
    - ``growing`` (growth >= min_growth), ``jittered`` (jitter >= min_jitter), ``lockstep``
      (synchronized above one half and above twice the chance level), and ``ok`` = growing
      and jittered and not lockstep.
    """
    span = windows.span
    retried = [c for c in calls_in(calls, span) if len(c.attempts) >= 2]
    spacing = [gaps(c) for c in retried]
    ratios = [max(g[i + 1], MIN_GAP) / max(g[i], MIN_GAP) for g in spacing for i in range(len(g) - 1)]
    by_index: dict[int, list[float]] = defaultdict(list)
    for g in spacing:
        for k, gap in enumerate(g):
            by_index[k].append(max(gap, MIN_GAP))
    cvs = [statistics.pstdev(xs) / statistics.fmean(xs) for _, xs in sorted(by_index.items()) if len(xs) >= 2]
    growth = statistics.median(ratios) if ratios else None
    jitter = statistics.median(cvs) if cvs else None
    synchronized, by_chance, instances = _synchronization(retried, span, sync_window)
    growing = growth is not None and growth >= min_growth
    jittered = jitter is not None and jitter >= min_jitter
    lockstep = synchronized is not None and synchronized > max(0.5, 2 * by_chance)
    return {
        "calls": len(retried), "growth": growth, "jitter": jitter, "synchronized": synchronized,
        "synchronized_by_chance": by_chance, "instances": instances,
        "growing": growing, "jittered": jittered, "lockstep": lockstep,
        "ok": bool(retried) and growing and jittered and not lockstep,
        "median_gaps": [statistics.median(by_index[k]) for k in sorted(by_index)][:10],
        "min_growth": min_growth, "min_jitter": min_jitter, "windows": windows.to_dict(),
    }


def _synchronization(retried: Sequence[Call], span: Window,
                     width: float) -> tuple[float | None, float, int]:
    """(fraction of retry attempts near another pid's, the chance level, number of pids)."""
    marks = sorted((a.start, c.pid) for c in retried for a in c.attempts[1:])
    pids: dict[int, int] = defaultdict(int)
    for _, pid in marks:
        pids[pid] += 1
    if not marks:
        return None, 0.0, 0
    hits = 0
    for i, (when, pid) in enumerate(marks):
        j = i - 1
        near = False
        while j >= 0 and when - marks[j][0] <= width and not near:
            near = marks[j][1] != pid
            j -= 1
        j = i + 1
        while j < len(marks) and marks[j][0] - when <= width and not near:
            near = marks[j][1] != pid
            j += 1
        hits += near
    seconds = max(span.seconds, width)
    total = len(marks)
    # Independent processes: another pid's retries arrive as a Poisson stream at its rate.
    chance = sum(n * (1 - math.exp(-(total - n) / seconds * 2 * width)) for n in pids.values()) / total
    return hits / total, chance, len(pids)
