# Ctrl-C inside long compiled loops (interrupts.h).
cdef extern from "interrupts.h":
    ctypedef struct fastgd_interrupt:
        int stop
    void fastgd_interrupt_init(fastgd_interrupt* state) noexcept nogil
    int fastgd_should_stop(fastgd_interrupt* state, int is_caller) noexcept nogil
    int fastgd_interrupt_raise(fastgd_interrupt* state) except -1
