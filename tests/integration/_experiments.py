"""What the tests of an experiment file read from it and from its journal (the documented
configuration defaults, the steady-state probes run after the method, a rollback's output),
and how each expensive run is made once for all of them.

``run_chaos`` runs the real ``chaos run`` and records what only the lab knows around it.
``readme_session`` runs a README snippet as written, in bash on a fresh lab, with ``chaos``
on PATH being a recorder that runs the real one through ``run_chaos``: the README's runs
are then the runs the experiment tests assert on, so no experiment is run twice.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chaos_dynamo.calllog import read_calls
from chaos_dynamo.endpoint.probes import endpoint_answer
from chaos_dynamo.lab.state import LabInfo, read_state
from chaos_dynamo.services import registry, supervisor
from tests.conftest import BIN, ROOT, control, readme_snippet

RETRY_WINDOWS = {
    "CHAOS_DYNAMO_SERVICE_RATE": "2",       # a low baseline, so a storm shows even on a slow machine
    "CHAOS_DYNAMO_SERVICE_WARMUP": "7",
    "CHAOS_DYNAMO_BASELINE_SECONDS": "6",
    "CHAOS_DYNAMO_OUTAGE_SECONDS": "6",
    "CHAOS_DYNAMO_RECOVERY_SECONDS": "6",
}
"""The retry experiment's windows, shortened through its environment as a CI job would."""

RUNS_FILE = "README_SESSION_RUNS"
"""Names the file the recording ``chaos`` of a README session appends each run to."""

RECORDER = '''#!{python}
"""`chaos` of a README session: the real one, recorded (tests/integration/_experiments.py)."""
import sys

sys.path.insert(0, {root!r})
from tests.integration._experiments import record_session_run

sys.exit(record_session_run(sys.argv[1:]))
'''


def defaults(experiment: Path) -> dict[str, Any]:
    """The experiment's configuration defaults: the documented settings, used as they are."""
    return {name: entry.get("default") if isinstance(entry, dict) else entry
            for name, entry in json.loads(experiment.read_text())["configuration"].items()}


def after(journal: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The steady-state probes run after the method, by name."""
    return {p["activity"]["name"]: p for p in journal["steady_states"]["after"]["probes"]}


def rollback_output(journal: dict[str, Any], name: str) -> dict[str, Any]:
    """The output of the rollback ``name`` (it must have succeeded)."""
    (run,) = [r for r in journal["rollbacks"] if r["activity"]["name"] == name]
    assert run["status"] == "succeeded", run
    return dict(run["output"])


def lab_snapshot(state: str, service: str) -> dict[str, Any]:
    """What the lab says now: DynamoDB's capacity, the load balancers (with their faults),
    the endpoint's DNS answer, and ``service``'s registry record (None once stopped)."""
    status_code, status = control(read_state(state), "status")
    assert status_code == 200, status
    record = registry.read_record(service, state)
    return {"capacity": status["dynamodb"]["capacity"], "load_balancers": status["load_balancers"],
            "endpoint": endpoint_answer(configuration={"chaos_dynamo_state": state}),
            "record": None if record is None else json.loads(record.to_json())}


def run_chaos(arguments: list[str], env: dict[str, str], cwd: Path, *, capture: bool = True,
              timeout: float | None = 240) -> dict[str, Any]:
    """``chaos ARGUMENTS`` (the real CLI, ``run [--journal-path J] EXPERIMENT``) on the lab
    ``env``'s CHAOS_DYNAMO_STATE names, and what only the lab knows around it.

    Returns (plain JSON): ``exit``, ``output`` (its end, when ``capture``), ``journal`` (its
    path), ``service`` (the service under test), ``chaos_log`` (what the run added to
    chaostoolkit.log), ``started``, ``before`` / ``after`` (:func:`lab_snapshot`),
    ``health_log`` (the lab's Route 53 health-check transitions since ``started``) and
    ``fleet_start`` (the service's first DynamoDB call since ``started`` in the shim's call
    log, or None). A run that times out stops the service and raises.
    """
    state = env["CHAOS_DYNAMO_STATE"]
    service = env.get("CHAOS_DYNAMO_SERVICE_NAME") or defaults(cwd / arguments[-1])["service_name"]
    journal = arguments[arguments.index("--journal-path") + 1] if "--journal-path" in arguments else "journal.json"
    chaos_log = cwd / "chaostoolkit.log"
    offset = chaos_log.stat().st_size if chaos_log.exists() else 0
    before, started = lab_snapshot(state, service), time.time()
    try:
        done = subprocess.run([str(BIN / "chaos"), *arguments], env=env, cwd=cwd, capture_output=capture,
                              text=True, timeout=timeout)
    except BaseException:  # a timeout: leave nothing running (the control's own stop is asserted)
        supervisor.stop(service, state=state)
        raise
    calls = read_calls(registry.calls_dir(state), service)
    _, health_log = control(read_state(state), f"route53/health/log?since={started}")
    return {"exit": done.returncode, "output": (done.stdout or "")[-4000:] + (done.stderr or "")[-4000:],
            "journal": str(cwd / journal), "service": service,
            "chaos_log": chaos_log.read_text()[offset:] if chaos_log.exists() else "",
            "started": started, "before": before, "after": lab_snapshot(state, service),
            "health_log": health_log,
            "fleet_start": min((c.start for c in calls if c.start >= started), default=None)}


def lab_environment(info: LabInfo, state_file: Path) -> dict[str, str]:
    """The ``lab_env`` fixture's environment, for session- and module-scoped fixtures."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "CHAOS_DYNAMO_"))}
    return env | info.env() | {"CHAOS_DYNAMO_STATE": str(state_file)}


def session_lab_run(experiment: Path, kind: str, name: str, info: LabInfo, state_file: Path,
                    workdir: Path) -> dict[str, Any]:
    """The journal of ``experiment`` with the reference service ``kind`` (named ``name``) on
    the lab ``info``, run in ``workdir`` (see :func:`journal_of` for the keys added)."""
    workdir.mkdir(parents=True, exist_ok=True)
    env = lab_environment(info, state_file) | {"CHAOS_DYNAMO_SERVICE_KIND": kind, "CHAOS_DYNAMO_SERVICE_NAME": name}
    print(f"{experiment.name} with {kind}: started", flush=True)
    run = run_chaos(["run", "--journal-path", "journal.json", str(experiment)], env, workdir)
    print(f"{experiment.name} with {kind}: finished, exit {run['exit']}", flush=True)
    return journal_of(run, run["output"])


def record_session_run(arguments: list[str]) -> int:
    """The README session's ``chaos``: the real one, its output on the terminal as the user
    sees it, its record appended to the file RUNS_FILE names; its exit code."""
    env = {k: v for k, v in os.environ.items() if k != RUNS_FILE}
    run = run_chaos(arguments, env, Path.cwd(), capture=False, timeout=None)
    with open(os.environ[RUNS_FILE], "a", encoding="utf-8") as runs:
        runs.write(json.dumps(run) + "\n")
    return int(run["exit"])


def journal_of(run: dict[str, Any], log: str) -> dict[str, Any]:
    """A run's journal, plus what the tests check besides it: ``_exit`` (chaos's exit code),
    ``_log`` (the end of the output, for messages), ``_chaos_log``, ``_seconds`` (the run's
    duration), ``_fleet_start``, ``_lab_before`` / ``_lab_after`` and ``_health_log``."""
    path = Path(run["journal"])
    assert path.exists(), log
    journal: dict[str, Any] = json.loads(path.read_text())
    return journal | {"_exit": run["exit"], "_log": log, "_chaos_log": run["chaos_log"],
                      "_seconds": float(journal.get("duration") or 0.0), "_fleet_start": run["fleet_start"],
                      "_lab_before": run["before"], "_lab_after": run["after"], "_health_log": run["health_log"]}



@dataclass(frozen=True)
class Session:
    """A README snippet run in bash: its exit code and output, its working directory (with
    the state file ``lab.json``), and each ``chaos run`` it made (see :func:`run_chaos`)."""

    returncode: int
    stdout: str
    stderr: str
    workdir: Path
    runs: list[dict[str, Any]]

    def output_tail(self) -> str:
        return self.stdout[-4000:] + self.stderr[-6000:]

    def journal(self, index: int) -> dict[str, Any]:
        """The journal of the session's run ``index`` (see :func:`journal_of`)."""
        assert len(self.runs) > index, (self.runs, self.output_tail())
        return journal_of(self.runs[index], self.output_tail())


def readme_session(name: str, workdir: Path, settings: dict[str, str] | None = None,
                   timeout: float = 400) -> Session:
    """Run the README snippet ``name`` as written, in ``workdir`` (``experiments/`` linked
    there), with a fresh environment plus ``settings``; the lab it starts is stopped however
    it ends. A failing snippet is returned, not raised: the README test judges it."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "experiments").symlink_to(ROOT / "experiments")
    recorder = workdir / "bin" / "chaos"
    recorder.parent.mkdir()
    recorder.write_text(RECORDER.format(python=sys.executable, root=str(ROOT)), encoding="utf-8")
    recorder.chmod(0o755)
    runs = workdir / "chaos-runs.jsonl"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "CHAOS_DYNAMO_"))}
    env |= {"PATH": f"{recorder.parent}:{BIN}:{env.get('PATH', '')}",
            "CHAOS_DYNAMO_STATE": str(workdir / "lab.json"), RUNS_FILE: str(runs)} | (settings or {})
    script = "set -euo pipefail\ntrap 'chaos-dynamo lab down >/dev/null 2>&1 || true' EXIT\n" + readme_snippet(name)
    print(f"README session {name}: started", flush=True)
    with subprocess.Popen(["bash", "-c", script], cwd=workdir, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, start_new_session=True) as bash:
        try:
            stdout, stderr = bash.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(bash.pid, signal.SIGKILL)
            subprocess.run([str(BIN / "chaos-dynamo"), "lab", "down"], env=env, capture_output=True, timeout=60)
            raise
    print(f"README session {name}: finished, exit {bash.returncode}", flush=True)
    recorded = runs.read_text(encoding="utf-8").splitlines() if runs.exists() else []
    return Session(bash.returncode, stdout, stderr, workdir, [json.loads(line) for line in recorded])
