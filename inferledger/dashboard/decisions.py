"""Decision search for auditors: the auditor API's filters, newest first, keyset pages.

The only dashboard page that reads ``inferences`` itself. The filters are the API's
(``warehouse.audit.decisions.DecisionFilter``), so the page and its export
(``warehouse.audit.export``, the code behind ``GET /api/v1/decisions/export``)
select exactly the same records. It stays fast on tens of millions of records
because every query is bounded by a date range of at most ``MAX_DAYS`` (DuckDB
skips the other ``date=`` partitions and, through the ``start_time`` statistics,
most row groups) and fetches one page ordered by (start_time, trace_id, span_id)
descending. The next page continues *after* the last row shown (keyset
pagination), so page 100 costs what page 1 costs and rows landing meanwhile
neither shift nor repeat pages.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Callable, Mapping
from urllib.parse import urlencode

from warehouse.audit.decisions import DecisionFilter

MAX_DAYS = 92
DEFAULT_DAYS = 7
PAGE_SIZE = 50
RUN_GAP = timedelta(minutes=2)  # start times closer than this are fetched with one range query
MAX_CANDIDATES = 5000  # start times fetched at most when duplicates crowd a page (then it may come out short)
TEXT_FIELDS = ("service", "model", "model_version", "decision_label", "tenant", "subject")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_CURSOR = re.compile(r"^(\d{1,19})\.([0-9a-f]{32})\.([0-9a-f]{16})$")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

COLUMNS = """start_time, epoch_us(start_time) AS cursor_us, trace_id, span_id, service_name, tenant,
    coalesce(response_model, request_model) AS model, model_version, decision_label, decision_score,
    decision_reasons, subject_id, status, cost_usd, cost_source"""


@dataclass(frozen=True)
class Search:
    """The search form as received: whole UTC days (both ends included) and exact-match filters."""

    date_from: date
    date_to: date
    service: str = ""
    model: str = ""
    model_version: str = ""
    decision_label: str = ""
    tenant: str = ""
    subject: str = ""  # the original id, or the 64-hex pseudonym stored in subject_id

    @property
    def subject_is_pseudonym(self) -> bool:
        return bool(_HEX64.match(self.subject.lower()))

    def decision_filter(self, pseudonymize: Callable[[str], str]) -> DecisionFilter:
        pseudonym = None
        if self.subject:
            pseudonym = self.subject.lower() if self.subject_is_pseudonym else pseudonymize(self.subject)
        text = {name: getattr(self, name) or None for name in TEXT_FIELDS if name != "subject"}
        return DecisionFilter(time_from=_midnight(self.date_from), time_to=_midnight(self.date_to + timedelta(days=1)),
                              subject=pseudonym, **text)

    def query_string(self, **extra: str) -> str:
        """The search as dashboard query parameters (next page, export links)."""
        values = {"from": self.date_from.isoformat(), "to": self.date_to.isoformat()}
        values.update({name: getattr(self, name) for name in TEXT_FIELDS if getattr(self, name)})
        return urlencode({**values, **{k: v for k, v in extra.items() if v}})

    def api_url(self, fmt: str) -> str | None:
        """The same export from the auditor API (for scripts); None when only a pseudonym is known."""
        if self.subject and self.subject_is_pseudonym:
            return None
        values = {"from": f"{self.date_from.isoformat()}T00:00:00Z",
                  "to": f"{(self.date_to + timedelta(days=1)).isoformat()}T00:00:00Z", "format": fmt}
        values.update({name: getattr(self, name) for name in TEXT_FIELDS if getattr(self, name)})
        return f"/api/v1/decisions/export?{urlencode(values)}"


@dataclass(frozen=True)
class Page:
    rows: list[dict]
    next_cursor: str | None


def parse_search(params: Mapping[str, str], today: date, tenant_scope: str | None) -> tuple[Search, list[str]]:
    """The search from the query string, and what was wrong with it (the page shows each problem)."""
    errors: list[str] = []
    date_to = _date(params.get("to"), today, "to", errors)
    date_from = _date(params.get("from"), date_to - timedelta(days=DEFAULT_DAYS - 1), "from", errors)
    if date_from > date_to:
        errors.append(f"'from' ({date_from}) is after 'to' ({date_to}); showing {date_to} only.")
        date_from = date_to
    if (date_to - date_from).days + 1 > MAX_DAYS:
        errors.append(f"The range is {(date_to - date_from).days + 1} days; search at most {MAX_DAYS} days at a "
                      f"time (showing the last {MAX_DAYS}).")
        date_from = date_to - timedelta(days=MAX_DAYS - 1)
    text = {name: (params.get(name) or "").strip()[:200] for name in TEXT_FIELDS}
    if tenant_scope is not None:
        text["tenant"] = tenant_scope
    return Search(date_from, date_to, **text), errors


def parse_cursor(text: str | None) -> tuple[datetime, str, str] | None:
    """``<start_time µs>.<trace_id>.<span_id>`` of the last row of the previous page."""
    match = _CURSOR.match(text or "")
    if not match:
        return None
    return _EPOCH + timedelta(microseconds=int(match.group(1))), match.group(2), match.group(3)


def search(con, where: DecisionFilter, cursor: tuple[datetime, str, str] | None, limit: int = PAGE_SIZE) -> Page:
    """One page of decisions, newest first, continuing after ``cursor``.

    Two steps, because ordering the deduplicated ``inferences`` view means deduplicating
    every record of the range first (seconds on millions of records): (1) the start
    times of the newest matching records, from ``inferences_all``, reading only
    ``start_time`` and the filtered columns; (2) the page from ``inferences``, restricted to
    those start times, which DuckDB pushes below the deduplication. A span stored twice
    can take two of the candidates, leaving the page short: then more are fetched.
    """
    conditions, params = where.conditions()
    wanted = limit + 1
    while True:
        starts = _newest_start_times(con, conditions, params, cursor, wanted)
        rows = _rows_starting_at(con, conditions, params, cursor, starts, limit + 1)
        if len(rows) > limit or len(starts) < wanted or wanted >= MAX_CANDIDATES:
            break
        wanted *= 4
    if len(rows) <= limit:
        return Page(rows, None)
    last = rows[limit - 1]
    return Page(rows[:limit], f"{last['cursor_us']}.{last['trace_id']}.{last['span_id']}")


def _newest_start_times(con, conditions: list[str], params: list, cursor, wanted: int) -> list[datetime]:
    """Start times of the ``wanted`` newest matching records strictly before the cursor's start time."""
    where, values = list(conditions), list(params)
    if cursor is not None:
        where.append("date <= ? AND start_time < ?")
        values += [cursor[0].date(), cursor[0]]
    sql = (f"SELECT start_time FROM inferences_all WHERE {' AND '.join(where)} "
           f"ORDER BY start_time DESC LIMIT {int(wanted)}")
    return con.sql(sql, params=values).to_arrow_table()["start_time"].to_pylist()


def _rows_starting_at(con, conditions: list[str], params: list, cursor, starts: list[datetime],
                      limit: int) -> list[dict]:
    """The newest ``limit`` matching records that start at one of ``starts`` (or at the cursor's time).

    DuckDB pushes a range or an equality on ``start_time`` below the deduplication, but
    not an IN list, so the start times are fetched as runs: close ones (dense results)
    in one range query, isolated ones (a rare subject) one equality query each, newest
    run first, until the page is full.
    """
    moments = sorted(set(starts) | ({cursor[0]} if cursor is not None else set()), reverse=True)
    rows: list[dict] = []
    for low, high in _runs(moments):
        where = [*conditions, "date = ?::DATE", "start_time >= ? AND start_time <= ?"]
        values = [*params, low.astimezone(UTC).date(), low, high]
        if cursor is not None:
            where.append("(start_time, trace_id, span_id) < (?, ?, ?)")
            values += list(cursor)
        sql = (f"SELECT {COLUMNS} FROM inferences WHERE {' AND '.join(where)} "
               f"ORDER BY start_time DESC, trace_id DESC, span_id DESC LIMIT {int(limit)}")
        rows += con.sql(sql, params=values).to_arrow_table().to_pylist()
        if len(rows) >= limit:
            break
    return rows[:limit]


def _runs(moments: list[datetime]) -> list[tuple[datetime, datetime]]:
    """(low, high) ranges of newest-first ``moments``: a run ends at a day change or a gap over ``RUN_GAP``."""
    runs: list[list[datetime]] = []
    for moment in moments:
        run = runs[-1] if runs else None
        if run and run[0].date() == moment.date() and run[0] - moment <= RUN_GAP:
            run[0] = moment
        else:
            runs.append([moment, moment])
    return [(low, high) for low, high in runs]


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time(), UTC)


def _date(text: str | None, default: date, name: str, errors: list[str]) -> date:
    if not text:
        return default
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        errors.append(f"'{name}' must be a date like 2026-11-30, not {text.strip()[:40]!r}.")
        return default
