"""The storm benchmark in its quickest mode, on the session lab: it produces its figures, and
the lab counts exactly what the services sent (a correctness property, not a speed one).

Rates are machine-dependent and are only checked to exist: they go in the bench output.
"""

from __future__ import annotations

import math

import pytest

from bench import bench_storm
from chaos_dynamo.lab.lab import Lab

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

FIGURES = ("hardened: LB rate, baseline", "naive: DNS rate, DNS storm",
           "ratio naive DNS storm / hardened", "naive: LB rate, LB storm",
           "ratio naive LB storm / hardened", "DNS counted / sent", "LB counted / sent",
           "lab DNS dropped + errors", "LB dropped + bad requests")


def test_quick_storm_counts_every_query_and_request(lab: Lab, restore_after: None) -> None:
    result = bench_storm.measure(lab, quick=True)

    metrics = {m.name: m for m in result.metrics}
    assert set(FIGURES) <= set(metrics)
    for name in FIGURES:
        assert math.isfinite(metrics[name].value), name
    summary, details = result.details["summary"], result.details
    # Every service process exited cleanly on SIGTERM and wrote its own counts.
    assert all(code == 0 for code in details["exit_codes"].values()), details["exit_codes"]
    # The storms happened: naive attempts failed at DNS, and reached the failing LBs.
    assert summary["naive_dns_failures"] > 0
    assert summary["naive_lb_rate_lb_storm"] > 0 and summary["hardened_lb_rate"] > 0
    # counted == sent, per service: DNS queries (by source address) against the queries
    # the process itself sent; LB requests (by SDK app id) against the call log's attempts
    # that got an HTTP status. An attempt with no response (cut off by the exit on a loaded
    # machine, or failed after sending) may or may not have reached the LB, so each widens
    # the range by one upwards; a dropped request never passes.
    for name, sent in details["sent"].items():
        counted = details["counted"][name]
        assert sent["process"]["sent"] > 0, name
        assert counted["dns"] == sent["process"]["sent"], (name, counted, sent)
        assert sent["lb_requests"] > 0, (name, sent)
        assert bench_storm.lb_within(counted["lb"], sent), (name, counted, sent)
        assert sent["process"]["call_log_dropped"] == 0, name
    assert summary["dns_counted"] == summary["dns_sent"]
    assert metrics["DNS counted / sent"].ok and metrics["LB counted / sent"].ok
    assert details["lb_log_complete"]
