"""verify's outcomes as a table: Markdown for a file or a GitHub job summary, plain text for
the terminal. Columns: experiment, expected, result, duration, first failure."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from chaos_dynamo.verify.core import Outcome, counts
from chaos_dynamo.verify.junit import failure_message

HEADERS = ("experiment", "expected", "result", "duration", "first failure")
MARKS = {"passed": "✅ passed", "failed": "❌ failed", "error": "⚠️ error", "interrupted": "⏹️ interrupted"}
STEP_SUMMARY_ENV = "GITHUB_STEP_SUMMARY"


def first_failure(outcome: Outcome) -> str:
    """"" for a passed experiment, else the first failure's line (or the headline)."""
    return "" if outcome.status == "passed" else failure_message(outcome)


def totals_line(outcomes: Sequence[Outcome], duration: float) -> str:
    """``3 experiments in 14.2 s: 1 passed, 2 failed`` (statuses that occurred, in order)."""
    n = counts(outcomes)
    parts = [f"{count} {status}" for status, count in n.items() if count]
    return (f"{len(outcomes)} experiment{'s' if len(outcomes) != 1 else ''} in {duration:.1f} s: "
            + (", ".join(parts) or "none ran"))


def markdown(outcomes: Sequence[Outcome], duration: float, title: str = "chaos-dynamo verify") -> str:
    """A Markdown section: a heading with the totals and one table row per experiment."""
    rows = [[f"`{o.name}`", o.expect, MARKS.get(o.status, o.status), f"{o.duration:.1f} s",
             _cell(first_failure(o))] for o in outcomes]
    lines = [f"### {title}: {totals_line(outcomes, duration)}", "",
             "| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _cell(text: str, limit: int = 300) -> str:
    """Text safe inside a Markdown table cell: one line, pipes escaped, clipped."""
    one_line = " ".join(text.split())
    if len(one_line) > limit:
        one_line = one_line[:limit - 4] + " ..."
    return one_line.replace("\\", "\\\\").replace("|", "\\|").replace("<", "&lt;")


def text_table(outcomes: Sequence[Outcome], duration: float, width: int = 60) -> str:
    """The plain-text table printed at the end of every run, then the totals."""
    rows = [[o.name, o.expect, o.status.upper() if o.status != "passed" else "passed",
             f"{o.duration:.1f} s", _clip(" ".join(first_failure(o).split()), width)] for o in outcomes]
    table = [list(HEADERS)] + rows
    widths = [max(len(r[i]) for r in table) for i in range(len(HEADERS))]
    lines = ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in table]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines + [totals_line(outcomes, duration)])


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit - 4] + " ..."


def write_summary(text: str, path: Path) -> Path:
    """Write the Markdown summary to ``path`` (its directory is created)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def append_step_summary(text: str) -> Path | None:
    """Append to the GitHub Actions job summary ($GITHUB_STEP_SUMMARY) when it is set."""
    target = os.environ.get(STEP_SUMMARY_ENV)
    if not target:
        return None
    path = Path(target)
    with path.open("a", encoding="utf-8") as out:
        out.write(text if text.endswith("\n") else text + "\n")
    return path
