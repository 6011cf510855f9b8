"""Both reports rendered by a real browser (headless Chromium); screenshots kept in tests/artifacts/ for people."""
from __future__ import annotations

import shutil

from PIL import Image

from reports.audit_files import write_audit
from reports.decisions import Scope
from reports.weekly import IsoWeek, build_weekly
from reports.weekly_email import build_message
from tests.reports.conftest import ARTIFACTS, html_with_inline_images, report_config, screenshot
from tests.reports.data import AUDIT_FROM, AUDIT_TO, REPORT_NOW


def _has_content(png) -> None:
    image = Image.open(png).convert("L")
    low, high = image.getextrema()
    assert low < 80 and high > 230, "the screenshot is blank"


def test_weekly_email_in_chromium(weekly_dir, tmp_path):
    config = report_config(weekly_dir)
    report = build_weekly(weekly_dir, config.reports, config.budgets, IsoWeek(2026, 47), REPORT_NOW)
    html, images = html_with_inline_images(build_message(report, config.reports, ["finance@example.com"]))
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page = ARTIFACTS / "weekly-email.html"
    page.write_text(html, encoding="utf-8")
    for cid, data in images.items():
        (ARTIFACTS / f"weekly-{cid.split('.')[-1].split('@')[0]}.png").write_bytes(data)
    _has_content(screenshot(page, ARTIFACTS / "weekly-email.png", tmp_path, height=3600))


def test_audit_report_in_chromium(audit_dir, tmp_path):
    config = report_config(audit_dir)
    write_audit(audit_dir, Scope(AUDIT_FROM, AUDIT_TO), config.reports, tmp_path / "audit", seed=7)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for name in ("report.html", "report.pdf"):
        shutil.copy(tmp_path / "audit" / name, ARTIFACTS / f"audit-{name}")
    _has_content(screenshot(ARTIFACTS / "audit-report.html", ARTIFACTS / "audit-report.png", tmp_path, height=6000))
