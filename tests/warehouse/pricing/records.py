"""Helpers for the pricing tests: inference records as the collector produces them, and real landing."""
from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import pyarrow as pa

from tests.warehouse.jobs.records import land_batch
from warehouse.pricing.cost import PricingDefaults, landing_transform, price_table
from warehouse.record import to_batch

PRICES = Path(__file__).resolve().parents[2] / "data" / "prices"
DAY = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)  # after every batch/flex variant in genai-prices 0.2.3 starts

_counter = iter(range(1, 10**9))


def record(**fields) -> dict:
    """One inference record; ids are unique, start_time defaults to DAY."""
    number = next(_counter)
    values = {"trace_id": f"{number:032x}", "span_id": f"{number:016x}", "start_time": DAY,
              "ingest_time": DAY, "duration_ms": 100.0, "status": "ok"}
    values.update(fields)
    return values


def table(*rows: dict) -> pa.Table:
    return pa.Table.from_batches([to_batch(rows)])


def price_rows(book, *rows: dict, defaults: PricingDefaults = PricingDefaults()) -> list[dict]:
    """The four cost columns of each row after price_table."""
    priced = price_table(table(*rows), book, defaults)
    return priced.select(["cost_usd", "computed_cost_usd", "cost_source", "price_ref"]).to_pylist()


def land(data_dir: Path, rows: list[dict], book) -> None:
    """Land rows through the real write-ahead log and lander, with the pricing hook, as the server does."""
    land_batch(Path(data_dir), "inferences", to_batch(rows), transform=landing_transform(book))


def at(day: date, hour: int = 12, minute: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=UTC)
