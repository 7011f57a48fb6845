"""The hardened reference service's retry policy, in small pieces with time injected.

A call goes through, in order:

1. a :class:`CircuitBreaker`: after ``failure_threshold`` consecutive failed calls it opens
   and calls fail fast (:class:`BreakerOpen`, no attempt made); after ``cool_down`` seconds
   one call is let through as a half-open probe (a single attempt); its success closes the
   breaker, its failure opens it again for another cool-down;
2. tenacity: at most ``max_attempts`` attempts, with capped exponential backoff and full
   jitter between them (:class:`FullJitter`: uniform in ``[0, min(cap, base * 2**(n-1))]``);
3. a retry budget, :class:`TokenBucket`: every retry takes a token; successful calls and
   the passing of time put tokens back; with no token the call does not retry.

Only transient failures are retried (:func:`is_retryable`: connection errors, timeouts,
throttling, 5xx), and only those count against the breaker.

Nothing here reads the real clock or the global ``random``: a clock, a ``sleep`` and a
seeded :class:`random.Random` are passed in, so tests drive them with
:class:`chaos_dynamo.clock.FakeClock` and never sleep.
"""

from __future__ import annotations

import enum
import random
import threading
from collections.abc import Callable
from typing import TypeVar

import botocore.exceptions
from tenacity import RetryCallState, Retrying, retry_if_exception
from tenacity.wait import wait_exponential

from chaos_dynamo.clock import REAL_CLOCK, Clock

__all__ = [
    "THROTTLING_CODES",
    "BreakerOpen",
    "BreakerState",
    "CircuitBreaker",
    "FullJitter",
    "HardenedCaller",
    "TokenBucket",
    "is_retryable",
]

T = TypeVar("T")

THROTTLING_CODES = frozenset({
    "ProvisionedThroughputExceededException",
    "ThrottlingException",
    "Throttling",
    "RequestLimitExceeded",
    "TooManyRequestsException",
})
"""DynamoDB error codes that mean "slow down": transient, worth a later retry."""


def is_retryable(error: BaseException) -> bool:
    """True for failures a later attempt may not see: connection errors, timeouts,
    throttling and 5xx answers. Client mistakes (validation, missing table) are not."""
    if isinstance(error, botocore.exceptions.ClientError):
        err = error.response.get("Error", {})
        meta = error.response.get("ResponseMetadata", {})
        status = int(meta.get("HTTPStatusCode", 0) or 0)
        return err.get("Code", "") in THROTTLING_CODES or status >= 500 or status == 429
    return isinstance(error, botocore.exceptions.ConnectionError | botocore.exceptions.HTTPClientError)


class TokenBucket:
    """A retry budget: each retry takes ``cost`` tokens; no tokens, no retry.

    Args:
        capacity: most tokens the bucket holds (it starts full unless ``initial`` is given).
        per_success: tokens a successful call puts back (0.1: one retry per ten successes).
        per_second: tokens the passing of time puts back, so a service that has had no
            success for a while can still try a retry now and then.
        cost: tokens one retry takes.
        clock: only ``monotonic`` is read.
    """

    def __init__(self, capacity: float = 10.0, per_success: float = 0.1, per_second: float = 0.2,
                 cost: float = 1.0, initial: float | None = None, clock: Clock = REAL_CLOCK) -> None:
        if capacity <= 0 or cost <= 0 or per_success < 0 or per_second < 0:
            raise ValueError("capacity and cost must be > 0, refill rates >= 0")
        self.capacity = capacity
        self.per_success = per_success
        self.per_second = per_second
        self.cost = cost
        self._clock = clock
        self._tokens = capacity if initial is None else min(capacity, max(0.0, initial))
        self._last = clock.monotonic()
        self._lock = threading.Lock()

    def _refill(self) -> None:
        now = self._clock.monotonic()
        self._tokens = min(self.capacity, self._tokens + (now - self._last) * self.per_second)
        self._last = now

    @property
    def tokens(self) -> float:
        with self._lock:
            self._refill()
            return self._tokens

    def try_acquire(self) -> bool:
        """Take the cost of one retry if the bucket holds it; False (and take nothing) if not."""
        with self._lock:
            self._refill()
            if self._tokens + 1e-9 < self.cost:
                return False
            self._tokens = max(0.0, self._tokens - self.cost)
            return True

    def record_success(self) -> None:
        with self._lock:
            self._refill()
            self._tokens = min(self.capacity, self._tokens + self.per_success)


class BreakerState(enum.Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class BreakerOpen(Exception):
    """The circuit breaker is open: the call failed fast, without an attempt."""


class CircuitBreaker:
    """Opens after ``failure_threshold`` consecutive failed calls; half-opens after ``cool_down``.

    Use: ``probe = breaker.admit()`` before a call (raises :class:`BreakerOpen` when the call
    must fail fast; returns True when the call is the half-open probe, which should make a
    single attempt), then ``record_success()`` or ``record_failure()`` once the call is over.
    """

    def __init__(self, failure_threshold: int = 5, cool_down: float = 2.0,
                 clock: Clock = REAL_CLOCK) -> None:
        if failure_threshold < 1 or cool_down < 0:
            raise ValueError("failure_threshold must be >= 1 and cool_down >= 0")
        self.failure_threshold = failure_threshold
        self.cool_down = cool_down
        self._clock = clock
        self._lock = threading.Lock()
        self._state = BreakerState.CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self.opened = 0  # times it opened (closed -> open or half-open -> open)

    @property
    def state(self) -> BreakerState:
        with self._lock:
            return self._state

    @property
    def is_open(self) -> bool:
        """True unless closed (a half-open breaker still fails every call but its probe)."""
        return self.state is not BreakerState.CLOSED

    def admit(self) -> bool:
        """Let a call through (True if it is the half-open probe) or raise BreakerOpen."""
        with self._lock:
            if self._state is BreakerState.CLOSED:
                return False
            if (self._state is BreakerState.OPEN
                    and self._clock.monotonic() >= self._opened_at + self.cool_down):
                self._state = BreakerState.HALF_OPEN
                return True
            remaining = max(0.0, self._opened_at + self.cool_down - self._clock.monotonic())
            raise BreakerOpen(f"circuit breaker {self._state.value}: failing fast "
                              f"(next probe in {remaining:.2f} s)")

    def record_success(self) -> None:
        with self._lock:
            self._state = BreakerState.CLOSED
            self._failures = 0

    def record_failure(self) -> None:
        with self._lock:
            if self._state is BreakerState.HALF_OPEN:
                self._open()
                return
            self._failures += 1
            if self._state is BreakerState.CLOSED and self._failures >= self.failure_threshold:
                self._open()

    def _open(self) -> None:
        self._state = BreakerState.OPEN
        self._opened_at = self._clock.monotonic()
        self._failures = 0
        self.opened += 1


class FullJitter(wait_exponential):
    """Capped exponential backoff with full jitter, from an injected random source.

    The wait after attempt ``n`` is uniform in ``[0, min(maximum, multiplier * 2**(n-1))]``,
    as tenacity's ``wait_random_exponential`` (which draws from the global ``random``).
    """

    def __init__(self, multiplier: float = 0.1, maximum: float = 2.0,
                 rng: random.Random | None = None) -> None:
        super().__init__(multiplier=multiplier, max=maximum)
        self._rng = rng if rng is not None else random.Random(0)

    def __call__(self, retry_state: RetryCallState) -> float:
        high = super().__call__(retry_state)
        return self._rng.uniform(0.0, high)


class HardenedCaller:
    """Runs one logical call under the breaker, the retry loop and the budget.

    Args:
        bucket: the retry budget.
        breaker: the circuit breaker.
        max_attempts: attempts per call at most (the half-open probe makes one).
        wait: backoff between attempts (seconds after attempt n).
        retryable: which failures are transient (retried, and counted by the breaker).
        sleep: how to wait between attempts (``clock.sleep``; interruptible in the service).
        on_attempt: called before every attempt (for the attempts metric).
    """

    def __init__(self, bucket: TokenBucket, breaker: CircuitBreaker, *, max_attempts: int = 4,
                 wait: FullJitter | None = None,
                 retryable: Callable[[BaseException], bool] = is_retryable,
                 sleep: Callable[[float], None] = REAL_CLOCK.sleep,
                 on_attempt: Callable[[], None] | None = None) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be >= 1")
        self.bucket = bucket
        self.breaker = breaker
        self.max_attempts = max_attempts
        self.wait = wait if wait is not None else FullJitter()
        self.retryable = retryable
        self.sleep = sleep
        self.on_attempt = on_attempt
        self._lock = threading.Lock()
        self.budget_denied = 0  # retries the budget refused
        self.rejected = 0  # calls the open breaker failed fast

    def call(self, fn: Callable[[], T]) -> T:
        """``fn()`` with retries; raises its last error, or BreakerOpen without calling it."""
        try:
            probe = self.breaker.admit()
        except BreakerOpen:
            with self._lock:
                self.rejected += 1
            raise
        limit = 1 if probe else self.max_attempts

        def stop(state: RetryCallState) -> bool:
            # Evaluated after a retryable failure, in this order so that the last
            # attempt and an open breaker never spend a token.
            if state.attempt_number >= limit or self.breaker.is_open:
                return True
            if not self.bucket.try_acquire():
                with self._lock:
                    self.budget_denied += 1
                return True
            return False

        def attempt() -> T:
            if self.on_attempt is not None:
                self.on_attempt()
            return fn()

        retrying = Retrying(stop=stop, wait=self.wait, retry=retry_if_exception(self.retryable),
                            sleep=self.sleep, reraise=True)
        try:
            result = retrying(attempt)
        except Exception as exc:
            if self.retryable(exc):
                self.breaker.record_failure()
            else:
                self.breaker.record_success()  # the service answered: it is up
            raise
        self.bucket.record_success()
        self.breaker.record_success()
        return result
