"""`inferledger report`: the weekly cost-variance email and the compliance audit report, by hand."""
from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape

report_app = typer.Typer(
    help="Reports people read: the weekly cost-variance email and the compliance audit report.\n\n"
    "`inferledger serve` sends the weekly email on reports.weekly_schedule; these commands build either report now.",
    no_args_is_help=True,
)
console = Console(stderr=True)


def _fail(message: str, code: int = 2) -> typer.Exit:
    console.print(f"[red]error:[/red] {escape(message)}")
    return typer.Exit(code)


@report_app.command("weekly")
def weekly(
    week: Optional[str] = typer.Option(
        None, "--week", help="ISO week, e.g. 2026-W47 (UTC). Default: the last complete week."),
    out: Optional[Path] = typer.Option(
        None, "--out", help="Write the email as an .eml file (a FILE.eml, or a directory for weekly-<week>.eml)."),
    send: bool = typer.Option(
        False, "--send", help="Send it over SMTP ([smtp]) to reports.recipients (else smtp.recipients)."),
    config_path: Optional[Path] = typer.Option(None, "--config", "-c", help="TOML configuration file."),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", "-d", help="Data directory (overrides the configuration)."),
) -> None:
    """Build the weekly cost-variance email; print its text, write it to --out, and/or --send it.

    Example: inferledger report weekly --week 2026-W47 --out weekly.eml
    """
    from inferledger.cli import _load
    from reports.render import ReportTemplateError
    from reports.weekly import IsoWeek, build_weekly
    from reports.weekly_email import build_message, recipients_for, render_text, write_message

    config = _load(config_path, data_dir=data_dir)
    now = datetime.now(UTC)
    try:
        chosen = IsoWeek.parse(week) if week else IsoWeek.last_complete(now)
    except ValueError as exc:
        raise _fail(str(exc)) from None
    recipients = recipients_for(config.reports, config.smtp)
    if send and not config.smtp.configured:
        raise _fail("--send needs [smtp] (host or mailbox_dir) in the configuration")
    if send and not recipients:
        raise _fail("--send needs recipients: set reports.recipients or smtp.recipients")
    try:
        report = build_weekly(Path(config.data_dir), config.reports, list(config.budgets), chosen, now)
        message = build_message(report, config.reports, recipients or None)
    except ReportTemplateError as exc:
        raise _fail(str(exc), 1) from None
    if out is None and not send:
        typer.echo(render_text(report, config.reports), nl=False)
    if out is not None:
        console.print(f"wrote {write_message(message, out, chosen)}")
    if send:
        _deliver(config.smtp, message, recipients)


def _deliver(smtp, message, recipients: list[str]) -> None:
    from alerts.email import send_message
    from alerts.errors import PermanentDeliveryError, RetryableDeliveryError

    try:
        send_message(smtp, message)
    except (PermanentDeliveryError, RetryableDeliveryError) as exc:
        raise _fail(f"could not send: {exc}", 1) from None
    where = f"into {smtp.mailbox_dir}" if smtp.mailbox_dir else f"via {smtp.host}"
    console.print(escape(f"sent \"{message['Subject']}\" to {', '.join(recipients)} {where}"))


@report_app.command("audit")
def audit(
    date_from: str = typer.Option(..., "--from", help="First day of the period (YYYY-MM-DD, UTC, inclusive)."),
    date_to: str = typer.Option(..., "--to", help="Last day of the period (YYYY-MM-DD, UTC, inclusive)."),
    out: Path = typer.Option(
        ..., "--out", help="Directory for report.html, report.pdf, decisions.parquet/.csv, evidence.json."),
    system: Optional[str] = typer.Option(None, "--system", help="Only this system (service name); default all."),
    seed: Optional[int] = typer.Option(None, "--seed", min=0, help="Seed of the random sample (default reports.audit_seed)."),
    config_path: Optional[Path] = typer.Option(None, "--config", "-c", help="TOML configuration file."),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", "-d", help="Data directory (overrides the configuration)."),
) -> None:
    """Write the compliance audit report (HTML, PDF), the decision population (Parquet, CSV) and its evidence.

    Example: inferledger report audit --from 2026-11-01 --to 2026-11-30 --system fraud-screening --out audit-2026-11
    """
    from inferledger.cli import _load
    from reports.audit_files import write_audit
    from reports.decisions import Scope
    from reports.render import ReportTemplateError

    config = _load(config_path, data_dir=data_dir)
    try:
        scope = Scope(_day(date_from, "--from"), _day(date_to, "--to"), system)
    except ValueError as exc:
        raise _fail(str(exc)) from None
    if out.exists() and not out.is_dir():
        raise _fail(f"--out {out} exists and is not a directory")
    try:
        report = write_audit(Path(config.data_dir), scope, config.reports, out, seed)
    except ReportTemplateError as exc:
        raise _fail(str(exc), 1) from None
    chain = "intact" if report.chain.intact else f"{len(report.chain.problems)} problem(s)"
    console.print(f"wrote {out}/: {report.totals.get('records', 0):,} records, {report.population_rows:,} decisions "
                  f"exported, sample of {len(report.sample)} (seed {report.seed}), hash chain {chain}, "
                  f"{'reconciled' if report.reconciled else 'NOT reconciled'}")


def _day(text: str, option: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{option} {text!r} is not a date: use YYYY-MM-DD") from None
