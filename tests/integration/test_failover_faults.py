"""The failover faults over real sockets: the LB's ``intermittent`` knob (refuse, blackhole),
then the Chaos Toolkit actions on the session lab (rollout, intermittent targets, a
degraded AZ, the rollback), with bad input changing nothing.

Every connection here is a new TCP connection, as a Route 53 health checker opens one
per check; waits are on conditions, and the rollouts' clock is injected where a test
looks inside them.
"""

from __future__ import annotations

import http.client
import random
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from chaos_dynamo.clock import FakeClock, wait_until
from chaos_dynamo.errors import ConfigError, SafetyError
from chaos_dynamo.failover import actions
from chaos_dynamo.lab.lab import Lab
from chaos_dynamo.lab.state import LabInfo
from chaos_dynamo.lbfleet.proxy import HEALTH_PATH, LoadBalancer
from tests.conftest import control

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

UNUSED_UPSTREAM = "http://127.0.0.1:9"  # health checks never go upstream


# --------------------------------------------------------------------------- helpers


def attempt(address: str, port: int, timeout: float = 3.0) -> str:
    """One health check on a new connection: its status ("200"), or what went wrong
    ("refused": nothing listens, "reset": RST, "timeout": no answer, "eof")."""
    try:
        sock = socket.create_connection((address, port), timeout=timeout)
    except ConnectionRefusedError:
        return "refused"
    except ConnectionResetError:  # the reset can beat connect()'s own completion check
        return "reset"
    with sock:
        try:
            sock.sendall(f"GET {HEALTH_PATH} HTTP/1.1\r\nHost: lb\r\nConnection: close\r\n\r\n".encode())
            data = sock.recv(64)
        except (ConnectionResetError, BrokenPipeError):
            return "reset"
        except TimeoutError:
            return "timeout"
    return data.split()[1].decode() if data else "eof"


def expected_pattern(seed: int, name: str, rate: float, count: int) -> list[str]:
    rng = random.Random(f"{seed}:{name}")
    return ["reset" if rng.random() < rate else "200" for _ in range(count)]


def lb_threads(name: str) -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith(f"lb-{name}-")]


@pytest.fixture
def lb() -> Iterator[LoadBalancer]:
    with LoadBalancer("lb-flaky", "127.0.0.61", 0, UNUSED_UPSTREAM) as started:
        yield started


# --------------------------------------------------------------------------- the LB knob


def test_refuse_resets_a_seeded_fraction_and_replays(lb: LoadBalancer) -> None:
    expected = expected_pattern(7, lb.name, 0.4, 40)
    assert 8 <= expected.count("reset") <= 28  # roughly the rate, and both outcomes occur

    for _ in range(2):  # the same seed twice: the same connections fail
        lb.set_intermittent(0.4, seed=7)
        assert [attempt(lb.address, lb.port) for _ in range(40)] == expected

    lb.set_intermittent(0.4, seed=8)
    other = [attempt(lb.address, lb.port) for _ in range(40)]
    assert other == expected_pattern(8, lb.name, 0.4, 40) != expected
    counters = lb.counters()
    assert counters["connections_accepted"] == 120
    assert counters["connections_refused_intermittent"] == 2 * expected.count("reset") + other.count("reset")
    assert counters["health_checks"] == 120 - counters["connections_refused_intermittent"]
    assert counters["connections_blackholed"] == 0


def test_refuse_everything_then_clear(lb: LoadBalancer) -> None:
    lb.set_intermittent(1.0)
    assert lb.faults()["intermittent"] == {"rate": 1.0, "mode": "refuse", "seconds_left": None, "seed": 0}
    assert {attempt(lb.address, lb.port) for _ in range(5)} == {"reset"}
    lb.clear_intermittent()
    assert lb.faults()["intermittent"] is None
    assert attempt(lb.address, lb.port) == "200"

    lb.set_intermittent(1.0, seed=3)
    lb.reset_faults()  # the general reset clears it too
    assert lb.faults()["intermittent"] is None and attempt(lb.address, lb.port) == "200"


def test_open_keep_alive_connections_are_not_touched(lb: LoadBalancer) -> None:
    kept = http.client.HTTPConnection(lb.address, lb.port, timeout=5)
    try:
        kept.request("GET", HEALTH_PATH)
        assert kept.getresponse().read()
        lb.set_intermittent(1.0)
        kept.request("GET", HEALTH_PATH)
        assert kept.getresponse().status == 200  # an established connection keeps working
        assert attempt(lb.address, lb.port) == "reset"  # a new one does not
    finally:
        kept.close()


def test_blackhole_holds_without_answer_and_frees_at_window_end(lb: LoadBalancer) -> None:
    lb.set_intermittent(1.0, "blackhole", seconds=1.0)
    assert 0 < lb.faults()["intermittent"]["seconds_left"] <= 1.0
    held = socket.create_connection((lb.address, lb.port), timeout=0.3)
    try:
        held.sendall(f"GET {HEALTH_PATH} HTTP/1.1\r\nHost: lb\r\n\r\n".encode())
        with pytest.raises(TimeoutError):
            held.recv(64)  # accepted, never answered
        assert wait_until(lambda: lb.counters()["connections_blackholed"] == 1, timeout=5)
        assert lb.counters()["health_checks"] == 0

        assert wait_until(lambda: lb.faults()["intermittent"] is None, timeout=10)
        held.settimeout(5)
        with pytest.raises(ConnectionResetError):  # freed: reset, not left hanging
            held.recv(64)
    finally:
        held.close()
    assert attempt(lb.address, lb.port) == "200"
    assert lb_threads(f"{lb.name}-intermittent") == []


@pytest.mark.parametrize("release", ["clear", "down", "stop"])
def test_blackholed_connections_are_freed_when_the_knob_or_the_lb_goes(
        lb: LoadBalancer, release: str) -> None:
    lb.set_intermittent(1.0, "blackhole", seconds=60)
    held = [socket.create_connection((lb.address, lb.port), timeout=5) for _ in range(3)]
    try:
        assert wait_until(lambda: lb.counters()["connections_blackholed"] == 3, timeout=5)
        {"clear": lb.clear_intermittent, "down": lambda: lb.set_down(True), "stop": lb.stop}[release]()
        for sock in held:
            with pytest.raises(ConnectionResetError):
                sock.recv(64)
    finally:
        for sock in held:
            sock.close()
    if release == "stop":
        assert lb.faults()["intermittent"] is None
        assert wait_until(lambda: lb_threads(lb.name) == [], timeout=5)  # no thread left behind


def test_blackhole_is_seeded_too(lb: LoadBalancer) -> None:
    lb.set_intermittent(0.5, "blackhole", seed=2)
    expected = ["timeout" if outcome == "reset" else "200"
                for outcome in expected_pattern(2, lb.name, 0.5, 12)]
    assert "200" in expected and "timeout" in expected
    # A short wait where the pattern says "held" (an answer would come at once), a long one
    # where it says "answered" (a noisy machine may be slow to answer).
    seen = [attempt(lb.address, lb.port, timeout=0.2 if outcome == "timeout" else 5.0)
            for outcome in expected]
    assert seen == expected
    assert lb.counters()["connections_blackholed"] == expected.count("timeout")


def test_bad_intermittent_input_changes_nothing(lb: LoadBalancer) -> None:
    lb.set_intermittent(0.3, "blackhole", seed=5)
    before = lb.faults()
    for kwargs, field in [({"rate": 1.5}, "rate"), ({"rate": 0.5, "mode": "drop"}, "mode"),
                          ({"rate": 0.5, "seconds": 0}, "seconds"),
                          ({"rate": 0.5, "seconds": float("inf")}, "seconds"),
                          ({"rate": 0.5, "seed": "x"}, "seed")]:
        with pytest.raises(ConfigError) as error:
            lb.set_intermittent(**kwargs)
        assert error.value.field == field
        assert lb.faults() == before


# --------------------------------------------------------------------------- the lab's HTTP knob


@pytest.fixture
def clean_lab(lab: Lab, lab_info: LabInfo) -> Iterator[Lab]:
    """The session lab, every LB's faults reset after the test."""
    try:
        yield lab
    finally:
        status, _ = control(lab_info, "lb/faults/reset", {})
        assert status == 200


def lab_faults(info: LabInfo) -> dict[str, Any]:
    status, answer = control(info, "status")
    assert status == 200
    return {name: lb["faults"] for name, lb in answer["load_balancers"].items()}


def test_lab_route_sets_and_clears_the_knob(clean_lab: Lab, lab_info: LabInfo) -> None:
    lb = clean_lab.fleet["lb-2"] if clean_lab.fleet is not None else None
    assert lb is not None
    status, knobs = control(lab_info, "lb/lb-2/faults", {"intermittent": {"rate": 1, "seconds": 30}})
    assert status == 200
    assert knobs["intermittent"]["rate"] == 1.0 and knobs["intermittent"]["mode"] == "refuse"
    assert knobs["intermittent"]["seed"] == lab_info.seed  # the lab's seed unless given
    assert 0 < knobs["intermittent"]["seconds_left"] <= 30
    assert attempt(lb.address, lb.port) == "reset"
    status, knobs = control(lab_info, "lb/lb-2/faults", {"intermittent": None})
    assert status == 200 and knobs["intermittent"] is None
    assert attempt(lb.address, lb.port) == "200"
    # Down and failing in one request: it comes up already failing.
    status, knobs = control(lab_info, "lb/lb-2/faults", {"down": False, "intermittent": {"rate": 1}})
    assert status == 200 and attempt(lb.address, lb.port) == "reset"
    assert clean_lab.fleet is not None
    assert clean_lab.fleet.counters()["lb-2"]["connections_refused_intermittent"] >= 2
    status, answer = control(lab_info, "lb/faults/reset", {})
    assert status == 200 and answer["lb-2"]["intermittent"] is None


@pytest.mark.parametrize(("body", "field"), [
    ({"down": True, "intermittent": {"rate": 2}}, "faults.intermittent.rate"),
    ({"intermittent": {"rate": 0.5, "mode": "drop"}}, "faults.intermittent.mode"),
    ({"intermittent": {"rate": 0.5, "seconds": -1}}, "faults.intermittent.seconds"),
    ({"intermittent": {"rate": 0.5, "seed": 1.5}}, "faults.intermittent.seed"),
    ({"intermittent": {"seconds": 5}}, "faults.intermittent.rate"),
    ({"intermittent": {"rate": 0.5, "every": 3}}, "faults.intermittent.every"),
    ({"latency": 0.2, "intermittent": "half"}, "faults.intermittent"),
])
def test_lab_route_refuses_bad_knobs_and_changes_nothing(
        clean_lab: Lab, lab_info: LabInfo, body: dict[str, Any], field: str) -> None:
    control(lab_info, "lb/lb-3/faults", {"intermittent": {"rate": 0.25, "seed": 9}})
    before = lab_faults(lab_info)
    status, answer = control(lab_info, "lb/lb-3/faults", body)
    assert status == 400 and answer["field"] == field
    assert lab_faults(lab_info) == before


# --------------------------------------------------------------------------- the actions


class HookClock(FakeClock):
    """A fake clock that calls ``hook(n)`` at its n-th sleep (1-based), before sleeping."""

    def __init__(self, hook: Callable[[int], None]) -> None:
        super().__init__()
        self.hook = hook
        self.sleeps = 0

    def sleep(self, seconds: float) -> None:
        self.sleeps += 1
        self.hook(self.sleeps)
        super().sleep(seconds)


def address(lab: Lab, name: str) -> tuple[str, int]:
    assert lab.fleet is not None
    lb = lab.fleet[name]
    return lb.address, lb.port


def assert_clean(lab: Lab, names: list[str]) -> None:
    assert lab.fleet is not None
    for name in names:
        knobs = lab.fleet[name].faults()
        assert (knobs["down"], knobs["intermittent"]) == (False, None), name
        assert attempt(*address(lab, name)) == "200", name


def test_rollout_steps_through_each_target(clean_lab: Lab, config: dict[str, Any],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[int, dict[str, str]] = {}

    def look(n: int) -> None:  # before the n-th change: what a new connection meets
        seen[n] = {name: attempt(*address(clean_lab, name)) for name in ("lb-1", "lb-2")}

    clock = HookClock(look)
    monkeypatch.setattr(actions, "_clock", clock)
    started = clock.now()
    result = actions.roll_out_targets("lb-1,lb-2", stagger=0.3, gap=0.2, propagation=0.6,
                                      configuration=config)
    assert [(e["lb"], e["event"]) for e in result["events"]] == [
        ("lb-1", "down"), ("lb-1", "up"), ("lb-2", "down"), ("lb-2", "up"),
        ("lb-1", "clean"), ("lb-2", "clean")]
    assert [round(e["time"] - started, 6) for e in result["events"]] == [0.0, 0.2, 0.3, 0.5, 0.8, 1.1]
    assert result["targets"] == ["lb-1", "lb-2"] and result["seconds"] == pytest.approx(1.1)
    assert seen == {
        1: {"lb-1": "200", "lb-2": "200"},
        2: {"lb-1": "refused", "lb-2": "200"},  # lb-1's old instance stopped
        3: {"lb-1": "reset", "lb-2": "200"},  # lb-1 up, network not propagated
        4: {"lb-1": "reset", "lb-2": "refused"},
        5: {"lb-1": "reset", "lb-2": "reset"},
        6: {"lb-1": "200", "lb-2": "reset"},  # lb-1 propagated
    }
    assert_clean(clean_lab, ["lb-1", "lb-2"])


def test_rollout_in_real_time_leaves_every_lb_clean(clean_lab: Lab, config: dict[str, Any]) -> None:
    started = time.monotonic()
    result = actions.roll_out_targets("lb-5,lb-6", stagger=0.3, gap=0.2, propagation=0.6,
                                      failure_rate=0.5, mode="blackhole", seed=3, configuration=config)
    assert time.monotonic() - started >= 1.1 - 0.01
    events = result["events"]
    assert [(e["lb"], e["event"]) for e in events] == [
        ("lb-5", "down"), ("lb-5", "up"), ("lb-6", "down"), ("lb-6", "up"),
        ("lb-5", "clean"), ("lb-6", "clean")]
    assert [e["time"] for e in events] == sorted(e["time"] for e in events)
    assert events[-1]["time"] - events[0]["time"] >= 1.1 - 0.01
    assert {k: result[k] for k in ("mode", "failure_rate", "seed")} == {
        "mode": "blackhole", "failure_rate": 0.5, "seed": 3}
    assert_clean(clean_lab, ["lb-1", "lb-2", "lb-3", "lb-4", "lb-5", "lb-6"])


def test_an_interrupted_rollout_restores_what_it_touched(clean_lab: Lab, config: dict[str, Any],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupt(n: int) -> None:
        if n == 4:  # lb-1 up and failing, lb-2 down
            raise KeyboardInterrupt

    control(clean_lab.info(), "lb/lb-3/faults", {"latency": 0.01})
    monkeypatch.setattr(actions, "_clock", HookClock(interrupt))
    with pytest.raises(KeyboardInterrupt):
        actions.roll_out_targets("lb-1,lb-2,lb-3", stagger=0.3, gap=0.2, propagation=0.6,
                                 configuration=config)
    assert_clean(clean_lab, ["lb-1", "lb-2"])
    assert clean_lab.fleet is not None
    assert clean_lab.fleet["lb-3"].faults()["latency"] == 0.01  # never touched: left alone


def test_fail_intermittently_then_restore(clean_lab: Lab, config: dict[str, Any]) -> None:
    result = actions.fail_intermittently("lb-4", rate=1.0, mode="refuse", seed=1, configuration=config)
    assert result["lb-4"]["intermittent"] == {"rate": 1.0, "mode": "refuse", "seconds_left": None, "seed": 1}
    assert attempt(*address(clean_lab, "lb-4")) == "reset"
    timed = actions.fail_intermittently("lb-4", rate=0.5, seconds=30, configuration=config)
    assert 0 < timed["lb-4"]["intermittent"]["seconds_left"] <= 30
    restored = actions.restore_targets("lb-4", configuration=config)
    assert set(restored) == {"lb-4"} and restored["lb-4"]["intermittent"] is None
    assert_clean(clean_lab, ["lb-4"])


def test_degrade_az_down_holds_then_restores(clean_lab: Lab, lab_info: LabInfo, config: dict[str, Any],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    az = lab_info.load_balancers[0]["az"]
    in_az = [lb["name"] for lb in lab_info.load_balancers if lb["az"] == az]
    others = [lb["name"] for lb in lab_info.load_balancers if lb["az"] != az]
    assert in_az and others
    seen: dict[str, str] = {}
    monkeypatch.setattr(actions, "_clock", HookClock(
        lambda n: seen.update({name: attempt(*address(clean_lab, name)) for name in in_az + others})))
    result = actions.degrade_az(az, down=True, seconds=5, configuration=config)
    assert seen == {**dict.fromkeys(in_az, "refused"), **dict.fromkeys(others, "200")}
    assert result["lbs"] == in_az and result["restored_at"] - result["degraded_at"] == pytest.approx(5)
    assert all(knobs["down"] for knobs in result["during"].values())
    assert not any(knobs["down"] for knobs in result["after"].values())
    assert_clean(clean_lab, in_az + others)


class SteppedWallClock(FakeClock):
    """A fake clock whose wall clock is stepped back ``step`` seconds (an NTP correction)
    just after its first reading; its monotonic clock is untouched. Records each sleep."""

    def __init__(self, step: float) -> None:
        super().__init__()
        self.step = step
        self.reads = 0
        self.slept: list[float] = []

    def now(self) -> float:
        self.reads += 1
        return super().now() - (self.step if self.reads > 1 else 0.0)

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        super().sleep(seconds)


def test_degrade_az_holds_on_the_monotonic_clock_when_the_wall_clock_steps(
        clean_lab: Lab, lab_info: LabInfo, config: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    az = lab_info.load_balancers[0]["az"]
    clock = SteppedWallClock(step=3600.0)
    monkeypatch.setattr(actions, "_clock", clock)
    result = actions.degrade_az(az, latency=0.01, seconds=5, configuration=config)
    assert clock.slept == [pytest.approx(5.0)]  # not 3605: the wall clock went back an hour
    assert result["degraded_at"] == 1_700_000_000.0  # reported times stay wall-clock readings
    assert clean_lab.fleet is not None
    assert all(lb.faults()["latency"] == 0.0 for lb in clean_lab.fleet)


def test_degrade_az_latency_is_left_on_or_restored_when_interrupted(
        clean_lab: Lab, lab_info: LabInfo, config: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    assert clean_lab.fleet is not None
    az = lab_info.load_balancers[1]["az"]
    in_az = [lb["name"] for lb in lab_info.load_balancers if lb["az"] == az]
    result = actions.degrade_az(az, latency=0.05, configuration=config)
    assert result["after"] is None and result["restored_at"] is None
    assert {lb.name: lb.faults()["latency"] for lb in clean_lab.fleet} == {
        lb["name"]: (0.05 if lb["az"] == az else 0.0) for lb in lab_info.load_balancers}
    actions.restore_targets(",".join(in_az), configuration=config)

    def interrupt(n: int) -> None:
        raise RuntimeError("the experiment was stopped")

    control(lab_info, f"lb/{in_az[0]}/faults", {"latency": 0.02})  # put back as it was, not to 0
    monkeypatch.setattr(actions, "_clock", HookClock(interrupt))
    with pytest.raises(RuntimeError):
        actions.degrade_az(az, latency=0.3, down=True, seconds=60, configuration=config)
    knobs = {lb.name: (lb.faults()["latency"], lb.faults()["down"]) for lb in clean_lab.fleet}
    assert knobs == {lb["name"]: (0.02 if lb["name"] == in_az[0] else 0.0, False)
                     for lb in lab_info.load_balancers}


BAD_CALLS: list[tuple[str, Callable[..., Any], dict[str, Any], str, str]] = [
    ("unknown-lb", actions.roll_out_targets, {"targets": "lb-1,lb-99"}, "targets", "'lb-1', 'lb-2'"),
    ("twice", actions.roll_out_targets, {"targets": "lb-1,lb-1"}, "targets", "once"),
    ("negative-stagger", actions.roll_out_targets, {"stagger": -1}, "stagger", "0 to 3600"),
    ("huge-gap", actions.roll_out_targets, {"gap": 1e9}, "gap", "0 to 3600"),
    ("nan-propagation", actions.roll_out_targets, {"propagation": float("nan")}, "propagation", ""),
    ("rate", actions.roll_out_targets, {"failure_rate": 1.5}, "failure_rate", "0.0 to 1.0"),
    ("mode", actions.roll_out_targets, {"mode": "drop"}, "mode", "refuse"),
    ("seed", actions.roll_out_targets, {"seed": True}, "seed", ""),
    ("fi-rate", actions.fail_intermittently, {"targets": "lb-1", "rate": -0.1}, "rate", ""),
    ("fi-seconds", actions.fail_intermittently, {"targets": "lb-1", "rate": 1, "seconds": 5000}, "seconds", ""),
    ("fi-lb", actions.fail_intermittently, {"targets": "lb-0", "rate": 1}, "targets", "lb-6"),
    ("unknown-az", actions.degrade_az, {"az": "use1-az9", "down": True}, "az", "use1-az1"),
    ("az-latency", actions.degrade_az, {"az": "use1-az1", "latency": -1}, "latency", ""),
    ("az-nothing", actions.degrade_az, {"az": "use1-az1"}, "latency", "down"),
    ("az-down", actions.degrade_az, {"az": "use1-az1", "down": "yes"}, "down", ""),
    ("az-seconds", actions.degrade_az, {"az": "use1-az1", "down": True, "seconds": -2}, "seconds", ""),
    ("restore-lb", actions.restore_targets, {"targets": "lb-7"}, "targets", ""),
]


@pytest.mark.parametrize(("action", "kwargs", "field", "hint"), [case[1:] for case in BAD_CALLS],
                         ids=[case[0] for case in BAD_CALLS])
def test_bad_input_changes_nothing(clean_lab: Lab, lab_info: LabInfo, config: dict[str, Any],
                                   action: Callable[..., Any], kwargs: dict[str, Any],
                                   field: str, hint: str) -> None:
    control(lab_info, "lb/lb-1/faults", {"latency": 0.01, "intermittent": {"rate": 0.1, "seed": 2}})
    before = lab_faults(lab_info)
    with pytest.raises(ConfigError) as error:
        action(**kwargs, configuration=config)
    assert error.value.field == field and hint in str(error.value)
    assert lab_faults(lab_info) == before


@pytest.mark.parametrize("action", [actions.restore_targets, actions.roll_out_targets])
def test_a_lab_that_is_not_loopback_is_refused(action: Callable[..., Any]) -> None:
    with pytest.raises(SafetyError, match="loopback"):
        action(configuration={"chaos_dynamo_api": "http://10.1.2.3:8080"})
