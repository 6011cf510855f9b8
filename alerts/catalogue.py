"""Every metric the jobs write to ``job_metrics``, so rules can be checked before anything runs.

A rule naming a metric that no job emits would never fire, which is the worst kind
of alert: silent. ``alerts check`` and the configuration loader reject unknown
names (with a did-you-mean) against this list, and warn about label keys and
verdicts the metric does not have. The list follows the contract in the jobs
framework (``warehouse/jobs``); a job that adds a metric adds it here too, and
``inferledger alerts check`` reports metrics found in the warehouse but missing here.

``unit`` drives how a value is shown (``ratio`` as a percentage, ``usd`` as dollars)
and how a threshold is sanity-checked; ``page`` is the dashboard page that explains
the figure.
"""
from __future__ import annotations

import difflib
import fnmatch
from dataclasses import dataclass
from typing import Literal

Unit = Literal["ratio", "share", "usd", "count", "flag", "statistic", "p_value"]

DRIFT_VERDICTS = ("none", "minor", "major", "drift", "insufficient")
DRIFT_LABELS = ("service", "model", "model_version")
RETRY_LABELS = ("provider", "model", "service")


@dataclass(frozen=True)
class MetricInfo:
    name: str
    job: str
    description: str
    unit: Unit
    labels: tuple[str, ...]
    verdicts: tuple[str, ...] = ()
    page: str = "/dashboard/alerts"


def _drift(name: str, what: str, unit: Unit = "statistic") -> MetricInfo:
    return MetricInfo(name, "drift", what, unit, DRIFT_LABELS, DRIFT_VERDICTS, "/dashboard/drift")


_DRIFT_TESTS = {
    "labels": ("largest change of a decision label's share (chi-square or two-proportion test)", "share"),
    "error_rate": ("change of the error rate (two-proportion test)", "share"),
    **{f"{feature}_psi": (f"population stability index of {what}", "statistic")
       for feature, what in (("score", "decision scores (reference-quantile bins)"),
                             ("input_tokens", "input token lengths (log scale)"),
                             ("output_tokens", "output token lengths (log scale)"), ("latency", "latency (log scale)"))},
    **{f"{feature}_ks": (f"two-sample Kolmogorov-Smirnov statistic of {what}", "statistic")
       for feature, what in (("score", "decision scores"), ("input_tokens", "input token lengths"),
                             ("output_tokens", "output token lengths"), ("latency", "latency"))},
}
BUDGET_VERDICTS = ("over", "ok", "insufficient")

CATALOGUE: dict[str, MetricInfo] = {info.name: info for info in [
    MetricInfo("pricing.unpriced_share", "rollups", "share of spend on records with no price (cost_source = unpriced)",
               "share", ("provider", "model"), page="/dashboard/costs"),
    MetricInfo("cost.total_usd", "rollups", "total cost of the window", "usd", ("service",), page="/dashboard/costs"),
    MetricInfo("retry.inflation_cost", "retries", "cost of all attempts / cost of final successful attempts - 1",
               "ratio", RETRY_LABELS, page="/dashboard/retries"),
    MetricInfo("retry.inflation_tokens", "retries", "tokens of all attempts / tokens of final successful attempts - 1",
               "ratio", RETRY_LABELS, page="/dashboard/retries"),
    MetricInfo("retry.share", "retries", "share of logical requests that needed a retry", "share", RETRY_LABELS,
               page="/dashboard/retries"),
    MetricInfo("retry.failed_requests", "retries", "logical requests that failed after all attempts", "count",
               RETRY_LABELS, page="/dashboard/retries"),
    MetricInfo("budget.forecast_pct", "variance", "period-end spend forecast / budgeted amount (1.0 = 100%)", "ratio",
               ("budget",), BUDGET_VERDICTS, "/dashboard/variance"),
    MetricInfo("budget.spent_pct", "variance", "spend so far in the period / budgeted amount", "ratio", ("budget",),
               BUDGET_VERDICTS, "/dashboard/variance"),
    MetricInfo("budget.unit_cost_ratio", "variance", "actual unit cost / budgeted unit cost", "ratio", ("budget",),
               BUDGET_VERDICTS, "/dashboard/variance"),
    *(_drift(f"drift.{test}", what, unit) for test, (what, unit) in _DRIFT_TESTS.items()),
    *(_drift(f"drift.version.{test}", f"new model version vs the one it replaced: {what}", unit)
      for test, (what, unit) in _DRIFT_TESTS.items()),
    MetricInfo("anomaly.cost", "anomalies", "cost of a key against its weekday-aware robust baseline", "usd",
               ("key", "value", "granularity"), ("anomaly", "ok", "insufficient"), "/dashboard/costs"),
    MetricInfo("capacity.cost_version", "capacity", "cost version written by the last capacity allocation", "count",
               (), page="/dashboard/costs"),
    MetricInfo("job.failed", "framework", "the last run of a scheduled job failed (1) or succeeded (0)", "flag",
               ("job",), ("failed", "ok"), "/dashboard/alerts"),
    MetricInfo("collector.rejected_spans", "collector", "spans the collector refused in the hour", "count",
               ("reason",), page="/dashboard/alerts"),
]}


def matching_metrics(pattern: str) -> list[str]:
    """Catalogue names matched by a metric name or glob (``drift.version.*``), sorted."""
    return sorted(name for name in CATALOGUE if fnmatch.fnmatchcase(name, pattern))


def unknown_metric_message(pattern: str) -> str:
    """Why ``pattern`` names no metric, with the closest name as a suggestion."""
    hint = did_you_mean(pattern, list(CATALOGUE)) or f"; known metrics: {', '.join(sorted(CATALOGUE))}"
    return f"unknown metric {pattern!r}{hint}"


def did_you_mean(name: str, known: list[str]) -> str:
    """``"; did you mean 'x'?"`` for the closest of ``known``, or ``""``."""
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""
