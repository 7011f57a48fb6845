"""Retry measurements on scripted traffic whose right answers are known exactly.

Times are offset by half a step (x.05) so no event sits on a window boundary.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

from chaos_dynamo.calllog import Attempt, Call, CallLogWriter, log_path
from chaos_dynamo.clock import FakeClock
from chaos_dynamo.dns.server import QueryRecord
from chaos_dynamo.errors import ConfigError, LabError
from chaos_dynamo.lab.state import EndpointInfo, LabInfo, write_state
from chaos_dynamo.lbfleet._state import RequestRecord
from chaos_dynamo.retry import measure, probes
from chaos_dynamo.retry.measure import UNATTRIBUTED, Window
from chaos_dynamo.services import registry
from chaos_dynamo.tolerances import at_least, at_most

EP = "dynamodb.us-east-1.amazonaws.com"
SVC = "checkout"
ADDR = "127.0.0.120"
T0 = 1000.0  # baseline [1000, 1010), outage [1010, 1020), recovery [1020, 1030)
OUTAGE_TIMELINE = [
    {"time": 0.0, "endpoint": EP, "addresses": 3},
    {"time": 1010.0, "endpoint": EP, "addresses": 0},
    {"time": 1020.0, "endpoint": EP, "addresses": 3},
]


def request(t: float, app: str | None = SVC, client: str = "127.0.0.1", service: str = "") -> RequestRecord:
    return RequestRecord(time=t, lb="lb-1", client=client, client_port=40000, operation="GetItem",
                         status=200, latency=0.001, user_agent=f"Boto3/1.40 md/x{' app/' + app if app else ''}",
                         service=service)


def query(t: float, qtype: str = "A", answers: int = 3, rcode: str = "NOERROR", client: str = ADDR,
          name: str = EP + ".") -> QueryRecord:
    return QueryRecord(time=t, client=client, client_port=5000, name=name, qtype=qtype, rcode=rcode,
                       answers=answers, transport="udp")


def every(start: float, end: float, rate: float) -> list[float]:
    """Times at a fixed rate in [start, end), half a step in."""
    step = 1.0 / rate
    n = round((end - start) * rate)
    return [start + (i + 0.5) * step for i in range(n)]


def lookups(times: Iterable[float], answers: int) -> list[QueryRecord]:
    """One getaddrinfo per time: an A and an AAAA query (IPv4-only endpoint: AAAA is empty)."""
    out = []
    for t in times:
        out += [query(t, "A", answers), query(t + 0.0001, "AAAA", 0)]
    return out


def windows(timeline: list[dict[str, Any]] = OUTAGE_TIMELINE, now: float = 1100.0, **kw: Any) -> measure.Windows:
    return measure.find_windows(timeline, EP, now, kw.pop("baseline_seconds", 10.0),
                                kw.pop("recovery_seconds", 10.0), **kw)


def naive() -> tuple[list[RequestRecord], list[QueryRecord]]:
    """10 req/s at baseline (1 lookup/s); 50 failed lookups/s while empty; a herd of 40 in the
    first second back, then 10/s."""
    requests = [request(t) for t in every(1000, 1010, 10)]
    requests += [request(t) for t in every(1020, 1021, 40) + every(1021, 1030, 10)]
    queries = lookups(every(1000, 1010, 1), 3) + lookups(every(1010, 1020, 50), 0) + lookups(every(1020, 1030, 1), 3)
    return requests, queries


def hardened() -> tuple[list[RequestRecord], list[QueryRecord]]:
    """Same baseline; while empty a breaker lets 2 lookups/s through; back at 10/s, at most
    12 in any second."""
    requests = [request(t) for t in every(1000, 1010, 10)]
    requests += [request(t) for t in every(1020, 1021, 12) + every(1021, 1030, 10)]
    queries = lookups(every(1000, 1010, 1), 3) + lookups(every(1010, 1020, 2), 0) + lookups(every(1020, 1030, 1), 3)
    return requests, queries


def traffic(requests: list[Any], queries: list[Any], by_address: dict[str, str] | None = None) -> measure.Traffic:
    return measure.attribute(requests, queries, SVC, EP, {ADDR: SVC} if by_address is None else by_address)


# --- windows ---------------------------------------------------------------------------


def test_windows_after_an_outage() -> None:
    w = windows()
    assert w.kind == measure.OUTAGE
    assert (w.baseline, w.outage, w.recovery) == (Window(1000, 1010), Window(1010, 1020), Window(1020, 1030))
    assert w.span == Window(1010, 1030)


def test_windows_take_the_most_recent_outage_of_that_endpoint_only() -> None:
    timeline = [*OUTAGE_TIMELINE,
                {"time": 1040.0, "endpoint": "DynamoDB.us-east-1.amazonaws.com.", "addresses": 0},
                {"time": 1043.0, "endpoint": EP.upper(), "addresses": 2},
                {"time": 1050.0, "endpoint": "dynamodb-fips.us-east-1.amazonaws.com", "addresses": 0}]
    w = windows(timeline, baseline_seconds=5, recovery_seconds=4)
    assert (w.baseline, w.outage, w.recovery) == (Window(1035, 1040), Window(1040, 1043), Window(1043, 1047))


def test_an_ongoing_outage_ends_now_with_no_recovery() -> None:
    w = windows(OUTAGE_TIMELINE[:2], now=1015.0)
    assert w.kind == measure.ONGOING
    assert (w.outage, w.recovery.seconds) == (Window(1010, 1015), 0.0)


def test_no_outage_compares_the_two_halves_of_the_latest_baseline() -> None:
    w = windows(OUTAGE_TIMELINE[:1], now=1100.0)
    assert w.kind == measure.STEADY
    assert (w.baseline, w.outage, w.recovery) == (Window(1090, 1095), Window(1095, 1100), Window(1095, 1100))


def test_an_outage_over_before_the_service_started_does_not_count() -> None:
    w = windows(now=1100.0, started_at=1025.0)
    assert w.kind == measure.STEADY


def test_not_enough_history_is_a_lab_error_saying_how_long_to_wait() -> None:
    with pytest.raises(LabError, match=r"not run long enough: it started 5.0 s ago.*10 s; wait 5.0 s"):
        windows(OUTAGE_TIMELINE[:1], now=1100.0, started_at=1095.0)
    with pytest.raises(LabError, match=r"went empty 4.0 s after it started.*at most 4"):
        windows(started_at=1006.0)
    with pytest.raises(LabError, match=r"went empty 2.0 s before service 'x' started"):
        windows(started_at=1012.0, subject="service 'x'")


@pytest.mark.parametrize("bad", [0, -1, True, "10", float("nan"), 1e9])
def test_bad_durations_are_config_errors_naming_the_field(bad: Any) -> None:
    with pytest.raises(ConfigError, match="^baseline_seconds: "):
        windows(baseline_seconds=bad)
    with pytest.raises(ConfigError, match="^recovery_seconds: "):
        windows(recovery_seconds=bad)


# --- attribution ---------------------------------------------------------------------------


def test_attribution_by_header_app_id_and_address_keeps_unattributed_traffic() -> None:
    requests = [request(1000.1, app=None, service=SVC), request(1000.2), request(1000.3, app=None, client=ADDR),
                request(1000.4, app="billing"), request(1000.5, app=None), request(1000.6, app=None)]
    queries = [query(1000.1), query(1000.2, client="127.0.0.1"), query(1000.3, name="other.example.com.")]
    t = traffic(requests, queries)
    assert t.lb == (1000.1, 1000.2, 1000.3)
    assert t.dns == (1000.1,) and t.dns_scope == "service" and t.notes == ()
    assert t.owners(Window(1000, 1001)) == {"lb": {SVC: 3, UNATTRIBUTED: 2, "billing": 1},
                                            "dns": {SVC: 1, UNATTRIBUTED: 1}}


def test_without_a_source_address_dns_counts_every_query_for_the_name_and_says_so() -> None:
    t = traffic([], [query(1000.1), query(1000.2, client="127.0.0.1"), query(1000.3, name="x.example.com.")],
                by_address={})
    assert t.dns == (1000.1, 1000.2) and t.dns_scope == "all"
    assert "no query for" in t.notes[0] and "count every query" in t.notes[0]


def test_a_recorded_address_no_query_came_from_counts_every_query_too() -> None:
    """A service in another language: its resolver does not send from the recorded address."""
    t = traffic([], [query(1000.1, client="127.0.0.1"), query(1000.2, client="127.0.0.1")])
    assert t.dns == (1000.1, 1000.2) and t.dns_scope == "all" and t.notes


def test_a_lookup_is_max_of_a_and_aaaa_and_empty_aaaa_is_normal_on_an_ipv4_endpoint() -> None:
    queries = lookups([1000.1, 1000.2], 3) + lookups([1000.3, 1000.4, 1000.5], 0)
    queries += [query(1000.6, "A", 0, "NXDOMAIN"), query(1000.6, "AAAA", 0, "NXDOMAIN"),
                query(1000.7, "AAAA", 0, "SERVFAIL"), query(1000.8, "MX", 0)]
    t = traffic([], queries)
    assert t.failed_lookups(Window(1000, 1001)) == 4  # 3 empty A + 1 NXDOMAIN; AAAA: NX + SERVFAIL = 2
    dual = measure.attribute([], lookups([1000.1], 0) + [query(1000.2, "AAAA", 0)], SVC, EP, {ADDR: SVC},
                             served_types=("A", "AAAA"))
    assert dual.failed_lookups(Window(1000, 1001)) == 2


# --- retry amplification ---------------------------------------------------------------------


def test_amplification_of_a_storm_is_exact_and_fails_the_default_tolerance() -> None:
    result = measure.retry_amplification(traffic(*naive()), windows())
    assert result.value == pytest.approx(5.0)  # 50 failed lookups/s over 10 requests/s
    assert result.details["attempts"]["outage"] == {"lb_requests": 0, "failed_lookups": 500, "attempts": 500,
                                                    "per_second": 50.0}
    assert result.details["attempts"]["recovery"]["attempts"] == 130
    assert not at_most(result.value, limit=2)


def test_amplification_of_a_hardened_service_passes() -> None:
    result = measure.retry_amplification(traffic(*hardened()), windows())
    assert result.value == pytest.approx(1.02)  # recovery: 102 requests in 10 s
    assert at_most(result.value, limit=2)


def test_amplification_recovery_can_be_the_worse_window() -> None:
    requests, queries = hardened()
    requests += [request(t) for t in every(1022, 1023, 300)]
    assert measure.retry_amplification(traffic(requests, queries), windows()).value == pytest.approx(4.02)


def test_amplification_floors_an_idle_baseline_at_one_attempt() -> None:
    result = measure.retry_amplification(traffic([], lookups(every(1010, 1020, 3), 0)), windows())
    assert result.value == pytest.approx(30.0)  # 3/s over 1 attempt per 10 s
    assert result.details["baseline_floored"]


def test_amplification_at_steady_state_is_one() -> None:
    requests = [request(t) for t in every(1000, 1020, 10)]
    w = windows(OUTAGE_TIMELINE[:1], now=1020.0)
    assert measure.retry_amplification(traffic(requests, lookups(every(1000, 1020, 1), 3)), w).value == 1.0


def test_amplification_during_an_ongoing_outage_uses_the_outage_so_far() -> None:
    requests, queries = naive()
    result = measure.retry_amplification(traffic(requests, queries), windows(OUTAGE_TIMELINE[:2], now=1015.0))
    assert result.value == pytest.approx(5.0)
    assert "recovery" not in result.details["attempts"]


def test_other_services_traffic_does_not_count_but_is_reported() -> None:
    requests, queries = hardened()
    requests += [request(t, app="billing") for t in every(1010, 1020, 100)]
    requests += [request(t, app=None) for t in every(1010, 1020, 7)]
    queries += [query(t, answers=0, client="127.0.0.1") for t in every(1010, 1020, 100)]
    result = measure.retry_amplification(traffic(requests, queries), windows())
    assert result.value == pytest.approx(1.02)
    owners = result.details["owners"]
    assert owners["lb"] == {SVC: 102, UNATTRIBUTED: 70, "billing": 1000}
    assert owners["dns"] == {SVC: 40 + 20, UNATTRIBUTED: 1000}


# --- attempts per call -----------------------------------------------------------------------


def call(start: float, attempts: list[tuple[float, float | None]], pid: int = 1, ended: bool = True,
         dns: bool = True) -> Call:
    tried = tuple(Attempt(i + 1, s, e, None if dns else 500, "EndpointConnectionError" if dns else None, dns)
                  for i, (s, e) in enumerate(attempts))
    last = attempts[-1] if attempts else (start, start)
    end = (last[1] or last[0]) if ended else None
    return Call(f"{pid}-{start}", SVC, pid, "GetItem", start, end, False if ended else None, None, tried)


def spaced(start: float, gaps: list[float], pid: int = 1, duration: float = 0.001, ended: bool = True) -> Call:
    """A call whose attempts last ``duration`` and are ``gaps`` apart (end to start)."""
    attempts, t = [], start
    for gap in [0.0, *gaps]:
        t += gap
        attempts.append((t, t + duration))
        t += duration
    return call(start, attempts, pid, ended)


def test_attempts_per_call_exact_statistics() -> None:
    calls = [spaced(1011.05 + i, [0.05] * (n - 1)) for i, n in enumerate([1, 4, 4, 4, 10])]
    calls += [spaced(1005.05, [0.05] * 20), spaced(1031.05, [0.05] * 20)]  # outside the span
    calls += [call(1012.55, [])]  # never sent an attempt
    calls += [spaced(1029.05, [0.05] * 6, ended=False)]  # still retrying: 7 so far
    w = windows()
    values = {s: measure.attempts_per_call(calls, w, s).value for s in measure.STATISTICS}  # type: ignore[union-attr]
    assert values == {"max": 10.0, "mean": 5.0, "p50": 4.0, "p95": 10.0, "p99": 10.0}
    details = measure.attempts_per_call(calls, w, "max").details  # type: ignore[union-attr]
    assert (details["calls"], details["in_flight"], details["histogram"]) == (6, 1, {1: 1, 4: 3, 7: 1, 10: 1})
    assert not at_most(values["max"], limit=4) and at_most(values["p50"], limit=4)


def test_attempts_per_call_is_none_without_calls_in_the_window() -> None:
    assert measure.attempts_per_call([spaced(1005.0, [0.1])], windows()) is None
    with pytest.raises(ConfigError, match="^statistic: 'median'"):
        measure.attempts_per_call([], windows(), "median")


def test_percentile_is_nearest_rank() -> None:
    values = list(range(1, 101))
    assert [measure.percentile(values, p) for p in (50, 95, 99, 100)] == [50, 95, 99, 100]
    assert measure.percentile([7], 99) == 7


def test_estimated_attempts_per_call_from_server_side_counts() -> None:
    result = measure.estimated_attempts_per_call(traffic(*naive()), windows())
    assert result.value == pytest.approx(630 / 200)  # (500 failed lookups + 130 requests) / (10/s * 20 s)
    assert result.details["estimated"]
    assert measure.estimated_attempts_per_call(traffic(*hardened()), windows()).value == pytest.approx(122 / 200)


# --- DNS storm ---------------------------------------------------------------------------------


def test_dns_storm_exact_fail_and_pass() -> None:
    storm = measure.dns_query_storm(traffic(*naive()), windows())
    assert storm.value == pytest.approx(10.0)  # 100 queries/s over a pace of 10 requests/s
    assert storm.details["baseline_qps"] == pytest.approx(2.0)
    assert not at_most(storm.value, limit=6)
    calm = measure.dns_query_storm(traffic(*hardened()), windows())
    assert calm.value < 1 and at_most(calm.value, limit=6)


def test_dns_storm_is_over_the_baseline_pace_floored_at_min_baseline_qps() -> None:
    requests, queries = naive()
    quiet = [q for q in queries if q.time >= 1010]  # the service never looked the name up at baseline
    assert measure.dns_query_storm(traffic(requests, quiet), windows()).value == pytest.approx(10.0)
    idle = [r for r in requests if r.time >= 1010]  # ... and made no request at baseline
    assert measure.dns_query_storm(traffic(idle, quiet), windows()).value == pytest.approx(100.0)
    assert measure.dns_query_storm(traffic(idle, quiet), windows(), 20.0).value == pytest.approx(5.0)
    with pytest.raises(ConfigError, match="^min_baseline_qps: "):
        measure.dns_query_storm(traffic(idle, quiet), windows(), 0)


# --- recovery herd --------------------------------------------------------------------------------


def test_recovery_herd_exact_fail_and_pass() -> None:
    herd = measure.recovery_herd(traffic(*naive()), windows())
    assert herd is not None and herd.value == pytest.approx(4.0)
    assert herd.details["bins"] == [40] + [10] * 9
    assert not at_most(herd.value, limit=3)
    calm = measure.recovery_herd(traffic(*hardened()), windows())
    assert calm is not None and calm.value == pytest.approx(1.2) and at_most(calm.value, limit=3)


def test_recovery_herd_bins_and_tail() -> None:
    requests, queries = naive()
    half = measure.recovery_herd(traffic(requests, queries), windows(), bin_seconds=0.5)
    assert half is not None and half.value == pytest.approx(4.0) and len(half.details["bins"]) == 20
    odd = measure.recovery_herd(traffic(requests, queries), windows(), bin_seconds=3)
    assert odd is not None and odd.details["bins"] == [60, 30, 30]  # the 1 s tail is left out
    with pytest.raises(ConfigError, match="^bin_seconds: 11 s is longer"):
        measure.recovery_herd(traffic(requests, queries), windows(), bin_seconds=11)


def test_recovery_herd_waits_for_a_recovery() -> None:
    assert measure.recovery_herd(traffic(*naive()), windows(OUTAGE_TIMELINE[:2], now=1015.0)) is None


def test_steady_state_herd_of_an_even_pace_is_one() -> None:
    requests = [request(t) for t in every(1000, 1020, 10)]
    herd = measure.recovery_herd(traffic(requests, []), windows(OUTAGE_TIMELINE[:1], now=1020.0))
    assert herd is not None and herd.value == 1.0


def test_empty_windows_give_zero_not_errors() -> None:
    t = traffic([], [])
    w = windows()
    assert measure.retry_amplification(t, w).value == 0.0
    assert measure.dns_query_storm(t, w).value == 0.0
    assert measure.recovery_herd(t, w).value == 0.0  # type: ignore[union-attr]
    assert measure.estimated_attempts_per_call(t, w).value == 0.0
    assert measure.request_rate(t, Window(1000, 1010)) == 0.0


# --- backoff shape -------------------------------------------------------------------------------------


def test_backoff_of_capped_exponential_full_jitter_is_ok() -> None:
    rng = random.Random(7)
    calls = [spaced(1010.05 + i * 0.37, [rng.uniform(0, 0.1 * 2 ** k) for k in range(4)], pid=1 + i % 3)
             for i in range(40)]
    shape = measure.backoff_shape(calls, windows())
    assert shape["calls"] == 40 and 1.5 < shape["growth"] < 3.0 and 0.4 < shape["jitter"] < 0.75
    assert shape["growing"] and shape["jittered"] and not shape["lockstep"] and shape["ok"]
    assert at_least(shape["growth"], limit=1.5) and at_least(shape, limit=0.1, key="jitter")


def test_backoff_exact_growth_and_jitter() -> None:
    calls = [spaced(1011.05, [0.05, 0.1, 0.2]), spaced(1012.05, [0.15, 0.3, 0.6])]
    shape = measure.backoff_shape(calls, windows())
    assert shape["growth"] == pytest.approx(2.0)
    assert shape["jitter"] == pytest.approx(0.5)  # each k: values x and 3x -> sd x / mean 2x
    assert shape["median_gaps"] == pytest.approx([0.1, 0.2, 0.4])


def test_backoff_without_jitter_fails_jitter() -> None:
    calls = [spaced(1010.05 + i, [0.05, 0.1, 0.2, 0.4, 0.8]) for i in range(5)]
    shape = measure.backoff_shape(calls, windows())
    assert shape["growth"] == pytest.approx(2.0) and shape["jitter"] == pytest.approx(0.0, abs=1e-9)
    assert shape["growing"] and not shape["jittered"] and not shape["ok"]


def test_immediate_retries_do_not_grow() -> None:
    calls = [spaced(1010.05 + i, [0.0] * 30) for i in range(5)]
    shape = measure.backoff_shape(calls, windows())
    assert shape["growth"] == 1.0 and not shape["growing"] and not shape["ok"]
    assert not at_least(shape["growth"], limit=1.5)


def test_instances_retrying_in_lockstep_are_synchronized() -> None:
    gaps = [0.05, 0.1, 0.2, 0.4]
    lockstep = [spaced(1011.05, gaps, pid=p) for p in (10, 11, 12)]
    shape = measure.backoff_shape(lockstep, windows())
    assert shape["synchronized"] == 1.0 and shape["synchronized_by_chance"] < 0.01 and shape["lockstep"]
    assert not shape["ok"] and shape["instances"] == 3
    apart = [spaced(1011.05 + 0.5 * p, gaps, pid=p) for p in (10, 11, 12)]
    shape = measure.backoff_shape(apart, windows())
    assert shape["synchronized"] == 0.0 and not shape["lockstep"]
    single = measure.backoff_shape([spaced(1011.05, gaps)], windows())
    assert single["synchronized"] == 0.0 and single["synchronized_by_chance"] == 0.0


def test_backoff_with_no_retried_call_has_no_numbers_and_is_not_ok() -> None:
    shape = measure.backoff_shape([spaced(1011.05, [])], windows())
    assert shape["calls"] == 0 and shape["growth"] is None and shape["jitter"] is None
    assert shape["synchronized"] is None and not shape["ok"]
    json.dumps(shape)  # journal-safe: no NaN, no objects


# --- the probes' observation, on a fake lab and a fake clock -----------------------------------------


class FakeLab:
    def __init__(self, timeline: list[dict[str, Any]], requests: list[Any], queries: list[Any]) -> None:
        self.timeline, self.requests, self.queries = timeline, requests, queries
        self.reads: list[float] = []

    def availability(self, endpoint: str) -> list[dict[str, Any]]:
        return self.timeline

    def lb_log(self, since: float) -> list[Any]:
        self.reads.append(since)
        return [r for r in self.requests if r.time >= since]

    def dns_log(self, since: float) -> list[Any]:
        return [q for q in self.queries if q.time >= since]


@pytest.fixture
def state(tmp_path: Path) -> Path:
    """A state file naming a (not running) lab at loopback addresses, started at 900."""
    path = tmp_path / "lab.json"
    info = LabInfo(pid=1, api_url="http://127.0.0.1:1", dns_host="127.0.0.1", dns_port=1, lb_port=1,
                   region="us-east-1", emulator_url="http://127.0.0.1:2", embedded=True, seed=1,
                   plan_table="t", record_ttl=1, propagation_delay=0.0, started_at=900.0,
                   endpoints=(EndpointInfo(EP, "us-east-1.amazonaws.com", "Z1", False),))
    write_state(info, path)
    return path


def record(state: Path, started_at: float = 950.0, address: str = ADDR) -> None:
    registry.write_record(registry.ServiceRecord(SVC, "standard", ("python",), address, (), started_at), state)


def test_observe_waits_for_the_recovery_window_to_close(state: Path) -> None:
    record(state)
    clock = FakeClock(start=1022.0)
    lab = FakeLab(OUTAGE_TIMELINE, *naive())
    obs = probes.observe(SVC, "", 10.0, 10.0, {"chaos_dynamo_state": str(state)}, source=lab, clock=clock)
    assert clock.now() == pytest.approx(1030.0 + probes.LOG_GRACE)
    assert lab.reads == [1000.0] and obs.windows.kind == measure.OUTAGE and obs.traffic.dns_scope == "service"
    result = probes.measure_all(obs)
    assert result["amplification"]["value"] == pytest.approx(5.0)
    assert result["recovery_herd"]["value"] == pytest.approx(4.0)
    assert result["attempts_per_call"]["details"]["estimated"]
    assert result["backoff"]["value"] is None and "no call log" in result["backoff"]["skipped"]


def test_observe_does_not_wait_in_steady_state_and_needs_history(state: Path) -> None:
    record(state, started_at=1092.0)
    clock = FakeClock(start=1100.0)
    lab = FakeLab(OUTAGE_TIMELINE[:1], [], [])
    with pytest.raises(LabError, match="service 'checkout' has not run long enough"):
        probes.observe(SVC, "", 10.0, 10.0, {"chaos_dynamo_state": str(state)}, source=lab, clock=clock)
    obs = probes.observe(SVC, "", 5.0, 10.0, {"chaos_dynamo_state": str(state)}, source=lab, clock=clock)
    assert obs.windows.kind == measure.STEADY and clock.now() == 1100.0


def test_observe_without_a_record_notes_it_and_counts_all_dns(state: Path) -> None:
    clock = FakeClock(start=1040.0)
    obs = probes.observe(SVC, "", 10.0, 10.0, {"chaos_dynamo_state": str(state)},
                         source=FakeLab(OUTAGE_TIMELINE, *naive()), clock=clock)
    assert obs.traffic.dns_scope == "all" and len(obs.notes) == 2
    assert "is not recorded" in obs.notes[0]


def test_measure_all_reads_the_call_log(state: Path) -> None:
    record(state)
    calls_dir = registry.calls_dir(state)
    writer = CallLogWriter(log_path(calls_dir, SVC, 4242))
    for i, gaps in enumerate([[0.05, 0.1, 0.2], [0.15, 0.3, 0.6]]):
        c = spaced(1011.05 + i, gaps, pid=4242)
        writer.write({"e": "call", "id": c.id, "t": c.start, "op": "GetItem", "svc": SVC, "pid": 4242})
        for a in c.attempts:
            writer.write({"e": "attempt", "id": c.id, "t": a.start, "n": a.number})
            writer.write({"e": "outcome", "id": c.id, "t": a.end, "n": a.number, "status": None,
                          "error": "EndpointConnectionError", "dns": True})
        writer.write({"e": "end", "id": c.id, "t": c.end, "ok": False, "error": "EndpointConnectionError"})
    writer.close()
    obs = probes.observe(SVC, "", 10.0, 10.0, {"chaos_dynamo_state": str(state)},
                         source=FakeLab(OUTAGE_TIMELINE, *naive()), clock=FakeClock(start=1040.0))
    result = probes.measure_all(obs)
    assert result["attempts_per_call"]["value"] == 4.0 and not result["attempts_per_call"]["details"]["estimated"]
    assert result["attempts_per_call"]["details"]["dns_failures"] == 8
    assert result["backoff"]["details"]["growth"] == pytest.approx(2.0)
    assert result["backoff"]["value"] is True
    json.dumps(result)


def test_probes_retry_executable_reports_a_missing_lab_as_exit_2(state: Path) -> None:
    import subprocess
    import sys

    done = subprocess.run([sys.executable, str(Path(__file__).resolve().parents[2] / "probes" / "retry"), SVC,
                           "--state", str(state)], capture_output=True, text=True, timeout=60)
    verdict = json.loads(done.stdout)
    assert done.returncode == 2 and verdict["ok"] is False
    assert verdict["error"].startswith("LabError: lab API http://127.0.0.1:1/_chaos_dynamo/availability")
    done = subprocess.run([sys.executable, str(Path(__file__).resolve().parents[2] / "probes" / "retry")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "usage:" in json.loads(done.stdout)["error"]
