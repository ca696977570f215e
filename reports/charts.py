"""Server-rendered SVG charts with text alternatives (no JavaScript, no build step)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from django.utils.html import escape, format_html
from django.utils.safestring import SafeString, mark_safe

PALETTE = ["#2563eb", "#0d9488", "#ca8a04", "#dc2626", "#7c3aed", "#0891b2", "#4b5563"]


def _fmt(value: float) -> str:
    if abs(value) >= 1e9:
        return f"{value / 1e9:.1f}G"
    if abs(value) >= 1e6:
        return f"{value / 1e6:.1f}M"
    if abs(value) >= 1e3:
        return f"{value / 1e3:.1f}k"
    return f"{value:.0f}" if float(value).is_integer() else f"{value:.1f}"


def bar_chart(
    title: str, bars: Sequence[tuple[str, float]], *, colours: dict[str, str] | None = None
) -> SafeString:
    """Horizontal bars, one per (label, value); the SVG carries a title and description,
    and a table follows for screen readers and for copying."""
    width, row, label_w = 560, 24, 170
    height = max(1, len(bars)) * row + 10
    top = max([v for _, v in bars] + [1])
    parts = []
    for i, (label, value) in enumerate(bars):
        y = 5 + i * row
        w = (width - label_w - 70) * (value / top)
        colour = (colours or {}).get(label, PALETTE[i % len(PALETTE)])
        parts.append(
            format_html(
                '<text x="{}" y="{}" text-anchor="end" font-size="12">{}</text>'
                '<rect x="{}" y="{}" width="{}" height="{}" fill="{}"></rect>'
                '<text x="{}" y="{}" font-size="12">{}</text>',
                label_w - 6,
                y + 15,
                str(label)[:28],
                label_w,
                y + 3,
                f"{w:.1f}",
                row - 8,
                colour,
                label_w + w + 4,
                y + 15,
                _fmt(value),
            )  # fmt: skip
        )
    desc = "; ".join(f"{label}: {_fmt(value)}" for label, value in bars) or "no data"
    svg = format_html(
        '<svg role="img" aria-labelledby="{id}t {id}d" viewBox="0 0 {w} {h}" width="100%" '
        'style="max-width:{w}px"><title id="{id}t">{t}</title><desc id="{id}d">{d}</desc>'
        "{body}</svg>",
        id=_slug(title), w=width, h=height, t=title, d=desc, body=mark_safe("".join(parts)),
    )  # fmt: skip
    caption = format_html('<h3 class="chart-title">{}</h3>', title)
    return caption + svg + _table(title, ("", "value"), [(label, _fmt(v)) for label, v in bars])


def line_chart(
    title: str, points: Sequence[tuple[datetime, float]], *, unit: str = ""
) -> SafeString:
    """One series over time, with its values as a table for those who cannot see it."""
    width, height, pad = 560, 180, 40
    if len(points) < 2:
        return format_html('<p class="muted">{}: not enough data yet.</p>', title)
    t0, t1 = points[0][0].timestamp(), points[-1][0].timestamp()
    span = max(t1 - t0, 1e-6)
    top = max(max(v for _, v in points), 1)
    coords = " ".join(
        f"{pad + (width - 2 * pad) * (t.timestamp() - t0) / span:.1f},"
        f"{height - pad - (height - 2 * pad) * v / top:.1f}"
        for t, v in points
    )
    desc = (
        f"{title}: from {_fmt(points[0][1])} to {_fmt(points[-1][1])}{unit}, peak {_fmt(top)}{unit}"
    )
    svg = format_html(
        '<svg role="img" aria-labelledby="{id}t {id}d" viewBox="0 0 {w} {h}" width="100%" '
        'style="max-width:{w}px"><title id="{id}t">{t}</title><desc id="{id}d">{d}</desc>'
        '<line x1="{p}" y1="{b}" x2="{r}" y2="{b}" stroke="#9ca3af"></line>'
        '<line x1="{p}" y1="{p}" x2="{p}" y2="{b}" stroke="#9ca3af"></line>'
        '<text x="4" y="{p}" font-size="11">{top}{u}</text>'
        '<polyline fill="none" stroke="#2563eb" stroke-width="2" points="{c}"></polyline></svg>',
        id=_slug(title), w=width, h=height, t=title, d=desc, p=pad, b=height - pad,
        r=width - pad, top=_fmt(top), u=unit, c=coords,
    )  # fmt: skip
    step = max(1, len(points) // 12)
    rows = [(t.strftime("%H:%M:%S"), f"{_fmt(v)}{unit}") for t, v in points[::step]]
    return (
        format_html('<h3 class="chart-title">{}</h3>', title)
        + svg
        + _table(title, ("time", "value"), rows)
    )


def _table(title: str, header: tuple[str, str], rows: Sequence[tuple[str, str]]) -> SafeString:
    body = "".join(
        format_html("<tr><td>{}</td><td>{}</td></tr>", label, value) for label, value in rows
    )
    return format_html(
        '<details class="chart-data"><summary>{} as a table</summary><table>'
        "<tr><th>{}</th><th>{}</th></tr>{}</table></details>",
        title, header[0] or "item", header[1], mark_safe(body),
    )  # fmt: skip


def _slug(text: str) -> str:
    return "c" + "".join(ch for ch in escape(text).lower() if ch.isalnum())[:24]
