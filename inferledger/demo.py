"""`inferledger demo`: the whole pipeline on a local data directory, fed by the real OTel SDK.

Traffic is generated, not waited for: every span gets explicit timestamps spread
over the past weeks, and goes out through the OpenTelemetry SDK's OTLP/HTTP
exporter to the collector this command starts, exactly as a service would send it.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from datetime import datetime, timedelta, timezone

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode


@dataclass(frozen=True)
class Service:
    name: str
    version: str
    requests_per_day: int


SERVICES = (
    Service("fraud-screening", "4.2.0", 240),
    Service("support-assistant", "1.9.3", 160),
    Service("trading-signals", "0.8.1", 80),
)


def _ns(moment: datetime) -> int:
    return int(moment.timestamp() * 1e9)


def _fraud(tracer, rng: random.Random, at: datetime, rollout: bool) -> None:
    """A classic model on the self-hosted GPU pool, with an LLM review for borderline cases."""
    score = rng.betavariate(2, 5) if not rollout else rng.betavariate(2, 6)
    label = "approve" if score < 0.55 else "review" if score < 0.8 else "decline"
    with tracer.start_as_current_span("screen transaction", kind=SpanKind.SERVER, start_time=_ns(at),
                                        end_on_exit=False) as root:
        span = tracer.start_span("predict fraud-gbm", start_time=_ns(at))
        span.set_attributes({
            "inferledger.model.name": "fraud-gbm", "inferledger.model.version": "v4" if rollout else "v3",
            "inferledger.decision.label": label, "inferledger.decision.score": round(score, 4),
            "inferledger.decision.reasons": rng.sample(["velocity", "new_device", "geo_mismatch", "amount"], 2),
            "inferledger.subject.id": f"customer-{rng.randint(1, 5000)}",
            "inferledger.compute.pool": "fraud-gpu-pool", "inferledger.tenant.id": rng.choice(["bank-a", "bank-b"]),
        })
        span.end(end_time=_ns(at + timedelta(milliseconds=rng.uniform(8, 30))))
        if label == "review":
            _chat(tracer, rng, at + timedelta(milliseconds=40), "openai", "gpt-4o-mini", "borderline-review")
        root.end(end_time=_ns(at + timedelta(seconds=1)))


def _chat(tracer, rng: random.Random, at: datetime, provider: str, model: str, feature: str,
          cached: bool = False, error: str | None = None) -> None:
    input_tokens = int(rng.lognormvariate(7, 0.6))
    span = tracer.start_span(f"chat {model}", kind=SpanKind.CLIENT, start_time=_ns(at))
    span.set_attributes({
        "gen_ai.operation.name": "chat", "gen_ai.provider.name": provider, "gen_ai.request.model": model,
        "gen_ai.usage.input_tokens": input_tokens, "inferledger.feature.name": feature,
    })
    if error:
        span.set_attribute("error.type", error)
        span.set_status(Status(StatusCode.ERROR, error))
    else:
        span.set_attributes({
            "gen_ai.response.model": model, "gen_ai.usage.output_tokens": int(rng.lognormvariate(5, 0.5)),
            "gen_ai.usage.cache_read.input_tokens": int(input_tokens * 0.7) if cached else 0,
        })
    span.end(end_time=_ns(at + timedelta(milliseconds=rng.uniform(300, 2500))))


def _support(tracer, rng: random.Random, at: datetime) -> None:
    """Hosted LLM with prompt caching; re-asks when the first answer fails validation."""
    with tracer.start_as_current_span("answer ticket", kind=SpanKind.SERVER, start_time=_ns(at),
                                        end_on_exit=False) as root:
        _chat(tracer, rng, at, "anthropic", "claude-sonnet-4-5", "ticket-reply", cached=True)
        if rng.random() < 0.12:
            _chat(tracer, rng, at + timedelta(seconds=3), "anthropic", "claude-sonnet-4-5", "ticket-reply", cached=True)
        root.end(end_time=_ns(at + timedelta(seconds=6)))


def _trading(tracer, rng: random.Random, at: datetime) -> None:
    """A small fast model intraday, with rate-limit errors that the service retries."""
    with tracer.start_as_current_span("signal", kind=SpanKind.SERVER, start_time=_ns(at),
                                        end_on_exit=False) as root:
        if rng.random() < 0.08:
            _chat(tracer, rng, at, "openai", "gpt-4o-mini", "intraday-signal", error="429")
        _chat(tracer, rng, at + timedelta(seconds=1), "openai", "gpt-4o-mini", "intraday-signal")
        root.end(end_time=_ns(at + timedelta(seconds=2)))


DEMO_PRICES = """\
# Written by `inferledger demo`: the fraud model's self-hosted GPU pool, 8 GPUs at $2.85 per GPU-hour,
# running 24/7; each hour's cost is shared by that hour's inferences by compute time.
[[pool]]
name = "fraud-gpu-pool"
effective_from = 2020-01-01
gpus = 8
gpu_hour_usd = 2.85
"""


def write_demo_prices(data_dir: Path) -> Path:
    path = Path(data_dir) / "demo-prices.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(DEMO_PRICES)
    return path


PLAYERS = {"fraud-screening": _fraud, "support-assistant": _support, "trading-signals": _trading}


def play_traffic(endpoint: str, days: int = 35, seed: int = 7, scale: float = 1.0, progress=None) -> int:
    """Send ``days`` of traffic ending now; returns the number of logical requests sent."""
    rng = random.Random(seed)
    end = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0)
    start = end - timedelta(days=days)
    sent = 0
    for service in SERVICES:
        provider = TracerProvider(resource=Resource.create({
            "service.name": service.name, "service.version": service.version,
            "deployment.environment.name": "demo",
        }))
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint + "/v1/traces"),
                                                       max_export_batch_size=512))
        tracer = provider.get_tracer("inferledger.demo")
        per_day = max(1, int(service.requests_per_day * scale))
        for day in range(days):
            for _ in range(per_day):
                at = start + timedelta(days=day, seconds=rng.uniform(0, 86400))
                player = PLAYERS[service.name]
                if service.name == "fraud-screening":
                    player(tracer, rng, at, rollout=day >= 21)
                else:
                    player(tracer, rng, at)
                sent += 1
            provider.force_flush()  # the SDK's queue holds 2,048 spans; a day is more, sent faster than real time
            if progress:
                progress(1)
        provider.shutdown()
    return sent
