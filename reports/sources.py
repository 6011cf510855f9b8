"""Reading the warehouse for a report: one read-only connection that logs every query it runs.

Reports aggregate in DuckDB and fetch only small results (a few hundred rows): the
population itself never passes through Python, except when it is streamed to an
export file. The log of queries is part of the audit report's evidence ("how the
evidence was produced"): each entry is the purpose, the SQL and its parameters,
exactly as run.

Job result tables and audit logs (``budget_variance``, ``drift``, ``alert_events``,
``erasures``, ...) exist only once their job or feature has run; ``has_view`` lets
a section say "none recorded" instead of failing.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any, Sequence

import pyarrow as pa

from warehouse.catalog import connect

QUERY_SETTINGS = {"threads": 2, "memory_limit": "2GB"}


@dataclass(frozen=True)
class LoggedQuery:
    purpose: str
    sql: str
    params: tuple[Any, ...]
    rows: int

    def as_dict(self) -> dict:
        return {"purpose": self.purpose, "sql": self.sql, "params": [_plain(p) for p in self.params],
                "rows": self.rows}


@dataclass
class Warehouse:
    """A read-only warehouse connection for one report; close it when done (or use ``with``)."""

    data_dir: Path
    queries: list[LoggedQuery] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.data_dir = Path(self.data_dir)
        spill = self.data_dir / "spill" / "reports"  # the deduplicating window may spill millions of rows
        spill.mkdir(parents=True, exist_ok=True)
        self.con = connect(self.data_dir, settings={**QUERY_SETTINGS, "temp_directory": spill.resolve().as_posix()})
        self._views = {row[0] for row in self.con.execute(
            "SELECT view_name FROM duckdb_views() WHERE NOT internal").fetchall()}

    def __enter__(self) -> "Warehouse":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.con.close()

    def has_view(self, name: str) -> bool:
        return name in self._views

    def columns(self, view: str) -> list[str]:
        return [row[0] for row in self.con.execute(
            "SELECT column_name FROM duckdb_columns() WHERE table_name = ? ORDER BY column_index", [view]).fetchall()]

    def table(self, purpose: str, sql: str, params: Sequence[Any] = ()) -> pa.Table:
        """Run ``sql`` and log it; timestamps come back as Arrow (no pytz needed)."""
        result = self.con.sql(_dedent(sql), params=list(params) or None).to_arrow_table()
        self.queries.append(LoggedQuery(purpose, _dedent(sql), tuple(params), result.num_rows))
        return result

    def rows(self, purpose: str, sql: str, params: Sequence[Any] = ()) -> list[dict]:
        return self.table(purpose, sql, params).to_pylist()

    def one(self, purpose: str, sql: str, params: Sequence[Any] = ()) -> dict:
        found = self.rows(purpose, sql, params)
        return found[0] if found else {}

    def execute(self, purpose: str, sql: str, params: Sequence[Any] = ()) -> None:
        """A statement without a result (a temporary table of aggregates), logged like a query."""
        self.con.execute(_dedent(sql), list(params) or None)
        self.queries.append(LoggedQuery(purpose, _dedent(sql), tuple(params), 0))

    def reader(self, purpose: str | None, sql: str, params: Sequence[Any] = (), batch_rows: int = 65_536):
        """Stream a large result as Arrow record batches; ``purpose`` None: the caller logs it (see ``log``)."""
        if purpose is not None:
            self.log(purpose, sql, params)
        return self.con.sql(_dedent(sql), params=list(params) or None).to_arrow_reader(batch_rows)

    def log(self, purpose: str, sql: str, params: Sequence[Any] = (), rows: int = -1) -> None:
        self.queries.append(LoggedQuery(purpose, _dedent(sql), tuple(params), rows))


def _dedent(sql: str) -> str:
    lines = [line.rstrip() for line in sql.strip("\n").splitlines()]
    indent = min((len(line) - len(line.lstrip()) for line in lines if line.strip()), default=0)
    return "\n".join(line[indent:] for line in lines).strip()


def _plain(value: Any) -> Any:
    if isinstance(value, (date, datetime)):
        return value.isoformat()
    return value
