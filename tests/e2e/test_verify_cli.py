"""`inferledger verify`, `erase` and `heads` on a warehouse filled by a real collector over OTLP.

Every tampering scenario of the issue is applied to a copy of one landed warehouse
and must be detected and named by the real CLI; erasure and retention must leave
a warehouse that verifies.
"""
from __future__ import annotations

import json
import shutil
import stat
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from inferledger.app import RunningServer
from inferledger.cli import app
from tests.conftest import make_config, wait_for_rows
from tests.otlp_builders import export_request, genai_span
from tests.warehouse.audit_data import files_mentioning, pseudonym
from warehouse.catalog import query
from warehouse.manifest import manifest_path
from warehouse.retention import RetentionPolicy, apply_retention

ROOT = Path(__file__).resolve().parents[2]
SUBJECT_KEY = "00" * 32  # what make_config gives the server
DAY1 = datetime(2026, 5, 1, 9, tzinfo=UTC)
DAY2 = DAY1 + timedelta(days=1)
runner = CliRunner()


def ns(moment: datetime) -> int:
    return int(moment.timestamp() * 1e9)


def decision_spans(subject: str, day: datetime, count: int) -> list:
    return [genai_span(start_ns=ns(day) + i * 1_000_000_000, **{
        "inferledger.subject.id": subject, "user.id": subject, "inferledger.decision.label": "approve",
        "inferledger.decision.score": 0.5 + i / 100, "gen_ai.conversation.id": f"conv-{subject}-{i}"})
        for i in range(count)]


def send(url: str, spans: list) -> None:
    reply = httpx.post(url + "/v1/traces", content=export_request(spans).SerializeToString(),
                       headers={"Content-Type": "application/x-protobuf"}, timeout=30)
    assert reply.status_code == 200, reply.text


def fill(server: RunningServer, *batches: list) -> None:
    for spans in batches:
        send(server.http_url, spans)
        server.pipeline.storage.flush(timeout=30)


@pytest.fixture(autouse=True)
def collector_key(monkeypatch):
    """The server reads its pseudonymization key from the environment, as `erase` does."""
    monkeypatch.setenv("INFERLEDGER_SUBJECT_KEY", SUBJECT_KEY)


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    """alice, bob and carol over two days, several segments per day, landed by a real server."""
    data_dir = tmp_path_factory.mktemp("template") / "data"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("INFERLEDGER_SUBJECT_KEY", SUBJECT_KEY)
        server = RunningServer(make_config(data_dir, storage__compaction_enabled=False))
    with server:
        fill(server, decision_spans("alice", DAY1, 3) + decision_spans("bob", DAY1, 3),
             decision_spans("carol", DAY1, 2), decision_spans("alice", DAY2, 2) + decision_spans("bob", DAY2, 1),
             decision_spans("carol", DAY2, 2))
        wait_for_rows(data_dir, "select * from inferences", 13)
    return data_dir


@pytest.fixture
def data_dir(template, tmp_path):
    copy = tmp_path / "data"
    shutil.copytree(template, copy)
    return copy


def cli(*args: str, **env: str):
    result = runner.invoke(app, list(args), env={"INFERLEDGER_SUBJECT_KEY": SUBJECT_KEY, **env})
    return result


def verify(data_dir: Path, *args: str, **env: str):
    return cli("verify", "--data-dir", str(data_dir), *args, **env)


def segments(data_dir: Path, day: datetime = DAY1) -> list[Path]:
    return sorted((data_dir / "parquet" / "inferences" / f"date={day.date()}").glob("v1-*.parquet"))


def relative(data_dir: Path, path: Path) -> str:
    return path.relative_to(data_dir).as_posix()


def test_an_untouched_warehouse_verifies(data_dir):
    result = verify(data_dir)
    assert result.exit_code == 0, result.output
    assert "verified" in result.output and "NOT verified" not in result.output
    entries = len(manifest_path(data_dir).read_text().splitlines())
    assert f"{entries} entries checked, 4 files checked" in result.output
    assert "chain head: seq 4 " in result.output


def test_a_flipped_byte_in_a_segment(data_dir):
    segment = segments(data_dir)[0]
    data = bytearray(segment.read_bytes())
    data[100] ^= 0xFF
    segment.write_bytes(bytes(data))
    result = verify(data_dir)
    assert result.exit_code == 1
    assert f"modified  {relative(data_dir, segment)}  SHA-256 differs from the manifest" in result.output
    assert "NOT verified: 1 problem(s) (modified 1)" in result.output


def test_a_deleted_segment(data_dir):
    segment = segments(data_dir, DAY2)[-1]
    segment.unlink()
    result = verify(data_dir)
    assert result.exit_code == 1
    assert f"missing  {relative(data_dir, segment)}  listed in the manifest, not on disk" in result.output


def edit_manifest(data_dir: Path, change) -> None:
    path = manifest_path(data_dir)
    path.write_text("".join(change(path.read_text().splitlines(keepends=True))))


def test_reordered_manifest_lines(data_dir):
    edit_manifest(data_dir, lambda lines: [lines[1], lines[0], *lines[2:]])
    result = verify(data_dir)
    assert result.exit_code == 1
    assert "reordered  seq 1  seq 1 after 2" in result.output and "broken_link  seq 2" in result.output


def test_a_foreign_parquet_file(data_dir):
    foreign = data_dir / "parquet" / "inferences" / f"date={DAY1.date()}" / "v1-00000000000000000001-cafebabe-0000.parquet"
    pq.write_table(pq.read_table(segments(data_dir)[0]).slice(0, 1), foreign)  # a plausible copied row
    result = verify(data_dir)
    assert result.exit_code == 1
    assert f"extra  {relative(data_dir, foreign)}  not listed in the manifest" in result.output


def test_an_edited_manifest_entry(data_dir):
    def add_a_row(lines):
        entry = json.loads(lines[2])
        entry["rows"] += 1
        return [*lines[:2], json.dumps(entry, sort_keys=True, separators=(",", ":")) + "\n", *lines[3:]]

    edit_manifest(data_dir, add_a_row)
    result = verify(data_dir)
    assert result.exit_code == 1
    assert "entry_modified  seq 3  entry_hash does not match the content" in result.output


@pytest.fixture
def signing_key(tmp_path):
    key_file = tmp_path / "keys" / "signing.pem"
    key_file.parent.mkdir()
    result = cli("heads", "keygen", "--out", str(key_file))
    assert result.exit_code == 0, result.output
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    public = tmp_path / "keys" / "signing.pub"
    public.write_text(result.stdout)
    return key_file, public


def test_a_forged_signature(data_dir, signing_key):
    key_file, public = signing_key
    signed = cli("heads", "sign", "--data-dir", str(data_dir), INFERLEDGER_AUDIT__SIGNING_KEY_FILE=str(key_file))
    assert signed.exit_code == 0, signed.output
    assert verify(data_dir, "--public-key", str(public)).exit_code == 0
    heads = data_dir / "manifest" / "heads.jsonl"
    head = json.loads(heads.read_text())
    head["signature"] = head["signature"][:-2] + ("00" if head["signature"][-2:] != "00" else "11")
    heads.write_text(json.dumps(head) + "\n")
    result = verify(data_dir, "--public-key", str(public))
    assert result.exit_code == 1
    assert "bad_signature  seq 4  manifest/heads.jsonl, head of seq 4: the Ed25519 signature does not verify" \
        in result.output


def test_truncating_the_manifest_after_exporting_heads(data_dir, signing_key, tmp_path):
    key_file, public = signing_key
    env = {"INFERLEDGER_AUDIT__SIGNING_KEY_FILE": str(key_file)}
    assert cli("heads", "sign", "--data-dir", str(data_dir), **env).exit_code == 0
    exported = tmp_path / "auditor-heads.jsonl"
    result = cli("heads", "export", "--data-dir", str(data_dir), "--out", str(exported))
    assert result.exit_code == 0 and len(exported.read_text().splitlines()) == 1
    edit_manifest(data_dir, lambda lines: lines[:2])  # the last segments "never happened"
    for late in segments(data_dir, DAY2):
        late.unlink()
    (data_dir / "manifest" / "heads.jsonl").unlink()  # the forger removes the copy they can reach
    result = verify(data_dir, "--heads", str(exported), "--public-key", str(public))
    assert result.exit_code == 1
    assert "head_beyond_chain  seq 4" in result.output and "chain ends at seq 2" in result.output


def test_date_range_limits_the_file_checks(data_dir):
    segment = segments(data_dir, DAY2)[0]
    segment.write_bytes(segment.read_bytes() + b"\0")
    day1 = str(DAY1.date())
    only_day1 = verify(data_dir, "--from", day1, "--to", day1)
    assert only_day1.exit_code == 0 and "2 files checked" in only_day1.output
    assert verify(data_dir, "--from", str(DAY2.date())).exit_code == 1


@pytest.mark.parametrize("args, message", [
    (["--from", "yesterday"], "--from 'yesterday' is not a date"),
    (["--from", "2026-05-02", "--to", "2026-05-01"], "--to is before --from"),
    (["--heads", "/nonexistent/heads.jsonl"], "cannot read /nonexistent/heads.jsonl"),
    (["--public-key", "/nonexistent/key.pub"], "cannot read public key /nonexistent/key.pub"),
])
def test_usage_errors_exit_2(data_dir, args, message):
    result = verify(data_dir, *args)
    assert result.exit_code == 2 and message in result.output


def test_a_missing_data_dir_is_a_usage_error(tmp_path):
    result = verify(tmp_path / "nowhere")
    assert result.exit_code == 2 and "does not exist" in result.output


def test_erase_beside_a_running_server_then_verify(tmp_path, signing_key):
    """The real CLI, in its own process, erases alice while the server keeps ingesting and compacting."""
    key_file, public = signing_key
    data_dir = tmp_path / "live"
    config = make_config(data_dir, storage__seal_interval_s=1.0)
    with RunningServer(config) as server:
        fill(server, decision_spans("alice", DAY1, 3) + decision_spans("bob", DAY1, 2),
             decision_spans("alice", DAY2, 2) + decision_spans("bob", DAY2, 2))
        send(server.http_url, decision_spans("alice", DAY2 + timedelta(hours=1), 1))  # still in the WAL, maybe
        bob_before = query(data_dir, f"select * exclude (date) from inferences where subject_id = '{pseudonym('bob')}' "
                                     "order by span_id").to_pylist()
        erased = subprocess.run(
            [sys.executable, "-m", "inferledger.cli", "erase", "--subject", "alice", "--reason", "request 42",
             "--actor", "dpo", "--data-dir", str(data_dir)], capture_output=True, text=True, timeout=120, cwd=ROOT,
            env={"INFERLEDGER_SUBJECT_KEY": SUBJECT_KEY, "INFERLEDGER_AUDIT__SIGNING_KEY_FILE": str(key_file),
                 "PATH": "/usr/bin:/bin"})
        assert erased.returncode == 0, erased.stderr
        assert "rows erased      6" in erased.stdout and "signed head" in erased.stdout
        bob_after = query(data_dir, f"select * exclude (date) from inferences where subject_id = '{pseudonym('bob')}' "
                                    "order by span_id").to_pylist()
        assert bob_after == bob_before
        counts = query(data_dir, "select subject_id = '[erased]' as erased, count(*) as n from inferences "
                                 "group by 1 order by 1").to_pylist()
        assert counts == [{"erased": False, "n": 4}, {"erased": True, "n": 6}]
    assert files_mentioning(data_dir, pseudonym("alice")) == []
    result = verify(data_dir, "--public-key", str(public))
    assert result.exit_code == 0, result.output
    receipt = query(data_dir, "select actor, reason, rows_affected from erasures").to_pylist()
    assert receipt == [{"actor": "dpo", "reason": "request 42", "rows_affected": 6}]


def test_erase_without_a_server_lands_the_wal_first(data_dir):
    """Spans acknowledged by a server that then died sit in the WAL: erase lands them, then erases."""
    from warehouse.record import to_batch
    from warehouse.wal import WriteAheadLog

    wal = WriteAheadLog(data_dir / "wal", fsync=False)
    wal.open()
    row = {"trace_id": "ab" * 16, "span_id": "cd" * 8, "start_time": DAY2, "ingest_time": DAY2,
           "subject_id": pseudonym("alice"), "operation": "predict"}
    wal.append("inferences", to_batch([row])).result()
    wal.close()
    result = cli("erase", "--subject", "alice", "--data-dir", str(data_dir))
    assert result.exit_code == 0, result.output
    assert "landing the write-ahead log first" in result.output and "rows erased      6" in result.output
    assert files_mentioning(data_dir, pseudonym("alice")) == []
    assert verify(data_dir).exit_code == 0


def test_erase_needs_the_collectors_key(data_dir):
    assert not (data_dir / "keys" / "subject.key").exists()
    result = runner.invoke(app, ["erase", "--subject", "alice", "--data-dir", str(data_dir)],
                           env={"INFERLEDGER_SUBJECT_KEY": ""})
    assert result.exit_code == 2 and "no pseudonymization key" in result.output


def test_retention_then_verify(tmp_path):
    today = datetime.now(UTC).date()
    old, recent = (datetime.combine(today - timedelta(days=age), datetime.min.time(), tzinfo=UTC)
                   + timedelta(hours=12) for age in (420, 30))
    data_dir = tmp_path / "data"
    with RunningServer(make_config(data_dir)) as server:
        fill(server, decision_spans("bob", old, 3), decision_spans("bob", recent, 2))
        result = apply_retention(data_dir, RetentionPolicy(), today, manifest=server.pipeline.storage.manifest,
                                 actor="scheduler")
        assert result["rows_removed"] == 3
        assert query(data_dir, "select count(*) as n from inferences")["n"][0].as_py() == 2
    result = verify(data_dir)
    assert result.exit_code == 0, result.output
    assert query(data_dir, "select dataset, rows from retention_actions").to_pylist() == [
        {"dataset": "inferences", "rows": 3}]


def test_heads_export_to_stdout_and_keygen_refuses_to_overwrite(data_dir, signing_key):
    key_file, public = signing_key
    assert cli("heads", "export", "--data-dir", str(data_dir)).stdout == ""
    cli("heads", "sign", "--data-dir", str(data_dir), INFERLEDGER_AUDIT__SIGNING_KEY_FILE=str(key_file))
    exported = cli("heads", "export", "--data-dir", str(data_dir)).stdout
    assert json.loads(exported)["seq"] == 4
    again = cli("heads", "keygen", "--out", str(key_file))
    assert again.exit_code == 2 and "refusing to overwrite" in again.output
    unsigned = cli("heads", "sign", "--data-dir", str(data_dir))
    assert unsigned.exit_code == 2 and "no signing key" in unsigned.output
