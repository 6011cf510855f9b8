"""A notification: everything a channel needs to tell someone an alert fired, is still firing, or resolved.

It is self-contained (the rule's description, the metric's unit and dashboard page
are copied in) so a message that could not be delivered can be kept as JSON and
rendered again on a later run, even if the configuration changed meanwhile.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from datetime import datetime
from typing import Any, Literal

Kind = Literal["firing", "reminder", "resolved", "test"]
_TIMES = ("at", "since", "window_start", "window_end")


@dataclass(frozen=True)
class Notification:
    notification_id: str
    kind: Kind
    alert_id: str
    rule: str
    description: str
    severity: str
    metric: str
    metric_description: str
    unit: str
    labels: dict[str, Any]
    value: float | None
    condition: str  # e.g. "> 1" or "verdict in drift"; values in the metric's unit
    threshold: float | None  # the rule's threshold; for a verdict rule the job's own; None for a change
    verdict: str | None
    reason: str  # why the state changed, e.g. "1.23 > 1" or "no data for 2 windows"
    job: str | None
    at: datetime
    since: datetime  # firing since (resolved: when it fired)
    window_start: datetime | None
    window_end: datetime | None
    channels: list[str]
    detail: dict[str, Any] = field(default_factory=dict)
    dashboard_page: str | None = None  # absolute URL of the metric's page, when a dashboard is configured
    alert_url: str | None = None  # absolute URL of this alert on the alerts page
    thread: str = ""  # the same for the firing, reminders and resolution of one episode (email threading)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for name in _TIMES:
            data[name] = data[name].isoformat() if data[name] is not None else None
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Notification":
        known = {f.name for f in fields(cls)}
        values = {key: value for key, value in data.items() if key in known}
        for name in _TIMES:
            if values.get(name) is not None:
                values[name] = datetime.fromisoformat(values[name])
        return cls(**values)
