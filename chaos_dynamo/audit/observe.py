"""What a run showed: the AWS dependencies of a command, from its call logs and the lab's logs.

Pure: everything here works on records already read (the call log's :class:`Call` and
:class:`Client`, the lab's DNS queries and LB requests as the retry probes read them:
:class:`DnsQuery` and :class:`LbRequest` are :mod:`chaos_dynamo.retry.probes`' ``Query``
and ``Request``), so the rules and the tests can feed it synthetic histories.

A dependency is one (AWS service, region, endpoint host). The call log gives most of them,
with operations, attempts and the settings of every client that served them. The lab's
logs add what the call log cannot see: a name looked up that no hooked client uses (a
program in another language, ``requests`` against an AWS URL), and LB requests beyond the
attempts the call log accounts for (an un-hooked client sending DynamoDB calls).
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from chaos_dynamo.audit.catalogue import canonical_service, service_and_region
from chaos_dynamo.calllog import Call, Client
from chaos_dynamo.retry.probes import Query as DnsQuery
from chaos_dynamo.retry.probes import Request as LbRequest

__all__ = ["DnsQuery", "LbRequest", "Observed", "Settings", "Dependency", "dependencies", "call_seconds",
           "CALL_LOG", "DNS_LOG", "LB_LOG", "NOT_SENT", "empty_answers"]

CALL_LOG, DNS_LOG, LB_LOG = "call log", "lab DNS log only", "lab LB log only"
"""How a dependency was seen: by the hooked SDK, or only in one of the lab's logs."""

NOT_SENT = frozenset({"EndpointConnectionError", "ConnectTimeoutError"})
"""Attempt errors that mean no request reached a load balancer."""


@dataclass(frozen=True)
class Observed:
    """Everything one audit run recorded, already read."""

    calls: Sequence[Call] = ()
    clients: Sequence[Client] = ()
    dns: Sequence[DnsQuery] = ()
    lb: Sequence[LbRequest] = ()
    lab_region: str = "us-east-1"


@dataclass(frozen=True)
class Settings:
    """One distinct client configuration (what the rules judge)."""

    retry_mode: str
    max_attempts: int | None
    connect_timeout: float | None
    read_timeout: float | None
    connect_timeout_set: bool = False
    read_timeout_set: bool = False
    max_pool_connections: int | None = None

    @classmethod
    def of(cls, client: Client) -> Settings:
        return cls(client.retry_mode, client.max_attempts, client.connect_timeout, client.read_timeout,
                   client.connect_timeout_set, client.read_timeout_set,
                   client.max_pool_connections)


@dataclass
class Dependency:
    """One AWS service at one region and endpoint host, with what was seen of it."""

    service: str
    region: str
    host: str
    seen_by: str = CALL_LOG
    calls: list[Call] = field(default_factory=list)
    clients: list[Client] = field(default_factory=list)
    dns_queries: int = 0
    dns_empty: int = 0
    """Lab DNS answers with no address (the outage's NOERROR/no data, or NXDOMAIN)."""
    extra_requests: Counter[str] = field(default_factory=Counter)
    """LB-log-only dependencies: requests per operation the call log does not account for."""

    @property
    def key(self) -> str:
        """``service@region``: how findings and the graph name the dependency."""
        return f"{self.service}@{self.region}"

    @property
    def operations(self) -> Counter[str]:
        counts = Counter(c.operation for c in self.calls)
        counts.update(self.extra_requests)
        return counts

    @property
    def attempts(self) -> list[int]:
        """Attempts of each logical call (botocore's and the application's retries joined)."""
        return [len(c.attempts) for c in self.calls]

    @property
    def max_attempts(self) -> int:
        return max(self.attempts, default=0)

    @property
    def p50_attempts(self) -> float:
        return float(statistics.median(self.attempts)) if self.calls else 0.0

    @property
    def dns_failures(self) -> int:
        """Attempts that failed because the endpoint's name did not resolve."""
        return sum(a.dns_failure for c in self.calls for a in c.attempts)

    @property
    def longest_call(self) -> Call | None:
        """The logical call with the most attempts (then the longest)."""
        return max(self.calls, key=lambda c: (len(c.attempts), call_seconds(c)), default=None)

    def settings(self) -> dict[Settings, list[Client]]:
        """Each distinct client configuration, with the clients that had it."""
        out: dict[Settings, list[Client]] = {}
        for client in self.clients:
            out.setdefault(Settings.of(client), []).append(client)
        return out

    @property
    def sites(self) -> list[str]:
        """Where the application made this dependency's clients (``file:line``), most first."""
        counts = Counter(c.site for c in self.clients if c.site)
        return [site for site, _ in counts.most_common()]

    @property
    def processes(self) -> list[str]:
        """The services (call log ``svc``) that used or made clients for this dependency."""
        return sorted({c.service for c in self.calls} | {c.service for c in self.clients})


class _Slot(Protocol):
    """The dependency for (service, region, host), made on first use."""

    def __call__(self, service: str, region: str, host: str, seen_by: str = ...) -> Dependency: ...


def call_seconds(call: Call) -> float:
    """How long a logical call took (to its last attempt's end while it was still going)."""
    end = call.end if call.end is not None else max((a.end or a.start for a in call.attempts), default=call.start)
    return max(0.0, end - call.start)


def dependencies(observed: Observed) -> list[Dependency]:
    """Every dependency the run showed, call-log ones first, each kind sorted by key."""
    by_id = {c.id: c for c in observed.clients}
    found: dict[tuple[str, str, str], Dependency] = {}

    def slot(service: str, region: str, host: str, seen_by: str = CALL_LOG) -> Dependency:
        key = (service, region, host.lower().rstrip("."))
        if key not in found:
            found[key] = Dependency(*key, seen_by=seen_by)
        return found[key]

    for client in observed.clients:
        slot(client.api or canonical_service(client.prefix), client.region, client.host).clients.append(client)
    for call in observed.calls:
        made_by = by_id.get(call.clients[0]) if call.clients else None
        if made_by is not None:
            slot(made_by.api, made_by.region, made_by.host).calls.append(call)
        else:  # a call whose client was not described (made before the hooks, or a dropped event)
            slot(canonical_service(call.api) or "unknown", "unknown", "unknown").calls.append(call)
    _add_dns(found, observed.dns, slot)
    _add_lb(found, observed, slot)
    return sorted(found.values(), key=lambda d: (d.seen_by != CALL_LOG, d.service, d.region, d.host))


def empty_answers(asked: Sequence[DnsQuery]) -> int:
    """Answers to one name with no address of a type the name did answer in the run (A
    for an IPv4 endpoint: its AAAA answers are empty all along and do not count), or of
    any type when the name never answered."""
    answered = {q.qtype for q in asked if q.answers > 0}
    return sum(1 for q in asked if q.answers == 0 and (not answered or q.qtype in answered))


def _add_dns(found: dict[tuple[str, str, str], Dependency], queries: Iterable[DnsQuery], slot: _Slot) -> None:
    """Count each host's lookups and empty answers (:func:`empty_answers`); a name no
    client uses becomes a DNS-log-only dependency."""
    by_name: dict[str, list[DnsQuery]] = {}
    for query in queries:
        by_name.setdefault(query.name.lower().rstrip("."), []).append(query)
    hooked = {d.host for d in found.values()}
    for name, asked in sorted(by_name.items()):
        empty = empty_answers(asked)
        if name in hooked:
            targets = [d for d in found.values() if d.host == name]
        else:
            service, region = service_and_region(name)
            targets = [slot(service or "unknown", region or "unknown", name, DNS_LOG)]
        for dep in targets:
            dep.dns_queries += len(asked)
            dep.dns_empty += empty


def _add_lb(found: dict[tuple[str, str, str], Dependency], observed: Observed, slot: _Slot) -> None:
    """LB requests per operation beyond the DynamoDB attempts the call log says were sent."""
    sent: Counter[str] = Counter()
    for dep in list(found.values()):
        if dep.service == "dynamodb":
            for call in dep.calls:
                sent[call.operation] += sum(1 for a in call.attempts
                                            if not a.dns_failure and a.error not in NOT_SENT)
    requests = Counter(r.operation or "unknown" for r in observed.lb)
    extra = Counter({op: n - sent[op] for op, n in requests.items() if n > sent[op]})
    if extra:
        dep = slot("dynamodb", observed.lab_region, "lab load balancers", LB_LOG)
        dep.extra_requests.update(extra)
