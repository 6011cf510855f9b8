"""GET /api/v1/decisions/{trace_id}/{span_id}: the record, its attempts, HTTP attempts, reviews and costs.

The spans are sent over OTLP to a real server; costs are then repriced with a price
file, as `inferledger reprice` would do beside the running server.
"""
from __future__ import annotations

from datetime import date

import pytest
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from tests.api.keys import client, keyed_server
from tests.api.spans import PRICES, http_client, judge, review
from tests.conftest import wait_for_rows
from tests.otlp_builders import attributes, export_request
from warehouse.pricing import load_book, reprice

T1, T2, T3, T4 = (bytes([n]) * 16 for n in (0x11, 0x22, 0x33, 0x44))
A, B, C, D, E, R1, R2, R3, R4, HA, HB, HC = (bytes([n]) * 8 for n in range(0xa1, 0xad))
def spans() -> list[Span]:
    retry = judge(T1, B, 1, inferledger__request__key="req-1", inferledger__attempt=1,
                  inferledger__decision__label="approve", inferledger__subject__id="customer-9")
    retry.links.add(trace_id=T1, span_id=A, attributes=attributes({"inferledger.link.type": "retry_of"}))
    return [
        judge(T1, A, 0, error="RateLimitError", inferledger__request__key="req-1", inferledger__attempt=0),
        http_client(T1, HA, A, 0, 429),
        retry,
        http_client(T1, HB, B, 1, 200),
        judge(T2, D, 60, inferledger__request__key="req-1", inferledger__attempt=2),  # replayed in another trace
        review(T1, R1, 5, parent=B),
        review(T3, R2, 3600, link=(T1, B), outcome="overturned"),
        judge(T1, C, 2, inferledger__decision__label="decline"),  # another decision in the same trace
        review(T1, R3, 6, parent=C),
        http_client(T1, HC, C, 2, 200),
    ]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("detail") / "data"
    with keyed_server(data_dir) as (server, keys):
        with client(server, keys.acme_ingest) as sender:
            answer = sender.post("/v1/traces", content=export_request(spans()).SerializeToString(),
                                 headers={"Content-Type": "application/x-protobuf"})
            assert answer.status_code == 200, answer.content
        with client(server, keys.ingest) as sender:  # another tenant's attempt and review of the same decision
            other = export_request([judge(T4, E, 61, inferledger__request__key="req-1", inferledger__attempt=3),
                                    review(T4, R4, 7200, link=(T1, B), outcome="escalated")],
                                   inferledger__tenant__id="globex")
            assert sender.post("/v1/traces", content=other.SerializeToString(),
                               headers={"Content-Type": "application/x-protobuf"}).status_code == 200
        wait_for_rows(data_dir, "select * from inferences", 9)
        wait_for_rows(data_dir, "select * from http_attempts", 3)
        price_file = data_dir.parent / "prices.toml"
        price_file.write_text(PRICES)
        day = date(2025, 11, 23)
        result = reprice(data_dir, load_book(price_file), day, day, actor="tester", reason="contract prices")
        assert result.cost_version == 1
        yield server, keys


def test_record_with_attempts_http_attempts_and_reviews(served):
    server, keys = served
    with client(server, keys.acme_auditor) as api:
        answer = api.get(f"/api/v1/decisions/{T1.hex()}/{B.hex()}")
    assert answer.status_code == 200, answer.text
    found = answer.json()
    record = found["record"]
    assert (record["span_id"], record["decision_label"], record["tenant"]) == (B.hex(), "approve", "acme")
    assert record["subject_id"] and "customer-9" not in answer.text
    assert [(a["span_id"], a["attempt"]) for a in found["attempts"]] == [(A.hex(), 0), (B.hex(), 1), (D.hex(), 2)]
    assert found["attempts"][0]["status"] == "error" and found["attempts"][1]["retry_of_span_id"] == A.hex()
    assert [(h["span_id"], h["parent_span_id"], h["status_code"]) for h in found["http_attempts"]] == [
        (HA.hex(), A.hex(), 429), (HB.hex(), B.hex(), 200)]
    assert [(r["span_id"], r["review_outcome"], r["reviewed_span_id"]) for r in found["reviews"]] == [
        (R1.hex(), "upheld", B.hex()), (R2.hex(), "overturned", B.hex())]


def test_cost_provenance_lists_every_version(served):
    server, keys = served
    with client(server, keys.auditor) as api:
        cost = api.get(f"/api/v1/decisions/{T1.hex()}/{B.hex()}").json()["cost"]
    # 1000 input tokens at $1.00/Mtok + 500 output tokens at $2.00/Mtok = $0.002
    assert cost["cost_usd"] == pytest.approx(0.002) and cost["cost_source"] == "computed"
    assert cost["cost_version"] == 1 and cost["price_ref"].startswith("acme/judge")
    landing, repriced = cost["versions"]
    assert (landing["cost_version"], landing["kind"], landing["cost_usd"], landing["cost_source"]) == (
        0, "landing", None, "unpriced")
    assert (repriced["cost_version"], repriced["kind"], repriced["actor"], repriced["reason"]) == (
        1, "reprice", "tester", "contract prices")
    assert repriced["cost_usd"] == pytest.approx(0.002) and repriced["at"]


def test_unknown_record_is_404_and_bad_ids_are_422(served):
    server, keys = served
    with client(server, keys.auditor) as api:
        missing = api.get(f"/api/v1/decisions/{'0' * 32}/{'0' * 16}")
        assert missing.status_code == 404 and "no record" in missing.json()["detail"]
        assert api.get("/api/v1/decisions/xyz/abc").status_code == 422


def test_an_unscoped_auditor_also_sees_other_tenants_attempts_and_reviews(served):
    server, keys = served
    with client(server, keys.auditor) as api:
        found = api.get(f"/api/v1/decisions/{T1.hex()}/{B.hex()}").json()
    assert [a["span_id"] for a in found["attempts"]] == [A.hex(), B.hex(), D.hex(), E.hex()]
    assert [(r["span_id"], r["tenant"]) for r in found["reviews"]] == [
        (R1.hex(), "acme"), (R2.hex(), "acme"), (R4.hex(), "globex")]
