"""Does a rule's condition hold for a series' current value? With a reason a person can read."""
from __future__ import annotations

import operator
from dataclasses import dataclass

from alerts.config import RuleConfig
from alerts.formatting import format_change, format_value
from alerts.series import Point

OPS = {">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le}


@dataclass(frozen=True)
class Outcome:
    holds: bool | None  # None: no value to judge (no data, or no earlier value for a change)
    reason: str


def condition_text(rule: RuleConfig, unit: str) -> str:
    """``> 100.0%``, ``change > +50.0% vs 1 window before``, ``verdict in drift, major``."""
    if rule.threshold is not None:
        return f"{rule.threshold.op} {format_value(rule.threshold.value, unit)}"
    if rule.change is not None:
        change = rule.change
        reference = f"{change.before} before" if change.before else f"{change.windows or 1} window(s) before"
        return f"change {change.op} {format_change(change.value, change.measure, unit)} vs {reference}"
    return f"verdict in {', '.join(rule.verdict or [])}"


def comparison_value(rule: RuleConfig, point: Point | None) -> float | None:
    """The figure the value is held against: the rule's threshold, the job's own for verdicts, none for changes."""
    if rule.threshold is not None:
        return rule.threshold.value
    if rule.verdict is not None and point is not None:
        return point.threshold
    return None


def evaluate_condition(rule: RuleConfig, point: Point, unit: str, reference: float | None = None) -> Outcome:
    if rule.verdict is not None:
        if point.verdict is None:
            return Outcome(None, "the job gave no verdict")
        holds = point.verdict in rule.verdict
        return Outcome(holds, f"verdict {point.verdict}" + ("" if holds else f", not {'/'.join(rule.verdict)}"))
    if point.value is None:
        return Outcome(None, "no value in the latest window")
    if rule.threshold is not None:
        return _compare(rule.threshold.op, point.value, rule.threshold.value,
                        format_value(point.value, unit), format_value(rule.threshold.value, unit))
    return _change(rule, point.value, reference, unit)


def _change(rule: RuleConfig, value: float, reference: float | None, unit: str) -> Outcome:
    change = rule.change
    if reference is None:
        return Outcome(None, "no earlier value to compare with")
    if change.measure == "relative":
        if reference == 0:
            return Outcome(None, "the earlier value is 0, a relative change is undefined")
        delta = (value - reference) / abs(reference)
    else:
        delta = value - reference
    moved = f"{format_value(reference, unit)} -> {format_value(value, unit)}"
    return _compare(change.op, delta, change.value, f"{format_change(delta, change.measure, unit)} ({moved})",
                    format_change(change.value, change.measure, unit))


def _compare(op: str, value: float, limit: float, value_text: str, limit_text: str) -> Outcome:
    holds = OPS[op](value, limit)
    return Outcome(holds, f"{value_text} {op} {limit_text}" if holds else f"{value_text}, not {op} {limit_text}")
