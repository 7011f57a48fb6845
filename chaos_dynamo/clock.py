"""The one module that touches real time.

Everything else takes a :class:`Clock` (or its ``now``/``monotonic``/``sleep``
callables), so tests and the explorer can drive time themselves.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Seconds since the epoch (wall clock, for logs and lease expiries)."""

    def monotonic(self) -> float:
        """Seconds on a clock that never goes backwards (for durations)."""

    def sleep(self, seconds: float) -> None:
        """Block for ``seconds``."""


@dataclass(frozen=True)
class RealClock:
    """The machine's clocks."""

    def now(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)


REAL_CLOCK = RealClock()


class FakeClock:
    """A clock that moves only when told to; ``sleep`` advances it instantly."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._now = start
        self._mono = 0.0
        self._lock = threading.Lock()

    def now(self) -> float:
        with self._lock:
            return self._now

    def monotonic(self) -> float:
        with self._lock:
            return self._mono

    def sleep(self, seconds: float) -> None:
        self.advance(seconds)

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += max(0.0, seconds)
            self._mono += max(0.0, seconds)


def wait_until(predicate: Callable[[], object], timeout: float, interval: float = 0.02,
               clock: Clock = REAL_CLOCK) -> bool:
    """Poll ``predicate`` until it is true or ``timeout`` seconds pass; return its last value."""
    deadline = clock.monotonic() + timeout
    while True:
        if predicate():
            return True
        if clock.monotonic() >= deadline:
            return bool(predicate())
        clock.sleep(interval)
