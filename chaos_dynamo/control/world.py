"""What the DNS control plane reads and writes, as two small interfaces.

* :class:`ZoneStore`: Route 53 hosted zones (read the records at a name; apply a change
  batch all-or-nothing, raising :class:`~chaos_dynamo.errors.InvalidChangeBatch`).
* :class:`PlanSource`: the Planner's plan store (numbered plans, with *holds* an Enactor
  places on the plan it is applying).

The in-memory implementations here use the same change-batch rules as the lab
(:func:`chaos_dynamo.route53.rules.apply_changes`), so the explorer's findings hold on the
lab; the boto3 implementations live in :mod:`chaos_dynamo.control.aws`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from chaos_dynamo.errors import AwsError
from chaos_dynamo.plans import Plan
from chaos_dynamo.route53.records import RecordKey, RecordSet, normalize_name
from chaos_dynamo.route53.rules import Change, apply_changes


class ZoneStore(Protocol):
    def read(self, zone_id: str, name: str) -> list[RecordSet]:
        """The record sets whose name is exactly ``name``."""

    def change(self, zone_id: str, changes: Sequence[Change], comment: str = "") -> None:
        """Apply one batch all-or-nothing; InvalidChangeBatch when Route 53 refuses it."""


class PlanSource(Protocol):
    def newest_generation(self) -> int | None: ...

    def get(self, generation: int) -> Plan | None: ...

    def generations(self) -> list[int]: ...

    def put(self, plan: Plan) -> None: ...

    def delete(self, generation: int, *, unless_held: bool = False) -> bool:
        """Delete a plan; with ``unless_held``, refuse (return False) while anyone holds it."""

    def hold(self, generation: int, holder: str) -> None: ...

    def release(self, generation: int, holder: str) -> None: ...

    def holders(self, generation: int) -> frozenset[str]: ...


# --- in memory -----------------------------------------------------------------------------

@dataclass
class MemoryZones:
    """Hosted zones in memory, changed only through Route 53's rules."""

    names: dict[str, str]  # zone id -> zone name
    records: dict[str, dict[RecordKey, RecordSet]] = field(default_factory=dict)

    def read(self, zone_id: str, name: str) -> list[RecordSet]:
        wanted = normalize_name(name)
        # Filter first, then sort the few matches: the explorer reads millions of times.
        found = [(k, r) for k, r in self.records.get(zone_id, {}).items() if k[0] == wanted]
        return [r for _, r in sorted(found, key=_key_order)]

    def change(self, zone_id: str, changes: Sequence[Change], comment: str = "") -> None:
        if zone_id not in self.names:
            raise AwsError("NoSuchHostedZone", f"No hosted zone found with ID: {zone_id}")
        current = self.records.get(zone_id, {})
        self.records[zone_id] = apply_changes(self.names[zone_id], current, changes, zone_id=zone_id)

    def copy(self) -> MemoryZones:
        return MemoryZones(dict(self.names), {z: dict(r) for z, r in self.records.items()})

    def fingerprint(self) -> tuple[tuple[str, frozenset[RecordSet]], ...]:
        """A hashable summary of every record, for the explorer's state deduplication."""
        return tuple((z, frozenset(r.values())) for z, r in sorted(self.records.items()))


@dataclass
class MemoryPlans:
    """A plan store in memory."""

    plans: dict[int, Plan] = field(default_factory=dict)
    held: dict[int, frozenset[str]] = field(default_factory=dict)

    def newest_generation(self) -> int | None:
        return max(self.plans) if self.plans else None

    def get(self, generation: int) -> Plan | None:
        return self.plans.get(generation)

    def generations(self) -> list[int]:
        return sorted(self.plans)

    def put(self, plan: Plan) -> None:
        if plan.generation in self.plans:
            raise AwsError("ConditionalCheckFailedException",
                           f"plan {plan.generation} already exists")
        self.plans[plan.generation] = plan

    def delete(self, generation: int, *, unless_held: bool = False) -> bool:
        if unless_held and self.held.get(generation):
            return False
        self.plans.pop(generation, None)
        self.held.pop(generation, None)
        return True

    def hold(self, generation: int, holder: str) -> None:
        if generation in self.plans:
            self.held[generation] = self.held.get(generation, frozenset()) | {holder}

    def release(self, generation: int, holder: str) -> None:
        remaining = self.held.get(generation, frozenset()) - {holder}
        if remaining:
            self.held[generation] = remaining
        else:
            self.held.pop(generation, None)

    def holders(self, generation: int) -> frozenset[str]:
        return self.held.get(generation, frozenset())

    def copy(self) -> MemoryPlans:
        return MemoryPlans(dict(self.plans), dict(self.held))

    def fingerprint(self) -> tuple[tuple[int, frozenset[str]], ...]:
        return tuple((g, self.held.get(g, frozenset())) for g in sorted(self.plans))


def _key_order(item: tuple[RecordKey, RecordSet]) -> tuple[str, str, str]:
    name, rtype, set_id = item[0]
    return (name, rtype, set_id or "")


def index_by_name(records: Iterable[RecordSet]) -> Mapping[str, list[RecordSet]]:
    out: dict[str, list[RecordSet]] = {}
    for r in records:
        out.setdefault(r.name, []).append(r)
    return out
