"""Chaos Toolkit actions on the lab's load-balancer fleet and on the DynamoDB capacity
behind it (through the lab's control API).

In a namespace (configuration ``chaos_dynamo_namespace``, docs/namespaces.md) the LB actions
reach that namespace's load balancers only, and refuse any other by name; without one, the
lab's own (every load balancer no namespace owns). DynamoDB's capacity is shared by the
whole lab, so the capacity actions refuse to run in a namespace.
"""

# No `from __future__ import annotations`: Chaos Toolkit discovery reads the real types.
from typing import Any

from chaos_dynamo.clock import REAL_CLOCK, Clock
from chaos_dynamo.control._client import JsonDict
from chaos_dynamo.endpoint import _lab
from chaos_dynamo.errors import ConfigError
from chaos_dynamo.lab.lab import require_loopback_url
from chaos_dynamo.lab.state import LabInfo
from chaos_dynamo.lbfleet._capacity import check_capacity, check_service_time
from chaos_dynamo.lbfleet.proxy import ERROR_CODES

__all__ = ["set_lb_faults", "reset_lb_faults", "throttle_dynamodb", "close_connections",
           "set_dynamodb_capacity", "reset_dynamodb_capacity", "slow_dynamodb_for"]

_clock: Clock = REAL_CLOCK
"""What ``slow_dynamodb_for`` reads and sleeps on; tests replace it (``monkeypatch``)."""

_MAX_SLOW_SECONDS = 3600.0


def set_lb_faults(lb: str, down: bool | None = None, latency: float | None = None,
                  refuse_for: float | None = None, error_rate: float | None = None,
                  error_status: int = 500, error_code: str | None = None, *,
                  configuration: dict[str, Any] | None = None,
                  secrets: dict[str, Any] | None = None) -> JsonDict:
    """Set fault knobs on one load balancer; knobs left as null are unchanged.

    Args:
        lb: the load balancer's name (``lab status`` lists them), e.g. ``lb-1``; in a
            namespace, one of the namespace's.
        down: refuse connections (true) or serve again (false).
        latency: seconds added before each request is forwarded.
        refuse_for: refuse connections for this many seconds, then serve again.
        error_rate: fraction (0-1) of requests answered with an injected DynamoDB error.
        error_status: 500 (InternalServerError) or 400 (ProvisionedThroughputExceededException),
            when ``error_code`` is not given.
        error_code: the DynamoDB error to inject instead: ProvisionedThroughputExceededException,
            ThrottlingException (400), InternalServerError (500) or ServiceUnavailable (503).

    Returns:
        The load balancer's knobs after the change.
    """
    if not isinstance(lb, str) or not lb:
        raise ConfigError("lb", f"{lb!r} is not a load balancer name", "use e.g. \"lb-1\"")
    body: dict[str, Any] = {}
    for key, value in (("down", down), ("latency", latency), ("refuse_for", refuse_for),
                       ("error_rate", error_rate), ("error_code", error_code)):
        if value is not None:
            body[key] = value
    if error_rate is not None and error_code is None:
        body["error_status"] = error_status
    info = _lab.lab_info(configuration)
    _check_own(info, lb)
    return _post_faults(_checked_api(info), lb, body, configuration)


def throttle_dynamodb(rate: float, code: str = "ProvisionedThroughputExceededException", lb: str = "", *,
                      configuration: dict[str, Any] | None = None,
                      secrets: dict[str, Any] | None = None) -> JsonDict:
    """Answer a fraction of DynamoDB requests with a throttling (or server) error, as DynamoDB does.

    The LBs answer the error themselves, in DynamoDB's JSON shape, so every SDK parses its
    code; botocore retries all four codes (the two 400s as throttling). Undo with
    ``reset_lb_faults``.

    Args:
        rate: fraction (0-1) of requests that fail; the draw is seeded by the lab's seed.
        code: ProvisionedThroughputExceededException or ThrottlingException (HTTP 400),
            InternalServerError (500) or ServiceUnavailable (503).
        lb: one load balancer's name; empty means every load balancer of the lab (in a
            namespace, every one of the namespace).

    Returns:
        ``{lb name: that load balancer's knobs after the change}``.
    """
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 <= rate <= 1:
        raise ConfigError("rate", f"{rate!r} is not a fraction", "use 0.0 to 1.0 (1.0 fails every request)")
    if not isinstance(code, str) or code not in ERROR_CODES:
        raise ConfigError("code", f"{code!r} is not an injectable DynamoDB error", f"use one of {list(ERROR_CODES)}")
    if not isinstance(lb, str):
        raise ConfigError("lb", f"{lb!r} is not a load balancer name", "use e.g. \"lb-1\", or \"\" for all")
    info = _lab.lab_info(configuration)
    api_url = _checked_api(info)
    names = _names(info)
    if lb and lb not in names:
        raise ConfigError("lb", f"{lb!r} is not a load balancer of {_scope(info)}",
                          f"use one of {names}, or \"\" for all")
    body = {"error_rate": rate, "error_code": code}
    return {name: _post_faults(api_url, name, body, configuration) for name in ([lb] if lb else names)}


def close_connections(*, configuration: dict[str, Any] | None = None,
                      secrets: dict[str, Any] | None = None) -> JsonDict:
    """Close every client keep-alive connection on every load balancer, so clients reconnect.

    Idle connections close now; busy ones after their current response (``Connection:
    close``). The LBs keep serving: a client's next request opens a new connection, after
    resolving the endpoint's name again.

    In a namespace, only its load balancers' connections (another namespace's clients keep
    theirs).

    Returns:
        ``{lb name: connections closed}``.
    """
    info = _lab.lab_info(configuration)
    result: dict[str, Any] = _lab.http_json(f"{_checked_api(info)}/_chaos_dynamo/lb/connections/close",
                                            _chosen(info), configuration=configuration)
    return result


def reset_lb_faults(*, configuration: dict[str, Any] | None = None,
                    secrets: dict[str, Any] | None = None) -> JsonDict:
    """Clear every fault knob on every load balancer, and DynamoDB's capacity (a rollback).

    In a namespace, only its load balancers' knobs (the capacity is the whole lab's); in a
    lab with namespaces, without one, only the lab's own load balancers' and the capacity.
    """
    info = _lab.lab_info(configuration)
    body = _chosen(info)
    if body and not info.namespace:
        body["capacity"] = True
    result: dict[str, Any] = _lab.http_json(f"{_checked_api(info)}/_chaos_dynamo/lb/faults/reset", body,
                                            configuration=configuration)
    return result


def set_dynamodb_capacity(slots: int | None = None, service_time: float = 0.0, *,
                          configuration: dict[str, Any] | None = None,
                          secrets: dict[str, Any] | None = None) -> JsonDict:
    """Give the lab's DynamoDB a finite capacity: ``slots`` requests served at once, in FIFO order.

    Shared by every load balancer: a forwarded request waits for a free slot in arrival
    order, holds it ``service_time`` seconds (on top of the emulator's own ~0.01 s), then
    is forwarded. So the lab serves about ``slots / (service_time + 0.01)`` requests per
    second and queues the rest. A client that gives up (read timeout) does not take its
    request back: it is still served when its turn comes (wasted work, as in an overloaded
    DynamoDB). Undo with ``reset_dynamodb_capacity`` or ``reset_lb_faults``.

    Args:
        slots: requests served at once, 1..10000; null means unlimited.
        service_time: seconds each request holds its slot, 0..60.

    Returns:
        The capacity after the change: ``{"slots", "service_time", "waiting",
        "in_service", "served", "max_waiting", "cancelled"}``.
    """
    slots, service_time = check_capacity(slots, service_time)
    return _post_capacity(_lab_wide_api(configuration, "set_dynamodb_capacity"),
                          {"slots": slots, "service_time": service_time}, configuration)


def reset_dynamodb_capacity(*, configuration: dict[str, Any] | None = None,
                            secrets: dict[str, Any] | None = None) -> JsonDict:
    """Make the lab's DynamoDB capacity unlimited again, with no service time (a rollback).

    Returns:
        The capacity after the reset (its counters are kept).
    """
    return _post_capacity(_lab_wide_api(configuration, "reset_dynamodb_capacity"),
                          {"slots": None, "service_time": 0.0}, configuration)


def slow_dynamodb_for(seconds: float, service_time: float, *,
                      configuration: dict[str, Any] | None = None,
                      secrets: dict[str, Any] | None = None) -> JsonDict:
    """Make every DynamoDB request hold its slot ``service_time`` seconds for ``seconds``, then
    put the previous service time back, even if the wait is interrupted (Ctrl-C, an error).

    The slow recovery of an overloaded service: with finite ``slots``
    (``set_dynamodb_capacity``) the capacity drops to about ``slots / (service_time + 0.01)``
    requests per second for the window. Slots are left as they are.

    Args:
        seconds: how long it stays slow, 0 < seconds <= 3600; the action blocks that long.
        service_time: seconds each request holds its slot meanwhile, 0..60.

    Returns:
        ``{"seconds", "service_time", "slowed_at", "restored_at", "before", "during",
        "after"}``: times in seconds since the epoch; ``before``/``during``/``after`` are
        the capacity as ``set_dynamodb_capacity`` returns it.
    """
    if (isinstance(seconds, bool) or not isinstance(seconds, (int, float))
            or not 0 < seconds <= _MAX_SLOW_SECONDS):
        raise ConfigError("seconds", f"{seconds!r} is not a duration in seconds",
                          f"use a number above 0, at most {_MAX_SLOW_SECONDS:g}")
    service_time = check_service_time(service_time)
    clock = _clock
    api_url = _lab_wide_api(configuration, "slow_dynamodb_for")
    before: dict[str, Any] = _lab.http_json(f"{api_url}/_chaos_dynamo/dynamodb/capacity")
    try:
        during = _post_capacity(api_url, {"service_time": service_time}, configuration)
        slowed_at = clock.now()
        clock.sleep(max(0.0, slowed_at + seconds - clock.now()))
    finally:
        after = _post_capacity(api_url, {"service_time": before["service_time"]}, configuration)
    restored_at = clock.now()
    _lab.logger.info("DynamoDB service time was %.3f s for %.1f s", service_time, restored_at - slowed_at)
    return {"seconds": float(seconds), "service_time": service_time, "slowed_at": slowed_at,
            "restored_at": restored_at, "before": before, "during": during, "after": after}


def _post_capacity(api_url: str, body: dict[str, Any], configuration: dict[str, Any] | None) -> JsonDict:
    result: dict[str, Any] = _lab.http_json(f"{api_url}/_chaos_dynamo/dynamodb/capacity", body,
                                            configuration=configuration)  # a dry run's too
    return result


def _checked_api(info: LabInfo) -> str:
    """The lab's control API, checked to be loopback."""
    return require_loopback_url("chaos_dynamo_api", info.api_url)


def _lab_wide_api(configuration: dict[str, Any] | None, action: str) -> str:
    """The control API for a knob the whole lab shares; refused in a namespace, whose
    experiments run beside others that the knob would reach too."""
    info = _lab.lab_info(configuration)
    if info.namespace:
        raise ConfigError("chaos_dynamo_namespace",
                          f"{action} changes DynamoDB's capacity, which every namespace of the lab shares, "
                          f"so it cannot run in namespace {info.namespace!r}",
                          "run capacity experiments without chaos_dynamo_namespace, on a lab of their own "
                          "or alone on the shared lab (declare no \"namespaces\" for verify)")
    return _checked_api(info)


def _names(info: LabInfo) -> list[str]:
    return [str(spec["name"]) for spec in info.load_balancers]


def _scope(info: LabInfo) -> str:
    return f"namespace {info.namespace!r}" if info.namespace else "the lab"


def _check_own(info: LabInfo, lb: str) -> None:
    """Refuse a load balancer outside the scope: another namespace's, in a lab with namespaces."""
    if not (info.namespace or info.namespaces):
        return  # a lab without namespaces: the lab names the LBs it has
    names = _names(info)
    if lb in names:
        return
    owner = next((ns.name for ns in info.namespaces if lb in {str(spec["name"]) for spec in ns.load_balancers}),
                 None)
    detail = f"it belongs to namespace {owner!r}" if owner else "the lab has no load balancer of that name"
    scope = _scope(info) if info.namespace else "the lab's own endpoints"
    raise ConfigError("lb", f"{lb!r} is not a load balancer of {scope} ({detail})",
                      f"use one of {names}: an experiment changes only the load balancers of its scope")


def _chosen(info: LabInfo) -> dict[str, Any]:
    """The body that limits an LB-wide route to the scope's LBs ({} in a lab without namespaces)."""
    return {"lbs": _names(info)} if info.namespace or info.namespaces else {}


def _post_faults(api_url: str, lb: str, body: dict[str, Any], configuration: dict[str, Any] | None) -> JsonDict:
    result: dict[str, Any] = _lab.http_json(f"{api_url}/_chaos_dynamo/lb/{lb}/faults", body,
                                            configuration=configuration)  # a dry run's too
    return result
