"""The usage report's chart: images per day as bars (left axis), cost per day as a line whose
points sit on their bars (right axis, in the configured currency), as a PNG for Discord.

Drawn with matplotlib's object API on the Agg canvas (a Figure per call, no pyplot state), so
charts can be drawn in worker threads and nothing outlives the call. matplotlib is imported on
first use: it adds about 40 MB and half a second or more to a process, and only
`/wanadmin usage` draws. The background is transparent and the colours are chosen to read on
Discord's dark (#313338) and light (#ffffff) themes alike.
"""

from __future__ import annotations

import functools
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bot.accounting.usage import DayUsage
from bot.i18n import Lang, text

if TYPE_CHECKING:
    from matplotlib.figure import Figure

WIDTH, HEIGHT, DPI = 720, 300, 100
TEXT = "#80848e"  # contrast about 3.4 on #313338 and 3.7 on #ffffff
GRID = "#80848e40"
BARS = "#3b82f6"  # contrast about 3.4 on #313338 and 3.7 on #ffffff
COST = "#f59e0b"  # bright on the dark theme and on the bars; the outline carries it on white
COST_TEXT = "#ea580c"  # a darker orange for the cost axis: about 3.6 on both themes
OUTLINE = "#1e1f22"
# Fonts with Chinese glyphs, tried after matplotlib's bundled DejaVu Sans when installed.
CJK_FAMILIES = (
    "Noto Sans CJK SC",
    "Noto Sans SC",
    "Source Han Sans SC",
    "WenQuanYi Micro Hei",
    "WenQuanYi Zen Hei",
    "Droid Sans Fallback",
)
MOST_DAY_LABELS = 8  # about 75 px apart at 720 px, so dates never crowd
FEWEST_SLOTS = 7  # the x axis is at least a week wide, so one day is a bar, not a wall
HEADROOM = 1.05  # the highest bar or cost point stays below the top edge
COST_PRECISION = 0.0001  # the report rounds costs to 4 decimals: no finer cost ticks
INTERVALS = (3, 4, 5)  # gridlines on the value axes: both axes share them


@dataclass(frozen=True)
class Scales:
    """Both value axes run from 0 in the same number of intervals, so the gridlines drawn for
    the images also mark round costs."""

    intervals: int
    image_step: int
    cost_step: float

    @property
    def image_ticks(self) -> list[int]:
        return [k * self.image_step for k in range(self.intervals + 1)]

    @property
    def cost_decimals(self) -> int:
        """The fewest decimals that write every cost tick exactly (0.25 -> 2, 5 -> 0)."""
        return next(d for d in range(10) if math.isclose(round(self.cost_step, d), self.cost_step))

    @property
    def cost_ticks(self) -> list[float]:
        return [round(k * self.cost_step, self.cost_decimals) for k in range(self.intervals + 1)]

    def image_label(self, value: float) -> str:
        return f"{int(value):,}"

    def cost_label(self, value: float) -> str:
        return f"{value:,.{self.cost_decimals}f}"


def nice_step(span: float, intervals: int, *, whole: bool = False, least: float = 0) -> float:
    """The smallest 1, 2, 2.5 or 5 × 10^k, and at least `least`, that covers `span` in
    `intervals` steps (a whole number when `whole`); an empty span gets the scale of a span of 1."""
    raw = max((span if span > 0 else 1.0) / intervals, least)
    magnitude = 10.0 ** math.floor(math.log10(raw))
    for multiple in (1, 2, 2.5, 5, 10):
        step = multiple * magnitude
        if step >= raw * (1 - 1e-9) and (not whole or (step >= 1 and step.is_integer())):
            return step
    return 10 * magnitude  # not reached: 10 × magnitude always covers raw


def scales(max_images: int, max_cost: float) -> Scales:
    """The axes' scales for the largest day: the number of intervals that wastes the least
    height (the tallest bar and the highest cost point nearest the top)."""

    def waste(scale: Scales) -> float:
        return sum(
            top / peak
            for top, peak in (
                (scale.image_step * scale.intervals, max_images),
                (scale.cost_step * scale.intervals, max_cost),
            )
            if peak > 0
        )

    candidates = [
        Scales(
            n,
            int(nice_step(max_images * HEADROOM, n, whole=True)),
            nice_step(max_cost * HEADROOM, n, least=COST_PRECISION),
        )
        for n in INTERVALS
    ]
    return min(candidates, key=lambda scale: (waste(scale), scale.intervals != 4))


def day_ticks(count: int, most: int = MOST_DAY_LABELS) -> list[int]:
    """Which days get a date under their bar: every one, or every k-th from the first."""
    return list(range(0, count, max(1, math.ceil(count / most))))


def day_label(day: str) -> str:
    return day[5:]  # MM-DD: the years are in the axis label


def period_label(days: Sequence[DayUsage]) -> str:
    if not days:
        return "UTC"
    first, last = days[0].day, days[-1].day
    return f"{first} (UTC)" if first == last else f"{first} – {last} (UTC)"


@functools.cache
def _fonts() -> tuple[tuple[str, ...], frozenset[int]]:
    """The families the labels may use and every character they have a glyph for."""
    from matplotlib import font_manager, ft2font

    installed = {entry.name for entry in font_manager.fontManager.ttflist}
    families = ("DejaVu Sans", *(name for name in CJK_FAMILIES if name in installed))
    glyphs: set[int] = set()
    for family in families:
        path = font_manager.findfont(
            font_manager.FontProperties(family=family), fallback_to_default=False
        )
        glyphs.update(ft2font.FT2Font(path).get_charmap())
    return families, frozenset(glyphs)


def drawable(label: str) -> bool:
    """Whether the installed fonts have every character of `label` (else it shows boxes)."""
    glyphs = _fonts()[1]
    return all(ord(char) in glyphs or char.isspace() for char in label)


WORDLESS_IMAGES = "▮"  # the bars' own shape, for a language the fonts cannot write


def axis_labels(currency: str, lang: Lang) -> tuple[str, str]:
    """(images, cost) in the report's language, or without words when the fonts cannot write
    that language: a bar for the images, the currency code for the cost."""
    images = text("admin.usage_chart_images", lang)
    cost = text("admin.usage_chart_cost", lang, currency=currency)
    if drawable(images + cost):
        return images, cost
    return WORDLESS_IMAGES, currency


def usage_figure(
    days: Sequence[DayUsage],
    currency: str,
    lang: Lang = "en",
    *,
    width: int = WIDTH,
    height: int = HEIGHT,
) -> Figure:
    """The chart as a matplotlib Figure (not yet drawn), with its scales and labels set."""
    from matplotlib.figure import Figure
    from matplotlib.layout_engine import ConstrainedLayoutEngine
    from matplotlib.patheffects import withStroke
    from matplotlib.ticker import FixedLocator

    scale = scales(max((d.images for d in days), default=0), max((d.cost for d in days), default=0))
    images_label, cost_label = axis_labels(currency, lang)
    families = list(_fonts()[0])

    # h_pad in inches: room above the top tick's label.
    layout = ConstrainedLayoutEngine(h_pad=0.08)
    figure = Figure(figsize=(width / DPI, height / DPI), dpi=DPI, layout=layout)
    figure.patch.set_alpha(0)
    bars = figure.add_subplot()
    cost = bars.twinx()
    for axes in (bars, cost):
        axes.patch.set_alpha(0)
        axes.tick_params(colors=TEXT, labelsize=11, length=3)
        for side, spine in axes.spines.items():
            spine.set_visible(side == "bottom")
            spine.set_color(TEXT)

    positions = list(range(len(days)))
    bars.bar(positions, [d.images for d in days], width=0.7, color=BARS, zorder=2)
    margin = max(0, FEWEST_SLOTS - len(days)) / 2
    bars.set_xlim(-0.6 - margin, len(days) - 0.4 + margin)
    shown = day_ticks(len(days))
    bars.set_xticks(shown, [day_label(days[k].day) for k in shown])
    bars.xaxis.set_minor_locator(FixedLocator(positions))
    bars.tick_params(axis="x", which="minor", colors=TEXT, length=2)
    bars.set_xlabel(period_label(days), color=TEXT, fontsize=11)

    bars.set_ylim(0, scale.image_ticks[-1])
    bars.set_yticks(scale.image_ticks, [scale.image_label(v) for v in scale.image_ticks])
    bars.tick_params(axis="y", labelcolor=BARS)
    # Upright, so the wordless bar reads as a bar and not as a minus sign before the ticks.
    upright = images_label == WORDLESS_IMAGES
    bars.set_ylabel(
        images_label, color=BARS, fontsize=12, family=families, rotation=0 if upright else 90
    )
    bars.grid(axis="y", color=GRID, linewidth=0.8)
    bars.set_axisbelow(True)

    cost.set_ylim(0, scale.cost_ticks[-1])
    cost.set_yticks(scale.cost_ticks, [scale.cost_label(v) for v in scale.cost_ticks])
    cost.tick_params(axis="y", labelcolor=COST_TEXT)
    cost.set_ylabel(cost_label, color=COST_TEXT, fontsize=12, family=families)
    # One point per bar, at the bar's centre; not clipped, so a zero cost shows on the axis.
    cost.plot(
        positions,
        [d.cost for d in days],
        color=COST,
        linewidth=2,
        marker="o",
        markersize=5,
        markeredgecolor=OUTLINE,
        markeredgewidth=1,
        clip_on=False,
        zorder=3,
        path_effects=[withStroke(linewidth=3.5, foreground=OUTLINE)],
    )
    return figure


def png(figure: Figure) -> bytes:
    """The figure drawn on its own Agg canvas, as PNG bytes."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    buffer = io.BytesIO()
    FigureCanvasAgg(figure).print_png(buffer, metadata={"Software": None})
    return buffer.getvalue()


def usage_chart(days: Sequence[DayUsage], currency: str, lang: Lang = "en") -> bytes:
    """Bars for images per day, a line for cost per day; a transparent 720 × 300 PNG."""
    return png(usage_figure(days, currency, lang))
