"""The registry: built-ins register on import, names resolve with helpful errors, plug-ins load
from the ``cryptota.strategies`` entry-point group."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
from collections.abc import Iterator
from typing import Any, ClassVar

import pytest

from cryptota_core.errors import InvalidInputError
from cryptota_core.strategies import (
    LongOnlyStrategy,
    Strategy,
    StrategyParams,
    get_strategy,
    register,
    registry,
    strategy_names,
    unregister,
)

BUILT_INS = ["grid", "rsi", "rsi_divergence", "rsi_ma"]


class _NeverBt(LongOnlyStrategy):
    def should_enter_long(self) -> bool:
        return False


class PluginStrategy(Strategy):
    """Stands in for a third-party strategy published through an entry point."""

    name: ClassVar[str] = "plugin_demo"
    params_model: ClassVar[type[StrategyParams]] = StrategyParams
    bt_class = _NeverBt


@pytest.fixture
def scratch_names() -> Iterator[list[str]]:
    """Names registered by a test are removed afterwards, so tests stay independent."""
    names: list[str] = []
    yield names
    for name in names:
        unregister(name)


def test_built_ins_register_on_import() -> None:
    assert set(BUILT_INS) <= set(strategy_names())
    assert strategy_names() == sorted(strategy_names())


@pytest.mark.parametrize("name", BUILT_INS)
def test_each_built_in_lives_in_the_module_named_by_its_key(name: str) -> None:
    spec = get_strategy(name)
    assert spec.name == name
    assert type(spec).__module__ == f"cryptota_core.strategies.{name}"
    assert spec.bt_class == f"cryptota_core.strategies.bt.{name}:{spec.backtrader_class().__name__}"
    assert spec.backtrader_class().__module__ == f"cryptota_core.strategies.bt.{name}"
    assert spec.default_grid, "every strategy ships a small grid for the demo and optimiser"
    assert len(spec.expand_grid(spec.default_grid)) <= 64


def test_unknown_strategy_suggests_the_closest_name_and_lists_all() -> None:
    with pytest.raises(InvalidInputError) as e:
        get_strategy("rsi_mx")
    message = str(e.value)
    assert "\n" not in message
    assert message.startswith("unknown strategy 'rsi_mx': use one of ")
    for name in BUILT_INS:
        assert name in message
    assert message.endswith("did you mean 'rsi_ma'?")


def test_unknown_strategy_without_a_close_match() -> None:
    with pytest.raises(InvalidInputError) as e:
        get_strategy("macd")
    assert str(e.value) == f"unknown strategy 'macd': use one of {', '.join(strategy_names())}"


def test_register_adds_and_unregister_removes(scratch_names: list[str]) -> None:
    scratch_names.append("plugin_demo")
    assert register(PluginStrategy) is PluginStrategy
    assert isinstance(get_strategy("plugin_demo"), PluginStrategy)
    assert "plugin_demo" in strategy_names()
    register(PluginStrategy)  # the same class again (a module reload) is fine
    unregister("plugin_demo")
    with pytest.raises(InvalidInputError):
        get_strategy("plugin_demo")


def test_a_second_class_cannot_take_a_registered_name() -> None:
    class Impostor(Strategy):
        name: ClassVar[str] = "rsi"
        params_model: ClassVar[type[StrategyParams]] = StrategyParams
        bt_class = _NeverBt

    with pytest.raises(ValueError, match="strategy name 'rsi' is taken"):
        register(Impostor)
    assert type(get_strategy("rsi")).__module__ == "cryptota_core.strategies.rsi"


@pytest.mark.parametrize(
    "bad", ["cryptota_core.strategies.bt.rsi.RsiBt", "rsi:", ":RsiBt", "a b:C"]
)
def test_a_bt_class_named_by_text_must_say_module_and_class(bad: str) -> None:
    spec = type("BadPath", (PluginStrategy,), {"name": "bad_path", "bt_class": bad})
    with pytest.raises(ValueError, match=r"must be a class or name one as 'package\.module:Class'"):
        register(spec)


def test_backtrader_is_imported_only_by_a_backtrader_run() -> None:
    """A sweep, a fast run and an optimisation re-checked on the fast engine never load
    backtrader (a fifth of a second of every start-up); the first backtrader run does."""
    script = """
import sys
import numpy as np
import pandas as pd
from cryptota_core.market.sources.synthetic import generate_candles
from cryptota_core.research.optimize import optimize
from cryptota_core.research.search import SearchSpec
from cryptota_core.strategies import get_strategy
candles = generate_candles("BTCUSDT", "1h", "2024-01-01", "2024-03-01", seed=1)
spec = SearchSpec(strategy="rsi", grid={"period": [7, 14], "oversold": [30], "overbought": [70]})
optimize(candles, spec, interval="1h", settings=None)
assert "backtrader" not in sys.modules, "the fast path imported backtrader"
from cryptota_core.strategies import LongOnlyStrategy
assert "backtrader" in sys.modules
assert LongOnlyStrategy.__module__ == "cryptota_core.strategies.bt.base"
print("ok")
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


@pytest.mark.parametrize("bad", ["RSI", "my-strategy", "", "9lives", "a b"])
def test_names_must_be_lower_case_identifiers(bad: str) -> None:
    spec = type("Bad", (PluginStrategy,), {"name": bad})
    with pytest.raises(ValueError, match="must be lower-case"):
        register(spec)


def test_register_refuses_non_strategies() -> None:
    with pytest.raises(TypeError):
        register(int)  # type: ignore[type-var]


def test_duplicate_slug_keys_are_refused() -> None:
    from pydantic import Field

    class TwoP(StrategyParams):
        period: int = Field(14)
        p_eriod: int = Field(3)

    spec = type(
        "TwoPStrategy",
        (PluginStrategy,),
        {"name": "two_p", "params_model": TwoP, "slug_abbrev": {"p_eriod": "period"}},
    )
    with pytest.raises(ValueError, match="slug keys"):
        register(spec)


def test_entry_point_plugins_load_on_first_lookup(
    monkeypatch: pytest.MonkeyPatch, scratch_names: list[str]
) -> None:
    scratch_names.append("plugin_demo")
    good = importlib.metadata.EntryPoint(
        name="plugin_demo",
        value=f"{__name__}:PluginStrategy",
        group=registry.ENTRY_POINT_GROUP,
    )
    broken = importlib.metadata.EntryPoint(
        name="broken", value="no_such_module_xyz:Thing", group=registry.ENTRY_POINT_GROUP
    )
    seen: list[str] = []

    def entry_points(**kwargs: Any) -> list[importlib.metadata.EntryPoint]:
        seen.append(kwargs["group"])
        return [broken, good]

    monkeypatch.setattr(registry.importlib.metadata, "entry_points", entry_points)
    monkeypatch.setattr(registry, "_entry_points_loaded", False)
    assert isinstance(get_strategy("plugin_demo"), PluginStrategy)  # broken one only logged
    assert seen == [registry.ENTRY_POINT_GROUP]
    strategy_names()
    assert seen == [registry.ENTRY_POINT_GROUP], "entry points are scanned once"
