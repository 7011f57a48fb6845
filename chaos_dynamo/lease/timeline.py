"""A lease table over time: samples and markers, kept as JSON lines.

Every line of a timeline file is one JSON object, either a sample::

    {"t": 1763600000.5, "total": 100, "live": 97, "expired": 3, "version_sum": 5123,
     "attempts": 2210, "double_owned": 0}

or a marker of the experiment's phases::

    {"t": 1763600012.0, "event": "trigger_start"}
    {"t": 1763600030.0, "event": "trigger_end"}

The lease watcher (:mod:`chaos_dynamo.lease.watch`) writes them on the lab; the in-memory
model (:mod:`chaos_dynamo.lease.sim`) produces the same samples, so the same checkers
(:mod:`chaos_dynamo.lease.measure`) judge both.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

TRIGGER_START = "trigger_start"
TRIGGER_END = "trigger_end"
EVENTS = (TRIGGER_START, TRIGGER_END)


@dataclass(frozen=True, slots=True)
class Sample:
    """One reading of a lease table.

    Attributes:
        t: when it was read (epoch seconds, the end of the scan).
        total: leases in the table.
        live: leases whose expiry is after ``t``.
        expired: leases whose expiry is at or before ``t`` (``total - live``).
        version_sum: the sum of every lease's version; it grows by one per successful
            renewal or acquisition, so its rate is the fleet's goodput.
        attempts: requests the lease-holding service had sent to DynamoDB so far
            (cumulative, from the lab's LB log), or None when unknown.
        double_owned: leases seen so far taken over by a new owner while the previous
            owner's expiry had not passed (cumulative).
    """

    t: float
    total: int
    live: int
    expired: int
    version_sum: int
    attempts: int | None = None
    double_owned: int = 0

    @property
    def live_fraction(self) -> float:
        """``live / total`` of this sample alone; 1.0 for an empty table. The probes judge
        against the most leases seen so far instead (:func:`chaos_dynamo.lease.measure.judge`),
        so deleted leases count as not live."""
        return self.live / self.total if self.total else 1.0


@dataclass(frozen=True, slots=True)
class Marker:
    """A phase boundary of an experiment (``trigger_start`` or ``trigger_end``)."""

    t: float
    event: str


@dataclass(frozen=True)
class Timeline:
    samples: tuple[Sample, ...]
    markers: tuple[Marker, ...] = ()

    def last_marker(self, event: str) -> float | None:
        """The time of the latest marker named ``event``, or None."""
        times = [m.t for m in self.markers if m.event == event]
        return max(times) if times else None


def to_json(entry: Sample | Marker) -> str:
    return json.dumps(asdict(entry), separators=(",", ":"))


def from_json(line: str) -> Sample | Marker | None:
    """One line back; None for a blank or torn (half-written) line."""
    try:
        data: Any = json.loads(line)
    except ValueError:
        return None
    if not isinstance(data, dict) or "t" not in data:
        return None
    if "event" in data:
        return Marker(float(data["t"]), str(data["event"]))
    try:
        return Sample(**data)
    except TypeError:
        return None


def parse(lines: Iterable[str]) -> Timeline:
    samples: list[Sample] = []
    markers: list[Marker] = []
    for line in lines:
        entry = from_json(line)
        if isinstance(entry, Sample):
            samples.append(entry)
        elif isinstance(entry, Marker):
            markers.append(entry)
    return Timeline(tuple(samples), tuple(markers))


def read(path: str | Path) -> Timeline:
    """The timeline in ``path``; an empty one when the file does not exist."""
    try:
        with open(path, encoding="utf-8") as handle:
            return parse(handle)
    except FileNotFoundError:
        return Timeline(())


def append(path: str | Path, entries: Iterable[Sample | Marker]) -> None:
    """Append entries, one line each, flushed (readers in other processes see whole lines)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as handle:
        for entry in entries:
            handle.write(to_json(entry) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def iter_samples(timeline: Timeline, start: float = float("-inf"),
                 end: float = float("inf")) -> Iterator[Sample]:
    """Samples with ``start <= t <= end``."""
    return (s for s in timeline.samples if start <= s.t <= end)
