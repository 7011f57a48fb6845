"""Failpoints: named places in the control plane where a run can pause, slow down or fail.

Like etcd's gofail or FoundationDB's BUGGIFY, they make a chosen interleaving happen on
every run instead of by luck. The control plane calls :meth:`Failpoints.hit` at each named
point; an armed point then, for the actors it names:

* ``pause``: blocks until an *event* is signalled (``Failpoints.signal``) *after* the pause
  was armed, e.g. ``enactor-b.applied`` (Enactor B committed its plan on every endpoint).
  Events are counted, so in a free-running control plane, where ``enactor-b.applied``
  happens every cycle, a pause armed now waits for B's next application, not for one it
  already made;
* ``delay``: sleeps for ``seconds`` (through the injected clock);
* ``fail``: returns "fail" the next ``count`` times (an Enactor then behaves as if it lost
  its lock);
* ``random``: returns "fail" with probability ``probability``, from a generator per actor
  and point seeded with ``"{seed}/{actor}/{point}"``, so an actor's pattern does not depend
  on how the threads interleave, and one seed gives it again in any process;
* ``crash``: raises :class:`FailpointCrash` the next ``count`` times: the actor's thread
  dies of an unexpected error, as a crashed Enactor process would (the control plane
  records it; ``chaos-dynamo lab doctor`` reports and repairs what it left).

Points used by the control plane: ``enactor.check`` (before the one-time freshness check),
``enactor.after_check``, ``enactor.commit`` (before each change batch; ``fail`` = lost lock),
``enactor.cleanup`` (before each cleanup deletion), ``planner.plan`` (before each plan write).
"""

from __future__ import annotations

import random
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from chaos_dynamo.clock import REAL_CLOCK, Clock
from chaos_dynamo.errors import ConfigError

POINTS = ("enactor.check", "enactor.after_check", "enactor.commit", "enactor.cleanup", "planner.plan")
ACTIONS = ("pause", "delay", "fail", "random", "crash")


class FailpointCrash(RuntimeError):
    """Raised by an armed ``crash`` failpoint: an error no actor expects, so its thread dies."""


@dataclass(eq=False)  # identity: a paused actor checks that *its* failpoint is still armed
class Armed:
    point: str
    action: str
    actors: frozenset[str] = frozenset()
    event: str = ""
    seconds: float = 0.0
    count: int = 0
    probability: float = 0.0
    hits: int = 0
    fired: int = 0
    after: int = 0
    """How many times ``event`` had happened when this pause was armed: it waits for one more."""

    def matches(self, actor: str) -> bool:
        return not self.actors or actor in self.actors

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"point": self.point, "action": self.action, "actors": sorted(self.actors),
                               "hits": self.hits, "fired": self.fired}
        for key in ("event", "seconds", "count", "probability", "after"):
            value = getattr(self, key)
            if value:
                out[key] = value
        return out


@dataclass
class Failpoints:
    """The registry the control plane consults; thread-safe.

    Args:
        seed: seeds the ``random`` action (see :meth:`reseed`).
        clock: the ``delay`` action sleeps through it.
        pause_timeout: seconds a pause may last before :meth:`hit` raises TimeoutError.
    """

    seed: int = 0
    clock: Clock = REAL_CLOCK
    pause_timeout: float = 120.0
    _armed: dict[str, list[Armed]] = field(default_factory=dict)
    _events: Counter[str] = field(default_factory=Counter)
    _waiting: dict[str, str] = field(default_factory=dict)
    _cond: threading.Condition = field(default_factory=threading.Condition)
    _rngs: dict[tuple[str, str], random.Random] = field(default_factory=dict)
    _halts: int = 0
    _halt_epoch: int = 0
    """Counts halts: a paused actor is released by any halt that began while it waited,
    even when that halt has already resumed by the time the actor wakes up."""

    def arm(self, point: str, action: str, *, actors: list[str] | tuple[str, ...] = (), event: str = "",
            seconds: float = 0.0, count: int = 1, probability: float = 0.0) -> Armed:
        """Arm ``point``; validated here so a typo fails the experiment before it runs.

        A pause waits for an occurrence of ``event`` after this call: one that happened
        before does not release it.
        """
        if point not in POINTS:
            raise ConfigError("failpoint.point", f"{point!r} is not a failpoint", f"use one of {list(POINTS)}")
        if action not in ACTIONS:
            raise ConfigError("failpoint.action", f"{action!r} is not a failpoint action", f"use one of {list(ACTIONS)}")
        if action == "pause" and not event:
            raise ConfigError("failpoint.event", "a pause needs an event to wait for",
                              "give e.g. \"enactor-b.applied\"")
        if action == "delay" and not 0 < seconds <= 3600:
            raise ConfigError("failpoint.seconds", f"{seconds!r} is not a delay", "use 0.001 to 3600 seconds")
        if action in ("fail", "crash") and not 1 <= count <= 1_000_000:
            raise ConfigError("failpoint.count", f"{count!r} is not a count", "use 1 or more")
        if action == "random" and not 0 < probability <= 1:
            raise ConfigError("failpoint.probability", f"{probability!r} is not a probability", "use (0, 1]")
        armed = Armed(point, action, frozenset(actors), event, float(seconds), int(count), float(probability))
        with self._cond:
            if action == "pause":
                armed.after = self._events[event]
            self._armed.setdefault(point, []).append(armed)
        return armed

    def disarm(self, point: str | None = None) -> None:
        """Disarm one point, or all; paused actors are released."""
        with self._cond:
            if point is None:
                self._armed.clear()
            else:
                self._armed.pop(point, None)
            self._cond.notify_all()

    def signal(self, event: str) -> None:
        """One more occurrence of ``event``."""
        with self._cond:
            self._events[event] += 1
            self._cond.notify_all()

    def happened(self, event: str) -> bool:
        """Whether ``event`` happened since the last :meth:`reset`."""
        return self.occurrences(event) > 0

    def occurrences(self, event: str) -> int:
        """How many times ``event`` happened since the last :meth:`reset`."""
        with self._cond:
            return self._events[event]

    def reseed(self, seed: int) -> None:
        """Seed the ``random`` action: every (actor, point) starts its sequence again."""
        with self._cond:
            self.seed = seed
            self._rngs.clear()

    def reset(self) -> None:
        """Disarm everything, forget every event and restart the ``random`` sequences."""
        with self._cond:
            self._armed.clear()
            self._events.clear()
            self._rngs.clear()
            self._cond.notify_all()

    def halt(self) -> None:
        """Release every paused actor, and let no failpoint hold one (hits return at once),
        until the matching :meth:`resume`: the control plane is stopping its threads. Armed
        points stay armed. Halts nest: only the last resume lets failpoints act again."""
        with self._cond:
            self._halts += 1
            self._halt_epoch += 1
            self._cond.notify_all()

    def resume(self) -> None:
        with self._cond:
            self._halts = max(0, self._halts - 1)

    @property
    def halted(self) -> bool:
        with self._cond:
            return self._halts > 0

    def waiting(self) -> dict[str, str]:
        """Actors paused right now: {actor: "point until event"}."""
        with self._cond:
            return dict(self._waiting)

    def wait_until_paused(self, actor: str, timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: actor in self._waiting, timeout)

    def wait_for_event(self, event: str, timeout: float, after: int = 0) -> bool:
        """Wait until ``event`` has happened more than ``after`` times since the last reset
        (by default: at all); False when ``timeout`` passed first."""
        with self._cond:
            return self._cond.wait_for(lambda: self._events[event] > after, timeout)

    def describe(self) -> list[dict[str, Any]]:
        with self._cond:
            return [a.describe() for armed in self._armed.values() for a in armed]

    def hit(self, point: str, actor: str) -> str:
        """Called by the control plane at ``point``; returns "fail" or "" (carry on).

        Raises:
            TimeoutError: a pause lasted ``pause_timeout`` seconds without its event.
            FailpointCrash: an armed ``crash`` fired.
        """
        with self._cond:
            if self._halts:
                return ""
            armed = [a for a in self._armed.get(point, []) if a.matches(actor)]
            for a in armed:
                a.hits += 1
        result = ""
        for a in armed:
            if a.action == "pause":
                self._pause(a, actor)
            elif a.action == "delay":
                with self._cond:
                    a.fired += 1
                self.clock.sleep(a.seconds)
            elif a.action == "fail":
                with self._cond:
                    if a.fired < a.count:
                        a.fired += 1
                        result = "fail"
            elif a.action == "random":
                with self._cond:
                    if self._rng(actor, point).random() < a.probability:
                        a.fired += 1
                        result = "fail"
            elif a.action == "crash":
                with self._cond:
                    crash = a.fired < a.count
                    a.fired += crash
                if crash:
                    raise FailpointCrash(f"failpoint {point}: {actor} crashed (armed crash)")
        return result

    def _rng(self, actor: str, point: str) -> random.Random:
        """The generator of one actor at one point (the caller holds the lock)."""
        rng = self._rngs.get((actor, point))
        if rng is None:
            # A string seed hashes the same in every process (unlike hash() of a tuple).
            rng = self._rngs[(actor, point)] = random.Random(f"{self.seed}/{actor}/{point}")
        return rng

    def _pause(self, armed: Armed, actor: str) -> None:
        with self._cond:
            epoch = self._halt_epoch

            def released() -> bool:
                return (self._events[armed.event] > armed.after or self._halts > 0 or self._halt_epoch != epoch
                        or not any(a is armed for a in self._armed.get(armed.point, [])))

            if released():
                return
            armed.fired += 1
            self._waiting[actor] = f"{armed.point} until {armed.event}"
            self._cond.notify_all()
            done = self._cond.wait_for(released, self.pause_timeout)
            self._waiting.pop(actor, None)
            self._cond.notify_all()
        if not done:
            raise TimeoutError(f"{actor} paused at {armed.point} for {self.pause_timeout} s and "
                               f"{armed.event!r} did not happen meanwhile; signal it, disarm the "
                               "failpoint, or pause until an event that happens")
