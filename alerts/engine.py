"""Evaluation: the rules against the current metric values, one state machine per rule and series.

::

    ok ──condition holds──▶ pending ──held for `for`──▶ firing ──condition gone──▶ resolved
     ▲                         │                          │  ▲                         │
     └────condition gone───────┘                reminder every│  └──condition holds──────┘
                                            reminder_interval_minutes

A rule with ``for = "0s"`` skips pending. A series without a current value (no row,
or stale, see ``AlertsConfig.stale_windows``) counts as "condition gone". ``resolved``
behaves like ``ok``; after a week it becomes ``ok`` (the dashboard shows what recovered
meanwhile). An ``ok`` alert whose series disappeared is forgotten.

Notifications: one when an alert fires, one when it resolves (only if its firing was
told), reminders while it keeps firing, nothing otherwise. A silenced or inhibited
alert changes state all the same; the transition is recorded with ``silenced`` or
``inhibited`` instead of being sent, and if it is still firing when the silence ends
the firing notification goes out then.
"""
from __future__ import annotations

import hashlib
import json
import uuid
from collections import defaultdict
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from alerts.catalogue import CATALOGUE
from alerts.conditions import Outcome, comparison_value, condition_text, evaluate_condition
from alerts.config import RuleConfig
from alerts.formatting import format_time
from alerts.notification import Notification
from alerts.outbox import enqueue
from alerts.rules import AlertSettings, effective_rules, labels_match, rule_channels
from alerts.series import Point, latest_points, reference_values
from alerts.silences import Silence, active_silences, silence_for
from alerts.state import EVENTS_SCHEMA, EVENTS_TABLE, AlertState, append_log, evaluation_lock, load_states, save_states

RESOLVED_KEPT = timedelta(days=7)


@dataclass(frozen=True)
class Observation:
    rule: RuleConfig
    point: Point
    outcome: Outcome


def evaluate(data_dir: Path, settings: AlertSettings, now: datetime) -> list[Notification]:
    """Advance every alert to ``now``, record the transitions, queue and return what must be sent.

    The notifications are also written to the outbox; ``alerts.delivery.deliver`` sends them.
    """
    with evaluation_lock(data_dir):
        return evaluate_unlocked(data_dir, settings, now)


def evaluate_unlocked(data_dir: Path, settings: AlertSettings, now: datetime) -> list[Notification]:
    """``evaluate`` for a caller that already holds ``evaluation_lock``."""
    now = now.astimezone(UTC)
    rules = {rule.name: rule for rule in effective_rules(settings.alerts)}
    observations = observe(data_dir, list(rules.values()), settings.alerts.stale_windows, now)
    previous = load_states(data_dir)
    states, changes, events = {}, {}, []
    for alert_id in sorted(set(previous) | set(observations)):
        before, observation = previous.get(alert_id), observations.get(alert_id)
        rule = rules.get(before.rule if before else observation.rule.name)
        state = advance(alert_id, before, observation, rule, now)
        from_state = before.state if before else "ok"
        if state is None:
            if from_state in ("pending", "firing"):  # its rule was removed or disabled
                events.append(_event(replace(before, reason="rule removed or disabled"), from_state, "ok", now))
            continue
        states[alert_id] = state
        if state.state != from_state:
            changes[alert_id] = from_state
    silences = active_silences(data_dir, settings.alerts, now)
    notifications = _notify(states, changes, rules, settings, silences, now, events)
    enqueue(data_dir, notifications, now)  # before the states: a crash in between sends twice, never zero times
    save_states(data_dir, states)
    append_log(data_dir, EVENTS_TABLE, EVENTS_SCHEMA, events, now)
    return notifications


def observe(data_dir: Path, rules: list[RuleConfig], stale_windows: float, now: datetime) -> dict[str, Observation]:
    """Every (rule, current series) pair with the outcome of the rule's condition."""
    by_metric: dict[str, list[Point]] = defaultdict(list)
    for point in latest_points(data_dir, sorted({m for rule in rules for m in rule.metrics}), now, stale_windows):
        by_metric[point.metric].append(point)
    observations = {}
    for rule in rules:
        references = reference_values(data_dir, rule.metrics, rule.change, now) if rule.change else {}
        for metric in rule.metrics:
            for point in by_metric[metric]:
                if labels_match(rule.labels, point.labels):
                    outcome = evaluate_condition(rule, point, CATALOGUE[metric].unit, references.get(point.key))
                    observations[alert_key(rule.name, metric, point.labels_json)] = Observation(rule, point, outcome)
    return observations


def alert_key(rule: str, metric: str, labels_json: str) -> str:
    return hashlib.sha256(f"{rule}\0{metric}\0{labels_json}".encode()).hexdigest()[:16]


def next_state(current: str, holds: bool, entered: datetime, pending_for: timedelta, now: datetime) -> str:
    """The state machine itself (see the module docstring)."""
    if holds:
        if current == "firing" or (current == "pending" and now - entered >= pending_for):
            return "firing"
        if current == "pending":
            return "pending"
        return "firing" if pending_for <= timedelta(0) else "pending"
    return {"pending": "ok", "firing": "resolved"}.get(current, current)


def advance(alert_id: str, before: AlertState | None, observation: Observation | None, rule: RuleConfig | None,
            now: datetime) -> AlertState | None:
    """The alert's state at ``now``; None when it is no longer worth keeping."""
    if rule is None:
        return None
    if observation is None and before.state == "ok":
        return None
    state = replace(before) if before else _new_state(alert_id, observation, now)
    holds = bool(observation and observation.outcome.holds)
    new = next_state(state.state, holds, state.since, rule.pending_for, now)
    if new == "resolved" and state.state == "resolved" and state.resolved_at + RESOLVED_KEPT <= now:
        new = "ok"
    if new != state.state:
        _enter(state, new, now)
    state.severity, state.evaluated_at = rule.severity, now
    if observation is None:
        state.reason = f"no current value (last window ended {format_time(state.window_end)})"
    else:
        _take_observation(state, observation)
    return state


def _new_state(alert_id: str, observation: Observation, now: datetime) -> AlertState:
    point = observation.point
    return AlertState(alert_id, observation.rule.name, point.metric, point.labels_json, "ok",
                      observation.rule.severity, now)


def _enter(state: AlertState, new: str, now: datetime) -> None:
    if new in ("pending", "firing") and state.state not in ("pending", "firing"):
        state.active_since = now
    if new == "firing":
        state.fired_at, state.resolved_at, state.notified, state.last_notified_at = now, None, False, None
    elif new == "resolved":
        state.resolved_at = now
    elif new == "ok":
        state.active_since = None
    state.state, state.since = new, now


def _take_observation(state: AlertState, observation: Observation) -> None:
    point = observation.point
    state.value, state.verdict, state.job = point.value, point.verdict, point.job
    state.threshold = comparison_value(observation.rule, point)
    state.window_start, state.window_end = point.window_start, point.window_end
    state.detail = json.dumps(point.detail, sort_keys=True, default=str)
    state.reason = observation.outcome.reason


def _notify(states: dict[str, AlertState], changes: dict[str, str], rules: dict[str, RuleConfig],
            settings: AlertSettings, silences: list[Silence], now: datetime, events: list[dict]) -> list[Notification]:
    """Decide, per alert, whether a notification is due and not muted; record what happened."""
    firing = defaultdict(set)
    for state in states.values():
        if state.state == "firing":
            firing[(state.metric, state.labels)].add(state.rule)
    reminder = timedelta(minutes=settings.alerts.reminder_interval_minutes)
    notifications = []
    for alert_id, state in states.items():
        rule, from_state = rules[state.rule], changes.get(alert_id)
        muted, silence_id = _muted(rule, state, firing, silences)
        state.muted = muted
        kind = _due(state, from_state, reminder, now)
        if kind is None and from_state is None:
            continue
        sent = kind is not None and muted is None
        if sent:
            notifications.append(_notification(kind, state, rule, settings, now))
            if kind != "resolved":
                state.notified, state.last_notified_at = True, now
        if from_state is not None or sent:
            outcome = ("sent" if notifications[-1].channels else "no channel") if sent else (muted or "none")
            event = state.state if from_state is not None else ("reminder" if kind == "reminder" else "unmuted")
            events.append(_event(state, from_state or state.state, state.state, now, event, outcome,
                                 notifications[-1].notification_id if sent else None, silence_id))
    return notifications


def _due(state: AlertState, from_state: str | None, reminder: timedelta, now: datetime) -> str | None:
    if state.state == "firing":
        if from_state is not None or not state.notified:
            return "firing"
        if reminder > timedelta(0) and now - state.last_notified_at >= reminder:
            return "reminder"
    if state.state == "resolved" and from_state == "firing" and state.notified:
        return "resolved"
    return None


def _muted(rule: RuleConfig, state: AlertState, firing: dict, silences: list[Silence]) -> tuple[str | None, str | None]:
    """("inhibited", None) or ("silenced", silence id) or (None, None)."""
    if set(rule.inhibited_by) & firing[(state.metric, state.labels)]:
        return "inhibited", None
    silence = silence_for(silences, rule.name, json.loads(state.labels))
    return ("silenced", silence.silence_id) if silence else (None, None)


def _notification(kind: str, state: AlertState, rule: RuleConfig, settings: AlertSettings,
                  now: datetime) -> Notification:
    info = CATALOGUE.get(state.metric)
    unit = info.unit if info else "statistic"
    base = (settings.alerts.dashboard_url or "").rstrip("/")
    return Notification(
        notification_id=uuid.uuid4().hex[:16], kind=kind, alert_id=state.alert_id, rule=rule.name,
        description=rule.description or (info.description if info else ""), severity=rule.severity,
        metric=state.metric, metric_description=info.description if info else "", unit=unit,
        labels=json.loads(state.labels), value=state.value, condition=condition_text(rule, unit),
        threshold=state.threshold, verdict=state.verdict, reason=state.reason or "", job=state.job, at=now,
        since=state.active_since or state.fired_at or now, window_start=state.window_start,
        window_end=state.window_end, channels=rule_channels(settings, rule),
        detail=json.loads(state.detail or "{}"),
        dashboard_page=f"{base}{info.page}" if base and info else None,
        alert_url=f"{base}/dashboard/alerts?alert={state.alert_id}" if base else None,
        thread=f"{state.alert_id}.{int(state.fired_at.timestamp()) if state.fired_at else 0}",
    )


def _event(state: AlertState, from_state: str, to_state: str, now: datetime, event: str | None = None,
           notification: str = "none", notification_id: str | None = None, silence_id: str | None = None) -> dict:
    return {
        "event_time": now, "alert_id": state.alert_id, "rule": state.rule, "metric": state.metric,
        "labels": state.labels, "severity": state.severity, "event": event or to_state, "from_state": from_state,
        "to_state": to_state, "value": state.value, "threshold": state.threshold, "verdict": state.verdict,
        "reason": state.reason, "notification": notification, "notification_id": notification_id,
        "silence_id": silence_id, "window_end": state.window_end,
    }
