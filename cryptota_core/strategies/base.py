"""Strategy specs and typed parameters.

A strategy is two things:

* a **spec** (:class:`Strategy`): its registry name, its typed parameter model, a small default
  grid for the demo and the optimiser, its warm-up, its backtrader class and, optionally, its
  numba kernel for the fast engine and the sweep (:attr:`Strategy.kernel`). The CLI, the
  pipelines and the optimiser only ever talk to specs, so a user strategy plugs in by writing
  one module (see ``docs/custom-strategy.md``);
* a **backtrader implementation** (:mod:`cryptota_core.strategies.bt`), a subclass of
  :class:`~cryptota_core.strategies.bt.base.LongOnlyStrategy` or ``LongShortStrategy`` that
  only answers "enter now?" / "exit now?" on the bar that just closed.

This module does not import backtrader: a sweep or a fast-engine run never pays for it.
"""

from __future__ import annotations

import difflib
import importlib
import itertools
import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict, ValidationError, ValidationInfo, field_validator

from cryptota_core.errors import InvalidInputError

if TYPE_CHECKING:
    from cryptota_core.strategies.bt.base import BaseBtStrategy
    from cryptota_core.strategies.kernel import StrategyKernel

__all__ = [
    "Fill",
    "OrderRecord",
    "Strategy",
    "StrategyParams",
]

_SLUG_TEXT = re.compile(r"[^a-z0-9._~]+")
CLASS_PATH = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*")
"""A backtrader class named by its place, ``package.module:Class``."""


class StrategyParams(BaseModel):
    """Base of every strategy's parameter model.

    Frozen so a parameter set can be hashed, used as a dict key and never mutated behind a
    result's back; ``extra="forbid"`` so a typo is an error rather than a silently ignored value
    (the spec's :meth:`Strategy.parse_params` turns it into a did-you-mean message). Bounds are
    declared with ``Field``; rules between fields with a ``model_validator``. Every field should
    have a default so ``{}`` is a valid parameter set.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        """Pydantic's lax mode reads ``true`` as 1; a boolean for a number is always a mistake."""
        field = cls.model_fields.get(info.field_name or "")
        if isinstance(value, bool) and field is not None and field.annotation in (int, float):
            raise ValueError(f"expected a number, got {str(value).lower()}")
        return value


@dataclass(frozen=True)
class Fill:
    """One order execution as the broker reported it. ``size`` is signed (buy > 0, sell < 0);
    ``bar`` is the index of the candle whose open (or intrabar limit) it filled at."""

    bar: int
    size: float
    price: float
    commission: float


@dataclass
class OrderRecord:
    """What happened to one order: created on ``created_bar`` after that bar closed, then filled,
    rejected (not enough cash at fill), cancelled, or still open when the data ended."""

    created_bar: int
    side: str  # "buy" | "sell"
    type: str  # "market" | "limit"
    price: float  # limit price; NaN for market orders
    size: float  # requested, positive
    status: str = "open"
    fill_bar: int | None = None
    fill_price: float = math.nan
    commission: float = math.nan


def value_lists(grid: Mapping[Any, Any]) -> dict[str, list[Any]]:
    """A grid's values as lists: a scalar (a string too) is a one-value list."""
    return {
        str(key): list(values)
        if isinstance(values, Iterable) and not isinstance(values, str | bytes | Mapping)
        else [values]
        for key, values in grid.items()
    }


class Strategy:
    """A strategy spec: everything the CLI, pipelines and optimiser need to know about it.

    Subclasses set the class variables and usually only ``bt_class`` and :meth:`warmup`; the
    default :meth:`bt_strategy` bakes the parameters into a subclass of ``bt_class``. Specs are
    stateless; the registry holds one instance per name.
    """

    name: ClassVar[str]
    """Registry key, also the module name and the slug prefix: lower case, digits, ``_``."""
    params_model: ClassVar[type[StrategyParams]]
    default_grid: ClassVar[dict[str, list[Any]]] = {}
    """A small grid for the demo and the optimiser (a few dozen combinations at most)."""
    slug_abbrev: ClassVar[dict[str, str]] = {}
    """Short slug keys per parameter (``period`` → ``p``); missing ones use the field name."""
    bt_class: ClassVar[type[BaseBtStrategy] | str]
    """The backtrader implementation, or ``"package.module:Class"`` naming it so that it is
    imported only when a backtrader run needs it (the built-ins do: importing backtrader costs a
    fifth of a second of every sweep). :meth:`backtrader_class` resolves it and
    :meth:`bt_strategy` binds parameters to it."""
    description: ClassVar[str] = ""
    kernel: ClassVar[StrategyKernel | None] = None
    """How the fast engine and the sweep run this strategy (see
    :mod:`cryptota_core.strategies.kernel`); None: backtrader only. Read through
    :meth:`fast_kernel`, which does not inherit it."""

    def fast_kernel(self) -> StrategyKernel | None:
        """The kernel this very class declares. A subclass does not inherit its parent's: it may
        change the rules (its ``bt_class``) while keeping the parameters, and a kernel that no
        longer mirrors backtrader would silently give other trades on the fast engine."""
        declared: StrategyKernel | None = vars(type(self)).get("kernel")
        return declared

    # ----------------------------------------------------------------------------- parameters
    def warmup(self, params: StrategyParams) -> int:
        """Bars before every indicator is defined: the first bar that may signal is bar
        ``warmup(params)`` (0-based), so the first possible fill is at bar ``warmup + 1``."""
        return 0

    def parse_params(self, raw: Mapping[str, Any] | str | StrategyParams | None) -> StrategyParams:
        """Validate user parameters (a dict, a JSON object string, or a parameter model) into this
        strategy's model. Raises :class:`InvalidInputError` with a one-line message naming the bad
        key or value and what to pass instead."""
        if type(raw) is self.params_model:  # exact: a subclass carries fields we do not know
            return raw
        if isinstance(raw, StrategyParams):
            raise InvalidInputError(
                f"parameters of type {type(raw).__name__} do not belong to strategy {self.name}; "
                f"pass a dict such as {self._example()}"
            )
        data = self._load_json(raw, what="--params") if isinstance(raw, str) else raw
        if data is None:
            data = {}
        if not isinstance(data, Mapping):
            raise InvalidInputError(
                f"parameters for {self.name} must be a JSON object such as {self._example()}, "
                f"got {type(data).__name__}"
            )
        self._check_keys(data.keys())
        try:
            return self.params_model.model_validate(dict(data))
        except ValidationError as e:
            raise InvalidInputError(self._explain(e)) from e

    def expand_grid(self, grid: Mapping[str, Any] | str) -> list[StrategyParams]:
        """Every valid parameter set of a grid (``{"period": [7, 14], "oversold": [20, 30]}``;
        a scalar counts as a one-value list; missing keys take their default), in grid order,
        without duplicates.

        Combinations that break a rule *between* fields (oversold >= overbought) are skipped:
        a grid is a cross product and such corners are expected. A value no combination could
        accept (period 0, a string) and an unknown key are errors, because they are typos."""
        axes = self.grid_axes(grid)
        out: list[StrategyParams] = []
        seen: set[StrategyParams] = set()
        first_skip = ""
        for combo in itertools.product(*axes.values()):
            params = self.grid_point(dict(zip(axes, combo, strict=True)))
            if isinstance(params, str):
                first_skip = first_skip or params
            elif params not in seen:
                seen.add(params)
                out.append(params)
        if not out:
            raise self.no_valid_set(first_skip)
        return out

    def grid_axes(self, grid: Mapping[str, Any] | str) -> dict[str, list[Any]]:
        """A grid (a JSON object string or a mapping) as one non-empty value list per known
        parameter; an unknown key, an empty list or a grid that is no object raise."""
        data = self._load_json(grid, what="--grid") if isinstance(grid, str) else grid
        if not isinstance(data, Mapping) or not data:
            raise InvalidInputError(
                f"a grid for {self.name} must be a non-empty JSON object of lists, such as "
                f"{json.dumps(self.default_grid or {k: [v] for k, v in self._defaults().items()})}"
            )
        self._check_keys(data.keys())
        axes = value_lists(data)
        for key, values in axes.items():
            if not values:
                raise InvalidInputError(
                    f"grid value for {key!r} of {self.name} is an empty list; give at least one"
                )
        return axes

    def grid_point(self, values: Mapping[str, Any]) -> StrategyParams | str:
        """The parameter set of one grid combination, or — when it only breaks a rule between
        fields — why, as a message (such corners are skipped); a value no combination could
        accept raises."""
        try:
            return self.params_model.model_validate(dict(values))
        except ValidationError as e:
            if any(err["loc"] for err in e.errors()):
                raise InvalidInputError(self._explain(e)) from e
            return self._explain(e)

    def no_valid_set(self, reason: str) -> InvalidInputError:
        """The error of a grid (or a draw from it) in which every combination breaks a rule."""
        return InvalidInputError(
            f"no valid parameter set in the grid for {self.name}: every combination breaks a "
            f"rule ({reason}); widen the grid"
        )

    def slug(self, params: StrategyParams | Mapping[str, Any]) -> str:
        """A deterministic, URL-safe name of one parameter set, e.g. ``rsi-p14-os30-ob70``.

        Fields appear in model order; whole floats print as integers; other floats use their
        shortest repr with ``-`` spelled ``m``; the result never contains ``| , [ ]`` or
        whitespace, so it is safe as a Dagster partition key and in a URL."""
        model = self.parse_params(params)
        parts = [self.name]
        for field in type(model).model_fields:
            key = self.slug_abbrev.get(field, field.replace("_", ""))
            parts.append(f"{key}{_slug_value(getattr(model, field))}")
        return "-".join(parts)

    # --------------------------------------------------------------------------- backtrader
    def backtrader_class(self) -> type[BaseBtStrategy]:
        """The backtrader implementation, imported now when :attr:`bt_class` names it."""
        declared = self.bt_class
        if not isinstance(declared, str):
            return declared
        module, _, name = declared.partition(":")
        found: type[BaseBtStrategy] = getattr(importlib.import_module(module), name)
        return found

    def bt_strategy(self, params: StrategyParams) -> type[BaseBtStrategy]:
        """The backtrader class that runs this strategy with ``params`` (and its warm-up) baked
        in, usable directly with ``cerebro.addstrategy``; ``stake`` stays a backtrader param."""
        model = self.parse_params(params)
        base = self.backtrader_class()
        return type(
            f"{base.__name__}Bound",
            (base,),
            {"params": (("spec_params", model), ("warmup", self.warmup(model)))},
        )

    # ------------------------------------------------------------------------------ helpers
    def _defaults(self) -> dict[str, Any]:
        return {
            k: f.default for k, f in self.params_model.model_fields.items() if not f.is_required()
        }

    def _example(self) -> str:
        return json.dumps(self._defaults())

    def _load_json(self, text: str, *, what: str) -> Any:
        try:
            return json.loads(text)
        except json.JSONDecodeError as e:
            raise InvalidInputError(
                f"{what} for {self.name} is not valid JSON ({e.msg} at character {e.pos}); "
                f"pass an object such as {self._example()}"
            ) from e

    def _check_keys(self, keys: Iterable[Any]) -> None:
        fields = list(self.params_model.model_fields)
        for key in keys:
            if key in fields:
                continue
            close = difflib.get_close_matches(str(key), fields, n=1, cutoff=0.6)
            if close:
                raise InvalidInputError(
                    f"unknown parameter {key!r} for {self.name}; did you mean {close[0]!r}?"
                )
            raise InvalidInputError(
                f"unknown parameter {key!r} for {self.name}; valid parameters: {', '.join(fields)}"
            )

    def _explain(self, error: ValidationError) -> str:
        """One line for all of a pydantic error's complaints."""
        parts = []
        for err in error.errors():
            msg = str(err["msg"]).removeprefix("Value error, ")
            if err["loc"]:
                field = ".".join(str(x) for x in err["loc"])
                parts.append(f"{field}={err.get('input')!r}: {msg}")
            else:
                parts.append(msg)
        text = "; ".join(parts).replace("\n", " ")
        return f"invalid parameters for {self.name}: {text}"


def _slug_value(value: Any) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        text = str(value)
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidInputError(f"cannot name a parameter set holding {value!r}")
        text = str(int(value)) if value.is_integer() else repr(value)
    else:
        text = _SLUG_TEXT.sub("_", str(value).lower())
    return text.replace("-", "m")


def check_abbreviations(spec: type[Strategy]) -> None:
    """Fail at registration if two parameters would share a slug key (slugs must be unique)."""
    keys = [spec.slug_abbrev.get(f, f.replace("_", "")) for f in spec.params_model.model_fields]
    dupes = sorted({k for k in keys if keys.count(k) > 1})
    if dupes:
        raise ValueError(f"strategy {spec.name}: slug keys {dupes} are used by several parameters")
    bad = [k for k in keys if not re.fullmatch(r"[a-z][a-z0-9]*", k)]
    if bad:
        raise ValueError(f"strategy {spec.name}: slug keys {bad} must be lower-case letters/digits")
