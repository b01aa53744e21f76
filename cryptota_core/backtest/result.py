"""The outcome of one backtest, shared by the engines, the CLI, the results store and the plots."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from cryptota_core.numbers import finite_or_none

ORDER_COLUMNS: tuple[str, ...] = (
    "created_time",  # open_time of the bar after whose close the order was placed
    "side",  # "buy" | "sell"
    "type",  # "market" | "limit"
    "price",  # limit price; NaN for market orders
    "size",  # requested size, base units, positive
    "status",  # "filled" | "rejected" | "cancelled" | "expired" | "open" (data ended first)
    # ("partial" only with a volume filler, which the engine does not install)
    "fill_time",  # open_time of the fill bar; NaT unless filled
    "fill_price",  # NaN unless filled
    "commission",  # NaN unless filled
)
"""Columns of :attr:`BacktestResult.orders`: every order a strategy placed, and its fate."""


def empty_orders() -> pd.DataFrame:
    """An orders frame with no rows and the right dtypes."""
    return pd.DataFrame(
        {
            "created_time": pd.Series([], dtype="datetime64[ns, UTC]"),
            "side": pd.Series([], dtype="object"),
            "type": pd.Series([], dtype="object"),
            "price": pd.Series([], dtype="float64"),
            "size": pd.Series([], dtype="float64"),
            "status": pd.Series([], dtype="object"),
            "fill_time": pd.Series([], dtype="datetime64[ns, UTC]"),
            "fill_price": pd.Series([], dtype="float64"),
            "commission": pd.Series([], dtype="float64"),
        }
    )


@dataclass(frozen=True)
class BacktestResult:
    """One strategy configuration run over one candle series.

    ``equity`` and ``benchmark`` hold one value per candle, indexed by ``open_time`` but valued at
    that candle's close. ``start`` is the first candle's open time and ``end`` the last candle's
    close time, i.e. the data window is ``[start, end)`` like every window in CryptoTA.
    ``trades`` has exactly :data:`~cryptota_core.backtest.trades.TRADE_COLUMNS`.
    """

    strategy: str
    params: dict[str, Any]
    slug: str
    engine: str
    interval: str
    bars: int
    start: pd.Timestamp
    end: pd.Timestamp
    equity: pd.Series
    trades: pd.DataFrame
    benchmark: pd.Series
    rejected_orders: int
    metrics: dict[str, float | None]
    orders: pd.DataFrame = field(default_factory=empty_orders)
    cash: float = 10_000.0
    commission: float = 0.001
    slippage: float = 0.0
    stake: float = 0.95

    @property
    def equity_final(self) -> float:
        """Portfolio value at the last close (an open position marked to market)."""
        return float(self.equity.iloc[-1])

    def to_json_dict(self) -> dict[str, Any]:
        """The ``cryptota backtest --json`` object of DESIGN §2. Times are ISO-8601 UTC; NaN and
        infinities become ``null`` so the result is strict JSON (``allow_nan=False`` works)."""
        return {
            "strategy": self.strategy,
            "slug": self.slug,
            "params": dict(self.params),
            "engine": self.engine,
            "interval": self.interval,
            "bars": self.bars,
            "start": _iso(self.start),
            "end": _iso(self.end),
            "cash": self.cash,
            "commission": self.commission,
            "slippage": self.slippage,
            "stake": self.stake,
            "metrics": {k: finite_or_none(v) for k, v in self.metrics.items()},
            "trades": [_trade_json(row) for row in self.trades.itertuples(index=False)],
            "rejected_orders": self.rejected_orders,
            "equity_final": finite_or_none(self.equity_final),
        }


def _iso(ts: Any) -> str | None:
    if ts is None or pd.isna(ts):
        return None
    stamp = pd.Timestamp(ts)
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    return stamp.isoformat().replace("+00:00", "Z")


def _trade_json(row: Any) -> dict[str, Any]:
    return {
        "entry_time": _iso(row.entry_time),
        "exit_time": _iso(row.exit_time),
        "side": str(row.side),
        "size": finite_or_none(row.size),
        "entry_price": finite_or_none(row.entry_price),
        "exit_price": finite_or_none(row.exit_price),
        "pnl": finite_or_none(row.pnl),
        "pnl_pct": finite_or_none(row.pnl_pct),
        "commission": finite_or_none(row.commission),
        "bars": int(row.bars),
        "is_open": bool(row.is_open),
    }


EQUITY_RTOL = 1e-6
"""Relative tolerance of cash + Σ trade pnl against the final equity in :func:`equity_problems`."""


def metric_problems(result: BacktestResult) -> list[str]:
    """Metrics that are neither a finite number nor null (NaN, ±inf, strings such as 'inf')."""
    return [
        f"{name}={value!r}"
        for name, value in result.metrics.items()
        if value is not None
        and not (
            isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
        )
    ]


def equity_problems(result: BacktestResult) -> list[str]:
    """The equity curve disagrees with the trades or the bar count: cash + Σ pnl (closed trades
    and the open one marked to market) must be the final equity, one equity point per bar."""
    problems: list[str] = []
    if len(result.equity) != result.bars:
        problems.append(f"{len(result.equity)} equity points for {result.bars} bars")
    if len(result.equity):
        from_trades = result.cash + float(result.trades["pnl"].sum())
        if not math.isclose(from_trades, result.equity_final, rel_tol=EQUITY_RTOL):
            problems.append(
                f"cash + trade pnl = {from_trades:.6f} but final equity = {result.equity_final:.6f}"
            )
    return problems
