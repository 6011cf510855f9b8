"""The manifest: an append-only, hash-chained log of every file the warehouse lands.

One JSON object per line (``manifest/manifest.jsonl``). Each entry carries
``prev_hash`` (the previous entry's ``entry_hash``) and ``entry_hash`` = SHA-256
of the entry's canonical JSON without ``entry_hash`` (keys sorted, no spaces,
ASCII). Changing, removing or reordering any entry breaks the chain from there
on; changing, removing or adding a Parquet file no longer matches the entries.
``verify_chain`` checks both. One process appends (the lander and the compactor
threads, serialized by a lock); each append is one ``write`` + ``fsync``.
"""
from __future__ import annotations

import fcntl
from contextlib import contextmanager
import hashlib
import json
import os
import re
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator, Mapping

GENESIS_HASH = "0" * 64
MANIFEST_FILE = Path("manifest") / "manifest.jsonl"
# Zero-row files holding a dataset's schema for the catalog (warehouse/catalog.py); not data.
SCHEMA_FILE_NAME = re.compile(r"v\d+-schema\.parquet")
_CHUNK = 1 << 20


def canonical_json(entry: Mapping[str, Any]) -> bytes:
    return json.dumps(entry, sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                      allow_nan=False).encode()


def compute_entry_hash(entry: Mapping[str, Any]) -> str:
    return hashlib.sha256(canonical_json({k: v for k, v in entry.items() if k != "entry_hash"})).hexdigest()


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def manifest_path(data_dir: Path) -> Path:
    return Path(data_dir) / MANIFEST_FILE


# --------------------------------------------------------------------------- reading

def read_entries(path: Path) -> Iterator[dict]:
    """Entries in order. A last line without newline is a torn, uncommitted append: skipped."""
    if not Path(path).exists():
        return
    with open(path, "rb") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.endswith(b"\n"):
                return
            try:
                yield json.loads(line)
            except ValueError as exc:
                raise ValueError(f"{path}: line {number} is not JSON: {exc}") from exc


def committed_size(handle) -> int:
    """Bytes up to and including the last newline: what follows is a torn append."""
    end = handle.seek(0, os.SEEK_END)
    while end > 0:
        start = max(0, end - _CHUNK)
        handle.seek(start)
        cut = handle.read(end - start).rfind(b"\n")
        if cut >= 0:
            return start + cut + 1
        end = start
    return 0


def read_entries_reversed(path: Path) -> Iterator[dict]:
    """Entries newest first, reading the file backwards in chunks (recovery needs only the tail)."""
    if not Path(path).exists():
        return
    with open(path, "rb") as handle:
        end = committed_size(handle)
        carry = b""
        while end > 0:
            start = max(0, end - _CHUNK)
            handle.seek(start)
            block = handle.read(end - start) + carry
            end = start
            lines = block.split(b"\n")
            carry = lines.pop(0) if start > 0 else b""
            for line in reversed(lines):
                if line:
                    yield json.loads(line)


@dataclass(frozen=True)
class ChainHead:
    seq: int
    entry_hash: str


def chain_head(path: Path) -> ChainHead:
    """The last committed entry's seq and hash; (0, GENESIS_HASH) for an empty manifest."""
    for entry in read_entries_reversed(path):
        return ChainHead(entry["seq"], entry["entry_hash"])
    return ChainHead(0, GENESIS_HASH)


# --------------------------------------------------------------------------- writing

def _now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


class ManifestBroken(Exception):
    """An append failed and could not be rolled back; appending more would fork the chain."""


class Manifest:
    """An appender of one manifest file.

    Several processes may append (the server's lander and compactor, and a
    ``reprice`` run from the CLI): each append takes an exclusive flock on the
    file, re-reads the chain head if another process appended since, then writes
    and fsyncs, so the chain never forks. Readers take no lock.
    """

    def __init__(self, path: Path, fsync: bool = True):
        self.path = Path(path)
        self.fsync = fsync
        self.path.parent.mkdir(parents=True, exist_ok=True)
        created = not self.path.exists()
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
        if created and fsync:
            _fsync_dir(self.path.parent)
        self._broken = False
        self._lock = threading.Lock()  # the lander and the compactor append from their threads
        with self._file_lock():
            self._sync_head()

    def close(self) -> None:
        os.close(self._fd)

    def append(self, entries: list[dict]) -> list[dict]:
        """Chain, write and fsync ``entries`` (seq, created_at, prev_hash, entry_hash are set here)."""
        with self._lock, self._file_lock():
            if os.fstat(self._fd).st_size != self._size:  # another process appended meanwhile
                self._sync_head()
            return self._append(entries)

    @contextmanager
    def _file_lock(self):
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def _sync_head(self) -> None:
        """Drop a torn tail (a crash mid-append never committed it) and read the current head."""
        self._drop_torn_tail()
        self.head = chain_head(self.path)
        self._size = os.fstat(self._fd).st_size

    def _append(self, entries: list[dict]) -> list[dict]:
        if self._broken:
            raise ManifestBroken(f"{self.path}: a failed append could not be rolled back")
        chained, head = [], self.head
        for entry in entries:
            full = dict(entry, seq=head.seq + 1, created_at=_now_iso(), prev_hash=head.entry_hash)
            full["entry_hash"] = compute_entry_hash(full)
            chained.append(full)
            head = ChainHead(full["seq"], full["entry_hash"])
        data = b"".join(canonical_json(entry) + b"\n" for entry in chained)
        size = os.fstat(self._fd).st_size
        try:
            _write_all(self._fd, data)
            if self.fsync:
                os.fsync(self._fd)
        except OSError:
            self._roll_back(size)
            raise
        self.head = head
        self._size = size + len(data)
        return chained

    def _roll_back(self, size: int) -> None:
        try:
            os.ftruncate(self._fd, size)
            os.fsync(self._fd)
        except OSError:
            self._broken = True

    def _drop_torn_tail(self) -> None:
        """A crash mid-append leaves a line without newline; it was never committed."""
        with open(self.path, "rb") as handle:
            size = handle.seek(0, os.SEEK_END)
            keep = committed_size(handle)
        if keep < size:
            os.ftruncate(self._fd, keep)
            os.fsync(self._fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# --------------------------------------------------------------------------- verification

@dataclass(frozen=True)
class Problem:
    """One finding of ``verify_chain``. ``kind`` is one of PROBLEM_KINDS."""

    kind: str
    detail: str
    seq: int | None = None
    file: str | None = None

    def __str__(self) -> str:
        where = " ".join(part for part in (
            f"seq {self.seq}" if self.seq is not None else "", self.file or "") if part)
        return f"{self.kind}: {where}: {self.detail}" if where else f"{self.kind}: {self.detail}"


PROBLEM_KINDS = {
    "unreadable": "a manifest line is not JSON",
    "torn_tail": "the last line has no newline (a crash mid-append; the next start drops it)",
    "entry_modified": "an entry's content does not match its entry_hash",
    "broken_link": "an entry's prev_hash is not the previous entry's entry_hash",
    "reordered": "seq goes backwards",
    "entry_missing": "seq skips numbers: entries were removed",
    "missing": "a file the manifest lists as live is not on disk",
    "modified": "a file's SHA-256 differs from its manifest entry",
    "extra": "a Parquet file under parquet/ that no manifest entry lists",
    "unknown_replaced": "a compaction replaces a file that was not live",
}


def verify_chain(data_dir: Path) -> list[Problem]:
    """Check the hash chain end to end and the files on disk against it (empty list = intact)."""
    data_dir = Path(data_dir)
    live: dict[str, str] = {}       # file -> sha256, files the manifest says are current
    replaced: dict[str, str] = {}   # replaced by a compaction; may linger for the grace period
    problems = _verify_lines(manifest_path(data_dir), live, replaced)
    problems += _verify_files(data_dir, live, replaced)
    return problems


def _verify_lines(path: Path, live: dict[str, str], replaced: dict[str, str]) -> list[Problem]:
    problems: list[Problem] = []
    prev_hash, prev_seq = GENESIS_HASH, 0
    if not path.exists():
        return problems
    with open(path, "rb") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.endswith(b"\n"):
                problems.append(Problem("torn_tail", f"line {number} has no newline"))
                break
            try:
                entry = json.loads(line)
            except ValueError as exc:
                problems.append(Problem("unreadable", f"line {number}: {exc}"))
                continue
            problems += _check_entry(entry, prev_hash, prev_seq)
            prev_hash, prev_seq = entry.get("entry_hash"), entry.get("seq", prev_seq)
            problems += _apply_entry(entry, live, replaced)
    return problems


def _check_entry(entry: dict, prev_hash: str, prev_seq: int) -> list[Problem]:
    seq = entry.get("seq")
    problems = []
    if compute_entry_hash(entry) != entry.get("entry_hash"):
        problems.append(Problem("entry_modified", "entry_hash does not match the content", seq))
    if entry.get("prev_hash") != prev_hash:
        problems.append(Problem("broken_link", f"prev_hash {entry.get('prev_hash')} != {prev_hash}", seq))
    if not isinstance(seq, int) or seq <= prev_seq:
        problems.append(Problem("reordered", f"seq {seq} after {prev_seq}", seq))
    elif seq != prev_seq + 1:
        problems.append(Problem("entry_missing", f"seq jumps from {prev_seq} to {seq}", seq))
    return problems


def _apply_entry(entry: dict, live: dict[str, str], replaced: dict[str, str]) -> list[Problem]:
    problems = []
    if entry.get("kind") == "compaction":
        for old in entry.get("source", {}).get("replaces", []):
            recorded = live.pop(old["file"], None)
            if recorded is None:
                problems.append(Problem("unknown_replaced", "replaced file was not live",
                                        entry.get("seq"), old["file"]))
            elif recorded != old["sha256"]:
                problems.append(Problem("modified", "file changed before a compaction replaced it",
                                        entry.get("seq"), old["file"]))
            replaced[old["file"]] = old["sha256"]
    if entry.get("file"):
        live[entry["file"]] = entry.get("sha256", "")
        replaced.pop(entry["file"], None)
    return problems


def _verify_files(data_dir: Path, live: dict[str, str], replaced: dict[str, str]) -> list[Problem]:
    problems = []
    for name, sha in sorted(live.items()):
        path = data_dir / name
        if not path.exists():
            problems.append(Problem("missing", "listed in the manifest, not on disk", file=name))
        elif file_sha256(path) != sha:
            problems.append(Problem("modified", "SHA-256 differs from the manifest", file=name))
    for name, sha in sorted(replaced.items()):
        path = data_dir / name
        if path.exists() and file_sha256(path) != sha:
            problems.append(Problem("modified", "replaced file (awaiting deletion) was changed", file=name))
    for path in sorted((data_dir / "parquet").glob("*/*/*.parquet")):
        name = path.relative_to(data_dir).as_posix()
        if not SCHEMA_FILE_NAME.fullmatch(path.name) and name not in live and name not in replaced:
            problems.append(Problem("extra", "not listed in the manifest", file=name))
    return problems
