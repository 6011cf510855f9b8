"""Capacity pools: an hour's cost split by compute time, idle time included; per-second rates."""
from __future__ import annotations

from datetime import UTC, date, datetime

import duckdb
import pytest

from tests.warehouse.pricing.records import PRICES, record, table
from warehouse.pricing.book import load_book
from warehouse.pricing.capacity import PoolIn, allocate_closed_hour, allocate_hour, allocate_table, pool_versions

BOOK = load_book(PRICES / "acme.toml")  # fraud-gpu: 8 GPUs * $2.85 = $22.80 an hour, hourly; embed-cpu per second
HOUR = datetime(2026, 11, 2, 10, 0, tzinfo=UTC)
CLOSED = datetime(2026, 11, 3, tzinfo=UTC)


def fraud(minute: int, duration_ms: float | None, hour: int = 10, **fields) -> dict:
    return record(provider="self-hosted", response_model="fraud-xgb", compute_pool="fraud-gpu",
                  start_time=datetime(2026, 11, 2, hour, minute, tzinfo=UTC), duration_ms=duration_ms, **fields)


def test_an_hour_with_idle_time_is_carried_by_its_inferences():
    # Three inferences used 10 + 5 + 5 = 20 minutes of compute in the hour; the pool sat idle the
    # other 40 but cost $22.80 all the same. Shares 10/20, 5/20, 5/20:
    # 22.80 * 0.50 = 11.40, 22.80 * 0.25 = 5.70, 5.70. Unit cost $22.80 / 1200 s = $0.019 per compute-second,
    # three times the $0.00633 a fully busy pool would cost.
    rows = table(fraud(1, 600_000.0), fraud(20, 300_000.0), fraud(59, 300_000.0))
    costs = allocate_hour(rows, BOOK.pool("fraud-gpu", HOUR.date()))
    assert costs["cost_usd"].to_pylist() == pytest.approx([11.40, 5.70, 5.70], rel=1e-12)
    assert sum(costs["cost_usd"].to_pylist()) == pytest.approx(22.80, rel=1e-12)
    assert set(costs["price_ref"].to_pylist()) == {"pool:fraud-gpu@2026-01-01"}
    assert costs["span_id"].to_pylist() == rows["span_id"].to_pylist()


def test_an_hour_without_durations_is_split_evenly():
    costs = allocate_hour(table(fraud(5, None), fraud(6, 0.0)), BOOK.pool("fraud-gpu", HOUR.date()))
    assert costs["cost_usd"].to_pylist() == pytest.approx([11.40, 11.40], rel=1e-12)


def test_allocate_table_per_pool_and_hour_aligned_to_rows():
    rows = table(
        fraud(1, 30_000.0),                        # hour 10: 30 s of 90 s  -> 22.80 / 3 = 7.60
        record(provider="openai", response_model="gpt-4o", input_tokens=10, output_tokens=1),  # not a pool: NULL
        fraud(30, 60_000.0),                       # hour 10: 60 s of 90 s  -> 15.20
        fraud(5, 1_000.0, hour=11),                # hour 11: alone          -> 22.80
        record(provider="fraud-gpu", response_model="fraud-xgb", duration_ms=1_000.0,
               start_time=datetime(2026, 11, 2, 23, 10, tzinfo=UTC)),  # the provider names the pool; hour still open
        record(compute_pool="embed-cpu", duration_ms=1_000.0),  # a per-second pool: not allocated by the hour
    )
    costs = allocate_table(rows, BOOK, closed_before=datetime(2026, 11, 2, 23, tzinfo=UTC))
    got = costs["cost_usd"].to_pylist()
    assert [g is None for g in got] == [False, True, False, False, True, True]
    assert [g for g in got if g is not None] == pytest.approx([7.60, 15.20, 22.80], rel=1e-12)
    assert costs["price_ref"].to_pylist() == ["pool:fraud-gpu@2026-01-01", None, "pool:fraud-gpu@2026-01-01",
                                              "pool:fraud-gpu@2026-01-01", None, None]


def test_a_pool_price_change_is_a_new_version():
    versions = pool_versions([
        PoolIn(name="gpu", effective_from=date(2026, 1, 1), gpus=8, gpu_hour_usd=2.85),
        PoolIn(name="gpu", effective_from=date(2026, 6, 1), cost_per_hour_usd=18.0, allocation="per_second"),
    ])["gpu"]
    assert [(v.price_ref, v.cost_per_hour, v.allocation) for v in versions] == [
        ("pool:gpu@2026-01-01", pytest.approx(22.8), "hourly"), ("pool:gpu@2026-06-01", 18.0, "per_second")]
    assert versions[1].per_second_usd == pytest.approx(0.005)  # 18.00 / 3600


def test_allocate_closed_hour_reads_the_hour_through_duckdb():
    rows = table(fraud(1, 600_000.0), fraud(20, 300_000.0), fraud(59, 300_000.0), fraud(0, 1.0, hour=11),
                 record(provider="openai", response_model="gpt-4o", start_time=HOUR))
    conn = duckdb.connect()
    conn.register("inferences", rows)
    costs = allocate_closed_hour(conn, BOOK, "fraud-gpu", HOUR)
    assert sorted(costs["cost_usd"].to_pylist()) == pytest.approx([5.70, 5.70, 11.40], rel=1e-12)
    assert allocate_closed_hour(conn, BOOK, "embed-cpu", HOUR).num_rows == 0  # per-second pools need no hour
