"""Chaos Toolkit probes over a name's DNS answer history: does failover stay calm?

Each probe takes the DNS ``name`` it judges: any name the lab DNS serves (A, AAAA or CNAME
records in one of its hosted zones), so it judges the user's own failover automation as
well as the lab's health checks. ``zone`` is optional: when given, the name must lie in it
and the lab must host it. The probes read the name's answer history from the lab
(:mod:`chaos_dynamo.failover.history`) and judge it with :mod:`chaos_dynamo.failover.measure`
(the definitions); meanings, units and tolerances are in ``docs/probes/failover.md``.

Span
    ``since`` above 0: from that time (epoch seconds) to now. Else the run recorded by the
    failover control (:mod:`chaos_dynamo.failover.control`, ``<lab state dir>/failover/run.json``):
    from its start to its end, or to now while it goes on (a run file older than the lab is
    ignored). Else the latest ``window`` seconds. Every output says which in ``basis``.

Fleet
    ``fleet_size`` above 0 is the fleet; 0 means the most addresses the name had in the span.

Tolerances, with ``chaos_dynamo.tolerances`` and ``key``::

    {"type": "probe", "name": "at-most-flaps", "provider": {"type": "python",
     "module": "chaos_dynamo.tolerances", "func": "at_most",
     "arguments": {"limit": "${max_flaps}", "key": "flaps"}}}

The command line ``probes/failover`` is :func:`main`.
"""

import argparse
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from chaos_dynamo.clock import REAL_CLOCK, Clock
from chaos_dynamo.control._client import JsonDict
from chaos_dynamo.endpoint import _lab
from chaos_dynamo.errors import ConfigError, LabError
from chaos_dynamo.failover import measure
from chaos_dynamo.failover.control import RunRecord, read_run, run_path
from chaos_dynamo.failover.history import HistorySource, HttpHistory, normalize
from chaos_dynamo.failover.measure import AnswerTimeline, Span
from chaos_dynamo.lab.state import LabInfo
from chaos_dynamo.tolerances import number_in_range as _number
from chaos_dynamo.verdicts import VerdictParser, lab_configuration, print_verdict
from chaos_dynamo.verdicts import check as _check

__all__ = ["answer_flaps", "capacity_removed_per_minute", "min_capacity_fraction", "seconds_degraded",
           "failover_oscillations", "capacity_fraction", "record_changes", "failover_report"]

logger = logging.getLogger("chaostoolkit")
Configuration = Mapping[str, Any] | None

DEFAULT_WINDOW = 300.0
"""Seconds: the flap and oscillation window, and the span when there is no run."""
REMOVAL_WINDOW = 60.0
"""Seconds: the capacity-removed and change-batch window."""
POLL_INTERVAL = 0.5
"""Seconds between reads while ``capacity_fraction`` waits."""
MAX_SECONDS = 86_400.0
MAX_TIMELINE = 2000
"""Most capacity points a report keeps (the first and last halves when there are more)."""
COMMON = ("name", "since", "until", "basis", "fleet")


# --- arguments ---------------------------------------------------------------------------


def _window(value: object, field_name: str = "window") -> float:
    return _number(field_name, value, 0.0, MAX_SECONDS, open_low=True)


def _fleet_size(value: object) -> int:
    number = value
    if isinstance(number, str):
        try:
            number = float(number.strip())
        except ValueError:
            pass
    if isinstance(number, bool) or not isinstance(number, int | float) or not math.isfinite(number) \
            or number != int(number) or not 0 <= number <= 1_000_000:
        raise ConfigError("fleet_size", f"{value!r} is not a number of addresses",
                          "give the fleet's size (a whole number, e.g. 4), or 0 for the most addresses "
                          "the name had in the span")
    return int(number)


def _since(value: object) -> float:
    try:
        return _number("since", value, 0.0, math.inf)
    except ConfigError:
        raise ConfigError("since", f"{value!r} is not a time", "give a time in epoch seconds (e.g. "
                          "1763600000.0), or 0 for the run's start (else the latest window)") from None


def _zone(zone: object, name: str) -> str:
    """The zone argument, normalized (``""`` when not given); the name must lie in it."""
    if zone is None or (isinstance(zone, str) and not zone.strip()):
        return ""
    cleaned = normalize(zone, "zone")
    if name != cleaned and not name.endswith("." + cleaned):
        raise ConfigError("zone", f"{name!r} does not lie in zone {cleaned!r}",
                          "give the hosted zone the name is in (e.g. us-east-1.amazonaws.com for "
                          "app.us-east-1.amazonaws.com), or \"\": the name alone is enough")
    return cleaned


def _check_zone(zone: str, info: LabInfo) -> None:
    """The lab hosts ``zone``: one of its topology's zones, or one created through its Route 53."""
    if zone in info.zones:
        return
    why = ""
    try:
        listed = _lab.route53(info).list_hosted_zones_by_name(DNSName=zone, MaxItems="1")["HostedZones"]
        if any(normalize(z.get("Name", "")) == zone for z in listed):
            return
    except (BotoCoreError, ClientError, KeyError) as exc:
        why = f"; listing the lab's hosted zones failed: {exc}"
    raise ConfigError("zone", f"{zone!r} is not a hosted zone of the lab (it hosts "
                      f"{sorted(info.zones)} and no other zone of that name{why})",
                      "give the zone the name's records are in, or \"\": the name alone is enough")


@dataclass(frozen=True)
class _Subject:
    """A checked name, where to read its history, and the span arguments."""

    name: str
    since: float
    fleet_size: int
    info: LabInfo
    state: str | None
    source: HistorySource


def _subject(name: object, zone: object, since: object, fleet_size: object, configuration: Configuration,
             source: HistorySource | None = None) -> _Subject:
    """Check the arguments, then find the lab (arguments first: bad input reads nothing)."""
    checked = normalize(name)
    zone_name = _zone(zone, checked)
    start = _since(since)
    size = _fleet_size(fleet_size)
    info = _lab.lab_info(configuration)
    if zone_name:
        _check_zone(zone_name, info)
    state = (configuration or {}).get("chaos_dynamo_state")
    return _Subject(checked, start, size, info, str(state) if state else None,
                    source or HttpHistory(info.api_url))


# --- the span and the judged timeline ----------------------------------------------------


def _span(subject: _Subject, window: float, now: float, *, to_now: bool = False
          ) -> tuple[Span, str, RunRecord | None]:
    """The span to judge and what its start is (see the module docstring)."""
    if subject.since > 0:
        if subject.since > now:
            raise ConfigError("since", f"{subject.since!r} is after now ({now:.3f})",
                              "give a time in epoch seconds in the past, or 0 for the run's start")
        return Span(subject.since, now), "since", None
    run = read_run(subject.state)
    if run is not None and (run.started_at < subject.info.started_at or run.started_at > now):
        logger.info("failover: ignoring the run file %s: its run (started %.3f) is not of the lab "
                    "running now (started %.3f)", run_path(subject.state), run.started_at,
                    subject.info.started_at)
        run = None
    if run is not None:
        end = now if to_now or run.ended_at is None else min(now, max(run.ended_at, run.started_at))
        state = "ended" if run.ended_at is not None else "running"
        return (Span(run.started_at, end),
                f"the run of {run.experiment!r} ({state}; failover control, {run_path(subject.state)})", run)
    return (Span(max(0.0, now - window), now),
            f"the latest {window:g} s (no since, and no run of the failover control)", None)


@dataclass(frozen=True)
class _Judged:
    timeline: AnswerTimeline
    fleet: int
    basis: str
    run: RunRecord | None

    def common(self) -> dict[str, Any]:
        span = self.timeline.span
        return {"name": self.timeline.name, "since": span.start, "until": span.end, "basis": self.basis,
                "fleet": self.fleet}


def _known(subject: _Subject, at: float) -> list[str]:
    """The names the lab answers for (for the error message); [] when it cannot say."""
    try:
        return subject.source.names(at)
    except LabError:
        return []


def _judge(subject: _Subject, window: float, clock: Clock, *, to_now: bool = False) -> _Judged:
    span, basis, run = _span(subject, window, clock.now(), to_now=to_now)
    entries = subject.source.answers(subject.name, span.start)
    if not any(e.time <= span.end for e in entries):
        raise measure.no_answers(subject.name, span.end, _known(subject, span.end))
    timeline = measure.answer_timeline(subject.name, entries, span)
    if timeline.span.start > span.start:
        basis += f"; the name's history begins later, at {timeline.span.start:.3f}"
    return _Judged(timeline, timeline.fleet(subject.fleet_size), basis, run)


# --- one verdict each --------------------------------------------------------------------


def _flaps(judged: _Judged, window: float) -> JsonDict:
    found = measure.flaps(judged.timeline, window)
    return {**judged.common(), "flaps": found.most, "total": found.total, "by_member": found.by_member,
            "window": window, "at": found.at}


def _removed(judged: _Judged, window: float) -> JsonDict:
    found = measure.capacity_removed(judged.timeline, judged.fleet, window)
    return {**judged.common(), "fraction": found.fraction, "removals": found.removals,
            "total_removals": found.total, "window": window, "at": found.at}


def _minimum(judged: _Judged) -> JsonDict:
    found = measure.min_capacity(judged.timeline, judged.fleet)
    return {**judged.common(), "fraction": found.fraction, "at": found.at,
            "members_at_min": sorted(found.members)}


def _degraded(judged: _Judged, below: float) -> JsonDict:
    found = measure.seconds_degraded(judged.timeline, judged.fleet, below)
    return {**judged.common(), "seconds": found.seconds, "fraction_of_span": found.fraction_of_span,
            "span_seconds": found.span_seconds, "below": below,
            "periods": [[start, end] for start, end in found.periods]}


def _roles(judged: _Judged, window: float) -> JsonDict:
    found = measure.roles(judged.timeline, window)
    return {**judged.common(), "oscillations": found.oscillations, "switches": found.switches,
            "roles": [{"time": c.time, "role": c.role} for c in found.changes], "window": window}


def _log(probe: str, result: Mapping[str, Any], summary: str) -> None:
    logger.info("%s of %s = %s over %.1f s from %.3f (%s; fleet %s)", probe, result["name"], summary,
                result["until"] - result["since"], result["since"], result["basis"], result["fleet"])


# --- the probes --------------------------------------------------------------------------


def answer_flaps(name: str, window: float = 300.0, zone: str = "", since: float = 0.0, fleet_size: int = 0, *,
                 configuration: dict[str, Any] | None = None,
                 secrets: dict[str, Any] | None = None) -> JsonDict:
    """The most flaps of ``name`` in any ``window`` seconds of the span: a member that left
    the answer set and re-entered it flaps once per cycle, counted at the re-entry.

    Returns ``{"name", "flaps", "total", "by_member": {address: flaps}, "window", "at",
    "since", "until", "basis", "fleet"}``. Tolerance: ``at_most`` with ``"key": "flaps"``.
    """
    width = _window(window)
    subject = _subject(name, zone, since, fleet_size, configuration)
    result = _flaps(_judge(subject, width, REAL_CLOCK), width)
    _log("answer_flaps", result, f"{result['flaps']} in {width:g} s ({result['total']} in all: "
         f"{result['by_member']})")
    return result


def capacity_removed_per_minute(name: str, window: float = 60.0, zone: str = "", since: float = 0.0,
                                fleet_size: int = 0, *, configuration: dict[str, Any] | None = None,
                                secrets: dict[str, Any] | None = None) -> JsonDict:
    """The most capacity removed from ``name``'s answers in any ``window`` seconds, as a
    fraction of the fleet (members missing from the next answer, each time one is removed).

    Returns ``{"name", "fraction", "removals", "total_removals", "fleet", "window", "at",
    "since", "until", "basis"}``. Tolerance: ``at_most`` with ``"key": "fraction"``.
    """
    width = _window(window)
    subject = _subject(name, zone, since, fleet_size, configuration)
    result = _removed(_judge(subject, width, REAL_CLOCK), width)
    _log("capacity_removed_per_minute", result, f"{result['fraction']:.3f} ({result['removals']} removed "
         f"in {width:g} s, {result['total_removals']} in all)")
    return result


def min_capacity_fraction(name: str, window: float = 300.0, zone: str = "", since: float = 0.0,
                          fleet_size: int = 0, *, configuration: dict[str, Any] | None = None,
                          secrets: dict[str, Any] | None = None) -> JsonDict:
    """The lowest fraction of the fleet ``name`` answered with in the span (``window``: the
    span when there is no ``since`` and no run), and when it was first reached.

    Returns ``{"name", "fraction", "at", "fleet", "members_at_min", "since", "until",
    "basis"}``. Tolerance: ``at_least`` the floor, with ``"key": "fraction"``.
    """
    width = _window(window)
    subject = _subject(name, zone, since, fleet_size, configuration)
    result = _minimum(_judge(subject, width, REAL_CLOCK))
    _log("min_capacity_fraction", result, f"{result['fraction']:.3f} at {result['at']:.3f} "
         f"({result['members_at_min']})")
    return result


def seconds_degraded(name: str, below: float = 1.0, window: float = 300.0, zone: str = "", since: float = 0.0,
                     fleet_size: int = 0, *, configuration: dict[str, Any] | None = None,
                     secrets: dict[str, Any] | None = None) -> JsonDict:
    """Seconds of the span during which ``name`` answered with less than ``below`` of the
    fleet (``window``: the span when there is no ``since`` and no run).

    Returns ``{"name", "seconds", "fraction_of_span", "span_seconds", "below", "periods":
    [[start, end]], "fleet", "since", "until", "basis"}``. Tolerance: ``at_most`` with
    ``"key": "seconds"``.
    """
    threshold = _number("below", below, 0.0, 1.0, open_low=True)
    width = _window(window)
    subject = _subject(name, zone, since, fleet_size, configuration)
    result = _degraded(_judge(subject, width, REAL_CLOCK), threshold)
    _log("seconds_degraded", result, f"{result['seconds']:.1f} s below {threshold:g} "
         f"({result['fraction_of_span']:.3f} of the span)")
    return result


def failover_oscillations(name: str, window: float = 300.0, zone: str = "", since: float = 0.0,
                          fleet_size: int = 0, *, configuration: dict[str, Any] | None = None,
                          secrets: dict[str, Any] | None = None) -> JsonDict:
    """Times ``name`` switched back to a failover role (PRIMARY/SECONDARY) it had left at most
    ``window`` seconds before: PRIMARY -> SECONDARY -> PRIMARY is one oscillation.

    Returns ``{"name", "oscillations", "switches", "roles": [{"time", "role"}], "window",
    "since", "until", "basis", "fleet"}``. Tolerance: ``at_most`` 0 with ``"key":
    "oscillations"``.
    """
    width = _window(window)
    subject = _subject(name, zone, since, fleet_size, configuration)
    result = _roles(_judge(subject, width, REAL_CLOCK), width)
    _log("failover_oscillations", result, f"{result['oscillations']} ({result['switches']} switches: "
         f"{[r['role'] for r in result['roles']]})")
    return result


def capacity_fraction(name: str, wait_for: float = 0.0, timeout: float = 0.0, zone: str = "",
                      since: float = 0.0, fleet_size: int = 0, *,
                      configuration: dict[str, Any] | None = None,
                      secrets: dict[str, Any] | None = None) -> JsonDict:
    """The fraction of the fleet ``name`` answers with now. With ``wait_for`` above 0, reads
    again every 0.5 s for up to ``timeout`` seconds until the fraction reaches ``wait_for``
    (then returns at once; otherwise the last fraction read).

    Returns ``{"name", "fraction", "members", "fleet", "at", "changed_at", "wait_for",
    "waited", "since", "until", "basis"}``. Tolerance: ``at_least`` with ``"key": "fraction"``.
    """
    target = _number("wait_for", wait_for, 0.0, 1.0)
    wait = _number("timeout", timeout, 0.0, MAX_SECONDS)
    subject = _subject(name, zone, since, fleet_size, configuration)
    return capacity_now(subject, target, wait, REAL_CLOCK)


def capacity_now(subject: _Subject, wait_for: float, timeout: float, clock: Clock,
                 interval: float = POLL_INTERVAL) -> JsonDict:
    """:func:`capacity_fraction` with its clock: reads until ``wait_for`` or ``timeout``."""
    began = clock.monotonic()
    while True:
        judged = _judge(subject, DEFAULT_WINDOW, clock, to_now=True)
        last = judged.timeline.states[-1]
        value = measure.fraction(len(last.addresses), judged.fleet)
        left = began + timeout - clock.monotonic()
        if wait_for <= 0 or value >= wait_for or left <= 0:
            break
        clock.sleep(min(interval, left))
    result: JsonDict = {**judged.common(), "fraction": value, "members": sorted(last.addresses),
                        "at": judged.timeline.span.end, "changed_at": last.time, "wait_for": wait_for,
                        "waited": clock.monotonic() - began}
    if wait_for > 0 and value < wait_for:
        logger.warning("capacity_fraction of %s = %.3f: below %g after waiting %.1f s (%d of %d members)",
                       subject.name, value, wait_for, result["waited"], len(last.addresses), judged.fleet)
    else:
        _log("capacity_fraction", result, f"{value:.3f} ({len(last.addresses)} of {judged.fleet} members)")
    return result


def record_changes(name: str, window: float = 60.0, zone: str = "", since: float = 0.0, fleet_size: int = 0,
                   *, configuration: dict[str, Any] | None = None,
                   secrets: dict[str, Any] | None = None) -> JsonDict:
    """The most accepted Route 53 change batches touching ``name`` or a name below it in any
    ``window`` seconds of the span (for the demo topology, ``app.<zone>`` counts the
    controller's writes to ``pool.app.<zone>``).

    Returns ``{"name", "changes", "total", "window", "at", "batches": [...], "since",
    "until", "basis"}``. Tolerance: ``at_most`` with ``"key": "changes"``.
    """
    width = _window(window)
    subject = _subject(name, zone, since, fleet_size, configuration)
    result = _changes(subject, width, REAL_CLOCK)
    logger.info("record_changes of %s = %d batches in %g s (%d in all, from %.3f; %s)", subject.name,
                result["changes"], width, result["total"], result["since"], result["basis"])
    return result


def _changes(subject: _Subject, window: float, clock: Clock, span: Span | None = None,
             basis: str = "") -> JsonDict:
    if span is None:
        span, basis, _ = _span(subject, window, clock.now())
    batches = [b for b in subject.source.changes(subject.name, span.start) if span.start <= b.time <= span.end]
    peak, total = measure.changes_in_window([b.time for b in batches], span, window)
    if not batches and not any(e.time <= span.end for e in subject.source.answers(subject.name, span.start)):
        raise measure.no_answers(subject.name, span.end, _known(subject, span.end))
    return {"name": subject.name, "changes": int(peak.most), "total": total, "window": window, "at": peak.at,
            "batches": [b.to_dict() for b in batches[:100]], "since": span.start, "until": span.end,
            "basis": basis}


def failover_report(name: str, window: float = 300.0, removal_window: float = 60.0, below: float = 1.0,
                    zone: str = "", since: float = 0.0, fleet_size: int = 0, *,
                    configuration: dict[str, Any] | None = None,
                    secrets: dict[str, Any] | None = None) -> JsonDict:
    """Everything at once, for the journal: the capacity timeline ``[{"time", "addresses",
    "fraction", "role"}]`` over the span and every verdict above (flaps and oscillations in
    ``window``, capacity removed and change batches in ``removal_window``, seconds below
    ``below``).

    Chaos Toolkit stops checking a hypothesis at its first failing probe; as a rollback this
    records every number. It judges nothing: give it no tolerance.
    """
    width = _window(window)
    removal = _window(removal_window, "removal_window")
    threshold = _number("below", below, 0.0, 1.0, open_low=True)
    subject = _subject(name, zone, since, fleet_size, configuration)
    return build_report(subject, width, removal, threshold, REAL_CLOCK)


def _nested(result: Mapping[str, Any]) -> JsonDict:
    return {k: v for k, v in result.items() if k not in COMMON}


def build_report(subject: _Subject, window: float, removal_window: float, below: float,
                 clock: Clock) -> JsonDict:
    judged = _judge(subject, window, clock)
    timeline = judged.timeline
    points = [p.to_dict() for p in measure.capacity_timeline(timeline, judged.fleet)]
    dropped = max(0, len(points) - MAX_TIMELINE)
    if dropped:
        points = points[:MAX_TIMELINE // 2] + points[-(MAX_TIMELINE // 2):]
    last = timeline.states[-1]
    run = judged.run
    report: JsonDict = {
        **judged.common(),
        "run": None if run is None else {"experiment": run.experiment, "started_at": run.started_at,
                                         "method_started_at": run.method_started_at,
                                         "method_ended_at": run.method_ended_at, "ended_at": run.ended_at},
        "timeline": points, "timeline_dropped": dropped,
        "capacity_at_end": {"fraction": measure.fraction(len(last.addresses), judged.fleet),
                            "members": sorted(last.addresses), "since": last.time},
        "flaps": _nested(_flaps(judged, window)),
        "capacity_removed": _nested(_removed(judged, removal_window)),
        "min_capacity": _nested(_minimum(judged)),
        "degraded": _nested(_degraded(judged, below)),
        "oscillations": _nested(_roles(judged, window)),
        "changes": _nested(_changes(subject, removal_window, clock, timeline.requested, judged.basis)),
    }
    logger.info("failover_report of %s over %.1f s from %.3f (%s): %d capacity points, flaps %d, capacity "
                "removed %.3f per %g s, min capacity %.3f, %.1f s below %g, %d oscillations, %d change "
                "batches per %g s", subject.name, timeline.span.seconds, timeline.span.start, judged.basis,
                len(timeline.states), report["flaps"]["flaps"], report["capacity_removed"]["fraction"],
                removal_window, report["min_capacity"]["fraction"], report["degraded"]["seconds"], below,
                report["oscillations"]["oscillations"], report["changes"]["changes"], removal_window)
    return report


# --- command line: probes/failover -------------------------------------------------------

MODES = ("flaps", "removed", "min-capacity", "degraded", "oscillations", "capacity", "changes", "report")


def parser() -> argparse.ArgumentParser:
    p = VerdictParser("failover", prog="probes/failover",
                description="Failover verdict over a name's DNS answer history: flaps, capacity removed, "
                            "minimum capacity, time degraded, oscillation, change batches (one JSON verdict; "
                            "exit 0 pass, 1 fail, 2 usage or lab error).")
    p.add_argument("mode", choices=MODES, help="what to judge; report judges every limit given")
    p.add_argument("--name", required=True, help="the DNS name, e.g. app.us-east-1.amazonaws.com")
    p.add_argument("--zone", default="", help="the hosted zone the name is in (optional)")
    p.add_argument("--since", type=float, default=0.0,
                   help="span start, epoch seconds (default: the failover control's run, else the latest "
                        "--window seconds)")
    p.add_argument("--fleet-size", type=int, default=0, help="the fleet (default: the most addresses seen)")
    p.add_lab_options()
    p.add_argument("--window", type=float, default=DEFAULT_WINDOW, help="flap/oscillation window, seconds")
    p.add_argument("--removal-window", type=float, default=REMOVAL_WINDOW,
                   help="capacity-removed and change-batch window, seconds")
    p.add_argument("--below", type=float, default=1.0, help="degraded below this capacity fraction")
    p.add_argument("--max-flaps", type=int, default=None, help="judge: flaps per window (default 0)")
    p.add_argument("--max-oscillations", type=int, default=None, help="judge: oscillations (default 0)")
    p.add_argument("--max-removed", type=float, default=None, help="judge: fraction removed per window")
    p.add_argument("--min-capacity", type=float, default=None,
                   help="judge: minimum capacity fraction (mode capacity: the fraction now, waited for)")
    p.add_argument("--max-seconds-degraded", type=float, default=None, help="judge: seconds degraded")
    p.add_argument("--max-changes", type=int, default=None, help="judge: change batches per window")
    p.add_argument("--timeout", type=float, default=0.0, help="mode capacity: seconds to wait for "
                   "--min-capacity")
    return p


REQUIRED = {"removed": "max_removed", "min-capacity": "min_capacity", "degraded": "max_seconds_degraded",
            "capacity": "min_capacity", "changes": "max_changes"}


def _checks(mode: str, args: argparse.Namespace, result: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The checks of ``mode`` on ``result`` (the report's sections, or one probe's output)."""
    def part(section: str) -> Mapping[str, Any]:
        return result[section] if mode == "report" else result

    wanted: list[tuple[str, Callable[[], dict[str, Any]]]] = [
        ("flaps", lambda: _check("flaps", part("flaps")["flaps"], "<=",
                                 0 if args.max_flaps is None else args.max_flaps)),
        ("oscillations", lambda: _check("oscillations", part("oscillations")["oscillations"], "<=",
                                        0 if args.max_oscillations is None else args.max_oscillations)),
        ("removed", lambda: _check("capacity_removed", part("capacity_removed")["fraction"], "<=",
                                   args.max_removed)),
        ("min-capacity", lambda: _check("min_capacity_fraction", part("min_capacity")["fraction"], ">=",
                                        args.min_capacity)),
        ("degraded", lambda: _check("seconds_degraded", part("degraded")["seconds"], "<=",
                                    args.max_seconds_degraded)),
        ("changes", lambda: _check("change_batches", part("changes")["changes"], "<=", args.max_changes)),
        ("capacity", lambda: _check("capacity_fraction", result["fraction"], ">=", args.min_capacity)),
    ]
    if mode != "report":
        return [make() for key, make in wanted if key == mode]
    given = {"removed": args.max_removed, "min-capacity": args.min_capacity,
             "degraded": args.max_seconds_degraded, "changes": args.max_changes}
    return [make() for key, make in wanted
            if key in ("flaps", "oscillations") or (key != "capacity" and given[key] is not None)]


def run(args: argparse.Namespace) -> dict[str, Any]:
    configuration = lab_configuration(args)
    common = {"zone": args.zone, "since": args.since, "fleet_size": args.fleet_size,
              "configuration": configuration}
    mode = args.mode
    result: JsonDict
    if mode == "flaps":
        result = answer_flaps(args.name, args.window, **common)
    elif mode == "removed":
        result = capacity_removed_per_minute(args.name, args.removal_window, **common)
    elif mode == "min-capacity":
        result = min_capacity_fraction(args.name, args.window, **common)
    elif mode == "degraded":
        result = seconds_degraded(args.name, args.below, args.window, **common)
    elif mode == "oscillations":
        result = failover_oscillations(args.name, args.window, **common)
    elif mode == "capacity":
        result = capacity_fraction(args.name, args.min_capacity, args.timeout, **common)
    elif mode == "changes":
        result = record_changes(args.name, args.removal_window, **common)
    else:
        result = failover_report(args.name, args.window, args.removal_window, args.below, **common)
    checks = _checks(mode, args, result)
    return {"probe": "failover", "ok": all(c["ok"] for c in checks), "name": result["name"], "mode": mode,
            "checks": checks, "result": result}


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``probes/failover``; print one JSON verdict; 0 pass, 1 fail, 2 usage or lab error."""
    p = parser()
    args = p.parse_args(argv)
    needed = REQUIRED.get(args.mode)
    if needed and getattr(args, needed) is None:
        p.error(f"mode {args.mode} needs --{needed.replace('_', '-')}")
    return print_verdict("failover", lambda: run(args), {"name": args.name, "mode": args.mode})
