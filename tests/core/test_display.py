"""How numbers read: percentages where people read percentages, whole counts, four significant
digits elsewhere, and one spelling of an undefined value."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from cryptota_core.display import (
    format_metric,
    format_number,
    is_count,
    is_percent,
    metadata_number,
    readable_frame,
    significant,
)


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (10_234.56, "10,235"),
        (1.23456789, "1.235"),
        (0.012345, "0.01235"),
        (-2.5, "-2.500"),
        (0.0, "0"),
        (123_456_789.0, "123,456,789"),
        (1.5e-9, "1.500e-09"),
        (None, "-"),
        (math.nan, "-"),
        (math.inf, "-"),
    ],
)
def test_format_number_has_four_significant_digits_and_no_exponent_for_everyday_sizes(
    value: float | None, shown: str
) -> None:
    assert format_number(value) == shown


@pytest.mark.parametrize(
    ("name", "value", "shown"),
    [
        ("total_return", 0.123456, "12.35 %"),
        ("max_drawdown", -0.0421, "-4.210 %"),
        ("win_rate", 0.5, "50.00 %"),
        ("exposure_pct", 0.2003, "20.03 %"),
        ("rsi/oos_total_return", 0.07, "7.000 %"),
        ("trade_count", 7.0, "7"),
        ("max_consecutive_losses", 3.0, "3"),
        ("avg_trade_duration_bars", 73.25, "73.25"),
        ("sharpe_ratio", 1.234567, "1.235"),
        ("equity_final", 10_523.4, "10,523"),
        ("sharpe_ratio", None, "-"),
        ("trade_count", math.nan, "-"),
    ],
)
def test_format_metric_reads_as_a_quant_reads_it(
    name: str, value: float | None, shown: str
) -> None:
    assert format_metric(name, value) == shown


def test_counts_and_percentages_are_told_apart_by_name() -> None:
    assert is_count("trade_count") and is_count("window_no")
    assert is_percent("rsi/profitable_windows")  # a share of the windows, not a count
    assert not is_count("avg_trade_duration_bars") and not is_count("sharpe_ratio")
    assert is_percent("best_trade_pct") and is_percent("annual_volatility")
    assert not is_percent("sharpe_ratio") and not is_percent("profit_factor")


def test_metadata_numbers_stay_numbers() -> None:
    assert metadata_number("trade_count", 7.0) == 7
    assert isinstance(metadata_number("trade_count", 7.0), int)
    assert metadata_number("total_return", 0.123456) == pytest.approx(12.35)
    assert metadata_number("sharpe_ratio", 1.234567) == pytest.approx(1.235)
    assert metadata_number("sharpe_ratio", math.nan) is None
    assert significant(0.000123456) == pytest.approx(0.0001235)
    assert significant(98_765.4) == 98_770


def test_a_readable_frame_names_its_percentages_and_keeps_counts_whole() -> None:
    frame = pd.DataFrame(
        {
            "slug": ["a", "b"],
            "sharpe_ratio": [1.234567, math.nan],
            "total_return": [0.123456, -0.05],
            "trade_count": [7.0, math.nan],
            "cached": [True, False],
        }
    )
    shown = readable_frame(frame)
    assert list(shown.columns) == [
        "slug",
        "sharpe_ratio",
        "total_return %",
        "trade_count",
        "cached",
    ]
    assert shown["sharpe_ratio"].iloc[0] == pytest.approx(1.235) and pd.isna(
        shown["sharpe_ratio"].iloc[1]
    )
    assert shown["total_return %"].tolist() == pytest.approx([12.35, -5.0])
    assert str(shown["trade_count"].dtype) == "Int64" and shown["trade_count"].iloc[0] == 7
    assert shown["trade_count"].isna().iloc[1] and shown["cached"].tolist() == [True, False]


def test_compact_labels_keep_the_percent_sign_and_leave_other_columns() -> None:
    from cryptota_core.display import compact_labels

    frame = readable_frame(
        pd.DataFrame({"slug": ["a"], "sharpe_ratio": [1.0], "max_drawdown": [-0.1], "bars": [3]})
    )
    assert list(compact_labels(frame).columns) == ["slug", "Sharpe", "max DD %", "bars"]


def test_a_readable_frame_rounds_a_score_column_that_concatenation_left_as_objects() -> None:
    # one strategy's windows have no defined score (all None): concatenated with another's
    # floats the column is object dtype, and would print all sixteen digits in the UI
    defined = pd.DataFrame({"out_sample_score": [1.2345678901234567], "chosen": ["a"]})
    undefined = pd.DataFrame({"out_sample_score": [None], "chosen": ["b"]})
    frame = pd.concat([defined, undefined], ignore_index=True)
    assert frame["out_sample_score"].dtype == object
    shown = readable_frame(frame)
    assert shown["out_sample_score"].iloc[0] == pytest.approx(1.235, abs=0)
    assert pd.isna(shown["out_sample_score"].iloc[1])
    assert shown["chosen"].tolist() == ["a", "b"]  # text stays text
    flags = readable_frame(pd.DataFrame({"cached": pd.Series([True, None], dtype=object)}))
    assert flags["cached"].tolist() == [True, None]  # booleans are not numbers here
