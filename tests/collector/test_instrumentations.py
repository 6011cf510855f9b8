"""Normalization of spans emitted by REAL OpenAI instrumentations.

Each test runs an instrumentation (OpenLLMetry, OpenInference, OpenTelemetry
openai-v2) around the real ``openai`` client against ``tests.fake_openai`` on
loopback, encodes the finished spans as the OTLP request an exporter would send,
and checks what ``collector.normalize.normalize_request`` makes of it.

Expected values are worked out by hand from what the fake server answered (see
``SCENARIOS`` in ``tests/instrumented.py``) and the token rule of
``warehouse/record.py``: ``input_tokens`` includes cache reads, ``output_tokens``
includes reasoning. Where an instrumentation does not report something the
server sent, the expectation says so with a comment: the test checks the real
payload and never papers over what an instrumentation leaves out.
"""
from __future__ import annotations

import importlib
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import openai
import pytest

from collector.normalize import NormalizeSettings, normalize_request
from tests.fake_openai import ANSWER, FakeOpenAI, Usage
from tests.instrumented import (
    INSTRUMENTATIONS, PARENT_SPAN_NAME, PROMPT, RESOURCE_ATTRIBUTES, SCENARIOS, Capture, capture, from_otlp_json,
)

PAYLOADS = Path(__file__).resolve().parents[1] / "data" / "payloads"
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
INGEST_TIME = datetime(2026, 5, 4, 9, 30, tzinfo=timezone.utc)
SETTINGS = NormalizeSettings(subject_key=b"k" * 32)
GPT_4O_SERVED = "gpt-4o-2024-08-06"

# What a perfect instrumentation would report, from the fake server's answers.
# cache_write_tokens is always None: OpenAI has no prompt-cache writes.
_OK = dict(provider="openai", status="ok", error_type=None, attempt=0, cache_write_tokens=None)
_CHAT = dict(_OK, operation="chat", request_model="gpt-4o", response_model=GPT_4O_SERVED,
             finish_reasons=["stop"], pricing_tier="standard")  # OpenAI's service_tier "default" = standard
_FAILED = dict(_OK, operation="chat", request_model="gpt-4o", response_model="gpt-4o",  # falls back to requested
               status="error", input_tokens=None, output_tokens=None, cache_read_tokens=None,
               reasoning_tokens=None, finish_reasons=None, pricing_tier=None)
TRUTH = {
    "chat": dict(_CHAT, input_tokens=19, output_tokens=7, cache_read_tokens=0, reasoning_tokens=0),
    "chat_cached_reasoning": dict(_CHAT, request_model="o4-mini", response_model="o4-mini-2025-04-16",
                                  input_tokens=2048, output_tokens=300,  # cache 1536 inside, reasoning 192 inside
                                  cache_read_tokens=1536, reasoning_tokens=192),
    "chat_stream": dict(_CHAT, input_tokens=23, output_tokens=9, cache_read_tokens=0, reasoning_tokens=0),
    "embeddings": dict(_OK, operation="embeddings", request_model="text-embedding-3-small",
                       response_model="text-embedding-3-small", input_tokens=6, output_tokens=None,
                       cache_read_tokens=None, reasoning_tokens=None, finish_reasons=None, pricing_tier=None),
    "chat_bad_request": dict(_FAILED, error_type="BadRequestError"),
    # Two 429s then 200 inside one client call: only the final answer's tokens are on the span.
    "chat_retried_429": dict(_CHAT, input_tokens=31, output_tokens=11, cache_read_tokens=0, reasoning_tokens=0),
    "chat_retried_500": dict(_CHAT, input_tokens=31, output_tokens=11, cache_read_tokens=0, reasoning_tokens=0),
    "chat_429_exhausted": dict(_FAILED, error_type="RateLimitError"),
    "responses": dict(_CHAT, input_tokens=1200, output_tokens=80, cache_read_tokens=1024, reasoning_tokens=0),
}

# What each instrumentation really reports differently (see tests/data/payloads/README.md).
DEVIATIONS = {
    "openllmetry": {
        # Streams: no gen_ai.usage.reasoning_tokens and no openai.response.service_tier on the span.
        "chat_stream": dict(reasoning_tokens=None, pricing_tier=None),
        # gen_ai.usage.cache_read.input_tokens=0 is emitted even on embeddings.
        "embeddings": dict(cache_read_tokens=0),
    },
    "openinference": {
        # No service tier anywhere; errors only as an `exception` event, whose exception.type
        # is module-qualified; the Responses API span carries no llm.finish_reason.
        **{name: dict(pricing_tier=None) for name in TRUTH},
        "chat_bad_request": dict(pricing_tier=None, error_type="openai.BadRequestError"),
        "chat_429_exhausted": dict(pricing_tier=None, error_type="openai.RateLimitError"),
        "responses": dict(pricing_tier=None, finish_reasons=None),
    },
    "openai_v2": {
        # Only gen_ai.usage.input_tokens/output_tokens: the cached and reasoning details are dropped.
        **{name: dict(cache_read_tokens=None, reasoning_tokens=None) for name in TRUTH},
        "chat_stream": dict(cache_read_tokens=None, reasoning_tokens=None, finish_reasons=None),
        # error.type is str() of the exception class (upstream bug); normalization unwraps "<class ...>".
        "chat_bad_request": dict(cache_read_tokens=None, reasoning_tokens=None,
                                 error_type="openai.BadRequestError"),
        "chat_429_exhausted": dict(cache_read_tokens=None, reasoning_tokens=None,
                                   error_type="openai.RateLimitError"),
    },
}
CONVENTIONS = {
    # OpenLLMetry 0.62 emits OTel names plus its own (gen_ai.usage.reasoning_tokens, total_tokens).
    "openllmetry": {"openllmetry", "otel_genai"},
    "openinference": {"openinference"},
    "openai_v2": {"otel_genai"},
}


def expected(instrumentation: str, scenario: str) -> dict:
    return {**TRUTH[scenario], **DEVIATIONS[instrumentation].get(scenario, {})}


def _installed(name: str) -> bool:
    try:
        importlib.import_module(INSTRUMENTATIONS[name][0])
        return True
    except ImportError:  # openai-v2 2.4b0 breaks with opentelemetry-util-genai >= 1.2
        return False


CASES = [
    pytest.param(inst, scenario.name, id=f"{inst}-{scenario.name}",
                 marks=[] if _installed(inst) else [pytest.mark.skip(reason=f"{inst} not importable")])
    for inst in INSTRUMENTATIONS for scenario in SCENARIOS.values() if inst in scenario.supported_by
]


@pytest.fixture(scope="module")
def server():
    with FakeOpenAI() as fake:
        yield fake


def only_inference(request_capture: Capture):
    """Normalize a capture; the application parent span must not become a record."""
    batch = normalize_request(request_capture.request, SETTINGS, INGEST_TIME)
    rows = batch.inferences.to_pylist()
    assert len(rows) == 1, rows
    return batch, rows[0]


@pytest.mark.parametrize("instrumentation, scenario", CASES)
def test_tokens_models_and_status(server, instrumentation, scenario):
    result = capture(instrumentation, SCENARIOS[scenario], server)
    _, row = only_inference(result)
    want = expected(instrumentation, scenario)
    assert {key: row[key] for key in want} == want
    assert row["convention"] in CONVENTIONS[instrumentation]
    if want["status"] == "ok":
        assert row["model_version"] == want["response_model"]


@pytest.mark.parametrize("instrumentation, scenario", CASES)
def test_identity_time_and_resource(server, instrumentation, scenario):
    result = capture(instrumentation, SCENARIOS[scenario], server)
    _, row = only_inference(result)
    [span] = result.inference_spans()
    parent = result.span_named(PARENT_SPAN_NAME)
    assert row["trace_id"] == f"{span.context.trace_id:032x}"
    assert row["span_id"] == f"{span.context.span_id:016x}"
    assert row["parent_span_id"] == f"{parent.context.span_id:016x}"
    assert row["span_name"] == span.name
    assert row["start_time"] == _utc(span.start_time)
    assert row["end_time"] == _utc(span.end_time)
    assert row["duration_ms"] == pytest.approx((span.end_time - span.start_time) / 1e6, abs=0.002)
    assert row["service_name"] == RESOURCE_ATTRIBUTES["service.name"]
    assert row["service_version"] == RESOURCE_ATTRIBUTES["service.version"]
    assert row["environment"] == RESOURCE_ATTRIBUTES["deployment.environment.name"]
    assert row["ingest_time"] == INGEST_TIME


@pytest.mark.parametrize("instrumentation, scenario", CASES)
def test_content_is_not_kept_by_default(server, instrumentation, scenario):
    """Prompts and answers ride on the spans (OpenLLMetry and OpenInference capture them by default)."""
    result = capture(instrumentation, SCENARIOS[scenario], server)
    _, row = only_inference(result)
    assert PROMPT[0]["content"] not in (row["attributes"] or "")
    assert ANSWER not in (row["attributes"] or "")


@pytest.mark.parametrize("instrumentation", [name for name in INSTRUMENTATIONS if _installed(name)])
def test_client_retries_are_invisible_to_instrumentations(server, instrumentation):
    """openai retried two 429s inside one call: one span, final tokens, no HTTP attempt spans.

    None of the three instrumentations emits HTTP client spans or
    ``http.request.resend_count``, so the collector cannot see these retries;
    the only trace of them is the span's duration (two waits of 10 ms).
    """
    result = capture(instrumentation, SCENARIOS["chat_retried_429"], server)
    batch, row = only_inference(result)
    assert [r.headers["x-stainless-retry-count"] for r in result.server_requests] == ["0", "1", "2"]
    assert batch.http_attempts.num_rows == 0
    assert row["attempt"] == 0
    assert row["duration_ms"] >= 20


def saved_payloads() -> list:
    params = []
    for path in sorted(PAYLOADS.glob("*.json")):
        inst = next(name for name in INSTRUMENTATIONS if path.stem.startswith(name + "_"))
        params.append(pytest.param(path, inst, path.stem[len(inst) + 1:], id=path.stem))
    return params


@pytest.mark.parametrize("path, instrumentation, scenario", saved_payloads())
def test_saved_payloads_normalize_like_fresh_captures(path, instrumentation, scenario):
    """The committed OTLP/JSON files are real captures that other tests reuse: they must still read the same."""
    request = from_otlp_json(path.read_text())
    batch = normalize_request(request, SETTINGS, INGEST_TIME)
    [row] = batch.inferences.to_pylist()
    want = expected(instrumentation, scenario)
    assert {key: row[key] for key in want} == want
    assert all(len(bytes.fromhex(s["spanId"])) == 8 for s in _spans(json.loads(path.read_text())))


def test_fake_server_answers_like_openai(server):
    """The fixture itself: dated served model, cache and reasoning details, usage on the last stream chunk."""
    server.usage = Usage(prompt_tokens=100, completion_tokens=40, cached_tokens=64, reasoning_tokens=16)
    with openai.OpenAI(base_url=server.base_url, api_key="sk-test", max_retries=0) as client:
        answer = client.chat.completions.create(model="gpt-4o", messages=PROMPT)
        chunks = list(client.chat.completions.create(model="gpt-4o", messages=PROMPT, stream=True,
                                                     stream_options={"include_usage": True}))
        embedded = client.embeddings.create(model="text-embedding-3-small", input="x")
    assert answer.model == GPT_4O_SERVED and answer.service_tier == "default"
    assert answer.usage.total_tokens == 140
    assert answer.usage.prompt_tokens_details.cached_tokens == 64
    assert answer.usage.completion_tokens_details.reasoning_tokens == 16
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == ANSWER
    assert chunks[-1].choices == [] and chunks[-1].usage.prompt_tokens == 100
    assert len(embedded.data[0].embedding) == 8


def test_fake_server_scripted_errors(server):
    server.fail_next(1, status=500)
    server.reject_next(status=400)
    with openai.OpenAI(base_url=server.base_url, api_key="sk-test", max_retries=1) as client:
        with pytest.raises(openai.BadRequestError) as raised:
            client.chat.completions.create(model="gpt-4o", messages=PROMPT)
        assert raised.value.code == "invalid_value"
        server.fail_next(2, status=429)
        with pytest.raises(openai.RateLimitError) as limited:
            client.chat.completions.create(model="gpt-4o", messages=PROMPT)
    assert limited.value.response.headers["retry-after"] == "1"
    assert [r.path for r in server.requests[-4:]] == ["/v1/chat/completions"] * 4


def _utc(nanoseconds: int) -> datetime:
    """Span time truncated to microseconds, as the record stores it."""
    return EPOCH + timedelta(microseconds=nanoseconds // 1000)


def _spans(payload: dict) -> list[dict]:
    return [span for rs in payload["resourceSpans"] for ss in rs["scopeSpans"] for span in ss["spans"]]
