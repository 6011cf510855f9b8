"""A small OpenAI-compatible HTTP server for tests, on 127.0.0.1 in a thread.

Real LLM instrumentations wrap the real ``openai`` client; to see what they
emit we need that client to talk to something that answers like the OpenAI API
(usage with cached and reasoning tokens, a dated served model id, service tier,
system fingerprint, SSE streaming, error bodies and ``Retry-After``). This
server does exactly that over a real socket, so the client's own retry loop and
the instrumentations' error paths run unchanged.

Scripting: ``usage`` sets the token counts of the next answers; ``fail_next``
makes the next N calls answer 429/5xx (the client retries them);
``reject_next`` makes the next call answer a non-retryable 4xx. Every request
received is kept in ``requests``.
"""
from __future__ import annotations

import base64
import itertools
import json
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

# What OpenAI really answers with: the alias resolves to a dated snapshot.
SERVED_MODELS = {
    "gpt-4o": "gpt-4o-2024-08-06",
    "gpt-4o-mini": "gpt-4o-mini-2024-07-18",
    "o3-mini": "o3-mini-2025-01-31",
    "o4-mini": "o4-mini-2025-04-16",
}
SYSTEM_FINGERPRINT = "fp_7c3a1f9e2b"
SERVICE_TIER = "default"
ANSWER = "The invoice total is 42 euros."
EMBEDDING_DIMENSIONS = 8


@dataclass(frozen=True)
class Usage:
    """Token counts of one answer, in the Chat Completions shape.

    As in the OpenAI API, ``cached_tokens`` is part of ``prompt_tokens`` and
    ``reasoning_tokens`` is part of ``completion_tokens``.
    """

    prompt_tokens: int = 19
    completion_tokens: int = 7
    cached_tokens: int = 0
    reasoning_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def chat(self) -> dict[str, Any]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
            "prompt_tokens_details": {"cached_tokens": self.cached_tokens, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": self.reasoning_tokens,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        }

    def responses(self) -> dict[str, Any]:
        return {
            "input_tokens": self.prompt_tokens,
            "input_tokens_details": {"cached_tokens": self.cached_tokens},
            "output_tokens": self.completion_tokens,
            "output_tokens_details": {"reasoning_tokens": self.reasoning_tokens},
            "total_tokens": self.total_tokens,
        }

    def embeddings(self) -> dict[str, Any]:
        return {"prompt_tokens": self.prompt_tokens, "total_tokens": self.prompt_tokens}


@dataclass(frozen=True)
class Failure:
    """One scripted error answer."""

    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class RecordedRequest:
    """A request as the server received it (header names lower-cased)."""

    method: str
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


def served_model(requested: str) -> str:
    """The model id the server reports for a requested model."""
    return SERVED_MODELS.get(requested, requested)


def error_body(message: str, type_: str, code: str | None, param: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


class FakeOpenAI:
    """The server; use as a context manager, then point ``openai.OpenAI(base_url=...)`` at it."""

    def __init__(self) -> None:
        self.usage = Usage()
        self.requests: list[RecordedRequest] = []
        self._failures: list[Failure] = []
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        assert self._httpd is not None, "server not started"
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    def fail_next(self, count: int, status: int = 429, retry_after_ms: int = 10) -> None:
        """Answer the next ``count`` calls with a retryable error.

        ``retry-after-ms`` keeps the client's wait short (the openai client
        prefers it to ``Retry-After``, which is sent too, in whole seconds as
        HTTP requires).
        """
        if status == 429:
            body = error_body("Rate limit reached for requests", "requests", "rate_limit_exceeded")
        else:
            body = error_body("The server had an error while processing your request.", "server_error", None)
        headers = {"Retry-After": str(max(1, round(retry_after_ms / 1000))), "retry-after-ms": str(retry_after_ms)}
        with self._lock:
            self._failures.extend(Failure(status, body, headers) for _ in range(count))

    def reject_next(self, status: int = 400, message: str = "Invalid value for 'temperature'.",
                    code: str = "invalid_value", param: str = "temperature") -> None:
        """Answer the next call with a client error that the openai client does not retry."""
        with self._lock:
            self._failures.append(Failure(status, error_body(message, "invalid_request_error", code, param)))

    def __enter__(self) -> "FakeOpenAI":
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), name="fake-openai", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        assert self._httpd is not None and self._thread is not None
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def new_id(self, prefix: str) -> str:
        """A fresh object id, as OpenAI gives every answer its own (OpenLLMetry caches Responses by id)."""
        with self._lock:
            return f"{prefix}{next(self._ids):024x}"

    def _take(self, request: RecordedRequest) -> Failure | None:
        """Record a request and pop the scripted failure for it, if any."""
        with self._lock:
            self.requests.append(request)
            return self._failures.pop(0) if self._failures else None


def _handler_for(server: FakeOpenAI) -> type[BaseHTTPRequestHandler]:
    class Handler(_Handler):
        fake = server

    return Handler


class _Handler(BaseHTTPRequestHandler):
    fake: FakeOpenAI
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        """Send small answers at once: without TCP_NODELAY, Nagle plus delayed ACK adds ~40 ms per call."""
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        """Silence the default stderr access log."""

    def do_POST(self) -> None:  # noqa: N802 - stdlib naming
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        headers = {k.lower(): v for k, v in self.headers.items()}
        failure = self.fake._take(RecordedRequest("POST", self.path, headers, body))
        if failure is not None:
            self._send_json(failure.status, failure.body, failure.headers)
            return
        routes = {
            "/v1/chat/completions": self._chat,
            "/v1/embeddings": self._embeddings,
            "/v1/responses": self._responses,
        }
        route = routes.get(self.path)
        if route is None:
            self._send_json(404, error_body(f"Unknown path {self.path}", "invalid_request_error", None))
            return
        route(body)

    def _chat(self, body: dict[str, Any]) -> None:
        model = served_model(body.get("model", ""))
        usage = self.fake.usage
        if body.get("stream"):
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            self._send_sse(_chat_chunks(self.fake.new_id("chatcmpl-"), model, usage, include_usage))
            return
        self._send_json(200, {
            "id": self.fake.new_id("chatcmpl-"),
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": ANSWER, "refusal": None, "annotations": []},
                "logprobs": None,
                "finish_reason": "stop",
            }],
            "usage": usage.chat(),
            "service_tier": SERVICE_TIER,
            "system_fingerprint": SYSTEM_FINGERPRINT,
        })

    def _embeddings(self, body: dict[str, Any]) -> None:
        inputs = body.get("input")
        inputs = inputs if isinstance(inputs, list) else [inputs]
        base64_wanted = body.get("encoding_format") == "base64"
        data = [
            {"object": "embedding", "index": i, "embedding": _vector(i, base64_wanted)}
            for i in range(len(inputs))
        ]
        self._send_json(200, {
            "object": "list",
            "data": data,
            "model": served_model(body.get("model", "")),
            "usage": self.fake.usage.embeddings(),
        })

    def _responses(self, body: dict[str, Any]) -> None:
        self._send_json(200, {
            "id": self.fake.new_id("resp_"),
            "object": "response",
            "created_at": int(time.time()),
            "status": "completed",
            "model": served_model(body.get("model", "")),
            "output": [{
                "type": "message",
                "id": self.fake.new_id("msg_"),
                "status": "completed",
                "role": "assistant",
                "content": [{"type": "output_text", "text": ANSWER, "annotations": []}],
            }],
            "parallel_tool_calls": True,
            "tool_choice": "auto",
            "tools": [],
            "temperature": body.get("temperature", 1.0),
            "top_p": 1.0,
            "usage": self.fake.usage.responses(),
            "service_tier": SERVICE_TIER,
            "error": None,
            "incomplete_details": None,
        })

    def _send_json(self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("x-request-id", f"req_{len(self.fake.requests):04d}")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _send_sse(self, chunks: list[dict[str, Any]]) -> None:
        """Stream server-sent events; no Content-Length, so the connection closes at the end."""
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Connection", "close")
        self.end_headers()
        for chunk in chunks:
            self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
            self.wfile.flush()
        self.wfile.write(b"data: [DONE]\n\n")
        self.wfile.flush()
        self.close_connection = True


def _chat_chunks(answer_id: str, model: str, usage: Usage, include_usage: bool) -> list[dict[str, Any]]:
    """The chunks of a streamed chat answer, as OpenAI sends them.

    With ``include_usage`` every chunk carries ``usage: null`` and one last
    chunk with no choices carries the usage.
    """
    def chunk(choices: list[dict[str, Any]], usage_value: dict[str, Any] | None) -> dict[str, Any]:
        payload = {
            "id": answer_id,
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": model,
            "service_tier": SERVICE_TIER,
            "system_fingerprint": SYSTEM_FINGERPRINT,
            "choices": choices,
        }
        if include_usage:
            payload["usage"] = usage_value
        return payload

    words = ANSWER.split(" ")
    pieces = [w if i == 0 else " " + w for i, w in enumerate(words)]
    chunks = [chunk([{"index": 0, "delta": {"role": "assistant", "content": "", "refusal": None},
                      "logprobs": None, "finish_reason": None}], None)]
    chunks += [chunk([{"index": 0, "delta": {"content": p}, "logprobs": None, "finish_reason": None}], None)
               for p in pieces]
    chunks.append(chunk([{"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}], None))
    if include_usage:
        chunks.append(chunk([], usage.chat()))
    return chunks


def _vector(index: int, as_base64: bool) -> list[float] | str:
    """A small deterministic embedding; base64 of little-endian float32 when asked (the client's default)."""
    values = [round(0.125 * (index + 1) * (d + 1), 3) for d in range(EMBEDDING_DIMENSIONS)]
    if not as_base64:
        return values
    return base64.b64encode(struct.pack(f"<{len(values)}f", *values)).decode()
