"""The inference record: the one contract between the collector and the warehouse.

Every hand-off (normalize -> write-ahead log -> Parquet -> DuckDB views) carries
Arrow record batches with exactly this schema. Column names are a public
interface: auditors write SQL against them. Changes are additive only; bump
``SCHEMA_VERSION`` and keep a frozen copy of the released schema in
``tests/data/schemas/``.

Token classes follow the OTel GenAI rule: ``input_tokens`` includes cache reads
and cache writes, ``output_tokens`` includes reasoning tokens. The collector maps
every convention onto that rule so no token is counted twice.
"""
from __future__ import annotations

from typing import Any, Iterable, Mapping

import pyarrow as pa

SCHEMA_VERSION = 1

TIMESTAMP = pa.timestamp("us", tz="UTC")


def _field(name: str, type_: pa.DataType, description: str, source: str = "") -> pa.Field:
    metadata = {"description": description}
    if source:
        metadata["source"] = source
    return pa.field(name, type_, nullable=True, metadata=metadata)


RECORD_FIELDS = [
    _field("trace_id", pa.string(), "OTLP trace id, 32 lower-case hex characters"),
    _field("span_id", pa.string(), "OTLP span id, 16 lower-case hex characters"),
    _field("parent_span_id", pa.string(), "parent span id, NULL for a root span"),
    _field("start_time", TIMESTAMP, "span start (UTC)"),
    _field("end_time", TIMESTAMP, "span end (UTC)"),
    _field("duration_ms", pa.float64(), "end_time - start_time in milliseconds"),
    _field("span_name", pa.string(), "the span's name"),
    _field("service_name", pa.string(), "resource service.name", "service.name"),
    _field("service_version", pa.string(), "resource service.version", "service.version"),
    _field("environment", pa.string(), "deployment environment",
           "deployment.environment.name, deployment.environment"),
    _field("tenant", pa.string(), "cost allocation key: tenant", "inferledger.tenant.id"),
    _field("feature", pa.string(), "cost allocation key: feature", "inferledger.feature.name"),
    _field("budget_id", pa.string(), "explicit budget key", "inferledger.budget.id"),
    _field("operation", pa.string(), "chat, text_completion, embeddings, execute_tool, predict, ...",
           "gen_ai.operation.name, llm.request.type, openinference.span.kind"),
    _field("provider", pa.string(), "openai, anthropic, aws.bedrock, azure.ai.openai, pool name, ...",
           "gen_ai.provider.name, gen_ai.system, llm.provider, llm.system"),
    _field("request_model", pa.string(), "model as requested", "gen_ai.request.model"),
    _field("response_model", pa.string(), "model as served (falls back to the requested one)",
           "gen_ai.response.model"),
    _field("model_version", pa.string(), "explicit version/deployment, else the served model id",
           "inferledger.model.version"),
    _field("input_tokens", pa.int64(), "input tokens including cache reads and writes"),
    _field("output_tokens", pa.int64(), "output tokens including reasoning tokens"),
    _field("cache_read_tokens", pa.int64(), "input tokens read from the provider's prompt cache"),
    _field("cache_write_tokens", pa.int64(), "input tokens written to the provider's prompt cache"),
    _field("reasoning_tokens", pa.int64(), "output tokens spent on reasoning"),
    _field("token_notes", pa.string(),
           "how tokens were reconciled, e.g. cache_added_to_input when an emitter excluded them"),
    _field("status", pa.string(), "ok or error"),
    _field("error_type", pa.string(), "error class when status = error", "error.type"),
    _field("finish_reasons", pa.list_(pa.string()), "finish reasons", "gen_ai.response.finish_reasons"),
    _field("attempt", pa.int32(), "attempt number within one logical request, 0 = first",
           "inferledger.attempt, max http.request.resend_count"),
    _field("request_key", pa.string(), "key grouping the attempts of one logical request",
           "inferledger.request.key"),
    _field("retry_of_span_id", pa.string(), "span id of the previous attempt (span link retry_of)"),
    _field("decision_label", pa.string(), "decision output", "inferledger.decision.label"),
    _field("decision_score", pa.float64(), "score behind the decision", "inferledger.decision.score"),
    _field("decision_reasons", pa.list_(pa.string()), "principal reasons, most important first",
           "inferledger.decision.reasons"),
    _field("subject_id", pa.string(), "keyed hash (HMAC-SHA256) of the decision subject",
           "inferledger.subject.id"),
    _field("user_id", pa.string(), "keyed hash of the calling user", "user.id, enduser.id"),
    _field("conversation_id", pa.string(), "conversation or session id",
           "gen_ai.conversation.id, session.id"),
    _field("pricing_tier", pa.string(), "standard, batch, flex, priority",
           "openai.response.service_tier, inferledger.pricing.tier"),
    _field("compute_pool", pa.string(), "self-hosted capacity pool", "inferledger.compute.pool"),
    _field("cache_hit", pa.bool_(), "an application-level cache answered", "inferledger.cache.hit"),
    _field("review_outcome", pa.string(), "human review outcome", "inferledger.review.outcome"),
    _field("review_override", pa.bool_(), "the review overrode the model", "inferledger.review.override"),
    _field("reviewer_id", pa.string(), "keyed hash of the reviewer", "inferledger.review.reviewer.id"),
    _field("review_duration_s", pa.float64(), "time the review took", "inferledger.review.duration_s"),
    _field("reviewed_span_id", pa.string(), "span id of the decision this review concerns (span link)"),
    _field("reported_cost_usd", pa.float64(), "cost reported on the span, USD",
           "gen_ai.usage.cost, llm.cost.total, operation.cost"),
    _field("cost_usd", pa.float64(), "cost of the inference in USD; NULL when unpriced"),
    _field("computed_cost_usd", pa.float64(), "cost computed from the price book, beside a reported one"),
    _field("cost_source", pa.string(), "reported, computed, capacity, unpriced"),
    _field("price_ref", pa.string(), "price book entry id and effective date"),
    _field("convention", pa.string(),
           "convention the record was read from: otel_genai, openllmetry, openinference, langfuse, inferledger"),
    _field("attributes", pa.string(), "remaining span attributes as JSON (content only if capture is on)"),
    _field("resource", pa.string(), "resource attributes as JSON"),
    _field("ingest_time", TIMESTAMP, "when the collector acknowledged the span"),
]

RECORD_SCHEMA = pa.schema(RECORD_FIELDS, metadata={"inferledger.schema_version": str(SCHEMA_VERSION)})
COLUMNS = [f.name for f in RECORD_FIELDS]

# HTTP client spans under inference spans, kept compactly as retry evidence.
HTTP_ATTEMPT_SCHEMA = pa.schema(
    [
        _field("trace_id", pa.string(), "OTLP trace id"),
        _field("span_id", pa.string(), "the HTTP client span"),
        _field("parent_span_id", pa.string(), "the span it sits under (usually the inference span)"),
        _field("start_time", TIMESTAMP, "attempt start"),
        _field("duration_ms", pa.float64(), "attempt duration"),
        _field("status_code", pa.int32(), "HTTP response status code", "http.response.status_code"),
        _field("resend_count", pa.int32(), "0 for the first attempt", "http.request.resend_count"),
        _field("error_type", pa.string(), "error class", "error.type"),
        _field("server_address", pa.string(), "host called", "server.address"),
        _field("ingest_time", TIMESTAMP, "when the collector acknowledged the span"),
    ],
    metadata={"inferledger.schema_version": str(SCHEMA_VERSION)},
)

DATASETS = {"inferences": RECORD_SCHEMA, "http_attempts": HTTP_ATTEMPT_SCHEMA}


def to_batch(rows: Iterable[Mapping[str, Any]], schema: pa.Schema = RECORD_SCHEMA) -> pa.RecordBatch:
    """Build a record batch from dict rows; missing keys become NULL."""
    rows = list(rows)
    columns = {name: [row.get(name) for row in rows] for name in schema.names}
    return pa.RecordBatch.from_pydict(columns, schema=schema)
