"""Costs worked out by hand from the price definitions.

Prices are genai-prices 0.2.3's (USD per million tokens, "MTok") and
tests/data/prices/acme.toml's. Token counts follow the OTel rule the collector
normalizes every convention to: input includes cache reads and writes, output
includes reasoning. Each case shows its arithmetic in micro-dollars (µ$).
"""
from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tests.warehouse.pricing.records import PRICES, price_rows, record
from warehouse.pricing.book import load_book
from warehouse.pricing.cost import PricingDefaults

BOOKS = {"list": load_book(), "acme": load_book(PRICES / "acme.toml")}


def tokens(i=None, o=None, cr=None, cw=None, r=None) -> dict:
    return {"input_tokens": i, "output_tokens": o, "cache_read_tokens": cr, "cache_write_tokens": cw,
            "reasoning_tokens": r}


def when(*args) -> dict:
    return {"start_time": datetime(*args, tzinfo=UTC)}


CASES = [
    # -- plain, cached, cache writes, reasoning, per-request
    ("plain input and output", "list",
     # gpt-4o-mini: input 0.15, output 0.60. 2000*0.15 + 500*0.60 = 300 + 300 = 600 µ$
     dict(provider="openai", response_model="gpt-4o-mini", **tokens(2000, 500)),
     0.0006, "computed", "openai/gpt-4o-mini@1970-01-01"),
    ("cached reads inside input (OTel GenAI, OpenAI usage)", "list",
     # gpt-4o: input 2.50, cache read 1.25, output 10. (1000-400)*2.50 + 400*1.25 + 200*10 = 1500+500+2000 µ$
     dict(provider="openai", response_model="gpt-4o", **tokens(1000, 200, cr=400)),
     0.004, "computed", "openai/gpt-4o@1970-01-01"),
    ("cache read and write inside llm.token_count.prompt (OpenInference, Anthropic)", "list",
     # claude-sonnet-4-0: input 3, cache write 3.75, cache read 0.30, output 15.
     # (5000-3000-1000)*3 + 3000*0.30 + 1000*3.75 + 400*15 = 3000 + 900 + 3750 + 6000 = 13650 µ$
     dict(provider="anthropic", response_model="claude-sonnet-4-20250514", **tokens(5000, 400, cr=3000, cw=1000)),
     0.01365, "computed", "anthropic/claude-sonnet-4-0@1970-01-01"),
    ("cache counted outside input and not folded in: not billed negative, unpriced", "list",
     # 3000 cache reads cannot be part of 1000 input tokens; the collector folds such counts in
     # (token_notes) before they get here, so a record that still contradicts itself is not priced.
     dict(provider="anthropic", response_model="claude-sonnet-4-20250514", **tokens(1000, 400, cr=3000)),
     None, "unpriced", None),
    ("reasoning inside output, priced as output", "list",
     # o3 from 2025-06-10: input 2, output 8; reasoning has no price of its own.
     # 1000*2 + 3000*8 = 2000 + 24000 = 26000 µ$
     dict(provider="openai", response_model="o3", **tokens(1000, 3000, r=2500)),
     0.026, "computed", "openai/o3@2025-06-10"),
    ("reasoning priced separately by the entry", "list",
     # sonar-deep-research: input 2, output 8, reasoning 3.
     # 1000*2 + (3000-2500)*8 + 2500*3 = 2000 + 4000 + 7500 = 13500 µ$
     dict(provider="perplexity", response_model="sonar-deep-research", **tokens(1000, 3000, r=2500)),
     0.0135, "computed", "perplexity/sonar-deep-research@1970-01-01"),
    ("per-request fee on top of tokens", "list",
     # sonar: input 1, output 1, $12 per 1000 requests. 2000*1 + 500*1 = 2500 µ$ + 12000 µ$ = 14500 µ$
     dict(provider="perplexity", response_model="sonar", **tokens(2000, 500)),
     0.0145, "computed", "perplexity/sonar@1970-01-01"),
    # -- long-context tiers: decided by the whole input, cache included; every tiered class moves
    ("tier crossed because cached input counts", "list",
     # claude-sonnet-4-5 above 200k input: input 6, cache read 0.60, output 22.50 (base 3 / 0.30 / 15).
     # Whole input 210000 > 200000, though only 110000 are uncached:
     # 110000*6 + 100000*0.60 + 1000*22.50 = 660000 + 60000 + 22500 = 742500 µ$
     dict(provider="anthropic", response_model="claude-sonnet-4-5", **tokens(210000, 1000, cr=100000)),
     0.7425, "computed", "anthropic/claude-sonnet-4-5@1970-01-01"),
    ("exactly at the tier start stays at the base price", "list",
     # 200000 is not above 200000: 100000*3 + 100000*0.30 + 1000*15 = 300000 + 30000 + 15000 = 345000 µ$
     dict(provider="anthropic", response_model="claude-sonnet-4-5", **tokens(200000, 1000, cr=100000)),
     0.345, "computed", "anthropic/claude-sonnet-4-5@1970-01-01"),
    ("Gemini long-context tier, output repriced too", "list",
     # gemini-2.5-pro above 200k: input 2.50, output 15 (base 1.25 / 10). 300000*2.5 + 1000*15 = 765000 µ$
     dict(provider="gcp.vertex_ai", response_model="gemini-2.5-pro", **tokens(300000, 1000)),
     0.765, "computed", "google/gemini-2.5-pro@1970-01-01"),
    # -- service tiers: the list's own prices, class by class
    ("batch: class by class, cached input keeps the standard price", "list",
     # gpt-4o batch from 2026-10-14: input 1.25, output 5; the batch table has no cached rate: 1.25 stays.
     # 600*1.25 + 400*1.25 + 200*5 = 750 + 500 + 1000 = 2250 µ$
     dict(provider="openai", response_model="gpt-4o", pricing_tier="batch", **tokens(1000, 200, cr=400)),
     0.00225, "computed", "openai/gpt-4o:batch@2026-10-14"),
    ("batch on a day the list has no batch price yet: standard price, no guessed discount", "list",
     dict(provider="openai", response_model="gpt-4o", pricing_tier="batch", **tokens(1000, 200, cr=400),
          **when(2026, 10, 1, 12)),
     0.004, "computed", "openai/gpt-4o@1970-01-01"),
    ("batch with a tier crossing", "list",
     # claude-sonnet-4-5 batch above 200k: input 3, cache read 0.30, output 11.25.
     # 150000*3 + 100000*0.30 + 2000*11.25 = 450000 + 30000 + 22500 = 502500 µ$
     dict(provider="anthropic", response_model="claude-sonnet-4-5", pricing_tier="batch",
          **tokens(250000, 2000, cr=100000)),
     0.5025, "computed", "anthropic/claude-sonnet-4-5:batch@2026-10-14"),
    ("flex", "list",
     # o3 flex from 2026-10-12: input 1, cache read 0.25, output 4. 800*1 + 200*0.25 + 1000*4 = 4850 µ$
     dict(provider="openai", response_model="o3", pricing_tier="flex", **tokens(1000, 1000, cr=200)),
     0.00485, "computed", "openai/o3:flex@2026-10-12"),
    ("flex on a model the list has no flex price for: the standard price", "list",
     dict(provider="openai", response_model="gpt-4o", pricing_tier="flex", **tokens(1000, 200, cr=400)),
     0.004, "computed", "openai/gpt-4o@1970-01-01"),
    ("OpenAI's 'default' service tier is the standard price", "list",
     dict(provider="openai", response_model="gpt-4o", pricing_tier="default", **tokens(1000, 200, cr=400)),
     0.004, "computed", "openai/gpt-4o@1970-01-01"),
    ("Azure reaches OpenAI prices through genai-prices' fallback, which carries no tier prices", "list",
     dict(provider="azure.ai.openai", response_model="gpt-4o", pricing_tier="batch", **tokens(1000, 200, cr=400)),
     0.004, "computed", "openai/gpt-4o@1970-01-01"),
    # -- unknown models and reported costs
    ("unknown model: NULL, never 0", "list",
     dict(provider="mystery", response_model="mystery-7b", **tokens(1000, 100)),
     None, "unpriced", None),
    ("unknown model with a reported cost", "list",
     dict(provider="mystery", response_model="mystery-7b", reported_cost_usd=0.5, **tokens(1000, 100)),
     0.5, "reported", None),
    ("known model without any usage: unpriced, not 0", "list",
     dict(provider="openai", response_model="gpt-4o"),
     None, "unpriced", None),
    ("an application cache answered: no provider call, 0", "list",
     dict(provider="openai", response_model="gpt-4o", cache_hit=True),
     0.0, "computed", "inferledger:app-cache"),
    # -- model matching
    ("dated snapshot with its own list price", "list",
     # gpt-4o-2024-05-13: input 5, output 15. 1000*5 + 100*15 = 6500 µ$
     dict(provider="openai", response_model="gpt-4o-2024-05-13", **tokens(1000, 100)),
     0.0065, "computed", "openai/gpt-4o-2024-05-13@1970-01-01"),
    ("dated snapshot the list prices as its base model", "list",
     # gpt-4o-2024-08-06 is named in gpt-4o's entry: 1000*2.5 + 100*10 = 3500 µ$
     dict(provider="openai", response_model="gpt-4o-2024-08-06", **tokens(1000, 100)),
     0.0035, "computed", "openai/gpt-4o@1970-01-01"),
    ("compact date (LiteLLM, OpenRouter) read as the dated snapshot", "list",
     dict(provider="openai", response_model="gpt-4o-20240806", **tokens(1000, 100)),
     0.0035, "computed", "openai/gpt-4o@1970-01-01"),
    ("provider prefix stripped, provider taken from it", "list",
     dict(provider=None, response_model="openai/gpt-4o", **tokens(1000, 100)),
     0.0035, "computed", "openai/gpt-4o@1970-01-01"),
    ("the served model is priced, not the requested one", "list",
     dict(provider="openai", request_model="gpt-4o", response_model="gpt-4o-2024-05-13", **tokens(1000, 100)),
     0.0065, "computed", "openai/gpt-4o-2024-05-13@1970-01-01"),
    ("served model unknown: the requested model is priced", "list",
     dict(provider="openai", request_model="gpt-4o-mini", response_model="proxy-route-7", **tokens(2000, 500)),
     0.0006, "computed", "openai/gpt-4o-mini@1970-01-01"),
    # -- prices that change with time
    ("a list price before its change", "list",
     # o3 before 2025-06-10: input 10, output 40. 1000*10 + 1000*40 = 50000 µ$
     dict(provider="openai", response_model="o3", **tokens(1000, 1000), **when(2025, 6, 9, 23, 59)),
     0.05, "computed", "openai/o3@1970-01-01"),
    ("the same list price from its change", "list",
     # 1000*2 + 1000*8 = 10000 µ$
     dict(provider="openai", response_model="o3", **tokens(1000, 1000), **when(2025, 6, 10, 0, 0)),
     0.01, "computed", "openai/o3@2025-06-10"),
    ("time-of-day price, peak (UTC 00:30-16:30)", "list",
     # deepseek-chat peak: input 0.27, output 1.10. 1000*0.27 + 200*1.10 = 270 + 220 = 490 µ$
     dict(provider="deepseek", response_model="deepseek-chat", **tokens(1000, 200), **when(2026, 11, 2, 16, 29)),
     0.00049, "computed", "deepseek/deepseek-chat[00:30-16:30]@1970-01-01"),
    ("time-of-day price, off-peak", "list",
     # off-peak: input 0.135, output 0.55. 1000*0.135 + 200*0.55 = 135 + 110 = 245 µ$
     dict(provider="deepseek", response_model="deepseek-chat", **tokens(1000, 200), **when(2026, 11, 2, 16, 30)),
     0.000245, "computed", "deepseek/deepseek-chat@1970-01-01"),
    # -- the user price file
    ("a user entry wins from its effective date", "acme",
     # negotiated gpt-4o: input 2, cache read 1, output 8. 600*2 + 400*1 + 200*8 = 1200 + 400 + 1600 = 3200 µ$
     dict(provider="openai", response_model="gpt-4o", **tokens(1000, 200, cr=400)),
     0.0032, "computed", "acme/gpt-4o-negotiated@2026-11-01"),
    ("before it, the list price", "acme",
     dict(provider="openai", response_model="gpt-4o", **tokens(1000, 200, cr=400), **when(2026, 10, 31, 23)),
     0.004, "computed", "openai/gpt-4o@1970-01-01"),
    ("Azure deployment name through a user alias (OpenAI's negotiated price is not Azure's)", "acme",
     dict(provider="azure.ai.openai", response_model="prod-gpt4o", **tokens(1000, 200, cr=400)),
     0.004, "computed", "openai/gpt-4o@1970-01-01"),
    ("Bedrock inference-profile ARN through a user alias", "acme",
     # Bedrock claude-sonnet-4-5 (us.): input 3.30, cache read 0.33, output 16.50.
     # 4000*3.30 + 6000*0.33 + 500*16.50 = 13200 + 1980 + 8250 = 23430 µ$
     dict(provider="aws.bedrock",
          response_model="arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/k3x9",
          **tokens(10000, 500, cr=6000)),
     0.02343, "computed", "aws/regional.anthropic.claude-sonnet-4-5-20250929-v1:0@1970-01-01"),
    ("fine-tuned model by a user pattern", "acme",
     # input 0.30, cache read 0.15, output 1.20. 8000*0.30 + 2000*0.15 + 1000*1.20 = 2400 + 300 + 1200 µ$
     dict(provider="openai", response_model="ft:gpt-4o-mini-2024-07-18:acme::b7x2", **tokens(10000, 1000, cr=2000)),
     0.0039, "computed", "acme/ft-gpt-4o-mini@2025-01-01"),
    ("a flat batch discount, because the entry says so", "acme",
     # 50% off every class: 8000*0.15 + 2000*0.075 + 1000*0.60 = 1200 + 150 + 600 = 1950 µ$
     dict(provider="openai", response_model="ft:gpt-4o-mini-2024-07-18:acme::b7x2", pricing_tier="batch",
          **tokens(10000, 1000, cr=2000)),
     0.00195, "computed", "acme/ft-gpt-4o-mini:batch@2025-01-01"),
    ("per-request price, no tokens", "acme",
     dict(provider="acme-ml", response_model="fraud-scorer"),
     0.002, "computed", "acme/fraud-scorer-api@2025-01-01"),
    ("user long-context tier in the flex tier; output keeps the standard price", "acme",
     # 150000 > 100000: flex input 1.00 on every input token; output 4.00. 150000*1 + 1000*4 = 154000 µ$
     dict(provider="acme-ml", response_model="acme-lc-1", pricing_tier="flex", **tokens(150000, 1000)),
     0.154, "computed", "acme/long-context:flex@2025-01-01"),
    # -- capacity pools
    ("per-second capacity pool", "acme",
     # $3.60 an hour = $0.001 a second; 1.5 s -> 0.0015
     dict(provider="self-hosted", response_model="embedder", compute_pool="embed-cpu", duration_ms=1500.0),
     0.0015, "capacity", "pool:embed-cpu@2026-01-01"),
    ("hourly pool: priced when its hour closes (capacity, NULL until then)", "acme",
     dict(provider="self-hosted", response_model="fraud-xgb", compute_pool="fraud-gpu", duration_ms=40.0),
     None, "capacity", "pool:fraud-gpu@2026-01-01"),
    ("a provider named after a pool", "acme",
     dict(provider="fraud-gpu", response_model="fraud-xgb", duration_ms=40.0),
     None, "capacity", "pool:fraud-gpu@2026-01-01"),
    ("a reported cost wins over capacity", "acme",
     dict(provider="self-hosted", response_model="embedder", compute_pool="embed-cpu", duration_ms=1500.0,
          reported_cost_usd=0.01),
     0.01, "reported", "pool:embed-cpu@2026-01-01"),
]


@pytest.mark.parametrize("name, book, fields, cost, source, ref", CASES, ids=[c[0] for c in CASES])
def test_hand_worked_case(name, book, fields, cost, source, ref):
    [priced] = price_rows(BOOKS[book], record(**fields))
    assert priced["cost_source"] == source
    assert priced["price_ref"] == ref
    if cost is None:
        assert priced["cost_usd"] is None
    else:
        assert priced["cost_usd"] == pytest.approx(cost, rel=1e-12)


def test_reported_cost_keeps_the_computed_one_beside_it():
    # gpt-4o as above: 0.004 computed; the span reported 0.0042 (the provider's own figure wins).
    [priced] = price_rows(BOOKS["list"], record(provider="openai", response_model="gpt-4o", reported_cost_usd=0.0042,
                                                **tokens(1000, 200, cr=400)))
    assert priced == {"cost_usd": 0.0042, "computed_cost_usd": pytest.approx(0.004, rel=1e-12),
                      "cost_source": "reported", "price_ref": "openai/gpt-4o@1970-01-01"}


def test_default_tier_per_feature_then_tenant_and_the_record_wins():
    defaults = PricingDefaults(tier_by_tenant={"batch-co": "batch"}, tier_by_feature={"chat-ui": "priority"})
    usage = dict(provider="openai", response_model="gpt-4o", **tokens(1000, 200, cr=400))
    rows = price_rows(BOOKS["list"],
                      record(tenant="batch-co", **usage),                                     # tenant default: batch
                      record(tenant="batch-co", feature="chat-ui", **usage),                  # feature beats tenant
                      record(tenant="batch-co", feature="chat-ui", pricing_tier="default", **usage),  # record wins
                      record(tenant="other", **usage),                                        # global default
                      defaults=defaults)
    # batch 2250 µ$ (above); priority from 2026-10-12: input 4.25, cache read 2.125, output 17:
    # 600*4.25 + 400*2.125 + 200*17 = 2550 + 850 + 3400 = 6800 µ$; the record's own "default" is standard: 4000 µ$.
    assert [r["cost_usd"] for r in rows] == pytest.approx([0.00225, 0.0068, 0.004, 0.004], rel=1e-12)
    assert [r["price_ref"] for r in rows] == ["openai/gpt-4o:batch@2026-10-14", "openai/gpt-4o:priority@2026-10-12",
                                              "openai/gpt-4o@1970-01-01", "openai/gpt-4o@1970-01-01"]


def test_many_rows_of_many_models_in_one_table_each_get_their_own_price():
    cases = [c for c in CASES if c[1] == "list"]
    rows = [record(**fields) for _, _, fields, _, _, _ in cases] * 3
    priced = price_rows(BOOKS["list"], *rows)
    expected = [(cost, source, ref) for _, _, _, cost, source, ref in cases] * 3
    for got, (cost, source, ref) in zip(priced, expected):
        assert (got["cost_source"], got["price_ref"]) == (source, ref)
        assert got["cost_usd"] == (pytest.approx(cost, rel=1e-12) if cost is not None else None)


def test_an_empty_table_prices_to_an_empty_table():
    from tests.warehouse.pricing.records import table
    from warehouse.pricing.cost import price_table

    empty = table(record()).slice(0, 0)
    assert price_table(empty, BOOKS["list"]).num_rows == 0


def test_days_come_from_start_time_in_utc():
    # 2025-06-09T23:30-01:00 is 2025-06-10T00:30Z: the new o3 price.
    from datetime import timedelta, timezone

    start = datetime(2025, 6, 9, 23, 30, tzinfo=timezone(timedelta(hours=-1)))
    [priced] = price_rows(BOOKS["list"], record(provider="openai", response_model="o3", start_time=start,
                                                **tokens(1000, 1000)))
    assert priced["price_ref"] == "openai/o3@2025-06-10"


def test_a_record_without_any_time_has_no_price_in_force():
    [priced] = price_rows(BOOKS["list"], record(provider="openai", response_model="gpt-4o", start_time=None,
                                                ingest_time=None, **tokens(1000, 100)))
    assert (priced["cost_usd"], priced["cost_source"]) == (None, "unpriced")
