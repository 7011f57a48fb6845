"""The lease watcher and its Chaos Toolkit control, on the lab, and the probes reading its timeline."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from chaoslib.exceptions import InterruptExecution, InvalidControl

from chaos_dynamo.clock import wait_until
from chaos_dynamo.lease import control, probes, timeline
from chaos_dynamo.lease.ops import LeaseItem
from chaos_dynamo.lease.schema import LeaseSchema
from chaos_dynamo.lease.timeline import Sample
from chaos_dynamo.lease.watch import Watcher, timeline_path
from tests.integration.test_lease_probes import (  # noqa: F401 - fixtures
    SERVICE,
    Loop,
    emulator,
    fleet,
    lease,
    loops,
    new_table,
    renew,
    through_lb,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


def watcher_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("lease-watcher-") and t.is_alive()]


def samples(path: Path) -> list[Sample]:
    return list(timeline.read(path).samples)


@pytest.fixture
def settings(lab_state_file: Path) -> dict[str, Any]:
    return {"chaos_dynamo_state": str(lab_state_file), "lease_interval": 0.2, "lease_service": SERVICE}


@pytest.fixture(autouse=True)
def _stop_watchers() -> Any:
    yield
    control.cleanup_control()


# --- the watcher alone, with a scripted reader ------------------------------------------------


class FlakyReader:
    """Answers a fixed table; the scans listed in ``fail`` raise; each scan takes ``took`` s."""

    def __init__(self, fail: set[int] = frozenset(), took: float = 0.0) -> None:  # type: ignore[assignment]
        self.fail, self.took, self.scans = fail, took, 0

    def scan(self) -> list[LeaseItem]:
        self.scans += 1
        time.sleep(self.took)
        if self.scans in self.fail:
            raise ConnectionError("the emulator went away")
        return [LeaseItem("a", "o", time.time() + 60, self.scans), LeaseItem("b", "o", time.time() - 1, 1)]


def test_watcher_survives_failed_scans_and_stops(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "leases" / "t.jsonl"
    path.parent.mkdir()
    path.write_text('{"t": 1, "event": "trigger_end"}\n')  # a previous run's file is truncated
    reader = FlakyReader(fail={2, 3, 4})
    watcher = Watcher(LeaseSchema("leases"), reader, path, interval=0.05)
    with caplog.at_level(logging.INFO, logger="chaostoolkit"):
        first = watcher.start()
        assert (first.total, first.live, first.attempts) == (2, 1, None)
        assert wait_until(lambda: len(samples(path)) >= 3, timeout=10)
        watcher.stop()
    assert not watcher_threads() and not watcher.running
    written = timeline.read(path)
    assert written.markers == () and len(written.samples) == watcher.samples >= 3
    assert watcher.failures == 3
    failures = [r for r in caplog.records if "failed" in r.getMessage() and "emulator went away" in r.getMessage()]
    assert len(failures) == 1  # said once, not per scan
    assert any("succeed again" in r.getMessage() for r in caplog.records)
    assert [s.version_sum for s in written.samples] == sorted(s.version_sum for s in written.samples)


def test_watcher_stretches_its_interval_for_slow_scans(tmp_path: Path) -> None:
    watcher = Watcher(LeaseSchema("leases"), FlakyReader(took=0.15), tmp_path / "t.jsonl", interval=0.05)
    watcher.start()
    try:
        assert wait_until(lambda: watcher.samples >= 3, timeout=10)
        assert watcher.effective_interval >= 0.25
        times = [s.t for s in samples(tmp_path / "t.jsonl")]
        assert min(b - a for a, b in zip(times, times[1:], strict=False)) >= 0.25
    finally:
        watcher.stop()


# --- the control on the lab ------------------------------------------------------------------------


def test_control_records_samples_markers_and_attempts(emulator: Any, through_lb: Any,  # noqa: F811
                                                      settings: dict[str, Any], loops: list[Loop]) -> None:  # noqa: F811
    table = new_table(emulator, fleet(3, 0))
    keys = iter(range(10**9))
    loops.append(Loop(lambda: renew(through_lb, table, f"host-{next(keys) % 3:05d}"), pause=0.05))
    configuration = settings | {"lease_table": table}
    path = timeline_path(table, settings["chaos_dynamo_state"])
    control.before_experiment_control({}, configuration=configuration)
    assert len(watcher_threads()) == 1
    assert wait_until(lambda: len(samples(path)) >= 3, timeout=10)
    control.before_method_control({}, configuration=configuration)
    count = len(samples(path))
    assert wait_until(lambda: len(samples(path)) >= count + 2, timeout=10)
    control.after_method_control({}, state=None, configuration=configuration)
    count = len(samples(path))
    assert wait_until(lambda: len(samples(path)) >= count + 2, timeout=10)
    control.after_experiment_control({}, state=None, configuration=configuration)
    assert not watcher_threads()
    recorded = timeline.read(path)
    assert [m.event for m in recorded.markers] == ["trigger_start", "trigger_end"]
    start, end = recorded.markers[0].t, recorded.markers[1].t
    assert any(s.t < start for s in recorded.samples) and any(start < s.t < end for s in recorded.samples)
    assert any(s.t > end for s in recorded.samples)
    attempts = [s.attempts for s in recorded.samples]
    assert all(a is not None for a in attempts) and attempts[-1] > attempts[0]  # type: ignore[operator]
    assert recorded.samples[-1].version_sum > recorded.samples[0].version_sum
    # the watcher's attempts are the service's LB requests: one per renewal here
    grown = recorded.samples[-1].version_sum - recorded.samples[0].version_sum
    assert attempts[-1] - attempts[0] == pytest.approx(grown, rel=0.3, abs=3)  # type: ignore[operator]


def test_probes_read_the_fresh_timeline_from_trigger_end(emulator: Any, through_lb: Any,  # noqa: F811
                                                         settings: dict[str, Any], loops: list[Loop]) -> None:  # noqa: F811
    now = time.time()
    table = new_table(emulator, [lease(i, now - 60) for i in range(4)] + [lease(4, now + 600, owner="a")])
    configuration = settings | {"lease_table": table}
    args = {"table": table, "configuration": configuration}
    control.before_experiment_control({}, configuration=configuration)
    keys = iter(range(10**9))
    loops.append(Loop(lambda: through_lb.get_item(TableName=table, ConsistentRead=True,
                                                  Key={"lease_id": {"S": f"host-{next(keys) % 4:05d}"}})))
    control.after_method_control({}, state=None, configuration=configuration)
    ended = timeline.read(timeline_path(table, settings["chaos_dynamo_state"])).last_marker("trigger_end")
    assert ended is not None
    collapse = probes.lease_collapse(window=1.5, service=SERVICE, **args)
    assert collapse["source"] == "watcher" and collapse["from"] == "trigger_end"
    assert collapse["collapsed"] is True, collapse["reason"]
    assert collapse["start"] == ended and collapse["attempts_known"] is True
    loops.pop().stop()
    renewed = time.time()
    for i in range(4):
        renew(emulator, table, f"host-{i:05d}")
    seconds = probes.seconds_to_live_fraction(fraction=1.0, timeout=30, **args)
    assert renewed - ended - 0.1 <= seconds <= time.time() - ended + 0.1
    assert probes.double_owned_leases(**args) == 0
    # Another owner overwrites host-00004 while "a" holds it: the watcher sees it.
    emulator.put_item(TableName=table, Item=lease(4, time.time() + 600, owner="b", version=2))
    path = timeline_path(table, settings["chaos_dynamo_state"])
    assert wait_until(lambda: samples(path)[-1].double_owned == 1, timeout=10)
    assert probes.double_owned_leases(**args) == 1
    report = probes.lease_report(window=1.5, service=SERVICE, **args)
    assert report["source"] == "watcher" and report["double_owned"] == 1
    assert [m["event"] for m in report["markers"]] == ["trigger_end"]
    assert report["collapse"]["collapsed"] is True and report["live_fraction"] == 1.0
    assert report["seconds_to_live_fraction"]["seconds"] == pytest.approx(seconds, abs=0.01)
    control.after_experiment_control({}, state=None, configuration=configuration)
    assert not watcher_threads()


def test_a_stale_timeline_is_ignored(emulator: Any, settings: dict[str, Any]) -> None:  # noqa: F811
    table = new_table(emulator, fleet(2, 0))
    path = timeline_path(table, settings["chaos_dynamo_state"])
    timeline.append(path, [Sample(time.time() - 60, 2, 0, 2, 2), timeline.Marker(time.time() - 59, "trigger_end")])
    report = probes.lease_report(table, window=0.6, configuration=settings)
    assert report["source"] == "probe" and report["live_fraction"] == 1.0 and report["markers"] == []


@pytest.mark.parametrize(("extra", "words"), [
    ({"lease_table": None}, "lease_table: is not set"),
    ({"lease_table": "no-such-leases"}, "table: there is no table 'no-such-leases'"),
    ({"lease_expiry_unit": "hours"}, "lease_expiry_unit: 'hours' is not a unit"),
    ({"lease_interval": "soon"}, "lease_interval: 'soon' is not a duration"),
    ({"lease_endpoint": 5}, "lease_endpoint: 5 is not a URL"),
])
def test_bad_configuration_interrupts_the_run(settings: dict[str, Any], extra: dict[str, Any],
                                              words: str) -> None:
    configuration = settings | {"lease_table": "chaos-dynamo-leases"} | extra
    with pytest.raises(InterruptExecution, match="could not start the lease watcher") as info:
        control.before_experiment_control({}, configuration=configuration)
    assert words in str(info.value)
    assert not watcher_threads()


def test_control_arguments_are_checked(settings: dict[str, Any]) -> None:
    with pytest.raises(InvalidControl, match="unknown arguments \\['lease_tabel'\\]"):
        control.validate_control({"name": "w", "provider": {"arguments": {"lease_tabel": "x"}}})
    with pytest.raises(InterruptExecution, match="unknown keys"):
        control.before_experiment_control({}, configuration=settings, lease_tabel="x")


def test_settings_default_the_service_to_service_name(lab_state_file: Path) -> None:
    base = {"lease_table": "t-leases", "service_name": "checkout", "lease_interval": "0.5",
            "chaos_dynamo_state": str(lab_state_file)}
    got = control.watcher_settings(base)
    assert (got["service"], got["service_explicit"], got["interval"]) == ("checkout", False, 0.5)
    assert got["path"] == lab_state_file.parent / "leases" / "t-leases.jsonl"
    assert control.watcher_settings(base | {"lease_service": ""})["service"] == ""
    assert control.watcher_settings(base, {"lease_service": "other"})["service"] == "other"
