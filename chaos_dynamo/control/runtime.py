"""The DNS control plane running inside the lab: a Planner and three Enactors as threads.

::

    planner  --plan writes--> plan table (DynamoDB, through the lab front)
    enactor-a, enactor-b, enactor-c --change batches--> Route 53 (the lab front, AWS's rules)

Each actor is a real thread looping over its step function
(:func:`~chaos_dynamo.control.enactor.enactor_step`, :func:`~chaos_dynamo.control.enactor.planner_step`)
through boto3 clients pointed at the lab's own front URL, so every batch is judged by the
lab's Route 53 rules over HTTP. Failpoints are hit at the documented points
(:mod:`chaos_dynamo.control.failpoints`) and events are signalled as actors progress:

* ``<actor>.checked`` after a check; ``<actor>.committed:<endpoint>`` after each commit;
  ``<actor>.applied`` once its plan is on every endpoint; ``<actor>.done`` when its cycle
  finished (done, skipped, abandoned or stuck);
* ``planner.plan:<generation>`` after each plan write.

An actor that dies of an unexpected error leaves an ``info`` entry (action ``crash``) in the
history and its error in :meth:`ControlPlane.status` (``actors``: ``alive``, ``error``);
a scenario waiting on it fails at once instead of timing out.

Modes: *free-running* (:meth:`ControlPlane.start`: the Planner writes every
``plan_interval`` seconds and on :meth:`~ControlPlane.burst`; Enactors poll and run a cycle
whenever a newer plan exists), the *race* scenario and the *replay* of a trace
(:mod:`chaos_dynamo.control.scenarios`). Time is injected (``clock``); backoff after a lost
lock or a failed batch is capped exponential with full jitter from a per-actor seeded RNG.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from chaos_dynamo.clock import REAL_CLOCK, Clock
from chaos_dynamo.control.aws import DynamoPlans, Route53Zones
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
    view,
)
from chaos_dynamo.control.failpoints import Failpoints
from chaos_dynamo.control.history import (
    CRASH,
    OPERATOR,
    PLANNER,
    Entry,
    History,
    current_generations,
    digest_of,
    generation_changes,
    summarize,
    went_backwards,
)
from chaos_dynamo.control.trace import Trace, enactor_names
from chaos_dynamo.errors import AwsError, ChaosDynamoError, ConfigError, LabError
from chaos_dynamo.plans import Plan, generation_of_tree
from chaos_dynamo.route53.backend import Route53Backend, make_client
from chaos_dynamo.route53.records import RecordSet, normalize_name
from chaos_dynamo.route53.rules import Change

POINT_OF = {"check": "enactor.check", "commit": "enactor.commit", "cleanup": "enactor.cleanup"}
HALT_TIMEOUT = 10.0
"""Seconds :meth:`ControlPlane.halt` (and so ``stop``) waits for all the actor threads, one
deadline for every join: well under ``lab down``'s 20 s, and ample for the actors, whose
boto3 calls go to the lab's own front, which answers until the control plane has stopped."""
UNWIND_TIMEOUT = 2 * HALT_TIMEOUT
"""Seconds ``restore`` waits for an aborted scenario to unwind (its own halt included)."""
UNKNOWN = "outcome unknown: "
"""Prefix of the detail of an ``info`` entry written when a step raised (timeout, lab error)."""


class Mode(StrEnum):
    IDLE = "idle"
    FREE = "free-running"
    RACE = "race"
    REPLAY = "replay"


class ScenarioAborted(LabError):
    """A scenario was stopped (stop, restore or lab shutdown) before it finished."""


@dataclass(frozen=True)
class Pace:
    """How fast the free-running control plane moves, and how actors back off."""

    plan_interval: float = 5.0
    """Seconds between the Planner's plans (0: only on burst)."""
    poll: float = 0.5
    """Seconds between an Enactor's looks at the plan store."""
    backoff_base: float = 0.02
    backoff_cap: float = 1.0


class _Zones:
    """The Route 53 store of one actor: remembers accepted change ids and Route 53's refusals."""

    def __init__(self, inner: Route53Zones, accepted: Callable[[str], None]) -> None:
        self._inner = inner
        self._accepted = accepted
        self.refused = ""

    def read(self, zone_id: str, name: str) -> list[RecordSet]:
        return self._inner.read(zone_id, name)

    def change(self, zone_id: str, changes: Sequence[Change], comment: str = "") -> None:
        try:
            self._inner.change(zone_id, changes, comment)
        except AwsError as exc:
            self.refused = str(exc)
            raise
        self._accepted(self._inner.last_change_id)


@dataclass
class World:
    zones: _Zones
    plans: DynamoPlans
    route53: Any


@dataclass
class _Enactor:
    state: EnactorState
    cycles: int = 0
    last_checked: int = 0
    triggers: int = 0


class _StopAwareClock:
    """The plane's clock, whose ``sleep`` a stop interrupts (with the real clock)."""

    def __init__(self, plane: ControlPlane) -> None:
        self._plane = plane

    def now(self) -> float:
        return self._plane.clock.now()

    def monotonic(self) -> float:
        return self._plane.clock.monotonic()

    def sleep(self, seconds: float) -> None:
        self._plane.sleep(seconds)


class ControlPlane:
    """A Planner and Enactors (one per AZ) as threads against the lab's AWS API.

    Args:
        api_url: the lab front (``AWS_ENDPOINT_URL``): Route 53 with AWS's rules, DynamoDB.
        region: the lab's region.
        plan_table: the DynamoDB table of plans.
        endpoints: every endpoint of the lab, with its hosted zone id.
        template: plan 1; later plans move its weights a little (``next_plan``).
        record_ttl: TTL of plan records.
        seed: seeds the backoff jitter and the failpoints' random choices.
        clock: time; with the real clock, a stop interrupts every sleep.
        enactors: how many Enactors (three: one per AZ, as in us-east-1).
        zone_order: hosted zone ids in the topology's order (they name zones in digests).
    """

    def __init__(self, api_url: str, region: str, plan_table: str, endpoints: Sequence[Endpoint],
                 template: Plan, *, record_ttl: int = 5, seed: int = 0, clock: Clock = REAL_CLOCK,
                 enactors: int = 3, zone_order: Sequence[str] = ()) -> None:
        if not endpoints:
            raise ConfigError("endpoints", "is empty", "the control plane needs at least one endpoint")
        self.api_url = api_url
        self.region = region
        self.plan_table = plan_table
        self.all_endpoints = tuple(endpoints)
        self.zone_order = list(dict.fromkeys([*zone_order, *(ep.zone_id for ep in self.all_endpoints)]))
        self.template = template
        self.clock = clock
        self.seed = seed
        self.names = enactor_names(enactors)
        self.config = ControlConfig(self.all_endpoints, record_ttl=record_ttl)
        self.pace = Pace()
        self.history = History()
        self.history.clear({ep.name: template.generation for ep in self.all_endpoints})
        self.failpoints = Failpoints(seed=seed, clock=_StopAwareClock(self))
        self.mode = Mode.IDLE
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._halting = threading.Lock()
        """Serialises :meth:`halt` and :meth:`launch`: a second halt must not resume the
        failpoints while the first still joins threads (an actor would pause again)."""
        self._abort = threading.Event()
        self._busy = threading.Lock()
        self._busy_with = ""
        self._threads: dict[str, threading.Thread] = {}
        self._errors: dict[str, str] = {}
        """The unexpected error that ended each actor's thread, since its launch."""
        self._enactors = {name: _Enactor(EnactorState(name), last_checked=template.generation)
                          for name in self.names}
        self._burst = 0
        self._stuck = ""
        self._stuck_at = ""
        self._pending_changes: list[str] = []
        self._worlds: dict[str, World] = {}
        self._worlds_lock = threading.Lock()
        self._backend: Route53Backend | None = None
        self._rngs = {name: random.Random(f"{seed}/{name}") for name in [PLANNER, *self.names]}

    # --- time ---------------------------------------------------------------------------
    def sleep(self, seconds: float) -> None:
        """Sleep through the injected clock; with the real clock, a stop cuts it short."""
        if seconds <= 0:
            return
        if self.clock is REAL_CLOCK:
            self._stop.wait(seconds)
        elif not self._stop.is_set():
            self.clock.sleep(seconds)

    def _backoff(self, actor: str, failures: int) -> None:
        """Capped exponential backoff with full jitter, from the actor's seeded RNG."""
        if self.mode == Mode.REPLAY:
            return  # a replay is sequenced: waiting changes nothing
        ceiling = min(self.pace.backoff_cap, self.pace.backoff_base * 2 ** min(failures - 1, 30))
        self.sleep(self._rngs[actor].uniform(0, ceiling))

    # --- boto3 worlds, one per actor --------------------------------------------------------
    def world(self, actor: str) -> World:
        """The actor's own boto3 clients (made once, in the caller's thread)."""
        with self._worlds_lock:
            found = self._worlds.get(actor)
            if found is None:
                route53 = make_client("route53", self.api_url, self.region)
                dynamodb = make_client("dynamodb", self.api_url, self.region)
                found = World(_Zones(Route53Zones(route53), self._accepted), DynamoPlans(dynamodb, self.plan_table),
                               route53)
                self._worlds[actor] = found
            return found

    def _accepted(self, change_id: str) -> None:
        with self._cond:
            self._pending_changes.append(change_id)

    def settle(self, timeout: float = 30.0) -> None:
        """Wait until the lab DNS answers from every batch accepted so far (INSYNC)."""
        from chaos_dynamo.endpoint._lab import wait_insync

        with self._cond:
            pending, self._pending_changes = self._pending_changes, []
        client = self.world(OPERATOR).route53
        deadline = self.clock.monotonic() + timeout  # one deadline for all the changes
        for change_id in pending:
            left = max(0.0, deadline - self.clock.monotonic())
            if not wait_insync(client, change_id, left, clock=self.clock):
                raise LabError(f"Route 53 change {change_id} did not reach INSYNC within {timeout} s "
                               f"({len(pending)} change(s) pending)")

    # --- lifecycle ----------------------------------------------------------------------
    @contextmanager
    def exclusive(self, what: str, wait: float = 0.0) -> Iterator[None]:
        """Run ``what`` alone: no two scenarios, resets or restores at once."""
        acquired = self._busy.acquire(timeout=wait) if wait > 0 else self._busy.acquire(blocking=False)
        if not acquired:
            raise LabError(f"cannot {what}: the control plane is busy with {self._busy_with or 'another request'}; "
                           "wait for it to finish, or stop the control plane")
        self._busy_with = what
        try:
            yield
        finally:
            self._busy_with = ""
            self._busy.release()

    def start(self, plan_interval: float | None = None, poll: float | None = None,
              design: Design | None = None) -> dict[str, Any]:
        """Run free: the Planner writes plans at ``plan_interval``, Enactors apply them."""
        with self.exclusive("start the control plane"):
            self.pace = replace(self.pace, plan_interval=self.pace.plan_interval if plan_interval is None
                                else plan_interval, poll=self.pace.poll if poll is None else poll)
            if design is not None:
                self.config = replace(self.config, design=design)
            if self.mode != Mode.FREE:
                self.halt()
                self.launch(Mode.FREE)
            with self._cond:
                self._cond.notify_all()
        return self.status()

    def stop(self) -> dict[str, Any]:
        """Stop every actor thread and join it (paused actors are released); a running
        scenario is aborted. Armed failpoints stay armed: ``disarm`` them.

        Returns within about :data:`HALT_TIMEOUT` seconds, one deadline for the joins and for
        the aborted scenario to unwind.
        """
        deadline = REAL_CLOCK.monotonic() + HALT_TIMEOUT
        self._abort.set()
        try:
            self.halt(HALT_TIMEOUT)  # within the deadline: halt waits for a concurrent one too
            left = max(0.0, deadline - REAL_CLOCK.monotonic())
            if self._busy.acquire(timeout=left):  # let an aborted scenario unwind
                self._busy.release()
        finally:
            self._abort.clear()
        return self.status()

    def launch(self, mode: Mode, actors: Sequence[str] | None = None,
               target: Callable[[str, World], None] | None = None) -> None:
        """Start one thread per actor in ``mode`` (the caller halts the previous ones)."""
        names = list(actors) if actors is not None else [PLANNER, *self.names]
        worlds = {name: self.world(name) for name in names}  # boto3 clients made here, not in threads
        with self._halting:
            if self._abort.is_set():
                raise ScenarioAborted("the control plane is being stopped; start it again afterwards")
            self._stop.clear()
            self.mode = mode
            with self._cond:
                self._burst = 0
                self._errors = {}
                for e in self._enactors.values():
                    e.triggers = 0
            self._threads = {
                name: threading.Thread(target=self._actor_body,
                                       args=(target or (self._planner_loop if name == PLANNER else self._enactor_loop),
                                             name, worlds[name]),
                                       name=f"control-{name}", daemon=True)
                for name in names}
            for thread in self._threads.values():
                thread.start()

    def halt(self, timeout: float = HALT_TIMEOUT) -> None:
        """Stop the actor threads and wait for them, ``timeout`` seconds in all (paused actors
        are released, and no failpoint holds one until they have stopped).

        Concurrent calls (``stop`` and a scenario's own clean-up) run one after the other, so
        the second cannot let the failpoints act again while the first still joins threads.

        Raises:
            LabError: a thread was still running at the deadline.
        """
        # Thread joins wait in real time, whatever clock the plane was given.
        deadline = REAL_CLOCK.monotonic() + timeout
        self._stop.set()  # at once, even while another halt holds the lock
        if not self._halting.acquire(timeout=timeout):
            raise LabError(f"the control plane's threads did not stop within {timeout} s (another stop "
                           "is still waiting for them); they are daemon threads and end with the lab")
        try:
            self._stop.set()
            with self._cond:
                self._cond.notify_all()
            self.failpoints.halt()
            threads = list(self._threads.values())
            try:
                for thread in threads:
                    thread.join(timeout=max(0.0, deadline - REAL_CLOCK.monotonic()))
            finally:
                self.failpoints.resume()
            alive = [t.name for t in threads if t.is_alive()]
            self.mode = Mode.IDLE
        finally:
            self._halting.release()
        if alive:
            raise LabError(f"control-plane threads {alive} did not stop within {timeout} s; they are "
                           "daemon threads and end with the lab (`chaos-dynamo lab down`)")

    @property
    def aborted(self) -> bool:
        return self._abort.is_set() or self._stop.is_set()

    def failed(self) -> dict[str, str]:
        """The actors whose thread an unexpected error ended since their launch: {actor: error}."""
        with self._cond:
            return dict(self._errors)

    # --- operator and experiment controls ------------------------------------------------
    def set_design(self, design: Design, keep: int | None = None) -> dict[str, Any]:
        self._refuse_during_scenario("switch the design")
        self.config = replace(self.config, design=design, keep=self.config.keep if keep is None else keep)
        return self.status()

    def _refuse_during_scenario(self, what: str) -> None:
        if self.mode in (Mode.RACE, Mode.REPLAY):
            raise LabError(f"cannot {what} while the {self.mode.value} scenario runs: it would change "
                           "the interleaving it reproduces; wait for it, or stop the control plane")

    def burst(self, count: int) -> dict[str, Any]:
        """Have the free-running Planner write ``count`` plans now."""
        self._refuse_during_scenario("burst the Planner")
        return self.add_burst(count)

    def add_burst(self, count: int) -> dict[str, Any]:
        """:meth:`burst`, for a scenario driving its own Planner."""
        if self.mode == Mode.IDLE:
            raise LabError("the control plane is not running, so no Planner can write plans; "
                           "start it first (start_control_plane)")
        if self.mode == Mode.REPLAY:
            raise LabError("a trace is being replayed; its Planner writes only the trace's plans")
        with self._cond:
            self._burst += count
            self._cond.notify_all()
        return self.status()

    def trigger(self, enactor: str) -> None:
        """Race mode: have ``enactor`` run one cycle."""
        with self._cond:
            self._enactors[enactor].triggers += 1
            self._cond.notify_all()

    def reset(self, design: Design | None = None, keep: int | None = None,
              endpoints: int | None = None) -> dict[str, Any]:
        """A clean baseline: no actors, no failpoints, an empty history, plan 1 everywhere.

        Deletes every plan and every plan tree, writes plan 1 and UPSERTs its records (tree,
        aliases, lock, marker) for every endpoint, in one batch per zone.
        """
        with self.exclusive("reset the control plane"):
            self.reset_locked(design, keep, endpoints)
        return self.status()

    def reseed(self, seed: int) -> None:
        """Seed the actors' backoff jitter and the failpoints' ``random`` action (a scenario
        does, so a seed replays its sleeps and its random failures)."""
        self.seed = seed
        self._rngs = {name: random.Random(f"{seed}/{name}") for name in [PLANNER, *self.names]}
        self.failpoints.reseed(seed)

    def reset_locked(self, design: Design | None, keep: int | None, endpoints: int | None, *,
                     settle_timeout: float = 30.0) -> None:
        """:meth:`reset`, for a caller that already holds :meth:`exclusive`; DNS answers from
        plan 1 within ``settle_timeout`` seconds (LabError otherwise)."""
        self.halt()
        self.failpoints.reset()
        count = len(self.config.endpoints) if endpoints is None else endpoints
        self.config = replace(self.config, design=design or self.config.design,
                              keep=self.config.keep if keep is None else keep,
                              endpoints=self.all_endpoints[:count])
        world = self.world(OPERATOR)
        for generation in world.plans.generations():
            world.plans.delete(generation)
        world.plans.put(self.template)
        if self._backend is None:
            self._backend = Route53Backend(self.api_url, self.region)
        for zone_id in sorted({ep.zone_id for ep in self.all_endpoints}):
            here = [ep for ep in self.all_endpoints if ep.zone_id == zone_id]
            wanted = [r for ep in here for r in initial_records(self.template, ep, self.config.record_ttl)]
            keys = {r.key for r in wanted}
            suffixes = tuple("." + normalize_name(ep.name) for ep in here)
            doomed = [r for r in self._backend.list_records(zone_id)
                      if generation_of_tree(r.name) is not None and r.name.endswith(suffixes) and r.key not in keys]
            world.zones.change(zone_id, [Change("UPSERT", r) for r in wanted] + [Change("DELETE", r) for r in doomed],
                               "chaos-dynamo: reset the control plane to plan 1")
        self.settle(settle_timeout)
        with self._cond:
            self._stuck = ""
            self._stuck_at = ""
            self._enactors = {name: _Enactor(EnactorState(name), last_checked=self.template.generation)
                              for name in self.names}
        self.history.clear({ep.name: self.template.generation for ep in self.all_endpoints})

    def restore(self, timeout: float = 30.0) -> dict[str, Any]:
        """The operator's fix: abort any scenario, write the newest plan back to every
        endpoint (as ``restore_endpoint``: UPSERTs of its tree, aliases, lock and marker),
        wait until DNS answers from it, and clear the stuck state."""
        self._abort.set()  # a running scenario gives up, so the operator can act
        try:
            acquired = self._busy.acquire(timeout=UNWIND_TIMEOUT)
        finally:
            self._abort.clear()
        if not acquired:
            raise LabError(f"cannot restore: the control plane stayed busy with {self._busy_with!r} for "
                           f"{UNWIND_TIMEOUT} s; stop it (stop_control_plane) and try again")
        self._busy_with = "restore the endpoints"
        try:
            if self.mode in (Mode.RACE, Mode.REPLAY):
                self.halt()
            world = self.world(OPERATOR)
            plan = world.plans.newest()
            if plan is None:
                raise LabError(f"the plan table {self.plan_table!r} holds no plan to restore; "
                               "reset the control plane (reset_control_plane) to write plan 1")
            for ep in self.all_endpoints:
                start = self.clock.now()
                world.zones.change(ep.zone_id, [Change("UPSERT", r) for r in
                                                initial_records(plan, ep, self.config.record_ttl)],
                                   f"chaos-dynamo operator: restore {ep.name} to plan {plan.generation}")
                self.history.append(StepRecord(OPERATOR, "restore", "ok", plan.generation, ep.name),
                                    start, self.clock.now())
            self.settle(timeout)
            with self._cond:
                was = self._stuck
                self._stuck = ""
                self._stuck_at = ""
                for name, e in self._enactors.items():
                    e.state = EnactorState(name)
                    e.last_checked = max(e.last_checked, plan.generation)
        finally:
            self._busy_with = ""
            self._busy.release()
        return {"generation": plan.generation, "endpoints": [ep.name for ep in self.all_endpoints],
                "was_stuck": bool(was), "stuck_reason": was}

    def run_race(self, design: Design = Design.NAIVE, seed: int = 0, lock_losses: int = 2, keep: int = 2,
                 timeout: float = 60.0) -> dict[str, Any]:
        """The October 2025 race, by failpoints: see :func:`chaos_dynamo.control.scenarios.run_race`."""
        from chaos_dynamo.control.scenarios import run_race

        return run_race(self, design, seed, lock_losses, keep, timeout)

    def replay(self, trace: Trace, timeout: float = 60.0) -> dict[str, Any]:
        """Replay an explorer trace: see :func:`chaos_dynamo.control.scenarios.replay`."""
        from chaos_dynamo.control.scenarios import replay

        return replay(self, trace, timeout)

    # --- observation ----------------------------------------------------------------------
    @property
    def stuck(self) -> str:
        """Why the control plane is stuck ("" when it is not): an Enactor could not apply a
        plan and gave up; only an operator restore clears it."""
        with self._cond:
            return self._stuck

    @property
    def stuck_at(self) -> str:
        """The endpoint where the Enactor that got the control plane stuck gave up ("" when
        it is not stuck)."""
        with self._cond:
            return self._stuck_at

    def views(self) -> dict[str, EndpointView]:
        zones = self.world(OPERATOR).zones
        return {ep.name: view(zones, ep) for ep in self.config.endpoints}

    def actors(self) -> dict[str, dict[str, Any]]:
        """Every actor: whether its thread runs (``alive``) and the error that ended it."""
        with self._cond:
            errors = dict(self._errors)
        threads = dict(self._threads)
        return {name: {"alive": name in threads and threads[name].is_alive(), "error": errors.get(name, "")}
                for name in [PLANNER, *self.names]}

    def enactor_states(self) -> dict[str, dict[str, Any]]:
        paused = self.failpoints.waiting()
        actors = self.actors()
        with self._cond:
            items = [(n, e.state, e.cycles, e.last_checked) for n, e in self._enactors.items()]
        out: dict[str, dict[str, Any]] = {}
        for name, state, cycles, last in items:
            endpoint = (self.config.endpoints[state.endpoint].name
                        if state.phase == Phase.APPLYING and state.endpoint < len(self.config.endpoints) else None)
            out[name] = {"phase": state.phase.value, "plan": state.plan, "endpoint": endpoint,
                         "attempts": state.attempts, "lock_losses": state.lock_losses,
                         "applied": list(state.applied), "doomed": list(state.doomed), "cycles": cycles,
                         "last_checked": last, "paused": paused.get(name, ""), **actors[name]}
        return out

    def digest(self, entries: Sequence[Entry] | None = None) -> str:
        """The trace digest of the history. The emulator draws zone ids at random, so they
        are masked as ``Z1``, ``Z2``... (in the topology's zone order), as the explorer's
        in-memory world names them, so a lab history can be compared with an explored one."""
        mask = {zone_id: f"Z{i + 1}" for i, zone_id in enumerate(self.zone_order)}
        return digest_of(self.history.entries() if entries is None else entries, mask)

    def went_backwards(self) -> list[dict[str, Any]]:
        return [c.as_dict() for c in went_backwards(self.history.entries(), self.history.baseline)]

    def generation_changes(self, since: float | None = None) -> list[dict[str, Any]]:
        """Every change of an endpoint's active generation since the last reset (or ``since``)."""
        changes = generation_changes(self.history.entries(), self.history.baseline)
        return [c.as_dict() for c in changes if since is None or c.time >= since]

    def summary(self) -> dict[str, Any]:
        """The history in a few lines, with its digest and what went wrong."""
        entries = self.history.entries()
        return {"lines": summarize(entries, self.history.baseline), "digest": self.digest(entries),
                "steps": len(entries), "went_backwards": self.went_backwards(), "stuck": self.stuck}

    def status(self) -> dict[str, Any]:
        entries = self.history.entries()
        baseline = self.history.baseline
        backwards = went_backwards(entries, baseline)
        stuck = self.stuck
        return {
            "mode": self.mode.value, "running": self.mode != Mode.IDLE, "busy_with": self._busy_with,
            "design": self.config.design.value, "keep": self.config.keep,
            "endpoints": [ep.name for ep in self.config.endpoints],
            "plan_interval": self.pace.plan_interval, "poll": self.pace.poll, "seed": self.seed,
            "stuck": bool(stuck), "stuck_reason": stuck,
            "went_backwards": bool(backwards), "backwards": [c.as_dict() for c in backwards],
            "generations": current_generations(entries, baseline),
            "actors": self.actors(), "failed": self.failed(),
            "enactors": self.enactor_states(), "failpoints": self.failpoints.describe(),
            "history_length": len(entries), "digest": self.digest(entries),
        }

    # --- the actors -----------------------------------------------------------------------
    def _actor_body(self, run: Callable[[str, World], None], name: str, world: World) -> None:
        """An actor thread: ``run``, and if an unexpected error ends it, say so everywhere an
        operator looks (the history, status, the log) instead of vanishing."""
        try:
            run(name, world)
        except Exception as exc:  # noqa: BLE001 - a dying actor must leave a trace, not vanish
            error = f"{type(exc).__name__}: {exc}"
            with self._cond:
                self._errors[name] = error
                self._cond.notify_all()
            self._record(StepRecord(name, CRASH, "info", detail=f"stopped by an unexpected error: {error}"),
                         self.clock.now())
            logging.getLogger("chaos_dynamo.control").warning("control-plane actor %s stopped: %s", name, error,
                                                              exc_info=exc)

    def _record(self, record: StepRecord, start: float, error: str = "") -> None:
        self.history.append(record, start, self.clock.now(), error)

    def _planner_loop(self, name: str, world: World) -> None:
        state = PlannerState(name)
        failures = 0
        due = self.clock.monotonic() + self.pace.plan_interval
        while not self._stop.is_set():
            with self._cond:
                while not self._stop.is_set() and self._burst == 0:
                    interval = self.pace.plan_interval if self.mode == Mode.FREE else 0.0
                    if interval <= 0:
                        self._cond.wait()
                        continue
                    left = due - self.clock.monotonic()
                    if left <= 0:
                        break
                    self._cond.wait(timeout=min(left, 1.0))
                if self._stop.is_set():
                    return
                from_burst = self._burst > 0
            state, ok = self.planner_once(state, world)
            if ok:
                failures = 0
                with self._cond:
                    if from_burst:
                        self._burst = max(0, self._burst - 1)
                    else:
                        due = self.clock.monotonic() + self.pace.plan_interval
            else:
                failures += 1
                self._backoff(name, failures)

    def planner_once(self, state: PlannerState, world: World) -> tuple[PlannerState, bool]:
        """One plan write, with the ``planner.plan`` failpoint before it."""
        result = self._hit("planner.plan", state.name, "plan")
        if self._stop.is_set():
            return state, False
        start = self.clock.now()
        if result == "fail":
            nxt = (world.plans.newest_generation() or 0) + 1
            record = StepRecord(state.name, "plan", "fail", nxt, detail="failpoint planner.plan: the write failed")
        else:
            try:
                state, record = planner_step(state, world.plans, self.template)
            except (ChaosDynamoError, BotoCoreError, ClientError, OSError) as exc:
                record = StepRecord(state.name, "plan", "info", detail=f"{UNKNOWN}{type(exc).__name__}: {exc}")
        self._record(record, start)
        if record.outcome == "ok":
            self.failpoints.signal(f"planner.plan:{record.generation}")
        return state, record.outcome == "ok"

    def _enactor_loop(self, name: str, world: World) -> None:
        while not self._stop.is_set():
            if self.mode == Mode.FREE:
                try:
                    newest = world.plans.newest_generation()
                except (ChaosDynamoError, BotoCoreError, ClientError, OSError):
                    newest = None
                with self._cond:
                    last = self._enactors[name].last_checked
                if newest is None or newest <= last:
                    with self._cond:
                        # A little seeded jitter keeps three Enactors from polling in lockstep.
                        self._cond.wait(timeout=self.pace.poll * self._rngs[name].uniform(0.75, 1.25))
                    continue
            else:
                with self._cond:
                    while not self._stop.is_set() and self._enactors[name].triggers == 0:
                        self._cond.wait()
                    if self._stop.is_set():
                        return
                    self._enactors[name].triggers -= 1
            self.cycle(name, world)

    def cycle(self, name: str, world: World) -> EnactorState:
        """One cycle of one Enactor: check, commit on every endpoint, clean up.

        A cycle cut short (a stop, an unexpected error) releases the Enactor's hold on its
        plan, as finishing one does: under the fenced design a held plan is never cleaned up.
        """
        state = self.new_cycle(name)
        failures = 0
        try:
            while not state.phase.finished and not self._stop.is_set():
                state, failed = self.enactor_once(state, world)
                failures = failures + 1 if failed else 0
                if failed and not state.phase.finished:
                    self._backoff(name, failures)
        finally:
            if not state.phase.finished:
                state = self._let_go(state, world)
        return state

    def _let_go(self, state: EnactorState, world: World) -> EnactorState:
        """End an unfinished cycle: release the hold its check took, and mark it abandoned."""
        if state.phase in (Phase.APPLYING, Phase.CLEANUP) and state.plan is not None:
            start = self.clock.now()
            try:
                world.plans.release(state.plan, state.name)
                record = StepRecord(state.name, "release", "ok", state.plan,
                                    detail="the cycle was cut short: hold on the plan released")
            except (ChaosDynamoError, BotoCoreError, ClientError, OSError) as exc:
                record = StepRecord(state.name, "release", "info", state.plan,
                                    detail=f"{UNKNOWN}{type(exc).__name__}: {exc}")
            self._record(record, start)
        state = replace(state, phase=Phase.ABANDONED)
        with self._cond:
            self._enactors[state.name].state = state
        return state

    def new_cycle(self, name: str) -> EnactorState:
        state = EnactorState(name)
        with self._cond:
            self._enactors[name].state = state
            self._enactors[name].cycles += 1
        return state

    def state_of(self, name: str) -> EnactorState:
        with self._cond:
            return self._enactors[name].state

    def enactor_once(self, state: EnactorState, world: World) -> tuple[EnactorState, bool]:
        """One step of an Enactor with its failpoints and events; returns (state, failed)."""
        name, action = state.name, state.next_action()
        point = POINT_OF[action]
        result = self._hit(point, name, action)
        if self._stop.is_set():
            return state, False
        start = self.clock.now()
        world.zones.refused = ""
        unknown = False
        if result == "fail" and action != "commit":
            new, record = state, StepRecord(name, action, "fail", state.plan,
                                            detail=f"failpoint {point}: the step failed")
        else:
            try:
                new, record = enactor_step(state, world.zones, world.plans, self.config,
                                           lose_lock=result == "fail")
            except (ChaosDynamoError, BotoCoreError, ClientError, OSError) as exc:
                unknown = True
                endpoint = self.config.endpoints[state.endpoint].name if action == "commit" else None
                new, record = state, StepRecord(name, action, "info", state.plan, endpoint,
                                                f"{UNKNOWN}{type(exc).__name__}: {exc}")
        self._record(record, start, world.zones.refused)
        with self._cond:
            self._enactors[name].state = new
            if action == "check":
                self._enactors[name].last_checked = max(self._enactors[name].last_checked, new.plan or 0)
            if new.phase == Phase.STUCK and not self._stuck:
                self._stuck = (f"{name} could not apply plan {new.plan} at {record.endpoint} after "
                               f"{new.attempts} attempts: {world.zones.refused or record.detail}")
                self._stuck_at = record.endpoint or ""
        self._signal(state, new, record)
        if action == "check" and new.phase == Phase.APPLYING:
            self._hit("enactor.after_check", name, action)
        return new, unknown or record.outcome == "fail"

    def _hit(self, point: str, actor: str, action: str) -> str:
        """Hit a failpoint; a pause that outlives the failpoints' timeout is logged, not fatal.
        Once the plane is stopping, no failpoint holds the actor back."""
        if self._stop.is_set():
            return ""
        start = self.clock.now()
        try:
            return self.failpoints.hit(point, actor)
        except TimeoutError as exc:
            self._record(StepRecord(actor, action, "info", detail=f"failpoint {point}: {exc}"), start)
            return ""

    def _signal(self, before: EnactorState, after: EnactorState, record: StepRecord) -> None:
        name = after.name
        if record.action == "check":
            self.failpoints.signal(f"{name}.checked")
        if record.action == "commit" and record.outcome == "ok":
            self.failpoints.signal(f"{name}.committed:{record.endpoint}")
            if after.phase != Phase.APPLYING:
                self.failpoints.signal(f"{name}.applied")
        if after.phase.finished and not before.phase.finished:
            self.failpoints.signal(f"{name}.done")


__all__ = ["ControlPlane", "Mode", "Pace", "ScenarioAborted", "PLANNER", "Design"]
