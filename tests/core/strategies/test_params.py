"""Parameter models, parsing, slugs and grids: what users type reaches them as typed values or as
one clear line."""

from __future__ import annotations

import re

import pytest
from pydantic import ValidationError

from cryptota_core.errors import InvalidInputError
from cryptota_core.strategies import get_strategy, strategy_names
from cryptota_core.strategies.rsi import RsiParams
from cryptota_core.strategies.rsi_ma import RsiMaParams

URL_SAFE = re.compile(r"[a-z][a-z0-9_]*(-[a-z]+[A-Za-z0-9._~]+)*")


def _one_line(error: pytest.ExceptionInfo[InvalidInputError]) -> str:
    message = str(error.value)
    assert "\n" not in message
    assert message
    return message


def test_defaults_and_dict_and_json_parse_to_the_same_model() -> None:
    rsi = get_strategy("rsi")
    expected = RsiParams(period=14, oversold=30, overbought=70)
    assert rsi.parse_params({}) == expected
    assert rsi.parse_params(None) == expected
    assert rsi.parse_params({"period": 14, "oversold": 30, "overbought": 70}) == expected
    assert rsi.parse_params('{"period":14,"oversold":30,"overbought":70}') == expected
    assert rsi.parse_params(expected) is expected


def test_params_are_frozen_and_hashable() -> None:
    params = get_strategy("rsi").parse_params({"period": 7})
    with pytest.raises(ValidationError):
        params.period = 9  # type: ignore[misc]
    assert {params: 1}[get_strategy("rsi").parse_params({"period": 7})] == 1


def test_unknown_key_names_the_closest_valid_one() -> None:
    with pytest.raises(InvalidInputError) as e:
        get_strategy("rsi").parse_params({"oversol": 25})
    assert _one_line(e) == "unknown parameter 'oversol' for rsi; did you mean 'oversold'?"


def test_unknown_key_without_a_close_match_lists_the_valid_ones() -> None:
    with pytest.raises(InvalidInputError) as e:
        get_strategy("rsi").parse_params({"zzz": 1})
    assert _one_line(e) == (
        "unknown parameter 'zzz' for rsi; valid parameters: period, oversold, overbought"
    )


@pytest.mark.parametrize("name", ["rsi", "rsi_ma"])
@pytest.mark.parametrize(("oversold", "overbought"), [(70, 30), (50, 50)])
def test_oversold_must_be_below_overbought(name: str, oversold: int, overbought: int) -> None:
    with pytest.raises(InvalidInputError) as e:
        get_strategy(name).parse_params({"oversold": oversold, "overbought": overbought})
    message = _one_line(e)
    assert message == (
        f"invalid parameters for {name}: oversold ({oversold}) must be below overbought "
        f"({overbought})"
    )


@pytest.mark.parametrize(
    ("name", "raw", "needle"),
    [
        ("rsi", {"period": 0}, "period=0"),
        ("rsi", {"period": -3}, "period=-3"),
        ("rsi", {"period": 14.5}, "period=14.5"),
        ("rsi", {"period": True}, "expected a number"),
        ("rsi", {"oversold": 0}, "oversold=0"),
        ("rsi", {"overbought": 100}, "overbought=100"),
        ("rsi_ma", {"ma_period": 1}, "ma_period=1"),
        ("rsi_divergence", {"pivot_window": 0}, "pivot_window=0"),
        ("rsi_divergence", {"max_gap": 5, "pivot_window": 5}, "max_gap (5) must exceed"),
        ("grid", {"levels": 0}, "levels=0"),
        ("grid", {"levels": 10, "order_size": 0.1}, "must be at most 1"),
        ("grid", {"levels": 20, "spacing_pct": 5}, "must stay below 100"),
    ],
)
def test_bad_values_fail_with_one_line(name: str, raw: dict[str, object], needle: str) -> None:
    with pytest.raises(InvalidInputError) as e:
        get_strategy(name).parse_params(raw)
    message = _one_line(e)
    assert message.startswith(f"invalid parameters for {name}: ")
    assert needle in message


def test_period_zero_message_is_actionable() -> None:
    with pytest.raises(InvalidInputError) as e:
        get_strategy("rsi").parse_params({"period": 0})
    assert _one_line(e) == (
        "invalid parameters for rsi: period=0: Input should be greater than or equal to 2"
    )


@pytest.mark.parametrize(
    ("raw", "needle"),
    [
        ('{"period": 14', "is not valid JSON"),
        ("[14, 30, 70]", "must be a JSON object"),
        ('"rsi"', "must be a JSON object"),
    ],
)
def test_bad_json_fails_with_one_line(raw: str, needle: str) -> None:
    with pytest.raises(InvalidInputError) as e:
        get_strategy("rsi").parse_params(raw)
    message = _one_line(e)
    assert needle in message
    assert '{"period": 14, "oversold": 30.0, "overbought": 70.0}' in message


def test_params_of_another_strategy_are_refused() -> None:
    with pytest.raises(InvalidInputError, match="do not belong to strategy rsi"):
        get_strategy("rsi").parse_params(get_strategy("grid").parse_params({}))


def test_subclass_params_are_not_taken_for_the_parent() -> None:
    # RsiMaParams is an RsiParams; rsi must not silently accept its extra ma_period.
    rsi_ma_params = RsiMaParams()
    assert isinstance(rsi_ma_params, RsiParams)
    assert get_strategy("rsi_ma").parse_params(rsi_ma_params) is rsi_ma_params
    with pytest.raises(InvalidInputError, match="do not belong to strategy rsi"):
        get_strategy("rsi").parse_params(rsi_ma_params)


@pytest.mark.parametrize(
    ("name", "raw", "slug"),
    [
        ("rsi", {}, "rsi-p14-os30-ob70"),
        ("rsi", {"period": 7, "oversold": 27.5, "overbought": 80}, "rsi-p7-os27.5-ob80"),
        ("rsi_ma", {}, "rsi_ma-p14-os30-ob70-ma50"),
        ("rsi_ma", {"ma_period": 200}, "rsi_ma-p14-os30-ob70-ma200"),
        ("rsi_divergence", {}, "rsi_divergence-p14-pw5-gap60"),
        ("grid", {}, "grid-l5-s1-q0.08"),
        ("grid", {"levels": 3, "spacing_pct": 0.25, "order_size": 0.1}, "grid-l3-s0.25-q0.1"),
        ("grid", {"order_size": 1e-05}, "grid-l5-s1-q1em05"),
    ],
)
def test_slug(name: str, raw: dict[str, object], slug: str) -> None:
    spec = get_strategy(name)
    assert spec.slug(raw) == slug
    assert spec.slug(spec.parse_params(raw)) == slug  # model or dict: same slug


@pytest.mark.parametrize("name", strategy_names())
def test_slugs_of_the_default_grid_are_unique_and_url_safe(name: str) -> None:
    spec = get_strategy(name)
    sets = spec.expand_grid(spec.default_grid)
    slugs = [spec.slug(p) for p in sets]
    assert len(set(slugs)) == len(slugs)
    for slug in slugs:
        assert not set("|,[] ") & set(slug), slug
        assert URL_SAFE.fullmatch(slug), slug
        assert slug.startswith(f"{name}-")


def test_expand_grid_skips_combinations_that_break_a_rule() -> None:
    grid = {"period": [7, 14], "oversold": [30, 70], "overbought": [70, 80]}
    sets = get_strategy("rsi").expand_grid(grid)
    pairs = [(p.period, p.oversold, p.overbought) for p in sets]  # type: ignore[attr-defined]
    assert pairs == [
        (7, 30, 70),
        (7, 30, 80),
        (7, 70, 80),
        (14, 30, 70),
        (14, 30, 80),
        (14, 70, 80),
    ]


def test_expand_grid_accepts_json_scalars_and_dedupes() -> None:
    sets = get_strategy("rsi").expand_grid('{"period": [14, 14.0], "oversold": 25}')
    assert [get_strategy("rsi").slug(p) for p in sets] == ["rsi-p14-os25-ob70"]


def test_expand_grid_rejects_unknown_keys() -> None:
    with pytest.raises(InvalidInputError) as e:
        get_strategy("rsi").expand_grid({"periods": [7, 14]})
    assert _one_line(e) == "unknown parameter 'periods' for rsi; did you mean 'period'?"


def test_expand_grid_rejects_values_no_combination_accepts() -> None:
    with pytest.raises(InvalidInputError) as e:
        get_strategy("rsi").expand_grid({"period": [0, 14]})
    assert "period=0" in _one_line(e)


@pytest.mark.parametrize(
    ("grid", "needle"),
    [
        ({"oversold": [80], "overbought": [70]}, "no valid parameter set"),
        ({"period": []}, "empty list"),
        ({}, "non-empty JSON object"),
        ("[1, 2]", "non-empty JSON object"),
    ],
)
def test_expand_grid_with_nothing_to_run_fails(grid: object, needle: str) -> None:
    with pytest.raises(InvalidInputError) as e:
        get_strategy("rsi").expand_grid(grid)  # type: ignore[arg-type]
    assert needle in _one_line(e)


@pytest.mark.parametrize(
    ("name", "raw", "warmup"),
    [
        ("rsi", {"period": 14}, 14),
        ("rsi_ma", {"period": 14, "ma_period": 50}, 49),
        ("rsi_ma", {"period": 21, "ma_period": 10}, 21),
        ("rsi_divergence", {"period": 14, "pivot_window": 5}, 19),
        ("rsi_divergence", {"period": 2, "pivot_window": 5}, 10),
        ("grid", {}, 0),
    ],
)
def test_warmup(name: str, raw: dict[str, object], warmup: int) -> None:
    spec = get_strategy(name)
    assert spec.warmup(spec.parse_params(raw)) == warmup


def test_expand_grid_accepts_numpy_arrays_and_ranges() -> None:
    import numpy as np

    sets = get_strategy("rsi").expand_grid(
        {"period": np.array([7, 14]), "oversold": range(20, 31, 10)}
    )
    assert [get_strategy("rsi").slug(p) for p in sets] == [
        "rsi-p7-os20-ob70",
        "rsi-p7-os30-ob70",
        "rsi-p14-os20-ob70",
        "rsi-p14-os30-ob70",
    ]
