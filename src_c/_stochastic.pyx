"""The stochastic solver of fastgd.factorize (solver="stochastic"): passes over the
observed entries that step only the rows (and biases) each entry touches, and the sum of
the entry losses at the current model.

The entries come laid out block by block on a grid x grid grid (fastgd/_stochastic.py
builds it): block (a, b) holds the entries whose row is in row group a and column in
column group b, in a shuffled order. A pass visits the grid in `grid` strata; stratum s
is the blocks (a, (a + s) % grid), which share no row and no column, so threads take them
in parallel without locks, and every block is visited in its own order whatever the thread
count: a pass gives the same bits on any number of threads (DSGD's schedule; LIBMF's
scheduler takes any free block instead, which needs no barrier but depends on timing).

The loops are C (stochastic_loops.h), compiled per instruction-set level and chosen at
import (select_simd); every level gives the same bits. The Python layer has checked every
shape, dtype and index; this module checks only that the arrays agree with each other.
"""

from cython cimport floating
from codes cimport STEP_ADAGRAD, STEP_SGD
from cython.parallel cimport prange
from libc.stdint cimport int32_t, int64_t, uint64_t


cdef extern from "stochastic_loops.h" nogil:
    ctypedef struct fastgd_stochastic_settings:
        double lr
        double eps
        double lower_bound
        int step
        int entry_loss
        double delta
        int biases
        double mu
        double reg_factors
        double reg_biases
    int fastgd_stochastic_select_level(int asked)
    double fastgd_stochastic_pass_f32(
        const int32_t* rows, const int32_t* cols, const float* values, const float* weights,
        Py_ssize_t start, Py_ssize_t stop, float* W, float* HT, Py_ssize_t k,
        float* row_bias, float* col_bias, float* state_W, float* state_HT,
        float* state_row_bias, float* state_col_bias, const float* reg_W,
        const float* reg_HT, const float* reg_row_bias, const float* reg_col_bias,
        const fastgd_stochastic_settings* s)
    double fastgd_stochastic_pass_f64(
        const int32_t* rows, const int32_t* cols, const double* values,
        const double* weights, Py_ssize_t start, Py_ssize_t stop, double* W, double* HT,
        Py_ssize_t k, double* row_bias, double* col_bias, double* state_W,
        double* state_HT, double* state_row_bias, double* state_col_bias,
        const double* reg_W, const double* reg_HT, const double* reg_row_bias,
        const double* reg_col_bias, const fastgd_stochastic_settings* s)
    double fastgd_stochastic_loss_f32(
        const int32_t* rows, const int32_t* cols, const float* values, const float* weights,
        Py_ssize_t start, Py_ssize_t stop, const float* W, const float* HT, Py_ssize_t k,
        const float* row_bias, const float* col_bias, const fastgd_stochastic_settings* s)
    double fastgd_stochastic_loss_f64(
        const int32_t* rows, const int32_t* cols, const double* values,
        const double* weights, Py_ssize_t start, Py_ssize_t stop, const double* W,
        const double* HT, Py_ssize_t k, const double* row_bias, const double* col_bias,
        const fastgd_stochastic_settings* s)

# loss_sum adds the entry losses of chunks of this many entries, then the chunks' sums in
# order: the same bits on any number of threads.
cdef enum:
    CHUNK = 8192
LOSS_CHUNK = CHUNK


def select_simd(int highest):
    """Run the loops at the best level this CPU supports, at most level code `highest`
    (fastgd._codes.SIMD_LEVELS; "scalar" runs "baseline"). Every level gives the same
    bits. Returns the level code chosen."""
    return fastgd_stochastic_select_level(highest)


cdef inline floating* _data(floating[::1] x) noexcept:
    return &x[0] if x is not None and x.shape[0] else NULL


def _check_length(array, expected, name):
    if array is not None and array.shape[0] not in (0, expected):
        raise ValueError(f"{name} must have {expected} elements (or none); got "
                         f"{array.shape[0]}")


def run_pass(const int32_t[::1] rows, const int32_t[::1] cols, const floating[::1] values,
             const floating[::1] weights, const int64_t[::1] block_ptr, int grid,
             floating[:, ::1] W, floating[:, ::1] HT, floating[::1] row_bias,
             floating[::1] col_bias, floating[::1] state_W, floating[::1] state_HT,
             floating[::1] state_row_bias, floating[::1] state_col_bias,
             const floating[::1] reg_W, const floating[::1] reg_HT,
             const floating[::1] reg_row_bias, const floating[::1] reg_col_bias,
             double lr, double eps, double lower_bound, int step, int entry_loss,
             double delta, double mu, int n_threads, double reg_factors=0,
             double reg_biases=0):
    """One pass over the entries, stepping W, HT (H transposed), the biases and the
    step's state in place.

    rows, cols, values (and weights, or None) hold the entries block by block, block
    (a, b) at [block_ptr[a * grid + b], block_ptr[a * grid + b + 1]). row_bias and
    col_bias are empty without biases (the model is then W . HT alone). state_W and
    state_HT are empty for "sgd", hold W's and HT's shapes flattened for "adagrad", one
    value per row for "adagrad_vector"; the biases' states one per bias (empty for "sgd"
    or without biases). reg_*: each row's penalty coefficient (stochastic_loops.h), or
    empty for reg_factors (W, HT) and reg_biases (the biases) for every row. step:
    a STOCHASTIC_STEPS code; entry_loss an ENTRY_LOSSES code with delta; lower_bound
    -inf for no projection; n_threads > 1 takes a stratum's blocks in parallel. Returns
    the sum of the entry losses, each just before its step (the blocks' sums added in block
    order: the same bits on any number of threads).
    """
    cdef Py_ssize_t m = W.shape[0], k = W.shape[1], n = HT.shape[0]
    cdef Py_ssize_t nnz = rows.shape[0], a, stratum, block, n_blocks = <Py_ssize_t>grid * grid
    cdef fastgd_stochastic_settings s
    cdef const int32_t* row_data = &rows[0] if nnz else NULL
    cdef const int32_t* col_data = &cols[0] if nnz else NULL
    cdef const floating* value_data = &values[0] if nnz else NULL
    cdef const floating* weight_data = NULL
    cdef floating* w = &W[0, 0] if W.size else NULL
    cdef floating* ht = &HT[0, 0] if HT.size else NULL
    cdef floating* rb = _data(row_bias)
    cdef floating* cb = _data(col_bias)
    cdef floating* sw = _data(state_W)
    cdef floating* sh = _data(state_HT)
    cdef floating* srb = _data(state_row_bias)
    cdef floating* scb = _data(state_col_bias)
    cdef const floating* lw = &reg_W[0] if reg_W.shape[0] else NULL
    cdef const floating* lh = &reg_HT[0] if reg_HT.shape[0] else NULL
    cdef const floating* lrb = &reg_row_bias[0] if reg_row_bias.shape[0] else NULL
    cdef const floating* lcb = &reg_col_bias[0] if reg_col_bias.shape[0] else NULL
    if grid < 1 or block_ptr.shape[0] != n_blocks + 1 or block_ptr[n_blocks] != nnz:
        raise ValueError("block_ptr must hold grid * grid + 1 offsets ending at the number "
                         "of entries")
    if cols.shape[0] != nnz or values.shape[0] != nnz:
        raise ValueError("rows, cols and values must have one length")
    if weights is not None:
        if weights.shape[0] != nnz:
            raise ValueError(f"weights must have {nnz} elements; got {weights.shape[0]}")
        weight_data = &weights[0] if nnz else NULL
    if HT.shape[1] != k:
        raise ValueError(f"HT must have {k} columns; got {HT.shape[1]}")
    if reg_W.shape[0] not in (0, m) or reg_HT.shape[0] not in (0, n):
        raise ValueError("reg_W and reg_HT must have one value per row of W and HT, or none")
    s.biases = row_bias.shape[0] != 0
    if s.biases and (row_bias.shape[0] != m or col_bias.shape[0] != n
                     or reg_row_bias.shape[0] not in (0, m)
                     or reg_col_bias.shape[0] not in (0, n)):
        raise ValueError("the biases and their coefficients must have one value per row "
                         "of W and of HT")
    if step != STEP_SGD:  # Adagrad keeps state for every row (and bias) it steps
        per_row = k if step == STEP_ADAGRAD else 1
        if state_W.shape[0] != m * per_row or state_HT.shape[0] != n * per_row:
            raise ValueError("state_W and state_HT do not fit the step")
        if s.biases and (state_row_bias.shape[0] != m or state_col_bias.shape[0] != n):
            raise ValueError("the biases' states must have one value per bias")
    s.lr, s.eps, s.lower_bound, s.step = lr, eps, lower_bound, step
    s.entry_loss, s.delta, s.mu = entry_loss, delta, mu
    s.reg_factors, s.reg_biases = reg_factors, reg_biases
    n_threads = max(1, min(n_threads, grid))
    cdef double[::1] block_losses = _zeros(n_blocks)
    cdef double total = 0
    with nogil:
        for stratum in range(grid):
            if n_threads == 1:
                for a in range(grid):
                    block = a * grid + (a + stratum) % grid
                    block_losses[block] = _pass(
                        row_data, col_data, value_data, weight_data, block_ptr[block],
                        block_ptr[block + 1], w, ht, k, rb, cb, sw, sh, srb, scb, lw, lh,
                        lrb, lcb, &s)
            else:
                for a in prange(grid, num_threads=n_threads, schedule="dynamic",
                                chunksize=1):
                    block = a * grid + (a + stratum) % grid
                    block_losses[block] = _pass(
                        row_data, col_data, value_data, weight_data, block_ptr[block],
                        block_ptr[block + 1], w, ht, k, rb, cb, sw, sh, srb, scb, lw, lh,
                        lrb, lcb, &s)
        for block in range(n_blocks):
            total += block_losses[block]
    return total


cdef inline double _pass(const int32_t* rows, const int32_t* cols, const floating* values,
                         const floating* weights, Py_ssize_t start, Py_ssize_t stop,
                         floating* W, floating* HT, Py_ssize_t k, floating* row_bias,
                         floating* col_bias, floating* state_W, floating* state_HT,
                         floating* state_row_bias, floating* state_col_bias,
                         const floating* reg_W, const floating* reg_HT,
                         const floating* reg_row_bias, const floating* reg_col_bias,
                         const fastgd_stochastic_settings* s) noexcept nogil:
    if floating is float:
        return fastgd_stochastic_pass_f32(
            rows, cols, values, weights, start, stop, W, HT, k, row_bias, col_bias, state_W,
            state_HT, state_row_bias, state_col_bias, reg_W, reg_HT, reg_row_bias,
            reg_col_bias, s)
    else:
        return fastgd_stochastic_pass_f64(
            rows, cols, values, weights, start, stop, W, HT, k, row_bias, col_bias, state_W,
            state_HT, state_row_bias, state_col_bias, reg_W, reg_HT, reg_row_bias,
            reg_col_bias, s)


def loss_sum(const int32_t[::1] rows, const int32_t[::1] cols, const floating[::1] values,
             const floating[::1] weights, const floating[:, ::1] W,
             const floating[:, ::1] HT, const floating[::1] row_bias,
             const floating[::1] col_bias, int entry_loss, double delta, double mu,
             int n_threads):
    """The sum of the entry losses (r², or Huber's 0.5 r² within delta, times the
    weight) over the entries at the model W . HT (+ mu + the biases when row_bias is not
    empty), in double; the same bits on any number of threads."""
    cdef Py_ssize_t nnz = rows.shape[0], k = W.shape[1]
    cdef Py_ssize_t n_chunks = (nnz + CHUNK - 1) // CHUNK, c
    cdef fastgd_stochastic_settings s
    cdef const floating* weight_data = NULL
    cdef const int32_t* row_data
    cdef const int32_t* col_data
    cdef const floating* value_data
    cdef const floating* w
    cdef const floating* ht
    cdef const floating* rb = &row_bias[0] if row_bias.shape[0] else NULL
    cdef const floating* cb = &col_bias[0] if col_bias.shape[0] else NULL
    cdef double total = 0
    if cols.shape[0] != nnz or values.shape[0] != nnz or HT.shape[1] != k:
        raise ValueError("rows, cols and values must have one length, W and HT one width")
    if weights is not None:
        if weights.shape[0] != nnz:
            raise ValueError(f"weights must have {nnz} elements; got {weights.shape[0]}")
        weight_data = &weights[0] if nnz else NULL
    if nnz == 0:
        return 0.0
    s.biases = row_bias.shape[0] != 0
    if s.biases and (row_bias.shape[0] != W.shape[0] or col_bias.shape[0] != HT.shape[0]):
        raise ValueError("the biases must have one value per row of W and of HT")
    s.entry_loss, s.delta, s.mu = entry_loss, delta, mu
    row_data, col_data, value_data = &rows[0], &cols[0], &values[0]
    w, ht = &W[0, 0], &HT[0, 0]
    cdef double[::1] sums = _zeros(n_chunks)
    n_threads = max(1, min(n_threads, n_chunks))
    with nogil:
        for c in prange(n_chunks, num_threads=n_threads, schedule="static"):
            sums[c] = _loss(row_data, col_data, value_data, weight_data, c * CHUNK,
                            min(nnz, (c + 1) * CHUNK), w, ht, k, rb, cb, &s)
        for c in range(n_chunks):
            total += sums[c]
    return total


cdef inline double _loss(const int32_t* rows, const int32_t* cols, const floating* values,
                         const floating* weights, Py_ssize_t start, Py_ssize_t stop,
                         const floating* W, const floating* HT, Py_ssize_t k,
                         const floating* row_bias, const floating* col_bias,
                         const fastgd_stochastic_settings* s) noexcept nogil:
    if floating is float:
        return fastgd_stochastic_loss_f32(rows, cols, values, weights, start, stop, W, HT,
                                          k, row_bias, col_bias, s)
    else:
        return fastgd_stochastic_loss_f64(rows, cols, values, weights, start, stop, W, HT,
                                          k, row_bias, col_bias, s)


def _zeros(Py_ssize_t length):
    from numpy import zeros

    return zeros(length)


cdef inline uint64_t _splitmix64(uint64_t* state) noexcept nogil:
    """The next number of SplitMix64 (Steele, Lea and Flood), which the NumPy twin
    repeats: the within-block shuffle's generator."""
    state[0] += 0x9E3779B97F4A7C15ULL
    cdef uint64_t z = state[0]
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL
    return z ^ (z >> 31)


def block_layout(const int32_t[::1] rows, const int32_t[::1] cols,
                 const floating[::1] values, const floating[::1] weights,
                 const int32_t[::1] row_group, const int32_t[::1] col_group, int grid,
                 uint64_t seed, int32_t[::1] out_rows, int32_t[::1] out_cols,
                 floating[::1] out_values, floating[::1] out_weights, int64_t[::1] block_ptr,
                 int n_chunks=1):
    """Lay the entries out block by block into the out_ arrays (out_weights None without
    weights): block (a, b) holds the entries whose row is in group a (row_group[row]) and
    column in group b, at [block_ptr[a * grid + b], block_ptr[a * grid + b + 1]), first in
    the entries' order (a counting sort, over n_chunks chunks of the entries on as many
    threads: chunk c's entries of a block after chunk c - 1's, so the same order for any
    n_chunks), then shuffled by
    Fisher-Yates, block b with SplitMix64 from seed + b * 2^32 (j = next() % (i + 1),
    whose bias below 2^-40 for a block of fewer than 2^24 entries does not matter here):
    the same layout on any number of threads. The Python layer has checked every index
    and group."""
    cdef Py_ssize_t nnz = rows.shape[0], n_blocks = <Py_ssize_t>grid * grid, e, b, c
    cdef Py_ssize_t chunk_size
    cdef int64_t running
    cdef int has_weights = weights is not None
    cdef const floating* weight_data = NULL
    cdef floating* out_weight_data = NULL
    if (cols.shape[0] != nnz or values.shape[0] != nnz or out_rows.shape[0] != nnz
            or out_cols.shape[0] != nnz or out_values.shape[0] != nnz
            or block_ptr.shape[0] != n_blocks + 1):
        raise ValueError("the entries' arrays must have one length, block_ptr grid² + 1")
    if has_weights:
        if weights.shape[0] != nnz or out_weights is None or out_weights.shape[0] != nnz:
            raise ValueError("weights and out_weights must have the entries' length")
        if nnz:
            weight_data, out_weight_data = &weights[0], &out_weights[0]
    if nnz == 0:
        block_ptr[:] = 0
        return
    n_chunks = max(1, min(n_chunks, nnz))
    chunk_size = (nnz + n_chunks - 1) // n_chunks
    # fill[c, b]: where chunk c's next entry of block b goes.
    cdef int64_t[:, ::1] fill = _zeros_int64(n_chunks * n_blocks).reshape(n_chunks, n_blocks)
    with nogil:
        for c in prange(n_chunks, num_threads=n_chunks, schedule="static"):
            for e in range(c * chunk_size, min(nnz, (c + 1) * chunk_size)):
                fill[c, <Py_ssize_t>row_group[rows[e]] * grid + col_group[cols[e]]] += 1
        running = 0
        for b in range(n_blocks):
            block_ptr[b] = running
            for c in range(n_chunks):
                running = running + fill[c, b]
                fill[c, b] = running - fill[c, b]
        block_ptr[n_blocks] = running
        for c in prange(n_chunks, num_threads=n_chunks, schedule="static"):
            _scatter(&rows[0], &cols[0], &values[0], weight_data, &row_group[0],
                     &col_group[0], grid, c * chunk_size, min(nnz, (c + 1) * chunk_size),
                     &fill[c, 0], &out_rows[0], &out_cols[0], &out_values[0],
                     out_weight_data)
        for b in prange(n_blocks, num_threads=n_chunks, schedule="dynamic"):
            _shuffle(seed + (<uint64_t>b << 32), block_ptr[b], block_ptr[b + 1],
                     &out_rows[0], &out_cols[0], &out_values[0], out_weight_data)


cdef void _scatter(const int32_t* rows, const int32_t* cols, const floating* values,
                   const floating* weights, const int32_t* row_group,
                   const int32_t* col_group, int grid, Py_ssize_t start, Py_ssize_t stop,
                   int64_t* fill, int32_t* out_rows, int32_t* out_cols,
                   floating* out_values, floating* out_weights) noexcept nogil:
    """Entries [start, stop) to their blocks' next places (fill: per block)."""
    cdef Py_ssize_t e, b
    cdef int64_t position
    for e in range(start, stop):
        b = <Py_ssize_t>row_group[rows[e]] * grid + col_group[cols[e]]
        position = fill[b]
        fill[b] += 1
        out_rows[position] = rows[e]
        out_cols[position] = cols[e]
        out_values[position] = values[e]
        if weights != NULL:
            out_weights[position] = weights[e]


cdef void _shuffle(uint64_t state, int64_t start, int64_t stop, int32_t* rows,
                   int32_t* cols, floating* values, floating* weights) noexcept nogil:
    """Fisher-Yates over entries [start, stop), SplitMix64 from state."""
    cdef int64_t i, i_at, j_at
    cdef int32_t swap_index
    cdef floating swap_value
    for i in range(stop - start - 1, 0, -1):
        i_at, j_at = start + i, start + <int64_t>(_splitmix64(&state) % <uint64_t>(i + 1))
        swap_index = rows[i_at]
        rows[i_at] = rows[j_at]
        rows[j_at] = swap_index
        swap_index = cols[i_at]
        cols[i_at] = cols[j_at]
        cols[j_at] = swap_index
        swap_value = values[i_at]
        values[i_at] = values[j_at]
        values[j_at] = swap_value
        if weights != NULL:
            swap_value = weights[i_at]
            weights[i_at] = weights[j_at]
            weights[j_at] = swap_value


def _zeros_int64(Py_ssize_t length):
    from numpy import zeros

    return zeros(length, dtype="int64")
