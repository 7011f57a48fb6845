"""What the report shows of one experiment, from its journal and its lab sidecar; pure.

Every time is in seconds from the run's start (the journal's ``start``), the origin of every
chart's x axis. A fault window is one method action's [start, end]. The verdict is verify's
when an outcome is given, else the runner's rules applied to the journal alone. The charts
and where their data comes from: :mod:`chaos_dynamo.report.charts`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from chaos_dynamo.errors import ConfigError
from chaos_dynamo.report import charts
from chaos_dynamo.report.charts import Chart
from chaos_dynamo.report.collect import SIDECAR_VERSION

if TYPE_CHECKING:
    from chaos_dynamo.verify.core import Failure, Outcome

JsonDict = dict[str, Any]
STATUSES = ("passed", "failed", "error", "interrupted")
_FIX = ("pass a journal written by `chaos run --journal-path FILE` (or by `chaos-dynamo run` / "
        "`chaos-dynamo verify`), e.g. journals/<experiment>.json")
_LOG_SERVICE = re.compile(r"service (\S+) started: [^\n]*?source address (\d+\.\d+\.\d+\.\d+)")


# --- what the page shows ---------------------------------------------------------------------

@dataclass(frozen=True)
class Window:
    """A fault window: method action number ``index`` ran from ``start`` to ``end``."""

    index: int
    name: str
    start: float
    end: float
    status: str


@dataclass(frozen=True)
class ProbeRow:
    """A steady-state probe: when (``before``/``after``), its tolerance, its value, met or not."""

    phase: str
    name: str
    tolerance: str
    value: str
    met: bool | None


@dataclass(frozen=True)
class ActivityRow:
    """A method or rollback activity, its times in seconds from the run's start."""

    phase: str
    kind: str
    name: str
    start: float | None
    end: float | None
    status: str
    detail: str


@dataclass(frozen=True)
class FirstFailure:
    """The first thing that failed: a probe out of tolerance or an action that raised."""

    phase: str
    activity: str
    tolerance: str
    value: str
    message: str
    expected: bool = False  # a reproduction's deviation: what the experiment wants


@dataclass(frozen=True)
class Verdict:
    """The verdict table's row: status (one of :data:`STATUSES`), headline, expectation."""

    status: str
    headline: str
    expect: str
    first_failure: FirstFailure | None


@dataclass
class ExperimentReport:
    """Everything the page shows of one experiment."""

    title: str
    journal: Path | None
    verdict: Verdict
    duration: float | None
    started: float | None
    x_max: float = 1.0
    probes: list[ProbeRow] = field(default_factory=list)
    activities: list[ActivityRow] = field(default_factory=list)
    windows: list[Window] = field(default_factory=list)
    charts: list[Chart] = field(default_factory=list)
    no_data: list[tuple[str, str]] = field(default_factory=list)  # (chart, why)
    notes: list[str] = field(default_factory=list)


# --- reading the inputs ------------------------------------------------------------------------

def load_journal(path: Path) -> JsonDict:
    """The journal at ``path``; ConfigError naming the file and the fix if it is not one."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(str(path), "does not exist", _FIX) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(str(path), f"cannot be read ({exc})", _FIX) from None
    except json.JSONDecodeError as exc:
        raise ConfigError(str(path), f"is not a chaos journal: not JSON ({exc})", _FIX) from None
    if not isinstance(data, dict):
        raise ConfigError(str(path), f"is not a chaos journal: a JSON {type(data).__name__}, not an object", _FIX)
    missing = [k for k, kind in (("experiment", dict), ("status", str), ("run", list)) if not isinstance(data.get(k), kind)]
    if missing and "method" in data:
        raise ConfigError(str(path), "is an experiment, not a chaos journal",
                          f"run it first (chaos-dynamo run {path}) and pass the journal it writes")
    if missing:
        raise ConfigError(str(path), f"is not a chaos journal (no {', '.join(missing)})", _FIX)
    return data


def load_sidecar(path: Path) -> tuple[JsonDict | None, str]:
    """The lab sidecar at ``path`` if it is a usable one, and a note when there is one that
    cannot be used."""
    if not path.exists():
        return None, ""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        return None, f"lab timeline {path.name} ignored: not readable JSON ({exc})"
    if not isinstance(data, dict) or data.get("version") != SIDECAR_VERSION:
        version = data.get("version") if isinstance(data, dict) else None
        return None, f"lab timeline {path.name} ignored: version {version!r}, this report reads {SIDECAR_VERSION}"
    return data, ""


def services_from_run(journal: Mapping[str, Any], log_text: str) -> dict[str, str]:
    """Source address -> service, from what the run says it started: ``start_service``
    outputs in the journal and the service control's line in the chaos log."""
    found = {address: name for name, address in _LOG_SERVICE.findall(log_text)}
    for record in charts.activity_records(journal):
        output = record.get("output")
        if isinstance(output, dict) and output.get("source_address") and output.get("service"):
            found[str(output["source_address"])] = str(output["service"])
    return found


def epoch(stamp: object) -> float | None:
    """An ISO-8601 time from the journal as seconds since the epoch (None if it is not one)."""
    if not isinstance(stamp, str):
        return None
    try:
        return datetime.fromisoformat(stamp).timestamp()
    except ValueError:
        return None


# --- the verdict -------------------------------------------------------------------------------

def expectation_of(journal: Mapping[str, Any]) -> str:
    """``hold`` or ``deviate`` as the experiment declares it (``hold`` if it cannot be read)."""
    from chaos_dynamo.runner import expectation

    try:
        return expectation(journal.get("experiment") or {})
    except ConfigError:
        return "hold"


def verdict_from_journal(path: Path, journal: Mapping[str, Any]) -> Verdict:
    """The runner's rules (:func:`chaos_dynamo.runner.judge`) on the journal alone. The
    runner's after-run endpoint check is not in a journal, so it counts as passed.

    A journal chaos marked ``interrupted`` is a failure when the chaos log next to it says
    why chaos stopped the run itself (a control or safeguard), or the journal records a stop
    condition that fired; else it is taken for Ctrl-C: the journal alone cannot tell."""
    from chaos_dynamo.runner import Safety, judge
    from chaos_dynamo.safety.stop import stopped_by
    from chaos_dynamo.verify.verdict import chaos_critical

    expect = expectation_of(journal)
    ctrl_c = (journal.get("status") == "interrupted" and stopped_by(journal) is None
              and not chaos_critical(path.with_suffix(".log")))
    try:
        judged = judge(path, expect, 0, Safety(0, True, False), ctrl_c)
    except ConfigError as exc:  # a malformed chaos-dynamo extension in the experiment
        return Verdict("error", f"ERROR: {exc}", expect, first_failure(journal, expect))
    return Verdict(judged.status, judged.headline, expect, _first(judged.failures, journal, expect))


def verdict_from_outcome(outcome: Outcome, journal: Mapping[str, Any] | None) -> Verdict:
    """verify's verdict and its first failure (else the journal's first)."""
    status = outcome.status if outcome.status in STATUSES else "error"
    return Verdict(status, outcome.headline, outcome.expect, _first(outcome.failures or [], journal, outcome.expect))


def _first(failures: Sequence[Failure], journal: Mapping[str, Any] | None, expect: str) -> FirstFailure | None:
    """The first of verify's failures (they come in reading order); without any, the first
    failure in the journal, a reproduction's expected deviation included."""
    if failures:
        return _shown(failures[0])
    return first_failure(journal, expect) if journal is not None else None


def first_failure(journal: Mapping[str, Any], expect: str) -> FirstFailure | None:
    """The first probe out of tolerance or activity that raised, in the order chaos ran them
    (:func:`chaos_dynamo.verify.verdict.journal_failures`, the verdict's own reading)."""
    from chaos_dynamo.verify.verdict import journal_failures

    found = journal_failures(journal)
    if not found:
        return None
    return _shown(found[0], expected=found[0].phase == "after" and expect == "deviate")


def _shown(f: Failure, expected: bool = False) -> FirstFailure:
    """A verdict's failure as the verdict table shows it: tolerance and value as text."""
    tolerance = "" if f.tolerance is None else tolerance_text(f.tolerance)
    value = "" if f.value is None else (clip(f.value, 200) if isinstance(f.value, str) and not tolerance
                                        else value_text(f.value, f.tolerance))
    return FirstFailure(f.phase, f.activity, tolerance, value, f.message, expected)


def exception_text(record: Mapping[str, Any]) -> str:
    """The last line of an activity's exception, as the verdict reads it, clipped."""
    from chaos_dynamo.verify.verdict import exception_text as last_line

    return clip(last_line(record), 200)


# --- text of values ----------------------------------------------------------------------------

def clip(text: str, limit: int = 120) -> str:
    """``text`` cut to ``limit`` characters, an ellipsis marking the cut."""
    return text if len(text) <= limit else text[:limit - 1] + "…"


def compact(value: object, limit: int = 120) -> str:
    """``value`` as one line of JSON, numbers rounded for reading, clipped to ``limit``."""
    return clip(json.dumps(_rounded(value), default=str, separators=(", ", ": ")), limit)


def _rounded(value: object) -> object:
    """Floats to 4 significant digits (timestamps to the millisecond), in any nesting."""
    if isinstance(value, float):
        return round(value, 3) if abs(value) >= 1e5 else float(f"{value:.4g}")
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_rounded(v) for v in value]
    return value


def tolerance_text(tolerance: object) -> str:
    """A tolerance as a person reads it: ``range [1, 1000]``, ``at_most(limit=40)``, ``true``."""
    if isinstance(tolerance, dict):
        if tolerance.get("type") == "range" and "range" in tolerance:
            return f"range {compact(tolerance['range'])}"
        if tolerance.get("type") == "probe":
            provider = tolerance.get("provider") or {}
            args = {k: v for k, v in (provider.get("arguments") or {}).items() if k != "value"}
            shown = ", ".join(f"{k}={v if isinstance(v, str) else compact(v)}" for k, v in args.items())
            return clip(f"{provider.get('func', tolerance.get('name', 'probe'))}({shown})")
    return compact(tolerance)


def value_text(output: object, tolerance: object) -> str:
    """A probe's output; for a dict checked at one key (``key`` in the tolerance), that key."""
    key = None
    if isinstance(tolerance, dict):
        args = (tolerance.get("provider") or {}).get("arguments") or {}
        key = args.get("key") or tolerance.get("key")
    if isinstance(output, dict) and isinstance(key, str) and key in output:
        return f"{key} = {compact(output[key])}"
    return compact(output)


# --- building one experiment's report ------------------------------------------------------------

def build(path: Path | None, journal: JsonDict | None, sidecar: JsonDict | None, *,
          verdict: Verdict, services: Mapping[str, str] | None = None,
          duration: float | None = None, notes: Iterable[str] = ()) -> ExperimentReport:
    """The report of one experiment (``journal`` None: an outcome with no journal)."""
    journal = journal or {}
    title = str((journal.get("experiment") or {}).get("title") or (path.stem if path else "?"))
    t0 = epoch(journal.get("start"))
    if t0 is None and sidecar is not None:
        t0 = float(sidecar.get("since", 0.0))
    report = ExperimentReport(title=title, journal=path, verdict=verdict, started=t0,
                              duration=charts.number(journal.get("duration")) if duration is None else duration,
                              notes=[n for n in notes if n])
    if t0 is None:
        return report
    report.probes = probe_rows(journal)
    report.activities = activity_rows(journal, t0)
    report.windows = fault_windows(report.activities)
    # The run's own span (an outcome's duration also counts the lab's start).
    report.x_max = max([1.0, charts.number(journal.get("duration")) or 0.0,
                        *(a.end for a in report.activities if a.end is not None),
                        *charts.data_ends(journal, sidecar, t0)])
    names = dict(services or {})
    if sidecar is not None:
        names.update(sidecar.get("services") or {})
    report.charts, report.no_data = charts.all_charts(journal, sidecar, t0, report.x_max, names)
    return report


def probe_rows(journal: Mapping[str, Any]) -> list[ProbeRow]:
    """The steady-state probes, before then after."""
    steady = journal.get("steady_states") or {}
    rows = []
    for phase in ("before", "after"):
        for record in (steady.get(phase) or {}).get("probes", []):
            if not isinstance(record, dict):
                continue
            activity = record.get("activity") or {}
            tolerance = activity.get("tolerance")
            value = value_text(record.get("output"), tolerance) if "output" in record else exception_text(record)
            met = record.get("tolerance_met")
            rows.append(ProbeRow(phase, str(activity.get("name", "?")), tolerance_text(tolerance), value,
                                 met if isinstance(met, bool) else None))
    return rows


def activity_rows(journal: Mapping[str, Any], t0: float) -> list[ActivityRow]:
    """The method's activities, then the rollbacks, in the order chaos ran them."""
    rows = []
    for phase, records in (("method", journal.get("run") or []), ("rollback", journal.get("rollbacks") or [])):
        for record in records:
            if not isinstance(record, dict):
                continue
            activity = record.get("activity") or {}
            start, end = epoch(record.get("start")), epoch(record.get("end"))
            status = str(record.get("status", "?"))
            detail = exception_text(record) if status == "failed" else compact(record.get("output"), 160)
            rows.append(ActivityRow(phase, str(activity.get("type", "?")), str(activity.get("name", "?")),
                                    None if start is None else start - t0, None if end is None else end - t0,
                                    status, detail))
    return rows


def fault_windows(activities: Iterable[ActivityRow]) -> list[Window]:
    """One window per method action with a start and an end, numbered from 1."""
    windows: list[Window] = []
    for a in activities:
        if a.phase == "method" and a.kind == "action" and a.start is not None and a.end is not None:
            windows.append(Window(len(windows) + 1, a.name, a.start, a.end, a.status))
    return windows
