"""The fenced design's protections, each shown necessary by an interleaving that needs it."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from chaos_dynamo.config import default_topology
from chaos_dynamo.control.enactor import (
    ControlConfig,
    Design,
    EnactorState,
    Endpoint,
    Phase,
    PlannerState,
    enactor_step,
    initial_records,
    marker_name,
    planner_step,
    view,
)
from chaos_dynamo.control.world import MemoryPlans, MemoryZones
from chaos_dynamo.plans import Plan, plan_from_fleet
from chaos_dynamo.route53.rules import Change

ENDPOINT = Endpoint("dynamodb.us-east-1.amazonaws.com", "Z1")


def world(design: Design, keep: int = 1) -> tuple[MemoryZones, MemoryPlans, ControlConfig, Plan]:
    topo = default_topology()
    zones = MemoryZones({"Z1": "us-east-1.amazonaws.com."}, {"Z1": {}})
    plans = MemoryPlans()
    first = plan_from_fleet(1, [topo.endpoints[0]], topo.load_balancers)
    plans.put(first)
    zones.change("Z1", [Change("CREATE", r) for r in initial_records(first, ENDPOINT, 5)])
    return zones, plans, ControlConfig((ENDPOINT,), design, keep=keep), first


def write_plans(plans: MemoryPlans, template: Plan, count: int) -> None:
    planner = PlannerState()
    for _ in range(count):
        planner, _ = planner_step(planner, plans, template)


def run(state: EnactorState, zones: MemoryZones, plans: MemoryPlans, config: ControlConfig) -> EnactorState:
    while not state.phase.finished:
        state, _ = enactor_step(state, zones, plans, config)
    return state


def test_fenced_commit_is_refused_even_when_the_marker_was_missing() -> None:
    zones, plans, config, first = world(Design.FENCED)
    marker = zones.read("Z1", marker_name(ENDPOINT.name))[0]
    zones.change("Z1", [Change("DELETE", marker)])
    write_plans(plans, first, 1)                      # plan 2
    a, _ = enactor_step(EnactorState("enactor-a"), zones, plans, config)
    assert a.plan == 2
    write_plans(plans, first, 2)                      # plans 3, 4
    b = run(EnactorState("enactor-b"), zones, plans, config)
    assert b.phase == Phase.DONE and view(zones, ENDPOINT).active_generation == 4
    a, record = enactor_step(a, zones, plans, config)
    assert a.phase == Phase.ABANDONED, record
    assert view(zones, ENDPOINT).active_generation == 4


def test_naive_commit_with_a_missing_marker_goes_backwards() -> None:
    """The same interleaving without the fence: why the fence is needed."""
    zones, plans, config, first = world(Design.NAIVE)
    marker = zones.read("Z1", marker_name(ENDPOINT.name))[0]
    zones.change("Z1", [Change("DELETE", marker)])
    write_plans(plans, first, 1)
    a, _ = enactor_step(EnactorState("enactor-a"), zones, plans, config)
    write_plans(plans, first, 2)
    run(EnactorState("enactor-b", ), zones, plans, ControlConfig((ENDPOINT,), Design.NAIVE, keep=5))
    enactor_step(a, zones, plans, config)
    assert view(zones, ENDPOINT).active_generation == 2


class Interfering(MemoryZones):
    """Runs ``before`` once, right before the batch whose comment contains ``when``."""

    def __init__(self, base: MemoryZones, when: str, before: Callable[[], None]) -> None:
        super().__init__(base.names, base.records)
        self._when = when
        self._before: Callable[[], None] | None = before

    def change(self, zone_id: str, changes: Sequence[Change], comment: str = "") -> None:
        if self._when in comment and self._before is not None:
            before, self._before = self._before, None
            before()
        super().change(zone_id, changes, comment)


def test_fenced_cleanup_is_fenced_against_a_commit_between_its_read_and_its_batch() -> None:
    zones, plans, config, first = world(Design.FENCED, keep=0)
    write_plans(plans, first, 2)                       # plans 2, 3
    b, _ = enactor_step(EnactorState("enactor-b"), zones, plans, config)  # b checks 3
    a, _ = enactor_step(EnactorState("enactor-a"), zones, plans, config)  # a checks 3 too
    b, _ = enactor_step(b, zones, plans, config)       # b commits 3 -> cleanup of 1, 2
    assert b.phase == Phase.CLEANUP and b.doomed == (1, 2)
    # Someone re-points the endpoint at plan 2's tree after cleanup has looked (plan 2 was
    # not active then) and before its batch lands: the marker fence must make it fail.

    def repoint() -> None:
        from chaos_dynamo.control.enactor import alias_to, marker_record
        tree2 = [r for r in initial_records(plans.plans[2], ENDPOINT, 5) if r.name.startswith("plan-")]
        current = zones.read("Z1", marker_name(ENDPOINT.name))[0]
        MemoryZones.change(zones, "Z1", [Change("UPSERT", r) for r in tree2] + [
            Change("UPSERT", alias_to("dynamodb.us-east-1.amazonaws.com.", "A", "Z1",
                                      "plan-000002.dynamodb.us-east-1.amazonaws.com.")),
            Change("DELETE", current), Change("CREATE", marker_record(ENDPOINT.name, 2))])

    # Plan 2's tree exists (as after an earlier, partial apply), so cleanup has work to do.
    tree2 = [r for r in initial_records(plans.plans[2], ENDPOINT, 5) if r.name.startswith("plan-")]
    zones.change("Z1", [Change("UPSERT", r) for r in tree2])
    zones = Interfering(zones, "cleanup plan 2", repoint)
    records = []
    while not b.phase.finished:
        b, record = enactor_step(b, zones, plans, config)
        records.append(record)
    assert any(r.outcome == "fail" and r.generation == 2 for r in records), records
    assert not view(zones, ENDPOINT).empty, "fenced cleanup deleted the active plan"
    assert view(zones, ENDPOINT).active_generation == 2
    del a


def test_fenced_cleanup_keeps_a_plan_another_enactor_holds() -> None:
    zones, plans, config, first = world(Design.FENCED, keep=0)
    write_plans(plans, first, 1)                       # plan 2
    a, _ = enactor_step(EnactorState("enactor-a"), zones, plans, config)  # a holds 2
    write_plans(plans, first, 1)                       # plan 3
    b = run(EnactorState("enactor-b"), zones, plans, config)
    assert b.phase == Phase.DONE
    assert 2 in plans.plans, "a plan held by another Enactor was deleted"
    a = run(a, zones, plans, config)
    assert a.phase == Phase.ABANDONED
    assert not view(zones, ENDPOINT).empty
