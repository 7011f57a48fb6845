"""The audit's risk rules on synthetic call logs: each fires on the fragile history and stays
quiet on the hardened one. Histories are written as the botocore hooks write them and read
back through the call log, so joining and pauses are the real code's."""

from __future__ import annotations

import random
from typing import Any

import pytest

from chaos_dynamo.audit import rules
from chaos_dynamo.audit.catalogue import is_control_plane, service_and_region
from chaos_dynamo.audit.findings import Finding
from chaos_dynamo.audit.observe import (
    CALL_LOG,
    DNS_LOG,
    LB_LOG,
    Dependency,
    DnsQuery,
    LbRequest,
    Observed,
    dependencies,
)
from chaos_dynamo.calllog import assemble, clients_from

T = 1_700_000_000.0


class History:
    """Call-log events for one process, written as :mod:`chaos_dynamo.callhooks` writes them."""

    def __init__(self, pid: int = 7) -> None:
        self.events: list[dict[str, Any]] = []
        self.t = T
        self.n = 0
        self.pid = pid

    def client(self, cid: str, *, api: str = "dynamodb", region: str = "us-east-1", host: str | None = None,
               mode: str = "standard", attempts: int | None = 3, connect: float = 60.0, read: float = 60.0,
               site: str = "app.py:10") -> str:
        host = host or f"{api}.{region}.amazonaws.com"
        self.events.append({"e": "client", "id": cid, "t": self.t, "pid": self.pid, "svc": "app", "api": api,
                            "prefix": api, "region": region, "endpoint": f"https://{host}", "retry_mode": mode,
                            "max_attempts": attempts, "connect_timeout": connect,
                            "connect_timeout_set": connect != 60, "read_timeout": read,
                            "read_timeout_set": read != 60, "pool": 10, "site": site, "func": "main"})
        return cid

    def call(self, client: str, op: str = "GetItem", *, attempts: int = 1, ok: bool = True, key: str | None = None,
             dns: bool = False, backoff: float = 0.05, api: str = "dynamodb") -> None:
        """One client method call: ``attempts`` attempts, the last one succeeding when ``ok``."""
        self.n += 1
        cid = f"{self.pid}-{self.n}"
        self.events.append({"e": "call", "id": cid, "t": self.t, "op": op, "api": api, "svc": "app",
                            "pid": self.pid, "th": 1, "key": key or cid, "client": client})
        for n in range(1, attempts + 1):
            self.t += 0.001
            self.events.append({"e": "attempt", "id": cid, "t": self.t, "n": n})
            self.t += 0.004
            success = ok and n == attempts
            self.events.append({"e": "outcome", "id": cid, "t": self.t, "n": n, "status": 200 if success else None,
                                "error": None if success else "EndpointConnectionError",
                                "dns": dns and not success})
            if n < attempts:
                self.t += backoff
        self.t += 0.001
        self.events.append({"e": "end", "id": cid, "t": self.t, "ok": ok,
                            "error": None if ok else "EndpointConnectionError"})

    def app_retries(self, client: str, pauses: list[float], op: str = "PutItem", key: str = "same-request") -> None:
        """A call the application repeats after each pause (same request, same thread), then succeeds."""
        for pause in pauses:
            self.call(client, op, ok=False, key=key, dns=True)
            self.t += pause
        self.call(client, op, key=key)

    def deps(self, dns: tuple[DnsQuery, ...] = (), lb: tuple[LbRequest, ...] = ()) -> list[Dependency]:
        return dependencies(Observed(assemble(self.events), clients_from(self.events), dns, lb))

    def findings(self, **logs: Any) -> list[Finding]:
        return rules.findings(self.deps(**logs))


def ids(found: list[Finding]) -> set[str]:
    return {f.id for f in found}


def of_rule(found: list[Finding], rule: str) -> list[Finding]:
    return [f for f in found if f.rule == rule]


# --- region and endpoint ----------------------------------------------------------------------

def test_a_service_used_only_in_us_east_1_is_a_high_finding_and_a_second_region_clears_it() -> None:
    fragile = History()
    fragile.call(fragile.client("7-c1"))
    (finding,) = of_rule(fragile.findings(), "region-us-east-1-only")
    assert (finding.id, finding.severity, finding.dependency) == (
        "region-us-east-1-only:dynamodb:us-east-1", "high", "dynamodb@us-east-1")
    assert "no client for dynamodb in another region" in finding.evidence and finding.locations == ("app.py:10",)

    hardened = History()
    hardened.call(hardened.client("7-c1"))
    hardened.client("7-c2", region="us-west-2", site="app.py:11")  # the fallback, not called in a healthy run
    found = hardened.findings()
    assert not of_rule(found, "region-us-east-1-only") and not of_rule(found, "endpoint-single")
    us_west = next(d for d in hardened.deps() if d.region == "us-west-2")
    assert us_west.calls == [] and us_west.clients[0].site == "app.py:11"


def test_one_endpoint_elsewhere_is_a_medium_finding() -> None:
    fragile = History()
    fragile.call(fragile.client("7-c1", region="eu-west-1"))
    (finding,) = of_rule(fragile.findings(), "endpoint-single")
    assert (finding.id, finding.severity) == ("endpoint-single:dynamodb:eu-west-1", "medium")
    assert not of_rule(fragile.findings(), "region-us-east-1-only")

    hardened = History()
    hardened.call(hardened.client("7-c1", region="eu-west-1"))
    hardened.client("7-c2", region="eu-central-1")
    assert not of_rule(hardened.findings(), "endpoint-single")


def test_global_endpoints_count_as_us_east_1() -> None:
    history = History()
    history.call(history.client("7-c1", api="iam", region="aws-global", host="iam.amazonaws.com"),
                 "ListRoles", api="iam")
    (finding,) = of_rule(history.findings(), "region-us-east-1-only")
    assert finding.id == "region-us-east-1-only:iam:aws-global"


# --- retries ---------------------------------------------------------------------------------------

def test_more_than_ten_attempts_per_call_is_unbounded() -> None:
    fragile = History()
    client = fragile.client("7-c1", attempts=1)
    fragile.app_retries(client, [0.06] * 11)  # 12 attempts of one logical call
    (finding,) = of_rule(fragile.findings(), "retry-unbounded")
    assert finding.severity == "high" and "took 12 attempts in 12 client call(s) (then succeeded)" in finding.evidence

    hardened = History()
    hardened.call(hardened.client("7-c1", attempts=4), attempts=4, dns=True)
    assert not of_rule(hardened.findings(), "retry-unbounded")
    (dep,) = hardened.deps()
    assert (dep.max_attempts, dep.p50_attempts, dep.dns_failures) == (4, 4.0, 3)


def test_an_application_retrying_at_once_has_no_backoff() -> None:
    fragile = History()
    fragile.app_retries(fragile.client("7-c1", attempts=1), [0.001, 0.002, 0.001])
    (finding,) = of_rule(fragile.findings(), "retry-no-backoff")
    assert "median pause 1.0 ms" in finding.evidence and finding.severity == "high"

    hardened = History()  # tenacity: 4 attempts, exponential pauses
    hardened.app_retries(hardened.client("7-c1", attempts=1), [0.05, 0.1, 0.2])
    assert not of_rule(hardened.findings(), "retry-no-backoff")


def test_pauses_that_do_not_grow_are_no_backoff_even_when_each_takes_a_while() -> None:
    """The naive reference: a new client per attempt makes each pause ~70 ms, but flat."""
    fragile = History()
    client = fragile.client("7-c1", attempts=1)
    for call in range(2):
        fragile.app_retries(client, [0.07] * 8, key=f"req-{call}")
    (finding,) = of_rule(fragile.findings(), "retry-no-backoff")
    assert "pauses do not grow" in finding.evidence

    loaded = History()  # the same loop on a loaded CI machine: later client builds take longer
    client = loaded.client("7-c1", attempts=1)
    for call in range(2):
        loaded.app_retries(client, [0.04, 0.04, 0.06, 0.09, 0.1, 0.1, 0.09, 0.1], key=f"req-{call}")
    assert of_rule(loaded.findings(), "retry-no-backoff"), "2.4x is noise, not backoff"

    rng = random.Random(3)
    hardened = History()  # capped exponential backoff with full jitter, 8 retries
    client = hardened.client("7-c1", attempts=1)
    for call in range(2):
        hardened.app_retries(client, [rng.uniform(0, min(2.0, 0.05 * 2 ** k)) for k in range(8)], key=f"req-{call}")
    assert not of_rule(hardened.findings(), "retry-no-backoff")


def test_legacy_mode_and_many_configured_attempts() -> None:
    fragile = History()
    fragile.call(fragile.client("7-c1", mode="legacy", attempts=10))
    found = fragile.findings()
    assert [f.severity for f in of_rule(found, "retry-legacy")] == ["medium"]
    (many,) = of_rule(found, "retry-max-attempts")
    assert "up to 10" in many.evidence

    for mode, attempts in (("standard", 3), ("legacy", 1)):  # legacy with retries off retries nothing
        hardened = History()
        hardened.call(hardened.client("7-c1", mode=mode, attempts=attempts))
        found = hardened.findings()
        assert not of_rule(found, "retry-legacy") and not of_rule(found, "retry-max-attempts")


# --- timeouts ------------------------------------------------------------------------------------

@pytest.mark.parametrize(("connect", "read", "severity"), [
    (60.0, 60.0, "high"), (2.0, 60.0, "medium"), (30.0, 5.0, "medium"), (2.0, 5.0, None), (10.0, 10.0, None)])
def test_timeouts_above_ten_seconds_are_missing(connect: float, read: float, severity: str | None) -> None:
    history = History()
    history.call(history.client("7-c1", connect=connect, read=read))
    found = of_rule(history.findings(), "timeouts-missing")
    assert [f.severity for f in found] == ([severity] if severity else [])
    if connect == read == 60.0:
        assert "connect 60 s (botocore default), read 60 s (botocore default)" in found[0].evidence


# --- control plane ---------------------------------------------------------------------------------

def test_describe_table_before_every_write_is_control_plane_on_the_data_path() -> None:
    fragile = History()
    client = fragile.client("7-c1", connect=2, read=5)
    fragile.call(client, "CreateTable")
    for _ in range(4):
        fragile.call(client, "DescribeTable")
        fragile.call(client, "PutItem")
    (finding,) = of_rule(fragile.findings(), "control-plane")
    assert finding.id == "control-plane:dynamodb:us-east-1"
    assert "DescribeTable x3 made between data-plane calls (PutItem x4)" in finding.evidence

    hardened = History()  # the table is checked once, at start-up
    client = hardened.client("7-c1", connect=2, read=5)
    hardened.call(client, "CreateTable")
    hardened.call(client, "DescribeTable")
    for _ in range(4):
        hardened.call(client, "PutItem")
    assert not of_rule(hardened.findings(), "control-plane")


def test_sts_on_every_request_is_control_plane_too() -> None:
    history = History()
    db = history.client("7-c1", connect=2, read=5)
    sts = history.client("7-c2", api="sts", connect=2, read=5)
    for _ in range(3):
        history.call(sts, "AssumeRole", api="sts")
        history.call(db, "GetItem")
    assert ids(of_rule(history.findings(), "control-plane")) == {"control-plane:sts:us-east-1"}


def test_the_catalogue() -> None:
    assert is_control_plane("dynamodb", "DescribeTable") and not is_control_plane("dynamodb", "Query")
    assert is_control_plane("route-53", "ChangeResourceRecordSets") and is_control_plane("ec2", "RunInstances")
    assert is_control_plane("lambda", "UpdateFunctionCode") and not is_control_plane("lambda", "Invoke")
    assert service_and_region("dynamodb.us-east-1.amazonaws.com") == ("dynamodb", "us-east-1")
    assert service_and_region("dynamodb-fips.us-gov-west-1.amazonaws.com.") == ("dynamodb", "us-gov-west-1")
    assert service_and_region("dynamodb.eu-west-1.api.aws") == ("dynamodb", "eu-west-1")
    assert service_and_region("sts.amazonaws.com") == ("sts", "us-east-1")
    assert service_and_region("example.com") == ("", "")


# --- what only the lab's logs saw ----------------------------------------------------------------

def q(name: str, answers: int = 1, qtype: str = "A", client: str = "127.0.0.100") -> DnsQuery:
    return DnsQuery(T, client, name + ".", qtype, "NOERROR", answers)


def test_a_name_no_hooked_client_uses_is_a_dns_only_dependency() -> None:
    history = History()
    history.call(history.client("7-c1", connect=2, read=5))
    dns = (q("dynamodb.us-east-1.amazonaws.com"), q("dynamodb.us-east-1.amazonaws.com", 0, "AAAA"),
           q("dynamodb.us-east-1.amazonaws.com", 0), q("sqs.eu-west-1.amazonaws.com"))
    deps = history.deps(dns=dns)
    hooked = next(d for d in deps if d.seen_by == CALL_LOG)
    assert (hooked.dns_queries, hooked.dns_empty) == (3, 1)  # the empty AAAA of an IPv4 name is not a failure
    (only,) = [d for d in deps if d.seen_by == DNS_LOG]
    assert (only.key, only.host) == ("sqs@eu-west-1", "sqs.eu-west-1.amazonaws.com")
    found = rules.findings(deps)
    (low,) = of_rule(found, "dependency-uninstrumented")
    assert low.id == "dependency-uninstrumented:sqs:eu-west-1" and low.severity == "low"
    assert "endpoint-single:sqs:eu-west-1" in ids(found)


def test_lb_requests_beyond_the_logged_attempts_are_an_lb_only_dependency() -> None:
    history = History()
    client = history.client("7-c1", connect=2, read=5)
    history.call(client, "PutItem", attempts=2, dns=True, ok=True)  # one attempt never reached an LB
    history.call(client, "GetItem")
    lb = tuple(LbRequest(T, "127.0.0.1", lb="lb-1", operation=op) for op in ("PutItem", "GetItem"))
    assert not [d for d in history.deps(lb=lb) if d.seen_by == LB_LOG]
    extra = lb + (LbRequest(T, "127.0.0.1", lb="lb-2", operation="Scan"), LbRequest(T, "127.0.0.1", lb="lb-2", operation="Scan"))
    (only,) = [d for d in history.deps(lb=extra) if d.seen_by == LB_LOG]
    assert dict(only.operations) == {"Scan": 2}


# --- ids ----------------------------------------------------------------------------------------

def test_one_finding_per_rule_and_dependency_whatever_the_hosts() -> None:
    """Two endpoints of one service and region (regional and FIPS) make one finding per rule."""
    history = History()
    history.call(history.client("7-c1"))
    history.call(history.client("7-c2", host="dynamodb-fips.us-east-1.amazonaws.com", site="app.py:20"))
    found = history.findings()
    assert len(ids(found)) == len(found)
    (timeouts,) = of_rule(found, "timeouts-missing")
    assert set(timeouts.locations) == {"app.py:10", "app.py:20"}
    again = History()
    again.call(again.client("7-c1"))
    again.call(again.client("7-c2", host="dynamodb-fips.us-east-1.amazonaws.com", site="app.py:20"))
    assert [f.id for f in again.findings()] == [f.id for f in found]
