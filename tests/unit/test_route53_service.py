"""Route53Service coordination over an in-memory backend: propagation, resync, failures."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from chaos_dynamo.errors import AwsError, InvalidChangeBatch, LabError
from chaos_dynamo.route53.healthchecks import CheckResult, HealthCheckConfig, HealthEvaluator
from chaos_dynamo.route53.records import RecordKey, RecordSet, ZoneSnapshot
from chaos_dynamo.route53.rules import Change
from chaos_dynamo.route53.service import HealthCheckService, Route53Service

SOA = RecordSet("example.com.", "SOA", ttl=900, values=("ns. host. 1 7200 900 1209600 86400",))
NS = RecordSet("example.com.", "NS", ttl=172800, values=("ns-1.example.net.",))


class MemoryBackend:
    endpoint_url = "memory://"

    def __init__(self) -> None:
        self.zones: dict[str, tuple[str, dict[RecordKey, RecordSet]]] = {
            "Z1": ("example.com.", {SOA.key: SOA, NS.key: NS})}
        self.fail_converge = 0
        self.assumed_calls = 0
        self.lists = 0

    def list_zones(self) -> list[tuple[str, str]]:
        return [(zid, name) for zid, (name, _) in self.zones.items()]

    def list_records(self, zone_id: str) -> list[RecordSet]:
        self.lists += 1
        return list(self.zones[zone_id][1].values())

    def converge(self, zone_id: str, target: dict[RecordKey, RecordSet],
                 assumed: dict[RecordKey, RecordSet] | None = None) -> int:
        self.assumed_calls += assumed is not None
        if self.fail_converge:
            self.fail_converge -= 1
            # Half-written, as a crashing emulator would leave it.
            self.zones[zone_id][1].update(list(target.items())[:1])
            raise ConnectionError("emulator went away")
        self.zones[zone_id] = (self.zones[zone_id][0], dict(target))
        return 0


class Recorder:
    def __init__(self, fail: bool = False) -> None:
        self.snapshots: list[ZoneSnapshot] = []
        self.removed: list[str] = []
        self.fail = fail

    def publish(self, snapshot: ZoneSnapshot) -> None:
        if self.fail:
            raise RuntimeError("dns broke")
        self.snapshots.append(snapshot)

    def remove(self, zone_id: str) -> None:
        self.removed.append(zone_id)


def service(backend: MemoryBackend, recorder: Recorder, delay: float = 0.0) -> Route53Service:
    return Route53Service(backend, recorder.publish, remove=recorder.remove,  # type: ignore[arg-type]
                          propagation_delay=delay, seed=1)


def a_record(value: str) -> Change:
    return Change("UPSERT", RecordSet("www.example.com.", "A", ttl=5, values=(value,)))


def test_change_publishes_then_goes_insync_and_ids_are_unique() -> None:
    backend, recorder = MemoryBackend(), Recorder()
    svc = service(backend, recorder)
    try:
        first = svc.change("Z1", [a_record("192.0.2.1")])
        second = svc.change("/hostedzone/Z1", [a_record("192.0.2.2")])
        assert first.change_id != second.change_id
        assert svc.wait_insync(second.change_id, timeout=10)
        assert recorder.snapshots[-1].records[-1].values == ("192.0.2.2",)
        assert svc.counters["accepted"] == 2
    finally:
        svc.close()


def test_rejected_batch_changes_nothing() -> None:
    backend, recorder = MemoryBackend(), Recorder()
    svc = service(backend, recorder)
    try:
        with pytest.raises(InvalidChangeBatch):
            svc.change("Z1", [a_record("192.0.2.1"), Change("DELETE", RecordSet("nope.example.com.", "A", ttl=5,
                                                                                 values=("192.0.2.9",)))])
        assert set(backend.zones["Z1"][1]) == {SOA.key, NS.key}
        assert svc.counters["rejected"] == 1 and recorder.snapshots == []
    finally:
        svc.close()


def test_emulator_failure_rolls_the_batch_back() -> None:
    backend, recorder = MemoryBackend(), Recorder()
    svc = service(backend, recorder)
    try:
        backend.fail_converge = 1
        with pytest.raises(LabError, match="rolled back"):
            svc.change("Z1", [a_record("192.0.2.1")])
        assert set(backend.zones["Z1"][1]) == {SOA.key, NS.key}
        assert svc.counters["emulator_errors"] == 1 and svc.counters["accepted"] == 0
    finally:
        svc.close()


def test_resync_publishes_changes_made_elsewhere_once_and_forgets_deleted_zones() -> None:
    backend, recorder = MemoryBackend(), Recorder()
    svc = service(backend, recorder)
    try:
        assert svc.resync() == 1
        assert svc.resync() == 0  # unchanged: not republished, the DNS keeps its cache
        direct = RecordSet("direct.example.com.", "A", ttl=5, values=("192.0.2.5",))
        backend.zones["Z1"][1][direct.key] = direct
        assert svc.resync() == 1
        assert direct in recorder.snapshots[-1].records
        del backend.zones["Z1"]
        svc.resync()
        assert recorder.removed == ["Z1"]
    finally:
        svc.close()


def test_resync_leaves_zones_with_changes_in_flight_alone() -> None:
    backend, recorder = MemoryBackend(), Recorder()
    svc = service(backend, recorder, delay=30.0)
    try:
        change = svc.change("Z1", [a_record("192.0.2.1")])
        assert svc.resync() == 0  # publishing now would skip the propagation delay
        assert not svc.is_insync(change.change_id)
    finally:
        svc.close()


def test_a_failing_publish_is_counted_and_does_not_stop_propagation() -> None:
    backend, recorder = MemoryBackend(), Recorder(fail=True)
    svc = service(backend, recorder)
    try:
        first = svc.change("Z1", [a_record("192.0.2.1")])
        assert not svc.wait_insync(first.change_id, timeout=0.5)
        assert svc.counters["publish_errors"] == 1
        recorder.fail = False
        second = svc.change("Z1", [a_record("192.0.2.2")])
        assert svc.wait_insync(second.change_id, timeout=10)
    finally:
        svc.close()



def test_sync_zones_reads_only_new_zones() -> None:
    backend, recorder = MemoryBackend(), Recorder()
    svc = service(backend, recorder)
    try:
        assert svc.sync_zones() == 1
        backend.zones["Z2"] = ("other.com.", {})
        calls: list[str] = []
        original = backend.list_records
        backend.list_records = lambda zone_id: calls.append(zone_id) or original(zone_id)  # type: ignore[method-assign]
        assert svc.sync_zones() == 1
        assert calls == ["Z2"]
        del backend.zones["Z1"]
        svc.sync_zones()
        assert recorder.removed == ["Z1"]
    finally:
        svc.close()


def test_as_sole_writer_it_reads_a_zone_once_then_trusts_what_it_wrote() -> None:
    backend, recorder = MemoryBackend(), Recorder()
    svc = Route53Service(backend, recorder.publish, propagation_delay=0.0, seed=1,  # type: ignore[arg-type]
                         sole_writer=True)
    try:
        svc.change("Z1", [a_record("192.0.2.1")])
        lists_after_first = backend.lists
        svc.change("Z1", [a_record("192.0.2.2")])
        assert backend.lists == lists_after_first  # no read before the second write
        assert backend.assumed_calls == 1
        backend.fail_converge = 1
        with pytest.raises(LabError):
            svc.change("Z1", [a_record("192.0.2.3")])
        svc.change("Z1", [a_record("192.0.2.4")])  # after a failure it reads the zone again
        assert backend.lists > lists_after_first
        assert backend.zones["Z1"][1][("www.example.com.", "A", None)].values == ("192.0.2.4",)
    finally:
        svc.close()


# --- health checks ---------------------------------------------------------------------------

def test_a_record_naming_an_unknown_health_check_is_refused_whole() -> None:
    backend, recorder = MemoryBackend(), Recorder()
    svc = Route53Service(backend, recorder.publish, propagation_delay=0.0,  # type: ignore[arg-type]
                         health_check_known=lambda check_id: check_id == "known")
    checked = RecordSet("w.example.com.", "A", ttl=5, values=("192.0.2.1",), set_identifier="a", weight=1,
                        health_check_id="known")
    try:
        with pytest.raises(AwsError) as caught:
            svc.change("Z1", [a_record("192.0.2.9"), Change("CREATE", checked),
                              Change("UPSERT", replace(checked, set_identifier="b", health_check_id="gone"))])
        assert (caught.value.code, caught.value.aws_message) == (
            "NoSuchHealthCheck", "No health check exists with the specified ID gone")
        assert set(backend.zones["Z1"][1]) == {SOA.key, NS.key} and svc.counters["rejected"] == 1
        svc.change("Z1", [Change("CREATE", checked)])
        assert checked.key in backend.zones["Z1"][1]
    finally:
        svc.close()


def test_deleting_a_record_whose_health_check_is_gone_is_allowed() -> None:
    backend, recorder = MemoryBackend(), Recorder()
    known = {"hc"}
    svc = Route53Service(backend, recorder.publish, propagation_delay=0.0,  # type: ignore[arg-type]
                         health_check_known=lambda check_id: check_id in known)
    record = RecordSet("w.example.com.", "A", ttl=5, values=("192.0.2.1",), set_identifier="a", weight=1,
                       health_check_id="hc")
    try:
        svc.change("Z1", [Change("CREATE", record)])
        known.clear()
        svc.change("Z1", [Change("DELETE", record)])
        assert record.key not in backend.zones["Z1"][1]
    finally:
        svc.close()


class FakeChecks:
    """The emulator's health checks, as moto keeps them (its update drops Regions)."""

    def __init__(self) -> None:
        self.items: dict[str, dict[str, Any]] = {}
        self.lists = 0

    def list(self) -> list[dict[str, Any]]:
        self.lists += 1
        return [{"Id": k, "CallerReference": f"ref-{k}", "HealthCheckConfig": dict(v)} for k, v in self.items.items()]


HTTP = {"Type": "HTTP", "IPAddress": "127.0.0.11", "Port": 8080, "ResourcePath": "/h", "RequestInterval": 10,
        "Regions": ["us-east-1", "us-west-1", "us-west-2"]}


def test_health_check_service_checks_creates_and_merges_updates() -> None:
    emulator = FakeChecks()
    configured: list[list[HealthCheckConfig]] = []
    checks = HealthCheckService(emulator.list, configured.append)
    with pytest.raises(AwsError, match="loopback addresses only"):
        checks.check_create("r", {**HTTP, "IPAddress": "198.51.100.1"})
    with pytest.raises(AwsError, match="ChildHealthChecks names nope"):
        checks.check_create("r", {"Type": "CALCULATED", "ChildHealthChecks": ["nope"], "HealthThreshold": 1})
    assert checks.check_create("r", HTTP).port == 8080
    assert checks.counters["refused"] == 2

    emulator.items["hc1"] = dict(HTTP)
    assert checks.known("hc1")  # not seen yet: looked up once more
    assert [c.id for c in configured[-1]] == ["hc1"]
    assert checks.check_update("nope", {"FailureThreshold": 2}) is None
    with pytest.raises(AwsError, match="IPAddress"):
        checks.check_update("hc1", {"IPAddress": "10.0.0.1"})
    with pytest.raises(AwsError, match="ResetElements"):
        checks.check_update("hc1", {"ResetElements": ["Type"]})
    merged = checks.check_update("hc1", {"FailureThreshold": 2, "ResetElements": ["ResourcePath"],
                                         "HealthCheckVersion": 1})
    assert merged == {**{k: v for k, v in HTTP.items() if k != "ResourcePath"}, "FailureThreshold": 2}
    # The emulator's update forgot Regions; the lab evaluates what the update asked for.
    emulator.items["hc1"] = {k: v for k, v in HTTP.items() if k != "Regions"} | {"FailureThreshold": 2}
    assert merged is not None
    checks.updated("hc1", merged)
    config = checks.config("hc1")
    assert config is not None
    assert (config.failure_threshold, config.resource_path, config.regions) == (
        2, "/", ("us-east-1", "us-west-1", "us-west-2"))
    del emulator.items["hc1"]
    checks.refresh()
    assert checks.ids() == set() and configured[-1] == []
    assert checks.reports("hc1") is None


def test_status_calls_refuse_calculated_checks_and_disabled_ones_keep_their_results() -> None:
    """AWS: GetHealthCheckStatus and GetHealthCheckLastFailureReason can't be used for a
    calculated health check; the lab says where it shows the calculated status."""
    emulator = FakeChecks()
    emulator.items["hc1"] = dict(HTTP)
    emulator.items["calc"] = {"Type": "CALCULATED", "ChildHealthChecks": ["hc1"], "HealthThreshold": 1}
    evaluator = HealthEvaluator()
    checks = HealthCheckService(emulator.list, evaluator.configure, evaluator=evaluator)
    checks.refresh()
    for failures, operation in ((False, "GetHealthCheckStatus"), (True, "GetHealthCheckLastFailureReason")):
        with pytest.raises(AwsError) as caught:
            checks.reports("calc", failures=failures)
        assert caught.value.code == "InvalidInput"
        message = caught.value.aws_message
        assert f"{operation} can't be used for calculated health checks" in message
        assert "/_chaos_dynamo/route53/health" in message and "calc" in message

    failed = CheckResult(False, "Failure: HTTP Status Code 503, Service Unavailable", 1_700_000_000.0)
    regions = ["us-east-1", "us-west-1", "us-west-2"]
    for region in regions * 3:  # FailureThreshold 3 (the default)
        evaluator.record("hc1", region, failed)
    assert evaluator.status("hc1") is False
    emulator.items["hc1"] = {**HTTP, "Disabled": True}
    checks.refresh()
    assert evaluator.status("hc1") is True
    reports = checks.reports("hc1")
    assert reports is not None and [r.status for r in reports] == [failed.status] * 3
    assert [r.region for r in reports] == regions
