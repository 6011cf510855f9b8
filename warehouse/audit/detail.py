"""One decision record in full: its attempts, the HTTP attempts under them, its human reviews, its costs.

* **Attempts** of one logical request: records sharing its ``request_key`` (searched
  from the day before to the day after), and the ``retry_of_span_id`` chain through
  it in both directions within the trace. The record itself is one of them.
* **HTTP attempts**: ``http_attempts`` rows whose parent is one of those attempts.
* **Reviews**: records carrying ``review_*`` fields that point at this span
  (``reviewed_span_id``, from a span link, in any trace), or sit in the same trace
  without naming another span.
* **Cost provenance**: the cost as shown (latest version) with its source and
  price entry, the reported and computed figures, and every version: 0 as landed,
  then each repricing or capacity allocation with who, when and why.
"""
from __future__ import annotations

from datetime import timedelta

import duckdb

REVIEW_FIELDS = ("review_outcome", "review_override", "reviewer_id", "review_duration_s")
COST_FIELDS = ("cost_usd", "computed_cost_usd", "cost_source", "price_ref")


def decision_detail(con: duckdb.DuckDBPyConnection, trace_id: str, span_id: str) -> dict | None:
    """Everything known about one record, or None when the (possibly scoped) warehouse has no such record."""
    found = _located(con, "inferences", "trace_id = ? AND span_id = ?", [trace_id, span_id])
    if not found:
        return None
    record = found[0]
    trace = _located(con, "inferences", "trace_id = ?", [trace_id])
    attempts = _attempts(con, record, trace)
    return {
        "record": record,
        "attempts": attempts,
        "http_attempts": _http_attempts(con, attempts),
        "reviews": _reviews(con, record, trace),
        "cost": _cost_provenance(con, record),
    }


def _rows(con: duckdb.DuckDBPyConnection, sql: str, params: list) -> list[dict]:
    return con.sql(sql, params=params).to_arrow_table().to_pylist()


def _located(con, view: str, condition: str, params: list) -> list[dict]:
    """Rows of ``view`` matching ``condition``, ordered by time.

    Deduplication is a window over (date, trace_id, span_id, start_time): filters on other columns
    cannot go below it, so the view would deduplicate whole days first. The matching spans are found
    in ``<view>_all`` instead (a plain scan of a few columns), then read from the view by their ids
    and days, which DuckDB does push below the window.
    """
    keys = con.sql(f"SELECT DISTINCT date, trace_id, span_id FROM {view}_all WHERE {condition}",
                   params=params).to_arrow_table().to_pylist()
    if not keys:
        return []
    wanted = {(key["trace_id"], key["span_id"]) for key in keys}
    days = [key["date"] for key in keys if key["date"] is not None] or [None]
    rows = _rows(con, f"SELECT * FROM {view} WHERE list_contains(?, trace_id) AND list_contains(?, span_id) "
                      "AND (date BETWEEN ? AND ? OR date IS NULL) ORDER BY start_time, span_id",
                 [sorted({t for t, _ in wanted}), sorted({s for _, s in wanted}), min(days, default=None),
                  max(days, default=None)])
    return [row for row in rows if (row["trace_id"], row["span_id"]) in wanted]


def _attempts(con, record: dict, trace: list[dict]) -> list[dict]:
    members = {record["span_id"]: record}
    by_span = {row["span_id"]: row for row in trace}
    current = record
    while current.get("retry_of_span_id") in by_span and current["retry_of_span_id"] not in members:
        current = by_span[current["retry_of_span_id"]]
        members[current["span_id"]] = current
    grew = True
    while grew:  # later attempts: rows that retry one of the members
        later = [row for row in trace if row.get("retry_of_span_id") in members and row["span_id"] not in members]
        members.update((row["span_id"], row) for row in later)
        grew = bool(later)
    if record.get("request_key") and record.get("date"):
        day = record["date"]
        for row in _located(con, "inferences", "request_key = ? AND date BETWEEN ? AND ?",
                            [record["request_key"], day - timedelta(days=1), day + timedelta(days=1)]):
            members.setdefault(row["span_id"], row)
    return sorted(members.values(), key=lambda row: (row.get("attempt") or 0, row["start_time"], row["span_id"]))


def _http_attempts(con, attempts: list[dict]) -> list[dict]:
    parents = {(row["trace_id"], row["span_id"]) for row in attempts}
    rows = _located(con, "http_attempts", "list_contains(?, trace_id) AND list_contains(?, parent_span_id)",
                    [sorted({t for t, _ in parents}), sorted({s for _, s in parents})])
    return [row for row in rows if (row["trace_id"], row["parent_span_id"]) in parents]


def _is_review(row: dict) -> bool:
    return any(row.get(field) is not None for field in REVIEW_FIELDS)


def _reviews(con, record: dict, trace: list[dict]) -> list[dict]:
    span_id = record["span_id"]
    found = {row["span_id"]: row for row in trace if row["span_id"] != span_id and _is_review(row)
             and row.get("reviewed_span_id") in (None, span_id)}
    reviewing = " OR ".join(f"{field} IS NOT NULL" for field in REVIEW_FIELDS)
    for row in _located(con, "inferences", f"reviewed_span_id = ? AND trace_id <> ? AND ({reviewing})",
                        [span_id, record["trace_id"]]):
        found.setdefault(row["span_id"], row)
    return sorted(found.values(), key=lambda row: (row["start_time"], row["span_id"]))


def _cost_provenance(con, record: dict) -> dict:
    key = [record["trace_id"], record["span_id"], record["date"]]
    landed = _rows(con, f"SELECT {', '.join(COST_FIELDS)}, ingest_time FROM inferences_raw "
                        "WHERE trace_id = ? AND span_id = ? AND date IS NOT DISTINCT FROM ?", key)
    versions = [{"cost_version": 0, "kind": "landing", "at": row.pop("ingest_time"), "actor": None, "reason": None,
                 **row} for row in landed[:1]]
    later = _rows(con, f"SELECT cost_version, {', '.join(COST_FIELDS)} FROM cost_versions "
                       "WHERE trace_id = ? AND span_id = ? AND date IS NOT DISTINCT FROM ? ORDER BY cost_version", key)
    if later:
        log = {row["cost_version"]: row for row in _rows(
            con, "SELECT cost_version, kind, repriced_at, actor, reason FROM repricings "
                 "WHERE list_contains(?, cost_version)", [[row["cost_version"] for row in later]])}
        for row in later:
            entry = log.get(row["cost_version"], {})
            versions.append({**row, "kind": entry.get("kind"), "at": entry.get("repriced_at"),
                             "actor": entry.get("actor"), "reason": entry.get("reason")})
    shown = {field: record.get(field) for field in (*COST_FIELDS, "reported_cost_usd", "cost_version")}
    return {**shown, "versions": versions}
