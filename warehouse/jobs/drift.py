"""Drift as a job: does each model's traffic still look like it did, and does a new version behave like the old?

Per (service, model, model version) and day window, evaluated at min(window end, now):
the ``current_days`` before that time against the ``reference_days`` before those.
Decision labels (largest share change + chi-square or two-proportion test), decision
scores (PSI over reference-quantile bins + KS), input and output tokens and latency
(PSI over half-octave bins + KS) and the error rate (two-proportion test). A version
first seen inside the current window is also compared with the version it replaced
(``drift_plan.version_candidates``). Every figure is one row of table ``drift`` and one
metric ``drift.<feature>_<test>`` (``drift.version.…`` for versions). README.md, "Drift",
has the formulas, thresholds and what is sampled.
"""
from __future__ import annotations

import dataclasses
import json
from datetime import datetime, timedelta

import numpy as np
import pyarrow as pa

from warehouse.jobs.config import DriftConfig
from warehouse.jobs.drift_plan import (Comparison, Key, Presence, WindowPlan, choose_replaced, key_order,
                                       new_versions, plan_windows, sample_thresholds, slices_for,
                                       version_candidates, window_comparisons)
from warehouse.jobs.drift_read import (BINNED, Histograms, Sample, key_hashes, read_histograms, read_presence,
                                       read_sample, read_seen_before)
from warehouse.jobs.results import with_window
from warehouse.jobs.runner import Job, JobContext, JobOutput, Metric, Window, connect
from warehouse.jobs.stats import (TestResult, align, bin_counts, insufficient, ks, label_shift, psi, quantile_edges,
                                  two_proportion)

DRIFT_TABLE = "drift"
TIMESTAMP = pa.timestamp("us", tz="UTC")
DRIFT_SCHEMA = with_window([
    ("evaluated_at", TIMESTAMP), ("comparison", pa.string()), ("service", pa.string()), ("model", pa.string()),
    ("model_version", pa.string()), ("reference_version", pa.string()), ("feature", pa.string()),
    ("test", pa.string()), ("statistic", pa.float64()), ("p_value", pa.float64()), ("effect", pa.float64()),
    ("threshold", pa.float64()), ("alpha", pa.float64()), ("n_reference", pa.int64()), ("n_current", pa.int64()),
    ("verdict", pa.string()), ("reference_start", TIMESTAMP), ("reference_end", TIMESTAMP),
    ("current_start", TIMESTAMP), ("current_end", TIMESTAMP), ("detail", pa.string()),
])


def compute_drift(context: JobContext, windows: list[Window]) -> JobOutput:
    settings = context.settings.drift
    plans = plan_windows(windows, context.now, settings)
    if not plans:
        return JobOutput()
    start, end = min(plan.earliest for plan in plans), max(plan.evaluated_at for plan in plans)
    con = connect(context)
    try:
        presence = read_presence(con, start, end)
        hashes = key_hashes(con, list(presence))
        candidates = version_candidates(_first_seen_in_window(con, plans, presence, settings, start), presence)
        comparisons = window_comparisons(plans, presence) + candidates
        slices = slices_for(plans, comparisons)
        sample = read_sample(con, slices, sample_thresholds(comparisons, presence, slices, settings.ks_sample), hashes)
        histograms = read_histograms(con, slices, hashes)
    finally:
        con.close()
    records = {c.reference: histograms.total("error", c.reference) for c in candidates}
    chosen = [c for c in comparisons if c.kind == "window"] + choose_replaced(candidates, presence, records)
    results = [(c, feature, result) for c in chosen for feature, result in evaluate(c, histograms, sample, settings)]
    return JobOutput(tables={DRIFT_TABLE: _table(results)},
                     metrics=[_metric(c, feature, result) for c, feature, result in results])


def _first_seen_in_window(con, plans: list[WindowPlan], presence: dict[Key, Presence], settings: DriftConfig,
                          start: datetime) -> list[tuple[WindowPlan, Key]]:
    """New versions: first record inside a current window and none in the lookback before the range read."""
    found = new_versions(plans, presence)
    if not found:
        return []
    lookback_start = min(plan.evaluated_at for plan in plans) - timedelta(days=settings.version_lookback_days)
    seen = read_seen_before(con, sorted({key for _, key in found}, key=key_order), lookback_start, start)
    return [(plan, key) for plan, key in found if key not in seen]


def evaluate(comparison: Comparison, histograms: Histograms, sample: Sample,
             settings: DriftConfig) -> list[tuple[str, TestResult]]:
    """Every test of one comparison, as (feature, result); features neither side has are left out."""
    reference, current = comparison.reference, comparison.current
    results = []
    labels = histograms.counts("labels", reference), histograms.counts("labels", current)
    if any(labels):
        results.append(("labels", label_shift(*labels, alpha=settings.p_value, min_samples=settings.min_samples,
                                              min_share_change=settings.min_share_change)))
    errors_r, errors_c = histograms.counts("error", reference), histograms.counts("error", current)
    results.append(("error_rate", two_proportion(
        errors_r.get(1, 0), sum(errors_r.values()), errors_c.get(1, 0), sum(errors_c.values()),
        alpha=settings.p_value, min_change=settings.min_error_rate_change, min_samples=settings.min_samples)))
    for feature in BINNED:
        counts = histograms.counts(feature, reference), histograms.counts(feature, current)
        if any(counts):
            results.append((feature, psi(*align(*counts)[1:], minor=settings.psi_minor, major=settings.psi_major,
                                         min_samples=settings.min_samples)))
            results.append((feature, _sampled(comparison, feature, "ks", sample, histograms, settings)))
    if histograms.total("scored", reference) or histograms.total("scored", current):
        results.append(("score", _sampled(comparison, "score", "psi", sample, histograms, settings)))
        results.append(("score", _sampled(comparison, "score", "ks", sample, histograms, settings)))
    return results


def _sampled(comparison: Comparison, feature: str, test: str, sample: Sample, histograms: Histograms,
             settings: DriftConfig) -> TestResult:
    """A test on the sides' hash samples; the sizes reported are the full counts, the sample sizes go in detail."""
    counted = "scored" if feature == "score" else feature
    n_reference, n_current = (histograms.total(counted, side) for side in (comparison.reference, comparison.current))
    if min(n_reference, n_current) < settings.min_samples:
        return insufficient(test, n_reference, n_current, settings.min_samples)
    reference, current = sample.values(comparison.reference, feature), sample.values(comparison.current, feature)
    if min(reference.size, current.size) < 2:
        return insufficient(test, n_reference, n_current, settings.min_samples,
                            reason=f"samples of {reference.size} and {current.size} values")
    result = SAMPLE_TESTS[test](reference, current, settings)
    detail = {**result.detail, "sample_reference": int(reference.size), "sample_current": int(current.size)}
    return dataclasses.replace(result, n_reference=n_reference, n_current=n_current, detail=detail)


def _ks(reference: np.ndarray, current: np.ndarray, settings: DriftConfig) -> TestResult:
    return ks(reference, current, alpha=settings.p_value)


def _score_psi(reference: np.ndarray, current: np.ndarray, settings: DriftConfig) -> TestResult:
    """PSI over ``bins`` quantile bins of the reference sample."""
    edges = quantile_edges(reference, settings.bins)
    result = psi(bin_counts(reference, edges), bin_counts(current, edges), minor=settings.psi_minor,
                 major=settings.psi_major)
    return dataclasses.replace(result, detail={**result.detail, "edges": [float(e) for e in edges]})


SAMPLE_TESTS = {"psi": _score_psi, "ks": _ks}


def metric_name(comparison: Comparison, feature: str, result: TestResult) -> str:
    """drift.labels, drift.error_rate, drift.<feature>_psi / _ks; drift.version.<same> for versions."""
    suffix = feature if feature in ("labels", "error_rate") else f"{feature}_{result.test}"
    return f"drift.version.{suffix}" if comparison.kind == "version" else f"drift.{suffix}"


def _metric(comparison: Comparison, feature: str, result: TestResult) -> Metric:
    service, model, version = comparison.current.key
    return Metric(comparison.window, metric_name(comparison, feature, result), result.effect,
                  {"service": service, "model": model, "model_version": version}, verdict=result.verdict,
                  threshold=result.threshold, detail={
                      "comparison": comparison.kind, "test": result.test, "statistic": result.statistic,
                      "p_value": result.p_value, "alpha": result.alpha, "n_reference": result.n_reference,
                      "n_current": result.n_current, "reference_version": comparison.reference.key[2],
                      "evaluated_at": comparison.evaluated_at.isoformat()})


def _table(results: list[tuple[Comparison, str, TestResult]]) -> pa.Table:
    rows = []
    for comparison, feature, result in results:
        reference, current = comparison.reference, comparison.current
        rows.append({
            "window_start": comparison.window[0], "window_end": comparison.window[1],
            "evaluated_at": comparison.evaluated_at, "comparison": comparison.kind, "service": current.key[0],
            "model": current.key[1], "model_version": current.key[2], "reference_version": reference.key[2],
            "feature": feature, "test": result.test, "statistic": result.statistic, "p_value": result.p_value,
            "effect": result.effect, "threshold": result.threshold, "alpha": result.alpha,
            "n_reference": result.n_reference, "n_current": result.n_current, "verdict": result.verdict,
            "reference_start": reference.start, "reference_end": reference.end, "current_start": current.start,
            "current_end": current.end, "detail": json.dumps(result.detail, sort_keys=True, default=str),
        })
    return pa.Table.from_pylist(rows, schema=DRIFT_SCHEMA)


DRIFT_JOB = Job(
    name="drift",
    description="Reference vs current window per service, model and version: decision labels, scores, "
                "tokens, latency and errors; a new model version against the one it replaced.",
    schedule="20 * * * *",
    granularity="day",
    tables={DRIFT_TABLE: DRIFT_SCHEMA},
    compute=compute_drift,
)
