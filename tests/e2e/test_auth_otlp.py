"""The real OpenTelemetry SDK exporters (HTTP and gRPC) with API keys in OTEL_EXPORTER_OTLP_HEADERS."""
from __future__ import annotations

import time

import grpc
import httpx
import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from inferledger.app import RunningServer
from tests.api.keys import keyed_server
from tests.conftest import make_config, wait_for_rows
from tests.otlp_builders import export_request, genai_span
from warehouse.catalog import query


def finished_spans(count: int, tenant: str | None = None, service: str = "fraud-api") -> list:
    """``count`` GenAI spans made by the SDK, with the tenant on the resource when given."""
    resource = {"service.name": service, **({"inferledger.tenant.id": tenant} if tenant else {})}
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create(resource))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("app")
    for n in range(count):
        with tracer.start_as_current_span(f"chat {n}") as span:
            span.set_attributes({"gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai",
                                 "gen_ai.request.model": "gpt-4o-mini", "gen_ai.usage.input_tokens": 10 + n,
                                 "gen_ai.usage.output_tokens": 5})
    provider.shutdown()
    return list(memory.get_finished_spans())


def exporters(server, headers: str | None, monkeypatch) -> dict:
    """Both SDK exporters configured the way a service is: OTEL_EXPORTER_OTLP_HEADERS in the environment."""
    if headers is None:
        monkeypatch.delenv("OTEL_EXPORTER_OTLP_HEADERS", raising=False)
    else:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", headers)
    return {"http": HttpExporter(endpoint=server.http_url + "/v1/traces", timeout=5),
            "grpc": GrpcExporter(endpoint=server.grpc_target, insecure=True, timeout=5)}


def rows(server) -> int:
    return query(server.data_dir, "SELECT count(*) AS n FROM inferences").to_pylist()[0]["n"]


@pytest.fixture(scope="module")
def keyed(tmp_path_factory):
    with keyed_server(tmp_path_factory.mktemp("otlp-auth") / "data") as (server, keys):
        yield server, keys


def test_ingest_and_admin_keys_are_accepted_over_http_and_grpc(keyed, monkeypatch):
    server, keys = keyed
    before = rows(server)
    header_forms = {"ingest": f"authorization=Bearer%20{keys.ingest}", "admin": f"x-api-key={keys.admin}"}
    for role, headers in header_forms.items():
        for transport, exporter in exporters(server, headers, monkeypatch).items():
            assert exporter.export(finished_spans(2)) == SpanExportResult.SUCCESS, (role, transport)
            exporter.shutdown()
    wait_for_rows(server.data_dir, "select * from inferences", before + 8)


@pytest.mark.parametrize("caller", ["auditor", "none", "bad", "revoked"])
def test_other_callers_are_refused_and_nothing_lands(keyed, monkeypatch, caller):
    server, keys = keyed
    key = keys.by_role()[caller]
    before = rows(server)
    for transport, exporter in exporters(server, f"authorization=Bearer%20{key}" if key else None,
                                         monkeypatch).items():
        started = time.monotonic()
        assert exporter.export(finished_spans(1)) == SpanExportResult.FAILURE, (caller, transport)
        assert time.monotonic() - started < 4  # refused at once: 401/403 are not retried
        exporter.shutdown()
    server.pipeline.storage.flush(timeout=10)
    assert rows(server) == before


def test_a_tenant_scoped_key_stamps_its_tenant_and_refuses_others(keyed, monkeypatch):
    server, keys = keyed
    for exporter in exporters(server, f"authorization=Bearer%20{keys.acme_ingest}", monkeypatch).values():
        assert exporter.export(finished_spans(2, service="scoped-no-tenant")) == SpanExportResult.SUCCESS
        assert exporter.export(finished_spans(2, tenant="acme", service="scoped-acme")) == SpanExportResult.SUCCESS
        exporter.export(finished_spans(2, tenant="globex", service="scoped-globex"))  # partial success: refused
        exporter.shutdown()
    landed = wait_for_rows(server.data_dir, "select service_name, tenant from inferences "
                                            "where service_name like 'scoped-%'", 8)
    server.pipeline.storage.flush(timeout=10)
    landed = query(server.data_dir, "select service_name, tenant, count(*) as n from inferences "
                                    "where service_name like 'scoped-%' group by all order by 1").to_pylist()
    assert landed == [{"service_name": "scoped-acme", "tenant": "acme", "n": 4},
                      {"service_name": "scoped-no-tenant", "tenant": "acme", "n": 4}]


def test_partial_success_names_the_foreign_tenant(keyed):
    server, keys = keyed
    request = export_request([genai_span(), genai_span()], inferledger__tenant__id="globex")
    request.resource_spans.extend(export_request([genai_span()]).resource_spans)  # and one without a tenant
    answer = httpx.post(server.http_url + "/v1/traces", content=request.SerializeToString(),
                        headers={"Content-Type": "application/x-protobuf", "X-API-Key": keys.acme_ingest})
    reply = ExportTraceServiceResponse.FromString(answer.content)
    assert answer.status_code == 200 and reply.partial_success.rejected_spans == 2
    assert "2 span(s) belong to another tenant than this key's ('acme')" in reply.partial_success.error_message
    with grpc.insecure_channel(server.grpc_target) as channel:
        stub = trace_service_pb2_grpc.TraceServiceStub(channel)
        reply = stub.Export(request, metadata=[("x-api-key", keys.acme_ingest)], timeout=10)
    assert reply.partial_success.rejected_spans == 2


def test_on_loopback_without_required_keys_exporters_need_none(tmp_path, monkeypatch):
    with RunningServer(make_config(tmp_path / "data")) as server:
        for exporter in exporters(server, None, monkeypatch).values():
            assert exporter.export(finished_spans(1)) == SpanExportResult.SUCCESS
            exporter.shutdown()
        for exporter in exporters(server, "authorization=Bearer%20ilk_000000000000_wrong", monkeypatch).values():
            assert exporter.export(finished_spans(1)) == SpanExportResult.FAILURE  # a key sent is checked
            exporter.shutdown()
        wait_for_rows(server.data_dir, "select * from inferences", 2)
