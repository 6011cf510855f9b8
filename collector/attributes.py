"""Attribute names the collector reads, and one fast pass that reads them.

Names are grouped by convention, each tuple in precedence order (first usable
value wins), as listed in ``collector/README.md``. Sources: OTel GenAI semantic
conventions (semconv 0.66b2 and the genai repository), OpenLLMetry
``opentelemetry-semantic-conventions-ai`` 0.5.1, OpenInference semantic
conventions 0.1.42, Langfuse SDK 5 payloads, and ``inferledger.*``
(ARCHITECTURE.md).

Reading protobuf attributes is most of the cost of normalization (each field
access on a upb message allocates a Python object), so :func:`read_attributes`
touches each attribute once, skips the values of content attributes that will
be dropped anyway, and sorts the rest into "known" (mapped to record columns)
and "extra" (kept as JSON).
"""
from __future__ import annotations

import base64
import json
import math

# --- bits of the key table (built in collector/conventions/mapping.py) -----------
MARK = 1            # the key makes a span an inference record
MARK_OI = 2         # an OpenInference key: marks unless the span kind is not a model call
MARK_LF = 4         # a Langfuse key: marks unless the observation type is not a model call
KEEP = 8            # mapped to a column but also kept in the attributes JSON
PERSONAL_ONLY = 16  # a personal attribute with no column: stored hashed in the JSON
OLM_MARKER = 32     # a name only OpenLLMetry emits

# --- inferledger.* -------------------------------------------------------------
IL_MODEL_NAME = "inferledger.model.name"
IL_MODEL_VERSION = "inferledger.model.version"
IL_DECISION_LABEL = "inferledger.decision.label"
IL_DECISION_SCORE = "inferledger.decision.score"
IL_DECISION_REASONS = "inferledger.decision.reasons"
IL_SUBJECT_ID = "inferledger.subject.id"
IL_REQUEST_KEY = "inferledger.request.key"
IL_ATTEMPT = "inferledger.attempt"
IL_PRICING_TIER = "inferledger.pricing.tier"
IL_CACHE_HIT = "inferledger.cache.hit"
IL_REVIEW_OUTCOME = "inferledger.review.outcome"
IL_REVIEW_OVERRIDE = "inferledger.review.override"
IL_REVIEWER_ID = "inferledger.review.reviewer.id"
IL_REVIEW_DURATION = "inferledger.review.duration_s"
IL_REVIEW_KEYS = (IL_REVIEW_OUTCOME, IL_REVIEW_OVERRIDE, IL_REVIEWER_ID, IL_REVIEW_DURATION)
IL_TENANT = "inferledger.tenant.id"
IL_FEATURE = "inferledger.feature.name"
IL_BUDGET = "inferledger.budget.id"
IL_COMPUTE_POOL = "inferledger.compute.pool"
IL_LINK_TYPE = "inferledger.link.type"          # on span links: retry_of | review_of
LINK_RETRY_OF = "retry_of"
LINK_REVIEW_OF = "review_of"

# --- OTel GenAI (current, then deprecated), OpenLLMetry gen_ai.* names -----------
GENAI_OPERATION = "gen_ai.operation.name"
GENAI_PROVIDER = ("gen_ai.provider.name", "gen_ai.system")
GENAI_REQUEST_MODEL = "gen_ai.request.model"
GENAI_RESPONSE_MODEL = "gen_ai.response.model"
GENAI_INPUT = ("gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens")
GENAI_OUTPUT = ("gen_ai.usage.output_tokens", "gen_ai.usage.completion_tokens")
GENAI_CACHE_READ = ("gen_ai.usage.cache_read.input_tokens", "gen_ai.usage.cache_read_input_tokens")
GENAI_CACHE_WRITE = ("gen_ai.usage.cache_creation.input_tokens",
                     "gen_ai.usage.cache_creation_input_tokens")
GENAI_REASONING = ("gen_ai.usage.reasoning.output_tokens", "gen_ai.usage.reasoning_tokens")
GENAI_TOTAL = "gen_ai.usage.total_tokens"                       # OpenLLMetry
GENAI_FINISH = ("gen_ai.response.finish_reasons", "gen_ai.response.finish_reason",
                "gen_ai.response.stop_reason")
GENAI_CONVERSATION = "gen_ai.conversation.id"
GENAI_USER = "gen_ai.user"                                      # OpenLLMetry
GENAI_COST = ("gen_ai.usage.cost", "gen_ai.usage.cost.amount")  # proposal, genai PR #443
GENAI_COST_CURRENCY = "gen_ai.usage.cost.currency"
SERVICE_TIER_RESPONSE = ("openai.response.service_tier", "gen_ai.openai.response.service_tier")
SERVICE_TIER_REQUEST = ("openai.request.service_tier", "gen_ai.openai.request.service_tier")
# OpenLLMetry-only gen_ai.* names: their presence means the emitter is OpenLLMetry.
OPENLLMETRY_GENAI_MARKERS = frozenset((
    "gen_ai.is_streaming", GENAI_TOTAL, "gen_ai.usage.reasoning_tokens",
    "gen_ai.usage.cache_read_input_tokens", "gen_ai.usage.cache_creation_input_tokens",
    GENAI_USER, "gen_ai.openai.api_base", "gen_ai.openai.api_version", "gen_ai.openai.api_type",
    "gen_ai.response.finish_reason", "gen_ai.response.stop_reason", "gen_ai.request.n",
    "gen_ai.request.reasoning_effort", "gen_ai.openai.system_fingerprint",
))

# --- OpenLLMetry legacy llm.* -------------------------------------------------
OLM_REQUEST_TYPE = "llm.request.type"
OLM_TOTAL = "llm.usage.total_tokens"
OLM_REASONING = "llm.usage.reasoning_tokens"
OLM_USER = "llm.user"
OLM_FINISH = ("llm.response.finish_reason", "llm.response.stop_reason")
OLM_SESSION = ("traceloop.association.properties.session_id",
               "traceloop.association.properties.chat_id")
OLM_ASSOCIATED_USER = "traceloop.association.properties.user_id"

# --- OpenInference ---------------------------------------------------------------
OI_SPAN_KIND = "openinference.span.kind"
OI_PROVIDER = ("llm.provider", "llm.system", "decision.provider", "decision.system")
OI_REQUEST_MODEL = ("llm.request.model_name", "decision.request.model_name")
OI_RESPONSE_MODEL = ("llm.response.model_name", "decision.response.model_name")
OI_MODEL = ("llm.model_name", "embedding.model_name", "reranker.model_name", "decision.model_name")
OI_INVOCATION_PARAMETERS = ("llm.invocation_parameters", "embedding.invocation_parameters")
OI_INPUT = ("llm.token_count.prompt", "decision.token_count.input")
OI_OUTPUT = ("llm.token_count.completion", "decision.token_count.output")
OI_CACHE_READ = ("llm.token_count.prompt_details.cache_read",
                 "llm.token_count.prompt_details.cache_input")
OI_CACHE_WRITE = ("llm.token_count.prompt_details.cache_write",)
OI_REASONING = ("llm.token_count.completion_details.reasoning",)
OI_TOTAL = "llm.token_count.total"
OI_FINISH = "llm.finish_reason"
OI_COST = "llm.cost.total"

# --- Langfuse --------------------------------------------------------------------
LF_TYPE = "langfuse.observation.type"
LF_MODEL = "langfuse.observation.model.name"
LF_USAGE = "langfuse.observation.usage_details"
LF_LEVEL = "langfuse.observation.level"
LF_ENVIRONMENT = "langfuse.environment"
LF_RELEASE = "langfuse.release"
LF_USER = "langfuse.user.id"
LF_SESSION = "langfuse.session.id"

# --- shared OTel names -------------------------------------------------------------
ERROR_TYPE = "error.type"
USER_IDS = ("user.id", "enduser.id", "enduser.pseudo.id")
SESSION_ID = "session.id"
OTHER_COST = "operation.cost"                   # Logfire / genai-prices
RESEND_COUNT = "http.request.resend_count"
HTTP_METHOD = ("http.request.method", "http.method")
HTTP_STATUS = ("http.response.status_code", "http.status_code")
SERVER_ADDRESS = ("server.address", "net.peer.name")
EXCEPTION_TYPE = "exception.type"
SERVICE_NAME = "service.name"
SERVICE_VERSION = "service.version"
ENVIRONMENT = ("deployment.environment.name", "deployment.environment")
SPAN_KIND_CLIENT = 3
STATUS_CODE_ERROR = 2

# People: these values are pseudonymized wherever they would be stored.
PERSONAL = frozenset((*USER_IDS, GENAI_USER, OLM_USER, OLM_ASSOCIATED_USER, LF_USER,
                      IL_SUBJECT_ID, IL_REVIEWER_ID, "user.email", "user.name", "user.full_name"))


# Message content: dropped unless content capture is on. Exact keys and prefixes.
CONTENT_KEYS = frozenset((
    "gen_ai.input.messages", "gen_ai.output.messages", "gen_ai.system_instructions",
    "gen_ai.tool.definitions", "gen_ai.tool.call.arguments", "gen_ai.tool.call.result",
    "gen_ai.prompt", "gen_ai.completion", "gen_ai.retrieval.query.text", "gen_ai.retrieval.documents",
    "gen_ai.content.completion.chunk", "llm.content.completion.chunk",
    "input.value", "output.value", "input.mime_type", "output.mime_type",
    "llm.prompt_template.template", "llm.prompt_template.variables", "reranker.query",
    "langfuse.observation.input", "langfuse.observation.output",
    "langfuse.trace.input", "langfuse.trace.output",
    "traceloop.entity.input", "traceloop.entity.output",
    "traceloop.prompt.template", "traceloop.prompt.template_variables",
    "gen_ai.headers", "llm.headers",  # OpenLLMetry's request headers may carry credentials
))
CONTENT_PREFIXES = (
    "gen_ai.prompt.", "gen_ai.completion.", "llm.prompts.", "llm.choices.",
    "llm.input_messages.", "llm.output_messages.", "llm.tools.", "llm.request.functions.",
    "embedding.embeddings.", "retrieval.documents.", "reranker.input_documents.",
    "reranker.output_documents.",
)
# OpenLLMetry puts finish reasons beside the (content) completions.
COMPLETION_PREFIX = "gen_ai.completion."
FINISH_SUFFIX = ".finish_reason"


class SpanAttributes:
    """One span's attributes, sorted by :func:`read_attributes`.

    ``known``: mapped keys -> value; ``extra``: everything else that is kept;
    ``bits_seen``: OR of the table bits of the known keys; ``completion_finish``:
    finish reasons found on (possibly dropped) OpenLLMetry completion attributes.
    """

    __slots__ = ("known", "extra", "bits_seen", "completion_finish")

    def __init__(self, known: dict, extra: dict, bits_seen: int, completion_finish: list | None):
        self.known = known
        self.extra = extra
        self.bits_seen = bits_seen
        self.completion_finish = completion_finish


def read_attributes(key_values, key_table: dict, capture_content: bool,
                    max_value_bytes: int) -> SpanAttributes:
    """Read repeated ``KeyValue`` once into Python values (see the module docstring).

    ``key_table`` maps each mapped key to its bits. Strings longer than
    ``max_value_bytes`` (UTF-8) are truncated.
    """
    known: dict = {}
    extra: dict = {}
    bits_seen = 0
    finish = None
    short = max_value_bytes // 4  # a string of at most this many characters fits in any case
    table_get = key_table.get
    for kv in key_values:
        key = kv.key
        bits = table_get(key)
        if bits is None:
            if key in CONTENT_KEYS or key.startswith(CONTENT_PREFIXES):
                if key.startswith(COMPLETION_PREFIX) and key.endswith(FINISH_SUFFIX):
                    finish = finish or []
                    finish.append(kv.value.string_value)
                if not capture_content:
                    continue
            target = extra
        else:
            bits_seen |= bits
            target = known
        value = kv.value
        text = value.string_value  # cheaper than WhichOneof, and most values are strings
        if text:
            target[key] = text if len(text) <= short else truncate(text, max_value_bytes)
        else:
            kind = value.WhichOneof("value")
            target[key] = value.int_value if kind == "int_value" else _other_value(
                value, kind, max_value_bytes)
    if bits_seen & KEEP:
        for key in known:
            if table_get(key) & KEEP:
                extra[key] = known[key]
    return SpanAttributes(known, extra, bits_seen, finish)


def read_plain(key_values, max_value_bytes: int = 1 << 30) -> dict:
    """All attributes as a dict (resource, links, events: small and rare)."""
    return {kv.key: any_value(kv.value, max_value_bytes) for kv in key_values}


def any_value(value, max_value_bytes: int):
    """An ``AnyValue`` as a JSON-ready Python value: str, bool, int, float, list, dict or None.

    Bytes become base64 text and non-finite doubles their name ("nan"), as JSON has neither.
    """
    kind = value.WhichOneof("value")
    if kind == "string_value":
        text = value.string_value
        return text if len(text) <= max_value_bytes // 4 else truncate(text, max_value_bytes)
    if kind == "int_value":
        return value.int_value
    return _other_value(value, kind, max_value_bytes)


def _other_value(value, kind, max_value_bytes: int):
    if kind == "string_value":
        return ""
    if kind == "double_value":
        number = value.double_value
        return number if math.isfinite(number) else str(number)  # JSON has no NaN/Infinity
    if kind == "bool_value":
        return value.bool_value
    if kind == "array_value":
        return [any_value(item, max_value_bytes) for item in value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: any_value(kv.value, max_value_bytes) for kv in value.kvlist_value.values}
    if kind == "bytes_value":
        return base64.b64encode(value.bytes_value).decode("ascii")
    return None  # empty AnyValue, or the profiles-only string_value_strindex


def truncate(text: str, max_bytes: int) -> str:
    """Cut ``text`` to ``max_bytes`` UTF-8 bytes and say how much was cut."""
    data = text.encode("utf-8", "surrogatepass")
    if len(data) <= max_bytes:
        return text
    head = data[:max_bytes].decode("utf-8", "ignore")
    return f"{head}...[truncated {len(data) - max_bytes} bytes]"


def _compact_json_encoder():
    """A reusable C encoder: ``json.dumps`` builds a new one per call (a third of its cost)."""
    make_encoder = getattr(json.encoder, "c_make_encoder", None)
    if make_encoder is None:
        return json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, default=str).encode
    encode = make_encoder(None, str, json.encoder.encode_basestring, None, ":", ",", False, False, True)
    return lambda value: "".join(encode(value, 0))


to_json = _compact_json_encoder()
to_json.__doc__ = "Compact JSON (no spaces, UTF-8 kept) of attribute values read by this module."
