"""The state machine, walked through with job_metrics rows written as the runner writes them."""
from __future__ import annotations

import json
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

from alerts.engine import evaluate
from alerts.silences import add_silence
from tests.alerts.conftest import T0, alert_config, put_metric, put_metrics
from warehouse.catalog import query

H = timedelta(hours=1)
ROOT = Path(__file__).resolve().parents[2]
FORECAST_RULE = {"name": "forecast", "metric": "budget.forecast_pct", "threshold": {"op": ">", "value": 1.0},
                 "for": "1h", "severity": "critical"}


def engine_config(data, **overrides):
    """Alerts routed to a mailbox directory, so each notification has a channel."""
    return alert_config(data, smtp__mailbox_dir=data.parent / "mail", smtp__recipients=["ops@example.com"], **overrides)


def only(rules: list[dict], **overrides):
    return {"alerts__use_default_rules": False, "alerts__rules": rules, **overrides}


def events(data_dir, rule=None):
    rows = query(data_dir, "SELECT * FROM alert_events ORDER BY event_time, rule, labels").to_pylist()
    return [(r["event"], r["from_state"], r["to_state"], r["notification"]) for r in rows if rule in (None, r["rule"])]


def kinds(notifications):
    return [(n.kind, n.rule, n.labels.get("budget")) for n in notifications]


def test_pending_firing_reminder_resolved(tmp_path):
    data = tmp_path / "data"
    config = engine_config(data, **only([FORECAST_RULE]))
    put_metric(data, "budget.forecast_pct", 1.2, {"budget": "support"})

    assert evaluate(data, config, T0 + 1 * H) == []  # condition holds: pending for 1h
    assert evaluate(data, config, T0 + 1.5 * H) == []  # 30 minutes pending: not yet
    fired = evaluate(data, config, T0 + 2 * H)
    assert kinds(fired) == [("firing", "forecast", "support")]
    assert fired[0].since == T0 + 1 * H and fired[0].reason == "120.0% > 100.0%"
    assert fired[0].condition == "> 100.0%" and fired[0].threshold == 1.0 and fired[0].value == 1.2
    assert evaluate(data, config, T0 + 3 * H) == []  # still firing: nothing repeated
    assert evaluate(data, config, T0 + 5.9 * H) == []
    assert kinds(evaluate(data, config, T0 + 6 * H)) == [("reminder", "forecast", "support")]  # 240 min later
    assert evaluate(data, config, T0 + 7 * H) == []

    put_metric(data, "budget.forecast_pct", 0.9, {"budget": "support"})
    resolved = evaluate(data, config, T0 + 8 * H)
    assert kinds(resolved) == [("resolved", "forecast", "support")]
    assert resolved[0].reason == "90.0%, not > 100.0%" and resolved[0].since == T0 + 1 * H
    assert evaluate(data, config, T0 + 9 * H) == []

    assert events(data) == [("pending", "ok", "pending", "none"), ("firing", "pending", "firing", "sent"),
                            ("reminder", "firing", "firing", "sent"), ("resolved", "firing", "resolved", "sent")]
    state = query(data, "SELECT state, since, fired_at, resolved_at FROM alert_states").to_pylist()
    assert state == [{"state": "resolved", "since": T0 + 8 * H, "fired_at": T0 + 2 * H, "resolved_at": T0 + 8 * H}]


def test_condition_gone_while_pending_returns_to_ok_silently(tmp_path):
    data = tmp_path / "data"
    config = engine_config(data, **only([FORECAST_RULE]))
    put_metric(data, "budget.forecast_pct", 1.2, {"budget": "support"})
    assert evaluate(data, config, T0 + 1 * H) == []
    put_metric(data, "budget.forecast_pct", 1.0, {"budget": "support"})  # 1.0 is not > 1.0
    assert evaluate(data, config, T0 + 3 * H) == []
    assert events(data) == [("pending", "ok", "pending", "none"), ("ok", "pending", "ok", "none")]


def test_state_survives_a_restart(tmp_path):
    """A new process reads the states from the warehouse: a firing alert is not announced again."""
    data = tmp_path / "data"
    rules = [{**FORECAST_RULE, "for": "0s"}]
    config = engine_config(data, **only(rules))
    put_metric(data, "budget.forecast_pct", 1.5, {"budget": "support"})
    assert len(evaluate(data, config, T0 + H)) == 1
    script = (
        "import json, sys; from datetime import datetime; from alerts.engine import evaluate; "
        "from tests.alerts.conftest import alert_config; "
        f"c = alert_config(sys.argv[1], alerts__use_default_rules=False, alerts__rules={rules!r}); "
        "print(json.dumps([n.kind for n in evaluate(sys.argv[1], c, datetime.fromisoformat(sys.argv[2]))]))")
    def evaluate_in_a_new_process(now):
        done = subprocess.run([sys.executable, "-c", script, str(data), now.isoformat()], capture_output=True,
                              text=True, check=True, cwd=ROOT)
        return json.loads(done.stdout)

    assert evaluate_in_a_new_process(T0 + 2 * H) == []
    assert evaluate_in_a_new_process(T0 + 6 * H) == ["reminder"]


def test_silenced_transitions_are_recorded_not_sent_and_sent_after_expiry(tmp_path):
    data = tmp_path / "data"
    config = engine_config(data, **only([{**FORECAST_RULE, "for": "0s"}]))
    put_metrics(data, "budget.forecast_pct", [({"budget": "support"}, 1.2), ({"budget": "fraud"}, 1.3)])
    silence = add_silence(data, "forecast", {"budget": "supp*"}, 3 * H, "known overrun", "oncall", T0)

    assert kinds(evaluate(data, config, T0 + H)) == [("firing", "forecast", "fraud")]
    muted = query(data, "SELECT labels, notification, silence_id FROM alert_events WHERE to_state = 'firing'"
                        " ORDER BY labels").to_pylist()
    assert muted == [{"labels": '{"budget": "fraud"}', "notification": "sent", "silence_id": None},
                     {"labels": '{"budget": "support"}', "notification": "silenced", "silence_id": silence.silence_id}]
    assert evaluate(data, config, T0 + 2 * H) == []  # still silenced: nothing
    late = evaluate(data, config, T0 + 3 * H)  # the silence ended: support is announced now, once
    assert kinds(late) == [("firing", "forecast", "support")]
    assert late[0].since == T0 + H
    assert evaluate(data, config, T0 + 4 * H) == []
    assert events(data)[-1] == ("unmuted", "firing", "firing", "sent")


def test_configured_silence_mutes_the_resolution_too(tmp_path):
    data = tmp_path / "data"
    silences = [{"rule": "fore*", "until": (T0 + 10 * H).isoformat(), "comment": "budget being raised"}]
    config = engine_config(data, **only([{**FORECAST_RULE, "for": "0s"}], alerts__silences=silences))
    put_metric(data, "budget.forecast_pct", 1.2, {"budget": "support"})
    assert evaluate(data, config, T0 + H) == []
    put_metric(data, "budget.forecast_pct", 0.5, {"budget": "support"})
    assert evaluate(data, config, T0 + 2 * H) == []
    assert events(data) == [("firing", "ok", "firing", "silenced"), ("resolved", "firing", "resolved", "silenced")]
    put_metric(data, "budget.forecast_pct", 0.5, {"budget": "support"})
    assert evaluate(data, config, T0 + 11 * H) == []  # expired, but it resolved while silenced: nothing to tell


def test_warning_is_inhibited_while_critical_fires_on_the_same_series(tmp_path):
    data = tmp_path / "data"
    config = engine_config(data)  # the default rules
    put_metric(data, "budget.forecast_pct", 1.2, {"budget": "support"})
    assert kinds(evaluate(data, config, T0 + H)) == [("firing", "budget-forecast-over", "support")]
    assert events(data, "budget-forecast-high") == [("firing", "ok", "firing", "inhibited")]
    put_metric(data, "budget.forecast_pct", 0.85, {"budget": "support"})
    after = evaluate(data, config, T0 + 2 * H)
    assert sorted(kinds(after)) == [("firing", "budget-forecast-high", "support"),
                                    ("resolved", "budget-forecast-over", "support")]


def test_verdict_rule_carries_the_jobs_evidence(tmp_path):
    data = tmp_path / "data"
    config = engine_config(data, alerts__dashboard_url="https://ledger.example.com/")
    labels = {"key": "service", "value": "fraud-screening", "granularity": "hour"}
    detail = {"expected": 12.0, "low": 8.0, "high": 16.5, "observed": 41.25}
    put_metric(data, "anomaly.cost", 41.25, labels, hours=1, verdict="anomaly", detail=detail, job="anomalies")
    [fired] = evaluate(data, config, T0 + 0.5 * H)
    assert (fired.rule, fired.verdict, fired.detail, fired.reason) == ("cost-anomaly", "anomaly", detail, "verdict anomaly")
    assert fired.dashboard_page == "https://ledger.example.com/dashboard/costs"
    assert fired.alert_url == f"https://ledger.example.com/dashboard/alerts?alert={fired.alert_id}"
    put_metric(data, "anomaly.cost", 12.5, labels, start=T0 + H, hours=1, verdict="ok", job="anomalies")
    [resolved] = evaluate(data, config, T0 + 1.5 * H)
    assert (resolved.kind, resolved.reason) == ("resolved", "verdict ok, not anomaly")


def test_change_condition_against_earlier_windows(tmp_path):
    data = tmp_path / "data"
    rules = [{"name": "spend-jump", "metric": "cost.total_usd", "change": {"op": ">", "value": 0.5}},
             {"name": "spend-jump-2h", "metric": "cost.total_usd", "change": {"op": ">", "value": 0.75, "before": "2h"}},
             {"name": "spend-up-50", "metric": "cost.total_usd",
              "change": {"op": ">=", "value": 50, "measure": "absolute", "windows": 2}}]
    config = engine_config(data, **only(rules))
    for hour, cost in enumerate([100.0, 110.0, 180.0]):
        put_metric(data, "cost.total_usd", cost, {"service": "fraud"}, start=T0 + hour * H, hours=1, job="rollups")
    fired = {n.rule: n for n in evaluate(data, config, T0 + 2.5 * H)}
    # (180 - 110) / 110 = 63.6% > 50%; vs 2h before: (180 - 100) / 100 = 80% > 75%; 180 - 100 = 80 >= 50
    assert fired["spend-jump"].reason == "+63.6% ($110.00 -> $180.00) > +50.0%"
    assert fired["spend-jump-2h"].reason == "+80.0% ($100.00 -> $180.00) > +75.0%"
    assert fired["spend-up-50"].reason == "+$80.00 ($100.00 -> $180.00) >= +$50.00"
    assert fired["spend-jump"].condition == "change > +50.0% vs 1 window(s) before"


def test_change_without_an_earlier_value_does_not_fire(tmp_path):
    data = tmp_path / "data"
    config = engine_config(data, **only([{"name": "jump", "metric": "cost.total_usd", "change": {"op": ">", "value": 0.1}}]))
    put_metric(data, "cost.total_usd", 0.0, {"service": "a"}, hours=1, job="rollups")
    put_metrics(data, "cost.total_usd", [({"service": "a"}, 5.0), ({"service": "b"}, 5.0)], start=T0 + H, hours=1,
                job="rollups")
    assert evaluate(data, config, T0 + 1.5 * H) == []
    reasons = query(data, "SELECT labels, reason FROM alert_states ORDER BY labels").to_pylist()
    assert reasons == [{"labels": '{"service": "a"}', "reason": "the earlier value is 0, a relative change is undefined"},
                       {"labels": '{"service": "b"}', "reason": "no earlier value to compare with"}]


def test_a_series_that_stops_updating_resolves(tmp_path):
    data = tmp_path / "data"
    config = engine_config(data)
    put_metric(data, "collector.rejected_spans", 12, {"reason": "implausible_tokens"}, hours=1, job="collector")
    assert kinds(evaluate(data, config, T0 + 0.5 * H)) == [("firing", "collector-rejecting-spans", None)]
    assert evaluate(data, config, T0 + 3 * H) == []  # window ended at 1h; 2 window lengths later it is still current
    [resolved] = evaluate(data, config, T0 + 3.01 * H)
    assert resolved.kind == "resolved" and resolved.reason.startswith("no current value (last window ended 2026-03-02 01:00")


def test_label_filter_empty_string_selects_the_total_series(tmp_path):
    data = tmp_path / "data"
    config = engine_config(data)
    put_metrics(data, "pricing.unpriced_share", [({}, 0.03), ({"provider": "acme", "model": "m1"}, 1.0)],
                hours=1, job="rollups")
    [fired] = evaluate(data, config, T0 + 0.5 * H)
    assert (fired.rule, fired.labels, fired.reason) == ("unpriced-spend", {}, "3.0% > 1.0%")


def test_a_removed_rule_forgets_its_alerts(tmp_path):
    data = tmp_path / "data"
    put_metric(data, "budget.forecast_pct", 1.2, {"budget": "support"})
    assert len(evaluate(data, engine_config(data, **only([{**FORECAST_RULE, "for": "0s"}])), T0 + H)) == 1
    assert evaluate(data, engine_config(data, **only([])), T0 + 2 * H) == []
    assert query(data, "SELECT count(*) AS n FROM alert_states").to_pylist() == [{"n": 0}]
    last = query(data, "SELECT to_state, reason FROM alert_events ORDER BY event_time DESC LIMIT 1").to_pylist()
    assert last == [{"to_state": "ok", "reason": "rule removed or disabled"}]


def test_windows_after_now_are_not_seen(tmp_path):
    data = tmp_path / "data"
    config = engine_config(data, **only([{**FORECAST_RULE, "for": "0s"}]))
    put_metric(data, "budget.forecast_pct", 1.2, {"budget": "support"}, start=T0 + 24 * H)
    assert evaluate(data, config, T0 + H) == []
    assert kinds(evaluate(data, config, T0 + 25 * H)) == [("firing", "forecast", "support")]


def test_without_a_channel_the_event_says_so(tmp_path):
    data = tmp_path / "data"
    put_metric(data, "budget.forecast_pct", 1.2, {"budget": "support"})
    [fired] = evaluate(data, alert_config(data, **only([{**FORECAST_RULE, "for": "0s"}])), T0 + H)
    assert fired.channels == []
    assert events(data) == [("firing", "ok", "firing", "no channel")]
