"""The allow-list enforced over real HTTP: a separate moto_server process on 127.0.0.1 stands in
for a sandbox account (its STS answers account 123456789012), reached through AWS_ENDPOINT_URL
as a user's own endpoint settings would; once through a real `chaos run`, so the refusal is
read where a user reads it, in the journal. And on the lab, where a declared allow-list is
enforced as well."""

from __future__ import annotations

import json
import os
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from chaos_dynamo.config import EndpointSpec, default_topology
from chaos_dynamo.control.enactor import Endpoint, initial_records
from chaos_dynamo.endpoint import actions
from chaos_dynamo.errors import SafetyError
from chaos_dynamo.lab.state import LabInfo
from chaos_dynamo.lease.actions import expire_leases
from chaos_dynamo.plans import plan_from_fleet, upsert_changes
from chaos_dynamo.planstore import PlanStore
from chaos_dynamo.runner import chaos_command
from tests.integration.test_external_backend import clean_env, direct, moto_server

pytestmark = pytest.mark.integration

ACCOUNT = "123456789012"
REGION = "us-east-1"
ZONE = "sandbox.example.com"
ENDPOINT = f"dynamodb.{ZONE}"
LEASES = "leases"


class Account:
    """The moto_server's hosted zone (plan 1 on the endpoint), plan table and lease table."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.route53 = direct("route53", url)
        self.zone_id = self.route53.create_hosted_zone(Name=ZONE, CallerReference="t")["HostedZone"]["Id"]
        self.zone_id = self.zone_id.rsplit("/", 1)[-1]
        self.dynamodb = direct("dynamodb", url)
        store = PlanStore(self.dynamodb, "chaos-dynamo-plans")
        store.ensure_table()
        plan = plan_from_fleet(1, [EndpointSpec(ENDPOINT, ZONE)], default_topology().load_balancers)
        store.put(plan)
        self.initial = upsert_changes(initial_records(plan, Endpoint(ENDPOINT, self.zone_id, False), 5))
        self.dynamodb.create_table(
            TableName=LEASES, KeySchema=[{"AttributeName": "lease_id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "lease_id", "AttributeType": "S"}], BillingMode="PAY_PER_REQUEST")
        self.reset()

    def reset(self) -> None:
        self.route53.change_resource_record_sets(HostedZoneId=self.zone_id, ChangeBatch={"Changes": self.initial})
        for i in range(3):
            self.dynamodb.put_item(TableName=LEASES, Item={
                "lease_id": {"S": f"l{i}"}, "owner": {"S": "w"}, "expires_at": {"N": "4000000000"},
                "version": {"N": "1"}})

    def state(self) -> str:
        pages = self.route53.get_paginator("list_resource_record_sets").paginate(HostedZoneId=self.zone_id)
        records = [r for page in pages for r in page["ResourceRecordSets"]]
        return json.dumps([records, self.dynamodb.scan(TableName=LEASES)["Items"]], sort_keys=True)

    def tree_size(self) -> int:
        return sum(1 for r in json.loads(self.state())[0] if r["Name"].startswith("plan-000001."))

    def config(self, **allow: Any) -> dict[str, Any]:
        target = {"hosted_zone_id": self.zone_id, "endpoints": [ENDPOINT], "region": REGION}
        config: dict[str, Any] = {"chaos_dynamo_aws_target": target}
        if allow:
            config["chaos_dynamo_allow"] = {"aws_account_id": ACCOUNT, "region": REGION,
                                            "hosted_zone_id": self.zone_id, "dynamodb_tables": [LEASES]} | allow
        return config

    def env(self) -> dict[str, str]:
        """What a user pointing boto3 at this endpoint sets (and nothing of this machine's)."""
        return clean_env() | {
            "AWS_ENDPOINT_URL": self.url, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": REGION, "AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            "AWS_EC2_METADATA_DISABLED": "true", "CHAOS_DYNAMO_STATE": os.devnull}


@pytest.fixture(scope="module")
def sandbox_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Account]:
    with moto_server(tmp_path_factory.mktemp("moto") / "moto_server.log") as url:
        yield Account(url)


@pytest.fixture
def account(sandbox_server: Account, monkeypatch: pytest.MonkeyPatch) -> Account:
    for key in list(os.environ):
        if key.startswith(("AWS_", "CHAOS_DYNAMO_")):
            monkeypatch.delenv(key)
    for key, value in sandbox_server.env().items():
        if key.startswith(("AWS_", "CHAOS_DYNAMO_")):
            monkeypatch.setenv(key, value)
    sandbox_server.reset()
    return sandbox_server


def test_the_allow_list_is_enforced_on_a_loopback_endpoint(account: Account) -> None:
    before = account.state()
    for allow, expected in [
        ({"aws_account_id": "111111111111"}, f"STS GetCallerIdentity says its calls would act in account {ACCOUNT}"),
        ({"region": "eu-west-1"}, "allows only 'eu-west-1'"),
        ({"hosted_zone_id": "Z9999999999"}, "allows only 'Z9999999999'"),
    ]:
        for call in (actions.empty_endpoint, actions.restore_endpoint):
            with pytest.raises(SafetyError, match=expected):
                call(configuration=account.config(**allow))
        with pytest.raises(SafetyError):
            actions.empty_endpoint_for(0.01, configuration=account.config(**allow))
    with pytest.raises(SafetyError, match=f"STS GetCallerIdentity says .* {ACCOUNT}"):
        expire_leases(1, LEASES, endpoint=account.url, configuration=account.config(aws_account_id="111111111111"))
    assert account.state() == before

    emptied = actions.empty_endpoint(configuration=account.config(aws_account_id=ACCOUNT))
    assert emptied["safety"]["target"] == "loopback" and emptied["safety"]["account"] == ACCOUNT
    assert emptied["safety"]["allowed_by"] == "allow-list" and account.tree_size() == 0
    actions.restore_endpoint(configuration=account.config(aws_account_id=ACCOUNT))
    assert account.tree_size() == 6
    expired = expire_leases(1, LEASES, endpoint=account.url, configuration=account.config(aws_account_id=ACCOUNT))
    assert expired["expired"] == 1 and expired["safety"]["account"] == ACCOUNT


def test_loopback_without_an_allow_list_is_allowed(account: Account) -> None:
    emptied = actions.empty_endpoint(configuration=account.config())
    assert emptied["safety"] == {"target": "loopback", "where": f"{account.url} (from $AWS_ENDPOINT_URL)",
                                 "allowed_by": "loopback", "account": None, "arn": None}
    assert account.tree_size() == 0
    actions.restore_endpoint(configuration=account.config())
    assert account.tree_size() == 6


def test_sts_on_another_endpoint_than_the_changes_is_refused(account: Account,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as sock:  # a loopback port nothing listens on
        sock.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{sock.getsockname()[1]}"
    monkeypatch.setenv("AWS_ENDPOINT_URL_STS", closed)
    before = account.state()
    with pytest.raises(SafetyError, match=f"would be asked at {closed} \\(from \\$AWS_ENDPOINT_URL_STS\\), "
                                          "another endpoint"):
        actions.empty_endpoint(configuration=account.config(aws_account_id=ACCOUNT))
    assert account.state() == before
    # STS on the changes' own endpoint, named explicitly, is asked there.
    monkeypatch.setenv("AWS_ENDPOINT_URL_STS", account.url)
    assert actions.empty_endpoint(configuration=account.config(aws_account_id=ACCOUNT))["safety"]["account"] == ACCOUNT
    assert account.tree_size() == 0


def test_a_refusal_reaches_the_journal_of_a_real_chaos_run(account: Account, tmp_path: Path) -> None:
    experiment = {
        "version": "1.0.0", "title": "empty the sandbox endpoint, with the wrong account allowed",
        "description": "the guard must refuse before anything changes",
        "configuration": account.config(aws_account_id="111111111111"),
        "method": [{"type": "action", "name": "empty-the-endpoint", "provider": {
            "type": "python", "module": "chaos_dynamo.endpoint.actions", "func": "empty_endpoint",
            "arguments": {"endpoint": ENDPOINT}}}],
    }
    path = tmp_path / "experiment.json"
    path.write_text(json.dumps(experiment), encoding="utf-8")
    before = account.state()
    run = subprocess.run([*chaos_command(), "--no-version-check", "--no-log-file", "run", "--journal-path",
                          str(tmp_path / "journal.json"), str(path)],
                         capture_output=True, text=True, timeout=240, env=account.env(), cwd=tmp_path)
    journal = json.loads((tmp_path / "journal.json").read_text(encoding="utf-8"))
    (action,) = journal["run"]
    assert action["status"] == "failed", run.stdout[-2000:] + run.stderr[-2000:]
    error = "".join(action["exception"])
    assert "SafetyError: empty_endpoint refused: STS GetCallerIdentity says its calls would act in account " \
           f"{ACCOUNT}" in error
    assert "configuration.chaos_dynamo_allow.aws_account_id allows only 111111111111" in error
    assert account.state() == before


def test_a_declared_allow_list_is_enforced_on_the_lab_too(lab_info: LabInfo, config: dict[str, Any],
                                                          restore_after: None) -> None:
    zone_id = lab_info.primary_endpoint.zone_id
    route53 = boto3.client("route53", endpoint_url=lab_info.api_url, region_name=lab_info.region,
                           aws_access_key_id="testing", aws_secret_access_key="testing")
    before = route53.list_resource_record_sets(HostedZoneId=zone_id)["ResourceRecordSets"]
    allow = {"aws_account_id": ACCOUNT, "region": lab_info.region, "hosted_zone_id": zone_id}
    with pytest.raises(SafetyError, match="allows only 111111111111"):
        actions.empty_endpoint(configuration=config | {"chaos_dynamo_allow": allow | {"aws_account_id": "111111111111"}})
    with pytest.raises(SafetyError, match="allows only 'Z9999999999'"):
        actions.empty_endpoint(configuration=config | {"chaos_dynamo_allow": allow | {"hosted_zone_id": "Z9999999999"}})
    assert route53.list_resource_record_sets(HostedZoneId=zone_id)["ResourceRecordSets"] == before
    emptied = actions.empty_endpoint(configuration=config | {"chaos_dynamo_allow": allow})
    assert emptied["safety"]["target"] == "lab" and emptied["safety"]["account"] == ACCOUNT
