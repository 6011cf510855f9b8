/* Read an OTLP/protobuf ExportTraceServiceRequest straight from its bytes.
 *
 * Why: reading attributes out of upb messages allocates a Python object per
 * field access, which is most of the cost of normalization before the mapping
 * itself. This reader walks the wire format once and hands normalize.py what it
 * needs: per ResourceSpans the resource attributes as a dict, and per span a
 * light Span object (ids, times, name, kind, status; events and links parsed
 * by upb on access, they are rare) carrying its attributes already sorted the
 * way collector.attributes.read_attributes sorts them.
 *
 * The contract (collector/otlp_reader.py relies on it): Reader.read returns a
 * result only for a body that upb accepts too, with the same values upb would
 * give. Anything unusual -- a wire-format error, invalid UTF-8 in a string
 * field, a group, a wrong wire type for a known field, a message or oneof that
 * upb would merge, nesting deeper than MAX_DEPTH, a varint upb would truncate
 * -- makes it return None, and the caller decodes the body with upb, which
 * gives today's result or error message. Every read is bounds-checked: the
 * input comes from the network.
 *
 * Field numbers: opentelemetry/proto/{collector/trace,trace,common,resource}/v1
 * (opentelemetry-proto 1.x).
 */
#include "_otlp_reader.h"
#include <structmember.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#define MAX_DEPTH 64 /* message nesting; upb refuses beyond 100 */

/* ------------------------------------------------------------------------ */
/* Wire format                                                              */
/* ------------------------------------------------------------------------ */

enum { WT_VARINT = 0, WT_I64 = 1, WT_LEN = 2, WT_I32 = 5 };

typedef struct {
    const uint8_t *p;
    const uint8_t *end;
} Cursor;

typedef struct {
    uint32_t number;
    int wire_type;
    uint64_t value;      /* varint, fixed64 and fixed32 fields */
    const uint8_t *data; /* length-delimited fields */
    size_t len;
} Field;

/* 0 ok, -1 cut off or too long. A 10th byte above 1 is refused although upb
 * drops the excess bits: upb then decides. */
static int
read_varint(Cursor *c, uint64_t *out)
{
    uint64_t value = 0;
    for (int i = 0; i < 10; i++) {
        if (c->p >= c->end)
            return -1;
        uint8_t byte = *c->p++;
        if (i == 9 && byte > 1)
            return -1;
        value |= (uint64_t)(byte & 0x7f) << (7 * i);
        if (byte < 0x80) {
            *out = value;
            return 0;
        }
    }
    return -1;
}

static uint64_t
little_endian(const uint8_t *p, int size)
{
    uint64_t value = 0;
    for (int i = size - 1; i >= 0; i--)
        value = (value << 8) | p[i];
    return value;
}

/* 1 a field was read, 0 end of message, -1 wire-format error (groups included). */
static int
next_field(Cursor *c, Field *f)
{
    uint64_t tag, length;
    if (c->p >= c->end)
        return 0;
    if (read_varint(c, &tag) || tag > 0xffffffffu || (tag >> 3) == 0)
        return -1;
    f->number = (uint32_t)(tag >> 3);
    f->wire_type = (int)(tag & 7);
    switch (f->wire_type) {
    case WT_VARINT:
        return read_varint(c, &f->value) ? -1 : 1;
    case WT_I64:
    case WT_I32: {
        int size = f->wire_type == WT_I64 ? 8 : 4;
        if (c->end - c->p < size)
            return -1;
        f->value = little_endian(c->p, size);
        c->p += size;
        return 1;
    }
    case WT_LEN:
        if (read_varint(c, &length) || length > (uint64_t)(c->end - c->p) || length > INT32_MAX)
            return -1;
        f->data = c->p;
        f->len = (size_t)length;
        c->p += length;
        return 1;
    default:
        return -1;
    }
}

/* Strict UTF-8 (no overlongs, surrogates or code points above U+10FFFF), as upb checks proto3 strings. */
static int
utf8_valid(const uint8_t *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        if (i + 8 <= n) {
            uint64_t word;
            memcpy(&word, s + i, 8);
            if (!(word & 0x8080808080808080ULL)) {
                i += 8;
                continue;
            }
        }
        uint8_t b = s[i];
        if (b < 0x80) {
            i += 1;
        }
        else if (b < 0xc2) {
            return 0;
        }
        else if (b < 0xe0) {
            if (i + 1 >= n || (s[i + 1] & 0xc0) != 0x80)
                return 0;
            i += 2;
        }
        else if (b < 0xf0) {
            if (i + 2 >= n || (s[i + 1] & 0xc0) != 0x80 || (s[i + 2] & 0xc0) != 0x80)
                return 0;
            if ((b == 0xe0 && s[i + 1] < 0xa0) || (b == 0xed && s[i + 1] >= 0xa0))
                return 0;
            i += 3;
        }
        else if (b < 0xf5) {
            if (i + 3 >= n || (s[i + 1] & 0xc0) != 0x80 || (s[i + 2] & 0xc0) != 0x80
                || (s[i + 3] & 0xc0) != 0x80)
                return 0;
            if ((b == 0xf0 && s[i + 1] < 0x90) || (b == 0xf4 && s[i + 1] >= 0x90))
                return 0;
            i += 4;
        }
        else {
            return 0;
        }
    }
    return 1;
}

/* ------------------------------------------------------------------------ */
/* Validation of the parts that are not read (scope, events, links, ...)    */
/* ------------------------------------------------------------------------ */

enum Kind { K_VARINT, K_I64, K_I32, K_BYTES, K_STRING, K_MESSAGE };
static const int KIND_WIRE_TYPE[] = {WT_VARINT, WT_I64, WT_I32, WT_LEN, WT_LEN, WT_LEN};

typedef struct MessageSpec MessageSpec;
typedef struct {
    uint32_t number;
    enum Kind kind;
    const MessageSpec *message;
} FieldSpec;
struct MessageSpec {
    const FieldSpec *fields;
    size_t count;
};

#define SPEC(name, ...)                                                        \
    static const FieldSpec name##_FIELDS[] = {__VA_ARGS__};                    \
    static const MessageSpec name = {name##_FIELDS, sizeof(name##_FIELDS) / sizeof(FieldSpec)}

static const MessageSpec ANY_VALUE, KEY_VALUE;
SPEC(ARRAY_VALUE, {1, K_MESSAGE, &ANY_VALUE});
SPEC(KEY_VALUE_LIST, {1, K_MESSAGE, &KEY_VALUE});
SPEC(ANY_VALUE, {1, K_STRING, NULL}, {2, K_VARINT, NULL}, {3, K_VARINT, NULL}, {4, K_I64, NULL},
     {5, K_MESSAGE, &ARRAY_VALUE}, {6, K_MESSAGE, &KEY_VALUE_LIST}, {7, K_BYTES, NULL},
     {8, K_VARINT, NULL});
SPEC(KEY_VALUE, {1, K_STRING, NULL}, {2, K_MESSAGE, &ANY_VALUE}, {3, K_VARINT, NULL});
SPEC(ENTITY_REF, {1, K_STRING, NULL}, {2, K_STRING, NULL}, {3, K_STRING, NULL}, {4, K_STRING, NULL});
SPEC(RESOURCE, {1, K_MESSAGE, &KEY_VALUE}, {2, K_VARINT, NULL}, {3, K_MESSAGE, &ENTITY_REF});
SPEC(SCOPE, {1, K_STRING, NULL}, {2, K_STRING, NULL}, {3, K_MESSAGE, &KEY_VALUE}, {4, K_VARINT, NULL});
SPEC(EVENT, {1, K_I64, NULL}, {2, K_STRING, NULL}, {3, K_MESSAGE, &KEY_VALUE}, {4, K_VARINT, NULL});
SPEC(LINK, {1, K_BYTES, NULL}, {2, K_BYTES, NULL}, {3, K_STRING, NULL}, {4, K_MESSAGE, &KEY_VALUE},
     {5, K_VARINT, NULL}, {6, K_I32, NULL});

/* 0 when upb would accept the message (as far as this reader can tell), -1 otherwise. */
static int
validate(const MessageSpec *spec, const uint8_t *data, size_t len, int depth)
{
    Cursor c = {data, data + len};
    Field f;
    int status;
    if (depth > MAX_DEPTH)
        return -1;
    while ((status = next_field(&c, &f)) == 1) {
        const FieldSpec *known = NULL;
        for (size_t i = 0; i < spec->count; i++)
            if (spec->fields[i].number == f.number)
                known = &spec->fields[i];
        if (known == NULL)
            continue; /* an unknown field: kept by upb, ignored here */
        if (f.wire_type != KIND_WIRE_TYPE[known->kind])
            return -1;
        if (known->kind == K_STRING && !utf8_valid(f.data, f.len))
            return -1;
        if (known->kind == K_MESSAGE && validate(known->message, f.data, f.len, depth + 1))
            return -1;
    }
    return status;
}

/* ------------------------------------------------------------------------ */
/* Python types: Status, SpanAttributes, Span, Reader                       */
/* ------------------------------------------------------------------------ */

static PyTypeObject *StatusType;
static PyTypeObject *SpanAttributesType;

static PyStructSequence_Field status_fields[] = {
    {"code", "status code (0 unset, 1 ok, 2 error)"}, {"message", "status message"}, {NULL, NULL}};
static PyStructSequence_Desc status_desc = {
    "collector._otlp_reader.Status", "A span's status, like upb's Status message.", status_fields, 2};

static PyStructSequence_Field span_attributes_fields[] = {
    {"known", "mapped keys -> value"},
    {"extra", "other kept keys -> value"},
    {"bits_seen", "OR of the key-table bits of the known keys"},
    {"completion_finish", "finish reasons of OpenLLMetry completion attributes, or None"},
    {NULL, NULL}};
static PyStructSequence_Desc span_attributes_desc = {
    "collector._otlp_reader.SpanAttributes",
    "A span's attributes sorted as collector.attributes.read_attributes sorts them.",
    span_attributes_fields, 4};

/* SpanObject: see _otlp_reader.h (_records.c reads its fields). */

static void
span_dealloc(SpanObject *self)
{
    Py_XDECREF(self->trace_id);
    Py_XDECREF(self->span_id);
    Py_XDECREF(self->parent_span_id);
    Py_XDECREF(self->name);
    Py_XDECREF(self->status_message);
    Py_XDECREF(self->sorted_attributes);
    Py_XDECREF(self->rare);
    Py_XDECREF(self->rare_parser);
    Py_XDECREF(self->rare_span);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *
span_status(SpanObject *self, void *closure)
{
    PyObject *status = PyStructSequence_New(StatusType);
    PyObject *code = PyLong_FromLong(self->status_code);
    if (status == NULL || code == NULL) {
        Py_XDECREF(status);
        Py_XDECREF(code);
        return NULL;
    }
    PyStructSequence_SET_ITEM(status, 0, code);
    Py_INCREF(self->status_message);
    PyStructSequence_SET_ITEM(status, 1, self->status_message);
    return status;
}

/* events and links: the upb repeated field of a Span parsed from just those fields. */
static PyObject *
span_rare_field(SpanObject *self, void *closure)
{
    if (self->rare == NULL)
        return PyTuple_New(0);
    if (self->rare_span == NULL) {
        self->rare_span = PyObject_CallOneArg(self->rare_parser, self->rare);
        if (self->rare_span == NULL)
            return NULL;
    }
    return PyObject_GetAttrString(self->rare_span, (const char *)closure);
}

static PyMemberDef span_members[] = {
    {"trace_id", T_OBJECT, offsetof(SpanObject, trace_id), READONLY, NULL},
    {"span_id", T_OBJECT, offsetof(SpanObject, span_id), READONLY, NULL},
    {"parent_span_id", T_OBJECT, offsetof(SpanObject, parent_span_id), READONLY, NULL},
    {"name", T_OBJECT, offsetof(SpanObject, name), READONLY, NULL},
    {"kind", T_INT, offsetof(SpanObject, kind), READONLY, NULL},
    {"start_time_unix_nano", T_ULONGLONG, offsetof(SpanObject, start_time_unix_nano), READONLY, NULL},
    {"end_time_unix_nano", T_ULONGLONG, offsetof(SpanObject, end_time_unix_nano), READONLY, NULL},
    {"sorted_attributes", T_OBJECT, offsetof(SpanObject, sorted_attributes), READONLY,
     "the span's attributes as read_attributes sorts them"},
    {NULL}};

static PyGetSetDef span_getset[] = {
    {"status", (getter)span_status, NULL, "code and message", NULL},
    {"events", (getter)span_rare_field, NULL, "the span's events (upb messages)", "events"},
    {"links", (getter)span_rare_field, NULL, "the span's links (upb messages)", "links"},
    {NULL}};

PyTypeObject SpanType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "collector._otlp_reader.Span",
    .tp_doc = "A span read from protobuf bytes: the fields normalize uses, as upb's Span has them.",
    .tp_basicsize = sizeof(SpanObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_dealloc = (destructor)span_dealloc,
    .tp_members = span_members,
    .tp_getset = span_getset,
};

typedef struct {
    const char *data;
    Py_ssize_t len;
} Text;

/* What is known about an attribute key: its str and how read_attributes sorts it. */
typedef struct {
    PyObject *name; /* borrowed from the cache, or owned when `owned` */
    int owned;
    int mapped;     /* in the key table: bits apply */
    long bits;
    int content;    /* dropped unless content is captured */
    int finish;     /* an OpenLLMetry completion finish reason */
} KeyInfo;

/* Keys repeat from span to span: a small open-addressing cache keyed by the raw bytes saves
 * decoding, hashing and classifying them again. It stops growing when 3/4 full, so keys an
 * exporter invents per span cannot make it grow without bound. */
#define KEY_CACHE_SLOTS 2048
#define KEY_CACHE_MAX_KEY 256
typedef struct {
    uint64_t hash;
    char *bytes; /* NULL: empty slot */
    Py_ssize_t len;
    KeyInfo info; /* info.name owned by the cache */
} KeyEntry;

typedef struct {
    PyObject_HEAD
    PyObject *key_table;       /* dict: mapped key -> bits */
    PyObject *content_keys;    /* frozenset */
    PyObject *content_prefixes; /* tuple of str, kept alive for the Text views */
    Text *prefixes;
    Py_ssize_t prefix_count;
    PyObject *completion_prefix;
    PyObject *finish_suffix;
    Text completion;
    Text finish;
    long keep_bit;
    int capture_content;
    Py_ssize_t max_value_bytes;
    PyObject *truncate;      /* (str, max_bytes) -> str */
    PyObject *bytes_to_text; /* bytes -> str (base64) */
    PyObject *rare_parser;   /* bytes -> upb Span */
    PyObject *max_value_bytes_obj;
    KeyEntry *key_cache;
    Py_ssize_t key_cache_used;
} ReaderObject;

/* One read: the configuration and whether a failure means "let upb decide". */
typedef struct {
    ReaderObject *reader;
    int wire_error;
} Context;

static PyObject *
wire_error(Context *ctx)
{
    ctx->wire_error = 1;
    return NULL;
}

/* ------------------------------------------------------------------------ */
/* Values                                                                   */
/* ------------------------------------------------------------------------ */

static PyObject *
decode_text(Context *ctx, const uint8_t *data, size_t len)
{
    PyObject *text = PyUnicode_DecodeUTF8((const char *)data, (Py_ssize_t)len, NULL);
    if (text == NULL && PyErr_ExceptionMatches(PyExc_UnicodeDecodeError)) {
        PyErr_Clear();
        return wire_error(ctx);
    }
    return text;
}

/* A string value, cut by collector.attributes.truncate when over the limit. */
static PyObject *
string_value(Context *ctx, const uint8_t *data, size_t len)
{
    PyObject *text = decode_text(ctx, data, len);
    if (text == NULL || (Py_ssize_t)len <= ctx->reader->max_value_bytes)
        return text;
    PyObject *cut = PyObject_CallFunctionObjArgs(ctx->reader->truncate, text,
                                                 ctx->reader->max_value_bytes_obj, NULL);
    Py_DECREF(text);
    return cut;
}

/* The one oneof member of an AnyValue; 0 when empty, -1 when upb must decide. */
static int
any_value_member(const uint8_t *data, size_t len, Field *member)
{
    static const int wire_types[] = {-1, WT_LEN, WT_VARINT, WT_VARINT, WT_I64, WT_LEN, WT_LEN, WT_LEN, WT_VARINT};
    Cursor c = {data, data + len};
    Field f;
    int status, members = 0;
    while ((status = next_field(&c, &f)) == 1) {
        if (f.number < 1 || f.number > 8)
            continue;
        if (f.wire_type != wire_types[f.number] || ++members > 1)
            return -1; /* a wrong wire type, or a oneof set twice (upb keeps the last, merging messages) */
        *member = f;
    }
    return status < 0 ? -1 : members;
}

static PyObject *any_value(Context *ctx, const uint8_t *data, size_t len, int depth);

/* key and value of a KeyValue; the value is NULL when absent (an empty AnyValue). */
static int
key_value_parts(Context *ctx, const uint8_t *data, size_t len, Field *key, Field *value)
{
    Cursor c = {data, data + len};
    Field f;
    int status, has_key = 0;
    value->data = NULL;
    value->len = 0;
    while ((status = next_field(&c, &f)) == 1) {
        if (f.number == 1) {
            if (f.wire_type != WT_LEN || (has_key && !utf8_valid(key->data, key->len)))
                return -1; /* upb checks every occurrence of a string, not only the last */
            *key = f;
            has_key = 1;
        }
        else if (f.number == 2) {
            if (f.wire_type != WT_LEN || value->data != NULL)
                return -1; /* a second value would be merged into the first */
            *value = f;
        }
        else if (f.number == 3 && f.wire_type != WT_VARINT) {
            return -1;
        }
    }
    if (!has_key) {
        key->data = (const uint8_t *)"";
        key->len = 0;
    }
    return status;
}

typedef PyObject *(*ItemReader)(Context *ctx, const uint8_t *data, size_t len, int depth);

/* A list of the items of the repeated message field `number`, each read at depth + 1. */
static PyObject *
repeated(Context *ctx, const uint8_t *data, size_t len, uint32_t number, ItemReader read_item, int depth)
{
    Cursor c = {data, data + len};
    Field f;
    int status;
    PyObject *list = PyList_New(0);
    if (list == NULL)
        return NULL;
    while ((status = next_field(&c, &f)) == 1) {
        if (f.number != number)
            continue;
        if (f.wire_type != WT_LEN) {
            status = -1;
            break;
        }
        PyObject *item = read_item(ctx, f.data, f.len, depth + 1);
        if (item == NULL || PyList_Append(list, item) < 0) {
            Py_XDECREF(item);
            Py_DECREF(list);
            return NULL;
        }
        Py_DECREF(item);
    }
    if (status < 0) {
        Py_DECREF(list);
        return wire_error(ctx);
    }
    return list;
}

/* Adds the KeyValue at data to dict as key -> any_value (read_plain's rule). */
static int
add_plain(Context *ctx, PyObject *dict, const uint8_t *data, size_t len, int depth)
{
    Field key, value;
    if (depth > MAX_DEPTH || key_value_parts(ctx, data, len, &key, &value) < 0) {
        ctx->wire_error = 1;
        return -1;
    }
    PyObject *name = decode_text(ctx, key.data, key.len);
    if (name == NULL)
        return -1;
    PyObject *item = value.data ? any_value(ctx, value.data, value.len, depth + 1) : Py_NewRef(Py_None);
    int status = item == NULL ? -1 : PyDict_SetItem(dict, name, item);
    Py_DECREF(name);
    Py_XDECREF(item);
    return status;
}

/* The repeated KeyValue field `number` of a message as a dict (kvlists, resource attributes). */
static PyObject *
plain_dict(Context *ctx, const uint8_t *data, size_t len, uint32_t number, int depth)
{
    Cursor c = {data, data + len};
    Field f;
    int status;
    PyObject *dict = PyDict_New();
    if (dict == NULL)
        return NULL;
    while ((status = next_field(&c, &f)) == 1) {
        if (f.number != number)
            continue;
        if (f.wire_type != WT_LEN) {
            status = -1;
            break;
        }
        if (add_plain(ctx, dict, f.data, f.len, depth + 1) < 0) {
            Py_DECREF(dict);
            return NULL;
        }
    }
    if (status < 0) {
        Py_DECREF(dict);
        return wire_error(ctx);
    }
    return dict;
}

/* collector.attributes.any_value: str, bool, int, float, list, dict or None. */
static PyObject *
any_value(Context *ctx, const uint8_t *data, size_t len, int depth)
{
    Field f;
    int members;
    if (depth > MAX_DEPTH || (members = any_value_member(data, len, &f)) < 0)
        return wire_error(ctx);
    if (members == 0)
        Py_RETURN_NONE;
    switch (f.number) {
    case 1:
        return string_value(ctx, f.data, f.len);
    case 2:
        return PyBool_FromLong(f.value != 0);
    case 3:
        return PyLong_FromLongLong((long long)f.value);
    case 4: {
        double number;
        memcpy(&number, &f.value, sizeof number);
        PyObject *value = PyFloat_FromDouble(number);
        if (value == NULL || isfinite(number))
            return value;
        PyObject *name = PyObject_Str(value); /* JSON has no NaN/Infinity: "nan", "inf", "-inf" */
        Py_DECREF(value);
        return name;
    }
    case 5: /* ArrayValue: repeated AnyValue values = 1 */
        return repeated(ctx, f.data, f.len, 1, any_value, depth + 1);
    case 6:
        return plain_dict(ctx, f.data, f.len, 1, depth + 1);
    case 7: {
        PyObject *raw = PyBytes_FromStringAndSize((const char *)f.data, (Py_ssize_t)f.len);
        if (raw == NULL)
            return NULL;
        PyObject *text = PyObject_CallOneArg(ctx->reader->bytes_to_text, raw);
        Py_DECREF(raw);
        return text;
    }
    default: /* string_value_strindex: profiles only */
        Py_RETURN_NONE;
    }
}

/* ------------------------------------------------------------------------ */
/* Span attributes: collector.attributes.read_attributes in C               */
/* ------------------------------------------------------------------------ */

typedef struct {
    PyObject *known;
    PyObject *extra;
    long bits_seen;
    PyObject *finish; /* list or NULL */
} Sorting;

static int
starts_with(Field *key, const Text *prefix)
{
    return (Py_ssize_t)key->len >= prefix->len && memcmp(key->data, prefix->data, prefix->len) == 0;
}

static int
ends_with(Field *key, const Text *suffix)
{
    return (Py_ssize_t)key->len >= suffix->len
           && memcmp(key->data + key->len - suffix->len, suffix->data, suffix->len) == 0;
}

static int
is_content(ReaderObject *reader, PyObject *name, Field *key)
{
    int found = PySet_Contains(reader->content_keys, name);
    for (Py_ssize_t i = 0; found == 0 && i < reader->prefix_count; i++)
        found = starts_with(key, &reader->prefixes[i]);
    return found;
}

/* OpenLLMetry's gen_ai.completion.N.finish_reason: kept even when content is dropped. */
static int
note_finish_reason(Context *ctx, Sorting *sorting, Field *value)
{
    Field member;
    PyObject *reason;
    int members = value->data ? any_value_member(value->data, value->len, &member) : 0;
    if (members < 0) {
        ctx->wire_error = 1;
        return -1;
    }
    if (members == 1 && member.number == 1)
        reason = decode_text(ctx, member.data, member.len);
    else
        reason = PyUnicode_New(0, 0); /* upb's string_value of a value that is not a string */
    if (reason == NULL)
        return -1;
    if (sorting->finish == NULL && (sorting->finish = PyList_New(0)) == NULL) {
        Py_DECREF(reason);
        return -1;
    }
    int status = PyList_Append(sorting->finish, reason);
    Py_DECREF(reason);
    return status;
}

/* Sorts the key as read_attributes does: key table, then content keys and prefixes. */
static int
classify_key(Context *ctx, Field *key, KeyInfo *info)
{
    ReaderObject *reader = ctx->reader;
    memset(info, 0, sizeof *info);
    info->name = decode_text(ctx, key->data, key->len);
    if (info->name == NULL)
        return -1;
    info->owned = 1;
    PyObject *bits = PyDict_GetItemWithError(reader->key_table, info->name); /* borrowed */
    if (bits != NULL) {
        info->mapped = 1;
        info->bits = PyLong_AsLong(bits);
        return info->bits == -1 && PyErr_Occurred() ? -1 : 0;
    }
    if (PyErr_Occurred() || (info->content = is_content(reader, info->name, key)) < 0)
        return -1;
    info->finish = info->content && starts_with(key, &reader->completion) && ends_with(key, &reader->finish);
    return 0;
}

static uint64_t
fnv1a(const uint8_t *data, size_t len)
{
    uint64_t hash = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < len; i++)
        hash = (hash ^ data[i]) * 0x100000001b3ULL;
    return hash;
}

/* classify_key through the cache; info->name is borrowed unless info->owned. */
static int
key_info(Context *ctx, Field *key, KeyInfo *info)
{
    ReaderObject *reader = ctx->reader;
    if (reader->key_cache == NULL || key->len > KEY_CACHE_MAX_KEY)
        return classify_key(ctx, key, info);
    uint64_t hash = fnv1a(key->data, key->len);
    size_t slot = (size_t)hash & (KEY_CACHE_SLOTS - 1);
    KeyEntry *entry = &reader->key_cache[slot];
    while (entry->bytes != NULL) {
        if (entry->hash == hash && entry->len == (Py_ssize_t)key->len
            && memcmp(entry->bytes, key->data, key->len) == 0) {
            *info = entry->info;
            return 0;
        }
        slot = (slot + 1) & (KEY_CACHE_SLOTS - 1);
        entry = &reader->key_cache[slot];
    }
    if (classify_key(ctx, key, info) < 0)
        return -1;
    if (reader->key_cache_used >= KEY_CACHE_SLOTS / 4 * 3)
        return 0;
    entry->bytes = PyMem_Malloc(key->len ? key->len : 1);
    if (entry->bytes == NULL)
        return 0; /* not cached, still correct */
    memcpy(entry->bytes, key->data, key->len);
    entry->hash = hash;
    entry->len = (Py_ssize_t)key->len;
    entry->info = *info;
    entry->info.owned = 0;
    info->owned = 0; /* the cache holds the reference now */
    reader->key_cache_used++;
    return 0;
}

static int
sort_attribute(Context *ctx, Sorting *sorting, const uint8_t *data, size_t len, int depth)
{
    Field key, value;
    KeyInfo info;
    PyObject *target, *item;
    int status = -1;
    if (depth > MAX_DEPTH || key_value_parts(ctx, data, len, &key, &value) < 0) {
        ctx->wire_error = 1;
        return -1;
    }
    if (key_info(ctx, &key, &info) < 0)
        goto done;
    if (info.mapped) {
        sorting->bits_seen |= info.bits;
        target = sorting->known;
    }
    else {
        if (info.finish && note_finish_reason(ctx, sorting, &value) < 0)
            goto done;
        if (info.content && !ctx->reader->capture_content) {
            if (value.data && validate(&ANY_VALUE, value.data, value.len, depth + 1) < 0)
                ctx->wire_error = 1;
            else
                status = 0;
            goto done;
        }
        target = sorting->extra;
    }
    item = value.data ? any_value(ctx, value.data, value.len, depth + 1) : Py_NewRef(Py_None);
    if (item != NULL) {
        status = PyDict_SetItem(target, info.name, item);
        Py_DECREF(item);
    }
done:
    if (info.owned)
        Py_XDECREF(info.name);
    return status;
}

/* Keys mapped to a column that are also kept in the JSON (the KEEP bit). */
static int
copy_kept(ReaderObject *reader, Sorting *sorting)
{
    Py_ssize_t position = 0;
    PyObject *key, *value;
    if (!(sorting->bits_seen & reader->keep_bit))
        return 0;
    while (PyDict_Next(sorting->known, &position, &key, &value)) {
        PyObject *bits = PyDict_GetItemWithError(reader->key_table, key);
        if (bits == NULL)
            return -1; /* known keys all come from the table */
        long bit_value = PyLong_AsLong(bits);
        if (bit_value == -1 && PyErr_Occurred())
            return -1;
        if ((bit_value & reader->keep_bit) && PyDict_SetItem(sorting->extra, key, value) < 0)
            return -1;
    }
    return 0;
}

static PyObject *
finish_sorting(ReaderObject *reader, Sorting *sorting)
{
    PyObject *result = NULL, *bits = NULL;
    if (copy_kept(reader, sorting) == 0 && (bits = PyLong_FromLong(sorting->bits_seen)) != NULL
        && (result = PyStructSequence_New(SpanAttributesType)) != NULL) {
        PyStructSequence_SET_ITEM(result, 0, sorting->known);
        PyStructSequence_SET_ITEM(result, 1, sorting->extra);
        PyStructSequence_SET_ITEM(result, 2, bits);
        PyStructSequence_SET_ITEM(result, 3, sorting->finish ? sorting->finish : Py_NewRef(Py_None));
        sorting->known = sorting->extra = sorting->finish = NULL; /* now owned by result */
        return result;
    }
    Py_XDECREF(bits);
    return NULL;
}

/* ------------------------------------------------------------------------ */
/* Spans, scopes, resources, the request                                    */
/* ------------------------------------------------------------------------ */

typedef struct {
    Field trace_id, span_id, parent_span_id, name, status_message;
    int has_name, has_status_message;
    const uint8_t *rare_start; /* events and links, concatenated with their tags */
    size_t rare_len;
    PyObject *rare_buffer;     /* bytearray when they are not contiguous */
} SpanFields;

static int
check_string(Field *f)
{
    return f->wire_type == WT_LEN && utf8_valid(f->data, f->len) ? 0 : -1;
}

/* An int32 enum: refused when upb would truncate it. */
static int
enum_value(Field *f, int *out)
{
    int64_t value = (int64_t)f->value;
    if (f->wire_type != WT_VARINT || value < INT32_MIN || value > INT32_MAX)
        return -1;
    *out = (int)value;
    return 0;
}

/* Status may occur more than once: upb merges, the fields present last win. */
static int
read_status(SpanObject *span, SpanFields *fields, const uint8_t *data, size_t len)
{
    Cursor c = {data, data + len};
    Field f;
    int status;
    while ((status = next_field(&c, &f)) == 1) {
        if (f.number == 2) {
            if (check_string(&f) < 0)
                return -1;
            fields->status_message = f;
            fields->has_status_message = 1;
        }
        else if (f.number == 3 && enum_value(&f, &span->status_code) < 0) {
            return -1;
        }
    }
    return status;
}

static int
keep_rare(SpanFields *fields, const uint8_t *start, const uint8_t *end)
{
    size_t len = (size_t)(end - start);
    if (fields->rare_buffer == NULL && fields->rare_start == NULL) {
        fields->rare_start = start;
        fields->rare_len = len;
        return 0;
    }
    if (fields->rare_buffer == NULL && fields->rare_start + fields->rare_len == start) {
        fields->rare_len += len;
        return 0;
    }
    if (fields->rare_buffer == NULL) {
        fields->rare_buffer = PyByteArray_FromStringAndSize((const char *)fields->rare_start,
                                                            (Py_ssize_t)fields->rare_len);
        if (fields->rare_buffer == NULL)
            return -1;
    }
    Py_ssize_t size = PyByteArray_GET_SIZE(fields->rare_buffer);
    if (PyByteArray_Resize(fields->rare_buffer, size + (Py_ssize_t)len) < 0)
        return -1;
    memcpy(PyByteArray_AS_STRING(fields->rare_buffer) + size, start, len);
    return 0;
}

static PyObject *
id_bytes(Field *f)
{
    return PyBytes_FromStringAndSize((const char *)f->data, (Py_ssize_t)f->len);
}

static int
fill_span(Context *ctx, SpanObject *span, SpanFields *fields, Sorting *sorting,
          const uint8_t *data, size_t len, int depth)
{
    Cursor c = {data, data + len};
    Field f;
    int status;
    const uint8_t *start = c.p;
    while ((status = next_field(&c, &f)) == 1) {
        int bad = 0;
        switch (f.number) {
        case 1: case 2: case 4:
            bad = f.wire_type != WT_LEN;
            *(f.number == 1 ? &fields->trace_id : f.number == 2 ? &fields->span_id : &fields->parent_span_id) = f;
            break;
        case 3: /* trace_state */
            bad = check_string(&f);
            break;
        case 5:
            bad = check_string(&f);
            fields->name = f;
            fields->has_name = 1;
            break;
        case 6:
            bad = enum_value(&f, &span->kind);
            break;
        case 7: case 8:
            bad = f.wire_type != WT_I64;
            *(f.number == 7 ? &span->start_time_unix_nano : &span->end_time_unix_nano) = f.value;
            break;
        case 9:
            if (f.wire_type != WT_LEN)
                bad = 1;
            else if (sort_attribute(ctx, sorting, f.data, f.len, depth + 1) < 0)
                return -1;
            break;
        case 10: case 12: case 14:
            bad = f.wire_type != WT_VARINT;
            break;
        case 11: case 13:
            bad = f.wire_type != WT_LEN
                  || validate(f.number == 11 ? &EVENT : &LINK, f.data, f.len, depth + 1) < 0;
            if (!bad && keep_rare(fields, start, c.p) < 0)
                return -1;
            break;
        case 15:
            bad = f.wire_type != WT_LEN || depth + 1 > MAX_DEPTH
                  || read_status(span, fields, f.data, f.len) < 0;
            break;
        case 16:
            bad = f.wire_type != WT_I32;
            break;
        }
        if (bad) {
            ctx->wire_error = 1;
            return -1;
        }
        start = c.p;
    }
    if (status < 0) {
        ctx->wire_error = 1;
        return -1;
    }
    return 0;
}

static PyObject *
empty_bytes_if_absent(Field *f)
{
    return f->data ? id_bytes(f) : PyBytes_FromStringAndSize(NULL, 0);
}

static int
finish_span(Context *ctx, SpanObject *span, SpanFields *fields, Sorting *sorting)
{
    span->trace_id = empty_bytes_if_absent(&fields->trace_id);
    span->span_id = empty_bytes_if_absent(&fields->span_id);
    span->parent_span_id = empty_bytes_if_absent(&fields->parent_span_id);
    span->name = fields->has_name ? decode_text(ctx, fields->name.data, fields->name.len) : PyUnicode_New(0, 0);
    span->status_message = fields->has_status_message
                               ? decode_text(ctx, fields->status_message.data, fields->status_message.len)
                               : PyUnicode_New(0, 0);
    if (fields->rare_buffer != NULL)
        span->rare = PyBytes_FromStringAndSize(PyByteArray_AS_STRING(fields->rare_buffer),
                                               PyByteArray_GET_SIZE(fields->rare_buffer));
    else if (fields->rare_start != NULL)
        span->rare = PyBytes_FromStringAndSize((const char *)fields->rare_start, (Py_ssize_t)fields->rare_len);
    if (fields->rare_start != NULL && span->rare == NULL)
        return -1;
    span->rare_parser = Py_NewRef(ctx->reader->rare_parser);
    span->sorted_attributes = finish_sorting(ctx->reader, sorting);
    if (!span->trace_id || !span->span_id || !span->parent_span_id || !span->name
        || !span->status_message || !span->sorted_attributes)
        return -1;
    return 0;
}

static PyObject *
read_span(Context *ctx, const uint8_t *data, size_t len, int depth)
{
    SpanFields fields;
    Sorting sorting = {PyDict_New(), PyDict_New(), 0, NULL};
    SpanObject *span = PyObject_New(SpanObject, &SpanType);
    memset(&fields, 0, sizeof fields);
    if (span != NULL) {
        /* every field that span_dealloc releases starts out NULL */
        span->trace_id = span->span_id = span->parent_span_id = span->name = NULL;
        span->status_message = span->sorted_attributes = span->rare = NULL;
        span->rare_parser = span->rare_span = NULL;
        span->start_time_unix_nano = span->end_time_unix_nano = 0;
        span->kind = span->status_code = 0;
    }
    int ok = span != NULL && sorting.known != NULL && sorting.extra != NULL
             && depth <= MAX_DEPTH
             && fill_span(ctx, span, &fields, &sorting, data, len, depth) == 0
             && finish_span(ctx, span, &fields, &sorting) == 0;
    if (depth > MAX_DEPTH)
        ctx->wire_error = 1;
    Py_XDECREF(sorting.known);
    Py_XDECREF(sorting.extra);
    Py_XDECREF(sorting.finish);
    Py_XDECREF(fields.rare_buffer);
    if (!ok) {
        Py_XDECREF(span);
        return NULL;
    }
    return (PyObject *)span;
}

static int
read_scope_spans(Context *ctx, PyObject *spans, const uint8_t *data, size_t len, int depth)
{
    Cursor c = {data, data + len};
    Field f;
    int status;
    if (depth > MAX_DEPTH)
        return -1;
    while ((status = next_field(&c, &f)) == 1) {
        if (f.number == 1) {
            if (f.wire_type != WT_LEN || validate(&SCOPE, f.data, f.len, depth + 1) < 0)
                return -1;
        }
        else if (f.number == 2) {
            if (f.wire_type != WT_LEN)
                return -1;
            PyObject *span = read_span(ctx, f.data, f.len, depth + 1);
            if (span == NULL)
                return -2;
            int appended = PyList_Append(spans, span);
            Py_DECREF(span);
            if (appended < 0)
                return -2;
        }
        else if (f.number == 3 && check_string(&f) < 0) {
            return -1;
        }
    }
    return status;
}

/* Resource attributes: several Resource fields merge, so the attributes simply add up. */
static int
read_resource(Context *ctx, PyObject *attributes, const uint8_t *data, size_t len, int depth)
{
    Cursor c = {data, data + len};
    Field f;
    int status;
    if (depth > MAX_DEPTH)
        return -1;
    while ((status = next_field(&c, &f)) == 1) {
        if (f.number == 1) {
            if (f.wire_type != WT_LEN)
                return -1;
            if (add_plain(ctx, attributes, f.data, f.len, depth + 1) < 0)
                return -2;
        }
        else if (f.number == 2 && f.wire_type != WT_VARINT) {
            return -1;
        }
        else if (f.number == 3
                 && (f.wire_type != WT_LEN || validate(&ENTITY_REF, f.data, f.len, depth + 1) < 0)) {
            return -1;
        }
    }
    return status;
}

/* (resource attributes, [Span, ...]) for one ResourceSpans; spans of all its scopes in order. */
static PyObject *
read_resource_spans(Context *ctx, const uint8_t *data, size_t len, int depth)
{
    Cursor c = {data, data + len};
    Field f;
    int status = 0;
    PyObject *attributes = PyDict_New(), *spans = PyList_New(0);
    if (attributes == NULL || spans == NULL)
        goto fail;
    while ((status = next_field(&c, &f)) == 1) {
        if (f.number == 3)
            status = check_string(&f);
        else if ((f.number == 1 || f.number == 2) && f.wire_type != WT_LEN)
            status = -1;
        else if (f.number == 1)
            status = read_resource(ctx, attributes, f.data, f.len, depth + 1);
        else if (f.number == 2)
            status = read_scope_spans(ctx, spans, f.data, f.len, depth + 1);
        if (status < 0)
            break;
    }
    if (status == -1)
        ctx->wire_error = 1;
    if (status < 0)
        goto fail;
    PyObject *pair = PyTuple_Pack(2, attributes, spans);
    Py_DECREF(attributes);
    Py_DECREF(spans);
    return pair;
fail:
    Py_XDECREF(attributes);
    Py_XDECREF(spans);
    return NULL;
}

/* ExportTraceServiceRequest: repeated ResourceSpans resource_spans = 1. */
static PyObject *
read_request(Context *ctx, const uint8_t *data, size_t len)
{
    return repeated(ctx, data, len, 1, read_resource_spans, 1);
}

/* ------------------------------------------------------------------------ */
/* Reader                                                                   */
/* ------------------------------------------------------------------------ */

static int
text_of(PyObject *text, Text *out, const char *what)
{
    if (!PyUnicode_Check(text)) {
        PyErr_Format(PyExc_TypeError, "%s must be str", what);
        return -1;
    }
    out->data = PyUnicode_AsUTF8AndSize(text, &out->len);
    return out->data == NULL ? -1 : 0;
}

static int
reader_init(ReaderObject *self, PyObject *args, PyObject *kwargs)
{
    static char *names[] = {"key_table", "content_keys", "content_prefixes", "completion_prefix",
                            "finish_suffix", "keep_bit", "capture_content", "max_value_bytes",
                            "truncate", "bytes_to_text", "rare_parser", NULL};
    PyObject *key_table, *content_keys, *prefixes, *completion, *finish, *truncate, *to_text, *parser;
    long keep_bit;
    int capture;
    Py_ssize_t max_bytes;
    if (self->key_table != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Reader is already initialized");
        return -1;
    }
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O!O!O!UUlpnOOO", names, &PyDict_Type, &key_table,
                                     &PyFrozenSet_Type, &content_keys, &PyTuple_Type, &prefixes,
                                     &completion, &finish, &keep_bit, &capture, &max_bytes, &truncate,
                                     &to_text, &parser))
        return -1;
    if (max_bytes < 0) {
        PyErr_SetString(PyExc_ValueError, "max_value_bytes must not be negative");
        return -1;
    }
    self->prefix_count = PyTuple_GET_SIZE(prefixes);
    self->prefixes = PyMem_Calloc(self->prefix_count ? self->prefix_count : 1, sizeof(Text));
    if (self->prefixes == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t i = 0; i < self->prefix_count; i++)
        if (text_of(PyTuple_GET_ITEM(prefixes, i), &self->prefixes[i], "content_prefixes items") < 0)
            return -1;
    if (text_of(completion, &self->completion, "completion_prefix") < 0
        || text_of(finish, &self->finish, "finish_suffix") < 0)
        return -1;
    self->max_value_bytes_obj = PyLong_FromSsize_t(max_bytes);
    if (self->max_value_bytes_obj == NULL)
        return -1;
    self->key_table = Py_NewRef(key_table);
    self->content_keys = Py_NewRef(content_keys);
    self->content_prefixes = Py_NewRef(prefixes);
    self->completion_prefix = Py_NewRef(completion);
    self->finish_suffix = Py_NewRef(finish);
    self->truncate = Py_NewRef(truncate);
    self->bytes_to_text = Py_NewRef(to_text);
    self->rare_parser = Py_NewRef(parser);
    self->key_cache = PyMem_Calloc(KEY_CACHE_SLOTS, sizeof(KeyEntry));
    if (self->key_cache == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    self->keep_bit = keep_bit;
    self->capture_content = capture;
    self->max_value_bytes = max_bytes;
    return 0;
}

static void
reader_dealloc(ReaderObject *self)
{
    Py_XDECREF(self->key_table);
    Py_XDECREF(self->content_keys);
    Py_XDECREF(self->content_prefixes);
    Py_XDECREF(self->completion_prefix);
    Py_XDECREF(self->finish_suffix);
    Py_XDECREF(self->truncate);
    Py_XDECREF(self->bytes_to_text);
    Py_XDECREF(self->rare_parser);
    Py_XDECREF(self->max_value_bytes_obj);
    PyMem_Free(self->prefixes);
    if (self->key_cache != NULL) {
        for (Py_ssize_t i = 0; i < KEY_CACHE_SLOTS; i++) {
            PyMem_Free(self->key_cache[i].bytes);
            Py_XDECREF(self->key_cache[i].info.name);
        }
        PyMem_Free(self->key_cache);
    }
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *
reader_read(ReaderObject *self, PyObject *body)
{
    Py_buffer view;
    Context ctx = {self, 0};
    if (self->key_table == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Reader is not initialized");
        return NULL;
    }
    if (PyObject_GetBuffer(body, &view, PyBUF_SIMPLE) < 0)
        return NULL;
    PyObject *result = read_request(&ctx, (const uint8_t *)view.buf, (size_t)view.len);
    PyBuffer_Release(&view);
    if (result == NULL && ctx.wire_error) {
        PyErr_Clear();
        Py_RETURN_NONE;
    }
    return result;
}

static PyMethodDef reader_methods[] = {
    {"read", (PyCFunction)reader_read, METH_O,
     "read(body) -> [(resource attributes, [Span, ...]), ...], or None when upb must decode the body"},
    {NULL}};

static PyTypeObject ReaderType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "collector._otlp_reader.Reader",
    .tp_doc = "Reads ExportTraceServiceRequest bytes with one attribute-sorting configuration.",
    .tp_basicsize = sizeof(ReaderObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)reader_init,
    .tp_dealloc = (destructor)reader_dealloc,
    .tp_methods = reader_methods,
};

/* ------------------------------------------------------------------------ */
/* Module                                                                   */
/* ------------------------------------------------------------------------ */

static PyObject *
module_utf8_valid(PyObject *module, PyObject *data)
{
    Py_buffer view;
    if (PyObject_GetBuffer(data, &view, PyBUF_SIMPLE) < 0)
        return NULL;
    int valid = utf8_valid((const uint8_t *)view.buf, (size_t)view.len);
    PyBuffer_Release(&view);
    return PyBool_FromLong(valid);
}

static PyMethodDef module_methods[] = {
    {"utf8_valid", module_utf8_valid, METH_O, "The reader's UTF-8 check (for tests)."},
    {NULL}};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "collector._otlp_reader",
    "A C reader of OTLP/protobuf trace requests (see collector/otlp_reader.py).", -1, module_methods};

PyMODINIT_FUNC
PyInit__otlp_reader(void)
{
    PyObject *module = PyModule_Create(&module_def);
    if (module == NULL)
        return NULL;
    StatusType = PyStructSequence_NewType(&status_desc);
    SpanAttributesType = PyStructSequence_NewType(&span_attributes_desc);
    if (StatusType == NULL || SpanAttributesType == NULL || PyType_Ready(&SpanType) < 0
        || PyType_Ready(&ReaderType) < 0
        || PyModule_AddObjectRef(module, "Status", (PyObject *)StatusType) < 0
        || PyModule_AddObjectRef(module, "SpanAttributes", (PyObject *)SpanAttributesType) < 0
        || PyModule_AddObjectRef(module, "Span", (PyObject *)&SpanType) < 0
        || PyModule_AddObjectRef(module, "Reader", (PyObject *)&ReaderType) < 0
        || PyModule_AddIntConstant(module, "MAX_DEPTH", MAX_DEPTH) < 0
        || records_add_to_module(module) < 0 || columns_add_to_module(module) < 0
        || json_add_to_module(module) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
