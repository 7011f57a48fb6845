"""Run the audited command on a lab and collect what it did: the I/O edge of the audit.

1. Find the running lab (``--state-file`` / ``$CHAOS_DYNAMO_STATE``) or start one.
2. Run COMMAND in its own process group with the lab's environment (endpoint URLs, the lab
   DNS through the shim) and none of the caller's AWS settings but :data:`KEPT_AWS_SETTINGS`
   (a profile, a session token or a service endpoint such as ``AWS_ENDPOINT_URL_STS`` would
   send a client to real AWS), ``CHAOS_DYNAMO_CALL_LOG`` set to a fresh directory, its own
   DNS source address and SDK app id (so the lab's logs tell its traffic apart on a shared
   lab); its output goes straight to the terminal.
3. With ``--outage``: after ``--outage-after`` seconds, empty the primary endpoint's DNS
   answer for the given seconds, then restore it; restored whatever happens (the command
   ends, Ctrl-C, an error).
4. Stop the command after ``--timeout`` or on Ctrl-C / SIGTERM (SIGTERM to its group, SIGKILL
   after a grace period); when it exits by itself, what it left running in its group gets
   SIGTERM. While the command runs, Ctrl-C and SIGTERM only set an event the waiting loop
   reads (:class:`_Stop`), whatever this process inherited; after the first, further ones
   are ignored until the audit ends: the stop is bounded by the grace period and the kill
   wait, and the report is written from what was seen.
5. Read the call logs and the lab's DNS and LB logs for the run's window.
6. On a lab the audit started, stop the services the command started on it
   (``chaos-dynamo service start``: they run in sessions of their own), then the lab.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from chaos_dynamo.audit.observe import DnsQuery, LbRequest, Observed
from chaos_dynamo.audit.report import RunInfo
from chaos_dynamo.calllog import (
    APP_ID_ENV,
    CALL_LOG_ENV,
    SERVICE_ENV,
    Client,
    assemble,
    clients_from,
    read_events,
)
from chaos_dynamo.clock import REAL_CLOCK, Clock
from chaos_dynamo.errors import ConfigError, LabError
from chaos_dynamo.lab.state import LabInfo, state_path, write_state
from chaos_dynamo.processes import stop_process_group

__all__ = ["AuditRun", "run_command_audit", "default_name", "check_command", "KEPT_AWS_SETTINGS"]

KEPT_AWS_SETTINGS = (APP_ID_ENV, "AWS_RETRY_MODE", "AWS_MAX_ATTEMPTS")
"""The caller's AWS variables the command keeps: how its clients behave, never where they go."""

GRACE = 5.0
"""Seconds between SIGTERM and SIGKILL when the command is stopped."""

Echo = Callable[[str], None]


@dataclass(frozen=True)
class AuditRun:
    """What to run and how."""

    command: tuple[str, ...]
    name: str
    timeout: float | None = None
    outage: float | None = None
    outage_after: float = 3.0
    state_file: str | None = None
    seed: int | None = None
    grace: float = GRACE


def default_name(command: tuple[str, ...]) -> str:
    """A short name for the command: ``python -m pkg.mod`` -> ``mod``, ``python app.py`` ->
    ``app``, ``./service --x`` -> ``service``."""
    if not command:
        return "command"
    program = Path(command[0]).name
    rest = list(command[1:])
    if re.fullmatch(r"python[0-9.]*", program):
        if "-m" in rest and rest.index("-m") + 1 < len(rest):
            program = rest[rest.index("-m") + 1].rsplit(".", 1)[-1]
        else:
            script = next((a for a in rest if not a.startswith("-")), "")
            program = Path(script).stem or program
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", program) or "command"


def check_command(command: tuple[str, ...]) -> None:
    """Raise ConfigError when COMMAND's program cannot be found (nothing runs)."""
    program = command[0]
    if os.sep in program:
        if not (Path(program).is_file() and os.access(program, os.X_OK)):
            raise ConfigError("COMMAND", f"{program!r} is not an executable file", "check the path")
    elif shutil.which(program) is None:
        raise ConfigError("COMMAND", f"{program!r} is not on PATH", "give the full path or fix PATH")


# --- the lab ----------------------------------------------------------------------------------

@contextmanager
def _lab(state_file: str | None, seed: int | None, scratch: Path, echo: Echo) -> Iterator[tuple[LabInfo, Path, bool]]:
    """(lab, its state file, whether this audit started it): the running lab, else a new one."""
    from chaos_dynamo.runner import running_lab

    path = state_path(state_file)
    running = running_lab(state_file)
    if running is not None:
        echo(f"audit: using the running lab at {running.api_url} ({path})")
        yield running, path, False
        return
    from chaos_dynamo.config import load_topology
    from chaos_dynamo.lab.lab import Lab

    echo("audit: starting a lab for this audit...")
    lab = Lab(load_topology(None, seed=seed))
    try:
        info = lab.start()
    except Exception as exc:  # noqa: BLE001 - any failure to start is an infrastructure error
        lab.stop()
        raise exc if isinstance(exc, LabError) else LabError(
            f"the lab did not start: {type(exc).__name__}: {exc}") from None
    own_state = scratch / "lab.json"
    write_state(info, own_state)
    echo(f"audit: lab ready (API {info.api_url}, DNS {info.dns_host}:{info.dns_port})")
    try:
        yield info, own_state, True
    finally:
        try:
            _stop_services(own_state, echo)
        finally:
            lab.stop()


def _stop_services(lab_state: Path, echo: Echo) -> None:
    """Stop what the command started with ``chaos-dynamo service start`` on the audit's own
    lab: it runs in sessions of its own, so stopping the command's group missed it."""
    from chaos_dynamo.services.supervisor import stop_all

    try:
        stopped = [r["service"] for r in stop_all(lab_state) if r["was_running"]]
    except LabError as exc:
        echo(f"audit: the services the command started could not all be stopped: {exc}")
        return
    if stopped:
        echo(f"audit: stopped the service(s) the command started on the audit's lab: {', '.join(stopped)}")


# --- the outage -------------------------------------------------------------------------------

class Outage:
    """Empty the primary endpoint ``after`` seconds from now for ``seconds``, in a thread,
    and close the LBs' client connections once it is empty (as ``empty_endpoint_for`` does).

    :meth:`stop` ends it early and always leaves the endpoint restored (or says it could not).
    """

    def __init__(self, info: LabInfo, after: float, seconds: float, echo: Echo,
                 clock: Clock = REAL_CLOCK, origin: float | None = None) -> None:
        self.config = {"chaos_dynamo_api": info.api_url}
        self.endpoint = info.primary_endpoint.name
        self.after, self.seconds = after, seconds
        self.echo, self.clock = echo, clock
        # ``started``/``ended`` count from here: the run's start, so the report can place
        # each call-log attempt (wall-clock times) before, during or after the outage.
        self.origin = clock.now() if origin is None else origin
        self.started: float | None = None
        self.ended: float | None = None
        self.touched = False
        self.restored = False
        self.error = ""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="audit-outage", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        from chaos_dynamo.endpoint.actions import empty_endpoint
        from chaos_dynamo.lbfleet.actions import close_connections

        if self._stop.wait(self.after):
            return
        self.touched = True
        try:
            empty_endpoint(configuration=self.config)
            # Keep-alive connections would hide the outage from a client that reuses one.
            close_connections(configuration=self.config)
            self.started = self.clock.now() - self.origin
            self.echo(f"audit: outage: {self.endpoint} answers no addresses (+{self.started:.1f} s)")
        except Exception as exc:  # noqa: BLE001 - reported; the endpoint is restored below
            self.error = f"emptying {self.endpoint} failed: {type(exc).__name__}: {exc}"
        if not self.error:
            self._stop.wait(self.seconds)
        self._restore()

    def _restore(self) -> None:
        from chaos_dynamo.endpoint.actions import restore_endpoint

        try:
            restore_endpoint(configuration=self.config)
            self.restored = True
            self.ended = self.clock.now() - self.origin
            self.echo(f"audit: outage: {self.endpoint} restored (+{self.ended:.1f} s)")
        except Exception as exc:  # noqa: BLE001 - reported, and the audit exits 3
            self.error = f"restoring {self.endpoint} failed: {type(exc).__name__}: {exc}"

    def stop(self) -> None:
        """End the outage now; restore the endpoint if the thread could not."""
        self._stop.set()
        self._thread.join(timeout=120)
        if self.touched and not self.restored:
            self._restore()

    def as_dict(self) -> dict[str, Any]:
        return {"endpoint": self.endpoint, "after": self.after, "seconds": self.seconds,
                "start": self.started, "end": self.ended, "restored": self.restored or not self.touched,
                "error": self.error}


# --- the command ------------------------------------------------------------------------------

class _Stop:
    """Ctrl-C and SIGTERM while the command runs, as an event the waiting loop looks at.

    The handlers are installed before the outage thread and the command start, and they only
    set :attr:`requested`: a signal can come at any point (while the command is being
    spawned, or before the wait began, on a loaded machine), and an exception raised there
    would leave the command running with nobody to stop it. They replace whatever this
    process inherited, an ignored SIGINT included (a shell starts background jobs with
    SIGINT ignored; Python then keeps it ignored, and Ctrl-C or ``kill -INT`` would do
    nothing). The first signal asks for the stop; later ones only say the report is coming:
    the stop is bounded by the grace period and the kill wait, then the endpoint is restored
    and the logs read, and a second Ctrl-C must not lose all that.
    :func:`chaos_dynamo.audit.command.main` puts the previous handlers back.
    """

    def __init__(self, echo: Echo) -> None:
        self.requested = threading.Event()
        self._echo = echo
        self._previous: dict[int, Any] = {}

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # signal handlers belong to the main thread; elsewhere the caller stops us
        for signum in (signal.SIGINT, signal.SIGTERM):
            self._previous[signum] = signal.signal(signum, self._on_signal)

    def restore(self) -> None:
        """The handlers as they were before :meth:`install` (the command ended by itself)."""
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def _on_signal(self, signum: int, frame: Any) -> None:
        if self.requested.is_set():
            self._echo("audit: already stopping the command; the report follows")
        self.requested.set()


def _run(command: tuple[str, ...], env: dict[str, str], timeout: float | None, grace: float,
         stop: _Stop, echo: Echo, clock: Clock = REAL_CLOCK) -> tuple[int | None, str]:
    """Run COMMAND to its end, ``timeout`` or a stop request: (exit code, how it stopped).

    Interrupted before the command started, it is not started: (None, "interrupted").
    """
    if stop.requested.is_set():
        echo("audit: interrupted before the command started")
        return None, "interrupted"
    process = subprocess.Popen(list(command), env=env, start_new_session=True)
    deadline = None if timeout is None else clock.monotonic() + timeout

    def over() -> bool:
        return process.poll() is not None or stop.requested.is_set() or (
            deadline is not None and clock.monotonic() >= deadline)

    # Short naps: a signal sets the event from the handler, which runs in this thread
    # between two naps at the latest.
    while not over():
        stop.requested.wait(0.05)
    if process.poll() is not None and not stop.requested.is_set():
        try:  # what the command left running in its group (background children) ends with it
            os.killpg(process.pid, signal.SIGTERM)
        except (ProcessLookupError, PermissionError):
            pass
        return process.returncode, "exited"
    if stop.requested.is_set():
        stopped, why = "interrupted", "interrupted"
    else:
        stopped, why = "timeout", f"--timeout {timeout:g} s reached"
        stop.requested.set()  # from here on a Ctrl-C only says the report is coming
    echo(f"audit: {why}: stopping the command (Ctrl-C now is ignored; the report follows)")
    return stop_process_group(process, grace=grace, clock=clock), stopped


def _address(lab_state: Path, ours: bool) -> str:
    """A DNS source address for the command (127.0.0.100-250), not one a lab service holds."""
    from chaos_dynamo.services.registry import list_records
    from chaos_dynamo.services.supervisor import allocate_address

    taken = set() if ours else {r.source_address for r in list_records(lab_state) if r.source_address}
    try:
        return allocate_address(taken)
    except ConfigError:
        return ""


def _environment(run: AuditRun, info: LabInfo, lab_state: Path, calls: Path, address: str) -> dict[str, str]:
    """The command's environment: this process's, with the lab instead of any AWS account
    (:meth:`LabInfo.process_env`), the caller's :data:`KEPT_AWS_SETTINGS`, and the audit's own."""
    kept = {k: os.environ[k] for k in KEPT_AWS_SETTINGS if k in os.environ}
    env = info.process_env(os.environ) | kept | {CALL_LOG_ENV: str(calls), "CHAOS_DYNAMO_STATE": str(lab_state),
                                                 "CHAOS_DYNAMO_SHIM": "1"}
    env.setdefault(SERVICE_ENV, run.name)
    env.setdefault(APP_ID_ENV, run.name)
    if address:
        env["CHAOS_DYNAMO_SOURCE_ADDRESS"] = address
    else:
        env.pop("CHAOS_DYNAMO_SOURCE_ADDRESS", None)
    return env


# --- what happened ------------------------------------------------------------------------------

def _lab_logs(info: LabInfo, since: float, until: float, ours: bool, address: str,
              app_id: str) -> tuple[list[DnsQuery], list[LbRequest], list[str]]:
    """The lab's DNS and LB logs for [since, until]: everything on a lab the audit started,
    else what carries the command's source address (DNS) or SDK app id (LB)."""
    from chaos_dynamo.retry.probes import HttpLab
    from chaos_dynamo.services.attribution import app_id as app_id_of

    lab = HttpLab(info)
    notes: list[str] = []
    dns: list[DnsQuery] = []
    lb: list[LbRequest] = []
    try:
        dns = [q for q in lab.dns_log(since) if q.time <= until and (ours or q.client == address)]
    except LabError as exc:
        notes.append(f"the lab DNS log could not be read: {exc}")
    try:
        lb = [r for r in lab.lb_log(since) if r.time <= until
              and (ours or r.service == app_id or app_id_of(r.user_agent) == app_id)]
    except LabError as exc:
        notes.append(f"the lab LB log could not be read: {exc}")
    return dns, lb, notes


def _relative_sites(clients: list[Client], root: Path) -> list[Client]:
    from chaos_dynamo.audit.static import display_path

    out = []
    for client in clients:
        path, _, line = client.site.rpartition(":")
        shown = f"{display_path(Path(path), root)}:{line}" if path and not path.startswith("<") else client.site
        out.append(replace(client, site=shown))
    return out


def run_command_audit(run: AuditRun, *, root: Path, echo: Echo,
                      clock: Clock = REAL_CLOCK) -> tuple[RunInfo, Observed]:
    """Run the command on a lab (see the module docstring); what it did.

    Raises:
        LabError: no lab at an explicit --state-file, or the lab did not start.
    """
    with tempfile.TemporaryDirectory(prefix="chaos-dynamo-audit-") as scratch_dir:
        scratch = Path(scratch_dir)
        calls_dir = scratch / "calls"
        with _lab(run.state_file, run.seed, scratch, echo) as (info, lab_state, ours):
            address = _address(lab_state, ours)
            env = _environment(run, info, lab_state, calls_dir, address)
            echo(f"audit: running {' '.join(run.command)}"
                 + (f" for at most {run.timeout:g} s" if run.timeout else "")
                 + (f"; outage of {run.outage:g} s after {run.outage_after:g} s" if run.outage else ""))
            since = clock.now()
            outage = Outage(info, run.outage_after, run.outage, echo, clock, since) if run.outage else None
            stop = _Stop(echo)
            stop.install()  # before anything starts: see _Stop
            try:
                if outage is not None:
                    outage.start()
                code, stopped = _run(run.command, env, run.timeout, run.grace, stop, echo)
                if stopped == "exited":
                    stop.restore()  # nothing to shield: Ctrl-C from here on interrupts the audit
                    if stop.requested.is_set():  # it came as the command was exiting
                        stopped = "interrupted"
            finally:
                if outage is not None:
                    outage.stop()
            until = clock.now()
            echo(f"audit: the command {'exited' if stopped == 'exited' else 'stopped'} with code {code} "
                 f"after {until - since:.1f} s; reading the logs")
            dns, lb, notes = _lab_logs(info, since, until, ours, address, env[APP_ID_ENV])
            lab = {"api": info.api_url, "region": info.region, "started_by_audit": ours,
                   "source_address": address, "app_id": env[APP_ID_ENV]}
        events = list(read_events(sorted(calls_dir.glob("*.jsonl"))))
    calls, clients = assemble(events), _relative_sites(clients_from(events), root)
    if not calls and not clients:
        notes.append("no botocore client was logged: a Python command must run on a Python with "
                     "chaos-dynamo installed (its .pth file hooks botocore); other programs show "
                     "only in the lab's logs")
    if outage is not None and outage.error:
        notes.append(outage.error)
    info_out = RunInfo(run.command, run.name, since, until - since, code, stopped, lab,
                       outage.as_dict() if outage is not None else None, tuple(notes))
    return info_out, Observed(calls, clients, dns, lb, lab_region=str(lab["region"]))
