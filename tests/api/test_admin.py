"""Admin routes: reprice, the effective configuration with secrets hidden, erasure of a subject."""
from __future__ import annotations

from datetime import UTC, datetime

import pytest

from collector.pseudonymize import pseudonymize
from inferledger.api_admin import redact
from tests.api.keys import client, keyed_server
from tests.conftest import wait_for_rows
from tests.otlp_builders import export_request, genai_span
from tests.warehouse.jobs.records import land_records, record
from warehouse.catalog import query
from warehouse.manifest import verify_chain

DAY = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """Two gpt-4o records landed without costs (as if the price book had been missing), then a server."""
    data_dir = tmp_path_factory.mktemp("admin") / "data"
    land_records(data_dir, [record(DAY, provider="openai", request_model="gpt-4o", response_model="gpt-4o",
                                   input_tokens=1000, output_tokens=100, cost_source="unpriced") for _ in range(2)])
    with keyed_server(data_dir) as (server, keys):
        yield server, keys


def test_reprice_writes_a_cost_version_logged_with_the_key(served):
    server, keys = served
    body = {"from": "2026-03-02", "to": "2026-03-02", "reason": "price book was missing"}
    with client(server, keys.admin) as api:
        dry = api.post("/api/v1/admin/reprice", json={**body, "dry_run": True}).json()
        done = api.post("/api/v1/admin/reprice", json=body).json()
        assert api.post("/api/v1/admin/reprice", json={**body, "from": "2026-03-03"}).status_code == 400
        log = api.post("/api/v1/sql", json={"sql": "SELECT actor, reason FROM repricings"}).json()["rows"]
    assert dry["cost_version"] is None and dry["changed"] == 2
    # gpt-4o list price: $2.50 per million input tokens, $10.00 per million output tokens
    # 2 x (1000 x 2.50 + 100 x 10.00) / 1e6 = 2 x 0.0035 = 0.007
    assert done["cost_version"] == 1 and (done["records"], done["changed"]) == (2, 2)
    assert done["total_before_usd"] == 0 and done["total_after_usd"] == pytest.approx(0.007)
    assert (done["unpriced_before"], done["unpriced_after"]) == (2, 0)
    assert done["diff"][0]["day"] == "2026-03-02" and done["diff"][0]["after_usd"] == pytest.approx(0.007)
    assert log == [[f"api-key:{keys.ids['admin']} (test admin)", "price book was missing"]]


def test_config_is_the_effective_configuration_without_secrets(served):
    server, keys = served
    with client(server, keys.admin) as api:
        config = api.get("/api/v1/admin/config").json()
    assert config["auth"]["mode"] == "required" and config["data_dir"] == str(server.data_dir)
    assert config["ingest"]["max_tokens"] == 10_000_000  # "tokens" is not a secret
    assert config["privacy"]["subject_key_env"] == "INFERLEDGER_SUBJECT_KEY"  # a variable's name, not its value


def test_redact_hides_secret_values_and_url_credentials():
    settings = {"smtp": {"password": "hunter2", "password_env": "SMTP_PASSWORD", "user": "ops"},
                "signing": {"private_key": "abc", "api_token": "t0k3n", "max_tokens": 5},
                "webhooks": [{"url": "https://bot:s3cret@hooks.example/x", "secret": None}]}
    assert redact(settings) == {
        "smtp": {"password": "***", "password_env": "SMTP_PASSWORD", "user": "ops"},
        "signing": {"private_key": "***", "api_token": "***", "max_tokens": 5},
        "webhooks": [{"url": "https://***@hooks.example/x", "secret": None}]}


def test_erase_removes_the_subject_and_the_log_still_verifies(served):
    server, keys = served
    spans = [genai_span(inferledger__subject__id="customer-42", inferledger__decision__label="decline"),
             genai_span(inferledger__subject__id="customer-43", inferledger__decision__label="approve")]
    with client(server, keys.ingest) as sender:
        assert sender.post("/v1/traces", content=export_request(spans).SerializeToString(),
                           headers={"Content-Type": "application/x-protobuf"}).status_code == 200
    wait_for_rows(server.data_dir, "select * from inferences where subject_id is not null", 2)
    with client(server, keys.admin) as api:
        assert api.get("/api/v1/decisions", params={"subject": "customer-42"}).json()["count"] == 1
        receipt = api.post("/api/v1/admin/erase", json={"subject": "customer-42", "reason": "DSR-17"})
        assert receipt.status_code == 200, receipt.text
        assert receipt.json()["rows_affected"] >= 1 and receipt.json()["reason"] == "DSR-17"
        assert receipt.json()["not_erased"] == []
        pseudonym = pseudonymize("customer-42", server.pipeline.api.subject_key)
        assert query(server.data_dir, "SELECT count(*) AS n FROM access_log WHERE parameters LIKE ?",
                     [f"%{pseudonym}%"]).to_pylist() == [{"n": 0}]  # the lookup above was erased too
        assert api.get("/api/v1/decisions", params={"subject": "customer-42"}).json()["count"] == 0
        assert api.get("/api/v1/decisions", params={"subject": "customer-43"}).json()["count"] == 1
    assert verify_chain(server.data_dir) == []
