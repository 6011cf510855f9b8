"""Erasure: remove one person's personal data from every file the warehouse keeps.

A person appears in the warehouse only as a pseudonym (HMAC-SHA256 of their id,
64 hex digits; see the collector's ``pseudonymize.py``), in ``subject_id``,
``user_id``, ``reviewer_id`` and inside the ``attributes``/``resource`` JSON.
``erase_subject`` rewrites every file holding that pseudonym:

* in every row, each occurrence of the pseudonym in any text column becomes
  ``[erased]`` (so ``subject_id = '[erased]'`` marks the row as erased);
* rows *about* the person (``subject_id`` or ``user_id`` is theirs) also lose
  ``conversation_id`` (it links to conversations kept elsewhere) and their whole
  ``attributes`` JSON (free-form: it may hold captured content and personal keys
  no rule recognizes), which becomes ``{"inferledger.erased":true}``;
* everything else stays: the decision, its score and reasons, model, tokens,
  cost, times and the trace/span ids (needed for deduplication and cost
  versions), so population counts and costs still reconcile. Another person's
  ``user_id`` or ``reviewer_id`` on the row is theirs, not the subject's, and stays.

Files the manifest lists are rewritten under new names (``<name>-erased-<id>``)
and one ``erasure`` entry per file links the old name and hash to the new one, so
``verify`` accepts the change and still catches any other; non-Parquet files the
manifest lists (quarantined WAL bytes) are removed the same way. Then the old
files are deleted. Files the manifest does not list (exports under the data
directory) are scrubbed in place; a file under ``parquet/`` that no entry lists
(foreign, or a landing not yet committed) is left alone and named in the receipt's
``not_erased``, as are manifest lines (a chain cannot be rewritten). A closing
``erasure`` entry and a receipt in the ``erasures`` dataset record who, when, why,
a hash of the pseudonym (not the pseudonym), the files and the rows.

Coordination: spans still in the write-ahead log are waited for until a running
server has landed them (they are in no Parquet file yet); the rewrite runs under
the compactor's rewrite lock, so no merge reads a file while it is replaced.
Spans of the person that arrive after the erasure are new data: erase again.
"""
from __future__ import annotations

import hashlib
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from warehouse.compaction import rewrite_lock
from warehouse.landing import ParquetSettings, parquet_options, write_atomically
from warehouse.maintenance import (append_entries, finish_removals, new_action_id, remove_files, utc_now,
                                   write_log_table)
from warehouse.manifest import LiveFiles, Manifest, file_sha256, replay
from warehouse.wal import Frame, decode_payload, read_frames

ERASURES = "erasures"
ERASED = "[erased]"
ERASED_ATTRIBUTES = '{"inferledger.erased":true}'
PERSON_COLUMNS = ("subject_id", "user_id")  # the row is about the person
CLEARED_FOR_PERSON = (("conversation_id", None), ("attributes", ERASED_ATTRIBUTES))
NOT_SCANNED = {"wal", "tmp", "spill", "keys"}  # the write-ahead log is waited for instead
# Files other processes append to through an open descriptor: a rewrite would lose their appends
# (and the manifest is a chain). Searched only; a hit is reported as not erased.
SEARCH_ONLY = {"manifest", "access_log"}
ERASURE_SCHEMA = pa.schema([
    ("erasure_id", pa.string()), ("erased_at", pa.timestamp("us", tz="UTC")), ("actor", pa.string()),
    ("reason", pa.string()), ("subject_hash", pa.string()), ("rows_affected", pa.int64()),
    ("files_rewritten", pa.list_(pa.struct([("file", pa.string()), ("sha256", pa.string()),
                                            ("new_file", pa.string()), ("new_sha256", pa.string()),
                                            ("rows_erased", pa.int64())]))),
    ("files_removed", pa.list_(pa.string())), ("files_scrubbed", pa.list_(pa.string())),
    ("not_erased", pa.list_(pa.string())), ("chain_seq", pa.int64()), ("chain_entry_hash", pa.string()),
])
PSEUDONYM = re.compile(r"[0-9a-f]{64}")
_ERASED_SUFFIX = re.compile(r"-erased-[0-9a-f]{8}$")
_VERSIONED_NAME = re.compile(r"v(\d+)-")


class ErasureError(Exception):
    """The erasure could not run; nothing was rewritten. The message says why and what to do."""


def subject_hash(pseudonym: str) -> str:
    """What the receipt keeps instead of the pseudonym: proof of whom, linking to no row."""
    return hashlib.sha256(b"inferledger-erasure:" + pseudonym.encode()).hexdigest()


def erase_subject(data_dir: str | Path, subject_pseudonym: str, *, manifest: Manifest | None, actor: str,
                  reason: str, wal_timeout_s: float = 30.0) -> dict:
    """Erase the person with pseudonym ``subject_pseudonym`` everywhere; returns the receipt (a dict).

    Inside the server pass its ``manifest``; ``None`` opens one for the call (appends
    are locked, so a CLI run beside a server is safe).
    """
    data_dir = Path(data_dir)
    if not PSEUDONYM.fullmatch(subject_pseudonym or ""):
        raise ErasureError("a subject pseudonym is 64 lower-case hex digits (HMAC-SHA256); "
                           "pseudonymize the raw id with the collector's key first")
    needle = subject_pseudonym
    _wait_for_wal(data_dir, needle, wal_timeout_s)
    with rewrite_lock(data_dir):
        files = replay(data_dir)
        finish_removals(data_dir, files)
        _remove_uncommitted_rewrites(data_dir, files)
        plan = _find(data_dir, files, needle)
        now = utc_now()
        erasure = _Erasure(new_action_id("erasure", now), now, actor, reason, needle)
        return _carry_out(data_dir, manifest, plan, erasure)


# --------------------------------------------------------------------------- scrubbing rows

def _text_columns(schema: pa.Schema) -> list[str]:
    return [f.name for f in schema if _is_text(f.type)
            or (pa.types.is_list(f.type) and _is_text(f.type.value_type))]


def _is_text(type_: pa.DataType) -> bool:
    return pa.types.is_string(type_) or pa.types.is_large_string(type_)


def row_hits(table: pa.Table, needle: str) -> pa.Array:
    """Per row: does any text column (or list of texts) contain ``needle``?"""
    hits = pa.repeat(pa.scalar(False), table.num_rows)
    for name in _text_columns(table.schema):
        column = table[name].combine_chunks()
        if pa.types.is_list(column.type):
            flat_hits = pc.fill_null(pc.match_substring(pc.list_flatten(column), needle), False)
            rows = pc.filter(pc.list_parent_indices(column), flat_hits)
            found = pc.is_in(pa.arange(0, table.num_rows), value_set=rows.cast(pa.int64()))
        else:
            found = pc.fill_null(pc.match_substring(column, needle), False)
        hits = pc.or_(hits, found)
    return hits


def scrub(table: pa.Table, needle: str) -> tuple[pa.Table, int]:
    """``table`` with the person erased (see the module docstring); and how many rows changed."""
    affected = pc.sum(row_hits(table, needle)).as_py() or 0
    if not affected:
        return table, 0
    about = pa.repeat(pa.scalar(False), table.num_rows)
    for name in PERSON_COLUMNS:
        if name in table.column_names:
            about = pc.or_(about, pc.fill_null(pc.equal(table[name], needle), False))
    for name, value in CLEARED_FOR_PERSON:
        if name in table.column_names:
            column = table[name]
            table = _set(table, name, pc.if_else(about, pa.scalar(value, column.type), column))
    for name in _text_columns(table.schema):
        table = _set(table, name, _replace(table[name].combine_chunks(), needle))
    return table, affected


def _replace(column: pa.Array, needle: str) -> pa.Array:
    if pa.types.is_list(column.type):
        values = pc.replace_substring(column.values, pattern=needle, replacement=ERASED)
        return type(column).from_arrays(column.offsets, values, type=column.type, mask=column.is_null())
    return pc.replace_substring(column, pattern=needle, replacement=ERASED)


def _set(table: pa.Table, name: str, column) -> pa.Table:
    index = table.schema.get_field_index(name)
    return table.set_column(index, table.schema.field(index), column)


# --------------------------------------------------------------------------- finding the person

@dataclass
class _Plan:
    listed: dict[str, str] = field(default_factory=dict)   # manifest-listed file holding the person -> sha256
    lingering: list[str] = field(default_factory=list)     # replaced by a compaction, still in its grace period
    unlisted: list[str] = field(default_factory=list)      # files no entry lists (exports): scrubbed in place
    not_erased: list[str] = field(default_factory=list)    # places that cannot be rewritten (the manifest)


def _find(data_dir: Path, files: LiveFiles, needle: str) -> _Plan:
    plan = _Plan()
    tampered = []
    for name, sha in sorted(files.live.items()):
        path = data_dir / name
        holds = _holds_or_none(path, needle) if path.exists() else False
        if holds is None or (holds and file_sha256(path) != sha):
            tampered.append(name)
        elif holds:
            plan.listed[name] = sha
    if tampered:
        raise ErasureError(f"{len(tampered)} file(s) that may hold the subject do not match the manifest "
                           f"({', '.join(tampered[:3])}); run `inferledger verify` first: rewriting them "
                           "would hide the change")
    plan.lingering = [name for name in sorted(files.replaced)
                      if (data_dir / name).exists() and _search(data_dir / name, needle)]
    known = set(files.live) | set(files.replaced) | set(files.removed)
    for path in _unlisted_files(data_dir, known):
        if _search(path, needle):
            name = path.relative_to(data_dir).as_posix()
            # Under parquet/, a file no entry lists is foreign (verify reports it) or a landing not yet
            # committed (new spans of the person): rewriting either would break or hide something.
            left = name.startswith("parquet/") or name.split("/")[0] in SEARCH_ONLY
            (plan.not_erased if left else plan.unlisted).append(name)
    return plan


def _holds_or_none(path: Path, needle: str) -> bool | None:
    """None: the file cannot be read as what its name says (a changed or damaged file)."""
    try:
        return _holds(path, needle)
    except (pa.ArrowInvalid, OSError):
        return None


def _search(path: Path, needle: str) -> bool:
    """Like ``_holds``, but a file that does not read as Parquet is searched as bytes."""
    found = _holds_or_none(path, needle)
    return needle.encode() in path.read_bytes() if found is None else found


def _holds(path: Path, needle: str) -> bool:
    if path.suffix != ".parquet":
        return needle.encode() in path.read_bytes()
    parquet = pq.ParquetFile(path)
    columns = _text_columns(parquet.schema_arrow)
    if not columns or parquet.metadata.num_rows == 0:
        return False
    return any(pc.any(row_hits(pa.Table.from_batches([batch]), needle)).as_py()
               for batch in parquet.iter_batches(columns=columns))


def _unlisted_files(data_dir: Path, known: set[str]):
    for path in sorted(data_dir.rglob("*")):
        relative = path.relative_to(data_dir)
        if relative.parts[0] in NOT_SCANNED or not path.is_file() or path.suffix == ".lock":
            continue
        if relative.as_posix() not in known:
            yield path


def _remove_uncommitted_rewrites(data_dir: Path, files: LiveFiles) -> None:
    """Rewritten files of an erasure that crashed before its commit: never valid, never listed."""
    known = set(files.live) | set(files.replaced)
    stale = [path.relative_to(data_dir).as_posix() for path in data_dir.glob("**/*-erased-*")
             if path.is_file() and _ERASED_SUFFIX.search(path.stem)]
    remove_files(data_dir, [name for name in stale if name not in known])


def _wait_for_wal(data_dir: Path, needle: str, timeout_s: float) -> None:
    """Until no write-ahead log file holds the person: a running server lands them within seconds."""
    deadline = time.monotonic() + timeout_s
    checked: dict[tuple[Path, int], bool] = {}
    while True:
        holding = [path for path in sorted((data_dir / "wal").glob("*/*.wal")) if _wal_holds(path, needle, checked)]
        if not holding:
            return
        if time.monotonic() >= deadline:
            raise ErasureError(
                f"{len(holding)} write-ahead log file(s) still hold spans of this subject and were not landed "
                f"within {timeout_s:.0f} s. A running server lands them within seconds (with none running, "
                "`inferledger erase` lands the log itself); retry")
        time.sleep(0.2)


def _wal_holds(path: Path, needle: str, checked: dict) -> bool:
    try:
        data = path.read_bytes()
    except FileNotFoundError:  # landed meanwhile
        return False
    key = (path, len(data))
    if key not in checked:
        checked[key] = needle.encode() in data or any(
            isinstance(frame, Frame) and pc.any(row_hits(_decoded(frame), needle)).as_py()
            for frame in read_frames(data))
    return checked[key]


def _decoded(frame: Frame) -> pa.Table:
    try:
        return decode_payload(frame.payload)
    except pa.ArrowInvalid:  # quarantined when landed; searched as bytes there
        return pa.table({})


# --------------------------------------------------------------------------- rewriting

@dataclass
class _Erasure:
    erasure_id: str
    at: object
    actor: str
    reason: str
    needle: str
    rewritten: list[dict] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    rows: int = 0


def _carry_out(data_dir: Path, manifest, plan: _Plan, erasure: _Erasure) -> dict:
    entries = [_rewrite_listed(data_dir, name, sha, erasure) for name, sha in plan.listed.items()]
    for name in plan.unlisted:
        erasure.rows += _scrub_in_place(data_dir, name, erasure.needle)
    closing = {"kind": "erasure", "source": {"erasure_id": erasure.erasure_id,
                                             "subject_hash": subject_hash(erasure.needle),
                                             "files": len(entries), "rows_erased": erasure.rows}}
    committed = append_entries(data_dir, manifest, entries + [closing])[-1]  # the commit point
    remove_files(data_dir, list(plan.listed) + plan.lingering)
    return _receipt(data_dir, manifest, plan, erasure, committed)


def _rewrite_listed(data_dir: Path, name: str, sha: str, erasure: _Erasure) -> dict:
    """Write the scrubbed copy under a new name; the entry that commits it (or the removal)."""
    source = {"erasure_id": erasure.erasure_id, "replaces": [{"file": name, "sha256": sha}]}
    dataset = name.split("/")[1] if name.startswith("parquet/") else None
    if not name.endswith(".parquet"):  # quarantined WAL bytes: not rows to scrub, so removed
        erasure.removed.append(name)
        return {"kind": "erasure", "dataset": dataset, "source": source}
    old = data_dir / name
    new_name = (Path(name).parent / f"{_ERASED_SUFFIX.sub('', old.stem)}-erased-{erasure.erasure_id[-8:]}.parquet"
                ).as_posix()
    facts = _rewrite_parquet(old, data_dir / new_name, data_dir / "tmp", erasure.needle)
    rows_erased = facts.pop("rows_erased")
    erasure.rows += rows_erased
    erasure.rewritten.append({"file": name, "sha256": sha, "new_file": new_name, "new_sha256": facts["sha256"],
                              "rows_erased": rows_erased})
    version = _VERSIONED_NAME.match(old.name)
    return {"kind": "erasure", "dataset": dataset, "file": new_name, **facts,
            **({"schema_version": int(version.group(1))} if version else {}),
            "source": {**source, "rows_erased": rows_erased}}


def _rewrite_parquet(src: Path, dest: Path, tmp_dir: Path, needle: str) -> dict:
    """Stream ``src`` row group by row group through ``scrub`` into ``dest`` (tmp, fsync, rename)."""
    settings = ParquetSettings()
    parquet = pq.ParquetFile(src)
    schema = parquet.schema_arrow
    tmp_dir.mkdir(parents=True, exist_ok=True)
    tmp = tmp_dir / f"{dest.name}.tmp"
    rows = erased = 0
    low = high = None
    with pq.ParquetWriter(tmp, schema, **parquet_options(schema, settings)) as writer:
        for batch in parquet.iter_batches(batch_size=settings.row_group_rows):
            table, changed = scrub(pa.Table.from_batches([batch], schema=schema), needle)
            writer.write_table(table, settings.row_group_rows)
            rows, erased = rows + table.num_rows, erased + changed
            low, high = _widen(low, high, table)
    data = tmp.read_bytes()
    write_atomically(data, dest, tmp_dir)
    tmp.unlink()
    return {"rows": rows, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest(),
            "min_time": low, "max_time": high, "rows_erased": erased}


def _widen(low, high, table: pa.Table):
    if "start_time" not in table.column_names or table.num_rows == 0:
        return low, high
    bounds = pc.min_max(table["start_time"])
    values = [v.isoformat() for v in (bounds["min"].as_py(), bounds["max"].as_py()) if v is not None]
    if not values:
        return low, high
    return min(filter(None, (low, values[0]))), max(filter(None, (high, values[-1])))


def _scrub_in_place(data_dir: Path, name: str, needle: str) -> int:
    """A file no entry lists: same name, scrubbed content (atomically). Returns rows changed."""
    path, tmp_dir = data_dir / name, data_dir / "tmp"
    if path.suffix == ".parquet":
        try:
            return _rewrite_parquet(path, path, tmp_dir, needle)["rows_erased"]
        except pa.ArrowInvalid:  # not really Parquet: scrubbed as bytes below
            pass
    tmp_dir.mkdir(parents=True, exist_ok=True)
    write_atomically(path.read_bytes().replace(needle.encode(), ERASED.encode()), path, tmp_dir)
    return 0


def _receipt(data_dir: Path, manifest, plan: _Plan, erasure: _Erasure, committed: dict) -> dict:
    receipt = {
        "erasure_id": erasure.erasure_id, "erased_at": erasure.at, "actor": erasure.actor,
        "reason": erasure.reason, "subject_hash": subject_hash(erasure.needle), "rows_affected": erasure.rows,
        "files_rewritten": erasure.rewritten, "files_removed": erasure.removed + plan.lingering,
        "files_scrubbed": plan.unlisted, "not_erased": plan.not_erased,
        "chain_seq": committed["seq"], "chain_entry_hash": committed["entry_hash"],
    }
    facts = write_log_table(data_dir, ERASURES, erasure.erasure_id,
                            pa.Table.from_pylist([receipt], schema=ERASURE_SCHEMA), erasure.at.date())
    append_entries(data_dir, manifest, [{"kind": "erasure_receipt", **facts,
                                         "source": {"erasure_id": erasure.erasure_id}}])
    return receipt | {"erased_at": erasure.at.isoformat(), "receipt_file": facts["file"]}
