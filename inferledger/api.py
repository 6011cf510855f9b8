"""The auditor API (``/api/v1``): thin routes over ``warehouse.audit``, behind API keys, every call logged.

Each route checks the key's role (``ApiServices.role``), opens a sandboxed DuckDB
connection restricted to the key's tenant when it has one, calls one function of
``warehouse.audit`` and records who, when, what and how many rows in the access
log. A request whose access log entry cannot be written is refused (503) rather
than answered unlogged. Admin routes live in ``inferledger/api_admin.py``.
"""
from __future__ import annotations

import logging
import time
from contextlib import closing, contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Iterator, Literal

import duckdb
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Path as PathParam, Query, Request, Security
from fastapi.responses import StreamingResponse
from fastapi.security import APIKeyHeader, HTTPBearer

from collector.pseudonymize import pseudonymize
from inferledger.api_models import DecisionDetail, DecisionPage, Problem, SqlColumn, SqlRequest, SqlResponse, WhoAmI
from inferledger.auth import AuthFailure, Gate, Principal, gate_for
from inferledger.config import Config, subject_key
from warehouse.audit.access_log import AccessLog, AccessLogUnavailable
from warehouse.audit.decisions import DecisionFilter, list_decisions
from warehouse.audit.detail import decision_detail
from warehouse.audit.export import FORMATS, DecisionExport
from warehouse.audit.scope import audit_connection, view_names
from warehouse.audit.sql import SqlError, run_sql
from warehouse.audit.values import json_rows

log = logging.getLogger(__name__)

ERRORS = {401: {"model": Problem, "description": "No API key, or an unknown or revoked one"},
          403: {"model": Problem, "description": "The key's role or tenant scope does not allow this"},
          503: {"model": Problem, "description": "The access log cannot be written; nothing was served"}}
_BEARER = HTTPBearer(auto_error=False, description="`Authorization: Bearer <API key>`")
_API_KEY = APIKeyHeader(name="X-API-Key", auto_error=False, description="`X-API-Key: <API key>`")


@dataclass
class ApiServices:
    """What the routes need from the running server."""

    config: Config
    gate: Gate
    access_log: AccessLog
    storage: object  # warehouse.storage.Storage: its manifest, for admin writes
    book: object     # warehouse.pricing.PriceBook
    subject_key: bytes

    @property
    def data_dir(self) -> Path:
        return Path(self.config.data_dir)

    def role(self, role: str):
        """A dependency: the request's principal if its key has ``role`` (admin has every role)."""

        def principal(request: Request, _bearer=Security(_BEARER), _key=Security(_API_KEY)) -> Principal:
            started = time.perf_counter()
            try:
                return self.gate.require(request.headers, role)
            except AuthFailure as failure:
                if failure.principal is not None:  # a known key without the role: worth a line in the log
                    try:
                        self.record_access(request, failure.principal, dict(request.query_params), 0, 403,
                                           "refused", started)
                    except AccessLogUnavailable:
                        log.exception("access log: could not record a refused request")
                headers = {"WWW-Authenticate": 'Bearer realm="inferledger"'} if failure.status == 401 else None
                raise HTTPException(failure.status, failure.message, headers=headers) from None

        return principal

    def connection(self, principal: Principal) -> duckdb.DuckDBPyConnection:
        try:
            return audit_connection(self.data_dir, principal.tenant, self.config.auth.query_memory_limit)
        except duckdb.Error as exc:
            raise HTTPException(503, f"the warehouse cannot be opened right now: {exc}") from None

    def record_access(self, request: Request, principal: Principal, parameters: dict, rows: int, status: int,
                      outcome: str, started: float) -> None:
        self.access_log.record(
            key_id=principal.key_id, key_name=principal.name, role=principal.role, tenant=principal.tenant,
            client=request.client.host if request.client else None, method=request.method,
            endpoint=request.scope["route"].path if request.scope.get("route") else request.url.path,
            parameters=parameters, rows=rows, status=status, outcome=outcome,
            duration_ms=round((time.perf_counter() - started) * 1000, 3))


def api_services(config: Config, storage, book) -> ApiServices:
    """The API's pieces for a server; ``AuthSetupError`` when its authentication setup must not start."""
    data_dir = Path(config.data_dir)
    access_log = AccessLog(data_dir, config.auth.access_log_flush_interval_s, config.auth.access_log_flush_entries,
                           fsync=config.storage.fsync)
    return ApiServices(config, gate_for(data_dir, config.server.host, config.auth), access_log, storage, book,
                       subject_key(config))


def mount_api(app: FastAPI, services: ApiServices) -> None:
    from inferledger.api_admin import build_admin_router

    app.include_router(build_router(services))
    app.include_router(build_admin_router(services))


class Counted:
    """What a route reports to ``audited``: the rows it returned."""

    rows = 0


def outcome_of(status: int) -> str:
    """The access log's word for an HTTP status."""
    named = {200: "ok", 401: "refused", 403: "refused", 408: "timeout"}
    return named.get(status, "invalid" if status < 500 else "error")


@contextmanager
def audited(services: ApiServices, request: Request, principal: Principal, parameters: dict,
            log_success: bool = True) -> Iterator[Counted]:
    """Log the request when the body finishes; refuse (503) a success that cannot be logged.

    ``log_success=False``: only a refusal or failure is logged here (a stream logs its own end)."""
    started, counted = time.perf_counter(), Counted()
    try:
        yield counted
    except BaseException as exc:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        try:
            services.record_access(request, principal, parameters, 0, status, outcome_of(status), started)
        except AccessLogUnavailable:
            log.exception("access log: could not record a failed request")
        raise
    if not log_success:
        return
    try:
        services.record_access(request, principal, parameters, counted.rows, 200, "ok", started)
    except AccessLogUnavailable as exc:
        raise HTTPException(503, f"{exc}; the answer was withheld because it could not be logged") from None


@dataclass
class FilterParams:
    """The listing filters as received; ``subject`` is pseudonymized before it goes anywhere."""

    time_from: datetime | None
    time_to: datetime | None
    service: str | None
    tenant: str | None
    model: str | None
    model_version: str | None
    decision_label: str | None
    subject: str | None
    trace_id: str | None
    include_all: bool


def filter_params(
    time_from: datetime | None = Query(None, alias="from",
                                       description="Records starting at or after (ISO 8601; UTC if no offset)."),
    time_to: datetime | None = Query(None, alias="to", description="Records starting before (exclusive)."),
    service: str | None = Query(None, description="service_name"),
    tenant: str | None = Query(None, description="tenant (a tenant-scoped key may only name its own)"),
    model: str | None = Query(None, description="requested or served model"),
    model_version: str | None = Query(None, description="model_version"),
    decision_label: str | None = Query(None, description="decision_label, e.g. decline"),
    subject: str | None = Query(None, description="raw subject id; matched through its pseudonym, never stored raw"),
    trace_id: str | None = Query(None, description="trace id (32 hex characters)"),
    include_all: bool = Query(False, description="List every inference, not only those with a decision_label."),
) -> FilterParams:
    return FilterParams(time_from, time_to, service, tenant, model, model_version, decision_label, subject,
                        trace_id, include_all)


def build_router(services: ApiServices) -> APIRouter:
    router = APIRouter(prefix="/api/v1", responses=ERRORS)
    auditor = services.role("auditor")

    def decision_filter(params: FilterParams, principal: Principal) -> tuple[DecisionFilter, dict]:
        """The filter for the warehouse and its form for the access log (pseudonym, not the raw subject)."""
        if principal.tenant is not None and params.tenant not in (None, principal.tenant):
            raise HTTPException(403, f"this key is scoped to tenant {principal.tenant!r} and cannot read "
                                     f"tenant {params.tenant!r}")
        values = vars(params) | {"subject": pseudonymize(params.subject, services.subject_key)
                                 if params.subject is not None else None}
        try:
            where = DecisionFilter(**values)
        except ValueError as exc:
            raise HTTPException(400, str(exc)) from None
        return where, {k: v for k, v in values.items() if v not in (None, False)}

    @router.get("/decisions", response_model=DecisionPage, tags=["auditor"], summary="List decisions",
                description="Inference records with a decision_label (all inferences with include_all=true), "
                            "oldest first, filtered, one page at a time; follow next_cursor for the next page.")
    def list_route(request: Request, params: FilterParams = Depends(filter_params),
                   cursor: str | None = Query(None, description="next_cursor of the previous page"),
                   limit: int = Query(100, ge=1, le=1000, description="Records per page"),
                   principal: Principal = Depends(auditor)) -> dict:
        logged = {"cursor": cursor, "limit": limit}
        with audited(services, request, principal, logged) as counted:
            where, shown = decision_filter(params, principal)
            logged.update(shown)
            with closing(services.connection(principal)) as con:
                try:
                    page = list_decisions(con, where, limit, cursor)
                except ValueError as exc:
                    raise HTTPException(400, str(exc)) from None
            counted.rows = page.rows.num_rows
            return {"items": page.rows.to_pylist(), "count": page.rows.num_rows, "next_cursor": page.next_cursor}

    @router.get("/decisions/export", tags=["auditor"], summary="Export decisions as JSON lines, CSV or Parquet",
                response_class=StreamingResponse,
                responses={200: {"description": "The file, streamed", "content": {
                    f.media_type.split(";")[0]: {} for f in FORMATS.values()}}},
                description="Every record the same filters select, in listing order, streamed in chunks "
                            "(no size limit). The access log entry is written when the stream ends.")
    def export_route(request: Request, params: FilterParams = Depends(filter_params),
                     format: Literal["jsonl", "csv", "parquet"] = Query("jsonl", description="File format"),
                     principal: Principal = Depends(auditor)) -> StreamingResponse:
        started = time.perf_counter()
        logged = {"format": format}
        with audited(services, request, principal, logged, log_success=False):  # the stream logs its end
            where, shown = decision_filter(params, principal)
            logged.update(shown)
            con = services.connection(principal)
        export = DecisionExport(con, services.data_dir, where, format)
        headers = {"Content-Disposition": f'attachment; filename="decisions.{FORMATS[format].extension}"'}
        return export_response(services, export, con, request, principal, logged, started, headers)

    @router.get("/decisions/{trace_id}/{span_id}", response_model=DecisionDetail, tags=["auditor"],
                summary="One decision with its attempts, reviews and cost provenance",
                responses={404: {"model": Problem, "description": "No such record (for this key's tenant)"}})
    def detail_route(request: Request,
                     trace_id: str = PathParam(pattern="^[0-9a-f]{32}$", description="32 lower-case hex"),
                     span_id: str = PathParam(pattern="^[0-9a-f]{16}$", description="16 lower-case hex"),
                     principal: Principal = Depends(auditor)) -> dict:
        with audited(services, request, principal, {"trace_id": trace_id, "span_id": span_id}) as counted:
            with closing(services.connection(principal)) as con:
                found = decision_detail(con, trace_id, span_id)
            if found is None:
                raise HTTPException(404, f"no record {trace_id}/{span_id}")
            # distinct rows shown: the attempts include the record itself
            counted.rows = len(found["attempts"]) + len(found["http_attempts"]) + len(found["reviews"])
            return found

    @router.post("/sql", response_model=SqlResponse, tags=["auditor"], summary="Read-only SQL over the warehouse views",
                 responses={400: {"model": Problem, "description": "Not valid SQL, or not exactly one statement"},
                            408: {"model": Problem, "description": "Interrupted at the time limit"}},
                 description="One SELECT over the views (inferences, http_attempts, cost_versions, repricings, "
                             "access_log, job results, ...). Writes, ATTACH, INSTALL/LOAD, SET, PRAGMA, COPY and "
                             "table functions such as read_parquet or read_csv are refused with 403.")
    def sql_route(request: Request, body: SqlRequest, principal: Principal = Depends(auditor)) -> dict:
        settings = services.config.auth
        limit = body.limit or settings.sql_row_limit
        with audited(services, request, principal, {"sql": body.sql, "limit": limit}) as counted:
            if limit > settings.sql_max_row_limit:
                raise HTTPException(400, f"limit {limit} exceeds the maximum of {settings.sql_max_row_limit} rows "
                                         "(auth.sql_max_row_limit); use /api/v1/decisions/export for bulk data")
            with closing(services.connection(principal)) as con:
                try:
                    result = run_sql(con, body.sql, view_names(con), limit, settings.sql_time_limit_s)
                except SqlError as exc:
                    raise HTTPException(exc.status, exc.message) from None
            counted.rows = result.table.num_rows
            return {"columns": [SqlColumn(name=f.name, type=str(f.type)) for f in result.table.schema],
                    "rows": json_rows(result.table), "row_count": result.table.num_rows,
                    "truncated": result.truncated, "limit": limit, "elapsed_ms": round(result.elapsed_ms, 3)}

    @router.get("/whoami", response_model=WhoAmI, tags=["auth"], summary="The API key this request acts as")
    def whoami(request: Request, _bearer=Security(_BEARER), _key=Security(_API_KEY)) -> dict:
        try:
            principal = services.gate.principal(request.headers)
        except AuthFailure as failure:
            raise HTTPException(failure.status, failure.message) from None
        return {"key_id": principal.key_id, "name": principal.name, "role": principal.role,
                "tenant": principal.tenant, "authentication_required": services.gate.required}

    return router


def export_response(services: ApiServices, export: DecisionExport, con, request: Request, principal: Principal,
                    parameters: dict, started: float, headers: dict[str, str]) -> StreamingResponse:
    """Stream ``export`` (API and dashboard); the access log entry is written when the stream ends.

    The first chunk is produced before the response starts, so an error before the first byte
    still gets a proper status."""
    chunks = _logged_stream(services, export, con, request, principal, parameters, started)
    first = next(chunks, b"")
    return StreamingResponse(_prepend(first, chunks), media_type=FORMATS[export.fmt].media_type, headers=headers)


def _logged_stream(services: ApiServices, export: DecisionExport, con, request: Request, principal: Principal,
                   parameters: dict, started: float) -> Iterator[bytes]:
    """The export's chunks; closes the connection and writes the access log entry however the stream ends."""
    outcome = "aborted"  # the client went away before the end
    try:
        yield from export
        outcome = "ok"
    except Exception:
        outcome = "error"
        log.exception("export failed after %d rows", export.rows)
        raise
    finally:
        con.close()
        try:
            services.record_access(request, principal, parameters, export.rows,
                                   200 if outcome == "ok" else 500, outcome, started)
        except AccessLogUnavailable:
            log.exception("access log: could not record an export of %d rows", export.rows)


def _prepend(first: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
    if first:
        yield first
    yield from rest
