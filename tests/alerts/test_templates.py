"""Templates: built-ins show what fired with its evidence; a directory of overrides replaces them by name."""
from __future__ import annotations

import email
import email.policy
import json
from datetime import timedelta

from alerts.run import run_alerts
from tests.alerts.conftest import T0, alert_config, put_metric
from warehouse.catalog import query

H = timedelta(hours=1)
ANOMALY = {"expected": 12.0, "low": 8.0, "high": 16.5, "observed": 41.25, "baseline_days": 28}


def mailbox(tmp_path, **extra):
    return {"smtp__mailbox_dir": tmp_path / "mail", "smtp__recipients": ["ops@example.com"], **extra}


def received(tmp_path):
    return [email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
            for path in sorted((tmp_path / "mail").glob("*.eml"))]


def bodies(message):
    return {p.get_content_type(): p.get_content() for p in message.walk() if not p.is_multipart()}


def anomaly(data, value="fraud-screening"):
    put_metric(data, "anomaly.cost", 41.25, {"key": "service", "value": value, "granularity": "hour"}, hours=1,
               verdict="anomaly", detail=ANOMALY, job="anomalies")


def test_anomaly_email_shows_expected_range_and_links(tmp_path):
    data = tmp_path / "data"
    config = alert_config(data, alerts__dashboard_url="https://ledger.example.com", **mailbox(tmp_path))
    anomaly(data)
    run_alerts(data, config, T0 + 0.5 * H)
    [message] = received(tmp_path)
    assert message["Subject"] == ("[WARNING] FIRING cost-anomaly (granularity=hour, key=service, "
                                  "value=fraud-screening): $41.25, verdict anomaly")
    text, html = bodies(message)["text/plain"], bodies(message)["text/html"]
    evidence = "expected range $8.00 to $16.50 (expected $12.00), observed $41.25"
    assert f"  - {evidence}" in text and evidence in html
    assert "  baseline_days: 28" in text  # the rest of the job's detail
    assert "Window:    2026-03-02 00:00 UTC to 2026-03-02 01:00 UTC (job anomalies)" in text
    assert "This alert: https://ledger.example.com/dashboard/alerts?alert=" in text
    assert 'href="https://ledger.example.com/dashboard/costs"' in html
    assert "inferledger alerts silence --rule cost-anomaly --label granularity=hour --label key=service" in text


def test_no_dashboard_no_links(tmp_path):
    data = tmp_path / "data"
    anomaly(data)
    run_alerts(data, alert_config(data, **mailbox(tmp_path)), T0 + 0.5 * H)
    text, html = bodies(received(tmp_path)[0]).values()
    assert "Dashboard:" not in text and "http" not in text and "<a " not in html


def test_html_is_escaped(tmp_path):
    data = tmp_path / "data"
    anomaly(data, value="<script>alert(1)</script>")
    run_alerts(data, alert_config(data, **mailbox(tmp_path)), T0 + 0.5 * H)
    parts = bodies(received(tmp_path)[0])
    assert "<script>" not in parts["text/html"] and "&lt;script&gt;alert(1)&lt;/script&gt;" in parts["text/html"]
    assert "value=<script>alert(1)</script>" in parts["text/plain"]


def test_a_file_in_templates_dir_replaces_the_builtin_of_that_name(tmp_path, http_receiver):
    overrides = tmp_path / "templates"
    overrides.mkdir()
    (overrides / "subject.txt.j2").write_text("{{ n.severity }}: {{ n.rule }} is {{ value_text }} [{{ labels_text }}]\n")
    (overrides / "webhook.txt.j2").write_text("custom {{ kind_title }} {{ n.metric }}")
    data = tmp_path / "data"
    config = alert_config(data, alerts__templates_dir=overrides, webhooks=[{"name": "ops", "url": http_receiver.url}],
                          **mailbox(tmp_path))
    anomaly(data)
    assert run_alerts(data, config, T0 + 0.5 * H).sent == 2
    [message] = received(tmp_path)
    assert message["Subject"] == "warning: cost-anomaly is $41.25 [granularity=hour, key=service, value=fraud-screening]"
    assert "Evidence:" in bodies(message)["text/plain"]  # the body is still the built-in one
    assert json.loads(http_receiver.requests[0].body)["text"] == "custom FIRING anomaly.cost"


def test_a_broken_override_fails_the_delivery_visibly(tmp_path):
    overrides = tmp_path / "templates"
    overrides.mkdir()
    (overrides / "body.txt.j2").write_text("{{ n.rule }} {{ no_such_name }}")
    data = tmp_path / "data"
    anomaly(data)
    result = run_alerts(data, alert_config(data, alerts__templates_dir=overrides, **mailbox(tmp_path)), T0 + 0.5 * H)
    assert (result.sent, result.failed) == (0, 1)
    [row] = query(data, "SELECT attempt, outcome, error FROM alert_deliveries").to_pylist()
    assert row == {"attempt": 1, "outcome": "failed",
                   "error": "template body.txt.j2: UndefinedError: 'no_such_name' is undefined"}
    assert not list((tmp_path / "mail").glob("*.eml"))
