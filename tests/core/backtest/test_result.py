"""BacktestResult's one dict form: strict JSON out, the same result back in."""

from __future__ import annotations

import json
import math

import pandas as pd

from cryptota_core.backtest.result import HEADLINE_METRICS, BacktestResult
from tests.core.storage.test_results_store import make_result


def test_to_dict_is_strict_json_and_from_dict_rebuilds_the_result() -> None:
    original = make_result(metrics={"omega_ratio": math.nan, "tail_ratio": -math.inf})
    text = json.dumps(original.to_dict(), allow_nan=False)  # no NaN, no inf, no numpy types

    back = BacktestResult.from_dict(
        json.loads(text), equity=original.equity, benchmark=original.benchmark
    )

    assert back.to_dict() == original.to_dict()
    pd.testing.assert_frame_equal(back.trades, original.trades, check_exact=True)
    assert back.start == original.start and str(back.start.tz) == "UTC"
    assert back.metrics["omega_ratio"] is None and back.metrics["tail_ratio"] is None
    assert back.orders.empty  # orders are not part of the dict form


def test_headline_is_the_one_list_with_undefined_as_none() -> None:
    result = make_result(metrics={"sharpe_ratio": math.nan})
    assert list(result.headline()) == list(HEADLINE_METRICS)
    assert result.headline()["sharpe_ratio"] is None
    assert result.headline()["win_rate"] == 0.5
