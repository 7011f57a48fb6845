"""Run experiments on a lab with the real ``chaos`` CLI, and judge their journals.

This is the one execution path of ``chaos-dynamo run`` and ``chaos-dynamo verify``:
:func:`execute` runs ``chaos run`` for each experiment (several at once when the caller
allows), checks the lab afterwards and restores what the rollbacks did not (the safety
net), judges each journal (:mod:`chaos_dynamo.verify.verdict`) and writes each run's lab
timeline next to its journal (``<journal>.lab.json``).

``chaos run`` exits 0 when the steady state fails before the method, or when a method action
raises; so the journal is read and the experiment checked against what it declares in its
``extensions``::

    "extensions": [{"name": "chaos-dynamo", "expect": "deviate"}]

``deviate``: the fault must break the hypothesis (a reproduction) and the rollbacks must put
service back. ``hold`` (the default): the hypothesis must hold throughout.

Whatever happens, including Ctrl-C, the run finishes by checking the endpoint and, if it is
still broken, restoring it, and says so. After an interrupted run it also stops the services
(``chaos-dynamo service``) the run started and left running.

Every process it starts reaches the lab and nothing else: ``chaos`` gets
:meth:`LabInfo.process_env <chaos_dynamo.lab.state.LabInfo.process_env>` (the caller's
``AWS_*`` settings, shared config files and instance metadata out), and ``chaos-dynamo run``
and ``verify`` first put their own process in the same state (:func:`isolate_from_aws`).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator, MutableMapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import IO, Any

import click

from chaos_dynamo.clock import REAL_CLOCK, wait_until
from chaos_dynamo.errors import ConfigError, LabError
from chaos_dynamo.lab.doctor import RUN_PARENT_ENV
from chaos_dynamo.lab.state import (
    LabInfo,
    read_state,
    remove_state,
    state_path,
    without_aws,
    write_state,
)
from chaos_dynamo.processes import ProcessInfo, has_exited, stop_process_group, wait_exited
from chaos_dynamo.verify.experiments import (
    EXPECTATIONS,
    expectation,
    load_experiment,
    must_deviate_on,
)
from chaos_dynamo.verify.verdict import Safety, Verdict, clip, judge

__all__ = [
    "EXPECTATIONS", "Interrupt", "Interrupted", "Planned", "RunResult", "Safety", "Verdict", "execute",
    "expectation", "isolate_from_aws", "judge", "lab_for_run", "load_experiment", "must_deviate_on", "own_lab",
    "run_experiment", "running_lab", "signals_to",
]

ROLLBACK_GRACE = 120.0
"""Seconds chaos gets to run its rollbacks after the one SIGINT passed on to it."""
LAB_STOP_GRACE = 30.0
"""Seconds an own lab gets to stop its services and itself after SIGTERM."""
SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
"""What interrupts a run: Ctrl-C, ``kill``, and the terminal going away."""
EXIT_INTERRUPTED = 130
"""``chaos-dynamo run``'s exit code when a signal interrupted it (after the safety net ran)."""
GROUP_STOP_GRACE = 5.0
"""Seconds what chaos left running in its process group gets between SIGTERM and SIGKILL."""
EXIT_BAD_INPUT = 2
"""The ``chaos_exit`` of a run refused for its own bad input (chaos did not run)."""


def isolate_from_aws(environ: MutableMapping[str, str] = os.environ) -> None:
    """Leave this process's environment as :meth:`LabInfo.process_env` leaves a child's,
    without a lab's variables: no ``AWS_*`` setting of the caller's, the shared config and
    credentials files hidden, instance metadata off.

    For ``chaos-dynamo run`` and ``verify``, which only ever talk to labs: their in-process
    clients (the safety net, an embedded lab) and the labs they start would otherwise read
    the caller's profile (``AWS_PROFILE=prod`` that exists on another machine stops every
    boto3 client) or a service endpoint pointing at real AWS.
    """
    wanted = without_aws(environ)
    for key in [k for k in environ if k not in wanted]:
        del environ[key]
    environ.update(wanted)


class Interrupt:
    """Ctrl-C, SIGTERM or SIGHUP as the runs in progress see it.

    The first asks them to stop: each ``chaos`` gets exactly one SIGINT and runs its
    rollbacks (a second SIGINT could cut them short), and nothing new starts. The second
    stops them now.
    """

    def __init__(self) -> None:
        self.requested = threading.Event()
        self.forced = threading.Event()

    def signal(self) -> None:
        (self.forced if self.requested.is_set() else self.requested).set()


class Interrupted(Exception):
    """The run was interrupted before its experiment started."""


@contextmanager
def signals_to(interrupt: Interrupt, on_signal: Callable[[Interrupt], None] | None = None) -> Iterator[None]:
    """Turn SIGINT, SIGTERM and SIGHUP (:data:`SIGNALS`) into ``interrupt.signal()`` while the
    block runs (in the main thread only: Python runs signal handlers there; elsewhere this
    does nothing). SIGHUP too: a closed terminal must roll back like Ctrl-C, not kill the
    run and orphan its labs."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        interrupt.signal()
        if on_signal is not None:
            on_signal(interrupt)

    previous = {s: signal.signal(s, handler) for s in SIGNALS}
    try:
        yield
    finally:
        for s, old in previous.items():
            signal.signal(s, old)


# --- labs ------------------------------------------------------------------------------------

def running_lab(state_file: str | Path | None) -> LabInfo | None:
    """The lab recorded in the state file if it answers, else None.

    Raises:
        LabError: ``state_file`` was given explicitly and names no running lab.
    """
    from chaos_dynamo.endpoint._lab import fetch_info

    try:
        return fetch_info(read_state(state_path(state_file)).api_url)
    except LabError:
        if state_file:
            raise
        return None


@contextmanager
def lab_for_run(state_file: str | None, seed: int | None,
                namespaces: Sequence[str] = ()) -> Iterator[tuple[LabInfo, bool]]:
    """The running lab (from the state file), or a lab started in-process for this run, with
    ``namespaces`` (the experiment's lab namespace) as :func:`own_lab` starts them."""
    path = state_path(state_file)
    running = running_lab(state_file)
    if running is not None:
        yield running, False
        return
    from chaos_dynamo.config import load_topology
    from chaos_dynamo.lab.lab import Lab

    click.echo("starting a lab for this run...")
    started = REAL_CLOCK.monotonic()
    lab = Lab(load_topology(None, seed=seed, namespaces=list(namespaces) or None))
    info = lab.start()
    click.echo(f"lab ready in {REAL_CLOCK.monotonic() - started:.2f} s "
               f"(API {info.api_url}, DNS {info.dns_host}:{info.dns_port})")
    write_state(info, path)
    try:
        yield info, True
    finally:
        lab.stop()
        remove_state(path, pid=info.pid)


@contextmanager
def own_lab(state: Path, seed: int | None, interrupt: Interrupt, timeout: float = 120.0,
            namespaces: Sequence[str] = ()) -> Iterator[LabInfo]:
    """A lab in a process of its own (``chaos-dynamo lab up --state-file STATE``).

    Its own process means its own emulator (moto keeps its state per process, so two labs
    in one process would share zones and tables), its own free ports, and its own state
    file, next to which the services an experiment starts are recorded, and stopped with
    the lab. Its output goes to ``STATE`` with the suffix ``.log``. It runs in a session of
    its own (a terminal's Ctrl-C reaches only this process, which stops it after the run)
    and stops by itself when this process dies (``--exit-with-parent``): a verify killed
    with SIGKILL leaves no lab behind.

    Raises:
        LabError: the lab did not start.
        Interrupted: Ctrl-C came while it was starting.
    """
    state.parent.mkdir(parents=True, exist_ok=True)
    remove_state(state)
    log_path = state.with_suffix(".log")
    command = [sys.executable, "-m", "chaos_dynamo.cli", "lab", "up", "--state-file", str(state),
               "--exit-with-parent", str(os.getpid())]
    command += ["--seed", str(seed)] if seed is not None else []
    command += ["--namespaces", ",".join(namespaces)] if namespaces else []  # an experiment's lab namespace
    with open(log_path, "wb") as log:
        child = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                 start_new_session=True)

    def ready() -> bool:
        try:
            return read_state(state).pid == child.pid
        except LabError:
            return False

    try:
        wait_until(lambda: ready() or child.poll() is not None or interrupt.requested.is_set(),
                   timeout=timeout, interval=0.05)
        if interrupt.requested.is_set():
            raise Interrupted("interrupted while the lab was starting")
        if not ready():
            tail = log_path.read_text(errors="replace").strip()[-1500:]
            raise LabError(f"the lab did not start (see {log_path}): {tail or 'no output'}")
        yield read_state(state)
    finally:
        # SIGTERM: the lab stops its services, then itself; SIGKILL if it does not.
        stop_process_group(child, grace=LAB_STOP_GRACE)
        remove_state(state, pid=child.pid)


# --- the execution path ----------------------------------------------------------------------

@dataclass(frozen=True)
class Planned:
    """An experiment ready to run: where it is, what it expects, where its journal goes, and
    the lab namespace its configuration names ("" for none; as
    :attr:`ExperimentSpec.namespace <chaos_dynamo.verify.experiments.ExperimentSpec.namespace>`)."""

    path: Path
    journal: Path
    expect: str
    title: str = ""
    namespace: str = ""

    def view(self, info: LabInfo) -> LabInfo:
        """The lab as the run's activities see it: its namespace's view, when it names one.

        Raises:
            ConfigError: the namespace is not one of the lab's (the error lists them).
        """
        return info.scoped(self.namespace) if self.namespace else info

    @property
    def log(self) -> Path:
        return self.journal.with_suffix(".log")

    @property
    def lab_timeline(self) -> Path:
        return self.journal.with_suffix(".lab.json")


@dataclass
class RunResult:
    """One experiment's run: the verdict and where its records are."""

    planned: Planned
    verdict: Verdict
    chaos_exit: int
    interrupted: bool
    lab_timeline: Path | None
    started: float  # wall clock, when chaos started
    duration: float  # seconds, from chaos's start to the verdict


@dataclass
class _ChaosRun:
    exit: int
    interrupted: bool
    started: float
    monotonic: float


def execute(planned: Sequence[Planned], info: LabInfo, state: Path, *, interrupt: Interrupt,
            chaos_to_log: bool = False, announce: Callable[[str], None] | None = None,
            stop_services: bool = False, dry_run: bool = False) -> list[RunResult]:
    """Run the experiments at the same time on the lab ``info`` (state file ``state``), then
    check the lab once, restore it if it must, and judge each journal.

    Args:
        planned: the experiments; more than one run side by side (the caller makes sure
            they do not touch the same parts of the lab).
        interrupt: Ctrl-C / SIGTERM (see :class:`Interrupt`).
        chaos_to_log: send chaos's console output to the run's ``.log`` file instead of
            the terminal (the log file otherwise holds chaos's own log).
        announce: called with the chaos command line before each run.
        stop_services: also stop the services the runs started when they were not
            interrupted (for a lab about to stop).
        dry_run: the runs sent nothing; the lab is not checked or repaired afterwards.
    """
    before = _services_marks(state)
    # Each run sees the lab as its activities will: its namespace's view when its configuration
    # names one. A namespace the lab lacks is that run's bad input: it does not run (an error
    # naming chaos_dynamo_namespace), the others run as planned.
    views: dict[int, LabInfo] = {}
    refused: dict[int, ConfigError] = {}
    for i, p in enumerate(planned):
        try:
            views[i] = p.view(info)
        except ConfigError as exc:
            refused[i] = exc
    runs = dict(zip(views, _in_parallel([partial(_run_one, planned[i], view, state, interrupt, chaos_to_log,
                                                 announce) for i, view in views.items()]), strict=True))
    notes = []
    # chaos skips the rollbacks of a run it marks interrupted (ours, or a control's).
    interrupted = any(r.interrupted or _chaos_status(planned[i].journal) == "interrupted" for i, r in runs.items())
    if stop_services or interrupted:
        notes = _stop_services_started(state, before)
    # A dry run changed nothing, so the safety net (never dry) must not change anything either:
    # on a lab that had faults before, "reset" would be a write the dry run promised not to send.
    safety = {scope: (Safety(len(view.endpoints), True, False) if dry_run
                      else ensure_restored(view, interrupted=interrupted))
              for scope, view in {v.namespace: v for v in views.values()}.items()}
    results = []
    for i, p in enumerate(planned):
        if i in refused:
            results.append(_refused(p, refused[i]))
            continue
        run, view = runs[i], views[i]
        verdict = judge(p.journal, p.expect, run.exit, safety[view.namespace], run.interrupted)
        verdict.lines[-1:-1] = notes  # the last line is the safety net's
        sidecar, problem = _collect_lab_timeline(view, run.started, p.lab_timeline)
        if problem:
            verdict.lines.append(problem)
        results.append(RunResult(p, verdict, run.exit, run.interrupted, sidecar, run.started,
                                 REAL_CLOCK.monotonic() - run.monotonic))
    return results


def _refused(p: Planned, problem: ConfigError) -> RunResult:
    """A run that did not start because of its own bad input: an error naming the field."""
    for stale in (p.journal, p.lab_timeline, p.log):  # a journal of an earlier run is not this one's
        stale.unlink(missing_ok=True)
    verdict = Verdict("error", f"ERROR: not run, bad input: {problem}",
                      [f"not run: {problem}", "the lab was not touched by this experiment"])
    return RunResult(p, verdict, EXIT_BAD_INPUT, False, None, REAL_CLOCK.now(), 0.0)


def _chaos_status(journal: Path) -> str:
    """The status chaos wrote in a journal ("" when there is no readable one)."""
    try:
        data = json.loads(journal.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return ""
    return str(data.get("status", "")) if isinstance(data, dict) else ""


def _in_parallel(calls: Sequence[Callable[[], _ChaosRun]]) -> list[_ChaosRun]:
    """Each call's result, the calls made in threads of their own when there are several."""
    if not calls:
        return []
    if len(calls) == 1:
        return [calls[0]()]
    with ThreadPoolExecutor(max_workers=len(calls), thread_name_prefix="chaos") as pool:
        return list(pool.map(lambda call: call(), calls))


def _run_one(p: Planned, info: LabInfo, state: Path, interrupt: Interrupt, chaos_to_log: bool,
             announce: Callable[[str], None] | None) -> _ChaosRun:
    """``chaos run`` of one experiment; its journal (and log, lab timeline) written fresh."""
    p.journal.parent.mkdir(parents=True, exist_ok=True)
    for stale in (p.journal, p.lab_timeline, p.log):
        stale.unlink(missing_ok=True)
    # RUN_PARENT_ENV: `chaos-dynamo lab doctor` tells an orphan (this process died) by it.
    env = info.process_env(os.environ) | {"CHAOS_DYNAMO_STATE": str(state), RUN_PARENT_ENV: str(os.getpid())}
    logging = ["--no-log-file"] if chaos_to_log else ["--log-file", str(p.log)]
    command = chaos_command() + ["--no-version-check", *logging, "run", "--journal-path", str(p.journal),
                                 str(p.path)]
    if announce is not None:
        announce(f"$ {' '.join(command[-4:])}")
    started, mono = REAL_CLOCK.now(), REAL_CLOCK.monotonic()
    if interrupt.requested.is_set():
        return _ChaosRun(130, True, started, mono)
    try:
        if chaos_to_log:
            with open(p.log, "wb") as out:
                code, interrupted = run_chaos(command, env, interrupt, out)
        else:
            code, interrupted = run_chaos(command, env, interrupt)
    except OSError as exc:  # the chaos CLI is missing or cannot run: no journal, an error
        p.log.write_text(f"could not run {command[0]}: {exc}\n", encoding="utf-8")
        return _ChaosRun(127, False, started, mono)
    return _ChaosRun(code, interrupted, started, mono)


def chaos_command() -> list[str]:
    """The `chaos` CLI of this environment."""
    script = Path(sys.executable).with_name("chaos")
    return [str(script)] if script.exists() else [sys.executable, "-m", "chaostoolkit"]


def run_chaos(command: list[str], env: dict[str, str], interrupt: Interrupt,
              output: IO[bytes] | None = None) -> tuple[int, bool]:
    """Run `chaos`; when interrupted let it finish its rollbacks. Returns (exit, interrupted).

    `chaos` runs in its own session, so a terminal's Ctrl-C reaches only this process, which
    passes exactly one SIGINT on when ``interrupt`` is requested, and kills chaos only when it
    is forced (a second Ctrl-C) or the rollbacks take longer than :data:`ROLLBACK_GRACE`.
    """
    process = subprocess.Popen(command, env=env, start_new_session=True, stdout=output,
                               stderr=subprocess.STDOUT if output is not None else None)
    try:
        interrupted, killed = _wait_for_chaos(process, interrupt)
    finally:
        # chaos has exited and is not reaped yet (on an error here: it is stopped first), so its
        # pid, the number of its process group, is still taken: the members listed now are what
        # chaos left behind, never a new session that got the number once chaos was reaped.
        if not has_exited(process):
            _stop_group_unreaped(process, signal.SIGTERM, GROUP_STOP_GRACE)
        left = _left_in_group(process.pid)
        code = process.wait()
        if left:
            from chaos_dynamo.processes import stop_processes

            stop_processes(left, grace=GROUP_STOP_GRACE)  # each re-checked (pid, start) first
    return (EXIT_INTERRUPTED if killed else code), interrupted


def _wait_for_chaos(process: subprocess.Popen[bytes], interrupt: Interrupt) -> tuple[bool, bool]:
    """Wait until chaos has exited, leaving it unreaped (:func:`has_exited`); (interrupted, killed)."""
    while not interrupt.requested.is_set():
        if wait_until(lambda: has_exited(process), timeout=0.1, interval=0.02):
            return False, False
    if not has_exited(process):  # unreaped: the pid is chaos's even if it exits right now
        os.kill(process.pid, signal.SIGINT)
    deadline = REAL_CLOCK.monotonic() + ROLLBACK_GRACE
    while not interrupt.forced.is_set() and REAL_CLOCK.monotonic() < deadline:
        if wait_until(lambda: has_exited(process), timeout=0.1, interval=0.02):
            return True, False
    # The whole group: a process activity's command dies with it.
    _stop_group_unreaped(process, signal.SIGKILL, 0.0)
    return True, True


def _stop_group_unreaped(process: subprocess.Popen[bytes], signum: int, grace: float) -> None:
    """Send ``signum`` to chaos's process group (SIGKILL after ``grace`` s if chaos is still
    running) and wait for chaos to exit, without reaping it."""
    steps = [(signum, grace)] + ([(signal.SIGKILL, 0.0)] if signum != signal.SIGKILL else [])
    for sig, wait in steps:
        if has_exited(process):
            return
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            pass
        if wait and wait_until(lambda: has_exited(process), timeout=wait, interval=0.05):
            return
    wait_exited(process)


def _left_in_group(pgid: int) -> list[ProcessInfo]:
    """What runs in process group ``pgid`` (chaos's, while chaos is unreaped): a process
    activity's command chaos left behind, or one it was killed before it could stop."""
    from chaos_dynamo.processes import group_members

    return [p for p in group_members(pgid) if p.pid != pgid]


def _collect_lab_timeline(info: LabInfo, since: float, path: Path) -> tuple[Path | None, str]:
    """Write the run's lab timeline next to its journal (for ``chaos-dynamo report``).

    A failure to collect it is reported in one verdict line and never fails the verdict.
    """
    try:
        from chaos_dynamo.report.collect import write_lab_timeline

        written: Path = write_lab_timeline(info, since=since, until=REAL_CLOCK.now(), path=path)
        return written, ""
    except Exception as exc:  # noqa: BLE001 - the verdict stands without the timeline
        return None, f"lab timeline not collected: {type(exc).__name__}: {exc}"


# --- chaos-dynamo run ------------------------------------------------------------------------

def run_experiment(experiment_path: Path, journal: Path | None = None, state_file: str | None = None,
                   seed: int | None = None, dry_run: bool = False) -> int:
    """``chaos-dynamo run``: one experiment, chaos's output on the terminal, the verdict and the
    timeline printed; 0 when the experiment did what it declares, else 1.

    With ``dry_run`` (or ``chaos_dynamo_dry_run`` in the experiment's configuration) the run
    prints every write it would send and sends none (:mod:`chaos_dynamo.safety.dryrun`), and
    is judged only on whether every activity ran."""
    from chaos_dynamo.safety import dryrun
    from chaos_dynamo.verify.experiments import inspect

    experiment = load_experiment(experiment_path)
    spec = inspect(experiment_path)  # every check verify makes, before any lab starts
    expect = spec.expect
    dry_run = dry_run or dryrun.declared(experiment)
    if not dry_run:
        dryrun.refuse_env_in_real_run("run")  # chaos would inherit it: a dry run judged as a real one
    isolate_from_aws()
    if dry_run:  # for chaos (process_env passes CHAOS_DYNAMO_* on); the safety net is never dry
        os.environ[dryrun.ENV] = "1"
    default = f"{experiment_path.stem}.dry-run.json" if dry_run else f"{experiment_path.stem}.json"
    planned = Planned(experiment_path, journal or Path("journals") / default, expect,
                      str(experiment.get("title", "")), spec.namespace)
    interrupt = Interrupt()
    # From here on a signal only requests the interrupt: the lab is set up, chaos is given
    # its one SIGINT, the safety net runs, and the command exits 130 (EXIT_INTERRUPTED).
    # A lab started for the run has the experiment's namespace; a running lab without it is
    # bad input (ConfigError naming chaos_dynamo_namespace), refused before anything runs.
    namespaces = [spec.namespace] if spec.namespace else []
    with signals_to(interrupt), lab_for_run(state_file, seed, namespaces) as (info, started):
        view = planned.view(info)
        with signals_to(interrupt):
            (result,) = execute([planned], info, state_path(state_file), interrupt=interrupt,
                                announce=click.echo, stop_services=started, dry_run=dry_run)
        info = view  # a namespaced run's timeline is its endpoint's
        timeline = _timeline(info, result.started)
    interrupted = result.interrupted or interrupt.requested.is_set()
    if dry_run:
        ok, lines = dryrun.summary(planned.journal)
        click.echo("")
        for line in lines:
            click.echo(f"  {line}")
        click.secho(f"dry run: nothing was sent; the `{dryrun.PREFIX}` lines are every write the run would "
                    "send, in order. No verdict: nothing was broken", fg="green" if ok else "red", bold=True)
        click.echo(f"journal: {planned.journal}")
        if interrupted:
            return EXIT_INTERRUPTED
        return 0 if ok else 1
    verdict = result.verdict
    click.echo("")
    for line in verdict.lines:
        click.echo(f"  {line}")
    if timeline:
        click.echo(f"  timeline of {info.primary_endpoint.name}: lab DNS answers (A) and, when the "
                   "control plane ran, its active generation in Route 53:")
        for line in timeline:
            click.echo(f"    {line}")
    click.secho(f"verdict: {verdict.headline}", fg="green" if verdict.ok else "red", bold=True)
    click.echo(f"journal: {planned.journal}")
    if interrupted:
        return EXIT_INTERRUPTED
    return 0 if verdict.ok else 1


# --- the safety net --------------------------------------------------------------------------

def _services_marks(state: Path) -> frozenset[tuple[str, float]]:
    from chaos_dynamo.services import supervisor

    return supervisor.marks(state)


def _stop_services_started(state: Path, before: frozenset[tuple[str, float]]) -> list[str]:
    """Stop the services started since ``before`` that the run's own control did not stop."""
    from chaos_dynamo.services import supervisor

    try:
        return [f"safety net: stopped service {result['service']} started during the run (pids {result['pids']})"
                for result in supervisor.stop_started_since(before, state)]
    except Exception as exc:  # noqa: BLE001 - reported, the lab restore still runs
        return [f"safety net: could not stop the run's services: {type(exc).__name__}: {exc}"]


def ensure_restored(info: LabInfo, interrupted: bool = False) -> Safety:
    """Check every endpoint after the run; restore what the experiment's rollbacks did not.

    Load-balancer faults are cleared too, and a control plane left stuck (an Enactor gave up
    on a plan Route 53 kept refusing) is restored and unstuck: a lab is left as the run
    found it.

    After an ``interrupted`` run, whose rollbacks chaos skipped, the control plane is also
    stopped and its failpoints disarmed (a run armed them and did not get to disarm them), and
    an endpoint that answers but not from the newest plan in the plan table is restored too.

    Never a dry run, whatever ``$CHAOS_DYNAMO_DRY_RUN`` says (:data:`dryrun.NEVER
    <chaos_dynamo.safety.dryrun.NEVER>`): a restore that only printed would leave the lab broken.
    """
    from chaos_dynamo.endpoint import actions, probes
    from chaos_dynamo.lbfleet.actions import reset_lb_faults
    from chaos_dynamo.safety import dryrun

    # A namespace's view (LabInfo.scoped) restores that namespace's endpoints and load balancers.
    config = {"chaos_dynamo_api": info.api_url, "chaos_dynamo_namespace": info.namespace,
              dryrun.CONFIG_KEY: dryrun.NEVER}

    def healthy(name: str, qtype: str) -> bool:
        # Three tries: one slow round trip on a loaded machine is not a broken endpoint.
        return any(probes.endpoint_addresses(name, qtype, configuration=config) > 0
                   and probes.dynamodb_roundtrip(name, configuration=config) for _ in range(3))

    def broken() -> list[str]:
        return [ep.name for ep in info.endpoints if not healthy(ep.name, "AAAA" if ep.ipv6 else "A")]

    try:
        reset_lb_faults(configuration=config)
        # A scenario still running in the lab (chaos was interrupted mid-request; the lab goes
        # on) or a stuck control plane needs the operator first: that restore aborts the
        # scenario, puts the newest plan back on every endpoint and clears the stuck state.
        operator = "" if info.namespace else _control_plane_needs_operator(config)
        if operator:
            from chaos_dynamo.control.actions import restore_and_unstick

            restore_and_unstick(configuration=config)
        halted = _halt_control_plane(config) if interrupted and not info.namespace else ""
        bad = broken()
        stale = [name for name in _off_newest_plan(info, config) if name not in bad] if interrupted else []
        if bad or stale:
            actions.restore_endpoint(configuration=config)
        if bad or operator or stale or halted:
            still = broken() + [name for name in _off_newest_plan(info, config) if name in stale]
            return Safety(len(info.endpoints) - len(still), not still, True,
                          f"still broken: {still}" if still else "",
                          restored=[what for what in (operator, halted) if what] + bad
                          + [f"{name} (not on the newest plan)" for name in stale])
        return Safety(len(info.endpoints), True, False)
    except Exception as exc:  # noqa: BLE001 - reported in the verdict, never swallowed silently
        return Safety(0, False, False, f"{type(exc).__name__}: {exc}")


def _halt_control_plane(config: dict[str, Any]) -> str:
    """Stop a control plane an interrupted run left running, and disarm its failpoints; what
    was done ("" when nothing)."""
    from chaos_dynamo.control import _client
    from chaos_dynamo.control.actions import disarm_failpoints, stop_control_plane

    try:
        status = _client.call("status", configuration=config)
    except LabError:
        return ""  # a lab without a control plane
    done = []
    if status.get("mode") != "idle":
        stop_control_plane(configuration=config)
        done.append(f"the control plane ({status.get('mode')})")
    if status.get("failpoints"):
        disarm_failpoints(configuration=config)
        done.append(f"{len(status['failpoints'])} armed failpoint(s)")
    return " and ".join(done)


def _off_newest_plan(info: LabInfo, config: dict[str, Any]) -> list[str]:
    """The endpoints whose alias is not on the newest plan of the plan table."""
    from chaos_dynamo.control.probes import active_generation
    from chaos_dynamo.planstore import PlanStore
    from chaos_dynamo.route53.backend import make_client

    newest = PlanStore(make_client("dynamodb", info.api_url, info.region), info.plan_table).newest()
    if newest is None:
        return []  # nothing to restore to (restore_endpoint would say so)
    return [ep.name for ep in info.endpoints
            if active_generation(ep.name, configuration=config) != newest.generation]


def _control_plane_needs_operator(config: dict[str, Any]) -> str:
    """What the lab's control plane was left doing that needs the operator ("" when nothing)."""
    from chaos_dynamo.control import _client

    try:
        status = _client.call("status", configuration=config)
    except LabError:
        return ""  # a lab without a control plane (an older one): nothing to restore
    if status.get("mode") in ("race", "replay") or status.get("busy_with"):
        return f"the control plane's {status.get('busy_with') or status.get('mode')} (still running)"
    if status.get("stuck"):
        return "the stuck control plane"
    return ""



def _timeline(info: LabInfo, since: float) -> list[str]:
    """What happened to the primary endpoint during the run, in time order: changes in the
    lab DNS's answer, and (when the control plane ran) changes of the active generation in
    Route 53, cleanups that deleted plans and batches Route 53 refused."""
    from chaos_dynamo.endpoint._lab import http_json

    name = info.primary_endpoint.name.rstrip(".") + "."
    try:
        log = http_json(f"{info.api_url}/_chaos_dynamo/dns/log?since={since}")
    except LabError:
        return []
    events: list[tuple[float, str]] = []
    last: tuple[str, int] | None = None
    count = 0
    start_t = 0.0
    for entry in log:
        if entry.get("name", "").lower().rstrip(".") + "." != name or entry.get("qtype") != "A":
            continue
        state = (entry["rcode"], int(entry["answers"]))
        if state != last:
            if last is not None:
                events.append((start_t, _dns_line(last, count)))
            last, count, start_t = state, 0, float(entry["time"])
        count += 1
    if last is not None:
        events.append((start_t, _dns_line(last, count)))
    events += _control_events(info, since, name)
    return [f"+{t - since:6.2f} s  {text}" for t, text in sorted(events, key=lambda e: e[0])]


def _dns_line(state: tuple[str, int], count: int) -> str:
    rcode, answers = state
    what = f"{answers} address(es)" if answers else "NO ADDRESSES (empty answer)"
    return f"DNS       {rcode:8s} {what}  [{count} quer{'y' if count == 1 else 'ies'}]"


def _control_events(info: LabInfo, since: float, name: str) -> list[tuple[float, str]]:
    """The control plane's steps that changed (or failed to change) the primary endpoint."""
    from chaos_dynamo.endpoint._lab import http_json

    base = f"{info.api_url}/_chaos_dynamo/control"
    try:
        changes = http_json(f"{base}/generations?since={since}")
        history = http_json(f"{base}/history?since={since}")
    except LabError:
        return []  # a lab without a control plane
    events: list[tuple[float, str]] = []
    for c in changes:
        if str(c.get("endpoint", "")).rstrip(".") + "." != name:
            continue
        flag = "  WENT BACKWARDS" if c.get("backwards") else ""
        events.append((float(c["time"]), f"Route 53  active generation {c['from']} -> {c['to']} "
                                         f"({c['actor']}){flag}"))
    refused: dict[str, Any] | None = None
    times = 0
    for h in history + [{}]:
        same = (refused is not None and h.get("actor") == refused["actor"] and h.get("action") == "commit"
                and h.get("outcome") == "fail" and h.get("error") == refused.get("error"))
        if same:
            times += 1
            continue
        if refused is not None:
            what = str(refused.get("error") or refused.get("detail", "")).replace(
                " in ChangeResourceRecordSets", "")
            events.append((float(refused["time"]), f"Route 53  refused {refused['actor']}'s plan "
                                                   f"{refused.get('generation')} ({times}x): {clip(what, 200)}"))
            refused = None
        if h.get("action") == "commit" and h.get("outcome") == "fail" and h.get("error") \
                and str(h.get("endpoint", "")).rstrip(".") + "." == name:
            refused, times = h, 1
        detail = str(h.get("detail", ""))
        if h.get("action") == "cleanup" and h.get("outcome") == "ok" and detail.startswith("deleted ") \
                and not detail.startswith("deleted 0 "):
            events.append((float(h["time"]), f"cleanup   {h['actor']}, plan {h.get('generation')}: {detail}"))
    return events
