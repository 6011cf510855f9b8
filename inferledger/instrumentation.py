"""Record inferledger's attributes on OpenTelemetry spans, from any Python service.

A service that already traces its model calls (by hand, or with OpenLLMetry,
OpenInference or the OTel GenAI instrumentations) calls these helpers inside the
span of the inference to add what no convention names: the decision it produced,
the model's version, the cost-allocation keys, the attempt number of a retried
request, a human review. Attribute names are those of ``docs/attributes.md``.

When an instrumentation creates the model-call span inside a client library, the
application cannot reach that span; ``inference_attributes`` (with the SDK span
processor from ``span_processor()``) puts keys and attempt numbers on it as it starts.

Only the OpenTelemetry *API* is imported (``span_processor`` imports the SDK when
called), so a library can depend on this module without choosing an SDK or exporter.
Like the OTel API itself, nothing here raises on bad values at run time: an unusable
value is skipped with a warning, so instrumentation never breaks the request it
observes. Every function works on the current span unless ``span=`` names another; on a
non-recording span (no SDK configured, or not sampled) it does nothing.

    from inferledger.instrumentation import record_decision, set_cost_keys

    with tracer.start_as_current_span("screen_transaction"):
        set_cost_keys(tenant="acme", feature="fraud-screening")
        label, score = model.predict(features)
        record_decision(label, score, reasons=["velocity", "new_device"], subject_id=customer_id)
"""
from __future__ import annotations

import logging
import math
from contextlib import contextmanager
from typing import Iterator, Sequence

from opentelemetry import context, trace
from opentelemetry.trace import Link, Span, SpanContext

log = logging.getLogger(__name__)

DECISION_LABEL = "inferledger.decision.label"
DECISION_SCORE = "inferledger.decision.score"
DECISION_REASONS = "inferledger.decision.reasons"
SUBJECT_ID = "inferledger.subject.id"
MODEL_NAME = "inferledger.model.name"
MODEL_VERSION = "inferledger.model.version"
TENANT = "inferledger.tenant.id"
FEATURE = "inferledger.feature.name"
BUDGET = "inferledger.budget.id"
PRICING_TIER = "inferledger.pricing.tier"
COMPUTE_POOL = "inferledger.compute.pool"
CACHE_HIT = "inferledger.cache.hit"
CACHE_NAME = "inferledger.cache.name"
REQUEST_KEY = "inferledger.request.key"
ATTEMPT = "inferledger.attempt"
REVIEW_OUTCOME = "inferledger.review.outcome"
REVIEW_OVERRIDE = "inferledger.review.override"
REVIEWER_ID = "inferledger.review.reviewer.id"
REVIEW_DURATION = "inferledger.review.duration_s"
LINK_TYPE = "inferledger.link.type"
RETRY_OF, REVIEW_OF = "retry_of", "review_of"
# Keys an instrumentation sets when it starts a model-call span (which the collector reads as an inference).
INFERENCE_KEY_PREFIXES = ("gen_ai.", "llm.", "openinference.span.kind", "langfuse.observation.", "inferledger.model.")
_PENDING = context.create_key("inferledger.inference_attributes")


def record_decision(label: str, score: float | None = None, reasons: Sequence[str] | None = None,
                    subject_id: str | None = None, span: Span | None = None) -> None:
    """The decision an inference produced: its label, the score behind it, the principal reasons
    (most important first) and whom it concerns. ``subject_id`` is sent as given and
    pseudonymized by the collector with its keyed hash before it is stored."""
    _set(span, {DECISION_LABEL: _text(label, "label"), DECISION_SCORE: _number(score, "score"),
                DECISION_REASONS: _texts(reasons, "reasons"), SUBJECT_ID: _text(subject_id, "subject_id")})


def set_model_version(name: str | None, version: str, span: Span | None = None) -> None:
    """Which model served, and its version or deployment. ``name`` is for models outside GenAI
    (a fraud classifier); on a GenAI span it *replaces* the requested and served model, so
    pass ``None`` there to add only the version beside the model the instrumentation set."""
    _set(span, {MODEL_NAME: _text(name, "name"), MODEL_VERSION: _text(version, "version")})


def set_cost_keys(tenant: str | None = None, feature: str | None = None, budget_id: str | None = None,
                  pricing_tier: str | None = None, compute_pool: str | None = None,
                  span: Span | None = None) -> None:
    """Cost-allocation keys: who pays (tenant), for what (feature), against which budget,
    at which service tier (standard, batch, flex, priority) and, for self-hosted models,
    which capacity pool's cost the inference shares. Unset keys are left alone."""
    _set(span, _cost_keys(tenant, feature, budget_id, pricing_tier, compute_pool))


def record_cache_hit(cache_name: str | None = None, span: Span | None = None) -> None:
    """An application-level cache answered (nothing was billed); not the provider's prompt cache."""
    _set(span, {CACHE_HIT: True, CACHE_NAME: _text(cache_name, "cache_name")})


def mark_attempt(request_key: str, attempt: int, retry_of: Span | SpanContext | None = None,
                 span: Span | None = None) -> None:
    """This span is attempt ``attempt`` (0 = first) of the logical request ``request_key``.

    Every attempt carries the same key, so retry inflation counts the tokens and cost of
    the attempts that did not produce the answer. ``retry_of`` (the previous attempt's
    span) adds a ``retry_of`` link; links added after span start are exported but not seen
    by samplers, so when the previous attempt is known at start prefer
    ``start_as_current_span(..., links=[retry_link(previous)])``.
    """
    target = span or trace.get_current_span()
    _set(target, {REQUEST_KEY: _text(request_key, "request_key"), ATTEMPT: _attempt(attempt)})
    link = retry_link(retry_of) if retry_of is not None else None
    if link is not None and target.is_recording():
        target.add_link(link.context, link.attributes)


@contextmanager
def inference_attributes(request_key: str | None = None, attempt: int | None = None, tenant: str | None = None,
                         feature: str | None = None, budget_id: str | None = None, pricing_tier: str | None = None,
                         compute_pool: str | None = None) -> Iterator[None]:
    """Put these attributes on the inference spans that instrumentations start inside the block.

    An instrumentation (OpenLLMetry, OpenInference, the OTel GenAI ones) creates the
    model-call span inside the client library, where the application cannot reach it.
    With ``span_processor()`` installed, every span started in this block that carries
    a model-call attribute at start (``gen_ai.*``, ``llm.*``, OpenInference's span kind)
    gets the attributes; other spans (HTTP client, database) do not, so they never turn
    into inference records. Blocks nest; inner values win.
    """
    values = _cost_keys(tenant, feature, budget_id, pricing_tier, compute_pool)
    values.update({REQUEST_KEY: _text(request_key, "request_key"),
                   ATTEMPT: _attempt(attempt) if attempt is not None else None})
    merged = {**(context.get_value(_PENDING) or {}), **{k: v for k, v in values.items() if v is not None}}
    token = context.attach(context.set_value(_PENDING, merged))
    try:
        yield
    finally:
        context.detach(token)


def span_processor():
    """The SDK span processor behind ``inference_attributes``: ``provider.add_span_processor(span_processor())``.

    The only function here that needs the OpenTelemetry SDK (imported when called).
    """
    from opentelemetry.sdk.trace import SpanProcessor

    class InferenceAttributesProcessor(SpanProcessor):
        def on_start(self, span, parent_context=None) -> None:
            pending = context.get_value(_PENDING, parent_context)
            if pending and any(key.startswith(INFERENCE_KEY_PREFIXES) for key in (span.attributes or {})):
                span.set_attributes(pending)

    return InferenceAttributesProcessor()


def record_review(outcome: str, override: bool, reviewer_id: str, duration_s: float | None = None,
                  reviewed: Span | SpanContext | None = None, span: Span | None = None) -> None:
    """A human review of a decision: its outcome, whether it overrode the model, who reviewed
    (pseudonymized at ingest) and how long it took. The reviewed decision is ``reviewed``
    (a ``review_of`` link), else the collector takes the review span's parent."""
    target = span or trace.get_current_span()
    flag = override if isinstance(override, bool) else None
    if flag is None:
        log.warning("inferledger: override must be a bool, got %r; not recorded", override)
    _set(target, {REVIEW_OUTCOME: _text(outcome, "outcome"), REVIEW_OVERRIDE: flag,
                  REVIEWER_ID: _text(reviewer_id, "reviewer_id"), REVIEW_DURATION: _number(duration_s, "duration_s")})
    link = review_link(reviewed) if reviewed is not None else None
    if link is not None and target.is_recording():
        target.add_link(link.context, link.attributes)


def retry_link(previous: Span | SpanContext) -> Link | None:
    """A link to the previous attempt, for ``start_as_current_span(name, links=[...])``."""
    return _typed_link(previous, RETRY_OF)


def review_link(decision: Span | SpanContext) -> Link | None:
    """A link to the decision a review span reviews, for ``start_as_current_span(name, links=[...])``."""
    return _typed_link(decision, REVIEW_OF)


def _typed_link(target: Span | SpanContext, link_type: str) -> Link | None:
    context = target.get_span_context() if isinstance(target, Span) else target
    if not isinstance(context, SpanContext) or not context.is_valid:
        log.warning("inferledger: %s needs a valid span or span context, got %r; no link", link_type, target)
        return None
    return Link(context, {LINK_TYPE: link_type})


def _cost_keys(tenant, feature, budget_id, pricing_tier, compute_pool) -> dict:
    return {TENANT: _text(tenant, "tenant"), FEATURE: _text(feature, "feature"), BUDGET: _text(budget_id, "budget_id"),
            PRICING_TIER: _text(pricing_tier, "pricing_tier"), COMPUTE_POOL: _text(compute_pool, "compute_pool")}


def _attempt(value) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    log.warning("inferledger: attempt must be a non-negative int, got %r; not recorded", value)
    return None


def _set(span: Span | None, attributes: dict) -> None:
    target = span or trace.get_current_span()
    if not target.is_recording():
        return
    target.set_attributes({key: value for key, value in attributes.items() if value is not None})


def _text(value, what: str) -> str | None:
    if value is None or isinstance(value, str):
        return value or None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    log.warning("inferledger: %s must be a string, got %s; not recorded", what, type(value).__name__)
    return None


def _number(value, what: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    log.warning("inferledger: %s must be a finite number, got %r; not recorded", what, value)
    return None


def _texts(values, what: str) -> list[str] | None:
    if values is None:
        return None
    if isinstance(values, str):
        return [values]
    if not isinstance(values, (list, tuple)):
        log.warning("inferledger: %s must be a list of strings, got %s; not recorded", what, type(values).__name__)
        return None
    texts = [_text(value, what) for value in values]
    kept = [text for text in texts if text]
    return kept or None
