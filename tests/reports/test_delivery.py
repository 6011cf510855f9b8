"""The weekly email through a real SMTP server (aiosmtpd on loopback), a mailbox directory and the CLI."""
from __future__ import annotations

import email
import email.policy
import re

import pytest
from typer.testing import CliRunner

from inferledger.cli import app
from reports.weekly_email import send_weekly_report
from tests.alerts.conftest import start_smtp
from tests.reports.conftest import ARTIFACTS, html_with_inline_images, report_config
from tests.reports.data import REPORT_NOW

SUBJECT = "AI inference $116, +65% vs budget (2026-W47)"


@pytest.fixture
def smtp():
    controller, server = start_smtp()
    try:
        yield server
    finally:
        controller.stop()


def test_scheduled_send_goes_through_smtp_with_inline_charts(weekly_dir, smtp):
    config = report_config(weekly_dir, smtp__host=smtp.host, smtp__port=smtp.port, smtp__security="none",
                           smtp__recipients=["alerts@example.com"], reports__recipients=["finance@example.com"])
    result = send_weekly_report(weekly_dir, config, REPORT_NOW)
    assert result == {"week": "2026-W47", "recipients": ["finance@example.com"], "status": "sent",
                      "subject": SUBJECT, "reason": None}
    [message] = smtp.wait_for(1)
    assert smtp.envelopes[0].rcpt_tos == ["finance@example.com"]
    assert message["Subject"] == SUBJECT and message["From"] and message["Message-ID"]
    # multipart/alternative: text/plain, then multipart/related holding the HTML and its images
    assert message.get_content_type() == "multipart/alternative"
    text, related = message.get_payload()
    assert (text.get_content_type(), related.get_content_type()) == ("text/plain", "multipart/related")
    html = related.get_payload()[0].get_content()
    referenced = set(re.findall(r'src="cid:([^"]+)"', html))
    carried = {part["Content-ID"].strip("<>") for part in related.get_payload()[1:]}
    assert referenced == carried and len(carried) == 2
    inline_html, images = html_with_inline_images(message)
    assert all(data.startswith(b"\x89PNG") for data in images.values())
    for body in (text.get_content(), html):
        assert "$115.50" in body and "+65%" in body and "$77.00" in body and "+$38.50" in body
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "weekly-email.eml").write_bytes(message.as_bytes())
    (ARTIFACTS / "weekly-email.html").write_text(inline_html, encoding="utf-8")


def test_scheduled_send_is_skipped_without_smtp_or_recipients(weekly_dir, tmp_path):
    unconfigured = send_weekly_report(weekly_dir, report_config(weekly_dir), REPORT_NOW)
    assert unconfigured["status"] == "skipped" and unconfigured["reason"] == "[smtp] is not configured"
    nobody = send_weekly_report(weekly_dir, report_config(weekly_dir, smtp__mailbox_dir=tmp_path / "mail"), REPORT_NOW)
    assert nobody["status"] == "skipped" and "no recipients" in nobody["reason"]


def test_mailbox_directory_receives_an_eml(weekly_dir, tmp_path):
    mailbox = tmp_path / "mail"
    config = report_config(weekly_dir, smtp__mailbox_dir=mailbox, smtp__recipients=["team@example.com"])
    assert send_weekly_report(weekly_dir, config, REPORT_NOW)["status"] == "sent"
    [eml] = list(mailbox.glob("*.eml"))
    message = email.message_from_bytes(eml.read_bytes(), policy=email.policy.default)
    assert message["Subject"] == SUBJECT and message["To"] == "team@example.com"


def test_cli_writes_sends_and_refuses_bad_input(weekly_dir, tmp_path, smtp):
    runner = CliRunner()
    base = ["report", "weekly", "--data-dir", str(weekly_dir), "--week", "2026-W47"]
    printed = runner.invoke(app, base)
    assert printed.exit_code == 0 and printed.stdout.startswith("AI inference $116") and "TOP MOVERS" in printed.stdout
    written = runner.invoke(app, [*base, "--out", str(tmp_path / "out")])
    assert written.exit_code == 0 and (tmp_path / "out" / "weekly-2026-W47.eml").exists()
    bad = runner.invoke(app, ["report", "weekly", "--data-dir", str(weekly_dir), "--week", "2026-47"])
    assert bad.exit_code == 2 and "use the ISO form YYYY-Www" in bad.output
    no_smtp = runner.invoke(app, [*base, "--send"])
    assert no_smtp.exit_code == 2 and "--send needs [smtp]" in no_smtp.output
    config_file = tmp_path / "inferledger.toml"
    config_file.write_text(f"""
[smtp]
host = "{smtp.host}"
port = {smtp.port}
security = "none"
recipients = ["ops@example.com"]

[[budgets]]
name = "all-ai"
amount_usd = 300.0
""")
    sent = runner.invoke(app, [*base, "--send", "--config", str(config_file)])
    assert sent.exit_code == 0, sent.output
    assert f'sent "{SUBJECT}" to ops@example.com via 127.0.0.1' in " ".join(sent.output.split())
    assert smtp.wait_for(1)[0]["Subject"] == SUBJECT and smtp.envelopes[0].rcpt_tos == ["ops@example.com"]
