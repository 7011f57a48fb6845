"""Prometheus text exposition of the lab's counters (``GET /metrics`` on the lab API).

Counters arrive as nested dictionaries from the DNS server, the LB fleet and the Route 53
front; ``by_<label>`` levels become labels. So
``{"lb-1": {"by_operation": {"GetItem": 3}}}`` renders as
``chaos_dynamo_lb_requests_by_operation_total{lb="lb-1",operation="GetItem"} 3``.
The DynamoDB capacity adds ``chaos_dynamo_dynamodb_capacity_*`` gauges and counters, and
the Route 53 health checks ``chaos_dynamo_route53_health_checks*`` gauges and
``chaos_dynamo_route53_health_checker_*_total`` counters.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(labels: tuple[tuple[str, str], ...]) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in labels) + "}"


def _metric_name(text: str) -> str:
    return "".join(c if c.isalnum() or c == "_" else "_" for c in text)


def _walk(prefix: str, data: Mapping[str, Any], labels: tuple[tuple[str, str], ...],
          outer_label: str | None) -> Iterator[tuple[str, tuple[tuple[str, str], ...], float]]:
    for key, value in sorted(data.items(), key=lambda kv: str(kv[0])):
        key = str(key)
        if isinstance(value, bool):
            continue
        if isinstance(value, (int, float)):
            if outer_label is not None:
                yield prefix, labels + ((outer_label, key),), float(value)
            else:
                yield f"{prefix}_{_metric_name(key)}", labels, float(value)
        elif isinstance(value, Mapping):
            if key.startswith("by_"):
                yield from _walk(f"{prefix}_{_metric_name(key)}", value, labels, key[3:])
            elif outer_label is not None:
                yield from _walk(prefix, value, labels + ((outer_label, key),), None)
            else:
                yield from _walk(f"{prefix}_{_metric_name(key)}", value, labels, None)


def render_family(prefix: str, data: Mapping[str, Any], label: str | None = None) -> list[str]:
    """Lines for one counter tree; ``label`` names the first level's keys (e.g. "lb")."""
    series: dict[str, list[str]] = {}
    for name, labels, value in _walk(prefix, data, (), label):
        metric = name if name.endswith("_total") else f"{name}_total"
        text = f"{int(value)}" if float(value).is_integer() else repr(value)
        series.setdefault(metric, []).append(f"{metric}{_labels(labels)} {text}")
    lines: list[str] = []
    for metric in sorted(series):
        lines.append(f"# TYPE {metric} counter")
        lines.extend(series[metric])
    return lines


_CAPACITY = "chaos_dynamo_dynamodb_capacity"
_CAPACITY_SERIES = (  # (key of BackendCapacity.describe(), metric suffix, Prometheus type)
    ("slots", "slots", "gauge"),
    ("service_time", "service_time_seconds", "gauge"),
    ("waiting", "waiting", "gauge"),
    ("in_service", "in_service", "gauge"),
    ("max_waiting", "max_waiting", "gauge"),
    ("served", "served_total", "counter"),
    ("cancelled", "cancelled_total", "counter"),
)


def render_capacity(capacity: Mapping[str, Any]) -> list[str]:
    """Lines for the lab's DynamoDB capacity (``BackendCapacity.describe()``): the knobs
    and the line now as gauges (unlimited slots as ``+Inf``), totals as counters."""
    lines: list[str] = []
    for key, suffix, kind in _CAPACITY_SERIES:
        if key not in capacity:
            continue
        value = capacity[key]
        text = "+Inf" if value is None else (f"{int(value)}" if float(value).is_integer() else repr(value))
        lines += [f"# TYPE {_CAPACITY}_{suffix} {kind}", f"{_CAPACITY}_{suffix} {text}"]
    return lines


_HEALTH = "chaos_dynamo_route53_health"
_HEALTH_COUNTERS = (  # (key of the runner's counters, metric suffix)
    ("probes", "checker_probes_total"),
    ("failures", "checker_failures_total"),
    ("skipped", "checker_skipped_total"),
    ("transitions", "check_transitions_total"),
)


def render_health(health: Mapping[str, Any]) -> list[str]:
    """Lines for the lab's Route 53 health checks (the ``health_checks`` part of lab
    status): checks and unhealthy checks as gauges, checker probes as counters."""
    counters = health.get("counters", {})
    unhealthy = health.get("unhealthy", [])
    lines = [f"# TYPE {_HEALTH}_checks gauge", f"{_HEALTH}_checks {int(health.get('total', 0))}",
             f"# TYPE {_HEALTH}_checks_unhealthy gauge", f"{_HEALTH}_checks_unhealthy {len(unhealthy)}"]
    if "in_flight" in counters:
        lines += [f"# TYPE {_HEALTH}_checker_probes_in_flight gauge",
                  f"{_HEALTH}_checker_probes_in_flight {int(counters['in_flight'])}"]
    for key, suffix in _HEALTH_COUNTERS:
        if key in counters:
            lines += [f"# TYPE {_HEALTH}_{suffix} counter", f"{_HEALTH}_{suffix} {int(counters[key])}"]
    return lines


def render(dns: Mapping[str, Any], lb: Mapping[str, Any], route53: Mapping[str, Any],
           capacity: Mapping[str, Any] | None = None, health: Mapping[str, Any] | None = None) -> str:
    """The whole ``/metrics`` page."""
    lines = render_family("chaos_dynamo_dns_queries", dns)
    fleet = {k: v for k, v in lb.items() if isinstance(v, Mapping) and k != "total"}
    lines += render_family("chaos_dynamo_lb_requests", fleet, label="lb")
    lines += render_family("chaos_dynamo_route53_changes", route53)
    if capacity is not None:
        lines += render_capacity(capacity)
    if health is not None:
        lines += render_health(health)
    return "\n".join(lines) + "\n"
