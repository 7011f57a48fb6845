"""A digest of everything a chaos run can change in a lab, to show that something did not.

"Bad input changes nothing" and "a rollback restores state" are claims about the lab's
*state*, not its counters: the digest covers every hosted zone's record sets, the health
checks, the plan table, each load balancer's fault knobs, DynamoDB's capacity and the
control plane's mode, design and armed failpoints; on a lab with namespaces, every
namespace's plan table too. Query logs and request counters are left
out, since reading the lab adds to them.

``snapshot(info)`` is the state as canonical JSON-ready data (a test can diff two of them);
``state_digest(info)`` is its SHA-256.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from chaos_dynamo.errors import LabError
from chaos_dynamo.lab.state import LabInfo
from chaos_dynamo.route53.backend import iter_record_sets, make_client

_VOLATILE_FAULTS = ("refusing_for",)
"""Fault fields that count down by themselves; the digest keeps only whether they are set."""


def snapshot(info: LabInfo) -> dict[str, Any]:
    """The lab's state: zones and records, health checks, plans, LB faults, capacity, control.

    Raises:
        LabError: the lab or its emulator did not answer.
    """
    from chaos_dynamo.endpoint._lab import http_json

    route53 = make_client("route53", info.api_url, info.region)
    dynamodb = make_client("dynamodb", info.api_url, info.region)
    try:
        zones = {}
        for page in route53.get_paginator("list_hosted_zones").paginate():
            for zone in page["HostedZones"]:
                records = [record_json(r) for r in iter_record_sets(route53, zone["Id"])]
                zones[zone["Name"].lower()] = sorted(records, key=lambda r: json.dumps(r, sort_keys=True))
        checks: list[dict[str, Any]] = []
        for page in route53.get_paginator("list_health_checks").paginate():
            checks.extend({"id": c["Id"], "config": c["HealthCheckConfig"]} for c in page["HealthChecks"])
        # Every plan table: the view's, and each namespace's (a lab with namespaces has one each).
        tables = sorted({info.plan_table, *(ns.plan_table for ns in info.namespaces)})
        plans: Any = (_scan(dynamodb, info.plan_table) if tables == [info.plan_table]
                      else {table: _scan(dynamodb, table) for table in tables})
    except (BotoCoreError, ClientError) as exc:
        raise LabError(f"could not read the lab's state at {info.api_url}: {exc}") from None
    status = http_json(f"{info.api_url}/_chaos_dynamo/status")
    load_balancers = {name: _stable_faults(lb.get("faults", {}))
                      for name, lb in sorted(status.get("load_balancers", {}).items())}
    control = status.get("control") or {}
    failpoints: Any = None
    if control:
        failpoints = http_json(f"{info.api_url}/_chaos_dynamo/control/status").get("failpoints")
    return {
        "zones": dict(sorted(zones.items())),
        "health_checks": sorted(checks, key=lambda c: str(c["id"])),
        "plans": plans,
        "load_balancers": load_balancers,
        "capacity": _capacity_knobs(status.get("dynamodb", {}).get("capacity")),
        "control": {"mode": control.get("mode"), "design": control.get("design"),
                    "stuck": control.get("stuck"), "failpoints": failpoints},
    }


def state_digest(info: LabInfo) -> str:
    """SHA-256 of :func:`snapshot`, as hex."""
    return digest_of(snapshot(info))


def digest_of(state: dict[str, Any]) -> str:
    canonical = json.dumps(state, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def record_json(record: Any) -> dict[str, Any]:
    """A record set as plain data (the dataclass, or an already-plain mapping)."""
    import dataclasses

    if dataclasses.is_dataclass(record) and not isinstance(record, type):
        plain: dict[str, Any] = json.loads(json.dumps(dataclasses.asdict(record), default=str))
        return plain
    return dict(record)


def _scan(dynamodb: Any, table: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"TableName": table, "ConsistentRead": True}
    try:
        while True:
            page = dynamodb.scan(**kwargs)
            items.extend(page.get("Items", []))
            if "LastEvaluatedKey" not in page:
                break
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
            return []
        raise
    return sorted(items, key=lambda item: json.dumps(item, sort_keys=True))


def _capacity_knobs(capacity: Any) -> Any:
    """The capacity's settings (slots, service time), not its counters (served, waiting, ...):
    any DynamoDB request through the LBs, a probe's included, moves those."""
    if not isinstance(capacity, dict):
        return capacity
    return {k: capacity.get(k) for k in ("slots", "service_time")}


def _stable_faults(faults: dict[str, Any]) -> dict[str, Any]:
    stable = dict(faults)
    for key in _VOLATILE_FAULTS:
        if key in stable:
            stable[key] = stable[key] is not None and stable[key] > 0
    intermittent = stable.get("intermittent")
    if isinstance(intermittent, dict):
        stable["intermittent"] = {k: v for k, v in intermittent.items() if k != "seconds_left"}
    return stable
