/* Re-executes the daemon in place when the process aborts.
 *
 * libzmq calls abort() on some conditions it does not expect to survive, such as accept()
 * failing for want of a file descriptor. The handler runs the daemon's command line again with
 * execv (async-signal-safe), so the pid and the inherited lock survive, and clients reconnect
 * and resend what was not acknowledged. Everything the handler needs is copied beforehand.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char **rescue_argv = NULL;

static void on_abort(int signum)
{
    if (rescue_argv != NULL)
        execv(rescue_argv[0], rescue_argv);
    signal(signum, SIG_DFL);
    raise(signum);
}

static PyObject *arm(PyObject *self, PyObject *arg)
{
    (void)self;
    if (rescue_argv != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "already armed");
        return NULL;
    }
    PyObject *items = PySequence_Fast(arg, "argv must be a sequence of str");
    if (items == NULL)
        return NULL;
    Py_ssize_t count = PySequence_Fast_GET_SIZE(items);
    if (count < 1) {
        Py_DECREF(items);
        PyErr_SetString(PyExc_ValueError, "argv must name the program");
        return NULL;
    }
    char **copy = calloc((size_t)count + 1, sizeof(char *));
    if (copy == NULL) {
        Py_DECREF(items);
        return PyErr_NoMemory();
    }
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *encoded = PyUnicode_EncodeFSDefault(PySequence_Fast_GET_ITEM(items, i));
        if (encoded == NULL || (copy[i] = strdup(PyBytes_AS_STRING(encoded))) == NULL) {
            Py_XDECREF(encoded);
            for (Py_ssize_t j = 0; j < i; j++)
                free(copy[j]);
            free(copy);
            Py_DECREF(items);
            return PyErr_Occurred() ? NULL : PyErr_NoMemory();
        }
        Py_DECREF(encoded);
    }
    Py_DECREF(items);
    struct sigaction action;
    memset(&action, 0, sizeof(action));
    action.sa_handler = on_abort;
    /* Not deferred: the new image must not start with SIGABRT blocked. */
    action.sa_flags = SA_NODEFER;
    sigemptyset(&action.sa_mask);
    rescue_argv = copy;
    if (sigaction(SIGABRT, &action, NULL) != 0) {
        rescue_argv = NULL;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"arm", arm, METH_O, "arm(argv): on abort, execv(argv[0], argv) in place of dying."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_rescue", NULL, -1, methods};

PyMODINIT_FUNC PyInit__rescue(void)
{
    return PyModule_Create(&module);
}
