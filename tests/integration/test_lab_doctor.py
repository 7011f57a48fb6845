"""``chaos-dynamo lab doctor``: leftovers of crashed and interrupted runs, reported and repaired.

* a detached lab killed with SIGKILL: its stale state file and the service it leaves
  (with its socket) are reported, repaired, and a fresh ``lab up`` on the same state file
  works; a lab whose state file was removed is an orphan, stopped, its sockets freed;
* a lab left dirty (LB faults, capacity, a free-running control plane whose Enactor crashed
  through the ``crash`` failpoint, an armed failpoint) is reported kind by kind and repaired;
* a plain ``chaos run`` interrupted in its method leaves the endpoint empty (chaos skips the
  rollbacks): measured, then repaired by the doctor;
* ``chaos-dynamo run`` killed with SIGKILL leaves its chaos running: an orphan, stopped with
  its process group; a process that is not provably ours is left alone;
* bad input exits 2 and touches nothing.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from chaos_dynamo.clock import wait_until
from chaos_dynamo.control import _client
from chaos_dynamo.control import actions as control
from chaos_dynamo.endpoint import probes
from chaos_dynamo.lab import doctor
from chaos_dynamo.lab.lab import Lab
from chaos_dynamo.lab.state import LabInfo, read_state, write_state
from chaos_dynamo.lbfleet import actions as lb
from chaos_dynamo.processes import group_members, read_process
from tests.conftest import BIN, ROOT, can_bind

pytestmark = [pytest.mark.integration]
SMOKE = ROOT / "experiments" / "endpoint-empty-smoke.json"


def cli(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "chaos-dynamo"), *args], capture_output=True, text=True, timeout=timeout,
                          env=env)


def clean_env(**extra: str) -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "CHAOS_DYNAMO_"))} | extra


def kinds(report: dict[str, Any]) -> set[str]:
    return {f["kind"] for f in report["findings"]}


@pytest.fixture(scope="module")
def session_state(lab: Lab, lab_info: LabInfo, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A state file of this module's own for the session's lab."""
    path = tmp_path_factory.mktemp("doctor") / "lab.json"
    write_state(lab_info, path)
    yield path
    from chaos_dynamo.services import supervisor

    supervisor.stop_all(path)
    assert lab.control_plane is not None
    lab.control_plane.reset()  # plan 1 everywhere, as the rest of the suite expects


def test_a_sigkilled_lab_is_reported_repaired_and_can_start_again(tmp_path: Path) -> None:
    state = tmp_path / "lab.json"
    started: list[int] = []
    try:
        assert cli("lab", "up", "--detach", "--state-file", str(state), env=clean_env()).returncode == 0
        lab_pid = read_state(state).pid
        started.append(lab_pid)
        result = cli("service", "start", "orders", "--kind", "hardened", "--instances", "1",
                     env=clean_env(CHAOS_DYNAMO_STATE=str(state)))
        assert result.returncode == 0, result.stdout + result.stderr
        os.kill(lab_pid, signal.SIGKILL)
        assert wait_until(lambda: read_process(lab_pid) is None, timeout=30)

        found = cli("lab", "doctor", "--state-file", str(state), "--json")
        assert found.returncode == doctor.EXIT_LEFTOVERS, found.stdout + found.stderr
        report = json.loads(found.stdout)
        assert report["lab"] == "stale" and kinds(report) == {"stale-state", "orphan-service"}
        orphan = next(f for f in report["findings"] if f["kind"] == "orphan-service")
        assert orphan["sockets"] and all(s.split()[1].startswith("127.") for s in orphan["sockets"])

        repaired = cli("lab", "doctor", "--state-file", str(state), "--repair")
        assert repaired.returncode == doctor.EXIT_CLEAN, repaired.stdout + repaired.stderr
        assert "nothing left over" in repaired.stdout
        assert not state.exists()
        assert all(read_process(pid) is None for pid in orphan["pids"])

        # A fresh lab on the same state file works, and the doctor finds it clean.
        again = cli("lab", "up", "--detach", "--state-file", str(state), env=clean_env())
        assert again.returncode == 0, again.stdout + again.stderr
        info = read_state(state)
        started.append(info.pid)
        assert doctor.examine(state).findings == []

        # Its state file removed, the running lab is an orphan: stopped, its sockets freed.
        state.unlink()
        report2 = doctor.examine(state)
        assert [f.kind for f in report2.findings] == ["orphan-lab"], report2
        assert report2.findings[0].pids == (info.pid,) and report2.findings[0].sockets
        assert doctor.repair(state).exit_code == doctor.EXIT_CLEAN
        assert read_process(info.pid) is None
        host, port = info.api_url.removeprefix("http://").split(":")
        import socket

        assert can_bind(socket.SOCK_STREAM, host, int(port))
    finally:
        for pid in started:
            if read_process(pid) is not None:
                os.kill(pid, signal.SIGKILL)
        from chaos_dynamo.services import supervisor

        supervisor.stop_all(state)


def test_a_dirty_lab_with_a_crashed_enactor_is_reported_and_repaired(session_state: Path, lab_info: LabInfo) -> None:
    config = {"chaos_dynamo_api": lab_info.api_url}
    try:
        lb.set_lb_faults("lb-2", latency=0.2, configuration=config)
        lb.set_dynamodb_capacity(4, 0.01, configuration=config)
        control.arm_failpoint("enactor.commit", "crash", actors="enactor-a", configuration=config)
        control.start_control_plane(plan_interval=0.2, poll=0.05, configuration=config)
        assert wait_until(lambda: _client.call("status", configuration=config)["actors"]["enactor-a"]["error"],
                          timeout=60, interval=0.05), "enactor-a did not crash"

        report = doctor.examine(session_state)
        assert report.lab == "running" and report.exit_code == doctor.EXIT_LEFTOVERS
        assert {f.kind for f in report.findings} == {"lb-faults", "capacity", "control-plane", "failpoints"}
        plane = next(f for f in report.findings if f.kind == "control-plane")
        assert "crashed actor" in plane.what and "enactor-a" in plane.what and "FailpointCrash" in plane.what

        fixed = doctor.repair(session_state)
        assert fixed.exit_code == doctor.EXIT_CLEAN, (fixed.findings, fixed.failed)
        status = _client.call("status", configuration=config)
        assert status["mode"] == "idle" and not status["failpoints"] and not status["stuck"]
        assert doctor.examine(session_state).findings == []  # endpoints on the newest plan too
    finally:
        lb.reset_lb_faults(configuration=config)
        control.stop_control_plane(configuration=config)
        control.disarm_failpoints(configuration=config)


def long_smoke(tmp_path: Path) -> Path:
    """The smoke experiment with a 60 s action after the fault: a run to interrupt mid-method."""
    data = json.loads(SMOKE.read_text())
    data["method"].append({"type": "action", "name": "hold-the-outage",
                           "provider": {"type": "process", "path": "sleep", "arguments": "60"}})
    path = tmp_path / "long-smoke.json"
    path.write_text(json.dumps(data))
    return path


def endpoint_empty(config: dict[str, Any]) -> bool:
    return probes.endpoint_addresses(configuration=config) == 0


def test_a_plain_chaos_run_interrupted_leaves_the_endpoint_empty_and_the_doctor_restores_it(
        session_state: Path, lab_info: LabInfo, tmp_path: Path) -> None:
    config = {"chaos_dynamo_api": lab_info.api_url}
    env = clean_env(CHAOS_DYNAMO_STATE=str(session_state)) | lab_info.env()
    process = subprocess.Popen([str(BIN / "chaos"), "--no-version-check", "--no-log-file", "run", "--journal-path",
                                str(tmp_path / "j.json"), str(long_smoke(tmp_path))],
                               env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    try:
        assert wait_until(lambda: endpoint_empty(config), timeout=120, interval=0.05)
        os.killpg(process.pid, signal.SIGINT)
        process.wait(timeout=60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    # What plain chaos does on Ctrl-C: the run is "interrupted" and its rollbacks are skipped.
    assert json.loads((tmp_path / "j.json").read_text())["status"] == "interrupted"
    assert endpoint_empty(config)
    found = cli("lab", "doctor", "--state-file", str(session_state))
    assert found.returncode == doctor.EXIT_LEFTOVERS, found.stdout
    assert f"endpoint {lab_info.primary_endpoint.name} does not answer" in found.stdout
    repaired = cli("lab", "doctor", "--state-file", str(session_state), "--repair")
    assert repaired.returncode == doctor.EXIT_CLEAN, repaired.stdout + repaired.stderr
    assert probes.endpoint_addresses(configuration=config) == 1
    assert probes.dynamodb_roundtrip(configuration=config) is True


def test_chaos_left_by_a_killed_chaos_dynamo_run_is_an_orphan_and_nothing_else_is_touched(
        session_state: Path, lab_info: LabInfo, tmp_path: Path) -> None:
    config = {"chaos_dynamo_api": lab_info.api_url}
    # Not ours: it carries the state file but nothing proves chaos-dynamo started it.
    stranger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"],
                                env=clean_env(CHAOS_DYNAMO_STATE=str(session_state)), start_new_session=True)
    run = subprocess.Popen([str(BIN / "chaos-dynamo"), "run", str(long_smoke(tmp_path)), "--state-file",
                            str(session_state), "--journal", str(tmp_path / "j.json")],
                           env=clean_env(), cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           start_new_session=True)
    try:
        assert wait_until(lambda: endpoint_empty(config), timeout=120, interval=0.05)
        os.kill(run.pid, signal.SIGKILL)  # no safety net: its chaos goes on, in a session of its own
        run.wait(timeout=30)
        report = doctor.examine(session_state)
        orphans = [f for f in report.findings if f.kind == "orphan-chaos"]
        assert len(orphans) == 1 and f"parent (pid {run.pid}) died" in orphans[0].what, report
        assert any(f.kind == "endpoint" for f in report.findings)
        chaos_pid = orphans[0].pids[0]
        assert any("sleep" in p.command for p in group_members(chaos_pid)), "the method's `sleep 60` runs"
        fixed = doctor.repair(session_state)
        assert fixed.exit_code == doctor.EXIT_CLEAN, (fixed.findings, fixed.failed)
        assert read_process(chaos_pid) is None
        assert not group_members(chaos_pid), "its `sleep 60` outlived it"
        assert stranger.poll() is None, "a process that is not provably ours was signalled"
        assert probes.endpoint_addresses(configuration=config) == 1
    finally:
        stranger.kill()
        stranger.wait()
        if run.poll() is None:
            run.kill()


STARTER = """
import sys
from chaos_dynamo.services import supervisor
supervisor.start("outlived", command=["sleep", "60"], state=sys.argv[1], exit_with_parent=True)
"""


def test_a_service_that_outlived_the_run_that_started_it_is_an_orphan(session_state: Path) -> None:
    """As an experiment's control starts a service (tied to its chaos process), from a process
    that then dies without stopping it; the user's command ignores the tie."""
    subprocess.run([sys.executable, "-c", STARTER, str(session_state)], check=True, timeout=60,
                   env=clean_env(CHAOS_DYNAMO_STATE=str(session_state)))
    report = doctor.examine(session_state)
    orphan = [f for f in report.findings if f.kind == "orphan-service"]
    assert len(orphan) == 1 and "the run that started it" in orphan[0].what, report
    assert doctor.repair(session_state).exit_code == doctor.EXIT_CLEAN
    assert all(read_process(pid) is None for pid in orphan[0].pids)


def test_bad_input_exits_2_and_changes_nothing(tmp_path: Path) -> None:
    assert cli("lab", "doctor", "--state-file", str(tmp_path)).returncode == doctor.EXIT_BAD_INPUT
    state = tmp_path / "lab.json"
    state.write_text(json.dumps({
        "pid": os.getpid(), "api_url": "http://10.1.2.3:4566", "dns_host": "127.0.0.1", "dns_port": 53,
        "lb_port": 8000, "region": "us-east-1", "emulator_url": "http://10.1.2.3:4566", "embedded": False,
        "seed": 0, "plan_table": "plans", "record_ttl": 60, "propagation_delay": 0.0, "started_at": 0.0}))
    result = cli("lab", "doctor", "--state-file", str(state), "--repair")
    assert result.returncode == doctor.EXIT_BAD_INPUT
    assert "api_url" in result.stdout and "loopback" in result.stdout
    assert state.exists(), "bad input changes nothing"
