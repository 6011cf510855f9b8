"""Configuration of alerting: ``[alerts]`` (rules, silences, delivery), ``[smtp]`` and ``[[webhooks]]``.

A rule is checked as it loads: its metric must be one the jobs emit (see
``alerts/catalogue.py``), its condition well formed, its durations parseable; so a
typo stops ``inferledger serve`` and ``inferledger alerts check`` with a message
instead of producing an alert that never fires. Checks that need more than one
section (a rule's channels against ``[smtp]`` and ``[[webhooks]]``) live in
``alerts.rules.check_alerts``.

Secrets never sit in the file: the SMTP password and the webhook signing keys are
read from environment variables named here.
"""
from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from alerts.catalogue import CATALOGUE, matching_metrics, unknown_metric_message

Op = Literal[">", ">=", "<", "<="]
Severity = Literal["info", "warning", "critical"]
LabelFilter = dict[str, str | list[str]]

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
EMAIL_CHANNEL = "email"
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


def parse_duration(text: str) -> timedelta:
    """``"90s"``, ``"15m"``, ``"2h"``, ``"1d"``, ``"1h30m"``, ``"0"`` -> timedelta; anything else is an error."""
    compact = str(text).strip().replace(" ", "")
    if compact == "0":
        return timedelta(0)
    parts = _DURATION_PART.findall(compact)
    if not compact or "".join(number + unit for number, unit in parts) != compact:
        raise ValueError(f"bad duration {text!r}: use a number and a unit s, m, h, d or w, e.g. \"15m\", \"2h\", \"1h30m\"")
    return timedelta(seconds=sum(float(number) * _UNIT_SECONDS[unit] for number, unit in parts))


def format_duration(delta: timedelta) -> str:
    """The short form ``parse_duration`` reads (``2h``, ``1d6h``, ``0s``)."""
    seconds, parts = int(delta.total_seconds()), []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    return "".join(parts) or "0s"


def _check_duration(value: str) -> str:
    parse_duration(value)
    return value


def _finite(value: float) -> float:
    if not math.isfinite(value):
        raise ValueError(f"bad threshold {value!r}: must be a finite number")
    return value


class ThresholdCondition(_Section):
    """Fire while the latest value compares true against a fixed value."""

    op: Op = Field(..., description="Comparison: `>`, `>=`, `<` or `<=`.")
    value: float = Field(..., description="The threshold, in the metric's unit (ratios: 1.0 = 100%).")

    _finite_value = field_validator("value")(_finite)


class ChangeCondition(_Section):
    """Fire while the latest value changed by more than ``value`` against an earlier value of the same series."""

    op: Op = Field(
        ...,
        description="Comparison of the change against `value`: `>`, `>=`, `<` or `<=` (falls: `<` with a negative value).")
    value: float = Field(
        ..., description="The change that fires: relative (0.5 = +50%, -0.3 = -30%) or absolute, see `measure`.")
    measure: Literal["relative", "absolute"] = Field(
        "relative", description="`relative`: (latest - earlier) / abs(earlier); `absolute`: latest - earlier.")
    windows: int | None = Field(
        None, ge=1, le=1000, description="Compare with the value this many windows earlier (default 1).")
    before: str | None = Field(
        None,
        description="Or: compare with the newest value whose window ended at least this long before the latest "
        "one's (e.g. `\"24h\"`, `\"7d\"`).")

    _finite_value = field_validator("value")(_finite)

    @field_validator("before")
    @classmethod
    def _before_is_a_duration(cls, value: str | None) -> str | None:
        return None if value is None else _check_duration(value)

    @model_validator(mode="after")
    def _one_reference(self) -> "ChangeCondition":
        if self.windows is not None and self.before is not None:
            raise ValueError("change: give either windows or before, not both")
        return self


class RuleConfig(_Section):
    """One alert rule (`[[alerts.rules]]`): a metric, a label filter, one condition, severity, pending time, channels."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, populate_by_name=True)

    name: str = Field(
        ..., pattern=NAME_PATTERN, description="Unique rule name; a rule named like a default rule replaces it.")
    description: str = Field("", description="What the alert means and what to do; shown in notifications.")
    metric: str = Field(
        ..., description="A `job_metrics` metric name, or a glob over them (`drift.version.*`); see alerts/README.md.")
    labels: LabelFilter = Field(
        default_factory=dict,
        description="Label filter: each key must match (exact value or glob; a list matches any). "
        "`\"\"` matches a series without that label.")
    threshold: ThresholdCondition | None = Field(None, description="Condition on the value.")
    change: ChangeCondition | None = Field(None, description="Condition on the change against an earlier value.")
    verdict: list[str] | None = Field(
        None, description="Condition on the job's own verdict: fire while it is one of these (e.g. `[\"drift\"]`).")
    severity: Severity = Field("warning", description="`info`, `warning` or `critical`.")
    for_: str = Field(
        "0s", alias="for", description="How long the condition must hold (pending) before the alert fires, e.g. `\"30m\"`.")
    channels: list[str] | None = Field(
        None, description="Channels to notify: `email` and/or webhook names; unset = `alerts.default_channels`.")
    inhibited_by: list[str] = Field(
        default_factory=list,
        description="Rule names that mute this one while they fire on the same series (a warning muted by its critical).")

    @field_validator("metric")
    @classmethod
    def _metric_is_known(cls, value: str, info: ValidationInfo) -> str:
        if not matching_metrics(value):
            raise ValueError(f"rule {info.data.get('name')!r}: {unknown_metric_message(value)}")
        return value

    @field_validator("for_")
    @classmethod
    def _for_is_a_duration(cls, value: str) -> str:
        return _check_duration(value)

    @model_validator(mode="after")
    def _one_sane_condition(self) -> "RuleConfig":
        given = [kind for kind in ("threshold", "change", "verdict") if getattr(self, kind) is not None]
        if len(given) != 1:
            raise ValueError(f"rule {self.name!r}: give exactly one condition (threshold, change or verdict), got "
                             f"{', '.join(given) or 'none'}")
        if self.verdict is not None and not self.verdict:
            raise ValueError(f"rule {self.name!r}: verdict needs at least one value")
        if self.threshold is not None:
            _check_threshold_scale(self.name, self.metric, self.threshold.value)
        return self

    @property
    def pending_for(self) -> timedelta:
        return parse_duration(self.for_)

    @property
    def metrics(self) -> list[str]:
        return matching_metrics(self.metric)


def _check_threshold_scale(rule: str, pattern: str, value: float) -> None:
    """Shares are 0..1 and ratios 1.0 = 100%: a threshold of 80 meant 80% and would never fire."""
    for name in matching_metrics(pattern):
        unit = CATALOGUE[name].unit
        if (unit == "share" and not 0 <= value <= 1) or (unit == "ratio" and abs(value) > 10):
            meaning = "a share between 0 and 1" if unit == "share" else "a ratio where 1.0 = 100%"
            hint = f" (write {value / 100:g} for {value:g}%)" if 1 < abs(value) <= 1000 else ""
            raise ValueError(f"rule {rule!r}: bad threshold {value:g} for {name}, {meaning}{hint}")


class SilenceConfig(_Section):
    """A silence in the file (`[[alerts.silences]]`): mutes matching alerts until it expires."""

    rule: str = Field("*", description="Rule name or glob the silence applies to.")
    labels: LabelFilter = Field(
        default_factory=dict, description="Only alerts whose labels match (same syntax as rule filters).")
    until: datetime = Field(..., description="Expiry (TOML date-time; without an offset it is UTC).")
    comment: str = Field(..., min_length=1, description="Why: shown in `inferledger alerts list`.")

    @field_validator("until")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class DeliveryConfig(_Section):
    """Retries of a failing channel: attempts with exponential backoff, then later runs retry for a while."""

    attempts: int = Field(4, ge=1, le=10, description="Attempts per message and channel within one run.")
    backoff_initial_s: float = Field(2.0, ge=0, le=300, description="Wait before the second attempt; doubles each time.")
    backoff_max_s: float = Field(30.0, ge=0, le=600, description="Longest wait between two attempts.")
    redeliver_hours: float = Field(
        24.0, ge=0, le=720,
        description="A message that failed every attempt is retried on later runs for this long, then dropped (0 = never).")


class AlertsConfig(_Section):
    """Alerting: rules over the jobs' metrics (`job_metrics`), evaluated after every job run; see alerts/README.md."""

    enabled: bool = Field(True, description="Evaluate the rules after every job run and send notifications.")
    dashboard_url: str | None = Field(
        None, pattern=r"^https?://",
        description="Base URL of the dashboard (e.g. `https://inferledger.example.com`), for links in notifications.")
    templates_dir: Path | None = Field(
        None, description="Directory of templates that replace the built-in ones of the same name (see alerts/README.md).")
    reminder_interval_minutes: int = Field(
        240, ge=0, description="Remind this often while an alert keeps firing (0 = never remind).")
    stale_windows: float = Field(
        2.0, gt=0,
        description="A series whose newest window ended more than this many window lengths ago has no current value: "
        "its pending alert returns to ok, a firing one resolves.")
    use_default_rules: bool = Field(
        True,
        description="Start from the built-in rules (`inferledger alerts check` lists them); "
        "`rules` extend or replace them by name.")
    disabled_rules: list[str] = Field(default_factory=list, description="Names of rules (built-in or not) to switch off.")
    default_channels: list[str] | None = Field(
        None,
        description="Channels of rules that name none; unset = every configured channel "
        "(`email` when [smtp] is set, every webhook).")
    rules: list[RuleConfig] = Field(default_factory=list, description="Alert rules, one `[[alerts.rules]]` table each.")
    silences: list[SilenceConfig] = Field(
        default_factory=list, description="Silences, one `[[alerts.silences]]` table each.")
    delivery: DeliveryConfig = Field(default_factory=DeliveryConfig)

    @field_validator("rules")
    @classmethod
    def _unique_names(cls, rules: list[RuleConfig]) -> list[RuleConfig]:
        seen: set[str] = set()
        for rule in rules:
            if rule.name in seen:
                raise ValueError(f"two rules are named {rule.name!r}")
            seen.add(rule.name)
        return rules


class SmtpConfig(_Section):
    """Outgoing email: an SMTP server, or a directory that receives one .eml file per message."""

    host: str | None = Field(None, description="SMTP server; unset (and no mailbox_dir) = no email channel.")
    port: int | None = Field(None, ge=1, le=65535, description="Port; unset = 25 (none), 587 (starttls) or 465 (ssl).")
    security: Literal["none", "starttls", "ssl"] = Field(
        "starttls", description="`none`, `starttls` (upgrade after connecting) or `ssl` (TLS from the start).")
    username: str | None = Field(None, description="Login user; unset = no login.")
    password_env: str = Field(
        "INFERLEDGER_SMTP_PASSWORD", description="Environment variable holding the login password (never in the file).")
    sender: str = Field("inferledger <inferledger@localhost>", description="From address.")
    recipients: list[str] = Field(
        default_factory=list, description="To addresses of alert email (and of reports unless they name others).")
    timeout_s: float = Field(10.0, gt=0, le=300, description="Connect and command timeout.")
    ca_file: Path | None = Field(
        None, description="CA certificates (PEM) to verify the server with, instead of the system's.")
    verify_certificate: bool = Field(
        True, description="Verify the server's TLS certificate and host name. Turn off only for a test server.")
    mailbox_dir: Path | None = Field(
        None,
        description="Write each message as an .eml file into this directory instead of sending it (the demo does this).")

    @property
    def configured(self) -> bool:
        return bool(self.host or self.mailbox_dir)

    @property
    def effective_port(self) -> int:
        return self.port or {"none": 25, "starttls": 587, "ssl": 465}[self.security]


class WebhookConfig(_Section):
    """A webhook channel (`[[webhooks]]`): JSON POST, signed with HMAC-SHA256 when a secret is set."""

    name: str = Field(..., pattern=NAME_PATTERN, description="Channel name that rules refer to (not `email`).")
    url: str = Field(
        ..., pattern=r"^https?://", description="Where to POST. Slack incoming-webhook URLs work with format = \"slack\".")
    format: Literal["json", "slack"] = Field(
        "json", description="`json` (inferledger payload) or `slack` (`text` + `blocks`).")
    secret_env: str | None = Field(
        None, description="Environment variable holding the HMAC-SHA256 signing key; unset = unsigned.")
    timeout_s: float = Field(10.0, gt=0, le=300, description="Connect and read timeout of one attempt.")

    @field_validator("name")
    @classmethod
    def _not_email(cls, value: str) -> str:
        if value == EMAIL_CHANNEL:
            raise ValueError("`email` is the SMTP channel's name; give the webhook another name")
        return value
