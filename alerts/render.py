"""Rendering notifications with Jinja2 templates: built-ins under ``alerts/templates/``, overridable.

``alerts.templates_dir`` comes first in a ``ChoiceLoader``: a file there named like a
built-in (``subject.txt.j2``, ``body.txt.j2``, ``body.html.j2``, ``webhook.txt.j2``)
replaces it, the others stay built-in. Templates get the context documented in
alerts/README.md; undefined names are errors (``StrictUndefined``) so a typo in an
override fails the delivery visibly instead of sending a blank line.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2

from alerts.errors import PermanentDeliveryError
from alerts.formatting import format_labels, format_time, format_value
from alerts.notification import Notification

BUILTIN_DIR = Path(__file__).parent / "templates"
SUBJECT, TEXT, HTML, WEBHOOK = "subject.txt.j2", "body.txt.j2", "body.html.j2", "webhook.txt.j2"
TEMPLATE_NAMES = (SUBJECT, TEXT, HTML, WEBHOOK)

KIND_TITLES = {"firing": "FIRING", "reminder": "STILL FIRING", "resolved": "RESOLVED", "test": "TEST"}
COLORS = {"critical": "#b42318", "warning": "#b54708", "info": "#175cd3", "resolved": "#067647"}
_HIGHLIGHTED = ("low", "high", "expected", "observed", "test", "statistic", "p_value", "error")


@dataclass(frozen=True)
class RenderedEmail:
    subject: str
    text: str
    html: str


def render_email(notification: Notification, templates_dir: Path | None) -> RenderedEmail:
    context = template_context(notification)
    subject = " ".join(_render(SUBJECT, context, templates_dir).split())  # one line: no header injection
    return RenderedEmail(subject, _render(TEXT, context, templates_dir), _render(HTML, context, templates_dir))


def render_webhook_text(notification: Notification, templates_dir: Path | None, slack: bool) -> str:
    return _render(WEBHOOK, template_context(notification, slack=slack), templates_dir).strip()


def template_context(n: Notification, slack: bool = False) -> dict[str, Any]:
    """What every template sees (documented in alerts/README.md)."""
    return {
        "n": n,
        "kind_title": KIND_TITLES.get(n.kind, n.kind.upper()),
        "value_text": format_value(n.value, n.unit),
        "threshold_text": format_value(n.threshold, n.unit),
        "labels_text": format_labels(n.labels),
        "since_text": format_time(n.since),
        "at_text": format_time(n.at),
        "window_text": f"{format_time(n.window_start)} to {format_time(n.window_end)}" if n.window_start else "n/a",
        "highlights": highlights(n),
        "details": [(key, format_value(value)) for key, value in sorted(n.detail.items()) if key not in _HIGHLIGHTED],
        "color": COLORS["resolved"] if n.kind == "resolved" else COLORS.get(n.severity, COLORS["info"]),
        "slack": slack,
    }


def highlights(n: Notification) -> list[str]:
    """The job's evidence in one line each: expected range of an anomaly, the test behind a drift verdict."""
    detail, lines = n.detail, []
    if "low" in detail and "high" in detail:
        line = f"expected range {format_value(detail['low'], n.unit)} to {format_value(detail['high'], n.unit)}"
        if detail.get("expected") is not None:
            line += f" (expected {format_value(detail['expected'], n.unit)})"
        if detail.get("observed") is not None:
            line += f", observed {format_value(detail['observed'], n.unit)}"
        lines.append(line)
    if detail.get("test"):
        statistic = f", statistic {format_value(detail['statistic'])}" if detail.get("statistic") is not None else ""
        lines.append(f"test {detail['test']}{statistic}")
    if detail.get("p_value") is not None:
        lines.append(f"p-value {format_value(detail['p_value'], 'p_value')}")
    if detail.get("error"):
        lines.append(f"error: {detail['error']}")
    return lines


def _render(name: str, context: dict[str, Any], templates_dir: Path | None) -> str:
    try:
        return _environment(str(templates_dir) if templates_dir else None).get_template(name).render(context)
    except jinja2.TemplateError as exc:
        raise PermanentDeliveryError(f"template {name}: {type(exc).__name__}: {exc}") from None


@lru_cache(maxsize=8)
def _environment(templates_dir: str | None) -> jinja2.Environment:
    loaders = [jinja2.FileSystemLoader(templates_dir)] if templates_dir else []
    environment = jinja2.Environment(
        loader=jinja2.ChoiceLoader(loaders + [jinja2.FileSystemLoader(BUILTIN_DIR)]),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html.j2",), default_for_string=False),
        undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True,
    )
    environment.filters["value"] = format_value
    environment.filters["time"] = format_time
    return environment
