"""One alerting pass for the scheduler: evaluate the rules, then deliver; never raises."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from alerts.delivery import deliver
from alerts.engine import evaluate_unlocked
from alerts.rules import AlertSettings
from alerts.state import EvaluationBusy, evaluation_lock

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AlertRunResult:
    at: datetime
    notifications: int = 0  # produced by this evaluation
    sent: int = 0  # deliveries that succeeded (this run's and earlier runs' queued messages)
    failed: int = 0  # deliveries that failed for good
    queued: int = 0  # still waiting in the outbox for a later run
    dropped: int = 0  # given up after alerts.delivery.redeliver_hours
    skipped: str | None = None  # why nothing ran (alerts disabled, another evaluation busy)
    error: str | None = None  # what went wrong, when evaluation itself failed

    @property
    def ok(self) -> bool:
        return self.error is None and self.failed == 0 and self.dropped == 0


def run_alerts(data_dir: Path, config: AlertSettings, now: datetime | None = None,
               lock_timeout_s: float = 120.0) -> AlertRunResult:
    """Evaluate then deliver, as one locked step per data directory. Errors end up in the result."""
    now = (now or datetime.now(UTC)).astimezone(UTC)
    if not config.alerts.enabled:
        return AlertRunResult(now, skipped="alerts.enabled is false")
    try:
        with evaluation_lock(data_dir, lock_timeout_s):
            notifications = evaluate_unlocked(data_dir, config, now)
            report = deliver(data_dir, config, now)
    except EvaluationBusy as exc:
        return AlertRunResult(now, skipped=str(exc))
    except Exception as exc:  # the scheduler must keep running; the next job run tries again
        log.exception("alert evaluation failed")
        return AlertRunResult(now, error=f"{type(exc).__name__}: {exc}")
    return AlertRunResult(now, len(notifications), report.sent, report.failed, report.queued, report.dropped)
