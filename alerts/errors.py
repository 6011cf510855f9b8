"""Delivery errors, in two kinds, so retries happen only where they can help.

``RetryableDeliveryError``: the channel may work later (connection refused, timeout,
SMTP 4xx, HTTP 5xx/408/429). ``PermanentDeliveryError``: it will not work until
someone changes something (authentication refused, recipient rejected, HTTP 4xx, a
secret missing from the environment, a template error). Both carry a message that
is recorded in ``alert_deliveries`` as is.
"""
from __future__ import annotations


class DeliveryError(Exception):
    """A channel could not deliver a message."""

    retryable = False


class RetryableDeliveryError(DeliveryError):
    """Worth trying again after a pause."""

    retryable = True


class PermanentDeliveryError(DeliveryError):
    """Trying again will not help."""
