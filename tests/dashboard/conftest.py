"""A running server over the constructed warehouse of ``data.py``, and a headless Chromium to look at it.

Chromium is Debian's ``/usr/bin/chromium`` driven by Playwright; nothing downloads a
browser (``playwright install`` is never run). Screenshots go to
``tests/artifacts/dashboard/`` (gitignored) for a person to look at.
"""
from __future__ import annotations

import json
import os
import threading
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from inferledger.app import RunningServer
from tests.conftest import make_config
from tests.dashboard import data

CHROMIUM = os.environ.get("INFERLEDGER_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts" / "dashboard"


class Webhook:
    """A real HTTP endpoint on loopback that records what alert deliveries post to it."""

    def __init__(self):
        received = self.received = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - stdlib naming
                received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def __enter__(self) -> "Webhook":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The server with every job and one alert evaluation run over the constructed data."""
    from alerts.run import run_alerts
    from collector.pseudonymize import Pseudonymizer
    from inferledger.config import subject_key

    data_dir = tmp_path_factory.mktemp("dashboard") / "data"
    now = datetime.now(UTC)
    with Webhook() as hook:
        alerting = dict(webhooks=[{"name": "ops", "url": hook.url}], alerts__default_channels=["ops"])
        # The server's own every-minute evaluation is off, so this test's one evaluation is the only one.
        config = make_config(data_dir, alerts__enabled=False, **alerting)
        built = data.land(data_dir, now, Pseudonymizer(subject_key(config)))
        with RunningServer(config) as server:
            data.run_all_jobs(data_dir, now)  # as the scheduler would, inside the running server
            result = run_alerts(data_dir, make_config(data_dir, **alerting), now)
            assert result.error is None, result.error
            built.server, built.alert_run, built.webhook = server, result, hook
            yield built


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (`make browser`)")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield chromium
        chromium.close()


class Tab:
    """A browser page that remembers every console error and failed request, and saves screenshots."""

    def __init__(self, page, base_url: str):
        self.page, self.base_url, self.problems = page, base_url, []
        page.on("console", lambda message: self.problems.append(f"console {message.type}: {message.text}")
                if message.type in ("error", "warning") else None)
        page.on("pageerror", lambda error: self.problems.append(f"page error: {error}"))
        page.on("requestfailed", lambda request: self.problems.append(f"request failed: {request.url}"))
        page.on("response", lambda response: self.problems.append(f"HTTP {response.status}: {response.url}")
                if response.status >= 400 else None)

    def open(self, path: str, expect_status: int = 200):
        response = self.page.goto(self.base_url + path)
        assert response.status == expect_status, f"{path}: {response.status}"
        self.page.wait_for_load_state("networkidle")
        return self.page

    def screenshot(self, name: str) -> Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path

    def assert_clean(self) -> None:
        assert self.problems == [], self.problems


@pytest.fixture
def tab(browser, site):
    context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    yield Tab(context.new_page(), site.server.http_url)
    context.close()
