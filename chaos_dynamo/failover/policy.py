"""Which targets a failover controller keeps in DNS: the policy that flaps or stays calm.

A controller reads every target's health once per tick and decides which targets to take
out of the answer set and which to put back. In us-east-1, new targets failed their health
checks until their network state had propagated; a controller that believed every read
took them out and put them back again and again (flaps), and automatic AZ failover took
whole AZs out with them.

- :class:`NaiveController` believes each read: a target goes out on its first unhealthy
  read and back on its first healthy one. When at least ``az_threshold`` of an AZ's
  targets read unhealthy together it evacuates the AZ (every target of it goes out) and
  puts the AZ back once all of its targets read healthy. Nothing limits it: it can empty
  the pool.
- :class:`HardenedController` wants confirmation and limits the damage: a target goes out
  after ``down_after`` unhealthy reads in a row and back after ``up_after`` healthy reads
  in a row (hysteresis); at most ``max_removed_fraction`` of the pool is taken out within
  any ``velocity_window`` seconds (velocity control); never fewer than ``min_fraction`` of
  the pool stays in (a floor). A removal either limit forbids is held (a :class:`Hold`
  decision) and tried again on later ticks. It evacuates an AZ only when the whole
  evacuation fits within both limits, so in practice it removes targets one at a time.
  Putting targets back is never limited.

Controllers are pure: time comes in as ``now`` (seconds, any consistent clock), health as
a mapping of target -> healthy; nothing is random, so the same reads give the same
decisions. A target missing from a tick's mapping was not read (an API error): it keeps
its streaks and its place.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from chaos_dynamo.errors import ConfigError

__all__ = [
    "CONTROLLERS",
    "SETTINGS",
    "Add",
    "Controller",
    "Decision",
    "HardenedController",
    "Hold",
    "NaiveController",
    "Remove",
    "make_controller",
]

CONTROLLERS = ("naive", "hardened")
_EPS = 1e-9


@dataclass(frozen=True)
class Remove:
    """Take ``target`` out of the answer set."""

    target: str
    reason: str


@dataclass(frozen=True)
class Add:
    """Put ``target`` back into the answer set."""

    target: str
    reason: str


@dataclass(frozen=True)
class Hold:
    """A removal a limit forbids now (nothing to apply): reported once when the hold
    begins or its limit changes, then tried again every tick.

    Attributes:
        target: the target, or ``"AZ <az>"`` for a held AZ evacuation.
        limit: ``"velocity"`` or ``"floor"``.
    """

    target: str
    reason: str
    limit: str


Decision = Remove | Add | Hold


class Controller(Protocol):
    """A failover policy over a fixed pool of targets."""

    name: str

    def observe(self, now: float, health: Mapping[str, bool]) -> list[Decision]:
        """One tick: the reads of this tick -> what to change (already applied to
        :meth:`in_service`)."""

    def in_service(self) -> tuple[str, ...]:
        """The targets the controller keeps in the answer set, in pool order."""

    def resync(self, in_service: Collection[str]) -> None:
        """The answer set is really ``in_service`` (a change failed, or someone else
        changed it): believe that from now on."""

    def counters(self) -> dict[str, int]:
        """removals, adds, held_by_velocity, held_by_floor, az_evacuations."""

    def describe(self) -> dict[str, Any]:
        """Settings, state and counters, JSON-serialisable."""


# --- validation -----------------------------------------------------------------------------

def _check_int(field: str, value: object, low: int) -> int:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigError(field, f"must be a whole number >= {low}, got {value!r}",
                          f"set {field} to a whole number >= {low}")
    return value


def _check_fraction(field: str, value: object, *, allow_zero: bool, meaning: str = "") -> float:
    ok = (not isinstance(value, bool) and isinstance(value, int | float) and math.isfinite(value)
          and (0 <= value <= 1 if allow_zero else 0 < value <= 1))
    if not ok:
        bound = "0 to 1" if allow_zero else "more than 0 and at most 1"
        raise ConfigError(field, f"must be a fraction, {bound}, got {value!r}",
                          f"set {field} to a fraction {bound}{meaning}")
    return float(value)  # type: ignore[arg-type]


def _check_seconds(field: str, value: object) -> float:
    ok = (not isinstance(value, bool) and isinstance(value, int | float) and math.isfinite(value)
          and value > 0)
    if not ok:
        raise ConfigError(field, f"must be a number of seconds > 0, got {value!r}",
                          f"set {field} to a number of seconds > 0")
    return float(value)  # type: ignore[arg-type]


def _check_targets(targets: Mapping[str, str]) -> dict[str, str]:
    if not isinstance(targets, Mapping) or not targets:
        raise ConfigError("targets", f"{targets!r} holds no target",
                          "give at least one target and its AZ")
    out: dict[str, str] = {}
    for name, az in targets.items():
        if not isinstance(name, str) or not name or not isinstance(az, str) or not az:
            raise ConfigError("targets", f"{name!r}: {az!r} is not a target name and its AZ",
                              "give each target as a non-empty name mapped to a non-empty AZ")
        out[name] = az
    return out


# --- the shared pool ------------------------------------------------------------------------

class _Pool:
    """Targets, their AZs, which are in service, which AZs are evacuated, and counters."""

    name = ""

    def __init__(self, targets: Mapping[str, str], in_service: Iterable[str] | None,
                 az_threshold: float) -> None:
        self.az_of = _check_targets(targets)
        self.targets = tuple(self.az_of)
        self.az_threshold = _check_fraction("az_threshold", az_threshold, allow_zero=True,
                                            meaning=" (0 turns AZ failover off)")
        self.azs = tuple(dict.fromkeys(self.az_of.values()))
        self.members = {az: tuple(t for t in self.targets if self.az_of[t] == az) for az in self.azs}
        self._in = set(self.targets)
        if in_service is not None:
            self._in = set(self._known(in_service, "in_service"))
        self._evacuated: set[str] = set()
        self.removals = 0
        self.adds = 0
        self.held_by_velocity = 0
        self.held_by_floor = 0
        self.az_evacuations = 0

    def _known(self, names: Iterable[str], field: str) -> list[str]:
        names = list(names)
        unknown = sorted(set(names) - set(self.targets))
        if unknown:
            raise ConfigError(field, f"{unknown} are not targets of the pool",
                              f"use targets of the pool: {list(self.targets)}")
        return names

    def in_service(self) -> tuple[str, ...]:
        return tuple(t for t in self.targets if t in self._in)

    def resync(self, in_service: Collection[str]) -> None:
        # Names outside the pool (a record someone else added) are not the controller's.
        self._in = {t for t in in_service if t in self.az_of}

    def evacuated(self) -> tuple[str, ...]:
        return tuple(az for az in self.azs if az in self._evacuated)

    def _remove(self, out: list[Decision], target: str, reason: str) -> None:
        self._in.discard(target)
        self.removals += 1
        out.append(Remove(target, reason))

    def _add(self, out: list[Decision], target: str, reason: str) -> None:
        self._in.add(target)
        self.adds += 1
        out.append(Add(target, reason))

    def counters(self) -> dict[str, int]:
        return {"removals": self.removals, "adds": self.adds,
                "held_by_velocity": self.held_by_velocity, "held_by_floor": self.held_by_floor,
                "az_evacuations": self.az_evacuations}

    def describe(self) -> dict[str, Any]:
        return {"controller": self.name, "targets": list(self.targets),
                "azs": {az: list(m) for az, m in self.members.items()},
                "az_threshold": self.az_threshold, "in_service": list(self.in_service()),
                "evacuated_azs": list(self.evacuated()), **self.counters()}


def _names(targets: Iterable[str]) -> str:
    return ", ".join(targets)


class NaiveController(_Pool):
    """Believes every read; evacuates an AZ when ``az_threshold`` of it reads unhealthy.

    Args:
        targets: target -> AZ, in pool order (the order decisions come in).
        az_threshold: evacuate an AZ when at least this fraction of its targets read
            unhealthy on one tick (0 turns AZ failover off).
        in_service: the targets in the answer set at the start (default: all).
    """

    name = "naive"

    def __init__(self, targets: Mapping[str, str], az_threshold: float = 0.5,
                 in_service: Iterable[str] | None = None) -> None:
        super().__init__(targets, in_service, az_threshold)

    def observe(self, now: float, health: Mapping[str, bool]) -> list[Decision]:
        out: list[Decision] = []
        for az in self.azs:
            members = self.members[az]
            reads = {t: bool(health[t]) for t in members if t in health}
            if az in self._evacuated:
                if len(reads) == len(members) and all(reads.values()):
                    self._evacuated.discard(az)
                    for t in members:
                        if t not in self._in:
                            self._add(out, t, f"AZ {az} back: all {len(members)} of its targets "
                                              "read healthy")
                continue  # an evacuated AZ comes back as a whole
            bad = [t for t in members if reads.get(t) is False]
            if self.az_threshold and bad and len(bad) >= self.az_threshold * len(members) - _EPS:
                self._evacuated.add(az)
                self.az_evacuations += 1
                for t in members:
                    if t in self._in:
                        self._remove(out, t, f"AZ {az} evacuated: {len(bad)} of {len(members)} "
                                             f"targets read unhealthy ({_names(bad)})")
                continue
            for t, healthy in reads.items():
                if not healthy and t in self._in:
                    self._remove(out, t, "read unhealthy")
                elif healthy and t not in self._in:
                    self._add(out, t, "read healthy")
        return out


class HardenedController(_Pool):
    """Hysteresis, a velocity limit and a floor; AZ evacuation only within both limits.

    Args:
        targets: target -> AZ, in pool order.
        down_after: unhealthy reads in a row before a target is taken out.
        up_after: healthy reads in a row before a taken-out target is put back.
        max_removed_fraction: at most this fraction of the pool (rounded down to whole
            targets) is taken out within any ``velocity_window`` seconds; a pool smaller
            than ``1 / max_removed_fraction`` can then lose no target at all.
        velocity_window: seconds; a removal counts against the limit while it is at most
            this old (a window closed at both ends, as the probes measure it).
        min_fraction: never fewer than this fraction of the pool (rounded up) in service.
        az_threshold: an AZ is evacuated when at least this fraction of its targets are
            confirmed unhealthy (``down_after`` reads) and at least one of those is still
            in service, and only if taking every in-service target of the AZ out fits
            both limits; else it is held and its unhealthy targets go one at a time
            (0 turns AZ failover off).
        in_service: the targets in the answer set at the start (default: all).
    """

    name = "hardened"

    def __init__(self, targets: Mapping[str, str], down_after: int = 3, up_after: int = 5,
                 max_removed_fraction: float = 0.2, velocity_window: float = 60.0,
                 min_fraction: float = 0.6, az_threshold: float = 0.5,
                 in_service: Iterable[str] | None = None) -> None:
        super().__init__(targets, in_service, az_threshold)
        self.down_after = _check_int("down_after", down_after, 1)
        self.up_after = _check_int("up_after", up_after, 1)
        self.max_removed_fraction = _check_fraction("max_removed_fraction", max_removed_fraction,
                                                    allow_zero=False)
        self.velocity_window = _check_seconds("velocity_window", velocity_window)
        self.min_fraction = _check_fraction("min_fraction", min_fraction, allow_zero=True)
        size = len(self.targets)
        self.velocity_allowance = math.floor(self.max_removed_fraction * size + _EPS)
        """Targets that may be taken out within one velocity window."""
        self.floor = math.ceil(self.min_fraction * size - _EPS)
        """Targets that always stay in service."""
        self._down = dict.fromkeys(self.targets, 0)
        self._up = dict.fromkeys(self.targets, 0)
        self._removed_at: deque[float] = deque()
        self._holds: dict[str, str] = {}  # target or "AZ <az>" -> the limit holding it

    def held(self) -> dict[str, str]:
        """What is held now: target (or ``"AZ <az>"``) -> ``"velocity"`` or ``"floor"``."""
        return dict(self._holds)

    def removed_recently(self, now: float) -> int:
        """Removals that count against the velocity limit at ``now``."""
        self._prune(now)
        return len(self._removed_at)

    def _prune(self, now: float) -> None:
        while self._removed_at and now - self._removed_at[0] > self.velocity_window + _EPS:
            self._removed_at.popleft()

    def _limit(self, now: float, count: int) -> tuple[str, str] | None:
        """(limit, reason) forbidding ``count`` more removals now, or None."""
        left = len(self._in) - count
        if left < self.floor:
            return "floor", (f"held by floor: {len(self._in)} of {len(self.targets)} in service, "
                             f"at least {self.floor} must stay")
        recent = self.removed_recently(now)
        if recent + count > self.velocity_allowance:
            return "velocity", (f"held by velocity limit: {recent} of {len(self.targets)} removed "
                                f"in the last {self.velocity_window:g} s, at most "
                                f"{self.velocity_allowance}")
        return None

    def _hold(self, out: list[Decision], held: set[str], key: str, limit: tuple[str, str],
              what: str) -> None:
        held.add(key)
        kind, reason = limit
        if self._holds.get(key) == kind:
            return
        self._holds[key] = kind
        if kind == "velocity":
            self.held_by_velocity += 1
        else:
            self.held_by_floor += 1
        out.append(Hold(key, f"{what} {reason}", kind))

    def _take_out(self, out: list[Decision], now: float, target: str, reason: str) -> None:
        self._remove(out, target, reason)
        self._removed_at.append(now)

    def observe(self, now: float, health: Mapping[str, bool]) -> list[Decision]:
        for t in self.targets:
            if t not in health:
                continue
            if health[t]:
                self._up[t] += 1
                self._down[t] = 0
            else:
                self._down[t] += 1
                self._up[t] = 0
        out: list[Decision] = []
        held: set[str] = set()
        self._put_back(out)
        self._evacuate(out, now, held)
        candidates = [t for t in self.targets if t in self._in and self._down[t] >= self.down_after]
        candidates.sort(key=lambda t: -self._down[t])  # stable: pool order among equals
        for t in candidates:
            limit = self._limit(now, 1)
            if limit is None:
                self._take_out(out, now, t, f"read unhealthy {self._down[t]} times in a row")
            else:
                self._hold(out, held, t, limit, "removal")
        for key in set(self._holds) - held:
            del self._holds[key]
        return out

    def _put_back(self, out: list[Decision]) -> None:
        for az in self.azs:
            members = self.members[az]
            if az in self._evacuated:
                if all(self._up[t] >= self.up_after for t in members):
                    self._evacuated.discard(az)
                    for t in members:
                        if t not in self._in:
                            self._add(out, t, f"AZ {az} back: all {len(members)} of its targets "
                                              f"read healthy {self.up_after} times in a row")
                continue
            for t in members:
                if t not in self._in and self._up[t] >= self.up_after:
                    self._add(out, t, f"read healthy {self._up[t]} times in a row")

    def _evacuate(self, out: list[Decision], now: float, held: set[str]) -> None:
        if not self.az_threshold:
            return
        for az in self.azs:
            if az in self._evacuated:
                continue
            members = self.members[az]
            bad = [t for t in members if self._down[t] >= self.down_after]
            if not bad or len(bad) < self.az_threshold * len(members) - _EPS:
                continue
            if not any(t in self._in for t in bad):
                continue  # its unhealthy targets are out already: nothing to fail over
            victims = [t for t in members if t in self._in]
            limit = self._limit(now, len(victims))
            if limit is not None:
                self._hold(out, held, f"AZ {az}", limit,
                           f"evacuation of {len(victims)} target(s) ({_names(victims)})")
                continue
            self._evacuated.add(az)
            self.az_evacuations += 1
            for t in victims:
                self._take_out(out, now, t, f"AZ {az} evacuated: {len(bad)} of {len(members)} "
                                            f"targets unhealthy {self.down_after} times in a row "
                                            f"({_names(bad)})")

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "down_after": self.down_after, "up_after": self.up_after,
                "max_removed_fraction": self.max_removed_fraction,
                "velocity_window": self.velocity_window, "min_fraction": self.min_fraction,
                "velocity_allowance": self.velocity_allowance, "floor": self.floor,
                "held": self.held()}


SETTINGS = {
    "naive": ("az_threshold",),
    "hardened": ("down_after", "up_after", "max_removed_fraction", "velocity_window",
                 "min_fraction", "az_threshold"),
}
"""The settings each controller takes (besides its targets)."""


def make_controller(name: str, targets: Mapping[str, str], settings: Mapping[str, Any] | None = None,
                    *, in_service: Iterable[str] | None = None) -> Controller:
    """A controller by name (``"naive"`` or ``"hardened"``) over ``targets`` (target -> AZ)
    with ``settings`` (e.g. ``{"down_after": 3}``; missing ones take their defaults).

    Raises:
        ConfigError: ``controller`` for an unknown name, the setting's name for a setting
            the controller does not take or a bad value.
    """
    if name not in SETTINGS:
        raise ConfigError("controller", f"unknown controller {name!r}",
                          f"use one of: {', '.join(CONTROLLERS)}")
    settings = dict(settings or {})
    for key in settings:
        if key not in SETTINGS[name]:
            takers = [n for n, known in SETTINGS.items() if key in known]
            where = f"a setting of the {takers[0]} controller only" if takers else "not a setting"
            raise ConfigError(key, f"is {where}",
                              f"the {name} controller takes: {', '.join(SETTINGS[name])}")
    if name == "naive":
        return NaiveController(targets, in_service=in_service, **settings)
    return HardenedController(targets, in_service=in_service, **settings)
