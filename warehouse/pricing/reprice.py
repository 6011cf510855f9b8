"""Repricing: new costs for a period as a new, logged cost version; raw records stay untouched.

A price correction must not silently rewrite history. ``reprice`` recomputes the
costs of every inference in a date range with the current price book and writes
them to the ``cost_versions`` dataset (one row per trace_id, span_id,
cost_version; Parquet partitioned by the inference's date), then records who did
it, when, why and the totals before and after in the ``repricings`` log, and adds
manifest entries for every file. The ``inferences`` view (``cost_view_sql``)
shows each inference's latest committed version; earlier versions stay in
``cost_versions``. Version 0 is the cost written at landing.

A version is committed when its ``repricings`` row exists: files of a run that
died before that are ignored by the views and removed by the next run.
"""
from __future__ import annotations

import fcntl
import getpass
import hashlib
import re
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from functools import partial
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from warehouse.landing import ParquetSettings, dedup, parquet_options, write_atomically
from warehouse.manifest import Manifest, manifest_path
from warehouse.pricing.book import PriceBook
from warehouse.pricing.capacity import allocate_table, pool_column
from warehouse.pricing.cost import PricingDefaults, compute_costs

COST_VERSIONS, REPRICINGS = "cost_versions", "repricings"
COST_VERSION_SCHEMA = pa.schema([
    ("trace_id", pa.string()), ("span_id", pa.string()), ("cost_version", pa.int64()),
    ("cost_usd", pa.float64()), ("computed_cost_usd", pa.float64()),
    ("cost_source", pa.string()), ("price_ref", pa.string()),
])
REPRICING_SCHEMA = pa.schema([
    ("cost_version", pa.int64()), ("kind", pa.string()), ("repriced_at", pa.timestamp("us", tz="UTC")),
    ("actor", pa.string()), ("reason", pa.string()), ("date_from", pa.date32()), ("date_to", pa.date32()),
    ("records", pa.int64()), ("changed", pa.int64()),
    ("total_before_usd", pa.float64()), ("total_after_usd", pa.float64()),
    ("unpriced_before", pa.int64()), ("unpriced_after", pa.int64()),
    ("book_sources", pa.list_(pa.string())), ("files", pa.list_(pa.string())),
])
DIFF_COLUMNS = ["day", "provider", "model", "requests", "changed", "before_usd", "after_usd", "delta_usd",
                "unpriced_before", "unpriced_after"]
READ_COLUMNS = ["trace_id", "span_id", "start_time", "ingest_time", "duration_ms", "tenant", "feature", "provider",
                "request_model", "response_model", "input_tokens", "output_tokens", "cache_read_tokens",
                "cache_write_tokens", "reasoning_tokens", "pricing_tier", "compute_pool", "cache_hit",
                "reported_cost_usd", "cost_usd", "cost_source", "price_ref",
                "operation", "review_duration_s"]  # human reviews are priced by time
_VERSION_FILE = re.compile(r"^cost-v(\d+)-")  # "v<n>-" alone is the storage layer's schema-version prefix
DAYS_IN_PARALLEL = 2  # days are independent; two in flight keep both cores busy with bounded memory


@dataclass
class RepriceResult:
    """What a repricing did (or, for a dry run, would do)."""

    cost_version: int | None
    diff: pa.Table  # one row per day, provider and model: requests, changed, before/after USD, unpriced counts
    records: int = 0
    changed: int = 0
    total_before_usd: float = 0.0
    total_after_usd: float = 0.0
    unpriced_before: int = 0
    unpriced_after: int = 0
    files: list[str] = field(default_factory=list)


def reprice(data_dir: str | Path, book: PriceBook, date_from: date, date_to: date, dry_run: bool = False,
            actor: str | None = None, reason: str = "", defaults: PricingDefaults = PricingDefaults(),
            manifest: Manifest | None = None, closed_before: datetime | None = None) -> RepriceResult:
    """Recompute the costs of every inference dated date_from..date_to (inclusive) with ``book``.

    Writes a new cost version unless ``dry_run``; returns the before/after diff by
    day, provider and model. Inside the server pass its ``manifest``; elsewhere one is
    opened for the call (appends lock the file, so a running server is no obstacle).
    """
    return _run(Path(data_dir), book, date_from, date_to, dry_run, actor, reason, defaults, manifest,
                closed_before, kind="reprice")


def allocate_capacity(data_dir: str | Path, book: PriceBook, date_from: date, date_to: date,
                      actor: str | None = "scheduler", manifest: Manifest | None = None,
                      closed_before: datetime | None = None) -> RepriceResult:
    """Allocate the closed hours of every hourly capacity pool in the period, as a new cost version.

    Only pool records are written, so running this every hour stays small.
    """
    return _run(Path(data_dir), book, date_from, date_to, False, actor, "capacity allocation",
                PricingDefaults(), manifest, closed_before, kind="capacity")


def _run(data_dir, book, date_from, date_to, dry_run, actor, reason, defaults, manifest, closed_before, kind):
    actor = actor or _login_name()
    with _lock(data_dir, dry_run):
        committed = committed_versions(data_dir)
        version = None if dry_run else _next_version(data_dir, committed)
        if not dry_run:
            _remove_uncommitted(data_dir, committed)
        written, diffs = [], []
        work = partial(_reprice_day, data_dir, book=book, defaults=defaults, closed_before=closed_before,
                       committed=committed, version=None if dry_run else version, kind=kind)
        with ThreadPoolExecutor(max_workers=DAYS_IN_PARALLEL) as pool:
            for outcome in pool.map(work, _days(date_from, date_to)):
                if outcome is not None:
                    diffs.append(outcome[0])
                    written.extend(outcome[1:])
        result = _result(version, diffs, [w["file"] for w in written])
        if not dry_run and result.records:
            log_entry = _write_log(data_dir, result, kind, actor, reason, date_from, date_to, book)
            _record_in_manifest(data_dir, manifest, written, log_entry, version)
        else:
            result.cost_version = None  # a dry run, or nothing in the period
    return result


def _reprice_day(data_dir, day, *, book, defaults, closed_before, committed, version, kind):
    """(diff, [written file facts]) for one day, or None when the day has no records."""
    rows = _read_day(data_dir, day)
    if rows is None:
        return None
    if kind == "capacity":
        rows = rows.filter(pc.is_in(pc.utf8_lower(pool_column(rows)), pa.array(list(book.pools), pa.string())))
    costs = _new_costs(rows, book, defaults, closed_before)
    diff = _diff(data_dir, day, rows, costs, committed)
    if version is None or not pc.sum(diff["changed"]).as_py():  # a day without changes keeps its version
        return (diff,)
    return diff, _write_version(data_dir, day, rows, costs, version)


def _login_name() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no login name in some containers
        return "unknown"


@contextmanager
def _lock(data_dir: Path, dry_run: bool):
    """One repricing at a time per data directory (versions are numbered in order)."""
    folder = data_dir / "parquet" / REPRICINGS
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "_lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_SH if dry_run else fcntl.LOCK_EX)
        yield


def committed_versions(data_dir: Path) -> set[int]:
    """Versions with a repricings row: the only ones the views show."""
    return set(_committed_kinds(Path(data_dir)))


def _version_files(data_dir: Path) -> list[tuple[int, Path]]:
    found = []
    for path in (data_dir / "parquet" / COST_VERSIONS).glob("date=*/*.parquet"):
        if match := _VERSION_FILE.match(path.name):
            found.append((int(match.group(1)), path))
    return found


def _next_version(data_dir: Path, committed: set[int]) -> int:
    on_disk = [v for v, _ in _version_files(data_dir)]
    return max([0, *committed, *on_disk]) + 1


def _remove_uncommitted(data_dir: Path, committed: set[int]) -> None:
    """Files of a run that died before its log row: never visible, never in the manifest."""
    for version, path in _version_files(data_dir):
        if version not in committed:
            path.unlink()


def _days(date_from: date, date_to: date):
    day = date_from
    while day <= date_to:
        yield day
        day += timedelta(days=1)


def _read_day(data_dir: Path, day: date) -> pa.Table | None:
    files = sorted((data_dir / "parquet" / "inferences" / f"date={day.isoformat()}").glob("*.parquet"))
    if not files:
        return None
    dataset = ds.dataset(files, format="parquet")
    columns = [c for c in READ_COLUMNS if c in dataset.schema.names]
    table = dataset.to_table(columns=columns)
    for name in set(READ_COLUMNS) - set(columns):  # older segments lack newer columns
        table = table.append_column(name, pa.nulls(table.num_rows, _record_type(name)))
    return dedup(table)


def _record_type(name: str) -> pa.DataType:
    from warehouse.record import RECORD_SCHEMA

    return RECORD_SCHEMA.field(name).type


def _new_costs(rows: pa.Table, book: PriceBook, defaults: PricingDefaults, closed_before) -> pa.Table:
    """Costs from the current book, with closed capacity hours allocated."""
    costs = compute_costs(rows, book, defaults)
    if not book.pools or rows.num_rows == 0:
        return costs
    allocated = allocate_table(rows, book, closed_before)
    has = pc.is_valid(allocated["cost_usd"])
    computed = pc.if_else(has, allocated["cost_usd"], costs["computed_cost_usd"])
    return pa.table({
        "cost_usd": pc.coalesce(rows["reported_cost_usd"], computed),
        "computed_cost_usd": computed,
        "cost_source": costs["cost_source"],
        "price_ref": pc.if_else(has, allocated["price_ref"], costs["price_ref"]),
    })


def _diff(data_dir: Path, day: date, rows: pa.Table, costs: pa.Table, committed: set[int]) -> pa.Table:
    """Before/after by provider and model for one day; 'before' is the latest committed version, else landing."""
    current = pa.table({
        "trace_id": rows["trace_id"], "span_id": rows["span_id"], "provider": rows["provider"],
        "model": pc.coalesce(rows["response_model"], rows["request_model"]),
        "old_cost": rows["cost_usd"], "old_source": rows["cost_source"], "old_ref": rows["price_ref"],
        "new_cost": costs["cost_usd"], "new_source": costs["cost_source"], "new_ref": costs["price_ref"],
    })
    files = [str(p) for v, p in _version_files(data_dir) if v in committed and p.parent.name == f"date={day}"]
    conn = duckdb.connect()
    try:
        conn.register("day_rows", current)
        before = "day_rows"
        if files:
            # One version file holds each span once; several need the newest row per span.
            conn.execute(f"""CREATE TEMP VIEW latest AS
                SELECT trace_id, span_id, struct_pack(c := cost_usd, s := cost_source, r := price_ref) AS v
                FROM read_parquet({_sql_list(files)})""" if len(files) == 1 else f"""CREATE TEMP VIEW latest AS
                SELECT trace_id, span_id,
                       arg_max(struct_pack(c := cost_usd, s := cost_source, r := price_ref), cost_version) AS v
                FROM read_parquet({_sql_list(files)}) GROUP BY trace_id, span_id""")
            before = """(SELECT d.* REPLACE (CASE WHEN l.v IS NULL THEN d.old_cost ELSE l.v.c END AS old_cost,
                                           CASE WHEN l.v IS NULL THEN d.old_source ELSE l.v.s END AS old_source,
                                           CASE WHEN l.v IS NULL THEN d.old_ref ELSE l.v.r END AS old_ref)
                         FROM day_rows d LEFT JOIN latest l USING (trace_id, span_id))"""
        return conn.sql(f"""
            SELECT ?::DATE AS day, provider, model, count(*) AS requests,
                   count(*) FILTER (old_cost IS DISTINCT FROM new_cost OR old_ref IS DISTINCT FROM new_ref
                                    OR old_source IS DISTINCT FROM new_source) AS changed,
                   coalesce(sum(old_cost), 0) AS before_usd, coalesce(sum(new_cost), 0) AS after_usd,
                   coalesce(sum(new_cost), 0) - coalesce(sum(old_cost), 0) AS delta_usd,
                   count(*) FILTER (old_source IS NULL OR old_source = 'unpriced') AS unpriced_before,
                   count(*) FILTER (new_source = 'unpriced') AS unpriced_after
            FROM {before} GROUP BY provider, model ORDER BY provider, model""", params=[day]).to_arrow_table()
    finally:
        conn.close()


def _sql_list(paths: list[str]) -> str:
    return "[" + ", ".join("'" + p.replace("'", "''") + "'" for p in paths) + "]"


def _write_version(data_dir: Path, day: date, rows: pa.Table, costs: pa.Table, version: int) -> dict:
    table = pa.table([rows["trace_id"], rows["span_id"], pa.repeat(pa.scalar(version, pa.int64()), rows.num_rows),
                      costs["cost_usd"], costs["computed_cost_usd"], costs["cost_source"], costs["price_ref"]],
                     schema=COST_VERSION_SCHEMA)
    relpath = f"parquet/{COST_VERSIONS}/date={day.isoformat()}/cost-v{version:06d}-{day.isoformat()}.parquet"
    return _write_parquet(data_dir, relpath, table) | {"dataset": COST_VERSIONS}


def _write_parquet(data_dir: Path, relpath: str, table: pa.Table) -> dict:
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, **parquet_options(table.schema, ParquetSettings()))
    data = sink.getvalue()
    tmp = data_dir / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    write_atomically(data, data_dir / relpath, tmp)
    return {"file": relpath, "rows": table.num_rows, "bytes": data.size, "sha256": hashlib.sha256(data).hexdigest()}


def _result(version: int | None, diffs: list[pa.Table], files: list[str]) -> RepriceResult:
    diff = pa.concat_tables(diffs).select(DIFF_COLUMNS) if diffs else pa.table(
        {name: pa.array([], pa.string()) for name in DIFF_COLUMNS})
    total = (lambda name: pc.sum(diff[name]).as_py() or 0) if diffs else (lambda name: 0)
    return RepriceResult(version, diff, int(total("requests")), int(total("changed")), float(total("before_usd")),
                         float(total("after_usd")), int(total("unpriced_before")), int(total("unpriced_after")),
                         files)


def _write_log(data_dir, result: RepriceResult, kind, actor, reason, date_from, date_to, book) -> dict:
    """The commit point: once this row exists, the version is visible."""
    now = datetime.now(UTC)
    row = {"cost_version": result.cost_version, "kind": kind, "repriced_at": now, "actor": actor,
           "reason": reason, "date_from": date_from, "date_to": date_to, "records": result.records,
           "changed": result.changed, "total_before_usd": result.total_before_usd,
           "total_after_usd": result.total_after_usd, "unpriced_before": result.unpriced_before,
           "unpriced_after": result.unpriced_after, "book_sources": list(book.sources), "files": result.files}
    table = pa.Table.from_pylist([row], schema=REPRICING_SCHEMA)
    relpath = f"parquet/{REPRICINGS}/date={now.date().isoformat()}/repricing-v{result.cost_version:06d}.parquet"
    return _write_parquet(data_dir, relpath, table) | {"dataset": REPRICINGS}


def _record_in_manifest(data_dir, manifest, written, log_entry, version) -> None:
    entries = [{"kind": "cost_version" if w["dataset"] == COST_VERSIONS else "repricing", **w,
                "source": {"cost_version": version}} for w in [*written, log_entry]]
    own = manifest is None
    manifest = manifest or Manifest(manifest_path(data_dir))
    try:
        manifest.append(entries)
    finally:
        if own:
            manifest.close()


def cost_view_sql(data_dir: str | Path, raw_relation: str = "inferences_raw") -> list[str]:
    """Views for the catalog: ``repricings``, ``cost_versions`` (every committed version), ``latest_costs``
    and ``inferences`` = ``raw_relation`` (which must have the ``date`` partition column) with each record's
    latest cost version (column ``cost_version``, 0 = landing).

    The views name the files that exist now, so create them per connection (as the catalog does) and
    again after a repricing. A repricing writes every record of each day it changes, so per day only
    its newest ``reprice`` file and the capacity files after it can hold a latest cost; a day with one
    such file is read without any aggregation.
    """
    data_dir = Path(data_dir)
    kinds = _committed_kinds(data_dir)
    by_day: dict[str, list[tuple[int, Path]]] = {}
    for version, path in sorted(_version_files(data_dir)):
        if version in kinds:
            by_day.setdefault(path.parent.name, []).append((version, path))
    single, several = [], []
    for files in by_day.values():
        newest_full = max((i for i, (v, _) in enumerate(files) if kinds[v] == "reprice"), default=0)
        current = [str(p) for _, p in files[newest_full:]]
        (single if len(current) == 1 else several).extend(current)
    log_glob = data_dir / "parquet" / REPRICINGS / "date=*" / "*.parquet"
    committed = [str(p) for files in by_day.values() for _, p in files]
    return [
        "CREATE OR REPLACE VIEW repricings AS " + (_read_sql(str(log_glob)) if kinds else _empty_sql(REPRICING_SCHEMA)),
        "CREATE OR REPLACE VIEW cost_versions AS " + (
            _read_sql(committed) if committed else _empty_sql(COST_VERSION_SCHEMA)),
        "CREATE OR REPLACE VIEW latest_costs AS " + _latest_sql(single, several),
        "CREATE OR REPLACE VIEW inferences AS " + _inferences_sql(raw_relation, bool(committed)),
    ]


def _committed_kinds(data_dir: Path) -> dict[int, str]:
    files = sorted((data_dir / "parquet" / REPRICINGS).glob("date=*/*.parquet"))
    if not files:
        return {}
    log = ds.dataset(files, format="parquet").to_table(columns=["cost_version", "kind"])
    return dict(zip(log["cost_version"].to_pylist(), log["kind"].to_pylist()))


_LATEST_COLUMNS = "struct_pack(cost_usd, computed_cost_usd, cost_source, price_ref)"


def _latest_sql(single: list[str], several: list[str]) -> str:
    parts = []
    if single:
        parts.append(f"SELECT date, trace_id, span_id, cost_version, {_LATEST_COLUMNS} AS c "
                     f"FROM ({_read_sql(single)})")
    if several:
        parts.append(f"SELECT date, trace_id, span_id, max(cost_version) AS cost_version, "
                     f"arg_max({_LATEST_COLUMNS}, cost_version) AS c FROM ({_read_sql(several)}) "
                     "GROUP BY date, trace_id, span_id")
    if not parts:
        return f"SELECT date, trace_id, span_id, cost_version, {_LATEST_COLUMNS} AS c FROM ({_empty_sql(COST_VERSION_SCHEMA)})"
    return " UNION ALL ".join(parts)


def _inferences_sql(raw_relation: str, has_versions: bool) -> str:
    if not has_versions:
        return f"SELECT *, 0::BIGINT AS cost_version FROM {raw_relation}"
    replaced = ", ".join(f"CASE WHEN l.cost_version IS NULL THEN r.{c} ELSE l.c.{c} END AS {c}"
                         for c in ("cost_usd", "computed_cost_usd", "cost_source", "price_ref"))
    return (f"SELECT r.* REPLACE ({replaced}), coalesce(l.cost_version, 0) AS cost_version "
            f"FROM {raw_relation} r LEFT JOIN latest_costs l "
            "ON r.date = l.date AND r.trace_id = l.trace_id AND r.span_id = l.span_id")


def _read_sql(files: str | list[str]) -> str:
    """read_parquet over a glob or a list of files, with the date partition as a DATE column."""
    names = [files] if isinstance(files, str) else files
    listed = "[" + ", ".join("'" + f.replace("'", "''") + "'" for f in names) + "]"
    return (f"SELECT * FROM read_parquet({listed}, hive_partitioning = true, union_by_name = true, "
            "hive_types = {'date': DATE})")


def _empty_sql(schema: pa.Schema) -> str:
    types = {pa.string(): "VARCHAR", pa.int64(): "BIGINT", pa.float64(): "DOUBLE", pa.date32(): "DATE",
             pa.timestamp("us", tz="UTC"): "TIMESTAMPTZ", pa.list_(pa.string()): "VARCHAR[]"}
    columns = ", ".join(f"NULL::{types[f.type]} AS {f.name}" for f in [*schema, pa.field("date", pa.date32())])
    return f"SELECT {columns} WHERE false"
