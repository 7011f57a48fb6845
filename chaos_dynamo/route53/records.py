"""Route 53 resource record sets as plain values.

Names are stored the way Route 53 compares them: lower case, fully qualified, with the
trailing dot. Everything that reads or writes records (the change-batch rules, the lab
DNS, the boto3 adapter) goes through this one model, so a record means the same thing
everywhere.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

RecordKey = tuple[str, str, str | None]
"""(name, type, set identifier): what makes a record set unique in a hosted zone."""


def normalize_name(name: str) -> str:
    """Return ``name`` as Route 53 compares it: lower case with one trailing dot."""
    cleaned = name.strip().lower()
    if not cleaned.endswith("."):
        cleaned += "."
    return cleaned


def is_within(name: str, zone_name: str) -> bool:
    """True when ``name`` is ``zone_name`` or below it (both normalized)."""
    name, zone_name = normalize_name(name), normalize_name(zone_name)
    return name == zone_name or name.endswith("." + zone_name)


@dataclass(frozen=True)
class AliasTarget:
    """A Route 53 alias: the record answers with the target's records."""

    hosted_zone_id: str
    dns_name: str
    evaluate_target_health: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "dns_name", normalize_name(self.dns_name))
        object.__setattr__(self, "hosted_zone_id", strip_zone_prefix(self.hosted_zone_id))


@dataclass(frozen=True)
class RecordSet:
    """One resource record set.

    ``values`` hold the record data as Route 53 shows it (an IPv4 address, a quoted TXT
    string, a target name). Either ``ttl`` and ``values`` are set, or ``alias``.
    """

    name: str
    type: str
    ttl: int | None = None
    values: tuple[str, ...] = ()
    alias: AliasTarget | None = None
    set_identifier: str | None = None
    weight: int | None = None
    region: str | None = None
    failover: str | None = None
    multivalue_answer: bool | None = None
    health_check_id: str | None = None
    extra: tuple[tuple[str, Any], ...] = field(default=(), compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "name", normalize_name(self.name))
        object.__setattr__(self, "type", self.type.upper())
        object.__setattr__(self, "values", tuple(self.values))

    @property
    def key(self) -> RecordKey:
        return (self.name, self.type, self.set_identifier)

    def describe(self) -> str:
        """The bracketed form AWS uses in InvalidChangeBatch messages."""
        text = f"[name='{self.name}', type='{self.type}'"
        if self.set_identifier is not None:
            text += f", set-identifier='{self.set_identifier}'"
        return text + "]"

    # --- boto3 / API dictionaries -------------------------------------------------
    def to_api(self, *, trailing_dot: bool = True) -> dict[str, Any]:
        """The ``ResourceRecordSet`` dictionary boto3 takes and returns."""
        out: dict[str, Any] = {
            "Name": self.name if trailing_dot else self.name.rstrip("."),
            "Type": self.type,
        }
        if self.set_identifier is not None:
            out["SetIdentifier"] = self.set_identifier
        if self.weight is not None:
            out["Weight"] = self.weight
        if self.region is not None:
            out["Region"] = self.region
        if self.failover is not None:
            out["Failover"] = self.failover
        if self.multivalue_answer is not None:
            out["MultiValueAnswer"] = self.multivalue_answer
        if self.alias is not None:
            out["AliasTarget"] = {
                "HostedZoneId": self.alias.hosted_zone_id,
                "DNSName": self.alias.dns_name,
                "EvaluateTargetHealth": self.alias.evaluate_target_health,
            }
        else:
            if self.ttl is not None:
                out["TTL"] = self.ttl
            out["ResourceRecords"] = [{"Value": v} for v in self.values]
        if self.health_check_id is not None:
            out["HealthCheckId"] = self.health_check_id
        for key, value in self.extra:
            out[key] = value
        return out

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> RecordSet:
        """Build from a boto3 ``ResourceRecordSet`` dictionary."""
        alias = None
        if data.get("AliasTarget"):
            a = data["AliasTarget"]
            alias = AliasTarget(
                hosted_zone_id=str(a.get("HostedZoneId", "")),
                dns_name=str(a.get("DNSName", "")),
                evaluate_target_health=bool(a.get("EvaluateTargetHealth", False)),
            )
        known = {
            "Name", "Type", "TTL", "ResourceRecords", "AliasTarget", "SetIdentifier",
            "Weight", "Region", "Failover", "MultiValueAnswer", "HealthCheckId",
        }
        ttl = data.get("TTL")
        weight = data.get("Weight")
        mva = data.get("MultiValueAnswer")
        return cls(
            name=str(data["Name"]),
            type=str(data["Type"]),
            ttl=int(ttl) if ttl is not None else None,
            values=tuple(str(r["Value"]) for r in data.get("ResourceRecords") or ()),
            alias=alias,
            set_identifier=data.get("SetIdentifier"),
            weight=int(weight) if weight is not None else None,
            region=data.get("Region"),
            failover=data.get("Failover"),
            multivalue_answer=bool(mva) if mva is not None else None,
            health_check_id=data.get("HealthCheckId"),
            extra=tuple(sorted((k, v) for k, v in data.items() if k not in known)),
        )


def strip_zone_prefix(zone_id: str) -> str:
    """``/hostedzone/Z123`` -> ``Z123``."""
    return zone_id.rsplit("/", 1)[-1]


def index_records(records: Iterable[RecordSet]) -> dict[RecordKey, RecordSet]:
    """Records by key; a later record with the same key replaces an earlier one."""
    return {r.key: r for r in records}


@dataclass(frozen=True)
class ZoneSnapshot:
    """The records of one hosted zone at one moment, as the lab DNS serves them."""

    zone_id: str
    name: str
    records: tuple[RecordSet, ...]
    serial: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "name", normalize_name(self.name))
        object.__setattr__(self, "zone_id", strip_zone_prefix(self.zone_id))
