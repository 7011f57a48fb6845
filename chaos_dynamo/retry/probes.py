"""Chaos Toolkit probes: how a service retried while its DynamoDB endpoint was empty.

Each probe takes the service's name (as ``chaos-dynamo service start`` recorded it, or the
SDK app id it sends in its User-Agent), finds the endpoint's most recent outage in the
lab's availability timeline, reads the lab's LB and DNS logs (and the service's call log,
when it has one) and returns one number a tolerance judges. The definitions are in
:mod:`chaos_dynamo.retry.measure`; meanings, units and sensible tolerances in
``docs/probes/retry.md``. Typical tolerances, with ``chaos_dynamo.tolerances``::

    {"type": "probe", "name": "at-most", "provider": {"type": "python",
     "module": "chaos_dynamo.tolerances", "func": "at_most",
     "arguments": {"limit": "${max_amplification}"}}}

A probe run after the endpoint came back waits until its recovery window has closed, so
put the probes that need the recovery (amplification, attempts per call, herd, backoff)
after ``chaos_dynamo.health.probes.seconds_to_healthy`` in a hypothesis.
"""

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import quote

from chaos_dynamo.calllog import Call, read_calls
from chaos_dynamo.clock import REAL_CLOCK, Clock
from chaos_dynamo.control._client import JsonDict
from chaos_dynamo.endpoint import _lab
from chaos_dynamo.errors import ConfigError, LabError
from chaos_dynamo.lab.state import EndpointInfo, LabInfo
from chaos_dynamo.retry import measure
from chaos_dynamo.retry.measure import Measurement, Traffic, Window, Windows
from chaos_dynamo.services import registry
from chaos_dynamo.services.attribution import request_service

__all__ = ["retry_report", "retry_amplification", "attempts_per_call", "dns_query_storm", "recovery_herd",
           "backoff_shape", "backoff_growth", "backoff_jitter", "backoff_synchronized",
           "request_rate", "lb_request_count", "dns_query_count"]

logger = logging.getLogger("chaostoolkit")
Configuration = Mapping[str, Any] | None

LOG_GRACE = 1.0
"""Seconds past the recovery window's end before the logs are read (requests in flight)."""
LOG_NEARLY_FULL = 150_000
"""A log this long whose oldest record is after the baseline has probably lost records."""


# --- what the lab logged, fetched over its control API --------------------------------


@dataclass(frozen=True)
class Request:
    """An LB request as the lab's ``/_chaos_dynamo/lb/log`` reports it (``status`` None: no
    response was sent)."""

    time: float
    client: str
    user_agent: str = ""
    service: str = ""
    lb: str = ""
    operation: str = ""
    status: int | None = None


@dataclass(frozen=True)
class Query:
    """A DNS query as the lab's ``/_chaos_dynamo/dns/log`` reports it."""

    time: float
    client: str
    name: str
    qtype: str
    rcode: str
    answers: int


class LabSource(Protocol):
    """Where the probes read the lab's logs (the HTTP API; a fake in unit tests)."""

    def availability(self, endpoint: str) -> list[dict[str, Any]]: ...
    def lb_log(self, since: float) -> list[Request]: ...
    def dns_log(self, since: float) -> list[Query]: ...


class HttpLab:
    """The lab's control API, its logs narrowed to the view ``info`` is: in a namespace, the
    requests its load balancers served and the queries for names in its zone only."""

    def __init__(self, info: LabInfo) -> None:
        self.api = info.api_url.rstrip("/")
        self.info = info

    def availability(self, endpoint: str) -> list[dict[str, Any]]:
        url = f"{self.api}/_chaos_dynamo/availability?endpoint={quote(endpoint)}"
        try:
            entries = _lab.http_json(url)
        except LabError as exc:
            if " answered 404" in str(exc):
                raise LabError(f"the lab at {self.api} keeps no availability timeline (GET "
                               "/_chaos_dynamo/availability answered 404); restart it with this "
                               "version of chaos-dynamo (`chaos-dynamo lab down`, `lab up`)") from None
            raise
        return [dict(e) for e in entries]

    def lb_log(self, since: float) -> list[Request]:
        lbs = self.info.scope_lbs
        return [Request(time=float(r["time"]), client=str(r.get("client", "")),
                        user_agent=str(r.get("user_agent") or ""), service=str(r.get("service") or ""),
                        lb=str(r.get("lb", "")), operation=str(r.get("operation") or ""),
                        status=r["status"] if isinstance(r.get("status"), int) else None)
                for r in _lab.http_json(f"{self.api}/_chaos_dynamo/lb/log?since={since!r}")
                if lbs is None or str(r.get("lb", "")) in lbs]

    def dns_log(self, since: float) -> list[Query]:
        return [Query(time=float(q["time"]), client=str(q.get("client", "")), name=str(q.get("name", "")),
                      qtype=str(q.get("qtype", "")), rcode=str(q.get("rcode", "")),
                      answers=int(q.get("answers", 0)))
                for q in _lab.http_json(f"{self.api}/_chaos_dynamo/dns/log?since={since!r}")
                if self.info.in_scope(str(q.get("name", "")))]


# --- one observation: windows, attributed traffic, call log ----------------------------


@dataclass(frozen=True)
class Observation:
    """Everything a retry measurement reads, fetched once."""

    service: str
    endpoint: EndpointInfo
    windows: Windows
    traffic: Traffic
    record: registry.ServiceRecord | None
    calls_dir: str
    notes: tuple[str, ...]

    def calls(self) -> list[Call]:
        """The service's logged calls (empty when it has no call log)."""
        return read_calls(self.calls_dir, self.service)


def _state(configuration: Configuration) -> str | None:
    value = (configuration or {}).get("chaos_dynamo_state")
    return str(value) if value else None


def _check_number(field_name: str, value: object, low: float = 0.0) -> float:
    if (isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)
            or value < low):
        raise ConfigError(field_name, f"{value!r} is not a number", f"use a number of at least {low:g}")
    return float(value)


def observe(service: str, endpoint: str = "", baseline_seconds: float = 10.0,
            recovery_seconds: float = 10.0, configuration: Configuration = None, *,
            wait: bool = True, source: LabSource | None = None, clock: Clock = REAL_CLOCK) -> Observation:
    """Find the windows, wait for the recovery window to close (if ``wait``), read the logs.

    Raises:
        ConfigError: a bad service name, endpoint or duration.
        LabError: the lab does not answer, or the service has not run long enough.
    """
    registry.check_name(service)
    info = _lab.lab_info(configuration)
    ep = info.endpoint(endpoint)
    state = _state(configuration)
    records = registry.list_records(state)
    record = next((r for r in records if r.name == service), None)
    notes: list[str] = []
    if record is None:
        notes.append(f"service {service!r} is not recorded in {registry.services_dir(state)}: its LB "
                     "requests are attributed by the X-Chaos-Dynamo-Service header or the app id in "
                     "its User-Agent only; start it with `chaos-dynamo service start` to attribute "
                     "by source address too")
        started, subject = info.started_at, "the lab"
    elif record.started_at >= info.started_at:
        started, subject = record.started_at, f"service {service!r}"
    else:
        started, subject = info.started_at, "the lab"
    lab = source or HttpLab(info)
    windows = measure.find_windows(lab.availability(ep.name), ep.name, clock.now(), baseline_seconds,
                                   recovery_seconds, started_at=started or None, subject=subject)
    if wait and windows.kind == measure.OUTAGE:
        left = windows.recovery.end + LOG_GRACE - clock.now()
        if left > 0:
            logger.info("waiting %.1f s for the recovery window of %s to close", left, ep.name)
            clock.sleep(left)
    since = windows.baseline.start
    requests, queries = lab.lb_log(since), lab.dns_log(since)
    for what, log in (("LB", requests), ("DNS", queries)):
        if len(log) >= LOG_NEARLY_FULL and log[0].time > windows.baseline.end:
            notes.append(f"the lab's {what} log holds {len(log)} records, the oldest from after the "
                         "baseline window: it has probably dropped the baseline (it keeps the latest "
                         "200,000), so baseline rates read low; shorten the outage or lower the load")
    traffic = measure.attribute(requests, queries, service, ep.name, registry.addresses_by_service(records),
                                ("A", "AAAA") if ep.ipv6 else ("A",))
    return Observation(service, ep, windows, traffic, record, str(registry.calls_dir(state)),
                       (*notes, *traffic.notes))


def _report(name: str, observation: Observation, result: Measurement) -> float:
    for note in (*observation.notes, *result.notes):
        logger.warning("%s: %s", name, note)
    logger.info("%s of %s = %.3f (%s windows; details: %s)", name, observation.service, result.value,
                observation.windows.kind, _brief(result.details))
    return float(result.value)


def _brief(details: Mapping[str, Any]) -> str:
    skip = {"windows", "owners", "bins"}
    return ", ".join(f"{k}={_fmt(v)}" for k, v in details.items() if k not in skip)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_fmt(v)}" for k, v in value.items()) + "}"
    return str(value)


# --- the probes ---------------------------------------------------------------------


def retry_amplification(service: str, endpoint: str = "", baseline_seconds: float = 10.0,
                        recovery_seconds: float = 10.0, *, configuration: dict[str, Any] | None = None,
                        secrets: dict[str, Any] | None = None) -> float:
    """Server-side attempts per second during the outage or the recovery (the worse), over
    the baseline's: LB requests plus failed lookups of the endpoint's name.

    About 1 for a service that keeps its pace; below 1 for one that backs off; far above 1
    for a retry storm. Tolerance: ``at_most`` 2.
    """
    obs = observe(service, endpoint, baseline_seconds, recovery_seconds, configuration)
    return _report("retry_amplification", obs, measure.retry_amplification(obs.traffic, obs.windows))


def attempts_per_call(service: str, endpoint: str = "", baseline_seconds: float = 10.0,
                      recovery_seconds: float = 10.0, statistic: str = "max", *,
                      configuration: dict[str, Any] | None = None,
                      secrets: dict[str, Any] | None = None) -> float:
    """Attempts per logical call that started during the outage or the recovery.

    Exact from the service's call log (a Python service run with the shim), with
    ``statistic`` one of max, mean, p50, p95, p99. Without a call log: estimated from the
    lab's counts (attempts over the calls its baseline pace would have made), a mean only.
    Tolerance: ``at_most`` 4 (botocore standard mode's attempts for DynamoDB).

    Raises:
        LabError: the call log has no call in the window (the service made no calls).
    """
    statistic = measure.check_statistic(statistic)
    obs = observe(service, endpoint, baseline_seconds, recovery_seconds, configuration)
    calls = obs.calls()
    if not calls:
        logger.warning("attempts_per_call: service %r has no call log in %s, so the number is an "
                       "estimate from the lab's counts (a mean%s)", service, obs.calls_dir,
                       "" if statistic == "mean" else f"; statistic {statistic!r} needs a call log")
        return _report("attempts_per_call (estimated)", obs,
                       measure.estimated_attempts_per_call(obs.traffic, obs.windows))
    result = measure.attempts_per_call(calls, obs.windows, statistic)
    if result is None:
        span = obs.windows.span
        raise LabError(f"service {service!r} logged no call from {span.start:.3f} to {span.end:.3f} "
                       f"(the {obs.windows.kind} window) in {obs.calls_dir}; is it still running?")
    return _report("attempts_per_call", obs, result)


def dns_query_storm(service: str, endpoint: str = "", baseline_seconds: float = 10.0,
                    min_baseline_qps: float = 1.0, *, configuration: dict[str, Any] | None = None,
                    secrets: dict[str, Any] | None = None) -> float:
    """DNS queries per second for the endpoint's name while it was empty, over the service's
    baseline request rate (floored at ``min_baseline_qps``): about 2 for a lookup per attempt
    at the usual pace. Does not wait for the recovery. Tolerance: ``at_most`` 6; see
    docs/probes/retry.md.
    """
    _check_number("min_baseline_qps", min_baseline_qps)
    obs = observe(service, endpoint, baseline_seconds, 1.0, configuration, wait=False)
    return _report("dns_query_storm", obs,
                   measure.dns_query_storm(obs.traffic, obs.windows, min_baseline_qps))


def recovery_herd(service: str, endpoint: str = "", baseline_seconds: float = 10.0,
                  recovery_seconds: float = 10.0, bin_seconds: float = 1.0, *,
                  configuration: dict[str, Any] | None = None,
                  secrets: dict[str, Any] | None = None) -> float:
    """Peak LB request rate (per ``bin_seconds`` bin) in the recovery window, over the
    baseline rate. Tolerance: ``at_most`` 3.

    Raises:
        LabError: the endpoint is still empty: there is no recovery to measure yet.
    """
    measure.check_seconds("bin_seconds", bin_seconds)  # before waiting for the recovery window
    obs = observe(service, endpoint, baseline_seconds, recovery_seconds, configuration)
    result = measure.recovery_herd(obs.traffic, obs.windows, bin_seconds)
    if result is None:
        raise LabError(f"{obs.endpoint.name} is still empty, so there is no recovery to measure; run "
                       "recovery_herd after the method restores the endpoint")
    return _report("recovery_herd", obs, result)


def _backoff(service: str, endpoint: str, baseline_seconds: float, recovery_seconds: float,
             min_growth: float, min_jitter: float, configuration: Configuration) -> dict[str, Any]:
    min_growth = _check_number("min_growth", min_growth)
    min_jitter = _check_number("min_jitter", min_jitter)
    obs = observe(service, endpoint, baseline_seconds, recovery_seconds, configuration)
    calls = obs.calls()
    if not calls:
        raise LabError(
            f"the backoff probes need service {service!r}'s call log and {obs.calls_dir} has none: run "
            "it as a Python service with the chaos-dynamo shim (`chaos-dynamo service start` does "
            f"this), or give its processes CHAOS_DYNAMO_CALL_LOG={obs.calls_dir} and "
            f"CHAOS_DYNAMO_SERVICE={service} with CHAOS_DYNAMO_DNS set")
    shape = measure.backoff_shape(calls, obs.windows, min_growth, min_jitter)
    logger.info("backoff_shape of %s: %s", service, _brief(shape))
    return shape


def _number(shape: Mapping[str, Any], key: str, service: str) -> float:
    value = shape.get(key)
    if value is None:
        raise LabError(f"service {service!r} retried {shape['calls']} call(s) in the "
                       f"{shape['windows']['kind']} window, too few to measure {key} (needs calls with "
                       "3 or more attempts, or 2 or more retried calls); did the outage reach it?")
    return float(value)


def backoff_shape(service: str, endpoint: str = "", baseline_seconds: float = 10.0,
                  recovery_seconds: float = 10.0, min_growth: float = 1.5, min_jitter: float = 0.1, *,
                  configuration: dict[str, Any] | None = None,
                  secrets: dict[str, Any] | None = None) -> JsonDict:
    """How the service spaced the attempts of its retried calls, for the journal:
    ``{"calls", "growth", "jitter", "synchronized", "synchronized_by_chance", "growing",
    "jittered", "lockstep", "ok", ...}``. Needs the call log. Tolerance:
    ``{"type": "jsonpath", "path": "$.ok", "expect": true}``.
    """
    return _backoff(service, endpoint, baseline_seconds, recovery_seconds, min_growth, min_jitter,
                    configuration)


def backoff_growth(service: str, endpoint: str = "", baseline_seconds: float = 10.0,
                   recovery_seconds: float = 10.0, *, configuration: dict[str, Any] | None = None,
                   secrets: dict[str, Any] | None = None) -> float:
    """Median ratio of a retried call's successive inter-attempt gaps: about 2 for exponential
    backoff, 1 for fixed delays or immediate retries. Tolerance: ``at_least`` 1.5."""
    shape = _backoff(service, endpoint, baseline_seconds, recovery_seconds, 0.0, 0.0, configuration)
    return _number(shape, "growth", service)


def backoff_jitter(service: str, endpoint: str = "", baseline_seconds: float = 10.0,
                   recovery_seconds: float = 10.0, *, configuration: dict[str, Any] | None = None,
                   secrets: dict[str, Any] | None = None) -> float:
    """Median coefficient of variation of the k-th backoff gap across calls: about 0.58 for
    full jitter, near 0 without jitter. Tolerance: ``at_least`` 0.1."""
    shape = _backoff(service, endpoint, baseline_seconds, recovery_seconds, 0.0, 0.0, configuration)
    return _number(shape, "jitter", service)


def backoff_synchronized(service: str, endpoint: str = "", baseline_seconds: float = 10.0,
                         recovery_seconds: float = 10.0, *,
                         configuration: dict[str, Any] | None = None,
                         secrets: dict[str, Any] | None = None) -> float:
    """Fraction of retry attempts with another process's retry attempt within 10 ms:
    near 1 for instances retrying in lockstep. Tolerance: ``at_most`` 0.5 (compare with
    ``synchronized_by_chance`` in ``backoff_shape`` at high rates)."""
    shape = _backoff(service, endpoint, baseline_seconds, recovery_seconds, 0.0, 0.0, configuration)
    return _number(shape, "synchronized", service)


def request_rate(service: str, seconds: float = 5.0, *, configuration: dict[str, Any] | None = None,
                 secrets: dict[str, Any] | None = None) -> float:
    """The service's LB requests per second over the last ``seconds`` (for a steady state
    "at baseline": tolerance ``at_least`` a fraction of its configured rate).

    Raises:
        LabError: the service (or the lab) started less than ``seconds`` ago.
    """
    return _request_rate(service, seconds, configuration)


def _request_rate(service: str, seconds: float, configuration: Configuration, *,
                  source: LabSource | None = None, clock: Clock = REAL_CLOCK) -> float:
    registry.check_name(service)
    width = measure.check_seconds("seconds", seconds)
    info = _lab.lab_info(configuration)
    state = _state(configuration)
    records = registry.list_records(state)
    record = next((r for r in records if r.name == service), None)
    now = clock.now()
    started = max(info.started_at, record.started_at if record else 0.0)
    if now - width < started:
        raise LabError(f"service {service!r} (or the lab) started {now - started:.1f} s ago, less than "
                       f"the {width:g} s to average over; wait {width - (now - started):.1f} s more")
    window = Window(now - width, now)
    lab = source or HttpLab(info)
    traffic = measure.attribute(lab.lb_log(window.start), (), service, "", registry.addresses_by_service(records))
    rate = measure.request_rate(traffic, window)
    logger.info("request_rate of %s = %.3f/s over %g s (all LB traffic by owner: %s)", service, rate, width,
                traffic.owners(window)["lb"])
    return rate


def lb_request_count(service: str = "", since: float = 0.0, *, configuration: dict[str, Any] | None = None,
                     secrets: dict[str, Any] | None = None) -> int:
    """How many DynamoDB requests the load balancers served since ``since``: all of them, or
    the service's (attributed as the other probes attribute them).

    In a namespace only its load balancers' requests count, so an experiment counts its own
    traffic whatever runs beside it.

    Args:
        service: the service's name; empty counts every request.
        since: seconds since the epoch; 0 means since the lab started.
    """
    if service:
        registry.check_name(service)
    start = _check_number("since", since)
    info = _lab.lab_info(configuration)
    records = registry.list_records(_state(configuration))
    by_address = registry.addresses_by_service(records)
    count = sum(1 for r in HttpLab(info).lb_log(start)
                if not service or request_service(r, by_address) == service)
    logger.info("lb_request_count of %s since %.3f = %d", service or "all services", start, count)
    return count


def dns_query_count(endpoint: str = "", since: float = 0.0, *, configuration: dict[str, Any] | None = None,
                    secrets: dict[str, Any] | None = None) -> int:
    """How many DNS queries (any type) the lab DNS answered for the endpoint's name since ``since``.

    Args:
        endpoint: the endpoint name; empty means the primary one (in a namespace, its own).
        since: seconds since the epoch; 0 means since the lab started.
    """
    start = _check_number("since", since)
    info = _lab.lab_info(configuration)
    name = info.endpoint(endpoint).name.lower().rstrip(".")
    count = sum(1 for q in HttpLab(info).dns_log(start) if q.name.lower().rstrip(".") == name)
    logger.info("dns_query_count of %s since %.3f = %d", name, start, count)
    return count


def retry_report(service: str, endpoint: str = "", baseline_seconds: float = 10.0,
                 recovery_seconds: float = 10.0, *, configuration: dict[str, Any] | None = None,
                 secrets: dict[str, Any] | None = None) -> JsonDict:
    """Every retry number at once, for the journal: ``{"windows", "amplification",
    "attempts_per_call", "dns_query_storm", "recovery_herd", "backoff"}``, each with its
    value and details (or why it was skipped).

    Chaos Toolkit stops checking a hypothesis at its first failing probe, so a service that
    fails one probe leaves the others unmeasured; this probe, as a rollback, records them
    all. It judges nothing: give it no tolerance.
    """
    obs = observe(service, endpoint, baseline_seconds, recovery_seconds, configuration)
    report: JsonDict = {"service": service, "endpoint": obs.endpoint.name, "windows": obs.windows.kind,
                        **measure_all(obs), "notes": list(obs.notes)}
    logger.info("retry_report of %s: %s", service,
                {k: v.get("value") for k, v in report.items() if isinstance(v, dict)})
    return report


def measure_all(observation: Observation, statistic: str = "max", bin_seconds: float = 1.0,
                min_baseline_qps: float = 1.0, min_growth: float = 1.5,
                min_jitter: float = 0.1) -> dict[str, Any]:
    """Every retry measurement of one observation, as JSON (for the ``probes/retry`` verdict).

    Keys: amplification, attempts_per_call, dns_query_storm, recovery_herd, backoff; each
    ``{"value", "details"}`` or ``{"value": None, "skipped": reason}``.
    """
    obs = observation
    out: dict[str, Any] = {}
    out["amplification"] = _as_json(measure.retry_amplification(obs.traffic, obs.windows))
    calls = obs.calls()
    exact = measure.attempts_per_call(calls, obs.windows, statistic) if calls else None
    if calls and exact is None:
        out["attempts_per_call"] = {"value": None, "skipped": f"no call of {obs.service} in the window"}
    else:
        out["attempts_per_call"] = _as_json(
            exact or measure.estimated_attempts_per_call(obs.traffic, obs.windows))
    out["dns_query_storm"] = _as_json(measure.dns_query_storm(obs.traffic, obs.windows, min_baseline_qps))
    herd = measure.recovery_herd(obs.traffic, obs.windows, bin_seconds)
    out["recovery_herd"] = (_as_json(herd) if herd is not None
                            else {"value": None, "skipped": "the endpoint is still empty"})
    if calls:
        shape = measure.backoff_shape(calls, obs.windows, min_growth, min_jitter)
        out["backoff"] = {"value": shape["ok"], "details": shape}
    else:
        out["backoff"] = {"value": None, "skipped": f"no call log for {obs.service} in {obs.calls_dir}"}
    return out


def _as_json(result: Measurement) -> dict[str, Any]:
    return {"value": result.value, "details": result.details, "notes": list(result.notes)}
