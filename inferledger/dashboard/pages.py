"""The dashboard's pages, in navigation order: path, title, template, builder, the jobs it reads."""
from __future__ import annotations

from inferledger.dashboard import analysis, costs, operations
from inferledger.dashboard.routes import Page

PAGES = [
    Page("/dashboard", "Cost overview", "overview.html.j2", costs.overview_page, ("rollups_daily", "variance")),
    Page("/dashboard/variance", "Variance", "variance.html.j2", analysis.variance_page, ("variance",)),
    Page("/dashboard/retries", "Retries", "retries.html.j2", analysis.retries_page, ("retries",)),
    Page("/dashboard/drift", "Drift", "drift.html.j2", analysis.drift_page, ("drift",)),
    Page("/dashboard/alerts", "Alerts", "alerts.html.j2", operations.alerts_page),
    Page("/dashboard/prices", "Prices", "prices.html.j2", costs.prices_page, ("rollups_daily",)),
    Page("/dashboard/decisions", "Decisions", "decisions.html.j2", operations.decisions_page, all_tenants=False),
]
