"""Which parameter sets a search tries: the whole grid, or a random sample of it.

A grid is a strategy's typed parameter model crossed over lists of values
(``{"period": [7, 14], "oversold": [20, 30], "overbought": [70, 80]}``). Combinations that break
a rule between fields (``oversold >= overbought``) are skipped; a grid in which every combination
breaks one is an error. The size of the cross product is checked **before** anything is
expanded, so a grid of ten million sets is refused at once unless ``max_sets`` allows it.

Random search draws combinations uniformly from the same cross product without expanding it, so
a sample of 500 from a 10⁹-point grid costs 500 validations. Optuna's TPE was considered and left
out: the sweep kernel evaluates a thousand sets in about a second on two cores, so an exhaustive
grid is cheaper than TPE's sequential trials over the same budget, and exhaustive results are
what PBO and the deflated Sharpe ratio need (every trial counted).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from cryptota_core.errors import InvalidInputError
from cryptota_core.strategies import Strategy, StrategyParams, get_strategy
from cryptota_core.strategies.base import value_lists

DEFAULT_MAX_SETS = 100_000
"""Most parameter sets a search evaluates unless told otherwise (``--max-sets``): about a minute
of sweeping a year of 1m candles on two cores."""

Method = Literal["grid", "random"]


class SearchSpec(BaseModel):
    """What to search: a strategy, its grid, and how to walk it. Crosses the CLI and Dagster
    config boundary, hence pydantic."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    strategy: str
    grid: dict[str, list[Any]]
    method: Method = "grid"
    samples: int | None = Field(None, ge=1, description="sets drawn by a random search")
    seed: int = Field(0, description="seed of a random search's draws (numpy: 0 or more)")
    max_sets: int = Field(DEFAULT_MAX_SETS, ge=1)

    @field_validator("seed")
    @classmethod
    def _seed_not_negative(cls, value: int) -> int:
        # Checked here, where the search crosses the CLI and Dagster config boundary, not left to
        # numpy's default_rng, which fails mid-run with a traceback on a negative seed.
        if value < 0:
            raise ValueError(f"{value} is negative; use a seed of 0 or more, such as 0 or 42")
        return value

    @field_validator("grid", mode="before")
    @classmethod
    def _grid_lists(cls, value: Any) -> Any:
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except json.JSONDecodeError as e:
                raise ValueError(
                    f"the grid is not valid JSON ({e.msg} at character {e.pos})"
                ) from e
        if not isinstance(value, Mapping) or not value:
            raise ValueError(
                'the grid must be a non-empty JSON object of lists, e.g. {"period": [7, 14]}'
            )
        return value_lists(value)


def grid_size(grid: Mapping[str, Sequence[Any]]) -> int:
    """Combinations in the cross product of ``grid`` (before invalid ones are skipped)."""
    return math.prod(len(values) for values in grid.values())


def parameter_sets(spec: SearchSpec) -> list[StrategyParams]:
    """The parameter sets ``spec`` asks for, in grid order (a random search: in draw order),
    after checking the search's size against ``max_sets``."""
    strategy = get_strategy(spec.strategy)
    axes = strategy.grid_axes(spec.grid)
    size = grid_size(axes)
    if spec.method == "grid":
        if size > spec.max_sets:
            raise InvalidInputError(
                f"the grid has {size:,} combinations, more than --max-sets {spec.max_sets:,}; "
                "narrow the grid, raise --max-sets, or use --method random --samples N"
            )
        return strategy.expand_grid(axes)
    samples = spec.samples
    if samples is None:
        raise InvalidInputError("a random search needs --samples N (how many sets to draw)")
    if samples > spec.max_sets:
        raise InvalidInputError(
            f"--samples {samples:,} is more than --max-sets {spec.max_sets:,}; raise --max-sets"
        )
    if samples >= size:  # asking for everything: the grid itself
        return strategy.expand_grid(axes)
    return _sample(strategy, axes, samples, spec.seed)


def _sample(
    strategy: Strategy, axes: dict[str, list[Any]], samples: int, seed: int
) -> list[StrategyParams]:
    """``samples`` distinct valid sets drawn uniformly from the grid's cross product without
    materialising it; combinations breaking a rule are skipped, and a draw budget bounds grids
    that are mostly invalid."""
    keys = list(axes)
    lengths = np.array([len(axes[k]) for k in keys], dtype=np.int64)
    rng = np.random.default_rng(seed)
    chosen: dict[tuple[int, ...], StrategyParams] = {}
    first_skip = ""
    for _ in range(50 * samples + 1000):
        if len(chosen) == samples:
            break
        point = tuple(int(i) for i in rng.integers(0, lengths))
        if point in chosen:
            continue
        params = strategy.grid_point({k: axes[k][i] for k, i in zip(keys, point, strict=True)})
        if isinstance(params, str):
            first_skip = first_skip or params
        else:
            chosen[point] = params
    if not chosen:
        raise strategy.no_valid_set(first_skip)
    # Distinct points can still validate to equal sets (1 and 1.0): keep the first of each.
    return list(dict.fromkeys(chosen.values()))
