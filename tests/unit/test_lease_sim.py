"""The in-memory model: table semantics, the slot server, and collapse versus recovery."""

from __future__ import annotations

import random
from typing import Any

import pytest

from chaos_dynamo.errors import ConfigError
from chaos_dynamo.lease import measure, timeline
from chaos_dynamo.lease.fleet import FleetParams
from chaos_dynamo.lease.managers import make_manager
from chaos_dynamo.lease.ops import Kind, LeaseItem, Op, Outcome
from chaos_dynamo.lease.sim import MemoryTable, Scenario, Server, SimResult, Window, simulate

T0 = 1_700_000_000.0
LAB = Server(slots=2, service_time=0.03, base_latency=0.01)
# The lab story: the endpoint is gone for 12 s (every lease expires: E = 10 s), then
# DynamoDB comes back slow for 5 s.
OUTAGE = Scenario(duration=90.0, outages=(Window(10.0, 22.0),),
                  slow=((Window(22.0, 27.0), 0.1),))
TRIGGER_END = T0 + 27.0


def op(kind: Kind, key: str = "k", *, owner: str = "me", version: int = 1,
       expires_at: float = T0 + 10, now: float = T0, op_id: int = 1) -> Op:
    return Op(op_id, kind, key, owner, version, expires_at, now, 1.0)


def run(manager: str, scenario: Scenario = OUTAGE, *, seed: int = 1, server: Server = LAB,
        **params: Any) -> SimResult:
    return simulate(FleetParams(**params), make_manager(manager, random.Random(seed)), server,
                    scenario, seed=seed, start=T0)


def live(result: SimResult, start: float, end: float = float("inf")) -> list[float]:
    return [s.live_fraction for s in result.samples if start <= s.t <= end]


# -- the table ----------------------------------------------------------------------------

def test_renew_needs_the_same_version_and_owner() -> None:
    table = MemoryTable()
    assert table.apply(op(Kind.RENEW)).outcome is Outcome.CONDITION_FAILED  # absent
    table.put(LeaseItem("k", "me", T0 + 5, 3))
    assert table.apply(op(Kind.RENEW, version=2)).outcome is Outcome.CONDITION_FAILED
    assert table.apply(op(Kind.RENEW, version=3, owner="other")).outcome is Outcome.CONDITION_FAILED
    assert table.get("k") == LeaseItem("k", "me", T0 + 5, 3)
    assert table.apply(op(Kind.RENEW, version=3, expires_at=T0 + 20)).outcome is Outcome.OK
    assert table.get("k") == LeaseItem("k", "me", T0 + 20, 4)
    assert table.version_sum == 4


def test_acquire_conditions() -> None:
    table = MemoryTable()
    assert table.apply(op(Kind.ACQUIRE, version=0)).outcome is Outcome.OK  # absent
    assert table.get("k") == LeaseItem("k", "me", T0 + 10, 1)
    table.put(LeaseItem("k", "other", T0 + 5, 7))
    # a live lease of another owner can never be taken
    assert table.apply(op(Kind.ACQUIRE, version=7, now=T0 + 4)).outcome is Outcome.CONDITION_FAILED
    # once expired, it can, at the version read
    assert table.apply(op(Kind.ACQUIRE, version=6, now=T0 + 6)).outcome is Outcome.CONDITION_FAILED
    assert table.apply(op(Kind.ACQUIRE, version=7, now=T0 + 6)).outcome is Outcome.OK
    assert table.get("k") == LeaseItem("k", "me", T0 + 10, 8)
    # our own lease, live or not, at the right version
    assert table.apply(op(Kind.ACQUIRE, version=8, now=T0)).outcome is Outcome.OK


def test_read_returns_the_item_or_none() -> None:
    table = MemoryTable()
    result = table.apply(op(Kind.READ, op_id=5))
    assert (result.op_id, result.outcome, result.item) == (5, Outcome.OK, None)
    table.put(LeaseItem("k", "me", T0 + 5, 2))
    assert table.apply(op(Kind.READ)).item == LeaseItem("k", "me", T0 + 5, 2)


def test_live_count_on_a_grid_matches_a_scan() -> None:
    rng = random.Random(4)
    grid = MemoryTable(grid=(T0, 0.5))
    plain = MemoryTable()
    for step in range(200):
        t = T0 + step * 0.5
        for _ in range(5):
            item = LeaseItem(f"k{rng.randrange(30)}", "me", t + rng.uniform(-2, 4),
                             rng.randrange(1, 9))
            grid.put(item)
            plain.put(item)
        assert grid.live_at(t) == plain.live_at(t)
        assert grid.version_sum == plain.version_sum


# -- the model's mechanics ----------------------------------------------------------------

def test_no_faults_everything_stays_live() -> None:
    result = run("naive", Scenario(duration=30.0), server=Server(slots=None))
    assert result.markers == []
    assert len(result.samples) == 31 and result.samples[0].t == T0
    assert all(s.live == s.total == 100 for s in result.samples)
    assert result.stats.jobs_started == 0 and result.stats.renewals_failed == 0
    # goodput: one version per renewal; attempts: every op sent
    assert result.samples[-1].version_sum - 100 == result.stats.renewals_ok
    assert result.samples[-1].attempts == result.stats.ops_sent
    assert result.wasted == 0


def test_an_outage_fails_every_op_fast() -> None:
    scenario = Scenario(duration=8.0, outages=(Window(2.0, 6.0),))
    result = run("hardened", scenario)
    assert [m.event for m in result.markers] == [timeline.TRIGGER_START, timeline.TRIGGER_END]
    assert [m.t for m in result.markers] == [T0 + 2.0, T0 + 6.0]
    during = [s for s in result.samples if T0 + 2 < s.t <= T0 + 6]
    # renewals fail, so versions stand still, but attempts keep coming
    assert during[-1].version_sum == during[0].version_sum
    assert during[-1].attempts > during[0].attempts
    assert result.stats.renewals_failed > 0 and result.served < result.stats.ops_sent


def test_timed_out_writes_still_land() -> None:
    # One slot, 0.3 s per request, 8 renewals at once: the later ones time out (1 s) in
    # the queue, yet the server still performs them: the table moves on without the fleet.
    result = run("hardened", Scenario(duration=20.0), server=Server(slots=1, service_time=0.3),
                 leases=20, renew_every=2.0, expiry=5.0)
    assert result.wasted > 0
    assert result.stats.renewals_failed > 0
    # wasted writes bumped versions the fleet did not see: its next renewals then fail
    # their condition and the leases are re-established by jobs
    assert result.stats.jobs_started > 0


def test_fifo_slots_bound_the_throughput() -> None:
    # 2 slots of 0.1 s: at most 20 requests a second, whatever the fleet sends
    result = run("naive", Scenario(duration=10.0), server=Server(slots=2, service_time=0.09),
                 leases=500, renew_every=4.0, expiry=10.0)
    assert result.served <= 20 * 10 + 2


def test_same_seed_same_digest_and_different_seed_different_digest() -> None:
    first = run("hardened", seed=5)
    again = run("hardened", seed=5)
    other = run("hardened", seed=6)
    assert first.digest == again.digest and first.samples == again.samples
    assert first.digest != other.digest
    naive = run("naive", seed=5)
    assert naive.digest == run("naive", seed=5).digest != first.digest


def test_model_input_errors_name_the_field() -> None:
    manager = make_manager("naive", random.Random(0))
    cases: list[tuple[Server, Scenario, str]] = [
        (Server(slots=0), Scenario(10.0), "server.slots"),
        (Server(service_time=-1.0), Scenario(10.0), "server.service_time"),
        (Server(), Scenario(0.0), "scenario.duration"),
        (Server(), Scenario(10.0, sample_every=0.0), "scenario.sample_every"),
        (Server(), Scenario(10.0, outages=(Window(5.0, 5.0),)), "scenario.outages[0].end"),
        (Server(), Scenario(10.0, slow=((Window(1.0, 2.0), -0.1),)),
         "scenario.slow[0].service_time"),
        (Server(), Scenario(10.0, expire_bursts=((1.0, -3),)), "scenario.expire_bursts[0]"),
    ]
    for server, scenario, field in cases:
        with pytest.raises(ConfigError) as err:
            simulate(FleetParams(), manager, server, scenario, seed=1)
        assert err.value.field == field
    with pytest.raises(ConfigError) as err:
        simulate(FleetParams(leases=0), manager, Server(), Scenario(10.0), seed=1)
    assert err.value.field == "leases"


# -- the story: collapse and recovery -----------------------------------------------------

def test_naive_collapses_after_a_mass_expiry() -> None:
    result = run("naive")
    assert min(live(result, T0 + 15, T0 + 25)) == 0.0  # the outage expired every lease
    tail = [s for s in result.samples if s.t >= T0 + 60]
    assert max(s.live_fraction for s in tail) < 0.2
    # ... while it keeps the store busy: attempts grow, goodput stays ~0
    attempts = tail[-1].attempts - tail[0].attempts  # type: ignore[operator]
    goodput = tail[-1].version_sum - tail[0].version_sum
    assert attempts >= 30 * 30 and goodput <= 0.05 * attempts
    assert result.stats.jobs_ok < 0.2 * result.stats.jobs_started
    assert result.stats.jobs_timed_out > 100 and result.wasted > 100
    assert result.stalls == 0
    # the probes' checker, over the model's timeline, says the same
    verdict = measure.collapse_verdict(result.timeline, start=TRIGGER_END, window=30.0)
    assert verdict["collapsed"] is True, verdict["reason"]


def test_hardened_recovers_after_the_same_mass_expiry() -> None:
    result = run("hardened")
    assert min(live(result, T0 + 15, T0 + 25)) == 0.0
    seconds = measure.time_to_fraction(result.samples, TRIGGER_END, 0.99)
    assert seconds is not None and seconds <= 40.0
    assert min(live(result, TRIGGER_END + seconds)) >= 0.99  # and stays there
    verdict = measure.collapse_verdict(result.timeline, start=TRIGGER_END, window=30.0)
    assert verdict["collapsed"] is False, verdict["reason"]
    assert result.stats.believed_live == 100 and result.stats.queued == 0
    assert result.manager["done"] >= 100
    assert result.stalls == 0


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_metastability_a_small_burst_recovers_a_mass_one_does_not(seed: int) -> None:
    def burst(count: int) -> Scenario:
        return Scenario(duration=60.0, expire_bursts=((10.0, count),))

    small = run("naive", burst(3), seed=seed)
    assert min(live(small, T0 + 10, T0 + 12)) < 1.0  # the burst did expire leases
    assert live(small, T0 + 20) == [1.0] * len(live(small, T0 + 20))
    mass = run("naive", burst(100), seed=seed)
    assert max(live(mass, T0 + 30)) < 0.2  # the same trigger, larger: it never recovers
    hard = run("hardened", burst(100), seed=seed)
    assert min(live(hard, T0 + 40)) == 1.0


# -- the hardened manager's adaptive admission --------------------------------------------

def slower(capacity: float) -> Server:
    """The lab's server with ``capacity`` requests/s (2 slots): a slower or busier machine."""
    return Server(slots=2, service_time=2.0 / capacity - 0.01, base_latency=0.01)


@pytest.mark.parametrize("capacity", [36.0, 29.0])
def test_hardened_still_recovers_when_the_store_is_slower_than_planned(capacity: float) -> None:
    """At 60-70% of the lab's capacity, fixed-rate admission (4 jobs/s, 16 requests/s) on top
    of the renewals (25/s) overloads the store: renewals time out and leases are lost again.
    Halving the rate on a job timeout is what keeps it recovering."""
    adaptive = run("hardened", server=slower(capacity))
    seconds = measure.time_to_fraction(adaptive.samples, TRIGGER_END, 0.99)
    assert seconds is not None and seconds <= 40.0, seconds
    assert adaptive.manager["slowdowns"] > 0
    if capacity < 30:  # the same admission at a fixed rate (min_rate = rate) never gets there
        fixed = simulate(FleetParams(), make_manager("hardened", random.Random(1), min_rate=4.0),
                         slower(capacity), OUTAGE, seed=1, start=T0)
        assert measure.time_to_fraction(fixed.samples, TRIGGER_END, 0.99) is None


def test_aimd_halves_on_a_timeout_only_and_creeps_back() -> None:
    from chaos_dynamo.lease.managers import HardenedManager

    manager = HardenedManager(rate=4.0, min_rate=1.0, increase=0.5, rng=random.Random(0))
    for key in ("a", "b", "c"):
        manager.offer(key, T0)
    assert manager.take(T0, 0) == "c"
    manager.job_failed("c", T0, "error")
    assert manager.describe()["admission_rate"] == 4.0  # an error is not congestion
    assert manager.take(T0, 0) == "b"
    manager.job_failed("b", T0, "timeout")
    assert manager.describe()["admission_rate"] == 2.0
    assert manager.take(T0, 0) == "a"
    manager.job_failed("a", T0, "timeout")
    manager.offer("d", T0)
    assert manager.describe()["admission_rate"] == 1.0
    manager.job_failed("d", T0, "timeout")  # never below min_rate
    assert manager.describe()["admission_rate"] == 1.0 and manager.describe()["slowdowns"] == 3
    manager.job_done("a", T0 + 10)
    manager.job_done("b", T0 + 10)
    assert manager.describe()["admission_rate"] == 2.0
    for _ in range(10):
        manager.job_done("c", T0 + 20)
    assert manager.describe()["admission_rate"] == 4.0  # never above rate


def test_aimd_settings_are_checked() -> None:
    from chaos_dynamo.lease.managers import HardenedManager

    with pytest.raises(ConfigError, match="min_rate"):
        HardenedManager(rate=2.0, min_rate=3.0)
    with pytest.raises(ConfigError, match="increase"):
        HardenedManager(increase=-1.0)
