"""experiments/lease-mass-expiry.json through the real `chaos` CLI, once per manager and per
test session, and what its tests read from it.

Each run takes ~45 s, so the two are shared (``lease_journals`` in conftest.py): the naive
fleet's is the README's lease session, the hardened fleet's is made on the session lab, and
the experiment's own tests (test_lease_experiment.py) and the model's calibration against
the lab (test_lease_calibration.py) read both journals. Besides the journal, a run records
what only the lab knows right after it: the lab's DynamoDB capacity and the endpoint's DNS
answer (the rollbacks must have put both back), whether the service's registry record is
gone, and when the fleet started (its first DynamoDB call in the shim's call log); see
_experiments.run_chaos.
"""

from __future__ import annotations

from typing import Any

from tests.conftest import ROOT
from tests.integration._experiments import after as after  # re-exported for the lease tests
from tests.integration._experiments import defaults, rollback_output

EXPERIMENT = ROOT / "experiments" / "lease-mass-expiry.json"
DEFAULTS = defaults(EXPERIMENT)

KINDS = ("naive", "hardened")
REPORT = "the-live-fraction-timeline-and-every-verdict-for-the-journal"
CAPACITY = "dynamodb-serves-at-a-finite-capacity"
OUTAGE = "empty-the-endpoint-for-longer-than-the-lease-expiry"
SLOW = "dynamodb-is-slow-while-everyone-recovers"


def report(journal: dict[str, Any]) -> dict[str, Any]:
    """The rollback probe's output: the timeline, the markers and every verdict."""
    return rollback_output(journal, REPORT)


def action(journal: dict[str, Any], name: str) -> dict[str, Any]:
    """The output of the method's action ``name`` (it must have succeeded)."""
    (run,) = [r for r in journal["run"] if r["activity"]["name"] == name]
    assert run["status"] == "succeeded", run
    return dict(run["output"])


def marker(numbers: dict[str, Any], event: str) -> float:
    """The time of the report's one ``event`` marker."""
    (t,) = [m["t"] for m in numbers["markers"] if m["event"] == event]
    return float(t)
