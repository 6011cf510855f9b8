"""Batches to write-ahead log frames, wherever they are normalized.

The collector normalizes in worker processes. Handing their Arrow batches back
to the main process by pickle, to be serialized again there for the log, costs
about 3 µs per span in each process; a frame is the same bytes the log writes,
so the workers serialize once (``FrameEncoder``) and the main process only
queues them (``Storage.append_encoded``). Kept apart from ``warehouse.storage``
so a worker does not import DuckDB and the rest of the warehouse.
"""
from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

from warehouse.landing import conform
from warehouse.record import DATASETS
from warehouse.wal import EncodedFrame, strip_metadata

# Field descriptions are ~6 KB per frame; the lander re-applies them.
BARE_SCHEMAS = {name: strip_metadata(schema) for name, schema in DATASETS.items()}


@dataclass(frozen=True)
class FrameEncoder:
    """Checks a batch against its dataset's schema and serializes it as a WAL frame.

    Raises ``ValueError`` for a batch that can never be stored (unknown dataset,
    columns that do not fit the schema). Picklable, to reach worker processes.
    """

    compression: str | None = None

    def __call__(self, dataset: str, batch: pa.RecordBatch) -> EncodedFrame:
        schema = DATASETS.get(dataset)
        if schema is None:
            raise ValueError(f"unknown dataset {dataset!r}; expected one of {sorted(DATASETS)}")
        if not batch.schema.equals(schema, check_metadata=False):
            batch = _conform_batch(batch, schema)
        bare = pa.RecordBatch.from_arrays(batch.columns, schema=BARE_SCHEMAS[dataset])
        return EncodedFrame.of(dataset, bare, self.compression)


def _conform_batch(batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    table = conform(pa.Table.from_batches([batch]), schema).combine_chunks()
    batches = table.to_batches()
    return batches[0] if batches else pa.RecordBatch.from_pylist([], schema=schema)
