"""Batches of experiments on a shared lab: disjoint namespaces together, undeclared alone."""

from __future__ import annotations

import random

import pytest

from chaos_dynamo.errors import ConfigError
from chaos_dynamo.verify.schedule import batches


def ns(*names: str) -> frozenset[str]:
    return frozenset(names)


def check_invariants(scopes: list[frozenset[str] | None], jobs: int, result: list[list[int]]) -> None:
    """What every schedule must satisfy, whatever the input."""
    placed = [i for batch in result for i in batch]
    assert sorted(placed) == list(range(len(scopes))), "every experiment exactly once"
    for batch in result:
        assert batch and len(batch) <= jobs and batch == sorted(batch)
        if any(scopes[i] is None for i in batch):
            assert len(batch) == 1, "an experiment without namespaces runs alone"
            continue
        seen: set[str] = set()
        for i in batch:
            scope = scopes[i]
            assert scope is not None and not seen & scope, "namespaces in a batch are disjoint"
            seen |= scope
    firsts = [batch[0] for batch in result]
    assert firsts == sorted(firsts), "batches start in the experiments' order"


def test_disjoint_experiments_share_a_batch_up_to_jobs() -> None:
    scopes = [ns("a"), ns("b"), ns("c"), ns("d"), ns("e")]
    assert batches(scopes, 2) == [[0, 1], [2, 3], [4]]
    assert batches(scopes, 5) == [[0, 1, 2, 3, 4]]


def test_one_job_runs_everything_one_by_one() -> None:
    assert batches([ns("a"), ns("b"), None], 1) == [[0], [1], [2]]


def test_overlapping_namespaces_never_run_together() -> None:
    scopes = [ns("endpoint"), ns("endpoint", "leases"), ns("leases"), ns("failover")]
    assert batches(scopes, 4) == [[0, 2, 3], [1]]


def test_an_experiment_without_namespaces_runs_alone() -> None:
    scopes = [ns("a"), None, ns("b"), None, None]
    assert batches(scopes, 8) == [[0, 2], [1], [3], [4]]


def test_a_later_experiment_may_join_an_earlier_batch_past_a_conflict() -> None:
    # 1 conflicts with 0, 2 does not: 2 runs with 0, 1 waits for the next batch.
    assert batches([ns("x", "y"), ns("y"), ns("z")], 2) == [[0, 2], [1]]


def test_duplicates_of_one_namespace_serialise() -> None:
    assert batches([ns("dns")] * 4, 4) == [[0], [1], [2], [3]]


def test_no_experiments_no_batches() -> None:
    assert batches([], 3) == []


@pytest.mark.parametrize("jobs", [0, -1, True, 1.5])
def test_jobs_must_be_a_positive_integer(jobs: object) -> None:
    with pytest.raises(ConfigError) as info:
        batches([ns("a")], jobs)  # type: ignore[arg-type]
    assert info.value.field == "jobs"


@pytest.mark.parametrize("seed", range(200))
def test_invariants_hold_on_random_schedules(seed: int) -> None:
    rng = random.Random(seed)
    names = ["endpoint", "leases", "failover", "lb", "dns", "control"]
    scopes: list[frozenset[str] | None] = [
        None if rng.random() < 0.2 else frozenset(rng.sample(names, rng.randint(1, 3)))
        for _ in range(rng.randint(0, 12))]
    jobs = rng.randint(1, 5)
    result = batches(scopes, jobs)
    check_invariants(scopes, jobs, result)
    assert batches(scopes, jobs) == result, "deterministic"


def test_the_invariant_check_catches_a_bad_schedule() -> None:
    # The checker used above must be able to fail: a batch mixing overlapping namespaces.
    with pytest.raises(AssertionError, match="disjoint"):
        check_invariants([ns("a"), ns("a")], 2, [[0, 1]])
    with pytest.raises(AssertionError, match="alone"):
        check_invariants([ns("a"), None], 2, [[0, 1]])
