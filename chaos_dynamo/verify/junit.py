"""verify's outcomes as JUnit XML, the test report format CI systems read (Jenkins, GitLab's
``artifacts:reports:junit``, GitHub Actions reporters).

One ``<testsuite name="chaos-dynamo">`` (inside ``<testsuites>``) with one ``<testcase>`` per
experiment: ``classname="chaos-dynamo.<directory>"``, ``name="<stem>: <title>"``. A failed
experiment has a ``<failure>`` whose message names the failing probe, its tolerance and value
(``endpoint-resolves = 0 outside tolerance {...} (after)``); an experiment that could not be
judged (no journal, the lab did not start) or was interrupted has an ``<error>``. The verdict
lines are the element's text and the test case's ``<system-out>``.

Text that XML 1.0 cannot carry (control characters in an exception message, say) is written
as ``\\xNN`` escapes (:func:`chaos_dynamo.report.markup.xml_text`, which the HTML report
uses too), so the file is always well-formed.
"""

from __future__ import annotations

import socket
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path

from chaos_dynamo.report.markup import xml_text
from chaos_dynamo.verify.core import Outcome, counts

__all__ = ["SUITE", "failure_message", "junit_xml", "timestamp", "write_junit", "xml_text"]

SUITE = "chaos-dynamo"


def timestamp(seconds: float) -> str:
    """Local time, ISO 8601 without a zone, to the second: what Ant's JUnit report writes."""
    return datetime.fromtimestamp(seconds).isoformat(timespec="seconds")


def junit_xml(outcomes: Sequence[Outcome], *, started: float, duration: float,
              properties: Mapping[str, str] | None = None) -> bytes:
    """The JUnit XML document (UTF-8) for ``outcomes``.

    Args:
        started: wall-clock seconds when the run began (the suite's timestamp).
        duration: the run's wall-clock seconds (the suite's time; with experiments run side
            by side it is less than the sum of their times).
        properties: name/value pairs recorded in the suite (``jobs``, ``lab``, ...).
    """
    n = counts(outcomes)
    totals = {"tests": str(len(outcomes)), "failures": str(n["failed"]),
              "errors": str(n["error"] + n["interrupted"]), "skipped": "0",
              "time": f"{max(duration, 0.0):.3f}", "timestamp": timestamp(started)}
    root = ET.Element("testsuites", {"name": SUITE, **totals})
    suite = ET.SubElement(root, "testsuite", {"name": SUITE, **totals, "hostname": xml_text(socket.gethostname())})
    if properties:
        props = ET.SubElement(suite, "properties")
        for name, value in properties.items():
            ET.SubElement(props, "property", {"name": xml_text(name), "value": xml_text(str(value))})
    for outcome in outcomes:
        _testcase(suite, outcome)
    ET.indent(root)
    document: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return document + b"\n"


def write_junit(outcomes: Sequence[Outcome], path: Path, *, started: float, duration: float,
                properties: Mapping[str, str] | None = None) -> Path:
    """Write :func:`junit_xml` to ``path`` (its directory is created) and return ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(junit_xml(outcomes, started=started, duration=duration, properties=properties))
    return path


def _testcase(suite: ET.Element, outcome: Outcome) -> None:
    case = ET.SubElement(suite, "testcase", {
        "classname": xml_text(f"{SUITE}.{outcome.experiment.parent.name}"),
        "name": xml_text(f"{outcome.name}: {outcome.title}"),
        "time": f"{max(outcome.duration, 0.0):.3f}",
        "file": xml_text(str(outcome.experiment)),
    })
    details = _details(outcome)
    if outcome.status == "failed":
        element = ET.SubElement(case, "failure", {"message": xml_text(failure_message(outcome)),
                                                  "type": xml_text(_failure_type(outcome))})
        element.text = xml_text(details)
    elif outcome.status in ("error", "interrupted"):
        element = ET.SubElement(case, "error", {"message": xml_text(outcome.headline),
                                                "type": f"{SUITE}.{outcome.status}"})
        element.text = xml_text(details)
    out = ET.SubElement(case, "system-out")
    out.text = xml_text("\n".join(outcome.lines + _records(outcome)))


def failure_message(outcome: Outcome) -> str:
    """The one line a CI page shows: the first failure (probe, value, tolerance, phase), and
    how many more there are; the headline when there is no failure to name."""
    if not outcome.failures:
        return outcome.headline
    more = len(outcome.failures) - 1
    return outcome.failures[0].message + (f" (+{more} more)" if more else "")


def _failure_type(outcome: Outcome) -> str:
    phase = outcome.failures[0].phase if outcome.failures else "verdict"
    return f"{SUITE}.{phase}"


def _details(outcome: Outcome) -> str:
    lines = [outcome.headline]
    if outcome.failures:
        lines += ["", "failures:"] + [f"  {f.message}" for f in outcome.failures]
    if outcome.lines:
        lines += ["", "verdict:"] + [f"  {line}" for line in outcome.lines]
    return "\n".join(lines + [""] + _records(outcome))


def _records(outcome: Outcome) -> list[str]:
    records = [f"journal: {outcome.journal}"] if outcome.journal else ["journal: none"]
    if outcome.lab_timeline:
        records.append(f"lab timeline: {outcome.lab_timeline}")
    return records
