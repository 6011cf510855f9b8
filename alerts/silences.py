"""Silences: mute a rule, or some of its label sets, until a moment.

Two sources: ``[[alerts.silences]]`` in the configuration (reviewed like code), and
``inferledger alerts silence`` for the 2 a.m. case, stored in the ``alert_silences``
table of the data directory. A silenced alert still changes state and every
transition is recorded (as ``silenced``); only the notification is not sent.
"""
from __future__ import annotations

import fnmatch
import hashlib
import json
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Mapping

from alerts.config import AlertsConfig, LabelFilter
from alerts.rules import labels_match
from alerts.state import SILENCES_SCHEMA, SILENCES_TABLE, append_log, read_log


@dataclass(frozen=True)
class Silence:
    silence_id: str
    rule: str
    labels: LabelFilter
    starts_at: datetime
    ends_at: datetime
    comment: str
    created_by: str
    source: str  # "config" or "cli"

    def is_active(self, now: datetime) -> bool:
        return self.starts_at <= now < self.ends_at

    def matches(self, rule: str, labels: Mapping[str, Any]) -> bool:
        return fnmatch.fnmatchcase(rule, self.rule) and labels_match(self.labels, labels)


def all_silences(data_dir: Path, alerts: AlertsConfig) -> list[Silence]:
    """Configured and stored silences, expired ones included (``alerts list`` shows both)."""
    return _configured(alerts) + _stored(data_dir)


def active_silences(data_dir: Path, alerts: AlertsConfig, now: datetime) -> list[Silence]:
    return [silence for silence in all_silences(data_dir, alerts) if silence.is_active(now)]


def silence_for(silences: list[Silence], rule: str, labels: Mapping[str, Any]) -> Silence | None:
    return next((silence for silence in silences if silence.matches(rule, labels)), None)


def add_silence(data_dir: Path, rule: str, labels: LabelFilter, duration: timedelta, comment: str,
                created_by: str, now: datetime) -> Silence:
    silence = Silence(uuid.uuid4().hex[:12], rule, dict(labels), now, now + duration, comment, created_by, "cli")
    _store(data_dir, silence, now)
    return silence


def expire_silence(data_dir: Path, silence_id: str, now: datetime) -> Silence:
    """End a stored silence now; KeyError when no active stored silence has that id."""
    for silence in _stored(data_dir):
        if silence.silence_id == silence_id and silence.ends_at > now:
            ended = Silence(silence.silence_id, silence.rule, silence.labels, silence.starts_at, now,
                            silence.comment, silence.created_by, "cli")
            _store(data_dir, ended, now)
            return ended
    raise KeyError(f"no active silence {silence_id!r} (configured silences end by editing the configuration)")


def _configured(alerts: AlertsConfig) -> list[Silence]:
    silences = []
    for entry in alerts.silences:
        identity = json.dumps([entry.rule, entry.labels, entry.until.isoformat()], sort_keys=True)
        silence_id = "config-" + hashlib.sha256(identity.encode()).hexdigest()[:8]
        silences.append(Silence(silence_id, entry.rule, dict(entry.labels), datetime.min.replace(tzinfo=entry.until.tzinfo),
                                entry.until, entry.comment, "configuration", "config"))
    return silences


def _stored(data_dir: Path) -> list[Silence]:
    newest: dict[str, dict] = {}
    for row in read_log(data_dir, SILENCES_TABLE, SILENCES_SCHEMA):
        if row["silence_id"] not in newest or row["created_at"] >= newest[row["silence_id"]]["created_at"]:
            newest[row["silence_id"]] = row
    return [Silence(row["silence_id"], row["rule"], json.loads(row["labels"]), row["starts_at"], row["ends_at"],
                    row["comment"], row["created_by"], "cli") for row in newest.values()]


def _store(data_dir: Path, silence: Silence, now: datetime) -> None:
    append_log(data_dir, SILENCES_TABLE, SILENCES_SCHEMA, [{
        "silence_id": silence.silence_id, "rule": silence.rule, "labels": json.dumps(silence.labels, sort_keys=True),
        "starts_at": silence.starts_at, "ends_at": silence.ends_at, "comment": silence.comment,
        "created_by": silence.created_by, "created_at": now,
    }], now)
