"""The report end to end: one real `chaos-dynamo run` of the smoke experiment on the session's
lab, the lab sidecar collected from that lab, `chaos-dynamo report`, and the page rendered by
a real headless Chromium (Debian's chromium package): the charts are drawn, the fault window
is shaded where the journal says, the empty answers are at 0, and nothing is fetched."""

from __future__ import annotations

import json
import re
import shutil
import struct
import subprocess
import tempfile
import threading
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from chaos_dynamo.lab.state import LabInfo
from chaos_dynamo.report import svg
from chaos_dynamo.report.collect import write_lab_timeline
from chaos_dynamo.report.model import epoch
from tests.conftest import BIN, ROOT

pytestmark = [pytest.mark.integration, pytest.mark.chaos]

SMOKE = ROOT / "experiments" / "endpoint-empty-smoke.json"
CHROMIUM = "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else shutil.which("chromium")
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (Debian: apt-get install "
                                                              "chromium; .ci/run installs it)")
PRIMARY = "dynamodb.us-east-1.amazonaws.com"


@dataclass(frozen=True)
class Run:
    journal: Path
    sidecar: Path
    report: Path
    data: dict[str, Any]
    lab: dict[str, Any]


@pytest.fixture(scope="module")
def smoke(lab_info: LabInfo, lab_state_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Run:
    """One run of the smoke experiment, its sidecar collected from the lab, and its report."""
    out = tmp_path_factory.mktemp("report")
    journal = out / "smoke.json"
    since = time.time()
    result = subprocess.run([str(BIN / "chaos-dynamo"), "run", str(SMOKE), "--journal", str(journal),
                             "--state-file", str(lab_state_file)], capture_output=True, text=True, timeout=300, cwd=out)
    until = time.time()
    assert result.returncode == 0, result.stdout + result.stderr
    sidecar = write_lab_timeline(lab_info, since=since, until=until, path=journal.with_suffix(".lab.json"))
    report = out / "report.html"
    made = subprocess.run([str(BIN / "chaos-dynamo"), "report", str(journal), "-o", str(report), "--title",
                           "Smoke <run>"], capture_output=True, text=True, timeout=60)
    assert made.returncode == 0, made.stdout + made.stderr
    return Run(journal, sidecar, report, json.loads(journal.read_text()), json.loads(sidecar.read_text()))


def action_span(run: Run, name: str, section: str = "run") -> tuple[float, float]:
    record = next(r for r in run.data[section] if r["activity"]["name"] == name)
    return epoch(record["start"]) or 0.0, epoch(record["end"]) or 0.0


# --- the sidecar from a real lab -------------------------------------------------------------

def test_the_sidecar_shows_the_endpoint_empty_during_the_fault(smoke: Run) -> None:
    lab = smoke.lab
    assert lab["version"] == 1 and lab["missing"] == [] and lab["dropped"] == {}
    emptied, _ = action_span(smoke, "empty-the-endpoint")
    _, restored = action_span(smoke, "operator-restores-the-endpoint", "rollbacks")
    primary = lab["endpoints"][PRIMARY]
    states = [(p["time"], p["addresses"]) for p in primary["addresses"]]
    assert states[0][1] > 0
    empty = [t for t, n in states if n == 0]
    back = [t for t, n in states if n > 0 and empty and t > empty[0]]
    assert empty and emptied <= empty[0] <= restored, states
    assert back and back[0] <= restored + 2, states
    empty_answers = [q for q in primary["queries"] if q["qtype"] == "A" and q["answers"] == 0]
    assert empty_answers and all(q["rcode"] == "NOERROR" and emptied <= q["time"] <= restored for q in empty_answers)


def test_the_sidecar_counts_the_runs_traffic(smoke: Run) -> None:
    rates = smoke.lab["rates"]
    queries = sum(q["queries"] for ep in smoke.lab["endpoints"].values() for q in ep["queries"])
    assert sum(sum(c) for c in rates["dns_queries"].values()) == queries > 0
    assert sum(sum(c) for c in rates["lb_requests"].values()) >= 2  # the put/get probe, before and after
    assert set(rates["lb_operations"]) >= {"PutItem", "GetItem"}
    assert sum(rates["route53_changes"]["change batches"]) >= 2  # emptied, then restored


class _NotALab(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        """Quiet."""


@pytest.fixture
def not_a_lab() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _NotALab)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_a_lab_without_the_routes_still_gets_a_sidecar(lab_info: LabInfo, not_a_lab: str, tmp_path: Path) -> None:
    info = LabInfo(**{**lab_info.__dict__, "api_url": not_a_lab})
    now = time.time()
    path = write_lab_timeline(info, since=now - 5, until=now, path=tmp_path / "x.lab.json")
    sidecar = json.loads(path.read_text())
    assert sidecar["missing"] == ["availability", "control/generations", "dns/log", "lb/log", "route53/changes",
                                  "route53/health/log"]
    assert sidecar["rates"] == {"bucket_seconds": 1.0, "buckets": 5}
    assert all(v == {} for v in sidecar["endpoints"].values())


# --- the page in a real browser ----------------------------------------------------------------

MEASURE = """<!DOCTYPE html><html><body style="margin:0"><pre id="m">pending</pre>
<iframe id="f" src="report.html" style="border:0;width:1280px;height:12000px"></iframe>
<script>
document.getElementById("f").addEventListener("load", function () {
  var doc = this.contentDocument, win = this.contentWindow;
  function box(e) { var r = e.getBoundingClientRect(); return [r.left, r.top, r.width, r.height]; }
  var charts = Array.from(doc.querySelectorAll("svg.chart")).map(function (svg) {
    return {key: svg.dataset.chart, xMax: parseFloat(svg.dataset.xMax), plot: box(svg.querySelector("rect.plot")),
      series: Array.from(svg.querySelectorAll(".series")).map(function (s) {
        return {name: s.dataset.series, style: s.dataset.style, box: box(s),
                color: s.getAttribute("stroke") || s.getAttribute("fill"),
                length: s.getTotalLength ? s.getTotalLength() : 0, dots: s.querySelectorAll("circle").length}; }),
      faults: Array.from(svg.querySelectorAll("g.fault rect")).map(function (r) { return box(r); })};
  });
  document.getElementById("m").textContent = JSON.stringify({charts: charts,
    height: doc.documentElement.scrollHeight, title: doc.title,
    resources: win.performance.getEntriesByType("resource").map(function (e) { return e.name; })});
});
</script></body></html>"""


def chromium(*args: str) -> subprocess.CompletedProcess[bytes]:
    """Headless Chromium as root on this machine, offline: every host name resolves to nothing."""
    assert CHROMIUM is not None
    with tempfile.TemporaryDirectory() as profile:
        return subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                               "--no-first-run", "--disable-background-networking", "--disable-component-update",
                               "--disable-sync", f"--user-data-dir={profile}", "--host-resolver-rules=MAP * ~NOTFOUND",
                               "--hide-scrollbars", "--force-device-scale-factor=1", *args],
                              capture_output=True, timeout=90)


@pytest.fixture(scope="module")
def rendered(smoke: Run) -> tuple[dict[str, Any], Pixels]:
    """The report as Chromium laid it out (measured through an iframe) and as it painted it."""
    (smoke.report.parent / "measure.html").write_text(MEASURE)
    dom = chromium("--allow-file-access-from-files", "--virtual-time-budget=10000", "--dump-dom",
                   (smoke.report.parent / "measure.html").as_uri())
    found = re.search(r'<pre id="m">(.*?)</pre>', dom.stdout.decode())
    assert found and found.group(1) != "pending", dom.stderr.decode()[-2000:]
    layout = json.loads(found.group(1).replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&"))
    bottom = max(c["plot"][1] + c["plot"][3] for c in layout["charts"]) + 10
    shot = smoke.report.parent / "report.png"
    chromium(f"--window-size=1280,{int(bottom)}", f"--screenshot={shot}", smoke.report.as_uri())
    return layout, Pixels.read(shot)


@needs_chromium
def test_the_page_is_laid_out_with_a_chart_per_series_family_and_fetches_nothing(
        smoke: Run, rendered: tuple[dict[str, Any], Pixels]) -> None:
    layout, _ = rendered
    assert layout["title"] == "Smoke <run>"
    assert layout["resources"] == []
    assert re.findall(r"""(?:src|href)\s*=\s*["']?(?:https?:)?//""", smoke.report.read_text(), re.I) == []
    keys = {c["key"] for c in layout["charts"]}
    assert {f"endpoint:{PRIMARY}", "rate:dns_queries", "rate:lb_requests", "rate:route53_changes"} <= keys
    for chart in layout["charts"]:
        left, top, width, height = chart["plot"]
        assert (width, height) == (svg.PLOT[2], svg.PLOT[3]), chart["key"]  # drawn at full size
        for series in chart["series"]:
            assert series["length"] > 0 or series["dots"] > 0, (chart["key"], series)
            x, y, w, h = series["box"]
            assert left - 4 <= x and x + w <= left + width + 4 and top - 4 <= y and y + h <= top + height + 4


@needs_chromium
def test_the_charts_are_painted_in_their_series_colours(rendered: tuple[dict[str, Any], Pixels]) -> None:
    layout, pixels = rendered
    for chart in layout["charts"]:
        for series in chart["series"]:
            if series["color"]:  # a dot series has none: its dots are too small to count
                count = pixels.count(chart["plot"], series["color"])
                assert count >= 100, (chart["key"], series["name"], count)


@needs_chromium
def test_the_fault_window_is_shaded_where_the_journal_puts_it(
        smoke: Run, rendered: tuple[dict[str, Any], Pixels]) -> None:
    layout, pixels = rendered
    t0 = epoch(smoke.data["start"]) or 0.0
    start, end = (t - t0 for t in action_span(smoke, "empty-the-endpoint"))
    chart = next(c for c in layout["charts"] if c["key"] == f"endpoint:{PRIMARY}")
    left, top, width, height = chart["plot"]
    columns = pixels.columns(chart["plot"], svg.FAULT)
    assert columns, "no fault band painted"
    assert min(columns) == pytest.approx(left + start / chart["xMax"] * width, abs=2.5)
    assert max(columns) == pytest.approx(left + end / chart["xMax"] * width, abs=2.5)


@needs_chromium
def test_the_empty_answers_are_painted_at_zero(smoke: Run, rendered: tuple[dict[str, Any], Pixels]) -> None:
    layout, pixels = rendered
    t0 = epoch(smoke.data["start"]) or 0.0
    states = smoke.lab["endpoints"][PRIMARY]["addresses"]
    empty_from = next(p["time"] for p in states if p["addresses"] == 0) - t0
    empty_to = next(p["time"] for p in states if p["addresses"] > 0 and p["time"] - t0 > empty_from) - t0
    chart = next(c for c in layout["charts"] if c["key"] == f"endpoint:{PRIMARY}")
    left, top, width, height = chart["plot"]
    color = chart["series"][0]["color"]
    x = round(left + (empty_from + empty_to) / 2 / chart["xMax"] * width)
    zero = top + height - svg.INSET
    painted = [y for y in range(int(top), int(top + height)) if pixels.at(x, y) == color]
    assert painted and all(abs(y - zero) <= 2 for y in painted), (x, painted, zero)


# --- PNG, decoded with zlib alone --------------------------------------------------------------

class Pixels:
    """An 8-bit RGB(A) non-interlaced PNG as rows of bytes."""

    def __init__(self, width: int, step: int, rows: list[bytes]) -> None:
        self.width, self.step, self.rows = width, step, rows

    @classmethod
    def read(cls, path: Path) -> Pixels:
        data = path.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
        pos, idat, header = 8, b"", b""
        while pos < len(data):
            (size,), kind = struct.unpack(">I", data[pos:pos + 4]), data[pos + 4:pos + 8]
            body = data[pos + 8:pos + 8 + size]
            pos += 12 + size
            if kind == b"IHDR":
                header = body
            elif kind == b"IDAT":
                idat += body
        width, height, depth, color_type, _, _, interlace = struct.unpack(">IIBBBBB", header)
        assert depth == 8 and color_type in (2, 6) and interlace == 0, "an unexpected PNG layout"
        step = 3 if color_type == 2 else 4
        return cls(width, step, _unfilter(zlib.decompress(idat), width * step, height, step))

    def at(self, x: int, y: int) -> str:
        i = x * self.step
        red, green, blue = self.rows[y][i:i + 3]
        return f"#{red:02x}{green:02x}{blue:02x}"

    def _inside(self, box: list[float]) -> Iterator[tuple[int, int]]:
        left, top, width, height = box
        for y in range(int(top) + 1, min(int(top + height), len(self.rows))):
            for x in range(int(left) + 1, int(left + width)):
                yield x, y

    def count(self, box: list[float], color: str) -> int:
        return sum(1 for x, y in self._inside(box) if self.at(x, y) == color)

    def columns(self, box: list[float], color: str) -> list[int]:
        return sorted({x for x, y in self._inside(box) if self.at(x, y) == color})


def _unfilter(raw: bytes, stride: int, height: int, step: int) -> list[bytes]:
    rows: list[bytes] = []
    previous = bytearray(stride)
    pos = 0
    for _ in range(height):
        kind, line = raw[pos], bytearray(raw[pos + 1:pos + 1 + stride])
        pos += 1 + stride
        for i in range(stride):
            a = line[i - step] if i >= step else 0
            b = previous[i]
            if kind == 1:
                line[i] = (line[i] + a) & 255
            elif kind == 2:
                line[i] = (line[i] + b) & 255
            elif kind == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif kind == 4:
                c = previous[i - step] if i >= step else 0
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(bytes(line))
        previous = line
    return rows
