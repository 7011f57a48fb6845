"""The lab's DynamoDB capacity fault on the session lab over real sockets: finite slots
shared by every LB, served in arrival order, each held for a service time; a client that
gives up still costs a slot (wasted work); the control API, status, metrics and actions."""

from __future__ import annotations

import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError, ReadTimeoutError

from chaos_dynamo.clock import wait_until
from chaos_dynamo.errors import ConfigError
from chaos_dynamo.lab.lab import Lab
from chaos_dynamo.lab.state import LabInfo
from chaos_dynamo.lbfleet import actions as lb_actions
from chaos_dynamo.lbfleet.proxy import HEALTH_PATH
from chaos_dynamo.services.attribution import SERVICE_HEADER
from tests.conftest import HoldClock, control

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

TABLE = "capacity-test"
KEY = {"pk": {"S": "k1"}}


@pytest.fixture(scope="module")
def table(lab: Lab) -> str:
    """A table with one item, made on the emulator directly (no LB, no capacity)."""
    client = boto3.session.Session().client(
        "dynamodb", endpoint_url=lab.emulator_url, region_name="us-east-1",
        aws_access_key_id="testing", aws_secret_access_key="testing")
    client.create_table(TableName=TABLE, KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                        BillingMode="PAY_PER_REQUEST")
    client.put_item(TableName=TABLE, Item={**KEY, "v": {"S": "x"}})
    return TABLE


@pytest.fixture
def unlimited_after(config: dict[str, Any]) -> Iterator[None]:
    """Leave the shared lab as found: unlimited capacity, no LB faults."""
    yield
    lb_actions.reset_dynamodb_capacity(configuration=config)
    lb_actions.reset_lb_faults(configuration=config)


def client_to(url: str, read_timeout: float = 10.0, service: str = "") -> Any:
    """A DynamoDB client straight at one LB, one attempt per call, warmed up (so its
    calls below do not pay for the connection or botocore's first-call setup)."""
    client = boto3.session.Session().client(
        "dynamodb", endpoint_url=url, region_name="us-east-1",
        aws_access_key_id="testing", aws_secret_access_key="testing",
        config=Config(retries={"total_max_attempts": 1}, connect_timeout=5, read_timeout=read_timeout))
    if service:
        def tag(request: Any, **_: Any) -> None:
            request.headers[SERVICE_HEADER] = service

        client.meta.events.register("before-sign.dynamodb", tag)
    return client


def capacity(lab: Lab) -> dict[str, Any]:
    assert lab.fleet is not None
    return lab.fleet.capacity.describe()


def concurrent_wall_time(calls: list[Callable[[], object]]) -> float:
    """Seconds from a common start until every call has returned (each on its own thread)."""
    barrier = threading.Barrier(len(calls) + 1)
    errors: list[BaseException] = []

    def run(call: Callable[[], object]) -> None:
        barrier.wait()
        try:
            call()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(call,), daemon=True) for call in calls]
    for thread in threads:
        thread.start()
    barrier.wait()
    start = time.monotonic()
    for thread in threads:
        thread.join(60)
    elapsed = time.monotonic() - start
    assert not errors, errors
    return elapsed


def test_one_slot_serializes_calls_through_every_lb(
    lab: Lab, lab_info: LabInfo, config: dict[str, Any], table: str, unlimited_after: None
) -> None:
    assert lab.fleet is not None
    lbs = [lab.fleet[spec["name"]] for spec in lab_info.load_balancers][:4]
    clients = [client_to(lb.url) for lb in lbs]
    for client in clients:  # warm up: connection open, endpoint resolved
        client.get_item(TableName=table, Key=KEY)
    calls: list[Callable[[], object]] = [
        lambda c=client: c.get_item(TableName=table, Key=KEY) for client in clients]

    knobs = lb_actions.set_dynamodb_capacity(slots=1, service_time=0.2, configuration=config)
    assert (knobs["slots"], knobs["service_time"]) == (1, 0.2)
    served = knobs["served"]
    serial = concurrent_wall_time(calls)

    # One slot across four LBs: each call holds it 0.2 s in turn, and the others queue (a
    # ratio against an unlimited run's wall time was flaky on a loaded machine).
    assert serial >= 0.75, serial
    after = capacity(lab)
    assert after["served"] == served + 4
    assert after["max_waiting"] >= 2  # somebody queued behind the one in service
    assert (after["waiting"], after["in_service"]) == (0, 0)


def test_a_client_that_gives_up_still_costs_its_slot(
    lab: Lab, config: dict[str, Any], table: str, unlimited_after: None
) -> None:
    assert lab.fleet is not None
    lb = lab.fleet["lb-2"]
    patient = client_to(lb.url)
    impatient = client_to(lb.url, read_timeout=0.2, service="impatient")
    patient.get_item(TableName=table, Key=KEY)
    impatient.get_item(TableName=table, Key=KEY)
    since = time.time()
    base = lb_actions.set_dynamodb_capacity(slots=1, service_time=0.6, configuration=config)["served"]

    first = threading.Thread(target=patient.get_item, kwargs={"TableName": table, "Key": KEY}, daemon=True)
    first.start()
    assert wait_until(lambda: capacity(lab)["in_service"] == 1, 10)
    with pytest.raises(ReadTimeoutError):
        impatient.get_item(TableName=table, Key=KEY)  # waits behind `first`, gives up at 0.2 s
    gave_up = capacity(lab)
    # Its request is still in line or in service: nobody took it back.
    assert gave_up["served"] <= base + 1 and gave_up["waiting"] + gave_up["in_service"] >= 1, gave_up
    first.join(10)
    assert wait_until(lambda: capacity(lab)["served"] == base + 2, 10), capacity(lab)
    assert (capacity(lab)["waiting"], capacity(lab)["in_service"]) == (0, 0)
    # The LB forwarded it and DynamoDB answered, long after the client had left.
    assert wait_until(lambda: any(r.service == "impatient" for r in lb.request_log(since=since)), 10)
    wasted = [r for r in lb.request_log(since=since) if r.service == "impatient"]
    assert [(r.operation, r.status) for r in wasted] == [("GetItem", 200)]
    assert wasted[0].latency >= 0.6


def test_health_checks_and_injected_errors_take_no_capacity_and_down_cuts_service(
    lab: Lab, config: dict[str, Any], table: str, unlimited_after: None
) -> None:
    assert lab.fleet is not None
    holder_lb, other_lb = lab.fleet["lb-5"], lab.fleet["lb-4"]
    holder = client_to(holder_lb.url)
    holder.get_item(TableName=table, Key=KEY)
    lb_actions.throttle_dynamodb(1.0, lb=other_lb.name, configuration=config)
    base = lb_actions.set_dynamodb_capacity(slots=1, service_time=30.0, configuration=config)
    outcome: list[BaseException] = []

    def hold() -> None:
        try:
            holder.get_item(TableName=table, Key=KEY)
        except BaseException as exc:  # noqa: BLE001 - inspected below
            outcome.append(exc)

    thread = threading.Thread(target=hold, daemon=True)
    thread.start()
    assert wait_until(lambda: capacity(lab)["in_service"] == 1, 10)

    with urllib.request.urlopen(f"{holder_lb.url}{HEALTH_PATH}", timeout=5) as response:
        assert response.status == 200  # answered while the only slot is busy
    with pytest.raises(ClientError) as info:
        client_to(other_lb.url).get_item(TableName=table, Key=KEY)  # the LB's own answer
    assert info.value.response["Error"]["Code"] == "ProvisionedThroughputExceededException"
    now = capacity(lab)
    assert (now["waiting"], now["in_service"], now["served"]) == (0, 1, base["served"])

    holder_lb.set_down(True)  # cuts the connection and its 30 s service time
    try:
        thread.join(10)
        assert not thread.is_alive()
        assert wait_until(lambda: capacity(lab)["in_service"] == 0, 10)
    finally:
        holder_lb.set_down(False)
    assert outcome and not isinstance(outcome[0], ReadTimeoutError), outcome
    after = capacity(lab)
    assert (after["served"], after["cancelled"]) == (base["served"], base["cancelled"] + 1)


def test_capacity_routes_status_metrics_and_reset(
    lab: Lab, lab_info: LabInfo, config: dict[str, Any], unlimited_after: None
) -> None:
    status, body = control(lab_info, "dynamodb/capacity")
    assert status == 200 and (body["slots"], body["service_time"]) == (None, 0.0)
    status, body = control(lab_info, "dynamodb/capacity", {"slots": 2, "service_time": 0.05})
    assert status == 200 and (body["slots"], body["service_time"]) == (2, 0.05)
    status, body = control(lab_info, "dynamodb/capacity", {"service_time": 0.1})  # slots kept
    assert (body["slots"], body["service_time"]) == (2, 0.1)
    assert control(lab_info, "status")[1]["dynamodb"]["capacity"] == capacity(lab)
    with urllib.request.urlopen(f"{lab_info.api_url}/metrics", timeout=5) as response:
        lines = response.read().decode().splitlines()
    assert "chaos_dynamo_dynamodb_capacity_slots 2" in lines
    assert "chaos_dynamo_dynamodb_capacity_service_time_seconds 0.1" in lines
    assert "# TYPE chaos_dynamo_dynamodb_capacity_served_total counter" in lines
    assert any(line.startswith("chaos_dynamo_dynamodb_capacity_waiting ") for line in lines)

    lb_actions.reset_lb_faults(configuration=config)  # the general rollback resets it too
    assert (capacity(lab)["slots"], capacity(lab)["service_time"]) == (None, 0.0)
    with urllib.request.urlopen(f"{lab_info.api_url}/metrics", timeout=5) as response:
        assert "chaos_dynamo_dynamodb_capacity_slots +Inf" in response.read().decode().splitlines()
    lb_actions.set_dynamodb_capacity(slots=3, service_time=0.01, configuration=config)
    after = lb_actions.reset_dynamodb_capacity(configuration=config)
    assert (after["slots"], after["service_time"]) == (None, 0.0)

    status, body = control(lab_info, "no-such-route")
    assert status == 404
    assert {"GET /_chaos_dynamo/dynamodb/capacity", "POST /_chaos_dynamo/dynamodb/capacity"} <= set(body["routes"])


def test_bad_capacity_input_names_the_field_and_changes_nothing(
    lab: Lab, lab_info: LabInfo, config: dict[str, Any], unlimited_after: None
) -> None:
    lb_actions.set_dynamodb_capacity(slots=3, service_time=0.01, configuration=config)
    before = control(lab_info, "dynamodb/capacity")[1]
    for body, field in (({"slots": 0}, "capacity.slots"), ({"slots": "2"}, "capacity.slots"),
                        ({"slots": True}, "capacity.slots"), ({"slots": 1.5}, "capacity.slots"),
                        ({"service_time": -1}, "capacity.service_time"),
                        ({"service_time": 61}, "capacity.service_time"),
                        ({"slots": 1, "service_time": 99}, "capacity.service_time"),
                        ({"slots": 1, "burst": 4}, "capacity.burst"),
                        ([1, 2], "capacity")):
        status, answer = control(lab_info, "dynamodb/capacity", body)
        assert (status, answer.get("field")) == (400, field), (body, answer)
    for kwargs, field in (({"slots": 0}, "slots"), ({"slots": True}, "slots"),
                          ({"service_time": -0.5}, "service_time"),
                          ({"service_time": float("nan")}, "service_time")):
        with pytest.raises(ConfigError) as info:
            lb_actions.set_dynamodb_capacity(configuration=config, **kwargs)
        assert info.value.field == field
    for seconds, service_time, field in ((0, 0.1, "seconds"), (-1, 0.1, "seconds"), (True, 0.1, "seconds"),
                                         (3601, 0.1, "seconds"), (1, 61, "service_time"),
                                         (1, "slow", "service_time")):
        with pytest.raises(ConfigError) as info:
            lb_actions.slow_dynamodb_for(seconds, service_time, configuration=config)  # type: ignore[arg-type]
        assert info.value.field == field
    assert control(lab_info, "dynamodb/capacity")[1] == before


def test_slow_dynamodb_for_slows_then_restores_the_previous_service_time(
    lab: Lab, config: dict[str, Any], monkeypatch: pytest.MonkeyPatch, unlimited_after: None
) -> None:
    lb_actions.set_dynamodb_capacity(slots=2, service_time=0.01, configuration=config)
    hold = HoldClock(lambda: capacity(lab))
    monkeypatch.setattr(lb_actions, "_clock", hold)
    result = lb_actions.slow_dynamodb_for(42.0, 0.3, configuration=config)
    assert hold.seen_during is not None and (hold.seen_during["slots"], hold.seen_during["service_time"]) == (2, 0.3)
    assert len(hold.slept) == 1 and 41.0 < hold.slept[0] <= 42.0
    assert (result["before"]["service_time"], result["during"]["service_time"], result["after"]["service_time"]) == (
        0.01, 0.3, 0.01)
    assert result["after"]["slots"] == 2 and result["seconds"] == 42.0
    assert result["slowed_at"] <= result["restored_at"]
    assert (capacity(lab)["slots"], capacity(lab)["service_time"]) == (2, 0.01)


def test_slow_dynamodb_for_really_waits(lab: Lab, config: dict[str, Any], unlimited_after: None) -> None:
    start = time.monotonic()
    result = lb_actions.slow_dynamodb_for(0.1, 0.05, configuration=config)
    assert time.monotonic() - start >= 0.1
    assert result["during"]["service_time"] == 0.05
    assert (capacity(lab)["slots"], capacity(lab)["service_time"]) == (None, 0.0)


@pytest.mark.parametrize("interrupt", [KeyboardInterrupt(), SystemExit(1), RuntimeError("the run was aborted")],
                         ids=["ctrl-c", "exit", "error"])
def test_slow_dynamodb_for_restores_when_the_wait_is_interrupted(
    lab: Lab, config: dict[str, Any], monkeypatch: pytest.MonkeyPatch, interrupt: BaseException,
    unlimited_after: None
) -> None:
    lb_actions.set_dynamodb_capacity(slots=4, service_time=0.02, configuration=config)
    hold = HoldClock(lambda: capacity(lab), interrupt)
    monkeypatch.setattr(lb_actions, "_clock", hold)
    with pytest.raises(type(interrupt)):
        lb_actions.slow_dynamodb_for(600.0, 1.5, configuration=config)
    assert hold.seen_during is not None and hold.seen_during["service_time"] == 1.5
    assert (capacity(lab)["slots"], capacity(lab)["service_time"]) == (4, 0.02)


def test_every_lb_of_the_lab_queues_for_the_same_slots(lab: Lab) -> None:
    assert lab.fleet is not None
    assert all(lb.capacity is lab.fleet.capacity for lb in lab.fleet)
