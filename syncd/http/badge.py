"""A workspace's status badge as an SVG image, in the shields.io look. Pure."""

from __future__ import annotations

from xml.sax.saxutils import escape

COLOURS = {
    "Synced": "#2e7d32",
    "OutOfSync": "#b26a00",
    "Unknown": "#616161",
    "Degraded": "#c62828",
    "Suspended": "#5c6bc0",
}
_CHAR_WIDTH = 7  # px per character at 11px Verdana, near enough for a badge
_PAD = 10


def render_badge(label: str, status: str, health: str = "Healthy") -> str:
    """`Synced`; or with the health when it is not Healthy (`OutOfSync, Degraded`), coloured
    by the health first: a failing workspace is red whatever its status."""
    message = status if health == "Healthy" else f"{status}, {health}"
    colour = COLOURS.get(health) or COLOURS.get(status, COLOURS["Unknown"])
    left = len(label) * _CHAR_WIDTH + _PAD
    right = len(message) * _CHAR_WIDTH + _PAD
    width = left + right
    label_x, message_x = left / 2, left + right / 2
    title = escape(f"{label}: {message}", {'"': "&quot;"})
    label, message = escape(label), escape(message)
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="20" role="img" '
        f'aria-label="{title}"><title>{title}</title>'
        f'<rect width="{left}" height="20" fill="#555"/>'
        f'<rect x="{left}" width="{right}" height="20" fill="{colour}"/>'
        '<g fill="#fff" text-anchor="middle" font-family="Verdana,DejaVu Sans,sans-serif" '
        'font-size="11">'
        f'<text x="{label_x}" y="14">{label}</text>'
        f'<text x="{message_x}" y="14">{message}</text></g></svg>'
    )
