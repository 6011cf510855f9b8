"""`inferledger jobs list|run`: the commands a person uses to inspect and backfill the jobs."""
from __future__ import annotations

from typer.testing import CliRunner

from inferledger.cli import app
from tests.warehouse.jobs.records import land_records, record, utc
from warehouse.catalog import query

runner = CliRunner(env={"COLUMNS": "250"})  # wide enough that table cells do not wrap


def test_backfill_a_range_then_list_shows_the_run(tmp_path):
    data_dir = tmp_path / "data"
    land_records(data_dir, [record(utc(2026, 11, 2, 10), cost_usd=0.5), record(utc(2026, 11, 3, 9), cost_usd=0.25)])
    result = runner.invoke(app, ["jobs", "run", "rollups_daily", "--from", "2026-11-02", "--to", "2026-11-03",
                                 "-d", str(data_dir)])
    assert result.exit_code == 0, result.output
    assert "rollups_daily: ok · 2 windows" in result.output  # --to as a date means the end of that day
    days = query(data_dir, "SELECT window_start::DATE AS day, sum(requests) AS n FROM rollup_daily GROUP BY 1 ORDER BY 1")
    assert [(str(r["day"]), r["n"]) for r in days.to_pylist()] == [("2026-11-02", 1), ("2026-11-03", 1)]
    listing = runner.invoke(app, ["jobs", "list", "-d", str(data_dir)])
    assert listing.exit_code == 0 and "rollups_daily" in listing.output and "ok" in listing.output


def test_bad_job_names_and_ranges_are_usage_errors(tmp_path):
    unknown = runner.invoke(app, ["jobs", "run", "rolups", "-d", str(tmp_path)])
    assert unknown.exit_code == 2 and "unknown job 'rolups'" in unknown.output
    backwards = runner.invoke(app, ["jobs", "run", "rollups", "--from", "2026-11-05", "--to", "2026-11-01",
                                    "-d", str(tmp_path)])
    assert backwards.exit_code == 2 and "--from must be before --to" in backwards.output
