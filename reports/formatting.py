"""How figures are written in every report (HTML, plain text, PDF): one place, one style.

Missing values are an em dash, never 0: an unpriced cost is unknown, not free.
"""
from __future__ import annotations

from datetime import date, datetime

MISSING = "—"


def money(value: float | None, symbol: str = "$", decimals: int = 2) -> str:
    """Exact amount: ``$1,234.56``; negative ``-$12.00``."""
    if value is None:
        return MISSING
    sign = "-" if value < 0 else ""
    return f"{sign}{symbol}{abs(value):,.{decimals}f}"


def money_short(value: float | None, symbol: str = "$") -> str:
    """Headline amount: ``$41.2k``, ``$1.35M``, ``$950``, ``$20.40``."""
    if value is None:
        return MISSING
    sign, size = ("-" if value < 0 else ""), abs(value)
    if size >= 1e6:
        text = f"{size / 1e6:.2f}M"
    elif size >= 1e4:
        text = f"{size / 1e3:.1f}k"
    elif size >= 1e3:
        text = f"{size / 1e3:.2f}k"
    elif size >= 100:
        text = f"{size:,.0f}"
    else:
        text = f"{size:.2f}"
    return f"{sign}{symbol}{text}"


def unit_money(value: float | None, symbol: str = "$") -> str:
    """A cost per unit, with the digits that matter: ``$0.0042``, ``$0.02``, ``$1.25``."""
    if value is None:
        return MISSING
    if abs(value) >= 1:
        return money(value, symbol)
    return f"{'-' if value < 0 else ''}{symbol}{abs(value):.3g}" if value else f"{symbol}0"


def signed_money(value: float | None, symbol: str = "$") -> str:
    if value is None:
        return MISSING
    text = money_short(abs(value), symbol)
    if text == money_short(0.0, symbol):
        return text
    return ("+" if value > 0 else "-") + text


def percent(ratio: float | None, decimals: int = 1) -> str:
    """A share or ratio (0.183) as ``18.3%``."""
    if ratio is None:
        return MISSING
    return f"{ratio * 100:.{decimals}f}%"


def signed_percent(ratio: float | None, decimals: int = 0) -> str:
    """A change (0.183) as ``+18%``; ``-5%``; ``±0%``."""
    if ratio is None:
        return MISSING
    text = f"{abs(ratio) * 100:.{decimals}f}%"
    if text.strip("0.%") == "":
        return "±" + text
    return ("+" if ratio > 0 else "-") + text


def count(value: int | float | None) -> str:
    if value is None:
        return MISSING
    return f"{value:,.0f}"


def number(value: float | None, digits: int = 4) -> str:
    """A statistic or score: up to ``digits`` significant decimals, no trailing zeros."""
    if value is None:
        return MISSING
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:.{digits}g}" if abs(value) < 1 else f"{value:,.{digits}f}".rstrip("0").rstrip(".")


def timestamp(value: datetime | None) -> str:
    """UTC, second precision: ``2026-11-17 08:00:03Z``."""
    if value is None:
        return MISSING
    return f"{value:%Y-%m-%d %H:%M:%S}Z"


def cell(value) -> str:
    """Any value in a generic table (events): lists joined, times in UTC, numbers grouped."""
    if value is None:
        return MISSING
    if isinstance(value, datetime):
        return timestamp(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (int, float)):
        return number(value)
    if isinstance(value, (list, tuple)):
        return "; ".join(cell(item) for item in value)
    text = str(value)
    return text if len(text) <= 120 else text[:117] + "..."


def text_table(rows: list[list[str]], indent: int = 2) -> str:
    """Rows of cells (the first is the header) as aligned plain-text columns, numbers right-aligned."""
    if not rows:
        return ""
    cells = [[str(value) for value in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]))]
    numeric = [all(_looks_numeric(row[i]) for row in cells[1:]) and len(cells) > 1 for i in range(len(widths))]
    lines = []
    for row in cells:
        parts = [value.rjust(width) if right else value.ljust(width)
                 for value, width, right in zip(row, widths, numeric)]
        lines.append(" " * indent + "  ".join(parts).rstrip())
    return "\n".join(lines)


def _looks_numeric(text: str) -> bool:
    stripped = text.strip().lstrip("+-±$€£").replace(",", "").rstrip("%kM")
    return text.strip() == MISSING or stripped.replace(".", "", 1).isdigit()


FILTERS = {"money": money, "money_short": money_short, "signed_money": signed_money, "percent": percent,
           "signed_percent": signed_percent, "count": count, "number": number, "timestamp": timestamp,
           "cell": cell, "text_table": text_table, "unit_money": unit_money}
