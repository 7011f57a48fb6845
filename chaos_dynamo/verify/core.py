"""Verify experiments: run each on a lab, judge it, and say what it found as an :class:`Outcome`.

Where each experiment runs:

- **its own lab** when no lab is running (no ``state_file`` and no live lab in the default
  state file): a ``chaos-dynamo lab up`` process per experiment, with its own emulator, free
  ports and state file (``<journal_dir>/labs/<stem>/lab.json``; the services the experiment
  starts are recorded there and stopped with the lab). Nothing is shared, so any number of
  experiments run at once.
- **the running lab** otherwise: experiments run together only when their declared
  namespaces are disjoint (:mod:`.schedule`), batch after batch.

Each run writes ``<journal_dir>/<stem>.json`` (the journal), ``<stem>.log`` (chaos's output)
and ``<stem>.lab.json`` (the lab timeline, for ``chaos-dynamo report``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

import click

from chaos_dynamo.clock import REAL_CLOCK
from chaos_dynamo.errors import LabError
from chaos_dynamo.lab.state import LabInfo, state_path
from chaos_dynamo.runner import (
    Interrupt,
    Interrupted,
    Planned,
    RunResult,
    execute,
    own_lab,
    running_lab,
    signals_to,
)
from chaos_dynamo.verify.experiments import ExperimentSpec, inspect
from chaos_dynamo.verify.schedule import batches
from chaos_dynamo.verify.verdict import STATUSES, Failure

__all__ = ["Failure", "Outcome", "Progress", "counts", "verify_all", "verify_experiment"]


@dataclass
class Outcome:
    """What verifying one experiment found.

    Attributes:
        experiment: the experiment file.
        title: its title.
        expect: ``hold`` or ``deviate``.
        status: ``passed`` | ``failed`` | ``error`` (no verdict possible: the lab did not
            start, chaos crashed) | ``interrupted``.
        headline: the verdict's headline.
        lines: the verdict's lines (every probe, action, rollback and the safety net).
        failures: why it did not pass, the one to read first first.
        journal: the journal, when chaos wrote one.
        lab_timeline: the lab-timeline sidecar, when it was collected.
        started: wall-clock seconds when the experiment started.
        duration: seconds it took, lab start included.
    """

    experiment: Path
    title: str
    expect: str
    status: str
    headline: str
    lines: list[str]
    failures: list[Failure]
    journal: Path | None
    lab_timeline: Path | None
    started: float
    duration: float

    @property
    def name(self) -> str:
        return self.experiment.stem


class Progress:
    """One line per experiment started and finished, prefixed ``[i/n stem]`` so the lines of
    experiments running side by side stay readable; safe to call from several threads."""

    def __init__(self, specs: Sequence[ExperimentSpec], echo: Callable[[str], None]) -> None:
        self._index = {spec.path: i for i, spec in enumerate(specs, 1)}
        self._total = len(specs)
        self._echo = echo
        self._lock = threading.Lock()

    def _say(self, path: Path, text: str) -> None:
        with self._lock:
            self._echo(f"[{self._index.get(path, '?')}/{self._total} {path.stem}] {text}")

    def started(self, spec: ExperimentSpec, where: str) -> None:
        self._say(spec.path, f"started ({where})")

    def finished(self, outcome: Outcome) -> None:
        self._say(outcome.experiment, f"{outcome.status.upper()} in {outcome.duration:.1f} s: {outcome.headline}")


def verify_experiment(path: Path, *, journal_dir: Path, state_file: str | None = None,
                      seed: int | None = None, echo: Callable[[str], None] = click.echo,
                      interrupt: Interrupt | None = None) -> Outcome:
    """Run one experiment and judge it; never raises for a failing experiment.

    It runs on the lab recorded in ``state_file`` (or the default state file) when that
    lab is running, else on a lab of its own. A ``state_file`` naming no running lab gives
    an ``error`` outcome.

    Raises:
        ConfigError: the experiment is not valid (raised before anything runs).
    """
    spec = inspect(path)
    progress = Progress([spec], echo)
    interrupt = interrupt or Interrupt()
    with signals_to(interrupt):
        try:
            shared = running_lab(state_file)
        except LabError as exc:
            outcome = _not_run(spec, "error", f"ERROR: {exc}", REAL_CLOCK.now(), 0.0)
            progress.finished(outcome)
            return outcome
        if shared is not None:
            return _run_batch([spec], shared, state_path(state_file), journal_dir, interrupt, progress)[0]
        return _run_alone(spec, journal_dir, seed, interrupt, progress)


def verify_all(specs: Sequence[ExperimentSpec], *, journal_dir: Path, jobs: int = 1,
               shared: LabInfo | None = None, state_file: str | None = None, seed: int | None = None,
               interrupt: Interrupt, progress: Progress) -> list[Outcome]:
    """Run every experiment, ``jobs`` at a time, and return the outcomes of those that ran,
    in the order of ``specs``.

    With ``shared`` (the running lab recorded in ``state_file``) experiments run in batches
    of disjoint namespaces; without, each on its own lab. Once ``interrupt`` is requested no
    new experiment starts; the running ones roll back and are reported ``interrupted``.
    """
    if shared is not None:
        outcomes = _shared_lab(specs, shared, state_path(state_file), journal_dir, jobs, interrupt, progress)
    else:
        outcomes = _own_labs(specs, journal_dir, jobs, seed, interrupt, progress)
    order = {spec.path: i for i, spec in enumerate(specs)}
    return sorted(outcomes, key=lambda o: order[o.experiment])


def _shared_lab(specs: Sequence[ExperimentSpec], info: LabInfo, state: Path, journal_dir: Path, jobs: int,
                interrupt: Interrupt, progress: Progress) -> list[Outcome]:
    outcomes: list[Outcome] = []
    for batch in batches([s.namespaces for s in specs], jobs):
        if interrupt.requested.is_set():
            break
        outcomes += _run_batch([specs[i] for i in batch], info, state, journal_dir, interrupt, progress)
    return outcomes


def _own_labs(specs: Sequence[ExperimentSpec], journal_dir: Path, jobs: int, seed: int | None,
              interrupt: Interrupt, progress: Progress) -> list[Outcome]:
    """Each experiment on a lab of its own, ``jobs`` at a time; the main thread only waits
    (briefly, so it stays free to take Ctrl-C) and starts the next one."""
    pending = list(specs)
    running: set[Future[Outcome]] = set()
    outcomes: list[Outcome] = []
    with ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="verify") as pool:
        while pending or running:
            while pending and len(running) < jobs and not interrupt.requested.is_set():
                running.add(pool.submit(_run_alone, pending.pop(0), journal_dir, seed, interrupt, progress))
            if not running:
                break
            done, running = wait(running, timeout=0.2, return_when=FIRST_COMPLETED)
            outcomes += [f.result() for f in done]
    return outcomes


def _run_alone(spec: ExperimentSpec, journal_dir: Path, seed: int | None, interrupt: Interrupt,
               progress: Progress) -> Outcome:
    """One experiment on a lab of its own, started for it and stopped after it."""
    started, t0 = REAL_CLOCK.now(), REAL_CLOCK.monotonic()
    state = journal_dir / "labs" / spec.stem / "lab.json"
    progress.started(spec, f"own lab, {state.parent}")
    try:
        with own_lab(state, seed, interrupt, namespaces=[spec.namespace] if spec.namespace else []) as info:
            (result,) = execute([_planned(spec, journal_dir)], info, state, interrupt=interrupt,
                                chaos_to_log=True, stop_services=True)
        outcome = _outcome(spec, result, started, REAL_CLOCK.monotonic() - t0)
    except Interrupted:
        outcome = _not_run(spec, "interrupted", "INTERRUPTED: stopped before the experiment started",
                           started, REAL_CLOCK.monotonic() - t0)
    except Exception as exc:  # noqa: BLE001 - the lab did not start, or worse: an error, reported
        outcome = _not_run(spec, "error", f"ERROR: {_describe(exc)}", started, REAL_CLOCK.monotonic() - t0)
    progress.finished(outcome)
    return outcome


def _run_batch(specs: Sequence[ExperimentSpec], info: LabInfo, state: Path, journal_dir: Path,
               interrupt: Interrupt, progress: Progress) -> list[Outcome]:
    """Experiments side by side on the shared lab; one safety check after all of them. One whose
    namespace the lab lacks is an error of its own (:func:`~chaos_dynamo.runner.execute`); the
    others run."""
    started, t0 = REAL_CLOCK.now(), REAL_CLOCK.monotonic()
    for spec in specs:
        progress.started(spec, "shared lab" if len(specs) == 1 else f"shared lab, batch of {len(specs)}")
    try:
        results = execute([_planned(s, journal_dir) for s in specs], info, state, interrupt=interrupt,
                          chaos_to_log=True)
    except Exception as exc:  # noqa: BLE001 - e.g. the shared lab went away: an error, reported
        outcomes = [_not_run(s, "error", f"ERROR: {_describe(exc)}", started, REAL_CLOCK.monotonic() - t0)
                    for s in specs]
    else:
        outcomes = [_outcome(s, r, started, REAL_CLOCK.monotonic() - t0)
                    for s, r in zip(specs, results, strict=True)]
    for outcome in outcomes:
        progress.finished(outcome)
    return outcomes


def _planned(spec: ExperimentSpec, journal_dir: Path) -> Planned:
    return Planned(spec.path, journal_dir / f"{spec.stem}.json", spec.expect, spec.title, spec.namespace)


def _outcome(spec: ExperimentSpec, result: RunResult, started: float, duration: float) -> Outcome:
    v = result.verdict
    journal = result.planned.journal
    return Outcome(spec.path, spec.title, spec.expect, v.status, v.headline, list(v.lines), list(v.failures),
                   journal if journal.exists() else None, result.lab_timeline, started, duration)


def _describe(exc: Exception) -> str:
    """An error for a headline: a LabError says it all; anything else keeps its type."""
    return str(exc) if isinstance(exc, LabError) else f"{type(exc).__name__}: {exc}"


def _not_run(spec: ExperimentSpec, status: str, headline: str, started: float, duration: float) -> Outcome:
    return Outcome(spec.path, spec.title, spec.expect, status, headline, [], [], None, None, started, duration)


def counts(outcomes: Sequence[Outcome]) -> dict[str, int]:
    """How many experiments ended in each status (every status present, 0 included)."""
    return {status: sum(1 for o in outcomes if o.status == status) for status in STATUSES}
