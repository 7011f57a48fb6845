"""The CI templates (docs/ci/): their structure, and their steps run on this machine.

The hosted runners are not here, but the commands are: each job's shell steps run with bash
in a sample project, in order, with the runner's rules for what runs after a failure
(GitHub: only ``if: always()`` steps; GitLab: ``after_script`` always). The install step
installs chaos-dynamo from this working tree into a fresh venv in tmp, without dependencies
and without the network (they come from the repo's venv through a ``.pth`` file), so the
``chaos-dynamo`` the later steps run is the one the template installed. ``uses:`` steps
(checkout, setup-python, upload-artifact) are the hosted runner's: they are checked, not run.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import sysconfig
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import BIN, ROOT

pytestmark = pytest.mark.integration

TEMPLATES = ROOT / "docs" / "ci"
SMOKE = ROOT / "experiments" / "endpoint-empty-smoke.json"
VERIFY_OUTPUTS = ("--junit reports/junit.xml", "--report reports/report.html", "--summary reports/summary.md")


def github_workflow() -> dict[str, Any]:
    return dict(yaml.safe_load((TEMPLATES / "github-actions.yml").read_text()))


def github_job() -> dict[str, Any]:
    (job,) = github_workflow()["jobs"].values()
    return dict(job)


def gitlab_job() -> dict[str, Any]:
    (job,) = yaml.safe_load((TEMPLATES / "gitlab-ci.yml").read_text()).values()
    return dict(job)


def test_github_workflow_runs_on_a_schedule_and_uploads_always() -> None:
    workflow = github_workflow()
    triggers = workflow.get("on", workflow.get(True))  # YAML 1.1 (PyYAML) reads the key `on` as True
    assert set(triggers) == {"schedule", "workflow_dispatch"}
    (cron,) = [entry["cron"] for entry in triggers["schedule"]]
    assert len(cron.split()) == 5
    steps = github_job()["steps"]
    uses = {step["uses"].split("@")[0]: step for step in steps if "uses" in step}
    assert set(uses) == {"actions/checkout", "actions/setup-python", "actions/upload-artifact"}
    assert str(uses["actions/setup-python"]["with"]["python-version"]) == "3.11"
    upload = uses["actions/upload-artifact"]
    assert upload["if"] == "always()"
    assert upload["with"]["path"].split() == ["reports/", "journals/"]
    runs = [step["run"] for step in steps if "run" in step]
    assert '"${CHAOS_DYNAMO_SPEC:-chaos-dynamo}"' in runs[0]
    verify = [r for r in runs if r.startswith("chaos-dynamo verify")]
    assert len(verify) == 1 and all(option in verify[0] for option in VERIFY_OUTPUTS)
    (down,) = [step for step in steps if step.get("run") == "chaos-dynamo lab down"]
    assert down["if"] == "always()"
    assert steps.index(down) > steps.index(next(s for s in steps if s.get("run", "").startswith("chaos-dynamo verify")))
    assert github_job()["env"]["CHAOS_DYNAMO_SPEC"] == "${{ vars.CHAOS_DYNAMO_SPEC }}"


def test_gitlab_job_runs_on_schedules_and_web_and_keeps_artifacts_always() -> None:
    job = gitlab_job()
    sources = {re.search(r'== "(\w+)"', rule["if"]).group(1) for rule in job["rules"]}
    assert sources == {"schedule", "web"}
    assert job["image"].startswith("python:3.11")
    artifacts = job["artifacts"]
    assert artifacts["when"] == "always"
    assert artifacts["reports"]["junit"] == "reports/junit.xml"
    assert artifacts["paths"] == ["reports/", "journals/"]
    assert '"${CHAOS_DYNAMO_SPEC:-chaos-dynamo}"' in job["script"][0]
    assert job["script"][1] == "chaos-dynamo lab up --detach"
    assert all(option in job["script"][2] for option in VERIFY_OUTPUTS)
    assert job["after_script"] == ["chaos-dynamo lab down"]


@dataclass
class Job:
    """One job run on this machine: each step's exit code (None: skipped) and its output."""

    project: Path
    steps: list[tuple[str, int | None]] = field(default_factory=list)
    output: str = ""

    @property
    def green(self) -> bool:
        return all(rc in (0, None) for name, rc in self.steps if name != "after_script")

    def rc(self, fragment: str) -> int | None:
        (rc,) = [rc for name, rc in self.steps if fragment in name]
        return rc

    def lab_pids(self) -> list[int]:
        return [int(pid) for pid in re.findall(r"lab running in the background \(pid (\d+)\)", self.output)]


def bash(script: str, project: Path, env: dict[str, str]) -> tuple[int, str]:
    """A step's script, as the runners run it: bash, exit on the first failing command."""
    result = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", script], cwd=project,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=240)
    return result.returncode, f"$ {script}\n{result.stdout}"


def run_github(project: Path, env: dict[str, str]) -> Job:
    """The workflow's job: after a failed step only ``if: always()`` steps run."""
    job = Job(project)
    for step in github_job()["steps"]:
        if "uses" in step:
            continue
        name = step.get("name", step["run"])
        if not job.green and step.get("if") != "always()":
            job.steps.append((name, None))
            continue
        rc, out = bash(step["run"], project, env)
        job.steps.append((name, rc))
        job.output += out
    return job


def run_gitlab(project: Path, env: dict[str, str]) -> Job:
    """The job: ``script`` stops at its first failing command; ``after_script`` runs anyway,
    in its own shell, and does not change the job's status."""
    job = Job(project)
    spec = gitlab_job()
    for key in ("script", "after_script"):
        rc, out = bash("\n".join(spec[key]), project, env)
        job.steps.append((key, rc))
        job.output += out
    return job


def failing_baseline() -> dict[str, Any]:
    """The smoke experiment with a steady state no lab meets (a thousand addresses)."""
    data: dict[str, Any] = json.loads(SMOKE.read_text())
    data["title"] = "A baseline that never holds"
    data["extensions"] = [{"name": "chaos-dynamo", "expect": "hold"}]
    data["steady-state-hypothesis"]["probes"][0]["tolerance"] = {"type": "range", "range": [1000, 2000]}
    data["steady-state-hypothesis"]["probes"][0]["name"] = "endpoint-has-1000-addresses"
    return data


def sample_project(root: Path, experiments: dict[str, str]) -> Path:
    """A user's repository as the checkout step leaves it: experiments/ only."""
    (root / "experiments").mkdir(parents=True)
    for name, text in experiments.items():
        (root / "experiments" / name).write_text(text)
    return root


def ci_env(root: Path) -> dict[str, str]:
    """The runner's environment after setup-python: a fresh venv first on PATH, whose pip
    installs chaos-dynamo from this working tree, alone (its dependencies come from the
    repo's venv through a .pth file) and offline. The repo's venv is not on PATH."""
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=60)
    purelib = subprocess.run([str(venv / "bin" / "python"), "-c",
                              "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    Path(purelib, "repo-venv-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    path = [p for p in os.environ["PATH"].split(os.pathsep) if Path(p) != BIN]
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AWS_", "CHAOS_DYNAMO_", "PIP_", "VIRTUAL_ENV", "PYTHON"))}
    return env | {
        "PATH": os.pathsep.join([str(venv / "bin"), *path]),
        "CHAOS_DYNAMO_SPEC": str(ROOT),
        "PIP_NO_DEPS": "1",
        # pip reads "no-" switches from the environment inverted: 0 turns build isolation
        # off, so hatchling comes from the repo's venv instead of being downloaded.
        "PIP_NO_BUILD_ISOLATION": "0",
        "PIP_NO_INDEX": "1",
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        # The build imports hatch_build.py from the working tree: leave no __pycache__ there.
        "PYTHONDONTWRITEBYTECODE": "1",
    }


@dataclass
class Runs:
    github: Job
    gitlab: Job


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runs]:
    """Both templates' jobs, at the same time: GitHub's on a project whose second experiment
    fails its baseline (the job must go red and still stop the lab and keep the reports),
    GitLab's on a project with the smoke experiment only (the job must go green)."""
    smoke = SMOKE.read_text()
    red = sample_project(tmp_path_factory.mktemp("github"), {
        "endpoint-empty-smoke.json": smoke, "failing-baseline.json": json.dumps(failing_baseline())})
    green = sample_project(tmp_path_factory.mktemp("gitlab"), {"endpoint-empty-smoke.json": smoke})
    try:
        with ThreadPoolExecutor(max_workers=2) as pool:
            github = pool.submit(run_github, red, ci_env(red) | {"GITHUB_STEP_SUMMARY": str(red / "step-summary.md")})
            gitlab = pool.submit(run_gitlab, green, ci_env(green))
            yield Runs(github.result(), gitlab.result())
    finally:
        # A job cut short (a step timed out) may have left its lab up: the tests above have
        # recorded that; stop it here. "no lab is running" when the job stopped it itself.
        for project in (red, green):
            subprocess.run([str(BIN / "chaos-dynamo"), "lab", "down", "--state-file",
                            str(project / ".chaos-dynamo" / "lab.json")], capture_output=True, timeout=60)


def alive(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie, not yet reaped by init, has exited)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False


def running_processes_under(root: Path) -> list[str]:
    """Command lines of live processes that mention ``root`` (the job's venv or project)."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            text = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if str(root) in text:
            found.append(text)
    return found


def junit_cases(project: Path) -> dict[str, bool]:
    """Experiment (file stem) -> passed, from the job's JUnit XML (case names: "stem: title")."""
    tree = ET.parse(project / "reports" / "junit.xml")
    return {case.get("name", "").split(":")[0]: case.find("failure") is None and case.find("error") is None
            for case in tree.iter("testcase")}


@pytest.mark.chaos
def test_github_job_goes_red_on_a_failing_experiment(runs: Runs) -> None:
    job = runs.github
    assert job.rc("Install") == 0 and job.rc("Start the lab") == 0, job.output
    assert job.rc("Run the experiments") == 1, job.output
    assert not job.green
    assert job.rc("Stop the lab") == 0, job.output  # if: always()
    assert (job.project / "venv" / "bin" / "chaos-dynamo").exists()
    assert junit_cases(job.project) == {"endpoint-empty-smoke": True, "failing-baseline": False}
    assert "endpoint-has-1000-addresses" in (job.project / "reports" / "junit.xml").read_text()
    assert (job.project / "reports" / "report.html").stat().st_size > 0
    assert (job.project / "journals" / "failing-baseline.json").exists()
    summary = (job.project / "step-summary.md").read_text()  # verify fills $GITHUB_STEP_SUMMARY
    assert "failing-baseline" in summary and "endpoint-has-1000-addresses" in summary


@pytest.mark.chaos
def test_gitlab_job_goes_green_on_passing_experiments(runs: Runs) -> None:
    job = runs.gitlab
    assert job.steps == [("script", 0), ("after_script", 0)], job.output
    assert job.green
    assert junit_cases(job.project) == {"endpoint-empty-smoke": True}
    assert (job.project / "reports" / "report.html").stat().st_size > 0
    assert "endpoint-empty-smoke" in (job.project / "reports" / "summary.md").read_text()
    assert (job.project / "journals" / "endpoint-empty-smoke.json").exists()


@pytest.mark.chaos
@pytest.mark.parametrize("which", ["github", "gitlab"])
def test_lab_is_down_after_the_job(runs: Runs, which: str) -> None:
    job: Job = getattr(runs, which)
    (pid,) = job.lab_pids()
    assert not alive(pid), f"the lab (pid {pid}) outlived the job"
    assert not (job.project / ".chaos-dynamo" / "lab.json").exists()
    assert running_processes_under(job.project) == []
