"""OTLP/HTTP receiver: ``POST /v1/traces`` in protobuf or JSON, plain or gzip.

The route only maps content type to a decoder, bounds and decompresses the
body, calls ``Receiver.submit``, waits for durability and encodes the answer in
the request's encoding, as the OTLP specification requires
(https://opentelemetry.io/docs/specs/otlp/#otlphttp-response).

``/v1/logs`` and ``/v1/metrics`` are accepted and discarded with an empty
success response in the request's encoding: inferledger stores traces only, and
an SDK configured with one endpoint for all signals must not log export errors.
"""
from __future__ import annotations

import asyncio
import time
import zlib

from fastapi import APIRouter, Request
from fastapi.responses import Response
from google.protobuf import json_format
from google.rpc import status_pb2
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceResponse
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from collector.errors import (CollectorError, PayloadTooLarge, PermanentError, RetryableError,
                              UnsupportedMediaType)
from collector.workers import DECODERS, PROTOBUF
from collector.receiver import Receiver, wrap_storage_failure
from collector.tenancy import Authenticate

JSON = "application/json"
GRPC_CODE_FOR_STATUS = {400: 3, 401: 16, 403: 7, 413: 8, 415: 3, 429: 8, 503: 14}


def build_router(receiver: Receiver, max_body_bytes: int, authenticate: Authenticate | None = None) -> APIRouter:
    """The OTLP/HTTP routes. ``authenticate`` (see ``collector.tenancy``) checks the API key
    before the body is read; without it every request is accepted."""
    router = APIRouter(tags=["OTLP"])

    def tenant_of(request: Request) -> str | None:
        return authenticate(request.headers) if authenticate is not None else None

    @router.post("/v1/traces", summary="OTLP/HTTP trace export (protobuf or JSON, optionally gzip)")
    async def export_traces(request: Request) -> Response:
        started = time.perf_counter()
        content_type = _media_type(request.headers.get("content-type", ""))
        try:
            tenant = tenant_of(request)
            _decoder_for(content_type)
            receiver.check_capacity()
            body = await read_body(request, max_body_bytes)
            try:
                batch = await asyncio.wrap_future(receiver.normalize(body, content_type, tenant))
            except CollectorError:
                raise
            except Exception as exc:  # a worker process died: nothing was acknowledged, the client retries
                raise RetryableError(f"normalization failed ({type(exc).__name__}); retry") from exc
            outcome = receiver.submit(batch, "http")
            try:
                await asyncio.gather(*(asyncio.wrap_future(f) for f in outcome.durable))
            except Exception as exc:  # the log could not fsync: nothing was acknowledged
                raise wrap_storage_failure(exc) from exc
        except CollectorError as exc:
            receiver.metrics.requests.labels(transport="http", outcome=str(exc.http_status)).inc()
            return error_response(exc, content_type)
        receiver.acknowledge(outcome, "http")
        receiver.metrics.request_seconds.labels(transport="http").observe(time.perf_counter() - started)
        reply = ExportTraceServiceResponse()
        if outcome.rejected:
            reply.partial_success.rejected_spans = outcome.rejected
            reply.partial_success.error_message = outcome.message
        return encode_message(reply, content_type)

    @router.post("/v1/logs", summary="Accepted and discarded: inferledger stores traces only")
    async def export_logs(request: Request) -> Response:
        return await _discard(request, ExportLogsServiceResponse(), max_body_bytes, tenant_of)

    @router.post("/v1/metrics", summary="Accepted and discarded: inferledger stores traces only")
    async def export_metrics(request: Request) -> Response:
        return await _discard(request, ExportMetricsServiceResponse(), max_body_bytes, tenant_of)

    return router


async def _discard(request: Request, reply, max_body_bytes: int, tenant_of) -> Response:
    content_type = _media_type(request.headers.get("content-type", ""))
    try:
        tenant_of(request)
        _decoder_for(content_type)
        await read_body(request, max_body_bytes)
    except CollectorError as exc:
        return error_response(exc, content_type)
    return encode_message(reply, content_type)


def _media_type(header: str) -> str:
    return header.split(";", 1)[0].strip().lower()


def _decoder_for(content_type: str):
    try:
        return DECODERS[content_type]
    except KeyError:
        shown = content_type or "(none)"
        raise UnsupportedMediaType(
            f"unsupported Content-Type {shown}; OTLP/HTTP accepts {PROTOBUF} or {JSON}"
        ) from None


async def read_body(request: Request, limit: int) -> bytes:
    """Read the body without ever holding more than ``limit`` bytes, compressed or not."""
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("identity", "none", "", "gzip"):
        raise UnsupportedMediaType(f"unsupported Content-Encoding {encoding}; use gzip or none")
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"request body of {declared} bytes exceeds the limit of {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"request body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    body = b"".join(chunks)
    return gunzip_bounded(body, limit) if encoding == "gzip" else body


def gunzip_bounded(body: bytes, limit: int) -> bytes:
    """Decompress gzip, refusing output past ``limit`` bytes (gzip bombs) without inflating it all."""
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        data = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise PermanentError(f"body is not valid gzip: {exc}") from None
    if len(data) > limit or inflater.unconsumed_tail:
        raise PayloadTooLarge(f"decompressed body exceeds the limit of {limit} bytes")
    if not inflater.eof:
        raise PermanentError("body is not valid gzip: stream is truncated")
    return data


def encode_message(message, content_type: str, status_code: int = 200, headers: dict | None = None) -> Response:
    if content_type == JSON:
        body = json_format.MessageToJson(message, indent=None).encode()
        return Response(body, status_code=status_code, media_type=JSON, headers=headers)
    return Response(message.SerializeToString(), status_code=status_code, media_type=PROTOBUF, headers=headers)


def error_response(exc: CollectorError, content_type: str) -> Response:
    """A ``google.rpc.Status`` in the request's encoding; 415 answers in plain text."""
    headers = {"Retry-After": str(exc.retry_after)} if hasattr(exc, "retry_after") else None
    if exc.http_status == 401:
        headers = {"WWW-Authenticate": 'Bearer realm="inferledger"'}
    if content_type not in DECODERS:
        return Response(exc.message + "\n", status_code=exc.http_status, media_type="text/plain", headers=headers)
    status = status_pb2.Status(code=GRPC_CODE_FOR_STATUS.get(exc.http_status, 13), message=exc.message)
    return encode_message(status, content_type, exc.http_status, headers)
