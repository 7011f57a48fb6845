"""The assembled lab over real sockets: DNS answers, DynamoDB through the endpoint's name,
the empty endpoint, counters, metrics and propagation."""

from __future__ import annotations

import socket
import urllib.request
import uuid
from collections import Counter
from typing import Any

import boto3
import dns.message
import dns.query
import dns.rcode
import pytest
from botocore.config import Config
from botocore.exceptions import EndpointConnectionError

from chaos_dynamo.clock import wait_until
from chaos_dynamo.config import load_topology
from chaos_dynamo.endpoint import actions, probes
from chaos_dynamo.lab.lab import Lab
from chaos_dynamo.lab.state import LabInfo
from chaos_dynamo.shim import lab_resolver
from tests.conftest import can_bind
from tests.conftest import control as lab_control

pytestmark = pytest.mark.integration


def ask(info: LabInfo, name: str, qtype: str = "A", tcp: bool = False) -> dns.message.Message:
    query = dns.message.make_query(name, qtype)
    send = dns.query.tcp if tcp else dns.query.udp
    return send(query, info.dns_host, port=info.dns_port, timeout=2.0)


def addresses(response: dns.message.Message) -> list[str]:
    return [item.to_text() for rrset in response.answer for item in rrset if rrset.rdtype in (1, 28)]


def ddb_client(info: LabInfo, url: str | None = None) -> Any:
    return boto3.client(
        "dynamodb", endpoint_url=url or info.dynamodb_url(), region_name=info.region,
        aws_access_key_id="testing", aws_secret_access_key="testing",
        config=Config(retries={"max_attempts": 1, "mode": "standard"}, connect_timeout=2, read_timeout=5),
    )


def test_endpoint_and_variants_answer_over_udp_and_tcp(lab_info: LabInfo) -> None:
    lb_addresses = {lb["address"] for lb in lab_info.load_balancers}
    for tcp in (False, True):
        response = ask(lab_info, "dynamodb.us-east-1.amazonaws.com", tcp=tcp)
        assert response.rcode() == dns.rcode.NOERROR
        assert response.flags & dns.flags.AA
        got = addresses(response)
        assert len(got) == 1 and got[0] in lb_addresses
    fips = ask(lab_info, "DynamoDB-FIPS.us-east-1.amazonaws.com")  # names are case-insensitive
    assert addresses(fips)[0] in lb_addresses
    v6 = ask(lab_info, "dynamodb.us-east-1.api.aws", "AAAA")
    assert addresses(v6)[0] in {f"::ffff:{a}" for a in lb_addresses}


def test_names_that_never_existed_and_names_outside_the_lab(lab_info: LabInfo) -> None:
    assert ask(lab_info, "nothing-here.us-east-1.amazonaws.com").rcode() == dns.rcode.NXDOMAIN
    assert ask(lab_info, "example.com").rcode() == dns.rcode.REFUSED


def test_weighted_answers_follow_the_plan_weights(lab_info: LabInfo) -> None:
    weights = {lb["address"]: lb["weight"] for lb in lab_info.load_balancers}
    total_weight = sum(weights.values())
    n = 1200
    seen = Counter(addresses(ask(lab_info, "dynamodb.us-east-1.amazonaws.com"))[0] for _ in range(n))
    assert set(seen) <= set(weights)
    for address, weight in weights.items():
        p = weight / total_weight
        sigma = (n * p * (1 - p)) ** 0.5
        # Five standard deviations: a real skew fails, chance essentially never does.
        assert abs(seen[address] - n * p) < 5 * sigma, (address, seen[address], n * p)


def test_dynamodb_through_the_endpoint_name_and_lb_counts(lab: Lab, lab_info: LabInfo) -> None:
    assert lab.fleet is not None
    api = ddb_client(lab_info, lab_info.api_url)
    table = f"t-{uuid.uuid4().hex[:8]}"
    api.create_table(TableName=table, KeySchema=[{"AttributeName": "k", "KeyType": "HASH"}],
                     AttributeDefinitions=[{"AttributeName": "k", "AttributeType": "S"}],
                     BillingMode="PAY_PER_REQUEST")
    before = lab.fleet.counters()
    with lab_resolver(lab_info.dns, zones=list(lab_info.zones)):
        client = ddb_client(lab_info)
        for i in range(5):
            client.put_item(TableName=table, Item={"k": {"S": str(i)}})
        items = [client.get_item(TableName=table, Key={"k": {"S": str(i)}})["Item"] for i in range(3)]
    assert [i["k"]["S"] for i in items] == ["0", "1", "2"]
    after = lab.fleet.counters()

    def op_total(counters: dict[str, Any], op: str) -> int:
        return sum(v.get("by_operation", {}).get(op, 0) for k, v in counters.items()
                   if isinstance(v, dict) and k != "total")

    assert op_total(after, "PutItem") - op_total(before, "PutItem") == 5
    assert op_total(after, "GetItem") - op_total(before, "GetItem") == 3


def test_emptied_endpoint_is_nodata_and_boto3_cannot_connect(lab_info: LabInfo, config: dict[str, Any],
                                                             restore_after: None) -> None:
    assert probes.dynamodb_roundtrip(configuration=config) is True
    result = actions.empty_endpoint(configuration=config)
    assert result["deleted_records"] == len(lab_info.load_balancers)
    response = ask(lab_info, "dynamodb.us-east-1.amazonaws.com")
    # What resolvers saw in us-east-1: a normal answer with nothing in it.
    assert response.rcode() == dns.rcode.NOERROR
    assert addresses(response) == []
    assert probes.endpoint_answer(configuration=config) | {"addresses": []} == {
        "name": "dynamodb.us-east-1.amazonaws.com", "rcode": "NOERROR", "addresses": [], "count": 0}
    with lab_resolver(lab_info.dns, zones=list(lab_info.zones)):
        with pytest.raises(socket.gaierror):
            socket.getaddrinfo("dynamodb.us-east-1.amazonaws.com", 80)
        with pytest.raises(EndpointConnectionError):
            ddb_client(lab_info).list_tables()
    assert probes.dynamodb_roundtrip(configuration=config) is False
    # The other endpoints are untouched.
    assert len(addresses(ask(lab_info, "dynamodb-fips.us-east-1.amazonaws.com"))) == 1

    restored = actions.restore_endpoint(configuration=config)
    assert restored["generation"] == 1
    assert len(addresses(ask(lab_info, "dynamodb.us-east-1.amazonaws.com"))) == 1
    assert probes.dynamodb_roundtrip(configuration=config) is True


def test_dns_counters_and_log_match_what_was_sent(lab: Lab, lab_info: LabInfo) -> None:
    assert lab.dns is not None
    name = f"counted-{uuid.uuid4().hex[:6]}.us-east-1.amazonaws.com"
    for _ in range(7):
        ask(lab_info, name)
    for _ in range(3):
        ask(lab_info, name, "AAAA")
    log = [r for r in lab.dns.query_log() if r.name.rstrip(".") == name]
    assert Counter(r.qtype for r in log) == {"A": 7, "AAAA": 3}
    assert all(r.rcode == "NXDOMAIN" and r.client == "127.0.0.1" for r in log)
    by_name = lab.dns.counters()["by_name"]
    assert by_name.get(name + ".", by_name.get(name)) == 10


def test_metrics_endpoint_exposes_dns_and_lb_counters(lab_info: LabInfo) -> None:
    ask(lab_info, "dynamodb.us-east-1.amazonaws.com")
    with urllib.request.urlopen(f"{lab_info.api_url}/metrics", timeout=5) as response:
        text = response.read().decode()
        assert response.headers["Content-Type"].startswith("text/plain")
    assert "# TYPE chaos_dynamo_dns_queries" in text
    assert 'chaos_dynamo_lb_requests' in text
    assert 'lb="lb-1"' in text
    assert "chaos_dynamo_route53_changes_accepted_total" in text


def test_changes_go_pending_then_insync_and_dns_follows() -> None:
    topology = load_topology(None, seed=5, propagation_delay=2.0, resync_interval=0.0)
    with Lab(topology) as slow_lab:
        info = slow_lab.info()
        route53 = slow_lab.client("route53")
        zone_id = info.endpoints[0].zone_id
        name = "canary.us-east-1.amazonaws.com"
        ids = set()
        for value in ("127.0.0.101", "127.0.0.102"):
            response = route53.change_resource_record_sets(HostedZoneId=zone_id, ChangeBatch={"Changes": [
                {"Action": "UPSERT", "ResourceRecordSet": {
                    "Name": name, "Type": "A", "TTL": 5, "ResourceRecords": [{"Value": value}]}}]})
            change = response["ChangeInfo"]
            assert change["Status"] == "PENDING"
            ids.add(change["Id"])
            # Until INSYNC the DNS still answers the old data, then it follows.
            assert value not in addresses(ask(info, name))
            assert wait_until(lambda c=change: route53.get_change(Id=c["Id"])["ChangeInfo"]["Status"] == "INSYNC",
                              timeout=10)
            assert addresses(ask(info, name)) == [value]
        assert len(ids) == 2


def test_activities_refuse_bad_input_and_change_nothing(lab_info: LabInfo, config: dict[str, Any]) -> None:
    from chaos_dynamo.errors import ConfigError, SafetyError
    from chaos_dynamo.lbfleet import actions as lb_actions

    def state() -> tuple[int, dict[str, Any]]:
        return probes.endpoint_addresses(configuration=config), lb_actions.reset_lb_faults(configuration=config)

    before = state()
    with pytest.raises(ConfigError) as info:
        actions.empty_endpoint(endpoint="nope.example.com", configuration=config)
    assert info.value.field == "endpoint" and "dynamodb.us-east-1.amazonaws.com" in str(info.value)
    with pytest.raises(ConfigError) as info:
        actions.empty_endpoint(timeout=-1, configuration=config)
    assert info.value.field == "timeout"
    with pytest.raises(ConfigError) as info:
        probes.endpoint_addresses(qtype="MX", configuration=config)
    assert info.value.field == "qtype"
    with pytest.raises(ConfigError, match="^lb: 'lb-99'"):
        lb_actions.set_lb_faults("lb-99", down=True, configuration=config)
    with pytest.raises(ConfigError, match="^faults.latency: "):
        lb_actions.set_lb_faults("lb-1", latency=-5, configuration=config)
    with pytest.raises(SafetyError, match="not a 127.x.x.x address"):
        actions.empty_endpoint(configuration={"chaos_dynamo_api": "http://192.0.2.10:4566"})
    assert state() == before


def test_lb_fault_actions_reach_the_fleet(lab: Lab, config: dict[str, Any]) -> None:
    from chaos_dynamo.lbfleet import actions as lb_actions

    assert lab.fleet is not None
    try:
        knobs = lb_actions.set_lb_faults("lb-2", latency=0.25, error_rate=0.5, configuration=config)
        assert knobs["latency"] == 0.25 and knobs["error_rate"] == 0.5
        assert lab.fleet["lb-2"].faults()["latency"] == 0.25
    finally:
        lb_actions.reset_lb_faults(configuration=config)
    assert lab.fleet["lb-2"].faults()["latency"] == 0.0


# --- review fixes: refused input, failed starts, partial stops, loopback info -------------


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def control(info: LabInfo, path: str, body: Any = None) -> tuple[int, dict[str, Any]]:
    status, answer = lab_control(info, path, body, timeout=5.0)
    return status, answer


def test_an_invalid_topology_is_refused_before_anything_binds() -> None:
    import dataclasses

    from chaos_dynamo.errors import ConfigError

    topology = dataclasses.replace(load_topology(None), host="0.0.0.0")
    with pytest.raises(ConfigError) as info:
        Lab(topology)
    assert info.value.field == "lab.host"


def test_an_unreachable_backend_is_one_clear_lab_error() -> None:
    from chaos_dynamo.errors import LabError

    backend = f"http://127.0.0.1:{free_port()}"
    the_lab = Lab(load_topology(None, backend=backend, resync_interval=0.0))
    with pytest.raises(LabError, match=f"the emulator at {backend} did not answer"):
        the_lab.start()
    assert the_lab.dns is None and the_lab.fleet is None and the_lab.front is None


def test_stop_stops_every_part_even_when_one_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    the_lab = Lab(load_topology(None, seed=6, propagation_delay=0.0, resync_interval=0.0))
    info = the_lab.start()
    assert the_lab.front is not None
    front_stop = the_lab.front.stop

    def broken() -> None:
        raise RuntimeError("front would not stop")

    monkeypatch.setattr(the_lab.front, "stop", broken)
    try:
        with pytest.raises(RuntimeError, match="front would not stop"):
            the_lab.stop()
        # The parts after the failing one were still stopped: their ports are free.
        assert can_bind(socket.SOCK_DGRAM, info.dns_host, info.dns_port)
        assert can_bind(socket.SOCK_STREAM, info.dns_host, info.dns_port)
        for lb in info.load_balancers:
            assert can_bind(socket.SOCK_STREAM, lb["address"], info.lb_port)
        assert the_lab.dns is None and the_lab.fleet is None and the_lab.route53 is None
    finally:
        front_stop()


def test_control_routes_name_a_bad_since_and_error_status(lab: Lab, lab_info: LabInfo) -> None:
    assert lab.fleet is not None
    status, body = control(lab_info, "dns/log?since=abc")
    assert status == 400 and body["field"] == "since", body
    status, body = control(lab_info, "lb/log?since=nan")
    assert status == 400 and body["field"] == "since", body
    before = lab.fleet["lb-3"].faults()
    status, body = control(lab_info, "lb/lb-3/faults", {"latency": 0.5, "error_rate": 0.5, "error_status": "x"})
    assert status == 400 and body["field"] == "faults.error_status", body
    assert "400" in body["error"] and "500" in body["error"]
    status, body = control(lab_info, "lb/lb-3/faults", {"error_rate": 0.5, "error_status": 503})
    assert status == 400 and body["field"] == "faults.error_status", body
    assert lab.fleet["lb-3"].faults() == before  # a refused request changed no knob


def test_logs_and_info_are_plain_json(lab_info: LabInfo) -> None:
    ask(lab_info, "dynamodb.us-east-1.amazonaws.com")
    status, log = control(lab_info, "dns/log?since=0")
    assert status == 200 and log and {"name", "qtype", "rcode"} <= set(log[-1])
    status, info = control(lab_info, "info")
    assert status == 200 and LabInfo.from_json(__import__("json").dumps(info)) == lab_info


def test_a_silent_lab_dns_is_a_lab_error_not_an_empty_endpoint(lab_info: LabInfo, tmp_path: Any) -> None:
    import dataclasses

    from chaos_dynamo.errors import LabError
    from chaos_dynamo.lab.state import write_state

    state = tmp_path / "dead-dns.json"
    write_state(dataclasses.replace(lab_info, dns_port=free_port(socket.SOCK_DGRAM)), state)
    with pytest.raises(LabError, match=r"the lab DNS at 127\.0\.0\.1:\d+ did not answer"):
        probes.endpoint_addresses(configuration={"chaos_dynamo_state": str(state)})


def test_a_non_string_endpoint_is_named(config: dict[str, Any]) -> None:
    from chaos_dynamo.errors import ConfigError

    for activity in (probes.endpoint_answer, probes.dynamodb_roundtrip, actions.empty_endpoint):
        with pytest.raises(ConfigError) as info:
            activity(endpoint=5, configuration=config)
        assert info.value.field == "endpoint"


@pytest.mark.parametrize(("field", "change"), [
    ("api_url", {"api_url": "http://192.0.2.1:4566"}),
    ("dns_host", {"dns_host": "192.0.2.53"}),
    ("emulator_url", {"emulator_url": "http://moto.example.com:5000"}),
])
def test_lab_info_from_a_state_file_must_be_loopback(lab_info: LabInfo, tmp_path: Any, field: str,
                                                     change: dict[str, Any]) -> None:
    import dataclasses

    from chaos_dynamo.errors import SafetyError
    from chaos_dynamo.lab.state import write_state

    state = tmp_path / "elsewhere.json"
    write_state(dataclasses.replace(lab_info, **change), state)
    with pytest.raises(SafetyError, match=f"^{field}: refusing") as info:
        actions.empty_endpoint(configuration={"chaos_dynamo_state": str(state)})
    assert str(state) in str(info.value)


def test_lab_info_from_the_environment_is_checked(lab_info: LabInfo, monkeypatch: pytest.MonkeyPatch) -> None:
    from chaos_dynamo.endpoint import _lab
    from chaos_dynamo.errors import SafetyError

    monkeypatch.setenv("CHAOS_DYNAMO_API", lab_info.api_url)
    assert _lab.lab_info(None) == lab_info
    monkeypatch.setenv("CHAOS_DYNAMO_API", "http://192.0.2.7:4566")
    with pytest.raises(SafetyError, match="chaos_dynamo_api"):
        _lab.lab_info(None)
