"""`inferledger demo`: the whole pipeline on a local data directory, fed by the real OTel SDK.

Traffic is generated, not waited for: every span gets explicit timestamps spread
over the past weeks, and goes out through the OpenTelemetry SDK's OTLP/HTTP
exporter to the collector this command starts, exactly as a service would send it.

What the five weeks contain, so that every analysis has something to find:

* **fraud-screening**: a gradient-boosted model on a self-hosted GPU pool
  (capacity-priced), approve/review/decline with scores and reasons; borderline
  cases get an LLM review, and some a human review (reviewer time is priced). Model
  v4 rolls out at the start of week 4 and approves noticeably more.
* **support-assistant**: a hosted LLM with prompt caching and streaming, and an
  application-level retry loop that re-asks when the answer fails validation
  (``inferledger.request.key`` / ``inferledger.attempt``). Three days before the
  end, a bulk import triples its traffic: a cost spike.
* **trading-signals**: a batch API for the nightly run (batch tier), a small fast
  model intraday with rate-limit retries, and a self-hosted ranker that has no
  price anywhere (unpriced, never $0).
* a negotiated price for the support model starts a week before the end (a price
  change the week-over-week decomposition shows as a price effect).
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode

ROLLOUT_DAY = 21  # day index (from the start) when fraud model v4 takes over
SPIKE_DAYS_BEFORE_END = 3
PRICE_CHANGE_DAYS_BEFORE_END = 7
SUPPORT_MODEL = "claude-sonnet-4-5"


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
    """A classic model on the self-hosted GPU pool, with LLM and human reviews of borderline cases."""
    score = rng.betavariate(2, 5) if not rollout else rng.betavariate(2, 7)
    label = "approve" if score < 0.45 else "review" if score < 0.7 else "decline"
    with tracer.start_as_current_span("screen transaction", kind=SpanKind.SERVER, start_time=_ns(at),
                                        end_on_exit=False) as root:
        span = tracer.start_span("predict fraud-gbm", start_time=_ns(at))
        span.set_attributes({
            "inferledger.model.name": "fraud-gbm", "inferledger.model.version": "v4" if rollout else "v3",
            "inferledger.decision.label": label, "inferledger.decision.score": round(score, 4),
            "inferledger.decision.reasons": rng.sample(["velocity", "new_device", "geo_mismatch", "amount"], 2),
            "inferledger.subject.id": f"customer-{rng.randint(1, 5000)}",
            "inferledger.compute.pool": "fraud-gpu-pool", "inferledger.tenant.id": rng.choice(["bank-a", "bank-b"]),
            "inferledger.feature.name": "transaction-screening",
        })
        span.end(end_time=_ns(at + timedelta(milliseconds=rng.uniform(8, 30))))
        if label == "review":
            _chat(tracer, rng, at + timedelta(milliseconds=40), "openai", "gpt-4o-mini", "borderline-review")
            if rng.random() < 0.25:
                _human_review(tracer, rng, at + timedelta(minutes=rng.uniform(5, 90)))
        root.end(end_time=_ns(at + timedelta(seconds=1)))


def _human_review(tracer, rng: random.Random, at: datetime) -> None:
    """An analyst looks at the case: outcome, whether the model was overridden, time spent."""
    span = tracer.start_span("human review", start_time=_ns(at))
    duration = rng.uniform(60, 600)
    span.set_attributes({
        "inferledger.review.outcome": rng.choice(["approve", "decline"]),
        "inferledger.review.override": rng.random() < 0.3,
        "inferledger.review.reviewer.id": f"analyst-{rng.randint(1, 12)}",
        "inferledger.review.duration_s": round(duration, 1),
        "inferledger.feature.name": "transaction-screening",
    })
    span.end(end_time=_ns(at + timedelta(seconds=duration)))


def _chat(tracer, rng: random.Random, at: datetime, provider: str, model: str, feature: str,
          cached: bool = False, error: str | None = None, tier: str | None = None, context: float = 7.0,
          retry: tuple[str, int] | None = None, stream: bool = False, decision: str | None = None) -> None:
    input_tokens = int(rng.lognormvariate(context, 0.6))
    span = tracer.start_span(f"chat {model}", kind=SpanKind.CLIENT, start_time=_ns(at))
    span.set_attributes({
        "gen_ai.operation.name": "chat", "gen_ai.provider.name": provider, "gen_ai.request.model": model,
        "gen_ai.usage.input_tokens": input_tokens, "inferledger.feature.name": feature,
    })
    if stream:
        span.set_attribute("gen_ai.request.stream", True)
    if tier:
        span.set_attribute("inferledger.pricing.tier", tier)
    if retry:
        span.set_attributes({"inferledger.request.key": retry[0], "inferledger.attempt": retry[1]})
    if error:
        span.set_attribute("error.type", error)
        span.set_status(Status(StatusCode.ERROR, error))
    else:
        span.set_attributes({
            "gen_ai.response.model": model, "gen_ai.usage.output_tokens": int(rng.lognormvariate(5, 0.5)),
            "gen_ai.usage.cache_read.input_tokens": int(input_tokens * 0.7) if cached else 0,
        })
        if decision:
            span.set_attribute("inferledger.decision.label", decision)
    span.end(end_time=_ns(at + timedelta(milliseconds=rng.uniform(300, 2500))))


def _support(tracer, rng: random.Random, at: datetime) -> None:
    """Hosted LLM with prompt caching and streaming; re-asks when the answer fails validation."""
    key = f"ticket-{rng.getrandbits(48):012x}"
    with tracer.start_as_current_span("answer ticket", kind=SpanKind.SERVER, start_time=_ns(at),
                                        end_on_exit=False) as root:
        attempts = 2 if rng.random() < 0.15 else 1
        for attempt in range(attempts):
            _chat(tracer, rng, at + timedelta(seconds=4 * attempt), "anthropic", SUPPORT_MODEL, "ticket-reply",
                  cached=True, retry=(key, attempt), stream=True)
        root.end(end_time=_ns(at + timedelta(seconds=6)))


def _trading(tracer, rng: random.Random, at: datetime) -> None:
    """Nightly batch analysis, or an intraday signal from a small model with rate-limit retries."""
    with tracer.start_as_current_span("signal", kind=SpanKind.SERVER, start_time=_ns(at),
                                        end_on_exit=False) as root:
        if at.hour < 4:  # the nightly run goes through the batch API: long documents, batch prices
            _chat(tracer, rng, at, "openai", "gpt-4o", "nightly-research", tier="batch", context=9.5)
        elif rng.random() < 0.1:  # a self-hosted ranker nobody has priced
            _chat(tracer, rng, at, "acme-vllm", "signal-ranker-7b", "intraday-signal",
                  decision=rng.choice(["buy", "hold", "sell"]))
        else:
            key = f"signal-{rng.getrandbits(48):012x}"
            attempt = 0
            while attempt < 2 and rng.random() < 0.1:
                _chat(tracer, rng, at + timedelta(seconds=attempt), "openai", "gpt-4o-mini", "intraday-signal",
                      error="429", retry=(key, attempt))
                attempt += 1
            _chat(tracer, rng, at + timedelta(seconds=attempt), "openai", "gpt-4o-mini", "intraday-signal",
                  retry=(key, attempt), decision=rng.choice(["buy", "hold", "sell"]))
        root.end(end_time=_ns(at + timedelta(seconds=3)))


DEMO_PRICES = """\
# Written by `inferledger demo`.
# The fraud model's self-hosted GPU pool, one GPU at $2.85 per GPU-hour, running 24/7;
# each hour's cost is shared by that hour's inferences by compute time.
[[pool]]
name = "fraud-gpu-pool"
effective_from = 2020-01-01
gpus = 1
gpu_hour_usd = 2.85

# A negotiated price for the support model, from {change} on (before it, the public list price).
[[model]]
id = "demo/claude-sonnet-negotiated"
provider = "anthropic"
models = ["{support_model}"]
effective_from = {change}
input_mtok = 2.40
cache_read_mtok = 0.24
cache_write_mtok = 3.00
output_mtok = 12.00
"""


def write_demo_prices(data_dir: Path, today: date | None = None) -> Path:
    today = today or datetime.now(timezone.utc).date()
    path = Path(data_dir) / "demo-prices.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    change = today - timedelta(days=PRICE_CHANGE_DAYS_BEFORE_END)
    path.write_text(DEMO_PRICES.format(change=change.isoformat(), support_model=SUPPORT_MODEL))
    return path


PLAYERS = {"fraud-screening": _fraud, "support-assistant": _support, "trading-signals": _trading}


def requests_on(service: Service, day: int, days: int, scale: float) -> int:
    """Requests of ``service`` on day ``day``: the support spike triples one day's traffic."""
    per_day = max(1, int(service.requests_per_day * scale))
    if service.name == "support-assistant" and day == days - SPIKE_DAYS_BEFORE_END:
        return per_day * 3
    return per_day


def play_traffic(endpoint: str, days: int = 35, seed: int = 7, scale: float = 1.0, progress=None,
                 headers: dict[str, str] | None = None) -> int:
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
        exporter = OTLPSpanExporter(endpoint=endpoint + "/v1/traces", headers=headers)
        provider.add_span_processor(BatchSpanProcessor(exporter, max_export_batch_size=512))
        tracer = provider.get_tracer("inferledger.demo")
        for day in range(days):
            for _ in range(requests_on(service, day, days, scale)):
                at = start + timedelta(days=day, seconds=rng.uniform(0, 86400))
                player = PLAYERS[service.name]
                if service.name == "fraud-screening":
                    player(tracer, rng, at, rollout=day >= ROLLOUT_DAY)
                else:
                    player(tracer, rng, at)
                sent += 1
            provider.force_flush()  # the SDK's queue holds 2,048 spans; a day is more, sent faster than real time
            if progress:
                progress(1)
        provider.shutdown()
    return sent


# --- the stages after the traffic: jobs, alerts, reports -------------------------------------------

REVIEWER_HOUR_USD = 48.0


def configure(config, today: date | None = None):
    """The demo's settings where the configuration leaves them open.

    Prices (the GPU pool and a mid-period price change), a reviewer-hour cost, budgets
    that the traffic overshoots (the fraud team budgeted $0.02 per screening), and a
    local mailbox directory for alerts and the weekly email (one .eml per message).
    """
    from warehouse.jobs.config import BudgetConfig

    data_dir = Path(config.data_dir)
    if config.pricing.price_file is None:
        config.pricing.price_file = write_demo_prices(data_dir, today)
    if config.pricing.reviewer_hour_usd is None:
        config.pricing.reviewer_hour_usd = REVIEWER_HOUR_USD
    if not config.budgets:
        config.budgets = [
            BudgetConfig(name="all-inference", period="month", amount_usd=2800.0),
            BudgetConfig(name="fraud-screening", service="fraud-screening", period="month", amount_usd=2900.0,
                         unit_cost_usd=0.02, unit="decision"),
            BudgetConfig(name="support-weekly", service="support-assistant", period="week", amount_usd=5.0),
        ]
    if not config.smtp.configured:
        config.smtp.mailbox_dir = data_dir / "mailbox"
        config.smtp.recipients = ["finance-lead@example.com", "platform-oncall@example.com"]
    return config


HOURLY_DAYS = 8  # hourly jobs cover the last days only: the dashboard's hourly views and the anomaly checks


def run_jobs(config, book, manifest, start: datetime, end: datetime, advance=None) -> list:
    """Every job of the registry over the demo period, in order; returns the run records.

    Daily and weekly jobs cover the whole period; hourly jobs the last ``HOURLY_DAYS``
    (the anomaly baseline reads older days from the records themselves), which keeps
    the demo well under two minutes.
    """
    from inferledger.scheduler import JobEnvironment
    from warehouse.jobs.registry import all_jobs
    from warehouse.jobs.runner import run_job, windows_between

    environment = JobEnvironment(Path(config.data_dir), config, book, manifest)
    records = []
    for job in all_jobs():
        context = environment.context(end)
        first = max(start, end - timedelta(days=HOURLY_DAYS)) if job.granularity == "hour" else start
        records.append(run_job(job, context, windows_between(job.granularity, first, end), trigger="demo"))
        if advance:
            advance(1)
    return records


def write_reports(config, end: datetime) -> dict[str, Path]:
    """The weekly email of the last complete week (also delivered to the mailbox) and an audit report."""
    from alerts.email import send_message
    from reports.audit_files import write_audit
    from reports.decisions import Scope
    from reports.weekly import IsoWeek, build_weekly
    from reports.weekly_email import build_message, recipients_for, write_message

    data_dir = Path(config.data_dir)
    out = data_dir / "reports"
    week = IsoWeek.last_complete(end)
    report = build_weekly(data_dir, config.reports, list(config.budgets), week, end)
    message = build_message(report, config.reports, recipients_for(config.reports, config.smtp))
    weekly = write_message(message, out, week)
    send_message(config.smtp, message)
    audit_dir = out / f"audit-{(end - timedelta(days=30)).date()}-{end.date()}"
    scope = Scope((end - timedelta(days=30)).date(), (end - timedelta(days=1)).date(), "fraud-screening")
    write_audit(data_dir, scope, config.reports, audit_dir)
    return {"weekly email": weekly, "audit report": audit_dir / "report.html",
            "audit report (PDF)": audit_dir / "report.pdf", "decision export": audit_dir / "decisions.parquet"}
