"""One static HTML report from chaos journals: a verdict table and timelines read at a glance.

The folder, by layer:

- ``collect``: after a run, reads the lab's logs (DNS, LB, Route 53, control plane, health
  checks) through its control API into a bounded sidecar ``<journal>.lab.json``.
- ``model``: pure; turns a journal (and its sidecar, when present) into what the report
  shows: the verdict, the probes, the activities, the fault windows and the chart series.
- ``svg``: pure; draws one chart as inline SVG (no script, no external resource).
- ``html``: the page: ``write_report(journals, out)``, written atomically.
"""

from __future__ import annotations

__all__ = ["write_lab_timeline", "write_report"]

from chaos_dynamo.report.collect import write_lab_timeline
from chaos_dynamo.report.html import write_report
