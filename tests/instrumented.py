"""Run a real LLM instrumentation around the real openai client and capture its spans as OTLP.

The collector's normalization has to read what instrumentations really emit,
not what we think they emit. These helpers instrument the ``openai`` package
with one instrumentation at a time (OpenLLMetry, OpenInference, or the official
OpenTelemetry ``openai-v2``), send a scenario to ``tests.fake_openai`` on
loopback, and turn the finished spans into the same ``ExportTraceServiceRequest``
an OTLP exporter would send. The instrumentation is removed afterwards so tests
do not leak it into each other.
"""
from __future__ import annotations

import base64
import importlib
import json
import sys
from dataclasses import dataclass, field
from typing import Any, Callable

import openai
import wrapt
from google.protobuf import json_format
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.fake_openai import FakeOpenAI, Usage

# name -> (module holding OpenAIInstrumentor, distribution name for versions)
INSTRUMENTATIONS = {
    "openllmetry": ("opentelemetry.instrumentation.openai", "opentelemetry-instrumentation-openai"),
    "openinference": ("openinference.instrumentation.openai", "openinference-instrumentation-openai"),
    "openai_v2": ("opentelemetry.instrumentation.openai_v2", "opentelemetry-instrumentation-openai-v2"),
}

RESOURCE_ATTRIBUTES = {
    "service.name": "invoice-assistant",
    "service.version": "1.4.0",
    "deployment.environment.name": "test",
}
# The application span every scenario runs under, so inference spans have a parent.
PARENT_SPAN_NAME = "answer_invoice_question"
PROMPT = [{"role": "user", "content": "What is the invoice total?"}]

Call = Callable[[openai.OpenAI], Any]


@dataclass(frozen=True)
class Scenario:
    """What the fake server is told to do, and the client call to make."""

    name: str
    usage: Usage
    call: Call
    # Statuses of the retryable errors answered before the real answer (429, 500, ...).
    failures: tuple[int, ...] = ()
    reject_400: bool = False
    # Instrumentations that wrap the API this scenario uses.
    supported_by: tuple[str, ...] = tuple(INSTRUMENTATIONS)


@dataclass
class Capture:
    """The outcome of one instrumented scenario."""

    request: ExportTraceServiceRequest
    spans: list[ReadableSpan]
    result: Any = None
    error: Exception | None = None
    server_requests: list[Any] = field(default_factory=list)

    def span_named(self, name: str) -> ReadableSpan:
        matches = [s for s in self.spans if s.name == name]
        assert len(matches) == 1, f"expected one span {name!r}, got {[s.name for s in self.spans]}"
        return matches[0]

    def inference_spans(self) -> list[ReadableSpan]:
        return [s for s in self.spans if s.name != PARENT_SPAN_NAME]


def _chat(model: str, **extra: Any) -> Call:
    return lambda client: client.chat.completions.create(model=model, messages=PROMPT, **extra)


def _stream_chat(client: openai.OpenAI) -> str:
    """Consume a streamed answer fully, as an application would; the span ends with the stream."""
    stream = client.chat.completions.create(
        model="gpt-4o", messages=PROMPT, stream=True, stream_options={"include_usage": True},
    )
    return "".join(c.choices[0].delta.content or "" for c in stream if c.choices)


def _embed(client: openai.OpenAI) -> Any:
    return client.embeddings.create(model="text-embedding-3-small", input=["invoice 1", "invoice 2"])


def _respond(client: openai.OpenAI) -> Any:
    return client.responses.create(model="gpt-4o", input="What is the invoice total?")


SCENARIOS = {s.name: s for s in [
    Scenario("chat", Usage(prompt_tokens=19, completion_tokens=7), _chat("gpt-4o")),
    Scenario("chat_cached_reasoning",
             Usage(prompt_tokens=2048, completion_tokens=300, cached_tokens=1536, reasoning_tokens=192),
             _chat("o4-mini", reasoning_effort="medium")),
    Scenario("chat_stream", Usage(prompt_tokens=23, completion_tokens=9, cached_tokens=0), _stream_chat),
    Scenario("embeddings", Usage(prompt_tokens=6, completion_tokens=0), _embed),
    Scenario("chat_bad_request", Usage(), _chat("gpt-4o", temperature=5.0), reject_400=True),
    Scenario("chat_retried_429", Usage(prompt_tokens=31, completion_tokens=11), _chat("gpt-4o"),
             failures=(429, 429)),
    Scenario("chat_retried_500", Usage(prompt_tokens=31, completion_tokens=11), _chat("gpt-4o"),
             failures=(500,)),
    # Three 429s with the client's default max_retries=2: every attempt fails.
    Scenario("chat_429_exhausted", Usage(), _chat("gpt-4o"), failures=(429, 429, 429)),
    Scenario("responses", Usage(prompt_tokens=1200, completion_tokens=80, cached_tokens=1024,
                                reasoning_tokens=0), _respond,
             supported_by=("openllmetry", "openinference")),
]}


def _instrumentor(instrumentation: str) -> Any:
    module_name, _ = INSTRUMENTATIONS[instrumentation]
    return importlib.import_module(module_name).OpenAIInstrumentor()


def capture(instrumentation: str, scenario: Scenario, server: FakeOpenAI, max_retries: int = 2) -> Capture:
    """Run ``scenario`` against ``server`` with ``instrumentation`` on; return the OTLP request it produced.

    The client error of a failing scenario is caught and returned in
    ``Capture.error`` (the instrumentation has already recorded it on the span).
    """
    server.usage = scenario.usage
    for status in scenario.failures:
        server.fail_next(1, status=status)
    if scenario.reject_400:
        server.reject_next()
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create(RESOURCE_ATTRIBUTES))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    instrumentor = _instrumentor(instrumentation)
    instrumentor.instrument(tracer_provider=provider)
    first_request = len(server.requests)
    result, error = None, None
    try:
        client = openai.OpenAI(base_url=server.base_url, api_key="sk-test-not-a-key", max_retries=max_retries)
        with provider.get_tracer("tests.instrumented").start_as_current_span(PARENT_SPAN_NAME):
            try:
                result = scenario.call(client)
            except openai.APIError as exc:
                error = exc
        client.close()
    finally:
        instrumentor.uninstrument()
        remove_leftover_wrappers()
        provider.shutdown()
    spans = list(exporter.get_finished_spans())
    return Capture(encode_spans(spans), spans, result, error, server.requests[first_request:])


def remove_leftover_wrappers() -> list[str]:
    """Undo every wrapt wrapper still installed on the openai package; return what was undone.

    OpenLLMetry 0.62.4 calls ``unwrap("openai.resources.chat.completions",
    "Completions.create")``, the old calling form; opentelemetry-instrumentation
    0.66b2 reads the first argument as ``module.Class``, finds nothing and does
    nothing, so its ``uninstrument()`` leaves every wrapper in place and the
    next test would run through stale instrumentation (we saw streamed content
    tripled). Removing what is left makes each capture independent.
    """
    removed = []
    for module_name, module in list(sys.modules.items()):
        if module is None or not module_name.startswith("openai."):
            continue
        for cls in [v for v in vars(module).values() if isinstance(v, type) and v.__module__ == module_name]:
            for attr, value in list(vars(cls).items()):
                if isinstance(value, wrapt.BaseObjectProxy):
                    while isinstance(value, wrapt.BaseObjectProxy):
                        value = value.__wrapped__
                    setattr(cls, attr, value)
                    removed.append(f"{module_name}.{cls.__name__}.{attr}")
    return removed


def capture_once(instrumentation: str, scenario_name: str) -> Capture:
    """Capture a scenario against a fresh fake server."""
    with FakeOpenAI() as server:
        return capture(instrumentation, SCENARIOS[scenario_name], server)


def to_otlp_json(request: ExportTraceServiceRequest) -> str:
    """OTLP/JSON text: protobuf's JSON mapping with hex ids and integer enums, as the OTLP spec requires.

    ``json_format`` writes bytes as base64, which is wrong for trace and span ids.
    """
    payload = json_format.MessageToDict(request, use_integers_for_enums=True)
    for resource_spans in payload.get("resourceSpans", []):
        for scope_spans in resource_spans.get("scopeSpans", []):
            for span in scope_spans.get("spans", []):
                _ids_to_hex(span)
                for link in span.get("links", []):
                    _ids_to_hex(link)
    return json.dumps(payload, indent=2) + "\n"


def from_otlp_json(text: str) -> ExportTraceServiceRequest:
    """Read OTLP/JSON written by ``to_otlp_json`` (hex ids) back into a protobuf request."""
    payload = json.loads(text)
    for resource_spans in payload.get("resourceSpans", []):
        for scope_spans in resource_spans.get("scopeSpans", []):
            for span in scope_spans.get("spans", []):
                _ids_to_base64(span)
                for link in span.get("links", []):
                    _ids_to_base64(link)
    return json_format.ParseDict(payload, ExportTraceServiceRequest(), ignore_unknown_fields=True)


_ID_KEYS = ("traceId", "spanId", "parentSpanId")


def _ids_to_hex(obj: dict[str, Any]) -> None:
    for key in _ID_KEYS:
        if obj.get(key):
            obj[key] = base64.b64decode(obj[key]).hex()


def _ids_to_base64(obj: dict[str, Any]) -> None:
    for key in _ID_KEYS:
        if obj.get(key):
            obj[key] = base64.b64encode(bytes.fromhex(obj[key])).decode()
