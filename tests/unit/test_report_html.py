"""The report page: verdict table, sections, escaping, no network, verify's outcomes, and bad
input that writes nothing."""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace

import pytest
from click.testing import CliRunner

from chaos_dynamo.cli import main
from chaos_dynamo.errors import ConfigError
from chaos_dynamo.report.html import write_report
from tests.unit.test_report_data import activity, journal, lease_report, sidecar, write


def cells(html: str, row_class: str) -> list[str]:
    row = re.search(rf'<tr class="verdict {row_class}">(.*?)</tr>', html)
    assert row is not None, f"no {row_class} row"
    return [re.sub(r"<[^>]+>", "", c) for c in re.findall(r"<td[^>]*>(.*?)</td>", row.group(1))]


def test_one_row_per_journal_and_a_section_with_the_charts_that_have_data(tmp_path: Path) -> None:
    smoke = write(tmp_path, "smoke", journal(), sidecar())
    lease = write(tmp_path, "lease", journal(title="Leases", expect="hold", after_met=True, rollbacks=[
        activity("report", 9, 10, kind="probe", output=lease_report())]))
    out = write_report([smoke, lease], tmp_path / "out" / "report.html", title="Nightly")
    html = out.read_text()
    assert html.count('<tr class="verdict passed">') == 2
    assert cells(html, "passed")[:4] == ["The endpoint goes empty", "deviates (a reproduction)", "passed", "10.0 s"]
    assert "endpoint-resolves (after): 0 vs range [1, 1000]" in cells(html, "passed")[4]
    assert html.count('<section class="experiment"') == 2
    sections = html.split('<section class="experiment"')[1:]
    assert sections[0].count("<svg") == 4  # endpoint, generation, LB and DNS rates
    assert sections[1].count("<svg") == 1 and 'data-chart="leases"' in sections[1]
    assert "No data for DNS answers per endpoint" in sections[1]
    assert [p.name for p in out.parent.iterdir()] == ["report.html"]


def test_the_page_loads_nothing_and_runs_no_script(tmp_path: Path) -> None:
    html = write_report([write(tmp_path, "a", journal(), sidecar())], tmp_path / "r.html").read_text()
    assert "Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\"" in html
    assert re.findall(r"""(?:src|href)\s*=\s*["']?(?:https?:)?//""", html, re.IGNORECASE) == []
    assert "<script" not in html.lower() and "<link" not in html.lower() and "@import" not in html


def test_hostile_titles_and_names_are_escaped(tmp_path: Path) -> None:
    hostile = '<script>alert(1)</script><img src=x onerror=alert(2)>'
    data = journal(title=hostile, method=[activity(f"</td>{hostile}", 1, 2)])
    data["steady_states"]["after"]["probes"][0]["activity"]["name"] = hostile
    html = write_report([write(tmp_path, "a", data)], tmp_path / "r.html", title=hostile).read_text()
    assert "<script" not in html and "<img" not in html and "</td><script" not in html
    assert html.count("&lt;script&gt;alert(1)&lt;/script&gt;") >= 4  # page title, h1, table, section, ...


CONTROLS = "".join(map(chr, [*range(0x00, 0x09), 0x0B, 0x0C, *range(0x0E, 0x20), *range(0x7F, 0xA0)]))


def test_control_characters_in_a_journal_are_shown_escaped_never_written(tmp_path: Path) -> None:
    """A NUL or an escape sequence in a title, an action's name, its output or its exception
    makes a page that is not well-formed; the report writes each as a visible escape, as
    the JUnit writer does (one shared helper)."""
    dirty = "a\x00b\x1b[31mc\x7fd\x85e\tf"
    failed = activity(f"act-{dirty}", 2.0, 4.0, status="failed", output=dirty)
    failed["exception"] = ["Traceback (most recent call last):\n", f"ValueError: {dirty} {CONTROLS}\n"]
    data = journal(title=f"t-{dirty}", method=[failed], rollbacks=[activity("restore", 4.2, 4.5, output=CONTROLS)])
    data["steady_states"]["after"]["probes"][0]["activity"]["name"] = f"probe-{dirty}"
    html = write_report([write(tmp_path, "a", data, sidecar())], tmp_path / "r.html", title=dirty).read_text()
    assert [c for c in html if c in CONTROLS] == []
    assert "a\\x00b\\x1b[31mc\\x7fd\\x85e\tf" in html  # shown, tab kept
    assert html.count("act-a\\x00b") >= 2  # in the activities table and the chart's fault window
    assert "<svg" in html


def test_verifys_outcomes_give_the_status_and_an_outcome_without_journal_gets_a_row(tmp_path: Path) -> None:
    held = write(tmp_path, "held", journal(expect="hold", after_met=True))
    failure = SimpleNamespace(phase="before", activity="endpoint-resolves", tolerance={"type": "range", "range": [1, 9]},
                              value=0, message="endpoint-resolves = 0")
    outcomes = [
        SimpleNamespace(journal=held, lab_timeline=None, status="failed", headline="FAILED: the safety net restored",
                        expect="hold", failures=[failure], duration=12.5, title="x", lines=[]),
        SimpleNamespace(journal=None, lab_timeline=None, status="error", headline="ERROR: chaos is missing",
                        expect="deviate", failures=[], duration=0.5, title="Race", lines=["chaos: not found"]),
    ]
    html = write_report([held], tmp_path / "r.html", outcomes=outcomes).read_text()  # type: ignore[arg-type]
    failed = cells(html, "failed")
    assert failed[2:4] == ["FAILED", "12.5 s"] and "0 vs range [1, 9]" in failed[4]
    assert cells(html, "error")[:3] == ["Race", "deviates (a reproduction)", "ERROR"]
    assert "ERROR: chaos is missing" in html and "chaos: not found" in html


def test_a_truncated_journal_of_an_outcome_is_noted_not_fatal(tmp_path: Path) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text('{"experiment": ')
    outcome = SimpleNamespace(journal=broken, lab_timeline=None, status="error", headline="ERROR: chaos crashed",
                              expect="hold", failures=[], duration=1.0, title="Broken", lines=[])
    html = write_report([broken], tmp_path / "r.html", outcomes=[outcome]).read_text()  # type: ignore[list-item]
    assert cells(html, "error")[0] == "Broken" and "journal unreadable" in html


def test_a_file_that_is_not_a_journal_writes_nothing(tmp_path: Path) -> None:
    good = write(tmp_path, "good", journal())
    experiment = tmp_path / "experiment.json"
    experiment.write_text(json.dumps({"title": "t", "method": []}))
    out = tmp_path / "report.html"
    out.write_text("the previous report")
    with pytest.raises(ConfigError, match="experiment.json: is an experiment, not a chaos journal"):
        write_report([good, experiment], out)
    assert out.read_text() == "the previous report"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["experiment.json", "good.json", "report.html"]


def test_the_command_writes_the_report_or_exits_2(tmp_path: Path) -> None:
    good = write(tmp_path, "good", journal(), sidecar())
    out = tmp_path / "r.html"
    result = CliRunner().invoke(main, ["report", str(good), "-o", str(out), "--title", "Nightly"])
    assert result.exit_code == 0, result.output
    assert f"report: {out}" in result.output and "<title>Nightly</title>" in out.read_text()
    missing = CliRunner().invoke(main, ["report", str(tmp_path / "nope.json"), "-o", str(tmp_path / "x.html")])
    assert missing.exit_code == 2 and "nope.json: does not exist" in missing.output
    assert not (tmp_path / "x.html").exists()
    usage = CliRunner().invoke(main, ["report", str(good)])
    assert usage.exit_code == 2 and "-o" in usage.output


def test_the_command_skips_the_lab_timelines_a_glob_also_matches(tmp_path: Path) -> None:
    good = write(tmp_path, "good", journal(), sidecar())
    sidecars = sorted(tmp_path.glob("*.lab.json"))
    assert sidecars, "the sample has a lab timeline beside its journal"
    out = tmp_path / "r.html"
    result = CliRunner().invoke(main, ["report", *map(str, sorted(tmp_path.glob("*.json"))), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert f"skipped {sidecars[0]}: a lab timeline" in result.output and f"report: {out} (1 journal(s))" in result.output
    alone = CliRunner().invoke(main, ["report", str(sidecars[0]), "-o", str(tmp_path / "x.html")])
    assert alone.exit_code == 2 and "only lab timelines" in alone.output
    assert not (tmp_path / "x.html").exists() and good.exists()
