"""docs/custom-strategy.md stays true: its example is docs/examples/sma_cross.py verbatim, and
that module registers, validates its parameters and trades as the guide says."""

from __future__ import annotations

import importlib.util
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from cryptota_core.backtest.engine import run_backtest
from cryptota_core.errors import InvalidInputError
from cryptota_core.strategies import get_strategy, strategy_names, unregister
from tests.core.backtest.candles_fixture import make_candles

DOCS = Path(__file__).resolve().parents[3] / "docs"
EXAMPLE = DOCS / "examples" / "sma_cross.py"
GUIDE = DOCS / "custom-strategy.md"


@pytest.fixture
def sma_cross() -> Iterator[ModuleType]:
    """Import the example the way a user's notebook would, then forget it again."""
    spec = importlib.util.spec_from_file_location("sma_cross", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["sma_cross"] = module
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        unregister("sma_cross")
        sys.modules.pop("sma_cross", None)


def test_guide_shows_the_example_verbatim() -> None:
    blocks = re.findall(r"```python\n(.*?)```", GUIDE.read_text(), flags=re.S)
    assert EXAMPLE.read_text() in blocks


def test_example_registers_on_import(sma_cross: ModuleType) -> None:
    assert "sma_cross" in strategy_names()
    spec = get_strategy("sma_cross")
    assert isinstance(spec, sma_cross.SmaCross)
    assert spec.slug({"fast": 10, "slow": 30}) == "sma_cross-f10-s30"
    grid = spec.expand_grid({"fast": [5, 10, 20], "slow": [20, 30, 60]})
    assert len(grid) == 8  # fast 20 / slow 20 is skipped
    with pytest.raises(InvalidInputError) as e:
        spec.parse_params({"fast": 30, "slow": 20})
    assert str(e.value) == "invalid parameters for sma_cross: fast (30) must be below slow (20)"
    with pytest.raises(InvalidInputError, match="did you mean 'slow'"):
        spec.parse_params({"slwo": 20})


def test_example_trades_on_sma_crosses(sma_cross: ModuleType) -> None:
    candles = make_candles(1500)
    result = run_backtest(candles, "sma_cross", {"fast": 10, "slow": 30}, interval="1h")
    close = candles["close"]
    fast = close.rolling(10).mean().to_numpy()
    slow = close.rolling(30).mean().to_numpy()
    above = fast > slow
    with np.errstate(invalid="ignore"):
        up = np.flatnonzero(above[1:] & ~above[:-1] & ~np.isnan(slow[:-1])) + 1
        down = np.flatnonzero(~above[1:] & above[:-1]) + 1
    assert len(result.trades) >= 10
    for trade in result.trades.itertuples(index=False):
        entry = candles.index.get_loc(trade.entry_time)
        assert entry - 1 in up  # the up-cross closed on the bar before the fill
        assert trade.entry_price == candles["open"].iloc[entry]
        if not trade.is_open:
            exit_ = candles.index.get_loc(trade.exit_time)
            assert exit_ - 1 in down
            assert trade.exit_price == candles["open"].iloc[exit_]
    assert result.equity_final == pytest.approx(10_000 + result.trades["pnl"].sum(), rel=1e-9)
    assert candles.index.get_loc(result.trades["entry_time"].iloc[0]) > get_strategy(
        "sma_cross"
    ).warmup(get_strategy("sma_cross").parse_params({"fast": 10, "slow": 30}))


def test_example_warmup_matches_backtrader(sma_cross: ModuleType) -> None:
    """The guide says warm-up is the first bar every indicator is defined on."""
    import backtrader as bt

    spec = get_strategy("sma_cross")
    params = spec.parse_params({"fast": 10, "slow": 30})
    first: list[int] = []

    class Probe(spec.bt_strategy(params)):  # type: ignore[misc]
        def nextstart(self) -> None:
            first.append(self.bar)
            super().nextstart()

    candles = make_candles(100)
    cerebro = bt.Cerebro(stdstats=False)
    feed = candles[["open", "high", "low", "close", "volume"]].tz_localize(None)
    cerebro.adddata(bt.feeds.PandasData(dataname=feed, openinterest=None))
    cerebro.addstrategy(Probe)
    cerebro.run()
    assert first == [spec.warmup(params)] == [30]


def test_example_is_forgotten_after_the_test() -> None:
    assert "sma_cross" not in strategy_names()


def test_example_optimises_like_a_built_in(sma_cross: ModuleType) -> None:
    """The guide's `cryptota optimize --strategy sma_cross`: a user strategy has no sweep
    kernel, so its sets run on backtrader; re-running them on the engine that swept them would
    prove nothing, so none is "re-checked" and the winner's full run is backtrader's."""
    from cryptota_core.research.optimize import optimize
    from cryptota_core.research.search import SearchSpec

    spec = SearchSpec(strategy="sma_cross", grid={"fast": [5, 10, 20], "slow": [30, 60]})
    result = optimize(make_candles(600), spec, interval="1h", top=2, recheck=1)
    assert result.combinations == 6
    assert result.sweep.engine == "backtrader" and result.rechecks == []
    assert result.best.engine == "backtrader"
    assert result.to_dict()["sweep_engine"] == "backtrader"
    assert result.best_slug.startswith("sma_cross-")
