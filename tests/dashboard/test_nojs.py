"""The dashboard without JavaScript: plain HTTP, the tables are in the HTML; and empty or bad states."""
from __future__ import annotations

import re
from html.parser import HTMLParser

import httpx
import pytest

from inferledger.app import RunningServer
from tests.conftest import make_config


class Tables(HTMLParser):
    """The text of every cell of every table, by table id."""

    def __init__(self, html: str):
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self._table = self._row = self._cell = None
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self._table = self.tables.setdefault(dict(attrs).get("id", f"table{len(self.tables)}"), [])
        elif tag == "tr" and self._table is not None:
            self._row = []
            self._table.append(self._row)
        elif tag in ("td", "th") and self._row is not None:
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self._row.append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def page_tables(url: str) -> dict[str, list[list[str]]]:
    answer = httpx.get(url, timeout=30)
    assert answer.status_code == 200, (url, answer.status_code)
    assert answer.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in answer.headers["content-security-policy"]
    return Tables(answer.text).tables


def row(table: list[list[str]], first: str) -> list[str]:
    return next(cells for cells in table if first in cells[:2])


def test_every_table_is_server_rendered(site):
    base = site.server.http_url
    overview = page_tables(base + "/dashboard")
    assert row(overview["cost-by-model"], "gpt-4o")[6] == "$21.00"
    assert row(overview["budgets"], "support-monthly")[3] == "$100.00"
    assert row(page_tables(base + "/dashboard/prices")["prices"], "ranker-x")[3] == "28"
    assert row(page_tables(base + "/dashboard/retries")["retries"], "gpt-4o")[9] == "$1.40"
    assert any(cells[0] == "drift" for cells in page_tables(base + "/dashboard/drift")["drift"][1:])
    assert len(page_tables(base + "/dashboard/alerts")["alert-deliveries"]) == 1 + site.alert_run.sent
    assert len(page_tables(base + "/dashboard/decisions")["decisions"]) == 1 + 50
    assert "change-by-service" in page_tables(base + "/dashboard/variance")


def test_static_files_are_served_with_the_package(site):
    base = site.server.http_url + "/dashboard/static"
    for path in ("/vendor/uPlot.iife.min.js", "/vendor/uPlot.min.css", "/charts.js", "/dashboard.css"):
        assert httpx.get(base + path).status_code == 200, path
    assert httpx.get(base + "/../routes.py").status_code == 404


@pytest.fixture(scope="module")
def empty_server(tmp_path_factory):
    with RunningServer(make_config(tmp_path_factory.mktemp("empty") / "data")) as server:
        yield server


@pytest.mark.parametrize("path", ["/dashboard", "/dashboard/variance", "/dashboard/retries", "/dashboard/drift",
                                  "/dashboard/alerts", "/dashboard/prices"])
def test_pages_before_any_job_ran_say_what_to_do(empty_server, path):
    answer = httpx.get(empty_server.http_url + path)
    assert answer.status_code == 200
    assert "inferledger jobs run all" in answer.text and re.search(r"No [a-z ]+ yet", answer.text)


def test_decision_search_on_an_empty_warehouse(empty_server):
    answer = httpx.get(empty_server.http_url + "/dashboard/decisions")
    assert answer.status_code == 200 and "No decisions match" in answer.text


@pytest.mark.parametrize("query, expected", [
    ("/dashboard?days=abc", "Cost overview"), ("/dashboard?days=99999999999999999999", "Cost overview"),
    ("/dashboard/variance?day=not-a-day", "Variance"), ("/dashboard/drift?days=-1", "Drift"),
    ("/dashboard/decisions?from=2026-99-01", "must be a date"),
    ("/dashboard/decisions?subject=" + "x" * 5000, "Decisions"),
])
def test_bad_parameters_get_a_page_not_an_error(site, query, expected):
    answer = httpx.get(site.server.http_url + query)
    assert answer.status_code == 200 and expected in answer.text


def test_bad_export_format_is_a_clear_400(site):
    answer = httpx.get(site.server.http_url + "/dashboard/decisions/export?format=xlsx")
    assert answer.status_code == 400 and "Unknown export format &#39;xlsx&#39;" in answer.text


def test_login_redirects_only_within_the_dashboard(site):
    answer = httpx.post(site.server.http_url + "/dashboard/login", data={"next": "https://evil.example/"})
    assert answer.status_code == 303 and answer.headers["location"] == "/dashboard"
