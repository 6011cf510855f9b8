"""The OpenAPI schema the server serves documents every API endpoint, its parameters and answers."""
from __future__ import annotations

import httpx
import pytest

from warehouse.record import RECORD_SCHEMA

ENDPOINTS = {
    ("get", "/api/v1/decisions"), ("get", "/api/v1/decisions/export"),
    ("get", "/api/v1/decisions/{trace_id}/{span_id}"), ("post", "/api/v1/sql"), ("get", "/api/v1/whoami"),
    ("post", "/api/v1/admin/reprice"), ("get", "/api/v1/admin/config"), ("post", "/api/v1/admin/erase"),
}


@pytest.fixture(scope="module")
def schema(tmp_path_factory):
    from inferledger.app import RunningServer
    from tests.conftest import make_config

    with RunningServer(make_config(tmp_path_factory.mktemp("openapi") / "data")) as server:
        yield httpx.get(server.http_url + "/openapi.json").json()


def test_every_endpoint_has_a_summary_tags_and_error_answers(schema):
    found = {(method, path) for path, item in schema["paths"].items() if path.startswith("/api/")
             for method in item}
    assert found == ENDPOINTS
    for method, path in ENDPOINTS:
        operation = schema["paths"][path][method]
        assert operation["summary"] and operation["tags"], (method, path)
        assert {"200", "401", "403"} <= set(operation["responses"]), (method, path)
        if path != "/api/v1/whoami":
            assert operation["security"], (method, path)


def test_listing_parameters_are_described(schema):
    parameters = {p["name"]: p for p in schema["paths"]["/api/v1/decisions"]["get"]["parameters"]}
    assert set(parameters) == {"from", "to", "service", "tenant", "model", "model_version", "decision_label",
                               "subject", "trace_id", "include_all", "cursor", "limit"}
    assert all(p.get("description") for p in parameters.values())
    export = {p["name"]: p for p in schema["paths"]["/api/v1/decisions/export"]["get"]["parameters"]}
    assert export["format"]["schema"]["enum"] == ["jsonl", "csv", "parquet"]


def test_response_shapes_follow_the_record_contract(schema):
    components = schema["components"]
    decision = components["schemas"]["Decision"]["properties"]
    for field in RECORD_SCHEMA:
        assert field.name in decision and decision[field.name]["description"], field.name
    assert {"record", "attempts", "http_attempts", "reviews", "cost"} <= set(
        components["schemas"]["DecisionDetail"]["properties"])
    assert {"columns", "rows", "truncated", "limit"} <= set(components["schemas"]["SqlResponse"]["properties"])
    schemes = {s["type"] for s in components["securitySchemes"].values()}
    assert schemes == {"http", "apiKey"}
