"""The usage report's chart: a transparent PNG of the expected size whose axes carry scales
computed from the data (images on the left, cost on the right), one bar per day with that day's
cost point at the bar's centre, dates thinned so they never crowd, and labels in the report's
language only when the installed fonts can write it."""

from __future__ import annotations

import io
import subprocess
import sys
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from bot.accounting import chart
from bot.accounting.chart import (
    WORDLESS_IMAGES,
    Scales,
    axis_labels,
    day_ticks,
    drawable,
    nice_step,
    png,
    scales,
    usage_chart,
    usage_figure,
)
from bot.accounting.usage import DayUsage


def month(count: int, usage: Callable[[int], tuple[int, float]]) -> list[DayUsage]:
    return [DayUsage(f"2026-03-{k + 1:02d}", *usage(k)) for k in range(count)]


@pytest.mark.parametrize("count", [0, 1, 7, 31])
def test_usage_chart_is_a_transparent_png(count: int) -> None:
    days = month(count, lambda k: (k % 5, round(k * 0.13, 2)))
    with Image.open(io.BytesIO(usage_chart(days, "CNY"))) as image:
        assert (image.format, image.size, image.mode) == ("PNG", (720, 300), "RGBA")
        assert image.getpixel((0, 0))[3] == 0  # no background: it sits on either theme
    with Image.open(io.BytesIO(png(usage_figure(days, "USD", width=400, height=200)))) as image:
        assert image.size == (400, 200)


@pytest.mark.parametrize(
    ("span", "intervals", "whole", "step"),
    [
        (0, 4, False, 0.25),  # nothing yet: the scale of a span of 1
        (0, 4, True, 1),
        (3, 4, True, 1),
        (3.15, 3, True, 2),
        (0.7875, 4, False, 0.2),
        (9, 4, False, 2.5),
        (9, 4, True, 5),  # 2.5 is no count of images
        (90, 4, True, 25),
        (0.0006, 3, False, 0.0002),
        (1e-9, 4, False, 0.0001),  # finer than the report's costs: its precision
        (53_795, 4, True, 20_000),
    ],
)
def test_nice_step(span: float, intervals: int, whole: bool, step: float) -> None:
    least = 0 if whole else chart.COST_PRECISION
    assert nice_step(span, intervals, whole=whole, least=least) == pytest.approx(step)


@pytest.mark.parametrize(
    ("max_images", "max_cost", "image_ticks", "cost_ticks", "cost_labels"),
    [
        (
            0,
            0.0,
            [0, 1, 2, 3, 4],
            [0, 0.25, 0.5, 0.75, 1.0],
            ["0.00", "0.25", "0.50", "0.75", "1.00"],
        ),
        (3, 0.75, [0, 1, 2, 3, 4], [0, 0.2, 0.4, 0.6, 0.8], ["0.0", "0.2", "0.4", "0.6", "0.8"]),
        (
            7,
            0.0,
            [0, 2, 4, 6, 8],
            [0, 0.25, 0.5, 0.75, 1.0],
            ["0.00", "0.25", "0.50", "0.75", "1.00"],
        ),
        (
            51_234,
            10_246.8,
            [0, 20_000, 40_000, 60_000],
            [0, 5_000, 10_000, 15_000],
            ["0", "5,000", "10,000", "15,000"],
        ),
    ],
)
def test_scales_from_the_largest_day(
    max_images: int,
    max_cost: float,
    image_ticks: list[int],
    cost_ticks: list[float],
    cost_labels: list[str],
) -> None:
    scale = scales(max_images, max_cost)
    assert scale.image_ticks == image_ticks
    assert scale.cost_ticks == pytest.approx(cost_ticks)
    assert [scale.cost_label(v) for v in scale.cost_ticks] == cost_labels


def test_large_counts_are_written_with_separators() -> None:
    scale = Scales(intervals=3, image_step=2_000_000, cost_step=500_000.0)
    assert [scale.image_label(v) for v in scale.image_ticks] == [
        "0",
        "2,000,000",
        "4,000,000",
        "6,000,000",
    ]


@given(
    max_images=st.integers(min_value=0, max_value=10**9),
    max_cost=st.floats(min_value=0, max_value=1e9, allow_nan=False),
)
def test_scales_cover_the_data_on_shared_gridlines(max_images: int, max_cost: float) -> None:
    scale = scales(max_images, max_cost)
    assert scale.intervals in chart.INTERVALS
    assert len(scale.image_ticks) == len(scale.cost_ticks) == scale.intervals + 1
    assert scale.image_step >= 1 and scale.image_ticks[-1] >= max_images
    assert scale.cost_ticks[-1] >= max_cost
    labels = [scale.cost_label(v) for v in scale.cost_ticks]
    assert len(set(labels)) == len(labels)  # enough decimals to tell the ticks apart


@pytest.mark.parametrize(
    ("count", "ticks"),
    [
        (0, []),
        (1, [0]),
        (7, [0, 1, 2, 3, 4, 5, 6]),
        (8, [0, 1, 2, 3, 4, 5, 6, 7]),
        (9, [0, 2, 4, 6, 8]),
        (30, [0, 4, 8, 12, 16, 20, 24, 28]),
        (31, [0, 4, 8, 12, 16, 20, 24, 28]),
    ],
)
def test_day_ticks_thin_the_dates(count: int, ticks: list[int]) -> None:
    assert day_ticks(count) == ticks


def test_the_axes_carry_scales_and_dates_from_the_data() -> None:
    days = month(31, lambda k: ((k * 7) % 23, round(((k * 7) % 23) * 0.14, 2)))
    figure = usage_figure(days, "CNY")
    bars, cost = figure.axes
    scale = scales(22, 22 * 0.14)
    assert [t.get_text() for t in bars.get_yticklabels()] == [
        scale.image_label(v) for v in scale.image_ticks
    ]
    assert [t.get_text() for t in cost.get_yticklabels()] == [
        scale.cost_label(v) for v in scale.cost_ticks
    ]
    assert bars.get_ylim() == (0, scale.image_ticks[-1])
    assert cost.get_ylim() == pytest.approx((0, scale.cost_ticks[-1]))
    assert [t.get_text() for t in bars.get_xticklabels()] == [
        "03-01",
        "03-05",
        "03-09",
        "03-13",
        "03-17",
        "03-21",
        "03-25",
        "03-29",
    ]
    assert bars.get_xlabel() == "2026-03-01 – 2026-03-31 (UTC)"
    assert (bars.get_ylabel(), cost.get_ylabel()) == ("images", "cost (CNY)")


def test_each_cost_point_sits_on_its_bar() -> None:
    days = month(7, lambda k: (k + 1, round(k * 0.3, 2)))
    bars, cost = usage_figure(days, "USD").axes
    rectangles = bars.patches
    [line] = cost.get_lines()
    assert len(rectangles) == len(days)
    assert [r.get_height() for r in rectangles] == [d.images for d in days]
    centres = [r.get_x() + r.get_width() / 2 for r in rectangles]
    assert list(line.get_xdata()) == pytest.approx(centres)
    assert list(line.get_ydata()) == [d.cost for d in days]
    assert not line.get_clip_on()  # a zero cost is drawn on the axis, not cut in half


def test_one_day_is_a_bar_not_a_wall() -> None:
    bars, _ = usage_figure([DayUsage("2026-03-10", 3, 0.75)], "USD").axes
    [rectangle] = bars.patches
    low, high = bars.get_xlim()
    assert rectangle.get_width() / (high - low) < 0.15
    assert bars.get_xlabel() == "2026-03-10 (UTC)"


def test_labels_follow_the_language_when_the_fonts_can_write_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    latin = frozenset(range(0x20, 0x250))
    monkeypatch.setattr(chart, "_fonts", lambda: (("DejaVu Sans",), latin))
    assert axis_labels("CNY", "en") == ("images", "cost (CNY)")
    assert axis_labels("CNY", "zh") == (WORDLESS_IMAGES, "CNY")
    chinese = latin | {ord(c) for c in "图片费用（）"}
    monkeypatch.setattr(chart, "_fonts", lambda: (("DejaVu Sans", "Noto Sans CJK SC"), chinese))
    assert axis_labels("CNY", "zh") == ("图片", "费用（CNY）")


def test_no_label_is_drawn_without_glyphs() -> None:
    assert drawable("images 0123 (USD) – ▮")
    assert not drawable("\ue000")  # a private-use character no font has
    bars, cost = usage_figure(month(3, lambda k: (k, k * 0.2)), "CNY", "zh").axes
    for label in (bars.get_ylabel(), cost.get_ylabel(), bars.get_xlabel()):
        assert drawable(label)


def test_the_bot_loads_matplotlib_only_to_draw_and_never_pyplot() -> None:
    script = (
        "import sys, cogs.admin, bot.cli\n"
        "assert 'matplotlib' not in sys.modules, 'matplotlib loaded at start'\n"
        "from bot.accounting.chart import usage_chart\n"
        "from bot.accounting.usage import DayUsage\n"
        "usage_chart([DayUsage('2026-03-01', 2, 0.4)], 'CNY')\n"
        "assert 'matplotlib' in sys.modules and 'matplotlib.pyplot' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=120)
