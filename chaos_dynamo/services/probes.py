"""Chaos Toolkit probes: is a service under test running?"""

from typing import Any

from chaos_dynamo.services import supervisor
from chaos_dynamo.services.actions import state_file
from chaos_dynamo.services.registry import check_name, read_record

__all__ = ["service_running", "service_instances"]


def service_running(name: str, *, configuration: dict[str, Any] | None = None,
                    secrets: dict[str, Any] | None = None) -> bool:
    """True when every recorded instance of service ``name`` is alive (False when not recorded)."""
    state = state_file(configuration)
    record = read_record(check_name(name), state)
    if record is None or not record.instances:
        return False
    return len(supervisor.live_pids(record)) == len(record.instances)


def service_instances(name: str, *, configuration: dict[str, Any] | None = None,
                      secrets: dict[str, Any] | None = None) -> int:
    """How many instances of service ``name`` are alive (0 when it is not recorded)."""
    return supervisor.running_instances(name, state_file(configuration))
