"""``GET /dashboard/decisions/export``: the decision search as JSON lines, CSV or Parquet.

A browser link cannot send an API key header, so the dashboard offers the export
behind its own login and hands it to the auditor API's machinery: the same
``warehouse.audit.export.DecisionExport`` stream, the same tenant-scoped connection
and the same access log entry (written when the stream ends) as
``GET /api/v1/decisions/export``.
"""
from __future__ import annotations

import time
from dataclasses import asdict
from datetime import UTC, datetime

from fastapi import Request
from fastapi.responses import Response

from inferledger.auth import Principal
from inferledger.dashboard.decisions import parse_search
from warehouse.audit.export import FORMATS, DecisionExport


def export_response(site, request: Request, viewer: Principal) -> Response:
    from inferledger.api import export_response

    fmt = request.query_params.get("format", "csv")
    search, errors = parse_search(dict(request.query_params), datetime.now(UTC).date(), viewer.tenant)
    if fmt not in FORMATS:
        errors.append(f"Unknown export format {fmt!r}: use one of {', '.join(FORMATS)}.")
    if errors:
        return site.render("error.html.j2", 400, title="Export", viewer=viewer, message=" ".join(errors))
    if site.api is None:
        return site.render("error.html.j2", 503, title="Export", viewer=viewer,
                           message="Exports need the auditor API and its access log, which this server does not run.")
    started = time.perf_counter()
    where = search.decision_filter(site.pseudonymize)
    logged = {"format": fmt, "via": "dashboard",
              **{key: value for key, value in asdict(where).items() if value not in (None, False)}}
    con = site.audit_connection(viewer)
    name = f"decisions-{search.date_from}-{search.date_to}.{FORMATS[fmt].extension}"
    headers = {"Content-Disposition": f'attachment; filename="{name}"', "Cache-Control": "no-store"}
    return export_response(site.api, DecisionExport(con, site.data_dir, where, fmt), con, request, viewer, logged,
                           started, headers)
