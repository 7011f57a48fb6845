"""experiments/lease-mass-expiry.json through the real `chaos` CLI with its documented
defaults: the naive reference fleet collapses after the mass expiry (the run deviates), the
hardened one is back within the limit, and the journal carries the timeline and every verdict.

The two runs (~45 s each) are made once per session and shared with
test_lease_calibration.py: the naive fleet's is the README's lease session (see
_lease_runs.py and conftest.py).
"""

from __future__ import annotations

import re
import shlex
from typing import Any

import pytest

from chaos_dynamo.lease.reference import parse_args
from chaos_dynamo.lease.timeline import TRIGGER_END, TRIGGER_START
from tests.integration._lease_runs import (
    DEFAULTS,
    KINDS,
    after,
    marker,
    report,
)

pytestmark = [pytest.mark.integration, pytest.mark.chaos]

COLLAPSE = "goodput-does-not-collapse"
TO_LIVE = "leases-live-again-within-the-limit"
LEASES = parse_args(["--manager", "naive", *shlex.split(DEFAULTS["service_args"])]).total_leases
STOPPED = re.compile(r"lease watcher of (\S+) stopped: (\d+) samples")


def fraction_at(numbers: dict[str, Any], t: float) -> float:
    return float(next(s["live_fraction"] for s in numbers["timeline"] if s["t"] >= t))


def check_timeline(numbers: dict[str, Any]) -> tuple[float, float]:
    """Both markers, in order; all leases live before the trigger; samples after its end."""
    start, end = marker(numbers, TRIGGER_START), marker(numbers, TRIGGER_END)
    assert start < end
    points = numbers["timeline"]
    assert [s["t"] for s in points] == sorted(s["t"] for s in points)
    before = [s for s in points if s["t"] < start]
    assert before and all(s["live_fraction"] == 1.0 for s in before), before
    assert sum(s["t"] > end for s in points) >= 10, points[-3:]
    assert all(s["total"] == LEASES for s in points), points
    return start, end


@pytest.mark.parametrize("kind", KINDS)
def test_the_run_leaves_the_lab_as_it_found_it(lease_journals: dict[str, dict[str, Any]], kind: str) -> None:
    """The controls stopped the service and the watcher; the rollbacks put the capacity
    and the endpoint back."""
    journal = lease_journals[kind]
    lab = journal["_lab_after"]
    assert lab["record"] is None, lab["record"]  # the service control stopped what it started
    assert lab["capacity"]["slots"] is None and lab["capacity"]["service_time"] == 0.0, lab["capacity"]
    assert lab["capacity"]["waiting"] == 0, lab["capacity"]
    before, now = journal["_lab_before"]["endpoint"], lab["endpoint"]
    # Weighted answers: one load balancer's address a query, as before the run.
    assert now["rcode"] == before["rcode"] == "NOERROR" and now["count"] == before["count"] >= 1, (before, now)
    stopped = STOPPED.findall(journal["_chaos_log"])
    assert [table for table, _ in stopped] == [DEFAULTS["lease_table"]], journal["_chaos_log"][-3000:]
    assert int(stopped[0][1]) >= report(journal)["samples"]
    rollbacks = {r["activity"]["name"]: r["status"] for r in journal["rollbacks"]}
    assert set(rollbacks.values()) == {"succeeded"}, rollbacks


def test_the_naive_fleet_collapses_and_the_run_deviates(lease_journals: dict[str, dict[str, Any]]) -> None:
    journal = lease_journals["naive"]
    assert journal["status"] == "completed" and journal["deviated"], journal["_log"]
    assert journal["_exit"] == 1, journal["_log"]
    assert journal["steady_states"]["before"]["steady_state_met"], journal["_log"]
    probes = after(journal)
    assert probes[COLLAPSE]["tolerance_met"] is False, probes[COLLAPSE]
    verdict = probes[COLLAPSE]["output"]
    assert verdict["collapsed"] is True and not verdict["stalled"], verdict
    assert verdict["max_live_fraction"] < 0.2, verdict
    assert verdict["attempts_per_second"] >= 10 and verdict["efficiency"] < 0.1, verdict
    # The journal has the whole story, whatever the hypothesis stopped at.
    numbers = report(journal)
    _, end = check_timeline(numbers)
    assert all(s["live_fraction"] < 0.2 for s in numbers["timeline"] if s["t"] >= end), numbers["timeline"]
    assert numbers["collapse"]["collapsed"] is True, numbers["collapse"]
    assert numbers["seconds_to_live_fraction"]["seconds"] is None, numbers["seconds_to_live_fraction"]
    assert numbers["double_owned"] == 0


def test_the_hardened_fleet_is_back_within_the_limit(lease_journals: dict[str, dict[str, Any]]) -> None:
    journal = lease_journals["hardened"]
    assert journal["status"] == "completed" and not journal["deviated"], journal["_log"]
    assert journal["_exit"] == 0, journal["_log"]
    assert journal["steady_states"]["before"]["steady_state_met"], journal["_log"]
    assert journal["steady_states"]["after"]["steady_state_met"], journal["_log"]
    probes = after(journal)
    assert {name: p["tolerance_met"] for name, p in probes.items()} == dict.fromkeys(probes, True)
    assert probes[COLLAPSE]["output"]["collapsed"] is False, probes[COLLAPSE]["output"]
    seconds = probes[TO_LIVE]["output"]
    assert 0 < seconds <= DEFAULTS["max_seconds_to_live"], seconds
    numbers = report(journal)
    start, end = check_timeline(numbers)
    assert numbers["collapse"]["collapsed"] is False, numbers["collapse"]
    assert numbers["double_owned"] == 0 and probes["no-lease-held-by-two-owners"]["output"] == 0
    assert numbers["seconds_to_live_fraction"]["seconds"] == pytest.approx(seconds, abs=1.0)
    # 1.0 before the trigger -> (nearly) all expired by its end -> back to >= 0.99.
    lowest = min(s["live_fraction"] for s in numbers["timeline"] if start <= s["t"] <= end)
    assert lowest < 0.2, numbers["timeline"]
    assert fraction_at(numbers, end + seconds) >= DEFAULTS["min_live_fraction"], numbers["timeline"]
