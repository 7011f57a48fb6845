"""The failover benchmark at its smallest sizes, on the session lab: every figure is produced,
the numbers are sane (every query answered right, churn really flipped, the checkers kept
their schedule, the failing LB left the answer no sooner than its checkers could tell and
came back), and the lab is left as it was.

Speeds are machine-dependent and only checked loosely: they go in the bench output.
"""

from __future__ import annotations

import math

import pytest

from bench import bench_failover
from bench.bench_failover import SMOKE
from chaos_dynamo.lab.lab import Lab
from chaos_dynamo.lab.state import LabInfo

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def figures(s: bench_failover.Settings) -> list[str]:
    rows = [f"bare DNS, {name}: max qps" for name, _, _ in bench_failover.VARIANTS]
    rows += ["ratio checked / plain qps", "churn cost: checked / churn qps",
             "churn + timeline cost: checked / that qps", "lab DNS, no checks: max qps",
             "ratio lab / bare LabDNS qps"]
    for count, regions in s.checks:
        label = f"{count} checks x {regions} regions"
        rows += [f"{label}: probes achieved / scheduled", f"{label}: lab CPU per 1,000 probes",
                 f"{label}: lab DNS qps checking / none", f"{label}: failing LB out of answer",
                 f"{label}: LB back in answer"]
    return rows


def test_readme_record_is_read_from_the_benchmarks_table() -> None:
    text = ("Measured on the 2-core CI machine (load average 2-3):\n\n| | measured | target |\n"
            "|---|---|---|\n| DNS, flat out (32 in flight) | 16,700-22,000 queries/s "
            "(dnsperf: 20,100-23,400) | >= 5,000 |\n")
    assert bench_failover.readme_dns_record(text) == {
        "py_closed_low": 16_700.0, "py_closed_high": 22_000.0, "dnsperf_low": 20_100.0,
        "dnsperf_high": 23_400.0, "load": "2-3"}
    assert bench_failover.readme_dns_record("no table here") is None


def test_smoke_run_produces_every_figure_with_sane_numbers(lab: Lab, lab_info: LabInfo) -> None:
    faults_before = {lb.name: lb.faults() for lb in lab.fleet or ()}
    result = bench_failover.measure(lab_info, SMOKE)

    assert [m.name for m in result.metrics] == figures(SMOKE)
    for metric in result.metrics:
        assert math.isfinite(metric.value), metric
        # CPU is read in clock ticks: a short quiet window may show none.
        assert metric.value > 0 or (metric.value == 0 and "CPU" in metric.name), metric
    d = result.details

    # The bare LabDNS answered every query right in every variant; churn flipped about
    # every 50 ms (loosely: a busy machine delays the flipping thread), steady ones never.
    summary = d["churn"]["summary"]
    for name, _, churn in bench_failover.VARIANTS:
        v = summary[name]
        assert v["answered"] > 0 and v["wrong"] == 0, (name, v)
        if churn == "off":
            assert v["flips"] == 0, (name, v)
        else:
            assert 5 <= v["flips_per_s"] <= 1.5 / bench_failover.CHURN_EVERY, (name, v)
    lab_dns = d["lab_dns"]
    assert lab_dns["wrong"] == 0 and lab_dns["lab_qps"] > 0 and lab_dns["bare_qps"] > 0

    # The checkers kept their schedule; nothing failed while the LB was healthy.
    capacity = d["capacity"]
    (config,) = capacity["configs"]
    assert config["probes"] > 0 and config["skipped"] == 0 and config["failures"] == 0, config
    assert 0.5 <= config["ratio"] <= 1.5, config
    assert config["dns_wrong"] == 0
    # The failing LB left the answer through its health check, not sooner than the last of
    # the 3 staggered checkers could see it (2/3 of an interval after the fault at the
    # earliest), and came back; the entries are the answer timeline's.
    theory = capacity["theory_s"]
    down, up = config["down"], config["up"]
    lb = next(lb for lb in lab_info.load_balancers if lb["name"] == capacity["lb"])
    assert down["cause"] == "health" and lb["address"] not in down["addresses"], down
    assert 0.5 * theory <= down["seconds"] <= SMOKE.reaction_timeout, down
    assert down["check_seconds"] <= down["seconds"] + 0.05, down
    assert up["cause"] == "health" and lb["address"] in up["addresses"], up
    assert 0 < up["seconds"] <= SMOKE.reaction_timeout, up

    # The lab is as it was: no check, no pool record, no LB fault left behind.
    assert capacity["checks_after"] == capacity["checks_before"]
    assert capacity["lb_faults_after"]["unhealthy"] is False
    assert {lb.name: lb.faults() for lb in lab.fleet or ()} == faults_before
    assert lab.answers(capacity["pool"])[-1]["addresses"] == []
