"""What the Dagster UI shows as tables: the candles' column schema read off the core's schema,
and frames (leaderboard, gap list, headline metrics) as typed, sortable tables."""

from __future__ import annotations

import math

import pandas as pd
from dagster import Definitions, TableSchema

from cryptota_core.app.ingest import IngestReport
from cryptota_core.market.frame import SeriesKey
from cryptota_core.storage.schema import candles
from cryptota_pipelines.defs.ingestion.assets import ingestion_metadata
from cryptota_pipelines.keys import CANDLES_1M
from cryptota_pipelines.metadata import frame_table
from cryptota_pipelines.resources import MarketSourceResource


def test_candles_1m_column_schema_is_the_stored_table(defs: Definitions) -> None:
    node = defs.get_repository_def().asset_graph.get(CANDLES_1M)
    schema = node.metadata["dagster/column_schema"]
    assert isinstance(schema, TableSchema)
    assert [c.name for c in schema.columns] == [c.name for c in candles.columns]
    types = {c.name: c.type for c in schema.columns}
    assert types["open_time"] == "datetime" and types["close"] == "float"
    assert types["trades"] == "int" and types["symbol"] == "string"
    assert all(not c.constraints.nullable for c in schema.columns)
    assert schema.constraints is not None
    assert schema.constraints.other == ["primary key (exchange, symbol, interval, open_time)"]


def test_frames_become_typed_tables_with_undefined_as_null() -> None:
    frame = pd.DataFrame(
        {
            "slug": ["rsi-p14-os30-ob70", "rsi-p7-os30-ob70"],
            "sharpe_ratio": [1.25, math.nan],
            "trade_count": pd.array([3, None], dtype="Int64"),
            "cached": [True, False],
            "window_start": pd.to_datetime(["2024-01-01", "2024-01-02"], utc=True),
            "params": [{"period": 14}, {"period": 7}],
        }
    )
    table = frame_table(frame)
    assert table.schema is not None
    assert {c.name: c.type for c in table.schema.columns} == {
        "slug": "string",
        "sharpe_ratio": "float",
        "trade_count": "int",
        "cached": "bool",
        "window_start": "datetime",
        "params": "string",
    }
    assert [r.data for r in table.records] == [
        {
            "slug": "rsi-p14-os30-ob70",
            "sharpe_ratio": 1.25,
            "trade_count": 3,
            "cached": True,
            "window_start": "2024-01-01T00:00:00+00:00",
            "params": '{"period": 14}',
        },
        {
            "slug": "rsi-p7-os30-ob70",
            "sharpe_ratio": None,
            "trade_count": None,
            "cached": False,
            "window_start": "2024-01-02T00:00:00+00:00",
            "params": '{"period": 7}',
        },
    ]


def test_the_gap_list_is_a_table_of_the_recorded_outages() -> None:
    day = pd.Timestamp("2024-02-02", tz="UTC")
    outage = (day + pd.Timedelta(hours=3), day + pd.Timedelta(hours=3, minutes=29))
    report = IngestReport(
        key=SeriesKey(exchange="binance", symbol="ETHUSDT", interval="1m"),
        start=day,
        end=day + pd.Timedelta(days=1),
        received=1410,
        written=1410,
        expected=1440,
        gaps=[outage],
    )
    metadata = ingestion_metadata(MarketSourceResource(source_name="binance"), [report], ["fp"])
    assert metadata["gaps"] == 1 and metadata["missing_candles"] == 30
    gap_list = metadata["gap_list"]
    assert [c.name for c in gap_list.schema.columns] == ["symbol", "first_missing", "last_missing"]
    assert [r.data for r in gap_list.records] == [
        {
            "symbol": "ETHUSDT",
            "first_missing": "2024-02-02T03:00:00+00:00",
            "last_missing": "2024-02-02T03:29:00+00:00",
        }
    ]
