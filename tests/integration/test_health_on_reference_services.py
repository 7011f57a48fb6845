"""The generic service probes on real reference services: each one fails while the endpoint
is empty and passes again after the restore (a probe that cannot fail is a defect).

The naive service is the fragile one here: it never gives up, so its calls pile up in its
queue while the endpoint is gone; the hardened one sheds them and recovers by itself.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from chaos_dynamo.clock import wait_until
from chaos_dynamo.endpoint.actions import empty_endpoint, restore_endpoint
from chaos_dynamo.health import probes as health
from chaos_dynamo.lbfleet.actions import close_connections
from chaos_dynamo.retry import probes as retry
from chaos_dynamo.services import supervisor

pytestmark = pytest.mark.integration

QUEUE = "chaos_dynamo_service_queue_depth"


@pytest.fixture(scope="module")
def services(lab_state_file: Path) -> Iterator[dict[str, Any]]:
    state = str(lab_state_file)
    config = {"chaos_dynamo_state": state}
    started = []
    try:
        for kind in ("naive", "hardened"):
            started.append(supervisor.start(f"health-{kind}", kind=kind, rate=4.0, concurrency=4, state=state))
        assert wait_until(lambda: all(health.http_health(service=r.name, configuration=config) for r in started)
                          and time.time() > max(r.started_at for r in started) + 3, timeout=30, interval=0.2)
        yield config
    finally:
        restore_endpoint(configuration=config)
        for record in started:
            supervisor.stop(record.name, state=state)


def test_service_probes_fail_during_the_outage_and_pass_after_it(services: dict[str, Any]) -> None:
    config = services
    naive, hardened = "health-naive", "health-hardened"
    for name in (naive, hardened):
        assert health.http_health(service=name, configuration=config)
        assert retry.request_rate(name, seconds=2.0, configuration=config) >= 1.0
    empty_endpoint(configuration=config)
    close_connections(configuration=config)
    try:
        # No call completes, so neither is healthy; the naive one's queue grows without end.
        assert wait_until(lambda: not any(health.http_health(service=n, configuration=config)
                                          for n in (naive, hardened)), timeout=20, interval=0.2)
        assert wait_until(lambda: health.prometheus_metric(QUEUE, service=naive, configuration=config) >= 4,
                          timeout=20, interval=0.2)
        assert health.prometheus_metric(QUEUE, service=hardened, configuration=config) <= 4  # bounded: it sheds
        assert health.seconds_to_healthy(service=naive, timeout=1.0, configuration=config) > 1.0
        assert wait_until(lambda: retry.request_rate(naive, seconds=2.0, configuration=config) < 1.0,
                          timeout=20, interval=0.2)
    finally:
        restore_endpoint(configuration=config)
    took = health.seconds_to_healthy(service=hardened, timeout=30.0, configuration=config)
    assert took <= 30.0
    assert health.http_health(service=hardened, configuration=config)
    assert wait_until(lambda: retry.request_rate(hardened, seconds=2.0, configuration=config) >= 1.0,
                      timeout=20, interval=0.2)
    assert health.prometheus_metric(QUEUE, service=hardened, configuration=config) <= 4
