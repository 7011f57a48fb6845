"""Chaos Toolkit actions: start and stop a service under test from an experiment.

Put ``start_service`` in the method (or use the :mod:`chaos_dynamo.services.control`
control, which also stops it afterwards, whatever happens) and ``stop_service`` in the
rollbacks. Records, logs and call logs go next to the lab's state file: the experiment's
``chaos_dynamo_state`` configuration, else ``$CHAOS_DYNAMO_STATE``, else
./.chaos-dynamo/lab.json.
"""

import logging
from typing import Any, Dict  # noqa: UP035 - see JsonDict

from chaos_dynamo.errors import ConfigError
from chaos_dynamo.services import supervisor
from chaos_dynamo.services.registry import ServiceRecord

__all__ = ["start_service", "stop_service"]

logger = logging.getLogger("chaostoolkit")
# No ``from __future__ import annotations`` here: chaoslib's discovery reads the hints at run
# time and names a return type only for the typing aliases ("mapping"); ``dict`` is "object".
JsonDict = Dict[str, Any]  # noqa: UP006
MAX_WARMUP = 3600.0


def state_file(configuration: dict[str, Any] | None) -> str | None:
    """The lab state file an experiment names (``chaos_dynamo_state``), or None for the default."""
    value = (configuration or {}).get("chaos_dynamo_state")
    return str(value) if value else None


def check_warmup(warmup: object, field: str = "warmup") -> float:
    seconds = float(supervisor.coerce_number(field, warmup, integer=False))
    if not 0 <= seconds <= MAX_WARMUP:
        raise ConfigError(field, f"{seconds:g} is out of range", f"use 0 to {MAX_WARMUP:g} seconds")
    return seconds


def describe(record: ServiceRecord, warmup: float = 0.0) -> dict[str, Any]:
    """What an activity returns about a started service (it lands in the journal)."""
    return {
        "service": record.name, "kind": record.kind, "source_address": record.source_address,
        "instances": len(record.instances), "pids": [i.pid for i in record.instances],
        "health_urls": [i.health_url for i in record.instances],
        "metrics_urls": [i.metrics_url for i in record.instances],
        "log_paths": [i.log_path for i in record.instances],
        "rate": record.rate, "started_at": record.started_at, "warmup": warmup,
    }


def start_service(name: str, kind: str = "", command: str = "", instances: int = 1, rate: float = 5.0,
                  concurrency: int = 8, health_url: str = "", warmup: float = 0.0, seed: int = 0,
                  args: str = "", *, configuration: dict[str, Any] | None = None,
                  secrets: dict[str, Any] | None = None) -> JsonDict:
    """Start a service on the lab and wait until every instance is ready.

    Stop it with ``stop_service`` (a rollback). A reference service also stops by itself
    once the ``chaos`` process that started it is gone, even if that was killed.

    Args:
        name: the service's name; its SDK app id and what the probes call it.
        kind: a reference service: naive, legacy, standard, adaptive or hardened, or a
            lease fleet: lease-naive or lease-hardened (its instances are shards); a failover
            controller: failover-naive or failover-hardened (one instance); or
        command: your own program (any language), as one string split like a shell does,
            e.g. ``"java -jar checkout.jar --port 80{instance}"``.
        instances: processes to run (1-64).
        rate: logical DynamoDB calls per second per instance (reference services).
        concurrency: workers per instance (reference services).
        health_url: for a command: ``http://127.0.0.1:PORT/health``; the instance is ready
            once it answers 200.
        warmup: seconds to let it run before returning (the baseline the probes compare with).
        seed: the reference services' seed (instance i uses seed + i).
        args: extra arguments of a reference service, e.g. ``"--leases 100 --expiry 10"``
            for a lease fleet (``python -m chaos_dynamo.lease.reference --help`` lists them).

    Returns:
        ``{"service", "kind", "source_address", "instances", "pids", "health_urls",
        "metrics_urls", "log_paths", "rate", "started_at", "warmup"}``.
    """
    supervisor.validate(name, kind=kind, command=command, instances=instances, rate=rate,
                        concurrency=concurrency, seed=seed, health_url=health_url, args=args)
    seconds = check_warmup(warmup)
    from chaos_dynamo.endpoint._lab import lab_info

    info = lab_info(configuration)
    state = state_file(configuration)
    record = supervisor.start(name, kind=kind, command=command, instances=instances, rate=rate,
                              concurrency=concurrency, seed=seed, health_url=health_url, args=args,
                              state=state, lab=info, exit_with_parent=True)
    logger.info("started service %s (%s, %d instance(s), pids %s, source address %s)", record.name,
                record.kind, len(record.instances), [i.pid for i in record.instances],
                record.source_address or "none")
    supervisor.warm_up(record.name, seconds, state)
    return describe(record, seconds)


def stop_service(name: str, *, configuration: dict[str, Any] | None = None,
                 secrets: dict[str, Any] | None = None) -> JsonDict:
    """Stop a service started by ``start_service`` or ``chaos-dynamo service start``.

    Not running is not an error: the result says ``"stopped": 0``, so it is safe as a rollback.

    Returns:
        ``{"service", "was_running", "stopped", "killed", "pids"}``.
    """
    result = supervisor.stop(name, state_file(configuration))
    logger.info("stopped service %s: %s", name, result)
    return result
