"""Fixtures for the report tests: constructed warehouses, golden files, screenshots in headless Chromium.

Golden files live in ``tests/reports/golden/``. After an intended change of a
report, regenerate them with ``UPDATE_GOLDEN=1 .venv/bin/python -m pytest
tests/reports``: the tests that rewrote a file fail on purpose (so a run that
updates goldens is never mistaken for a passing one); run again without the
variable and review the diff.

Screenshots and rendered PDF pages go to ``tests/artifacts/`` (git-ignored) for a
person to look at.
"""
from __future__ import annotations

import base64
import os
import shutil
import subprocess
from email.message import EmailMessage
from pathlib import Path

import pytest

from tests.conftest import make_config
from tests.reports.data import land_audit, land_weekly, write_weekly_job_results

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = Path(__file__).parent / "golden"
ARTIFACTS = ROOT / "tests" / "artifacts"
CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture(scope="module")
def weekly_dir(tmp_path_factory) -> Path:
    """Three weeks of records (W45-W47 of 2026) and the jobs' results for W47."""
    data_dir = tmp_path_factory.mktemp("weekly") / "data"
    land_weekly(data_dir)
    write_weekly_job_results(data_dir)
    return data_dir


@pytest.fixture(scope="module")
def audit_dir(tmp_path_factory) -> Path:
    data_dir = tmp_path_factory.mktemp("audit") / "data"
    land_audit(data_dir)
    return data_dir


def report_config(data_dir: Path, **overrides):
    budgets = [{"name": "all-ai", "amount_usd": 300.0},
               {"name": "fraud-unit", "unit_cost_usd": 0.04, "unit": "decision", "service": "fraud"}]
    models = [{"model": "fraud-gbm", "version": "v*", "owner": "Risk analytics",
               "purpose": "Card transaction fraud screening"}]
    return make_config(data_dir, budgets=budgets, reports__models=models, **overrides)


def check_golden(name: str, text: str) -> None:
    """Compare with ``golden/<name>``; with UPDATE_GOLDEN=1 rewrite it and fail on purpose."""
    path = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        pytest.fail(f"golden file {path.name} rewritten (UPDATE_GOLDEN=1); run again without it and review the diff")
    assert path.exists(), f"no golden file {path}; create it with UPDATE_GOLDEN=1"
    expected = path.read_text(encoding="utf-8")
    assert text == expected, f"{name} differs from its golden file (UPDATE_GOLDEN=1 to accept the new output)"


def html_with_inline_images(message: EmailMessage) -> tuple[str, dict[str, bytes]]:
    """The HTML part with each ``cid:`` reference replaced by a data URI; fails on a dangling reference."""
    html, images = None, {}
    for part in message.walk():
        if part.get_content_type() == "text/html":
            html = part.get_content()
        elif part.get_content_maintype() == "image":
            images[part["Content-ID"].strip().strip("<>")] = part.get_payload(decode=True)
    assert html is not None, "no text/html part"
    for cid, data in images.items():
        html = html.replace(f"cid:{cid}", "data:image/png;base64," + base64.b64encode(data).decode())
    assert "cid:" not in html, "the HTML refers to an image the message does not carry"
    return html, images


def screenshot(html_file: Path, png: Path, tmp_path: Path, height: int = 3000) -> Path:
    """Render ``html_file`` in headless Chromium and save a screenshot (a test artifact)."""
    if not CHROMIUM.exists():
        pytest.skip("headless Chromium is not installed (/usr/bin/chromium; `make test` installs it)")
    png.parent.mkdir(parents=True, exist_ok=True)
    png.unlink(missing_ok=True)
    profile = tmp_path / "chromium-profile"
    command = [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
               f"--screenshot={png}", f"--window-size=1200,{height}", html_file.resolve().as_uri()]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    shutil.rmtree(profile, ignore_errors=True)
    assert png.exists() and png.stat().st_size > 10_000, f"no screenshot: {result.stderr[-2000:]}"
    return png
