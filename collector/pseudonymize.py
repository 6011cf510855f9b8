"""Keyed pseudonyms for people: subjects of decisions, calling users, reviewers.

A person's identifier must not reach the warehouse in clear, yet auditors must
be able to group all records of one person and, given the id and the key,
find them (e.g. for an access or erasure request). A keyed hash does both:
HMAC-SHA256 with a secret key, hex-encoded. Without the key the pseudonym
cannot be reversed or recomputed from a guessed id, which a plain hash could.

Hashing costs a few microseconds, and the same few ids recur in a batch, so
results are memoized in a bounded dict that is simply cleared when full.
"""
from __future__ import annotations

import hashlib
import hmac

_CACHE_LIMIT = 65536


class Pseudonymizer:
    """Maps an identifier to ``HMAC-SHA256(key, id)`` as 64 lower-case hex characters."""

    def __init__(self, key: bytes):
        if not isinstance(key, (bytes, bytearray)) or not key:
            raise ValueError("the pseudonymization key must be non-empty bytes")
        self._base = hmac.new(bytes(key), digestmod=hashlib.sha256)
        self._cache: dict[str, str] = {}

    def __call__(self, identifier: str) -> str:
        cached = self._cache.get(identifier)
        if cached is not None:
            return cached
        mac = self._base.copy()
        mac.update(identifier.encode("utf-8", "surrogatepass"))
        pseudonym = mac.hexdigest()
        if len(self._cache) >= _CACHE_LIMIT:
            self._cache.clear()
        self._cache[identifier] = pseudonym
        return pseudonym


def pseudonymize(identifier: str, key: bytes) -> str:
    """One-off form of :class:`Pseudonymizer`, for tools that look a person up."""
    return hmac.new(key, identifier.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()
