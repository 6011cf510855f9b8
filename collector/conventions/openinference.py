"""OpenInference (Arize Phoenix): span kinds, models and invocation parameters.

Only model calls become records: ``openinference.span.kind`` LLM, EMBEDDING,
RERANKER and DECISION. CHAIN, AGENT, TOOL, RETRIEVER, GUARDRAIL, EVALUATOR,
PROMPT and UNKNOWN spans are dropped even when they carry ``llm.*`` keys, so
that tokens an agent or chain span rolls up from its children are not counted
twice. ``llm.token_count.prompt`` includes cached tokens (the OpenAI and the
Anthropic instrumentors both put cache reads and writes inside it), and
``llm.token_count.completion`` includes reasoning tokens.
"""
from __future__ import annotations

import json

from collector.conventions.values import as_str

# openinference.span.kind -> operation, for the kinds that are model calls.
MODEL_CALL_KINDS = {
    "LLM": "chat",
    "EMBEDDING": "embeddings",
    "RERANKER": "rerank",
    "DECISION": "predict",
}


def is_model_call(kind) -> bool:
    """True when the span kind is absent (older emitters) or is a model call."""
    return kind is None or (type(kind) is str and kind.upper() in MODEL_CALL_KINDS)


def operation(value):
    """``openinference.span.kind`` as an operation name."""
    text = as_str(value)
    return MODEL_CALL_KINDS.get(text.upper()) if text else None


def invocation_model(value):
    """The ``model`` inside ``llm.invocation_parameters`` (a JSON string or a map).

    The OpenAI instrumentor puts the requested model only there; ``llm.model_name``
    holds the served one.
    """
    if type(value) is str:
        if '"model"' not in value:
            return None
        try:
            value = json.loads(value)
        except ValueError:
            return None
    if type(value) is dict:
        return as_str(value.get("model"))
    return None
