"""GET /api/v1/decisions and its export, against a real server over records landed by the real lander."""
from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta

import pyarrow.parquet as pq
import pytest

from collector.pseudonymize import pseudonymize
from inferledger.config import subject_key
from tests.api.keys import client, keyed_server
from tests.conftest import make_config
from tests.warehouse.jobs.records import land_records, record

BASE = datetime(2026, 3, 2, 22, 0, tzinfo=UTC)
COUNT = 240


def source_rows(key: bytes) -> list[dict]:
    """240 inferences over three UTC days; every 10th shares its start time with the one before,
    every 7th has no decision. Every expected figure below is derived from this list."""
    rows = []
    for i in range(COUNT):
        start = BASE + timedelta(minutes=17 * (i - (1 if i % 10 == 9 else 0)))
        rows.append(record(
            start, tenant="acme" if i % 3 == 0 else "globex", service_name=("fraud", "support")[i % 2],
            request_model="claude-sonnet-4-5" if i % 5 == 0 else "gpt-4o",
            response_model="gpt-4o-2024-08-06" if i % 4 == 0 else None,
            model_version="v3" if i < 120 else "v4",
            decision_label=None if i % 7 == 0 else ("approve", "decline", "review")[i % 3],
            subject_id=pseudonymize(f"customer-{i % 10}", key), cost_usd=0.001 * i))
    return rows


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("decisions") / "data"
    key = subject_key(make_config(data_dir))  # the server reads the same generated key file
    rows = source_rows(key)
    land_records(data_dir, rows)
    land_records(data_dir, rows[:30])  # stored twice, as after a retried export: still one record each
    with keyed_server(data_dir) as (server, keys):
        yield server, keys, rows


def ids(rows) -> list[tuple[str, str]]:
    return [(r["trace_id"], r["span_id"]) for r in rows]


def ordered(rows) -> list[dict]:
    return sorted(rows, key=lambda r: (r["start_time"], r["trace_id"], r["span_id"]))


def walk(api, limit: int, **params) -> list[dict]:
    items, cursor, pages = [], None, 0
    while True:
        answer = api.get("/api/v1/decisions", params={**params, "limit": limit, **({"cursor": cursor} if cursor else {})})
        assert answer.status_code == 200, answer.text
        page = answer.json()
        assert page["count"] == len(page["items"]) <= limit
        items += page["items"]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            return items


def test_pagination_walks_every_decision_exactly_once_in_order(warehouse):
    server, keys, rows = warehouse
    decisions = ordered([r for r in rows if r["decision_label"] is not None])
    assert len(decisions) == 205  # 240 minus the 35 multiples of 7
    with client(server, keys.auditor) as api:
        walked = walk(api, 7)
        assert ids(walked) == ids(decisions)
        everything = walk(api, 50, include_all="true")
    assert ids(everything) == ids(ordered(rows)) and len(everything) == COUNT


@pytest.mark.parametrize("params,predicate", [
    ({"service": "fraud"}, lambda i, r: r["service_name"] == "fraud"),
    ({"tenant": "acme"}, lambda i, r: r["tenant"] == "acme"),
    ({"model": "gpt-4o-2024-08-06"}, lambda i, r: r["response_model"] == "gpt-4o-2024-08-06"),
    ({"model": "claude-sonnet-4-5"}, lambda i, r: r["request_model"] == "claude-sonnet-4-5"),
    ({"model_version": "v4"}, lambda i, r: r["model_version"] == "v4"),
    ({"decision_label": "decline"}, lambda i, r: r["decision_label"] == "decline"),
    ({"subject": "customer-3"}, lambda i, r: i % 10 == 3),
    ({"service": "support", "decision_label": "review", "model_version": "v3"},
     lambda i, r: r["service_name"] == "support" and r["decision_label"] == "review" and r["model_version"] == "v3"),
])
def test_filters(warehouse, params, predicate):
    server, keys, rows = warehouse
    expected = ordered([r for i, r in enumerate(rows) if r["decision_label"] is not None and predicate(i, r)])
    with client(server, keys.auditor) as api:
        assert ids(walk(api, 1000, **params)) == ids(expected)


def test_filter_counts_by_hand(warehouse):
    server, keys, _ = warehouse
    with client(server, keys.admin) as api:
        # i % 3 == 0 -> acme, label approve; 80 such i, of which 12 are multiples of 21 (no decision)
        assert len(walk(api, 1000, tenant="acme")) == 68
        assert len(walk(api, 1000, decision_label="approve")) == 68
        assert len(walk(api, 1000, trace_id=warehouse[2][5]["trace_id"])) == 1


def test_time_range_is_from_inclusive_to_exclusive_across_days(warehouse):
    server, keys, rows = warehouse
    start, end = rows[30]["start_time"], rows[150]["start_time"]
    assert start.date() != end.date()
    expected = ordered([r for r in rows if start <= r["start_time"] < end and r["decision_label"]])
    with client(server, keys.auditor) as api:
        got = walk(api, 13, **{"from": start.isoformat(), "to": end.isoformat()})
        naive = walk(api, 1000, **{"from": start.replace(tzinfo=None).isoformat(), "to": end.isoformat()})
    assert ids(got) == ids(expected) == ids(naive)
    assert got[0]["start_time"].startswith(start.strftime("%Y-%m-%dT%H:%M"))


def test_bad_cursors_and_ranges_are_400_with_reasons(warehouse):
    server, keys, _ = warehouse
    with client(server, keys.auditor) as api:
        cursor = api.get("/api/v1/decisions", params={"limit": 5}).json()["next_cursor"]
        other = api.get("/api/v1/decisions", params={"limit": 5, "cursor": cursor, "service": "fraud"})
        assert other.status_code == 400 and "other filters" in other.json()["detail"]
        garbage = api.get("/api/v1/decisions", params={"cursor": "!!not-a-cursor"})
        assert garbage.status_code == 400 and "invalid cursor" in garbage.json()["detail"]
        reversed_range = api.get("/api/v1/decisions", params={"from": "2026-03-04", "to": "2026-03-03"})
        assert reversed_range.status_code == 400 and "must be before" in reversed_range.json()["detail"]
        assert api.get("/api/v1/decisions", params={"limit": 5000}).status_code == 422


def test_tenant_scoped_auditor_sees_only_its_tenant(warehouse):
    server, keys, rows = warehouse
    acme = ordered([r for r in rows if r["tenant"] == "acme" and r["decision_label"]])
    with client(server, keys.acme_auditor) as api:
        assert ids(walk(api, 9)) == ids(acme)
        assert ids(walk(api, 1000, tenant="acme")) == ids(acme)
        refused = api.get("/api/v1/decisions", params={"tenant": "globex"})
        assert refused.status_code == 403 and "scoped to tenant 'acme'" in refused.json()["detail"]
        other = next(r for r in rows if r["tenant"] == "globex")
        assert api.get(f"/api/v1/decisions/{other['trace_id']}/{other['span_id']}").status_code == 404
        exported = api.get("/api/v1/decisions/export", params={"format": "jsonl", "include_all": "true"})
    assert {json.loads(line)["tenant"] for line in exported.text.splitlines()} == {"acme"}


def test_exports_parse_back_in_listing_order(warehouse):
    server, keys, rows = warehouse
    params = {"model_version": "v4", "include_all": "true"}
    expected = ordered([r for r in rows if r["model_version"] == "v4"])
    with client(server, keys.auditor) as api:
        answers = {fmt: api.get("/api/v1/decisions/export", params={**params, "format": fmt})
                   for fmt in ("jsonl", "csv", "parquet")}
    assert {fmt: a.status_code for fmt, a in answers.items()} == {"jsonl": 200, "csv": 200, "parquet": 200}
    assert answers["parquet"].headers["content-disposition"] == 'attachment; filename="decisions.parquet"'

    lines = [json.loads(line) for line in answers["jsonl"].text.splitlines()]
    assert ids(lines) == ids(expected)
    assert lines[0]["start_time"] == expected[0]["start_time"].strftime("%Y-%m-%dT%H:%M:%S.000000Z")
    assert lines[3]["cost_usd"] == pytest.approx(expected[3]["cost_usd"])

    table = list(csv.DictReader(io.StringIO(answers["csv"].text)))
    assert ids(table) == ids(expected) and table[0]["model_version"] == "v4"
    assert float(table[7]["cost_usd"]) == pytest.approx(expected[7]["cost_usd"])

    parquet = pq.read_table(io.BytesIO(answers["parquet"].content))
    assert list(zip(parquet["trace_id"].to_pylist(), parquet["span_id"].to_pylist())) == ids(expected)
    assert str(parquet.schema.field("start_time").type) == "timestamp[us, tz=UTC]"


def test_empty_exports_are_valid_files(warehouse):
    server, keys, _ = warehouse
    with client(server, keys.auditor) as api:
        params = {"service": "no-such-service"}
        csv_text = api.get("/api/v1/decisions/export", params={**params, "format": "csv"}).text
        parquet = api.get("/api/v1/decisions/export", params={**params, "format": "parquet"}).content
        jsonl = api.get("/api/v1/decisions/export", params={**params, "format": "jsonl"}).text
    assert csv_text.splitlines()[0].startswith('"trace_id","span_id"') and len(csv_text.splitlines()) == 1
    assert pq.read_table(io.BytesIO(parquet)).num_rows == 0 and jsonl == ""


def test_export_is_streamed_in_chunks(warehouse):
    """Batches of chunk_rows, per day: more than one chunk, each a complete piece of the file."""
    from warehouse.audit.decisions import DecisionFilter
    from warehouse.audit.export import DecisionExport
    from warehouse.audit.scope import audit_connection

    server, _, rows = warehouse
    con = audit_connection(server.data_dir)
    try:
        export = DecisionExport(con, server.data_dir, DecisionFilter(include_all=True), "jsonl", chunk_rows=25)
        chunks = list(export)
    finally:
        con.close()
    assert len(chunks) >= COUNT // 25 and export.rows == COUNT and export.finished
    assert all(chunk.endswith(b"\n") for chunk in chunks)
    assert sum(chunk.count(b"\n") for chunk in chunks) == COUNT
