"""The digest's trend chart (integrations/charts.py): a 1200×600 PNG of sane size, the same
bytes for the same points (also when drawn in several threads at once), sends and each
sentiment in their own colour, and all-zero, short and empty trends drawn too."""

from __future__ import annotations

import io
import struct
import zlib
from concurrent.futures import ThreadPoolExecutor
from datetime import date, timedelta

import pytest
from PIL import Image

from domain.analytics import DayPoint
from integrations.charts import (
    HEIGHT_PX,
    NEGATIVE_COLOUR,
    NEUTRAL_COLOUR,
    POSITIVE_COLOUR,
    SENT_COLOUR,
    WIDTH_PX,
    trend_chart_png,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
FIRST_DAY = date(2026, 11, 2)


def days(count: int, *, zero: bool = False) -> list[DayPoint]:
    """`count` days from Nov 2, with sends and replies that vary (or all zero)."""
    return [
        DayPoint(
            day=(FIRST_DAY + timedelta(days=n)).isoformat(),
            sent=0 if zero else 20 + (n * 7) % 23,
            positive=0 if zero else n % 4,
            neutral=0 if zero else (n + 1) % 3,
            negative=0 if zero else (n * 5) % 3,
        )
        for n in range(count)
    ]


def chunks(png: bytes) -> list[tuple[bytes, bytes]]:
    """The PNG's chunks (type, data), each checked against its CRC."""
    assert png[:8] == PNG_MAGIC
    found, at = [], 8
    while at < len(png):
        (length,) = struct.unpack(">I", png[at : at + 4])
        kind, data = png[at + 4 : at + 8], png[at + 8 : at + 8 + length]
        (crc,) = struct.unpack(">I", png[at + 8 + length : at + 12 + length])
        assert zlib.crc32(kind + data) == crc
        found.append((kind, data))
        at += 12 + length
    return found


def size_of(png: bytes) -> tuple[int, int]:
    """Width and height from the IHDR chunk."""
    kind, data = chunks(png)[0]
    assert kind == b"IHDR"
    width, height = struct.unpack(">II", data[:8])
    return width, height


def colours(png: bytes) -> set[tuple[int, int, int]]:
    with Image.open(io.BytesIO(png)) as image:
        found = image.convert("RGB").getcolors(maxcolors=WIDTH_PX * HEIGHT_PX) or []
    return {rgb for _, rgb in found}


def rgb(hex_colour: str) -> tuple[int, int, int]:
    value = int(hex_colour.lstrip("#"), 16)
    return value >> 16, (value >> 8) & 0xFF, value & 0xFF


def test_thirty_days_make_a_1200_by_600_png_of_a_sane_size() -> None:
    png = trend_chart_png(days(30), title="Sends and replies, Nov 2 – Dec 1")

    assert png.startswith(PNG_MAGIC)
    assert size_of(png) == (WIDTH_PX, HEIGHT_PX) == (1200, 600)
    assert 5_000 <= len(png) <= 300_000
    with Image.open(io.BytesIO(png)) as image:
        image.verify()
        assert (image.format, image.size) == ("PNG", (1200, 600))
    assert chunks(png)[-1][0] == b"IEND"


def test_the_same_points_give_the_same_bytes_and_no_software_or_time_stamp() -> None:
    first = trend_chart_png(days(30), title="Trend")
    second = trend_chart_png(days(30), title="Trend")

    assert first == second
    kinds = [kind for kind, _ in chunks(first)]
    assert b"tIME" not in kinds
    assert not any(kind == b"tEXt" and data.startswith(b"Software") for kind, data in chunks(first))
    assert trend_chart_png(days(29), title="Trend") != first


def test_sends_and_each_sentiment_are_drawn_in_their_own_colour() -> None:
    drawn = colours(trend_chart_png(days(30), title="Trend"))

    for colour in (SENT_COLOUR, POSITIVE_COLOUR, NEUTRAL_COLOUR, NEGATIVE_COLOUR):
        assert rgb(colour) in drawn, colour
    assert len({SENT_COLOUR, POSITIVE_COLOUR, NEUTRAL_COLOUR, NEGATIVE_COLOUR}) == 4


@pytest.mark.parametrize(
    "points",
    [days(30, zero=True), days(1), days(7), []],
    ids=["all-zero", "one-day", "a-week", "no-days"],
)
def test_zero_short_and_empty_trends_are_drawn_too(points: list[DayPoint]) -> None:
    png = trend_chart_png(points, title="Sends and replies")

    assert size_of(png) == (1200, 600)
    assert 5_000 <= len(png) <= 300_000


def test_charts_drawn_in_several_threads_at_once_equal_the_one_drawn_alone() -> None:
    alone = {n: trend_chart_png(days(n), title=f"Trend {n}") for n in (10, 30)}

    with ThreadPoolExecutor(max_workers=4) as pool:
        drawn = list(
            pool.map(lambda n: (n, trend_chart_png(days(n), title=f"Trend {n}")), [10, 30] * 4)
        )

    assert all(png == alone[n] for n, png in drawn)


@pytest.mark.parametrize(
    "title",
    ["Engagement digest · Save $50 on fees, $100 on rush", "Engagement digest · 50% off $x^$"],
)
def test_a_title_with_dollar_signs_is_drawn_as_text(title: str) -> None:
    # Campaign names carry prices: mathtext would fail on the second ("$x^$").
    png = trend_chart_png(days(30), title=title)

    assert size_of(png) == (1200, 600)
