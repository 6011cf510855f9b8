"""One pass over the period's records: the export, the sample and the hourly aggregates together.

Reading the ``inferences`` view costs its deduplication (a window over every
record of the period), which dominates everything else a report does with
millions of records. So the audit reads it exactly once, as a stream of Arrow
batches (``reports.decisions.population_select``, one query per day), and each
batch feeds:

* the export: the decisions in scope, appended to ``decisions.parquet`` and
  ``decisions.csv`` by Arrow's C++ writers (the read-only connection refuses
  ``COPY ... TO``); memory stays at one batch;
* the sample: each batch's ``n`` smallest sample keys are kept, and the ``n``
  smallest of those are the sample;
* the aggregates: each batch is grouped by hour, service, model, version, provider
  and outcome (Arrow's hash aggregation), and the partial groups are summed in
  DuckDB into the temporary table ``audit_hours`` that every count of the report
  reads, with its SQL in the evidence.
"""
from __future__ import annotations

import itertools
import queue
import threading
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from reports.decisions import DECISION_COLUMNS, Scope, population_select
from reports.sources import Warehouse

EXPORTED = [name for name, _ in DECISION_COLUMNS]
GROUP_KEYS = ["hour", "service_name", "model", "model_version", "provider", "decision_label"]
# Nearly unique per row: dictionary encoding would be tried, fail and cost time.
HIGH_CARDINALITY = {"start_time", "trace_id", "span_id", "input_hash", "subject_id", "request_key", "decision_score"}
SAMPLE_ORDER = [("sample_key", "ascending"), ("trace_id", "ascending"), ("span_id", "ascending")]


@dataclass
class Population:
    """What the pass found: decisions exported, the sample (as dicts), partial hourly groups."""

    rows: int = 0
    sample: list[dict] = field(default_factory=list)
    partials: list[pa.Table] = field(default_factory=list)


def read_population(warehouse: Warehouse, scope: Scope, seed: int, sample_size: int,
                    export_to: tuple[Path, Path] | None = None) -> Population:
    """Stream the period day by day; write the export when ``export_to`` = (parquet path, csv path).

    One query per UTC day: the view's deduplication partitions by day, so a day's
    query holds only that day's rows in memory (no spilling at millions of records),
    and the export comes out in day order.
    """
    sql, params = population_select(Scope(scope.date_from, scope.date_from, scope.system), seed)
    warehouse.log("every record of the period, one pass: decisions in scope to the export and the sample, all "
                  f"records to the hourly aggregates (run once per UTC day, {scope.date_from} to {scope.date_to}; "
                  "parameters of the first day shown)", sql, params)
    readers = (warehouse.reader(None, sql, population_select(Scope(day, day, scope.system), seed)[1])
               for day in scope.days)
    first = next(readers)
    population, candidates = Population(), []
    with _Export(export_to, first.schema) as export:
        for reader in itertools.chain([first], readers):
            for batch in reader:
                table = pa.Table.from_batches([batch])
                population.partials.append(_partial_groups(table))
                decisions = table.filter(table["in_population"])
                if decisions.num_rows:
                    export.write(decisions.select(EXPORTED))
                    candidates.append(_smallest(decisions, sample_size))
                    population.rows += decisions.num_rows
    if candidates:
        population.sample = _smallest(pa.concat_tables(candidates), sample_size).select(EXPORTED).to_pylist()
    _store_hours(warehouse, population.partials, first.schema)
    return population


def _smallest(table: pa.Table, size: int) -> pa.Table:
    """The ``size`` rows with the smallest sample keys, in sample order."""
    if table.num_rows > size:
        table = table.take(pc.select_k_unstable(table, k=size, sort_keys=SAMPLE_ORDER[:1]))
    return table.take(pc.sort_indices(table, sort_keys=SAMPLE_ORDER))


def _partial_groups(table: pa.Table) -> pa.Table:
    return table.group_by(GROUP_KEYS, use_threads=False).aggregate([
        ("start_time", "count", pc.CountOptions(mode="all")), ("start_time", "min"), ("start_time", "max"),
        ("cost_usd", "sum")])


def _store_hours(warehouse: Warehouse, partials: list[pa.Table], schema: pa.Schema) -> None:
    """Sum the batches' groups into ``audit_hours`` (one row per hour and key)."""
    if not partials:  # no batch at all: the table still gets its columns
        partials = [_partial_groups(schema.empty_table())]
    warehouse.con.register("audit_hours_partial", pa.concat_tables(partials))
    warehouse.execute("hourly aggregates of every record of the period, summed from the pass above", """
        CREATE OR REPLACE TEMP TABLE audit_hours AS
        SELECT hour, service_name, model, model_version, provider, decision_label,
               sum(start_time_count) AS records, min(start_time_min) AS first_seen,
               max(start_time_max) AS last_seen, sum(cost_usd_sum) AS cost_usd
        FROM audit_hours_partial
        GROUP BY ALL""")
    warehouse.con.unregister("audit_hours_partial")


class _Export:
    """Parquet and CSV writers for the decisions, each in its own thread (Arrow's writers release the
    GIL), so writing overlaps with DuckDB producing the next batch; nothing when no export was asked for."""

    def __init__(self, paths: tuple[Path, Path] | None, schema: pa.Schema):
        self.paths = paths
        self.schema = pa.schema([schema.field(name) for name in EXPORTED])
        self.writers: list[_WriterThread] = []

    def __enter__(self) -> "_Export":
        if self.paths:
            parquet = pq.ParquetWriter(self.paths[0], self.schema, compression="zstd", compression_level=1,
                                       use_dictionary=[n for n in self.schema.names if n not in HIGH_CARDINALITY])
            self.writers = [_WriterThread(parquet, lambda table: table),
                            _WriterThread(pa_csv.CSVWriter(self.paths[1], _csv_schema(self.schema)), _csv_table)]
        return self

    def __exit__(self, *exc) -> None:
        errors = [error for error in (writer.finish() for writer in self.writers) if error is not None]
        if errors and exc[0] is None:
            raise errors[0]

    def write(self, table: pa.Table) -> None:
        for writer in self.writers:
            writer.put(table)


class _WriterThread:
    """One Arrow writer fed through a short queue (bounded: memory stays at a few batches)."""

    def __init__(self, writer, convert):
        self.writer, self.convert = writer, convert
        self.queue: queue.Queue = queue.Queue(maxsize=4)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="report-export", daemon=True)
        self.thread.start()

    def put(self, table: pa.Table) -> None:
        if self.error is not None:
            raise self.error
        self.queue.put(table)

    def _run(self) -> None:
        try:
            while (table := self.queue.get()) is not None:
                if self.error is None:
                    self.writer.write_table(self.convert(table))
        except BaseException as exc:  # reported by put() or finish(); keep draining so put() never blocks
            self.error = exc
            while self.queue.get() is not None:
                pass

    def finish(self) -> BaseException | None:
        self.queue.put(None)
        self.thread.join()
        self.writer.close()
        return self.error


def _csv_schema(schema: pa.Schema) -> pa.Schema:
    as_text = lambda f: pa.types.is_list(f.type) or pa.types.is_timestamp(f.type)  # noqa: E731
    return pa.schema([pa.field(f.name, pa.string()) if as_text(f) else f for f in schema])


def _csv_table(table: pa.Table) -> pa.Table:
    """CSV cells cannot hold lists: reasons become one cell joined with ``; `` (NULL stays empty).
    Timestamps become ``2026-11-02 19:53:06.444649Z`` (UTC): formatted from the time-zone-free
    values, six times faster than letting the writer look the zone up for every value."""
    for index, column in enumerate(table.columns):
        name = table.schema.field(index).name
        if pa.types.is_list(column.type):
            table = table.set_column(index, name, pc.binary_join(column, "; "))
        elif pa.types.is_timestamp(column.type):
            text = column.cast(pa.timestamp(column.type.unit)).cast(pa.string())
            table = table.set_column(index, name, pc.binary_join_element_wise(text, "Z", ""))
    return table
