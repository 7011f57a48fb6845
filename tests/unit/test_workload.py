"""The reference services' open loop, queue, health, metrics and command line (no lab)."""

from __future__ import annotations

import json
import os
import re
import threading
from pathlib import Path
from typing import Any

import pytest

from chaos_dynamo.clock import REAL_CLOCK, FakeClock, wait_until
from chaos_dynamo.errors import ConfigError, LabError, SafetyError
from chaos_dynamo.services import reference
from chaos_dynamo.services.workload import (
    Call,
    CallPlan,
    Driver,
    Metrics,
    OpenLoop,
    parse_http_address,
    render_metrics,
    write_ready_file,
)


class LateClock(FakeClock):
    """A fake clock whose sleeps overshoot, as a loaded machine's do."""

    def __init__(self, overshoot: float) -> None:
        super().__init__()
        self.overshoot = overshoot

    def sleep(self, seconds: float) -> None:
        self.advance(seconds * (1 + self.overshoot) + 0.003)


def run_loop(clock: FakeClock, rate: float, duration: float) -> list[tuple[float, Call]]:
    emitted: list[tuple[float, Call]] = []
    loop = OpenLoop(rate, lambda call: emitted.append((clock.monotonic(), call)), plan=CallPlan(0),
                    clock=clock, stop=threading.Event(), duration=duration)
    assert loop.run() == len(emitted)
    return emitted


# --- schedule --------------------------------------------------------------------------------

def test_calls_are_due_at_start_plus_k_over_rate() -> None:
    clock = FakeClock()
    emitted = run_loop(clock, rate=4, duration=10)
    assert len(emitted) == 40
    for k, (at, call) in enumerate(emitted):
        assert call.index == k
        assert call.scheduled == pytest.approx(k / 4, abs=1e-9)
        assert at == pytest.approx(k / 4, abs=1e-9)


def test_a_late_waking_loop_catches_up_instead_of_drifting() -> None:
    clock = LateClock(overshoot=0.4)
    emitted = run_loop(clock, rate=10, duration=30)
    assert len(emitted) == 300  # the count is the schedule's, not the sleeps'
    for k, (at, call) in enumerate(emitted):
        assert call.scheduled == pytest.approx(k / 10, abs=1e-9)
        assert at >= call.scheduled - 1e-9
        assert at - call.scheduled < 0.2  # late by at most one overshot sleep


def test_the_loop_ends_when_stopped() -> None:
    clock = FakeClock()
    stop = threading.Event()
    seen: list[Call] = []

    def submit(call: Call) -> None:
        seen.append(call)
        if len(seen) == 5:
            stop.set()

    assert OpenLoop(5, submit, plan=CallPlan(0), clock=clock, stop=stop).run() == 5


def test_the_loop_rejects_a_bad_rate() -> None:
    with pytest.raises(ValueError, match="rate"):
        OpenLoop(0, print, plan=CallPlan(0), clock=FakeClock(), stop=threading.Event())


def test_calls_alternate_put_and_get_on_seeded_keys() -> None:
    def plan(seed: int) -> list[tuple[str, str]]:
        p = CallPlan(seed)
        return [(c.operation, c.key) for c in (p.call(k, 0.0) for k in range(20))]

    calls = plan(5)
    assert calls == plan(5) != plan(6)
    assert [op for op, _ in calls] == ["PutItem", "GetItem"] * 10
    assert all(calls[k][1] == calls[k + 1][1] for k in range(0, 20, 2))  # get what was put
    assert len({key for _, key in calls}) > 5


# --- queue and shedding ------------------------------------------------------------------------

def test_a_full_bounded_queue_sheds_and_counts_it() -> None:
    clock = FakeClock()
    metrics = Metrics("hardened", clock)
    driver = Driver(lambda call: None, metrics, concurrency=2, capacity=3, clock=clock,
                    stop=threading.Event())
    metrics.queue_depth = driver.depth
    # No workers started: the open loop fills the queue, then every further call is shed.
    OpenLoop(5, driver.submit, plan=CallPlan(0), clock=clock, stop=threading.Event(),
             duration=2).run()
    snap = metrics.snapshot()
    assert (snap.scheduled, snap.queue_depth, snap.shed, snap.ok, snap.error) == (10, 3, 7, 0, 0)
    status, body = metrics.health()
    assert status == 503 and body["failed"] == 7  # shed calls are failed calls
    assert 'chaos_dynamo_service_calls_total{outcome="shed"} 7' in render_metrics(snap)


def test_an_unbounded_queue_never_sheds() -> None:
    clock = FakeClock()
    metrics = Metrics("legacy", clock)
    driver = Driver(lambda call: None, metrics, concurrency=1, capacity=None, clock=clock,
                    stop=threading.Event())
    for k in range(500):
        driver.submit(Call(k, "GetItem", "k", 0.0))
    assert driver.depth() == 500 and metrics.snapshot().shed == 0


def test_workers_run_calls_and_count_outcomes_and_latency() -> None:
    stop = threading.Event()
    metrics = Metrics("legacy", REAL_CLOCK)

    def execute(call: Call) -> None:
        if call.index % 4 == 3:
            raise RuntimeError("boom")

    driver = Driver(execute, metrics, concurrency=3, capacity=None, clock=REAL_CLOCK, stop=stop)
    driver.start()
    now = REAL_CLOCK.monotonic()
    for k in range(40):
        driver.submit(Call(k, "GetItem", "k", now))
    assert wait_until(lambda: metrics.snapshot().seconds_count == 40, timeout=10)
    snap = metrics.snapshot()
    assert (snap.ok, snap.error, snap.inflight, snap.queue_depth) == (30, 10, 0, 0)
    assert snap.seconds_sum >= 0
    stop.set()
    assert driver.join(5)


# --- health ------------------------------------------------------------------------------------

def test_health_needs_recent_mostly_successful_calls() -> None:
    clock = FakeClock()
    metrics = Metrics("standard", clock)
    status, body = metrics.health()
    assert (status, body["healthy"], body["reason"]) == (503, False, "starting")

    def finish(ok: bool, n: int = 1) -> None:
        for _ in range(n):
            metrics.record_started()
            metrics.record_finished(ok, 0.01)

    finish(True, 9)
    finish(False)
    status, body = metrics.health()
    assert status == 200 and body["healthy"] and body["success_ratio"] == 0.9  # 90% is enough
    finish(False)
    status, body = metrics.health()
    assert status == 503 and "9 of 11 calls succeeded" in body["reason"]
    clock.advance(3.01)  # those calls leave the window
    status, body = metrics.health()
    assert status == 503 and body["completed"] == 0 and "no call completed" in body["reason"]
    finish(True)
    assert metrics.health()[0] == 200


# --- metrics text ------------------------------------------------------------------------------

SAMPLE = re.compile(r'^([a-z_]+)(\{outcome="(ok|error|shed)"\})? (-?[0-9.e+-]+)$')


def test_metrics_are_prometheus_text() -> None:
    clock = FakeClock()
    metrics = Metrics("hardened", clock, queue_depth=lambda: 4, breaker_open=lambda: True)
    metrics.record_scheduled()
    metrics.record_attempt(3)
    metrics.record_started()
    metrics.record_finished(True, 0.25)
    metrics.record_started()
    metrics.record_shed()
    text = render_metrics(metrics.snapshot())
    assert text.endswith("\n")
    declared: dict[str, str] = {}
    samples: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("# HELP "):
            continue
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            declared[name] = kind
            continue
        match = SAMPLE.match(line)
        assert match, line
        samples[match.group(1) + (match.group(2) or "")] = float(match.group(4))
        base = re.sub(r"_(sum|count)$", "", match.group(1))
        assert base in declared or match.group(1) in declared, line
    p = "chaos_dynamo_service_"
    assert declared[f"{p}calls_total"] == "counter" and declared[f"{p}call_seconds"] == "summary"
    assert declared[f"{p}inflight"] == "gauge"
    assert samples == {
        f'{p}calls_total{{outcome="ok"}}': 1, f'{p}calls_total{{outcome="error"}}': 0,
        f'{p}calls_total{{outcome="shed"}}': 1, f"{p}scheduled_total": 1,
        f"{p}attempts_total": 3, f"{p}call_seconds_sum": 0.25, f"{p}call_seconds_count": 1,
        f"{p}inflight": 1, f"{p}queue_depth": 4, f"{p}breaker_open": 1,
    }


# --- addresses, ready file, command line -------------------------------------------------------

@pytest.mark.parametrize(("text", "expected"), [
    ("127.0.0.1:0", ("127.0.0.1", 0)),
    ("127.0.0.42:8080", ("127.0.0.42", 8080)),
    ("localhost:9000", ("127.0.0.1", 9000)),
])
def test_loopback_http_addresses_are_accepted(text: str, expected: tuple[str, int]) -> None:
    assert parse_http_address(text) == expected


@pytest.mark.parametrize("text", ["0.0.0.0:8080", "10.1.2.3:80", "[::1]:80", "example.com:80",
                                  "127.0.0.1", "127.0.0.1:http", "127.0.0.1:70000"])
def test_other_http_addresses_are_refused_naming_the_option(text: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_http_address(text)
    assert info.value.field == "--http" and "127.0.0.1:0" in str(info.value)


def test_the_ready_file_is_written_whole(tmp_path: Path) -> None:
    path = tmp_path / "ready.json"
    write_ready_file(path, {"pid": 1, "health_url": "http://127.0.0.1:1/health"})
    write_ready_file(path, {"pid": 2, "health_url": "http://127.0.0.1:2/health"})
    assert json.loads(path.read_text())["pid"] == 2
    assert [p.name for p in tmp_path.iterdir()] == ["ready.json"]


def test_command_line_defaults() -> None:
    options = reference.parse_args(["--kind", "naive"])
    assert options == reference.Options(kind="naive", rate=5.0, concurrency=8, seed=0,
                                        table="chaos-dynamo-reference", http=("127.0.0.1", 0),
                                        ready_file=None, duration=0.0, setup_timeout=30.0)


@pytest.mark.parametrize(("args", "message"), [
    ([], "the following arguments are required: --kind"),
    (["--kind", "clever"], "argument --kind: invalid choice: 'clever'"),
    (["--kind", "naive", "--rate", "0"], "argument --rate: '0' must be a number > 0"),
    (["--kind", "naive", "--rate", "fast"], "argument --rate: 'fast' is not a number"),
    (["--kind", "naive", "--concurrency", "0"], "argument --concurrency: 0 must be between 1"),
    (["--kind", "naive", "--seed", "x"], "argument --seed: 'x' is not an integer"),
    (["--kind", "naive", "--table", "a b"], "argument --table: 'a b' is not a DynamoDB table name"),
    (["--kind", "naive", "--http", "0.0.0.0:80"],
     "argument --http: '0.0.0.0' is not an IPv4 loopback address"),
    (["--kind", "naive", "--duration", "-1"], "argument --duration: '-1' must be >= 0"),
    (["--kind", "naive", "--ready-file", "/no/such/dir/ready.json"],
     "argument --ready-file: directory /no/such/dir does not exist"),
])
def test_bad_command_lines_are_usage_errors(args: list[str], message: str,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        reference.parse_args(args)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "usage:" in err and message in err, err


def test_an_endpoint_outside_the_lab_is_refused() -> None:
    with pytest.raises(SafetyError, match="AWS_ENDPOINT_URL_DYNAMODB is not set"):
        reference.check_endpoint({})
    with pytest.raises(SafetyError, match=r"resolves to \['192.0.2.7'\], not to loopback"):
        reference.check_endpoint({"AWS_ENDPOINT_URL_DYNAMODB": "http://192.0.2.7:8000"})
    url = "http://127.0.0.1:8000"
    assert reference.check_endpoint({"AWS_ENDPOINT_URL": url}) == url
    # A name is resolved only when the shim keeps it inside the lab's zones.
    real = "http://dynamodb.us-east-1.amazonaws.com:8000"
    with pytest.raises(SafetyError, match=r"not inside the lab's zones \(CHAOS_DYNAMO_ZONES=''\)"):
        reference.check_endpoint({"AWS_ENDPOINT_URL_DYNAMODB": real})
    with pytest.raises(SafetyError, match="not inside the lab's zones"):
        reference.check_endpoint({"AWS_ENDPOINT_URL_DYNAMODB": real, "CHAOS_DYNAMO_ZONES": "example.com"})


# --- table setup -------------------------------------------------------------------------------

class FakeDynamo:
    """describe_table/create_table: fails with ``errors`` first, then as a small DynamoDB would."""

    def __init__(self, errors: list[Exception], exists: bool = False, created_by_other: bool = False,
                 creating_polls: int = 0) -> None:
        self.errors = errors
        self.exists = exists
        self.created_by_other = created_by_other
        self.creating_polls = creating_polls
        self.created = 0

    def _fail(self) -> None:
        if self.errors:
            raise self.errors.pop(0)

    def describe_table(self, TableName: str) -> dict[str, Any]:  # noqa: N803 - boto3's name
        self._fail()
        if not self.exists:
            raise client_error("ResourceNotFoundException", 400)
        if self.creating_polls:
            self.creating_polls -= 1
            return {"Table": {"TableStatus": "CREATING"}}
        return {"Table": {"TableStatus": "ACTIVE"}}

    def create_table(self, **kwargs: Any) -> None:
        self._fail()
        self.exists = True
        if self.created_by_other:
            raise client_error("ResourceInUseException", 400)
        self.created += 1


def client_error(code: str, status: int) -> Exception:
    from botocore.exceptions import ClientError

    return ClientError({"Error": {"Code": code, "Message": code},
                        "ResponseMetadata": {"HTTPStatusCode": status}}, "DescribeTable")


def outage() -> Exception:
    from botocore.exceptions import EndpointConnectionError

    return EndpointConnectionError(endpoint_url="http://dynamodb.us-east-1.amazonaws.com:1/")


def ensure(client: FakeDynamo, clock: FakeClock, timeout: float = 30.0,
           stop: threading.Event | None = None) -> bool:
    return reference.ensure_table(client, "t", timeout=timeout, clock=clock,
                                  stop=stop or threading.Event())


def test_the_table_is_created_and_waited_for() -> None:
    clock = FakeClock()
    db = FakeDynamo([], creating_polls=3)
    assert ensure(db, clock) and db.created == 1
    assert ensure(db, clock) and db.created == 1  # already there: nothing to do


def test_another_instance_creating_it_first_is_fine() -> None:
    db = FakeDynamo([], created_by_other=True)
    assert ensure(db, FakeClock()) and db.created == 0


def test_a_service_started_in_an_outage_comes_up_when_it_ends() -> None:
    clock = FakeClock()
    db = FakeDynamo([outage() for _ in range(20)])
    assert ensure(db, clock) and db.created == 1
    assert 9 <= clock.monotonic() <= 11  # 20 failures, 0.5 s apart


def test_an_outage_longer_than_the_timeout_is_a_clear_error() -> None:
    clock = FakeClock()
    db = FakeDynamo([outage() for _ in range(1000)])
    with pytest.raises(LabError, match=r"could not create table t in 30 s \(last error: Could not "
                                       r"connect.*chaos-dynamo lab status"):
        ensure(db, clock)
    assert 30 <= clock.monotonic() <= 31


def test_a_refusal_a_retry_cannot_fix_is_not_retried() -> None:
    clock = FakeClock()
    with pytest.raises(LabError, match="cannot create table t: .*AccessDenied"):
        ensure(FakeDynamo([client_error("AccessDeniedException", 400)]), clock)
    assert clock.monotonic() == 0


def test_a_stop_during_setup_ends_it_quietly() -> None:
    stop = threading.Event()
    stop.set()
    assert not ensure(FakeDynamo([outage()]), FakeClock(), stop=stop)


def test_a_reference_service_stops_when_the_run_that_started_it_is_gone() -> None:
    from chaos_dynamo.services.reference import PARENT_ENV, watch_parent

    ours = threading.Event()
    watch_parent({PARENT_ENV: str(os.getppid())}, ours, REAL_CLOCK)
    gone = threading.Event()
    watch_parent({PARENT_ENV: "1" if os.getppid() != 1 else "2"}, gone, REAL_CLOCK)
    assert wait_until(gone.is_set, timeout=10)
    assert not ours.is_set()
    ours.set()  # ends its watcher
    unset = threading.Event()
    watch_parent({}, unset, REAL_CLOCK)
    assert not unset.is_set()
