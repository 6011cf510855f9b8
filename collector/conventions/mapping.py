"""The one precedence table: record column <- attribute keys, first usable wins.

Overall order (conventions.md section 5): inferledger > OTel GenAI current >
OTel deprecated > OpenLLMetry > OpenInference > Langfuse, except where a column
says otherwise (the provider's own service tier beats ``inferledger.pricing.tier``).
Each row is (key, reader, convention); a reader returns the column value or
None when the value is unusable, and the next row is tried. The convention of
the row that supplied the tokens (else the model) becomes the record's
``convention``. ``collector/README.md`` renders this table for users.

Columns starting with ``_`` are intermediate values that normalize consumes.
"""
from __future__ import annotations

from collector import attributes as a
from collector.conventions import genai, inferledger, langfuse, openinference, openllmetry
from collector.conventions.providers import normalize_provider
from collector.conventions.values import as_bool, as_float, as_int, as_str, as_str_list

OTEL = "otel_genai"
OLM = "openllmetry"
OI = "openinference"
LF = "langfuse"
IL = "inferledger"


def provider(value):
    text = as_str(value)
    return normalize_provider(text) if text else None


def _rows(convention, reader, *keys):
    return [(key, reader, convention) for key in keys]


_TOKENS = as_int

PRECEDENCE: dict[str, list] = {
    "operation": [
        *_rows(IL, inferledger.review_operation, *a.IL_REVIEW_KEYS),
        *_rows(OTEL, genai.operation, a.GENAI_OPERATION),
        *_rows(OLM, openllmetry.operation, a.OLM_REQUEST_TYPE),
        *_rows(OI, openinference.operation, a.OI_SPAN_KIND),
        *_rows(LF, langfuse.operation, a.LF_TYPE),
    ],
    "provider": [
        *_rows(OTEL, provider, *a.GENAI_PROVIDER),
        *_rows(OI, provider, *a.OI_PROVIDER),
    ],
    "request_model": [
        *_rows(IL, as_str, a.IL_MODEL_NAME),
        *_rows(OTEL, as_str, a.GENAI_REQUEST_MODEL),
        *_rows(OI, as_str, *a.OI_REQUEST_MODEL),
        *_rows(OI, openinference.invocation_model, *a.OI_INVOCATION_PARAMETERS),
        *_rows(OI, as_str, *a.OI_MODEL),
        *_rows(LF, as_str, a.LF_MODEL),
    ],
    "response_model": [
        *_rows(IL, as_str, a.IL_MODEL_NAME),
        *_rows(OTEL, as_str, a.GENAI_RESPONSE_MODEL),
        *_rows(OI, as_str, *a.OI_RESPONSE_MODEL, *a.OI_MODEL),
        *_rows(LF, as_str, a.LF_MODEL),
    ],
    "model_version": _rows(IL, as_str, a.IL_MODEL_VERSION),
    "input_tokens": [*_rows(OTEL, _TOKENS, *a.GENAI_INPUT), *_rows(OI, _TOKENS, *a.OI_INPUT)],
    "output_tokens": [*_rows(OTEL, _TOKENS, *a.GENAI_OUTPUT), *_rows(OI, _TOKENS, *a.OI_OUTPUT)],
    "cache_read_tokens": [
        *_rows(OTEL, _TOKENS, a.GENAI_CACHE_READ[0]),
        *_rows(OLM, _TOKENS, a.GENAI_CACHE_READ[1]),
        *_rows(OI, _TOKENS, *a.OI_CACHE_READ),
    ],
    "cache_write_tokens": [
        *_rows(OTEL, _TOKENS, a.GENAI_CACHE_WRITE[0]),
        *_rows(OLM, _TOKENS, a.GENAI_CACHE_WRITE[1]),
        *_rows(OI, _TOKENS, *a.OI_CACHE_WRITE),
    ],
    "reasoning_tokens": [
        *_rows(OTEL, _TOKENS, a.GENAI_REASONING[0]),
        *_rows(OLM, _TOKENS, a.GENAI_REASONING[1], a.OLM_REASONING),
        *_rows(OI, _TOKENS, *a.OI_REASONING),
    ],
    "_total": [*_rows(OLM, _TOKENS, a.GENAI_TOTAL, a.OLM_TOTAL), *_rows(OI, _TOKENS, a.OI_TOTAL)],
    "_usage": _rows(LF, langfuse.usage, a.LF_USAGE),
    "error_type": _rows(OTEL, as_str, a.ERROR_TYPE),
    "_lf_error": _rows(LF, langfuse.is_error, a.LF_LEVEL),
    "finish_reasons": [
        *_rows(OTEL, as_str_list, a.GENAI_FINISH[0]),
        *_rows(OLM, as_str_list, *a.GENAI_FINISH[1:], *a.OLM_FINISH),
        *_rows(OI, as_str_list, a.OI_FINISH),
    ],
    "conversation_id": [
        *_rows(OTEL, as_str, a.GENAI_CONVERSATION, a.SESSION_ID),
        *_rows(OLM, as_str, *a.OLM_SESSION),
        *_rows(LF, as_str, a.LF_SESSION),
    ],
    "user_id": [
        *_rows(OTEL, inferledger.identifier, *a.USER_IDS),
        *_rows(OLM, inferledger.identifier, a.OLM_ASSOCIATED_USER, a.GENAI_USER, a.OLM_USER),
        *_rows(LF, inferledger.identifier, a.LF_USER),
    ],
    "subject_id": _rows(IL, inferledger.identifier, a.IL_SUBJECT_ID),
    "reviewer_id": _rows(IL, inferledger.identifier, a.IL_REVIEWER_ID),
    "review_outcome": _rows(IL, as_str, a.IL_REVIEW_OUTCOME),
    "review_override": _rows(IL, as_bool, a.IL_REVIEW_OVERRIDE),
    "review_duration_s": _rows(IL, as_float, a.IL_REVIEW_DURATION),
    "decision_label": _rows(IL, as_str, a.IL_DECISION_LABEL),
    "decision_score": _rows(IL, as_float, a.IL_DECISION_SCORE),
    "decision_reasons": _rows(IL, as_str_list, a.IL_DECISION_REASONS),
    "request_key": _rows(IL, as_str, a.IL_REQUEST_KEY),
    "attempt": [*_rows(IL, inferledger.attempt, a.IL_ATTEMPT),
                *_rows(OTEL, inferledger.attempt, a.RESEND_COUNT)],
    "pricing_tier": [
        *_rows(OTEL, genai.service_tier, *a.SERVICE_TIER_RESPONSE),
        *_rows(IL, as_str, a.IL_PRICING_TIER),
        *_rows(OTEL, genai.requested_service_tier, *a.SERVICE_TIER_REQUEST),
    ],
    "cache_hit": _rows(IL, as_bool, a.IL_CACHE_HIT),
    "tenant": _rows(IL, as_str, a.IL_TENANT),
    "feature": _rows(IL, as_str, a.IL_FEATURE),
    "budget_id": _rows(IL, as_str, a.IL_BUDGET),
    "compute_pool": _rows(IL, as_str, a.IL_COMPUTE_POOL),
    "reported_cost_usd": [
        *_rows(OTEL, as_float, *a.GENAI_COST),
        *_rows(OI, as_float, a.OI_COST),
        *_rows(OTEL, as_float, a.OTHER_COST),
    ],
    "_cost_currency": _rows(OTEL, as_str, a.GENAI_COST_CURRENCY),
    "_lf_environment": _rows(LF, as_str, a.LF_ENVIRONMENT),
    "_lf_release": _rows(LF, as_str, a.LF_RELEASE),
}

# Columns whose source decides the record's convention, in order of authority.
CONVENTION_COLUMNS = ("input_tokens", "output_tokens", "response_model", "request_model",
                      "operation", "provider")
TOKEN_COLUMNS = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens",
                 "reasoning_tokens")

# Keys that do not by themselves make a span an inference record.
NOT_MARKING = frozenset((
    a.IL_TENANT, a.IL_FEATURE, a.IL_BUDGET, a.IL_COMPUTE_POOL, a.IL_PRICING_TIER,
    a.ERROR_TYPE, a.SESSION_ID, a.GENAI_CONVERSATION, *a.USER_IDS, a.GENAI_USER, a.OLM_USER,
    *a.OLM_SESSION, a.OLM_ASSOCIATED_USER, a.LF_USER, a.LF_SESSION, a.LF_LEVEL,
    a.LF_ENVIRONMENT, a.LF_RELEASE, *a.GENAI_FINISH, *a.OLM_FINISH, a.GENAI_COST_CURRENCY,
    a.OTHER_COST, *a.SERVICE_TIER_RESPONSE, *a.SERVICE_TIER_REQUEST, a.RESEND_COUNT,
))
# Mapped keys that stay in the attributes JSON too (request parameters beside the model).
ALSO_KEPT = frozenset(a.OI_INVOCATION_PARAMETERS)


# Readers whose input usually already has the column's type: normalize skips the call then.
_FAST_TYPES = {as_int: int, as_str: str}


def _build():
    """key -> ((column, reader, fast type, (rank, convention)), ...) and key -> table bits."""
    specs: dict[str, list] = {}
    bits: dict[str, int] = {}
    for column, rows in PRECEDENCE.items():
        for rank, (key, reader, convention) in enumerate(rows):
            specs.setdefault(key, []).append(
                (column, reader, _FAST_TYPES.get(reader), (rank, convention)))
            if key in NOT_MARKING:
                mark = 0
            else:
                mark = {OI: a.MARK_OI, LF: a.MARK_LF}.get(convention, a.MARK)
            if convention == OLM or key in openllmetry.MARKERS:
                mark |= a.OLM_MARKER
            bits[key] = bits.get(key, 0) | mark | (a.KEEP if key in ALSO_KEPT else 0)
    for key in openllmetry.MARKERS:
        bits.setdefault(key, a.OLM_MARKER | a.KEEP)
    for key in a.PERSONAL:
        bits.setdefault(key, a.PERSONAL_ONLY)
    return {key: tuple(value) for key, value in specs.items()}, bits


SPECS, KEY_BITS = _build()
PRIVATE_COLUMNS = tuple(column for column in PRECEDENCE if column.startswith("_"))
