"""Chaos Toolkit control: run the service under test for the length of an experiment.

Declare it once at the top of the experiment; the service is described by configuration
(so each key can come from the environment)::

    "controls": [{"name": "service-under-test",
                  "provider": {"type": "python", "module": "chaos_dynamo.services.control"}}],
    "configuration": {
        "service_name": "checkout",
        "service_kind": "hardened",
        "service_command": {"type": "env", "key": "SERVICE_COMMAND", "default": ""},
        "service_instances": 2, "service_rate": 5, "service_warmup": 10
    }

Keys: ``service_name`` (required), ``service_kind`` (a reference service: naive, legacy,
standard, adaptive, hardened, or a lease fleet: lease-naive, lease-hardened, or a failover controller: failover-naive,
failover-hardened) or ``service_command`` (your program, any language; when
both are set the command wins, so an experiment can default to a reference service and a
team overrides it with theirs), ``service_instances``, ``service_rate``,
``service_concurrency``, ``service_seed``, ``service_args`` (extra arguments of a reference
service, e.g. ``"--leases 100 --expiry 10"``), ``service_health_url`` (for a command),
``service_warmup`` (seconds to run before the steady state is first checked: the
baseline). Values may be strings (environment-typed configuration); they are converted
and checked, and an error names the key. The same keys given as the control's provider
``arguments`` override the configuration. With neither a kind nor a command, nothing is
started: the service named ``service_name`` must already be running
(``chaos-dynamo service start``), and it is left running.

Before the experiment, the service is started and warmed up. After the experiment, however
it ended (completed, deviated, failed, Ctrl-C, SIGTERM), the service this control started is
stopped. chaoslib logs and ignores any exception a control raises except
``InterruptExecution``, so a service that cannot be started raises that: the run ends
``interrupted`` with the reason logged and ``chaos run`` exits 1, instead of silently
testing nothing.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from chaoslib.exceptions import InterruptExecution, InvalidControl

from chaos_dynamo.errors import ChaosDynamoError, ConfigError
from chaos_dynamo.services import supervisor
from chaos_dynamo.services.actions import check_warmup, state_file
from chaos_dynamo.services.registry import check_name

__all__ = ["before_experiment_control", "after_experiment_control", "cleanup_control",
           "validate_control", "service_settings"]

logger = logging.getLogger("chaostoolkit")

KEYS = ("service_name", "service_kind", "service_command", "service_instances", "service_rate",
        "service_concurrency", "service_seed", "service_health_url", "service_warmup",
        "service_args")
DEFAULTS: dict[str, Any] = {"service_kind": "", "service_command": "", "service_instances": 1,
                            "service_rate": 5.0, "service_concurrency": 8, "service_seed": 0,
                            "service_health_url": "", "service_warmup": 0.0, "service_args": ""}

_started: dict[str, str | Path | None] = {}
"""Services this control started in this process: name -> state file."""


def _unknown(arguments: dict[str, Any]) -> list[str]:
    return sorted(k for k in arguments if k not in KEYS)


def service_settings(configuration: dict[str, Any] | None = None,
                     arguments: dict[str, Any] | None = None) -> dict[str, Any]:
    """The service to run, from configuration and the control's arguments, converted and
    checked (ConfigError naming the key).

    Returns:
        ``{"name", "kind", "command", "instances", "rate", "concurrency", "seed",
        "health_url", "args", "warmup", "start"}``; ``start`` is False when neither a kind nor a
        command is set (the named service must already be running).
    """
    arguments = dict(arguments or {})
    unknown = _unknown(arguments)
    if unknown:
        raise ConfigError("controls[chaos_dynamo.services.control].arguments",
                          f"unknown keys {unknown}", f"use only {list(KEYS)}")
    config = {k: v for k, v in (configuration or {}).items() if k in KEYS} | arguments
    values = DEFAULTS | {k: v for k, v in config.items() if v is not None}
    if not values.get("service_name"):
        raise ConfigError("service_name", "is not set",
                          "set configuration service_name to the name of the service under test")
    kind, command = values["service_kind"], values["service_command"]
    args = values["service_args"]
    if command not in ("", None, [], ()) and kind:
        logger.info("service_command is set: it is started, service_kind %r is ignored", kind)
        kind = ""
        if args not in ("", None, [], ()):
            logger.info("service_command is set: service_args %r (for service_kind) are ignored", args)
            args = ""
    start = bool(kind) or command not in ("", None, [], ())
    spec = None
    if start:
        spec = supervisor.validate(values["service_name"], kind=kind, command=command,
                                   instances=values["service_instances"], rate=values["service_rate"],
                                   concurrency=values["service_concurrency"], seed=values["service_seed"],
                                   health_url=values["service_health_url"], args=args,
                                   prefix="service_")
    else:
        check_name(values["service_name"], "service_name")
    warmup = check_warmup(values["service_warmup"], "service_warmup")
    return {
        "name": str(values["service_name"]),
        "kind": spec.kind if spec and spec.is_reference else "",
        "command": list(spec.command) if spec else [],
        "instances": spec.instances if spec else 0,
        "rate": spec.rate if spec else 0.0,
        "concurrency": spec.concurrency if spec else 0,
        "seed": spec.seed if spec else 0,
        "health_url": spec.health_url if spec else "",
        "args": list(spec.args) if spec else [],
        "warmup": warmup,
        "start": start,
    }


def validate_control(control: dict[str, Any]) -> None:
    """Called by ``chaos validate`` / ``chaos run``: refuse unknown provider arguments."""
    unknown = _unknown(dict(control.get("provider", {}).get("arguments") or {}))
    if unknown:
        raise InvalidControl(f"control {control.get('name')!r} (chaos_dynamo.services.control): "
                             f"unknown arguments {unknown}; use only {list(KEYS)}")


def before_experiment_control(context: dict[str, Any], configuration: dict[str, Any] | None = None,
                              secrets: dict[str, Any] | None = None, **arguments: Any) -> None:
    """Start the configured service and let it warm up; InterruptExecution if it cannot."""
    try:
        settings = service_settings(configuration, arguments)
        name, state = settings["name"], state_file(configuration)
        if not settings["start"]:
            running = supervisor.running_instances(name, state)
            if not running:
                raise ConfigError("service_name", f"no service {name!r} is running and neither "
                                  "service_kind nor service_command is set",
                                  f"start it first (chaos-dynamo service start {name} ...), or set "
                                  "service_kind or service_command")
            logger.info("service %s is already running (%d instance(s)); it is left running", name, running)
            return
        from chaos_dynamo.endpoint._lab import lab_info

        info = lab_info(configuration)
        record = supervisor.start(
            name, kind=settings["kind"], command=settings["command"] or None,
            instances=settings["instances"], rate=settings["rate"],
            concurrency=settings["concurrency"], seed=settings["seed"],
            health_url=settings["health_url"], args=settings["args"], state=state, lab=info,
            progress=lambda line: logger.info("%s", line.strip()), exit_with_parent=True)
        _started[name] = state  # from here on, the after-control (or cleanup) stops it
        logger.info("service %s started: %s, %d instance(s), pids %s, source address %s; warming up "
                    "%g s", name, record.kind, len(record.instances), [i.pid for i in record.instances],
                    record.source_address or "none", settings["warmup"])
        supervisor.warm_up(name, settings["warmup"], state)
    except InterruptExecution:
        raise
    except Exception as exc:  # noqa: BLE001 - chaoslib ignores anything but InterruptExecution
        reason = str(exc) if isinstance(exc, ChaosDynamoError) else f"{type(exc).__name__}: {exc}"
        raise InterruptExecution(f"chaos-dynamo could not start the service under test: {reason}") from exc


def after_experiment_control(context: dict[str, Any], state: Any = None,
                             configuration: dict[str, Any] | None = None,
                             secrets: dict[str, Any] | None = None, **arguments: Any) -> None:
    """Stop the service this control started (whatever the experiment's outcome)."""
    _stop_started()


def cleanup_control() -> None:
    """Last resort when the run ends: stop anything this control started and has not stopped."""
    _stop_started()


def _stop_started() -> None:
    for name, state in list(_started.items()):
        try:
            result = supervisor.stop(name, state)
        except Exception as exc:  # noqa: BLE001 - chaoslib would swallow it silently; say it
            logger.error("chaos-dynamo could not stop service %s: %s: %s", name, type(exc).__name__, exc)
            continue
        _started.pop(name, None)
        logger.info("service %s stopped: %s", name, result)
