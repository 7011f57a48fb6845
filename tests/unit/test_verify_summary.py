"""verify's summary tables (Markdown, GitHub job summary, plain text) and its exit codes."""

from __future__ import annotations

from pathlib import Path

import pytest

from chaos_dynamo.verify.command import exit_code
from chaos_dynamo.verify.core import Failure, Outcome
from chaos_dynamo.verify.summary import append_step_summary, markdown, text_table

PIPE = Failure("after", "p|q", None, "x", "p|q = 1 | 2 outside tolerance <b>\nsecond line (after)")


def outcome(name: str, status: str, failures: list[Failure] | None = None, expect: str = "hold",
            duration: float = 3.14) -> Outcome:
    return Outcome(Path(f"/e/{name}.json"), "t", expect, status, f"{status.upper()}: headline", [],
                   failures or [], None, None, 0.0, duration)


RUN = [outcome("smoke", "passed", expect="deviate"), outcome("odd", "failed", [PIPE]),
       outcome("no-lab", "error")]


def test_markdown_has_a_totals_heading_and_one_row_per_experiment() -> None:
    text = markdown(RUN, 9.87)
    lines = text.splitlines()
    assert lines[0] == "### chaos-dynamo verify: 3 experiments in 9.9 s: 1 passed, 1 failed, 1 error"
    assert lines[2] == "| experiment | expected | result | duration | first failure |"
    assert lines[4] == "| `smoke` | deviate | ✅ passed | 3.1 s |  |"
    assert lines[6] == "| `no-lab` | hold | ⚠️ error | 3.1 s | ERROR: headline |"
    assert len(lines) == 7


def test_a_markdown_cell_stays_one_cell() -> None:
    row = markdown(RUN, 1.0).splitlines()[5]
    assert row == ("| `odd` | hold | ❌ failed | 3.1 s | "
                   "p\\|q = 1 \\| 2 outside tolerance &lt;b> second line (after) |")
    assert row.count(" | ") == 4  # the unescaped separators only


def test_the_plain_text_table_lines_up() -> None:
    lines = text_table(RUN, 9.87, width=30).splitlines()
    assert lines[0].split() == ["experiment", "expected", "result", "duration", "first", "failure"]
    assert set(lines[1]) == {"-", " "}
    starts = {line.index("hold" if "hold" in line else "deviate") for line in lines[2:5]}
    assert len(starts) == 1, lines
    column = lines[0].index("first failure")
    assert "FAILED" in lines[3] and lines[3][column:].startswith("p|q = 1 | 2 outside")
    assert lines[3].endswith(" ...") and len(lines[3][column:]) == 30
    assert lines[-1] == "3 experiments in 9.9 s: 1 passed, 1 failed, 1 error"


def test_the_github_job_summary_is_appended_only_when_set(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    assert append_step_summary("x") is None
    target = tmp_path / "step.md"
    target.write_text("earlier step\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(target))
    assert append_step_summary(markdown(RUN, 1.0)) == target
    assert target.read_text().startswith("earlier step\n### chaos-dynamo verify")


@pytest.mark.parametrize(("statuses", "interrupted", "code"), [
    (["passed", "passed"], False, 0),
    ([], False, 0),
    (["passed", "failed"], False, 1),
    (["passed", "error"], False, 3),
    (["failed", "error"], False, 1),  # a known failure outranks an unknown result
    (["passed", "interrupted"], False, 1),  # not verify's own interrupt: never reported as Ctrl-C
    (["failed"], True, 130),
    ([], True, 130),
])
def test_exit_codes(statuses: list[str], interrupted: bool, code: int) -> None:
    assert exit_code([outcome(f"e{i}", s) for i, s in enumerate(statuses)], interrupted) == code
