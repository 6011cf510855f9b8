"""Each kind of caller against each endpoint of a server that requires keys: 200, 401 or 403, never more."""
from __future__ import annotations

import grpc
import httpx
import pytest
from google.rpc import status_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc

from tests.api.keys import client, keyed_server
from tests.conftest import wait_for_rows
from tests.otlp_builders import export_request, genai_span

CALLERS = ["ingest", "auditor", "admin", "none", "bad", "revoked"]
READ = {"ingest": 403, "auditor": 200, "admin": 200, "none": 401, "bad": 401, "revoked": 401}
ADMIN = {"ingest": 403, "auditor": 403, "admin": 200, "none": 401, "bad": 401, "revoked": 401}
SEND = {"ingest": 200, "auditor": 403, "admin": 200, "none": 401, "bad": 401, "revoked": 401}
GRPC_CODES = {200: grpc.StatusCode.OK, 401: grpc.StatusCode.UNAUTHENTICATED, 403: grpc.StatusCode.PERMISSION_DENIED}
SPAN = genai_span(trace_id=bytes.fromhex("ab" * 16), span_id=bytes.fromhex("cd" * 8),
                  inferledger__decision__label="approve")


@pytest.fixture(scope="module")
def keyed(tmp_path_factory):
    with keyed_server(tmp_path_factory.mktemp("matrix") / "data") as (server, keys):
        with client(server, keys.ingest) as sender:
            assert sender.post("/v1/traces", content=export_request([SPAN]).SerializeToString(),
                               headers={"Content-Type": "application/x-protobuf"}).status_code == 200
        wait_for_rows(server.data_dir, "select * from inferences", 1)
        yield server, keys


API_CALLS = [
    ("GET", "/api/v1/decisions", None, READ),
    ("GET", f"/api/v1/decisions/{'ab' * 16}/{'cd' * 8}", None, READ),
    ("GET", "/api/v1/decisions/export?format=jsonl", None, READ),
    ("POST", "/api/v1/sql", {"sql": "select count(*) from inferences"}, READ),
    ("POST", "/api/v1/admin/reprice", {"from": "2020-01-01", "to": "2020-01-01", "reason": "matrix"}, ADMIN),
    ("GET", "/api/v1/admin/config", None, ADMIN),
    ("POST", "/api/v1/admin/erase", {"subject": "nobody-in-particular", "reason": "matrix"}, ADMIN),
]


@pytest.mark.parametrize("method,path,body,expected", API_CALLS, ids=[c[1].split("?")[0] for c in API_CALLS])
def test_api_endpoints(keyed, method, path, body, expected):
    server, keys = keyed
    for caller, key in keys.by_role().items():
        with client(server, key) as api:
            answer = api.request(method, path, json=body)
        assert answer.status_code == expected[caller], (caller, answer.status_code, answer.text[:300])
        if answer.status_code != 200:
            detail = answer.json()["detail"]
            assert {401: "API key", 403: "needs"}[answer.status_code] in detail, detail
        if answer.status_code == 401:
            assert answer.headers["www-authenticate"].startswith("Bearer")


def test_messages_for_each_kind_of_401(keyed):
    server, keys = keyed
    messages = {}
    for caller in ("none", "bad", "revoked"):
        with client(server, keys.by_role()[caller]) as api:
            messages[caller] = api.get("/api/v1/decisions").json()["detail"]
    assert messages["none"].startswith("missing API key")
    assert messages["bad"] == "unknown API key"
    assert f"API key {keys.ids['revoked']} (test revoked) was revoked" in messages["revoked"]


def test_x_api_key_header_works_like_bearer(keyed):
    server, keys = keyed
    with client(server, keys.auditor, header="x-api-key") as api:
        assert api.get("/api/v1/decisions").json()["count"] == 1


def test_otlp_http(keyed):
    server, keys = keyed
    body = export_request([genai_span()]).SerializeToString()
    for caller, key in keys.by_role().items():
        with client(server, key) as sender:
            answer = sender.post("/v1/traces", content=body, headers={"Content-Type": "application/x-protobuf"})
        assert answer.status_code == SEND[caller], (caller, answer.status_code, answer.content[:200])
        if answer.status_code != 200:  # an OTLP error body: google.rpc.Status in the request's encoding
            status = status_pb2.Status.FromString(answer.content)
            assert status.code == GRPC_CODES[answer.status_code].value[0] and status.message


def test_otlp_grpc(keyed):
    server, keys = keyed
    request = export_request([genai_span()])
    with grpc.insecure_channel(server.grpc_target) as channel:
        stub = trace_service_pb2_grpc.TraceServiceStub(channel)
        for caller, key in keys.by_role().items():
            metadata = [("authorization", f"Bearer {key}")] if key else []
            try:
                stub.Export(request, metadata=metadata, timeout=10)
                code = grpc.StatusCode.OK
            except grpc.RpcError as error:
                code = error.code()
                assert error.details()
            assert code == GRPC_CODES[SEND[caller]], caller


def test_health_and_schema_stay_open(keyed):
    server, _ = keyed
    for path in ("/healthz", "/openapi.json"):
        assert httpx.get(server.http_url + path).status_code == 200
