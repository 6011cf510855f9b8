"""Signed chain heads: keys, signing, and what verify finds when heads or history are forged."""
from __future__ import annotations

import json
import os
import stat

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests.warehouse.audit_data import decisions, land
from warehouse.manifest import GENESIS_HASH, Manifest, compute_entry_hash, manifest_path, read_entries
from warehouse.signing import (HEADS_FILE, SigningKeyError, configured_private_key, generate_private_key, key_id,
                               load_private_key, load_public_key, public_key_pem, read_heads, sign_head,
                               signed_message, write_private_key)
from warehouse.verify import verify


@pytest.fixture
def warehouse(tmp_path):
    data_dir = tmp_path / "data"
    land(data_dir, decisions("alice", 2), decisions("bob", 2))
    return data_dir


@pytest.fixture
def key():
    return generate_private_key()


def kinds(report) -> list[str]:
    return [p.kind for p in report.problems]


def rewrite_manifest(data_dir, change) -> None:
    path = manifest_path(data_dir)
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(change(lines)))


def test_key_files_round_trip_and_are_private(tmp_path, key):
    path = tmp_path / "signing.pem"
    write_private_key(path, key)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    loaded = load_private_key(path.read_bytes(), "test")
    assert key_id(loaded.public_key()) == key_id(key.public_key())
    with pytest.raises(SigningKeyError, match="already exists"):
        write_private_key(path, generate_private_key())
    public = tmp_path / "signing.pub"
    public.write_text(public_key_pem(key.public_key()))
    assert key_id(load_public_key(public)) == key_id(key.public_key())


def test_key_from_configuration(tmp_path, key):
    raw = key.private_bytes_raw().hex()
    from_env = configured_private_key(None, "SIGNING", {"SIGNING": raw})
    assert key_id(from_env.public_key()) == key_id(key.public_key())
    assert configured_private_key(None, "SIGNING", {}) is None
    with pytest.raises(SigningKeyError, match="cannot read signing key file"):
        configured_private_key(tmp_path / "absent.pem", "SIGNING", {})
    wrong = tmp_path / "wrong.pem"
    wrong.write_text("-----BEGIN PRIVATE KEY-----\nnot base64\n-----END PRIVATE KEY-----\n")
    with pytest.raises(SigningKeyError, match="not an unencrypted Ed25519 private key"):
        configured_private_key(wrong, "SIGNING", {})


def test_sign_head_chains_the_signature_and_keeps_a_copy(warehouse, key):
    head_before = list(read_entries(manifest_path(warehouse)))[-1]
    signed = sign_head(warehouse, key)
    assert (signed["seq"], signed["entry_hash"]) == (head_before["seq"], head_before["entry_hash"])
    entry = list(read_entries(manifest_path(warehouse)))[-1]
    assert entry["kind"] == "signed_head" and entry["head"] == signed and entry["seq"] == signed["seq"] + 1
    key.public_key().verify(bytes.fromhex(signed["signature"]), signed_message(signed))  # raises if bad
    kept, problems = read_heads(warehouse / HEADS_FILE)
    assert kept == [signed] and problems == []
    report = verify(warehouse, public_keys=[key.public_key()])
    assert report.ok and report.heads_checked == 2  # the chain's entry and heads.jsonl's copy


def test_signing_an_empty_chain_names_the_genesis_hash(tmp_path, key):
    signed = sign_head(tmp_path, key)
    assert (signed["seq"], signed["entry_hash"]) == (0, GENESIS_HASH)
    assert verify(tmp_path).ok


def test_a_forged_signature_in_the_heads_file(warehouse, key):
    sign_head(warehouse, key)
    path = warehouse / HEADS_FILE
    head = json.loads(path.read_text())
    head["signature"] = Ed25519PrivateKey.generate().sign(signed_message(head)).hex()
    path.write_text(json.dumps(head) + "\n")
    assert kinds(verify(warehouse)) == ["bad_signature"]


def test_a_forged_signed_head_entry_rechained_by_the_forger(warehouse, key):
    """Whoever rewrites the entry can recompute its hash, but not the signature."""
    sign_head(warehouse, key)
    (warehouse / HEADS_FILE).unlink()

    def forge(lines):
        entry = json.loads(lines[-1])
        entry["head"]["signed_at"] = "2020-01-01T00:00:00.000000Z"  # backdated
        entry["entry_hash"] = compute_entry_hash(entry)
        return lines[:-1] + [json.dumps(entry, sort_keys=True, separators=(",", ":")) + "\n"]

    rewrite_manifest(warehouse, forge)
    problems = verify(warehouse).problems
    assert [(p.kind, p.seq) for p in problems] == [("bad_signature", 3)]


def test_a_head_signed_by_another_key_is_untrusted(warehouse, key):
    sign_head(warehouse, generate_private_key())
    report = verify(warehouse, public_keys=[key.public_key()])
    assert set(kinds(report)) == {"untrusted_key"}
    assert verify(warehouse).ok  # without a pinned key, the embedded one is checked


def test_exported_heads_catch_a_truncated_chain(warehouse, key, tmp_path):
    sign_head(warehouse, key)
    exported = tmp_path / "heads.jsonl"
    exported.write_bytes((warehouse / HEADS_FILE).read_bytes())
    rewrite_manifest(warehouse, lambda lines: lines[:1])  # history cut back to the first entry
    report = verify(warehouse, heads_files=[exported])
    head_problems = [(p.kind, p.seq) for p in report.problems if p.kind.startswith("head")]
    assert head_problems == [("head_beyond_chain", 2), ("head_beyond_chain", 2)]  # heads.jsonl and the export
    assert all("truncated history" in p.detail for p in report.problems if p.kind == "head_beyond_chain")


def test_exported_heads_catch_rewritten_history(warehouse, key, tmp_path):
    """A forger rebuilds a consistent chain with different content: only the signed head shows it."""
    sign_head(warehouse, key)
    exported = tmp_path / "heads.jsonl"
    exported.write_bytes((warehouse / HEADS_FILE).read_bytes())
    entries = list(read_entries(manifest_path(warehouse)))
    manifest_path(warehouse).unlink()
    (warehouse / HEADS_FILE).unlink()
    forged = Manifest(manifest_path(warehouse))
    forged.append([{k: v for k, v in e.items() if k not in ("seq", "created_at", "prev_hash", "entry_hash")}
                   for e in entries[:2]])
    forged.close()
    report = verify(warehouse, heads_files=[exported])
    assert [(p.kind, p.seq) for p in report.problems] == [("head_mismatch", 2)]


def test_an_unreadable_heads_line_is_reported(warehouse, key, tmp_path):
    sign_head(warehouse, key)
    exported = tmp_path / "heads.jsonl"
    exported.write_text((warehouse / HEADS_FILE).read_text() + '{"seq": "two"}\nnot json\n')
    assert kinds(verify(warehouse, heads_files=[exported])) == ["heads_unreadable", "heads_unreadable"]


def test_signing_from_two_processes_keeps_one_chain(warehouse, key, tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    key_file = tmp_path / "k.pem"
    write_private_key(key_file, key)
    script = ("import sys; from pathlib import Path; from warehouse.signing import *; "
              "k = load_private_key(Path(sys.argv[2]).read_bytes(), 'k'); "
              "[sign_head(Path(sys.argv[1]), k) for _ in range(5)]")
    root = Path(__file__).parents[2]
    workers = [subprocess.Popen([sys.executable, "-c", script, str(warehouse), str(key_file)], cwd=root)
               for _ in range(2)]
    assert [w.wait(60) for w in workers] == [0, 0]
    assert len(read_heads(warehouse / HEADS_FILE)[0]) == 10
    report = verify(warehouse, public_keys=[key.public_key()])
    assert report.ok and report.heads_checked == 20
    assert os.path.getsize(warehouse / HEADS_FILE) > 0


def test_verify_beside_a_running_server_ignores_what_was_appended_meanwhile(warehouse):
    """Files landed, compacted or deleted while verify runs are explained by the entries appended since."""
    from warehouse.manifest import VerifyStats, verify_chain
    from tests.warehouse.audit_data import compact_all

    class LandWhileVerifying:
        """Runs after the chain was read and before the files are checked: the "server" acts right then."""

        def see(self, entry):
            return []

        def finish(self, head):
            land(warehouse, decisions("carol", 2))  # a new segment, its entry after our read
            compact_all(warehouse)                 # replaces and deletes files we think are live
            return []

    stats = VerifyStats()
    assert verify_chain(warehouse, stats=stats, observers=[LandWhileVerifying()]) == []
    assert stats.head.seq == 2  # what was read; the appended entries were only used to explain
    assert verify(warehouse).ok
