"""The DNS control plane running in the lab: the stale-plan race by failpoints, its fix, the
stuck state and the operator's restore, replay of a trace, input checks.

Every test leaves the lab at the control plane's clean baseline (plan 1 everywhere, one plan
in the table), as the rest of the suite expects it.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import dns.message
import dns.query
import dns.rcode
import pytest

from chaos_dynamo.clock import REAL_CLOCK, wait_until
from chaos_dynamo.control import actions, probes
from chaos_dynamo.control.enactor import Design, trace_digest
from chaos_dynamo.control.explorer import replay_in_memory
from chaos_dynamo.control.history import OPERATOR
from chaos_dynamo.control.runtime import HALT_TIMEOUT, ControlPlane, ScenarioAborted
from chaos_dynamo.control.trace import Step, load_trace
from chaos_dynamo.endpoint import probes as endpoint_probes
from chaos_dynamo.endpoint._lab import http_json
from chaos_dynamo.errors import ConfigError, LabError
from chaos_dynamo.lab.lab import Lab
from chaos_dynamo.lab.state import LabInfo, read_state
from tests.conftest import BIN, ROOT

pytestmark = pytest.mark.integration
TRACE = ROOT / "tests" / "integration" / "data" / "classic-race.trace.json"
RACE_RUNS = 5


@pytest.fixture
def plane(lab: Lab) -> Iterator[ControlPlane]:
    assert lab.control_plane is not None
    yield lab.control_plane
    lab.control_plane.reset()  # the clean baseline the rest of the suite expects


def answer(info: LabInfo, name: str) -> tuple[int, list[str]]:
    """(rcode, addresses) as a resolver gets them from the lab DNS over real UDP."""
    response = dns.query.udp(dns.message.make_query(name, "A"), info.dns_host, port=info.dns_port, timeout=2)
    return response.rcode(), [item.address for rrset in response.answer for item in rrset if hasattr(item, "address")]


def test_naive_race_reproduces_on_every_run(plane: ControlPlane, lab_info: LabInfo,
                                            config: dict[str, Any]) -> None:
    digests = set()
    primary = lab_info.primary_endpoint.name
    for run in range(RACE_RUNS):
        result = plane.run_race(seed=3)
        assert result["race_reproduced"], (run, result["summary"])
        digests.add(result["digest"])
        # The empty answer, over real DNS: NOERROR with no addresses, on every endpoint.
        for ep in lab_info.endpoints:
            rcode, addresses = answer(lab_info, ep.name)
            assert (rcode, addresses) == (dns.rcode.NOERROR, []), (run, ep.name)
        # The stale plan went active over the newer one, and Route 53 says so too.
        assert {(c["from"], c["to"]) for c in result["went_backwards"]} == {(10, 5)}
        assert probes.active_generation(configuration=config) == 5
        assert probes.generation_went_backwards(configuration=config) is True
        # Enactor C could not apply plan 11: the control plane is stuck.
        assert result["enactors"] == {"enactor-a": "done", "enactor-b": "done", "enactor-c": "stuck"}
        assert probes.control_plane_stuck(configuration=config) is True
        assert "plan-000005" in result["stuck_reason"] and "not found" in result["stuck_reason"]
        assert endpoint_probes.endpoint_answer(primary, configuration=config)["count"] == 0
    # One seed, one history: the same trace digest on every run.
    assert len(digests) == 1


def test_fenced_race_holds_and_route53_refuses_the_stale_batch(plane: ControlPlane, lab_info: LabInfo,
                                                                config: dict[str, Any]) -> None:
    result = plane.run_race(design=Design.FENCED, seed=3)
    assert result["held"] and not result["violations"] and not result["race_reproduced"]
    assert result["enactors"] == {"enactor-a": "abandoned", "enactor-b": "done", "enactor-c": "done"}
    # The refusal is Route 53's own rule: A's batch deletes the marker it checked (1), now 10.
    refused = [h for h in result["history"] if h["actor"] == "enactor-a" and h.get("error")]
    assert len(refused) == 1
    assert refused[0]["error"].startswith("InvalidChangeBatch")
    assert "_generation.dynamodb.us-east-1.amazonaws.com." in refused[0]["error"]
    assert "do not match the current values" in refused[0]["error"]
    assert "stale plan refused" in refused[0]["detail"]
    for ep in lab_info.endpoints:
        assert len(answer(lab_info, ep.name)[1]) == 1
    assert probes.active_generation(configuration=config) == 11
    assert probes.generation_went_backwards(configuration=config) is False
    assert probes.control_plane_stuck(configuration=config) is False


def test_stuck_until_the_operator_restores_then_a_new_plan_applies(plane: ControlPlane, lab_info: LabInfo,
                                                                  config: dict[str, Any]) -> None:
    plane.run_race(seed=1)
    assert probes.control_plane_stuck(configuration=config)
    restored = actions.restore_and_unstick(configuration=config)
    assert restored["generation"] == 11 and restored["was_stuck"]
    assert probes.control_plane_stuck(configuration=config) is False
    assert probes.generation_went_backwards(configuration=config) is False  # a new epoch
    assert all(state["phase"] == "idle" for state in probes.enactor_states(configuration=config).values())
    assert len(answer(lab_info, lab_info.primary_endpoint.name)[1]) == 1
    # The Enactors work again: a new plan reaches every endpoint.
    actions.start_control_plane(plan_interval=0, poll=0.05, configuration=config)
    actions.burst_planner(1, configuration=config)
    assert wait_until(lambda: set(plane.status()["generations"].values()) == {12}, timeout=30, interval=0.05), \
        plane.status()
    actions.stop_control_plane(configuration=config)
    assert probes.active_generation(configuration=config) == 12
    assert probes.control_plane_stuck(configuration=config) is False
    assert len(answer(lab_info, lab_info.primary_endpoint.name)[1]) == 1


def test_stall_and_slow_an_enactor_with_failpoints(plane: ControlPlane, config: dict[str, Any]) -> None:
    actions.reset_control_plane(configuration=config)
    actions.stall_enactor("enactor-a", point="enactor.check", until="operator.release", configuration=config)
    actions.stall_enactor("enactor-b", point="enactor.check", until="operator.release", configuration=config)
    actions.slow_enactor("enactor-c", 0.05, point="enactor.commit", configuration=config)
    actions.start_control_plane(plan_interval=0, poll=0.05, configuration=config)
    actions.burst_planner(1, configuration=config)
    assert wait_until(lambda: set(plane.status()["generations"].values()) == {2}, timeout=30, interval=0.05)
    states = probes.enactor_states(configuration=config)
    assert states["enactor-a"]["paused"] == "enactor.check until operator.release"
    assert states["enactor-b"]["paused"] == "enactor.check until operator.release"
    armed = {(f["point"], tuple(f["actors"])): f for f in plane.status()["failpoints"]}
    assert armed[("enactor.commit", ("enactor-c",))]["fired"] >= 1
    actions.disarm_failpoints(configuration=config)  # releases the stalled Enactors
    assert wait_until(lambda: not any(s["paused"] for s in probes.enactor_states(configuration=config).values()),
                      timeout=10, interval=0.05)
    status = actions.stop_control_plane(configuration=config)
    assert status["mode"] == "idle" and status["failpoints"] == []


def test_bad_inputs_name_the_field_and_change_nothing(plane: ControlPlane, lab_info: LabInfo,
                                                     config: dict[str, Any]) -> None:
    before = plane.status()
    cases = [
        (lambda: actions.run_race_scenario(design="optimistic", configuration=config), "design"),
        (lambda: actions.run_race_scenario(seed=-1, configuration=config), "seed"),
        (lambda: actions.run_race_scenario(lock_losses=99, configuration=config), "lock_losses"),
        (lambda: actions.run_race_scenario(timeout=0, configuration=config), "timeout"),
        (lambda: actions.set_design("optimistic", configuration=config), "design"),
        (lambda: actions.arm_failpoint("enactor.nap", "pause", configuration=config), "failpoint.point"),
        (lambda: actions.arm_failpoint("enactor.commit", "explode", configuration=config), "failpoint.action"),
        (lambda: actions.arm_failpoint("enactor.commit", "pause", configuration=config), "failpoint.event"),
        (lambda: actions.arm_failpoint("enactor.commit", "fail", actors="enactor-z", configuration=config),
         "failpoint.actors"),
        (lambda: actions.burst_planner(0, configuration=config), "count"),
        (lambda: actions.stall_enactor("enactor-z", configuration=config), "enactor"),
        (lambda: actions.slow_enactor("enactor-a", -1.0, configuration=config), "seconds"),
        (lambda: actions.slow_enactor("enactor-a", 1.0, point="planner.plan", configuration=config), "point"),
        (lambda: actions.start_control_plane(plan_interval=-5, configuration=config), "plan_interval"),
        (lambda: actions.reset_control_plane(keep=-1, configuration=config), "keep"),
        (lambda: actions.restore_and_unstick(timeout=10_000, configuration=config), "timeout"),
    ]
    for call, field in cases:
        with pytest.raises(ConfigError) as caught:
            call()
        assert caught.value.field == field, (field, str(caught.value))
    after = plane.status()
    assert {k: after[k] for k in ("mode", "design", "keep", "failpoints", "history_length", "generations")} == \
        {k: before[k] for k in ("mode", "design", "keep", "failpoints", "history_length", "generations")}
    # The routes answer 400 with the field (read back as the ConfigError); unknown routes 404 with the list.
    base = f"{lab_info.api_url}/_chaos_dynamo/control"
    with pytest.raises(ConfigError, match="^count: "):
        http_json(f"{base}/burst", {"count": "many"})
    with pytest.raises(ConfigError, match="^surprise: "):
        http_json(f"{base}/race", {"surprise": 1})
    with pytest.raises(ConfigError, match="^steps"):
        http_json(f"{base}/replay", {"trace": {"format": "chaos-dynamo-trace/1", "design": "naive", "enactors": 3,
                                               "plans": 4, "endpoints": 1, "keep": 1, "steps": []}})
    with pytest.raises(LabError, match="answered 404"):
        http_json(f"{base}/teleport", {})
    # Something that conflicts with what runs: 409.
    with pytest.raises(LabError, match="not running"):
        actions.burst_planner(1, configuration=config)


def test_safety_control_actions_refuse_a_lab_that_is_not_loopback() -> None:
    from chaos_dynamo.errors import SafetyError

    with pytest.raises(SafetyError, match="loopback"):
        actions.run_race_scenario(configuration={"chaos_dynamo_api": "http://10.1.2.3:4566"})
    with pytest.raises(SafetyError, match="loopback"):
        actions.restore_and_unstick(configuration={"chaos_dynamo_api": "http://example.com:4566"})


def test_replay_cli_reproduces_the_classic_race(lab_state_file: Path, tmp_path: Path, plane: ControlPlane,
                                                config: dict[str, Any]) -> None:
    trace = load_trace(TRACE)
    history, violation = replay_in_memory(trace)
    assert violation is not None and violation.kind == "empty-endpoint"
    assert trace_digest(history) == trace.digest
    result = subprocess.run([str(BIN / "chaos-dynamo"), "replay", str(TRACE), "--state-file", str(lab_state_file)],
                            capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "verdict: REPRODUCED: the trace's empty-endpoint violation happened on the lab" in out
    assert "same steps and outcomes as the trace's history: yes" in out
    assert "^ generation-decreased" in out and "^ empty-endpoint" in out and "^ enactor-stuck" in out
    assert "25. enactor-c commit plan 11" in out
    # The lab was put back afterwards.
    assert endpoint_probes.endpoint_addresses(configuration=config) == 1
    assert probes.control_plane_stuck(configuration=config) is False


def test_replay_cli_refuses_a_trace_the_lab_cannot_run(lab_state_file: Path, tmp_path: Path) -> None:
    missing = subprocess.run([str(BIN / "chaos-dynamo"), "replay", str(tmp_path / "nope.json"),
                              "--state-file", str(lab_state_file)], capture_output=True, text=True, timeout=120)
    assert missing.returncode == 2 and "TRACE:" in missing.stderr and "does not exist" in missing.stderr
    data = json.loads(TRACE.read_text())
    too_many = tmp_path / "five-enactors.json"
    too_many.write_text(json.dumps({**data, "enactors": 5, "history": []}))
    result = subprocess.run([str(BIN / "chaos-dynamo"), "replay", str(too_many), "--state-file", str(lab_state_file)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "error: enactors: the trace has 5 Enactors, the lab runs 3" in result.stderr


def test_replay_of_a_trace_that_does_not_fit_diverges(plane: ControlPlane) -> None:
    trace = replace(load_trace(TRACE), steps=(Step("planner", "plan"), Step("enactor-a", "commit")), history=())
    result = plane.replay(trace)
    assert result["reproduced"] is False
    assert result["diverged"]["step"] == 1
    assert "next step on the lab is 'check'" in result["diverged"]["detail"]


def _race_in_background(plane: ControlPlane) -> tuple[threading.Thread, list[BaseException]]:
    errors: list[BaseException] = []

    def run() -> None:
        try:
            plane.run_race(seed=5)
        except BaseException as exc:  # noqa: BLE001 - the test inspects it
            errors.append(exc)

    thread = threading.Thread(target=run, name="test-race")
    thread.start()
    return thread, errors


def test_the_operator_restore_aborts_a_race_in_flight(plane: ControlPlane, lab_info: LabInfo,
                                                      config: dict[str, Any]) -> None:
    thread, errors = _race_in_background(plane)
    try:
        # Enactor A has checked plan 5 and is paused: the race is half way.
        assert wait_until(lambda: "enactor-a" in plane.failpoints.waiting(), timeout=30, interval=0.02)
        restored = actions.restore_and_unstick(configuration=config)
    finally:
        thread.join(timeout=60)
    assert not thread.is_alive()
    assert len(errors) == 1 and isinstance(errors[0], ScenarioAborted), errors
    assert restored["generation"] >= 5
    assert plane.status()["mode"] == "idle" and plane.status()["failpoints"] == []
    assert not [t.name for t in threading.enumerate() if t.name.startswith("control-")]
    assert len(answer(lab_info, lab_info.primary_endpoint.name)[1]) == 1


def test_stop_aborts_a_race_in_flight_within_the_halt_deadline(plane: ControlPlane, lab_info: LabInfo,
                                                                config: dict[str, Any]) -> None:
    thread, errors = _race_in_background(plane)
    try:
        assert wait_until(lambda: "enactor-a" in plane.failpoints.waiting(), timeout=30, interval=0.02)
        started = REAL_CLOCK.monotonic()
        status = actions.stop_control_plane(configuration=config)
        stopped_in = REAL_CLOCK.monotonic() - started
    finally:
        thread.join(timeout=60)
    assert stopped_in < HALT_TIMEOUT, stopped_in
    assert status["mode"] == "idle" and not any(a["alive"] for a in status["actors"].values())
    assert len(errors) == 1 and isinstance(errors[0], ScenarioAborted), errors
    assert plane.failpoints.waiting() == {} and not plane.failpoints.halted
    assert not [t.name for t in threading.enumerate() if t.name.startswith("control-")]
    # Enactor A had checked plan 5 (and held it) when it was stopped: the hold is released.
    assert plane.world(OPERATOR).plans.holders(5) == frozenset()
    assert any(e.record.action == "release" and e.record.actor == "enactor-a" and e.record.generation == 5
               for e in plane.history.entries())
    plane.restore()


def test_stopping_a_free_running_enactor_mid_cycle_releases_its_hold(plane: ControlPlane,
                                                                     config: dict[str, Any]) -> None:
    actions.reset_control_plane(design="fenced", configuration=config)
    for enactor in ("enactor-b", "enactor-c"):  # only A takes plan 2
        actions.stall_enactor(enactor, point="enactor.check", until="never", configuration=config)
    actions.stall_enactor("enactor-a", point="enactor.commit", until="never", configuration=config)
    actions.start_control_plane(plan_interval=0, poll=0.05, configuration=config)
    actions.burst_planner(1, configuration=config)
    plans = plane.world(OPERATOR).plans
    assert wait_until(lambda: "enactor-a" in plane.failpoints.waiting(), timeout=30, interval=0.02)
    assert plans.holders(2) == frozenset({"enactor-a"})
    status = actions.stop_control_plane(configuration=config)
    assert plans.holders(2) == frozenset()  # under fenced, a held plan would never be cleaned up
    assert status["enactors"]["enactor-a"]["phase"] == "abandoned"
    assert all(not s["paused"] and not s["alive"] and not s["error"] for s in status["enactors"].values())
    actions.disarm_failpoints(configuration=config)


def test_sigterm_of_the_lab_mid_race_stops_the_control_plane_first(tmp_path: Path) -> None:
    # Its own process: embedded moto keeps its state per process, so a second in-process lab
    # would share the session lab's tables and zones.
    state = tmp_path / "lab.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "CHAOS_DYNAMO_"))}
    up = subprocess.run([str(BIN / "chaos-dynamo"), "lab", "up", "--detach", "--state-file", str(state),
                         "--propagation-delay", "0.05"], capture_output=True, text=True, timeout=120, env=env)
    assert up.returncode == 0, up.stdout + up.stderr
    info = read_state(state)
    base = f"{info.api_url}/_chaos_dynamo/control"
    answers: list[Any] = []
    race = threading.Thread(target=lambda: answers.append(_answer_or_error(f"{base}/race", {"seed": 2})))
    race.start()
    try:
        assert wait_until(lambda: http_json(f"{base}/enactors")["enactor-a"]["paused"], timeout=60, interval=0.05)
    finally:
        down = subprocess.run([str(BIN / "chaos-dynamo"), "lab", "down", "--state-file", str(state)],
                              capture_output=True, text=True, timeout=120, env=env)
        race.join(timeout=60)
    assert down.returncode == 0 and "lab stopped" in down.stdout, down.stdout + down.stderr
    assert "was killed" not in down.stdout + down.stderr  # it stopped by itself, threads joined
    assert not race.is_alive() and isinstance(answers[0], LabError)  # the race was aborted, not finished
    log = state.with_suffix(".log").read_text()
    assert "Traceback" not in log, log


def _answer_or_error(url: str, body: dict[str, Any]) -> Any:
    try:
        return http_json(url, body, timeout=120)
    except LabError as exc:
        return exc


def test_explorer_counterexample_replays_on_the_lab(plane: ControlPlane, config: dict[str, Any]) -> None:
    """The whole loop: the explorer finds the shortest outage in memory; the lab reproduces it."""
    from chaos_dynamo.control.enactor import Design
    from chaos_dynamo.control.explorer import Bounds, explore

    found = explore(Bounds(Design.NAIVE, enactors=3, plans=4, endpoints=1))
    assert found.violation is not None and found.violation.kind == "empty-endpoint"
    result = plane.replay(found.to_trace())
    assert result["reproduced"] is True, result
    plane.restore()
    assert endpoint_probes.endpoint_addresses(configuration=config) == 1
