"""The one heatmap writer: an SVG (labels, values, tooltips, a colour legend) and a PNG
(colours only), without plotting libraries. `mdrbench conflict` draws its cosine matrices
with it (diverging scale, -1..1) and the leaderboard its entries x domains AUCs
(sequential scale over the shown range). Pure Python: no torch, no NumPy."""

from __future__ import annotations

import html
import math
import struct
import zlib
from collections.abc import Callable, Sequence

RGB = tuple[int, int, int]
Matrix = Sequence[Sequence[float | None]]

MISSING: RGB = (190, 190, 190)
_NEG: RGB = (33, 102, 172)  # diverging -1: blue
_MID: RGB = (247, 247, 247)  # 0: white
_POS: RGB = (178, 24, 43)  # +1: red
_SEQ: list[RGB] = [(0x44, 0x01, 0x54), (0x3B, 0x52, 0x8B), (0x21, 0x91, 0x8C),
                   (0x5E, 0xC9, 0x62), (0xFD, 0xE7, 0x25)]  # fmt: skip  (viridis stops)


def _missing(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def diverging(v: float | None) -> RGB:
    """Colour of a value in [-1, 1]: blue (-1) - white (0) - red (+1); grey when missing."""
    if _missing(v):
        return MISSING
    t = max(-1.0, min(1.0, v))
    end = _POS if t >= 0 else _NEG
    return tuple(round(m + (e - m) * abs(t)) for m, e in zip(_MID, end))  # type: ignore[return-value]


def sequential(t: float | None) -> RGB:
    """Colour of a value in [0, 1] on a viridis-like scale; grey when missing."""
    if _missing(t):
        return MISSING
    t = min(max(t, 0.0), 1.0) * (len(_SEQ) - 1)
    i = min(int(t), len(_SEQ) - 2)
    f = t - i
    return tuple(round(x + (y - x) * f) for x, y in zip(_SEQ[i], _SEQ[i + 1]))  # type: ignore[return-value]


def hex_colour(c: RGB) -> str:
    return "#{:02x}{:02x}{:02x}".format(*c)


def _ink(c: RGB) -> str:
    """Text colour readable on background `c`."""
    lum = (0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2]) / 255
    return "#000000" if lum > 0.5 else "#ffffff"


def _short(s: str, n: int = 30) -> str:
    return s if len(s) <= n else s[: n - 1] + "…"


def heatmap_svg(
    matrix: Matrix,
    rows: Sequence[str],
    cols: Sequence[str] | None = None,
    *,
    title: str = "",
    lo: float = -1.0,
    hi: float = 1.0,
    colour: Callable[[float | None], RGB] = diverging,
    scale: str = "value",
    cell: tuple[int, int] | None = None,
    digits: int = 2,
    tips: Sequence[Sequence[str]] | None = None,
    css_class: str = "heatmap",
) -> str:
    """An SVG heatmap of `matrix` (rows x cols; None = missing): row labels on the left,
    column labels rotated above, the value in each cell when it fits, a tooltip per cell
    (`tips[i][j]`, default the value), and a legend bar from `hi` to `lo`.

    `scale="value"`: `colour` gets the value itself (a diverging map over -1..1);
    `scale="range"`: it gets the value's position in [lo, hi] (a sequential map)."""
    cols = list(rows if cols is None else cols)
    n_r, n_c = len(matrix), len(cols)
    if cell is None:
        side = max(12, min(40, 640 // max(n_r, n_c, 1)))
        cell = (side, side)
    cw, ch = cell
    esc = lambda x: html.escape(str(x), quote=True)  # noqa: E731
    span = (hi - lo) or 1.0

    def fill(v):
        if _missing(v):
            return MISSING
        return colour(v if scale == "value" else (v - lo) / span)

    r_lab = [_short(s) for s in rows]
    c_lab = [_short(s) for s in cols]
    left = 10 + 6.5 * max((len(s) for s in r_lab), default=4)
    top = (30 if title else 8) + 6.2 * max((len(s) for s in c_lab), default=4)
    bar_h = max(n_r * ch, 100)
    width = left + n_c * cw + 80
    height = top + max(n_r * ch, bar_h) + 16
    out = [
        f'<svg class="{esc(css_class)}" xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" '
        f'height="{height:.0f}" viewBox="0 0 {width:.0f} {height:.0f}" font-family="sans-serif" '
        f'font-size="11" role="img" aria-label="{esc(title or "heatmap")}">'
    ]
    if title:
        out.append(f'<text x="8" y="18" font-size="14">{esc(title)}</text>')
    for j, lab in enumerate(c_lab):
        x, y = left + j * cw + cw / 2 + 4, top - 4
        out.append(f'<text x="{x:.1f}" y="{y:.0f}" transform="rotate(-90 {x:.1f} {y:.0f})">'
                   f"{esc(lab)}</text>")  # fmt: skip
    show_values = n_c <= 20 and cw >= 28
    for i, row in enumerate(matrix):
        y = top + i * ch
        out.append(
            f'<text x="{left - 6:.0f}" y="{y + ch / 2 + 4:.1f}" text-anchor="end">'
            f"{esc(r_lab[i])}</text>"
        )
        for j, v in enumerate(row):
            x = left + j * cw
            c = fill(v)
            tip = tips[i][j] if tips is not None else ("n/a" if _missing(v) else f"{v:.3f}")
            out.append(
                f'<rect x="{x:.0f}" y="{y:.0f}" width="{cw - 1}" height="{ch - 1}" '
                f'fill="{hex_colour(c)}"><title>{esc(rows[i])} / {esc(cols[j])}: {esc(tip)}'
                "</title></rect>"
            )
            if show_values and not _missing(v):
                out.append(
                    f'<text x="{x + cw / 2:.1f}" y="{y + ch / 2 + 3:.1f}" font-size="9" '
                    f'text-anchor="middle" fill="{_ink(c)}">{v:.{digits}f}</text>'
                )
    lx, steps = left + n_c * cw + 16, 20
    step = bar_h / steps
    for k in range(steps):
        v = hi - (hi - lo) * (k + 0.5) / steps
        out.append(
            f'<rect x="{lx:.0f}" y="{top + k * step:.1f}" width="14" height="{step + 0.5:.1f}" '
            f'fill="{hex_colour(fill(v))}"/>'
        )
    for v, y in ((hi, top + 8), ((hi + lo) / 2, top + bar_h / 2 + 4), (lo, top + bar_h)):
        label = f"{v:+.{digits}f}" if scale == "value" else f"{v:.3f}"
        out.append(f'<text x="{lx + 18:.0f}" y="{y:.1f}">{label}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def heatmap_png(
    matrix: Matrix, cell: int | None = None, colour: Callable[[float | None], RGB] = diverging
) -> bytes:
    """A PNG (8-bit RGB) of `matrix`: one square of `cell` pixels per value, a 1-pixel
    white grid; no text (the SVG has the labels)."""
    n_r = len(matrix)
    n_c = max((len(r) for r in matrix), default=0)
    cell = cell or max(4, min(32, 640 // max(n_r, n_c, 1)))
    w, h = n_c * cell, n_r * cell
    rows = []
    for i in range(n_r):
        line = bytearray()
        for j in range(n_c):
            r, g, b = colour(matrix[i][j])
            line += bytes((r, g, b)) * (cell - 1) + b"\xff\xff\xff"
        for y in range(cell):
            rows.append(b"\x00" + (bytes(line) if y < cell - 1 else b"\xff" * (3 * w)))
    raw = b"".join(rows)

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    header = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw, 9))
        + chunk(b"IEND", b"")
    )
