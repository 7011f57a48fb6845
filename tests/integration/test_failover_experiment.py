"""experiments/failover-flap.json through the real `chaos` CLI with its documented defaults, on
the lab with real Route 53 health checks: the naive failover controller flaps, drops below
the floor and oscillates between PRIMARY and SECONDARY (the run deviates); the hardened one
holds; the journal carries the capacity timeline and every verdict; the lab is left clean.

Each run takes ~30 s; both are made once per module.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from chaos_dynamo.lab.state import LabInfo
from chaos_dynamo.services import registry, supervisor
from tests.conftest import BIN, ROOT, control
from tests.integration._experiments import after, defaults, rollback_output
from tests.integration._failover import clean_up
from tests.integration._lease_runs import lab_environment

pytestmark = [pytest.mark.integration, pytest.mark.chaos]

EXPERIMENT = ROOT / "experiments" / "failover-flap.json"
DEFAULTS = defaults(EXPERIMENT)

KINDS = ("naive", "hardened")
REPORT = "the-capacity-timeline-and-every-verdict-for-the-journal"
ROLLOUT = "roll-out-new-targets-before-their-network-state-propagates"
FLAPS = "few-flaps-per-window"
FLOOR = float(DEFAULTS["capacity_floor"])
MAX_FLAPS = int(DEFAULTS["max_flaps"])
TARGETS = DEFAULTS["rollout_targets"].split(",")


def _service(kind: str) -> str:
    return f"failover-exp-{kind}"


def _run(kind: str, info: LabInfo, state_file: Path, workdir: Path) -> dict[str, Any]:
    workdir.mkdir(parents=True, exist_ok=True)
    journal = workdir / "journal.json"
    name = _service(kind)
    env = lab_environment(info, state_file) | {"CHAOS_DYNAMO_SERVICE_KIND": f"failover-{kind}",
                                                "CHAOS_DYNAMO_SERVICE_NAME": name}
    started = time.time()
    try:
        done = subprocess.run([str(BIN / "chaos"), "run", "--journal-path", str(journal), str(EXPERIMENT)],
                              env=env, cwd=workdir, capture_output=True, text=True, timeout=240)
    except BaseException:  # a timeout: leave nothing running (the control's own stop is asserted)
        supervisor.stop(name, state=str(state_file))
        raise
    assert journal.exists(), done.stdout[-3000:] + done.stderr[-3000:]
    result: dict[str, Any] = json.loads(journal.read_text())
    _, faults_after = control(info, "status")
    _, health_log = control(info, f"route53/health/log?since={started}")
    result |= {"_exit": done.returncode, "_log": done.stdout[-4000:] + done.stderr[-4000:],
               "_lbs_after": faults_after["load_balancers"], "_health_log": health_log,
               "_record": registry.read_record(name, state_file)}
    return result


@pytest.fixture(scope="module")
def journals(lab_info: LabInfo, lab_state_file: Path,
             tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    workdir = tmp_path_factory.getbasetemp() / "failover-runs"
    try:
        return {kind: _run(kind, lab_info, lab_state_file, workdir / kind) for kind in KINDS}
    finally:  # the session lab's LBs stop being health-checked by the demo
        clean_up(lab_info, DEFAULTS["failover_zone"], DEFAULTS["failover_name"])


def _report(journal: dict[str, Any]) -> dict[str, Any]:
    return rollback_output(journal, REPORT)


def test_the_naive_controller_flaps_and_the_run_deviates(journals: dict[str, dict[str, Any]]) -> None:
    naive = journals["naive"]
    assert naive["_exit"] == 1, naive["_log"]
    assert naive["deviated"] is True
    assert journals["naive"]["steady_states"]["before"]["steady_state_met"] is True
    flaps = after(naive)[FLAPS]
    assert flaps["tolerance_met"] is False and flaps["output"]["flaps"] > MAX_FLAPS, flaps
    numbers = _report(naive)
    # Every rolled target's first failures take its whole AZ out; the pool empties and the
    # name fails over to the standby and back, again and again.
    assert numbers["flaps"]["flaps"] > 3 * MAX_FLAPS, numbers["flaps"]
    assert numbers["min_capacity"]["fraction"] < FLOOR, numbers["min_capacity"]
    assert numbers["oscillations"]["oscillations"] >= 1, numbers["oscillations"]
    assert numbers["capacity_removed"]["fraction"] > 1.0, numbers["capacity_removed"]


def test_the_hardened_controller_stays_calm_and_the_run_holds(journals: dict[str, dict[str, Any]]) -> None:
    hardened = journals["hardened"]
    assert hardened["_exit"] == 0, hardened["_log"]
    assert hardened["deviated"] is False
    probes = after(hardened)
    assert probes and all(p["tolerance_met"] for p in probes.values()), probes
    numbers = _report(hardened)
    assert numbers["flaps"]["flaps"] <= MAX_FLAPS
    assert numbers["min_capacity"]["fraction"] >= FLOOR
    assert numbers["oscillations"]["oscillations"] == 0
    # The velocity limit: at most a fifth of the pool out in any minute.
    assert numbers["capacity_removed"]["fraction"] <= 0.2 + 1e-9, numbers["capacity_removed"]


@pytest.mark.parametrize("kind", KINDS)
def test_the_journal_shows_the_capacity_timeline(journals: dict[str, dict[str, Any]], kind: str) -> None:
    numbers = _report(journals[kind])
    points = numbers["timeline"]
    assert [p["time"] for p in points] == sorted(p["time"] for p in points)
    assert points[0]["fraction"] == 1.0 and points[0]["role"] == "PRIMARY", points[0]
    # Full again once the rollout was over: the first probe after the method waited for it.
    # (The naive controller may take a member out again later, on one slow health check.)
    settled = after(journals[kind])["full-capacity-once-things-settle"]
    assert settled["tolerance_met"] is True and settled["output"]["fraction"] == 1.0, settled
    assert any(p["fraction"] == 1.0 and p["time"] >= settled["output"]["changed_at"] for p in points), points
    lowest = min(p["fraction"] for p in points)
    assert lowest == numbers["min_capacity"]["fraction"]
    roles = {p["role"] for p in points}
    if kind == "naive":
        assert "SECONDARY" in roles and lowest < FLOOR, points
    else:
        assert roles == {"PRIMARY"} and len(points) >= 2, points  # a change was made, calmly


@pytest.mark.parametrize("kind", KINDS)
def test_the_rollout_replaced_each_target_in_turn(journals: dict[str, dict[str, Any]], kind: str) -> None:
    (run,) = [r for r in journals[kind]["run"] if r["activity"]["name"] == ROLLOUT]
    assert run["status"] == "succeeded", run
    events = run["output"]["events"]
    assert run["output"]["targets"] == TARGETS
    for lb in TARGETS:
        assert [e["event"] for e in events if e["lb"] == lb] == ["down", "up", "clean"], events
    downs = [e["time"] for e in events if e["event"] == "down"]
    assert downs == sorted(downs)
    # The lab's real health checks saw each rolled target fail and come back.
    log = journals[kind]["_health_log"]
    assert log, "no health-check transitions during the run"
    assert any(not entry["healthy"] for entry in log) and any(entry["healthy"] for entry in log), log


@pytest.mark.parametrize("kind", KINDS)
def test_the_lab_is_left_clean(journals: dict[str, dict[str, Any]], kind: str) -> None:
    journal = journals[kind]
    assert journal["_record"] is None, "the controller's registry record is still there"
    for lb, state in journal["_lbs_after"].items():
        faults = state["faults"]
        assert faults["down"] is False and faults["intermittent"] is None, (lb, faults)
