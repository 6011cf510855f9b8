"""The anomalies job: a cost spike flagged with its hand-computed range, a normal hour not, no verdict without history.

History: Oct 26 (Mon) .. Nov 25, 2026, service chat, tenant acme, model gpt-4o, one
record at 14:00 and one at 15:00 each day. Weekdays cost Mon 8, Tue 9, Wed 10,
Thu 11, Fri 12 USD per record; weekend days 3 USD. On Wed Nov 25 14:00 chat costs
50 (acme) + 5 (newco, a new tenant).
"""
from __future__ import annotations

import json
import os
import shutil
import time
from datetime import timedelta

import pytest

from tests.warehouse.jobs.records import land_records, record, utc
from warehouse.catalog import query
from warehouse.jobs.anomalies import ANOMALIES_JOB
from warehouse.jobs.baseline import comparable_starts, expected_range
from warehouse.jobs.config import AnomalyConfig, JobsConfig
from warehouse.jobs.runner import JobContext, run_job, windows_between

WEEKDAY_COST = {0: 8.0, 1: 9.0, 2: 10.0, 3: 11.0, 4: 12.0}
SPREAD = 1.4826  # 1.4826 * MAD, MAD = 1 (see test_a_spike_is_flagged_with_the_hand_computed_range)


def usual_cost(day) -> float:
    return WEEKDAY_COST.get(day.weekday(), 3.0)


@pytest.fixture
def history(tmp_path):
    data_dir = tmp_path / "data"
    records = []
    day = utc(2026, 10, 26)
    while day < utc(2026, 11, 26):
        for hour in (14, 15):
            cost = 50.0 if (day == utc(2026, 11, 25) and hour == 14) else usual_cost(day)
            records.append(record(day + timedelta(hours=hour), service_name="chat", tenant="acme",
                                  response_model="gpt-4o", cost_usd=cost))
        day += timedelta(days=1)
    records.append(record(utc(2026, 11, 25, 14, 30), service_name="chat", tenant="newco", response_model="gpt-4o",
                          cost_usd=5.0))
    records.append(record(utc(2026, 11, 25, 14, 40), service_name="chat", tenant="acme", response_model="gpt-4o"))
    land_records(data_dir, records)
    return data_dir


def run(data_dir, first, last, now, settings=None):
    context = JobContext(data_dir, settings=settings or JobsConfig(), now=now)
    result = run_job(ANOMALIES_JOB, context, windows_between("hour", first, last))
    assert result.status == "ok", result.error
    return result


def found(data_dir, where="TRUE"):
    return {(r["window_start"].hour, r["granularity"], r["key"], r["value"]): r
            for r in query(data_dir, f"SELECT * FROM anomalies WHERE {where}").to_pylist()}


def test_a_spike_is_flagged_with_the_hand_computed_range(history):
    run(history, utc(2026, 11, 25, 14), utc(2026, 11, 25, 16), now=utc(2026, 11, 25, 17))
    rows = found(history)
    spike = rows[(14, "hour", "service", "chat")]
    # Comparable hours: 14:00 on the 20 weekdays Oct 28 .. Nov 24, four each of 8, 9, 10, 11, 12.
    # median 10; |x - 10| = four 0s, eight 1s, eight 2s: MAD = 1; spread = 1.4826 * 1
    # range = 10 -/+ 4 * 1.4826 = [4.0696, 15.9304]; observed 50 + 5 = 55
    assert spike["samples"] == 20
    assert spike["expected_usd"] == pytest.approx(10.0)
    assert spike["mad_usd"] == pytest.approx(1.0)
    assert spike["low_usd"] == pytest.approx(10 - 4 * SPREAD)
    assert spike["high_usd"] == pytest.approx(10 + 4 * SPREAD)
    assert spike["observed_usd"] == pytest.approx(55.0)
    assert (spike["verdict"], spike["direction"], spike["partial"]) == ("anomaly", "high", False)
    assert rows[(14, "hour", "tenant", "acme")]["observed_usd"] == pytest.approx(50.0)
    assert rows[(14, "hour", "tenant", "acme")]["unpriced_requests"] == 1
    assert rows[(14, "hour", "total", "all")]["verdict"] == "anomaly"
    # newco has no history: no verdict
    newco = rows[(14, "hour", "tenant", "newco")]
    assert (newco["verdict"], newco["samples"], newco["expected_usd"]) == ("insufficient", 0, None)
    # 15:00 is a usual Wednesday hour (10): ok
    normal = rows[(15, "hour", "service", "chat")]
    assert (normal["observed_usd"], normal["verdict"]) == (pytest.approx(10.0), "ok")
    # the day so far at 16:00 (14:00 + 15:00): 55 + 10 = 65 against 16, 18, 20, 22, 24 (four each):
    # median 20, MAD 2, range 20 -/+ 4 * 2.9652 = [8.139, 31.861]
    day = rows[(15, "day", "service", "chat")]
    assert (day["expected_usd"], day["mad_usd"]) == (pytest.approx(20.0), pytest.approx(2.0))
    assert day["high_usd"] == pytest.approx(20 + 4 * 2 * SPREAD)
    assert (day["observed_usd"], day["verdict"]) == (pytest.approx(65.0), "anomaly")
    assert day["period_start"] == utc(2026, 11, 25)
    [metric] = query(history, """SELECT * FROM job_metrics WHERE metric = 'anomaly.cost'
                                 AND labels = '{"granularity": "hour", "key": "service", "value": "chat"}'
                                 AND window_start = TIMESTAMPTZ '2026-11-25 14:00:00+00'""").to_pylist()
    assert (metric["value"], metric["verdict"]) == (pytest.approx(55.0), "anomaly")
    detail = json.loads(metric["detail"])
    assert (detail["expected"], detail["observed"]) == (pytest.approx(10.0), pytest.approx(55.0))
    assert (detail["low"], detail["high"]) == (pytest.approx(10 - 4 * SPREAD), pytest.approx(10 + 4 * SPREAD))


def test_a_normal_day_is_not_flagged(history):
    run(history, utc(2026, 11, 24, 14), utc(2026, 11, 24, 15), now=utc(2026, 11, 26))
    rows = found(history)
    # Tue Nov 24 14:00 costs 9; comparable: 20 weekdays Oct 27 .. Nov 23, four each of 8..12: same range
    usual = rows[(14, "hour", "service", "chat")]
    assert (usual["observed_usd"], usual["expected_usd"], usual["verdict"]) == (9.0, 10.0, "ok")
    assert {r["verdict"] for r in rows.values()} == {"ok"}


def test_weekends_are_compared_with_weekends(history):
    run(history, utc(2026, 11, 22, 14), utc(2026, 11, 22, 15), now=utc(2026, 11, 26))
    # Sun Nov 22: comparable days are the 7 weekend days Oct 31 .. Nov 21 (Oct 25 is before the first record),
    # all 3: MAD 0,
    # spread = 0.05 * 3 (the floor), range 3 -/+ 4 * 0.15 = [2.4, 3.6]
    sunday = found(history)[(14, "hour", "service", "chat")]
    assert (sunday["samples"], sunday["expected_usd"], sunday["verdict"]) == (7, 3.0, "ok")
    assert (sunday["low_usd"], sunday["high_usd"]) == (pytest.approx(2.4), pytest.approx(3.6))


def test_small_keys_are_ignored_and_too_little_history_gives_no_verdict(history):
    settings = JobsConfig(anomaly=AnomalyConfig(min_cost_usd=52.0, min_history=21))
    run(history, utc(2026, 11, 25, 14), utc(2026, 11, 25, 15), now=utc(2026, 11, 25, 17), settings=settings)
    rows = found(history, "granularity = 'hour'")
    # only chat / gpt-4o / total reach 52 (55); acme (50) and newco (5) are ignored; 20 samples < 21
    assert set(rows) == {(14, "hour", "service", "chat"), (14, "hour", "model", "gpt-4o"), (14, "hour", "total", "all")}
    assert {r["verdict"] for r in rows.values()} == {"insufficient"}


def test_a_partial_hour_is_only_flagged_upwards(history):
    run(history, utc(2026, 11, 25, 15), utc(2026, 11, 25, 16), now=utc(2026, 11, 25, 15, 1))
    rows = found(history)
    # at 15:01 the hour holds its record (10) but is not over: not low, and within range: ok
    hour = rows[(15, "hour", "service", "chat")]
    assert (hour["partial"], hour["verdict"]) == (True, "ok")


def test_rerun_is_idempotent_and_history_is_reused(history):
    past = time.time() - 3600
    for folder in (history / "parquet").glob("*/date=*"):
        os.utime(folder, (past, past))
    window = (utc(2026, 11, 25, 14), utc(2026, 11, 25, 16))
    run(history, *window, now=utc(2026, 11, 25, 17))
    before = query(history, "SELECT * FROM anomalies ORDER BY ALL").to_pylist()
    cached = query(history, "SELECT count(DISTINCT window_start) AS n FROM anomaly_hourly").to_pylist()[0]["n"]
    # every hour of the baseline days (Oct 28 00:00 .. Nov 25 14:00) and of the run, empty ones included
    assert cached == 28 * 24 + 14 + 2
    # the baseline days are cached now: a run without Nov 10's records still sees them
    shutil.move(history / "parquet" / "inferences" / "date=2026-11-10", history.parent / "moved")
    run(history, *window, now=utc(2026, 11, 25, 17))
    assert query(history, "SELECT * FROM anomalies ORDER BY ALL").to_pylist() == before


def test_comparable_starts_skip_the_other_day_class():
    wednesday = utc(2026, 11, 25, 14)
    starts = comparable_starts(wednesday, 7)
    # Nov 24 (Tue), 23 (Mon), 20 (Fri), 19 (Thu), 18 (Wed); Nov 22 and 21 are weekend days
    assert starts == [utc(2026, 11, day, 14) for day in (24, 23, 20, 19, 18)]
    assert comparable_starts(utc(2026, 11, 22, 14), 7) == [utc(2026, 11, 21, 14), utc(2026, 11, 15, 14)]  # Sat, Sun
    assert expected_range([1.0, 2.0, 3.0, 4.0, 100.0], 3.0, 0.0).expected == 3.0  # an outlier barely moves it
