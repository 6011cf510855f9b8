"""The drift job over landed records: every expected figure is worked out here from the rows written."""
from __future__ import annotations

import json
import math
from datetime import timedelta

import numpy as np
import pytest

from tests.warehouse.jobs.records import land_records, record, utc
from tests.warehouse.jobs.test_stats import psi_by_definition
from warehouse.catalog import query
from warehouse.jobs.config import DriftConfig, JobsConfig
from warehouse.jobs.drift import DRIFT_JOB
from warehouse.jobs.registry import find_job
from warehouse.jobs.runner import JobContext, run_job

WINDOW = (utc(2026, 6, 21), utc(2026, 6, 22))
NOW = utc(2026, 6, 22, 6)  # after the window: evaluated at its end, 2026-06-22 00:00
REFERENCE = (utc(2026, 6, 1), utc(2026, 6, 15))  # the 14 days before the current 7
CURRENT = (utc(2026, 6, 15), utc(2026, 6, 22))
KEY = {"service_name": "payments", "request_model": "fraud-clf", "model_version": "v1"}


def traffic(span, n, **columns):
    """``n`` records spread evenly over ``span``; a list value gives each record its own value."""
    start, end = span
    step = (end - start) / n
    rows = []
    for i in range(n):
        fields = {**KEY, **{name: value[i] if isinstance(value, list) else value for name, value in columns.items()}}
        rows.append(record(start + step * i, **fields))
    return rows


def labels(n, approve):
    """``approve`` approvals spread evenly among ``n`` decisions (any stretch of time has the same share)."""
    return ["approve" if (i + 1) * approve // n > i * approve // n else "decline" for i in range(n)]


def run_drift(data_dir, now=NOW, window=WINDOW, **settings):
    context = JobContext(data_dir, settings=JobsConfig(drift=DriftConfig(**settings)), now=now)
    outcome = run_job(DRIFT_JOB, context, [window], trigger="manual")
    assert outcome.status == "ok", outcome.error
    return query(data_dir, "SELECT * FROM drift ORDER BY comparison, model_version, feature, test").to_pylist()


def pick(rows, feature, test=None, comparison="window", version="v1"):
    found = [r for r in rows if r["feature"] == feature and (test is None or r["test"] == test)
             and r["comparison"] == comparison and r["model_version"] == version]
    assert len(found) == 1, found
    return found[0]


def metrics(data_dir, name):
    return query(data_dir, "SELECT * FROM job_metrics WHERE metric = ? ORDER BY labels", [name]).to_pylist()


def z_by_hand(x_r, n_r, x_c, n_c):
    pooled = (x_r + x_c) / (n_r + n_c)
    return (x_c / n_c - x_r / n_r) / math.sqrt(pooled * (1 - pooled) * (1 / n_r + 1 / n_c))


def test_rollout_shifting_approvals_from_50_to_60_percent_is_flagged(tmp_path):
    land_records(tmp_path, traffic(REFERENCE, 2000, decision_label=labels(2000, 1000))
                 + traffic(CURRENT, 2000, decision_label=labels(2000, 1200)))
    row = pick(run_drift(tmp_path), "labels")
    # pooled 0.55: z = 0.1 / sqrt(0.55 * 0.45 * (1/2000 + 1/2000)) = 6.3564
    assert row["test"] == "two_proportion"
    assert row["statistic"] == pytest.approx(z_by_hand(1000, 2000, 1200, 2000)) == pytest.approx(6.35642, abs=1e-4)
    assert row["p_value"] == pytest.approx(math.erfc(6.35642 / math.sqrt(2)), rel=1e-3)
    assert row["effect"] == pytest.approx(0.1) and row["threshold"] == 0.05 and row["alpha"] == 0.01
    assert (row["n_reference"], row["n_current"], row["verdict"]) == (2000, 2000, "drift")
    assert (row["reference_start"], row["reference_end"]) == REFERENCE
    assert (row["current_start"], row["current_end"], row["evaluated_at"]) == (*CURRENT, CURRENT[1])
    assert json.loads(row["detail"])["current_shares"] == {"approve": 0.6, "decline": 0.4}
    [metric] = metrics(tmp_path, "drift.labels")
    assert json.loads(metric["labels"]) == {"model": "fraud-clf", "model_version": "v1", "service": "payments"}
    assert (metric["value"], metric["verdict"], metric["threshold"]) == (pytest.approx(0.1), "drift", 0.05)
    assert (metric["window_start"], metric["window_end"]) == WINDOW


def test_rollout_without_a_shift_is_not_flagged(tmp_path):
    land_records(tmp_path, traffic(REFERENCE, 2000, decision_label=labels(2000, 1000))
                 + traffic(CURRENT, 2000, decision_label=labels(2000, 1010)))
    row = pick(run_drift(tmp_path), "labels")
    assert row["statistic"] == pytest.approx(z_by_hand(1000, 2000, 1010, 2000))  # 0.3163
    assert row["p_value"] > 0.5 and row["effect"] == pytest.approx(0.005)
    assert row["verdict"] == "none"
    assert metrics(tmp_path, "drift.labels")[0]["verdict"] == "none"


def test_three_labels_use_chi_square(tmp_path):
    reference = ["approve"] * 1000 + ["decline"] * 600 + ["review"] * 400
    current = ["approve"] * 800 + ["decline"] * 700 + ["review"] * 500
    land_records(tmp_path, traffic(REFERENCE, 2000, decision_label=reference)
                 + traffic(CURRENT, 2000, decision_label=current))
    row = pick(run_drift(tmp_path), "labels")
    observed = np.array([[1000, 600, 400], [800, 700, 500]], float)
    expected = np.outer(observed.sum(axis=1), observed.sum(axis=0)) / observed.sum()
    assert row["test"] == "chi_square"
    assert row["statistic"] == pytest.approx(float(((observed - expected) ** 2 / expected).sum()))
    assert row["effect"] == pytest.approx(0.1) and row["verdict"] == "drift"
    assert json.loads(row["detail"])["largest_change_label"] == "approve"


def test_score_distribution_shift_is_major_psi_and_ks_drift(tmp_path):
    reference = [(i + 0.5) / 2000 for i in range(2000)]  # even over (0, 1)
    current = [0.4 + 0.6 * (i + 0.5) / 2000 for i in range(2000)]  # squeezed into (0.4, 1)
    land_records(tmp_path, traffic(REFERENCE, 2000, decision_score=reference)
                 + traffic(CURRENT, 2000, decision_score=current))
    rows = run_drift(tmp_path)
    ref, cur = np.array(reference), np.array(current)
    edges = [-np.inf, *np.quantile(ref, np.arange(1, 10) / 10), np.inf]
    count = lambda values: [int(((values > lo) & (values <= hi)).sum()) for lo, hi in zip(edges, edges[1:])]
    assert count(ref) == [200] * 10
    psi_row = pick(rows, "score", "psi")
    assert psi_row["statistic"] == pytest.approx(psi_by_definition(count(ref), count(cur)))
    assert psi_row["statistic"] > 1 and psi_row["verdict"] == "major"
    assert (psi_row["n_reference"], psi_row["n_current"]) == (2000, 2000)
    points = np.union1d(ref, cur)
    d = np.max(np.abs(np.searchsorted(np.sort(ref), points, "right") / 2000
                      - np.searchsorted(np.sort(cur), points, "right") / 2000))
    assert d == pytest.approx(0.4)
    ks_row = pick(rows, "score", "ks")
    assert ks_row["statistic"] == pytest.approx(d) and ks_row["verdict"] == "drift"
    assert json.loads(ks_row["detail"])["sample_reference"] == 2000  # below ks_sample: all of it
    [metric] = metrics(tmp_path, "drift.score_psi")
    assert metric["verdict"] == "major" and metric["threshold"] == 0.1
    assert metrics(tmp_path, "drift.score_ks")[0]["value"] == pytest.approx(0.4)


def test_tokens_latency_and_errors(tmp_path):
    ref_tokens = [150] * 1000 + [700] * 1000  # half-octave bins floor(2 log2 x): 150 -> 14, 700 -> 18
    cur_tokens = [150] * 500 + [700] * 1000 + [3000] * 500  # 3000 -> 23, a bin the reference never had
    land_records(tmp_path, traffic(REFERENCE, 2000, input_tokens=ref_tokens, output_tokens=50, duration_ms=300.0,
                                   status=["error"] * 40 + ["ok"] * 1960)
                 + traffic(CURRENT, 2000, input_tokens=cur_tokens, output_tokens=50, duration_ms=300.0,
                           status=["error"] * 120 + ["ok"] * 1880))
    rows = run_drift(tmp_path)
    assert [int(np.floor(2 * np.log2(x))) for x in (150, 700, 3000)] == [14, 18, 23]
    tokens = pick(rows, "input_tokens", "psi")
    assert tokens["statistic"] == pytest.approx(psi_by_definition([1000, 1000, 0], [500, 1000, 500]))
    assert tokens["verdict"] == "major"
    assert pick(rows, "output_tokens", "psi")["statistic"] == 0
    assert pick(rows, "latency", "psi")["verdict"] == "none"
    assert pick(rows, "input_tokens", "ks")["statistic"] == pytest.approx(0.25)  # F at 150: 0.5 vs 0.25
    assert pick(rows, "latency", "ks")["statistic"] == 0
    errors = pick(rows, "error_rate")
    assert errors["statistic"] == pytest.approx(z_by_hand(40, 2000, 120, 2000))
    assert errors["effect"] == pytest.approx(0.04) and errors["verdict"] == "drift"
    assert metrics(tmp_path, "drift.input_tokens_psi")[0]["verdict"] == "major"
    assert metrics(tmp_path, "drift.error_rate")[0]["value"] == pytest.approx(0.04)
    assert not [r for r in rows if r["feature"] in ("labels", "score")]  # neither side has them


def test_insufficient_volume_gives_no_verdict(tmp_path):
    land_records(tmp_path, traffic(REFERENCE, 150, decision_label=labels(150, 75), decision_score=0.5)
                 + traffic(CURRENT, 150, decision_label=labels(150, 140), decision_score=0.9))
    rows = run_drift(tmp_path)
    assert rows and all(r["verdict"] == "insufficient" for r in rows)
    assert all(r["statistic"] is None and r["p_value"] is None and r["effect"] is None for r in rows)
    assert {(r["n_reference"], r["n_current"]) for r in rows} == {(150, 150)}
    assert {m["verdict"] for m in metrics(tmp_path, "drift.labels")} == {"insufficient"}
    assert metrics(tmp_path, "drift.labels")[0]["value"] is None


def test_new_model_version_is_compared_with_the_one_it_replaced(tmp_path):
    switch = utc(2026, 6, 19)  # v2 first seen inside the current window; evaluated 3 days later
    per_day = 150
    v0 = traffic((utc(2026, 6, 1), utc(2026, 6, 19)), 36, model_version="v0", decision_label="approve")
    v1 = traffic((utc(2026, 6, 2), switch), 17 * per_day, model_version="v1",
                 decision_label=labels(17 * per_day, 17 * per_day // 2))
    v2 = traffic((switch, utc(2026, 6, 22)), 3 * per_day, model_version="v2",
                 decision_label=labels(3 * per_day, 315))
    returning = (traffic((utc(2026, 5, 10), utc(2026, 5, 11)), 10, model_version="v9", decision_label="approve")
                 + traffic((utc(2026, 6, 20), utc(2026, 6, 21)), 10, model_version="v9", decision_label="approve"))
    land_records(tmp_path, v0 + v1 + v2 + returning)
    rows = run_drift(tmp_path, min_samples=300)
    versions = [r for r in rows if r["comparison"] == "version"]
    assert {r["model_version"] for r in versions} == {"v2"}  # v9 was seen 41 days earlier: not new
    row = pick(rows, "labels", comparison="version", version="v2")
    assert row["reference_version"] == "v1"  # v0 also served then, but v1 was first seen later
    # matched spans: v2 over [06-19, 06-22) against v1 over the 3 days before, [06-16, 06-19)
    assert (row["reference_start"], row["reference_end"]) == (utc(2026, 6, 16), switch)
    assert (row["current_start"], row["current_end"]) == (switch, utc(2026, 6, 22))
    assert (row["n_reference"], row["n_current"]) == (450, 450)
    v1_in_span = sum(1 for r in v1 if utc(2026, 6, 16) <= r["start_time"] < switch and r["decision_label"] == "approve")
    assert v1_in_span == 225
    assert row["statistic"] == pytest.approx(z_by_hand(v1_in_span, 450, 315, 450))
    assert row["verdict"] == "drift" and row["effect"] == pytest.approx(abs(315 / 450 - v1_in_span / 450))
    assert pick(rows, "labels", version="v2")["verdict"] == "insufficient"  # no reference window of its own
    [metric] = metrics(tmp_path, "drift.version.labels")
    assert json.loads(metric["labels"])["model_version"] == "v2"
    assert json.loads(metric["detail"])["reference_version"] == "v1"


def test_partial_window_is_evaluated_now_and_rerun_replaces(tmp_path):
    now = utc(2026, 6, 21, 12)
    land_records(tmp_path, traffic(REFERENCE, 1500, decision_label=labels(1500, 750))
                 + traffic((utc(2026, 6, 15), now), 1500, decision_label=labels(1500, 750)))
    rows = run_drift(tmp_path, now=now)
    row = pick(rows, "labels")
    assert row["evaluated_at"] == now
    assert (row["current_start"], row["current_end"]) == (now - timedelta(days=7), now)
    assert (row["reference_start"], row["reference_end"]) == (now - timedelta(days=21), now - timedelta(days=7))
    again = run_drift(tmp_path, now=now)
    assert len(again) == len(rows)


def test_duplicates_count_once_and_samples_are_bounded(tmp_path):
    reference = traffic(REFERENCE, 3000, decision_score=[(i % 1000) / 1000 for i in range(3000)])
    current = traffic(CURRENT, 3000, decision_score=[0.3 + (i % 1000) / 1000 for i in range(3000)])
    land_records(tmp_path, reference + current)
    land_records(tmp_path, current[:300])  # the same spans received again
    rows = run_drift(tmp_path, ks_sample=1000)
    ks_row = pick(rows, "score", "ks")
    assert (ks_row["n_reference"], ks_row["n_current"]) == (3000, 3000)
    detail = json.loads(ks_row["detail"])
    # rates come from raw counts: 1000 / 3000 and 1000 / 3300 (duplicates included), then deduplicated
    assert 850 <= detail["sample_reference"] <= 1150 and 780 <= detail["sample_current"] <= 1040
    assert ks_row["statistic"] == pytest.approx(0.3, abs=0.06) and ks_row["verdict"] == "drift"
    assert pick(rows, "error_rate")["n_current"] == 3000


def test_empty_warehouse_and_bad_settings(tmp_path):
    land_records(tmp_path, traffic((utc(2026, 1, 1), utc(2026, 1, 2)), 5))  # long before any window
    assert run_drift(tmp_path) == []
    with pytest.raises(ValueError, match="psi_major"):
        DriftConfig(psi_minor=0.3, psi_major=0.2)


def test_registered_and_scheduled():
    job = find_job("drift")
    assert job is DRIFT_JOB and job.granularity == "day" and job.schedule == "20 * * * *"
