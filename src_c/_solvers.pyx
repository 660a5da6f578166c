"""The iteration loop of fastgd.factorize for small problems, run in compiled code.

``run_iterations`` takes whole gradient-descent steps on the masked loss of W @ H
without returning to Python between them: the loss and raw gradients over a plan of
observed entries (row-sorted, as fastgd.ObservedEntries holds them), then the fused
Adagrad or SGD update of W and of H. A 4 x 3 rank-2 step costs a fraction of a
microsecond, where a Python loop pays tens of microseconds for its calls alone.

H is kept transposed, as HT of shape (n, k), so that both factors are read by
contiguous rows. The update loops are those of fastgd.adagrad_update and
fastgd.sgd_update (update_loops.h), run at the level and division chosen in _updates (its
UPDATE_DISPATCH state, which a run follows), so a step applies bitwise the same formula as
those functions. One thread: larger
problems go through the threaded kernels from Python, where the per-call cost no longer
matters.
"""

from cpython.pycapsule cimport PyCapsule_GetPointer
from cython cimport floating
from codes cimport (
    ENTRY_SQUARED,
    OPTIMIZER_ADAGRAD,
    STATUS_CONVERGED,
    STATUS_MAX_ITER,
    STATUS_NONFINITE,
)
from interrupts cimport (
    fastgd_interrupt,
    fastgd_interrupt_init,
    fastgd_interrupt_raise,
    fastgd_should_stop,
)
from libc.math cimport fabs, isfinite
from libc.stdint cimport int32_t, int64_t
from libc.string cimport memset
from losses cimport (
    fastgd_entry_loss,
    fastgd_entry_loss_term_f32,
    fastgd_entry_loss_term_f64,
    fastgd_loss_value_and_scale,
)
from update_loops cimport (
    fastgd_adagrad_f32,
    fastgd_adagrad_f64,
    fastgd_sgd_f32,
    fastgd_sgd_f64,
    fastgd_updates_follow,
)
from update_settings cimport UPDATE_DISPATCH_CAPSULE, UpdateDispatch, UpdateSettings

from fastgd._ext._updates import UPDATE_DISPATCH

# The update loops' dispatch state, held by _updates: this module's copy of the loops
# follows it at every run, so they run at the level and division chosen there.
cdef const UpdateDispatch* _dispatch = <const UpdateDispatch*>PyCapsule_GetPointer(
    UPDATE_DISPATCH, UPDATE_DISPATCH_CAPSULE)


ctypedef fused index_t:
    int32_t
    int64_t


cdef double _sum_of_squares(const floating* x, Py_ssize_t length) noexcept nogil:
    cdef double total = 0
    cdef Py_ssize_t i
    for i in range(length):
        total += <double>x[i] * x[i]
    return total


cdef double _loss_and_gradients(const index_t* indptr, const index_t* indices,
                                const floating* values, Py_ssize_t m, Py_ssize_t n,
                                Py_ssize_t k, const floating* W, const floating* HT,
                                floating* grad_W, floating* grad_HT, int loss_code,
                                const fastgd_entry_loss* term, double total_weight,
                                double l2) noexcept nogil:
    """The loss at (W, HT) and, in grad_W and grad_HT, the gradients of its data term
    (the l2 term's gradient, l2 * p, is added by the update as its weight decay). term:
    the entry loss (NULL: squared residuals without weights), over entries of total weight
    total_weight."""
    cdef Py_ssize_t i, c, j, entry
    cdef const floating* w_row
    cdef const floating* h_row
    cdef floating* grad_w_row
    cdef floating* grad_h_row
    cdef floating r
    cdef double sse = 0, loss, scale
    if m * k:
        memset(grad_W, 0, m * k * sizeof(floating))
    if n * k:
        memset(grad_HT, 0, n * k * sizeof(floating))
    for i in range(m):
        w_row = W + i * k
        grad_w_row = grad_W + i * k
        for entry in range(indptr[i], indptr[i + 1]):
            j = indices[entry]
            h_row = HT + j * k
            grad_h_row = grad_HT + j * k
            r = 0
            for c in range(k):
                r = r + w_row[c] * h_row[c]
            r = r - values[entry]
            if term == NULL:
                sse += <double>r * r
            elif floating is float:
                sse += fastgd_entry_loss_term_f32(term, entry, r, &r)
            else:
                sse += fastgd_entry_loss_term_f64(term, entry, r, &r)
            for c in range(k):
                grad_w_row[c] += r * h_row[c]
                grad_h_row[c] += r * w_row[c]
    loss = fastgd_loss_value_and_scale(loss_code, ENTRY_SQUARED if term == NULL else term.code,
                                       sse, total_weight, &scale)
    for i in range(m * k):
        grad_W[i] = grad_W[i] * <floating>scale
    for i in range(n * k):
        grad_HT[i] = grad_HT[i] * <floating>scale
    if l2 != 0:
        loss += 0.5 * l2 * (_sum_of_squares(W, m * k) + _sum_of_squares(HT, n * k))
    return loss


cdef void _step(floating* param, const floating* grad, floating* state, Py_ssize_t length,
                int optimizer, const UpdateSettings* settings) noexcept nogil:
    if optimizer == OPTIMIZER_ADAGRAD:
        if floating is double:
            fastgd_adagrad_f64(param, grad, state, length, settings)
        else:
            fastgd_adagrad_f32(param, grad, state, length, settings)
    else:
        if floating is double:
            fastgd_sgd_f64(param, grad, state, length, settings)
        else:
            fastgd_sgd_f32(param, grad, state, length, settings)


def run_iterations(const index_t[::1] indptr, const index_t[::1] indices,
                   const floating[::1] values, floating[:, ::1] W, floating[:, ::1] HT,
                   floating[:, ::1] state_W, floating[:, ::1] state_HT,
                   floating[:, ::1] grad_W, floating[:, ::1] grad_HT, double[::1] history,
                   Py_ssize_t n_steps, int loss_code, double l2, int optimizer, double lr,
                   double eps, int eps_mode, double momentum, bint nesterov,
                   double lower_bound, double tol, int entry_loss=ENTRY_SQUARED,
                   double delta=0.0, const floating[::1] weights=None,
                   double total_weight=-1.0):
    """Up to n_steps steps from (W, HT), in place; returns (steps run, status).

    history[0] receives the loss at the starting point and history[s] the loss after
    step s. The run stops early when a loss is not finite (STATUS_NONFINITE) or when
    ``|loss_s - loss_(s-1)| <= tol * |loss_(s-1)|`` (STATUS_CONVERGED; tol < 0 never).
    state_W and state_HT hold Adagrad's sums of squares or the momentum buffers (they
    start at 0: a first momentum step then uses the gradient itself, as torch.optim.SGD
    does); grad_W and grad_HT are scratch. The entry loss (losses.h) is entry_loss with
    delta, and the entries' weights (None: all 1) in plan order, of total total_weight
    (< 0: the number of entries). The Python layer has checked every shape and the
    settings, and that the entries' total weight is positive unless loss is "sse".
    """
    cdef Py_ssize_t m = W.shape[0], k = W.shape[1], n = HT.shape[0], step = 0
    cdef int status = STATUS_MAX_ITER
    cdef double loss
    cdef UpdateSettings settings
    # Data pointers, NULL for an empty array (nothing reads or writes through them then).
    cdef const index_t* entry_cols = &indices[0] if indices.shape[0] else NULL
    cdef const floating* entry_values = &values[0] if values.shape[0] else NULL
    cdef floating* w = &W[0, 0] if W.size else NULL
    cdef floating* ht = &HT[0, 0] if HT.size else NULL
    cdef floating* grad_w = &grad_W[0, 0] if grad_W.size else NULL
    cdef floating* grad_ht = &grad_HT[0, 0] if grad_HT.size else NULL
    cdef floating* state_w = &state_W[0, 0] if state_W.size else NULL
    cdef floating* state_ht = &state_HT[0, 0] if state_HT.size else NULL
    cdef fastgd_interrupt interrupt
    cdef fastgd_entry_loss loss_settings
    cdef const fastgd_entry_loss* term = NULL
    if weights is not None and weights.shape[0] != values.shape[0]:
        raise ValueError(f"weights must have {values.shape[0]} elements; got "
                         f"{weights.shape[0]}")
    if entry_loss != ENTRY_SQUARED or weights is not None:
        loss_settings.code = entry_loss
        loss_settings.delta = delta
        loss_settings.weights = &weights[0] if weights is not None and weights.shape[0] else NULL
        term = &loss_settings
    if total_weight < 0:
        total_weight = <double>indptr[m]
    fastgd_updates_follow(_dispatch)
    fastgd_interrupt_init(&interrupt)
    settings.rate = lr
    settings.eps = eps
    settings.weight_decay = l2
    settings.momentum = momentum
    settings.dampening = 0.0
    settings.lower_bound = lower_bound
    settings.eps_mode = eps_mode
    settings.maximize = 0
    settings.nesterov = nesterov
    settings.has_state = momentum != 0
    with nogil:
        loss = _loss_and_gradients(&indptr[0], entry_cols, entry_values, m, n, k, w, ht,
                                   grad_w, grad_ht, loss_code, term, total_weight, l2)
        history[0] = loss
        if not isfinite(loss):
            status = STATUS_NONFINITE
        while status == STATUS_MAX_ITER and step < n_steps:
            # Between two whole steps: W and HT are then at a step's end.
            if fastgd_should_stop(&interrupt, True):
                break
            if m * k:
                _step(w, grad_w, state_w, m * k, optimizer, &settings)
            if n * k:
                _step(ht, grad_ht, state_ht, n * k, optimizer, &settings)
            step += 1
            loss = _loss_and_gradients(&indptr[0], entry_cols, entry_values, m, n, k, w, ht,
                                       grad_w, grad_ht, loss_code, term, total_weight, l2)
            history[step] = loss
            if not isfinite(loss):
                status = STATUS_NONFINITE
            elif tol >= 0 and fabs(loss - history[step - 1]) <= tol * fabs(history[step - 1]):
                status = STATUS_CONVERGED
    fastgd_interrupt_raise(&interrupt)
    return step, status
