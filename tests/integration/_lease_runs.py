"""experiments/lease-mass-expiry.json through the real `chaos` CLI, once per manager and per
test session.

Each run takes ~45 s, so its journal is shared: the experiment's own tests
(test_lease_experiment.py) and the model's calibration against the lab
(test_lease_calibration.py) read the same two runs. Besides the journal, a run records
what only the lab knows right after it: the lab's DynamoDB capacity and the endpoint's
DNS answer (the rollbacks must have put both back), whether the service's registry record
is gone, and when the fleet started (its first DynamoDB call in the shim's call log).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

from chaos_dynamo.calllog import read_calls
from chaos_dynamo.endpoint.probes import endpoint_answer
from chaos_dynamo.lab.state import LabInfo
from chaos_dynamo.services import registry, supervisor
from tests.conftest import BIN, ROOT, control
from tests.integration._experiments import after as after  # re-exported for the lease tests
from tests.integration._experiments import defaults, rollback_output

EXPERIMENT = ROOT / "experiments" / "lease-mass-expiry.json"
DEFAULTS = defaults(EXPERIMENT)

KINDS = ("naive", "hardened")
REPORT = "the-live-fraction-timeline-and-every-verdict-for-the-journal"
CAPACITY = "dynamodb-serves-at-a-finite-capacity"
OUTAGE = "empty-the-endpoint-for-longer-than-the-lease-expiry"
SLOW = "dynamodb-is-slow-while-everyone-recovers"

_runs: dict[tuple[str, str], dict[str, Any] | Exception] = {}
"""This session's runs by (lab state file, manager): the journal, or why there is none."""


def service_name(kind: str) -> str:
    return f"lease-exp-{kind}"


def lab_environment(info: LabInfo, state_file: Path) -> dict[str, str]:
    """The ``lab_env`` fixture's environment, for module-scoped fixtures."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "CHAOS_DYNAMO_"))}
    return env | info.env() | {"CHAOS_DYNAMO_STATE": str(state_file)}


def lease_run(kind: str, info: LabInfo, state_file: Path, workdir: Path) -> dict[str, Any]:
    """The journal of the experiment with the ``lease-<kind>`` reference fleet, run once per
    session (a failed run is not retried: its error is raised again).

    Added keys: ``_exit`` (chaos's exit code), ``_log`` (the end of its output),
    ``_chaos_log`` (chaostoolkit.log), ``_seconds`` (the run's wall time), ``_fleet_start``
    (epoch seconds of the fleet's first DynamoDB call), ``_lab_before`` / ``_lab_after``
    (the lab's capacity, the endpoint's answer and the service's registry record).
    """
    key = (str(state_file), kind)
    if key not in _runs:
        try:
            _runs[key] = _run(kind, info, state_file, workdir / kind)
        except Exception as exc:
            _runs[key] = exc
            raise
    found = _runs[key]
    if isinstance(found, Exception):
        raise found
    return found


def _lab_now(info: LabInfo, state_file: Path, name: str) -> dict[str, Any]:
    status, body = control(info, "status")
    assert status == 200, body
    answer = endpoint_answer(configuration={"chaos_dynamo_api": info.api_url})
    return {"capacity": body["dynamodb"]["capacity"], "endpoint": answer,
            "record": registry.read_record(name, state_file)}


def _run(kind: str, info: LabInfo, state_file: Path, workdir: Path) -> dict[str, Any]:
    workdir.mkdir(parents=True, exist_ok=True)
    journal = workdir / "journal.json"
    name = service_name(kind)
    env = lab_environment(info, state_file) | {"CHAOS_DYNAMO_SERVICE_KIND": f"lease-{kind}",
                                                "CHAOS_DYNAMO_SERVICE_NAME": name}
    before = _lab_now(info, state_file, name)
    try:
        done = subprocess.run([str(BIN / "chaos"), "run", "--journal-path", str(journal), str(EXPERIMENT)],
                              env=env, cwd=workdir, capture_output=True, text=True, timeout=240)
    except BaseException:  # a timeout: leave nothing running (the control's own stop is asserted)
        supervisor.stop(name, state=str(state_file))
        raise
    lab_after = _lab_now(info, state_file, name)
    assert journal.exists(), done.stdout[-3000:] + done.stderr[-3000:]
    result: dict[str, Any] = json.loads(journal.read_text())
    calls = read_calls(registry.calls_dir(state_file), name)
    chaos_log = workdir / "chaostoolkit.log"
    result |= {"_exit": done.returncode, "_log": done.stdout[-4000:] + done.stderr[-4000:],
               "_chaos_log": chaos_log.read_text() if chaos_log.exists() else "",
               "_seconds": float(result.get("duration") or 0.0),
               "_fleet_start": min((c.start for c in calls), default=None),
               "_lab_before": before, "_lab_after": lab_after}
    return result


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
