"""Scenarios on the lab's control plane: the October 2025 race, and the replay of a trace.

**The race** (:func:`run_race`) is made to happen by failpoints and events, not by timing,
so it happens on every run::

    planner   writes plans 2..5
    enactor-a checks plan 5 (newer than 1), then pauses       (enactor.after_check until enactor-b.applied)
    planner   writes plans 6..10
    enactor-b checks plan 10, commits it on every endpoint, then pauses before cleanup
                                                              (enactor.cleanup until enactor-a.done)
    enactor-a resumes (after ``lock_losses`` lost locks: enactor.commit fail) and commits plan 5:
                naive:  accepted, the generation goes backwards 10 -> 5
                fenced: Route 53 refuses the batch (the generation marker moved): A abandons
    enactor-b cleans up plans more than ``keep`` older than 10:
                naive:  including plan 5, now active: the endpoint answers NOERROR, no addresses
    planner   writes plan 11; enactor-c tries to apply it:
                naive:  refused (the rollback alias would target the deleted tree): STUCK
                fenced: applied

**A replay** (:func:`replay`) lets each actor thread take its step only when it is the
trace's next step, checks the invariants after every step and says whether the trace's
violation happened on the lab too.

Both check the invariants of :mod:`chaos_dynamo.control.invariants`, the explorer's own, and
both run against one deadline: ``timeout`` covers the whole scenario (reset, every wait, the
final settle), and tearing down the actors afterwards takes at most
:data:`~chaos_dynamo.control.runtime.HALT_TIMEOUT` more. So the lab answers within
``timeout + HALT_TIMEOUT`` seconds, inside the ``timeout + 30`` the control API's clients
allow (``run_race_scenario``, ``chaos-dynamo replay``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict
from typing import Any

from chaos_dynamo.control.enactor import Design, EndpointView, Phase, PlannerState
from chaos_dynamo.control.history import PLANNER, Entry, highest_generations, summarize
from chaos_dynamo.control.invariants import (
    EMPTY_ENDPOINT,
    ENACTOR_STUCK,
    GENERATION_DECREASED,
    Violation,
    check_endpoints,
    enactor_stuck,
    same_violation,
)
from chaos_dynamo.control.runtime import ControlPlane, Mode, ScenarioAborted
from chaos_dynamo.control.trace import Trace
from chaos_dynamo.errors import ConfigError, LabError

RACE_PLANS = (5, 10, 11)
"""Enactor A applies plan 5, B plan 10, C plan 11."""


def run_race(plane: ControlPlane, design: Design = Design.NAIVE, seed: int = 0, lock_losses: int = 2,
             keep: int = 2, timeout: float = 60.0) -> dict[str, Any]:
    """Reproduce the race (see the module docstring) on every endpoint of the lab.

    Starts from :meth:`ControlPlane.reset`, so two runs of one seed record the same history
    (same trace digest). Returns the history, its digest, the endpoints as the zone shows them
    after B's cleanup and at the end, the violations seen, and a summary.

    Args:
        timeout: seconds for the whole scenario, from the reset to the final settle (one
            deadline, not one per wait); halting the actors afterwards may take up to
            :data:`~chaos_dynamo.control.runtime.HALT_TIMEOUT` more.

    Raises:
        LabError: the deadline passed (naming what the scenario was waiting for), or an
            actor died of an unexpected error.
        ScenarioAborted: the control plane was stopped or restored meanwhile.
    """
    if len(plane.names) < 3:
        raise ConfigError("enactors", f"the race needs 3 Enactors, the lab runs {len(plane.names)}",
                          "start the lab with the default control plane")
    a, b, c = plane.names[:3]
    started = plane.clock.monotonic()
    deadline = _Deadline(plane, "the race scenario", timeout)
    with plane.exclusive(f"the race scenario ({design.value})"):
        plane.reseed(seed)
        plane.reset_locked(design, keep, len(plane.all_endpoints), settle_timeout=deadline.left())
        fp = plane.failpoints
        try:
            plane.launch(Mode.RACE, [PLANNER, a, b, c])
            fp.arm("enactor.after_check", "pause", actors=[a], event=f"{b}.applied")
            if lock_losses:
                fp.arm("enactor.commit", "fail", actors=[a], count=lock_losses)
            fp.arm("enactor.cleanup", "pause", actors=[b], event=f"{a}.done")
            plane.add_burst(RACE_PLANS[0] - 1)
            deadline.event(f"planner.plan:{RACE_PLANS[0]}")
            plane.trigger(a)
            deadline.event(f"{a}.checked")
            deadline.wait(lambda t: fp.wait_until_paused(a, t), f"{a} to pause after its check")
            plane.add_burst(RACE_PLANS[1] - RACE_PLANS[0])
            deadline.event(f"planner.plan:{RACE_PLANS[1]}")
            plane.trigger(b)
            deadline.event(f"{b}.done")
            after_cleanup = plane.views()
            entries_after_cleanup = plane.history.entries()
            plane.add_burst(RACE_PLANS[2] - RACE_PLANS[1])
            deadline.event(f"planner.plan:{RACE_PLANS[2]}")
            plane.trigger(c)
            deadline.event(f"{c}.done")
            plane.settle(deadline.left())
        finally:
            plane.halt()
            fp.disarm()  # the race's own failpoints
        final = plane.views()
    entries = plane.history.entries()
    violations = [v.as_dict() for v in lab_violations(plane, entries_after_cleanup, after_cleanup)]
    kinds = {v["kind"] for v in violations}
    states = plane.enactor_states()
    return {
        "design": design.value, "seed": seed, "lock_losses": lock_losses, "keep": keep,
        "digest": plane.digest(entries), "steps": len(entries),
        "duration": round(plane.clock.monotonic() - started, 3),
        "endpoints_after_cleanup": _views(after_cleanup), "endpoints": _views(final),
        "empty_endpoints": sorted(name for name, v in final.items() if v.empty),
        "went_backwards": plane.went_backwards(), "stuck": bool(plane.stuck), "stuck_reason": plane.stuck,
        "enactors": {name: s["phase"] for name, s in states.items()},
        "violations": violations,
        "race_reproduced": {EMPTY_ENDPOINT, GENERATION_DECREASED, ENACTOR_STUCK} <= kinds,
        "held": not kinds and states[c]["phase"] == Phase.DONE.value,
        "summary": summarize(entries, plane.history.baseline),
        "history": [e.as_dict() for e in entries],
    }


def replay(plane: ControlPlane, trace: Trace, timeout: float = 60.0) -> dict[str, Any]:
    """Replay ``trace`` on the lab: each actor thread takes its step only when it is next.

    Args:
        timeout: seconds for the whole replay, from the reset to the final settle (one
            deadline); halting the actors afterwards may take up to
            :data:`~chaos_dynamo.control.runtime.HALT_TIMEOUT` more.
    """
    actors = [PLANNER, *plane.names]
    wanted = sorted({s.actor for s in trace.steps})
    if trace.enactors > len(plane.names) or any(a not in actors for a in wanted):
        raise ConfigError("enactors", f"the trace has {trace.enactors} Enactors, the lab runs {len(plane.names)}",
                          "replay a trace explored with at most that many Enactors")
    if trace.endpoints > len(plane.all_endpoints):
        raise ConfigError("endpoints", f"the trace uses {trace.endpoints} endpoints, the lab has "
                          f"{len(plane.all_endpoints)}", "replay a trace explored with at most that many")
    sequencer = _Sequencer(plane, trace)
    started = plane.clock.monotonic()
    deadline = _Deadline(plane, "the replay", timeout)
    with plane.exclusive("replay a trace"):
        plane.reseed(trace.seed)
        plane.reset_locked(Design(trace.design), trace.keep, trace.endpoints, settle_timeout=deadline.left())
        try:
            plane.launch(Mode.REPLAY, wanted, target=sequencer.actor)
            sequencer.wait(deadline)
            plane.settle(deadline.left())
        finally:
            plane.halt()
        final = plane.views()
    entries = plane.history.entries()
    expected = trace.violation or None
    observed = sequencer.violations
    if sequencer.diverged is not None:
        reproduced = False
    elif expected:
        reproduced = any(_same_violation(expected, v) for v in observed)
    else:
        reproduced = not observed
    digest = plane.digest(entries)
    return {
        "trace": {"design": trace.design, "enactors": trace.enactors, "plans": trace.plans,
                  "endpoints": trace.endpoints, "keep": trace.keep, "steps": len(trace.steps),
                  "seed": trace.seed, "violation": expected, "digest": trace.digest},
        "steps_taken": sequencer.taken, "diverged": sequencer.diverged,
        "violations": observed, "reproduced": reproduced,
        "digest": digest, "same_digest": (digest == trace.digest) if trace.digest else None,
        "same_outcomes": _same_outcomes(trace, entries),
        "duration": round(plane.clock.monotonic() - started, 3),
        "endpoints": _views(final), "stuck": bool(plane.stuck),
        "summary": summarize(entries, plane.history.baseline),
        "history": [e.as_dict() for e in entries],
    }


# --- the sequencer ---------------------------------------------------------------------------

class _Sequencer:
    """Hands the turn to the actor whose step is next in the trace."""

    def __init__(self, plane: ControlPlane, trace: Trace) -> None:
        self.plane = plane
        self.steps = trace.steps
        self.taken = 0
        self.finished = False
        self.diverged: dict[str, Any] | None = None
        self.violations: list[dict[str, Any]] = []
        self._seen: set[tuple[str, str]] = set()
        self._cond = threading.Condition()
        self._error: BaseException | None = None

    def actor(self, name: str, world: Any) -> None:
        planner = PlannerState(name)
        try:
            while True:
                with self._cond:
                    while not (self.finished or self.plane.aborted or self.steps[self.taken].actor == name):
                        self._cond.wait(timeout=0.1)
                    if self.finished or self.plane.aborted:
                        return
                    index, step = self.taken, self.steps[self.taken]
                if name == PLANNER:
                    if step.action != "plan":
                        self._diverge(index, name, step.action, "plan")
                        return
                    planner, _ = self.plane.planner_once(planner, world)
                else:
                    state = self.plane.state_of(name)
                    if step.action == "check" and (state.phase.finished or state.phase == Phase.IDLE):
                        state = self.plane.new_cycle(name)
                    if state.next_action() != step.action:
                        self._diverge(index, name, step.action, state.next_action())
                        return
                    self.plane.enactor_once(state, world)
                self._observe(index)
                with self._cond:
                    self.taken += 1
                    self.finished = self.taken >= len(self.steps)
                    self._cond.notify_all()
        except BaseException as exc:
            with self._cond:
                self._error = exc
                self.finished = True
                self._cond.notify_all()
            raise

    def _diverge(self, index: int, actor: str, action: str, expected: str) -> None:
        with self._cond:
            self.diverged = {"step": index, "actor": actor, "action": action, "next_step_of_actor": expected,
                             "detail": f"the trace says {actor} {action}, but its next step on the lab is "
                                       f"{expected!r}"}
            self.finished = True
            self._cond.notify_all()

    def _observe(self, index: int) -> None:
        entries = self.plane.history.entries()
        for v in lab_violations(self.plane, entries, self.plane.views()):
            key = (v.kind, v.endpoint)
            if key not in self._seen:
                self._seen.add(key)
                self.violations.append({"step": index, **v.as_dict()})

    def wait(self, deadline: _Deadline) -> None:
        """Until every step was taken (or the replay diverged); raises when the deadline
        passes, the plane is stopped or an actor failed."""
        def done(slice_: float) -> bool:
            with self._cond:
                return self._cond.wait_for(lambda: self.finished, slice_)

        deadline.wait(done, f"the trace's steps ({self.taken} of {len(self.steps)} taken)")
        with self._cond:
            if self._error is not None:
                raise LabError(f"the replay failed at step {self.taken}: "
                               f"{type(self._error).__name__}: {self._error}")


# --- checks ----------------------------------------------------------------------------------

def lab_violations(plane: ControlPlane, entries: Sequence[Entry],
                   views: Mapping[str, EndpointView]) -> list[Violation]:
    """The invariants (:mod:`chaos_dynamo.control.invariants`) on the lab: ``views`` as the
    zones show them, the highest generation each endpoint had from the history ``entries``
    (which must be the history up to the moment of ``views``), and a stuck Enactor."""
    highest = highest_generations(entries, plane.history.baseline)
    names = list(views)
    found = check_endpoints(names, [views[n] for n in names], [highest.get(n, 0) for n in names])
    if plane.stuck:
        found.append(enactor_stuck(plane.stuck_at, plane.stuck))
    return found


def _same_violation(expected: Mapping[str, Any], observed: Mapping[str, Any]) -> bool:
    """Whether the lab's ``observed`` violation is the trace's ``expected`` one (exact kind)."""
    def of(v: Mapping[str, Any]) -> Violation:
        return Violation(str(v.get("kind", "")), str(v.get("endpoint") or ""), str(v.get("detail", "")))

    return same_violation(of(expected), of(observed))


def _same_outcomes(trace: Trace, entries: list[Entry]) -> bool | None:
    """Whether every step had the same outcome (and plan, endpoint) on the lab as in the
    trace's own history; None when the trace carries no history.

    Details are left out: Route 53 over HTTP words a refused batch as ``[m1, m2]`` where an
    in-memory zone gives ``m1; m2``, so the digests of the two histories differ in wording.
    """
    if not trace.history:
        return None

    def shape(record: dict[str, Any]) -> tuple[Any, ...]:
        return tuple(record.get(k) for k in ("actor", "action", "outcome", "generation", "endpoint"))

    return [shape(dict(h)) for h in trace.history] == [shape(e.record.as_dict()) for e in entries]


def _views(views: dict[str, EndpointView]) -> dict[str, dict[str, Any]]:
    return {name: {**asdict(v), "empty": v.empty} for name, v in views.items()}


class _Deadline:
    """One deadline for a whole scenario: every wait takes what is left of it."""

    def __init__(self, plane: ControlPlane, scenario: str, timeout: float) -> None:
        self.plane = plane
        self.scenario = scenario
        self.timeout = timeout
        self.at = plane.clock.monotonic() + timeout

    def left(self) -> float:
        return max(0.0, self.at - self.plane.clock.monotonic())

    def event(self, event: str) -> None:
        """Wait for a control-plane event (:meth:`~chaos_dynamo.control.failpoints.Failpoints.signal`)."""
        self.wait(lambda t: self.plane.failpoints.wait_for_event(event, t), repr(event))

    def wait(self, ready: Callable[[float], bool], what: str) -> None:
        """Call ``ready(slice)`` (a condition wait returning True when done) until it succeeds.

        Raises:
            ScenarioAborted: the plane was stopped (stop, restore, lab shutdown) meanwhile.
            LabError: an actor died of an unexpected error, or the deadline passed.
        """
        while not ready(min(0.05, self.left())):
            if self.plane.aborted:
                raise ScenarioAborted(f"the control plane was stopped while {self.scenario} waited for {what}")
            failed = self.plane.failed()
            if failed:
                raise LabError(f"{self.scenario} cannot go on: actor(s) stopped by an unexpected error: "
                               + "; ".join(f"{name}: {error}" for name, error in sorted(failed.items())))
            if self.left() <= 0:
                raise LabError(f"{self.scenario} did not finish within its timeout of {self.timeout} s: it was "
                               f"waiting for {what} (paused actors: {self.plane.failpoints.waiting() or 'none'}); "
                               "give it a longer timeout, or check the lab's log")
