"""Chaos Toolkit actions on the lab's load-balancer fleet and on the DynamoDB capacity
behind it (through the lab's control API)."""

# No `from __future__ import annotations`: Chaos Toolkit discovery reads the real types.
from typing import Any

from chaos_dynamo.clock import REAL_CLOCK, Clock
from chaos_dynamo.control._client import JsonDict
from chaos_dynamo.endpoint import _lab
from chaos_dynamo.errors import ConfigError
from chaos_dynamo.lab.lab import require_loopback_url
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
        lb: the load balancer's name (``lab status`` lists them), e.g. ``lb-1``.
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
    return _post_faults(_api_url(configuration), lb, body)


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
        lb: one load balancer's name; empty means every load balancer of the lab.

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
    api_url = require_loopback_url("chaos_dynamo_api", info.api_url)
    names = [str(spec["name"]) for spec in info.load_balancers]
    if lb and lb not in names:
        raise ConfigError("lb", f"{lb!r} is not a load balancer of the lab", f"use one of {names}, or \"\" for all")
    body = {"error_rate": rate, "error_code": code}
    return {name: _post_faults(api_url, name, body) for name in ([lb] if lb else names)}


def close_connections(*, configuration: dict[str, Any] | None = None,
                      secrets: dict[str, Any] | None = None) -> JsonDict:
    """Close every client keep-alive connection on every load balancer, so clients reconnect.

    Idle connections close now; busy ones after their current response (``Connection:
    close``). The LBs keep serving: a client's next request opens a new connection, after
    resolving the endpoint's name again.

    Returns:
        ``{lb name: connections closed}``.
    """
    result: dict[str, Any] = _lab.http_json(f"{_api_url(configuration)}/_chaos_dynamo/lb/connections/close", {})
    return result


def reset_lb_faults(*, configuration: dict[str, Any] | None = None,
                    secrets: dict[str, Any] | None = None) -> JsonDict:
    """Clear every fault knob on every load balancer (a rollback)."""
    result: dict[str, Any] = _lab.http_json(f"{_api_url(configuration)}/_chaos_dynamo/lb/faults/reset", {})
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
    return _post_capacity(_api_url(configuration), {"slots": slots, "service_time": service_time})


def reset_dynamodb_capacity(*, configuration: dict[str, Any] | None = None,
                            secrets: dict[str, Any] | None = None) -> JsonDict:
    """Make the lab's DynamoDB capacity unlimited again, with no service time (a rollback).

    Returns:
        The capacity after the reset (its counters are kept).
    """
    return _post_capacity(_api_url(configuration), {"slots": None, "service_time": 0.0})


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
    api_url = _api_url(configuration)
    before: dict[str, Any] = _lab.http_json(f"{api_url}/_chaos_dynamo/dynamodb/capacity")
    try:
        during = _post_capacity(api_url, {"service_time": service_time})
        slowed_at = clock.now()
        clock.sleep(max(0.0, slowed_at + seconds - clock.now()))
    finally:
        after = _post_capacity(api_url, {"service_time": before["service_time"]})
    restored_at = clock.now()
    _lab.logger.info("DynamoDB service time was %.3f s for %.1f s", service_time, restored_at - slowed_at)
    return {"seconds": float(seconds), "service_time": service_time, "slowed_at": slowed_at,
            "restored_at": restored_at, "before": before, "during": during, "after": after}


def _post_capacity(api_url: str, body: dict[str, Any]) -> JsonDict:
    result: dict[str, Any] = _lab.http_json(f"{api_url}/_chaos_dynamo/dynamodb/capacity", body)
    return result


def _api_url(configuration: dict[str, Any] | None) -> str:
    """The lab's control API, checked to be loopback."""
    return require_loopback_url("chaos_dynamo_api", _lab.lab_info(configuration).api_url)


def _post_faults(api_url: str, lb: str, body: dict[str, Any]) -> JsonDict:
    result: dict[str, Any] = _lab.http_json(f"{api_url}/_chaos_dynamo/lb/{lb}/faults", body)
    return result
