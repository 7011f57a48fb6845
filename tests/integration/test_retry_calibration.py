"""Calibration on real processes: botocore's retry modes, measured through the shim's call
log and the lab's logs during a long outage, match botocore's own configuration for DynamoDB.

One outage of OUTAGE seconds serves every assertion: legacy mode needs it, since its ten
attempts sleep 0.05 s doubling to 12.8 s (25.55 s in all) before a call gives up. The
expected numbers are read from botocore, never written here: the legacy attempts and delays
from its ``_retry.json``, standard mode's attempts per service, and the retry quota (initial
capacity over the cost of a non-throttling retry) that drains during a long outage.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.loaders import Loader
from botocore.retries import quota as botocore_quota
from botocore.retries import standard as botocore_standard

from chaos_dynamo.calllog import Call, read_calls
from chaos_dynamo.clock import wait_until
from chaos_dynamo.endpoint.actions import empty_endpoint_for
from chaos_dynamo.lab.lab import Lab
from chaos_dynamo.retry import probes
from chaos_dynamo.services import registry, supervisor

pytestmark = pytest.mark.integration

OUTAGE = 28.0
BASELINE = 5.0
RECOVERY = 4.0
MODES = ("legacy", "standard", "adaptive")


def legacy_retry_config() -> dict[str, Any]:
    config = Loader().load_data("_retry")["retry"]["dynamodb"]["__default__"]
    return {"max_attempts": int(config["max_attempts"]), "base": float(config["delay"]["base"]),
            "growth": float(config["delay"]["growth_factor"])}


def standard_max_attempts() -> int:
    return int(botocore_standard._SERVICE_MAX_ATTEMPTS.get("dynamodb", botocore_standard.DEFAULT_MAX_ATTEMPTS))


def quota_retries() -> int:
    """Retries a standard/adaptive client may make before its quota is drained (no successes)."""
    return botocore_quota.RetryQuota.INITIAL_CAPACITY // botocore_standard.RetryQuotaChecker._RETRY_COST


@pytest.fixture(scope="module")
def outage(lab: Lab, lab_state_file: Path) -> Iterator[dict[str, Any]]:
    """Three services, one per botocore retry mode, through one long outage."""
    state = str(lab_state_file)
    names = {mode: f"calib-{mode}" for mode in MODES}
    started = []
    try:
        for mode, name in names.items():
            started.append(supervisor.start(name, kind=mode, rate=2.0, concurrency=80, state=state))
        # A whole baseline window of calls through the endpoint, for every service.
        warm = max(record.started_at for record in started) + BASELINE + 1.0
        assert wait_until(lambda: time.time() >= warm and all(
            len(read_calls(registry.calls_dir(state), n)) >= 2 * BASELINE for n in names.values()),
            timeout=30, interval=0.2)
        outage = empty_endpoint_for(OUTAGE, close_connections=True, configuration={"chaos_dynamo_state": state})
        config = {"chaos_dynamo_state": state}
        yield {"names": names, "state": state, "outage": outage, "config": config}
    finally:
        for record in started:
            supervisor.stop(record.name, state=state)


def calls_of(outage: dict[str, Any], mode: str) -> list[Call]:
    return read_calls(registry.calls_dir(outage["state"]), outage["names"][mode])


def in_outage(calls: list[Call], outage: dict[str, Any]) -> list[Call]:
    """Calls that started and ended while the endpoint was empty."""
    start, end = outage["outage"]["emptied_at"], outage["outage"]["restored_at"]
    return [c for c in calls if c.start >= start and c.end is not None and c.end < end]


def test_legacy_mode_makes_botocores_attempts_with_unjittered_doubling(outage: dict[str, Any]) -> None:
    expected = legacy_retry_config()
    measured = probes.attempts_per_call(outage["names"]["legacy"], baseline_seconds=BASELINE,
                                        recovery_seconds=RECOVERY, configuration=outage["config"])
    assert measured == expected["max_attempts"]
    finished = in_outage(calls_of(outage, "legacy"), outage)
    assert finished, "no legacy call finished inside the outage: it must outlast botocore's backoff"
    for call in finished:
        assert len(call.attempts) == expected["max_attempts"], call
        assert all(a.dns_failure for a in call.attempts), call
        starts = [a.start for a in call.attempts]
        for k, gap in enumerate((b - a for a, b in zip(starts, starts[1:], strict=False)), start=1):
            delay = expected["base"] * expected["growth"] ** (k - 1)
            assert delay <= gap < delay + 0.5, (k, gap, delay)
    shape = probes.backoff_shape(outage["names"]["legacy"], baseline_seconds=BASELINE,
                                 recovery_seconds=RECOVERY, configuration=outage["config"])
    assert shape["growing"] and not shape["jittered"], shape


@pytest.mark.parametrize("mode", ["standard", "adaptive"])
def test_standard_modes_make_botocores_attempts_until_the_quota_drains(outage: dict[str, Any], mode: str) -> None:
    max_attempts, retries = standard_max_attempts(), quota_retries()
    measured = probes.attempts_per_call(outage["names"][mode], baseline_seconds=BASELINE,
                                        recovery_seconds=RECOVERY, configuration=outage["config"])
    assert measured == max_attempts
    calls = calls_of(outage, mode)
    # Every retry of the run happened in the outage and drew on the one quota of the client.
    made = sum(1 for call in calls for attempt in call.attempts if attempt.number > 1)
    assert made == retries, f"{made} retries, botocore's quota allows {retries}"
    during = in_outage(calls, outage)
    assert max(len(c.attempts) for c in during) == max_attempts
    # Once the quota is drained, a call gets one attempt and no retry.
    last_retry = max(a.start for c in calls for a in c.attempts if a.number > 1)
    after = [c for c in during if c.start > last_retry]
    assert len(after) >= 10, f"only {len(after)} calls after the quota drained"
    assert all(len(c.attempts) == 1 for c in after)


def test_amplification_reflects_each_modes_retries(outage: dict[str, Any]) -> None:
    """Legacy keeps ten attempts per call in flight; a drained quota leaves one per call."""
    numbers = {mode: probes.retry_amplification(outage["names"][mode], baseline_seconds=BASELINE,
                                                recovery_seconds=RECOVERY, configuration=outage["config"])
               for mode in MODES}
    assert numbers["legacy"] > numbers["standard"], numbers
    assert statistics.fmean([numbers["standard"], numbers["adaptive"]]) < numbers["legacy"], numbers
