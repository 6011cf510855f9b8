"""The access log: every auditor request recorded, batched into Parquet, in the manifest chain, never lost."""
from __future__ import annotations

import json
import os
import shutil
import time

import pytest

from tests.api.keys import client, keyed_server
from tests.conftest import wait_for_rows
from tests.otlp_builders import export_request, genai_span
from warehouse.audit.access_log import AccessLog, AccessLogUnavailable
from warehouse.catalog import query
from warehouse.manifest import manifest_path, read_entries, verify_chain


def entry(n: int) -> dict:
    return dict(key_id=f"k{n}", key_name="alice", role="auditor", tenant=None, client="127.0.0.1", method="POST",
                endpoint="/api/v1/sql", parameters={"sql": f"SELECT {n}"}, rows=n, status=200, outcome="ok",
                duration_ms=1.5)


def access_entries(data_dir) -> list[dict]:
    return [e for e in read_entries(manifest_path(data_dir)) if e.get("kind") == "access_log"]


def logged(data_dir) -> list[dict]:
    return query(data_dir, "SELECT * FROM access_log ORDER BY logged_at").to_pylist()


def test_entries_land_as_parquet_with_a_manifest_entry(tmp_path):
    log = AccessLog(tmp_path, flush_interval_s=3600, fsync=False)
    log.start()
    for n in range(3):
        log.record(**entry(n))
    written = log.flush()
    log.stop()
    assert len(written) == 1 and written[0].startswith("parquet/access_log/date=")
    (recorded,) = access_entries(tmp_path)
    assert recorded["file"] == written[0] and recorded["rows"] == 3 and recorded["dataset"] == "access_log"
    rows = logged(tmp_path)
    assert [(r["key_id"], r["rows"], json.loads(r["parameters"])["sql"]) for r in rows] == [
        ("k0", 0, "SELECT 0"), ("k1", 1, "SELECT 1"), ("k2", 2, "SELECT 2")]
    assert verify_chain(tmp_path) == []


def test_writes_are_batched(tmp_path):
    log = AccessLog(tmp_path, flush_interval_s=3600, flush_entries=5, fsync=False)
    log.start()
    for n in range(12):
        log.record(**entry(n))
    deadline = time.monotonic() + 10
    while not access_entries(tmp_path) and time.monotonic() < deadline:  # 5 waiting wake the flusher
        time.sleep(0.05)
    assert access_entries(tmp_path), "the flusher did not land a full batch"
    log.stop()
    assert 1 <= len(access_entries(tmp_path)) <= 3  # not one file per entry
    assert sum(e["rows"] for e in access_entries(tmp_path)) == 12 and len(logged(tmp_path)) == 12


def test_a_crash_loses_nothing_the_journal_holds(tmp_path):
    log = AccessLog(tmp_path, flush_interval_s=3600, fsync=False)
    log.start()
    for n in range(4):
        log.record(**entry(n))
    os.close(log._fd)  # the process dies: no flush, no stop
    with open(tmp_path / "access_log" / "journal.jsonl", "ab") as journal:
        journal.write(b'{"entry_id": "torn')  # and it died in the middle of a line
    again = AccessLog(tmp_path, flush_interval_s=3600, fsync=False)
    again.start()
    again.stop()
    assert [r["key_id"] for r in logged(tmp_path)] == ["k0", "k1", "k2", "k3"]
    assert verify_chain(tmp_path) == []


def test_landing_a_journal_twice_records_it_once(tmp_path):
    """A crash after the manifest append but before the sealed journal was deleted."""
    log = AccessLog(tmp_path, flush_interval_s=3600, fsync=False)
    log.start()
    log.record(**entry(1))
    log._seal()
    (sealed,) = (tmp_path / "access_log").glob("journal-*.sealed")
    shutil.copy(sealed, tmp_path / "kept")
    log.flush()
    log.stop()
    shutil.copy(tmp_path / "kept", sealed)
    again = AccessLog(tmp_path, flush_interval_s=3600, fsync=False)
    again.start()
    again.stop()
    assert len(access_entries(tmp_path)) == 1 and len(logged(tmp_path)) == 1
    assert not list((tmp_path / "access_log").glob("journal-*.sealed"))


def test_a_stopped_log_refuses_entries(tmp_path):
    log = AccessLog(tmp_path, fsync=False)
    log.start()
    log.stop()
    with pytest.raises(AccessLogUnavailable, match="not running"):
        log.record(**entry(1))


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("access") / "data"
    with keyed_server(data_dir) as (server, keys):
        spans = [genai_span(inferledger__decision__label="approve") for _ in range(3)]
        with client(server, keys.ingest) as sender:
            assert sender.post("/v1/traces", content=export_request(spans).SerializeToString(),
                               headers={"Content-Type": "application/x-protobuf"}).status_code == 200
        wait_for_rows(data_dir, "select * from inferences", 3)
        yield server, keys, spans


def test_auditor_requests_are_logged_with_who_what_and_rows(served):
    server, keys, spans = served
    first = spans[0]
    with client(server, keys.auditor) as api:
        assert api.get("/api/v1/decisions", params={"decision_label": "approve", "subject": "jane"}).status_code == 200
        assert api.get("/api/v1/decisions", params={"service": "test-service"}).json()["count"] == 3
        assert len(api.get("/api/v1/decisions/export", params={"format": "jsonl"}).text.splitlines()) == 3
        assert api.get(f"/api/v1/decisions/{first.trace_id.hex()}/{first.span_id.hex()}").status_code == 200
        assert api.post("/api/v1/sql", json={"sql": "SELECT span_id FROM inferences"}).status_code == 200
        assert api.post("/api/v1/sql", json={"sql": "SELECT * FROM read_csv('/etc/passwd')"}).status_code == 403
    with client(server, keys.ingest) as api:
        assert api.get("/api/v1/decisions").status_code == 403
    with client(server, None) as api:
        assert api.get("/api/v1/decisions").status_code == 401
    server.pipeline.api.access_log.flush()
    rows = [r for r in logged(server.data_dir) if r["key_id"] in (keys.ids["auditor"], keys.ids["ingest"])]
    summary = [(r["key_name"], r["endpoint"], r["rows"], r["status"], r["outcome"]) for r in rows]
    assert summary == [
        ("test auditor", "/api/v1/decisions", 0, 200, "ok"),
        ("test auditor", "/api/v1/decisions", 3, 200, "ok"),
        ("test auditor", "/api/v1/decisions/export", 3, 200, "ok"),
        ("test auditor", "/api/v1/decisions/{trace_id}/{span_id}", 1, 200, "ok"),
        ("test auditor", "/api/v1/sql", 3, 200, "ok"),
        ("test auditor", "/api/v1/sql", 0, 403, "refused"),
        ("test ingest", "/api/v1/decisions", 0, 403, "refused"),
    ]
    filters = json.loads(rows[0]["parameters"])
    assert filters["decision_label"] == "approve" and len(filters["subject"]) == 64  # the pseudonym only
    assert "jane" not in rows[0]["parameters"]
    assert json.loads(rows[4]["parameters"]) == {"sql": "SELECT span_id FROM inferences", "limit": 10000}
    assert all(r["role"] and r["client"] == "127.0.0.1" and r["logged_at"] and r["duration_ms"] >= 0 for r in rows)
    assert verify_chain(server.data_dir) == []


def test_access_log_files_are_verified_like_every_other_file(served):
    server, keys, _ = served
    with client(server, keys.auditor) as api:
        api.get("/api/v1/decisions")
    (written,) = server.pipeline.api.access_log.flush()
    assert written in {e["file"] for e in access_entries(server.data_dir)}
    path = server.data_dir / written
    original = path.read_bytes()
    path.write_bytes(original[:-9] + bytes([original[-9] ^ 1]) + original[-8:])
    try:
        problems = verify_chain(server.data_dir)
        assert [(p.kind, p.file) for p in problems] == [("modified", written)]
    finally:
        path.write_bytes(original)


def test_a_request_that_cannot_be_logged_is_not_answered(served):
    server, keys, _ = served
    access_log = server.pipeline.api.access_log
    access_log.stop()
    try:
        with client(server, keys.auditor) as api:
            answer = api.get("/api/v1/decisions")
        assert answer.status_code == 503 and "withheld" in answer.json()["detail"]
    finally:
        access_log.start(server.pipeline.storage.manifest)
