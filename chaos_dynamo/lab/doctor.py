"""``chaos-dynamo lab doctor``: find what an interrupted or crashed run left behind, and repair it.

Everything is keyed to one state file (``--state-file``, ``$CHAOS_DYNAMO_STATE`` or
``./.chaos-dynamo/lab.json``): the doctor looks at that lab and at the processes that are
provably chaos-dynamo's *for that state file*, never at anything else on the machine.

Leftovers (:class:`Finding` kinds):

``stale-state``
    the state file names a lab process that is gone (or whose pid now runs another program).
``unreadable-state``
    the state file cannot be read.
``orphan-lab``
    a ``chaos-dynamo lab up`` for this state file that the file does not name (the file was
    removed or names another lab) while it serves, or whose ``--exit-with-parent`` parent died.
``orphan-service``
    a service (``chaos-dynamo service start``, or the service an experiment's control
    started) recorded next to the state file, or carrying it in its environment, whose lab is
    gone or which outlived the run that started it; ``stale-service-record``: a record whose
    processes all exited.
``orphan-chaos``
    a ``chaos run`` that ``chaos-dynamo run``/``verify`` started (it carries
    ``CHAOS_DYNAMO_RUN_PARENT``) whose parent died.
``run-in-progress``
    a live run on this lab: the lab's faults may be its own, so the lab is not repaired.
``endpoint``
    an endpoint that does not answer (DNS addresses and a DynamoDB round trip) or whose alias
    is not on the newest plan of the plan table.
``lb-faults``, ``capacity``
    a load balancer's faults set; DynamoDB capacity not unlimited.
``control-plane``, ``failpoints``
    the control plane running, busy, stuck or with a crashed actor; armed failpoints.

Ownership is proven by ``/proc``: the command line (``chaos_dynamo.cli lab up`` with this
state file, ``--exit-with-parent``), the environment (``CHAOS_DYNAMO_STATE`` naming this state
file together with ``CHAOS_DYNAMO_SERVICE`` or ``CHAOS_DYNAMO_RUN_PARENT``), the parent and the
start time (a recycled pid has a later one). A process that is not proven ours is never
signalled; at most it is named in a note.

Repair (``--repair``), in this order: stop the orphans (SIGTERM to the process group, SIGKILL
after a grace period), remove a stale state file, then on a running lab: reset every load
balancer's faults and DynamoDB's capacity, stop the control plane and disarm its failpoints,
restore and unstick it when it was stuck, and write the newest plan back to every endpoint
that needs it. Then everything is examined again: what is left is a failed repair.

Exit codes (:data:`EXIT_CLEAN` ...): 0 nothing left (or all repaired), 1 leftovers found
(without ``--repair``), 2 bad input (a state file that is a directory or names a lab off
loopback), 3 a repair failed.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from chaos_dynamo.clock import REAL_CLOCK, Clock
from chaos_dynamo.errors import ChaosDynamoError, LabError, SafetyError
from chaos_dynamo.lab.state import LabInfo, read_state, remove_state, state_path
from chaos_dynamo.processes import (
    ProcessInfo,
    Socket,
    all_processes,
    has_proc,
    listening_sockets,
    read_process,
    stop_processes,
)

__all__ = ["EXIT_CLEAN", "EXIT_LEFTOVERS", "EXIT_BAD_INPUT", "EXIT_REPAIR_FAILED", "RUN_PARENT_ENV",
           "Finding", "Report", "examine", "repair", "main"]

EXIT_CLEAN, EXIT_LEFTOVERS, EXIT_BAD_INPUT, EXIT_REPAIR_FAILED = 0, 1, 2, 3
RUN_PARENT_ENV = "CHAOS_DYNAMO_RUN_PARENT"
"""Set by ``chaos-dynamo run``/``verify`` in the environment of each ``chaos run`` it starts:
its own pid. A chaos process whose parent is no longer that pid is an orphan."""
STOP_GRACE = 10.0
"""Seconds an orphan gets between SIGTERM and SIGKILL."""
TRIES = 3
"""Tries of an endpoint check before it counts as broken: one slow round trip on a loaded
machine is not a broken endpoint."""
CLEAN_FAULTS = {"down": False, "latency": 0.0, "unhealthy": False, "error_rate": 0.0, "intermittent": None}
"""A load balancer's fault knobs with no fault set (``refusing_for`` must be unset or 0 too)."""

Echo = Callable[[str], None]


@dataclass(frozen=True)
class Finding:
    """One leftover: what it is, what ``--repair`` does about it, the processes and sockets."""

    kind: str
    what: str
    fix: str
    pids: tuple[int, ...] = ()
    sockets: tuple[str, ...] = ()
    repairable: bool = True
    subject: str = ""
    """The name of a service the registry records (stopped through the registry); else empty."""


@dataclass
class Report:
    """What the doctor found (and, with ``--repair``, did)."""

    state_file: str
    lab: str  # running, stale, none, unreadable
    lab_pid: int | None = None
    findings: list[Finding] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    repaired: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    repair_attempted: bool = False

    @property
    def exit_code(self) -> int:
        if self.repair_attempted:
            return EXIT_REPAIR_FAILED if self.findings or self.failed else EXIT_CLEAN
        return EXIT_LEFTOVERS if self.findings else EXIT_CLEAN

    def as_dict(self) -> dict[str, Any]:
        return {"state_file": self.state_file, "lab": self.lab, "lab_pid": self.lab_pid,
                "findings": [asdict(f) for f in self.findings], "notes": self.notes,
                "repaired": self.repaired, "failed": self.failed, "exit_code": self.exit_code}


# --- what is ours ------------------------------------------------------------------------------

@dataclass
class _Processes:
    """The processes that concern one state file, sorted by role."""

    labs: list[tuple[ProcessInfo, str]] = field(default_factory=list)  # orphan labs, why
    starting: list[ProcessInfo] = field(default_factory=list)
    services: list[tuple[str, list[ProcessInfo], str, bool]] = field(default_factory=list)  # ..., recorded
    stale_records: list[str] = field(default_factory=list)
    chaos: list[tuple[ProcessInfo, str]] = field(default_factory=list)  # orphan chaos runs, why
    running: list[ProcessInfo] = field(default_factory=list)  # live runs on this lab


def _is_cli(process: ProcessInfo) -> bool:
    """Whether ``process`` is the chaos-dynamo command line (``python -m chaos_dynamo.cli`` or
    the ``chaos-dynamo`` script)."""
    head = process.argv[:3]
    return "chaos_dynamo.cli" in head or any(Path(a).name == "chaos-dynamo" for a in head)


def _lab_up_state(process: ProcessInfo) -> Path | None:
    """The state file of a ``chaos-dynamo lab up`` process (None for any other process)."""
    if not _is_cli(process) or "--detach" in process.argv:
        return None  # `lab up --detach` only starts the real lab and waits for it
    args = list(process.argv)
    try:
        at = args.index("lab")
    except ValueError:
        return None
    if args[at + 1:at + 2] != ["up"]:
        return None
    value = process.arg_after("--state-file") or process.environ.get("CHAOS_DYNAMO_STATE")
    if value:
        return process.path(value)
    return process.path(".chaos-dynamo/lab.json")


def _env_state(process: ProcessInfo) -> Path | None:
    value = process.environ.get("CHAOS_DYNAMO_STATE")
    return process.path(value) if value else None


def _parent_gone(process: ProcessInfo, expected: int | None, by_pid: dict[int, ProcessInfo]) -> bool:
    """Whether the process that started ``process`` is gone: its parent is no longer
    ``expected`` (when known), it was handed to init, or its parent pid is a newer process."""
    if expected is not None and process.ppid != expected:
        return True
    parent = by_pid.get(process.ppid)
    return process.ppid <= 1 or parent is None or parent.start > process.start


def _serves_as_lab(process: ProcessInfo, sockets: Iterable[Socket]) -> bool:
    """Whether ``process`` answers the lab API on one of its loopback TCP sockets, as itself."""
    from chaos_dynamo.endpoint._lab import fetch_info

    for sock in sockets:
        if sock.protocol == "tcp" and sock.loopback:
            try:
                if fetch_info(f"http://{sock.address}:{sock.port}", timeout=2.0).pid == process.pid:
                    return True
            except (LabError, ValueError, TypeError, KeyError):
                continue
    return False


def _find_processes(state: Path, lab_pid: int | None, lab_running: bool) -> _Processes:
    from chaos_dynamo.services.registry import list_records
    from chaos_dynamo.services.supervisor import live_pids

    found = _Processes()
    procs = all_processes()
    by_pid = {p.pid: p for p in procs}
    sockets = listening_sockets(p.pid for p in procs if _lab_up_state(p) == state)
    # Labs started for this state file that it does not name.
    for p in procs:
        if _lab_up_state(p) != state or p.pid == lab_pid and lab_running:
            continue
        parent = p.arg_after("--exit-with-parent")
        if parent is not None and parent.isdigit() and p.ppid != int(parent):
            found.labs.append((p, f"its parent (pid {parent}) died"))
        elif _serves_as_lab(p, sockets.get(p.pid, [])):
            # Read the state file again: a lab writes it right after it starts serving.
            again = _recorded_pid(state)
            if again != p.pid:
                found.labs.append((p, "the state file " + ("names another lab" if again else "is gone")))
        else:
            found.starting.append(p)
    # Services recorded next to the state file.
    recorded: set[int] = set()
    for record in list_records(state):
        owner = record.extra.get("state_file")
        if owner and Path(str(owner)).absolute() != state:
            continue  # another lab's service in the same directory
        pids = live_pids(record)
        recorded.update(pids)
        if not pids:
            found.stale_records.append(record.name)
            continue
        members = [p for p in procs if p.pgid in pids]
        why = "" if lab_running else "its lab is gone"
        for p in members:
            if not why and p.pid in pids:
                why = _outlived(p, by_pid)
        if why:
            found.services.append((record.name, members, why, True))
    # Service processes not (or no longer) recorded.
    for p in procs:
        name = p.environ.get("CHAOS_DYNAMO_SERVICE")
        if not name or p.pid != p.sid or p.pgid in recorded or _env_state(p) != state:
            continue
        why = "" if lab_running else "its lab is gone"
        why = why or _outlived(p, by_pid) or ("its starter died" if _parent_gone(p, None, by_pid) else "")
        if why:
            found.services.append((name, [q for q in procs if q.pgid == p.pgid], why + " (not in the registry)",
                                   False))
    # chaos runs on this lab.
    for p in procs:
        if _env_state(p) != state or p.pid == lab_pid:
            continue
        marker = p.environ.get(RUN_PARENT_ENV, "")
        if marker.isdigit() and _parent_gone(p, int(marker), by_pid):
            if p.pid == p.pgid:  # the chaos process itself (its group's members go with it)
                found.chaos.append((p, f"its chaos-dynamo parent (pid {marker}) died"))
        elif _is_chaos_run(p) and p.pid == p.pgid:
            found.running.append(p)
    return found


def _is_chaos_run(process: ProcessInfo) -> bool:
    argv = process.argv
    return "run" in argv and any(Path(a).name in ("chaos", "chaostoolkit") for a in argv[:3])


def _outlived(process: ProcessInfo, by_pid: dict[int, ProcessInfo]) -> str:
    """Why a service process outlived the run that started it ("" when it did not)."""
    parent = process.environ.get("CHAOS_DYNAMO_EXIT_WITH_PARENT", "")
    if not parent.isdigit():
        return ""
    run = by_pid.get(int(parent))
    if run is None or run.start > process.start:
        return f"the run that started it (pid {parent}) is gone"
    return ""


def _recorded_pid(state: Path) -> int | None:
    try:
        return read_state(state).pid
    except LabError:
        return None


# --- the lab -----------------------------------------------------------------------------------

def _lab_status(state: Path) -> tuple[str, LabInfo | None, str]:
    """(running | stale | none | unreadable, the state file's lab, why).

    Raises:
        SafetyError: the state file names a lab off loopback (bad input: never contacted).
    """
    from chaos_dynamo.endpoint._lab import check_loopback_info, fetch_info

    if not state.exists():
        return "none", None, ""
    try:
        info = read_state(state)
    except LabError as exc:
        return "unreadable", None, str(exc)
    check_loopback_info(info, f"the state file {state}")
    process = read_process(info.pid)
    if process is None:
        return "stale", info, f"its lab (pid {info.pid}) is gone"
    try:
        if fetch_info(info.api_url, timeout=3.0).pid == info.pid:
            return "running", info, ""
    except LabError:
        pass
    if _lab_up_state(process) == state:
        return "running", info, "its API does not answer"  # ours by its command line, but unwell
    return "stale", info, f"its lab is gone: pid {info.pid} now runs another program ({process.command[:80]})"


def _scopes(info: LabInfo) -> list[tuple[LabInfo, dict[str, Any]]]:
    """The lab's own parts and each namespace's, with the configuration activities need."""
    scopes = [(info, {"chaos_dynamo_api": info.api_url, "chaos_dynamo_namespace": ""})]
    for name in getattr(info, "namespace_names", []):
        scopes.append((info.scoped(name), {"chaos_dynamo_api": info.api_url, "chaos_dynamo_namespace": name}))
    return scopes


def _endpoint_problems(info: LabInfo, config: dict[str, Any], generations: bool = True) -> list[tuple[str, str]]:
    """(endpoint, problem) for each endpoint that does not answer or (``generations``) is not
    on the newest plan."""
    from chaos_dynamo.control.probes import active_generation
    from chaos_dynamo.endpoint import probes
    from chaos_dynamo.planstore import PlanStore
    from chaos_dynamo.route53.backend import make_client

    newest = PlanStore(make_client("dynamodb", info.api_url, info.region), info.plan_table).newest()
    problems = []
    for ep in info.endpoints:
        qtype = "AAAA" if ep.ipv6 else "A"
        answers = any(probes.endpoint_addresses(ep.name, qtype, configuration=config) > 0
                      and probes.dynamodb_roundtrip(ep.name, configuration=config) for _ in range(TRIES))
        if not answers:
            problems.append((ep.name, "does not answer (no DNS address, or no DynamoDB round trip through it)"))
            continue
        if not generations:
            continue
        if newest is None:
            problems.append((ep.name, f"the plan table {info.plan_table!r} holds no plan"))
            continue
        active = active_generation(ep.name, configuration=config)
        if active != newest.generation:
            problems.append((ep.name, f"is on plan {active}, not on the newest plan {newest.generation}"))
    return problems


def _lab_findings(info: LabInfo) -> list[Finding]:
    from chaos_dynamo.control import _client
    from chaos_dynamo.endpoint._lab import http_json

    findings = []
    status = http_json(f"{info.api_url}/_chaos_dynamo/status")
    faulty = {}
    for name, lb in sorted(status.get("load_balancers", {}).items()):
        faults = lb.get("faults", {})
        set_ = {k: faults.get(k) for k, clean in CLEAN_FAULTS.items() if faults.get(k, clean) != clean}
        if faults.get("refusing_for"):
            set_["refusing_for"] = faults["refusing_for"]
        if set_:
            faulty[name] = set_
    if faulty:
        findings.append(Finding("lb-faults", f"load balancer faults set: {faulty}",
                                "reset every load balancer's faults"))
    capacity = status.get("dynamodb", {}).get("capacity") or {}
    if capacity.get("slots") is not None or capacity.get("service_time", 0.0):
        findings.append(Finding("capacity", f"DynamoDB capacity changed: {capacity.get('slots')} slot(s), "
                                f"{capacity.get('service_time')} s service time", "make it unlimited again"))
    try:
        control = _client.call("status", configuration={"chaos_dynamo_api": info.api_url})
    except LabError:
        control = {}  # a lab without a control plane
    running = bool(control) and control.get("mode") != "idle"
    if control:
        problems = []
        if control.get("mode") != "idle":
            problems.append(f"running ({control.get('mode')})")
        if control.get("busy_with"):
            problems.append(f"busy with {control['busy_with']!r}")
        if control.get("stuck"):
            problems.append(f"stuck: {control.get('stuck_reason')}")
        crashed = {a: s["error"] for a, s in (control.get("actors") or {}).items() if s.get("error")}
        if crashed and control.get("mode") != "idle":
            problems.append(f"crashed actor(s): {crashed}")
        if problems:
            findings.append(Finding("control-plane", "the control plane is " + "; ".join(problems)
                                    + ("; endpoints are checked against the newest plan once it is stopped"
                                       if running else ""),
                                    "stop it, restore the newest plan and clear the stuck state"))
        if control.get("failpoints"):
            armed = [f"{f['point']} {f['action']}" for f in control["failpoints"]]
            findings.append(Finding("failpoints", f"armed failpoints: {armed}", "disarm them"))
    for scope, config in _scopes(info):
        where = f" (namespace {scope.namespace})" if scope.namespace else ""
        for name, problem in _endpoint_problems(scope, config, generations=not running):
            findings.append(Finding("endpoint", f"endpoint {name}{where} {problem}",
                                    "write the newest plan back to it"))
    return findings


# --- examine -------------------------------------------------------------------------------------

def examine(state_file: str | Path | None = None) -> Report:
    """What is left over around the lab of ``state_file`` (nothing is changed).

    Raises:
        SafetyError: the state file names a lab off loopback.
        ConfigError: the state file path is a directory.
    """
    from chaos_dynamo.errors import ConfigError

    state = state_path(state_file)
    if state.is_dir():
        raise ConfigError("--state-file", f"{str(state)!r} is a directory", "give the lab's state file (lab.json)")
    lab, info, why = _lab_status(state)
    report = Report(str(state), lab, info.pid if info else None)
    if lab == "stale":
        report.findings.append(Finding("stale-state", f"stale state file: {why}", "remove the state file",
                                       (info.pid,) if info else ()))
    elif lab == "unreadable":
        report.findings.append(Finding("unreadable-state", f"unreadable state file: {why}", "remove the state file"))
    elif lab == "running" and why:
        report.findings.append(Finding("lab", f"the lab (pid {report.lab_pid}) runs but {why}",
                                       "stop it (`chaos-dynamo lab down`) and start it again", repairable=False))
    if not has_proc():
        report.notes.append("no /proc on this machine: orphan processes were not looked for")
        found = _Processes()
    else:
        found = _find_processes(state, report.lab_pid, lab == "running")
    sockets = listening_sockets({p.pid for p, _ in found.labs + found.chaos}
                                | {m.pid for _, members, _, _ in found.services for m in members})

    def held(pids: Iterable[int]) -> tuple[str, ...]:
        return tuple(str(s) for pid in pids for s in sockets.get(pid, []))

    for p, why in found.labs:
        report.findings.append(Finding("orphan-lab", f"orphan lab (pid {p.pid}): {why}",
                                       "stop it (SIGTERM, then SIGKILL)", (p.pid,), held([p.pid])))
    for name, members, why, recorded in found.services:
        pids = tuple(m.pid for m in members)
        report.findings.append(Finding("orphan-service", f"orphan service {name} (pids {list(pids)}): {why}",
                                       "stop its process groups (SIGTERM, then SIGKILL)", pids, held(pids),
                                       subject=name if recorded else ""))
    for name in found.stale_records:
        report.findings.append(Finding("stale-service-record", f"service {name} is recorded but every "
                                       "instance exited", "remove its record", subject=name))
    for p, why in found.chaos:
        report.findings.append(Finding("orphan-chaos", f"orphan chaos run (pid {p.pid}): {why}",
                                       "stop it (SIGTERM, then SIGKILL), then restore the lab", (p.pid,),
                                       held([p.pid])))
    for p in found.starting:
        report.notes.append(f"a lab for this state file is starting (pid {p.pid}); left alone")
    if found.running:
        pids = tuple(p.pid for p in found.running)
        report.findings.append(Finding("run-in-progress", f"a run is in progress on this lab (pids {list(pids)}); "
                                       "the lab's faults may be its own, so the lab was not checked",
                                       "wait for it to end (or stop it), then run the doctor again", pids,
                                       repairable=False))
    elif lab == "running" and info is not None:
        try:
            report.findings.extend(_lab_findings(info))
        except (ChaosDynamoError, OSError) as exc:
            report.findings.append(Finding("lab", f"the lab could not be checked: {type(exc).__name__}: {exc}",
                                           "stop it (`chaos-dynamo lab down`) and start it again",
                                           repairable=False))
    if lab == "stale" and info is not None:
        report.notes.extend(_port_notes(info, {pid for f in report.findings for pid in f.pids}))
    return report


def _port_notes(info: LabInfo, ours: set[int]) -> list[str]:
    """Who holds the ports a stale lab recorded, when it is not one of our orphans."""
    from urllib.parse import urlparse

    wanted = set()
    for url in (info.api_url, info.emulator_url):
        parsed = urlparse(url)
        if parsed.port:
            wanted.add(parsed.port)
    wanted |= {info.dns_port, info.lb_port}
    notes = []
    processes = {p.pid: p for p in all_processes() if p.pid not in ours}
    for pid, held in listening_sockets(processes).items():
        for sock in held:
            if sock.loopback and sock.port in wanted:
                notes.append(f"{sock} that the stale lab used is held by pid {pid} "
                             f"({processes[pid].command[:80]}), which is not ours: left alone")
    return notes


# --- repair --------------------------------------------------------------------------------------

def repair(state_file: str | Path | None = None, *, clock: Clock = REAL_CLOCK, echo: Echo | None = None) -> Report:
    """Repair what :func:`examine` finds, then examine again: the report of what is left,
    with ``repaired`` and ``failed`` filled in."""
    say = echo or (lambda line: None)
    state = state_path(state_file)
    first = examine(state)
    repaired: list[str] = []
    failed: list[str] = []

    def attempt(what: str, action: Callable[[], object]) -> None:
        try:
            action()
        except Exception as exc:  # noqa: BLE001 - a failed repair is reported, the others still run
            failed.append(f"{what}: {type(exc).__name__}: {exc}")
            say(f"  FAILED    {what}: {type(exc).__name__}: {exc}")
            return
        repaired.append(what)
        say(f"  repaired  {what}")


    kinds = {f.kind for f in first.findings}
    procs = {p.pid: p for p in all_processes()} if has_proc() else {}
    # 1. Orphans first, runs before services before labs: a run still going would undo the
    #    lab's repair. A recorded service is stopped through the registry (which checks each
    #    group is still the service's and removes the record).
    order = {"orphan-chaos": 0, "orphan-service": 1, "stale-service-record": 1, "orphan-lab": 2}
    for finding in sorted((f for f in first.findings if f.kind in order), key=lambda f: order[f.kind]):
        if finding.subject:
            attempt(finding.what, lambda n=finding.subject: _stop_service(n, state))  # type: ignore[misc]
            continue
        targets = [procs[pid] for pid in finding.pids if pid in procs]
        # An orphan lab SIGTERMed stops the services recorded next to its state file: when
        # that file names another, running lab, they are that lab's, so it gets SIGKILL.
        kill_first = finding.kind == "orphan-lab" and first.lab == "running"
        attempt(finding.what, lambda t=targets, k=kill_first: _stop(t, clock, k))  # type: ignore[misc]
    # 2. The state file of a lab that is gone (unless a new lab wrote it meanwhile).
    if first.lab == "stale":
        attempt(f"removed the stale state file {state}", lambda: remove_state(state, pid=first.lab_pid))
    elif first.lab == "unreadable" and _lab_status(state)[0] == "unreadable":
        attempt(f"removed the unreadable state file {state}", lambda: remove_state(state))
    # 3. The running lab.
    if first.lab == "running" and "run-in-progress" not in kinds:
        info = read_state(state)
        config = {"chaos_dynamo_api": info.api_url, "chaos_dynamo_namespace": ""}
        _repair_lab(info, config, kinds, attempt)
    report = examine(state)
    report.repaired, report.failed, report.repair_attempted = repaired, failed, True
    report.notes = first.notes + [n for n in report.notes if n not in first.notes]
    return report


def _stop_service(name: str, state: Path) -> None:
    from chaos_dynamo.services import supervisor

    supervisor.stop(name, state, timeout=STOP_GRACE)
    if supervisor.running_instances(name, state):
        raise LabError(f"service {name} is still running")


def _stop(targets: list[ProcessInfo], clock: Clock, kill_first: bool) -> None:
    left = stop_processes(targets, grace=STOP_GRACE, clock=clock, kill_first=kill_first)
    if left:
        raise LabError(f"still running after SIGKILL: pids {[p.pid for p in left]}")


def _repair_lab(info: LabInfo, config: dict[str, Any], kinds: set[str],
                attempt: Callable[[str, Callable[[], object]], None]) -> None:
    from chaos_dynamo.control import _client
    from chaos_dynamo.control.actions import (
        disarm_failpoints,
        restore_and_unstick,
        stop_control_plane,
    )
    from chaos_dynamo.endpoint.actions import restore_endpoint
    from chaos_dynamo.lbfleet.actions import reset_lb_faults

    if kinds & {"lb-faults", "capacity"}:
        attempt("reset every load balancer's faults and DynamoDB's capacity",
                lambda: reset_lb_faults(configuration=config))
    if "control-plane" in kinds:
        stuck = bool(_client.call("status", configuration=config).get("stuck"))
        attempt("stopped the control plane", lambda: stop_control_plane(configuration=config))
        if stuck:
            attempt("restored the newest plan and cleared the control plane's stuck state",
                    lambda: restore_and_unstick(configuration=config))
    if "failpoints" in kinds:
        attempt("disarmed every failpoint", lambda: disarm_failpoints(configuration=config))
    if "endpoint" in kinds or "control-plane" in kinds:
        for scope, scope_config in _scopes(info):
            if _endpoint_problems(scope, scope_config):
                where = f" of namespace {scope.namespace}" if scope.namespace else ""
                attempt(f"wrote the newest plan back to the endpoints{where}",
                        lambda c=scope_config: restore_endpoint(configuration=c))  # type: ignore[misc]


# --- the command ---------------------------------------------------------------------------------

def render(report: Report) -> list[str]:
    """The report as the terminal shows it."""
    lab = {"running": f"running (pid {report.lab_pid})", "stale": f"STALE (pid {report.lab_pid} is gone)",
           "none": "none recorded", "unreadable": "UNREADABLE state file"}[report.lab]
    lines = [f"lab doctor: {report.state_file}", f"  lab: {lab}"]
    for f in report.findings:
        lines.append(f"  LEFTOVER  {f.kind}: {f.what}")
        if f.sockets:
            lines.append(f"            holds {', '.join(f.sockets)}")
        lines.append(f"            repair: {f.fix}" + ("" if f.repairable else " (not done by --repair)"))
    lines += [f"  note: {n}" for n in report.notes]
    if report.repair_attempted:
        if report.findings or report.failed:
            lines.append(f"doctor: repair FAILED: {len(report.findings)} leftover(s) remain"
                         + (f", {len(report.failed)} repair(s) failed" if report.failed else ""))
        else:
            lines.append(f"doctor: repaired {len(report.repaired)} thing(s); nothing left over"
                         if report.repaired else "doctor: nothing to repair; nothing left over")
    elif report.findings:
        lines.append(f"doctor: {len(report.findings)} leftover(s); `chaos-dynamo lab doctor --repair` repairs them")
    else:
        lines.append("doctor: nothing left over")
    return lines


def main(state_file: str | None, *, do_repair: bool, as_json: bool, echo: Echo) -> int:
    """``chaos-dynamo lab doctor``: the exit code (see the module docstring)."""
    from chaos_dynamo.errors import ConfigError

    try:
        if do_repair:
            report = repair(state_file, echo=None if as_json else echo)
        else:
            report = examine(state_file)
    except (ConfigError, SafetyError) as exc:
        if as_json:
            echo(json.dumps({"error": str(exc), "exit_code": EXIT_BAD_INPUT}))
        else:
            echo(f"error: {exc}")
        return EXIT_BAD_INPUT
    if as_json:
        echo(json.dumps(report.as_dict(), indent=2))
    else:
        for line in render(report):
            echo(line)
    return report.exit_code

