"""Typed reads of attribute values, shared by the convention modules.

Emitters disagree on types: token counts arrive as ``intValue``, as integral
``doubleValue`` or as numeric strings; booleans as strings; lists as a single
string. Each reader returns the value in the column's type, or ``None`` when
the value is unusable, in which case the caller moves on to the next key in
precedence order (and the unusable raw value stays in the attributes JSON).
"""
from __future__ import annotations

import math


def as_int(value):
    """int from an int, an integral float or a numeric string; bool is not a number."""
    kind = type(value)
    if kind is int:
        return value
    if kind is float:
        return int(value) if value.is_integer() else None
    if kind is str:
        text = value.strip()
        try:
            return int(text)
        except ValueError:
            try:
                number = float(text)
            except ValueError:
                return None
            return int(number) if number.is_integer() else None
    return None


def as_float(value):
    """Finite float from a number or a numeric string."""
    kind = type(value)
    if kind is float:
        return value if math.isfinite(value) else None
    if kind is int:
        return float(value)
    if kind is str:
        try:
            number = float(value)
        except ValueError:
            return None
        return number if math.isfinite(number) else None
    return None


def as_str(value):
    """Non-empty string from a string or a number (ids are sometimes ints)."""
    kind = type(value)
    if kind is str:
        return value or None
    if kind is int or kind is float:
        return str(value)
    return None


def as_bool(value):
    """bool from a bool, 0/1, or "true"/"false"."""
    kind = type(value)
    if kind is bool:
        return value
    if kind is int and value in (0, 1):
        return bool(value)
    if kind is str:
        lowered = value.strip().lower()
        if lowered in ("true", "false"):
            return lowered == "true"
    return None


def as_str_list(value):
    """List of strings from a string array or a single string."""
    kind = type(value)
    if kind is list:
        items = [item if type(item) is str else str(item) for item in value if item is not None]
        return items or None
    if kind is str:
        return [value] if value else None
    return None


def first(known: dict, keys: tuple, read, extra: dict):
    """The first usable value of ``keys`` in ``known``, read with ``read``.

    An unusable value (wrong type) is handed back to ``extra`` so nothing is lost.
    """
    for key in keys:
        raw = known.get(key)
        if raw is None:
            continue
        value = read(raw)
        if value is not None:
            return value
        extra[key] = raw
    return None
