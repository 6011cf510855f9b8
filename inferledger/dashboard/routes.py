"""The dashboard's HTTP routes: one GET per page, the login form, the static files.

Pages are rendered on the server (Jinja2) from the jobs' small result tables; the
charts are drawn in the browser by the vendored uPlot from JSON embedded beside
each chart, and every chart has a table with the same figures under it, so the
dashboard is usable without JavaScript. Handlers are plain ``def``: FastAPI runs
them in its thread pool, so a slow DuckDB query never blocks the event loop that
also acknowledges OTLP exports.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Callable
from urllib.parse import parse_qs, quote, urlsplit

import duckdb
import jinja2
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from inferledger.auth import Principal
from inferledger.dashboard import format as fmt
from inferledger.dashboard.session import COOKIE_NAME, COOKIE_PATH, Refusal, Sessions, safe_next, unscoped_refusal

log = logging.getLogger(__name__)
HERE = Path(__file__).parent
STATIC_URL = f"{COOKIE_PATH}/static"
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; "
                               "form-action 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",  # no-referrer would make the browser send "Origin: null" on our own form
    "Cache-Control": "no-store",
}
MAX_LOGIN_BODY = 4096


@dataclass
class PageRequest:
    """What a page builder may use: the warehouse, the query string, the time, who asks."""

    warehouse: Any  # reports.sources.Warehouse
    params: dict[str, str]
    now: datetime
    viewer: Principal
    site: "Site"
    http: Request


@dataclass(frozen=True)
class Page:
    path: str
    name: str
    template: str
    build: Callable[[PageRequest], dict]
    jobs: tuple[str, ...] = ()   # whose last run the page header names
    all_tenants: bool = True     # aggregates every tenant: refused to tenant-scoped keys


@dataclass
class Site:
    """The dashboard of one server: its data, price book, sessions and templates."""

    config: Any
    pages: list[Page]
    sessions: Sessions
    book: Any = None
    api: Any = None  # inferledger.api.ApiServices: the access log and the auditor connections
    environment: jinja2.Environment = field(init=False)
    _pseudonymizer: Any = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.environment = jinja2.Environment(
            loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True,
            trim_blocks=True, lstrip_blocks=True, undefined=jinja2.StrictUndefined)
        self.environment.filters.update(fmt.FILTERS)

    @property
    def data_dir(self) -> Path:
        return Path(self.config.data_dir)

    def price_book(self):
        """The server's price book; loaded here only when the app was built without one."""
        if self.book is None:
            from warehouse.pricing import load_book

            self.book = load_book(self.config.pricing.price_file)
        return self.book

    def pseudonymize(self, identifier: str) -> str:
        """The pseudonym the collector stores for ``identifier`` (same key, same HMAC)."""
        if self._pseudonymizer is None:
            from collector.pseudonymize import Pseudonymizer
            from inferledger.config import subject_key

            self._pseudonymizer = Pseudonymizer(subject_key(self.config))
        return self._pseudonymizer(identifier)

    def audit_connection(self, viewer: Principal):
        """A sandboxed connection holding only the viewer's tenant when the key is scoped (as the API's)."""
        from warehouse.audit.scope import audit_connection

        if self.api is not None:
            return self.api.connection(viewer)
        return audit_connection(self.data_dir, viewer.tenant)

    def record_access(self, request: Request, viewer: Principal, parameters: dict, rows: int, started: float) -> None:
        """One access log entry, as the auditor API writes; raises AccessLogUnavailable when it cannot."""
        if self.api is not None:
            self.api.record_access(request, viewer, parameters, rows, 200, "ok", started)

    def render(self, template: str, status: int = 200, **context: Any) -> HTMLResponse:
        base = {"static": STATIC_URL, "nav": [(page.path, page.name) for page in self.pages], "active": None,
                "viewer": None, "freshness": None}
        html = self.environment.get_template(template).render(**{**base, **context})
        return HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)


def mount_dashboard(app: FastAPI, config: Any, book: Any = None, api: Any = None) -> Site:
    """Add the dashboard pages and their static files to ``app``.

    ``api`` (``inferledger.api.ApiServices``) brings the authentication gate and the
    access log the decision search writes to; without it (an app built without the
    auditor API) the rule of ``[auth] mode`` is applied to ``server.host`` here and
    searches are not logged.
    """
    from inferledger.dashboard.pages import PAGES

    required = api.gate.required if api is not None else auth_required(config)
    site = Site(config, PAGES, Sessions(Path(config.data_dir), required), book, api)
    app.mount(STATIC_URL, StaticFiles(directory=HERE / "static"), name="dashboard-static")
    app.include_router(build_router(site))
    return site


def auth_required(config: Any) -> bool:
    """``[auth] mode``: "required", or "auto" on a non-loopback address (inferledger.auth.gate_for)."""
    from inferledger.auth import is_loopback

    mode = config.auth.mode
    return mode == "required" or (mode == "auto" and not is_loopback(config.server.host))


def build_router(site: Site) -> APIRouter:
    router = APIRouter(include_in_schema=False)
    for page in site.pages:
        router.add_api_route(page.path, _page_handler(site, page), methods=["GET"], response_class=HTMLResponse)
    router.add_api_route(f"{COOKIE_PATH}/decisions/export", _export(site), methods=["GET"])
    router.add_api_route(f"{COOKIE_PATH}/login", _login_form(site), methods=["GET"])
    router.add_api_route(f"{COOKIE_PATH}/login", _login(site), methods=["POST"])
    router.add_api_route(f"{COOKIE_PATH}/logout", _logout, methods=["POST"])
    router.add_api_route(f"{COOKIE_PATH}/", lambda: RedirectResponse(COOKIE_PATH, 308), methods=["GET"])
    return router


def _page_handler(site: Site, page: Page):
    def handler(request: Request) -> Response:
        viewer = site.sessions.viewer(request.cookies, request.headers)
        if isinstance(viewer, Principal) and page.all_tenants:
            viewer = unscoped_refusal(viewer) or viewer
        if isinstance(viewer, Refusal):
            return _refused(site, request, viewer)
        return render_page(site, page, request, viewer)

    handler.__name__ = f"dashboard_{page.template.split('.')[0]}"
    return handler


def render_page(site: Site, page: Page, request: Request, viewer: Principal) -> Response:
    from reports.sources import Warehouse
    from warehouse.audit.access_log import AccessLogUnavailable

    params = {key: value for key, value in request.query_params.items()}
    try:
        with Warehouse(site.data_dir) as warehouse:
            context = page.build(PageRequest(warehouse, params, datetime.now(UTC), viewer, site, request))
            freshness = last_runs(warehouse, page.jobs)
    except AccessLogUnavailable as exc:
        return site.render("error.html.j2", 503, title=page.name, active=page.path, viewer=viewer,
                           message=f"{exc}; the results are withheld because the access could not be logged.")
    except Exception as exc:  # a bad table or a bug: an error page that says which, never a bare 500
        log.exception("dashboard page %s failed", page.path)
        what = ("The warehouse could not answer this page's query" if isinstance(exc, duckdb.Error)
                else "This page failed; please report it")
        return site.render("error.html.j2", 500, title=page.name, active=page.path, viewer=viewer,
                           message=f"{what}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
    return site.render(page.template, title=page.name, active=page.path, viewer=viewer, freshness=freshness,
                       **context)


def last_runs(warehouse, jobs: tuple[str, ...]) -> str | None:
    """"rollups ran 2026-11-23 10:05 UTC" for the jobs a page reads; None before any run."""
    if not jobs or not warehouse.has_view("job_runs"):
        return None
    placeholders = ", ".join("?" for _ in jobs)
    rows = warehouse.rows("dashboard freshness", f"""
        SELECT job, max(finished_at) AS finished, arg_max(status, finished_at) AS status
        FROM job_runs WHERE job IN ({placeholders}) GROUP BY job ORDER BY job""", jobs)
    if not rows:
        return None
    parts = [f"{row['job']} ran {fmt.when(row['finished'])}" + (" (failed)" if row["status"] != "ok" else "")
             for row in rows]
    return "; ".join(parts) + " UTC"


def _export(site: Site):
    """The decision search as a file, through the auditor API's export and access log (cookie or key auth)."""

    def export(request: Request) -> Response:
        from inferledger.dashboard.exports import export_response

        viewer = site.sessions.viewer(request.cookies, request.headers)
        if isinstance(viewer, Refusal):
            return _refused(site, request, viewer)
        return export_response(site, request, viewer)

    return export


def _refused(site: Site, request: Request, refusal: Refusal) -> Response:
    if refusal.status == 401 and "authorization" not in request.headers and "x-api-key" not in request.headers:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"{COOKIE_PATH}/login?next={quote(target, safe='')}", 303, headers=SECURITY_HEADERS)
    return site.render("login.html.j2", refusal.status, title="Log in", message=refusal.message,
                       next=COOKIE_PATH, auth_required=site.sessions.required)


def _login_form(site: Site):
    def login_form(request: Request) -> Response:
        return site.render("login.html.j2", title="Log in", message=None, auth_required=site.sessions.required,
                           next=safe_next(request.query_params.get("next")))

    return login_form


def _login(site: Site):
    async def login(request: Request) -> Response:
        if not _same_origin(request):  # a form on another site must not log this browser in
            return site.render("login.html.j2", 403, title="Log in", next=COOKIE_PATH, auth_required=True,
                               message="This login form was posted from another site; use the form on this one.")
        body = await request.body()
        form = {key: values[0] for key, values in parse_qs(body[:MAX_LOGIN_BODY].decode("utf-8", "replace")).items()}
        target = safe_next(form.get("next"))
        if not site.sessions.required:
            return RedirectResponse(target, 303, headers=SECURITY_HEADERS)
        principal, cookie = site.sessions.login(form.get("api_key", ""))
        if principal is None:
            return site.render("login.html.j2", 401, title="Log in", message=cookie, next=target,
                               auth_required=True)
        response = RedirectResponse(target, 303, headers=SECURITY_HEADERS)
        response.set_cookie(COOKIE_NAME, cookie, max_age=site.sessions.lifetime_s, path=COOKIE_PATH, httponly=True,
                            samesite="strict", secure=_is_https(request))
        return response

    return login


def _logout(request: Request) -> Response:
    response = RedirectResponse(f"{COOKIE_PATH}/login", 303, headers=SECURITY_HEADERS)
    response.delete_cookie(COOKIE_NAME, path=COOKIE_PATH, httponly=True, samesite="strict", secure=_is_https(request))
    return response


def _same_origin(request: Request) -> bool:
    """No ``Origin`` header (an old browser, a script), or one naming this host (or the proxy's).

    ``Origin: null`` (a sandboxed frame, a page that hides its origin) is refused too.
    """
    origin = request.headers.get("origin")
    if not origin:
        return True
    host = request.headers.get("x-forwarded-host") or request.headers.get("host", "")
    return urlsplit(origin).netloc == host.split(",")[0].strip()


def _is_https(request: Request) -> bool:
    """HTTPS here, or at a TLS-terminating proxy in front that says so."""
    forwarded = request.headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
    return request.url.scheme == "https" or forwarded == "https"
