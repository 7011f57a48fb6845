"""Chaos Toolkit actions on the DynamoDB endpoint's DNS records.

``empty_endpoint`` does to the lab what the Enactor race did to us-east-1: the active plan's
record tree is deleted while the alias at the endpoint name still points at it, so resolvers
get a normal answer with no addresses. ``restore_endpoint`` is the operator's fix, used as a
rollback: the newest plan from the plan store is written back and the alias repointed.
``empty_endpoint_for`` is the outage of a given length: empty, hold, restore, whatever
interrupts the hold.

They act on the lab (found as every activity finds it; ``_lab.lab_info`` checks its addresses
are loopback) unless the configuration names a real AWS target (``chaos_dynamo_aws_target``,
see :mod:`chaos_dynamo.safety.target`). Before its first call each passes the safety guard
(:func:`chaos_dynamo.safety.guard.require_allowed`): anything but the lab or a loopback
endpoint is refused unless the experiment's allow-list names the account, region and hosted
zone. In a dry run (:mod:`chaos_dynamo.safety.dryrun`) the change batches are printed, not
sent, and waits and holds are skipped. See docs/safety.md.
"""

# No `from __future__ import annotations`: Chaos Toolkit discovery reads the real types.
from typing import Any

from chaos_dynamo.clock import REAL_CLOCK, Clock
from chaos_dynamo.control._client import JsonDict
from chaos_dynamo.control.enactor import Endpoint, initial_records
from chaos_dynamo.endpoint import _lab
from chaos_dynamo.errors import ConfigError, LabError
from chaos_dynamo.lbfleet import actions as lb_actions
from chaos_dynamo.plans import delete_changes, generation_of_tree, upsert_changes
from chaos_dynamo.planstore import PlanStore
from chaos_dynamo.safety import dryrun
from chaos_dynamo.safety.guard import Clearance, require_allowed
from chaos_dynamo.safety.target import RecordTarget, record_target

__all__ = ["empty_endpoint", "restore_endpoint", "empty_endpoint_for"]

_clock: Clock = REAL_CLOCK
"""What ``empty_endpoint_for`` reads and sleeps on; tests replace it (``monkeypatch``)."""


def _check_timeout(timeout: float) -> float:
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 < timeout <= 3600:
        raise ConfigError("timeout", f"{timeout!r} is not a duration in seconds", "use a number from 0.1 to 3600")
    return float(timeout)


def _check_wait(wait: bool) -> bool:
    if not isinstance(wait, bool):  # "no" would be truthy: refuse it rather than wait
        raise ConfigError("wait", f"{wait!r} is not true/false", "use true or false")
    return wait


def empty_endpoint(endpoint: str = "", wait: bool = True, timeout: float = 30.0, *,
                   configuration: dict[str, Any] | None = None,
                   secrets: dict[str, Any] | None = None) -> JsonDict:
    """Delete the endpoint's active plan tree, leaving its alias answering no addresses.

    Args:
        endpoint: the endpoint name; empty means the primary one (the lab's, or the first of
            ``chaos_dynamo_aws_target.endpoints``).
        wait: return only once the lab DNS answers from the change (INSYNC).
        timeout: seconds to wait for INSYNC.

    Returns:
        ``{"endpoint", "trees", "deleted_records", "change_id", "safety", "dry_run"}``; ``safety``
        says what allowed the change (docs/safety.md).
    """
    timeout, wait = _check_timeout(timeout), _check_wait(wait)
    target = record_target(configuration)  # the lab, or chaos_dynamo_aws_target; nothing sent yet
    ep = target.endpoint(endpoint)
    client = target.route53
    clearance = require_allowed("empty_endpoint", kind=target.kind_for(client), where=target.where(client),
                                region=target.region, configuration=configuration, sts=target.sts,
                                clients=[client], hosted_zones=[ep.zone_id])
    dry = dryrun.active(configuration)
    aliases = [r for r in _lab.records_at(client, ep.zone_id, ep.name) if r.alias is not None]
    trees = sorted({r.alias.dns_name for r in aliases if r.alias is not None})
    doomed = [record for tree in trees for record in _lab.records_at(client, ep.zone_id, tree)]
    if not doomed:
        _lab.logger.info("endpoint %s has no plan records to delete; already empty", ep.name)
        return {"endpoint": ep.name, "trees": trees, "deleted_records": 0, "change_id": None,
                "safety": clearance.as_dict(), "dry_run": dry}
    change_id = _lab.change(client, ep, delete_changes(doomed),
                            f"chaos-dynamo: empty {ep.name} (delete active plan tree)")
    if wait and not dry and not _lab.wait_insync(client, change_id, timeout):
        raise LabError(f"change {change_id} did not reach INSYNC within {timeout} s")
    generations = [generation_of_tree(t) for t in trees]
    _lab.logger.info("%s %s: %s %d records of plan tree(s) %s", "dry run: would empty" if dry else "emptied",
                     ep.name, "would delete" if dry else "deleted", len(doomed), trees)
    return {"endpoint": ep.name, "trees": trees, "generations": generations,
            "deleted_records": len(doomed), "change_id": change_id, "safety": clearance.as_dict(), "dry_run": dry}


def restore_endpoint(endpoint: str = "", wait: bool = True, timeout: float = 30.0, *,
                     configuration: dict[str, Any] | None = None,
                     secrets: dict[str, Any] | None = None) -> JsonDict:
    """Operator restore: write the newest plan's tree back and point the endpoint's alias at it.

    Idempotent (UPSERTs only), so it is safe as a rollback whatever state the run left.

    Args:
        endpoint: the endpoint name; empty means every endpoint of the lab (or of the target).
        wait: return only once the lab DNS answers from the change (INSYNC).
        timeout: seconds to wait for INSYNC.

    Returns:
        ``{"generation", "endpoints", "change_ids", "safety", "dry_run"}``.
    """
    timeout, wait = _check_timeout(timeout), _check_wait(wait)
    target = record_target(configuration)  # the lab, or chaos_dynamo_aws_target; nothing sent yet
    targets = [target.endpoint(endpoint)] if endpoint else list(target.endpoints)
    client = target.route53
    clearance = _clear("restore_endpoint", target, [ep.zone_id for ep in targets], configuration)
    dry = dryrun.active(configuration)
    plan = PlanStore(target.dynamodb, target.plan_table).newest()
    if plan is None:
        raise LabError(f"the plan table {target.plan_table!r} holds no plan to restore; "
                       "restart the lab to write the initial plan")
    change_ids = []
    for ep in targets:
        records = initial_records(plan, Endpoint(ep.name, ep.zone_id, ep.ipv6), target.record_ttl)
        change_ids.append(_lab.change(client, ep, upsert_changes(records),
                                      f"chaos-dynamo: restore {ep.name} to plan {plan.generation}"))
    if wait and not dry:
        for change_id in change_ids:
            if not _lab.wait_insync(client, change_id, timeout):
                raise LabError(f"change {change_id} did not reach INSYNC within {timeout} s")
    _lab.logger.info("%s %s to plan %d", "dry run: would restore" if dry else "restored", [e.name for e in targets],
                     plan.generation)
    return {"generation": plan.generation, "endpoints": [e.name for e in targets], "change_ids": change_ids,
            "safety": clearance.as_dict(), "dry_run": dry}


def _clear(activity: str, target: RecordTarget, zones: list[str],
           configuration: dict[str, Any] | None) -> Clearance:
    """The guard, for an activity that uses both of the target's clients (unique zones, in order)."""
    clients = (target.route53, target.dynamodb)
    return require_allowed(activity, kind=target.kind_for(*clients), where=target.where(*clients),
                           region=target.region, configuration=configuration, sts=target.sts,
                           clients=clients, hosted_zones=list(dict.fromkeys(zones)))


def empty_endpoint_for(seconds: float, endpoint: str = "", close_connections: bool = True, *,
                       configuration: dict[str, Any] | None = None,
                       secrets: dict[str, Any] | None = None) -> JsonDict:
    """Empty the endpoint for ``seconds``, then restore it, even if the wait is interrupted.

    The outage as a service lives it: the name resolves to nothing (``empty_endpoint``),
    the LBs close every client connection so keep-alive connections cannot hide the
    outage, and after ``seconds`` the newest plan is written back (``restore_endpoint``).
    The restore runs in a ``finally``: Ctrl-C or an error during the wait still restores.

    Args:
        seconds: how long the endpoint stays empty, 0 < seconds <= 3600.
        endpoint: the endpoint name; empty means the primary one (the lab's, or the first of
            ``chaos_dynamo_aws_target.endpoints``).
        close_connections: close the LBs' client connections once the name is empty.

    Returns:
        ``{"endpoint", "emptied_at", "restored_at", "seconds", "closed_connections"}``:
        times are seconds since the epoch, taken once the lab DNS answered empty and once
        it answered again. The lab's availability timeline
        (``GET /_chaos_dynamo/availability``) has the DNS's own switch times.
    """
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not 0 < seconds <= 3600:
        raise ConfigError("seconds", f"{seconds!r} is not a duration in seconds",
                          "use a number above 0, at most 3600")
    if not isinstance(close_connections, bool):
        raise ConfigError("close_connections", f"{close_connections!r} is not true/false", "use true or false")
    clock = _clock
    target = record_target(configuration)
    ep = target.endpoint(endpoint)  # an unknown endpoint changes nothing
    _clear("empty_endpoint_for", target, [ep.zone_id], configuration)  # refused: not even the empty runs
    dry = dryrun.active(configuration)
    closed: dict[str, Any] = {}
    try:
        empty_endpoint(ep.name, configuration=configuration)
        emptied_at = clock.now()
        if close_connections and target.lab is not None:  # outside the lab there is no LB fleet of ours
            closed = lb_actions.close_connections(configuration=configuration)
        if not dry:
            clock.sleep(max(0.0, emptied_at + seconds - clock.now()))
    finally:
        restore_endpoint(ep.name, configuration=configuration)
    restored_at = clock.now()
    _lab.logger.info("%s was empty for %.1f s", ep.name, restored_at - emptied_at)
    return {"endpoint": ep.name, "emptied_at": emptied_at, "restored_at": restored_at,
            "seconds": float(seconds), "closed_connections": closed, "dry_run": dry}
