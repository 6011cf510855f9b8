"""OpenLLMetry (Traceloop): legacy ``llm.*`` names and how to recognise the emitter.

Since semconv-ai 0.5.0 the instrumentations emit OTel ``gen_ai.*`` names, so a
span is attributed to OpenLLMetry (``convention = openllmetry``) when its
tokens came from a ``gen_ai.*`` name shared with OTel *and* it carries a name
only OpenLLMetry uses (``gen_ai.is_streaming``, ``gen_ai.usage.total_tokens``,
``llm.request.type``, ``traceloop.*`` keys, ...): ``MARKERS``.
"""
from __future__ import annotations

from collector.attributes import OPENLLMETRY_GENAI_MARKERS
from collector.conventions.values import as_str

# llm.request.type -> gen_ai.operation.name ("unknown" maps to nothing).
REQUEST_TYPES = {
    "chat": "chat",
    "completion": "text_completion",
    "embedding": "embeddings",
    "rerank": "rerank",
}

LEGACY_MARKERS = frozenset((
    "llm.request.type", "llm.usage.total_tokens", "llm.usage.reasoning_tokens", "llm.is_streaming",
    "llm.user", "llm.response.finish_reason", "llm.response.stop_reason",
    "llm.frequency_penalty", "llm.presence_penalty", "llm.top_k", "llm.chat.stop_sequences",
    "traceloop.span.kind", "traceloop.workflow.name", "traceloop.entity.name",
    "traceloop.entity.path", "traceloop.association.properties.session_id",
    "traceloop.association.properties.chat_id", "traceloop.association.properties.user_id",
))
# Read by normalize through the key table's OLM_MARKER bit (collector/conventions/mapping.py).
MARKERS = OPENLLMETRY_GENAI_MARKERS | LEGACY_MARKERS


def operation(value):
    """``llm.request.type`` as an OTel operation name."""
    text = as_str(value)
    return REQUEST_TYPES.get(text.lower()) if text else None
