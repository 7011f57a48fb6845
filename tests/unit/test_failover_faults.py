"""The failover faults as plain data: argument checks, target selection, the rollout
schedule, the intermittent knob's checks and its seeded draw."""

from __future__ import annotations

import random
from typing import Any

import pytest

from chaos_dynamo.errors import ConfigError
from chaos_dynamo.failover import faults
from chaos_dynamo.lbfleet._state import Intermittent, _IntermittentWindow
from chaos_dynamo.lbfleet._validate import _intermittent, intermittent_from_json

LBS: list[dict[str, Any]] = [
    {"name": "lb-1", "az": "use1-az1"}, {"name": "lb-2", "az": "use1-az2"},
    {"name": "lb-3", "az": "use1-az1"}, {"name": "lb-4", "az": "use1-az3"},
]


def test_rollout_steps_interleave_targets_by_offset() -> None:
    steps = faults.rollout_steps(["lb-1", "lb-2"], stagger=0.3, gap=0.2, propagation=0.6,
                                 failure_rate=0.5, mode="blackhole", seed=4)
    assert [(round(s.offset, 6), s.lb, s.event) for s in steps] == [
        (0.0, "lb-1", "down"), (0.2, "lb-1", "up"), (0.3, "lb-2", "down"),
        (0.5, "lb-2", "up"), (0.8, "lb-1", "clean"), (1.1, "lb-2", "clean")]
    up = steps[1].body
    assert up == {"down": False,
                  "intermittent": {"rate": 0.5, "mode": "blackhole", "seconds": 0.6, "seed": 4}}
    assert steps[0].body == {"down": True} and steps[4].body == {"intermittent": None}


def test_rollout_ties_keep_target_order_and_zero_times_still_cut() -> None:
    steps = faults.rollout_steps(["lb-2", "lb-1"], stagger=0, gap=0, propagation=0,
                                 failure_rate=1.0, mode="refuse", seed=0)
    assert [(s.lb, s.event) for s in steps] == [
        ("lb-2", "down"), ("lb-2", "up"), ("lb-2", "clean"),
        ("lb-1", "down"), ("lb-1", "up"), ("lb-1", "clean")]
    # No propagation: the LB comes up clean (a null knob), there is no window to give.
    assert steps[1].body == {"down": False, "intermittent": None}


def test_select_targets() -> None:
    assert faults.select_targets("", LBS) == ["lb-1", "lb-2", "lb-3", "lb-4"]
    assert faults.select_targets(" lb-3 , lb-1", LBS) == ["lb-3", "lb-1"]
    with pytest.raises(ConfigError) as unknown:
        faults.select_targets("lb-1,lb-9", LBS)
    assert unknown.value.field == "targets" and "'lb-9'" in str(unknown.value)
    assert "['lb-1', 'lb-2', 'lb-3', 'lb-4']" in str(unknown.value)  # the known ones
    with pytest.raises(ConfigError, match="named twice"):
        faults.select_targets("lb-1,lb-1", LBS)
    with pytest.raises(ConfigError, match="^targets:"):
        faults.select_targets(["lb-1"], LBS)


def test_lbs_of_az() -> None:
    assert faults.lbs_of_az("use1-az1", LBS) == ["lb-1", "lb-3"]
    with pytest.raises(ConfigError) as unknown:
        faults.lbs_of_az("use1-az9", LBS)
    assert unknown.value.field == "az"
    assert "['use1-az1', 'use1-az2', 'use1-az3']" in str(unknown.value)


@pytest.mark.parametrize(("call", "field"), [
    (lambda: faults.check_seconds("gap", -1), "gap"),
    (lambda: faults.check_seconds("gap", 3601), "gap"),
    (lambda: faults.check_seconds("gap", float("nan")), "gap"),
    (lambda: faults.check_seconds("gap", True), "gap"),
    (lambda: faults.check_rate("rate", 1.01), "rate"),
    (lambda: faults.check_rate("rate", float("nan")), "rate"),
    (lambda: faults.check_mode("mode", "drop"), "mode"),
    (lambda: faults.check_seed("seed", 1.5), "seed"),
    (lambda: faults.check_bool("down", "yes"), "down"),
])
def test_checks_name_the_field(call: Any, field: str) -> None:
    with pytest.raises(ConfigError) as error:
        call()
    assert error.value.field == field and error.value.fix


def test_checks_pass_good_values() -> None:
    assert faults.check_seconds("gap", 0) == 0.0 and faults.check_seconds("gap", 3600) == 3600.0
    assert faults.check_rate("rate", 1) == 1.0
    assert faults.check_mode("mode", "blackhole") == "blackhole"
    assert faults.check_seed("seed", 7) == 7 and faults.check_bool("down", False) is False


@pytest.mark.parametrize(("value", "field"), [
    ({"rate": 2}, "faults.intermittent.rate"),
    ({"rate": -0.1}, "faults.intermittent.rate"),
    ({"rate": True}, "faults.intermittent.rate"),
    ({"mode": "refuse"}, "faults.intermittent.rate"),
    ({"rate": 0.5, "mode": "drop"}, "faults.intermittent.mode"),
    ({"rate": 0.5, "seconds": 0}, "faults.intermittent.seconds"),
    ({"rate": 0.5, "seconds": -3}, "faults.intermittent.seconds"),
    ({"rate": 0.5, "seconds": 1e12}, "faults.intermittent.seconds"),
    ({"rate": 0.5, "seed": "7"}, "faults.intermittent.seed"),
    ({"rate": 0.5, "every": 2}, "faults.intermittent.every"),
    (0.5, "faults.intermittent"),
])
def test_intermittent_from_json_names_the_field(value: Any, field: str) -> None:
    with pytest.raises(ConfigError) as error:
        intermittent_from_json(value, default_seed=11)
    assert error.value.field == field and error.value.fix


def test_intermittent_from_json_defaults() -> None:
    assert intermittent_from_json(None, 11) is None
    assert intermittent_from_json({"rate": 1}, 11) == Intermittent(1.0, "refuse", None, 11)
    assert intermittent_from_json({"rate": 0.2, "mode": "blackhole", "seconds": 3, "seed": 2}, 11) == \
        Intermittent(0.2, "blackhole", 3.0, 2)
    with pytest.raises(ConfigError, match="^rate:"):
        _intermittent(3, "refuse", None, 0)  # the LB method's own names


@pytest.mark.parametrize(("action_call", "body", "action_field"), [
    (lambda: faults.check_rate("failure_rate", 2), {"rate": 2}, "failure_rate"),
    (lambda: faults.check_mode("mode", "drop"), {"rate": 0.5, "mode": "drop"}, "mode"),
    (lambda: faults.check_seed("seed", "7"), {"rate": 0.5, "seed": "7"}, "seed"),
])
def test_the_actions_and_the_lab_route_check_alike_each_naming_its_field(
        action_call: Any, body: dict[str, Any], action_field: str) -> None:
    with pytest.raises(ConfigError) as from_action:
        action_call()
    with pytest.raises(ConfigError) as from_route:
        intermittent_from_json(body, default_seed=0)
    key = action_field if action_field != "failure_rate" else "rate"
    assert (from_action.value.field, from_route.value.field) == (action_field, f"faults.intermittent.{key}")
    assert (from_action.value.problem, from_action.value.fix) == (from_route.value.problem, from_route.value.fix)


def test_the_draw_is_seeded_by_seed_and_lb_name() -> None:
    def pattern(seed: int, name: str) -> list[bool]:
        window = _IntermittentWindow(Intermittent(0.5, seed=seed), name, None)
        return [window.draw() for _ in range(64)]

    expected = [random.Random("5:lb-1").random() < 0.5]
    assert pattern(5, "lb-1")[:1] == expected
    assert pattern(5, "lb-1") == pattern(5, "lb-1")
    assert pattern(5, "lb-1") != pattern(5, "lb-2")
    assert pattern(5, "lb-1") != pattern(6, "lb-1")
    assert all(_IntermittentWindow(Intermittent(1.0), "x", None).draw() for _ in range(100))
    assert not any(_IntermittentWindow(Intermittent(0.0), "x", None).draw() for _ in range(100))


def test_window_describes_seconds_left() -> None:
    window = _IntermittentWindow(Intermittent(0.25, "blackhole", 10.0, 3), "lb-1", until=110.0)
    assert window.describe(now=104.0) == {"rate": 0.25, "mode": "blackhole", "seconds_left": 6.0, "seed": 3}
    assert window.describe(now=200.0)["seconds_left"] == 0.0
    assert _IntermittentWindow(Intermittent(0.25), "lb-1", None).describe(0.0)["seconds_left"] is None
