"""The control plane's history, and the checkers that read it.

Every step an actor takes is one :class:`Entry`: the :class:`~chaos_dynamo.control.enactor.StepRecord`
the step function returned (``ok``, ``fail`` or ``info`` as in Jepsen: ``info`` means the
outcome is unknown, e.g. the request timed out), when it started and ended, and the error
Route 53 answered when a batch was refused. The operator's restore is recorded too, as
actor ``operator``.

Checkers are pure functions over entries, so the same code judges a run on the lab, a
replayed trace and a unit test's hand-made history.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from chaos_dynamo.control.enactor import StepRecord, trace_digest

PLANNER = "planner"
"""The actor name of the Planner (the Enactors are ``enactor-a``, ``enactor-b``...)."""
OPERATOR = "operator"
"""The actor name of operator actions (restore) in the history."""
CRASH = "crash"
"""The action of the ``info`` entry an actor leaves when an unexpected error ends its thread."""


@dataclass(frozen=True)
class Entry:
    """One completed step of one actor."""

    index: int
    start: float
    time: float
    record: StepRecord
    error: str = ""
    """Route 53's answer when it refused this step's batch (``InvalidChangeBatch: ...``)."""

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"index": self.index, "start": round(self.start, 6),
                               "time": round(self.time, 6), **self.record.as_dict()}
        if self.error:
            out["error"] = self.error
        return out


@dataclass(frozen=True)
class GenerationChange:
    """The active generation at one endpoint moved from ``before`` to ``after``."""

    time: float
    endpoint: str
    before: int | None
    after: int
    actor: str

    @property
    def backwards(self) -> bool:
        return self.before is not None and self.after < self.before

    def as_dict(self) -> dict[str, Any]:
        return {"time": round(self.time, 6), "endpoint": self.endpoint, "from": self.before,
                "to": self.after, "actor": self.actor, "backwards": self.backwards}


class History:
    """An append-only, thread-safe list of entries, cleared only by a reset."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: list[Entry] = []
        self._baseline: dict[str, int] = {}

    def append(self, record: StepRecord, start: float, end: float, error: str = "") -> Entry:
        with self._lock:
            entry = Entry(len(self._entries), start, end, record, error)
            self._entries.append(entry)
            return entry

    def clear(self, baseline: Mapping[str, int]) -> None:
        """Forget every entry; ``baseline`` is each endpoint's generation from now on."""
        with self._lock:
            self._entries = []
            self._baseline = dict(baseline)

    def entries(self, since: float | None = None) -> list[Entry]:
        with self._lock:
            found = list(self._entries)
        return found if since is None else [e for e in found if e.time >= since]

    @property
    def baseline(self) -> dict[str, int]:
        with self._lock:
            return dict(self._baseline)


def digest_of(entries: Sequence[Entry], mask: Mapping[str, str] | None = None) -> str:
    """The trace digest of every step but the operator's.

    Args:
        mask: text to replace in details before hashing, e.g. hosted zone ids (an emulator
            draws them at random) by a stable name, so one seed gives one digest on any lab.
    """
    records = []
    for e in entries:
        if e.record.actor == OPERATOR:
            continue
        detail = e.record.detail
        for text, replacement in (mask or {}).items():
            detail = detail.replace(text, replacement)
        records.append(replace(e.record, detail=detail))
    return trace_digest(records)


# --- checkers ------------------------------------------------------------------------------

def generation_changes(entries: Sequence[Entry], baseline: Mapping[str, int]) -> list[GenerationChange]:
    """Every change of an endpoint's active generation: successful commits and restores."""
    current: dict[str, int | None] = dict(baseline)
    changes: list[GenerationChange] = []
    for e in entries:
        r = e.record
        if r.outcome != "ok" or r.endpoint is None or r.generation is None or r.action not in ("commit", "restore"):
            continue
        before = current.get(r.endpoint)
        current[r.endpoint] = r.generation
        if before != r.generation:
            changes.append(GenerationChange(e.time, r.endpoint, before, r.generation, r.actor))
    return changes


def went_backwards(entries: Sequence[Entry], baseline: Mapping[str, int]) -> list[GenerationChange]:
    """Commits that made an endpoint's active generation *older*, since the last reset or
    operator restore (a restore is the operator putting the newest plan back: a new epoch)."""
    found: list[GenerationChange] = []
    for change in generation_changes(entries, baseline):
        if change.actor == OPERATOR:
            found = [c for c in found if c.endpoint != change.endpoint]
        elif change.backwards:
            found.append(change)
    return found


def highest_generations(entries: Sequence[Entry], baseline: Mapping[str, int]) -> dict[str, int]:
    """The highest generation active so far at each endpoint, since the last reset or operator
    restore (a restore starts a new epoch at the generation it restored), as
    :func:`chaos_dynamo.control.invariants.check_endpoints` wants it."""
    highest: dict[str, int] = dict(baseline)
    for change in generation_changes(entries, baseline):
        before = highest.get(change.endpoint, 0)
        highest[change.endpoint] = change.after if change.actor == OPERATOR else max(before, change.after)
    return highest


def current_generations(entries: Sequence[Entry], baseline: Mapping[str, int]) -> dict[str, int | None]:
    """Each endpoint's active generation as the history tells it."""
    current: dict[str, int | None] = dict(baseline)
    for change in generation_changes(entries, baseline):
        current[change.endpoint] = change.after
    return current


def summarize(entries: Sequence[Entry], baseline: Mapping[str, int]) -> list[str]:
    """One line per step that matters for the race: plans applied (and whether that went
    backwards), batches Route 53 refused, cleanups that deleted records, stuck Enactors."""
    lines: list[str] = []
    current: dict[str, int | None] = dict(baseline)
    for e in entries:
        r = e.record
        where = f" at {r.endpoint}" if r.endpoint else ""
        if r.action in ("commit", "restore") and r.outcome == "ok" and r.endpoint:
            before = current.get(r.endpoint)
            current[r.endpoint] = r.generation
            arrow = f"{before} -> {r.generation}"
            backwards = before is not None and r.generation is not None and r.generation < before
            lines.append(f"{r.actor} {r.action} plan {r.generation}{where}: active generation {arrow}"
                         + (" (WENT BACKWARDS)" if backwards else ""))
        elif r.action == "commit" and r.outcome != "ok":
            lines.append(f"{r.actor} commit plan {r.generation}{where} {r.outcome}: {e.error or r.detail}")
        elif r.action == "cleanup" and r.outcome == "ok" and r.detail.startswith("deleted ") \
                and not r.detail.startswith("deleted 0 "):
            lines.append(f"{r.actor} cleanup plan {r.generation}: {r.detail}")
        elif r.action == "plan" and r.outcome != "ok":
            lines.append(f"{r.actor} plan {r.generation} {r.outcome}: {r.detail}")
        elif r.action == "check" and r.outcome == "ok":
            lines.append(f"{r.actor} check: {r.detail}")
        elif r.action == CRASH:
            lines.append(f"{r.actor} {r.detail}")
    plans = [e.record.generation for e in entries if e.record.action == "plan" and e.record.outcome == "ok"]
    if plans:
        lines.insert(0, f"planner wrote plans {_ranges([g for g in plans if g is not None])}")
    return lines


def _ranges(numbers: list[int]) -> str:
    if not numbers:
        return ""
    parts: list[str] = []
    start = prev = numbers[0]
    for n in numbers[1:] + [-1]:
        if n == prev + 1:
            prev = n
            continue
        parts.append(str(start) if start == prev else f"{start}..{prev}")
        start = prev = n
    return ", ".join(parts)
