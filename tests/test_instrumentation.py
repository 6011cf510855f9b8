"""inferledger.instrumentation through the real OTel SDK and OTLP exporter into a running collector."""
from __future__ import annotations

import hashlib
import hmac
import logging

import pytest
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import NonRecordingSpan, SpanContext, Status, StatusCode

from inferledger.config import subject_key
from inferledger.instrumentation import (inference_attributes, mark_attempt, record_cache_hit, record_decision,
                                         record_review, retry_link, review_link, set_cost_keys, set_model_version,
                                         span_processor)
from tests.conftest import wait_for_rows
from tests.instrumented import INSTRUMENTATIONS, PROMPT, _instrumentor, remove_leftover_wrappers


@pytest.fixture
def tracer(collector):
    provider = TracerProvider(resource=Resource.create({"service.name": "fraud-api", "service.version": "3.1"}))
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=collector.http_url + "/v1/traces")))
    yield provider.get_tracer("tests.instrumentation")
    provider.shutdown()


def pseudonym(collector, identifier: str) -> str:
    return hmac.new(subject_key(collector.pipeline.config), identifier.encode(), hashlib.sha256).hexdigest()


def rows_of(collector, where: str, expected: int) -> list[dict]:
    return wait_for_rows(collector.data_dir, f"SELECT * FROM inferences WHERE {where} ORDER BY start_time", expected)


def test_decision_model_version_and_cost_keys_land_in_their_columns(collector, tracer):
    with tracer.start_as_current_span("screen_transaction"):
        set_model_version("fraud-gbm", "2026.11.2")
        set_cost_keys(tenant="acme", feature="card-screening", budget_id="fraud-q4", pricing_tier="batch",
                      compute_pool="gpu-pool-a")
        record_decision("decline", 0.93, reasons=["velocity", "new_device"], subject_id="customer-42")

    [row] = rows_of(collector, "span_name = 'screen_transaction'", 1)
    assert (row["operation"], row["request_model"], row["response_model"], row["model_version"]) == (
        "predict", "fraud-gbm", "fraud-gbm", "2026.11.2")
    assert (row["decision_label"], row["decision_score"], row["decision_reasons"]) == (
        "decline", 0.93, ["velocity", "new_device"])
    assert row["subject_id"] == pseudonym(collector, "customer-42")
    assert (row["tenant"], row["feature"], row["budget_id"], row["pricing_tier"], row["compute_pool"]) == (
        "acme", "card-screening", "fraud-q4", "batch", "gpu-pool-a")
    assert (row["service_name"], row["attempt"], row["request_key"]) == ("fraud-api", 0, None)


def test_attempts_share_a_request_key_and_link_to_the_previous_attempt(collector, tracer):
    def chat_span(name, links=()):
        return tracer.start_as_current_span(name, links=list(links), attributes={
            "gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o",
            "gen_ai.usage.input_tokens": 100, "gen_ai.usage.output_tokens": 20})

    with chat_span("attempt-0") as first:
        mark_attempt("req-7", 0)
        first.set_status(Status(StatusCode.ERROR))
        first.set_attribute("error.type", "invalid_output")
    with chat_span("attempt-1") as second:  # the link added after start
        mark_attempt("req-7", 1, retry_of=first)
        set_model_version(None, "2024-08-06")
    with chat_span("attempt-2", links=[retry_link(second)]):  # the link given at start
        mark_attempt("req-7", 2)
        record_cache_hit("answers")

    rows = rows_of(collector, "request_key = 'req-7'", 3)
    assert [(r["span_name"], r["attempt"], r["status"]) for r in rows] == [
        ("attempt-0", 0, "error"), ("attempt-1", 1, "ok"), ("attempt-2", 2, "ok")]
    ids = {r["span_name"]: r["span_id"] for r in rows}
    assert [r["retry_of_span_id"] for r in rows] == [None, ids["attempt-0"], ids["attempt-1"]]
    assert ids["attempt-0"] == format(first.get_span_context().span_id, "016x")
    # Version only: the model the GenAI attributes name is kept.
    assert (rows[1]["request_model"], rows[1]["model_version"]) == ("gpt-4o", "2024-08-06")
    assert rows[2]["cache_hit"] is True and rows[0]["cache_hit"] is None


def test_review_links_to_the_decision_it_reviews(collector, tracer):
    with tracer.start_as_current_span("screen_transaction") as decision:
        record_decision("review", 0.55, subject_id="customer-9")
    with tracer.start_as_current_span("analyst_review", links=[review_link(decision)]):
        record_review("approve", override=True, reviewer_id="analyst-3", duration_s=42.5)
    with tracer.start_as_current_span("second_opinion") as second:
        record_review("decline", override=False, reviewer_id="analyst-4", reviewed=decision)

    rows = rows_of(collector, "operation = 'review'", 2)
    decision_id = format(decision.get_span_context().span_id, "016x")
    assert [(r["span_name"], r["review_outcome"], r["review_override"], r["review_duration_s"], r["reviewed_span_id"])
            for r in rows] == [("analyst_review", "approve", True, 42.5, decision_id),
                               ("second_opinion", "decline", False, None, decision_id)]
    assert rows[0]["reviewer_id"] == pseudonym(collector, "analyst-3")
    assert second.is_recording() is False  # ended


def test_bad_values_are_skipped_with_a_warning_never_raised(collector, tracer, caplog):
    caplog.set_level(logging.WARNING, logger="inferledger.instrumentation")
    with tracer.start_as_current_span("bad_values"):
        record_decision("approve", score=float("nan"), reasons=["ok", 7, None], subject_id={"id": 1})
        mark_attempt("req-bad", -1, retry_of=SpanContext(0, 0, False))
        record_review("approve", override="yes", reviewer_id="r-1", duration_s="long")
        set_cost_keys(tenant=12)

    [row] = rows_of(collector, "span_name = 'bad_values'", 1)
    assert (row["decision_label"], row["decision_score"], row["decision_reasons"], row["subject_id"]) == (
        "approve", None, ["ok", "7"], None)
    assert (row["request_key"], row["attempt"], row["retry_of_span_id"]) == ("req-bad", 0, None)
    assert (row["review_outcome"], row["review_override"], row["review_duration_s"]) == ("approve", None, None)
    assert row["tenant"] == "12"  # numbers are accepted as text
    messages = " | ".join(record.getMessage() for record in caplog.records)
    for fragment in ("score must be a finite number", "subject_id must be a string",
                     "attempt must be a non-negative int",
                     "retry_of needs a valid span", "override must be a bool", "duration_s must be a finite number"):
        assert fragment in messages


def test_without_a_recording_span_nothing_happens():
    span = NonRecordingSpan(SpanContext(1, 2, False))
    record_decision("approve", 0.1, span=span)
    mark_attempt("k", 1, retry_of=span, span=span)
    record_review("approve", True, "r", span=span)
    with trace.use_span(span):  # the current span when no SDK is configured
        set_cost_keys(tenant="t")
        set_model_version("m", "1")


@pytest.mark.parametrize("instrumentation", list(INSTRUMENTATIONS))
def test_app_level_retries_reach_the_spans_an_instrumentation_creates(collector, instrumentation):
    """Client retries off, the application retries: each attempt is its own inference span with key and number.

    The model-call span is created inside the openai client by the instrumentation; the
    processor puts the block's attributes on it at start, and not on the application's span.
    """
    import openai

    from tests.fake_openai import FakeOpenAI

    provider = TracerProvider(resource=Resource.create({"service.name": "support-assistant"}))
    provider.add_span_processor(span_processor())
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=collector.http_url + "/v1/traces")))
    instrumentor = _instrumentor(instrumentation)
    instrumentor.instrument(tracer_provider=provider)
    key = f"answer-{instrumentation}"
    try:
        with FakeOpenAI() as server, openai.OpenAI(base_url=server.base_url, api_key="sk-test",
                                                   max_retries=0) as client:
            server.fail_next(1, status=429)
            for attempt in range(3):
                with inference_attributes(request_key=key, attempt=attempt, tenant="acme", feature="support"):
                    with provider.get_tracer("app").start_as_current_span("answer_question"):
                        try:
                            client.chat.completions.create(model="gpt-4o", messages=PROMPT)
                            break
                        except openai.RateLimitError:
                            continue
    finally:
        instrumentor.uninstrument()
        remove_leftover_wrappers()
        provider.shutdown()

    rows = rows_of(collector, f"request_key = '{key}'", 2)
    assert [(r["attempt"], r["status"], r["tenant"], r["feature"]) for r in rows] == [
        (0, "error", "acme", "support"), (1, "ok", "acme", "support")]
    assert rows[1]["input_tokens"] is not None
    collector.pipeline.storage.flush()  # every acknowledged span has landed
    app_spans = rows_of(collector, "span_name = 'answer_question'", 0)
    assert app_spans == []  # the application's own span got nothing that makes it a record


def test_inference_attributes_nest_and_skip_spans_without_model_attributes():
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(span_processor())
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("t")
    with inference_attributes(tenant="acme", request_key="r1", attempt=0):
        with inference_attributes(attempt=1, feature="search"):
            tracer.start_span("chat", attributes={"gen_ai.operation.name": "chat"}).end()
            tracer.start_span("GET", attributes={"http.request.method": "GET"}).end()
        tracer.start_span("embed", attributes={"llm.request.type": "embedding"}).end()
    tracer.start_span("after", attributes={"gen_ai.operation.name": "chat"}).end()
    spans = {span.name: dict(span.attributes) for span in exporter.get_finished_spans()}
    assert {k: v for k, v in spans["chat"].items() if k.startswith("inferledger.")} == {
        "inferledger.tenant.id": "acme", "inferledger.request.key": "r1", "inferledger.attempt": 1,
        "inferledger.feature.name": "search"}
    assert spans["GET"] == {"http.request.method": "GET"}
    assert spans["embed"]["inferledger.attempt"] == 0 and "inferledger.feature.name" not in spans["embed"]
    assert spans["after"] == {"gen_ai.operation.name": "chat"}
