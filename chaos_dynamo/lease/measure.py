"""Lease checkers: pure functions over scans and timelines (no I/O, no clock).

The meaning, unit and a sensible tolerance of each number are in ``docs/probes/lease.md``;
this module is the definition.

Live
    A lease is live at ``t`` when its expiry is after ``t``. A scan reads the table page by
    page; each page's leases are judged at the time that page arrived, so the leases of a
    big table read early in a long scan are not judged against its end.

Baseline
    A deleted lease is not live either. Each sample is judged against a *baseline*: the
    largest ``total`` seen at or before it (in the watcher's timeline, or the probe's own
    samples). The live fraction is ``live / baseline`` and ``missing = baseline - total``
    leases have disappeared. A sample taken before the table ever held a lease (baseline
    0, e.g. the watcher's first scan before the service wrote its leases) has no live
    fraction: it is skipped, and later samples are judged.

Goodput
    Every successful renewal or acquisition bumps a lease's version by one, so the growth
    of ``version_sum`` between two samples is the number of successful writes between
    them. ``renewals_per_second`` is that growth over the seconds between the first
    sample at or after ``start`` and the last at or before ``end``; ``attempts_per_second``
    the growth of the service's cumulative request count over the same span (None when
    unknown); ``efficiency = renewals / attempts``: 1 when every request renews, near 0
    when the service's requests achieve nothing. A fault that bumps versions
    (``expire_leases``) counts as writes too, and a deleted lease makes the sum shrink
    (growth is then taken as 0).

Collapse (:func:`collapse_verdict`)
    Over ``[start, start + window]`` the fleet has *collapsed* when all of these hold:

    - the live fraction stays below ``target`` at every sample;
    - it improves (last sample minus first) by less than ``min_improvement``;
    - the service keeps trying: at least ``min_attempts_per_second`` requests per second,
    - and they achieve little: efficiency below ``max_efficiency``.

    When the request count is unknown (no service to attribute requests to), the last two
    are replaced by "goodput is about zero": fewer successful writes in the window than
    ``min_improvement`` of the table (at least one), and the verdict says so. A fleet that
    is flat and below target but sends fewer than ``min_attempts_per_second`` requests is
    *stalled*, not collapsed: nothing is congesting it (it may have stopped, or be backing
    off); ``seconds_to_live_fraction`` is the probe that fails it.

Leases held by two owners (:class:`DoubleOwnerTracker`)
    Fed successive scans, it counts a *takeover while live*: a lease whose owner changed
    from one holder to another since the previous scan although the previous owner's
    expiry is still after the time the new scan read it (so the new owner wrote it while
    the old lease was live), and a *version regression*: a lease whose version went down
    (a stale holder's write). A change to or from no owner (``""``: released, or not yet
    held) is not a takeover. A lease absent from a scan is forgotten, so one deleted and
    created again is a new lease, not a regression. Each event counts once; a lease taken
    over twice counts twice.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from chaos_dynamo.errors import LabError
from chaos_dynamo.lease.ops import LeaseItem
from chaos_dynamo.lease.timeline import Marker, Sample, Timeline


@dataclass(frozen=True, slots=True)
class Page:
    """Leases read together, and when they arrived (epoch seconds)."""

    t: float
    items: tuple[LeaseItem, ...]


def sample_of(items: Iterable[LeaseItem], t: float, attempts: int | None = None,
              double_owned: int = 0) -> Sample:
    """A sample of ``items`` read at ``t`` (a lease is live when its expiry is after ``t``)."""
    return sample_of_pages([Page(t, tuple(items))], attempts, double_owned)


def sample_of_pages(pages: Sequence[Page], attempts: int | None = None, double_owned: int = 0) -> Sample:
    """A sample of one scan: each page's leases judged at the time that page arrived; the
    sample's ``t`` is the last page's (a scan has at least one page, possibly empty)."""
    if not pages:
        raise ValueError("a scan has at least one page")
    total = live = version_sum = 0
    for page in pages:
        for item in page.items:
            total += 1
            live += item.expires_at > page.t
            version_sum += item.version
    return Sample(t=max(page.t for page in pages), total=total, live=live, expired=total - live,
                  version_sum=version_sum, attempts=attempts, double_owned=double_owned)


@dataclass(frozen=True, slots=True)
class Point:
    """A sample judged against its baseline (see the module docstring)."""

    sample: Sample
    baseline: int

    @property
    def t(self) -> float:
        return self.sample.t

    @property
    def fraction(self) -> float | None:
        """``live / baseline``; None before the table ever held a lease."""
        return self.sample.live / self.baseline if self.baseline else None

    @property
    def missing(self) -> int:
        """Leases gone from the table since the baseline was seen."""
        return self.baseline - self.sample.total

    @property
    def not_live(self) -> int:
        """Leases expired now, or missing."""
        return self.baseline - self.sample.live


def judge(samples: Iterable[Sample], baseline: int = 0) -> list[Point]:
    """Samples by time, each with its baseline: the largest total seen at or before it,
    starting from ``baseline`` (the largest total seen before these samples)."""
    points = []
    for sample in sorted(samples, key=lambda s: s.t):
        baseline = max(baseline, sample.total)
        points.append(Point(sample, baseline))
    return points


def live_fraction(sample: Sample, baseline: int = 0) -> float | None:
    """``live / max(total, baseline)``; None for an empty table with no baseline."""
    return judge([sample], baseline)[0].fraction


def baseline_of(samples: Iterable[Sample]) -> int:
    """The largest total of ``samples`` (0 when none)."""
    return max((s.total for s in samples), default=0)


def in_window(samples: Iterable[Sample], start: float, end: float) -> list[Sample]:
    """Samples with ``start <= t <= end``, by time."""
    return sorted((s for s in samples if start <= s.t <= end), key=lambda s: s.t)


def time_to_fraction(samples: Iterable[Sample], since: float, fraction: float) -> float | None:
    """Seconds from ``since`` to the first sample at or after it whose live fraction (against
    its baseline) is at least ``fraction``; None when no sample reaches it."""
    for point in judge(samples):
        if point.t >= since and point.fraction is not None and point.fraction >= fraction:
            return point.t - since
    return None


@dataclass(frozen=True)
class Goodput:
    """Successful writes and requests between two samples (see the module docstring)."""

    start: float
    end: float
    renewals: int
    attempts: int | None

    @property
    def seconds(self) -> float:
        return self.end - self.start

    @property
    def renewals_per_second(self) -> float:
        return self.renewals / self.seconds if self.seconds > 0 else 0.0

    @property
    def attempts_per_second(self) -> float | None:
        if self.attempts is None:
            return None
        return self.attempts / self.seconds if self.seconds > 0 else 0.0

    @property
    def efficiency(self) -> float | None:
        """Renewals per request; None when requests are unknown or none were sent."""
        if not self.attempts:
            return None
        return self.renewals / self.attempts

    def to_dict(self) -> dict[str, Any]:
        return {"start": self.start, "end": self.end, "seconds": self.seconds, "renewals": self.renewals,
                "renewals_per_second": self.renewals_per_second, "attempts": self.attempts,
                "attempts_per_second": self.attempts_per_second, "efficiency": self.efficiency}


def goodput(samples: Iterable[Sample], start: float, end: float) -> Goodput | None:
    """Goodput between the first sample at or after ``start`` and the last at or before
    ``end``; None with fewer than two samples there."""
    chosen = in_window(samples, start, end)
    if len(chosen) < 2:
        return None
    first, last = chosen[0], chosen[-1]
    attempts = None
    if first.attempts is not None and last.attempts is not None:
        attempts = max(0, last.attempts - first.attempts)
    return Goodput(first.t, last.t, max(0, last.version_sum - first.version_sum), attempts)


def collapse_verdict(timeline: Timeline, start: float, window: float, target: float = 0.99,
                     min_improvement: float = 0.05, max_efficiency: float = 0.1,
                     min_attempts_per_second: float = 1.0) -> dict[str, Any]:
    """Did the fleet collapse over ``[start, start + window]``? (See the module docstring.)

    Live fractions are judged against the baseline over the whole ``timeline`` (so give it
    the samples before the window too); samples before the table held any lease are left out.

    Returns:
        ``{"collapsed", "stalled", "reason", "start", "end", "samples", "first_live_fraction",
        "last_live_fraction", "min_live_fraction", "max_live_fraction", "improvement",
        "below_target", "total", "baseline", "missing", "renewals", "renewals_per_second",
        "attempts", "attempts_per_second", "efficiency", "attempts_known", "target",
        "min_improvement", "max_efficiency", "min_attempts_per_second"}``.

    Raises:
        LabError: fewer than two samples (with a baseline) in the window.
    """
    end = start + window
    points = [p for p in judge(timeline.samples) if start <= p.t <= end and p.fraction is not None]
    chosen = [p.sample for p in points]
    rate = goodput(chosen, start, end)
    if rate is None:
        raise LabError(f"the lease timeline has {len(chosen)} sample(s) of a table holding leases from "
                       f"{start:.3f} to {end:.3f}, too few to judge a collapse (needs two or more)")
    fractions = [p.fraction for p in points if p.fraction is not None]
    first, last = fractions[0], fractions[-1]
    improvement = last - first
    below = all(f < target for f in fractions)
    flat = improvement < min_improvement
    attempts_ps, efficiency = rate.attempts_per_second, rate.efficiency
    total = points[-1].baseline
    numbers: dict[str, Any] = {
        "start": start, "end": end, "samples": len(chosen),
        "first_live_fraction": first, "last_live_fraction": last,
        "min_live_fraction": min(fractions), "max_live_fraction": max(fractions),
        "improvement": improvement, "below_target": below, "total": points[-1].sample.total,
        "baseline": total, "missing": points[-1].missing,
        **{k: v for k, v in rate.to_dict().items() if k not in ("start", "end", "seconds")},
        "attempts_known": rate.attempts is not None, "target": target, "min_improvement": min_improvement,
        "max_efficiency": max_efficiency, "min_attempts_per_second": min_attempts_per_second,
    }
    span = f"over {rate.seconds:.1f} s from {start:.3f}"
    trend = f"live fraction {first:.3f} -> {last:.3f} ({improvement:+.3f})"
    collapsed, stalled = False, False
    if not below:
        reason = f"not collapsed: the live fraction reached {max(fractions):.3f} >= target {target:g} {span}"
    elif not flat:
        reason = f"not collapsed: recovering {span}: {trend}, at least {min_improvement:g}"
    elif attempts_ps is None:
        stuck = rate.renewals < max(1.0, min_improvement * total)
        collapsed = stuck
        reason = (f"{'collapsed' if stuck else 'not collapsed'} (judged without request counts: no "
                  f"service to attribute requests to) {span}: {trend} stayed below {target:g} and "
                  f"{rate.renewals} successful write(s) {'is' if stuck else 'is not'} about zero "
                  f"(fewer than {max(1.0, min_improvement * total):g})")
    elif attempts_ps < min_attempts_per_second:
        stalled = True
        reason = (f"not collapsed but stalled {span}: {trend} stayed below {target:g} while the service "
                  f"sent only {attempts_ps:.2f} requests/s (< {min_attempts_per_second:g}): nothing is "
                  "congesting it (stopped, or backing off); seconds_to_live_fraction judges recovery")
    elif efficiency is not None and efficiency >= max_efficiency:
        reason = (f"not collapsed: {trend} stayed below {target:g} {span} but the service's "
                  f"{attempts_ps:.1f} requests/s renew at an efficiency of {efficiency:.3f} "
                  f">= {max_efficiency:g}")
    else:
        collapsed = True
        reason = (f"collapsed {span}: {trend} stayed below {target:g} while the service sent "
                  f"{attempts_ps:.1f} requests/s at an efficiency of "
                  f"{(efficiency or 0.0):.3f} (< {max_efficiency:g}): busy, and achieving nothing")
    return {"collapsed": collapsed, "stalled": stalled, "reason": reason, **numbers}


class DoubleOwnerTracker:
    """Counts takeovers of live leases and version regressions across successive scans.

    Keeps one (owner, expiry, version) per lease: memory grows with the table, not with
    the number of scans.
    """

    def __init__(self, versioned: bool = True) -> None:
        self.versioned = versioned
        self.takeovers = 0
        self.regressions = 0
        self.examples: list[dict[str, Any]] = []  # the first few events, for the report
        self._last: dict[str, tuple[str, float, int]] = {}

    @property
    def count(self) -> int:
        return self.takeovers + self.regressions

    def feed(self, items: Iterable[LeaseItem], t: float) -> int:
        """One scan read at ``t``; returns the cumulative count."""
        return self.feed_pages([Page(t, tuple(items))])

    def feed_pages(self, pages: Iterable[Page]) -> int:
        """One whole scan, each page judged at the time it arrived; leases absent from it
        are forgotten. Returns the cumulative count."""
        seen: dict[str, tuple[str, float, int]] = {}
        for page in pages:
            t = page.t
            for item in page.items:
                seen[item.key] = (item.owner, item.expires_at, item.version)
                before = self._last.get(item.key)
                if before is None:
                    continue
                owner, expires_at, version = before
                if item.owner != owner and owner and item.owner and expires_at > t:
                    self.takeovers += 1
                    self._example("takeover_while_live", item, t, owner, expires_at, version)
                elif self.versioned and item.version < version:
                    self.regressions += 1
                    self._example("version_regression", item, t, owner, expires_at, version)
        self._last = seen
        return self.count

    def _example(self, kind: str, item: LeaseItem, t: float, owner: str, expires_at: float,
                 version: int) -> None:
        if len(self.examples) < 10:
            self.examples.append({"kind": kind, "key": item.key, "seen_at": t, "previous_owner": owner,
                                  "previous_expires_at": expires_at, "previous_version": version,
                                  "owner": item.owner, "expires_at": item.expires_at,
                                  "version": item.version})


def downsample(timeline: Timeline, max_points: int = 120) -> list[dict[str, Any]]:
    """At most ``max_points`` samples, evenly spread by index (first and last kept), as
    ``{"t", "live_fraction", "live", "total", "missing", "version_sum", "attempts",
    "double_owned"}`` (``live_fraction`` against the baseline; None before any lease)."""
    points = judge(timeline.samples)
    if max_points < 2:
        max_points = 2
    if len(points) > max_points:
        step = (len(points) - 1) / (max_points - 1)
        points = [points[round(i * step)] for i in range(max_points)]
    return [{"t": p.t, "live_fraction": None if p.fraction is None else round(p.fraction, 4),
             "live": p.sample.live, "total": p.sample.total, "missing": p.missing,
             "version_sum": p.sample.version_sum, "attempts": p.sample.attempts,
             "double_owned": p.sample.double_owned} for p in points]


def markers_json(markers: Sequence[Marker]) -> list[dict[str, Any]]:
    return [{"t": m.t, "event": m.event} for m in sorted(markers, key=lambda m: m.t)]


def sample_gap(samples: Sequence[Sample], default: float) -> float:
    """The median gap between the last (up to ten) samples; ``default`` with fewer than two."""
    times = sorted(s.t for s in samples)[-11:]
    gaps = sorted(b - a for a, b in zip(times, times[1:], strict=False) if b > a)
    if not gaps:
        return default
    middle = gaps[len(gaps) // 2]
    return middle if math.isfinite(middle) else default
