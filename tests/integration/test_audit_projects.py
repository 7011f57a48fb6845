"""`chaos-dynamo audit` on the sample projects of tests/data/audit_projects (README there lists
each one's known dependencies), through the real CLI: the session's lab for three of them,
a lab the audit starts itself for the one only the lab's logs can see.

The session-lab audits run with AWS settings of a real account in the audit's environment
(a profile, a session token, an STS endpoint, endpoint URLs ignored): the command must reach
the lab and nothing else all the same."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from chaos_dynamo.lab.state import LabInfo
from tests.conftest import BIN, ROOT
from tests.integration.test_audit_reference import audit

pytestmark = pytest.mark.integration

PROJECTS = Path("tests") / "data" / "audit_projects"
ON_THE_SESSION_LAB = ("east_default", "two_regions", "describe_before_put")


def real_account_settings(folder: Path) -> dict[str, str]:
    """What a developer's shell may hold: each would send a client past the lab (the STS
    endpoint and the config file's point at loopback ports nothing listens on)."""
    config = folder / "aws-config"
    config.write_text("[profile release]\nregion = us-east-1\nendpoint_url = http://127.0.0.1:9\n")
    return {"AWS_PROFILE": "release", "AWS_CONFIG_FILE": str(config), "AWS_SESSION_TOKEN": "not-the-lab",
            "AWS_ENDPOINT_URL_STS": "http://127.0.0.1:9", "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS": "true"}


@pytest.fixture(scope="module")
def docs(lab_state_file: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    out = tmp_path_factory.mktemp("audit-projects")
    found = {}
    for project in ON_THE_SESSION_LAB:
        result = audit(["--state-file", str(lab_state_file), "--static", str(PROJECTS / project),
                        "--json", str(out / f"{project}.json"), "--", sys.executable, str(PROJECTS / project / "app.py")],
                       extra_env=real_account_settings(out))
        assert result.returncode == 0, result.stderr
        found[project] = json.loads((out / f"{project}.json").read_text())
    return found


def summary(doc: dict[str, Any]) -> tuple[list[tuple[str, str, dict[str, int]]], dict[str, str]]:
    deps = [(d["key"], d["host"], d["operations"]) for d in doc["dependencies"]]
    return deps, {f["id"]: f["severity"] for f in doc["findings"]}


def test_default_config_in_us_east_1(docs: dict[str, dict[str, Any]], lab_info: LabInfo) -> None:
    doc = docs["east_default"]
    deps, findings = summary(doc)
    assert deps == [("dynamodb@us-east-1", lab_info.primary_endpoint.name,
                     {"PutItem": 3, "GetItem": 3, "CreateTable": 1})]
    assert doc["dependencies"][0]["endpoints"] == [lab_info.dynamodb_url()]  # not AWS's, whatever the shell said
    app = f"{PROJECTS.as_posix()}/east_default/app.py"
    assert findings == {
        "region-us-east-1-only:dynamodb:us-east-1": "high",
        "timeouts-missing:dynamodb:us-east-1": "high",
        f"static-region-us-east-1:dynamodb:{app}:archive_client": "high",
        f"static-timeouts-missing:dynamodb:{app}:archive_client": "high",
        f"static-retry-legacy:dynamodb:{app}:archive_client": "medium",
    }
    (settings,) = doc["dependencies"][0]["settings"]
    assert (settings["connect_timeout"], settings["connect_timeout_set"], settings["sites"]) == (
        60.0, False, [f"{app}:17"])
    assert [(c["line"], c["exercised"]) for c in doc["static"]["constructions"]] == [(13, False), (17, True)]
    assert doc["run"]["exit_code"] == 0 and doc["run"]["stopped"] == "exited"


def test_two_regions_with_timeouts_and_standard_retries_has_nothing_to_flag(docs: dict[str, dict[str, Any]]) -> None:
    deps, findings = summary(docs["two_regions"])
    assert [(key, ops) for key, _, ops in deps] == [("dynamodb@us-east-1", {"PutItem": 3, "CreateTable": 1}),
                                                    ("dynamodb@us-west-2", {"PutItem": 3, "CreateTable": 1})]
    assert findings == {}
    first, second = docs["two_regions"]["dependencies"]
    assert first["fallback"]["regions"] == ["us-west-2"] and second["fallback"]["regions"] == ["us-east-1"]
    settings = {(s["retry_mode"], s["max_attempts"], s["connect_timeout"], s["read_timeout"]) for s in first["settings"]}
    assert settings == {("standard", 3, 2.0, 5.0)}
    (construction,) = docs["two_regions"]["static"]["constructions"]
    assert construction["config"] == "variable CONFIG" and construction["exercised"]


def test_describe_table_before_every_put_is_flagged(docs: dict[str, dict[str, Any]]) -> None:
    deps, findings = summary(docs["describe_before_put"])
    assert [ops for _, _, ops in deps] == [{"DescribeTable": 5, "PutItem": 5, "CreateTable": 1}]
    assert findings == {"region-us-east-1-only:dynamodb:us-east-1": "high", "control-plane:dynamodb:us-east-1": "medium"}
    (control,) = [f for f in docs["describe_before_put"]["findings"] if f["rule"] == "control-plane"]
    assert "DescribeTable x4 made between data-plane calls (PutItem x5)" in control["evidence"]


def test_a_client_the_shim_cannot_hook_shows_in_the_labs_logs(tmp_path: Path) -> None:
    """raw_http on a lab the audit starts itself (nothing else runs there)."""
    env_state = tmp_path / "no-lab.json"
    result = audit(["--json", str(tmp_path / "raw.json"), "--fail-on", "medium", "--", sys.executable,
                    str(PROJECTS / "raw_http" / "app.py")], extra_env={"CHAOS_DYNAMO_STATE": str(env_state)})
    assert result.returncode == 1, result.stderr  # the us-east-1 pin is high
    assert "audit: starting a lab for this audit" in result.stderr and not env_state.exists()
    doc = json.loads((tmp_path / "raw.json").read_text())
    assert doc["run"]["lab"]["started_by_audit"]
    assert [(d["host"], d["seen_by"], d["operations"]) for d in doc["dependencies"]] == [
        ("dynamodb-fips.us-east-1.amazonaws.com", "lab DNS log only", {}),
        ("lab load balancers", "lab LB log only", {"ListTables": 1})]
    assert {f["id"]: f["severity"] for f in doc["findings"]} == {
        "region-us-east-1-only:dynamodb:us-east-1": "high", "dependency-uninstrumented:dynamodb:us-east-1": "low"}
    assert "no botocore client was logged" in doc["run"]["notes"][0]


def test_services_the_command_started_stop_with_the_lab_the_audit_started(tmp_path: Path) -> None:
    from chaos_dynamo.services.supervisor import group_members

    listing = tmp_path / "services.json"
    script = (f"{BIN / 'chaos-dynamo'} service start leftover -- sleep 300 >/dev/null && "
              f"{BIN / 'chaos-dynamo'} service list --json > {listing}")
    result = audit(["--json", str(tmp_path / "a.json"), "--", "bash", "-c", script],
                   extra_env={"CHAOS_DYNAMO_STATE": str(tmp_path / "no-lab.json")})
    assert result.returncode == 0, result.stderr
    (service,) = json.loads(listing.read_text())
    pids = [i["pid"] for i in service["instances"]]
    assert pids and not any(group_members(pid) for pid in pids), "the service outlived the audit's lab"
    assert json.loads((tmp_path / "a.json").read_text())["run"]["exit_code"] == 0


def test_a_state_file_naming_no_lab_is_an_infrastructure_error(tmp_path: Path) -> None:
    result = audit(["--state-file", str(tmp_path / "none.json"), "--", "true"])
    assert result.returncode == 3 and "error: no lab is running" in result.stderr


def test_static_only() -> None:
    result = audit(["--static", str(PROJECTS), "--mermaid", "-", "--fail-on", "high"])
    assert result.returncode == 1  # the archive client's us-east-1 literal and missing timeouts
    assert result.stdout.startswith("graph LR") and "static scan" in result.stdout


def test_ctrl_c_during_the_outage_stops_the_command_and_restores_the_endpoint(
    lab_state_file: Path, lab_info: LabInfo, tmp_path: Path,
) -> None:
    """A second Ctrl-C while the command (which ignores SIGTERM) is being stopped does not
    cut the stop short: it is killed, and the report is written all the same.

    The audit starts with SIGINT ignored, as a shell starts a background job (`audit ... &`
    in a script, a CI step): Ctrl-C must work all the same (it once did nothing there, and
    the command ran to its --timeout)."""
    from chaos_dynamo.dns.client import query

    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "CHAOS_DYNAMO_"))}
    process = subprocess.Popen(
        ["bash", "-c", "trap '' INT; exec \"$@\"", "bash",
         str(BIN / "chaos-dynamo"), "audit", "--state-file", str(lab_state_file), "--timeout", "60", "--outage", "60",
         "--outage-after", "0.2", "--json", str(tmp_path / "a.json"), "--", "bash", "-c", "trap '' TERM; sleep 60"],
        cwd=ROOT, env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    try:
        assert process.stderr is not None
        for line in process.stderr:
            if "answers no addresses" in line:
                break
        assert not query(lab_info.dns, lab_info.primary_endpoint.name).addresses
        process.send_signal(signal.SIGINT)
        for line in process.stderr:
            if "interrupted: stopping the command" in line:
                break
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=60) == 130
    finally:
        if process.poll() is None:
            process.kill()
    assert query(lab_info.dns, lab_info.primary_endpoint.name).addresses
    run = json.loads((tmp_path / "a.json").read_text())["run"]
    assert run["stopped"] == "interrupted" and run["outage"]["restored"] and run["duration"] < 30
    assert run["exit_code"] == -signal.SIGKILL
