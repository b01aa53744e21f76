"""The outcome of one backtest, shared by the engines, the CLI, the results store and the plots."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from cryptota_core.broker import DEFAULT_BROKER
from cryptota_core.numbers import finite_or_none
from cryptota_core.trades import trades_frame

HEADLINE_METRICS: tuple[str, ...] = (
    "sharpe_ratio",
    "total_return",
    "max_drawdown",
    "trade_count",
    "win_rate",
)
"""The metrics a run is judged by at a glance, the ranking metric first: the columns the results
store keeps beside the full metrics (so leaderboards sort on plain columns), what Dagster shows
of each run, the demo's leaderboard and the top of ``cryptota backtest``'s table."""

ORDER_COLUMNS: tuple[str, ...] = (
    "created_time",  # open_time of the bar after whose close the order was placed
    "side",  # "buy" | "sell"
    "type",  # "market" | "limit"
    "price",  # limit price; NaN for market orders
    "size",  # requested size, base units, positive
    "status",  # "filled" | "rejected" | "cancelled" | "expired" | "open" (data ended first)
    # ("rejected" after a partial fill happens in the grid: backtrader fills part of an order
    # that reverses a short, then rejects the rest for lack of cash; fill_time is then set)
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
    ``trades`` has exactly :data:`~cryptota_core.trades.TRADE_COLUMNS`.
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
    cash: float = DEFAULT_BROKER.cash
    commission: float = DEFAULT_BROKER.commission
    slippage: float = DEFAULT_BROKER.slippage
    stake: float = DEFAULT_BROKER.stake

    @property
    def equity_final(self) -> float:
        """Portfolio value at the last close (an open position marked to market)."""
        return float(self.equity.iloc[-1])

    def headline(self) -> dict[str, float | None]:
        """The :data:`HEADLINE_METRICS` of this run, undefined ones as None."""
        return {name: finite_or_none(self.metrics.get(name)) for name in HEADLINE_METRICS}

    def to_dict(self, *, trades: bool = True) -> dict[str, Any]:
        """Everything but the curves and the orders, as strict JSON: the ``cryptota backtest
        --json`` object of DESIGN §2, and the header the cache and the results store keep.

        Times are ISO-8601 UTC; undefined numbers (NaN, ±inf) are ``null``, so
        ``json.dumps(..., allow_nan=False)`` works. ``trades=False`` leaves out the trade list,
        for callers that keep the trades frame in a form of their own (an Arrow stream, a
        table)."""
        data: dict[str, Any] = {
            "strategy": self.strategy,
            "slug": self.slug,
            "params": dict(self.params),
            "engine": self.engine,
            "interval": self.interval,
            "bars": int(self.bars),
            "start": iso_utc(self.start),
            "end": iso_utc(self.end),
            "cash": float(self.cash),
            "commission": float(self.commission),
            "slippage": float(self.slippage),
            "stake": float(self.stake),
            "metrics": {name: finite_or_none(value) for name, value in self.metrics.items()},
            "rejected_orders": int(self.rejected_orders),
            "equity_final": finite_or_none(self.equity_final) if len(self.equity) else None,
        }
        if trades:
            data["trades"] = [_trade_json(row) for row in self.trades.itertuples(index=False)]
        return data

    @classmethod
    def from_dict(
        cls,
        data: Mapping[str, Any],
        *,
        equity: pd.Series,
        benchmark: pd.Series,
        trades: pd.DataFrame | None = None,
        orders: pd.DataFrame | None = None,
    ) -> BacktestResult:
        """The result :meth:`to_dict` describes, given the curves it leaves out. ``trades``
        defaults to the dict's trade list and ``orders`` to none; ``equity_final`` is read off
        ``equity``, never from the dict."""
        return cls(
            strategy=str(data["strategy"]),
            params=dict(data["params"]),
            slug=str(data["slug"]),
            engine=str(data["engine"]),
            interval=str(data["interval"]),
            bars=int(data["bars"]),
            start=_utc(data["start"]),
            end=_utc(data["end"]),
            equity=equity,
            trades=trades if trades is not None else trades_frame(data["trades"]),
            benchmark=benchmark,
            rejected_orders=int(data["rejected_orders"]),
            metrics=dict(data["metrics"]),
            orders=orders if orders is not None else empty_orders(),
            cash=float(data["cash"]),
            commission=float(data["commission"]),
            slippage=float(data["slippage"]),
            stake=float(data["stake"]),
        )


def _utc(ts: Any) -> pd.Timestamp:
    stamp = pd.Timestamp(ts)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def iso_utc(ts: Any) -> str | None:
    """``ts`` as ISO-8601 UTC with a ``Z`` (None for a missing time): every time in our JSON."""
    if ts is None or pd.isna(ts):
        return None
    return _utc(ts).isoformat().replace("+00:00", "Z")


def _trade_json(row: Any) -> dict[str, Any]:
    return {
        "entry_time": iso_utc(row.entry_time),
        "exit_time": iso_utc(row.exit_time),
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
