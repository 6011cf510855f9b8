"""Arrow results as plain JSON values, for answers whose columns are not known in advance (SQL).

Timestamps become ISO 8601 strings (UTC with ``Z``), dates ISO dates, decimals
floats, bytes hex, NaN and infinities null (JSON has no such numbers); lists and
structs keep their shape. Anything else becomes its string form.
"""
from __future__ import annotations

import math
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import Any

import pyarrow as pa


def json_rows(table: pa.Table) -> list[list[Any]]:
    """Rows as lists, in column order (names may repeat in SQL, so not dicts)."""
    columns = [table.column(index).to_pylist() for index in range(table.num_columns)]
    return [[json_value(value) for value in row] for row in zip(*columns)]


def json_value(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(timezone.utc).replace(tzinfo=None)
            return value.isoformat() + "Z"
        return value.isoformat()
    if isinstance(value, (date, time)):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).hex()
    if isinstance(value, dict):
        return {str(key): json_value(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_value(item) for item in value]
    return str(value)
