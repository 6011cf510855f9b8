"""Erasure: the person is gone from every file, everyone else is untouched, the log still verifies."""
from __future__ import annotations

import hashlib
import json
import shutil
import time
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from tests.warehouse.audit_data import (all_rows, compact_all, decisions, files_mentioning, land, pseudonym,
                                        review, table_of)
from warehouse.catalog import query
from warehouse.compaction import CompactionSettings, rewrite_lock
from warehouse.erasure import ERASED, ERASED_ATTRIBUTES, ErasureError, erase_subject, scrub
from warehouse.manifest import Manifest, file_sha256, manifest_path, read_entries, verify_chain
from warehouse.storage import Storage, StorageSettings


@pytest.fixture
def warehouse(tmp_path):
    """alice, bob and carol over two days; a compacted partition; alice reviews one of bob's decisions;
    an export file and a quarantined WAL fragment that mention alice."""
    data_dir = tmp_path / "data"
    alice, bob, carol = decisions("alice", 6), decisions("bob", 6), decisions("carol", 3)
    late = decisions("alice", 2, day=alice[0]["start_time"].replace(day=2))
    land(data_dir, alice[:3] + bob[:3], alice[3:] + bob[3:] + carol, [review(bob[0], "alice")])
    assert compact_all(data_dir) == 1  # day one: three segments -> one file
    land(data_dir, late + decisions("bob", 1, day=late[0]["start_time"]))
    exports = data_dir / "exports"
    exports.mkdir()
    (exports / "decisions.jsonl").write_text("".join(json.dumps({"subject_id": pseudonym(who), "label": "approve"})
                                                     + "\n" for who in ("alice", "bob")))
    quarantined = data_dir / "quarantine" / "00000000000000000001-deadbeef-0.bin"
    quarantined.write_bytes(b"ILW1 garbled frame ... " + pseudonym("alice").encode() + b" ...")
    manifest = Manifest(manifest_path(data_dir))
    manifest.append([{"kind": "quarantine", "dataset": "inferences", "file": "quarantine/" + quarantined.name,
                      "bytes": quarantined.stat().st_size, "sha256": file_sha256(quarantined),
                      "reason": "undecodable frame"}])
    manifest.close()
    assert verify_chain(data_dir) == []
    return data_dir


def erase(data_dir: Path, who: str = "alice", **kwargs) -> dict:
    return erase_subject(data_dir, pseudonym(who), manifest=None, actor="dpo@example.com",
                         reason="GDPR Art. 17 request #42", **kwargs)


def test_the_subject_is_in_no_file_afterwards(warehouse):
    assert len(files_mentioning(warehouse, pseudonym("alice"))) == 4  # 2 Parquet files, export, quarantine
    erase(warehouse)
    assert files_mentioning(warehouse, pseudonym("alice")) == []
    assert files_mentioning(warehouse, "alice@example.com") == []
    assert files_mentioning(warehouse, pseudonym("alice@example.com")) == []  # the personal attribute went too
    assert verify_chain(warehouse) == []


def test_decisions_are_kept_and_marked_erased(warehouse):
    before = all_rows(warehouse, "subject_id = '%s'" % pseudonym("alice"))
    erase(warehouse)
    after = all_rows(warehouse, f"subject_id = '{ERASED}'")
    assert len(after) == len(before) == 8  # population counts still reconcile
    for old, new in zip(before, after):
        assert (new["trace_id"], new["span_id"], new["decision_label"], new["decision_score"], new["cost_usd"]) == \
               (old["trace_id"], old["span_id"], old["decision_label"], old["decision_score"], old["cost_usd"])
        assert new["user_id"] == ERASED and new["conversation_id"] is None
        assert new["attributes"] == ERASED_ATTRIBUTES
        assert new["decision_reasons"] == ["income", "history"]


def test_other_people_are_untouched(warehouse):
    others = "subject_id IN ('%s', '%s')" % (pseudonym("bob"), pseudonym("carol"))
    before = all_rows(warehouse, others)
    erase(warehouse)
    after = all_rows(warehouse, others)
    # bob's decision that alice reviewed is bob's: his ids and attributes stay
    assert after == before and len(after) == 10
    reviews = all_rows(warehouse, "operation = 'review'")
    assert [(r["reviewer_id"], r["review_outcome"], r["review_duration_s"]) for r in reviews] == [(ERASED, "upheld", 90.0)]
    export = (warehouse / "exports" / "decisions.jsonl").read_text().splitlines()
    assert [json.loads(line)["subject_id"] for line in export] == [ERASED, pseudonym("bob")]


def test_manifest_links_old_and_new_hashes_and_receipt_is_recorded(warehouse):
    receipt = erase(warehouse)
    entries = list(read_entries(manifest_path(warehouse)))
    erasures = [e for e in entries if e["kind"] == "erasure"]
    rewrites = [e for e in erasures if "file" in e]
    assert len(rewrites) == 2 and {e["source"]["replaces"][0]["file"] for e in rewrites} == \
           {item["file"] for item in receipt["files_rewritten"]}
    for entry in rewrites:
        assert entry["sha256"] == file_sha256(warehouse / entry["file"])
        assert not (warehouse / entry["source"]["replaces"][0]["file"]).exists()
    removal = next(e for e in erasures if "file" not in e and "replaces" in e["source"])
    assert removal["source"]["replaces"][0]["file"].startswith("quarantine/")
    closing = erasures[-1]
    assert closing["entry_hash"] == receipt["chain_entry_hash"] and closing["source"]["rows_erased"] == 9
    assert receipt["rows_affected"] == 9  # 6 + 2 decisions about alice, 1 review by her
    assert receipt["subject_hash"] == hashlib.sha256(b"inferledger-erasure:" + pseudonym("alice").encode()).hexdigest()
    assert receipt["files_scrubbed"] == ["exports/decisions.jsonl"]
    logged = query(warehouse, "SELECT * FROM erasures").to_pylist()
    assert len(logged) == 1 and logged[0]["erasure_id"] == receipt["erasure_id"]
    assert logged[0]["actor"] == "dpo@example.com" and logged[0]["reason"] == "GDPR Art. 17 request #42"
    assert entries[-1]["kind"] == "erasure_receipt" and entries[-1]["file"] == receipt["receipt_file"]


def test_a_later_tamper_is_still_detected(warehouse):
    receipt = erase(warehouse)
    rewritten = warehouse / receipt["files_rewritten"][0]["new_file"]
    data = bytearray(rewritten.read_bytes())
    data[len(data) // 2] ^= 0x01
    rewritten.write_bytes(bytes(data))
    assert [(p.kind, p.file) for p in verify_chain(warehouse)] == [("modified", receipt["files_rewritten"][0]["new_file"])]


def test_restoring_an_erased_file_is_reported_then_cleaned_up(warehouse, tmp_path):
    backup = tmp_path / "backup"
    shutil.copytree(warehouse / "parquet", backup)
    receipt = erase(warehouse)
    old = receipt["files_rewritten"][0]["file"]
    shutil.copy(backup / Path(old).relative_to("parquet"), warehouse / old)
    problems = verify_chain(warehouse)
    assert [(p.kind, p.file) for p in problems] == [("not_removed", old)]
    erase(warehouse, "nobody")  # the next erasure (or retention) finishes the removal
    assert verify_chain(warehouse) == [] and not (warehouse / old).exists()


def test_a_file_that_no_longer_matches_the_manifest_is_not_rewritten(warehouse):
    segment = next(p for p in (warehouse / "parquet" / "inferences").rglob("*.parquet")
                   if "date=2026-05-02" in str(p))
    rows = pq.read_table(segment)
    flipped = pc.if_else(pc.equal(rows["decision_label"], "decline"), "approve", rows["decision_label"])
    pq.write_table(rows.set_column(rows.schema.get_field_index("decision_label"), "decision_label", flipped), segment)
    entries_before = manifest_path(warehouse).read_bytes()
    with pytest.raises(ErasureError, match="do not match the manifest"):
        erase(warehouse)
    assert manifest_path(warehouse).read_bytes() == entries_before
    assert segment.relative_to(warehouse).as_posix() in files_mentioning(warehouse, pseudonym("alice"))
    segment.write_bytes(b"not parquet any more")  # unreadable: cannot even tell whether it holds her
    with pytest.raises(ErasureError, match="do not match the manifest"):
        erase(warehouse)


def test_unknown_subject_still_gets_a_receipt(warehouse):
    receipt = erase(warehouse, "nobody")
    assert receipt["rows_affected"] == 0 and receipt["files_rewritten"] == []
    assert verify_chain(warehouse) == []


@pytest.mark.parametrize("bad", ["alice", "", "A" * 64, "a" * 63])
def test_only_a_pseudonym_is_accepted(warehouse, bad):
    with pytest.raises(ErasureError, match="64 lower-case hex"):
        erase_subject(warehouse, bad, manifest=None, actor="x", reason="")


def test_scrub_replaces_the_pseudonym_inside_any_text_and_lists():
    someone = pseudonym("dave")
    row = decisions("erin", 1)[0] | {"resource": json.dumps({"enduser.id": someone}),
                                     "decision_reasons": ["flagged by " + someone, "income"]}
    scrubbed, changed = scrub(table_of([row]), someone)
    out = scrubbed.to_pylist()[0]
    assert changed == 1
    assert out["resource"] == json.dumps({"enduser.id": ERASED})
    assert out["decision_reasons"] == [f"flagged by {ERASED}", "income"]
    assert out["subject_id"] == pseudonym("erin") and out["attributes"] == row["attributes"]  # not about dave


def test_erasure_beside_a_running_storage_waits_for_the_wal_and_blocks_compaction(tmp_path):
    """A server's storage (compaction every 0.1 s) holds alice's newest spans in its WAL; erase waits for
    them to land, takes the rewrite lock (no merge meanwhile) and commits through the server's manifest."""
    data_dir = tmp_path / "data"
    settings = StorageSettings(fsync=False, seal_interval_s=1.0, visibility_target_s=5.0,
                               compaction=CompactionSettings(interval_s=0.1, min_files=2, idle_s=0, grace_s=0))
    with Storage(data_dir, settings) as storage:
        for who in ("alice", "bob", "alice", "bob"):
            storage.append("inferences", table_of(decisions(who, 3)).to_batches()[0]).result()
            storage.flush()
        storage.append("inferences", table_of(decisions("alice", 2)).to_batches()[0]).result()  # still in the WAL
        assert list((data_dir / "wal").glob("*/*.wal"))
        receipt = erase_subject(data_dir, pseudonym("alice"), manifest=storage.manifest, actor="t", reason="",
                                wal_timeout_s=10)
        assert receipt["rows_affected"] == 8
        compactions_before = storage.compactor.counters["compactions"]
        with rewrite_lock(data_dir):  # an erasure in progress: the compactor skips its rounds
            storage.append("inferences", table_of(decisions("bob", 1)).to_batches()[0]).result()
            storage.flush()
            time.sleep(0.5)  # five compactor rounds
            assert storage.compactor.counters["compactions"] == compactions_before
    assert files_mentioning(data_dir, pseudonym("alice")) == []
    assert query(data_dir, f"SELECT count(*) AS n FROM inferences WHERE subject_id = '{ERASED}'")["n"][0].as_py() == 8
    assert verify_chain(data_dir) == []


def test_erase_gives_up_on_a_wal_nobody_lands(tmp_path):
    data_dir = tmp_path / "data"
    land(data_dir, decisions("bob", 2))
    wal = data_dir / "wal" / "sealed" / "01795431040157525679-eae0db1a.wal"
    wal.write_bytes(b"...frame bytes with " + pseudonym("alice").encode())
    with pytest.raises(ErasureError, match="write-ahead log"):
        erase(data_dir, wal_timeout_s=0.3)


def test_a_foreign_parquet_file_holding_the_subject_is_reported_not_rewritten(warehouse):
    """A file no entry lists under parquet/ is evidence (verify: extra), or a landing not committed yet."""
    segment = next((warehouse / "parquet" / "inferences").rglob("v1-compact-*.parquet"))
    foreign = segment.parent / "v1-00000000000000000009-feedf00d-0000.parquet"
    shutil.copy(segment, foreign)
    receipt = erase(warehouse)
    name = foreign.relative_to(warehouse).as_posix()
    assert receipt["not_erased"] == [name] and files_mentioning(warehouse, pseudonym("alice")) == [name]
    assert [(p.kind, p.file) for p in verify_chain(warehouse)] == [("extra", name)]


def test_places_that_cannot_be_rewritten_are_reported(warehouse):
    journal = warehouse / "access_log" / "journal.jsonl"  # the server appends to it through an open file
    journal.parent.mkdir()
    journal.write_text(json.dumps({"endpoint": "/api/v1/decisions", "parameters": {"subject": pseudonym("alice")}}) + "\n")
    manifest = Manifest(manifest_path(warehouse))
    manifest.append([{"kind": "note", "text": f"asked about {pseudonym('alice')}"}])
    manifest.close()
    before = journal.read_bytes()
    receipt = erase(warehouse)
    assert receipt["not_erased"] == ["access_log/journal.jsonl", "manifest/manifest.jsonl"]
    assert journal.read_bytes() == before and verify_chain(warehouse) == []
