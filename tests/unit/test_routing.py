"""Route 53 routing policies with health, case by case as AWS documents them.

Each case names the records of one group by label; a label in ``health`` gets a health
check in that state (H healthy, U unhealthy), a label not in it has no health check
(always healthy). The expected options are (weight, labels answered together).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from chaos_dynamo.route53.records import RecordSet
from chaos_dynamo.route53.routing import MULTIVALUE_LIMIT, choose, policy

NAME = "app.example.com"


@dataclass(frozen=True)
class Case:
    id: str
    records: list[tuple[str, dict[str, Any]]]
    health: dict[str, str] = field(default_factory=dict)
    expected: list[tuple[int, tuple[str, ...]]] = field(default_factory=list)


def weighted(*weights: int) -> list[tuple[str, dict[str, Any]]]:
    return [(str(i), {"weight": w}) for i, w in enumerate(weights, start=1)]


def states(text: str) -> dict[str, str]:
    """'UU-' -> {"1": "U", "2": "U"}: '-' means no health check."""
    return {str(i): s for i, s in enumerate(text, start=1) if s != "-"}


def failover(*roles: str) -> list[tuple[str, dict[str, Any]]]:
    return [(role[0], {"failover": role}) for role in roles]


def multivalue(count: int) -> list[tuple[str, dict[str, Any]]]:
    return [(str(i), {"multivalue_answer": True}) for i in range(1, count + 1)]


def labels(first: int, last: int) -> tuple[str, ...]:
    return tuple(str(i) for i in range(first, last + 1))


CASES = [
    # AWS's documented weighted table: weights 1, 1, 0, all with health checks.
    Case("weighted-UUH", weighted(1, 1, 0), states("UUH"), [(1, ("3",))]),
    Case("weighted-UUU", weighted(1, 1, 0), states("UUU"), [(1, ("1",)), (1, ("2",))]),
    Case("weighted-UHU", weighted(1, 1, 0), states("UHU"), [(1, ("2",))]),
    Case("weighted-HHU", weighted(1, 1, 0), states("HHU"), [(1, ("1",)), (1, ("2",))]),
    Case("weighted-HHH", weighted(1, 1, 0), states("HHH"), [(1, ("1",)), (1, ("2",))]),
    # ... and with the weight-0 record having no health check (always healthy).
    Case("weighted-UU-", weighted(1, 1, 0), states("UU-"), [(1, ("3",))]),
    Case("weighted-HU-", weighted(1, 1, 0), states("HU-"), [(1, ("1",))]),
    Case("weighted-keeps-weights", weighted(3, 1, 2), states("HHU"), [(3, ("1",)), (1, ("2",))]),
    Case("weighted-no-checks", weighted(3, 1, 0), {}, [(3, ("1",)), (1, ("2",))]),
    Case("weighted-zeros-healthy-share", weighted(0, 0, 0), states("HUH"),
         [(1, ("1",)), (1, ("3",))]),
    Case("weighted-zeros-all-unhealthy", weighted(0, 0, 0), states("UUU"),
         [(1, ("1",)), (1, ("2",)), (1, ("3",))]),
    Case("weighted-only-zero-healthy", weighted(5, 0, 0), states("UH-"),
         [(1, ("2",)), (1, ("3",))]),
    Case("weighted-one-member-unhealthy", weighted(1), states("U"), [(1, ("1",))]),
    # Failover: PRIMARY if healthy, else SECONDARY if healthy, else PRIMARY.
    Case("failover-both-healthy", failover("PRIMARY", "SECONDARY"), {"P": "H", "S": "H"},
         [(1, ("P",))]),
    Case("failover-primary-down", failover("PRIMARY", "SECONDARY"), {"P": "U", "S": "H"},
         [(1, ("S",))]),
    Case("failover-primary-down-secondary-unchecked", failover("PRIMARY", "SECONDARY"),
         {"P": "U"}, [(1, ("S",))]),
    Case("failover-secondary-down", failover("PRIMARY", "SECONDARY"), {"P": "H", "S": "U"},
         [(1, ("P",))]),
    Case("failover-both-down", failover("PRIMARY", "SECONDARY"), {"P": "U", "S": "U"},
         [(1, ("P",))]),
    Case("failover-order-does-not-matter", failover("SECONDARY", "PRIMARY"),
         {"P": "U", "S": "H"}, [(1, ("S",))]),
    Case("failover-primary-unchecked", failover("SECONDARY", "PRIMARY"), {"S": "H"},
         [(1, ("P",))]),
    Case("failover-only-primary-down", failover("PRIMARY"), {"P": "U"}, [(1, ("P",))]),
    Case("failover-only-secondary-down", failover("SECONDARY"), {"S": "U"}, [(1, ("S",))]),
    # Multivalue: up to 8 healthy, else up to 8 of all.
    Case("multivalue-all-healthy", multivalue(10), {}, [(1, labels(1, 8))]),
    Case("multivalue-skips-unhealthy", multivalue(10), states("UHUU"),
         [(1, ("2", *labels(5, 10)))]),
    Case("multivalue-one-healthy", multivalue(3), states("UUH"), [(1, ("3",))]),
    Case("multivalue-none-healthy", multivalue(10), states("U" * 10), [(1, labels(1, 8))]),
    # Simple: health not evaluated.
    Case("simple-unhealthy-still-answers", [("1", {})], states("U"), [(1, ("1",))]),
    # Latency (not modelled): first healthy, else first.
    Case("latency-first-healthy", [("1", {"region": "us-east-1"}), ("2", {"region": "us-west-2"})],
         states("UH"), [(1, ("2",))]),
    Case("latency-none-healthy", [("1", {"region": "us-east-1"}), ("2", {"region": "us-west-2"})],
         states("UU"), [(1, ("1",))]),
]


def build(case: Case) -> list[RecordSet]:
    out: list[RecordSet] = []
    for label, attrs in case.records:
        set_id = None if not attrs else label
        check = label if label in case.health else None
        out.append(RecordSet(NAME, "A", 60, (f"10.0.0.{len(out) + 1}",), set_identifier=set_id,
                             health_check_id=check, **attrs))
    return out


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_choose(case: Case) -> None:
    records = build(case)
    label = {r.values[0]: name for r, (name, _) in zip(records, case.records, strict=True)}

    def healthy(record: RecordSet) -> bool:
        return record.health_check_id is None or case.health[record.health_check_id] == "H"

    got = [(w, tuple(label[r.values[0]] for r in chosen)) for w, chosen in choose(records, healthy)]
    assert got == case.expected


def test_policies_are_recognised() -> None:
    groups: list[list[tuple[str, dict[str, Any]]]] = [
        weighted(1), failover("PRIMARY"), multivalue(2), [("1", {})],
        [("1", {"region": "us-east-1"})],
    ]
    assert [policy(build(Case("", recs))) for recs in groups] == ["weighted", "failover", "multivalue", "simple", "other"]
    assert MULTIVALUE_LIMIT == 8


def test_simple_records_never_ask_for_health_and_no_candidates_no_options() -> None:
    asked: list[RecordSet] = []

    def healthy(record: RecordSet) -> bool:
        asked.append(record)
        return False

    record = RecordSet(NAME, "A", 60, ("10.0.0.1",), health_check_id="hc")
    assert choose([record], healthy) == [(1, (record,))]
    assert asked == []
    assert choose([], healthy) == []


def test_healthy_primary_does_not_evaluate_the_secondary() -> None:
    """Health may be costly (an alias resolves its target): asked only where needed."""
    asked: list[str | None] = []
    records = build(Case("", failover("PRIMARY", "SECONDARY"), {"P": "H", "S": "U"}))

    def healthy(record: RecordSet) -> bool:
        asked.append(record.failover)
        return record.failover == "PRIMARY"

    assert choose(records, healthy) == [(1, (records[0],))]
    assert asked == ["PRIMARY"]
