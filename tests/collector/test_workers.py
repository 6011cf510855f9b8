"""Normalization in worker processes: same answers as inline, and a dead worker is recovered from."""
from __future__ import annotations

import os
import signal

import httpx
from google.rpc import status_pb2
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from inferledger.app import RunningServer
from tests.conftest import make_config, wait_for_rows
from tests.otlp_builders import export_request, genai_span

PROTO = {"Content-Type": "application/x-protobuf"}


def post(server, body: bytes) -> httpx.Response:
    return httpx.post(server.http_url + "/v1/traces", content=body, headers=PROTO, timeout=30)


def test_worker_pool_answers_like_inline_and_survives_a_killed_worker(tmp_path):
    with RunningServer(make_config(tmp_path / "data", ingest__workers=2)) as server:
        reply = post(server, export_request([genai_span(), genai_span(input_tokens=-1)]).SerializeToString())
        assert ExportTraceServiceResponse.FromString(reply.content).partial_success.rejected_spans == 1
        reply = post(server, b"\x0a\xff\xff")
        assert reply.status_code == 400 and "protobuf" in status_pb2.Status.FromString(reply.content).message

        pool = server.pipeline.receiver.normalizers
        killed = pool.worker_pids()
        for pid in killed:
            os.kill(pid, signal.SIGKILL)
        statuses = []
        while statuses[-3:] != [200] * 3 and len(statuses) < 10:
            statuses.append(post(server, export_request([genai_span()]).SerializeToString()).status_code)
        # each dead worker fails the one request it is handed (retryable), then is replaced
        assert statuses[0] == 503 and statuses.count(503) <= 2 and set(statuses) <= {200, 503}
        assert statuses[-3:] == [200] * 3 and len(pool.worker_pids()) == 2
        wait_for_rows(server.data_dir, "select * from inferences", 1 + statuses.count(200))


def test_workers_leave_when_the_collector_is_killed(tmp_path):
    """kill -9 of the server must not leave orphaned processes behind: neither the workers
    nor the fork server they come from (nor multiprocessing's resource tracker)."""
    import subprocess
    import sys
    import time

    import psutil

    script = (
        "import sys, time\n"
        "from collector.normalize import NormalizeSettings\n"
        "from collector.workers import NormalizerPool\n"
        "pool = NormalizerPool(NormalizeSettings(subject_key=b'k'), 2)\n"
        "pool.warm_up()\n"
        "print(' '.join(str(p) for p in pool.worker_pids()), flush=True)\n"
        "time.sleep(60)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    workers = [int(pid) for pid in parent.stdout.readline().split()]
    assert len(workers) == 2
    helpers = [child.pid for child in psutil.Process(parent.pid).children(recursive=True)]
    assert set(workers) < set(helpers)  # the fork server, the resource tracker
    workers = helpers
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(psutil.pid_exists(p) and
                                              psutil.Process(p).status() != psutil.STATUS_ZOMBIE for p in workers):
        time.sleep(0.2)
    assert not any(psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE for p in workers)
