"""Start and stop the services under test: a reference service, or the user's own program.

A service is one or more processes (*instances*) of one command, started with the lab's
environment plus the attribution contract::

    AWS_SDK_UA_APP_ID=<name>            every AWS SDK puts ``app/<name>`` in its User-Agent
    CHAOS_DYNAMO_SERVICE=<name>         the call log's service name
    CHAOS_DYNAMO_SOURCE_ADDRESS=127.0.0.x   the shim's DNS queries come from this address
    CHAOS_DYNAMO_CALL_LOG=<state dir>/calls
    CHAOS_DYNAMO_INSTANCE=<0, 1, ...>   which instance this process is
    CHAOS_DYNAMO_STATE=<lab state file>

Each instance runs in its own session (so its process group is exactly it and its
children), logs to ``<state dir>/services/<name>-<index>.log``, and is recorded in
``<state dir>/services/<name>.json`` (:mod:`chaos_dynamo.services.registry`) once every
instance is ready. Stopping a service signals each recorded process group, TERM and then
KILL, but only a group whose processes still carry the service's name in their
environment: a recorded pid that now belongs to another program is left alone.

Reference kinds: the workload services (``naive``, ``legacy``, ``standard``, ``adaptive``,
``hardened``: ``python -m chaos_dynamo.services.reference --kind K``), the lease fleets
(``lease-naive``, ``lease-hardened``: ``python -m chaos_dynamo.lease.reference --manager M``,
instances are shards) and the failover controllers (``failover-naive``,
``failover-hardened``: ``python -m chaos_dynamo.failover.reference --controller C``, one
instance; ``args`` such as ``"--name app.us-east-1.amazonaws.com --down-after 3"``). Extra
``args`` are checked by the kind's own parser before anything starts.

A program that puts itself in a new session (a daemon that double-forks) escapes its
process group and is not stopped; run it in the foreground.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from chaos_dynamo.calllog import service_log_files
from chaos_dynamo.clock import REAL_CLOCK, Clock, wait_until
from chaos_dynamo.config import is_loopback_host
from chaos_dynamo.errors import ConfigError, LabError
from chaos_dynamo.lab.state import LabInfo, read_state, state_path
from chaos_dynamo.services.registry import (
    Instance,
    ServiceRecord,
    calls_dir,
    check_name,
    list_records,
    read_record,
    remove_record,
    services_dir,
    write_record,
)

WORKLOAD_KINDS = ("naive", "legacy", "standard", "adaptive", "hardened")
"""Reference services doing a steady DynamoDB workload (:mod:`chaos_dynamo.services.reference`)."""
LEASE_KINDS = ("lease-naive", "lease-hardened")
"""Reference lease fleets (:mod:`chaos_dynamo.lease.reference`); instances are shards."""
FAILOVER_KINDS = ("failover-naive", "failover-hardened")
"""Reference failover controllers (:mod:`chaos_dynamo.failover.reference`); one instance."""
REFERENCE_KINDS = WORKLOAD_KINDS + LEASE_KINDS + FAILOVER_KINDS
COMMAND_KIND = "command"
"""The record's ``kind`` for the user's own program."""
ADDRESS_FIRST, ADDRESS_LAST = 100, 250
"""Source addresses handed to services: 127.0.0.100 to 127.0.0.250."""
MAX_INSTANCES = 64
MAX_RATE = 10_000.0
MAX_CONCURRENCY = 1024
INSTANCE_PLACEHOLDER = "{instance}"
"""Replaced by the instance's index in a command's arguments and its health URL."""
SETTLE_SECONDS = 0.5
"""A command without a health URL is ready when it has not exited after this long."""

Progress = Callable[[str], None]


# --- validation ------------------------------------------------------------------------------

@dataclass(frozen=True)
class ServiceSpec:
    """A validated request to start a service (nothing started yet)."""

    name: str
    kind: str  # a reference kind, or "command"
    command: tuple[str, ...]  # the user's argv (command kind only)
    instances: int
    rate: float
    concurrency: int
    seed: int
    health_url: str  # may hold {instance}
    args: tuple[str, ...] = ()  # extra arguments of a reference service

    @property
    def is_reference(self) -> bool:
        return self.kind != COMMAND_KIND

    @property
    def is_lease(self) -> bool:
        return self.kind in LEASE_KINDS

    @property
    def is_failover(self) -> bool:
        return self.kind in FAILOVER_KINDS

    def instance_health_url(self, index: int) -> str:
        return self.health_url.replace(INSTANCE_PLACEHOLDER, str(index))


def _field(prefix: str, name: str) -> str:
    """Field names as the caller spells them: ``instances``, or ``service_instances`` in a
    control's configuration (where the name is ``service_name``)."""
    if not prefix:
        return name
    return prefix + ("name" if name == "service" else name)


def coerce_number(field: str, value: object, *, integer: bool) -> float:
    """An int or float from a number or a numeric string (configuration may hold strings)."""
    what = "a whole number" if integer else "a number"
    if isinstance(value, bool):
        raise ConfigError(field, f"{value!r} is not {what}", f"give {what}")
    if isinstance(value, str):
        try:
            value = int(value.strip()) if integer else float(value.strip())
        except ValueError:
            raise ConfigError(field, f"{value!r} is not {what}", f"give {what}") from None
    if integer and isinstance(value, float) and value.is_integer():
        value = int(value)
    if integer and not isinstance(value, int):
        raise ConfigError(field, f"{value!r} is not {what}", f"give {what}")
    if not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigError(field, f"{value!r} is not {what}", f"give {what}")
    return value


def parse_command(command: str | Sequence[str] | None, field: str = "command") -> tuple[str, ...]:
    """An argv from a list of strings, or from one string split as a POSIX shell would."""
    if command is None:
        return ()
    if isinstance(command, str):
        try:
            return tuple(shlex.split(command))
        except ValueError as exc:
            raise ConfigError(field, f"{command!r} cannot be split into arguments ({exc})",
                              "balance the quotes, or give a list of arguments") from None
    if isinstance(command, list | tuple) and all(isinstance(a, str) for a in command):
        return tuple(command)
    raise ConfigError(field, f"{command!r} is not a command",
                      "give the program and its arguments as a list of strings or as one string")


def check_health_url(url: object, field: str = "health_url") -> str:
    """``""`` or an ``http://`` URL on a loopback host (``{instance}`` allowed)."""
    if url is None or url == "":
        return ""
    if not isinstance(url, str):
        raise ConfigError(field, f"{url!r} is not a URL", "give http://127.0.0.1:PORT/health")
    sample = url.replace(INSTANCE_PLACEHOLDER, "0")
    try:
        parsed = urlparse(sample)
        port = parsed.port
    except ValueError as exc:
        raise ConfigError(field, f"{url!r} is not a URL ({exc})", "give http://127.0.0.1:PORT/health") from None
    if parsed.scheme != "http" or not parsed.hostname:
        raise ConfigError(field, f"{url!r} is not an http:// URL", "give http://127.0.0.1:PORT/health")
    if not is_loopback_host(parsed.hostname):
        raise ConfigError(field, f"{url!r} is not on a loopback address",
                          "services run on this machine: use 127.0.0.1 or localhost")
    if port is None:
        raise ConfigError(field, f"{url!r} has no port", "give http://127.0.0.1:PORT/health")
    return url


_SUPERVISED = {
    "workload": ("--kind", "--rate", "--concurrency", "--seed", "--http", "--ready-file"),
    "lease": ("--manager", "--seed", "--shard", "--http", "--ready-file"),
    "failover": ("--controller", "--seed", "--http", "--ready-file"),
}
"""Options the supervisor gives every reference instance itself (not allowed in ``args``)."""


def check_reference_args(kind: str, args: Sequence[str], instances: int = 1,
                         field: str = "args") -> tuple[str, ...]:
    """Check extra arguments of reference kind ``kind`` by parsing them as the instance
    will; ConfigError naming ``field`` and the option (e.g. ``--expiry``) otherwise."""
    family = "lease" if kind in LEASE_KINDS else "failover" if kind in FAILOVER_KINDS else "workload"
    module = {"lease": "chaos_dynamo.lease.reference", "failover": "chaos_dynamo.failover.reference",
              "workload": "chaos_dynamo.services.reference"}[family]
    for arg in args:
        option = arg.split("=", 1)[0]
        if option in ("-h", "--help"):
            raise ConfigError(field, f"{arg!r} asks for help, not a setting",
                              f"see `python -m {module} --help`, then give settings only")
        if option in _SUPERVISED[family]:
            raise ConfigError(field, f"{option} is set by chaos-dynamo for each instance",
                              "leave it out: give it as the service's own setting (seed, "
                              "instances, rate, concurrency; health and metrics URLs are in the "
                              "service record)")
    if family == "lease":
        from chaos_dynamo.lease import reference as lease_reference

        try:
            lease_reference.parse_args(["--manager", kind.removeprefix("lease-"),
                                        "--shard", f"0/{instances}", *args])
        except ConfigError as exc:
            raise ConfigError(field, f"{exc.field}: {exc.problem}",
                              exc.fix or f"see `python -m {module} --help`") from None
        return tuple(args)
    if family == "failover":
        from chaos_dynamo.failover import reference as failover_reference

        try:
            failover_reference.parse_args(["--controller", kind.removeprefix("failover-"), *args])
        except ConfigError as exc:
            raise ConfigError(field, f"{exc.field}: {exc.problem}",
                              exc.fix or f"see `python -m {module} --help`") from None
        return tuple(args)
    from chaos_dynamo.services import reference as workload_reference

    parser = workload_reference.build_parser()

    def refuse(message: str) -> None:
        raise ConfigError(field, message.removeprefix("argument "),
                          f"see `python -m {module} --help`")

    setattr(parser, "error", refuse)  # noqa: B010 - report instead of exiting the process
    parser.parse_args(["--kind", kind, *args])
    return tuple(args)


def validate(name: object, *, kind: object = "", command: str | Sequence[str] | None = None,
             instances: object = 1, rate: object = 5.0, concurrency: object = 8, seed: object = 0,
             health_url: object = "", args: str | Sequence[str] | None = None,
             prefix: str = "") -> ServiceSpec:
    """Check a start request; ConfigError naming the first bad field (``prefix`` + field).

    Exactly one of ``kind`` (a reference service) or ``command`` (the user's program, an
    argv list or a string split like a shell would) is given. ``rate``, ``concurrency`` and
    ``seed`` are for reference services (the lease and failover kinds take ``seed`` only; a
    failover controller runs as one instance); a command ignores them. ``args`` are extra
    arguments of a reference service (a string split like a shell would, or a list), e.g.
    ``"--leases 100 --expiry 10"`` for a lease kind, ``"--down-after 3"`` for a failover kind.
    """
    name = check_name(name, _field(prefix, "service"))
    kind_field, command_field = _field(prefix, "kind"), _field(prefix, "command")
    if kind is None:
        kind = ""
    if not isinstance(kind, str):
        raise ConfigError(kind_field, f"{kind!r} is not a kind", f"use one of {list(REFERENCE_KINDS)}")
    argv = parse_command(command, command_field)
    if kind and argv:
        raise ConfigError(command_field, f"both {kind_field} {kind!r} and a command were given",
                          f"give either {kind_field} (a reference service) or {command_field} "
                          "(your program), not both")
    if not kind and not argv:
        raise ConfigError(kind_field, "neither a reference kind nor a command was given",
                          f"give {kind_field} (one of {list(REFERENCE_KINDS)}) or {command_field} "
                          "(your program and its arguments)")
    if kind and kind not in REFERENCE_KINDS:
        raise ConfigError(kind_field, f"{kind!r} is not a reference service",
                          f"use one of {list(REFERENCE_KINDS)}, or give {command_field} for your own program")
    if argv and shutil.which(argv[0]) is None:
        raise ConfigError(command_field, f"{argv[0]!r} is not an executable program (not found on PATH)",
                          "give its full path, or install it")
    count = int(coerce_number(_field(prefix, "instances"), instances, integer=True))
    if not 1 <= count <= MAX_INSTANCES:
        raise ConfigError(_field(prefix, "instances"), f"{count} is out of range",
                          f"use 1 to {MAX_INSTANCES} instances")
    if kind in FAILOVER_KINDS and count != 1:
        raise ConfigError(_field(prefix, "instances"), f"{count} instances of {kind}: two controllers "
                          "would fight over the same records", "use 1 instance (start another "
                          "service with another --name in args for another controller)")
    per_second = float(coerce_number(_field(prefix, "rate"), rate, integer=False))
    if not 0 < per_second <= MAX_RATE:
        raise ConfigError(_field(prefix, "rate"), f"{per_second} is out of range",
                          f"use more than 0 and at most {MAX_RATE:g} logical calls per second per instance")
    workers = int(coerce_number(_field(prefix, "concurrency"), concurrency, integer=True))
    if not 1 <= workers <= MAX_CONCURRENCY:
        raise ConfigError(_field(prefix, "concurrency"), f"{workers} is out of range",
                          f"use 1 to {MAX_CONCURRENCY} workers per instance")
    seed_value = int(coerce_number(_field(prefix, "seed"), seed, integer=True))
    url = check_health_url(health_url, _field(prefix, "health_url"))
    if url and kind:
        raise ConfigError(_field(prefix, "health_url"), f"{url!r} was given for a reference service",
                          "reference services report their own health URL; give health_url only "
                          "with a command")
    args_field = _field(prefix, "args")
    extra = parse_command(args, args_field)
    if extra and not kind:
        raise ConfigError(args_field, f"{list(extra)} were given for a command",
                          f"args are extra arguments of a reference service; put your program's "
                          f"arguments in {command_field}")
    if extra:
        check_reference_args(kind, extra, count, args_field)
    return ServiceSpec(name, kind or COMMAND_KIND, argv, count, per_second, workers, seed_value, url,
                       extra)


# --- processes ---------------------------------------------------------------------------------

_children: dict[int, subprocess.Popen[bytes]] = {}
"""Processes this process started, so they are reaped (not left as zombies) once stopped."""


def _reap() -> None:
    for pid, child in list(_children.items()):
        if child.poll() is not None:
            del _children[pid]


def _has_proc() -> bool:
    return Path("/proc/self/stat").exists()


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes of process group ``pgid``, the leader first.

    Without ``/proc`` (macOS, BSD) only whether the group exists is known: ``[pgid]`` or ``[]``.
    """
    _reap()
    if not _has_proc():
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return []
        except PermissionError:
            return [pgid]
        return [pgid]
    members = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        fields = stat.rpartition(")")[2].split()  # state, ppid, pgrp, ...
        if len(fields) > 2 and fields[2] == str(pgid) and fields[0] not in ("Z", "X"):
            members.append(int(entry.name))
    return sorted(members, key=lambda pid: (pid != pgid, pid))


def _marker(name: str) -> bytes:
    return f"CHAOS_DYNAMO_SERVICE={name}".encode()


def is_ours(pgid: int, name: str) -> bool:
    """Whether process group ``pgid`` is still (part of) service ``name``.

    A pid is recycled by any program once its process is gone, so a group is ours only if
    one of its processes was started with ``CHAOS_DYNAMO_SERVICE=<name>`` (children inherit
    it). Without ``/proc`` the existence of the group is all that can be checked.
    """
    members = group_members(pgid)
    if not _has_proc():
        return bool(members)
    marker = _marker(name)
    for pid in members:
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes()
        except OSError:
            continue
        if marker in environ.split(b"\0"):
            return True
    return False


def live_pids(record: ServiceRecord) -> list[int]:
    """The recorded instance pids (process groups) that are still this service's."""
    return [i.pid for i in record.instances if is_ours(i.pid, record.name)]


def _signal_groups(pgids: Sequence[int], signum: int) -> None:
    for pgid in pgids:
        try:
            os.killpg(pgid, signum)
        except ProcessLookupError:
            pass  # it exited by itself meanwhile
        except PermissionError:
            raise LabError(f"not allowed to signal process group {pgid}: it runs as another user; "
                           "stop the service as that user") from None


def _terminate(pgids: Sequence[int], timeout: float, clock: Clock) -> list[int]:
    """SIGTERM the groups, wait up to ``timeout`` s, SIGKILL what is left; the killed ones."""
    _signal_groups(pgids, signal.SIGTERM)
    wait_until(lambda: not any(group_members(g) for g in pgids), timeout, interval=0.05, clock=clock)
    left = [g for g in pgids if group_members(g)]
    if left:
        _signal_groups(left, signal.SIGKILL)
        wait_until(lambda: not any(group_members(g) for g in left), 5.0, interval=0.05, clock=clock)
    _reap()
    return left


# --- addresses ---------------------------------------------------------------------------------

def can_bind(address: str) -> bool:
    """Whether this machine lets a socket use ``address`` as its source (Linux: all 127/8)."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind((address, 0))
    except OSError:
        return False
    return True


def allocate_address(taken: set[str] | frozenset[str],
                     bindable: Callable[[str], bool] = can_bind) -> str:
    """The lowest address in 127.0.0.100-250 not in ``taken`` that can be bound.

    Returns ``""`` when none can be bound (e.g. macOS without loopback aliases): the
    service is then told apart by its SDK app id only.

    Raises:
        ConfigError: every address is taken by a running service.
    """
    free = [f"127.0.0.{n}" for n in range(ADDRESS_FIRST, ADDRESS_LAST + 1)
            if f"127.0.0.{n}" not in taken]
    if not free:
        raise ConfigError("service", f"all {ADDRESS_LAST - ADDRESS_FIRST + 1} source addresses "
                          f"127.0.0.{ADDRESS_FIRST}-{ADDRESS_LAST} are taken by running services",
                          "stop a service first (chaos-dynamo service list / stop)")
    return next((a for a in free if bindable(a)), "")


# --- start ---------------------------------------------------------------------------------------

@contextlib.contextmanager
def _locked(state: str | Path | None) -> Iterator[None]:
    """Serialise starts against one state directory (names and addresses are checked and
    taken under it)."""
    directory = services_dir(state)
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / ".lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def reference_argv(spec: ServiceSpec, index: int, ready_file: Path) -> list[str]:
    """The command of reference instance ``index`` (seeds differ, so instances do not retry
    in lockstep; a lease fleet's instance ``i`` holds shard ``i`` of ``instances``), then
    the spec's extra ``args``."""
    if spec.is_failover:
        return [sys.executable, "-m", "chaos_dynamo.failover.reference",
                "--controller", spec.kind.removeprefix("failover-"), "--seed", str(spec.seed + index),
                "--http", "127.0.0.1:0", "--ready-file", str(ready_file), *spec.args]
    if spec.is_lease:
        return [sys.executable, "-m", "chaos_dynamo.lease.reference",
                "--manager", spec.kind.removeprefix("lease-"), "--seed", str(spec.seed + index),
                "--shard", f"{index}/{spec.instances}", "--http", "127.0.0.1:0",
                "--ready-file", str(ready_file), *spec.args]
    return [sys.executable, "-m", "chaos_dynamo.services.reference", "--kind", spec.kind,
            "--rate", f"{spec.rate:g}", "--concurrency", str(spec.concurrency),
            "--seed", str(spec.seed + index), "--http", "127.0.0.1:0",
            "--ready-file", str(ready_file), *spec.args]


def instance_argv(spec: ServiceSpec, index: int, ready_file: Path) -> list[str]:
    if spec.is_reference:
        return reference_argv(spec, index, ready_file)
    return [arg.replace(INSTANCE_PLACEHOLDER, str(index)) for arg in spec.command]


def instance_env(spec: ServiceSpec, index: int, lab: LabInfo, state_file: Path,
                 source_address: str, base: dict[str, str] | None = None,
                 parent: int | None = None) -> dict[str, str]:
    """The environment of instance ``index``: ``base`` (default: this process's) as
    :meth:`LabInfo.process_env` leaves it (reaching the lab and nothing else), and the
    attribution contract."""
    env = lab.process_env(os.environ if base is None else base) | {
        "AWS_SDK_UA_APP_ID": spec.name,
        "CHAOS_DYNAMO_SERVICE": spec.name,
        "CHAOS_DYNAMO_CALL_LOG": str(calls_dir(state_file)),
        "CHAOS_DYNAMO_INSTANCE": str(index),
        "CHAOS_DYNAMO_STATE": str(state_file),
    }
    if source_address:
        env["CHAOS_DYNAMO_SOURCE_ADDRESS"] = source_address
    else:
        env.pop("CHAOS_DYNAMO_SOURCE_ADDRESS", None)
    env.pop("CHAOS_DYNAMO_EXIT_WITH_PARENT", None)
    if parent is not None:
        env["CHAOS_DYNAMO_EXIT_WITH_PARENT"] = str(parent)  # read by the reference services
    env.setdefault("PYTHONUNBUFFERED", "1")  # so a failing instance's log has its last words
    return env


def log_tail(path: str | Path, lines: int = 20) -> str:
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def _read_ready(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def health_ok(url: str) -> bool:
    """Whether ``url`` answers 200 within a second."""
    try:
        with urllib.request.urlopen(url, timeout=1.0) as response:  # noqa: S310 - loopback, checked
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError, ValueError):
        return False


def lab_from_state(state: str | Path | None) -> LabInfo:
    """The lab recorded in ``state``, seen from ``$CHAOS_DYNAMO_NAMESPACE`` when it is set;
    LabError when none, SafetyError when not loopback."""
    from chaos_dynamo.endpoint._lab import check_loopback_info, in_namespace

    return in_namespace(check_loopback_info(read_state(state), f"the state file {state_path(state)}"))


def start(name: str, *, kind: str = "", command: str | Sequence[str] | None = None,
          instances: int = 1, rate: float = 5.0, concurrency: int = 8, seed: int = 0,
          health_url: str = "", args: str | Sequence[str] | None = None,
          state: str | Path | None = None, lab: LabInfo | None = None,
          ready_timeout: float = 30.0, clock: Clock = REAL_CLOCK,
          progress: Progress | None = None, exit_with_parent: bool = False) -> ServiceRecord:
    """Start ``instances`` processes of a service, wait until each is ready, record it.

    Args:
        name: the service's name (its SDK app id).
        kind: a reference service (``naive``, ``legacy``, ``standard``, ``adaptive``,
            ``hardened``, the lease fleets ``lease-naive`` and ``lease-hardened``, whose
            instances split the leases into shards, or the failover controllers
            ``failover-naive`` and ``failover-hardened``, one instance each); or
        command: the user's program, any language: an argv list or one string.
            ``{instance}`` in an argument is replaced by the instance's index.
        instances: processes to run (1-64).
        rate, concurrency, seed: the reference service's workload (instance i gets seed+i).
        health_url: for a command: ready once this answers 200 (``{instance}`` allowed);
            without it, ready once the process has not exited for half a second.
        args: extra arguments of a reference service, appended to each instance's command
            (one string split like a shell would, or a list), e.g. ``"--leases 100
            --expiry 10"``; checked before anything starts.
        state: the lab's state file (default ``$CHAOS_DYNAMO_STATE`` or ./.chaos-dynamo/lab.json).
        lab: the lab's addresses (default: read from ``state``).
        ready_timeout: seconds for every instance to become ready.
        progress: called with a line of text as instances come up.
        exit_with_parent: reference services stop by themselves once this process is gone
            (a Chaos Toolkit run killed before its controls could stop them); the CLI's
            services outlive the command that started them.

    Raises:
        ConfigError: a bad argument (nothing is started), or a service of that name is
            running (stop it first). A record whose processes are gone is replaced.
        LabError: no lab is recorded, or an instance exited or was not ready in time
            (everything started is stopped again; the message holds its log's last lines).
    """
    spec = validate(name, kind=kind, command=command, instances=instances, rate=rate,
                    concurrency=concurrency, seed=seed, health_url=health_url, args=args)
    timeout = coerce_number("ready_timeout", ready_timeout, integer=False)
    if timeout <= 0:
        raise ConfigError("ready_timeout", f"{ready_timeout!r} is not positive", "give seconds > 0")
    info = lab if lab is not None else lab_from_state(state)
    state_file = state_path(state)
    say = progress or (lambda _line: None)
    with _locked(state):
        existing = read_record(spec.name, state)
        if existing is not None:
            alive = live_pids(existing)
            if alive:
                raise ConfigError("service", f"{spec.name!r} is already running (pids {alive})",
                                  f"stop it first: chaos-dynamo service stop {spec.name}")
        others = [r for r in list_records(state) if r.name != spec.name]
        # Never an address another record holds, live or not: the probes attribute by it.
        taken = {r.source_address for r in others if r.source_address}
        address = allocate_address(taken)
        record = _spawn_all(spec, info, state, state_file, address, timeout, clock, say, exit_with_parent)
        write_record(record, state)
    return record


def clear_call_logs(name: str, state: str | Path | None = None) -> int:
    """Remove the call logs an earlier run of service ``name`` left; how many were removed.

    A new run's probes must not read an old run's calls (a Python service then, another
    language now, would read as "no call in the window" instead of an estimate).
    """
    removed = 0
    for path in service_log_files(calls_dir(state), name):
        path.unlink(missing_ok=True)
        removed += 1
    return removed


def _spawn_all(spec: ServiceSpec, info: LabInfo, state: str | Path | None, state_file: Path,
               address: str, timeout: float, clock: Clock, say: Progress,
               exit_with_parent: bool = False) -> ServiceRecord:
    directory = services_dir(state)
    calls_dir(state).mkdir(parents=True, exist_ok=True)
    clear_call_logs(spec.name, state)
    started: list[subprocess.Popen[bytes]] = []
    logs: list[Path] = []
    readies: list[Path] = []
    argv0: list[str] = []
    try:
        for index in range(spec.instances):
            log_path = directory / f"{spec.name}-{index}.log"
            ready_file = directory / f"{spec.name}-{index}.ready"
            ready_file.unlink(missing_ok=True)
            argv = instance_argv(spec, index, ready_file)
            argv0 = argv0 or argv
            with open(log_path, "wb") as log:
                try:
                    child = subprocess.Popen(
                        argv, env=instance_env(spec, index, info, state_file, address,
                                               parent=os.getpid() if exit_with_parent else None),
                        stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                        start_new_session=True)
                except OSError as exc:
                    raise ConfigError("command", f"{argv[0]!r} could not be started ({exc})",
                                      "give a program this user can run") from None
            _children[child.pid] = child
            started.append(child)
            logs.append(log_path)
            readies.append(ready_file)
        say(f"started {spec.instances} instance(s) of {spec.name!r} "
            f"(pids {[c.pid for c in started]}, source address {address or 'none'}); waiting until ready...")
        deadline = clock.monotonic() + timeout
        members = []
        signalled = spec.is_reference or bool(spec.health_url)  # the instance says it is ready
        for index, child in enumerate(started):
            health, metrics = _wait_ready(spec, index, child, readies[index], logs[index],
                                          deadline - clock.monotonic(), timeout, clock)
            members.append(Instance(index, child.pid, health, metrics, str(logs[index])))
            if signalled:
                say(f"  instance {index} ready (pid {child.pid})" + (f", health {health}" if health else ""))
        if not signalled:
            # Nothing says when a command is ready: make sure it did not exit at once.
            wait_until(lambda: any(c.poll() is not None for c in started), SETTLE_SECONDS,
                       interval=0.05, clock=clock)
            for index, child in enumerate(started):
                if child.poll() is not None:
                    raise _exited(spec, index, child, logs[index])
                say(f"  instance {index} running (pid {child.pid}; no health URL, so not checked further)")
    except BaseException:
        # Interrupted or failed half way: leave nothing running.
        _terminate([c.pid for c in started], 2.0, clock)
        for child in started:
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(timeout=1.0)
        raise
    finally:
        for ready_file in readies:
            ready_file.unlink(missing_ok=True)
    extra: dict[str, Any] = {"state_file": str(state_file)}
    if spec.is_reference:
        extra |= {"seed": spec.seed, "concurrency": spec.concurrency, "args": list(spec.args)}
    # Lease fleets and failover controllers have no open-loop rate.
    rate = spec.rate if spec.kind in WORKLOAD_KINDS else 0.0
    return ServiceRecord(name=spec.name, kind=spec.kind, command=tuple(argv0),
                         source_address=address, instances=tuple(members), started_at=clock.now(),
                         rate=rate, extra=extra)


def _exited(spec: ServiceSpec, index: int, child: subprocess.Popen[bytes], log: Path) -> LabError:
    return LabError(f"service {spec.name!r} instance {index} (pid {child.pid}) exited with code "
                    f"{child.returncode} before it was ready; last lines of {log}:\n{log_tail(log)}")


def _wait_ready(spec: ServiceSpec, index: int, child: subprocess.Popen[bytes], ready_file: Path,
                log: Path, remaining: float, timeout: float, clock: Clock) -> tuple[str, str]:
    """Wait for instance ``index``; its (health_url, metrics_url)."""
    found: dict[str, Any] = {}

    def ready() -> bool:
        if child.poll() is not None:
            return True
        if spec.is_reference:
            data = _read_ready(ready_file)
            if data is not None:
                found.update(data)
                return True
            return False
        url = spec.instance_health_url(index)
        return not url or health_ok(url)

    wait_until(ready, max(remaining, 0.0), interval=0.05, clock=clock)
    if child.poll() is not None:
        raise _exited(spec, index, child, log)
    if spec.is_reference:
        if not found:
            raise LabError(f"service {spec.name!r} instance {index} (pid {child.pid}) wrote no ready "
                           f"file within {timeout:g} s; last lines of {log}:\n{log_tail(log)}")
        return str(found.get("health_url", "")), str(found.get("metrics_url", ""))
    url = spec.instance_health_url(index)
    if url and not health_ok(url):
        raise LabError(f"service {spec.name!r} instance {index} (pid {child.pid}): {url} did not "
                       f"answer 200 within {timeout:g} s; last lines of {log}:\n{log_tail(log)}")
    return url, ""


def warm_up(name: str, seconds: float, state: str | Path | None = None,
            clock: Clock = REAL_CLOCK) -> None:
    """Let a started service run ``seconds`` (its baseline); LabError if an instance dies meanwhile
    (the service is then stopped)."""
    record = read_record(name, state)
    if record is None or seconds <= 0:
        return
    pgids = [i.pid for i in record.instances]

    def one_died() -> bool:
        return not all(group_members(g) for g in pgids)

    if wait_until(one_died, seconds, interval=0.25, clock=clock):
        dead = next(i for i in record.instances if not group_members(i.pid))
        stop(name, state, clock=clock)
        raise LabError(f"service {name!r} instance {dead.index} (pid {dead.pid}) exited during "
                       f"the {seconds:g} s warm-up; last lines of {dead.log_path}:\n{log_tail(dead.log_path)}")


# --- stop ------------------------------------------------------------------------------------------

def stop(name: str, state: str | Path | None = None, timeout: float = 5.0,
         clock: Clock = REAL_CLOCK) -> dict[str, Any]:
    """Stop service ``name``: SIGTERM its process groups, SIGKILL what is left after
    ``timeout`` s, remove its record.

    Stopping a service that is not running is not an error (``{"stopped": 0}``), so a
    rollback or a second ``stop`` is safe.

    Returns:
        ``{"service", "was_running", "stopped": groups signalled, "killed": groups that
        needed SIGKILL, "pids"}``.
    """
    check_name(name)
    record = read_record(name, state)
    if record is None:
        return {"service": name, "was_running": False, "stopped": 0, "killed": 0, "pids": []}
    pgids = live_pids(record)
    killed = _terminate(pgids, timeout, clock) if pgids else []
    remove_record(name, state)
    return {"service": name, "was_running": bool(pgids), "stopped": len(pgids),
            "killed": len(killed), "pids": pgids}


def stop_all(state: str | Path | None = None, timeout: float = 5.0,
             clock: Clock = REAL_CLOCK) -> list[dict[str, Any]]:
    """Stop every recorded service (``lab down``); one :func:`stop` result per service."""
    return [stop(r.name, state, timeout, clock) for r in list_records(state)]


def marks(state: str | Path | None = None) -> frozenset[tuple[str, float]]:
    """(name, started_at) of every recorded service: compare two to see what started between."""
    return frozenset((r.name, r.started_at) for r in list_records(state))


def stop_started_since(before: frozenset[tuple[str, float]], state: str | Path | None = None,
                       timeout: float = 5.0) -> list[dict[str, Any]]:
    """Stop the services recorded now that were not in ``before`` (started meanwhile)."""
    return [stop(r.name, state, timeout) for r in list_records(state)
            if (r.name, r.started_at) not in before]


# --- status ------------------------------------------------------------------------------------

def status(record: ServiceRecord, check_health: bool = False) -> dict[str, Any]:
    """A recorded service as ``service list`` shows it.

    ``health`` per instance: ``"healthy"`` (200), ``"unhealthy"`` (anything else), or ``""``
    when not checked or the instance has no health URL.
    """
    instances = []
    for i in record.instances:
        alive = is_ours(i.pid, record.name)
        health = ""
        if check_health and alive and i.health_url:
            health = "healthy" if health_ok(i.health_url) else "unhealthy"
        instances.append({"index": i.index, "pid": i.pid, "alive": alive, "health_url": i.health_url,
                          "metrics_url": i.metrics_url, "log_path": i.log_path, "health": health})
    return {"name": record.name, "kind": record.kind, "source_address": record.source_address,
            "started_at": record.started_at, "rate": record.rate, "command": list(record.command),
            "alive": sum(1 for i in instances if i["alive"]), "instances": instances}


def running_instances(name: str, state: str | Path | None = None) -> int:
    """How many of service ``name``'s recorded instances are alive (0 when not recorded)."""
    record = read_record(check_name(name), state)
    return len(live_pids(record)) if record is not None else 0
