"""BackendCapacity, the lab's model of DynamoDB's finite capacity, driven by real threads.

Every wait in these tests is on a condition (``wait_until``) or on an Event the test
controls; the service time is observed through an injected wait, not by timing."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from chaos_dynamo.clock import wait_until
from chaos_dynamo.errors import ConfigError
from chaos_dynamo.lbfleet._capacity import BackendCapacity, check_capacity

pytestmark = pytest.mark.timeout(60)

TIMEOUT = 10.0


class Requests:
    """Requests sent through one capacity from their own threads, with a gate to hold them."""

    def __init__(self, capacity: BackendCapacity) -> None:
        self.capacity = capacity
        self.lock = threading.Lock()
        self.order: list[str] = []  # names, in the order their work started
        self.running = 0
        self.most_running = 0
        self.results: dict[str, Any] = {}
        self.threads: dict[str, threading.Thread] = {}
        self.cancels: dict[str, threading.Event] = {}

    def send(self, name: str, gate: threading.Event | None = None, wait_queued: bool = True) -> None:
        """Start a request; unless told, return once it is in line or in service."""
        before = self.total()
        cancelled = self.cancels[name] = threading.Event()

        def work() -> str:
            with self.lock:
                self.order.append(name)
                self.running += 1
                self.most_running = max(self.most_running, self.running)
            try:
                if gate is not None:
                    assert gate.wait(TIMEOUT), f"{name} was never let go"
                return f"done {name}"
            finally:
                with self.lock:
                    self.running -= 1

        def run() -> None:
            self.results[name] = self.capacity.serve(cancelled, work)

        thread = self.threads[name] = threading.Thread(target=run, name=f"request-{name}", daemon=True)
        thread.start()
        if wait_queued:
            assert wait_until(lambda: self.total() > before, TIMEOUT), f"{name} never arrived"

    def total(self) -> int:
        """Requests in line, in service or finished."""
        state = self.capacity.describe()
        return int(state["waiting"] + state["in_service"] + state["served"] + state["cancelled"])

    def join(self, *names: str) -> None:
        for name in names or list(self.threads):
            self.threads[name].join(TIMEOUT)
            assert not self.threads[name].is_alive(), f"{name} is still running"


def state_is(capacity: BackendCapacity, **expected: Any) -> Callable[[], bool]:
    def check() -> bool:
        state = capacity.describe()
        return all(state[key] == value for key, value in expected.items())

    return check


@pytest.fixture
def gate() -> Iterator[threading.Event]:
    """Holds the work of the requests given it; opened at the end whatever happens."""
    event = threading.Event()
    yield event
    event.set()


def test_unlimited_capacity_lets_every_request_straight_through(gate: threading.Event) -> None:
    capacity = BackendCapacity()
    requests = Requests(capacity)
    for index in range(8):
        requests.send(f"r{index}", gate)
    assert wait_until(state_is(capacity, in_service=8, waiting=0), TIMEOUT), capacity.describe()
    gate.set()
    requests.join()
    assert capacity.describe() == {"slots": None, "service_time": 0.0, "waiting": 0, "in_service": 0,
                                   "served": 8, "max_waiting": 1, "cancelled": 0}
    assert requests.results == {f"r{i}": f"done r{i}" for i in range(8)}


def test_slots_bound_how_many_are_served_at_once(gate: threading.Event) -> None:
    capacity = BackendCapacity(slots=2)
    requests = Requests(capacity)
    for index in range(6):
        requests.send(f"r{index}", gate)
    assert wait_until(state_is(capacity, in_service=2, waiting=4), TIMEOUT), capacity.describe()
    assert wait_until(lambda: len(requests.order) == 2, TIMEOUT)
    assert sorted(requests.order) == ["r0", "r1"]  # only two have started their work
    gate.set()
    requests.join()
    assert requests.most_running == 2
    state = capacity.describe()
    assert (state["served"], state["in_service"], state["waiting"], state["max_waiting"]) == (6, 0, 0, 4)


def test_requests_are_served_in_strict_arrival_order(gate: threading.Event) -> None:
    capacity = BackendCapacity(slots=1)
    requests = Requests(capacity)
    requests.send("holder", gate)
    assert wait_until(state_is(capacity, in_service=1), TIMEOUT)
    names = [f"q{index:02d}" for index in range(20)]
    for count, name in enumerate(names, start=1):
        requests.send(name)  # each is in line before the next arrives
        assert capacity.describe()["waiting"] == count
    gate.set()
    requests.join()
    assert requests.order == ["holder", *names]
    assert requests.most_running == 1


def test_order_holds_with_two_slots_and_arrivals_while_draining() -> None:
    capacity = BackendCapacity(slots=2)
    requests = Requests(capacity)
    gates = {f"r{i}": threading.Event() for i in range(10)}
    try:
        for name, gate in gates.items():
            requests.send(name, gate)
        # Let them go one at a time while more arrive behind them.
        for index, name in enumerate(list(gates)):
            if index == 5:
                for late in ("late0", "late1"):
                    gates[late] = threading.Event()
                    requests.send(late, gates[late])
            # Both slots' requests have started before one is let go, so the next admitted
            # request cannot overtake the other one still starting.
            assert wait_until(lambda i=index: len(requests.order) == i + 2, TIMEOUT), (name, requests.order)
            gates[name].set()
        for gate in gates.values():
            gate.set()
        requests.join()
    finally:
        for gate in gates.values():
            gate.set()
    assert requests.order == [*(f"r{i}" for i in range(10)), "late0", "late1"]
    assert requests.most_running == 2


def test_service_time_is_held_with_the_slot_and_taken_when_service_starts() -> None:
    waits: list[float] = []
    release = threading.Event()

    def wait(cancelled: threading.Event, seconds: float) -> bool:
        waits.append(seconds)
        assert release.wait(TIMEOUT)
        return cancelled.is_set()

    capacity = BackendCapacity(slots=1, service_time=0.5, wait=wait)
    requests = Requests(capacity)
    try:
        requests.send("a")
        assert wait_until(lambda: waits == [0.5], TIMEOUT)
        requests.send("b")
        # a holds the slot during its service time and has not been forwarded yet; b waits.
        assert capacity.describe() | {"in_service": 1, "waiting": 1} == capacity.describe()
        assert requests.order == []
        capacity.configure(1, 0.25)  # for requests admitted from now on: b, not a
        release.set()
        requests.join()
    finally:
        release.set()
    assert waits == [0.5, 0.25]
    assert requests.order == ["a", "b"]
    assert capacity.describe()["served"] == 2


def test_service_time_really_waits_on_the_default_event_wait() -> None:
    capacity = BackendCapacity(service_time=0.05)
    cancelled = threading.Event()
    start = time.monotonic()
    assert capacity.serve(cancelled, lambda: "ok") == "ok"
    assert time.monotonic() - start >= 0.05


def test_raising_slots_admits_waiters_at_once(gate: threading.Event) -> None:
    capacity = BackendCapacity(slots=1)
    requests = Requests(capacity)
    for index in range(4):
        requests.send(f"r{index}", gate)
    assert wait_until(state_is(capacity, in_service=1, waiting=3), TIMEOUT)
    capacity.configure(4, 0.0)
    assert wait_until(state_is(capacity, in_service=4, waiting=0), TIMEOUT), capacity.describe()
    assert wait_until(lambda: len(requests.order) == 4, TIMEOUT)
    assert requests.order[0] == "r0" and sorted(requests.order) == ["r0", "r1", "r2", "r3"]
    gate.set()
    requests.join()


def test_lowering_slots_lets_the_ones_in_service_finish_and_admits_fewer() -> None:
    capacity = BackendCapacity(slots=3)
    requests = Requests(capacity)
    gates = {f"r{i}": threading.Event() for i in range(5)}
    try:
        for name, gate in gates.items():
            requests.send(name, gate)
        assert wait_until(state_is(capacity, in_service=3, waiting=2), TIMEOUT)
        capacity.configure(1, 0.0)
        gates["r0"].set()
        gates["r1"].set()
        requests.join("r0", "r1")
        assert capacity.describe() | {"in_service": 1, "waiting": 2} == capacity.describe()  # r2 only
        gates["r2"].set()
        assert wait_until(lambda: "r3" in requests.order, TIMEOUT)
        assert capacity.describe()["in_service"] == 1 and "r4" not in requests.order
    finally:
        for gate in gates.values():
            gate.set()
    requests.join()
    assert sorted(requests.order[:3]) == ["r0", "r1", "r2"] and requests.order[3:] == ["r3", "r4"]


def test_a_cancelled_waiter_leaves_the_line_and_the_others_keep_their_order(gate: threading.Event) -> None:
    capacity = BackendCapacity(slots=1)
    requests = Requests(capacity)
    for name in ("holder", "a", "b", "c"):
        requests.send(name, gate if name == "holder" else None)
    assert wait_until(state_is(capacity, in_service=1, waiting=3), TIMEOUT)
    requests.cancels["b"].set()
    capacity.wake()
    requests.join("b")
    assert requests.results["b"] is None
    assert capacity.describe() | {"waiting": 2, "cancelled": 1} == capacity.describe()
    gate.set()
    requests.join()
    assert requests.order == ["holder", "a", "c"]
    assert capacity.describe()["served"] == 3


def test_a_cancel_during_the_service_time_gives_the_slot_back_unserved() -> None:
    capacity = BackendCapacity(slots=1, service_time=30.0)  # the real Event wait, cut short
    requests = Requests(capacity)
    requests.send("slow")
    assert wait_until(state_is(capacity, in_service=1), TIMEOUT)
    requests.cancels["slow"].set()
    requests.join("slow")  # well before the 30 s
    assert requests.results["slow"] is None and requests.order == []
    assert capacity.describe() | {"in_service": 0, "served": 0, "cancelled": 1} == capacity.describe()
    capacity.configure(1, 0.0)
    assert capacity.serve(threading.Event(), lambda: "next") == "next"


def test_a_failing_request_gives_its_slot_back() -> None:
    capacity = BackendCapacity(slots=1)

    def boom() -> str:
        raise RuntimeError("upstream exploded")

    with pytest.raises(RuntimeError):
        capacity.serve(threading.Event(), boom)
    assert capacity.serve(threading.Event(), lambda: "fine") == "fine"
    assert capacity.describe() | {"in_service": 0, "served": 2} == capacity.describe()


@pytest.mark.parametrize("slots", [0, -1, True, 1.5, "2", 10_001])
def test_bad_slots_are_refused_and_change_nothing(slots: Any) -> None:
    capacity = BackendCapacity(slots=3, service_time=0.1)
    with pytest.raises(ConfigError) as info:
        capacity.configure(slots, 0.2)
    assert info.value.field == "slots" and "null for unlimited" in str(info.value)
    assert (capacity.describe()["slots"], capacity.describe()["service_time"]) == (3, 0.1)


@pytest.mark.parametrize("seconds", [-0.1, math.nan, math.inf, 60.5, True, "1", None])
def test_bad_service_times_are_refused_and_change_nothing(seconds: Any) -> None:
    capacity = BackendCapacity(slots=3, service_time=0.1)
    with pytest.raises(ConfigError) as info:
        capacity.configure(None, seconds)
    assert info.value.field == "service_time"
    assert (capacity.describe()["slots"], capacity.describe()["service_time"]) == (3, 0.1)
    with pytest.raises(ConfigError) as info:
        check_capacity(2, seconds, prefix="capacity.")
    assert info.value.field == "capacity.service_time"


def test_reset_makes_it_unlimited_and_keeps_the_totals() -> None:
    capacity = BackendCapacity(slots=1, service_time=0.0)
    capacity.serve(threading.Event(), lambda: None)
    assert capacity.reset() == {"slots": None, "service_time": 0.0, "waiting": 0, "in_service": 0,
                                "served": 1, "max_waiting": 1, "cancelled": 0}


def test_metrics_show_the_knobs_as_gauges_and_unlimited_slots_as_inf() -> None:
    from chaos_dynamo.lab import metrics

    text = metrics.render({}, {}, {}, capacity=BackendCapacity().describe())
    assert "chaos_dynamo_dynamodb_capacity_slots +Inf" in text.splitlines()
    capacity = BackendCapacity(slots=2, service_time=0.03)
    capacity.serve(threading.Event(), lambda: None)
    lines = metrics.render({}, {}, {}, capacity=capacity.describe()).splitlines()
    for line in ("# TYPE chaos_dynamo_dynamodb_capacity_slots gauge", "chaos_dynamo_dynamodb_capacity_slots 2",
                 "chaos_dynamo_dynamodb_capacity_service_time_seconds 0.03",
                 "chaos_dynamo_dynamodb_capacity_waiting 0", "chaos_dynamo_dynamodb_capacity_in_service 0",
                 "# TYPE chaos_dynamo_dynamodb_capacity_served_total counter",
                 "chaos_dynamo_dynamodb_capacity_served_total 1",
                 "chaos_dynamo_dynamodb_capacity_cancelled_total 0"):
        assert line in lines
