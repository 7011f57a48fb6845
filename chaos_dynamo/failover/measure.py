"""Failover checkers: pure functions over a name's DNS answer history (no I/O, no clock).

:mod:`chaos_dynamo.failover.probes` reads the history from the lab, chooses the span and
turns these results into probe outputs. The meaning, unit and a sensible tolerance of every
number are in ``docs/probes/failover.md``; this module is the definition.

History
    An :class:`AnswerEntry` says that from ``time`` on the lab DNS answered the name with
    ``addresses``, choosing failover records of ``roles`` on the way. Entries are taken in
    time order; entries at the same time keep their order, and the last of them is the one
    in effect (the states before it were never answered for any length of time).

Span
    A probe judges ``[start, end]``. The state at ``start`` is the last entry at or before it
    (entries before the span only say what was in effect when it began). When the name's
    first entry is after ``start``, the lab knew nothing of the name before it, and the
    judged span begins at that first entry. An empty history (nothing at or before ``end``)
    is a ConfigError naming ``name``: there is nothing to judge.

Members and fleet
    The members at ``t`` are the addresses of the last entry at or before ``t``. The fleet is
    the probe's ``fleet_size`` when above 0, else the most addresses the name had at any time
    in the span. The capacity fraction at ``t`` is ``members / fleet``; with a fleet of 0 (the
    name answered no address in the whole span and no ``fleet_size``) it is 0.0. A
    ``fleet_size`` below the addresses seen gives fractions above 1 (not capped).

Flaps
    A member *flaps* when it leaves the answer set and re-enters it: one flap per cycle,
    counted at the re-entry. Only a member the span saw in the answer set (from the state at
    its start on) can re-enter: a new target's first appearance is not a flap, nor is a
    removal without return. The flaps of a window are the re-entries at times in
    ``[t, t + window]``; the probe reports the most in any window (for a window at least as
    long as the span: every re-entry in it).

Capacity removed
    Each change of state removes the members of the previous state missing from the new one.
    The removed fraction of a window is the members removed at times in ``[t, t + window]``,
    over the fleet; a member removed, returned and removed again counts twice.

Degraded
    Time in the span during which the capacity fraction is below a threshold (1.0: anything
    short of the full fleet).

Roles and oscillation
    An entry's role is PRIMARY when its roles hold PRIMARY, else SECONDARY when they hold
    SECONDARY, else none; entries with no role are ignored. A *switch* is a change of role;
    an *oscillation* is a switch back to a role the name left at most ``window`` seconds
    before (PRIMARY -> SECONDARY -> PRIMARY is one; P -> S -> P -> S two).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from chaos_dynamo.errors import ConfigError

PRIMARY = "PRIMARY"
SECONDARY = "SECONDARY"


@dataclass(frozen=True, slots=True)
class AnswerEntry:
    """From ``time`` on (lab clock, epoch seconds) the name answered ``addresses``.

    ``roles``: the failover roles of the records chosen on the way (empty without failover
    records); ``cause``: why the answer changed (``start``, ``change`` or ``health``).
    """

    time: float
    addresses: frozenset[str]
    roles: frozenset[str] = frozenset()
    cause: str = "change"

    @property
    def role(self) -> str | None:
        """PRIMARY if in ``roles``, else SECONDARY if in ``roles``, else None."""
        if PRIMARY in self.roles:
            return PRIMARY
        if SECONDARY in self.roles:
            return SECONDARY
        return None


@dataclass(frozen=True, slots=True)
class Span:
    """``[start, end]`` in epoch seconds."""

    start: float
    end: float

    def __post_init__(self) -> None:
        if not (math.isfinite(self.start) and math.isfinite(self.end)) or self.end < self.start:
            raise ValueError(f"a span runs forward between finite times, not from {self.start!r} "
                             f"to {self.end!r}")

    @property
    def seconds(self) -> float:
        return self.end - self.start


def ordered(entries: Iterable[AnswerEntry]) -> list[AnswerEntry]:
    """By time; entries at the same time keep their order."""
    return sorted(entries, key=lambda e: e.time)


def members_at(entries: Iterable[AnswerEntry], t: float) -> frozenset[str]:
    """The addresses of the last entry at or before ``t`` (none before the first entry)."""
    members: frozenset[str] = frozenset()
    for entry in ordered(entries):
        if entry.time > t:
            break
        members = entry.addresses
    return members


def fraction(members: int, fleet: int) -> float:
    """``members / fleet``; 0.0 for a fleet of 0."""
    return members / fleet if fleet > 0 else 0.0


def no_answers(name: str, end: float, known: Sequence[str] = ()) -> ConfigError:
    """The error for a name with no answer history up to ``end``."""
    hint = f" (it answers for {', '.join(known[:10])}{', ...' if len(known) > 10 else ''})" if known else ""
    return ConfigError("name", f"the lab has no DNS answers for {name!r} up to {end:.3f}{hint}",
                       "give a name the lab DNS serves (A, AAAA or CNAME records in one of its hosted "
                       "zones, e.g. app.us-east-1.amazonaws.com) and create its records before the "
                       "probe runs")


@dataclass(frozen=True)
class AnswerTimeline:
    """A name's states over the judged span (see the module docstring).

    ``states[0]`` is the state at ``span.start``; each later state starts at its ``time``
    (strictly increasing, each different from the one before) and lasts until the next, or
    ``span.end``. ``requested`` is the span asked for; ``span`` begins later when the name's
    history does.
    """

    name: str
    span: Span
    requested: Span
    states: tuple[AnswerEntry, ...]

    def fleet(self, fleet_size: int = 0) -> int:
        """``fleet_size`` when above 0, else the most addresses of any state in the span."""
        if fleet_size > 0:
            return fleet_size
        return max(len(s.addresses) for s in self.states)

    def transitions(self) -> list[tuple[AnswerEntry, AnswerEntry]]:
        """(previous, next) for every change of state inside the span."""
        return list(zip(self.states, self.states[1:], strict=False))

    def durations(self) -> list[tuple[AnswerEntry, float]]:
        """Each state with the seconds it lasted inside the span."""
        ends = [s.time for s in self.states[1:]] + [self.span.end]
        return [(s, end - s.time) for s, end in zip(self.states, ends, strict=True)]


def answer_timeline(name: str, entries: Iterable[AnswerEntry], span: Span) -> AnswerTimeline:
    """The states of ``name`` over ``span`` (see the module docstring).

    Raises:
        ConfigError: naming ``name`` when no entry is at or before ``span.end``.
    """
    upto = [e for e in ordered(entries) if e.time <= span.end]
    if not upto:
        raise no_answers(name, span.end)
    before = [e for e in upto if e.time <= span.start]
    if before:
        start = span.start
        rest = upto[len(before):]
        states = [replace(before[-1], time=start)]
    else:
        start = upto[0].time
        rest = upto[1:]
        states = [upto[0]]
    for entry in rest:
        if entry.time == states[-1].time:
            states[-1] = entry  # simultaneous: the last one is in effect
        else:
            states.append(entry)
    distinct = [states[0]]
    for state in states[1:]:
        last = distinct[-1]
        if state.addresses != last.addresses or state.roles != last.roles:
            distinct.append(state)
    return AnswerTimeline(name, Span(start, span.end), span, tuple(distinct))


# --- capacity ----------------------------------------------------------------------------


@dataclass(frozen=True)
class CapacityPoint:
    """From ``time`` on, ``addresses`` answered: ``fraction`` of the fleet, in ``role``."""

    time: float
    addresses: frozenset[str]
    fraction: float
    role: str | None

    def to_dict(self) -> dict[str, Any]:
        return {"time": self.time, "addresses": sorted(self.addresses), "fraction": self.fraction,
                "role": self.role}


def capacity_timeline(timeline: AnswerTimeline, fleet: int) -> list[CapacityPoint]:
    """One point per state in the span, the first at its start."""
    return [CapacityPoint(s.time, s.addresses, fraction(len(s.addresses), fleet), s.role)
            for s in timeline.states]


@dataclass(frozen=True)
class Peak:
    """The most of something in any window, and the earliest window start reaching it."""

    most: float
    at: float | None


def most_in_window(events: Iterable[tuple[float, float]], window: float) -> Peak:
    """The largest sum of weights of ``(time, weight)`` events at times in any ``[t, t + window]``
    (windows start at an event: no other start holds more); ``Peak(0, None)`` with no events."""
    timed = sorted(events, key=lambda e: e[0])
    best, at = 0.0, None
    total, j = 0.0, 0
    for i, (start, _) in enumerate(timed):
        while j < len(timed) and timed[j][0] - start <= window:
            total += timed[j][1]
            j += 1
        if total > best:
            best, at = total, start
        total -= timed[i][1]
    return Peak(best, at)


@dataclass(frozen=True)
class Reentry:
    time: float
    address: str


def reentries(timeline: AnswerTimeline) -> list[Reentry]:
    """Every re-entry of a member the span saw in the answer set before, by time."""
    seen = set(timeline.states[0].addresses)
    found: list[Reentry] = []
    for before, after in timeline.transitions():
        found.extend(Reentry(after.time, a) for a in sorted(after.addresses - before.addresses) if a in seen)
        seen |= after.addresses
    return found


@dataclass(frozen=True)
class Flaps:
    """``most`` re-entries in any ``window`` (the first such window starts at ``at``)."""

    most: int
    at: float | None
    total: int
    by_member: dict[str, int]
    window: float


def flaps(timeline: AnswerTimeline, window: float) -> Flaps:
    found = reentries(timeline)
    peak = most_in_window(((r.time, 1.0) for r in found), window)
    by_member = Counter(r.address for r in found)
    return Flaps(int(peak.most), peak.at, len(found), dict(sorted(by_member.items())), window)


@dataclass(frozen=True)
class Removals:
    """The most capacity removed in any ``window``: ``removals`` members, ``fraction`` of the
    fleet, in the window starting at ``at``; ``total`` members removed in the span."""

    fraction: float
    removals: int
    at: float | None
    total: int
    fleet: int
    window: float


def capacity_removed(timeline: AnswerTimeline, fleet: int, window: float = 60.0) -> Removals:
    events = [(after.time, float(len(before.addresses - after.addresses)))
              for before, after in timeline.transitions() if before.addresses - after.addresses]
    peak = most_in_window(events, window)
    most = int(peak.most)
    return Removals(fraction(most, fleet), most, peak.at, int(sum(w for _, w in events)), fleet, window)


@dataclass(frozen=True)
class MinCapacity:
    """The lowest capacity fraction in the span, first reached at ``at`` with ``members``."""

    fraction: float
    at: float
    members: frozenset[str]
    fleet: int


def min_capacity(timeline: AnswerTimeline, fleet: int) -> MinCapacity:
    lowest = min(timeline.states, key=lambda s: len(s.addresses))  # the first of the lowest
    return MinCapacity(fraction(len(lowest.addresses), fleet), lowest.time, lowest.addresses, fleet)


@dataclass(frozen=True)
class Degraded:
    """``seconds`` of the span with a capacity fraction below ``below``, in ``periods``."""

    seconds: float
    fraction_of_span: float
    span_seconds: float
    below: float
    fleet: int
    periods: tuple[tuple[float, float], ...]


def seconds_degraded(timeline: AnswerTimeline, fleet: int, below: float = 1.0) -> Degraded:
    periods: list[tuple[float, float]] = []
    for state, seconds in timeline.durations():
        if fraction(len(state.addresses), fleet) < below:
            start, end = state.time, state.time + seconds
            if periods and periods[-1][1] == start:
                periods[-1] = (periods[-1][0], end)
            else:
                periods.append((start, end))
    total = sum(end - start for start, end in periods)
    span_seconds = timeline.span.seconds
    return Degraded(total, total / span_seconds if span_seconds > 0 else 0.0, span_seconds, below, fleet,
                    tuple(periods))


# --- roles -------------------------------------------------------------------------------


@dataclass(frozen=True)
class RoleChange:
    time: float
    role: str


@dataclass(frozen=True)
class Roles:
    """Role ``changes`` (the first role, then every switch), ``switches`` and ``oscillations``."""

    switches: int
    oscillations: int
    changes: tuple[RoleChange, ...]
    window: float


def roles(timeline: AnswerTimeline, window: float = 300.0) -> Roles:
    current: str | None = None
    left: dict[str, float] = {}
    changes: list[RoleChange] = []
    switches = oscillations = 0
    for state in timeline.states:
        role = state.role
        if role is None or role == current:
            continue
        if current is not None:
            switches += 1
            left[current] = state.time
            if role in left and state.time - left[role] <= window:
                oscillations += 1
        changes.append(RoleChange(state.time, role))
        current = role
    return Roles(switches, oscillations, tuple(changes), window)


# --- change batches ----------------------------------------------------------------------


def changes_in_window(times: Iterable[float], span: Span, window: float) -> tuple[Peak, int]:
    """The most of ``times`` (accepted change batches) in any ``window`` inside ``span``, and
    how many are in the span."""
    inside = [t for t in times if span.start <= t <= span.end]
    return most_in_window(((t, 1.0) for t in inside), window), len(inside)
