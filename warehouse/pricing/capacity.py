"""Self-hosted capacity pools: turning GPU-hours into a cost per inference.

A pool (say a fraud model on 8 GPUs at $2.85 per GPU-hour, running 24/7) costs
the same each hour whether it is busy or idle. Each closed hour's cost is split
across that hour's inferences in the pool by their share of compute time
(``duration_ms``), so idle capacity ends up in the unit cost instead of
disappearing. A simpler per-second rate is available too (``allocation =
"per_second"``); it needs no closed hour, so it is applied at landing, but it
leaves idle time unpriced.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Iterable, Literal, Protocol

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict, Field, model_validator

ALLOCATION_SCHEMA = pa.schema([
    ("trace_id", pa.string()),
    ("span_id", pa.string()),
    ("cost_usd", pa.float64()),
    ("price_ref", pa.string()),
])


class PoolIn(BaseModel):
    """One version of a capacity pool ([[pool]] in the user price file)."""

    model_config = ConfigDict(extra="forbid")
    name: str
    effective_from: date
    cost_per_hour_usd: Decimal | None = Field(None, ge=0)
    gpus: int | None = Field(None, gt=0)
    gpu_hour_usd: Decimal | None = Field(None, ge=0)
    allocation: Literal["hourly", "per_second"] = "hourly"
    per_second_usd: Decimal | None = Field(None, ge=0)

    @model_validator(mode="after")
    def _one_cost(self) -> "PoolIn":
        by_gpu = self.gpus is not None and self.gpu_hour_usd is not None
        if (self.cost_per_hour_usd is not None) == by_gpu:
            raise ValueError(f"pool {self.name!r}: give either cost_per_hour_usd or gpus and gpu_hour_usd")
        return self


@dataclass(frozen=True)
class PoolPrice:
    """A pool version in force from ``effective_from``: what an hour (or a second) of it costs."""

    name: str
    effective_from: date
    cost_per_hour: float
    allocation: str
    per_second_usd: float

    @property
    def price_ref(self) -> str:
        return f"pool:{self.name}@{self.effective_from.isoformat()}"


def pool_versions(pools: Iterable[PoolIn]) -> dict[str, list[PoolPrice]]:
    """Pool versions by name, oldest first; a cost change is a new version."""
    versions: dict[str, list[PoolPrice]] = {}
    for pool in sorted(pools, key=lambda p: p.effective_from):
        per_hour = float(pool.cost_per_hour_usd if pool.cost_per_hour_usd is not None
                         else pool.gpus * pool.gpu_hour_usd)
        per_second = float(pool.per_second_usd) if pool.per_second_usd is not None else per_hour / 3600
        same_day = [v for v in versions.get(pool.name, []) if v.effective_from == pool.effective_from]
        if same_day:
            raise ValueError(f"pool {pool.name!r} has two versions effective {pool.effective_from}")
        versions.setdefault(pool.name, []).append(
            PoolPrice(pool.name, pool.effective_from, per_hour, pool.allocation, per_second))
    return versions


class PoolBook(Protocol):
    pools: dict

    def pool(self, name: str | None, day: date) -> PoolPrice | None: ...


def pool_column(table: pa.Table) -> pa.ChunkedArray:
    """The pool a record belongs to: inferledger.compute.pool, else a provider named after a pool."""
    return pc.coalesce(table["compute_pool"], table["provider"])


def allocate_hour(records: pa.Table, pool: PoolPrice) -> pa.Table:
    """Split one closed hour of a pool across its records by share of compute time.

    cost_i = pool cost per hour * duration_i / sum(duration). Missing durations
    count as zero; an hour whose durations are all zero is split evenly.
    """
    durations = pc.fill_null(records["duration_ms"], 0.0)
    total = pc.sum(durations).as_py() or 0.0
    if records.num_rows == 0:
        costs = pa.array([], pa.float64())
    elif total > 0:
        costs = pc.multiply(pc.divide(durations, total), pool.cost_per_hour)
    else:
        costs = pa.array([pool.cost_per_hour / records.num_rows] * records.num_rows, pa.float64())
    refs = pa.array([pool.price_ref] * records.num_rows, pa.string())
    return pa.table([records["trace_id"], records["span_id"], costs, refs], schema=ALLOCATION_SCHEMA)


def allocate_table(records: pa.Table, book: PoolBook, closed_before: datetime | None = None) -> pa.Table:
    """Hourly allocation for every hourly pool and closed hour in ``records``, one output row per input row.

    ``records`` needs provider, compute_pool, start_time and duration_ms. The
    result has cost_usd and price_ref, NULL for rows that are not in an hourly
    pool or whose hour is at or after ``closed_before`` (default: the start of
    the current hour; inferences may still arrive in an open hour).
    """
    closed_before = closed_before or datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    hourly = [name.lower() for name, versions in book.pools.items() if any(v.allocation == "hourly" for v in versions)]
    pools = pc.utf8_lower(pool_column(records))
    hours = pc.floor_temporal(records["start_time"], unit="hour")
    closed = pc.less(hours, pa.scalar(closed_before, records.schema.field("start_time").type))
    keep = pc.fill_null(pc.and_(pc.is_in(pools, pa.array(hourly, pa.string())), closed), False).combine_chunks()
    if not pc.any(keep).as_py():
        return pa.table([pa.nulls(records.num_rows, pa.float64()), pa.nulls(records.num_rows, pa.string())],
                        names=["cost_usd", "price_ref"])
    rows = pa.table({"pool": pools, "hour": hours, "duration_ms": pc.fill_null(records["duration_ms"], 0.0)})
    rows = rows.filter(keep)
    rows = rows.append_column("__row", pa.arange(0, rows.num_rows))
    joined = rows.join(_hour_sums(rows, book), ["pool", "hour"]).sort_by("__row")
    total, count = joined["duration_sum"], joined["records"]
    share = pc.if_else(pc.greater(total, 0.0), pc.divide(joined["duration_ms"], total),
                       pc.divide(1.0, pc.cast(count, pa.float64())))
    costs, refs = pc.multiply(share, joined["per_hour"]), joined["price_ref"]
    # Scatter back in row order: filter and replace_with_mask both keep the order of the masked rows.
    return pa.table([pc.replace_with_mask(pa.nulls(records.num_rows, pa.float64()), keep, costs.combine_chunks()),
                     pc.replace_with_mask(pa.nulls(records.num_rows, pa.string()), keep, refs.combine_chunks())],
                    names=["cost_usd", "price_ref"])


def _hour_sums(rows: pa.Table, book: PoolBook) -> pa.Table:
    """Compute time, record count, cost per hour and price ref of each (pool, hour)."""
    # One thread: the same rows always sum in the same order, so a rerun gives bit-identical costs.
    sums = rows.group_by(["pool", "hour"], use_threads=False).aggregate(
        [("duration_ms", "sum"), ("duration_ms", "count")])
    per_hour, refs = [], []
    for pool, hour in zip(sums["pool"].to_pylist(), sums["hour"].to_pylist()):
        price = book.pool(pool, hour.date())
        usable = price is not None and price.allocation == "hourly"
        per_hour.append(price.cost_per_hour if usable else None)
        refs.append(price.price_ref if usable else None)
    return pa.table({"pool": sums["pool"], "hour": sums["hour"], "duration_sum": sums["duration_ms_sum"],
                     "records": sums["duration_ms_count"], "per_hour": pa.array(per_hour, pa.float64()),
                     "price_ref": pa.array(refs, pa.string())})


def hour_records(conn: duckdb.DuckDBPyConnection, pool: str, hour_start: datetime,
                 relation: str = "inferences") -> pa.Table:
    """A closed hour of one pool's records, read through the catalog."""
    return conn.sql(
        f"""SELECT trace_id, span_id, provider, compute_pool, start_time, duration_ms FROM {relation}
            WHERE lower(coalesce(compute_pool, provider)) = lower(?)
              AND start_time >= ? AND start_time < ?""",
        params=[pool, hour_start, hour_start + timedelta(hours=1)],
    ).to_arrow_table()


def allocate_closed_hour(conn: duckdb.DuckDBPyConnection, book: PoolBook, pool: str,
                         hour_start: datetime) -> pa.Table:
    """Per-record costs of one pool for one closed hour (empty when the pool is not hourly that day)."""
    price = book.pool(pool, hour_start.date())
    records = hour_records(conn, pool, hour_start)
    if price is None or price.allocation != "hourly":
        return ALLOCATION_SCHEMA.empty_table()
    return allocate_hour(records, price)
