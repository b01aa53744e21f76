"""Blocking data-quality checks on ``candles_1m``, one per property of DESIGN §4.

They validate what is *stored*, not what the source sent: the core's ``gap_report`` reads each day
back from the store once, and every check is judged from those reports. They are blocking, so a
run that also materialises ``candle_rollups`` stops before it when a check fails with ERROR.
Missing candles are real exchange outages (recorded, never filled) and only WARN; an empty day
is an ERROR.
"""

from collections.abc import Callable, Iterator, Sequence

from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    multi_asset_check,
)

from cryptota_core.market.frame import CandleReport, SeriesKey
from cryptota_core.storage.candle_store import BASE_INTERVAL
from cryptota_pipelines.keys import CANDLES_1M
from cryptota_pipelines.partitions import SeriesWindow, day_window
from cryptota_pipelines.resources import (
    CandleStoreResource,
    MarketSourceResource,
)

DayReports = Sequence[tuple[SeriesWindow, CandleReport]]


def _judge_defect(
    name: str, reports: DayReports, count: Callable[[CandleReport], int]
) -> AssetCheckResult:
    """Pass when no stored candle of any covered day has the defect ``count`` counts."""
    bad = {str(w): count(r) for w, r in reports if count(r)}
    return AssetCheckResult(
        check_name=name,
        passed=not bad,
        severity=AssetCheckSeverity.ERROR,
        metadata={"defective_candles": sum(bad.values()), "days": len(reports), "by_day": bad},
    )


def _judge_completeness(reports: DayReports) -> AssetCheckResult:
    """WARN when candles are missing (exchange gaps happen), ERROR when a day has none at all."""
    empty = [str(w) for w, r in reports if r.rows == 0]
    missing = {str(w): r.missing_candles for w, r in reports if r.missing_candles}
    return AssetCheckResult(
        check_name="completeness",
        passed=not missing,
        severity=AssetCheckSeverity.ERROR if empty else AssetCheckSeverity.WARN,
        metadata={
            "rows": sum(r.rows for _, r in reports),
            "expected": sum(r.expected_rows or 0 for _, r in reports),
            "missing_candles": sum(missing.values()),
            "empty_days": empty,
            "missing_by_day": missing,
        },
    )


_DEFECTS: dict[str, tuple[str, Callable[[CandleReport], int]]] = {
    "no_duplicates": ("No two stored candles share an open time.", lambda r: r.duplicates),
    "ohlc_sanity": (
        "low <= min(open, close) <= max(open, close) <= high, all finite.",
        lambda r: r.ohlc_violations,
    ),
    "volume_non_negative": ("Volume >= 0 on every candle.", lambda r: r.negative_volume),
    "no_future_candles": (
        "No candle opens in the future or is not yet closed.",
        lambda r: r.future_candles,
    ),
}

CHECK_DESCRIPTIONS: dict[str, str] = {
    "completeness": "Stored candles against the expected count of the day: WARN when some are "
    "missing (exchange gaps), ERROR when the day is empty.",
    **{name: description for name, (description, _) in _DEFECTS.items()},
}


@multi_asset_check(
    specs=[
        AssetCheckSpec(name, asset=CANDLES_1M, blocking=True, description=description)
        for name, description in CHECK_DESCRIPTIONS.items()
    ],
    can_subset=True,
)
def candles_1m_checks(
    context: AssetCheckExecutionContext,
    candle_store: CandleStoreResource,
    market: MarketSourceResource,
) -> Iterator[AssetCheckResult]:
    """Read each covered day back once, then judge every selected check from those reports."""
    store, exchange = candle_store.store(), market.source().exchange
    reports = [
        (
            w,
            store.gap_report(
                SeriesKey(exchange=exchange, symbol=w.symbol, interval=BASE_INTERVAL),
                w.start,
                w.end,
            ),
        )
        for w in map(day_window, context.partition_keys)
    ]
    for check_key in context.selected_asset_check_keys:
        if check_key.name == "completeness":
            yield _judge_completeness(reports)
        else:
            yield _judge_defect(check_key.name, reports, _DEFECTS[check_key.name][1])
