"""The login gate with API keys required: who may see what, the cookie, logout, revocation, the access log."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest

from inferledger.app import RunningServer
from inferledger.auth import create_key, revoke_key
from tests.conftest import make_config
from tests.dashboard.conftest import Tab
from tests.warehouse.jobs.records import land_records, record


@pytest.fixture(scope="module")
def gated(tmp_path_factory):
    """A server that requires keys, with decisions of two tenants and one key per role."""
    data_dir = tmp_path_factory.mktemp("gated") / "data"
    yesterday = datetime.now(UTC).replace(hour=9, minute=0, second=0, microsecond=0) - timedelta(days=1)
    land_records(data_dir, [
        record(yesterday + timedelta(minutes=i), service_name="fraud-screening", operation="predict",
               request_model="fraud-gbm", tenant=tenant, decision_label="approve", decision_score=0.1)
        for i, tenant in enumerate(["bank-a"] * 3 + ["bank-b"] * 2)])
    keys = {name: create_key(data_dir, role, name, tenant)[1] for name, role, tenant in [
        ("alice", "auditor", None), ("collector", "ingest", None), ("scoped", "auditor", "bank-a"),
        ("revoked-soon", "auditor", None)]}
    with RunningServer(make_config(data_dir, auth__mode="required")) as server:
        yield server, keys


@pytest.fixture
def gate_tab(browser, gated):
    context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    yield Tab(context.new_page(), gated[0].http_url), context
    context.close()


def log_in(tab: Tab, key: str, next_path: str = "/dashboard/decisions"):
    page = tab.open(next_path)  # redirected to the form
    assert page.url.endswith("/dashboard/login?next=" + next_path.replace("/", "%2F"))
    page.fill("input[name=api_key]", key)
    page.click("button[type=submit]")
    page.wait_for_load_state("networkidle")
    return page


def test_auditor_logs_in_sees_decisions_exports_and_logs_out(gate_tab, gated):
    tab, context = gate_tab
    server, keys = gated
    page = log_in(tab, keys["alice"])
    assert page.url.endswith("/dashboard/decisions")
    assert page.locator("#decisions tbody tr").count() == 5
    assert "alice · auditor" in page.locator("header .who").inner_text()
    [cookie] = context.cookies()
    assert (cookie["name"], cookie["httpOnly"], cookie["sameSite"], cookie["path"]) == (
        "inferledger_dashboard", True, "Strict", "/dashboard")
    assert keys["alice"].split("_")[-1] not in cookie["value"]  # the browser never holds the key
    with page.expect_download() as download:
        page.click("a[data-export=jsonl]")
    assert len(open(download.value.path()).read().splitlines()) == 5
    page = tab.open("/dashboard")  # an unscoped auditor sees the cost pages too
    assert page.locator("h1").inner_text() == "Cost overview"
    tab.screenshot("decisions-logged-in")
    page.click("header .who button")
    page.wait_for_load_state("networkidle")
    assert "/dashboard/login" in page.url and context.cookies() == []
    tab.open("/dashboard/decisions")
    assert "/dashboard/login" in tab.page.url
    tab.assert_clean()


def test_wrong_keys_are_refused_with_a_reason(gate_tab, gated):
    tab, context = gate_tab
    _, keys = gated
    page = log_in(tab, "ilk_000000000000_not-a-real-secret")
    assert "not valid" in page.locator(".error").inner_text()
    page.fill("input[name=api_key]", keys["collector"])
    page.click("button[type=submit]")
    page.wait_for_load_state("networkidle")
    assert "has role 'ingest'" in page.locator(".error").inner_text()
    assert context.cookies() == []
    tab.screenshot("login-refused")
    tab.problems = [p for p in tab.problems if "401" not in p and "403" not in p]  # the refusals themselves
    tab.assert_clean()


def test_a_tenant_scoped_key_sees_only_its_tenant(gate_tab, gated):
    tab, _ = gate_tab
    _, keys = gated
    page = log_in(tab, keys["scoped"])
    assert page.locator("#decisions tbody tr").count() == 3
    assert set(page.locator("#decisions tbody tr td:nth-child(8)").all_inner_texts()) == {"bank-a"}
    assert page.locator("input[name=tenant]").get_attribute("readonly") is not None
    page = tab.open("/dashboard/decisions?tenant=bank-b")  # the form's tenant cannot be widened
    assert page.locator("#decisions tbody tr").count() == 3
    page = tab.open("/dashboard", expect_status=403)
    assert "scoped to tenant 'bank-a'" in page.locator(".error").inner_text()
    tab.problems = [p for p in tab.problems if "403" not in p]
    tab.assert_clean()


def test_revoking_a_key_ends_its_session(gate_tab, gated):
    tab, _ = gate_tab
    server, keys = gated
    log_in(tab, keys["revoked-soon"])
    revoke_key(server.data_dir, keys["revoked-soon"].split("_")[1])
    tab.open("/dashboard/decisions")
    assert "/dashboard/login" in tab.page.url


def test_scripts_send_the_key_and_searches_are_in_the_access_log(gated):
    server, keys = gated
    url = server.http_url + "/dashboard/decisions?decision_label=approve"
    assert httpx.get(url).status_code == 303  # no key: to the login form
    assert httpx.get(url, headers={"Authorization": "Bearer ilk_x_y"}).status_code == 401
    answer = httpx.get(url, headers={"X-API-Key": keys["alice"]})
    assert answer.status_code == 200 and answer.text.count("<tr>") == 1 + 5
    tampered = httpx.get(url, cookies={"inferledger_dashboard": "0123.99999999999.abc"})
    assert tampered.status_code == 303
    server.pipeline.api.access_log.flush()
    from warehouse.catalog import query

    logged = query(server.data_dir, "SELECT key_name, endpoint, rows, parameters FROM access_log "
                                    "WHERE endpoint = '/dashboard/decisions' AND key_name = 'alice'").to_pylist()
    assert any(row["rows"] == 5 and '"decision_label": "approve"' in row["parameters"] for row in logged)


def test_health_needs_no_key_the_export_does(gated):
    server, _ = gated
    assert httpx.get(server.http_url + "/healthz").status_code == 200  # the container's HEALTHCHECK
    assert httpx.get(server.http_url + "/dashboard/decisions/export?format=csv").status_code == 303


def test_a_login_posted_from_another_site_is_refused(gated):
    server, keys = gated
    answer = httpx.post(server.http_url + "/dashboard/login", data={"api_key": keys["alice"]},
                        headers={"Origin": "https://evil.example"})
    assert answer.status_code == 403 and "inferledger_dashboard" not in answer.headers.get("set-cookie", "")
    same = httpx.post(server.http_url + "/dashboard/login", data={"api_key": keys["alice"]},
                      headers={"Origin": server.http_url})
    assert same.status_code == 303 and "HttpOnly" in same.headers["set-cookie"]
    hidden = httpx.post(server.http_url + "/dashboard/login", data={"api_key": keys["alice"]},
                        headers={"Origin": "null"})
    assert hidden.status_code == 403
