"""Fused in-place optimizer updates: the compiled kernels behind fastgd.adagrad_update
and fastgd.sgd_update.

One pass over every element, in the array's own precision, updating the parameter
and its state (Adagrad's sum of squares, SGD's momentum buffer) in place. A list of
arrays is one job: its elements are cut into equal contiguous ranges, one per thread,
that may span several arrays (one parallel region, not one per array). The Python
layer has validated every array (C-contiguous, aligned, native, one float dtype per
triple, params and states writeable, nothing aliased); this module reads their data
pointers directly. The element loops are C (update_loops.h), compiled per instruction-set
level and chosen at import (select_simd); every level gives the same bits.
"""

cimport numpy as cnp
import numpy as np
from cpython.float cimport PyFloat_AS_DOUBLE, PyFloat_CheckExact
from cpython.long cimport PyLong_AsLongAndOverflow, PyLong_CheckExact
from cython.parallel cimport prange
from libc.math cimport INFINITY, sqrt
from libc.stdint cimport int64_t, uint32_t, uintptr_t
from libc.stdlib cimport free, malloc
from libc.string cimport memset
from codes cimport EPS_ACCUMULATE, EPS_INSIDE, EPS_OUTSIDE
from cpython.pycapsule cimport PyCapsule_New
from update_loops cimport (
    DIVISION_AUTO,
    fastgd_adam_f32,
    fastgd_adam_f64,
    fastgd_rmsprop_f32,
    fastgd_rmsprop_f64,
    fastgd_adagrad_f32,
    fastgd_adagrad_f64,
    fastgd_bandwidth_floor_f32,
    fastgd_bandwidth_floor_f64,
    fastgd_fma_sqrt_lanes,
    fastgd_sgd_f32,
    fastgd_sgd_f64,
    fastgd_updates_select_division,
    fastgd_updates_select_level,
    fastgd_updates_share,
)
from update_settings cimport UPDATE_DISPATCH_CAPSULE, UpdateDispatch, UpdateSettings

cdef extern from "openmp_runtime.h":
    int fastgd_omp_max_threads() noexcept nogil

cnp.import_array()


ctypedef struct ArraySlice:
    char* param
    char* grad
    char* state   # Adagrad's sums, SGD's velocities; Adam's exp_avg; RMSprop's square_avg
    char* state1  # Adam's exp_avg_sq; RMSprop's momentum buffer (NULL when unused)
    char* state2  # Adam's max_exp_avg_sq (amsgrad); RMSprop's grad_avg (centered)
    Py_ssize_t size
    bint is_double


# The update loops' dispatch state handed to _solvers (UPDATE_DISPATCH, below).
cdef UpdateDispatch _dispatch

# The update an ArraySlice table is run with (SGD and ADAGRAD are a bint's False and True,
# as the fast path passes them).
cdef enum:
    KIND_SGD = 0
    KIND_ADAGRAD = 1
    KIND_ADAM = 2
    KIND_RMSPROP = 3


def select_simd(int highest):
    """Run the update loops at the best level this CPU supports, at most level code
    `highest` (fastgd._codes.SIMD_LEVELS; these loops have no hand-written vectors, so
    "scalar" runs "baseline"). Every level gives bitwise the same results. Returns the level
    code chosen."""
    cdef int chosen = fastgd_updates_select_level(highest)
    fastgd_updates_share(&_dispatch)
    return chosen


DIVISIONS = ("divider", "divider+fma")

# The loops' dispatch state for the modules that step with their own copy (_solvers):
# shared again by select_simd and select_division.
fastgd_updates_share(&_dispatch)
UPDATE_DISPATCH = PyCapsule_New(&_dispatch, UPDATE_DISPATCH_CAPSULE, NULL)


def select_division(str method):
    """Take the float64 Adagrad roots from the divider, or two of every three vectors'
    from the FMA units ("divider+fma", avx512 level only: fma_sqrt.h), or let the CPU
    decide ("auto"). The same bits every way. Returns the method now used."""
    asked = DIVISION_AUTO if method == "auto" else DIVISIONS.index(method)
    cdef int chosen = fastgd_updates_select_division(asked)
    fastgd_updates_share(&_dispatch)
    return DIVISIONS[chosen]


def fma_sqrt_lanes(const double[::1] a, const double[::1] root_candidate):
    """For the tests, fma_sqrt.h lane by lane: (root, vouched, corrected_root), the roots
    of a it computes, whether it vouches for each, and its corrections of the candidates
    (within one ulp of sqrt(a)). None where the CPU lacks AVX-512."""
    cdef Py_ssize_t n = a.shape[0]
    if root_candidate.shape[0] != n:
        raise ValueError(f"root_candidate must have the length of a ({n}); "
                         f"got {root_candidate.shape[0]}")
    results = [np.ones(n), np.zeros(n, np.uint8), np.ones(n)]
    cdef double[::1] root = results[0], corrected_root = results[2]
    cdef unsigned char[::1] vouched = results[1]
    if n > 0 and not fastgd_fma_sqrt_lanes(&a[0], &root_candidate[0], n, &root[0],
                                           &vouched[0], &corrected_root[0]):
        return None
    results[1] = results[1].astype(bool)
    return tuple(results)


cdef inline char* _at(char* state, Py_ssize_t begin, Py_ssize_t itemsize) noexcept nogil:
    return state + begin * itemsize if state != NULL else NULL


cdef void _update_slice(const ArraySlice* piece, Py_ssize_t begin, Py_ssize_t end,
                        int kind, const UpdateSettings* s) noexcept nogil:
    """Update elements [begin, end) of one array (its states may be NULL where unused)."""
    cdef Py_ssize_t n = end - begin
    cdef Py_ssize_t itemsize = 8 if piece.is_double else 4
    cdef char* state0 = _at(piece.state, begin, itemsize)
    cdef char* state1 = _at(piece.state1, begin, itemsize)
    cdef char* state2 = _at(piece.state2, begin, itemsize)
    if kind == KIND_ADAM:
        if piece.is_double:
            fastgd_adam_f64(<double*>piece.param + begin, <const double*>piece.grad + begin,
                            <double*>state0, <double*>state1, <double*>state2, n, s)
        else:
            fastgd_adam_f32(<float*>piece.param + begin, <const float*>piece.grad + begin,
                            <float*>state0, <float*>state1, <float*>state2, n, s)
        return
    if kind == KIND_RMSPROP:
        if piece.is_double:
            fastgd_rmsprop_f64(<double*>piece.param + begin,
                               <const double*>piece.grad + begin, <double*>state0,
                               <double*>state1, <double*>state2, n, s)
        else:
            fastgd_rmsprop_f32(<float*>piece.param + begin, <const float*>piece.grad + begin,
                               <float*>state0, <float*>state1, <float*>state2, n, s)
        return
    if piece.is_double:
        if kind == KIND_ADAGRAD:
            fastgd_adagrad_f64(<double*>piece.param + begin, <const double*>piece.grad + begin,
                               <double*>piece.state + begin, n, s)
        else:
            fastgd_sgd_f64(<double*>piece.param + begin, <const double*>piece.grad + begin,
                           <double*>piece.state + begin if piece.state != NULL else NULL,
                           n, s)
    else:
        if kind == KIND_ADAGRAD:
            fastgd_adagrad_f32(<float*>piece.param + begin, <const float*>piece.grad + begin,
                               <float*>piece.state + begin, n, s)
        else:
            fastgd_sgd_f32(<float*>piece.param + begin, <const float*>piece.grad + begin,
                           <float*>piece.state + begin if piece.state != NULL else NULL,
                           n, s)


cdef void _update_elements(const ArraySlice* slices, const Py_ssize_t* offsets,
                           Py_ssize_t n_slices, Py_ssize_t begin, Py_ssize_t end,
                           int kind, const UpdateSettings* s) noexcept nogil:
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
                      min(end, offsets[k + 1]) - offsets[k], kind, s)
        k += 1


cdef void _run_slices(const ArraySlice* slices, const Py_ssize_t* offsets,
                      Py_ssize_t n_slices, int kind, const UpdateSettings* settings,
                      int n_threads, Py_ssize_t parallel_min_elements) noexcept nogil:
    """Update all elements: one parallel region over equal ranges, or one serial pass."""
    cdef Py_ssize_t total = offsets[n_slices], chunk, begin, end
    cdef int thread
    if n_threads > 1 and total >= parallel_min_elements:
        chunk = (total + n_threads - 1) // n_threads
        for thread in prange(n_threads, num_threads=n_threads, schedule="static"):
            begin = thread * chunk
            end = min(begin + chunk, total)
            if begin < end:
                _update_elements(slices, offsets, n_slices, begin, end, kind, settings)
    else:
        _update_elements(slices, offsets, n_slices, 0, total, kind, settings)


cdef inline char* _data_or_null(list arrays, Py_ssize_t k):
    return <char*>cnp.PyArray_DATA(<cnp.ndarray>arrays[k]) if arrays is not None else NULL


cdef object _run(list params, list grads, list states, int kind, UpdateSettings settings,
                 int n_threads, Py_ssize_t parallel_min_elements, list states1=None,
                 list states2=None):
    cdef Py_ssize_t n_slices = len(params), k
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
            slices[k].state = _data_or_null(states, k)
            slices[k].state1 = _data_or_null(states1, k)
            slices[k].state2 = _data_or_null(states2, k)
            slices[k].size = cnp.PyArray_SIZE(param)
            slices[k].is_double = cnp.PyArray_TYPE(param) == cnp.NPY_DOUBLE
            offsets[k + 1] = offsets[k] + slices[k].size
        with nogil:
            _run_slices(slices, offsets, n_slices, kind, &settings, n_threads,
                        parallel_min_elements)
    finally:
        free(slices)
        free(offsets)


cdef inline void _count_step(object counter):
    """One more step in an optimizer's step counter (an int64 ndarray of one element made
    by fastgd.updates), counted in the same compiled call as the update, so that a
    KeyboardInterrupt lands either before both or after both."""
    if counter is not None:
        (<int64_t*>cnp.PyArray_DATA(<cnp.ndarray>counter))[0] += 1


def adagrad_update(list params, list grads, list accums, double rate, double eps,
                   int eps_mode, double weight_decay, bint maximize, double lower_bound,
                   int n_threads, Py_ssize_t parallel_min_elements, counter=None):
    """Adagrad on validated lists of arrays (see fastgd.updates.adagrad_update); counts the
    step in ``counter`` when given."""
    cdef UpdateSettings settings
    if accums is None:
        raise TypeError("accums must be a list of arrays (Adagrad's sums of squares); got None")
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
    _run(params, grads, accums, KIND_ADAGRAD, settings, n_threads, parallel_min_elements)
    _count_step(counter)


def sgd_update(list params, list grads, list velocities, double lr, double momentum,
               double dampening, bint nesterov, double weight_decay, bint maximize,
               double lower_bound, int n_threads, Py_ssize_t parallel_min_elements,
               counter=None):
    """SGD with PyTorch's momentum and Nesterov semantics on validated lists of arrays.

    ``velocities`` is None for plain gradient descent (no momentum). Counts the step in
    ``counter`` when given.
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
    _run(params, grads, velocities, KIND_SGD, settings, n_threads, parallel_min_elements)
    _count_step(counter)


cdef UpdateSettings _cleared_settings(double lr, double eps, double weight_decay,
                                      bint maximize, double lower_bound):
    cdef UpdateSettings settings
    memset(&settings, 0, sizeof(settings))
    settings.rate = lr
    settings.eps = eps
    settings.eps_mode = EPS_OUTSIDE
    settings.weight_decay = weight_decay
    settings.maximize = maximize
    settings.lower_bound = lower_bound
    return settings


def adam_update(list params, list grads, list exp_avgs, list exp_avg_sqs,
                list max_exp_avg_sqs, double lr, double beta1, double beta2, double eps,
                double weight_decay, bint decoupled, bint amsgrad, bint maximize,
                long long step, double lower_bound, int n_threads,
                Py_ssize_t parallel_min_elements, counter=None):
    """Adam (AdamW with ``decoupled``) on validated lists of arrays at step ``step`` (the
    1-based step the bias corrections use; see fastgd.updates.adam_update); counts the step
    in ``counter`` when given."""
    cdef UpdateSettings settings = _cleared_settings(lr, eps, weight_decay, maximize,
                                                     lower_bound)
    if exp_avgs is None or exp_avg_sqs is None or (amsgrad and max_exp_avg_sqs is None):
        raise TypeError("adam_update needs exp_avgs, exp_avg_sqs (and max_exp_avg_sqs with "
                        "amsgrad) as lists of arrays")
    settings.rate = lr / (1.0 - beta1 ** step)
    settings.beta1 = beta1
    settings.beta2 = beta2
    settings.bias_correction2_sqrt = sqrt(1.0 - beta2 ** step)
    settings.decoupled = decoupled
    settings.decay = 1.0 - lr * weight_decay
    settings.amsgrad = amsgrad
    _run(params, grads, exp_avgs, KIND_ADAM, settings, n_threads, parallel_min_elements,
         exp_avg_sqs, max_exp_avg_sqs if amsgrad else None)
    _count_step(counter)


def rmsprop_update(list params, list grads, list square_avgs, list momentum_buffers,
                   list grad_avgs, double lr, double alpha, double eps, double weight_decay,
                   double momentum, bint centered, bint maximize, double lower_bound,
                   int n_threads, Py_ssize_t parallel_min_elements, counter=None):
    """RMSprop on validated lists of arrays (see fastgd.updates.rmsprop_update);
    ``momentum_buffers`` is used when momentum > 0, ``grad_avgs`` when centered. Counts the
    step in ``counter`` when given."""
    cdef UpdateSettings settings = _cleared_settings(lr, eps, weight_decay, maximize,
                                                     lower_bound)
    if (square_avgs is None or (momentum > 0 and momentum_buffers is None)
            or (centered and grad_avgs is None)):
        raise TypeError("rmsprop_update needs square_avgs (and momentum_buffers with momentum, "
                        "grad_avgs when centered) as lists of arrays")
    settings.beta2 = alpha
    settings.momentum = momentum
    settings.centered = centered
    _run(params, grads, square_avgs, KIND_RMSPROP, settings, n_threads,
         parallel_min_elements, momentum_buffers if momentum > 0 else None,
         grad_avgs if centered else None)
    _count_step(counter)


# ---------------------------------------------------------------------------------------
# The fast path: the whole call in C for the common case, so that a small update costs
# about a microsecond and a list costs tens of nanoseconds per array. It accepts exact
# ndarrays (C-contiguous, aligned, native, float32/float64, matching shapes) and exact
# Python floats, ints and bools in range, and refuses aliasing by sorting the arrays'
# byte ranges; for anything else it returns False having modified nothing, and
# fastgd.updates converts the arguments or raises its error.

ctypedef struct ByteRange:
    uintptr_t start
    uintptr_t end_written  # the end address, its lowest bit set if the array is written


cdef inline uintptr_t _range_end(ByteRange r) noexcept nogil:
    return r.end_written & ~(<uintptr_t>1)


cdef inline bint _range_written(ByteRange r) noexcept nogil:
    return r.end_written & 1


cdef int _default_cap = 1
cdef int _available_cpus = 1
cdef int _max_threads = 1


def set_thread_counts(int default_cap, int available_cpus, int max_threads):
    """The counts the fast path resolves n_threads by, as fastgd._threads does: None is
    omp_get_max_threads() (read at every call, so that threadpoolctl's limits hold) capped
    at ``default_cap``; a negative n_threads counts back from ``available_cpus`` (-1 =
    all); more than ``max_threads`` goes to the general path, which raises."""
    global _default_cap, _available_cpus, _max_threads
    _default_cap = max(1, default_cap)
    _available_cpus = max(1, available_cpus)
    _max_threads = max(1, max_threads)


cdef enum:
    # Up to this many byte ranges are sorted by insertion: the radix sort's passes over
    # its counts cost more than the whole update of a small array.
    INSERTION_SORT_MAX = 48
    # Up to this many arrays per call, the fast path's bookkeeping lives on the stack.
    STACK_ARRAYS = 16
    # The byte ranges of one array's update: its parameter, gradient and up to 3 states.
    MAX_RANGES_PER_ARRAY = 5
    # The radix sort's digits: at most 11 bits of an address (the counts of a pass, 8 KiB,
    # stay in L1), fewer for fewer ranges.
    RADIX_BITS_MAX = 11
    # The most passes: ceil(64 / RADIX_BITS_MAX), for addresses of up to 64 bits (written
    # out: a constant expression may not divide when the debug build turns cdivision off).
    RADIX_PASSES_MAX = 6
    # Room for the counts of every pass: the most passes of the longest digits (shorter
    # digits take fewer counts in all).
    RADIX_COUNTS = RADIX_PASSES_MAX << RADIX_BITS_MAX


cdef ByteRange* _sort_ranges(ByteRange* ranges, ByteRange* scratch, Py_ssize_t n,
                             uint32_t* counts) noexcept nogil:
    """Sort by start address: by insertion for a few ranges; otherwise a stable LSD radix
    sort over only the bits in which some addresses differ (the arrays of a list lie
    within a few MiB of each other: about 20 bits), in digits of at most RADIX_BITS_MAX
    bits, fewer for fewer ranges, every pass's counts made in one pass over the keys
    (counts: room for RADIX_COUNTS); several times faster than qsort for the thousands
    of ranges of a list. Returns the sorted buffer (ranges or scratch)."""
    cdef int n_passes, pass_number, shift, bits = 4, low = 0
    cdef int high = 8 * sizeof(uintptr_t) - 1
    cdef Py_ssize_t k, running
    cdef uint32_t count, position, digits
    cdef uint32_t* pass_counts
    cdef uintptr_t differing = 0, key, mask
    cdef ByteRange* source = ranges
    cdef ByteRange* target = scratch
    cdef ByteRange* swap
    cdef ByteRange moving
    if n <= INSERTION_SORT_MAX:
        for k in range(1, n):
            moving = ranges[k]
            running = k
            while running > 0 and ranges[running - 1].start > moving.start:
                ranges[running] = ranges[running - 1]
                running -= 1
            ranges[running] = moving
        return ranges
    for k in range(1, n):
        differing |= ranges[k].start ^ ranges[0].start
    if differing == 0:
        return ranges
    while not (differing >> low) & 1:
        low += 1
    while not (differing >> high) & 1:
        high -= 1
    # 2**bits counts to clear and add up per pass, against n ranges to move.
    while bits < RADIX_BITS_MAX and (<Py_ssize_t>1 << bits) < n:
        bits += 1
    n_passes = (high - low + bits) // bits
    bits = (high - low + n_passes) // n_passes  # the same passes, digits as even as can be
    digits = 1u << bits
    mask = digits - 1
    memset(counts, 0, n_passes * digits * sizeof(uint32_t))
    for k in range(n):
        key = ranges[k].start >> low
        for pass_number in range(n_passes):
            counts[pass_number * digits + ((key >> (pass_number * bits)) & mask)] += 1
    for pass_number in range(n_passes):
        shift = low + pass_number * bits
        pass_counts = counts + pass_number * digits
        position = 0
        for k in range(digits):
            count = pass_counts[k]
            pass_counts[k] = position
            position += count
        for k in range(n):
            key = (source[k].start >> shift) & mask
            target[pass_counts[key]] = source[k]
            pass_counts[key] += 1
        swap = source
        source = target
        target = swap
    return source


cdef bint _any_overlap(ByteRange* ranges, ByteRange* scratch, Py_ssize_t n,
                       uint32_t* counts) noexcept nogil:
    """Does an array written in place overlap any other array of the call?"""
    cdef uintptr_t furthest_any = 0, furthest_written = 0
    cdef Py_ssize_t k
    if n == 0:
        return False
    ranges = _sort_ranges(ranges, scratch, n, counts)
    for k in range(n):
        if ranges[k].start < (furthest_any if _range_written(ranges[k]) else furthest_written):
            return True
        furthest_any = max(furthest_any, _range_end(ranges[k]))
        if _range_written(ranges[k]):
            furthest_written = max(furthest_written, _range_end(ranges[k]))
    return False


def overlapping(list written, list read):
    """Whether an array of ``written`` (updated in place) shares bytes with another array
    of ``written`` or ``read``: the aliasing check of fastgd.updates' general path, in C
    (it names the arrays itself when this says they overlap). Every array must be a
    C-contiguous, aligned ndarray (the caller has checked)."""
    cdef Py_ssize_t n = len(written) + len(read), n_ranges = 0
    cdef ByteRange* ranges = <ByteRange*>malloc((2 * n + 2) * sizeof(ByteRange))
    cdef uint32_t* counts = <uint32_t*>malloc(RADIX_COUNTS * sizeof(uint32_t))
    cdef cnp.ndarray array
    if ranges == NULL or counts == NULL:
        free(ranges)
        free(counts)
        raise MemoryError("fastgd: could not allocate the ranges to compare")
    try:
        for array in written:
            n_ranges = _add_range(ranges, n_ranges, <char*>cnp.PyArray_DATA(array),
                                  cnp.PyArray_NBYTES(array), True)
        for array in read:
            n_ranges = _add_range(ranges, n_ranges, <char*>cnp.PyArray_DATA(array),
                                  cnp.PyArray_NBYTES(array), False)
        return _any_overlap(ranges, ranges + n + 1, n_ranges, counts)
    finally:
        free(ranges)
        free(counts)


def sorted_starts(starts):
    """For the tests: the starts of byte ranges (integers that fit a pointer) in the order
    the aliasing check's sort (_sort_ranges) puts them."""
    cdef Py_ssize_t n = len(starts), k
    cdef ByteRange* ranges = <ByteRange*>malloc((2 * n + 1) * sizeof(ByteRange))
    cdef uint32_t* counts = <uint32_t*>malloc(RADIX_COUNTS * sizeof(uint32_t))
    cdef ByteRange* ordered
    if ranges == NULL or counts == NULL:
        free(ranges)
        free(counts)
        raise MemoryError("fastgd: could not allocate the ranges to sort")
    try:
        for k in range(n):
            ranges[k].start = <uintptr_t>starts[k]
            ranges[k].end_written = 0
        ordered = _sort_ranges(ranges, ranges + n, n, counts)
        return [ordered[k].start for k in range(n)]
    finally:
        free(ranges)
        free(counts)


cdef inline Py_ssize_t _add_range(ByteRange* ranges, Py_ssize_t n_ranges, char* data,
                                  Py_ssize_t nbytes, bint written) noexcept:
    """Add the bytes [data, data + nbytes) of an aligned array (so the end is even), if
    there are any: an empty array overlaps nothing."""
    if nbytes == 0:
        return n_ranges
    ranges[n_ranges].start = <uintptr_t>data
    ranges[n_ranges].end_written = (<uintptr_t>data + nbytes) | written
    return n_ranges + 1


cdef inline bint _plain_float(object value, double* out, double maximum) noexcept:
    """An exact Python float in [0, maximum] and finite (so not NaN, not inf), as
    _validation.check_real accepts."""
    if not PyFloat_CheckExact(value):
        return False
    out[0] = PyFloat_AS_DOUBLE(value)
    return 0 <= out[0] <= maximum and out[0] != INFINITY


cdef inline bint _plain_bool(object value, int* out) noexcept:
    if value is True or value is False:
        out[0] = value is True
        return True
    return False


cdef inline bint _plain_bound(object value, double* out) noexcept:
    if value is None:
        out[0] = -INFINITY
        return True
    if not PyFloat_CheckExact(value):
        return False
    out[0] = PyFloat_AS_DOUBLE(value)
    return out[0] == out[0]


cdef inline bint _plain_threads(object value, int* out) noexcept:
    cdef long count
    if value is None:
        out[0] = max(1, min(fastgd_omp_max_threads(), _default_cap))
        return True
    cdef int overflow
    if not PyLong_CheckExact(value):
        return False
    count = PyLong_AsLongAndOverflow(value, &overflow)
    if overflow:  # the general path says what is wrong, or takes it (-2**70: 1 thread)
        return False
    if count < 0 and count >= -_max_threads:
        count = max(1, _available_cpus + 1 + count)  # -1 = all, -2 = all but one, ...
    if count < 1 or count > _max_threads:
        return False
    out[0] = <int>count
    return True


def fast_path_threads(n_threads):
    """For the tests: the thread count the fast path resolves ``n_threads`` to, None where
    it leaves the value to the general path."""
    cdef int count
    return count if _plain_threads(n_threads, &count) else None


cdef inline bint _plain_array(object value, bint writeable) noexcept:
    cdef cnp.ndarray array
    if not cnp.PyArray_CheckExact(value):
        return False
    array = <cnp.ndarray>value
    if cnp.PyArray_TYPE(array) != cnp.NPY_DOUBLE and cnp.PyArray_TYPE(array) != cnp.NPY_FLOAT:
        return False
    if writeable:
        return cnp.PyArray_ISCARRAY(array) and cnp.PyArray_ISNOTSWAPPED(array)
    return cnp.PyArray_ISCARRAY_RO(array) and cnp.PyArray_ISNOTSWAPPED(array)


cdef inline bint _same_layout(cnp.ndarray a, cnp.ndarray b) noexcept:
    """The same dtype and shape (compared here: NumPy's SAMESHAPE is a call per array)."""
    cdef int axis, ndim = cnp.PyArray_NDIM(a)
    cdef cnp.npy_intp* a_dims = cnp.PyArray_DIMS(a)
    cdef cnp.npy_intp* b_dims = cnp.PyArray_DIMS(b)
    if cnp.PyArray_TYPE(a) != cnp.PyArray_TYPE(b) or cnp.PyArray_NDIM(b) != ndim:
        return False
    for axis in range(ndim):
        if a_dims[axis] != b_dims[axis]:
            return False
    return True


cdef inline Py_ssize_t _size(cnp.ndarray a) noexcept:
    """The number of elements (NumPy's PyArray_SIZE is a call per array)."""
    cdef int axis
    cdef Py_ssize_t size = 1
    cdef cnp.npy_intp* dims = cnp.PyArray_DIMS(a)
    for axis in range(cnp.PyArray_NDIM(a)):
        size *= dims[axis]
    return size


cdef inline object _as_tuple(object values, Py_ssize_t n):
    """A list or tuple of n items as a tuple (which holds a reference to each while the GIL
    is released, so that another thread emptying the list cannot free an array being
    written); None for anything else."""
    if (type(values) is not list and type(values) is not tuple) or len(values) != n:
        return None
    return tuple(values)


cdef bint _fast_run(object params, object grads, object states, int kind,
                    UpdateSettings* settings, int n_threads,
                    Py_ssize_t parallel_min_elements, object states1=None,
                    object states2=None):
    """Gather and check the arrays in C and run the update of ``kind`` with up to three
    state lists (None where unused, as ArraySlice's state, state1, state2); False (nothing
    modified) when an argument needs the Python layer."""
    cdef bint single = cnp.PyArray_CheckExact(params)
    cdef object state_lists = [states, states1, states2]
    cdef bint present[3]
    cdef char* state_data[3]
    cdef int slot, n_states = 0
    cdef Py_ssize_t n, k, n_ranges, nbytes, ranges_per_array
    cdef object param, grad, state
    cdef ArraySlice* slices
    cdef Py_ssize_t* offsets
    cdef ByteRange* ranges
    cdef uint32_t* counts = NULL
    cdef ArraySlice stack_slices[STACK_ARRAYS + 1]
    cdef Py_ssize_t stack_offsets[STACK_ARRAYS + 1]
    cdef ByteRange stack_ranges[2 * MAX_RANGES_PER_ARRAY * STACK_ARRAYS + 2]
    cdef bint on_heap
    cdef bint ok = True
    for slot in range(3):
        present[slot] = state_lists[slot] is not None
        n_states += present[slot]
    ranges_per_array = 2 + n_states
    if single:
        n = 1
    elif type(params) is list or type(params) is tuple:
        params = tuple(params)
        n = len(params)
        grads = _as_tuple(grads, n)
        if grads is None:
            return False
        for slot in range(3):
            if present[slot]:
                state_lists[slot] = _as_tuple(state_lists[slot], n)
                if state_lists[slot] is None:
                    return False
    else:
        return False
    # ranges_per_array ranges per array, and as much again as the radix sort's scratch
    # (and its counts: more ranges than the stack holds are more than INSERTION_SORT_MAX).
    on_heap = n > STACK_ARRAYS
    if on_heap:
        slices = <ArraySlice*>malloc((n + 1) * sizeof(ArraySlice))
        offsets = <Py_ssize_t*>malloc((n + 1) * sizeof(Py_ssize_t))
        ranges = <ByteRange*>malloc((2 * ranges_per_array * n + 2) * sizeof(ByteRange))
        counts = <uint32_t*>malloc(RADIX_COUNTS * sizeof(uint32_t))
        if slices == NULL or offsets == NULL or ranges == NULL or counts == NULL:
            free(slices)
            free(offsets)
            free(ranges)
            free(counts)
            return False
    else:
        slices = stack_slices
        offsets = stack_offsets
        ranges = stack_ranges
    try:
        offsets[0] = 0
        n_ranges = 0
        for k in range(n):
            if single:
                param, grad = params, grads
            else:
                param = params[k]
                grad = grads[k]
            if not (_plain_array(param, True) and _plain_array(grad, False)
                    and _same_layout(<cnp.ndarray>param, <cnp.ndarray>grad)):
                ok = False
                break
            for slot in range(3):
                state_data[slot] = NULL
                if not present[slot]:
                    continue
                state = state_lists[slot] if single else state_lists[slot][k]
                if not (_plain_array(state, True)
                        and _same_layout(<cnp.ndarray>param, <cnp.ndarray>state)):
                    ok = False
                    break
                state_data[slot] = <char*>cnp.PyArray_DATA(<cnp.ndarray>state)
            if not ok:
                break
            slices[k].param = <char*>cnp.PyArray_DATA(<cnp.ndarray>param)
            slices[k].grad = <char*>cnp.PyArray_DATA(<cnp.ndarray>grad)
            slices[k].state = state_data[0]
            slices[k].state1 = state_data[1]
            slices[k].state2 = state_data[2]
            slices[k].size = _size(<cnp.ndarray>param)
            slices[k].is_double = cnp.PyArray_TYPE(<cnp.ndarray>param) == cnp.NPY_DOUBLE
            offsets[k + 1] = offsets[k] + slices[k].size
            nbytes = slices[k].size * (8 if slices[k].is_double else 4)
            n_ranges = _add_range(ranges, n_ranges, slices[k].param, nbytes, True)
            n_ranges = _add_range(ranges, n_ranges, slices[k].grad, nbytes, False)
            for slot in range(3):
                if present[slot]:
                    n_ranges = _add_range(ranges, n_ranges, state_data[slot], nbytes, True)
        if ok:
            with nogil:
                ok = not _any_overlap(ranges, ranges + ranges_per_array * n + 1, n_ranges,
                                      counts)
                if ok:
                    _run_slices(slices, offsets, n, kind, settings, n_threads,
                                parallel_min_elements)
    finally:
        if on_heap:
            free(slices)
            free(offsets)
            free(ranges)
            free(counts)
    return ok


cdef inline bint _fast_step(object step, object counter, long* out) noexcept:
    """The 1-based step: ``step``, an exact int >= 1, or None with an optimizer's counter
    (the step after the counted ones)."""
    cdef int overflow = 0
    if step is None and counter is not None:
        out[0] = (<int64_t*>cnp.PyArray_DATA(<cnp.ndarray>counter))[0] + 1
    elif PyLong_CheckExact(step):
        out[0] = PyLong_AsLongAndOverflow(step, &overflow)
    else:
        return False
    return not overflow and out[0] >= 1


def adagrad_fast(params, grads, accums, lr, eps, eps_mode, step, lr_decay, weight_decay,
                 maximize, lower_bound, n_threads, Py_ssize_t parallel_min_elements,
                 counter=None):
    """fastgd.adagrad_update's fast path: True when the update was applied (and counted in
    ``counter``, when given). ``step`` None with a counter: the step after the counted
    ones (an optimizer's)."""
    cdef UpdateSettings settings
    cdef double lr_value, decay
    cdef long step_value
    cdef int threads
    if not (_plain_float(lr, &lr_value, INFINITY) and _plain_float(eps, &settings.eps, INFINITY)
            and _plain_float(lr_decay, &decay, INFINITY)
            and _plain_float(weight_decay, &settings.weight_decay, INFINITY)
            and _plain_bool(maximize, &settings.maximize)
            and _plain_bound(lower_bound, &settings.lower_bound)
            and _plain_threads(n_threads, &threads)):
        return False
    # Adagrad always has its sums of squares: None is the general path's TypeError.
    if accums is None:
        return False
    if not _fast_step(step, counter, &step_value):
        return False
    if eps_mode == "outside":
        settings.eps_mode = EPS_OUTSIDE
    elif eps_mode == "inside":
        settings.eps_mode = EPS_INSIDE
    elif eps_mode == "accumulate":
        settings.eps_mode = EPS_ACCUMULATE
    else:
        return False
    settings.rate = lr_value / (1.0 + (step_value - 1) * decay)
    settings.momentum = 0.0
    settings.dampening = 0.0
    settings.nesterov = False
    settings.has_state = True
    if not _fast_run(params, grads, accums, KIND_ADAGRAD, &settings, threads,
                     parallel_min_elements):
        return False
    _count_step(counter)
    return True


def sgd_fast(params, grads, velocities, lr, momentum, nesterov, dampening, weight_decay,
             maximize, lower_bound, n_threads, Py_ssize_t parallel_min_elements,
             counter=None):
    """fastgd.sgd_update's fast path: True when the update was applied (and counted in
    ``counter``, when given). With a counter (an optimizer's) at 0 and momentum buffers,
    the first buffer is the gradient itself (no dampening), as in torch.optim.SGD."""
    cdef UpdateSettings settings
    cdef int threads
    if not (_plain_float(lr, &settings.rate, INFINITY)
            and _plain_float(momentum, &settings.momentum, INFINITY)
            and _plain_float(dampening, &settings.dampening, 1.0)
            and _plain_float(weight_decay, &settings.weight_decay, INFINITY)
            and _plain_bool(nesterov, &settings.nesterov)
            and _plain_bool(maximize, &settings.maximize)
            and _plain_bound(lower_bound, &settings.lower_bound)
            and _plain_threads(n_threads, &threads)):
        return False
    if settings.nesterov and (settings.momentum <= 0 or settings.dampening != 0):
        return False
    # Momentum needs buffers; buffers without momentum are left to the Python layer.
    if (settings.momentum != 0) != (velocities is not None):
        return False
    if (counter is not None and velocities is not None
            and (<int64_t*>cnp.PyArray_DATA(<cnp.ndarray>counter))[0] == 0):
        settings.dampening = 0.0
    settings.eps = 0.0
    settings.eps_mode = EPS_OUTSIDE
    settings.has_state = velocities is not None
    if not _fast_run(params, grads, velocities, KIND_SGD, &settings, threads,
                     parallel_min_elements):
        return False
    _count_step(counter)
    return True


# Below 1, as betas and RMSprop's alpha must be (the largest double below 1).
cdef double BELOW_ONE = 1.0 - 2.0 ** -53


def adam_fast(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, lr, betas, eps,
              weight_decay, decoupled, amsgrad, maximize, step, lower_bound, n_threads,
              Py_ssize_t parallel_min_elements, counter=None):
    """fastgd.adam_update's fast path: True when the update was applied (and counted in
    ``counter``, when given). ``step`` None with a counter: the step after the counted
    ones (an optimizer's)."""
    cdef UpdateSettings settings = _cleared_settings(0.0, 0.0, 0.0, False, -INFINITY)
    cdef double lr_value, beta1, beta2
    cdef long step_value
    cdef int threads, flag
    if type(betas) is not tuple or len(betas) != 2:
        return False
    if not (_plain_float(lr, &lr_value, INFINITY) and _plain_float(eps, &settings.eps, INFINITY)
            and _plain_float(betas[0], &beta1, BELOW_ONE)
            and _plain_float(betas[1], &beta2, BELOW_ONE)
            and _plain_float(weight_decay, &settings.weight_decay, INFINITY)
            and _plain_bool(decoupled, &settings.decoupled)
            and _plain_bool(amsgrad, &flag)
            and _plain_bool(maximize, &settings.maximize)
            and _plain_bound(lower_bound, &settings.lower_bound)
            and _plain_threads(n_threads, &threads)
            and _fast_step(step, counter, &step_value)):
        return False
    if exp_avgs is None or exp_avg_sqs is None or (flag and max_exp_avg_sqs is None):
        return False  # the general path's TypeError
    settings.amsgrad = flag
    settings.rate = lr_value / (1.0 - beta1 ** step_value)
    settings.beta1 = beta1
    settings.beta2 = beta2
    settings.bias_correction2_sqrt = sqrt(1.0 - beta2 ** step_value)
    settings.decay = 1.0 - lr_value * settings.weight_decay
    if not _fast_run(params, grads, exp_avgs, KIND_ADAM, &settings, threads,
                     parallel_min_elements, exp_avg_sqs, max_exp_avg_sqs if flag else None):
        return False
    _count_step(counter)
    return True


def rmsprop_fast(params, grads, square_avgs, momentum_buffers, grad_avgs, lr, alpha, eps,
                 weight_decay, momentum, centered, maximize, lower_bound, n_threads,
                 Py_ssize_t parallel_min_elements, counter=None):
    """fastgd.rmsprop_update's fast path: True when the update was applied (and counted in
    ``counter``, when given)."""
    cdef UpdateSettings settings = _cleared_settings(0.0, 0.0, 0.0, False, -INFINITY)
    cdef int threads
    if not (_plain_float(lr, &settings.rate, INFINITY)
            and _plain_float(alpha, &settings.beta2, 1.0)
            and _plain_float(eps, &settings.eps, INFINITY)
            and _plain_float(weight_decay, &settings.weight_decay, INFINITY)
            and _plain_float(momentum, &settings.momentum, INFINITY)
            and _plain_bool(centered, &settings.centered)
            and _plain_bool(maximize, &settings.maximize)
            and _plain_bound(lower_bound, &settings.lower_bound)
            and _plain_threads(n_threads, &threads)):
        return False
    if (square_avgs is None or (settings.momentum > 0 and momentum_buffers is None)
            or (settings.centered and grad_avgs is None)):
        return False  # the general path's TypeError
    if not _fast_run(params, grads, square_avgs, KIND_RMSPROP, &settings, threads,
                     parallel_min_elements,
                     momentum_buffers if settings.momentum > 0 else None,
                     grad_avgs if settings.centered else None):
        return False
    _count_step(counter)
    return True


def bandwidth_floor(cnp.ndarray param, cnp.ndarray grad, cnp.ndarray accum,
                    int n_threads=1, Py_ssize_t parallel_min_elements=0,
                    cnp.ndarray accum2=None):
    """For benchmarks: the least one pass can do, reading p, g, G and writing p and G
    (p += g; G += g), compiled per level and prefetched like the updates, on the updates'
    threads (equal ranges when n_threads > 1 and there are at least
    parallel_min_elements), and called as cheaply (the arrays' data pointers, no
    memoryviews). A fused update at memory speed takes about its time. With ``accum2``
    the pass also reads and writes a second state, as Adam's update does."""
    cdef Py_ssize_t n = cnp.PyArray_SIZE(param), chunk, begin
    cdef int thread, dtype = cnp.PyArray_TYPE(param)
    cdef bint is_double = dtype == cnp.NPY_DOUBLE
    cdef char* p
    cdef char* g
    cdef char* a
    cdef char* a2 = NULL
    cdef cnp.ndarray array
    if dtype != cnp.NPY_FLOAT and not is_double:
        raise TypeError(f"param must be float32 or float64; got {param.dtype}")
    arrays = [("param", param), ("grad", grad), ("accum", accum)]
    if accum2 is not None:
        arrays.append(("accum2", accum2))
    for name, array in arrays:
        if cnp.PyArray_TYPE(array) != dtype:
            raise TypeError(f"{name} must have param's dtype {param.dtype}; got {array.dtype}")
        if cnp.PyArray_SIZE(array) != n:
            raise ValueError(f"param, grad and accum must have one size; got {param.size}, "
                             f"{grad.size} and {accum.size}")
        if not _plain_array(array, array is not grad):
            raise ValueError(f"{name} must be a C-contiguous, aligned ndarray in native byte "
                             f"order{'' if array is grad else ', writeable'}")
    if n_threads < 1:
        raise ValueError(f"n_threads must be at least 1; got {n_threads}")
    if n == 0:
        return
    p = <char*>cnp.PyArray_DATA(param)
    g = <char*>cnp.PyArray_DATA(grad)
    a = <char*>cnp.PyArray_DATA(accum)
    if accum2 is not None:
        a2 = <char*>cnp.PyArray_DATA(accum2)
    with nogil:
        if n_threads == 1 or n < parallel_min_elements:
            _bandwidth_floor(p, g, a, a2, 0, n, is_double)
        else:
            chunk = (n + n_threads - 1) // n_threads
            for thread in prange(n_threads, num_threads=n_threads, schedule="static"):
                begin = thread * chunk
                if begin < n:
                    _bandwidth_floor(p, g, a, a2, begin, min(chunk, n - begin), is_double)


cdef inline void _bandwidth_floor(char* param, const char* grad, char* accum, char* accum2,
                                  Py_ssize_t begin, Py_ssize_t n,
                                  bint is_double) noexcept nogil:
    cdef Py_ssize_t itemsize = 8 if is_double else 4
    cdef char* second = accum2 + begin * itemsize if accum2 != NULL else NULL
    if is_double:
        fastgd_bandwidth_floor_f64(<double*>param + begin, <const double*>grad + begin,
                                   <double*>accum + begin, <double*>second, n)
    else:
        fastgd_bandwidth_floor_f32(<float*>param + begin, <const float*>grad + begin,
                                   <float*>accum + begin, <float*>second, n)
