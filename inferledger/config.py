"""One configuration file (TOML), environment overrides, documented defaults.

Precedence, lowest to highest: built-in defaults < the TOML file < environment
variables < command-line options. Every field carries a description; the
configuration reference in ``docs/configuration.md`` is generated from these
models and a test keeps the two in sync.

Environment variables: ``INFERLEDGER_<SECTION>__<FIELD>`` (double underscore
between section and field), for example ``INFERLEDGER_SERVER__HTTP_PORT=4319``;
``INFERLEDGER_DATA_DIR`` for the top-level data directory. Secrets (the subject
pseudonymization key) come only from the environment or a key file, never from
the TOML file.
"""
from __future__ import annotations

import os
import secrets
import tomllib
from pathlib import Path
from typing import Any, Literal, Mapping

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from alerts.config import AlertsConfig, SmtpConfig, WebhookConfig
from collector.redact import check_patterns
from inferledger.auth import AuthConfig
from reports.config import ReportsConfig
from warehouse.audit_config import AuditConfig
from warehouse.jobs.config import BudgetConfig, JobsConfig

ENV_PREFIX = "INFERLEDGER_"
DEFAULT_CONFIG_NAME = "inferledger.toml"


class ConfigError(Exception):
    """The configuration is invalid; the message says where and why."""


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ServerConfig(Section):
    host: str = Field("127.0.0.1", description="Address the HTTP and gRPC listeners bind to.")
    http_port: int = Field(4318, ge=0, le=65535, description="OTLP/HTTP port (also serves /metrics, /healthz, the API).")
    grpc_port: int = Field(4317, ge=0, le=65535, description="OTLP/gRPC port; 0 picks a free port.")
    grpc_enabled: bool = Field(True, description="Start the OTLP/gRPC listener.")
    grpc_workers: int = Field(4, ge=1, le=64, description="Threads serving gRPC requests.")


class IngestConfig(Section):
    max_body_bytes: int = Field(
        64 * 1024 * 1024, ge=1024,
        description="Largest accepted request body after decompression (the OTLP spec recommends 64 MiB); larger gets 413.",
    )
    max_attribute_value_bytes: int = Field(
        16384, ge=64, description="String attribute values longer than this are truncated in the stored attributes JSON."
    )
    max_tokens: int = Field(
        10_000_000, ge=1, description="A token count above this (or negative) rejects the span as implausible."
    )
    capture_content: bool = Field(
        False, description="Store prompt and completion content attributes. Off by default: content is dropped at ingest."
    )
    keep_http_spans: bool = Field(
        True, description="Keep HTTP client spans (status, resend count, timing) as retry evidence in `http_attempts`."
    )
    workers: int = Field(
        -1, ge=-1, le=64,
        description="Processes that decode and normalize spans: 0 = in the server process, -1 = one per CPU core.",
    )
    retry_after_s: int = Field(5, ge=1, le=3600, description="Retry-After seconds sent with 503/429 backpressure answers.")


class StorageConfig(Section):
    fsync: bool = Field(True, description="fsync the write-ahead log before acknowledging. Turn off only for throwaway data.")
    seal_interval_s: float = Field(
        2.5, gt=0, le=60,
        description="Seal the active write-ahead log file (and land it as a Parquet segment) at least this often; "
        "must stay below visibility_target_s. Longer means bigger segments and less compaction work "
        "(1 s: 16.5k spans/s, 2.5 s: 25k spans/s in bench/ingest.py).",
    )
    visibility_target_s: float = Field(5.0, gt=0, le=600, description="Acknowledged spans are queryable within this many seconds.")
    max_pending_bytes: int = Field(
        256 * 1024 * 1024, ge=1024 * 1024,
        description="Unlanded write-ahead log bytes above which the collector answers 503 instead of accepting.",
    )
    min_free_bytes: int = Field(
        256 * 1024 * 1024, ge=0, description="Free disk space on the data directory below which the collector answers 503."
    )
    max_wal_file_bytes: int = Field(
        64 * 1024 * 1024, ge=1024 * 1024, description="Seal the active write-ahead log file earlier when it reaches this size."
    )
    wal_compression: Literal["none", "lz4", "zstd"] = Field(
        "none", description="Compress write-ahead log frames: 3-5x fewer log bytes for 3-5x more CPU; only for slow disks."
    )
    compaction_enabled: bool = Field(True, description="Merge small Parquet segments of a day into bigger files.")
    compaction_target_rows: int = Field(
        1_000_000, ge=10_000, description="Stop adding segments to one compacted file beyond this many rows."
    )
    compaction_nice: int = Field(
        10, ge=0, le=19, description="How much lower than ingest the compactor thread's CPU priority is (Linux): "
        "under load it takes what ingest leaves and catches up when the load drops.",
    )


class PricingConfig(Section):
    price_file: Path | None = Field(
        None,
        description="User price file (TOML) with overrides, aliases, tier discounts and capacity pools; "
        "its entries win over the built-in genai-prices list. See warehouse/pricing/README.md.",
    )
    default_tier: str = Field("standard", description="Service tier for records that report none.")
    tier_by_tenant: dict[str, str] = Field(default_factory=dict, description="Default service tier per tenant.")
    tier_by_feature: dict[str, str] = Field(
        default_factory=dict, description="Default service tier per feature (wins over the tenant's)."
    )
    reviewer_hour_usd: float | None = Field(
        None, gt=0, description="Cost of one reviewer-hour in USD: a human review span costs review_duration_s / 3600 "
        "times this (cost_source human_review). Unset: reviews are unpriced.")


class PrivacyConfig(Section):
    subject_key_env: str = Field(
        "INFERLEDGER_SUBJECT_KEY",
        description="Environment variable holding the HMAC key (hex or text) used to pseudonymize subject, user and reviewer ids. "
        "When unset, a random key is generated once and kept in <data_dir>/keys/subject.key (mode 0600).",
    )
    redact: list[Literal["email", "card_number", "phone_number"]] = Field(
        ["email", "card_number", "phone_number"], description="Built-in redaction rules applied to captured content "
        "(ingest.capture_content) before it is written; matches become [EMAIL], [CARD_NUMBER], [PHONE_NUMBER].")
    redact_patterns: dict[str, str] = Field(
        default_factory=dict, description="Custom redaction rules for captured content: name = Python regex; "
        "matches become [NAME], e.g. {employee_id = 'EMP-\\d{6}'}.")

    @field_validator("redact_patterns")
    @classmethod
    def _patterns_compile(cls, patterns: dict[str, str]) -> dict[str, str]:
        return check_patterns(patterns)


class Config(Section):
    data_dir: Path = Field(Path("./inferledger-data"), description="Local data directory: write-ahead log, Parquet, manifest.")
    server: ServerConfig = Field(default_factory=ServerConfig)
    ingest: IngestConfig = Field(default_factory=IngestConfig)
    storage: StorageConfig = Field(default_factory=StorageConfig)
    pricing: PricingConfig = Field(default_factory=PricingConfig)
    privacy: PrivacyConfig = Field(default_factory=PrivacyConfig)
    auth: AuthConfig = Field(default_factory=AuthConfig)
    audit: AuditConfig = Field(default_factory=AuditConfig)
    jobs: JobsConfig = Field(default_factory=JobsConfig)
    reports: ReportsConfig = Field(default_factory=ReportsConfig)
    budgets: list[BudgetConfig] = Field(
        default_factory=list, description="Budgets, one `[[budgets]]` table each (fields below).")
    alerts: AlertsConfig = Field(default_factory=AlertsConfig)
    smtp: SmtpConfig = Field(default_factory=SmtpConfig)
    webhooks: list[WebhookConfig] = Field(default_factory=list, description="Webhook channels for alerts, one `[[webhooks]]` table each.")

    @field_validator("budgets")
    @classmethod
    def _unique_budget_names(cls, budgets: list[BudgetConfig]) -> list[BudgetConfig]:
        """Alerts, reports and the variance table key budgets by name: two with one name would mix."""
        names = [budget.name for budget in budgets]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(f"budget names must be unique; repeated: {', '.join(repeated)}")
        return budgets

    @field_validator("jobs")
    @classmethod
    def _known_job_names(cls, jobs: JobsConfig) -> JobsConfig:
        from warehouse.jobs.registry import all_jobs

        known = {job.name for job in all_jobs()}
        unknown = sorted((set(jobs.schedules) | set(jobs.disabled)) - known)
        if unknown:
            raise ValueError(f"unknown job name(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        return jobs


def load_config(path: Path | None = None, environ: Mapping[str, str] | None = None, **overrides: Any) -> Config:
    """Load the TOML file (if any), apply environment and explicit overrides, validate.

    ``overrides`` are dotted names as keyword-safe pairs, e.g. ``data_dir=...`` or
    ``server__http_port=4319``; ``None`` values are ignored so CLI options that
    were not given leave the file's value alone.
    """
    environ = os.environ if environ is None else environ
    data: dict[str, Any] = {}
    path = path or _default_config_path(environ)
    if path is not None:
        data = _read_toml(path)
    for dotted, value in _env_overrides(environ).items():
        _set_dotted(data, dotted, value)
    for key, value in overrides.items():
        if value is not None:
            _set_dotted(data, key.replace("__", "."), value)
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_validation_error(exc, path)) from None


def _default_config_path(environ: Mapping[str, str]) -> Path | None:
    if environ.get(ENV_PREFIX + "CONFIG"):
        return Path(environ[ENV_PREFIX + "CONFIG"])
    candidate = Path(DEFAULT_CONFIG_NAME)
    return candidate if candidate.is_file() else None


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"configuration file {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"configuration file {path} is not valid TOML: {exc}") from None


def _env_overrides(environ: Mapping[str, str]) -> dict[str, str]:
    """``INFERLEDGER_SERVER__HTTP_PORT=1`` -> ``{"server.http_port": "1"}``."""
    found = {}
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX) or name in (ENV_PREFIX + "CONFIG", ENV_PREFIX + "SUBJECT_KEY"):
            continue
        dotted = name[len(ENV_PREFIX):].lower().replace("__", ".")
        if dotted.split(".")[0] in Config.model_fields:
            found[dotted] = value
    return found


def _set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    node = data
    for part in parents:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"cannot set {dotted}: {part} is not a section")
    node[leaf] = value


def _format_validation_error(exc: ValidationError, path: Path | None) -> str:
    where = f" in {path}" if path else ""
    lines = [f"invalid configuration{where}:"]
    for error in exc.errors():
        location = ".".join(str(part) for part in error["loc"])
        message = "unknown setting" if error["type"] == "extra_forbidden" else error["msg"]
        lines.append(f"  {location}: {message} (got {error.get('input')!r})")
    return "\n".join(lines)


def subject_key(config: Config, environ: Mapping[str, str] | None = None) -> bytes:
    """The pseudonymization key: from the environment, else a generated key file in the data dir."""
    environ = os.environ if environ is None else environ
    value = environ.get(config.privacy.subject_key_env)
    if value:
        try:
            return bytes.fromhex(value)
        except ValueError:
            return value.encode()
    key_file = Path(config.data_dir) / "keys" / "subject.key"
    if key_file.exists():
        return bytes.fromhex(key_file.read_text().strip())
    key_file.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_bytes(32)
    fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(key.hex())
    return key


def render_reference() -> str:
    """The configuration reference (docs/configuration.md), generated from the models above."""
    lines = [
        "# Configuration reference",
        "",
        "<!-- generated by `python -m inferledger.config > docs/configuration.md`; tests/test_docs.py keeps it current -->",
        "",
        "inferledger reads one TOML file: `--config FILE`, else `$INFERLEDGER_CONFIG`, else `./inferledger.toml`",
        "when present. Environment variables override the file: `INFERLEDGER_<SECTION>__<FIELD>`",
        "(e.g. `INFERLEDGER_SERVER__HTTP_PORT=4319`), and `INFERLEDGER_DATA_DIR` for the data directory.",
        "Command-line options override both. Unknown settings are errors.",
        "",
    ]
    lines += _model_tables("", "(top level)", Config)
    return "\n".join(lines) + "\n"


def _nested_model(annotation: Any) -> tuple[type[BaseModel], bool] | None:
    """(model, is_list) for a field holding a section or a list of them, else None."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation, False
    args = getattr(annotation, "__args__", ())
    present = [arg for arg in args if arg is not type(None)]
    if len(present) == 1 and len(args) == 2:  # an optional section (``X | None``)
        return _nested_model(present[0])
    if getattr(annotation, "__origin__", None) is list and args and isinstance(args[0], type) \
            and issubclass(args[0], BaseModel):
        return args[0], True
    return None


def _model_tables(prefix: str, title: str, model: type[BaseModel]) -> list[str]:
    """One table of a section's plain settings, then one per nested section (``[a.b]``, ``[[a.list]]``)."""
    lines = [f"## {title}", ""]
    if model.__doc__ and model is not Config:
        lines += [" ".join(model.__doc__.split()), ""]
    lines += ["| setting | default | meaning |", "|---|---|---|"]
    nested = []
    for name, field in model.model_fields.items():
        found = _nested_model(field.annotation)
        if found:
            nested.append((name, *found))
            continue
        default = "(required)" if field.is_required() else (
            field.default if field.default_factory is None else field.default_factory())
        lines.append(f"| `{field.alias or name}` | `{default}` | {field.description} |")
    lines.append("")
    for name, sub_model, is_list in nested:
        dotted = f"{prefix}.{name}" if prefix else name
        lines += _model_tables(dotted, f"[[{dotted}]]" if is_list else f"[{dotted}]", sub_model)
    return lines


if __name__ == "__main__":
    print(render_reference(), end="")
