"""The report's charts as data (series of points, markers, thresholds); pure.

x is seconds from the run's start (the journal's ``start``). Each builder returns nothing
when its data does not exist, so the page can say "no data" instead of drawing an empty
frame. Where each chart's data comes from:

- DNS answers per endpoint, active plan generation, request / DNS query / error / change
  rates, unhealthy health checks: the lab sidecar (:mod:`chaos_dynamo.report.collect`);
- live-lease fraction: the last ``lease_report`` output in the journal (``timeline`` of
  ``{"t", "live_fraction"}``, ``markers``, ``seconds_to_live_fraction``, ``collapse``);
- capacity and flaps: the last ``failover_report`` output in the journal (``timeline`` of
  ``{"time", "addresses", "fraction", "role"}``); a flap is a member re-entering the
  answer set after it had left it, as ``answer_flaps`` counts them.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["Chart", "Marker", "Series", "activity_records", "all_charts", "data_ends", "flap_times", "number"]

JsonDict = dict[str, Any]
NO_SIDECAR = "no lab timeline (<journal>.lab.json) next to the journal"


@dataclass(frozen=True)
class Series:
    """One line of a chart. ``style``: ``step`` (a state held until the next point),
    ``line`` (samples joined), ``stack`` (a rate per bucket, held over the bucket, drawn as
    a band on top of the chart's previous stack series) or ``dots``.
    ``key`` picks the colour: the same key, the same colour on every chart of a report."""

    name: str
    key: str
    points: tuple[tuple[float, float], ...]
    style: str = "step"
    notes: tuple[str, ...] = ()  # a tooltip per point (dots)


@dataclass(frozen=True)
class Marker:
    """A vertical line at ``x``: an event such as a flap or a generation going backwards."""

    x: float
    label: str
    bad: bool = False


@dataclass(frozen=True)
class Chart:
    """One small chart; y runs from 0 to ``y_max`` (None: a round number above the data)."""

    key: str
    title: str
    y_label: str
    series: tuple[Series, ...]
    source: str
    y_max: float | None = None
    integer: bool = False
    markers: tuple[Marker, ...] = ()
    thresholds: tuple[tuple[float, str], ...] = ()
    summary: str = ""


RATE_CHARTS = (
    ("lb_requests", "LB requests per second, by service", "requests/s", "LB request log"),
    ("dns_queries", "DNS queries per second, by client", "queries/s", "DNS query log"),
    ("lb_operations", "LB requests per second, by operation", "requests/s", "LB request log"),
    ("lb_errors", "LB error answers per second, by status", "answers/s", "LB request log"),
    ("route53_changes", "Route 53 change batches per second", "batches/s", "Route 53 changes"),
)


def all_charts(journal: Mapping[str, Any], sidecar: JsonDict | None, t0: float, x_max: float,
               names: Mapping[str, str]) -> tuple[list[Chart], list[tuple[str, str]]]:
    """Every chart with data, in reading order, and (chart, why) for those without."""
    builders: list[tuple[str, Callable[[], list[Chart]], str]] = [
        ("DNS answers per endpoint", lambda: endpoint_charts(sidecar, t0, x_max), ""),
        ("Active plan generation", lambda: _listed(generation_chart(sidecar, t0, x_max)), ""),
        ("Live-lease fraction", lambda: _listed(lease_chart(journal, t0)), "no lease_report output in the journal"),
        ("Capacity and flaps", lambda: _listed(capacity_chart(journal, t0, x_max)),
         "no failover_report output in the journal"),
    ]
    for family, title, unit, source in RATE_CHARTS:
        builders.append((title, _bind(rate_chart, sidecar, t0, family, title, unit, source, names), ""))
    builders.append(("Unhealthy health checks", lambda: _listed(health_chart(sidecar, t0, x_max)), ""))
    made: list[Chart] = []
    missing: list[tuple[str, str]] = []
    for title, build, why in builders:
        charts = build()
        made += charts
        if not charts:
            missing.append((title, why or _why_not_recorded(sidecar)))
    return made, missing


def _bind(make: Callable[..., Chart | None], *args: Any) -> Callable[[], list[Chart]]:
    return lambda: _listed(make(*args))


def _listed(chart: Chart | None) -> list[Chart]:
    return [] if chart is None else [chart]


def _why_not_recorded(sidecar: JsonDict | None) -> str:
    if sidecar is None:
        return NO_SIDECAR
    missing = sidecar.get("missing") or []
    return f"the lab could not answer {', '.join(missing)}" if missing else "nothing recorded in the run's span"


def number(value: object) -> float | None:
    """``value`` as a float if it is a real number (not a bool), else None."""
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def data_ends(journal: Mapping[str, Any], sidecar: JsonDict | None, t0: float) -> list[float]:
    """Where the charts' data ends, in seconds from ``t0`` (the x axis must reach it)."""
    ends = []
    until = number((sidecar or {}).get("until"))
    if until is not None:
        ends.append(until - t0)
    lease = find_output(journal, is_lease_report)
    if lease is not None:
        ends.append(float(lease["timeline"][-1]["t"]) - t0)
    return ends


def activity_records(journal: Mapping[str, Any]) -> Iterator[JsonDict]:
    """Every activity record of a journal: steady-state probes, method, rollbacks."""
    steady = journal.get("steady_states") or {}
    for phase in ("before", "after"):
        yield from (p for p in (steady.get(phase) or {}).get("probes", []) if isinstance(p, dict))
    yield from (r for r in journal.get("run") or [] if isinstance(r, dict))
    yield from (r for r in journal.get("rollbacks") or [] if isinstance(r, dict))


def _held(points: Iterable[tuple[float, float]], x_max: float) -> tuple[tuple[float, float], ...]:
    """A state series over [0, x_max]: the state at 0 is the last point at or before 0, and
    the last state is held to ``x_max``."""
    ordered = sorted(points)
    before = [p for p in ordered if p[0] <= 0]
    out = [(0.0, before[-1][1])] if before else []
    out += [p for p in ordered if 0 < p[0] <= x_max]
    if out:
        out.append((x_max, out[-1][1]))
    return tuple(out)


# --- from the sidecar ----------------------------------------------------------------------------

def endpoint_charts(sidecar: JsonDict | None, t0: float, x_max: float) -> list[Chart]:
    """What an endpoint's name resolves to (the lab's state) and what each answer held (the
    DNS log): for the primary endpoint when it was queried, for any endpoint that changed."""
    charts = []
    for i, (name, data) in enumerate(((sidecar or {}).get("endpoints") or {}).items()):
        addresses = [(float(p["time"]) - t0, float(p["addresses"])) for p in data.get("addresses", [])
                     if number(p.get("addresses")) is not None]
        queries = [q for q in data.get("queries", []) if 0 <= float(q["time"]) - t0 <= x_max]
        if len({y for _, y in addresses}) < 2 and not (i == 0 and queries):
            continue
        series = [Series("addresses the name resolves to", "addresses", _held(addresses, x_max))] if addresses else []
        series += [_answers(queries, qtype, t0) for qtype in sorted({str(q["qtype"]) for q in queries})]
        empty = sum(int(q["queries"]) for q in queries if q["qtype"] == "A" and q["rcode"] == "NOERROR"
                    and not q["answers"])
        charts.append(Chart(f"endpoint:{name}", f"DNS answers: {name}", "addresses", tuple(series),
                            "lab availability timeline and DNS query log", integer=True,
                            summary=f"{empty} A quer{'y' if empty == 1 else 'ies'} answered NOERROR with no address"
                            if empty else ""))
    return charts


def _answers(queries: Sequence[JsonDict], qtype: str, t0: float) -> Series:
    """Dots: what answers of one type held, one dot per run of equal answers."""
    mine = [q for q in queries if q["qtype"] == qtype]
    notes = tuple(f"{q['queries']} {qtype} quer{'y' if q['queries'] == 1 else 'ies'} from "
                  f"+{float(q['time']) - t0:.2f} s: {q['rcode']}, {q['answers']} address(es)" for q in mine)
    return Series(f"addresses per {qtype} answer", f"answers-{qtype}",
                  tuple((float(q["time"]) - t0, float(q["answers"])) for q in mine), style="dots", notes=notes)


def generation_chart(sidecar: JsonDict | None, t0: float, x_max: float) -> Chart | None:
    """The active plan generation per endpoint the control plane changed; backwards moves marked."""
    series, markers = [], []
    for name, data in ((sidecar or {}).get("endpoints") or {}).items():
        points = [p for p in data.get("generations", []) if number(p.get("generation")) is not None]
        if not points:
            continue
        series.append(Series(name, f"endpoint:{name}",
                             _held(((float(p["time"]) - t0, float(p["generation"])) for p in points), x_max)))
        markers += [Marker(float(p["time"]) - t0, f"{name}: back to generation {p['generation']} ({p['actor']})",
                           bad=True) for p in points if p.get("backwards")]
    if not series:
        return None
    return Chart("generations", "Active plan generation", "generation", tuple(series),
                 "control plane: changes of the active generation in Route 53", integer=True,
                 markers=tuple(markers), summary=f"{len(markers)} move(s) backwards" if markers else "")


def rate_chart(sidecar: JsonDict | None, t0: float, family: str, title: str, unit: str, source: str,
               names: Mapping[str, str]) -> Chart | None:
    """Counts per bucket as a rate, one series per key (an address named by ``names``)."""
    if sidecar is None:
        return None
    rates = sidecar.get("rates") or {}
    width = number(rates.get("bucket_seconds")) or 1.0
    start = float(sidecar.get("since", t0)) - t0
    series, totals = [], []
    for key, counts in sorted((rates.get(family) or {}).items(), key=lambda kv: (-sum(kv[1]), kv[0])):
        if not counts or not sum(counts):
            continue
        label = who(key, names)
        points = [(start + i * width, c / width) for i, c in enumerate(counts)]
        points.append((start + len(counts) * width, counts[-1] / width))
        series.append(Series(label, f"who:{label}", tuple(points), style="stack"))
        totals.append(f"{label} {sum(counts)}")
    if not series:
        return None
    return Chart(f"rate:{family}", title, unit, tuple(series), f"lab {source}, {width:g} s buckets",
                 summary="totals: " + ", ".join(totals))


def who(key: str, names: Mapping[str, str]) -> str:
    """A rate series' label: the service an address belongs to, else the address."""
    if key in names:
        return names[key]
    if key == "127.0.0.1":
        return "127.0.0.1 (probes, lab)"
    return key if re.fullmatch(r"\d+\.\d+\.\d+\.\d+", key) is None else f"{key} (no service known)"


def health_chart(sidecar: JsonDict | None, t0: float, x_max: float) -> Chart | None:
    """How many Route 53 health checks the lab's checkers held unhealthy, over time."""
    health = (sidecar or {}).get("health") or {}
    transitions = health.get("transitions") or []
    unhealthy = {str(i) for i in health.get("unhealthy_at_since") or []}
    if not transitions and not unhealthy:
        return None
    points = [(float((sidecar or {}).get("since", t0)) - t0, float(len(unhealthy)))]
    for t in transitions:
        if t.get("healthy"):
            unhealthy.discard(str(t.get("id")))
        else:
            unhealthy.add(str(t.get("id")))
        points.append((float(t["time"]) - t0, float(len(unhealthy))))
    return Chart("health", "Unhealthy Route 53 health checks", "checks",
                 (Series("unhealthy checks", "unhealthy", _held(points, x_max)),), "lab health-check log",
                 integer=True, summary=f"{len(transitions)} transition(s)")


# --- from the journal's reports ------------------------------------------------------------------

def find_output(journal: Mapping[str, Any], accept: Callable[[Mapping[str, Any]], bool]) -> JsonDict | None:
    """The last activity output in the journal that ``accept`` takes."""
    found = None
    for record in activity_records(journal):
        output = record.get("output")
        if isinstance(output, dict) and accept(output):
            found = output
    return found


def is_lease_report(output: Mapping[str, Any]) -> bool:
    timeline = output.get("timeline")
    return isinstance(timeline, list) and bool(timeline) and all(
        isinstance(p, dict) and "live_fraction" in p and number(p.get("t")) is not None for p in timeline)


def is_failover_report(output: Mapping[str, Any]) -> bool:
    timeline = output.get("timeline")
    return isinstance(timeline, list) and bool(timeline) and all(
        isinstance(p, dict) and number(p.get("fraction")) is not None and number(p.get("time")) is not None
        and isinstance(p.get("addresses"), list) for p in timeline)


def lease_chart(journal: Mapping[str, Any], t0: float) -> Chart | None:
    """The live-lease fraction over the run, the trigger markers and the target fraction."""
    report = find_output(journal, is_lease_report)
    if report is None:
        return None
    points = tuple((float(p["t"]) - t0, float(p["live_fraction"])) for p in report["timeline"]
                   if number(p.get("live_fraction")) is not None)
    markers = tuple(Marker(float(m["t"]) - t0, str(m.get("event", "")).replace("_", " "))
                    for m in report.get("markers") or [] if isinstance(m, dict) and number(m.get("t")) is not None)
    to_live = report.get("seconds_to_live_fraction") or {}
    target, seconds = number(to_live.get("fraction")), number(to_live.get("seconds"))
    collapse = report.get("collapse") or {}
    summary = [f"{target:g} live {seconds:.1f} s after the trigger's end"
               if target is not None and seconds is not None else "",
               ("COLLAPSED" if collapse.get("collapsed") else "no collapse") if "collapsed" in collapse else "",
               f"{report['double_owned']} double-owned" if report.get("double_owned") else ""]
    return Chart("leases", "Live-lease fraction", "live fraction",
                 (Series("live leases", "live-leases", points, style="line"),), "lease_report output in the journal",
                 y_max=1.0, markers=markers, thresholds=((target, f"target {target:g}"),) if target is not None else (),
                 summary="; ".join(s for s in summary if s))


def capacity_chart(journal: Mapping[str, Any], t0: float, x_max: float) -> Chart | None:
    """The answering fraction of the fleet over the run, with a marker at every flap."""
    report = find_output(journal, is_failover_report)
    if report is None:
        return None
    timeline = sorted(report["timeline"], key=lambda p: float(p["time"]))
    until = number(report.get("until"))
    end = min(x_max, until - t0) if until is not None else x_max
    series = Series(f"capacity of {report.get('name', 'the name')}", "capacity",
                    _held(((float(p["time"]) - t0, float(p["fraction"])) for p in timeline), end))
    flaps = tuple(Marker(t - t0, f"flap: {member} back in the answer") for t, member in flap_times(timeline))
    least = number((report.get("min_capacity") or {}).get("fraction"))
    summary = [f"{len(flaps)} flap(s)", f"min capacity {least:.2f}" if least is not None else "",
               f"{(report.get('oscillations') or {}).get('oscillations', 0)} PRIMARY/SECONDARY oscillation(s)"]
    return Chart("capacity", "Capacity and flaps", "fraction of the fleet", (series,),
                 "failover_report output in the journal", y_max=1.0, markers=flaps,
                 summary="; ".join(s for s in summary if s))


def flap_times(timeline: Sequence[Mapping[str, Any]]) -> list[tuple[float, str]]:
    """(time, member) each time a member re-enters the answer set after having left it."""
    seen: set[str] = set()
    current: set[str] = set()
    flaps = []
    for point in timeline:
        members = {str(a) for a in point.get("addresses") or []}
        flaps += [(float(point["time"]), m) for m in sorted(members - current) if m in seen]
        seen |= members
        current = members
    return flaps
