"""Route 53 health checks as plain values, their validation and their evaluation.

moto stores health checks but reports "Success" for ever, so the lab validates and
evaluates them itself. This module is the pure part: a check's configuration
(:class:`HealthCheckConfig`), the rules CreateHealthCheck / UpdateHealthCheck apply
(:func:`check_config`, AWS's plus the lab's own) and :class:`HealthEvaluator`, which turns
the results the checkers report into each health check's status as Route 53 computes it:

* one checker per region; a checker's own state flips after ``FailureThreshold``
  consecutive results of the other kind, and starts healthy (a new health check is
  healthy until the checkers have enough data);
* a health check is healthy when MORE than 18% of its checkers are healthy (a region
  that has not reported yet counts as healthy);
* ``Disabled``: healthy, whatever the checkers found (none run); ``Inverted``: the status
  flipped, a disabled check's too (AWS: to stop routing traffic to a resource whose check
  is disabled, invert it), so disabled and inverted is unhealthy;
* ``CALCULATED``: healthy when at least ``HealthThreshold`` children are healthy (0: always;
  a child the lab does not know counts as unhealthy);
* a check the lab cannot evaluate (:func:`not_evaluated_reason`: a type it does not
  support, or a target off loopback, stored on an external emulator behind the lab's
  back) has no checkers and counts as healthy, inverted or not: the lab's choice, as it
  does not know the status.

No I/O and no clock: the checkers that open connections live with the lab and hand their
results in with :meth:`HealthEvaluator.record`.
"""

from __future__ import annotations

import ipaddress
import threading
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from chaos_dynamo.errors import AwsError
from chaos_dynamo.route53.rules import constraint_error, range_error

__all__ = [
    "AWS_TYPES",
    "CHECKER_REGIONS",
    "HEALTHY_FRACTION",
    "SUPPORTED_TYPES",
    "CheckResult",
    "HealthCheckConfig",
    "HealthEvaluator",
    "check_config",
    "config_from_api",
    "not_evaluated_reason",
]

CHECKER_REGIONS: tuple[str, ...] = (
    "us-east-1", "us-west-1", "us-west-2", "eu-west-1", "ap-southeast-1", "ap-southeast-2",
    "ap-northeast-1", "sa-east-1",
)
"""Route 53's health-checker regions (the HealthCheckRegion enum), in AWS's order."""
HEALTHY_FRACTION = 0.18
"""A health check is healthy when the fraction of healthy checkers is above this."""
SUPPORTED_TYPES = ("HTTP", "HTTP_STR_MATCH", "TCP", "CALCULATED")
"""The health-check types the lab evaluates."""
AWS_TYPES = (
    "HTTP", "HTTPS", "HTTP_STR_MATCH", "HTTPS_STR_MATCH", "TCP", "CALCULATED",
    "CLOUDWATCH_METRIC", "RECOVERY_CONTROL",
)
"""The HealthCheckType enum of the Route 53 API (2013-04-01)."""

SEARCH_BYTES = 5120
"""Route 53 looks for SearchString in this many leading bytes of the response body."""
MIN_REGIONS = 3
MAX_CHILDREN = 256
MAX_HEALTH_THRESHOLD = 256
MAX_TEXT = 255
"""Longest ResourcePath, FullyQualifiedDomainName and SearchString Route 53 takes."""
REQUEST_INTERVALS = (10, 30)

_HTTP_TYPES = frozenset({"HTTP", "HTTP_STR_MATCH"})
_HTTPS_TYPES = frozenset({"HTTPS", "HTTPS_STR_MATCH"})
_STR_MATCH_TYPES = frozenset({"HTTP_STR_MATCH", "HTTPS_STR_MATCH"})
_ENDPOINT_TYPES = frozenset({"HTTP", "HTTP_STR_MATCH", "TCP"})
_UNSUPPORTED_FIX = {
    "HTTPS": "use HTTP (lab targets serve plain HTTP)",
    "HTTPS_STR_MATCH": "use HTTP_STR_MATCH (lab targets serve plain HTTP)",
    "CLOUDWATCH_METRIC": "use HTTP or TCP checks of the targets, or CALCULATED over them",
    "RECOVERY_CONTROL": "use HTTP or TCP checks of the targets, or CALCULATED over them",
}


# --- configuration ---------------------------------------------------------------------


@dataclass(frozen=True)
class HealthCheckConfig:
    """One health check's configuration, with Route 53's defaults filled in."""

    id: str
    type: str
    ip_address: str | None = None
    port: int | None = None
    resource_path: str = "/"
    fqdn: str | None = None
    search_string: str | None = None
    request_interval: int = 30
    failure_threshold: int = 3
    inverted: bool = False
    disabled: bool = False
    health_threshold: int | None = None
    children: tuple[str, ...] = ()
    regions: tuple[str, ...] = CHECKER_REGIONS
    caller_reference: str = ""

    @property
    def effective_port(self) -> int:
        """The port checked: ``port``, else 80 for HTTP kinds (443 HTTPS); 0 when none."""
        if self.port is not None:
            return self.port
        if self.type in _HTTP_TYPES:
            return 80
        if self.type in _HTTPS_TYPES:
            return 443
        return 0

    @property
    def calculated(self) -> bool:
        return self.type == "CALCULATED"


def _invalid(message: str) -> AwsError:
    return AwsError("InvalidInput", message)


def _int_field(config: Mapping[str, Any], key: str) -> int | None:
    value = config.get(key)
    if value is None:
        return None
    if isinstance(value, bool):
        raise _invalid(f"Invalid parameter: {key} must be a whole number, not {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value.strip())
    raise _invalid(f"Invalid parameter: {key} must be a whole number, not {value!r}")


def _bool_field(config: Mapping[str, Any], key: str) -> bool:
    value = config.get(key)
    if value is None:
        return False
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise _invalid(f"Invalid parameter: {key} must be true or false, not {value!r}")


def _str_field(config: Mapping[str, Any], key: str) -> str | None:
    value = config.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise _invalid(f"Invalid parameter: {key} must be a string, not {value!r}")
    return value


def _str_list(config: Mapping[str, Any], key: str) -> tuple[str, ...]:
    value = config.get(key)
    if value is None:
        return ()
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise _invalid(f"Invalid parameter: {key} must be a list of strings, not {value!r}")
    items = tuple(value)
    if not all(isinstance(item, str) for item in items):
        raise _invalid(f"Invalid parameter: {key} must be a list of strings, not {value!r}")
    return items


def config_from_api(
    check_id: str, config: Mapping[str, Any], caller_reference: str = ""
) -> HealthCheckConfig:
    """Build a :class:`HealthCheckConfig` from a boto3-style ``HealthCheckConfig`` dict.

    Numbers and booleans may also come as their XML text ("30", "true"). Fields the lab
    does not model (MeasureLatency, EnableSNI, AlarmIdentifier...) are ignored. Only types
    are checked here; :func:`check_config` applies the rules.

    Raises:
        AwsError: ``InvalidInput`` when a field has the wrong type (naming the field).
    """
    rtype = _str_field(config, "Type")
    if not rtype:
        raise _invalid("Invalid parameter: Type is required; use one of "
                       f"[{', '.join(SUPPORTED_TYPES)}]")
    interval = _int_field(config, "RequestInterval")
    threshold = _int_field(config, "FailureThreshold")
    path = _str_field(config, "ResourcePath")
    regions = _str_list(config, "Regions")
    return HealthCheckConfig(
        id=check_id,
        type=rtype,
        ip_address=_str_field(config, "IPAddress") or None,
        port=_int_field(config, "Port"),
        resource_path=path if path else "/",
        fqdn=_str_field(config, "FullyQualifiedDomainName") or None,
        search_string=_str_field(config, "SearchString"),
        request_interval=interval if interval is not None else 30,
        failure_threshold=threshold if threshold is not None else 3,
        inverted=_bool_field(config, "Inverted"),
        disabled=_bool_field(config, "Disabled"),
        health_threshold=_int_field(config, "HealthThreshold"),
        children=_str_list(config, "ChildHealthChecks"),
        regions=regions or CHECKER_REGIONS,
        caller_reference=caller_reference,
    )


# --- validation ------------------------------------------------------------------------


def _max_length(value: str | None, path: str) -> list[str]:
    if value is None or len(value) <= MAX_TEXT:
        return []
    return [constraint_error(value, path, f"have length less than or equal to {MAX_TEXT}")]


def _field_errors(config: HealthCheckConfig) -> list[str]:
    """The request model's constraints, with AWS's field paths (lower camel case), worded by
    the same helpers as a change batch's (:mod:`chaos_dynamo.route53.rules`)."""
    at = "healthCheckConfig"
    errors: list[str] = []
    if config.type not in AWS_TYPES:
        errors.append(constraint_error(config.type, f"{at}.type",
                                       f"satisfy enum value set: [{', '.join(SUPPORTED_TYPES)}]"))
    errors += range_error(config.request_interval, f"{at}.requestInterval", min(REQUEST_INTERVALS),
                          max(REQUEST_INTERVALS))
    errors += range_error(config.failure_threshold, f"{at}.failureThreshold", 1, 10)
    errors += range_error(config.port, f"{at}.port", 1, 65535)
    errors += _max_length(config.resource_path, f"{at}.resourcePath")
    errors += _max_length(config.fqdn, f"{at}.fullyQualifiedDomainName")
    errors += _max_length(config.search_string, f"{at}.searchString")
    errors += range_error(config.health_threshold, f"{at}.healthThreshold", 0, MAX_HEALTH_THRESHOLD)
    if len(config.children) > MAX_CHILDREN:
        errors.append(constraint_error(f"[{', '.join(config.children)}]", f"{at}.childHealthChecks",
                                       f"have length less than or equal to {MAX_CHILDREN}"))
    if not config.calculated:
        if len(config.regions) < MIN_REGIONS:
            errors.append(constraint_error(f"[{', '.join(config.regions)}]", f"{at}.regions",
                                           f"have length greater than or equal to {MIN_REGIONS}"))
        for index, region in enumerate(config.regions, start=1):
            if region not in CHECKER_REGIONS:
                errors.append(constraint_error(
                    region, f"{at}.regions.{index}.member",
                    f"satisfy enum value set: [{', '.join(CHECKER_REGIONS)}]"))
    return errors


def _is_loopback(text: str) -> bool | None:
    """True/False for an address, None when ``text`` is not an IP address."""
    try:
        return ipaddress.ip_address(text.strip()).is_loopback
    except ValueError:
        return None


def _endpoint_problem(config: HealthCheckConfig) -> str | None:
    kind = config.type
    if config.ip_address is None and config.fqdn is None:
        return (f"Invalid parameter: a {kind} health check needs IPAddress or "
                "FullyQualifiedDomainName; set IPAddress to the target's loopback address "
                "(e.g. a lab load balancer's 127.0.0.x address)")
    if config.ip_address is not None:
        loopback = _is_loopback(config.ip_address)
        if loopback is None:
            return (f"Invalid parameter: IPAddress '{config.ip_address}' is not an IPv4 or "
                    "IPv6 address; use a loopback address such as 127.0.0.1")
        if not loopback:
            return (f"Invalid parameter: IPAddress {config.ip_address} is not a loopback "
                    "address: the lab checks loopback addresses only; use a 127.x.x.x "
                    "address (a lab load balancer's) or ::1")
    if kind == "TCP" and config.port is None:
        return ("Invalid parameter: Port is required for TCP health checks; set Port to "
                "the port the target listens on")
    if kind in _STR_MATCH_TYPES and not config.search_string:
        return (f"Invalid parameter: SearchString is required for {kind} health checks; set "
                f"it to text the response body holds in its first {SEARCH_BYTES} bytes, or "
                "use Type HTTP")
    if config.children or config.health_threshold is not None:
        return (f"Invalid parameter: ChildHealthChecks and HealthThreshold are for CALCULATED "
                f"health checks only; leave them out of a {kind} health check")
    return None


def _calculated_problem(config: HealthCheckConfig, known_ids: Collection[str]) -> str | None:
    given = [name for name, value in (
        ("IPAddress", config.ip_address), ("Port", config.port),
        ("FullyQualifiedDomainName", config.fqdn), ("SearchString", config.search_string),
    ) if value is not None]
    if given:
        return (f"Invalid parameter: {given[0]} is not allowed for CALCULATED health checks; "
                "leave it out (a calculated check combines ChildHealthChecks)")
    if config.health_threshold is None:
        return ("Invalid parameter: HealthThreshold is required for CALCULATED health checks; "
                "set it to how many children must be healthy (0..256, 0 = always healthy)")
    seen: set[str] = set()
    for child in config.children:
        if child == config.id:
            return (f"Invalid parameter: ChildHealthChecks of health check {config.id} names "
                    "the check itself; list other health checks")
        if child in seen:
            return (f"Invalid parameter: ChildHealthChecks names {child} twice; list each "
                    "health check once")
        seen.add(child)
        if child not in known_ids:
            return (f"Invalid parameter: ChildHealthChecks names {child}, but no health check "
                    "exists with that ID; create it first or remove it from ChildHealthChecks")
    return None


def not_evaluated_reason(config: HealthCheckConfig) -> str | None:
    """Why the lab cannot evaluate ``config``; None when it can.

    :func:`check_config` refuses such a check at CreateHealthCheck / UpdateHealthCheck, but
    an external emulator may hold one written behind the lab's back (HTTPS,
    CLOUDWATCH_METRIC, a public IPAddress...). The lab runs no checkers for it and counts
    it as healthy. A disabled check needs no checkers (AWS counts it healthy, or unhealthy
    when inverted), so it is always evaluated.
    """
    if config.disabled:
        return None
    if config.type not in SUPPORTED_TYPES:
        return (f"the lab does not evaluate health checks of type {config.type}; "
                "it counts as healthy")
    if config.calculated:
        return None
    if config.ip_address is None and config.fqdn is None:
        return ("it has neither IPAddress nor FullyQualifiedDomainName, so there is nothing to "
                "check; it counts as healthy")
    if config.ip_address is not None:
        loopback = _is_loopback(config.ip_address)
        if loopback is None:
            return (f"IPAddress {config.ip_address!r} is not an IP address; "
                    "it counts as healthy")
        if not loopback:
            return (f"IPAddress {config.ip_address} is not a loopback address and the lab "
                    "checks loopback addresses only; it counts as healthy")
    if config.type == "TCP" and config.port is None:
        return "a TCP health check without Port has no port to connect to; it counts as healthy"
    if config.type in _STR_MATCH_TYPES and not config.search_string:
        return (f"a {config.type} health check without SearchString has nothing to match; "
                "it counts as healthy")
    return None


def check_config(config: HealthCheckConfig, known_ids: Collection[str]) -> None:
    """Apply CreateHealthCheck's rules, AWS's and the lab's, to ``config``.

    ``known_ids`` are the health checks that exist (a CALCULATED check's children must be
    among them). As AWS does, field constraints come first, all reported at once
    ("N validation errors detected: ..."), then the first rule the combination breaks
    ("Invalid parameter: ...").

    Raises:
        AwsError: ``InvalidInput``, naming the field, the value and what to use instead.
    """
    errors = _field_errors(config)
    if errors:
        plural = "s" if len(errors) > 1 else ""
        raise _invalid(f"{len(errors)} validation error{plural} detected: " + "; ".join(errors))
    if config.type not in SUPPORTED_TYPES:
        raise _invalid(f"Invalid parameter: the lab does not support health checks of type "
                       f"{config.type}; {_UNSUPPORTED_FIX[config.type]}")
    if config.request_interval not in REQUEST_INTERVALS:
        raise _invalid(f"Invalid parameter: RequestInterval must be 10 or 30, not "
                       f"{config.request_interval}; use 10 (fast) or 30 (the default)")
    if len(set(config.regions)) != len(config.regions) and not config.calculated:
        raise _invalid(f"Invalid parameter: Regions lists a region twice "
                       f"([{', '.join(config.regions)}]); list each checker region once")
    if config.calculated:
        problem = _calculated_problem(config, known_ids)
    else:
        problem = _endpoint_problem(config)
    if problem is not None:
        raise _invalid(problem)


# --- evaluation ------------------------------------------------------------------------


@dataclass(frozen=True)
class CheckResult:
    """One checker's result for one check.

    ``status`` reads as AWS's StatusReport does ("Success: HTTP Status Code 200, OK",
    "Failure: Connection refused..."); ``checked_at`` is the lab clock's epoch seconds.
    """

    ok: bool
    status: str
    checked_at: float


@dataclass
class _Checker:
    """One region's checker of one health check: its own thresholded state."""

    healthy: bool = True
    streak: int = 0
    latest: CheckResult | None = None
    last_failure: CheckResult | None = None

    def add(self, result: CheckResult, failure_threshold: int) -> None:
        self.latest = result
        if not result.ok:
            self.last_failure = result
        if result.ok == self.healthy:
            self.streak = 0
            return
        self.streak += 1
        if self.streak >= failure_threshold:
            self.healthy, self.streak = result.ok, 0


@dataclass
class _Check:
    config: HealthCheckConfig
    checkers: dict[str, _Checker] = field(default_factory=dict)
    evaluated: bool = True  # False: the lab cannot evaluate it (not_evaluated_reason)


def _checker_identity(config: HealthCheckConfig) -> tuple[object, ...]:
    """What the checkers' state depends on: changing any of it starts them afresh."""
    return (config.type, config.ip_address, config.fqdn, config.effective_port,
            config.resource_path, config.search_string, config.failure_threshold,
            config.regions)


class HealthEvaluator:
    """Pure state of every health check: per-checker threshold state, aggregate,
    calculated, inverted.

    Thread-safe: checkers may report from their own threads while the lab reads.
    """

    def __init__(self, configs: Iterable[HealthCheckConfig] = ()) -> None:
        self._lock = threading.Lock()
        self._checks: dict[str, _Check] = {}
        self._statuses: dict[str, bool] = {}
        self.configure(configs)

    def configure(self, configs: Iterable[HealthCheckConfig]) -> None:
        """Make ``configs`` the health checks evaluated, in their order.

        A check whose type, target, path, search string, failure threshold and regions
        are unchanged keeps its checkers' state; a changed or new check starts with every
        checker healthy; checks not listed are forgotten. A disabled check keeps its
        checkers' last results (GetHealthCheckStatus still reports them); enabling it
        again starts it afresh, healthy like a new check, since its checkers' results are
        from before it was disabled.
        """
        configs = list(configs)
        with self._lock:
            checks: dict[str, _Check] = {}
            for config in configs:
                old = self._checks.get(config.id)
                keep = (old is not None
                        and _checker_identity(old.config) == _checker_identity(config)
                        and not (old.config.disabled and not config.disabled))
                checks[config.id] = _Check(config, old.checkers if keep and old else {},
                                           evaluated=not_evaluated_reason(config) is None)
            self._checks = checks
            self._statuses = self._evaluate()

    def record(self, check_id: str, region: str, result: CheckResult) -> bool:
        """Add one checker's result; True when any health check's status changed.

        A result for a check or region not (or no longer) configured, or for a
        CALCULATED, disabled or not evaluated check, is ignored (a checker may report just
        after a reconfigure).
        """
        with self._lock:
            check = self._checks.get(check_id)
            if (check is None or check.config.calculated or check.config.disabled
                    or not check.evaluated or region not in check.config.regions):
                return False
            checker = check.checkers.setdefault(region, _Checker())
            before = checker.healthy
            checker.add(result, check.config.failure_threshold)
            if checker.healthy == before:
                return False
            statuses = self._evaluate()
            changed = statuses != self._statuses
            self._statuses = statuses
            return changed

    def status(self, check_id: str) -> bool | None:
        """True when healthy, False when not, None for an id the evaluator does not know."""
        with self._lock:
            return self._statuses.get(check_id)

    def statuses(self) -> dict[str, bool]:
        """Every known health check id -> healthy."""
        with self._lock:
            return dict(self._statuses)

    def observations(self, check_id: str) -> list[tuple[str, CheckResult]]:
        """(region, latest result) for each configured region that has reported."""
        return self._per_region(check_id, lambda c: c.latest)

    def last_failures(self, check_id: str) -> list[tuple[str, CheckResult]]:
        """(region, latest failure) for each configured region that has failed."""
        return self._per_region(check_id, lambda c: c.last_failure)

    def configs(self) -> list[HealthCheckConfig]:
        """The configured health checks, in configure order."""
        with self._lock:
            return [check.config for check in self._checks.values()]

    def _per_region(
        self, check_id: str, pick: Callable[[_Checker], CheckResult | None]
    ) -> list[tuple[str, CheckResult]]:
        with self._lock:
            check = self._checks.get(check_id)
            if check is None:
                return []
            out = []
            for region in check.config.regions:
                checker = check.checkers.get(region)
                result = pick(checker) if checker is not None else None
                if result is not None:
                    out.append((region, result))
            return out

    # --- status (lock held) -------------------------------------------------------

    def _evaluate(self) -> dict[str, bool]:
        statuses: dict[str, bool] = {}
        for check_id in self._checks:
            self._status_of(check_id, statuses, frozenset())
        return statuses

    def _status_of(self, check_id: str, done: dict[str, bool], visiting: frozenset[str]) -> bool:
        if check_id in done:
            return done[check_id]
        check = self._checks.get(check_id)
        if check is None or check_id in visiting:
            return False  # unknown child, or a cycle of calculated checks: unhealthy
        config = check.config
        if config.disabled:
            healthy = True  # AWS: always healthy; Inverted still applies (below)
        elif not check.evaluated:
            done[check_id] = True  # the lab does not know its status: healthy, not inverted
            return True
        elif config.calculated:
            inner = visiting | {check_id}
            up = sum(self._status_of(child, done, inner) for child in config.children)
            needed = (config.health_threshold if config.health_threshold is not None
                      else len(config.children))
            healthy = up >= needed
        else:
            regions = config.regions
            up = sum(check.checkers.get(r, _Checker()).healthy for r in regions)
            healthy = bool(regions) and up / len(regions) > HEALTHY_FRACTION
        healthy = healthy != config.inverted
        done[check_id] = healthy
        return healthy
