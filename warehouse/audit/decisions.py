"""Decisions: inference records that carry a ``decision_label``, filtered and paged.

A *decision* is a row of the ``inferences`` view whose ``decision_label`` is not
NULL (``include_all`` lifts that and lists every inference). Pages follow the
keyset (``start_time``, ``trace_id``, ``span_id``), which is unique per record: a
cursor names the last row of a page and the next page starts strictly after it,
so a walk sees every row that existed for the whole walk exactly once, however
many rows land meanwhile (rows landing *behind* the cursor are not revisited).
The cursor is opaque (URL-safe base64) and bound to the filters it was made with.
"""
from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import asdict, dataclass
from datetime import date, datetime, timedelta, timezone

import duckdb
import pyarrow as pa

ORDER_BY = "start_time, trace_id, span_id"
KEY_WINDOW_DAYS = (1, 2, 4, 8, 16, 32, None)  # None: every day after
_EQUAL_FILTERS = (("service", "service_name"), ("tenant", "tenant"), ("model_version", "model_version"),
                  ("decision_label", "decision_label"), ("subject", "subject_id"), ("trace_id", "trace_id"))


@dataclass(frozen=True)
class DecisionFilter:
    """What to list. Times are UTC (naive ones are taken as UTC); ``time_to`` is exclusive.

    ``subject`` is the subject's pseudonym (``subject_id``), never the raw id; ``model``
    matches the requested or the served model.
    """

    time_from: datetime | None = None
    time_to: datetime | None = None
    service: str | None = None
    tenant: str | None = None
    model: str | None = None
    model_version: str | None = None
    decision_label: str | None = None
    subject: str | None = None
    trace_id: str | None = None
    include_all: bool = False

    def __post_init__(self):
        for name in ("time_from", "time_to"):
            value = getattr(self, name)
            if value is not None and value.tzinfo is None:
                object.__setattr__(self, name, value.replace(tzinfo=timezone.utc))
        if self.time_from and self.time_to and self.time_from >= self.time_to:
            raise ValueError(f"'from' ({self.time_from.isoformat()}) must be before 'to' ({self.time_to.isoformat()})")

    def conditions(self) -> tuple[list[str], list]:
        """SQL conditions (ANDed) and their parameters; ``date`` bounds let DuckDB skip whole days."""
        where, params = [], []
        if not self.include_all:
            where.append("decision_label IS NOT NULL")
        if self.time_from is not None:
            where += ["date >= ?::DATE", "start_time >= ?"]
            params += [utc_date(self.time_from), self.time_from]
        if self.time_to is not None:
            where += ["date <= ?::DATE", "start_time < ?"]
            params += [utc_date(self.time_to - timedelta(microseconds=1)), self.time_to]
        for field, column in _EQUAL_FILTERS:
            if getattr(self, field) is not None:
                where.append(f"{column} = ?")
                params.append(getattr(self, field))
        if self.model is not None:
            where.append("(request_model = ? OR response_model = ?)")
            params += [self.model, self.model]
        return where, params

    def fingerprint(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True, default=str).encode()).hexdigest()[:16]

    def covers(self, day: date) -> bool:
        """Whether records dated ``day`` can match the time range."""
        return ((self.time_from is None or day >= utc_date(self.time_from))
                and (self.time_to is None or day <= utc_date(self.time_to - timedelta(microseconds=1))))


@dataclass
class Page:
    rows: pa.Table
    next_cursor: str | None  # None: this was the last page


def list_decisions(con: duckdb.DuckDBPyConnection, where: DecisionFilter, limit: int,
                   cursor: str | None = None) -> Page:
    """One page of at most ``limit`` records, oldest first; ``cursor`` continues a previous page.

    Two steps, because deduplication (a window over every matching row) is what costs: the page's
    keys come from ``inferences_all`` (DISTINCT: a span stored twice has the same content, so the
    same filters match both copies), then the full records of just those keys, whose time range
    bounds the deduplicating view to a sliver of the data.
    """
    conditions, params = where.conditions()
    if cursor:
        start, trace_id, span_id = decode_cursor(cursor, where.fingerprint())
        conditions += ["date >= ?::DATE", "start_time >= ?",
                       "(start_time > ? OR (start_time = ? AND (trace_id > ? OR (trace_id = ? AND span_id > ?))))"]
        params += [utc_date(start), start, start, start, trace_id, trace_id, span_id]
    matching = " AND ".join(conditions) or "true"
    first_day = utc_date(start) if cursor else utc_date(where.time_from) if where.time_from else None
    keys = _page_keys(con, matching, params, int(limit) + 1, first_day)
    page_keys = keys.slice(0, limit)
    rows = _records(con, page_keys, matching, params)
    if keys.num_rows <= limit:
        return Page(rows, None)
    last = limit - 1
    return Page(rows, encode_cursor(page_keys["start_time"][last].value, page_keys["trace_id"][last].as_py(),
                                    page_keys["span_id"][last].as_py(), where.fingerprint()))


def _page_keys(con: duckdb.DuckDBPyConnection, matching: str, params: list, wanted: int,
               first_day: date | None) -> pa.Table:
    """The first ``wanted`` keys, searched in growing day windows from ``first_day`` (1, 2, 4, ... days,
    then the rest): a page of dense data costs a scan of about one day, not of everything after it."""
    if first_day is None:
        return _keys(con, matching, params, wanted)
    found, day = [], first_day
    for days in KEY_WINDOW_DAYS:
        if days is None:
            found.append(_keys(con, f"{matching} AND date >= ?::DATE", [*params, day], wanted))
            break
        found.append(_keys(con, f"{matching} AND date BETWEEN ?::DATE AND ?::DATE",
                           [*params, day, day + timedelta(days=days - 1)], wanted))
        wanted -= found[-1].num_rows
        if wanted <= 0:
            break
        day += timedelta(days=days)
    return pa.concat_tables(found)


def _keys(con: duckdb.DuckDBPyConnection, matching: str, params: list, limit: int) -> pa.Table:
    # DISTINCT: a span stored twice (a retried export, a compaction in its grace period) is one key.
    return con.sql(f"SELECT DISTINCT start_time, trace_id, span_id FROM inferences_all WHERE {matching} "
                   f"ORDER BY {ORDER_BY} LIMIT {int(limit)}", params=params).to_arrow_table()


def _records(con: duckdb.DuckDBPyConnection, keys: pa.Table, matching: str, params: list) -> pa.Table:
    """Full records of ``keys`` from the ``inferences`` view, in key order: the same filters over the
    keys' time range, cut at their count, return exactly those keys."""
    if keys.num_rows == 0:
        return con.sql("SELECT * FROM inferences LIMIT 0").to_arrow_table()
    first, last = keys["start_time"][0].as_py(), keys["start_time"][keys.num_rows - 1].as_py()
    return con.sql(f"SELECT * FROM inferences WHERE {matching} AND date BETWEEN ?::DATE AND ?::DATE "
                   f"AND start_time BETWEEN ? AND ? ORDER BY {ORDER_BY} LIMIT {keys.num_rows}",
                   params=[*params, utc_date(first), utc_date(last), first, last]).to_arrow_table()


def encode_cursor(start_time_us: int, trace_id: str, span_id: str, fingerprint: str) -> str:
    payload = json.dumps([1, start_time_us, trace_id, span_id, fingerprint], separators=(",", ":"))
    return base64.urlsafe_b64encode(payload.encode()).decode().rstrip("=")


def decode_cursor(cursor: str, fingerprint: str) -> tuple[datetime, str, str]:
    """(start_time, trace_id, span_id) after which the next page starts; ValueError for a bad cursor."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        version, start_us, trace_id, span_id, made_for = json.loads(raw)
        start = datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(microseconds=int(start_us))
    except (ValueError, TypeError, OverflowError):
        raise ValueError("invalid cursor: pass next_cursor from the previous page unchanged") from None
    if version != 1 or not isinstance(trace_id, str) or not isinstance(span_id, str):
        raise ValueError("invalid cursor: pass next_cursor from the previous page unchanged")
    if made_for != fingerprint:
        raise ValueError("this cursor belongs to a listing with other filters; repeat the original filters")
    return start, trace_id, span_id


def utc_date(moment: datetime) -> date:
    return moment.astimezone(timezone.utc).date()
