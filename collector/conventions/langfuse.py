"""Langfuse SDK spans: observation types and the ``usage_details`` JSON.

Langfuse sends no ``gen_ai.*`` attributes and no provider. Only ``generation``
and ``embedding`` observations are model calls. Tokens are one JSON string in
``langfuse.observation.usage_details``, in one of these shapes:

* Chat Completions usage: ``prompt_tokens`` (cached inside, as
  ``prompt_tokens_details.cached_tokens``), ``completion_tokens`` (reasoning
  inside, ``completion_tokens_details.reasoning_tokens``), ``total_tokens``;
* Responses API usage: ``input_tokens`` / ``input_tokens_details.cached_tokens``,
  ``output_tokens`` / ``output_tokens_details.reasoning_tokens``, ``total_tokens``;
  when ``cache_read_input_tokens`` / ``cache_creation_input_tokens`` sit beside
  ``input_tokens`` it is Anthropic's usage object, whose ``input_tokens``
  *excludes* the cache: the cache tokens are added to input;
* Langfuse's own keys: ``input``, ``output``, ``total`` (embeddings send only
  ``input``). Langfuse's total is the sum of all keys, so detail keys
  (``input_cached_tokens``, ``cache_read_input_tokens``, ``output_reasoning``,
  ...) are outside ``input`` / ``output`` and are added to them.

Details may be nested objects or flattened dotted keys.
"""
from __future__ import annotations

import json

from collector.conventions.values import as_int, as_str

MODEL_CALL_TYPES = {"generation": "chat", "embedding": "embeddings"}

OWN_CACHE_READ = ("input_cached_tokens", "input_cache_read", "cache_read_input_tokens",
                  "input_cache_read_tokens")
OWN_CACHE_WRITE = ("input_cache_creation", "input_cache_write", "cache_creation_input_tokens",
                   "input_cache_creation_tokens")
OWN_REASONING = ("output_reasoning", "output_reasoning_tokens", "reasoning_tokens")


def is_model_call(observation_type) -> bool:
    """True when the type is absent or is generation / embedding."""
    return observation_type is None or (
        type(observation_type) is str and observation_type.lower() in MODEL_CALL_TYPES)


def operation(value):
    """Langfuse does not say chat or completion; ``generation`` is recorded as chat."""
    text = as_str(value)
    return MODEL_CALL_TYPES.get(text.lower()) if text else None


def is_error(level) -> bool:
    """``langfuse.observation.level = ERROR`` marks a failed call (DEBUG, DEFAULT, WARNING do not)."""
    return type(level) is str and level.upper() == "ERROR"


def usage(value):
    """Token columns from ``usage_details``: a dict with ``input_tokens`` ... and
    ``_total``, plus ``_notes`` when tokens had to be added; None if unreadable."""
    data = value
    if type(value) is str:
        try:
            data = json.loads(value)
        except ValueError:
            return None
    if type(data) is not dict:
        return None
    if "prompt_tokens" in data or "completion_tokens" in data:
        return _openai_usage(data, "prompt_tokens", "completion_tokens")
    if "input_tokens" in data or "output_tokens" in data:
        tokens = _openai_usage(data, "input_tokens", "output_tokens")
        return _add_excluded(tokens, _count(data, "cache_read_input_tokens"),
                             _count(data, "cache_creation_input_tokens"), None)
    if "input" in data or "output" in data or "total" in data:
        tokens = {"input_tokens": _count(data, "input"), "output_tokens": _count(data, "output"),
                  "_total": _count(data, "total")}
        return _add_excluded(tokens, _first_count(data, OWN_CACHE_READ),
                             _first_count(data, OWN_CACHE_WRITE), _first_count(data, OWN_REASONING))
    return None


def _openai_usage(data: dict, input_key: str, output_key: str) -> dict:
    details_in = input_key + "_details"
    details_out = output_key + "_details"
    return {
        "input_tokens": _count(data, input_key),
        "output_tokens": _count(data, output_key),
        "cache_read_tokens": _count(data, details_in, "cached_tokens"),
        "reasoning_tokens": _count(data, details_out, "reasoning_tokens"),
        "_total": _count(data, "total_tokens"),
    }


def _add_excluded(tokens: dict, cache_read, cache_write, reasoning) -> dict:
    """Fold detail counts that the shape keeps outside input/output back in."""
    notes = []
    if cache_read is not None or cache_write is not None:
        tokens["cache_read_tokens"] = cache_read if cache_read is not None else tokens.get(
            "cache_read_tokens")
        tokens["cache_write_tokens"] = cache_write
        extra = (cache_read or 0) + (cache_write or 0)
        if extra and tokens["input_tokens"] is not None:
            tokens["input_tokens"] += extra
            notes.append("cache_added_to_input")
    if reasoning is not None:
        tokens["reasoning_tokens"] = reasoning
        if reasoning and tokens["output_tokens"] is not None:
            tokens["output_tokens"] += reasoning
            notes.append("reasoning_added_to_output")
    if notes:
        tokens["_notes"] = notes
    return tokens


def _count(data: dict, key: str, sub_key: str | None = None):
    if sub_key is None:
        return as_int(data.get(key)) if key in data else None
    nested = data.get(key)
    if type(nested) is dict and sub_key in nested:
        return as_int(nested[sub_key])
    flat = key + "." + sub_key
    return as_int(data[flat]) if flat in data else None


def _first_count(data: dict, keys: tuple):
    for key in keys:
        count = _count(data, key)
        if count is not None:
            return count
    return None
