"""The drift job's reads: counts per (key, slice) and a bounded sample, never raw values in bulk.

Three passes over the range of one compute call:

1. ``read_presence`` (``inferences_all``): records per key and hour and each key's
   first record, to find new versions and size the samples. Duplicates (a span
   received twice) only nudge these sizes, so the cheap undeduplicated view serves.
2. ``read_sample`` (``inferences_all``): a uniform hash sample per side for KS and the
   score PSI, deduplicated here (a duplicate has the same span id, hence the same hash).
3. ``read_histograms`` (``inferences_raw``, deduplicated): exact counts per
   (key, slice) of labels, errors, scored records and half-octave bins of tokens and
   latency, with GROUPING SETS, one query per day (see its docstring). Drift reads
   no cost column, so it skips the cost-version join of ``inferences``.

Keys travel through SQL as DuckDB ``hash(service, model, version)`` (a UBIGINT is far
cheaper to group on than three strings); ``key_hashes`` maps them back and refuses a
collision. The slice of a record is found by a balanced CASE tree over the slice
bounds (log2 n comparisons a row, however many slices).
"""
from __future__ import annotations

from bisect import bisect_right
from datetime import datetime, timedelta

import numpy as np
import pyarrow as pa

from warehouse.jobs.drift_plan import COUNTED, EPOCH, SAMPLED, Key, Presence, Side, Slices, key_order
from warehouse.jobs.stats import LOG_BINS_PER_OCTAVE

RAW, DEDUPLICATED = "inferences_all", "inferences_raw"
KEY_COLUMNS = ("service", "model", "version")
KEY_SELECT = "service_name AS service, coalesce(response_model, request_model) AS model, model_version AS version"
KEY_HASH = "hash(service_name, coalesce(response_model, request_model), model_version)"
SOURCE_COLUMNS = {"score": "decision_score", "input_tokens": "input_tokens", "output_tokens": "output_tokens",
                  "latency": "duration_ms"}
BINNED = ("input_tokens", "output_tokens", "latency")  # half-octave histograms
GROUPED = {"labels": "label", "error": "error", **{feature: feature for feature in BINNED}}


def read_presence(con, start: datetime, end: datetime) -> dict[Key, Presence]:
    counts = ", ".join(f"count({SOURCE_COLUMNS[f]}) AS {f}" for f in SAMPLED)
    where, params = _range(start, end)
    table = con.sql(f"""
        SELECT {KEY_SELECT}, epoch_us(start_time) // 3600000000 AS hour, count(*) AS records, {counts},
               epoch_us(min(start_time)) AS first_us
        FROM {RAW} WHERE {where} GROUP BY ALL""", params=params).to_arrow_table()
    grouped: dict[Key, list[dict]] = {}
    for row in table.to_pylist():
        grouped.setdefault(_key(row), []).append(row)
    return {key: Presence(first_seen=EPOCH + timedelta(microseconds=min(r["first_us"] for r in rows)),
                          hours=np.array([r["hour"] for r in rows], dtype=np.int64),
                          counts=np.array([[r[c] for c in COUNTED] for r in rows], dtype=float))
            for key, rows in grouped.items()}


def key_hashes(con, keys: list[Key]) -> dict[int, Key]:
    """DuckDB's hash of each key, as the scans compute it; two keys with one hash are refused."""
    if not keys:
        return {}
    con.register("drift_keys", _key_table(keys))
    try:
        rows = con.sql("SELECT service, model, version, hash(service, model, version) AS h FROM drift_keys").fetchall()
    finally:
        con.unregister("drift_keys")
    hashes = {h: (service, model, version) for service, model, version, h in rows}
    if len(hashes) != len(keys):
        raise RuntimeError("two (service, model, version) keys share a 64-bit hash; drift cannot tell them apart")
    return hashes


def read_seen_before(con, keys: list[Key], start: datetime, end: datetime) -> set[Key]:
    """Which of ``keys`` have a record in [start, end): versions that only look new."""
    if not keys or start >= end:
        return set()
    con.register("drift_candidates", _key_table(keys))
    where, params = _range(start, end)
    try:
        table = con.sql(f"""
            SELECT DISTINCT service, model, version FROM (SELECT {KEY_SELECT} FROM {RAW} WHERE {where}) r
            SEMI JOIN drift_candidates c ON {_key_match('r', 'c')}""", params=params).to_arrow_table()
    finally:
        con.unregister("drift_candidates")
    return {_key(row) for row in table.to_pylist()}


class Sample:
    """Hash-sampled feature values per key and slice, deduplicated by span."""

    def __init__(self, table: pa.Table, hashes: dict[int, Key], slices: Slices,
                 thresholds: dict[tuple[Key, int], dict[str, int]]):
        self.slices, self.thresholds = slices, thresholds
        columns = {name: _floats(table[name]) if name in SAMPLED else table[name].to_numpy()
                   for name in ("kh", "slice", "h", *SAMPLED)}
        self.by_key: dict[Key, dict[str, np.ndarray]] = {}
        for key_hash in np.unique(columns["kh"]):
            rows = np.flatnonzero(columns["kh"] == key_hash)
            _, first = np.unique(columns["h"][rows], return_index=True)  # a duplicate span shares its hash
            self.by_key[hashes[int(key_hash)]] = {name: columns[name][rows[first]]
                                                  for name in ("slice", "h", *SAMPLED)}

    def values(self, side: Side, feature: str) -> np.ndarray:
        """The side's uniform sample of ``feature``: its rows at the smallest threshold among its slices."""
        columns, indices = self.by_key.get(side.key), self.slices.of(side)
        if columns is None or not len(indices):
            return np.array([], dtype=float)
        threshold = min(self.thresholds.get((side.key, i), {}).get(feature, 0) for i in indices)
        mask = (columns["slice"] >= indices.start) & (columns["slice"] < indices.stop) & (columns["h"] <= threshold)
        values = columns[feature][mask]
        return values[~np.isnan(values)]


def read_sample(con, slices: Slices, thresholds: dict[tuple[Key, int], dict[str, int]],
                hashes: dict[int, Key]) -> Sample:
    """Rows whose span hash is at most their (key, slice) threshold for some feature (``sample_thresholds``).

    SQL keeps a row under the largest of its features' thresholds, which bounds what
    is fetched; ``Sample.values`` applies each feature's own threshold.
    """
    by_hash = {key: h for h, key in hashes.items()}
    limits = [(by_hash[key], index, max(per_feature.values())) for (key, index), per_feature in thresholds.items()
              if per_feature and max(per_feature.values())]
    con.register("drift_sample_limits", pa.table({
        "kh": pa.array([h for h, _, _ in limits], pa.uint64()),
        "slice": pa.array([i for _, i, _ in limits], pa.int64()),
        "upper": pa.array([upper for _, _, upper in limits], pa.uint64())}))
    slice_sql, slice_params = _slice_case(slices, slices.start, slices.end)
    where, params = _range(slices.start, slices.end)
    sources = ", ".join(f"{SOURCE_COLUMNS[f]}::DOUBLE AS {f}" for f in SAMPLED)
    try:
        table = con.sql(f"""
            SELECT s.kh, s.slice, s.h, {', '.join(f's.{f}' for f in SAMPLED)}
            FROM (SELECT {KEY_HASH} AS kh, {slice_sql} AS slice, hash(span_id) AS h, {sources}
                  FROM {RAW} WHERE {where}) s
            JOIN drift_sample_limits l ON s.kh = l.kh AND s.slice = l.slice
            WHERE s.h <= l.upper""", params={**params, **slice_params}).to_arrow_table()
    finally:
        con.unregister("drift_sample_limits")
    return Sample(table, hashes, slices, thresholds)


class Histograms:
    """Exact counts per (feature, key): bin -> counts per slice, summed over a side's slices on demand.

    Features: ``labels`` (bin = label), ``error`` (0/1), ``scored`` (records with a
    score, bin 0) and the half-octave bins of ``input_tokens``, ``output_tokens``, ``latency``.
    """

    def __init__(self, table: pa.Table, hashes: dict[int, Key], slices: Slices):
        self.slices = slices
        self.cells: dict[tuple[str, Key], dict[object, np.ndarray]] = {}
        for row in table.to_pylist():
            key = hashes.get(row["kh"])
            if key is None:  # landed after the presence read: counted by the next run
                continue
            if row["feature"] == "error":
                self._add("scored", key, 0, row["slice"], row["scored"])
            bin_value = row["label"] if row["feature"] == "labels" else row["bin"]
            if bin_value is not None:  # NULL: the records lack this feature
                self._add(row["feature"], key, bin_value, row["slice"], row["n"])

    def _add(self, feature: str, key: Key, bin_value, index: int, count: int) -> None:
        per_bin = self.cells.setdefault((feature, key), {})
        per_bin.setdefault(bin_value, np.zeros(len(self.slices), dtype=np.int64))[index] += count

    def counts(self, feature: str, side: Side) -> dict[object, int]:
        indices = self.slices.of(side)
        totals = {b: int(per_slice[indices.start:indices.stop].sum())
                  for b, per_slice in self.cells.get((feature, side.key), {}).items()}
        return {b: n for b, n in totals.items() if n}

    def total(self, feature: str, side: Side) -> int:
        return sum(self.counts(feature, side).values())


def read_histograms(con, slices: Slices, hashes: dict[int, Key]) -> Histograms:
    """One query per day: deduplicating a day at a time keeps DuckDB's hash table in memory (no spilling)."""
    parts = []
    day = slices.start.replace(hour=0, minute=0, second=0, microsecond=0)
    while day < slices.end:
        start, end = max(day, slices.start), min(day + timedelta(days=1), slices.end)
        parts.append(_day_histograms(con, slices, start, end))
        day += timedelta(days=1)
    return Histograms(pa.concat_tables(parts), hashes, slices)


def _day_histograms(con, slices: Slices, start: datetime, end: datetime) -> pa.Table:
    slice_sql, slice_params = _slice_case(slices, start, end)
    where, params = _range(start, end)
    bins = ", ".join(f"{_log_bin_sql(SOURCE_COLUMNS[f])} AS {f}" for f in BINNED)
    sets = ", ".join(f"(kh, slice, {column})" for column in GROUPED.values())
    feature = " ".join(f"WHEN GROUPING({column}) = 0 THEN '{name}'" for name, column in GROUPED.items())
    bin_columns = ", ".join(column for column in GROUPED.values() if column != "label")
    return con.sql(f"""
        WITH r AS (
            SELECT {KEY_HASH} AS kh, {slice_sql} AS slice, decision_label AS label,
                   coalesce(status = 'error', false)::BIGINT AS error, {bins}, decision_score AS score
            FROM {DEDUPLICATED} WHERE {where})
        SELECT kh, slice::BIGINT AS slice, CASE {feature} END AS feature, label, coalesce({bin_columns}) AS bin,
               count(*) AS n, count(CASE WHEN NOT isnan(score) THEN 1 END) AS scored
        FROM r GROUP BY GROUPING SETS ({sets})""", params={**params, **slice_params}).to_arrow_table()


def _log_bin_sql(column: str) -> str:
    """SQL twin of ``stats.log_bin``: floor(2 log2 x) for x >= 1, -1 below 1, NULL for missing or non-finite."""
    return (f"CASE WHEN {column} IS NULL OR NOT isfinite({column}::DOUBLE) THEN NULL WHEN {column} < 1 THEN -1 "
            f"ELSE floor({LOG_BINS_PER_OCTAVE} * log2({column}))::BIGINT END")


def _slice_case(slices: Slices, start: datetime, end: datetime) -> tuple[str, dict]:
    """Slice index of start_time for rows in [start, end), by bisection over the bounds inside it."""
    inner = slices.bounds[1:-1]
    base = bisect_right(inner, start)
    cuts = [bound for bound in inner if start < bound < end]
    return _bisect("start_time", [f"$slice_{i}" for i in range(len(cuts))], base), \
        {f"slice_{i}": bound for i, bound in enumerate(cuts)}


def _bisect(column: str, cuts: list[str], base: int) -> str:
    """``base`` + the number of ``cuts`` (sorted) at or below ``column``."""
    if not cuts:
        return str(base)
    middle = len(cuts) // 2
    return (f"CASE WHEN {column} < {cuts[middle]} THEN {_bisect(column, cuts[:middle], base)} "
            f"ELSE {_bisect(column, cuts[middle + 1:], base + middle + 1)} END")


def _range(start: datetime, end: datetime) -> tuple[str, dict]:
    """Partition pruning (date) plus the exact [start, end) on start_time."""
    sql = "date BETWEEN $first_day AND $last_day AND start_time >= $range_start AND start_time < $range_end"
    return sql, {"first_day": start.date(), "last_day": (end - timedelta(microseconds=1)).date(),
                 "range_start": start, "range_end": end}


def _key_match(left: str, right: str) -> str:
    return " AND ".join(f"{left}.{c} IS NOT DISTINCT FROM {right}.{c}" for c in KEY_COLUMNS)


def _key_table(keys: list[Key]) -> pa.Table:
    keys = sorted(keys, key=key_order)
    return pa.table({name: pa.array([key[i] for key in keys], pa.string()) for i, name in enumerate(KEY_COLUMNS)})


def _key(row: dict) -> Key:
    return row["service"], row["model"], row["version"]


def _floats(column: pa.ChunkedArray) -> np.ndarray:
    return column.to_numpy(zero_copy_only=False).astype(float)  # NULL -> NaN
