# The masked losses (losses.h): the entry loss and the reduction, for the modules that
# finish a loss and its gradients: _masked and _solvers (factorize's loop).

from libc.stdint cimport int64_t


cdef extern from "losses.h" nogil:
    ctypedef struct fastgd_entry_loss:
        int code
        double delta
        const void* weights
    double fastgd_entry_loss_term_f32(const fastgd_entry_loss* loss, Py_ssize_t e, float r,
                                      float* g)
    double fastgd_entry_loss_term_f64(const fastgd_entry_loss* loss, Py_ssize_t e, double r,
                                      double* g)
    double fastgd_loss_value_and_scale(int reduction, int entry_loss, double sum,
                                       double total_weight, double* scale)
