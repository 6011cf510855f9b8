"""OTLP/gRPC status codes: backpressure is UNAVAILABLE with RetryInfo, oversize is RESOURCE_EXHAUSTED."""
from __future__ import annotations

import grpc
from google.rpc import error_details_pb2, status_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc

from inferledger.app import RunningServer
from tests.conftest import make_config, wait_for_rows
from tests.otlp_builders import export_request, genai_span


def stub_for(server):
    channel = grpc.insecure_channel(server.grpc_target)
    return channel, trace_service_pb2_grpc.TraceServiceStub(channel)


def test_partial_success_over_grpc(collector):
    channel, stub = stub_for(collector)
    with channel:
        reply = stub.Export(export_request([genai_span(), genai_span(output_tokens=10**12)]), timeout=10)
    assert reply.partial_success.rejected_spans == 1
    assert "output" in reply.partial_success.error_message
    wait_for_rows(collector.data_dir, "select * from inferences", 1)


def test_backpressure_is_unavailable_with_retry_info(tmp_path):
    config = make_config(tmp_path / "data", storage__min_free_bytes=1 << 62, ingest__retry_after_s=3)
    with RunningServer(config) as server:
        channel, stub = stub_for(server)
        with channel:
            try:
                stub.Export(export_request([genai_span()]), timeout=10)
                raise AssertionError("expected UNAVAILABLE")
            except grpc.RpcError as error:
                assert error.code() == grpc.StatusCode.UNAVAILABLE
                details = dict(error.trailing_metadata())["grpc-status-details-bin"]
                status = status_pb2.Status.FromString(details)
                info = error_details_pb2.RetryInfo()
                assert status.details[0].Unpack(info) and info.retry_delay.seconds == 3


def test_oversized_message_is_resource_exhausted(tmp_path):
    config = make_config(tmp_path / "data", ingest__max_body_bytes=64 * 1024)
    with RunningServer(config) as server:
        channel, stub = stub_for(server)
        with channel:
            try:
                stub.Export(export_request([genai_span(**{"app__blob": "x" * 100_000})]), timeout=10)
                raise AssertionError("expected RESOURCE_EXHAUSTED")
            except grpc.RpcError as error:
                assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
