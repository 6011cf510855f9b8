"""Connections for auditors: sandboxed, limited, and for a tenant-scoped key holding only that tenant's rows.

A tenant-scoped connection has no unscoped relation in it at all: every view is
re-created from its own SQL with a filter, so no name, however it is reached,
leads to another tenant's rows. Per view, by its columns:

* a ``tenant`` column: ``WHERE tenant = <tenant>`` (inference records; the access
  log, whose ``tenant`` is the scope of the key that made the request; job results);
* else ``trace_id`` + ``parent_span_id`` (HTTP attempts): only rows under one of the
  tenant's inference spans;
* else ``trace_id`` + ``span_id`` (cost versions): only rows of the tenant's spans;
* ``SHARED_COLUMNS``: logs about the system (who repriced when and why) without
  their cross-tenant totals;
* anything else is dropped (job run logs, erasure receipts): not visible to a scoped key.

Files stay reachable through ``read_parquet`` and friends, which is why
``warehouse.audit.sql`` refuses every table function. Python replacement scans
(DuckDB reading a Python variable named in the SQL) are off on every auditor
connection: in the server, a local variable could otherwise be queried by name.
"""
from __future__ import annotations

from pathlib import Path

import duckdb

from warehouse.catalog import connect

# Registered Arrow tables are temporary views named _<dataset>_empty: always zero rows.
_OWN_VIEWS = "NOT internal AND NOT temporary AND schema_name = 'main'"
SHARED_COLUMNS = {"repricings": ["cost_version", "kind", "repriced_at", "actor", "reason", "date_from", "date_to"]}


def audit_connection(data_dir: Path, tenant: str | None = None,
                     memory_limit: str = "2GB") -> duckdb.DuckDBPyConnection:
    """A read-only, sandboxed connection over the warehouse views, restricted to ``tenant`` when given."""
    spill = Path(data_dir) / "spill" / "audit"
    spill.mkdir(parents=True, exist_ok=True)
    con = connect(Path(data_dir), settings={"python_enable_replacements": "false", "memory_limit": memory_limit,
                                            "temp_directory": spill.resolve().as_posix()})
    try:
        if tenant is not None:
            restrict_to_tenant(con, tenant)
    except BaseException:
        con.close()
        raise
    return con


def view_names(con: duckdb.DuckDBPyConnection) -> set[str]:
    """The views a query may name (lower case); names starting with ``_`` are internal."""
    rows = con.execute(f"SELECT view_name FROM duckdb_views() WHERE {_OWN_VIEWS}").fetchall()
    return {name.lower() for (name,) in rows if not name.startswith("_")}


def restrict_to_tenant(con: duckdb.DuckDBPyConnection, tenant: str) -> None:
    """Re-create every view so it holds only ``tenant``'s rows (see the module docstring)."""
    views = con.execute(f"SELECT view_name, sql FROM duckdb_views() WHERE {_OWN_VIEWS}").fetchall()
    columns: dict[str, set[str]] = {}
    for table, column in con.execute("SELECT table_name, column_name FROM duckdb_columns() "
                                     "WHERE NOT internal AND schema_name = 'main'").fetchall():
        columns.setdefault(table, set()).add(column)
    literal = "'" + tenant.replace("'", "''") + "'"
    for name, sql in views:
        body = _view_body(name, sql)
        scoped = _scoped_select(name, body, columns.get(name, set()), literal)
        if scoped is None:
            con.execute(f'DROP VIEW "{name}"')
        else:
            con.execute(f'CREATE OR REPLACE VIEW "{name}" AS {scoped}')


def _scoped_select(name: str, body: str, columns: set[str], tenant_literal: str) -> str | None:
    if "tenant" in columns:
        return f"SELECT * FROM ({body}) WHERE tenant = {tenant_literal}"
    if {"trace_id", "parent_span_id"} <= columns:
        return (f"SELECT v.* FROM ({body}) v SEMI JOIN inferences_all i "
                "ON v.trace_id = i.trace_id AND v.parent_span_id = i.span_id")
    if {"trace_id", "span_id"} <= columns:
        return (f"SELECT v.* FROM ({body}) v SEMI JOIN inferences_all i "
                "ON v.trace_id = i.trace_id AND v.span_id = i.span_id")
    if name in SHARED_COLUMNS:
        return f"SELECT {', '.join(SHARED_COLUMNS[name])} FROM ({body})"
    return None


def _view_body(name: str, sql: str) -> str:
    """The SELECT of a view from DuckDB's ``CREATE VIEW <name> AS <select>;``; fail closed on anything else."""
    text = sql.strip()
    for prefix in (f"CREATE VIEW {name} AS ", f'CREATE VIEW "{name}" AS '):
        if text.startswith(prefix):
            return text[len(prefix):].rstrip(";").strip()
    raise RuntimeError(f"cannot restrict view {name} to a tenant: unexpected definition {text[:80]!r}")
