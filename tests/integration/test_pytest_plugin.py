"""The pytest plugin as a team uses it: fixtures and experiment items, in a separate pytest."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest

from chaos_dynamo.clock import wait_until
from tests.conftest import BIN, ROOT

pytest_plugins = ["pytester"]
pytestmark = pytest.mark.integration

USER_TEST = '''
import boto3
import pytest
from botocore.exceptions import EndpointConnectionError

from chaos_dynamo.endpoint import actions


def client(lab):
    return boto3.client("dynamodb", endpoint_url=lab.dynamodb_url(), region_name=lab.region,
                        aws_access_key_id="x", aws_secret_access_key="x",
                        config=boto3.session.Config(retries={"max_attempts": 1}))


def test_reaches_dynamodb_by_name(chaos_dynamo_resolver):
    assert "chaos-dynamo-plans" in client(chaos_dynamo_resolver).list_tables()["TableNames"]


def test_sees_the_outage(chaos_dynamo_resolver):
    config = {"chaos_dynamo_api": chaos_dynamo_resolver.api_url}
    actions.empty_endpoint(configuration=config)
    try:
        with pytest.raises(EndpointConnectionError):
            client(chaos_dynamo_resolver).list_tables()
    finally:
        actions.restore_endpoint(configuration=config)
    assert client(chaos_dynamo_resolver).list_tables()["TableNames"]
'''


def test_fixtures_from_the_installed_plugin(tmp_path: Path) -> None:
    (tmp_path / "test_user_service.py").write_text(USER_TEST, encoding="utf-8")
    result = subprocess.run([str(BIN / "python"), "-m", "pytest", "-q", "-p", "no:cacheprovider",
                             "--chaos-dynamo-seed", "9", str(tmp_path)],
                            cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 passed" in result.stdout


# The sample project: a unit test, two tests using the helper fixtures, and experiments/
# with a quick experiment that passes and one whose steady state fails before the method
# (plain `chaos run` exits 0 on that one; the item must fail).
UNIT_TEST = "def test_addition():\n    assert 1 + 1 == 2\n"

HELPER_TESTS = '''
import subprocess
import sys


def test_outcome_for_custom_asserts(chaos_dynamo_experiment, tmp_path):
    outcome = chaos_dynamo_experiment("experiments/failing-baseline.json", journal_dir=tmp_path)
    assert outcome.status == "failed", outcome.headline
    assert [f.activity for f in outcome.failures if f.phase == "before"] == ["endpoint-has-1000-addresses"]
    assert outcome.journal == tmp_path / "failing-baseline.json" and outcome.journal.exists()


def test_subprocess_reaches_the_lab_by_name(chaos_dynamo_env, chaos_dynamo_lab):
    # The endpoint's DNS name resolves only through the lab DNS, which the env's
    # CHAOS_DYNAMO_DNS gives the subprocess (the shim booted from chaos-dynamo's .pth).
    code = ("import boto3, os; print(boto3.client('dynamodb', "
            "endpoint_url=os.environ['AWS_ENDPOINT_URL_DYNAMODB']).list_tables()['TableNames'])")
    out = subprocess.run([sys.executable, "-c", code], env=chaos_dynamo_env, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "chaos-dynamo-plans" in out.stdout
    assert chaos_dynamo_lab.primary_endpoint.name in chaos_dynamo_env["AWS_ENDPOINT_URL_DYNAMODB"]
'''

FAILING_PROBE = "endpoint-has-1000-addresses"
FAILING_TOLERANCE = {"type": "range", "range": [1000, 2000]}


def failing_baseline() -> dict[str, Any]:
    """The smoke experiment with a steady state no lab meets: a thousand addresses."""
    data: dict[str, Any] = json.loads((ROOT / "experiments" / "endpoint-empty-smoke.json").read_text())
    data["title"] = "A baseline that never holds"
    data["tags"] = ["baseline-check"]
    data["extensions"] = [{"name": "chaos-dynamo", "expect": "hold"}]
    data["steady-state-hypothesis"]["probes"] = [{
        "type": "probe", "name": FAILING_PROBE, "tolerance": FAILING_TOLERANCE,
        "provider": {"type": "python", "module": "chaos_dynamo.endpoint.probes",
                     "func": "endpoint_addresses", "arguments": {"endpoint": "${endpoint}"}}}]
    return data


def make_project(pytester: pytest.Pytester) -> Path:
    """The sample project (tests in tests/, experiments in experiments/, outside testpaths:
    the opt-in alone brings them in), plus broken/ with two invalid experiments."""
    smoke = (ROOT / "experiments" / "endpoint-empty-smoke.json").read_text()
    bad_expect = json.loads(smoke)
    bad_expect["extensions"] = [{"name": "chaos-dynamo", "expect": "fail"}]
    files = {
        "tests/test_unit.py": UNIT_TEST,
        "tests/test_helpers.py": HELPER_TESTS,
        "experiments/endpoint-empty-smoke.json": smoke,
        "experiments/failing-baseline.json": json.dumps(failing_baseline(), indent=2),
        "experiments/notes.json.txt": "not an experiment",
        "experiments/settings.json": '{"retries": 3}',
        "broken/bad-expect.json": json.dumps(bad_expect),
        "broken/not-json.json": '{"title": "half an experiment",',
    }
    for name, text in files.items():
        (pytester.path / name).parent.mkdir(exist_ok=True)
        (pytester.path / name).write_text(text, encoding="utf-8")
    pytester.makeini("[pytest]\ntestpaths = tests\naddopts = --strict-markers -p no:cacheprovider\n"
                     "chaos_dynamo_experiments = experiments/*.json\n")
    return pytester.path


@pytest.mark.chaos
def test_experiments_run_beside_unit_tests(pytester: pytest.Pytester) -> None:
    project = make_project(pytester)
    result = pytester.runpytest_subprocess("-rA", "--junitxml", "junit.xml", "--chaos-dynamo-seed", "3",
                                           "--chaos-dynamo-journals", "out/journals", timeout=240)
    out = result.stdout.str()
    assert result.ret == 1, out + result.stderr.str()
    result.assert_outcomes(passed=4, failed=1)
    result.stdout.fnmatch_lines_random([
        "PASSED tests/test_unit.py::test_addition",
        "PASSED experiments/endpoint-empty-smoke.json::endpoint-empty-smoke",
        "FAILED experiments/failing-baseline.json::failing-baseline*",
        "PASSED tests/test_helpers.py::test_outcome_for_custom_asserts",
        "PASSED tests/test_helpers.py::test_subprocess_reaches_the_lab_by_name",
    ])
    assert "notes.json.txt" not in out and "settings.json" not in out

    # The failure reads as a verdict: headline, the failing probe with its value and tolerance.
    section = out[out.index("_ experiment failing-baseline.json _"):out.index("short test summary")]
    assert "FAILED: the steady state did not hold before the method" in section
    assert FAILING_PROBE in section and json.dumps(FAILING_TOLERANCE) in section
    assert "Traceback" not in section and "pytest_plugin.py" not in section
    junit = (project / "junit.xml").read_text()
    assert FAILING_PROBE in junit and "did not hold before the method" in junit

    journals = project / "out" / "journals"
    assert (journals / "endpoint-empty-smoke.json").exists() and (journals / "failing-baseline.json").exists()
    assert f"experiment journal(s) in {journals}" in out


def test_not_collected_without_the_opt_in(pytester: pytest.Pytester) -> None:
    make_project(pytester)
    # The whole project, experiments/ and broken/ included, is walked; no JSON is collected.
    result = pytester.runpytest_subprocess("--collect-only", "-q", "-o", "chaos_dynamo_experiments=", ".")
    assert result.ret == 0, result.stdout.str() + result.stderr.str()
    assert "3 tests collected" in result.stdout.str()
    assert ".json" not in result.stdout.str()


def test_command_line_opt_in_and_selection(pytester: pytest.Pytester) -> None:
    make_project(pytester)
    by_marker = pytester.runpytest_subprocess("--collect-only", "-q", "-o", "chaos_dynamo_experiments=",
                                              "--chaos-dynamo-experiments", "experiments", "-m", "experiment")
    assert by_marker.ret == 0, by_marker.stdout.str() + by_marker.stderr.str()
    by_marker.stdout.fnmatch_lines(["experiments/endpoint-empty-smoke.json::endpoint-empty-smoke",
                                    "experiments/failing-baseline.json::failing-baseline",
                                    "2/5 tests collected (3 deselected)*"])
    # -k matches an experiment's file name and its tags.
    by_tag = pytester.runpytest_subprocess("--collect-only", "-q", "-k", "baseline-check or smoke")
    by_tag.stdout.fnmatch_lines(["experiments/endpoint-empty-smoke.json::endpoint-empty-smoke",
                                 "experiments/failing-baseline.json::failing-baseline",
                                 "2/5 tests collected (3 deselected)*"])
    # Paths on the command line select as usual: the ini opt-in does not add experiments to them.
    explicit = pytester.runpytest_subprocess("--collect-only", "-q", "tests/test_unit.py")
    assert "1 test collected" in explicit.stdout.str(), explicit.stdout.str()


def test_invalid_experiment_is_a_collection_error(pytester: pytest.Pytester) -> None:
    make_project(pytester)
    result = pytester.runpytest_subprocess("--collect-only", "-q", "--chaos-dynamo-experiments", "broken")
    out = result.stdout.str()
    assert result.ret == 2, out + result.stderr.str()
    assert "ERROR broken/bad-expect.json" in out and "ERROR broken/not-json.json" in out
    assert "'fail' is not known; use one of ['deviate', 'hold']" in out
    assert "is not valid JSON" in out and "fix the syntax" in out
    missing = pytester.runpytest_subprocess("--collect-only", "--chaos-dynamo-experiments", "nowhere/*.json")
    assert missing.ret == 4 and "matches no file" in missing.stderr.str(), missing.stderr.str()


@pytest.mark.chaos
def test_ctrl_c_rolls_back_and_stops_the_session(pytester: pytest.Pytester) -> None:
    make_project(pytester)
    held = json.loads((ROOT / "experiments" / "endpoint-empty-smoke.json").read_text())
    # The outage is held inside chaos (a python action), so Ctrl-C leaves no child behind.
    held["method"] = [{"type": "action", "name": "hold-the-outage", "provider": {
        "type": "python", "module": "chaos_dynamo.endpoint.actions", "func": "empty_endpoint_for",
        "arguments": {"seconds": 60}}}]
    (pytester.path / "held").mkdir()
    (pytester.path / "held" / "a-held-open.json").write_text(json.dumps(held))
    (pytester.path / "held" / "b-next.json").write_text(json.dumps(failing_baseline()))
    process = pytester.popen([str(BIN / "python"), "-m", "pytest", "-p", "no:cacheprovider",
                              "--chaos-dynamo-experiments", "held", "held"],
                             stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    log = pytester.path / "journals" / "a-held-open.log"
    try:
        held_open = wait_until(lambda: log.exists() and "Action: hold-the-outage" in log.read_text(), timeout=60)
    finally:
        process.send_signal(signal.SIGINT)  # Ctrl-C; also the cleanup when the wait failed
        try:
            out, _ = process.communicate(timeout=120)
        finally:
            if process.poll() is None:
                process.kill()
    assert held_open, out
    assert process.returncode == 2, out
    assert "KeyboardInterrupt: INTERRUPTED: the run did not finish; the endpoint is restored" in out
    assert "no tests ran" in out and not (pytester.path / "journals" / "b-next.json").exists()
    assert json.loads((pytester.path / "journals" / "a-held-open.json").read_text())["status"] == "interrupted"
