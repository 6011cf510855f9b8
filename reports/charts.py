"""The weekly email's charts as PNG bytes (matplotlib, Agg backend: no display, no browser).

Mail clients show images but run nothing, so charts are pictures embedded in the
message (``cid:``). They are drawn at twice the size the HTML shows them, so they
stay sharp on high-density screens, and they carry their own title and legend: a
client that blocks images still has the tables.
"""
from __future__ import annotations

import io
from datetime import date, timedelta

import matplotlib

matplotlib.use("Agg")  # before pyplot: never try a display
import matplotlib.dates as mdates  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import FuncFormatter, PercentFormatter  # noqa: E402

WIDTH_IN, HEIGHT_IN, DPI = 6.0, 2.7, 200  # shown 600 px wide in the email
PALETTE = ["#2563eb", "#f59e0b", "#10b981", "#ef4444", "#8b5cf6", "#0ea5e9", "#9ca3af"]
OTHER_COLOR = "#9ca3af"


def _figure():
    fig, ax = plt.subplots(figsize=(WIDTH_IN, HEIGHT_IN), dpi=DPI)
    fig.patch.set_facecolor("white")
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    ax.tick_params(labelsize=7)
    ax.grid(axis="y", color="#e5e7eb", linewidth=0.6)
    ax.set_axisbelow(True)
    return fig, ax


def _png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png", dpi=DPI)
    plt.close(fig)
    return buffer.getvalue()


def cost_trend(trend: list[dict], first_day: date, week_start: date, week_end: date, symbol: str = "$") -> bytes:
    """Daily spend stacked by model from ``first_day`` to the week's last day; the report's week shaded."""
    fig, ax = _figure()
    if trend:
        days = [first_day + timedelta(days=i) for i in range((week_end - first_day).days + 1)]
        totals: dict[str, float] = {}
        for row in trend:
            totals[row["model"]] = totals.get(row["model"], 0.0) + row["cost_usd"]
        models = sorted(totals, key=lambda m: (m == "other", -totals[m], m))
        series = {m: [0.0] * len(days) for m in models}
        index = {day: i for i, day in enumerate(days)}
        for row in trend:
            series[row["model"]][index[row["day"]]] += row["cost_usd"]
        colors = [OTHER_COLOR if m == "other" else PALETTE[i % (len(PALETTE) - 1)] for i, m in enumerate(models)]
        ax.axvspan(week_start, week_end, color="#fef3c7", linewidth=0, zorder=0)
        ax.text(week_start, 1.0, " this week", transform=ax.get_xaxis_transform(), fontsize=6.5, color="#92400e",
                va="top", ha="left")
        ax.stackplot(days, *series.values(), labels=models, colors=colors, alpha=0.95, linewidth=0, zorder=2)
        ax.legend(fontsize=6.5, loc="upper left", ncols=4, frameon=False, bbox_to_anchor=(0, 1.0))
        ax.set_xlim(days[0], days[-1])
        ax.set_ylim(0, max(sum(values) for values in zip(*series.values())) * 1.35 or 1)
        ax.xaxis.set_major_formatter(mdates.DateFormatter("%b %d"))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _: _axis_money(value, symbol)))
    else:
        _no_data(ax, "no spend recorded")
    ax.set_title("Daily spend by model", fontsize=9, loc="left")
    return _png(fig)


def budget_burn(burn: dict[str, list[dict]]) -> bytes:
    """Each budget's spend to date as a share of its amount, day by day, against an even pace."""
    fig, ax = _figure()
    drawn = 0
    for i, (name, rows) in enumerate(sorted(burn.items())):
        rows = [r for r in rows if r.get("amount_usd")]
        if not rows:
            continue
        color = PALETTE[i % (len(PALETTE) - 1)]
        elapsed = [r["elapsed_days"] for r in rows]
        ax.plot(elapsed, [r["actual_usd"] / r["amount_usd"] for r in rows], color=color, linewidth=1.6, label=name)
        last = rows[-1]
        if last.get("forecast_pct") is not None:
            ax.plot([last["elapsed_days"], last["period_days"]], [last["actual_usd"] / last["amount_usd"],
                                                                  last["forecast_pct"]],
                    color=color, linewidth=1.2, linestyle="--")
            ax.annotate(f"{last['forecast_pct']:.0%}", (last["period_days"], last["forecast_pct"]), fontsize=6.5,
                        color=color, xytext=(3, 0), textcoords="offset points", va="center")
        drawn += 1
    if drawn:
        longest = max(r["period_days"] for rows in burn.values() for r in rows if r.get("amount_usd"))
        ax.plot([0, longest], [0, 1], color="#6b7280", linewidth=0.8, linestyle=":", label="even pace")
        ax.axhline(1.0, color="#b91c1c", linewidth=0.8)
        ax.set_xlim(0, longest * 1.08)
        ax.set_ylim(bottom=0)
        ax.legend(fontsize=6.5, loc="upper left", frameon=False)
        ax.set_xlabel("days into the budget period (dashed: forecast to period end)", fontsize=7)
        ax.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
    else:
        _no_data(ax, "no budget with an amount")
    ax.set_title("Budget burn: spent to date, share of the budget", fontsize=9, loc="left")
    return _png(fig)


def _no_data(ax, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="#6b7280", fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])


def _axis_money(value: float, symbol: str) -> str:
    if value >= 1e6:
        return f"{symbol}{value / 1e6:g}M"
    if value >= 1e3:
        return f"{symbol}{value / 1e3:g}k"
    return f"{symbol}{value:g}"
