"""Request and response shapes of the auditor API, for validation and the OpenAPI schema.

The record models are generated from the Arrow schemas in ``warehouse/record.py``,
descriptions included, so the documented shape of a decision is the record
contract itself and cannot drift from it.
"""
from __future__ import annotations

from datetime import date, datetime
from typing import Any, Optional

import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field, create_model

from warehouse.record import HTTP_ATTEMPT_SCHEMA, RECORD_SCHEMA

_PYTHON_TYPES = {pa.string(): str, pa.float64(): float, pa.int64(): int, pa.int32(): int, pa.bool_(): bool,
                 pa.date32(): date, pa.list_(pa.string()): list[str]}


def _python_type(arrow_type: pa.DataType):
    return datetime if pa.types.is_timestamp(arrow_type) else _PYTHON_TYPES[arrow_type]


def _model_from_schema(name: str, doc: str, schema: pa.Schema, extra: dict) -> type[BaseModel]:
    fields: dict[str, Any] = {}
    for field in schema:
        description = (field.metadata or {}).get(b"description", b"").decode()
        fields[field.name] = (Optional[_python_type(field.type)], Field(None, description=description))
    fields.update(extra)
    model = create_model(name, __config__=ConfigDict(extra="allow"), **fields)
    model.__doc__ = doc
    return model


_PARTITION = {"date": (Optional[date], Field(None, description="UTC date of start_time (the Parquet partition)"))}

Decision = _model_from_schema(
    "Decision", "One inference record as the `inferences` view shows it (latest cost version).", RECORD_SCHEMA,
    {**_PARTITION, "cost_version": (Optional[int], Field(None, description="cost version shown: 0 = as landed"))})
HttpAttempt = _model_from_schema(
    "HttpAttempt", "One HTTP client span under an inference span (retry evidence).", HTTP_ATTEMPT_SCHEMA, _PARTITION)


class Problem(BaseModel):
    detail: str = Field(description="What is wrong, in English.")


class DecisionPage(BaseModel):
    items: list[Decision] = Field(description="Records in (start_time, trace_id, span_id) order.")
    count: int = Field(description="Number of items on this page.")
    next_cursor: str | None = Field(
        description="Pass as `cursor` (with the same filters) for the next page; null on the last.")


class CostVersion(BaseModel):
    cost_version: int = Field(description="0 = cost as landed; higher = a repricing or capacity allocation.")
    kind: str | None = Field(description="landing, reprice or capacity.")
    at: datetime | None = Field(description="When this version was written.")
    actor: str | None = Field(description="Who wrote it (login or API key).")
    reason: str | None = Field(description="Why, as given to the repricing.")
    cost_usd: float | None
    computed_cost_usd: float | None
    cost_source: str | None
    price_ref: str | None


class CostProvenance(BaseModel):
    cost_usd: float | None = Field(description="Cost shown now (latest version); null = unpriced.")
    cost_source: str | None = Field(description="reported, computed, capacity, human_review or unpriced.")
    price_ref: str | None = Field(description="Price book entry and effective date.")
    reported_cost_usd: float | None = Field(description="Cost the span itself reported.")
    computed_cost_usd: float | None = Field(description="Cost computed from the price book beside a reported one.")
    cost_version: int | None = Field(description="Version shown.")
    versions: list[CostVersion] = Field(description="Every cost version of this record, oldest first.")


class DecisionDetail(BaseModel):
    record: Decision
    attempts: list[Decision] = Field(description="All attempts of the same logical request, this record included.")
    http_attempts: list[HttpAttempt] = Field(description="HTTP client spans under any of the attempts.")
    reviews: list[Decision] = Field(description="Human reviews of this decision.")
    cost: CostProvenance


class SqlRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sql: str = Field(description="One SELECT over the warehouse views.", examples=[
        "SELECT model_version, decision_label, count(*) AS n FROM inferences "
        "WHERE date >= DATE '2026-05-01' GROUP BY ALL ORDER BY n DESC"])
    limit: int | None = Field(None, ge=1, description="Most rows to return (default and maximum: [auth] settings).")


class SqlColumn(BaseModel):
    name: str
    type: str = Field(description="Arrow type of the column.")


class SqlResponse(BaseModel):
    columns: list[SqlColumn]
    rows: list[list[Any]] = Field(description="Rows as arrays in column order; timestamps ISO 8601 UTC.")
    row_count: int
    truncated: bool = Field(description="True when the query had more rows than `limit`.")
    limit: int
    elapsed_ms: float


class RepriceRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    date_from: date = Field(alias="from", description="First day to reprice (inclusive).")
    date_to: date = Field(alias="to", description="Last day to reprice (inclusive).")
    reason: str = Field(min_length=1, description="Why; kept in the repricing log.")
    dry_run: bool = Field(False, description="Compute the diff, write nothing.")


class RepriceResponse(BaseModel):
    cost_version: int | None = Field(description="The new cost version; null for a dry run or an empty period.")
    records: int
    changed: int
    total_before_usd: float
    total_after_usd: float
    unpriced_before: int
    unpriced_after: int
    diff: list[dict[str, Any]] = Field(description="Before/after by day, provider and model.")


class EraseRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    subject: str = Field(min_length=1, description="The person's raw id, as the services send it in "
                                                   "inferledger.subject.id; pseudonymized here with the collector's key.")
    reason: str = Field(min_length=1, description="Why (e.g. the data subject request reference).")


class WhoAmI(BaseModel):
    key_id: str
    name: str
    role: str
    tenant: str | None = Field(description="Tenant the key is scoped to; null = all tenants.")
    authentication_required: bool
