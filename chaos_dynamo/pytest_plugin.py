"""pytest fixtures for resilience tests beside a team's unit tests.

Installed with the package (entry point ``pytest11``), so any project with chaos-dynamo
installed can write::

    def test_my_service_survives(chaos_dynamo_lab, chaos_dynamo_resolver):
        client = boto3.client("dynamodb", endpoint_url=chaos_dynamo_lab.dynamodb_url(), ...)

``chaos_dynamo_lab`` starts one lab for the test session (seed from ``--chaos-dynamo-seed``)
and yields its :class:`~chaos_dynamo.lab.state.LabInfo`; ``chaos_dynamo_resolver`` makes
the lab's names resolve through the lab DNS inside one test.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from chaos_dynamo.lab.state import LabInfo


def pytest_addoption(parser: Any) -> None:
    group = parser.getgroup("chaos-dynamo")
    group.addoption("--chaos-dynamo-seed", type=int, default=0,
                    help="seed of the lab started by the chaos_dynamo_lab fixture (default 0)")


@pytest.fixture(scope="session")
def chaos_dynamo_lab(request: Any) -> Iterator[LabInfo]:
    """A lab (embedded moto, DNS, LB fleet) running for the whole test session."""
    from chaos_dynamo.config import load_topology
    from chaos_dynamo.lab.lab import Lab

    seed = request.config.getoption("--chaos-dynamo-seed")
    lab = Lab(load_topology(None, seed=seed))
    try:
        yield lab.start()
    finally:
        lab.stop()


@pytest.fixture
def chaos_dynamo_resolver(chaos_dynamo_lab: LabInfo) -> Iterator[LabInfo]:
    """Inside the test, the lab's names resolve through the lab DNS (``getaddrinfo`` shim)."""
    from chaos_dynamo.shim import lab_resolver

    with lab_resolver(chaos_dynamo_lab.dns, zones=list(chaos_dynamo_lab.zones)):
        yield chaos_dynamo_lab
