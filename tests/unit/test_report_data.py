"""Synthetic journals and lab sidecars shared by the report's unit tests (no tests of its own)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

T0 = 1_700_000_000.0
EP = "dynamodb.us-east-1.amazonaws.com"
RANGE = {"type": "range", "range": [1, 1000]}


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat()


def probe(name: str, output: Any, met: bool, tolerance: Any = None) -> dict[str, Any]:
    return {"activity": {"name": name, "type": "probe", "tolerance": RANGE if tolerance is None else tolerance},
            "output": output, "status": "succeeded", "tolerance_met": met, "start": iso(T0), "end": iso(T0)}


def activity(name: str, start: float, end: float, kind: str = "action", output: Any = None,
             status: str = "succeeded") -> dict[str, Any]:
    record = {"activity": {"name": name, "type": kind}, "start": iso(T0 + start), "end": iso(T0 + end),
              "status": status, "output": output}
    if status == "failed":
        record["exception"] = ["Traceback (most recent call last):\n", "ActivityFailed: boom\n"]
    return record


def journal(*, title: str = "The endpoint goes empty", expect: str = "deviate", after_met: bool = False,
            method: list[dict[str, Any]] | None = None, rollbacks: list[dict[str, Any]] | None = None,
            duration: float = 10.0) -> dict[str, Any]:
    return {
        "chaoslib-version": "1.44.0",
        "experiment": {"title": title, "method": [], "extensions": [{"name": "chaos-dynamo", "expect": expect}]},
        "start": iso(T0), "end": iso(T0 + duration), "duration": duration,
        "status": "completed", "deviated": not after_met,
        "steady_states": {"before": {"steady_state_met": True, "probes": [probe("endpoint-resolves", 1, True)]},
                          "after": {"steady_state_met": after_met,
                                    "probes": [probe("endpoint-resolves", 1 if after_met else 0, after_met)]}},
        "run": method if method is not None else [activity("empty-the-endpoint", 2.0, 4.0),
                                                   activity("what-resolvers-see", 4.0, 4.1, kind="probe")],
        "rollbacks": rollbacks if rollbacks is not None else [activity("restore", 4.2, 4.5)],
    }


def sidecar(*, since: float = T0 - 1, until: float = T0 + 11, width: float = 1.0) -> dict[str, Any]:
    buckets = int((until - since) / width)
    return {
        "version": 1, "since": since, "until": until,
        "lab": {"endpoints": [EP, "quiet.example"]},
        "services": {"127.0.0.100": "leases"},
        "endpoints": {
            EP: {"addresses": [{"time": since, "addresses": 6}, {"time": T0 + 3, "addresses": 0},
                               {"time": T0 + 4.4, "addresses": 6}],
                 "queries": [{"time": T0 + 1, "last": T0 + 1, "qtype": "A", "rcode": "NOERROR", "answers": 1,
                              "queries": 1},
                             {"time": T0 + 4.1, "last": T0 + 4.1, "qtype": "A", "rcode": "NOERROR", "answers": 0,
                              "queries": 3}],
                 "generations": [{"time": since, "generation": 10, "actor": "", "backwards": False},
                                 {"time": T0 + 3, "generation": 5, "actor": "enactor-a", "backwards": True}]},
            "quiet.example": {"addresses": [{"time": since, "addresses": 2}],
                              "queries": [{"time": T0 + 9, "last": T0 + 9, "qtype": "A", "rcode": "NOERROR",
                                           "answers": 2, "queries": 1}]},
        },
        "rates": {"bucket_seconds": width, "buckets": buckets,
                  "lb_requests": {"leases": [4] * buckets, "127.0.0.1": [0] * buckets},
                  "dns_queries": {"127.0.0.100": [0, 0, 0, 8] + [1] * (buckets - 4)}},
        "health": {"unhealthy_at_since": [], "transitions": []},
        "dropped": {}, "missing": [],
    }


def lease_report() -> dict[str, Any]:
    return {"timeline": [{"t": T0 + t, "live_fraction": f} for t, f in ((1, 1.0), (3, 0.5), (5, 0.0), (9, 1.0))],
            "markers": [{"t": T0 + 2, "event": "trigger_start"}, {"t": T0 + 4, "event": "trigger_end"}],
            "seconds_to_live_fraction": {"fraction": 0.99, "seconds": 5.0}, "collapse": {"collapsed": False},
            "double_owned": 0}


def failover_report() -> dict[str, Any]:
    states = ((1, ["a", "b"], 1.0), (2, ["a"], 0.5), (3, ["a", "b"], 1.0), (6, ["b"], 0.5), (7, ["a", "b"], 1.0))
    return {"name": "app.example", "until": T0 + 8,
            "timeline": [{"time": T0 + t, "addresses": m, "fraction": f, "role": "PRIMARY"} for t, m, f in states],
            "min_capacity": {"fraction": 0.5}, "oscillations": {"oscillations": 0}}


def write(tmp_path: Path, name: str, data: dict[str, Any], side: dict[str, Any] | None = None) -> Path:
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(data))
    if side is not None:
        path.with_suffix(".lab.json").write_text(json.dumps(side))
    return path
