"""The audit's result as one JSON document (``"version": 1``), the baseline and the gate.

The document is the audit's single output format: the Markdown and Mermaid renderers read
it, and ``chaos-dynamo audit --from REPORT.json`` re-judges a saved one (another baseline,
another ``--fail-on``) without running anything. Its top-level keys:

- ``version`` (1), ``tool``;
- ``run``: the command, its name, start time, duration, exit code, how it stopped
  (``exited``, ``timeout``, ``interrupted``), the lab, the outage window, notes;
  null for a static-only audit;
- ``summary``: calls, attempts, clients, dependencies, findings per severity, new findings;
- ``dependencies``: one per (service, region, endpoint host), with the endpoint URLs its
  clients used, operations, attempts (max, p50), the longest logical call, DNS failures,
  ``around_outage`` (attempts started before, during and after the outage, how many
  succeeded and how many failed DNS; null without an outage), every distinct client
  configuration with its call sites, and the fallback regions/hosts configured for the service;
- ``dns`` (names the lab DNS was asked, per name) and ``lb`` (requests per LB and operation);
- ``static``: the paths scanned (``--static``, empty when not given), every construction
  the scan found (``exercised`` or not) and what it skipped;
- ``findings``: id, rule, severity, dependency, title, evidence, fix, locations, and
  ``new`` (true/false against a baseline, null without one);
- ``gate``: ``fail_on``, ``baseline`` (path), ``gating`` (ids that fail the gate), ``failed``.

A baseline is a JSON list of finding ids (``--write-baseline`` writes one); an audit
document is accepted as a baseline too (its findings' ids).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chaos_dynamo import __version__
from chaos_dynamo.audit.findings import SEVERITIES, Finding, at_or_above
from chaos_dynamo.audit.observe import (
    Dependency,
    DnsQuery,
    LbRequest,
    Observed,
    call_seconds,
    dependencies,
    empty_answers,
)
from chaos_dynamo.audit.rules import findings as run_findings
from chaos_dynamo.audit.static import Construction, mark_exercised, static_findings
from chaos_dynamo.calllog import Attempt
from chaos_dynamo.errors import ConfigError

__all__ = ["VERSION", "RunInfo", "build_document", "document", "apply_gate", "read_baseline",
           "write_baseline", "read_document"]

VERSION = 1


@dataclass(frozen=True)
class RunInfo:
    """How the audited command ran."""

    command: tuple[str, ...]
    name: str
    started: float
    duration: float
    exit_code: int | None
    stopped: str
    """``exited`` (on its own), ``timeout`` (stopped after --timeout), ``interrupted`` (Ctrl-C)."""
    lab: dict[str, Any] = field(default_factory=dict)
    outage: dict[str, Any] | None = None
    notes: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {"command": list(self.command), "name": self.name, "started": self.started,
                "duration": round(self.duration, 3), "exit_code": self.exit_code, "stopped": self.stopped,
                "lab": self.lab, "outage": self.outage, "notes": list(self.notes)}


def _round(value: float) -> float:
    return round(value, 4)


def _outage_window(run: RunInfo | None) -> tuple[float, float] | None:
    """(start, end) of the run's outage in wall-clock time, None when no outage started."""
    outage = (run.outage or {}) if run is not None else {}
    if run is None or outage.get("start") is None:
        return None
    end = outage.get("end")
    return run.started + outage["start"], run.started + (run.duration if end is None else end)


def _around(dep: Dependency, window: tuple[float, float]) -> dict[str, dict[str, int]]:
    """The dependency's attempts by when they started: before, during and after the outage,
    each with how many succeeded (a response below 400) and how many failed DNS."""
    phases = {phase: {"attempts": 0, "ok": 0, "dns_failures": 0} for phase in ("before", "during", "after")}

    def ok(attempt: Attempt) -> bool:
        return attempt.error is None and attempt.status is not None and attempt.status < 400

    for attempt in (a for call in dep.calls for a in call.attempts):
        phase = phases["before" if attempt.start < window[0] else "during" if attempt.start < window[1] else "after"]
        phase["attempts"] += 1
        phase["ok"] += ok(attempt)
        phase["dns_failures"] += attempt.dns_failure
    return phases


def _dependency(dep: Dependency, deps: Sequence[Dependency], window: tuple[float, float] | None) -> dict[str, Any]:
    longest = dep.longest_call
    mine = [d for d in deps if d.service == dep.service]
    settings = [{"retry_mode": s.retry_mode, "max_attempts": s.max_attempts,
                 "connect_timeout": s.connect_timeout, "connect_timeout_set": s.connect_timeout_set,
                 "read_timeout": s.read_timeout, "read_timeout_set": s.read_timeout_set,
                 "max_pool_connections": s.max_pool_connections, "clients": len(clients),
                 "sites": sorted({c.site for c in clients if c.site})}
                for s, clients in dep.settings().items()]
    return {
        "service": dep.service, "region": dep.region, "host": dep.host, "key": dep.key, "seen_by": dep.seen_by,
        "endpoints": sorted({c.endpoint_url for c in dep.clients}),
        "operations": dict(dep.operations.most_common()), "calls": len(dep.calls),
        "attempts": {"total": sum(dep.attempts), "max": dep.max_attempts, "p50": dep.p50_attempts},
        "longest_call": None if longest is None else {
            "operation": longest.operation, "attempts": len(longest.attempts),
            "client_calls": longest.client_calls, "seconds": _round(call_seconds(longest)),
            "ok": longest.ok, "finished": longest.finished},
        "errors": dict(Counter(c.error for c in dep.calls if c.error).most_common()),
        "dns_failures": dep.dns_failures, "dns_queries": dep.dns_queries, "dns_empty": dep.dns_empty,
        "around_outage": _around(dep, window) if window is not None and dep.calls else None,
        "settings": settings, "sites": dep.sites, "processes": dep.processes,
        "fallback": {"regions": sorted({d.region for d in mine} - {dep.region}),
                     "hosts": sorted({d.host for d in mine} - {dep.host})},
    }


def _dns(queries: Sequence[DnsQuery], hosts: set[str]) -> list[dict[str, Any]]:
    by_name: dict[str, list[DnsQuery]] = {}
    for query in queries:
        by_name.setdefault(query.name.lower().rstrip("."), []).append(query)
    return [{"name": name, "queries": len(asked), "no_address": empty_answers(asked),
             "rcodes": dict(Counter(q.rcode for q in asked)), "clients": sorted({q.client for q in asked}),
             "hooked": name in hosts}
            for name, asked in sorted(by_name.items())]


def _lb(requests: Sequence[LbRequest]) -> list[dict[str, Any]]:
    counts = Counter((r.lb, r.operation or "unknown") for r in requests)
    errors = Counter((r.lb, r.operation or "unknown") for r in requests if r.status is None or r.status >= 400)
    return [{"lb": lb, "operation": op, "requests": n, "errors": errors[(lb, op)]}
            for (lb, op), n in sorted(counts.items())]


def document(run: RunInfo | None, deps: Sequence[Dependency], findings: Sequence[Finding],
             constructions: Sequence[Construction] = (), skipped: Sequence[str] = (),
             dns: Sequence[DnsQuery] = (), lb: Sequence[LbRequest] = (),
             static_paths: Sequence[str] = ()) -> dict[str, Any]:
    """The audit document (see the module docstring), not yet gated (:func:`apply_gate`)."""
    calls = [c for d in deps for c in d.calls]
    window = _outage_window(run)
    return {
        "version": VERSION,
        "tool": f"chaos-dynamo {__version__}",
        "run": run.as_dict() if run is not None else None,
        "summary": {"calls": len(calls), "attempts": sum(len(c.attempts) for c in calls),
                    "clients": sum(len(d.clients) for d in deps), "dependencies": len(deps)},
        "dependencies": [_dependency(d, deps, window) for d in deps],
        "dns": _dns(dns, {d.host for d in deps if d.clients}),
        "lb": _lb(lb),
        "static": {"paths": list(static_paths), "constructions": [c.as_dict() for c in constructions],
                   "skipped": list(skipped)},
        "findings": [f.as_dict() | {"new": None} for f in findings],
        "gate": {"fail_on": None, "baseline": None, "gating": [], "failed": False},
    }


def build_document(run: RunInfo | None, observed: Observed, constructions: Sequence[Construction] = (),
                   skipped: Sequence[str] = (), static_paths: Sequence[str] = ()) -> dict[str, Any]:
    """Dependencies, runtime and static findings, as one (ungated) document; ``static_paths``
    are the paths the static scan was given (none: no scan)."""
    deps = dependencies(observed)
    marked = mark_exercised(list(constructions), [c.site for c in observed.clients])
    found = sorted([*run_findings(deps), *static_findings(marked)],
                   key=lambda f: (SEVERITIES.index(f.severity), f.id))
    return document(run, deps, found, marked, skipped, observed.dns, observed.lb, static_paths)


def apply_gate(doc: dict[str, Any], fail_on: str | None, baseline: set[str] | None,
               baseline_path: str | None = None) -> dict[str, Any]:
    """``doc`` with each finding marked new (against ``baseline``) and the gate decided:
    it fails when a finding at or above ``fail_on`` is new (any such finding without a
    baseline). Pure: returns a new document."""
    findings = [f | {"new": None if baseline is None else f["id"] not in baseline} for f in doc["findings"]]
    gating = [f["id"] for f in findings if fail_on is not None and at_or_above(f["severity"], fail_on)
              and f["new"] is not False]
    counts = Counter(f["severity"] for f in findings)
    summary = doc["summary"] | {"findings": {s: counts.get(s, 0) for s in SEVERITIES},
                                "new": sum(1 for f in findings if f["new"])}
    return doc | {"findings": findings, "summary": summary,
                  "gate": {"fail_on": fail_on, "baseline": baseline_path, "gating": gating, "failed": bool(gating)}}


def read_document(path: Path) -> dict[str, Any]:
    """A saved audit document (``--from``).

    Raises:
        ConfigError: unreadable, not JSON, or not an audit document of a version this reads.
    """
    data = _read_json("--from", path)
    if not isinstance(data, dict) or data.get("version") != VERSION or not isinstance(data.get("findings"), list):
        raise ConfigError("--from", f"{str(path)!r} is not a chaos-dynamo audit document (version {VERSION})",
                          "give the file `chaos-dynamo audit --json FILE` wrote")
    return data


def read_baseline(path: Path) -> set[str]:
    """The finding ids in a baseline: a JSON list of ids, or an audit document.

    Raises:
        ConfigError: unreadable, not JSON, or neither form.
    """
    data = _read_json("--baseline", path)
    if isinstance(data, dict) and isinstance(data.get("findings"), list):
        data = [f.get("id") if isinstance(f, dict) else f for f in data["findings"]]
    if not isinstance(data, list) or not all(isinstance(i, str) for i in data):
        raise ConfigError("--baseline", f"{str(path)!r} is not a JSON list of finding ids",
                          "write one with --write-baseline, or give an audit document (--json output)")
    return set(data)


def write_baseline(path: Path, doc: dict[str, Any]) -> None:
    """Write every finding id of ``doc`` as a sorted JSON list."""
    path.write_text(json.dumps(sorted({f["id"] for f in doc["findings"]}), indent=2) + "\n", encoding="utf-8")


def _read_json(option: str, path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(option, f"cannot read {str(path)!r} ({exc.strerror or exc})", "give a readable file") from None
    except ValueError as exc:
        raise ConfigError(option, f"{str(path)!r} is not JSON ({exc})", "fix or regenerate the file") from None
