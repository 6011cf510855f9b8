"""Page builders for running the system: alerts, price coverage, decision search.

Each builder takes a ``PageRequest`` and returns the template's context; a table
that does not exist yet (its job or feature never ran) gives an empty section,
never an error.
"""
from __future__ import annotations

import time
from contextlib import closing
from dataclasses import asdict
from datetime import timedelta

from inferledger.dashboard.decisions import parse_cursor, parse_search, search

RECENT_ROWS = 100
GIVEN_UP = ("failed", "dropped")  # delivery outcomes (alerts/delivery.py); retry and deferred are tried again
STATE_ORDER = "CASE state WHEN 'firing' THEN 0 WHEN 'pending' THEN 1 WHEN 'resolved' THEN 2 ELSE 3 END"
SEVERITY_ORDER = "CASE severity WHEN 'critical' THEN 0 WHEN 'warning' THEN 1 ELSE 2 END"


def alerts_page(request) -> dict:
    """Current alert states (firing first), then the newest transitions and delivery attempts."""
    wh = request.warehouse
    since = request.now - timedelta(days=30)
    states = events = deliveries = []
    if wh.has_view("alert_states"):
        states = wh.rows("alert states", f"""
            SELECT rule, metric, labels, state, severity, since, fired_at, resolved_at, last_notified_at, value,
                   threshold, verdict, reason, window_end
            FROM alert_states WHERE state <> 'ok' OR fired_at IS NOT NULL
            ORDER BY {STATE_ORDER}, {SEVERITY_ORDER}, since DESC, rule, labels""")
    if wh.has_view("alert_events"):
        events = wh.rows("alert events", f"""
            SELECT event_time, rule, labels, severity, event, from_state, to_state, value, threshold, verdict, reason,
                   notification
            FROM alert_events WHERE event_time >= ? ORDER BY event_time DESC LIMIT {RECENT_ROWS}""", [since])
    if wh.has_view("alert_deliveries"):
        deliveries = wh.rows("alert deliveries", f"""
            SELECT attempted_at, rule, kind, channel, target, attempt, outcome, error, duration_ms
            FROM alert_deliveries WHERE attempted_at >= ? ORDER BY attempted_at DESC LIMIT {RECENT_ROWS}""", [since])
    firing = sum(1 for row in states if row["state"] == "firing")
    failed = sum(1 for row in deliveries if row["outcome"] in GIVEN_UP)
    return {"states": states, "events": events, "deliveries": deliveries, "firing": firing,
            "failed_deliveries": failed, "has_tables": wh.has_view("alert_states")}


def decisions_page(request) -> dict:
    """The decision search (``inferledger.dashboard.decisions``); every search is in the access log."""
    started = time.perf_counter()
    viewer, site = request.viewer, request.site
    search_form, errors = parse_search(request.params, request.now.date(), viewer.tenant)
    after = request.params.get("after")
    cursor = parse_cursor(after)
    if after and cursor is None:
        errors.append("The page link is damaged; showing the first page.")
    where = search_form.decision_filter(site.pseudonymize)
    with closing(site.audit_connection(viewer)) as con:
        page = search(con, where, cursor)
    logged = {"after": after, "via": "dashboard",
              **{key: value for key, value in asdict(where).items() if value not in (None, False)}}
    site.record_access(request.http, viewer, logged, len(page.rows), started)
    exports = {fmt: f"/dashboard/decisions/export?{search_form.query_string(format=fmt)}"
               for fmt in ("csv", "jsonl", "parquet")}
    return {"search": search_form, "errors": errors, "page": page, "cursor": cursor, "scope": viewer.tenant,
            "exports": exports, "api_url": search_form.api_url("csv"),
            "pseudonym": where.subject, "options": search_options(request.warehouse, viewer.tenant)}


def search_options(wh, tenant: str | None) -> dict[str, list[str]]:
    """Suggestions for the search form from the small daily rollup (never from ``inferences``)."""
    options = {"services": [], "models": []}
    if wh.has_view("rollup_daily"):
        scoped = "AND tenant = ?" if tenant is not None else ""
        for key, column in (("services", "service"), ("models", "model")):
            rows = wh.rows("search options", f"""
                SELECT DISTINCT {column} AS value FROM rollup_daily WHERE {column} IS NOT NULL {scoped}
                ORDER BY 1 LIMIT 500""", [tenant] if tenant is not None else [])
            options[key] = [row["value"] for row in rows]
    return options
