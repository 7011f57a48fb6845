"""Charts as SVG: values land on the right coordinates, fault windows are shaded at the right
x, text is escaped, and an empty series draws nothing."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import pytest

from chaos_dynamo.report import svg
from chaos_dynamo.report.charts import Chart, Marker, Series
from chaos_dynamo.report.model import Window

NS = {"s": "http://www.w3.org/2000/svg"}
X0, Y0, W, H = svg.PLOT
BOTTOM, TOP = Y0 + H - svg.INSET, Y0 + svg.INSET


def x_of(seconds: float, x_max: float) -> float:
    return X0 + seconds / x_max * W


def y_of(value: float, top: float) -> float:
    return BOTTOM - value / top * (BOTTOM - TOP)


def render(chart: Chart, windows: list[Window] | None = None, x_max: float = 10.0) -> ET.Element:
    return ET.fromstring(svg.render_chart(chart, windows or [], x_max, svg.Palette(), "t"))


def step_chart(points: tuple[tuple[float, float], ...], **extra: object) -> Chart:
    return Chart("k", "Title", "addresses", (Series("addresses", "addresses", points),), "src", **extra)  # type: ignore[arg-type]


def test_a_step_series_goes_through_each_value_at_its_time() -> None:
    element = render(step_chart(((0.0, 6.0), (2.5, 0.0), (5.0, 6.0), (10.0, 6.0)), y_max=6.0))
    path = element.find(".//s:path[@class='series']", NS)
    assert path is not None and path.get("shape-rendering") == "crispEdges"
    moves = re.findall(r"([MHV])([\d.]+)(?: ([\d.]+))?", path.get("d", ""))
    expected = [("M", x_of(0, 10), y_of(6, 6)), ("H", x_of(2.5, 10), None), ("V", y_of(0, 6), None),
                ("H", x_of(5, 10), None), ("V", y_of(6, 6), None), ("H", x_of(10, 10), None)]
    assert len(moves) == len(expected)
    for (op, a, b), (want_op, want_a, want_b) in zip(moves, expected, strict=True):
        assert op == want_op and float(a) == pytest.approx(want_a, abs=0.5)
        if want_b is not None:
            assert float(b) == pytest.approx(want_b, abs=0.5)


def test_fault_windows_are_shaded_from_start_to_end_and_at_least_two_pixels_wide() -> None:
    windows = [Window(1, "empty-the-endpoint", 2.0, 12.0, "succeeded"), Window(2, "set-capacity", 16.0, 16.0, "failed")]
    element = render(step_chart(((0.0, 1.0), (10.0, 1.0))), windows, x_max=20.0)
    rects = element.findall(".//s:g[@class='fault']/s:rect", NS)
    assert float(rects[0].get("x", "")) == pytest.approx(x_of(2, 20), abs=0.06)
    assert float(rects[0].get("width", "")) == pytest.approx(x_of(12, 20) - x_of(2, 20), abs=0.1)
    assert float(rects[0].get("height", "")) == H
    assert float(rects[1].get("width", "")) == 2.0
    labels = [t.text for t in element.findall(".//s:g[@class='fault']/s:text", NS)]
    assert labels == ["1 empty-the-endpoint", "2"]  # a name too long for its band is only numbered
    tooltip = element.find(".//s:g[@class='fault']/s:title", NS)
    assert tooltip is not None and tooltip.text == "fault 1: empty-the-endpoint, +2.00 s to +12.00 s (succeeded)"


def test_labels_of_windows_starting_together_do_not_overlap() -> None:
    windows = [Window(1, "a", 1.0, 1.0, "succeeded"), Window(2, "b", 1.0, 5.0, "succeeded")]
    texts = render(step_chart(((0.0, 1.0),)), windows).findall(".//s:g[@class='fault']/s:text", NS)
    assert float(texts[1].get("x", "")) > float(texts[0].get("x", "")) + 6


def test_dots_and_lines_and_markers_map_their_values() -> None:
    chart = Chart("k", "T", "fraction", (
        Series("live", "live", ((0.0, 1.0), (5.0, 0.5)), style="line"),
        Series("answers", "answers", ((2.0, 0.0),), style="dots", notes=("3 queries: 0 answers",))),
        "src", y_max=1.0, markers=(Marker(4.0, "flap", bad=True),), thresholds=((0.75, "target"),))
    element = render(chart)
    line = element.find(".//s:polyline", NS)
    assert line is not None
    (ax, ay), (bx, by) = [tuple(map(float, p.split(","))) for p in line.get("points", "").split()]
    assert (ax, ay) == pytest.approx((x_of(0, 10), y_of(1, 1)), abs=0.06)
    assert (bx, by) == pytest.approx((x_of(5, 10), y_of(0.5, 1)), abs=0.06)
    dot = element.find(".//s:circle", NS)
    assert dot is not None and float(dot.get("cx", "")) == pytest.approx(x_of(2, 10), abs=0.06)
    assert float(dot.get("cy", "")) == pytest.approx(y_of(0, 1), abs=0.06)
    assert dot.find("s:title", NS) is not None
    marker = element.find(".//s:g[@class='marker']/s:line", NS)
    assert marker is not None and float(marker.get("x1", "")) == pytest.approx(x_of(4, 10), abs=0.06)
    assert marker.get("stroke") == svg.BAD
    threshold = element.find(".//s:g[@class='threshold']/s:line", NS)
    assert threshold is not None and float(threshold.get("y1", "")) == pytest.approx(y_of(0.75, 1), abs=0.06)


def test_the_y_axis_rises_above_the_data_to_a_round_number() -> None:
    assert svg.y_top(step_chart(((0.0, 7.0),), integer=True)) == 8.0
    assert svg.y_top(step_chart(((0.0, 0.0),))) == 1.0
    assert svg.nice_ticks(0, 47.6, 6) == [0, 10, 20, 30, 40]
    assert svg.nice_ticks(0, 3, 4, integer=True) == [0, 1, 2, 3]


def test_text_is_escaped_and_the_svg_stays_well_formed() -> None:
    hostile = '<script>alert("x")</script> & </svg>'
    chart = Chart("k", hostile, hostile, (Series(hostile, "k", ((0.0, 1.0), (1.0, 1.0))),), hostile)
    text = svg.render_chart(chart, [Window(1, hostile, 0.0, 1.0, "succeeded")], 10.0, svg.Palette(), "t")
    assert "<script" not in text
    element = ET.fromstring(text)
    assert element.find("s:title", NS) is not None and element.find("s:title", NS).text == hostile  # type: ignore[union-attr]


def test_an_empty_series_draws_nothing_and_a_colour_follows_its_key() -> None:
    element = render(Chart("k", "T", "y", (Series("none", "none", ()),), "src"))
    assert element.findall(".//s:path[@class='series']", NS) == []
    palette = svg.Palette()
    assert palette("leases") == palette("leases") != palette("checkout")
    assert svg.BAD not in svg.SERIES_COLORS and svg.FAULT not in svg.SERIES_COLORS


def test_stacked_rates_sit_on_top_of_each_other() -> None:
    chart = Chart("k", "T", "requests/s", (
        Series("a", "a", ((0.0, 2.0), (5.0, 4.0), (10.0, 4.0)), style="stack"),
        Series("b", "b", ((0.0, 2.0), (5.0, 0.0), (10.0, 0.0)), style="stack")), "src")
    assert svg.y_top(chart) == 4.0  # the stack's height, not a series'
    element = render(chart)
    tops = [p.get("d", "") for p in reversed(element.findall(".//s:path[@class='series']", NS))]
    numbers = [[float(n) for n in re.findall(r"[\d.]+", d)] for d in tops]
    assert numbers[0] == pytest.approx([x_of(0, 10), y_of(2, 4), x_of(5, 10), y_of(4, 4), x_of(10, 10)], abs=0.5)
    assert numbers[1] == pytest.approx([x_of(0, 10), y_of(4, 4), x_of(5, 10), x_of(10, 10)], abs=0.5)  # 2+2, then 4+0
    areas = element.findall(".//s:path[@class='area']", NS)
    assert len(areas) == 2 and areas[1].get("d", "").endswith("Z")
