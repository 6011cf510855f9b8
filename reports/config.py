"""``[reports]``: when the weekly email goes out and to whom, how money is shown, and what
the compliance audit report says about each model (owner, purpose) and how it samples.

Wired into ``inferledger.config.Config`` as the ``reports`` section. SMTP itself is the
``[smtp]`` section shared with alerts; ``recipients`` here only redirects reports.
"""
from __future__ import annotations

import re
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ModelInventoryEntry(_Section):
    """One model of the audit report's inventory (`[[reports.models]]`): who owns it and what it is for."""

    model: str = Field(..., min_length=1, description="Model name as recorded (response model, else requested model), "
                       "or a glob such as `gpt-4o*`.")
    version: str = Field("*", description="Glob over `model_version` this entry covers (`*` = every version).")
    owner: str = Field(..., min_length=1, description="Accountable owner (team or person) shown in the audit report.")
    purpose: str = Field(..., min_length=1, description="What the model is used for, in the auditor's words.")


class ReportsConfig(_Section):
    weekly_enabled: bool = Field(
        True, description="Send the weekly cost-variance email on `weekly_schedule` from `inferledger serve` "
        "(needs `[smtp]` and at least one recipient).")
    weekly_schedule: str = Field(
        "0 8 * * 1", description="Cron expression (5 fields) of the weekly email, in `timezone`. "
        "Default: Mondays at 08:00. The email covers the ISO week that ended before it is sent.")
    timezone: str = Field("UTC", description="IANA time zone of `weekly_schedule` (e.g. `Europe/Berlin`). "
                          "Figures are always computed over UTC days and weeks.")
    recipients: list[str] = Field(
        default_factory=list, description="To addresses of the weekly email; empty = `smtp.recipients`.")
    templates_dir: Path | None = Field(
        None, description="Directory of templates that replace the built-in ones of the same name "
        "(`weekly.html.j2`, `weekly.txt.j2`, `audit.html.j2`; see reports/README.md).")
    headline_budget: str | None = Field(
        None, description="Budget (`[[budgets]]` name) the email's subject compares the week's spend with; "
        "unset = the first budget with an amount and no scope (all traffic). Without one it compares with last week.")
    currency_symbol: str = Field("$", max_length=4, description="Symbol put before amounts (amounts are always USD).")
    currency_decimals: int = Field(2, ge=0, le=4, description="Decimals of exact amounts in tables (headlines round to k/M).")
    top_movers: int = Field(5, ge=1, le=50, description="Rows per top-movers table (service, model, tenant).")
    trend_weeks: int = Field(4, ge=2, le=26, description="Weeks of daily cost the trend chart shows.")
    models: list[ModelInventoryEntry] = Field(
        default_factory=list, description="Model inventory of the audit report, one `[[reports.models]]` table each "
        "(fields below); the first entry matching a model and version wins.")
    audit_sample_size: int = Field(25, ge=1, le=10_000, description="Decision records in the audit report's random sample.")
    audit_seed: int = Field(20260101, ge=0, description="Default seed of the audit sample (`--seed` overrides); "
                            "the same seed over the same data gives the same sample.")

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}: use an IANA name such as `UTC` or `Europe/Berlin`") from None
        return value

    @field_validator("weekly_schedule")
    @classmethod
    def _valid_cron(cls, cron: str) -> str:
        from apscheduler.triggers.cron import CronTrigger

        try:
            CronTrigger.from_crontab(cron, timezone="UTC")
        except ValueError as exc:
            raise ValueError(f"weekly_schedule is not a 5-field cron expression ({cron!r}): {exc}") from None
        return cron

    @field_validator("recipients")
    @classmethod
    def _addresses(cls, recipients: list[str]) -> list[str]:
        for address in recipients:
            if not _ADDRESS.search(address):
                raise ValueError(f"recipient {address!r} is not an email address")
        return recipients

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


_ADDRESS = re.compile(r"[^@\s<>]+@[^@\s<>]+")
