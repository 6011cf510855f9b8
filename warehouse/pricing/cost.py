"""Cost of every inference record, vectorized, with provenance.

``price_table`` fills ``cost_usd``, ``computed_cost_usd``, ``cost_source`` and
``price_ref`` for a whole Arrow table at once. It looks prices up once per
distinct (provider, model, tier, day, pool) in the table (the book caches them
across calls), then does the arithmetic over whole columns. On the ingest path
that is a few dozen vector operations per segment, not a lookup per span.

Token arithmetic follows genai-prices: a sub-class (cache read, cache write,
reasoning) is taken out of its parent (input, output) only when the entry prices
it, so nothing is counted twice; a long-context tier is chosen by the whole input
(cache included) and reprices every tiered class of the request.
"""
from __future__ import annotations

import math
import threading
import weakref
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Mapping

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from warehouse.pricing.book import TOKEN_CLASSES, PriceBook, Quote
from warehouse.pricing.capacity import PoolPrice

COST_SCHEMA = pa.schema([
    ("cost_usd", pa.float64()),
    ("computed_cost_usd", pa.float64()),
    ("cost_source", pa.string()),
    ("price_ref", pa.string()),
])
HUMAN_REVIEW = "human_review"  # cost_source of a review span priced by the reviewer-hour setting
SOURCES = ("reported", "computed", "capacity", "unpriced", HUMAN_REVIEW)
REPORTED, COMPUTED, CAPACITY, UNPRICED = range(4)
APP_CACHE_REF = "inferledger:app-cache"  # an application cache answered: no provider call, cost 0
REVIEWER_HOUR_SETTING = "pricing.reviewer_hour_usd"
_EPOCH_DAY = date(1970, 1, 1)


@dataclass(frozen=True)
class PricingDefaults:
    """Service tier for records that do not report one: per feature, else per tenant, else ``tier``."""

    tier: str = "standard"
    tier_by_tenant: Mapping[str, str] = field(default_factory=dict)
    tier_by_feature: Mapping[str, str] = field(default_factory=dict)
    reviewer_hour_usd: float | None = None  # human review spans: None leaves them unpriced


def price_table(table: pa.Table, book: PriceBook, defaults: PricingDefaults = PricingDefaults()) -> pa.Table:
    """The table with its four cost columns filled (replaced if present, appended if not)."""
    costs = compute_costs(table, book, defaults)
    for name in COST_SCHEMA.names:
        column = costs[name]
        index = table.schema.get_field_index(name)
        if index < 0:
            table = table.append_column(name, column)
        else:
            table = table.set_column(index, table.schema.field(name), column)
    return table


def landing_transform(book: PriceBook, defaults: PricingDefaults = PricingDefaults()):
    """The hook for warehouse.landing (``transform(dataset, table)``): prices ``inferences``, passes the rest."""

    def transform(dataset: str, table: pa.Table) -> pa.Table:
        return price_table(table, book, defaults) if dataset == "inferences" else table

    return transform


def compute_costs(table: pa.Table, book: PriceBook, defaults: PricingDefaults = PricingDefaults()) -> pa.Table:
    """The four cost columns for ``table``'s rows, in row order."""
    if table.num_rows == 0:
        return COST_SCHEMA.empty_table()
    keys = [table["provider"], table["response_model"], table["request_model"], resolve_tiers(table, defaults),
            _days(table), table["compute_pool"]]
    group, key_values = group_ids(keys)
    registry = _quote_arrays(book)
    numbers, arrays = registry.numbers([_lookup(book, *values) for values in key_values])
    if pc.any(arrays.time_dependent.take(numbers)).as_py():
        group, numbers, arrays = _split_by_time_of_day(table, book, registry, arrays, group, key_values, numbers)
    quote = numbers.take(group)
    return _price_reviews(table, _assemble(table, quote, arrays, _computed(table, quote, arrays)),
                          defaults.reviewer_hour_usd)


def _price_reviews(table: pa.Table, costs: pa.Table, reviewer_hour_usd: float | None) -> pa.Table:
    """Human review spans (operation ``review``) cost their reviewer's time, not tokens:
    review_duration_s / 3600 x ``reviewer_hour_usd``, with ``cost_source = human_review`` and
    ``price_ref = config:pricing.reviewer_hour_usd=<value>``. Unconfigured, or without a
    duration, a review is unpriced. A cost reported on the span still wins."""
    if "review_duration_s" not in table.column_names or "operation" not in table.column_names:
        return costs
    review = pc.fill_null(pc.equal(table["operation"], pa.scalar("review", pa.string())), False)
    if not pc.any(review).as_py():
        return costs
    hourly = _f64(reviewer_hour_usd)
    computed = pc.multiply(pc.divide(pc.cast(table["review_duration_s"], pa.float64()), _f64(3600.0)), hourly)
    reported = table["reported_cost_usd"]
    source = pc.if_else(pc.is_valid(reported), pa.scalar("reported"), pc.if_else(
        pc.is_valid(computed), pa.scalar(HUMAN_REVIEW), pa.scalar("unpriced")))
    ref = pa.scalar(f"config:{REVIEWER_HOUR_SETTING}={reviewer_hour_usd:g}" if reviewer_hour_usd else None,
                    pa.string())
    ref = pc.if_else(pc.is_valid(computed), ref, _NO_REF)
    review_costs = [pc.coalesce(reported, computed), computed, source, ref]
    return pa.table([pc.if_else(review, new, old) for new, old in zip(review_costs, costs.columns)],
                    schema=COST_SCHEMA)


def resolve_tiers(table: pa.Table, defaults: PricingDefaults) -> pa.ChunkedArray:
    """The record's own pricing_tier, else the configured default for its feature, tenant, or everyone."""
    tier = table["pricing_tier"]
    for column, mapping in (("feature", defaults.tier_by_feature), ("tenant", defaults.tier_by_tenant)):
        if mapping:
            keys = pa.array(list(mapping), pa.string())
            position = pc.index_in(table[column], value_set=keys)
            tier = pc.coalesce(tier, pa.array(list(mapping.values()), pa.string()).take(position))
    return pc.utf8_lower(pc.coalesce(tier, pa.scalar(defaults.tier, pa.string())))


def _start(table: pa.Table):
    return pc.coalesce(table["start_time"], table["ingest_time"])


def _days(table: pa.Table) -> pa.ChunkedArray:
    return pc.cast(pc.cast(_start(table), pa.date32()), pa.int32())


def _i64(value: int) -> pa.Scalar:
    """Typed scalars: an untyped Python value makes pyarrow try (and, without dateutil, fail) an import."""
    return pa.scalar(value, pa.int64())


def _f64(value: float | None) -> pa.Scalar:
    return pa.scalar(value, pa.float64())


def group_ids(columns: list) -> tuple[pa.Array, list[tuple]]:
    """A dense group number per row for the distinct combinations of ``columns``, and each group's values.

    Each column is hash-encoded once and folded into a mixed-radix integer code;
    one more hash pass makes the code dense. A few vector passes, whatever the
    number of rows.
    """
    code, space, values, pending = None, 1, [()], []
    for column in columns:
        encoded = pc.dictionary_encode(column, null_encoding="encode")
        chunks = encoded.chunks if isinstance(encoded, pa.ChunkedArray) else [encoded]
        dictionary = chunks[0].dictionary.to_pylist()
        indices = pa.concat_arrays([c.indices for c in chunks]).cast(pa.int64())
        if code is not None and space * len(dictionary) >= 2**62:
            code, values = _densify(code, values, pending)
            space, pending = len(values), []
        code = indices if code is None else pc.add(pc.multiply(code, _i64(len(dictionary))), indices)
        space *= len(dictionary)
        pending.append(dictionary)
    return _densify(code, values, pending)


def _densify(code: pa.Array, values: list[tuple], pending: list[list]) -> tuple[pa.Array, list[tuple]]:
    """Renumber ``code`` 0..n-1 and decode each distinct code back into its column values."""
    dense = pc.dictionary_encode(code)
    decoded = []
    for number in dense.dictionary.to_pylist():
        parts = []
        for dictionary in reversed(pending):
            number, digit = divmod(number, len(dictionary))
            parts.append(dictionary[digit])
        decoded.append(values[number] + tuple(reversed(parts)))
    return dense.indices.cast(pa.int64()), decoded


def _lookup(book: PriceBook, provider, response_model, request_model, tier, day, pool, minute=None):
    """Pool price, else the price of the served model, else of the requested one."""
    if day is None:  # neither start nor ingest time: no day, so no price in force
        return None
    when = _EPOCH_DAY + timedelta(days=day)
    pool_price = book.pool(pool or provider, when) if (pool or provider) else None
    if pool_price is not None:
        return pool_price
    quote = book.quote(provider, response_model, tier, when, minute) if response_model else None
    if quote is None and request_model and request_model != response_model:
        quote = book.quote(provider, request_model, tier, when, minute)
    return quote


def _split_by_time_of_day(table, book, registry, arrays, group, key_values, numbers):
    """Regroup rows whose price depends on the time of day by the book's time slot, and look those up again."""
    step = book.slot_minutes
    start = _start(table)
    minute = pc.add(pc.multiply(pc.hour(start), _i64(60)), pc.minute(start))
    slot = pc.divide(minute, _i64(step))
    dependent = arrays.time_dependent.take(numbers).take(group)
    slot = pc.if_else(dependent, slot, _i64(-1))
    group2, pairs = group_ids([group, slot])
    quotes = [_lookup(book, *key_values[g], minute=s * step if s >= 0 else None) for g, s in pairs]
    return (group2, *registry.numbers(quotes))


@dataclass(frozen=True)
class _Arrays:
    """Per-quote Arrow arrays, indexed by quote number (0 = no price); immutable once built."""

    levels: int
    thresholds: list  # one float64 array per long-context level: the whole input above it moves up a level
    coefficients: list  # five float64 arrays of length quotes * (levels + 1): see _coefficients
    fee: pa.Array
    is_token: pa.Array
    is_pool: pa.Array
    per_second: pa.Array
    ref: pa.Array
    time_dependent: pa.Array


class _QuoteArrays:
    """Every quote a book has produced, numbered stably, with their arrays.

    Rebuilt only when a batch brings a quote not seen before, so a steady ingest
    stream turns its per-batch lookups into one small integer array. Thread-safe:
    landing and a repricing may share a book; each gets a consistent snapshot.
    """

    def __init__(self):
        self._quotes: list = [None]
        self._numbers: dict[int, int] = {id(None): 0}
        self._lock = threading.Lock()
        self.arrays = _build_arrays(self._quotes)

    def numbers(self, quotes: list) -> tuple[pa.Array, _Arrays]:
        with self._lock:
            fresh = False
            for quote in quotes:
                if id(quote) not in self._numbers:
                    self._numbers[id(quote)] = len(self._quotes)
                    self._quotes.append(quote)  # kept alive, so its id() is never reused
                    fresh = True
            if fresh:
                self.arrays = _build_arrays(self._quotes)
            return pa.array([self._numbers[id(q)] for q in quotes], pa.int64()), self.arrays


def _build_arrays(quotes: list) -> _Arrays:
    tokens = [q if isinstance(q, Quote) else None for q in quotes]
    levels = max((len(_tier_starts(q)) for q in tokens if q), default=0)
    thresholds, coefficients = [], []
    for quote in tokens:
        cuts, rows = _coefficients(quote, levels) if quote else ([math.inf] * levels, [[0.0] * 5] * (levels + 1))
        thresholds.append(cuts)
        coefficients.extend(rows)
    return _Arrays(
        levels=levels,
        thresholds=[pa.array([t[j] for t in thresholds], pa.float64()) for j in range(levels)],
        coefficients=[pa.array([c[i] for c in coefficients], pa.float64()) for i in range(5)],
        fee=pa.array([(q.request_usd or 0.0) if q else 0.0 for q in tokens], pa.float64()),
        is_token=pa.array([q is not None for q in tokens], pa.bool_()),
        is_pool=pa.array([isinstance(q, PoolPrice) for q in quotes], pa.bool_()),
        per_second=pa.array([q.per_second_usd if isinstance(q, PoolPrice) and q.allocation == "per_second"
                             else None for q in quotes], pa.float64()),
        ref=pa.array([q.price_ref if q is not None else None for q in quotes], pa.string()),
        time_dependent=pa.array([bool(q and q.time_dependent) for q in tokens], pa.bool_()),
    )


_QUOTE_ARRAYS: "weakref.WeakKeyDictionary[PriceBook, _QuoteArrays]" = weakref.WeakKeyDictionary()
_QUOTE_ARRAYS_LOCK = threading.Lock()


def _quote_arrays(book: PriceBook) -> _QuoteArrays:
    with _QUOTE_ARRAYS_LOCK:
        if book not in _QUOTE_ARRAYS:
            _QUOTE_ARRAYS[book] = _QuoteArrays()
        return _QUOTE_ARRAYS[book]


def _tier_starts(quote: Quote) -> list[int]:
    return sorted({s for rate in quote.rates.values() for s, _ in rate.tiers})


def _coefficients(quote: Quote, levels: int) -> tuple[list[float], list[list[float]]]:
    """Per-level thresholds and per-million coefficients for (input, cache_read, cache_write, output, reasoning).

    cost = I*r_in + CR*(r_cr - r_in) + CW*(r_cw - r_in) + O*r_out + R*(r_r - r_out), where a sub-class
    term only exists when the entry prices that sub-class; otherwise it stays inside its parent.
    Level j applies when the whole input I is above the j-th tier start.
    """
    starts = _tier_starts(quote)
    thresholds = [float(s) for s in starts] + [math.inf] * (levels - len(starts))
    rows = []
    for level in range(levels + 1):
        cut = starts[min(level, len(starts)) - 1] if level and starts else -1
        r = {c: _rate_at(quote.rates[c], cut) if c in quote.rates else None for c in TOKEN_CLASSES}
        r_in, r_out = r["input"] or 0.0, r["output"] or 0.0
        rows.append([
            r_in,
            r["cache_read"] - r_in if r["cache_read"] is not None else 0.0,
            r["cache_write"] - r_in if r["cache_write"] is not None else 0.0,
            r_out,
            r["reasoning"] - r_out if r["reasoning"] is not None else 0.0,
        ])
    return thresholds, rows


def _rate_at(rate, cut: int) -> float:
    """The class's price once the whole input is above ``cut`` (-1: below every tier)."""
    price = rate.base
    for start, tier_price in rate.tiers:
        if start <= cut:
            price = tier_price
    return price


def _tokens(table: pa.Table, name: str):
    return pc.cast(pc.fill_null(table[name], _i64(0)), pa.float64())


def _computed(table: pa.Table, quote: pa.Array, prices: _Arrays) -> pa.Array:
    """Computed cost per row: null where no price applies or the token counts contradict each other."""
    tokens = [_tokens(table, f"{c}_tokens") for c in TOKEN_CLASSES]
    row = pc.multiply(quote, _i64(prices.levels + 1))
    for threshold in prices.thresholds:
        crossed = pc.greater(tokens[0], threshold.take(quote))
        row = pc.add(row, pc.cast(crossed, pa.int64()))
    cost = pc.multiply(tokens[0], prices.coefficients[0].take(row))
    for i in range(1, 5):
        cost = pc.add(cost, pc.multiply(tokens[i], prices.coefficients[i].take(row)))
    fees = prices.fee.take(quote)
    cost = pc.add(pc.divide(cost, _f64(1e6)), fees)

    usage = pc.or_(pc.or_(pc.is_valid(table["input_tokens"]), pc.is_valid(table["output_tokens"])),
                   pc.greater(fees, _f64(0.0)))
    consistent = pc.and_(pc.less_equal(pc.add(tokens[1], tokens[2]), tokens[0]),
                         pc.less_equal(tokens[4], tokens[3]))
    token_ok = pc.and_(pc.and_(prices.is_token.take(quote), usage), consistent)
    pool_cost = pc.multiply(pc.divide(table["duration_ms"], _f64(1000.0)), prices.per_second.take(quote))
    return pc.if_else(prices.is_pool.take(quote), pool_cost, pc.if_else(token_ok, cost, _f64(None)))


_SOURCE_NAMES = pa.array(SOURCES, pa.string())
_NO_REF = pa.scalar(None, pa.string())


def _assemble(table: pa.Table, quote: pa.Array, prices: _Arrays, computed) -> pa.Table:
    is_pool = prices.is_pool.take(quote)
    app_cache = pc.and_(pc.fill_null(table["cache_hit"], pa.scalar(False, pa.bool_())), pc.invert(is_pool))
    computed = pc.if_else(app_cache, _f64(0.0), computed)
    reported = table["reported_cost_usd"]
    has_reported, has_computed = pc.is_valid(reported), pc.is_valid(computed)
    source = pc.if_else(has_reported, _i64(REPORTED), pc.if_else(
        is_pool, _i64(CAPACITY), pc.if_else(has_computed, _i64(COMPUTED), _i64(UNPRICED))))
    refs = pc.if_else(app_cache, pa.scalar(APP_CACHE_REF, pa.string()), prices.ref.take(quote))
    refs = pc.if_else(pc.or_(is_pool, has_computed), refs, _NO_REF)
    return pa.table([pc.coalesce(reported, computed), computed, _SOURCE_NAMES.take(source), refs],
                    schema=COST_SCHEMA)


@dataclass(frozen=True)
class Coverage:
    provider: str | None
    model: str | None
    requests: int
    entry_id: str | None
    match_kind: str  # exact, alias, pattern, pool or none


def price_coverage(conn: duckdb.DuckDBPyConnection, book: PriceBook, relation: str = "inferences") -> list[Coverage]:
    """Every provider and model seen in the warehouse, the entry that prices it and how it matched.

    Backs ``inferledger prices check``; rows that match nothing come first, then by traffic.
    """
    rows = conn.execute(f"""
        SELECT provider, coalesce(response_model, request_model) AS model, any_value(request_model),
               compute_pool, count(*) AS requests, max(coalesce(start_time, ingest_time))::DATE AS last_day
        FROM {relation} GROUP BY provider, model, compute_pool""").fetchall()
    result = []
    for provider, model, request_model, pool, requests, last_day in rows:
        day = ((last_day or date.today()) - _EPOCH_DAY).days
        found = _lookup(book, provider, model, request_model, "standard", day, pool)
        if isinstance(found, PoolPrice):
            result.append(Coverage(provider, model, requests, f"pool:{found.name}", "pool"))
        elif isinstance(found, Quote):
            result.append(Coverage(provider, model, requests, found.entry_id, found.match_kind))
        else:
            result.append(Coverage(provider, model, requests, None, "none"))
    return sorted(result, key=lambda c: (c.match_kind != "none", -c.requests, c.provider or "", c.model or ""))
