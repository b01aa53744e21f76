"""The one NaN→None helper every boundary (JSON, database, metadata, tables) uses."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from cryptota_core.numbers import finite_or_none


@pytest.mark.parametrize(
    "value", [None, math.nan, math.inf, -math.inf, np.float64("nan"), pd.NA, np.float32("inf")]
)
def test_undefined_numbers_become_none(value: object) -> None:
    assert finite_or_none(value) is None


@pytest.mark.parametrize(
    ("value", "expected"), [(1, 1.0), (-0.5, -0.5), (np.int64(3), 3.0), (np.float64(2.5), 2.5)]
)
def test_finite_numbers_become_floats(value: object, expected: float) -> None:
    number = finite_or_none(value)
    assert number == expected and type(number) is float
