"""`inferledger jobs`: list the scheduled jobs and run any of them by hand or over a backfill range."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

jobs_app = typer.Typer(
    help="Scheduled analytics: rollups, budget variance, retry inflation, drift, anomalies.\n\n"
    "`inferledger serve` runs them on their schedules; `jobs run` runs one by hand or backfills a range.",
    no_args_is_help=True,
)
console = Console(stderr=True)


@jobs_app.command("list")
def list_jobs(
    config_path: Optional[Path] = typer.Option(None, "--config", "-c", help="TOML configuration file."),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", "-d", help="Data directory (overrides the configuration)."),
) -> None:
    """Show every job: its window, schedule (default or configured), last run and what it computes."""
    from inferledger.cli import _load
    from inferledger.scheduler import effective_schedule
    from warehouse.jobs.registry import all_jobs

    config = _load(config_path, data_dir=data_dir)
    last_runs = _last_runs(Path(config.data_dir))
    table = Table("job", "window", "schedule (UTC)", "last run", "status", "what it computes")
    for job in all_jobs():
        schedule = effective_schedule(job, config)
        if job.name in config.jobs.disabled:
            schedule = f"disabled ({schedule})"
        elif schedule != job.schedule:
            schedule = f"{schedule} (default {job.schedule})"
        run = last_runs.get(job.name)
        when = f"{run['started_at']:%Y-%m-%d %H:%M}" if run else "never"
        table.add_row(job.name, job.granularity, schedule, when, run["status"] if run else "", job.description)
    Console().print(table)


@jobs_app.command("run")
def run(
    name: str = typer.Argument(..., help="Job name (see `inferledger jobs list`), or `all` for every job in order."),
    date_from: Optional[datetime] = typer.Option(
        None, "--from", help="Backfill from this date or time (UTC). Without --from: the windows a scheduled run would compute."),
    date_to: Optional[datetime] = typer.Option(
        None, "--to", help="Backfill up to this date or time (UTC, exclusive; a date means the end of that day). Default: now."),
    config_path: Optional[Path] = typer.Option(None, "--config", "-c", help="TOML configuration file."),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", "-d", help="Data directory (overrides the configuration)."),
) -> None:
    """Run a job now over its pending windows, or backfill --from/--to; re-running a window replaces its results.

    Example: inferledger jobs run rollups --from 2026-11-01 --to 2026-11-07
    """
    from inferledger.cli import _load
    from warehouse.jobs.registry import all_jobs, find_job

    config = _load(config_path, data_dir=data_dir)
    try:
        jobs = all_jobs() if name == "all" else [find_job(name)]
    except KeyError as exc:
        console.print(f"[red]error:[/red] {exc.args[0]}")
        raise typer.Exit(2) from None
    start, end = _utc(date_from, is_end=False), _utc(date_to, is_end=True)
    if start is not None and end is not None and start >= end:
        console.print("[red]error:[/red] --from must be before --to")
        raise typer.Exit(2)
    failed = run_jobs(config, jobs, start, end)
    raise typer.Exit(1 if failed else 0)


def run_jobs(config, jobs, start: datetime | None, end: datetime | None, progress_console: Console | None = None) -> int:
    """Run ``jobs`` in order with a progress bar per job; returns how many failed."""
    from inferledger.app import price_book
    from inferledger.scheduler import JobEnvironment
    from warehouse.jobs.runner import pending_windows, run_job, windows_between
    from warehouse.manifest import Manifest, manifest_path

    data_dir = Path(config.data_dir)
    manifest = Manifest(manifest_path(data_dir))
    environment = JobEnvironment(data_dir, config, price_book(config), manifest)
    failed = 0
    columns = (TextColumn("{task.description:<16}"), BarColumn(), MofNCompleteColumn(), TextColumn("windows"),
               TimeElapsedColumn())
    try:
        with Progress(*columns, console=progress_console or console) as progress:
            for job in jobs:
                context = environment.context()
                if start is None:
                    windows = pending_windows(job, context)
                else:
                    windows = windows_between(job.granularity, start, end or context.now)
                task = progress.add_task(job.name, total=len(windows))
                record = run_job(job, context, windows, trigger="manual",
                                 progress=lambda done, task=task: progress.advance(task, done))
                status = "[green]ok[/green]" if record.status == "ok" else "[red]failed[/red]"
                progress.console.print(f"{job.name}: {status} · {record.windows} windows · {record.rows} rows · "
                                       f"{record.duration_s:.1f} s")
                if record.error:
                    failed += 1
                    progress.console.print(f"  [red]{record.error.splitlines()[0]}[/red]")
    finally:
        manifest.close()
    return failed


def _utc(value: datetime | None, is_end: bool) -> datetime | None:
    """A naive --from/--to is UTC; a bare date given as --to means the end of that day."""
    if value is None:
        return None
    moment = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    if is_end and moment.time() == datetime.min.time():
        moment += timedelta(days=1)
    return moment


def _last_runs(data_dir: Path) -> dict[str, dict]:
    import duckdb

    from warehouse.catalog import query

    try:
        rows = query(data_dir, "SELECT job, status, started_at FROM job_runs "
                               "QUALIFY row_number() OVER (PARTITION BY job ORDER BY started_at DESC) = 1").to_pylist()
    except duckdb.CatalogException:  # no job has run here yet: the view does not exist
        return {}
    return {row["job"]: row for row in rows}
