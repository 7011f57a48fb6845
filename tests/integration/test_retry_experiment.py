"""experiments/empty-endpoint-retry.json through the real `chaos` CLI: the naive reference
service deviates (it storms), the hardened one holds, and the journal shows the numbers.

Both runs are the README's retry session (conftest.py): the naive service by kind, then the
hardened reference service run as the user's own command (``orders``). The windows are
shortened through the experiment's environment-typed configuration, as a team would in CI;
the thresholds are the experiment's defaults.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.integration._experiments import Session

pytestmark = pytest.mark.integration

LIMITS = {"retry-amplification": 2.0, "attempts-per-call": 4.0, "recovery-herd": 3.0,
          "healthy-within-limit-of-restore": 30.0}


def after(journal: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {p["activity"]["name"]: p for p in journal["steady_states"]["after"]["probes"]}


def report(journal: dict[str, Any]) -> dict[str, Any]:
    """The rollback probe's numbers: every retry measure, whatever the hypothesis stopped at."""
    (run,) = [r for r in journal["rollbacks"] if r["activity"]["name"] == "every-retry-number-for-the-journal"]
    assert run["status"] == "succeeded", run
    return dict(run["output"])


def test_the_hardened_service_holds_and_the_journal_has_the_numbers(retry_session: Session) -> None:
    journal = retry_session.journal(1)
    assert journal["status"] == "completed" and not journal["deviated"], journal["_log"]
    assert journal["steady_states"]["before"]["steady_state_met"], journal["_log"]
    probes = after(journal)
    assert journal["steady_states"]["after"]["steady_state_met"], {k: p["output"] for k, p in probes.items()}
    for name, limit in LIMITS.items():
        assert isinstance(probes[name]["output"], (int, float)) and probes[name]["output"] <= limit, (name, probes[name])
    assert probes["traffic-reaches-the-lab"]["output"] >= 1.0
    numbers = report(journal)
    assert numbers["windows"] == "outage"
    assert numbers["dns_query_storm"]["value"] <= 6  # the documented tolerance
    assert numbers["backoff"]["details"]["jittered"] and numbers["backoff"]["details"]["growing"], numbers["backoff"]
    # The control stopped the service it started.
    assert journal["_lab_after"]["record"] is None


def test_the_naive_service_deviates_on_its_retry_storm(retry_session: Session) -> None:
    journal = retry_session.journal(0)
    assert journal["status"] == "completed" and journal["deviated"], journal["_log"]
    assert journal["_exit"] == 1
    assert journal["steady_states"]["before"]["steady_state_met"], journal["_log"]
    probes = after(journal)
    failed = [name for name, p in probes.items() if p.get("tolerance_met") is False]
    assert failed == ["retry-amplification"], failed
    assert probes["retry-amplification"]["output"] > LIMITS["retry-amplification"]
    # The numbers the hypothesis stopped before are in the journal too, and fail their tolerances.
    numbers = report(journal)
    assert numbers["attempts_per_call"]["value"] > LIMITS["attempts-per-call"]
    assert numbers["dns_query_storm"]["value"] > 6
    assert not numbers["backoff"]["details"]["growing"], numbers["backoff"]
    assert journal["_lab_after"]["record"] is None
