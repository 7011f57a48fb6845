"""The lab's side of a run, saved next to its journal: the sidecar ``<journal>.lab.json``.

A journal holds what the experiment's activities returned; the lab saw more (every DNS query,
every LB request, every change of the active plan). :func:`write_lab_timeline` reads that
through the lab's control API for one run's span, right after the run and before the lab
stops, and writes a bounded JSON file the report draws its timelines from. A route the lab
lacks (an older lab, a lab without a control plane) is skipped and named in ``"missing"``.

Format (``"version": 1``; times are wall-clock seconds, as in the lab's logs)::

    {
      "version": 1,
      "since": 1700000000.0, "until": 1700000030.0,
      "lab": {"api_url": "http://127.0.0.1:4566", "region": "us-east-1",
              "endpoints": ["dynamodb.us-east-1.amazonaws.com", ...], "load_balancers": ["lb-1", ...]},
      "services": {"127.0.0.100": "leases"},      # source address -> service (the registry)
      "endpoints": {
        "dynamodb.us-east-1.amazonaws.com": {
          "addresses": [{"time": T, "addresses": 1}, ...],   # what the name resolves to: the
              # lab's availability timeline (A plus AAAA, every weighted member); the first
              # entry is the state in effect at "since", then one per change
          "queries": [{"time": T, "last": T2, "qtype": "A", "rcode": "NOERROR", "answers": 1,
                       "queries": 12}, ...],         # what queries got: one entry per change of
              # (qtype, rcode, answers) in the DNS log, with how many queries got it
          "generations": [{"time": T, "generation": 10, "actor": "enactor-b",
                           "backwards": false}, ...]  # the active plan (control plane); the
              # first entry is the generation in effect at "since"; absent: never changed
        }
      },
      "rates": {                                     # counts per bucket, dense, from "since"
        "bucket_seconds": 1.0, "buckets": 30,
        "dns_queries": {"leases": [0, 4, ...], "127.0.0.1": [...]},   # per service or address
        "lb_requests": {"leases": [...]},            # per service (attribution rules) or address
        "lb_operations": {"GetItem": [...]},         # per DynamoDB operation
        "lb_errors": {"503": [...], "dropped": [...]},   # answers >= 400, or none (LB down)
        "route53_changes": {"change batches": [...]}     # accepted change batches
      },
      "health": {"unhealthy_at_since": ["hc-1"],     # Route 53 health checks (lab checkers)
                 "transitions": [{"time": T, "id": "hc-1", "healthy": false, "reason": "..."}]},
      "dropped": {"endpoints.<name>.queries": 12},   # entries left out to bound the size
      "missing": ["control/generations"]             # routes the lab could not answer
    }

Size is bounded: buckets are one second unless the span is longer than :data:`MAX_BUCKETS`
seconds (then wider), each rate family keeps its :data:`MAX_SERIES` busiest series and folds
the rest into ``"other"``, and every list of change points keeps at most :data:`MAX_POINTS`
entries (the first and last halves).
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chaos_dynamo.errors import ChaosDynamoError, ConfigError
from chaos_dynamo.lab.state import LabInfo

__all__ = ["SIDECAR_VERSION", "LabLogs", "build_timeline", "sidecar_path", "write_lab_timeline",
           "write_text_atomically"]

SIDECAR_VERSION = 1
MAX_BUCKETS = 1800
MAX_SERIES = 12
MAX_POINTS = 2000
OTHER = "other"

JsonDict = dict[str, Any]


def sidecar_path(journal: Path) -> Path:
    """Where the sidecar of ``journal`` lives: ``run.json`` -> ``run.lab.json``."""
    return journal.with_suffix(".lab.json")


@dataclass
class LabLogs:
    """What the lab's routes answered (None: the route could not be read)."""

    dns: list[JsonDict] | None = None
    lb: list[JsonDict] | None = None
    availability: list[JsonDict] | None = None
    generations: list[JsonDict] | None = None
    changes: list[JsonDict] | None = None
    health: list[JsonDict] | None = None
    missing: list[str] = field(default_factory=list)


def write_lab_timeline(info: LabInfo, *, since: float, until: float, path: Path) -> Path:
    """Read the lab's logs for [``since``, ``until``] and write the sidecar to ``path``.

    Never raises for a route the lab lacks or cannot answer: that series is left out and
    the route named in ``"missing"``. The file is written atomically.

    Raises:
        ConfigError: ``until`` is before ``since``.
    """
    if not until >= since:
        raise ConfigError("until", f"{until!r} is before since={since!r}", "collect after the run, not before")
    logs = fetch_lab_logs(info.api_url, since)
    lab = {"api_url": info.api_url, "region": info.region, "endpoints": [ep.name for ep in info.endpoints],
           "load_balancers": [str(lb.get("name", "")) for lb in info.load_balancers]}
    timeline = build_timeline(logs, lab=lab, since=since, until=until, services=_registry_services(info))
    write_text_atomically(path, json.dumps(timeline, separators=(",", ":")))
    return path


def fetch_lab_logs(api_url: str, since: float) -> LabLogs:
    """Every log the sidecar is made of, from the lab at ``api_url``."""
    from chaos_dynamo.endpoint._lab import http_json

    logs = LabLogs()
    base = f"{api_url}/_chaos_dynamo"

    def get(route: str) -> list[JsonDict] | None:
        try:
            answer = http_json(f"{base}/{route}", timeout=30.0)
        except ChaosDynamoError:
            logs.missing.append(route.split("?")[0])
            return None
        return [e for e in answer if isinstance(e, dict)] if isinstance(answer, list) else None

    logs.dns = get(f"dns/log?since={since!r}")
    logs.lb = get(f"lb/log?since={since!r}")
    logs.availability = get("availability")  # all of it: the state at `since` is an older entry
    logs.generations = get("control/generations")
    logs.changes = get(f"route53/changes?since={since!r}")
    logs.health = get("route53/health/log")
    return logs


def _registry_services(info: LabInfo) -> dict[str, str]:
    """Source address -> service, from the service registry of this lab ({} when unknown)."""
    from chaos_dynamo.lab.state import read_state
    from chaos_dynamo.services import registry

    try:
        if read_state(None).api_url != info.api_url:
            return {}  # the state file names another lab: its services are not this run's
        return registry.addresses_by_service(registry.list_records(None))
    except (ChaosDynamoError, OSError, ValueError):
        return {}


def build_timeline(logs: LabLogs, *, lab: Mapping[str, Any], since: float, until: float,
                   services: Mapping[str, str]) -> JsonDict:
    """The sidecar (see the module's format) from the lab's raw logs; pure."""
    dropped: dict[str, int] = {}
    buckets = Buckets.over(since, until)
    by_address = dict(services)
    dns = _within(logs.dns, since, until)
    lb = _within(logs.lb, since, until)
    endpoints = {name: _endpoint(name, logs, dns, since, until, dropped) for name in lab.get("endpoints", [])}
    rates: JsonDict = {"bucket_seconds": buckets.width, "buckets": buckets.count}
    if logs.dns is not None:
        rates["dns_queries"] = buckets.series((by_address.get(str(q.get("client")), str(q.get("client"))),
                                               q["time"]) for q in dns)
    if logs.lb is not None:
        rates["lb_requests"] = buckets.series((_lb_owner(r, by_address), r["time"]) for r in lb)
        rates["lb_operations"] = buckets.series((str(r.get("operation") or "unknown"), r["time"]) for r in lb)
        rates["lb_errors"] = buckets.series((_error_label(r), r["time"]) for r in lb if _is_error(r))
    if logs.changes is not None:
        rates["route53_changes"] = buckets.series(("change batches", c["time"])
                                                  for c in _within(logs.changes, since, until))
    out: JsonDict = {"version": SIDECAR_VERSION, "since": since, "until": until, "lab": dict(lab),
                     "services": by_address, "endpoints": endpoints, "rates": rates}
    if logs.health is not None:
        out["health"] = _health(logs.health, since, until, dropped)
    out["dropped"] = dropped
    out["missing"] = sorted(set(logs.missing))
    return out


@dataclass(frozen=True)
class Buckets:
    """Fixed-width time buckets from ``start``: one second, wider for long spans."""

    start: float
    width: float
    count: int

    @classmethod
    def over(cls, since: float, until: float) -> Buckets:
        span = max(until - since, 0.0)
        width = float(max(1, math.ceil(span / MAX_BUCKETS)))
        return cls(since, width, max(1, math.ceil(span / width)))

    def index(self, t: float) -> int:
        return min(self.count - 1, max(0, int((t - self.start) // self.width)))

    def series(self, events: Iterable[tuple[str, float]]) -> dict[str, list[int]]:
        """Counts per bucket for each key; the busiest :data:`MAX_SERIES` kept, the rest
        folded into ``"other"``."""
        counts: dict[str, list[int]] = defaultdict(lambda: [0] * self.count)
        for key, t in events:
            counts[key][self.index(float(t))] += 1
        ranked = sorted(counts, key=lambda k: (-sum(counts[k]), k))
        kept = {k: counts[k] for k in ranked[:MAX_SERIES]}
        rest = ranked[MAX_SERIES:]
        if rest:
            kept[OTHER] = [sum(counts[k][i] for k in rest) for i in range(self.count)]
        return kept


def _within(entries: list[JsonDict] | None, since: float, until: float) -> list[JsonDict]:
    """Entries with a numeric ``time`` in [since, until], oldest first."""
    chosen = []
    for entry in entries or []:
        t = _time(entry)
        if t is not None and since <= t <= until:
            chosen.append(entry)
    return sorted(chosen, key=lambda e: float(e["time"]))


def _time(entry: Mapping[str, Any]) -> float | None:
    value = entry.get("time")
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _same_name(a: object, b: str) -> bool:
    return str(a).lower().rstrip(".") == b.lower().rstrip(".")


def _endpoint(name: str, logs: LabLogs, dns: list[JsonDict], since: float, until: float,
              dropped: dict[str, int]) -> JsonDict:
    out: JsonDict = {}
    if logs.availability is not None:
        mine = [e for e in logs.availability if _same_name(e.get("endpoint"), name) and _time(e) is not None]
        out["addresses"] = _bounded(_state_points(mine, "addresses", since, until), f"endpoints.{name}.addresses",
                                    dropped)
    if logs.dns is not None:
        out["queries"] = _bounded(_query_points(q for q in dns if _same_name(q.get("name"), name)),
                                  f"endpoints.{name}.queries", dropped)
    if logs.generations is not None:
        mine = [c for c in logs.generations if _same_name(c.get("endpoint"), name) and _time(c) is not None]
        points = _generation_points(mine, since, until)
        if points:
            out["generations"] = _bounded(points, f"endpoints.{name}.generations", dropped)
    return out


def _state_points(entries: list[JsonDict], key: str, since: float, until: float) -> list[JsonDict]:
    """The state in effect at ``since`` (the last entry at or before it), then each change."""
    entries = sorted(entries, key=lambda e: float(e["time"]))
    before = [e for e in entries if float(e["time"]) <= since]
    points = [{"time": since, key: before[-1].get(key)}] if before else []
    points += [{"time": float(e["time"]), key: e.get(key)} for e in entries if since < float(e["time"]) <= until]
    return points


def _query_points(queries: Iterable[JsonDict]) -> list[JsonDict]:
    """One point per change of (qtype, rcode, answers), per qtype, with its query count."""
    points: list[JsonDict] = []
    current: dict[str, JsonDict] = {}
    for q in queries:
        qtype = str(q.get("qtype", "?"))
        state = (str(q.get("rcode", "?")), int(q.get("answers") or 0))
        point = current.get(qtype)
        if point is not None and (point["rcode"], point["answers"]) == state:
            point["queries"] += 1
            point["last"] = float(q["time"])
            continue
        point = {"time": float(q["time"]), "last": float(q["time"]), "qtype": qtype, "rcode": state[0],
                 "answers": state[1], "queries": 1}
        current[qtype] = point
        points.append(point)
    return points


def _generation_points(changes: list[JsonDict], since: float, until: float) -> list[JsonDict]:
    """The active generation at ``since``, then each change in the span ([] when unknown)."""
    changes = sorted(changes, key=lambda c: float(c["time"]))
    before = [c for c in changes if float(c["time"]) <= since]
    inside = [c for c in changes if since < float(c["time"]) <= until]
    start = before[-1].get("to") if before else (inside[0].get("from") if inside else None)
    points = [{"time": since, "generation": start, "actor": "", "backwards": False}] if start is not None else []
    points += [{"time": float(c["time"]), "generation": c.get("to"), "actor": str(c.get("actor", "")),
                "backwards": bool(c.get("backwards"))} for c in inside]
    return points


def _lb_owner(record: Mapping[str, Any], by_address: Mapping[str, str]) -> str:
    """The service an LB request belongs to (the attribution rules), else its address."""
    from chaos_dynamo.services.attribution import app_id

    client = str(record.get("client", ""))
    return (str(record.get("service") or "") or app_id(str(record.get("user_agent") or ""))
            or by_address.get(client) or client)


def _is_error(record: Mapping[str, Any]) -> bool:
    status = record.get("status")
    return not isinstance(status, int) or status == 0 or status >= 400


def _error_label(record: Mapping[str, Any]) -> str:
    status = record.get("status")
    return "dropped" if not isinstance(status, int) or status == 0 else str(status)


def _health(log: list[JsonDict], since: float, until: float, dropped: dict[str, int]) -> JsonDict:
    """Health checks unhealthy at ``since`` (a check is healthy until a transition says
    otherwise) and the transitions in the span."""
    healthy: dict[str, bool] = {}
    for t in sorted((e for e in log if _time(e) is not None), key=lambda e: float(e["time"])):
        if float(t["time"]) <= since:
            healthy[str(t.get("id"))] = bool(t.get("healthy"))
    transitions = [{"time": float(t["time"]), "id": str(t.get("id")), "healthy": bool(t.get("healthy")),
                    "reason": str(t.get("reason") or "")[:200]} for t in _within(log, since, until)]
    return {"unhealthy_at_since": sorted(k for k, ok in healthy.items() if not ok),
            "transitions": _bounded(transitions, "health.transitions", dropped)}


def _bounded(points: list[JsonDict], key: str, dropped: dict[str, int]) -> list[JsonDict]:
    """At most :data:`MAX_POINTS` entries: the first and last halves, the count left out noted."""
    if len(points) <= MAX_POINTS:
        return points
    dropped[key] = len(points) - MAX_POINTS
    return points[:MAX_POINTS // 2] + points[-(MAX_POINTS // 2):]


def write_text_atomically(path: Path, text: str) -> None:
    """Write ``text`` to ``path``: a reader sees the old file or the whole new one, never part."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
        os.chmod(temporary, 0o644)  # mkstemp makes it private; a report is meant to be shared
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
