"""Chaos Toolkit probes over the user's lease table: are the leases live, how fast do they
come back, is the manager collapsing, does anyone hold a lease it should not?

Every probe takes the table's schema (``table``, ``key``, ``owner``, ``expiry``,
``expiry_unit``, ``version``; see :mod:`chaos_dynamo.lease.schema`) and ``endpoint``
(``""`` = the lab's DynamoDB emulator, read directly; any URL otherwise). They only read.

History
    Probes that need the table over time (``seconds_to_live_fraction``, ``lease_goodput``,
    ``lease_collapse``, ``double_owned_leases``, ``lease_report``) read the timeline of the
    lease watcher (:mod:`chaos_dynamo.lease.control`) when it is fresh (its last sample is
    at most three sampling intervals old), and wait until it covers the time they judge.
    Without one they sample the table themselves from the moment they start.

Windows
    Recovery is measured from the timeline's last ``trigger_end`` marker (the end of the
    experiment's method). Without one: ``seconds_to_live_fraction`` counts from its own
    start; ``lease_goodput`` and ``lease_collapse`` judge the latest ``window`` seconds the
    watcher recorded (or, sampling themselves, the next ``window`` seconds).

Baseline
    Live fractions count deleted leases as not live: they are judged against the largest
    number of leases seen (the watcher's timeline, else the probe's own scans; see
    :mod:`chaos_dynamo.lease.measure`). A table that has held no lease at all is a
    ConfigError naming ``table``, not a perfect score.

Definitions are in :mod:`chaos_dynamo.lease.measure`; meanings, units and tolerances in
``docs/probes/lease.md``. The command line ``probes/lease`` is :func:`main`.
"""

import argparse
import bisect
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

from chaos_dynamo.clock import REAL_CLOCK, Clock
from chaos_dynamo.control._client import JsonDict
from chaos_dynamo.errors import ConfigError, LabError
from chaos_dynamo.lease import measure, timeline
from chaos_dynamo.lease.schema import LeaseSchema
from chaos_dynamo.lease.table import TableReader, table_reader
from chaos_dynamo.lease.timeline import TRIGGER_END, Sample, Timeline
from chaos_dynamo.lease.watch import (
    DEFAULT_INTERVAL,
    Sampler,
    make_attempts,
    read_status,
    timeline_path,
)
from chaos_dynamo.tolerances import number_in_range as _number
from chaos_dynamo.verdicts import VerdictParser, lab_configuration, print_verdict
from chaos_dynamo.verdicts import check as _check

__all__ = ["live_lease_fraction", "expired_lease_count", "seconds_to_live_fraction", "lease_goodput",
           "lease_collapse", "double_owned_leases", "lease_report"]

logger = logging.getLogger("chaostoolkit")
Configuration = Mapping[str, Any] | None

OWN_INTERVAL = 0.5
"""Seconds between a probe's own samples (stretched to twice a slow scan)."""
FRESH_INTERVALS = 3.0
"""A watcher timeline is fresh when its last sample is at most this many intervals old."""
MAX_SECONDS = 86_400.0


# --- arguments ----------------------------------------------------------------------------


def _service(value: object) -> str:
    if not isinstance(value, str):
        raise ConfigError("service", f"{value!r} is not a service name",
                          "give the lease-holding service's name, or \"\" to count no requests")
    return value.strip()


def _need_version(schema: LeaseSchema, what: str) -> None:
    if not schema.version:
        raise ConfigError("version", f"is \"\", and {what} counts successful renewals by the growth of the "
                          "lease's version", "set version (lease_version) to the attribute your service bumps "
                          "on every renewal and acquisition; without one, use live_lease_fraction and "
                          "seconds_to_live_fraction")


@dataclass
class _Probe:
    """What every probe call shares: the schema, where to read, the configuration, a clock."""

    schema: LeaseSchema
    endpoint: str
    configuration: Configuration
    clock: Clock = REAL_CLOCK
    _reader: TableReader | None = None

    @property
    def reader(self) -> TableReader:
        if self._reader is None:
            self._reader = table_reader(self.schema, self.endpoint, self.configuration, clock=self.clock)
        return self._reader

    @property
    def state(self) -> str | None:
        value = (self.configuration or {}).get("chaos_dynamo_state")
        return str(value) if value else None

    @property
    def path(self) -> Path:
        return timeline_path(self.schema.table, self.state)

    @property
    def interval(self) -> float:
        """The watcher's configured interval (``lease_interval``), else the default."""
        value = (self.configuration or {}).get("lease_interval")
        try:
            return _number("lease_interval", value, 0.0, 3600.0, open_low=True) if value is not None \
                else DEFAULT_INTERVAL
        except ConfigError:
            return DEFAULT_INTERVAL


def _probe(table: str, key: str, owner: str, expiry: str, expiry_unit: str, version: str, endpoint: str,
           configuration: Configuration, clock: Clock = REAL_CLOCK) -> _Probe:
    schema = LeaseSchema.from_arguments(table, key, owner, expiry, expiry_unit, version)
    if not isinstance(endpoint, str):
        raise ConfigError("endpoint", f"{endpoint!r} is not a URL",
                          "give \"\" (the lab's DynamoDB) or a URL such as http://127.0.0.1:8000")
    return _Probe(schema, endpoint.strip(), configuration, clock)


def _no_leases(probe: _Probe) -> ConfigError:
    return ConfigError("table", f"{probe.schema.table!r} has no leases (read at "
                       f"{probe.endpoint or 'the lab DynamoDB'})", "point table (lease_table) at the table your "
                       "service writes its leases to, or start the service first")


def _need_leases(probe: _Probe, samples: Sequence[Sample]) -> None:
    """ConfigError naming ``table`` when no sample ever saw a lease."""
    if not measure.baseline_of(samples):
        raise _no_leases(probe)


# --- history: the watcher's timeline, or the probe's own samples ---------------------------


class History(Protocol):
    source: str  # "watcher" or "probe"
    interval: float

    def timeline(self) -> Timeline: ...
    def advance(self) -> None: ...


class WatchedHistory:
    """The lease watcher's timeline file, re-read as it grows.

    ``service`` is whose requests the watcher counted as attempts ("" none; None when its
    status file is missing, so unknown).
    """

    source = "watcher"

    def __init__(self, path: Path, current: Timeline, interval: float, clock: Clock,
                 service: str | None = None) -> None:
        self.path = path
        self._timeline = current
        self.interval = interval
        self.clock = clock
        self.service = service

    def timeline(self) -> Timeline:
        return self._timeline

    def advance(self) -> None:
        self.clock.sleep(max(0.05, min(self.interval / 2, 1.0)))
        self._timeline = timeline.read(self.path)
        age = _age(self._timeline, self.clock)
        if age > FRESH_INTERVALS * self.interval + 5.0:
            raise LabError(f"the lease watcher stopped writing {self.path} (its last sample is {age:.1f} s "
                           f"old); {_watcher_trouble(self.path, self.clock)}")


def _watcher_trouble(path: Path, clock: Clock) -> str:
    """Why the watcher of ``path`` may have stopped writing: its last failed scan, if any."""
    status = read_status(path) or {}
    error = status.get("last_error")
    if isinstance(error, dict) and error.get("error"):
        try:
            ago = f"{clock.now() - float(error.get('t', 0.0)):.1f} s ago"
        except (TypeError, ValueError):
            ago = "at an unknown time"
        still = "its scans are failing" if status.get("failing") else "a scan failed"
        return f"{still}: the last failed scan ({ago}) said: {error['error']}"
    return "is the lease control still running? (see the chaos log for its errors)"


class OwnHistory:
    """Samples the probe takes itself, from now on."""

    source = "probe"

    def __init__(self, sampler: Sampler, clock: Clock, interval: float = OWN_INTERVAL) -> None:
        self.sampler = sampler
        self.clock = clock
        self.interval = interval
        self._base = interval
        self.samples: list[Sample] = []
        self._due = 0.0
        self.advance()

    def timeline(self) -> Timeline:
        return Timeline(tuple(self.samples))

    def advance(self) -> None:
        self.clock.sleep(self._due - self.clock.monotonic())
        began = self.clock.monotonic()
        sample, took = self.sampler.sample()
        self.samples.append(sample)
        self.interval = max(self._base, 2 * took)
        self._due = began + self.interval


def _age(current: Timeline, clock: Clock) -> float:
    return clock.now() - max(s.t for s in current.samples) if current.samples else math.inf


def _watched(probe: _Probe) -> WatchedHistory | None:
    """The watcher's timeline of the table if it is fresh, else None."""
    current = timeline.read(probe.path)
    if not current.samples:
        return None
    interval = max(measure.sample_gap(current.samples, probe.interval), probe.interval)
    if _age(current, probe.clock) > FRESH_INTERVALS * interval:
        logger.info("the lease timeline %s is stale (last sample %.1f s ago; %s), so the probe samples %s "
                    "itself", probe.path, _age(current, probe.clock), _watcher_trouble(probe.path, probe.clock),
                    probe.schema.table)
        return None
    status = read_status(probe.path)
    service = status.get("service") if status is not None else None
    return WatchedHistory(probe.path, current, interval, probe.clock,
                          str(service) if isinstance(service, str) else None)


def _history(probe: _Probe, service: str = "") -> History:
    watched = _watched(probe)
    if watched is not None:
        return watched
    lab = None
    if service:
        from chaos_dynamo.endpoint._lab import lab_info

        lab = lab_info(probe.configuration)
    attempts = make_attempts(service, lab, probe.state, probe.clock.now())
    sampler = Sampler(probe.reader, attempts, versioned=bool(probe.schema.version), clock=probe.clock)
    return OwnHistory(sampler, probe.clock)


def _until(history: History, done: Callable[[Timeline], bool], deadline: float, clock: Clock) -> Timeline:
    """Advance ``history`` until ``done`` or the wall clock passes ``deadline``."""
    while True:
        current = history.timeline()
        if done(current) or clock.now() >= deadline:
            return current
        history.advance()


def _covers(end: float) -> Callable[[Timeline], bool]:
    return lambda tl: bool(tl.samples) and max(s.t for s in tl.samples) >= end


@dataclass(frozen=True)
class _Span:
    start: float
    end: float
    basis: str  # what ``start`` is


def _window(history: History, window: float, started: float) -> _Span:
    """The window a goodput or collapse probe judges (see the module docstring)."""
    current = history.timeline()
    marker = current.last_marker(TRIGGER_END)
    if marker is not None:
        return _Span(marker, marker + window, "trigger_end")
    if history.source == "watcher":
        first = min(s.t for s in current.samples)
        start = max(first, started - window)
        return _Span(start, start + window, "the latest window recorded (no trigger_end marker)")
    first = min(s.t for s in current.samples)
    return _Span(first, first + window, "the probe's start (no lease watcher)")


def _history_over(history: History, span: _Span, clock: Clock,
                  settled: Callable[[Timeline], bool] | None = None) -> Timeline:
    """Wait until ``history`` covers ``span`` (bounded) or ``settled`` says the answer can
    no longer change, and return it."""
    deadline = span.end + FRESH_INTERVALS * history.interval + 1.0
    covers = _covers(span.end)
    return _until(history, lambda tl: covers(tl) or (settled is not None and settled(tl)), deadline, clock)


def _reached(span: _Span, target: float) -> Callable[[Timeline], bool]:
    """True once the window holds two samples and one at or above ``target``: the fleet
    cannot be judged collapsed any more, whatever comes later."""
    def check(tl: Timeline) -> bool:
        chosen = [p.fraction for p in measure.judge(tl.samples)
                  if span.start <= p.t <= span.end and p.fraction is not None]
        return len(chosen) >= 2 and any(f >= target for f in chosen)

    return check


def _with_attempts(samples: Sequence[Sample], service: str, probe: _Probe,
                   history: History) -> tuple[list[Sample], list[str]]:
    """Samples whose ``attempts`` are ``service``'s requests.

    The probe's own samples were counted for ``service`` already. The watcher's were
    counted for its ``lease_service``: with no ``service`` asked for, those are used (and
    a note says whose they are); when ``service`` is another one (or the watcher's is not
    known, or it counted none), ``service``'s requests are counted from the lab's LB log
    for these samples instead, and a note says so.
    """
    if not samples or not isinstance(history, WatchedHistory):
        return list(samples), []
    recorded = history.service
    if not service:
        known = recorded and all(s.attempts is not None for s in samples)
        return list(samples), ([f"requests are {recorded!r}'s, as the lease watcher counted them "
                                "(its lease_service)"] if known else [])
    if recorded == service and all(s.attempts is not None for s in samples):
        return list(samples), []
    from chaos_dynamo.endpoint._lab import lab_info
    from chaos_dynamo.lease.watch import http_lb_log, registry_addresses
    from chaos_dynamo.services.attribution import request_service

    first = min(s.t for s in samples)
    by_address = registry_addresses(probe.state)()
    times = sorted(r.time for r in http_lb_log(lab_info(probe.configuration))(first)
                   if request_service(r, by_address) == service)
    filled = [replace(s, attempts=bisect.bisect_right(times, s.t)) for s in samples]
    why = ("the watcher counted no service's requests" if recorded == "" else
           "the watcher's service is not known (no status file)" if recorded is None else
           f"the watcher counted the requests of {recorded!r}, not {service!r}")
    return filled, [f"{why}; {service!r}'s were counted from the lab's LB log for this window"]


def _merged(current: Timeline, span: _Span, filled: Sequence[Sample]) -> Timeline:
    """``current`` with its samples inside ``span`` replaced by ``filled``: the samples
    before the window stay (they set the baseline)."""
    outside = [s for s in current.samples if not span.start <= s.t <= span.end]
    return Timeline(tuple(sorted([*outside, *filled], key=lambda s: s.t)), current.markers)


def _judged(history: History, span: _Span, service: str, probe: _Probe,
            settled: Callable[[Timeline], bool] | None = None) -> tuple[Timeline, list[str]]:
    current = _history_over(history, span, probe.clock, settled)
    _need_leases(probe, current.samples)
    chosen = measure.in_window(current.samples, span.start, span.end)
    filled, notes = _with_attempts(chosen, service, probe, history)
    last = max((s.t for s in current.samples), default=-math.inf)
    if last < span.end:
        why = ("the verdict was settled" if settled is not None and settled(current)
               else "the timeline ends there")
        notes.append(f"judged up to {span.end - last:.1f} s before the window's end ({why})")
    return _merged(current, span, filled), notes


# --- the probes ------------------------------------------------------------------------


def live_lease_fraction(table: str, key: str = "lease_id", owner: str = "owner", expiry: str = "expires_at",
                        expiry_unit: str = "s", version: str = "version", endpoint: str = "", *,
                        configuration: dict[str, Any] | None = None,
                        secrets: dict[str, Any] | None = None) -> float:
    """Fraction of the table's leases whose expiry is in the future, now, out of the most
    leases seen (the lease watcher's timeline, when fresh, else this scan): deleted leases
    count as not live. Tolerance: ``at_least`` 0.99.

    Raises:
        ConfigError: naming ``table`` when the table has no leases (and never had, in the
            watcher's timeline).
    """
    point = _now(_probe(table, key, owner, expiry, expiry_unit, version, endpoint, configuration))
    return point.fraction if point.fraction is not None else 0.0  # never None: _now raises instead


def _now(probe: _Probe) -> measure.Point:
    """One scan now, judged against the watcher's baseline when its timeline is fresh."""
    watched = _watched(probe)
    baseline = measure.baseline_of(watched.timeline().samples) if watched is not None else 0
    sample = measure.sample_of_pages(probe.reader.pages())
    point = measure.judge([sample], baseline)[0]
    if point.fraction is None:
        raise _no_leases(probe)
    logger.info("lease table %s now: %.3f live (%d of %d leases live, %d expired, %d missing of the %d seen%s)",
                probe.schema.table, point.fraction, sample.live, sample.total, sample.expired, point.missing,
                point.baseline, " by the lease watcher" if watched is not None else "")
    return point


def expired_lease_count(table: str, key: str = "lease_id", owner: str = "owner", expiry: str = "expires_at",
                        expiry_unit: str = "s", version: str = "version", endpoint: str = "", *,
                        configuration: dict[str, Any] | None = None,
                        secrets: dict[str, Any] | None = None) -> int:
    """Number of the table's leases whose expiry has passed, now, plus those missing (deleted)
    since the lease watcher saw them. Tolerance: ``at_most`` a small number (0 for a fleet
    at rest).

    Raises:
        ConfigError: naming ``table`` when the table has no leases.
    """
    point = _now(_probe(table, key, owner, expiry, expiry_unit, version, endpoint, configuration))
    return point.not_live


def seconds_to_live_fraction(table: str, fraction: float = 0.99, timeout: float = 60.0,
                             key: str = "lease_id", owner: str = "owner", expiry: str = "expires_at",
                             expiry_unit: str = "s", version: str = "version", endpoint: str = "", *,
                             configuration: dict[str, Any] | None = None,
                             secrets: dict[str, Any] | None = None) -> float:
    """Seconds from the last ``trigger_end`` marker (else from the probe's start) to the
    first sample with at least ``fraction`` of the leases live. Never within ``timeout``:
    the seconds waited plus one sampling interval, never below ``timeout`` (so ``at_most
    timeout`` fails). Tolerance: ``at_most`` 30.
    """
    return _seconds_to_live(fraction, timeout, _probe(table, key, owner, expiry, expiry_unit, version,
                                                      endpoint, configuration))


def _seconds_to_live(fraction: float, timeout: float, probe: _Probe) -> float:
    target = _number("fraction", fraction, 0.0, 1.0)
    wait = _number("timeout", timeout, 0.0, MAX_SECONDS, open_low=True)
    started = probe.clock.now()
    history = _history(probe)
    marker = history.timeline().last_marker(TRIGGER_END) if history.source == "watcher" else None
    since = marker if marker is not None else started
    current = _until(history, lambda tl: measure.time_to_fraction(tl.samples, since, target) is not None,
                     max(since + wait, started), probe.clock)
    seconds = measure.time_to_fraction(current.samples, since, target)
    basis = "trigger_end" if marker is not None else "the probe's start"
    if seconds is not None:
        logger.info("seconds_to_live_fraction of %s = %.2f: %g of the leases live %.2f s after %s (%s)",
                    probe.schema.table, seconds, target, seconds, basis, history.source)
        return seconds
    _need_leases(probe, current.samples)
    value = max(probe.clock.now() - since, wait) + history.interval
    points = measure.judge(current.samples)
    last = points[-1].fraction if points and points[-1].fraction is not None else float("nan")
    logger.warning("seconds_to_live_fraction of %s = %.2f: fewer than %g of the leases live %g s after %s "
                   "(last live fraction %.3f)", probe.schema.table, value, target, wait, basis, last)
    return value


def lease_goodput(table: str, window: float = 10.0, service: str = "", key: str = "lease_id",
                  owner: str = "owner", expiry: str = "expires_at", expiry_unit: str = "s",
                  version: str = "version", endpoint: str = "", *,
                  configuration: dict[str, Any] | None = None,
                  secrets: dict[str, Any] | None = None) -> JsonDict:
    """Successful renewals per second over ``window`` seconds from the last ``trigger_end``,
    the service's requests per second (``service``: its LB requests; None without one) and
    their ratio: ``{"renewals_per_second", "attempts_per_second", "efficiency", ...}``.
    Tolerance: ``chaos_dynamo.tolerances.at_least`` with ``key`` ``renewals_per_second``.
    """
    probe = _probe(table, key, owner, expiry, expiry_unit, version, endpoint, configuration)
    _need_version(probe.schema, "lease_goodput")
    width = _number("window", window, 0.0, MAX_SECONDS, open_low=True)
    who = _service(service)
    started = probe.clock.now()
    history = _history(probe, who)
    span = _window(history, width, started)
    judged, notes = _judged(history, span, who, probe)
    rate = measure.goodput(judged.samples, span.start, span.end)
    if rate is None:
        raise LabError(f"the lease timeline of {probe.schema.table} has {len(judged.samples)} sample(s) from "
                       f"{span.start:.3f} to {span.end:.3f}, too few for a goodput (needs two)")
    result: JsonDict = {**rate.to_dict(), "window": width, "from": span.basis, "source": history.source,
                        "service": who, "table": probe.schema.table, "notes": notes}
    aps, eff = rate.attempts_per_second, rate.efficiency
    logger.info("lease_goodput of %s = %.2f renewals/s over %.1f s from %s; %s", probe.schema.table,
                rate.renewals_per_second, rate.seconds, span.basis,
                f"{who} sent {aps:.2f} requests/s, efficiency {eff if eff is not None else float('nan'):.3f}"
                if aps is not None else "requests unknown (no service)")
    return result


def lease_collapse(table: str, window: float = 15.0, target: float = 0.99, min_improvement: float = 0.05,
                   max_efficiency: float = 0.1, service: str = "", key: str = "lease_id",
                   owner: str = "owner", expiry: str = "expires_at", expiry_unit: str = "s",
                   version: str = "version", endpoint: str = "", min_attempts_per_second: float = 1.0, *,
                   configuration: dict[str, Any] | None = None,
                   secrets: dict[str, Any] | None = None) -> JsonDict:
    """Congestive collapse over ``window`` seconds from the last ``trigger_end``: the live
    fraction stays below ``target`` and improves by less than ``min_improvement`` while the
    service sends at least ``min_attempts_per_second`` requests at an efficiency (renewals per
    request) below ``max_efficiency``. Returns ``{"collapsed", "stalled", "reason", ...every
    number}``. It returns early once a sample in the window is at or above ``target`` (the
    verdict can no longer be "collapsed"). Tolerance: ``chaos_dynamo.tolerances.is_false`` with
    ``{"key": "collapsed"}`` (a ``jsonpath`` tolerance needs ``chaostoolkit-lib[jsonpath]``;
    see docs/probes/lease.md).
    """
    probe = _probe(table, key, owner, expiry, expiry_unit, version, endpoint, configuration)
    _need_version(probe.schema, "lease_collapse")
    limits = _collapse_limits(window, target, min_improvement, max_efficiency, min_attempts_per_second)
    who = _service(service)
    started = probe.clock.now()
    history = _history(probe, who)
    span = _window(history, limits["window"], started)
    judged, notes = _judged(history, span, who, probe, _reached(span, limits["target"]))
    verdict = measure.collapse_verdict(judged, span.start, limits["window"], limits["target"],
                                       limits["min_improvement"], limits["max_efficiency"],
                                       limits["min_attempts_per_second"])
    result: JsonDict = {**verdict, "window": limits["window"], "from": span.basis, "source": history.source,
                        "service": who, "table": probe.schema.table, "notes": notes}
    logger.info("lease_collapse of %s (from %s): %s", probe.schema.table, span.basis, verdict["reason"])
    return result


def _collapse_limits(window: object, target: object, min_improvement: object, max_efficiency: object,
                     min_attempts_per_second: object) -> dict[str, float]:
    return {"window": _number("window", window, 0.0, MAX_SECONDS, open_low=True),
            "target": _number("target", target, 0.0, 1.0),
            "min_improvement": _number("min_improvement", min_improvement, 0.0, 1.0),
            "max_efficiency": _number("max_efficiency", max_efficiency, 0.0, 1e9),
            "min_attempts_per_second": _number("min_attempts_per_second", min_attempts_per_second, 0.0, 1e9)}


def double_owned_leases(table: str, seconds: float = 10.0, key: str = "lease_id", owner: str = "owner",
                        expiry: str = "expires_at", expiry_unit: str = "s", version: str = "version",
                        endpoint: str = "", *, configuration: dict[str, Any] | None = None,
                        secrets: dict[str, Any] | None = None) -> int:
    """Takeovers of a live lease by another owner, plus version regressions, seen by the
    lease watcher since the experiment began (without a watcher: seen by the probe over the
    next ``seconds``). Tolerance: ``at_most`` 0.
    """
    return _double_owned(seconds, _probe(table, key, owner, expiry, expiry_unit, version, endpoint,
                                         configuration))


def _double_owned(seconds: object, probe: _Probe) -> int:
    width = _number("seconds", seconds, 0.0, MAX_SECONDS, open_low=True)
    history = _history(probe)
    if isinstance(history, OwnHistory):
        end = history.samples[0].t + width
        _until(history, _covers(end), end, probe.clock)
        tracker = history.sampler.tracker
        count, examples = tracker.count, tracker.examples
        span = f"over {history.samples[-1].t - history.samples[0].t:.1f} s of the probe's own scans"
    else:
        current = history.timeline()
        count, examples = current.samples[-1].double_owned, []
        span = "since the lease watcher started"
    _need_leases(probe, history.timeline().samples)
    logger.info("double_owned_leases of %s = %d %s%s", probe.schema.table, count, span,
                f"; first: {examples[:3]}" if examples else "")
    return count


def lease_report(table: str, window: float = 15.0, fraction: float = 0.99, min_improvement: float = 0.05,
                 max_efficiency: float = 0.1, service: str = "", key: str = "lease_id",
                 owner: str = "owner", expiry: str = "expires_at", expiry_unit: str = "s",
                 version: str = "version", endpoint: str = "", *,
                 configuration: dict[str, Any] | None = None,
                 secrets: dict[str, Any] | None = None) -> JsonDict:
    """Everything at once, for the journal: the timeline (at most 120 points), the markers,
    the live fraction now, seconds to ``fraction`` live, goodput and the collapse verdict
    over ``window`` (with ``fraction`` as the target) and the double-owner count.

    Chaos Toolkit stops checking a hypothesis at its first failing probe; as a rollback this
    records every number. It judges nothing: give it no tolerance.
    """
    probe = _probe(table, key, owner, expiry, expiry_unit, version, endpoint, configuration)
    return build_report(probe, window, fraction, min_improvement, max_efficiency, _service(service))


def build_report(probe: _Probe, window: object, fraction: object, min_improvement: object,
                 max_efficiency: object, service: str) -> JsonDict:
    limits = _collapse_limits(window, fraction, min_improvement, max_efficiency, 1.0)
    started = probe.clock.now()
    history = _history(probe, service)
    span = _window(history, limits["window"], started)
    if history.source == "probe" or history.timeline().last_marker(TRIGGER_END) is not None:
        _history_over(history, span, probe.clock)
    current = history.timeline()
    _need_leases(probe, current.samples)
    last = measure.judge(current.samples)[-1]
    live_fraction = last.fraction if last.fraction is not None else 0.0
    marker = current.last_marker(TRIGGER_END)
    since = marker if marker is not None else min(s.t for s in current.samples)
    to_live = measure.time_to_fraction(current.samples, since, limits["target"])
    report: JsonDict = {
        "table": probe.schema.table, "schema": probe.schema.describe(), "source": history.source,
        "service": service, "at": probe.clock.now(),
        "live_fraction": live_fraction, "live": last.sample.live, "total": last.sample.total,
        "expired": last.sample.expired, "missing": last.missing, "baseline": last.baseline,
        "seconds_to_live_fraction": {"fraction": limits["target"], "since": since, "seconds": to_live,
                                     "from": "trigger_end" if marker is not None else "the first sample"},
        "double_owned": last.sample.double_owned,
        "markers": measure.markers_json(current.markers),
        "timeline": measure.downsample(current, 120),
        "samples": len(current.samples), "window": {"start": span.start, "end": span.end, "from": span.basis},
    }
    if isinstance(history, OwnHistory):
        report["double_owned_examples"] = history.sampler.tracker.examples
    if probe.schema.version:
        chosen = measure.in_window(current.samples, span.start, span.end)
        filled, notes = _with_attempts(chosen, service, probe, history)
        rate = measure.goodput(filled, span.start, span.end)
        report["goodput"] = rate.to_dict() if rate else {"skipped": "fewer than two samples in the window"}
        try:
            report["collapse"] = measure.collapse_verdict(
                _merged(current, span, filled), span.start, limits["window"], limits["target"],
                limits["min_improvement"], limits["max_efficiency"], limits["min_attempts_per_second"])
        except LabError as exc:
            report["collapse"] = {"skipped": str(exc)}
        report["notes"] = notes
    else:
        report["goodput"] = report["collapse"] = {"skipped": "the schema has no version attribute"}
        report["notes"] = []
    logger.info("lease_report of %s (%s, %d samples): live %.3f, seconds to %g live %s, double owned %d, "
                "collapse: %s", probe.schema.table, history.source, len(current.samples), live_fraction,
                limits["target"], "never" if to_live is None else f"{to_live:.1f}", last.sample.double_owned,
                report["collapse"].get("reason", report["collapse"].get("skipped")))
    return report


# --- command line: probes/lease ----------------------------------------------------------


def parser() -> argparse.ArgumentParser:
    p = VerdictParser("lease", prog="probes/lease",
                description="Lease table verdict: live leases, recovery, collapse, double owners (one JSON "
                            "verdict; exit 0 pass, 1 fail, 2 usage or lab error).")
    p.add_argument("table", help="the lease table's name")
    p.add_argument("--key", default="lease_id", help="attribute identifying a lease (default lease_id)")
    p.add_argument("--owner", default="owner", help="attribute holding the owner (default owner)")
    p.add_argument("--expiry", default="expires_at", help="attribute holding the expiry (default expires_at)")
    p.add_argument("--expiry-unit", default="s", choices=["s", "ms", "iso"], help="unit of the expiry")
    p.add_argument("--version", default="version", help="attribute holding the version (\"\" if none)")
    p.add_argument("--endpoint", default="", help="DynamoDB URL (default: the lab's emulator)")
    p.add_lab_options()
    p.add_argument("--service", default="", help="whose LB requests are the attempts (default: none)")
    p.add_argument("--window", type=float, default=15.0, help="collapse/goodput window, seconds")
    p.add_argument("--min-live-fraction", type=float, default=0.99, help="judge: live fraction now, and the "
                   "collapse target")
    p.add_argument("--max-seconds-to-live", type=float, default=None,
                   help="judge: seconds from trigger_end to --min-live-fraction live (off by default)")
    p.add_argument("--max-double-owned", type=int, default=0, help="judge: double-owned leases")
    p.add_argument("--min-improvement", type=float, default=0.05)
    p.add_argument("--max-efficiency", type=float, default=0.1)
    return p


def _skipped(name: str, op: str, limit: Any, reason: str) -> dict[str, Any]:
    """A check that cannot be computed by design (not a failure): ``"ok": null``."""
    return {"name": name, "value": None, "op": op, "limit": limit, "ok": None, "skipped": reason}


def run(args: argparse.Namespace) -> dict[str, Any]:
    configuration = lab_configuration(args)
    probe = _probe(args.table, args.key, args.owner, args.expiry, args.expiry_unit, args.version,
                   args.endpoint, configuration)
    report = build_report(probe, args.window, args.min_live_fraction, args.min_improvement,
                          args.max_efficiency, _service(args.service))
    collapse = report["collapse"]
    checks = [
        _check("not_collapsed", collapse.get("collapsed"), "==", False, str(collapse.get("skipped", "")))
        if probe.schema.version else
        _skipped("not_collapsed", "==", False, "--version is \"\": goodput, and so collapse, is counted by "
                 "version growth"),
        _check("live_fraction", report["live_fraction"], ">=", args.min_live_fraction),
        _check("double_owned", report["double_owned"], "<=", args.max_double_owned),
    ]
    if args.max_seconds_to_live is not None:
        checks.append(_check("seconds_to_live_fraction", report["seconds_to_live_fraction"]["seconds"], "<=",
                             args.max_seconds_to_live, "the live fraction never reached "
                             f"{args.min_live_fraction:g} in the timeline"))
    return {"probe": "lease", "ok": all(c["ok"] for c in checks if "skipped" not in c), "table": args.table,
            "source": report["source"], "checks": checks, "report": report}


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``probes/lease``; print one JSON verdict; 0 pass, 1 fail, 2 usage or lab error."""
    args = parser().parse_args(argv)
    return print_verdict("lease", lambda: run(args), {"table": args.table})
