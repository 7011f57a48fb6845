"""``chaos-dynamo verify`` end to end: the real chaos CLI, a real lab per experiment.

One verify run (module-scoped, reused by every assertion) over copies of the smoke experiment
and two samples that `chaos run` passes although they test nothing: a baseline that fails
before the method, and a method action that raises. Every verify here runs with AWS settings
that point at a real account (:data:`REAL_AWS`): the smoke experiment passing is the proof
that none reaches verify, its labs or chaos. Then what plain `chaos run` says about the
failing baseline (exit 0: why the gate exists), bad input (exit 2, nothing runs), Ctrl-C
(exit 130, the running experiment's lab restored, JUnit for what ran), and SIGKILL (its
labs stop by themselves).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import junitparser
import pytest
import xmlschema

from chaos_dynamo.clock import wait_until
from tests.conftest import BIN, ROOT, readme_snippet

pytestmark = [pytest.mark.integration, pytest.mark.chaos]

SAMPLES = ROOT / "tests" / "data" / "experiments"
SMOKE = ROOT / "experiments" / "endpoint-empty-smoke.json"
SCHEMA = ROOT / "tests" / "data" / "junit.xsd"
NAMES = ["action-raises", "endpoint-empty-smoke", "failing-baseline"]
REAL_AWS = {"AWS_ENDPOINT_URL_DYNAMODB": "https://dynamodb.us-east-1.amazonaws.com", "AWS_PROFILE": "prod",
            "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS": "true"}
"""A developer's shell aimed at production. Were any of it to reach a process verify runs,
the smoke experiment would fail: the profile does not exist here (boto3 refuses every
client), the endpoint is not the lab's, and the last variable makes clients ignore the
lab's AWS_ENDPOINT_URL*. No request leaves the machine either way: there is no route."""


def clean_env(work: Path) -> dict[str, str]:
    """No lab in the environment (verify must start a lab of its own per experiment), and
    the caller's AWS settings aimed at a real account (:data:`REAL_AWS`)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "CHAOS_DYNAMO_", "GITHUB_"))}
    return env | REAL_AWS | {"GITHUB_STEP_SUMMARY": str(work / "step-summary.md")}


@dataclass
class Run:
    work: Path
    code: int
    stdout: str
    stderr: str

    @property
    def journals(self) -> Path:
        return self.work / "journals"

    def junit(self) -> ET.Element:
        return ET.parse(self.work / "reports" / "junit.xml").getroot()

    def case(self, stem: str) -> ET.Element:
        (case,) = [c for c in self.junit().iter("testcase") if (c.get("name") or "").startswith(f"{stem}: ")]
        return case



@pytest.fixture(scope="module")
def verified(tmp_path_factory: pytest.TempPathFactory) -> Run:
    """The README's verify snippet, as written, in a project whose experiments/ holds the smoke
    experiment and the two samples."""
    work = tmp_path_factory.mktemp("verify")
    experiments = work / "experiments"
    experiments.mkdir()
    for source in (SMOKE, SAMPLES / "failing-baseline.json", SAMPLES / "action-raises.json"):
        shutil.copy(source, experiments / source.name)
    (experiments / "settings.json").write_text('{"not": "an experiment"}')
    env = clean_env(work)
    env["PATH"] = f"{BIN}:{env.get('PATH', '')}"
    result = subprocess.run(["bash", "-c", "set -euo pipefail\n" + readme_snippet("verify")],
                            cwd=work, env=env, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stdout + result.stderr  # the snippet itself ran through
    code = re.search(r"^verify exited (\d+):", result.stdout, re.M)
    return Run(work, int(code.group(1)) if code else 0, result.stdout, result.stderr)


def test_a_failure_among_the_experiments_fails_the_gate(verified: Run) -> None:
    assert verified.code == 1, verified.stdout + verified.stderr
    assert "3 experiments in" in verified.stdout and "1 passed, 2 failed" in verified.stdout
    assert "skipped experiments/settings.json: not a Chaos Toolkit experiment" in verified.stdout + verified.stderr


def test_the_junit_xml_is_valid_and_names_the_failing_probe_tolerance_and_value(verified: Run) -> None:
    xmlschema.XMLSchema(str(SCHEMA)).validate(str(verified.work / "reports" / "junit.xml"))
    suite = verified.junit().find("testsuite")
    assert suite is not None and suite.get("name") == "chaos-dynamo"
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("3", "2", "0")
    assert verified.case("endpoint-empty-smoke").find("failure") is None
    assert verified.case("endpoint-empty-smoke").get("classname") == "chaos-dynamo.experiments"
    baseline = verified.case("failing-baseline").find("failure")
    assert baseline is not None and baseline.get("message") == (
        'endpoint-has-ipv6-addresses = 0 outside tolerance {"type": "range", "range": [1, 1000]} (before)')
    raised = verified.case("action-raises").find("failure")
    assert raised is not None
    assert raised.get("message") == ("empty-the-endpoint raised ConfigError: endpoint: "
                                     "'dynamodb.eu-west-1.amazonaws.com' is not an endpoint of the lab; use one of "
                                     "['dynamodb.us-east-1.amazonaws.com', 'dynamodb-fips.us-east-1.amazonaws.com', "
                                     "'dynamodb.us-east-1.api.aws'] (method)")
    assert "chaos status 'completed', exit 0" in (raised.text or "")  # chaos itself saw no problem


def test_junitparser_reads_the_counts_results_and_messages_verify_meant(verified: Run) -> None:
    """An independent JUnit consumer (junitparser), not only the hand-written schema."""
    (suite,) = list(junitparser.JUnitXml.fromfile(str(verified.work / "reports" / "junit.xml")))
    assert (suite.name, suite.tests, suite.failures, suite.errors, suite.skipped) == ("chaos-dynamo", 3, 2, 0, 0)
    cases = {case.name.split(":")[0]: case for case in suite}
    assert sorted(cases) == NAMES
    assert cases["endpoint-empty-smoke"].is_passed
    for name, phase in (("failing-baseline", "before"), ("action-raises", "method")):
        (result,) = cases[name].result
        assert isinstance(result, junitparser.Failure) and result.type == f"chaos-dynamo.{phase}"
        assert result.message == verified.case(name).find("failure").get("message")  # type: ignore[union-attr]
    assert cases["failing-baseline"].result[0].message.startswith("endpoint-has-ipv6-addresses = 0 outside")


def test_each_experiment_ran_on_its_own_lab_side_by_side(verified: Run) -> None:
    lines = verified.stdout.splitlines()
    started = [i for i, line in enumerate(lines) if "] started (own lab" in line]
    finished = [i for i, line in enumerate(lines) if " in " in line and line.startswith("[") and "] started" not in line]
    assert len(started) == 3 and len(finished) == 3
    assert started[1] < finished[0], "--jobs 2: the second started before the first finished"
    apis = {json.loads((verified.journals / f"{n}.lab.json").read_text())["lab"]["api_url"] for n in NAMES}
    assert len(apis) == 3
    for name in NAMES:
        assert (verified.journals / "labs" / name / "lab.log").exists()
        assert not (verified.journals / "labs" / name / "lab.json").exists(), "each lab was stopped"


def test_journals_logs_and_lab_timelines_are_written(verified: Run) -> None:
    for name in NAMES:
        journal = json.loads((verified.journals / f"{name}.json").read_text())
        assert journal["experiment"]["title"]
        assert "Running experiment" in (verified.journals / f"{name}.log").read_text()
        assert json.loads((verified.journals / f"{name}.lab.json").read_text())["version"] == 1
    assert "Running experiment" not in verified.stdout, "chaos's output goes to the logs, not the terminal"


def test_the_summary_and_the_report_are_written(verified: Run) -> None:
    summary = (verified.work / "reports" / "summary.md").read_text()
    assert "| `failing-baseline` | hold | ❌ failed |" in summary
    assert "| `endpoint-empty-smoke` | deviate | ✅ passed |" in summary
    assert (verified.work / "step-summary.md").read_text() == summary
    report = (verified.work / "reports" / "report.html").read_text()
    assert "failing-baseline" in report and "endpoint-has-ipv6-addresses" in report
    again = (verified.work / "reports" / "again.html").read_text()  # `chaos-dynamo report` on the journals
    assert all(f"journals/{name}.json" in again for name in NAMES)


def test_plain_chaos_run_passes_the_failing_baseline(lab_env: dict[str, str], tmp_path: Path) -> None:
    """The reason the gate exists: chaos exits 0 though the steady state never held."""
    journal = tmp_path / "journal.json"
    result = subprocess.run([str(BIN / "chaos"), "--no-version-check", "--no-log-file", "run", "--journal-path",
                             str(journal), str(SAMPLES / "failing-baseline.json")],
                            cwd=tmp_path, env=lab_env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    data = json.loads(journal.read_text())
    assert data["status"] == "completed" and data["steady_states"]["before"]["steady_state_met"] is False
    assert data["run"] == []


def test_on_a_shared_lab_disjoint_namespaces_run_as_one_batch(lab_state_file: Path, tmp_path: Path) -> None:
    """With a running lab, two experiments whose namespaces do not overlap run side by side
    on it, and are judged after one safety check."""
    result = subprocess.run([str(BIN / "chaos-dynamo"), "verify", str(SAMPLES / "failing-baseline.json"),
                             str(SAMPLES / "endpoint-holds.json"), "--jobs", "2", "--state-file", str(lab_state_file),
                             "--junit", "junit.xml"],
                            cwd=tmp_path, env=clean_env(tmp_path), capture_output=True, text=True, timeout=120)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "on the running lab" in result.stdout
    assert result.stdout.count("started (shared lab, batch of 2)") == 2
    cases = {c.get("name", "").split(":")[0]: c for c in ET.parse(tmp_path / "junit.xml").iter("testcase")}
    assert cases["endpoint-holds"].find("failure") is None
    assert cases["failing-baseline"].find("failure") is not None
    assert not (tmp_path / "journals" / "labs").exists(), "no lab of its own was started"


def test_bad_input_exits_2_and_runs_nothing(tmp_path: Path) -> None:
    (tmp_path / "gate").mkdir()
    shutil.copy(SMOKE, tmp_path / "gate" / SMOKE.name)
    bad = json.loads((SAMPLES / "failing-baseline.json").read_text())
    bad["extensions"][0]["namespaces"] = "endpoint"
    (tmp_path / "gate" / "z-bad.json").write_text(json.dumps(bad))
    result = subprocess.run([str(BIN / "chaos-dynamo"), "verify", "gate", "--junit", "junit.xml"], cwd=tmp_path,
                            env=clean_env(tmp_path), capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "z-bad.json: extensions[chaos-dynamo].namespaces: 'endpoint' is not a list of names" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gate"], "no journal, no lab, no JUnit"


def test_ctrl_c_restores_the_running_experiment_and_reports_what_ran(tmp_path: Path) -> None:
    """Ctrl-C during the first of two experiments: chaos gets one SIGINT and stops, the
    safety net restores the endpoint on its lab, the second experiment never starts, the
    JUnit has the first as interrupted, and verify exits 130."""
    (tmp_path / "gate").mkdir()
    slow = json.loads(SMOKE.read_text())
    slow["method"].append({"type": "action", "name": "hold-the-outage",
                           "provider": {"type": "process", "path": "sleep", "arguments": "30"}})
    (tmp_path / "gate" / "a-slow.json").write_text(json.dumps(slow))
    shutil.copy(SAMPLES / "failing-baseline.json", tmp_path / "gate" / "b-next.json")
    process = subprocess.Popen([str(BIN / "chaos-dynamo"), "verify", "gate", "--junit", "junit.xml"],
                               cwd=tmp_path, env=clean_env(tmp_path), stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, start_new_session=True)
    log = tmp_path / "journals" / "a-slow.log"
    try:
        holding = wait_until(lambda: log.exists() and "hold-the-outage" in log.read_text(), timeout=90, interval=0.1)
        assert holding, "the experiment never reached its long action"
        os.killpg(process.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
        output, _ = process.communicate(timeout=150)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130, output
    assert "interrupted: no new experiment starts" in output and "not started (interrupted): b-next" in output
    cases = ET.parse(tmp_path / "junit.xml").getroot().findall("testsuite/testcase")
    assert [c.get("name", "").split(":")[0] for c in cases] == ["a-slow"]
    error = cases[0].find("error")
    assert error is not None and error.get("type") == "chaos-dynamo.interrupted"
    assert json.loads((tmp_path / "journals" / "a-slow.json").read_text())["status"] == "interrupted"
    # chaos skips the rollbacks of an interrupted run; the safety net put the endpoint back.
    assert "INTERRUPTED: the run did not finish; the endpoint is restored" == error.get("message")
    assert "chaos-dynamo's safety net restored them (the experiment's rollback did not): ok" in (error.text or "")
    assert not (tmp_path / "journals" / "labs" / "a-slow" / "lab.json").exists(), "its lab was stopped"
    assert not (tmp_path / "journals" / "b-next.json").exists()


def test_a_killed_verify_leaves_no_lab_running(tmp_path: Path) -> None:
    """SIGKILL (no handler runs, no finally) mid-experiment: verify's own lab notices that
    verify is gone and stops by itself, with the services of its experiment."""
    (tmp_path / "gate").mkdir()
    slow = json.loads(SMOKE.read_text())
    slow["method"].append({"type": "action", "name": "hold-the-outage",
                           "provider": {"type": "process", "path": "sleep", "arguments": "30"}})
    (tmp_path / "gate" / "a-slow.json").write_text(json.dumps(slow))
    process = subprocess.Popen([str(BIN / "chaos-dynamo"), "verify", "gate"], cwd=tmp_path, env=clean_env(tmp_path),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    log, state = tmp_path / "journals" / "a-slow.log", tmp_path / "journals" / "labs" / "a-slow" / "lab.json"
    chaos: list[int] = []
    try:
        holding = wait_until(lambda: log.exists() and "hold-the-outage" in log.read_text(), timeout=90, interval=0.1)
        assert holding, "the experiment never reached its long action"
        lab = json.loads(state.read_text())["pid"]
        chaos = _processes_with(str(tmp_path / "journals" / "a-slow.json"))
        process.kill()
        process.wait(timeout=10)
        assert wait_until(lambda: not _alive(lab), timeout=60, interval=0.1), "the lab outlived verify"
        assert "is gone: stopping" in (state.with_suffix(".log")).read_text()
        assert not state.exists(), "the lab removed its state file"
    finally:
        if process.poll() is None:
            process.kill()
        for pid in chaos:  # the orphaned chaos run of this test, by its own pid
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie waiting for init to reap it is not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] not in ("Z", "X")
    except (OSError, IndexError):
        return False


def _processes_with(argument: str) -> list[int]:
    """Pids of the live processes whose command line holds ``argument`` (a path unique to a test)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if argument.encode() in (entry / "cmdline").read_bytes().split(b"\0"):
                found.append(int(entry.name))
        except OSError:
            continue
    return found
