"""chaos-dynamo: rehearse the us-east-1 DynamoDB DNS outage on a local lab.

A Chaos Toolkit extension. Activity modules (stable paths for experiment files):

* ``chaos_dynamo.endpoint.actions`` / ``chaos_dynamo.endpoint.probes``: the endpoint's DNS records
* ``chaos_dynamo.lbfleet.actions``: faults on the lab's load balancers
* ``chaos_dynamo.control.actions`` / ``chaos_dynamo.control.probes``: the DNS Planner and
  Enactors running in the lab (the stale-plan race, its fix, the operator's restore)

This module stays import-light: the DNS shim imports the package in every Python process
that has ``CHAOS_DYNAMO_DNS`` set.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["__version__", "discover", "ACTIVITY_MODULES"]

ACTIVITY_MODULES: tuple[tuple[str, str], ...] = (
    ("chaos_dynamo.endpoint.actions", "action"),
    ("chaos_dynamo.endpoint.probes", "probe"),
    ("chaos_dynamo.lbfleet.actions", "action"),
    ("chaos_dynamo.control.actions", "action"),
    ("chaos_dynamo.control.probes", "probe"),
    ("chaos_dynamo.services.actions", "action"),
    ("chaos_dynamo.services.probes", "probe"),
    ("chaos_dynamo.retry.probes", "probe"),
    ("chaos_dynamo.health.probes", "probe"),
    ("chaos_dynamo.lease.probes", "probe"),
    ("chaos_dynamo.lease.actions", "action"),
    ("chaos_dynamo.failover.probes", "probe"),
    ("chaos_dynamo.failover.actions", "action"),
)


def discover(discover_system: bool = True) -> Any:
    """What ``chaos discover chaos-dynamo`` reports: every exported action and probe."""
    from chaoslib.discovery.discover import discover_activities, initialize_discovery_result

    discovery = initialize_discovery_result("chaos-dynamo", __version__, "chaos_dynamo")
    for module, kind in ACTIVITY_MODULES:
        discovery["activities"].extend(discover_activities(module, kind))
    return discovery
