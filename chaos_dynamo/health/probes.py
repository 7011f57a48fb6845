"""Chaos Toolkit probes of a service's own health: HTTP health checks and Prometheus metrics.

Every probe takes either a ``url`` or a ``service`` name; with a name, the URLs come from the
service's record (``chaos-dynamo service start`` writes each instance's ``health_url`` and
``metrics_url``) and every instance counts: all must be healthy, metrics add up across them.
Only loopback URLs are read (SafetyError otherwise).
"""

import difflib
import logging
import math
import statistics
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

from chaos_dynamo.clock import REAL_CLOCK, Clock
from chaos_dynamo.config import is_loopback_host
from chaos_dynamo.errors import ConfigError, LabError, SafetyError
from chaos_dynamo.services import registry

__all__ = ["http_health", "http_status", "prometheus_metric", "seconds_to_healthy"]

logger = logging.getLogger("chaostoolkit")
Configuration = Mapping[str, Any] | None

POLL_INTERVAL = 0.2
AGGREGATES = ("sum", "max", "min", "mean", "count")

# Loopback only, and never through an HTTP proxy from the environment.
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


# --- URLs -------------------------------------------------------------------------------


def require_loopback(field_name: str, url: object) -> str:
    """``url`` if it is an http(s) URL on a loopback host; ConfigError / SafetyError otherwise."""
    if not isinstance(url, str) or not url:
        raise ConfigError(field_name, f"{url!r} is not a URL", "give e.g. http://127.0.0.1:8080/health")
    try:
        parsed = urlparse(url)
        host = parsed.hostname or ""
        parsed.port  # noqa: B018 - raises on a bad port
    except ValueError as exc:
        raise ConfigError(field_name, f"{url!r} is not a URL ({exc})", "give e.g. http://127.0.0.1:8080/health") from None
    if parsed.scheme not in ("http", "https") or not host:
        raise ConfigError(field_name, f"{url!r} is not an http:// URL", "give e.g. http://127.0.0.1:8080/health")
    if not is_loopback_host(host):
        raise SafetyError(f"{field_name}: refusing to read {url}: {host} is not a loopback address "
                          "(127.x.x.x or localhost); chaos-dynamo probes only services on this machine")
    return url


def _check_timeout(timeout: object) -> float:
    if (isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not math.isfinite(timeout)
            or not 0 < timeout <= 3600):
        raise ConfigError("timeout", f"{timeout!r} is not a duration in seconds", "use a number from 0.1 to 3600")
    return float(timeout)


def _state(configuration: Configuration) -> str | None:
    value = (configuration or {}).get("chaos_dynamo_state")
    return str(value) if value else None


def service_urls(service: str, kind: str, configuration: Configuration = None) -> list[str]:
    """Each instance's ``health_url`` or ``metrics_url`` (``kind``) from the service registry.

    Raises:
        ConfigError: the service is not recorded, or recorded without that URL.
    """
    registry.check_name(service)
    state = _state(configuration)
    record = registry.read_record(service, state)
    if record is None:
        raise ConfigError("service", f"{service!r} is not a recorded service (no record in "
                          f"{registry.services_dir(state)})",
                          "start it with `chaos-dynamo service start`, or give url instead")
    urls = [getattr(i, kind) for i in record.instances]
    if not urls or not all(urls):
        raise ConfigError("service", f"service {service!r} has {len(record.instances)} instance(s) and not "
                          f"every one has a {kind} recorded", "give url instead")
    return [require_loopback(f"{service}.{kind}", u) for u in urls]


def _urls(url: str, service: str, kind: str, configuration: Configuration) -> list[str]:
    if url:
        return [require_loopback("url", url)]
    if service:
        return service_urls(service, kind, configuration)
    raise ConfigError("url", "neither url nor service is given",
                      "give url (e.g. http://127.0.0.1:8080/health) or a recorded service's name")


def _get(url: str, timeout: float) -> tuple[int, bytes]:
    """(status, body); status 0 when no HTTP answer came back."""
    try:
        with _opener.open(url, timeout=timeout) as response:
            return int(response.status), bytes(response.read())
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read() if exc.fp is not None else b""
    except (urllib.error.URLError, OSError, ValueError) as exc:
        logger.info("no HTTP answer from %s: %s", url, exc)
        return 0, b""


# --- health -----------------------------------------------------------------------------


def http_status(url: str, timeout: float = 2.0, *, configuration: dict[str, Any] | None = None,
                secrets: dict[str, Any] | None = None) -> int:
    """The HTTP status a GET of ``url`` answers; 0 when nothing answered (refused, timed out).
    Tolerance: ``200``."""
    return _get(require_loopback("url", url), _check_timeout(timeout))[0]


def _healthy(urls: Sequence[str], timeout: float) -> tuple[bool, dict[str, int]]:
    statuses = {u: _get(u, timeout)[0] for u in urls}
    return all(s == 200 for s in statuses.values()), statuses


def http_health(url: str = "", service: str = "", timeout: float = 2.0, *,
                configuration: dict[str, Any] | None = None,
                secrets: dict[str, Any] | None = None) -> bool:
    """True when the health URL answers 200 (with ``service``: every instance's does).
    Tolerance: ``true``."""
    urls = _urls(url, service, "health_url", configuration)
    healthy, statuses = _healthy(urls, _check_timeout(timeout))
    if not healthy:
        logger.info("not healthy: %s", statuses)
    return healthy


# --- Prometheus text format ---------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    """One sample line: ``name{labels} value``."""

    name: str
    labels: dict[str, str]
    value: float


_NAME_START = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_:")
_NAME_CHARS = _NAME_START | set("0123456789")
_ESCAPES = {"\\": "\\", '"': '"', "n": "\n"}


def _name(line: str, pos: int, chars: set[str]) -> tuple[str, int]:
    end = pos
    while end < len(line) and line[end] in chars:
        end += 1
    return line[pos:end], end


def _skip_spaces(line: str, pos: int) -> int:
    while pos < len(line) and line[pos] in " \t":
        pos += 1
    return pos


def _labels(line: str, pos: int) -> tuple[dict[str, str], int]:
    """Parse ``{a="x",b="y\\"z"}`` starting at the ``{``; return labels and the position after ``}``."""
    labels: dict[str, str] = {}
    pos += 1
    while True:
        pos = _skip_spaces(line, pos)
        if pos < len(line) and line[pos] == "}":
            return labels, pos + 1
        key, pos = _name(line, pos, _NAME_CHARS)
        pos = _skip_spaces(line, pos)
        if not key or line[pos:pos + 1] != "=":
            raise ValueError("bad label name")
        pos = _skip_spaces(line, pos + 1)
        if line[pos:pos + 1] != '"':
            raise ValueError("label value not quoted")
        pos += 1
        value: list[str] = []
        while True:
            if pos >= len(line):
                raise ValueError("unterminated label value")
            char = line[pos]
            if char == "\\" and pos + 1 < len(line):
                value.append(_ESCAPES.get(line[pos + 1], "\\" + line[pos + 1]))
                pos += 2
            elif char == '"':
                pos += 1
                break
            else:
                value.append(char)
                pos += 1
        labels[key] = "".join(value)
        pos = _skip_spaces(line, pos)
        if line[pos:pos + 1] == ",":
            pos += 1
        elif line[pos:pos + 1] != "}":
            raise ValueError("expected , or }")


def parse_sample(line: str) -> Sample:
    """One sample line; ValueError when it is not one."""
    pos = _skip_spaces(line, 0)
    if pos >= len(line) or line[pos] not in _NAME_START:
        raise ValueError("no metric name")
    name, pos = _name(line, pos, _NAME_CHARS)
    pos = _skip_spaces(line, pos)
    labels: dict[str, str] = {}
    if line[pos:pos + 1] == "{":
        labels, pos = _labels(line, pos)
    fields = line[pos:].split()
    if not fields or len(fields) > 2:
        raise ValueError("expected a value and an optional timestamp")
    return Sample(name, labels, float(fields[0]))  # float() reads +Inf, -Inf and NaN


def parse_prometheus(text: str) -> list[Sample]:
    """Every sample in a Prometheus text-format page (version 0.0.4). Comments (``# HELP``,
    ``# TYPE``, others) and blank lines are skipped, and so is a line that is not a sample."""
    samples = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        try:
            samples.append(parse_sample(line))
        except ValueError as exc:
            logger.debug("metrics line %d is not a sample (%s): %r", number, exc, raw)
    return samples


def aggregate_samples(samples: Sequence[Sample], metric: str, labels: Mapping[str, str] | None,
                      aggregate: str, where: str = "") -> float:
    """``aggregate`` of the values of ``metric``'s samples whose labels include ``labels``.

    Raises:
        ConfigError: ``aggregate`` is not one of sum, max, min, mean, count.
        LabError: no sample has that name (the message lists close names), or none has
            those labels (it lists the label sets seen).
    """
    if aggregate not in AGGREGATES:
        raise ConfigError("aggregate", f"{aggregate!r} is not an aggregate", f"use one of {list(AGGREGATES)}")
    named = [s for s in samples if s.name == metric]
    if not named:
        names = sorted({s.name for s in samples})
        close = difflib.get_close_matches(metric, names, n=5, cutoff=0.5)
        hint = f"close names: {close}" if close else f"names there: {names[:15]}"
        raise LabError(f"no metric {metric!r} in {where or 'the metrics'}; {hint}")
    wanted = dict(labels or {})
    chosen = [s.value for s in named if all(s.labels.get(k) == v for k, v in wanted.items())]
    if not chosen:
        seen = [s.labels for s in named][:10]
        raise LabError(f"metric {metric!r} in {where or 'the metrics'} has no sample with labels "
                       f"{wanted}; label sets there: {seen}")
    if aggregate == "count":
        return float(len(chosen))
    if aggregate == "max":
        return max(chosen)
    if aggregate == "min":
        return min(chosen)
    if aggregate == "mean":
        return statistics.fmean(chosen)
    return math.fsum(chosen)


def _check_labels(labels: object) -> dict[str, str]:
    if labels is None:
        return {}
    if not isinstance(labels, Mapping) or not all(isinstance(k, str) and isinstance(v, str)
                                                  for k, v in labels.items()):
        raise ConfigError("labels", f"{labels!r} is not a mapping of label names to values",
                          "give e.g. {\"outcome\": \"error\"}")
    return dict(labels)


def prometheus_metric(metric: str, url: str = "", service: str = "",
                      labels: dict[str, str] | None = None, aggregate: str = "sum",
                      timeout: float = 2.0, *, configuration: dict[str, Any] | None = None,
                      secrets: dict[str, Any] | None = None) -> float:
    """A number from the service's Prometheus metrics: the ``aggregate`` (sum, max, min,
    mean, count) of ``metric``'s samples whose labels include ``labels``, across every
    instance when ``service`` is given. Tolerance: ``at_most``/``at_least`` a limit.

    Raises:
        LabError: a metrics page did not answer 200, or has no such metric (the message
            names it and lists close names).
    """
    if not isinstance(metric, str) or not metric:
        raise ConfigError("metric", f"{metric!r} is not a metric name", "give e.g. \"requests_total\"")
    wanted = _check_labels(labels)
    if aggregate not in AGGREGATES:
        raise ConfigError("aggregate", f"{aggregate!r} is not an aggregate", f"use one of {list(AGGREGATES)}")
    wait = _check_timeout(timeout)
    samples: list[Sample] = []
    urls = _urls(url, service, "metrics_url", configuration)
    for each in urls:
        status, body = _get(each, wait)
        if status != 200:
            raise LabError(f"the metrics at {each} answered {status or 'nothing'}; is the service running?")
        samples.extend(parse_prometheus(body.decode("utf-8", errors="replace")))
    where = " + ".join(urls)
    value = aggregate_samples(samples, metric, wanted, aggregate, where)
    logger.info("prometheus_metric %s%s %s over %s = %g", metric, wanted or "", aggregate, where, value)
    return value


# --- time to healthy ----------------------------------------------------------------------


def last_restore(timeline: Sequence[Mapping[str, Any]], endpoint: str) -> tuple[float | None, bool]:
    """(when the endpoint's most recent outage ended, whether one is going on now)."""
    from chaos_dynamo.retry.measure import outages

    found = outages(timeline, endpoint)
    if not found:
        return None, False
    return found[-1][1], found[-1][1] is None


def time_to_healthy(check: Callable[[], tuple[bool, Any]], since: float, timeout: float,
                    clock: Clock = REAL_CLOCK, interval: float = POLL_INTERVAL) -> tuple[float, bool, Any]:
    """Poll ``check`` every ``interval`` until it is healthy or ``timeout`` seconds pass.

    Returns (seconds from ``since`` to the first healthy answer; healthy; the last answer's
    detail). Never healthy: the seconds to giving up, and at least ``timeout`` plus one
    ``interval``, so a tolerance of ``at_most timeout`` always fails.
    """
    deadline = clock.monotonic() + timeout
    while True:
        healthy, detail = check()
        if healthy:
            return max(0.0, clock.now() - since), True, detail
        if clock.monotonic() >= deadline - 1e-6:  # 1e-6: ten sleeps of 0.2 make 1.9999999
            return max(clock.now() - since, timeout) + interval, False, detail
        clock.sleep(interval)


def _started_at(service: str, configuration: Configuration) -> float | None:
    """When the recorded service started (None: no service named, or not recorded)."""
    if not service:
        return None
    from chaos_dynamo.services import registry

    record = registry.read_record(service, _state(configuration))
    return record.started_at if record is not None else None


def seconds_to_healthy(url: str = "", service: str = "", endpoint: str = "", timeout: float = 60.0, *,
                       configuration: dict[str, Any] | None = None,
                       secrets: dict[str, Any] | None = None) -> float:
    """Seconds from the endpoint's last restore to the first healthy answer (200 from the
    health URL; with ``service``, from every instance), polled every 0.2 s.

    Run it first in the hypothesis after the method: it can only see the service become
    healthy from when it starts polling, so a late run overstates the time. With no outage
    since the service started (from its registry record), or one still going on, it counts
    from now. Never healthy within ``timeout``: the seconds waited plus one poll, never below
    ``timeout`` (so ``at_most timeout`` fails), and a log line saying so.
    Tolerance: ``at_most`` 30.
    """
    return measure_time_to_healthy(url, service, endpoint, timeout, configuration)[0]


def measure_time_to_healthy(url: str, service: str, endpoint: str, timeout: float,
                            configuration: Configuration, *,
                            timeline: Sequence[Mapping[str, Any]] | None = None,
                            clock: Clock = REAL_CLOCK) -> tuple[float, bool]:
    """:func:`seconds_to_healthy`, also saying whether it got healthy; the timeline (else
    read from the lab) and the clock can be given."""
    from chaos_dynamo.endpoint import _lab

    wait = _check_timeout(timeout)
    urls = _urls(url, service, "health_url", configuration)
    info = _lab.lab_info(configuration)
    ep = info.endpoint(endpoint)
    if timeline is None:
        from chaos_dynamo.retry.probes import HttpLab

        timeline = HttpLab(info).availability(ep.name)
    restored, ongoing = last_restore(timeline, ep.name)
    now = clock.now()
    started = _started_at(service, configuration)
    if restored is not None and started is not None and restored <= started:
        restored = None  # an outage over before the service started is not its to recover from
    if restored is None:
        logger.info("seconds_to_healthy: %s %s, so counting from now", ep.name,
                    "is still empty" if ongoing else "has had no outage since the service started")
        restored = now
    seconds, healthy, statuses = time_to_healthy(lambda: _healthy(urls, min(wait, 2.0)), restored, wait, clock)
    if healthy:
        logger.info("healthy %.2f s after %s came back (%s)", seconds, ep.name, statuses)
    else:
        logger.warning("seconds_to_healthy: still not healthy %.1f s after %s came back (gave up after "
                       "%g s of polling); last answers: %s", seconds, ep.name, wait, statuses)
    return seconds, healthy
