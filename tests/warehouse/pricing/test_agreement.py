"""The vectorized costing agrees with genai-prices' own calculator, and real usage payloads map onto it.

genai-prices computes one request at a time with Decimals; ``price_table``
computes whole columns in float64. Both must give the same price for the same
usage, model, tier and time, so the matching and the token arithmetic (leaf
classes, long-context tiers, tier variants, time windows) follow the list's own
semantics rather than our reading of them.
"""
from __future__ import annotations

import itertools
from datetime import UTC, datetime

import genai_prices
import pytest
from genai_prices import Usage

from tests.warehouse.pricing.records import price_rows, record
from warehouse.pricing.book import load_book, tier_context

BOOK = load_book()
MODELS = [  # (our provider name, genai-prices provider id, model)
    ("openai", "openai", "gpt-4o"), ("openai", "openai", "gpt-4o-mini"), ("openai", "openai", "gpt-4o-2024-05-13"),
    ("openai", "openai", "o3"), ("anthropic", "anthropic", "claude-sonnet-4-5"),
    ("anthropic", "anthropic", "claude-sonnet-4-20250514"), ("anthropic", "anthropic", "claude-sonnet-4-6"),
    ("gcp.gemini", "google", "gemini-2.5-pro"), ("deepseek", "deepseek", "deepseek-chat"),
    ("perplexity", "perplexity", "sonar"), ("perplexity", "perplexity", "sonar-deep-research"),
    ("aws.bedrock", "aws", "us.anthropic.claude-sonnet-4-5-20250929-v1:0"), ("azure.ai.openai", "azure", "gpt-4o"),
]
USAGES = [  # (input incl. cache, cache read, cache write, output incl. reasoning, reasoning)
    (1200, 0, 0, 300, 0), (5000, 3000, 1000, 800, 500), (250000, 100000, 20000, 4000, 1000), (200001, 0, 0, 10, 0),
]
TIERS = ["standard", "batch", "flex", "priority"]
TIMES = [datetime(2025, 3, 1, 9, 0, tzinfo=UTC), datetime(2026, 11, 2, 3, 0, tzinfo=UTC),
         datetime(2026, 11, 2, 20, 0, tzinfo=UTC)]


def genai_cost(provider_id, model, usage, tier, at) -> float:
    i, cr, cw, o, r = usage
    calc = genai_prices.calc_price(
        Usage(input_tokens=i, cache_read_tokens=cr, cache_write_tokens=cw, output_tokens=o,
              output_reasoning_tokens=r),
        model, provider_id=provider_id, genai_request_timestamp=at, price_context=tier_context(tier))
    return float(calc.total_price)


def test_price_table_matches_genai_prices_calc_price():
    combos = list(itertools.product(MODELS, USAGES, TIERS, TIMES))
    rows = [record(provider=provider, response_model=model, pricing_tier=tier, start_time=at,
                   input_tokens=u[0], cache_read_tokens=u[1], cache_write_tokens=u[2], output_tokens=u[3],
                   reasoning_tokens=u[4])
            for (provider, _, model), u, tier, at in combos]
    priced = price_rows(BOOK, *rows)  # one table: every model, tier and time at once
    for ((_, provider_id, model), usage, tier, at), got in zip(combos, priced):
        expected = genai_cost(provider_id, model, usage, tier, at)
        assert got["cost_usd"] == pytest.approx(expected, rel=1e-12), (model, usage, tier, at)


def test_an_openai_chat_completion_payload():
    """A Chat Completions response as the OpenAI API sends it (cached and reasoning tokens included)."""
    response = {
        "id": "chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG", "object": "chat.completion", "created": 1762084800,
        "model": "o3-2025-04-16", "service_tier": "default",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "..."}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 2006, "completion_tokens": 300, "total_tokens": 2306,
                  "prompt_tokens_details": {"cached_tokens": 1920, "audio_tokens": 0},
                  "completion_tokens_details": {"reasoning_tokens": 192, "audio_tokens": 0,
                                                "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}},
    }
    # How the collector records it (OTel GenAI): input = prompt tokens (cache inside), output = completion
    # tokens (reasoning inside), served model from the response, tier from openai.response.service_tier.
    usage = response["usage"]
    row = record(provider="openai", request_model="o3", response_model=response["model"],
                 pricing_tier=response["service_tier"], input_tokens=usage["prompt_tokens"],
                 cache_read_tokens=usage["prompt_tokens_details"]["cached_tokens"],
                 output_tokens=usage["completion_tokens"],
                 reasoning_tokens=usage["completion_tokens_details"]["reasoning_tokens"])
    [priced] = price_rows(BOOK, row)
    # o3 since 2025-06-10: input 2, cache read 0.50, output 8 (reasoning inside output):
    # (2006-1920)*2 + 1920*0.50 + 300*8 = 172 + 960 + 2400 = 3532 µ$
    assert priced["cost_usd"] == pytest.approx(0.003532, rel=1e-12)
    extracted = genai_prices.extract_usage(response, provider_id="openai", api_flavor="chat")
    assert float(extracted.calc_price(genai_request_timestamp=row["start_time"]).total_price) == pytest.approx(
        priced["cost_usd"], rel=1e-12)


def test_an_anthropic_messages_payload():
    """An Anthropic Messages response: its input_tokens exclude cache reads and writes."""
    response = {
        "id": "msg_01XFDUDYJgAACzvnptvVoYEL", "type": "message", "role": "assistant",
        "model": "claude-sonnet-4-5-20250929", "stop_reason": "end_turn",
        "content": [{"type": "text", "text": "..."}],
        "usage": {"input_tokens": 2095, "cache_creation_input_tokens": 2051, "cache_read_input_tokens": 51300,
                  "output_tokens": 503},
    }
    usage = response["usage"]
    # The collector folds Anthropic's cache counts into input (OTel rule): 2095 + 2051 + 51300 = 55446.
    row = record(provider="anthropic", response_model=response["model"],
                 input_tokens=usage["input_tokens"] + usage["cache_creation_input_tokens"]
                 + usage["cache_read_input_tokens"],
                 cache_write_tokens=usage["cache_creation_input_tokens"],
                 cache_read_tokens=usage["cache_read_input_tokens"], output_tokens=usage["output_tokens"])
    [priced] = price_rows(BOOK, row)
    # claude-sonnet-4-5 below 200k: input 3, cache write 3.75, cache read 0.30, output 15:
    # 2095*3 + 2051*3.75 + 51300*0.30 + 503*15 = 6285 + 7691.25 + 15390 + 7545 = 36911.25 µ$
    assert priced["cost_usd"] == pytest.approx(0.03691125, rel=1e-12)
    extracted = genai_prices.extract_usage(response, provider_id="anthropic")
    assert float(extracted.calc_price(genai_request_timestamp=row["start_time"]).total_price) == pytest.approx(
        priced["cost_usd"], rel=1e-12)
