"""Failing channels: retried with backoff, every attempt recorded, kept for later runs, never raising."""
from __future__ import annotations

import json
import time
from datetime import timedelta

from alerts.outbox import pending
from alerts.run import run_alerts
from tests.alerts.conftest import T0, alert_config, free_port, put_metric, put_metrics, start_smtp
from warehouse.catalog import query

H = timedelta(hours=1)
RULE = {"name": "retries", "metric": "retry.inflation_cost", "threshold": {"op": ">", "value": 0.2}}


def deliveries(data_dir):
    rows = query(data_dir, "SELECT kind, channel, attempt, outcome, error, target FROM alert_deliveries "
                           "ORDER BY attempted_at, attempt").to_pylist()
    return [(r["kind"], r["channel"], r["attempt"], r["outcome"]) for r in rows], rows


def inflation(data, value=0.3, service="support"):
    put_metric(data, "retry.inflation_cost", value, {"provider": "openai", "model": "gpt-4o", "service": service},
               job="retries")


def test_http_500_is_retried_with_backoff_until_it_succeeds(tmp_path, http_receiver):
    data = tmp_path / "data"
    http_receiver.statuses = [500, 503]
    config = alert_config(data, alerts__use_default_rules=False, alerts__rules=[RULE],
                          alerts__delivery__backoff_initial_s=0.1, alerts__delivery__backoff_max_s=0.15,
                          webhooks=[{"name": "ops", "url": http_receiver.url}])
    inflation(data)
    started = time.monotonic()
    result = run_alerts(data, config, T0 + H)
    assert time.monotonic() - started >= 0.25  # waited 0.1 s, then min(0.2, 0.15) s
    assert (result.sent, result.failed, result.queued) == (1, 0, 0)
    ids = {r.headers["X-Inferledger-Delivery"] for r in http_receiver.requests}
    assert len(http_receiver.requests) == 3 and len(ids) == 1  # the same delivery id on every retry
    outcomes, rows = deliveries(data)
    assert outcomes == [("firing", "ops", 1, "retry"), ("firing", "ops", 2, "retry"), ("firing", "ops", 3, "ok")]
    assert rows[0]["error"].endswith("answered HTTP 500 Internal Server Error")
    assert rows[0]["target"] == http_receiver.url.split("/hook")[0]  # the path (a token, for Slack) is not recorded
    assert pending(data) == []


def test_a_channel_that_is_down_keeps_its_messages_for_later_runs(tmp_path):
    data = tmp_path / "data"
    port = free_port()  # nothing listens here yet
    config = alert_config(data, alerts__use_default_rules=False, alerts__rules=[RULE], alerts__delivery__attempts=3,
                          smtp__host="127.0.0.1", smtp__port=port, smtp__security="none", smtp__timeout_s=2,
                          smtp__recipients=["ops@example.com"])
    put_metrics(data, "retry.inflation_cost", [({"service": "a"}, 0.3), ({"service": "b"}, 0.4)], job="retries")

    down = run_alerts(data, config, T0 + H)
    assert (down.notifications, down.sent, down.queued, down.failed) == (2, 0, 2, 0)
    assert down.ok  # waiting in the outbox is not a failure yet
    outcomes, rows = deliveries(data)
    assert outcomes == [("firing", "email", 1, "retry"), ("firing", "email", 2, "retry"),
                        ("firing", "email", 3, "failed"), ("firing", "email", 0, "deferred")]
    assert "ConnectionRefusedError" in rows[0]["error"]
    assert rows[3]["error"] == "channel failed earlier in this run"
    assert len(pending(data)) == 2

    controller, server = start_smtp(port=port)
    try:
        back = run_alerts(data, config, T0 + 2 * H)
        assert (back.notifications, back.sent, back.queued) == (0, 2, 0)
        assert sorted(m["Subject"] for m in server.wait_for(2)) == [
            "[WARNING] FIRING retries (service=a): 30.0% > 20.0%", "[WARNING] FIRING retries (service=b): 40.0% > 20.0%"]
    finally:
        controller.stop()
    outcomes, _ = deliveries(data)
    assert outcomes[-2:] == [("firing", "email", 4, "ok"), ("firing", "email", 1, "ok")]
    assert pending(data) == []


def test_undeliverable_messages_are_dropped_after_redeliver_hours(tmp_path):
    data = tmp_path / "data"
    config = alert_config(data, alerts__use_default_rules=False, alerts__rules=[RULE], alerts__delivery__attempts=1,
                          alerts__delivery__redeliver_hours=2,
                          webhooks=[{"name": "ops", "url": f"http://127.0.0.1:{free_port()}/hook", "timeout_s": 1}])
    inflation(data)
    assert run_alerts(data, config, T0 + H).queued == 1
    assert run_alerts(data, config, T0 + 2 * H).queued == 1  # one more try per run
    dropped = run_alerts(data, config, T0 + 3.5 * H)
    assert (dropped.dropped, dropped.queued, dropped.ok) == (1, 0, False)
    outcomes, rows = deliveries(data)
    assert outcomes == [("firing", "ops", 1, "failed"), ("firing", "ops", 2, "failed"), ("firing", "ops", 0, "dropped")]
    assert rows[-1]["error"] == "undelivered for more than 2:00:00"
    assert pending(data) == []


def test_permanent_errors_are_not_retried(tmp_path, http_receiver):
    data = tmp_path / "data"
    http_receiver.statuses = [400]
    config = alert_config(data, alerts__use_default_rules=False, alerts__default_channels=["ops", "pager"],
                          alerts__rules=[RULE], webhooks=[{"name": "ops", "url": http_receiver.url}])
    inflation(data)
    result = run_alerts(data, config, T0 + H)
    assert (result.sent, result.failed, result.queued, result.ok) == (0, 2, 0, False)
    outcomes, rows = deliveries(data)
    assert outcomes == [("firing", "ops", 1, "failed"), ("firing", "pager", 1, "failed")]
    assert rows[0]["error"].endswith("answered HTTP 400 Bad Request")
    assert rows[1]["error"] == "unknown channel 'pager': no [[webhooks]] entry has that name"
    assert len(http_receiver.requests) == 1


def test_a_timeout_is_retryable(tmp_path, http_receiver):
    data = tmp_path / "data"
    http_receiver.delay_s = 0.6
    config = alert_config(data, alerts__use_default_rules=False, alerts__rules=[RULE], alerts__delivery__attempts=2,
                          webhooks=[{"name": "ops", "url": http_receiver.url, "timeout_s": 0.2}])
    inflation(data)
    result = run_alerts(data, config, T0 + H)
    assert result.queued == 1
    outcomes, rows = deliveries(data)
    assert outcomes == [("firing", "ops", 1, "retry"), ("firing", "ops", 2, "failed")]
    assert "timed out" in rows[0]["error"]


def test_run_alerts_never_raises(tmp_path):
    data = tmp_path / "data"
    config = alert_config(data, alerts__use_default_rules=False, alerts__rules=[RULE])
    inflation(data)
    broken = data / "results" / "job_metrics" / "retries" / "2026-03-03.parquet"
    broken.write_bytes(b"not parquet")
    result = run_alerts(data, config, T0 + H)
    assert result.error and "job_metrics" in result.error and not result.ok
    assert run_alerts(data, alert_config(data, alerts__enabled=False), T0 + H).skipped == "alerts.enabled is false"


def test_the_outbox_survives_as_json(tmp_path):
    data = tmp_path / "data"
    config = alert_config(data, alerts__use_default_rules=False, alerts__rules=[RULE], alerts__delivery__attempts=1,
                          webhooks=[{"name": "ops", "url": f"http://127.0.0.1:{free_port()}/hook", "timeout_s": 1}])
    inflation(data)
    run_alerts(data, config, T0 + H)
    [entry] = pending(data)
    stored = json.loads(entry.path.read_text())
    assert stored["channel"] == "ops" and stored["attempts"] == 1
    assert entry.notification.rule == "retries" and entry.notification.at == T0 + H
