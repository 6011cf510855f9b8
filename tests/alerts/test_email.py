"""Email over a real SMTP server (aiosmtpd on loopback): plain, STARTTLS, TLS, login, and the mailbox directory."""
from __future__ import annotations

import email
import email.policy
from datetime import timedelta
from email.message import EmailMessage

import pytest

from alerts.config import SmtpConfig
from alerts.email import send_message
from alerts.errors import PermanentDeliveryError, RetryableDeliveryError
from alerts.run import run_alerts
from tests.alerts.conftest import (SMTP_PASSWORD, SMTP_USER, T0, alert_config, free_port, put_metric, server_tls_context,
                                   start_smtp)
from warehouse.catalog import query

H = timedelta(hours=1)
RULE = {"name": "forecast", "metric": "budget.forecast_pct", "threshold": {"op": ">", "value": 1.0},
        "severity": "critical", "description": "Forecast above budget: cut spend or raise the budget."}


def smtp_settings(server, **extra):
    return {"smtp__host": server.host, "smtp__port": server.port, "smtp__security": "none",
            "smtp__recipients": ["ops@example.com", "finance@example.com"], "smtp__sender": "ledger@example.com", **extra}


def parts(message: EmailMessage) -> dict[str, str]:
    return {part.get_content_type(): part.get_content().replace("\r\n", "\n")
            for part in message.walk() if not part.is_multipart()}


def test_firing_reminder_and_resolution_arrive_as_one_thread(tmp_path, smtp_server, monkeypatch):
    monkeypatch.setenv("TEST_SMTP_PASSWORD", SMTP_PASSWORD)
    data = tmp_path / "data"
    config = alert_config(data, alerts__use_default_rules=False, alerts__rules=[RULE],
                          alerts__dashboard_url="https://ledger.example.com",
                          **smtp_settings(smtp_server, smtp__username=SMTP_USER, smtp__password_env="TEST_SMTP_PASSWORD"))
    put_metric(data, "budget.forecast_pct", 1.25, {"budget": "support"})
    result = run_alerts(data, config, T0 + H)
    assert (result.notifications, result.sent, result.failed, result.queued) == (1, 1, 0, 0)
    [fired] = smtp_server.wait_for(1)
    assert smtp_server.logins == [SMTP_USER]
    assert smtp_server.envelopes[0].rcpt_tos == ["ops@example.com", "finance@example.com"]
    assert fired["Subject"] == "[CRITICAL] FIRING forecast (budget=support): 125.0% > 100.0%"
    assert fired["From"] == "ledger@example.com" and fired["To"] == "ops@example.com, finance@example.com"
    assert fired.get_content_type() == "multipart/alternative"
    body = parts(fired)
    assert set(body) == {"text/plain", "text/html"}
    text, html = body["text/plain"], body["text/html"]
    assert "Forecast above budget: cut spend or raise the budget." in text
    assert "Value:     125.0%" in text and "Condition: > 100.0%\n" in text
    assert "Since:     2026-03-02 01:00 UTC" in text and "Labels:    budget=support" in text
    assert "Dashboard: https://ledger.example.com/dashboard/variance" in text
    assert '<a href="https://ledger.example.com/dashboard/variance"' in html and "125.0%" in html
    assert "<table" in html and 'style="' in html

    put_metric(data, "budget.forecast_pct", 1.25, {"budget": "support"})
    assert run_alerts(data, config, T0 + 5 * H).sent == 1  # 240 minutes: reminder
    put_metric(data, "budget.forecast_pct", 0.7, {"budget": "support"})
    assert run_alerts(data, config, T0 + 6 * H).sent == 1
    _, reminder, resolved = smtp_server.wait_for(3)
    assert reminder["Subject"].startswith("[CRITICAL] STILL FIRING forecast")
    assert resolved["Subject"] == "[RESOLVED] forecast (budget=support): 70.0%"
    assert "Resolved:  2026-03-02 06:00 UTC" in parts(resolved)["text/plain"]
    assert reminder["In-Reply-To"] == resolved["In-Reply-To"] == fired["Message-ID"]
    assert fired["X-Inferledger-Alert"] == resolved["X-Inferledger-Alert"]
    outcomes = query(data, "SELECT kind, channel, attempt, outcome FROM alert_deliveries ORDER BY attempted_at").to_pylist()
    assert outcomes == [{"kind": k, "channel": "email", "attempt": 1, "outcome": "ok"}
                        for k in ("firing", "reminder", "resolved")]


def test_starttls_with_a_self_signed_certificate_and_login(tls_files, monkeypatch):
    monkeypatch.setenv("TEST_SMTP_PASSWORD", SMTP_PASSWORD)
    controller, server = start_smtp(tls=server_tls_context(tls_files), login=True)
    try:
        smtp = SmtpConfig(host=server.host, port=server.port, security="starttls", username=SMTP_USER,
                          password_env="TEST_SMTP_PASSWORD", recipients=["ops@example.com"], ca_file=tls_files[0])
        send_message(smtp, _plain_message("over TLS"))
        assert server.wait_for(1)[0]["Subject"] == "over TLS" and server.logins == [SMTP_USER]
        untrusted = smtp.model_copy(update={"ca_file": None})
        with pytest.raises(PermanentDeliveryError, match="certificate of 127.0.0.1 not trusted"):
            send_message(untrusted, _plain_message("refused"))
        insecure = untrusted.model_copy(update={"verify_certificate": False})
        send_message(insecure, _plain_message("unverified"))
        assert [m["Subject"] for m in server.wait_for(2)] == ["over TLS", "unverified"]
    finally:
        controller.stop()


def test_ssl_from_the_start(tls_files):
    controller, server = start_smtp(tls=server_tls_context(tls_files), implicit_tls=True)
    try:
        smtp = SmtpConfig(host=server.host, port=server.port, security="ssl", recipients=["ops@example.com"],
                          ca_file=tls_files[0])
        send_message(smtp, _plain_message("implicit TLS"))
        assert server.wait_for(1)[0]["Subject"] == "implicit TLS"
    finally:
        controller.stop()


def test_login_refused_is_permanent_and_missing_password_is_explained(smtp_server, monkeypatch):
    monkeypatch.setenv("TEST_SMTP_PASSWORD", "wrong")
    smtp = SmtpConfig(host=smtp_server.host, port=smtp_server.port, security="none", username=SMTP_USER,
                      password_env="TEST_SMTP_PASSWORD", recipients=["ops@example.com"])
    with pytest.raises(PermanentDeliveryError, match="SMTP login refused: 535"):
        send_message(smtp, _plain_message("x"))
    monkeypatch.delenv("TEST_SMTP_PASSWORD")
    with pytest.raises(PermanentDeliveryError, match="environment variable TEST_SMTP_PASSWORD"):
        send_message(smtp, _plain_message("x"))
    assert smtp_server.messages == []


def test_server_down_is_retryable():
    smtp = SmtpConfig(host="127.0.0.1", port=free_port(), security="none", recipients=["ops@example.com"], timeout_s=2)
    with pytest.raises(RetryableDeliveryError, match="ConnectionRefusedError"):
        send_message(smtp, _plain_message("x"))


def test_mailbox_dir_gets_one_eml_per_message_with_headers_filled_in(tmp_path):
    """What the reports package relies on: a bare message gets From, To, Date and Message-ID from [smtp]."""
    smtp = SmtpConfig(mailbox_dir=tmp_path / "mbox", recipients=["a@example.com", "b@example.com"],
                      sender="ledger@example.com")
    message = _plain_message("weekly report")
    message.add_alternative("<p>hello</p>", subtype="html")
    send_message(smtp, message)
    send_message(smtp, _plain_message("second"))
    files = sorted((tmp_path / "mbox").iterdir())
    assert [f.suffix for f in files] == [".eml", ".eml"]
    stored = email.message_from_bytes(files[0].read_bytes(), policy=email.policy.default)
    assert stored["Subject"] == "weekly report" and stored["To"] == "a@example.com, b@example.com"
    assert stored["From"] == "ledger@example.com" and stored["Date"] and stored["Message-ID"]
    assert {p.get_content_type() for p in stored.walk() if not p.is_multipart()} == {"text/plain", "text/html"}


def test_no_recipients_is_a_permanent_error(tmp_path):
    with pytest.raises(PermanentDeliveryError, match="recipients is empty"):
        send_message(SmtpConfig(mailbox_dir=tmp_path), _plain_message("x"))


def _plain_message(subject: str) -> EmailMessage:
    message = EmailMessage()
    message["Subject"] = subject
    message.set_content("body")
    return message
