"""Decode OTLP/HTTP trace bodies (protobuf or JSON) into ``ExportTraceServiceRequest``.

Pure functions, no I/O; every failure is a :class:`~collector.errors.PermanentError`
with a message that says what is wrong and where.

OTLP/JSON is the proto3 JSON mapping with exceptions (OTLP specification,
"JSON Protobuf Encoding"): trace and span ids are case-insensitive **hex**, not
base64. ``google.protobuf.json_format`` would silently read them as base64, so
the message is built here, walking the message descriptors. Like the
OpenTelemetry Collector's decoder it also accepts snake_case keys, enum names,
64-bit integers as strings or numbers, and ignores unknown fields.

An id that is not valid hex, or has the wrong length, does not fail the request:
it is stored as bytes of a length no valid id has, so ``normalize`` rejects just
that span (partial success).
"""
from __future__ import annotations

import base64
import binascii
import json
import math

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from collector.errors import PermanentError

_HEX_ID_FIELDS = frozenset((
    ("opentelemetry.proto.trace.v1.Span", "trace_id"),
    ("opentelemetry.proto.trace.v1.Span", "span_id"),
    ("opentelemetry.proto.trace.v1.Span", "parent_span_id"),
    ("opentelemetry.proto.trace.v1.Span.Link", "trace_id"),
    ("opentelemetry.proto.trace.v1.Span.Link", "span_id"),
))
# Keys of the pre-1.0 protos that some old exporters still send.
_LEGACY_ALIASES = {
    "opentelemetry.proto.trace.v1.ResourceSpans": {
        "instrumentationLibrarySpans": "scope_spans", "instrumentation_library_spans": "scope_spans"},
    "opentelemetry.proto.trace.v1.ScopeSpans": {
        "instrumentationLibrary": "scope", "instrumentation_library": "scope"},
}
_VALID_ID_LENGTHS = (8, 16)
_KEY_VALUE = "opentelemetry.proto.common.v1.KeyValue"
_INT64_LIMIT = 1 << 63
_INT_TYPES = frozenset((
    FieldDescriptor.TYPE_INT64, FieldDescriptor.TYPE_UINT64, FieldDescriptor.TYPE_FIXED64,
    FieldDescriptor.TYPE_SFIXED64, FieldDescriptor.TYPE_SINT64, FieldDescriptor.TYPE_INT32,
    FieldDescriptor.TYPE_UINT32, FieldDescriptor.TYPE_FIXED32, FieldDescriptor.TYPE_SFIXED32,
    FieldDescriptor.TYPE_SINT32,
))
_FLOAT_TYPES = frozenset((FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT))
_SPECIAL_FLOATS = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def decode_protobuf(body: bytes) -> ExportTraceServiceRequest:
    """Parse a binary ``ExportTraceServiceRequest``; an empty body is an empty request."""
    try:
        return ExportTraceServiceRequest.FromString(body)
    except DecodeError as error:
        raise PermanentError(f"protobuf decode failed: {_diagnose(body, error)}") from None
    except Exception as error:  # the contract: only PermanentError leaves this function
        raise PermanentError(f"protobuf decode failed: {type(error).__name__}: {error}") from None


def decode_json(body: bytes) -> ExportTraceServiceRequest:
    """Parse an OTLP/JSON ``ExportTraceServiceRequest``; an empty body is an empty request."""
    request = ExportTraceServiceRequest()
    body = body.removeprefix(b"\xef\xbb\xbf")  # a UTF-8 byte order mark
    if not body.strip():
        return request
    try:
        document = json.loads(body)
    except json.JSONDecodeError as error:
        raise PermanentError(
            f"invalid JSON at line {error.lineno} column {error.colno}: {error.msg}") from None
    except (UnicodeDecodeError, ValueError, RecursionError) as error:
        raise PermanentError(f"invalid JSON: {error}") from None
    if not isinstance(document, dict):
        raise PermanentError(f"invalid OTLP JSON: expected an object, got {_kind(document)}")
    try:
        _fill(request, document)
    except _ShapeError as error:
        raise PermanentError(f"invalid OTLP JSON at {error.where()}: {error}") from None
    except RecursionError:
        raise PermanentError("invalid OTLP JSON: values nested too deeply") from None
    except Exception as error:  # the contract: only PermanentError leaves this function
        raise PermanentError(f"invalid OTLP JSON: {type(error).__name__}: {error}") from None
    return request


class _ShapeError(Exception):
    """A JSON value that does not fit its field; ``path`` is filled on the way up."""

    def __init__(self, message: str):
        super().__init__(message)
        self.path: list = []

    def where(self) -> str:
        text = ""
        for step in reversed(self.path):
            text += f"[{step}]" if isinstance(step, int) else (f".{step}" if text else step)
        return text or "top level"


def _kind(value) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean",
            type(None): "null"}.get(type(value), "a number")


class _Field:
    """How one JSON key fills one protobuf field."""

    __slots__ = ("name", "json_name", "convert", "message", "repeated", "key_values")

    def __init__(self, descriptor: FieldDescriptor):
        self.name = descriptor.name
        self.json_name = descriptor.json_name
        self.repeated = descriptor.is_repeated
        self.message = descriptor.type == FieldDescriptor.TYPE_MESSAGE
        self.key_values = self.message and descriptor.message_type.full_name == _KEY_VALUE
        self.convert = None if self.message else _converter(descriptor)


def _converter(descriptor: FieldDescriptor):
    field_type = descriptor.type
    if (descriptor.containing_type.full_name, descriptor.name) in _HEX_ID_FIELDS:
        return _hex_id
    if field_type in _INT_TYPES:
        return _integer
    if field_type in _FLOAT_TYPES:
        return _number
    if field_type == FieldDescriptor.TYPE_BOOL:
        return _boolean
    if field_type == FieldDescriptor.TYPE_STRING:
        return _string
    if field_type == FieldDescriptor.TYPE_BYTES:
        return _base64
    if field_type == FieldDescriptor.TYPE_ENUM:
        return lambda value: _enum(descriptor.enum_type, value)
    raise TypeError(f"unsupported field type {field_type} of {descriptor.full_name}")


_FIELD_TABLES: dict = {}


def _fields(descriptor) -> dict:
    """JSON key (lowerCamelCase, snake_case, legacy alias) -> _Field, built once per type."""
    table = _FIELD_TABLES.get(descriptor.full_name)
    if table is None:
        table = {}
        for field_descriptor in descriptor.fields:
            if field_descriptor.name.endswith("_strindex"):
                continue  # profiles-only dictionary indexes
            spec = _Field(field_descriptor)
            table[spec.json_name] = table[spec.name] = spec
        by_name = {spec.name: spec for spec in table.values()}
        for alias, target in _LEGACY_ALIASES.get(descriptor.full_name, {}).items():
            table[alias] = by_name[target]
        _FIELD_TABLES[descriptor.full_name] = table
    return table


def _fill(message, document: dict) -> None:
    """Set ``message``'s fields from a JSON object; unknown keys are ignored."""
    table = _fields(message.DESCRIPTOR)
    for key, value in document.items():
        spec = table.get(key)
        if spec is None or value is None:
            continue
        try:
            _set(message, spec, value)
        except _ShapeError as error:
            error.path.append(key)
            raise
        except (ValueError, TypeError, OverflowError) as error:  # out of range for the field
            shape_error = _ShapeError(str(error))
            shape_error.path.append(key)
            raise shape_error from None


def _set(message, spec: _Field, value) -> None:
    if spec.repeated:
        if not isinstance(value, list):
            raise _ShapeError(f"expected an array, got {_kind(value)}")
        container = getattr(message, spec.name)
        fill_item = _fill_key_value if spec.key_values else _fill_object
        for index, item in enumerate(value):
            try:
                if spec.message:
                    fill_item(container.add(), item)
                elif item is not None:
                    container.append(spec.convert(item))
            except _ShapeError as error:
                error.path.append(index)
                raise
    elif spec.message:
        _fill_object(getattr(message, spec.name), value)
    else:
        setattr(message, spec.name, spec.convert(value))


def _fill_key_value(key_value, item) -> None:
    """Attributes are most of a body: the usual ``{"key", "value": {one scalar}}`` shape
    is set directly, anything else takes the general path."""
    if type(item) is dict and len(item) == 2 and type(item.get("key")) is str:
        value = item.get("value")
        if type(value) is dict and len(value) == 1:
            (kind, scalar), = value.items()
            setter = _SCALAR_SETTERS.get(kind)
            if setter is not None and setter(key_value, scalar):
                key_value.key = item["key"]
                return
    _fill_object(key_value, item)


def _set_string(key_value, scalar) -> bool:
    if type(scalar) is str:
        key_value.value.string_value = scalar
        return True
    return False


def _set_int(key_value, scalar) -> bool:
    if type(scalar) is int or type(scalar) is str and scalar.isascii() and scalar.isdigit():
        number = int(scalar)
        if -_INT64_LIMIT <= number < _INT64_LIMIT:
            key_value.value.int_value = number
            return True
    return False  # the general path reports the problem with its place


_SCALAR_SETTERS = {"stringValue": _set_string, "string_value": _set_string,
                   "intValue": _set_int, "int_value": _set_int}


def _fill_object(message, value) -> None:
    if not isinstance(value, dict):
        raise _ShapeError(f"expected an object, got {_kind(value)}")
    if value:
        _fill(message, value)
    else:
        message.SetInParent()  # {} is a present, empty message (e.g. an empty AnyValue)


def _integer(value) -> int:
    if isinstance(value, bool):
        raise _ShapeError("expected an integer, got a boolean")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            pass
        try:
            number = float(value)
        except ValueError:
            number = math.nan
        if number.is_integer():
            return int(number)
    raise _ShapeError(f"expected an integer, got {value!r}")


def _number(value) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        if value in _SPECIAL_FLOATS:
            return _SPECIAL_FLOATS[value]
        try:
            return float(value)
        except ValueError:
            pass
    raise _ShapeError(f"expected a number, got {value!r}")


def _boolean(value) -> bool:
    if isinstance(value, bool):
        return value
    raise _ShapeError(f"expected true or false, got {value!r}")


def _string(value) -> str:
    if isinstance(value, str):
        return value
    raise _ShapeError(f"expected a string, got {_kind(value)}")


def _base64(value) -> bytes:
    if not isinstance(value, str):
        raise _ShapeError(f"expected a base64 string, got {_kind(value)}")
    text = value.strip().replace("-", "+").replace("_", "/")  # URL-safe alphabet too
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise _ShapeError(f"invalid base64: {value[:40]!r}") from None


def _hex_id(value) -> bytes:
    """Hex id -> bytes. Invalid hex becomes bytes no valid id has, for normalize to reject."""
    if not isinstance(value, str):
        raise _ShapeError(f"expected a hex string, got {_kind(value)}")
    try:
        return bytes.fromhex(value)
    except ValueError:
        raw = value.encode("utf-8", "replace")
        return raw + b"\x00" if len(raw) in _VALID_ID_LENGTHS else raw


def _enum(enum_type, value) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        known = enum_type.values_by_name.get(value)
        if known is not None:
            return known.number
        try:
            return int(value)
        except ValueError:
            pass
    names = ", ".join(enum_type.values_by_name)
    raise _ShapeError(f"expected an integer or one of {names}, got {value!r}")


def _diagnose(body: bytes, error: Exception) -> str:
    """Say *why* upb refused the body; its own message only names the type."""
    position = 0
    while position < len(body):
        tag, position = _varint(body, position)
        if tag is None:
            return f"truncated message (field tag at byte {position} is cut off)"
        wire_type = tag & 7
        if tag >> 3 == 0 or wire_type in (3, 4, 6, 7):
            return f"invalid field tag {tag} at byte {position}"
        if wire_type == 0:
            value, position = _varint(body, position)
            if value is None:
                return "truncated message (varint cut off)"
        elif wire_type == 2:
            length, position = _varint(body, position)
            if length is None:
                return "truncated message (a length prefix is cut off)"
            if position + length > len(body):
                available = len(body) - position
                return f"truncated message (a field claims {length} bytes, {available} remain)"
            position += length
        else:
            position += 8 if wire_type == 1 else 4
            if position > len(body):
                return "truncated message (fixed-size field cut off)"
    return f"invalid message content ({error})"


def _varint(data: bytes, position: int):
    result = shift = 0
    while position < len(data) and shift < 70:
        byte = data[position]
        position += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, position
        shift += 7
    return None, position
