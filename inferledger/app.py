"""Assemble one inferledger process: storage, the OTLP receivers, the HTTP app.

``Pipeline`` owns the pieces and their start/stop order: storage first (it
replays the write-ahead log left by a crash), then the listeners; on stop the
listeners close first and storage lands everything it holds.
"""
from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import uvicorn
from apscheduler.triggers.interval import IntervalTrigger
from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response

from alerts import run_alerts
from collector import otlp_grpc, otlp_http
from collector.metrics import PipelineMetrics
from collector.normalize import NormalizeSettings
from collector.receiver import Receiver
from collector.redact import RedactionRules
from collector.workers import NormalizerPool
from inferledger.api import ApiServices, api_services, mount_api
from inferledger.auth import AuthSetupError, ingest_authenticator
from inferledger.config import Config, subject_key
from inferledger.health import HealthRecorder
from inferledger.memory import tune_allocators
from inferledger.scheduler import JobEnvironment, add_task, start_scheduler
from reports.weekly_email import send_weekly_report
from warehouse import duplicates
from warehouse.compaction import CompactionSettings
from warehouse.jobs.runner import duckdb_limits
from warehouse.retention import apply_retention
from warehouse.signing import SigningKeyError, configured_private_key, sign_head
from warehouse.storage import Storage, StorageSettings


class StartupError(Exception):
    """The server cannot start; the message tells the operator what to fix."""


@dataclass
class Pipeline:
    config: Config
    book: object  # warehouse.pricing.PriceBook, built once: its lookups are cached
    storage: Storage
    receiver: Receiver
    metrics: PipelineMetrics
    app: FastAPI
    http_socket: socket.socket | None = None
    grpc_server: object | None = None
    grpc_port: int | None = None
    scheduler: object | None = None
    api: ApiServices | None = None
    signing_key: object | None = None  # Ed25519 key that signs the manifest's chain head, when configured
    _uvicorn: uvicorn.Server | None = field(default=None, repr=False)

    @property
    def http_port(self) -> int:
        return self.http_socket.getsockname()[1]


def build_pipeline(config: Config) -> Pipeline:
    tune_allocators()  # freed landing and compaction buffers go back to the OS (inferledger/memory.py)
    data_dir = prepare_data_dir(Path(config.data_dir))
    book = price_book(config)
    storage = Storage(data_dir, storage_settings(config, book))
    metrics = PipelineMetrics()
    metrics.add_gauges(storage.stats)
    settings = NormalizeSettings(
        capture_content=config.ingest.capture_content,
        keep_http_spans=config.ingest.keep_http_spans,
        subject_key=subject_key(config),
        max_attribute_value_bytes=config.ingest.max_attribute_value_bytes,
        max_tokens=config.ingest.max_tokens,
        redaction=RedactionRules(tuple(config.privacy.redact), tuple(config.privacy.redact_patterns.items())),
    )
    workers = config.ingest.workers if config.ingest.workers >= 0 else (os.cpu_count() or 1)
    receiver = Receiver(storage, NormalizerPool(settings, workers, storage.frame_encoder()), metrics, config.ingest.retry_after_s)
    try:
        api = api_services(config, storage, book)
    except AuthSetupError as exc:
        raise StartupError(str(exc)) from None
    try:
        signing_key = configured_private_key(config.audit.signing_key_file, config.audit.signing_key_env)
    except SigningKeyError as exc:
        raise StartupError(str(exc)) from None
    app = build_http_app(receiver, storage, config, book, api)
    return Pipeline(config=config, book=book, storage=storage, receiver=receiver, metrics=metrics, app=app, api=api,
                    signing_key=signing_key)


def price_book(config: Config):
    """The price book (genai-prices plus the user file); a bad price file is a startup error."""
    from warehouse.pricing import load_book

    try:
        return load_book(config.pricing.price_file)
    except (ValueError, OSError) as exc:
        raise StartupError(f"price file: {exc}") from None


def pricing_defaults(config: Config):
    from warehouse.pricing import PricingDefaults

    return PricingDefaults(tier=config.pricing.default_tier, tier_by_tenant=config.pricing.tier_by_tenant,
                           tier_by_feature=config.pricing.tier_by_feature,
                           reviewer_hour_usd=config.pricing.reviewer_hour_usd)


def storage_settings(config: Config, book) -> StorageSettings:
    """Storage knobs from the configuration; inferences are priced as each segment lands."""
    from warehouse.pricing import landing_transform

    return StorageSettings(
        transform=landing_transform(book, pricing_defaults(config)),
        fsync=config.storage.fsync,
        seal_interval_s=config.storage.seal_interval_s,
        visibility_target_s=config.storage.visibility_target_s,
        max_pending_bytes=config.storage.max_pending_bytes,
        min_free_bytes=config.storage.min_free_bytes,
        max_wal_file_bytes=config.storage.max_wal_file_bytes,
        wal_compression=None if config.storage.wal_compression == "none" else config.storage.wal_compression,
        compaction=CompactionSettings(enabled=config.storage.compaction_enabled,
                                      target_rows=config.storage.compaction_target_rows,
                                      nice=config.storage.compaction_nice),
    )


def prepare_data_dir(data_dir: Path) -> Path:
    """Create the data directory and prove it is writable, with a message that names the path."""
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        probe = data_dir / ".write-probe"
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as exc:
        raise StartupError(f"data directory {data_dir} is not writable: {exc.strerror or exc}") from None
    return data_dir.resolve()


def build_http_app(receiver: Receiver, storage: Storage, config: Config, book=None,
                   api: ApiServices | None = None) -> FastAPI:
    app = FastAPI(
        title="inferledger",
        summary="Cost observability and audit logging for AI inference.",
        version=_version(),
    )
    authenticate = ingest_authenticator(api.gate) if api is not None else None
    app.include_router(otlp_http.build_router(receiver, config.ingest.max_body_bytes, authenticate))
    if api is not None:
        mount_api(app, api)  # /api/v1: auditor queries, exports, SQL, admin

    @app.get("/healthz", tags=["operations"], summary="Liveness: the process answers")
    def healthz() -> dict:
        return {"status": "ok"}

    @app.get("/readyz", tags=["operations"], summary="Readiness: storage runs and accepts spans")
    def readyz() -> JSONResponse:
        ok, reason = storage.can_accept()
        body = {"status": "ready" if ok else "not ready", "reason": reason}
        return JSONResponse(body, status_code=200 if ok else 503)

    @app.get("/metrics", tags=["operations"], summary="Prometheus metrics of the pipeline itself")
    def metrics() -> Response:
        return Response(receiver.metrics.render(), media_type="text/plain; version=0.0.4")

    from inferledger.dashboard import mount_dashboard

    mount_dashboard(app, config, book, api)  # HTML pages under /dashboard
    return app


def bind_socket(host: str, port: int, what: str) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise StartupError(f"cannot listen for {what} on {host}:{port}: {exc.strerror or exc}") from None
    sock.listen(1024)
    sock.set_inheritable(True)
    return sock


def start(pipeline: Pipeline) -> None:
    """Start storage and bind both listeners; HTTP serving itself begins in ``serve_http``."""
    server = pipeline.config.server
    pipeline.http_socket = bind_socket(server.host, server.http_port, "OTLP/HTTP")
    try:
        pipeline.storage.start()
    except (RuntimeError, OSError) as exc:  # another server writes this data dir, or the disk fails
        pipeline.http_socket.close()
        raise StartupError(str(exc)) from None
    pipeline.receiver.normalizers.warm_up()
    pipeline.scheduler = start_scheduler(job_environment(pipeline))
    add_tasks(pipeline)
    if server.grpc_enabled:
        try:
            grpc_server, port = otlp_grpc.build_server(
                pipeline.receiver, server.host, server.grpc_port,
                pipeline.config.ingest.max_body_bytes, server.grpc_workers,
                authenticate=ingest_authenticator(pipeline.api.gate) if pipeline.api else None,
            )
        except OSError as exc:
            pipeline.scheduler.shutdown(wait=False)
            pipeline.receiver.normalizers.shutdown()
            pipeline.storage.stop()
            pipeline.http_socket.close()
            raise StartupError(str(exc)) from None
        grpc_server.start()
        pipeline.grpc_server, pipeline.grpc_port = grpc_server, port
    if pipeline.api is not None:
        pipeline.api.access_log.start(pipeline.storage.manifest)


def job_environment(pipeline: Pipeline) -> JobEnvironment:
    """The scheduled jobs' view of the running server: its data, price book and manifest.

    Alerts are evaluated after every job run, so a figure that crosses a threshold is
    acted on as soon as it is computed.
    """
    data_dir, config = Path(pipeline.config.data_dir), pipeline.config
    environment = JobEnvironment(data_dir, config, pipeline.book, pipeline.storage.manifest)
    environment.after_run.append(lambda record: run_alerts(data_dir, config))
    return environment


def add_tasks(pipeline: Pipeline) -> None:
    """The periodic tasks beside the jobs.

    * collector health into ``job_metrics`` every minute;
    * alert evaluation every minute too: a pending alert must fire once its ``for``
      has passed even when no job runs, and a queued notification is retried;
    * the duplicate indexes of settled days every 15 minutes (``warehouse/duplicates.py``),
      so every reader skips the deduplication window even with the jobs off;
    * retention daily, the weekly report on its schedule (in the report's time zone),
      and signing the chain head when a signing key is configured.
    """
    data_dir, config = Path(pipeline.config.data_dir), pipeline.config
    health = HealthRecorder(data_dir, pipeline.receiver.metrics.registry)
    add_task(pipeline.scheduler, "collector_health", health.record, "* * * * *")
    add_task(pipeline.scheduler, "alerts", lambda: run_alerts(data_dir, config), "* * * * *")
    add_task(pipeline.scheduler, "duplicate_index",
             lambda: duplicates.refresh_all(data_dir, duckdb_limits(config.jobs)), "*/15 * * * *", run_at_start=True)
    manifest = pipeline.storage.manifest
    add_task(pipeline.scheduler, "retention",
             lambda: apply_retention(data_dir, config.audit.retention_policy(), datetime.now(UTC).date(), manifest,
                                     actor="scheduler"), "40 0 * * *", run_at_start=True)
    if config.reports.weekly_enabled:
        add_task(pipeline.scheduler, "weekly_report", lambda: send_weekly_report(data_dir, config),
                 config.reports.weekly_schedule, timezone=config.reports.timezone)
    if pipeline.signing_key is not None:
        add_task(pipeline.scheduler, "sign_chain_head", lambda: sign_head(data_dir, pipeline.signing_key, manifest),
                 IntervalTrigger(minutes=config.audit.signing_interval_minutes), run_at_start=True)


def serve_http(pipeline: Pipeline, log_level: str = "warning") -> None:
    """Run the HTTP server on the bound socket until ``stop_http`` (or a signal) ends it."""
    config = uvicorn.Config(
        pipeline.app, log_level=log_level, access_log=False, lifespan="off",
        timeout_keep_alive=30, limit_concurrency=None,
    )
    server = pipeline._uvicorn = _Server(config)
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: setattr(server, "should_exit", True))
    asyncio.run(server.serve(sockets=[pipeline.http_socket]))


class _Server(uvicorn.Server):
    """uvicorn re-raises SIGTERM after shutting down, which would kill the process before
    storage lands what it holds; the pipeline handles signals itself instead."""

    def capture_signals(self):
        return contextlib.nullcontext()


def stop(pipeline: Pipeline) -> None:
    if pipeline._uvicorn is not None:
        pipeline._uvicorn.should_exit = True
    if pipeline.grpc_server is not None:
        pipeline.grpc_server.stop(grace=2).wait()
    if pipeline.scheduler is not None:
        pipeline.scheduler.shutdown(wait=True)
    pipeline.receiver.normalizers.shutdown()
    if pipeline.api is not None:
        pipeline.api.access_log.stop()
    pipeline.storage.stop()
    if pipeline.http_socket is not None:
        pipeline.http_socket.close()


class RunningServer:
    """A pipeline serving in a background thread: for tests, the demo and benchmarks."""

    def __init__(self, config: Config):
        self.pipeline = build_pipeline(config)
        self._thread: threading.Thread | None = None

    def __enter__(self) -> "RunningServer":
        start(self.pipeline)
        self._thread = threading.Thread(target=serve_http, args=(self.pipeline,), name="http", daemon=True)
        self._thread.start()
        while self.pipeline._uvicorn is None or not self.pipeline._uvicorn.started:
            if not self._thread.is_alive():
                raise StartupError("HTTP server failed to start")
            threading.Event().wait(0.01)
        return self

    def __exit__(self, *exc) -> None:
        if self.pipeline._uvicorn is not None:
            self.pipeline._uvicorn.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.pipeline._uvicorn = None
        stop(self.pipeline)

    @property
    def http_url(self) -> str:
        return f"http://{self.pipeline.config.server.host}:{self.pipeline.http_port}"

    @property
    def grpc_target(self) -> str:
        return f"{self.pipeline.config.server.host}:{self.pipeline.grpc_port}"

    @property
    def data_dir(self) -> Path:
        return Path(self.pipeline.config.data_dir)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("inferledger")
    except PackageNotFoundError:
        return os.environ.get("INFERLEDGER_VERSION", "0.0.0")
