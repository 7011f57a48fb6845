"""Failpoints: named places in the control plane where a run can pause, slow down or fail.

Like etcd's gofail or FoundationDB's BUGGIFY, they make a chosen interleaving happen on
every run instead of by luck. The control plane calls :meth:`Failpoints.hit` at each named
point; an armed point then, for the actors it names:

* ``pause``: blocks until an *event* has been signalled (``Failpoints.signal``), e.g.
  ``enactor-b.applied`` (Enactor B committed its plan on every endpoint);
* ``delay``: sleeps for ``seconds`` (through the injected sleep);
* ``fail``: returns "fail" the next ``count`` times (an Enactor then behaves as if it lost
  its lock);
* ``random``: returns "fail" with probability ``probability``, from a seeded generator.

Points used by the control plane: ``enactor.check`` (before the one-time freshness check),
``enactor.after_check``, ``enactor.commit`` (before each change batch; ``fail`` = lost lock),
``enactor.cleanup`` (before each cleanup deletion), ``planner.plan`` (before each plan write).
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from chaos_dynamo.clock import REAL_CLOCK, Clock
from chaos_dynamo.errors import ConfigError

POINTS = ("enactor.check", "enactor.after_check", "enactor.commit", "enactor.cleanup", "planner.plan")
ACTIONS = ("pause", "delay", "fail", "random")


@dataclass
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

    def matches(self, actor: str) -> bool:
        return not self.actors or actor in self.actors

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"point": self.point, "action": self.action, "actors": sorted(self.actors),
                               "hits": self.hits, "fired": self.fired}
        for key in ("event", "seconds", "count", "probability"):
            value = getattr(self, key)
            if value:
                out[key] = value
        return out


@dataclass
class Failpoints:
    """The registry the control plane consults; thread-safe."""

    seed: int = 0
    clock: Clock = REAL_CLOCK
    pause_timeout: float = 120.0
    _armed: dict[str, list[Armed]] = field(default_factory=dict)
    _events: set[str] = field(default_factory=set)
    _waiting: dict[str, str] = field(default_factory=dict)
    _cond: threading.Condition = field(default_factory=threading.Condition)
    _rng: random.Random = field(init=False)
    on_pause: Callable[[str, str, str], None] | None = None
    _halted: bool = False

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def arm(self, point: str, action: str, *, actors: list[str] | tuple[str, ...] = (), event: str = "",
            seconds: float = 0.0, count: int = 1, probability: float = 0.0) -> Armed:
        """Arm ``point``; validated here so a typo fails the experiment before it runs."""
        if point not in POINTS:
            raise ConfigError("failpoint.point", f"{point!r} is not a failpoint", f"use one of {list(POINTS)}")
        if action not in ACTIONS:
            raise ConfigError("failpoint.action", f"{action!r} is not a failpoint action", f"use one of {list(ACTIONS)}")
        if action == "pause" and not event:
            raise ConfigError("failpoint.event", "a pause needs an event to wait for",
                              "give e.g. \"enactor-b.applied\"")
        if action == "delay" and not 0 < seconds <= 3600:
            raise ConfigError("failpoint.seconds", f"{seconds!r} is not a delay", "use 0.001 to 3600 seconds")
        if action == "fail" and not 1 <= count <= 1_000_000:
            raise ConfigError("failpoint.count", f"{count!r} is not a count", "use 1 or more")
        if action == "random" and not 0 < probability <= 1:
            raise ConfigError("failpoint.probability", f"{probability!r} is not a probability", "use (0, 1]")
        armed = Armed(point, action, frozenset(actors), event, float(seconds), int(count), float(probability))
        with self._cond:
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
        with self._cond:
            self._events.add(event)
            self._cond.notify_all()

    def happened(self, event: str) -> bool:
        with self._cond:
            return event in self._events

    def reset(self) -> None:
        with self._cond:
            self._armed.clear()
            self._events.clear()
            self._cond.notify_all()

    def halt(self) -> None:
        """Release every paused actor, and let no pause hold one, until :meth:`resume`: the
        control plane is stopping its threads (armed points stay armed)."""
        with self._cond:
            self._halted = True
            self._cond.notify_all()

    def resume(self) -> None:
        with self._cond:
            self._halted = False

    def waiting(self) -> dict[str, str]:
        """Actors paused right now: {actor: "point until event"}."""
        with self._cond:
            return dict(self._waiting)

    def wait_until_paused(self, actor: str, timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: actor in self._waiting, timeout)

    def wait_for_event(self, event: str, timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: event in self._events, timeout)

    def describe(self) -> list[dict[str, Any]]:
        with self._cond:
            return [a.describe() for armed in self._armed.values() for a in armed]

    def hit(self, point: str, actor: str) -> str:
        """Called by the control plane at ``point``; returns "fail" or "" (carry on)."""
        with self._cond:
            armed = [a for a in self._armed.get(point, []) if a.matches(actor)]
            for a in armed:
                a.hits += 1
        result = ""
        for a in armed:
            if a.action == "pause":
                self._pause(a, actor)
            elif a.action == "delay":
                a.fired += 1
                self.clock.sleep(a.seconds)
            elif a.action == "fail":
                with self._cond:
                    if a.fired < a.count:
                        a.fired += 1
                        result = "fail"
            elif a.action == "random":
                with self._cond:
                    if self._rng.random() < a.probability:
                        a.fired += 1
                        result = "fail"
        return result

    def _pause(self, armed: Armed, actor: str) -> None:
        with self._cond:
            if armed.event in self._events or self._halted:
                return
            armed.fired += 1
            self._waiting[actor] = f"{armed.point} until {armed.event}"
            self._cond.notify_all()
            if self.on_pause is not None:
                self.on_pause(actor, armed.point, armed.event)
            released = self._cond.wait_for(
                lambda: armed.event in self._events or armed not in self._armed.get(armed.point, [])
                or self._halted,
                self.pause_timeout)
            self._waiting.pop(actor, None)
            self._cond.notify_all()
        if not released:
            raise TimeoutError(f"{actor} paused at {armed.point} for {self.pause_timeout} s and "
                               f"{armed.event!r} never happened")
