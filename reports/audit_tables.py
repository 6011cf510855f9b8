"""The audit report's tables as text cells: what the PDF lays out and the golden files pin.

The HTML template formats the same data itself (so a custom template can show it
differently); these functions fix one rendering of each table, with the same
formatting filters, for the PDF and for comparing against golden files.
"""
from __future__ import annotations

from dataclasses import dataclass

from reports.audit import AuditReport, Pivot
from reports.formatting import cell, count, money, number, percent, timestamp, unit_money


@dataclass(frozen=True)
class TextTable:
    title: str
    headers: list[str]
    rows: list[list[str]]
    numeric: frozenset[int] = frozenset()  # right-aligned columns
    widths: tuple[float, ...] | None = None  # relative widths, for the PDF

    def as_csv_rows(self) -> list[dict]:
        return [dict(zip(self.headers, row)) for row in self.rows]


def inventory(report: AuditReport) -> TextTable:
    rows = [[cell(r["model"]), cell(r["model_version"]), cell(r["providers"]), cell(r["systems"]),
             timestamp(r["first_seen"]), timestamp(r["last_seen"]), count(r["records"]), count(r["decisions"]),
             r["owner"] or "not in the configured inventory", r["purpose"] or "—"] for r in report.inventory]
    return TextTable("Model inventory", ["Model", "Version", "Provider", "Systems", "First seen", "Last seen",
                                         "Records", "Decisions", "Owner", "Purpose"], rows, frozenset({6, 7}),
                     (12, 12, 8, 10, 12, 12, 7, 7, 10, 16))


def outcomes(report: AuditReport) -> TextTable:
    rows = [[r["outcome"], count(r["decisions"]), percent(r["share"])] for r in report.outcomes]
    return TextTable("Decisions by outcome", ["Outcome", "Decisions", "Share"], rows, frozenset({1, 2}), (3, 2, 2))


def pivot(title: str, table: Pivot) -> TextTable:
    headers = [name.replace("_", " ").capitalize() for name in table.key_names] + table.labels + ["Total"]
    rows = [[cell(value) for value in row["key"]] + [count(n) for n in row["counts"]] + [count(row["total"])]
            for row in table.rows]
    keys = len(table.key_names)
    return TextTable(title, headers, rows, frozenset(range(keys, len(headers))),
                     tuple([3] * keys + [2] * (len(headers) - keys)))


def reconciliation(report: AuditReport) -> TextTable:
    rows = [[d.day.isoformat(), count(d.landed), count(d.in_view), count(d.compaction_dropped),
             count(d.view_dedup), count(d.retention_removed), count(d.residual), d.note]
            for d in report.reconciliation]
    return TextTable("Records per day: manifest vs view (all systems)",
                     ["Day", "Landed", "In view", "Duplicates merged", "Duplicates in view", "Retention", "Residual",
                      "Explanation"], rows, frozenset(range(1, 7)), (9, 7, 7, 9, 9, 7, 7, 28))


def sample(report: AuditReport, symbol: str = "$") -> TextTable:
    rows = [[str(i), timestamp(r["start_time"]), f"{r['trace_id']} {r['span_id']}", cell(r["service_name"]),
             f"{cell(r['model'])} {cell(r['model_version'])}",
             f"{cell(r['input_hash'])} ({cell(r['input_hash_basis'])})",
             cell(r["decision_label"]), number(r["decision_score"]), cell(r["decision_reasons"]), cell(r["attempt"]),
             f"{count(r['input_tokens'])} / {count(r['output_tokens'])}",
             f"{unit_money(r['cost_usd'], symbol)} ({cell(r['cost_source'])})"]
            for i, r in enumerate(report.sample, start=1)]
    return TextTable(f"Random sample (seed {report.seed})",
                     ["#", "Time (UTC)", "Trace / span", "System", "Model / version", "Input hash (basis)",
                      "Outcome", "Score", "Reasons", "Try", "Tokens in/out", "Cost"],
                     rows, frozenset({0, 7, 9, 10, 11}), (3, 9, 14, 7, 10, 16, 6, 5, 10, 3, 7, 10))


def reviews(report: AuditReport, symbol: str = "$") -> TextTable:
    rows = [[cell(r["model"]), cell(r["model_version"]), count(r["reviews"]), count(r["overrides"]),
             percent(r["override_rate"]), f"{r['review_hours'] or 0:,.1f}",
             money(r["review_cost_usd"], symbol) if r["review_cost_usd"] is not None else "unpriced"]
            for r in report.reviews]
    return TextTable("Human reviews by model version",
                     ["Model", "Version", "Reviews", "Overrides", "Override rate", "Reviewer hours", "Review cost"],
                     rows, frozenset({2, 3, 4, 5, 6}), (4, 3, 2, 2, 2, 2, 3))


def key_tables(report: AuditReport, symbol: str = "$") -> list[TextTable]:
    return [inventory(report), outcomes(report), pivot("Decisions by model version", report.by_version),
            pivot("Decisions by day", report.by_day), reviews(report, symbol), reconciliation(report),
            sample(report, symbol)]
