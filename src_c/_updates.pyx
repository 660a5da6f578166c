"""Fused in-place optimizer updates: the compiled kernels behind fastgd.adagrad_update
and fastgd.sgd_update.

One pass over every element, in the array's own precision, updating the parameter
and its state (Adagrad's sum of squares, SGD's momentum buffer) in place. A list of
arrays is one job: its elements are cut into equal contiguous ranges, one per thread,
that may span several arrays (one parallel region, not one per array). The Python
layer has validated every array (C-contiguous, aligned, native, one float dtype per
triple, params and states writeable, nothing aliased); this module reads their data
pointers directly.
"""

cimport numpy as cnp
from cython cimport floating
from cython.parallel cimport prange
from libc.math cimport sqrt, sqrtf
from libc.stdlib cimport free, malloc

cnp.import_array()


cdef enum:
    EPS_OUTSIDE = 0     # G += g^2; p -= clr g / (sqrt(G) + eps)     (PyTorch, Duchi et al.)
    EPS_INSIDE = 1      # G += g^2; p -= clr g / sqrt(G + eps), 0 where G == 0    (optax)
    EPS_ACCUMULATE = 2  # G += g^2 + eps; p -= clr g / sqrt(G)       (the autograd tutorial)


ctypedef struct ArraySlice:
    char* param
    char* grad
    char* state
    Py_ssize_t size
    bint is_double


ctypedef struct UpdateSettings:
    double rate            # Adagrad: the decayed rate clr; SGD: lr
    double eps
    double weight_decay
    double momentum
    double dampening
    double lower_bound     # -inf when there is none
    int eps_mode
    bint maximize
    bint nesterov
    bint has_state         # SGD: momentum buffers given


cdef inline floating _root(floating value) noexcept nogil:
    if floating is float:
        return sqrtf(value)
    else:
        return sqrt(value)


cdef inline floating _effective_grad(floating grad, floating param, floating sign,
                                     floating weight_decay, bint use_weight_decay) noexcept nogil:
    """PyTorch's order: maximize negates the gradient, then weight decay adds wd * p."""
    grad = sign * grad
    if use_weight_decay:
        grad = grad + weight_decay * param
    return grad


cdef inline floating _bounded(floating value, floating lower_bound) noexcept nogil:
    """max(value, lower_bound) that keeps NaN: a NaN parameter is not hidden."""
    return lower_bound if value < lower_bound else value


cdef void _adagrad_range(floating* param, const floating* grad, floating* accum,
                         Py_ssize_t begin, Py_ssize_t end,
                         const UpdateSettings* s) noexcept nogil:
    cdef floating rate = <floating>s.rate, eps = <floating>s.eps
    cdef floating weight_decay = <floating>s.weight_decay
    cdef floating lower_bound = <floating>s.lower_bound
    cdef floating sign = -1 if s.maximize else 1
    cdef bint use_weight_decay = s.weight_decay != 0
    cdef floating g, acc, p
    cdef Py_ssize_t i
    if s.eps_mode == EPS_OUTSIDE:
        for i in range(begin, end):
            p = param[i]
            g = _effective_grad(grad[i], p, sign, weight_decay, use_weight_decay)
            acc = accum[i] + g * g
            accum[i] = acc
            param[i] = _bounded(p + (-rate * g) / (_root(acc) + eps), lower_bound)
    elif s.eps_mode == EPS_INSIDE:
        for i in range(begin, end):
            p = param[i]
            g = _effective_grad(grad[i], p, sign, weight_decay, use_weight_decay)
            acc = accum[i] + g * g
            accum[i] = acc
            if acc > 0:
                p = p + (-rate * g) / _root(acc + eps)
            param[i] = _bounded(p, lower_bound)
    else:
        for i in range(begin, end):
            p = param[i]
            g = _effective_grad(grad[i], p, sign, weight_decay, use_weight_decay)
            acc = accum[i] + g * g + eps
            accum[i] = acc
            param[i] = _bounded(p + (-rate * g) / _root(acc), lower_bound)


cdef void _sgd_range(floating* param, const floating* grad, floating* velocity,
                     Py_ssize_t begin, Py_ssize_t end, const UpdateSettings* s) noexcept nogil:
    cdef floating lr = <floating>s.rate, momentum = <floating>s.momentum
    cdef floating keep = <floating>(1.0 - s.dampening)
    cdef floating weight_decay = <floating>s.weight_decay
    cdef floating lower_bound = <floating>s.lower_bound
    cdef floating sign = -1 if s.maximize else 1
    cdef bint use_weight_decay = s.weight_decay != 0
    cdef floating g, p, buffer
    cdef Py_ssize_t i
    if not s.has_state:
        for i in range(begin, end):
            p = param[i]
            g = _effective_grad(grad[i], p, sign, weight_decay, use_weight_decay)
            param[i] = _bounded(p + (-lr) * g, lower_bound)
    elif s.nesterov:
        for i in range(begin, end):
            p = param[i]
            g = _effective_grad(grad[i], p, sign, weight_decay, use_weight_decay)
            buffer = velocity[i] * momentum + keep * g
            velocity[i] = buffer
            param[i] = _bounded(p + (-lr) * (g + momentum * buffer), lower_bound)
    else:
        for i in range(begin, end):
            p = param[i]
            g = _effective_grad(grad[i], p, sign, weight_decay, use_weight_decay)
            buffer = velocity[i] * momentum + keep * g
            velocity[i] = buffer
            param[i] = _bounded(p + (-lr) * buffer, lower_bound)


cdef void _update_slice(const ArraySlice* piece, Py_ssize_t begin, Py_ssize_t end,
                        bint adagrad, const UpdateSettings* s) noexcept nogil:
    if piece.is_double:
        if adagrad:
            _adagrad_range(<double*>piece.param, <const double*>piece.grad,
                           <double*>piece.state, begin, end, s)
        else:
            _sgd_range(<double*>piece.param, <const double*>piece.grad,
                       <double*>piece.state, begin, end, s)
    else:
        if adagrad:
            _adagrad_range(<float*>piece.param, <const float*>piece.grad,
                           <float*>piece.state, begin, end, s)
        else:
            _sgd_range(<float*>piece.param, <const float*>piece.grad,
                       <float*>piece.state, begin, end, s)


cdef void _update_elements(const ArraySlice* slices, const Py_ssize_t* offsets,
                           Py_ssize_t n_slices, Py_ssize_t begin, Py_ssize_t end,
                           bint adagrad, const UpdateSettings* s) noexcept nogil:
    """Update global elements [begin, end) of the concatenated arrays."""
    cdef Py_ssize_t low = 0, high = n_slices, middle, k
    # The first array whose elements reach past begin (offsets[k + 1] > begin).
    while low < high:
        middle = (low + high) // 2
        if offsets[middle + 1] <= begin:
            low = middle + 1
        else:
            high = middle
    k = low
    while k < n_slices and offsets[k] < end:
        _update_slice(&slices[k], max(begin, offsets[k]) - offsets[k],
                      min(end, offsets[k + 1]) - offsets[k], adagrad, s)
        k += 1


cdef object _run(list params, list grads, list states, bint adagrad, UpdateSettings settings,
                 int n_threads, Py_ssize_t parallel_min_elements):
    cdef Py_ssize_t n_slices = len(params), k, total, chunk, begin, end
    cdef int thread
    cdef cnp.ndarray param
    cdef ArraySlice* slices = <ArraySlice*>malloc((n_slices + 1) * sizeof(ArraySlice))
    cdef Py_ssize_t* offsets = <Py_ssize_t*>malloc((n_slices + 1) * sizeof(Py_ssize_t))
    if slices == NULL or offsets == NULL:
        free(slices)
        free(offsets)
        raise MemoryError("fastgd: could not allocate the update's array table")
    try:
        offsets[0] = 0
        for k in range(n_slices):
            param = <cnp.ndarray>params[k]
            slices[k].param = <char*>cnp.PyArray_DATA(param)
            slices[k].grad = <char*>cnp.PyArray_DATA(<cnp.ndarray>grads[k])
            slices[k].state = (<char*>cnp.PyArray_DATA(<cnp.ndarray>states[k])
                               if states is not None else NULL)
            slices[k].size = cnp.PyArray_SIZE(param)
            slices[k].is_double = cnp.PyArray_TYPE(param) == cnp.NPY_DOUBLE
            offsets[k + 1] = offsets[k] + slices[k].size
        total = offsets[n_slices]
        if n_threads > 1 and total >= parallel_min_elements:
            chunk = (total + n_threads - 1) // n_threads
            with nogil:
                for thread in prange(n_threads, num_threads=n_threads, schedule="static"):
                    begin = thread * chunk
                    end = min(begin + chunk, total)
                    if begin < end:
                        _update_elements(slices, offsets, n_slices, begin, end, adagrad,
                                         &settings)
        else:
            with nogil:
                _update_elements(slices, offsets, n_slices, 0, total, adagrad, &settings)
    finally:
        free(slices)
        free(offsets)


def adagrad_update(list params, list grads, list accums, double rate, double eps,
                   int eps_mode, double weight_decay, bint maximize, double lower_bound,
                   int n_threads, Py_ssize_t parallel_min_elements):
    """Adagrad on validated lists of arrays (see fastgd.optim.adagrad_update)."""
    cdef UpdateSettings settings
    settings.rate = rate
    settings.eps = eps
    settings.eps_mode = eps_mode
    settings.weight_decay = weight_decay
    settings.maximize = maximize
    settings.lower_bound = lower_bound
    settings.momentum = 0.0
    settings.dampening = 0.0
    settings.nesterov = False
    settings.has_state = True
    _run(params, grads, accums, True, settings, n_threads, parallel_min_elements)


def sgd_update(list params, list grads, list velocities, double lr, double momentum,
               double dampening, bint nesterov, double weight_decay, bint maximize,
               double lower_bound, int n_threads, Py_ssize_t parallel_min_elements):
    """SGD with PyTorch's momentum and Nesterov semantics on validated lists of arrays.

    ``velocities`` is None for plain gradient descent (no momentum).
    """
    cdef UpdateSettings settings
    settings.rate = lr
    settings.eps = 0.0
    settings.eps_mode = EPS_OUTSIDE
    settings.weight_decay = weight_decay
    settings.maximize = maximize
    settings.lower_bound = lower_bound
    settings.momentum = momentum
    settings.dampening = dampening
    settings.nesterov = nesterov
    settings.has_state = velocities is not None
    _run(params, grads, velocities, False, settings, n_threads, parallel_min_elements)


def bandwidth_floor(floating[::1] param, const floating[::1] grad, floating[::1] accum):
    """For benchmarks: the least one pass can do, reading p, g, G and writing p and G
    (p += g; G += g). A fused update within a few percent of this runs at memory speed."""
    cdef Py_ssize_t i
    with nogil:
        for i in range(param.shape[0]):
            param[i] = param[i] + grad[i]
            accum[i] = accum[i] + grad[i]
