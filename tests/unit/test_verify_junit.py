"""The JUnit XML verify writes: valid against tests/data/junit.xsd (the format CI reporters
read), counts and timestamps right, the failing probe in the message, odd text escaped."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import datetime
from pathlib import Path

import junitparser
import pytest
import xmlschema

from chaos_dynamo.verify.core import Failure, Outcome
from chaos_dynamo.verify.junit import junit_xml, write_junit, xml_text

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = xmlschema.XMLSchema(str(ROOT / "tests" / "data" / "junit.xsd"))
T0 = 1_767_225_600.0  # 2026-01-01 00:00:00 UTC
RANGE = {"type": "range", "range": [1, 1000]}


def outcome(name: str, status: str, failures: list[Failure] | None = None, title: str = "a title",
            lines: list[str] | None = None, duration: float = 2.5) -> Outcome:
    return Outcome(Path(f"/x/experiments/{name}.json"), title, "hold", status, f"{status.upper()}: because",
                   lines if lines is not None else [f"experiment: {title}", "steady state before: met"],
                   failures or [], Path(f"/j/{name}.json") if status != "error" else None,
                   Path(f"/j/{name}.lab.json") if status != "error" else None, T0, duration)


BASELINE = Failure("before", "endpoint-has-ipv6", RANGE, 0,
                   'endpoint-has-ipv6 = 0 outside tolerance {"type": "range", "range": [1, 1000]} (before)')
ACTION = Failure("method", "empty-the-endpoint", None, "ConfigError: no such endpoint",
                 "empty-the-endpoint raised ConfigError: no such endpoint (method)")
MIXED = [outcome("smoke", "passed"), outcome("failing-baseline", "failed", [BASELINE]),
         outcome("action-raises", "failed", [ACTION, BASELINE]), outcome("no-lab", "error"),
         outcome("cut", "interrupted")]


def parse(data: bytes) -> ET.Element:
    SCHEMA.validate(data.decode("utf-8"))
    return ET.fromstring(data)


def test_an_independent_junit_reader_sees_what_verify_meant(tmp_path: Path) -> None:
    """junitparser (a consumer that does not share tests/data/junit.xsd's author) reads the
    suite counts, each case's result type, message and text as verify wrote them."""
    path = write_junit(MIXED, tmp_path / "junit.xml", started=T0, duration=7.25)
    xml = junitparser.JUnitXml.fromfile(str(path))
    (suite,) = list(xml)
    assert (suite.name, suite.tests, suite.failures, suite.errors, suite.skipped) == ("chaos-dynamo", 5, 2, 2, 0)
    assert suite.time == pytest.approx(7.25)
    seen = {case.name.split(":")[0]: case for case in suite}
    assert list(seen) == [o.name for o in MIXED]
    assert seen["smoke"].is_passed and seen["smoke"].result == []
    kinds = {name: [type(r).__name__ for r in case.result] for name, case in seen.items()}
    assert kinds == {"smoke": [], "failing-baseline": ["Failure"], "action-raises": ["Failure"],
                     "no-lab": ["Error"], "cut": ["Error"]}
    (baseline,) = seen["failing-baseline"].result
    assert baseline.message == BASELINE.message and baseline.type == "chaos-dynamo.before"
    (raised,) = seen["action-raises"].result
    assert raised.message == ACTION.message + " (+1 more)" and raised.type == "chaos-dynamo.method"
    assert BASELINE.message in (raised.text or "")
    (cut,) = seen["cut"].result
    assert (cut.message, cut.type) == ("INTERRUPTED: because", "chaos-dynamo.interrupted")
    assert seen["smoke"].system_out is not None and "steady state before: met" in seen["smoke"].system_out


def test_the_document_is_valid_and_counts_every_status() -> None:
    root = parse(junit_xml(MIXED, started=T0, duration=7.25, properties={"jobs": "2", "lab": "own"}))
    (suite,) = root.findall("testsuite")
    for element in (root, suite):
        assert {k: element.get(k) for k in ("name", "tests", "failures", "errors", "skipped", "time")} == {
            "name": "chaos-dynamo", "tests": "5", "failures": "2", "errors": "2", "skipped": "0", "time": "7.250"}
        assert element.get("timestamp") == datetime.fromtimestamp(T0).isoformat(timespec="seconds")
    assert [(p.get("name"), p.get("value")) for p in suite.iter("property")] == [("jobs", "2"), ("lab", "own")]
    cases = suite.findall("testcase")
    assert [c.get("name") for c in cases] == [f"{o.name}: a title" for o in MIXED]
    assert {c.get("classname") for c in cases} == {"chaos-dynamo.experiments"}
    assert [c.get("time") for c in cases] == ["2.500"] * 5
    assert [[child.tag for child in c] for c in cases] == [
        ["system-out"], ["failure", "system-out"], ["failure", "system-out"], ["error", "system-out"],
        ["error", "system-out"]]


def test_a_failure_names_the_probe_tolerance_value_and_phase() -> None:
    root = parse(junit_xml(MIXED, started=T0, duration=1.0))
    failure = root.find(".//testcase[@name='failing-baseline: a title']/failure")
    assert failure is not None
    assert failure.get("message") == BASELINE.message
    assert failure.get("type") == "chaos-dynamo.before"
    text = failure.text or ""
    assert text.startswith("FAILED: because") and "steady state before: met" in text
    assert "journal: /j/failing-baseline.json" in text
    more = root.find(".//testcase[@name='action-raises: a title']/failure")
    assert more is not None and more.get("message") == ACTION.message + " (+1 more)"
    assert more.get("type") == "chaos-dynamo.method"


def test_errors_and_interruptions_say_which() -> None:
    root = parse(junit_xml(MIXED, started=T0, duration=1.0))
    types = [e.get("type") for e in root.iter("error")]
    assert types == ["chaos-dynamo.error", "chaos-dynamo.interrupted"]
    system_out = root.find(".//testcase[@name='no-lab: a title']/system-out")
    assert system_out is not None and "journal: none" in (system_out.text or "")


def test_verdict_lines_are_the_system_out() -> None:
    root = parse(junit_xml([outcome("smoke", "passed", lines=["line one", "line two"])], started=T0, duration=1))
    out = root.find(".//system-out")
    assert out is not None and (out.text or "").splitlines()[:2] == ["line one", "line two"]


ODD = "quote \" apostrophe ' <tag> & amp ]]> bell \x07 nul \x00 esc \x1b tab\t newline\n é ✓ \U0001f600 \ud800 \ufffe"


def test_odd_characters_survive_as_well_formed_valid_xml() -> None:
    failure = Failure("after", "probe <&>", {"x": ODD}, ODD, f"probe = {ODD} (after)")
    o = outcome("odd", "failed", [failure], title=ODD, lines=[ODD])
    root = parse(junit_xml([o], started=T0, duration=1.0, properties={"odd": ODD}))
    case = root.find("testsuite/testcase")
    assert case is not None
    name = case.get("name") or ""
    assert name.startswith("odd: quote \" apostrophe ' <tag> & amp ]]> bell \\x07 nul \\x00 esc \\x1b")
    assert "\\ud800" in name and "\\ufffe" in name and "é ✓ \U0001f600" in name
    message = case.find("failure")
    assert message is not None and "newline\n" in (message.get("message") or "")  # kept in the attribute


def test_xml_text_escapes_only_what_xml_forbids() -> None:
    assert xml_text("plain é\t\n\r") == "plain é\t\n\r"
    assert xml_text("\x00\x08\x0b\x0c\x1f") == "\\x00\\x08\\x0b\\x0c\\x1f"
    with pytest.raises(ET.ParseError):  # what the escaping prevents
        ET.fromstring("<a>\x07</a>")


def test_an_empty_run_is_still_a_valid_document(tmp_path: Path) -> None:
    path = write_junit([], tmp_path / "deep" / "junit.xml", started=T0, duration=0.0)
    root = parse(path.read_bytes())
    assert root.get("tests") == "0" and root.find("testsuite") is not None


def test_the_schema_rejects_what_reporters_reject() -> None:
    # The schema must be able to fail: a negative count, a missing name, a zoned timestamp.
    good = junit_xml([outcome("smoke", "passed")], started=T0, duration=1.0).decode()
    assert SCHEMA.is_valid(good)
    assert not SCHEMA.is_valid(good.replace('tests="1"', 'tests="-1"', 1))
    assert not SCHEMA.is_valid(good.replace('name="smoke: a title"', "", 1))
    stamp = datetime.fromtimestamp(T0).isoformat(timespec="seconds")
    assert not SCHEMA.is_valid(good.replace(stamp, stamp + "+00:00", 1))
    assert not SCHEMA.is_valid(good.replace("<system-out>", "<bogus/><system-out>", 1))
