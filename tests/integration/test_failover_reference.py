"""The reference failover controller as a real process on the lab: it builds the failover demo
topology through the lab's Route 53 front, reads the lab's real health checks, takes an
unhealthy load balancer out of DNS and puts it back; plus its command line, its pure parts
and its loop against a Route 53 that fails."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from chaos_dynamo.clock import FakeClock, wait_until
from chaos_dynamo.errors import ConfigError, SafetyError
from chaos_dynamo.failover import reference
from chaos_dynamo.failover.policy import Add, Hold, NaiveController, Remove
from chaos_dynamo.failover.reference import Demo, Options, Target
from chaos_dynamo.lab.lab import Lab
from chaos_dynamo.lab.state import EndpointInfo, LabInfo
from chaos_dynamo.services import supervisor
from tests.conftest import control, http_get, prometheus_samples
from tests.integration._failover import clean_up, records, route53

ZONE = "us-east-1.amazonaws.com"
FAKE_LAB = LabInfo(
    pid=1, api_url="http://127.0.0.1:9", dns_host="127.0.0.1", dns_port=9, lb_port=4567,
    region="us-east-1", emulator_url="http://127.0.0.1:9", embedded=True, seed=0, plan_table="plans",
    record_ttl=5, propagation_delay=0.0, started_at=0.0, zones={ZONE: "Z1", "us-east-1.api.aws": "Z2"},
    endpoints=(EndpointInfo(f"dynamodb.{ZONE}", ZONE, "Z1", False),),
    load_balancers=tuple({"name": f"lb-{i}", "address": f"127.0.0.{10 + i}", "weight": 100,
                          "az": f"use1-az{(i - 1) % 3 + 1}"} for i in range(1, 7)),
)


# --- command line and the demo topology (no lab) --------------------------------------------------

def test_defaults_follow_the_lab() -> None:
    demo = reference.resolve_demo(reference.parse_args(["--controller", "naive"]), FAKE_LAB)
    assert (demo.name, demo.zone, demo.zone_id, demo.port) == (f"app.{ZONE}", ZONE, "Z1", 4567)
    assert [t.name for t in demo.targets] == ["lb-1", "lb-2", "lb-3", "lb-4", "lb-5"]
    assert demo.standby == Target("lb-6", "127.0.0.16", "use1-az3")
    assert demo.target("lb-4").az == "use1-az1"


def test_the_demo_records_and_health_checks() -> None:
    options = reference.parse_args(["--controller", "hardened", "--name", "App.us-east-1.amazonaws.com.",
                                    "--targets", "lb-2,lb-1", "--standby", "lb-3"])
    demo = reference.resolve_demo(options, FAKE_LAB)
    records = [r.to_api() for r in reference.demo_records(demo)]
    assert records == [
        {"Name": f"pool.app.{ZONE}.", "Type": "A", "SetIdentifier": "lb-2", "Weight": 1, "TTL": 5,
         "ResourceRecords": [{"Value": "127.0.0.12"}]},
        {"Name": f"pool.app.{ZONE}.", "Type": "A", "SetIdentifier": "lb-1", "Weight": 1, "TTL": 5,
         "ResourceRecords": [{"Value": "127.0.0.11"}]},
        {"Name": f"standby.app.{ZONE}.", "Type": "A", "TTL": 5, "ResourceRecords": [{"Value": "127.0.0.13"}]},
        {"Name": f"app.{ZONE}.", "Type": "A", "SetIdentifier": "primary", "Failover": "PRIMARY",
         "AliasTarget": {"HostedZoneId": "Z1", "DNSName": f"pool.app.{ZONE}.", "EvaluateTargetHealth": True}},
        {"Name": f"app.{ZONE}.", "Type": "A", "SetIdentifier": "standby", "Failover": "SECONDARY",
         "AliasTarget": {"HostedZoneId": "Z1", "DNSName": f"standby.app.{ZONE}.", "EvaluateTargetHealth": True}},
    ]
    assert reference.health_check_config(demo, demo.target("lb-1")) == {
        "Type": "HTTP", "IPAddress": "127.0.0.11", "Port": 4567, "ResourcePath": "/_lb/health",
        "RequestInterval": 10, "FailureThreshold": 1, "Regions": ["us-east-1", "us-west-1", "us-west-2"]}
    assert reference.caller_reference(demo.name, "lb-1") == f"chaos-dynamo-failover-app.{ZONE}-lb-1"


def test_a_change_batch_per_tick() -> None:
    demo = reference.resolve_demo(Options("naive"), FAKE_LAB)
    assert reference.change_batch(demo, "naive", [Hold("lb-1", "held", "floor")]) is None
    batch = reference.change_batch(demo, "naive", [Remove("lb-1", "read unhealthy"),
                                                   Hold("lb-2", "held", "velocity"),
                                                   Add("lb-3", "read healthy")])
    assert batch is not None
    assert batch["Comment"] == ("chaos-dynamo failover-naive: remove lb-1 (read unhealthy); "
                                "add lb-3 (read healthy)")
    assert [(c["Action"], c["ResourceRecordSet"]["SetIdentifier"]) for c in batch["Changes"]] == [
        ("DELETE", "lb-1"), ("CREATE", "lb-3")]
    long = reference.change_batch(demo, "naive", [Remove("lb-1", "x" * 300)])
    assert long is not None and len(long["Comment"]) == 256


@pytest.mark.parametrize(("statuses", "healthy"), [
    ([], True),  # a new health check: healthy until the checkers have data
    (["Success: HTTP Status Code 200, OK"] * 3, True),
    (["Failure: HTTP Status Code 503, Service Unavailable"] * 2 + ["Success: HTTP Status Code 200, OK"], True),
    (["Failure: Connection refused"] * 3, False),
    (["Failure: x"] * 6 + ["Success: y"], False),  # 1 of 7 = 14% is not more than 18%
])
def test_healthy_when_more_than_18_percent_of_checkers_succeed(statuses: list[str], healthy: bool) -> None:
    observations = [{"Region": "us-east-1", "StatusReport": {"Status": s}} for s in statuses]
    assert reference.healthy_from_observations(observations) is healthy


@pytest.mark.parametrize(("argv", "field", "words"), [
    (["--controller", "naive", "--down-after", "3"], "--down-after", "hardened controller only"),
    (["--controller", "hardened", "--down-after", "0"], "--down-after", ">= 1"),
    (["--controller", "hardened", "--max-removed-fraction", "2"], "--max-removed-fraction", "fraction"),
    (["--controller", "hardened", "--velocity-window", "soon"], "--velocity-window", "'soon'"),
    (["--controller", "naive", "--interval", "0"], "--interval", "> 0"),
    (["--controller", "naive", "--targets", "lb-1,lb-1"], "--targets", "twice"),
    (["--controller", "naive", "--targets", "lb-1,lb-2", "--standby", "lb-2"], "--standby", "--targets"),
    (["--controller", "naive", "--name", "app.example.com", "--zone", ZONE], "--name", "inside"),
    (["--controller", "naive", "--name", "not a name"], "--name", "DNS name"),
    (["--controller", "turbo"], "--controller", "turbo"),
    (["--interval", "1"], "--controller", "required"),
])
def test_bad_arguments_name_the_option(argv: list[str], field: str, words: str) -> None:
    with pytest.raises(ConfigError) as err:
        reference.parse_args(argv)
    assert err.value.field == field and words in str(err.value), str(err.value)


@pytest.mark.parametrize(("options", "field"), [
    (Options("naive", zone="example.com"), "--zone"),
    (Options("naive", targets=("lb-1", "lb-9")), "--targets"),
    (Options("naive", standby="lb-9"), "--standby"),
    (Options("naive", name="a-very-long-service-name-that-goes-on.us-east-1.amazonaws.com"), "--name"),
])
def test_names_the_lab_does_not_have_are_refused(options: Options, field: str) -> None:
    with pytest.raises(ConfigError) as err:
        reference.resolve_demo(options, FAKE_LAB)
    assert err.value.field == field and err.value.fix


def test_route53_is_the_lab_only() -> None:
    assert reference.route53_endpoint({"AWS_ENDPOINT_URL": "http://127.0.0.1:5"}) == "http://127.0.0.1:5"
    for environ in ({}, {"AWS_ENDPOINT_URL": "https://route53.amazonaws.com"},
                    {"AWS_ENDPOINT_URL": "http://127.0.0.1:5", "AWS_ENDPOINT_URL_ROUTE_53": "http://10.0.0.1"}):
        with pytest.raises(SafetyError):
            reference.route53_endpoint(environ)


def test_supervisor_kinds_map_to_the_controller() -> None:
    spec = supervisor.validate("ctl", kind="failover-hardened", seed=3, args="--down-after 4 --interval 0.2")
    argv = supervisor.instance_argv(spec, 0, Path("ready"))
    assert argv[1:] == ["-m", "chaos_dynamo.failover.reference", "--controller", "hardened", "--seed", "3",
                        "--http", "127.0.0.1:0", "--ready-file", "ready", "--down-after", "4",
                        "--interval", "0.2"]
    for kind, args, words in [("failover-naive", "--down-after 3", "--down-after"),
                              ("failover-hardened", "--controller naive", "set by chaos-dynamo"),
                              ("failover-hardened", "--min-fraction x", "--min-fraction")]:
        with pytest.raises(ConfigError) as err:
            supervisor.validate("ctl", kind=kind, args=args)
        assert err.value.field == "args" and words in str(err.value), str(err.value)
    with pytest.raises(ConfigError) as err:
        supervisor.validate("ctl", kind="failover-naive", instances=2)
    assert err.value.field == "instances"


# --- the loop against a Route 53 that fails -------------------------------------------------------

class FlakyRoute53:
    """Health checks and a pool in memory; change batches fail while ``fail_changes`` is set."""

    def __init__(self, demo: Demo) -> None:
        self.demo = demo
        self.healthy = {t.name: True for t in demo.targets}
        self.pool = {t.name for t in demo.targets}
        self.fail_changes = False

    def get_health_check_status(self, HealthCheckId: str) -> dict[str, Any]:  # noqa: N803 - boto3's
        status = "Success: HTTP Status Code 200, OK" if self.healthy[HealthCheckId] else "Failure: refused"
        return {"HealthCheckObservations": [{"StatusReport": {"Status": status}}] * 3}

    def change_resource_record_sets(self, HostedZoneId: str, ChangeBatch: dict[str, Any]) -> dict[str, Any]:  # noqa: N803
        if self.fail_changes:
            raise ConnectionError("the lab is down")
        for change in ChangeBatch["Changes"]:
            target = change["ResourceRecordSet"]["SetIdentifier"]
            if change["Action"] == "DELETE":
                self.pool.remove(target)
            else:
                self.pool.add(target)
        return {"ChangeInfo": {"Id": "C1"}}

    def list_resource_record_sets(self, **_: Any) -> dict[str, Any]:
        records = [reference.pool_record(self.demo, self.demo.target(t)).to_api() for t in sorted(self.pool)]
        return {"ResourceRecordSets": records, "IsTruncated": False}


def test_a_failed_batch_is_read_back_and_the_loop_goes_on() -> None:
    demo = reference.resolve_demo(Options("naive", targets=("lb-1", "lb-2", "lb-3")), FAKE_LAB)
    fake = FlakyRoute53(demo)
    checks = {t.name: t.name for t in demo.targets}
    lines: list[str] = []
    loop = reference.FailoverLoop(fake, demo, checks, NaiveController({t.name: "az" for t in demo.targets}),
                                  clock=FakeClock(), log=lines.append)
    fake.healthy["lb-2"] = False
    fake.fail_changes = True
    assert loop.tick() == [Remove("lb-2", "read unhealthy")]
    assert fake.pool == {"lb-1", "lb-2", "lb-3"} and loop.stats.failed_batches == 1
    assert any("change batch failed" in line for line in lines)
    fake.fail_changes = False
    loop.tick()  # reads the pool back (lb-2 is still in), so removes lb-2 again
    assert fake.pool == {"lb-1", "lb-3"} and loop.stats.resyncs == 1
    fake.healthy["lb-2"] = True
    loop.tick()
    assert fake.pool == {"lb-1", "lb-2", "lb-3"}
    snap = loop.snapshot()
    assert (snap["ticks"], snap["removals"], snap["adds"], snap["api_errors"]) == (3, 2, 1, 1)
    text = reference.render_metrics(snap, demo)
    values = prometheus_samples(text)
    assert values["chaos_dynamo_failover_in_service"] == 3
    assert values['chaos_dynamo_failover_target_in_service{target="lb-2",az="use1-az2"}'] == 1
    assert values["chaos_dynamo_failover_api_errors_total"] == 1


# --- the process on the lab ------------------------------------------------------------------------

def _pool_members(client: Any, zone_id: str, name: str) -> set[str]:
    return {r["SetIdentifier"] for r in records(client, zone_id, f"pool.{name}")}


def test_naive_controller_takes_an_unhealthy_lb_out_and_puts_it_back(
        lab: Lab, lab_info: LabInfo, lab_env: dict[str, str], tmp_path: Path) -> None:
    name = f"app-e1.{ZONE}"
    lbs = {lb["name"]: lb for lb in lab_info.load_balancers}
    standby = lab_info.load_balancers[-1]["name"]
    targets = [n for n in lbs if n != standby]
    by_az: dict[str, list[str]] = {}
    for t in targets:
        by_az.setdefault(lbs[t]["az"], []).append(t)
    victim = min(targets, key=lambda t: len(by_az[lbs[t]["az"]]))
    peers = by_az[lbs[victim]["az"]]
    out_together = set(peers) if 1 / len(peers) >= 0.5 else {victim}  # the naive AZ failover
    ready = tmp_path / "ready.json"
    log = tmp_path / "controller.log"
    client = route53(lab_info)
    zone_id = lab_info.zones[ZONE]
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "chaos_dynamo.failover.reference", "--controller", "naive",
             "--name", name, "--zone", ZONE, "--interval", "0.2", "--http", "127.0.0.1:0",
             "--ready-file", str(ready)], env=lab_env, stdout=out, stderr=subprocess.STDOUT)
    try:
        assert wait_until(lambda: ready.exists() or process.poll() is not None, 20, 0.05), log.read_text()
        assert process.poll() is None, log.read_text()
        info = json.loads(ready.read_text())
        assert info["kind"] == "failover-naive" and info["targets"] == targets and info["standby"] == standby

        # The demo topology, and the DNS answering the service name with the pool.
        assert _pool_members(client, zone_id, name) == set(targets)
        pair = {r["SetIdentifier"]: r for r in records(client, zone_id, name)}
        assert pair["primary"]["AliasTarget"]["DNSName"] == f"pool.{name}."
        assert pair["standby"]["AliasTarget"]["DNSName"] == f"standby.{name}."
        checks = {c["CallerReference"]: c for c in client.list_health_checks()["HealthChecks"]}
        assert {f"chaos-dynamo-failover-{name}-{t}" for t in targets} <= set(checks)
        pool_addresses = {lbs[t]["address"] for t in targets}
        assert wait_until(lambda: lab.dns.members(name).addresses == pool_addresses, 10, 0.05), \
            lab.dns.members(name)
        assert lab.dns.members(name).roles == {"PRIMARY"}
        assert http_get(info["health_url"])[0] == 200

        # Unhealthy: the lab's health checks see it, the controller takes it out.
        status, _ = control(lab_info, f"lb/{victim}/faults", {"unhealthy": True})
        assert status == 200
        assert wait_until(lambda: not _pool_members(client, zone_id, name) & out_together, 15, 0.1), log.read_text()
        assert _pool_members(client, zone_id, name) == set(targets) - out_together
        left = pool_addresses - {lbs[t]["address"] for t in out_together}
        assert wait_until(lambda: lab.dns.members(name).addresses == left, 10, 0.05), lab.dns.members(name)

        # Healthy again: back on the first healthy read.
        control(lab_info, f"lb/{victim}/faults", {"unhealthy": False})
        assert wait_until(lambda: _pool_members(client, zone_id, name) == set(targets), 15, 0.1), log.read_text()
        assert wait_until(lambda: lab.dns.members(name).addresses == pool_addresses, 10, 0.05)
        metrics = prometheus_samples(http_get(info["metrics_url"])[1])
        assert metrics["chaos_dynamo_failover_removals_total"] >= len(out_together)
        assert metrics["chaos_dynamo_failover_adds_total"] >= len(out_together)
        assert metrics["chaos_dynamo_failover_in_service"] == len(targets)
        assert metrics["chaos_dynamo_failover_ticks_total"] > 0

        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0, log.read_text()
        assert time.monotonic() - started < 5
        text = log.read_text()
        assert f"failover-naive: remove {victim}: " in text and f"failover-naive: add {victim}: " in text
        assert "stopped: in_service=" in text and not ready.exists()
        assert _pool_members(client, zone_id, name) == set(targets)  # left as they were
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        control(lab_info, f"lb/{victim}/faults", {"unhealthy": False})
        clean_up(lab_info, ZONE, name)


def test_hardened_controller_as_a_service(lab_info: LabInfo, lab_state_file: Path) -> None:
    name = f"app-e2.{ZONE}"
    state = lab_state_file
    try:
        record = supervisor.start("failover-e2", kind="failover-hardened", seed=2, state=state, lab=lab_info,
                                  args=f"--name {name} --zone {ZONE} --interval 0.2 --down-after 2")
        assert record.kind == "failover-hardened" and record.rate == 0.0
        health_url = record.instances[0].health_url
        assert wait_until(lambda: http_get(health_url)[0] == 200, 5, 0.05), http_get(health_url)
        client = route53(lab_info)
        targets = [lb["name"] for lb in lab_info.load_balancers][:-1]
        assert _pool_members(client, lab_info.zones[ZONE], name) == set(targets)
        # A second start of the same topology finds its health checks instead of adding more.
        result = supervisor.stop("failover-e2", state)
        assert result["stopped"] == 1 and result["killed"] == 0, "SIGTERM must be enough"
        log = Path(record.instances[0].log_path).read_text()
        assert "reference failover-hardened" in log and "down_after=2" in log, log
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "CHAOS_DYNAMO_"))}
        env |= lab_info.env() | {"CHAOS_DYNAMO_STATE": str(state)}
        again = subprocess.run([sys.executable, "-m", "chaos_dynamo.failover.reference", "--controller",
                                "hardened", "--name", name, "--duration", "0.5"],
                               env=env, capture_output=True, text=True, timeout=30)
        assert again.returncode == 0, again.stdout + again.stderr
        references = [c["CallerReference"] for c in client.list_health_checks()["HealthChecks"]]
        assert sorted(r for r in references if name in r) == sorted(
            f"chaos-dynamo-failover-{name}-{t}" for t in targets)
    finally:
        supervisor.stop("failover-e2", state)
        clean_up(lab_info, ZONE, name)
