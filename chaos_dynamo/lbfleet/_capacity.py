"""DynamoDB's finite capacity, as the lab models it: ``slots`` servers shared by every LB.

A DynamoDB request that an LB forwards first takes one of ``slots`` slots, in strict
arrival order (a queue: ``threading.Semaphore`` does not promise FIFO), holds it for
``service_time`` seconds on top of the emulator's own time, and gives it back once the
emulator has answered. So the fleet serves at most ``slots / (service_time + emulator
time)`` requests per second, and a burst beyond that waits in line.

A client that gives up (read timeout, closed socket) does not take its request back: the
LB still waits for the slot and forwards the request, as a real server still works on a
request whose caller has left. That is the wasted work that keeps an overloaded system
busy after the overload is gone. Only the LB itself cancels a request (going down, the lab
stopping): it sets the connection's ``killed`` event and calls :meth:`BackendCapacity.wake`.

Defaults: unlimited slots and no service time, so the lab behaves as without this model.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from chaos_dynamo.errors import ConfigError

__all__ = [
    "BackendCapacity",
    "MAX_SERVICE_TIME",
    "MAX_SLOTS",
    "check_capacity",
    "check_service_time",
    "check_slots",
]

MAX_SLOTS = 10_000
"""The largest finite ``slots``: beyond it, ask for unlimited (None)."""
MAX_SERVICE_TIME = 60.0
"""The longest ``service_time`` in seconds: a longer one looks like an outage, not a slow server."""

T = TypeVar("T")
Wait = Callable[[threading.Event, float], bool]


def _event_wait(event: threading.Event, seconds: float) -> bool:
    return event.wait(seconds)


def check_slots(value: object, field_name: str = "slots") -> int | None:
    """``value`` as a slot count (None = unlimited), or a ConfigError naming ``field_name``."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_SLOTS:
        raise ConfigError(
            field_name,
            f"{value!r} is not a number of slots",
            f"use a whole number 1..{MAX_SLOTS}, or null for unlimited capacity",
        )
    return value


def check_service_time(value: object, field_name: str = "service_time") -> float:
    """``value`` as seconds 0..MAX_SERVICE_TIME, or a ConfigError naming ``field_name``."""
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or not 0 <= value <= MAX_SERVICE_TIME
    ):
        raise ConfigError(
            field_name,
            f"{value!r} is not a service time",
            f"use seconds 0..{MAX_SERVICE_TIME:g} (0 = only the emulator's own time)",
        )
    return float(value)


def check_capacity(
    slots: object, service_time: object, prefix: str = ""
) -> tuple[int | None, float]:
    """Both knobs checked (fields ``<prefix>slots``, ``<prefix>service_time``), or ConfigError."""
    return (
        check_slots(slots, f"{prefix}slots"),
        check_service_time(service_time, f"{prefix}service_time"),
    )


@dataclass(eq=False)
class _Waiter:
    """One request in line; ``turn`` is notified when it is admitted (or must look again)."""

    turn: threading.Condition
    cancelled: threading.Event
    admitted: bool = False
    service_time: float = 0.0


class BackendCapacity:
    """A FIFO gate of ``slots`` slots, shared by every LB of a fleet; thread-safe.

    Args:
        slots: requests served at once; None (the default) is unlimited.
        service_time: seconds each request holds its slot before it is forwarded.
        wait: how the service time is waited out, ``wait(cancelled, seconds) -> True if
            cancelled``; an Event wait by default (tests inject their own).

    Raises:
        ConfigError: naming ``slots`` or ``service_time``.
    """

    def __init__(
        self, slots: int | None = None, service_time: float = 0.0, *, wait: Wait = _event_wait
    ) -> None:
        self._slots, self._service_time = check_capacity(slots, service_time)
        self._wait = wait
        self._lock = threading.Lock()
        self._queue: deque[_Waiter] = deque()
        self._in_service = 0
        self._served = 0
        self._cancelled = 0
        self._max_waiting = 0

    # ----------------------------------------------------------------- knobs

    def configure(self, slots: int | None, service_time: float) -> dict[str, Any]:
        """Set both knobs (checked first: a bad value changes nothing); returns ``describe()``.

        The new values hold for requests admitted from now on; requests already in
        service keep the service time they started with. More slots admit waiters now.
        """
        slots, service_time = check_capacity(slots, service_time)
        with self._lock:
            self._slots, self._service_time = slots, service_time
            self._admit_locked()
        return self.describe()

    def reset(self) -> dict[str, Any]:
        """Unlimited slots, no service time (the counters are kept)."""
        return self.configure(None, 0.0)

    def describe(self) -> dict[str, Any]:
        """``{"slots", "service_time", "waiting", "in_service", "served", "max_waiting",
        "cancelled"}``: the knobs, the line now, and totals since the lab started.

        ``served`` counts requests forwarded while holding a slot (also those whose client
        had already given up); ``cancelled`` those the LB cut (down, stopping) before
        forwarding them.
        """
        with self._lock:
            return {
                "slots": self._slots,
                "service_time": self._service_time,
                "waiting": len(self._queue),
                "in_service": self._in_service,
                "served": self._served,
                "max_waiting": self._max_waiting,
                "cancelled": self._cancelled,
            }

    # ----------------------------------------------------------------- serving

    def serve(self, cancelled: threading.Event, work: Callable[[], T]) -> T | None:
        """Wait for a slot in arrival order, hold it for the service time, run ``work``.

        Returns ``work()``'s result, or None when ``cancelled`` was set (and :meth:`wake`
        called) before ``work`` started; the slot is given back either way.
        """
        waiter = _Waiter(threading.Condition(self._lock), cancelled)
        with self._lock:
            self._queue.append(waiter)
            self._max_waiting = max(self._max_waiting, len(self._queue))
            self._admit_locked()
            while not waiter.admitted and not cancelled.is_set():
                waiter.turn.wait()
            if not waiter.admitted:
                self._queue.remove(waiter)
                self._cancelled += 1
                return None
        started = False
        try:
            if waiter.service_time > 0 and self._wait(cancelled, waiter.service_time):
                return None
            if cancelled.is_set():
                return None
            started = True
            return work()
        finally:
            with self._lock:
                self._in_service -= 1
                if started:
                    self._served += 1
                else:
                    self._cancelled += 1
                self._admit_locked()

    def wake(self) -> None:
        """Make every waiter look at its ``cancelled`` event again (call after setting some)."""
        with self._lock:
            for waiter in self._queue:
                waiter.turn.notify()

    def _admit_locked(self) -> None:
        """Admit waiters from the head of the line while a slot is free."""
        while self._queue and (self._slots is None or self._in_service < self._slots):
            waiter = self._queue.popleft()
            waiter.admitted = True
            waiter.service_time = self._service_time
            self._in_service += 1
            waiter.turn.notify()
