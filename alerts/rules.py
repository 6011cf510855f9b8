"""The rules in force: built-in defaults plus the configuration's, and the checks that need all sections.

Defaults ship enabled so a fresh install alerts on what matters (budget overrun,
unpriced spend, retry inflation, drift, anomalies, failing jobs, rejected spans).
A configured rule with a default's name replaces it; ``disabled_rules`` switches
rules off; ``use_default_rules = false`` starts from nothing.
"""
from __future__ import annotations

import fnmatch
import os
from dataclasses import dataclass
from typing import Any, Literal, Mapping, Protocol

from alerts.catalogue import CATALOGUE, did_you_mean
from alerts.config import EMAIL_CHANNEL, AlertsConfig, LabelFilter, RuleConfig, SmtpConfig, WebhookConfig


class AlertSettings(Protocol):
    """What alerting reads from the whole configuration (``inferledger.config.Config`` has these)."""

    alerts: AlertsConfig
    smtp: SmtpConfig
    webhooks: list[WebhookConfig]


def _rule(name: str, metric: str, severity: str, description: str, **condition: Any) -> RuleConfig:
    return RuleConfig.model_validate({"name": name, "metric": metric, "severity": severity,
                                      "description": description, **condition})


DEFAULT_RULES: tuple[RuleConfig, ...] = (
    _rule("budget-forecast-over", "budget.forecast_pct", "critical",
          "The period-end forecast exceeds the budget.", threshold={"op": ">", "value": 1.0}),
    _rule("budget-forecast-high", "budget.forecast_pct", "warning",
          "The period-end forecast is above 80% of the budget.", threshold={"op": ">=", "value": 0.8},
          inhibited_by=["budget-forecast-over"]),
    _rule("unit-cost-over-budget", "budget.unit_cost_ratio", "warning",
          "The actual unit cost is above the budgeted unit cost.", threshold={"op": ">", "value": 1.0}),
    _rule("retry-inflation", "retry.inflation_cost", "warning",
          "Retries add more than 20% to the cost of the requests that succeeded.",
          threshold={"op": ">", "value": 0.2}),
    _rule("unpriced-spend", "pricing.unpriced_share", "warning",
          "More than 1% of spend has no price: add the models to the price file (`inferledger prices check`).",
          threshold={"op": ">", "value": 0.01}, labels={"provider": "", "model": ""}),
    _rule("decision-label-drift", "drift.labels", "warning",
          "Decision-label shares moved significantly against the reference window.", verdict=["drift"]),
    _rule("score-drift-major", "drift.score_psi", "warning",
          "Decision scores shifted (PSI at or above the major level).", verdict=["major"]),
    _rule("version-label-drift", "drift.version.labels", "warning",
          "A new model version decides differently from the version it replaced.", verdict=["drift"]),
    _rule("version-score-drift-major", "drift.version.score_psi", "warning",
          "A new model version's scores shifted against the version it replaced.", verdict=["major"]),
    _rule("cost-anomaly", "anomaly.cost", "warning",
          "Cost is outside its expected range for this time of the week.", verdict=["anomaly"]),
    _rule("job-failed", "job.failed", "critical",
          "A scheduled job failed; its results are stale until it runs again.", verdict=["failed"]),
    _rule("collector-rejecting-spans", "collector.rejected_spans", "warning",
          "The collector refused spans in the last hour; see the reason label.",
          threshold={"op": ">", "value": 0}),
)


@dataclass(frozen=True)
class Problem:
    level: Literal["error", "warning"]
    message: str


def effective_rules(alerts: AlertsConfig) -> list[RuleConfig]:
    """Defaults (when used), replaced or extended by the configured rules, minus disabled ones."""
    rules = {rule.name: rule for rule in DEFAULT_RULES} if alerts.use_default_rules else {}
    rules.update({rule.name: rule for rule in alerts.rules})
    return [rule for name, rule in rules.items() if name not in alerts.disabled_rules]


def rule_source(alerts: AlertsConfig, rule: RuleConfig) -> str:
    is_default = any(default.name == rule.name for default in DEFAULT_RULES) and alerts.use_default_rules
    if rule in alerts.rules:
        return "config (replaces default)" if is_default else "config"
    return "default"


def labels_match(label_filter: LabelFilter, labels: Mapping[str, Any]) -> bool:
    """Every filtered key matches one of its patterns; ``""`` matches a series without that label."""
    for key, patterns in label_filter.items():
        value = labels.get(key)
        candidates = [patterns] if isinstance(patterns, str) else patterns
        if not any(_pattern_matches(pattern, value) for pattern in candidates):
            return False
    return True


def _pattern_matches(pattern: str, value: Any) -> bool:
    if value is None or value == "":
        return pattern == ""
    return pattern != "" and fnmatch.fnmatchcase(str(value), pattern)


def configured_channels(settings: AlertSettings) -> list[str]:
    return ([EMAIL_CHANNEL] if settings.smtp.configured else []) + [hook.name for hook in settings.webhooks]


def rule_channels(settings: AlertSettings, rule: RuleConfig) -> list[str]:
    """The rule's channels, else ``default_channels``, else every configured channel."""
    if rule.channels is not None:
        return list(rule.channels)
    if settings.alerts.default_channels is not None:
        return list(settings.alerts.default_channels)
    return configured_channels(settings)


def check_alerts(settings: AlertSettings, environ: Mapping[str, str] | None = None) -> list[Problem]:
    """Everything wrong that a single section cannot see: channels, rule references, secrets, filters."""
    environ = os.environ if environ is None else environ
    rules = effective_rules(settings.alerts)
    problems = _check_channel_definitions(settings, environ)
    problems += _check_rule_references(settings.alerts, rules)
    for rule in rules:
        problems += _check_rule_channels(settings, rule)
        problems += _check_rule_filter(rule)
    if rules and not configured_channels(settings):
        problems.append(Problem("warning", "no channel is configured ([smtp] or [[webhooks]]): alerts are "
                                           "evaluated and recorded but not sent"))
    return problems


def _check_channel_definitions(settings: AlertSettings, environ: Mapping[str, str]) -> list[Problem]:
    problems, seen = [], set()
    for hook in settings.webhooks:
        if hook.name in seen:
            problems.append(Problem("error", f"two webhooks are named {hook.name!r}"))
        seen.add(hook.name)
        if hook.secret_env and not environ.get(hook.secret_env):
            problems.append(Problem("warning", f"webhook {hook.name!r}: environment variable {hook.secret_env} "
                                               "(secret_env) is not set; deliveries will fail"))
    smtp = settings.smtp
    if smtp.configured and not smtp.recipients:
        problems.append(Problem("error", "[smtp] has no recipients: set smtp.recipients"))
    if smtp.host and smtp.username and not environ.get(smtp.password_env):
        problems.append(Problem("warning", f"[smtp] username is set but environment variable {smtp.password_env} "
                                           "(password_env) is not; login will fail"))
    return problems


def _check_rule_references(alerts: AlertsConfig, rules: list[RuleConfig]) -> list[Problem]:
    known = [rule.name for rule in DEFAULT_RULES] + [rule.name for rule in alerts.rules]
    active = {rule.name for rule in rules}
    problems = [Problem("error", f"disabled_rules: {_unknown('rule', name, known)}")
                for name in alerts.disabled_rules if name not in known]
    for rule in rules:
        problems += [Problem("error", f"rule {rule.name!r}: inhibited_by {_unknown('rule', name, sorted(active))}")
                     for name in rule.inhibited_by if name not in active]
    for silence in alerts.silences:
        if not any(fnmatch.fnmatchcase(name, silence.rule) for name in active):
            problems.append(Problem("warning", f"silence {silence.comment!r}: rule {silence.rule!r} matches no rule"))
    return problems


def _check_rule_channels(settings: AlertSettings, rule: RuleConfig) -> list[Problem]:
    available = configured_channels(settings)
    problems = []
    for channel in rule_channels(settings, rule):
        if channel == EMAIL_CHANNEL and not settings.smtp.configured:
            problems.append(Problem("error", f"rule {rule.name!r} sends to email but [smtp] has no host or mailbox_dir"))
        elif channel != EMAIL_CHANNEL and channel not in available:
            problems.append(Problem("error", f"rule {rule.name!r}: {_unknown('channel', channel, available)}"))
    return problems


def _check_rule_filter(rule: RuleConfig) -> list[Problem]:
    infos = [CATALOGUE[name] for name in rule.metrics]
    known_labels = sorted({label for info in infos for label in info.labels})
    problems = [Problem("warning", f"rule {rule.name!r}: {_unknown('label', key, known_labels, f' of {rule.metric}')}; "
                                   "the filter will match nothing")
                for key in rule.labels if key not in known_labels]
    if rule.verdict is not None:
        verdicts = sorted({verdict for info in infos for verdict in info.verdicts})
        if not verdicts:
            problems.append(Problem("warning", f"rule {rule.name!r}: {rule.metric} has no documented verdicts"))
        problems += [Problem("error", f"rule {rule.name!r}: {_unknown('verdict', verdict, verdicts, f' of {rule.metric}')}")
                     for verdict in rule.verdict if verdicts and verdict not in verdicts]
    return problems


def _unknown(kind: str, name: str, known: list[str], of: str = "") -> str:
    listed = f" (known: {', '.join(known) or 'none'})" if len(known) <= 8 else ""
    return f"unknown {kind} {name!r}{of}{did_you_mean(name, known)}{listed}"
