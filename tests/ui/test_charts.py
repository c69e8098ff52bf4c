"""ui/charts.py: server-rendered SVG charts, named for screen readers, scaled to any width, data on every mark."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from datetime import date

from ui import charts

SVG = "{http://www.w3.org/2000/svg}"


def _parse(markup: str) -> ET.Element:
    return ET.fromstring(str(markup))  # well-formed XML, or this raises


def test_a_bar_chart_is_named_described_and_carries_its_data():
    points = [("2026-11-01", 3), ("2026-11-02", 0), ("2026-11-03", 12.5)]
    svg = _parse(charts.bar_chart(points, chart_id="c1", title="Requests per day", unit="requests"))
    assert svg.get("role") == "img" and svg.get("aria-labelledby") == "c1-t c1-d"
    assert svg.get("width") == "100%" and svg.get("viewBox") == f"0 0 {charts.WIDTH} {charts.HEIGHT}"
    assert svg.find(f"{SVG}title").text == "Requests per day"
    assert "total 15.50 requests" in svg.find(f"{SVG}desc").text and "at 2026-11-03" in svg.find(f"{SVG}desc").text
    bars = svg.findall(f"{SVG}rect")
    assert [(b.get("data-key"), float(b.get("data-value"))) for b in bars] == [(k, float(v)) for k, v in points]
    assert [b.find(f"{SVG}title").text for b in bars][2] == "2026-11-03: 12.50 requests"
    heights = [float(b.get("height")) for b in bars]
    assert heights[1] == 0 and heights[2] > heights[0] > 0
    assert "style" not in str(charts.bar_chart(points, chart_id="c", title="t"))  # the page's CSP allows none


def test_a_limit_is_drawn_only_when_the_data_comes_near_it():
    near = charts.bar_chart([("a", 900)], chart_id="c", title="t", limit=charts.Limit(1000, "Daily quota"))
    assert 'class="chart-limit"' in near and "Daily quota: 1,000" in near
    far = charts.bar_chart([("a", 1)], chart_id="c", title="t", limit=charts.Limit(1000, "Daily quota"))
    assert 'class="chart-limit"' not in far and "Daily quota: 1,000" in _parse(far).find(f"{SVG}desc").text


def test_a_line_chart_and_an_empty_one():
    svg = _parse(charts.line_chart([("a", 0.5), ("b", 0.25)], chart_id="c", title="Cost", fmt=charts.usd))
    assert len(svg.findall(f"{SVG}polyline")) == 1 and len(svg.findall(f"{SVG}circle")) == 2
    assert svg.findall(f"{SVG}circle")[0].find(f"{SVG}title").text.startswith("a: $0.50")
    empty = _parse(charts.bar_chart([], chart_id="e", title="Nothing"))
    assert empty.find(f"{SVG}desc").text == "Nothing: No usage in this range." and not empty.findall(f"{SVG}rect")
    assert [t.text for t in empty.findall(f"{SVG}text[@class='chart-empty']")] == ["No usage in this range"]


def test_a_chart_of_zeros_says_so_in_words_and_one_with_data_does_not():
    zeros = _parse(charts.line_chart(charts.days(date(2026, 1, 1), date(2026, 1, 3), {}), chart_id="z",
                                     title="Cost", fmt=charts.usd))
    assert [t.text for t in zeros.findall(f"{SVG}text[@class='chart-empty']")] == ["No usage in this range"]
    assert zeros.find(f"{SVG}desc").text == "Cost: No usage in this range."
    backlog = _parse(charts.bar_chart([("Sales", 0)], chart_id="b", title="Jobs", empty="No job queued"))
    assert [t.text for t in backlog.findall(f"{SVG}text[@class='chart-empty']")] == ["No job queued"]
    some = _parse(charts.bar_chart([("a", 0), ("b", 2)], chart_id="s", title="Requests"))
    assert not some.findall(f"{SVG}text[@class='chart-empty']") and "total 2" in some.find(f"{SVG}desc").text


def test_keys_are_escaped_and_days_are_filled():
    svg = str(charts.bar_chart([('<b>"x"</b>', 1)], chart_id="c", title="<t>"))
    assert "<b>" not in svg and "&lt;b&gt;" in svg and "&lt;t&gt;" in svg
    filled = charts.days(date(2026, 2, 27), date(2026, 3, 2), {"2026-02-28": 4})
    assert filled == [("2026-02-27", 0), ("2026-02-28", 4), ("2026-03-01", 0), ("2026-03-02", 0)]
    assert re.fullmatch(r"\$0\.0050", charts.usd(0.005)) and charts.usd(12) == "$12.00"
