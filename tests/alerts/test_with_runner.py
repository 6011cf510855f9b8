"""Alerts on what the real job runner writes: a failing job fires `job-failed`, its next success resolves it."""
from __future__ import annotations

import email
import email.policy
from datetime import UTC, datetime

import pyarrow as pa

from alerts.run import run_alerts
from tests.alerts.conftest import alert_config
from warehouse.jobs.results import with_window
from warehouse.jobs.runner import Job, JobContext, JobOutput, Metric, run_job, windows_between


def flaky_job(failures: list[str]) -> Job:
    def compute(context, windows):
        if failures:
            raise RuntimeError(failures.pop(0))
        return JobOutput(metrics=[Metric(windows[0], "retry.inflation_cost", 0.05, {"service": "support"})])
    return Job("flaky", "a job that fails first", "0 * * * *", "hour", {"flaky_out": with_window([("n", pa.int64())])},
               compute)


def test_a_failing_job_alerts_and_its_recovery_resolves(tmp_path):
    data = tmp_path / "data"
    config = alert_config(data, smtp__mailbox_dir=tmp_path / "mail", smtp__recipients=["ops@example.com"])
    job = flaky_job(["upstream table missing"])
    now = datetime.now(UTC)
    context = JobContext(data, now=now)
    windows = windows_between("hour", now, now)  # the current hour

    assert run_job(job, context, windows).status == "failed"
    fired = run_alerts(data, config, now)
    assert (fired.notifications, fired.sent) == (1, 1)
    assert run_job(job, context, windows).status == "ok"
    resolved = run_alerts(data, config, datetime.now(UTC))
    assert (resolved.notifications, resolved.sent) == (1, 1)

    first, second = [email.message_from_bytes(p.read_bytes(), policy=email.policy.default)
                     for p in sorted((tmp_path / "mail").glob("*.eml"))]
    assert first["Subject"] == "[CRITICAL] FIRING job-failed (job=flaky): 1, verdict failed"
    text = first.get_body(("plain",)).get_content()
    assert "error: RuntimeError: upstream table missing" in text
    assert second["Subject"] == "[RESOLVED] job-failed (job=flaky): 0"
