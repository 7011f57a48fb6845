"""Enumerate interleavings of the DNS control plane's steps, in memory, breadth-first.

The Planner and each Enactor (:mod:`chaos_dynamo.control.enactor`) are step machines; a
*state* is the in-memory world (zones and plan store) plus every actor's state, and a
*transition* is one actor taking its next step on a copy of the world, under Route 53's
real change-batch rules. The explorer visits every state reachable within the bounds,
once each, level by level, so the first violation it meets is a **shortest**
counterexample.

Invariants (:mod:`chaos_dynamo.control.invariants`, shared with the lab's scenarios),
checked on every state, for every endpoint:

* ``empty-endpoint``: the endpoint must resolve (an alias to a tree that has records);
  this is the outage of 20 October 2025.
* ``generation-decreased``: the active plan's generation must never be lower than the
  highest one active before (a stale plan applied over a newer one). The state carries
  that highest generation, so this is a property of a state, not of a path.

In the naive design a stale commit always comes *before* the cleanup that empties the
endpoint, so ``generation-decreased`` has the shorter counterexample; the search goes on
past it (recording it) until it reaches its *target*, the outage by default. An Enactor
that ends ``STUCK`` (Route 53 refused its batches until it gave up: no later plan can be
applied) is reported too, as a finding, not a violation.

Each Enactor runs one cycle (check, a commit per endpoint, cleanup); the Planner writes
plans 2..``plans``. Steps are atomic, so an Enactor never loses the Route 53 lock here:
delays are modelled by scheduling alone.

Usage::

    result = explore(Bounds(Design.NAIVE, enactors=3, plans=4, endpoints=1))
    print(render_result(result))
    if result.violation:
        result.to_trace().save("traces/naive.json")
"""

from __future__ import annotations

import random
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

from chaos_dynamo.clock import REAL_CLOCK, Clock
from chaos_dynamo.config import Topology, default_topology
from chaos_dynamo.control.enactor import (
    ControlConfig,
    Design,
    EnactorState,
    Endpoint,
    EndpointView,
    Phase,
    PlannerState,
    StepRecord,
    enactor_step,
    initial_records,
    planner_step,
    trace_digest,
    view,
)
from chaos_dynamo.control.history import PLANNER
from chaos_dynamo.control.invariants import (
    EMPTY_ENDPOINT,
    ENACTOR_STUCK,
    GENERATION_DECREASED,
    KINDS,
    Violation,
    check_endpoints,
    enactor_stuck,
    raise_highest,
)
from chaos_dynamo.control.trace import Step, Trace, enactor_names
from chaos_dynamo.control.world import MemoryPlans, MemoryZones
from chaos_dynamo.errors import ConfigError
from chaos_dynamo.plans import Plan, plan_from_fleet
from chaos_dynamo.route53.records import normalize_name
from chaos_dynamo.route53.rules import Change

__all__ = [
    "ANY",
    "DEFAULT_KEEP",
    "EMPTY_ENDPOINT",
    "ENACTOR_STUCK",
    "GENERATION_DECREASED",
    "KINDS",
    "STUCK",
    "TARGETS",
    "ActorState",
    "Bounds",
    "ExploreResult",
    "Finding",
    "Progress",
    "Setup",
    "Violation",
    "World",
    "check_invariants",
    "explore",
    "initial_world",
    "lab_endpoints",
    "render_result",
    "render_steps",
    "replay_in_memory",
    "run_steps",
]

ANY = "any"
STUCK = ENACTOR_STUCK
"""The explorer's short name for :data:`~chaos_dynamo.control.invariants.ENACTOR_STUCK`."""
TARGETS = (*KINDS, STUCK, ANY)
"""What may end a search: an invariant, an Enactor ending STUCK, or any violation."""

DEFAULT_KEEP = 1
"""Cleanup keeps plans at most this many generations older than the one applied.

The outage needs a stale plan ``g`` (at least 2: plan 1 is applied at the start, and an
Enactor only takes a plan newer than the applied one) that cleanup of a newer plan ``n``
deletes, i.e. ``g < n - keep``: so ``plans >= keep + 3``. With keep 1 the race exists at
4 plans, the bound every default and test uses; keep 2 would need 5 plans.
"""
DEFAULT_ENACTORS, DEFAULT_PLANS, DEFAULT_ENDPOINTS = 3, 4, 1
DEFAULT_MAX_STATES = 1_000_000
"""About 1 GB and 5 minutes here; 3 Enactors x 4 plans x 2 endpoints has 12,533 states."""
PROGRESS_EVERY_S = 2.0
_CLOCK_CHECK_EVERY = 256  # expansions between clock reads: the clock is not free


# --- bounds and the starting world ---------------------------------------------------------

@dataclass(frozen=True)
class Bounds:
    """What is explored: a design, the number of Enactors, plans and endpoints, and ``keep``.

    Raises:
        ConfigError: naming the field that is out of range.
    """

    design: Design = Design.NAIVE
    enactors: int = DEFAULT_ENACTORS
    plans: int = DEFAULT_PLANS
    endpoints: int = DEFAULT_ENDPOINTS
    keep: int = DEFAULT_KEEP

    def __post_init__(self) -> None:
        object.__setattr__(self, "design", _design(self.design))
        available = len(default_topology().endpoints)
        for name, low, high, why in (
            ("enactors", 1, 26, "one per AZ is 3"),
            ("plans", 2, 10_000, "plan 1 is applied at the start, so at least 2"),
            ("endpoints", 1, available, f"the lab has {available} endpoints"),
            ("keep", 0, 10_000, "generations cleanup keeps behind the applied plan"),
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise ConfigError(name, f"{value!r} is out of range",
                                  f"use a whole number from {low} to {high} ({why})")

    @property
    def label(self) -> str:
        """``3x4x1``: Enactors x plans x endpoints, as trace file names use it."""
        return f"{self.enactors}x{self.plans}x{self.endpoints}"


def _design(value: Design | str) -> Design:
    try:
        return Design(value)
    except ValueError:
        raise ConfigError("design", f"{value!r} is not a design", "use naive or fenced") from None


def zone_ids(topology: Topology) -> dict[str, str]:
    """A stable hosted-zone id per zone name (``Z1``, ``Z2``...), in the topology's order."""
    return {normalize_name(zone): f"Z{i + 1}" for i, zone in enumerate(topology.zones)}


def lab_endpoints(count: int, topology: Topology | None = None) -> tuple[Endpoint, ...]:
    """The first ``count`` endpoints of the lab: the first zone's, then the next zone's.

    This is the choice ``chaos-dynamo replay`` makes on a running lab, so a trace means the
    same endpoints in memory and on the lab.
    """
    topo = topology or default_topology()
    ids = zone_ids(topo)
    order = {zone: i for i, zone in enumerate(ids)}
    ranked = sorted(topo.endpoints, key=lambda ep: order[normalize_name(ep.zone)])  # stable
    if not 1 <= count <= len(ranked):
        raise ConfigError("endpoints", f"{count!r} is out of range", f"use 1 to {len(ranked)}")
    return tuple(Endpoint(ep.name, ids[normalize_name(ep.zone)], ep.ipv6) for ep in ranked[:count])


@dataclass
class World:
    """The in-memory hosted zones and plan store. Never changed once the explorer has
    interned it: a step works on :meth:`copy` (or :meth:`with_plans_copied`)."""

    zones: MemoryZones
    plans: MemoryPlans

    def copy(self) -> World:
        return World(self.zones.copy(), self.plans.copy())

    def with_plans_copied(self) -> World:
        """For the Planner, which only writes plans: the zones are shared, not copied."""
        return World(self.zones, self.plans.copy())

    def fingerprint(self) -> Hashable:
        return (self.zones.fingerprint(), self.plans.fingerprint())


@dataclass(frozen=True)
class Setup:
    """A fresh world for ``bounds`` and what the actors need to run on it."""

    world: World
    config: ControlConfig
    template: Plan
    actors: tuple[str, ...]


def initial_world(bounds: Bounds, topology: Topology | None = None) -> Setup:
    """Plan 1 applied (tree, aliases, lock, marker) on the first ``bounds.endpoints``
    endpoints; every zone of the topology exists, empty or not."""
    topo = topology or default_topology()
    endpoints = lab_endpoints(bounds.endpoints, topo)
    config = ControlConfig(endpoints, bounds.design, keep=bounds.keep, record_ttl=topo.record_ttl)
    template = plan_from_fleet(1, [ep.spec for ep in endpoints], topo.load_balancers)
    ids = zone_ids(topo)
    zones = MemoryZones({zid: name for name, zid in ids.items()}, {zid: {} for zid in ids.values()})
    plans = MemoryPlans()
    plans.put(template)
    for ep in endpoints:
        records = initial_records(template, ep, config.record_ttl)
        zones.change(ep.zone_id, [Change("CREATE", r) for r in records], "initial plan")
    return Setup(World(zones, plans), config, template, (PLANNER, *enactor_names(bounds.enactors)))


# --- invariants ----------------------------------------------------------------------------

def views_of(world: World, config: ControlConfig) -> tuple[EndpointView, ...]:
    return tuple(view(world.zones, ep) for ep in config.endpoints)


def check_invariants(views: Sequence[EndpointView], highest: Sequence[int],
                     config: ControlConfig) -> list[Violation]:
    """Every invariant broken by a state (``highest`` already includes this state)."""
    return check_endpoints([ep.name for ep in config.endpoints], views, highest)


# --- taking one step -----------------------------------------------------------------------

ActorState = PlannerState | EnactorState


def enabled(state: ActorState, bounds: Bounds) -> bool:
    """The Planner writes plans 2..``plans``; an Enactor runs until its cycle is finished."""
    if isinstance(state, PlannerState):
        return state.written < bounds.plans - 1
    return not state.phase.finished


def take_step(state: ActorState, world: World, setup: Setup) -> tuple[World, ActorState, StepRecord]:
    """One step of one actor on a copy of ``world`` (which is left as it was)."""
    if isinstance(state, PlannerState):
        after = world.with_plans_copied()
        planner, record = planner_step(state, after.plans, setup.template)
        return after, planner, record
    after = world.copy()
    enactor, record = enactor_step(state, after.zones, after.plans, setup.config)
    return after, enactor, record


def initial_states(setup: Setup) -> tuple[ActorState, ...]:
    return (PlannerState(PLANNER), *(EnactorState(name) for name in setup.actors[1:]))


def expected_action(state: ActorState) -> str:
    return "plan" if isinstance(state, PlannerState) else state.next_action()


# --- findings and results ------------------------------------------------------------------

@dataclass(frozen=True)
class Finding:
    """A shortest interleaving that reaches something worth reporting.

    ``kind`` is an invariant (a violation) or :data:`STUCK` (an Enactor gave up).
    """

    kind: str
    subject: str
    detail: str
    steps: tuple[Step, ...]
    history: tuple[StepRecord, ...]

    @property
    def violation(self) -> Violation:
        return Violation(self.kind, self.subject, self.detail)

    @property
    def digest(self) -> str:
        return trace_digest(self.history)

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "subject": self.subject, "detail": self.detail,
                "length": len(self.steps), "digest": self.digest,
                "steps": [{"actor": s.actor, "action": s.action} for s in self.steps],
                "history": [r.as_dict() for r in self.history]}


@dataclass(frozen=True)
class Progress:
    """How far a running search has got (for a progress line)."""

    states: int
    transitions: int
    depth: int
    seconds: float


@dataclass(frozen=True)
class ExploreResult:
    """What one search found and how much it looked at.

    ``exhaustive`` is True only when every reachable state was visited; a search that
    stopped at its target or at ``max_states`` is not.
    """

    bounds: Bounds
    seed: int
    target: str
    states: int
    transitions: int
    seconds: float
    depth: int
    exhaustive: bool
    stopped: str
    """``exhausted``, ``target`` (the target violation was found) or ``max-states``."""
    max_states: int
    findings: dict[str, Finding] = field(default_factory=dict)
    stuck: Finding | None = None

    @property
    def violation(self) -> Finding | None:
        """The counterexample to report: the target's, else the shortest violation found.

        An Enactor ending STUCK is reported as the counterexample only when it is the target.
        """
        if self.target == STUCK and self.stuck is not None:
            return self.stuck
        if self.target in self.findings:
            return self.findings[self.target]
        found = sorted(self.findings.values(), key=lambda f: (len(f.steps), KINDS.index(f.kind)))
        return found[0] if found else None

    @property
    def states_per_second(self) -> float:
        return self.states / self.seconds if self.seconds > 0 else float("inf")

    def to_trace(self) -> Trace:
        """The counterexample as a trace file's content (``chaos-dynamo replay`` input)."""
        finding = self.violation
        if finding is None:
            raise ValueError("no violation was found, so there is no counterexample to save")
        b = self.bounds
        return Trace(design=b.design.value, enactors=b.enactors, plans=b.plans, endpoints=b.endpoints,
                     keep=b.keep, steps=finding.steps, seed=self.seed,
                     violation=finding.violation.as_dict(),
                     history=tuple(r.as_dict() for r in finding.history), digest=finding.digest,
                     extra={"explorer": {"shortest": True, "states": self.states, "target": self.target,
                                         "exhaustive": self.exhaustive}})

    def as_dict(self) -> dict[str, Any]:
        b = self.bounds
        violation = self.violation
        return {
            "design": b.design.value, "enactors": b.enactors, "plans": b.plans,
            "endpoints": b.endpoints, "keep": b.keep, "seed": self.seed, "target": self.target,
            "states": self.states, "transitions": self.transitions, "depth": self.depth,
            "seconds": round(self.seconds, 4),
            "states_per_second": round(self.states_per_second, 1) if self.seconds > 0 else None,
            "exhaustive": self.exhaustive, "stopped": self.stopped, "max_states": self.max_states,
            "violation": violation.as_dict() if violation else None,
            "findings": {k: f.as_dict() for k, f in sorted(self.findings.items())},
            "stuck": self.stuck.as_dict() if self.stuck else None,
        }


# --- the search ----------------------------------------------------------------------------

StateKey = tuple[int, tuple[ActorState, ...], tuple[int, ...]]
"""(interned world id, every actor's state, highest generation seen per endpoint)."""


class _Search:
    """Breadth-first search over interned worlds, with transitions cached per (world, actor).

    Many states share a world and differ only in actors that have not moved, so a step's
    outcome is computed once per (world, actor state) and reused: Route 53's rules run
    once per distinct batch on a distinct zone, not once per interleaving.
    """

    def __init__(self, bounds: Bounds, seed: int, target: str, max_states: int, clock: Clock,
                 progress: Callable[[Progress], None] | None) -> None:
        self.bounds, self.seed, self.target, self.max_states = bounds, seed, target, max_states
        self.clock, self.progress = clock, progress
        self.setup = initial_world(bounds)
        self.worlds: list[World] = []
        self.world_ids: dict[Hashable, int] = {}
        self.views: list[tuple[EndpointView, ...]] = []
        self.cache: dict[tuple[int, ActorState], tuple[int, ActorState, StepRecord]] = {}
        self.keys: list[StateKey] = []
        self.parents: list[int] = []
        self.records: list[StepRecord | None] = []
        self.seen: dict[StateKey, int] = {}
        self.findings: dict[str, Finding] = {}
        self.stuck: Finding | None = None
        self.transitions = 0
        order = list(range(len(self.setup.actors)))
        random.Random(seed).shuffle(order)  # ties only: which of equally short paths is shown
        self.order = tuple(order)

    def intern(self, world: World) -> int:
        fingerprint = world.fingerprint()
        known = self.world_ids.get(fingerprint)
        if known is not None:
            return known
        self.world_ids[fingerprint] = len(self.worlds)
        self.worlds.append(world)
        self.views.append(views_of(world, self.setup.config))
        return len(self.worlds) - 1

    def successor(self, key: StateKey, actor: int) -> tuple[StateKey, StepRecord] | None:
        world_id, states, highest = key
        state = states[actor]
        if not enabled(state, self.bounds):
            return None
        cached = self.cache.get((world_id, state))
        if cached is None:
            after, new_state, record = take_step(state, self.worlds[world_id], self.setup)
            cached = (self.intern(after), new_state, record)
            self.cache[(world_id, state)] = cached
        new_world, new_state, record = cached
        new_states = states[:actor] + (new_state,) + states[actor + 1:]
        return (new_world, new_states, raise_highest(highest, self.views[new_world])), record

    def add(self, key: StateKey, parent: int, record: StepRecord | None) -> int:
        index = len(self.keys)
        self.seen[key] = index
        self.keys.append(key)
        self.parents.append(parent)
        self.records.append(record)
        return index

    def path(self, index: int) -> tuple[tuple[Step, ...], tuple[StepRecord, ...]]:
        records: list[StepRecord] = []
        while index > 0:
            record = self.records[index]
            assert record is not None
            records.append(record)
            index = self.parents[index]
        records.reverse()
        return tuple(Step(r.actor, r.action) for r in records), tuple(records)

    def note(self, index: int) -> bool:
        """Record what a new state breaks; True when it is the target (stop searching)."""
        world_id, states, highest = self.keys[index]
        hit = False
        for v in check_invariants(self.views[world_id], highest, self.setup.config):
            if v.kind not in self.findings:
                steps, history = self.path(index)
                self.findings[v.kind] = Finding(v.kind, v.endpoint, v.detail, steps, history)
            hit = hit or self.target in (ANY, v.kind)
        if self.stuck is None:
            stuck = [s for s in states if isinstance(s, EnactorState) and s.phase == Phase.STUCK]
            if stuck:
                steps, history = self.path(index)
                v = stuck_violation(stuck[0], history, self.setup.config)
                self.stuck = Finding(v.kind, v.endpoint, v.detail, steps, history)
                hit = hit or self.target == STUCK
        return hit

    def run(self) -> ExploreResult:
        started = self.clock.monotonic()
        last_report = started
        world_id = self.intern(self.setup.world)
        start: StateKey = (world_id, initial_states(self.setup),
                           raise_highest((0,) * self.bounds.endpoints, self.views[world_id]))
        self.add(start, -1, None)
        stopped = "target" if self.note(0) else ""
        frontier, depth = [0], 0
        while frontier and not stopped:
            depth += 1
            next_frontier: list[int] = []
            for count, index in enumerate(frontier, 1):
                stopped = self.expand(index, next_frontier)
                if stopped:
                    break
                if self.progress and count % _CLOCK_CHECK_EVERY == 0:
                    now = self.clock.monotonic()
                    if now - last_report >= PROGRESS_EVERY_S:
                        last_report = now
                        self.progress(Progress(len(self.keys), self.transitions, depth, now - started))
            frontier = next_frontier
        if not stopped:
            depth -= 1  # the last level produced nothing new
        return ExploreResult(
            bounds=self.bounds, seed=self.seed, target=self.target, states=len(self.keys),
            transitions=self.transitions, seconds=self.clock.monotonic() - started, depth=depth,
            exhaustive=not stopped, stopped=stopped or "exhausted", max_states=self.max_states,
            findings=dict(self.findings), stuck=self.stuck)

    def expand(self, index: int, next_frontier: list[int]) -> str:
        """Every successor of one state; the reason to stop, or ``""`` to go on."""
        key = self.keys[index]
        for actor in self.order:
            found = self.successor(key, actor)
            if found is None:
                continue
            self.transitions += 1
            new_key, record = found
            if new_key in self.seen:
                continue
            child = self.add(new_key, index, record)
            next_frontier.append(child)
            if self.note(child):
                return "target"
            if len(self.keys) >= self.max_states:
                return "max-states"
        return ""


def stuck_violation(state: EnactorState, history: Sequence[StepRecord], config: ControlConfig) -> Violation:
    """An Enactor that gave up: which, on which endpoint, and Route 53's last refusal."""
    last = next((r for r in reversed(history) if r.actor == state.name), None)
    why = f": {last.detail}" if last and last.detail else ""
    return enactor_stuck(config.endpoints[state.endpoint].name,
                         f"{state.name} gave up on plan {state.plan} after {state.attempts} refused "
                         f"batches{why}; no later plan can be applied without an operator")


def explore(bounds: Bounds, *, seed: int = 0, target: str = EMPTY_ENDPOINT,
            max_states: int = DEFAULT_MAX_STATES, clock: Clock = REAL_CLOCK,
            progress: Callable[[Progress], None] | None = None) -> ExploreResult:
    """Search every interleaving within ``bounds``, breadth-first, until ``target`` is found.

    Args:
        bounds: design, Enactors, plans, endpoints and keep.
        seed: orders the actors, so it only picks among equally short counterexamples;
            lengths, verdicts and (for an exhaustive search) counts do not depend on it.
        target: the violation that ends the search (:data:`KINDS`), or :data:`ANY` for
            the first of either. Every invariant is checked on every state regardless.
        max_states: stop (not exhaustive) after this many distinct states.
        clock: its ``monotonic`` times the search.
        progress: called about every 2 s with the counts so far.

    Raises:
        ConfigError: a bad ``target``, ``max_states`` or ``seed``.
    """
    if target not in TARGETS:
        raise ConfigError("target", f"{target!r} is not a target", f"use one of {list(TARGETS)}")
    if isinstance(max_states, bool) or not isinstance(max_states, int) or max_states < 1:
        raise ConfigError("max_states", f"{max_states!r} is out of range", "use a whole number >= 1")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ConfigError("seed", f"{seed!r} is not a whole number", "use e.g. 0")
    return _Search(bounds, seed, target, max_states, clock, progress).run()


# --- replaying a trace in memory -----------------------------------------------------------

def run_steps(bounds: Bounds, steps: Sequence[Step]
              ) -> tuple[list[StepRecord], list[tuple[int, Violation]], list[ActorState]]:
    """Run ``steps`` in order on a fresh world, checking the invariants after each.

    Returns the history, every violation the first time it appears (1-based step number,
    violation; once per kind and endpoint, plus one :data:`STUCK` per Enactor that gives
    up), and the actors' final states.

    Raises:
        ConfigError: a step names an unknown actor, or an action the actor cannot take then.
    """
    setup = initial_world(bounds)
    world = setup.world
    states = list(initial_states(setup))
    highest = raise_highest((0,) * bounds.endpoints, views_of(world, setup.config))
    history: list[StepRecord] = []
    events: list[tuple[int, Violation]] = []
    noted: set[tuple[str, str]] = set()
    for number, step in enumerate(steps, 1):
        actor = _actor_index(setup, step, number)
        state = states[actor]
        _check_step(state, step, number, bounds)
        world, states[actor], record = take_step(state, world, setup)
        history.append(record)
        after = states[actor]
        if isinstance(after, EnactorState) and after.phase == Phase.STUCK:
            events.append((number, stuck_violation(after, history, setup.config)))
        views = views_of(world, setup.config)
        highest = raise_highest(highest, views)
        for v in check_invariants(views, highest, setup.config):
            if (v.kind, v.endpoint) not in noted:
                noted.add((v.kind, v.endpoint))
                events.append((number, v))
    return history, events, states


def _actor_index(setup: Setup, step: Step, number: int) -> int:
    if step.actor not in setup.actors:
        raise ConfigError(f"steps[{number - 1}].actor", f"{step.actor!r} is not an actor of these bounds",
                          f"use one of {list(setup.actors)}")
    return setup.actors.index(step.actor)


def _check_step(state: ActorState, step: Step, number: int, bounds: Bounds) -> None:
    if not enabled(state, bounds):
        raise ConfigError(f"steps[{number - 1}]", f"{step.actor} has nothing left to do at step {number}",
                          "the trace does not fit its bounds; write it again with `chaos-dynamo explore`")
    if step.action != expected_action(state):
        raise ConfigError(f"steps[{number - 1}].action",
                          f"{step.actor} would {expected_action(state)} at step {number}, not {step.action}",
                          "the trace does not fit its bounds; write it again with `chaos-dynamo explore`")


def bounds_of(trace: Trace) -> Bounds:
    return Bounds(_design(trace.design), trace.enactors, trace.plans, trace.endpoints, trace.keep)


def replay_in_memory(trace: Trace) -> tuple[list[StepRecord], Violation | None]:
    """Re-run a trace's steps on a fresh in-memory world: (history, violation).

    The violation is the first one of the kind the trace names (so a saved counterexample
    reproduces exactly when this equals its ``violation`` and the history's digest equals
    its ``digest``), or the first of any kind when the trace names none.

    Raises:
        ConfigError: the trace's steps do not fit its bounds.
    """
    history, events, _ = run_steps(bounds_of(trace), trace.steps)
    wanted = (trace.violation or {}).get("kind")
    for _, v in events:
        if wanted in (None, v.kind):
            return history, v
    return history, None


# --- rendering -----------------------------------------------------------------------------

def describe(number: int, record: StepRecord, width: int = 2) -> str:
    """``3. enactor-b commit plan 4 on dynamodb.us-east-1.amazonaws.com ... ok``."""
    action = "writes" if record.action == "plan" else record.action
    plan = f" plan {record.generation}" if record.generation is not None else ""
    where = f" on {record.endpoint}" if record.endpoint else ""
    detail = f" ({record.detail})" if record.detail else ""
    return f"{number:>{width}}. {record.actor} {action}{plan}{where} ... {record.outcome}{detail}"


def render_steps(bounds: Bounds, steps: Sequence[Step]) -> str:
    """A numbered trace, with each violation marked at the step where it first appears."""
    history, events, _ = run_steps(bounds, steps)
    width = len(str(len(history)))
    marks: dict[int, list[Violation]] = {}
    for number, v in events:
        marks.setdefault(number, []).append(v)
    lines = []
    for number, record in enumerate(history, 1):
        lines.append(describe(number, record, width))
        lines += [f"{' ' * width}  !! {v.kind} at {v.endpoint}: {v.detail}" for v in marks.get(number, [])]
    return "\n".join(lines)


def render_result(result: ExploreResult) -> str:
    """The human summary ``chaos-dynamo explore`` prints (without the trace file line)."""
    b = result.bounds
    lines = [f"explored {result.states:,} states, {result.transitions:,} transitions in "
             f"{result.seconds:.2f} s ({_rate(result)}), depth {result.depth}: design {b.design.value}, "
             f"{_count(b.enactors, 'Enactor')} x {_count(b.plans, 'plan')} x "
             f"{_count(b.endpoints, 'endpoint')}, keep {b.keep}, seed {result.seed}"]
    finding = result.violation
    if finding is not None:
        lines.append(f"counterexample (shortest, {len(finding.steps)} steps): {finding.kind} at "
                     f"{finding.subject}")
        lines.append(render_steps(b, finding.steps))
        others = [f for k, f in sorted(result.findings.items()) if f is not finding]
        lines += [f"also found: {f.kind} after {len(f.steps)} steps (shortest)" for f in others]
        if result.target != ANY and finding.kind != result.target:
            lines.append(_not_reached(result))
    elif result.exhaustive:
        lines.append(f"no violation within the bounds (exhaustive: all {result.states:,} reachable "
                     f"states, every interleaving up to {result.depth} steps)")
    else:
        lines.append(f"no violation found, but not exhaustive: stopped at {result.states:,} states "
                     "(raise --max-states or lower the bounds)")
    lines.append(_stuck_line(result))
    return "\n".join(lines)


def _count(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _rate(result: ExploreResult) -> str:
    return f"{result.states_per_second:,.0f} states/s" if result.seconds > 0 else "instant"


def _not_reached(result: ExploreResult) -> str:
    hint = ""
    if result.target == EMPTY_ENDPOINT and result.bounds.design == Design.NAIVE:
        needed = result.bounds.keep + 3
        if result.bounds.plans < needed:
            hint = f" (the outage needs plans >= keep + 3 = {needed})"
    scope = "in any reachable state" if result.exhaustive else f"in the {result.states:,} states explored"
    return f"{result.target}: not reached {scope}{hint}"


def _stuck_line(result: ExploreResult) -> str:
    if result.stuck is not None:
        if result.violation is result.stuck:
            return "stuck: see the counterexample"
        return (f"stuck: {result.stuck.detail} (shortest: {len(result.stuck.steps)} steps; "
                "see it with --target enactor-stuck)")
    if result.exhaustive:
        return "stuck: no Enactor ends STUCK in any reachable state"
    return "stuck: no Enactor ended STUCK in the states explored"
