"""Chaos Toolkit control: record when the run began, so failover probes judge this run only.

::

    "controls": [
      {"name": "failover-run", "provider": {"type": "python", "module": "chaos_dynamo.failover.control"}}
    ]

It writes ``<lab state dir>/failover/run.json`` (the directory of the lab's state file:
``chaos_dynamo_state`` in the configuration, else ``$CHAOS_DYNAMO_STATE``, else
``./.chaos-dynamo``)::

    {"started_at": 1763600000.5, "experiment": "<title>", "method_started_at": null,
     "method_ended_at": null, "ended_at": null}

- Before the experiment: a new file (any file of an earlier run is replaced) with
  ``started_at`` = now (epoch seconds; the lab runs on this machine's clock).
- Before / after the method: ``method_started_at`` / ``method_ended_at``.
- After the experiment, however it ended: ``ended_at``.

The failover probes, given no ``since``, judge from ``started_at`` to ``ended_at`` (to now
while the run goes on). The control takes no arguments. chaoslib ignores every exception a
control raises except ``InterruptExecution``: a run file that cannot be written at the start
raises that (the run ends ``interrupted`` rather than judging another run's span); the
later marks only log an error.
"""

from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from chaoslib.exceptions import InterruptExecution, InvalidControl

from chaos_dynamo.clock import REAL_CLOCK, Clock
from chaos_dynamo.services import registry

__all__ = ["before_experiment_control", "before_method_control", "after_method_control",
           "after_experiment_control", "validate_control"]

logger = logging.getLogger("chaostoolkit")

MOMENTS = ("method_started_at", "method_ended_at", "ended_at")
"""The moments of a run marked after its start."""


@dataclass(frozen=True)
class RunRecord:
    """What ``run.json`` holds (epoch seconds; None until that moment came)."""

    started_at: float
    experiment: str = ""
    method_started_at: float | None = None
    method_ended_at: float | None = None
    ended_at: float | None = None


def run_path(state: str | Path | None = None) -> Path:
    """``<lab state dir>/failover/run.json``."""
    return registry.state_dir(state) / "failover" / "run.json"


def _state(configuration: dict[str, Any] | None) -> str | None:
    value = (configuration or {}).get("chaos_dynamo_state")
    return str(value) if value else None


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def read_run(state: str | Path | None = None) -> RunRecord | None:
    """The run record, or None when there is none or it is unreadable (logged)."""
    path = run_path(state)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        logger.warning("failover: ignoring the unreadable run file %s: %s", path, exc)
        return None
    started = _number(data.get("started_at")) if isinstance(data, dict) else None
    if not isinstance(data, dict) or started is None:
        logger.warning("failover: ignoring the run file %s: no started_at time in it", path)
        return None
    title = data.get("experiment")
    return RunRecord(started, title if isinstance(title, str) else "",
                     *(_number(data.get(k)) for k in MOMENTS))


def write_run(record: RunRecord, state: str | Path | None = None) -> Path:
    """Write ``record`` atomically (a reader never sees half a file)."""
    path = run_path(state)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".run.json.tmp{os.getpid()}")
    tmp.write_text(json.dumps(asdict(record), indent=2), encoding="utf-8")
    tmp.replace(path)
    return path


def start_run(title: str, state: str | Path | None = None, clock: Clock = REAL_CLOCK) -> RunRecord:
    """A new run record started now, replacing any earlier run's."""
    record = RunRecord(clock.now(), title)
    write_run(record, state)
    return record


def mark_run(moment: str, state: str | Path | None = None, clock: Clock = REAL_CLOCK) -> RunRecord | None:
    """Set ``moment`` (one of :data:`MOMENTS`) to now; None (logged) when no run was started."""
    if moment not in MOMENTS:
        raise ValueError(f"{moment!r} is not one of {MOMENTS}")
    record = read_run(state)
    if record is None:
        logger.error("failover control: no run file at %s to mark %s in (did before_experiment run?)",
                     run_path(state), moment)
        return None
    now = clock.now()
    if moment == "method_started_at":
        record = replace(record, method_started_at=now)
    elif moment == "method_ended_at":
        record = replace(record, method_ended_at=now)
    else:
        record = replace(record, ended_at=now)
    write_run(record, state)
    return record


def _refuse_arguments(arguments: dict[str, Any]) -> None:
    if arguments:
        raise InterruptExecution(f"chaos_dynamo.failover.control takes no arguments; remove "
                                 f"{sorted(arguments)} from the control's provider")


def validate_control(control: dict[str, Any]) -> None:
    """Called by ``chaos validate`` / ``chaos run``: the control takes no arguments."""
    arguments = dict(control.get("provider", {}).get("arguments") or {})
    if arguments:
        raise InvalidControl(f"control {control.get('name')!r} (chaos_dynamo.failover.control) takes no "
                             f"arguments; remove {sorted(arguments)}")


def before_experiment_control(context: dict[str, Any], configuration: dict[str, Any] | None = None,
                              secrets: dict[str, Any] | None = None, **arguments: Any) -> None:
    """Start a new run record; InterruptExecution (with the reason) if it cannot be written."""
    _refuse_arguments(arguments)
    title = str((context or {}).get("title") or "")
    try:
        record = start_run(title, _state(configuration))
    except OSError as exc:
        raise InterruptExecution(f"chaos-dynamo could not write the failover run file "
                                 f"{run_path(_state(configuration))}: {exc}") from exc
    logger.info("failover control: run %r started at %.3f (%s)", title, record.started_at,
                run_path(_state(configuration)))


def _mark(moment: str, configuration: dict[str, Any] | None) -> None:
    try:
        mark_run(moment, _state(configuration))
    except OSError as exc:
        logger.error("failover control: could not mark %s in %s: %s", moment, run_path(_state(configuration)),
                     exc)


def before_method_control(context: dict[str, Any], configuration: dict[str, Any] | None = None,
                          secrets: dict[str, Any] | None = None, **arguments: Any) -> None:
    """Record ``method_started_at``."""
    _mark("method_started_at", configuration)


def after_method_control(context: dict[str, Any], state: Any = None,
                         configuration: dict[str, Any] | None = None,
                         secrets: dict[str, Any] | None = None, **arguments: Any) -> None:
    """Record ``method_ended_at``."""
    _mark("method_ended_at", configuration)


def after_experiment_control(context: dict[str, Any], state: Any = None,
                             configuration: dict[str, Any] | None = None,
                             secrets: dict[str, Any] | None = None, **arguments: Any) -> None:
    """Record ``ended_at``: later probes without ``since`` judge this run's span only."""
    _mark("ended_at", configuration)
