"""The lab's authoritative DNS server: Route 53 hosted zones over real UDP and TCP.

moto has no DNS server and LocalStack's does not serve Route 53 zones, so the lab serves
the zones itself, from :class:`ZoneSnapshot` values it publishes after every change.
It answers as Route 53 does as an authoritative server, including the answer that
mattered in us-east-1: a name that exists (or existed) with its records gone gets
NOERROR with zero answers, not NXDOMAIN.

Routing policies (weighted, failover, multivalue) are applied with health, by
:func:`chaos_dynamo.route53.routing.choose`: the table carries the status of every health
check (:meth:`LabDNS.set_health`); a record with a HealthCheckId is as healthy as that
check (an id the table does not know: healthy), and an alias with EvaluateTargetHealth is
healthy when its target has at least one healthy record (and its own check, if any, is).

Speed: dnslib's threaded server saturates near 2,000 queries/s here, less than a retry
storm sends. So a query is answered from cached wire bytes: the first query for a
(question, zone table) resolves and encodes every possible answer (one per weighted
choice); later ones copy the question as sent (0x20 case kept), patch id and flags and
pick a cached body. Publishing a zone, or a change of health, swaps the whole table,
cache included, in one reference assignment, which is what makes either atomic for
readers; the hot path never looks at health.

Layout of this module: the zone table (pure), the resolver (pure, enumerates weighted
outcomes, applies health), the answer cache, the query log, then the sockets.
"""

from __future__ import annotations

import bisect
import collections
import errno
import ipaddress
import itertools
import random
import socket
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType

from chaos_dynamo.clock import REAL_CLOCK, Clock
from chaos_dynamo.dns import wire
from chaos_dynamo.errors import ConfigError, LabError
from chaos_dynamo.route53 import routing
from chaos_dynamo.route53.records import AliasTarget, RecordSet, ZoneSnapshot, normalize_name

__all__ = ["LabDNS", "Members", "QueryRecord"]

MAX_CHAIN = 8
"""CNAME/alias hops followed inside the lab's zones before giving up."""
MAX_BRANCHES = 1024
"""Weighted outcomes enumerated per question; past this, each query picks afresh."""
CACHE_LIMIT = 50_000
"""Cached questions per table; a flood of random names clears the cache, not memory."""
EDNS_PAYLOAD = 1232
"""UDP payload size the server advertises (the DNS flag day 2020 value)."""
DEFAULT_TTL = 300
TCP_IDLE_SECONDS = 30.0
MAX_TCP_CONNECTIONS = 256
_SOA_TTL = 900
_SOA_TEMPLATE = (
    "ns-lab.chaos-dynamo.invalid. hostmaster.chaos-dynamo.invalid. {serial} 7200 900 1209600 86400"
)

NOERROR, FORMERR, SERVFAIL, NXDOMAIN, NOTIMP, REFUSED = 0, 1, 2, 3, 4, 5
_ZONE_TRANSFERS = frozenset({wire.TYPES["AXFR"], wire.TYPES["IXFR"]})
_SPECIAL_FLAGS = wire.QR | wire.OPCODE_MASK
"""A query with either set leaves the fast path: responses are dropped, opcodes NOTIMP."""

Answer = tuple[str, int, int, str]
"""(owner, type code, ttl, value text): one record to encode."""
_ADDRESS_TYPES = ("A", "AAAA")
_ANSWER_TYPES = frozenset({"A", "AAAA", "CNAME"})


@dataclass(frozen=True)
class QueryRecord:
    """One query the lab DNS answered, as a probe reads it."""

    time: float
    client: str
    client_port: int
    name: str
    qtype: str
    rcode: str
    answers: int
    transport: str


@dataclass(frozen=True)
class Members:
    """What queries for one name can be answered with now.

    ``addresses``: every A and AAAA address any answer can hold (canonical text; each
    member of a weighted set counts). ``roles``: the failover roles ("PRIMARY",
    "SECONDARY") of the failover records chosen on the way, at any alias depth; empty
    when no failover record is involved.
    """

    addresses: frozenset[str]
    roles: frozenset[str]


# --- zone table (pure) --------------------------------------------------------------


class _Zone:
    """One published snapshot, indexed for lookups: name -> type -> record sets."""

    __slots__ = ("snapshot", "name", "records", "existing", "soa")

    def __init__(self, snapshot: ZoneSnapshot, history: Iterable[str]) -> None:
        self.snapshot = snapshot
        self.name = snapshot.name
        self.records: dict[str, dict[str, tuple[RecordSet, ...]]] = _index(snapshot)
        self.soa = self._apex_soa()
        self.existing = frozenset(_with_ancestors(itertools.chain(self.records, history), self.name))

    def _apex_soa(self) -> Answer:
        """The SOA for negative answers, TTL min(SOA TTL, minimum) as RFC 2308 says.

        A snapshot without a usable SOA gets a synthetic one, so negative answers still
        carry one (resolvers need it to cache them) and never turn into SERVFAIL.
        """
        apex = self.records.setdefault(self.name, {})
        found = apex.get("SOA")
        if not found or not _encodable("SOA", found[0].values):
            synthetic = RecordSet(
                name=self.name, type="SOA", ttl=_SOA_TTL,
                values=(_SOA_TEMPLATE.format(serial=self.snapshot.serial),),
            )
            apex["SOA"] = (synthetic,)
            found = apex["SOA"]
        record = found[0]
        ttl = record.ttl if record.ttl is not None else _SOA_TTL
        fields = record.values[0].split()
        minimum = int(fields[6]) if len(fields) == 7 and fields[6].isdigit() else ttl
        return (self.name, wire.TYPES["SOA"], min(ttl, minimum), record.values[0])


def _encodable(rtype: str, values: Sequence[str]) -> bool:
    try:
        for value in values[:1] or [""]:
            wire.encode_rdata(wire.type_code(rtype), value)
    except wire.WireError:
        return False
    return True


def _index(snapshot: ZoneSnapshot) -> dict[str, dict[str, tuple[RecordSet, ...]]]:
    """Group the snapshot's records by name and type, keeping their order."""
    grouped: dict[str, dict[str, list[RecordSet]]] = {}
    for record in snapshot.records:
        if _within(record.name, snapshot.name):
            grouped.setdefault(record.name, {}).setdefault(record.type, []).append(record)
    return {name: {t: tuple(rs) for t, rs in types.items()} for name, types in grouped.items()}


def _within(name: str, zone: str) -> bool:
    """``name`` (normalized) is ``zone`` or below it."""
    return zone == "." or name == zone or name.endswith("." + zone)


def _parent(name: str) -> str:
    """``a.b.`` -> ``b.``; the root's parent is the root."""
    rest = name.split(".", 1)[1] if "." in name else ""
    return rest or "."


def _with_ancestors(names: Iterable[str], zone: str) -> set[str]:
    """Every name plus each ancestor up to the zone apex: the names that exist."""
    found = {zone}
    for name in names:
        while _within(name, zone) and name not in found:
            found.add(name)
            name = _parent(name)
    return found


class _Table:
    """Everything a query reads, replaced as a whole on every publish or health change.

    ``health`` maps health check ids to their status; neither it nor ``by_id`` is ever
    changed after the table is made (the cache fills as queries come).
    """

    __slots__ = ("by_id", "by_name", "health", "cache")

    def __init__(self, by_id: dict[str, _Zone], health: Mapping[str, bool] | None = None) -> None:
        self.by_id = by_id
        # Later-published zones win when two share a name; dict order is publish order.
        self.by_name = {zone.name: zone for zone in by_id.values()}
        self.health: dict[str, bool] = dict(health or {})
        self.cache: dict[bytes, _Entry] = {}

    def zone_for(self, name: str) -> _Zone | None:
        """The longest published zone that ``name`` is within."""
        while True:
            zone = self.by_name.get(name)
            if zone is not None or name == ".":
                return zone
            name = _parent(name)

    def alias_zone(self, alias: AliasTarget) -> _Zone | None:
        """The zone an alias names by id, when published and holding the target."""
        zone = self.by_id.get(alias.hosted_zone_id)
        if zone is not None and _within(alias.dns_name, zone.name):
            return zone
        return self.zone_for(alias.dns_name)


# --- resolver (pure) ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Branch:
    """One possible answer and its relative weight among the weighted choices."""

    weight: int
    rcode: int
    answers: tuple[Answer, ...]
    authority: tuple[Answer, ...]


class _TooManyBranches(Exception):
    """Enumerating every weighted outcome would be too big to cache."""


class _Resolver:
    """Route 53 answer semantics over a :class:`_Table`.

    With ``rng=None`` every weighted choice is enumerated, so the caller can cache all
    outcomes with their weights; with an rng each weighted set picks one member now.
    With ``roles``, the failover role of every failover record chosen is added to it.
    """

    def __init__(
        self, table: _Table, rng: random.Random | None = None, roles: set[str] | None = None
    ) -> None:
        self._table = table
        self._rng = rng
        self._roles = roles
        self._target_health: dict[tuple[str, str, str], bool] = {}

    def resolve(self, qname: str, qtype: str) -> list[_Branch]:
        zone = self._table.zone_for(qname)
        if zone is None:
            return [_Branch(1, REFUSED, (), ())]
        return self._lookup(zone, qname, qtype, 0, frozenset({qname}))

    def _lookup(
        self, zone: _Zone, name: str, qtype: str, depth: int, seen: frozenset[str]
    ) -> list[_Branch]:
        by_type = zone.records.get(name)
        if not by_type:
            rcode = NOERROR if name in zone.existing else NXDOMAIN
            return [_Branch(1, rcode, (), (zone.soa,))]
        candidates = by_type.get(qtype)
        if candidates:
            return self._positive(zone, name, qtype, candidates, depth, seen)
        cnames = by_type.get("CNAME") if qtype != "CNAME" else None
        if cnames:
            return self._follow_cname(zone, name, qtype, cnames, depth, seen)
        return [_Branch(1, NOERROR, (), (zone.soa,))]

    def _positive(
        self, zone: _Zone, name: str, qtype: str, candidates: Sequence[RecordSet],
        depth: int, seen: frozenset[str],
    ) -> list[_Branch]:
        out = []
        for weight, chosen in self._choose(candidates, depth, seen):
            for sub_weight, answers in self._records(name, qtype, chosen, depth, seen):
                authority = () if answers else (zone.soa,)
                out.append(_Branch(weight * sub_weight, NOERROR, answers, authority))
        return _bounded(out)

    def _follow_cname(
        self, zone: _Zone, name: str, qtype: str, cnames: Sequence[RecordSet],
        depth: int, seen: frozenset[str],
    ) -> list[_Branch]:
        """Answer the CNAME, then the target's answers when the lab serves the target."""
        out = []
        for weight, chosen in self._choose(cnames, depth, seen):
            for sub_weight, chain in self._records(name, "CNAME", chosen, depth, seen):
                if not chain:
                    out.append(_Branch(weight * sub_weight, NOERROR, (), (zone.soa,)))
                    continue
                target = normalize_name(chain[-1][3])
                for branch in self._chase(target, qtype, depth, seen):
                    out.append(_Branch(
                        weight * sub_weight * branch.weight, branch.rcode,
                        chain + branch.answers, branch.authority,
                    ))
        return _bounded(out)

    def _chase(self, target: str, qtype: str, depth: int, seen: frozenset[str]) -> list[_Branch]:
        zone = self._table.zone_for(target)
        if zone is None or depth + 1 > MAX_CHAIN or target in seen:
            return [_Branch(1, NOERROR, (), ())]
        return self._lookup(zone, target, qtype, depth + 1, seen | {target})

    def _choose(
        self, candidates: Sequence[RecordSet], depth: int, seen: frozenset[str]
    ) -> list[_T]:
        """Apply the routing policy with health: the record sets one query may answer with."""
        options = routing.choose(candidates, lambda r: self._healthy(r, depth, seen))
        if self._roles is not None:
            self._roles.update(r.failover.upper() for _, chosen in options for r in chosen
                               if r.failover is not None)
        if self._rng is None or len(options) < 2:
            return options
        return [(1, _pick([w for w, _ in options], options, self._rng)[1])]

    def _healthy(self, record: RecordSet, depth: int, seen: frozenset[str]) -> bool:
        """Route 53's health of one record set: its health check, then its alias target."""
        check = record.health_check_id
        if check is not None and not self._table.health.get(check, True):
            return False
        alias = record.alias
        if alias is not None and alias.evaluate_target_health:
            return self._target_healthy(alias, record.type, depth, seen)
        return True

    def _target_healthy(self, alias: AliasTarget, rtype: str, depth: int, seen: frozenset[str]) -> bool:
        """An alias target is healthy when it has at least one healthy record of the type.

        A target without records, outside the lab's zones, in a loop or past MAX_CHAIN
        hops is unhealthy. Results are kept for this resolver (one question's answer).
        """
        target = alias.dns_name
        zone = self._table.alias_zone(alias)
        if zone is None or depth + 1 > MAX_CHAIN or target in seen:
            return False
        key = (zone.snapshot.zone_id, target, rtype)
        known = self._target_health.get(key)
        if known is None:
            group = zone.records.get(target, {}).get(rtype, ())
            inner = seen | {target}
            known = self._target_health[key] = any(self._healthy(r, depth + 1, inner) for r in group)
        return known

    def _records(
        self, owner: str, qtype: str, records: Sequence[RecordSet], depth: int,
        seen: frozenset[str],
    ) -> list[tuple[int, tuple[Answer, ...]]]:
        """Answers for the chosen record sets: the product of each set's outcomes."""
        per_record = [self._record(owner, qtype, r, depth, seen) for r in records]
        out = []
        for combo in itertools.product(*per_record):
            weight = 1
            answers: tuple[Answer, ...] = ()
            for w, part in combo:
                weight *= w
                answers += part
            out.append((weight, answers))
            if len(out) > MAX_BRANCHES:
                raise _TooManyBranches
        return out

    def _record(
        self, owner: str, qtype: str, record: RecordSet, depth: int, seen: frozenset[str]
    ) -> list[tuple[int, tuple[Answer, ...]]]:
        code = wire.type_code(record.type)
        if record.alias is None:
            ttl = record.ttl if record.ttl is not None else DEFAULT_TTL
            return [(1, tuple((owner, code, ttl, value) for value in record.values))]
        return self._alias(owner, code, qtype, record.alias, depth, seen)

    def _alias(
        self, owner: str, code: int, qtype: str, alias: AliasTarget, depth: int,
        seen: frozenset[str],
    ) -> list[tuple[int, tuple[Answer, ...]]]:
        """The target's records of the type, owned by the alias name, with their TTL."""
        zone = self._table.alias_zone(alias)
        target = alias.dns_name
        if zone is None or depth + 1 > MAX_CHAIN or target in seen:
            return [(1, ())]
        branches = self._lookup(zone, target, qtype, depth + 1, seen | {target})
        return [
            (b.weight, tuple((owner, t, ttl, v) for _, t, ttl, v in b.answers if t == code))
            for b in branches
        ]


def _bounded(branches: list[_Branch]) -> list[_Branch]:
    if len(branches) > MAX_BRANCHES:
        raise _TooManyBranches
    return branches


_T = routing.Option


def _pick(weights: Sequence[int], options: Sequence[_T], rng: random.Random) -> _T:
    cumulative = list(itertools.accumulate(weights))
    return options[bisect.bisect_right(cumulative, rng.random() * cumulative[-1])]


def _members(table: _Table, qname: str) -> Members:
    """The A and AAAA values in any answer to ``qname``, and the failover roles chosen.

    Past ``MAX_BRANCHES`` weighted outcomes (never in a lab topology) one outcome,
    chosen by a fixed seed, is counted: a lower bound, and still deterministic.
    """
    addresses: set[str] = set()
    roles: set[str] = set()
    for qtype in _ADDRESS_TYPES:
        found: set[str] = set()
        try:
            branches = _Resolver(table, roles=found).resolve(qname, qtype)
        except _TooManyBranches:
            found = set()
            branches = _Resolver(table, random.Random(0), roles=found).resolve(qname, qtype)
        roles |= found
        code = wire.type_code(qtype)
        addresses.update(
            _canonical_address(value)
            for branch in branches for _, rtype, _, value in branch.answers if rtype == code
        )
    return Members(frozenset(addresses), frozenset(roles))


def _canonical_address(value: str) -> str:
    """One spelling per address (``::FFFF:7f00:b`` and ``::ffff:127.0.0.11`` are one)."""
    try:
        return str(ipaddress.ip_address(value.strip()))
    except ValueError:
        return value


# --- answer cache -------------------------------------------------------------------


class _Body:
    """Everything of an answer after the question, ready to send."""

    __slots__ = ("rcode", "rcode_text", "flags", "ancount", "nscount", "records")

    def __init__(self, rcode: int, flags: int, ancount: int, nscount: int, records: bytes) -> None:
        self.rcode = rcode
        self.rcode_text = wire.rcode_name(rcode)
        self.flags = flags
        self.ancount = ancount
        self.nscount = nscount
        self.records = records


class _Entry:
    """The cached answers to one question: one body, or weighted bodies to pick from."""

    __slots__ = ("bodies", "cumulative", "total")

    def __init__(self, bodies: list[_Body], weights: list[int]) -> None:
        self.bodies = bodies
        self.cumulative = list(itertools.accumulate(weights))
        self.total = self.cumulative[-1]

    def pick(self, rng: random.Random) -> _Body:
        if len(self.bodies) == 1:
            return self.bodies[0]
        return self.bodies[bisect.bisect_right(self.cumulative, rng.random() * self.total)]


def _encode(branch: _Branch, qname: str, question_length: int) -> _Body:
    flags = wire.QR | branch.rcode | (0 if branch.rcode == REFUSED else wire.AA)
    writer = wire.RecordWriter(qname, 12 + question_length)
    for owner, rtype, ttl, value in branch.answers + branch.authority:
        writer.add(owner, rtype, ttl, value)
    return _Body(branch.rcode, flags, len(branch.answers), len(branch.authority),
                 writer.getvalue())


def _build_entry(table: _Table, query: wire.Query, rng: random.Random) -> tuple[_Entry, bool]:
    """Resolve and encode a question; the flag says whether the entry may be cached."""
    qname, qtype = query.qname, wire.type_name(query.qtype)
    cacheable = True
    try:
        try:
            branches = _Resolver(table).resolve(qname, qtype)
        except _TooManyBranches:
            branches, cacheable = _Resolver(table, rng).resolve(qname, qtype), False
        bodies = [_encode(b, qname, len(query.question)) for b in branches]
    except wire.WireError:
        # A value the wire cannot carry (a bad address in a snapshot): the server's fault.
        bodies = [_Body(SERVFAIL, wire.QR | SERVFAIL, 0, 0, b"")]
        branches = [_Branch(1, SERVFAIL, (), ())]
    return _Entry(bodies, [b.weight for b in branches]), cacheable


# --- the server ---------------------------------------------------------------------


_LogEntry = tuple[float, str, int, bytes | None, int, str, int, str]
"""time, client, port, question key (None if unreadable), qtype, rcode, answers, transport."""


class LabDNS:
    """An authoritative DNS server for the lab's Route 53 zones on one loopback address.

    Args:
        host: a 127.x.x.x address; anything else is refused so the lab never listens
            beyond this machine.
        port: 0 picks a port free for both UDP and TCP.
        seed: seeds the one RNG that picks weighted records, so runs replay.
        clock: where query-log times come from.
        log_limit: queries kept in the log; the counters keep counting past it.
    """

    def __init__(
        self, host: str = "127.0.0.1", port: int = 0, *, seed: int = 0,
        clock: Clock = REAL_CLOCK, log_limit: int = 200_000,
    ) -> None:
        self._host = _loopback_host(host)
        if not 0 <= port <= 65535:
            raise ConfigError("port", f"{port} is not a port number", "use 0..65535 (0 picks one)")
        self._port = port
        if log_limit < 0:
            raise ConfigError("log_limit", f"{log_limit} is negative", "use 0 or more entries")
        self.seed = seed
        self._rng = random.Random(seed)
        self._table = _Table({})
        self._history: dict[str, set[str]] = {}
        self._publish_lock = threading.Lock()
        self._stats_lock = threading.Lock()
        self._log: collections.deque[_LogEntry] = collections.deque(maxlen=log_limit)
        self._now = clock.now
        self._tally: dict[tuple[str, bytes | None, str, str], int] = {}
        self._dropped = 0
        self._errors = 0
        self._stopping = threading.Event()
        self._udp: socket.socket | None = None
        self._tcp: socket.socket | None = None
        self._threads: list[threading.Thread] = []
        self._workers: list[threading.Thread] = []
        self._connections: set[socket.socket] = set()
        self._conn_lock = threading.Lock()

    # --- lifecycle ------------------------------------------------------------------

    @property
    def address(self) -> tuple[str, int]:
        """(host, port) the server answers on; only known once started."""
        if self._udp is None:
            raise LabError("the lab DNS is not started; call start() first")
        return self._host, self._port

    def start(self) -> LabDNS:
        """Bind UDP and TCP on one port and serve both from background threads.

        A restart after stop() binds the port the server had, so clients keep working.
        """
        if self._udp is not None:
            raise LabError(f"the lab DNS is already running on {self._host}:{self._port}")
        self._stopping.clear()
        self._udp, self._tcp = _bind_pair(self._host, self._port)
        self._port = self._udp.getsockname()[1]
        for target, name in ((self._udp_loop, "udp"), (self._accept_loop, "tcp-accept")):
            thread = threading.Thread(target=target, name=f"lab-dns-{name}-{self._port}",
                                      daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        """Close every socket and join every thread; nothing listens afterwards."""
        udp, tcp = self._udp, self._tcp
        if udp is None or tcp is None:
            return
        self._stopping.set()
        _shutdown(udp)
        _shutdown(tcp)
        _wake_udp(self._host, self._port)
        threads, self._threads = self._threads, []
        _join(threads)  # the accept loop is gone: no connection can be added now
        with self._conn_lock:
            connections, workers = list(self._connections), self._workers
            self._workers = []
        for conn in connections:
            _shutdown(conn)
        _join(workers)
        udp.close()
        tcp.close()
        self._udp = self._tcp = None
        stuck = [t.name for t in threads + workers if t.is_alive()]
        if stuck:
            raise LabError(f"lab DNS threads did not stop: {', '.join(stuck)}")

    def __enter__(self) -> LabDNS:
        if self._udp is None:
            self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # --- zones ----------------------------------------------------------------------

    def publish(self, snapshot: ZoneSnapshot) -> None:
        """Replace one zone's records; a query sees the old table or the new, never a mix."""
        with self._publish_lock:
            history = self._history.setdefault(snapshot.zone_id, set())
            history.update(r.name for r in snapshot.records if _within(r.name, snapshot.name))
            by_id = dict(self._table.by_id)
            by_id.pop(snapshot.zone_id, None)  # re-insert: publish order decides name clashes
            by_id[snapshot.zone_id] = _Zone(snapshot, history)
            self._table = _Table(by_id, self._table.health)

    def remove_zone(self, zone_id: str) -> None:
        """Stop serving a zone (its names are then REFUSED unless another zone holds them)."""
        with self._publish_lock:
            by_id = dict(self._table.by_id)
            by_id.pop(zone_id.rsplit("/", 1)[-1], None)
            self._table = _Table(by_id, self._table.health)

    def set_health(self, statuses: Mapping[str, bool]) -> None:
        """Make ``statuses`` (health check id -> healthy) the health answers follow.

        Replaces the whole map (an id left out counts as healthy) and swaps the table
        atomically, as :meth:`publish` does; an unchanged map keeps the table and its
        cache. Publishing keeps the current map.
        """
        health = {str(check): bool(up) for check, up in statuses.items()}
        with self._publish_lock:
            if health != self._table.health:
                self._table = _Table(dict(self._table.by_id), health)

    def zones(self) -> list[ZoneSnapshot]:
        """The snapshots being served, in publish order."""
        return [zone.snapshot for zone in self._table.by_id.values()]

    def addresses(self, name: str) -> int:
        """How many addresses a query for ``name`` can answer with now: A plus AAAA.

        Resolved as a query is (alias, CNAME, routing policies with health), over the
        table queries read, but nothing is logged or counted. Where a weighted set gives
        each query one member, every member it may choose counts: the distinct addresses
        any client could get. NXDOMAIN, NODATA and names outside every zone count 0.
        """
        return len(self.members(name).addresses)

    def members(self, name: str) -> Members:
        """The addresses any answer for ``name`` can hold now, and the failover roles
        chosen on the way; resolved as :meth:`addresses` is, nothing logged or counted."""
        return _members(self._table, normalize_name(name))  # one table, as one query sees

    def answer_names(self) -> list[str]:
        """Every owner name with A, AAAA or CNAME records in the zones served, sorted.

        Names are normalized (lower case, trailing dot); a name held by a zone that a
        longer (or later-published) zone shadows is left out, as queries never reach it.
        """
        table = self._table
        return sorted(
            name
            for zone in table.by_id.values()
            for name, by_type in zone.records.items()
            if not _ANSWER_TYPES.isdisjoint(by_type) and table.zone_for(name) is zone
        )

    # --- answering ------------------------------------------------------------------

    def handle(self, data: bytes, client: str, port: int, transport: str = "udp") -> bytes | None:
        """Answer one message; None means drop it (no reply is possible or wanted).

        This is the hot path: a cached question costs a parse, two dict look-ups, one
        header pack and a log append.
        """
        try:
            query = wire.parse_query(data)
        except wire.WireError:
            return self._unreadable(data, client, port, transport)
        if query.flags & _SPECIAL_FLAGS or query.qclass != wire.CLASS_IN or query.qtype in _ZONE_TRANSFERS:
            return self._refuse(query, client, port, transport)
        table = self._table  # read once: this query sees one table throughout
        entry = table.cache.get(query.key)
        if entry is None:
            entry = self._fill(table, query)
        body = entry.pick(self._rng)
        self._note(client, port, query.key, query.qtype, body.rcode_text, body.ancount, transport)
        return _render(query, body, query.udp_size if transport == "udp" else 65535)

    def _fill(self, table: _Table, query: wire.Query) -> _Entry:
        """Resolve a question not in the cache, and cache it unless it is too branchy."""
        entry, cacheable = _build_entry(table, query, self._rng)
        if cacheable:
            if len(table.cache) >= CACHE_LIMIT:
                table.cache.clear()
            table.cache[query.key] = entry
        return entry

    def _unreadable(self, data: bytes, client: str, port: int, transport: str) -> bytes | None:
        """FORMERR when at least the header is readable (NOTIMP for other opcodes)."""
        header = wire.read_header(data)
        if header is None or header[1] & wire.QR:
            self._count_drop()
            return None
        qid, flags = header[0], header[1]
        rcode = NOTIMP if flags & wire.OPCODE_MASK else FORMERR
        self._note(client, port, None, 0, wire.rcode_name(rcode), 0, transport)
        return wire.error_response(qid, flags, b"", rcode)

    def _refuse(self, query: wire.Query, client: str, port: int, transport: str) -> bytes | None:
        """Responses are dropped; other opcodes get NOTIMP; other classes and AXFR REFUSED."""
        if query.flags & wire.QR:
            self._count_drop()  # never answer an answer: that is how reflection loops start
            return None
        rcode = NOTIMP if query.flags & wire.OPCODE_MASK else REFUSED
        self._note(client, port, query.key, query.qtype, wire.rcode_name(rcode), 0, transport)
        edns = EDNS_PAYLOAD if query.edns else None
        return wire.error_response(query.id, query.flags, query.question, rcode, edns_size=edns)

    # --- query log ------------------------------------------------------------------

    def _note(
        self, client: str, port: int, key: bytes | None, qtype: int, rcode: str, answers: int,
        transport: str,
    ) -> None:
        """Log and count one query; text forms are made only when someone reads them.

        One tally keyed by everything counters() groups by costs one dict update per
        query instead of five.
        """
        entry = (self._now(), client, port, key, qtype, rcode, answers, transport)
        tally_key = (rcode, key, client, transport)
        with self._stats_lock:
            self._log.append(entry)
            tally = self._tally
            tally[tally_key] = tally.get(tally_key, 0) + 1

    def _count_drop(self) -> None:
        with self._stats_lock:
            self._dropped += 1

    def query_log(
        self, since: float | None = None, name: str | None = None, client: str | None = None
    ) -> list[QueryRecord]:
        """Logged queries, oldest first, optionally at or after ``since``, for a name or client."""
        with self._stats_lock:
            entries = list(self._log)
        wanted = wire.encode_name(normalize_name(name)) if name is not None else None
        out = []
        for when, host, port, key, qtype, rcode, answers, transport in entries:
            if since is not None and when < since:
                continue
            if client is not None and host != client:
                continue
            qname = key[:-4] if key else None
            if wanted is not None and qname != wanted:
                continue
            out.append(QueryRecord(
                time=when, client=host, client_port=port,
                name=wire.name_to_text(qname) if qname else "",
                qtype=wire.type_name(qtype) if key else "", rcode=rcode, answers=answers,
                transport=transport,
            ))
        return out

    def counters(self) -> dict[str, object]:
        """Cumulative counts since start, never trimmed with the log.

        Keys: ``total``, ``by_rcode``, ``by_qtype``, ``by_client``, ``by_name`` (names
        lower case with the trailing dot), ``by_transport``, ``dropped`` (messages with no
        reply possible) and ``errors`` (internal errors while answering). Queries whose
        question could not be read count under rcode, client and transport only.
        """
        with self._stats_lock:
            tally = list(self._tally.items())
            dropped, errors = self._dropped, self._errors
        groups: dict[str, collections.Counter[str]] = {
            k: collections.Counter() for k in ("rcode", "qtype", "client", "name", "transport")
        }
        for (rcode, key, client, transport), count in tally:
            groups["rcode"][rcode] += count
            groups["client"][client] += count
            groups["transport"][transport] += count
            if key:
                groups["qtype"][wire.type_name(int.from_bytes(key[-4:-2], "big"))] += count
                groups["name"][wire.name_to_text(key[:-4])] += count
        return {
            "total": sum(groups["rcode"].values()),
            **{f"by_{kind}": dict(counter) for kind, counter in groups.items()},
            "dropped": dropped,
            "errors": errors,
        }

    # --- sockets --------------------------------------------------------------------

    def _answer_safely(self, data: bytes, client: str, port: int, transport: str) -> bytes | None:
        """``handle`` that never kills a serving thread: a bug costs one answer, counted."""
        try:
            return self.handle(data, client, port, transport)
        except Exception:  # noqa: BLE001 - the server must outlive one bad message
            with self._stats_lock:
                self._errors += 1
            return None

    def _udp_loop(self) -> None:
        """Blocking recvfrom/sendto on one thread: the fastest loop CPython offers here."""
        sock = self._udp
        assert sock is not None
        recvfrom, sendto, answer = sock.recvfrom, sock.sendto, self._answer_safely
        stopping = self._stopping.is_set
        while not stopping():
            try:
                data, addr = recvfrom(65535)
            except OSError:
                continue  # e.g. an ICMP error surfaced late; stop() sets the flag first
            if not data:
                continue
            reply = answer(data, addr[0], addr[1], "udp")
            if reply is not None:
                try:
                    sendto(reply, addr)
                except OSError:
                    pass  # the client went away; UDP has nobody to tell

    def _accept_loop(self) -> None:
        sock = self._tcp
        assert sock is not None
        while not self._stopping.is_set():
            try:
                conn, addr = sock.accept()
            except OSError:
                self._stopping.wait(0.01)  # e.g. EMFILE: back off instead of spinning
                continue
            if self._stopping.is_set() or not self._track(conn, addr[0], addr[1]):
                conn.close()
                continue

    def _track(self, conn: socket.socket, client: str, port: int) -> bool:
        """Start a worker for ``conn`` unless too many connections are open."""
        worker = threading.Thread(target=self._serve_tcp, args=(conn, client, port),
                                  name=f"lab-dns-tcp-{port}", daemon=True)
        with self._conn_lock:
            if len(self._connections) >= MAX_TCP_CONNECTIONS:
                return False
            self._connections.add(conn)
            self._workers = [t for t in self._workers if t.is_alive()] + [worker]
        worker.start()
        return True

    def _serve_tcp(self, conn: socket.socket, client: str, port: int) -> None:
        """Length-prefixed messages, answered in order, until EOF, idle or stop."""
        conn.settimeout(TCP_IDLE_SECONDS)
        try:
            while not self._stopping.is_set():
                head = _recv_exact(conn, 2)
                message = _recv_exact(conn, int.from_bytes(head, "big")) if head else None
                if message is None:
                    break
                reply = self._answer_safely(message, client, port, "tcp")
                if reply is not None:
                    conn.sendall(len(reply).to_bytes(2, "big") + reply)
        except OSError:
            pass  # reset, idle timeout or stop(): the connection is over either way
        finally:
            with self._conn_lock:
                self._connections.discard(conn)
            conn.close()


def _render(query: wire.Query, body: _Body, limit: int) -> bytes:
    """Header with the query's id and RD/CD bits, the question as sent, then the body."""
    flags = body.flags | (query.flags & (wire.RD | wire.CD))
    if query.edns:
        opt, arcount = _OPT, 1
    else:
        opt, arcount = b"", 0
    message = b"".join((
        wire.HEADER.pack(query.id, flags, 1, body.ancount, body.nscount, arcount),
        query.question, body.records, opt,
    ))
    if len(message) <= limit:
        return message
    return wire.HEADER.pack(query.id, flags | wire.TC, 1, 0, 0, arcount) + query.question + opt


_OPT = wire.opt_record(EDNS_PAYLOAD)


def _loopback_host(host: str) -> str:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise ConfigError("host", f"{host!r} is not an IP address",
                          "use a loopback address such as 127.0.0.1") from None
    if address.version != 4 or not address.is_loopback:
        raise ConfigError("host", f"{host} is not a 127.x.x.x address",
                          "the lab DNS listens on loopback only; use e.g. 127.0.0.1")
    return str(address)


def _bind_pair(host: str, port: int) -> tuple[socket.socket, socket.socket]:
    """UDP and TCP sockets on the same port; with port 0, retry until one is free for both."""
    for _ in range(64):
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            udp.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
            udp.bind((host, port))
            tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            tcp.bind((host, udp.getsockname()[1]))
            tcp.listen(128)
            return udp, tcp
        except OSError as error:
            udp.close()
            tcp.close()
            if port != 0 or error.errno != errno.EADDRINUSE:
                raise LabError(f"cannot bind the lab DNS on {host}:{port}: {error}; "
                               "choose another port or pass port=0") from error
    raise LabError(f"no port on {host} was free for both UDP and TCP after 64 tries")


def _shutdown(sock: socket.socket) -> None:
    """Wake any thread blocked on ``sock`` (close() alone does not on Linux)."""
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # unconnected UDP reports ENOTCONN but is woken all the same


def _wake_udp(host: str, port: int) -> None:
    """Belt and braces for the UDP loop: one empty datagram makes recvfrom return."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.sendto(b"", (host, port))
        except OSError:
            pass


def _join(threads: Iterable[threading.Thread]) -> None:
    for thread in threads:
        thread.join(timeout=5.0)


def _recv_exact(conn: socket.socket, size: int) -> bytes | None:
    """Exactly ``size`` bytes, or None at EOF."""
    chunks = bytearray()
    while len(chunks) < size:
        chunk = conn.recv(size - len(chunks))
        if not chunk:
            return None
        chunks.extend(chunk)
    return bytes(chunks)
