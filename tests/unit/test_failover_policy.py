"""The failover controllers on scripted health reads: the naive one believes every read and
evacuates AZs without limit; the hardened one waits for confirmation, limits the capacity it
removes per window, keeps a floor, and evacuates an AZ only within both limits."""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence

import pytest

from chaos_dynamo.errors import ConfigError
from chaos_dynamo.failover.policy import (
    Add,
    Controller,
    Decision,
    HardenedController,
    Hold,
    NaiveController,
    Remove,
    make_controller,
)

ONE_AZ = {"t1": "a", "t2": "a", "t3": "a", "t4": "a", "t5": "a"}
TWO_AZS = {"a1": "a", "a2": "a", "b1": "b", "b2": "b", "b3": "b"}
DEMO = {"lb-1": "az1", "lb-2": "az2", "lb-3": "az3", "lb-4": "az1", "lb-5": "az2"}


def reads(targets: Mapping[str, str], unhealthy: Sequence[str] = ()) -> dict[str, bool]:
    return {t: t not in unhealthy for t in targets}


def kinds(decisions: Sequence[Decision]) -> list[tuple[str, str]]:
    return [(type(d).__name__, d.target) for d in decisions]


# --- naive -----------------------------------------------------------------------------------

def test_naive_one_flip_is_one_removal_and_one_add() -> None:
    c = NaiveController(ONE_AZ)  # 1 of 5 unhealthy: below the AZ threshold
    assert c.observe(0.0, reads(ONE_AZ)) == []
    out = c.observe(1.0, reads(ONE_AZ, ["t2"]))
    assert out == [Remove("t2", "read unhealthy")]
    assert c.in_service() == ("t1", "t3", "t4", "t5")
    assert c.observe(2.0, reads(ONE_AZ, ["t2"])) == []  # already out
    assert c.observe(3.0, reads(ONE_AZ)) == [Add("t2", "read healthy")]
    assert c.in_service() == tuple(ONE_AZ)
    assert c.counters() == {"removals": 1, "adds": 1, "held_by_velocity": 0, "held_by_floor": 0,
                            "az_evacuations": 0}


def test_naive_flaps_with_every_flip() -> None:
    c = NaiveController(ONE_AZ)
    for tick in range(10):
        c.observe(float(tick), reads(ONE_AZ, ["t1"] if tick % 2 else []))
    assert (c.removals, c.adds) == (5, 4)


def test_naive_evacuates_an_az_at_half_its_targets_and_brings_it_back_whole() -> None:
    c = NaiveController(TWO_AZS)
    # 1 of 3 in AZ b: a single removal.
    assert kinds(c.observe(0.0, reads(TWO_AZS, ["b1"]))) == [("Remove", "b1")]
    # 1 of 2 in AZ a (50%): the whole AZ goes, the healthy a2 with it.
    out = c.observe(1.0, reads(TWO_AZS, ["a1", "b1"]))
    assert kinds(out) == [("Remove", "a1"), ("Remove", "a2")]
    assert out[0].reason == "AZ a evacuated: 1 of 2 targets read unhealthy (a1)"
    assert c.az_evacuations == 1 and c.evacuated() == ("a",)
    assert c.in_service() == ("b2", "b3")
    # a1 healthy but a2 unread: the AZ stays out; b1 healthy comes back on its own.
    partial = {"a1": True, "b1": True, "b2": True, "b3": True}
    assert kinds(c.observe(2.0, partial)) == [("Add", "b1")]
    assert kinds(c.observe(3.0, reads(TWO_AZS))) == [("Add", "a1"), ("Add", "a2")]
    assert c.evacuated() == () and c.in_service() == tuple(TWO_AZS)


def test_naive_evacuates_two_of_four_but_not_one_of_three() -> None:
    four = {"x1": "x", "x2": "x", "x3": "x", "x4": "x"}
    assert kinds(NaiveController(four).observe(0.0, reads(four, ["x1", "x3"]))) == [
        ("Remove", "x1"), ("Remove", "x2"), ("Remove", "x3"), ("Remove", "x4")]
    three = {"y1": "y", "y2": "y", "y3": "y"}
    assert kinds(NaiveController(three).observe(0.0, reads(three, ["y2"]))) == [("Remove", "y2")]
    # 0 turns AZ failover off.
    assert kinds(NaiveController(four, az_threshold=0).observe(0.0, reads(four, ["x1", "x3"]))) == [
        ("Remove", "x1"), ("Remove", "x3")]


def test_naive_can_empty_the_pool() -> None:
    c = NaiveController(DEMO)
    c.observe(0.0, reads(DEMO, list(DEMO)))
    assert c.in_service() == ()
    assert c.az_evacuations == 3 and c.removals == 5


def test_a_target_not_read_keeps_its_place() -> None:
    c = NaiveController(ONE_AZ)
    assert c.observe(0.0, {"t1": False}) == [Remove("t1", "read unhealthy")]
    assert c.observe(1.0, {}) == []
    h = HardenedController(ONE_AZ, down_after=2)
    h.observe(0.0, {"t1": False})
    h.observe(1.0, {})  # no read: the streak neither grows nor resets
    assert kinds(h.observe(2.0, {"t1": False})) == [("Remove", "t1")]


# --- hardened --------------------------------------------------------------------------------

def test_hardened_waits_down_after_unhealthy_reads_in_a_row() -> None:
    c = HardenedController(ONE_AZ)  # down_after 3, up_after 5
    assert c.observe(0.0, reads(ONE_AZ, ["t1"])) == []
    assert c.observe(1.0, reads(ONE_AZ, ["t1"])) == []
    assert c.observe(2.0, reads(ONE_AZ)) == []  # a healthy read resets the streak
    assert c.observe(3.0, reads(ONE_AZ, ["t1"])) == []
    assert c.observe(4.0, reads(ONE_AZ, ["t1"])) == []
    assert c.observe(5.0, reads(ONE_AZ, ["t1"])) == [Remove("t1", "read unhealthy 3 times in a row")]


def test_hardened_waits_up_after_healthy_reads_in_a_row() -> None:
    c = HardenedController(ONE_AZ, down_after=1, up_after=3)
    assert kinds(c.observe(0.0, reads(ONE_AZ, ["t1"]))) == [("Remove", "t1")]
    assert c.observe(1.0, reads(ONE_AZ)) == []
    assert c.observe(2.0, reads(ONE_AZ)) == []
    assert c.observe(3.0, reads(ONE_AZ, ["t1"])) == []  # resets
    for now in (4.0, 5.0):
        assert c.observe(now, reads(ONE_AZ)) == []
    assert c.observe(6.0, reads(ONE_AZ)) == [Add("t1", "read healthy 3 times in a row")]
    assert c.in_service() == tuple(ONE_AZ)


def test_hardened_velocity_limit_holds_the_second_removal_inside_the_window() -> None:
    c = HardenedController(ONE_AZ, down_after=1)  # 20% of 5: one removal per 60 s
    assert c.velocity_allowance == 1 and c.floor == 3
    out = c.observe(0.0, reads(ONE_AZ, ["t1", "t2"]))
    assert out == [Remove("t1", "read unhealthy 1 times in a row"),
                   Hold("t2", "removal held by velocity limit: 1 of 5 removed in the last 60 s, "
                              "at most 1", "velocity")]
    assert c.held() == {"t2": "velocity"}
    for now in range(1, 61):  # the window is closed at both ends: 60 s after still counts
        assert c.observe(float(now), reads(ONE_AZ, ["t1", "t2"])) == [], now
    assert c.held_by_velocity == 1  # once per hold, not per tick
    out = c.observe(60.5, reads(ONE_AZ, ["t1", "t2"]))
    assert kinds(out) == [("Remove", "t2")]
    assert c.held() == {} and c.in_service() == ("t3", "t4", "t5")
    assert c.counters() == {"removals": 2, "adds": 0, "held_by_velocity": 1, "held_by_floor": 0,
                            "az_evacuations": 0}


def test_hardened_a_hold_that_recovers_is_forgotten_and_counted_again() -> None:
    c = HardenedController(ONE_AZ, down_after=1)
    c.observe(0.0, reads(ONE_AZ, ["t1", "t2"]))
    c.observe(1.0, reads(ONE_AZ, ["t1"]))  # t2 recovered: its hold ends
    assert c.held() == {}
    assert kinds(c.observe(2.0, reads(ONE_AZ, ["t1", "t2"]))) == [("Hold", "t2")]
    assert c.held_by_velocity == 2


def test_hardened_floor_holds() -> None:
    c = HardenedController(ONE_AZ, down_after=1, max_removed_fraction=1.0, az_threshold=0)  # floor 3 of 5
    out = c.observe(0.0, reads(ONE_AZ, ["t1", "t2", "t3", "t4"]))
    assert kinds(out) == [("Remove", "t1"), ("Remove", "t2"), ("Hold", "t3"), ("Hold", "t4")]
    assert out[2] == Hold("t3", "removal held by floor: 3 of 5 in service, at least 3 must stay",
                          "floor")
    assert c.held_by_floor == 2 and len(c.in_service()) == 3
    assert c.observe(100.0, reads(ONE_AZ, ["t1", "t2", "t3", "t4"])) == []
    assert len(c.in_service()) == 3


def test_hardened_evacuates_no_az_beyond_its_limits_so_it_removes_one_at_a_time() -> None:
    c = HardenedController(TWO_AZS, down_after=1)
    out = c.observe(0.0, reads(TWO_AZS, ["a1"]))
    # Evacuating AZ a would take 2 > 1 per window: held; a1 goes alone.
    assert kinds(out) == [("Hold", "AZ a"), ("Remove", "a1")]
    assert out[0].reason.startswith("evacuation of 2 target(s) (a1, a2) held by velocity limit")
    assert c.az_evacuations == 0 and c.held_by_velocity == 1
    # With a1 out nothing unhealthy of AZ a is in service: no evacuation waits for the window.
    for now in (1.0, 61.0, 200.0):
        assert c.observe(now, reads(TWO_AZS, ["a1"])) == []
    assert c.in_service() == ("a2", "b1", "b2", "b3") and c.held() == {}


def test_hardened_evacuates_an_az_within_both_limits_and_brings_it_back_whole() -> None:
    c = HardenedController(TWO_AZS, down_after=2, up_after=2, max_removed_fraction=0.4,
                           min_fraction=0.6)
    c.observe(0.0, reads(TWO_AZS, ["a2"]))
    out = c.observe(1.0, reads(TWO_AZS, ["a2"]))
    assert kinds(out) == [("Remove", "a1"), ("Remove", "a2")]
    assert out[0].reason == "AZ a evacuated: 1 of 2 targets unhealthy 2 times in a row (a2)"
    assert c.az_evacuations == 1 and c.evacuated() == ("a",)
    c.observe(2.0, reads(TWO_AZS))
    assert c.observe(3.0, reads(TWO_AZS, ["a2"])) == []  # a1 has 3 healthy reads, a2 not
    c.observe(4.0, reads(TWO_AZS))
    assert kinds(c.observe(5.0, reads(TWO_AZS))) == [("Add", "a1"), ("Add", "a2")]


def test_hardened_adds_back_without_limit() -> None:
    c = HardenedController(ONE_AZ, down_after=1, up_after=1, max_removed_fraction=1.0, min_fraction=0)
    c.observe(0.0, reads(ONE_AZ, list(ONE_AZ)))
    assert c.in_service() == ()
    assert kinds(c.observe(1.0, reads(ONE_AZ))) == [("Add", t) for t in ONE_AZ]


def test_resync_believes_the_zone() -> None:
    c = NaiveController(ONE_AZ)
    c.observe(0.0, reads(ONE_AZ, ["t1"]))
    c.resync(["t1", "t2", "stranger"])
    assert c.in_service() == ("t1", "t2")
    assert kinds(c.observe(1.0, reads(ONE_AZ, ["t1"]))) == [
        ("Remove", "t1"), ("Add", "t3"), ("Add", "t4"), ("Add", "t5")]


# --- both, on long scripted histories -------------------------------------------------------------

def script(seed: int, ticks: int = 400) -> list[dict[str, bool]]:
    """Every target flips with 10% chance per tick; AZ az1 has bad spells."""
    rng = random.Random(seed)
    state = dict.fromkeys(DEMO, True)
    out = []
    for tick in range(ticks):
        for t in DEMO:
            if rng.random() < 0.1:
                state[t] = not state[t]
        spell = 100 <= tick < 130
        out.append({t: ok and not (spell and DEMO[t] == "az1") for t, ok in state.items()})
    return out


def replay(name: str, seed: int) -> tuple[list[tuple[float, Decision]], list[int], Controller]:
    c = make_controller(name, DEMO)
    trace: list[tuple[float, Decision]] = []
    sizes = []
    for tick, health in enumerate(script(seed)):
        now = tick * 0.5
        trace.extend((now, d) for d in c.observe(now, health))
        sizes.append(len(c.in_service()))
    return trace, sizes, c


@pytest.mark.parametrize("name", ["naive", "hardened"])
def test_same_reads_same_decisions(name: str) -> None:
    first, _, a = replay(name, 3)
    again, _, b = replay(name, 3)
    assert first == again and a.counters() == b.counters()
    assert first != replay(name, 4)[0]


def test_on_the_same_reads_the_naive_flaps_and_the_hardened_keeps_its_limits() -> None:
    trace, sizes, naive = replay("naive", 5)
    assert min(sizes) <= 1 and naive.removals > 50
    trace, sizes, hardened = replay("hardened", 5)
    assert min(sizes) >= 3  # the floor: 60% of 5
    removed = [now for now, d in trace if isinstance(d, Remove)]
    for i, start in enumerate(removed):
        assert sum(1 for t in removed[i:] if t - start <= 60.0) <= 1  # 20% of 5 per 60 s
    assert hardened.removals < naive.removals / 10
    assert hardened.held_by_velocity + hardened.held_by_floor > 0


# --- settings --------------------------------------------------------------------------------------

@pytest.mark.parametrize(("name", "settings", "field"), [
    ("hardened", {"down_after": 0}, "down_after"),
    ("hardened", {"up_after": 1.5}, "up_after"),
    ("hardened", {"max_removed_fraction": 0}, "max_removed_fraction"),
    ("hardened", {"max_removed_fraction": 1.5}, "max_removed_fraction"),
    ("hardened", {"velocity_window": float("inf")}, "velocity_window"),
    ("hardened", {"min_fraction": -0.1}, "min_fraction"),
    ("naive", {"az_threshold": 2}, "az_threshold"),
    ("naive", {"down_after": 3}, "down_after"),
    ("naive", {"bogus": 1}, "bogus"),
    ("turbo", {}, "controller"),
])
def test_bad_settings_name_the_field(name: str, settings: dict[str, float], field: str) -> None:
    with pytest.raises(ConfigError) as err:
        make_controller(name, DEMO, settings)
    assert err.value.field == field and err.value.fix


def test_bad_targets_name_the_field() -> None:
    for targets in ({}, {"lb-1": ""}):
        with pytest.raises(ConfigError) as err:
            NaiveController(targets)
        assert err.value.field == "targets"
    with pytest.raises(ConfigError) as err:
        HardenedController(DEMO, in_service=["lb-9"])
    assert err.value.field == "in_service"


def test_describe_is_plain_data() -> None:
    c = make_controller("hardened", DEMO, {"down_after": 2})
    assert isinstance(c, HardenedController)
    described = c.describe()
    assert described["controller"] == "hardened" and described["down_after"] == 2
    assert described["azs"] == {"az1": ["lb-1", "lb-4"], "az2": ["lb-2", "lb-5"], "az3": ["lb-3"]}
    assert (described["velocity_allowance"], described["floor"]) == (1, 3)
