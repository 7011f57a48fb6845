"""Chaos Toolkit actions on the DynamoDB endpoint's DNS records.

``empty_endpoint`` does to the lab what the Enactor race did to us-east-1: the active plan's
record tree is deleted while the alias at the endpoint name still points at it, so resolvers
get a normal answer with no addresses. ``restore_endpoint`` is the operator's fix, used as a
rollback: the newest plan from the plan store is written back and the alias repointed.
``empty_endpoint_for`` is the outage of a given length: empty, hold, restore, whatever
interrupts the hold.

Both act only on a lab at a loopback address (``_lab.lab_info`` checks it).
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
from chaos_dynamo.route53.backend import make_client

__all__ = ["empty_endpoint", "restore_endpoint", "empty_endpoint_for"]

_clock: Clock = REAL_CLOCK
"""What ``empty_endpoint_for`` reads and sleeps on; tests replace it (``monkeypatch``)."""


def _check_timeout(timeout: float) -> float:
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 < timeout <= 3600:
        raise ConfigError("timeout", f"{timeout!r} is not a duration in seconds", "use a number from 0.1 to 3600")
    return float(timeout)


def empty_endpoint(endpoint: str = "", wait: bool = True, timeout: float = 30.0, *,
                   configuration: dict[str, Any] | None = None,
                   secrets: dict[str, Any] | None = None) -> JsonDict:
    """Delete the endpoint's active plan tree, leaving its alias answering no addresses.

    Args:
        endpoint: the endpoint name; empty means the lab's primary DynamoDB endpoint.
        wait: return only once the lab DNS answers from the change (INSYNC).
        timeout: seconds to wait for INSYNC.

    Returns:
        ``{"endpoint", "trees", "deleted_records", "change_id"}``.
    """
    timeout = _check_timeout(timeout)
    info = _lab.lab_info(configuration)  # refuses a lab whose addresses are not loopback
    ep = info.endpoint(endpoint)
    client = _lab.route53(info)
    aliases = [r for r in _lab.records_at(client, ep.zone_id, ep.name) if r.alias is not None]
    trees = sorted({r.alias.dns_name for r in aliases if r.alias is not None})
    doomed = [record for tree in trees for record in _lab.records_at(client, ep.zone_id, tree)]
    if not doomed:
        _lab.logger.info("endpoint %s has no plan records to delete; already empty", ep.name)
        return {"endpoint": ep.name, "trees": trees, "deleted_records": 0, "change_id": None}
    change_id = _lab.change(client, ep, delete_changes(doomed),
                            f"chaos-dynamo: empty {ep.name} (delete active plan tree)")
    if wait and not _lab.wait_insync(client, change_id, timeout):
        raise LabError(f"change {change_id} did not reach INSYNC within {timeout} s")
    generations = [generation_of_tree(t) for t in trees]
    _lab.logger.info("emptied %s: deleted %d records of plan tree(s) %s", ep.name, len(doomed), trees)
    return {"endpoint": ep.name, "trees": trees, "generations": generations,
            "deleted_records": len(doomed), "change_id": change_id}


def restore_endpoint(endpoint: str = "", wait: bool = True, timeout: float = 30.0, *,
                     configuration: dict[str, Any] | None = None,
                     secrets: dict[str, Any] | None = None) -> JsonDict:
    """Operator restore: write the newest plan's tree back and point the endpoint's alias at it.

    Idempotent (UPSERTs only), so it is safe as a rollback whatever state the run left.

    Args:
        endpoint: the endpoint name; empty means every endpoint of the lab.
        wait: return only once the lab DNS answers from the change (INSYNC).
        timeout: seconds to wait for INSYNC.

    Returns:
        ``{"generation", "endpoints", "change_ids"}``.
    """
    timeout = _check_timeout(timeout)
    info = _lab.lab_info(configuration)  # refuses a lab whose addresses are not loopback
    store = PlanStore(make_client("dynamodb", info.api_url, info.region), info.plan_table)
    plan = store.newest()
    if plan is None:
        raise LabError(f"the plan table {info.plan_table!r} holds no plan to restore; "
                       "restart the lab to write the initial plan")
    targets = [info.endpoint(endpoint)] if endpoint else list(info.endpoints)
    client = _lab.route53(info)
    change_ids = []
    for ep in targets:
        records = initial_records(plan, Endpoint(ep.name, ep.zone_id, ep.ipv6), info.record_ttl)
        change_ids.append(_lab.change(client, ep, upsert_changes(records),
                                      f"chaos-dynamo: restore {ep.name} to plan {plan.generation}"))
    if wait:
        for change_id in change_ids:
            if not _lab.wait_insync(client, change_id, timeout):
                raise LabError(f"change {change_id} did not reach INSYNC within {timeout} s")
    _lab.logger.info("restored %s to plan %d", [e.name for e in targets], plan.generation)
    return {"generation": plan.generation, "endpoints": [e.name for e in targets], "change_ids": change_ids}


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
        endpoint: the endpoint name; empty means the lab's primary DynamoDB endpoint.
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
    ep = _lab.lab_info(configuration).endpoint(endpoint)  # an unknown endpoint changes nothing
    closed: dict[str, Any] = {}
    try:
        empty_endpoint(ep.name, configuration=configuration)
        emptied_at = clock.now()
        if close_connections:
            closed = lb_actions.close_connections(configuration=configuration)
        clock.sleep(max(0.0, emptied_at + seconds - clock.now()))
    finally:
        restore_endpoint(ep.name, configuration=configuration)
    restored_at = clock.now()
    _lab.logger.info("%s was empty for %.1f s", ep.name, restored_at - emptied_at)
    return {"endpoint": ep.name, "emptied_at": emptied_at, "restored_at": restored_at,
            "seconds": float(seconds), "closed_connections": closed}
