"""The weekly report as an email, and the hook the scheduler calls to send it.

MIME structure (what mail clients expect of an HTML mail with embedded pictures):

    multipart/alternative
    ├── text/plain                 the readable text part
    └── multipart/related
        ├── text/html              refers to each chart as <img src="cid:...">
        ├── image/png              Content-ID: <cost-trend.…@inferledger>, inline
        └── image/png              Content-ID: <budget-burn.…@inferledger>, inline

Delivery goes through ``alerts.email.send_message`` with the shared ``[smtp]``
section (a mailbox directory of ``.eml`` files works the same way), so reports and
alerts share one tested SMTP client.
"""
from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path

from reports.config import ReportsConfig
from reports.render import render
from reports.weekly import IsoWeek, WeeklyReport, build_weekly


def chart_images(report: WeeklyReport, symbol: str = "$") -> dict[str, bytes]:
    """Chart name -> PNG. The burn chart only when some budget has an amount and results."""
    from reports.charts import budget_burn, cost_trend  # matplotlib on first use: the server sends weekly

    first_day = report.week.first_day - timedelta(weeks=report.trend_weeks - 1)
    charts = {"cost_trend": cost_trend(report.trend, first_day, report.week.first_day, report.week.last_day, symbol)}
    if any(r.get("amount_usd") for rows in report.jobs.burn.values() for r in rows):
        charts["budget_burn"] = budget_burn(report.jobs.burn)
    return charts


def render_text(report: WeeklyReport, config: ReportsConfig) -> str:
    return render(config, "weekly.txt.j2", report=report, hints=report.jobs.missing)


def build_message(report: WeeklyReport, config: ReportsConfig, recipients: list[str] | None = None) -> EmailMessage:
    """The multipart message; From, Date and Message-ID are filled in by the sender."""
    report.charts = chart_images(report, config.currency_symbol)
    cids = {name: make_msgid(idstring=name.replace("_", "-"), domain="inferledger")[1:-1] for name in report.charts}
    html = render(config, "weekly.html.j2", report=report, hints=report.jobs.missing,
                  cids={"cost_trend": cids.get("cost_trend"), "budget_burn": cids.get("budget_burn")})
    message = EmailMessage()
    message["Subject"] = report.subject
    if recipients:
        message["To"] = ", ".join(recipients)
    message["X-Inferledger-Report"] = f"weekly {report.week.label}"
    message.set_content(render_text(report, config))
    message.add_alternative(html, subtype="html")
    html_part = message.get_payload()[1]
    for name, png in report.charts.items():
        html_part.add_related(png, maintype="image", subtype="png", cid=f"<{cids[name]}>",
                              filename=f"{name.replace('_', '-')}.png", disposition="inline")
    return message


def write_message(message: EmailMessage, out: Path, week: IsoWeek) -> Path:
    """``out`` is a file (``.eml``) or a directory (``weekly-<week>.eml`` inside it)."""
    out = Path(out)
    if out.is_dir() or out.suffix == "":
        out.mkdir(parents=True, exist_ok=True)
        out = out / f"weekly-{week.label}.eml"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(message.as_bytes())
    return out


def recipients_for(reports: ReportsConfig, smtp) -> list[str]:
    return list(reports.recipients or smtp.recipients)


def send_weekly_report(data_dir: Path, config, now: datetime | None = None) -> dict:
    """Build and send the report of the last complete ISO week before ``now``: the scheduler's job.

    ``config`` is the application ``Config`` (``reports``, ``budgets``, ``smtp``).
    Returns what happened, for the scheduler's log: ``{"status": "sent" | "skipped",
    "week", "subject", "recipients", "reason"}``. Delivery errors
    (``alerts.errors.RetryableDeliveryError`` / ``PermanentDeliveryError``) propagate.
    """
    from alerts.email import send_message

    now = now or datetime.now(UTC)
    week = IsoWeek.last_complete(now)
    smtp = getattr(config, "smtp", None)
    recipients = recipients_for(config.reports, smtp) if smtp is not None else []
    base = {"week": week.label, "recipients": recipients}
    if smtp is None or not smtp.configured:
        return {**base, "status": "skipped", "subject": None, "reason": "[smtp] is not configured"}
    if not recipients:
        return {**base, "status": "skipped", "subject": None,
                "reason": "no recipients: set reports.recipients or smtp.recipients"}
    report = build_weekly(Path(data_dir), config.reports, list(config.budgets), week, now)
    send_message(smtp, build_message(report, config.reports, recipients))
    return {**base, "status": "sent", "subject": report.subject, "reason": None}
