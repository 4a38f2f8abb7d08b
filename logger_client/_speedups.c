/* The training thread's hot operations in C: an optional extension. Where it is not built,
 * logger_client/_fast.py gives the same in Python (and the writer keeps its Python add_scalar).
 *
 * After a training step the interpreter's caches are cold: each Python frame and each separate
 * call (time(), struct's pack, the append) then costs microseconds, more than the work itself.
 *
 * ScalarCall: a writer's add_scalar for the plain call, `add_scalar(tag, value[, step[,
 *   walltime]])` with a known tag, a float value, an int step and a float or no wall time
 *   (global_step and walltime may be keywords): a dict lookup and the packed row appended, with
 *   no Python frame. Every other call goes to the writer's Python method, unchanged.
 *
 * append_scalar_row(queue, key, step, walltime, value): the same row from Python, in one call.
 *
 * stream_copy(dst, src): the one copy of a large logged array, with non-temporal stores. The
 *   copy goes to memory the training process never reads again (the daemon reads it), so
 *   bringing each destination line into this core's caches first, as memcpy's stores do, is
 *   wasted: it costs a read of every line from memory and evicts the training step's own data.
 *   Where the compiler has no x86 streaming stores, it is memcpy.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#if defined(__x86_64__) || defined(_M_X64)
#include <emmintrin.h>
#define STREAMING 1
#else
#define STREAMING 0
#endif

/* ---- append_scalar_row ------------------------------------------------------------------ */

/* One row of protocol.SCALAR_ROW ("<Iqdd"): key u32, step i64, wall time f64, value f64. */
#define ROW_BYTES 28

/* Appends the packed row of (key, step, walltime, value) to `queue` (a list, or anything with
 * append() and len()). Returns the queue's new length; -1, appending nothing, when the caller
 * must convert an argument first (a step that is not an int64 or None, a wall time not a float
 * or None, a value not a float); -2 with an exception set. */
static Py_ssize_t append_row(PyObject *queue, PyObject *key, PyObject *step, PyObject *walltime, PyObject *value)
{
    if (!PyLong_CheckExact(key)) {
        PyErr_SetString(PyExc_TypeError, "append_scalar_row: key must be an int");
        return -2;
    }
    if (!PyFloat_CheckExact(value) || (walltime != Py_None && !PyFloat_CheckExact(walltime)))
        return -1;
    long long step_value = 0;
    if (step != Py_None) {
        int overflow = 0;
        if (!PyLong_CheckExact(step))
            return -1;
        step_value = PyLong_AsLongLongAndOverflow(step, &overflow);
        if (overflow)
            return -1;
    }
    unsigned long key_value = PyLong_AsUnsignedLong(key);
    if (key_value == (unsigned long)-1 && PyErr_Occurred())
        return -2;
    if (key_value > UINT32_MAX) {
        PyErr_SetString(PyExc_OverflowError, "append_scalar_row: key does not fit in 32 bits");
        return -2;
    }
    double wall_value;
    if (walltime == Py_None) {
        struct timespec now; /* what time.time() reads */
        if (clock_gettime(CLOCK_REALTIME, &now) != 0) {
            PyErr_SetFromErrno(PyExc_OSError);
            return -2;
        }
        wall_value = (double)now.tv_sec + (double)now.tv_nsec * 1e-9;
    } else {
        wall_value = PyFloat_AS_DOUBLE(walltime);
    }
    double scalar = PyFloat_AS_DOUBLE(value);

    PyObject *row = PyBytes_FromStringAndSize(NULL, ROW_BYTES);
    if (row == NULL)
        return -2;
    unsigned char *p = (unsigned char *)PyBytes_AS_STRING(row);
    uint32_t key32 = (uint32_t)key_value;
    uint64_t fields[3];
    memcpy(&fields[0], &step_value, 8);
    memcpy(&fields[1], &wall_value, 8);
    memcpy(&fields[2], &scalar, 8);
    for (int i = 0; i < 4; i++) /* little-endian whatever the host */
        p[i] = (unsigned char)(key32 >> (8 * i));
    for (int f = 0; f < 3; f++)
        for (int i = 0; i < 8; i++)
            p[4 + 8 * f + i] = (unsigned char)(fields[f] >> (8 * i));
    if (PyList_CheckExact(queue)) {
        int failed = PyList_Append(queue, row);
        Py_DECREF(row);
        return failed ? -2 : PyList_GET_SIZE(queue);
    }
    /* Any other queue: its append() and len(). */
    PyObject *done = PyObject_CallMethod(queue, "append", "O", row);
    Py_DECREF(row);
    if (done == NULL)
        return -2;
    Py_DECREF(done);
    Py_ssize_t length = PyObject_Length(queue);
    return length < 0 ? -2 : length;
}

static PyObject *append_scalar_row(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (nargs != 5) {
        PyErr_Format(PyExc_TypeError, "append_scalar_row takes 5 arguments, got %zd", nargs);
        return NULL;
    }
    Py_ssize_t length = append_row(args[0], args[1], args[2], args[3], args[4]);
    return length == -2 ? NULL : PyLong_FromSsize_t(length);
}

/* ---- ScalarCall ------------------------------------------------------------------------- */

typedef struct {
    PyObject_HEAD
    vectorcallfunc vectorcall;
    PyObject *keys;       /* the writer's key table: tag -> key */
    PyObject *queue;      /* the transport's queue (a list) */
    Py_ssize_t batch_records;
    PyObject *on_backlog; /* the transport's on_backlog(length), called when a batch is full */
    PyObject *fallback;   /* the writer's Python add_scalar, bound: every call but the plain one */
} ScalarCall;

static PyObject *scalar_call(PyObject *callable, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    ScalarCall *self = (ScalarCall *)callable;
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    if (nargs < 2 || nargs > 4)
        goto fallback;
    PyObject *step = nargs > 2 ? args[2] : Py_None;
    PyObject *walltime = nargs > 3 ? args[3] : Py_None;
    int have_step = nargs > 2, have_walltime = nargs > 3;
    if (kwnames != NULL) {
        for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(kwnames); i++) {
            PyObject *name = PyTuple_GET_ITEM(kwnames, i);
            if (!have_step && PyUnicode_CompareWithASCIIString(name, "global_step") == 0) {
                step = args[nargs + i];
                have_step = 1;
            } else if (!have_walltime && PyUnicode_CompareWithASCIIString(name, "walltime") == 0) {
                walltime = args[nargs + i];
                have_walltime = 1;
            } else {
                goto fallback; /* other options, or an argument given twice: the method says */
            }
        }
    }
    if (!PyUnicode_CheckExact(args[0]))
        goto fallback;
    PyObject *key = PyDict_GetItemWithError(self->keys, args[0]);
    if (key == NULL) {
        if (PyErr_Occurred())
            return NULL;
        goto fallback; /* a new tag: the method checks it and defines its key */
    }
    Py_ssize_t length = append_row(self->queue, key, step, walltime, args[1]);
    if (length == -2)
        return NULL;
    if (length == -1)
        goto fallback; /* a value, step or wall time to convert (or refuse): the method does */
    if (length >= self->batch_records) {
        PyObject *count = PyLong_FromSsize_t(length);
        if (count == NULL)
            return NULL;
        PyObject *result = PyObject_CallOneArg(self->on_backlog, count);
        Py_DECREF(count);
        if (result == NULL)
            return NULL;
        Py_DECREF(result);
    }
    Py_RETURN_NONE;
fallback:
    return PyObject_Vectorcall(self->fallback, args, nargsf, kwnames);
}

static PyObject *scalar_call_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    PyObject *keys, *queue, *on_backlog, *fallback;
    Py_ssize_t batch_records;
    static char *names[] = {"keys", "queue", "batch_records", "on_backlog", "fallback", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O!O!nOO:ScalarCall", names, &PyDict_Type, &keys,
                                     &PyList_Type, &queue, &batch_records, &on_backlog, &fallback))
        return NULL;
    ScalarCall *self = (ScalarCall *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    self->vectorcall = scalar_call;
    self->keys = Py_NewRef(keys);
    self->queue = Py_NewRef(queue);
    self->batch_records = batch_records;
    self->on_backlog = Py_NewRef(on_backlog);
    self->fallback = Py_NewRef(fallback);
    return (PyObject *)self;
}

/* The fallback is bound to the writer, which holds this object: a cycle the collector must see. */
static int scalar_call_traverse(ScalarCall *self, visitproc visit, void *arg)
{
    Py_VISIT(self->keys);
    Py_VISIT(self->queue);
    Py_VISIT(self->on_backlog);
    Py_VISIT(self->fallback);
    return 0;
}

static int scalar_call_clear(ScalarCall *self)
{
    Py_CLEAR(self->keys);
    Py_CLEAR(self->queue);
    Py_CLEAR(self->on_backlog);
    Py_CLEAR(self->fallback);
    return 0;
}

static void scalar_call_dealloc(ScalarCall *self)
{
    PyObject_GC_UnTrack(self);
    scalar_call_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyTypeObject ScalarCallType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "logger_client._speedups.ScalarCall",
    .tp_basicsize = sizeof(ScalarCall),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_doc = "ScalarCall(keys, queue, batch_records, on_backlog, fallback): a writer's add_scalar, "
              "the plain call in C, every other call to `fallback`.",
    .tp_new = scalar_call_new,
    .tp_call = PyVectorcall_Call,
    .tp_vectorcall_offset = offsetof(ScalarCall, vectorcall),
    .tp_traverse = (traverseproc)scalar_call_traverse,
    .tp_clear = (inquiry)scalar_call_clear,
    .tp_dealloc = (destructor)scalar_call_dealloc,
};

/* ---- stream_copy ------------------------------------------------------------------------ */

static void copy_streaming(char *dst, const char *src, size_t n)
{
#if STREAMING
    /* Streaming stores need 16-byte aligned destinations: the unaligned head goes by memcpy. */
    size_t head = (16 - ((uintptr_t)dst & 15)) & 15;
    if (head > n)
        head = n;
    memcpy(dst, src, head);
    dst += head;
    src += head;
    n -= head;
    for (; n >= 64; n -= 64, src += 64, dst += 64) {
        __m128i a = _mm_loadu_si128((const __m128i *)src);
        __m128i b = _mm_loadu_si128((const __m128i *)(src + 16));
        __m128i c = _mm_loadu_si128((const __m128i *)(src + 32));
        __m128i d = _mm_loadu_si128((const __m128i *)(src + 48));
        _mm_stream_si128((__m128i *)dst, a);
        _mm_stream_si128((__m128i *)(dst + 16), b);
        _mm_stream_si128((__m128i *)(dst + 32), c);
        _mm_stream_si128((__m128i *)(dst + 48), d);
    }
    memcpy(dst, src, n);
    _mm_sfence(); /* the streamed lines are visible before anything this thread does next */
#else
    memcpy(dst, src, n);
#endif
}

static PyObject *stream_copy(PyObject *module, PyObject *args)
{
    Py_buffer dst, src;
    (void)module;
    if (!PyArg_ParseTuple(args, "w*y*:stream_copy", &dst, &src))
        return NULL;
    if (dst.len != src.len) {
        PyErr_Format(PyExc_ValueError, "stream_copy: dst has %zd bytes, src %zd", dst.len, src.len);
        PyBuffer_Release(&dst);
        PyBuffer_Release(&src);
        return NULL;
    }
    /* Other threads (the client's I/O thread) run meanwhile, rather than after, on this core. */
    Py_BEGIN_ALLOW_THREADS
    copy_streaming((char *)dst.buf, (const char *)src.buf, (size_t)src.len);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&dst);
    PyBuffer_Release(&src);
    Py_RETURN_NONE;
}

/* ---- the module ------------------------------------------------------------------------- */

static PyMethodDef methods[] = {
    {"append_scalar_row", (PyCFunction)(void (*)(void))append_scalar_row, METH_FASTCALL,
     "append_scalar_row(queue, key, step, walltime, value) -> int: appends the packed row to queue "
     "(a list, or anything with append() and len()) "
     "(walltime None: now) and returns the queue's length; -1, appending nothing, when step is "
     "not an int64 or None, walltime not a float or None, or value not a float."},
    {"stream_copy", stream_copy, METH_VARARGS,
     "stream_copy(dst, src): copies the bytes of C-contiguous buffer src into writable dst "
     "(same length), bypassing this core's caches where the CPU allows."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "logger_client._speedups",
    .m_size = 0,
    .m_methods = methods,
};

PyMODINIT_FUNC PyInit__speedups(void)
{
    if (PyType_Ready(&ScalarCallType) < 0)
        return NULL;
    PyObject *module = PyModule_Create(&module_def);
    if (module == NULL)
        return NULL;
    if (PyModule_AddIntConstant(module, "STREAMING", STREAMING) < 0
        || PyModule_AddObjectRef(module, "ScalarCall", (PyObject *)&ScalarCallType) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
