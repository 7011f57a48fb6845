"""Who gets re-established when: the policy that decides collapse or recovery.

After a mass expiry every lease needs a re-establishment job, and every job has a deadline
(:attr:`~chaos_dynamo.lease.fleet.FleetParams.job_timeout`). The store serves a fixed number
of requests per second, so the time one job takes grows with the number of jobs running.

- :class:`NaiveManager` is DWFM as the post-event summary describes it: a FIFO work queue,
  many workers, and a job that times out goes straight back to the queue. With enough
  expired leases the workers keep the store so busy that *every* job misses its deadline,
  so nothing is re-established and the queue never shrinks: congestive collapse, which
  outlives its trigger (a metastable failure). A handful of expired leases recover fine.
- :class:`HardenedManager` bounds the work so that what it admits can finish in time: few
  jobs at once, a token bucket on starting them, newest first (a fresh entry is more
  likely to finish before anyone gives up on it), a bounded queue, shedding of entries
  that waited too long, and jittered exponential backoff for failed jobs. It never drops
  a key: everything offered is retried until it is re-established.

Managers are pure: time comes in as ``now``; randomness only from the injected
:class:`random.Random`.
"""

from __future__ import annotations

import heapq
import math
import random
from collections import deque
from typing import Any, Protocol

from chaos_dynamo.errors import ConfigError

__all__ = ["MANAGERS", "HardenedManager", "Manager", "NaiveManager", "RateBucket",
           "full_jitter", "make_manager"]

INF = math.inf
_EPS = 1e-9
# Times are epoch seconds (~1.7e9): a difference of two is exact to ~2.4e-7 s only, so a
# bucket refilled "exactly" to one token may hold 0.999999. Tokens within this of a whole
# one count as whole (a 1e-4 token error is negligible as a rate).
_TOKEN_EPS = 1e-4

REASONS = ("timeout", "error", "condition", "held")


class Manager(Protocol):
    """The queue of leases to re-establish, and when the next job may start."""

    name: str

    def offer(self, key: str, now: float) -> None:
        """``key`` was found expired or lost: it needs a job."""

    def take(self, now: float, jobs_in_flight: int) -> str | None:
        """The next key to start a job on now, or None."""

    def job_done(self, key: str, now: float) -> None:
        """The job on ``key`` re-established the lease."""

    def job_failed(self, key: str, now: float, reason: str) -> None:
        """The job on ``key`` failed: ``"timeout" | "error" | "condition" | "held"``."""

    def next_wake(self, now: float) -> float:
        """The earliest time :meth:`take` may return a key (inf: only after an event)."""

    def queued(self) -> int:
        """Keys waiting for a job (not those running)."""

    def describe(self) -> dict[str, Any]:
        """Settings and counters, JSON-serialisable."""


def _check_int(field: str, value: object, low: int) -> int:
    # A whole float (16.0, as a command line's "workers=16" may arrive) counts as an integer.
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigError(field, f"must be an integer >= {low}, got {value!r}",
                          f"set {field} to an integer >= {low}")
    return value


def _check_float(field: str, value: object, *, allow_zero: bool = False) -> float:
    ok = (not isinstance(value, bool) and isinstance(value, int | float)
          and math.isfinite(value) and (value >= 0 if allow_zero else value > 0))
    if not ok:
        bound = ">= 0" if allow_zero else "> 0"
        raise ConfigError(field, f"must be a finite number {bound}, got {value!r}",
                          f"set {field} to a number {bound}")
    return float(value)  # type: ignore[arg-type]


class NaiveManager:
    """FIFO, many workers, re-queue on failure: the policy that collapses.

    Args:
        workers: jobs running at once at most (DWFM ran many).
        error_pause: after an ``"error"`` job (the store unreachable, not a timeout) the key
            is not taken again for this many seconds: a fixed, un-jittered pause, just enough
            that an outage does not spin the CPU. Timeouts go back to the tail at once.
    """

    name = "naive"

    def __init__(self, workers: int = 16, error_pause: float = 0.2) -> None:
        self.workers = _check_int("workers", workers, 1)
        self.error_pause = _check_float("error_pause", error_pause, allow_zero=True)
        self._queue: deque[str] = deque()
        self._paused: list[tuple[float, int, str]] = []
        self._seq = 0
        self._running: set[str] = set()
        self.offered = 0
        self.started = 0
        self.done = 0
        self.failed = 0
        self.requeued = 0

    def offer(self, key: str, now: float) -> None:
        self.offered += 1
        self._queue.append(key)

    def _unpause(self, now: float) -> None:
        while self._paused and self._paused[0][0] <= now + _EPS:
            self._queue.append(heapq.heappop(self._paused)[2])

    def take(self, now: float, jobs_in_flight: int) -> str | None:
        self._unpause(now)
        if jobs_in_flight >= self.workers or not self._queue:
            return None
        key = self._queue.popleft()
        self._running.add(key)
        self.started += 1
        return key

    def job_done(self, key: str, now: float) -> None:
        self._running.discard(key)
        self.done += 1

    def job_failed(self, key: str, now: float, reason: str) -> None:
        self._running.discard(key)
        self.failed += 1
        self.requeued += 1
        if reason == "error" and self.error_pause > 0:
            self._seq += 1
            heapq.heappush(self._paused, (now + self.error_pause, self._seq, key))
        else:
            self._queue.append(key)  # the tail, at once: "re-queue on timeout"

    def next_wake(self, now: float) -> float:
        if len(self._running) >= self.workers:
            return INF  # a job ending is an event of its own
        if self._queue:
            return now
        return self._paused[0][0] if self._paused else INF

    def queued(self) -> int:
        return len(self._queue) + len(self._paused)

    def describe(self) -> dict[str, Any]:
        return {"manager": self.name, "workers": self.workers, "error_pause": self.error_pause,
                "offered": self.offered, "started": self.started, "done": self.done,
                "failed": self.failed, "requeued": self.requeued, "queued": self.queued(),
                "running": len(self._running)}


class RateBucket:
    """Admission tokens: ``rate`` per second up to ``burst``; starts full.

    Time is passed in (``now``), never read, so one bucket serves the lab and the model.
    """

    def __init__(self, rate: float, burst: float, now: float | None = None) -> None:
        self.rate = rate
        self.burst = burst
        self._tokens = burst
        self._last = now

    def _refill(self, now: float) -> None:
        if self._last is not None and now > self._last:
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
        if self._last is None or now > self._last:
            self._last = now

    def tokens(self, now: float) -> float:
        self._refill(now)
        return self._tokens

    def try_take(self, now: float) -> bool:
        """Take one token if there is one (False, taking nothing, if not)."""
        self._refill(now)
        if self._tokens + _TOKEN_EPS < 1.0:
            return False
        self._tokens = max(0.0, self._tokens - 1.0)
        return True

    def set_rate(self, now: float, rate: float) -> None:
        """Change the refill rate from ``now`` on (tokens earned so far are kept)."""
        self._refill(now)
        self.rate = rate

    def ready_at(self, now: float) -> float:
        """When the next token is there (``now`` if already)."""
        self._refill(now)
        missing = 1.0 - self._tokens
        return now if missing <= _TOKEN_EPS else now + missing / self.rate


def full_jitter(rng: random.Random, base: float, cap: float, failures: int) -> float:
    """Capped exponential backoff with full jitter: ``uniform(0, min(cap, base * 2**failures))``.

    Full jitter spreads retries of many keys that failed together, so they do not come
    back together (the AWS Architecture Blog's "Exponential Backoff and Jitter").
    """
    high = min(cap, base * (2.0 ** min(failures, 60)))
    return rng.uniform(0.0, high)


class HardenedManager:
    """Bounded, newest-first, rate-limited admission with jittered backoff: recovers.

    Args:
        max_in_flight: jobs at once at most: the store's wait per op, hence a job's
            duration, stays below the job deadline.
        rate, burst: a token bucket on job starts (per second, and how many at once),
            so recovery work cannot crowd out the renewals that keep leases live.
        max_queue: entries in the queue at most; offers beyond it wait in a deferred set
            (throttling by queue size, as AWS added to its propagation work).
        max_age: an entry that waited longer than this is shed back to the deferred set
            with jitter, so the queue holds only work that can still finish in time.
        min_rate, increase: the admission rate adapts (AIMD, as TCP does): a job that timed
            out halves it (not below ``min_rate``), each job that finishes adds ``increase``
            per second back (not above ``rate``). A timeout means the store is queueing;
            admitting less is what lets it drain, and what keeps the renewals of the leases
            already won from timing out too.
        backoff, max_backoff: a failed job is re-offered after
            ``uniform(0, min(max_backoff, backoff * 2**failures))`` seconds (``failures``:
            the key's earlier failures), so failures do not return in lock-step.
        rng: the jitter's random source (seeded by the caller).
    """

    name = "hardened"

    def __init__(self, max_in_flight: int = 3, rate: float = 4.0, burst: int = 3,
                 max_queue: int = 64, max_age: float = 5.0, backoff: float = 0.5,
                 max_backoff: float = 8.0, min_rate: float = 1.0, increase: float = 0.25,
                 rng: random.Random | None = None) -> None:
        self.max_in_flight = _check_int("max_in_flight", max_in_flight, 1)
        self.rate = _check_float("rate", rate)
        self.burst = _check_int("burst", burst, 1)
        self.max_queue = _check_int("max_queue", max_queue, 1)
        self.max_age = _check_float("max_age", max_age)
        self.backoff = _check_float("backoff", backoff)
        self.max_backoff = _check_float("max_backoff", max_backoff)
        self.min_rate = _check_float("min_rate", min_rate)
        self.increase = _check_float("increase", increase)
        if self.min_rate > self.rate:
            raise ConfigError("min_rate", f"must be <= rate ({self.rate}), got {self.min_rate}",
                              "lower min_rate or raise rate")
        if self.max_backoff < self.backoff:
            raise ConfigError("max_backoff", f"must be >= backoff ({self.backoff}), "
                              f"got {self.max_backoff}", "raise max_backoff or lower backoff")
        self._rng = rng if rng is not None else random.Random(0)
        self._bucket = RateBucket(self.rate, float(self.burst))
        self._stack: deque[tuple[str, float]] = deque()  # (key, queued at); newest on the right
        self._deferred: list[tuple[float, int, str]] = []  # (ready at, seq, key)
        self._seq = 0
        self._running: set[str] = set()
        self._failures: dict[str, int] = {}
        self.offered = 0
        self.started = 0
        self.done = 0
        self.failed = 0
        self.shed = 0
        self.overflowed = 0
        self.backoffs = 0
        self.slowdowns = 0

    def _defer(self, key: str, ready_at: float) -> None:
        self._seq += 1
        heapq.heappush(self._deferred, (ready_at, self._seq, key))

    def _jitter(self, key: str) -> float:
        return full_jitter(self._rng, self.backoff, self.max_backoff, self._failures.get(key, 0))

    def offer(self, key: str, now: float) -> None:
        self.offered += 1
        if len(self._stack) < self.max_queue:
            self._stack.append((key, now))
        else:
            self.overflowed += 1
            self._defer(key, now)

    def _promote(self, now: float) -> None:
        # Deferred entries whose time has come enter the queue while it has room.
        deferred = self._deferred
        while deferred and deferred[0][0] <= now and len(self._stack) < self.max_queue:
            self._stack.append((heapq.heappop(deferred)[2], now))

    def _shed(self, now: float) -> None:
        # The oldest entries are at the left (LIFO serves the right end).
        stack = self._stack
        while stack and now - stack[0][1] > self.max_age:
            key, _ = stack.popleft()
            self.shed += 1
            self._defer(key, now + self._jitter(key))

    def take(self, now: float, jobs_in_flight: int) -> str | None:
        self._promote(now)
        self._shed(now)
        if (jobs_in_flight >= self.max_in_flight or len(self._running) >= self.max_in_flight
                or not self._stack):
            return None
        if not self._bucket.try_take(now):
            return None
        key, _ = self._stack.pop()
        self._running.add(key)
        self.started += 1
        return key

    def job_done(self, key: str, now: float) -> None:
        self._running.discard(key)
        self._failures.pop(key, None)
        self.done += 1
        self._bucket.set_rate(now, min(self.rate, self._bucket.rate + self.increase))

    def job_failed(self, key: str, now: float, reason: str) -> None:
        self._running.discard(key)
        self.failed += 1
        self.backoffs += 1
        if reason == "timeout":
            self.slowdowns += 1
            self._bucket.set_rate(now, max(self.min_rate, self._bucket.rate / 2.0))
        delay = self._jitter(key)
        self._failures[key] = self._failures.get(key, 0) + 1
        self._defer(key, now + delay)

    def next_wake(self, now: float) -> float:
        if len(self._running) >= self.max_in_flight:
            return INF  # a job ending is an event of its own
        if self._stack:
            # Either a token arrives or, if the stack ages out meanwhile, take() sheds it.
            return self._bucket.ready_at(now)
        if self._deferred:
            return max(self._deferred[0][0], self._bucket.ready_at(now))
        return INF

    def queued(self) -> int:
        return len(self._stack) + len(self._deferred)

    def describe(self) -> dict[str, Any]:
        return {"manager": self.name, "max_in_flight": self.max_in_flight, "rate": self.rate,
                "burst": self.burst, "max_queue": self.max_queue, "max_age": self.max_age,
                "backoff": self.backoff, "max_backoff": self.max_backoff,
                "min_rate": self.min_rate, "increase": self.increase,
                "admission_rate": self._bucket.rate, "slowdowns": self.slowdowns,
                "offered": self.offered, "started": self.started, "done": self.done,
                "failed": self.failed, "shed": self.shed, "overflowed": self.overflowed,
                "backoffs": self.backoffs, "queued": self.queued(),
                "in_queue": len(self._stack), "deferred": len(self._deferred),
                "running": len(self._running)}


MANAGERS = ("naive", "hardened")


def make_manager(name: str, rng: random.Random, **overrides: Any) -> Manager:
    """A manager by name (``"naive"`` or ``"hardened"``) with its settings overridden.

    Raises:
        ConfigError: ``manager`` for an unknown name, or the field of a bad setting.
    """
    if name == "naive":
        try:
            return NaiveManager(**overrides)
        except TypeError as exc:
            raise ConfigError("manager", f"unknown setting for naive: {exc}",
                              "use workers, error_pause") from None
    if name == "hardened":
        try:
            return HardenedManager(rng=rng, **overrides)
        except TypeError as exc:
            raise ConfigError("manager", f"unknown setting for hardened: {exc}",
                              "use max_in_flight, rate, burst, max_queue, max_age, backoff, "
                              "max_backoff") from None
    raise ConfigError("manager", f"unknown manager {name!r}",
                      f"use one of: {', '.join(MANAGERS)}")
