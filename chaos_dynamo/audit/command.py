"""``chaos-dynamo audit``: options in, reports written, an exit code about risks out.

Exit codes: 0 no finding at or above ``--fail-on`` (new ones only, with ``--baseline``),
or no ``--fail-on``; 1 the gate failed; 2 bad input or usage (nothing ran); 3 the lab could
not be found or started, the outage could not be undone, a report could not be written
after the audit ran, or the audit crashed (never 1, which a CI step reads as "risks found");
130 interrupted. The audited command's own exit code is reported, never returned.
"""

from __future__ import annotations

import math
import os
import re
import signal
import sys
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from chaos_dynamo.audit.observe import Observed
from chaos_dynamo.audit.render import FORMATS
from chaos_dynamo.audit.report import (
    apply_gate,
    build_document,
    read_baseline,
    read_document,
    write_baseline,
)
from chaos_dynamo.errors import ConfigError, LabError

__all__ = ["Options", "main", "EXIT_OK", "EXIT_RISKS", "EXIT_USAGE", "EXIT_INFRA", "EXIT_INTERRUPTED"]

EXIT_OK, EXIT_RISKS, EXIT_USAGE, EXIT_INFRA, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


@dataclass(frozen=True)
class Options:
    """The command line of ``chaos-dynamo audit`` (see its ``--help``)."""

    command: tuple[str, ...] = ()
    timeout: float | None = None
    outage: float | None = None
    outage_after: float = 3.0
    static: tuple[Path, ...] = ()
    outputs: tuple[tuple[str, str], ...] = ()
    """(format, path or "-" for stdout) pairs; none: Markdown on stdout."""
    fail_on: str | None = None
    baseline: Path | None = None
    write_baseline: Path | None = None
    from_report: Path | None = None
    name: str | None = None
    state_file: str | None = None
    seed: int | None = None


def _seconds(field: str, value: float | None, minimum: float = 0.0, inclusive: bool = False) -> None:
    if value is None:
        return
    if not math.isfinite(value) or value < minimum or (value == minimum and not inclusive):
        raise ConfigError(field, f"{value!r} is not a number of seconds {'>=' if inclusive else '>'} {minimum:g}",
                          "give e.g. 10")


def validate(options: Options) -> None:
    """Refuse contradictory or impossible options before anything runs.

    Raises:
        ConfigError: naming the option.
    """
    if options.from_report is not None:
        if options.command or options.static or options.timeout or options.outage:
            raise ConfigError("--from", "re-judges a saved audit and runs nothing",
                              "drop COMMAND, --static, --timeout and --outage, or drop --from")
    elif not options.command and not options.static:
        raise ConfigError("COMMAND", "nothing to audit",
                          "give a command after the options (e.g. `-- python app.py`), --static PATH, "
                          "or --from REPORT.json")
    _seconds("--timeout", options.timeout)
    _seconds("--outage", options.outage)
    _seconds("--outage-after", options.outage_after, inclusive=True)
    if options.outage is not None and not options.command:
        raise ConfigError("--outage", "needs a COMMAND to observe", "give the command to run after the options")
    if options.outage is not None and options.timeout is not None and options.outage_after >= options.timeout:
        raise ConfigError("--outage-after", f"{options.outage_after:g} s is not before --timeout "
                          f"{options.timeout:g} s", "start the outage earlier or run longer")
    if options.name is not None and not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", options.name):
        raise ConfigError("--name", f"{options.name!r} is not a short name", "use letters, digits, _ . - (64 at most)")
    for fmt, target in options.outputs:
        if target != "-":
            _check_writable(f"--{fmt}", Path(target))
    if options.write_baseline is not None:
        _check_writable("--write-baseline", options.write_baseline)


def _check_writable(option: str, path: Path) -> None:
    """Refuse an output path that cannot be written, before the audit runs (what only the
    write itself can tell is caught then: :func:`_write`)."""
    shown = str(path)
    if path.is_dir():
        raise ConfigError(option, f"{shown!r} is a directory", "give a file path")
    folder = path.absolute().parent
    if not folder.is_dir():
        raise ConfigError(option, f"the directory of {shown!r} does not exist", "create it first")
    if not os.access(path if path.exists() else folder, os.W_OK):
        raise ConfigError(option, f"cannot write {shown!r}: permission denied", "give a writable path")


def _document(options: Options, echo: Callable[[str], None]) -> dict[str, Any]:
    """Run (or read) the audit: the ungated document."""
    if options.from_report is not None:
        return read_document(options.from_report)
    from chaos_dynamo.audit.static import scan

    root = Path.cwd()
    scanned = [str(p) for p in options.static]
    constructions, skipped = scan(options.static, root) if options.static else ([], [])
    if options.static:
        echo(f"audit: static scan found {len(constructions)} client construction(s)"
             + (f", skipped {len(skipped)} file(s)" if skipped else ""))
    if not options.command:
        return build_document(None, Observed(), constructions, skipped, scanned)
    from chaos_dynamo.audit.run import AuditRun, check_command, default_name, run_command_audit

    check_command(options.command)
    run = AuditRun(options.command, options.name or default_name(options.command), options.timeout,
                   options.outage, options.outage_after, options.state_file, options.seed)
    info, observed = run_command_audit(run, root=root, echo=echo)
    return build_document(info, observed, constructions, skipped, scanned)


def _write(doc: dict[str, Any], options: Options, out: Callable[[str], object],
           echo: Callable[[str], None]) -> bool:
    """Write every report asked for; one that cannot be written is said (``error: ...``) and
    the others are written all the same. Whether all were."""
    written = True
    for fmt, target in options.outputs or (("markdown", "-"),):
        text = FORMATS[fmt](doc)
        if target == "-":
            out(text)
            continue
        written &= _written(f"--{fmt}", Path(target), partial(Path(target).write_text, text, encoding="utf-8"), echo)
    if options.write_baseline is not None:
        written &= _written("--write-baseline", options.write_baseline,
                            partial(write_baseline, options.write_baseline, doc), echo)
    return written


def _written(option: str, path: Path, write: Callable[[], object], echo: Callable[[str], None]) -> bool:
    """``write()`` (to ``path``); False, said through ``echo``, when the system refused."""
    try:
        write()
    except OSError as exc:
        echo(f"error: {option}: cannot write {str(path)!r}: {exc.strerror or exc}; give a writable path")
        return False
    return True


def _summary(doc: dict[str, Any]) -> str:
    counts = doc["summary"]["findings"]
    gate = doc["gate"]
    text = (f"audit: {doc['summary']['dependencies']} dependencies, "
            + ", ".join(f"{counts[s]} {s}" for s in counts) + " finding(s)")
    if gate["baseline"]:
        text += f", {doc['summary']['new']} new against {gate['baseline']}"
    if gate["fail_on"]:
        text += (f"; --fail-on {gate['fail_on']}: FAILED on " + ", ".join(gate["gating"])
                 if gate["failed"] else f"; --fail-on {gate['fail_on']}: passed")
    return text


def main(options: Options, *, echo: Callable[[str], None], out: Callable[[str], object] = sys.stdout.write) -> int:
    """Audit as ``options`` say; the exit code (see the module docstring).

    ``echo`` gets progress lines (stderr in the CLI), ``out`` the reports sent to ``-``.
    A ConfigError or LabError is reported through ``echo`` as ``error: ...``; so is a crash
    (with its traceback), as exit code 3. The SIGINT/SIGTERM handlers are as they were
    when it returns (a run that was stopped ignores further ones until then).
    """
    handlers = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    _interrupt_on_signals()
    try:
        return _main(options, echo, out)
    except Exception as exc:  # noqa: BLE001 - a bug must not read as "the gate failed" (1)
        echo(traceback.format_exc().rstrip())
        echo(f"error: the audit crashed ({type(exc).__name__}: {exc}): a bug in chaos-dynamo; please report it "
             "with the traceback above")
        return EXIT_INFRA
    finally:
        for signum, handler in handlers.items():
            if signal.getsignal(signum) is not handler:
                signal.signal(signum, handler)


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _interrupt_on_signals() -> None:
    """Ctrl-C and SIGTERM interrupt the audit (exit 130), whatever this process inherited.

    A shell starts a background job with SIGINT ignored and Python then leaves it ignored:
    without this, ``kill -INT`` (or a CI runner's SIGINT) would be lost and the command
    would run to its ``--timeout``. While the command runs, :mod:`chaos_dynamo.audit.run`
    turns both into a stop request instead of an exception.
    """
    if threading.current_thread() is not threading.main_thread():
        return
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _raise_interrupt)


def _main(options: Options, echo: Callable[[str], None], out: Callable[[str], object]) -> int:
    try:
        validate(options)
        baseline = read_baseline(options.baseline) if options.baseline is not None else None
        doc = _document(options, echo)
    except ConfigError as exc:
        echo(f"error: {exc}")
        return EXIT_USAGE
    except LabError as exc:
        echo(f"error: {exc}")
        return EXIT_INFRA
    except KeyboardInterrupt:
        echo("audit: interrupted")
        return EXIT_INTERRUPTED
    doc = apply_gate(doc, options.fail_on, baseline, str(options.baseline) if options.baseline else None)
    written = _write(doc, options, out, echo)
    echo(_summary(doc))
    run = doc.get("run") or {}
    if run.get("outage") and not run["outage"]["restored"]:
        echo(f"error: the outage was not undone ({run['outage']['error']}); run `chaos-dynamo lab down` "
             "or restore the endpoint by hand")
        return EXIT_INFRA
    if not written:
        return EXIT_INFRA
    if run.get("stopped") == "interrupted":
        return EXIT_INTERRUPTED
    return EXIT_RISKS if doc["gate"]["failed"] else EXIT_OK
