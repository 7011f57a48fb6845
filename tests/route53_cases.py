"""Route 53 change-batch cases as data: initial records -> one batch -> expected outcome.

One table, several runners: the unit tests run it against the pure rules, and the same
cases can run over HTTP against the lab (which must pass them all) and against plain moto
(which is expected to fail some: that is why the lab exists). Everything here is boto3
dictionaries, so any runner can send them.

How a runner uses a case:

1. Create a hosted zone named ``case.zone``. A real zone starts with an apex SOA and NS;
   a runner without an emulator adds :func:`default_apex_records`.
2. Create ``case.initial`` (one CREATE each, in order; they are valid on their own).
3. Replace the text ``{zone_id}`` in ``AliasTarget.HostedZoneId`` values with the zone's
   id (aliases that target the zone itself), then send ``case.changes`` as one
   ``ChangeResourceRecordSets`` call.
4. Expect:
   * success (``error_code`` is None): every record in ``present`` is in the zone and
     :func:`record_matches` it; no key in ``absent`` is in the zone;
   * failure: an error with ``error_code`` whose message contains every string in
     ``messages``, and the zone exactly as it was before the call (all-or-nothing).
     ``present``/``absent`` hold as well and restate what "unchanged" means for the case.

``botocore_rejects`` marks cases boto3 refuses before sending (its parameter validation
checks minimums, not maximums or enums): an HTTP runner sends those with a raw request or
skips them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

ZONE = "example.com."
OTHER_ZONE_ID = "Z2FDTNDATAQYW2"  # CloudFront's alias zone: a target outside the lab zone

RecordKeyT = tuple[str, str, str | None]


@dataclass(frozen=True)
class Case:
    id: str
    changes: list[dict[str, Any]]
    initial: list[dict[str, Any]] = field(default_factory=list)
    zone: str = ZONE
    present: list[dict[str, Any]] = field(default_factory=list)
    absent: list[RecordKeyT] = field(default_factory=list)
    error_code: str | None = None
    messages: tuple[str, ...] = ()
    botocore_rejects: bool = False
    why: str = ""


# --- builders -----------------------------------------------------------------------------

def rrset(name: str, rtype: str, *values: str, ttl: int | None = 300, **extra: Any) -> dict[str, Any]:
    """A boto3 ``ResourceRecordSet``; ``extra`` adds SetIdentifier, Weight, AliasTarget..."""
    out: dict[str, Any] = {"Name": name, "Type": rtype}
    if ttl is not None:
        out["TTL"] = ttl
    if values:
        out["ResourceRecords"] = [{"Value": v} for v in values]
    out.update(extra)
    return out


def alias(name: str, rtype: str, target: str, zone_id: str = "{zone_id}", evaluate: bool = False,
          **extra: Any) -> dict[str, Any]:
    return rrset(name, rtype, ttl=None, AliasTarget={
        "HostedZoneId": zone_id, "DNSName": target, "EvaluateTargetHealth": evaluate,
    }, **extra)


def change(action: str, record: dict[str, Any]) -> dict[str, Any]:
    return {"Action": action, "ResourceRecordSet": record}


def create(record: dict[str, Any]) -> dict[str, Any]:
    return change("CREATE", record)


def delete(record: dict[str, Any]) -> dict[str, Any]:
    return change("DELETE", record)


def upsert(record: dict[str, Any]) -> dict[str, Any]:
    return change("UPSERT", record)


def key(name: str, rtype: str, set_id: str | None = None) -> RecordKeyT:
    return (name, rtype, set_id)


def default_apex_records(zone: str) -> list[dict[str, Any]]:
    """What a new hosted zone holds before anything is created (values as Route 53 picks)."""
    zone = _norm(zone)
    return [
        rrset(zone, "SOA", "ns-1.awsdns-01.org. awsdns-hostmaster.amazon.com. 1 7200 900 1209600 86400", ttl=900),
        rrset(zone, "NS", "ns-1.awsdns-01.org.", "ns-2.awsdns-02.co.uk.",
              "ns-3.awsdns-03.com.", "ns-4.awsdns-04.net.", ttl=172800),
    ]


# --- comparing ----------------------------------------------------------------------------

def _norm(name: str) -> str:
    name = name.strip().lower()
    return name if name.endswith(".") else name + "."


def record_key(record: Mapping[str, Any]) -> RecordKeyT:
    """(name, type, set identifier) of a boto3 record, names compared as Route 53 does."""
    return (_norm(record["Name"]), str(record["Type"]).upper(), record.get("SetIdentifier"))


def _alias_view(target: Mapping[str, Any]) -> tuple[str, str, bool]:
    return (str(target["HostedZoneId"]).rsplit("/", 1)[-1], _norm(target["DNSName"]),
            bool(target.get("EvaluateTargetHealth", False)))


def record_matches(expected: Mapping[str, Any], actual: Mapping[str, Any]) -> bool:
    """True when ``actual`` has every field of ``expected`` (values as a set, names folded).

    Fields ``expected`` does not mention are not compared, so a runner may pass the
    records as its emulator lists them.
    """
    if record_key(expected) != record_key(actual):
        return False
    for name, want in expected.items():
        if name in ("Name", "Type", "SetIdentifier"):
            continue
        got = actual.get(name)
        if name == "ResourceRecords":
            if got is None or {r["Value"] for r in want} != {r["Value"] for r in got}:
                return False
        elif name == "AliasTarget":
            if got is None or _alias_view(want) != _alias_view(got):
                return False
        elif want != got:
            return False
    return True


def substitute_zone_id(obj: Any, zone_id: str) -> Any:
    """``obj`` with every ``{zone_id}`` placeholder string replaced (deep copy)."""
    if isinstance(obj, str):
        return obj.replace("{zone_id}", zone_id)
    if isinstance(obj, Mapping):
        return {k: substitute_zone_id(v, zone_id) for k, v in obj.items()}
    if isinstance(obj, Sequence):
        return [substitute_zone_id(v, zone_id) for v in obj]
    return obj


# --- the cases ----------------------------------------------------------------------------

WWW = "www.example.com."
WWW_A = rrset(WWW, "A", "192.0.2.1")
WWW_A2 = rrset(WWW, "A", "192.0.2.1", "192.0.2.2")
BLUE = rrset(WWW, "A", "192.0.2.10", SetIdentifier="blue", Weight=10)
GREEN = rrset(WWW, "A", "192.0.2.20", SetIdentifier="green", Weight=20)
LOCK = rrset("lock.example.com.", "TXT", '"holder=enactor-a expires=100"', ttl=0)

IVCB = "InvalidChangeBatch"
INVALID = "InvalidInput"
EXISTS = "Tried to create resource record set [name='www.example.com.', type='A'] but it already exists"
NOT_FOUND = "Tried to delete resource record set [name='www.example.com.', type='A'] but it was not found"
NO_MATCH = ("Tried to delete resource record set [name='www.example.com.', type='A'] "
            "but the values provided do not match the current values")
SHAPE = ("Expected exactly one of [AliasTarget, all of [TTL, and ResourceRecords], or "
         "TrafficPolicyInstanceId], but found")
POLICY = ("Expected exactly one of [Weight, Region, Failover, GeoLocation, MultiValueAnswer, "
          "GeoProximityLocation, or CidrRoutingConfig], but found none")

CASES: list[Case] = [
    # --- CREATE -------------------------------------------------------------------------
    Case("create-simple", [create(WWW_A)], present=[WWW_A]),
    Case("create-existing-fails", [create(rrset(WWW, "A", "192.0.2.9"))], initial=[WWW_A],
         present=[WWW_A], error_code=IVCB, messages=(EXISTS,)),
    Case("create-existing-weighted-fails", [create(BLUE)], initial=[BLUE], present=[BLUE],
         error_code=IVCB, messages=(
             "Tried to create resource record set [name='www.example.com.', type='A', "
             "set-identifier='blue'] but it already exists",)),
    Case("create-second-weighted-ok", [create(GREEN)], initial=[BLUE], present=[BLUE, GREEN]),
    Case("create-existing-case-insensitive-fails", [create(rrset("WWW.Example.COM", "A", "192.0.2.9"))],
         initial=[WWW_A], present=[WWW_A], error_code=IVCB, messages=(EXISTS,),
         why="names are case-insensitive and the trailing dot is optional"),
    Case("create-ttl-zero-ok", [create(LOCK)], present=[LOCK]),
    Case("create-weight-bounds-ok", [
        create(rrset(WWW, "A", "192.0.2.1", SetIdentifier="zero", Weight=0)),
        create(rrset(WWW, "A", "192.0.2.2", SetIdentifier="max", Weight=255)),
    ], present=[rrset(WWW, "A", "192.0.2.1", SetIdentifier="zero", Weight=0),
                rrset(WWW, "A", "192.0.2.2", SetIdentifier="max", Weight=255)]),
    Case("create-aaaa-ok", [create(rrset(WWW, "AAAA", "2001:db8::1"))],
         present=[rrset(WWW, "AAAA", "2001:db8::1")]),
    # --- UPSERT -------------------------------------------------------------------------
    Case("upsert-creates", [upsert(WWW_A)], present=[WWW_A]),
    Case("upsert-replaces", [upsert(rrset(WWW, "A", "192.0.2.7", ttl=60))], initial=[WWW_A2],
         present=[rrset(WWW, "A", "192.0.2.7", ttl=60)]),
    Case("upsert-apex-ns-allowed", [upsert(rrset(ZONE, "NS", "ns1.example.net.", "ns2.example.net.", ttl=3600))],
         present=[rrset(ZONE, "NS", "ns1.example.net.", "ns2.example.net.", ttl=3600)]),
    # --- DELETE -------------------------------------------------------------------------
    Case("delete-exact", [delete(WWW_A)], initial=[WWW_A], absent=[key(WWW, "A")]),
    Case("delete-values-any-order", [delete(rrset(WWW, "A", "192.0.2.2", "192.0.2.1"))],
         initial=[WWW_A2], absent=[key(WWW, "A")]),
    Case("delete-case-insensitive-name", [delete(rrset("www.example.com", "A", "192.0.2.1"))],
         initial=[rrset("WWW.Example.COM.", "A", "192.0.2.1")], absent=[key(WWW, "A")]),
    Case("delete-not-found", [delete(WWW_A)], absent=[key(WWW, "A")],
         error_code=IVCB, messages=(NOT_FOUND,)),
    Case("delete-ttl-mismatch", [delete(rrset(WWW, "A", "192.0.2.1", ttl=60))], initial=[WWW_A],
         present=[WWW_A], error_code=IVCB, messages=(NO_MATCH,)),
    Case("delete-values-subset-mismatch", [delete(WWW_A)], initial=[WWW_A2], present=[WWW_A2],
         error_code=IVCB, messages=(NO_MATCH,)),
    Case("delete-given-weight-mismatch", [delete(rrset(WWW, "A", "192.0.2.10", SetIdentifier="blue", Weight=11))],
         initial=[BLUE], present=[BLUE], error_code=IVCB, messages=(
             "Tried to delete resource record set [name='www.example.com.', type='A', "
             "set-identifier='blue'] but the values provided do not match the current values",)),
    Case("delete-weighted-exact", [delete(BLUE)], initial=[BLUE, GREEN],
         present=[GREEN], absent=[key(WWW, "A", "blue")],
         why="DELETE by set identifier removes that one record only (moto removes all with the id)"),
    Case("delete-omitted-multivalue-ok",
         [delete(rrset(WWW, "A", "192.0.2.1", SetIdentifier="mv-1"))],
         initial=[rrset(WWW, "A", "192.0.2.1", SetIdentifier="mv-1", MultiValueAnswer=True)],
         absent=[key(WWW, "A", "mv-1")],
         why="an optional attribute left out of a DELETE is not compared (Terraform relies on it)"),
    Case("delete-twice-in-batch-fails", [delete(WWW_A), delete(WWW_A)], initial=[WWW_A],
         present=[WWW_A], error_code=IVCB, messages=(NOT_FOUND,)),
    Case("delete-then-create-in-batch-ok", [delete(WWW_A), create(rrset(WWW, "A", "192.0.2.5"))],
         initial=[WWW_A], present=[rrset(WWW, "A", "192.0.2.5")],
         why="changes apply in order to a working copy"),
    Case("lock-swap-in-batch-ok", [
        delete(LOCK),
        create(rrset("lock.example.com.", "TXT", '"holder=enactor-b expires=200"', ttl=0)),
        upsert(rrset("dynamodb.example.com.", "A", "192.0.2.50", ttl=60)),
    ], initial=[LOCK], present=[
        rrset("lock.example.com.", "TXT", '"holder=enactor-b expires=200"', ttl=0),
        rrset("dynamodb.example.com.", "A", "192.0.2.50", ttl=60),
    ], why="the enactor's transaction: take the TXT lock and change the endpoint atomically"),
    Case("lock-stale-holder-fails", [
        delete(rrset("lock.example.com.", "TXT", '"holder=enactor-c expires=90"', ttl=0)),
        create(rrset("lock.example.com.", "TXT", '"holder=enactor-b expires=200"', ttl=0)),
        upsert(rrset("dynamodb.example.com.", "A", "192.0.2.50", ttl=60)),
    ], initial=[LOCK], present=[LOCK], absent=[key("dynamodb.example.com.", "A")],
         error_code=IVCB, messages=(
             "Tried to delete resource record set [name='lock.example.com.', type='TXT'] "
             "but the values provided do not match the current values",
             "Tried to create resource record set [name='lock.example.com.', type='TXT'] "
             "but it already exists"),
         why="a stale lock view fails the whole batch, and every failing change is reported"),
    Case("delete-apex-ns-refused", [delete(rrset(ZONE, "NS", "ns-1.awsdns-01.org.", ttl=172800))],
         error_code=IVCB, messages=("A HostedZone must contain at least one NS record for the zone itself.",)),
    Case("delete-apex-soa-refused",
         [delete(rrset(ZONE, "SOA", "ns-1.awsdns-01.org. awsdns-hostmaster.amazon.com. 1 7200 900 1209600 86400", ttl=900))],
         error_code=IVCB, messages=("A HostedZone must contain exactly one SOA record.",)),
    # --- all-or-nothing -------------------------------------------------------------------
    Case("third-change-fails-nothing-applied", [
        create(rrset("a.example.com.", "A", "192.0.2.1")),
        create(rrset("b.example.com.", "A", "192.0.2.2")),
        create(rrset(WWW, "A", "192.0.2.3")),
    ], initial=[WWW_A], present=[WWW_A],
         absent=[key("a.example.com.", "A"), key("b.example.com.", "A")],
         error_code=IVCB, messages=(EXISTS,)),
    # --- names ----------------------------------------------------------------------------
    Case("name-outside-zone", [create(rrset("www.example.org.", "A", "192.0.2.1"))],
         absent=[key("www.example.org.", "A")], error_code=IVCB,
         messages=("RRSet with DNS name www.example.org. is not permitted in zone example.com.",)),
    Case("name-suffix-not-subdomain", [create(rrset("badexample.com.", "A", "192.0.2.1"))],
         error_code=IVCB,
         messages=("RRSet with DNS name badexample.com. is not permitted in zone example.com.",)),
    # --- request shape (InvalidInput) -------------------------------------------------------
    Case("no-ttl-no-values", [create({"Name": WWW, "Type": "A"})], error_code=INVALID,
         messages=(SHAPE + " none in Change with [Action=CREATE",)),
    Case("alias-and-ttl", [create(alias(WWW, "A", "d111111abcdef8.cloudfront.net.", OTHER_ZONE_ID, TTL=300))],
         error_code=INVALID, messages=(SHAPE + " more than one",)),
    Case("weight-256", [create(rrset(WWW, "A", "192.0.2.1", SetIdentifier="w", Weight=256))],
         absent=[key(WWW, "A", "w")], error_code=INVALID, messages=(
             "Value '256' at 'changeBatch.changes.1.member.resourceRecordSet.weight' failed to "
             "satisfy constraint: Member must have value less than or equal to 255",)),
    Case("weight-256-second-change", [
        create(rrset("ok.example.com.", "A", "192.0.2.1")),
        upsert(rrset(WWW, "A", "192.0.2.1", SetIdentifier="w", Weight=256)),
    ], absent=[key("ok.example.com.", "A")], error_code=INVALID,
         messages=("'changeBatch.changes.2.member.resourceRecordSet.weight'",)),
    Case("weight-negative", [create(rrset(WWW, "A", "192.0.2.1", SetIdentifier="w", Weight=-1))],
         error_code=INVALID, messages=("Member must have value greater than or equal to 0",),
         botocore_rejects=True),
    Case("ttl-too-large", [create(rrset(WWW, "A", "192.0.2.1", ttl=2_147_483_648))],
         error_code=INVALID, messages=("Member must have value less than or equal to 2147483647",)),
    Case("set-identifier-without-policy", [create(rrset(WWW, "A", "192.0.2.1", SetIdentifier="x"))],
         error_code=INVALID, messages=(POLICY,)),
    Case("weight-without-set-identifier", [create(rrset(WWW, "A", "192.0.2.1", Weight=10))],
         error_code=INVALID, messages=("Missing field 'SetIdentifier'",)),
    Case("bad-action", [change("REPLACE", WWW_A)], error_code=INVALID,
         messages=("Member must satisfy enum value set: [CREATE, DELETE, UPSERT]",)),
    Case("empty-batch", [], error_code=INVALID, botocore_rejects=True),
    Case("over-record-limit", [create(rrset(f"h{i}.example.com.", "A", "192.0.2.1")) for i in range(1001)],
         absent=[key("h0.example.com.", "A")], error_code=IVCB,
         messages=("Number of records limit of 1000 exceeded.",)),
    Case("upsert-counts-twice", [upsert(rrset(f"h{i}.example.com.", "A", "192.0.2.1")) for i in range(501)],
         absent=[key("h0.example.com.", "A")], error_code=IVCB,
         messages=("Number of records limit of 1000 exceeded.",),
         why="Route 53 counts each ResourceRecord of an UPSERT twice"),
    # --- record data ------------------------------------------------------------------------
    Case("bad-ipv4", [create(rrset(WWW, "A", "192.0.2.300"))], error_code=IVCB,
         messages=("ARRDATAIllegalIPv4Address (Value is not a valid IPv4 address) encountered with '192.0.2.300'",)),
    Case("hostname-in-a-record", [create(rrset(WWW, "A", "lb.example.net"))], error_code=IVCB,
         messages=("ARRDATAIllegalIPv4Address",)),
    Case("bad-ipv6", [create(rrset(WWW, "AAAA", "192.0.2.1"))], error_code=IVCB,
         messages=("AAAARRDATAIllegalIPv6Address (Value is not a valid IPv6 address)",)),
    Case("duplicate-values", [create(rrset(WWW, "A", "192.0.2.1", "192.0.2.1"))], error_code=IVCB,
         messages=("Duplicate Resource Record: '192.0.2.1'",)),
    Case("cname-two-values", [create(rrset(WWW, "CNAME", "a.example.net.", "b.example.net."))],
         error_code=IVCB, messages=("CNAME",), absent=[key(WWW, "CNAME")]),
    # --- CNAME and set identifiers ----------------------------------------------------------
    Case("cname-at-apex", [create(rrset(ZONE, "CNAME", "www.example.net."))], error_code=IVCB,
         messages=("RRSet of type CNAME with DNS name example.com. is not permitted at apex in zone example.com.",)),
    Case("cname-over-a", [create(rrset(WWW, "CNAME", "lb.example.net."))], initial=[WWW_A],
         present=[WWW_A], error_code=IVCB, messages=(
             "RRSet of type CNAME with DNS name www.example.com. is not permitted as it conflicts "
             "with other records with the same DNS name in zone example.com.",)),
    Case("upsert-cname-over-a", [upsert(rrset(WWW, "CNAME", "lb.example.net."))], initial=[WWW_A],
         present=[WWW_A], error_code=IVCB, messages=("is not permitted as it conflicts with other records",)),
    Case("a-over-cname", [create(WWW_A)], initial=[rrset(WWW, "CNAME", "lb.example.net.")],
         error_code=IVCB, messages=(
             "RRSet of type A with DNS name www.example.com. is not permitted because a "
             "conflicting RRSet of type",)),
    Case("a-to-cname-in-one-batch-ok", [delete(WWW_A), create(rrset(WWW, "CNAME", "lb.example.net."))],
         initial=[WWW_A], present=[rrset(WWW, "CNAME", "lb.example.net.")], absent=[key(WWW, "A")],
         why="AWS's own example of a transactional change"),
    Case("weighted-cnames-ok", [
        create(rrset(WWW, "CNAME", "a.example.net.", SetIdentifier="a", Weight=1)),
        create(rrset(WWW, "CNAME", "b.example.net.", SetIdentifier="b", Weight=1)),
    ], present=[rrset(WWW, "CNAME", "a.example.net.", SetIdentifier="a", Weight=1),
                rrset(WWW, "CNAME", "b.example.net.", SetIdentifier="b", Weight=1)]),
    Case("weighted-over-simple", [create(BLUE)], initial=[WWW_A], present=[WWW_A], error_code=IVCB,
         messages=("cannot be created as a non-weighted set exists with the same name and type",)),
    Case("simple-over-weighted", [create(WWW_A)], initial=[BLUE], present=[BLUE], error_code=IVCB,
         messages=("RRSet with DNS name www.example.com., type A cannot be created as",)),
    Case("simple-to-weighted-in-one-batch-ok", [delete(WWW_A), create(BLUE), create(GREEN)],
         initial=[WWW_A], present=[BLUE, GREEN], absent=[key(WWW, "A")]),
    # --- aliases ------------------------------------------------------------------------------
    Case("alias-to-plan-ok", [create(alias("dynamodb.example.com.", "A", "plan-7.example.com."))],
         initial=[rrset("plan-7.example.com.", "A", "192.0.2.7")],
         present=[alias("dynamodb.example.com.", "A", "plan-7.example.com.")]),
    Case("alias-to-missing-plan-fails", [upsert(alias("dynamodb.example.com.", "A", "plan-6.example.com."))],
         initial=[rrset("plan-7.example.com.", "A", "192.0.2.7")],
         absent=[key("dynamodb.example.com.", "A")], error_code=IVCB,
         messages=("Tried to create an alias that targets plan-6.example.com., type A in zone",),
         why="the outage: the rollback alias could not point at a deleted plan"),
    Case("alias-to-plan-created-in-batch-ok", [
        create(rrset("plan-8.example.com.", "A", "192.0.2.8")),
        upsert(alias("dynamodb.example.com.", "A", "plan-8.example.com.")),
    ], present=[alias("dynamodb.example.com.", "A", "plan-8.example.com.")]),
    Case("delete-alias-target-case-insensitive", [
        delete(alias("dynamodb.example.com.", "A", "PLAN-7.Example.com"))],
         initial=[rrset("plan-7.example.com.", "A", "192.0.2.7"),
                  alias("dynamodb.example.com.", "A", "plan-7.example.com.")],
         absent=[key("dynamodb.example.com.", "A")]),
    Case("delete-alias-evaluate-mismatch", [
        delete(alias("dynamodb.example.com.", "A", "plan-7.example.com.", evaluate=True))],
         initial=[rrset("plan-7.example.com.", "A", "192.0.2.7"),
                  alias("dynamodb.example.com.", "A", "plan-7.example.com.")],
         present=[alias("dynamodb.example.com.", "A", "plan-7.example.com.")], error_code=IVCB,
         messages=("[name='dynamodb.example.com.', type='A'] but the values provided do not match",)),
    Case("delete-plan-under-alias-ok", [delete(rrset("plan-7.example.com.", "A", "192.0.2.7"))],
         initial=[rrset("plan-7.example.com.", "A", "192.0.2.7"),
                  alias("dynamodb.example.com.", "A", "plan-7.example.com.")],
         present=[alias("dynamodb.example.com.", "A", "plan-7.example.com.")],
         absent=[key("plan-7.example.com.", "A")],
         why="Route 53 lets cleanup delete the target of a live alias: the endpoint goes empty"),
]
