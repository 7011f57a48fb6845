"""The pure lease fleet and its managers, driven by hand (no I/O, no real time)."""

from __future__ import annotations

import random
from typing import Any

import pytest

from chaos_dynamo.errors import ConfigError
from chaos_dynamo.lease.fleet import FleetParams, LeaseFleet, lease_keys, validate
from chaos_dynamo.lease.managers import (
    HardenedManager,
    NaiveManager,
    RateBucket,
    full_jitter,
    make_manager,
)
from chaos_dynamo.lease.ops import Kind, LeaseItem, Op, Outcome, Result
from chaos_dynamo.lease.sim import MemoryTable

T0 = 1_700_000_000.0
OWNER = "fleet-a"


class Recorder:
    """A manager that records every call and hands out what a test queues in ``ready``."""

    name = "recorder"

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.ready: list[str] = []

    def offer(self, key: str, now: float) -> None:
        self.calls.append(("offer", key, now))

    def take(self, now: float, jobs_in_flight: int) -> str | None:
        return self.ready.pop(0) if self.ready else None

    def job_done(self, key: str, now: float) -> None:
        self.calls.append(("done", key, now))

    def job_failed(self, key: str, now: float, reason: str) -> None:
        self.calls.append(("failed", key, now, reason))

    def next_wake(self, now: float) -> float:
        return now if self.ready else float("inf")

    def queued(self) -> int:
        return len(self.ready)

    def describe(self) -> dict[str, Any]:
        return {"manager": self.name}


def fleet_of(n: int = 4, manager: Any = None, **params: Any) -> LeaseFleet:
    return LeaseFleet(FleetParams(leases=n, **params), manager or Recorder(), owner=OWNER,
                      now=T0, rng=random.Random(7))


def table_for(fleet: LeaseFleet) -> MemoryTable:
    table = MemoryTable()
    for key in fleet.keys:
        table.put(LeaseItem(key, OWNER, T0 + fleet.params.expiry, fleet.believed_version(key)))
    return table


def drive(fleet: LeaseFleet, table: MemoryTable, until: float, latency: float = 0.01) -> int:
    """Answer every op from ``table`` after ``latency``; return the ops answered."""
    pending: list[tuple[float, Op]] = []
    answered = 0
    now = T0
    while True:
        wake = min([fleet.next_wake()] + [t for t, _ in pending])
        if wake > until:
            return answered
        now = max(now, wake)
        due = [p for p in pending if p[0] <= now]
        pending = [p for p in pending if p[0] > now]
        ops = fleet.poll(now)
        for _, op in sorted(due, key=lambda p: (p[0], p[1].id)):
            answered += 1
            ops += fleet.complete(table.apply(op), now)
        pending += [(now + latency, op) for op in ops]


# -- validation ---------------------------------------------------------------------------

@pytest.mark.parametrize("field,value", [
    ("leases", 0), ("leases", 1_000_001), ("leases", 2.5), ("leases", True),
    ("renew_every", 0.0), ("renew_every", -1.0), ("renew_every", float("nan")),
    ("expiry", 3.0), ("renew_timeout", 0), ("renew_retry", -0.5), ("job_timeout", 0.0),
    ("renew_concurrency", 0), ("work_reads", -1), ("first_key", -1), ("key_prefix", ""),
])
def test_validate_names_the_bad_field(field: str, value: Any) -> None:
    with pytest.raises(ConfigError) as err:
        validate(FleetParams(**{field: value}))
    assert err.value.field == field
    assert err.value.fix


def test_expiry_must_outlast_the_renewal_period() -> None:
    with pytest.raises(ConfigError, match="renew_every") as err:
        validate(FleetParams(renew_every=10.0, expiry=10.0))
    assert err.value.field == "expiry"
    assert validate(FleetParams(renew_every=60, expiry=180)).expiry == 180


def test_keys_of_a_shard() -> None:
    assert lease_keys(FleetParams(leases=3, first_key=41)) == ["host-00041", "host-00042",
                                                             "host-00043"]


# -- renewals -----------------------------------------------------------------------------

def test_first_renewals_are_spread_over_one_period() -> None:
    fleet = fleet_of(200)
    assert T0 <= fleet.next_wake() < T0 + 4.0
    first = fleet.poll(T0 + 1.0)
    assert 0 < len(first) <= 8  # renew_concurrency
    assert all(op.kind is Kind.RENEW and op.version == 1 and op.owner == OWNER
               and op.expires_at == T0 + 1.0 + 10.0 and op.timeout == 1.0 for op in first)


def test_renewal_keeps_every_lease_live_without_faults() -> None:
    fleet = fleet_of(50)
    table = table_for(fleet)
    answered = drive(fleet, table, until=T0 + 60.0)
    stats = fleet.stats()
    assert stats.believed_live == 50 and stats.expired == 0 and stats.jobs_started == 0
    assert stats.renewals_failed == 0
    # about one renewal per lease per renew_every (4 s), never more than due
    assert 50 * 14 <= stats.renewals_ok <= 50 * 15
    assert answered == stats.renewals_ok == stats.ops_sent - stats.in_flight_ops
    assert table.live_at(T0 + 60.0) == 50
    for key in fleet.keys:
        item = table.get(key)
        assert item is not None and item.expires_at > T0 + 60.0
        assert item.version == fleet.believed_version(key)


def test_failed_renewal_is_retried_until_the_lease_expires() -> None:
    manager = Recorder()
    fleet = fleet_of(1, manager)
    now = fleet.next_wake()
    (op,) = fleet.poll(now)
    assert fleet.complete(Result(op.id, Outcome.TIMEOUT), now + 1.0) == []
    assert fleet.next_wake() == pytest.approx(now + 1.5)  # renew_retry after the answer
    retries = 0
    t = now + 1.5
    while t < T0 + 10.0:
        ops = fleet.poll(t)
        if ops:
            retries += 1
            (op,) = ops
            assert op.version == 1
            fleet.complete(Result(op.id, Outcome.ERROR, detail="dns"), t + 0.001)
        t = fleet.next_wake()
    assert retries >= 10
    assert fleet.is_live("host-00000")
    fleet.poll(T0 + 10.0)  # the expiry written at the start
    assert not fleet.is_live("host-00000")
    assert manager.calls == [("offer", "host-00000", T0 + 10.0)]
    assert fleet.stats().believed_live == 0 and fleet.stats().expired == 1


def test_condition_failed_renewal_loses_the_lease_at_once() -> None:
    manager = Recorder()
    fleet = fleet_of(1, manager)
    now = fleet.next_wake()
    (op,) = fleet.poll(now)
    fleet.complete(Result(op.id, Outcome.CONDITION_FAILED), now + 0.01)
    assert manager.calls == [("offer", "host-00000", now + 0.01)]
    assert not fleet.is_live("host-00000")


def test_renewal_answer_after_the_expiry_is_ignored() -> None:
    manager = Recorder()
    fleet = fleet_of(1, manager, renew_every=4.0, expiry=5.0, renew_timeout=3.0)
    now = T0 + 4.0
    (op,) = fleet.poll(now)  # expiry T0+5 falls inside this op's timeout: watched
    fleet.poll(T0 + 5.0)
    assert manager.calls == [("offer", "host-00000", T0 + 5.0)]
    assert fleet.complete(Result(op.id, Outcome.OK), T0 + 5.5) == []
    assert not fleet.is_live("host-00000")
    assert fleet.stats().in_flight_ops == 0


def test_renewals_beyond_the_concurrency_wait_and_expire_if_never_sent() -> None:
    manager = Recorder()
    fleet = fleet_of(20, manager, renew_concurrency=2)
    ops = fleet.poll(T0 + 4.0)  # all 20 due, 2 slots
    assert len(ops) == 2 and fleet.stats().in_flight_ops == 2
    assert fleet.next_wake() == T0 + 10.0  # slots full: only the backlog's expiry is next
    fleet.poll(T0 + 10.0)
    # the 18 never sent expire; the 2 in flight wait for their answer (due by T0 + 5)
    offered = {c[1] for c in manager.calls if c[0] == "offer"}
    assert len(offered) == 18 and not offered & {op.key for op in ops}
    assert fleet.stats().believed_live == 2


def test_a_renewal_falling_due_while_slots_are_busy_still_expires_on_time() -> None:
    manager = Recorder()
    fleet = fleet_of(2, manager, renew_every=4.0, expiry=4.5, renew_concurrency=1)
    (first,) = fleet.poll(fleet.next_wake())
    other = next(key for key in fleet.keys if key != first.key)
    due = fleet.next_wake()
    assert due < T0 + 4.0  # the other lease's renewal, though no slot is free
    assert fleet.poll(due) == []
    fleet.poll(T0 + 4.5)
    assert ("offer", other, T0 + 4.5) in manager.calls


def test_backlogged_renewals_go_out_in_order_as_slots_free() -> None:
    fleet = fleet_of(5, renew_concurrency=1)
    (first,) = fleet.poll(T0 + 4.0)
    sent = [first.key]
    op = first
    for i in range(4):
        (op,) = fleet.complete(Result(op.id, Outcome.OK), T0 + 4.0 + 0.1 * (i + 1))
        sent.append(op.key)
    assert sorted(sent) == fleet.keys and len(set(sent)) == 5


# -- jobs ---------------------------------------------------------------------------------

def expire_one(fleet: LeaseFleet, manager: Recorder) -> float:
    """Make host-00000 lost by a conditional failure; return the time."""
    now = fleet.next_wake()
    ops = fleet.poll(now)
    target = next((op for op in ops if op.key == "host-00000"), None)
    while target is None:
        now = fleet.next_wake()
        ops = fleet.poll(now)
        target = next((op for op in ops if op.key == "host-00000"), None)
    fleet.complete(Result(target.id, Outcome.CONDITION_FAILED), now)
    return now


def test_job_reads_then_acquires_with_the_version_seen() -> None:
    manager = Recorder()
    fleet = fleet_of(1, manager)
    now = expire_one(fleet, manager)
    manager.ready.append("host-00000")
    (read,) = fleet.poll(now)
    assert read.kind is Kind.READ and read.timeout == pytest.approx(0.6)
    item = LeaseItem("host-00000", OWNER, now + 5.0, 7)
    (read2,) = fleet.complete(Result(read.id, Outcome.OK, item), now + 0.1)
    assert read2.kind is Kind.READ and read2.timeout == pytest.approx(0.5)
    (read3,) = fleet.complete(Result(read2.id, Outcome.OK, item), now + 0.2)
    (acquire,) = fleet.complete(Result(read3.id, Outcome.OK, item), now + 0.3)
    assert acquire.kind is Kind.ACQUIRE and acquire.version == 7
    assert acquire.expires_at == pytest.approx(now + 0.3 + 10.0)
    assert acquire.timeout == pytest.approx(0.3)
    assert fleet.complete(Result(acquire.id, Outcome.OK), now + 0.4) == []
    assert fleet.is_live("host-00000") and fleet.believed_version("host-00000") == 8
    assert manager.calls[-1] == ("done", "host-00000", now + 0.4)
    # renewals resume renew_every after the write
    assert fleet.next_wake() == pytest.approx(now + 0.3 + 4.0)
    stats = fleet.stats()
    assert (stats.jobs_started, stats.jobs_ok, stats.believed_live) == (1, 1, 1)


def test_job_on_an_absent_item_acquires_version_zero() -> None:
    manager = Recorder()
    fleet = fleet_of(1, manager, work_reads=1)
    now = expire_one(fleet, manager)
    manager.ready.append("host-00000")
    (read,) = fleet.poll(now)
    (acquire,) = fleet.complete(Result(read.id, Outcome.OK, None), now + 0.1)
    assert acquire.version == 0


def test_work_reads_zero_acquires_with_the_known_version() -> None:
    manager = Recorder()
    fleet = fleet_of(1, manager, work_reads=0)
    now = expire_one(fleet, manager)
    manager.ready.append("host-00000")
    (acquire,) = fleet.poll(now)
    assert acquire.kind is Kind.ACQUIRE and acquire.version == 1


def test_job_timeout_ignores_late_results() -> None:
    manager = Recorder()
    fleet = fleet_of(1, manager)
    now = expire_one(fleet, manager)
    manager.ready.append("host-00000")
    (read,) = fleet.poll(now)
    assert fleet.next_wake() == pytest.approx(now + 0.6)
    fleet.poll(now + 0.6)
    assert manager.calls[-1] == ("failed", "host-00000", now + 0.6, "timeout")
    late = LeaseItem("host-00000", OWNER, now + 5.0, 3)
    assert fleet.complete(Result(read.id, Outcome.OK, late), now + 0.7) == []
    assert manager.calls[-1][0] == "failed" and not fleet.is_live("host-00000")
    stats = fleet.stats()
    assert (stats.jobs_timed_out, stats.jobs_failed, stats.jobs_ok) == (1, 0, 0)
    assert stats.jobs_in_flight == 0 and stats.in_flight_ops == 0


def test_answer_exactly_at_the_deadline_is_too_late() -> None:
    manager = Recorder()
    fleet = fleet_of(1, manager, work_reads=0)
    now = expire_one(fleet, manager)
    manager.ready.append("host-00000")
    (acquire,) = fleet.poll(now)
    fleet.complete(Result(acquire.id, Outcome.OK), now + 0.6)
    assert not fleet.is_live("host-00000")
    assert manager.calls[-1][3] == "timeout"


@pytest.mark.parametrize("outcome,item,reason", [
    (Outcome.ERROR, None, "error"),
    (Outcome.TIMEOUT, None, "timeout"),
    (Outcome.OK, LeaseItem("host-00000", "fleet-b", T0 + 1e6, 9), "held"),
])
def test_job_read_failures(outcome: Outcome, item: LeaseItem | None, reason: str) -> None:
    manager = Recorder()
    fleet = fleet_of(1, manager)
    now = expire_one(fleet, manager)
    manager.ready.append("host-00000")
    (read,) = fleet.poll(now)
    assert fleet.complete(Result(read.id, outcome, item), now + 0.05) == []
    assert manager.calls[-1] == ("failed", "host-00000", now + 0.05, reason)


def test_expired_lease_of_another_owner_is_taken_over() -> None:
    manager = Recorder()
    fleet = fleet_of(1, manager, work_reads=1)
    now = expire_one(fleet, manager)
    manager.ready.append("host-00000")
    (read,) = fleet.poll(now)
    stale = LeaseItem("host-00000", "fleet-b", now - 1.0, 4)
    (acquire,) = fleet.complete(Result(read.id, Outcome.OK, stale), now + 0.05)
    assert acquire.version == 4
    fleet.complete(Result(acquire.id, Outcome.CONDITION_FAILED), now + 0.1)
    assert manager.calls[-1] == ("failed", "host-00000", now + 0.1, "condition")


def test_never_two_jobs_per_key() -> None:
    manager = Recorder()
    fleet = fleet_of(2, manager)
    now = expire_one(fleet, manager)
    manager.ready += ["host-00000", "host-00000", "host-00001"]  # a confused manager
    ops = fleet.poll(now)
    assert [op.key for op in ops if op.kind is Kind.READ] == ["host-00000"]
    assert fleet.stats().jobs_started == 1


# -- naive manager ------------------------------------------------------------------------

def test_naive_is_fifo_up_to_its_workers() -> None:
    naive = NaiveManager(workers=2)
    for key in "abc":
        naive.offer(key, 0.0)
    assert naive.take(0.0, 0) == "a"
    assert naive.take(0.0, 1) == "b"
    assert naive.take(0.0, 2) is None
    assert naive.next_wake(0.0) == float("inf")  # both workers busy
    naive.job_done("a", 0.1)
    assert naive.next_wake(0.1) == 0.1
    assert naive.take(0.1, 1) == "c"


def test_naive_requeues_a_timed_out_job_at_the_tail_at_once() -> None:
    naive = NaiveManager(workers=1)
    for key in "abc":
        naive.offer(key, 0.0)
    assert naive.take(0.0, 0) == "a"
    naive.job_failed("a", 0.6, "timeout")
    order = []
    for _ in range(3):
        key = naive.take(0.6, 0)
        assert key is not None
        order.append(key)
        naive.job_failed(key, 0.6, "held")
    assert order == ["b", "c", "a"]
    assert naive.describe()["requeued"] == 4 and naive.queued() == 3


def test_naive_pauses_a_key_after_an_error_without_jitter() -> None:
    naive = NaiveManager(workers=4, error_pause=0.2)
    naive.offer("a", 0.0)
    assert naive.take(0.0, 0) == "a"
    naive.job_failed("a", 1.0, "error")
    assert naive.take(1.0, 0) is None and naive.queued() == 1
    assert naive.next_wake(1.0) == pytest.approx(1.2)
    assert naive.take(1.19, 0) is None
    assert naive.take(1.2, 0) == "a"


# -- hardened manager ---------------------------------------------------------------------

def hardened(**kw: Any) -> HardenedManager:
    settings: dict[str, Any] = {"rate": 1000.0, "burst": 1000}
    settings.update(kw)
    return HardenedManager(rng=random.Random(3), **settings)


def test_hardened_serves_newest_first_up_to_max_in_flight() -> None:
    manager = hardened(max_in_flight=2)
    for i, key in enumerate("abcd"):
        manager.offer(key, 0.1 * i)
    assert manager.take(1.0, 0) == "d"
    assert manager.take(1.0, 1) == "c"
    assert manager.take(1.0, 2) is None
    assert manager.next_wake(1.0) == float("inf")
    manager.job_done("d", 1.1)
    assert manager.take(1.1, 1) == "b"


def test_hardened_admission_needs_a_token() -> None:
    manager = hardened(max_in_flight=100, rate=4.0, burst=2)
    for i in range(10):
        manager.offer(f"k{i}", 0.0)
    taken = [manager.take(0.0, i) for i in range(3)]
    assert taken[:2] == ["k9", "k8"] and taken[2] is None  # the burst
    assert manager.next_wake(0.0) == pytest.approx(0.25)
    assert manager.take(0.2, 2) is None
    assert manager.take(0.25, 2) == "k7"
    # over 10 s at most burst + rate * 10 starts
    starts = 3
    t = 0.25
    while t < 10.0:
        t = manager.next_wake(t)
        if t > 10.0:
            break
        while manager.take(t, 0) is not None:
            starts += 1
            manager.offer(f"x{starts}", t)
    assert starts <= 2 + 4 * 10 + 1


def test_rate_bucket_from_epoch_times() -> None:
    bucket = RateBucket(rate=6.0, burst=1.0)
    now = T0
    assert bucket.try_take(now)
    for _ in range(1000):  # float error at epoch magnitude must not stall admission
        now = bucket.ready_at(now)
        assert bucket.try_take(now)
    assert now == pytest.approx(T0 + 1000 / 6.0, rel=0, abs=1e-3)


def test_hardened_defers_offers_beyond_max_queue() -> None:
    manager = hardened(max_queue=3, max_in_flight=10)
    for i in range(5):
        manager.offer(f"k{i}", 0.0)
    described = manager.describe()
    assert (described["in_queue"], described["deferred"], described["overflowed"]) == (3, 2, 2)
    assert manager.queued() == 5
    taken = []
    while (key := manager.take(0.0, len(taken))) is not None:
        taken.append(key)
    assert sorted(taken) == [f"k{i}" for i in range(5)]  # deferred ones come in as room frees


def test_hardened_sheds_entries_older_than_max_age() -> None:
    manager = hardened(max_age=5.0, max_in_flight=1)
    manager.offer("old", 0.0)
    manager.offer("new", 4.0)
    assert manager.take(5.5, 1) is None  # busy, but ageing happens anyway
    assert manager.describe()["shed"] == 1 and manager.queued() == 2
    # "new" (4.0) is still fresh; "old" waits in the deferred set, then comes back
    assert manager.take(5.5, 0) == "new"
    manager.job_done("new", 5.6)
    t = manager.next_wake(5.6)
    assert 5.5 <= t <= 5.5 + 0.5
    assert manager.take(t, 0) == "old"


def test_hardened_backoff_is_jittered_exponential_and_capped() -> None:
    manager = hardened(backoff=0.5, max_backoff=8.0)
    delays = []
    now = 0.0
    manager.offer("k", now)
    for _ in range(8):
        assert manager.take(now, 0) == "k"
        manager.job_failed("k", now, "timeout")
        ready = manager.next_wake(now)
        delays.append(ready - now)
        assert manager.take(ready - 1e-6, 0) is None
        now = ready
    bounds = [min(8.0, 0.5 * 2 ** f) for f in range(8)]
    assert all(0.0 <= d <= b + 1e-9 for d, b in zip(delays, bounds, strict=True))
    assert len({round(d, 9) for d in delays}) == 8  # jittered, not fixed
    assert manager.describe()["backoffs"] == 8
    # success forgets the failures
    assert manager.take(now, 0) == "k"
    manager.job_done("k", now)
    assert manager.queued() == 0


def test_full_jitter_bounds() -> None:
    rng = random.Random(1)
    draws = [full_jitter(rng, 0.5, 8.0, 10) for _ in range(200)]
    assert max(draws) <= 8.0 and min(draws) >= 0.0 and max(draws) > 4.0
    assert all(full_jitter(rng, 0.5, 8.0, 0) <= 0.5 for _ in range(50))


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_hardened_never_loses_a_key(seed: int) -> None:
    rng = random.Random(seed)
    manager = HardenedManager(max_in_flight=3, rate=6.0, burst=3, max_queue=8, max_age=1.0,
                              backoff=0.2, max_backoff=2.0, rng=random.Random(seed))
    keys = {f"k{i}" for i in range(40)}
    for key in sorted(keys):
        manager.offer(key, 0.0)
    running: dict[str, float] = {}
    done: set[str] = set()
    now = 0.0
    for _ in range(20000):
        for key, end in sorted(running.items()):
            if end <= now:
                del running[key]
                if rng.random() < 0.3:
                    manager.job_done(key, now)
                    done.add(key)
                else:
                    manager.job_failed(key, now, rng.choice(["timeout", "error", "held"]))
        while (key := manager.take(now, len(running))) is not None:
            assert key not in running and key not in done
            running[key] = now + rng.uniform(0.05, 0.6)
        if len(done) == len(keys):
            break
        now = min([manager.next_wake(now)] + list(running.values()))
        assert now < float("inf")
        # everything is somewhere: queued, running or done
        assert manager.queued() + len(running) + len(done) == len(keys)
    assert done == keys


# -- make_manager -------------------------------------------------------------------------

def test_make_manager_by_name_with_overrides() -> None:
    naive = make_manager("naive", random.Random(0), workers=4.0)
    assert isinstance(naive, NaiveManager) and naive.workers == 4
    hard = make_manager("hardened", random.Random(0), max_in_flight=2, rate=3.0)
    assert isinstance(hard, HardenedManager)
    assert hard.describe()["max_in_flight"] == 2 and hard.describe()["rate"] == 3.0


def test_make_manager_errors_name_the_field() -> None:
    with pytest.raises(ConfigError) as err:
        make_manager("clever", random.Random(0))
    assert err.value.field == "manager" and "naive" in str(err.value)
    with pytest.raises(ConfigError) as err:
        make_manager("naive", random.Random(0), max_in_flight=3)
    assert err.value.field == "manager"
    with pytest.raises(ConfigError) as err:
        make_manager("hardened", random.Random(0), rate=0)
    assert err.value.field == "rate"
    with pytest.raises(ConfigError) as err:
        make_manager("naive", random.Random(0), workers=2.5)
    assert err.value.field == "workers"
