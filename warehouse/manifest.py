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
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

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

    def append_at_head(self, build: Callable[[ChainHead], list[dict]]) -> list[dict]:
        """Append the entries ``build(head)`` returns, built while the lock is held.

        For an entry that must name the exact entry it follows (a signed chain head):
        nobody can append between reading the head and chaining the new entries.
        """
        with self._lock, self._file_lock():
            if os.fstat(self._fd).st_size != self._size:
                self._sync_head()
            return self._append(build(self.head))

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


@contextmanager
def opened(data_dir: Path, manifest: Manifest | None = None) -> Iterator[Manifest]:
    """The caller's manifest (inside the server, its own), or one opened for the block."""
    if manifest is not None:
        yield manifest
        return
    own = Manifest(manifest_path(data_dir))
    try:
        yield own
    finally:
        own.close()


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
    "unknown_replaced": "a compaction, erasure or retention entry replaces a file that was not live",
    "not_removed": "a file an erasure or retention entry removed is still on disk",
    "bad_signature": "a signed chain head's Ed25519 signature does not verify",
    "untrusted_key": "a chain head is signed by a key other than the trusted public key(s)",
    "head_mismatch": "a signed head names an entry whose hash is not the one in the chain (rewritten history)",
    "head_beyond_chain": "a signed head names a seq past the end of the chain (truncated history)",
    "heads_unreadable": "a line of a heads file is not a signed head",
}
# Entry kinds after which the files they name in ``source`` must be gone from disk.
REMOVING_KINDS = {"erasure": "replaces", "retention": "removes"}
_DATE_PARTITION = re.compile(r"/date=(\d{4}-\d{2}-\d{2})/")


@dataclass
class VerifyStats:
    """What a verification looked at, for its summary line."""

    entries: int = 0
    files_checked: int = 0
    bytes_hashed: int = 0
    head: ChainHead = ChainHead(0, GENESIS_HASH)


@dataclass
class LiveFiles:
    """The files the manifest describes, by replaying its entries in order.

    ``live``: file -> sha256 of every current file. ``replaced``: replaced by a
    compaction, may still be on disk during its grace period. ``removed``: file ->
    (sha256, kind, seq) of files an erasure or a retention removed, which must be gone.
    """

    live: dict[str, str] = field(default_factory=dict)
    replaced: dict[str, str] = field(default_factory=dict)
    removed: dict[str, tuple[str, str, int | None]] = field(default_factory=dict)


def replay(data_dir: Path) -> LiveFiles:
    """The current file set according to the manifest (erasure and retention plan with it)."""
    files = LiveFiles()
    for entry in read_entries(manifest_path(data_dir)):
        _apply_entry(entry, files)
    return files


def verify_chain(data_dir: Path, date_from: date | None = None, date_to: date | None = None,
                 stats: VerifyStats | None = None, observers: list | None = None) -> list[Problem]:
    """Check the hash chain end to end and the files on disk against it (empty list = intact).

    ``date_from``/``date_to`` limit the file checks to ``date=`` partitions in range
    (the chain itself is always checked whole: it is cheap). ``stats`` is filled in
    when given. Each observer's ``see(entry) -> list[Problem]`` is called for every
    readable entry and ``finish(head) -> list[Problem]`` at the end (signed heads).
    """
    data_dir = Path(data_dir)
    stats = stats if stats is not None else VerifyStats()
    observers = observers or []
    files = LiveFiles()
    problems = _verify_lines(manifest_path(data_dir), files, stats, observers)
    for observer in observers:
        problems += observer.finish(stats.head)
    problems += _verify_files(data_dir, files, _DateRange(date_from, date_to), stats)
    return _without_later_changes(data_dir, problems, stats.head)


def _without_later_changes(data_dir: Path, problems: list[Problem], head: ChainHead) -> list[Problem]:
    """Drop file problems that entries appended *during* the verification explain.

    Verifying beside a running server: a segment landed after the manifest was read
    is on disk but not yet in our replay (``extra``); a compaction or erasure
    committed meanwhile may have deleted a file we still thought live (``missing``).
    """
    if not any(p.kind in ("extra", "missing") for p in problems):
        return problems
    later = LiveFiles()
    for entry in read_entries_reversed(manifest_path(data_dir)):
        if not isinstance(entry.get("seq"), int) or entry["seq"] <= head.seq:
            break
        _apply_entry(entry, later)
    gone = set(later.replaced) | set(later.removed)
    return [p for p in problems if not (p.kind == "extra" and p.file in later.live
                                        or p.kind == "missing" and p.file in gone)]


def _verify_lines(path: Path, files: LiveFiles, stats: VerifyStats, observers: list) -> list[Problem]:
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
            stats.entries += 1
            problems += _check_entry(entry, prev_hash, prev_seq)
            prev_hash, prev_seq = entry.get("entry_hash"), entry.get("seq", prev_seq)
            stats.head = ChainHead(prev_seq, prev_hash)
            problems += _apply_entry(entry, files)
            for observer in observers:
                problems += observer.see(entry)
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


def _apply_entry(entry: dict, files: LiveFiles) -> list[Problem]:
    """Replay one entry: a compaction moves its inputs to ``replaced``; an erasure or a
    retention moves the files it names to ``removed``; a file entry makes its file live."""
    problems = []
    kind, seq = entry.get("kind"), entry.get("seq")
    source = entry.get("source") if isinstance(entry.get("source"), dict) else {}
    listed = "replaces" if kind == "compaction" else REMOVING_KINDS.get(kind)
    for old in (source.get(listed) or []) if listed else []:
        recorded = files.live.pop(old["file"], None)
        if recorded is None:
            problems.append(Problem("unknown_replaced", f"{kind} names a file that was not live", seq, old["file"]))
        elif recorded != old["sha256"]:
            problems.append(Problem("modified", f"file changed before a {kind} replaced it", seq, old["file"]))
        if kind == "compaction":
            files.replaced[old["file"]] = old["sha256"]
        else:
            files.removed[old["file"]] = (old["sha256"], kind, seq)
    if entry.get("file"):
        files.live[entry["file"]] = entry.get("sha256", "")
        files.replaced.pop(entry["file"], None)
        files.removed.pop(entry["file"], None)
    return problems


@dataclass(frozen=True)
class _DateRange:
    first: date | None
    last: date | None

    def covers(self, name: str) -> bool:
        """Without bounds every file; with bounds only files of ``date=`` partitions in range."""
        if self.first is None and self.last is None:
            return True
        match = _DATE_PARTITION.search("/" + name)
        if match is None:
            return False
        day = date.fromisoformat(match.group(1))
        return (self.first is None or day >= self.first) and (self.last is None or day <= self.last)


def _verify_files(data_dir: Path, files: LiveFiles, dates: _DateRange, stats: VerifyStats) -> list[Problem]:
    problems = []
    for name, sha in sorted(files.live.items()):
        if not dates.covers(name):
            continue
        found = _hash_counted(data_dir / name, stats)
        if found is None:
            problems.append(Problem("missing", "listed in the manifest, not on disk", file=name))
        elif found != sha:
            problems.append(Problem("modified", "SHA-256 differs from the manifest", file=name))
    for name, sha in sorted(files.replaced.items()):
        if dates.covers(name) and _hash_counted(data_dir / name, stats) not in (None, sha):
            problems.append(Problem("modified", "replaced file (awaiting deletion) was changed", file=name))
    for name, (_, kind, seq) in sorted(files.removed.items()):
        if dates.covers(name) and (data_dir / name).exists():
            problems.append(Problem("not_removed", f"the {kind} at seq {seq} removed it; it is still on disk",
                                    seq, name))
    for path in sorted((data_dir / "parquet").glob("*/*/*.parquet")):
        name = path.relative_to(data_dir).as_posix()
        if SCHEMA_FILE_NAME.fullmatch(path.name) or not dates.covers(name):
            continue
        if name not in files.live and name not in files.replaced and name not in files.removed:
            problems.append(Problem("extra", "not listed in the manifest", file=name))
    return problems


def _hash_counted(path: Path, stats: VerifyStats) -> str | None:
    """The file's SHA-256, None if it is not there (a compaction may delete it as we look)."""
    try:
        size = path.stat().st_size
        digest = file_sha256(path)
    except FileNotFoundError:
        return None
    stats.files_checked += 1
    stats.bytes_hashed += size
    return digest
