"""Retry evidence: which inference records are attempts of one logical request.

Shared by the rollups (logical requests, attempts) and the retry-inflation job, so
both count a retried request the same way. The evidence kinds (ARCHITECTURE.md,
Retries), strongest first; a record is judged by the strongest kind it carries:

* ``request_key`` (c): records sharing ``request_key`` are one logical request; the
  one with the highest ``attempt`` is the final one. A key counts as retried when
  one of its records has ``attempt >= 1``; a key seen only with attempt 0 is a
  request that was not retried.
* ``retry_link`` (c): ``retry_of_span_id`` (a span link ``retry_of``) points at the
  previous attempt, which is therefore not the final answer, however it ended. A
  chain of links is one logical request. Matched by span id alone: a retry from a
  queue may start a new trace.
* ``sibling_spans`` (a): inference spans without a key under one parent with the
  same operation and requested model, in time order. A *failed* span followed by a
  sibling was retried by it; a successful span ends its logical request (an agent
  calling the same model five times under one parent made five requests, not one
  with four retries). A successful answer the application discarded is visible
  only through explicit evidence.
* ``http_attempts`` (b): HTTP client spans under an inference span, when one of
  them failed or was resent: ``max(http.request.resend_count)`` extra attempts, or
  (when no span carries a resend count) one fewer than the HTTP spans. They add
  attempts, not tokens: the instrumented call shows only the answer that came back.

Small tables the jobs look records up in (records found in none are logical
requests of their own, which is nearly all of them, so every record is read once):
``key_finals`` (retried keys and their last attempt number) and ``key_superseded``
(their earlier attempt numbers); ``attempt_facts``, one row per record of a
multi-span request found by links or siblings: ``evidence``, ``logical_id`` (the
same for all attempts of one logical request) and ``superseded`` (a later attempt
exists: not the final answer); ``http_facts``, one per inference span with hidden
HTTP attempts (``http_extra``).

The lookups read the cheap ``*_all`` views: which attempts exist does not change
when a span is stored twice (members are taken DISTINCT). Attempts are looked for
up to ``HORIZON`` beyond the range a job computes, so a retry across a window or
chunk boundary is still joined up.
"""
from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

HORIZON = timedelta(hours=1)
MAX_LINK_DEPTH = 32  # a retry_of chain longer than this (or a cycle) stops being followed

_RANGE = "date BETWEEN $ev_first_day AND $ev_last_day AND start_time >= $ev_start AND start_time < $ev_end"
_SIBLINGS = "PARTITION BY trace_id, parent_span_id, operation, asked"

EVIDENCE_CTES = f"""
key_finals AS (
    SELECT request_key, max(attempt) AS last_attempt FROM inferences_all
    WHERE {_RANGE} AND request_key IS NOT NULL AND attempt >= 1
    GROUP BY request_key),
key_superseded AS (
    SELECT request_key, unnest(range(last_attempt)) AS attempt FROM key_finals),
link_targets AS (
    SELECT DISTINCT retry_of_span_id AS span_id FROM inferences_all
    WHERE {_RANGE} AND retry_of_span_id IS NOT NULL AND request_key IS NULL),
link_members AS (
    SELECT DISTINCT i.trace_id, i.span_id, i.retry_of_span_id, t.span_id IS NOT NULL AS is_target
    FROM inferences_all i LEFT JOIN link_targets t ON i.span_id = t.span_id
    WHERE {_RANGE} AND i.request_key IS NULL AND (i.retry_of_span_id IS NOT NULL OR t.span_id IS NOT NULL)),
link_walk AS (
    SELECT span_id, coalesce(retry_of_span_id, span_id) AS root, 0 AS depth FROM link_members
    UNION ALL
    SELECT w.span_id, m.retry_of_span_id, w.depth + 1
    FROM link_walk w JOIN link_members m ON m.span_id = w.root
    WHERE m.retry_of_span_id IS NOT NULL AND w.depth < {MAX_LINK_DEPTH}),
link_facts AS (
    SELECT m.trace_id, m.span_id, 1 AS rank, 'retry_link' AS evidence, 'l:' || r.root AS logical_id,
        m.is_target AS superseded
    FROM link_members m JOIN (SELECT span_id, arg_max(root, depth) AS root FROM link_walk GROUP BY span_id) r
        ON m.span_id = r.span_id),
failed_parents AS (
    SELECT DISTINCT trace_id, parent_span_id FROM inferences_all
    WHERE {_RANGE} AND status = 'error' AND request_key IS NULL AND parent_span_id IS NOT NULL),
sibling_members AS (
    SELECT DISTINCT i.trace_id, i.span_id, i.parent_span_id, coalesce(i.operation, '') AS operation,
        coalesce(i.request_model, i.response_model, '') AS asked, i.status, i.start_time
    FROM inferences_all i SEMI JOIN failed_parents f
        ON i.trace_id = f.trace_id AND i.parent_span_id = f.parent_span_id
    WHERE {_RANGE} AND i.request_key IS NULL),
sibling_order AS (
    SELECT *, lag(status) OVER (w) AS previous_status, lead(span_id) OVER (w) AS next_span,
        count(*) OVER ({_SIBLINGS}) AS siblings
    FROM sibling_members WINDOW w AS ({_SIBLINGS} ORDER BY start_time, span_id)),
sibling_facts AS (
    -- a new logical request starts at every sibling whose predecessor succeeded
    SELECT trace_id, span_id, 2 AS rank, 'sibling_spans' AS evidence,
        's:' || trace_id || ':' || parent_span_id || ':' || operation || ':' || asked || ':'
            || sum(CASE WHEN previous_status = 'ok' THEN 1 ELSE 0 END)
                OVER ({_SIBLINGS} ORDER BY start_time, span_id) AS logical_id,
        status = 'error' AND next_span IS NOT NULL AS superseded
    FROM sibling_order WHERE siblings > 1),
attempt_facts AS (
    SELECT trace_id, span_id, arg_min(evidence, rank) AS evidence, arg_min(logical_id, rank) AS logical_id,
        arg_min(superseded, rank) AS superseded
    FROM (SELECT * FROM link_facts UNION ALL SELECT * FROM sibling_facts)
    GROUP BY trace_id, span_id),
http_flagged AS (
    SELECT DISTINCT trace_id, parent_span_id FROM http_attempts_all
    WHERE {_RANGE} AND parent_span_id IS NOT NULL
        AND (resend_count > 0 OR status_code >= 400 OR error_type IS NOT NULL)),
http_facts AS (
    SELECT h.trace_id, h.parent_span_id AS span_id,
        CASE WHEN max(h.resend_count) > 0 THEN max(h.resend_count) ELSE count(DISTINCT h.span_id) - 1 END
            AS http_extra
    FROM http_attempts_all h SEMI JOIN http_flagged f
        ON h.trace_id = f.trace_id AND h.parent_span_id = f.parent_span_id
    WHERE {_RANGE}
    GROUP BY h.trace_id, h.parent_span_id)"""

# Marks on the records (alias r). IN builds its hash table on the small fact set whatever the optimizer
# estimates; a LEFT JOIN was seen hashing every record instead (a plan ten times slower).
KEYED = "coalesce(r.request_key IN (SELECT request_key FROM key_finals), false)"  # NULL IN (...) is NULL
IN_FACTS = "coalesce((r.trace_id, r.span_id) IN (SELECT trace_id, span_id FROM attempt_facts), false)"
SUPERSEDED = """coalesce(CASE WHEN r.request_key IS NOT NULL
        THEN (r.request_key, coalesce(r.attempt, 0)) IN (SELECT request_key, attempt FROM key_superseded)
        ELSE (r.trace_id, r.span_id) IN (SELECT trace_id, span_id FROM attempt_facts WHERE superseded) END, false)"""
# HTTP facts are few and estimated so: joined directly.
HTTP_JOIN = "LEFT JOIN http_facts h ON r.trace_id = h.trace_id AND r.span_id = h.span_id"
HTTP_EXTRA = "coalesce(h.http_extra, 0)"


def evidence_params(start: datetime, end: datetime, horizon_before: bool = True) -> dict[str, Any]:
    """The lookup range: ``[start - HORIZON, end + HORIZON)`` (from ``start`` itself when not ``horizon_before``)."""
    low = start - HORIZON if horizon_before else start
    high = end + HORIZON
    return {"ev_start": low, "ev_end": high, "ev_first_day": low.date(), "ev_last_day": high.date()}
