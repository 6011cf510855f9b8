"""`inferledger alerts ...` as a user runs it (typer's CliRunner over the real app)."""
from __future__ import annotations

from datetime import UTC, datetime

import pytest
from typer.testing import CliRunner

from inferledger.cli import app
from tests.alerts.conftest import free_port, put_metric

ENV = {"INFERLEDGER_SUBJECT_KEY": "00" * 32, "COLUMNS": "250"}
BASE = """
[smtp]
mailbox_dir = "{mail}"
recipients = ["ops@example.com"]

[[webhooks]]
name = "ops-slack"
url = "http://127.0.0.1:{port}/hook"
format = "slack"
timeout_s = 1
"""


@pytest.fixture
def setup(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    path = tmp_path / "inferledger.toml"

    def invoke(*args: str, extra: str = ""):
        path.write_text(BASE.format(mail=tmp_path / "mail", port=free_port()) + extra)
        return CliRunner().invoke(app, ["alerts", *args, "--config", str(path), "--data-dir", str(data)], env=ENV)

    return data, invoke


def test_check_prints_the_rules_in_force(setup):
    _, invoke = setup
    result = invoke("check")
    assert result.exit_code == 0, result.output
    assert "12 rule(s) in force:" in result.stdout
    assert ('  unpriced-spend              warning  pricing.unpriced_share{provider="", model=""} > 1.0% '
            "-> email, ops-slack (default)") in result.stdout
    assert "alert configuration OK" in result.stderr


@pytest.mark.parametrize("extra, message", [
    ('[[alerts.rules]]\nname = "x"\nmetric = "budget.forcast_pct"\nthreshold = { op = ">", value = 1 }\n',
     "alerts.rules.0.metric: Value error, rule 'x': unknown metric 'budget.forcast_pct'; did you mean 'budget.forecast_pct'?"),
    ('[[alerts.rules]]\nname = "x"\nmetric = "retry.share"\nthreshold = { op = ">", value = 20 }\n',
     "bad threshold 20 for retry.share, a share between 0 and 1 (write 0.2 for 20%)"),
    ('[[alerts.rules]]\nname = "x"\nmetric = "retry.share"\nthreshold = { op = ">", value = 0.2 }\nfor = "an hour"\n',
     "alerts.rules.0.for: Value error, bad duration 'an hour'"),
    ('[[alerts.rules]]\nname = "x"\nmetric = "retry.share"\nthreshold = { op = ">", value = 0.2 }\nchannels = ["ops-slak"]\n',
     "error: rule 'x': unknown channel 'ops-slak'; did you mean 'ops-slack'? (known: email, ops-slack)"),
    ('[alerts]\ndisabled_rules = ["cost-anomaly", "job-fialed"]\n',
     "error: disabled_rules: unknown rule 'job-fialed'; did you mean 'job-failed'?"),
])
def test_check_explains_what_is_wrong(setup, extra, message):
    _, invoke = setup
    result = invoke("check", extra=extra)
    assert result.exit_code == 1
    assert message in result.stderr
    assert "Traceback" not in result.output


def test_check_warns_about_metrics_the_catalogue_does_not_know(setup):
    data, invoke = setup
    put_metric(data, "retry.brand_new_figure", 1.0, job="retries")
    result = invoke("check")
    assert result.exit_code == 0
    assert "warning: metric 'retry.brand_new_figure' is in job_metrics but not in alerts/catalogue.py" in result.stderr


def test_silence_list_and_unsilence(setup):
    data, invoke = setup
    result = invoke("silence", "--rule", "cost-anomaly", "--label", "value=fraud-screening", "--for", "2h",
                    "--comment", "load test", "--by", "alice")
    assert result.exit_code == 0, result.output
    silence_id = result.stdout.split()[1]
    listing = invoke("list").stdout
    assert silence_id in listing and "value=fraud-screening" in listing and "load test" in listing and "alice" in listing
    assert invoke("unsilence", silence_id).exit_code == 0
    assert silence_id not in invoke("list").stdout
    assert "(expired)" in invoke("list", "--all").stdout
    again = invoke("unsilence", silence_id)
    assert again.exit_code == 1 and f"no active silence '{silence_id}'" in again.stderr


@pytest.mark.parametrize("args, message", [
    (["--rule", "cost-anomly", "--for", "1h", "--comment", "x"],
     "rule 'cost-anomly' matches no rule in force; did you mean 'cost-anomaly'?"),
    (["--rule", "cost-anomaly", "--for", "soon", "--comment", "x"], "--for: bad duration 'soon'"),
    (["--rule", "cost-anomaly", "--for", "1h", "--comment", "x", "--label", "service"], "--label 'service': use KEY=VALUE"),
    (["--rule", "cost-anomaly", "--for", "0s", "--comment", "x"], "--for must be longer than 0"),
])
def test_silence_refuses_bad_input(setup, args, message):
    _, invoke = setup
    result = invoke("silence", *args)
    assert result.exit_code == 2 and message in result.stderr


def test_run_then_list_shows_the_alert_and_its_deliveries(setup, tmp_path):
    data, invoke = setup
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    put_metric(data, "job.failed", 1.0, {"job": "drift"}, start=now, hours=1, verdict="failed", job="drift",
               detail={"run_id": "r1", "error": "KeyError: 'score'"})
    extra = "[alerts.delivery]\nattempts = 1\n"
    result = invoke("run", extra=extra)
    assert result.exit_code == 0  # the webhook is down: waiting to retry is not a failure yet
    assert "1 notification(s); delivered 1, failed 0, waiting to retry 1, dropped 0" in result.stdout
    [mail] = (tmp_path / "mail").glob("*.eml")
    assert "error: KeyError: 'score'" in mail.read_text()
    listing = invoke("list", extra=extra)
    assert "job-failed" in listing.stdout and "firing" in listing.stdout and "verdict failed" in listing.stdout
    assert "email (ops@example.com via mailbox" in listing.stdout and "ok" in listing.stdout
    assert "ConnectionRefusedError" in listing.stdout
    assert "1 message(s) waiting in the outbox" in listing.stderr


def test_test_sends_to_each_channel(setup, tmp_path):
    _, invoke = setup
    result = invoke("test")
    assert result.exit_code == 1
    assert "email: sent" in result.stdout
    assert "ops-slack: failed: webhook ops-slack (http://127.0.0.1:" in result.stderr
    [mail] = (tmp_path / "mail").glob("*.eml")
    assert "Subject: inferledger test notification" in mail.read_text()
    assert invoke("test", "--channel", "email").exit_code == 0


def test_list_needs_an_existing_data_dir(tmp_path):
    result = CliRunner().invoke(app, ["alerts", "list", "--data-dir", str(tmp_path / "missing")], env=ENV)
    assert result.exit_code == 2 and "does not exist" in result.stderr


def test_every_alerts_command_has_help():
    from typer.main import get_command

    group = get_command(app).commands["alerts"]
    for name, command in group.commands.items():
        assert command.help and len(command.help) > 20, name
    assert set(group.commands) == {"check", "list", "silence", "unsilence", "run", "test"}
