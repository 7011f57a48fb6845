"""Shared fixtures: one real lab per test session (moto server, DNS, LB fleet on loopback)."""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from chaos_dynamo.config import load_topology
from chaos_dynamo.lab.lab import Lab
from chaos_dynamo.lab.state import LabInfo, write_state

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


@pytest.fixture(scope="session")
def lab() -> Iterator[Lab]:
    """A running lab with a short propagation delay, shared by the session's tests."""
    the_lab = Lab(load_topology(None, seed=11, propagation_delay=0.05, resync_interval=0.0))
    the_lab.start()
    try:
        yield the_lab
    finally:
        the_lab.stop()


@pytest.fixture(scope="session")
def lab_info(lab: Lab) -> LabInfo:
    return lab.info()


@pytest.fixture(scope="session")
def lab_state_file(lab_info: LabInfo, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("state") / "lab.json"
    write_state(lab_info, path)
    return path


@pytest.fixture
def lab_env(lab_info: LabInfo, lab_state_file: Path) -> dict[str, str]:
    """Environment for a subprocess that should reach the session's lab."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "CHAOS_DYNAMO_"))}
    return env | lab_info.env() | {"CHAOS_DYNAMO_STATE": str(lab_state_file)}


@pytest.fixture
def config(lab_info: LabInfo) -> dict[str, Any]:
    """Chaos Toolkit configuration pointing activities at the session's lab."""
    return {"chaos_dynamo_api": lab_info.api_url}


@pytest.fixture
def restore_after(config: dict[str, Any]) -> Iterator[None]:
    """Put every endpoint back after a test that breaks one."""
    yield
    from chaos_dynamo.endpoint.actions import restore_endpoint

    restore_endpoint(configuration=config)


def can_bind(kind: int, address: str, port: int) -> bool:
    """True when nothing holds ``address:port`` (a server that stopped left no listener)."""
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((address, port))
            return True
        except OSError:
            return False
