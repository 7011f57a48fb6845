"""Stop conditions with the real ``chaos`` CLI on the session lab.

The sample experiment slows lb-1 and empties the DynamoDB endpoint for a minute, guarded by
a kill switch: a file that must exist, checked every 0.2 s; the tests run it with a
ten-minute hold (:func:`trips`), so "stopped long before the hold ends" has a wide margin
on a loaded machine, at no cost: the run is interrupted anyway. Each test pulls the switch
once the lab DNS answers empty, and checks what the run recorded: interrupted long before
the hold's end, the rollbacks run exactly once (by the control, or by chaos when its
rollback strategy is ``always``), the endpoint answering, and the lab's state digest as
before the run (plain ``chaos run`` has no safety net, so only the rollbacks can have put
lb-1 back).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dns.exception
import dns.message
import dns.query
import pytest

from chaos_dynamo.clock import wait_until
from chaos_dynamo.endpoint import probes
from chaos_dynamo.lab.digest import snapshot, state_digest
from chaos_dynamo.lab.state import LabInfo
from tests.conftest import BIN, ROOT

pytestmark = [pytest.mark.integration, pytest.mark.chaos]

SAMPLES = ROOT / "tests" / "data" / "experiments"
TRIPS = SAMPLES / "stop-condition-trips.json"
HOLDS = SAMPLES / "stop-condition-holds.json"
HOLD = 600.0
"""The outage the tests run (the sample's minute made ten), in seconds; a stopped run must end
long before it."""
HOLD_ACTION = "empty-the-endpoint-for-a-minute"
TRIP_TIMEOUT = 120.0
"""Seconds a run gets to stop and roll back once the switch is pulled: well under the hold, so
a control that does not interrupt makes the test time out instead of waiting ten minutes."""
GUARD = "kill-switch-armed"
ROLLBACKS = ["restore-the-endpoint", "clear-lb-faults"]
STOPPED = "stopped by stop condition kill-switch-armed: value false, tolerance true"


@pytest.fixture(autouse=True)
def leave_the_lab_clean(lab_info: LabInfo) -> Iterator[None]:
    """After the test's own checks: whatever a failing run left broken is put back, so it
    does not fail the next test too."""
    yield
    from chaos_dynamo.endpoint.actions import restore_endpoint
    from chaos_dynamo.lbfleet.actions import reset_lb_faults

    config = {"chaos_dynamo_api": lab_info.api_url}
    reset_lb_faults(configuration=config)
    restore_endpoint(configuration=config)


def endpoint_empty(info: LabInfo) -> bool:
    """The lab DNS answers the endpoint with no address (a query lost on a busy machine: not yet)."""
    query = dns.message.make_query(info.primary_endpoint.name, "A")
    try:
        return not dns.query.udp(query, info.dns_host, port=info.dns_port, timeout=2).answer
    except dns.exception.Timeout:
        return False


def without_lab_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "CHAOS_DYNAMO_", "GITHUB_"))}


def trip(command: list[str], env: dict[str, str], info: LabInfo, switch: Path, cwd: Path) -> tuple[int, str]:
    """Run ``command``; pull the kill switch once the endpoint answers empty. (exit, output)"""
    process = subprocess.Popen(command, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, start_new_session=True)
    try:
        emptied = wait_until(lambda: process.poll() is not None or endpoint_empty(info), timeout=120, interval=0.05)
        assert emptied and process.poll() is None, f"the hold never started: {process.communicate()[0]}"
        switch.unlink()  # the operator pulls the kill switch
        output, _ = process.communicate(timeout=TRIP_TIMEOUT)
    finally:
        if process.poll() is None:  # SIGTERM first: verify rolls its chaos run back (not in its group)
            process.terminate()
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    return process.returncode, output


def trips(tmp_path: Path) -> Path:
    """The sample with its outage made :data:`HOLD` seconds long (same file name, so the same
    journal name under verify)."""
    experiment = json.loads(TRIPS.read_text())
    (hold,) = [a for a in experiment["method"] if a["name"] == HOLD_ACTION]
    assert hold["provider"]["arguments"]["seconds"] == 60, "the sample changed: update this test"
    hold["provider"]["arguments"]["seconds"] = HOLD
    path = tmp_path / TRIPS.name
    path.write_text(json.dumps(experiment))
    return path


def armed(tmp_path: Path) -> Path:
    switch = tmp_path / "kill-switch"
    switch.write_text("armed\n")
    return switch


def assert_stopped_and_rolled_back(journal: dict[str, Any], rolled_back_by: str) -> None:
    assert journal["status"] == "interrupted"
    (entry,) = [e for e in journal["extensions"] if e["name"] == "stop-conditions"]
    stopped = entry["stopped"]
    assert (stopped["name"], stopped["value"], stopped["tolerance"], stopped["reason"], stopped["during"]) == (
        GUARD, False, True, "tolerance not met", "method")
    assert stopped["rollbacks"].startswith(rolled_back_by), stopped["rollbacks"]
    assert 0 < stopped["seconds_into_method"] < HOLD / 2
    (hold,) = [r for r in journal["run"] if r["activity"]["name"] == HOLD_ACTION]
    assert hold["activity"]["provider"]["arguments"]["seconds"] == HOLD
    assert "status" not in hold, "chaos cut the hold short"
    assert hold["duration"] < HOLD / 2, hold
    assert [(r["activity"]["name"], r["status"]) for r in journal["rollbacks"]] == [
        (name, "succeeded") for name in ROLLBACKS], "each rollback ran exactly once"


@pytest.mark.parametrize("strategy", ["default", "always"])
def test_plain_chaos_run_stops_the_hold_and_rolls_back_once(strategy: str, lab_info: LabInfo, lab_env: dict[str, str],
                                                            config: dict[str, Any], tmp_path: Path) -> None:
    """chaos 1.44 skips the rollbacks of an interrupted run unless its strategy is
    ``always``: then chaos runs them and the control does not; else the control does."""
    before = snapshot(lab_info)
    switch = armed(tmp_path)
    journal_path = tmp_path / "journal.json"
    command = [str(BIN / "chaos"), "--no-version-check", "--no-log-file", "run", "--journal-path",
               str(journal_path), "--rollback-strategy", strategy, str(trips(tmp_path))]
    code, output = trip(command, lab_env | {"CHAOS_DYNAMO_KILL_SWITCH": str(switch)}, lab_info, switch, tmp_path)
    assert code == 1, output
    assert f"stop condition {GUARD} fired: value false, tolerance true" in output
    journal = json.loads(journal_path.read_text())
    assert_stopped_and_rolled_back(journal, "run by chaos" if strategy == "always"
                                   else "run by the stop-conditions control")
    assert snapshot(lab_info) == before, "the rollbacks left the lab as the run found it"
    assert probes.endpoint_addresses(configuration=config) >= 1 and probes.dynamodb_roundtrip(configuration=config)


def test_verify_fails_the_run_naming_the_stop_condition(lab_info: LabInfo, lab_state_file: Path,
                                                       tmp_path: Path) -> None:
    before = state_digest(lab_info)
    switch = armed(tmp_path)
    command = [str(BIN / "chaos-dynamo"), "verify", str(trips(tmp_path)), "--state-file", str(lab_state_file),
               "--junit", "junit.xml"]
    env = without_lab_env() | {"CHAOS_DYNAMO_KILL_SWITCH": str(switch)}
    code, output = trip(command, env, lab_info, switch, tmp_path)
    assert code == 1, output
    assert STOPPED in output
    (case,) = ET.parse(tmp_path / "junit.xml").getroot().iter("testcase")
    failure = case.find("failure")
    assert failure is not None and failure.get("message") == f"{STOPPED} (method)", ET.tostring(case)
    details = failure.text or ""
    assert "rollback: restore-the-endpoint succeeded" in details and "rollback: clear-lb-faults succeeded" in details
    assert "after the run: 3 endpoint(s) resolve and answer DynamoDB" in details, "the safety net had nothing to do"
    assert_stopped_and_rolled_back(json.loads((tmp_path / "journals" / "stop-condition-trips.json").read_text()),
                                   "run by the stop-conditions control")
    assert state_digest(lab_info) == before, "the lab is as the run found it"


COUNT_THE_CHECK = "import sys; open(sys.argv[1], 'a').write('checked\\n')"
"""A second guard that always holds and records each time it is checked, one line a check."""
WAIT_FOR_A_CHECK_IN_THE_METHOD = (
    "import pathlib, sys; from chaos_dynamo.clock import wait_until; p = pathlib.Path(sys.argv[1]); "
    "sys.exit(0 if wait_until(lambda: p.exists() and len(p.read_text().splitlines()) >= 2, timeout=120, "
    "interval=0.05) else 1)")
"""The method's last action: it ends once the guards were checked a second time (the first round
is before the method), so the run records a round during the method however loaded the machine."""


def holds_with_a_counted_guard() -> dict[str, Any]:
    """The sample, with the counting guard beside its kill switch and the wait after its hold."""
    experiment = json.loads(HOLDS.read_text())
    experiment["configuration"]["checks_file"] = {"type": "env", "key": "CHAOS_DYNAMO_TEST_CHECKS"}
    experiment["controls"][0]["provider"]["arguments"]["probes"].append(
        {"type": "probe", "name": "checks-counted", "tolerance": 0,
         "provider": {"type": "process", "path": sys.executable,
                      "arguments": ["-c", COUNT_THE_CHECK, "${checks_file}"]}})
    experiment["method"].append(
        {"type": "action", "name": "wait-for-a-guard-check-in-the-method",
         "provider": {"type": "process", "path": sys.executable,
                      "arguments": ["-c", WAIT_FOR_A_CHECK_IN_THE_METHOD, "${checks_file}"]}})
    return dict(experiment)


def test_a_guard_that_never_fires_changes_nothing(lab_info: LabInfo, lab_state_file: Path, lab_env: dict[str, str],
                                                 tmp_path: Path) -> None:
    """With the kill switch armed throughout, ``chaos-dynamo run`` completes and holds, and
    the journal is the one the experiment without the control gives, but for the record
    that the guards were checked, before the method and during it."""
    switch = armed(tmp_path)
    checks = tmp_path / "checks"
    env = without_lab_env() | {"CHAOS_DYNAMO_KILL_SWITCH": str(switch), "CHAOS_DYNAMO_TEST_CHECKS": str(checks)}
    guarded_experiment = holds_with_a_counted_guard()
    (tmp_path / "guarded-experiment.json").write_text(json.dumps(guarded_experiment))
    guarded = subprocess.run([str(BIN / "chaos-dynamo"), "run", "guarded-experiment.json", "--journal",
                              "guarded.json", "--state-file", str(lab_state_file)],
                             env=env, cwd=tmp_path, capture_output=True, text=True, timeout=180)
    assert guarded.returncode == 0, guarded.stdout + guarded.stderr
    assert "verdict: HELD" in guarded.stdout and "stop conditions: none fired" in guarded.stdout
    bare = dict(guarded_experiment)
    del bare["controls"]
    (tmp_path / "bare.json").write_text(json.dumps(bare))
    counted = tmp_path / "no-guard-checks"
    counted.write_text("no guard\nin this run\n")  # nothing checks here: the wait must not wait
    plain = subprocess.run([str(BIN / "chaos"), "--no-version-check", "--no-log-file", "run", "--journal-path",
                            "bare-journal.json", "bare.json"],
                           env=lab_env | {"CHAOS_DYNAMO_TEST_CHECKS": str(counted)}, cwd=tmp_path,
                           capture_output=True, text=True, timeout=180)
    assert plain.returncode == 0, plain.stdout + plain.stderr
    with_guard = json.loads((tmp_path / "guarded.json").read_text())
    without = json.loads((tmp_path / "bare-journal.json").read_text())

    def outcome(journal: dict[str, Any]) -> Any:
        steady = journal["steady_states"]
        return (journal["status"], journal["deviated"], steady["before"]["steady_state_met"],
                steady["after"]["steady_state_met"],
                [(r["activity"]["name"], r["status"], r["output"].get("status")) for r in journal["run"]],
                [(r["activity"]["name"], r["status"]) for r in journal["rollbacks"]])

    assert outcome(with_guard) == outcome(without) == (
        "completed", False, True, True,
        [("empty-the-endpoint-for-a-second", "succeeded", None), ("wait-for-a-guard-check-in-the-method",
                                                                   "succeeded", 0)],
        [("restore-the-endpoint", "succeeded")])
    (entry,) = with_guard["extensions"]
    assert entry["stopped"] is None and entry["guards"] == [GUARD, "checks-counted"]
    assert entry["rounds"] >= 2 and entry["checks"] >= 4, "a round before the method, one (at least) during it"
    assert "extensions" not in without


@pytest.mark.parametrize("validation", [True, False], ids=["chaos-validates", "no-validation"])
def test_a_guard_without_tolerance_is_refused_and_nothing_runs(validation: bool, lab_info: LabInfo,
                                                               lab_env: dict[str, str], tmp_path: Path) -> None:
    before = state_digest(lab_info)
    bad = json.loads(TRIPS.read_text())
    del bad["controls"][0]["provider"]["arguments"]["probes"][0]["tolerance"]
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    switch = armed(tmp_path)
    result = subprocess.run([str(BIN / "chaos"), "--no-version-check", "--no-log-file", "run", "--journal-path",
                             "journal.json", *([] if validation else ["--no-validation"]), "bad.json"],
                            env=lab_env | {"CHAOS_DYNAMO_KILL_SWITCH": str(switch)}, cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "controls[stop-conditions].probes[0].tolerance: is missing" in result.stdout + result.stderr
    if validation:
        assert not (tmp_path / "journal.json").exists(), "chaos refused it before running anything"
    else:  # the control refuses it at the start of the run
        journal = json.loads((tmp_path / "journal.json").read_text())
        assert journal["status"] == "interrupted" and journal["run"] == [] and journal["rollbacks"] == []
        assert journal["steady_states"]["before"] is None
    assert state_digest(lab_info) == before


def test_verify_refuses_a_bad_guard_before_any_lab_starts(tmp_path: Path) -> None:
    bad = json.loads(TRIPS.read_text())
    bad["controls"][0]["provider"]["arguments"]["interval"] = 0
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    result = subprocess.run([str(BIN / "chaos-dynamo"), "verify", "bad.json"], env=without_lab_env(), cwd=tmp_path,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "controls[stop-conditions].interval: 0 is not a number of seconds" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.json"], "no journal, no lab"
