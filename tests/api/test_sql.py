"""POST /api/v1/sql: read-only, limited, refused clearly, and for a tenant-scoped key that tenant's rows only."""
from __future__ import annotations

import os
import time
from datetime import date

import pytest

from tests.api.keys import client, keyed_server
from tests.api.spans import PRICES, http_client, judge
from tests.conftest import wait_for_rows
from tests.otlp_builders import export_request
from warehouse.manifest import manifest_path, read_entries
from warehouse.pricing import load_book, reprice

PROTOBUF = {"Content-Type": "application/x-protobuf"}


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """3 acme inferences (scoped ingest key) and 2 globex ones, each with one HTTP attempt under it."""
    data_dir = tmp_path_factory.mktemp("sql") / "data"
    with keyed_server(data_dir, auth__sql_row_limit=3, auth__sql_max_row_limit=4, auth__sql_time_limit_s=1.0) \
            as (server, keys):
        for key, tenant, count in ((keys.acme_ingest, None, 3), (keys.ingest, "globex", 2)):
            spans = []
            for n in range(count):
                inference = judge(os.urandom(16), os.urandom(8), n)
                spans += [inference, http_client(inference.trace_id, os.urandom(8), inference.span_id, n, 200)]
            resource = {"inferledger__tenant__id": tenant} if tenant else {}
            with client(server, key) as sender:
                assert sender.post("/v1/traces", content=export_request(spans, **resource).SerializeToString(),
                                   headers=PROTOBUF).status_code == 200
        wait_for_rows(data_dir, "select * from inferences", 5)
        wait_for_rows(data_dir, "select * from http_attempts", 5)
        price_file = data_dir.parent / "prices.toml"  # a cost version for every record
        price_file.write_text(PRICES)
        day = date(2025, 11, 23)
        assert reprice(data_dir, load_book(price_file), day, day, actor="tester", reason="sql test").cost_version == 1
        yield server, keys


def sql(api, text: str, **extra):
    return api.post("/api/v1/sql", json={"sql": text, **extra})


def scalar(api, text: str):
    answer = sql(api, text)
    assert answer.status_code == 200, answer.text
    return answer.json()["rows"][0][0]


def test_a_query_returns_columns_and_json_rows(served):
    server, keys = served
    with client(server, keys.auditor) as api:
        answer = sql(api, "SELECT tenant, count(*) AS n, min(start_time) AS first FROM inferences "
                          "GROUP BY tenant ORDER BY tenant")
    body = answer.json()
    assert [c["name"] for c in body["columns"]] == ["tenant", "n", "first"]
    assert body["rows"] == [["acme", 3, "2025-11-23T12:13:20Z"], ["globex", 2, "2025-11-23T12:13:20Z"]]
    assert body["row_count"] == 2 and body["truncated"] is False and body["limit"] == 3


def test_row_limit_default_and_maximum(served):
    server, keys = served
    with client(server, keys.auditor) as api:
        default = sql(api, "SELECT span_id FROM inferences").json()
        assert (default["row_count"], default["truncated"]) == (3, True)
        four = sql(api, "SELECT span_id FROM inferences", limit=4).json()
        assert (four["row_count"], four["truncated"]) == (4, True)
        too_many = sql(api, "SELECT span_id FROM inferences", limit=5)
        assert too_many.status_code == 400 and "exceeds the maximum of 4 rows" in too_many.json()["detail"]


def test_time_limit_interrupts_the_query(served):
    server, keys = served
    started = time.monotonic()
    with client(server, keys.auditor) as api:
        answer = sql(api, "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 1000000000) "
                          "SELECT count(*) FROM r")
    assert answer.status_code == 408 and "time limit of 1 s" in answer.json()["detail"]
    assert time.monotonic() - started < 10


REFUSED = [
    ("INSERT INTO inferences SELECT * FROM inferences", 403, "INSERT statements are not allowed"),
    ("DELETE FROM inferences", 403, "DELETE statements are not allowed"),
    ("CREATE TABLE stolen AS SELECT * FROM inferences", 403, "CREATE statements are not allowed"),
    ("DROP VIEW inferences", 403, "DROP statements are not allowed"),
    ("COPY (SELECT * FROM inferences) TO '/tmp/stolen.csv'", 403, "COPY statements are not allowed"),
    ("EXPORT DATABASE '/tmp/stolen'", 403, "EXPORT statements are not allowed"),
    ("ATTACH '/tmp/other.duckdb' AS other", 403, "ATTACH statements are not allowed"),
    ("INSTALL httpfs", 403, "INSTALL/LOAD statements are not allowed"),
    ("LOAD httpfs", 403, "INSTALL/LOAD statements are not allowed"),
    ("SET enable_external_access = true", 403, "SET statements are not allowed"),
    ("PRAGMA database_list", 403, "PRAGMA statements are not allowed"),
    ("CALL duckdb_settings()", 403, "CALL statements are not allowed"),
    ("SELECT * FROM read_csv('/etc/passwd')", 403, "table functions such as read_csv()"),
    ("SELECT * FROM '/etc/passwd'", 403, "reading files ('/etc/passwd') is not allowed"),
    ("SELECT * FROM read_text('/etc/hostname')", 403, "table functions such as read_text()"),
    ("SELECT * FROM duckdb_settings()", 403, "table functions such as duckdb_settings()"),
    ("SELECT getenv('HOME')", 403, "getenv() is not allowed"),
    ("SELECT 1; SELECT 2", 400, "exactly one SQL statement, not 2"),
    ("SELEC 1", 400, "syntax error"),
    ("", 400, "empty"),
    ("SELECT * FROM no_such_view", 400, "unknown view 'no_such_view'; the views are:"),
]


@pytest.mark.parametrize("text,status,message", REFUSED, ids=[r[0][:30] or "empty" for r in REFUSED])
def test_refusals(served, text, status, message):
    server, keys = served
    with client(server, keys.admin) as api:  # even an admin: the SQL endpoint only reads the views
        answer = sql(api, text)
    assert answer.status_code == status, answer.text
    assert message in answer.json()["detail"]


def test_scoped_auditor_sees_its_tenant_in_every_view(served):
    server, keys = served
    with client(server, keys.acme_auditor) as api:
        for view in ("inferences", "inferences_raw", "inferences_all"):
            assert scalar(api, f"SELECT list(DISTINCT tenant) FROM {view}") == ["acme"]
        assert scalar(api, "SELECT count(*) FROM inferences") == 3
        assert scalar(api, "SELECT count(*) FROM http_attempts") == 3
        assert scalar(api, "SELECT count(*) FROM cost_versions") == 3
        assert scalar(api, "SELECT count(*) FROM latest_costs") == 3
        assert scalar(api, "SELECT count(*) FROM repricings") == 1
        columns = [c["name"] for c in sql(api, "SELECT * FROM repricings").json()["columns"]]
        assert "total_after_usd" not in columns and "reason" in columns  # no cross-tenant totals
        hidden = sql(api, "SELECT * FROM erasures")
        assert hidden.status_code == 400 and "unknown view" in hidden.json()["detail"]
    with client(server, keys.auditor) as api:
        assert scalar(api, "SELECT count(*) FROM inferences") == 5
        assert scalar(api, "SELECT count(*) FROM http_attempts") == 5


def test_scoped_access_log_shows_only_requests_by_keys_of_its_tenant(served):
    server, keys = served
    with client(server, keys.auditor) as api:
        sql(api, "SELECT 'unscoped auditor was here'")
    with client(server, keys.acme_auditor) as api:
        sql(api, "SELECT 'acme auditor was here'")
    server.pipeline.api.access_log.flush()
    with client(server, keys.acme_auditor) as api:
        assert scalar(api, "SELECT list(DISTINCT key_name) FROM access_log") == ["test acme_auditor"]
    with client(server, keys.auditor) as api:
        names = scalar(api, "SELECT list(DISTINCT key_name ORDER BY key_name) FROM access_log")
    assert {"test acme_auditor", "test auditor", "test admin"} <= set(names)


def warehouse_file(server) -> str:
    entry = next(e for e in read_entries(manifest_path(server.data_dir)) if e.get("dataset") == "inferences")
    return str(server.data_dir.resolve() / entry["file"])


def test_scoped_auditor_cannot_bypass_the_views(served):
    server, keys = served
    path = warehouse_file(server)
    folder = path.rsplit("/", 2)[0]
    attempts = [
        f"SELECT * FROM read_parquet('{path}')",
        f"SELECT * FROM read_parquet('{folder}/*/*.parquet', hive_partitioning = true)",
        f"SELECT * FROM '{path}'",
        f"SELECT * FROM inferences UNION ALL SELECT * FROM (SELECT * FROM parquet_scan('{path}'))",
        f"SELECT * FROM inferences WHERE span_id IN (SELECT span_id FROM read_parquet('{path}'))",
        f"SELECT * FROM query('SELECT * FROM read_parquet(''{path}'')')",
        "SELECT * FROM query_table('inferences_all')",
        "SELECT * FROM main.inferences_all",
        "SELECT * FROM memory.main.inferences",
        f"WITH a AS (SELECT * FROM \"{path}\"), \"{path}\" AS (SELECT 1) SELECT * FROM a",
        "WITH a AS (SELECT * FROM duckdb_views), duckdb_views AS (SELECT 1) SELECT * FROM a",
        "SELECT * FROM (WITH duckdb_views AS (SELECT 1) SELECT 1), duckdb_views",
        "SELECT sql FROM duckdb_views()",
        "SELECT * FROM information_schema.tables",
        f"SELECT * FROM inferences, LATERAL (SELECT * FROM read_parquet('{path}')) x",
        "SELECT current_setting('allowed_directories')",
    ]
    with client(server, keys.acme_auditor) as api:
        for text in attempts:
            answer = sql(api, text)
            assert answer.status_code in (400, 403), (text, answer.status_code, answer.text[:300])
        assert scalar(api, "SELECT count(*) FROM inferences WHERE tenant = 'globex'") == 0
