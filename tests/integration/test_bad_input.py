"""Bad input, table-driven: every malformed argument, experiment, topology or option is
refused with an error naming the field and saying what to do, and changes nothing.

Each row is (what, input, the field the message must name, words of the fix it must give).
"Changes nothing" is checked on the lab's state digest (:mod:`chaos_dynamo.lab.digest`:
zones and records, health checks, plans, LB faults, capacity, control plane) after every
row that could reach the lab. The tables:

- ACTIVITY_ROWS: the real activities (and the lab API, controls' settings, the lab's Route
  53), called in-process against this module's one lab;
- JOURNAL_ROWS: bad arguments in one real ``chaos-dynamo run``: each reaches the journal
  and the user;
- EXPERIMENT_ROWS: experiment files through ``chaos-dynamo verify`` and ``run``: exit 2,
  no journal, nothing ran;
- TOPOLOGY_ROWS: topology files through ``load_topology``, and a few through
  ``chaos-dynamo lab up --config``: exit 2, no state file, no socket bound;
- CLI_ROWS: command-line options: click's error, exit 2.
"""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError, ParamValidationError
from click.testing import CliRunner

from chaos_dynamo.cli import main
from chaos_dynamo.config import load_topology
from chaos_dynamo.control import actions as control
from chaos_dynamo.control import probes as control_probes
from chaos_dynamo.endpoint import actions as endpoint
from chaos_dynamo.endpoint import probes as endpoint_probes
from chaos_dynamo.endpoint._lab import http_json
from chaos_dynamo.errors import ConfigError, SafetyError
from chaos_dynamo.failover import actions as failover
from chaos_dynamo.failover import probes as failover_probes
from chaos_dynamo.health import probes as health
from chaos_dynamo.lab.digest import digest_of, snapshot, state_digest
from chaos_dynamo.lab.lab import Lab
from chaos_dynamo.lab.state import LabInfo, write_state
from chaos_dynamo.lbfleet import actions as lbfleet
from chaos_dynamo.lease import actions as lease
from chaos_dynamo.lease import probes as lease_probes
from chaos_dynamo.lease.control import watcher_settings
from chaos_dynamo.services import actions as services
from chaos_dynamo.services.control import service_settings
from tests.conftest import BIN, ROOT, can_bind

pytestmark = pytest.mark.integration

NAN, INF = math.nan, math.inf
Config = dict[str, Any]


@dataclass(frozen=True)
class Bad:
    """One row: ``call(configuration)`` must raise ``error`` naming ``field`` with ``fix`` words."""

    call: Callable[[Config], Any]
    field: str
    fix: tuple[str, ...]
    error: type[Exception] = ConfigError


def bad(what: str, call: Callable[[Config], Any], field: str, *fix: str,
        error: type[Exception] = ConfigError) -> Any:
    return pytest.param(Bad(call, field, fix, error), id=what)


# --- the lab of this module ----------------------------------------------------------------

@pytest.fixture(scope="module")
def lab_info(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabInfo]:
    the_lab = Lab(load_topology(None, seed=5, propagation_delay=0.05, resync_interval=0.0))
    info = the_lab.start()
    try:
        yield info
    finally:
        the_lab.stop()


@pytest.fixture(scope="module")
def state_file(lab_info: LabInfo, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("bad-input") / "lab.json"
    write_state(lab_info, path)
    return path


@pytest.fixture(scope="module")
def baseline(lab_info: LabInfo) -> dict[str, Any]:
    """The lab's state before the rows; every row must leave it so. A row that changes it
    fails, and the state it left becomes the next row's baseline (so one defect fails one
    row, not every row after it)."""
    return snapshot(lab_info)


@pytest.fixture
def config(lab_info: LabInfo) -> Config:
    return {"chaos_dynamo_api": lab_info.api_url}


def assert_unchanged(info: LabInfo, baseline: dict[str, Any]) -> None:
    if state_digest(info) != digest_of(baseline):
        now = snapshot(info)
        changed = {k: now[k] for k in now if now[k] != baseline.get(k)}
        baseline.clear()
        baseline.update(now)
        raise AssertionError(f"the lab's state changed: {changed}")


def assert_names_field_and_fix(exc: BaseException, field: str, fix: tuple[str, ...]) -> None:
    """A ConfigError: ``field: problem; fix``, with ``.field`` and ``.fix``. A refusal to act
    beyond the lab (SafetyError) or AWS's own answer (the lab's Route 53, botocore's checks):
    the field somewhere in the message, as they word it."""
    message = str(exc)
    if isinstance(exc, ConfigError):
        assert exc.field == field, f"field {exc.field!r}, wanted {field!r}: {message}"
        assert exc.fix, f"no fix given: {message}"
        assert message.startswith(f"{field}:"), f"{field!r} not named first: {message}"
    else:
        assert field in message, f"{field!r} not named: {message}"
    for word in fix:
        assert word.lower() in message.lower(), f"fix word {word!r} missing: {message}"
    assert "Traceback" not in message


# --- activities, called in-process -----------------------------------------------------------

ACTIVITY_ROWS = [
    # endpoint actions: durations, types, unknown endpoint
    bad("empty_endpoint timeout string", lambda c: endpoint.empty_endpoint(timeout="30", configuration=c),
        "timeout", "0.1 to 3600"),
    bad("empty_endpoint timeout bool", lambda c: endpoint.empty_endpoint(timeout=True, configuration=c),
        "timeout", "3600"),
    bad("empty_endpoint timeout negative", lambda c: endpoint.empty_endpoint(timeout=-1, configuration=c),
        "timeout", "3600"),
    bad("empty_endpoint timeout zero", lambda c: endpoint.empty_endpoint(timeout=0, configuration=c),
        "timeout", "3600"),
    bad("empty_endpoint timeout NaN", lambda c: endpoint.empty_endpoint(timeout=NAN, configuration=c),
        "timeout", "3600"),
    bad("empty_endpoint timeout inf", lambda c: endpoint.empty_endpoint(timeout=INF, configuration=c),
        "timeout", "3600"),
    bad("empty_endpoint timeout huge", lambda c: endpoint.empty_endpoint(timeout=1e9, configuration=c),
        "timeout", "3600"),
    bad("empty_endpoint unknown endpoint",
        lambda c: endpoint.empty_endpoint("dynamodb.eu-nowhere-1.amazonaws.com", configuration=c),
        "endpoint", "use one of", "dynamodb.us-east-1.amazonaws.com"),
    bad("empty_endpoint endpoint list", lambda c: endpoint.empty_endpoint(["dynamodb"], configuration=c),
        "endpoint", "in quotes"),
    bad("empty_endpoint wait string", lambda c: endpoint.empty_endpoint(wait="no", configuration=c),
        "wait", "true or false"),
    bad("restore_endpoint unknown endpoint", lambda c: endpoint.restore_endpoint("nope.example", configuration=c),
        "endpoint", "use one of"),
    bad("restore_endpoint timeout negative", lambda c: endpoint.restore_endpoint(timeout=-5, configuration=c),
        "timeout", "3600"),
    bad("empty_endpoint_for seconds string", lambda c: endpoint.empty_endpoint_for("5", configuration=c),
        "seconds", "above 0"),
    bad("empty_endpoint_for seconds negative", lambda c: endpoint.empty_endpoint_for(-5, configuration=c),
        "seconds", "above 0"),
    bad("empty_endpoint_for seconds zero", lambda c: endpoint.empty_endpoint_for(0, configuration=c),
        "seconds", "above 0"),
    bad("empty_endpoint_for seconds NaN", lambda c: endpoint.empty_endpoint_for(NAN, configuration=c),
        "seconds", "above 0"),
    bad("empty_endpoint_for seconds inf", lambda c: endpoint.empty_endpoint_for(INF, configuration=c),
        "seconds", "at most 3600"),
    bad("empty_endpoint_for seconds huge", lambda c: endpoint.empty_endpoint_for(1e7, configuration=c),
        "seconds", "at most 3600"),
    bad("empty_endpoint_for seconds bool", lambda c: endpoint.empty_endpoint_for(True, configuration=c),
        "seconds", "above 0"),
    bad("empty_endpoint_for unknown endpoint",
        lambda c: endpoint.empty_endpoint_for(1, "dynamodb.mars.example", configuration=c), "endpoint", "use one of"),
    bad("empty_endpoint_for close_connections string",
        lambda c: endpoint.empty_endpoint_for(1, close_connections="yes", configuration=c),
        "close_connections", "true or false"),
    # endpoint probes
    bad("endpoint_answer qtype", lambda c: endpoint_probes.endpoint_answer(qtype="MX", configuration=c),
        "qtype", "AAAA"),
    bad("endpoint_addresses unknown endpoint",
        lambda c: endpoint_probes.endpoint_addresses("dynamodb.nowhere.example", configuration=c),
        "endpoint", "use one of"),
    bad("dynamodb_roundtrip timeout negative",
        lambda c: endpoint_probes.dynamodb_roundtrip(timeout=-1, configuration=c), "timeout", "0.1 to 60"),
    # LB fleet
    bad("set_lb_faults unknown LB", lambda c: lbfleet.set_lb_faults("lb-99", down=True, configuration=c),
        "lb", "use one of", "lb-1"),
    bad("set_lb_faults lb number", lambda c: lbfleet.set_lb_faults(1, down=True, configuration=c),
        "lb", "lb-1"),
    bad("set_lb_faults down string", lambda c: lbfleet.set_lb_faults("lb-1", down="yes", configuration=c),
        "faults.down", "true or false"),
    bad("set_lb_faults latency negative", lambda c: lbfleet.set_lb_faults("lb-1", latency=-1, configuration=c),
        "faults.latency", "0 to 86400"),
    bad("set_lb_faults latency string", lambda c: lbfleet.set_lb_faults("lb-1", latency="slow", configuration=c),
        "faults.latency", "0 to 86400"),
    bad("set_lb_faults latency NaN", lambda c: lbfleet.set_lb_faults("lb-1", latency=NAN, configuration=c),
        "faults.latency", "0 to 86400"),
    bad("set_lb_faults latency inf", lambda c: lbfleet.set_lb_faults("lb-1", latency=INF, configuration=c),
        "faults.latency", "0 to 86400"),
    bad("set_lb_faults latency huge", lambda c: lbfleet.set_lb_faults("lb-1", latency=1e9, configuration=c),
        "faults.latency", "0 to 86400"),
    bad("set_lb_faults refuse_for negative",
        lambda c: lbfleet.set_lb_faults("lb-1", refuse_for=-3, configuration=c), "faults.refuse_for", "0 to 86400"),
    bad("set_lb_faults error_rate above 1",
        lambda c: lbfleet.set_lb_faults("lb-1", error_rate=1.5, configuration=c), "faults.error_rate", "0.0 to 1.0"),
    bad("set_lb_faults error_status 404",
        lambda c: lbfleet.set_lb_faults("lb-1", error_rate=0.5, error_status=404, configuration=c),
        "faults.error_status", "500"),
    bad("set_lb_faults error_code unknown",
        lambda c: lbfleet.set_lb_faults("lb-1", error_rate=0.5, error_code="Boom", configuration=c),
        "faults.error_code", "ThrottlingException"),
    bad("set_lb_faults good knob then bad knob",
        lambda c: lbfleet.set_lb_faults("lb-1", down=True, latency=-1, configuration=c),
        "faults.latency", "0 to 86400"),
    bad("throttle_dynamodb rate string", lambda c: lbfleet.throttle_dynamodb("half", configuration=c),
        "rate", "0.0 to 1.0"),
    bad("throttle_dynamodb rate above 1", lambda c: lbfleet.throttle_dynamodb(1.5, configuration=c),
        "rate", "0.0 to 1.0"),
    bad("throttle_dynamodb rate NaN", lambda c: lbfleet.throttle_dynamodb(NAN, configuration=c),
        "rate", "0.0 to 1.0"),
    bad("throttle_dynamodb code unknown", lambda c: lbfleet.throttle_dynamodb(0.5, "Boom", configuration=c),
        "code", "ThrottlingException"),
    bad("throttle_dynamodb unknown LB", lambda c: lbfleet.throttle_dynamodb(0.5, lb="lb-99", configuration=c),
        "lb", "use one of"),
    bad("set_dynamodb_capacity slots negative", lambda c: lbfleet.set_dynamodb_capacity(-1, configuration=c),
        "slots", "10000"),
    bad("set_dynamodb_capacity slots zero", lambda c: lbfleet.set_dynamodb_capacity(0, configuration=c),
        "slots", "10000"),
    bad("set_dynamodb_capacity slots fraction", lambda c: lbfleet.set_dynamodb_capacity(1.5, configuration=c),
        "slots", "10000"),
    bad("set_dynamodb_capacity slots string", lambda c: lbfleet.set_dynamodb_capacity("many", configuration=c),
        "slots", "10000"),
    bad("set_dynamodb_capacity service_time NaN",
        lambda c: lbfleet.set_dynamodb_capacity(2, NAN, configuration=c), "service_time", "60"),
    bad("set_dynamodb_capacity service_time huge",
        lambda c: lbfleet.set_dynamodb_capacity(2, 1e6, configuration=c), "service_time", "60"),
    bad("slow_dynamodb_for seconds zero", lambda c: lbfleet.slow_dynamodb_for(0, 0.1, configuration=c),
        "seconds", "above 0"),
    bad("slow_dynamodb_for seconds inf", lambda c: lbfleet.slow_dynamodb_for(INF, 0.1, configuration=c),
        "seconds", "at most 3600"),
    bad("slow_dynamodb_for service_time negative",
        lambda c: lbfleet.slow_dynamodb_for(1, -0.1, configuration=c), "service_time", "60"),
    # failover actions
    bad("roll_out_targets stagger negative", lambda c: failover.roll_out_targets(stagger=-1, configuration=c),
        "stagger", "0 to 3600"),
    bad("roll_out_targets gap NaN", lambda c: failover.roll_out_targets(gap=NAN, configuration=c),
        "gap", "0 to 3600"),
    bad("roll_out_targets propagation inf", lambda c: failover.roll_out_targets(propagation=INF, configuration=c),
        "propagation", "0 to 3600"),
    bad("roll_out_targets propagation huge", lambda c: failover.roll_out_targets(propagation=1e6, configuration=c),
        "propagation", "0 to 3600"),
    bad("roll_out_targets propagation string",
        lambda c: failover.roll_out_targets(propagation="10", configuration=c), "propagation", "0 to 3600"),
    bad("roll_out_targets failure_rate above 1",
        lambda c: failover.roll_out_targets(failure_rate=2, configuration=c), "failure_rate", "0.0 to 1.0"),
    bad("roll_out_targets mode unknown", lambda c: failover.roll_out_targets(mode="explode", configuration=c),
        "mode", "blackhole"),
    bad("roll_out_targets seed string", lambda c: failover.roll_out_targets(seed="abc", configuration=c),
        "seed", "42"),
    bad("roll_out_targets seed bool", lambda c: failover.roll_out_targets(seed=True, configuration=c),
        "seed", "42"),
    bad("roll_out_targets seed fraction", lambda c: failover.roll_out_targets(seed=1.5, configuration=c),
        "seed", "42"),
    bad("roll_out_targets unknown LB", lambda c: failover.roll_out_targets("lb-1,lb-99", configuration=c),
        "targets", "comma-separated"),
    bad("roll_out_targets targets list", lambda c: failover.roll_out_targets(["lb-1"], configuration=c),
        "targets", "comma-separated"),
    bad("roll_out_targets LB twice", lambda c: failover.roll_out_targets("lb-1,lb-1", configuration=c),
        "targets", "once"),
    bad("fail_intermittently rate negative", lambda c: failover.fail_intermittently("", -0.1, configuration=c),
        "rate", "0.0 to 1.0"),
    bad("fail_intermittently seconds negative",
        lambda c: failover.fail_intermittently("", 0.5, seconds=-5, configuration=c), "seconds", "0 to 3600"),
    bad("fail_intermittently unknown LB", lambda c: failover.fail_intermittently("lb-7", 0.5, configuration=c),
        "targets", "lb-1"),
    bad("degrade_az unknown AZ", lambda c: failover.degrade_az("mars-az9", latency=1, configuration=c),
        "az", "use1-az1"),
    bad("degrade_az latency negative", lambda c: failover.degrade_az("use1-az1", latency=-1, configuration=c),
        "latency", "0 to 600"),
    bad("degrade_az latency huge", lambda c: failover.degrade_az("use1-az1", latency=1e6, configuration=c),
        "latency", "0 to 600"),
    bad("degrade_az down string", lambda c: failover.degrade_az("use1-az1", down="yes", configuration=c),
        "down", "true or false"),
    bad("degrade_az seconds NaN",
        lambda c: failover.degrade_az("use1-az1", latency=1, seconds=NAN, configuration=c), "seconds", "0 to 3600"),
    bad("degrade_az degrades nothing", lambda c: failover.degrade_az("use1-az1", configuration=c),
        "latency", "down: true"),
    bad("restore_targets unknown LB", lambda c: failover.restore_targets("lb-404", configuration=c),
        "targets", "lb-1"),
    # failover probes: an unknown hosted zone
    bad("answer_flaps unknown hosted zone",
        lambda c: failover_probes.answer_flaps("dynamodb.us-east-1.amazonaws.com", zone="amazonaws.com",
                                               configuration=c), "zone", "give the zone"),
    bad("answer_flaps window negative",
        lambda c: failover_probes.answer_flaps("dynamodb.us-east-1.amazonaws.com", window=-1, configuration=c),
        "window", "above 0"),
    # lease action: a missing table, counts, seeds, addresses
    bad("expire_leases missing table", lambda c: lease.expire_leases(1, "no-such-table", configuration=c),
        "table", "lease table"),
    bad("expire_leases table name too short", lambda c: lease.expire_leases(1, "ab", configuration=c),
        "table", "3-255"),
    bad("expire_leases table list", lambda c: lease.expire_leases(1, ["leases"], configuration=c),
        "table", "name of your lease table"),
    bad("expire_leases count negative", lambda c: lease.expire_leases(-1, "leases", configuration=c),
        "count", "whole number"),
    bad("expire_leases count string", lambda c: lease.expire_leases("many", "leases", configuration=c),
        "count", "whole number"),
    bad("expire_leases count bool", lambda c: lease.expire_leases(True, "leases", configuration=c),
        "count", "whole number"),
    bad("expire_leases count fraction", lambda c: lease.expire_leases(1.5, "leases", configuration=c),
        "count", "whole number"),
    bad("expire_leases count huge", lambda c: lease.expire_leases(10**9, "leases", configuration=c),
        "count", "whole number"),
    bad("expire_leases seed string", lambda c: lease.expire_leases(1, "leases", seed="x", configuration=c),
        "seed", "42"),
    bad("expire_leases expiry_unit", lambda c: lease.expire_leases(1, "leases", expiry_unit="hours", configuration=c),
        "expiry_unit", "ms"),
    bad("expire_leases endpoint non-loopback",
        lambda c: lease.expire_leases(1, "leases", endpoint="http://10.1.2.3:8000", configuration=c),
        "endpoint", "loopback", error=SafetyError),
    bad("expire_leases endpoint malformed",
        lambda c: lease.expire_leases(1, "leases", endpoint="not a url", configuration=c),
        "endpoint", "http://127.0.0.1:8000"),
    bad("expire_leases endpoint port out of range",
        lambda c: lease.expire_leases(1, "leases", endpoint="http://127.0.0.1:99999", configuration=c),
        "endpoint", "http://127.0.0.1:8000"),
    bad("live_lease_fraction missing table", lambda c: lease_probes.live_lease_fraction("no-such-table",
                                                                                        configuration=c),
        "table", "lease table"),
    # control plane
    bad("start_control_plane plan_interval negative",
        lambda c: control.start_control_plane(plan_interval=-1, configuration=c), "plan_interval", "0 to 3600"),
    bad("start_control_plane poll zero", lambda c: control.start_control_plane(poll=0, configuration=c),
        "poll", "0.01 to 60"),
    bad("start_control_plane poll NaN", lambda c: control.start_control_plane(poll=NAN, configuration=c),
        "poll", "0.01 to 60"),
    bad("start_control_plane design unknown",
        lambda c: control.start_control_plane(design="wobbly", configuration=c), "design", "fenced"),
    bad("set_design design unknown", lambda c: control.set_design("wobbly", configuration=c), "design", "naive"),
    bad("set_design keep negative", lambda c: control.set_design("fenced", keep=-1, configuration=c),
        "keep", "0 to 10000"),
    bad("set_design keep string", lambda c: control.set_design("fenced", keep="2", configuration=c),
        "keep", "0 to 10000"),
    bad("arm_failpoint unknown point", lambda c: control.arm_failpoint("enactor.nope", "fail", configuration=c),
        "failpoint.point", "enactor.commit"),
    bad("arm_failpoint unknown action", lambda c: control.arm_failpoint("enactor.commit", "explode",
                                                                        configuration=c),
        "failpoint.action", "pause"),
    bad("arm_failpoint seconds negative",
        lambda c: control.arm_failpoint("enactor.commit", "delay", seconds=-1, configuration=c),
        "failpoint.seconds", "0 to 3600"),
    bad("arm_failpoint count zero", lambda c: control.arm_failpoint("enactor.commit", "fail", count=0,
                                                                    configuration=c),
        "failpoint.count", "1 to 1000000"),
    bad("arm_failpoint probability above 1",
        lambda c: control.arm_failpoint("enactor.commit", "random", probability=2, configuration=c),
        "failpoint.probability", "0 to 1"),
    bad("arm_failpoint unknown actor",
        lambda c: control.arm_failpoint("enactor.commit", "fail", actors="enactor-z", configuration=c),
        "failpoint.actors", "enactor-a"),
    bad("disarm_failpoints unknown point", lambda c: control.disarm_failpoints("nope", configuration=c),
        "point", "enactor.commit"),
    bad("burst_planner count zero", lambda c: control.burst_planner(0, configuration=c), "count", "1 to 1000"),
    bad("burst_planner count huge", lambda c: control.burst_planner(10**6, configuration=c), "count", "1 to 1000"),
    bad("stall_enactor unknown enactor", lambda c: control.stall_enactor("enactor-z", configuration=c),
        "enactor", "enactor-a"),
    bad("stall_enactor planner point", lambda c: control.stall_enactor("enactor-a", "planner.plan",
                                                                       configuration=c),
        "point", "enactor.commit"),
    bad("slow_enactor seconds negative", lambda c: control.slow_enactor("enactor-a", -1, configuration=c),
        "seconds", "0 to 3600"),
    bad("slow_enactor seconds inf", lambda c: control.slow_enactor("enactor-a", INF, configuration=c),
        "seconds", "0 to 3600"),
    bad("run_race_scenario seed negative", lambda c: control.run_race_scenario(seed=-1, configuration=c),
        "seed", "4294967295"),
    bad("run_race_scenario seed string", lambda c: control.run_race_scenario(seed="x", configuration=c),
        "seed", "4294967295"),
    bad("run_race_scenario lock_losses huge", lambda c: control.run_race_scenario(lock_losses=41, configuration=c),
        "lock_losses", "0 to 40"),
    bad("run_race_scenario keep huge", lambda c: control.run_race_scenario(keep=9, configuration=c),
        "keep", "0 to 8"),
    bad("run_race_scenario timeout zero", lambda c: control.run_race_scenario(timeout=0, configuration=c),
        "timeout", "600"),
    bad("run_race_scenario timeout NaN", lambda c: control.run_race_scenario(timeout=NAN, configuration=c),
        "timeout", "600"),
    bad("run_race_scenario design unknown", lambda c: control.run_race_scenario("wobbly", configuration=c),
        "design", "fenced"),
    bad("reset_control_plane keep negative", lambda c: control.reset_control_plane(keep=-1, configuration=c),
        "keep", "0 to 10000"),
    bad("restore_and_unstick timeout huge", lambda c: control.restore_and_unstick(1e9, configuration=c),
        "timeout", "600"),
    # services
    bad("start_service no name", lambda c: services.start_service("", kind="naive", configuration=c),
        "service", "letters, digits"),
    bad("start_service unknown kind", lambda c: services.start_service("svc", kind="superfast", configuration=c),
        "kind", "hardened"),
    bad("start_service instances zero", lambda c: services.start_service("svc", kind="naive", instances=0,
                                                                         configuration=c),
        "instances", "1 to 64"),
    bad("start_service instances string", lambda c: services.start_service("svc", kind="naive", instances="two",
                                                                           configuration=c),
        "instances", "whole number"),
    bad("start_service rate NaN", lambda c: services.start_service("svc", kind="naive", rate=NAN, configuration=c),
        "rate", "number"),
    bad("start_service rate negative", lambda c: services.start_service("svc", kind="naive", rate=-1,
                                                                        configuration=c),
        "rate", "more than 0"),
    bad("start_service warmup negative", lambda c: services.start_service("svc", kind="naive", warmup=-1,
                                                                          configuration=c),
        "warmup", "0 to 3600"),
    bad("start_service warmup huge", lambda c: services.start_service("svc", kind="naive", warmup=1e9,
                                                                      configuration=c),
        "warmup", "0 to 3600"),
    bad("start_service seed string", lambda c: services.start_service("svc", kind="naive", seed="x",
                                                                      configuration=c),
        "seed", "whole number"),
    bad("start_service health_url non-loopback",
        lambda c: services.start_service("svc", command="true", health_url="http://10.1.2.3:80/health",
                                         configuration=c), "health_url", "127.0.0.1"),
    bad("start_service health_url port out of range",
        lambda c: services.start_service("svc", command="true", health_url="http://127.0.0.1:70000/health",
                                         configuration=c), "health_url", "127.0.0.1:PORT"),
    bad("start_service health_url malformed",
        lambda c: services.start_service("svc", command="true", health_url="health", configuration=c),
        "health_url", "127.0.0.1:PORT"),
    # health probes: bad addresses
    bad("http_status non-loopback URL", lambda c: health.http_status("http://10.1.2.3/health", configuration=c),
        "url", "loopback", error=SafetyError),
    bad("http_status malformed URL", lambda c: health.http_status("127.0.0.1 health", configuration=c),
        "url", "http://127.0.0.1"),
    bad("http_status timeout negative", lambda c: health.http_status("http://127.0.0.1:1/", -1, configuration=c),
        "timeout", "0.1 to 3600"),
    bad("prometheus_metric labels not strings",
        lambda c: health.prometheus_metric("x", "http://127.0.0.1:1/metrics", labels={"a": 1}, configuration=c),
        "labels", "outcome"),
    # the lab's control API itself: unknown keys in a JSON object
    bad("lab API faults unknown knob",
        lambda c: http_json(f"{c['chaos_dynamo_api']}/_chaos_dynamo/lb/lb-1/faults", {"explode": 1}),
        "faults.explode", "down"),
    bad("lab API intermittent unknown key",
        lambda c: http_json(f"{c['chaos_dynamo_api']}/_chaos_dynamo/lb/lb-1/faults",
                            {"intermittent": {"rate": 0.5, "burst": 3}}), "faults.intermittent.burst", "rate"),
    bad("lab API capacity unknown knob",
        lambda c: http_json(f"{c['chaos_dynamo_api']}/_chaos_dynamo/dynamodb/capacity", {"slot": 2}),
        "capacity.slot", "slots"),
    bad("lab API control unknown option",
        lambda c: http_json(f"{c['chaos_dynamo_api']}/_chaos_dynamo/control/start", {"interval": 2}),
        "interval", "plan_interval"),
    bad("race_history summary string", lambda c: control_probes.race_history("no", configuration=c),
        "summary", "true"),
    # controls' settings (dicts): unknown keys and bad values
    bad("service control unknown key",
        lambda c: service_settings({"service_name": "svc", "service_kind": "naive"}, {"service_replicas": 2}),
        "controls[chaos_dynamo.services.control].arguments", "service_instances"),
    bad("service control instances zero",
        lambda c: service_settings({"service_name": "svc", "service_kind": "naive", "service_instances": 0}),
        "service_instances", "1 to 64"),
    bad("service control warmup NaN",
        lambda c: service_settings({"service_name": "svc", "service_kind": "naive", "service_warmup": "nan"}),
        "service_warmup", "number"),
    bad("lease control unknown key", lambda c: watcher_settings({"lease_table": "leases"}, {"lease_tabel": "x"}),
        "controls[chaos_dynamo.lease.control].arguments", "lease_table"),
    bad("lease control expiry_unit", lambda c: watcher_settings({"lease_table": "leases",
                                                                 "lease_expiry_unit": "hours"}),
        "lease_expiry_unit", "ms"),
    # where the lab is: configuration chaos_dynamo_api
    bad("chaos_dynamo_api malformed", lambda c: endpoint.empty_endpoint(configuration={"chaos_dynamo_api": "lab"}),
        "chaos_dynamo_api", "http://127.0.0.1:PORT"),
    bad("chaos_dynamo_api port out of range",
        lambda c: endpoint.empty_endpoint(configuration={"chaos_dynamo_api": "http://127.0.0.1:99999"}),
        "chaos_dynamo_api", "http://127.0.0.1:PORT"),
    bad("chaos_dynamo_api number", lambda c: endpoint.empty_endpoint(configuration={"chaos_dynamo_api": 8080}),
        "chaos_dynamo_api", "lab env"),
    bad("chaos_dynamo_api non-loopback",
        lambda c: endpoint.empty_endpoint(configuration={"chaos_dynamo_api": "http://10.1.2.3:4566"}),
        "chaos_dynamo_api", "loopback", error=SafetyError),
    # the lab's Route 53: weights and zones, refused as AWS refuses them
    bad("Route 53 weight above 255", lambda c: _weighted_upsert(c, 256), "weight", "less than or equal to 255",
        error=ClientError),
    bad("Route 53 weight negative", lambda c: _weighted_upsert(c, -1), "Weight", "valid min value: 0",
        error=ParamValidationError),
    bad("Route 53 weight not an integer", lambda c: _weighted_upsert(c, 1.5), "Weight", "valid types",
        error=ParamValidationError),
    bad("Route 53 unknown hosted zone", lambda c: _weighted_upsert(c, 5, zone_id="ZNOSUCHZONE"),
        "ZNOSUCHZONE", "No hosted zone", error=ClientError),
]


def _weighted_upsert(config: Config, weight: Any, zone_id: str = "") -> Any:
    """A weighted record written through the lab's Route 53, as any AWS client would."""
    from chaos_dynamo.endpoint._lab import lab_info, route53

    info = lab_info(config)
    ep = info.primary_endpoint
    record = {"Name": f"weighted.{ep.name}", "Type": "A", "SetIdentifier": "bad-input", "Weight": weight,
              "TTL": 5, "ResourceRecords": [{"Value": "127.0.0.11"}]}
    return route53(info).change_resource_record_sets(
        HostedZoneId=zone_id or ep.zone_id, ChangeBatch={"Changes": [{"Action": "UPSERT",
                                                                      "ResourceRecordSet": record}]})


@pytest.mark.parametrize("row", ACTIVITY_ROWS)
def test_a_bad_activity_argument_is_refused_naming_the_field(row: Bad, config: Config, lab_info: LabInfo,
                                                            baseline: dict[str, Any]) -> None:
    try:
        with pytest.raises(row.error) as caught:
            row.call(config)
    finally:
        assert_unchanged(lab_info, baseline)
    assert_names_field_and_fix(caught.value, row.field, row.fix)


# --- activities through a real `chaos-dynamo run`: the message reaches the journal and the user

JOURNAL_ROWS = {
    # action name: (module, func, arguments, field, fix words)
    "hold-empty-for-negative-seconds": ("chaos_dynamo.endpoint.actions", "empty_endpoint_for", {"seconds": -5},
                                        "seconds", ("above 0",)),
    "fault-on-unknown-lb": ("chaos_dynamo.lbfleet.actions", "set_lb_faults", {"lb": "lb-99", "down": True},
                            "lb", ("use one of",)),
    "roll-out-with-string-stagger": ("chaos_dynamo.failover.actions", "roll_out_targets", {"stagger": "2"},
                                     "stagger", ("0 to 3600",)),
    "expire-leases-of-a-missing-table": ("chaos_dynamo.lease.actions", "expire_leases",
                                         {"count": 1, "table": "no-such-table"}, "table", ("lease table",)),
    "arm-a-certain-random-failpoint": ("chaos_dynamo.control.actions", "arm_failpoint",
                                       {"point": "enactor.commit", "action": "random", "probability": 2},
                                       "failpoint.probability", ("0 to 1",)),
    "throttle-with-a-huge-rate": ("chaos_dynamo.lbfleet.actions", "throttle_dynamodb", {"rate": 1e9},
                                  "rate", ("0.0 to 1.0",)),
}


def clean_env(**extra: str) -> dict[str, str]:
    """The caller's environment without AWS or lab settings, plus ``extra``."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "CHAOS_DYNAMO_"))} | extra


@pytest.fixture(scope="module")
def journal_run(state_file: Path, lab_info: LabInfo, baseline: dict[str, Any],
                tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    """One `chaos-dynamo run` of an experiment whose method is every row of JOURNAL_ROWS."""
    work = tmp_path_factory.mktemp("journal-run")
    experiment = {
        "version": "1.0.0", "title": "Bad arguments reach the journal", "description": "Each action is refused.",
        "extensions": [{"name": "chaos-dynamo", "expect": "hold"}],
        "steady-state-hypothesis": {"title": "the endpoint resolves", "probes": [{
            "type": "probe", "name": "endpoint-resolves", "tolerance": {"type": "range", "range": [1, 1000]},
            "provider": {"type": "python", "module": "chaos_dynamo.endpoint.probes", "func": "endpoint_addresses"}}]},
        "method": [{"type": "action", "name": name,
                    "provider": {"type": "python", "module": module, "func": func, "arguments": arguments}}
                   for name, (module, func, arguments, _, _) in JOURNAL_ROWS.items()],
    }
    path = work / "bad-arguments.json"
    path.write_text(json.dumps(experiment))
    journal = work / "journal.json"
    result = subprocess.run([str(BIN / "chaos-dynamo"), "run", str(path), "--journal", str(journal),
                             "--state-file", str(state_file)], cwd=work, env=clean_env(), capture_output=True,
                            text=True, timeout=240)
    assert journal.exists(), result.stdout + result.stderr
    return result, json.loads(journal.read_text())


@pytest.mark.chaos
def test_the_run_fails_and_leaves_the_lab_as_it_was(journal_run: tuple[subprocess.CompletedProcess[str],
                                                                       dict[str, Any]],
                                                    lab_info: LabInfo, baseline: dict[str, Any]) -> None:
    result, journal = journal_run
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert [entry["activity"]["name"] for entry in journal["run"]] == list(JOURNAL_ROWS)
    assert journal["steady_states"]["after"]["steady_state_met"] is True
    assert_unchanged(lab_info, baseline)


@pytest.mark.chaos
@pytest.mark.parametrize("name", list(JOURNAL_ROWS))
def test_a_refused_argument_reaches_the_journal_and_the_user(
        name: str, journal_run: tuple[subprocess.CompletedProcess[str], dict[str, Any]]) -> None:
    result, journal = journal_run
    _, _, _, field, fix = JOURNAL_ROWS[name]
    (entry,) = [e for e in journal["run"] if e["activity"]["name"] == name]
    assert entry["status"] == "failed", entry
    reason = "".join(entry.get("exception", []))
    assert f"ConfigError: {field}: " in reason, reason
    assert all(word in reason for word in fix), reason
    assert f"{field}: " in result.stdout + result.stderr, "the user is not told"


# --- experiment files through `chaos-dynamo verify` and `run`: exit 2, nothing runs ----------

SMOKE = ROOT / "experiments" / "endpoint-empty-smoke.json"
UNSET = "CHAOS_DYNAMO_BAD_INPUT_NEVER_SET"


def mutated(change: Callable[[dict[str, Any]], Any]) -> Callable[[], str]:
    """The smoke experiment with ``change`` applied, as JSON text."""
    def text() -> str:
        experiment = json.loads(SMOKE.read_text())
        change(experiment)
        return json.dumps(experiment)
    return text


def ext(**values: Any) -> Callable[[dict[str, Any]], Any]:
    return lambda e: e["extensions"][0].update(values)


def method_provider(**values: Any) -> Callable[[dict[str, Any]], Any]:
    return lambda e: e["method"][0]["provider"].update(values)


EXPERIMENT_ROWS = [
    pytest.param(lambda: '{"title": "x", "method": [,]}', "bad.json", ("not valid JSON", "fix the syntax"),
                 id="invalid JSON"),
    pytest.param(lambda: "[1, 2]", "bad.json", ("no \"method\"", "experiments/"), id="not an experiment"),
    pytest.param(mutated(ext(expect="maybe")), "extensions[chaos-dynamo].expect", ("deviate", "hold"),
                 id="expect unknown"),
    pytest.param(mutated(ext(expect=True)), "extensions[chaos-dynamo].expect", ("deviate",), id="expect bool"),
    pytest.param(mutated(ext(deviates="endpoint-resolves")), "extensions[chaos-dynamo].deviates",
                 ("list the steady-state probes",), id="deviates string"),
    pytest.param(mutated(ext(deviates=["endpoint-resolvs"])), "extensions[chaos-dynamo].deviates",
                 ("endpoint-resolves",), id="deviates names no probe"),
    pytest.param(mutated(ext(namespaces="endpoint")), "extensions[chaos-dynamo].namespaces",
                 ("leave the key out",), id="namespaces string"),
    pytest.param(mutated(ext(namespaces=[1])), "extensions[chaos-dynamo].namespaces", ("list what",),
                 id="namespaces numbers"),
    pytest.param(mutated(ext(expected="deviate")), "extensions[chaos-dynamo]", ("use only", "expect"),
                 id="extension unknown key"),
    pytest.param(mutated(lambda e: e.update(extensions={"name": "chaos-dynamo"})), "extensions",
                 ("list of objects",), id="extensions object"),
    pytest.param(mutated(lambda e: e["configuration"].update(endpoint={"type": "env", "key": UNSET})),
                 "configuration.endpoint", (UNSET, "\"default\""), id="env variable missing"),
    pytest.param(mutated(lambda e: e["configuration"].update(endpoint={"type": "env"})),
                 "configuration.endpoint.key", ("name the variable",), id="env entry without key"),
    pytest.param(mutated(method_provider(module="chaos_dynamo.nowhere")), "method[0].provider.module",
                 ("cannot be imported", "chaos_dynamo.<area>.actions"), id="unknown module"),
    pytest.param(mutated(method_provider(module="chaos_dynamo.endpoint.action")), "method[0].provider.module",
                 ("did you mean 'chaos_dynamo.endpoint.actions'",), id="misspelt module"),
    pytest.param(mutated(method_provider(func="empty_everything")), "method[0].provider.func",
                 ("empty_endpoint",), id="unknown func"),
    pytest.param(mutated(lambda e: e["rollbacks"][0]["provider"].update(func="restore")), "rollbacks[0].provider.func",
                 ("restore_endpoint",), id="unknown rollback func"),
    pytest.param(mutated(lambda e: e["steady-state-hypothesis"]["probes"][0]["provider"].update(
        func="endpoint_adresses")), "steady-state-hypothesis.probes[0].provider.func",
                 ("did you mean 'endpoint_addresses'",), id="unknown probe func"),
    pytest.param(mutated(lambda e: e["method"][0]["provider"]["arguments"].update(secs=5)),
                 "method[0].provider.arguments.secs", ("timeout",), id="unknown argument"),
    pytest.param(mutated(method_provider(func="empty_endpoint_for")), "method[0].provider.arguments.seconds",
                 ("add \"seconds\"",), id="missing argument"),
    pytest.param(mutated(method_provider(arguments=["dynamodb.us-east-1.amazonaws.com"])),
                 "method[0].provider.arguments", ("by name",), id="arguments list"),
    pytest.param(mutated(lambda e: e.update(controls=[{"name": "svc", "provider": {
        "type": "python", "module": "chaos_dynamo.service.control"}}])), "controls[0].provider.module",
                 ("chaos_dynamo.services.control",), id="unknown control module"),
]


@pytest.mark.parametrize("command", ["verify", "run"])
@pytest.mark.parametrize(("text", "field", "fix"), EXPERIMENT_ROWS)
def test_a_bad_experiment_is_refused_before_anything_runs(
        command: str, text: Callable[[], str], field: str, fix: tuple[str, ...], tmp_path: Path,
        state_file: Path, lab_info: LabInfo, baseline: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(UNSET, raising=False)
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "bad.json"
    path.write_text(text())
    if command == "verify":
        args = ["verify", str(path), "--journals", str(tmp_path / "journals"), "--state-file", str(state_file)]
    else:
        args = ["run", str(path), "--journal", str(tmp_path / "journals" / "bad.json"), "--state-file",
                str(state_file)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, result.output
    (error,) = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert f"bad.json: {field}:" in error if field != "bad.json" else "bad.json: " in error, error
    for word in fix:
        assert word in error, error
    assert not (tmp_path / "journals").exists(), "something ran"
    assert_unchanged(lab_info, baseline)


@pytest.mark.chaos
def test_verify_says_which_field_of_which_file_and_starts_nothing(tmp_path: Path) -> None:
    """The real command, as CI runs it: a directory where one experiment reads an unset
    variable; exit 2 naming the file and the field, no journal, no lab of its own."""
    (tmp_path / "gate").mkdir()
    (tmp_path / "gate" / "a-good.json").write_text(SMOKE.read_text())
    bad = json.loads(SMOKE.read_text())
    bad["configuration"]["endpoint"] = {"type": "env", "key": UNSET}
    (tmp_path / "gate" / "b-bad.json").write_text(json.dumps(bad))
    result = subprocess.run([str(BIN / "chaos-dynamo"), "verify", "gate", "--junit", "junit.xml"], cwd=tmp_path,
                            env=clean_env(), capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stdout + result.stderr
    assert (f"b-bad.json: configuration.endpoint: reads the environment variable {UNSET}, which is not set; "
            f"set {UNSET} before the run, or give the entry a \"default\"") in result.stderr
    assert "Traceback" not in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gate"], "no journal, no lab, no JUnit"


# --- topology files: load_topology, and `chaos-dynamo lab up --config` ------------------------

LB = '[[load_balancers]]\nname = "a"\naddress = "127.0.0.21"\n'
TOPOLOGY_ROWS = [
    pytest.param(LB + "weight = -1\n", "load_balancers[0].weight", "0 to 255", id="weight negative"),
    pytest.param(LB + "weight = 256\n", "load_balancers[0].weight", "0 to 255", id="weight above 255"),
    pytest.param(LB + "weight = 1.5\n", "load_balancers[0].weight", "0 to 255", id="weight fraction"),
    pytest.param(LB + 'weight = "100"\n', "load_balancers[0].weight", "0 to 255", id="weight string"),
    pytest.param(LB + "weight = true\n", "load_balancers[0].weight", "0 to 255", id="weight bool"),
    pytest.param(LB + "weight = 0\n", "load_balancers", "weight from 1 to 255", id="every weight 0"),
    pytest.param(LB.replace("127.0.0.21", "10.0.0.1"), "load_balancers[0].address", "127.0.0.x",
                 id="LB address not loopback"),
    pytest.param(LB.replace("127.0.0.21", "127.0.0"), "load_balancers[0].address", "127.0.0.1",
                 id="LB address malformed"),
    pytest.param(LB.replace("127.0.0.21", "127.0.0.21:80"), "load_balancers[0].address", "127.0.0.1",
                 id="LB address with a port"),
    pytest.param(LB.replace('"127.0.0.21"', "2130706433"), "load_balancers[0].address", "in quotes",
                 id="LB address number"),
    pytest.param(LB + LB.replace("127.0.0.21", "127.0.0.22"), "load_balancers[1].name", "unique",
                 id="LB name twice"),
    pytest.param(LB + LB.replace('"a"', '"b"'), "load_balancers[1].address", "its own address",
                 id="LB address twice"),
    pytest.param(LB.replace('"a"', '"total"'), "load_balancers[0].name", "another name", id="LB name reserved"),
    pytest.param(LB + "wieght = 5\n", "load_balancers[0].wieght", "weight", id="LB unknown key"),
    pytest.param('[[load_balancers]]\nname = "a"\n', "load_balancers[0].address", "give the address",
                 id="LB address missing"),
    pytest.param('[lab]\nregion = "mars"\n', "lab.region", "us-east-1", id="region unknown"),
    pytest.param("[lab]\nregion = 1\n", "lab.region", "in quotes", id="region number"),
    pytest.param("[lab]\napi_port = 70000\n", "lab.api_port", "1-65535", id="port above 65535"),
    pytest.param("[lab]\ndns_port = -1\n", "lab.dns_port", "1-65535", id="port negative"),
    pytest.param('[lab]\nlb_port = "80"\n', "lab.lb_port", "1-65535", id="port string"),
    pytest.param("[lab]\napi_port = 5300\ndns_port = 5300\n", "lab.dns_port", "different ports",
                 id="ports collide"),
    pytest.param("[lab]\npropagation_delay = -0.5\n", "lab.propagation_delay", "0.0 to 60.0",
                 id="propagation_delay negative"),
    pytest.param("[lab]\npropagation_delay = nan\n", "lab.propagation_delay", "0.0 to 60.0",
                 id="propagation_delay NaN"),
    pytest.param("[lab]\npropagation_delay = inf\n", "lab.propagation_delay", "0.0 to 60.0",
                 id="propagation_delay inf"),
    pytest.param('[lab]\npropagation_delay = "fast"\n', "lab.propagation_delay", "0.0 to 60.0",
                 id="propagation_delay string"),
    pytest.param("[lab]\nseed = -1\n", "lab.seed", "0 to", id="seed negative"),
    pytest.param("[lab]\nseed = 1.5\n", "lab.seed", "0 to", id="seed fraction"),
    pytest.param('[lab]\nhost = "0.0.0.0"\n', "lab.host", "127.0.0.x", id="host not loopback"),
    pytest.param('[lab]\nbackend = "http://10.0.0.1:4566"\n', "lab.backend", "127.0.0.1:PORT",
                 id="backend not loopback"),
    pytest.param('[lab]\nbackend = "http://127.0.0.1:99999"\n', "lab.backend", "127.0.0.1:4566",
                 id="backend port out of range"),
    pytest.param("[lab]\nsede = 1\n", "lab.sede", "seed", id="lab unknown key"),
    pytest.param("[labs]\nseed = 1\n", "<top level>.labs", "lab", id="top-level unknown key"),
    pytest.param("lab = [1]\n", "lab", "[lab]", id="lab not a table"),
    pytest.param('[[zones]]\nname = "not a zone"\n', "zones[0].name", "dot-separated", id="zone malformed"),
    pytest.param('[[endpoints]]\nname = "dynamodb.example.com"\nzone = "example.com"\n', "endpoints[0].zone",
                 "[[zones]]", id="endpoint in an unknown zone"),
    pytest.param('[[endpoints]]\nname = "dynamodb.us-east-1.amazonaws.com"\nipv6 = "yes"\n', "endpoints[0].ipv6",
                 "true or false", id="endpoint ipv6 string"),
    pytest.param("lab = {\n", "--config", "fix the syntax", id="invalid TOML"),
]


@pytest.mark.parametrize(("toml", "field", "fix"), TOPOLOGY_ROWS)
def test_a_bad_topology_is_refused_naming_the_field(toml: str, field: str, fix: str, tmp_path: Path) -> None:
    """load_topology only reads the file (nothing binds before it returns), so these rows
    check the error; the `lab up` rows below check that nothing started."""
    path = tmp_path / "lab.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError) as caught:
        load_topology(path)
    assert_names_field_and_fix(caught.value, field, (fix,))


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize(("bad", "field"), [
    pytest.param('[[load_balancers]]\nname = "a"\naddress = "127.0.0.31"\nweight = 300\n',
                 "load_balancers[0].weight", id="bad weight"),
    pytest.param('[[load_balancers]]\nname = "a"\naddress = "127.0.0.31"\n'
                 '[[load_balancers]]\nname = "a"\naddress = "127.0.0.32"\n', "load_balancers[1].name",
                 id="duplicate LB name"),
    pytest.param('[[load_balancers]]\nname = "a"\naddress = "192.168.1.20"\n', "load_balancers[0].address",
                 id="LB address not loopback"),
])
def test_lab_up_with_a_bad_config_exits_2_and_starts_nothing(bad: str, field: str, tmp_path: Path) -> None:
    api, dns, lb = free_port(), free_port(), free_port()
    config = tmp_path / "lab.toml"
    config.write_text(f"[lab]\napi_port = {api}\ndns_port = {dns}\nlb_port = {lb}\n" + bad)
    state = tmp_path / "lab.json"
    result = subprocess.run([str(BIN / "chaos-dynamo"), "lab", "up", "--config", str(config), "--state-file",
                             str(state)], env=clean_env(), capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.startswith(f"error: {field}: "), result.stderr
    assert "Traceback" not in result.stderr
    assert not state.exists()
    assert can_bind(socket.SOCK_STREAM, "127.0.0.1", api) and can_bind(socket.SOCK_DGRAM, "127.0.0.1", dns)
    assert can_bind(socket.SOCK_STREAM, "127.0.0.31", lb)


# --- command-line arguments: click's errors, exit 2 -------------------------------------------

CLI_ROWS = [
    pytest.param(["verify", "--jobs", "0"], "--jobs", "1<=x<=64", id="verify --jobs 0"),
    pytest.param(["verify", "--jobs", "many"], "--jobs", "not a valid integer", id="verify --jobs string"),
    pytest.param(["verify", "--jobs", "1000"], "--jobs", "1<=x<=64", id="verify --jobs huge"),
    pytest.param(["verify", "--seed", "x"], "--seed", "not a valid integer", id="verify --seed string"),
    pytest.param(["verify", "no-such-dir/"], "no-such-dir", "give an experiment file", id="verify missing path"),
    pytest.param(["run", "no-such.json"], "EXPERIMENT", "does not exist", id="run missing file"),
    pytest.param(["run", "--seed", "1.5", str(SMOKE)], "--seed", "not a valid integer", id="run --seed fraction"),
    pytest.param(["lab", "down", "--timeout", "-1"], "--timeout", "0.1 to 3600", id="lab down --timeout negative"),
    pytest.param(["lab", "down", "--timeout", "nan"], "--timeout", "0.1 to 3600", id="lab down --timeout NaN"),
    pytest.param(["lab", "down", "--timeout", "soon"], "--timeout", "not a valid float", id="lab down --timeout string"),
    pytest.param(["service", "stop", "svc", "--timeout", "0"], "--timeout", "0.1 to 3600",
                 id="service stop --timeout 0"),
    pytest.param(["service", "start", "svc", "--kind", "naive", "--ready-timeout", "inf"], "--ready-timeout",
                 "0.1 to 3600", id="service start --ready-timeout inf"),
    pytest.param(["service", "start", "svc", "--kind", "naive", "--instances", "0"], "instances", "1 to 64",
                 id="service start --instances 0"),
    pytest.param(["service", "start", "svc", "--kind", "fastest"], "--kind", "hardened", id="service start --kind"),
    pytest.param(["audit", "--timeout", "-1", "--", "true"], "--timeout", "> 0", id="audit --timeout negative"),
    pytest.param(["audit", "--outage", "nan", "--", "true"], "--outage", "> 0", id="audit --outage NaN"),
    pytest.param(["report", "no-such.json", "-o", "r.html"], "no-such.json", "chaos run --journal-path",
                 id="report missing journal"),
    pytest.param(["explore", "--plans", "1"], "--plans", "2<=x<=10000", id="explore --plans 1"),
    pytest.param(["replay", "no-such.trace.json"], "TRACE", "chaos-dynamo explore", id="replay missing trace"),
]


@pytest.mark.parametrize(("args", "option", "fix"), CLI_ROWS)
def test_a_bad_command_line_exits_2_naming_the_option(args: list[str], option: str, fix: str, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch, lab_info: LabInfo,
                                                      baseline: dict[str, Any]) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CHAOS_DYNAMO_STATE", str(tmp_path / "no-lab.json"))
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, result.output
    assert option in result.stderr and fix in result.stderr, result.stderr
    assert "Traceback" not in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == [], "it wrote something"
    assert_unchanged(lab_info, baseline)


# --- `chaos-dynamo lab digest`: what these rows compare, from the command line -----------------

def test_lab_digest_prints_the_state_digest(state_file: Path, lab_info: LabInfo) -> None:
    plain = CliRunner().invoke(main, ["lab", "digest", "--state-file", str(state_file)])
    assert plain.exit_code == 0, plain.output
    as_json = CliRunner().invoke(main, ["lab", "digest", "--json", "--state-file", str(state_file)])
    data = json.loads(as_json.stdout)
    assert plain.stdout.strip() == data["digest"] == state_digest(lab_info) == digest_of(data["state"])
    assert set(data["state"]) >= {"zones", "plans", "load_balancers", "capacity", "control"}
    lbfleet.set_lb_faults("lb-2", latency=0.25, configuration={"chaos_dynamo_api": lab_info.api_url})
    try:
        changed = CliRunner().invoke(main, ["lab", "digest", "--state-file", str(state_file)])
        assert changed.stdout.strip() != data["digest"]
    finally:
        lbfleet.set_lb_faults("lb-2", latency=0, configuration={"chaos_dynamo_api": lab_info.api_url})
    assert CliRunner().invoke(main, ["lab", "digest", "--state-file", str(state_file)]).stdout == plain.stdout
    missing = CliRunner().invoke(main, ["lab", "digest", "--state-file", str(state_file.with_name("none.json"))])
    assert missing.exit_code == 1 and "lab up --detach" in missing.stderr
