"""The call log: what a service's SDK did, call by call and attempt by attempt.

A Python service run with the shim (``CHAOS_DYNAMO_CALL_LOG`` set to a directory) appends
one JSON object per line to ``<dir>/<service>-<pid>.jsonl`` as botocore works:

- ``{"e": "client", "id": "<pid>-c<n>", "t": T, "pid": P, "svc": "checkout", "api": "dynamodb",
  "prefix": endpoint prefix, "region": "us-east-1", "endpoint": URL, "retry_mode": "standard",
  "max_attempts": 4 | null, "connect_timeout": 60, "connect_timeout_set": bool, "read_timeout":
  60, "read_timeout_set": bool, "pool": 10, "site": "/path/app.py:12", "func": "main"}``:
  botocore made a client (read back as a :class:`Client`), with the retry mode and attempts
  per call botocore resolved; ``*_set`` say whether the application chose the timeout or
  botocore's default stands; ``site`` is the first line of application code (outside
  botocore and boto3) on the stack;
- ``{"e": "call", "id": "<pid>-<n>", "t": T, "op": "GetItem", "svc": "checkout", "pid": P,
  "th": thread id, "key": digest of the request, "client": "<pid>-c<n>"}``: a client method
  call began (whatever botocore's own retries);
- ``{"e": "attempt", "id": ..., "t": T, "n": 1}``: attempt ``n`` of it is about to be sent;
- ``{"e": "outcome", "id": ..., "t": T, "n": 1, "status": 200 | null, "error": str | null,
  "dns": bool}``: how attempt ``n`` ended (``status`` null when no HTTP response came back;
  ``dns`` true when the endpoint's name did not resolve);
- ``{"e": "end", "id": ..., "t": T, "ok": bool, "error": str | null}``: the call returned
  or raised.

An application that retries by itself (tenacity, a loop, a new client per attempt) calls
the client again with the same request: a client call that follows a *failed* one in the
same thread with the same request digest, within ``MAX_RETRY_GAP`` seconds of the failure,
is read back as another attempt of the same logical call, so attempts per logical call count the application's retries as well as
botocore's.

A call still retrying when the log is read has no ``end``: it is read back with ``end`` None
and the attempts made so far, so a call that never gives up is counted, not lost.

Times are wall-clock seconds (``time.time()``), comparable with the lab's logs on the same
machine. Kept to the standard library: the shim imports it into every Python process.
"""

from __future__ import annotations

import json
import os
import re
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

CALL_LOG_ENV = "CHAOS_DYNAMO_CALL_LOG"
"""Directory the shim writes call logs into (one file per process)."""
SERVICE_ENV = "CHAOS_DYNAMO_SERVICE"
"""The service a process belongs to; else ``AWS_SDK_UA_APP_ID``; else ``unattributed``."""
APP_ID_ENV = "AWS_SDK_UA_APP_ID"
UNATTRIBUTED = "unattributed"

_SAFE = re.compile(r"[^A-Za-z0-9_.-]+")

MAX_RETRY_GAP = 30.0
"""Seconds after a failed call within which a repetition of its request counts as a retry:
longer than any usual backoff cap (botocore's 20 s, legacy mode's 12.8 s), short enough that
a thread reused much later for the same request starts a new logical call."""


def service_name(environ: Any = None) -> str:
    """The service this process reports as: $CHAOS_DYNAMO_SERVICE, $AWS_SDK_UA_APP_ID, or unattributed."""
    env = os.environ if environ is None else environ
    return str(env.get(SERVICE_ENV) or env.get(APP_ID_ENV) or UNATTRIBUTED)


def log_path(directory: str | Path, service: str, pid: int) -> Path:
    """``<dir>/<service>-<pid>.jsonl``, with the service name made safe for a file name."""
    return Path(directory) / f"{_SAFE.sub('_', service) or UNATTRIBUTED}-{pid}.jsonl"


class CallLogWriter:
    """Appends events to one process's call log; safe to call from many threads.

    Each event is one ``os.write`` of one line to a file opened with ``O_APPEND``, so lines
    never interleave and a reader sees whole lines (a torn last line is skipped on read).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self._lock = threading.Lock()

    def write(self, event: dict[str, Any]) -> None:
        line = (json.dumps(event, separators=(",", ":")) + "\n").encode()
        with self._lock:
            if self._fd >= 0:
                os.write(self._fd, line)

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1


@dataclass(frozen=True)
class Attempt:
    """One attempt of a call. ``end`` is None while it is in flight (or was cut off)."""

    number: int
    start: float
    end: float | None = None
    status: int | None = None
    error: str | None = None
    dns_failure: bool = False


@dataclass(frozen=True)
class Call:
    """One logical call: what the application asked for once, with every attempt it took."""

    id: str
    service: str
    pid: int
    operation: str
    start: float
    end: float | None = None
    ok: bool | None = None
    error: str | None = None
    attempts: tuple[Attempt, ...] = field(default_factory=tuple)
    client_calls: int = 1
    """How many client method calls this logical call took (more than 1: the application
    retried by itself)."""
    api: str = ""
    """The AWS service as botocore's events name it (``dynamodb``, ``route-53``)."""
    clients: tuple[str, ...] = ()
    """The :class:`Client` id of each client method call, in order (empty in older logs)."""
    pauses: tuple[float, ...] = ()
    """Seconds between the end of each failed client method call and the application's next
    one (``client_calls - 1`` of them): how long the application waited before retrying."""

    @property
    def finished(self) -> bool:
        return self.end is not None


@dataclass(frozen=True)
class Client:
    """A botocore client as it was made (the ``client`` event): where it sends calls, how
    botocore will retry them and how long it waits, and which line of application code
    made it."""

    id: str
    pid: int
    service: str
    api: str
    region: str
    endpoint_url: str
    retry_mode: str
    max_attempts: int | None
    connect_timeout: float | None
    read_timeout: float | None
    created: float = 0.0
    connect_timeout_set: bool = False
    read_timeout_set: bool = False
    max_pool_connections: int | None = None
    site: str = ""
    """``/path/file.py:line`` of the application code that made the client."""
    function: str = ""
    prefix: str = ""

    @property
    def host(self) -> str:
        """The endpoint's host name (or address)."""
        from urllib.parse import urlparse

        try:
            return urlparse(self.endpoint_url).hostname or ""
        except ValueError:
            return ""


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def clients_from(events: Iterable[dict[str, Any]]) -> list[Client]:
    """The clients described in ``events`` (``client`` events), in the order they were made."""
    out = []
    for event in events:
        if event.get("e") != "client":
            continue
        attempts = event.get("max_attempts")
        pool = event.get("pool")
        out.append(Client(
            id=str(event["id"]), pid=int(event.get("pid", 0)), service=str(event.get("svc", UNATTRIBUTED)),
            api=str(event.get("api", "")), region=str(event.get("region", "")),
            endpoint_url=str(event.get("endpoint", "")), retry_mode=str(event.get("retry_mode", "legacy")),
            max_attempts=attempts if isinstance(attempts, int) else None,
            connect_timeout=_number(event.get("connect_timeout")), read_timeout=_number(event.get("read_timeout")),
            created=float(event.get("t", 0.0)),
            connect_timeout_set=bool(event.get("connect_timeout_set")),
            read_timeout_set=bool(event.get("read_timeout_set")),
            max_pool_connections=pool if isinstance(pool, int) else None,
            site=str(event.get("site", "")), function=str(event.get("func", "")),
            prefix=str(event.get("prefix", ""))))
    out.sort(key=lambda c: (c.created, c.id))
    return out


def read_events(paths: Iterable[str | Path]) -> Iterator[dict[str, Any]]:
    """Every whole, parseable event line in ``paths``; torn or foreign lines are skipped."""
    for path in paths:
        try:
            with open(path, encoding="utf-8") as handle:
                for line in handle:
                    if not line.endswith("\n"):
                        break  # a line still being written
                    try:
                        event = json.loads(line)
                    except ValueError:
                        continue
                    if isinstance(event, dict) and "e" in event and "id" in event:
                        yield event
        except FileNotFoundError:
            continue


def assemble(events: Iterable[dict[str, Any]], join_retries: bool = True) -> list[Call]:
    """Group events into logical calls, ordered by start time.

    Events of unknown calls (and ``client`` events) are ignored. With ``join_retries``, a
    client call that follows a failed one in the same process and thread with the same
    request digest joins it as further attempts (see the module's docstring).
    """
    calls: dict[str, dict[str, Any]] = {}
    attempts: dict[str, dict[int, dict[str, Any]]] = {}
    threads: dict[str, tuple[int, Any, Any]] = {}
    for event in events:
        kind, call_id = event.get("e"), str(event.get("id"))
        if kind == "call":
            client = event.get("client")
            calls[call_id] = {
                "id": call_id, "service": str(event.get("svc", UNATTRIBUTED)),
                "pid": int(event.get("pid", 0)), "operation": str(event.get("op", "unknown")),
                "start": float(event["t"]), "api": str(event.get("api", "")),
                "clients": (str(client),) if client else (),
            }
            threads[call_id] = (int(event.get("pid", 0)), event.get("th"), event.get("key") or None)
            attempts[call_id] = {}
        elif call_id not in calls:
            continue
        elif kind == "attempt":
            number = int(event.get("n", len(attempts[call_id]) + 1))
            attempts[call_id][number] = {"number": number, "start": float(event["t"])}
        elif kind == "outcome":
            number = int(event.get("n", len(attempts[call_id])))
            slot = attempts[call_id].setdefault(number, {"number": number, "start": float(event["t"])})
            slot.update(end=float(event["t"]), status=event.get("status"), error=event.get("error"),
                        dns_failure=bool(event.get("dns", False)))
        elif kind == "end":
            calls[call_id].update(end=float(event["t"]), ok=bool(event.get("ok")), error=event.get("error"))
    out = []
    for call_id, data in calls.items():
        tried = tuple(Attempt(**a) for _, a in sorted(attempts[call_id].items()))
        out.append(Call(**data, attempts=tried))
    out.sort(key=lambda c: (c.start, c.id))
    return _join_retries(out, threads) if join_retries else out


def _join_retries(calls: list[Call], threads: dict[str, tuple[int, Any, Any]]) -> list[Call]:
    """Join each failed client call with the repetitions of its request that followed it."""
    open_by_thread: dict[tuple[int, Any], int] = {}  # (pid, thread) -> index in joined
    joined: list[Call] = []
    for call in calls:
        pid, thread, key = threads.get(call.id, (call.pid, None, None))
        slot = (pid, thread)
        previous = open_by_thread.get(slot) if thread is not None and key is not None else None
        if previous is not None:
            last = joined[previous]
            if (last.ok is False and last.operation == call.operation and threads[last.id][2] == key
                    and last.end is not None and call.start - last.end <= MAX_RETRY_GAP):
                offset = len(last.attempts)
                renumbered = tuple(replace(a, number=offset + a.number) for a in call.attempts)
                joined[previous] = replace(
                    last, end=call.end, ok=call.ok, error=call.error, attempts=last.attempts + renumbered,
                    client_calls=last.client_calls + 1, clients=last.clients + call.clients,
                    pauses=last.pauses + (call.start - last.end,))
                continue
        if thread is not None and key is not None:
            open_by_thread[slot] = len(joined)
        joined.append(call)
    return joined


def service_log_files(directory: str | Path, service: str) -> list[Path]:
    """The call logs of ``service`` under ``directory`` (``<service>-<pid>.jsonl``), by name."""
    root = Path(directory)
    own = re.compile(re.escape(log_path(root, service, 0).name[:-len("0.jsonl")]) + r"\d+\.jsonl")
    return sorted(p for p in root.glob("*.jsonl") if own.fullmatch(p.name)) if root.is_dir() else []


def read_clients(directory: str | Path) -> list[Client]:
    """Every client described in the call logs under ``directory``, in the order made."""
    root = Path(directory)
    return clients_from(read_events(sorted(root.glob("*.jsonl")))) if root.is_dir() else []


def read_calls(directory: str | Path, service: str | None = None, join_retries: bool = True) -> list[Call]:
    """Every logical call logged under ``directory`` (optionally only ``service``'s), by start
    time; ``join_retries`` as in :func:`assemble`."""
    root = Path(directory)
    if not root.is_dir():
        return []
    files = service_log_files(root, service) if service else sorted(root.glob("*.jsonl"))
    calls = assemble(read_events(files), join_retries)
    return [c for c in calls if service is None or c.service == service]
