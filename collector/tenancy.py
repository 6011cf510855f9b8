"""Who may send spans, and for which tenant: the contract between the transports and the wiring.

The collector does not know API keys. The wiring package passes the transports an
``Authenticate`` callable; the transports call it with the request's headers (HTTP)
or metadata (gRPC), names in lower case, before reading the body. It returns the
tenant the key is scoped to (``None``: any tenant) or raises
:class:`collector.errors.Unauthenticated` (401 / UNAUTHENTICATED) or
:class:`collector.errors.PermissionDenied` (403 / PERMISSION_DENIED).

A key scoped to a tenant may only write that tenant's records: spans that name no
tenant are stamped with the key's tenant, spans that name another tenant are
refused one by one through OTLP partial success (the others are kept), exactly as
invalid spans are. HTTP attempts under a refused span are dropped with it.
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Mapping

import pyarrow.compute as pc

from collector.normalize import NormalizedBatch

Authenticate = Callable[[Mapping[str, str]], "str | None"]


def restrict_to_tenant(batch: NormalizedBatch, tenant: str) -> NormalizedBatch:
    """The batch as a key scoped to ``tenant`` may write it (see the module docstring)."""
    inferences = batch.inferences
    column = inferences.column("tenant")
    foreign = pc.fill_null(pc.not_equal(column, tenant), False)
    refused = pc.sum(foreign).as_py() or 0
    stamped = pc.fill_null(column, tenant)
    index = inferences.schema.get_field_index("tenant")
    inferences = inferences.set_column(index, inferences.schema.field(index), stamped)
    if not refused:
        return dataclasses.replace(batch, inferences=inferences)
    keep = pc.invert(foreign)
    refused_spans = pc.filter(inferences.column("span_id"), foreign)
    attempts = batch.http_attempts
    if attempts.num_rows:
        under_refused = pc.fill_null(pc.is_in(attempts.column("parent_span_id"), value_set=refused_spans), False)
        attempts = attempts.filter(pc.invert(under_refused))
    message = f"{refused} span(s) belong to another tenant than this key's ({tenant!r})"
    return dataclasses.replace(
        batch, inferences=inferences.filter(keep), http_attempts=attempts,
        rejected_spans=batch.rejected_spans + refused, rejection_messages=[*batch.rejection_messages, message])


def headers_of(pairs) -> dict[str, str]:
    """Header or metadata pairs as a dict with lower-case names (gRPC metadata is a tuple of pairs)."""
    return {str(name).lower(): value for name, value in pairs if isinstance(value, str)}

