"""Costs of spans from real instrumentations: the openai client, instrumented, against a fake OpenAI server.

Each instrumentation reports the same answer its own way (OpenLLMetry, OpenInference,
OTel openai-v2); after normalization every one must cost the same, worked out by hand.
"""
from __future__ import annotations

from datetime import UTC, datetime

import pyarrow as pa
import pytest

from collector.normalize import NormalizeSettings, normalize_request
from tests.instrumented import capture_once
from warehouse.pricing.book import load_book
from warehouse.pricing.cost import price_table

BOOK = load_book()
CASES = [
    # o4-mini (served as o4-mini-2025-04-16): input 1.10, cache read 0.275, output 4.40; reasoning inside output.
    # prompt 2048 with 1536 cached, completion 300 with 192 reasoning, service tier "default":
    # 512*1.10 + 1536*0.275 + 300*4.40 = 563.2 + 422.4 + 1320 = 2305.6 µ$
    ("chat_cached_reasoning", ("openllmetry", "openinference"), 0.0023056, "openai/o4-mini@1970-01-01"),
    # openai-v2 2.4b0 reports only gen_ai.usage.input_tokens/output_tokens, no cached tokens: the cache
    # discount cannot be seen, every prompt token is billed as input. 2048*1.10 + 300*4.40 = 3572.8 µ$
    ("chat_cached_reasoning", ("openai_v2",), 0.0035728, "openai/o4-mini@1970-01-01"),
    # gpt-4o (served as gpt-4o-2024-08-06): input 2.50, cache read 1.25, output 10.
    # Responses API, 1200 input with 1024 cached, 80 output: 176*2.5 + 1024*1.25 + 80*10 = 440 + 1280 + 800 µ$
    ("responses", ("openllmetry", "openinference"), 0.00252, "openai/gpt-4o@1970-01-01"),
    # text-embedding-3-small: input 0.02; 6 tokens = 0.12 µ$
    ("embeddings", ("openllmetry", "openinference", "openai_v2"), 1.2e-7, "openai/text-embedding-3-small@1970-01-01"),
]


@pytest.mark.parametrize("scenario, instrumentation, cost, ref",
                         [(s, i, c, r) for s, insts, c, r in CASES for i in insts],
                         ids=[f"{s}-{i}" for s, insts, _, _ in CASES for i in insts])
def test_real_instrumentation_payload_is_priced(scenario, instrumentation, cost, ref):
    request = capture_once(instrumentation, scenario).request
    batch = normalize_request(request, NormalizeSettings(subject_key=b"\0" * 32), datetime.now(UTC))
    priced = price_table(pa.Table.from_batches([batch.inferences]), BOOK)
    [row] = priced.select(["cost_usd", "cost_source", "price_ref"]).to_pylist()
    assert (row["cost_source"], row["price_ref"]) == ("computed", ref)
    assert row["cost_usd"] == pytest.approx(cost, rel=1e-12)
