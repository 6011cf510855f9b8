/* Compact JSON of attribute values, byte for byte as collector.attributes.to_json writes it.
 *
 * Why: the attributes JSON is written once per record, and Python's C encoder
 * still costs ~2 us for a typical span (float repr through Python, a list of
 * chunks joined at the end). to_json is json's c_make_encoder with
 * separators (",", ":"), ensure_ascii=False, allow_nan=True, no sorting, no
 * indent, default=str; this file writes the same text for the values the
 * readers produce (None, bool, int, float, str, list, dict with str keys) and
 * declines anything else -- another type, a subclass, a str that cannot be
 * encoded, nesting deeper than MAX_JSON_DEPTH -- so that the caller uses the
 * Python encoder. tests/collector/test_records_c.py compares both on random values.
 */
#include "_otlp_reader.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define MAX_JSON_DEPTH 64

static int
reserve(JsonBuffer *out, size_t more)
{
    if (out->len + more <= out->capacity)
        return 0;
    size_t capacity = out->capacity ? out->capacity : 256;
    while (capacity < out->len + more)
        capacity *= 2;
    char *data = PyMem_Realloc(out->data, capacity);
    if (data == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    out->data = data;
    out->capacity = capacity;
    return 0;
}

static int
append(JsonBuffer *out, const char *text, size_t len)
{
    if (reserve(out, len) < 0)
        return -1;
    memcpy(out->data + out->len, text, len);
    out->len += len;
    return 0;
}

/* json.encoder's escape_unicode: " \ and control characters escaped, everything else as is. */
static int
encode_string(JsonBuffer *out, PyObject *text)
{
    static const char hex[] = "0123456789abcdef";
    Py_ssize_t len;
    const char *data = PyUnicode_AsUTF8AndSize(text, &len);
    if (data == NULL) { /* lone surrogates: the Python encoder decides */
        PyErr_Clear();
        return 0;
    }
    if (reserve(out, (size_t)len * 6 + 2) < 0) /* worst case: every byte \u00XX */
        return -1;
    char *w = out->data + out->len;
    *w++ = '"';
    for (Py_ssize_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)data[i];
        if (c >= 0x20 && c != '"' && c != '\\') {
            *w++ = (char)c; /* UTF-8 continuation and lead bytes are all >= 0x80 */
            continue;
        }
        *w++ = '\\';
        switch (c) {
        case '"': *w++ = '"'; break;
        case '\\': *w++ = '\\'; break;
        case '\b': *w++ = 'b'; break;
        case '\f': *w++ = 'f'; break;
        case '\n': *w++ = 'n'; break;
        case '\r': *w++ = 'r'; break;
        case '\t': *w++ = 't'; break;
        default:
            *w++ = 'u';
            *w++ = '0';
            *w++ = '0';
            *w++ = hex[c >> 4];
            *w++ = hex[c & 0xf];
        }
    }
    *w++ = '"';
    out->len = (size_t)(w - out->data);
    return 1;
}

/* int.__repr__, as the encoder calls it. */
static int
encode_int(JsonBuffer *out, PyObject *value)
{
    int overflow;
    long long number = PyLong_AsLongLongAndOverflow(value, &overflow);
    if (!overflow) { /* decimal digits written backwards: snprintf costs more than the rest */
        char text[24], *end = text + sizeof text, *w = end;
        unsigned long long magnitude = number < 0 ? 0ULL - (unsigned long long)number : (unsigned long long)number;
        do {
            *--w = (char)('0' + magnitude % 10);
            magnitude /= 10;
        } while (magnitude);
        if (number < 0)
            *--w = '-';
        return append(out, w, (size_t)(end - w)) < 0 ? -1 : 1;
    }
    PyObject *repr = PyLong_Type.tp_repr(value);
    if (repr == NULL)
        return -1;
    Py_ssize_t len;
    const char *text = PyUnicode_AsUTF8AndSize(repr, &len);
    int status = text == NULL || append(out, text, (size_t)len) < 0 ? -1 : 1;
    Py_DECREF(repr);
    return status;
}

/* float.__repr__ for finite values; NaN, Infinity and -Infinity as allow_nan writes them. */
static int
encode_float(JsonBuffer *out, double number)
{
    if (!isfinite(number)) {
        const char *name = isnan(number) ? "NaN" : number > 0 ? "Infinity" : "-Infinity";
        return append(out, name, strlen(name)) < 0 ? -1 : 1;
    }
    char *text = PyOS_double_to_string(number, 'r', 0, Py_DTSF_ADD_DOT_0, NULL);
    if (text == NULL)
        return -1;
    int status = append(out, text, strlen(text)) < 0 ? -1 : 1;
    PyMem_Free(text);
    return status;
}

static int
encode_list(JsonBuffer *out, PyObject *list, int depth)
{
    if (append(out, "[", 1) < 0)
        return -1;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(list); i++) {
        int status;
        if ((i > 0 && append(out, ",", 1) < 0))
            return -1;
        if ((status = json_encode(out, PyList_GET_ITEM(list, i), depth + 1)) != 1)
            return status;
    }
    return append(out, "]", 1) < 0 ? -1 : 1;
}

static int
encode_dict(JsonBuffer *out, PyObject *dict, int depth)
{
    Py_ssize_t position = 0;
    PyObject *key, *value;
    int first = 1, status;
    if (append(out, "{", 1) < 0)
        return -1;
    while (PyDict_Next(dict, &position, &key, &value)) {
        if (!PyUnicode_CheckExact(key))
            return 0; /* the encoder converts other keys; readers never make them */
        if (!first && append(out, ",", 1) < 0)
            return -1;
        first = 0;
        if ((status = encode_string(out, key)) != 1)
            return status;
        if (append(out, ":", 1) < 0)
            return -1;
        /* a borrowed value stays alive: nothing here runs Python code that could change dict */
        if ((status = json_encode(out, value, depth + 1)) != 1)
            return status;
    }
    return append(out, "}", 1) < 0 ? -1 : 1;
}

int
json_encode(JsonBuffer *out, PyObject *value, int depth)
{
    if (depth > MAX_JSON_DEPTH)
        return 0;
    if (value == Py_None)
        return append(out, "null", 4) < 0 ? -1 : 1;
    if (value == Py_True)
        return append(out, "true", 4) < 0 ? -1 : 1;
    if (value == Py_False)
        return append(out, "false", 5) < 0 ? -1 : 1;
    if (PyUnicode_CheckExact(value))
        return encode_string(out, value);
    if (PyLong_CheckExact(value))
        return encode_int(out, value);
    if (PyFloat_CheckExact(value))
        return encode_float(out, PyFloat_AS_DOUBLE(value));
    if (PyList_CheckExact(value))
        return encode_list(out, value, depth);
    if (PyDict_CheckExact(value))
        return encode_dict(out, value, depth);
    return 0;
}

PyObject *
json_text(PyObject *value)
{
    JsonBuffer out = {NULL, 0, 0};
    int status = json_encode(&out, value, 0);
    PyObject *text = NULL;
    if (status == 1)
        text = PyUnicode_DecodeUTF8(out.data, (Py_ssize_t)out.len, "strict");
    else if (status == 0)
        text = Py_NewRef(Py_None);
    PyMem_Free(out.data);
    return text;
}

static PyObject *
module_to_json(PyObject *module, PyObject *value)
{
    return json_text(value);
}

static PyMethodDef json_methods[] = {
    {"to_json", module_to_json, METH_O,
     "to_json(value) -> str as collector.attributes.to_json writes it, or None when the value\n"
     "holds something this encoder leaves to the Python one."},
    {NULL}};

int
json_add_to_module(PyObject *module)
{
    return PyModule_AddFunctions(module, json_methods);
}
