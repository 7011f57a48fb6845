"""Plans and their record trees, the state file, and the Prometheus rendering."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from chaos_dynamo.config import EndpointSpec, default_topology
from chaos_dynamo.errors import ConfigError, LabError
from chaos_dynamo.lab import metrics
from chaos_dynamo.lab.state import EndpointInfo, LabInfo, read_state, remove_state, write_state
from chaos_dynamo.plans import (
    Plan,
    alias_records,
    delete_changes,
    generation_of_tree,
    plan_from_fleet,
    tree_name,
    tree_records,
    upsert_changes,
)
from chaos_dynamo.route53.rules import apply_changes, change_from_api


def test_plan_tree_and_alias_apply_under_route53_rules() -> None:
    topo = default_topology(seed=1)
    plan = plan_from_fleet(7, topo.endpoints, topo.load_balancers)
    ep = topo.endpoints[0]
    tree = tree_records(plan, ep, ttl=5)
    assert {r.name for r in tree} == {tree_name(ep.name, 7)} == {"plan-000007.dynamodb.us-east-1.amazonaws.com."}
    assert [r.weight for r in tree] == [lb.weight for lb in topo.load_balancers]
    aliases = alias_records(plan, ep, "ZLAB")
    zone = "us-east-1.amazonaws.com."
    applied = apply_changes(zone, {}, [change_from_api(c) for c in upsert_changes(tree + aliases)], zone_id="ZLAB")
    assert len(applied) == len(tree) + 1
    # Deleting the tree under a live alias is allowed: that is the outage.
    emptied = apply_changes(zone, applied, [change_from_api(c) for c in delete_changes(tree)], zone_id="ZLAB")
    assert [r.name for r in emptied.values()] == ["dynamodb.us-east-1.amazonaws.com."]


def test_dualstack_endpoint_gets_aaaa_records() -> None:
    topo = default_topology()
    dual = next(e for e in topo.endpoints if e.ipv6)
    plan = plan_from_fleet(1, topo.endpoints, topo.load_balancers)
    types = {r.type for r in tree_records(plan, dual, 5)}
    assert types == {"A", "AAAA"}
    assert all(v.startswith("::ffff:127.0.0.") for r in tree_records(plan, dual, 5) if r.type == "AAAA"
               for v in r.values)


def test_plan_json_round_trip_and_lookup() -> None:
    topo = default_topology(seed=2)
    plan = plan_from_fleet(3, topo.endpoints, topo.load_balancers)
    assert Plan.from_json(plan.to_json()) == plan
    assert generation_of_tree("plan-000003.dynamodb.us-east-1.amazonaws.com.") == 3
    assert generation_of_tree("dynamodb.us-east-1.amazonaws.com.") is None
    with pytest.raises(ConfigError, match="endpoint"):
        plan.entries("nope.example.com")
    with pytest.raises(ConfigError):
        tree_records(plan, EndpointSpec("other.us-east-1.amazonaws.com", "us-east-1.amazonaws.com"), 5)


def _info(pid: int = 4242) -> LabInfo:
    return LabInfo(pid=pid, api_url="http://127.0.0.1:1", dns_host="127.0.0.1", dns_port=2, lb_port=3,
                   region="us-east-1", emulator_url="http://127.0.0.1:4", embedded=True, seed=0,
                   plan_table="t", record_ttl=5, propagation_delay=0.1, started_at=0.0,
                   zones={"us-east-1.amazonaws.com": "Z1"},
                   endpoints=(EndpointInfo("dynamodb.us-east-1.amazonaws.com", "us-east-1.amazonaws.com", "Z1", False),))


def test_state_file_round_trip_and_env(tmp_path: Path) -> None:
    path = tmp_path / "s" / "lab.json"
    write_state(_info(), path)
    info = read_state(path)
    assert info == _info()
    env = info.env()
    assert env["AWS_ENDPOINT_URL_DYNAMODB"] == "http://dynamodb.us-east-1.amazonaws.com:3"
    assert env["CHAOS_DYNAMO_DNS"] == "127.0.0.1:2"
    remove_state(path, pid=1)  # someone else's lab: left alone
    assert path.exists()
    remove_state(path, pid=4242)
    assert not path.exists()
    with pytest.raises(LabError, match="lab up --detach"):
        read_state(path)


def test_a_process_env_reaches_the_lab_and_nothing_else() -> None:
    """The user's own AWS settings would send a client to real AWS: none survive."""
    user = {"PATH": "/bin", "HOME": "/root", "CHAOS_DYNAMO_SERVICE_KIND": "naive",
            "AWS_ENDPOINT_URL_STS": "https://sts.amazonaws.com", "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS": "true",
            "AWS_PROFILE": "prod", "AWS_SESSION_TOKEN": "t", "AWS_ROLE_ARN": "arn:aws:iam::1:role/r",
            "AWS_WEB_IDENTITY_TOKEN_FILE": "/var/run/token", "AWS_ACCESS_KEY_ID": "AKIAREAL"}
    env = _info().process_env(user)
    lab_aws = {k for k in _info().env() if k.startswith("AWS_")}
    assert {k for k in env if k.startswith("AWS_")} == lab_aws | {
        "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE", "AWS_EC2_METADATA_DISABLED"}
    assert env["AWS_ACCESS_KEY_ID"] == "testing" and env["AWS_ENDPOINT_URL"] == "http://127.0.0.1:1"
    assert env["AWS_CONFIG_FILE"] == env["AWS_SHARED_CREDENTIALS_FILE"] == os.devnull
    assert env["PATH"] == "/bin" and env["CHAOS_DYNAMO_SERVICE_KIND"] == "naive"  # settings pass through
    assert user["AWS_PROFILE"] == "prod"  # the caller's mapping is not changed


def test_metrics_render_counter_trees_as_labelled_series() -> None:
    text = metrics.render(
        {"total": 3, "by_rcode": {"NOERROR": 2, "NXDOMAIN": 1}},
        {"lb-1": {"total": 2, "by_operation": {"GetItem": 2}}, "total": {"total": 2}},
        {"accepted": 1},
    )
    lines = text.splitlines()
    assert "chaos_dynamo_dns_queries_total 3" in lines
    assert 'chaos_dynamo_dns_queries_by_rcode_total{rcode="NXDOMAIN"} 1' in lines
    assert 'chaos_dynamo_lb_requests_by_operation_total{lb="lb-1",operation="GetItem"} 2' in lines
    assert 'chaos_dynamo_lb_requests_total{lb="lb-1"} 2' in lines
    assert "chaos_dynamo_route53_changes_accepted_total 1" in lines
    assert all(line.startswith(("# TYPE", "chaos_dynamo_")) for line in lines)
