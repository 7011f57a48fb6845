"""The control plane's pure parts: history checkers, digests, input checks, backoff,
failpoints, and the actor threads' lifecycle (halt, crash, a cycle cut short)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from typing import Any

import pytest

from chaos_dynamo.clock import REAL_CLOCK, FakeClock
from chaos_dynamo.config import default_topology
from chaos_dynamo.control import _client, actions, routes
from chaos_dynamo.control.enactor import Endpoint, Phase, PlannerState, StepRecord, planner_step
from chaos_dynamo.control.explorer import Bounds, initial_world
from chaos_dynamo.control.failpoints import Failpoints
from chaos_dynamo.control.history import (
    OPERATOR,
    History,
    current_generations,
    digest_of,
    generation_changes,
    highest_generations,
    summarize,
    went_backwards,
)
from chaos_dynamo.control.invariants import EMPTY_ENDPOINT, ENACTOR_STUCK, GENERATION_DECREASED
from chaos_dynamo.control.runtime import HALT_TIMEOUT, ControlPlane, Mode, World, _Zones
from chaos_dynamo.control.scenarios import _Deadline, _same_violation
from chaos_dynamo.errors import ConfigError, LabError
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
    assert (EMPTY_ENDPOINT, GENERATION_DECREASED, ENACTOR_STUCK) == \
        ("empty-endpoint", "generation-decreased", "enactor-stuck")
    # Kinds match exactly: a trace naming another kind is not reproduced by a near miss.
    assert not _same_violation({"kind": "empty_endpoint"}, {"kind": EMPTY_ENDPOINT, "endpoint": EP + "."})
    assert not _same_violation({"kind": GENERATION_DECREASED}, {"kind": EMPTY_ENDPOINT})
    assert _same_violation({"kind": ENACTOR_STUCK}, {"kind": ENACTOR_STUCK, "endpoint": ""})
    assert _same_violation({"kind": "empty-endpoint", "endpoint": EP + "."},
                           {"kind": EMPTY_ENDPOINT, "endpoint": EP.upper()})
    assert not _same_violation({"kind": "empty-endpoint", "endpoint": "other.example."},
                               {"kind": EMPTY_ENDPOINT, "endpoint": EP + "."})


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


def test_routes_and_the_lab_parse_since_alike() -> None:
    from chaos_dynamo.lab import lab

    assert routes.parse_since({}) is None and routes.parse_since({"since": ["1700000000.5"]}) == 1700000000.5
    for bad in ("yesterday", "nan", "inf"):
        with pytest.raises(ConfigError, match="since"):
            routes.parse_since({"since": [bad]})
    assert not hasattr(lab, "_since")  # one parser, not two


def test_highest_generation_counts_from_the_last_restore() -> None:
    h = history(commit("enactor-b", 10), commit("enactor-a", 5))
    assert highest_generations(h.entries(), h.baseline) == {EP: 10}
    h.append(StepRecord(OPERATOR, "restore", "ok", 7, EP), 9.0, 9.5)
    assert highest_generations(h.entries(), h.baseline) == {EP: 7}  # a new epoch


# --- failpoints ---------------------------------------------------------------------------------

def _hit_in_thread(fp: Failpoints, actor: str = "enactor-a") -> tuple[threading.Thread, list[str]]:
    out: list[str] = []
    thread = threading.Thread(target=lambda: out.append(fp.hit("enactor.commit", actor)))
    thread.start()
    return thread, out


def test_a_pause_armed_after_its_event_waits_for_the_next_one() -> None:
    fp = Failpoints()
    fp.signal("enactor-b.applied")  # free-running: B applied a plan before the pause was armed
    fp.arm("enactor.commit", "pause", actors=["enactor-a"], event="enactor-b.applied")
    thread, out = _hit_in_thread(fp)
    assert fp.wait_until_paused("enactor-a", 5)  # the old occurrence does not release it
    assert fp.describe()[0]["after"] == 1
    fp.signal("enactor-b.applied")
    thread.join(timeout=5)
    assert out == [""] and fp.waiting() == {}
    assert fp.happened("enactor-b.applied") and fp.occurrences("enactor-b.applied") == 2
    assert fp.wait_for_event("enactor-b.applied", 0) and not fp.wait_for_event("enactor-b.applied", 0, after=2)


def test_a_pause_armed_before_its_event_waits_for_the_first() -> None:
    fp = Failpoints()
    fp.arm("enactor.commit", "pause", actors=["enactor-a"], event="enactor-b.applied")
    thread, out = _hit_in_thread(fp)
    assert fp.wait_until_paused("enactor-a", 5)
    assert not fp.happened("enactor-b.applied")
    fp.signal("enactor-b.applied")
    thread.join(timeout=5)
    assert out == [""]
    assert fp.hit("enactor.commit", "enactor-a") == ""  # released for good: it does not pause again


def test_a_pause_that_outlives_its_timeout_says_which_event_never_came() -> None:
    fp = Failpoints(pause_timeout=0.05)
    fp.arm("enactor.commit", "pause", actors=["enactor-a"], event="enactor-b.applied")
    with pytest.raises(TimeoutError, match=r"enactor-a paused at enactor.commit for 0.05 s and "
                                           r"'enactor-b.applied' did not happen"):
        fp.hit("enactor.commit", "enactor-a")
    assert fp.waiting() == {}


def test_a_delay_sleeps_through_the_injected_clock() -> None:
    clock = FakeClock()
    fp = Failpoints(clock=clock)
    fp.arm("enactor.cleanup", "delay", actors=["enactor-c"], seconds=2.5)
    assert fp.hit("enactor.cleanup", "enactor-c") == ""
    assert clock.monotonic() == 2.5
    assert fp.hit("enactor.cleanup", "enactor-a") == "" and clock.monotonic() == 2.5  # not armed for A
    assert fp.describe()[0]["fired"] == 1


def _random_patterns(fp: Failpoints, order: list[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for actor in order:
        out.setdefault(actor, []).append(fp.hit("enactor.commit", actor))
    return out


def test_random_failures_per_actor_do_not_depend_on_the_interleaving() -> None:
    def armed(seed: int) -> Failpoints:
        fp = Failpoints(seed=seed)
        fp.arm("enactor.commit", "random", probability=0.5)
        return fp

    interleaved = _random_patterns(armed(7), ["enactor-a", "enactor-b"] * 40)
    one_by_one = _random_patterns(armed(7), ["enactor-a"] * 40 + ["enactor-b"] * 40)
    assert interleaved == one_by_one
    assert "fail" in interleaved["enactor-a"] and "" in interleaved["enactor-a"]
    assert interleaved["enactor-a"] != interleaved["enactor-b"]  # each actor has its own sequence
    assert _random_patterns(armed(8), ["enactor-a"] * 40)["enactor-a"] != interleaved["enactor-a"]
    # A reseed starts every sequence again.
    fp = armed(7)
    _random_patterns(fp, ["enactor-a"] * 13)
    fp.reseed(7)
    assert _random_patterns(fp, ["enactor-a"] * 40)["enactor-a"] == interleaved["enactor-a"]


def test_random_failures_replay_in_another_process() -> None:
    code = ("from chaos_dynamo.control.failpoints import Failpoints\n"
            "fp = Failpoints(seed=7)\n"
            "fp.arm('enactor.commit', 'random', probability=0.5)\n"
            "print(''.join('F' if fp.hit('enactor.commit', 'enactor-a') else '.' for _ in range(40)))\n")
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60,
                           check=True).stdout.strip()
    fp = Failpoints(seed=7)
    fp.arm("enactor.commit", "random", probability=0.5)
    assert other == "".join("F" if fp.hit("enactor.commit", "enactor-a") else "." for _ in range(40))


def test_halts_nest_and_a_halted_hit_returns_at_once() -> None:
    clock = FakeClock()
    fp = Failpoints(clock=clock, pause_timeout=30)
    fp.arm("enactor.commit", "pause", event="never")
    fp.arm("enactor.commit", "delay", seconds=5)
    fp.halt()
    fp.halt()
    fp.resume()  # an inner halt ends: the outer one still holds
    assert fp.halted and fp.hit("enactor.commit", "enactor-a") == "" and clock.monotonic() == 0
    fp.resume()
    assert not fp.halted


# --- the actor threads -----------------------------------------------------------------------

def _cleanup(p: ControlPlane, release: threading.Event | None = None) -> None:
    if release is not None:
        release.set()
    for thread in p._threads.values():
        thread.join(timeout=5)


def test_concurrent_halts_do_not_let_a_released_actor_pause_again() -> None:
    p = plane()
    p.failpoints.pause_timeout = 30  # a re-pause would hold the halts far beyond the test's bound
    for point in ("enactor.commit", "enactor.after_check"):
        p.failpoints.arm(point, "pause", event="never")

    def actor(name: str, world: World) -> None:
        # As enactor_once: released at one point, the actor goes on to the next one.
        while not p._stop.is_set():
            p._hit("enactor.commit", name, "commit")
            p._hit("enactor.after_check", name, "check")

    p.launch(Mode.RACE, ["enactor-a", "enactor-b"], target=actor)
    try:
        assert p.failpoints.wait_until_paused("enactor-a", 10)
        started = REAL_CLOCK.monotonic()
        halts = [threading.Thread(target=p.halt) for _ in range(2)]  # stop() and a scenario's finally
        for thread in halts:
            thread.start()
        for thread in halts:
            thread.join(timeout=20)
        assert REAL_CLOCK.monotonic() - started < 5
        assert not any(t.is_alive() for t in p._threads.values())
        assert p.failpoints.waiting() == {} and not p.failpoints.halted
        assert p.status()["mode"] == "idle"
    finally:
        _cleanup(p)


def test_halt_waits_for_all_threads_against_one_deadline() -> None:
    p = plane()
    release = threading.Event()

    def deaf(name: str, world: World) -> None:
        release.wait(30)  # ignores the stop

    p.launch(Mode.RACE, None, target=deaf)
    try:
        started = REAL_CLOCK.monotonic()
        with pytest.raises(LabError, match=r"did not stop within 0.3 s") as caught:
            p.halt(0.3)
        assert REAL_CLOCK.monotonic() - started < 1.0  # not 0.3 s per thread (4 threads)
        assert "control-planner" in str(caught.value) and "control-enactor-c" in str(caught.value)
        assert HALT_TIMEOUT < 20  # `lab down` waits 20 s for the whole lab
    finally:
        _cleanup(p, release)


def test_an_actor_killed_by_an_unexpected_error_says_so() -> None:
    p = plane()

    def boom(name: str, world: World) -> None:
        if name == "enactor-a":
            raise ValueError("a plan item without weights")
        p._stop.wait(30)

    p.launch(Mode.RACE, ["planner", "enactor-a"], target=boom)
    try:
        p._threads["enactor-a"].join(timeout=10)
        status = p.status()
        assert status["mode"] == "race" and status["failed"] == {"enactor-a": "ValueError: a plan item without weights"}
        assert status["actors"]["enactor-a"] == {"alive": False, "error": "ValueError: a plan item without weights"}
        assert status["actors"]["planner"] == {"alive": True, "error": ""}
        assert status["enactors"]["enactor-a"]["alive"] is False
        assert "ValueError" in status["enactors"]["enactor-a"]["error"]
        crash = p.history.entries()[-1].record
        assert (crash.actor, crash.action, crash.outcome) == ("enactor-a", "crash", "info")
        assert "ValueError: a plan item without weights" in crash.detail
        assert any("enactor-a stopped by an unexpected error" in line
                   for line in summarize(p.history.entries(), p.history.baseline))
        # A scenario waiting on the actors fails at once, not at its timeout.
        with pytest.raises(LabError, match="enactor-a: ValueError"):
            _Deadline(p, "the race scenario", 30).event("enactor-a.done")
    finally:
        p.halt()
    assert p.status()["actors"]["planner"]["alive"] is False


class _Zone:
    """The in-memory zones with the change id a boto3 store remembers."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.last_change_id = "C1"

    def read(self, zone_id: str, name: str) -> Any:
        return self.inner.read(zone_id, name)

    def change(self, zone_id: str, changes: Any, comment: str = "") -> None:
        self.inner.change(zone_id, changes, comment)


def test_a_cycle_cut_short_releases_its_hold_on_the_plan() -> None:
    setup = initial_world(Bounds(enactors=3, plans=4, endpoints=1))
    p = ControlPlane("http://127.0.0.1:9", "us-east-1", "plans", setup.config.endpoints, setup.template)
    plans = setup.world.plans
    planner_step(PlannerState(), plans, setup.template)  # plan 2: newer than the applied plan 1
    world = World(_Zones(_Zone(setup.world.zones), lambda change_id: None), plans, None)
    p.failpoints.arm("enactor.commit", "pause", actors=["enactor-a"], event="never")
    done: list[Any] = []
    thread = threading.Thread(target=lambda: done.append(p.cycle("enactor-a", world)))
    thread.start()
    try:
        assert p.failpoints.wait_until_paused("enactor-a", 10)
        assert plans.holders(2) == {"enactor-a"}  # the check took the hold
        p.halt()
        thread.join(timeout=10)
    finally:
        p.failpoints.disarm()
    assert plans.holders(2) == frozenset()
    assert done[0].phase == Phase.ABANDONED and p.state_of("enactor-a").phase == Phase.ABANDONED
    release = p.history.entries()[-1].record
    assert (release.action, release.outcome, release.generation) == ("release", "ok", 2)


def test_one_deadline_covers_every_wait_of_a_scenario() -> None:
    clock = FakeClock()
    p = plane(clock)
    deadline = _Deadline(p, "the race scenario", 5)

    def after(seconds: float) -> Any:
        def ready(_slice: float) -> bool:
            clock.advance(1)
            return clock.monotonic() >= seconds

        return ready

    deadline.wait(after(3), "the first event")  # 3 of the 5 s
    with pytest.raises(LabError, match=r"the race scenario did not finish within its timeout of 5 s: "
                                       r"it was waiting for the second event"):
        deadline.wait(after(100), "the second event")
    assert clock.monotonic() <= 6  # the second wait had 2 s left, not 5


def test_the_race_action_waits_for_the_scenario_and_its_teardown(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[float] = []

    def call(route: str, body: Any = None, *, configuration: Any = None, timeout: float = 30.0) -> Any:
        calls.append(timeout)
        return {}

    monkeypatch.setattr(_client, "call", call)
    actions.run_race_scenario(timeout=45.0, configuration={})
    # The lab answers within timeout (the whole scenario) + HALT_TIMEOUT (halting the actors).
    assert calls == [pytest.approx(calls[0])] and calls[0] >= 45.0 + HALT_TIMEOUT
