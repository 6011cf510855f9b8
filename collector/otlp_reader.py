"""The C extension of normalization, when it is built and allowed.

Three parts of one extension module, ``collector._otlp_reader``:

* ``_otlp_reader.c`` reads an ``ExportTraceServiceRequest`` straight from its
  bytes: per ``ResourceSpans`` the resource attributes as a dict (what
  ``read_plain`` gives), per span a light object with the fields normalize
  uses and its attributes already sorted (what ``read_attributes`` gives). It
  skips upb's object per field access.
* ``_records.c`` (:func:`record_maker`) builds the record row of a common
  inference span from that object, as ``normalize._inference`` would; any
  other span goes to ``_Batch.add`` in Python, in order. ``_json.c`` writes
  its attributes JSON as ``attributes.to_json`` does.
* ``_columns.c`` (:func:`record_batch`) turns the row tuples into one Arrow
  record batch through the C data interface instead of ``pa.array`` per column.

This module is the one place that decides whether they are used: not when the
extension is missing (no compiler at install), nor when the environment sets
``INFERLEDGER_PURE_PYTHON=1`` (tests and benchmarks compare both paths). The
key table, the precedence table, content keys and value conversions come from
Python, so the paths cannot drift apart in what they keep.
"""
from __future__ import annotations

import base64
import functools
import os

import pyarrow as pa
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from collector import attributes as a
from collector.conventions import genai, inferledger, langfuse, openinference, openllmetry, values
from collector.conventions.mapping import KEY_BITS, OLM, OTEL, PRIVATE_COLUMNS, SPECS, provider
from collector.conventions.providers import provider_from_attributes
from warehouse.record import COLUMNS

try:
    from collector import _otlp_reader
except ImportError:  # built without a compiler: upb only
    _otlp_reader = None

PURE_PYTHON_ENV = "INFERLEDGER_PURE_PYTHON"


def enabled() -> bool:
    """True when the C reader is built and not switched off."""
    return _otlp_reader is not None and os.environ.get(PURE_PYTHON_ENV, "") in ("", "0")


def read_request(body: bytes, capture_content: bool, max_value_bytes: int) -> list | None:
    """``[(resource attributes, [span, ...]), ...]``, spans of every scope in order.

    None when the C reader is not used or cannot judge the body (a wire-format
    error, invalid UTF-8, nesting, anything unusual): the caller then decodes
    with upb, which gives today's result or ``PermanentError``.
    """
    if not enabled() or max_value_bytes < 0:
        return None
    return _reader(capture_content, max_value_bytes).read(body)


@functools.lru_cache(maxsize=8)
def _reader(capture_content: bool, max_value_bytes: int):
    return _otlp_reader.Reader(
        key_table=KEY_BITS, content_keys=a.CONTENT_KEYS, content_prefixes=a.CONTENT_PREFIXES,
        completion_prefix=a.COMPLETION_PREFIX, finish_suffix=a.FINISH_SUFFIX, keep_bit=a.KEEP,
        capture_content=capture_content, max_value_bytes=max_value_bytes, truncate=a.truncate,
        bytes_to_text=_base64_text, rare_parser=Span.FromString)


def _base64_text(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


# --- records (_records.c) -------------------------------------------------------------

# How the record maker may skip a reader: only where the reader's own code returns its
# input unchanged (an int, a non-empty str, a finite float; a list of str is copied).
_FAST_NONE, _FAST_INT, _FAST_STR, _FAST_STR_LIST, _FAST_FLOAT, _FAST_MEMO = range(6)
_FAST_READERS = {values.as_int: _FAST_INT, values.as_str: _FAST_STR,
                 inferledger.identifier: _FAST_STR, values.as_str_list: _FAST_STR_LIST,
                 values.as_float: _FAST_FLOAT}
# Readers whose result depends on nothing but a str input and is immutable: memoized in C.
PURE_READERS = (provider, genai.operation, genai.service_tier, genai.requested_service_tier,
                openllmetry.operation, openinference.operation, langfuse.operation,
                inferledger.review_operation)


def record_maker():
    """The C ``RecordMaker`` (built once), or None when the C path is not used."""
    return _record_maker() if enabled() else None


@functools.lru_cache(maxsize=1)
def _record_maker():
    columns = {name: index for index, name in enumerate((*COLUMNS, *PRIVATE_COLUMNS))}
    memos = {reader: {} for reader in PURE_READERS}
    specs = {key: tuple((columns[column], read, _speed(read), rank, convention, memos.get(read))
                        for column, read, _, (rank, convention) in rows)
             for key, rows in SPECS.items()}
    return _otlp_reader.RecordMaker(
        specs=specs, columns=columns, row_length=len(COLUMNS), mark=a.MARK, mark_oi=a.MARK_OI,
        mark_lf=a.MARK_LF, personal_only=a.PERSONAL_ONLY, olm_marker=a.OLM_MARKER,
        span_kind_client=a.SPAN_KIND_CLIENT, status_code_error=a.STATUS_CODE_ERROR,
        total_keys=(a.GENAI_TOTAL, a.OLM_TOTAL, a.OI_TOTAL, a.LF_USAGE),
        http_keys=(*a.HTTP_METHOD, *a.HTTP_STATUS), model_name_key=a.IL_MODEL_NAME, otel=OTEL,
        olm=OLM, operation_from_span_name=genai.operation_from_span_name,
        provider_from_attributes=provider_from_attributes, to_json=a.to_json)


def _speed(read) -> int:
    return _FAST_MEMO if read in PURE_READERS else _FAST_READERS.get(read, _FAST_NONE)


# --- columns (_columns.c) -------------------------------------------------------------


def record_batch(rows: list, schema: pa.Schema) -> pa.RecordBatch | None:
    """The rows (tuples in schema order) as a record batch, built in C; None when the C
    path is not used or a value needs ``pa.array`` (which stores it or raises)."""
    kinds = _column_kinds(schema)
    if not rows or kinds is None or not enabled():
        return None
    capsule = _otlp_reader.record_batch(rows, kinds)
    if capsule is None:
        return None
    return pa.RecordBatch._import_from_c_capsule(schema.__arrow_c_schema__(), capsule)


@functools.lru_cache(maxsize=8)
def _column_kinds(schema: pa.Schema) -> tuple | None:
    """The C column kind of each field, or None when a type has none."""
    if _otlp_reader is None or not hasattr(pa.RecordBatch, "_import_from_c_capsule"):
        return None
    kinds = {pa.string(): _otlp_reader.COL_STRING, pa.int64(): _otlp_reader.COL_INT64,
             pa.int32(): _otlp_reader.COL_INT32, pa.float64(): _otlp_reader.COL_FLOAT64,
             pa.bool_(): _otlp_reader.COL_BOOL, pa.list_(pa.string()): _otlp_reader.COL_STRING_LIST}
    found = []
    for field in schema:
        if pa.types.is_timestamp(field.type) and field.type.unit == "us":
            found.append(_otlp_reader.COL_INT64)
        elif field.type in kinds:
            found.append(kinds[field.type])
        else:
            return None
    return tuple(found)
