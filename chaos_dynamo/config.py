"""The lab's topology: zones, endpoints, load balancers and ports, validated at the boundary.

A topology comes from defaults (seeded), a TOML file, and command-line overrides, in that
order. Every problem is reported as a :class:`~chaos_dynamo.errors.ConfigError` naming
the field, so a bad file changes nothing.

Example file::

    [lab]
    seed = 7
    region = "us-east-1"
    propagation_delay = 0.2
    health_check_speedup = 10.0   # Route 53 health-check time runs this much faster

    [[endpoints]]
    name = "dynamodb.us-east-1.amazonaws.com"
    zone = "us-east-1.amazonaws.com"

    [[load_balancers]]
    name = "lb-1"
    address = "127.0.0.11"
    weight = 100
    az = "use1-az1"

    [[namespaces]]                     # an isolated part of the lab (docs/namespaces.md)
    name = "team-a"
    zone = "team-a.lab.internal"       # default: <name>.lab.internal
    endpoint = "dynamodb.team-a.lab.internal"  # default: dynamodb.<zone>
    table_prefix = "team-a-"           # default: <name>-
    # load_balancers: names from [[load_balancers]], never another namespace's; default:
    # three new load balancers of its own
"""

from __future__ import annotations

import ipaddress
import random
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from chaos_dynamo.errors import ConfigError
from chaos_dynamo.route53.records import is_within, normalize_name

_LABEL = re.compile(r"^[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?$")
_REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d$")
AZS = ("az1", "az2", "az3")
RESERVED_LB_NAME = "total"
"""The LB fleet reports its summed counters under this name, so no LB may have it."""


@dataclass(frozen=True)
class LBSpec:
    """One load balancer of the fleet: its own loopback address, all on the fleet's port."""

    name: str
    address: str
    weight: int
    az: str


@dataclass(frozen=True)
class EndpointSpec:
    """A DNS name a service resolves to reach DynamoDB, inside one of the lab's zones."""

    name: str
    zone: str
    ipv6: bool = False


NAMESPACE_ZONE_SUFFIX = "lab.internal"
"""A namespace's hosted zone is ``<name>.lab.internal`` unless its entry names one."""
NAMESPACE_LBS = 3
"""Load balancers a namespace gets of its own (one per AZ) when its entry lists none."""
_NAMESPACE_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?$")
_TABLE_PREFIX = re.compile(r"^[A-Za-z0-9_.-]{1,100}$")


@dataclass(frozen=True)
class NamespaceSpec:
    """An isolated part of a shared lab: its own hosted zone, endpoint, plan table (and table
    prefix) and load balancers, so experiments in different namespaces run side by side
    without seeing each other's faults or counts (docs/namespaces.md).

    ``load_balancers`` empty means "three of its own": :func:`validate` never sees that,
    :func:`with_namespaces` fills them in first.
    """

    name: str
    zone: str = ""
    endpoint: str = ""
    table_prefix: str = ""
    load_balancers: tuple[str, ...] = ()

    @property
    def endpoint_spec(self) -> EndpointSpec:
        return EndpointSpec(self.endpoint, self.zone)


@dataclass(frozen=True)
class Topology:
    """Everything ``chaos-dynamo lab up`` needs to stand up a region."""

    seed: int = 0
    region: str = "us-east-1"
    host: str = "127.0.0.1"
    api_port: int = 0
    dns_port: int = 0
    lb_port: int = 0
    backend: str = ""
    propagation_delay: float = 0.2
    resync_interval: float = 2.0  # external backends only: how often to re-read records written behind the lab
    max_connection_age: float = 60.0
    # Route 53 health checks run this many times faster than AWS's clock: with 10, a
    # RequestInterval of 10 s checks every second (timeouts are never scaled below 1 s).
    health_check_speedup: float = 10.0
    record_ttl: int = 5
    plan_table: str = "chaos-dynamo-plans"
    zones: tuple[str, ...] = ()
    endpoints: tuple[EndpointSpec, ...] = ()
    load_balancers: tuple[LBSpec, ...] = ()
    namespaces: tuple[NamespaceSpec, ...] = ()
    source: str = field(default="defaults", compare=False)

    @property
    def primary_endpoint(self) -> EndpointSpec:
        return self.endpoints[0]

    @property
    def claimed(self) -> frozenset[str]:
        """The names of the load balancers some namespace owns."""
        return frozenset(name for ns in self.namespaces for name in ns.load_balancers)

    @property
    def default_load_balancers(self) -> tuple[LBSpec, ...]:
        """The load balancers of the lab's own endpoints: every one no namespace owns (all
        of them in a lab without namespaces)."""
        claimed = self.claimed
        return tuple(lb for lb in self.load_balancers if lb.name not in claimed)

    def namespace_load_balancers(self, namespace: NamespaceSpec) -> tuple[LBSpec, ...]:
        """The namespace's load balancers, in fleet order."""
        owned = set(namespace.load_balancers)
        return tuple(lb for lb in self.load_balancers if lb.name in owned)

    def plan_table_of(self, namespace: NamespaceSpec) -> str:
        """The namespace's plan table: its prefix, then the lab's plan table name."""
        return f"{namespace.table_prefix}{self.plan_table}"

    @property
    def all_endpoints(self) -> tuple[EndpointSpec, ...]:
        """The lab's own endpoints, then each namespace's."""
        return self.endpoints + tuple(ns.endpoint_spec for ns in self.namespaces)


_COMPASS = {"northeast": "ne", "northwest": "nw", "southeast": "se", "southwest": "sw"}


def az_prefix(region: str) -> str:
    """The AZ-id prefix AWS uses for a region: us-east-1 -> use1, ap-southeast-2 -> apse2."""
    first, *middle, number = region.split("-")
    return first + "".join(_COMPASS.get(word, word[0]) for word in middle) + number


def default_topology(seed: int = 0, region: str = "us-east-1", lb_count: int = 6) -> Topology:
    """The seeded default: the regional endpoint, its FIPS and dual-stack names, N LBs over 3 AZs.

    Weights are drawn from ``seed`` so two labs with the same seed are identical.
    """
    if not isinstance(region, str) or not _REGION.match(region):
        raise ConfigError("lab.region", f"{region!r} is not a region name", "use e.g. us-east-1")
    rng = random.Random(seed)
    zone = f"{region}.amazonaws.com"
    dualstack_zone = f"{region}.api.aws"
    short = az_prefix(region)
    lbs = tuple(
        LBSpec(
            name=f"lb-{i + 1}",
            address=f"127.0.0.{11 + i}",
            weight=rng.randint(50, 150),
            az=f"{short}-{AZS[i % len(AZS)]}",
        )
        for i in range(lb_count)
    )
    return Topology(
        seed=seed,
        region=region,
        zones=(zone, dualstack_zone),
        endpoints=(
            EndpointSpec(f"dynamodb.{zone}", zone),
            EndpointSpec(f"dynamodb-fips.{zone}", zone),
            EndpointSpec(f"dynamodb.{dualstack_zone}", dualstack_zone, ipv6=True),
        ),
        load_balancers=lbs,
    )


# --- validation -----------------------------------------------------------------------

def check_loopback(field_name: str, address: str) -> str:
    """Return ``address`` if it is an IPv4 loopback address, else raise ConfigError."""
    if not isinstance(address, str):  # ip_address() would take the integer 2130706433
        raise ConfigError(field_name, f"{address!r} is not an IP address in quotes",
                          "use a loopback address such as \"127.0.0.1\"")
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        raise ConfigError(field_name, f"{address!r} is not an IP address",
                          "use a loopback address such as 127.0.0.1") from None
    if not (ip.version == 4 and ip.is_loopback):
        raise ConfigError(field_name, f"{address} is not a 127.x.x.x address",
                          "the lab binds only to loopback; use 127.0.0.x")
    return address


def is_loopback_host(host: str) -> bool:
    """True for ``localhost`` and 127.x.x.x: the hosts the lab may bind, call or send to."""
    if host == "localhost":
        return True
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    return ip.version == 4 and ip.is_loopback


def _check_port(field_name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 65535:
        raise ConfigError(field_name, f"{value!r} is not a port number",
                          "use 0 (pick a free port) or 1-65535")
    return value


def _check_number(field_name: str, value: Any, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(field_name, f"{value!r} is not a number", f"use a number from {low} to {high}")
    if not low <= float(value) <= high:
        raise ConfigError(field_name, f"{value} is out of range", f"use a number from {low} to {high}")
    return float(value)


def _check_int(field_name: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(field_name, f"{value!r} is not a whole number", f"use {low} to {high}")
    if not low <= value <= high:
        raise ConfigError(field_name, f"{value} is out of range", f"use {low} to {high}")
    return value


def _check_str(field_name: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(field_name, f"{value!r} is not a non-empty string", "give a value in quotes")
    return value.strip()


def check_dns_name(field_name: str, value: Any) -> str:
    """A DNS name of valid labels; returned without the trailing dot, lower case."""
    name = _check_str(field_name, value).lower().rstrip(".")
    labels = name.split(".")
    if len(name) > 253 or len(labels) < 2 or not all(_LABEL.match(label) for label in labels):
        raise ConfigError(field_name, f"{value!r} is not a valid DNS name",
                          "use letters, digits and hyphens in dot-separated labels, e.g. "
                          "dynamodb.us-east-1.amazonaws.com")
    return name


def check_backend(field_name: str, value: Any) -> str:
    """An http URL of an external emulator on loopback; empty means the embedded moto.

    The lab sends the emulator every Route 53 and DynamoDB call, including the deletes of
    an experiment, so it must be on this machine.
    """
    if value in ("", None):
        return ""
    text = _check_str(field_name, value)
    example = "use e.g. http://127.0.0.1:5000 for a moto_server or http://127.0.0.1:4566 for LocalStack"
    try:
        parsed = urlparse(text)
        hostname, _ = parsed.hostname, parsed.port  # .port raises on a bad port
    except ValueError as exc:
        raise ConfigError(field_name, f"{text!r} is not a URL ({exc})", example) from None
    if parsed.scheme != "http" or not hostname:
        raise ConfigError(field_name, f"{text!r} is not an http:// URL", example)
    if not is_loopback_host(hostname):
        raise ConfigError(field_name, f"{hostname} in {text!r} is not a loopback address",
                          "remote backends are not supported yet: run the emulator on this "
                          "machine and give http://127.0.0.1:PORT or http://localhost:PORT")
    return text.rstrip("/")


def validate(topology: Topology) -> Topology:
    """Check every field and the relations between them; return the topology unchanged."""
    if not isinstance(topology.region, str) or not _REGION.match(topology.region):
        raise ConfigError("lab.region", f"{topology.region!r} is not a region name",
                          "use e.g. us-east-1")
    check_loopback("lab.host", topology.host)
    for name in ("api_port", "dns_port", "lb_port"):
        _check_port(f"lab.{name}", getattr(topology, name))
    _check_distinct_ports(topology)
    check_backend("lab.backend", topology.backend)
    _check_number("lab.propagation_delay", topology.propagation_delay, 0.0, 60.0)
    _check_number("lab.resync_interval", topology.resync_interval, 0.0, 3600.0)
    _check_number("lab.max_connection_age", topology.max_connection_age, 0.1, 86400.0)
    _check_number("lab.health_check_speedup", topology.health_check_speedup, 1.0, 1000.0)
    _check_int("lab.record_ttl", topology.record_ttl, 0, 2147483647)
    _check_int("lab.seed", topology.seed, 0, 2**63 - 1)
    if not isinstance(topology.plan_table, str) or not re.match(r"^[A-Za-z0-9_.-]{3,255}$", topology.plan_table):
        raise ConfigError("lab.plan_table", f"{topology.plan_table!r} is not a DynamoDB table name",
                          "use 3-255 letters, digits, '_', '-' or '.'")
    if not topology.zones:
        raise ConfigError("zones", "no hosted zone is configured", "add at least one [[zones]] entry")
    zones = [check_dns_name(f"zones[{i}].name", z) for i, z in enumerate(topology.zones)]
    if len(set(zones)) != len(zones):
        raise ConfigError("zones", "a zone name is listed twice", "list each zone once")
    if not topology.endpoints:
        raise ConfigError("endpoints", "no endpoint is configured", "add an [[endpoints]] entry")
    seen: set[str] = set()
    for i, ep in enumerate(topology.endpoints):
        name = check_dns_name(f"endpoints[{i}].name", ep.name)
        zone = check_dns_name(f"endpoints[{i}].zone", ep.zone)
        if zone not in zones:
            raise ConfigError(f"endpoints[{i}].zone", f"{zone!r} is not one of the lab's zones {zones}",
                              "add it under [[zones]] or pick a listed zone")
        if not is_within(name, zone) or normalize_name(name) == normalize_name(zone):
            raise ConfigError(f"endpoints[{i}].name", f"{name!r} is not below zone {zone!r}",
                              "an endpoint must be a name inside its zone, e.g. dynamodb.<zone>")
        if name in seen:
            raise ConfigError(f"endpoints[{i}].name", f"{name!r} is listed twice", "list each once")
        seen.add(name)
    if not topology.load_balancers:
        raise ConfigError("load_balancers", "no load balancer is configured",
                          "add at least one [[load_balancers]] entry")
    names: set[str] = set()
    addresses: set[str] = set()
    for i, lb in enumerate(topology.load_balancers):
        if not isinstance(lb.name, str) or not re.match(r"^[A-Za-z0-9_-]{1,64}$", lb.name):
            raise ConfigError(f"load_balancers[{i}].name", f"{lb.name!r} is not a valid name",
                              "use 1-64 letters, digits, '-' or '_' in quotes")
        if lb.name == RESERVED_LB_NAME:
            raise ConfigError(f"load_balancers[{i}].name", f"{lb.name!r} is reserved",
                              f"the LB counters use {RESERVED_LB_NAME!r} for the fleet's sum; "
                              "pick another name")
        check_loopback(f"load_balancers[{i}].address", lb.address)
        if lb.address == topology.host:
            raise ConfigError(f"load_balancers[{i}].address",
                              f"{lb.address} is the lab's own API/DNS address",
                              "give each load balancer its own 127.0.0.x address")
        _check_int(f"load_balancers[{i}].weight", lb.weight, 0, 255)
        _check_str(f"load_balancers[{i}].az", lb.az)
        if lb.name in names:
            raise ConfigError(f"load_balancers[{i}].name", f"{lb.name!r} is used twice", "use unique names")
        if lb.address in addresses:
            raise ConfigError(f"load_balancers[{i}].address", f"{lb.address} is used twice",
                              "give each load balancer its own address")
        names.add(lb.name)
        addresses.add(lb.address)
    if all(lb.weight == 0 for lb in topology.load_balancers):
        raise ConfigError("load_balancers", "every weight is 0",
                          "give at least one load balancer a weight from 1 to 255")
    _check_namespaces(topology, zones)
    return topology


def _check_namespaces(topology: Topology, zones: list[str]) -> None:
    """Each namespace has a valid name, a zone of its own, an endpoint in it, a plan table
    of its own and load balancers of the fleet that no other namespace has: a load balancer
    in two namespaces would carry one's faults into the other and mix their counts."""
    if not isinstance(topology.namespaces, tuple):
        raise ConfigError("namespaces", f"{topology.namespaces!r} is not a list of namespaces",
                          "write each as a [[namespaces]] table")
    fleet = {lb.name: lb for lb in topology.load_balancers}
    taken_zones = list(zones)
    owner: dict[str, str] = {}
    names: set[str] = set()
    plan_tables = {topology.plan_table: "the lab itself"}
    for i, ns in enumerate(topology.namespaces):
        where = f"namespaces[{i}]"
        if not isinstance(ns, NamespaceSpec):
            raise ConfigError(where, f"{ns!r} is not a namespace", "write it as a [[namespaces]] table")
        check_namespace_name(f"{where}.name", ns.name)
        if ns.name in names:
            raise ConfigError(f"{where}.name", f"{ns.name!r} is used twice", "give each namespace its own name")
        names.add(ns.name)
        zone = check_dns_name(f"{where}.zone", ns.zone)
        for other in taken_zones:
            if is_within(zone, other) or is_within(other, zone):
                raise ConfigError(f"{where}.zone", f"{zone!r} overlaps the lab's zone {other!r}",
                                  f"give each namespace a hosted zone of its own, e.g. "
                                  f"{ns.name}.{NAMESPACE_ZONE_SUFFIX}")
        taken_zones.append(zone)
        endpoint = check_dns_name(f"{where}.endpoint", ns.endpoint)
        if not is_within(endpoint, zone) or normalize_name(endpoint) == normalize_name(zone):
            raise ConfigError(f"{where}.endpoint", f"{endpoint!r} is not below the namespace's zone {zone!r}",
                              f"use a name inside it, e.g. dynamodb.{zone}")
        prefix = ns.table_prefix
        if not isinstance(prefix, str) or not _TABLE_PREFIX.match(prefix):
            raise ConfigError(f"{where}.table_prefix", f"{prefix!r} is not a table name prefix",
                              f"use 1-100 letters, digits, '_', '-' or '.', e.g. \"{ns.name}-\"")
        plan_table = topology.plan_table_of(ns)
        if len(plan_table) > 255:
            raise ConfigError(f"{where}.table_prefix", f"makes the plan table name {plan_table!r} too long",
                              "use a shorter prefix (a table name has at most 255 characters)")
        if plan_table in plan_tables:
            raise ConfigError(f"{where}.table_prefix", f"{prefix!r} gives the plan table {plan_table!r} of "
                              f"{plan_tables[plan_table]}", "give each namespace its own table prefix")
        plan_tables[plan_table] = f"namespace {ns.name!r}"
        _check_namespace_lbs(where, ns, fleet, owner)
    if topology.namespaces:
        own = topology.default_load_balancers
        if not own or all(lb.weight == 0 for lb in own):
            raise ConfigError("namespaces", "the namespaces own every load balancer (of weight above 0), "
                              "leaving none for the lab's own endpoints",
                              "leave at least one [[load_balancers]] entry out of every namespace, or omit "
                              "a namespace's load_balancers to give it load balancers of its own")


def _check_namespace_lbs(where: str, ns: NamespaceSpec, fleet: Mapping[str, LBSpec], owner: dict[str, str]) -> None:
    lbs = ns.load_balancers
    if not isinstance(lbs, tuple) or not lbs:
        raise ConfigError(f"{where}.load_balancers", f"{lbs!r} is not a list of load balancer names",
                          f"list some of {sorted(fleet)}, or leave the key out to give the namespace "
                          "load balancers of its own")
    for j, name in enumerate(lbs):
        field_name = f"{where}.load_balancers[{j}]"
        if not isinstance(name, str) or name not in fleet:
            raise ConfigError(field_name, f"{name!r} is not a load balancer of the lab",
                              f"use one of {sorted(fleet)}")
        if name in lbs[:j]:
            raise ConfigError(field_name, f"{name!r} is listed twice", "list each load balancer once")
        if name in owner:
            raise ConfigError(field_name, f"{name!r} is also in namespace {owner[name]!r}",
                              "give each namespace load balancers no other namespace has: a shared one "
                              "would carry one namespace's faults and request counts into the other")
        owner[name] = ns.name
    if all(fleet[name].weight == 0 for name in lbs):
        raise ConfigError(f"{where}.load_balancers", "every weight is 0",
                          "include a load balancer with a weight from 1 to 255")


def check_namespace_name(field_name: str, value: Any) -> str:
    """A namespace name: 1-32 lower-case letters, digits and inner hyphens (it becomes a DNS
    label and a table prefix)."""
    if not isinstance(value, str) or not _NAMESPACE_NAME.match(value):
        raise ConfigError(field_name, f"{value!r} is not a namespace name",
                          "use 1-32 lower-case letters, digits and hyphens, e.g. \"team-a\"")
    return value


def with_namespaces(topology: Topology, namespaces: Sequence[NamespaceSpec | str]) -> Topology:
    """``topology`` with ``namespaces`` added (names or partly filled specs), every default
    filled in: zone ``<name>.lab.internal``, endpoint ``dynamodb.<zone>``, table prefix
    ``<name>-``, and for a namespace that lists no load balancers, :data:`NAMESPACE_LBS` new
    ones of its own (``<name>-lb-1``..., one per AZ, weight 100, on the next free
    127.0.0.x addresses). The result is not validated yet (:func:`validate` does that).

    Raises:
        ConfigError: a namespace's name is not valid (the defaults are made from it).
    """
    lbs = list(topology.load_balancers)
    used = {lb.address for lb in lbs} | {topology.host}
    addresses = (f"127.0.{x}.{y}" for x in range(256) for y in range(11 if x == 0 else 1, 255))
    prefix = az_prefix(topology.region) if _REGION.match(str(topology.region)) else "az"
    filled = []
    start = len(topology.namespaces)
    seen = {ns.name for ns in topology.namespaces}
    for i, item in enumerate(namespaces, start):
        spec = NamespaceSpec(item) if isinstance(item, str) else item
        name = check_namespace_name(f"namespaces[{i}].name", spec.name)
        if name in seen:
            raise ConfigError(f"namespaces[{i}].name", f"{name!r} is used twice", "give each namespace its own name")
        seen.add(name)
        zone = (spec.zone or f"{name}.{NAMESPACE_ZONE_SUFFIX}")
        zone = zone.lower().rstrip(".") if isinstance(zone, str) else zone
        endpoint = spec.endpoint or f"dynamodb.{zone}"
        endpoint = endpoint.lower().rstrip(".") if isinstance(endpoint, str) else endpoint
        owned = spec.load_balancers
        if owned == ():
            new = []
            for k in range(NAMESPACE_LBS):
                address = next(a for a in addresses if a not in used)
                used.add(address)
                new.append(LBSpec(f"{name}-lb-{k + 1}", address, 100, f"{prefix}-{AZS[k % len(AZS)]}"))
            lbs += new
            owned = tuple(lb.name for lb in new)
        filled.append(replace(spec, zone=zone, endpoint=endpoint,
                              table_prefix=spec.table_prefix or f"{name}-", load_balancers=owned))
    return replace(topology, load_balancers=tuple(lbs), namespaces=topology.namespaces + tuple(filled))


def namespaces_option(value: str) -> tuple[str, ...]:
    """``lab up --namespaces``: a count (``2``: ``ns1``, ``ns2``) or comma-separated names."""
    text = value.strip() if isinstance(value, str) else ""
    if text.isdigit():
        count = _check_int("--namespaces", int(text), 1, 64)
        return tuple(f"ns{i + 1}" for i in range(count))
    names = tuple(part.strip() for part in text.split(","))
    for name in names:
        check_namespace_name("--namespaces", name)
    if len(set(names)) != len(names):
        raise ConfigError("--namespaces", f"{value!r} names a namespace twice", "name each once")
    return names


def _check_distinct_ports(topology: Topology) -> None:
    """Fixed ports must not collide: the API and the DNS (UDP and TCP) share ``lab.host``."""
    api, dns, lb = topology.api_port, topology.dns_port, topology.lb_port
    if api and api == dns:
        raise ConfigError("lab.dns_port", f"{dns} is also lab.api_port on {topology.host}",
                          "give the DNS and the API different ports, or 0 to pick free ones")
    for other_name, other in (("lab.api_port", api), ("lab.dns_port", dns)):
        if lb and lb == other:
            raise ConfigError("lab.lb_port", f"{lb} is also {other_name}",
                              "give the load balancers their own port, or 0 to pick a free one")


# --- loading ----------------------------------------------------------------------------

_LAB_KEYS = {
    "seed", "region", "host", "api_port", "dns_port", "lb_port", "backend", "propagation_delay",
    "resync_interval", "max_connection_age", "record_ttl", "plan_table", "lb_count",
    "health_check_speedup",
}


def _table(doc: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = doc.get(key, {})
    if not isinstance(value, Mapping):
        raise ConfigError(key, "must be a table", f"write it as [{key}]")
    return value


def _array(doc: Mapping[str, Any], key: str) -> list[Mapping[str, Any]] | None:
    if key not in doc:
        return None
    value = doc[key]
    if not isinstance(value, list) or not all(isinstance(v, Mapping) for v in value):
        raise ConfigError(key, "must be an array of tables", f"write each entry as [[{key}]]")
    return value


def _unknown(where: str, data: Mapping[str, Any], allowed: set[str]) -> None:
    extra = sorted(set(data) - allowed)
    if extra:
        raise ConfigError(f"{where}.{extra[0]}", "is not a known setting",
                          f"known settings are: {', '.join(sorted(allowed))}")


def topology_from_mapping(doc: Mapping[str, Any], source: str = "<config>") -> Topology:
    """Build and validate a topology from a parsed TOML document."""
    _unknown("<top level>", doc, {"lab", "zones", "endpoints", "load_balancers", "namespaces"})
    lab = _table(doc, "lab")
    _unknown("lab", lab, _LAB_KEYS)
    seed = _check_int("lab.seed", lab.get("seed", 0), 0, 2**63 - 1)
    region = _check_str("lab.region", lab.get("region", "us-east-1"))
    lb_count = _check_int("lab.lb_count", lab.get("lb_count", 6), 1, 200)
    base = default_topology(seed=seed, region=region, lb_count=lb_count)
    overrides: dict[str, Any] = {k: v for k, v in lab.items() if k not in ("lb_count",)}

    zones = _array(doc, "zones")
    if zones is not None:
        for i, z in enumerate(zones):
            _unknown(f"zones[{i}]", z, {"name"})
        overrides["zones"] = tuple(z.get("name", "") for z in zones)
    endpoints = _array(doc, "endpoints")
    if endpoints is not None:
        items = []
        for i, e in enumerate(endpoints):
            _unknown(f"endpoints[{i}]", e, {"name", "zone", "ipv6"})
            if "name" not in e:
                raise ConfigError(f"endpoints[{i}].name", "is missing", "give the endpoint's DNS name")
            name = _check_str(f"endpoints[{i}].name", e["name"]).lower().rstrip(".")
            if "zone" in e:
                zone = _check_str(f"endpoints[{i}].zone", e["zone"]).lower().rstrip(".")
            else:
                known = tuple(str(z) for z in overrides.get("zones", base.zones))
                zone = _zone_for(name, known)
                if not zone:
                    raise ConfigError(f"endpoints[{i}].zone",
                                      f"is omitted and {name!r} is inside none of the lab's zones {list(known)}",
                                      "add its zone under [[zones]] and give zone = \"...\", "
                                      "or use a name inside a listed zone")
            ipv6 = e.get("ipv6", False)
            if not isinstance(ipv6, bool):
                raise ConfigError(f"endpoints[{i}].ipv6", f"{ipv6!r} is not true/false", "use true or false")
            items.append(EndpointSpec(name, zone, ipv6))
        overrides["endpoints"] = tuple(items)
    lbs = _array(doc, "load_balancers")
    if lbs is not None:
        items_lb = []
        for i, lb in enumerate(lbs):
            _unknown(f"load_balancers[{i}]", lb, {"name", "address", "weight", "az"})
            for key in ("name", "address"):
                if key not in lb:
                    raise ConfigError(f"load_balancers[{i}].{key}", "is missing", f"give the {key}")
            items_lb.append(LBSpec(
                name=lb["name"], address=lb["address"], weight=lb.get("weight", 100),
                az=lb.get("az", f"az{i % 3 + 1}"),
            ))
        overrides["load_balancers"] = tuple(items_lb)
    try:
        topology = replace(base, source=source, **overrides)
    except TypeError as exc:  # a value of the wrong shape reached the dataclass
        raise ConfigError("lab", str(exc), "check the value types in the file") from None
    namespaces = _array(doc, "namespaces")
    if namespaces:
        topology = with_namespaces(topology, [_namespace_entry(i, n) for i, n in enumerate(namespaces)])
    return validate(topology)


_NAMESPACE_KEYS = {"name", "zone", "endpoint", "table_prefix", "load_balancers"}


def _namespace_entry(i: int, entry: Mapping[str, Any]) -> NamespaceSpec:
    """One ``[[namespaces]]`` table, its types checked (values are checked by :func:`validate`)."""
    where = f"namespaces[{i}]"
    _unknown(where, entry, _NAMESPACE_KEYS)
    if "name" not in entry:
        raise ConfigError(f"{where}.name", "is missing", "give the namespace a name, e.g. \"team-a\"")
    texts = {}
    for key in ("zone", "endpoint", "table_prefix"):
        value = entry.get(key, "")
        if not isinstance(value, str) or (key in entry and not value.strip()):
            raise ConfigError(f"{where}.{key}", f"{value!r} is not a non-empty string",
                              "give a value in quotes, or leave the key out for the default")
        texts[key] = value.strip()
    lbs = entry.get("load_balancers", [])
    if "load_balancers" in entry and (not isinstance(lbs, list) or not lbs):
        raise ConfigError(f"{where}.load_balancers", f"{lbs!r} is not a list of load balancer names",
                          "list names of [[load_balancers]] entries, e.g. [\"lb-1\", \"lb-2\"], or leave "
                          "the key out to give the namespace load balancers of its own")
    for j, name in enumerate(lbs):
        if not isinstance(name, str):
            raise ConfigError(f"{where}.load_balancers[{j}]", f"{name!r} is not a load balancer name",
                              "give the name in quotes, e.g. \"lb-1\"")
    return NamespaceSpec(entry["name"], texts["zone"], texts["endpoint"], texts["table_prefix"], tuple(lbs))


def _zone_for(name: str, zones: tuple[str, ...]) -> str:
    matches = [z for z in zones if is_within(name, z)]
    return max(matches, key=len) if matches else ""


def load_topology(path: str | Path | None = None, **overrides: Any) -> Topology:
    """Defaults, then the TOML file at ``path`` (if any), then non-None ``overrides``.

    ``seed`` and ``region`` shape the whole default topology (zones, endpoint names, LB
    weights), so with a file they belong in its ``[lab]`` table: overriding them on top of
    a file would leave its zones and weights from the other seed or region.
    """
    given = {k: v for k, v in overrides.items() if v is not None}
    names = given.pop("namespaces", None)  # names: namespaces added with their own load balancers
    clashing = [f"--{k}" for k in ("region", "seed") if k in given]
    if path is not None and clashing:
        raise ConfigError("/".join(clashing), f"cannot be combined with --config {path}",
                          f"set {' and '.join(k.lstrip('-') for k in clashing)} in the file's "
                          "[lab] table instead")
    if path is not None:
        p = Path(path)
        try:
            doc = tomllib.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError("--config", f"{p} does not exist", "give the path of a TOML topology file") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError("--config", f"{p} is not valid TOML ({exc})", "fix the syntax") from None
        topology = topology_from_mapping(doc, source=str(p))
    else:
        topology = default_topology(seed=given.get("seed", 0), region=given.get("region", "us-east-1"))
    if given:
        topology = replace(topology, **given)
    if names:
        if topology.namespaces:
            raise ConfigError("--namespaces", f"cannot be combined with the [[namespaces]] of {path}",
                              "list every namespace in the file, or drop them from it")
        topology = with_namespaces(topology, namespaces_option(names) if isinstance(names, str) else tuple(names))
    return validate(topology)
