"""Every dashboard page in headless Chromium over the constructed warehouse: figures, charts, no console errors.

Expected figures are worked out by hand from ``data.py``; screenshots are saved in
``tests/artifacts/dashboard/``.
"""
from __future__ import annotations

import csv
import io
import json
from datetime import timedelta

import pytest

from tests.dashboard.conftest import Tab
from tests.dashboard.data import BUDGET_AMOUNT, DAYS, EXPECTED, LABELS_AFTER, LABELS_BEFORE, SCORES, day_start


def figure(page, selector: str) -> str:
    return page.locator(selector).inner_text().strip()


def cells(page, table: str, first_cell: str) -> list[str]:
    """The cell texts of the row of ``table`` whose first or second cell is ``first_cell``."""
    rows = page.locator(f"#{table} tbody tr").all()
    for row in rows:
        texts = [cell.strip() for cell in row.locator("td").all_inner_texts()]
        if first_cell in texts[:2]:
            return texts
    raise AssertionError(f"no row {first_cell!r} in #{table}")


def chart_spec(page, chart_id: str) -> dict:
    return json.loads(page.locator(f"script#{chart_id}").text_content())


def charts_drawn(page) -> int:
    """uPlot canvases actually drawn (the chart areas hold a canvas after the script ran)."""
    return page.locator(".chart-area canvas").count()


def test_overview_30_days(tab, site):
    page = tab.open("/dashboard")
    assert figure(page, "#totals [data-figure=cost]") == f"${EXPECTED.total_cost:,.2f}" == "$23.80"
    assert figure(page, "#totals [data-figure=requests]") == "518"
    assert figure(page, "#totals [data-figure=unpriced]") == "28"
    assert "5.41% of inferences" in page.locator("#totals").inner_text()  # 28 / 518
    assert cells(page, "cost-by-model", "gpt-4o") == [
        "openai", "gpt-4o", "210", "14", "210,000", "19,600", "$21.00", "88.2%", "0"]
    assert cells(page, "cost-by-model", "fraud-gbm")[6:8] == ["$2.80", "11.8%"]
    assert cells(page, "cost-by-model", "ranker-x")[6:9] == ["–", "–", "28"]  # unpriced is not $0
    assert cells(page, "cost-by-service", "support-assistant")[1:5] == ["210", "14", "$21.00", "88.2%"]
    spec = chart_spec(page, "chart-cost-by-model")
    assert [s["label"] for s in spec["series"]] == ["gpt-4o", "fraud-gbm"]  # unpriced ranker-x has no cost line
    assert len(spec["x"]) == DAYS and spec["series"][0]["values"][0] == pytest.approx(1.0)
    assert spec["series"][0]["values"][-1] == pytest.approx(2.0)
    assert charts_drawn(page) == 3  # by model, by service, the budget's burn
    tab.screenshot("overview")
    tab.assert_clean()


def test_overview_budget(tab, site):
    page = tab.open("/dashboard")
    row = cells(page, "budgets", "support-monthly")
    spent = site.budget_spent()
    assert row[2:5] == [f"${spent:,.2f}", f"${BUDGET_AMOUNT:,.2f}", f"{spent / BUDGET_AMOUNT * 100:.1f}%"]
    month_start = site.now.date().replace(day=1)
    assert row[1].startswith(month_start.isoformat())
    spec = chart_spec(page, "chart-burn-1")
    assert [s["label"] for s in spec["series"]] == ["Spend to date", "Forecast", "Budget"]
    assert spec["series"][2]["values"][0] == BUDGET_AMOUNT and spec["series"][0]["values"][0] == 0.0
    tab.assert_clean()


def test_overview_7_days_compares_with_the_week_before(tab, site):
    page = tab.open("/dashboard?days=7")
    # days 8-13 (today has no records): support 6 x $2.00 + fraud 6 x $0.20; before: days 1-7.
    assert figure(page, "#totals [data-figure=cost]") == "$13.20"
    assert "+40.4% vs the period before ($9.40)" in page.locator("#totals").inner_text()
    assert len(chart_spec(page, "chart-cost-by-model")["x"]) == 6
    tab.assert_clean()


def test_overview_last_24_hours_reads_the_hourly_rollup(tab, site):
    page = tab.open("/dashboard?days=1")
    yesterday_records = day_start(site.now, DAYS - 1) + timedelta(hours=10)
    if site.now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=23) <= yesterday_records:
        assert figure(page, "#totals [data-figure=cost]") == "$2.20"  # yesterday's support + fraud
        assert len(chart_spec(page, "chart-cost-by-model")["x"]) == 1  # one hour with records
    else:
        assert "No inferences in the last 24 hours" in page.locator("main").inner_text()
    tab.assert_clean()


def test_variance_week_over_week(tab, site):
    yesterday = day_start(site.now, DAYS - 1).date()
    page = tab.open(f"/dashboard/variance?day={yesterday}")
    text = page.locator("#change").inner_text()
    assert f"${EXPECTED.week_before_cost:,.2f}" in text and "$8.40" in text and "210 priced" in text
    assert f"${EXPECTED.week_now_cost:,.2f}" in text and "280 priced" in text
    assert figure(page, "#change [data-figure=change]") == "+$7.00"
    assert "+83.3%" in text
    volume, mix, rate, price, total = chart_spec(page, "chart-effects")["series"][0]["values"]
    assert total == pytest.approx(7.0) and volume + mix + rate + price == pytest.approx(7.0)
    assert cells(page, "change-by-service", "support-assistant")[1:4] == ["$7.00", "$14.00", "+$7.00"]
    assert cells(page, "change-by-service", "fraud-screening")[1:4] == ["$1.40", "$1.40", "$0.00"]
    assert cells(page, "change-by-model", "gpt-4o")[1] == "70 → 140"
    assert charts_drawn(page) == 2
    tab.screenshot("variance")
    tab.assert_clean()


def label_shift_now(now) -> tuple[float, int, int]:
    """The newest window's label comparison by hand: the 7 days before now against the 7 before those."""
    windows = {"reference": [], "current": []}
    for index in range(DAYS):
        for i, label in enumerate(LABELS_BEFORE if index < 7 else LABELS_AFTER):
            at = day_start(now, index) + timedelta(hours=10, minutes=i)
            if now - timedelta(days=14) <= at < now - timedelta(days=7):
                windows["reference"].append(label)
            elif now - timedelta(days=7) <= at < now:
                windows["current"].append(label)
    reference, current = windows["reference"], windows["current"]
    change = max(abs(current.count(x) / len(current) - reference.count(x) / len(reference)) for x in SCORES)
    return change, len(reference), len(current)


def test_drift_finds_the_label_shift(tab, site):
    page = tab.open("/dashboard/drift")
    drifting = page.locator("#drift tbody tr[data-verdict=drift]").all_inner_texts()
    assert any("fraud-screening" in row and "labels" in row for row in drifting)
    labels = page.locator("#drift tbody tr").first.locator("td").all_inner_texts()  # worst first
    assert labels[0] == "drift" and labels[1].split() == ["fraud-screening", "fraud-gbm", "·", "v3"]
    assert labels[3] == "labels"
    change, n_reference, n_current = label_shift_now(site.now)
    assert labels[5] == f"{change:.3g}" and labels[8] == f"{n_reference} / {n_current}"
    assert charts_drawn(page) == 2
    tab.screenshot("drift")
    tab.assert_clean()


def test_prices_lists_the_unpriced_model_first(tab, site):
    page = tab.open("/dashboard/prices")
    first = page.locator("#prices tbody tr").first.locator("td").all_inner_texts()
    assert first[:5] == ["selfhost", "ranker-x", "28", "28", "100.0%"]
    assert first[5] == "14,000 / 140" and first[6] == "–" and "no price" in first[8]
    gpt = cells(page, "prices", "gpt-4o")
    assert gpt[6:8] == ["$21.00", "price book"] and "gpt-4o" in gpt[8]
    assert figure(page, "#coverage [data-figure=unpriced]") == "28"
    tab.screenshot("prices")
    tab.assert_clean()


def test_alerts_show_states_events_and_deliveries(tab, site):
    page = tab.open("/dashboard/alerts")
    states = page.locator("#alert-states tbody tr").all_inner_texts()
    assert any("decision-label-drift" in row for row in states), states
    assert page.locator("#alert-events tbody tr").count() >= 1
    deliveries = page.locator("#alert-deliveries tbody tr").all_inner_texts()
    assert len(deliveries) == site.alert_run.sent == len(site.webhook.received) >= 1
    assert all("ops" in row for row in deliveries)
    tab.screenshot("alerts")
    tab.assert_clean()


def test_decision_search_filters_pages_and_exports(tab, site):
    first, last = day_start(site.now, 0).date(), day_start(site.now, DAYS - 1).date()
    page = tab.open(f"/dashboard/decisions?from={first}&to={last}")
    assert page.locator("#decisions tbody tr").count() == 50
    newest = page.locator("#decisions tbody tr").first.locator("td").all_inner_texts()
    assert newest[0] == f"{last} 10:19:00" and newest[3] == "decline"
    page.fill("input[name=decision_label]", "review")
    page.fill("input[name=subject]", "customer-3-12")  # a raw id: pseudonymized with the server's key
    page.click("form.filters button[type=submit]")
    page.wait_for_load_state("networkidle")
    rows = page.locator("#decisions tbody tr").all()
    assert len(rows) == 1
    assert rows[0].locator("td").all_inner_texts()[3:5] == ["review", "0.562"]
    tab.screenshot("decisions")

    page = tab.open(f"/dashboard/decisions?from={first}&to={last}&decision_label=decline")
    seen = []
    while True:
        seen += page.locator("#decisions tbody tr td:first-child").all_inner_texts()
        if page.locator("a[rel=next]").count() == 0:
            break
        page.click("a[rel=next]")
        page.wait_for_load_state("networkidle")
    assert len(seen) == len(set(seen)) == 7 * 4 + 7 * 10  # every decline once, over two pages
    assert seen == sorted(seen, reverse=True)

    with page.expect_download() as download:
        page.click("a[data-export=csv]")
    exported = list(csv.DictReader(io.StringIO(open(download.value.path()).read())))
    assert len(exported) == 98 and {row["decision_label"] for row in exported} == {"decline"}
    assert download.value.suggested_filename == f"decisions-{first}-{last}.csv"
    tab.assert_clean()


def test_decision_search_explains_bad_input(tab, site):
    page = tab.open("/dashboard/decisions?from=yesterday&to=2026-02-30&after=garbage")
    errors = page.locator(".error").all_inner_texts()
    assert any("'from' must be a date like 2026-11-30, not 'yesterday'" in e for e in errors)
    assert any("'to' must be a date" in e for e in errors)
    assert any("page link is damaged" in e for e in errors)
    page = tab.open(f"/dashboard/decisions?from=2020-01-01&to={site.now.date()}")
    assert any("search at most 92 days" in e for e in page.locator(".error").all_inner_texts())
    tab.assert_clean()


def test_narrow_screen_keeps_tables_readable(browser, site):
    context = browser.new_context(viewport={"width": 390, "height": 844})
    phone = Tab(context.new_page(), site.server.http_url)
    for path in ("/dashboard", "/dashboard/decisions"):
        page = phone.open(path)
        assert page.evaluate("document.documentElement.scrollWidth") <= 391, path  # tables scroll in their box
    phone.screenshot("decisions-phone")
    phone.assert_clean()
    context.close()


def test_every_page_has_its_charts_and_no_errors(tab, site):
    for path in ("/dashboard", "/dashboard/variance", "/dashboard/drift", "/dashboard/prices", "/dashboard/alerts",
                 "/dashboard/decisions", "/dashboard/retries"):
        page = tab.open(path)
        expected = page.locator("[data-chart]").count()
        assert charts_drawn(page) == expected, path
    tab.assert_clean()


def test_retries_count_the_failed_attempts(tab, site):
    page = tab.open("/dashboard/retries")
    # support: each day one request answered on attempt 1 after a failed attempt 0 (1,000 tokens, $0.10)
    assert figure(page, "#retry-totals [data-figure=wasted]") == "$1.40"
    assert figure(page, "#retry-totals [data-figure=retried]") == "14"
    assert figure(page, "#retry-totals [data-figure=inflation]") == f"{(23.80 / 22.40 - 1) * 100:.2f}%"  # 6.25%
    row = cells(page, "retries", "gpt-4o")
    assert row[2:11] == ["support-assistant", "196", "210", "14", "7.1%", "0", "14,000", "$1.40", "7.1%"]
    assert row[11] == "key 14"
    assert charts_drawn(page) == 2
    tab.screenshot("retries")
    tab.assert_clean()
