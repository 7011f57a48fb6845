"""Chaos Toolkit probes of the lab's DNS control plane.

``active_generation`` reads Route 53 (through the lab's API, as any AWS client would);
the others read the control plane's history and state. What resolvers see is
``chaos_dynamo.endpoint.probes.endpoint_answer``.
"""

from typing import Any

from chaos_dynamo.control import _client
from chaos_dynamo.control._client import JsonDict, JsonList
from chaos_dynamo.control.aws import Route53Zones
from chaos_dynamo.control.enactor import Endpoint, view
from chaos_dynamo.endpoint import _lab
from chaos_dynamo.errors import ConfigError

__all__ = ["active_generation", "generation_went_backwards", "control_plane_stuck", "enactor_states",
           "race_history"]

def active_generation(endpoint: str = "", *, configuration: dict[str, Any] | None = None,
                      secrets: dict[str, Any] | None = None) -> int:
    """The generation of the plan the endpoint's alias points at, read from Route 53.

    0 when there is no alias. The alias may point at a deleted plan: then this is that
    plan's generation and ``endpoint_answer`` shows no addresses.
    """
    info = _lab.lab_info(configuration)
    ep = info.endpoint(endpoint)
    current = view(Route53Zones(_lab.route53(info)), Endpoint(ep.name, ep.zone_id, ep.ipv6))
    return current.active_generation or 0


def generation_went_backwards(*, configuration: dict[str, Any] | None = None,
                              secrets: dict[str, Any] | None = None) -> bool:
    """True when an Enactor made an older plan active over a newer one at some endpoint,
    since the last reset or operator restore. Tolerance for a healthy plane: ``false``."""
    return bool(_client.call("status", configuration=configuration)["went_backwards"])


def control_plane_stuck(*, configuration: dict[str, Any] | None = None,
                        secrets: dict[str, Any] | None = None) -> bool:
    """True when an Enactor gave up on a plan Route 53 kept refusing: no later plan can be
    applied until an operator restores the endpoints. Tolerance: ``false``."""
    return bool(_client.call("status", configuration=configuration)["stuck"])


def enactor_states(*, configuration: dict[str, Any] | None = None,
                   secrets: dict[str, Any] | None = None) -> JsonDict:
    """Each Enactor's phase (idle, applying, cleanup, done, skipped, abandoned, stuck), plan,
    lost locks and where it is paused, if it is."""
    result: JsonDict = _client.call("enactors", configuration=configuration)
    return result


def race_history(summary: bool = True, *, configuration: dict[str, Any] | None = None,
                 secrets: dict[str, Any] | None = None) -> JsonList:
    """The control plane's history since the last reset.

    Args:
        summary: True: one line per step that matters (plans applied and whether the
            generation went backwards, batches Route 53 refused, cleanups, stuck); False:
            every step with its times, outcome (ok/fail/info) and Route 53's error.
    """
    if not isinstance(summary, bool):  # "false" would be truthy
        raise ConfigError("summary", f"{summary!r} is not true/false",
                          "use true (the steps that matter) or false (every step)")
    if summary:
        lines: JsonList = _client.call("summary", configuration=configuration)["lines"]
        return lines
    entries: JsonList = _client.call("history", configuration=configuration)
    return entries
