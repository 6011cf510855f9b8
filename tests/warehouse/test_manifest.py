"""Manifest: hash chain, torn tails, and verify_chain against tampering of entries and files."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from warehouse.manifest import (GENESIS_HASH, Manifest, chain_head, compute_entry_hash, file_sha256,
                                manifest_path, read_entries, read_entries_reversed, verify_chain)


def segment(data_dir: Path, name: str, content: bytes = b"rows") -> dict:
    """A real file under parquet/ and the entry that lands it."""
    path = data_dir / "parquet" / "inferences" / "date=2026-05-01" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    rel = path.relative_to(data_dir).as_posix()
    return {"kind": "segment", "dataset": "inferences", "file": rel, "rows": 1,
            "sha256": file_sha256(path), "source": {"wal": name, "part": 0, "parts": 1}}


@pytest.fixture
def landed(tmp_path):
    """Three segments, then a compaction that replaces the first two (which are deleted)."""
    manifest = Manifest(manifest_path(tmp_path))
    entries = [segment(tmp_path, f"s{i}.parquet", f"rows {i}".encode()) for i in range(3)]
    manifest.append(entries[:2])
    manifest.append(entries[2:])
    merged = segment(tmp_path, "compact-1.parquet", b"rows 0 and 1")
    merged.update(kind="compaction", source={"replaces": [
        {"file": e["file"], "sha256": e["sha256"]} for e in entries[:2]]})
    manifest.append([merged])
    manifest.close()
    for entry in entries[:2]:
        (tmp_path / entry["file"]).unlink()
    return tmp_path


def kinds(data_dir: Path) -> list[str]:
    return [problem.kind for problem in verify_chain(data_dir)]


def rewrite_lines(data_dir: Path, change) -> None:
    path = manifest_path(data_dir)
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(change(lines)))


def test_entries_are_chained(landed):
    entries = list(read_entries(manifest_path(landed)))
    assert [e["seq"] for e in entries] == [1, 2, 3, 4]
    assert entries[0]["prev_hash"] == GENESIS_HASH
    for before, after in zip(entries, entries[1:]):
        assert after["prev_hash"] == before["entry_hash"]
    assert all(compute_entry_hash(e) == e["entry_hash"] for e in entries)
    assert chain_head(manifest_path(landed)).entry_hash == entries[-1]["entry_hash"]


def test_intact_warehouse_verifies_clean(landed):
    assert verify_chain(landed) == []


def test_modified_entry(landed):
    rewrite_lines(landed, lambda lines: [lines[0].replace('"rows":1', '"rows":2')] + lines[1:])
    assert kinds(landed) == ["entry_modified"]


def test_removed_entry(landed):
    rewrite_lines(landed, lambda lines: lines[:1] + lines[2:])
    assert set(kinds(landed)) == {"broken_link", "entry_missing", "unknown_replaced"}


def test_reordered_entries(landed):
    rewrite_lines(landed, lambda lines: [lines[1], lines[0]] + lines[2:])
    assert {"reordered", "broken_link"} <= set(kinds(landed))


def test_modified_missing_and_extra_files(landed):
    (landed / "parquet/inferences/date=2026-05-01/s2.parquet").write_bytes(b"other rows")
    (landed / "parquet/inferences/date=2026-05-01/compact-1.parquet").unlink()
    (landed / "parquet/inferences/date=2026-05-01/sneaked-in.parquet").write_bytes(b"x")
    (landed / "parquet/inferences/date=2026-05-01/v1-schema.parquet").write_bytes(b"catalog file")
    problems = {(p.kind, Path(p.file).name) for p in verify_chain(landed)}
    assert problems == {("modified", "s2.parquet"), ("missing", "compact-1.parquet"),
                        ("extra", "sneaked-in.parquet")}


def test_replaced_file_awaiting_deletion_is_fine_unless_changed(landed):
    path = landed / "parquet/inferences/date=2026-05-01/s0.parquet"
    path.write_bytes(b"rows 0")  # restored exactly: still within its grace period
    assert verify_chain(landed) == []
    path.write_bytes(b"rows X")
    assert kinds(landed) == ["modified"]


def test_torn_tail_is_reported_then_dropped_on_open(landed):
    path = manifest_path(landed)
    head = chain_head(path)
    with open(path, "ab") as handle:
        handle.write(b'{"kind":"segment","fi')
    assert kinds(landed) == ["torn_tail"]
    assert chain_head(path) == head  # readers ignore the torn line
    manifest = Manifest(path)
    manifest.append([segment(landed, "s9.parquet")])
    manifest.close()
    assert verify_chain(landed) == []


def test_reading_backwards_across_chunks(tmp_path):
    manifest = Manifest(manifest_path(tmp_path), fsync=False)
    padding = "x" * 500  # ~3,000 entries of ~700 bytes span two 1 MiB chunks
    manifest.append([{"kind": "note", "text": padding, "n": i} for i in range(3000)])
    manifest.close()
    backwards = [e["n"] for e in read_entries_reversed(manifest_path(tmp_path))]
    assert backwards == list(range(2999, -1, -1))


def test_failed_verification_of_unparseable_line(landed):
    rewrite_lines(landed, lambda lines: lines[:2] + ["not json\n"] + lines[2:])
    assert "unreadable" in kinds(landed)
    with pytest.raises(ValueError, match="line 3"):
        list(read_entries(manifest_path(landed)))


def test_entry_json_is_canonical(landed):
    first = manifest_path(landed).read_text().splitlines()[0]
    assert first == json.dumps(json.loads(first), sort_keys=True, separators=(",", ":"))


def test_file_changed_before_compaction_replaced_it(tmp_path):
    manifest = Manifest(manifest_path(tmp_path))
    first = segment(tmp_path, "s0.parquet", b"rows 0")
    manifest.append([first])
    tampered = segment(tmp_path, "s0.parquet", b"rows 0 plus an invented row")
    merged = segment(tmp_path, "compact-1.parquet", b"merged")
    merged.update(kind="compaction", source={"replaces": [{"file": first["file"], "sha256": tampered["sha256"]}]})
    manifest.append([merged])
    manifest.close()
    (tmp_path / first["file"]).unlink()
    assert [(p.kind, p.seq) for p in verify_chain(tmp_path)] == [("modified", 2)]


def test_appenders_in_two_processes_keep_one_chain(tmp_path):
    """The server and a `reprice` run both append: each append sees the other's entries."""
    import subprocess
    import sys

    server_side = Manifest(manifest_path(tmp_path))
    server_side.append([segment(tmp_path, "a.parquet", b"a")])
    script = ("import sys; from pathlib import Path; from warehouse.manifest import Manifest, manifest_path; "
              "m = Manifest(manifest_path(Path(sys.argv[1]))); "
              "m.append([{'kind': 'repricing', 'dataset': 'repricings', 'rows': 1}]); m.close()")
    subprocess.run([sys.executable, "-c", script, str(tmp_path)], check=True, cwd=Path(__file__).parents[2])
    server_side.append([segment(tmp_path, "b.parquet", b"b")])
    server_side.close()
    entries = list(read_entries(manifest_path(tmp_path)))
    assert [e["seq"] for e in entries] == [1, 2, 3]
    assert [e["kind"] for e in entries] == ["segment", "repricing", "segment"]
    assert entries[2]["prev_hash"] == entries[1]["entry_hash"]
    assert [p.kind for p in verify_chain(tmp_path) if p.kind in ("broken_link", "reordered")] == []
