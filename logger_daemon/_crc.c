/* The masked CRC-32C of each row of a block of equal-length records, in one call: an optional
 * extension. The scalar fast path frames thousands of short events per write; calling the crc32c
 * package once per row costs more than everything else the daemon does for a scalar. Where it is
 * not built, logger_daemon/tfrecord.py calls crc32c row by row.
 *
 * crc_rows(rows, length, out): rows a C-contiguous buffer of n * length bytes; out a writable
 *   buffer of n uint32 (native order) that receives each row's CRC-32C (Castagnoli), masked as
 *   TFRecord stores it: ((crc >> 15) | (crc << 17)) + 0xa282ead8. The GIL is released meanwhile.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

#define POLY 0x82f63b78u /* CRC-32C, reflected */
#define MASK_DELTA 0xa282ead8u

/* Slicing by 8: eight tables, so that the loop takes eight bytes a step. */
static uint32_t table[8][256];

static void init_tables(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t crc = i;
        for (int k = 0; k < 8; k++)
            crc = (crc >> 1) ^ (POLY & (0u - (crc & 1u)));
        table[0][i] = crc;
    }
    for (uint32_t i = 0; i < 256; i++)
        for (int t = 1; t < 8; t++)
            table[t][i] = (table[t - 1][i] >> 8) ^ table[0][table[t - 1][i] & 0xffu];
}

static uint32_t crc32c(const unsigned char *p, Py_ssize_t n)
{
    uint32_t crc = 0xffffffffu;
    while (n >= 8) {
        uint32_t low = crc ^ ((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24);
        uint32_t high = (uint32_t)p[4] | (uint32_t)p[5] << 8 | (uint32_t)p[6] << 16 | (uint32_t)p[7] << 24;
        crc = table[7][low & 0xffu] ^ table[6][(low >> 8) & 0xffu] ^ table[5][(low >> 16) & 0xffu]
              ^ table[4][low >> 24] ^ table[3][high & 0xffu] ^ table[2][(high >> 8) & 0xffu]
              ^ table[1][(high >> 16) & 0xffu] ^ table[0][high >> 24];
        p += 8;
        n -= 8;
    }
    while (n-- > 0)
        crc = (crc >> 8) ^ table[0][(crc ^ *p++) & 0xffu];
    return crc ^ 0xffffffffu;
}

static PyObject *crc_rows(PyObject *module, PyObject *args)
{
    Py_buffer rows, out;
    Py_ssize_t length;
    (void)module;
    if (!PyArg_ParseTuple(args, "y*nw*:crc_rows", &rows, &length, &out))
        return NULL;
    PyObject *result = NULL;
    Py_ssize_t n = length > 0 ? rows.len / length : 0;
    if (length <= 0 || rows.len % length != 0 || out.len != n * (Py_ssize_t)sizeof(uint32_t)) {
        PyErr_SetString(PyExc_ValueError, "crc_rows: rows must be whole rows of length bytes, out one uint32 a row");
        goto done;
    }
    const unsigned char *data = (const unsigned char *)rows.buf;
    uint32_t *crcs = (uint32_t *)out.buf;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n; i++) {
        uint32_t crc = crc32c(data + i * length, length);
        crcs[i] = ((crc >> 15) | (crc << 17)) + MASK_DELTA;
    }
    Py_END_ALLOW_THREADS
    result = Py_None;
    Py_INCREF(result);
done:
    PyBuffer_Release(&rows);
    PyBuffer_Release(&out);
    return result;
}

static PyMethodDef methods[] = {
    {"crc_rows", crc_rows, METH_VARARGS,
     "crc_rows(rows, length, out): writes into out (one uint32 a row, native order) the masked "
     "CRC-32C of each length-byte row of rows, as TFRecord stores it; the GIL is released meanwhile."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "logger_daemon._crc",
    .m_size = 0,
    .m_methods = methods,
};

PyMODINIT_FUNC PyInit__crc(void)
{
    init_tables();
    return PyModule_Create(&module_def);
}
