"""Where running services are recorded: one JSON file per service next to the lab's state.

``chaos-dynamo service start`` (and the ``start_service`` activity) write
``<state dir>/services/<name>.json``; ``service stop``, ``lab down`` and the probes read it.
The probes learn from it which source address a service's DNS queries come from and where
its health and metrics endpoints are; the call logs of its Python processes go to
``<state dir>/calls/``.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from chaos_dynamo.errors import ConfigError
from chaos_dynamo.lab.state import state_path

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


def check_name(name: object, field_name: str = "service") -> str:
    """A service name usable as an SDK app id and a file name; ConfigError otherwise."""
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise ConfigError(field_name, f"{name!r} is not a service name",
                          "use 1-63 letters, digits, '.', '_' or '-', starting with a letter or digit")
    return name


@dataclass(frozen=True)
class Instance:
    """One process of a service."""

    index: int
    pid: int
    health_url: str = ""
    metrics_url: str = ""
    log_path: str = ""


@dataclass(frozen=True)
class ServiceRecord:
    """A running service as ``service start`` recorded it.

    Attributes:
        name: the service's name; also its SDK app id (``AWS_SDK_UA_APP_ID``).
        kind: a reference kind (``naive``, ``legacy``, ``standard``, ``adaptive``,
            ``hardened``) or ``command`` for the user's own program.
        command: the argv each instance runs.
        source_address: the 127.0.0.x address its DNS queries come from ("" if none).
        instances: its processes.
        started_at: wall-clock seconds when it was started.
        rate: logical calls per second per instance (reference services; 0 if unknown).
    """

    name: str
    kind: str
    command: tuple[str, ...]
    source_address: str = ""
    instances: tuple[Instance, ...] = ()
    started_at: float = 0.0
    rate: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ServiceRecord:
        data = json.loads(text)
        data["command"] = tuple(data.get("command", ()))
        data["instances"] = tuple(Instance(**i) for i in data.get("instances", ()))
        return cls(**data)


def state_dir(state: str | Path | None = None) -> Path:
    """The directory of the lab's state file (see :func:`chaos_dynamo.lab.state.state_path`)."""
    return state_path(state).parent


def services_dir(state: str | Path | None = None) -> Path:
    return state_dir(state) / "services"


def calls_dir(state: str | Path | None = None) -> Path:
    return state_dir(state) / "calls"


def record_path(name: str, state: str | Path | None = None) -> Path:
    return services_dir(state) / f"{check_name(name)}.json"


def write_record(record: ServiceRecord, state: str | Path | None = None) -> Path:
    """Write atomically, so a reader never sees half a file."""
    path = record_path(record.name, state)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(record.to_json(), encoding="utf-8")
    os.replace(tmp, path)
    return path


def read_record(name: str, state: str | Path | None = None) -> ServiceRecord | None:
    """The recorded service, or None when no service of that name is recorded."""
    try:
        return ServiceRecord.from_json(record_path(name, state).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (ValueError, TypeError, KeyError):
        return None


def list_records(state: str | Path | None = None) -> list[ServiceRecord]:
    """Every recorded service, by name; unreadable files are skipped."""
    out = []
    directory = services_dir(state)
    for path in sorted(directory.glob("*.json")) if directory.is_dir() else []:
        try:
            out.append(ServiceRecord.from_json(path.read_text(encoding="utf-8")))
        except (OSError, ValueError, TypeError, KeyError):
            continue
    return out


def remove_record(name: str, state: str | Path | None = None) -> None:
    try:
        record_path(name, state).unlink()
    except FileNotFoundError:
        pass


def addresses_by_service(records: list[ServiceRecord]) -> dict[str, str]:
    """source address -> service name, for attributing DNS queries and LB requests."""
    return {r.source_address: r.name for r in records if r.source_address}
