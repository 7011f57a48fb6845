"""The README's snippets run as written."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from chaos_dynamo.config import load_topology
from tests.conftest import BIN, ROOT, readme_snippet
from tests.integration._experiments import Session

pytestmark = pytest.mark.integration
README = (ROOT / "README.md").read_text(encoding="utf-8")



def test_readme_starts_with_the_two_commands() -> None:
    first_block = re.search(r"```bash\n(.*?)```", README, re.S)
    assert first_block is not None
    commands = [line.split("#")[0].strip() for line in first_block.group(1).splitlines()]
    assert commands == ["make run", "make test"]


def run_shell_snippet(name: str, workdir: Path) -> subprocess.CompletedProcess[str]:
    """The README's shell session ``name``, as written, in ``workdir`` (with the experiments),
    on a lab of its own (state file in ``workdir``) that is stopped whatever happens."""
    (workdir / "experiments").symlink_to(ROOT / "experiments")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "CHAOS_DYNAMO_"))}
    env |= {"PATH": f"{BIN}:{env.get('PATH', '')}", "CHAOS_DYNAMO_STATE": str(workdir / "lab.json")}
    script = "set -euo pipefail\ntrap 'chaos-dynamo lab down >/dev/null 2>&1 || true' EXIT\n" + readme_snippet(name)
    return subprocess.run(["bash", "-c", script], cwd=workdir, env=env, capture_output=True, text=True,
                          timeout=300)


def test_shell_session(tmp_path: Path) -> None:
    result = run_shell_snippet("lab-session", tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "chaos-dynamo-plans" in result.stdout  # list_tables through the lab
    assert "the hypothesis deviated, as intended" in result.stdout
    assert "lab stopped" in result.stdout
    assert not (tmp_path / "lab.json").exists()


def test_topology_example_is_valid(tmp_path: Path) -> None:
    path = tmp_path / "lab.toml"
    path.write_text(readme_snippet("topology"), encoding="utf-8")
    topology = load_topology(path)
    assert [lb.name for lb in topology.load_balancers] == ["lb-a", "lb-b"]
    assert topology.propagation_delay == 0.5


def test_python_shim_example(lab_env: dict[str, str]) -> None:
    result = subprocess.run([str(BIN / "python"), "-c", readme_snippet("python-shim")], env=lab_env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "chaos-dynamo-plans" in result.stdout


def test_retry_experiment_session(retry_session: Session) -> None:
    """The retry section's session as written: the naive service deviates, the user's own
    command (here the hardened reference service, run as a command) holds. The windows are
    shortened through the experiment's environment, as a CI job would. (The session runs
    once, in conftest.py; test_retry_experiment.py checks its journals.)"""
    result = retry_session
    assert result.returncode == 0, result.output_tail()
    assert [run["exit"] for run in result.runs] == [1, 0], result.output_tail()
    assert "the naive service storms: the hypothesis deviated" in result.stdout
    assert "'retry-amplification':" in result.stdout and "'attempts-per-call':" in result.stdout
    assert "lab stopped" in result.stdout
    assert not (result.workdir / "lab.json").exists()


def test_lease_experiment_session(lease_session: Session) -> None:
    """The lease section's session as written, with the experiment's default settings: the
    naive fleet collapses, the hypothesis deviates, and the journal has the verdict and the
    live-fraction timeline. (The session runs once, in conftest.py; test_lease_experiment.py
    and test_lease_calibration.py check its journal.)"""
    result = lease_session
    assert result.returncode == 0, result.output_tail()
    assert [run["exit"] for run in result.runs] == [1], result.output_tail()
    assert "the naive fleet collapsed: the hypothesis deviated" in result.stdout
    assert "collapsed over" in result.stdout, result.stdout[-3000:]
    fractions = re.search(r"^\[(1\.0, .*)\]$", result.stdout, re.M)
    assert fractions, result.stdout[-3000:]  # the timeline starts fully live...
    assert float(fractions.group(1).split(", ")[-1]) < 0.2  # ...and ends collapsed
    assert "lab stopped" in result.stdout
    assert not (result.workdir / "lab.json").exists()


def test_failover_experiment_session(failover_session: Session) -> None:
    """The failover section's session as written, with the experiment's default settings: the
    naive controller flaps, the hypothesis deviates, and the journal has the verdicts. (The
    session runs once, in conftest.py; test_failover_experiment.py checks its journal.)"""
    result = failover_session
    assert result.returncode == 0, result.output_tail()
    assert [run["exit"] for run in result.runs] == [1], result.output_tail()
    assert "the naive controller flapped: the hypothesis deviated" in result.stdout
    numbers = re.search(r"^flaps (\d+) min capacity ([\d.]+) oscillations (\d+)$", result.stdout, re.M)
    assert numbers, result.stdout[-3000:]
    assert int(numbers.group(1)) > 3 and float(numbers.group(2)) < 0.6 and int(numbers.group(3)) >= 1
    assert "lab stopped" in result.stdout
    assert not (result.workdir / "lab.json").exists()


def test_safety_session(tmp_path: Path) -> None:
    """The safety section's session as written: a lab with two namespaces, a dry run that
    prints the batches and sends none, the doctor finding nothing, the lab's digest."""
    result = run_shell_snippet("safety", tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "team-a" in result.stdout and "team-b" in result.stdout  # lab up's namespace lines
    batches = [line for line in result.stdout.splitlines()
               if line.startswith("chaos-dynamo dry-run: route53 ChangeResourceRecordSets")]
    assert len(batches) == 4  # the empty (one endpoint), the restore (three endpoints)
    assert "nothing was sent" in result.stdout
    assert "doctor: nothing left over" in result.stdout
    assert re.search(r"^[0-9a-f]{64}$", result.stdout, re.M)  # lab digest
    assert "lab stopped" in result.stdout
    assert not (tmp_path / "lab.json").exists()
