"""Rule and channel configuration: what loads, what is refused, and with which message."""
from __future__ import annotations

from datetime import timedelta
from types import SimpleNamespace

import pytest

from alerts.config import AlertsConfig, RuleConfig, SmtpConfig, WebhookConfig, format_duration, parse_duration
from alerts.rules import DEFAULT_RULES, check_alerts, effective_rules, labels_match
from inferledger.config import ConfigError, load_config


@pytest.mark.parametrize("text, expected", [
    ("0", timedelta(0)), ("0s", timedelta(0)), ("90s", timedelta(seconds=90)), ("15m", timedelta(minutes=15)),
    ("2h", timedelta(hours=2)), ("1d", timedelta(days=1)), ("1w", timedelta(weeks=1)),
    ("1h30m", timedelta(minutes=90)), ("1.5h", timedelta(minutes=90)),
])
def test_durations(text, expected):
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "5", "5 minutes", "h", "-1h", "1x", "2h-"])
def test_bad_durations(text):
    with pytest.raises(ValueError, match="bad duration"):
        parse_duration(text)


def test_format_duration_round_trips():
    assert [format_duration(parse_duration(t)) for t in ("0s", "90s", "1h30m", "1d6h")] == ["0s", "1m30s", "1h30m", "1d6h"]


def rule(**fields):
    return {"name": "r", "metric": "budget.forecast_pct", "threshold": {"op": ">", "value": 1.0}, **fields}


@pytest.mark.parametrize("fields, message", [
    ({"metric": "budget.forcast_pct"}, "rule 'r': unknown metric 'budget.forcast_pct'; did you mean 'budget.forecast_pct'?"),
    ({"metric": "nothing.*"}, "unknown metric 'nothing.*'; known metrics: anomaly.cost, budget.forecast_pct"),
    ({"metric": "pricing.unpriced_share", "threshold": {"op": ">", "value": 5}},
     "bad threshold 5 for pricing.unpriced_share, a share between 0 and 1 (write 0.05 for 5%)"),
    ({"threshold": {"op": ">", "value": 80}},
     "bad threshold 80 for budget.forecast_pct, a ratio where 1.0 = 100% (write 0.8 for 80%)"),
    ({"threshold": {"op": ">", "value": "inf"}}, "bad threshold inf: must be a finite number"),
    ({"threshold": {"op": "=>", "value": 1}}, "Input should be '>', '>=', '<' or '<='"),
    ({"threshold": {"op": ">", "value": "high"}}, "Input should be a valid number"),
    ({"for": "5 minutes"}, "bad duration '5 minutes'"),
    ({"verdict": ["major"]}, "give exactly one condition (threshold, change or verdict), got threshold, verdict"),
    ({"threshold": None}, "give exactly one condition (threshold, change or verdict), got none"),
    ({"threshold": None, "change": {"op": ">", "value": 1, "windows": 2, "before": "1h"}}, "either windows or before"),
    ({"threshold": None, "verdict": []}, "verdict needs at least one value"),
    ({"name": "has space"}, "String should match pattern"),
    ({"severity": "page"}, "Input should be 'info', 'warning' or 'critical'"),
    ({"treshold": 1}, "Extra inputs are not permitted"),
])
def test_bad_rules_are_refused_with_a_message(fields, message):
    with pytest.raises(ValueError, match=None) as failure:
        RuleConfig.model_validate(rule(**fields))
    assert message in str(failure.value)


def test_rules_load_from_toml_with_for_and_globs(tmp_path):
    path = tmp_path / "inferledger.toml"
    path.write_text('''
[alerts]
disabled_rules = ["cost-anomaly"]
[[alerts.rules]]
name = "budget-forecast-over"
metric = "budget.forecast_pct"
threshold = { op = ">", value = 1.1 }
for = "2h"
[[alerts.rules]]
name = "any-version-psi"
metric = "drift.version.*_psi"
labels = { service = ["fraud-*", "support"] }
verdict = ["major"]
''')
    config = load_config(path, environ={})
    rules = {r.name: r for r in effective_rules(config.alerts)}
    assert "cost-anomaly" not in rules and len(rules) == len(DEFAULT_RULES) + 1 - 1
    assert rules["budget-forecast-over"].threshold.value == 1.1
    assert rules["budget-forecast-over"].pending_for == timedelta(hours=2)
    assert rules["any-version-psi"].metrics == ["drift.version.input_tokens_psi", "drift.version.latency_psi",
                                                "drift.version.output_tokens_psi", "drift.version.score_psi"]


def test_config_file_errors_say_where(tmp_path):
    path = tmp_path / "inferledger.toml"
    path.write_text('[[alerts.rules]]\nname = "x"\nmetric = "retry.inflation"\nthreshold = { op = ">", value = 0.2 }\n')
    with pytest.raises(ConfigError) as failure:
        load_config(path, environ={})
    assert "alerts.rules.0.metric: Value error, rule 'x': unknown metric 'retry.inflation'; did you mean " \
           "'retry.inflation_cost'?" in str(failure.value)


def test_use_default_rules_false_and_duplicate_names():
    assert effective_rules(AlertsConfig(use_default_rules=False)) == []
    with pytest.raises(ValueError, match="two rules are named 'r'"):
        AlertsConfig(rules=[rule(), rule()])


@pytest.mark.parametrize("label_filter, labels, matches", [
    ({}, {"service": "a"}, True),
    ({"service": "fraud"}, {"service": "fraud"}, True),
    ({"service": "fraud"}, {"service": "fraud-2"}, False),
    ({"service": "fraud*"}, {"service": "fraud-2"}, True),
    ({"service": ["a", "b"]}, {"service": "b"}, True),
    ({"service": "*"}, {}, False),
    ({"service": ""}, {}, True),
    ({"service": ""}, {"service": "a"}, False),
    ({"service": "a", "model": "m*"}, {"service": "a", "model": "x"}, False),
])
def test_label_filters(label_filter, labels, matches):
    assert labels_match(label_filter, labels) is matches


def settings(**alerts):
    return SimpleNamespace(alerts=AlertsConfig(**alerts), smtp=SmtpConfig(mailbox_dir="/tmp/m", recipients=["a@x"]),
                           webhooks=[WebhookConfig(name="ops", url="https://h.example.com/x", secret_env="NO_SUCH_ENV")])


def test_cross_section_checks():
    problems = check_alerts(settings(
        rules=[rule(name="a", channels=["opz"], inhibited_by=["zzz"]),
               {"name": "b", "metric": "drift.labels", "verdict": ["drifted"], "labels": {"servce": "x"}}],
        disabled_rules=["job-fialed"], default_channels=["email", "ops"],
        silences=[{"rule": "nope", "until": "2030-01-01T00:00:00Z", "comment": "c"}]), environ={})
    messages = {(p.level, p.message) for p in problems}
    assert messages == {
        ("warning", "webhook 'ops': environment variable NO_SUCH_ENV (secret_env) is not set; deliveries will fail"),
        ("error", "disabled_rules: unknown rule 'job-fialed'; did you mean 'job-failed'?"),
        ("error", "rule 'a': inhibited_by unknown rule 'zzz'"),
        ("error", "rule 'a': unknown channel 'opz'; did you mean 'ops'? (known: email, ops)"),
        ("warning", "rule 'b': unknown label 'servce' of drift.labels; did you mean 'service'? "
                    "(known: model, model_version, service); the filter will match nothing"),
        ("error", "rule 'b': unknown verdict 'drifted' of drift.labels; did you mean 'drift'? "
                  "(known: drift, insufficient, major, minor, none)"),
        ("warning", "silence 'c': rule 'nope' matches no rule"),
    }


def test_email_channel_needs_smtp_and_recipients():
    no_smtp = SimpleNamespace(alerts=AlertsConfig(default_channels=["email"]), smtp=SmtpConfig(), webhooks=[])
    assert {p.message for p in check_alerts(no_smtp, environ={}) if p.level == "error"} == {
        f"rule {r.name!r} sends to email but [smtp] has no host or mailbox_dir" for r in DEFAULT_RULES}
    no_recipients = SimpleNamespace(alerts=AlertsConfig(), smtp=SmtpConfig(host="mail"), webhooks=[])
    assert [p.message for p in check_alerts(no_recipients, environ={})] == ["[smtp] has no recipients: set smtp.recipients"]


def test_webhook_cannot_be_named_email():
    with pytest.raises(ValueError, match="`email` is the SMTP channel's name"):
        WebhookConfig(name="email", url="https://x")
