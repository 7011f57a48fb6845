"""The DNS Enactor and Planner as step machines: the logic of the October 2025 race.

Each actor is a frozen state plus a ``step`` function that performs exactly one atomic
interaction with the world (one read-and-decide, one Route 53 change batch, one cleanup
deletion, one plan write) and returns the next state and a :class:`StepRecord`. The same
functions run

* in the lab, by threads, through boto3 (:mod:`chaos_dynamo.control.runtime`), with
  failpoints between steps; and
* in memory, by the explorer, which chooses the order of steps
  (:mod:`chaos_dynamo.control.explorer`).

Per endpoint ``E`` the zone holds:

* ``plan-NNNNNN.E``: one record tree per plan (weighted records, one per load balancer);
* ``E``: an alias to the active tree;
* ``_rollback.E``: an alias to the tree that was active before (so a rollback is one flip);
* ``_lock.E``: a TXT lock (holder and plan), deleted and re-created in every batch, so a
  batch built on a stale read of the lock fails: the Enactor has *lost the lock*;
* ``_generation.E``: a TXT marker with the active plan's generation.

Two designs:

``naive`` (as in us-east-1): the Enactor checks *once*, before it starts, that its plan is
newer than the applied one; cleanup deletes every plan more than K generations older than
the one it applied. A delayed Enactor can then apply a stale plan over a newer one, and
cleanup can delete the plan that is now active: the endpoint answers nothing, and since
every later batch must point ``_rollback.E`` at the (deleted) active tree, Route 53 refuses
them all: the control plane is stuck until an operator restores the endpoint.

``fenced`` (the fix): the batch deletes the *exact* generation marker the Enactor saw and
creates its own, so a stale batch is refused by Route 53 itself and the Enactor gives up;
cleanup fences on the markers the same way and never deletes an active or held plan.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from chaos_dynamo.config import EndpointSpec
from chaos_dynamo.control.world import PlanSource, ZoneStore
from chaos_dynamo.errors import AwsError, InvalidChangeBatch
from chaos_dynamo.plans import Plan, PlanEntry, generation_of_tree, tree_name, tree_records
from chaos_dynamo.route53.records import AliasTarget, RecordSet, normalize_name
from chaos_dynamo.route53.rules import Change


class Design(StrEnum):
    NAIVE = "naive"
    FENCED = "fenced"


@dataclass(frozen=True)
class Endpoint:
    """An endpoint the control plane manages, with the hosted zone it lives in."""

    name: str
    zone_id: str
    ipv6: bool = False

    @property
    def spec(self) -> EndpointSpec:
        return EndpointSpec(self.name, "", self.ipv6)

    @property
    def types(self) -> tuple[str, ...]:
        return ("A", "AAAA") if self.ipv6 else ("A",)


@dataclass(frozen=True)
class ControlConfig:
    """How the control plane behaves; the same for every actor in one run."""

    endpoints: tuple[Endpoint, ...]
    design: Design = Design.NAIVE
    keep: int = 2
    """Cleanup deletes plans more than ``keep`` generations older than the one applied."""
    record_ttl: int = 5
    max_attempts: int = 3
    """Failed batches on one endpoint (other than a lost lock) before the Enactor is stuck."""
    max_lock_losses: int = 50


def lock_name(endpoint: str) -> str:
    return normalize_name(f"_lock.{endpoint}")


def marker_name(endpoint: str) -> str:
    return normalize_name(f"_generation.{endpoint}")


def rollback_name(endpoint: str) -> str:
    return normalize_name(f"_rollback.{endpoint}")


def lock_record(endpoint: str, holder: str, generation: int) -> RecordSet:
    return RecordSet(lock_name(endpoint), "TXT", ttl=0, values=(f'"holder={holder} plan={generation}"',))


def marker_record(endpoint: str, generation: int) -> RecordSet:
    return RecordSet(marker_name(endpoint), "TXT", ttl=0, values=(f'"{generation}"',))


def marker_value(record: RecordSet | None) -> int | None:
    if record is None or not record.values:
        return None
    text = record.values[0].strip('"')
    return int(text) if text.isdigit() else None


def alias_to(name: str, rtype: str, zone_id: str, target: str) -> RecordSet:
    return RecordSet(name=name, type=rtype, alias=AliasTarget(zone_id, target, False))


def initial_records(plan: Plan, endpoint: Endpoint, ttl: int) -> list[RecordSet]:
    """Everything an endpoint needs before any Enactor runs: tree, aliases, lock, marker."""
    tree = tree_name(endpoint.name, plan.generation)
    return (
        tree_records(plan, endpoint.spec, ttl)
        + [alias_to(normalize_name(endpoint.name), t, endpoint.zone_id, tree) for t in endpoint.types]
        + [alias_to(rollback_name(endpoint.name), t, endpoint.zone_id, tree) for t in endpoint.types]
        + [lock_record(endpoint.name, "none", plan.generation), marker_record(endpoint.name, plan.generation)]
    )


# --- observation (shared by the Enactor, the explorer's invariants and the probes) ---------

@dataclass(frozen=True)
class EndpointView:
    """What the zone says about one endpoint right now."""

    alias_target: str | None
    active_generation: int | None
    marker: int | None
    tree_size: int

    @property
    def empty(self) -> bool:
        """Resolvers get no address: no alias, or an alias to a tree with no records."""
        return self.alias_target is None or self.tree_size == 0


def read_marker(zones: ZoneStore, endpoint: Endpoint) -> int | None:
    """The endpoint's generation marker alone (one read, where ``view`` takes three)."""
    markers = zones.read(endpoint.zone_id, marker_name(endpoint.name))
    return marker_value(markers[0] if markers else None)


def view(zones: ZoneStore, endpoint: Endpoint) -> EndpointView:
    aliases = [r for r in zones.read(endpoint.zone_id, endpoint.name) if r.alias is not None and r.type == "A"]
    target = aliases[0].alias.dns_name if aliases and aliases[0].alias else None
    size = len([r for r in zones.read(endpoint.zone_id, target) if r.type == "A"]) if target else 0
    markers = zones.read(endpoint.zone_id, marker_name(endpoint.name))
    return EndpointView(target, generation_of_tree(target) if target else None,
                        marker_value(markers[0] if markers else None), size)


# --- steps ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class StepRecord:
    """One step of one actor, as a history entry (``ok``, ``fail`` or ``info``)."""

    actor: str
    action: str
    outcome: str
    generation: int | None = None
    endpoint: str | None = None
    detail: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v not in (None, "")}


class Phase(StrEnum):
    IDLE = "idle"
    APPLYING = "applying"
    CLEANUP = "cleanup"
    DONE = "done"
    SKIPPED = "skipped"
    ABANDONED = "abandoned"
    STUCK = "stuck"

    @property
    def finished(self) -> bool:
        return self in (Phase.DONE, Phase.SKIPPED, Phase.ABANDONED, Phase.STUCK)


@dataclass(frozen=True)
class EnactorState:
    name: str
    phase: Phase = Phase.IDLE
    plan: int | None = None
    seen: tuple[int | None, ...] = ()
    endpoint: int = 0
    attempts: int = 0
    lock_losses: int = 0
    doomed: tuple[int, ...] = ()
    applied: tuple[str, ...] = field(default=())

    def next_action(self) -> str:
        """The name of the step ``enactor_step`` will take next (failpoints key on it)."""
        return {Phase.IDLE: "check", Phase.APPLYING: "commit", Phase.CLEANUP: "cleanup"}.get(self.phase, "none")


def enactor_step(state: EnactorState, zones: ZoneStore, plans: PlanSource, config: ControlConfig,
                 lose_lock: bool = False) -> tuple[EnactorState, StepRecord]:
    """Take the Enactor's next step. ``lose_lock`` makes this commit behave as a lost lock."""
    if state.phase == Phase.IDLE:
        return _check(state, zones, plans, config)
    if state.phase == Phase.APPLYING:
        return _commit(state, zones, plans, config, lose_lock)
    if state.phase == Phase.CLEANUP:
        return _cleanup(state, zones, plans, config)
    return state, StepRecord(state.name, "none", "info", state.plan, detail=f"already {state.phase.value}")


def _check(state: EnactorState, zones: ZoneStore, plans: PlanSource,
           config: ControlConfig) -> tuple[EnactorState, StepRecord]:
    """Pick the newest plan and make the one-time "newer than applied" check."""
    newest = plans.newest_generation()
    seen = tuple(read_marker(zones, ep) for ep in config.endpoints)
    # Where a marker is missing, the alias still says which plan is active.
    applied = max((g for g in seen if g is not None), default=0)
    for ep, marker in zip(config.endpoints, seen, strict=True):
        if marker is None:
            applied = max(applied, view(zones, ep).active_generation or 0)
    if newest is None or newest <= applied:
        return (replace(state, phase=Phase.SKIPPED, plan=newest, seen=seen),
                StepRecord(state.name, "check", "ok", newest, detail=f"nothing newer than {applied}"))
    plans.hold(newest, state.name)
    return (replace(state, phase=Phase.APPLYING, plan=newest, seen=seen, endpoint=0, attempts=0),
            StepRecord(state.name, "check", "ok", newest, detail=f"plan {newest} is newer than applied {applied}"))


def build_batch(state: EnactorState, endpoint: Endpoint, plan: Plan, zones: ZoneStore,
                config: ControlConfig) -> list[Change]:
    """The one atomic batch that makes ``plan`` active at ``endpoint``."""
    ep_name = normalize_name(endpoint.name)
    tree = tree_name(endpoint.name, plan.generation)
    changes: list[Change] = []
    lock = zones.read(endpoint.zone_id, lock_name(endpoint.name))
    if lock:
        changes.append(Change("DELETE", lock[0]))
    changes.append(Change("CREATE", lock_record(endpoint.name, state.name, plan.generation)))
    changes += [Change("UPSERT", r) for r in tree_records(plan, endpoint.spec, config.record_ttl)]
    current = [r for r in zones.read(endpoint.zone_id, ep_name) if r.alias is not None]
    for alias in current:
        # The rollback record keeps the previously active tree one flip away. If that tree
        # is gone, Route 53 refuses the whole batch: the stuck state of us-east-1.
        assert alias.alias is not None
        changes.append(Change("UPSERT", alias_to(rollback_name(endpoint.name), alias.type,
                                                 endpoint.zone_id, alias.alias.dns_name)))
    changes += [Change("UPSERT", alias_to(ep_name, t, endpoint.zone_id, tree)) for t in endpoint.types]
    seen = state.seen[state.endpoint] if state.endpoint < len(state.seen) else None
    if config.design == Design.FENCED:
        # The fence: the batch only applies if the marker is still exactly what was checked
        # (with no marker seen, a CREATE fences too: it fails once anyone has written one).
        if seen is not None:
            changes.append(Change("DELETE", marker_record(endpoint.name, seen)))
        changes.append(Change("CREATE", marker_record(endpoint.name, plan.generation)))
    else:
        changes.append(Change("UPSERT", marker_record(endpoint.name, plan.generation)))
    return changes


def classify(error: InvalidChangeBatch, endpoint: str) -> str:
    """Why Route 53 refused an Enactor's batch: ``lock``, ``fence`` or ``other``."""
    text = " ".join(error.messages).lower()
    if lock_name(endpoint) in text:
        return "lock"
    if marker_name(endpoint) in text:
        return "fence"
    return "other"


def _commit(state: EnactorState, zones: ZoneStore, plans: PlanSource, config: ControlConfig,
            lose_lock: bool) -> tuple[EnactorState, StepRecord]:
    assert state.plan is not None
    endpoint = config.endpoints[state.endpoint]
    plan = plans.get(state.plan)
    if plan is None:
        # The plan was deleted under the Enactor (naive cleanup by another Enactor).
        return _finish(state, plans, Phase.ABANDONED,
                       StepRecord(state.name, "commit", "fail", state.plan, endpoint.name, "plan no longer exists"))
    if lose_lock:
        return _lock_lost(state, plans, config, endpoint, "lost the lock (failpoint)")
    try:
        zones.change(endpoint.zone_id, build_batch(state, endpoint, plan, zones, config),
                     f"{state.name}: apply plan {plan.generation}")
    except InvalidChangeBatch as exc:
        kind = classify(exc, endpoint.name)
        if kind == "lock":
            return _lock_lost(state, plans, config, endpoint, "lost the lock: " + exc.aws_message)
        if kind == "fence":
            return _finish(state, plans, Phase.ABANDONED,
                           StepRecord(state.name, "commit", "fail", plan.generation, endpoint.name,
                                      "stale plan refused by Route 53 (generation marker moved)"))
        attempts = state.attempts + 1
        record = StepRecord(state.name, "commit", "fail", plan.generation, endpoint.name, exc.aws_message)
        if attempts >= config.max_attempts:
            # Giving up releases the hold, so a stuck Enactor never pins its plan forever.
            return _finish(replace(state, attempts=attempts), plans, Phase.STUCK, record)
        return replace(state, attempts=attempts), record
    applied = state.applied + (endpoint.name,)
    record = StepRecord(state.name, "commit", "ok", plan.generation, endpoint.name)
    if state.endpoint + 1 < len(config.endpoints):
        return replace(state, endpoint=state.endpoint + 1, attempts=0, applied=applied), record
    return _start_cleanup(replace(state, applied=applied), plans, config), record


def _lock_lost(state: EnactorState, plans: PlanSource, config: ControlConfig, endpoint: Endpoint,
               why: str) -> tuple[EnactorState, StepRecord]:
    losses = state.lock_losses + 1
    record = StepRecord(state.name, "commit", "fail", state.plan, endpoint.name, why)
    if losses >= config.max_lock_losses:
        return _finish(state, plans, Phase.ABANDONED, record)
    return replace(state, lock_losses=losses), record


def _start_cleanup(state: EnactorState, plans: PlanSource, config: ControlConfig) -> EnactorState:
    assert state.plan is not None
    doomed = tuple(g for g in plans.generations() if g < state.plan - config.keep)
    return replace(state, phase=Phase.CLEANUP, doomed=doomed)


def _cleanup(state: EnactorState, zones: ZoneStore, plans: PlanSource,
             config: ControlConfig) -> tuple[EnactorState, StepRecord]:
    """Delete one old plan: its record trees, then its plan-store entry."""
    if not state.doomed:
        return _finish(state, plans, Phase.DONE, StepRecord(state.name, "cleanup", "ok", state.plan,
                                                            detail="nothing left to delete"))
    generation, rest = state.doomed[0], state.doomed[1:]
    fenced = config.design == Design.FENCED
    if fenced and (plans.holders(generation) - {state.name}):
        record = StepRecord(state.name, "cleanup", "info", generation, detail="held by another Enactor: kept")
        return _after_cleanup(replace(state, doomed=rest), plans, record)
    deleted = 0
    for zone_id in sorted({ep.zone_id for ep in config.endpoints}):
        changes: list[Change] = []
        for ep in (e for e in config.endpoints if e.zone_id == zone_id):
            tree = tree_name(ep.name, generation)
            if fenced:
                current = view(zones, ep)
                if current.alias_target == tree:
                    continue  # never delete the active plan
                if current.marker is None:
                    continue  # nothing to fence on: keep the tree rather than risk the active plan
                # Fence on the marker: an Enactor committing meanwhile makes this batch fail.
                marker = marker_record(ep.name, current.marker)
                changes += [Change("DELETE", marker), Change("CREATE", marker)]
            changes += [Change("DELETE", r) for r in zones.read(zone_id, tree)]
        doomed_records = [c for c in changes if not c.record.name.startswith("_generation.")]
        if not doomed_records:
            continue
        try:
            zones.change(zone_id, changes, f"{state.name}: cleanup plan {generation}")
            deleted += len(doomed_records)
        except InvalidChangeBatch as exc:
            # Only the fence can fail here: an Enactor committed meanwhile. Look again next step.
            return state, StepRecord(state.name, "cleanup", "fail", generation, detail=exc.aws_message)
    if not plans.delete(generation, unless_held=fenced):
        record = StepRecord(state.name, "cleanup", "info", generation, detail="held: plan entry kept")
    else:
        record = StepRecord(state.name, "cleanup", "ok", generation, detail=f"deleted {deleted} records")
    return _after_cleanup(replace(state, doomed=rest), plans, record)


def _after_cleanup(state: EnactorState, plans: PlanSource, record: StepRecord) -> tuple[EnactorState, StepRecord]:
    if state.doomed:
        return state, record
    return _finish(state, plans, Phase.DONE, record)


def _finish(state: EnactorState, plans: PlanSource, phase: Phase,
            record: StepRecord) -> tuple[EnactorState, StepRecord]:
    if state.plan is not None:
        plans.release(state.plan, state.name)
    return replace(state, phase=phase), record


# --- the Planner ---------------------------------------------------------------------------

@dataclass(frozen=True)
class PlannerState:
    name: str = "planner"
    written: int = 0


def next_plan(generation: int, template: Plan) -> Plan:
    """Plan ``generation``: the template's load balancers with weights that move a little,
    deterministically, so every plan differs from the last."""
    def weight(entry: PlanEntry, i: int) -> int:
        return max(1, min(255, entry.weight + ((generation * 7 + i * 13) % 21) - 10))

    return Plan(generation, tuple(
        (name, tuple(PlanEntry(e.lb, e.address, weight(e, i)) for i, e in enumerate(entries)))
        for name, entries in template.endpoints))


def planner_step(state: PlannerState, plans: PlanSource, template: Plan) -> tuple[PlannerState, StepRecord]:
    """Write the next plan."""
    generation = (plans.newest_generation() or 0) + 1
    try:
        plans.put(next_plan(generation, template))
    except AwsError as exc:
        return state, StepRecord(state.name, "plan", "fail", generation, detail=exc.aws_message)
    return replace(state, written=state.written + 1), StepRecord(state.name, "plan", "ok", generation)


def trace_digest(records: Sequence[StepRecord]) -> str:
    """A short, stable digest of a history, to compare two runs of one seed."""
    text = json.dumps([r.as_dict() for r in records], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
