"""Lease checkers: pure functions over scans and timelines (no I/O, no clock).

The meaning, unit and a sensible tolerance of each number are in ``docs/probes/lease.md``;
this module is the definition.

Live
    A lease is live at ``t`` when its expiry is after ``t``. The live fraction of a sample
    is ``live / total`` (1.0 for an empty table: nothing is expired).

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
    since the previous scan although the previous owner's expiry is still after the end
    of the new scan (so the new owner wrote it while the old lease was live), and a
    *version regression*: a lease whose version went down (a stale holder's write, or a
    lease deleted and created again). Each event counts once; a lease taken over twice
    counts twice.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from chaos_dynamo.errors import LabError
from chaos_dynamo.lease.ops import LeaseItem
from chaos_dynamo.lease.timeline import Marker, Sample, Timeline


def sample_of(items: Iterable[LeaseItem], t: float, attempts: int | None = None,
              double_owned: int = 0) -> Sample:
    """A sample of ``items`` read at ``t`` (a lease is live when its expiry is after ``t``)."""
    total = live = version_sum = 0
    for item in items:
        total += 1
        live += item.expires_at > t
        version_sum += item.version
    return Sample(t=t, total=total, live=live, expired=total - live, version_sum=version_sum,
                  attempts=attempts, double_owned=double_owned)


def live_fraction(sample: Sample) -> float:
    """``live / total``; 1.0 for an empty table."""
    return sample.live_fraction


def in_window(samples: Iterable[Sample], start: float, end: float) -> list[Sample]:
    """Samples with ``start <= t <= end``, by time."""
    return sorted((s for s in samples if start <= s.t <= end), key=lambda s: s.t)


def time_to_fraction(samples: Iterable[Sample], since: float, fraction: float) -> float | None:
    """Seconds from ``since`` to the first sample at or after it whose live fraction is at
    least ``fraction``; None when no sample reaches it."""
    for sample in sorted(samples, key=lambda s: s.t):
        if sample.t >= since and sample.live_fraction >= fraction:
            return sample.t - since
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

    Returns:
        ``{"collapsed", "stalled", "reason", "start", "end", "samples", "first_live_fraction",
        "last_live_fraction", "min_live_fraction", "max_live_fraction", "improvement",
        "below_target", "renewals", "renewals_per_second", "attempts", "attempts_per_second",
        "efficiency", "attempts_known", "target", "min_improvement", "max_efficiency",
        "min_attempts_per_second"}``.

    Raises:
        LabError: fewer than two samples in the window.
    """
    end = start + window
    chosen = in_window(timeline.samples, start, end)
    rate = goodput(chosen, start, end)
    if rate is None:
        raise LabError(f"the lease timeline has {len(chosen)} sample(s) from {start:.3f} to {end:.3f}, "
                       "too few to judge a collapse (needs two or more)")
    fractions = [s.live_fraction for s in chosen]
    first, last = fractions[0], fractions[-1]
    improvement = last - first
    below = all(f < target for f in fractions)
    flat = improvement < min_improvement
    attempts_ps, efficiency = rate.attempts_per_second, rate.efficiency
    total = max(s.total for s in chosen)
    numbers: dict[str, Any] = {
        "start": start, "end": end, "samples": len(chosen),
        "first_live_fraction": first, "last_live_fraction": last,
        "min_live_fraction": min(fractions), "max_live_fraction": max(fractions),
        "improvement": improvement, "below_target": below, "total": total,
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
        """One scan that ended at ``t``; returns the cumulative count."""
        for item in items:
            before = self._last.get(item.key)
            self._last[item.key] = (item.owner, item.expires_at, item.version)
            if before is None:
                continue
            owner, expires_at, version = before
            if item.owner != owner and expires_at > t:
                self.takeovers += 1
                self._example("takeover_while_live", item, t, owner, expires_at, version)
            elif self.versioned and item.version < version:
                self.regressions += 1
                self._example("version_regression", item, t, owner, expires_at, version)
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
    ``{"t", "live_fraction", "live", "total", "version_sum", "attempts", "double_owned"}``."""
    samples = sorted(timeline.samples, key=lambda s: s.t)
    if max_points < 2:
        max_points = 2
    if len(samples) > max_points:
        step = (len(samples) - 1) / (max_points - 1)
        samples = [samples[round(i * step)] for i in range(max_points)]
    return [{"t": s.t, "live_fraction": round(s.live_fraction, 4), "live": s.live, "total": s.total,
             "version_sum": s.version_sum, "attempts": s.attempts, "double_owned": s.double_owned}
            for s in samples]


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
