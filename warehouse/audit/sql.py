"""Read-only SQL for auditors: one SELECT over the warehouse views, with a row limit and a time limit.

DuckDB's sandbox (``catalog.connect``) already forbids touching files outside the
data directory, installing or loading extensions and changing settings. That is
not enough for auditors: inside the data directory sit the warehouse files
themselves, which ``read_parquet`` would read past the views (and past a tenant
scope). So the statement is inspected before it runs, using DuckDB's own parser
(``json_serialize_sql``), and refused unless:

* it is exactly one statement, and a SELECT (so no INSERT, CREATE, COPY, ATTACH,
  INSTALL/LOAD, SET, PRAGMA, EXPORT, CALL, ...);
* every table it names is one of the connection's views or a CTE defined in scope,
  unqualified (``main.x``, ``other_db.x`` and file paths such as ``FROM 'x.parquet'``
  are refused);
* it calls no table function (``read_parquet``, ``read_csv``, ``query``, ``glob``,
  ``duckdb_settings``, ...) and none of the scalar functions in ``DENIED_FUNCTIONS``.

A CTE name covers the statement's body and the CTEs defined after it, never the
ones before it: DuckDB resolves a name used before its CTE to the catalog, so
``WITH a AS (FROM x), x AS (...)`` would otherwise smuggle in an outside ``x``.
"""
from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass

import duckdb
import pyarrow as pa

from warehouse.catalog import is_vanished_file_error

DENIED_FUNCTIONS = {"getenv", "current_setting"}
_STATEMENT_NAMES = {"LOAD": "INSTALL/LOAD", "MULTI": "compound (PIVOT, ...)"}
_SYSTEM_PREFIXES = ("duckdb_", "pg_", "sqlite_", "information_schema", "pragma_")


class SqlError(Exception):
    """A query that is not run (or not finished); ``status`` is the HTTP status to answer with."""

    status = 400

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class SqlRefused(SqlError):
    """The statement would write, read outside the views or change settings."""

    status = 403


class SqlTimeout(SqlError):
    """The query ran past the time limit and was interrupted."""

    status = 408


class SqlRetry(SqlError):
    """A file vanished while the query ran (a compaction replaced it): the same query will work again."""

    status = 503


@dataclass
class SqlResult:
    table: pa.Table
    truncated: bool  # more rows existed than the limit
    elapsed_ms: float


def run_sql(con: duckdb.DuckDBPyConnection, sql: str, views: set[str], limit: int,
            time_limit_s: float) -> SqlResult:
    """Check ``sql`` (see the module docstring), then run it with at most ``limit`` rows and ``time_limit_s``."""
    check_statement(con, sql, views)
    started = time.perf_counter()
    timer = threading.Timer(time_limit_s, con.interrupt)
    timer.start()
    try:
        table = con.sql(sql).limit(limit + 1).to_arrow_table()
    except duckdb.InterruptException:
        raise SqlTimeout(f"the query ran longer than the time limit of {time_limit_s:g} s and was stopped; "
                         "narrow it (e.g. WHERE date BETWEEN ... AND ...)") from None
    except duckdb.PermissionException as exc:
        raise SqlRefused(f"refused by the sandbox: {_message(exc)}") from None
    except duckdb.Error as exc:
        if is_vanished_file_error(exc):
            raise SqlRetry("the warehouse changed while the query ran (a compaction); run it again") from None
        raise SqlError(_message(exc)) from None
    finally:
        timer.cancel()
    elapsed_ms = (time.perf_counter() - started) * 1000
    truncated = table.num_rows > limit
    return SqlResult(table.slice(0, limit) if truncated else table, truncated, elapsed_ms)


def check_statement(con: duckdb.DuckDBPyConnection, sql: str, views: set[str]) -> None:
    """Raise SqlError (malformed) or SqlRefused (not allowed) unless ``sql`` is one SELECT over ``views``."""
    if not sql or not sql.strip():
        raise SqlError("the SQL text is empty")
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as exc:
        raise SqlError(_message(exc)) from None
    if len(statements) != 1:
        raise SqlError(f"send exactly one SQL statement, not {len(statements)}")
    kind = statements[0].type
    if kind != duckdb.StatementType.SELECT:
        shown = _STATEMENT_NAMES.get(kind.name, kind.name)
        raise SqlRefused(f"{shown} statements are not allowed: only read-only SELECT queries over the views "
                         f"({_listing(views)})")
    tree = json.loads(con.execute("SELECT json_serialize_sql(?)", [sql]).fetchall()[0][0])
    if tree.get("error"):
        raise SqlError(f"cannot analyse the statement: {tree.get('error_message')}")
    for statement in tree["statements"]:
        _walk(statement, frozenset(), views)


def _walk(value, ctes: frozenset[str], views: set[str]) -> None:
    if isinstance(value, list):
        for item in value:
            _walk(item, ctes, views)
        return
    if not isinstance(value, dict):
        return
    if "cte_map" in value:
        ctes = _walk_ctes(value["cte_map"].get("map", []), ctes, views)
    _check_node(value, ctes, views)
    for key, child in value.items():
        if key != "cte_map":
            _walk(child, ctes, views)


def _walk_ctes(entries: list, ctes: frozenset[str], views: set[str]) -> frozenset[str]:
    """Each CTE body sees itself (recursion) and the CTEs before it; the statement body sees all."""
    for entry in entries:
        ctes = ctes | {entry["key"].lower()}
        _walk(entry["value"], ctes, views)
    return ctes


def _check_node(node: dict, ctes: frozenset[str], views: set[str]) -> None:
    kind = node.get("type")
    if kind == "TABLE_FUNCTION":
        name = node.get("function", {}).get("function_name", "?")
        raise SqlRefused(f"table functions such as {name}() are not allowed (they read files or settings past "
                         f"the views); query the views: {_listing(views)}")
    if kind == "BASE_TABLE":
        _check_table(node, ctes, views)
    if kind == "SHOW_REF" and node.get("query") is None:
        raise SqlRefused(f"SHOW is not allowed; the views are: {_listing(views)} (DESCRIBE <view> works)")
    if node.get("class") == "FUNCTION" and str(node.get("function_name", "")).lower() in DENIED_FUNCTIONS:
        raise SqlRefused(f"the function {node['function_name']}() is not allowed")


def _check_table(node: dict, ctes: frozenset[str], views: set[str]) -> None:
    name = str(node.get("table_name", ""))
    if node.get("schema_name") or node.get("catalog_name"):
        qualified = ".".join(p for p in (node.get("catalog_name"), node.get("schema_name"), name) if p)
        raise SqlRefused(f"qualified names such as {qualified} are not allowed; name the view alone "
                         f"({_listing(views)})")
    lowered = name.lower()
    if lowered in views or lowered in ctes:
        return
    if "/" in name or "." in name or "\\" in name:
        raise SqlRefused(f"reading files ({name!r}) is not allowed; query the views: {_listing(views)}")
    if lowered.startswith(_SYSTEM_PREFIXES):
        raise SqlRefused(f"system tables such as {name} are not available; the views are: {_listing(views)}")
    raise SqlError(f"unknown view {name!r}; the views are: {_listing(views)}")


def _listing(views: set[str]) -> str:
    return ", ".join(sorted(views))


def _message(exc: Exception) -> str:
    text = str(exc).strip()
    return text[:1000] if text else type(exc).__name__
