"""The results store on SQLite and PostgreSQL: round trip, idempotent and concurrent saves,
leaderboard ranking, retention and parameter-set registration."""

from __future__ import annotations

import math
import threading
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import func, select, update

from cryptota_core.backtest.result import ORDER_COLUMNS, BacktestResult, empty_orders
from cryptota_core.errors import InvalidInputError, NoDataError
from cryptota_core.storage.results_store import (
    LEADERBOARD_COLUMNS,
    ResultsStore,
    backtest_run_key,
    best_per_symbol,
    validate_slug,
)
from cryptota_core.storage.schema import (
    backtest_results,
    backtest_trades,
    equity_curves,
    param_sets,
)
from cryptota_core.trades import TRADE_COLUMNS, empty_trades

START = pd.Timestamp("2024-01-01", tz="UTC")
RSI_PARAMS = {"period": 14, "oversold": 30, "overbought": 70}


def make_trades(index: pd.DatetimeIndex, closes: np.ndarray) -> pd.DataFrame:
    """Two closed trades and one still open at the end (exit_time NaT), with awkward floats."""
    rows: list[tuple[Any, ...]] = [
        (index[3], index[9], "long", 0.2261938476, closes[3], closes[9], 0, 6, False),
        (index[12], index[20], "long", 0.2199170355, closes[12], closes[20], 0, 8, False),
        (index[30], pd.NaT, "long", 0.2143718822, closes[30], closes[-1], 0, len(index) - 31, True),
    ]
    trades = pd.DataFrame(
        {
            "entry_time": pd.DatetimeIndex([r[0] for r in rows]).as_unit("ns"),
            "exit_time": pd.to_datetime([r[1] for r in rows], utc=True).as_unit("ns"),
            "side": pd.Series([r[2] for r in rows], dtype="object"),
            "size": [r[3] for r in rows],
            "entry_price": [r[4] for r in rows],
            "exit_price": [r[5] for r in rows],
        }
    )
    trades["commission"] = trades["size"] * trades["entry_price"] * 0.001 * np.array([2, 2, 1])
    trades["pnl"] = (
        trades["size"] * (trades["exit_price"] - trades["entry_price"]) - trades["commission"]
    )
    trades["pnl_pct"] = trades["pnl"] / (trades["size"] * trades["entry_price"])
    trades["bars"] = np.array([r[7] for r in rows], dtype="int64")
    trades["is_open"] = np.array([r[8] for r in rows], dtype="bool")
    return trades.loc[:, list(TRADE_COLUMNS)]


def make_result(
    *,
    strategy: str = "rsi",
    slug: str = "rsi-p14-os30-ob70",
    params: dict[str, Any] | None = None,
    n: int = 48,
    seed: int = 1,
    start: pd.Timestamp = START,
    interval: str = "1h",
    engine: str = "backtrader",
    metrics: dict[str, float | None] | None = None,
    freq: str | None = None,
    with_trades: bool = True,
) -> BacktestResult:
    """A hand-made BacktestResult shaped like the engine's (index ``open_time``, UTC, ns)."""
    rng = np.random.default_rng(seed)
    step = pd.Timedelta(interval)
    stamps = pd.date_range(start, periods=n, freq=step).as_unit("ns")
    # Built from integers, so without a freq, like the engine's index (unless one is asked for).
    index = pd.DatetimeIndex(stamps.asi8, name="open_time").tz_localize("UTC")
    if freq is not None:
        index = pd.DatetimeIndex(index, freq=freq)
    closes = 42_000 * np.exp(np.cumsum(rng.normal(0, 3e-3, n)))
    equity = pd.Series(10_000 * np.exp(np.cumsum(rng.normal(0, 1e-3, n))), index=index)
    equity.iloc[0] = 10_000.0
    benchmark = pd.Series(10_000 * closes / closes[0], index=index, name="benchmark")
    trades = make_trades(index, closes) if with_trades else empty_trades()
    orders = (
        empty_orders()
        if not with_trades
        else pd.DataFrame(
            {
                "created_time": pd.DatetimeIndex([index[2], index[8], index[40]]).as_unit("ns"),
                "side": pd.Series(["buy", "sell", "buy"], dtype="object"),
                "type": pd.Series(["market", "market", "limit"], dtype="object"),
                "price": [np.nan, np.nan, 41_000.123456789],
                "size": [0.2261938476, 0.2261938476, 0.5],
                "status": pd.Series(["filled", "filled", "open"], dtype="object"),
                "fill_time": pd.DatetimeIndex([index[3], index[9], pd.NaT]).as_unit("ns"),
                "fill_price": [closes[3], closes[9], np.nan],
                "commission": [0.0095, 0.0096, np.nan],
            }
        ).loc[:, list(ORDER_COLUMNS)]
    )
    base_metrics: dict[str, float | None] = {
        "total_return": float(equity.iloc[-1] / equity.iloc[0] - 1),
        "sharpe_ratio": 1.2345678901234567,
        "max_drawdown": -0.0412345678,
        "sortino_ratio": 2.5,
        "annual_volatility": 0.31,
        "trade_count": 2.0,
        "win_rate": 0.5,
        "profit_factor": None,
    }
    base_metrics.update(metrics or {})
    return BacktestResult(
        strategy=strategy,
        params=dict(params if params is not None else RSI_PARAMS),
        slug=slug,
        engine=engine,
        interval=interval,
        bars=n,
        start=index[0],
        end=index[-1] + step,
        equity=equity.rename("equity"),
        trades=trades,
        benchmark=benchmark,
        rejected_orders=1,
        metrics=base_metrics,
        orders=orders,
        cash=10_000.0,
        commission=0.001,
        slippage=0.0005,
        stake=0.95,
    )


def save(store: ResultsStore, result: BacktestResult, symbol: str = "BTCUSDT", **kw: Any) -> str:
    kw.setdefault("exchange", "synthetic")
    kw.setdefault("candle_fingerprint", "0123456789abcdef")
    kw.setdefault("code_version", "0.1.0")
    return store.save_backtest(result, symbol=symbol, **kw)


def table_counts(store: ResultsStore, run_key: str) -> tuple[int, int, int]:
    with store.engine.connect() as conn:
        return tuple(  # type: ignore[return-value]
            int(
                conn.execute(
                    select(func.count()).select_from(t).where(t.c.run_key == run_key)
                ).scalar_one()
            )
            for t in (backtest_results, backtest_trades, equity_curves)
        )


@pytest.fixture
def store(database_url: str) -> ResultsStore:
    return ResultsStore.from_url(database_url)


def assert_same_result(loaded: BacktestResult, original: BacktestResult) -> None:
    pd.testing.assert_series_equal(loaded.equity, original.equity, check_exact=True)
    pd.testing.assert_series_equal(loaded.benchmark, original.benchmark, check_exact=True)
    pd.testing.assert_frame_equal(loaded.trades, original.trades, check_exact=True)
    assert str(pd.DatetimeIndex(loaded.equity.index).tz) == "UTC"
    for name in ("strategy", "params", "slug", "engine", "interval", "bars", "start", "end"):
        assert getattr(loaded, name) == getattr(original, name), name
    for name in ("rejected_orders", "cash", "commission", "slippage", "stake"):
        assert getattr(loaded, name) == getattr(original, name), name
    assert loaded.to_dict() == original.to_dict()


def test_save_and_load_round_trip_is_exact(store: ResultsStore) -> None:
    result = make_result(metrics={"omega_ratio": math.nan, "tail_ratio": math.inf})
    key = save(store, result, run_id="dagster-run-1")
    stored = store.load_backtest(key)
    assert_same_result(stored.result, result)
    # Undefined metrics are stored as null (PostgreSQL's json has no NaN), like the CLI's JSON.
    assert stored.result.metrics["omega_ratio"] is None
    assert stored.result.metrics["tail_ratio"] is None
    assert stored.result.metrics["sharpe_ratio"] == result.metrics["sharpe_ratio"]
    assert stored.result.orders.empty  # orders are not part of the stored record
    assert (stored.exchange, stored.symbol, stored.run_id) == (
        "synthetic",
        "BTCUSDT",
        "dagster-run-1",
    )
    assert (stored.candle_fingerprint, stored.code_version) == ("0123456789abcdef", "0.1.0")
    assert stored.created_at.tzinfo is not None


def test_round_trip_without_trades(store: ResultsStore) -> None:
    result = make_result(with_trades=False)
    stored = store.load_backtest(save(store, result))
    pd.testing.assert_frame_equal(stored.result.trades, empty_trades())
    assert_same_result(stored.result, result)


def test_run_key_is_deterministic_and_names_the_partition() -> None:
    base: dict[str, Any] = {
        "exchange": "binance",
        "symbol": "BTCUSDT",
        "interval": "1h",
        "strategy": "rsi",
        "slug": "rsi-p14-os30-ob70",
        "start": pd.Timestamp("2024-01-01", tz="UTC"),
        "end": pd.Timestamp("2024-03-01", tz="UTC"),
        "engine": "backtrader",
    }
    key = backtest_run_key(**base)
    naive: dict[str, Any] = {
        **base,
        "start": pd.Timestamp("2024-01-01"),
        "end": pd.Timestamp("2024-03-01"),
    }
    assert backtest_run_key(**naive) == key
    assert len(key) == 32 and all(c in "0123456789abcdef" for c in key)
    changes: dict[str, Any] = {
        "exchange": "synthetic",
        "symbol": "ETHUSDT",
        "interval": "4h",
        "strategy": "rsi_ma",
        "slug": "rsi-p7-os30-ob70",
        "start": pd.Timestamp("2024-01-02", tz="UTC"),
        "end": pd.Timestamp("2024-02-01", tz="UTC"),
        "engine": "fast",
    }
    for field, value in changes.items():
        assert backtest_run_key(**{**base, field: value}) != key, field


def test_resave_replaces_the_partition_and_leaves_one_copy(store: ResultsStore) -> None:
    first = make_result(seed=1)
    key = save(store, first)
    second = make_result(seed=2, with_trades=False, metrics={"sharpe_ratio": 0.5})
    assert save(store, second, run_id="retry") == key
    assert save(store, second, run_id="retry") == key
    assert table_counts(store, key) == (1, 0, second.bars)
    assert store.count_runs() == 1
    stored = store.load_backtest(key)
    assert_same_result(stored.result, second)
    assert stored.run_id == "retry"


def test_other_partitions_are_kept(store: ResultsStore) -> None:
    btc = save(store, make_result(), "BTCUSDT")
    eth = save(store, make_result(), "ETHUSDT")
    later = save(store, make_result(start=START + pd.Timedelta(days=30)), "BTCUSDT")
    fast = save(store, make_result(engine="fast"), "BTCUSDT")
    assert len({btc, eth, later, fast}) == 4
    save(store, make_result(seed=5), "BTCUSDT")
    assert store.count_runs() == 4
    for key in (btc, eth, later, fast):
        assert table_counts(store, key) == (1, 3, 48)


def test_concurrent_saves_of_one_partition_leave_one_copy(database_url: str) -> None:
    """Eight writers save the same partition at the same moment (as parallel Dagster retries
    would): the advisory lock (PostgreSQL) / write lock (SQLite) serialises them, no writer
    fails on the unique run_key, and exactly one copy remains."""
    ResultsStore.from_url(database_url)
    results = [make_result(seed=s, n=2_000) for s in range(8)]
    barrier = threading.Barrier(len(results))
    keys: list[str] = []
    errors: list[BaseException] = []

    def writer(result: BacktestResult) -> None:
        store = ResultsStore.from_url(database_url, create=False)
        try:
            barrier.wait(timeout=30)
            keys.append(save(store, result))
        except BaseException as e:  # collected and re-raised in the main thread
            errors.append(e)
        finally:
            store.engine.dispose()

    threads = [threading.Thread(target=writer, args=(r,)) for r in results]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    assert len(set(keys)) == 1 and len(keys) == len(results)
    store = ResultsStore.from_url(database_url, create=False)
    assert table_counts(store, keys[0]) == (1, 3, 2_000)
    stored = store.load_backtest(keys[0])
    # One writer's rows, whole: the equity curve and the result row come from the same save.
    winners = [r for r in results if r.equity.equals(stored.result.equity)]
    assert len(winners) == 1
    assert stored.result.to_dict() == winners[0].to_dict()


def test_large_equity_curve_goes_through_copy(postgres_url: str) -> None:
    store = ResultsStore.from_url(postgres_url)
    result = make_result(n=500_000, interval="1m")
    key = save(store, result)
    stored = store.load_backtest(key)
    pd.testing.assert_series_equal(stored.result.equity, result.equity, check_exact=True)
    pd.testing.assert_series_equal(stored.result.benchmark, result.benchmark, check_exact=True)


def test_load_unknown_run_key_says_what_to_do(store: ResultsStore) -> None:
    with pytest.raises(NoDataError, match="no backtest result with run key 'nope'"):
        store.load_backtest("nope")


def _board_fixture(store: ResultsStore) -> None:
    sharpe = {"rsi-p7": 1.5, "rsi-p14": None, "rsi-p21": 0.3, "rsi-p28": -2.0, "rsi-p35": 0.3}
    for i, (slug, value) in enumerate(sharpe.items()):
        metrics = {
            "sharpe_ratio": value,
            "max_drawdown": -0.1 * (i + 1),
            "sortino_ratio": None if i == 0 else float(i),
            "annual_volatility": 0.5 - 0.1 * i,
        }
        save(store, make_result(slug=slug, params={"period": 7 * (i + 1)}, metrics=metrics))
    save(store, make_result(slug="rsi-p7", metrics={"sharpe_ratio": 0.7}), "ETHUSDT")
    save(
        store,
        make_result(strategy="rsi_ma", slug="rsi_ma-p14", metrics={"sharpe_ratio": 9.0}),
    )


def test_leaderboard_ranks_per_symbol_and_strategy_with_nulls_last(store: ResultsStore) -> None:
    _board_fixture(store)
    board = store.leaderboard(symbol="BTCUSDT", strategy="rsi")
    assert list(board.columns) == list(LEADERBOARD_COLUMNS)
    # Ties (0.3) break on slug; the NULL Sharpe ranks last, not first as DESC would put it.
    assert list(board["slug"]) == ["rsi-p7", "rsi-p21", "rsi-p35", "rsi-p28", "rsi-p14"]
    assert list(board["rank"]) == [1, 2, 3, 4, 5]
    assert board["value"].iloc[:4].tolist() == [1.5, 0.3, 0.3, -2.0]
    assert math.isnan(board["value"].iloc[4])
    assert board["params"].iloc[0] == {"period": 7}
    assert str(board["window_start"].dt.tz) == "UTC"

    everything = store.leaderboard(top=2)
    groups = everything.groupby(["symbol", "strategy"])["slug"].apply(list).to_dict()
    assert groups == {
        ("BTCUSDT", "rsi"): ["rsi-p7", "rsi-p21"],
        ("BTCUSDT", "rsi_ma"): ["rsi_ma-p14"],
        ("ETHUSDT", "rsi"): ["rsi-p7"],
    }
    assert store.leaderboard(symbol="SOLUSDT").empty
    assert store.leaderboard(exchange="binance").empty


def test_leaderboard_other_metrics(store: ResultsStore) -> None:
    _board_fixture(store)
    drawdown = store.leaderboard("BTCUSDT", "rsi", metric="max_drawdown", top=2)
    assert list(drawdown["slug"]) == ["rsi-p7", "rsi-p14"]  # -0.1 beats -0.2
    # A metric kept only in the JSON column, undefined for rsi-p7: ranked last.
    sortino = store.leaderboard("BTCUSDT", "rsi", metric="sortino_ratio")
    assert list(sortino["slug"]) == ["rsi-p35", "rsi-p28", "rsi-p21", "rsi-p14", "rsi-p7"]
    assert sortino["value"].iloc[0] == 4.0
    # Lower volatility is better.
    vol = store.leaderboard("BTCUSDT", "rsi", metric="annual_volatility", top=1)
    assert list(vol["slug"]) == ["rsi-p35"]
    worst = store.leaderboard("BTCUSDT", "rsi", metric="annual_volatility", top=1, ascending=False)
    assert list(worst["slug"]) == ["rsi-p7"]


def test_leaderboard_ranks_runs_below_min_trades_after_the_others_and_says_so(
    store: ResultsStore,
) -> None:
    """A Sharpe ratio of two trades is luck: with ``min_trades`` such runs rank after every run
    that traded enough, whatever their Sharpe, and the note says why; a blank (undefined)
    Sharpe is explained too."""
    runs = {"rsi-p7": (9.0, 2), "rsi-p14": (0.4, 12), "rsi-p21": (None, 0), "rsi-p28": (0.1, 5)}
    for slug, (sharpe, trades) in runs.items():
        metrics = {"sharpe_ratio": sharpe, "trade_count": trades}
        save(store, make_result(slug=slug, metrics=metrics))
    plain = store.leaderboard("BTCUSDT", "rsi")
    assert list(plain["slug"]) == ["rsi-p7", "rsi-p14", "rsi-p28", "rsi-p21"]
    assert list(plain["note"]) == ["", "", "", "sharpe_ratio undefined (no trades)"]

    board = store.leaderboard("BTCUSDT", "rsi", min_trades=5)
    assert list(board["slug"]) == ["rsi-p14", "rsi-p28", "rsi-p7", "rsi-p21"]
    assert list(board["rank"]) == [1, 2, 3, 4]
    assert list(board["note"]) == [
        "",
        "",
        "< 5 trades",
        "< 5 trades; sharpe_ratio undefined (no trades)",
    ]
    assert board.attrs["min_trades"] == 5
    assert list(store.leaderboard("BTCUSDT", "rsi", min_trades=5, top=1)["slug"]) == ["rsi-p14"]


def test_leaderboard_says_when_a_position_is_still_open(store: ResultsStore) -> None:
    """0 closed trades and a return: the position bought is still held at the end, and the
    note says so (``trade_count`` counts round trips)."""
    runs = {"rsi-p7": (1.2, 0, 1.0), "rsi-p14": (0.4, 6, 0.0), "rsi-p21": (0.1, 5, None)}
    for slug, (sharpe, trades, still_open) in runs.items():
        metrics = {"sharpe_ratio": sharpe, "trade_count": trades, "open_trades": still_open}
        save(store, make_result(slug=slug, metrics=metrics))
    board = store.leaderboard("BTCUSDT", "rsi", min_trades=5)
    assert list(board.columns) == list(LEADERBOARD_COLUMNS)
    notes = dict(zip(board["slug"], board["note"], strict=True))
    assert notes == {"rsi-p14": "", "rsi-p21": "", "rsi-p7": "< 5 trades; position open at the end"}


@pytest.mark.parametrize(
    "bad",
    [{"metric": "sharpe; drop table x"}, {"top": 0}, {"min_trades": -1}, {"min_trades": 2.5}],
)
def test_leaderboard_rejects_bad_arguments(store: ResultsStore, bad: dict[str, Any]) -> None:
    with pytest.raises(InvalidInputError):
        store.leaderboard(**bad)


def test_purge_before_deletes_old_runs_with_their_rows(store: ResultsStore) -> None:
    old_a = save(store, make_result(), "BTCUSDT")
    old_b = save(store, make_result(), "ETHUSDT")
    fresh = save(store, make_result(), "SOLUSDT")
    long_ago = pd.Timestamp("2023-01-01", tz="UTC").to_pydatetime()
    with store.engine.begin() as conn:
        conn.execute(
            update(backtest_results)
            .where(backtest_results.c.run_key.in_([old_a, old_b]))
            .values(created_at=long_ago)
        )
    assert store.purge_before(pd.Timestamp("2022-12-31", tz="UTC")) == 0
    assert store.purge_before(pd.Timestamp("2024-01-01", tz="UTC")) == 2
    assert table_counts(store, old_a) == (0, 0, 0)
    assert table_counts(store, old_b) == (0, 0, 0)
    assert table_counts(store, fresh) == (1, 3, 48)
    assert len(store.param_sets()) == 1  # parameter sets outlive their runs
    assert store.purge_before(pd.Timestamp.now(tz="UTC") + pd.Timedelta(minutes=1)) == 1
    assert store.count_runs() == 0


def test_register_param_set_is_an_idempotent_upsert(store: ResultsStore) -> None:
    store.register_param_set("rsi", "rsi-p14-os30-ob70", RSI_PARAMS)
    first = store.param_sets()
    store.register_param_set("rsi", "rsi-p14-os30-ob70", RSI_PARAMS)
    store.register_param_set("rsi", "rsi-p14-os30-ob70", {**RSI_PARAMS, "period": 15})
    again = store.param_sets("rsi")
    assert len(again) == 1
    assert again["params"].iloc[0] == {**RSI_PARAMS, "period": 15}
    assert again["created_at"].iloc[0] == first["created_at"].iloc[0]
    assert list(again["params"].iloc[0]) == ["period", "oversold", "overbought"]  # order kept
    with store.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(param_sets)).scalar_one() == 1


def test_saving_a_backtest_registers_its_param_set(store: ResultsStore) -> None:
    save(store, make_result())
    sets = store.param_sets()
    assert list(sets["slug"]) == ["rsi-p14-os30-ob70"]
    assert sets["params"].iloc[0] == RSI_PARAMS


@pytest.mark.parametrize(
    "slug", ["rsi|p14", "rsi,p14", "rsi[p14]", "rsi-p14]", "rsi p14", "", "rsi/p14", "x" * 201]
)
def test_slugs_with_reserved_characters_are_rejected(store: ResultsStore, slug: str) -> None:
    with pytest.raises(InvalidInputError, match=r"never \| , \[ \]"):
        validate_slug(slug)
    with pytest.raises(InvalidInputError):
        store.register_param_set("rsi", slug, RSI_PARAMS)
    with pytest.raises(InvalidInputError):
        save(store, make_result(slug=slug))
    assert store.count_runs() == 0
    assert store.param_sets().empty


@pytest.mark.parametrize("slug", ["rsi-p14-os30-ob70", "grid-l10-s0.5-q1em05", "rsi_ma-p7~x"])
def test_url_safe_slugs_are_accepted(slug: str) -> None:
    assert validate_slug(slug) == slug


def test_params_must_be_finite_json(store: ResultsStore) -> None:
    with pytest.raises(InvalidInputError, match="JSON object of finite numbers"):
        store.register_param_set("rsi", "rsi-pnan", {"period": math.nan})


def test_leaderboard_ranks_only_the_latest_window_of_each_series(store: ResultsStore) -> None:
    """The nightly refresh moves the window: yesterday's run of a slug must not rank beside
    today's (it stays stored, and ranks with latest_window=False)."""
    yesterday = make_result(slug="rsi-p7", metrics={"sharpe_ratio": 5.0})
    today = make_result(
        slug="rsi-p7", start=START + pd.Timedelta(days=1), metrics={"sharpe_ratio": 1.0}
    )
    other = make_result(
        slug="rsi-p14", start=START + pd.Timedelta(days=1), metrics={"sharpe_ratio": 2.0}
    )
    for result in (yesterday, today, other):
        save(store, result)
    save(store, make_result(slug="rsi-p7", metrics={"sharpe_ratio": 3.0}), "ETHUSDT")
    board = store.leaderboard()
    btc = board[board["symbol"] == "BTCUSDT"]
    assert list(btc["slug"]) == ["rsi-p14", "rsi-p7"]
    assert list(btc["value"]) == [2.0, 1.0]
    # Each series has its own latest window: ETHUSDT's only run still ranks.
    assert list(board[board["symbol"] == "ETHUSDT"]["value"]) == [3.0]
    everything = store.leaderboard(symbol="BTCUSDT", latest_window=False)
    assert list(everything["value"]) == [5.0, 2.0, 1.0]


def test_a_symbols_best_set_follows_the_minimum_trades_rule() -> None:
    # two strategies' winners on one symbol: the higher Sharpe ratio made two trades
    board = pd.DataFrame(
        {
            "symbol": ["BTCUSDT", "BTCUSDT", "BTCUSDT", "ETHUSDT"],
            "strategy": ["rsi", "rsi_ma", "grid", "rsi"],
            "rank": [1, 1, 1, 1],
            "slug": ["rsi-a", "rsi_ma-b", "grid-c", "rsi-d"],
            "value": [-1.7, 9.0, math.nan, 2.0],
            "trade_count": [12, 2, 30, 1],
        }
    )
    assert best_per_symbol(board) == {"BTCUSDT": "rsi_ma-b", "ETHUSDT": "rsi-d"}
    board.attrs["min_trades"] = 5
    # the set that trades wins; an undefined value ranks after a defined one; a symbol whose
    # every winner trades too little still has a best set
    assert best_per_symbol(board) == {"BTCUSDT": "rsi-a", "ETHUSDT": "rsi-d"}
