/* Ctrl-C inside long compiled loops.

   A loop that may run for seconds holds a fastgd_interrupt. The thread that called the
   kernel (OpenMP thread 0, the Python thread that released the GIL) asks Python to run
   its signal handlers at most every FASTGD_POLL_SECONDS, taking the GIL for that moment;
   when a handler raises (KeyboardInterrupt), the exception is kept here and `stop` is
   set, which every thread reads between two units of work and then leaves its loop.
   With the GIL back, fastgd_interrupt_raise restores the exception for Cython to
   propagate. Only units of work that were finished count: a caller that needs a whole
   result (a step, a tile) checks between them. */
#ifndef FASTGD_INTERRUPTS_H
#define FASTGD_INTERRUPTS_H

#include <Python.h>

#ifdef _WIN32
#include <windows.h>
static inline double fastgd_seconds(void) { return (double)GetTickCount64() * 1e-3; }
#else
#include <time.h>
static inline double fastgd_seconds(void) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)now.tv_sec + 1e-9 * (double)now.tv_nsec;
}
#endif

#define FASTGD_POLL_SECONDS 0.05

typedef struct {
    volatile int stop;
    double next_poll;
    PyObject* type;
    PyObject* value;
    PyObject* traceback;
} fastgd_interrupt;

static inline void fastgd_interrupt_init(fastgd_interrupt* s) {
    s->stop = 0;
    s->next_poll = fastgd_seconds() + FASTGD_POLL_SECONDS;
    s->type = s->value = s->traceback = NULL;
}

/* Whether to stop. `is_caller`: this is the thread that called the kernel (only it may
   run the handlers); it must not hold the GIL. Other threads only read the flag. */
static inline int fastgd_should_stop(fastgd_interrupt* s, int is_caller) {
    double now;
    PyGILState_STATE gil;
    if (s->stop || !is_caller)
        return s->stop;
    now = fastgd_seconds();
    if (now < s->next_poll)
        return 0;
    s->next_poll = now + FASTGD_POLL_SECONDS;
    gil = PyGILState_Ensure();
    if (PyErr_CheckSignals() < 0) {
        PyErr_Fetch(&s->type, &s->value, &s->traceback);
        s->stop = 1;
    }
    PyGILState_Release(gil);
    return s->stop;
}

/* With the GIL: -1 with the handler's exception set if the loop was stopped, else 0. */
static inline int fastgd_interrupt_raise(fastgd_interrupt* s) {
    if (!s->stop)
        return 0;
    PyErr_Restore(s->type, s->value, s->traceback);
    s->type = s->value = s->traceback = NULL;
    return -1;
}

#endif
