"""Chaos Toolkit actions on the lab's load-balancer fleet (through the lab's control API)."""

from __future__ import annotations

from typing import Any

from chaos_dynamo.endpoint import _lab
from chaos_dynamo.errors import ConfigError
from chaos_dynamo.lab.lab import require_loopback_url

__all__ = ["set_lb_faults", "reset_lb_faults"]


def set_lb_faults(lb: str, down: bool | None = None, latency: float | None = None,
                  refuse_for: float | None = None, error_rate: float | None = None,
                  error_status: int = 500, *, configuration: dict[str, Any] | None = None,
                  secrets: dict[str, Any] | None = None) -> dict[str, Any]:
    """Set fault knobs on one load balancer; knobs left as null are unchanged.

    Args:
        lb: the load balancer's name (``lab status`` lists them), e.g. ``lb-1``.
        down: refuse connections (true) or serve again (false).
        latency: seconds added before each request is forwarded.
        refuse_for: refuse connections for this many seconds, then serve again.
        error_rate: fraction (0-1) of requests answered with ``error_status``.

    Returns:
        The load balancer's knobs after the change.
    """
    if not isinstance(lb, str) or not lb:
        raise ConfigError("lb", f"{lb!r} is not a load balancer name", "use e.g. \"lb-1\"")
    body: dict[str, Any] = {}
    for key, value in (("down", down), ("latency", latency), ("refuse_for", refuse_for),
                       ("error_rate", error_rate)):
        if value is not None:
            body[key] = value
    if error_rate is not None:
        body["error_status"] = error_status
    info = _lab.lab_info(configuration)
    require_loopback_url("chaos_dynamo_api", info.api_url)
    result: dict[str, Any] = _lab.http_json(f"{info.api_url}/_chaos_dynamo/lb/{lb}/faults", body)
    return result


def reset_lb_faults(*, configuration: dict[str, Any] | None = None,
                    secrets: dict[str, Any] | None = None) -> dict[str, Any]:
    """Clear every fault knob on every load balancer (a rollback)."""
    info = _lab.lab_info(configuration)
    require_loopback_url("chaos_dynamo_api", info.api_url)
    result: dict[str, Any] = _lab.http_json(f"{info.api_url}/_chaos_dynamo/lb/faults/reset", {})
    return result
