"""Report charts drawn on the server as SVG with matplotlib: no JavaScript, no CDN.

The page shows the SVG as an ``<img>`` from a ``data:`` URL: the Content-Security-Policy
(``style-src 'self'``) would drop the inline styles of an SVG embedded in the page, while
an image is its own document. The image's ``alt`` is a text alternative written from the
same numbers (``alt_text``), and the report's table beside it holds every value.

matplotlib is used through its object API (``Figure``), never ``pyplot``: pyplot keeps
global state and is not safe in a threaded server. The output is deterministic (a fixed
hash salt, no date in the metadata), so the same numbers give the same bytes.
"""

from __future__ import annotations

import base64
import io
import math
import os
import sys
from pathlib import Path

from flask import current_app

from clinic.reports.core import Chart, ChartKind

# A palette that stays distinguishable for the common colour-vision deficiencies
# (Okabe & Ito), in the order series are drawn.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
MAX_ALT_ITEMS = 24


def _rc() -> dict:
    return {
        "svg.hashsalt": "clinic-report",
        "svg.fonttype": "none",  # text stays text: smaller, and readable by tools
        # Labels are the clinic's names ("Sliding fee $5-$10"): text, never mathtext (a
        # "$\frac$" in a program's name would otherwise fail to draw).
        "text.parse_math": False,
        "font.family": "sans-serif",
        "font.size": 9,
        "axes.spines.top": False,
        "axes.spines.right": False,
    }


def _use_cache_dir() -> None:
    """Before matplotlib's first import in the process: its font cache goes to
    ``CACHE_DIR``/matplotlib (``MPLCONFIGDIR``), so every app server keeps it in the one
    configured directory instead of ``HOME``, or a new temporary directory per worker where
    ``HOME`` is not writable. A ``MPLCONFIGDIR`` set by the operator is kept."""
    if "matplotlib" in sys.modules or "MPLCONFIGDIR" in os.environ:
        return
    path = Path(current_app.config["CACHE_DIR"]) / "matplotlib"
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.environ["MPLCONFIGDIR"] = str(path)


def render_svg(chart: Chart) -> str:
    """The chart as SVG text (UTF-8 markup, no XML declaration)."""
    _use_cache_dir()
    import matplotlib
    from matplotlib.figure import Figure

    with matplotlib.rc_context(_rc()):
        width = min(max(4.8, 0.42 * len(chart.categories) * max(1, len(chart.series)) ** 0.5), 11)
        if len(chart.series) > 1:
            width += 1.6  # room for the legend
        figure = Figure(figsize=(width, 3.4), dpi=96, layout="constrained")
        axes = figure.add_subplot()
        positions = list(range(len(chart.categories)))
        if chart.kind is ChartKind.LINE:
            for index, (name, values) in enumerate(chart.series):
                xs = [p for p, v in zip(positions, values, strict=True) if v is not None]
                ys = [v for v in values if v is not None]
                axes.plot(
                    xs,
                    ys,
                    label=name,
                    color=PALETTE[index % len(PALETTE)],
                    marker=MARKERS[index % len(MARKERS)],
                    linewidth=1.6,
                    markersize=4,
                )
        elif chart.kind is ChartKind.STACKED_BAR:
            bottoms = [0.0] * len(positions)
            for index, (name, values) in enumerate(chart.series):
                heights = [float(v or 0) for v in values]
                axes.bar(
                    positions,
                    heights,
                    bottom=bottoms,
                    label=name,
                    color=PALETTE[index % len(PALETTE)],
                    width=0.7,
                )
                bottoms = [b + h for b, h in zip(bottoms, heights, strict=True)]
        else:
            count = max(1, len(chart.series))
            width_each = 0.8 / count
            for index, (name, values) in enumerate(chart.series):
                offset = (index - (count - 1) / 2) * width_each
                axes.bar(
                    [p + offset for p in positions],
                    [float(v or 0) for v in values],
                    width=width_each,
                    label=name,
                    color=PALETTE[index % len(PALETTE)],
                )
        axes.set_xticks(positions, chart.categories)
        if len(chart.categories) > 8 or max((len(c) for c in chart.categories), default=0) > 12:
            for label in axes.get_xticklabels():
                label.set_rotation(35)
                label.set_horizontalalignment("right")
        if chart.percent:
            axes.set_ylim(0, 100)
        else:
            axes.set_ylim(bottom=0)
            axes.yaxis.get_major_locator().set_params(integer=True)
        axes.set_xlabel(chart.x_label)
        axes.set_ylabel(chart.y_label)
        axes.grid(axis="y", color="#dddddd", linewidth=0.6)
        axes.set_axisbelow(True)
        if len(chart.series) > 1:
            # Beside the plot, never over the bars or the lines.
            axes.legend(frameon=False, fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
        buffer = io.StringIO()
        figure.savefig(buffer, format="svg", metadata={"Date": None})
    text = buffer.getvalue()
    return text[text.index("<svg") :]


def data_url(svg: str) -> str:
    return "data:image/svg+xml;base64," + base64.b64encode(svg.encode()).decode("ascii")


def _number(value: float | int | None, percent: bool) -> str:
    if value is None:
        return "no value"
    if percent:
        return f"{float(value):.1f} %"
    if isinstance(value, float) and not math.isclose(value, round(value)):
        return f"{value:,.1f}"
    return f"{round(value):,}"


def alt_text(chart: Chart) -> str:
    """A text alternative: the chart's kind and title, then each series' values by
    category (the first ``MAX_ALT_ITEMS``; the table beside the chart has them all)."""
    kind = {
        ChartKind.BAR: "Bar chart",
        ChartKind.STACKED_BAR: "Stacked bar chart",
        ChartKind.LINE: "Line chart",
    }[chart.kind]
    if not chart.categories or not chart.series:
        return f"{kind}: {chart.title}. No data."
    parts = []
    for name, values in chart.series:
        pairs = [
            f"{category} {_number(value, chart.percent)}"
            for category, value in list(zip(chart.categories, values, strict=True))[:MAX_ALT_ITEMS]
        ]
        more = len(chart.categories) - MAX_ALT_ITEMS
        tail = f"; and {more} more in the table" if more > 0 else ""
        prefix = f"{name}: " if len(chart.series) > 1 else ""
        parts.append(prefix + ", ".join(pairs) + tail)
    return f"{kind}: {chart.title}. " + ". ".join(parts) + "."
