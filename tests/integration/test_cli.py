"""`chaos-dynamo lab up/status/env/down` as a user runs them: real processes, real sockets."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import socket
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from chaos_dynamo.lab.state import LabInfo, write_state
from tests.conftest import BIN, can_bind

pytestmark = pytest.mark.integration
CLI = str(BIN / "chaos-dynamo")


def cli(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "CHAOS_DYNAMO_"))}
    return subprocess.run([CLI, *args], capture_output=True, text=True, timeout=timeout,
                          env=base | (env or {}))


def test_up_detach_status_env_down_leaves_nothing(tmp_path: Path) -> None:
    state = tmp_path / "lab.json"
    up = cli("lab", "up", "--detach", "--state-file", str(state), "--seed", "4")
    assert up.returncode == 0, up.stderr + up.stdout
    assert "dig @127.0.0.1" in up.stdout
    try:
        status = cli("lab", "status", "--json", "--state-file", str(state))
        assert status.returncode == 0, status.stderr
        data = json.loads(status.stdout)
        assert data["running"] is True
        assert set(data["counters"]) == {"dns", "lb", "route53"}

        human = cli("lab", "status", "--state-file", str(state))
        assert "lab running" in human.stdout and "lb-1" in human.stdout

        env_out = cli("lab", "env", "--state-file", str(state))
        assert env_out.returncode == 0
        exports = dict(line.removeprefix("export ").split("=", 1) for line in env_out.stdout.splitlines())
        assert exports["AWS_ENDPOINT_URL_DYNAMODB"].startswith("http://dynamodb.us-east-1.amazonaws.com:")
        assert exports["CHAOS_DYNAMO_DNS"].startswith("127.0.0.1:")
        assert exports["AWS_ACCESS_KEY_ID"] == "testing"

        # A shell can eval it and then reach DynamoDB by name (the shim comes from the .pth file).
        script = (f'eval "$({CLI} lab env --state-file {state})" && '
                  f'{BIN}/python -c "import boto3; print(boto3.client(\'dynamodb\').list_tables()[\'TableNames\'])"')
        shell = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=60,
                               env={k: v for k, v in os.environ.items() if not k.startswith("AWS_")})
        assert shell.returncode == 0, shell.stderr
        assert "chaos-dynamo-plans" in shell.stdout

        second = cli("lab", "up", "--detach", "--state-file", str(state))
        assert second.returncode != 0 and "already running" in second.stderr
    finally:
        down = cli("lab", "down", "--state-file", str(state))
    assert down.returncode == 0, down.stderr
    assert not state.exists()
    info = data["lab"]
    api_port = int(info["api_url"].rsplit(":", 1)[1])
    dns_port = int(info["dns"].rsplit(":", 1)[1])
    assert can_bind(socket.SOCK_STREAM, "127.0.0.1", api_port)
    assert can_bind(socket.SOCK_DGRAM, "127.0.0.1", dns_port)
    assert can_bind(socket.SOCK_STREAM, "127.0.0.1", dns_port)
    for lb in data["load_balancers"].values():
        assert can_bind(socket.SOCK_STREAM, lb["address"], info["lb_port"])
    again = cli("lab", "status", "--state-file", str(state))
    assert again.returncode == 1 and "no lab is running" in again.stdout


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (["--host", "0.0.0.0"], "lab.host"),
        (["--host", "10.1.2.3"], "lab.host"),
        (["--dns-port", "99999"], "lab.dns_port"),
        (["--propagation-delay", "-2"], "lab.propagation_delay"),
        (["--backend", "not-a-url"], "lab.backend"),
        (["--region", "mars"], "lab.region"),
    ],
)
def test_bad_arguments_are_refused_and_change_nothing(tmp_path: Path, args: list[str], field: str) -> None:
    state = tmp_path / "lab.json"
    result = cli("lab", "up", "--detach", "--state-file", str(state), *args)
    assert result.returncode == 2
    assert field in result.stderr
    assert not state.exists()


def test_bad_config_file_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "lab.toml"
    config.write_text('[[load_balancers]]\nname = "x"\naddress = "127.0.0.21"\nweight = 300\n')
    result = cli("lab", "up", "--config", str(config), "--state-file", str(tmp_path / "s.json"))
    assert result.returncode == 2
    assert "load_balancers[0].weight" in result.stderr
    assert not (tmp_path / "s.json").exists()


def test_commands_without_a_lab_say_how_to_start_one(tmp_path: Path) -> None:
    state = str(tmp_path / "none.json")
    env = cli("lab", "env", "--state-file", state)
    assert env.returncode == 1 and "lab up --detach" in env.stderr
    down = cli("lab", "down", "--state-file", state)
    assert down.returncode == 0 and "no lab is running" in down.stdout


# --- review fixes: unreachable backend, lab down's identity check, CliRunner --------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_an_unreachable_backend_is_one_error_line(tmp_path: Path) -> None:
    backend = f"http://127.0.0.1:{free_port()}"
    result = cli("lab", "up", "--backend", backend, "--state-file", str(tmp_path / "s.json"))
    assert result.returncode == 1, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and backend in errors[0], result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "s.json").exists()


def test_seed_beside_a_config_file_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "lab.toml"
    config.write_text("[lab]\nseed = 2\n")
    result = cli("lab", "up", "--config", str(config), "--seed", "3", "--state-file", str(tmp_path / "s.json"))
    assert result.returncode == 2 and "--seed" in result.stderr and "[lab] table" in result.stderr


def sleeper(*argv: str) -> subprocess.Popen[bytes]:
    """A process that is not a lab, with whatever command line a test needs it to have."""
    return subprocess.Popen([str(BIN / "python"), "-c", "import time; time.sleep(60)", *argv])


def write_fake_state(path: Path, lab_info: LabInfo, pid: int, api_url: str) -> None:
    write_state(dataclasses.replace(lab_info, pid=pid, api_url=api_url), path)


def test_down_leaves_a_process_the_lab_api_disowns(tmp_path: Path, lab_info: LabInfo) -> None:
    # Its command line looks like a detached lab's, but the API at the recorded URL answers
    # with another pid: the recorded pid was recycled, so it must not be signalled.
    state = tmp_path / "lab.json"
    impostor = sleeper("chaos_dynamo.cli", "lab", "up", "--state-file", str(state))
    try:
        write_fake_state(state, lab_info, impostor.pid, lab_info.api_url)
        down = cli("lab", "down", "--state-file", str(state))
        assert down.returncode == 0, down.stderr
        assert "left alone" in down.stdout
        assert impostor.poll() is None
        assert not state.exists()
    finally:
        impostor.kill()
        impostor.wait()


def test_down_without_an_api_checks_the_command_line(tmp_path: Path, lab_info: LabInfo) -> None:
    state = tmp_path / "lab.json"
    silent_api = f"http://127.0.0.1:{free_port()}"
    other = sleeper("chaos-dynamo")  # names the tool but is not the lab of this state file
    ours = sleeper("chaos_dynamo.cli", "lab", "up", "--state-file", str(state))
    try:
        write_fake_state(state, lab_info, other.pid, silent_api)
        assert cli("lab", "down", "--state-file", str(state)).returncode == 0
        assert other.poll() is None

        write_fake_state(state, lab_info, ours.pid, silent_api)
        down = cli("lab", "down", "--state-file", str(state))
        assert down.returncode == 0 and "lab stopped" in down.stdout, down.stderr
        assert ours.wait(timeout=10) == -signal.SIGTERM
        assert not state.exists()
    finally:
        for process in (other, ours):
            process.kill()
            process.wait()


def test_down_explains_a_permission_error(tmp_path: Path, lab_info: LabInfo,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from chaos_dynamo import cli as cli_module

    state = tmp_path / "lab.json"
    fake_pid = 2**22 + 7  # never signalled: os.kill is replaced below
    write_fake_state(state, lab_info, fake_pid, lab_info.api_url)
    real_kill = os.kill

    def kill(pid: int, signum: int) -> None:
        if pid != fake_pid:
            real_kill(pid, signum)
            return
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "kill", kill)
    monkeypatch.setattr(cli_module, "_is_our_lab", lambda info, path: True)
    result = CliRunner().invoke(cli_module.main, ["lab", "down", "--state-file", str(state)])
    assert result.exit_code == 1
    assert "not allowed to signal the lab" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert state.exists()


def test_detach_works_under_click_runner(tmp_path: Path) -> None:
    from chaos_dynamo import cli as cli_module

    state = tmp_path / "lab.json"
    runner = CliRunner()
    up = runner.invoke(cli_module.main, ["lab", "up", "--detach", "--state-file", str(state), "--seed", "9",
                                         "--propagation-delay", "0.01"])
    try:
        assert up.exit_code == 0, up.output
        info = LabInfo.from_json(state.read_text())
        assert info.seed == 9 and info.propagation_delay == 0.01
        cmdline = Path(f"/proc/{info.pid}/cmdline").read_bytes().split(b"\0")
        assert b"chaos_dynamo.cli" in cmdline and str(state).encode() in cmdline
    finally:
        down = runner.invoke(cli_module.main, ["lab", "down", "--state-file", str(state)])
    assert down.exit_code == 0 and "lab stopped" in down.output, down.output
    assert not state.exists()
