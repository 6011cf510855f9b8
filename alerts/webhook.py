"""Webhooks: a JSON POST per notification, signed so the receiver can trust it.

Headers (see alerts/README.md for verification code):

* ``X-Inferledger-Timestamp``: Unix seconds when the request was signed;
* ``X-Inferledger-Signature``: ``sha256=<hex HMAC-SHA256 of "<timestamp>.<body>">`` keyed
  with the secret from the environment variable ``secret_env`` (absent when unset);
* ``X-Inferledger-Delivery``: the notification id, the same on every retry, so a
  receiver can drop duplicates;
* ``X-Inferledger-Event``: firing, reminder, resolved (or test).

Signing the timestamp with the body lets a receiver refuse replays older than a few
minutes. ``format = "slack"`` sends ``{"text", "blocks"}``, which Slack incoming webhooks
(and Mattermost, Rocket.Chat) display as is.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import os
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from alerts.config import WebhookConfig
from alerts.errors import PermanentDeliveryError, RetryableDeliveryError
from alerts.formatting import format_labels
from alerts.notification import Notification
from alerts.render import render_webhook_text

SIGNATURE_HEADER, TIMESTAMP_HEADER = "X-Inferledger-Signature", "X-Inferledger-Timestamp"
RETRYABLE_STATUS = {408, 425, 429}


def post_notification(hook: WebhookConfig, notification: Notification, templates_dir: Path | None) -> None:
    text = render_webhook_text(notification, templates_dir, slack=hook.format == "slack")
    payload = slack_payload(notification, text) if hook.format == "slack" else json_payload(notification, text)
    post_json(hook, payload, {"X-Inferledger-Delivery": notification.notification_id,
                              "X-Inferledger-Event": notification.kind})


def json_payload(notification: Notification, text: str) -> dict[str, Any]:
    return {"version": 1, "kind": notification.kind, "text": text, "alert": notification.to_dict()}


def slack_payload(notification: Notification, text: str) -> dict[str, Any]:
    """Slack's Block Kit: a header, the rendered text, the labels; ``text`` is the fallback."""
    title = f"{notification.kind.upper()}: {notification.rule} ({notification.severity})"
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": title[:150]}},
        {"type": "section", "text": {"type": "mrkdwn", "text": text[:3000]}},
        {"type": "context", "elements": [{"type": "mrkdwn", "text": f"`{notification.metric}` {format_labels(notification.labels)}"}]},
    ]
    return {"text": text, "blocks": blocks}


def sign(secret: bytes, timestamp: str, body: bytes) -> str:
    """``sha256=`` + hex HMAC-SHA256 of ``<timestamp>.<body>``."""
    return "sha256=" + hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def post_json(hook: WebhookConfig, payload: dict[str, Any], extra_headers: dict[str, str] | None = None) -> None:
    """POST ``payload``; 2xx is success, anything else raises a delivery error of the right kind."""
    body = json.dumps(payload, sort_keys=True, default=str).encode()
    timestamp = str(int(time.time()))
    headers = {"Content-Type": "application/json", "User-Agent": "inferledger-alerts/1",
               TIMESTAMP_HEADER: timestamp, **(extra_headers or {})}
    if hook.secret_env:
        headers[SIGNATURE_HEADER] = sign(_secret(hook), timestamp, body)
    request = urllib.request.Request(hook.url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=hook.timeout_s) as response:
            response.read(65536)
    except urllib.error.HTTPError as exc:
        error = RetryableDeliveryError if exc.code >= 500 or exc.code in RETRYABLE_STATUS else PermanentDeliveryError
        raise error(f"webhook {hook.name} ({target(hook)}) answered HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError) as exc:  # refused, unreachable, timeout
        reason = getattr(exc, "reason", exc)
        raise RetryableDeliveryError(f"webhook {hook.name} ({target(hook)}): {type(reason).__name__}: {reason}") from None


def target(hook: WebhookConfig) -> str:
    """Scheme, host and port only: webhook paths often carry a token (Slack's do) and are not logged."""
    parts = urlsplit(hook.url)
    return f"{parts.scheme}://{parts.netloc.rsplit('@', 1)[-1]}"


def _secret(hook: WebhookConfig) -> bytes:
    secret = os.environ.get(hook.secret_env or "")
    if not secret:
        raise PermanentDeliveryError(f"webhook {hook.name}: environment variable {hook.secret_env} (secret_env) is empty")
    return secret.encode()
