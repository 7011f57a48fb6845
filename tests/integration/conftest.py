"""The README's experiment sessions, each run once per test session (30-50 s each).

test_readme.py checks what a session prints and leaves behind; the experiment's own tests
(test_retry_experiment.py, test_lease_experiment.py, test_lease_calibration.py,
test_failover_experiment.py) check the journals of its runs and what the lab said around
each, recorded by the session's ``chaos`` (see _experiments.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from chaos_dynamo.lab.state import LabInfo
from tests.integration._experiments import RETRY_WINDOWS, Session, readme_session, session_lab_run
from tests.integration._lease_runs import EXPERIMENT as LEASE_EXPERIMENT


@pytest.fixture(scope="session")
def retry_session(tmp_path_factory: pytest.TempPathFactory) -> Session:
    """The retry section's session, windows shortened: the naive service, then ``orders``
    (the hardened reference service run as the user's own command)."""
    return readme_session("retry-experiment", tmp_path_factory.mktemp("readme-retry"), RETRY_WINDOWS)


@pytest.fixture(scope="session")
def lease_session(tmp_path_factory: pytest.TempPathFactory) -> Session:
    """The lease section's session with the experiment's defaults: the naive fleet."""
    return readme_session("lease-experiment", tmp_path_factory.mktemp("readme-lease"))


@pytest.fixture(scope="session")
def failover_session(tmp_path_factory: pytest.TempPathFactory) -> Session:
    """The failover section's session with the experiment's defaults: the naive controller."""
    return readme_session("failover-experiment", tmp_path_factory.mktemp("readme-failover"))


@pytest.fixture(scope="session")
def lease_journals(lease_session: Session, lab_info: LabInfo, lab_state_file: Path,
                   tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """The lease experiment's journal per fleet: the naive one from the README session, the
    hardened one from a run on the session lab."""
    hardened = session_lab_run(LEASE_EXPERIMENT, "lease-hardened", "lease-exp-hardened", lab_info, lab_state_file,
                               tmp_path_factory.mktemp("lease-hardened"))
    return {"naive": lease_session.journal(0), "hardened": hardened}
