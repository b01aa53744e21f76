"""The broker settings of a backtest (DESIGN §5), validated in one place.

Cash, commission, slippage and stake cross every boundary: the ``cryptota`` flags, the ad-hoc
Dagster job's run config, the research code and both engines. They are checked here, by one
pydantic model, so every path refuses the same values with the same line, and a caller that
validates first (the CLI, the ad-hoc job) can do so before any candle is read.

The bounds say why:

* ``cash``: positive, finite, at most :data:`MAX_CASH`. Beyond that no account exists, and the
  engines multiply cash by price ratios (the buy-and-hold benchmark is ``cash × close /
  close[0]``): ``--cash 1e308`` overflows to infinity at the first rising close.
* ``commission`` and ``slippage``: fractions in ``[0, 1)``; a fee of 100 % or more of the notional
  is a mistyped percentage (``--commission 0.1`` is already 10 %).
* ``stake``: the fraction of equity an entry buys, in ``(0, 1]``. The broker is a cash account
  without leverage, so a larger stake can only be rejected for lack of cash at every entry.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from cryptota_core.errors import InvalidInputError

MAX_CASH = 1e15
"""Largest starting cash: a thousand trillion, beyond any account, and far enough from float64's
limit (about 1.8e308) that products of equity with prices and quantities cannot overflow."""

_MAX_CASH_TEXT = f"{MAX_CASH:.0e}".replace("e+", "e")
"""``1e15``, as the errors and the run config's description write the bound."""


class BrokerSettingError(InvalidInputError):
    """One broker setting is out of range. ``str()`` is the CLI's line (``invalid --stake 2.0:
    use ...``); :attr:`field_message` names the field as a run config spells it."""

    def __init__(self, field: str, value: object) -> None:
        self.field = field
        self.value = value
        self.accepted = ACCEPTED.get(field, "one of " + ", ".join(ACCEPTED))
        super().__init__(f"invalid --{field} {value!r}: use {self.accepted}")

    @property
    def field_message(self) -> str:
        """``stake: 2.0 is invalid: use ...``, for boundaries whose fields have no ``--``."""
        return f"{self.field}: {self.value!r} is invalid: use {self.accepted}"


class BrokerSettings(BaseModel):
    """Cash, commission, slippage and stake of a backtest or a search (DESIGN §5 defaults).

    The one place the defaults and bounds are written: the CLI's flags, the ad-hoc job's run
    config, the engines' and the research code's keyword arguments and the result's fields all
    take their defaults from here (:data:`DEFAULT_BROKER`, :attr:`model_fields`), so changing
    one cannot leave a path running with the old value.

    Constructing one validates it: an out-of-range value raises :class:`BrokerSettingError`
    (one line naming the setting), not pydantic's multi-line error, so any caller can let it
    reach the CLI. Frozen, so a search's settings cannot change between its runs."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    cash: float = Field(
        10_000.0, gt=0, le=MAX_CASH, description=f"Starting capital, in (0, {_MAX_CASH_TEXT}]."
    )
    commission: float = Field(
        0.001, ge=0, lt=1, description="Fraction of notional per fill, [0, 1)."
    )
    slippage: float = Field(
        0.0, ge=0, lt=1, description="Fraction the fill moves against you, [0, 1)."
    )
    stake: float = Field(0.95, gt=0, le=1, description="Fraction of equity an entry buys, (0, 1].")

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as e:
            first = e.errors()[0]
            field = str(first["loc"][0]) if first["loc"] else "broker"
            raise BrokerSettingError(field, first.get("input")) from None

    def kwargs(self) -> dict[str, float]:
        """The settings as the engines' keyword arguments."""
        return {
            "cash": self.cash,
            "commission": self.commission,
            "slippage": self.slippage,
            "stake": self.stake,
        }


DEFAULT_BROKER = BrokerSettings()
"""DESIGN §5's settings, for the signatures that take them one by one (``cash=...``): their
defaults read this instance's fields instead of repeating the numbers."""

ACCEPTED: dict[str, str] = {
    "cash": f"a positive amount up to {_MAX_CASH_TEXT}, such as {DEFAULT_BROKER.cash:g}",
    "commission": (
        f"a fraction of the notional in [0, 1), such as {DEFAULT_BROKER.commission:g} "
        f"({DEFAULT_BROKER.commission * 100:g} %)"
    ),
    "slippage": "a fraction of the price in [0, 1), such as 0.0005 (0.05 %)",
    "stake": f"a fraction of equity in (0, 1], such as {DEFAULT_BROKER.stake:g}",
}
"""What each setting accepts, as the one-line errors say it; the examples of cash, commission
and stake are the defaults, read from the model so they cannot drift from it. Built after the
model because the default instance must exist first (:class:`BrokerSettingError` only reads it
when raised)."""
