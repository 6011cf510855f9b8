"""``inferledger.*`` attributes: decisions, non-GenAI models, retries, human reviews.

These fill what no standard names (ARCHITECTURE.md, "Attributes that
inferledger defines"). Span links carry the relations: a link whose attribute
``inferledger.link.type`` is ``retry_of`` points at the previous attempt of the
same logical request; a review span's link typed ``review_of`` (or, failing
that, its only untyped link, or its parent) is the decision it reviews.
"""
from __future__ import annotations

from collector.attributes import IL_LINK_TYPE, LINK_RETRY_OF, LINK_REVIEW_OF, read_plain
from collector.conventions.values import as_int, as_str

_ZERO_SPAN_ID = bytes(8)
MAX_ATTEMPT = 1_000_000


def review_operation(value):
    """Any ``inferledger.review.*`` key makes the record a review."""
    return "review"


def attempt(value):
    """Attempt number, 0 = first; absurd values are unusable."""
    number = as_int(value)
    return number if number is not None and 0 <= number <= MAX_ATTEMPT else None


def identifier(value):
    """A person's id in any scalar form, as text (it is hashed before it is stored)."""
    if value is None or value == "" or value == []:
        return None
    return value if type(value) is str else str(value)


class LinkedSpans:
    """Span ids (hex) of the links that matter: previous attempt, reviewed decision."""

    __slots__ = ("retry_of", "review_of", "untyped")

    def __init__(self):
        self.retry_of = None
        self.review_of = None
        self.untyped = None


def read_links(links) -> LinkedSpans:
    """Classify a span's links by ``inferledger.link.type``; invalid span ids are skipped."""
    found = LinkedSpans()
    for link in links:
        span_id = link.span_id
        if len(span_id) != 8 or span_id == _ZERO_SPAN_ID:
            continue
        link_type = as_str(read_plain(link.attributes).get(IL_LINK_TYPE)) if link.attributes else None
        if link_type == LINK_RETRY_OF:
            found.retry_of = found.retry_of or span_id.hex()
        elif link_type == LINK_REVIEW_OF:
            found.review_of = found.review_of or span_id.hex()
        elif link_type is None:
            found.untyped = found.untyped or span_id.hex()
    return found
