"""OTel GenAI semantic conventions: readers for ``gen_ai.*`` values.

Current names (``gen_ai.provider.name``, ``gen_ai.usage.input_tokens``, ...)
rank before the deprecated ones (``gen_ai.system``, ``gen_ai.usage.prompt_tokens``)
in ``mapping.py``. Token semantics are the OTel rule the record follows:
cache reads and writes inside ``input_tokens``, reasoning inside ``output_tokens``.
"""
from __future__ import annotations

from collector.conventions.values import as_str

# gen_ai.operation.name values (semconv 0.66b2 and the genai repository), plus
# ``rerank`` (OpenLLMetry) and ``predict`` / ``review`` (inferledger).
OPERATIONS = frozenset((
    "chat", "generate_content", "text_completion", "embeddings", "retrieval", "create_agent",
    "invoke_agent", "execute_tool", "invoke_workflow", "plan", "create_memory", "search_memory",
    "update_memory", "delete_memory", "rerank", "predict", "review",
))


def operation(value):
    """``gen_ai.operation.name`` as given (custom values are allowed), lower-cased."""
    text = as_str(value)
    return text.strip().lower() if text else None


def operation_from_span_name(name: str):
    """Last resort: the span name's first word, when it is a known operation ("chat gpt-4o")."""
    first_word = name.split(" ", 1)[0].lower()
    return first_word if first_word in OPERATIONS else None


def service_tier(value):
    """OpenAI's response tier; ``default`` is what the price list calls ``standard``."""
    text = as_str(value)
    if not text:
        return None
    text = text.lower()
    return "standard" if text == "default" else text


def requested_service_tier(value):
    """A requested tier is only evidence when it is explicit (``auto`` decides nothing)."""
    tier = service_tier(value)
    return None if tier == "auto" else tier
