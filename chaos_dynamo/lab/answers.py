"""The answer timeline: what each name of the lab's zones resolves to, over time.

An entry is written for a name only when the set of addresses its answers can hold, or the
failover roles chosen on the way, change, stamped with the lab clock at the moment the DNS
starts answering so. Probes of flapping and failover read it (``GET
/_chaos_dynamo/route53/answers``).

::

    {"time": 1700000000.5, "name": "app.us-east-1.amazonaws.com",
     "addresses": ["127.0.0.11", "127.0.0.12"], "roles": ["PRIMARY"], "cause": "health"}

``cause`` says what made the DNS change: ``start`` (the state the lab starts in),
``change`` (a Route 53 change batch, or a zone appearing or going) or ``health`` (a health
check changing status). Pure and thread-safe: the caller supplies times and answers.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["CAUSES", "AnswerTimeline", "Answer", "timeline_name"]

CAUSES = ("start", "change", "health")

Answer = tuple[Iterable[str], Iterable[str]]
"""(addresses, failover roles) of one name."""
_State = tuple[tuple[str, ...], tuple[str, ...]]
_EMPTY: _State = ((), ())


def timeline_name(name: str) -> str:
    """A name as the timeline keys it: lower case, no trailing dot."""
    return name.strip().lower().rstrip(".")


class AnswerTimeline:
    """Per-name answer history, one entry per change, at most ``limit`` entries kept.

    When the limit is reached the oldest entries are forgotten; what a name answers *now*
    is still known, so a change is still told from no change.

    Only names answering something now are remembered: a name with no answer (never seen,
    or gone and its empty entry written) is empty, so a long-running lab whose planner keeps
    creating and deleting names holds, and scans on each :meth:`record`, only the names
    that answer now.
    """

    def __init__(self, limit: int = 100_000) -> None:
        if limit < 1:
            raise ValueError(f"limit {limit!r} must be at least 1")
        self._lock = threading.Lock()
        self._entries: deque[dict[str, Any]] = deque(maxlen=limit)
        self._last: dict[str, _State] = {}  # name -> its non-empty answer now

    def record(self, time: float, answers: Mapping[str, Answer], cause: str) -> list[dict[str, Any]]:
        """Note what every name answers at ``time``; return the entries appended.

        ``answers`` lists every name the DNS serves now: a name the timeline has seen
        answering that is missing from it gets an entry with no addresses and no roles
        (its records went away), once; a name missing from it, or answering nothing, is
        empty, so a name first seen answering nothing gets no entry. Names are taken
        case-insensitively, trailing dot optional. The cost is proportional to the names
        in ``answers`` and those that answered something before this call.
        """
        if cause not in CAUSES:
            raise ValueError(f"cause {cause!r} is not one of {CAUSES}")
        now = {timeline_name(name): (tuple(sorted(set(addresses))), tuple(sorted(set(roles))))
               for name, (addresses, roles) in answers.items()}
        with self._lock:
            added = []
            for name in sorted(now.keys() | self._last.keys()):
                state = now.get(name, _EMPTY)
                if self._last.get(name, _EMPTY) == state:
                    continue
                if state == _EMPTY:
                    del self._last[name]  # empty from now on: forgotten, as if never seen
                else:
                    self._last[name] = state
                added.append({"time": time, "name": name, "addresses": list(state[0]),
                              "roles": list(state[1]), "cause": cause})
            self._entries.extend(added)
        return _copies(added)

    def entries(self, name: str | None = None, since: float | None = None) -> list[dict[str, Any]]:
        """Copies of the entries, oldest first: all names or one.

        With ``since``: for each name, the entry in effect at ``since`` (its last entry
        before it) comes first, then every entry with ``time >= since``. A name the
        timeline never saw gives ``[]``.
        """
        wanted = None if name is None else timeline_name(name)
        with self._lock:
            chosen = [e for e in self._entries if wanted is None or e["name"] == wanted]
        if since is None:
            return _copies(chosen)
        in_effect: dict[str, dict[str, Any]] = {}
        later: list[dict[str, Any]] = []
        for entry in chosen:
            if entry["time"] < since:
                in_effect[entry["name"]] = entry
            else:
                later.append(entry)
        first = sorted(in_effect.values(), key=lambda e: float(e["time"]))
        return _copies(first + later)

    def names(self) -> list[str]:
        """Every name answering something now, sorted (a name gone, or answering nothing,
        is not listed)."""
        with self._lock:
            return sorted(self._last)


def _copies(entries: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{**entry, "addresses": list(entry["addresses"]), "roles": list(entry["roles"])} for entry in entries]
