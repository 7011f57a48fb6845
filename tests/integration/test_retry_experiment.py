"""experiments/empty-endpoint-retry.json through the real `chaos` CLI: the naive reference
service deviates (it storms), the hardened one holds, and the journal shows the numbers.

The windows are shortened through the experiment's environment-typed configuration, as a
team would in CI; the thresholds are the experiment's defaults.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from chaos_dynamo.services import registry, supervisor
from tests.conftest import BIN, ROOT

pytestmark = pytest.mark.integration

EXPERIMENT = ROOT / "experiments" / "empty-endpoint-retry.json"
SHORT = {
    "CHAOS_DYNAMO_SERVICE_RATE": "2",       # a low baseline, so a storm shows even on a slow machine
    "CHAOS_DYNAMO_SERVICE_WARMUP": "7",
    "CHAOS_DYNAMO_BASELINE_SECONDS": "6",
    "CHAOS_DYNAMO_OUTAGE_SECONDS": "6",
    "CHAOS_DYNAMO_RECOVERY_SECONDS": "6",
}
LIMITS = {"retry-amplification": 2.0, "attempts-per-call": 4.0, "recovery-herd": 3.0,
          "healthy-within-limit-of-restore": 30.0}


def run_experiment(kind: str, env: dict[str, str], tmp_path: Path) -> dict[str, Any]:
    journal = tmp_path / f"{kind}.json"
    try:
        done = subprocess.run(
            [str(BIN / "chaos"), "run", "--journal-path", str(journal), str(EXPERIMENT)],
            env=env | SHORT | {"CHAOS_DYNAMO_SERVICE_KIND": kind, "CHAOS_DYNAMO_SERVICE_NAME": f"exp-{kind}"},
            cwd=tmp_path, capture_output=True, text=True, timeout=240)
    except BaseException:  # a timeout: leave nothing running (the control's own stop is asserted below)
        supervisor.stop(f"exp-{kind}", state=env["CHAOS_DYNAMO_STATE"])
        raise
    assert journal.exists(), done.stdout[-3000:] + done.stderr[-3000:]
    result: dict[str, Any] = json.loads(journal.read_text())
    result["_exit"] = done.returncode
    result["_log"] = done.stdout[-4000:] + done.stderr[-4000:]
    return result


def after(journal: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {p["activity"]["name"]: p for p in journal["steady_states"]["after"]["probes"]}


def report(journal: dict[str, Any]) -> dict[str, Any]:
    """The rollback probe's numbers: every retry measure, whatever the hypothesis stopped at."""
    (run,) = [r for r in journal["rollbacks"] if r["activity"]["name"] == "every-retry-number-for-the-journal"]
    assert run["status"] == "succeeded", run
    return dict(run["output"])


def test_the_hardened_service_holds_and_the_journal_has_the_numbers(
        lab_env: dict[str, str], lab_state_file: Path, tmp_path: Path) -> None:
    journal = run_experiment("hardened", lab_env, tmp_path)
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
    assert registry.read_record("exp-hardened", lab_state_file) is None


def test_the_naive_service_deviates_on_its_retry_storm(
        lab_env: dict[str, str], lab_state_file: Path, tmp_path: Path) -> None:
    journal = run_experiment("naive", lab_env, tmp_path)
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
    assert registry.read_record("exp-naive", lab_state_file) is None
