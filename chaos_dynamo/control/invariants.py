"""The control plane's invariants, as pure checks over what the zones show.

One definition serves the explorer (on every in-memory state it visits,
:mod:`chaos_dynamo.control.explorer`) and the lab's scenarios (after the race's cleanup and
after every replayed step, :mod:`chaos_dynamo.control.scenarios`), so a kind found in
memory is the same string, checked the same way, on the lab.

Kinds, for every endpoint:

* :data:`EMPTY_ENDPOINT`: the endpoint must resolve (an alias to a tree that has records);
  this is the outage of 20 October 2025.
* :data:`GENERATION_DECREASED`: the active plan's generation must never be lower than the
  highest one active before (a stale plan applied over a newer one).
* :data:`ENACTOR_STUCK`: an Enactor gave up (Route 53 refused its batches), so no later plan
  can be applied without an operator. The explorer reports it as a finding, not a violation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from chaos_dynamo.control.enactor import EndpointView
from chaos_dynamo.route53.records import normalize_name

EMPTY_ENDPOINT = "empty-endpoint"
GENERATION_DECREASED = "generation-decreased"
ENACTOR_STUCK = "enactor-stuck"
KINDS = (EMPTY_ENDPOINT, GENERATION_DECREASED)
"""Invariant violations, most severe first."""


@dataclass(frozen=True)
class Violation:
    """An invariant that does not hold at one endpoint (``endpoint`` is a normalized name,
    or ``""`` when it is not known)."""

    kind: str
    endpoint: str
    detail: str

    def as_dict(self) -> dict[str, str]:
        return {"kind": self.kind, "endpoint": self.endpoint, "detail": self.detail}


def check_endpoints(names: Sequence[str], views: Sequence[EndpointView],
                    highest: Sequence[int]) -> list[Violation]:
    """Every invariant broken at the endpoints ``names``, as ``views`` show them now.

    Args:
        names: the endpoints, in the order of ``views`` and ``highest``.
        views: what each endpoint's zone says now.
        highest: the highest generation active at each endpoint so far, now included.
    """
    found = []
    for name, v, high in zip(names, views, highest, strict=True):
        endpoint = normalize_name(name)
        if v.empty:
            where = (f"the alias points at {v.alias_target}, which has no records" if v.alias_target
                     else "there is no alias")
            found.append(Violation(EMPTY_ENDPOINT, endpoint, f"{where}: resolvers get NOERROR with no addresses"))
        if v.active_generation is not None and v.active_generation < high:
            found.append(Violation(GENERATION_DECREASED, endpoint,
                                   f"plan {v.active_generation} is active after plan {high} was: "
                                   "a stale plan was applied over a newer one"))
    return found


def raise_highest(highest: Sequence[int], views: Sequence[EndpointView]) -> tuple[int, ...]:
    """The highest generation active so far at each endpoint, now included."""
    return tuple(max(h, v.active_generation or 0) for h, v in zip(highest, views, strict=True))


def enactor_stuck(endpoint: str, detail: str) -> Violation:
    """An Enactor that gave up at ``endpoint`` ("" when not known), and why."""
    return Violation(ENACTOR_STUCK, normalize_name(endpoint) if endpoint else "", detail)


def same_violation(expected: Violation, observed: Violation) -> bool:
    """Whether ``observed`` is the violation ``expected`` names: the same kind, exactly, at
    the same endpoint (either endpoint empty: any)."""
    if expected.kind != observed.kind:
        return False
    return not expected.endpoint or not observed.endpoint or \
        normalize_name(expected.endpoint) == normalize_name(observed.endpoint)


__all__ = [
    "EMPTY_ENDPOINT", "ENACTOR_STUCK", "GENERATION_DECREASED", "KINDS", "Violation", "check_endpoints",
    "enactor_stuck", "raise_highest", "same_violation",
]
