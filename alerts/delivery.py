"""Delivery: drain the outbox into the channels, retrying with backoff, recording every attempt.

A fresh message gets ``delivery.attempts`` tries with exponential backoff
(``backoff_initial_s``, doubling, at most ``backoff_max_s``). When they all fail with
a retryable error the message stays in the outbox and gets one more try per later
run until ``redeliver_hours`` have passed; then it is dropped. A permanent error
(login refused, HTTP 4xx, unknown channel, template error) is not retried. Once a
channel has used up its retries in a run, its other messages wait for the next run
(``deferred``) instead of each sleeping through the backoff again.

Every attempt is a row of ``alert_deliveries`` (outcome ``ok``, ``retry``, ``failed``,
``deferred`` or ``dropped``). Nothing here raises: the scheduler must keep going.
"""
from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Callable

from alerts.config import EMAIL_CHANNEL
from alerts.email import build_alert_email, send_message
from alerts.errors import DeliveryError, PermanentDeliveryError
from alerts.notification import Notification
from alerts.outbox import Entry, pending, record_attempts, remove
from alerts.rules import AlertSettings
from alerts.state import DELIVERIES_SCHEMA, DELIVERIES_TABLE, append_log
from alerts.webhook import post_notification, target

log = logging.getLogger(__name__)
Send = Callable[[Notification], None]


@dataclass
class DeliveryReport:
    sent: int = 0
    failed: int = 0  # permanent errors
    queued: int = 0  # still in the outbox, tried again on a later run
    dropped: int = 0  # gave up after redeliver_hours
    rows: list[dict] = field(default_factory=list)


def deliver(data_dir: Path, settings: AlertSettings, now: datetime) -> DeliveryReport:
    """Deliver everything in the outbox; record each attempt in ``alert_deliveries``."""
    run = _Run(data_dir, settings, now)
    redeliver = timedelta(hours=settings.alerts.delivery.redeliver_hours)
    for entry in pending(data_dir):
        if entry.attempts and now - entry.enqueued_at > redeliver:
            run.finish(entry, "dropped", f"undelivered for more than {redeliver}")
        elif entry.channel in run.down:
            run.report.queued += 1
            run.record(entry, "deferred", "channel failed earlier in this run")
        else:
            run.try_entry(entry)
    try:
        append_log(data_dir, DELIVERIES_TABLE, DELIVERIES_SCHEMA, run.report.rows, now)
    except Exception:  # recording must not stop the scheduler either
        log.exception("could not record %d delivery attempts", len(run.report.rows))
    return run.report


class _Run:
    """One pass over the outbox: its report, the channels found down, and a clock for the attempts."""

    COUNTERS = {"ok": "sent", "failed": "failed", "dropped": "dropped"}

    def __init__(self, data_dir: Path, settings: AlertSettings, now: datetime):
        self.data_dir, self.settings, self.now = data_dir, settings, now
        self.report, self.down, self.started = DeliveryReport(), set(), time.monotonic()

    def clock(self) -> datetime:
        """Evaluation time plus the time spent delivering, so attempts line up with the events."""
        return self.now + timedelta(seconds=time.monotonic() - self.started)

    def try_entry(self, entry: Entry) -> None:
        policy = self.settings.alerts.delivery
        tries = policy.attempts if entry.attempts == 0 else 1
        delay, last_attempt = policy.backoff_initial_s, entry.attempts + tries
        for attempt in range(entry.attempts + 1, last_attempt + 1):
            moment, began = self.clock(), time.monotonic()
            error = _attempt(self.settings, entry)
            elapsed_ms = (time.monotonic() - began) * 1000
            if error is None or not error.retryable:
                self.finish(entry, "ok" if error is None else "failed", error and str(error), moment, attempt, elapsed_ms)
                return
            self.record(entry, "failed" if attempt == last_attempt else "retry", str(error), moment, attempt, elapsed_ms)
            if attempt < last_attempt:
                time.sleep(min(delay, policy.backoff_max_s))
                delay *= 2
        self.down.add(entry.channel)
        self.report.queued += 1
        record_attempts(self.data_dir, entry, last_attempt)

    def finish(self, entry: Entry, outcome: str, error: str | None, moment: datetime | None = None,
               attempt: int = 0, elapsed_ms: float = 0.0) -> None:
        counter = self.COUNTERS[outcome]
        setattr(self.report, counter, getattr(self.report, counter) + 1)
        self.record(entry, outcome, error, moment, attempt, elapsed_ms)
        remove(entry)

    def record(self, entry: Entry, outcome: str, error: str | None, moment: datetime | None = None,
               attempt: int = 0, elapsed_ms: float = 0.0) -> None:
        n = entry.notification
        self.report.rows.append({
            "attempted_at": moment or self.clock(), "notification_id": n.notification_id, "alert_id": n.alert_id,
            "rule": n.rule, "kind": n.kind, "channel": entry.channel,
            "target": channel_target(self.settings, entry.channel), "attempt": attempt, "outcome": outcome,
            "error": error, "duration_ms": round(elapsed_ms, 1)})


def _attempt(settings: AlertSettings, entry: Entry) -> DeliveryError | None:
    try:
        _sender(settings, entry.channel)(entry.notification)
        return None
    except DeliveryError as exc:
        return exc
    except Exception as exc:  # a bug in a channel is a failed delivery, not a crashed scheduler
        log.exception("delivery to %s crashed", entry.channel)
        return PermanentDeliveryError(f"{type(exc).__name__}: {exc}")


def _sender(settings: AlertSettings, channel: str) -> Send:
    templates_dir = settings.alerts.templates_dir
    if channel == EMAIL_CHANNEL:
        smtp = settings.smtp
        if not smtp.configured:
            raise PermanentDeliveryError("channel email: [smtp] has neither host nor mailbox_dir")
        return lambda n: send_message(smtp, build_alert_email(n, smtp, templates_dir))
    hook = next((hook for hook in settings.webhooks if hook.name == channel), None)
    if hook is None:
        raise PermanentDeliveryError(f"unknown channel {channel!r}: no [[webhooks]] entry has that name")
    return lambda n: post_notification(hook, n, templates_dir)


def channel_target(settings: AlertSettings, channel: str) -> str:
    """Where a channel sends to, without secrets: recipients, or the webhook's scheme://host:port."""
    if channel == EMAIL_CHANNEL:
        smtp = settings.smtp
        where = f"mailbox {smtp.mailbox_dir}" if smtp.mailbox_dir else f"{smtp.host}:{smtp.effective_port}"
        return f"{', '.join(smtp.recipients)} via {where}"
    hook = next((hook for hook in settings.webhooks if hook.name == channel), None)
    return target(hook) if hook else "(unknown channel)"


def send_test(settings: AlertSettings, channel: str, now: datetime) -> None:
    """Send one test notification to ``channel`` (one attempt); raises ``DeliveryError`` with the reason."""
    base = (settings.alerts.dashboard_url or "").rstrip("/")
    notification = Notification(
        notification_id=uuid.uuid4().hex[:16], kind="test", alert_id="test", rule="test", severity="info",
        description="A test notification from `inferledger alerts test`: this channel works.",
        metric="(none)", metric_description="", unit="statistic", labels={}, value=None, condition="(none)",
        threshold=None, verdict=None, reason="sent by inferledger alerts test", job=None, at=now, since=now,
        window_start=None, window_end=None, channels=[channel],
        dashboard_page=f"{base}/dashboard/alerts" if base else None, thread=f"test.{uuid.uuid4().hex[:8]}")
    _sender(settings, channel)(notification)
