"""The lab on an emulator it did not start (`lab up --backend URL`): a separate moto_server
process, and MiniStack (LocalStack's API, faithful Route 53) when it is installed.

What a LocalStack user relies on: the topology lands in the external process, the lab DNS
and the LB fleet work on top of it, records written straight to the backend (an init hook)
reach the lab DNS, a restarted lab reuses what is there, and `lab down` leaves the backend
alone.
"""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import socket
import subprocess
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import boto3
import dns.rcode
import pytest
from botocore.config import Config

from chaos_dynamo.clock import wait_until
from chaos_dynamo.config import load_topology
from chaos_dynamo.endpoint import actions
from chaos_dynamo.lab.lab import Lab
from chaos_dynamo.planstore import PlanStore
from chaos_dynamo.shim import lab_resolver
from tests.conftest import BIN, ROOT
from tests.integration.test_cli import cli
from tests.integration.test_lab import addresses, ask
from tests.integration.test_route53_conformance import SENDABLE, route53_client, run_case

pytestmark = pytest.mark.integration

HOOK = ROOT / "localstack" / "init" / "ready.d" / "10-chaos-dynamo.sh"
ENDPOINT = "dynamodb.us-east-1.amazonaws.com"
ZONES = {"us-east-1.amazonaws.com.", "us-east-1.api.aws."}
RESYNC = 0.2


# --- external servers ----------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def answers_http(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1):
            return True
    except urllib.error.HTTPError:
        return True  # it answered, if not with 200
    except (urllib.error.URLError, OSError):
        return False


def listening_addresses(pid: int) -> set[str]:
    """The local addresses a process listens on (TCP) or is bound to (UDP), from /proc."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:["):-1])
    found = set()
    for table in ("tcp", "tcp6", "udp", "udp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if inode not in inodes or (table.startswith("tcp") and state != "0A"):
                continue
            hex_ip = local.split(":")[0]
            # /proc prints each 32-bit word of the address in host (little-endian) order.
            raw = b"".join(bytes.fromhex(hex_ip[i:i + 8])[::-1] for i in range(0, len(hex_ip), 8))
            found.add(str(ipaddress.ip_address(raw)))
    return found


@contextmanager
def external_server(argv: list[str], env: dict[str, str], health_path: str,
                    log: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """Start a server on a free loopback port (an argument or variable "PORT" becomes it), wait until it
    answers HTTP, and kill it afterwards. Retries when another process took the port first."""
    for _ in range(3):
        port = str(free_port())
        with open(log, "ab") as out:
            proc = subprocess.Popen(
                [port if a == "PORT" else a for a in argv],
                env={k: port if v == "PORT" else v for k, v in env.items()},
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )
        url = f"http://127.0.0.1:{port}"
        if _comes_up(proc, url + health_path):
            break
        proc.kill()
        proc.wait(timeout=10)
    else:
        pytest.fail(f"{argv[0]} did not start; log:\n{log.read_text(errors='replace')[-2000:]}")
    try:
        yield url, proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def _comes_up(proc: subprocess.Popen[bytes], health_url: str, timeout: float = 60) -> bool:
    """Wait until the server answers or exits (e.g. the port was taken); True if it answers."""
    wait_until(lambda: proc.poll() is not None or answers_http(health_url), timeout=timeout, interval=0.05)
    return proc.poll() is None and answers_http(health_url)


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "CHAOS_DYNAMO_"))}


@contextmanager
def moto_server(log: Path) -> Iterator[str]:
    argv = [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", "PORT"]
    with external_server(argv, clean_env(), "/moto-api/", log) as (url, proc):
        assert listening_addresses(proc.pid) == {"127.0.0.1"}
        yield url


def direct(service: str, url: str) -> Any:
    """A boto3 client straight to the backend, bypassing the lab (as an init hook does)."""
    return boto3.client(service, endpoint_url=url, region_name="us-east-1",
                        aws_access_key_id="testing", aws_secret_access_key="testing",
                        config=Config(retries={"max_attempts": 1}, connect_timeout=2, read_timeout=10))


def backend_zones(url: str) -> list[tuple[str, str]]:
    """(name, id) of every hosted zone on the backend, duplicates included."""
    pages = direct("route53", url).get_paginator("list_hosted_zones").paginate()
    return sorted((z["Name"], z["Id"].rsplit("/", 1)[-1]) for page in pages for z in page["HostedZones"])


def backend_names(url: str, zone_id: str) -> set[str]:
    pages = direct("route53", url).get_paginator("list_resource_record_sets").paginate(HostedZoneId=zone_id)
    return {r["Name"].rstrip(".") for page in pages for r in page["ResourceRecordSets"]}


def start_lab(backend: str, seed: int = 21, resync_interval: float = 0.0) -> Lab:
    lab = Lab(load_topology(None, seed=seed, backend=backend, propagation_delay=0.05,
                            resync_interval=resync_interval))
    lab.start()
    return lab


# --- one lab on one moto_server for most tests ----------------------------------------------

@pytest.fixture(scope="module")
def backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with moto_server(tmp_path_factory.mktemp("moto") / "moto_server.log") as url:
        yield url


@pytest.fixture(scope="module")
def ext_lab(backend: str) -> Iterator[Lab]:
    lab = start_lab(backend, resync_interval=RESYNC)
    try:
        yield lab
    finally:
        lab.stop()


@pytest.fixture
def fresh_backend(tmp_path: Path) -> Iterator[str]:
    with moto_server(tmp_path / "moto_server.log") as url:
        yield url


def test_topology_is_created_in_the_external_process(ext_lab: Lab, backend: str) -> None:
    info = ext_lab.info()
    assert info.embedded is False and info.emulator_url == backend
    zones = backend_zones(backend)
    assert {name for name, _ in zones} == ZONES and len(zones) == 2
    assert {name.rstrip("."): zid for name, zid in zones} == info.zones
    assert "chaos-dynamo-plans" in direct("dynamodb", backend).list_tables()["TableNames"]
    assert PlanStore(direct("dynamodb", backend), "chaos-dynamo-plans").generations() == [1]
    names = backend_names(backend, info.zones["us-east-1.amazonaws.com"])
    assert {ENDPOINT, "dynamodb-fips.us-east-1.amazonaws.com"} <= names


def test_lab_dns_answers_the_endpoint_from_the_backend(ext_lab: Lab) -> None:
    info = ext_lab.info()
    response = ask(info, ENDPOINT)
    assert response.rcode() == dns.rcode.NOERROR
    assert addresses(response)[0] in {lb["address"] for lb in info.load_balancers}
    assert len(addresses(ask(info, "dynamodb.us-east-1.api.aws", "AAAA"))) == 1


def test_dynamodb_by_endpoint_name_through_the_lb_fleet_reaches_the_backend(ext_lab: Lab,
                                                                           backend: str) -> None:
    assert ext_lab.fleet is not None
    info = ext_lab.info()
    table = f"t-{uuid.uuid4().hex[:8]}"
    # Created on the backend directly: the service's requests must land in that process.
    direct("dynamodb", backend).create_table(
        TableName=table, KeySchema=[{"AttributeName": "k", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "k", "AttributeType": "S"}], BillingMode="PAY_PER_REQUEST")
    before = _puts(ext_lab.fleet.counters())
    with lab_resolver(info.dns, zones=list(info.zones)):
        service = boto3.client("dynamodb", endpoint_url=info.dynamodb_url(), region_name="us-east-1",
                               aws_access_key_id="testing", aws_secret_access_key="testing",
                               config=Config(retries={"max_attempts": 1}, connect_timeout=2, read_timeout=5))
        for i in range(4):
            service.put_item(TableName=table, Item={"k": {"S": str(i)}})
    items = direct("dynamodb", backend).scan(TableName=table)["Items"]
    assert sorted(i["k"]["S"] for i in items) == ["0", "1", "2", "3"]
    assert _puts(ext_lab.fleet.counters()) - before == 4


def _puts(counters: dict[str, Any]) -> int:
    return int(counters["total"]["by_operation"].get("PutItem", 0))


def test_empty_and_restore_endpoint_on_the_backend(ext_lab: Lab, backend: str) -> None:
    info = ext_lab.info()
    config = {"chaos_dynamo_api": info.api_url}
    zone_id = info.zones["us-east-1.amazonaws.com"]
    try:
        emptied = actions.empty_endpoint(configuration=config)
        assert emptied["deleted_records"] == len(info.load_balancers)
        trees = {t.rstrip(".") for t in emptied["trees"]}
        assert trees, emptied
        response = ask(info, ENDPOINT)
        assert response.rcode() == dns.rcode.NOERROR and addresses(response) == []
        # The deletes reached the backend (moto's DELETE semantics were converged away) ...
        assert not trees & backend_names(backend, zone_id)
        # ... and a resync from the backend (proved by a canary written there) keeps it empty.
        canary = f"canary-{uuid.uuid4().hex[:6]}.us-east-1.amazonaws.com"
        _direct_upsert(backend, zone_id, canary, "127.0.0.98")
        assert wait_until(lambda: addresses(ask(info, canary)) == ["127.0.0.98"], timeout=15)
        assert addresses(ask(info, ENDPOINT)) == []
    finally:
        restored = actions.restore_endpoint(configuration=config)
    assert restored["generation"] == 1
    assert len(addresses(ask(info, ENDPOINT))) == 1
    assert trees <= backend_names(backend, zone_id)


def _direct_upsert(url: str, zone_id: str, name: str, value: str) -> None:
    direct("route53", url).change_resource_record_sets(HostedZoneId=zone_id, ChangeBatch={"Changes": [
        {"Action": "UPSERT", "ResourceRecordSet": {
            "Name": name, "Type": "A", "TTL": 5, "ResourceRecords": [{"Value": value}]}}]})


def test_records_and_zones_written_straight_to_the_backend_reach_the_lab_dns(ext_lab: Lab,
                                                                             backend: str) -> None:
    assert ext_lab.route53 is not None
    info = ext_lab.info()
    accepted = ext_lab.route53.counters["accepted"]
    name = f"hook-{uuid.uuid4().hex[:6]}.us-east-1.amazonaws.com"
    assert ask(info, name).rcode() == dns.rcode.NXDOMAIN
    _direct_upsert(backend, info.zones["us-east-1.amazonaws.com"], name, "127.0.0.99")
    assert wait_until(lambda: addresses(ask(info, name)) == ["127.0.0.99"], timeout=15)

    # A whole zone made by a hook is served too, once a resync has seen it.
    zone = f"hooked-{uuid.uuid4().hex[:6]}.example"
    assert ask(info, f"www.{zone}").rcode() == dns.rcode.REFUSED
    zone_id = direct("route53", backend).create_hosted_zone(
        Name=zone, CallerReference=str(uuid.uuid4()))["HostedZone"]["Id"].rsplit("/", 1)[-1]
    _direct_upsert(backend, zone_id, f"www.{zone}", "127.0.0.97")
    assert wait_until(lambda: addresses(ask(info, f"www.{zone}")) == ["127.0.0.97"], timeout=15)
    # None of this went through the lab's Route 53 front.
    assert ext_lab.route53.counters["accepted"] == accepted


# --- restarts, init hooks and the CLI on fresh backends --------------------------------------

def test_a_second_lab_reuses_the_zones_and_the_plan(fresh_backend: str) -> None:
    first = start_lab(fresh_backend)
    try:
        zone_ids = first.info().zones
        # Leave the endpoint broken: the next `lab up` must put the plan back.
        actions.empty_endpoint(configuration={"chaos_dynamo_api": first.info().api_url})
    finally:
        first.stop()
    assert len(backend_zones(fresh_backend)) == 2

    second = start_lab(fresh_backend, seed=22)
    try:
        info = second.info()
        assert info.zones == zone_ids
        assert len(backend_zones(fresh_backend)) == 2, "the second lab made duplicate zones"
        assert PlanStore(direct("dynamodb", fresh_backend), "chaos-dynamo-plans").generations() == [1]
        assert len(addresses(ask(info, ENDPOINT))) == 1
    finally:
        second.stop()


@pytest.mark.skipif(shutil.which("aws") is None, reason="the aws CLI is not installed (pip install awscli)")
def test_the_localstack_init_hook_prepares_a_backend_the_lab_adopts(fresh_backend: str,
                                                                    tmp_path: Path) -> None:
    # LocalStack's image has awslocal; here a two-line stand-in points the aws CLI at the backend.
    shim = tmp_path / "bin"
    shim.mkdir()
    (shim / "awslocal").write_text('#!/bin/sh\nexec aws --endpoint-url "$AWS_ENDPOINT_URL" "$@"\n')
    (shim / "awslocal").chmod(0o755)
    env = clean_env() | {"PATH": f"{shim}:{os.environ['PATH']}", "AWS_ENDPOINT_URL": fresh_backend,
                         "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
    for _ in range(2):  # a second run (a restart with persistence) must change nothing
        run = subprocess.run(["bash", str(HOOK)], env=env, capture_output=True, text=True, timeout=120)
        assert run.returncode == 0, run.stderr + run.stdout
    hooked = backend_zones(fresh_backend)
    assert {name for name, _ in hooked} == ZONES and len(hooked) == 2
    assert PlanStore(direct("dynamodb", fresh_backend), "chaos-dynamo-plans").generations() == []

    lab = start_lab(fresh_backend)
    try:
        info = lab.info()
        assert info.zones == {name.rstrip("."): zid for name, zid in hooked}
        assert PlanStore(direct("dynamodb", fresh_backend), "chaos-dynamo-plans").generations() == [1]
        assert len(addresses(ask(info, ENDPOINT))) == 1
    finally:
        lab.stop()


def test_cli_up_detach_with_backend_then_down_leaves_the_backend_running(fresh_backend: str,
                                                                          tmp_path: Path) -> None:
    state = tmp_path / "lab.json"
    up = cli("lab", "up", "--detach", "--backend", fresh_backend, "--state-file", str(state), "--seed", "4")
    assert up.returncode == 0, up.stderr + up.stdout
    assert f"backend {fresh_backend}" in up.stdout
    try:
        status = cli("lab", "status", "--json", "--state-file", str(state))
        assert status.returncode == 0, status.stderr
        lab_part = json.loads(status.stdout)["lab"]
        assert lab_part["embedded_emulator"] is False and lab_part["emulator_url"] == fresh_backend
        assert {name for name, _ in backend_zones(fresh_backend)} == ZONES
    finally:
        down = cli("lab", "down", "--state-file", str(state))
    assert down.returncode == 0, down.stderr
    assert not state.exists()
    # `lab down` stops what `lab up` started, never the user's emulator or its data.
    assert answers_http(fresh_backend + "/moto-api/")
    assert len(backend_zones(fresh_backend)) == 2


def test_an_experiment_runs_unchanged_on_a_lab_over_an_external_backend(fresh_backend: str,
                                                                         tmp_path: Path) -> None:
    """The smoke experiment file, as shipped: the outage is reproduced in the external process's
    zone and the rollback restores it there; only `lab up --backend` differs."""
    state = tmp_path / "lab.json"
    up = cli("lab", "up", "--detach", "--backend", fresh_backend, "--state-file", str(state), "--seed", "5")
    assert up.returncode == 0, up.stderr + up.stdout
    try:
        journal = tmp_path / "smoke.json"
        run = cli("run", str(ROOT / "experiments" / "endpoint-empty-smoke.json"), "--journal", str(journal),
                  "--state-file", str(state), timeout=300)
        assert run.returncode == 0, run.stdout + run.stderr
        assert "verdict: REPRODUCED" in run.stdout
        data = json.loads(journal.read_text())
        (emptied,) = [r for r in data["run"] if r["activity"]["name"] == "empty-the-endpoint"]
        assert emptied["status"] == "succeeded" and emptied["output"]["deleted_records"] > 0
        assert [r["status"] for r in data["rollbacks"]] == ["succeeded"]
        # The restore landed in the backend itself: the plan's records are back in its zone.
        (zone_id,) = [zid for name, zid in backend_zones(fresh_backend) if name == "us-east-1.amazonaws.com."]
        names = backend_names(fresh_backend, zone_id)
        assert {t.rstrip(".") for t in emptied["output"]["trees"]} <= names
    finally:
        down = cli("lab", "down", "--state-file", str(state))
    assert down.returncode == 0, down.stderr


# --- MiniStack: LocalStack's API with faithful Route 53, when installed ----------------------

def ministack_command() -> str | None:
    """$MINISTACK_BIN, else `ministack` beside this Python, else on PATH."""
    return os.environ.get("MINISTACK_BIN") or shutil.which("ministack", path=str(BIN)) or shutil.which("ministack")


@pytest.fixture(scope="module")
def ministack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    command = ministack_command()
    if command is None:
        pytest.skip("MiniStack is not installed: `pip install ministack` (it pins botocore exactly, so a "
                    "separate venv with MINISTACK_BIN=<venv>/bin/ministack is the clean way)")
    workdir = tmp_path_factory.mktemp("ministack")
    env = clean_env() | {
        # MiniStack binds 0.0.0.0 unless told, and opens an MQTT/TLS listener on 0.0.0.0:8883
        # unless IoT mTLS is off. The lab's rule: loopback only.
        "BIND_HOST": "127.0.0.1", "GATEWAY_PORT": "PORT", "IOT_MTLS_ENABLED": "0", "SFTP_ENABLED": "0",
        "SERVICES": "route53,dynamodb,sts", "LOG_LEVEL": "WARNING", "TMPDIR": str(workdir),
    }
    with external_server([command], env, "/_localstack/health", workdir / "ministack.log") as (url, proc):
        yield url, proc.pid


def test_lab_on_ministack_follows_every_route53_rule(ministack: tuple[str, int]) -> None:
    url, pid = ministack
    lab = start_lab(url, seed=3)
    try:
        info = lab.info()
        assert len(addresses(ask(info, ENDPOINT))) == 1
        client = route53_client(info.api_url)
        problems = {case.id: run_case(client, case) for case in SENDABLE}
    finally:
        lab.stop()
    assert {k: v for k, v in problems.items() if v} == {}
    # Checked after the work: MiniStack opens some listeners lazily, after its HTTP port.
    assert listening_addresses(pid) == {"127.0.0.1"}
