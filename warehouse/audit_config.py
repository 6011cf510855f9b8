"""``[audit]`` settings: signing the manifest's chain head, and retention per dataset.

Lives in the warehouse (the stage that signs and deletes); ``inferledger/config.py``
wires it as the ``[audit]`` section. The private key itself never sits in the TOML
file: it is a PEM file the process can read, or an environment variable.
"""
from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator

from warehouse.retention import MIN_RETENTION_DAYS, RetentionPolicy, check_retention_days


class AuditConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    signing_key_file: Path | None = Field(
        None, description="Ed25519 private key (PEM, PKCS#8, unencrypted) that signs the manifest's chain head. "
        "Create one with `inferledger heads keygen --out FILE`. Unset: the key comes from signing_key_env, "
        "and with neither, heads are not signed.")
    signing_key_env: str = Field(
        "INFERLEDGER_SIGNING_KEY", description="Environment variable that may hold the signing key instead "
        "(PEM text, or the 32-byte raw private key as 64 hex digits); used when signing_key_file is unset.")
    signing_interval_minutes: int = Field(
        60, ge=1, le=7 * 24 * 60, description="How often `inferledger serve` signs the chain head.")
    retention_days: int = Field(
        400, description=f"Days of inference data kept (inferences, http_attempts, cost_versions); whole days "
        f"older than this are deleted daily, with a manifest entry. At least {MIN_RETENTION_DAYS} "
        "(6 months, the EU AI Act's minimum for logs of high-risk systems).")
    retention_days_by_dataset: dict[str, int] = Field(
        default_factory=dict, description="Retention per dataset, overriding retention_days, e.g. "
        "{http_attempts = 200, access_log = 730}; also makes datasets outside the default set "
        f"(audit logs) subject to retention. Each at least {MIN_RETENTION_DAYS}.")

    @field_validator("retention_days")
    @classmethod
    def _check_days(cls, days: int) -> int:
        check_retention_days("retention_days", days)
        return days

    @field_validator("retention_days_by_dataset")
    @classmethod
    def _check_dataset_days(cls, by_dataset: dict[str, int]) -> dict[str, int]:
        for dataset, days in by_dataset.items():
            check_retention_days(f"retention_days_by_dataset.{dataset}", days)
        return by_dataset

    def retention_policy(self) -> RetentionPolicy:
        return RetentionPolicy(self.retention_days, dict(self.retention_days_by_dataset))
