/* Counting values into TensorBoard's default histogram buckets in one pass, without the GIL: an
 * optional extension. Where it is not built, logger_daemon/histogram.py counts with
 * numpy.histogram (which sorts the values).
 *
 * The default edges are 0 and +-1e-12 * 1.1**k, about 1 550 of them: neighbours a factor 1.1
 * apart. The sign, the exponent and the first 4 mantissa bits of a float (its top bits: 13 of a
 * float32, 16 of a float64) name a cell of the number line at most a factor 1 + 1/16 wide, so a
 * cell holds at most one edge. histogram.py tabulates, per cell, the bucket of the cell's lowest value (`base`)
 * and the one edge inside it (`threshold`, +inf where there is none); a value's bucket is then
 * base + (value >= threshold). That is numpy.histogram's rule with these edges: bucket i holds
 * edges[i] <= x < edges[i + 1], the last bucket also x == edges[-1], and values outside
 * [edges[0], edges[-1]] (NaN and infinities among them) are not counted.
 *
 * count(values, itemsize, base, threshold, low, high, counts, extremes): values a C-contiguous
 *   buffer of float32 (itemsize 4) or float64 (itemsize 8); base an int32 table and threshold a
 *   float64 table of 2 ** 13 (float32) or 2 ** 16 (float64) cells; low, high the first and last
 *   edge; counts an int64 buffer (one per bucket) that is added to; extremes a float64 buffer of
 *   two that receives the smallest and largest value (as doubles) in the same pass, which saves
 *   the caller two passes over the values. Returns whether a NaN was seen (then the extremes
 *   leave the NaNs out, where numpy's min and max would return NaN).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define F32_SHIFT 19 /* 32 bits - 13 */
#define F64_SHIFT 48 /* 64 bits - 16 */

/* Four interleaved sets of counts: consecutive values often fall in the same bucket, and an
 * increment that waits on the previous one's store would serialise the loop. */
#define LANES 4

#define COUNT_LOOP(TYPE, UTYPE, SHIFT)                                                            \
    do {                                                                                          \
        const TYPE *v = (const TYPE *)values;                                                     \
        for (Py_ssize_t i = 0; i < n; i++) {                                                      \
            double x = (double)v[i];                                                              \
            int64_t *lane = lanes + (i & (LANES - 1)) * buckets;                                  \
            smallest = x < smallest ? x : smallest;                                               \
            largest = x > largest ? x : largest;                                                  \
            nan |= x != x;                                                                        \
            if (x >= low && x < high) {                                                           \
                UTYPE bits;                                                                       \
                memcpy(&bits, &v[i], sizeof bits);                                                \
                size_t cell = (size_t)(bits >> SHIFT);                                            \
                lane[base[cell] + (x >= threshold[cell])]++;                                      \
            } else if (x == high) {                                                               \
                lane[buckets - 1]++;                                                              \
            }                                                                                     \
        }                                                                                         \
    } while (0)

static PyObject *count(PyObject *module, PyObject *args)
{
    Py_buffer values, base_buffer, threshold_buffer, counts_buffer, extremes_buffer;
    Py_ssize_t itemsize;
    double low, high;
    (void)module;
    if (!PyArg_ParseTuple(args, "y*ny*y*ddw*w*:count", &values, &itemsize, &base_buffer, &threshold_buffer, &low,
                          &high, &counts_buffer, &extremes_buffer))
        return NULL;
    PyObject *result = NULL;
    int64_t *lanes = NULL;
    Py_ssize_t cells = itemsize == 4 ? ((Py_ssize_t)1 << 13) : ((Py_ssize_t)1 << 16);
    Py_ssize_t buckets = counts_buffer.len / (Py_ssize_t)sizeof(int64_t);
    if (!(itemsize == 4 || itemsize == 8) || values.len % itemsize != 0) {
        PyErr_SetString(PyExc_ValueError, "count: values must be float32 or float64");
        goto done;
    }
    if (base_buffer.len != cells * (Py_ssize_t)sizeof(int32_t)
        || threshold_buffer.len != cells * (Py_ssize_t)sizeof(double) || buckets < 1
        || extremes_buffer.len != 2 * (Py_ssize_t)sizeof(double)) {
        PyErr_SetString(PyExc_ValueError, "count: tables, counts or extremes of the wrong size");
        goto done;
    }
    const int32_t *base = (const int32_t *)base_buffer.buf;
    for (Py_ssize_t c = 0; c < cells; c++) {
        /* A bucket index out of range would write outside the counts: check the table once. */
        if (base[c] < -1 || base[c] >= buckets) {
            PyErr_SetString(PyExc_ValueError, "count: a table entry names no bucket");
            goto done;
        }
    }
    lanes = PyMem_Calloc((size_t)(LANES * buckets), sizeof(int64_t));
    if (lanes == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    const double *threshold = (const double *)threshold_buffer.buf;
    const void *data = values.buf;
    Py_ssize_t n = values.len / itemsize;
    double smallest = Py_HUGE_VAL, largest = -Py_HUGE_VAL;
    int nan = 0;
    Py_BEGIN_ALLOW_THREADS
    {
        const void *values = data;
        if (itemsize == 4)
            COUNT_LOOP(float, uint32_t, F32_SHIFT);
        else
            COUNT_LOOP(double, uint64_t, F64_SHIFT);
    }
    Py_END_ALLOW_THREADS
    int64_t *counts = (int64_t *)counts_buffer.buf;
    for (Py_ssize_t b = 0; b < buckets; b++) {
        for (int l = 0; l < LANES; l++)
            counts[b] += lanes[l * buckets + b];
    }
    ((double *)extremes_buffer.buf)[0] = smallest;
    ((double *)extremes_buffer.buf)[1] = largest;
    result = PyBool_FromLong(nan);
done:
    PyMem_Free(lanes);
    PyBuffer_Release(&values);
    PyBuffer_Release(&base_buffer);
    PyBuffer_Release(&threshold_buffer);
    PyBuffer_Release(&counts_buffer);
    PyBuffer_Release(&extremes_buffer);
    return result;
}

static PyMethodDef methods[] = {
    {"count", count, METH_VARARGS,
     "count(values, itemsize, base, threshold, low, high, counts, extremes): adds to counts (int64, "
     "one per bucket) the values (float32: itemsize 4, float64: itemsize 8) falling into each default "
     "bucket, by the cell tables of logger_daemon.histogram, and writes the smallest and largest value "
     "into extremes (two float64); returns whether a NaN was seen. The GIL is released meanwhile."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "logger_daemon._histogram",
    .m_size = 0,
    .m_methods = methods,
};

PyMODINIT_FUNC PyInit__histogram(void)
{
    return PyModule_Create(&module_def);
}
