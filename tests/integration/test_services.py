"""Services under test as real processes on the session's lab: the environment contract,
readiness, stopping process groups (TERM, then KILL), the activities, the Chaos Toolkit
control inside a real `chaos run`, and the `chaos-dynamo service` CLI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from chaos_dynamo.clock import wait_until
from chaos_dynamo.errors import ConfigError, LabError
from chaos_dynamo.lab.state import LabInfo, write_state
from chaos_dynamo.services import actions, control, probes, supervisor
from chaos_dynamo.services.registry import calls_dir, list_records, read_record
from tests.conftest import BIN

pytestmark = pytest.mark.integration
CLI = str(BIN / "chaos-dynamo")

# A stand-in for a user's service, any language: it dumps its environment, and on request
# fails at once, serves /health, writes a reference-style ready file, or leaves behind a
# child that ignores SIGTERM.
FAKE_SERVICE = r'''
import http.server, json, os, subprocess, sys, threading, time

out, mode = sys.argv[1], (sys.argv[2] if len(sys.argv) > 2 else "")
index = os.environ.get("CHAOS_DYNAMO_INSTANCE", "x")

def dump(path, data):
    with open(path + ".tmp", "w") as f:
        json.dump(data, f)
    os.replace(path + ".tmp", path)

def serve(port):
    class Health(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200 if self.path == "/health" else 404)
            self.end_headers()
            self.wfile.write(b"{}")
        def log_message(self, *args):
            pass
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Health)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server.server_address[1]

if mode == "fail":
    print("boom: the database password is wrong", flush=True)
    sys.exit(3)
if mode == "stubborn":
    child = ("import json, os, signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
             "p = sys.argv[1]; open(p + '.tmp', 'w').write(json.dumps({'pid': os.getpid()})); "
             "os.replace(p + '.tmp', p); time.sleep(600)")
    subprocess.Popen([sys.executable, "-c", child, os.path.join(out, f"child-{index}.json")])
if mode.startswith("health="):
    serve(int(mode.split("=", 1)[1]))
if mode.startswith("ready="):
    port = serve(0)
    dump(mode.split("=", 1)[1], {"pid": os.getpid(), "health_url": f"http://127.0.0.1:{port}/health",
                                 "metrics_url": f"http://127.0.0.1:{port}/metrics"})
dump(os.path.join(out, f"env-{index}.json"), {"pid": os.getpid(), "env": dict(os.environ)})
while True:
    time.sleep(1)
'''


@pytest.fixture
def fake(tmp_path: Path) -> list[str]:
    """argv of the fake service; it writes into tmp_path/out."""
    script = tmp_path / "fake_service.py"
    script.write_text(FAKE_SERVICE)
    (tmp_path / "out").mkdir()
    return [sys.executable, str(script), str(tmp_path / "out")]


@pytest.fixture
def state(tmp_path: Path, lab_info: LabInfo) -> Iterator[Path]:
    """A state file for the session's lab of this test's own (its services, logs, call logs)."""
    path = tmp_path / "state" / "lab.json"
    write_state(lab_info, path)
    yield path
    supervisor.stop_all(path, timeout=1.0)


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] not in ("Z", "X")
    except (OSError, IndexError):
        return False


def _processes_of(name: str, state: Path) -> list[int]:
    """Live processes started for service ``name`` of ``state`` (by their environment)."""
    wanted = {f"CHAOS_DYNAMO_SERVICE={name}".encode(), f"CHAOS_DYNAMO_STATE={state}".encode()}
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                environ = set((entry / "environ").read_bytes().split(b"\0"))
            except OSError:
                continue
            if wanted <= environ and _alive(int(entry.name)):
                found.append(int(entry.name))
    return found


def _read_json(path: Path) -> Any:
    assert wait_until(path.exists, timeout=30, interval=0.05), f"{path} was never written"
    return json.loads(path.read_text())


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_two_instances_get_the_contract_and_stop_as_groups(fake: list[str], state: Path, tmp_path: Path,
                                                           lab_info: LabInfo) -> None:
    record = supervisor.start("fake-two", command=fake, instances=2, state=state, lab=lab_info)
    out = tmp_path / "out"
    dumps = [_read_json(out / f"env-{i}.json") for i in range(2)]
    assert read_record("fake-two", state) == record
    assert record.kind == "command" and record.command == tuple(fake)
    assert record.source_address.startswith("127.0.0.") and 100 <= int(record.source_address.rsplit(".")[-1]) <= 250
    assert [i.pid for i in record.instances] == [d["pid"] for d in dumps]
    for index, (instance, dump) in enumerate(zip(record.instances, dumps, strict=True)):
        env = dump["env"]
        assert instance.index == index and os.getpgid(instance.pid) == instance.pid
        assert env["AWS_SDK_UA_APP_ID"] == env["CHAOS_DYNAMO_SERVICE"] == "fake-two"
        assert env["CHAOS_DYNAMO_SOURCE_ADDRESS"] == record.source_address
        assert env["CHAOS_DYNAMO_CALL_LOG"] == str(calls_dir(state))
        assert env["CHAOS_DYNAMO_INSTANCE"] == str(index)
        assert env["CHAOS_DYNAMO_STATE"] == str(state)
        assert env["AWS_ENDPOINT_URL_DYNAMODB"] == lab_info.dynamodb_url()
        assert env["CHAOS_DYNAMO_DNS"] == f"{lab_info.dns_host}:{lab_info.dns_port}"
        assert Path(instance.log_path) == state.parent / "services" / f"fake-two-{index}.log"
    assert calls_dir(state).is_dir()
    assert probes.service_running("fake-two", configuration={"chaos_dynamo_state": str(state)})
    assert probes.service_instances("fake-two", configuration={"chaos_dynamo_state": str(state)}) == 2

    # A second service gets the next address.
    second = supervisor.start("fake-other", command=fake + ["other"], state=state, lab=lab_info)
    assert second.source_address != record.source_address

    result = supervisor.stop("fake-two", state)
    assert result == {"service": "fake-two", "was_running": True, "stopped": 2, "killed": 0,
                      "pids": [i.pid for i in record.instances]}
    assert not any(_alive(i.pid) for i in record.instances)
    assert read_record("fake-two", state) is None
    assert not probes.service_running("fake-two", configuration={"chaos_dynamo_state": str(state)})
    assert supervisor.stop("fake-two", state)["stopped"] == 0  # idempotent


def test_a_child_that_ignores_sigterm_is_killed(fake: list[str], state: Path, tmp_path: Path,
                                                lab_info: LabInfo) -> None:
    record = supervisor.start("stubborn", command=fake + ["stubborn"], state=state, lab=lab_info)
    child = _read_json(tmp_path / "out" / "child-0.json")["pid"]
    assert os.getpgid(child) == record.instances[0].pid  # in the instance's group
    result = supervisor.stop("stubborn", state, timeout=1.0)
    assert result["stopped"] == 1 and result["killed"] == 1
    assert wait_until(lambda: not _alive(child), timeout=5)


def test_a_command_with_a_health_url_is_ready_when_it_answers(fake: list[str], state: Path,
                                                              lab_info: LabInfo) -> None:
    port = _free_port()
    url = f"http://127.0.0.1:{port}/health"
    lines: list[str] = []
    record = supervisor.start("healthy", command=fake + [f"health={port}"], health_url=url,
                              state=state, lab=lab_info, progress=lines.append)
    assert record.instances[0].health_url == url
    with urllib.request.urlopen(url, timeout=5) as response:
        assert response.status == 200  # already serving when start returned
    assert any("ready" in line for line in lines)
    status = supervisor.status(record, check_health=True)
    assert status["alive"] == 1 and status["instances"][0]["health"] == "healthy"


def test_failures_to_start_leave_nothing_running(fake: list[str], state: Path, lab_info: LabInfo) -> None:
    with pytest.raises(LabError) as err:
        supervisor.start("broken", command=fake + ["fail"], state=state, lab=lab_info)
    assert "exited with code 3" in str(err.value) and "database password is wrong" in str(err.value)
    assert read_record("broken", state) is None
    assert not _processes_of("broken", state)

    # Never healthy: stopped again after the timeout, the log's tail in the error.
    url = f"http://127.0.0.1:{_free_port()}/health"
    with pytest.raises(LabError) as err:
        supervisor.start("silent", command=fake, health_url=url, instances=2, state=state, lab=lab_info,
                         ready_timeout=1.0)
    assert "did not answer 200" in str(err.value)
    assert read_record("silent", state) is None
    assert not _processes_of("silent", state)


def test_a_reference_kind_is_ready_by_its_ready_file(fake: list[str], state: Path, lab_info: LabInfo,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    def fake_reference(spec: supervisor.ServiceSpec, index: int, ready_file: Path) -> list[str]:
        return fake + [f"ready={ready_file}"]

    monkeypatch.setattr(supervisor, "reference_argv", fake_reference)
    record = supervisor.start("ref", kind="hardened", instances=2, rate=3, state=state, lab=lab_info)
    assert record.kind == "hardened" and record.rate == 3.0
    for instance in record.instances:
        assert instance.health_url.endswith("/health") and instance.metrics_url.endswith("/metrics")
        with urllib.request.urlopen(instance.health_url, timeout=5) as response:
            assert response.status == 200
    assert not list((state.parent / "services").glob("*.ready"))  # read, then removed


def test_the_real_hardened_reference_service(state: Path, lab_info: LabInfo) -> None:
    pytest.importorskip("chaos_dynamo.services.reference")
    record = supervisor.start("hardened-ref", kind="hardened", rate=5, state=state, lab=lab_info)
    try:
        # Serving at once; healthy (200) once its first DynamoDB calls succeeded.
        assert wait_until(lambda: supervisor.health_ok(record.instances[0].health_url), timeout=30,
                          interval=0.1)
        assert record.instances[0].metrics_url
    finally:
        result = supervisor.stop("hardened-ref", state)
    assert result["stopped"] == 1 and result["killed"] == 0  # SIGTERM is a clean exit


def test_actions_start_warm_up_and_stop(fake: list[str], state: Path) -> None:
    config = {"chaos_dynamo_state": str(state)}
    with pytest.raises(ConfigError) as err:
        actions.start_service("act", command=" ".join(fake), warmup=-1, configuration=config)
    assert err.value.field == "warmup"
    assert not list_records(state)
    out = actions.start_service("act", command=" ".join(fake), instances=2, warmup=0.3, configuration=config)
    assert out["service"] == "act" and out["kind"] == "command" and len(out["pids"]) == 2
    assert out["warmup"] == 0.3 and out["source_address"]
    json.dumps(out)  # fit for the journal
    stopped = actions.stop_service("act", configuration=config)
    assert stopped["stopped"] == 2
    assert actions.stop_service("act", configuration=config)["stopped"] == 0


def test_a_service_that_dies_during_warm_up_fails_the_start(state: Path) -> None:
    config = {"chaos_dynamo_state": str(state)}
    command = f"{sys.executable} -c 'import time; time.sleep(0.8)'"
    with pytest.raises(LabError) as err:
        actions.start_service("short", command=command, warmup=10, configuration=config)
    assert "during the 10 s warm-up" in str(err.value)
    assert read_record("short", state) is None


def test_control_reads_string_configuration_and_stops_what_it_started(fake: list[str], state: Path) -> None:
    from chaoslib.exceptions import InterruptExecution

    config = {"chaos_dynamo_state": str(state), "service_name": "ctl", "service_kind": "hardened",
              "service_command": " ".join(fake), "service_instances": "2", "service_warmup": "0.2"}
    control.before_experiment_control({}, configuration=config)
    try:
        record = read_record("ctl", state)
        assert record is not None and record.kind == "command" and len(record.instances) == 2
    finally:
        control.after_experiment_control({}, state={}, configuration=config)
    assert read_record("ctl", state) is None
    assert not any(_alive(i.pid) for i in record.instances)

    # A bad value interrupts the run (chaoslib ignores any other exception) and starts nothing.
    with pytest.raises(InterruptExecution) as err:
        control.before_experiment_control({}, configuration=config | {"service_instances": "many"})
    assert "service_instances" in str(err.value)
    with pytest.raises(InterruptExecution) as err:
        control.before_experiment_control({}, configuration={"chaos_dynamo_state": str(state),
                                                             "service_name": "absent"})
    assert "no service 'absent' is running" in str(err.value)
    assert not list_records(state)


def _experiment(tmp_path: Path, config: dict[str, Any]) -> Path:
    path = tmp_path / "service-experiment.json"
    path.write_text(json.dumps({
        "version": "1.0.0", "title": "a service runs for the length of the experiment",
        "description": "the control starts it before and stops it after", "configuration": config,
        "controls": [{"name": "service-under-test",
                      "provider": {"type": "python", "module": "chaos_dynamo.services.control"}}],
        "steady-state-hypothesis": {"title": "the service runs", "probes": [{
            "type": "probe", "name": "service-running", "tolerance": True,
            "provider": {"type": "python", "module": "chaos_dynamo.services.probes",
                         "func": "service_running", "arguments": {"name": "${service_name}"}}}]},
        "method": [{"type": "probe", "name": "instances", "provider": {
            "type": "python", "module": "chaos_dynamo.services.probes", "func": "service_instances",
            "arguments": {"name": "${service_name}"}}}],
    }))
    return path


@pytest.mark.chaos
def test_chaos_run_with_the_control(fake: list[str], state: Path, tmp_path: Path,
                                    lab_env: dict[str, str]) -> None:
    env = lab_env | {"CHAOS_DYNAMO_STATE": str(state)}
    config = {"service_name": "under-test", "service_command": " ".join(fake),
              "service_instances": {"type": "env", "key": "SVC_INSTANCES", "default": "1"}}
    experiment = _experiment(tmp_path, config)
    run = subprocess.run([str(BIN / "chaos"), "--no-version-check", "run", "--journal-path",
                          str(tmp_path / "journal.json"), str(experiment)],
                         capture_output=True, text=True, timeout=120, cwd=tmp_path,
                         env=env | {"SVC_INSTANCES": "2"})
    assert run.returncode == 0, run.stdout + run.stderr
    journal = json.loads((tmp_path / "journal.json").read_text())
    assert journal["status"] == "completed" and journal["steady_states"]["before"]["steady_state_met"]
    assert journal["run"][0]["output"] == 2
    assert not list_records(state)  # stopped after the experiment

    # A service that cannot start ends the run visibly, before any probe ran.
    bad = _experiment(tmp_path, config | {"service_command": " ".join(fake + ["fail"])})
    run = subprocess.run([str(BIN / "chaos"), "--no-version-check", "run", "--journal-path",
                          str(tmp_path / "bad.json"), str(bad)],
                         capture_output=True, text=True, timeout=120, cwd=tmp_path, env=env)
    assert run.returncode == 1
    assert "could not start the service under test" in run.stdout + run.stderr
    assert "database password is wrong" in run.stdout + run.stderr
    journal = json.loads((tmp_path / "bad.json").read_text())
    assert journal["status"] == "interrupted" and not journal["run"]
    assert not list_records(state)


def _cli(*args: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CLI, *args], capture_output=True, text=True, timeout=timeout, env=env)


def test_cli_start_list_stop(fake: list[str], state: Path, lab_env: dict[str, str]) -> None:
    env = {k: v for k, v in lab_env.items() if not k.startswith("CHAOS_DYNAMO_STATE")}
    s = ["--state-file", str(state)]
    bad = _cli("service", "start", "cli-svc", *s, "--instances", "0", "--", *fake, env=env)
    assert bad.returncode == 2 and "instances" in bad.stderr
    neither = _cli("service", "start", "cli-svc", *s, env=env)
    assert neither.returncode == 2 and "kind" in neither.stderr

    start = _cli("service", "start", "cli-svc", *s, "--instances", "2", "--", *fake, env=env)
    assert start.returncode == 0, start.stderr + start.stdout
    assert "instance 1 running" in start.stdout and "service stop cli-svc" in start.stdout
    listed = json.loads(_cli("service", "list", "--json", *s, env=env).stdout)
    assert [(x["name"], x["kind"], x["alive"]) for x in listed] == [("cli-svc", "command", 2)]
    pids = [i["pid"] for i in listed[0]["instances"]]
    human = _cli("service", "list", *s, env=env).stdout
    assert "cli-svc: command, 2/2 instance(s) alive" in human and listed[0]["source_address"] in human

    again = _cli("service", "start", "cli-svc", *s, "--", *fake, env=env)
    assert again.returncode == 2 and "stop it first" in again.stderr

    stop = _cli("service", "stop", "cli-svc", *s, env=env)
    assert stop.returncode == 0 and "stopped (2 instance(s)" in stop.stdout
    assert not any(_alive(p) for p in pids)
    assert "not running" in _cli("service", "stop", "cli-svc", *s, env=env).stdout
    assert _cli("service", "stop", *s, env=env).returncode == 2  # neither NAME nor --all


def test_lab_down_stops_the_services(fake: list[str], tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "CHAOS_DYNAMO_"))}
    state = tmp_path / "own" / "lab.json"
    s = ["--state-file", str(state)]
    up = _cli("lab", "up", "--detach", *s, env=env)
    assert up.returncode == 0, up.stderr + up.stdout
    try:
        start = _cli("service", "start", "down-svc", *s, "--", *fake, env=env)
        assert start.returncode == 0, start.stderr + start.stdout
        record = read_record("down-svc", state)
        assert record is not None
    finally:
        down = _cli("lab", "down", *s, env=env)
    assert down.returncode == 0, down.stderr
    assert "service down-svc stopped" in down.stdout and "lab stopped" in down.stdout
    assert not any(_alive(i.pid) for i in record.instances)
    assert not list_records(state)


def test_no_lab_no_start(fake: list[str], tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "CHAOS_DYNAMO_"))}
    result = _cli("service", "start", "x", "--state-file", str(tmp_path / "none.json"), "--", *fake, env=env)
    assert result.returncode == 1 and "lab up --detach" in result.stderr
    assert not (tmp_path / "services").exists()


def test_stop_all_signals_nothing_but_recorded_groups(state: Path, lab_info: LabInfo) -> None:
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"],
                                 env=os.environ | {"CHAOS_DYNAMO_SERVICE": "a"}, start_new_session=True)
    try:
        supervisor.start("a", command=[sys.executable, "-c", "import time; time.sleep(60)"],
                         state=state, lab=lab_info)
        assert [r["stopped"] for r in supervisor.stop_all(state)] == [1]
        assert bystander.poll() is None  # same name in its env, but not a recorded group
    finally:
        os.killpg(bystander.pid, signal.SIGKILL)
        bystander.wait()


@pytest.mark.chaos
def test_an_interrupted_run_stops_the_services_it_started(fake: list[str], state: Path, tmp_path: Path) -> None:
    # The method starts a service and never stops it; Ctrl-C during the next action.
    path = tmp_path / "leaves-a-service.json"
    path.write_text(json.dumps({
        "version": "1.0.0", "title": "starts a service, then waits", "description": "no rollback",
        "method": [
            {"type": "action", "name": "start", "provider": {
                "type": "python", "module": "chaos_dynamo.services.actions", "func": "start_service",
                "arguments": {"name": "left-behind", "command": " ".join(fake)}}},
            {"type": "action", "name": "wait", "provider": {"type": "process", "path": "sleep",
                                                             "arguments": "60"}},
        ],
    }))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "CHAOS_DYNAMO_"))}
    early = supervisor.start("before-the-run", command=fake + ["early"], state=state,
                             lab=supervisor.lab_from_state(state))
    process = subprocess.Popen([CLI, "run", str(path), "--journal", str(tmp_path / "j.json"),
                                "--state-file", str(state)], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, cwd=tmp_path, env=env,
                               start_new_session=True)
    try:
        assert wait_until(lambda: read_record("left-behind", state) is not None, timeout=60, interval=0.1)
        record = read_record("left-behind", state)
        assert record is not None
        os.killpg(process.pid, signal.SIGINT)
        output, _ = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130, output  # interrupted (after the safety net ran)
    assert "safety net: stopped service left-behind" in output
    assert read_record("left-behind", state) is None
    assert not any(_alive(i.pid) for i in record.instances)
    assert supervisor.running_instances("before-the-run", state) == 1  # not the run's: left alone
    assert early.instances
