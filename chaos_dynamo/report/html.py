"""The report page: one static HTML file, readable offline, written atomically.

A verdict table on top (one row per experiment), then a section per experiment: its
headline, its fault windows, its charts (inline SVG, the same x axis on each, fault windows
shaded), the steady-state probes before and after, and the activities with their times.
Styles are inline; the page has no script and loads nothing: a Content-Security-Policy of
``default-src 'none'`` makes any fetch impossible even if a title held a URL. Tooltips are
SVG ``<title>`` elements, which browsers show without script.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from chaos_dynamo.errors import ConfigError
from chaos_dynamo.report import model, svg
from chaos_dynamo.report.collect import sidecar_path, write_text_atomically
from chaos_dynamo.report.markup import escape
from chaos_dynamo.report.model import ExperimentReport

if TYPE_CHECKING:
    from chaos_dynamo.verify.core import Outcome

__all__ = ["write_report", "render_page", "build_reports"]

MAX_LOG_BYTES = 5_000_000
STATUS_LABEL = {"passed": "passed", "failed": "FAILED", "error": "ERROR", "interrupted": "interrupted"}
LEGEND_MARK = {"dots": "dot", "stack": "area"}
EXPECT_LABEL = {"hold": "hypothesis holds", "deviate": "deviates (a reproduction)"}

CSS = """
:root { --text: #1f2328; --muted: #656d76; --line: #d0d7de; --soft: #f6f8fa;
  --passed: #1a7f37; --failed: #cf222e; --error: #9a6700; --interrupted: #6e7781; --fault: #fde4c8; }
* { box-sizing: border-box; }
body { margin: 0; padding: 24px 28px 48px; color: var(--text); background: #fff;
  font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
main { max-width: 1220px; margin: 0 auto; }
h1 { font-size: 22px; margin: 0 0 4px; }
h2 { font-size: 18px; margin: 0 0 6px; display: flex; gap: 10px; align-items: baseline; }
h3 { font-size: 14px; margin: 18px 0 6px; }
.meta, .source, .nodata, .muted { color: var(--muted); }
.nodata { margin: 6px 0 0; }
.meta { margin: 0 0 16px; }
table { border-collapse: collapse; width: 100%; margin: 6px 0 12px; }
th, td { text-align: left; padding: 5px 8px; border-bottom: 1px solid var(--line); vertical-align: top; }
th { background: var(--soft); font-weight: 600; font-size: 12px; text-transform: uppercase;
  letter-spacing: .03em; color: var(--muted); }
td.num { text-align: right; white-space: nowrap; font-variant-numeric: tabular-nums; }
code, .mono { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 12px; }
.status { font-weight: 700; white-space: nowrap; }
.status.passed, .ok { color: var(--passed); }
.status.failed, .bad { color: var(--failed); }
.status.error { color: var(--error); }
.status.interrupted { color: var(--interrupted); }
.badge { display: inline-block; padding: 1px 8px; border-radius: 10px; color: #fff; font-size: 12px;
  font-weight: 700; }
.badge.passed { background: var(--passed); } .badge.failed { background: var(--failed); }
.badge.error { background: var(--error); } .badge.interrupted { background: var(--interrupted); }
.expected { color: var(--muted); font-style: italic; }
section.experiment { border-top: 2px solid var(--line); padding-top: 18px; margin-top: 26px; }
.headline { margin: 0 0 4px; font-weight: 600; }
.windows { margin: 8px 0 4px; }
.swatch { display: inline-block; width: 12px; height: 12px; border-radius: 2px; vertical-align: -1px;
  margin-right: 4px; }
.fault-swatch { background: var(--fault); border: 1px solid #f0b878; }
.charts { display: grid; grid-template-columns: repeat(auto-fill, minmax(580px, 1fr)); gap: 14px 18px;
  margin-top: 10px; }
figure { margin: 0; padding: 8px 10px 6px; border: 1px solid var(--line); border-radius: 6px; }
figcaption { font-weight: 600; }
figcaption .summary { font-weight: 400; color: var(--muted); margin-left: 6px; }
.legend { display: flex; flex-wrap: wrap; gap: 2px 14px; font-size: 12px; margin: 2px 0 2px; }
.legend .line { display: inline-block; width: 16px; height: 3px; vertical-align: 3px; margin-right: 4px; }
.legend .area { display: inline-block; width: 12px; height: 10px; vertical-align: -1px; margin-right: 4px; }
.legend .dot { display: inline-block; width: 8px; height: 8px; border-radius: 50%; margin-right: 4px; }
svg.chart { display: block; max-width: 100%; height: auto; }
.source { font-size: 11px; margin: 0; }
details { margin-top: 8px; }
summary { cursor: pointer; font-weight: 600; }
"""


def write_report(journals: list[Path], out: Path, *, title: str | None = None,
                 outcomes: list[Outcome] | None = None) -> Path:
    """Write the report of ``journals`` (and of verify's ``outcomes``) to ``out``.

    With ``outcomes`` the verdicts are verify's; without, each is judged from its journal
    alone by the runner's rules. Every journal is read before anything is written.

    Raises:
        ConfigError: a journal is missing or is not a chaos journal (nothing is written).
    """
    reports = build_reports(journals, outcomes or [])
    write_text_atomically(out, render_page(reports, title or "chaos-dynamo resilience report"))
    return out


def build_reports(journals: Sequence[Path], outcomes: Sequence[Any]) -> list[ExperimentReport]:
    """One report per journal, in order, then one per outcome whose journal is not among them.

    A journal of no outcome must be a chaos journal (ConfigError otherwise, before any work);
    an outcome's journal that cannot be read is noted in its section instead.
    """
    by_journal = {Path(o.journal).resolve(): o for o in outcomes if getattr(o, "journal", None)}
    loaded = [(path, _load(path, strict=path.resolve() not in by_journal)) for path in journals]
    reports = [_report(path, journal, by_journal.pop(path.resolve(), None)) for path, journal in loaded]
    listed = {path.resolve() for path in journals}
    for outcome in outcomes:
        path = Path(outcome.journal) if getattr(outcome, "journal", None) else None
        if path is None or path.resolve() not in listed:
            reports.append(_report(path, _load(path, strict=False), outcome))
    return reports


def _load(path: Path | None, *, strict: bool) -> tuple[dict[str, Any] | None, str]:
    """The journal and "" or, when not ``strict``, None and why it cannot be read."""
    if path is None:
        return None, "no journal: the run wrote none"
    try:
        return model.load_journal(path), ""
    except ConfigError as exc:
        if strict:
            raise
        return None, f"journal unreadable: {exc}"


def _report(path: Path | None, loaded: tuple[dict[str, Any] | None, str], outcome: Any) -> ExperimentReport:
    """One experiment's report: its journal with its sidecar, its chaos log and the verdict
    (verify's outcome when there is one, else the journal's)."""
    journal, problem = loaded
    notes = [problem]
    sidecar = None
    if journal is not None and path is not None:
        given = getattr(outcome, "lab_timeline", None)
        sidecar, note = model.load_sidecar(Path(given) if given else sidecar_path(path))
        notes.append(note)
    if outcome is not None:
        verdict = model.verdict_from_outcome(outcome, journal)
        duration: float | None = float(outcome.duration)
    elif journal is not None and path is not None:
        verdict, duration = model.verdict_from_journal(path, journal), None
    else:
        raise ValueError("a report needs a journal or an outcome")
    if journal is None:
        return model.build(None, {"experiment": {"title": outcome.title}}, None, verdict=verdict,
                           duration=duration, notes=[*notes, *outcome.lines[-3:]])
    services = model.services_from_run(journal, _log_text(path))
    return model.build(path, journal, sidecar, verdict=verdict, services=services, duration=duration, notes=notes)


def _log_text(journal: Path | None) -> str:
    """The chaos log next to the journal (``run.json`` -> ``run.log``), or ""."""
    if journal is None:
        return ""
    try:
        with journal.with_suffix(".log").open(encoding="utf-8", errors="replace") as handle:
            return handle.read(MAX_LOG_BYTES)
    except OSError:
        return ""


# --- rendering ---------------------------------------------------------------------------------

def render_page(reports: Sequence[ExperimentReport], title: str) -> str:
    """The whole page: the verdict table, then a section per experiment."""
    counts = {s: sum(1 for r in reports if r.verdict.status == s) for s in model.STATUSES}
    tally = ", ".join(f"{n} {s}" for s, n in counts.items() if n) or "no experiments"
    generated = time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime())
    sections = "".join(_section(i, r) for i, r in enumerate(reports, start=1))
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">"
        f"<title>{escape(title)}</title><style>{CSS}</style></head><body><main>"
        f"<h1>{escape(title)}</h1>"
        f"<p class=\"meta\">{len(reports)} experiment(s): {escape(tally)} · generated {escape(generated)} "
        "by chaos-dynamo report</p>"
        f"{_verdict_table(reports)}{sections}</main></body></html>\n"
    )


def _verdict_table(reports: Sequence[ExperimentReport]) -> str:
    rows = []
    for i, r in enumerate(reports, start=1):
        v = r.verdict
        rows.append(
            f'<tr class="verdict {v.status}"><td><a href="#exp-{i}">{escape(r.title)}</a></td>'
            f"<td>{escape(EXPECT_LABEL.get(v.expect, v.expect))}</td>"
            f'<td class="status {v.status}">{escape(STATUS_LABEL.get(v.status, v.status))}</td>'
            f'<td class="num">{_seconds(r.duration)}</td><td>{_failure_cell(v.first_failure)}</td></tr>')
    return ("<table class=\"verdicts\"><thead><tr><th>experiment</th><th>expected</th><th>result</th>"
            "<th>duration</th><th>first failing probe: value vs tolerance</th></tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table>")


def _failure_cell(failure: model.FirstFailure | None) -> str:
    if failure is None:
        return '<span class="muted">none</span>'
    where = f"{escape(failure.activity)} <span class=\"muted\">({escape(failure.phase)})</span>" \
        if failure.activity else f"<span class=\"muted\">{escape(failure.phase)}</span>"
    if failure.tolerance:
        detail = f"<code>{escape(failure.value)}</code> vs <code>{escape(failure.tolerance)}</code>"
    else:
        detail = f"<code>{escape(failure.value or failure.message)}</code>"
    expected = ' <span class="expected">(expected: the reproduction deviated)</span>' if failure.expected else ""
    return f"{where}: {detail}{expected}"


def _seconds(value: float | None) -> str:
    return "–" if value is None else f"{value:.1f} s"


def _section(index: int, r: ExperimentReport) -> str:
    """One experiment: headline, fault windows, charts (one palette: a service has one colour
    on all of them), probes and activities."""
    v = r.verdict
    started = time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(r.started)) if r.started else "?"
    journal = f"journal <code>{escape(str(r.journal))}</code> · " if r.journal else ""
    notes = "".join(f'<p class="muted">{escape(n)}</p>' for n in r.notes)
    return (
        f'<section class="experiment" id="exp-{index}">'
        f'<h2><span class="badge {v.status}">{escape(STATUS_LABEL.get(v.status, v.status))}</span>'
        f"{escape(r.title)}</h2>"
        f'<p class="headline">{escape(v.headline)}</p>'
        f'<p class="meta">{journal}started {escape(started)} · {_seconds(r.duration)} · expected: '
        f"{escape(EXPECT_LABEL.get(v.expect, v.expect))}</p>{notes}"
        f"{_windows(r)}{_charts(index, r, svg.Palette())}{_probes(r)}{_activities(r)}</section>"
    )


def _windows(r: ExperimentReport) -> str:
    if not r.windows:
        return '<p class="windows muted">No fault window: the method ran no action.</p>'
    items = " · ".join(f"<b>{w.index}</b> {escape(w.name)} (+{w.start:.2f} s to +{w.end:.2f} s)" for w in r.windows)
    return f'<p class="windows"><span class="swatch fault-swatch"></span>Fault windows (method actions): {items}</p>'


def _charts(index: int, r: ExperimentReport, palette: svg.Palette) -> str:
    figures = []
    for n, chart in enumerate(r.charts, start=1):
        legend = "".join(
            f'<span><span class="{LEGEND_MARK.get(style, "line")}" style="background:{color}"></span>'
            f"{escape(name)}</span>" for name, color, style in svg.legend_items(chart, palette))
        summary = f'<span class="summary">{escape(chart.summary)}</span>' if chart.summary else ""
        figures.append(
            f'<figure data-chart="{escape(chart.key)}"><figcaption>{escape(chart.title)}{summary}</figcaption>'
            f'<div class="legend">{legend}</div>{svg.render_chart(chart, r.windows, r.x_max, palette, f"{index}-{n}")}'
            f'<p class="source">data: {escape(chart.source)}</p></figure>')
    reasons: dict[str, list[str]] = {}
    for chart_title, why in r.no_data:
        reasons.setdefault(why, []).append(chart_title)
    no_data = "".join(f'<p class="nodata">No data for {escape(", ".join(titles))}: {escape(why)}.</p>'
                      for why, titles in reasons.items())
    grid = f'<div class="charts">{"".join(figures)}</div>' if figures else ""
    return grid + no_data


def _probes(r: ExperimentReport) -> str:
    if not r.probes:
        return ""
    rows = "".join(
        f"<tr><td>{escape(p.phase)}</td><td>{escape(p.name)}</td><td><code>{escape(p.tolerance)}</code></td>"
        f"<td><code>{escape(p.value)}</code></td>"
        f'<td class="{"ok" if p.met else "bad" if p.met is False else "muted"}">'
        f'{"met" if p.met else "NOT met" if p.met is False else "–"}</td></tr>' for p in r.probes)
    return ("<h3>Steady-state probes</h3><table class=\"probes\"><thead><tr><th>when</th><th>probe</th>"
            f"<th>tolerance</th><th>value</th><th>result</th></tr></thead><tbody>{rows}</tbody></table>")


def _activities(r: ExperimentReport) -> str:
    if not r.activities:
        return ""
    numbers: dict[tuple[str, float | None], int] = {(w.name, w.start): w.index for w in r.windows}
    rows = "".join(
        f"<tr><td>{escape(a.phase)}</td><td>{escape(a.kind)}</td>"
        f"<td>{_window_number(numbers.get((a.name, a.start)))}{escape(a.name)}</td>"
        f'<td class="num">{_offset(a.start)}</td><td class="num">{_offset(a.end)}</td>'
        f'<td class="{"ok" if a.status == "succeeded" else "bad"}">{escape(a.status)}</td>'
        f"<td><code>{escape(a.detail)}</code></td></tr>" for a in r.activities)
    return ("<details open><summary>Method and rollbacks</summary><table class=\"activities\"><thead><tr>"
            "<th>phase</th><th>type</th><th>activity</th><th>start</th><th>end</th><th>status</th><th>output</th>"
            f"</tr></thead><tbody>{rows}</tbody></table></details>")


def _window_number(number: int | None) -> str:
    return "" if number is None else f'<span class="swatch fault-swatch"></span><b>{number}</b> '


def _offset(value: float | None) -> str:
    return "–" if value is None else f"+{value:.2f} s"
