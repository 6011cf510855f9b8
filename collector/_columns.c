/* Row tuples -> one Arrow record batch, through the Arrow C data interface.
 *
 * Why: pa.array on a Python list costs ~120 ns per element, and pa.nulls or
 * pa.Array.from_buffers several microseconds per column; a batch of 53 columns
 * paid both. Here the rows are transposed and every column's buffers are
 * written in one pass, and pyarrow imports the whole batch in one call
 * (collector/normalize.py, _to_batch_in_c).
 *
 * The contract: the batch equals what pa.array would build, or there is none.
 * A column accepts only values of the exact Python type pa.array would store
 * without conversion (str for strings, int in range for integers and
 * timestamps, float, bool, list of str); anything else -- a subclass, an int
 * out of range, a str that is not UTF-8 encodable, more than 2 GiB of text --
 * makes record_batch return None, and the caller builds the batch with
 * pa.array, which stores it or raises as it always did.
 *
 * Memory: buffers come from malloc, not PyMem, because Arrow may release the
 * batch on a thread that does not hold the GIL.
 */
#include "_otlp_reader.h"
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* The Arrow C data interface (https://arrow.apache.org/docs/format/CDataInterface.html). */
#ifndef ARROW_C_DATA_INTERFACE
#define ARROW_C_DATA_INTERFACE
struct ArrowSchema {
    const char *format;
    const char *name;
    const char *metadata;
    int64_t flags;
    int64_t n_children;
    struct ArrowSchema **children;
    struct ArrowSchema *dictionary;
    void (*release)(struct ArrowSchema *);
    void *private_data;
};

struct ArrowArray {
    int64_t length;
    int64_t null_count;
    int64_t offset;
    int64_t n_buffers;
    int64_t n_children;
    const void **buffers;
    struct ArrowArray **children;
    struct ArrowArray *dictionary;
    void (*release)(struct ArrowArray *);
    void *private_data;
};
#endif

/* Column kinds, as collector/normalize.py names them from the schema's types. */
enum ColumnKind {
    COL_STRING = 0,
    COL_INT64 = 1, /* int64 and timestamp: both 64-bit integers in one buffer */
    COL_INT32 = 2,
    COL_FLOAT64 = 3,
    COL_BOOL = 4,
    COL_STRING_LIST = 5,
    COL_KINDS
};

#define ALIGNMENT 64

/* What one array owns: its buffers and its children (the struct array's columns, a list's strings). */
typedef struct {
    const void *buffers[3];
    struct ArrowArray *child_structs; /* n_children structs, one block */
    struct ArrowArray **child_pointers;
} Owned;

static void
release_array(struct ArrowArray *array)
{
    Owned *owned = array->private_data;
    if (owned != NULL) {
        for (int64_t i = 0; i < array->n_children; i++)
            if (owned->child_structs[i].release != NULL) /* a consumer may have moved it out */
                owned->child_structs[i].release(&owned->child_structs[i]);
        for (int i = 0; i < 3; i++)
            free((void *)owned->buffers[i]);
        free(owned->child_structs);
        free(owned->child_pointers);
        free(owned);
    }
    array->release = NULL;
    array->private_data = NULL;
}

/* Zero-filled, aligned; never NULL for a size of 0 (Arrow wants a pointer for every buffer). */
static void *
buffer(size_t size)
{
    void *memory = NULL;
    size = (size + ALIGNMENT - 1) / ALIGNMENT * ALIGNMENT;
    if (size == 0)
        size = ALIGNMENT;
    if (posix_memalign(&memory, ALIGNMENT, size) != 0)
        return NULL;
    memset(memory, 0, size);
    return memory;
}

/* Sets up `array` (zeroed) with n_buffers and n_children; -1 when out of memory. */
static int
init_array(struct ArrowArray *array, int64_t length, int n_buffers, int64_t n_children)
{
    Owned *owned = calloc(1, sizeof(Owned));
    memset(array, 0, sizeof *array);
    if (owned == NULL)
        return -1;
    array->length = length;
    array->n_buffers = n_buffers;
    array->buffers = owned->buffers;
    array->private_data = owned;
    array->release = release_array;
    if (n_children > 0) {
        owned->child_structs = calloc((size_t)n_children, sizeof(struct ArrowArray));
        owned->child_pointers = calloc((size_t)n_children, sizeof(struct ArrowArray *));
        if (owned->child_structs == NULL || owned->child_pointers == NULL) {
            release_array(array);
            return -1;
        }
        for (int64_t i = 0; i < n_children; i++)
            owned->child_pointers[i] = &owned->child_structs[i];
        array->children = owned->child_pointers;
        array->n_children = n_children; /* only now: release_array walks the children */
    }
    return 0;
}

static void
set_bit(uint8_t *bits, Py_ssize_t i)
{
    bits[i >> 3] |= (uint8_t)(1u << (i & 7));
}

/* The validity bitmap when some value is null (buffer 0 stays NULL otherwise). */
static int
add_validity(struct ArrowArray *array, PyObject **cells, Py_ssize_t count, Py_ssize_t nulls)
{
    array->null_count = nulls;
    if (nulls == 0)
        return 0;
    uint8_t *bits = buffer(((size_t)count + 7) / 8);
    if (bits == NULL)
        return -1;
    for (Py_ssize_t r = 0; r < count; r++)
        if (cells[r] != Py_None)
            set_bit(bits, r);
    ((Owned *)array->private_data)->buffers[0] = bits;
    return 0;
}

/* UTF-8 of an exact str; 0 declined (not a str, or not encodable), -1 never (errors are declines). */
static int
utf8_of(PyObject *value, const char **data, Py_ssize_t *len)
{
    if (!PyUnicode_CheckExact(value))
        return 0;
    *data = PyUnicode_AsUTF8AndSize(value, len);
    if (*data == NULL) { /* lone surrogates: pa.array decides (and raises) */
        PyErr_Clear();
        return 0;
    }
    return 1;
}

/* Offsets and data of strings: each item None or a str that utf8_of accepted before. */
static int
fill_strings(struct ArrowArray *array, PyObject **items, Py_ssize_t count, size_t total)
{
    Owned *owned = array->private_data;
    int32_t *offsets = buffer(((size_t)count + 1) * sizeof(int32_t));
    char *data = buffer(total);
    owned->buffers[1] = offsets;
    owned->buffers[2] = data;
    if (offsets == NULL || data == NULL)
        return -1;
    int32_t at = 0;
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *value = items[i];
        const char *text;
        Py_ssize_t len;
        offsets[i] = at;
        if (value != Py_None && utf8_of(value, &text, &len)) {
            memcpy(data + at, text, (size_t)len);
            at += (int32_t)len;
        }
    }
    offsets[count] = at;
    return 0;
}

/* 1 the value fits the column kind (adds its text size to *total), 0 it does not. */
static int
fits(int kind, PyObject *value, size_t *total, Py_ssize_t *list_items)
{
    const char *text;
    Py_ssize_t len;
    int overflow;
    switch (kind) {
    case COL_STRING:
        if (!utf8_of(value, &text, &len))
            return 0;
        *total += (size_t)len;
        return 1;
    case COL_INT64:
    case COL_INT32: {
        if (!PyLong_CheckExact(value))
            return 0;
        long long number = PyLong_AsLongLongAndOverflow(value, &overflow);
        if (overflow || (number == -1 && PyErr_Occurred())) {
            PyErr_Clear();
            return 0;
        }
        return kind == COL_INT64 || (number >= INT32_MIN && number <= INT32_MAX);
    }
    case COL_FLOAT64:
        return PyFloat_CheckExact(value);
    case COL_BOOL:
        return PyBool_Check(value);
    case COL_STRING_LIST:
        if (!PyList_CheckExact(value))
            return 0;
        for (Py_ssize_t i = 0; i < PyList_GET_SIZE(value); i++) {
            if (!utf8_of(PyList_GET_ITEM(value, i), &text, &len))
                return 0;
            *total += (size_t)len;
        }
        *list_items += PyList_GET_SIZE(value);
        return 1;
    default:
        return 0;
    }
}

/* The list<string> column: list offsets, and one child string array of all the items. */
static int
fill_string_list(struct ArrowArray *array, PyObject **cells, Py_ssize_t count, Py_ssize_t items,
                 size_t total)
{
    Owned *owned = array->private_data;
    int32_t *offsets = buffer(((size_t)count + 1) * sizeof(int32_t));
    PyObject **flat = malloc(((size_t)items + 1) * sizeof(PyObject *));
    owned->buffers[1] = offsets;
    if (offsets == NULL || flat == NULL) {
        free(flat);
        return -1;
    }
    int32_t at = 0;
    for (Py_ssize_t r = 0; r < count; r++) {
        PyObject *list = cells[r];
        offsets[r] = at;
        if (list == Py_None)
            continue;
        for (Py_ssize_t i = 0; i < PyList_GET_SIZE(list); i++)
            flat[at++] = PyList_GET_ITEM(list, i); /* borrowed: the rows hold them */
    }
    offsets[count] = at;
    int status = init_array(array->children[0], items, 3, 0);
    if (status == 0)
        status = fill_strings(array->children[0], flat, items, total);
    free(flat);
    return status;
}

/* One column of `count` cells: 1 built, 0 declined, -1 out of memory. `array` is zeroed. */
static int
build_column(struct ArrowArray *array, PyObject **cells, Py_ssize_t count, int kind)
{
    Py_ssize_t nulls = 0, items = 0;
    size_t total = 0;
    for (Py_ssize_t r = 0; r < count; r++) {
        PyObject *value = cells[r];
        if (value == Py_None)
            nulls++;
        else if (!fits(kind, value, &total, &items))
            return 0;
    }
    if (total > INT32_MAX || items > INT32_MAX)
        return 0; /* int32 offsets: pa.array decides */
    int n_buffers = kind == COL_STRING ? 3 : 2;
    if (init_array(array, count, n_buffers, kind == COL_STRING_LIST ? 1 : 0) < 0
        || add_validity(array, cells, count, nulls) < 0)
        return -1;
    Owned *owned = array->private_data;
    if (kind == COL_STRING)
        return fill_strings(array, cells, count, total) < 0 ? -1 : 1;
    if (kind == COL_STRING_LIST)
        return fill_string_list(array, cells, count, items, total) < 0 ? -1 : 1;
    size_t width = kind == COL_BOOL ? 0 : kind == COL_INT32 ? 4 : 8;
    void *values = buffer(width ? (size_t)count * width : ((size_t)count + 7) / 8);
    owned->buffers[1] = values;
    if (values == NULL)
        return -1;
    for (Py_ssize_t r = 0; r < count; r++) {
        PyObject *value = cells[r];
        if (value == Py_None)
            continue;
        if (kind == COL_INT64)
            ((int64_t *)values)[r] = PyLong_AsLongLong(value); /* in range: checked by fits */
        else if (kind == COL_INT32)
            ((int32_t *)values)[r] = (int32_t)PyLong_AsLong(value);
        else if (kind == COL_FLOAT64)
            ((double *)values)[r] = PyFloat_AS_DOUBLE(value);
        else if (value == Py_True)
            set_bit(values, r);
    }
    return 1;
}

static void
free_capsule(PyObject *capsule)
{
    struct ArrowArray *array = PyCapsule_GetPointer(capsule, "arrow_array");
    if (array == NULL) {
        PyErr_Clear();
        return;
    }
    if (array->release != NULL)
        array->release(array);
    free(array);
}

/* record_batch(rows, kinds) -> "arrow_array" capsule of a struct array, or None (see the top). */
static PyObject *
record_batch(PyObject *module, PyObject *args)
{
    PyObject *rows, *kinds;
    if (!PyArg_ParseTuple(args, "O!O!:record_batch", &PyList_Type, &rows, &PyTuple_Type, &kinds))
        return NULL;
    Py_ssize_t count = PyList_GET_SIZE(rows), width = PyTuple_GET_SIZE(kinds);
    int kind_of[256];
    if (width > 256)
        Py_RETURN_NONE;
    for (Py_ssize_t c = 0; c < width; c++) {
        long kind = PyLong_AsLong(PyTuple_GET_ITEM(kinds, c));
        if (kind == -1 && PyErr_Occurred())
            return NULL;
        if (kind < 0 || kind >= COL_KINDS) {
            PyErr_Format(PyExc_ValueError, "unknown column kind %ld", kind);
            return NULL;
        }
        kind_of[c] = (int)kind;
    }
    for (Py_ssize_t r = 0; r < count; r++) {
        PyObject *row = PyList_GET_ITEM(rows, r);
        if (!PyTuple_CheckExact(row) || PyTuple_GET_SIZE(row) != width)
            Py_RETURN_NONE;
    }
    /* Transposed once, row by row: each column is then read from contiguous memory rather
     * than from one tuple per row (the rows hold the references; nothing here runs Python). */
    PyObject **cells = malloc(((size_t)count * (size_t)width + 1) * sizeof(PyObject *));
    struct ArrowArray *batch = malloc(sizeof *batch);
    if (cells == NULL || batch == NULL || init_array(batch, count, 1, width) < 0) {
        free(cells);
        free(batch);
        return PyErr_NoMemory();
    }
    for (Py_ssize_t r = 0; r < count; r++) {
        PyObject *row = PyList_GET_ITEM(rows, r);
        for (Py_ssize_t c = 0; c < width; c++)
            cells[c * count + r] = PyTuple_GET_ITEM(row, c);
    }
    int built = 1;
    for (Py_ssize_t c = 0; c < width && built == 1; c++)
        built = build_column(batch->children[c], cells + c * count, count, kind_of[c]);
    free(cells);
    if (built != 1) {
        batch->release(batch);
        free(batch);
        if (built < 0)
            return PyErr_NoMemory();
        Py_RETURN_NONE;
    }
    PyObject *capsule = PyCapsule_New(batch, "arrow_array", free_capsule);
    if (capsule == NULL) {
        batch->release(batch);
        free(batch);
    }
    return capsule;
}

static PyMethodDef column_methods[] = {
    {"record_batch", record_batch, METH_VARARGS,
     "record_batch(rows, kinds) -> Arrow C data interface capsule of the rows as a struct array,\n"
     "or None when a value does not fit its column kind (then build the batch with pa.array)."},
    {NULL}};

int
columns_add_to_module(PyObject *module)
{
    static const char *names[] = {"COL_STRING", "COL_INT64", "COL_INT32", "COL_FLOAT64", "COL_BOOL",
                                  "COL_STRING_LIST"};
    for (int kind = 0; kind < COL_KINDS; kind++)
        if (PyModule_AddIntConstant(module, names[kind], kind) < 0)
            return -1;
    return PyModule_AddFunctions(module, column_methods);
}
