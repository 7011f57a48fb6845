"""``chaos-dynamo verify``: check every experiment first, run them, write the reports, and
exit with a code a CI job can act on.

====  ===========================================================================
code  meaning
====  ===========================================================================
0     every experiment met its expectation
1     at least one did not (a failed verdict)
2     bad input or usage: nothing ran
3     infrastructure: an experiment could not be judged (the lab did not start,
      the chaos CLI is missing or crashed) or a report could not be written; no
      experiment failed
130   interrupted by chaos-dynamo's own interrupt (Ctrl-C, SIGTERM, SIGHUP): the
      running experiments rolled back, the reports cover what ran. A run that chaos
      interrupted by itself (a control or safeguard raised InterruptExecution) is a
      failed experiment: 1
====  ===========================================================================

verify talks to labs only: its process drops the caller's ``AWS_*`` settings first
(:func:`chaos_dynamo.runner.isolate_from_aws`), as every process it starts does.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import click

from chaos_dynamo.clock import REAL_CLOCK
from chaos_dynamo.errors import ConfigError
from chaos_dynamo.runner import (
    Interrupt,
    isolate_from_aws,
    load_experiment,
    running_lab,
    signals_to,
)
from chaos_dynamo.safety import dryrun
from chaos_dynamo.verify.core import Outcome, Progress, counts, verify_all
from chaos_dynamo.verify.experiments import expand
from chaos_dynamo.verify.junit import write_junit
from chaos_dynamo.verify.summary import append_step_summary, markdown, text_table, write_summary

__all__ = ["EXIT_FAILED", "EXIT_INFRA", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_USAGE", "Outputs", "exit_code",
           "run_verify"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INFRA, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
DEFAULT_DIR = Path("experiments")


@dataclass(frozen=True)
class Outputs:
    """Where verify writes, besides the journals."""

    junit: Path | None = None
    summary: Path | None = None
    report: Path | None = None


def exit_code(outcomes: Sequence[Outcome], interrupted: bool) -> int:
    """The run's exit code (module docstring): 130 only when ``interrupted`` (verify's own
    interrupt was requested), else a failure, else an error."""
    n = counts(outcomes)
    if interrupted:
        return EXIT_INTERRUPTED
    if n["failed"] or n["interrupted"]:  # "interrupted" without our interrupt: not Ctrl-C
        return EXIT_FAILED
    if n["error"]:
        return EXIT_INFRA
    return EXIT_OK


def default_paths(paths: Sequence[Path]) -> list[Path]:
    """The paths given, or ``experiments/`` when none are and it exists (else ConfigError)."""
    if paths:
        return list(paths)
    if DEFAULT_DIR.is_dir():
        return [DEFAULT_DIR]
    raise ConfigError("PATHS", "none given and there is no experiments/ directory here",
                      "name experiment files or directories, e.g. `chaos-dynamo verify experiments/`")


def run_verify(paths: Sequence[Path], *, journals: Path, outputs: Outputs, jobs: int = 1,
               state_file: str | None = None, seed: int | None = None,
               echo: Callable[[str], None] = click.echo) -> int:
    """Verify the experiments at ``paths``; returns the exit code.

    Raises:
        ConfigError: bad input (before anything runs): exit 2.
        LabError: ``state_file`` names no running lab (before anything runs): exit 3.
    """
    dryrun.refuse_env_in_real_run("verify")  # its chaos runs would inherit it: dry, yet judged as real
    specs = expand(default_paths(paths), note=echo)
    for spec in specs:
        if dryrun.declared(load_experiment(spec.path)):
            raise ConfigError(f"{spec.path}: configuration.{dryrun.CONFIG_KEY}",
                              "declares a dry run: its activities would send nothing, yet verify would judge it "
                              "as a real run", "remove it for verify; preview with `chaos-dynamo run --dry-run`")
    isolate_from_aws()
    shared = running_lab(state_file)
    where = (f"on the running lab ({shared.api_url}), batches of disjoint namespaces" if shared
             else "each on a lab of its own")
    echo(f"verifying {len(specs)} experiment(s), {jobs} at a time, {where}; journals in {journals}")
    interrupt = Interrupt()
    started, t0 = REAL_CLOCK.now(), REAL_CLOCK.monotonic()
    with signals_to(interrupt, _on_signal):
        outcomes = verify_all(specs, journal_dir=journals, jobs=jobs, shared=shared, state_file=state_file,
                              seed=seed, interrupt=interrupt, progress=Progress(specs, echo))
    duration = REAL_CLOCK.monotonic() - t0
    not_started = [s.stem for s in specs if s.path not in {o.experiment for o in outcomes}]
    code = exit_code(outcomes, interrupt.requested.is_set())
    properties = {"jobs": str(jobs), "lab": "shared" if shared else "own"}
    if seed is not None:
        properties["seed"] = str(seed)
    if not _write_outputs(outcomes, outputs, journals, started, duration, properties, echo):
        code = EXIT_INFRA if code == EXIT_OK else code
    echo("")
    _print_details(outcomes, journals, echo)
    echo(text_table(outcomes, duration))
    if not_started:
        echo(f"not started (interrupted): {', '.join(not_started)}")
    return code


def _on_signal(interrupt: Interrupt) -> None:
    if interrupt.forced.is_set():
        click.echo("interrupted again: stopping the running experiments now", err=True)
    else:
        click.echo("interrupted: no new experiment starts; the running ones roll back "
                   "(Ctrl-C again stops them now)", err=True)


def _print_details(outcomes: Sequence[Outcome], journals: Path, echo: Callable[[str], None]) -> None:
    """Each experiment that did not pass: its headline, failures, and where to read more."""
    for o in outcomes:
        if o.status == "passed":
            continue
        echo(f"{o.name}: {o.headline}")
        for f in o.failures:
            echo(f"  {f.message}")
        records = [f"journal {o.journal}" if o.journal else "no journal"]
        log, lab_log = journals / f"{o.name}.log", journals / "labs" / o.name / "lab.log"
        if log.exists():
            records.append(f"chaos output {log}")
        if o.journal is None and lab_log.exists():
            records.append(f"lab log {lab_log}")
        echo(f"  {'; '.join(records)}")
        echo("")


def _write_outputs(outcomes: Sequence[Outcome], outputs: Outputs, journals: Path, started: float,
                   duration: float, properties: dict[str, str], echo: Callable[[str], None]) -> bool:
    """JUnit XML, the Markdown summary (file and GitHub job summary) and the HTML report;
    False when one could not be written (each is attempted regardless)."""
    ok = True
    summary = markdown(outcomes, duration)
    steps: list[tuple[str, Callable[[], Path | None]]] = [
        ("JUnit XML", lambda: write_junit(outcomes, outputs.junit, started=started, duration=duration,
                                          properties=properties) if outputs.junit else None),
        ("summary", lambda: write_summary(summary, outputs.summary) if outputs.summary else None),
        ("GitHub job summary", lambda: append_step_summary(summary)),
        ("HTML report", lambda: _report(outcomes, outputs.report) if outputs.report else None),
    ]
    for what, write in steps:
        try:
            path = write()
        except Exception as exc:  # noqa: BLE001 - one report failing must not lose the others
            echo(f"error: {what} not written: {type(exc).__name__}: {exc}")
            ok = False
            continue
        if path is not None:
            echo(f"{what}: {path}")
    return ok


def _report(outcomes: Sequence[Outcome], out: Path) -> Path:
    from chaos_dynamo.report.html import write_report

    journals = [o.journal for o in outcomes if o.journal is not None]
    written: Path = write_report(journals, out, outcomes=list(outcomes))
    return written

