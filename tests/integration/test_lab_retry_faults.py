"""The lab's faults for retry hypotheses, on the session lab over real sockets: the
availability timeline, service attribution in the LB log, closing LB connections,
injected DynamoDB errors by code, and an endpoint outage of a given length."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from chaos_dynamo.dns.client import query
from chaos_dynamo.endpoint import actions
from chaos_dynamo.errors import ConfigError
from chaos_dynamo.lab.lab import Lab
from chaos_dynamo.lab.state import LabInfo
from chaos_dynamo.lbfleet import actions as lb_actions
from chaos_dynamo.lbfleet.proxy import ERROR_CODES
from chaos_dynamo.services.attribution import SERVICE_HEADER
from tests.conftest import HoldClock, control

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

PRIMARY = "dynamodb.us-east-1.amazonaws.com"
DUAL_STACK = "dynamodb.us-east-1.api.aws"


@pytest.fixture
def healthy_after(config: dict[str, Any], restore_after: None) -> Iterator[None]:
    """Leave the shared lab as found: faults reset here, endpoints restored by restore_after."""
    yield
    lb_actions.reset_lb_faults(configuration=config)


def client_to(url: str, **retries: Any) -> Any:
    """A DynamoDB client straight at one LB; by default one attempt per call."""
    return boto3.session.Session().client(
        "dynamodb", endpoint_url=url, region_name="us-east-1",
        aws_access_key_id="testing", aws_secret_access_key="testing",
        config=Config(retries=retries or {"total_max_attempts": 1}, connect_timeout=5, read_timeout=10),
    )


def reachable(info: LabInfo, name: str, samples: int = 300) -> int:
    """Distinct A plus distinct AAAA addresses the lab DNS answers for ``name`` over many
    queries (each weighted answer holds one LB; 300 draws miss none of six)."""
    total = 0
    for qtype in ("A", "AAAA"):
        seen: set[str] = set()
        for _ in range(samples):
            answer = query(info.dns, name, qtype)
            assert answer.rcode == "NOERROR"
            seen.update(answer.addresses)
            if not answer.addresses:
                break  # NODATA: every weighted draw would be empty too
        total += len(seen)
    return total


# --- availability timeline -----------------------------------------------------------------


def test_timeline_starts_at_lab_start_with_what_the_dns_answers(lab: Lab, lab_info: LabInfo) -> None:
    entries = lab.availability()
    first = {e["endpoint"]: e for e in reversed(entries)}  # each endpoint's first entry
    assert set(first) == {ep.name for ep in lab_info.endpoints}
    assert all(e["time"] <= lab.started_at for e in first.values())
    lbs = len(lab_info.load_balancers)
    assert first[PRIMARY]["addresses"] == lbs
    assert first[DUAL_STACK]["addresses"] == 2 * lbs  # A and AAAA (v4-mapped) per LB
    for ep in lab_info.endpoints:
        assert lab.availability(ep.name)[-1]["addresses"] == reachable(lab_info, ep.name)


def test_empty_and_restore_are_timed_where_the_dns_switches(
    lab: Lab, lab_info: LabInfo, config: dict[str, Any], healthy_after: None
) -> None:
    assert lab.dns is not None
    others = {name: lab.availability(name) for name in (DUAL_STACK, "dynamodb-fips.us-east-1.amazonaws.com")}
    start = time.time()
    assert query(lab_info.dns, PRIMARY).addresses  # answered from the full plan
    before_empty = time.time()
    actions.empty_endpoint(configuration=config)
    after_empty = time.time()
    assert query(lab_info.dns, PRIMARY).addresses == ()
    before_restore = time.time()
    actions.restore_endpoint(endpoint=PRIMARY, configuration=config)
    after_restore = time.time()

    new = [e for e in lab.availability(PRIMARY) if e["time"] >= start]
    assert [e["addresses"] for e in new] == [0, len(lab_info.load_balancers)]
    emptied, restored = new[0]["time"], new[1]["time"]
    assert before_empty <= emptied <= after_empty
    assert before_restore <= restored <= after_restore
    assert reachable(lab_info, PRIMARY) == new[1]["addresses"]
    # The DNS log agrees: answers before the switch had addresses, none between the two.
    log = [r for r in lab.dns.query_log(since=start, name=PRIMARY) if r.qtype == "A"]
    assert log and all((r.answers > 0) == (r.time < emptied or r.time >= restored) for r in log), log
    assert {name: lab.availability(name) for name in others} == others  # untouched endpoints

    status, body = control(lab_info, f"availability?endpoint={PRIMARY.upper()}.")
    assert (status, body) == (200, lab.availability(PRIMARY))
    status, body = control(lab_info, "availability")
    assert status == 200 and body == lab.availability()


def test_availability_route_names_a_bad_endpoint_and_is_listed(lab_info: LabInfo) -> None:
    status, body = control(lab_info, "availability?endpoint=nope.example.com")
    assert status == 400 and body["field"] == "endpoint" and PRIMARY in body["error"]
    status, body = control(lab_info, "no-such-route")
    assert status == 404
    assert "GET /_chaos_dynamo/availability?endpoint=NAME" in body["routes"]
    assert "POST /_chaos_dynamo/lb/connections/close" in body["routes"]


# --- attribution header ---------------------------------------------------------------------


def test_the_service_header_is_recorded_whatever_its_case(lab: Lab, lab_info: LabInfo) -> None:
    assert lab.fleet is not None
    lb = lab.fleet["lb-2"]
    since = time.time()
    tagged = client_to(lb.url)

    def tag(request: Any, **_: Any) -> None:
        request.headers[SERVICE_HEADER.lower()] = "checkout"

    tagged.meta.events.register("before-sign.dynamodb", tag)
    tagged.list_tables()
    client_to(lb.url).list_tables()
    records = lb.request_log(since=since)
    assert [(r.operation, r.service) for r in records] == [("ListTables", "checkout"), ("ListTables", "")]
    status, log = control(lab_info, f"lb/log?since={since}")
    assert status == 200 and [r["service"] for r in log if r["lb"] == "lb-2"] == ["checkout", ""]


# --- closing connections --------------------------------------------------------------------


def test_close_connections_makes_a_keep_alive_client_reconnect(
    lab: Lab, config: dict[str, Any], healthy_after: None
) -> None:
    assert lab.fleet is not None
    lb = lab.fleet["lb-3"]
    client = client_to(lb.url)
    accepted = lb.counters()["connections_accepted"]
    since = time.time()
    client.list_tables()
    client.list_tables()
    assert lb.counters()["connections_accepted"] == accepted + 1  # kept alive

    closed = lb_actions.close_connections(configuration=config)
    assert set(closed) == {spec.name for spec in lab.topology.load_balancers}
    assert closed["lb-3"] >= 1
    assert lb.counters()["connections_closed"] >= 1
    client.list_tables()  # urllib3 sees the closed connection and opens a new one
    ports = [r.client_port for r in lb.request_log(since=since)]
    assert len(ports) == 3 and ports[0] == ports[1] != ports[2]
    assert lb.counters()["connections_accepted"] == accepted + 2


# --- injected DynamoDB errors ---------------------------------------------------------------


@pytest.mark.parametrize("code", list(ERROR_CODES))
def test_each_error_code_reaches_boto3_and_boto3_retries_it(
    lab: Lab, config: dict[str, Any], code: str, healthy_after: None
) -> None:
    assert lab.fleet is not None
    lb = lab.fleet["lb-4"]
    knobs = lb_actions.throttle_dynamodb(1.0, code, lb="lb-4", configuration=config)
    assert list(knobs) == ["lb-4"]
    assert knobs["lb-4"] | {"error_rate": 1.0, "error_code": code, "error_status": ERROR_CODES[code]} == knobs["lb-4"]
    assert lab.fleet["lb-5"].faults()["error_rate"] == 0.0  # only the named LB

    with pytest.raises(ClientError) as info:
        client_to(lb.url).list_tables()
    assert info.value.response["Error"]["Code"] == code
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == ERROR_CODES[code]

    # botocore's own retry rules take the code as retryable: two attempts, two requests.
    for mode in ("legacy", "standard"):
        requests = lb.counters()["requests"]
        with pytest.raises(ClientError) as info:
            client_to(lb.url, mode=mode, total_max_attempts=2).list_tables()
        assert info.value.response["ResponseMetadata"]["RetryAttempts"] == 1, mode
        assert lb.counters()["requests"] == requests + 2, mode

    lb_actions.reset_lb_faults(configuration=config)
    assert lb.faults()["error_rate"] == 0.0
    client_to(lb.url).list_tables()


def test_throttle_without_lb_covers_every_lb(lab: Lab, config: dict[str, Any], healthy_after: None) -> None:
    assert lab.fleet is not None
    knobs = lb_actions.throttle_dynamodb(0.25, configuration=config)
    assert set(knobs) == {lb.name for lb in lab.fleet}
    for lb in lab.fleet:
        faults = lb.faults()
        assert (faults["error_rate"], faults["error_code"], faults["error_status"]) == (
            0.25, "ProvisionedThroughputExceededException", 400)
    lb_actions.reset_lb_faults(configuration=config)
    assert {lb.faults()["error_rate"] for lb in lab.fleet} == {0.0}


def test_bad_fault_inputs_name_the_field_and_change_nothing(
    lab: Lab, lab_info: LabInfo, config: dict[str, Any], healthy_after: None
) -> None:
    fleet = lab.fleet
    assert fleet is not None

    def state() -> tuple[Any, ...]:
        return ({lb.name: lb.faults() for lb in fleet}, lab.availability(),
                query(lab_info.dns, PRIMARY).rcode, bool(query(lab_info.dns, PRIMARY).addresses))

    before = state()
    for kwargs, field in (({"rate": 1.5}, "rate"), ({"rate": True}, "rate"),
                          ({"rate": 0.5, "code": "SlowDown"}, "code"),
                          ({"rate": 0.5, "lb": "lb-99"}, "lb")):
        with pytest.raises(ConfigError) as info:
            lb_actions.throttle_dynamodb(configuration=config, **kwargs)
        assert info.value.field == field
        if field == "code":
            assert all(code in str(info.value) for code in ERROR_CODES)
    status, body = control(lab_info, "lb/lb-1/faults", {"latency": 0.5, "error_rate": 1.0, "error_code": "Nope"})
    assert status == 400 and body["field"] == "faults.error_code"
    assert all(code in body["error"] for code in ERROR_CODES)
    status, body = control(lab_info, "lb/lb-1/faults", {"error_rate": 1.0, "error_code": "ThrottlingException",
                                                        "error_status": 503})
    assert status == 400 and body["field"] == "faults.error_status"
    for seconds in (0, -1, 3601, True, "5", float("nan")):
        with pytest.raises(ConfigError) as info:
            actions.empty_endpoint_for(seconds, configuration=config)  # type: ignore[arg-type]
        assert info.value.field == "seconds"
    with pytest.raises(ConfigError) as info:
        actions.empty_endpoint_for(1.0, endpoint="nope.example.com", configuration=config)
    assert info.value.field == "endpoint"
    with pytest.raises(ConfigError) as info:
        actions.empty_endpoint_for(1.0, close_connections="yes", configuration=config)  # type: ignore[arg-type]
    assert info.value.field == "close_connections"
    assert state() == before


# --- an outage of a given length --------------------------------------------------------------


def test_empty_endpoint_for_empties_holds_and_restores(
    lab: Lab, lab_info: LabInfo, config: dict[str, Any], monkeypatch: pytest.MonkeyPatch,
    healthy_after: None
) -> None:
    hold = HoldClock(lambda: query(lab_info.dns, PRIMARY).addresses)
    monkeypatch.setattr(actions, "_clock", hold)
    start = time.time()
    result = actions.empty_endpoint_for(42.0, configuration=config)
    assert hold.seen_during == ()  # empty while held
    assert len(hold.slept) == 1 and 41.0 < hold.slept[0] <= 42.0
    assert result["endpoint"] == PRIMARY and result["seconds"] == 42.0
    assert set(result["closed_connections"]) == {lb["name"] for lb in lab_info.load_balancers}
    assert start <= result["emptied_at"] <= result["restored_at"] <= time.time()
    timeline = [e for e in lab.availability(PRIMARY) if e["time"] >= start]
    assert [e["addresses"] for e in timeline] == [0, len(lab_info.load_balancers)]
    assert timeline[0]["time"] <= result["emptied_at"] and timeline[1]["time"] <= result["restored_at"]
    assert query(lab_info.dns, PRIMARY).addresses


@pytest.mark.parametrize("interrupt", [KeyboardInterrupt(), RuntimeError("the run was aborted")],
                         ids=["ctrl-c", "error"])
def test_empty_endpoint_for_restores_when_the_wait_is_interrupted(
    lab: Lab, lab_info: LabInfo, config: dict[str, Any], monkeypatch: pytest.MonkeyPatch,
    interrupt: BaseException, healthy_after: None
) -> None:
    hold = HoldClock(lambda: query(lab_info.dns, PRIMARY).addresses, interrupt)
    monkeypatch.setattr(actions, "_clock", hold)
    start = time.time()
    with pytest.raises(type(interrupt)):
        actions.empty_endpoint_for(600.0, close_connections=False, configuration=config)
    assert hold.seen_during == ()
    assert query(lab_info.dns, PRIMARY).addresses  # restored on the way out
    assert [e["addresses"] for e in lab.availability(PRIMARY) if e["time"] >= start] == [
        0, len(lab_info.load_balancers)]
