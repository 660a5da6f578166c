"""Masked matrix factorisation: the compiled kernels behind fastgd.masked_residual and
fastgd.masked_loss_grad.

A (m x n) is observed at some entries, W is (m x k), H is (k x n), R = W @ H - A at the
observed entries and 0 elsewhere. The gradients returned here are the raw products
dW = R @ H.T and dH = W.T @ R; the Python layer scales them for the loss and adds l2.

* dense path: A is dense, with NaN for missing entries or a uint8 mask (nonzero =
  observed). Row blocks of TILE_ROWS rows are cut into column tiles of TILE_COLS; per
  tile, BLAS computes W @ H into a scratch tile, a fused pass turns it into residuals
  (summing r^2 and counting the observed entries), and two more GEMMs add the tile's
  share of dW and dH. No m x n temporary.
* plan path: the observed entries in CSR order (indptr, indices, values). Per entry
  (i, j): r = W[i] . H.T[j] - value, dW[i] += r H.T[j], dH.T[j] += r W[i], on contiguous
  rows of W and of H.T. O(nnz k). Where H.T and dH.T outgrow a core's L2 cache, the
  columns are taken in tiles (every row's entries in one tile, then the next), with
  bitwise the same result; a tile's rows of H.T are transposed from H into scratch, and
  its rows of dH.T gathered in scratch, then transposed into dH's columns. The loop
  itself is C in masked_loops.h, compiled per instruction set and chosen at import for
  the CPU (select_simd). The gradients are scaled as they are written (plan_loss_grad's
  scale).
* small problems: small_loss_grad (a dense A) and small_plan_loss_grad (a plan) do
  validation, loss, gradients, scaling and l2 in one call with direct dot products, for
  the microsecond-sized tutorial case.

Both paths cut the rows into parts; a part is computed by one thread with its own dH
(the dense path: the first part's is the output itself; the plan path: a tile of dH.T per
part) and the parts are added in a fixed order, so the result depends on the number of
parts, never on the thread schedule.
Inputs are C-contiguous and of one float dtype (the Python layer guarantees it).
"""

import numpy as np

from fastgd import _blas

cimport numpy as cnp
from blas_gemm cimport fastgd_dgemm, fastgd_sgemm, fastgd_use_gemm
from cython cimport floating
from cython.parallel cimport prange, threadid
from codes cimport ENTRY_SQUARED, LOSS_SSE
from interrupts cimport (
    fastgd_interrupt,
    fastgd_interrupt_init,
    fastgd_interrupt_raise,
    fastgd_should_stop,
)
from libc.stdint cimport int32_t, int64_t, uint32_t, uint64_t
from libc.stdlib cimport calloc, free, malloc
from libc.string cimport memcpy, memset
from losses cimport (
    fastgd_entry_loss,
    fastgd_entry_loss_term_f32,
    fastgd_entry_loss_term_f64,
    fastgd_loss_value_and_scale,
)

cnp.import_array()

_blas_gemm = _blas.gemm_functions()
if fastgd_use_gemm(_blas_gemm.sgemm, _blas_gemm.dgemm, _blas_gemm.integer_bytes) != 0:
    raise ImportError("fastgd: no usable sgemm/dgemm was found (fastgd/_blas.py)")


cdef extern from "aligned_memory.h" nogil:
    # Blocks starting on a cache line: dH.T's rows (zeroed) are fetched at random, and each
    # then takes k * itemsize / 64 cache lines rather than one more; the dense path's tile
    # is read a whole vector at a time.
    void* fastgd_aligned_malloc(size_t size)
    void* fastgd_aligned_calloc(size_t count, size_t size)
    void fastgd_aligned_free(void* data)

cdef extern from "masked_loops.h":
    int fastgd_masked_select_simd(int highest) noexcept nogil
    double fastgd_residual_row_f32(float* t_row, const float* a_row,
                                   const unsigned char* m_row, Py_ssize_t cols,
                                   int64_t* observed) noexcept nogil
    double fastgd_residual_row_f64(double* t_row, const double* a_row,
                                   const unsigned char* m_row, Py_ssize_t cols,
                                   int64_t* observed) noexcept nogil
    double fastgd_loss_row_f32(float* t_row, const float* a_row, const unsigned char* m_row,
                               Py_ssize_t cols, const fastgd_entry_loss* entry_loss,
                               int64_t* observed) noexcept nogil
    double fastgd_loss_row_f64(double* t_row, const double* a_row,
                               const unsigned char* m_row, Py_ssize_t cols,
                               const fastgd_entry_loss* entry_loss,
                               int64_t* observed) noexcept nogil
    # The plan path's transposes of columns [j_begin, j_end) of a tile (masked_loops.h).
    void fastgd_tile_to_rows_f32(const float* H, Py_ssize_t n, Py_ssize_t k,
                                 Py_ssize_t col_begin, Py_ssize_t j_begin, Py_ssize_t j_end,
                                 float* HT) noexcept nogil
    void fastgd_tile_to_rows_f64(const double* H, Py_ssize_t n, Py_ssize_t k,
                                 Py_ssize_t col_begin, Py_ssize_t j_begin, Py_ssize_t j_end,
                                 double* HT) noexcept nogil
    void fastgd_parts_to_columns_f32(float* dH, Py_ssize_t ld, float** parts,
                                     Py_ssize_t n_parts, Py_ssize_t k, Py_ssize_t j_begin,
                                     Py_ssize_t j_end, float scale) noexcept nogil
    void fastgd_parts_to_columns_f64(double* dH, Py_ssize_t ld, double** parts,
                                     Py_ssize_t n_parts, Py_ssize_t k, Py_ssize_t j_begin,
                                     Py_ssize_t j_end, double scale) noexcept nogil
    # The segments of rows [row_begin, row_end) in the tile of columns [col_begin, col_end):
    # HT and dHT hold the tile's rows of H.T and dH.T; separate_segments says whether a
    # row's segment may lie apart from the previous row's (the plan's own layout);
    # entry_loss: NULL for plain squared residuals, else the entry loss (losses.h).
    void fastgd_plan_segment_f32_i32(const int32_t* indptr, const int32_t* indices,
                                     const float* values, const float* W, const float* HT,
                                     float* dW, float* dHT, Py_ssize_t k, Py_ssize_t row_begin,
                                     Py_ssize_t row_end, Py_ssize_t col_begin,
                                     Py_ssize_t col_end, int64_t* cursor, double* row_sums,
                                     int separate_segments,
                                     const fastgd_entry_loss* entry_loss) noexcept nogil
    void fastgd_plan_segment_f32_i64(const int64_t* indptr, const int64_t* indices,
                                     const float* values, const float* W, const float* HT,
                                     float* dW, float* dHT, Py_ssize_t k, Py_ssize_t row_begin,
                                     Py_ssize_t row_end, Py_ssize_t col_begin,
                                     Py_ssize_t col_end, int64_t* cursor, double* row_sums,
                                     int separate_segments,
                                     const fastgd_entry_loss* entry_loss) noexcept nogil
    void fastgd_plan_segment_f64_i32(const int32_t* indptr, const int32_t* indices,
                                     const double* values, const double* W, const double* HT,
                                     double* dW, double* dHT, Py_ssize_t k,
                                     Py_ssize_t row_begin, Py_ssize_t row_end,
                                     Py_ssize_t col_begin, Py_ssize_t col_end,
                                     int64_t* cursor, double* row_sums,
                                     int separate_segments,
                                     const fastgd_entry_loss* entry_loss) noexcept nogil
    void fastgd_plan_segment_f64_i64(const int64_t* indptr, const int64_t* indices,
                                     const double* values, const double* W, const double* HT,
                                     double* dW, double* dHT, Py_ssize_t k,
                                     Py_ssize_t row_begin, Py_ssize_t row_end,
                                     Py_ssize_t col_begin, Py_ssize_t col_end,
                                     int64_t* cursor, double* row_sums,
                                     int separate_segments,
                                     const fastgd_entry_loss* entry_loss) noexcept nogil

ctypedef fused index_t:
    int32_t
    int64_t

cdef enum:
    # A dense tile is TILE_ROWS x TILE_COLS entries of W @ H (128 KiB in float32,
    # 256 KiB in float64): it stays in L2 between its GEMM, its residual pass and the
    # two gradient GEMMs.
    TILE_ROWS = 64
    TILE_COLS = 512
    # The plan path looks for Ctrl-C (interrupts.h) between runs of this many rows.
    CHECK_ROWS = 1024


# ---------------------------------------------------------------------------------------
# Small helpers


cdef inline void _gemm(char* transa, char* transb, int m, int n, int k,
                       const floating* a, int lda, const floating* b, int ldb,
                       floating beta, floating* c, int ldc) noexcept nogil:
    """C = op(a) op(b) + beta C, column-major (BLAS's convention)."""
    if floating is float:
        fastgd_sgemm(transa, transb, m, n, k, 1.0, a, lda, b, ldb, beta, c, ldc)
    else:
        fastgd_dgemm(transa, transb, m, n, k, 1.0, a, lda, b, ldb, beta, c, ldc)


cdef inline floating _dot(const floating* x, const floating* y, Py_ssize_t k) noexcept nogil:
    """x . y with four independent sums (the compiler may not reorder one)."""
    cdef floating s0 = 0, s1 = 0, s2 = 0, s3 = 0
    cdef Py_ssize_t c = 0
    while c + 4 <= k:
        s0 += x[c] * y[c]
        s1 += x[c + 1] * y[c + 1]
        s2 += x[c + 2] * y[c + 2]
        s3 += x[c + 3] * y[c + 3]
        c += 4
    while c < k:
        s0 += x[c] * y[c]
        c += 1
    return (s0 + s1) + (s2 + s3)


cdef inline void _axpy(floating alpha, const floating* x, floating* y,
                       Py_ssize_t k) noexcept nogil:
    cdef Py_ssize_t c
    for c in range(k):
        y[c] += alpha * x[c]


cdef inline uint64_t _nonfinite_bits(floating value) noexcept nogil:
    """Top bit set when value is NaN or infinite (all exponent bits set); integer
    operations only, so a loop OR-ing these vectorises."""
    cdef uint64_t bits64
    cdef uint32_t bits32
    if floating is float:
        memcpy(&bits32, &value, 4)
        return <uint64_t>(((bits32 & 0x7f800000u) + 0x00800000u) & 0x80000000u) << 32
    else:
        memcpy(&bits64, &value, 8)
        return ((bits64 & 0x7ff0000000000000ULL) + 0x0010000000000000ULL) \
            & 0x8000000000000000ULL


cdef bint _all_finite(const floating* x, Py_ssize_t length) noexcept nogil:
    cdef uint64_t flags = 0
    cdef Py_ssize_t i
    for i in range(length):
        flags |= _nonfinite_bits(x[i])
    return flags == 0


def all_finite(array):
    """True if no element of the C-contiguous float32/float64 ``array`` is NaN or inf."""
    cdef const float[::1] flat32
    cdef const double[::1] flat64
    cdef bint result
    flat = array.reshape(-1)
    if flat.shape[0] == 0:
        return True
    if flat.dtype == np.float32:
        flat32 = flat
        with nogil:
            result = _all_finite(&flat32[0], flat32.shape[0])
    else:
        flat64 = flat
        with nogil:
            result = _all_finite(&flat64[0], flat64.shape[0])
    return result


# ---------------------------------------------------------------------------------------
# Building a plan from a dense A


cdef inline const unsigned char* _mask_pointer(mask):
    cdef const unsigned char[:, ::1] view
    if mask is None:
        return NULL
    view = mask
    return &view[0, 0] if view.shape[0] and view.shape[1] else NULL


def count_observed_rows(const floating[:, ::1] A, mask, int64_t[::1] counts):
    """counts[i] = the number of observed entries of row i."""
    cdef Py_ssize_t m = A.shape[0], n = A.shape[1], i, j, count
    cdef const unsigned char* mask_data = _mask_pointer(mask)
    cdef const floating* row
    if m == 0 or n == 0:
        counts[:] = 0
        return
    with nogil:
        for i in range(m):
            count = 0
            if mask_data != NULL:
                for j in range(n):
                    count += mask_data[i * n + j] != 0
            else:
                row = &A[i, 0]
                for j in range(n):
                    count += row[j] == row[j]
            counts[i] = count


def fill_plan(const floating[:, ::1] A, mask, const index_t[::1] indptr,
              index_t[::1] indices, floating[::1] values):
    """The column indices and values of the observed entries, row by row (indptr from
    count_observed_rows).

    Every entry is written at the next free slot and the slot advances only when the
    entry is observed: no branch to mispredict. A row's writes past its own entries
    spill into the first slot of the rows after it, which a later row overwrites; a row
    with no later entry (indptr[i + 1] == nnz) takes the branch instead.
    """
    cdef Py_ssize_t m = A.shape[0], n = A.shape[1], i, j, e = 0
    cdef Py_ssize_t nnz = indices.shape[0]
    cdef const unsigned char* mask_data = _mask_pointer(mask)
    cdef const floating* row
    cdef bint is_observed, spill_is_safe
    if m == 0 or n == 0:
        return
    with nogil:
        for i in range(m):
            row = &A[i, 0]
            spill_is_safe = indptr[i + 1] < nnz
            for j in range(n):
                if mask_data != NULL:
                    is_observed = mask_data[i * n + j] != 0
                else:
                    is_observed = row[j] == row[j]
                if spill_is_safe:
                    indices[e] = <index_t>j
                    values[e] = row[j]
                    e += is_observed
                elif is_observed:
                    indices[e] = <index_t>j
                    values[e] = row[j]
                    e += 1


# ---------------------------------------------------------------------------------------
# Dense path


cdef double _residual_tile(const floating* A, const unsigned char* mask, Py_ssize_t n,
                           Py_ssize_t i0, Py_ssize_t rows, Py_ssize_t j0, Py_ssize_t cols,
                           floating* tile, Py_ssize_t ld, int64_t* count,
                           const fastgd_entry_loss* entry_loss) noexcept nogil:
    """tile (rows x cols, leading dimension ld) holds (W @ H)[i0:, j0:]; overwrite it
    with the masked residual (with entry_loss: the entry loss's gradient factor, its
    weights an m x n array like A), add the observed entries to count, and return the sum
    of the squared residuals (the entry losses) in double. The row loops are
    masked_loops.h's, per CPU level."""
    cdef Py_ssize_t a
    cdef double total = 0
    cdef const unsigned char* m_row = NULL
    cdef fastgd_entry_loss row_loss
    for a in range(rows):
        if mask != NULL:
            m_row = mask + (i0 + a) * n + j0
        if entry_loss != NULL:
            row_loss = entry_loss[0]
            if row_loss.weights != NULL:
                row_loss.weights = (<const floating*>entry_loss.weights) + (i0 + a) * n + j0
            if floating is float:
                total += fastgd_loss_row_f32(tile + a * ld, A + (i0 + a) * n + j0, m_row,
                                             cols, &row_loss, count)
            else:
                total += fastgd_loss_row_f64(tile + a * ld, A + (i0 + a) * n + j0, m_row,
                                             cols, &row_loss, count)
        elif floating is float:
            total += fastgd_residual_row_f32(tile + a * ld, A + (i0 + a) * n + j0, m_row,
                                             cols, count)
        else:
            total += fastgd_residual_row_f64(tile + a * ld, A + (i0 + a) * n + j0, m_row,
                                             cols, count)
    return total


cdef inline void _product_tile(const floating* W, const floating* H, Py_ssize_t n,
                               Py_ssize_t k, Py_ssize_t i0, Py_ssize_t rows,
                               Py_ssize_t j0, Py_ssize_t cols, floating* tile,
                               Py_ssize_t ld) noexcept nogil:
    """tile = W[i0:i0+rows] @ H[:, j0:j0+cols] (row-major, leading dimension ld)."""
    cdef Py_ssize_t a
    if k == 0:
        for a in range(rows):
            memset(tile + a * ld, 0, cols * sizeof(floating))
    else:
        # Row-major X is column-major X.T: tile.T = H[:, cols].T @ W[rows].T.
        _gemm("N", "N", <int>cols, <int>rows, <int>k, H + j0, <int>n, W + i0 * k, <int>k,
              0, tile, <int>ld)


def dense_residual(const floating[:, ::1] A, mask, const floating[:, ::1] W,
                   const floating[:, ::1] H, floating[:, ::1] out, int n_threads):
    """out = W @ H - A at observed entries, 0 elsewhere (computed in place in out);
    returns the sum of squares (NaN or inf flags a non-finite observed value)."""
    cdef Py_ssize_t m = A.shape[0], n = A.shape[1], k = W.shape[1]
    cdef Py_ssize_t n_blocks = (m + TILE_ROWS - 1) // TILE_ROWS
    cdef Py_ssize_t n_col_tiles = (n + TILE_COLS - 1) // TILE_COLS, task, i0, j0
    cdef const unsigned char* mask_data = _mask_pointer(mask)
    cdef const floating* w = NULL
    cdef const floating* h = NULL
    cdef int64_t tile_count
    cdef double total = 0
    cdef fastgd_interrupt interrupt
    if m == 0 or n == 0:
        return 0.0
    if k:
        w, h = &W[0, 0], &H[0, 0]
    fastgd_interrupt_init(&interrupt)
    with nogil:
        for task in prange(n_blocks * n_col_tiles, num_threads=max(1, n_threads),
                           schedule="static"):
            if fastgd_should_stop(&interrupt, threadid() == 0):
                continue
            # Tiles of out itself (leading dimension n): no scratch memory.
            i0 = (task // n_col_tiles) * TILE_ROWS
            j0 = (task % n_col_tiles) * TILE_COLS
            tile_count = 0
            _product_tile(w, h, n, k, i0, min(<Py_ssize_t>TILE_ROWS, m - i0), j0,
                          min(<Py_ssize_t>TILE_COLS, n - j0), &out[i0, j0], n)
            total += _residual_tile(&A[0, 0], mask_data, n, i0,
                                    min(<Py_ssize_t>TILE_ROWS, m - i0), j0,
                                    min(<Py_ssize_t>TILE_COLS, n - j0), &out[i0, j0], n,
                                    &tile_count, NULL)
    fastgd_interrupt_raise(&interrupt)
    return total


cdef int _dense_part(const floating* A, const unsigned char* mask, const floating* W,
                     const floating* H, floating* dW, floating* dH, Py_ssize_t m,
                     Py_ssize_t n, Py_ssize_t k, Py_ssize_t block_begin,
                     Py_ssize_t block_end, double* total, int64_t* count,
                     const fastgd_entry_loss* entry_loss, fastgd_interrupt* interrupt,
                     bint is_caller) noexcept nogil:
    """Blocks [block_begin, block_end) of rows: their residuals' sum of squares and
    count, their rows of dW, and their share of dH (written, not added); stops between
    two blocks when ``interrupt`` says so. Returns -1 if the tile could not be
    allocated."""
    cdef floating* tile = <floating*>fastgd_aligned_malloc(
        TILE_ROWS * TILE_COLS * sizeof(floating))
    cdef Py_ssize_t block, i0, rows, j0, cols, col_tile
    cdef Py_ssize_t n_col_tiles = (n + TILE_COLS - 1) // TILE_COLS
    cdef floating beta
    if tile == NULL:
        return -1
    for block in range(block_begin, block_end):
        if fastgd_should_stop(interrupt, is_caller):
            break
        i0 = block * TILE_ROWS
        rows = min(<Py_ssize_t>TILE_ROWS, m - i0)
        for col_tile in range(n_col_tiles):
            j0 = col_tile * TILE_COLS
            cols = min(<Py_ssize_t>TILE_COLS, n - j0)
            _product_tile(W, H, n, k, i0, rows, j0, cols, tile, cols)
            total[0] += _residual_tile(A, mask, n, i0, rows, j0, cols, tile, cols, count,
                                       entry_loss)
            if k == 0:
                continue
            # dW[rows] (+)= R_tile @ H[:, cols].T, i.e. dW.T = H[:, cols] @ R_tile.T
            beta = 0 if j0 == 0 else 1
            _gemm("T", "N", <int>k, <int>rows, <int>cols, H + j0, <int>n, tile, <int>cols,
                  beta, dW + i0 * k, <int>k)
            # dH[:, cols] (+)= W[rows].T @ R_tile, i.e. dH.T = R_tile.T @ W[rows]
            beta = 0 if block == block_begin else 1
            _gemm("N", "T", <int>cols, <int>k, <int>rows, tile, <int>cols, W + i0 * k,
                  <int>k, beta, dH + j0, <int>n)
    fastgd_aligned_free(tile)
    return 0


cdef void _add_parts(floating* target, floating** parts, Py_ssize_t n_parts,
                     Py_ssize_t length, int n_threads) noexcept nogil:
    """target += parts[1] + parts[2] + ..., in that order for every element."""
    cdef Py_ssize_t chunk = 4096, n_chunks = (length + chunk - 1) // chunk
    cdef Py_ssize_t c, i, p, end
    for c in prange(n_chunks, num_threads=max(1, n_threads), schedule="static"):
        end = min(length, (c + 1) * chunk)
        for p in range(1, n_parts):
            for i in range(c * chunk, end):
                target[i] += parts[p][i]


cdef floating** _part_buffers(Py_ssize_t n_parts, Py_ssize_t length,
                              floating* first) noexcept nogil:
    """n_parts pointers: first, then zeroed buffers of length elements, each starting on a
    cache line (NULL on failure); _free_parts releases them."""
    cdef floating** parts = <floating**>calloc(n_parts, sizeof(floating*))
    cdef Py_ssize_t p
    if parts == NULL:
        return NULL
    parts[0] = first
    for p in range(1, n_parts):
        parts[p] = <floating*>fastgd_aligned_calloc(max(length, 1), sizeof(floating))
        if parts[p] == NULL:
            _free_parts(parts, n_parts)
            return NULL
    return parts


cdef void _free_parts(floating** parts, Py_ssize_t n_parts) noexcept nogil:
    cdef Py_ssize_t p
    if parts != NULL:
        for p in range(1, n_parts):
            fastgd_aligned_free(parts[p])
        free(parts)


def dense_loss_grad(const floating[:, ::1] A, mask, const floating[:, ::1] W,
                    const floating[:, ::1] H, floating[:, ::1] dW, floating[:, ::1] dH,
                    int n_threads, int n_parts, int entry_loss=ENTRY_SQUARED,
                    double delta=0.0, const floating[:, ::1] weights=None):
    """dW = R @ H.T, dH = W.T @ R for the masked residual R of dense A; returns
    (sum of r^2, number of observed entries). With an entry loss other than squared, or
    ``weights`` (m x n, their values at unobserved entries unread), R holds the entry
    losses' gradient factors and the sum is theirs (losses.h)."""
    cdef Py_ssize_t m = A.shape[0], n = A.shape[1], k = W.shape[1]
    cdef Py_ssize_t n_blocks = (m + TILE_ROWS - 1) // TILE_ROWS, p
    cdef const unsigned char* mask_data = _mask_pointer(mask)
    cdef floating** parts
    cdef double* totals
    cdef int64_t* counts
    cdef int failed = 0
    cdef double total = 0
    cdef int64_t count = 0
    cdef fastgd_interrupt interrupt
    cdef fastgd_entry_loss loss_settings
    cdef const fastgd_entry_loss* term = NULL
    if weights is not None and (weights.shape[0] != m or weights.shape[1] != n):
        raise ValueError(f"weights must have shape {(m, n)}; got "
                         f"{(weights.shape[0], weights.shape[1])}")
    if m == 0 or n == 0:
        dW[:, :] = 0
        dH[:, :] = 0
        return 0.0, 0
    if entry_loss != ENTRY_SQUARED or weights is not None:
        loss_settings.code = entry_loss
        loss_settings.delta = delta
        loss_settings.weights = &weights[0, 0] if weights is not None else NULL
        term = &loss_settings
    fastgd_interrupt_init(&interrupt)
    n_parts = <int>max(1, min(<Py_ssize_t>n_parts, n_blocks))
    n_threads = max(1, min(n_threads, n_parts))
    totals = <double*>calloc(n_parts, sizeof(double))
    counts = <int64_t*>calloc(n_parts, sizeof(int64_t))
    parts = _part_buffers(n_parts, k * n, &dH[0, 0] if k else NULL)
    if totals == NULL or counts == NULL or parts == NULL:
        free(totals)
        free(counts)
        _free_parts(parts, n_parts)
        raise MemoryError("fastgd.masked_loss_grad: could not allocate per-part buffers")
    with nogil:
        for p in prange(n_parts, num_threads=n_threads, schedule="dynamic", chunksize=1):
            failed += -_dense_part(&A[0, 0], mask_data, &W[0, 0] if k else NULL,
                                   &H[0, 0] if k else NULL,
                                   &dW[0, 0] if k else NULL, parts[p], m, n, k,
                                   p * n_blocks // n_parts, (p + 1) * n_blocks // n_parts,
                                   &totals[p], &counts[p], term, &interrupt,
                                   threadid() == 0)
        if k and not interrupt.stop:
            _add_parts(&dH[0, 0], parts, n_parts, k * n, n_threads)
        for p in range(n_parts):
            total += totals[p]
            count += counts[p]
    free(totals)
    free(counts)
    _free_parts(parts, n_parts)
    fastgd_interrupt_raise(&interrupt)
    if failed:
        raise MemoryError("fastgd.masked_loss_grad: could not allocate tile buffers")
    return total, count


# ---------------------------------------------------------------------------------------
# Plan path


def plan_residual(const index_t[::1] indptr, const index_t[::1] indices,
                  const floating[::1] values, const floating[:, ::1] W,
                  const floating[:, ::1] HT, floating[::1] out, int n_threads):
    """out[e] = W[i] . HT[j] - values[e] for the plan's e-th entry (i, j)."""
    cdef Py_ssize_t m = indptr.shape[0] - 1, k = W.shape[1], i, e, j
    cdef const floating* w
    cdef fastgd_interrupt interrupt
    if values.shape[0] == 0:
        return
    fastgd_interrupt_init(&interrupt)
    with nogil:
        for i in prange(m, num_threads=max(1, n_threads), schedule="guided"):
            if i % CHECK_ROWS == 0 and fastgd_should_stop(&interrupt, threadid() == 0):
                continue
            w = &W[i, 0] if k else NULL
            for e in range(indptr[i], indptr[i + 1]):
                j = indices[e]
                out[e] = (_dot(w, &HT[j, 0], k) if k else 0) - values[e]
    fastgd_interrupt_raise(&interrupt)


def select_simd(int highest):
    """Choose the plan path's inner loops for this CPU, at most level code ``highest``
    (fastgd._codes.SIMD_LEVELS: plain C, the build's baseline vectors, AVX2, AVX-512). All
    give bitwise the same results; returns the level code chosen."""
    return fastgd_masked_select_simd(highest)


cdef inline void _plan_segment(const index_t* indptr, const index_t* indices,
                               const floating* values, const floating* W,
                               const floating* HT, floating* dW, floating* dHT, Py_ssize_t k,
                               Py_ssize_t row_begin, Py_ssize_t row_end, Py_ssize_t col_begin,
                               Py_ssize_t col_end, int64_t* cursor, double* row_sums,
                               bint separate_segments,
                               const fastgd_entry_loss* entry_loss) noexcept nogil:
    """Rows [row_begin, row_end), their entries in columns [col_begin, col_end): adds to
    their rows of dW and to dHT (the tile's rows of dH.T), and their losses (r^2 without
    entry_loss) to row_sums; cursor moves past them (masked_loops.h). separate_segments:
    whether a row's entries in the tile may lie apart from the previous row's (the plan's
    own layout, in tiles)."""
    if floating is float:
        if index_t is int32_t:
            fastgd_plan_segment_f32_i32(indptr, indices, values, W, HT, dW, dHT, k, row_begin,
                                        row_end, col_begin, col_end, cursor, row_sums,
                                        separate_segments, entry_loss)
        else:
            fastgd_plan_segment_f32_i64(indptr, indices, values, W, HT, dW, dHT, k, row_begin,
                                        row_end, col_begin, col_end, cursor, row_sums,
                                        separate_segments, entry_loss)
    else:
        if index_t is int32_t:
            fastgd_plan_segment_f64_i32(indptr, indices, values, W, HT, dW, dHT, k, row_begin,
                                        row_end, col_begin, col_end, cursor, row_sums,
                                        separate_segments, entry_loss)
        else:
            fastgd_plan_segment_f64_i64(indptr, indices, values, W, HT, dW, dHT, k, row_begin,
                                        row_end, col_begin, col_end, cursor, row_sums,
                                        separate_segments, entry_loss)


cdef void _transpose_tile(const floating* H, Py_ssize_t n, Py_ssize_t k, Py_ssize_t col_begin,
                          Py_ssize_t cols, floating* HT, int n_threads) noexcept nogil:
    """HT[j, c] = H[c, col_begin + j] for j < cols: a tile of H.T (cols x k), in blocks of
    64 columns among the threads."""
    cdef Py_ssize_t block = 64, n_blocks = (cols + block - 1) // block
    cdef Py_ssize_t b
    for b in prange(n_blocks, num_threads=max(1, n_threads), schedule="static"):
        if floating is float:
            fastgd_tile_to_rows_f32(H, n, k, col_begin, b * block,
                                    min(cols, (b + 1) * block), HT)
        else:
            fastgd_tile_to_rows_f64(H, n, k, col_begin, b * block,
                                    min(cols, (b + 1) * block), HT)


cdef Py_ssize_t _first_row_at(const index_t* indptr, Py_ssize_t m,
                              int64_t entry) noexcept nogil:
    """The first row i with indptr[i] >= entry (binary search)."""
    cdef Py_ssize_t low = 0, high = m, middle
    while low < high:
        middle = (low + high) // 2
        if indptr[middle] < entry:
            low = middle + 1
        else:
            high = middle
    return low


cdef void _transpose_parts(floating* dH, Py_ssize_t ld, floating** parts, Py_ssize_t n_parts,
                           Py_ssize_t cols, Py_ssize_t k, floating scale,
                           int n_threads) noexcept nogil:
    """dH[c * ld + j] = (parts[0][j, c] + parts[1][j, c] + ...) * scale, added in that order,
    for j < cols (the parts: cols x k), in blocks of 64 columns among the threads."""
    cdef Py_ssize_t block = 64, n_col_blocks = (cols + block - 1) // block
    cdef Py_ssize_t b
    for b in prange(n_col_blocks, num_threads=max(1, n_threads), schedule="static"):
        if floating is float:
            fastgd_parts_to_columns_f32(dH, ld, parts, n_parts, k, b * block,
                                        min(cols, (b + 1) * block), scale)
        else:
            fastgd_parts_to_columns_f64(dH, ld, parts, n_parts, k, b * block,
                                        min(cols, (b + 1) * block), scale)


cdef double _entry_losses_at_zero(const floating[::1] values,
                                  const fastgd_entry_loss* term):
    """The sum of the entry losses (term) when W @ H is 0 (rank 0): at residuals -values."""
    cdef Py_ssize_t e
    cdef double total = 0
    cdef floating g
    for e in range(values.shape[0]):
        if floating is float:
            total += fastgd_entry_loss_term_f32(term, e, -values[e], &g)
        else:
            total += fastgd_entry_loss_term_f64(term, e, -values[e], &g)
    return total


def plan_loss_grad(const index_t[::1] indptr, const index_t[::1] indices,
                   const floating[::1] values, const floating[:, ::1] W,
                   const floating[:, ::1] H, floating[:, ::1] dW, floating[:, ::1] dH,
                   int n_threads, int n_parts, Py_ssize_t tile_cols=0, double scale=1.0,
                   const index_t[::1] tile_starts=None, int entry_loss=ENTRY_SQUARED,
                   double delta=0.0, const floating[::1] weights=None):
    """dW = scale * (G @ H.T), dH = scale * (W.T @ G) for the plan's entry losses' gradient
    factors G (the residuals R for squared ones without weights: losses.h); returns the
    sum of the entry losses (of r^2 for squared ones). Each gradient entry is its sum
    rounded, then multiplied by ``scale`` in the gradients' dtype: bitwise what scaling
    the unscaled gradients afterwards gives, without another pass over them. ``weights``
    (None: all 1) are the entries', in the order of ``values``.

    The columns are taken in tiles of tile_cols (0: all at once). With ``tile_starts``,
    indices and values hold the entries tile by tile (ObservedEntries._entries_for_tiles):
    tile t's entries of row i from tile_starts[t * m + i] to tile_starts[t * m + i + 1],
    read in one stream per tile; indptr still cuts the rows into parts. For each tile, its
    columns of H are transposed into rows of H.T, the parts (runs of rows holding about
    nnz / n_parts entries each) add their share of the tile's dH.T into buffers of their
    own, in parallel, and those are added in part order into dH's columns. The scratch
    memory is about (n_parts + 1) * tile_cols * k elements, in cache while the tile is
    worked on, and the result does not depend on tile_cols or on n_threads.
    """
    cdef Py_ssize_t m = indptr.shape[0] - 1, n = H.shape[1], k = W.shape[1], p, i
    cdef Py_ssize_t tile, n_tiles, col_begin, cols, row, run_end
    cdef fastgd_interrupt interrupt
    cdef int64_t nnz = values.shape[0]
    cdef floating** parts
    cdef double* totals
    cdef double* row_sums = NULL
    cdef int64_t* cursor = NULL
    cdef Py_ssize_t* part_rows = NULL
    cdef double total = 0
    cdef floating* HT = NULL
    cdef floating* first_part = NULL
    cdef floating gradient_scale = <floating>scale
    cdef floating* dW_data
    cdef const index_t* segment_indptr = &indptr[0]
    cdef bint by_tiles = tile_starts is not None
    cdef fastgd_entry_loss loss_settings
    cdef const fastgd_entry_loss* term = NULL
    if weights is not None and weights.shape[0] != nnz:
        raise ValueError(f"weights must have {nnz} elements; got {weights.shape[0]}")
    if entry_loss != ENTRY_SQUARED or weights is not None:
        loss_settings.code = entry_loss
        loss_settings.delta = delta
        loss_settings.weights = &weights[0] if weights is not None and nnz else NULL
        term = &loss_settings
    if nnz == 0 or k == 0:
        dW[:, :] = 0
        dH[:, :] = 0
        if k or nnz == 0:
            return 0.0
        if term == NULL:
            return float(np.dot(np.asarray(values, dtype=np.float64),
                                np.asarray(values, dtype=np.float64)))
        return _entry_losses_at_zero(values, term)
    n_parts = <int>max(1, min(<int64_t>n_parts, nnz))
    n_threads = max(1, min(n_threads, n_parts))
    if tile_cols <= 0 or tile_cols > n:
        tile_cols = n
    n_tiles = (n + tile_cols - 1) // tile_cols
    if by_tiles and tile_starts.shape[0] != n_tiles * m + 1:
        raise ValueError(f"tile_starts must have n_tiles * m + 1 = {n_tiles * m + 1} "
                         f"elements; got {tile_starts.shape[0]}")
    HT = <floating*>fastgd_aligned_malloc(tile_cols * k * sizeof(floating))
    first_part = <floating*>fastgd_aligned_malloc(tile_cols * k * sizeof(floating))
    totals = <double*>calloc(n_parts, sizeof(double))
    row_sums = <double*>malloc(m * sizeof(double))
    cursor = <int64_t*>malloc(m * sizeof(int64_t))
    part_rows = <Py_ssize_t*>malloc((n_parts + 1) * sizeof(Py_ssize_t))
    parts = _part_buffers(n_parts, tile_cols * k, first_part) if first_part != NULL else NULL
    if (HT == NULL or totals == NULL or row_sums == NULL or cursor == NULL
            or part_rows == NULL or parts == NULL):
        fastgd_aligned_free(HT)
        fastgd_aligned_free(first_part)
        free(totals)
        free(row_sums)
        free(cursor)
        free(part_rows)
        _free_parts(parts, n_parts)
        raise MemoryError("fastgd.masked_loss_grad: could not allocate per-part buffers")
    fastgd_interrupt_init(&interrupt)
    with nogil:
        # Part p: rows [part_rows[p], part_rows[p + 1]); the last part also takes the
        # empty rows at the end (their dW rows are 0).
        for p in range(n_parts):
            part_rows[p] = _first_row_at(&indptr[0], m, p * nnz // n_parts)
        part_rows[n_parts] = m
        for p in prange(n_parts, num_threads=n_threads, schedule="static"):
            for i in range(part_rows[p], part_rows[p + 1]):
                memset(&dW[i, 0], 0, k * sizeof(floating))
                cursor[i] = indptr[i]
                row_sums[i] = 0.0
        for tile in range(n_tiles):
            col_begin = tile * tile_cols
            cols = min(tile_cols, n - col_begin)
            _transpose_tile(&H[0, 0], n, k, col_begin, cols, HT, n_threads)
            if by_tiles:
                segment_indptr = &tile_starts[tile * m]
                for i in range(m):
                    cursor[i] = segment_indptr[i]
            for p in prange(n_parts, num_threads=n_threads, schedule="dynamic", chunksize=1):
                memset(parts[p], 0, cols * k * sizeof(floating))
                # The part's rows in runs of CHECK_ROWS (the same sums in the same order),
                # with a look for Ctrl-C between two runs.
                row = part_rows[p]
                while row < part_rows[p + 1]:
                    if fastgd_should_stop(&interrupt, threadid() == 0):
                        break
                    run_end = min(row + CHECK_ROWS, part_rows[p + 1])
                    _plan_segment(segment_indptr, &indices[0], &values[0], &W[0, 0], HT,
                                  &dW[0, 0], parts[p], k, row, run_end, col_begin,
                                  col_begin + cols, cursor, row_sums,
                                  not by_tiles and tile_cols < n, term)
                    row = run_end
            if interrupt.stop:
                break
            _transpose_parts(&dH[0, col_begin], n, parts, n_parts, cols, k, gradient_scale,
                             n_threads)
        if gradient_scale != 1:
            dW_data = &dW[0, 0]
            for p in prange(n_parts, num_threads=n_threads, schedule="static"):
                for i in range(part_rows[p] * k, part_rows[p + 1] * k):
                    dW_data[i] = dW_data[i] * gradient_scale
        # Each part's rows in order, then the parts in order.
        for p in range(n_parts):
            for i in range(part_rows[p], part_rows[p + 1]):
                totals[p] += row_sums[i]
            total += totals[p]
    fastgd_aligned_free(HT)
    free(totals)
    free(row_sums)
    free(cursor)
    free(part_rows)
    _free_parts(parts, n_parts)
    fastgd_aligned_free(first_part)
    fastgd_interrupt_raise(&interrupt)
    return total


# ---------------------------------------------------------------------------------------
# Small dense problems in one call


cdef inline int _small_entry(const fastgd_entry_loss* term, Py_ssize_t e, floating r,
                             floating* g, double* total, double* weight) noexcept nogil:
    """Adds entry e's loss at residual r (r^2 without term) to total and its weight to
    weight, its gradient factor in g; -1 for a weight that is negative or not finite."""
    cdef double entry_weight = 1
    if term == NULL:
        g[0] = r
        total[0] += <double>r * r
    else:
        if term.weights != NULL:
            entry_weight = (<const floating*>term.weights)[e]
            if not (0 <= entry_weight <= 1.7976931348623157e308):
                return -1
        if floating is float:
            total[0] += fastgd_entry_loss_term_f32(term, e, r, g)
        else:
            total[0] += fastgd_entry_loss_term_f64(term, e, r, g)
    weight[0] += entry_weight
    return 0


cdef int _small_loss_grad(const floating* A, const floating* W, const floating* H,
                          floating* dW, floating* dH, Py_ssize_t m, Py_ssize_t n,
                          Py_ssize_t k, int loss, const fastgd_entry_loss* term, double l2,
                          double* value) noexcept nogil:
    """The whole of masked_loss_grad for a small dense A with NaN for missing entries:
    direct dot products, no BLAS; term: the entry loss (NULL: squared, no weights; its
    weights like A). Returns 0, or -1 for anything the general path must handle (a
    non-finite W, H or observed value, a bad weight, no observed weight for a mean)."""
    cdef Py_ssize_t i, j, c
    cdef double total = 0, count = 0
    cdef floating a, r, s
    if not (_all_finite(W, m * k) and _all_finite(H, k * n)):
        return -1
    memset(dW, 0, m * k * sizeof(floating))
    memset(dH, 0, k * n * sizeof(floating))
    for i in range(m):
        for j in range(n):
            a = A[i * n + j]
            if a != a:
                continue
            s = 0
            for c in range(k):
                s = s + W[i * k + c] * H[c * n + j]
            if _small_entry(term, i * n + j, s - a, &r, &total, &count):
                return -1
            for c in range(k):
                dW[i * k + c] += r * H[c * n + j]
                dH[c * n + j] += r * W[i * k + c]
    return _finish_small_loss_grad(total, count, W, H, dW, dH, m * k, k * n, loss,
                                   ENTRY_SQUARED if term == NULL else term.code, l2, value)


cdef int _small_plan_loss_grad(const index_t* indptr, const index_t* indices,
                               const floating* values, const floating* W, const floating* H,
                               floating* dW, floating* dH, Py_ssize_t m, Py_ssize_t n,
                               Py_ssize_t k, int loss, const fastgd_entry_loss* term,
                               double l2, double* value) noexcept nogil:
    """_small_loss_grad for a plan: the same sums, its entries row by row in plan order
    (the weights too)."""
    cdef Py_ssize_t i, j, c
    cdef int64_t entry
    cdef double total = 0, count = 0
    cdef floating r, s
    if not (_all_finite(W, m * k) and _all_finite(H, k * n)):
        return -1
    memset(dW, 0, m * k * sizeof(floating))
    memset(dH, 0, k * n * sizeof(floating))
    for i in range(m):
        for entry in range(indptr[i], indptr[i + 1]):
            j = indices[entry]
            s = 0
            for c in range(k):
                s = s + W[i * k + c] * H[c * n + j]
            if _small_entry(term, entry, s - values[entry], &r, &total, &count):
                return -1
            for c in range(k):
                dW[i * k + c] += r * H[c * n + j]
                dH[c * n + j] += r * W[i * k + c]
    return _finish_small_loss_grad(total, count, W, H, dW, dH, m * k, k * n, loss,
                                   ENTRY_SQUARED if term == NULL else term.code, l2, value)


cdef int _finish_small_loss_grad(double total, double count, const floating* W,
                                 const floating* H, floating* dW, floating* dH,
                                 Py_ssize_t w_size, Py_ssize_t h_size, int loss,
                                 int entry_loss, double l2, double* value) noexcept nogil:
    """The loss from the sum of the entry losses over entries of total weight count, the
    gradients scaled and their l2 terms added; -1 for what the general path must raise
    about (a non-finite sum: an observed inf, or overflow; no observed weight for a
    mean)."""
    cdef Py_ssize_t c
    cdef double scale, penalty = 0
    if not (total <= 1.7976931348623157e308):  # NaN or inf: an observed inf (or overflow)
        return -1
    if loss != LOSS_SSE and count == 0:
        return -1
    value[0] = fastgd_loss_value_and_scale(loss, entry_loss, total, count, &scale)
    for c in range(w_size):
        dW[c] = dW[c] * <floating>scale
    for c in range(h_size):
        dH[c] = dH[c] * <floating>scale
    if l2 != 0:
        for c in range(w_size):
            penalty += <double>W[c] * W[c]
            dW[c] = dW[c] + <floating>l2 * W[c]
        for c in range(h_size):
            penalty += <double>H[c] * H[c]
            dH[c] = dH[c] + <floating>l2 * H[c]
        value[0] += 0.5 * l2 * penalty
    return 0


cdef int _common_float_type(object A, object W, object H):
    """NPY_DOUBLE if any of the three is float64, NPY_FLOAT if all are float32, -1 unless
    all three are 2-D ndarrays of float32 or float64."""
    cdef int result = cnp.NPY_FLOAT, type_num
    for array in (A, W, H):
        if type(array) is not cnp.ndarray or cnp.PyArray_NDIM(<cnp.ndarray>array) != 2:
            return -1
        type_num = cnp.PyArray_TYPE(<cnp.ndarray>array)
        if type_num == cnp.NPY_DOUBLE:
            result = cnp.NPY_DOUBLE
        elif type_num != cnp.NPY_FLOAT:
            return -1
    return result


cdef object _as_plain(object array, int type_num):
    """``array`` (a 2-D ndarray of float32 or float64) as a C-contiguous, aligned,
    native-order 2-D array of type_num: itself, or a copy (float64 weights beside float32
    factors rounded to float32, as the general path rounds them); None for anything
    else."""
    if type(array) is not cnp.ndarray or cnp.PyArray_NDIM(<cnp.ndarray>array) != 2:
        return None
    if _plain_array(array, 2, type_num):
        return array
    if (cnp.PyArray_TYPE(<cnp.ndarray>array) != cnp.NPY_DOUBLE
            and cnp.PyArray_TYPE(<cnp.ndarray>array) != cnp.NPY_FLOAT):
        return None
    return cnp.PyArray_FROMANY(array, type_num, 2, 2,
                               cnp.NPY_ARRAY_CARRAY_RO | cnp.NPY_ARRAY_FORCECAST)


cdef inline bint _plain_array(object array, int ndim, int type_num):
    """An ndarray of ndim dimensions, C-contiguous, aligned, native order, of the given
    dtype number."""
    if type(array) is not cnp.ndarray:
        return False
    cdef cnp.ndarray view = <cnp.ndarray>array
    return (cnp.PyArray_NDIM(view) == ndim and cnp.PyArray_TYPE(view) == type_num
            and cnp.PyArray_ISCARRAY_RO(view) and cnp.PyArray_ISNOTSWAPPED(view))


cdef const fastgd_entry_loss* _small_term(fastgd_entry_loss* settings, int entry_loss,
                                          double delta, weights):
    """The entry loss for the small calls (weights: an ndarray the caller has checked, or
    None), or NULL for squared residuals without weights."""
    if entry_loss == ENTRY_SQUARED and weights is None:
        return NULL
    settings.code = entry_loss
    settings.delta = delta
    settings.weights = NULL if weights is None else cnp.PyArray_DATA(<cnp.ndarray>weights)
    return settings


def small_loss_grad(A, W, H, int loss, double l2, Py_ssize_t max_work):
    """fastgd.masked_loss_grad for small dense problems in one call: (loss, dW, dH), or
    None when the inputs need the general path (other dtypes or layouts, mismatched
    shapes, more than max_work multiply-adds, anything to raise about). Squared residuals
    without weights: the tutorial's call, with the fewest arguments to parse."""
    return _small_dense(A, W, H, loss, l2, max_work, ENTRY_SQUARED, 0.0, None)


def small_entry_loss_grad(A, W, H, int loss, double l2, Py_ssize_t max_work,
                          int entry_loss, double delta, weights):
    """small_loss_grad with the entry loss ``entry_loss`` and its ``delta``, and
    ``weights`` (None, or an array like A)."""
    return _small_dense(A, W, H, loss, l2, max_work, entry_loss, delta, weights)


cdef object _small_dense(A, W, H, int loss, double l2, Py_ssize_t max_work, int entry_loss,
                         double delta, weights):
    """small_loss_grad's and small_entry_loss_grad's work."""
    cdef int type_num
    cdef Py_ssize_t m, n, k
    cdef cnp.npy_intp dims[2]
    cdef cnp.ndarray dW, dH
    cdef double value = 0
    cdef int status
    cdef fastgd_entry_loss settings
    cdef const fastgd_entry_loss* term
    if type(A) is not cnp.ndarray:
        return None
    type_num = cnp.PyArray_TYPE(<cnp.ndarray>A)
    if not (_plain_array(A, 2, type_num) and _plain_array(W, 2, type_num)
            and _plain_array(H, 2, type_num)):
        # Another layout, or float32 beside float64: C-contiguous copies in the dtype the
        # general path computes in (float64 if any input is), as it would make them.
        type_num = _common_float_type(A, W, H)
        if type_num < 0:
            return None
        A, W, H = _as_plain(A, type_num), _as_plain(W, type_num), _as_plain(H, type_num)
        if A is None or W is None or H is None:
            return None
    if type_num != cnp.NPY_DOUBLE and type_num != cnp.NPY_FLOAT:
        return None
    m, n = cnp.PyArray_DIM(<cnp.ndarray>A, 0), cnp.PyArray_DIM(<cnp.ndarray>A, 1)
    k = cnp.PyArray_DIM(<cnp.ndarray>W, 1)
    if (cnp.PyArray_DIM(<cnp.ndarray>W, 0) != m or cnp.PyArray_DIM(<cnp.ndarray>H, 0) != k
            or cnp.PyArray_DIM(<cnp.ndarray>H, 1) != n or m * n * max(k, 1) > max_work):
        return None
    if weights is not None:
        weights = _as_plain(weights, type_num)
        if weights is None or not (cnp.PyArray_DIM(<cnp.ndarray>weights, 0) == m
                                   and cnp.PyArray_DIM(<cnp.ndarray>weights, 1) == n):
            return None
    term = _small_term(&settings, entry_loss, delta, weights)
    dims[0], dims[1] = m, k
    dW = cnp.PyArray_EMPTY(2, dims, type_num, 0)
    dims[0], dims[1] = k, n
    dH = cnp.PyArray_EMPTY(2, dims, type_num, 0)
    if type_num == cnp.NPY_DOUBLE:
        with nogil:
            status = _small_loss_grad(<double*>cnp.PyArray_DATA(<cnp.ndarray>A),
                                      <double*>cnp.PyArray_DATA(<cnp.ndarray>W),
                                      <double*>cnp.PyArray_DATA(<cnp.ndarray>H),
                                      <double*>cnp.PyArray_DATA(dW),
                                      <double*>cnp.PyArray_DATA(dH), m, n, k, loss, term, l2,
                                      &value)
    else:
        with nogil:
            status = _small_loss_grad(<float*>cnp.PyArray_DATA(<cnp.ndarray>A),
                                      <float*>cnp.PyArray_DATA(<cnp.ndarray>W),
                                      <float*>cnp.PyArray_DATA(<cnp.ndarray>H),
                                      <float*>cnp.PyArray_DATA(dW),
                                      <float*>cnp.PyArray_DATA(dH), m, n, k, loss, term, l2,
                                      &value)
    if status != 0:
        return None
    return value, dW, dH


cdef int _small_plan_by_dtype(const index_t* indptr, const index_t* indices,
                              bint float64, void** data, Py_ssize_t m, Py_ssize_t n,
                              Py_ssize_t k, int loss, const fastgd_entry_loss* term, double l2,
                              double* value) noexcept nogil:
    """_small_plan_loss_grad on data = (values, W, H, dW, dH) of one float dtype."""
    if float64:
        return _small_plan_loss_grad(indptr, indices, <double*>data[0], <double*>data[1],
                                     <double*>data[2], <double*>data[3], <double*>data[4],
                                     m, n, k, loss, term, l2, value)
    return _small_plan_loss_grad(indptr, indices, <float*>data[0], <float*>data[1],
                                 <float*>data[2], <float*>data[3], <float*>data[4],
                                 m, n, k, loss, term, l2, value)


def small_plan_loss_grad(indptr, indices, values, Py_ssize_t m, Py_ssize_t n, W, H, int loss,
                         double l2, Py_ssize_t max_work):
    """small_loss_grad for a plan of an (m, n) matrix (CSR arrays, int32 or int64 indices):
    (loss, dW, dH), or None when the inputs need the general path (values, W and H not
    of one float dtype, other layouts, mismatched shapes, more than max_work multiply-adds
    over the entries, anything to raise about)."""
    return _small_plan(indptr, indices, values, m, n, W, H, loss, l2, max_work,
                       ENTRY_SQUARED, 0.0, None)


def small_plan_entry_loss_grad(indptr, indices, values, Py_ssize_t m, Py_ssize_t n, W, H,
                               int loss, double l2, Py_ssize_t max_work, int entry_loss,
                               double delta, weights):
    """small_plan_loss_grad with the entry loss ``entry_loss`` and its ``delta``, and
    ``weights`` (None, or the entries', in the plan's order)."""
    return _small_plan(indptr, indices, values, m, n, W, H, loss, l2, max_work, entry_loss,
                       delta, weights)


cdef object _small_plan(indptr, indices, values, Py_ssize_t m, Py_ssize_t n, W, H, int loss,
                        double l2, Py_ssize_t max_work, int entry_loss, double delta,
                        weights):
    """small_plan_loss_grad's and small_plan_entry_loss_grad's work."""
    cdef int type_num, index_num
    cdef Py_ssize_t k
    cdef cnp.npy_intp dims[2]
    cdef cnp.ndarray dW, dH
    cdef double value = 0
    cdef int status
    cdef bint float64
    cdef void* data[5]
    cdef fastgd_entry_loss settings
    cdef const fastgd_entry_loss* term
    if type(values) is not cnp.ndarray or type(indptr) is not cnp.ndarray:
        return None
    type_num = cnp.PyArray_TYPE(<cnp.ndarray>values)
    index_num = cnp.PyArray_TYPE(<cnp.ndarray>indptr)
    if type_num != cnp.NPY_DOUBLE and type_num != cnp.NPY_FLOAT:
        return None
    if index_num != cnp.NPY_INT32 and index_num != cnp.NPY_INT64:
        return None
    if not (_plain_array(values, 1, type_num) and _plain_array(indptr, 1, index_num)
            and _plain_array(indices, 1, index_num) and _plain_array(W, 2, type_num)
            and _plain_array(H, 2, type_num)):
        return None
    k = cnp.PyArray_DIM(<cnp.ndarray>W, 1)
    if (cnp.PyArray_DIM(<cnp.ndarray>indptr, 0) != m + 1
            or cnp.PyArray_DIM(<cnp.ndarray>W, 0) != m
            or cnp.PyArray_DIM(<cnp.ndarray>H, 0) != k
            or cnp.PyArray_DIM(<cnp.ndarray>H, 1) != n
            or cnp.PyArray_DIM(<cnp.ndarray>values, 0) * max(k, 1) > max_work
            or cnp.PyArray_DIM(<cnp.ndarray>indices, 0)
            != cnp.PyArray_DIM(<cnp.ndarray>values, 0)):
        return None
    if weights is not None and not (
            _plain_array(weights, 1, type_num)
            and cnp.PyArray_DIM(<cnp.ndarray>weights, 0)
            == cnp.PyArray_DIM(<cnp.ndarray>values, 0)):
        return None
    term = _small_term(&settings, entry_loss, delta, weights)
    dims[0], dims[1] = m, k
    dW = cnp.PyArray_EMPTY(2, dims, type_num, 0)
    dims[0], dims[1] = k, n
    dH = cnp.PyArray_EMPTY(2, dims, type_num, 0)
    data[0] = cnp.PyArray_DATA(<cnp.ndarray>values)
    data[1] = cnp.PyArray_DATA(<cnp.ndarray>W)
    data[2] = cnp.PyArray_DATA(<cnp.ndarray>H)
    data[3] = cnp.PyArray_DATA(dW)
    data[4] = cnp.PyArray_DATA(dH)
    float64 = type_num == cnp.NPY_DOUBLE
    with nogil:
        if index_num == cnp.NPY_INT32:
            status = _small_plan_by_dtype(<int32_t*>cnp.PyArray_DATA(<cnp.ndarray>indptr),
                                          <int32_t*>cnp.PyArray_DATA(<cnp.ndarray>indices),
                                          float64, data, m, n, k, loss, term, l2, &value)
        else:
            status = _small_plan_by_dtype(<int64_t*>cnp.PyArray_DATA(<cnp.ndarray>indptr),
                                          <int64_t*>cnp.PyArray_DATA(<cnp.ndarray>indices),
                                          float64, data, m, n, k, loss, term, l2, &value)
    if status != 0:
        return None
    return value, dW, dH
