"""Processes: stopping a child that runs in a process group of its own, and reading what
runs on this machine (Linux ``/proc``) to tell which processes are chaos-dynamo's.

chaos-dynamo starts its long-lived children (a lab, a command under audit) with
``start_new_session=True``, so a terminal's Ctrl-C reaches only chaos-dynamo, which then
decides how to stop them: SIGTERM to the whole group (the child cleans up, and whatever it
started in its group hears it too), a grace period, then SIGKILL.

:class:`ProcessInfo`, :func:`all_processes` and :func:`listening_sockets` are what
``chaos-dynamo lab doctor`` proves ownership with: a process's command line, environment,
parent, session and start time, and the loopback sockets it holds. A pid can be recycled, so
a process is named by (pid, start time), and checked again right before it is signalled
(:func:`stop_processes`).
"""

from __future__ import annotations

import ipaddress
import os
import signal
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chaos_dynamo.clock import REAL_CLOCK, Clock, wait_until

__all__ = ["KILL_WAIT", "ProcessInfo", "Socket", "all_processes", "group_members", "has_exited", "has_proc",
           "listening_sockets", "read_process", "stop_process_group", "stop_processes", "wait_exited"]

KILL_WAIT = 5.0
"""Seconds to wait for a child to be reaped after SIGKILL before giving up on it."""


def stop_process_group(process: subprocess.Popen[Any], *, grace: float, clock: Clock = REAL_CLOCK) -> int | None:
    """SIGTERM ``process``'s group, wait up to ``grace`` seconds for ``process`` to exit,
    SIGKILL the group if it has not; return its exit code.

    ``process`` should lead its group (``start_new_session=True``); one that does not is
    signalled alone. A child that has already exited is only reaped. None when it did not
    exit even after SIGKILL (a process stuck in the kernel), rather than waiting forever.
    """
    if process.poll() is not None:
        return process.returncode
    for signum, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, KILL_WAIT)):
        _signal_group(process, signum)
        if wait_until(lambda: process.poll() is not None, wait, interval=0.05, clock=clock):
            return process.returncode
    return None


def _signal_group(process: subprocess.Popen[Any], signum: int) -> None:
    """Signal the group ``process`` leads; the process alone if it leads none (it was not
    started in a session of its own)."""
    try:
        os.killpg(process.pid, signum)
    except ProcessLookupError:
        if process.poll() is None:
            process.send_signal(signum)


def has_exited(process: subprocess.Popen[Any]) -> bool:
    """Whether ``process`` (a child of this process) has exited, without reaping it.

    Until it is reaped (``process.wait()``) its pid stays taken, and with it the number of
    the process group it led: what is in that group then is its own, never a new session
    that got the number. Where ``os.waitid`` is missing this reaps (``poll``).
    """
    if process.returncode is not None:
        return True
    if not hasattr(os, "waitid"):
        return process.poll() is not None
    try:
        return os.waitid(os.P_PID, process.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:  # reaped already, not through ``process``
        return True


def wait_exited(process: subprocess.Popen[Any]) -> None:
    """Block until ``process`` has exited, without reaping it (:func:`has_exited`)."""
    if process.returncode is not None:
        return
    if not hasattr(os, "waitid"):
        process.wait()
        return
    try:
        os.waitid(os.P_PID, process.pid, os.WEXITED | os.WNOWAIT)
    except ChildProcessError:
        pass


# --- reading /proc --------------------------------------------------------------------------

PROC = Path("/proc")


def has_proc() -> bool:
    """Whether this machine has a Linux ``/proc`` (the doctor's process checks need it)."""
    return (PROC / "self" / "stat").exists()


@dataclass(frozen=True)
class ProcessInfo:
    """One live process as ``/proc`` shows it (zombies are not listed)."""

    pid: int
    ppid: int
    pgid: int
    sid: int
    start: int
    """Start time in clock ticks since boot: (pid, start) names a process; a recycled pid
    has a later start."""
    argv: tuple[str, ...]
    environ: Mapping[str, str] = field(default_factory=dict, compare=False)
    cwd: str = ""

    def arg_after(self, flag: str) -> str | None:
        """The value of ``flag VALUE`` or ``flag=VALUE`` in the command line, if present."""
        for i, arg in enumerate(self.argv):
            if arg == flag and i + 1 < len(self.argv):
                return self.argv[i + 1]
            if arg.startswith(flag + "="):
                return arg[len(flag) + 1:]
        return None

    def path(self, value: str) -> Path:
        """``value`` (a path this process was given) made absolute against its working directory."""
        path = Path(value)
        return path if path.is_absolute() or not self.cwd else Path(self.cwd) / path

    @property
    def command(self) -> str:
        return " ".join(self.argv)


def read_process(pid: int) -> ProcessInfo | None:
    """The process ``pid``; None when it is gone, a zombie, or not readable."""
    base = PROC / str(pid)
    try:
        stat = (base / "stat").read_text()
        fields = stat.rpartition(")")[2].split()  # state, ppid, pgrp, session, ... starttime (20th)
        if fields[0] in ("Z", "X"):
            return None
        argv = tuple(a.decode(errors="replace") for a in (base / "cmdline").read_bytes().split(b"\0") if a)
    except (OSError, IndexError):
        return None
    try:
        raw = (base / "environ").read_bytes()
        environ = dict(item.decode(errors="replace").partition("=")[::2] for item in raw.split(b"\0") if b"=" in item)
    except OSError:
        environ = {}
    try:
        cwd = os.readlink(base / "cwd")
    except OSError:
        cwd = ""
    try:
        return ProcessInfo(pid, int(fields[1]), int(fields[2]), int(fields[3]), int(fields[19]), argv, environ, cwd)
    except (IndexError, ValueError):
        return None


def all_processes() -> list[ProcessInfo]:
    """Every live process this user can read, by pid ([] without ``/proc``)."""
    if not has_proc():
        return []
    out = []
    for entry in os.scandir(PROC):
        if entry.name.isdigit():
            info = read_process(int(entry.name))
            if info is not None:
                out.append(info)
    return sorted(out, key=lambda p: p.pid)


def group_members(pgid: int, processes: Iterable[ProcessInfo] | None = None) -> list[ProcessInfo]:
    """The live processes of process group ``pgid`` (of ``processes``, else of this machine)."""
    if processes is not None:
        return [p for p in processes if p.pgid == pgid]
    if not has_proc():
        return []
    members = []
    for entry in os.scandir(PROC):
        if not entry.name.isdigit():
            continue
        try:  # the group is field 5 of stat; only its members are read in full
            fields = (PROC / entry.name / "stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if len(fields) > 2 and fields[2] == str(pgid):
            info = read_process(int(entry.name))
            if info is not None:
                members.append(info)
    return members


@dataclass(frozen=True)
class Socket:
    """A listening TCP socket or a bound UDP socket."""

    protocol: str  # tcp, udp, tcp6, udp6
    address: str
    port: int
    inode: int

    def __str__(self) -> str:
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"{self.protocol} {host}:{self.port}"

    @property
    def loopback(self) -> bool:
        return self.address.startswith("127.") or self.address in ("::1", "::ffff:127.0.0.1") or \
            self.address.startswith("::ffff:127.")


def _address(hex_address: str) -> str:
    raw = bytes.fromhex(hex_address)
    if len(raw) == 4:
        return ".".join(str(b) for b in reversed(raw))
    words = [raw[i:i + 4][::-1] for i in range(0, 16, 4)]  # four little-endian 32-bit words
    return str(ipaddress.IPv6Address(b"".join(words)))


def _sockets() -> dict[int, Socket]:
    """Every listening TCP and bound UDP socket of this network namespace, by inode."""
    out: dict[int, Socket] = {}
    for protocol, listening in (("tcp", "0A"), ("tcp6", "0A"), ("udp", "07"), ("udp6", "07")):
        try:
            lines = (PROC / "net" / protocol).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            if len(parts) < 10 or parts[3] != listening:
                continue
            host, _, port = parts[1].partition(":")
            inode = int(parts[9])
            if inode:
                out[inode] = Socket(protocol, _address(host), int(port, 16), inode)
    return out


def _socket_inodes(pid: int) -> set[int]:
    inodes: set[int] = set()
    try:
        entries = list(os.scandir(PROC / str(pid) / "fd"))
    except OSError:
        return inodes
    for entry in entries:
        try:
            target = os.readlink(entry.path)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(int(target[8:-1]))
    return inodes


def listening_sockets(pids: Iterable[int]) -> dict[int, list[Socket]]:
    """The listening TCP and bound UDP sockets each of ``pids`` holds (pids holding none are
    left out)."""
    sockets = _sockets()
    out: dict[int, list[Socket]] = {}
    for pid in pids:
        held = sorted((sockets[i] for i in _socket_inodes(pid) if i in sockets), key=str)
        if held:
            out[pid] = held
    return out


def _same(process: ProcessInfo) -> bool:
    """Whether ``process`` still runs (same pid, same start time: not a recycled pid)."""
    now = read_process(process.pid)
    return now is not None and now.start == process.start


def stop_processes(processes: Iterable[ProcessInfo], *, grace: float, clock: Clock = REAL_CLOCK,
                   kill_first: bool = False) -> list[ProcessInfo]:
    """SIGTERM each process (its whole group when it leads one), wait up to ``grace`` seconds,
    SIGKILL what is left (``kill_first``: SIGKILL at once); return those still running.

    Each process is checked again right before each signal (pid and start time): a process
    that exited meanwhile and whose pid was recycled is never signalled.
    """
    targets = list(processes)
    steps = [(signal.SIGKILL, KILL_WAIT)] if kill_first else [(signal.SIGTERM, grace), (signal.SIGKILL, KILL_WAIT)]
    for signum, wait in steps:
        left = [p for p in targets if _same(p)]
        if not left:
            return []
        for process in left:
            try:
                if process.pgid == process.pid:
                    os.killpg(process.pid, signum)
                else:
                    os.kill(process.pid, signum)
            except (ProcessLookupError, PermissionError):
                pass
        wait_until(lambda: not any(_same(p) for p in targets), wait, interval=0.05, clock=clock)
    return [p for p in targets if _same(p)]
