"""The stale-plan race experiments through the real `chaos` CLI and `chaos-dynamo run`."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from chaos_dynamo.control import probes
from chaos_dynamo.endpoint import probes as endpoint_probes
from chaos_dynamo.lab.lab import Lab
from chaos_dynamo.lab.state import LabInfo
from tests.conftest import BIN, ROOT, interrupt_once_empty

pytestmark = [pytest.mark.integration, pytest.mark.chaos]
RACE = ROOT / "experiments" / "dns-stale-plan-race.json"
FENCED = ROOT / "experiments" / "dns-stale-plan-fenced.json"


@pytest.fixture(autouse=True)
def clean_baseline(lab: Lab) -> Iterator[None]:
    yield
    assert lab.control_plane is not None
    lab.control_plane.reset()  # plan 1 everywhere, as the rest of the suite expects


def chaos_run(experiment: Path, env: dict[str, str], tmp_path: Path) -> tuple[int, dict[str, Any], str]:
    journal = tmp_path / "journal.json"
    result = subprocess.run([str(BIN / "chaos"), "--no-version-check", "--no-log-file", "run",
                             "--journal-path", str(journal), str(experiment)],
                            capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    return result.returncode, json.loads(journal.read_text()), result.stdout + result.stderr


def method_outputs(journal: dict[str, Any]) -> dict[str, Any]:
    return {r["activity"]["name"]: r.get("output") for r in journal["run"]}


def test_chaos_run_of_the_race_deviates_and_records_it(lab_env: dict[str, str], lab_info: LabInfo,
                                                       tmp_path: Path, config: dict[str, Any]) -> None:
    code, journal, output = chaos_run(RACE, lab_env, tmp_path)
    assert code == 1, output  # chaos exits 1 when the hypothesis deviates
    assert journal["deviated"] is True and journal["status"] == "completed"
    assert journal["steady_states"]["before"]["steady_state_met"] is True
    after = {p["activity"]["name"]: p["output"] for p in journal["steady_states"]["after"]["probes"]}
    assert after["endpoint-resolves"] == 0
    seen = method_outputs(journal)
    assert seen["enactor-race-naive"]["race_reproduced"] is True
    assert seen["what-resolvers-see"] == {"name": lab_info.primary_endpoint.name, "rcode": "NOERROR",
                                          "addresses": [], "count": 0}
    assert seen["active-generation-in-route53"] == 5
    assert any("active generation 10 -> 5 (WENT BACKWARDS)" in line for line in seen["race-history-summary"])
    assert seen["control-plane-stuck"] is True
    # chaostoolkit-aws reads the same hosted zone through the lab's AWS endpoint, offline.
    zone = seen["hosted-zone-as-chaostoolkit-aws-sees-it"]["HostedZone"]
    assert zone["Name"] == "us-east-1.amazonaws.com." and zone["Id"].endswith(lab_info.primary_endpoint.zone_id)
    assert [r["status"] for r in journal["rollbacks"]] == ["succeeded"] * 3
    assert endpoint_probes.endpoint_addresses(configuration=config) == 1
    assert probes.control_plane_stuck(configuration=config) is False


def test_chaos_run_of_the_fenced_race_holds(lab_env: dict[str, str], tmp_path: Path,
                                            config: dict[str, Any]) -> None:
    code, journal, output = chaos_run(FENCED, lab_env, tmp_path)
    assert code == 0, output
    assert journal["deviated"] is False and journal["status"] == "completed"
    assert journal["steady_states"]["after"]["steady_state_met"] is True
    seen = method_outputs(journal)
    assert seen["enactor-race-fenced"]["held"] is True
    assert seen["enactor-race-fenced"]["enactors"]["enactor-c"] == "done"
    assert seen["active-generation-in-route53"] == 11
    assert seen["what-resolvers-see"]["count"] == 1
    assert any("_generation.dynamodb.us-east-1.amazonaws.com." in line for line in seen["race-history-summary"])


def test_chaos_dynamo_run_reproduces_the_race(lab_state_file: Path, tmp_path: Path) -> None:
    journal = tmp_path / "race.json"
    result = subprocess.run([str(BIN / "chaos-dynamo"), "run", str(RACE), "--journal", str(journal),
                             "--state-file", str(lab_state_file)],
                            capture_output=True, text=True, timeout=300, cwd=tmp_path)
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert "verdict: REPRODUCED" in out
    assert "exit 1; expected to deviate" in out
    # The timeline: the generation going backwards in Route 53, the empty DNS answer, the restore.
    assert "Route 53  active generation 1 -> 10 (enactor-b)" in out
    assert "Route 53  active generation 10 -> 5 (enactor-a)  WENT BACKWARDS" in out
    assert "NO ADDRESSES" in out
    assert "refused enactor-c's plan 11 (3x)" in out
    assert "active generation 5 -> 11 (operator)" in out
    assert f"journal: {journal}" in out


def test_ctrl_c_mid_race_still_restores_and_unsticks(lab_info: LabInfo, lab_state_file: Path, tmp_path: Path,
                                                     config: dict[str, Any]) -> None:
    returncode, output = interrupt_once_empty(RACE, lab_info, lab_state_file, tmp_path)
    assert returncode != 0
    assert "INTERRUPTED" in output
    assert endpoint_probes.endpoint_addresses(configuration=config) == 1
    assert endpoint_probes.dynamodb_roundtrip(configuration=config) is True
    assert probes.control_plane_stuck(configuration=config) is False, output
    assert probes.enactor_states(configuration=config)["enactor-c"]["phase"] != "stuck"
