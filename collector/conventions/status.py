"""The error class of a failed span, when ``error.type`` does not give it.

OTel asks for ``error.type`` on failed GenAI spans; OpenInference records only
the span status and an ``exception`` event; HTTP-level spans carry a status
code. In that order, with ``_OTHER`` (the OTel fallback value) last.
"""
from __future__ import annotations

from collector.attributes import EXCEPTION_TYPE, HTTP_STATUS, any_value
from collector.conventions.values import as_int, as_str

OTHER = "_OTHER"


def error_class(span, attributes: dict) -> str:
    """``exception.type`` of the first exception event, else an HTTP status >= 400, else _OTHER."""
    return _exception_type(span) or _http_error(attributes) or OTHER


def clean_class_repr(error_type: str) -> str:
    """``"<class 'openai.BadRequestError'>"`` -> ``openai.BadRequestError``.

    opentelemetry-instrumentation-openai-v2 2.4b0 writes ``str()`` of the exception
    class into ``error.type``; the class name is what error rollups should group by.
    """
    if error_type.startswith("<class '") and error_type.endswith("'>"):
        return error_type[8:-2]
    return error_type


def _exception_type(span):
    for event in span.events:
        if event.name == "exception":
            for kv in event.attributes:
                if kv.key == EXCEPTION_TYPE:
                    return as_str(any_value(kv.value, 1024))
    return None


def _http_error(attributes: dict):
    for key in HTTP_STATUS:
        code = as_int(attributes.get(key))
        if code is not None and code >= 400:
            return str(code)
    return None
