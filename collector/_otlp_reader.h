/* What the parts of the collector._otlp_reader extension share.
 *
 * _otlp_reader.c reads the wire format into Span objects; _records.c builds
 * inference record rows from those Span objects; _columns.c turns row tuples
 * into one Arrow record batch; _json.c writes attribute dicts as compact JSON.
 * One extension module, so that _records.c can read a Span's C fields directly.
 */
#ifndef INFERLEDGER_OTLP_READER_H
#define INFERLEDGER_OTLP_READER_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

/* A span read from protobuf bytes (see _otlp_reader.c). Every PyObject field is
 * set once the span is returned by Reader.read; rare and rare_span may be NULL. */
typedef struct {
    PyObject_HEAD
    PyObject *trace_id;       /* bytes */
    PyObject *span_id;        /* bytes */
    PyObject *parent_span_id; /* bytes */
    PyObject *name;           /* str */
    unsigned long long start_time_unix_nano;
    unsigned long long end_time_unix_nano;
    int kind;
    int status_code;
    PyObject *status_message;
    PyObject *sorted_attributes; /* SpanAttributes: known, extra, bits_seen, completion_finish */
    PyObject *rare;        /* bytes of the events and links fields, or NULL when the span has none */
    PyObject *rare_parser; /* bytes -> upb Span */
    PyObject *rare_span;   /* the parsed upb Span, once asked for */
} SpanObject;

extern PyTypeObject SpanType;

/* Each part adds its functions and types to the module; -1 with an exception set on failure. */
int records_add_to_module(PyObject *module);
int columns_add_to_module(PyObject *module);
int json_add_to_module(PyObject *module);

/* _json.c: appends the compact JSON of `value` (as collector.attributes.to_json writes it)
 * to a growing buffer. 1 written, 0 declined (a value it does not know: use the Python
 * encoder), -1 error (exception set). */
typedef struct {
    char *data;
    size_t len;
    size_t capacity;
} JsonBuffer;

int json_encode(JsonBuffer *out, PyObject *value, int depth);
/* str of the compact JSON of value, Py_None (a new reference) when declined, NULL on error. */
PyObject *json_text(PyObject *value);

#endif
