"""What happened to the system in the period: drift verdicts, alerts, repricings, erasures, retention.

Each comes from its own view, written by another part of inferledger (a job, the
alert engine, ``reprice``, ``erase``, retention). A view that does not exist yet,
or has no row in the period, is reported as "none recorded", which is itself
evidence. Columns are chosen from a preferred list when the view has them, so a
view that gains columns later still renders.
"""
from __future__ import annotations

from dataclasses import dataclass

from reports.decisions import Scope
from reports.sources import Warehouse

MAX_ROWS = 200


@dataclass(frozen=True)
class EventSource:
    title: str
    view: str
    time_columns: tuple[str, ...]  # the first one the view has is the event's time
    columns: tuple[str, ...]  # shown when present, in this order
    flagged: str | None = None  # SQL condition: only these rows are listed (all are counted)
    system_column: str | None = None  # filtered by --system when the view has it
    explanation: str = ""


SOURCES = (
    EventSource("Drift verdicts", "drift", ("evaluated_at", "window_end"),
                ("evaluated_at", "service", "model", "model_version", "reference_version", "feature", "test",
                 "statistic", "p_value", "effect", "verdict"),
                flagged="verdict NOT IN ('none', 'insufficient')", system_column="service",
                explanation="Comparisons of the current window against the reference window (and of a new model "
                "version against the one it replaced); listed: verdicts other than none and insufficient."),
    EventSource("Alerts", "alert_events", ("event_time",),
                ("event_time", "rule", "severity", "event", "from_state", "to_state", "metric", "labels", "value",
                 "reason"),
                explanation="Alert state changes (pending, firing, resolved, reminders) recorded by the alert engine."),
    EventSource("Repricings", "repricings", ("repriced_at",),
                ("repriced_at", "cost_version", "kind", "actor", "reason", "date_from", "date_to", "records",
                 "changed", "total_before_usd", "total_after_usd"),
                explanation="New cost versions written by inferledger reprice or by capacity allocation."),
    EventSource("Erasures", "erasures", ("erased_at",),
                ("erased_at", "erasure_id", "actor", "reason", "subject_hash", "rows_affected", "files"),
                explanation="Personal data erased on request; the subject appears only as a hash."),
    EventSource("Retention actions", "retention_actions", ("applied_at",),
                ("applied_at", "action_id", "actor", "dataset", "partition_date", "retention_days", "rows",
                 "chain_seq"),
                explanation="Whole days deleted once older than the retention limit, each with a manifest entry."),
)


@dataclass
class EventSection:
    """One kind of event: ``total`` in the period, ``listed_total`` of them listable, ``rows`` the first ones."""

    title: str
    view: str
    explanation: str
    available: bool
    total: int
    columns: list[str]
    rows: list[dict]
    listed_total: int = 0

    @property
    def truncated(self) -> bool:
        return len(self.rows) < self.listed_total


def read_events(warehouse: Warehouse, scope: Scope, sources=SOURCES) -> list[EventSection]:
    return [_read(warehouse, scope, source) for source in sources]


def _read(warehouse: Warehouse, scope: Scope, source: EventSource) -> EventSection:
    empty = EventSection(source.title, source.view, source.explanation, False, 0, [], [])
    if not warehouse.has_view(source.view):
        return empty
    present = warehouse.columns(source.view)
    time_column = next((c for c in source.time_columns if c in present), None)
    if time_column is None:
        return empty
    columns = [c for c in source.columns if c in present] or present[:10]
    where, params = f"{time_column} >= ? AND {time_column} < ?", [scope.start, scope.end]
    if scope.system and source.system_column in present:
        where += f" AND {source.system_column} = ?"
        params.append(scope.system)
    flagged = source.flagged if source.flagged and _mentions_present(source.flagged, present) else "TRUE"
    counts = warehouse.one(f"{source.title.lower()} in the period (count)", f"""
        SELECT count(*) AS total, count(*) FILTER (WHERE {flagged}) AS listed
        FROM {source.view} WHERE {where}""", params)
    rows = warehouse.rows(f"{source.title.lower()} in the period", f"""
        SELECT {', '.join(columns)} FROM {source.view}
        WHERE {where} AND {flagged}
        ORDER BY {time_column} LIMIT {MAX_ROWS}""", params)
    return EventSection(source.title, source.view, source.explanation, True, counts.get("total", 0), columns, rows,
                        listed_total=counts.get("listed", 0))


def _mentions_present(condition: str, present: list[str]) -> bool:
    return condition.split()[0] in present
