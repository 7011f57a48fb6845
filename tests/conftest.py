"""Shared fixtures: one real lab per test session (moto server, DNS, LB fleet on loopback)."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from chaos_dynamo.config import load_topology
from chaos_dynamo.lab.lab import Lab
from chaos_dynamo.lab.state import LabInfo, write_state

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


@pytest.fixture(scope="session")
def lab() -> Iterator[Lab]:
    """A running lab with a short propagation delay, shared by the session's tests."""
    the_lab = Lab(load_topology(None, seed=11, propagation_delay=0.05, resync_interval=0.0))
    the_lab.start()
    try:
        yield the_lab
    finally:
        the_lab.stop()


@pytest.fixture(scope="session")
def lab_info(lab: Lab) -> LabInfo:
    return lab.info()


@pytest.fixture(scope="session")
def lab_state_file(lab_info: LabInfo, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    path = tmp_path_factory.mktemp("state") / "lab.json"
    write_state(lab_info, path)
    yield path
    # Whatever a failed or interrupted test left running on this lab.
    from chaos_dynamo.services import supervisor

    supervisor.stop_all(path)


@pytest.fixture
def lab_env(lab_info: LabInfo, lab_state_file: Path) -> dict[str, str]:
    """Environment for a subprocess that should reach the session's lab."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "CHAOS_DYNAMO_"))}
    return env | lab_info.env() | {"CHAOS_DYNAMO_STATE": str(lab_state_file)}


@pytest.fixture
def config(lab_info: LabInfo) -> dict[str, Any]:
    """Chaos Toolkit configuration pointing activities at the session's lab."""
    return {"chaos_dynamo_api": lab_info.api_url}


@pytest.fixture
def restore_after(config: dict[str, Any]) -> Iterator[None]:
    """Put every endpoint back after a test that breaks one."""
    yield
    from chaos_dynamo.endpoint.actions import restore_endpoint

    restore_endpoint(configuration=config)


def control(info: LabInfo, path: str, body: Any = None, timeout: float = 10.0) -> tuple[int, Any]:
    """GET (no body) or POST ``/_chaos_dynamo/<path>`` on the lab: (status, JSON answer), errors included."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"{info.api_url}/_chaos_dynamo/{path}", data=data,
                                     method="GET" if data is None else "POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def can_bind(kind: int, address: str, port: int) -> bool:
    """True when nothing holds ``address:port`` (a server that stopped left no listener)."""
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((address, port))
            return True
        except OSError:
            return False


def interrupt_once_empty(experiment: Path, info: LabInfo, state_file: Path, tmp_path: Path) -> tuple[int, str]:
    """Run ``experiment`` with an extra 60 s action, Ctrl-C it once the endpoint answers empty.

    Returns the exit code and output of ``chaos-dynamo run``.
    """
    import dns.message
    import dns.query

    from chaos_dynamo.clock import wait_until

    data = json.loads(experiment.read_text())
    data["method"].append({"type": "action", "name": "hold-the-outage", "provider": {
        "type": "process", "path": "sleep", "arguments": "60"}})
    path = tmp_path / f"long-{experiment.name}"
    path.write_text(json.dumps(data))
    process = subprocess.Popen([str(BIN / "chaos-dynamo"), "run", str(path), "--journal",
                                str(tmp_path / "j.json"), "--state-file", str(state_file)],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path,
                               start_new_session=True)

    def empty() -> bool:
        query = dns.message.make_query(info.primary_endpoint.name, "A")
        return not dns.query.udp(query, info.dns_host, port=info.dns_port, timeout=2).answer

    try:
        assert wait_until(empty, timeout=120, interval=0.1), "the method never emptied the endpoint"
        os.killpg(process.pid, signal.SIGINT)  # Ctrl-C reaches the whole foreground process group
        output, _ = process.communicate(timeout=180)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
    return process.returncode, output


def http_get(url: str) -> tuple[int, str]:
    """(status, body) of a GET; an HTTP error status is an answer, not an exception."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def prometheus_samples(text: str, types: tuple[str, ...] = ("counter", "gauge")) -> dict[str, float]:
    """Prometheus text -> {name{labels}: value}; every sample's metric must be declared with
    one of ``types`` (a summary's samples are its ``_sum`` and ``_count``)."""
    declared = set(re.findall(rf"^# TYPE (\S+) (?:{'|'.join(types)})$", text, re.M))
    suffix = r"(_sum|_count)?(\{.*\})?$" if "summary" in types else r"\{.*\}$"
    values: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            assert re.sub(suffix, "", name) in declared, line
            values[name] = float(value)
    return values


class HoldClock:
    """A clock for an activity that holds a fault for some seconds (``empty_endpoint_for``,
    ``slow_dynamodb_for``): real ``now``/``monotonic``, and a ``sleep`` that records how long
    it was asked for, calls ``look`` to see the lab during the fault, then returns at once or
    raises ``interrupt`` (a Ctrl-C in the middle of the hold)."""

    def __init__(self, look: Callable[[], Any], interrupt: BaseException | None = None) -> None:
        self.look = look
        self.interrupt = interrupt
        self.slept: list[float] = []
        self.seen_during: Any = None

    def now(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.seen_during = self.look()
        if self.interrupt is not None:
            raise self.interrupt


def readme_snippet(name: str) -> str:
    """The README's code block marked ``<!-- readme-test: NAME -->``: the tests run it as written."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    match = re.search(rf"<!-- readme-test: {name} -->\n```\w+\n(.*?)```", text, re.S)
    assert match, f"README has no snippet marked {name}"
    return match.group(1)
