"""The price book: provider names, model matching and its precedence, versions, and the user file."""
from __future__ import annotations

from datetime import date

import pytest

from tests.warehouse.pricing.records import PRICES
from warehouse.pricing.book import BUILTIN_SOURCE, load_book, model_refs, provider_key

DAY = date(2026, 11, 2)
LIST = load_book()


@pytest.mark.parametrize("name, expected", [
    ("openai", "openai"), ("anthropic", "anthropic"), ("aws.bedrock", "aws"), ("azure.ai.openai", "azure"),
    ("azure.ai.inference", "azure"), ("az.ai.openai", "azure"), ("gcp.vertex_ai", "google"),
    ("gcp.gemini", "google"), ("gcp.gen_ai", "google"), ("vertex_ai", "google"), ("mistral_ai", "mistral"),
    ("mistralai", "mistral"), ("x_ai", "x-ai"), ("xai", "x-ai"), ("deepseek", "deepseek"),
    ("moonshot_ai", "moonshotai"), ("OpenAI", "openai"), ("fraud-gpu", "fraud-gpu"), (None, None),
])
def test_provider_names_map_to_the_list(name, expected):
    assert provider_key(name) == expected


def test_model_refs_strip_leading_path_segments():
    assert model_refs("OpenAI/GPT-4o") == ["openai/gpt-4o", "gpt-4o"]
    assert model_refs("models/gemini-2.5-pro") == ["models/gemini-2.5-pro", "gemini-2.5-pro"]


@pytest.mark.parametrize("provider, model, entry, kind", [
    ("openai", "gpt-4o", "openai/gpt-4o", "exact"),
    ("openai", "GPT-4o", "openai/gpt-4o", "exact"),
    ("openai", "gpt-4o-2024-08-06", "openai/gpt-4o", "exact"),
    ("openai", "gpt-4o-2024-05-13", "openai/gpt-4o-2024-05-13", "exact"),
    ("openai", "openai/gpt-4o", "openai/gpt-4o", "exact"),
    (None, "gpt-4o-mini", "openai/gpt-4o-mini", "exact"),
    (None, "anthropic/claude-sonnet-4-5", "anthropic/claude-sonnet-4-5", "exact"),  # the list's id itself
    ("anthropic", "claude-sonnet-4-5-20250929", "anthropic/claude-sonnet-4-5", "pattern"),
    ("gcp.gemini", "models/gemini-2.5-pro", "google/gemini-2.5-pro", "exact"),
    ("azure.ai.openai", "gpt-4o", "openai/gpt-4o", "exact"),
    ("aws.bedrock", "us.anthropic.claude-sonnet-4-5-20250929-v1:0",
     "aws/regional.anthropic.claude-sonnet-4-5-20250929-v1:0", "pattern"),
])
def test_list_matching(provider, model, entry, kind):
    quote = LIST.quote(provider, model, "standard", DAY)
    assert (quote.entry_id, quote.match_kind, quote.source) == (entry, kind, BUILTIN_SOURCE)


@pytest.mark.parametrize("provider, model", [
    ("ollama", "gpt-4o"),          # a known name served elsewhere is not given someone else's list price
    ("openai", "gpt-4o-turbo-ultra-9000"),
    (None, "my-private-model"),
    ("openai", None),
])
def test_no_match_is_none(provider, model):
    assert LIST.quote(provider, model, "standard", DAY) is None


def write(tmp_path, text: str):
    path = tmp_path / "prices.toml"
    path.write_text(text)
    return load_book(path)


PRECEDENCE = """
[[model]]
id = "acme/all-4o"
provider = "openai"
patterns = ["^gpt-4o"]
effective_from = 2026-01-01
input_mtok = 1.0

[[model]]
id = "acme/mini"
provider = "openai"
models = ["gpt-4o-mini"]
effective_from = 2026-01-01
input_mtok = 0.1

[[alias]]
provider = "openai"
name = "gpt-4o-eu"
model = "gpt-4o-mini"

[[model]]
id = "acme/anywhere"
models = ["house-model"]
effective_from = 2026-06-01
input_mtok = 0.5
"""


@pytest.mark.parametrize("provider, model, day, entry, kind", [
    ("openai", "gpt-4o-mini", DAY, "acme/mini", "exact"),        # exact beats pattern
    ("openai", "gpt-4o-eu", DAY, "acme/mini", "alias"),          # alias beats pattern (the name matches ^gpt-4o too)
    ("openai", "gpt-4o", DAY, "acme/all-4o", "pattern"),         # a user pattern beats the list's exact name
    ("openai", "gpt-4o", date(2025, 12, 31), "openai/gpt-4o", "exact"),  # not yet effective: the list
    ("openai", "gpt-4o-mini", date(2025, 12, 31), "openai/gpt-4o-mini", "exact"),
    ("azure.ai.openai", "gpt-4o-mini", DAY, "openai/gpt-4o-mini", "exact"),  # the user entries are OpenAI's only
    ("some-gateway", "house-model", DAY, "acme/anywhere", "exact"),  # an entry without provider: any provider
    (None, "house-model", date(2026, 5, 31), None, None),
])
def test_user_entries_first_then_exact_alias_pattern(tmp_path, provider, model, day, entry, kind):
    quote = write(tmp_path, PRECEDENCE).quote(provider, model, "standard", day)
    got = (quote.entry_id, quote.match_kind) if quote else (None, None)
    assert got == (entry, kind)
    if entry and entry.startswith("acme/"):
        assert quote.source == str(tmp_path / "prices.toml")


def test_a_price_change_is_a_new_version_with_its_own_reference(tmp_path):
    book = write(tmp_path, """
[[model]]
id = "acme/chat"
models = ["acme-chat"]
effective_from = 2026-01-01
input_mtok = 2.0
output_mtok = 8.0

[[model]]
id = "acme/chat"
models = ["acme-chat"]
effective_from = 2026-03-03
input_mtok = 1.0
""")
    before, after = (book.quote("acme", "acme-chat", None, d) for d in (date(2026, 3, 2), date(2026, 3, 3)))
    assert (before.price_ref, sorted(before.rates)) == ("acme/chat@2026-01-01", ["input", "output"])
    # The new version replaces the whole entry: it prices no output, so nothing leaks from the old one.
    assert (after.price_ref, sorted(after.rates)) == ("acme/chat@2026-03-03", ["input"])
    assert book.quote("acme", "acme-chat", None, date(2025, 12, 31)) is None


def test_book_sources_name_the_list_version_and_the_user_file_digest():
    book = load_book(PRICES / "acme.toml")
    assert book.sources[0] == f"genai-prices@{__import__('genai_prices').__version__}"
    assert book.sources[1].startswith(f"{PRICES / 'acme.toml'} sha256:") and len(book.sources[1].split(":")[-1]) == 64


@pytest.mark.parametrize("name, message", [
    ("bad_unknown_key", "model.0.input_per_mtok: Extra inputs are not permitted"),
    ("bad_no_price", "model.0: Value error, model entry 'free-lunch': no price given"),
    ("bad_same_version", "model: Value error, model entry 'acme/gpt-4o' has two versions effective 2026-01-01"),
    ("bad_pool_cost", "pool.0: Value error, pool 'gpu': give either cost_per_hour_usd or gpus and gpu_hour_usd"),
    ("bad_discount_and_prices",
     "model.0.tiers.batch: Value error, a tier takes either a flat `discount` or its own prices, not both"),
    ("bad_name_claimed_twice", "model name 'gpt-4o' is claimed by user entries 'acme/a' and 'acme/b'"),
])
def test_bad_price_files_are_refused_with_the_reason(name, message):
    path = PRICES / f"{name}.toml"
    with pytest.raises(ValueError) as caught:
        load_book(path)
    assert str(caught.value) == f"{path}: {message}"


def test_lookups_are_cached_and_one_price_is_one_object_whatever_the_day():
    book = load_book()
    first = book.quote("openai", "gpt-4o", "batch", DAY)
    assert book.quote("openai", "gpt-4o", "batch", DAY) is first
    assert book.quote("openai", "gpt-4o", "batch", date(2026, 12, 25)) is first  # same price, same object
    assert book.quote("openai", "gpt-4o", "batch", date(2026, 10, 1)) is not first  # before the batch price
