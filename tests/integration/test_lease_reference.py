"""The reference lease fleets as real processes on the session's lab: setup, renewals,
health and metrics, a clean SIGTERM, the supervisor's lease kinds with extra arguments,
and an endpoint outage longer than the expiry (leases expire, /health goes 503, and the
hardened fleet re-establishes every lease once the endpoint is back)."""

from __future__ import annotations

import json
import signal
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import boto3
import pytest

from chaos_dynamo.clock import wait_until
from chaos_dynamo.endpoint.actions import empty_endpoint, restore_endpoint
from chaos_dynamo.errors import ConfigError
from chaos_dynamo.lab.state import LabInfo, write_state
from chaos_dynamo.lbfleet.actions import close_connections
from chaos_dynamo.services import actions, supervisor
from chaos_dynamo.services.registry import read_record
from tests.conftest import BIN, ROOT, prometheus_samples
from tests.conftest import http_get as get

pytestmark = pytest.mark.integration


def metrics(url: str) -> dict[str, float]:
    """Prometheus text -> {name{labels}: value}; every sample's metric must be declared."""
    return prometheus_samples(get(url)[1])


def table_items(info: LabInfo, table: str) -> dict[str, dict[str, Any]]:
    """The lease table as the emulator holds it (read directly: no LB, no DNS)."""
    client = boto3.client("dynamodb", endpoint_url=info.emulator_url, region_name=info.region,
                          aws_access_key_id="testing", aws_secret_access_key="testing")
    items: dict[str, dict[str, Any]] = {}
    kwargs: dict[str, Any] = {"TableName": table, "ConsistentRead": True}
    while True:
        page = client.scan(**kwargs)
        for item in page["Items"]:
            items[item["lease_id"]["S"]] = {"owner": item["owner"]["S"],
                                            "expires_at": float(item["expires_at"]["N"]),
                                            "version": int(item["version"]["N"])}
        if "LastEvaluatedKey" not in page:
            return items
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


@pytest.fixture
def state(tmp_path: Path, lab_info: LabInfo) -> Any:
    path = tmp_path / "state" / "lab.json"
    write_state(lab_info, path)
    yield path
    supervisor.stop_all(path, timeout=2.0)


def test_a_fleet_sets_up_its_table_renews_serves_health_and_stops_on_sigterm(
        lab_info: LabInfo, lab_env: dict[str, str], tmp_path: Path) -> None:
    table = f"leases-{uuid.uuid4().hex[:8]}"
    ready, out = tmp_path / "ready.json", tmp_path / "fleet.out"
    with out.open("wb") as log:
        process = subprocess.Popen(
            [str(BIN / "python"), "-m", "chaos_dynamo.lease.reference", "--manager", "naive",
             "--leases", "20", "--renew-every", "0.5", "--expiry", "3", "--table", table,
             "--seed", "3", "--ready-file", str(ready)],
            env=lab_env | {"CHAOS_DYNAMO_SERVICE": "dwfm", "CHAOS_DYNAMO_INSTANCE": "4"},
            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    try:
        assert wait_until(lambda: ready.exists() or process.poll() is not None, 30, 0.05), out.read_text()
        assert process.poll() is None, out.read_text()
        info = json.loads(ready.read_text())
        assert info["pid"] == process.pid and info["kind"] == "lease-naive"
        assert info["owner"] == "dwfm-4" and info["leases"] == 20 and info["table"] == table

        items = table_items(lab_info, table)
        assert sorted(items) == [f"host-{n:05d}" for n in range(20)]
        assert {i["owner"] for i in items.values()} == {"dwfm-4"}
        first = sum(i["version"] for i in items.values())
        # Renewals: every lease renewed at least twice more (H = 0.5 s).
        assert wait_until(lambda: sum(i["version"] for i in table_items(lab_info, table).values())
                          >= first + 40, 15, 0.2), "versions do not grow"
        assert all(i["expires_at"] > time.time() for i in table_items(lab_info, table).values())

        status, body = get(info["health_url"])
        assert status == 200, body
        assert json.loads(body) | {"live_fraction": 1.0} == json.loads(body)
        m = metrics(info["metrics_url"])
        assert m["chaos_dynamo_lease_believed_live"] == 20 == m["chaos_dynamo_lease_total"]
        assert m["chaos_dynamo_lease_renewals_ok_total"] >= 40
        assert m['chaos_dynamo_lease_op_results_total{kind="renew",outcome="ok"}'] >= 40
        assert m['chaos_dynamo_lease_manager_info{manager="naive"}'] == 1
        assert m["chaos_dynamo_lease_manager_workers"] == 16

        began = time.monotonic()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0, out.read_text()
        assert time.monotonic() - began < 2.5, "SIGTERM must stop it promptly"
        assert not ready.exists()
        lines = out.read_text().splitlines()
        assert lines[0].startswith(f"reference lease-naive pid={process.pid} leases=20 "
                                   "(host-00000..host-00019) manager=naive table="), lines[0]
        assert "Traceback" not in out.read_text()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_an_endpoint_outside_the_lab_zones_is_refused(lab_env: dict[str, str]) -> None:
    result = subprocess.run(
        [str(BIN / "python"), "-m", "chaos_dynamo.lease.reference", "--manager", "hardened"],
        env=lab_env | {"AWS_ENDPOINT_URL_DYNAMODB": "http://dynamodb.us-east-1.example.com:8000"},
        capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "is not inside the lab's zones" in result.stderr


def test_bad_arguments_name_the_option(lab_env: dict[str, str]) -> None:
    result = subprocess.run(
        [str(BIN / "python"), "-m", "chaos_dynamo.lease.reference", "--manager", "naive",
         "--renew-every", "5", "--expiry", "2"], env=lab_env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "error: --expiry: must be longer than --renew-every (5.0 s)" in result.stderr


@pytest.mark.parametrize(("args", "words"), [
    ("--expiry -1", ["args", "--expiry", "'-1'"]),
    ("--leases many", ["args", "--leases", "'many'"]),
    ("--leases 1", ["args", "--shard", "holds none"]),  # 2 instances, 1 lease
    ("--shard 0/1", ["args", "--shard", "set by chaos-dynamo"]),
    ("--manager-arg workers=0", ["args", "--manager-arg workers"]),
    ("--expiry '10", ["args", "quotes"]),
])
def test_bad_lease_args_are_refused_before_anything_starts(state: Path, lab_info: LabInfo, args: str,
                                                           words: list[str]) -> None:
    with pytest.raises(ConfigError) as err:
        supervisor.start("bad-args", kind="lease-naive", instances=2, args=args, state=state, lab=lab_info)
    assert err.value.field == "args"
    for word in words:
        assert word in str(err.value), str(err.value)
    assert read_record("bad-args", state) is None
    assert not (state.parent / "services" / "bad-args-0.log").exists()


def test_the_cli_names_a_bad_argument(lab_env: dict[str, str], state: Path) -> None:
    result = subprocess.run([str(BIN / "chaos-dynamo"), "service", "start", "x", "--kind", "lease-hardened",
                             "--args", "--job-timeout zero", "--state-file", str(state)],
                            env=lab_env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "args: --job-timeout: 'zero' is not a number of seconds" in result.stderr


def test_lease_naive_through_the_start_service_action(state: Path, config: dict[str, Any]) -> None:
    table = f"leases-{uuid.uuid4().hex[:8]}"
    configuration = config | {"chaos_dynamo_state": str(state)}
    out = actions.start_service("dwfm-naive", kind="lease-naive", seed=5,
                                args=f"--leases 3 --renew-every 0.5 --expiry 2 --table {table}",
                                configuration=configuration)
    assert out["kind"] == "lease-naive" and len(out["pids"]) == 1 and out["rate"] == 0.0
    record = read_record("dwfm-naive", state)
    assert record is not None and record.extra["args"][-2:] == ["--table", table]
    assert record.command[2:] == ("chaos_dynamo.lease.reference", "--manager", "naive", "--seed", "5",
                                  "--shard", "0/1", "--http", "127.0.0.1:0", "--ready-file",
                                  record.command[12], "--leases", "3", "--renew-every", "0.5",
                                  "--expiry", "2", "--table", table)
    assert get(out["health_urls"][0])[0] == 200
    items = table_items(supervisor.lab_from_state(state), table)
    assert {k: v["owner"] for k, v in items.items()} == {f"host-0000{n}": "dwfm-naive-0" for n in range(3)}
    result = actions.stop_service("dwfm-naive", configuration=configuration)
    assert result["stopped"] == 1 and result["killed"] == 0, "SIGTERM must be enough"


def test_an_outage_longer_than_the_expiry_expires_the_leases_and_the_hardened_fleet_recovers(
        state: Path, lab_info: LabInfo, config: dict[str, Any], restore_after: None) -> None:
    table = f"leases-{uuid.uuid4().hex[:8]}"
    record = supervisor.start(
        "dwfm-hardened", kind="lease-hardened", instances=2, seed=1, state=state, lab=lab_info,
        args=f"--leases 12 --renew-every 0.4 --expiry 1.5 --job-timeout 1.0 --table {table} "
             "--manager-arg max_backoff=2")
    health = [i.health_url for i in record.instances]
    assert len(health) == 2

    def all_status(code: int) -> bool:
        return all(get(url)[0] == code for url in health)

    assert wait_until(lambda: all_status(200), 15, 0.1), [get(u) for u in health]
    items = table_items(lab_info, table)
    assert {k: v["owner"] for k, v in items.items()} == (
        {f"host-{n:05d}": "dwfm-hardened-0" for n in range(6)}
        | {f"host-{n:05d}": "dwfm-hardened-1" for n in range(6, 12)})

    empty_endpoint(configuration=config)
    emptied = time.time()
    close_connections(configuration=config)
    assert wait_until(lambda: all_status(503), 10, 0.1), [get(u) for u in health]
    # Nothing can renew: every lease in the table passes its expiry.
    assert wait_until(lambda: all(v["expires_at"] < time.time()
                                  for v in table_items(lab_info, table).values()), 10, 0.1)
    body = json.loads(get(health[0])[1])
    assert body["healthy"] is False and body["believed_live"] < body["total"] == 6
    assert time.time() - emptied < 10

    restore_endpoint(configuration=config)
    restored = time.monotonic()
    assert wait_until(lambda: all_status(200), 30, 0.2), [get(u) for u in health]
    took = time.monotonic() - restored
    now = time.time()
    after = table_items(lab_info, table)
    assert all(v["expires_at"] > now - 0.5 for v in after.values()), after
    assert {k: v["owner"] for k, v in after.items()} == {k: v["owner"] for k, v in items.items()}
    m = metrics(record.instances[0].metrics_url)
    assert m["chaos_dynamo_lease_jobs_ok_total"] >= 6
    assert m['chaos_dynamo_lease_op_results_total{kind="renew",outcome="error"}'] >= 1
    assert m["chaos_dynamo_lease_manager_max_in_flight"] == 3
    print(f"recovered 12 leases {took:.1f} s after the restore")

    result = supervisor.stop("dwfm-hardened", state)
    assert result["stopped"] == 2 and result["killed"] == 0


def test_args_in_configuration_and_for_each_kind() -> None:
    from chaos_dynamo.services import control

    settings = control.service_settings({"service_name": "dwfm", "service_kind": "lease-hardened",
                                         "service_instances": "3", "service_args": "--leases 30"})
    assert (settings["kind"], settings["instances"], settings["args"]) == ("lease-hardened", 3, ["--leases", "30"])
    with pytest.raises(ConfigError) as err:
        control.service_settings({"service_name": "dwfm", "service_kind": "lease-naive",
                                  "service_args": "--expiry x"})
    assert err.value.field == "service_args" and "--expiry" in str(err.value)
    # A command wins over a kind, and the kind's args go with it.
    settings = control.service_settings({"service_name": "c", "service_kind": "lease-naive",
                                         "service_args": "--leases 3", "service_command": "true"})
    assert settings["kind"] == "" and settings["args"] == []

    spec = supervisor.validate("w", kind="standard", args=["--duration", "5", "--table", "t-able"])
    assert supervisor.instance_argv(spec, 0, Path("r"))[-4:] == ["--duration", "5", "--table", "t-able"]
    for kind, args, option in [("standard", "--rate 3", "--rate"), ("hardened", "--duration x", "--duration"),
                               ("lease-naive", "--seed 4", "--seed"), ("lease-hardened", "--help", "--help")]:
        with pytest.raises(ConfigError) as err:
            supervisor.validate("w", kind=kind, args=args)
        assert err.value.field == "args" and option in str(err.value), (kind, str(err.value))
    with pytest.raises(ConfigError) as err:
        supervisor.validate("w", command="true", args="--leases 3")
    assert err.value.field == "args"

    spec = supervisor.validate("dwfm", kind="lease-hardened", instances=3, seed=7, args="--leases 30")
    argv = supervisor.instance_argv(spec, 2, Path("ready"))
    assert argv[1:] == ["-m", "chaos_dynamo.lease.reference", "--manager", "hardened", "--seed", "9",
                        "--shard", "2/3", "--http", "127.0.0.1:0", "--ready-file", "ready", "--leases", "30"]
