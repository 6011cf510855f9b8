"""The ``inferledger`` command line.

Every command reads the same configuration (``--config FILE``, else
``$INFERLEDGER_CONFIG``, else ``./inferledger.toml`` if present) and accepts
``--data-dir`` to point at a data directory directly.
"""
from __future__ import annotations

import csv
import io
import json
import sys
from datetime import date, datetime
from decimal import Decimal
from enum import Enum
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from inferledger.cli_alerts import alerts_app
from inferledger.cli_jobs import jobs_app
from inferledger.cli_keys import keys_app
from inferledger.cli_report import report_app
from inferledger.config import ConfigError, load_config

app = typer.Typer(
    help="inferledger: cost observability and audit logging for AI inference.\n\n"
    "Send OpenTelemetry spans to `inferledger serve`, then ask questions with `inferledger query`.",
    no_args_is_help=True,
    add_completion=False,
)
console = Console(stderr=True)

ConfigOption = typer.Option(None, "--config", "-c", help="TOML configuration file.", exists=False)
DataDirOption = typer.Option(None, "--data-dir", "-d", help="Data directory (overrides the configuration).")


class OutputFormat(str, Enum):
    table = "table"
    csv = "csv"
    json = "json"


def _load(config_path: Optional[Path], **overrides):
    try:
        return load_config(config_path, **overrides)
    except ConfigError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None


@app.command()
def serve(
    config_path: Optional[Path] = ConfigOption,
    data_dir: Optional[Path] = DataDirOption,
    host: Optional[str] = typer.Option(None, "--host", help="Address to bind (default 127.0.0.1)."),
    http_port: Optional[int] = typer.Option(None, "--http-port", help="OTLP/HTTP port (default 4318)."),
    grpc_port: Optional[int] = typer.Option(None, "--grpc-port", help="OTLP/gRPC port (default 4317)."),
    log_level: str = typer.Option("warning", "--log-level", help="uvicorn log level."),
) -> None:
    """Receive OTLP traces over HTTP and gRPC and land them in the warehouse.

    Point an OpenTelemetry SDK at it with
    OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318 (or gRPC on 4317).
    """
    from inferledger.app import StartupError, build_pipeline, serve_http, start, stop
    from inferledger.memory import freeze_startup_objects
    from inferledger.auth import startup_notice

    config = _load(config_path, data_dir=data_dir, server__host=host,
                   server__http_port=http_port, server__grpc_port=grpc_port)
    try:
        pipeline = build_pipeline(config)
        start(pipeline)
    except StartupError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None
    server = config.server
    console.print(f"inferledger {pipeline.app.version} — data in {Path(config.data_dir).resolve()}")
    console.print(f"  OTLP/HTTP  http://{server.host}:{pipeline.http_port}/v1/traces")
    if pipeline.grpc_port:
        console.print(f"  OTLP/gRPC  {server.host}:{pipeline.grpc_port}")
    console.print(f"  metrics    http://{server.host}:{pipeline.http_port}/metrics")
    console.print(f"  audit API  http://{server.host}:{pipeline.http_port}/api/v1 (OpenAPI at /docs)")
    console.print(startup_notice(pipeline.api.gate, server.host))
    if pipeline.signing_key is None:
        console.print("  chain heads are not signed: set [audit] signing_key_file (see `inferledger heads keygen`)")
    freeze_startup_objects()
    try:
        serve_http(pipeline, log_level=log_level)
    finally:
        console.print("stopping: landing buffered spans…")
        stop(pipeline)


@app.command()
def query(
    sql: str = typer.Argument(..., help="SQL over the views: inferences, http_attempts, ..."),
    config_path: Optional[Path] = ConfigOption,
    data_dir: Optional[Path] = DataDirOption,
    output: OutputFormat = typer.Option(OutputFormat.table, "--format", "-f", help="table, csv or json."),
) -> None:
    """Run SQL over the warehouse; works while the server is running.

    Example: inferledger query "select provider, response_model, input_tokens,
    output_tokens from inferences order by start_time desc limit 10"
    """
    from warehouse.catalog import query as run_query

    config = _load(config_path, data_dir=data_dir)
    try:
        table = run_query(Path(config.data_dir), sql)
    except Exception as exc:  # DuckDB reports parse/binder errors with a readable message
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None
    rows = table.to_pylist()
    if output is OutputFormat.json:
        sys.stdout.write(json.dumps(rows, default=_json_default, indent=2) + "\n")
    elif output is OutputFormat.csv:
        sys.stdout.write(_to_csv(table.column_names, rows))
    else:
        Console().print(_to_rich_table(table.column_names, rows))


@app.command()
def demo(
    config_path: Optional[Path] = ConfigOption,
    data_dir: Optional[Path] = DataDirOption,
    http_port: Optional[int] = typer.Option(None, "--http-port", help="OTLP/HTTP port (default 4318)."),
    grpc_port: Optional[int] = typer.Option(None, "--grpc-port", help="OTLP/gRPC port (default 4317)."),
    days: int = typer.Option(35, "--days", help="Days of traffic to generate (fast-forwarded)."),
    no_serve: bool = typer.Option(False, "--no-serve", help="Exit when the demo is done instead of serving."),
) -> None:
    """Start the pipeline on a local data directory and play five weeks of example traffic through it.

    Three example services (fraud screening, a support assistant, trading signals) send
    their spans with the real OpenTelemetry SDK; then every job runs, alerts go to a local
    mailbox directory (one .eml per message), the weekly email and an audit report are
    written, a summary with the paths is printed, and the server keeps running with the
    dashboard (or exits with --no-serve).
    """
    import time
    from datetime import datetime, timedelta, timezone

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from alerts import run_alerts
    from inferledger import demo as demo_stages
    from inferledger.app import RunningServer, StartupError
    from warehouse.catalog import query as run_query
    from warehouse.jobs.registry import all_jobs

    config = demo_stages.configure(_load(config_path, data_dir=data_dir, server__http_port=http_port,
                                         server__grpc_port=grpc_port, jobs__enabled=False))
    try:
        server = RunningServer(config).__enter__()
    except StartupError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None
    columns = (TextColumn("{task.description:<26}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    if config.alerts.dashboard_url is None:  # alert messages link to the pages of this server
        config.alerts.dashboard_url = f"{server.http_url}/dashboard"
    try:
        with Progress(*columns, console=console) as progress:
            traffic = progress.add_task("sending traffic (days)", total=days * len(demo_stages.SERVICES))
            sent = demo_stages.play_traffic(server.http_url, days=days, progress=lambda n: progress.advance(traffic, n))
            server.pipeline.storage.flush(timeout=60)
            end = datetime.now(timezone.utc)
            jobs = progress.add_task("running jobs", total=len(all_jobs()))
            runs = demo_stages.run_jobs(config, server.pipeline.book, server.pipeline.storage.manifest,
                                        end - timedelta(days=days + 1), end, lambda n: progress.advance(jobs, n))
            stage = progress.add_task("alerts and reports", total=2)
            alerts = run_alerts(server.data_dir, config)
            progress.advance(stage)
            paths = demo_stages.write_reports(config, end)
            progress.advance(stage)
        failed = [run for run in runs if run.status != "ok"]
        for run in failed:
            console.print(f"[red]job {run.job} failed:[/red] {(run.error or '').splitlines()[0]}")
        summary = run_query(server.data_dir, DEMO_SUMMARY_SQL)
        console.print(f"sent {sent:,} requests; the warehouse now holds:")
        Console().print(_to_rich_table(summary.column_names, summary.to_pylist()))
        mails = sorted(Path(config.smtp.mailbox_dir).glob("*.eml")) if config.smtp.mailbox_dir else []
        console.print(f"alerts: {len(mails)} message(s) in {config.smtp.mailbox_dir} (alerts and the weekly email)"
                      + (f"; {alerts.error}" if alerts.error else ""))
        for name, path in {"data directory": server.data_dir, **paths}.items():
            console.print(f"  {name:<20} {path}")
        console.print(f"  {'dashboard':<20} {server.http_url}/dashboard")
        console.print(f'try: inferledger query --data-dir {server.data_dir} "select * from budget_variance limit 5"')
        if not no_serve:
            console.print(f"serving on {server.http_url} (OTLP/HTTP, dashboard, API) and {server.grpc_target} "
                          "(gRPC); Ctrl-C stops")
            try:
                while True:
                    time.sleep(3600)
            except KeyboardInterrupt:
                pass
        if failed:
            raise typer.Exit(1)
    finally:
        server.__exit__(None, None, None)


DEMO_SUMMARY_SQL = """
select service_name, coalesce(response_model, request_model, model_version) as model,
       count(*) as inferences, sum(input_tokens) as input_tokens, sum(output_tokens) as output_tokens,
       count(*) filter (where status = 'error') as errors, round(sum(cost_usd), 2) as cost_usd,
       count(*) filter (where cost_source = 'unpriced') as unpriced
from inferences group by all order by service_name, model
"""


prices_app = typer.Typer(help="Inspect the price book against what the warehouse has seen.", no_args_is_help=True)
app.add_typer(prices_app, name="prices")
app.add_typer(jobs_app, name="jobs")
app.add_typer(alerts_app, name="alerts")
app.add_typer(keys_app, name="keys")
app.add_typer(report_app, name="report")


@prices_app.command("check")
def prices_check(
    config_path: Optional[Path] = ConfigOption,
    data_dir: Optional[Path] = DataDirOption,
) -> None:
    """List every provider and model seen in the warehouse with the price entry it matches.

    Models that match nothing (their inferences are `unpriced`, never $0) come first.
    Exit status 1 when any model is unpriced, so CI or cron can watch for it.
    """
    from inferledger.app import StartupError, price_book
    from warehouse.catalog import connect
    from warehouse.pricing import price_coverage

    config = _load(config_path, data_dir=data_dir)
    try:
        book = price_book(config)
    except StartupError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    with connect(Path(config.data_dir)) as conn:
        rows = price_coverage(conn, book)
    table = Table("provider", "model", "requests", "price entry", "match")
    for row in rows:
        style = "red" if row.match_kind == "none" else None
        table.add_row(row.provider or "", row.model or "", f"{row.requests:,}", row.entry_id or "(unpriced)",
                      row.match_kind, style=style)
    Console().print(table)
    unpriced = [r for r in rows if r.match_kind == "none"]
    if unpriced:
        console.print(f"{len(unpriced)} model(s) have no price: add them to the price file "
                      "(pricing.price_file) or report a cost on the span.")
        raise typer.Exit(1)


@app.command()
def reprice(
    date_from: str = typer.Option(..., "--from", help="First day to reprice (YYYY-MM-DD, inclusive)."),
    date_to: str = typer.Option(..., "--to", help="Last day to reprice (YYYY-MM-DD, inclusive)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Show the before/after diff, write nothing."),
    reason: str = typer.Option("", "--reason", help="Why (kept in the repricing log that reports show)."),
    config_path: Optional[Path] = ConfigOption,
    data_dir: Optional[Path] = DataDirOption,
) -> None:
    """Recompute costs for a period with the current price book, as a new cost version.

    Raw records stay untouched; the `inferences` view shows the latest cost version and
    earlier ones stay queryable in `cost_versions`. Who, when, why and the totals are
    recorded in the `repricings` log. Prints the before/after diff by day and model.
    """
    from inferledger.app import StartupError, price_book, pricing_defaults
    from warehouse.pricing import reprice as run_reprice

    config = _load(config_path, data_dir=data_dir)
    try:
        first, last = date.fromisoformat(date_from), date.fromisoformat(date_to)
        book = price_book(config)
    except (ValueError, StartupError) as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    if last < first:
        console.print("[red]error:[/red] --to is before --from")
        raise typer.Exit(2)
    try:
        result = run_reprice(Path(config.data_dir), book, first, last, dry_run=dry_run, reason=reason,
                             defaults=pricing_defaults(config))
    except RuntimeError as exc:  # e.g. the manifest is held by a running server
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None
    diff = result.diff.to_pylist()
    Console().print(_to_rich_table(result.diff.column_names, diff))
    verb = "would change" if dry_run else f"changed (cost version {result.cost_version})"
    console.print(f"{result.records:,} records, {result.changed:,} {verb}; total "
                  f"${result.total_before_usd:,.4f} -> ${result.total_after_usd:,.4f}; unpriced "
                  f"{result.unpriced_before:,} -> {result.unpriced_after:,}")


def _json_default(value):
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, bytes):
        return value.hex()
    return str(value)


def _to_csv(columns: list[str], rows: list[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_csv_value(row[c]) for c in columns])
    return buffer.getvalue()


def _csv_value(value):
    if value is None:
        return ""
    if isinstance(value, (list, dict)):
        return json.dumps(value, default=_json_default)
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    return value


def _to_rich_table(columns: list[str], rows: list[dict]) -> Table:
    table = Table(*columns, show_lines=False)
    for row in rows:
        table.add_row(*("" if row[c] is None else str(row[c]) for c in columns))
    table.caption = f"{len(rows)} row(s)"
    return table


from inferledger.cli_audit import erase, heads_app, verify  # noqa: E402  (audit commands, own module)

app.command()(verify)
app.command()(erase)
app.add_typer(heads_app, name="heads")

if __name__ == "__main__":
    app()
