"""The variance job's one pass over the warehouse: daily and hourly cost cubes, and savings groups.

One query per day the run must read (``GROUPING SETS``) returns three things:

* ``budget`` rows, per UTC day and (service, tenant, feature, model, budget_id):
  requests, decisions, reviews, priced and unpriced records, cost. Budgets are
  matched against these in Python, so any number of budgets costs one scan.
* ``change`` rows, per hour and (service, model): priced requests, their tokens and
  cost, for the week-over-week decomposition.
* savings groups (see ``warehouse.jobs.savings``) for the run's own days.

A human review (``operation = 'review'``) is part of what the decision it reviews
cost: it is attributed to that decision's service, tenant, feature, model and
budget id when the decision is found (up to ``REVIEW_LOOKBACK`` before the review),
else it keeps its own. In the ``change`` cube reviews form their own cell
(``REVIEW_CELL``): one review is one unit, its cost the price.
"""
from __future__ import annotations

from datetime import date, datetime, timedelta

import pyarrow as pa
import pyarrow.compute as pc

from warehouse.jobs import savings
from warehouse.jobs.history import midnight

REVIEW_LOOKBACK = timedelta(days=31)
REVIEW_CELL = "(human review)"
DIMENSIONS = ("service", "tenant", "feature", "model", "budget_id")
CUBE_FIELDS = [
    ("kind", pa.string()), ("day", pa.date32()), ("hour", pa.timestamp("us", tz="UTC")),
    ("service", pa.string()), ("tenant", pa.string()), ("feature", pa.string()), ("model", pa.string()),
    ("budget_id", pa.string()), ("requests", pa.int64()), ("decisions", pa.int64()), ("reviews", pa.int64()),
    ("priced", pa.int64()), ("unpriced", pa.int64()), ("tokens", pa.float64()), ("cost_usd", pa.float64()),
]
CUBE_SCHEMA = pa.schema(CUBE_FIELDS)


def read_cubes(con, days: list[date], start: datetime, end: datetime, savings_from: date | None,
               slot_minutes: int) -> tuple[pa.Table, pa.Table | None]:
    """(cube rows for ``days`` within [start, end), savings groups or None), reading each day once."""
    with_savings = savings_from is not None
    parts = [con.sql(_sql(day, with_savings, savings_from, slot_minutes),
                     params=[day, day, start, end]).to_arrow_table() for day in sorted(set(days))]
    if not parts:
        return CUBE_SCHEMA.empty_table(), pa.table({}) if with_savings else None
    raw = pa.concat_tables(parts)
    part = raw["part"]
    groups = raw.filter(pc.and_(pc.equal(part, "savings"), pc.is_valid(raw["s_day"]))) if with_savings else None
    budget = raw.filter(pc.equal(part, "budget"))
    change = raw.filter(pc.equal(part, "change"))
    decisions = _reviewed_decisions(con, budget)
    return pa.concat_tables([_budget_cube(budget, decisions), _change_cube(change, decisions)]), groups


def _sql(day: date, with_savings: bool, savings_from: date | None, slot_minutes: int) -> str:
    """One day's records, aggregated once at the finest grain the three outputs need, then rolled up three ways.

    A day at a time: deduplicating a week of records in one query holds them all in memory,
    measured three times slower than seven one-day queries. Aggregating first and rolling the
    (small) result up with GROUPING SETS costs about a third less than grouping the records
    three ways directly.
    """
    keys = ["date AS day", "date_trunc('hour', start_time) AS hour", "service_name AS service", "tenant", "feature",
            "coalesce(response_model, request_model) AS model", "budget_id",
            "CASE WHEN operation = 'review' THEN coalesce(reviewed_span_id, '') END AS review_of"]
    sums = ["count(*) AS records", "count(cost_usd) AS priced", "sum(cost_usd) AS cost_usd",
            "count(*) FILTER (WHERE decision_label IS NOT NULL AND operation IS DISTINCT FROM 'review') AS decisions",
            "sum(coalesce(input_tokens, 0) + coalesce(output_tokens, 0)) FILTER (WHERE cost_usd IS NOT NULL) AS tokens"]
    group_keys, rollup_keys, rollup_sums, sets = [], [], [], ""
    if with_savings:
        keys += savings.fine_keys(savings_from, slot_minutes)
        sums += savings.FINE_SUMS
        group_keys = [key for key in savings.GROUP_KEYS if key.startswith("s_")]
        rollup_keys, rollup_sums = savings.ROLLUP_KEYS, savings.ROLLUP_SUMS
        sets = f", ({', '.join(savings.GROUP_KEYS)})"
    return f"""
        WITH fine AS (
            SELECT {', '.join(keys)}, {', '.join(sums)}
            FROM inferences
            WHERE date BETWEEN ? AND ? AND start_time >= ? AND start_time < ?
            GROUP BY ALL)
        SELECT CASE WHEN GROUPING(day) = 0 THEN 'budget' WHEN GROUPING(hour) = 0 THEN 'change'
                    ELSE 'savings' END AS part,
               {', '.join(["day", "hour", "service", "tenant", "feature", "model", "budget_id", "review_of",
                           *group_keys])},
               {', '.join(["sum(records)::BIGINT AS records", "sum(priced)::BIGINT AS priced",
                           "sum(cost_usd) AS cost_usd", "sum(decisions)::BIGINT AS decisions",
                           "sum(tokens)::DOUBLE AS tokens", *rollup_sums])}
        FROM (SELECT {', '.join(["*", *rollup_keys])} FROM fine)
        GROUP BY GROUPING SETS ((day, service, tenant, feature, model, budget_id, review_of),
                                (hour, service, model, review_of){sets})"""


def _reviewed_decisions(con, budget: pa.Table) -> dict[str, dict]:
    """Dimensions of the decisions that reviews in ``budget`` point at, by span id."""
    reviews = budget.filter(pc.and_(pc.is_valid(budget["review_of"]), pc.not_equal(budget["review_of"], "")))
    if not reviews.num_rows:
        return {}
    first = midnight(pc.min(reviews["day"]).as_py()) - REVIEW_LOOKBACK
    end = midnight(pc.max(reviews["day"]).as_py()) + timedelta(days=1)
    rows = con.sql("""
        SELECT span_id, any_value(service_name) AS service, any_value(tenant) AS tenant,
               any_value(feature) AS feature, any_value(coalesce(response_model, request_model)) AS model,
               any_value(budget_id) AS budget_id
        FROM inferences_all
        WHERE date BETWEEN ? AND ? AND start_time >= ? AND start_time < ?
          AND span_id IN (SELECT unnest(?::VARCHAR[])) AND operation IS DISTINCT FROM 'review'
        GROUP BY span_id""", params=[first.date(), end.date(), first, end, pc.unique(reviews["review_of"]).to_pylist()]
    ).to_arrow_table()
    return {row.pop("span_id"): row for row in rows.to_pylist()}


def _attributed(rows: pa.Table, decisions: dict[str, dict], columns: tuple[str, ...]) -> pa.Table:
    """``rows`` with each review's ``columns`` replaced by those of the decision it reviews, when found."""
    if not decisions:
        return rows
    reviewed = rows["review_of"].to_pylist()
    for column in columns:
        values = rows[column].to_pylist()
        replaced = [decisions[r][column] if r in decisions else v for r, v in zip(reviewed, values)]
        rows = rows.set_column(rows.schema.get_field_index(column), column, pa.array(replaced, pa.string()))
    return rows


def _budget_cube(rows: pa.Table, decisions: dict[str, dict]) -> pa.Table:
    rows = _attributed(rows, decisions, DIMENSIONS)
    is_review = pc.is_valid(rows["review_of"])
    zero = pa.scalar(0, pa.int64())
    measures = {
        "requests": pc.if_else(is_review, zero, rows["records"]),
        "decisions": pc.if_else(is_review, zero, rows["decisions"]),
        "reviews": pc.if_else(is_review, rows["records"], zero),
    }
    return _summed(rows, "budget", ["day", *DIMENSIONS], measures)


def _change_cube(rows: pa.Table, decisions: dict[str, dict]) -> pa.Table:
    rows = _attributed(rows, decisions, ("service",))
    cell = pc.if_else(pc.is_valid(rows["review_of"]), REVIEW_CELL, rows["model"])
    rows = rows.set_column(rows.schema.get_field_index("model"), "model", cell)
    rows = rows.set_column(rows.schema.get_field_index("day"), "day", pc.cast(rows["hour"], pa.date32()))
    return _summed(rows, "change", ["day", "hour", "service", "model"], {"requests": rows["records"]})


def _summed(rows: pa.Table, kind: str, keys: list[str], measures: dict) -> pa.Table:
    """Sum the measures per key (attribution can merge rows) into ``CUBE_SCHEMA`` rows of ``kind``."""
    columns = {key: rows[key] for key in keys}
    columns.update(measures)
    columns["priced"] = rows["priced"]
    columns["unpriced"] = pc.subtract(rows["records"], rows["priced"])
    columns["tokens"] = pc.cast(pc.fill_null(rows["tokens"], 0), pa.float64())
    columns["cost_usd"] = pc.fill_null(rows["cost_usd"], 0.0)
    sums = [name for name in columns if name not in keys]
    table = pa.table(columns).group_by(keys, use_threads=False).aggregate([(name, "sum") for name in sums])
    table = table.rename_columns([name.removesuffix("_sum") for name in table.column_names])
    table = table.append_column("kind", pa.array([kind] * table.num_rows, pa.string()))
    return conform(table)


def conform(table: pa.Table) -> pa.Table:
    """``table`` with exactly ``CUBE_SCHEMA``'s columns (missing ones NULL)."""
    arrays = [table[name].cast(kind) if name in table.column_names else pa.nulls(table.num_rows, kind)
              for name, kind in CUBE_FIELDS]
    return pa.Table.from_arrays(arrays, schema=CUBE_SCHEMA)
