# The losses from the sum of squared residuals (losses.h), for the modules that finish a
# loss and its gradients: _masked (small problems) and _solvers (factorize's loop).

from libc.stdint cimport int64_t


cdef extern from "losses.h" nogil:
    double fastgd_loss_value_and_scale(int loss, double sse, int64_t count, double* scale)
