"""The compliance audit report's content: a plain data structure built from the warehouse.

``build_audit`` reads the ``inferences`` view once (``reports.population``): that
pass writes the decision export, picks the sample and leaves a small temporary
table of hourly counts per service, model, version and outcome, which every other
figure is queried from. The manifest is replayed once and verified for the
period. Every query is logged in ``AuditReport.queries``: the report prints them
as "how the evidence was produced".
"""
from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from reports.completeness import (ChainCheck, DayReconciliation, check_chain, empty_ranges, read_manifest_facts,
                                  reconcile, sequence_findings)
from reports.config import ModelInventoryEntry, ReportsConfig
from reports.decisions import Scope
from reports.events import EventSection, read_events
from reports.population import read_population
from reports.sources import LoggedQuery, Warehouse

MAX_GAP_RANGES = 50


@dataclass(frozen=True)
class Pivot:
    """Counts of decisions by a key (day, model version) and outcome: one column per label."""

    key_names: list[str]
    labels: list[str]
    rows: list[dict]  # {"key": [..], "counts": [..] (one per label), "total": n}


@dataclass
class AuditReport:
    scope: Scope
    generated_at: datetime
    tool_version: str
    seed: int
    sample_size: int
    totals: dict
    inventory: list[dict]
    outcomes: list[dict]
    by_version: Pivot
    by_day: Pivot
    reconciliation: list[DayReconciliation]
    empty_days: list[date]
    empty_hours: list[str]
    empty_hours_total: int
    sequence: list[str]
    quarantined: list[dict]
    chain: ChainCheck
    sample: list[dict]
    events: list[EventSection]
    population_rows: int
    reviews: list[dict] = field(default_factory=list)
    queries: list[LoggedQuery] = field(default_factory=list)

    @property
    def reconciled(self) -> bool:
        return all(day.residual == 0 and day.view_dedup >= 0 for day in self.reconciliation)


def tool_version() -> str:
    try:
        return f"inferledger {version('inferledger')}"
    except PackageNotFoundError:
        return "inferledger (not installed)"


def build_audit(data_dir: Path, scope: Scope, config: ReportsConfig, seed: int | None = None,
                now: datetime | None = None, export_to: tuple[Path, Path] | None = None) -> AuditReport:
    """The report's content; with ``export_to`` = (parquet, csv) the decision population is written there."""
    seed = config.audit_seed if seed is None else seed
    with Warehouse(data_dir) as warehouse:
        population = read_population(warehouse, scope, seed, config.audit_sample_size, export_to)
        report = AuditReport(
            scope=scope, generated_at=now or datetime.now(UTC), tool_version=tool_version(), seed=seed,
            sample_size=config.audit_sample_size, totals=_totals(warehouse, scope),
            inventory=_inventory(warehouse, scope, config.models), outcomes=_outcomes(warehouse, scope),
            by_version=_pivot(warehouse, scope, ["model", "model_version"]),
            by_day=_pivot(warehouse, scope, ["hour::DATE AS day"]),
            **_completeness(warehouse, scope), sample=population.sample, events=read_events(warehouse, scope),
            population_rows=population.rows, reviews=_reviews(warehouse, scope),
        )
        report.queries = warehouse.queries
    return report


REVIEWS_SQL = """
WITH reviews AS (
    SELECT trace_id, span_id, reviewed_span_id, review_override, review_duration_s, cost_usd, date
    FROM inferences_all
    WHERE date BETWEEN ? AND ? AND start_time >= ? AND start_time < ? AND review_outcome IS NOT NULL {system}
    QUALIFY row_number() OVER (PARTITION BY trace_id, span_id ORDER BY ingest_time) = 1),
decisions AS (  -- the decision a review concerns: its span link, else the decision in the same trace
    SELECT trace_id, span_id, coalesce(response_model, request_model) AS model, model_version
    FROM inferences_all
    WHERE date BETWEEN ?::DATE - 31 AND ? AND decision_label IS NOT NULL AND review_outcome IS NULL
      AND (trace_id IN (SELECT trace_id FROM reviews) OR span_id IN (SELECT reviewed_span_id FROM reviews))
    QUALIFY row_number() OVER (PARTITION BY trace_id, span_id ORDER BY ingest_time) = 1),
linked AS (
    SELECT r.*, d.model, d.model_version FROM reviews r
    LEFT JOIN decisions d ON d.span_id = r.reviewed_span_id OR d.trace_id = r.trace_id
    QUALIFY row_number() OVER (PARTITION BY r.trace_id, r.span_id
                               ORDER BY (d.span_id = r.reviewed_span_id) DESC NULLS LAST, d.span_id) = 1)
SELECT l.model, l.model_version, count(*) AS reviews, count(*) FILTER (WHERE l.review_override) AS overrides,
       count(*) FILTER (WHERE l.review_override) / count(*) AS override_rate,
       sum(l.review_duration_s) / 3600 AS review_hours,
       sum(coalesce(c.c.cost_usd, l.cost_usd)) AS review_cost_usd
FROM linked l LEFT JOIN latest_costs c ON c.date = l.date AND c.trace_id = l.trace_id AND c.span_id = l.span_id
GROUP BY ALL ORDER BY l.model NULLS LAST, l.model_version NULLS LAST
"""


def _reviews(warehouse: Warehouse, scope: Scope) -> list[dict]:
    """Human reviews in the period by the model version of the decision they review, with overrides.

    Read from ``inferences_all`` (copies of a span are identical, so deduplicating the
    few review rows after filtering is exact) to avoid deduplicating the whole period.
    """
    system = "AND service_name = ?" if scope.system else ""
    params = [scope.date_from, scope.date_to, scope.start, scope.end] + ([scope.system] if scope.system else [])
    return warehouse.rows("human reviews and overrides by model version", REVIEWS_SQL.format(system=system),
                          params + [scope.date_from, scope.date_to])


def _scoped(scope: Scope) -> tuple[str, list]:
    return ("WHERE service_name = ?", [scope.system]) if scope.system else ("", [])


def _totals(warehouse: Warehouse, scope: Scope) -> dict:
    where, params = _scoped(scope)
    return warehouse.one("totals in scope", f"""
        SELECT coalesce(sum(records), 0)::BIGINT AS records,
               coalesce(sum(records) FILTER (WHERE decision_label IS NOT NULL), 0)::BIGINT AS decisions,
               count(DISTINCT service_name) AS systems, count(DISTINCT (model, model_version)) AS model_versions,
               min(first_seen) AS first_seen, max(last_seen) AS last_seen, sum(cost_usd) AS cost_usd
        FROM audit_hours {where}""", params)


def _inventory(warehouse: Warehouse, scope: Scope, entries: list[ModelInventoryEntry]) -> list[dict]:
    where, params = _scoped(scope)
    rows = warehouse.rows("model inventory: every model and version used", f"""
        SELECT model, model_version, string_agg(DISTINCT provider, ', ' ORDER BY provider) AS providers,
               string_agg(DISTINCT service_name, ', ' ORDER BY service_name) AS systems,
               min(first_seen) AS first_seen, max(last_seen) AS last_seen, sum(records)::BIGINT AS records,
               coalesce(sum(records) FILTER (WHERE decision_label IS NOT NULL), 0)::BIGINT AS decisions
        FROM audit_hours {where}
        GROUP BY model, model_version ORDER BY model NULLS LAST, model_version NULLS LAST""", params)
    for row in rows:
        entry = match_inventory(entries, row["model"], row["model_version"])
        row["owner"] = entry.owner if entry else None
        row["purpose"] = entry.purpose if entry else None
    return rows


def match_inventory(entries: list[ModelInventoryEntry], model: str | None, model_version: str | None):
    """The first configured entry whose model and version globs match (case-sensitive), else None."""
    for entry in entries:
        if fnmatch.fnmatchcase(model or "", entry.model) and fnmatch.fnmatchcase(model_version or "", entry.version):
            return entry
    return None


def _outcomes(warehouse: Warehouse, scope: Scope) -> list[dict]:
    where, params = _scoped(scope)
    condition = f"{where} AND decision_label IS NOT NULL" if where else "WHERE decision_label IS NOT NULL"
    return warehouse.rows("decisions by outcome", f"""
        SELECT decision_label AS outcome, sum(records)::BIGINT AS decisions,
               sum(records) / sum(sum(records)) OVER () AS share
        FROM audit_hours {condition}
        GROUP BY decision_label ORDER BY decisions DESC, outcome""", params)


def _pivot(warehouse: Warehouse, scope: Scope, keys: list[str]) -> Pivot:
    where, params = _scoped(scope)
    condition = f"{where} AND decision_label IS NOT NULL" if where else "WHERE decision_label IS NOT NULL"
    key_list = ", ".join(keys)
    names = [key.split(" AS ")[-1] for key in keys]
    rows = warehouse.rows(f"decisions by {' and '.join(names)} and outcome", f"""
        SELECT {key_list}, decision_label AS outcome, sum(records)::BIGINT AS decisions
        FROM audit_hours {condition}
        GROUP BY ALL ORDER BY ALL""", params)
    labels = sorted({row["outcome"] for row in rows})
    grouped: dict[tuple, dict] = {}
    for row in rows:
        key = tuple(row[name] for name in names)
        counts = grouped.setdefault(key, {label: 0 for label in labels})
        counts[row["outcome"]] += row["decisions"]
    return Pivot(names, labels, [{"key": list(key), "counts": [counts[label] for label in labels],
                                  "total": sum(counts.values())} for key, counts in grouped.items()])


def _completeness(warehouse: Warehouse, scope: Scope) -> dict:
    in_view = {row["day"]: row["records"] for row in warehouse.rows(
        "records per day in the inferences view (all systems), to reconcile with the manifest", """
        SELECT hour::DATE AS day, sum(records)::BIGINT AS records FROM audit_hours GROUP BY 1 ORDER BY 1""")}
    facts = read_manifest_facts(warehouse.data_dir)
    chain = check_chain(warehouse.data_dir, scope.date_from, scope.date_to)
    where, params = _scoped(scope)
    hours = {row["hour"] for row in warehouse.rows(
        "hours with at least one record in scope (gaps in time)",
        f"SELECT DISTINCT hour FROM audit_hours {where} ORDER BY hour", params)}
    days = {hour.date() for hour in hours}
    gaps = [r for r in empty_ranges(hours, scope.start, scope.end, timedelta(hours=1))]
    return {
        "reconciliation": reconcile(scope.days, facts, in_view),
        "empty_days": [day for day in scope.days if day not in days],
        "empty_hours": [_hour_range(first, end) for first, end in gaps[:MAX_GAP_RANGES]],
        "empty_hours_total": sum(int((end - first).total_seconds() // 3600) for first, end in gaps),
        "sequence": sequence_findings(facts, scope.days, chain.problems),
        "quarantined": [q for q in facts.quarantined if q["day"] in set(scope.days)],
        "chain": chain,
    }


def _hour_range(first: datetime, end: datetime) -> str:
    hours = int((end - first).total_seconds() // 3600)
    last = end - timedelta(hours=1)
    span = f"{first:%Y-%m-%d %H:00}" if hours == 1 else f"{first:%Y-%m-%d %H:00} to {last:%Y-%m-%d %H:59}"
    return f"{span} ({hours} h)"
