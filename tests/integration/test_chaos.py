"""The real `chaos` CLI on the lab: discovery, validation, the smoke experiment, Ctrl-C."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from chaos_dynamo.endpoint import probes
from chaos_dynamo.lab.state import LabInfo
from tests.conftest import BIN, ROOT, interrupt_once_empty

pytestmark = [pytest.mark.integration, pytest.mark.chaos]
EXPERIMENTS = sorted((ROOT / "experiments").glob("*.json"))
SMOKE = ROOT / "experiments" / "endpoint-empty-smoke.json"


def test_chaos_discover_lists_every_activity_with_types_and_docs(tmp_path: Path) -> None:
    out = tmp_path / "discovery.json"
    result = subprocess.run([str(BIN / "chaos"), "--no-version-check", "discover", "--no-system-info",
                             "--no-install", "--discovery-path", str(out), "chaos-dynamo"],
                            capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert result.returncode == 0, result.stderr + result.stdout
    activities = {a["name"]: a for a in json.loads(out.read_text())["activities"]}
    expected = {"empty_endpoint", "restore_endpoint", "endpoint_addresses", "endpoint_answer",
                "dynamodb_roundtrip", "set_lb_faults", "reset_lb_faults"}
    control = {  # chaos_dynamo.control.actions / probes: typed, so discovery names real types
        "start_control_plane", "stop_control_plane", "set_design", "arm_failpoint", "disarm_failpoints",
        "burst_planner", "stall_enactor", "slow_enactor", "run_race_scenario", "reset_control_plane",
        "restore_and_unstick", "active_generation", "generation_went_backwards", "control_plane_stuck",
        "enactor_states", "race_history"}
    retry = {  # issue 4: the retry hypotheses, the service under test, faults for them
        "retry_amplification", "attempts_per_call", "dns_query_storm", "recovery_herd", "backoff_shape",
        "backoff_growth", "backoff_jitter", "backoff_synchronized", "request_rate", "http_health",
        "http_status", "prometheus_metric", "seconds_to_healthy", "start_service", "stop_service",
        "service_running", "service_instances", "empty_endpoint_for", "close_connections", "throttle_dynamodb"}
    capacity = {"set_dynamodb_capacity", "reset_dynamodb_capacity", "slow_dynamodb_for"}  # the lab's DynamoDB capacity
    expected |= capacity
    lease = {"live_lease_fraction", "expired_lease_count", "seconds_to_live_fraction", "lease_goodput",
             "lease_collapse", "double_owned_leases", "lease_report", "expire_leases"}
    expected |= lease
    failover = {  # issue 6: probes over a name's answer history, and the faults that make targets flap
        "answer_flaps", "capacity_removed_per_minute", "min_capacity_fraction", "seconds_degraded",
        "failover_oscillations", "capacity_fraction", "record_changes", "failover_report",
        "roll_out_targets", "fail_intermittently", "degrade_az", "restore_targets"}
    expected |= failover
    assert expected | control | retry <= set(activities)
    for name in expected | control | retry:
        activity = activities[name]
        assert activity["doc"], f"{name} has no docstring"
        for arg in activity["arguments"]:
            assert "type" in arg, f"{name}({arg['name']}) is not annotated"
    for name in control | retry:
        activity = activities[name]
        assert activity["return_type"] != "object", name
        # prometheus_metric's labels (a mapping or null) have no portable type name.
        assert all(arg["type"] != "object" for arg in activity["arguments"] if arg["name"] != "labels"), name
        assert not {"configuration", "secrets"} & {arg["name"] for arg in activity["arguments"]}, name
    for name in lease:
        assert not {"configuration", "secrets"} & {arg["name"] for arg in activities[name]["arguments"]}, name
        assert all(arg["type"] != "object" for arg in activities[name]["arguments"]), name
    for name in failover:
        activity = activities[name]
        assert activity["return_type"] == "mapping", name
        assert all(arg["type"] != "object" for arg in activity["arguments"]), name
        assert not {"configuration", "secrets"} & {arg["name"] for arg in activity["arguments"]}, name
        assert activity["type"] == ("action" if name in {"roll_out_targets", "fail_intermittently", "degrade_az",
                                                         "restore_targets"} else "probe"), name
    assert {a["name"]: a["type"] for a in activities["roll_out_targets"]["arguments"]} == {
        "targets": "string", "stagger": "number", "gap": "number", "propagation": "number",
        "failure_rate": "number", "mode": "string", "seed": "integer"}
    assert activities["expire_leases"]["type"] == "action"
    assert activities["lease_collapse"]["return_type"] == "mapping"
    assert activities["live_lease_fraction"]["return_type"] == "number"
    for name in capacity:
        assert activities[name]["type"] == "action" and activities[name]["return_type"] == "mapping", name
        assert not {"configuration", "secrets"} & {arg["name"] for arg in activities[name]["arguments"]}, name
    assert {a["name"]: a["type"] for a in activities["slow_dynamodb_for"]["arguments"]} == {
        "seconds": "number", "service_time": "number"}
    # slots is an integer or null (unlimited), which has no portable type name.
    assert {a["name"]: a["type"] for a in activities["set_dynamodb_capacity"]["arguments"]} == {
        "slots": "object", "service_time": "number"}
    race = activities["run_race_scenario"]
    assert race["type"] == "action" and race["return_type"] == "mapping"
    assert {a["name"]: a["type"] for a in race["arguments"]} == {
        "design": "string", "seed": "integer", "lock_losses": "integer", "keep": "integer", "timeout": "number"}
    assert activities["generation_went_backwards"]["type"] == "probe"
    assert activities["generation_went_backwards"]["return_type"] == "boolean"
    assert activities["active_generation"]["return_type"] == "integer"
    assert activities["race_history"]["return_type"] == "list"


@pytest.mark.parametrize("path", EXPERIMENTS, ids=[p.name for p in EXPERIMENTS])
def test_every_experiment_validates(path: Path) -> None:
    result = subprocess.run([str(BIN / "chaos"), "--no-version-check", "--no-log-file", "validate", str(path)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr + result.stdout
    assert "experiment syntax and semantic look valid" in (result.stderr + result.stdout)


def test_plain_chaos_run_deviates_and_rolls_back(lab_env: dict[str, str], tmp_path: Path,
                                                config: dict[str, Any]) -> None:
    journal = tmp_path / "journal.json"
    result = subprocess.run([str(BIN / "chaos"), "--no-version-check", "--no-log-file", "run",
                             "--journal-path", str(journal), str(SMOKE)],
                            capture_output=True, text=True, timeout=300, env=lab_env, cwd=tmp_path)
    data = json.loads(journal.read_text())
    assert result.returncode == 1, "chaos exits 1 when the hypothesis deviates"
    assert data["deviated"] is True
    assert data["steady_states"]["before"]["steady_state_met"] is True
    after = {p["activity"]["name"]: p["output"] for p in data["steady_states"]["after"]["probes"]}
    assert after["endpoint-resolves"] == 0
    observed = next(r for r in data["run"] if r["activity"]["name"] == "what-resolvers-see")
    assert observed["output"]["rcode"] == "NOERROR" and observed["output"]["count"] == 0
    assert [r["status"] for r in data["rollbacks"]] == ["succeeded"]
    assert probes.endpoint_addresses(configuration=config) == 1


def test_chaos_dynamo_run_prints_the_verdict(lab_state_file: Path, tmp_path: Path) -> None:
    journal = tmp_path / "smoke.json"
    result = subprocess.run([str(BIN / "chaos-dynamo"), "run", str(SMOKE), "--journal", str(journal),
                             "--state-file", str(lab_state_file)],
                            capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "verdict: REPRODUCED" in result.stdout
    assert "NO ADDRESSES" in result.stdout  # the timeline shows the empty answers
    assert f"journal: {journal}" in result.stdout


def test_a_hold_experiment_that_deviates_fails_the_run(lab_state_file: Path, tmp_path: Path) -> None:
    experiment = json.loads(SMOKE.read_text())
    experiment["extensions"] = [{"name": "chaos-dynamo", "expect": "hold"}]
    path = tmp_path / "must-hold.json"
    path.write_text(json.dumps(experiment))
    result = subprocess.run([str(BIN / "chaos-dynamo"), "run", str(path), "--journal", str(tmp_path / "j.json"),
                             "--state-file", str(lab_state_file)],
                            capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert result.returncode == 1
    assert "verdict: DEVIATED" in result.stdout


def test_ctrl_c_mid_method_still_restores_the_endpoint(lab_info: LabInfo, lab_state_file: Path,
                                                       tmp_path: Path, config: dict[str, Any]) -> None:
    returncode, output = interrupt_once_empty(SMOKE, lab_info, lab_state_file, tmp_path)
    assert returncode != 0
    assert "INTERRUPTED" in output
    assert probes.endpoint_addresses(configuration=config) == 1
    assert probes.dynamodb_roundtrip(configuration=config) is True
