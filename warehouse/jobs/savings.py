"""Cache and batch savings: what the same requests would have cost without the cache or at the standard tier.

Savings are priced with the price book's own rules (``warehouse.pricing.price_table``),
as the difference between pricing the requests as they were and pricing them again
with one thing changed:

* cache read savings = cost with cache reads billed as uncached input − actual cost
* cache write premium = actual cost − cost with cache writes billed as uncached input
* cache savings = read savings − write premium
* batch savings = cost at the standard tier − actual cost (batch, flex and other tiers)

Both costs come from the book, so a reported cost never mixes with a computed one.
Requests the book cannot price (unknown model, capacity pools) are counted, not
guessed. An application cache hit (no provider call) saved everything and is left out.

To avoid pricing millions of rows one by one, the warehouse query groups the
requests that matter by everything a price depends on (provider, models, tier,
pool, day, time-of-day slot) and by long-context level, and sums their tokens.
Within such a group the cost is affine in the token counts (one price, one tier
level), so the group's cost is its count times the cost of its *mean* request: the
job prices one mean request per group. Inputs up to ``LEVEL_CUTOFF`` tokens share a
group; longer inputs are grouped by their exact count, so a group never straddles a
long-context threshold. A book with a threshold below the cutoff is detected
and those groups are reported unpriced with a reason rather than approximated.
"""
from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pyarrow.compute as pc

from warehouse.pricing.book import STANDARD_TIERS, Quote
from warehouse.pricing.cost import compute_costs
from warehouse.record import RECORD_SCHEMA

LEVEL_CUTOFF = 32000  # at or below every long-context threshold of genai-prices' list
TOKEN_COLUMNS = ("input_tokens", "cache_read_tokens", "cache_write_tokens", "output_tokens", "reasoning_tokens")
NO_BOOK = "no price book: savings need per-class prices"

_STANDARD = ", ".join(f"'{tier}'" for tier in sorted(STANDARD_TIERS))
RELEVANT_SQL = f"""(NOT coalesce(cache_hit, false)
    AND (coalesce(cache_read_tokens, 0) > 0 OR coalesce(cache_write_tokens, 0) > 0
         OR lower(coalesce(pricing_tier, 'standard')) NOT IN ({_STANDARD}))
    AND coalesce(cache_read_tokens, 0) + coalesce(cache_write_tokens, 0) <= coalesce(input_tokens, 0)
    AND coalesce(reasoning_tokens, 0) <= coalesce(output_tokens, 0))"""


def fine_keys(first_day, slot_minutes: int) -> list[str]:
    """Keys the job's fine aggregation adds for savings: what a price depends on, and the tier level."""
    return [
        "provider", "response_model", "request_model", "pricing_tier", "compute_pool",
        f"(hour(start_time) * 60 + minute(start_time)) // {int(slot_minutes)} AS slot",
        "input_tokens IS NOT NULL OR output_tokens IS NOT NULL AS usage",
        f"CASE WHEN input_tokens > {LEVEL_CUTOFF} THEN input_tokens ELSE -1 END AS input_key",
        f"{RELEVANT_SQL} AND date >= DATE '{first_day.isoformat()}' AS relevant",
    ]


FINE_SUMS = [f"sum(coalesce({c}, 0)) AS s_{c}" for c in TOKEN_COLUMNS] + [
    "count(*) FILTER (WHERE coalesce(cache_read_tokens, 0) + coalesce(cache_write_tokens, 0) > 0) AS s_cached_records"]
GROUP_KEYS = ("s_day", "service", "model", "s_provider", "s_response_model", "s_request_model", "s_tier", "s_pool",
              "s_slot", "s_usage", "s_input_key")
_OWN_KEYS = {"s_day": "day", "s_provider": "provider", "s_response_model": "response_model",
             "s_request_model": "request_model", "s_tier": "pricing_tier", "s_pool": "compute_pool",
             "s_slot": "slot", "s_usage": "usage", "s_input_key": "input_key"}
ROLLUP_KEYS = [f"CASE WHEN relevant THEN {column} END AS {name}" for name, column in _OWN_KEYS.items()]
ROLLUP_SUMS = [f"sum(s_{c})::BIGINT AS s_{c}" for c in TOKEN_COLUMNS] + [
    "sum(s_cached_records)::BIGINT AS s_cached_records"]


def price_groups(groups: pa.Table, book, slot_minutes: int) -> list[dict]:
    """Per savings group: its cache read savings, cache write premium and batch savings (NULL: unpriced)."""
    if groups.num_rows == 0:
        return []
    rows = _mean_rows(groups, slot_minutes)
    count = pc.cast(groups["records"], pa.float64())
    actual = _cost(rows, book)
    reads_as_input = _cost(_without_tokens(rows, "cache_read_tokens"), book)
    writes_as_input = _cost(_without_tokens(rows, "cache_write_tokens"), book)
    standard = _cost(_at_standard_tier(rows), book)
    tiered = pc.invert(pc.is_in(pc.utf8_lower(pc.fill_null(groups["s_tier"], "standard")),
                                value_set=pa.array(sorted(STANDARD_TIERS))))
    batch = pc.if_else(tiered, pc.multiply(pc.subtract(standard, actual), count), 0.0)
    low_threshold = _straddles(groups, book)
    priced = pc.and_(pc.is_valid(actual), pc.invert(low_threshold))
    columns = {
        "cache_read_savings_usd": pc.multiply(pc.subtract(reads_as_input, actual), count),
        "cache_write_premium_usd": pc.multiply(pc.subtract(actual, writes_as_input), count),
        "batch_savings_usd": batch,
    }
    result = groups.select(["s_day", "service", "model", "records", "s_cached_records", "s_cache_read_tokens",
                            "s_cache_write_tokens"]).append_column("tiered", tiered)
    for name, values in columns.items():
        result = result.append_column(name, pc.if_else(priced, values, pa.scalar(None, pa.float64())))
    return result.append_column("straddles", low_threshold).to_pylist()


def _mean_rows(groups: pa.Table, slot_minutes: int) -> pa.Table:
    """One record per group with the group's mean token counts, at the start of its time slot.

    The counts are float64 (a mean need not be whole); ``compute_costs`` reads every token
    count as float64 anyway, so a mean request is priced by exactly the same arithmetic.
    """
    count = pc.cast(groups["records"], pa.float64())
    starts = [datetime(d.year, d.month, d.day, tzinfo=UTC) + timedelta(minutes=s * slot_minutes)
              for d, s in zip(groups["s_day"].to_pylist(), groups["s_slot"].to_pylist())]
    values = {
        "provider": groups["s_provider"], "response_model": groups["s_response_model"],
        "request_model": groups["s_request_model"], "pricing_tier": groups["s_tier"],
        "compute_pool": groups["s_pool"], "start_time": pa.array(starts, pa.timestamp("us", tz="UTC")),
    }
    for column in TOKEN_COLUMNS:
        mean = pc.divide(pc.cast(groups[f"s_{column}"], pa.float64()), count)
        values[column] = pc.if_else(groups["s_usage"], mean, pa.scalar(None, pa.float64()))
    size = groups.num_rows
    arrays, fields = [], []
    for spec in RECORD_SCHEMA:
        column = values.get(spec.name)
        arrays.append(column if column is not None else pa.nulls(size, spec.type))
        fields.append(pa.field(spec.name, column.type if column is not None else spec.type))
    return pa.table(arrays, schema=pa.schema(fields))


def _without_tokens(rows: pa.Table, column: str) -> pa.Table:
    """The same requests with ``column``'s tokens billed as what contains them (uncached input)."""
    index = rows.schema.get_field_index(column)
    zero = pc.if_else(pc.is_valid(rows[column]), 0.0, pa.scalar(None, pa.float64()))
    return rows.set_column(index, rows.schema.field(index), zero)


def _at_standard_tier(rows: pa.Table) -> pa.Table:
    index = rows.schema.get_field_index("pricing_tier")
    return rows.set_column(index, rows.schema.field(index), pa.array(["standard"] * rows.num_rows, pa.string()))


def _cost(rows: pa.Table, book) -> pa.ChunkedArray:
    return compute_costs(rows, book)["computed_cost_usd"]


def _straddles(groups: pa.Table, book) -> pa.Array:
    """Groups of short inputs whose price has a long-context threshold below ``LEVEL_CUTOFF``.

    (A threshold equal to the cutoff is harmless: an input equal to a threshold stays below it.)
    """
    flags = []
    for row in groups.select(["s_provider", "s_response_model", "s_request_model", "s_tier", "s_day",
                              "s_input_key"]).to_pylist():
        if row["s_input_key"] != -1:
            flags.append(False)
            continue
        quote = book.quote(row["s_provider"], row["s_response_model"], row["s_tier"], row["s_day"]) \
            if row["s_response_model"] else None
        if quote is None and row["s_request_model"]:
            quote = book.quote(row["s_provider"], row["s_request_model"], row["s_tier"], row["s_day"])
        starts = [start for rate in quote.rates.values() for start, _ in rate.tiers] if isinstance(quote, Quote) else []
        flags.append(any(start < LEVEL_CUTOFF for start in starts))
    return pa.array(flags, pa.bool_())


def savings_rows(priced: list[dict], windows, reason: str | None = None) -> list[dict]:
    """``savings`` rows: per window the total (scope ``all``) and one row per service and model."""
    rows = []
    for start, end in windows:
        if reason is not None:
            rows.append({"window_start": start, "window_end": end, "scope": "all", "reason": reason})
            continue
        day_rows = [r for r in priced if r["s_day"] == start.date()]
        rows.append(_summed(day_rows, start, end, "all", None, None))
        for service, model in sorted({(r["service"], r["model"]) for r in day_rows}, key=str):
            part = [r for r in day_rows if (r["service"], r["model"]) == (service, model)]
            rows.append(_summed(part, start, end, "service_model", service, model))
    return rows


def _summed(rows: list[dict], start, end, scope: str, service, model) -> dict:
    priced = [r for r in rows if r["cache_read_savings_usd"] is not None]
    unpriced = [r for r in rows if r["cache_read_savings_usd"] is None]
    reads = sum(r["cache_read_savings_usd"] for r in priced)
    premium = sum(r["cache_write_premium_usd"] for r in priced)
    return {
        "window_start": start, "window_end": end, "scope": scope, "service": service, "model": model,
        "cached_requests": sum(r["s_cached_records"] for r in rows),
        "cache_read_tokens": sum(r["s_cache_read_tokens"] for r in rows),
        "cache_write_tokens": sum(r["s_cache_write_tokens"] for r in rows),
        "cache_read_savings_usd": reads, "cache_write_premium_usd": premium, "cache_savings_usd": reads - premium,
        "tier_requests": sum(r["records"] for r in rows if r["tiered"]),
        "batch_savings_usd": sum(r["batch_savings_usd"] for r in priced),
        "unpriced_requests": sum(r["records"] for r in unpriced),
        "reason": ("long-context threshold below the grouping cutoff: some requests not priced"
                   if any(r["straddles"] for r in rows) else None),
    }
