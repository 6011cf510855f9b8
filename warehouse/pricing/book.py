"""The price book: which price applies to an inference, and where that price came from.

Two sources, user first: a user TOML file (negotiated prices, fine-tuned models,
Azure deployment and Bedrock ARN aliases, per-request prices, capacity pools) and
genai-prices' bundled, dated list. Every price is an *entry version*: an id, a
source and an effective-from date. A price change is a new version, never an edit,
so a cost computed last month can always be traced to the exact price it used
(``price_ref`` = ``<entry id>@<effective date>``).

Matching and price resolution follow genai-prices (its match clauses, dated
conditional prices, time-of-day windows, long-context tiers and service-tier
variants), with one rule on top: exact names beat aliases beat patterns, and user
entries beat the built-in list. See README.md in this folder.
"""
from __future__ import annotations

import hashlib
import math
import tomllib
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Mapping

import genai_prices
from genai_prices import data_snapshot
from genai_prices import types as gp
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from warehouse.pricing.capacity import PoolIn, PoolPrice, pool_versions

EPOCH = date(1970, 1, 1)  # effective date of a list price that has no start date
BUILTIN_SOURCE = f"genai-prices@{genai_prices.__version__}"
TOKEN_CLASSES = ("input", "cache_read", "cache_write", "output", "reasoning")
GENAI_PRICE_KEYS = {
    "input": "input_mtok",
    "cache_read": "cache_read_mtok",
    "cache_write": "cache_write_mtok",
    "output": "output_mtok",
    "reasoning": "output_reasoning_mtok",
}
STANDARD_TIERS = frozenset({"", "standard", "default", "auto"})

# OTel gen_ai.provider.name values (current and deprecated) and common
# OpenInference / OpenLLMetry spellings -> genai-prices provider ids.
PROVIDER_IDS = {
    "openai": "openai", "anthropic": "anthropic",
    "aws.bedrock": "aws", "aws": "aws", "bedrock": "aws", "amazon_bedrock": "aws",
    "azure.ai.openai": "azure", "azure.ai.inference": "azure", "az.ai.openai": "azure",
    "az.ai.inference": "azure", "azure": "azure",
    "gcp.gemini": "google", "gcp.vertex_ai": "google", "gcp.gen_ai": "google",
    "gemini": "google", "vertex_ai": "google", "vertexai": "google", "google": "google",
    "mistral_ai": "mistral", "mistralai": "mistral", "mistral": "mistral",
    "x_ai": "x-ai", "xai": "x-ai", "x-ai": "x-ai",
    "deepseek": "deepseek", "groq": "groq", "cohere": "cohere", "perplexity": "perplexity",
    "moonshot_ai": "moonshotai", "moonshotai": "moonshotai", "together_ai": "together",
    "together": "together", "fireworks": "fireworks", "openrouter": "openrouter",
}


def provider_key(provider: str | None) -> str | None:
    """Canonical provider name: the genai-prices id when we know one, else the name lower-cased."""
    if not provider:
        return None
    name = provider.strip().lower()
    if name in PROVIDER_IDS:
        return PROVIDER_IDS[name]
    known = data_snapshot.find_provider_by_id(_builtin_providers(), name)
    return known.id if known else name


def tier_context(tier: str | None) -> dict[str, str] | None:
    """genai-prices request context for a service tier: batch is a processing mode, the rest service tiers."""
    tier = (tier or "").strip().lower()
    if tier in STANDARD_TIERS:
        return None
    if tier == "batch":
        return {"processing": "batch"}
    return {"service_tier": tier}


def model_refs(model: str) -> list[str]:
    """The model id, then the id with leading path segments stripped ("openai/gpt-4o" -> "gpt-4o")."""
    ref = model.strip().lower()
    refs = [ref]
    while "/" in ref:
        ref = ref.split("/", 1)[1]
        if ref:
            refs.append(ref)
    return refs


@dataclass(frozen=True)
class Rate:
    """USD per million tokens; tiers are (start, price): a whole input above start reprices the class."""

    base: float
    tiers: tuple[tuple[int, float], ...] = ()


@dataclass(frozen=True)
class Quote:
    """The prices that apply to one (provider, model, tier, date), with their provenance."""

    entry_id: str
    effective_from: date
    source: str
    match_kind: str
    rates: Mapping[str, Rate]  # only the token classes the entry prices
    request_usd: float | None = None
    time_dependent: bool = False

    @property
    def price_ref(self) -> str:
        return f"{self.entry_id}@{self.effective_from.isoformat()}"


# ---------------------------------------------------------------- user file

class TierIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    start: int = Field(ge=0, description="whole input (cache included) above this reprices the class")
    price: Decimal = Field(ge=0)


class TieredIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    base: Decimal = Field(ge=0)
    tiers: list[TierIn]


PriceIn = Annotated[Decimal, Field(ge=0)] | TieredIn


class ClassPricesIn(BaseModel):
    """USD per million tokens for each token class, and a per-request fee."""

    model_config = ConfigDict(extra="forbid")
    input_mtok: PriceIn | None = None
    cache_read_mtok: PriceIn | None = None
    cache_write_mtok: PriceIn | None = None
    output_mtok: PriceIn | None = None
    reasoning_mtok: PriceIn | None = None
    per_request_usd: Decimal | None = Field(None, ge=0)


class TierPricesIn(ClassPricesIn):
    """Prices of one service tier; classes it leaves out keep the standard price."""

    discount: Decimal | None = Field(None, ge=0, le=1, description="flat fraction off every standard price")

    @model_validator(mode="after")
    def _discount_alone(self) -> "TierPricesIn":
        if self.discount is not None and any(v is not None for k, v in self if k != "discount"):
            raise ValueError("a tier takes either a flat `discount` or its own prices, not both")
        return self


class ModelEntryIn(ClassPricesIn):
    """One version of a user price entry ([[model]] in the file)."""

    id: str
    provider: str | None = None
    effective_from: date
    models: list[str] = []
    patterns: list[str] = []
    tiers: dict[str, TierPricesIn] = {}

    @model_validator(mode="after")
    def _check(self) -> "ModelEntryIn":
        if not self.models and not self.patterns:
            raise ValueError(f"model entry {self.id!r}: give `models` (exact names) or `patterns`")
        if all(getattr(self, f"{c}_mtok") is None for c in TOKEN_CLASSES) and self.per_request_usd is None:
            raise ValueError(f"model entry {self.id!r}: no price given")
        return self


class AliasIn(BaseModel):
    """A name the provider reports that stands for a priced model (Azure deployment, Bedrock ARN)."""

    model_config = ConfigDict(extra="forbid")
    name: str
    provider: str | None = None
    model: str
    target_provider: str | None = None


class PriceFileIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model: list[ModelEntryIn] = []
    alias: list[AliasIn] = []
    pool: list[PoolIn] = []

    @field_validator("model")
    @classmethod
    def _unique_versions(cls, entries: list[ModelEntryIn]) -> list[ModelEntryIn]:
        seen = set()
        for entry in entries:
            if (entry.id, entry.effective_from) in seen:
                raise ValueError(f"model entry {entry.id!r} has two versions effective {entry.effective_from}")
            seen.add((entry.id, entry.effective_from))
        return entries


def _rate(value: Decimal | TieredIn | gp.TieredPrices | None, factor: float = 1.0) -> Rate | None:
    if value is None:
        return None
    if isinstance(value, gp.TieredPrices):
        return Rate(float(value.base) * factor, tuple((t.start, float(t.price) * factor) for t in value.tiers))
    if isinstance(value, TieredIn):
        tiers = sorted((t.start, float(t.price) * factor) for t in value.tiers)
        return Rate(float(value.base) * factor, tuple(tiers))
    return Rate(float(value) * factor)


def _user_rates(prices: ClassPricesIn) -> tuple[dict[str, Rate], float | None]:
    rates = {c: r for c in TOKEN_CLASSES if (r := _rate(getattr(prices, f"{c}_mtok"))) is not None}
    fee = float(prices.per_request_usd) if prices.per_request_usd is not None else None
    return rates, fee


@dataclass
class _UserVersion:
    effective_from: date
    rates: dict[str, Rate]
    request_usd: float | None
    tiers: dict[str, tuple[dict[str, Rate], float | None]]


def _user_version(entry: ModelEntryIn) -> _UserVersion:
    rates, fee = _user_rates(entry)
    tiers = {}
    for name, tier in entry.tiers.items():
        if tier.discount is not None:
            factor = 1.0 - float(tier.discount)
            scaled = {c: Rate(r.base * factor, tuple((s, p * factor) for s, p in r.tiers)) for c, r in rates.items()}
            tiers[name.lower()] = (scaled, fee * factor if fee is not None else None)
        else:
            tiers[name.lower()] = _user_rates(tier)
    return _UserVersion(entry.effective_from, rates, fee, tiers)


@dataclass
class _UserModel:
    """All versions of one user entry id, oldest first."""

    entry_id: str
    provider: str | None
    source: str
    versions: list[_UserVersion]
    patterns: list[gp.ClauseRegex] = field(default_factory=list)
    time_dependent = False

    def quote(self, day: date, tier: str, minute: int | None, kind: str) -> Quote | None:
        current = [v for v in self.versions if v.effective_from <= day]
        if not current:
            return None
        version = current[-1]
        rates, fee, entry_id = dict(version.rates), version.request_usd, self.entry_id
        if (tier or "").lower() in version.tiers:
            tier_rates, tier_fee = version.tiers[tier.lower()]
            rates.update(tier_rates)
            fee = tier_fee if tier_fee is not None else fee
            entry_id = f"{self.entry_id}:{tier.lower()}"
        return Quote(entry_id, version.effective_from, self.source, kind, rates, fee)


# ---------------------------------------------------------------- built-in list

def _builtin_providers() -> list[gp.Provider]:
    from genai_prices.data import providers

    return providers


def _exact_names(model: gp.ModelInfo) -> set[str]:
    """Names the list spells out (equals clauses, and the id when it matches itself)."""
    names = set()
    clauses = model.match.or_ if isinstance(model.match, gp.ClauseOr) else [model.match]
    for clause in clauses:
        if isinstance(clause, gp.ClauseEquals):
            names.add(clause.equals.lower())
    if model.is_match(model.id):
        names.add(model.id.lower())
    return names


def _start(constraint: object) -> date:
    return constraint.start_date if isinstance(constraint, gp.StartDateConstraint) else EPOCH


def _window(constraint: object) -> str:
    if isinstance(constraint, gp.TimeOfDateConstraint):
        return f"[{constraint.start_time:%H:%M}-{constraint.end_time:%H:%M}]"
    return ""


@dataclass
class _BuiltinModel:
    provider_id: str
    model: gp.ModelInfo
    via_fallback: bool  # reached through a provider's fallback list: genai-prices drops tier variants then

    @property
    def entry_id(self) -> str:
        return f"{self.provider_id}/{self.model.id}"

    @property
    def time_dependent(self) -> bool:
        prices = self.model.prices
        return isinstance(prices, list) and any(isinstance(p.constraint, gp.TimeOfDateConstraint) for p in prices)

    def quote(self, day: date, tier: str, minute: int | None, kind: str) -> Quote | None:
        at = datetime.combine(day, time((minute or 0) // 60, (minute or 0) % 60), tzinfo=UTC)
        context = None if self.via_fallback else tier_context(tier)
        prices = self.model.get_prices(at, context)
        rates = {c: r for c, k in GENAI_PRICE_KEYS.items() if (r := _rate(getattr(prices, k, None))) is not None}
        kcount = getattr(prices, "requests_kcount", None)
        fee = float(kcount) / 1000 if kcount is not None else None
        if "input" not in rates and "output" not in rates and fee is None:
            return None  # priced in units we do not record (audio seconds, images, ...)
        chosen = self._chosen_condition(at)
        effective, entry_id = _start(chosen), self.entry_id + _window(chosen)
        applied = [v for v in self.model.price_variants or () if self._variant_applies(v, at, context)]
        if applied:
            effective = max([effective] + [_start(v.constraint) for v in applied])
            entry_id += f":{tier.lower()}"
        return Quote(entry_id, effective, BUILTIN_SOURCE, kind, rates, fee, self.time_dependent)

    def _chosen_condition(self, at: datetime) -> object:
        """The conditional price genai-prices picks (last active wins), as its constraint."""
        prices = self.model.prices
        if isinstance(prices, gp.ModelPrice):
            return None
        for conditional in reversed(prices):
            if conditional.constraint is None or conditional.constraint.active(at):
                return conditional.constraint
        return prices[0].constraint

    @staticmethod
    def _variant_applies(variant: gp.PriceVariant, at: datetime, context: dict | None) -> bool:
        if not context or not all(context.get(k) == v for k, v in variant.when.items()):
            return False
        if variant.constraint is not None and not variant.constraint.active(at):
            return False
        return any(v is not None for v in variant.prices.__dict__.values())


# ---------------------------------------------------------------- the book

Candidate = tuple[object, str]  # (_UserModel | _BuiltinModel, match kind)


# genai-prices' own spelling fix for compact dated refs ("gpt-4o-20240806"); private, so tolerate its absence.
_normalize_dated_ref = getattr(gp, "_normalize_compact_dated_ref", lambda ref: ref)


class PriceBook:
    """Price lookups with provenance. Lookups are cached: build one book and keep it."""

    def __init__(self, user: PriceFileIn | None = None, user_source: str = "", user_digest: str = ""):
        user = user or PriceFileIn()
        self.providers = {p.id: p for p in _builtin_providers()}
        self.sources = [BUILTIN_SOURCE] + ([f"{user_source} sha256:{user_digest}"] if user_source else [])
        self._user_exact: dict[tuple[str | None, str], _UserModel] = {}
        self._user_patterns: list[_UserModel] = []
        self._aliases = {(provider_key(a.provider), a.name.lower()): a for a in user.alias}
        self._builtin_exact = {
            pid: {name: m for m in p.models for name in _exact_names(m)} for pid, p in self.providers.items()
        }
        self._index_user_models(user.model, user_source)
        self.pools = {name.lower(): versions for name, versions in pool_versions(user.pool).items()}
        self._candidates: dict[tuple[str | None, str], list[Candidate]] = {}
        self._quotes: dict[tuple, Quote | None] = {}
        self._interned: dict[tuple, Quote] = {}
        self.slot_minutes = self._slot_minutes()

    def _index_user_models(self, entries: list[ModelEntryIn], source: str) -> None:
        groups: dict[str, _UserModel] = {}
        for entry in sorted(entries, key=lambda e: e.effective_from):
            group = groups.setdefault(entry.id, _UserModel(entry.id, provider_key(entry.provider), source, []))
            group.versions.append(_user_version(entry))
            for name in entry.models:
                owner = self._user_exact.setdefault((group.provider, name.lower()), group)
                if owner is not group:
                    raise ValueError(f"model name {name!r} is claimed by user entries {owner.entry_id!r} and {entry.id!r}")
            group.patterns.extend(gp.ClauseRegex(p) for p in entry.patterns if gp.ClauseRegex(p) not in group.patterns)
        self._user_patterns = [g for g in groups.values() if g.patterns]

    def _slot_minutes(self) -> int:
        """Largest slot that never straddles a time-of-day price boundary (30 minutes for today's list)."""
        step = 1440
        for provider in self.providers.values():
            for model in provider.models:
                for price in model.prices if isinstance(model.prices, list) else ():
                    if isinstance(price.constraint, gp.TimeOfDateConstraint):
                        for t in (price.constraint.start_time, price.constraint.end_time):
                            step = math.gcd(step, t.hour * 60 + t.minute)
        return step

    # -- matching

    def candidates(self, provider: str | None, model: str | None) -> list[Candidate]:
        """Entries that may price this model, best first (cached per provider and model)."""
        key = (provider, model)
        if key not in self._candidates:
            canonical = provider_key(provider) or (self._provider_from_refs(model_refs(model)) if model else None)
            self._candidates[key] = self._find_candidates(canonical, model) if model else []
        return self._candidates[key]

    def _find_candidates(self, provider: str | None, model: str, follow_alias: bool = True) -> list[Candidate]:
        refs = model_refs(model)
        found: list[Candidate] = []
        for ref in refs:
            for owner in (provider, None):
                if (hit := self._user_exact.get((owner, ref))) is not None:
                    found.append((hit, "exact"))
        if follow_alias:
            for ref in refs:
                for owner in (provider, None):
                    if (alias := self._aliases.get((owner, ref))) is not None:
                        target = provider_key(alias.target_provider) or provider
                        found.extend((m, "alias") for m, _ in self._find_candidates(target, alias.model, False))
        for ref in refs:
            found.extend((g, "pattern") for g in self._user_patterns
                         if g.provider in (None, provider) and any(p.is_match(ref) for p in g.patterns))
        found.extend(self._builtin_candidates(provider, refs))
        return found

    def _builtin_candidates(self, provider: str | None, refs: list[str]) -> list[Candidate]:
        root = self.providers.get(provider) if provider else None
        if root is None:
            return []
        chain = [(root, False)] + [(self.providers[p], True) for p in root.fallback_model_providers or ()
                                   if p in self.providers]
        for source, via_fallback in chain:
            for ref in refs:
                if (hit := self._builtin_exact[source.id].get(ref)) is not None:
                    return [(_BuiltinModel(source.id, hit, via_fallback), "exact")]
            for ref in refs:
                for candidate in dict.fromkeys([ref, _normalize_dated_ref(ref)]):
                    hit = next((m for m in source.models if m.is_match(candidate)), None)
                    if hit is not None:
                        return [(_BuiltinModel(source.id, hit, via_fallback), "pattern")]
        return []

    def _provider_from_refs(self, refs: list[str]) -> str | None:
        """No provider on the span: a path prefix ("anthropic/...") or genai-prices' model patterns decide."""
        if len(refs) > 1 and (prefix := provider_key(refs[0].split("/", 1)[0])) in self.providers:
            return prefix
        for ref in refs:
            try:
                return data_snapshot.get_snapshot().find_provider(ref, None, None).id
            except LookupError:
                continue
        return None

    # -- prices

    def quote(self, provider: str | None, model: str | None, tier: str | None, day: date,
              minute: int | None = None) -> Quote | None:
        """Prices for a model on a day (and minute of day for time-of-day prices); None when unknown."""
        key = (provider, model, tier, day, minute)
        if key not in self._quotes:
            self._quotes[key] = self._first_quote(provider, model, tier or "", day, minute)
        return self._quotes[key]

    def _first_quote(self, provider, model, tier, day, minute) -> Quote | None:
        for entry, kind in self.candidates(provider, model):
            if (found := entry.quote(day, tier, minute, kind)) is not None:
                # One object per distinct price, whatever the day: downstream caches stay small.
                key = (found.entry_id, found.effective_from, found.source, found.match_kind,
                       tuple(sorted(found.rates.items())), found.request_usd, found.time_dependent)
                return self._interned.setdefault(key, found)
        return None

    def pool(self, name: str | None, day: date) -> PoolPrice | None:
        """The capacity pool version in force on a day, or None."""
        versions = [v for v in self.pools.get((name or "").lower(), ()) if v.effective_from <= day]
        return versions[-1] if versions else None


def load_book(user_file: str | Path | None = None) -> PriceBook:
    """The built-in list plus an optional user price file (TOML, see README.md)."""
    if user_file is None:
        return PriceBook()
    path = Path(user_file)
    raw = path.read_bytes()
    try:
        parsed = PriceFileIn.model_validate(tomllib.loads(raw.decode()))
        return PriceBook(parsed, str(path), hashlib.sha256(raw).hexdigest())
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise ValueError(f"{path}: {problems}") from None
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"{path}: {exc}") from None
