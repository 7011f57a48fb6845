"""The failover faults as plain data: argument checks, target selection and the rollout
schedule. No I/O here; :mod:`chaos_dynamo.failover.actions` sends what these compute to
the lab's ``POST /_chaos_dynamo/lb/NAME/faults``.

A rolling replacement, as in us-east-1: targets are replaced one after another,
``stagger`` seconds apart. Each goes down for ``gap`` seconds (the old instance stops),
then comes up before its network state has propagated: for ``propagation`` seconds a
fraction ``failure_rate`` of its new connections is refused or blackholed (the LB's
``intermittent`` knob), then it is clean::

    lb-1  |down|~~~~ up, not propagated ~~~~|clean
    lb-2        <stagger>|down|~~~~ up, not propagated ~~~~|clean
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from chaos_dynamo.errors import ConfigError
from chaos_dynamo.lbfleet._state import INTERMITTENT_MODES
from chaos_dynamo.lbfleet._validate import check_mode, check_rate, check_seed  # the LB knob's own

__all__ = [
    "MAX_LATENCY",
    "MAX_SECONDS",
    "MODES",
    "RESTORE",
    "RolloutStep",
    "check_bool",
    "check_mode",
    "check_rate",
    "check_seconds",
    "check_seed",
    "lbs_of_az",
    "rollout_steps",
    "select_targets",
]

MODES = INTERMITTENT_MODES
"""``refuse`` (connection reset at once) or ``blackhole`` (held, never answered)."""

MAX_SECONDS = 3600.0
"""The longest duration any failover fault takes (stagger, gap, propagation, a window)."""

MAX_LATENCY = 600.0
"""The most latency ``degrade_az`` adds per request."""

RESTORE: dict[str, Any] = {"down": False, "intermittent": None}
"""The faults body that undoes a rollout on one LB: up, every new connection served."""


def check_seconds(field: str, value: object, maximum: float = MAX_SECONDS) -> float:
    """``value`` as seconds in 0..maximum; ConfigError naming ``field`` otherwise."""
    if (isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value)
            or not 0 <= value <= maximum):
        raise ConfigError(field, f"{value!r} is not a duration in seconds",
                          f"use a number from 0 to {maximum:g}")
    return float(value)


def check_bool(field: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(field, f"{value!r} is not true/false", "use true or false")
    return value


def select_targets(targets: object, load_balancers: Sequence[Mapping[str, Any]],
                   field: str = "targets") -> list[str]:
    """The LB names in ``targets`` (comma-separated, in that order), or every LB for "".

    Args:
        targets: e.g. ``"lb-1, lb-3"``; blanks around names are ignored.
        load_balancers: the lab's LBs (``LabInfo.load_balancers``: dicts with ``name``).

    Raises:
        ConfigError: naming ``field``: not a string, an unknown name (the known ones are
            listed) or a name given twice.
    """
    known = [str(lb["name"]) for lb in load_balancers]
    if not isinstance(targets, str):
        raise ConfigError(field, f"{targets!r} is not a list of load balancer names",
                          f'use comma-separated names, e.g. "{",".join(known[:2])}", or "" for all')
    if not targets.strip():
        return known
    names = [name.strip() for name in targets.split(",")]
    for name in names:
        if name not in known:
            raise ConfigError(field, f"{name!r} is not a load balancer of the lab",
                              f'use some of {known} (comma-separated), or "" for all')
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ConfigError(field, f"{repeated[0]!r} is named twice", "name each load balancer once")
    return names


def lbs_of_az(az: object, load_balancers: Sequence[Mapping[str, Any]]) -> list[str]:
    """The names of the LBs in availability zone ``az``, in the lab's order.

    Raises:
        ConfigError: naming ``az``, listing the lab's AZs, when it has no LB there.
    """
    zones = sorted({str(lb.get("az", "")) for lb in load_balancers} - {""})
    if not isinstance(az, str) or az not in zones:
        raise ConfigError("az", f"{az!r} is not an availability zone of the lab",
                          f"use one of {zones}")
    return [str(lb["name"]) for lb in load_balancers if lb.get("az") == az]


@dataclass(frozen=True)
class RolloutStep:
    """One change of a rollout: at ``offset`` seconds from its start, POST ``body`` to
    ``lb``'s faults.

    ``event`` is ``"down"`` (the old instance stops), ``"up"`` (listening again, its new
    connections failing: network state not propagated yet) or ``"clean"`` (propagated).
    """

    offset: float
    lb: str
    event: str
    body: Mapping[str, Any]


def rollout_steps(targets: Sequence[str], stagger: float, gap: float, propagation: float,
                  failure_rate: float, mode: str, seed: int) -> list[RolloutStep]:
    """The rollout's changes in the order to make them (by offset; ties in target order).

    The ``up`` step turns the LB on with the ``intermittent`` knob already set (one
    request), and gives the knob a ``propagation`` window of its own, so the LB comes
    clean by itself should the rollout's process die; ``clean`` clears it explicitly.
    Arguments are assumed checked (the ``check_*`` functions).
    """
    steps: list[RolloutStep] = []
    for index, lb in enumerate(targets):
        start = index * stagger
        failing = ({"rate": failure_rate, "mode": mode, "seconds": propagation, "seed": seed}
                   if propagation > 0 else None)
        steps += [
            RolloutStep(start, lb, "down", {"down": True}),
            RolloutStep(start + gap, lb, "up", {"down": False, "intermittent": failing}),
            RolloutStep(start + gap + propagation, lb, "clean", {"intermittent": None}),
        ]
    return sorted(steps, key=lambda step: step.offset)  # stable: ties keep target order
