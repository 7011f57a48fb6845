"""``chaos-dynamo audit``: options in, reports written, an exit code about risks out.

Exit codes: 0 no finding at or above ``--fail-on`` (new ones only, with ``--baseline``),
or no ``--fail-on``; 1 the gate failed; 2 bad input or usage (nothing ran); 3 the lab could
not be found or started, or the outage could not be undone; 130 interrupted. The audited
command's own exit code is reported, never returned.
"""

from __future__ import annotations

import math
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
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
        if target != "-" and not Path(target).absolute().parent.is_dir():
            raise ConfigError(f"--{fmt}", f"the directory of {target!r} does not exist", "create it first")
    if options.write_baseline is not None and not options.write_baseline.absolute().parent.is_dir():
        raise ConfigError("--write-baseline", f"the directory of {str(options.write_baseline)!r} does not exist",
                          "create it first")


def _document(options: Options, echo: Callable[[str], None]) -> dict[str, Any]:
    """Run (or read) the audit: the ungated document."""
    if options.from_report is not None:
        return read_document(options.from_report)
    from chaos_dynamo.audit.static import scan

    root = Path.cwd()
    constructions, skipped = scan(options.static, root) if options.static else ([], [])
    if options.static:
        echo(f"audit: static scan found {len(constructions)} client construction(s)"
             + (f", skipped {len(skipped)} file(s)" if skipped else ""))
    if not options.command:
        return build_document(None, Observed(), constructions, skipped)
    from chaos_dynamo.audit.run import AuditRun, check_command, default_name, run_command_audit

    check_command(options.command)
    run = AuditRun(options.command, options.name or default_name(options.command), options.timeout,
                   options.outage, options.outage_after, options.state_file, options.seed)
    info, observed = run_command_audit(run, root=root, echo=echo)
    return build_document(info, observed, constructions, skipped)


def _write(doc: dict[str, Any], options: Options, out: Callable[[str], object]) -> None:
    for fmt, target in options.outputs or (("markdown", "-"),):
        text = FORMATS[fmt](doc)
        if target == "-":
            out(text)
        else:
            Path(target).write_text(text, encoding="utf-8")
    if options.write_baseline is not None:
        write_baseline(options.write_baseline, doc)


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
    A ConfigError or LabError is reported through ``echo`` as ``error: ...``.
    """
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
    _write(doc, options, out)
    echo(_summary(doc))
    run = doc.get("run") or {}
    if run.get("stopped") == "interrupted":
        return EXIT_INTERRUPTED
    if run.get("outage") and not run["outage"]["restored"]:
        echo(f"error: the outage was not undone ({run['outage']['error']}); run `chaos-dynamo lab down` "
             "or restore the endpoint by hand")
        return EXIT_INFRA
    return EXIT_RISKS if doc["gate"]["failed"] else EXIT_OK
