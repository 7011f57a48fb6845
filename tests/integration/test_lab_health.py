"""Route 53 health checks on the session lab, for real: boto3 through the lab's front,
checkers probing the LB fleet on loopback, and the lab DNS answering by health.

Every test cleans up: its records and health checks are deleted and the LB faults it set
are cleared, so the shared lab is as it was.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from chaos_dynamo.clock import wait_until
from chaos_dynamo.dns.client import query
from chaos_dynamo.lab.lab import Lab
from chaos_dynamo.lab.state import LabInfo
from chaos_dynamo.route53.backend import make_client
from tests.conftest import control

pytestmark = pytest.mark.integration

REGIONS = ["us-east-1", "us-west-1", "us-west-2"]
WAIT = 15.0  # generous: checks run every second at the default speedup


class Scratch:
    """Health checks, records and LB faults one test makes, undone at the end."""

    def __init__(self, lab: Lab, info: LabInfo) -> None:
        self.lab, self.info = lab, info
        self.r53 = make_client("route53", info.api_url, info.region)
        self.zone = f"{info.region}.amazonaws.com"
        self.zone_id = info.zones[self.zone]
        self.checks: list[str] = []
        self.records: list[dict[str, Any]] = []
        self.faulted: set[str] = set()
        self.tag = uuid.uuid4().hex[:6]

    def lb(self, index: int) -> dict[str, Any]:
        return dict(self.info.load_balancers[index])

    def name(self, label: str) -> str:
        return f"{label}-{self.tag}.{self.zone}"

    def http_check(self, lb: dict[str, Any], **extra: Any) -> str:
        config = {"Type": "HTTP", "IPAddress": lb["address"], "Port": self.info.lb_port,
                  "ResourcePath": "/_lb/health", "RequestInterval": 10, "FailureThreshold": 1,
                  "Regions": REGIONS, **extra}
        return self.create_check(config)

    def create_check(self, config: dict[str, Any]) -> str:
        created = self.r53.create_health_check(CallerReference=f"t-{uuid.uuid4()}", HealthCheckConfig=config)
        check_id = str(created["HealthCheck"]["Id"])
        self.checks.append(check_id)
        return check_id

    def delete_check(self, check_id: str) -> None:
        self.r53.delete_health_check(HealthCheckId=check_id)
        self.checks.remove(check_id)

    def create_records(self, *records: dict[str, Any]) -> None:
        self.change([{"Action": "CREATE", "ResourceRecordSet": r} for r in records])
        self.records.extend(records)

    def change(self, changes: list[dict[str, Any]]) -> None:
        change = self.r53.change_resource_record_sets(HostedZoneId=self.zone_id, ChangeBatch={"Changes": changes})
        waiter = self.r53.get_waiter("resource_record_sets_changed")
        waiter.wait(Id=change["ChangeInfo"]["Id"], WaiterConfig={"Delay": 0.05, "MaxAttempts": 200})

    def fault(self, lb: dict[str, Any], body: dict[str, Any]) -> None:
        self.faulted.add(lb["name"])
        status, answer = control(self.info, f"lb/{lb['name']}/faults", body)
        assert status == 200, answer

    def healthy(self, check_id: str) -> bool | None:
        return self.lab.health.evaluator.status(check_id) if self.lab.health else None

    def wait_status(self, check_id: str, healthy: bool) -> None:
        assert wait_until(lambda: self.healthy(check_id) is healthy, timeout=WAIT, interval=0.05), \
            (check_id, healthy, self.health_row(check_id))

    def health_row(self, check_id: str) -> dict[str, Any]:
        status, health = control(self.info, "route53/health")
        assert status == 200
        rows = [c for c in health["checks"] if c["id"] == check_id]
        assert len(rows) == 1, health
        return dict(rows[0])

    def answers(self, name: str, since: float) -> list[dict[str, Any]]:
        status, answers = control(self.info, f"route53/answers?name={name}&since={since}")
        assert status == 200, answers
        return list(answers)

    def wait_addresses(self, name: str, addresses: set[str]) -> None:
        """The DNS switches after a status change (the runner tells the lab, which swaps its
        answers under the publish lock): wait for the answer, never assert it at once."""
        assert wait_until(lambda: self.addresses(name) == addresses, timeout=5, interval=0.02), \
            (name, addresses, self.addresses(name))

    def addresses(self, name: str, times: int = 1) -> set[str]:
        seen: set[str] = set()
        for _ in range(times):
            seen.update(query(self.info.dns, name, "A", timeout=2).addresses)
        return seen

    def cleanup(self) -> None:
        for lb in sorted(self.faulted):
            control(self.info, f"lb/{lb}/faults", {"unhealthy": False, "down": False})
        if self.records:
            self.change([{"Action": "DELETE", "ResourceRecordSet": r} for r in self.records])
        for check_id in list(self.checks):
            self.delete_check(check_id)


@pytest.fixture
def scratch(lab: Lab, lab_info: LabInfo) -> Iterator[Scratch]:
    made = Scratch(lab, lab_info)
    try:
        yield made
    finally:
        made.cleanup()


def a_record(name: str, address: str, **extra: Any) -> dict[str, Any]:
    return {"Name": name, "Type": "A", "TTL": 5, "ResourceRecords": [{"Value": address}], **extra}


def test_failover_and_weighted_follow_the_health_of_their_targets(scratch: Scratch) -> None:
    lb_a, lb_b = scratch.lb(0), scratch.lb(1)
    check_a, check_b = scratch.http_check(lb_a), scratch.http_check(lb_b)
    fo, weighted = scratch.name("fo"), scratch.name("w")
    scratch.create_records(
        a_record(fo, lb_a["address"], SetIdentifier="p", Failover="PRIMARY", HealthCheckId=check_a),
        a_record(fo, lb_b["address"], SetIdentifier="s", Failover="SECONDARY", HealthCheckId=check_b),
        a_record(weighted, lb_a["address"], SetIdentifier="a", Weight=1, HealthCheckId=check_a),
        a_record(weighted, lb_b["address"], SetIdentifier="b", Weight=1, HealthCheckId=check_b),
    )
    r53 = scratch.r53
    assert wait_until(lambda: len(scratch.health_row(check_a)["observations"]) == 3, timeout=WAIT)
    observations = r53.get_health_check_status(HealthCheckId=check_a)["HealthCheckObservations"]
    assert sorted(o["Region"] for o in observations) == REGIONS
    assert {o["StatusReport"]["Status"] for o in observations} == {"Success: HTTP Status Code 200, OK"}
    assert {o["IPAddress"] for o in observations} == {"127.0.0.1"}
    assert scratch.addresses(fo) == {lb_a["address"]}
    assert scratch.addresses(weighted, times=20) == {lb_a["address"], lb_b["address"]}
    fo_key = fo.rstrip(".")
    since = scratch.lab.clock.now()

    # Unhealthy: /_lb/health answers 503 while traffic still flows.
    scratch.fault(lb_a, {"unhealthy": True})
    scratch.wait_status(check_a, False)
    observations = r53.get_health_check_status(HealthCheckId=check_a)["HealthCheckObservations"]
    assert {o["StatusReport"]["Status"] for o in observations} == {
        "Failure: HTTP Status Code 503, Service Unavailable"}
    failures = r53.get_health_check_last_failure_reason(HealthCheckId=check_a)["HealthCheckObservations"]
    assert sorted(o["Region"] for o in failures) == REGIONS
    scratch.wait_addresses(fo, {lb_b["address"]})
    # One switch of the whole answer table: the weighted name switched with fo.
    assert scratch.addresses(weighted, times=20) == {lb_b["address"]}
    # The entry is written just after the switch (same lock): wait for it too.
    assert wait_until(lambda: scratch.answers(fo_key, since)[-1]["roles"] == ["SECONDARY"], timeout=5)
    answers = scratch.answers(fo_key, since)
    assert answers[0]["time"] < since and answers[0]["roles"] == ["PRIMARY"]  # in effect at `since`
    assert {"time": answers[-1]["time"], "name": fo_key, "addresses": [lb_b["address"]], "roles": ["SECONDARY"],
            "cause": "health"} == answers[-1]
    status, log = control(scratch.info, f"route53/health/log?since={since}")
    assert [(e["id"], e["healthy"]) for e in log if e["id"] == check_a] == [(check_a, False)]
    assert "503" in next(e["reason"] for e in log if e["id"] == check_a)

    # Healthy again, then down (connections refused).
    scratch.fault(lb_a, {"unhealthy": False})
    scratch.wait_status(check_a, True)
    scratch.wait_addresses(fo, {lb_a["address"]})
    scratch.fault(lb_a, {"down": True})
    scratch.wait_status(check_a, False)
    statuses = {o["StatusReport"]["Status"] for o in
                r53.get_health_check_status(HealthCheckId=check_a)["HealthCheckObservations"]}
    assert all(s.startswith("Failure: Connection refused") for s in statuses), statuses
    scratch.wait_addresses(fo, {lb_b["address"]})
    scratch.fault(lb_a, {"down": False})
    scratch.wait_status(check_a, True)
    scratch.wait_addresses(fo, {lb_a["address"]})

    status, log = control(scratch.info, f"route53/health/log?since={since}")
    assert [e["healthy"] for e in log if e["id"] == check_a] == [False, True, False, True]
    want = [["SECONDARY"], ["PRIMARY"], ["SECONDARY"], ["PRIMARY"]]
    assert wait_until(lambda: [e["roles"] for e in scratch.answers(fo_key, since)[1:]] == want, timeout=5), \
        scratch.answers(fo_key, since)
    assert {e["cause"] for e in scratch.answers(fo_key, since)[1:]} == {"health"}


def test_failure_threshold_counts_consecutive_failures(scratch: Scratch, lab: Lab) -> None:
    lb = scratch.lb(2)
    check = scratch.http_check(lb, FailureThreshold=3)
    assert wait_until(lambda: len(scratch.health_row(check)["observations"]) == 3, timeout=WAIT)
    counters = lab.fleet[lb["name"]].counters if lab.fleet else None
    assert counters is not None
    before = counters().get("health_checks", 0)
    scratch.fault(lb, {"unhealthy": True})
    all_failing_but_healthy = False
    while scratch.healthy(check):
        row = scratch.health_row(check)
        if row["healthy"] and all(not o["ok"] for o in row["observations"]):
            all_failing_but_healthy = True
        assert counters().get("health_checks", 0) - before < 40, "never turned unhealthy"
        lab.clock.sleep(0.05)
    probes = counters().get("health_checks", 0) - before
    # Each of the 3 checkers needs 3 consecutive failures: at least 9 failing probes (one
    # may have straddled the fault).
    assert probes >= 8, probes
    assert all_failing_but_healthy  # with FailureThreshold 1 the check would have flipped


def test_inverted_calculated_tcp_str_match_and_disabled(scratch: Scratch) -> None:
    lb_x, lb_y = scratch.lb(3), scratch.lb(4)
    port = scratch.info.lb_port
    inverted = scratch.http_check(lb_x, Inverted=True)
    child_x, child_y = scratch.http_check(lb_x), scratch.http_check(lb_y)
    calculated = scratch.create_check({"Type": "CALCULATED", "ChildHealthChecks": [child_x, child_y],
                                       "HealthThreshold": 2})
    tcp = scratch.create_check({"Type": "TCP", "IPAddress": lb_x["address"], "Port": port,
                                "RequestInterval": 10, "FailureThreshold": 1, "Regions": REGIONS})
    match = scratch.http_check(lb_x, Type="HTTP_STR_MATCH", SearchString=f'"name": "{lb_x["name"]}"')
    no_match = scratch.http_check(lb_x, Type="HTTP_STR_MATCH", SearchString="no such text")
    disabled = scratch.http_check(lb_x, Disabled=True)

    scratch.wait_status(no_match, False)
    assert "Search string not found" in scratch.health_row(no_match)["observations"][0]["status"]
    assert wait_until(lambda: len(scratch.health_row(match)["observations"]) == 3, timeout=WAIT)
    assert scratch.healthy(match) is True and scratch.healthy(inverted) is False
    assert scratch.healthy(calculated) is True and scratch.healthy(tcp) is True
    assert scratch.health_row(tcp)["observations"][0]["status"] == "Success: TCP connection established"

    scratch.fault(lb_x, {"unhealthy": True})  # HTTP answers 503; TCP still connects
    scratch.wait_status(inverted, True)
    scratch.wait_status(calculated, False)
    assert scratch.healthy(tcp) is True
    scratch.wait_status(match, False)

    def calculated_went_unhealthy() -> list[str]:
        _, log = control(scratch.info, "route53/health/log")
        return [e["reason"] for e in log if e["id"] == calculated and not e["healthy"]]

    # The log is written after the status changes (with the DNS switch): wait for it.
    assert wait_until(calculated_went_unhealthy, timeout=5)
    reason = calculated_went_unhealthy()[-1]
    assert reason.startswith("Calculated: 1 of 2 child health checks healthy"), reason

    scratch.fault(lb_x, {"down": True})
    scratch.wait_status(tcp, False)
    assert scratch.health_row(tcp)["observations"][0]["status"].startswith("Failure: Connection refused")
    row = scratch.health_row(disabled)
    assert row["healthy"] is True and row["disabled"] is True and row["observations"] == []
    # A disabled check reports its checkers' results from before it was disabled: none here.
    assert scratch.r53.get_health_check_status(HealthCheckId=disabled)["HealthCheckObservations"] == []

    # AWS: neither status call can be used for a calculated health check.
    for call in (scratch.r53.get_health_check_status, scratch.r53.get_health_check_last_failure_reason):
        with pytest.raises(ClientError) as caught:
            call(HealthCheckId=calculated)
        error = caught.value.response["Error"]
        assert error["Code"] == "InvalidInput", error
        assert "can't be used for calculated health checks" in error["Message"]
        assert "/_chaos_dynamo/route53/health" in error["Message"]
        assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400


def test_checks_stored_behind_the_labs_back_are_not_evaluated(scratch: Scratch, lab: Lab) -> None:
    """Checks the lab would refuse, written to the emulator directly (as on an external
    backend): no checkers, healthy, shown as not evaluated with the reason."""
    emulator = make_client("route53", lab.emulator_url, scratch.info.region)
    http = {"Port": scratch.info.lb_port, "RequestInterval": 10, "FailureThreshold": 1, "Regions": REGIONS}
    behind: dict[str, str] = {}
    for label, config in {
        "HTTPS": {**http, "Type": "HTTPS", "IPAddress": scratch.lb(0)["address"]},
        "CLOUDWATCH_METRIC": {"Type": "CLOUDWATCH_METRIC", "InsufficientDataHealthStatus": "Unhealthy",
                              "AlarmIdentifier": {"Region": "us-east-1", "Name": "alarm"}},
        "192.0.2.10": {**http, "Type": "HTTP", "IPAddress": "192.0.2.10"},
    }.items():
        created = emulator.create_health_check(CallerReference=f"behind-{uuid.uuid4()}", HealthCheckConfig=config)
        behind[label] = str(created["HealthCheck"]["Id"])
        scratch.checks.append(behind[label])
    evaluated = scratch.http_check(scratch.lb(0))  # through the lab: it re-reads every check
    fo = scratch.name("behind")
    scratch.create_records(
        a_record(fo, scratch.lb(0)["address"], SetIdentifier="p", Failover="PRIMARY",
                 HealthCheckId=behind["192.0.2.10"]),
        a_record(fo, scratch.lb(1)["address"], SetIdentifier="s", Failover="SECONDARY"),
    )
    # Long enough for every checker of every check to have run once.
    assert wait_until(lambda: len(scratch.health_row(evaluated)["observations"]) == 3, timeout=WAIT)
    for label, check_id in behind.items():
        row = scratch.health_row(check_id)
        assert (row["evaluated"], row["healthy"], row["observations"]) == (False, True, []), row
        assert label in row["not_evaluated_reason"] and "counts as healthy" in row["not_evaluated_reason"]
    row = scratch.health_row(evaluated)
    assert (row["evaluated"], row["not_evaluated_reason"]) == (True, None)
    not_evaluated = lab.status()["health_checks"]["not_evaluated"]
    assert set(behind.values()) <= set(not_evaluated)
    assert "not a loopback address" in not_evaluated[behind["192.0.2.10"]]
    assert scratch.addresses(fo) == {scratch.lb(0)["address"]}  # PRIMARY: its check counts healthy


def test_fqdn_checks_resolve_through_the_lab_dns_only(scratch: Scratch) -> None:
    lb = scratch.lb(5)
    served = scratch.name("target")
    scratch.create_records(a_record(served, lb["address"]))
    by_name = scratch.create_check({"Type": "HTTP", "FullyQualifiedDomainName": served.rstrip("."),
                                    "Port": scratch.info.lb_port, "ResourcePath": "/_lb/health",
                                    "RequestInterval": 10, "FailureThreshold": 1, "Regions": REGIONS})
    unknown = scratch.create_check({"Type": "HTTP", "FullyQualifiedDomainName": "nowhere.example.org",
                                    "Port": scratch.info.lb_port, "RequestInterval": 10,
                                    "FailureThreshold": 1, "Regions": REGIONS})
    scratch.wait_status(unknown, False)
    assert "name not served by the lab" in scratch.health_row(unknown)["observations"][0]["status"]
    assert wait_until(lambda: len(scratch.health_row(by_name)["observations"]) == 3, timeout=WAIT)
    assert scratch.health_row(by_name)["observations"][0]["status"] == "Success: HTTP Status Code 200, OK"


def test_the_lab_refuses_health_checks_it_cannot_run(scratch: Scratch) -> None:
    before = scratch.r53.list_health_checks()["HealthChecks"]
    base = {"Type": "HTTP", "IPAddress": scratch.lb(0)["address"], "Port": scratch.info.lb_port}
    cases: list[tuple[dict[str, Any], str]] = [
        ({"IPAddress": "10.1.2.3"}, "IPAddress"), ({"RequestInterval": 15}, "requestInterval"),
        ({"Type": "HTTPS"}, "HTTPS"), ({"Type": "HTTP_STR_MATCH"}, "SearchString")]
    for change, field in cases:
        with pytest.raises(ClientError) as caught:
            scratch.create_check({**base, **change})
        error = caught.value.response["Error"]
        assert error["Code"] == "InvalidInput" and field.lower() in error["Message"].lower(), error
        assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert scratch.r53.list_health_checks()["HealthChecks"] == before

    check = scratch.http_check(scratch.lb(0))
    with pytest.raises(ClientError) as caught:
        scratch.r53.update_health_check(HealthCheckId=check, IPAddress="192.0.2.7")
    assert caught.value.response["Error"]["Code"] == "InvalidInput"
    scratch.r53.update_health_check(HealthCheckId=check, FailureThreshold=2)
    row = scratch.health_row(check)
    # moto drops Regions left out of an update; the lab keeps evaluating what was asked for.
    assert row["failure_threshold"] == 2 and row["regions"] == REGIONS
    with pytest.raises(ClientError) as caught:
        scratch.r53.get_health_check_status(HealthCheckId="no-such-check")
    assert caught.value.response["Error"]["Code"] == "NoSuchHealthCheck"
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


def test_a_change_naming_an_unknown_health_check_changes_nothing(scratch: Scratch) -> None:
    def records() -> list[dict[str, Any]]:
        pages = scratch.r53.get_paginator("list_resource_record_sets").paginate(HostedZoneId=scratch.zone_id)
        return [r for page in pages for r in page["ResourceRecordSets"]]

    before = records()
    name = scratch.name("unknown-check")
    with pytest.raises(ClientError) as caught:
        scratch.r53.change_resource_record_sets(HostedZoneId=scratch.zone_id, ChangeBatch={"Changes": [
            {"Action": "CREATE", "ResourceRecordSet": a_record(name, "127.0.0.11")},
            {"Action": "CREATE", "ResourceRecordSet": a_record(scratch.name("x"), "127.0.0.12", SetIdentifier="x",
                                                                Weight=1, HealthCheckId="no-such-check")},
        ]})
    error = caught.value.response["Error"]
    assert error == {"Type": "Sender", "Code": "NoSuchHealthCheck",
                     "Message": "No health check exists with the specified ID no-such-check"}
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    assert records() == before


def test_deleting_a_health_check_makes_its_records_healthy(scratch: Scratch) -> None:
    lb_a, lb_b = scratch.lb(0), scratch.lb(1)
    check = scratch.http_check(lb_a)
    fo = scratch.name("gone")
    scratch.create_records(
        a_record(fo, lb_a["address"], SetIdentifier="p", Failover="PRIMARY", HealthCheckId=check),
        a_record(fo, lb_b["address"], SetIdentifier="s", Failover="SECONDARY"),
    )
    scratch.fault(lb_a, {"unhealthy": True})
    scratch.wait_status(check, False)
    assert wait_until(lambda: scratch.addresses(fo) == {lb_b["address"]}, timeout=5)
    since = scratch.lab.clock.now()
    scratch.delete_check(check)
    assert scratch.healthy(check) is None
    assert scratch.addresses(fo) == {lb_a["address"]}  # at once: the delete call refreshed the lab
    _, log = control(scratch.info, f"route53/health/log?since={since}")
    assert [(e["id"], e["healthy"]) for e in log] == [(check, True)]
    assert log[0]["reason"].startswith("deleted")


def test_changes_route_and_status_summary(scratch: Scratch, lab: Lab) -> None:
    since = lab.clock.now()
    name = scratch.name("hist")
    scratch.create_records(a_record(name, scratch.lb(0)["address"]))
    status, changes = control(scratch.info, f"route53/changes?name={name}&since={since}")
    assert status == 200 and len(changes) == 1
    entry = changes[0]
    assert entry["zone_id"] == scratch.zone_id and entry["time"] >= since
    assert entry["changes"] == [{"action": "CREATE", "name": name.rstrip("."), "type": "A",
                                 "set_identifier": None}]
    status, other = control(scratch.info, f"route53/changes?name=nothing.example.com&since={since}")
    assert (status, other) == (200, [])
    status, answers = control(scratch.info, f"route53/answers?name={name.upper()}.")
    assert [(a["addresses"], a["cause"]) for a in answers] == [([scratch.lb(0)["address"]], "change")]
    assert control(scratch.info, "route53/answers?name=nothing.example.com") == (200, [])
    assert control(scratch.info, "route53/answers?since=soon")[0] == 400

    check = scratch.http_check(scratch.lb(0))
    summary = lab.status()["health_checks"]
    assert summary["speedup"] == 10.0 and summary["total"] >= 1
    assert {"probes", "failures", "skipped", "in_flight"} <= set(summary["counters"])
    assert scratch.info.health_check_speedup == 10.0
    text = lab.metrics_text()
    assert "chaos_dynamo_route53_health_checks " in text
    assert "chaos_dynamo_route53_health_checker_probes_total " in text
    assert check in {c["id"] for c in control(scratch.info, "route53/health")[1]["checks"]}
