"""The lease benchmark at its smallest sizes, on the session lab: every figure is produced,
and the numbers are sane (every lease live, nothing acknowledged missing from the table, the
emulator slower than a store that costs nothing, the model faster than real time).

Speeds are machine-dependent and only checked loosely: they go in the bench output.
"""

from __future__ import annotations

import math

import pytest

from bench import bench_lease
from bench.bench_lease import SMOKE
from chaos_dynamo.lab.state import LabInfo

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def figures(s: bench_lease.Settings) -> list[str]:
    lab, big = f"{s.lab_items:,}", f"{s.model_items:,}"
    rows = [f"probe {s.lab_items // 10:,} items: via emulator"]
    rows += [f"probe {n} items: {path}" for n in (lab, big)
             for path in ("via emulator", "client only", "decode+measure")]
    return rows + ["emulator cost per item", f"ratio emulator / client, {lab}",
                   f"ratio emulator / client, {big}", "fleet setup (table + leases)",
                   f"fleet renewals/s (target {s.target_rate:,.0f})",
                   "fleet behind schedule, end", "fleet peak 2-s rate (catch-up)", "fleet: min leases held",
                   "lab: leases live at stop", "lab writes / acknowledged",
                   "ramp: max sustained renewals/s",
                   f"model {s.model_leases:,}, steady: sim s / wall s",
                   f"model {s.model_leases:,}, {s.outage[1] - s.outage[0]:g} s outage: "
                   "sim s / wall s"]


def test_pages_are_cut_at_one_megabyte_as_dynamodb_cuts_them() -> None:
    items = bench_lease.lease_items(40_000, 1_700_000_000.5)
    pages = bench_lease.dynamodb_pages(items)
    assert len(pages) >= 2
    assert [i for page in pages for i in page] == items
    sizes = [sum(bench_lease.item_size(i) for i in page) for page in pages]
    assert all(size <= bench_lease.PAGE_BYTES for size in sizes)
    assert all(size + bench_lease.item_size(nxt[0]) > bench_lease.PAGE_BYTES
               for size, nxt in zip(sizes, pages[1:], strict=False))
    # Name + value: lease_id 8 + "host-00000" 10, owner 5 + "bench-lease-0" 13, expires_at
    # 10 + (11 significant digits + 1) // 2 + 1, version 7 + (1 + 1) // 2 + 1.
    assert bench_lease.item_size(items[0]) == 8 + 10 + 5 + 13 + 10 + 7 + 7 + 2


def test_smoke_run_produces_every_figure_with_sane_numbers(lab_info: LabInfo) -> None:
    result = bench_lease.measure(lab_info, SMOKE)

    metrics = {m.name: m for m in result.metrics}
    assert [m.name for m in result.metrics] == figures(SMOKE)
    for name, metric in metrics.items():
        assert math.isfinite(metric.value) or name.startswith("ramp"), name
    d, summary = result.details, result.details["summary"]

    # Probe cost: every path read the whole table and found every lease live.
    probe = d["probe"]
    for path in ("emulator", "client", "decode"):
        for n, figure in probe[path].items():
            assert figure["value"] == 1.0, (path, n)
            assert figure["median_s"] > 0 and figure["items_per_s"] > 0, (path, n)
    assert set(probe["emulator"]) == {SMOKE.lab_items // 10, SMOKE.lab_items}
    assert set(probe["client"]) == set(probe["decode"]) == {SMOKE.lab_items, SMOKE.model_items}
    # The emulator costs more than a store that costs nothing; the client path does more
    # than decode+measure alone; the big table is extrapolated, and said to be.
    assert summary["ratio_lab"] > 1.0
    assert probe["decode"][SMOKE.model_items]["median_s"] < probe["client"][SMOKE.model_items]["median_s"]
    assert not summary["emulator_big_measured"]
    assert "EXTRAPOLATED" in metrics[f"probe {SMOKE.model_items:,} items: via emulator"].note

    # The fleet: set up, renewed near its schedule, held every lease, exited cleanly; the
    # table holds at least every write it was told succeeded.
    main = d["fleet"]["main"]
    assert main["exit_code"] == 0
    assert main["setup_s"] > 0
    assert 0.5 * SMOKE.target_rate <= main["rate"] <= 1.5 * SMOKE.target_rate, main["rate"]
    assert main["renewals_failed"] == 0
    assert main["min_believed_live"] == SMOKE.fleet_leases
    # Its schedule was read from the table (setup expiry - E), and the window ended within H.
    assert main["started"] is not None and main["behind_s"] >= 0.0
    lab = main["lab"]
    assert lab["items"] == lab["live"] == SMOKE.fleet_leases
    assert lab["owners"] == [bench_lease.FLEET_OWNER]
    acknowledged = main["final"]["renewals_ok"] + main["final"]["jobs_ok"]
    assert acknowledged > 0 and lab["writes"] >= acknowledged
    assert metrics["lab writes / acknowledged"].ok
    ramp = d["fleet"]["ramp"]
    assert len(ramp) == 1 and ramp[0]["exit_code"] == 0 and ramp[0]["rate"] > 0

    # The model: both runs simulated the whole duration, faster than real time; the outage
    # made renewals fail and be retried without losing a lease (it is shorter than E - H).
    steady, outage = d["model"]["steady"], d["model"]["outage"]
    assert steady["sim_per_wall"] > 1.0 and steady["events"] > 0
    assert steady["renewals_failed"] == 0 and steady["min_live_fraction"] == 1.0
    assert outage["renewals_failed"] > 0 and outage["min_live_fraction"] == 1.0
    assert outage["events"] > steady["events"]
    assert steady["stalls"] == outage["stalls"] == 0
