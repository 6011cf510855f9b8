"""Admin routes (``/api/v1/admin``): reprice, the effective configuration, erasure. Role ``admin`` only.

Each is logged in the access log like an auditor query. Writes go through the
running server's manifest, so they join the same hash chain as ingestion.
"""
from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request

from collector.pseudonymize import pseudonymize
from inferledger.api import ERRORS, ApiServices, audited
from inferledger.api_models import EraseRequest, Problem, RepriceRequest, RepriceResponse
from inferledger.auth import Principal
from warehouse.audit.values import json_value

SECRET_NAME = re.compile(r"(password|passwd|secret|token|private_key|_key)$", re.IGNORECASE)
URL_CREDENTIALS = re.compile(r"(?<=://)[^/@\s]+@")


def build_admin_router(services: ApiServices) -> APIRouter:
    router = APIRouter(prefix="/api/v1/admin", tags=["admin"], responses=ERRORS)
    admin = services.role("admin")

    @router.post("/reprice", response_model=RepriceResponse, summary="Reprice a period as a new cost version",
                 responses={400: {"model": Problem, "description": "The period is empty or reversed"}},
                 description="Recomputes the costs of every inference dated from..to with the current price book "
                             "(warehouse.pricing.reprice); raw records stay untouched.")
    def reprice_route(request: Request, body: RepriceRequest, principal: Principal = Depends(admin)) -> dict:
        from inferledger.app import pricing_defaults
        from warehouse.pricing import reprice

        parameters = body.model_dump(mode="json", by_alias=True)
        with audited(services, request, principal, parameters) as counted:
            if body.date_to < body.date_from:
                raise HTTPException(400, "'to' is before 'from'")
            result = reprice(services.data_dir, services.book, body.date_from, body.date_to, dry_run=body.dry_run,
                             actor=actor(principal), reason=body.reason, defaults=pricing_defaults(services.config),
                             manifest=services.storage.manifest)
            counted.rows = result.records
            return {"cost_version": result.cost_version, "records": result.records, "changed": result.changed,
                    "total_before_usd": result.total_before_usd, "total_after_usd": result.total_after_usd,
                    "unpriced_before": result.unpriced_before, "unpriced_after": result.unpriced_after,
                    "diff": [json_value(row) for row in result.diff.to_pylist()]}

    @router.get("/config", summary="The effective configuration, secrets hidden",
                description="Every setting after file, environment and command line; values of settings named like "
                            "secrets and credentials inside URLs are replaced by ***.")
    def config_route(request: Request, principal: Principal = Depends(admin)) -> dict[str, Any]:
        with audited(services, request, principal, {}):
            return redact(services.config.model_dump(mode="json"))

    @router.post("/erase", summary="Erase a person's data everywhere (warehouse.erasure)",
                 responses={400: {"model": Problem, "description": "Erasure refused; the message says why"},
                            501: {"model": Problem, "description": "Erasure is not part of this build"}},
                 description="The raw subject id is pseudonymized with the collector's key, then every record of "
                             "that subject is erased; returns the erasure receipt.")
    def erase_route(request: Request, body: EraseRequest, principal: Principal = Depends(admin)) -> dict[str, Any]:
        pseudonym = pseudonymize(body.subject, services.subject_key)
        parameters = {"reason": body.reason}  # not the subject: the erasure receipt records whom, as a hash
        with audited(services, request, principal, parameters) as counted:
            try:
                from warehouse.erasure import ErasureError, erase_subject
            except ImportError:
                raise HTTPException(501, "erasure is not available: warehouse.erasure is missing from this build") \
                    from None
            # Land the access log first: lookups of this subject waiting in its journal are then erased too.
            services.access_log.flush()
            try:
                receipt = erase_subject(services.data_dir, pseudonym, manifest=services.storage.manifest,
                                        actor=actor(principal), reason=body.reason)
            except ErasureError as exc:
                raise HTTPException(400, str(exc)) from None
            counted.rows = int(receipt.get("rows_affected") or 0)
            return json_value(receipt)

    return router


def actor(principal: Principal) -> str:
    """How an API caller is named in repricing logs and erasure receipts."""
    return f"api-key:{principal.key_id} ({principal.name})"


def redact(value: Any, name: str = "") -> Any:
    """A copy of a JSON-like configuration with secret-looking values replaced by ``***``."""
    if isinstance(value, dict):
        return {key: redact(item, key) for key, item in value.items()}
    if isinstance(value, list):
        return [redact(item, name) for item in value]
    if value is not None and SECRET_NAME.search(name):
        return "***"
    if isinstance(value, str):
        return URL_CREDENTIALS.sub("***@", value)
    return value
