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
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from chaos_dynamo.control.enactor import Design, EndpointView, Phase, PlannerState
from chaos_dynamo.control.history import Entry, summarize, went_backwards
from chaos_dynamo.control.runtime import PLANNER, ControlPlane, Mode, ScenarioAborted
from chaos_dynamo.control.trace import Trace
from chaos_dynamo.errors import ConfigError, LabError
from chaos_dynamo.route53.records import normalize_name

EMPTY, BACKWARDS, STUCK = "empty-endpoint", "generation-decreased", "enactor-stuck"
"""Violation kinds, named as the explorer names them (:mod:`chaos_dynamo.control.explorer`)."""
RACE_PLANS = (5, 10, 11)
"""Enactor A applies plan 5, B plan 10, C plan 11."""


def run_race(plane: ControlPlane, design: Design = Design.NAIVE, seed: int = 0, lock_losses: int = 2,
             keep: int = 2, timeout: float = 60.0) -> dict[str, Any]:
    """Reproduce the race (see the module docstring) on every endpoint of the lab.

    Starts from :meth:`ControlPlane.reset`, so two runs of one seed record the same history
    (same trace digest). Returns the history, its digest, the endpoints as the zone shows them
    after B's cleanup and at the end, the violations seen, and a summary.
    """
    if len(plane.names) < 3:
        raise ConfigError("enactors", f"the race needs 3 Enactors, the lab runs {len(plane.names)}",
                          "start the lab with the default control plane")
    a, b, c = plane.names[:3]
    started = plane.clock.monotonic()
    with plane.exclusive(f"the race scenario ({design.value})"):
        plane.reseed(seed)
        plane.reset_locked(design, keep, len(plane.all_endpoints))
        fp = plane.failpoints
        try:
            plane.launch(Mode.RACE, [PLANNER, a, b, c])
            fp.arm("enactor.after_check", "pause", actors=[a], event=f"{b}.applied")
            if lock_losses:
                fp.arm("enactor.commit", "fail", actors=[a], count=lock_losses)
            fp.arm("enactor.cleanup", "pause", actors=[b], event=f"{a}.done")
            plane.add_burst(RACE_PLANS[0] - 1)
            plane.wait_event(f"planner.plan:{RACE_PLANS[0]}", timeout)
            plane.trigger(a)
            plane.wait_event(f"{a}.checked", timeout)
            _until(plane, lambda t: fp.wait_until_paused(a, t), f"{a} to pause after its check", timeout)
            plane.add_burst(RACE_PLANS[1] - RACE_PLANS[0])
            plane.wait_event(f"planner.plan:{RACE_PLANS[1]}", timeout)
            plane.trigger(b)
            plane.wait_event(f"{b}.done", timeout)
            after_cleanup = plane.views()
            plane.add_burst(RACE_PLANS[2] - RACE_PLANS[1])
            plane.wait_event(f"planner.plan:{RACE_PLANS[2]}", timeout)
            plane.trigger(c)
            plane.wait_event(f"{c}.done", timeout)
            plane.settle()
        finally:
            plane.halt()
            fp.disarm()  # the race's own failpoints
        final = plane.views()
    entries = plane.history.entries()
    violations = _violations(plane, entries, after_cleanup)
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
        "race_reproduced": {EMPTY, BACKWARDS, STUCK} <= kinds,
        "held": not kinds and states[c]["phase"] == Phase.DONE.value,
        "summary": summarize(entries, plane.history.baseline),
        "history": [e.as_dict() for e in entries],
    }


def replay(plane: ControlPlane, trace: Trace, timeout: float = 60.0) -> dict[str, Any]:
    """Replay ``trace`` on the lab: each actor thread takes its step only when it is next."""
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
    with plane.exclusive("replay a trace"):
        plane.reseed(trace.seed)
        plane.reset_locked(Design(trace.design), trace.keep, trace.endpoints)
        try:
            plane.launch(Mode.REPLAY, wanted, target=sequencer.actor)
            sequencer.wait(timeout)
            plane.settle()
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
        for v in _violations(self.plane, entries, self.plane.views()):
            key = (v["kind"], v.get("endpoint", ""))
            if key not in self._seen:
                self._seen.add(key)
                self.violations.append({"step": index, **v})

    def wait(self, timeout: float) -> None:
        deadline = self.plane.clock.monotonic() + timeout
        with self._cond:
            while not self.finished:
                if self.plane.aborted:
                    raise ScenarioAborted("the control plane was stopped during the replay")
                if self.plane.clock.monotonic() >= deadline:
                    raise LabError(f"the replay did not finish within {timeout} s "
                                   f"({self.taken} of {len(self.steps)} steps taken)")
                self._cond.wait(timeout=0.1)
            if self._error is not None:
                raise LabError(f"the replay failed at step {self.taken}: "
                               f"{type(self._error).__name__}: {self._error}")


# --- checks ----------------------------------------------------------------------------------

def _violations(plane: ControlPlane, entries: list[Entry],
                views: dict[str, EndpointView]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = [
        {"kind": EMPTY, "endpoint": normalize_name(name),
         "detail": (f"the alias points at {v.alias_target}, which has no records" if v.alias_target
                    else "there is no alias") + ": resolvers get NOERROR with no addresses"}
        for name, v in views.items() if v.empty]
    for change in went_backwards(entries, plane.history.baseline):
        found.append({"kind": BACKWARDS, "endpoint": normalize_name(change.endpoint),
                      "detail": f"{change.actor} made plan {change.after} active after plan {change.before} was: "
                                "a stale plan was applied over a newer one"})
    stuck = [e.record for e in entries if e.record.action == "commit" and e.record.outcome == "fail"]
    if plane.stuck:
        where = stuck[-1].endpoint if stuck and stuck[-1].endpoint else ""
        found.append({"kind": STUCK, "endpoint": normalize_name(where) if where else "", "detail": plane.stuck})
    return found


def _kind(text: str) -> str:
    """A violation kind, whatever its spelling in a trace (the explorer's names may differ)."""
    t = text.lower().replace("_", "-")
    if "stuck" in t:
        return STUCK
    if any(word in t for word in ("decreas", "back", "stale", "regress", "older")):
        return BACKWARDS
    if any(word in t for word in ("empty", "no-address", "delet", "missing")):
        return EMPTY
    return t


def _same_violation(expected: dict[str, Any], observed: dict[str, Any]) -> bool:
    if _kind(str(expected.get("kind", ""))) != observed["kind"]:
        return False
    endpoint = expected.get("endpoint")
    return not endpoint or not observed.get("endpoint") or \
        normalize_name(str(endpoint)) == normalize_name(str(observed["endpoint"]))


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


def _until(plane: ControlPlane, wait: Callable[[float], bool], what: str, timeout: float) -> None:
    """Call ``wait(slice)`` (a condition wait returning True when done) until it succeeds,
    giving up when the plane is stopped or ``timeout`` passes."""
    deadline = plane.clock.monotonic() + timeout
    while not wait(0.05):
        if plane.aborted:
            raise ScenarioAborted(f"the control plane was stopped while waiting for {what}")
        if plane.clock.monotonic() >= deadline:
            raise LabError(f"timed out after {timeout} s waiting for {what}")
