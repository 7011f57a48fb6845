"""The control plane's pure parts: history checkers, digests, input checks, backoff, failpoint halt."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from chaos_dynamo.clock import FakeClock
from chaos_dynamo.config import default_topology
from chaos_dynamo.control import routes
from chaos_dynamo.control.enactor import Endpoint, StepRecord
from chaos_dynamo.control.failpoints import Failpoints
from chaos_dynamo.control.history import (
    OPERATOR,
    History,
    current_generations,
    digest_of,
    generation_changes,
    summarize,
    went_backwards,
)
from chaos_dynamo.control.runtime import ControlPlane
from chaos_dynamo.control.scenarios import BACKWARDS, EMPTY, STUCK, _kind, _same_violation
from chaos_dynamo.errors import ConfigError
from chaos_dynamo.plans import plan_from_fleet

EP = "dynamodb.us-east-1.amazonaws.com"


def history(*records: StepRecord) -> History:
    h = History()
    h.clear({EP: 1})
    for i, r in enumerate(records):
        h.append(r, float(i), float(i) + 0.5)
    return h


def commit(actor: str, generation: int, outcome: str = "ok") -> StepRecord:
    return StepRecord(actor, "commit", outcome, generation, EP)


def test_a_stale_commit_is_a_generation_going_backwards_until_the_operator_restores() -> None:
    h = history(commit("enactor-b", 10), commit("enactor-a", 5), commit("enactor-c", 11, "fail"))
    entries = h.entries()
    assert [(c.before, c.after, c.backwards) for c in generation_changes(entries, h.baseline)] == \
        [(1, 10, False), (10, 5, True)]
    assert [(c.endpoint, c.before, c.after, c.actor) for c in went_backwards(entries, h.baseline)] == \
        [(EP, 10, 5, "enactor-a")]
    assert current_generations(entries, h.baseline) == {EP: 5}
    h.append(StepRecord(OPERATOR, "restore", "ok", 11, EP), 9.0, 9.5)
    assert went_backwards(h.entries(), h.baseline) == []  # a new epoch
    lines = summarize(h.entries(), h.baseline)
    assert "enactor-a commit plan 5 at dynamodb.us-east-1.amazonaws.com: active generation 10 -> 5 " \
           "(WENT BACKWARDS)" in lines
    assert any(line.startswith("enactor-c commit plan 11") and " fail" in line for line in lines)


def test_digest_ignores_times_and_the_operator_and_masks_zone_ids() -> None:
    failed = StepRecord("enactor-c", "commit", "fail", 11, EP, "target in zone ABCDEF123 was not found")
    one, two = history(commit("enactor-b", 10), failed), history(commit("enactor-b", 10), failed)
    two.append(StepRecord(OPERATOR, "restore", "ok", 11, EP), 50.0, 51.0)
    assert digest_of(one.entries()) == digest_of(two.entries())
    masked = digest_of(one.entries(), {"ABCDEF123": "Z1"})
    other_lab = history(commit("enactor-b", 10), StepRecord("enactor-c", "commit", "fail", 11, EP,
                                                            "target in zone QWERTY999 was not found"))
    assert digest_of(other_lab.entries(), {"QWERTY999": "Z1"}) == masked != digest_of(one.entries())


def test_violation_kinds_match_the_explorers_names() -> None:
    assert (EMPTY, BACKWARDS, STUCK) == ("empty-endpoint", "generation-decreased", "enactor-stuck")
    assert _kind("empty_endpoint") == EMPTY and _kind("generation-went-backwards") == BACKWARDS
    assert _same_violation({"kind": "empty-endpoint", "endpoint": EP + "."},
                           {"kind": EMPTY, "endpoint": EP.upper()})
    assert not _same_violation({"kind": "empty-endpoint", "endpoint": "other.example."},
                               {"kind": EMPTY, "endpoint": EP + "."})


def plane(clock: Any = None, seed: int = 0) -> ControlPlane:
    """A control plane that never talks to anything (its clients are made only when used)."""
    topo = default_topology()
    endpoints = [Endpoint(ep.name, f"Z{i}", ep.ipv6) for i, ep in enumerate(topo.endpoints)]
    return ControlPlane("http://127.0.0.1:9", "us-east-1", "plans", endpoints,
                        plan_from_fleet(1, topo.endpoints, topo.load_balancers), seed=seed,
                        **({"clock": clock} if clock else {}))


@pytest.mark.parametrize(("route", "body", "field"), [
    ("race", {"design": "optimistic"}, "design"),
    ("race", {"seed": True}, "seed"),
    ("race", {"keep": 9}, "keep"),
    ("race", {"timeout": float("nan")}, "timeout"),
    ("race", {"extra": 1}, "extra"),
    ("start", {"poll": 0}, "poll"),
    ("failpoints", {"point": "enactor.commit", "action": "fail", "count": 0}, "failpoint.count"),
    ("failpoints", {"point": "enactor.commit", "action": "delay"}, "failpoint.seconds"),
    ("failpoints", {"point": "enactor.commit", "action": "pause", "event": "x", "actors": ["nobody"]},
     "failpoint.actors"),
    ("failpoints/disarm", {"point": "enactor.sleep"}, "point"),
    ("stall", {"enactor": "planner"}, "enactor"),
    ("slow", {"enactor": "enactor-a", "seconds": "1"}, "seconds"),
    ("replay", {"trace": {"format": "nope"}}, "format"),
    ("design", {"design": "naive", "keep": -1}, "keep"),
])
def test_routes_check_every_input_before_anything_changes(route: str, body: dict[str, Any], field: str) -> None:
    p = plane()
    with pytest.raises(ConfigError) as caught:
        routes.handle(p, "POST", route.split("/"), {}, body)
    assert caught.value.field == field
    assert p.failpoints.describe() == [] and p.status()["mode"] == "idle"


def test_routes_answer_status_and_404() -> None:
    p = plane()
    assert routes.handle(p, "GET", ["status"], {}, None)[1]["design"] == "naive"
    status, body = routes.handle(p, "GET", ["teleport"], {}, None)
    assert status == 404 and "POST /_chaos_dynamo/control/race" in body["routes"]
    with pytest.raises(ConfigError, match="since"):
        routes.handle(p, "GET", ["history"], {"since": ["yesterday"]}, None)


def test_backoff_is_capped_exponential_jitter_from_the_seed() -> None:
    def sleeps(seed: int) -> list[float]:
        clock = FakeClock()
        p = plane(clock, seed)
        out = []
        for failures in range(1, 12):
            before = clock.monotonic()
            p._backoff("enactor-a", failures)
            out.append(clock.monotonic() - before)
        return out

    first, again, other = sleeps(4), sleeps(4), sleeps(5)
    assert first == again != other
    assert all(0 <= s <= p_cap for s, p_cap in zip(first, [0.02 * 2 ** i for i in range(6)] + [1.0] * 5,
                                                   strict=True))


def test_halted_failpoints_release_a_paused_actor_and_stay_armed() -> None:
    fp = Failpoints()
    fp.arm("enactor.commit", "pause", actors=["enactor-a"], event="never")
    done = threading.Event()
    thread = threading.Thread(target=lambda: (fp.hit("enactor.commit", "enactor-a"), done.set()))
    thread.start()
    assert fp.wait_until_paused("enactor-a", 5)
    fp.halt()
    thread.join(timeout=5)
    assert done.is_set() and fp.waiting() == {}
    assert [a["point"] for a in fp.describe()] == ["enactor.commit"]
    fp.resume()
