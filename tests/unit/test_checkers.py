"""The health checkers: the runner's schedule on a fake clock, the prober against real
loopback sockets, and the health-check XML through botocore's own serializer and parser."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import botocore.session
import pytest
from botocore.parsers import create_parser
from botocore.serialize import create_serializer

from chaos_dynamo.clock import FakeClock, wait_until
from chaos_dynamo.errors import AwsError
from chaos_dynamo.route53 import xmlcodec
from chaos_dynamo.route53.checkers import (
    HealthCheckRunner,
    Prober,
    Timeouts,
    Transition,
    timeouts_for,
)
from chaos_dynamo.route53.healthchecks import CheckResult, HealthCheckConfig, HealthEvaluator

REGIONS = ("us-east-1", "us-west-1", "us-west-2")


class FakeProbe:
    """Answers every check with ``ok``; can hold probes until released."""

    def __init__(self, clock: FakeClock | None = None, ok: bool = True) -> None:
        self.clock = clock
        self.ok = ok
        self.calls: list[tuple[str, float]] = []
        self.hold = threading.Event()
        self.hold.set()
        self.closed = False

    def __call__(self, config: HealthCheckConfig, timeouts: Timeouts) -> CheckResult:
        now = self.clock.monotonic() if self.clock else 0.0
        self.calls.append((config.id, now))
        self.hold.wait(timeout=30)
        return CheckResult(self.ok, "Success: HTTP Status Code 200, OK" if self.ok else
                           "Failure: HTTP Status Code 503, Service Unavailable", now)

    def close(self) -> None:
        self.closed = True
        self.hold.set()


def http_check(check_id: str, **extra: Any) -> HealthCheckConfig:
    fields: dict[str, Any] = {"type": "HTTP", "ip_address": "127.0.0.1", "port": 8080, "request_interval": 10,
                              "failure_threshold": 1, "regions": REGIONS, **extra}
    return HealthCheckConfig(id=check_id, **fields)


def step(runner: HealthCheckRunner, clock: FakeClock, seconds: float, tick: float = 1 / 30) -> None:
    """Advance the fake clock in small ticks, running what is due at each."""
    end = clock.monotonic() + seconds
    while clock.monotonic() < end - 1e-9:
        clock.advance(tick)
        runner.run_pending()


def test_timeouts_scale_with_the_interval_but_never_below_a_second() -> None:
    assert timeouts_for(30, 1) == Timeouts(4.0, 2.0, 10.0)
    assert timeouts_for(10, 1) == Timeouts(4.0, 2.0, 10.0)
    assert timeouts_for(30, 10) == Timeouts(3.0, 2.0, 3.0)
    assert timeouts_for(10, 10) == Timeouts(1.0, 1.0, 1.0)
    assert timeouts_for(10, 1000) == Timeouts(1.0, 1.0, 1.0)


def test_checkers_are_staggered_over_the_interval() -> None:
    clock = FakeClock()
    probe = FakeProbe(clock)
    runner = HealthCheckRunner(HealthEvaluator(), probe, speedup=10, clock=clock)
    runner.configure([http_check("a")])
    assert runner.run_pending() == pytest.approx(1 / 3)  # region 1 ran at once; region 2 in 1/3 s
    step(runner, clock, 2.0)
    times = [round(t, 2) for _, t in probe.calls]
    # 3 regions, one check a second each, starting 0, 1/3 and 2/3 s in.
    assert times[:7] == pytest.approx([0.0, 0.33, 0.67, 1.0, 1.33, 1.67, 2.0], abs=0.04)


def test_failure_threshold_three_takes_three_failures_per_checker() -> None:
    clock = FakeClock()
    probe = FakeProbe(clock, ok=False)
    changes: list[tuple[dict[str, bool], list[Transition]]] = []
    runner = HealthCheckRunner(HealthEvaluator(), probe, speedup=10, clock=clock,
                               on_change=lambda s, t: changes.append((s, t)))
    runner.configure([http_check("a", failure_threshold=3)])
    assert changes[0][0] == {"a": True} and changes[0][1][0].reason.startswith("created")
    while runner.statuses()["a"]:
        step(runner, clock, 1 / 3)
        assert len(probe.calls) <= 9
    # Healthy while > 18% of checkers are: all three must reach 3 failures: 9 probes.
    assert len(probe.calls) == 9
    statuses, transitions = changes[-1]
    assert statuses == {"a": False}
    assert [(t.id, t.healthy, t.reason) for t in transitions] == [
        ("a", False, "Failure: HTTP Status Code 503, Service Unavailable")]
    assert runner.counters()["failures"] == 9
    assert [e["healthy"] for e in runner.log()] == [True, False]


def test_calculated_parents_change_with_their_children_and_log_why() -> None:
    clock = FakeClock()
    probe = FakeProbe(clock, ok=False)
    runner = HealthCheckRunner(HealthEvaluator(), probe, speedup=10, clock=clock)
    parent = HealthCheckConfig(id="p", type="CALCULATED", children=("a",), health_threshold=1)
    runner.configure([http_check("a"), parent])
    step(runner, clock, 1.0)
    assert runner.statuses() == {"a": False, "p": False}
    reasons = {e["id"]: e["reason"] for e in runner.log() if not e["healthy"]}
    assert reasons["p"] == "Calculated: 0 of 1 child health checks healthy (HealthThreshold 1)"
    assert {call[0] for call in probe.calls} == {"a"}  # a calculated check has no checkers


def test_reconfigure_keeps_unchanged_checkers_and_forgets_removed_ones() -> None:
    clock = FakeClock()
    probe = FakeProbe(clock)
    runner = HealthCheckRunner(HealthEvaluator(), probe, speedup=10, clock=clock)
    runner.configure([http_check("a"), http_check("b")])
    step(runner, clock, 0.5)
    calls = len(probe.calls)
    transitions = runner.configure([http_check("a"), http_check("c", disabled=True)])
    assert {(t.id, t.healthy) for t in transitions} == {("b", True), ("c", True)}
    assert next(t.reason for t in transitions if t.id == "b").startswith("deleted")
    step(runner, clock, 2.0)
    later = [cid for cid, _ in probe.calls[calls:]]
    assert set(later) == {"a"}  # b forgotten, c disabled: never probed
    assert len(later) == 6  # a's schedule went on, not restarted


def test_checks_the_lab_cannot_evaluate_get_no_checkers_and_stay_healthy() -> None:
    """Stored on an external emulator behind the lab's back: never probed, counted healthy."""
    clock = FakeClock()
    probe = FakeProbe(clock, ok=False)
    runner = HealthCheckRunner(HealthEvaluator(), probe, speedup=10, clock=clock)
    transitions = runner.configure([
        http_check("https", type="HTTPS"),
        HealthCheckConfig(id="metric", type="CLOUDWATCH_METRIC", regions=REGIONS),
        http_check("public", ip_address="192.0.2.10"),
        http_check("nowhere", ip_address=None),
        http_check("inverted", type="HTTPS", inverted=True),
        http_check("a"),
    ])
    reasons = {t.id: t.reason for t in transitions}
    assert reasons["https"].startswith("not evaluated by the lab: the lab does not evaluate")
    assert "not a loopback address" in reasons["public"]
    step(runner, clock, 2.0)
    assert {check_id for check_id, _ in probe.calls} == {"a"}
    assert runner.statuses() == {"https": True, "metric": True, "public": True, "nowhere": True,
                                 "inverted": True, "a": False}


def test_a_reenabled_check_starts_healthy_and_is_probed_again() -> None:
    clock = FakeClock()
    probe = FakeProbe(clock, ok=False)
    runner = HealthCheckRunner(HealthEvaluator(), probe, speedup=10, clock=clock)
    runner.configure([http_check("a")])
    step(runner, clock, 1.0)
    assert runner.statuses() == {"a": False}
    runner.configure([http_check("a", disabled=True)])
    assert runner.statuses() == {"a": True}
    calls = len(probe.calls)
    step(runner, clock, 1.0)
    assert len(probe.calls) == calls  # disabled: not probed
    transitions = runner.configure([http_check("a")])
    # Enabled again: healthy until its checkers have enough data, not its stale state.
    assert runner.statuses() == {"a": True} and transitions == []
    step(runner, clock, 1.0)
    assert len(probe.calls) > calls and runner.statuses() == {"a": False}
    assert [(e["healthy"], e["reason"].split(":")[0]) for e in runner.log()] == [
        (True, "created"), (False, "Failure"), (True, "configuration changed"), (False, "Failure")]


def test_a_full_pool_skips_probes_rather_than_queueing_them() -> None:
    probe = FakeProbe()
    probe.hold.clear()  # every probe hangs, as on a blackholed target
    runner = HealthCheckRunner(HealthEvaluator(), probe, speedup=100, max_in_flight=2).start()
    try:
        runner.configure([http_check("a", regions=REGIONS + ("eu-west-1", "sa-east-1"))])
        assert wait_until(lambda: runner.counters()["skipped"] >= 2, timeout=5)
        assert runner.counters()["in_flight"] == 2
    finally:
        started = time.monotonic()
        runner.stop()
    assert time.monotonic() - started < 3
    assert probe.closed and runner.counters()["in_flight"] == 0


# --- the prober, on real loopback sockets --------------------------------------------------

class _Target(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    hosts: list[str] = []

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass

    def do_GET(self) -> None:
        _Target.hosts.append(self.headers.get("Host", ""))
        if self.path == "/chunked":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for part in (b"hello ", b"needle", b""):
                self.wfile.write(f"{len(part):x}\r\n".encode() + part + b"\r\n")
            return
        status, body = {"/ok": (200, b"all good: needle"), "/moved": (302, b""), "/fail": (503, b"needle"),
                        "/deep": (200, b"x" * 5200 + b"needle")}.get(self.path, (404, b""))
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture(scope="module")
def target() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Target)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()


FAST = Timeouts(1.0, 1.0, 1.0)


def prober(resolve: dict[str, list[str]] | None = None) -> Prober:
    names = resolve or {}
    return Prober(lambda name: names.get(name, []))


@pytest.mark.parametrize(("path", "kind", "search", "ok", "status"), [
    ("/ok", "HTTP", None, True, "Success: HTTP Status Code 200, OK"),
    ("/moved", "HTTP", None, True, "Success: HTTP Status Code 302, Found"),
    ("/fail", "HTTP", None, False, "Failure: HTTP Status Code 503, Service Unavailable"),
    ("/ok", "HTTP_STR_MATCH", "needle", True, "Success: HTTP Status Code 200, OK"),
    ("/chunked", "HTTP_STR_MATCH", "needle", True, "Success: HTTP Status Code 200, OK"),
    ("/fail", "HTTP_STR_MATCH", "needle", False, "Failure: HTTP Status Code 503, Service Unavailable"),
    ("/deep", "HTTP_STR_MATCH", "needle", False,
     "Failure: Search string not found in the first 5120 bytes of the response body (HTTP Status Code 200, OK)"),
])
def test_http_checks_judge_status_and_body(target: int, path: str, kind: str, search: str | None, ok: bool,
                                           status: str) -> None:
    config = http_check("t", type=kind, port=target, resource_path=path, search_string=search)
    result = prober()(config, FAST)
    assert (result.ok, result.status) == (ok, status)


def test_host_header_and_name_resolution_through_the_lab_only(target: int) -> None:
    _Target.hosts.clear()
    assert prober()(http_check("t", port=target, resource_path="/ok"), FAST).ok
    by_name = http_check("t", ip_address=None, fqdn="app.example.com.", port=target, resource_path="/ok")
    assert prober({"app.example.com": ["127.0.0.1"]})(by_name, FAST).ok
    assert _Target.hosts == [f"127.0.0.1:{target}", f"app.example.com:{target}"]
    unserved = prober()(by_name, FAST)
    assert not unserved.ok and "name not served by the lab" in unserved.status
    elsewhere = prober({"app.example.com": ["192.0.2.10"]})(by_name, FAST)
    assert not elsewhere.ok and "loopback addresses only" in elsewhere.status
    assert len(_Target.hosts) == 2  # neither failure connected anywhere


def test_refused_blackholed_and_tcp_targets() -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    refused = prober()(http_check("t", port=port), FAST)
    assert not refused.ok and refused.status.startswith("Failure: Connection refused")
    assert not prober()(http_check("t", type="TCP", port=port), FAST).ok

    with socket.socket() as hole:  # accepts (the kernel completes the handshake), never answers
        hole.bind(("127.0.0.1", 0))
        hole.listen(8)
        port = hole.getsockname()[1]
        tcp = prober()(http_check("t", type="TCP", port=port), FAST)
        assert (tcp.ok, tcp.status) == (True, "Success: TCP connection established")
        started = time.monotonic()
        silent = prober()(http_check("t", port=port), FAST)
        assert time.monotonic() - started >= 0.9
        assert not silent.ok and silent.status.startswith("Failure: Response timed out")

        # Closing the prober cuts a probe in flight at once (the lab stopping).
        slow = prober()
        results: list[CheckResult] = []
        thread = threading.Thread(target=lambda: results.append(slow(http_check("t", port=port),
                                                                     Timeouts(4.0, 30.0, 10.0))))
        thread.start()
        assert wait_until(lambda: bool(slow._open), timeout=5)
        slow.close()
        thread.join(timeout=5)
        assert not thread.is_alive() and not results[0].ok


# --- the XML, as botocore writes and reads it ----------------------------------------------

@pytest.fixture(scope="module")
def route53_model() -> Any:
    return botocore.session.get_session().get_service_model("route53")


def serialize(model: Any, operation: str, params: dict[str, Any]) -> bytes:
    request = create_serializer("rest-xml").serialize_to_request(params, model.operation_model(operation))
    return bytes(request["body"])


def test_health_check_requests_parse_as_boto3_sent_them(route53_model: Any) -> None:
    config = {"Type": "HTTP_STR_MATCH", "IPAddress": "127.0.0.11", "Port": 8080, "ResourcePath": "/h",
              "SearchString": "ok", "RequestInterval": 10, "FailureThreshold": 2, "Inverted": True,
              "Disabled": False, "Regions": list(REGIONS), "MeasureLatency": False}
    body = serialize(route53_model, "CreateHealthCheck", {"CallerReference": "ref-1", "HealthCheckConfig": config})
    assert xmlcodec.parse_create_health_check(body) == ("ref-1", config)
    calculated = {"Type": "CALCULATED", "ChildHealthChecks": ["a", "b"], "HealthThreshold": 1}
    body = serialize(route53_model, "CreateHealthCheck", {"CallerReference": "r", "HealthCheckConfig": calculated})
    assert xmlcodec.parse_create_health_check(body)[1] == calculated

    update = {"HealthCheckId": "abc", "HealthCheckVersion": 2, "FailureThreshold": 5,
              "ResetElements": ["Regions", "ResourcePath"], "AlarmIdentifier": {"Region": "us-east-1", "Name": "x"}}
    body = serialize(route53_model, "UpdateHealthCheck", update)
    assert xmlcodec.parse_update_health_check(body) == {k: v for k, v in update.items() if k != "HealthCheckId"}

    with pytest.raises(AwsError, match="InvalidInput"):
        xmlcodec.parse_create_health_check(b"<CreateHealthCheckRequest><HealthCheckConfig/></CreateHealthCheckRequest>")
    with pytest.raises(AwsError, match="MalformedInput"):
        xmlcodec.parse_update_health_check(body.replace(b"UpdateHealthCheckRequest", b"Other"))


@pytest.mark.parametrize("operation", ["GetHealthCheckStatus", "GetHealthCheckLastFailureReason"])
def test_observations_parse_with_botocore(route53_model: Any, operation: str) -> None:
    at = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
    observations = [xmlcodec.Observation("us-east-1", "127.0.0.1", "Success: HTTP Status Code 200, OK", at),
                    xmlcodec.Observation("us-west-1", "127.0.0.1", "Failure: Connection refused. x", at)]
    body = xmlcodec.health_check_observations_xml(observations, root=f"{operation}Response")
    parsed = create_parser("rest-xml").parse({"body": body, "headers": {}, "status_code": 200},
                                             route53_model.operation_model(operation).output_shape)
    assert parsed["HealthCheckObservations"] == [
        {"Region": o.region, "IPAddress": o.ip_address, "StatusReport": {"Status": o.status, "CheckedTime": at}}
        for o in observations]
