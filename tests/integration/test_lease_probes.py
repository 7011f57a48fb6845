"""Lease probes on real tables: the lab's moto server over HTTP, tables with known contents.

A scripted "service" writes through a real LB of the lab (its User-Agent carries the app
id ``app/<name>``), so the probes count its requests from the lab's LB log; the probes read
the table behind the LBs, from the emulator.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config

from chaos_dynamo.clock import FakeClock
from chaos_dynamo.errors import ConfigError, LabError, SafetyError
from chaos_dynamo.lab.state import LabInfo
from chaos_dynamo.lease import actions, probes
from chaos_dynamo.lease.measure import Page
from chaos_dynamo.lease.schema import LeaseSchema
from chaos_dynamo.lease.table import WATCHER_LIMITS, TableReader, scan_pages, table_reader
from tests.conftest import ROOT

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

SERVICE = "lease-writer"


# --- helpers --------------------------------------------------------------------------------


@pytest.fixture
def config(lab_state_file: Path) -> dict[str, Any]:
    return {"chaos_dynamo_state": str(lab_state_file)}


@pytest.fixture(scope="module")
def emulator(lab_info: LabInfo) -> Any:
    return boto3.client("dynamodb", endpoint_url=lab_info.emulator_url, region_name=lab_info.region,
                        aws_access_key_id="testing", aws_secret_access_key="testing")


@pytest.fixture(scope="module")
def through_lb(lab_info: LabInfo) -> Any:
    """The scripted service's client: through an LB, attributed by its SDK app id."""
    lb = lab_info.load_balancers[0]
    return boto3.client("dynamodb", endpoint_url=f"http://{lb['address']}:{lab_info.lb_port}",
                        region_name=lab_info.region, aws_access_key_id="testing",
                        aws_secret_access_key="testing",
                        config=Config(user_agent_appid=SERVICE, retries={"max_attempts": 1}))


def new_table(emulator: Any, items: list[dict[str, Any]] = (), key: str = "lease_id") -> str:  # type: ignore[assignment]
    name = f"leases-{uuid.uuid4().hex[:8]}"
    emulator.create_table(TableName=name, KeySchema=[{"AttributeName": key, "KeyType": "HASH"}],
                          AttributeDefinitions=[{"AttributeName": key, "AttributeType": "S"}],
                          BillingMode="PAY_PER_REQUEST")
    for start in range(0, len(items), 25):
        emulator.batch_write_item(RequestItems={name: [{"PutRequest": {"Item": i}} for i in items[start:start + 25]]})
    return name


def lease(i: int, expires_at: float, *, owner: str = "svc-0", version: int = 1, unit: str = "s",
          as_string: bool = False) -> dict[str, Any]:
    if unit == "iso":
        expiry = {"S": datetime.fromtimestamp(expires_at, UTC).isoformat()}
    elif unit == "iso-naive":
        expiry = {"S": datetime.fromtimestamp(expires_at, UTC).replace(tzinfo=None).isoformat()}
    else:
        number = str(int(expires_at * 1000)) if unit == "ms" else repr(expires_at)
        expiry = {"S": number} if as_string else {"N": number}
    return {"lease_id": {"S": f"host-{i:05d}"}, "owner": {"S": owner}, "expires_at": expiry,
            "version": {"N": str(version)}}


def fleet(live: int, expired: int, **kwargs: Any) -> list[dict[str, Any]]:
    now = time.time()
    return ([lease(i, now + 600, **kwargs) for i in range(live)]
            + [lease(live + i, now - 600, **kwargs) for i in range(expired)])


class Loop:
    """Runs ``step`` on a thread until stopped (the scripted service)."""

    def __init__(self, step: Callable[[], None], pause: float = 0.02) -> None:
        self._stop = threading.Event()
        self.count = 0

        def run() -> None:
            while not self._stop.is_set():
                step()
                self.count += 1
                self._stop.wait(pause)

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)


@pytest.fixture
def loops() -> Iterator[list[Loop]]:
    started: list[Loop] = []
    yield started
    for loop in started:
        loop.stop()


def renew(client: Any, table: str, key: str, seconds: float = 600, now: float | None = None) -> None:
    """Renew (or re-acquire) one lease the way the reference fleets do: version + 1."""
    client.update_item(TableName=table, Key={"lease_id": {"S": key}},
                       UpdateExpression="SET expires_at = :e, version = version + :one",
                       ExpressionAttributeValues={":e": {"N": repr((now or time.time()) + seconds)},
                                                  ":one": {"N": "1"}})


class StepClock(FakeClock):
    """A fake clock that also moves ``step`` seconds each time it is read (``now``)."""

    def __init__(self, start: float, step: float) -> None:
        super().__init__(start)
        self.step = step

    def now(self) -> float:
        self.advance(self.step)
        return super().now()


def after_scans(monkeypatch: pytest.MonkeyPatch, *actions_: tuple[int, Callable[[], None]]) -> list[int]:
    """Run each ``(n, action)`` right after the n-th scan of any TableReader returns (so
    the next scan sees what it did); returns the live scan count."""
    scans = [0]
    todo = dict(actions_)
    original = TableReader.pages

    def pages(self: TableReader) -> list[Page]:
        result = original(self)
        scans[0] += 1
        if scans[0] in todo:
            todo.pop(scans[0])()
        return result

    monkeypatch.setattr(TableReader, "pages", pages)
    return scans


# --- reading: units, paging, names, errors --------------------------------------------------------


@pytest.mark.parametrize(("unit", "as_string"), [("s", False), ("s", True), ("ms", False), ("ms", True),
                                                 ("iso", False), ("iso-naive", False)])
def test_every_expiry_unit(emulator: Any, config: dict[str, Any], unit: str, as_string: bool) -> None:
    table = new_table(emulator, fleet(7, 3, unit=unit, as_string=as_string))
    schema_unit = "iso" if unit.startswith("iso") else unit
    args = {"table": table, "expiry_unit": schema_unit, "configuration": config}
    assert probes.live_lease_fraction(**args) == pytest.approx(0.7)
    assert probes.expired_lease_count(**args) == 3


def test_paging_reads_every_lease(emulator: Any, config: dict[str, Any]) -> None:
    table = new_table(emulator, fleet(20, 5))
    reader = table_reader(LeaseSchema(table), configuration=config, page_size=4)
    pages = list(scan_pages(reader.client, reader.schema, page_size=4))
    assert len(pages) >= 7 and sum(len(p) for p in pages) == 25
    paged = sorted(reader.scan(), key=lambda lease: lease.key)
    whole = sorted(TableReader(reader.client, reader.schema, None).scan(), key=lambda lease: lease.key)
    assert paged == whole and len({lease.key for lease in paged}) == 25


def test_each_page_is_judged_when_it_arrived(emulator: Any, config: dict[str, Any]) -> None:
    # 8 leases expiring at T+15, read 4 per page by a clock that moves 10 s per page: the
    # first page (read at T+10) is live, the second (T+20) expired. Judged at the scan's
    # end, all 8 would read as expired.
    start = time.time()
    table = new_table(emulator, [lease(i, start + 15) for i in range(8)])
    clock = StepClock(start, 10.0)
    reader = table_reader(LeaseSchema(table), configuration=config, page_size=4, clock=clock)
    pages = reader.pages()
    assert [p.t for p in pages] == [start + 10 * (i + 1) for i in range(len(pages))]
    sample = probes.measure.sample_of_pages(pages)
    assert (sample.total, sample.live, sample.t) == (8, 4, pages[-1].t)


def test_the_watchers_client_has_bounded_waits(config: dict[str, Any]) -> None:
    client = table_reader(LeaseSchema("leases"), configuration=config, limits=WATCHER_LIMITS).client
    assert (client.meta.config.connect_timeout, client.meta.config.read_timeout) == (2.0, 10.0)
    assert client.meta.config.retries["total_max_attempts"] == 2


def test_reserved_word_attribute_names(emulator: Any, config: dict[str, Any]) -> None:
    now = time.time()
    items = [{"name": {"S": f"h{i}"}, "owner": {"S": "a"}, "timestamp": {"N": repr(now + (60 if i < 3 else -60))},
              "size": {"N": "1"}} for i in range(4)]
    table = new_table(emulator, items, key="name")
    args = {"table": table, "key": "name", "expiry": "timestamp", "version": "size", "configuration": config}
    assert probes.live_lease_fraction(**args) == pytest.approx(0.75)


def test_an_empty_table_is_a_config_error_naming_table(emulator: Any, config: dict[str, Any]) -> None:
    table = new_table(emulator)
    for probe in (probes.live_lease_fraction, probes.expired_lease_count):
        with pytest.raises(ConfigError) as info:
            probe(table, configuration=config)
        assert info.value.field == "table"
        assert f"'{table}' has no leases" in str(info.value)
        assert "point table (lease_table) at the table your service writes its leases to, or start the " \
               "service first" in str(info.value)
    for probe_over_time in (lambda: probes.lease_collapse(table, window=0.5, configuration=config),
                            lambda: probes.double_owned_leases(table, seconds=0.5, configuration=config),
                            lambda: probes.lease_report(table, window=0.5, configuration=config)):
        with pytest.raises(ConfigError, match="has no leases"):
            probe_over_time()


def test_a_missing_owner_attribute_reads_as_unowned(emulator: Any, config: dict[str, Any],
                                                    caplog: pytest.LogCaptureFixture) -> None:
    table = new_table(emulator, fleet(3, 1))
    with caplog.at_level("WARNING", logger="chaostoolkit"):
        assert probes.live_lease_fraction(table, owner="holder", configuration=config) == 0.75
    assert any("has an attribute 'holder'" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(("arguments", "field", "words"), [
    ({"expiry": "expiry_time"}, "expiry", "has no attribute 'expiry_time'; set expiry (lease_expiry)"),
    ({"version": "fence"}, "version", "has no attribute 'fence'"),
    ({"expiry_unit": "iso"}, "expiry", "not ISO-8601 text"),
    ({"expiry_unit": "ms"}, "expiry_unit", 'set expiry_unit (lease_expiry_unit) to "s"'),
])
def test_schema_mismatch_names_the_field(emulator: Any, config: dict[str, Any], arguments: dict[str, str],
                                         field: str, words: str) -> None:
    table = new_table(emulator, fleet(2, 0))
    with pytest.raises(ConfigError) as info:
        probes.live_lease_fraction(table, configuration=config, **arguments)  # type: ignore[arg-type]
    assert info.value.field == field and words in str(info.value) and "host-0000" in str(info.value)


def test_wrong_table_names_table(config: dict[str, Any]) -> None:
    with pytest.raises(ConfigError) as info:
        probes.live_lease_fraction("no-such-leases", configuration=config)
    assert info.value.field == "table"
    assert "no table 'no-such-leases'" in str(info.value) and "lease_table" in str(info.value)


def test_nothing_at_the_endpoint_is_a_lab_error(config: dict[str, Any]) -> None:
    with pytest.raises(LabError, match="endpoint: could not read table 'leases' at http://127.0.0.1:9"):
        probes.live_lease_fraction("leases", endpoint="http://127.0.0.1:9", configuration=config)


def test_an_explicit_endpoint_is_read(emulator: Any, lab_info: LabInfo) -> None:
    table = new_table(emulator, fleet(1, 1))
    assert probes.live_lease_fraction(table, endpoint=lab_info.emulator_url) == 0.5  # no lab configuration


# --- over time: recovery, goodput, collapse ----------------------------------------------------------


def test_seconds_to_live_fraction(emulator: Any, config: dict[str, Any]) -> None:
    live = new_table(emulator, fleet(10, 0))
    assert probes.seconds_to_live_fraction(live, timeout=5, configuration=config) < 1.0
    dead = new_table(emulator, fleet(5, 5))
    began = time.monotonic()
    never = probes.seconds_to_live_fraction(dead, fraction=0.9, timeout=1.0, configuration=config)
    assert never > 1.0 and time.monotonic() - began < 5


def test_seconds_to_live_fraction_sees_a_recovery(emulator: Any, config: dict[str, Any],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    # A fake clock paces the probe's scans (0.5 s apart); the leases are renewed right after
    # its second scan, so its third, 1.0 s after its start, is the first to see them live.
    clock = FakeClock(time.time())
    table = new_table(emulator, fleet(0, 4))
    after_scans(monkeypatch, (2, lambda: [renew(emulator, table, f"host-{i:05d}", now=clock.now())
                                          for i in range(4)]))
    probe = probes._probe(table, "lease_id", "owner", "expires_at", "s", "version", "", config, clock)
    assert probes._seconds_to_live(1.0, 10, probe) == 1.0


def test_goodput_counts_renewals_and_the_service_requests(emulator: Any, through_lb: Any,
                                                          config: dict[str, Any], loops: list[Loop]) -> None:
    table = new_table(emulator, fleet(5, 0))
    keys = iter(range(10**9))
    loops.append(Loop(lambda: renew(through_lb, table, f"host-{next(keys) % 5:05d}")))
    result = probes.lease_goodput(table, window=2.0, service=SERVICE, configuration=config)
    assert result["source"] == "probe" and result["seconds"] >= 1.0
    assert result["renewals_per_second"] > 5
    assert result["attempts_per_second"] == pytest.approx(result["renewals_per_second"], rel=0.25)
    assert 0.75 <= result["efficiency"] <= 1.25
    no_service = probes.lease_goodput(table, window=1.0, configuration=config)
    assert no_service["attempts_per_second"] is None and no_service["renewals_per_second"] > 5


def test_goodput_needs_a_version(emulator: Any, config: dict[str, Any]) -> None:
    table = new_table(emulator, fleet(1, 0))
    with pytest.raises(ConfigError) as info:
        probes.lease_goodput(table, version="", configuration=config)
    assert info.value.field == "version" and "lease_version" in str(info.value)


def test_collapse_busy_versus_stalled(emulator: Any, through_lb: Any, config: dict[str, Any],
                                      loops: list[Loop]) -> None:
    table = new_table(emulator, fleet(0, 10))
    keys = iter(range(10**9))
    # Busy: the service reads the expired leases over and over and never re-acquires one.
    loops.append(Loop(lambda: through_lb.get_item(TableName=table, ConsistentRead=True,
                                                  Key={"lease_id": {"S": f"host-{next(keys) % 10:05d}"}})))
    busy = probes.lease_collapse(table, window=2.0, service=SERVICE, configuration=config)
    assert busy["collapsed"] is True, busy["reason"]
    assert busy["attempts_per_second"] > 5 and busy["efficiency"] == 0.0
    loops.pop().stop()
    stalled = probes.lease_collapse(table, window=1.5, service=SERVICE, configuration=config)
    assert stalled["collapsed"] is False and stalled["stalled"] is True, stalled["reason"]
    unknown = probes.lease_collapse(table, window=1.0, configuration=config)
    assert unknown["collapsed"] is True and "without request counts" in unknown["reason"]


# --- double owners ------------------------------------------------------------------------------


@pytest.mark.parametrize(("expired_first", "expected"), [(False, 1), (True, 0)])
def test_double_owned_takeover(emulator: Any, config: dict[str, Any], monkeypatch: pytest.MonkeyPatch,
                               expired_first: bool, expected: int) -> None:
    clock = FakeClock(time.time())
    now = clock.now()
    table = new_table(emulator, [lease(0, now + (-5 if expired_first else 600), owner="a"),
                                 lease(1, now + 600, owner="a")])
    # Right after the probe's first scan, another owner writes lease 0 unconditionally (the
    # bug), or takes it properly after it expired.
    scans = after_scans(monkeypatch, (1, lambda: emulator.put_item(
        TableName=table, Item=lease(0, clock.now() + 600, owner="b", version=2))))
    probe = probes._probe(table, "lease_id", "owner", "expires_at", "s", "version", "", config, clock)
    assert probes._double_owned(2.0, probe) == expected
    assert scans[0] == 5  # at 0, 0.5, 1, 1.5 and 2 s of the fake clock


def test_a_lease_deleted_and_created_again_is_not_a_double_owner(emulator: Any, config: dict[str, Any],
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    clock = FakeClock(time.time())
    table = new_table(emulator, [lease(0, clock.now() + 600, owner="a", version=7), lease(1, clock.now() + 600)])
    after_scans(monkeypatch,
                (1, lambda: emulator.delete_item(TableName=table, Key={"lease_id": {"S": "host-00000"}})),
                (2, lambda: emulator.put_item(TableName=table, Item=lease(0, clock.now() + 600, owner="b"))))
    probe = probes._probe(table, "lease_id", "owner", "expires_at", "s", "version", "", config, clock)
    assert probes._double_owned(1.5, probe) == 0


# --- the fault ---------------------------------------------------------------------------------------


def test_expire_leases_bumps_versions_and_is_seeded(emulator: Any, config: dict[str, Any]) -> None:
    first, twin = new_table(emulator, fleet(10, 2)), new_table(emulator, fleet(10, 2))
    result = actions.expire_leases(4, first, seed=3, configuration=config)
    assert (result["requested"], result["live"], result["expired"], result["skipped"]) == (4, 10, 4, 0)
    assert probes.live_lease_fraction(first, configuration=config) == pytest.approx(6 / 12)
    leases = {lease.key: lease for lease in table_reader(LeaseSchema(first), configuration=config).scan()}
    assert {k for k, v in leases.items() if v.version == 2} == set(result["keys"])
    assert all(leases[k].expires_at < time.time() for k in result["keys"])
    assert actions.expire_leases(4, twin, seed=3, configuration=config)["keys"] == result["keys"]
    assert actions.expire_leases(100, first, seed=3, configuration=config)["expired"] == 6


def test_expire_leases_in_ms_and_iso_stays_readable(emulator: Any, config: dict[str, Any]) -> None:
    for unit, schema_unit in (("ms", "ms"), ("iso-naive", "iso")):
        table = new_table(emulator, fleet(3, 0, unit=unit))
        assert actions.expire_leases(2, table, expiry_unit=schema_unit, configuration=config)["expired"] == 2
        assert probes.expired_lease_count(table, expiry_unit=schema_unit, configuration=config) == 2


@pytest.mark.parametrize(("unit", "stored", "pattern"), [
    ("s", {"N": "1763600000"}, r"^\d+$"),                                           # integer seconds
    ("ms", {"S": "1763600000000"}, r"^\d+$"),                                       # integer ms, as text
    ("iso", {"S": "2025-11-20T00:53:20Z"}, r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$"),        # Z, no fraction
    ("iso", {"S": "2025-11-20T00:53:20.000+01:00"}, r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+01:00$"),
])
def test_expire_leases_keeps_the_stored_format(emulator: Any, config: dict[str, Any], unit: str,
                                               stored: dict[str, str], pattern: str) -> None:
    item = {"lease_id": {"S": "host-00000"}, "owner": {"S": "a"}, "version": {"N": "1"}}
    table = new_table(emulator, [item | {"expires_at": stored}])
    live = LeaseSchema(table, expiry_unit=unit).encode_expiry(time.time() + 600, stored)  # same format, later
    emulator.put_item(TableName=table, Item=item | {"expires_at": live})
    assert actions.expire_leases(1, table, expiry_unit=unit, configuration=config)["expired"] == 1
    written = emulator.get_item(TableName=table, Key={"lease_id": {"S": "host-00000"}})["Item"]["expires_at"]
    assert set(written) == set(stored) and re.match(pattern, next(iter(written.values()))), written
    assert probes.expired_lease_count(table, expiry_unit=unit, configuration=config) == 1


def test_expire_leases_skips_a_lease_renewed_in_between(emulator: Any, config: dict[str, Any]) -> None:
    table = new_table(emulator, fleet(1, 0))
    schema = LeaseSchema(table)
    client = table_reader(schema, configuration=config).client
    stale = emulator.get_item(TableName=table, Key={"lease_id": {"S": "host-00000"}}, ConsistentRead=True)["Item"]
    renew(emulator, table, "host-00000")
    assert actions._write(client, schema, ["lease_id"], stale, time.time() - 1) is False
    assert probes.expired_lease_count(table, configuration=config) == 0


def test_expire_leases_refuses_other_endpoints(config: dict[str, Any]) -> None:
    with pytest.raises(SafetyError, match="expire_leases refused: it would change items of DynamoDB table leases "
                                          "at endpoint https://dynamodb"):
        actions.expire_leases(1, "leases", endpoint="https://dynamodb.us-east-1.amazonaws.com")
    with pytest.raises(ConfigError) as info:
        actions.expire_leases(-1, "leases", configuration=config)
    assert info.value.field == "count"


# --- the report and the command line ------------------------------------------------------------------


def test_lease_report_without_a_watcher(emulator: Any, config: dict[str, Any]) -> None:
    table = new_table(emulator, fleet(3, 1))
    report = probes.lease_report(table, window=1.0, configuration=config)
    assert report["source"] == "probe" and report["live_fraction"] == 0.75 and report["expired"] == 1
    assert 2 <= len(report["timeline"]) <= 120 and report["double_owned"] == 0
    assert report["collapse"]["collapsed"] is True  # nothing renews and nobody counted requests
    assert report["seconds_to_live_fraction"]["seconds"] is None
    json.dumps(report)


def run_cli(*args: str, state: Path) -> tuple[int, dict[str, Any]]:
    done = subprocess.run([sys.executable, str(ROOT / "probes" / "lease"), *args, "--state", str(state)],
                          capture_output=True, text=True, timeout=60)
    return done.returncode, json.loads(done.stdout.strip().splitlines()[-1])


def test_cli_verdicts(emulator: Any, lab_state_file: Path, loops: list[Loop]) -> None:
    healthy = new_table(emulator, fleet(4, 0))
    keys = iter(range(10**9))
    loops.append(Loop(lambda: renew(emulator, healthy, f"host-{next(keys) % 4:05d}"), pause=0.05))
    code, verdict = run_cli(healthy, "--window", "1", state=lab_state_file)
    assert code == 0 and verdict["ok"] is True, verdict
    assert {c["name"] for c in verdict["checks"]} == {"not_collapsed", "live_fraction", "double_owned"}
    dead = new_table(emulator, fleet(0, 4))
    code, verdict = run_cli(dead, "--window", "1", "--max-seconds-to-live", "5", state=lab_state_file)
    assert code == 1 and verdict["ok"] is False
    assert [c["name"] for c in verdict["checks"] if not c["ok"]] == ["not_collapsed", "live_fraction",
                                                                      "seconds_to_live_fraction"]
    code, verdict = run_cli("no-such-leases", state=lab_state_file)
    assert code == 2 and "table" in verdict["error"]


def test_cli_without_a_version_can_pass(emulator: Any, lab_state_file: Path) -> None:
    healthy = new_table(emulator, fleet(4, 0))
    code, verdict = run_cli(healthy, "--version", "", "--window", "0.5", state=lab_state_file)
    assert code == 0 and verdict["ok"] is True, verdict
    skipped = {c["name"]: c for c in verdict["checks"] if "skipped" in c}
    assert set(skipped) == {"not_collapsed"} and skipped["not_collapsed"]["ok"] is None
    assert "version" in skipped["not_collapsed"]["skipped"]
