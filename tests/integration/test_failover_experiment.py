"""experiments/failover-flap.json through the real `chaos` CLI with its documented defaults, on
the lab with real Route 53 health checks: the naive failover controller flaps, drops below
the floor and oscillates between PRIMARY and SECONDARY (the run deviates); the hardened one
holds; the journal carries the capacity timeline and every verdict; the lab is left clean.

Each run takes ~30 s; both are made once: the naive controller's is the README's failover
session (conftest.py), the hardened one's is made here on the session lab.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from chaos_dynamo.lab.state import LabInfo
from tests.conftest import ROOT
from tests.integration._experiments import (
    Session,
    after,
    defaults,
    rollback_output,
    session_lab_run,
)
from tests.integration._failover import clean_up

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


@pytest.fixture(scope="module")
def journals(failover_session: Session, lab_info: LabInfo, lab_state_file: Path,
             tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """The naive controller's run is the README's failover session; the hardened one's is
    made on the session lab."""
    try:
        hardened = session_lab_run(EXPERIMENT, "failover-hardened", "failover-exp-hardened", lab_info,
                                   lab_state_file, tmp_path_factory.mktemp("failover-hardened"))
    finally:  # the session lab's LBs stop being health-checked by the demo
        clean_up(lab_info, DEFAULTS["failover_zone"], DEFAULTS["failover_name"])
    return {"naive": failover_session.journal(0), "hardened": hardened}


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
    lab = journals[kind]["_lab_after"]
    assert lab["record"] is None, "the controller's registry record is still there"
    for lb, state in lab["load_balancers"].items():
        faults = state["faults"]
        assert faults["down"] is False and faults["intermittent"] is None, (lb, faults)
