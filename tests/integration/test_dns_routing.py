"""Health-aware routing in the lab DNS, over real UDP queries on 127.0.0.1.

The lab DNS is given health check statuses with ``set_health`` (as the lab's checkers
do) and must answer as Route 53 does: failover to SECONDARY and back, weighted and
multivalue answers without unhealthy members, and an alias that evaluates its target's
health failing over when the target's records are gone (the failover demo's shape).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from chaos_dynamo.dns.client import query
from chaos_dynamo.dns.server import LabDNS, Members
from chaos_dynamo.route53.records import AliasTarget, RecordSet, ZoneSnapshot

pytestmark = pytest.mark.integration

ZONE = "example.com."
SOA = "ns-2048.awsdns-64.net. hostmaster.amazon.com. 1 7200 900 1209600 86400"
POOL = ("10.1.0.1", "10.1.0.2", "10.1.0.3")
STANDBY = "10.2.0.1"
WEIGHTED = tuple(f"10.3.0.{i}" for i in range(1, 5))
MULTI = tuple(f"10.4.0.{i}" for i in range(10))
QUERIES = 200


def pool_records(addresses: tuple[str, ...] = POOL) -> list[RecordSet]:
    return [RecordSet("pool.app.example.com", "A", 5, (a,), set_identifier=f"lb{i}", weight=1)
            for i, a in enumerate(addresses)]


def records(pool: list[RecordSet]) -> list[RecordSet]:
    app = "app.example.com"
    return [
        RecordSet(ZONE, "SOA", 900, (SOA,)),
        RecordSet(ZONE, "NS", 172800, ("ns-1.awsdns-01.org.",)),
        RecordSet("fo.example.com", "A", 5, ("10.8.0.1",), set_identifier="p", failover="PRIMARY",
                  health_check_id="hc-p"),
        RecordSet("fo.example.com", "A", 5, ("10.8.0.2",), set_identifier="s",
                  failover="SECONDARY", health_check_id="hc-s"),
        *[RecordSet("w.example.com", "A", 5, (a,), set_identifier=f"w{i}", weight=1,
                    health_check_id=f"hc-w{i}") for i, a in enumerate(WEIGHTED)],
        *[RecordSet("mv.example.com", "A", 5, (a,), set_identifier=f"m{i}", multivalue_answer=True,
                    health_check_id=f"hc-m{i}") for i, a in enumerate(MULTI)],
        # The failover demo: PRIMARY -> weighted pool, SECONDARY -> standby, both evaluated.
        RecordSet(app, "A", alias=AliasTarget("Z1", "pool.app.example.com", True),
                  set_identifier="primary", failover="PRIMARY"),
        RecordSet(app, "A", alias=AliasTarget("Z1", "standby.app.example.com", True),
                  set_identifier="standby", failover="SECONDARY"),
        *pool,
        RecordSet("standby.app.example.com", "A", 5, (STANDBY,)),
        # One more alias level with its own health check on top.
        RecordSet("front.example.com", "A", alias=AliasTarget("Z1", "app.example.com", True),
                  set_identifier="front", failover="PRIMARY", health_check_id="hc-front"),
        RecordSet("front.example.com", "A", 5, ("10.9.0.9",), set_identifier="back",
                  failover="SECONDARY"),
        # An alias that evaluates itself: a loop, so unhealthy, never a hang.
        RecordSet("cyc.example.com", "A", alias=AliasTarget("Z1", "cyc.example.com", True),
                  set_identifier="p", failover="PRIMARY"),
        RecordSet("cyc.example.com", "A", 5, ("10.5.0.2",), set_identifier="s",
                  failover="SECONDARY"),
        RecordSet("note.example.com", "TXT", 5, ('"not an answer name"',)),
    ]


def snapshot(pool: list[RecordSet], serial: int) -> ZoneSnapshot:
    return ZoneSnapshot("/hostedzone/Z1", ZONE, tuple(records(pool)), serial=serial)


@pytest.fixture
def lab() -> Iterator[LabDNS]:
    server = LabDNS(seed=99).start()
    server.publish(snapshot(pool_records(), 1))
    try:
        yield server
    finally:
        server.stop()


def answers(lab: LabDNS, name: str, times: int = 1) -> set[frozenset[str]]:
    return {frozenset(query(lab.address, name, timeout=2).addresses) for _ in range(times)}


def one(lab: LabDNS, name: str) -> tuple[str, ...]:
    return query(lab.address, name, timeout=2).addresses


def test_failover_follows_the_primarys_health_and_back(lab: LabDNS) -> None:
    assert one(lab, "fo.example.com") == ("10.8.0.1",)  # now cached
    lab.set_health({"hc-p": False})
    assert one(lab, "fo.example.com") == ("10.8.0.2",)
    assert lab.members("fo.example.com") == Members(frozenset({"10.8.0.2"}), frozenset({"SECONDARY"}))
    lab.set_health({"hc-p": False, "hc-s": False})
    assert one(lab, "fo.example.com") == ("10.8.0.1",)  # both unhealthy: PRIMARY
    lab.set_health({"hc-p": True, "hc-s": False})
    assert one(lab, "fo.example.com") == ("10.8.0.1",)
    assert lab.members("fo.example.com").roles == frozenset({"PRIMARY"})


def test_publish_keeps_the_health_map(lab: LabDNS) -> None:
    lab.set_health({"hc-p": False})
    lab.publish(snapshot(pool_records(), 2))
    assert one(lab, "fo.example.com") == ("10.8.0.2",)
    lab.set_health({})  # an id left out is healthy
    assert one(lab, "fo.example.com") == ("10.8.0.1",)


def test_weighted_answers_never_hold_an_unhealthy_member(lab: LabDNS) -> None:
    assert lab.addresses("w.example.com") == 4
    lab.set_health({"hc-w1": False, "hc-w2": False})
    seen = answers(lab, "w.example.com", QUERIES)
    assert seen == {frozenset({WEIGHTED[0]}), frozenset({WEIGHTED[3]})}
    assert lab.addresses("w.example.com") == 2
    # Every member unhealthy: Route 53 treats them all as healthy.
    lab.set_health({f"hc-w{i}": False for i in range(4)})
    assert answers(lab, "w.example.com", QUERIES) == {frozenset({a}) for a in WEIGHTED}


def test_multivalue_answers_up_to_eight_healthy(lab: LabDNS) -> None:
    assert one(lab, "mv.example.com") == MULTI[:8]
    lab.set_health({"hc-m0": False, "hc-m4": False, "hc-m5": False})
    assert one(lab, "mv.example.com") == tuple(a for i, a in enumerate(MULTI) if i not in (0, 4, 5))
    lab.set_health({"hc-m0": False})  # nine healthy: the first eight of them
    assert one(lab, "mv.example.com") == MULTI[1:9]
    lab.set_health({f"hc-m{i}": False for i in range(10)})
    assert one(lab, "mv.example.com") == MULTI[:8]


def test_alias_evaluating_an_emptied_target_fails_over_and_back(lab: LabDNS) -> None:
    assert set(one(lab, "app.example.com")) <= set(POOL)
    assert lab.members("app.example.com") == Members(frozenset(POOL), frozenset({"PRIMARY"}))
    lab.publish(snapshot(pool_records(POOL[:1]), 2))  # the controller removes two targets
    assert lab.members("app.example.com") == Members(frozenset(POOL[:1]), frozenset({"PRIMARY"}))
    lab.publish(snapshot([], 3))  # ... and then the last one
    assert one(lab, "app.example.com") == (STANDBY,)
    assert lab.members("app.example.com") == Members(frozenset({STANDBY}), frozenset({"SECONDARY"}))
    assert lab.members("pool.app.example.com") == Members(frozenset(), frozenset())
    lab.publish(snapshot(pool_records(POOL[1:2]), 4))  # one comes back: failback
    assert one(lab, "app.example.com") == (POOL[1],)
    assert lab.members("app.example.com").roles == frozenset({"PRIMARY"})


def test_roles_and_health_through_two_alias_levels(lab: LabDNS) -> None:
    assert lab.members("front.example.com") == Members(frozenset(POOL), frozenset({"PRIMARY"}))
    lab.publish(snapshot([], 2))  # app fails over to its SECONDARY, which is healthy
    assert lab.members("front.example.com") == Members(frozenset({STANDBY}),
                                                       frozenset({"PRIMARY", "SECONDARY"}))
    lab.set_health({"hc-front": False})  # the alias's own health check counts too
    assert one(lab, "front.example.com") == ("10.9.0.9",)
    assert lab.members("front.example.com") == Members(frozenset({"10.9.0.9"}),
                                                       frozenset({"SECONDARY"}))


def test_an_alias_evaluating_itself_is_unhealthy_not_a_hang(lab: LabDNS) -> None:
    assert one(lab, "cyc.example.com") == ("10.5.0.2",)
    assert lab.counters()["errors"] == 0


def test_members_is_not_a_query_and_answer_names_lists_answerable_names(lab: LabDNS) -> None:
    lab.members("fo.example.com")
    lab.addresses("w.example.com")
    assert lab.counters()["total"] == 0
    assert lab.answer_names() == sorted([
        "app.example.com.", "cyc.example.com.", "fo.example.com.", "front.example.com.",
        "mv.example.com.", "pool.app.example.com.", "standby.app.example.com.",
        "w.example.com.",
    ])
    lab.publish(snapshot([], 2))
    assert "pool.app.example.com." not in lab.answer_names()
    lab.publish(ZoneSnapshot("Z2", "app.example.com", (
        RecordSet("standby.app.example.com", "A", 5, ("10.2.0.9",)),)))
    names = lab.answer_names()  # the longer zone now serves every name below app.
    assert "app.example.com." not in names and names.count("standby.app.example.com.") == 1


def test_health_changes_are_atomic_under_concurrent_queries(lab: LabDNS) -> None:
    done = threading.Event()

    def flipper() -> None:
        up = True
        while not done.is_set():
            lab.set_health({"hc-p": up})
            up = not up

    thread = threading.Thread(target=flipper)
    thread.start()
    seen: list[tuple[str, ...]] = []
    try:
        for _ in range(2000):
            seen.append(one(lab, "fo.example.com"))
            if len(seen) >= 200 and len(set(seen)) == 2:
                break
    finally:
        done.set()
        thread.join()
    assert set(seen) == {("10.8.0.1",), ("10.8.0.2",)}
