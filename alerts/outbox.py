"""The outbox: notifications waiting to be delivered, one JSON file per (notification, channel).

Evaluation writes a notification here *before* it records the new alert states, and
delivery removes it once the channel took it. So a crash between the two sends a
notification at least once instead of never, and a channel that is down keeps its
messages until it is back (within ``alerts.delivery.redeliver_hours``).
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from alerts.notification import Notification
from warehouse.landing import tmp_dir, write_atomically

OUTBOX_DIR = Path("alerts") / "outbox"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Entry:
    path: Path
    notification: Notification
    channel: str
    enqueued_at: datetime
    attempts: int  # attempts made so far, over all runs


def outbox_dir(data_dir: Path) -> Path:
    return Path(data_dir) / OUTBOX_DIR


def enqueue(data_dir: Path, notifications: list[Notification], now: datetime) -> None:
    for notification in notifications:
        for channel in notification.channels:
            path = outbox_dir(data_dir) / f"{now:%Y%m%dT%H%M%S%f}-{notification.notification_id}-{channel}.json"
            _write(data_dir, Entry(path, notification, channel, now, 0))


def pending(data_dir: Path) -> list[Entry]:
    """Waiting entries, oldest first (a firing goes out before its resolution)."""
    directory = outbox_dir(data_dir)
    entries = []
    for path in sorted(directory.glob("*.json")) if directory.exists() else []:
        try:
            data = json.loads(path.read_text())
            entries.append(Entry(path, Notification.from_dict(data["notification"]), data["channel"],
                                 datetime.fromisoformat(data["enqueued_at"]), data["attempts"]))
        except (ValueError, KeyError, TypeError):  # unreadable: set aside for a person, keep delivering the rest
            log.error("unreadable outbox entry %s set aside as .bad", path)
            path.rename(path.with_suffix(".bad"))
    return entries


def record_attempts(data_dir: Path, entry: Entry, attempts: int) -> None:
    _write(data_dir, Entry(entry.path, entry.notification, entry.channel, entry.enqueued_at, attempts))


def remove(entry: Entry) -> None:
    entry.path.unlink(missing_ok=True)


def _write(data_dir: Path, entry: Entry) -> None:
    data = {"notification": entry.notification.to_dict(), "channel": entry.channel,
            "enqueued_at": entry.enqueued_at.isoformat(), "attempts": entry.attempts}
    write_atomically(json.dumps(data, sort_keys=True, default=str).encode(), entry.path, tmp_dir(data_dir),
                     fsync=True)
