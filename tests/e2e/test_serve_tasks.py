"""Periodic tasks of `inferledger serve` that run whether or not the jobs are on."""
from __future__ import annotations

import os
import time

from inferledger.app import RunningServer
from tests.conftest import make_config
from tests.warehouse.jobs.records import land_records, record, utc
from warehouse import duplicates
from warehouse.catalog import query


def test_serve_indexes_settled_days_with_the_jobs_off(tmp_path):
    data_dir = tmp_path / "data"
    resent = record(utc(2026, 11, 2, 10, 5), service_name="a")
    land_records(data_dir, [resent, record(utc(2026, 11, 2, 11), service_name="b")])
    land_records(data_dir, [{**resent, "ingest_time": utc(2026, 11, 2, 10, 6)}])  # an exporter retry
    day = data_dir / "parquet" / "inferences" / "date=2026-11-02"
    settled = utc(2026, 11, 3).timestamp()
    for path in [*day.iterdir(), day]:
        os.utime(path, (settled, settled))
    with RunningServer(make_config(data_dir)):  # make_config turns the jobs off
        deadline = time.monotonic() + 20
        while not duplicates.valid_indexes(data_dir, "inferences") and time.monotonic() < deadline:
            time.sleep(0.2)
        [index] = duplicates.valid_indexes(data_dir, "inferences")
        assert (index.dropped, len(index.dirty)) == (1, 1)
        rows = query(data_dir, "SELECT service_name, count(*) AS n FROM inferences GROUP BY 1 ORDER BY 1")
        assert rows.to_pylist() == [{"service_name": "a", "n": 1}, {"service_name": "b", "n": 1}]
