"""The C reader of OTLP/protobuf trace requests, when it is built and allowed.

``collector/_otlp_reader.c`` reads an ``ExportTraceServiceRequest`` straight
from its bytes: per ``ResourceSpans`` the resource attributes as a dict (what
``read_plain`` gives), per span a light object with the fields normalize uses
and its attributes already sorted (what ``read_attributes`` gives). It skips
upb's object per field access, most of the cost before the mapping.

This module is the one place that decides whether it is used: not when the
extension is missing (no compiler at install), nor when the environment sets
``INFERLEDGER_PURE_PYTHON=1`` (tests and benchmarks compare both paths). The
key table, content keys and value conversions come from Python, so the two
paths cannot drift apart in what they keep.
"""
from __future__ import annotations

import base64
import functools
import os

from opentelemetry.proto.trace.v1.trace_pb2 import Span

from collector import attributes as a
from collector.conventions.mapping import KEY_BITS

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
