"""What every picture shares: a caption naming what it shows, PNG bytes from a bare Agg figure,
and the tiny previews that the Dagster UI can show inline.

A picture that does not say which symbol, interval, window and data source it was drawn from
can be mistaken for another one (a SYNTHETIC demo curve for a Binance one above all), so every
plot's title starts with :meth:`ChartSubject.caption`.

The previews exist because the Dagster UI renders a Markdown metadata value inline only while it
is shorter than 1,000 characters, and behind a "[Show Markdown]" link otherwise: a full plot is
tens of kilobytes of base64, a 2-bit palette PNG of 160×40 pixels is about 700 characters. So a
materialisation carries both: the preview where the eye lands, the full plot one click away.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.figure import Figure
from PIL import Image, ImageDraw

SOURCE_NAMES = {"synthetic": "SYNTHETIC", "binance": "Binance"}
"""How an exchange name of the store reads in a caption: simulated candles shout."""

INLINE_MARKDOWN_LIMIT = 1000
"""The Dagster UI shows Markdown metadata inline below this many characters."""

PREVIEW_SIZE = (160, 40)
"""Width and height in pixels of an inline preview: small enough to stay under the limit."""

_PREVIEW_PALETTE = (
    (255, 255, 255),  # background
    (31, 119, 180),  # the strategy (matplotlib's tab:blue, as the full plots)
    (150, 150, 150),  # the benchmark (buy and hold)
    (214, 39, 40),  # a zero line / marker
)


class _Series(Protocol):
    @property
    def exchange(self) -> str: ...
    @property
    def symbol(self) -> str: ...


class _Candles(Protocol):
    """What a picture needs to know of its candles (a ``CandleInput`` has it)."""

    @property
    def key(self) -> _Series | None: ...
    @property
    def interval(self) -> str: ...
    @property
    def origin(self) -> str: ...


@dataclass(frozen=True)
class ChartSubject:
    """Which candles a picture was drawn from."""

    symbol: str | None
    interval: str
    source: str
    """``SYNTHETIC candles``, ``Binance candles``, or the CSV file's name."""

    @classmethod
    def of(cls, candles: _Candles) -> ChartSubject:
        """The subject of candles read from the store (they have a series key) or from a CSV
        (their origin is ``csv:NAME``)."""
        key = candles.key
        if key is None:
            return cls(None, candles.interval, f"CSV {candles.origin.removeprefix('csv:')}")
        return cls(key.symbol, candles.interval, f"{source_name(key.exchange)} candles")

    def caption(self, start: pd.Timestamp, end: pd.Timestamp) -> str:
        """``BTCUSDT 1h · 2024-01-01 00:00 .. 2024-01-31 23:00 UTC · SYNTHETIC candles``."""
        what = f"{self.symbol} {self.interval}" if self.symbol else self.interval
        span = f"{_utc(start):%Y-%m-%d %H:%M} .. {_utc(end):%Y-%m-%d %H:%M} UTC"
        return f"{what} · {span} · {self.source}"


def source_name(exchange: str) -> str:
    """``SYNTHETIC``, ``Binance``, or the store's exchange name as it is."""
    return SOURCE_NAMES.get(exchange, exchange)


def figure_png(fig: Figure) -> bytes:
    """The figure as PNG bytes."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def png_data_uri(png: bytes) -> str:
    """``data:image/png;base64,…``: a picture inside Markdown."""
    return f"data:image/png;base64,{base64.b64encode(png).decode('ascii')}"


def sparkline_png(
    line: Sequence[float] | np.ndarray, benchmark: Sequence[float] | np.ndarray | None = None
) -> bytes:
    """A :data:`PREVIEW_SIZE` picture of ``line`` (blue) over ``benchmark`` (grey) on one
    scale, no axes: the shape of an equity curve at a glance. Undefined points are skipped."""
    width, height = PREVIEW_SIZE
    series = [np.asarray(line, dtype=np.float64)]
    if benchmark is not None:
        series.append(np.asarray(benchmark, dtype=np.float64))
    finite = np.concatenate([s[np.isfinite(s)] for s in series])
    image = _palette_image(width, height)
    if finite.size:
        lo, hi = float(finite.min()), float(finite.max())
        span = hi - lo if hi > lo else 1.0
        draw = ImageDraw.Draw(image)
        for values, colour in reversed(list(zip(series, (1, 2), strict=False))):
            if values.size == 0:
                continue
            picks = values[np.linspace(0, values.size - 1, width).round().astype(int)]
            points = [
                (x, (height - 2) - (v - lo) / span * (height - 4))
                for x, v in enumerate(picks)
                if np.isfinite(v)
            ]
            if len(points) >= 2:
                draw.line(points, fill=colour, width=1)
    return _palette_png(image)


def heatmap_preview_png(values: np.ndarray) -> bytes:
    """A small picture of a 2-D grid of values (rows bottom-up, as the full heatmap), viridis in
    eight shades, undefined cells white."""
    grid = np.asarray(values, dtype=np.float64)
    if grid.size == 0:  # nothing to show (no set had a defined objective): one white cell
        grid = np.full((1, 1), np.nan)
    rows, cols = grid.shape
    cell = max(1, min(PREVIEW_SIZE[0] // max(cols, 1), 2 * PREVIEW_SIZE[1] // max(rows, 1), 16))
    finite = grid[np.isfinite(grid)]
    shades = 8
    palette = [(255, 255, 255)] + [
        tuple(int(255 * c) for c in colormaps["viridis"](k / (shades - 1))[:3])
        for k in range(shades)
    ]
    image = Image.new("P", (cols * cell, rows * cell), 0)
    image.putpalette([channel for colour in palette for channel in colour])
    if finite.size:
        lo, hi = float(finite.min()), float(finite.max())
        span = hi - lo if hi > lo else 1.0
        draw = ImageDraw.Draw(image)
        for r in range(rows):
            for c in range(cols):
                v = grid[r, c]
                if not np.isfinite(v):
                    continue
                shade = 1 + round((v - lo) / span * (shades - 1))
                top = (rows - 1 - r) * cell
                draw.rectangle((c * cell, top, (c + 1) * cell - 1, top + cell - 1), fill=shade)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True, bits=4)
    return buffer.getvalue()


def _palette_image(width: int, height: int) -> Image.Image:
    image = Image.new("P", (width, height), 0)
    image.putpalette([channel for colour in _PREVIEW_PALETTE for channel in colour])
    return image


def _palette_png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True, bits=2)
    return buffer.getvalue()


def _utc(when: pd.Timestamp) -> pd.Timestamp:
    stamp = pd.Timestamp(when)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
