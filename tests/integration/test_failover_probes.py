"""The failover probes on the real lab: records written through its Route 53 make names flap
and fail over, and the probes read that from the lab's answer and change histories."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from chaos_dynamo.clock import wait_until
from chaos_dynamo.endpoint import _lab
from chaos_dynamo.failover import probes
from chaos_dynamo.lab.state import LabInfo
from tests.conftest import control

pytestmark = pytest.mark.integration

ZONE = "us-east-1.amazonaws.com"
POOL = ["127.0.5.1", "127.0.5.2", "127.0.5.3"]


def weighted(name: str, set_id: str, address: str) -> dict[str, Any]:
    return {"Name": name, "Type": "A", "SetIdentifier": set_id, "Weight": 1, "TTL": 5,
            "ResourceRecords": [{"Value": address}]}


class Zone:
    """Change batches on the lab's zone, each waited for until the lab DNS answers it; every
    record still there at the end is deleted (the session lab is shared)."""

    def __init__(self, info: LabInfo) -> None:
        self.info = info
        self.client = _lab.route53(info)
        self.zone_id = info.zones[ZONE]
        self.live: dict[tuple[str, str], dict[str, Any]] = {}

    def change(self, action: str, *records: dict[str, Any]) -> None:
        self.client.change_resource_record_sets(HostedZoneId=self.zone_id, ChangeBatch={
            "Comment": "failover probe test", "Changes": [{"Action": action, "ResourceRecordSet": r}
                                                          for r in records]})
        for r in records:
            key = (r["Name"], r.get("SetIdentifier", ""))
            if action == "DELETE":
                self.live.pop(key, None)
            else:
                self.live[key] = r

    def answer(self, name: str) -> dict[str, Any] | None:
        status, entries = control(self.info, f"route53/answers?name={quote(name)}")
        assert status == 200, entries
        return entries[-1] if entries else None

    def wait(self, name: str, done: Callable[[dict[str, Any]], bool]) -> None:
        assert wait_until(lambda: (a := self.answer(name)) is not None and done(a), timeout=20, interval=0.05), \
            f"the lab never answered {name} as expected; last: {self.answer(name)}"

    def cleanup(self) -> None:
        # Aliases first: their targets may be among the records.
        for key, record in sorted(self.live.items(), key=lambda kv: "AliasTarget" not in kv[1]):
            try:
                self.client.change_resource_record_sets(HostedZoneId=self.zone_id, ChangeBatch={
                    "Changes": [{"Action": "DELETE", "ResourceRecordSet": record}]})
            except Exception as exc:  # noqa: BLE001 - clean up the rest anyway, then say so
                pytest.fail(f"could not delete {key}: {exc}")
        self.live.clear()


@pytest.fixture
def zone(lab_info: LabInfo) -> Iterator[Zone]:
    status, _ = control(lab_info, "route53/answers")
    assert status == 200, "the lab serves no /_chaos_dynamo/route53/answers"
    z = Zone(lab_info)
    try:
        yield z
    finally:
        z.cleanup()


@pytest.fixture
def config(lab_info: LabInfo, tmp_path: Path) -> dict[str, Any]:
    return {"chaos_dynamo_api": lab_info.api_url, "chaos_dynamo_state": str(tmp_path / "lab.json")}


def test_a_member_removed_and_added_back_twice_is_two_flaps(zone: Zone, config: dict[str, Any]) -> None:
    name = f"flap-{uuid.uuid4().hex[:8]}.{ZONE}"
    records = [weighted(name, f"lb-{i}", address) for i, address in enumerate(POOL)]
    since = time.time() - 0.001
    zone.change("CREATE", *records)
    zone.wait(name, lambda a: sorted(a["addresses"]) == POOL)
    for _ in range(2):
        zone.change("DELETE", records[2])
        zone.wait(name, lambda a: sorted(a["addresses"]) == POOL[:2])
        zone.change("CREATE", records[2])
        zone.wait(name, lambda a: sorted(a["addresses"]) == POOL)

    flaps = probes.answer_flaps(name, zone=ZONE, since=since, configuration=config)
    assert (flaps["flaps"], flaps["total"], flaps["by_member"]) == (2, 2, {POOL[2]: 2})
    assert flaps["fleet"] == 3 and flaps["basis"].startswith("since; the name's history begins later")
    removed = probes.capacity_removed_per_minute(name, since=since, configuration=config)
    assert removed["removals"] == 2 and removed["fraction"] == pytest.approx(2 / 3)
    minimum = probes.min_capacity_fraction(name, since=since, configuration=config)
    assert minimum["fraction"] == pytest.approx(2 / 3) and minimum["members_at_min"] == POOL[:2]
    degraded = probes.seconds_degraded(name, since=since, configuration=config)
    assert 0 < degraded["seconds"] < degraded["until"] - degraded["since"]
    now = probes.capacity_fraction(name, wait_for=1.0, timeout=5, since=since, configuration=config)
    assert (now["fraction"], now["members"]) == (1.0, POOL)
    changes = probes.record_changes(name, since=since, configuration=config)
    assert changes["total"] == 5 and changes["changes"] == 5
    assert {c["action"] for b in changes["batches"] for c in b["changes"]} == {"CREATE", "DELETE"}
    report = probes.failover_report(name, since=since, configuration=config)
    assert [len(p["addresses"]) for p in report["timeline"]] == [3, 2, 3, 2, 3]
    assert report["flaps"]["flaps"] == 2 and report["oscillations"]["switches"] == 0


def test_a_failover_pair_failing_over_and_back_is_one_oscillation(zone: Zone, config: dict[str, Any]) -> None:
    tag = uuid.uuid4().hex[:8]
    name, target = f"fo-{tag}.{ZONE}", f"pool-{tag}.{ZONE}"
    pool = {"Name": target, "Type": "A", "TTL": 5, "ResourceRecords": [{"Value": "127.0.6.1"}]}
    primary = {"Name": name, "Type": "A", "SetIdentifier": "primary", "Failover": "PRIMARY",
               "AliasTarget": {"HostedZoneId": zone.zone_id, "DNSName": target, "EvaluateTargetHealth": True}}
    secondary = {"Name": name, "Type": "A", "SetIdentifier": "standby", "Failover": "SECONDARY", "TTL": 5,
                 "ResourceRecords": [{"Value": "127.0.6.9"}]}
    since = time.time() - 0.001
    zone.change("CREATE", pool)
    zone.change("CREATE", primary, secondary)
    zone.wait(name, lambda a: a["roles"] == ["PRIMARY"] and a["addresses"] == ["127.0.6.1"])
    zone.change("DELETE", pool)  # the primary's target has no records: unhealthy, the standby answers
    zone.wait(name, lambda a: a["roles"] == ["SECONDARY"] and a["addresses"] == ["127.0.6.9"])
    zone.change("CREATE", pool)
    zone.wait(name, lambda a: a["roles"] == ["PRIMARY"])

    result = probes.failover_oscillations(name, since=since, configuration=config)
    assert (result["oscillations"], result["switches"]) == (1, 2)
    assert [r["role"] for r in result["roles"]] == ["PRIMARY", "SECONDARY", "PRIMARY"]
    assert probes.answer_flaps(name, since=since, configuration=config)["flaps"] == 1  # 127.0.6.1 came back
    pool_changes = probes.record_changes(target, since=since, configuration=config)
    assert pool_changes["total"] == 3
