"""`inferledger serve` and `inferledger query` as a user runs them: real processes, real ports."""
from __future__ import annotations

import csv
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

CLI = [sys.executable, "-m", "inferledger.cli"]
ENV = {**os.environ, "INFERLEDGER_SUBJECT_KEY": "11" * 32}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_serve(data_dir: Path, http_port: int, grpc_port: int, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        CLI + ["serve", "--data-dir", str(data_dir), "--http-port", str(http_port), "--grpc-port", str(grpc_port),
               *extra],
        env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def wait_healthy(url: str, process: subprocess.Popen, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"serve exited early: {process.stderr.read()}")
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.1)
    raise AssertionError("serve did not become healthy")


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(CLI + list(args), env=ENV, capture_output=True, text=True, timeout=60)


def send_chat_spans(url: str, count: int) -> None:
    provider = TracerProvider(resource=Resource.create({"service.name": "support-bot"}))
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=url + "/v1/traces")))
    tracer = provider.get_tracer("test")
    for index in range(count):
        with tracer.start_as_current_span("chat") as span:
            span.set_attributes({"gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai",
                                 "gen_ai.request.model": "gpt-4o-mini", "gen_ai.usage.input_tokens": 100 + index,
                                 "gen_ai.usage.output_tokens": 10})
    provider.shutdown()


def test_serve_then_query_while_running(tmp_path):
    data_dir, http_port = tmp_path / "data", free_port()
    server = start_serve(data_dir, http_port, free_port())
    try:
        url = f"http://127.0.0.1:{http_port}"
        wait_healthy(url, server)
        send_chat_spans(url, 4)
        sql = ("select provider, response_model, input_tokens, output_tokens from inferences "
               "order by start_time desc limit 10")
        # Default settings: acknowledged spans are queryable within visibility_target_s = 5 s
        # (one more second for the polling `inferledger query` process itself to start).
        deadline = time.monotonic() + 6
        rows = []
        while time.monotonic() < deadline and len(rows) < 4:
            result = run_cli("query", "--data-dir", str(data_dir), "--format", "json", sql)
            assert result.returncode == 0, result.stderr
            rows = json.loads(result.stdout)
            time.sleep(0.2)
        assert rows[0] == {"provider": "openai", "response_model": "gpt-4o-mini", "input_tokens": 103,
                           "output_tokens": 10}
        assert len(rows) == 4
        as_csv = run_cli("query", "-d", str(data_dir), "-f", "csv", sql)
        parsed = list(csv.DictReader(io.StringIO(as_csv.stdout)))
        assert parsed[0]["input_tokens"] == "103" and len(parsed) == 4
        table = run_cli("query", "-d", str(data_dir), sql)
        assert "gpt-4o-mini" in table.stdout and "4 row(s)" in table.stdout
        bad = run_cli("query", "-d", str(data_dir), "select nope from inferences")
        assert bad.returncode == 1 and "nope" in bad.stderr
    finally:
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=30) == 0


def test_port_in_use_is_a_clear_startup_error(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        server = start_serve(tmp_path / "data", port, free_port())
        _, stderr = server.communicate(timeout=30)
    assert server.returncode == 1
    assert f"cannot listen for OTLP/HTTP on 127.0.0.1:{port}" in " ".join(stderr.split())


def test_unwritable_data_dir_is_a_clear_startup_error(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    server = start_serve(blocker / "data", free_port(), free_port())
    _, stderr = server.communicate(timeout=30)
    assert server.returncode == 1
    assert "is not writable" in " ".join(stderr.split())


@pytest.mark.parametrize(
    "toml, message",
    [
        ("[server]\nhttp_port = 'abc'\n", "server.http_port"),
        ("[server]\nhttp_port = 70000\n", "less than or equal to 65535"),
        ("[storage]\nfsink = true\n", "storage.fsink: unknown setting"),
        ("[server\n", "not valid TOML"),
    ],
)
def test_bad_configuration_is_refused_with_its_location(tmp_path, toml, message):
    config = tmp_path / "inferledger.toml"
    config.write_text(toml)
    result = run_cli("serve", "--config", str(config), "--data-dir", str(tmp_path / "d"))
    assert result.returncode == 2
    assert message in " ".join(result.stderr.split())


def test_second_server_on_the_same_data_dir_is_refused(tmp_path):
    data_dir, http_port = tmp_path / "data", free_port()
    first = start_serve(data_dir, http_port, free_port())
    try:
        wait_healthy(f"http://127.0.0.1:{http_port}", first)
        second = start_serve(data_dir, free_port(), free_port())
        _, stderr = second.communicate(timeout=30)
        assert second.returncode == 1
        assert "another process is already writing to" in " ".join(stderr.split())
    finally:
        first.send_signal(signal.SIGTERM)
        first.wait(timeout=30)
