/* Inference record rows built in C from the reader's Span objects.
 *
 * Why: after the C reader, most of the cost of normalizing a span was Python
 * code running per span (collector/normalize.py, _inference and helpers). For
 * the common span -- valid ids and times, marked by a GenAI or inferledger
 * key, no links or events, status not error -- this file does the same steps
 * in C and appends the same row tuple to the same list.
 *
 * The contract: a row built here equals the row _Batch.add would build, or
 * the span goes to _Batch.add (the `fallback` callable) untouched. So every
 * decision that may lead to the fallback is taken before anything visible
 * changes: the values the precedence table leaves to the attributes JSON are
 * only noted (`pending`) and written into the span's `extra` dict at the
 * commit, in the order Python writes them, before the redactor runs on them
 * (a Python callable, as in _inference). What goes to the fallback: invalid
 * ids or times (the rejection message is Python's), spans marked only by
 * OpenInference or Langfuse keys, HTTP client spans, spans with events or
 * links, status error, error.type, Langfuse usage or level, a cost currency,
 * personal attributes without a column, token counts out of range or not
 * ints, a missing provider when values are pending, and any exception before
 * the commit (Python raises it again and turns it into its rejection). After
 * the commit only the redactor and the JSON are left; an error there is
 * rejected the way _Batch.add rejects it (the `reject` callable).
 *
 * Tables and value conversions come from Python (collector/otlp_reader.py,
 * record_maker): the precedence table of collector/conventions/mapping.py,
 * with each reader's Python callable. A reader is skipped only where its own
 * code returns its input unchanged (an int for as_int, a non-empty str for
 * as_str and identifier, a finite float for as_float, a list of str for
 * as_str_list, copied), and pure readers of short strings are memoized.
 */
#include "_otlp_reader.h"
#include <math.h>
#include <string.h>

#define MAX_COLUMNS 96
#define MAX_PENDING 64
#define MAX_NOTES 3
#define MEMO_LIMIT 4096    /* entries per reader, cleared when full */
#define MEMO_MAX_CHARS 256 /* longer values are not memoized */

/* How a reader may be skipped (collector/otlp_reader.py names the readers). */
enum Fast { FAST_NONE, FAST_INT, FAST_STR, FAST_STR_LIST, FAST_FLOAT, FAST_MEMO };

/* Columns the steps after the precedence table read or write, by name. */
enum Named {
    C_TRACE_ID, C_SPAN_ID, C_PARENT_SPAN_ID, C_START_TIME, C_END_TIME, C_DURATION_MS, C_SPAN_NAME,
    C_SERVICE_NAME, C_SERVICE_VERSION, C_ENVIRONMENT, C_TENANT, C_FEATURE, C_BUDGET_ID,
    C_COMPUTE_POOL, C_OPERATION, C_PROVIDER, C_REQUEST_MODEL, C_RESPONSE_MODEL, C_MODEL_VERSION,
    C_INPUT, C_OUTPUT, C_CACHE_READ, C_CACHE_WRITE, C_REASONING, C_TOKEN_NOTES, C_STATUS,
    C_ERROR_TYPE, C_FINISH_REASONS, C_ATTEMPT, C_DECISION_LABEL, C_DECISION_SCORE, C_SUBJECT_ID,
    C_USER_ID, C_REVIEWER_ID, C_REVIEWED_SPAN_ID, C_CONVENTION, C_ATTRIBUTES, C_RESOURCE,
    C_INGEST_TIME, C_TOTAL, C_USAGE, C_LF_ERROR, C_COST_CURRENCY, C_LF_ENVIRONMENT, C_LF_RELEASE,
    NAMED_COUNT
};
static const char *NAMED[NAMED_COUNT] = {
    "trace_id", "span_id", "parent_span_id", "start_time", "end_time", "duration_ms", "span_name",
    "service_name", "service_version", "environment", "tenant", "feature", "budget_id",
    "compute_pool", "operation", "provider", "request_model", "response_model", "model_version",
    "input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens", "reasoning_tokens",
    "token_notes", "status", "error_type", "finish_reasons", "attempt", "decision_label",
    "decision_score", "subject_id", "user_id", "reviewer_id", "reviewed_span_id", "convention",
    "attributes", "resource", "ingest_time", "_total", "_usage", "_lf_error", "_cost_currency",
    "_lf_environment", "_lf_release"};

/* CONVENTION_COLUMNS and TOKEN_COLUMNS of mapping.py, in their order. */
static const int CONVENTION_COLUMNS[] = {C_INPUT, C_OUTPUT, C_RESPONSE_MODEL, C_REQUEST_MODEL,
                                         C_OPERATION, C_PROVIDER};
static const int TOKEN_COLUMNS[] = {C_INPUT, C_OUTPUT, C_CACHE_READ, C_CACHE_WRITE, C_REASONING};

typedef struct {
    PyObject_HEAD
    PyObject *specs;      /* dict: key -> ((column, read, fast, rank, convention, memo), ...) */
    int column[NAMED_COUNT];
    Py_ssize_t row_length; /* the record's columns come first, the private ones after */
    Py_ssize_t all_columns;
    long mark, mark_oi, mark_lf, personal_only, olm_marker;
    int span_kind_client, status_code_error;
    PyObject *total_keys;  /* tuple: the total keys kept as evidence of a mismatch */
    PyObject *http_keys;   /* tuple: keys that make a client span an HTTP attempt */
    PyObject *model_name_key;
    PyObject *otel, *olm;  /* convention names */
    PyObject *operation_from_span_name, *provider_from_attributes, *to_json;
    PyObject *ok, *predict, *review, *zero; /* constant values */
} MakerObject;

/* One record while it is being built: column values (owned) and where they came from. */
typedef struct {
    PyObject *value[MAX_COLUMNS];
    int rank[MAX_COLUMNS];            /* -1: no source yet */
    PyObject *convention[MAX_COLUMNS]; /* borrowed from the specs */
    int order[MAX_COLUMNS];           /* columns in the order they got a source */
    int sourced;
    PyObject *pending[MAX_PENDING];   /* keys of known whose value goes to extra (borrowed) */
    int n_pending;
    const char *notes[MAX_NOTES];
    int n_notes;
} Record;

/* What one add() call shares: the resource, the settings, the output. */
typedef struct {
    PyObject *service_name, *service_version, *environment, *tenant, *feature, *budget_id,
        *compute_pool, *json;
    PyObject *rows, *ingest_time, *pseudonymizer, *redact, *fallback, *reject;
    long long max_tokens;
    int keep_http_spans;
} Call;

enum Outcome { DONE = 0, FALLBACK = 1, ERROR = -1 };

/* ------------------------------------------------------------------------ */
/* Small helpers                                                            */
/* ------------------------------------------------------------------------ */

#define VALUE(rec, m, named) ((rec)->value[(m)->column[named]])

static void
set_value(Record *rec, int column, PyObject *value) /* steals value */
{
    Py_XSETREF(rec->value[column], value);
}

/* Before the commit an exception only means "let Python do this span" (it raises it again). */
static enum Outcome
fallback_on_error(void)
{
    if (!PyErr_ExceptionMatches(PyExc_Exception))
        return ERROR; /* KeyboardInterrupt and the like propagate */
    PyErr_Clear();
    return FALLBACK;
}

static PyObject *
hex_of(PyObject *bytes)
{
    static const char digits[] = "0123456789abcdef";
    Py_ssize_t len = PyBytes_GET_SIZE(bytes);
    const unsigned char *data = (const unsigned char *)PyBytes_AS_STRING(bytes);
    PyObject *text = PyUnicode_New(len * 2, 127);
    if (text == NULL)
        return NULL;
    Py_UCS1 *out = PyUnicode_1BYTE_DATA(text);
    for (Py_ssize_t i = 0; i < len; i++) {
        out[2 * i] = digits[data[i] >> 4];
        out[2 * i + 1] = digits[data[i] & 0xf];
    }
    return text;
}

static int
all_zero(PyObject *bytes)
{
    const char *data = PyBytes_AS_STRING(bytes);
    for (Py_ssize_t i = 0; i < PyBytes_GET_SIZE(bytes); i++)
        if (data[i])
            return 0;
    return 1;
}

/* normalize._validate without the messages: 1 valid, 0 not (Python rejects it). */
static int
valid_span(SpanObject *span)
{
    Py_ssize_t parent = PyBytes_GET_SIZE(span->parent_span_id);
    return PyBytes_GET_SIZE(span->trace_id) == 16 && !all_zero(span->trace_id)
           && PyBytes_GET_SIZE(span->span_id) == 8 && !all_zero(span->span_id)
           && (parent == 0 || parent == 8) && span->start_time_unix_nano != 0
           && span->end_time_unix_nano >= span->start_time_unix_nano;
}

/* ------------------------------------------------------------------------ */
/* The precedence table (normalize._apply_precedence)                       */
/* ------------------------------------------------------------------------ */

/* A pure reader of a short str, through its memo dict. */
static PyObject *
memoized(PyObject *read, PyObject *memo, PyObject *raw)
{
    PyObject *value = PyDict_GetItemWithError(memo, raw);
    if (value != NULL)
        return Py_NewRef(value);
    if (PyErr_Occurred())
        return NULL;
    value = PyObject_CallOneArg(read, raw);
    if (value == NULL)
        return NULL;
    if (PyDict_GET_SIZE(memo) >= MEMO_LIMIT)
        PyDict_Clear(memo);
    if (PyDict_SetItem(memo, raw, value) < 0)
        Py_CLEAR(value);
    return value;
}

/* read(raw), skipping the call where the reader would return raw itself (see the top). */
static PyObject *
read_value(PyObject *read, long fast, PyObject *memo, PyObject *raw)
{
    switch (fast) {
    case FAST_INT:
        if (PyLong_CheckExact(raw))
            return Py_NewRef(raw);
        break;
    case FAST_STR:
        if (PyUnicode_CheckExact(raw) && PyUnicode_GET_LENGTH(raw) > 0)
            return Py_NewRef(raw);
        break;
    case FAST_FLOAT:
        if (PyFloat_CheckExact(raw) && isfinite(PyFloat_AS_DOUBLE(raw)))
            return Py_NewRef(raw);
        break;
    case FAST_STR_LIST:
        if (PyList_CheckExact(raw)) {
            Py_ssize_t count = PyList_GET_SIZE(raw), i = 0;
            while (i < count && PyUnicode_CheckExact(PyList_GET_ITEM(raw, i)))
                i++;
            if (i == count) /* as_str_list: a new list of the items, None when empty */
                return count ? PyList_GetSlice(raw, 0, count) : Py_NewRef(Py_None);
        }
        break;
    case FAST_MEMO:
        if (PyDict_CheckExact(memo) && PyUnicode_CheckExact(raw)
            && PyUnicode_GET_LENGTH(raw) <= MEMO_MAX_CHARS)
            return memoized(read, memo, raw);
        break;
    }
    return PyObject_CallOneArg(read, raw);
}

static int
note_pending(Record *rec, PyObject *key)
{
    if (rec->n_pending == MAX_PENDING)
        return -1;
    rec->pending[rec->n_pending++] = key;
    return 0;
}

/* Fills rec from the span's mapped keys: DONE, FALLBACK or ERROR. */
static enum Outcome
apply_precedence(MakerObject *m, Record *rec, PyObject *known)
{
    Py_ssize_t position = 0;
    PyObject *key, *raw;
    while (PyDict_Next(known, &position, &key, &raw)) {
        PyObject *specs = PyDict_GetItemWithError(m->specs, key);
        if (specs == NULL) {
            if (PyErr_Occurred())
                return fallback_on_error();
            continue; /* a marker key without a column */
        }
        for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(specs); i++) {
            PyObject *spec = PyTuple_GET_ITEM(specs, i); /* checked by maker_init */
            int column = (int)PyLong_AsLong(PyTuple_GET_ITEM(spec, 0));
            int rank = (int)PyLong_AsLong(PyTuple_GET_ITEM(spec, 3));
            if (rec->rank[column] >= 0 && rec->rank[column] <= rank)
                continue; /* a better or the same row already supplied it */
            PyObject *value = read_value(PyTuple_GET_ITEM(spec, 1), PyLong_AsLong(PyTuple_GET_ITEM(spec, 2)),
                                         PyTuple_GET_ITEM(spec, 5), raw);
            if (value == NULL)
                return fallback_on_error();
            if (value == Py_None) { /* unusable: the raw value stays in the JSON */
                Py_DECREF(value);
                if (note_pending(rec, key) < 0)
                    return FALLBACK;
                continue;
            }
            set_value(rec, column, value);
            if (rec->rank[column] < 0)
                rec->order[rec->sourced++] = column;
            rec->rank[column] = rank;
            rec->convention[column] = PyTuple_GET_ITEM(spec, 4);
        }
    }
    return DONE;
}

/* ------------------------------------------------------------------------ */
/* Tokens (collector/conventions/tokens.py: out_of_range, reconcile)        */
/* ------------------------------------------------------------------------ */

/* A token count in 0..max_tokens into *out (has = 0 for None); 0 ok, -1 Python must decide. */
static int
token_count(PyObject *value, long long max_tokens, long long *out, int *has)
{
    int overflow;
    *has = value != NULL;
    *out = 0;
    if (value == NULL)
        return 0;
    if (!PyLong_CheckExact(value))
        return -1;
    *out = PyLong_AsLongLongAndOverflow(value, &overflow);
    if (overflow || (*out == -1 && PyErr_Occurred())) {
        PyErr_Clear();
        return -1;
    }
    return *out >= 0 && *out <= max_tokens ? 0 : -1; /* out of range: Python rejects it */
}

/* A reconciled token count and the note that says why; -1 when out of memory. */
static int
set_count(MakerObject *m, Record *rec, int named, long long count, const char *note)
{
    PyObject *value = PyLong_FromLongLong(count);
    if (value == NULL)
        return -1;
    set_value(rec, m->column[named], value);
    rec->notes[rec->n_notes++] = note;
    return 0;
}

static enum Outcome
reconcile_tokens(MakerObject *m, Record *rec, PyObject *known, long long max_tokens)
{
    long long count[5], total;
    int has[5], has_total;
    for (int i = 0; i < 5; i++)
        if (token_count(rec->value[m->column[TOKEN_COLUMNS[i]]], max_tokens, &count[i], &has[i]) < 0)
            return FALLBACK;
    if (token_count(VALUE(rec, m, C_TOTAL), max_tokens, &total, &has_total) < 0)
        return FALLBACK;
    /* reconcile(); the counts are at most max_tokens (<= 2**53), so no sum overflows */
    long long inp = count[0], out = count[1];
    int has_inp = has[0], has_out = has[1];
    long long cache = count[2] + count[3], reasoning = count[4];
    long long reported_sum = inp + out;
    if (has_inp && cache && (cache > inp || (has_total && total == reported_sum + cache))) {
        inp += cache;
        if (set_count(m, rec, C_INPUT, inp, "cache_added_to_input") < 0)
            return fallback_on_error();
    }
    if (has_out && reasoning && (reasoning > out || (has_total && total == inp + out + reasoning))) {
        out += reasoning;
        if (set_count(m, rec, C_OUTPUT, out, "reasoning_added_to_output") < 0)
            return fallback_on_error();
    }
    if (!has_total || (!has_inp && !has_out) || total == inp + out || total == reported_sum)
        return DONE;
    rec->notes[rec->n_notes++] = "total_mismatch";
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(m->total_keys); i++) {
        PyObject *key = PyTuple_GET_ITEM(m->total_keys, i);
        int found = PyDict_Contains(known, key);
        if (found < 0)
            return fallback_on_error();
        if (found) /* the disagreeing total is kept in the JSON as evidence */
            return note_pending(rec, key) < 0 ? FALLBACK : DONE;
    }
    return DONE;
}

static PyObject *
joined_notes(Record *rec)
{
    char text[128] = "";
    for (int i = 0; i < rec->n_notes; i++) {
        if (i)
            strcat(text, ",");
        strcat(text, rec->notes[i]);
    }
    return PyUnicode_FromString(text);
}

/* ------------------------------------------------------------------------ */
/* The other columns (normalize._inference and its _fill_* helpers)         */
/* ------------------------------------------------------------------------ */

/* ids, times and the name; -1 when out of memory. */
static int
fill_span_columns(MakerObject *m, Record *rec, SpanObject *span)
{
    if (PyBytes_GET_SIZE(span->parent_span_id) && !all_zero(span->parent_span_id)
        && (VALUE(rec, m, C_PARENT_SPAN_ID) = hex_of(span->parent_span_id)) == NULL)
        return -1;
    set_value(rec, m->column[C_TRACE_ID], hex_of(span->trace_id));
    set_value(rec, m->column[C_SPAN_ID], hex_of(span->span_id));
    set_value(rec, m->column[C_START_TIME], PyLong_FromUnsignedLongLong(span->start_time_unix_nano / 1000));
    set_value(rec, m->column[C_END_TIME], PyLong_FromUnsignedLongLong(span->end_time_unix_nano / 1000));
    /* (end - start) / 1e6: the int converted to the nearest double, as Python does */
    double nanos = (double)(span->end_time_unix_nano - span->start_time_unix_nano);
    set_value(rec, m->column[C_DURATION_MS], PyFloat_FromDouble(nanos / 1e6));
    set_value(rec, m->column[C_SPAN_NAME], Py_NewRef(span->name));
    for (int named = C_TRACE_ID; named <= C_SPAN_NAME; named++)
        if (named != C_PARENT_SPAN_ID && VALUE(rec, m, named) == NULL)
            return -1;
    return 0;
}

/* rec[column] = value, where NULL and None both mean None. */
static void
assign(Record *rec, int column, PyObject *value)
{
    set_value(rec, column, value == NULL || value == Py_None ? NULL : Py_NewRef(value));
}

/* Sets the column to fallback when it is None (the `is None` fallbacks). */
static void
default_to(Record *rec, int column, PyObject *fallback)
{
    if (rec->value[column] == NULL && fallback != NULL && fallback != Py_None)
        rec->value[column] = Py_NewRef(fallback);
}

/* `first or second` of two values where NULL means None. */
static PyObject *
either(PyObject *first, PyObject *second, int *error)
{
    int truth = first == NULL ? 0 : PyObject_IsTrue(first);
    if (truth < 0)
        *error = 1;
    PyObject *chosen = truth > 0 ? first : second;
    return chosen == NULL || chosen == Py_None ? NULL : Py_NewRef(chosen);
}

/* normalize._fill_fallbacks. */
static enum Outcome
fill_fallbacks(MakerObject *m, Call *call, Record *rec, SpanObject *span, PyObject *known,
               PyObject *extra, PyObject *completion_finish)
{
    int error = 0;
    default_to(rec, m->column[C_RESPONSE_MODEL], VALUE(rec, m, C_REQUEST_MODEL));
    default_to(rec, m->column[C_MODEL_VERSION], VALUE(rec, m, C_RESPONSE_MODEL));
    if (VALUE(rec, m, C_OPERATION) == NULL) {
        int is_prediction = PyDict_Contains(known, m->model_name_key);
        if (is_prediction < 0)
            return fallback_on_error();
        if (is_prediction || VALUE(rec, m, C_DECISION_LABEL) != NULL || VALUE(rec, m, C_DECISION_SCORE) != NULL)
            set_value(rec, m->column[C_OPERATION], Py_NewRef(m->predict));
        else {
            PyObject *operation = PyObject_CallOneArg(m->operation_from_span_name, span->name);
            if (operation == NULL)
                return fallback_on_error();
            if (operation == Py_None)
                Py_DECREF(operation);
            else
                set_value(rec, m->column[C_OPERATION], operation);
        }
    }
    if (VALUE(rec, m, C_FINISH_REASONS) == NULL && completion_finish != Py_None) {
        int truth = PyObject_IsTrue(completion_finish);
        if (truth < 0)
            return fallback_on_error();
        if (truth)
            set_value(rec, m->column[C_FINISH_REASONS], Py_NewRef(completion_finish));
    }
    default_to(rec, m->column[C_TENANT], call->tenant);
    default_to(rec, m->column[C_FEATURE], call->feature);
    default_to(rec, m->column[C_BUDGET_ID], call->budget_id);
    default_to(rec, m->column[C_COMPUTE_POOL], call->compute_pool);
    if (VALUE(rec, m, C_PROVIDER) == NULL) {
        if (rec->n_pending)
            return FALLBACK; /* provider_from_attributes would see the pending values */
        PyObject *host = PyObject_CallOneArg(m->provider_from_attributes, extra);
        if (host == NULL)
            return fallback_on_error();
        set_value(rec, m->column[C_PROVIDER], either(host, VALUE(rec, m, C_COMPUTE_POOL), &error));
        Py_DECREF(host);
    }
    assign(rec, m->column[C_SERVICE_NAME], call->service_name);
    set_value(rec, m->column[C_SERVICE_VERSION], either(call->service_version, VALUE(rec, m, C_LF_RELEASE), &error));
    set_value(rec, m->column[C_ENVIRONMENT], either(call->environment, VALUE(rec, m, C_LF_ENVIRONMENT), &error));
    if (VALUE(rec, m, C_ATTEMPT) == NULL)
        set_value(rec, m->column[C_ATTEMPT], Py_NewRef(m->zero));
    return error ? fallback_on_error() : DONE;
}

/* normalize._pseudonymize for the person columns (attributes without a column fall back). */
static enum Outcome
pseudonymize(MakerObject *m, Call *call, Record *rec)
{
    static const int PERSONS[] = {C_SUBJECT_ID, C_USER_ID, C_REVIEWER_ID};
    for (int i = 0; i < 3; i++) {
        int column = m->column[PERSONS[i]];
        if (rec->value[column] == NULL)
            continue;
        PyObject *pseudonym = PyObject_CallOneArg(call->pseudonymizer, rec->value[column]);
        if (pseudonym == NULL)
            return fallback_on_error();
        set_value(rec, column, pseudonym);
    }
    return DONE;
}

/* normalize._convention: the source of the tokens, else of the model, else the first source. */
static PyObject *
convention_of(MakerObject *m, Record *rec, long bits)
{
    PyObject *convention = NULL;
    for (size_t i = 0; i < sizeof CONVENTION_COLUMNS / sizeof(int) && convention == NULL; i++) {
        int column = m->column[CONVENTION_COLUMNS[i]];
        if (rec->rank[column] >= 0)
            convention = rec->convention[column];
    }
    if (convention == NULL && rec->sourced)
        convention = rec->convention[rec->order[0]];
    if (convention == NULL || convention == Py_None)
        return NULL;
    if ((bits & m->olm_marker) && PyUnicode_Compare(convention, m->otel) == 0)
        return Py_NewRef(m->olm);
    return Py_NewRef(convention);
}

/* ------------------------------------------------------------------------ */
/* One span                                                                 */
/* ------------------------------------------------------------------------ */

/* Everything that may still send the span to Python; nothing visible changes here. */
static enum Outcome
build_record(MakerObject *m, Call *call, Record *rec, SpanObject *span, PyObject *known,
             PyObject *extra, PyObject *completion_finish, long bits)
{
    enum Outcome outcome;
    if (span->rare != NULL || span->status_code == m->status_code_error || (bits & m->personal_only))
        return FALLBACK; /* links, events (error class), status error, personal attributes */
    if ((outcome = apply_precedence(m, rec, known)) != DONE)
        return outcome;
    PyObject *lf_error = VALUE(rec, m, C_LF_ERROR);
    if (VALUE(rec, m, C_USAGE) != NULL || VALUE(rec, m, C_COST_CURRENCY) != NULL
        || VALUE(rec, m, C_ERROR_TYPE) != NULL || lf_error == Py_True)
        return FALLBACK; /* Langfuse usage, cost currency, error status */
    if ((outcome = reconcile_tokens(m, rec, known, call->max_tokens)) != DONE)
        return outcome;
    if (rec->n_notes) {
        PyObject *notes = joined_notes(rec);
        if (notes == NULL)
            return fallback_on_error();
        set_value(rec, m->column[C_TOKEN_NOTES], notes);
    }
    if (fill_span_columns(m, rec, span) < 0)
        return fallback_on_error();
    if ((outcome = fill_fallbacks(m, call, rec, span, known, extra, completion_finish)) != DONE)
        return outcome;
    set_value(rec, m->column[C_STATUS], Py_NewRef(m->ok));
    PyObject *operation = VALUE(rec, m, C_OPERATION);
    if (operation != NULL) { /* _fill_links without links: a review concerns its parent */
        int is_review = PyObject_RichCompareBool(operation, m->review, Py_EQ);
        if (is_review < 0)
            return fallback_on_error();
        if (is_review)
            assign(rec, m->column[C_REVIEWED_SPAN_ID], VALUE(rec, m, C_PARENT_SPAN_ID));
    }
    if ((outcome = pseudonymize(m, call, rec)) != DONE)
        return outcome;
    set_value(rec, m->column[C_CONVENTION], convention_of(m, rec, bits));
    return DONE;
}

/* The commit: pending values into extra, the JSON, the row. -1 on error (extra has changed). */
static int
commit_record(MakerObject *m, Call *call, Record *rec, PyObject *known, PyObject *extra)
{
    for (int i = 0; i < rec->n_pending; i++) {
        PyObject *raw = PyDict_GetItemWithError(known, rec->pending[i]);
        if (raw == NULL || PyDict_SetItem(extra, rec->pending[i], raw) < 0)
            return -1;
    }
    if (PyDict_GET_SIZE(extra)) {
        if (call->redact != Py_None) { /* the redactor rewrites captured content in place */
            PyObject *done = PyObject_CallOneArg(call->redact, extra);
            if (done == NULL)
                return -1;
            Py_DECREF(done);
        }
        PyObject *json = json_text(extra);
        if (json == Py_None) {
            Py_DECREF(json);
            json = PyObject_CallOneArg(m->to_json, extra);
        }
        if (json == NULL)
            return -1;
        set_value(rec, m->column[C_ATTRIBUTES], json);
    }
    assign(rec, m->column[C_RESOURCE], call->json);
    assign(rec, m->column[C_INGEST_TIME], call->ingest_time);
    PyObject *row = PyTuple_New(m->row_length);
    if (row == NULL)
        return -1;
    for (Py_ssize_t i = 0; i < m->row_length; i++) {
        PyTuple_SET_ITEM(row, i, rec->value[i] ? rec->value[i] : Py_NewRef(Py_None));
        rec->value[i] = NULL; /* moved into the row */
    }
    /* Only str, int, float and lists of str: the row can be part of no cycle, so the cyclic
     * GC need not walk it (CPython untracks such tuples itself, but only when a GC runs). */
    PyObject_GC_UnTrack(row);
    int status = PyList_Append(call->rows, row);
    Py_DECREF(row);
    return status;
}

static int
is_http_client(MakerObject *m, SpanObject *span, PyObject *extra)
{
    if (span->kind != m->span_kind_client)
        return 0;
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(m->http_keys); i++) {
        int found = PyDict_Contains(extra, PyTuple_GET_ITEM(m->http_keys, i));
        if (found != 0)
            return found;
    }
    return 0;
}

/* 1 appended, 2 dropped, 0 fallback, -1 error to propagate; *committed when extra changed. */
static int
add_span(MakerObject *m, Call *call, PyObject *object, Record *rec, int *committed)
{
    *committed = 0;
    if (Py_TYPE(object) != &SpanType || !valid_span((SpanObject *)object))
        return 0;
    SpanObject *span = (SpanObject *)object;
    PyObject *attributes = span->sorted_attributes;
    PyObject *known = PyTuple_GET_ITEM(attributes, 0), *extra = PyTuple_GET_ITEM(attributes, 1);
    long bits = PyLong_AsLong(PyTuple_GET_ITEM(attributes, 2));
    if (bits == -1 && PyErr_Occurred())
        return -1;
    if (!(bits & m->mark)) { /* normalize._is_inference needs no Python here only for MARK */
        if (bits & (m->mark_oi | m->mark_lf))
            return 0;
        int http = call->keep_http_spans ? is_http_client(m, span, extra) : 0;
        return http < 0 ? -1 : http ? 0 : 2;
    }
    memset(rec->value, 0, sizeof rec->value);
    memset(rec->rank, 0xff, sizeof rec->rank); /* -1 */
    rec->sourced = rec->n_pending = rec->n_notes = 0;
    enum Outcome outcome = build_record(m, call, rec, span, known, extra,
                                        PyTuple_GET_ITEM(attributes, 3), bits);
    int status = outcome == DONE ? 1 : outcome == FALLBACK ? 0 : -1;
    if (outcome == DONE) {
        *committed = 1;
        if (commit_record(m, call, rec, known, extra) < 0)
            status = -1;
    }
    for (Py_ssize_t i = 0; i < m->all_columns; i++)
        Py_CLEAR(rec->value[i]);
    return status;
}

/* add(spans, resource, rows, ingest_time, pseudonymizer, redact, max_tokens, keep_http_spans,
 * fallback, reject) -> (spans received here, spans dropped); see maker_methods. */
static PyObject *
maker_add(MakerObject *m, PyObject *args)
{
    Call call;
    PyObject *spans, *resource, *result = NULL;
    Py_ssize_t handled = 0, dropped = 0;
    memset(&call, 0, sizeof call);
    if (m->specs == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "RecordMaker is not initialized");
        return NULL;
    }
    if (!PyArg_ParseTuple(args, "O!OO!OOOLpOO:add", &PyList_Type, &spans, &resource, &PyList_Type,
                          &call.rows, &call.ingest_time, &call.pseudonymizer, &call.redact,
                          &call.max_tokens, &call.keep_http_spans, &call.fallback, &call.reject))
        return NULL;
    if (call.max_tokens < 0 || call.max_tokens > (1LL << 53)) {
        PyErr_SetString(PyExc_ValueError, "max_tokens must be in 0..2**53 for the C record maker");
        return NULL;
    }
    PyObject **slots[] = {&call.service_name, &call.service_version, &call.environment, &call.tenant,
                          &call.feature, &call.budget_id, &call.compute_pool, &call.json};
    static const char *names[] = {"service_name", "service_version", "environment", "tenant",
                                  "feature", "budget_id", "compute_pool", "json"};
    for (int i = 0; i < 8; i++)
        if ((*slots[i] = PyObject_GetAttrString(resource, names[i])) == NULL)
            goto done;
    Record *rec = PyMem_Malloc(sizeof(Record));
    if (rec == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    Py_INCREF(spans); /* the fallback runs Python code: keep the list alive */
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(spans); i++) {
        PyObject *span = Py_NewRef(PyList_GET_ITEM(spans, i));
        int committed, status = add_span(m, &call, span, rec, &committed);
        PyObject *called = NULL;
        if (status < 0 && committed && PyErr_ExceptionMatches(PyExc_Exception)) {
            /* after the commit: rejected as _Batch.add rejects an exception */
            PyObject *type, *value, *traceback;
            PyErr_Fetch(&type, &value, &traceback);
            PyErr_NormalizeException(&type, &value, &traceback);
            called = PyObject_CallFunctionObjArgs(call.reject, span, value, NULL);
            Py_XDECREF(type);
            Py_XDECREF(value);
            Py_XDECREF(traceback);
            status = called == NULL ? -1 : 1;
        }
        else if (status == 0) {
            called = PyObject_CallFunctionObjArgs(call.fallback, span, resource, NULL);
            status = called == NULL ? -1 : 0;
        }
        Py_XDECREF(called);
        Py_DECREF(span);
        if (status < 0)
            break;
        handled += status > 0;
        dropped += status == 2;
    }
    Py_DECREF(spans);
    PyMem_Free(rec);
    if (!PyErr_Occurred())
        result = Py_BuildValue("nn", handled, dropped);
done:
    for (int i = 0; i < 8; i++)
        Py_XDECREF(*slots[i]);
    return result;
}

/* ------------------------------------------------------------------------ */
/* The type                                                                 */
/* ------------------------------------------------------------------------ */

/* Each spec (column, read, fast, rank, convention, memo): checked once so add() need not. */
static int
check_specs(MakerObject *m)
{
    Py_ssize_t position = 0;
    PyObject *key, *specs;
    while (PyDict_Next(m->specs, &position, &key, &specs)) {
        if (!PyUnicode_CheckExact(key) || !PyTuple_CheckExact(specs))
            goto bad;
        for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(specs); i++) {
            PyObject *spec = PyTuple_GET_ITEM(specs, i);
            if (!PyTuple_CheckExact(spec) || PyTuple_GET_SIZE(spec) != 6)
                goto bad;
            if (!PyLong_CheckExact(PyTuple_GET_ITEM(spec, 0)) || !PyLong_CheckExact(PyTuple_GET_ITEM(spec, 2)))
                goto bad;
            long column = PyLong_AsLong(PyTuple_GET_ITEM(spec, 0));
            long fast = PyLong_AsLong(PyTuple_GET_ITEM(spec, 2));
            PyObject *rank = PyTuple_GET_ITEM(spec, 3), *memo = PyTuple_GET_ITEM(spec, 5);
            if (!PyLong_CheckExact(rank) || PyLong_AsLong(rank) < 0 || PyLong_AsLong(rank) > 1 << 20
                || column < 0 || column >= m->all_columns || fast < FAST_NONE || fast > FAST_MEMO
                || !PyCallable_Check(PyTuple_GET_ITEM(spec, 1))
                || (fast == FAST_MEMO && !PyDict_CheckExact(memo)))
                goto bad;
        }
    }
    return PyErr_Occurred() ? -1 : 0;
bad:
    if (!PyErr_Occurred())
        PyErr_SetString(PyExc_ValueError, "specs: key -> tuple of (column, read, fast, rank, convention, memo)");
    return -1;
}

static int
maker_init(MakerObject *m, PyObject *args, PyObject *kwargs)
{
    static char *names[] = {"specs", "columns", "row_length", "mark", "mark_oi", "mark_lf",
                            "personal_only", "olm_marker", "span_kind_client", "status_code_error",
                            "total_keys", "http_keys", "model_name_key", "otel", "olm",
                            "operation_from_span_name", "provider_from_attributes", "to_json", NULL};
    PyObject *specs, *columns, *total_keys, *http_keys, *model_name_key, *otel, *olm, *operation,
        *provider, *to_json;
    if (m->specs != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "RecordMaker is already initialized");
        return -1;
    }
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O!O!nllllliiO!O!UUUOOO", names, &PyDict_Type,
                                     &specs, &PyDict_Type, &columns, &m->row_length, &m->mark,
                                     &m->mark_oi, &m->mark_lf, &m->personal_only, &m->olm_marker,
                                     &m->span_kind_client, &m->status_code_error, &PyTuple_Type,
                                     &total_keys, &PyTuple_Type, &http_keys, &model_name_key, &otel,
                                     &olm, &operation, &provider, &to_json))
        return -1;
    m->all_columns = PyDict_GET_SIZE(columns);
    if (m->all_columns > MAX_COLUMNS || m->row_length < 0 || m->row_length > m->all_columns) {
        PyErr_SetString(PyExc_ValueError, "too many columns for the C record maker");
        return -1;
    }
    for (int named = 0; named < NAMED_COUNT; named++) {
        PyObject *index = PyDict_GetItemString(columns, NAMED[named]);
        long column = index ? PyLong_AsLong(index) : -1;
        if (column < 0 || column >= m->all_columns) {
            PyErr_Format(PyExc_ValueError, "columns: no valid index for %s", NAMED[named]);
            return -1;
        }
        m->column[named] = (int)column;
    }
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(total_keys); i++)
        if (!PyUnicode_Check(PyTuple_GET_ITEM(total_keys, i))) {
            PyErr_SetString(PyExc_TypeError, "total_keys must be str");
            return -1;
        }
    m->specs = Py_NewRef(specs);
    m->total_keys = Py_NewRef(total_keys);
    m->http_keys = Py_NewRef(http_keys);
    m->model_name_key = Py_NewRef(model_name_key);
    m->otel = Py_NewRef(otel);
    m->olm = Py_NewRef(olm);
    m->operation_from_span_name = Py_NewRef(operation);
    m->provider_from_attributes = Py_NewRef(provider);
    m->to_json = Py_NewRef(to_json);
    m->ok = PyUnicode_InternFromString("ok");           /* _fill_status */
    m->predict = PyUnicode_InternFromString("predict"); /* _fill_fallbacks */
    m->review = PyUnicode_InternFromString("review");   /* _fill_links */
    m->zero = PyLong_FromLong(0);                       /* attempt */
    if (m->ok == NULL || m->predict == NULL || m->review == NULL || m->zero == NULL)
        return -1;
    return check_specs(m);
}

static void
maker_dealloc(MakerObject *m)
{
    Py_XDECREF(m->specs);
    Py_XDECREF(m->total_keys);
    Py_XDECREF(m->http_keys);
    Py_XDECREF(m->model_name_key);
    Py_XDECREF(m->otel);
    Py_XDECREF(m->olm);
    Py_XDECREF(m->operation_from_span_name);
    Py_XDECREF(m->provider_from_attributes);
    Py_XDECREF(m->to_json);
    Py_XDECREF(m->ok);
    Py_XDECREF(m->predict);
    Py_XDECREF(m->review);
    Py_XDECREF(m->zero);
    Py_TYPE(m)->tp_free((PyObject *)m);
}

static PyMethodDef maker_methods[] = {
    {"add", (PyCFunction)maker_add, METH_VARARGS,
     "add(spans, resource, rows, ingest_time, pseudonymizer, redact, max_tokens, keep_http_spans,\n"
     "fallback, reject) -> (received, dropped)\n\n"
     "redact: None, or a callable that rewrites the attributes dict in place before its JSON.\n"
     "Appends the record row of each span it can build to rows; calls fallback(span, resource)\n"
     "for the others, in order, and reject(span, error) for an error after its commit.\n"
     "received counts the spans not given to fallback."},
    {NULL}};

static PyTypeObject MakerType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "collector._otlp_reader.RecordMaker",
    .tp_doc = "Builds inference record rows from Span objects (see collector/otlp_reader.py).",
    .tp_basicsize = sizeof(MakerObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)maker_init,
    .tp_dealloc = (destructor)maker_dealloc,
    .tp_methods = maker_methods,
};

int
records_add_to_module(PyObject *module)
{
    if (PyType_Ready(&MakerType) < 0)
        return -1;
    return PyModule_AddObjectRef(module, "RecordMaker", (PyObject *)&MakerType);
}
