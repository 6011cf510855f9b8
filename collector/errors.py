"""The two kinds of failure the collector reports, mapped once to HTTP and gRPC.

After the OpenTelemetry Collector's ``consumererror``: a *permanent* error means
the data is bad and a retry would fail the same way (HTTP 400 / gRPC
INVALID_ARGUMENT, or 413 / RESOURCE_EXHAUSTED for size); a *retryable* error
means the collector cannot take the data right now (HTTP 503 or 429 with
``Retry-After`` / gRPC UNAVAILABLE). See the OTLP specification, "Failures":
https://opentelemetry.io/docs/specs/otlp/#failures
"""
from __future__ import annotations

import grpc


class CollectorError(Exception):
    """Base class: ``message`` is shown to the client, in English."""

    http_status = 500
    grpc_code = grpc.StatusCode.INTERNAL

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class PermanentError(CollectorError):
    """The request is malformed; the client must not retry it."""

    http_status = 400
    grpc_code = grpc.StatusCode.INVALID_ARGUMENT


class PayloadTooLarge(PermanentError):
    """The body, or its decompressed size, exceeds the configured limit."""

    http_status = 413
    grpc_code = grpc.StatusCode.RESOURCE_EXHAUSTED


class UnsupportedMediaType(PermanentError):
    """The Content-Type (or Content-Encoding) is not one OTLP/HTTP defines."""

    http_status = 415


class RetryableError(CollectorError):
    """The collector cannot take more right now; retry after ``retry_after`` seconds."""

    http_status = 503
    grpc_code = grpc.StatusCode.UNAVAILABLE

    def __init__(self, message: str, retry_after: int = 5):
        super().__init__(message)
        self.retry_after = retry_after


class Unauthenticated(PermanentError):
    """No API key, or one the server does not know (or that was revoked)."""

    http_status = 401
    grpc_code = grpc.StatusCode.UNAUTHENTICATED


class PermissionDenied(PermanentError):
    """The API key is valid but its role may not send spans."""

    http_status = 403
    grpc_code = grpc.StatusCode.PERMISSION_DENIED
