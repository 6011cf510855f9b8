"""Configuration of the scheduled jobs and the budgets they measure against.

``[jobs]`` holds schedules and the statistics' settings; ``[[budgets]]`` is a list,
one table per budget. Both are wired into ``inferledger.config.Config``.
"""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DriftConfig(_Section):
    reference_days: int = Field(14, ge=1, le=365, description="Length of the reference window, which ends where the current window starts.")
    current_days: int = Field(7, ge=1, le=90, description="Length of the current window, ending at the evaluation time.")
    min_samples: int = Field(
        1000, ge=10, description="Fewer records than this in either window: no verdict (`insufficient`). Below about "
        "1,000, PSI over 10-20 bins reaches 0.1 from sampling noise alone (see the Drift section of the jobs README).")
    p_value: float = Field(0.01, gt=0, lt=0.5, description="Significance level of the chi-square, two-proportion and KS tests.")
    min_share_change: float = Field(
        0.05, ge=0, le=1, description="A label's share must also move by at least this much (absolute) to call label drift.")
    psi_minor: float = Field(0.1, gt=0, description="PSI at or above this is minor drift.")
    psi_major: float = Field(0.25, gt=0, description="PSI at or above this is major drift.")
    bins: int = Field(10, ge=2, le=50, description="Quantile bins of the reference window for score PSI.")
    min_error_rate_change: float = Field(
        0.005, ge=0, le=1, description="The error rate must also move by at least this much (absolute) to call drift.")
    ks_sample: int = Field(
        10_000, ge=1000, le=1_000_000,
        description="KS tests and the score PSI use a uniform hash sample of about this many records per window side "
        "(all records of a smaller side).")
    version_lookback_days: int = Field(
        90, ge=1, le=3650, description="A model version is new when it has no record in at least this many days "
        "before its first one; it is then compared with the version it replaced.")

    @model_validator(mode="after")
    def _psi_levels_ordered(self) -> "DriftConfig":
        if self.psi_major <= self.psi_minor:
            raise ValueError(f"drift psi_major ({self.psi_major}) must be above psi_minor ({self.psi_minor})")
        return self


class AnomalyConfig(_Section):
    baseline_days: int = Field(
        28, ge=7, le=180, description="Days of history the baseline is taken from (same hour, weekdays vs weekends).")
    threshold_mads: float = Field(
        4.0, gt=0, description="Flag a cost further than this many scaled MADs (1.4826 × MAD) from the median "
        "of comparable past periods.")
    min_spread_ratio: float = Field(
        0.05, ge=0, le=1, description="The scaled MAD is at least this share of the median: a cost that never "
        "varies has a MAD of 0, and without a floor every cent of change would be flagged.")
    min_cost_usd: float = Field(1.0, ge=0, description="Ignore keys whose expected and observed cost are both below this.")
    min_history: int = Field(
        7, ge=3, description="Fewer comparable past periods than this: no verdict (`insufficient`). 28 days hold "
        "8 weekend days.")


class JobsConfig(_Section):
    enabled: bool = Field(True, description="Run the scheduled jobs inside `inferledger serve`.")
    schedules: dict[str, str] = Field(
        default_factory=dict,
        description="Cron expression per job name, overriding its default (`inferledger jobs list` shows both), "
        "e.g. `{ rollups = \"*/10 * * * *\" }`. Times are UTC.",
    )
    disabled: list[str] = Field(default_factory=list, description="Job names not to schedule (they can still run by hand).")
    catchup_days: int = Field(
        7, ge=0, le=90, description="On start, windows missed while the server was down are recomputed, at most this far back.")
    memory_limit: str = Field("1GB", description="DuckDB memory limit of a job's queries (spills to disk beyond it).")
    threads: int = Field(2, ge=1, le=64, description="DuckDB threads per job query.")
    nice: int = Field(
        10, ge=0, le=19, description="Inside `inferledger serve`, jobs and scheduled tasks (alerts, reports) run this much nicer "
        "(lower CPU priority) than the collector, so ingest comes first on a busy machine (Linux; their DuckDB "
        "threads inherit it).")
    drift: DriftConfig = Field(default_factory=DriftConfig)
    anomaly: AnomalyConfig = Field(default_factory=AnomalyConfig)

    @field_validator("schedules")
    @classmethod
    def _valid_crons(cls, schedules: dict[str, str]) -> dict[str, str]:
        from apscheduler.triggers.cron import CronTrigger

        for job, cron in schedules.items():
            try:
                CronTrigger.from_crontab(cron, timezone="UTC")
            except ValueError as exc:
                raise ValueError(f"schedule of job {job!r} is not a 5-field cron expression ({cron!r}): {exc}") from None
        return schedules


class BudgetConfig(_Section):
    """One budget: an amount per period, a budgeted unit cost, or both, for a slice of traffic."""

    name: str = Field(..., min_length=1, description="Identifier shown in reports and alerts.")
    period: Literal["month", "week"] = Field("month", description="Budget period (calendar month or ISO week, UTC).")
    amount_usd: float | None = Field(None, gt=0, description="Budgeted spend per period.")
    unit_cost_usd: float | None = Field(None, gt=0, description="Budgeted cost per unit (e.g. 0.02 per transaction screened).")
    unit: Literal["inference", "decision"] = Field(
        "inference", description="What a unit is: every inference, or every record with a decision label.")
    service: str | None = Field(None, description="Only this service (service.name).")
    tenant: str | None = Field(None, description="Only this tenant.")
    feature: str | None = Field(None, description="Only this feature.")
    model: str | None = Field(None, description="Only this model (response model, else requested model).")
    budget_id: str | None = Field(None, description="Only records with this inferledger.budget.id.")

    @model_validator(mode="after")
    def _has_a_figure(self) -> "BudgetConfig":
        if self.amount_usd is None and self.unit_cost_usd is None:
            raise ValueError(f"budget {self.name!r} needs amount_usd, unit_cost_usd or both")
        return self

    def scope(self) -> dict[str, str]:
        """The filters that are set, by record column meaning (empty = all traffic)."""
        keys = ("service", "tenant", "feature", "model", "budget_id")
        return {key: getattr(self, key) for key in keys if getattr(self, key) is not None}
