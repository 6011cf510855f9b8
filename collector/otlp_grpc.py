"""OTLP/gRPC receiver: ``TraceService/Export`` with the same semantics as OTLP/HTTP.

gRPC itself handles gzip and enforces the message size limit
(RESOURCE_EXHAUSTED). ``Export`` takes the request's raw bytes (no deserializer is
registered), so they are decoded and normalized exactly like an OTLP/HTTP protobuf
body: by the C reader when built, in the worker pool when configured, and a
malformed message is INVALID_ARGUMENT with the decoder's explanation. Backpressure is UNAVAILABLE with a ``RetryInfo``
detail, bad data INVALID_ARGUMENT, as the OTLP specification asks
(https://opentelemetry.io/docs/specs/otlp/#otlpgrpc-response). Logs and metrics
are accepted and discarded, as on HTTP.
"""
from __future__ import annotations

import time
from concurrent import futures

import grpc
from google.protobuf import duration_pb2
from google.rpc import error_details_pb2, status_pb2
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

from collector.errors import CollectorError, RetryableError
from collector.receiver import Receiver, wrap_storage_failure
from collector.tenancy import Authenticate, headers_of
from collector.workers import PROTOBUF


class _Guarded:
    """Checks the API key in the call's metadata (``authorization`` or ``x-api-key``)."""

    def __init__(self, authenticate: Authenticate | None):
        self.authenticate = authenticate

    def tenant_of(self, context) -> str | None:
        if self.authenticate is None:
            return None
        return self.authenticate(headers_of(context.invocation_metadata() or ()))


class TraceService(_Guarded):
    """``TraceService/Export``; ``body`` is the serialized ``ExportTraceServiceRequest``."""

    def __init__(self, receiver: Receiver, authenticate: Authenticate | None = None):
        _Guarded.__init__(self, authenticate)
        self.receiver = receiver

    def Export(self, body: bytes, context):  # noqa: N802 (gRPC method name)
        started = time.perf_counter()
        try:
            tenant = self.tenant_of(context)
            self.receiver.check_capacity()
            try:
                batch = self.receiver.normalize(body, PROTOBUF, tenant).result()
            except CollectorError:
                raise
            except Exception as exc:  # a worker process died: nothing was acknowledged, the client retries
                raise RetryableError(f"normalization failed ({type(exc).__name__}); retry") from exc
            outcome = self.receiver.submit(batch, "grpc")
            try:
                outcome.wait_durable()
            except Exception as exc:
                raise wrap_storage_failure(exc) from exc
        except CollectorError as exc:
            self.receiver.metrics.requests.labels(transport="grpc", outcome=exc.grpc_code.name).inc()
            context.abort_with_status(_GrpcStatus(exc))
        self.receiver.acknowledge(outcome, "grpc")
        self.receiver.metrics.request_seconds.labels(transport="grpc").observe(time.perf_counter() - started)
        reply = trace_service_pb2.ExportTraceServiceResponse()
        if outcome.rejected:
            reply.partial_success.rejected_spans = outcome.rejected
            reply.partial_success.error_message = outcome.message
        return reply


class _Discard(_Guarded):
    """Logs and metrics: accepted (from a valid key) and discarded."""

    reply = None

    def Export(self, request, context):  # noqa: N802
        try:
            self.tenant_of(context)
        except CollectorError as exc:
            context.abort_with_status(_GrpcStatus(exc))
        return self.reply()


class DiscardLogs(_Discard, logs_service_pb2_grpc.LogsServiceServicer):
    reply = logs_service_pb2.ExportLogsServiceResponse


class DiscardMetrics(_Discard, metrics_service_pb2_grpc.MetricsServiceServicer):
    reply = metrics_service_pb2.ExportMetricsServiceResponse


class _GrpcStatus(grpc.Status):
    """A status with a ``google.rpc.Status`` in ``grpc-status-details-bin`` (RetryInfo on backpressure)."""

    def __init__(self, exc: CollectorError):
        detail = status_pb2.Status(code=exc.grpc_code.value[0], message=exc.message)
        if isinstance(exc, RetryableError):
            info = error_details_pb2.RetryInfo(retry_delay=duration_pb2.Duration(seconds=exc.retry_after))
            detail.details.add().Pack(info)
        self.code = exc.grpc_code
        self.details = exc.message
        self.trailing_metadata = (("grpc-status-details-bin", detail.SerializeToString()),)


def _add_raw_trace_service(service: TraceService, server: grpc.Server) -> None:
    """What ``add_TraceServiceServicer_to_server`` does, minus the request deserializer."""
    export = grpc.unary_unary_rpc_method_handler(
        service.Export, response_serializer=trace_service_pb2.ExportTraceServiceResponse.SerializeToString)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
        "opentelemetry.proto.collector.trace.v1.TraceService", {"Export": export}),))


def build_server(receiver: Receiver, host: str, port: int, max_message_bytes: int, workers: int,
                 interceptors=(), authenticate: Authenticate | None = None) -> tuple[grpc.Server, int]:
    """Create (not start) the gRPC server; returns it with the bound port (useful with port 0).

    ``authenticate`` (see ``collector.tenancy``) checks the API key in each call's metadata;
    without it every call is accepted."""
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="otlp-grpc"),
        interceptors=list(interceptors),
        options=[
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.so_reuseport", 0),
        ],
        maximum_concurrent_rpcs=workers * 16,
    )
    _add_raw_trace_service(TraceService(receiver, authenticate), server)
    logs_service_pb2_grpc.add_LogsServiceServicer_to_server(DiscardLogs(authenticate), server)
    metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(DiscardMetrics(authenticate), server)
    bound = server.add_insecure_port(f"{host}:{port}")
    if bound == 0:
        raise OSError(f"cannot listen for OTLP/gRPC on {host}:{port} (address in use or not available)")
    return server, bound
