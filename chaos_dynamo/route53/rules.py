"""Route 53's change-batch rules, as AWS applies them, over plain values.

moto (and LocalStack, which shares its code) checks a DELETE against a history of past
changes, lets CREATE duplicate a record and applies half a batch when a later change
fails. The enactor race this project reproduces depends on AWS's real behaviour, so the
lab validates every batch here first and only then makes the emulator hold the result.

AWS's order, followed here:

1. request validation (``InvalidInput``): enum values and numeric ranges of every change
   ("N validation errors detected: ..."), then the shape of each change ("Invalid request:
   Expected exactly one of [...]"). Nothing is looked up yet.
2. the batch-size quota (``InvalidChangeBatch``).
3. the changes, in order, against a working copy of the zone. A change that breaks a rule
   adds one message, worded as AWS words it, and is not applied; the rest still run so
   every failing change is reported. The working copy is returned only if no change
   failed, so a batch is all-or-nothing.

No I/O: the same rules serve the lab's HTTP front, the in-memory zone of the explorer and
the unit tests.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from chaos_dynamo.errors import AwsError, InvalidChangeBatch
from chaos_dynamo.route53.records import (
    RecordKey,
    RecordSet,
    is_within,
    normalize_name,
    strip_zone_prefix,
)

__all__ = [
    "ACTIONS",
    "MAX_RESOURCE_RECORDS",
    "RECORD_TYPES",
    "Change",
    "apply_changes",
    "change_from_api",
    "constraint_error",
    "diff",
    "provided_fields",
    "range_error",
    "records_equal",
]

ACTIONS = ("CREATE", "DELETE", "UPSERT")
RECORD_TYPES = (
    "SOA", "A", "TXT", "NS", "CNAME", "MX", "NAPTR", "PTR", "SRV", "SPF", "AAAA", "CAA",
    "DS", "TLSA", "SSHFP", "SVCB", "HTTPS",
)
"""The RRType enum of the Route 53 API (2013-04-01), in the model's order."""

MAX_RESOURCE_RECORDS = 1000
"""Route 53 quota: ResourceRecord elements per request, UPSERT counting twice."""

_MAX_WEIGHT = 255
_MAX_TTL = 2_147_483_647
_MAX_SET_IDENTIFIER = 128

_ROUTING_FIELDS = (
    "Weight", "Region", "Failover", "GeoLocation", "MultiValueAnswer",
    "GeoProximityLocation", "CidrRoutingConfig",
)
"""Fields that make a record set one of several with the same name and type."""

_OPTIONAL_COMPARED = {
    "Weight": "weight",
    "Region": "region",
    "Failover": "failover",
    "MultiValueAnswer": "multivalue_answer",
    "HealthCheckId": "health_check_id",
}
"""API field -> RecordSet attribute a DELETE compares only when the request gave it."""


@dataclass(frozen=True)
class Change:
    """One change of a batch.

    ``provided`` is the set of API field names present in the request's
    ``ResourceRecordSet`` (``Name``, ``TTL``, ``Weight``...). AWS compares a DELETE only on
    the optional attributes it was given, and tells "no TTL" from "TTL 0", so the rules
    need to know what was sent, not just the parsed record. When left empty it is derived
    from the record (every attribute that is set), which is right for changes built in
    code rather than parsed from a request.
    """

    action: str
    record: RecordSet
    provided: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        if not self.provided:
            object.__setattr__(self, "provided", provided_fields(self.record))


def provided_fields(record: RecordSet) -> frozenset[str]:
    """The API fields a request carrying exactly ``record`` would contain."""
    return frozenset(k for k, v in record.to_api().items() if not _is_empty(v))


def _is_empty(value: Any) -> bool:
    # False and 0 are values (MultiValueAnswer=false, TTL 0); only absence is empty.
    return value is None or (isinstance(value, list | dict | tuple | str) and len(value) == 0)


def change_from_api(d: Mapping[str, Any]) -> Change:
    """Build a :class:`Change` from a boto3-style ``{"Action", "ResourceRecordSet"}`` dict.

    Raises:
        AwsError: ``InvalidInput`` when the change lacks its record set, name or type, or a
            number is not a number.
    """
    action = str(d.get("Action", ""))
    rrset = d.get("ResourceRecordSet")
    if not isinstance(rrset, Mapping):
        raise AwsError("InvalidInput", f"Invalid request: Missing field 'ResourceRecordSet' in Change with [Action={action}]")
    for required in ("Name", "Type"):
        if _is_empty(rrset.get(required)):
            raise AwsError(
                "InvalidInput",
                f"Invalid request: Missing field '{required}' in Change with "
                f"[Action={action}, Name={rrset.get('Name')}, Type={rrset.get('Type')}]",
            )
    present = {k: v for k, v in rrset.items() if not _is_empty(v)}
    try:
        record = RecordSet.from_api(present)
    except (TypeError, ValueError, KeyError) as exc:
        raise AwsError("InvalidInput", f"Invalid request: {exc!s} in Change with [Action={action}, Name={rrset.get('Name')}]") from exc
    return Change(action=action, record=record, provided=frozenset(present))


# --- comparing records ------------------------------------------------------------------

def records_equal(a: RecordSet, b: RecordSet) -> bool:
    """True when Route 53 would call ``a`` and ``b`` the same record set.

    Values are a set (their order is not kept by Route 53); names and alias targets are
    already normalized by :class:`RecordSet`; unmodelled attributes (``extra``) count.
    """
    return (
        a.key == b.key
        and a.ttl == b.ttl
        and frozenset(a.values) == frozenset(b.values)
        and a.alias == b.alias
        and a.weight == b.weight
        and a.region == b.region
        and a.failover == b.failover
        and a.multivalue_answer == b.multivalue_answer
        and a.health_check_id == b.health_check_id
        and dict(a.extra) == dict(b.extra)
    )


def _sort_key(key: RecordKey) -> tuple[str, str, bool, str]:
    # None (no set identifier) sorts before any identifier without comparing None to str.
    name, rtype, set_id = key
    return (name, rtype, set_id is not None, set_id or "")


def diff(
    old: Mapping[RecordKey, RecordSet], new: Mapping[RecordKey, RecordSet]
) -> tuple[list[RecordSet], list[RecordSet]]:
    """What turns ``old`` into ``new``: (records to remove, records to add or replace).

    Removed records are as they were in ``old`` (a DELETE must quote them exactly); added
    or changed ones as in ``new`` (an UPSERT each). Both lists are sorted by key so the
    same two zones always give the same batch.
    """
    removed = [old[k] for k in sorted(old, key=_sort_key) if k not in new]
    changed = [
        new[k] for k in sorted(new, key=_sort_key)
        if k not in old or not records_equal(old[k], new[k])
    ]
    return removed, changed


# --- applying a batch -------------------------------------------------------------------

def apply_changes(
    zone_name: str,
    current: Mapping[RecordKey, RecordSet],
    changes: Sequence[Change],
    *,
    zone_id: str | None = None,
) -> dict[RecordKey, RecordSet]:
    """Validate ``changes`` against ``current`` and return the zone after them.

    ``current`` is never mutated. With ``zone_id`` given, an alias that targets this same
    zone must point at a record that exists (by name and type) at that point of the batch,
    as AWS requires; without it, alias targets are not checked.

    Raises:
        AwsError: ``InvalidInput`` for a malformed request (nothing looked at yet).
        InvalidChangeBatch: one message per failing change; nothing was applied.
    """
    zone = normalize_name(zone_name)
    _check_request(changes)
    _check_quota(changes)
    work = dict(current)
    messages: list[str] = []
    for change in changes:
        problem = _problem(zone, work, change, zone_id)
        if problem is not None:
            messages.append(problem)
            continue
        if change.action == "DELETE":
            del work[change.record.key]
        else:
            work[change.record.key] = change.record
    if messages:
        raise InvalidChangeBatch(messages)
    return work


# --- 1. request validation (InvalidInput) -----------------------------------------------

def _check_request(changes: Sequence[Change]) -> None:
    if not changes:
        raise AwsError(
            "InvalidInput",
            "1 validation error detected: Value '[]' at 'changeBatch.changes' failed to "
            "satisfy constraint: Member must have length greater than or equal to 1",
        )
    errors = [e for i, c in enumerate(changes, start=1) for e in _field_errors(i, c)]
    if errors:
        plural = "s" if len(errors) > 1 else ""
        raise AwsError("InvalidInput", f"{len(errors)} validation error{plural} detected: " + "; ".join(errors))
    for change in changes:
        problem = _shape_error(change)
        if problem is not None:
            raise AwsError("InvalidInput", problem)


def constraint_error(value: object, path: str, constraint: str) -> str:
    """One of AWS's request-model validation errors, as Route 53 words it.

    ``path`` is the field's path in the request, lower camel case as AWS spells it
    (``changeBatch.changes.1.member.resourceRecordSet.weight``,
    ``healthCheckConfig.port``); ``constraint`` follows "Member must".
    """
    return f"Value '{value}' at '{path}' failed to satisfy constraint: Member must {constraint}"


def range_error(value: int | None, path: str, low: int, high: int) -> list[str]:
    """The validation error of a number outside ``low..high`` (none for ``None`` or in range)."""
    if value is None:
        return []
    if value > high:
        return [constraint_error(value, path, f"have value less than or equal to {high}")]
    if value < low:
        return [constraint_error(value, path, f"have value greater than or equal to {low}")]
    return []


def _field_errors(index: int, change: Change) -> list[str]:
    """AWS's request-model checks, with its field paths (1-based list index)."""
    base = f"changeBatch.changes.{index}.member"
    rrset = f"{base}.resourceRecordSet"
    record = change.record
    errors: list[str] = []
    if change.action not in ACTIONS:
        errors.append(constraint_error(change.action, f"{base}.action", f"satisfy enum value set: [{', '.join(ACTIONS)}]"))
    if record.type not in RECORD_TYPES:
        errors.append(constraint_error(record.type, f"{rrset}.type", f"satisfy enum value set: [{', '.join(RECORD_TYPES)}]"))
    errors += range_error(record.weight, f"{rrset}.weight", 0, _MAX_WEIGHT)
    # AWS lower-cases the first letter of the member name in these paths: TTL -> tTL.
    errors += range_error(record.ttl, f"{rrset}.tTL", 0, _MAX_TTL)
    if record.set_identifier is not None and len(record.set_identifier) > _MAX_SET_IDENTIFIER:
        errors.append(constraint_error(record.set_identifier, f"{rrset}.setIdentifier",
                                       f"have length less than or equal to {_MAX_SET_IDENTIFIER}"))
    return errors


def _change_label(change: Change) -> str:
    record = change.record
    set_id = record.set_identifier if record.set_identifier is not None else "null"
    return f"[Action={change.action}, Name={record.name}, Type={record.type}, SetIdentifier={set_id}]"


def _exactly_one(choices: str, found: int, change: Change) -> str | None:
    if found == 1:
        return None
    how_many = "none" if found == 0 else "more than one"
    return f"Invalid request: Expected exactly one of [{choices}], but found {how_many} in Change with {_change_label(change)}"


def _shape_error(change: Change) -> str | None:
    """A record set must say what it answers with, and a set identifier needs a policy."""
    given = change.provided
    has_records = "TTL" in given and "ResourceRecords" in given
    alias_plus = "AliasTarget" in given and ("TTL" in given or "ResourceRecords" in given)
    answers = int("AliasTarget" in given) + int(has_records) + int("TrafficPolicyInstanceId" in given)
    problem = _exactly_one(
        "AliasTarget, all of [TTL, and ResourceRecords], or TrafficPolicyInstanceId",
        2 if alias_plus else answers, change,
    )
    if problem is not None:
        return problem
    policies = [f for f in _ROUTING_FIELDS if f in given]
    policy_choices = "Weight, Region, Failover, GeoLocation, MultiValueAnswer, GeoProximityLocation, or CidrRoutingConfig"
    if len(policies) > 1:
        return _exactly_one(policy_choices, len(policies), change)
    if policies and change.record.set_identifier is None:
        return f"Invalid request: Missing field 'SetIdentifier' in Change with {_change_label(change)}"
    # A DELETE names the record by its key; its policy attribute may be omitted (see
    # _OPTIONAL_COMPARED), so only CREATE/UPSERT must pair a set identifier with a policy.
    if change.record.set_identifier is not None and change.action != "DELETE":
        return _exactly_one(policy_choices, len(policies), change)
    return None


# --- 2. quota (InvalidChangeBatch) ------------------------------------------------------

def _check_quota(changes: Sequence[Change]) -> None:
    counted = sum(len(c.record.values) * (2 if c.action == "UPSERT" else 1) for c in changes)
    if counted > MAX_RESOURCE_RECORDS or len(changes) > MAX_RESOURCE_RECORDS:
        raise InvalidChangeBatch([f"Number of records limit of {MAX_RESOURCE_RECORDS} exceeded."])


# --- 3. each change against the working copy ---------------------------------------------

Zone = dict[RecordKey, RecordSet]


def _problem(zone: str, work: Zone, change: Change, zone_id: str | None) -> str | None:
    """The AWS message for the first rule ``change`` breaks, or None when it applies."""
    record = change.record
    if not is_within(record.name, zone):
        return f"RRSet with DNS name {record.name} is not permitted in zone {zone}"
    problem = _value_error(record)
    if problem is not None:
        return problem
    if change.action == "DELETE":
        return _delete_problem(zone, work, change)
    if change.action == "CREATE" and record.key in work:
        return f"Tried to create resource record set {record.describe()} but it already exists"
    return _placement_problem(zone, work, record, zone_id)


def _invalid_rdata(code: str, what: str, value: str) -> str:
    return f"Invalid Resource Record: 'FATAL problem: {code} ({what}) encountered with '{value}''"


def _parses(parse: Callable[[str], object], value: str) -> bool:
    try:
        parse(value)
    except ValueError:
        return False
    return True


def _value_error(record: RecordSet) -> str | None:
    """Record data AWS refuses whatever the zone holds."""
    if record.alias is not None:
        return None
    seen: set[str] = set()
    for value in record.values:
        if value in seen:
            return f"Duplicate Resource Record: '{value}'"
        seen.add(value)
        if record.type == "A" and not _parses(ipaddress.IPv4Address, value):
            return _invalid_rdata("ARRDATAIllegalIPv4Address", "Value is not a valid IPv4 address", value)
        if record.type == "AAAA" and not _parses(ipaddress.IPv6Address, value):
            return _invalid_rdata("AAAARRDATAIllegalIPv6Address", "Value is not a valid IPv6 address", value)
    if record.type == "CNAME" and len(record.values) != 1:
        return f"RRSet of type CNAME with DNS name {record.name} must have exactly one resource record."
    return None


def _delete_problem(zone: str, work: Zone, change: Change) -> str | None:
    record = change.record
    if record.name == zone and record.set_identifier is None:
        if record.type == "NS":
            return "A HostedZone must contain at least one NS record for the zone itself."
        if record.type == "SOA":
            return "A HostedZone must contain exactly one SOA record."
    existing = work.get(record.key)
    if existing is None:
        return f"Tried to delete resource record set {record.describe()} but it was not found"
    if not _delete_matches(change, existing):
        return (f"Tried to delete resource record set {record.describe()} "
                "but the values provided do not match the current values")
    return None


def _delete_matches(change: Change, existing: RecordSet) -> bool:
    """AWS's DELETE match: answer data always, optional attributes only when given."""
    record = change.record
    if record.alias is not None or existing.alias is not None:
        if record.alias != existing.alias:
            return False
    elif record.ttl != existing.ttl or frozenset(record.values) != frozenset(existing.values):
        return False
    for api_field, attr in _OPTIONAL_COMPARED.items():
        if api_field in change.provided and getattr(record, attr) != getattr(existing, attr):
            return False
    given_extra, existing_extra = dict(record.extra), dict(existing.extra)
    return all(
        existing_extra.get(k) == v for k, v in given_extra.items() if k in change.provided
    )


def _placement_problem(zone: str, work: Zone, record: RecordSet, zone_id: str | None) -> str | None:
    """Rules about what may sit next to ``record`` (CREATE and UPSERT)."""
    if record.type == "CNAME" and record.name == zone:
        return f"RRSet of type CNAME with DNS name {record.name} is not permitted at apex in zone {zone}"
    neighbours = [k for k in work if k[0] == record.name and k != record.key]
    if record.type == "CNAME" and any(k[1] != "CNAME" for k in neighbours):
        return (f"RRSet of type CNAME with DNS name {record.name} is not permitted as it "
                f"conflicts with other records with the same DNS name in zone {zone}")
    if record.type != "CNAME" and any(k[1] == "CNAME" for k in neighbours):
        # The two spaces before CNAME are AWS's own, seen in its responses.
        return (f"RRSet of type {record.type} with DNS name {record.name} is not permitted "
                f"because a conflicting RRSet of type  CNAME with the same DNS name already "
                f"exists in zone {zone}")
    problem = _set_identifier_problem(record, [k for k in neighbours if k[1] == record.type])
    if problem is not None:
        return problem
    return _alias_target_problem(work, record, zone_id)


def _set_identifier_problem(record: RecordSet, same_type: list[RecordKey]) -> str | None:
    """Records of one name and type either all have set identifiers or are a single one."""
    if record.set_identifier is None:
        if same_type:
            return (f"RRSet with DNS name {record.name}, type {record.type} cannot be created "
                    "as other RRSets exist with the same name and type.")
        return None
    if any(k[2] is None for k in same_type):
        prefix = f"RRSet with DNS name {record.name}, type {record.type}, SetIdentifier {record.set_identifier}"
        if record.multivalue_answer is not None:
            return f"{prefix} cannot be created because a non multivalue answer rrset exists with the same name and type."
        return f"{prefix} cannot be created as a non-weighted set exists with the same name and type."
    return None


def _alias_target_problem(work: Zone, record: RecordSet, zone_id: str | None) -> str | None:
    alias = record.alias
    if alias is None or zone_id is None or alias.hosted_zone_id != strip_zone_prefix(zone_id):
        return None
    if any(k[0] == alias.dns_name and k[1] == record.type for k in work):
        return None
    return (f"Tried to create an alias that targets {alias.dns_name}, type {record.type} in zone "
            f"{alias.hosted_zone_id}, but that target was not found")
