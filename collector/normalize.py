"""Normalize an OTLP trace export into inference records and HTTP attempts.

Pure: no I/O. ``normalize_request`` walks resource -> scope -> span once:

* invalid spans (ids, times, token counts) are rejected one by one, with a
  message, and the others are kept (OTLP partial success);
* inference spans (GenAI, OpenLLMetry, OpenInference, Langfuse or
  ``inferledger.*`` attributes) become rows of ``RECORD_SCHEMA``, fields taken
  by the precedence table in ``collector/conventions/mapping.py``;
* HTTP client spans become rows of ``HTTP_ATTEMPT_SCHEMA`` (retry evidence);
  they usually arrive in another export than their parent, so no linking here;
* everything else is counted as dropped.

Speed matters (the collector must take tens of thousands of spans per
second on a small machine): each span's attributes are read once (``collector.attributes.read_attributes``),
the precedence table is applied by iterating the span's mapped keys rather
than probing every candidate key, and columns are built once per batch.

What runs where (``collector/otlp_reader.py``): with the C extension, a
protobuf body is read in C, the record of a common inference span is built
in C (``_records.c``, the same steps as ``_inference``), and the columns are
built in C (``_columns.c``). Every other span -- rejected, OpenInference or
Langfuse only, HTTP, with links, events, errors, personal attributes, ... --
goes through ``_Batch.add`` below, in order; this Python code is also the
whole path for OTLP/JSON, for upb and with ``INFERLEDGER_PURE_PYTHON=1``.
tests/collector/test_otlp_reader.py and test_records_c.py check that both give
the same batch.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from operator import itemgetter

import pyarrow as pa

from collector import attributes as a
from collector import otlp_reader
from collector.conventions import genai, inferledger, langfuse, openinference, status
from collector.conventions.mapping import (CONVENTION_COLUMNS, KEY_BITS, LF, OLM, OTEL,
                                           PRIVATE_COLUMNS, SPECS, TOKEN_COLUMNS)
from collector.conventions.providers import provider_from_attributes
from collector.conventions.tokens import out_of_range, reconcile
from collector.conventions.values import as_int, as_str
from collector.otlp_decode import decode_protobuf
from collector.pseudonymize import Pseudonymizer
from collector.redact import RedactionRules, Redactor
from warehouse.record import COLUMNS, HTTP_ATTEMPT_SCHEMA, RECORD_SCHEMA

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_ZERO_TRACE = bytes(16)
_ZERO_SPAN = bytes(8)
_MAX_MESSAGES = 5
_TEMPLATE = dict.fromkeys((*COLUMNS, *PRIVATE_COLUMNS))
_ROW = itemgetter(*COLUMNS)
_PERSONAL_ONLY_KEYS = tuple(k for k, bits in KEY_BITS.items() if bits == a.PERSONAL_ONLY)
_TOTAL_KEYS = (a.GENAI_TOTAL, a.OLM_TOTAL, a.OI_TOTAL, a.LF_USAGE)
_LANGFUSE_TAG = (1 << 30, LF)  # ranks after every attribute row


@dataclass(frozen=True, kw_only=True)
class NormalizeSettings:
    """What normalization keeps. ``subject_key`` is the secret HMAC key for pseudonyms."""

    capture_content: bool = False
    keep_http_spans: bool = True
    subject_key: bytes
    max_attribute_value_bytes: int = 16384
    max_tokens: int = 10_000_000
    redaction: RedactionRules = RedactionRules()  # applied to captured content only
    pseudonymizer: Pseudonymizer = field(init=False, repr=False, compare=False)
    redactor: Redactor | None = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        object.__setattr__(self, "pseudonymizer", Pseudonymizer(self.subject_key))
        active = self.capture_content and self.redaction.active
        object.__setattr__(self, "redactor", Redactor(self.redaction) if active else None)


@dataclass
class NormalizedBatch:
    """The result of one export request (see the module docstring)."""

    inferences: pa.RecordBatch
    http_attempts: pa.RecordBatch
    spans_received: int
    rejected_spans: int
    rejection_messages: list[str]
    dropped_spans: int


class _Rejected(Exception):
    """A span that cannot be stored; the message says why."""


class _Resource:
    """What every span of one ``ResourceSpans`` shares."""

    __slots__ = ("service_name", "service_version", "environment", "tenant", "feature",
                 "budget_id", "compute_pool", "json")

    def __init__(self, attrs: dict, settings: NormalizeSettings):
        """``attrs``: the resource attributes as ``read_plain`` reads them (consumed)."""
        take = attrs.pop
        self.service_name = as_str(take(a.SERVICE_NAME, None))
        self.service_version = as_str(take(a.SERVICE_VERSION, None))
        environments = [as_str(take(key, None)) for key in (*a.ENVIRONMENT, a.LF_ENVIRONMENT)]
        self.environment = next((env for env in environments if env), None)
        release = as_str(take(a.LF_RELEASE, None))
        self.service_version = self.service_version or release
        self.tenant = as_str(take(a.IL_TENANT, None))
        self.feature = as_str(take(a.IL_FEATURE, None))
        self.budget_id = as_str(take(a.IL_BUDGET, None))
        self.compute_pool = as_str(take(a.IL_COMPUTE_POOL, None))
        for key in a.PERSONAL.intersection(attrs):
            identifier = inferledger.identifier(attrs[key])
            attrs[key] = settings.pseudonymizer(identifier) if identifier else None
        self.json = a.to_json(attrs) if attrs else None


class _Batch:
    """Rows and counters accumulated over one request.

    ``presorted``: the spans come from the C reader and carry their attributes
    already read (``span.sorted_attributes``); otherwise they are upb spans.
    """

    def __init__(self, settings: NormalizeSettings, ingest_time: datetime, presorted: bool = False):
        if ingest_time.tzinfo is None:
            ingest_time = ingest_time.replace(tzinfo=timezone.utc)
        self.settings = settings
        self.presorted = presorted
        # the C record maker takes the common spans of C-read requests
        in_c = presorted and 0 <= settings.max_tokens <= 2**53
        self.record_maker = otlp_reader.record_maker() if in_c else None
        self.ingest_us = (ingest_time - _EPOCH) // timedelta(microseconds=1)
        self.inferences: list[tuple] = []
        self.http_attempts: list[tuple] = []
        self.received = 0
        self.rejected = 0
        self.dropped = 0
        self.messages: list[str] = []

    def add_spans(self, spans, resource: _Resource) -> None:
        """``add`` each span, in order; the C record maker builds the common ones itself."""
        maker = self.record_maker
        if maker is None:
            for span in spans:
                self.add(span, resource)
            return
        settings = self.settings
        redact = settings.redactor.redact_content if settings.redactor is not None else None
        received, dropped = maker.add(spans, resource, self.inferences, self.ingest_us,
                                      settings.pseudonymizer, redact, settings.max_tokens,
                                      settings.keep_http_spans, self.add, self._reject_error)
        self.received += received
        self.dropped += dropped

    def add(self, span, resource: _Resource) -> None:
        self.received += 1
        try:
            self._add(span, resource)
        except _Rejected as rejection:
            self._reject(span, str(rejection))
        except Exception as error:
            self._reject_error(span, error)

    def _reject_error(self, span, error: Exception) -> None:
        """A malformed value must not fail the whole export."""
        self._reject(span, f"could not be normalized ({type(error).__name__}: {error})")

    def _reject(self, span, problem: str) -> None:
        self.rejected += 1
        if len(self.messages) < _MAX_MESSAGES:
            message = f"span {span.span_id.hex() or '(empty id)'} {span.name!r}: {problem}"
            if message not in self.messages:
                self.messages.append(message)

    def _add(self, span, resource: _Resource) -> None:
        ids = _validate(span)
        settings = self.settings
        if self.presorted:
            attrs = span.sorted_attributes
        else:
            attrs = a.read_attributes(span.attributes, KEY_BITS, settings.capture_content,
                                      settings.max_attribute_value_bytes)
        if _is_inference(attrs):
            rec = _inference(span, attrs, ids, resource, settings)
            rec["ingest_time"] = self.ingest_us
            self.inferences.append(_ROW(rec))
        elif settings.keep_http_spans and _is_http_client(span, attrs.extra):
            self.http_attempts.append(_http_attempt(span, attrs, ids, self.ingest_us))
        else:
            self.dropped += 1

    def finish(self) -> NormalizedBatch:
        to_batch = _to_batch_in_c if self.presorted else _to_batch
        return NormalizedBatch(
            inferences=to_batch(self.inferences, RECORD_SCHEMA),
            http_attempts=to_batch(self.http_attempts, HTTP_ATTEMPT_SCHEMA),
            spans_received=self.received,
            rejected_spans=self.rejected,
            rejection_messages=self.messages,
            dropped_spans=self.dropped,
        )


def normalize_request(request, settings: NormalizeSettings, ingest_time: datetime) -> NormalizedBatch:
    """Normalize an ``ExportTraceServiceRequest`` (see the module docstring)."""
    max_bytes = settings.max_attribute_value_bytes
    resources = ((a.read_plain(resource_spans.resource.attributes, max_bytes),
                  (span for scope_spans in resource_spans.scope_spans for span in scope_spans.spans))
                 for resource_spans in request.resource_spans)
    return _normalize(resources, _Batch(settings, ingest_time))


def normalize_protobuf(body: bytes, settings: NormalizeSettings, ingest_time: datetime) -> NormalizedBatch:
    """``normalize_request(decode_protobuf(body), ...)``, through the C reader when it is
    built (``collector/otlp_reader.py``): the same batch, or the same ``PermanentError``."""
    resources = otlp_reader.read_request(body, settings.capture_content,
                                         settings.max_attribute_value_bytes)
    if resources is None:  # no C reader, or a body only upb can judge
        return normalize_request(decode_protobuf(body), settings, ingest_time)
    return _normalize(resources, _Batch(settings, ingest_time, presorted=True))


def _normalize(resources, batch: _Batch) -> NormalizedBatch:
    """``resources``: (resource attributes as ``read_plain`` reads them, that resource's spans) pairs."""
    for resource_attributes, spans in resources:
        batch.add_spans(spans, _Resource(resource_attributes, batch.settings))
    return batch.finish()


def _validate(span) -> tuple:
    """(trace hex, span hex, parent hex or None, start ns, end ns), or raise _Rejected."""
    trace_id = span.trace_id
    span_id = span.span_id
    parent = span.parent_span_id
    if len(trace_id) != 16:
        raise _Rejected(f"trace_id must be 16 bytes (32 hex digits), got {len(trace_id)}")
    if trace_id == _ZERO_TRACE:
        raise _Rejected("trace_id is all zero")
    if len(span_id) != 8:
        raise _Rejected(f"span_id must be 8 bytes (16 hex digits), got {len(span_id)}")
    if span_id == _ZERO_SPAN:
        raise _Rejected("span_id is all zero")
    if len(parent) not in (0, 8):
        raise _Rejected(f"parent_span_id must be empty or 8 bytes, got {len(parent)}")
    start = span.start_time_unix_nano
    end = span.end_time_unix_nano
    if start == 0:
        raise _Rejected("start_time_unix_nano is missing")
    if end < start:
        raise _Rejected(f"end_time_unix_nano {end} is before start_time_unix_nano {start}")
    parent_hex = parent.hex() if parent and parent != _ZERO_SPAN else None
    return trace_id.hex(), span_id.hex(), parent_hex, start, end


def _is_inference(attrs: a.SpanAttributes) -> bool:
    bits = attrs.bits_seen
    if bits & a.MARK:
        return True
    if bits & a.MARK_OI and openinference.is_model_call(attrs.known.get(a.OI_SPAN_KIND)):
        return True
    return bool(bits & a.MARK_LF) and langfuse.is_model_call(attrs.known.get(a.LF_TYPE))


def _is_http_client(span, extra: dict) -> bool:
    if span.kind != a.SPAN_KIND_CLIENT:
        return False
    return any(key in extra for key in a.HTTP_METHOD) or any(key in extra for key in a.HTTP_STATUS)


def _apply_precedence(known: dict, extra: dict, rec: dict) -> dict:
    """Fill ``rec`` from the mapped keys; returns column -> (rank, convention) of the winner.

    Iterates the span's mapped keys (about ten) rather than probing every
    candidate key of every column (about a hundred). A key of better rank
    replaces a worse one; an unusable value is skipped and kept in ``extra``.
    """
    sources: dict = {}
    specs_get = SPECS.get
    for key, raw in known.items():
        for column, read, fast_type, tag in specs_get(key, ()):
            held = sources.get(column)
            if held is not None and held <= tag:
                continue
            raw_type = type(raw)
            if raw_type is fast_type and (raw_type is int or raw):
                value = raw
            else:
                value = read(raw)
                if value is None:
                    extra[key] = raw
                    continue
            rec[column] = value
            sources[column] = tag
    return sources


def _inference(span, attrs: a.SpanAttributes, ids: tuple, resource: _Resource,
               settings: NormalizeSettings) -> dict:
    known, extra = attrs.known, attrs.extra
    rec = _TEMPLATE.copy()
    sources = _apply_precedence(known, extra, rec)
    notes: list = []
    _tokens(rec, sources, known, extra, notes, settings.max_tokens)
    trace_hex, span_hex, parent_hex, start, end = ids
    rec["trace_id"] = trace_hex
    rec["span_id"] = span_hex
    rec["parent_span_id"] = parent_hex
    rec["start_time"] = start // 1000
    rec["end_time"] = end // 1000
    rec["duration_ms"] = (end - start) / 1e6
    rec["span_name"] = span.name
    if notes:
        rec["token_notes"] = ",".join(notes)
    _fill_fallbacks(rec, span, attrs, resource)
    _fill_status(rec, span, extra)
    _fill_links(rec, span, parent_hex)
    if rec["_cost_currency"] is not None:
        _check_cost_currency(rec, sources, known, extra)
    _pseudonymize(rec, attrs, settings.pseudonymizer)
    rec["convention"] = _convention(sources, attrs.bits_seen)
    if extra:
        if settings.redactor is not None:
            settings.redactor.redact_content(extra)
        rec["attributes"] = a.to_json(extra)
    rec["resource"] = resource.json
    return rec


def _tokens(rec: dict, sources: dict, known: dict, extra: dict, notes: list, max_tokens: int):
    """Merge Langfuse usage, check ranges, reconcile classes (see conventions/tokens.py)."""
    total = rec["_total"]
    usage = rec["_usage"]
    if usage is not None:
        for column in TOKEN_COLUMNS:
            if rec[column] is None and usage.get(column) is not None:
                rec[column] = usage[column]
                sources[column] = _LANGFUSE_TAG
        if total is None:
            total = usage.get("_total")
        if _LANGFUSE_TAG in (sources.get("input_tokens"), sources.get("output_tokens")):
            notes.extend(usage.get("_notes", ()))
    problem = out_of_range(rec, TOKEN_COLUMNS, total, max_tokens)
    if problem:
        raise _Rejected(problem)
    if reconcile(rec, total, notes):
        for key in _TOTAL_KEYS:  # keep the disagreeing total as evidence
            if key in known:
                extra[key] = known[key]
                break


def _fill_fallbacks(rec: dict, span, attrs: a.SpanAttributes, resource: _Resource) -> None:
    """Columns that fall back on other columns, the resource or the span name."""
    extra = attrs.extra
    if rec["response_model"] is None:
        rec["response_model"] = rec["request_model"]
    if rec["model_version"] is None:
        rec["model_version"] = rec["response_model"]
    if rec["operation"] is None:
        is_prediction = a.IL_MODEL_NAME in attrs.known or rec["decision_label"] is not None \
            or rec["decision_score"] is not None
        rec["operation"] = "predict" if is_prediction else genai.operation_from_span_name(span.name)
    if rec["finish_reasons"] is None and attrs.completion_finish:
        rec["finish_reasons"] = attrs.completion_finish
    if rec["tenant"] is None:
        rec["tenant"] = resource.tenant
    if rec["feature"] is None:
        rec["feature"] = resource.feature
    if rec["budget_id"] is None:
        rec["budget_id"] = resource.budget_id
    if rec["compute_pool"] is None:
        rec["compute_pool"] = resource.compute_pool
    if rec["provider"] is None:
        rec["provider"] = provider_from_attributes(extra) or rec["compute_pool"]
    rec["service_name"] = resource.service_name
    rec["service_version"] = resource.service_version or rec["_lf_release"]
    rec["environment"] = resource.environment or rec["_lf_environment"]
    if rec["attempt"] is None:
        rec["attempt"] = 0


def _fill_status(rec: dict, span, extra: dict) -> None:
    """ok / error, and the error class (see collector/conventions/status.py)."""
    failed = span.status.code == a.STATUS_CODE_ERROR or rec["error_type"] is not None \
        or rec["_lf_error"] is True
    rec["status"] = "error" if failed else "ok"
    if failed and rec["error_type"] is None:
        rec["error_type"] = status.error_class(span, extra)
    elif rec["error_type"] is not None:
        rec["error_type"] = status.clean_class_repr(rec["error_type"])


def _fill_links(rec: dict, span, parent_hex) -> None:
    links = span.links
    linked = inferledger.read_links(links) if len(links) else None
    if linked is not None:
        rec["retry_of_span_id"] = linked.retry_of
    if rec["operation"] == "review":
        rec["reviewed_span_id"] = (linked and (linked.review_of or linked.untyped)) or parent_hex


def _check_cost_currency(rec: dict, sources: dict, known: dict, extra: dict) -> None:
    """gen_ai.usage.cost in another currency is not a USD cost: keep it as an attribute."""
    currency = rec["_cost_currency"]
    if currency.upper() == "USD":
        return
    extra[a.GENAI_COST_CURRENCY] = currency
    if sources.get("reported_cost_usd", (0, None))[1] == OTEL:
        rec["reported_cost_usd"] = None
        for key in (*a.GENAI_COST, a.OTHER_COST):
            if key in known:
                extra[key] = known[key]


def _pseudonymize(rec: dict, attrs: a.SpanAttributes, pseudonymizer: Pseudonymizer) -> None:
    for column in ("subject_id", "user_id", "reviewer_id"):
        if rec[column] is not None:
            rec[column] = pseudonymizer(rec[column])
    if attrs.bits_seen & a.PERSONAL_ONLY:
        for key in _PERSONAL_ONLY_KEYS:
            identifier = inferledger.identifier(attrs.known.get(key))
            if identifier:
                attrs.extra[key] = pseudonymizer(identifier)


def _convention(sources: dict, bits_seen: int):
    """The convention that supplied the tokens, else the model, else anything."""
    for column in CONVENTION_COLUMNS:
        tag = sources.get(column)
        if tag is not None:
            break
    else:
        tag = next(iter(sources.values()), (0, None))
    convention = tag[1]
    if convention == OTEL and bits_seen & a.OLM_MARKER:
        return OLM
    return convention


def _http_attempt(span, attrs: a.SpanAttributes, ids: tuple, ingest_us: int) -> tuple:
    extra = attrs.extra
    trace_hex, span_hex, parent_hex, start, end = ids
    status_code = next((as_int(extra[k]) for k in a.HTTP_STATUS if k in extra), None)
    resend = as_int(attrs.known.get(a.RESEND_COUNT))
    server = next((as_str(extra[k]) for k in a.SERVER_ADDRESS if k in extra), None)
    return (trace_hex, span_hex, parent_hex, start // 1000, (end - start) / 1e6,
            status_code if status_code is not None and 0 <= status_code <= 999 else None,
            resend if resend is not None and 0 <= resend <= inferledger.MAX_ATTEMPT else 0,
            as_str(attrs.known.get(a.ERROR_TYPE)), server, ingest_us)


def _to_batch_in_c(rows: list, schema: pa.Schema) -> pa.RecordBatch:
    """``_to_batch`` through ``collector/_columns.c`` when it can (the same batch)."""
    batch = otlp_reader.record_batch(rows, schema)
    return _to_batch(rows, schema) if batch is None else batch


def _to_batch(rows: list, schema: pa.Schema) -> pa.RecordBatch:
    if not rows:
        return pa.RecordBatch.from_arrays([pa.array([], f.type) for f in schema], schema=schema)
    count = len(rows)
    arrays = [pa.nulls(count, f.type) if column.count(None) == count else pa.array(column, type=f.type)
              for column, f in zip(zip(*rows), schema)]
    return pa.RecordBatch.from_arrays(arrays, schema=schema)
