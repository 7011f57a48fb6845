"""Chaos Toolkit control: watch the lease table for the length of an experiment.

Declare it after the control that starts the lease-holding service (the table must exist
when the watcher starts)::

    "controls": [
      {"name": "service-under-test", "provider": {"type": "python", "module": "chaos_dynamo.services.control"}},
      {"name": "lease-table-watcher", "provider": {"type": "python", "module": "chaos_dynamo.lease.control"}}
    ],
    "configuration": {"lease_table": "chaos-dynamo-leases", "lease_interval": 0.5, ...}

Configuration keys: ``lease_table`` (required), ``lease_key``, ``lease_owner``,
``lease_expiry``, ``lease_expiry_unit``, ``lease_version`` (the schema, see
:mod:`chaos_dynamo.lease.schema`), ``lease_endpoint`` ("" = the lab's DynamoDB emulator),
``lease_service`` (whose LB requests are the attempts; defaults to ``service_name``, and
``""`` means none) and ``lease_interval`` (seconds between samples, default 1). Numbers may
be strings (environment-typed configuration). The same keys given as the control's
provider ``arguments`` override the configuration.

- Before the experiment: a :class:`~chaos_dynamo.lease.watch.Watcher` starts sampling into
  ``<lab state dir>/leases/<table>.jsonl`` (truncated), after one synchronous scan, so a
  wrong table or schema stops the run before anything is broken.
- Before the method: a ``trigger_start`` marker; after it: ``trigger_end``. The lease
  probes measure recovery from the last ``trigger_end``.
- After the experiment, however it ended, and at cleanup: the watcher is stopped. Its
  scans use bounded client timeouts (``WATCHER_LIMITS``: connect 2 s, read 10 s, two
  attempts), and a watcher started later on the same table supersedes any older thread,
  which then never writes to the file again.

chaoslib logs and ignores every exception a control raises except ``InterruptExecution``,
so bad configuration raises that, with the ConfigError's message (the key and the fix):
the run ends ``interrupted`` instead of silently measuring nothing.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from chaoslib.exceptions import InterruptExecution, InvalidControl

from chaos_dynamo.clock import REAL_CLOCK
from chaos_dynamo.errors import ChaosDynamoError, ConfigError, LabError
from chaos_dynamo.lease import timeline
from chaos_dynamo.lease.schema import DEFAULT_TABLE, LeaseSchema
from chaos_dynamo.lease.timeline import TRIGGER_END, TRIGGER_START, Marker
from chaos_dynamo.lease.watch import DEFAULT_INTERVAL, Watcher, timeline_path

__all__ = ["before_experiment_control", "before_method_control", "after_method_control",
           "after_experiment_control", "cleanup_control", "validate_control", "watcher_settings"]

logger = logging.getLogger("chaostoolkit")

KEYS = ("lease_table", "lease_key", "lease_owner", "lease_expiry", "lease_expiry_unit", "lease_version",
        "lease_endpoint", "lease_service", "lease_interval")
DEFAULTS: dict[str, Any] = {"lease_key": "lease_id", "lease_owner": "owner", "lease_expiry": "expires_at",
                            "lease_expiry_unit": "s", "lease_version": "version", "lease_endpoint": "",
                            "lease_interval": DEFAULT_INTERVAL}

_watchers: dict[Path, Watcher] = {}
"""Watchers this control started in this process, by timeline file."""


def _unknown(arguments: dict[str, Any]) -> list[str]:
    return sorted(k for k in arguments if k not in KEYS)


def _interval(value: object) -> float:
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            pass
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.05 <= value <= 3600:
        raise ConfigError("lease_interval", f"{value!r} is not a duration in seconds",
                          "use a number from 0.05 to 3600")
    return float(value)


def watcher_settings(configuration: dict[str, Any] | None = None,
                     arguments: dict[str, Any] | None = None) -> dict[str, Any]:
    """The watcher to run, from configuration and the control's arguments, checked.

    Returns:
        ``{"schema": LeaseSchema, "endpoint", "service", "service_explicit", "interval",
        "state", "path"}``.

    Raises:
        ConfigError: naming the ``lease_*`` key and the fix.
    """
    arguments = dict(arguments or {})
    unknown = _unknown(arguments)
    if unknown:
        raise ConfigError("controls[chaos_dynamo.lease.control].arguments", f"unknown keys {unknown}",
                          f"use only {list(KEYS)}")
    config = dict(configuration or {})
    values = DEFAULTS | {k: v for k, v in config.items() if k in KEYS and v is not None} | arguments
    if not values.get("lease_table"):
        raise ConfigError("lease_table", "is not set", "set configuration lease_table to your lease table's "
                          f"name (the reference fleets use {DEFAULT_TABLE!r})")
    schema = LeaseSchema.from_arguments(values["lease_table"], values["lease_key"], values["lease_owner"],
                                        values["lease_expiry"], values["lease_expiry_unit"],
                                        values["lease_version"], prefix="lease_")
    endpoint = values["lease_endpoint"]
    if not isinstance(endpoint, str):
        raise ConfigError("lease_endpoint", f"{endpoint!r} is not a URL",
                          "give \"\" (the lab's DynamoDB) or a URL such as http://127.0.0.1:8000")
    explicit = "lease_service" in values
    service = values["lease_service"] if explicit else (config.get("service_name") or "")
    if not isinstance(service, str):
        raise ConfigError("lease_service", f"{service!r} is not a service name",
                          "give the name of the lease-holding service, or \"\" to count no requests")
    state = config.get("chaos_dynamo_state") or None
    return {"schema": schema, "endpoint": endpoint.strip(), "service": service.strip(),
            "service_explicit": explicit, "interval": _interval(values["lease_interval"]),
            "state": state, "path": timeline_path(schema.table, state)}


def validate_control(control: dict[str, Any]) -> None:
    """Called by ``chaos validate`` / ``chaos run``: refuse unknown provider arguments."""
    unknown = _unknown(dict(control.get("provider", {}).get("arguments") or {}))
    if unknown:
        raise InvalidControl(f"control {control.get('name')!r} (chaos_dynamo.lease.control): "
                             f"unknown arguments {unknown}; use only {list(KEYS)}")


def before_experiment_control(context: dict[str, Any], configuration: dict[str, Any] | None = None,
                              secrets: dict[str, Any] | None = None, **arguments: Any) -> None:
    """Start the lease watcher; InterruptExecution (with the reason) if it cannot."""
    try:
        settings = watcher_settings(configuration, arguments)
        schema: LeaseSchema = settings["schema"]
        path: Path = settings["path"]
        _stop(path)  # a watcher left over from an earlier run in this process
        from chaos_dynamo.endpoint._lab import lab_info
        from chaos_dynamo.lease.table import WATCHER_LIMITS, table_reader

        # Bounded waits: a scan that hangs ends long before stop() gives up on the thread.
        reader = table_reader(schema, settings["endpoint"], configuration, limits=WATCHER_LIMITS)
        service, lab = settings["service"], None
        if service:
            try:
                lab = lab_info(configuration)
            except LabError as exc:
                if settings["service_explicit"]:
                    raise
                logger.warning("lease watcher: not counting the requests of %s (service_name): %s",
                               service, exc)
                service = ""
        watcher = Watcher(schema, reader, path, settings["interval"], service, lab,
                          state=settings["state"], clock=REAL_CLOCK)
        watcher.start()
        _watchers[path] = watcher
    except InterruptExecution:
        raise
    except Exception as exc:  # noqa: BLE001 - chaoslib ignores anything but InterruptExecution
        reason = str(exc) if isinstance(exc, ChaosDynamoError) else f"{type(exc).__name__}: {exc}"
        raise InterruptExecution(f"chaos-dynamo could not start the lease watcher: {reason}") from exc


def _mark(event: str, configuration: dict[str, Any] | None, arguments: dict[str, Any]) -> None:
    try:
        path = watcher_settings(configuration, arguments)["path"]
    except ConfigError as exc:
        logger.error("lease control: no %s marker written: %s", event, exc)
        return
    if path not in _watchers:
        logger.warning("lease control: no lease watcher is running for %s; writing the %s marker anyway",
                       path, event)
    try:
        timeline.append(path, [Marker(REAL_CLOCK.now(), event)])
    except OSError as exc:
        logger.error("lease control: could not write the %s marker to %s: %s", event, path, exc)
        return
    logger.info("lease control: %s marked in %s", event, path)


def before_method_control(context: dict[str, Any], configuration: dict[str, Any] | None = None,
                          secrets: dict[str, Any] | None = None, **arguments: Any) -> None:
    """Mark ``trigger_start`` in the timeline."""
    _mark(TRIGGER_START, configuration, arguments)


def after_method_control(context: dict[str, Any], state: Any = None,
                         configuration: dict[str, Any] | None = None,
                         secrets: dict[str, Any] | None = None, **arguments: Any) -> None:
    """Mark ``trigger_end`` in the timeline: recovery is measured from here."""
    _mark(TRIGGER_END, configuration, arguments)


def after_experiment_control(context: dict[str, Any], state: Any = None,
                             configuration: dict[str, Any] | None = None,
                             secrets: dict[str, Any] | None = None, **arguments: Any) -> None:
    """Stop the watcher this control started (whatever the experiment's outcome)."""
    _stop_all()


def cleanup_control() -> None:
    """Last resort when the run ends: stop any watcher still running."""
    _stop_all()


def _stop(path: Path) -> None:
    watcher = _watchers.pop(path, None)
    if watcher is not None:
        watcher.stop()


def _stop_all() -> None:
    for path in list(_watchers):
        try:
            _stop(path)
        except Exception as exc:  # noqa: BLE001 - chaoslib would swallow it silently; say it
            logger.error("chaos-dynamo could not stop the lease watcher of %s: %s: %s", path,
                         type(exc).__name__, exc)
