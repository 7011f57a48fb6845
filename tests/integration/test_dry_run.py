"""Dry run on a real lab: `chaos-dynamo run --dry-run` and `CHAOS_DYNAMO_DRY_RUN=1 chaos run` print
the change batches and change nothing; a real run of the same experiment then sends exactly the
printed batches, as the lab's Route 53 front received them."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from chaos_dynamo.config import load_topology
from chaos_dynamo.lab.digest import state_digest
from chaos_dynamo.lab.lab import Lab
from chaos_dynamo.lab.state import LabInfo, write_state
from chaos_dynamo.route53.rules import change_from_api
from chaos_dynamo.runner import chaos_command
from chaos_dynamo.safety import dryrun
from tests.conftest import ROOT
from tests.integration.test_cli import cli

pytestmark = pytest.mark.integration

EXPERIMENT = ROOT / "experiments" / "endpoint-empty-smoke.json"


class FrontRecorder:
    """Every change batch the lab's Route 53 front accepted: (zone id, changes, comment); and
    every POST its control API (``/_chaos_dynamo/...``) received: (path, body)."""

    def __init__(self, lab: Lab) -> None:
        assert lab.route53 is not None and lab.front is not None
        self.batches: list[tuple[str, list[Any], str | None]] = []
        self.posts: list[tuple[str, Any]] = []
        front, control = lab.front, lab.front.control

        def recorded(method: str, path: str, query: dict[str, list[str]], body: Any) -> tuple[int, Any]:
            if method == "POST":
                self.posts.append((path, body))
            return control(method, path, query, body)

        front.control = recorded
        service = lab.route53
        real = service.change

        def change(zone_id: str, changes: list[Any], comment: str | None = None) -> Any:
            record = real(zone_id, changes, comment)
            self.batches.append((zone_id, list(changes), comment))
            return record

        service.change = change  # type: ignore[method-assign]


@pytest.fixture(scope="module")
def dry_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Lab, LabInfo, Path, FrontRecorder]]:
    lab = Lab(load_topology(None, seed=5, propagation_delay=0.05, resync_interval=0.0))
    info = lab.start()
    state = tmp_path_factory.mktemp("dry") / "lab.json"
    write_state(info, state)
    try:
        yield lab, info, state, FrontRecorder(lab)
    finally:
        lab.stop()


def printed_batches(text: str) -> list[tuple[str, list[Any], str | None]]:
    """The Route 53 batches a dry run printed, in the form the lab's front records them."""
    return [(params["HostedZoneId"], [change_from_api(c) for c in params["ChangeBatch"]["Changes"]],
             params["ChangeBatch"].get("Comment"))
            for service, operation, params in dryrun.parse(text)
            if (service, operation) == ("route53", "ChangeResourceRecordSets")]


def test_dry_run_prints_what_the_real_run_then_sends(dry_lab: tuple[Lab, LabInfo, Path, FrontRecorder],
                                                     tmp_path: Path) -> None:
    lab, info, state, front = dry_lab
    before = state_digest(info)
    dry = cli("run", "--dry-run", "--state-file", str(state), "--journal", str(tmp_path / "dry.json"),
              str(EXPERIMENT), timeout=240)
    assert dry.returncode == 0, dry.stdout[-3000:] + dry.stderr[-3000:]
    assert "dry run: nothing was sent" in dry.stdout
    batches = printed_batches(dry.stdout)
    # The method's empty (one DELETE batch), then the rollback's restore of every endpoint.
    assert [b[2] for b in batches] == [
        f"chaos-dynamo: empty {info.primary_endpoint.name} (delete active plan tree)"] + [
        f"chaos-dynamo: restore {ep.name} to plan 1" for ep in info.endpoints]
    assert {c.action for c in batches[0][1]} == {"DELETE"} and len(batches[0][1]) == len(info.load_balancers)
    assert front.batches == [] and state_digest(info) == before

    real = cli("run", "--state-file", str(state), "--journal", str(tmp_path / "real.json"), str(EXPERIMENT),
               timeout=240)
    assert real.returncode == 0, real.stdout[-3000:] + real.stderr[-3000:]
    assert dryrun.parse(real.stdout) == []
    assert front.batches == batches  # same order, same zones, same changes, same comments


def test_dry_run_by_environment_for_plain_chaos_run(dry_lab: tuple[Lab, LabInfo, Path, FrontRecorder],
                                                     tmp_path: Path) -> None:
    lab, info, state, front = dry_lab
    sent = len(front.batches)
    before = state_digest(info)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "CHAOS_DYNAMO_"))}
    env |= info.env() | {"CHAOS_DYNAMO_STATE": str(state), dryrun.ENV: "1"}
    run = subprocess.run([*chaos_command(), "--no-version-check", "--no-log-file", "run", "--journal-path",
                          str(tmp_path / "journal.json"), str(EXPERIMENT)],
                         capture_output=True, text=True, timeout=240, env=env, cwd=tmp_path)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    batches = printed_batches(run.stdout)
    assert len(batches) == 1 + len(info.endpoints)
    ok, lines = dryrun.summary(tmp_path / "journal.json")
    assert ok, lines
    assert len(front.batches) == sent and state_digest(info) == before


def test_the_configuration_key_alone_makes_every_lab_fault_dry(
        dry_lab: tuple[Lab, LabInfo, Path, FrontRecorder], monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """`"chaos_dynamo_dry_run": true` under a plain `chaos run` (no environment switch): not one
    POST or Route 53 change reaches the lab, from any LB, failover or endpoint action."""
    from chaos_dynamo.endpoint import actions as endpoint
    from chaos_dynamo.failover import actions as failover
    from chaos_dynamo.lbfleet import actions as lbfleet

    lab, info, state, front = dry_lab
    monkeypatch.delenv(dryrun.ENV, raising=False)
    lb, az = info.load_balancers[0]["name"], info.load_balancers[0]["az"]
    calls: dict[str, Callable[[dict[str, Any]], Any]] = {
        "set_lb_faults": lambda c: lbfleet.set_lb_faults(lb, down=True, configuration=c),
        "reset_lb_faults": lambda c: lbfleet.reset_lb_faults(configuration=c),
        "throttle_dynamodb": lambda c: lbfleet.throttle_dynamodb(0.5, configuration=c),
        "close_connections": lambda c: lbfleet.close_connections(configuration=c),
        "set_dynamodb_capacity": lambda c: lbfleet.set_dynamodb_capacity(2, 0.01, configuration=c),
        "reset_dynamodb_capacity": lambda c: lbfleet.reset_dynamodb_capacity(configuration=c),
        "slow_dynamodb_for": lambda c: lbfleet.slow_dynamodb_for(0.01, 0.5, configuration=c),
        "roll_out_targets": lambda c: failover.roll_out_targets(lb, stagger=0, gap=0, propagation=0,
                                                                 configuration=c),
        "fail_intermittently": lambda c: failover.fail_intermittently("", 0.5, configuration=c),
        "degrade_az": lambda c: failover.degrade_az(az, latency=0.5, seconds=0.01, configuration=c),
        "restore_targets": lambda c: failover.restore_targets(configuration=c),
        "empty_endpoint": lambda c: endpoint.empty_endpoint(configuration=c),
        "restore_endpoint": lambda c: endpoint.restore_endpoint(configuration=c),
        "empty_endpoint_for": lambda c: endpoint.empty_endpoint_for(30, configuration=c),
    }
    assert set(calls) == {*lbfleet.__all__, *failover.__all__, *endpoint.__all__}  # a new action joins the table
    config = {"chaos_dynamo_state": str(state), dryrun.CONFIG_KEY: True}
    posts, batches, before = len(front.posts), len(front.batches), state_digest(info)
    for name, call in calls.items():
        capsys.readouterr()
        call(config)
        assert dryrun.parse(capsys.readouterr().out), f"{name} printed no write"
        assert front.posts[posts:] == [] and front.batches[batches:] == [], f"{name} sent a write"
    assert state_digest(info) == before


def test_the_safety_net_is_never_dry(dry_lab: tuple[Lab, LabInfo, Path, FrontRecorder],
                                     monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """With $CHAOS_DYNAMO_DRY_RUN on (say, set in CI), the runner's safety net still restores for real."""
    from chaos_dynamo.endpoint import actions as endpoint
    from chaos_dynamo.lbfleet import actions as lbfleet
    from chaos_dynamo.runner import ensure_restored

    lab, info, state, front = dry_lab
    monkeypatch.delenv(dryrun.ENV, raising=False)
    before = state_digest(info)
    config = {"chaos_dynamo_state": str(state)}
    lbfleet.set_lb_faults(info.load_balancers[0]["name"], latency=0.05, configuration=config)
    endpoint.empty_endpoint(configuration=config)
    assert state_digest(info) != before
    monkeypatch.setenv(dryrun.ENV, "1")
    capsys.readouterr()
    safety = ensure_restored(info)
    assert dryrun.parse(capsys.readouterr().out) == []
    assert safety.roundtrip and safety.restored_by_runner and not safety.error, safety
    assert safety.restored == [info.primary_endpoint.name]
    assert state_digest(info) == before


def test_a_dry_run_leaves_faults_the_lab_already_had(dry_lab: tuple[Lab, LabInfo, Path, FrontRecorder],
                                                     tmp_path: Path) -> None:
    """A dry run sends nothing, not even the safety net's reset: a fault set before it (by
    someone else's run, or on purpose) is still there afterwards."""
    lab, info, state, front = dry_lab
    lab.fleet["lb-2"].set_latency(0.01)
    try:
        before = state_digest(info)
        dry = cli("run", "--dry-run", "--state-file", str(state), "--journal", str(tmp_path / "dry.json"),
                  str(EXPERIMENT), timeout=240)
        assert dry.returncode == 0, dry.stdout[-3000:] + dry.stderr[-3000:]
        assert lab.fleet["lb-2"].faults()["latency"] == 0.01
        assert state_digest(info) == before
    finally:
        lab.fleet["lb-2"].reset_faults()
