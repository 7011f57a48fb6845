"""DNS plans and the Route 53 record trees they become.

As in DynamoDB's DNS management, a *plan* is a numbered generation that says, for each
endpoint, which load balancers answer and with what weights. Each plan is written to the
zone as its own record tree (named by generation), and an alias at the endpoint name points
at the active tree. Deleting the active tree leaves the alias answering nothing: the empty
endpoint of October 2025.

Pure code: no I/O. The lab and the control plane turn these records into change batches.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from chaos_dynamo.config import EndpointSpec, LBSpec
from chaos_dynamo.errors import ConfigError
from chaos_dynamo.route53.records import AliasTarget, RecordSet, normalize_name

ADDRESS_TYPES_V4 = ("A",)
ADDRESS_TYPES_DUAL = ("A", "AAAA")


@dataclass(frozen=True)
class PlanEntry:
    """One load balancer in a plan, with its weight for this generation."""

    lb: str
    address: str
    weight: int


@dataclass(frozen=True)
class Plan:
    """A numbered plan: for each endpoint name, the load balancers that serve it."""

    generation: int
    endpoints: tuple[tuple[str, tuple[PlanEntry, ...]], ...]

    def __post_init__(self) -> None:
        # One canonical order, so equal plans compare (and serialize) equal.
        object.__setattr__(self, "endpoints", tuple(sorted(self.endpoints, key=lambda item: item[0])))

    def entries(self, endpoint: str) -> tuple[PlanEntry, ...]:
        wanted = normalize_name(endpoint)
        for name, entries in self.endpoints:
            if normalize_name(name) == wanted:
                return entries
        raise ConfigError("endpoint", f"{endpoint!r} is not in plan {self.generation}",
                          f"use one of {[n for n, _ in self.endpoints]}")

    def to_json(self) -> str:
        return json.dumps({
            "generation": self.generation,
            "endpoints": {
                name: [{"lb": e.lb, "address": e.address, "weight": e.weight} for e in entries]
                for name, entries in self.endpoints
            },
        }, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Plan:
        data: Mapping[str, Any] = json.loads(text)
        return cls(
            generation=int(data["generation"]),
            endpoints=tuple(
                (name, tuple(PlanEntry(str(e["lb"]), str(e["address"]), int(e["weight"])) for e in entries))
                for name, entries in sorted(data["endpoints"].items())
            ),
        )


def plan_from_fleet(generation: int, endpoints: Iterable[EndpointSpec], lbs: Sequence[LBSpec]) -> Plan:
    """A plan that sends every endpoint to the whole fleet with the configured weights."""
    entries = tuple(PlanEntry(lb.name, lb.address, lb.weight) for lb in lbs)
    return Plan(generation, tuple((ep.name, entries) for ep in endpoints))


def tree_name(endpoint: str, generation: int) -> str:
    """The name of a plan's record tree for ``endpoint``: ``plan-000007.<endpoint>.``."""
    return normalize_name(f"plan-{generation:06d}.{endpoint}")


def generation_of_tree(name: str) -> int | None:
    """The generation a tree name encodes, or None if ``name`` is not a plan tree."""
    first = normalize_name(name).split(".", 1)[0]
    if first.startswith("plan-") and first[5:].isdigit():
        return int(first[5:])
    return None


def v4_mapped(address: str) -> str:
    """The IPv4-mapped IPv6 form of a loopback address, so AAAA answers reach the same LB."""
    return f"::ffff:{address}"


def tree_records(plan: Plan, endpoint: EndpointSpec, ttl: int) -> list[RecordSet]:
    """The weighted records of ``plan``'s tree for ``endpoint`` (A, plus AAAA for dual-stack)."""
    name = tree_name(endpoint.name, plan.generation)
    types = ADDRESS_TYPES_DUAL if endpoint.ipv6 else ADDRESS_TYPES_V4
    records = []
    for entry in plan.entries(endpoint.name):
        for rtype in types:
            value = entry.address if rtype == "A" else v4_mapped(entry.address)
            records.append(RecordSet(
                name=name, type=rtype, ttl=ttl, values=(value,),
                set_identifier=entry.lb, weight=entry.weight,
            ))
    return records


def alias_records(plan: Plan, endpoint: EndpointSpec, zone_id: str) -> list[RecordSet]:
    """The alias(es) at the endpoint name pointing at ``plan``'s tree."""
    target = tree_name(endpoint.name, plan.generation)
    types = ADDRESS_TYPES_DUAL if endpoint.ipv6 else ADDRESS_TYPES_V4
    return [
        RecordSet(name=endpoint.name, type=rtype, alias=AliasTarget(zone_id, target, False))
        for rtype in types
    ]


def upsert_changes(records: Iterable[RecordSet]) -> list[dict[str, Any]]:
    """UPSERT changes for ``records``: idempotent, so a restore works from any state."""
    return [{"Action": "UPSERT", "ResourceRecordSet": r.to_api()} for r in records]


def delete_changes(records: Iterable[RecordSet]) -> list[dict[str, Any]]:
    """DELETE changes carrying each record's exact current values, as Route 53 requires."""
    return [{"Action": "DELETE", "ResourceRecordSet": r.to_api()} for r in records]
