"""kill -9 the real collector under load: every span that got a 200 is there exactly once after restart."""
from __future__ import annotations

import os
import signal
import threading
import time

import duckdb
import httpx
import pyarrow as pa

from tests.e2e.test_cli import free_port, start_serve, wait_healthy
from tests.otlp_builders import export_request, genai_span
from warehouse.catalog import connect


def send_until_killed(url: str, acknowledged: list[tuple[str, str]], stop: threading.Event, worker: int) -> None:
    """Post 64-span batches; remember the ids of every batch answered 200."""
    client = httpx.Client(timeout=10)
    batch_number = 0
    while not stop.is_set():
        spans = [genai_span(trace_id=os.urandom(16), input_tokens=worker * 1000 + batch_number) for _ in range(64)]
        batch_number += 1
        try:
            reply = client.post(url + "/v1/traces", content=export_request(spans).SerializeToString(),
                                headers={"Content-Type": "application/x-protobuf"})
        except httpx.TransportError:
            return  # the collector died mid-request: this batch was never acknowledged
        if reply.status_code == 200:
            acknowledged.extend((s.trace_id.hex(), s.span_id.hex()) for s in spans)


def test_acknowledged_spans_survive_kill_9(tmp_path):
    data_dir = tmp_path / "data"
    acknowledged: list[tuple[str, str]] = []
    for round_number in range(2):
        http_port = free_port()
        server = start_serve(data_dir, http_port, free_port())
        url = f"http://127.0.0.1:{http_port}"
        wait_healthy(url, server)
        stop = threading.Event()
        senders = [threading.Thread(target=send_until_killed, args=(url, acknowledged, stop, w)) for w in range(4)]
        for sender in senders:
            sender.start()
        time.sleep(1.5 + round_number)
        os.kill(server.pid, signal.SIGKILL)
        server.wait(timeout=10)
        stop.set()
        for sender in senders:
            sender.join(timeout=15)
    assert len(acknowledged) > 500, "the load did not get going before the kill"

    http_port = free_port()
    server = start_serve(data_dir, http_port, free_port())  # restart replays the write-ahead log
    try:
        wait_healthy(f"http://127.0.0.1:{http_port}", server)
        expected = pa.table({"trace_id": [a for a, _ in acknowledged], "span_id": [b for _, b in acknowledged]})
        deadline = time.monotonic() + 15
        while True:
            with connect(data_dir) as conn:
                conn.register("acked", expected)
                missing = conn.execute("select count(*) from acked a anti join inferences i using (trace_id, span_id)"
                                   ).fetchone()[0]
                duplicated = conn.execute("select count(*) from (select trace_id, span_id from inferences "
                                      "group by all having count(*) > 1)").fetchone()[0]
            if missing == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.25)
        assert missing == 0, f"{missing} acknowledged spans lost"
        assert duplicated == 0
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
