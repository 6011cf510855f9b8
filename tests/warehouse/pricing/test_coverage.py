"""`prices check`: every provider and model in the warehouse, with the entry that prices it."""
from __future__ import annotations

import pyarrow as pa

from tests.warehouse.pricing.records import PRICES, land, record, table
from warehouse.catalog import connect
from warehouse.pricing.book import load_book
from warehouse.pricing.cost import Coverage, landing_transform, price_coverage


def test_price_coverage_lists_matches_and_misses(tmp_path):
    book = load_book(PRICES / "acme.toml")
    seen = [("openai", "gpt-4o-2024-08-06", 3), ("azure.ai.openai", "prod-gpt4o", 2),
            ("anthropic", "claude-sonnet-4-5-20250929", 1), ("mystery", "mystery-7b", 4),
            ("openai", "ft:gpt-4o-mini-2024-07-18:acme::b7x2", 1), (None, "house-llm", 1)]
    rows = [record(provider=p, response_model=m, input_tokens=10, output_tokens=1) for p, m, n in seen
            for _ in range(n)]
    rows.append(record(provider="self-hosted", response_model="fraud-xgb", compute_pool="fraud-gpu"))
    land(tmp_path / "data", rows, book)
    con = connect(tmp_path / "data")
    try:
        coverage = price_coverage(con, book)
    finally:
        con.close()
    assert coverage == [
        Coverage("mystery", "mystery-7b", 4, None, "none"),      # misses first, busiest first
        Coverage(None, "house-llm", 1, None, "none"),
        Coverage("openai", "gpt-4o-2024-08-06", 3, "acme/gpt-4o-negotiated", "exact"),
        Coverage("azure.ai.openai", "prod-gpt4o", 2, "openai/gpt-4o", "alias"),
        Coverage("anthropic", "claude-sonnet-4-5-20250929", 1, "anthropic/claude-sonnet-4-5", "pattern"),
        Coverage("openai", "ft:gpt-4o-mini-2024-07-18:acme::b7x2", 1, "acme/ft-gpt-4o-mini", "pattern"),
        Coverage("self-hosted", "fraud-xgb", 1, "pool:fraud-gpu", "pool"),
    ]


def test_landing_transform_prices_inferences_and_passes_other_datasets():
    transform = landing_transform(load_book())
    inferences = table(record(provider="openai", response_model="gpt-4o-mini", input_tokens=2000, output_tokens=500))
    assert transform("inferences", inferences)["cost_usd"].to_pylist() == [0.0006]
    attempts = pa.table({"trace_id": ["a" * 32], "status_code": [429]})
    assert transform("http_attempts", attempts) is attempts
