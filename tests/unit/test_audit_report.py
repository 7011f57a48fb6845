"""The audit document, its renderers (Markdown tables, Mermaid graph), the baseline and the gate,
and the command's exit codes for a saved report and for bad input."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from chaos_dynamo.audit.command import EXIT_OK, EXIT_RISKS, EXIT_USAGE, Options, main
from chaos_dynamo.audit.observe import DnsQuery, LbRequest, Observed
from chaos_dynamo.audit.render import to_markdown, to_mermaid
from chaos_dynamo.audit.report import (
    RunInfo,
    apply_gate,
    build_document,
    read_baseline,
    write_baseline,
)
from chaos_dynamo.audit.static import scan_source
from chaos_dynamo.calllog import assemble, clients_from
from chaos_dynamo.errors import ConfigError
from tests.unit.test_audit_rules import History, T

ARCHIVE = '''import boto3
def archive():
    return boto3.client("dynamodb", region_name="us-east-1")
def main():
    return boto3.client("dynamodb")
'''


def fragile_document() -> dict[str, Any]:
    """A naive-like run: us-east-1 only, default timeouts, a retry loop with no backoff (and a
    pipe in an evidence string, via an error name), a DNS-only name, an unexercised construction."""
    history = History()
    client = history.client("7-c1", attempts=1, site="app.py:5")
    history.call(client, "CreateTable")
    history.app_retries(client, [0.001] * 12)
    events = history.events
    run = RunInfo(("python", "app.py"), "app", T, 8.0, 0, "timeout",
                  {"api": "http://127.0.0.1:1", "region": "us-east-1", "started_by_audit": True},
                  {"endpoint": "dynamodb.us-east-1.amazonaws.com", "after": 2.0, "seconds": 3.0, "start": 2.2,
                   "end": 5.3, "restored": True, "error": ""})
    dns = (DnsQuery(T, "127.0.0.100", "dynamodb.us-east-1.amazonaws.com.", "A", "NOERROR", 0),
           DnsQuery(T, "127.0.0.9", "sqs.eu-west-1.amazonaws.com.", "A", "NOERROR", 1))
    lb = (LbRequest(T, "127.0.0.1", lb="lb-1", operation="PutItem", status=200),
          LbRequest(T, "127.0.0.1", lb="lb-1", operation="CreateTable", status=400))
    observed = Observed(assemble(events), clients_from(events), dns, lb)
    return build_document(run, observed, scan_source(ARCHIVE, "app.py"))


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    return fragile_document()


def test_the_document_lists_dependencies_and_findings(doc: dict[str, Any]) -> None:
    assert doc["version"] == 1 and json.loads(json.dumps(doc)) == doc
    first, dns_only = doc["dependencies"]
    assert (first["key"], first["host"], first["seen_by"], first["calls"]) == (
        "dynamodb@us-east-1", "dynamodb.us-east-1.amazonaws.com", "call log", 2)
    assert first["operations"] == {"CreateTable": 1, "PutItem": 1}
    assert first["attempts"] == {"total": 14, "max": 13, "p50": 7.0}
    assert first["longest_call"]["client_calls"] == 13 and first["longest_call"]["finished"]
    assert first["settings"][0]["sites"] == ["app.py:5"] and first["fallback"] == {"regions": [], "hosts": []}
    assert dns_only["key"] == "sqs@eu-west-1" and dns_only["seen_by"] == "lab DNS log only"
    found = {f["id"] for f in doc["findings"]}
    assert {"region-us-east-1-only:dynamodb:us-east-1", "retry-unbounded:dynamodb:us-east-1",
            "retry-no-backoff:dynamodb:us-east-1", "timeouts-missing:dynamodb:us-east-1",
            "dependency-uninstrumented:sqs:eu-west-1", "static-timeouts-missing:dynamodb:app.py:archive",
            "static-region-us-east-1:dynamodb:app.py:archive"} <= found
    assert not any(i.endswith(":app.py:main") for i in found)  # main() is judged by the run: exercised
    exercised = {c["line"]: c["exercised"] for c in doc["static"]["constructions"]}
    assert exercised == {3: False, 5: True}


def _tables(markdown: str) -> list[list[str]]:
    tables: list[list[str]] = []
    previous = ""
    for line in markdown.splitlines():
        if line.startswith("|"):
            if not previous.startswith("|"):
                tables.append([])
            tables[-1].append(line)
        previous = line
    return tables


def _cells(row: str) -> int:
    return len(re.findall(r"(?<!\\)\|", row)) - 1


def test_markdown_tables_are_well_formed(doc: dict[str, Any]) -> None:
    gated = apply_gate(doc, "high", None)
    text = to_markdown(gated)
    tables = _tables(text)
    assert len(tables) >= 5  # dependencies, high findings, medium/low, settings, static, lab logs
    for table in tables:
        assert re.fullmatch(r"\|(---\|)+", table[1]), table[1]
        assert len({_cells(row) for row in table}) == 1, table
    assert "Gate --fail-on high: **FAILED on" in text and "### High (" in text
    assert "| `retry-unbounded:dynamodb:us-east-1` | dynamodb@us-east-1 |" in text
    assert "answered no addresses from +2.2 s to +5.3 s" in text


def test_a_pipe_in_a_value_does_not_break_a_table() -> None:
    doc = fragile_document()
    doc["findings"][0]["evidence"] = "a | b"
    row = next(r for r in to_markdown(apply_gate(doc, None, None)).splitlines() if "a \\| b" in r)
    assert _cells(row) == 7


def test_the_mermaid_graph_is_sane(doc: dict[str, Any]) -> None:
    text = to_mermaid(doc)
    lines = text.splitlines()
    assert lines[0] == "graph LR"
    nodes = set(re.findall(r"^\s+(\w+)[\[(]", text, re.M))
    edges = re.findall(r"^\s+(\w+) (-->|-\.->)\|\"([^\"]*)\"\| (\w+)$", text, re.M)
    assert edges and all(a in nodes and b in nodes for a, _, _, b in edges)
    styled = [int(i) for i in re.findall(r"linkStyle (\d+) ", text)]
    assert styled and max(styled) < len(edges)
    used = set(re.findall(r"^\s+class \w+ (\w+)$", text, re.M))
    defined = set(re.findall(r"^\s+classDef (\w+) ", text, re.M))
    assert used <= defined and "high" in used
    for line in lines[1:]:
        assert line.startswith("  ") and line.count('"') % 2 == 0, line
    assert any("retry-unbounded" in label for _, _, label, _ in edges)
    assert any(arrow == "-.->" and "lab DNS log only" in label for _, arrow, label, _ in edges)
    assert any("did not exercise" in label for _, _, label, _ in edges)  # the unexercised archive client


def test_baseline_marks_known_findings_and_gates_only_new_ones(doc: dict[str, Any], tmp_path: Path) -> None:
    known = {"region-us-east-1-only:dynamodb:us-east-1", "timeouts-missing:dynamodb:us-east-1"}
    path = tmp_path / "baseline.json"
    path.write_text(json.dumps(sorted(known)))
    gated = apply_gate(doc, "high", read_baseline(path), str(path))
    assert gated["gate"]["failed"] and not set(gated["gate"]["gating"]) & known
    assert {f["id"] for f in gated["findings"] if f["new"] is False} == known
    everything = apply_gate(doc, "high", {f["id"] for f in doc["findings"]})
    assert not everything["gate"]["failed"] and everything["summary"]["new"] == 0
    assert apply_gate(doc, None, None)["gate"] == {"fail_on": None, "baseline": None, "gating": [], "failed": False}
    medium = apply_gate(doc, "medium", read_baseline(path))
    assert set(medium["gate"]["gating"]) > set(gated["gate"]["gating"])


def test_a_written_baseline_and_an_audit_document_both_read_as_baselines(doc: dict[str, Any], tmp_path: Path) -> None:
    write_baseline(tmp_path / "b.json", doc)
    ids = {f["id"] for f in doc["findings"]}
    assert json.loads((tmp_path / "b.json").read_text()) == sorted(ids)
    (tmp_path / "doc.json").write_text(json.dumps(doc))
    assert read_baseline(tmp_path / "b.json") == read_baseline(tmp_path / "doc.json") == ids
    (tmp_path / "bad.json").write_text('{"not": "a baseline"}')
    with pytest.raises(ConfigError, match="--baseline"):
        read_baseline(tmp_path / "bad.json")


def test_a_saved_report_is_regated_without_running_anything(doc: dict[str, Any], tmp_path: Path) -> None:
    saved = tmp_path / "audit.json"
    saved.write_text(json.dumps(doc))
    out: list[str] = []
    lines: list[str] = []
    code = main(Options(from_report=saved, fail_on="high", outputs=(("json", "-"),)), echo=lines.append,
                out=out.append)
    assert code == EXIT_RISKS and json.loads(out[0])["gate"]["failed"]
    assert "--fail-on high: FAILED on" in lines[-1]
    code = main(Options(from_report=saved, fail_on="high", baseline=saved,
                        outputs=(("markdown", str(tmp_path / "a.md")),)), echo=lines.append)
    assert code == EXIT_OK and "**passed**" in (tmp_path / "a.md").read_text()


@pytest.mark.parametrize(("options", "field"), [
    (Options(), "COMMAND"),
    (Options(command=("true",), timeout=0), "--timeout"),
    (Options(command=("true",), timeout=float("nan")), "--timeout"),
    (Options(command=("true",), outage=5, outage_after=10, timeout=8), "--outage-after"),
    (Options(static=(Path("."),), outage=5), "--outage"),
    (Options(from_report=Path("x.json"), command=("true",)), "--from"),
    (Options(command=("true",), name="no spaces please"), "--name"),
    (Options(command=("true",), outputs=(("json", "/no/such/dir/a.json"),)), "--json"),
    (Options(command=("no-such-program-anywhere",)), "COMMAND"),
    (Options(from_report=Path("/no/such/report.json")), "--from"),
    (Options(static=(Path("/no/such/dir"),)), "--static"),
])
def test_bad_input_exits_2_before_anything_runs(options: Options, field: str) -> None:
    lines: list[str] = []
    assert main(options, echo=lines.append, out=lines.append) == EXIT_USAGE
    assert lines == [lines[0]] and lines[0].startswith(f"error: {field}")
