"""The interleaving explorer: it finds the us-east-1 race in the naive design, the
counterexample is the shortest and replays, and the fenced design holds exhaustively."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from chaos_dynamo.clock import FakeClock
from chaos_dynamo.control.enactor import (
    ControlConfig,
    Design,
    EnactorState,
    Phase,
    PlannerState,
    StepRecord,
    enactor_step,
    planner_step,
    trace_digest,
    view,
)
from chaos_dynamo.control.explorer import (
    ANY,
    EMPTY_ENDPOINT,
    GENERATION_DECREASED,
    STUCK,
    ActorState,
    Bounds,
    Progress,
    Setup,
    World,
    check_invariants,
    enabled,
    explore,
    initial_states,
    initial_world,
    lab_endpoints,
    raise_highest,
    render_result,
    replay_in_memory,
    run_steps,
    take_step,
    views_of,
)
from chaos_dynamo.control.trace import Step, load_trace
from chaos_dynamo.errors import ConfigError
from chaos_dynamo.plans import tree_name
from chaos_dynamo.route53.records import normalize_name
from chaos_dynamo.route53.rules import Change

NAIVE = Bounds(Design.NAIVE, enactors=2, plans=4, endpoints=1, keep=1)
ENDPOINT = normalize_name("dynamodb.us-east-1.amazonaws.com")


# --- the naive design: the race is found, shortest, and replays ---------------------------


def test_naive_counterexample_empties_the_endpoint() -> None:
    result = explore(NAIVE)
    finding = result.violation
    assert finding is not None and finding.kind == EMPTY_ENDPOINT
    assert finding.subject == ENDPOINT
    assert result.stopped == "target" and not result.exhaustive
    # The stale commit (generation going backwards) always comes first and is shorter.
    assert len(result.findings[GENERATION_DECREASED].steps) < len(finding.steps)
    actions = [(s.actor, s.action) for s in finding.steps]
    assert actions.count(("planner", "plan")) == 3
    assert actions[-1][1] == "cleanup"


def _min_depth(bounds: Bounds, kind: str, limit: int) -> int | None:
    """The fewest steps to a state breaking ``kind``, by brute force: every interleaving up
    to ``limit`` steps, no deduplication and no caching (independent of the explorer)."""
    setup = initial_world(bounds)

    def walk(world: World, states: tuple[ActorState, ...], highest: tuple[int, ...],
             depth: int) -> Iterator[int]:
        if depth == limit:
            return
        for i, state in enumerate(states):
            if not enabled(state, bounds):
                continue
            after, new_state, _ = take_step(state, world, setup)
            views = views_of(after, setup.config)
            new_highest = raise_highest(highest, views)
            if any(v.kind == kind for v in check_invariants(views, new_highest, setup.config)):
                yield depth + 1
                continue
            yield from walk(after, states[:i] + (new_state,) + states[i + 1:], new_highest, depth + 1)

    start = raise_highest((0,) * bounds.endpoints, views_of(setup.world, setup.config))
    return min(walk(setup.world, tuple(initial_states(setup)), start, 0), default=None)


@pytest.mark.parametrize("kind", [EMPTY_ENDPOINT, GENERATION_DECREASED])
def test_counterexample_is_shortest_by_brute_force(kind: str) -> None:
    result = explore(NAIVE, target=kind)
    finding = result.violation
    assert finding is not None and finding.kind == kind
    assert _min_depth(NAIVE, kind, len(finding.steps)) == len(finding.steps)


def test_no_outage_when_plans_are_too_few_for_keep() -> None:
    # plans >= keep + 3 is needed; with 4 plans and keep 2 only the stale commit is possible.
    result = explore(Bounds(Design.NAIVE, enactors=2, plans=4, endpoints=1, keep=2))
    assert result.exhaustive and EMPTY_ENDPOINT not in result.findings
    assert result.violation is not None and result.violation.kind == GENERATION_DECREASED
    assert "needs plans >= keep + 3 = 5" in render_result(result)


def test_saved_trace_replays_to_the_same_violation_and_digest(tmp_path: Path) -> None:
    result = explore(Bounds(Design.NAIVE, enactors=3, plans=4, endpoints=2), seed=7)
    finding = result.violation
    assert finding is not None
    path = result.to_trace().save(tmp_path / "naive.json")
    trace = load_trace(path)
    assert trace.seed == 7 and trace.keep == 1 and trace.steps == finding.steps
    history, violation = replay_in_memory(trace)
    assert violation is not None and violation.as_dict() == trace.violation
    assert trace_digest(history) == trace.digest == finding.digest
    assert [r.as_dict() for r in history] == list(trace.history)


def test_stuck_target_tells_the_whole_story() -> None:
    result = explore(Bounds(Design.NAIVE, enactors=3, plans=4, endpoints=1), target=STUCK)
    finding = result.violation
    assert finding is not None and finding.kind == STUCK and result.stuck is finding
    assert len(result.findings[EMPTY_ENDPOINT].steps) < len(finding.steps)
    assert finding.history[-1].outcome == "fail" and "not found" in finding.history[-1].detail
    _, events, states = run_steps(result.bounds, finding.steps)
    assert [v.kind for _, v in events] == [GENERATION_DECREASED, EMPTY_ENDPOINT, STUCK]
    assert any(isinstance(s, EnactorState) and s.phase == Phase.STUCK for s in states)


def test_explorer_is_deterministic() -> None:
    bounds = Bounds(Design.NAIVE, enactors=3, plans=4, endpoints=1)
    first, second = explore(bounds, seed=3), explore(bounds, seed=3)
    assert first.violation is not None and second.violation is not None
    assert first.violation.digest == second.violation.digest
    assert (first.states, first.transitions) == (second.states, second.transitions)
    # Another seed may pick another of the equally short paths, never a longer one.
    other = explore(bounds, seed=4)
    assert other.violation is not None and len(other.violation.steps) == len(first.violation.steps)


# --- the fenced design holds ---------------------------------------------------------------


@pytest.mark.parametrize("enactors,plans,endpoints", [(2, 4, 1), (3, 4, 1), (3, 4, 2)])
def test_fenced_has_no_violation_exhaustively(enactors: int, plans: int, endpoints: int) -> None:
    result = explore(Bounds(Design.FENCED, enactors, plans, endpoints), target=ANY)
    assert result.exhaustive and result.stopped == "exhausted"
    assert result.findings == {} and result.violation is None and result.stuck is None
    assert "no violation within the bounds (exhaustive" in render_result(result)


def test_fenced_holds_with_aggressive_cleanup() -> None:
    # keep 0 deletes every older plan: the fence, not a generous keep, is what protects.
    result = explore(Bounds(Design.FENCED, 3, 4, 1, keep=0), target=ANY)
    assert result.exhaustive and result.violation is None


def test_exhaustive_counts_do_not_depend_on_the_seed() -> None:
    bounds = Bounds(Design.FENCED, 2, 4, 1)
    counts = {(r.states, r.transitions, r.depth) for r in (explore(bounds, seed=s) for s in range(4))}
    assert len(counts) == 1


def test_max_states_stops_with_a_not_exhaustive_result() -> None:
    result = explore(Bounds(Design.FENCED, 3, 4, 1), max_states=50)
    assert result.states == 50 and result.stopped == "max-states" and not result.exhaustive
    assert "not exhaustive: stopped at 50 states" in render_result(result)


def test_progress_is_reported_on_the_injected_clock() -> None:
    class Ticking(FakeClock):
        def monotonic(self) -> float:
            self.advance(0.5)
            return super().monotonic()

    seen: list[Progress] = []
    explore(Bounds(Design.FENCED, 3, 4, 1), clock=Ticking(), progress=seen.append)
    assert seen and seen[-1].states > seen[0].states > 0


# --- the hand-scripted race (/tmp/race_mem.py) as a test of the core -----------------------


def _race(design: Design) -> tuple[Setup, World, dict[str, EnactorState], list[StepRecord]]:
    """A delayed Enactor A holds plan 5 while B applies 10 and cleans up; then C tries 11."""
    setup = initial_world(Bounds(design, enactors=3, plans=11, endpoints=1, keep=2))
    world, config = setup.world, setup.config
    planner = PlannerState()
    actors = {name: EnactorState(name) for name in ("enactor-a", "enactor-b", "enactor-c")}
    history: list[StepRecord] = []

    def plan(count: int) -> None:
        nonlocal planner
        for _ in range(count):
            planner, record = planner_step(planner, world.plans, setup.template)
            history.append(record)

    def step(name: str, until_finished: bool = False) -> None:
        while True:
            actors[name], record = enactor_step(actors[name], world.zones, world.plans, config)
            history.append(record)
            if not until_finished or actors[name].phase.finished:
                return

    plan(4)
    step("enactor-a")  # A checks: plan 5 is newer than 1
    plan(5)
    step("enactor-b")  # B checks: plan 10
    step("enactor-b")  # B commits 10
    step("enactor-a")  # A commits 5 over 10 (naive) or is refused (fenced)
    step("enactor-b", until_finished=True)  # B deletes plans older than 8
    plan(1)
    step("enactor-c", until_finished=True)
    return setup, world, actors, history


def _violations_along(setup: Setup, history: list[StepRecord], design: Design) -> set[str]:
    """Re-run the same steps through the explorer's replay and collect what broke."""
    steps = [Step(r.actor, r.action) for r in history]
    _, events, _ = run_steps(Bounds(design, 3, 11, 1, keep=2), steps)
    return {v.kind for _, v in events}


def test_race_by_hand_naive_empties_the_endpoint_and_sticks_c() -> None:
    setup, world, actors, history = _race(Design.NAIVE)
    endpoint = setup.config.endpoints[0]
    now = view(world.zones, endpoint)
    assert now.empty and now.active_generation == 5 and now.tree_size == 0
    assert actors["enactor-c"].phase == Phase.STUCK
    assert _violations_along(setup, history, Design.NAIVE) == {EMPTY_ENDPOINT, GENERATION_DECREASED, STUCK}


def test_race_by_hand_fenced_holds_and_c_applies() -> None:
    setup, world, actors, history = _race(Design.FENCED)
    endpoint = setup.config.endpoints[0]
    now = view(world.zones, endpoint)
    assert not now.empty and now.active_generation == now.marker == 11
    assert actors["enactor-a"].phase == Phase.ABANDONED
    assert actors["enactor-c"].phase == Phase.DONE
    assert "refused by Route 53" in next(r.detail for r in history if r.actor == "enactor-a" and r.action == "commit")
    assert _violations_along(setup, history, Design.FENCED) == set()


@pytest.mark.parametrize("design", [Design.NAIVE, Design.FENCED])
def test_the_lab_checks_the_explorers_invariants(design: Design) -> None:
    """One set of invariants: the lab's check of a history and views finds what the explorer's does."""
    from chaos_dynamo.control.history import History
    from chaos_dynamo.control.runtime import ControlPlane
    from chaos_dynamo.control.scenarios import lab_violations

    setup, world, _, history = _race(design)
    plane = ControlPlane("http://127.0.0.1:9", "us-east-1", "plans", setup.config.endpoints, setup.template)
    plane.history = History()
    plane.history.clear({ep.name: 1 for ep in setup.config.endpoints})
    for i, record in enumerate(history):
        plane.history.append(record, float(i), float(i))
    views = views_of(world, setup.config)
    lab = lab_violations(plane, plane.history.entries(), {ep.name: v for ep, v in zip(setup.config.endpoints, views,
                                                                                      strict=True)})
    # The explorer carries the highest generation in its state; the lab reads it from the history.
    highest = (max(r.generation or 0 for r in history if r.action == "commit" and r.outcome == "ok"),)
    assert lab == check_invariants(views, raise_highest(highest, views), setup.config)
    assert {v.kind for v in lab} == ({EMPTY_ENDPOINT, GENERATION_DECREASED} if design == Design.NAIVE else set())


def test_one_name_per_kind_and_actor() -> None:
    from chaos_dynamo.control import explorer, history, invariants, runtime

    assert explorer.Violation is invariants.Violation
    assert (EMPTY_ENDPOINT, GENERATION_DECREASED, STUCK) == \
        (invariants.EMPTY_ENDPOINT, invariants.GENERATION_DECREASED, invariants.ENACTOR_STUCK)
    assert explorer.PLANNER is runtime.PLANNER is history.PLANNER == "planner"


# --- invariants on hand-built broken states ------------------------------------------------


def _broken(setup: Setup, changes: list[Change]) -> tuple[ControlConfig, World]:
    world = setup.world.copy()
    endpoint = setup.config.endpoints[0]
    world.zones.change(endpoint.zone_id, changes)
    return setup.config, world


def test_invariants_see_an_emptied_tree() -> None:
    setup = initial_world(NAIVE)
    endpoint = setup.config.endpoints[0]
    tree = setup.world.zones.read(endpoint.zone_id, tree_name(endpoint.name, 1))
    assert tree
    config, world = _broken(setup, [Change("DELETE", r) for r in tree])
    views = views_of(world, config)
    found = check_invariants(views, raise_highest((1,), views), config)
    assert [(v.kind, v.endpoint) for v in found] == [(EMPTY_ENDPOINT, ENDPOINT)]
    assert "plan-000001" in found[0].detail


def test_invariants_see_a_missing_alias_and_a_lower_generation() -> None:
    setup = initial_world(NAIVE)
    endpoint = setup.config.endpoints[0]
    alias = [r for r in setup.world.zones.read(endpoint.zone_id, endpoint.name) if r.alias]
    config, world = _broken(setup, [Change("DELETE", r) for r in alias])
    views = views_of(world, config)
    assert [v.kind for v in check_invariants(views, (1,), config)] == [EMPTY_ENDPOINT]
    # Plan 1 active after plan 3 had been: the generation went backwards.
    views = views_of(setup.world, config)
    found = check_invariants(views, raise_highest((3,), views), config)
    assert [v.kind for v in found] == [GENERATION_DECREASED]
    assert check_invariants(views, raise_highest((1,), views), config) == []


# --- boundaries ----------------------------------------------------------------------------


@pytest.mark.parametrize("field,kwargs", [
    ("enactors", {"enactors": 0}), ("plans", {"plans": 1}), ("endpoints", {"endpoints": 4}),
    ("keep", {"keep": -1}), ("design", {"design": "optimistic"}),
])
def test_bounds_name_the_bad_field(field: str, kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigError) as caught:
        Bounds(**kwargs)  # type: ignore[arg-type]
    assert caught.value.field == field


def test_bad_target_and_max_states_are_refused() -> None:
    with pytest.raises(ConfigError, match="target"):
        explore(NAIVE, target="everything")
    with pytest.raises(ConfigError, match="max_states"):
        explore(NAIVE, max_states=0)


def test_replay_refuses_a_step_that_does_not_fit() -> None:
    with pytest.raises(ConfigError) as caught:
        run_steps(NAIVE, [Step("enactor-a", "commit")])
    assert caught.value.field == "steps[0].action"
    with pytest.raises(ConfigError) as caught:
        run_steps(NAIVE, [Step("enactor-z", "check")])
    assert caught.value.field == "steps[0].actor"


def test_endpoints_fill_the_first_zone_first() -> None:
    names = [ep.name for ep in lab_endpoints(3)]
    assert names == ["dynamodb.us-east-1.amazonaws.com", "dynamodb-fips.us-east-1.amazonaws.com",
                     "dynamodb.us-east-1.api.aws"]
    zones = {ep.zone_id for ep in lab_endpoints(2)}
    assert len(zones) == 1
    setup = initial_world(Bounds(Design.NAIVE, 1, 2, 1))
    assert set(setup.world.zones.names) == {"Z1", "Z2"}  # every zone exists, used or not
