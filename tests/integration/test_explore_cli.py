"""`chaos-dynamo explore` as a user runs it: exit codes, the trace file, argument errors."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from chaos_dynamo.control.explorer import replay_in_memory
from chaos_dynamo.control.trace import load_trace
from tests.conftest import BIN

pytestmark = pytest.mark.integration
CLI = str(BIN / "chaos-dynamo")


def explore(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "CHAOS_DYNAMO_"))}
    return subprocess.run([CLI, "explore", *args], capture_output=True, text=True, timeout=120,
                          env=env, cwd=cwd)


def test_naive_exits_1_and_writes_a_replayable_trace(tmp_path: Path) -> None:
    done = explore("--design", "naive", "--enactors", "3", "--plans", "4", "--endpoints", "1",
                   cwd=tmp_path)
    assert done.returncode == 1, done.stderr + done.stdout
    assert "counterexample (shortest, 9 steps): empty-endpoint" in done.stdout
    assert "\n9. enactor-" in done.stdout and "!! empty-endpoint" in done.stdout
    path = tmp_path / "traces" / "explore-naive-3x4x1.json"
    assert f"trace written to {Path('traces') / path.name}" in done.stdout
    trace = load_trace(path)
    _, violation = replay_in_memory(trace)
    assert violation is not None and violation.as_dict() == trace.violation


def test_fenced_exits_0_exhaustive(tmp_path: Path) -> None:
    done = explore("--design", "fenced", "--enactors", "2", "--plans", "4", "--endpoints", "1",
                   cwd=tmp_path)
    assert done.returncode == 0, done.stderr + done.stdout
    assert "no violation within the bounds (exhaustive" in done.stdout
    assert not (tmp_path / "traces").exists()


def test_json_and_trace_out(tmp_path: Path) -> None:
    out = tmp_path / "race.json"
    done = explore("--json", "--trace-out", str(out), "--seed", "5", cwd=tmp_path)
    assert done.returncode == 1, done.stderr
    data = json.loads(done.stdout)
    assert data["trace"] == str(out) and out.exists()
    assert data["violation"]["kind"] == "empty-endpoint" and data["seed"] == 5
    assert load_trace(out).digest == data["violation"]["digest"]


def test_max_states_is_inconclusive(tmp_path: Path) -> None:
    done = explore("--design", "fenced", "--max-states", "20", cwd=tmp_path)
    assert done.returncode == 3, done.stderr + done.stdout
    assert "not exhaustive: stopped at 20 states" in done.stdout


@pytest.mark.parametrize("args,option", [
    (["--enactors", "0"], "--enactors"),
    (["--plans", "1"], "--plans"),
    (["--endpoints", "9"], "--endpoints"),
    (["--keep", "-1"], "--keep"),
    (["--design", "optimistic"], "--design"),
    (["--max-states", "0"], "--max-states"),
    (["--seed", "x"], "--seed"),
])
def test_bad_arguments_exit_2_naming_the_option(tmp_path: Path, args: list[str], option: str) -> None:
    done = explore(*args, cwd=tmp_path)
    assert done.returncode == 2, done.stdout
    assert option in done.stderr
