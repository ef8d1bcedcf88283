"""Small SVG charts rendered on the server for the admin dashboard.

No JavaScript and nothing fetched from elsewhere: the page works offline and prints.
Each chart scales with its container (``viewBox``) and every bar has a ``<title>``,
which browsers show on hover and screen readers read.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

Number = int | float | Decimal

FONT = 'font-family="-apple-system, Segoe UI, Roboto, sans-serif" font-size="11"'
AXIS_COLOR, GRID_COLOR, TEXT_COLOR = "#888", "#e5e5e5", "#555"


@dataclass(frozen=True)
class Bar:
    label: str  # under the bar (or beside it, for horizontal charts)
    value: Number
    title: str  # the hover text
    stacked: Number = 0  # a second value drawn on top of the first (e.g. cancelled)


def _nice_max(value: Number) -> float:
    """A round axis maximum at or above ``value`` (1, 2, 2.5 or 5 times a power of 10)."""
    value = float(value)
    if value <= 0:
        return 1.0
    magnitude = 10 ** (len(str(int(value))) - 1)
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * magnitude:
            return step * magnitude
    return 10.0 * magnitude


def column_chart(
    bars: Sequence[Bar],
    *,
    color: str,
    stacked_color: str = "#c0392b",
    label_every: int = 1,
    axis_format: Callable[[float], str] = lambda v: f"{v:g}",
    counts: bool = False,
    width: int = 720,
    height: int = 220,
    aria_label: str,
) -> SafeString:
    """Vertical bars, one per item (e.g. per day), with a light grid and a y axis
    (``counts``: the axis shows whole numbers)."""
    left, right, top, bottom = 56, 8, 10, 26
    plot_w, plot_h = width - left - right, height - top - bottom
    top_value = _nice_max(max((float(b.value) + float(b.stacked) for b in bars), default=0))
    if counts:  # whole numbers on every grid line
        top_value = max(4.0, 4 * -(-top_value // 4))
    slot = plot_w / max(len(bars), 1)
    bar_w = max(slot * 0.72, 1)
    parts = [
        f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="{escape(aria_label)}" xmlns="http://www.w3.org/2000/svg" {FONT}>'
    ]
    for i in range(5):  # grid lines and their values
        fraction = i / 4
        y = top + plot_h - fraction * plot_h
        parts.append(f'<line x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}" '
                     f'stroke="{GRID_COLOR if i else AXIS_COLOR}"/>')
        parts.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" '
                     f'fill="{TEXT_COLOR}">{escape(axis_format(top_value * fraction))}</text>')
    for index, bar in enumerate(bars):
        x = left + index * slot + (slot - bar_w) / 2
        base = top + plot_h
        for value, fill in ((bar.value, color), (bar.stacked, stacked_color)):
            h = float(value) / top_value * plot_h
            if h > 0:
                base -= h
                parts.append(f'<rect class="bar" x="{x:.1f}" y="{base:.1f}" width="{bar_w:.1f}" '
                             f'height="{h:.1f}" fill="{fill}" rx="1.5">'
                             f'<title>{escape(bar.title)}</title></rect>')
        if index % label_every == 0:
            parts.append(f'<text x="{x + bar_w / 2:.1f}" y="{height - 8}" text-anchor="middle" '
                         f'fill="{TEXT_COLOR}">{escape(bar.label)}</text>')
    parts.append("</svg>")
    return mark_safe("".join(parts))  # noqa: S308 - every text above is escaped


def bar_list_chart(
    bars: Sequence[Bar], *, color: str, width: int = 460, row: int = 26, label_width: int = 150,
    aria_label: str,
) -> SafeString:
    """Horizontal bars, one per row, labelled on the left with the value on the right."""
    value_width = 80
    plot_w = width - label_width - value_width
    top_value = max((float(b.value) for b in bars), default=0) or 1.0
    height = max(len(bars), 1) * row + 4
    parts = [
        f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="{escape(aria_label)}" xmlns="http://www.w3.org/2000/svg" {FONT}>'
    ]
    for index, bar in enumerate(bars):
        y = index * row + 2
        w = float(bar.value) / top_value * plot_w
        label = bar.label if len(bar.label) <= 24 else bar.label[:23] + "…"
        parts.append(f'<text x="{label_width - 8}" y="{y + row / 2 + 4:.1f}" text-anchor="end" '
                     f'fill="{TEXT_COLOR}">{escape(label)}</text>')
        parts.append(f'<rect class="bar" x="{label_width}" y="{y + 4}" width="{max(w, 1):.1f}" '
                     f'height="{row - 8}" fill="{color}" rx="2">'
                     f'<title>{escape(bar.title)}</title></rect>')
        parts.append(f'<text x="{label_width + max(w, 1) + 6:.1f}" y="{y + row / 2 + 4:.1f}" '
                     f'fill="{TEXT_COLOR}">{escape(bar.title.rsplit(": ", 1)[-1])}</text>')
    if not bars:
        parts.append(f'<text x="{width / 2}" y="16" text-anchor="middle" '
                     f'fill="{TEXT_COLOR}">Nothing yet.</text>')
    parts.append("</svg>")
    return mark_safe("".join(parts))  # noqa: S308 - every text above is escaped
