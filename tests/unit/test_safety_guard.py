"""The blast-radius guard on the real-AWS path (moto's in-process mock, no endpoint URL), with
every socket connection watched: nothing may ever reach a non-loopback address, and a refusal
sends nothing at all."""

from __future__ import annotations

import fnmatch
import http.server
import ipaddress
import json
import re
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import botocore.handlers
import pytest
from moto import mock_aws

from chaos_dynamo.config import EndpointSpec, default_topology
from chaos_dynamo.control.enactor import Endpoint, initial_records
from chaos_dynamo.endpoint import _lab, actions
from chaos_dynamo.errors import ConfigError, SafetyError
from chaos_dynamo.lab.state import EndpointInfo, LabInfo
from chaos_dynamo.lease.actions import expire_leases
from chaos_dynamo.plans import plan_from_fleet, upsert_changes
from chaos_dynamo.planstore import PlanStore
from chaos_dynamo.safety import dryrun
from chaos_dynamo.safety.guard import ACCOUNT_PLACEHOLDER, ALLOW_KEY
from chaos_dynamo.safety.target import AWS_TARGET_KEY, aws_endpoint, record_target, url_kind

ROOT = Path(__file__).resolve().parents[2]
ACCOUNT = "123456789012"  # what moto's STS answers
REGION = "us-east-1"
ZONE = "sandbox.example.com"
ENDPOINT = f"dynamodb.{ZONE}"
LEASES = "leases"
DYNAMODB_URL = f"https://dynamodb.{REGION}.amazonaws.com"
TEST_NET = "https://203.0.113.10"  # TEST-NET-3: must never be contacted


# --- every connection watched ------------------------------------------------------------

class Connections:
    """Every address a socket was asked to connect to during the test."""

    def __init__(self) -> None:
        self.attempts: list[Any] = []

    @property
    def remote(self) -> list[Any]:
        return [a for a in self.attempts if not _loopback(a)]


def _loopback(address: Any) -> bool:
    host = address[0] if isinstance(address, tuple) else str(address)
    return host in ("localhost", "::1") or str(host).startswith("127.")


def _ip_literal(host: Any) -> bool:
    try:
        ipaddress.ip_address(str(host))
    except ValueError:
        return False
    return True


@pytest.fixture(autouse=True)
def connections(monkeypatch: pytest.MonkeyPatch) -> Iterator[Connections]:
    """Refuse (and note) any connection to a non-loopback address; fail the test if one was tried."""
    seen = Connections()
    real_connect, real_create = socket.socket.connect, socket.create_connection

    def connect(self: socket.socket, address: Any) -> None:
        seen.attempts.append(address)
        if not _loopback(address):
            raise OSError(f"test guard: refused a connection to {address}")
        real_connect(self, address)

    def create_connection(address: Any, *args: Any, **kwargs: Any) -> socket.socket:
        seen.attempts.append(address)
        if not _loopback(address):
            raise OSError(f"test guard: refused a connection to {address}")
        return real_create(address, *args, **kwargs)

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if not _loopback(host) and not _ip_literal(host):  # a name lookup is traffic too
            seen.attempts.append((host, "getaddrinfo"))
            raise socket.gaierror(f"test guard: refused to look up {host}")
        return real_getaddrinfo(host, *args, **kwargs)

    real_getaddrinfo = socket.getaddrinfo
    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket, "create_connection", create_connection)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    yield seen
    assert seen.remote == [], f"connections to non-loopback addresses were attempted: {seen.remote}"


# --- a mocked sandbox account ------------------------------------------------------------

class Sandbox:
    """A mocked account with a hosted zone holding the endpoint's plan 1, the plan table and a
    lease table."""

    def __init__(self) -> None:
        self.route53 = boto3.client("route53", region_name=REGION)
        self.zone_id = self.route53.create_hosted_zone(Name=ZONE, CallerReference="t")["HostedZone"]["Id"]
        self.zone_id = self.zone_id.rsplit("/", 1)[-1]
        ddb = boto3.client("dynamodb", region_name=REGION)
        store = PlanStore(ddb, "chaos-dynamo-plans")
        store.ensure_table()
        plan = plan_from_fleet(1, [EndpointSpec(ENDPOINT, ZONE)], default_topology().load_balancers)
        store.put(plan)
        self.initial = upsert_changes(initial_records(plan, Endpoint(ENDPOINT, self.zone_id, False), 5))
        ddb.create_table(TableName=LEASES, KeySchema=[{"AttributeName": "lease_id", "KeyType": "HASH"}],
                         AttributeDefinitions=[{"AttributeName": "lease_id", "AttributeType": "S"}],
                         BillingMode="PAY_PER_REQUEST")
        self.dynamodb = ddb
        self.reset()

    def reset(self) -> None:
        """Plan 1 on the endpoint and four live leases, whatever the last test did."""
        self.route53.change_resource_record_sets(HostedZoneId=self.zone_id, ChangeBatch={"Changes": self.initial})
        for i in range(4):
            self.dynamodb.put_item(TableName=LEASES, Item={
                "lease_id": {"S": f"l{i}"}, "owner": {"S": "w"}, "expires_at": {"N": "4000000000"},
                "version": {"N": "1"}})

    def records(self) -> list[dict[str, Any]]:
        pages = self.route53.get_paginator("list_resource_record_sets").paginate(HostedZoneId=self.zone_id)
        return [r for page in pages for r in page["ResourceRecordSets"]]

    def leases(self) -> list[dict[str, Any]]:
        return sorted(self.dynamodb.scan(TableName=LEASES)["Items"], key=lambda i: i["lease_id"]["S"])

    def state(self) -> tuple[Any, ...]:
        return (json.dumps(self.records(), sort_keys=True), json.dumps(self.leases(), sort_keys=True))

    def target(self, **overrides: Any) -> dict[str, Any]:
        return {"hosted_zone_id": self.zone_id, "endpoints": [ENDPOINT], "region": REGION} | overrides

    def allow(self, **overrides: Any) -> dict[str, Any]:
        return {"aws_account_id": ACCOUNT, "region": REGION, "hosted_zone_id": self.zone_id,
                "dynamodb_tables": [LEASES]} | overrides

    def config(self, allow: dict[str, Any] | None = None, **target: Any) -> dict[str, Any]:
        config: dict[str, Any] = {AWS_TARGET_KEY: self.target(**target)}
        return config | ({ALLOW_KEY: allow} if allow is not None else {})


def _clean(mp: pytest.MonkeyPatch, state_dir: Path) -> None:
    """No AWS setting of the machine's, no lab, no dry run; the user's credentials in the environment."""
    import os

    for key in list(os.environ):
        if key.startswith(("AWS_", "CHAOS_DYNAMO_")):
            mp.delenv(key)
    mp.setenv("AWS_CONFIG_FILE", os.devnull)
    mp.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
    mp.setenv("AWS_EC2_METADATA_DISABLED", "true")
    mp.setenv("AWS_ACCESS_KEY_ID", "testing")
    mp.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    mp.setenv("AWS_DEFAULT_REGION", REGION)
    mp.setenv("CHAOS_DYNAMO_STATE", str(state_dir / "no-lab.json"))


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _clean(monkeypatch, tmp_path)


@pytest.fixture(scope="module")
def account(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    """One mocked account for the module (moto's mock: no endpoint URL, no socket)."""
    with pytest.MonkeyPatch.context() as mp:
        _clean(mp, tmp_path_factory.mktemp("state"))
        with mock_aws():
            yield Sandbox()


@pytest.fixture
def sandbox(account: Sandbox, clean_env: None) -> Sandbox:
    account.reset()
    return account


def tree_size(box: Sandbox) -> int:
    return sum(1 for r in box.records() if r["Name"].startswith("plan-000001."))


# --- classification ----------------------------------------------------------------------

@pytest.mark.parametrize(("url", "kind"), [
    (None, "remote"), ("", "remote"), ("http://127.0.0.1:4566", "loopback"), ("http://127.9.8.7", "loopback"),
    ("http://[::1]:8000", "loopback"), ("http://localhost:5000", "loopback"), (TEST_NET, "remote"),
    ("https://route53.amazonaws.com", "remote"), ("http://127.0.0.1.nip.io", "remote"),
    ("http://localhost.example.com", "remote"), ("http://[::ffff:127.0.0.1]", "remote"), ("not a url", "remote"),
])
def test_url_kind(url: str | None, kind: str) -> None:
    assert url_kind(url) == kind


def test_the_real_aws_target_uses_the_default_chain_not_the_labs_dummy_credentials(
        sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAUSERSOWNKEY")
    target = record_target(sandbox.config())
    assert target.lab is None and target.kind_for(target.route53) == "remote"
    assert target.route53.meta.endpoint_url == "https://route53.amazonaws.com"
    for client in (target.route53, target.dynamodb, target.sts()):
        assert client._request_signer._credentials.access_key == "AKIAUSERSOWNKEY"


# --- allowed -------------------------------------------------------------------------------

def test_an_allowed_account_region_and_zone_acts(sandbox: Sandbox) -> None:
    config = sandbox.config(sandbox.allow())
    emptied = actions.empty_endpoint(configuration=config)
    assert emptied["deleted_records"] == 6 and tree_size(sandbox) == 0
    assert emptied["safety"] == {"target": "remote", "where": emptied["safety"]["where"], "allowed_by": "allow-list",
                                 "account": ACCOUNT, "arn": f"arn:aws:sts::{ACCOUNT}:user/moto"}
    assert "real AWS" in emptied["safety"]["where"]
    restored = actions.restore_endpoint(configuration=config)
    assert restored["generation"] == 1 and tree_size(sandbox) == 6
    expired = expire_leases(2, LEASES, endpoint=DYNAMODB_URL, configuration=config)
    assert expired["expired"] == 2 and expired["safety"]["account"] == ACCOUNT


def test_the_refusal_gives_the_exact_json_that_allows_it(sandbox: Sandbox) -> None:
    config = sandbox.config()
    with pytest.raises(SafetyError) as refused:
        actions.empty_endpoint(configuration=config)
    message = str(refused.value)
    assert "empty_endpoint refused" in message and sandbox.zone_id in message and "Nothing was sent" in message
    match = re.search(r'"chaos_dynamo_allow": (\{.*?\})', message)
    assert match, message
    opt_in = json.loads(match.group(1))
    assert opt_in == {"aws_account_id": ACCOUNT_PLACEHOLDER, "region": REGION, "hosted_zone_id": sandbox.zone_id}
    with pytest.raises(ConfigError, match="configuration.chaos_dynamo_allow.aws_account_id"):
        actions.empty_endpoint(configuration=config | {ALLOW_KEY: opt_in})  # pasted as is: fill the account in
    assert tree_size(sandbox) == 6
    actions.empty_endpoint(configuration=config | {ALLOW_KEY: opt_in | {"aws_account_id": ACCOUNT}})
    assert tree_size(sandbox) == 0


# --- refused: nothing changed ------------------------------------------------------------------

REFUSALS: list[tuple[str, Callable[[Sandbox], dict[str, Any] | None], str]] = [
    ("no allow-list", lambda box: None, "is not the lab or a loopback endpoint"),
    ("wrong account", lambda box: box.allow(aws_account_id="111111111111"),
     f"STS GetCallerIdentity says its calls would act in account {ACCOUNT}"),
    ("wrong region", lambda box: box.allow(region="eu-west-1"), "region 'us-east-1'"),
    ("wrong zone", lambda box: box.allow(hosted_zone_id="Z9999999999"), "allows only 'Z9999999999'"),
    ("no zone named", lambda box: {"aws_account_id": ACCOUNT, "region": REGION}, "names no hosted zone"),
]
ACTIVITIES: list[tuple[str, Callable[[dict[str, Any]], Any]]] = [
    ("empty_endpoint", lambda c: actions.empty_endpoint(configuration=c)),
    ("restore_endpoint", lambda c: actions.restore_endpoint(configuration=c)),
    ("empty_endpoint_for", lambda c: actions.empty_endpoint_for(0.01, configuration=c)),
]


@pytest.mark.parametrize(("case", "allow", "expected"), REFUSALS, ids=[r[0] for r in REFUSALS])
@pytest.mark.parametrize(("activity", "call"), ACTIVITIES, ids=[a[0] for a in ACTIVITIES])
def test_refused_changes_nothing(sandbox: Sandbox, case: str, allow: Callable[[Sandbox], Any], expected: str,
                                 activity: str, call: Callable[[dict[str, Any]], Any]) -> None:
    if activity == "restore_endpoint":  # give the restore something to change
        sandbox.route53.change_resource_record_sets(HostedZoneId=sandbox.zone_id, ChangeBatch={"Changes": [
            {"Action": "DELETE", "ResourceRecordSet": r} for r in sandbox.records() if r["Type"] == "TXT"]})
    before = sandbox.state()
    with pytest.raises(SafetyError, match=re.escape(expected)) as refused:
        call(sandbox.config(allow(sandbox)))
    assert str(refused.value).startswith(f"{activity} refused")
    assert sandbox.state() == before


@pytest.mark.parametrize(("case", "allow", "expected"), [
    ("no allow-list", lambda box: None, "items of DynamoDB table leases"),
    ("wrong account", lambda box: box.allow(aws_account_id="111111111111"), "allows only 111111111111"),
    ("wrong region", lambda box: box.allow(region="eu-west-1"), "allows only 'eu-west-1'"),
    ("table not named", lambda box: box.allow(dynamodb_tables=["other"]), "is not in"),
])
def test_expire_leases_refused_changes_nothing(sandbox: Sandbox, case: str, allow: Callable[[Sandbox], Any],
                                               expected: str) -> None:
    before = sandbox.state()
    with pytest.raises(SafetyError, match=re.escape(expected)):
        expire_leases(2, LEASES, endpoint=DYNAMODB_URL, configuration=sandbox.config(allow(sandbox)))
    assert sandbox.state() == before


# --- a remote endpoint URL is never contacted -----------------------------------------------

@pytest.mark.parametrize(("case", "allow"), [
    ("no allow-list", lambda box: None),
    ("wrong region", lambda box: box.allow(region="eu-west-1")),
    ("wrong zone", lambda box: box.allow(hosted_zone_id="Z9999999999", dynamodb_tables=["other"])),
])
def test_a_remote_endpoint_url_is_refused_before_any_connection(
        sandbox: Sandbox, connections: Connections, monkeypatch: pytest.MonkeyPatch, case: str,
        allow: Callable[[Sandbox], Any]) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", TEST_NET)
    config = sandbox.config(allow(sandbox))
    for _, call in ACTIVITIES:
        with pytest.raises(SafetyError) as refused:
            call(config)
        if case == "no allow-list":
            assert f"{TEST_NET} (from $AWS_ENDPOINT_URL)" in str(refused.value)
    with pytest.raises(SafetyError):
        expire_leases(1, LEASES, endpoint=TEST_NET, configuration=config)
    assert connections.attempts == []  # not even a loopback one: nothing was sent anywhere


class FakeSts:
    """An STS on 127.0.0.1 that says every caller is in the allowed account: what a loopback
    moto_server answers. It must never be asked for an activity whose calls go elsewhere."""

    ANSWER = (f"<GetCallerIdentityResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">"
              f"<GetCallerIdentityResult><Arn>arn:aws:iam::{ACCOUNT}:user/fake</Arn><UserId>AIDAFAKE</UserId>"
              f"<Account>{ACCOUNT}</Account></GetCallerIdentityResult>"
              "<ResponseMetadata><RequestId>1</RequestId></ResponseMetadata></GetCallerIdentityResponse>")

    def __init__(self) -> None:
        self.requests: list[str] = []
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - stdlib name
                fake.requests.append(self.path)
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                body = FakeSts.ANSWER.encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/xml")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)


@pytest.fixture
def fake_sts() -> Iterator[FakeSts]:
    sts = FakeSts()
    sts.thread.start()
    try:
        yield sts
    finally:
        sts.server.shutdown()
        sts.server.server_close()


WRITERS: list[tuple[str, Callable[[dict[str, Any]], Any]]] = [
    *ACTIVITIES, ("expire_leases", lambda c: expire_leases(2, LEASES, endpoint=DYNAMODB_URL, configuration=c))]


@pytest.mark.parametrize(("activity", "call"), WRITERS, ids=[w[0] for w in WRITERS])
def test_sts_elsewhere_than_real_aws_cannot_confirm_the_account(
        sandbox: Sandbox, connections: Connections, fake_sts: FakeSts, monkeypatch: pytest.MonkeyPatch,
        activity: str, call: Callable[[dict[str, Any]], Any]) -> None:
    # The changes would go to (mocked) real AWS; STS would be asked on loopback, which says "yes".
    monkeypatch.setenv("AWS_ENDPOINT_URL_STS", fake_sts.url)
    before = sandbox.state()
    with pytest.raises(SafetyError, match="not AWS's own STS endpoint") as refused:
        call(sandbox.config(sandbox.allow()))
    assert str(refused.value).startswith(f"{activity} refused") and "$AWS_ENDPOINT_URL_STS" in str(refused.value)
    assert sandbox.state() == before
    assert fake_sts.requests == [] and connections.attempts == []


@pytest.mark.parametrize("endpoint", [
    "https://ddb.corp:8000", "http://dynamodb.us-east-1.amazonaws.com", "https://dynamodb.us-east-1.amazonaws.com:8443",
    "https://dynamodb.us-east-1.amazonaws.com.example.org", "https://sts.us-east-1.amazonaws.com",
    "https://203.0.113.10",
])
def test_a_write_to_anything_but_aws_itself_is_not_confirmed_by_aws_sts(
        sandbox: Sandbox, connections: Connections, endpoint: str) -> None:
    before = sandbox.state()  # STS (AWS's own, mocked) would confirm the allowed account
    with pytest.raises(SafetyError, match="which is not an AWS dynamodb endpoint of region us-east-1"):
        expire_leases(2, LEASES, endpoint=endpoint, configuration=sandbox.config(sandbox.allow()))
    assert sandbox.state() == before and connections.attempts == []


def test_a_route53_endpoint_that_is_not_aws_is_not_confirmed_by_aws_sts(
        sandbox: Sandbox, connections: Connections, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_ROUTE_53", "https://route53.corp.example")
    before = sandbox.state()
    for activity, call in ACTIVITIES:
        with pytest.raises(SafetyError, match=f"{activity} refused: it would send to https://route53.corp.example"):
            call(sandbox.config(sandbox.allow()))
    assert sandbox.state() == before and connections.attempts == []


def test_on_loopback_sts_must_be_on_the_activitys_own_host_and_port(
        clean_env: None, connections: Connections, fake_sts: FakeSts, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # the emulator the changes would reach
    monkeypatch.setenv("AWS_ENDPOINT_URL_STS", fake_sts.url)  # another one, which says "yes"
    config = {AWS_TARGET_KEY: {"hosted_zone_id": "Z1", "endpoints": [ENDPOINT], "region": REGION},
              ALLOW_KEY: {"aws_account_id": ACCOUNT, "region": REGION, "hosted_zone_id": "Z1",
                          "dynamodb_tables": [LEASES]}}
    for activity, call in ACTIVITIES:  # (expire_leases asks STS at its own endpoint URL, whatever is set)
        with pytest.raises(SafetyError, match=f"{activity} refused: it would send to http://127.0.0.1:9") as refused:
            call(config)
        assert f"STS GetCallerIdentity would be asked at {fake_sts.url} (from $AWS_ENDPOINT_URL_STS)" in str(
            refused.value)
    assert fake_sts.requests == [] and connections.attempts == []


@pytest.mark.parametrize(("url", "service", "region", "partition"), [
    ("https://sts.amazonaws.com", "sts", None, "aws"), ("https://sts.eu-west-1.amazonaws.com", "sts", "eu-west-1", "aws"),
    ("https://route53.amazonaws.com.cn", "route53", None, "aws-cn"),
    ("https://dynamodb-fips.us-gov-west-1.amazonaws.com", "dynamodb", "us-gov-west-1", "aws"),
    ("https://dynamodb.us-east-1.api.aws", "dynamodb", "us-east-1", "aws"),
    ("https://DYNAMODB.US-EAST-1.AMAZONAWS.COM:443/", "dynamodb", "us-east-1", "aws"),
    ("http://sts.amazonaws.com", None, None, None), ("https://sts.amazonaws.com:8443", None, None, None),
    ("https://sts.amazonaws.com.evil.example", None, None, None), ("https://evilsts.example/amazonaws.com", None, None, None),
    ("http://127.0.0.1:5999", None, None, None), ("", None, None, None), ("https://[::1", None, None, None),
])
def test_aws_endpoint(url: str, service: str | None, region: str | None, partition: str | None) -> None:
    found = aws_endpoint(url)
    assert (found.service, found.region, found.partition) == (service, region, partition) if found else service is None


def test_lab_only_activities_refuse_anything_but_a_lab(clean_env: None, connections: Connections) -> None:
    from chaos_dynamo.control.actions import start_control_plane
    from chaos_dynamo.failover.actions import fail_intermittently
    from chaos_dynamo.lbfleet.actions import set_lb_faults
    from chaos_dynamo.services.actions import start_service

    remote = {"chaos_dynamo_api": "http://203.0.113.10:8080"}
    for call in (lambda: set_lb_faults("lb-1", down=True, configuration=remote),
                 lambda: fail_intermittently("", 0.5, configuration=remote),
                 lambda: start_control_plane(configuration=remote),
                 lambda: start_service("svc", kind="naive", configuration=remote)):
        with pytest.raises(SafetyError, match="only on a lab at a loopback address"):
            call()
    assert connections.attempts == []


# --- malformed allow-lists and targets: ConfigError naming the field, nothing sent ----------------

@pytest.mark.parametrize(("allow", "field"), [
    ("yes", "configuration.chaos_dynamo_allow"),
    ({"region": REGION}, "configuration.chaos_dynamo_allow.aws_account_id"),
    ({"aws_account_id": 123456789012, "region": REGION}, "configuration.chaos_dynamo_allow.aws_account_id"),
    ({"aws_account_id": "1234", "region": REGION}, "configuration.chaos_dynamo_allow.aws_account_id"),
    ({"aws_account_id": ACCOUNT}, "configuration.chaos_dynamo_allow.region"),
    ({"aws_account_id": ACCOUNT, "region": "US East"}, "configuration.chaos_dynamo_allow.region"),
    ({"aws_account_id": ACCOUNT, "region": REGION, "hosted_zone_id": "not a zone"},
     "configuration.chaos_dynamo_allow.hosted_zone_id"),
    ({"aws_account_id": ACCOUNT, "region": REGION, "dynamodb_tables": "leases"},
     "configuration.chaos_dynamo_allow.dynamodb_tables"),
    ({"aws_account_id": ACCOUNT, "region": REGION, "dynamodb_tables": ["x"]},
     "configuration.chaos_dynamo_allow.dynamodb_tables[0]"),
    ({"aws_account_id": ACCOUNT, "region": REGION, "account_id": ACCOUNT}, "configuration.chaos_dynamo_allow.account_id"),
])
def test_a_malformed_allow_list_names_the_field(sandbox: Sandbox, connections: Connections, allow: Any,
                                                field: str) -> None:
    before = sandbox.state()
    with pytest.raises(ConfigError) as error:
        actions.empty_endpoint(configuration={AWS_TARGET_KEY: sandbox.target(), ALLOW_KEY: allow})
    assert error.value.field == field
    assert sandbox.state() == before and connections.attempts == []


@pytest.mark.parametrize(("target", "field"), [
    ("Z1", "configuration.chaos_dynamo_aws_target"),
    ({"endpoints": [ENDPOINT]}, "configuration.chaos_dynamo_aws_target.hosted_zone_id"),
    ({"hosted_zone_id": "Z1"}, "configuration.chaos_dynamo_aws_target.endpoints"),
    ({"hosted_zone_id": "Z1", "endpoints": ["not a name"]}, "configuration.chaos_dynamo_aws_target.endpoints[0]"),
    ({"hosted_zone_id": "Z1", "endpoints": [ENDPOINT], "region": "mars"},
     "configuration.chaos_dynamo_aws_target.region"),
    ({"hosted_zone_id": "Z1", "endpoints": [ENDPOINT], "record_ttl": -1},
     "configuration.chaos_dynamo_aws_target.record_ttl"),
    ({"hosted_zone_id": "Z1", "endpoints": [ENDPOINT], "zone": "x"}, "configuration.chaos_dynamo_aws_target.zone"),
])
def test_a_malformed_aws_target_names_the_field(clean_env: None, connections: Connections, target: Any,
                                                field: str) -> None:
    with pytest.raises(ConfigError) as error:
        actions.restore_endpoint(configuration={AWS_TARGET_KEY: target})
    assert error.value.field == field and connections.attempts == []


# --- dry run: printed, not sent --------------------------------------------------------------

def test_dry_run_prints_the_batch_and_changes_nothing(sandbox: Sandbox, capsys: pytest.CaptureFixture[str]) -> None:
    config = sandbox.config(sandbox.allow()) | {"chaos_dynamo_dry_run": True}
    before = sandbox.state()
    result = actions.empty_endpoint_for(3600, configuration=config)  # the hold is skipped
    expired = expire_leases(2, LEASES, endpoint=DYNAMODB_URL, configuration=config)
    assert sandbox.state() == before
    assert result["dry_run"] is True and result["restored_at"] - result["emptied_at"] < 60
    lines = dryrun.parse(capsys.readouterr().out)
    assert [(s, op) for s, op, _ in lines] == [("route53", "ChangeResourceRecordSets")] * 2 + [
        ("dynamodb", "UpdateItem")] * 2
    delete, upsert = lines[0][2], lines[1][2]
    assert delete["HostedZoneId"] == sandbox.zone_id
    assert {c["Action"] for c in delete["ChangeBatch"]["Changes"]} == {"DELETE"}
    assert len(delete["ChangeBatch"]["Changes"]) == 6 and len(upsert["ChangeBatch"]["Changes"]) == 10
    assert sorted(p["Key"]["lease_id"]["S"] for _, _, p in lines[2:]) == expired["keys"]
    # What a real run then sends is exactly what was printed.
    recorded = record_calls()
    with recorded:
        actions.empty_endpoint(configuration=sandbox.config(sandbox.allow()))
    assert [p for op, p in recorded.calls if op == "route53:ChangeResourceRecordSets"] == [delete]


def test_a_dry_run_client_cannot_send_a_write(sandbox: Sandbox, capsys: pytest.CaptureFixture[str]) -> None:
    config = sandbox.config() | {"chaos_dynamo_dry_run": True}
    client = record_target(config).route53
    before = sandbox.state()
    doomed = [{"Action": "DELETE", "ResourceRecordSet": r} for r in sandbox.records() if r["Type"] == "TXT"]
    client.change_resource_record_sets(HostedZoneId=sandbox.zone_id, ChangeBatch={"Changes": doomed})
    assert sandbox.state() == before and len(dryrun.parse(capsys.readouterr().out)) == 1
    # Without the handler that answers writes, the last one before sending refuses them.
    client.meta.events.unregister("before-call", dryrun._answer_write)
    with pytest.raises(SafetyError, match="dry run: refusing to send ChangeResourceRecordSets"):
        client.change_resource_record_sets(HostedZoneId=sandbox.zone_id, ChangeBatch={"Changes": doomed})
    assert sandbox.state() == before


def test_dry_run_lab_faults_say_what_they_would_do_and_send_nothing(
        clean_env: None, connections: Connections, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    from chaos_dynamo.control.actions import run_race_scenario, start_control_plane
    from chaos_dynamo.lbfleet.actions import set_lb_faults

    info = LabInfo(1, "http://127.0.0.1:9", "127.0.0.1", 9, 9, REGION, "http://127.0.0.1:9", True, 0,
                   "chaos-dynamo-plans", 5, 0.1, 0.0, {ZONE: "Z1"}, (EndpointInfo(ENDPOINT, ZONE, "Z1", False),),
                   ({"name": "lb-1", "address": "127.0.0.11"},))
    monkeypatch.setattr(_lab, "lab_info", lambda configuration=None: info)
    monkeypatch.setenv(dryrun.ENV, "1")
    assert set_lb_faults("lb-1", down=True)["dry_run"] is True
    assert start_control_plane()["dry_run"] is True
    assert run_race_scenario()["race_reproduced"] is None
    lines = dryrun.parse(capsys.readouterr().out)
    assert [p["url"].rsplit("/_chaos_dynamo/", 1)[1] for _, _, p in lines] == [
        "lb/lb-1/faults", "control/start", "control/race"]
    assert lines[0][2]["body"] == {"down": True}
    assert connections.attempts == []


@pytest.mark.parametrize(("env", "config", "on"), [
    ("", None, False), ("1", None, True), ("0", None, False), ("yes-please", None, True),
    ("", {"chaos_dynamo_dry_run": True}, True), ("", {"chaos_dynamo_dry_run": "false"}, False),
])
def test_dry_run_switch(monkeypatch: pytest.MonkeyPatch, env: str, config: dict[str, Any] | None, on: bool) -> None:
    monkeypatch.setenv(dryrun.ENV, env)
    assert dryrun.active(config) is on


def test_a_malformed_dry_run_switch_names_the_field() -> None:
    with pytest.raises(ConfigError, match="configuration.chaos_dynamo_dry_run"):
        dryrun.active({"chaos_dynamo_dry_run": 2})


# --- least privilege, measured -------------------------------------------------------------

class record_calls:  # noqa: N801 - used as a context manager, reads as a verb
    """Every AWS operation (``service:Operation``, with its parameters) made by clients created
    while it is active, through a botocore event hook every new session gets."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self._saved: list[Any] = []

    def _record(self, model: Any, context: dict[str, Any], **kwargs: Any) -> None:
        params = context.get(dryrun._PARAMS, {})
        self.calls.append((f"{model.service_model.endpoint_prefix}:{model.name}", json.loads(json.dumps(params))))

    def __enter__(self) -> record_calls:
        self._saved = botocore.handlers.BUILTIN_HANDLERS
        botocore.handlers.BUILTIN_HANDLERS = [*self._saved, ("before-parameter-build", dryrun._keep_params),
                                              ("before-call", self._record)]
        return self

    def __exit__(self, *exc: object) -> None:
        botocore.handlers.BUILTIN_HANDLERS = self._saved


def doc_policy() -> dict[str, Any]:
    text = (ROOT / "docs" / "safety.md").read_text(encoding="utf-8")
    block = text.split("<!-- iam-policy -->", 1)[1].split("```json", 1)[1].split("```", 1)[0]
    policy: dict[str, Any] = json.loads(block)
    return policy


def _list(value: Any) -> list[str]:
    return value if isinstance(value, list) else [value]


def resource_of(action: str, params: dict[str, Any]) -> str:
    if action.startswith("route53:") and action != "route53:GetChange":
        return f"arn:aws:route53:::hostedzone/{params['HostedZoneId']}"
    if action == "route53:GetChange":
        return f"arn:aws:route53:::change/{params['Id'].rsplit('/', 1)[-1]}"
    if action.startswith("dynamodb:"):
        return f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{params['TableName']}"
    return "*"


def test_the_documented_iam_policy_is_exactly_what_the_real_aws_path_calls(sandbox: Sandbox) -> None:
    config = sandbox.config(sandbox.allow())
    with record_calls() as recorded:
        actions.empty_endpoint(configuration=config)
        actions.restore_endpoint(configuration=config)
        actions.empty_endpoint_for(0.01, configuration=config)
        expire_leases(2, LEASES, endpoint=DYNAMODB_URL, configuration=config)
    policy = doc_policy()
    assert policy["Version"] == "2012-10-17"
    statements = policy["Statement"]
    documented = {a for s in statements for a in _list(s["Action"])}
    assert documented == {action for action, _ in recorded.calls}
    for action, params in recorded.calls:  # every call falls under a statement of its action
        arn = resource_of(action, params).replace(sandbox.zone_id, "Z0123456789ABCDEFGHIJ")
        names = [c["ResourceRecordSet"]["Name"].rstrip(".").lower()
                 for c in params.get("ChangeBatch", {}).get("Changes", [])]
        ok = [s for s in statements if action in _list(s["Action"])
              and any(fnmatch.fnmatchcase(arn, r) for r in _list(s["Resource"]))
              and all(any(fnmatch.fnmatchcase(n, p) for p in allowed) for n in names for allowed in [
                  s.get("Condition", {}).get("ForAllValues:StringLike", {}).get(
                      "route53:ChangeResourceRecordSetsNormalizedRecordNames", ["*"])])]
        assert ok, f"no statement of the documented policy allows {action} on {arn} ({names})"


def test_an_experiment_declares_a_dry_run_in_its_configuration(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(dryrun.ENV, raising=False)
    monkeypatch.delenv("MY_DRY", raising=False)
    assert dryrun.declared({"configuration": {"chaos_dynamo_dry_run": True}}) is True
    assert dryrun.declared({"configuration": {"chaos_dynamo_dry_run": False}}) is False
    assert dryrun.declared({"configuration": {}}) is False and dryrun.declared({}) is False
    env_typed = {"configuration": {"chaos_dynamo_dry_run": {"type": "env", "key": "MY_DRY", "default": False}}}
    assert dryrun.declared(env_typed) is False
    monkeypatch.setenv("MY_DRY", "1")
    assert dryrun.declared(env_typed) is True
