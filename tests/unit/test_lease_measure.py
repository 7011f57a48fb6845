"""Lease checkers on scripted timelines and scans: collapse, recovery, goodput, double owners."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from chaos_dynamo.errors import LabError
from chaos_dynamo.lease import measure
from chaos_dynamo.lease.ops import LeaseItem
from chaos_dynamo.lease.timeline import Marker, Sample, Timeline
from chaos_dynamo.lease.watch import AttemptCounter, LbRecord

T0 = 1_700_000_000.0


def series(fractions: Sequence[float], *, total: int = 100, renewals_per_step: int = 0,
           attempts_per_step: int | None = 0, start: float = T0, step: float = 1.0) -> Timeline:
    """One sample per ``step`` seconds with the given live fractions."""
    samples = []
    for i, fraction in enumerate(fractions):
        live = round(fraction * total)
        samples.append(Sample(t=start + i * step, total=total, live=live, expired=total - live,
                              version_sum=total + i * renewals_per_step,
                              attempts=None if attempts_per_step is None else i * attempts_per_step))
    return Timeline(tuple(samples), (Marker(start, "trigger_end"),))


def verdict(tl: Timeline, window: float = 10.0, **kwargs: float) -> dict[str, object]:
    return measure.collapse_verdict(tl, T0, window, **kwargs)


# --- collapse ---------------------------------------------------------------------------


def test_busy_and_flat_below_target_is_a_collapse() -> None:
    result = verdict(series([0.02, 0.03, 0.02, 0.03, 0.02, 0.03, 0.03, 0.02, 0.03, 0.03, 0.03],
                            renewals_per_step=0, attempts_per_step=50))
    assert result["collapsed"] is True and result["stalled"] is False
    assert str(result["reason"]).startswith("collapsed")
    assert result["attempts_per_second"] == pytest.approx(50.0)
    assert result["renewals_per_second"] == 0.0 and result["efficiency"] == 0.0
    assert result["first_live_fraction"] == 0.02 and result["last_live_fraction"] == 0.03
    assert result["improvement"] == pytest.approx(0.01) and result["below_target"] is True
    assert result["samples"] == 11 and result["attempts_known"] is True
    for key in ("target", "min_improvement", "max_efficiency", "min_attempts_per_second", "start", "end",
                "min_live_fraction", "max_live_fraction", "renewals", "attempts", "total", "baseline", "missing"):
        assert key in result


def test_recovering_is_not_a_collapse() -> None:
    result = verdict(series([0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95],
                            renewals_per_step=10, attempts_per_step=60))
    assert result["collapsed"] is False
    assert "recovering" in str(result["reason"])
    assert result["improvement"] == pytest.approx(0.95)


def test_reaching_the_target_is_not_a_collapse() -> None:
    result = verdict(series([0.5] * 5 + [1.0] * 6, renewals_per_step=0, attempts_per_step=50),
                     min_improvement=0.9)
    assert result["collapsed"] is False and "reached 1.000" in str(result["reason"])


def test_flat_but_idle_is_stalled_not_collapsed() -> None:
    # 2 requests in 10 s: nothing congests the fleet; it has stopped trying.
    tl = series([0.0] * 11, attempts_per_step=0)
    samples = list(tl.samples)
    samples[-1] = Sample(samples[-1].t, 100, 0, 100, 100, attempts=2)
    result = verdict(Timeline(tuple(samples), tl.markers))
    assert result["collapsed"] is False and result["stalled"] is True
    assert "stalled" in str(result["reason"]) and result["attempts_per_second"] == pytest.approx(0.2)


def test_flat_but_efficient_is_not_a_collapse() -> None:
    result = verdict(series([0.7] * 11, renewals_per_step=5, attempts_per_step=10))
    assert result["collapsed"] is False and result["efficiency"] == pytest.approx(0.5)
    assert "efficiency of 0.500 >= 0.1" in str(result["reason"])


def test_unknown_attempts_judged_by_goodput_and_said_so() -> None:
    stuck = verdict(series([0.0] * 11, attempts_per_step=None))
    assert stuck["collapsed"] is True and stuck["attempts_known"] is False
    assert stuck["attempts_per_second"] is None and stuck["efficiency"] is None
    assert "judged without request counts" in str(stuck["reason"])
    moving = verdict(series([0.5] * 11, renewals_per_step=10, attempts_per_step=None))
    assert moving["collapsed"] is False and "judged without request counts" in str(moving["reason"])


def test_only_samples_inside_the_window_count() -> None:
    # Before the window: recovering; inside: flat and busy; after: recovered.
    before = [Sample(T0 - 5 + i, 100, 10 * i, 100 - 10 * i, 100, attempts=0) for i in range(5)]
    inside = [Sample(T0 + i, 100, 5, 95, 100, attempts=40 * i) for i in range(11)]
    after = [Sample(T0 + 11 + i, 100, 100, 0, 200 + i, attempts=500 + i) for i in range(5)]
    result = verdict(Timeline(tuple(before + inside + after)))
    assert result["collapsed"] is True and result["samples"] == 11


def test_too_few_samples_raise() -> None:
    with pytest.raises(LabError, match="too few to judge a collapse"):
        verdict(series([0.0]))


# --- the baseline: deleted leases are not live ------------------------------------------------


def test_deleted_leases_lower_the_live_fraction() -> None:
    # 100 leases, 90 expired; then the 90 are deleted: 10 of 10 left are live, but 10 of 100 held.
    samples = [Sample(T0, 100, 10, 90, 100), Sample(T0 + 1, 10, 10, 0, 10)]
    points = measure.judge(samples)
    assert [p.fraction for p in points] == [0.1, 0.1]
    assert [p.missing for p in points] == [0, 90] and points[1].not_live == 90
    assert measure.live_fraction(samples[1], baseline=100) == 0.1
    assert measure.time_to_fraction(samples, T0, 0.99) is None
    # the baseline is the largest total seen so far: a table that grows is not penalised
    growing = measure.judge([Sample(T0, 50, 50, 0, 50), Sample(T0 + 1, 100, 100, 0, 100)])
    assert [p.fraction for p in growing] == [1.0, 1.0]


def test_a_collapse_hidden_by_deletes_is_still_a_collapse() -> None:
    # The manager deletes the leases it gives up on: the few left are live, the rest gone.
    samples = [Sample(T0 - 1, 100, 100, 0, 100, attempts=0)]
    samples += [Sample(T0 + i, 5, 5, 0, 100, attempts=50 * (i + 1)) for i in range(11)]
    result = verdict(Timeline(tuple(samples)))
    assert result["collapsed"] is True, result["reason"]
    assert result["max_live_fraction"] == 0.05 and result["missing"] == 95 and result["baseline"] == 100


def test_samples_before_any_lease_are_skipped() -> None:
    # The watcher's first scans find the table still empty; the service writes its leases later.
    samples = [Sample(T0 + i, 0, 0, 0, 0, attempts=0) for i in range(3)]
    samples += [Sample(T0 + 3 + i, 10, 10, 0, 10 + i, attempts=5 * i) for i in range(3)]
    points = measure.judge(samples)
    assert [p.fraction for p in points] == [None, None, None, 1.0, 1.0, 1.0]
    assert measure.time_to_fraction(samples, T0, 1.0) == 3.0
    result = verdict(Timeline(tuple(samples)))
    assert result["samples"] == 3 and result["collapsed"] is False
    assert measure.downsample(Timeline(tuple(samples)))[0]["live_fraction"] is None
    with pytest.raises(LabError, match="too few"):
        verdict(Timeline(tuple(samples[:3])))


# --- pages: each judged when it arrived -----------------------------------------------------------


def test_each_page_is_judged_when_it_arrived() -> None:
    # A long scan: the first page arrived at T0, the last at T0 + 30. A lease of the first
    # page expiring at T0 + 10 was live when read, though expired by the scan's end.
    first = measure.Page(T0, (LeaseItem("a", "o", T0 + 10, 1), LeaseItem("b", "o", T0 - 1, 1)))
    last = measure.Page(T0 + 30, (LeaseItem("c", "o", T0 + 40, 1),))
    sample = measure.sample_of_pages([first, last], attempts=3)
    assert (sample.t, sample.total, sample.live, sample.expired, sample.attempts) == (T0 + 30, 3, 2, 1, 3)
    tracker = measure.DoubleOwnerTracker()
    tracker.feed_pages([first, last])
    # the next scan's first page (T0 + 5) shows "a" taken over while its expiry (T0 + 10) was ahead
    tracker.feed_pages([measure.Page(T0 + 5, (LeaseItem("a", "p", T0 + 60, 2),)),
                        measure.Page(T0 + 35, (LeaseItem("b", "o", T0 - 1, 1), LeaseItem("c", "o", T0 + 40, 1)))])
    assert tracker.takeovers == 1


# --- goodput and time to fraction ---------------------------------------------------------


def test_goodput_counts_version_growth_and_attempts_between_the_outer_samples() -> None:
    rate = measure.goodput(series([0.5] * 6, renewals_per_step=8, attempts_per_step=20).samples,
                           T0 + 0.5, T0 + 4.5)
    assert rate is not None
    assert (rate.start, rate.end, rate.seconds) == (T0 + 1, T0 + 4, 3.0)
    assert rate.renewals == 24 and rate.renewals_per_second == pytest.approx(8.0)
    assert rate.attempts == 60 and rate.attempts_per_second == pytest.approx(20.0)
    assert rate.efficiency == pytest.approx(0.4)


def test_goodput_edge_cases() -> None:
    assert measure.goodput(series([1.0]).samples, T0, T0 + 10) is None
    unknown = measure.goodput(series([1.0] * 3, attempts_per_step=None).samples, T0, T0 + 10)
    assert unknown is not None and unknown.attempts_per_second is None and unknown.efficiency is None
    idle = measure.goodput(series([1.0] * 3, attempts_per_step=0).samples, T0, T0 + 10)
    assert idle is not None and idle.attempts_per_second == 0.0 and idle.efficiency is None
    shrinking = Timeline((Sample(T0, 2, 2, 0, 10), Sample(T0 + 1, 1, 1, 0, 5)))
    rate = measure.goodput(shrinking.samples, T0, T0 + 1)
    assert rate is not None and rate.renewals == 0  # a deleted lease is not negative goodput


def test_time_to_fraction() -> None:
    tl = series([0.0, 0.5, 0.98, 0.99, 1.0])
    assert measure.time_to_fraction(tl.samples, T0, 0.99) == 3.0
    assert measure.time_to_fraction(tl.samples, T0 + 0.5, 0.5) == pytest.approx(0.5)
    assert measure.time_to_fraction(tl.samples, T0, 1.01) is None
    assert measure.time_to_fraction(tl.samples, T0 + 10, 0.0) is None  # nothing after since


def test_sample_of_counts_expiry_at_t_as_expired() -> None:
    items = [LeaseItem("a", "o", T0 + 1, 2), LeaseItem("b", "o", T0, 3), LeaseItem("c", "o", T0 - 1, 4)]
    sample = measure.sample_of(items, T0, attempts=7, double_owned=1)
    assert (sample.total, sample.live, sample.expired, sample.version_sum) == (3, 1, 2, 9)
    assert (sample.attempts, sample.double_owned) == (7, 1)
    assert measure.live_fraction(measure.sample_of([], T0)) is None  # no leases: no fraction


# --- double owners -----------------------------------------------------------------------


def lease(key: str, owner: str, expires_at: float, version: int) -> LeaseItem:
    return LeaseItem(key, owner, expires_at, version)


def test_takeover_of_a_live_lease_counts_a_proper_one_does_not() -> None:
    tracker = measure.DoubleOwnerTracker()
    assert tracker.feed([lease("a", "x", T0 + 10, 1), lease("b", "x", T0 + 1, 1)], T0) == 0
    # a: taken by y while x's lease runs to T0+10; b: taken by y after x's expiry T0+1.
    assert tracker.feed([lease("a", "y", T0 + 20, 2), lease("b", "y", T0 + 20, 2)], T0 + 2) == 1
    assert tracker.takeovers == 1 and tracker.regressions == 0
    assert tracker.examples[0]["key"] == "a" and tracker.examples[0]["previous_owner"] == "x"
    # renewals by the holder never count
    assert tracker.feed([lease("a", "y", T0 + 30, 3), lease("b", "y", T0 + 30, 3)], T0 + 3) == 1


def test_version_regression_counts_unless_the_table_has_no_version() -> None:
    tracker = measure.DoubleOwnerTracker()
    tracker.feed([lease("a", "x", T0 + 10, 5)], T0)
    assert tracker.feed([lease("a", "x", T0 + 10, 4)], T0 + 1) == 1
    assert tracker.regressions == 1 and tracker.examples[0]["kind"] == "version_regression"
    unversioned = measure.DoubleOwnerTracker(versioned=False)
    unversioned.feed([lease("a", "x", T0 + 10, 0)], T0)
    assert unversioned.feed([lease("a", "x", T0 + 10, 0)], T0 + 1) == 0


def test_release_and_acquiring_a_released_lease_are_not_takeovers() -> None:
    tracker = measure.DoubleOwnerTracker()
    tracker.feed([lease("a", "x", T0 + 10, 1)], T0)
    assert tracker.feed([lease("a", "", T0 + 10, 2)], T0 + 1) == 0      # x releases it, expiry untouched
    assert tracker.feed([lease("a", "y", T0 + 20, 3)], T0 + 2) == 0     # y acquires the released lease
    assert tracker.feed([lease("a", "z", T0 + 30, 4)], T0 + 3) == 1     # z takes it from live y: counted


def test_a_lease_deleted_and_created_again_is_new() -> None:
    tracker = measure.DoubleOwnerTracker()
    tracker.feed([lease("a", "x", T0 + 10, 7), lease("b", "x", T0 + 10, 1)], T0)
    assert tracker.feed([lease("b", "x", T0 + 10, 1)], T0 + 1) == 0            # "a" deleted: forgotten
    assert tracker.feed([lease("a", "y", T0 + 20, 1), lease("b", "x", T0 + 10, 1)], T0 + 2) == 0
    assert tracker.regressions == 0 and tracker.takeovers == 0


def test_tracker_memory_is_one_entry_per_lease() -> None:
    tracker = measure.DoubleOwnerTracker()
    for scan in range(200):
        tracker.feed([lease(f"k{i}", "x", T0 + 1000, scan + 1) for i in range(50)], T0 + scan)
    assert len(tracker._last) == 50 and tracker.count == 0


# --- report helpers ---------------------------------------------------------------------------


def test_downsample_keeps_first_and_last_and_at_most_max_points() -> None:
    tl = series([i / 1000 for i in range(1000)])
    points = measure.downsample(tl, 120)
    assert len(points) == 120
    assert points[0]["t"] == T0 and points[-1]["t"] == T0 + 999
    assert sorted(p["t"] for p in points) == [p["t"] for p in points]
    assert len(measure.downsample(series([1.0] * 5))) == 5
    assert set(points[0]) == {"t", "live_fraction", "live", "total", "missing", "version_sum", "attempts",
                              "double_owned"}


def test_sample_gap_is_the_median_recent_gap() -> None:
    assert measure.sample_gap(series([1.0] * 5, step=0.5).samples, 9.0) == 0.5
    assert measure.sample_gap(series([1.0]).samples, 9.0) == 9.0


# --- attempts from the LB log -------------------------------------------------------------------


def test_attempt_counter_attributes_dedupes_and_counts_late_records() -> None:
    log: list[LbRecord] = []

    def fetch(since: float) -> list[LbRecord]:
        return sorted((r for r in log if r.time >= since), key=lambda r: r.time)

    counter = AttemptCounter("svc", fetch, lambda: {"127.0.0.9": "svc"}, start=T0)
    log += [LbRecord(T0 - 1, "lb-1", "127.0.0.9", 1, 0.01),            # before the start
            LbRecord(T0 + 1, "lb-1", "127.0.0.5", 2, 0.01, service="svc"),   # header
            LbRecord(T0 + 2, "lb-2", "127.0.0.5", 3, 0.01, user_agent="Boto3/1 app/svc"),  # app id
            LbRecord(T0 + 3, "lb-1", "127.0.0.9", 4, 0.01),            # source address
            LbRecord(T0 + 3, "lb-1", "127.0.0.8", 5, 0.01),            # someone else
            LbRecord(T0 + 9, "lb-1", "127.0.0.9", 6, 0.01)]            # after `until`
    assert counter.count(until=T0 + 5) == 3
    assert counter.count(until=T0 + 5) == 3  # the same records again: no double count
    # A slow request that arrived at T0+2.5, before the newest one counted, is logged only
    # now; the T0+9 one is due now too.
    log.append(LbRecord(T0 + 2.5, "lb-2", "127.0.0.9", 7, 5.0))
    assert counter.count(until=T0 + 10) == 5


def test_attempt_counter_reaches_back_over_the_queue_wait() -> None:
    # DynamoDB's queue holds 30 s of work: a request that arrived at T0+20 is logged only
    # once served, after later requests (up to T0+40) were logged and counted.
    log: list[LbRecord] = []

    def fetch(since: float) -> list[LbRecord]:
        return [r for r in log if r.time >= since]

    queued = [0.0]
    counter = AttemptCounter("svc", fetch, lambda: {}, start=T0, queue_wait=lambda: queued[0])
    log.append(LbRecord(T0 + 1, "lb-1", "127.0.0.5", 1, 0.01, service="svc"))
    assert counter.count(until=T0 + 2) == 1
    queued[0] = 30.0  # the queue has grown: latencies jump before any slow request is logged
    log.append(LbRecord(T0 + 40, "lb-1", "127.0.0.5", 2, 0.01, service="svc"))
    assert counter.count(until=T0 + 41) == 2
    log.append(LbRecord(T0 + 20, "lb-2", "127.0.0.5", 3, 25.0, service="svc"))  # logged late
    assert counter.count(until=T0 + 46) == 3
