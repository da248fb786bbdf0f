"""The digest's trend chart: 30 days of sends and replies as a PNG (matplotlib, Agg).

Built with matplotlib's object-oriented API on a `FigureCanvasAgg` of its own: no pyplot,
no global figure manager and no change to `rcParams`, so posters in several threads each
draw their own figure (matplotlib keys its font cache by thread). The PNG carries no
"Software" text chunk and no timestamp, so the same points give the same bytes.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from datetime import datetime
from typing import Final

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.dates import date2num, num2date
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, MaxNLocator

from domain.analytics import DayPoint

WIDTH_PX: Final = 1200
HEIGHT_PX: Final = 600
DPI: Final = 100
MAX_DATE_TICKS: Final = 8

SENT_COLOUR: Final = "#1d3557"  # the app's colour (manifest.yml)
POSITIVE_COLOUR: Final = "#2a9d8f"
NEUTRAL_COLOUR: Final = "#8d99ae"
NEGATIVE_COLOUR: Final = "#e63946"
GRID_COLOUR: Final = "#e6e6e6"
TEXT_COLOUR: Final = "#333333"


def trend_chart_png(points: Sequence[DayPoint], *, title: str) -> bytes:
    """Draw sends (right axis) and replies by sentiment (left axis) per day; return a PNG
    of WIDTH_PX × HEIGHT_PX. Days without points are not invented: the line joins the
    days given (storage gives every day of the window, zeros included)."""
    # Each day at its midnight, as matplotlib's day numbers (floats: 1.0 a day).
    days = [float(date2num(datetime.fromisoformat(p.day))) for p in points]
    figure = Figure(figsize=(WIDTH_PX / DPI, HEIGHT_PX / DPI), dpi=DPI, facecolor="white")
    FigureCanvasAgg(figure)
    figure.subplots_adjust(left=0.065, right=0.925, top=0.82, bottom=0.11)
    replies = figure.add_subplot()
    sends = replies.twinx()
    # Replies are drawn over the sends' shaded area.
    replies.set_zorder(sends.get_zorder() + 1)
    replies.patch.set_visible(False)
    figure.text(
        0.065,
        0.94,
        title,
        fontsize=17,
        fontweight="bold",
        color=TEXT_COLOUR,
        ha="left",
        va="center",
        # The title names a campaign or a rep: a `$` is a dollar, never mathtext (which
        # mangles "$50 off … $100" and fails on a name such as "$x^$").
        parse_math=False,
    )

    handles: list[Line2D] = []
    if points:
        sent = [p.sent for p in points]
        (line,) = sends.plot(
            days,
            sent,
            color=SENT_COLOUR,
            linewidth=2.2,
            marker="s",
            markersize=3.5,
            label="Emails sent",
        )
        sends.fill_between(days, sent, color=SENT_COLOUR, alpha=0.08, linewidth=0)
        handles.append(line)
        for label, colour, values in (
            ("Positive replies", POSITIVE_COLOUR, [p.positive for p in points]),
            ("Neutral replies", NEUTRAL_COLOUR, [p.neutral for p in points]),
            ("Negative replies", NEGATIVE_COLOUR, [p.negative for p in points]),
        ):
            (line,) = replies.plot(
                days, values, color=colour, linewidth=2.4, marker="o", markersize=4, label=label
            )
            handles.append(line)
        first, last = min(days), max(days)
        replies.set_xlim(first - 0.5, last + 0.5)
        # Every few days counted back from the last, so the latest day is always labelled.
        step = max(1, math.ceil(len(days) / MAX_DATE_TICKS))
        replies.set_xticks(sorted(days[::-1][::step]))
        replies.xaxis.set_major_formatter(FuncFormatter(_day_label))
        top_replies = max(max(p.positive, p.neutral, p.negative) for p in points)
        top_sent = max(sent)
    else:
        replies.set_xticks([])
        replies.text(
            0.5,
            0.5,
            "No sends or replies in these days",
            transform=replies.transAxes,
            ha="center",
            va="center",
            fontsize=14,
            color=NEUTRAL_COLOUR,
        )
        top_replies = top_sent = 0
    # Zero days still get a readable scale (0…1), and the peaks some room under the legend.
    replies.set_ylim(0, max(1.0, top_replies * 1.1))
    sends.set_ylim(0, max(1.0, top_sent * 1.1))
    for axis, label, colour in (
        (replies, "Replies", TEXT_COLOUR),
        (sends, "Emails sent", SENT_COLOUR),
    ):
        axis.yaxis.set_major_locator(MaxNLocator(nbins=6, integer=True))
        axis.set_ylabel(label, color=colour, fontsize=12)
        axis.tick_params(labelsize=11, colors=TEXT_COLOUR, length=0)
        for side in ("top", "left", "right"):
            axis.spines[side].set_visible(False)
        axis.spines["bottom"].set_color(GRID_COLOUR)
    replies.grid(axis="y", color=GRID_COLOUR, linewidth=1)
    if handles:
        figure.legend(
            handles=handles,
            loc="center right",
            bbox_to_anchor=(0.925, 0.875),
            ncols=len(handles),
            frameon=False,
            fontsize=11,
        )
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    return buffer.getvalue()


def _day_label(value: float, _position: int | None) -> str:
    """ "Nov 5" (no zero before the day)."""
    day = num2date(value)
    return f"{day:%b} {day.day}"
