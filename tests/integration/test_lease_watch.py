"""The lease watcher and its Chaos Toolkit control, on the lab, and the probes reading its timeline."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from chaoslib.exceptions import InterruptExecution, InvalidControl

from chaos_dynamo.clock import FakeClock, wait_until
from chaos_dynamo.errors import LabError
from chaos_dynamo.lease import control, probes, timeline
from chaos_dynamo.lease.measure import Page
from chaos_dynamo.lease.ops import LeaseItem
from chaos_dynamo.lease.schema import LeaseSchema
from chaos_dynamo.lease.timeline import Sample
from chaos_dynamo.lease.watch import Watcher, read_status, timeline_path
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
    """Answers a fixed table on a fake clock; the scans listed in ``fail`` raise (all from
    ``fail_from`` on); each scan takes ``took`` fake seconds; a scan blocks while ``hold``
    is clear."""

    def __init__(self, clock: FakeClock, fail: set[int] = frozenset(), took: float = 0.0,  # type: ignore[assignment]
                 fail_from: int | None = None, version: int = 0) -> None:
        self.clock, self.fail, self.took, self.fail_from, self.version = clock, fail, took, fail_from, version
        self.scans = 0
        self.hold = threading.Event()
        self.hold.set()
        self.scanning = threading.Event()

    def pages(self) -> list[Page]:
        self.scans += 1
        self.scanning.set()
        assert self.hold.wait(10)
        self.clock.advance(self.took)
        if self.scans in self.fail or (self.fail_from is not None and self.scans >= self.fail_from):
            raise ConnectionError("the emulator went away")
        now = self.clock.now()
        return [Page(now, (LeaseItem("a", "o", now + 60, self.version + self.scans), LeaseItem("b", "o", now - 1, 1)))]


class Steps:
    """The watcher's waits, on a fake clock: each moves the clock by the wait, then lets the
    watcher go on only when the test allows one more step (or it is stopped)."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self._allowed = threading.Semaphore(0)

    def allow(self, steps: int) -> None:
        for _ in range(steps):
            self._allowed.release()

    def wait(self, stop: threading.Event, seconds: float) -> bool:
        self.clock.advance(seconds)
        while not self._allowed.acquire(timeout=0.05):
            if stop.is_set():
                return True
        return stop.is_set()


def stepped(tmp_path: Path, reader: FlakyReader, path: Path | None = None, interval: float = 0.05) -> tuple[Watcher, Steps]:
    steps = Steps(reader.clock)
    watcher = Watcher(LeaseSchema("leases"), reader, path or tmp_path / "t.jsonl", interval=interval,
                      clock=reader.clock, wait=steps.wait)
    return watcher, steps


def test_watcher_survives_failed_scans_and_stops(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "leases" / "t.jsonl"
    path.parent.mkdir()
    path.write_text('{"t": 1, "event": "trigger_end"}\n')  # a previous run's file is truncated
    watcher, steps = stepped(tmp_path, FlakyReader(FakeClock(), fail={2, 3, 4}), path)
    with caplog.at_level(logging.INFO, logger="chaostoolkit"):
        first = watcher.start()
        assert (first.total, first.live, first.attempts) == (2, 1, None)
        steps.allow(6)  # scans 2-4 fail, 5-7 succeed
        assert wait_until(lambda: watcher.samples == 4, timeout=10)
        watcher.stop()
    assert not watcher_threads() and not watcher.running
    written = timeline.read(path)
    assert written.markers == () and len(written.samples) == watcher.samples == 4
    assert watcher.failures == 3
    failures = [r for r in caplog.records if "failed" in r.getMessage() and "emulator went away" in r.getMessage()]
    assert len(failures) == 1  # said once, not per scan
    assert any("succeed again" in r.getMessage() for r in caplog.records)
    assert [s.version_sum for s in written.samples] == [2, 6, 7, 8]


def test_watcher_stretches_its_interval_for_slow_scans(tmp_path: Path) -> None:
    watcher, steps = stepped(tmp_path, FlakyReader(FakeClock(), took=0.15))
    watcher.start()
    try:
        steps.allow(3)
        assert wait_until(lambda: watcher.samples == 4, timeout=10)
        assert watcher.effective_interval == pytest.approx(0.3)
        times = [s.t for s in samples(tmp_path / "t.jsonl")]
        assert [round(b - a, 6) for a, b in zip(times, times[1:], strict=False)] == [0.45, 0.3, 0.3]
    finally:
        watcher.stop()


def test_an_older_watcher_never_writes_into_a_newer_ones_file(tmp_path: Path) -> None:
    clock = FakeClock()
    old_reader = FlakyReader(clock)
    old, steps = stepped(tmp_path, old_reader)
    old.start()
    old_reader.hold.clear()
    old_reader.scanning.clear()
    steps.allow(1)
    assert old_reader.scanning.wait(10)  # the old thread is inside a scan that hangs
    new, _ = stepped(tmp_path, FlakyReader(clock, version=100))
    new.start()  # truncates the file and takes it over (the old one was never stopped)
    old_reader.hold.set()
    assert wait_until(lambda: not old.running, timeout=10)  # it noticed, and ended
    assert [s.version_sum for s in samples(tmp_path / "t.jsonl")] == [102]
    assert (old.samples, new.samples) == (1, 1)
    new.stop()
    old.stop()


def test_a_probe_on_a_stale_timeline_names_the_watchers_last_scan_error(tmp_path: Path) -> None:
    clock = FakeClock()
    state = tmp_path / "lab.json"
    path = timeline_path("leases", state)
    reader = FlakyReader(clock, fail_from=2)
    watcher, steps = stepped(tmp_path, reader, path, interval=1.0)
    watcher.start()
    try:
        steps.allow(1)
        assert wait_until(lambda: watcher.failures == 1, timeout=10)
        status = read_status(path)
        assert status is not None and status["failing"] is True
        assert "emulator went away" in status["last_error"]["error"]
        probe = probes._probe("leases", "lease_id", "owner", "expires_at", "s", "version", "",
                              {"chaos_dynamo_state": str(state)}, clock)
        with pytest.raises(LabError) as info:
            probes._seconds_to_live(1.0, 600, probe)  # half the leases stay expired: it waits, then
        message = str(info.value)
        assert "stopped writing" in message and "ConnectionError: the emulator went away" in message
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
    client = control._watchers[path].reader.client  # type: ignore[attr-defined]
    assert (client.meta.config.read_timeout, client.meta.config.retries["total_max_attempts"]) == (10.0, 2)
    assert (read_status(path) or {}).get("service") == SERVICE
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


def test_deleted_leases_count_against_the_watchers_baseline(emulator: Any, settings: dict[str, Any]) -> None:  # noqa: F811
    table = new_table(emulator, fleet(4, 0))
    configuration = settings | {"lease_table": table, "lease_service": ""}
    control.before_experiment_control({}, configuration=configuration)  # its first scan: 4 leases
    for i in range(3):
        emulator.delete_item(TableName=table, Key={"lease_id": {"S": f"host-{i:05d}"}})
    path = timeline_path(table, settings["chaos_dynamo_state"])
    assert wait_until(lambda: samples(path)[-1].total == 1, timeout=10)
    assert probes.live_lease_fraction(table, configuration=configuration) == 0.25
    assert probes.expired_lease_count(table, configuration=configuration) == 3
    report = probes.lease_report(table, window=0.5, configuration=configuration)
    assert (report["live_fraction"], report["missing"], report["baseline"]) == (0.25, 3, 4)


def test_a_probe_counts_the_service_it_names_not_the_watchers(emulator: Any, through_lb: Any,  # noqa: F811
                                                              settings: dict[str, Any], loops: list[Loop]) -> None:  # noqa: F811
    table = new_table(emulator, fleet(3, 0))
    keys = iter(range(10**9))
    loops.append(Loop(lambda: renew(through_lb, table, f"host-{next(keys) % 3:05d}"), pause=0.05))
    configuration = settings | {"lease_table": table}  # the watcher counts SERVICE's requests
    control.before_experiment_control({}, configuration=configuration)
    control.after_method_control({}, state=None, configuration=configuration)
    other = probes.lease_goodput(table, window=1.0, service="someone-else", configuration=configuration)
    assert other["source"] == "watcher" and other["attempts"] == 0 and other["renewals"] > 0
    assert any(f"the watcher counted the requests of {SERVICE!r}, not 'someone-else'" in n for n in other["notes"])
    same = probes.lease_goodput(table, window=1.0, service=SERVICE, configuration=configuration)
    assert same["attempts"] > 0 and not same["notes"]
