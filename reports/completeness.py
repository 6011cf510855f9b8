"""Population completeness for the audit report: is every acknowledged record in the view?

Per UTC day the manifest says how many rows were *landed* from the collector's
write-ahead log (``segment`` entries: spans the collector acknowledged, after
dropping repeats within one log file). Replaying the manifest in order also says
what happened to those rows since:

* a ``compaction`` merged files and dropped repeated copies of a span (an exporter
  retry that landed in two log files): ``compaction_dropped`` = rows in - rows out;
* a ``retention`` entry deleted a whole day: ``retention_removed``;
* an ``erasure`` rewrote files in place of others (same rows, personal data scrubbed);
* what is left is ``live_rows``; the ``inferences`` view keeps one row per span, so
  repeats still spread over live files are ``view_dedup`` = live_rows - in_view.

A day reconciles when ``landed = in_view + compaction_dropped + view_dedup +
retention_removed``, i.e. every difference is a duplicate or a logged deletion.
A ``residual`` other than 0 is unexplained and is flagged: rows that reached the
view without passing the manifest, or a manifest that does not match its files
(the hash-chain check says which).

Gaps: hours and days of the period without a record (of the system in scope), and
the manifest's sequence (``seq`` without holes, every part of every landed log
file present, log files landed in order).
"""
from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path

from warehouse.manifest import manifest_path, read_entries
from warehouse.verify import verify

_PARTITION = re.compile(r"/date=(\d{4}-\d{2}-\d{2})/")
REMOVED_BY = {"retention": "removes"}
REPLACED_BY = {"compaction": "replaces", "erasure": "replaces"}


@dataclass
class DayCounts:
    landed: int = 0
    compaction_dropped: int = 0
    retention_removed: int = 0
    erasure_changed: int = 0
    live_rows: int = 0


@dataclass(frozen=True)
class DayReconciliation:
    day: date
    landed: int
    in_view: int
    compaction_dropped: int
    view_dedup: int
    retention_removed: int
    residual: int
    note: str


@dataclass(frozen=True)
class ChainCheck:
    intact: bool
    head_seq: int
    head_hash: str
    entries: int
    files_checked: int
    bytes_hashed: int
    signed_heads_checked: int
    problems: list[str]


@dataclass
class ManifestFacts:
    """What one pass over the manifest tells about the period."""

    days: dict[date, DayCounts] = field(default_factory=lambda: defaultdict(DayCounts))
    wal_parts: dict[str, set[int]] = field(default_factory=dict)
    wal_total: dict[str, int] = field(default_factory=dict)
    wal_days: dict[str, set[date]] = field(default_factory=lambda: defaultdict(set))
    out_of_order: list[str] = field(default_factory=list)
    quarantined: list[dict] = field(default_factory=list)


def partition_day(name: str | None) -> date | None:
    match = _PARTITION.search("/" + (name or ""))
    return date.fromisoformat(match.group(1)) if match else None


def read_manifest_facts(data_dir: Path, dataset: str = "inferences") -> ManifestFacts:
    """Replay the manifest once: rows per day and what happened to them, log-file parts, order."""
    facts, live, newest_wal = ManifestFacts(), {}, ""
    for entry in read_entries(manifest_path(data_dir)):
        kind, source = entry.get("kind"), entry.get("source") if isinstance(entry.get("source"), dict) else {}
        if source.get("wal") is not None:
            newest_wal = _track_wal(facts, entry, source, newest_wal)
        if entry.get("dataset") != dataset:
            continue
        if kind == "segment":
            _add_live(facts, live, entry, landed=True)
        elif kind in REPLACED_BY:
            inputs = sum(live.pop(old["file"], (None, 0))[1] for old in source.get(REPLACED_BY[kind]) or [])
            output = _add_live(facts, live, entry, landed=False) if entry.get("file") else 0
            day = partition_day(entry.get("file")) or _first_day(source.get(REPLACED_BY[kind]))
            if day is not None:
                counts = facts.days[day]
                if kind == "compaction":
                    counts.compaction_dropped += inputs - output
                else:
                    counts.erasure_changed += inputs - output if entry.get("file") else inputs
        elif kind in REMOVED_BY:
            for old in source.get(REMOVED_BY[kind]) or []:
                day, rows = live.pop(old["file"], (partition_day(old["file"]), 0))
                if day is not None:
                    facts.days[day].retention_removed += rows
    for day, rows in live.values():
        if day is not None:
            facts.days[day].live_rows += rows
    return facts


def _add_live(facts: ManifestFacts, live: dict, entry: dict, landed: bool) -> int:
    day, rows = partition_day(entry.get("file")), int(entry.get("rows") or 0)
    live[entry["file"]] = (day, rows)
    if landed and day is not None:
        facts.days[day].landed += rows
    return rows


def _first_day(files: list | None) -> date | None:
    return next((partition_day(item.get("file")) for item in files or [] if partition_day(item.get("file"))), None)


def _track_wal(facts: ManifestFacts, entry: dict, source: dict, newest_wal: str) -> str:
    """Landing is strictly in log-file order, and every part of a log file gets an entry."""
    wal = str(source["wal"])
    if wal not in facts.wal_parts and wal < newest_wal:
        facts.out_of_order.append(wal)
    facts.wal_parts.setdefault(wal, set()).add(int(source.get("part", 0)))
    facts.wal_total[wal] = int(source.get("parts", 1))
    day = partition_day(entry.get("file")) or _created_day(entry)
    if day is not None:
        facts.wal_days[wal].add(day)
    if entry.get("kind") == "quarantine":
        facts.quarantined.append({"seq": entry.get("seq"), "file": entry.get("file"), "reason": entry.get("reason"),
                                  "created_at": entry.get("created_at"), "day": _created_day(entry)})
    return max(newest_wal, wal)


def _created_day(entry: dict) -> date | None:
    created = entry.get("created_at")
    return date.fromisoformat(created[:10]) if isinstance(created, str) and len(created) >= 10 else None


def reconcile(days: list[date], facts: ManifestFacts, in_view: dict[date, int]) -> list[DayReconciliation]:
    result = []
    for day in days:
        counts = facts.days.get(day, DayCounts())
        viewed = in_view.get(day, 0)
        view_dedup = counts.live_rows - viewed
        residual = counts.landed - viewed - counts.compaction_dropped - view_dedup - counts.retention_removed \
            - counts.erasure_changed
        note = _note(counts, viewed, view_dedup, residual)
        result.append(DayReconciliation(day, counts.landed, viewed, counts.compaction_dropped, view_dedup,
                                        counts.retention_removed, residual, note))
    return result


def _note(counts: DayCounts, viewed: int, view_dedup: int, residual: int) -> str:
    if residual:
        return f"{residual:+,} rows unexplained: investigate (see the hash-chain check)"
    if view_dedup < 0:
        return f"{-view_dedup:,} rows in the view that no manifest entry lists"
    parts = []
    duplicates = counts.compaction_dropped + view_dedup
    if duplicates:
        parts.append(f"{duplicates:,} duplicate receipt{'s' if duplicates > 1 else ''} of a span already landed "
                     "(exporter retries), counted once")
    if counts.retention_removed:
        parts.append(f"{counts.retention_removed:,} rows deleted by retention")
    if counts.erasure_changed:
        parts.append(f"{counts.erasure_changed:,} rows removed by erasure")
    if not counts.landed and not viewed:
        return "no records"
    return "; ".join(parts) or "matches"


def sequence_findings(facts: ManifestFacts, days: list[date], problems: list[str]) -> list[str]:
    """Holes in the manifest's seq, log files with missing parts, log files landed out of order."""
    period = set(days)
    findings = [p for p in problems if p.startswith(("entry_missing", "reordered"))]
    for wal, parts in sorted(facts.wal_parts.items()):
        if facts.wal_days.get(wal, set()) & period and len(parts) < facts.wal_total[wal]:
            missing = sorted(set(range(facts.wal_total[wal])) - parts)
            findings.append(f"log file {wal}: parts {missing} of {facts.wal_total[wal]} have no manifest entry")
    for wal in facts.out_of_order:
        if facts.wal_days.get(wal, set()) & period:
            findings.append(f"log file {wal} was landed after a newer one")
    return findings


def check_chain(data_dir: Path, first: date, last: date) -> ChainCheck:
    """``inferledger verify`` for the period: the whole chain and its signed heads, and the
    files of the period's partitions hashed against their entries."""
    report = verify(data_dir, first, last)
    stats = report.stats
    return ChainCheck(report.ok, stats.head.seq, stats.head.entry_hash, stats.entries, stats.files_checked,
                      stats.bytes_hashed, report.heads_checked, [str(problem) for problem in report.problems])


def empty_ranges(present: set[datetime], start: datetime, end: datetime,
                 step: timedelta) -> list[tuple[datetime, datetime]]:
    """Maximal runs of ``step``-sized slots in [start, end) with no record, as (first, end) pairs."""
    ranges, run_start, slot = [], None, start
    while slot < end:
        if slot in present:
            if run_start is not None:
                ranges.append((run_start, slot))
                run_start = None
        elif run_start is None:
            run_start = slot
        slot += step
    if run_start is not None:
        ranges.append((run_start, end))
    return ranges
