"""Chart data and chart options, built in Python.

Every figure on the dashboards is a :class:`Chart`: a title, the *table* of numbers it
shows (the same rows are the table alternative under the chart and its CSV download, so
the CSV is exactly the chart's data) and, for the charts drawn by Apache ECharts, an option
dictionary that the page hands to ``static/dashboards/dashboards.js`` as JSON. Small
figures (the map, sparklines, the heatmap) are drawn on the server as SVG or HTML with
colour classes, so they need no script at all.

Colours: scores (0–100) use ten bins of the *cividis* scale (designed for colour-vision
deficiencies, readable in greyscale); categories use the Okabe–Ito palette. "No data" is
never a colour of the scale: it is hatched grey and labelled.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from numbers import Number
from typing import Any

from markupsafe import Markup, escape

#: cividis, sampled at ten equal steps (one colour per bin of :data:`BIN_EDGES`).
CIVIDIS = (
    "#00224e",
    "#123570",
    "#3b496c",
    "#575d6d",
    "#707173",
    "#8a8779",
    "#a69d75",
    "#c4b56c",
    "#e4cf5b",
    "#fee838",
)
#: Okabe–Ito: eight colours distinguishable with every common colour-vision deficiency.
OKABE_ITO = (
    "#0072B2",
    "#E69F00",
    "#009E73",
    "#CC79A7",
    "#56B4E9",
    "#D55E00",
    "#F0E442",
    "#000000",
)
NO_DATA = "#d9d9d9"
#: Severity colours (Okabe–Ito), in the order stacked bars show them.
SEVERITY_COLOURS = {
    "breach": "#D55E00",
    "late": "#E69F00",
    "warning": "#CC79A7",
    "info": "#56B4E9",
    "positive": "#009E73",
}
#: Shapes per series, so lines differ by more than their colour.
SYMBOLS = ("circle", "rect", "triangle", "diamond", "roundRect", "pin", "arrow")
LINE_TYPES = ("solid", "dashed", "dotted")


#: Lower bounds of the ten score bins. Scores crowd at the top of the scale (most
#: obligations are kept), so the bins are finer there; the legend states every range.
BIN_EDGES = (0, 50, 60, 70, 75, 80, 85, 90, 94, 97)


def score_bin(score: float | None) -> str:
    """The CSS class suffix of a score: ``b0`` … ``b9``, or ``none`` for no data."""
    if score is None or (isinstance(score, float) and math.isnan(score)):
        return "none"
    found = 0
    for i, edge in enumerate(BIN_EDGES):
        if score >= edge:
            found = i
    return f"b{found}"


def score_text(score: float | None) -> str:
    return "no data" if score is None else f"{score:.0f}"


def change_text(change: float | None) -> str:
    if change is None:
        return "–"
    if round(change) == 0:
        return "±0"
    return f"{change:+.0f}"


LEGEND = [
    (f"b{i}", f"{edge}–{BIN_EDGES[i + 1] if i + 1 < len(BIN_EDGES) else 100}")
    for i, edge in enumerate(BIN_EDGES)
]


# --------------------------------------------------------------------------------------
# The chart: its table (= CSV) and its options
# --------------------------------------------------------------------------------------


@dataclass
class Chart:
    """One figure. ``columns``/``rows`` are its data (table and CSV); ``option`` is the
    ECharts option (None for figures drawn on the server); ``links`` per row (same index)
    point at the records behind the row."""

    key: str
    title: str
    columns: list[str]
    rows: list[list[Any]]
    option: dict[str, Any] | None = None
    description: str = ""
    links: list[str | None] = field(default_factory=list)
    csv_url: str = ""
    empty_text: str = "No data for this selection."
    height: int = 320
    #: ``option`` as JSON for the page (set once when a page's charts are built).
    option_json: str | None = None
    #: The table's rows as written by :func:`table_rows`, per link column.
    rendered_rows: dict[int, Markup] = field(default_factory=dict, repr=False, compare=False)

    @property
    def empty(self) -> bool:
        return not self.rows

    def link(self, index: int) -> str | None:
        return self.links[index] if index < len(self.links) else None

    def csv_text(self) -> str:
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\r\n")
        writer.writerow(self.columns)
        for row in self.rows:
            writer.writerow(["" if v is None else csv_value(v) for v in row])
        return out.getvalue()


def table_rows(chart: Chart, link_col: int = 0) -> Markup:
    """The ``<tr>`` rows of a chart's table: the cell of ``link_col`` is the row's header
    (linked to the row's record), "no data" for None, numbers right-aligned (floats with
    one decimal). Every value is escaped.

    Written once per chart and column (kept on the chart): it depends on the chart's data
    only, never on who is signed in, so a cached page's chart is written once."""
    done = chart.rendered_rows.get(link_col)
    if done is not None:
        return done
    out = []
    links = chart.links
    for i, row in enumerate(chart.rows):
        cells = ["\n      <tr>"]
        for j, v in enumerate(row):
            if j == link_col:
                text = "–" if v is None else escape(v)
                link = links[i] if i < len(links) else None
                if link:
                    text = Markup(f'<a href="{escape(link)}">{text}</a>')
                cells.append(f'\n        <th scope="row">{text}</th>')
            elif v is None:
                cells.append('<td class="muted">no data</td>')
            elif isinstance(v, float):
                cells.append(f'<td class="num">{v:.1f}</td>')
            elif isinstance(v, Number):
                cells.append(f'<td class="num">{escape(v)}</td>')
            else:
                cells.append(f"<td>{escape(v)}</td>")
        cells.append("\n      </tr>")
        out.append("".join(cells))
    done = chart.rendered_rows[link_col] = Markup("".join(out))
    return done


def csv_value(value: Any) -> Any:
    if isinstance(value, float):
        return f"{value:.1f}"
    text = str(value)
    # A cell a spreadsheet would run as a formula is written as text.
    if text[:1] in ("=", "+", "-", "@") and not _is_number(text):
        return "'" + text
    return value


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


# --------------------------------------------------------------------------------------
# ECharts option builders
# --------------------------------------------------------------------------------------


def _base(title: str) -> dict[str, Any]:
    return {
        "aria": {"enabled": True, "decal": {"show": False}},
        "animation": False,
        "textStyle": {"fontFamily": "system-ui, sans-serif"},
        "grid": {"left": 48, "right": 24, "top": 48, "bottom": 40, "containLabel": True},
        "tooltip": {"trigger": "axis", "renderMode": "richText", "confine": True},
        "legend": {"top": 0, "type": "scroll"},
        "title": {"show": False, "text": title},
    }


def line_option(
    title: str,
    x: Sequence[Any],
    series: Iterable[tuple[str, Sequence[float | None], Sequence[str | None] | None]],
    *,
    y_max: float | None = 100,
    y_name: str = "score",
    emphasise: str | None = None,
) -> dict[str, Any]:
    """Lines over years; gaps (None) stay gaps ("no data" is never drawn as 0). Each point
    may carry a URL (opened on click)."""
    option = _base(title)
    option["xAxis"] = {"type": "category", "data": [str(v) for v in x], "boundaryGap": False}
    series = list(series)
    option["yAxis"] = {"type": "value", "min": 0, "name": y_name}
    if y_max is not None:
        option["yAxis"]["max"] = y_max
        # Start the axis near the lowest score (labelled), so close lines stay apart.
        low = min((v for _, values, _ in series for v in values if v is not None), default=0)
        option["yAxis"]["min"] = max(0, int(low // 10) * 10 - 10)
    out = []
    for i, (name, values, urls) in enumerate(series):
        data = []
        for j, value in enumerate(values):
            point: dict[str, Any] = {"value": None if value is None else round(value, 1)}
            if urls and j < len(urls) and urls[j]:
                point["url"] = urls[j]
            data.append(point)
        strong = emphasise is not None and name == emphasise
        out.append(
            {
                "name": name,
                "type": "line",
                "data": data,
                "connectNulls": False,
                "symbol": SYMBOLS[i % len(SYMBOLS)],
                "symbolSize": 9 if strong else 6,
                "lineStyle": {
                    "width": 4 if strong else 2,
                    "type": "solid" if strong else LINE_TYPES[(i // len(OKABE_ITO)) % 3],
                },
                "color": "#000000" if strong else OKABE_ITO[i % (len(OKABE_ITO) - 1)],
                "z": 3 if strong else 2,
            }
        )
    option["series"] = out
    return option


def bar_option(
    title: str,
    x: Sequence[Any],
    series: Iterable[tuple[str, Sequence[float | None], Sequence[str | None] | None]],
    *,
    stack: bool = False,
    horizontal: bool = False,
    colours: Sequence[str] | None = None,
    y_name: str = "",
) -> dict[str, Any]:
    option = _base(title)
    option["tooltip"]["axisPointer"] = {"type": "shadow"}
    category = {"type": "category", "data": [str(v) for v in x]}
    value = {"type": "value", "min": 0, "name": y_name, "minInterval": 1}
    option["xAxis"], option["yAxis"] = (value, category) if horizontal else (category, value)
    if horizontal:
        category["inverse"] = True
    out = []
    palette = list(colours or OKABE_ITO)
    for i, (name, values, urls) in enumerate(series):
        data = []
        for j, v in enumerate(values):
            point: dict[str, Any] = {"value": v}
            if urls and j < len(urls) and urls[j]:
                point["url"] = urls[j]
            data.append(point)
        entry: dict[str, Any] = {
            "name": name,
            "type": "bar",
            "data": data,
            "color": palette[i % len(palette)],
            "barMaxWidth": 36,
        }
        if stack:
            entry["stack"] = "total"
        out.append(entry)
    option["series"] = out
    option["aria"]["decal"] = {"show": True}  # patterns as well as colours
    return option


def timeline_option(
    title: str,
    lanes: Sequence[str],
    points: Sequence[dict[str, Any]],
    *,
    start: str,
    end: str,
) -> dict[str, Any]:
    """Activities as bubbles: x = start date, y = conducting State, area ~ troops."""
    option = _base(title)
    option["tooltip"] = {"trigger": "item", "renderMode": "richText", "confine": True}
    option["legend"] = {"show": False}
    option["grid"]["left"] = 64
    option["xAxis"] = {"type": "time", "min": start, "max": end}
    option["yAxis"] = {"type": "category", "data": list(lanes), "inverse": True}
    biggest = max((p.get("troops") or 0 for p in points), default=0) or 1
    data = []
    for p in points:
        troops = p.get("troops")
        size = 6 if not troops else 6 + 34 * math.sqrt(troops / biggest)
        item = {
            "name": p["label"],
            "value": [p["date"], p["lane"], troops],
            "symbolSize": round(size, 1),
        }
        if p.get("url"):
            item["url"] = p["url"]
        if not troops:
            item["itemStyle"] = {"color": "#ffffff", "borderColor": "#555555"}
        data.append(item)
    option["series"] = [
        {
            "name": "Activities",
            "type": "scatter",
            "data": data,
            "color": OKABE_ITO[0],
            "itemStyle": {"opacity": 0.75, "borderColor": "#ffffff", "borderWidth": 1},
            "encode": {"x": 0, "y": 1, "tooltip": [0, 2]},
        }
    ]
    return option


# --------------------------------------------------------------------------------------
# Server-side SVG
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sparkline:
    """A small trend line drawn as SVG: points (x, y) in its box, gaps for no data."""

    width: int
    height: int
    paths: tuple[str, ...]
    last: tuple[float, float] | None
    label: str


def sparkline(
    values: Sequence[float | None], labels: Sequence[Any], width: int = 72, height: int = 24
) -> Sparkline:
    """A 0–100 sparkline; a missing year breaks the line (never drawn as 0)."""
    n = len(values)
    pad = 3
    paths: list[str] = []
    current: list[str] = []
    last = None
    for i, value in enumerate(values):
        if value is None:
            if current:
                paths.append(current)  # type: ignore[arg-type]
            current = []
            continue
        x = pad + (width - 2 * pad) * (i / (n - 1) if n > 1 else 0.5)
        y = pad + (height - 2 * pad) * (1 - max(0.0, min(100.0, value)) / 100)
        current.append(f"{x:.1f},{y:.1f}")
        last = (round(x, 1), round(y, 1))
    if current:
        paths.append(current)  # type: ignore[arg-type]
    d = tuple(("M" + "L".join(seg)) if len(seg) > 1 else f"M{seg[0]}h0.1" for seg in paths if seg)
    label = ", ".join(f"{lab}: {score_text(v)}" for lab, v in zip(labels, values, strict=True))
    return Sparkline(width, height, d, last, label)
