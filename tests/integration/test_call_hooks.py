"""The shim's botocore hooks: every logical call and each of its attempts, in real processes.

Each test runs a fresh Python (the service under test) with the lab's environment and
CHAOS_DYNAMO_CALL_LOG, lets it make real boto3 calls, and compares the call log with what
botocore itself reported (RetryAttempts, exceptions) and with botocore's own retry settings.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from botocore.retries.standard import _SERVICE_MAX_ATTEMPTS

from chaos_dynamo import callhooks, calllog, shim
from chaos_dynamo.clock import wait_until
from chaos_dynamo.lab.lab import Lab
from chaos_dynamo.lab.state import LabInfo
from chaos_dynamo.lbfleet.actions import reset_lb_faults, set_lb_faults
from tests.conftest import ROOT

pytestmark = pytest.mark.integration

PTH = ROOT / "chaos_dynamo" / "_shim_boot" / "chaos_dynamo_shim.pth"

# The service under test: argv[1] names a scenario, argv[2] its JSON arguments; it prints
# one JSON line of what botocore told the application, call by call.
SERVICE = r'''
import json, sys, threading
import boto3, botocore.session
from botocore.config import Config

scenario, args = sys.argv[1], json.loads(sys.argv[2])
url = args.get("url")
out = []

def client(retries=None, session=None):
    config = Config(retries=retries) if retries else None
    return (session or boto3).client("dynamodb", endpoint_url=url, config=config)

def call(c, method="list_tables", **kwargs):
    try:
        response = getattr(c, method)(**kwargs)
        out.append({"ok": True, "retries": response["ResponseMetadata"]["RetryAttempts"]})
    except Exception as exc:
        meta = getattr(exc, "response", {}).get("ResponseMetadata", {})
        out.append({"ok": False, "error": type(exc).__name__, "retries": meta.get("RetryAttempts")})

if scenario == "healthy":
    c = client()
    for _ in range(3):
        call(c)
    call(c, "describe_table", TableName="no-such-table")
    threads = [threading.Thread(target=lambda: [call(c) for _ in range(5)]) for _ in range(8)]
    [t.start() for t in threads]
    [t.join() for t in threads]
elif scenario == "retries":
    # Distinct requests: a failed call followed by the same request would be read back as
    # the application retrying it (one logical call).
    c = client(args.get("retries"))
    for i in range(args["calls"]):
        call(c, Limit=i + 1)
elif scenario == "client-per-attempt":
    for i in range(args["calls"]):
        session = boto3.session.Session() if i % 2 else None
        if i % 3 == 2:
            c = botocore.session.get_session().create_client(
                "dynamodb", endpoint_url=url, config=Config(retries={"total_max_attempts": 1}))
        else:
            c = client({"total_max_attempts": 1}, session)
        call(c, Limit=i + 1 if args.get("distinct", True) else 1)
elif scenario == "nested":
    outer, inner = client(), client()
    def nested_call(**_):
        call(inner, "describe_limits")
    outer.meta.events.register("before-send.dynamodb.ListTables", nested_call)
    call(outer)
print(json.dumps(out))
'''


def run_service(env: dict[str, str], scenario: str, timeout: float = 60, **args: Any) -> tuple[list[dict[str, Any]], str]:
    result = subprocess.run([sys.executable, "-c", SERVICE, scenario, json.dumps(args)], env=env,
                            capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1]), result.stderr


@pytest.fixture
def service_env(lab_env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    return lab_env | {"CHAOS_DYNAMO_CALL_LOG": str(tmp_path / "calls"), "CHAOS_DYNAMO_SERVICE": "checkout"}


@pytest.fixture
def missing_url(lab_info: LabInfo) -> str:
    """A name inside the lab's zone that does not exist: every lookup is NXDOMAIN."""
    zone = lab_info.primary_endpoint.name.split(".", 1)[1]
    return f"http://nosuch.{zone}:{lab_info.lb_port}"


def calls_of(env: dict[str, str]) -> list[calllog.Call]:
    return calllog.read_calls(env["CHAOS_DYNAMO_CALL_LOG"], "checkout")


def test_healthy_calls_take_one_attempt_each(service_env: dict[str, str]) -> None:
    seen, stderr = run_service(service_env, "healthy")
    calls = calls_of(service_env)
    assert len(calls) == len(seen) == 44, stderr
    assert len({c.id for c in calls}) == 44 and {c.service for c in calls} == {"checkout"}
    assert all(c.finished and len(c.attempts) == 1 for c in calls)
    missing = [c for c in calls if c.operation == "DescribeTable"]
    assert [(c.ok, c.error, c.attempts[0].status) for c in missing] == [
        (False, "ResourceNotFoundException", 400)]
    listed = [c for c in calls if c.operation == "ListTables"]
    assert len(listed) == 43 and all(c.ok and c.error is None for c in listed)
    assert all(a.status == 200 and not a.dns_failure and a.end is not None and c.start <= a.start <= a.end
               and c.end is not None and a.end <= c.end for c in listed for a in c.attempts)
    assert Path(service_env["CHAOS_DYNAMO_CALL_LOG"], f"checkout-{calls[0].pid}.jsonl").is_file()


@pytest.mark.parametrize("mode", ["standard", "adaptive"])
def test_a_name_that_does_not_resolve_takes_botocores_attempts(
    service_env: dict[str, str], missing_url: str, mode: str,
) -> None:
    expected = _SERVICE_MAX_ATTEMPTS["dynamodb"]  # botocore's own figure for DynamoDB
    seen, stderr = run_service(service_env, "retries", url=missing_url, retries={"mode": mode}, calls=2)
    calls = calls_of(service_env)
    assert [s["error"] for s in seen] == ["EndpointConnectionError"] * 2, stderr
    assert [len(c.attempts) for c in calls] == [expected] * 2
    assert all(c.error == "EndpointConnectionError" and c.ok is False for c in calls)
    attempts = [a for c in calls for a in c.attempts]
    assert all(a.dns_failure and a.status is None and a.error == "EndpointConnectionError" for a in attempts)
    assert [a.number for a in calls[0].attempts] == list(range(1, expected + 1))


def test_legacy_mode_counts_its_retries_on_top_of_the_first_attempt(
    service_env: dict[str, str], missing_url: str,
) -> None:
    seen, _ = run_service(service_env, "retries", url=missing_url,
                          retries={"mode": "legacy", "max_attempts": 2}, calls=2)
    calls = calls_of(service_env)
    assert len(seen) == 2 and [len(c.attempts) for c in calls] == [3, 3]
    assert all(a.dns_failure for c in calls for a in c.attempts)
    # Legacy backoff for DynamoDB is 50 ms, then 100 ms, with no jitter.
    gaps = [b.start - a.end for a, b in zip(calls[0].attempts, calls[0].attempts[1:], strict=False) if a.end]
    assert gaps[0] >= 0.045 and gaps[1] >= 0.095


def test_injected_500s_match_botocores_retry_attempts(
    service_env: dict[str, str], lab: Lab, config: dict[str, Any],
) -> None:
    retries = {"mode": "standard", "total_max_attempts": 3}
    seen: list[dict[str, Any]] = []
    try:
        for rate, calls in ((1.0, 2), (0.5, 30)):
            for lb in lab.fleet or ():
                set_lb_faults(lb.name, error_rate=rate, error_status=500, configuration=config)
            seen += run_service(service_env, "retries", retries=retries, calls=calls)[0]
    finally:
        reset_lb_faults(configuration=config)
    calls = calls_of(service_env)
    assert len(calls) == len(seen) == 32
    assert [len(c.attempts) for c in calls] == [s["retries"] + 1 for s in seen]
    assert [c.ok for c in calls] == [s["ok"] for s in seen]
    assert [(c.ok, c.error, len(c.attempts)) for c in calls[:2]] == [(False, "InternalServerError", 3)] * 2
    failed = [a for c in calls for a in c.attempts if a.status != 200]
    assert all(a.status == 500 and a.error == "InternalServerError" and not a.dns_failure for a in failed)
    assert sum(len(c.attempts) for c in calls[2:]) > 30  # at 50 % errors some calls were retried


def test_a_new_client_per_attempt_is_logged_too(service_env: dict[str, str], missing_url: str) -> None:
    seen, _ = run_service(service_env, "client-per-attempt", url=missing_url, calls=6)
    calls = calls_of(service_env)
    assert len(seen) == len(calls) == 6
    assert all(len(c.attempts) == 1 and c.attempts[0].dns_failure for c in calls)


def test_repeating_a_failed_request_with_new_clients_is_one_logical_call(
    service_env: dict[str, str], missing_url: str,
) -> None:
    """The naive retry loop: the same request again, each time through a new client."""
    seen, _ = run_service(service_env, "client-per-attempt", url=missing_url, calls=6, distinct=False)
    (call,) = calls_of(service_env)
    assert len(seen) == call.client_calls == len(call.attempts) == 6
    assert [a.number for a in call.attempts] == [1, 2, 3, 4, 5, 6]
    assert all(a.dns_failure for a in call.attempts) and call.ok is False
    assert len(calllog.read_calls(service_env["CHAOS_DYNAMO_CALL_LOG"], "checkout", join_retries=False)) == 6


def test_a_call_made_inside_another_calls_hook_is_kept_apart(service_env: dict[str, str]) -> None:
    run_service(service_env, "nested")
    outer, inner = calls_of(service_env)
    assert (outer.operation, inner.operation) == ("ListTables", "DescribeLimits")
    assert len(outer.attempts) == len(inner.attempts) == 1 and outer.ok and inner.ok
    assert inner.end is not None and outer.start < inner.start and inner.end <= outer.attempts[0].start


def test_dns_queries_go_from_the_chosen_source_address(
    service_env: dict[str, str], lab: Lab, lab_info: LabInfo,
) -> None:
    assert lab.dns is not None
    since = time.time()
    env = service_env | {"CHAOS_DYNAMO_SOURCE_ADDRESS": "127.0.0.123"}
    run_service(env, "retries", calls=1)
    name = lab_info.primary_endpoint.name
    assert wait_until(lambda: lab.dns.query_log(since=since, name=name, client="127.0.0.123"), timeout=10)
    assert not lab.dns.query_log(since=since, name=name, client="127.0.0.1")


@pytest.mark.parametrize("value", ["10.1.2.3", "::1", "localhost", "127.0.0.300"])
def test_a_source_address_off_loopback_is_refused_and_the_process_runs(
    service_env: dict[str, str], lab: Lab, value: str,
) -> None:
    assert lab.dns is not None
    since = time.time()
    seen, stderr = run_service(service_env | {"CHAOS_DYNAMO_SOURCE_ADDRESS": value}, "retries", calls=1)
    assert seen == [{"ok": True, "retries": 0}]
    assert stderr.count("CHAOS_DYNAMO_SOURCE_ADDRESS") == 1 and "not an IPv4 loopback" in stderr
    assert {q.client for q in lab.dns.query_log(since=since)} <= {"127.0.0.1"}
    with pytest.raises(ValueError, match="CHAOS_DYNAMO_SOURCE_ADDRESS"):
        shim.install(("127.0.0.1", 53), source=value)
    assert not shim.active()


def test_the_call_log_works_without_the_lab_dns(service_env: dict[str, str], lab_info: LabInfo) -> None:
    """Through the boot line itself (as a .pth runs it), with no CHAOS_DYNAMO_DNS set."""
    env = {k: v for k, v in service_env.items() if k not in ("CHAOS_DYNAMO_DNS", "CHAOS_DYNAMO_ZONES")}
    url = f"http://{lab_info.load_balancers[0]['address']}:{lab_info.lb_port}"
    code = f"exec({PTH.read_text()!r})\n" + SERVICE
    result = subprocess.run([sys.executable, "-c", code, "retries", json.dumps({"url": url, "calls": 2})],
                            env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    calls = calls_of(env)
    assert [(c.ok, len(c.attempts)) for c in calls] == [(True, 1), (True, 1)]


def test_bad_call_log_settings_warn_once_and_the_calls_still_work(
    service_env: dict[str, str], tmp_path: Path,
) -> None:
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    seen, stderr = run_service(service_env | {"CHAOS_DYNAMO_CALL_LOG": str(a_file)}, "retries", calls=2)
    assert [s["ok"] for s in seen] == [True, True]
    assert "call log not active: CHAOS_DYNAMO_CALL_LOG=" in stderr and "is not a directory" in stderr
    # A path under a file passes the start-up check and fails at the first write: the
    # hooks swallow it, say so once, and the application never sees it.
    seen, stderr = run_service(service_env | {"CHAOS_DYNAMO_CALL_LOG": str(a_file / "sub")}, "retries", calls=2)
    assert [s["ok"] for s in seen] == [True, True]
    assert stderr.count("some botocore calls are not being logged") == 1, stderr


def test_switched_off_by_chaos_dynamo_shim_0(service_env: dict[str, str]) -> None:
    run_service(service_env | {"CHAOS_DYNAMO_SHIM": "0", "AWS_ENDPOINT_URL_DYNAMODB": "http://127.0.0.1:1"},
                "retries", retries={"total_max_attempts": 1}, calls=1)
    assert calls_of(service_env) == []


def test_install_in_process_hooks_clients_of_sessions_made_before_it(
    lab_env: dict[str, str], tmp_path: Path,
) -> None:
    import boto3
    import botocore.client
    import botocore.config

    session = boto3.session.Session()  # made before the hooks are installed
    original = botocore.client.BaseClient.__init__
    sink = calllog.CallLogWriter(tmp_path / "inproc-1.jsonl")
    callhooks.install(sink, service="inproc")
    try:
        client = session.client("dynamodb", endpoint_url="http://127.0.0.1:1", region_name="us-east-1",
                                aws_access_key_id="x", aws_secret_access_key="y",
                                config=botocore.config.Config(retries={"total_max_attempts": 2}))
        with pytest.raises(Exception, match="Could not connect"):
            client.list_tables()
        assert callhooks.stats()["calls"] == 1 and callhooks.stats()["dropped"] == 0
    finally:
        callhooks.uninstall()
        sink.close()
    assert botocore.client.BaseClient.__init__ is original
    (call,) = calllog.read_calls(tmp_path)
    assert call.service == "inproc" and len(call.attempts) == 2
    assert not any(a.dns_failure for a in call.attempts)  # refused, not unresolved


@pytest.mark.parametrize("tcp", [False, True])
def test_the_dns_client_sends_from_the_source_address(lab: Lab, lab_info: LabInfo, tcp: bool) -> None:
    from chaos_dynamo.dns.client import query

    assert lab.dns is not None
    since = time.time()
    name = lab_info.primary_endpoint.name
    answer = query(lab_info.dns, name, tcp=tcp, source="127.0.0.124")
    assert answer.addresses and answer.transport == ("tcp" if tcp else "udp")
    logged = lab.dns.query_log(since=since, name=name, client="127.0.0.124")
    assert [q.transport for q in logged] == [answer.transport]
    with pytest.raises(ValueError, match="not an IPv4 loopback"):
        query(lab_info.dns, name, source="192.0.2.1")
