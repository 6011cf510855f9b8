"""Human review cost: reviewer time x the configured reviewer-hour cost, as landed, repriced and served."""
from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest

from inferledger.app import RunningServer
from tests.collector.builders import add_attributes
from tests.conftest import make_config, wait_for_rows
from tests.otlp_builders import export_request, genai_span
from tests.warehouse.pricing.records import DAY, price_rows, record
from warehouse.catalog import query
from warehouse.pricing.book import load_book
from warehouse.pricing.cost import PricingDefaults
from warehouse.pricing.reprice import reprice

BOOK = load_book(None)
AT_48 = PricingDefaults(reviewer_hour_usd=48.0)


def review(seconds: float | None, **fields) -> dict:
    return record(operation="review", review_outcome="overturned", review_override=True,
                  review_duration_s=seconds, **fields)


def test_review_cost_by_hand():
    rows = price_rows(BOOK, review(90.0), review(2700.0), review(None), review(30.0, reported_cost_usd=2.0),
                      defaults=AT_48)
    # 90 s = 0.025 h x $48 = $1.20; 45 min = 0.75 h x $48 = $36.00
    assert rows[0]["cost_usd"] == pytest.approx(1.20) and rows[1]["cost_usd"] == pytest.approx(36.00)
    assert rows[0]["cost_source"] == "human_review" and rows[0]["price_ref"] == "config:pricing.reviewer_hour_usd=48"
    assert rows[2] == {"cost_usd": None, "computed_cost_usd": None, "cost_source": "unpriced", "price_ref": None}
    # a cost reported on the span wins; 30 s at $48/h = $0.40 stays beside it
    assert rows[3]["cost_usd"] == 2.0 and rows[3]["cost_source"] == "reported"
    assert rows[3]["computed_cost_usd"] == pytest.approx(0.40)


def test_reviews_are_unpriced_until_the_hourly_cost_is_configured():
    [row] = price_rows(BOOK, review(90.0))
    assert row == {"cost_usd": None, "computed_cost_usd": None, "cost_source": "unpriced", "price_ref": None}


def test_inferences_beside_reviews_keep_their_token_cost():
    chat = record(provider="openai", response_model="gpt-4o", input_tokens=1000, output_tokens=100)
    [priced, reviewed] = price_rows(BOOK, chat, review(90.0), defaults=AT_48)
    # gpt-4o list price: (1,000 x 2.50 + 100 x 10.00) / 1e6 = $0.0035
    assert priced["cost_usd"] == pytest.approx(0.0035) and priced["cost_source"] == "computed"
    assert reviewed["cost_source"] == "human_review"


def test_reprice_applies_a_new_hourly_cost(tmp_path):
    from tests.warehouse.pricing.records import land

    land(tmp_path, [review(90.0), review(600.0)], BOOK)  # landed without an hourly cost: unpriced
    assert query(tmp_path, "select count(*) as n from inferences where cost_source = 'unpriced'")["n"][0].as_py() == 2
    result = reprice(tmp_path, BOOK, DAY.date(), DAY.date(), reason="reviewer cost set",
                     defaults=PricingDefaults(reviewer_hour_usd=60.0))
    # 90 s at $60/h = $1.50; 600 s = $10.00
    assert result.changed == 2 and result.total_after_usd == pytest.approx(11.50)
    costs = query(tmp_path, "select cost_usd, cost_source, price_ref, cost_version from inferences "
                            "order by cost_usd").to_pylist()
    assert [c["cost_usd"] for c in costs] == pytest.approx([1.50, 10.00])
    assert {(c["cost_source"], c["price_ref"], c["cost_version"]) for c in costs} == {
        ("human_review", "config:pricing.reviewer_hour_usd=60", 1)}


def test_a_review_span_sent_over_otlp_is_priced_at_landing(tmp_path, monkeypatch):
    monkeypatch.setenv("INFERLEDGER_SUBJECT_KEY", "00" * 32)
    start = int(datetime(2026, 5, 4, 10, tzinfo=UTC).timestamp() * 1e9)
    decision = genai_span(start_ns=start, **{"inferledger.decision.label": "decline"})
    reviewed = genai_span(start_ns=start + 60_000_000_000, trace_id=decision.trace_id)
    del reviewed.attributes[:]
    add_attributes(reviewed.attributes, {"inferledger.review.outcome": "overturned",
                                         "inferledger.review.override": True,
                                         "inferledger.review.reviewer.id": "reviewer-7",
                                         "inferledger.review.duration_s": 150.0})
    reviewed.links.add(trace_id=decision.trace_id, span_id=decision.span_id)
    with RunningServer(make_config(tmp_path / "data", pricing__reviewer_hour_usd=36.0)) as server:
        reply = httpx.post(server.http_url + "/v1/traces", headers={"Content-Type": "application/x-protobuf"},
                           content=export_request([decision, reviewed]).SerializeToString())
        assert reply.status_code == 200
        rows = wait_for_rows(tmp_path / "data", "select * from inferences where operation = 'review'", 1)
    # 150 s = 0.041666 h x $36 = $1.50
    assert rows[0]["cost_usd"] == pytest.approx(1.50) and rows[0]["cost_source"] == "human_review"
    assert rows[0]["reviewed_span_id"] == decision.span_id.hex()
    assert rows[0]["price_ref"] == "config:pricing.reviewer_hour_usd=36"


def test_configuration_refuses_a_non_positive_hourly_cost(tmp_path):
    from inferledger.config import ConfigError

    with pytest.raises(ConfigError, match="pricing.reviewer_hour_usd"):
        make_config(tmp_path, pricing__reviewer_hour_usd=0)
    assert make_config(tmp_path).pricing.reviewer_hour_usd is None
