"""Render an audit document (:mod:`chaos_dynamo.audit.report`) as JSON, Markdown or Mermaid.

All three read only the document, so a saved JSON renders the same later (``--from``).
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Iterable, Sequence
from typing import Any

from chaos_dynamo.audit.findings import SEVERITIES

__all__ = ["to_json", "to_markdown", "to_mermaid", "FORMATS"]


def to_json(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=2, sort_keys=False) + "\n"


# --- Markdown ------------------------------------------------------------------------------------

def _cell(value: Any) -> str:
    text = "" if value is None else str(value)
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ").strip() or " "


def _table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return lines


def _seconds(value: float | None, chosen: bool | None = None) -> str:
    if value is None:
        return "none"
    return f"{value:g} s" + (" (default)" if chosen is False else "")


def _run_lines(run: dict[str, Any] | None) -> list[str]:
    if run is None:
        return ["- Static scan only: no command was run."]
    how = {"exited": f"exited with code {run['exit_code']}",
           "timeout": f"was stopped after --timeout (exit code {run['exit_code']})",
           "interrupted": "was interrupted (Ctrl-C)"}.get(run["stopped"], run["stopped"])
    lines = [f"- Command: `{shlex.join(run['command'])}`", f"- The command {how} after {run['duration']:.1f} s."]
    lab = run.get("lab") or {}
    if lab:
        lines.append(f"- Lab: {lab.get('api', '?')}, region {lab.get('region', '?')}"
                     + (" (started for this audit)" if lab.get("started_by_audit") else " (already running)"))
    outage = run.get("outage")
    if outage:
        if outage.get("start") is None:
            lines.append(f"- Outage: not started (the command ended before +{outage['after']:g} s)")
        else:
            end = outage.get("end")
            lines.append(f"- Outage: {outage['endpoint']} answered no addresses from +{outage['start']:.1f} s"
                         + (f" to +{end:.1f} s" if end is not None else "") + " (then restored)")
        if outage.get("error"):
            lines.append(f"- Outage error: {outage['error']}")
    lines += [f"- Note: {note}" for note in run.get("notes", [])]
    return lines


def _gate_line(doc: dict[str, Any]) -> str:
    gate = doc["gate"]
    counts = doc["summary"].get("findings", {})
    found = ", ".join(f"{counts.get(s, 0)} {s}" for s in SEVERITIES)
    new = f" ({doc['summary'].get('new', 0)} new against {gate['baseline']})" if gate.get("baseline") else ""
    if gate.get("fail_on") is None:
        return f"- Findings: {found}{new}. No gate (--fail-on not given)."
    verdict = f"FAILED on {len(gate['gating'])} finding(s)" if gate["failed"] else "passed"
    return f"- Findings: {found}{new}. Gate --fail-on {gate['fail_on']}: **{verdict}**."


def _retry_text(dep: dict[str, Any]) -> str:
    return ", ".join(sorted({f"{s['retry_mode']} x{s['max_attempts'] if s['max_attempts'] is not None else '?'}"
                             for s in dep["settings"]})) or "unknown"


def _timeout_text(dep: dict[str, Any]) -> str:
    return ", ".join(sorted({f"{_seconds(s['connect_timeout'], s['connect_timeout_set'])} / "
                             f"{_seconds(s['read_timeout'], s['read_timeout_set'])}" for s in dep["settings"]})) or "unknown"


def _dependency_rows(doc: dict[str, Any]) -> list[list[Any]]:
    rows = []
    for dep in doc["dependencies"]:
        ops = ", ".join(f"{op} x{n}" for op, n in dep["operations"].items()) or "(client made, no calls)"
        longest = dep["longest_call"]
        longest_text = "" if longest is None else (
            f"{longest['operation']}: {longest['attempts']} attempts, {longest['client_calls']} client call(s), "
            f"{longest['seconds']:.2f} s" + ("" if longest["finished"] else ", unfinished"))
        fallback = ", ".join(dep["fallback"]["regions"] + dep["fallback"]["hosts"]) or "none"
        attempts = dep["attempts"]
        rows.append([dep["key"], dep["host"], dep["seen_by"], ops, dep["calls"],
                     f"{attempts['max']} / {attempts['p50']:g}" if dep["calls"] else "", longest_text,
                     dep["dns_failures"], _retry_text(dep), _timeout_text(dep), fallback])
    return rows


def to_markdown(doc: dict[str, Any]) -> str:
    """The audit as Markdown: summary, dependencies, findings by severity (with fixes),
    client settings, static scan and the lab's logs."""
    run = doc.get("run")
    title = run["name"] if run else "static scan"
    lines = [f"# Dependency audit: {title}", "", *_run_lines(run), _gate_line(doc), ""]
    lines += ["## Dependencies", ""]
    if doc["dependencies"]:
        lines += _table(["Dependency", "Endpoint", "Seen by", "Operations", "Calls", "Attempts max / p50",
                         "Longest call", "DNS failures", "Retry mode x attempts", "Timeouts connect / read",
                         "Fallback"], _dependency_rows(doc))
    else:
        lines.append("No AWS dependency was observed.")
    lines += _outage_lines(doc)
    lines += ["", "## Findings", ""]
    if not doc["findings"]:
        lines.append("No risks found.")
    for severity in SEVERITIES:
        mine = [f for f in doc["findings"] if f["severity"] == severity]
        if mine:
            lines += [f"### {severity.capitalize()} ({len(mine)})", ""]
            lines += _table(["ID", "Dependency", "What", "Evidence", "Fix", "Where", "New"],
                            [[f"`{f['id']}`", f["dependency"], f["title"], f["evidence"], f["fix"],
                              ", ".join(f["locations"][:5]) + (" ..." if len(f["locations"]) > 5 else ""),
                              {True: "new", False: "baseline", None: ""}[f["new"]]] for f in mine])
            lines.append("")
    lines += ["## Client settings", ""]
    settings = [[dep["key"], s["retry_mode"], s["max_attempts"],
                 _seconds(s["connect_timeout"], s["connect_timeout_set"]),
                 _seconds(s["read_timeout"], s["read_timeout_set"]), s["max_pool_connections"], s["clients"],
                 ", ".join(s["sites"])] for dep in doc["dependencies"] for s in dep["settings"]]
    lines += _table(["Dependency", "Retry mode", "Max attempts", "Connect timeout", "Read timeout", "Pool",
                     "Clients", "Made at"], settings) if settings else ["No client was made."]
    lines += ["", *_static_lines(doc["static"]), "", *_lab_lines(doc)]
    return "\n".join(lines).rstrip() + "\n"


def _outage_lines(doc: dict[str, Any]) -> list[str]:
    """Attempts before, during and after the outage, per dependency (none without an outage)."""
    rows = [[dep["key"], *(f"{p['attempts']} / {p['ok']} / {p['dns_failures']}"
                           for p in (dep["around_outage"][phase] for phase in ("before", "during", "after")))]
            for dep in doc["dependencies"] if dep.get("around_outage")]
    if not rows:
        return []
    return ["", "Attempts around the outage (attempts / succeeded / failed DNS):", "",
            *_table(["Dependency", "Before", "During", "After"], rows)]


def _static_lines(static: dict[str, Any]) -> list[str]:
    found = static["constructions"]
    if not found and not static["skipped"]:
        paths = static.get("paths") or []
        return ["## Static scan", "", f"Scanned {', '.join(paths)}: no client construction found."
                if paths else "Not run (--static not given)."]
    lines = ["## Static scan", ""]
    rows = [[f"{c['path']}:{c['line']}", c["function"], c["kind"], c["service"], c["region"] or "",
             c["config"], f"{c['retry_mode'] or 'unset'} x{c['max_attempts'] or '?'}",
             f"{_seconds(c['connect_timeout'])} / {_seconds(c['read_timeout'])}",
             ", ".join(c["unresolved"]), "yes" if c["exercised"] else "no"] for c in found]
    lines += _table(["Location", "Function", "Makes", "Service", "Region", "Config", "Retries", "Timeouts",
                     "Unresolved", "Exercised by the run"], rows) if rows else ["No client construction found."]
    lines += [f"- Skipped {s}" for s in static["skipped"]]
    return lines


def _lab_lines(doc: dict[str, Any]) -> list[str]:
    lines = ["## Lab logs", ""]
    if doc["dns"]:
        lines += ["DNS names queried during the run:", ""]
        lines += _table(["Name", "Queries", "No address", "Answers", "From", "Used by a hooked client"],
                        [[d["name"], d["queries"], d["no_address"],
                          ", ".join(f"{k} x{v}" for k, v in d["rcodes"].items()), ", ".join(d["clients"]),
                          "yes" if d["hooked"] else "no"] for d in doc["dns"]])
        lines.append("")
    if doc["lb"]:
        lines += ["Requests through the lab's load balancers:", ""]
        lines += _table(["LB", "Operation", "Requests", "Errors"],
                        [[r["lb"], r["operation"], r["requests"], r["errors"]] for r in doc["lb"]])
    if not doc["dns"] and not doc["lb"]:
        lines.append("Nothing in the lab's DNS and LB logs for this run.")
    return lines


# --- Mermaid -------------------------------------------------------------------------------------

_UNSAFE = re.compile(r"[\"<>{}\[\]|`#;]")
COLOURS = {"high": "#c62828", "medium": "#ef6c00", "low": "#9e9d24"}


def _label(text: str) -> str:
    """Text safe inside a quoted Mermaid label."""
    return _UNSAFE.sub(" ", text).strip()


def to_mermaid(doc: dict[str, Any]) -> str:
    """``graph LR``: the command's processes -> ``service@region`` nodes; a dependency's
    worst finding colours its node and its edges, and the edge label names the risks."""
    run = doc.get("run")
    command = run["name"] if run else "code"
    worst: dict[str, str] = {}
    risks: dict[str, list[str]] = {}
    for f in doc["findings"]:
        key = f["dependency"]
        risks.setdefault(key, []).append(f["rule"])
        if key not in worst or SEVERITIES.index(f["severity"]) < SEVERITIES.index(worst[key]):
            worst[key] = f["severity"]
    lines = ["graph LR"]
    sources: dict[str, str] = {}
    edges: list[tuple[str, str, str, str, str | None]] = []
    for index, dep in enumerate(doc["dependencies"]):
        node = f"d{index}"
        lines.append(f'  {node}["{_label(dep["key"])}<br/>{_label(dep["host"])}"]')
        severity = worst.get(dep["key"])
        lines.append(f"  class {node} {severity or 'ok'}")
        ops = ", ".join(list(dep["operations"])[:3]) + (" ..." if len(dep["operations"]) > 3 else "")
        label = f"{ops} - {dep['calls']} calls" if dep["calls"] else dep["seen_by"]
        if severity:
            label += " - " + ", ".join(sorted(set(risks[dep["key"]])))
        for process in dep["processes"] or [command]:
            if process not in sources:
                sources[process] = f"s{len(sources)}"
            arrow = "-->" if dep["seen_by"] == "call log" else "-.->"
            edges.append((sources[process], arrow, _label(label), node, severity))
    static: dict[str, list[dict[str, Any]]] = {}
    for c in doc["static"]["constructions"]:
        if not c["exercised"]:
            static.setdefault(f"{c['service']}@{c['region'] or '?'}", []).append(c)
    for index, (key, found) in enumerate(sorted(static.items())):
        node = f"c{index}"
        lines.append(f'  {node}["{_label(key)}<br/>static scan"]')
        severity = worst.get(key)
        lines.append(f"  class {node} {severity or 'ok'}")
        sources.setdefault(command, f"s{len(sources)}")
        label = f"{len(found)} construction(s) the run did not exercise"
        edges.append((sources[command], "-.->", _label(label), node, severity))
    lines += [f'  {sid}(["{_label(name)}"])' for name, sid in sources.items()]
    lines += [f'  {a} {arrow}|"{label}"| {b}' for a, arrow, label, b, _ in edges]
    lines += [f"  linkStyle {i} stroke:{COLOURS[s]},stroke-width:3px" for i, (*_, s) in enumerate(edges) if s]
    lines += ["  classDef ok fill:#e8f5e9,stroke:#2e7d32",
              *(f"  classDef {s} fill:#fff,stroke:{c},stroke-width:3px" for s, c in COLOURS.items())]
    return "\n".join(lines) + "\n"


FORMATS = {"json": to_json, "markdown": to_markdown, "mermaid": to_mermaid}
