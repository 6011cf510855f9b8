"""The job runner: windows, idempotent results, run records, catch-up and failure isolation."""
from __future__ import annotations

import json
import os
import time
from datetime import timedelta
from pathlib import Path

import pyarrow as pa
import pytest

from inferledger.scheduler import JobEnvironment, run_scheduled, start_scheduler
from tests.conftest import make_config
from tests.warehouse.jobs.records import land_records, record, utc
from warehouse.catalog import query
from warehouse.jobs.results import with_window
from warehouse.jobs.runner import (Job, JobContext, JobOutput, Metric, connect, pending_windows, run_job,
                                   windows_between)

COUNTS = with_window([("service", pa.string()), ("requests", pa.int64()), ("cost_usd", pa.float64())])


def count_requests(context: JobContext, windows):
    """A real job: requests and cost per service and hour, in one query over the chunk."""
    con = connect(context)
    try:
        rows = con.sql("""
            SELECT time_bucket(INTERVAL 1 HOUR, start_time) AS window_start,
                   time_bucket(INTERVAL 1 HOUR, start_time) + INTERVAL 1 HOUR AS window_end,
                   service_name AS service, count(*) AS requests, sum(cost_usd) AS cost_usd
            FROM inferences
            WHERE date BETWEEN ?::DATE AND ?::DATE AND start_time >= ? AND start_time < ?
            GROUP BY ALL ORDER BY ALL""",
            params=[windows[0][0], windows[-1][1], windows[0][0], windows[-1][1]]).to_arrow_table()
    finally:
        con.close()
    metrics = [Metric((row["window_start"], row["window_end"]), "test.requests", row["requests"],
                      {"service": row["service"]}) for row in rows.to_pylist()]
    return JobOutput({"test_counts": rows}, metrics)


COUNT_JOB = Job("counts", "requests per service and hour", "*/5 * * * *", "hour", {"test_counts": COUNTS},
                count_requests)


def broken(context, windows):
    raise RuntimeError("the warehouse is on fire")


BROKEN_JOB = Job("broken", "always fails", "*/5 * * * *", "hour", {}, broken)


@pytest.fixture
def data_dir(tmp_path) -> Path:
    data_dir = tmp_path / "data"
    land_records(data_dir, [
        record(utc(2026, 11, 2, 10, 5), service_name="a", cost_usd=0.5),
        record(utc(2026, 11, 2, 10, 55), service_name="a", cost_usd=0.25),
        record(utc(2026, 11, 2, 11, 0), service_name="b", cost_usd=1.0),
        record(utc(2026, 11, 2, 13, 30), service_name="a", cost_usd=2.0),
    ])
    return data_dir


def test_windows_are_aligned_and_cover_the_range():
    assert windows_between("hour", utc(2026, 11, 2, 10, 30), utc(2026, 11, 2, 12)) == [
        (utc(2026, 11, 2, 10), utc(2026, 11, 2, 11)), (utc(2026, 11, 2, 11), utc(2026, 11, 2, 12))]
    # 2026-11-04 is a Wednesday; ISO weeks start on Monday 2026-11-02
    assert windows_between("week", utc(2026, 11, 4, 9), utc(2026, 11, 10)) == [
        (utc(2026, 11, 2), utc(2026, 11, 9)), (utc(2026, 11, 9), utc(2026, 11, 16))]


def test_results_land_in_views_and_a_rerun_replaces_them(data_dir):
    context = JobContext(data_dir, now=utc(2026, 11, 2, 14))
    windows = windows_between("hour", utc(2026, 11, 2, 10), utc(2026, 11, 2, 14))
    first = run_job(COUNT_JOB, context, windows)
    assert (first.status, first.windows, first.rows) == ("ok", 4, 3)
    second = run_job(COUNT_JOB, context, windows)
    assert second.status == "ok"
    rows = query(data_dir, "SELECT hour(window_start) AS h, service, requests, cost_usd FROM test_counts ORDER BY 1, 2")
    assert rows.to_pylist() == [{"h": 10, "service": "a", "requests": 2, "cost_usd": 0.75},
                                {"h": 11, "service": "b", "requests": 1, "cost_usd": 1.0},
                                {"h": 13, "service": "a", "requests": 1, "cost_usd": 2.0}]
    runs = query(data_dir, "SELECT job, status, windows, rows, trigger FROM job_runs").to_pylist()
    assert runs == [{"job": "counts", "status": "ok", "windows": 4, "rows": 3, "trigger": "schedule"}] * 2
    metrics = query(data_dir, "SELECT metric, labels, value FROM job_metrics WHERE metric = 'test.requests' "
                              "ORDER BY window_start").to_pylist()
    assert [(m["labels"], m["value"]) for m in metrics] == [
        ('{"service": "a"}', 2.0), ('{"service": "b"}', 1.0), ('{"service": "a"}', 1.0)]


def test_recomputing_one_window_leaves_the_others_alone(data_dir):
    context = JobContext(data_dir, now=utc(2026, 11, 2, 14))
    run_job(COUNT_JOB, context, windows_between("hour", utc(2026, 11, 2, 10), utc(2026, 11, 2, 14)))
    land_records(data_dir, [record(utc(2026, 11, 2, 13, 45), service_name="a", cost_usd=1.0)])  # late data
    run_job(COUNT_JOB, context, [(utc(2026, 11, 2, 13), utc(2026, 11, 2, 14))])
    rows = query(data_dir, "SELECT hour(window_start) AS h, requests, cost_usd FROM test_counts "
                           "WHERE service = 'a' ORDER BY 1").to_pylist()
    assert rows == [{"h": 10, "requests": 2, "cost_usd": 0.75}, {"h": 13, "requests": 2, "cost_usd": 3.0}]


def test_a_scheduled_run_catches_up_windows_missed_while_down(data_dir):
    config = make_config(data_dir)
    before = JobEnvironment(data_dir, config)
    run_job(COUNT_JOB, before.context(utc(2026, 11, 2, 10, 30)),
            pending_windows(COUNT_JOB, before.context(utc(2026, 11, 2, 10, 30))))
    # the server was down from 10:30 to 14:10; the next run starts at the last completed window
    windows = pending_windows(COUNT_JOB, before.context(utc(2026, 11, 2, 14, 10)))
    assert windows[0] == (utc(2026, 11, 2, 10), utc(2026, 11, 2, 11))
    assert windows[-1] == (utc(2026, 11, 2, 14), utc(2026, 11, 2, 15))
    run_job(COUNT_JOB, before.context(utc(2026, 11, 2, 14, 10)), windows)
    hours = query(data_dir, "SELECT DISTINCT hour(window_start) AS h FROM test_counts ORDER BY 1")["h"].to_pylist()
    assert hours == [10, 11, 13]


def test_catch_up_is_bounded_by_catchup_days(data_dir):
    config = make_config(data_dir, jobs__catchup_days=1)
    environment = JobEnvironment(data_dir, config)
    run_job(COUNT_JOB, environment.context(utc(2026, 11, 2, 10)), [(utc(2026, 11, 2, 9), utc(2026, 11, 2, 10))])
    windows = pending_windows(COUNT_JOB, environment.context(utc(2026, 11, 9, 10)))
    assert windows[0][0] == utc(2026, 11, 8, 10) and len(windows) == 25


def test_a_failing_job_is_recorded_and_does_not_stop_the_others(data_dir):
    config = make_config(data_dir)
    environment = JobEnvironment(data_dir, config)
    called = []

    def callback_that_breaks(record):
        called.append(record.job)
        raise ValueError("alert channel bug")

    environment.after_run.append(callback_that_breaks)
    failed = run_scheduled(BROKEN_JOB, environment)
    ok = run_scheduled(COUNT_JOB, environment)
    assert (failed.status, ok.status) == ("failed", "ok")
    assert "RuntimeError: the warehouse is on fire" in failed.error
    assert called == ["broken", "counts"]
    health = query(data_dir, "SELECT labels, value, verdict, detail FROM job_metrics WHERE metric = 'job.failed' "
                             "ORDER BY labels").to_pylist()
    assert [(h["labels"], h["value"], h["verdict"]) for h in health] == [
        ('{"job": "broken"}', 1.0, "failed"), ('{"job": "counts"}', 0.0, "ok")]
    assert json.loads(health[0]["detail"])["error"] == "RuntimeError: the warehouse is on fire"
    runs = query(data_dir, "SELECT job, status, error IS NOT NULL AS has_error FROM job_runs ORDER BY job").to_pylist()
    assert runs == [{"job": "broken", "status": "failed", "has_error": True},
                    {"job": "counts", "status": "ok", "has_error": False}]


def test_the_scheduler_runs_every_registered_job_at_start(data_dir):
    from warehouse.jobs.registry import all_jobs

    config = make_config(data_dir, jobs__enabled=True)
    scheduler = start_scheduler(JobEnvironment(data_dir, config), start_delay_s=0)
    try:
        expected = {job.name for job in all_jobs()}
        deadline = time.monotonic() + 60
        seen = set()
        while time.monotonic() < deadline and seen != expected:
            time.sleep(0.2)
            try:
                seen = set(query(data_dir, "SELECT DISTINCT job FROM job_runs")["job"].to_pylist())
            except Exception:
                seen = set()
        assert seen == expected
        statuses = query(data_dir, "SELECT job, status, error FROM job_runs WHERE status <> 'ok'").to_pylist()
        assert statuses == []
    finally:
        scheduler.shutdown(wait=True)


def test_a_bad_schedule_is_a_configuration_error(tmp_path):
    from inferledger.config import ConfigError

    with pytest.raises(ConfigError, match="schedule of job 'rollups' is not a 5-field cron"):
        make_config(tmp_path, jobs__schedules={"rollups": "every five minutes"})


def test_a_window_with_nothing_left_removes_its_rows(data_dir):
    context = JobContext(data_dir, now=utc(2026, 11, 3))
    window = [(utc(2026, 11, 2, 13), utc(2026, 11, 2, 14))]
    run_job(COUNT_JOB, context, window)
    empty = Job("counts", "same job, now finding nothing", "*/5 * * * *", "hour", {"test_counts": COUNTS},
                lambda context, windows: JobOutput())
    run_job(empty, context, window)
    assert query(data_dir, "SELECT count(*) AS n FROM test_counts")["n"][0].as_py() == 0
    assert timedelta(hours=1) == window[0][1] - window[0][0]


def test_the_server_starts_after_jobs_ran_from_the_cli(data_dir):
    """Jobs leave DuckDB spill directories behind; the lander's crash recovery must not trip over them."""
    from inferledger.app import RunningServer

    run_job(COUNT_JOB, JobContext(data_dir, now=utc(2026, 11, 3)), [(utc(2026, 11, 2), utc(2026, 11, 3))])
    assert (data_dir / "spill" / "jobs").is_dir()
    (data_dir / "tmp" / "leftover.parquet").write_bytes(b"half-written")
    with RunningServer(make_config(data_dir)):
        pass
    assert not (data_dir / "tmp" / "leftover.parquet").exists()


def test_a_run_indexes_the_settled_days_it_reads_and_counts_a_resent_span_once(data_dir, monkeypatch):
    from warehouse import duplicates

    resent = record(utc(2026, 11, 2, 10, 5), service_name="a", cost_usd=0.5)
    land_records(data_dir, [resent])
    land_records(data_dir, [{**resent, "ingest_time": utc(2026, 11, 2, 10, 6)}])  # an exporter retry
    monkeypatch.setattr(duplicates, "SETTLE_S", 0.0)
    context = JobContext(data_dir, now=utc(2026, 11, 3))
    run_job(COUNT_JOB, context, windows_between("hour", utc(2026, 11, 2, 10), utc(2026, 11, 2, 11)))
    [index] = duplicates.valid_indexes(data_dir, "inferences")
    assert (index.day.isoformat(), index.dropped, len(index.dirty)) == ("2026-11-02", 1, 1)
    rows = query(data_dir, "SELECT requests, cost_usd FROM test_counts WHERE service = 'a'").to_pylist()
    assert rows == [{"requests": 3, "cost_usd": 1.25}]


def _nice_of_threads() -> dict[int, int]:
    """Linux: thread id -> nice value, from /proc (field 19 of stat)."""
    values = {}
    for task in Path("/proc/self/task").iterdir():
        try:
            stat = (task / "stat").read_text()
        except FileNotFoundError:  # a thread that ended meanwhile
            continue
        values[int(task.name)] = int(stat[stat.rindex(")") + 2:].split()[16])
    return values


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="per-thread priorities are read from Linux /proc")
def test_jobs_run_nicer_than_the_collector_and_their_duckdb_threads_inherit_it():
    import threading

    import duckdb

    from warehouse.priority import lower_thread_priority

    base = os.getpriority(os.PRIO_PROCESS, os.getpid())
    seen = {}

    def job_thread() -> None:
        lower_thread_priority(5)
        lower_thread_priority(5)  # the executor reuses its thread: not 10 steps
        before = set(_nice_of_threads())
        con = duckdb.connect(":memory:", config={"threads": 3})
        con.sql("SELECT sum(i) FROM range(3000000) t(i)").fetchall()
        seen["own"] = _nice_of_threads()[threading.get_native_id()]
        seen["duckdb"] = [nice for tid, nice in _nice_of_threads().items() if tid not in before]
        con.close()

    worker = threading.Thread(target=job_thread)
    worker.start()
    worker.join()
    assert seen["own"] == min(19, base + 5)
    assert seen["duckdb"] and set(seen["duckdb"]) == {min(19, base + 5)}
    assert _nice_of_threads()[threading.get_native_id()] == base  # the rest of the process is untouched


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="per-thread priorities are read from Linux /proc")
def test_the_scheduler_threads_run_jobs_and_tasks_nicer(data_dir):
    import threading

    config = make_config(data_dir, jobs__enabled=False, jobs__nice=7)
    environment = JobEnvironment(data_dir, config)
    scheduler = start_scheduler(environment, start_delay_s=0)
    seen = []
    try:
        from apscheduler.triggers.date import DateTrigger

        from inferledger.scheduler import add_task

        add_task(scheduler, "probe", lambda: seen.append(_nice_of_threads()[threading.get_native_id()]),
                 DateTrigger())  # once, now
        deadline = time.monotonic() + 15
        while not seen and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        scheduler.shutdown(wait=False)
    assert seen == [min(19, os.getpriority(os.PRIO_PROCESS, os.getpid()) + 7)]
