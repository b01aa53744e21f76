"""Tables in the Dagster UI: the column schema of a stored table, and frames as sortable tables.

A column schema is read off the core's SQLAlchemy schema (``cryptota_core.storage.schema``), the
one definition of every table, so the UI can never list a column the database does not have. A
frame becomes a ``MetadataValue.table`` with a typed schema, which the UI renders as a table
sortable by any column (a Markdown table is text and sorts by nothing).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from datetime import date, datetime
from typing import Any

import numpy as np
import pandas as pd
from dagster import (
    MetadataValue,
    TableColumn,
    TableColumnConstraints,
    TableConstraints,
    TableMetadataValue,
    TableRecord,
    TableSchema,
)
from sqlalchemy import Table

from cryptota_core.display import compact_labels, readable_frame
from cryptota_core.numbers import finite_or_none

_PYTHON_TYPES: dict[type, str] = {
    bool: "bool",
    int: "int",
    float: "float",
    str: "string",
    datetime: "datetime",
    date: "date",
    dict: "json",
    list: "json",
}
_DTYPE_KINDS = {"b": "bool", "i": "int", "u": "int", "f": "float", "M": "datetime"}


def column_schema(table: Table) -> TableSchema:
    """The schema of a table of the core's schema: each column with its type and nullability,
    and the primary key as a table constraint."""
    key = [column.name for column in table.primary_key.columns]
    return TableSchema(
        columns=[
            TableColumn(
                name=column.name,
                type=_PYTHON_TYPES.get(column.type.python_type, "string"),
                description=column.comment,
                constraints=TableColumnConstraints(nullable=bool(column.nullable)),
            )
            for column in table.columns
        ],
        constraints=TableConstraints(other=[f"primary key ({', '.join(key)})"]) if key else None,
    )


def frame_table(frame: pd.DataFrame) -> TableMetadataValue:
    """``frame`` as a UI table: numbers stay numbers (undefined ones null), times ISO-8601 UTC,
    anything else text (a dict or list as JSON)."""
    schema = TableSchema(
        columns=[
            TableColumn(name=str(name), type=_DTYPE_KINDS.get(dtype.kind, "string"))
            for name, dtype in frame.dtypes.items()
        ]
    )
    records = [
        TableRecord({str(name): _cell(value) for name, value in row.items()})
        for row in frame.to_dict(orient="records")
    ]
    return MetadataValue.table(records=records, schema=schema)


def figures_table(frame: pd.DataFrame) -> TableMetadataValue:
    """A table of figures as people read it in the UI's narrow panel: percent, counts and four
    significant digits (:func:`~cryptota_core.display.readable_frame`) under compact headers
    (:func:`~cryptota_core.display.compact_labels`)."""
    return frame_table(compact_labels(readable_frame(frame)))


def _cell(value: Any) -> str | int | float | bool | None:
    """One value as a table record holds it."""
    if isinstance(value, bool | str):
        return value
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, Mapping | list):
        return json.dumps(value, sort_keys=True, default=str)
    if isinstance(value, datetime):
        return None if pd.isna(value) else pd.Timestamp(value).isoformat()
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, int | np.integer):
        return int(value)
    return finite_or_none(value)


def png_markdown(png: bytes, alt: str) -> MetadataValue:
    """A PNG inlined in Markdown metadata, which the UI shows as a picture (the Agg plots of
    the core: equity curves, objective heatmaps, walk-forward equity)."""
    encoded = base64.b64encode(png).decode("ascii")
    return MetadataValue.md(f"![{alt}](data:image/png;base64,{encoded})")
