"""A dry run is never judged as a real one: `verify` and a real `run` refuse while
$CHAOS_DYNAMO_DRY_RUN is on (every chaos they start would inherit it), and an interrupted dry
run exits 130 like any interrupted run. No lab: each refusal comes before one is looked for."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from click.testing import CliRunner

from chaos_dynamo import cli, runner
from chaos_dynamo.clock import wait_until
from chaos_dynamo.safety import dryrun
from tests.conftest import ROOT

EXPERIMENT = ROOT / "experiments" / "endpoint-empty-smoke.json"


@pytest.fixture
def no_isolation(monkeypatch: pytest.MonkeyPatch) -> None:
    """`run` and `verify` strip this process's AWS settings before they look for a lab: not in a test."""
    from chaos_dynamo.verify import command

    monkeypatch.setattr(runner, "isolate_from_aws", lambda environ=None: None)
    monkeypatch.setattr(command, "isolate_from_aws", lambda environ=None: None)
    monkeypatch.setenv(dryrun.ENV, "")  # so that whatever a command sets is put back afterwards
    monkeypatch.delenv(dryrun.ENV)


@pytest.mark.parametrize("command", ["run", "verify"])
@pytest.mark.parametrize("value", ["1", "true", "yes-please"])
def test_a_real_run_refuses_while_the_dry_run_variable_is_on(no_isolation: None, tmp_path: Path, command: str,
                                                             value: str) -> None:
    no_lab = str(tmp_path / "no-lab.json")  # if the gate let it through: "no lab", exit 1 or 3, nothing run
    result = CliRunner().invoke(cli.main, [command, "--state-file", no_lab, str(EXPERIMENT)],
                                env={dryrun.ENV: value})
    assert result.exit_code == 2, result.output
    message = " ".join(result.output.split())
    assert f"${dryrun.ENV}: is set ({value!r})" in message
    assert f"unset {dryrun.ENV}" in message and "chaos-dynamo run --dry-run" in message


def test_a_dry_run_with_the_variable_on_is_not_refused(no_isolation: None, tmp_path: Path) -> None:
    result = CliRunner().invoke(cli.main, ["run", "--dry-run", "--state-file", str(tmp_path / "no-lab.json"),
                                           str(EXPERIMENT)], env={dryrun.ENV: "1"})
    assert result.exit_code == 1 and "no lab" in result.output, result.output  # it went on to look for the lab


def test_verify_refuses_an_experiment_that_declares_a_dry_run(no_isolation: None, tmp_path: Path) -> None:
    experiment = json.loads(EXPERIMENT.read_text(encoding="utf-8"))
    experiment.setdefault("configuration", {})[dryrun.CONFIG_KEY] = True
    path = tmp_path / "dry.json"
    path.write_text(json.dumps(experiment), encoding="utf-8")
    result = CliRunner().invoke(cli.main, ["verify", "--state-file", str(tmp_path / "no-lab.json"), str(path)],
                                env={dryrun.ENV: ""})
    assert result.exit_code == 2, result.output
    assert f"configuration.{dryrun.CONFIG_KEY}: declares a dry run" in " ".join(result.output.split())


def test_an_interrupted_dry_run_exits_130(no_isolation: None, monkeypatch: pytest.MonkeyPatch,
                                          tmp_path: Path) -> None:
    @contextmanager
    def lab(*args: Any) -> Iterator[tuple[Any, bool]]:
        yield SimpleNamespace(namespace=""), False

    def execute(planned: list[runner.Planned], *args: Any, interrupt: runner.Interrupt, **kwargs: Any) -> list[Any]:
        # Ctrl-C while chaos runs: the command's handler notes it (checked first: pytest's own
        # handler would end the session).
        assert signal.getsignal(signal.SIGINT) not in (signal.default_int_handler, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
        assert wait_until(interrupt.requested.is_set, timeout=30, interval=0.01)
        planned[0].journal.write_text(json.dumps({"status": "interrupted", "run": []}), encoding="utf-8")
        return [SimpleNamespace(interrupted=True, started=0.0)]

    monkeypatch.setattr(runner, "lab_for_run", lab)
    monkeypatch.setattr(runner, "execute", execute)
    monkeypatch.setattr(runner, "_timeline", lambda info, since: [])
    assert runner.run_experiment(EXPERIMENT, journal=tmp_path / "dry.json", dry_run=True) == runner.EXIT_INTERRUPTED
