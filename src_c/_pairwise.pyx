"""Pairwise squared Euclidean distances: the compiled kernels behind fastgd.sqeuclidean.

Two methods, both writing each output entry exactly once:

* expansion: D = ||x||^2 + ||y||^2 - 2 x.y on data centred by a common shift
  (the column means). The centred tiles are packed in the input's precision and
  multiplied by BLAS (sgemm/dgemm of a loaded BLAS: blas_gemm.h); the norms are
  summed in double from the same rounded values. A fused epilogue adds the
  norms, recomputes by direct differences every entry where the expansion may
  have cancelled (D < CANCELLATION_RATIO * (||x||^2 + ||y||^2), NaN, or an
  overflowed norm), and rounds once to the output dtype.
* direct: sum_k (x_k - y_k)^2 in double, in order over k, two rows of X at a time
  against a tile of Y stored column-wise (the loop over Y rows vectorises).

At the AVX2 and AVX-512 levels (pairwise_loops.h, d <= DEPTH) both methods instead keep
blocks of entries in registers (8 x 24 at AVX-512, 4 x 12 in float64 and 4 x 24 in
float32 at AVX2): the expansion fuses the products, the epilogue and the direct
recomputation (it no longer goes through BLAS; at AVX2 not for float64 beyond
FASTGD_FUSED_AVX2_F64_MAX_DEPTH features, nor for argkmin: _blocked), and the direct
method computes the same sums in the same order as above. The vector loops are compiled
per instruction-set level and chosen at import (select_simd).

The output is cut into square tiles of rows of X by rows of Y; with Y is X only
the upper triangle of tiles is computed and mirrored. Tiles are the unit of
OpenMP work. Inputs are C-contiguous (the Python layer guarantees it).

When every row of the output starts at the same distance before a cache line (an
``out`` from np.empty, whose data malloc aligns to 16 bytes only), the first tile of
each row of tiles takes just the columns up to that line, so that every other tile's
vector stores fill whole cache lines rather than straddling two each (not for the
expansion through BLAS: see sqeuclidean).
"""

import numpy as np

from fastgd import _blas

from blas_gemm cimport fastgd_dgemm, fastgd_sgemm, fastgd_use_gemm
from codes cimport FINISH_NONE
from cython cimport floating
from cython.parallel cimport prange, threadid
from interrupts cimport (
    fastgd_interrupt,
    fastgd_interrupt_init,
    fastgd_interrupt_raise,
    fastgd_should_stop,
)
from libc.float cimport DBL_MAX, FLT_MAX
from libc.math cimport INFINITY, NAN, fabs, sqrt
from libc.stdint cimport uint64_t, uintptr_t
from libc.string cimport memset

_blas_gemm = _blas.gemm_functions()
if fastgd_use_gemm(_blas_gemm.sgemm, _blas_gemm.dgemm, _blas_gemm.integer_bytes) != 0:
    raise ImportError("fastgd: no usable sgemm/dgemm was found (fastgd/_blas.py)")


cdef extern from "aligned_memory.h" nogil:
    # Scratch tiles starting on a cache line: the kernels read the packed panels a whole
    # vector at a time, and a vector that straddles two lines costs two loads.
    void* fastgd_aligned_malloc(size_t size)
    void fastgd_aligned_free(void* data)


cdef extern from "metrics.h" nogil:
    double fastgd_metric_term_sqeuclidean(double x, double y)
    double fastgd_metric_finish_sqeuclidean(double sum)

cdef extern from "pairwise_loops.h" nogil:
    const int SUSPECT_BLOCK "FASTGD_SUSPECT_BLOCK"
    float fastgd_zero_distance_f32(const float* x, const float* y, Py_ssize_t d)
    double fastgd_zero_distance_f64(const double* x, const double* y, Py_ssize_t d)
    uint64_t fastgd_suspect_bits_f32(double dist, double norms_sum, double ratio)
    uint64_t fastgd_suspect_bits_f64(double dist, double norms_sum, double ratio)
    int fastgd_epilogue_row_f32(const float* gram_row, const double* y_norms, double x_norm,
                                double ratio, float* out_row, Py_ssize_t n,
                                unsigned char* flags)
    int fastgd_epilogue_row_f64(const double* gram_row, const double* y_norms, double x_norm,
                                double ratio, double* out_row, Py_ssize_t n,
                                unsigned char* flags)
    void fastgd_direct_pair_f32(const float* x0, const float* x1, const double* y_columns,
                                Py_ssize_t n, Py_ssize_t b_start, Py_ssize_t depth,
                                int resume, double* sums0, double* sums1)
    void fastgd_direct_pair_f64(const double* x0, const double* x1, const double* y_columns,
                                Py_ssize_t n, Py_ssize_t b_start, Py_ssize_t depth,
                                int resume, double* sums0, double* sums1)
    int fastgd_round_row_f32(const double* sums, float* out_row, Py_ssize_t n)
    int fastgd_round_row_f64(const double* sums, double* out_row, Py_ssize_t n)
    Py_ssize_t fastgd_first_below_f32(const float* row, float bound, Py_ssize_t start,
                                      Py_ssize_t n)
    Py_ssize_t fastgd_first_below_f64(const double* row, double bound, Py_ssize_t start,
                                      Py_ssize_t n)
    Py_ssize_t fastgd_first_sum_below_f32(const float* row, const float* offsets,
                                          float bound, Py_ssize_t start, Py_ssize_t n)
    Py_ssize_t fastgd_first_sum_below_f64(const double* row, const double* offsets,
                                          double bound, Py_ssize_t start, Py_ssize_t n)
    float fastgd_second_smallest_f32(const float* row, const float* offsets, Py_ssize_t n)
    double fastgd_second_smallest_f64(const double* row, const double* offsets,
                                      Py_ssize_t n)
    void fastgd_finish_block_f32(float* out, Py_ssize_t ldo, Py_ssize_t rows,
                                 Py_ssize_t cols, int finish)
    void fastgd_finish_block_f64(double* out, Py_ssize_t ldo, Py_ssize_t rows,
                                 Py_ssize_t cols, int finish)
    int fastgd_pairwise_select_level(int asked)
    int fastgd_pairwise_blocked()
    bint fastgd_pairwise_fused(Py_ssize_t d, Py_ssize_t itemsize, bint reduce)
    Py_ssize_t fastgd_fused_mr()
    Py_ssize_t fastgd_fused_nr_f32()
    Py_ssize_t fastgd_fused_nr_f64()
    void fastgd_pack_panels_f32(const float* rows, Py_ssize_t d, Py_ssize_t row0,
                                Py_ssize_t nrows, Py_ssize_t width, const double* shift,
                                float* packed)
    void fastgd_pack_panels_f64(const double* rows, Py_ssize_t d, Py_ssize_t row0,
                                Py_ssize_t nrows, Py_ssize_t width, const double* shift,
                                double* packed)
    void fastgd_fused_tile_f32(const float* x_packed, const float* y_packed, Py_ssize_t d,
                               const double* x_norms, const double* y_norms, double ratio,
                               const float* x_rows, const float* y_rows, float* out,
                               Py_ssize_t ldo, Py_ssize_t ni, Py_ssize_t nj)
    void fastgd_fused_tile_f64(const double* x_packed, const double* y_packed, Py_ssize_t d,
                               const double* x_norms, const double* y_norms, double ratio,
                               const double* x_rows, const double* y_rows, double* out,
                               Py_ssize_t ldo, Py_ssize_t ni, Py_ssize_t nj)
    void fastgd_direct_tile_f32(const float* x_rows, Py_ssize_t d, const double* y_columns,
                                const float* y_rows, float* out, Py_ssize_t ldo,
                                Py_ssize_t ni, Py_ssize_t nj, int stream)
    void fastgd_direct_tile_f64(const double* x_rows, Py_ssize_t d, const double* y_columns,
                                const double* y_rows, double* out, Py_ssize_t ldo,
                                Py_ssize_t ni, Py_ssize_t nj, int stream)


def select_simd(int highest):
    """Run the vector loops (the expansion's epilogue, the direct differences) at the best
    level this CPU supports, at most level code `highest` (fastgd._codes.SIMD_LEVELS;
    "scalar" runs "baseline"). The direct method gives bitwise the same results at every
    level; the fused expansion (avx2, avx512) sums its products in another order than BLAS,
    within the same accuracy bound. Returns the level code chosen."""
    return fastgd_pairwise_select_level(highest)


cdef enum:
    # Rows of X (and of Y) in one output tile; the Gram tile is TILE x TILE in the input's
    # precision, the direct method's sums TILE x TILE doubles.
    TILE = 256
    # Features per packed tile (per GEMM call, per direct pass); more are taken in chunks,
    # so the scratch memory per thread does not grow with d.
    DEPTH = 256
    # Bytes of Y, in double, that one tile of the blocked direct method may take (read
    # again for every 8 rows of the tile: they stay in L2).
    DIRECT_COLUMNS_BYTES = 1 << 18
    # Rows a packed tile of Y may take in the fused path's panels (TILE rounded up to
    # whole panels of FASTGD_FUSED_NR_MAX rows).
    PANEL_ROWS = TILE + 48
    # The fused expansion takes its tiles column by column, with the panels of all of X
    # packed once (per thread), when they take at most this many bytes: each tile of Y is
    # then packed once, not once for every row tile.
    X_PANELS_MAX_BYTES = 1 << 20
    CACHE_LINE = 64

# Where the expansion is kept: D - CANCELLATION_RATIO * S > 0 and finite, S = ||x||^2 + ||y||^2
# of the centred rows. The expansion's error is at most about (2d + 1) u S from the norms and
# the GEMM, plus (1 + 2 sqrt(2 / ratio)) u D from the final rounding and the centring; with
# S <= D / 0.5 that is (4d + 7) u D, inside the promised 4 (d + 2) u D. Everything else is
# recomputed by direct differences.
cdef double CANCELLATION_RATIO = 0.5


cdef inline bint _blocked(Py_ssize_t d, bint expansion, Py_ssize_t itemsize,
                          bint reduce) noexcept nogil:
    """Whether the method runs in register blocks (pairwise_loops.h) for d features of
    itemsize bytes: the blocked direct sums at the AVX2 and AVX-512 levels, the fused
    expansion where fastgd_pairwise_fused says (``reduce``: for argkmin)."""
    if d > DEPTH:
        return False
    return fastgd_pairwise_fused(d, itemsize, reduce) if expansion else fastgd_pairwise_blocked()


cdef inline double _direct_sqdist(const floating* x, const floating* y,
                                  Py_ssize_t d) noexcept nogil:
    """Sum of squared differences of two rows, accumulated in double (sqeuclidean's terms
    and finish, metrics.h)."""
    cdef double acc = 0.0
    cdef Py_ssize_t k
    for k in range(d):
        acc += fastgd_metric_term_sqeuclidean(<double>x[k], <double>y[k])
    return fastgd_metric_finish_sqeuclidean(acc)


cdef inline floating _zero_distance(const floating* x, const floating* y,
                                    Py_ssize_t d) noexcept nogil:
    """What a distance that rounded to 0 stands for: 0 for equal rows, else (an
    underflow) the smallest subnormal."""
    if floating is float:
        return fastgd_zero_distance_f32(x, y, d)
    else:
        return fastgd_zero_distance_f64(x, y, d)


cdef inline floating _rounded_sqdist(const floating* x, const floating* y,
                                     Py_ssize_t d) noexcept nogil:
    """The direct distance rounded to floating; where that rounds to 0 for rows that
    differ (underflow), the smallest subnormal instead: 0 means equal rows."""
    cdef floating value = <floating>_direct_sqdist(x, y, d)
    return _zero_distance(x, y, d) if value == 0 else value


cdef void _pack_centred(const floating* rows, Py_ssize_t d, Py_ssize_t row0,
                        Py_ssize_t nrows, Py_ssize_t col0, Py_ssize_t ncols,
                        const double* shift, floating* packed) noexcept nogil:
    """packed[r, c] = rows[row0 + r, col0 + c] - shift[col0 + c], rounded to floating."""
    cdef Py_ssize_t r, c
    cdef const floating* src
    cdef floating* dst
    for r in range(nrows):
        src = rows + (row0 + r) * d + col0
        dst = packed + r * ncols
        for c in range(ncols):
            dst[c] = <floating>(<double>src[c] - shift[col0 + c])


cdef void _centred_sq_norms(const floating* rows, Py_ssize_t nrows, Py_ssize_t d,
                            const double* shift, double* norms) noexcept nogil:
    """Squared norms, in double, of the centred rows exactly as _pack_centred rounds them."""
    cdef Py_ssize_t r, k
    cdef double acc, value
    cdef const floating* src
    for r in range(nrows):
        src = rows + r * d
        acc = 0.0
        for k in range(d):
            value = <double><floating>(<double>src[k] - shift[k])
            acc += value * value
        norms[r] = acc


cdef inline void _gemm(int m, int n, int k, const floating* a, int lda,
                       const floating* b, int ldb, double beta_value,
                       floating* c, int ldc) noexcept nogil:
    """Column-major c = -2 a^T b + beta c, in the precision of floating."""
    if floating is float:
        fastgd_sgemm("T", "N", m, n, k, -2.0, a, lda, b, ldb, <float>beta_value, c, ldc)
    else:
        fastgd_dgemm("T", "N", m, n, k, -2.0, a, lda, b, ldb, beta_value, c, ldc)


cdef inline uint64_t _suspect_bits(double dist, double norms_sum,
                                   floating* out_dtype) noexcept nogil:
    """Top bit set where the expansion is not kept: unless dist > CANCELLATION_RATIO *
    norms_sum, finite, and (float32) above the smallest float32 subnormal, so that a kept
    entry never rounds to 0 (pairwise_loops.h, the test of the vectorised first pass)."""
    if floating is float:
        return fastgd_suspect_bits_f32(dist, norms_sum, CANCELLATION_RATIO)
    else:
        return fastgd_suspect_bits_f64(dist, norms_sum, CANCELLATION_RATIO)


cdef void _gram_tile(const floating* X, const floating* Y, Py_ssize_t d,
                     const double* shift, Py_ssize_t i0, Py_ssize_t ni, Py_ssize_t j0,
                     Py_ssize_t nj, bint pack_x, floating* x_packed, floating* y_packed,
                     floating* gram) noexcept nogil:
    """gram[a, b] = -2 xc[i0 + a] . yc[j0 + b] (row-major, ni x nj) by BLAS on the centred
    rows packed in the input's precision. ``pack_x`` False reuses x_packed from the
    previous tile (same rows, d <= DEPTH)."""
    cdef int gemm_m = <int>nj, gemm_n = <int>ni, gemm_k, ld_packed, ld_gram = <int>nj
    cdef Py_ssize_t k0 = 0, kc
    while k0 < d:
        kc = min(<Py_ssize_t>DEPTH, d - k0)
        if pack_x or d > DEPTH:
            _pack_centred(X, d, i0, ni, k0, kc, shift, x_packed)
        _pack_centred(Y, d, j0, nj, k0, kc, shift, y_packed)
        gemm_k = <int>kc
        ld_packed = <int>kc
        # Row-major gram (ni x nj) is column-major gram^T (nj x ni) = -2 Yp Xp^T.
        _gemm(gemm_m, gemm_n, gemm_k, y_packed, ld_packed, x_packed, ld_packed,
              0.0 if k0 == 0 else 1.0, gram, ld_gram)
        k0 += kc


cdef inline floating _expansion_entry(const floating* x, const floating* y, Py_ssize_t d,
                                      double x_norm, double y_norm,
                                      floating gram_entry) noexcept nogil:
    """One entry as the expansion's epilogue gives it: (x_norm + y_norm) + gram rounded,
    or by direct differences where the expansion may have cancelled."""
    cdef double norms_sum = x_norm + y_norm
    cdef double dist = norms_sum + <double>gram_entry
    if _suspect_bits(dist, norms_sum, <floating*>x) >> 63:
        return _rounded_sqdist(x, y, d)
    return <floating>dist


cdef void _expansion_tile(const floating* X, const floating* Y, floating* out,
                          Py_ssize_t d, Py_ssize_t m, bint symmetric,
                          const double* shift, const double* x_norms,
                          const double* y_norms,
                          Py_ssize_t i0, Py_ssize_t ni, Py_ssize_t j0, Py_ssize_t nj,
                          bint pack_x, floating* x_packed, floating* y_packed,
                          floating* gram) noexcept nogil:
    """One output tile by the expansion (_gram_tile, then the epilogue).

    ``pack_x`` False reuses x_packed from the previous tile (same rows, d <= DEPTH).
    """
    cdef Py_ssize_t a, b, i, b_start, block, block_start
    # A flag per block of SUSPECT_BLOCK entries of a row (at most TILE blocks).
    cdef unsigned char suspect_flags[TILE]
    cdef bint diagonal_tile = symmetric and i0 == j0
    cdef double x_norm
    cdef const floating* gram_row
    cdef const double* y_norms_tile = y_norms + j0
    cdef floating* out_row

    _gram_tile(X, Y, d, shift, i0, ni, j0, nj, pack_x, x_packed, y_packed, gram)
    for a in range(ni):
        i = i0 + a
        gram_row = gram + a * nj
        out_row = out + i * m + j0
        x_norm = x_norms[i]
        b_start = 0
        if diagonal_tile:
            out_row[a] = 0
            b_start = a + 1
        # First pass, vectorised: the expansion, and a flag per block of SUSPECT_BLOCK
        # entries where one may have cancelled.
        if _epilogue_row(gram_row + b_start, y_norms_tile + b_start, x_norm,
                         out_row + b_start, nj - b_start, suspect_flags):
            # Second pass, only over a flagged block: recompute by direct differences.
            for block in range((nj - b_start + SUSPECT_BLOCK - 1) // SUSPECT_BLOCK):
                if not suspect_flags[block]:
                    continue
                block_start = b_start + block * SUSPECT_BLOCK
                for b in range(block_start, min(block_start + SUSPECT_BLOCK, nj)):
                    out_row[b] = _expansion_entry(X + i * d, Y + (j0 + b) * d, d, x_norm,
                                                  y_norms_tile[b], gram_row[b])
        if symmetric:
            for b in range(b_start, nj):
                out[(j0 + b) * m + i] = out_row[b]


cdef inline void _pack_panels(const floating* rows, Py_ssize_t d, Py_ssize_t row0,
                              Py_ssize_t nrows, Py_ssize_t width, const double* shift,
                              floating* packed) noexcept nogil:
    if floating is float:
        fastgd_pack_panels_f32(rows, d, row0, nrows, width, shift, packed)
    else:
        fastgd_pack_panels_f64(rows, d, row0, nrows, width, shift, packed)


cdef void _fused_expansion_tile(const floating* X, const floating* Y, floating* out,
                                Py_ssize_t d, Py_ssize_t m, bint symmetric,
                                const double* shift, const double* x_norms,
                                const double* y_norms,
                                Py_ssize_t i0, Py_ssize_t ni, Py_ssize_t j0, Py_ssize_t nj,
                                bint pack_x, bint pack_y, floating* x_packed,
                                floating* y_packed) noexcept nogil:
    """One output tile by the fused expansion (pairwise_loops.h, AVX2 and AVX-512,
    d <= DEPTH): blocks of fastgd_fused_mr() x NR entries straight from registers into
    out, the entries that may have cancelled recomputed by direct differences within the
    block. The tile's rows of X and of Y are packed first where ``pack_x`` and ``pack_y``
    ask for it (else the panels hold them already)."""
    cdef Py_ssize_t nr = fastgd_fused_nr_f32() if floating is float else fastgd_fused_nr_f64()
    if pack_x:
        _pack_panels(X, d, i0, ni, fastgd_fused_mr(), shift, x_packed)
    if pack_y:
        _pack_panels(Y, d, j0, nj, nr, shift, y_packed)
    if floating is float:
        fastgd_fused_tile_f32(x_packed, y_packed, d, x_norms + i0, y_norms + j0,
                              CANCELLATION_RATIO, X + i0 * d, Y + j0 * d, out + i0 * m + j0, m,
                              ni, nj)
    else:
        fastgd_fused_tile_f64(x_packed, y_packed, d, x_norms + i0, y_norms + j0,
                              CANCELLATION_RATIO, X + i0 * d, Y + j0 * d, out + i0 * m + j0, m,
                              ni, nj)
    _finish_symmetric_tile(out, m, symmetric, i0, ni, j0, nj)


cdef void _finish_symmetric_tile(floating* out, Py_ssize_t m, bint symmetric,
                                 Py_ssize_t i0, Py_ssize_t ni, Py_ssize_t j0,
                                 Py_ssize_t nj) noexcept nogil:
    """With Y is X, after a tile computed whole: a zero diagonal, and the upper triangle
    mirrored into the lower one (so the result is exactly symmetric)."""
    cdef Py_ssize_t a, b, b_start
    cdef bint diagonal_tile = symmetric and i0 == j0
    if diagonal_tile:
        for a in range(ni):
            out[(i0 + a) * m + i0 + a] = 0
    if symmetric:
        for a in range(ni):
            b_start = a + 1 if diagonal_tile else 0
            for b in range(b_start, nj):
                out[(j0 + b) * m + i0 + a] = out[(i0 + a) * m + j0 + b]


cdef inline bint _epilogue_row(const floating* gram_row, const double* y_norms,
                               double x_norm, floating* out_row, Py_ssize_t n,
                               unsigned char* suspect_flags) noexcept nogil:
    if floating is float:
        return fastgd_epilogue_row_f32(gram_row, y_norms, x_norm, CANCELLATION_RATIO,
                                       out_row, n, suspect_flags)
    else:
        return fastgd_epilogue_row_f64(gram_row, y_norms, x_norm, CANCELLATION_RATIO,
                                       out_row, n, suspect_flags)


cdef inline void _direct_two_rows(const floating* x0, const floating* x1,
                                  const double* y_columns, Py_ssize_t nj, Py_ssize_t b_start,
                                  Py_ssize_t depth, bint resume, double* sums0,
                                  double* sums1) noexcept nogil:
    """sums0[b] (+)= sum_k (x0[k] - y_columns[k, b])^2, and the same for x1 into sums1
    (pairwise_loops.h: chunks of features add up in the order of one sequential loop)."""
    if floating is float:
        fastgd_direct_pair_f32(x0, x1, y_columns, nj, b_start, depth, resume, sums0, sums1)
    else:
        fastgd_direct_pair_f64(x0, x1, y_columns, nj, b_start, depth, resume, sums0, sums1)


cdef void _store_direct_row(const floating* X, const floating* Y, floating* out,
                            Py_ssize_t d, Py_ssize_t m, bint symmetric, Py_ssize_t i,
                            Py_ssize_t j0, Py_ssize_t b_start, Py_ssize_t nj,
                            const double* sums) noexcept nogil:
    """Round one row of sums into out (and its mirror); 0 only for equal rows."""
    cdef Py_ssize_t b
    cdef bint any_zero
    cdef floating* out_row = out + i * m + j0
    if floating is float:
        any_zero = fastgd_round_row_f32(sums + b_start, out_row + b_start, nj - b_start)
    else:
        any_zero = fastgd_round_row_f64(sums + b_start, out_row + b_start, nj - b_start)
    if any_zero:  # rare: a zero for rows that differ is an underflow
        for b in range(b_start, nj):
            if out_row[b] == 0:
                out_row[b] = _zero_distance(X + i * d, Y + (j0 + b) * d, d)
    if symmetric:
        for b in range(b_start, nj):
            out[(j0 + b) * m + i] = out_row[b]


cdef void _columns_in_double(const floating* Y, Py_ssize_t d, Py_ssize_t j0, Py_ssize_t nj,
                             Py_ssize_t k0, Py_ssize_t kc, double* y_columns) noexcept nogil:
    """y_columns[k, b] = Y[j0 + b, k0 + k] in double: a tile of Y stored column-wise, so
    that the direct loops run along b."""
    cdef Py_ssize_t b, k
    for b in range(nj):
        for k in range(kc):
            y_columns[k * nj + b] = <double>Y[(j0 + b) * d + k0 + k]


cdef void _direct_tile(const floating* X, const floating* Y, floating* out,
                       Py_ssize_t d, Py_ssize_t m, bint symmetric,
                       Py_ssize_t i0, Py_ssize_t ni, Py_ssize_t j0, Py_ssize_t nj,
                       double* y_columns, double* sums) noexcept nogil:
    """One output tile by direct differences, two rows of X at a time, DEPTH features at a
    time; rows are stored once their last chunk is summed (still in L1)."""
    cdef Py_ssize_t a, a1, i, b_start, k0 = 0, kc, row_in_pair
    cdef bint diagonal_tile = symmetric and i0 == j0

    while k0 < d:
        kc = min(<Py_ssize_t>DEPTH, d - k0)
        _columns_in_double(Y, d, j0, nj, k0, kc, y_columns)
        for a in range(0, ni, 2):
            # Rows a and a + 1; when a is the last row, row a again into the spare sums row
            # a + 1 (it exists: an odd ni is below TILE), computed but not stored.
            a1 = a + 1 if a + 1 < ni else a
            b_start = a + 1 if diagonal_tile else 0
            _direct_two_rows(X + (i0 + a) * d + k0, X + (i0 + a1) * d + k0, y_columns, nj,
                             b_start, kc, k0 > 0, sums + a * nj, sums + (a + 1) * nj)
            if k0 + kc == d:
                for row_in_pair in range(a, a1 + 1):
                    i = i0 + row_in_pair
                    if diagonal_tile:
                        out[i * m + i] = 0
                    _store_direct_row(X, Y, out, d, m, symmetric, i, j0,
                                      row_in_pair + 1 if diagonal_tile else 0, nj,
                                      sums + row_in_pair * nj)
        k0 += kc


cdef void _direct_tile_blocked(const floating* X, const floating* Y, floating* out,
                               Py_ssize_t d, Py_ssize_t m, bint symmetric,
                               Py_ssize_t i0, Py_ssize_t ni, Py_ssize_t j0, Py_ssize_t nj,
                               double* y_columns, bint stream) noexcept nogil:
    """One output tile by direct differences at the AVX2 and AVX-512 levels (d <= DEPTH):
    blocks of entries with their sums in registers (pairwise_loops.h), the same
    operations in the same order as _direct_tile, so the same bits; stored by non-temporal
    stores with ``stream``."""
    _columns_in_double(Y, d, j0, nj, 0, d, y_columns)
    if floating is float:
        fastgd_direct_tile_f32(X + i0 * d, d, y_columns, Y + j0 * d, out + i0 * m + j0, m,
                               ni, nj, stream)
    else:
        fastgd_direct_tile_f64(X + i0 * d, d, y_columns, Y + j0 * d, out + i0 * m + j0, m,
                               ni, nj, stream)
    _finish_symmetric_tile(out, m, symmetric, i0, ni, j0, nj)


cdef void _finish_tile(floating* out, Py_ssize_t m, bint symmetric, Py_ssize_t i0,
                       Py_ssize_t ni, Py_ssize_t j0, Py_ssize_t nj, int finish) noexcept nogil:
    """cdist's finish (FINISH_SQRT, FINISH_HALF) of a computed tile in place while it is in
    cache, and of its mirror with Y is X (a diagonal tile is its own mirror)."""
    if floating is float:
        fastgd_finish_block_f32(out + i0 * m + j0, m, ni, nj, finish)
        if symmetric and i0 != j0:
            fastgd_finish_block_f32(out + j0 * m + i0, m, nj, ni, finish)
    else:
        fastgd_finish_block_f64(out + i0 * m + j0, m, ni, nj, finish)
        if symmetric and i0 != j0:
            fastgd_finish_block_f64(out + j0 * m + i0, m, nj, ni, finish)


cdef inline void _tile_of_task(Py_ssize_t task, Py_ssize_t n_row_tiles,
                               Py_ssize_t n_col_tiles, bint symmetric, bint by_columns,
                               Py_ssize_t* row_tile, Py_ssize_t* col_tile) noexcept nogil:
    """Task number -> (row tile, column tile): row by row, or column by column with
    ``by_columns``; upper triangle only when symmetric (row by row)."""
    cdef Py_ssize_t r = 0, remaining = task, row_length
    if by_columns:
        row_tile[0] = task % n_row_tiles
        col_tile[0] = task // n_row_tiles
        return
    if not symmetric:
        row_tile[0] = task // n_col_tiles
        col_tile[0] = task % n_col_tiles
        return
    row_length = n_col_tiles
    while remaining >= row_length:
        remaining -= row_length
        r += 1
        row_length -= 1
    row_tile[0] = r
    col_tile[0] = r + remaining


cdef Py_ssize_t _tile_columns(Py_ssize_t m, Py_ssize_t d, bint symmetric, bint expansion,
                              Py_ssize_t itemsize, Py_ssize_t block_cols) noexcept nogil:
    """Output columns per tile: TILE, but for the register-blocked methods (_blocked;
    without symmetry):
    * the fused expansion: TILE rounded up to whole blocks of block_cols columns, so that
      no tile but the last ends in a block cut short, which takes the slower way out of
      registers;
    * the direct method: as many as DIRECT_COLUMNS_BYTES of Y hold, all of them for few
      features: each 8 rows of the output are then written in long runs rather than in
      pieces of TILE columns.
    (Measurements: docs/performance.md, "Tuning constants".)"""
    if symmetric or not _blocked(d, expansion, itemsize, False):
        return TILE
    if expansion:
        return (TILE + block_cols - 1) // block_cols * block_cols
    return max(<Py_ssize_t>TILE, min(m, DIRECT_COLUMNS_BYTES // (d * <Py_ssize_t>sizeof(double))))


cdef Py_ssize_t _lead_columns(const void* out, Py_ssize_t m, Py_ssize_t itemsize,
                              bint symmetric) noexcept nogil:
    """Columns of every output row before its first cache-line boundary, when every row
    starts at the same distance before one (else 0, and 0 with Y is X, whose tiles are
    square for the mirroring)."""
    cdef Py_ssize_t offset = <Py_ssize_t>(<uintptr_t>out % CACHE_LINE), lead
    if symmetric or offset == 0 or offset % itemsize or (m * itemsize) % CACHE_LINE:
        return 0
    lead = (CACHE_LINE - offset) // itemsize
    return lead if lead < m else 0


cdef inline void _columns_of_tile(Py_ssize_t col_tile, Py_ssize_t lead, Py_ssize_t tile_cols,
                                  Py_ssize_t m, Py_ssize_t* j0, Py_ssize_t* nj) noexcept nogil:
    """Column tile -> its first column and width: with a lead, tile 0 is the lead
    columns and the others follow it, tile_cols at a time."""
    if lead == 0:
        j0[0] = col_tile * tile_cols
    elif col_tile == 0:
        j0[0] = 0
        nj[0] = lead
        return
    else:
        j0[0] = lead + (col_tile - 1) * tile_cols
    nj[0] = min(tile_cols, m - j0[0])


cdef int _run_tasks(const floating* X, const floating* Y, floating* out,
                    Py_ssize_t n, Py_ssize_t m, Py_ssize_t d, bint symmetric,
                    bint expansion, const double* shift, const double* x_norms,
                    const double* y_norms, Py_ssize_t tile_cols, Py_ssize_t lead,
                    Py_ssize_t n_row_tiles, Py_ssize_t n_col_tiles, bint by_columns,
                    Py_ssize_t task_begin, Py_ssize_t task_end, bint stream, int finish,
                    fastgd_interrupt* interrupt, bint is_caller) noexcept nogil:
    """Compute the tiles (TILE rows by tile_cols columns, after the lead columns) of
    tasks [task_begin, task_end) with scratch buffers of our own (``by_columns``,
    ``stream``, ``finish``: see sqeuclidean). Column by column, the fused expansion packs all of X's
    row tiles first and each tile of Y once. Stops between two tiles when ``interrupt``
    says so (``is_caller``: this thread polls the signal handlers).

    Returns 0, or -1 when the scratch buffers could not be allocated.
    """
    cdef Py_ssize_t task, row_tile, col_tile, i0, ni, j0, nj
    cdef Py_ssize_t packed_row_tile = -1, packed_col_tile = -1
    cdef Py_ssize_t depth = min(<Py_ssize_t>DEPTH, d)
    cdef floating* x_packed = NULL
    cdef floating* y_packed = NULL
    cdef floating* gram = NULL
    cdef double* y_columns = NULL
    cdef double* sums = NULL
    cdef int status = 0
    cdef bint blocked = _blocked(d, expansion, sizeof(floating), False)
    if expansion:
        x_packed = <floating*>fastgd_aligned_malloc(
            (n_row_tiles if by_columns else 1) * TILE * depth * sizeof(floating))
        y_packed = <floating*>fastgd_aligned_malloc(PANEL_ROWS * depth * sizeof(floating))
        if not blocked:  # the fused expansion keeps its products in registers
            gram = <floating*>fastgd_aligned_malloc(TILE * TILE * sizeof(floating))
        if x_packed == NULL or y_packed == NULL or (gram == NULL and not blocked):
            status = -1
    else:
        y_columns = <double*>fastgd_aligned_malloc(tile_cols * depth * sizeof(double))
        if not blocked:
            sums = <double*>fastgd_aligned_malloc(TILE * TILE * sizeof(double))
        if y_columns == NULL or (sums == NULL and not blocked):
            status = -1
    if status == 0 and by_columns:
        for row_tile in range(n_row_tiles):
            i0 = row_tile * TILE
            _pack_panels(X, d, i0, min(<Py_ssize_t>TILE, n - i0), fastgd_fused_mr(), shift,
                         x_packed + i0 * depth)
    if status == 0:
        for task in range(task_begin, task_end):
            if fastgd_should_stop(interrupt, is_caller):
                break
            _tile_of_task(task, n_row_tiles, n_col_tiles, symmetric, by_columns,
                          &row_tile, &col_tile)
            i0 = row_tile * TILE
            ni = min(<Py_ssize_t>TILE, n - i0)
            _columns_of_tile(col_tile, lead, tile_cols, m, &j0, &nj)
            if expansion and blocked:
                # Column by column, X's panels are all packed already, each row tile's at
                # its own place; row by row, each tile of Y is packed anew.
                _fused_expansion_tile(X, Y, out, d, m, symmetric, shift, x_norms, y_norms,
                                      i0, ni, j0, nj,
                                      not by_columns and row_tile != packed_row_tile,
                                      not by_columns or col_tile != packed_col_tile,
                                      x_packed + i0 * depth if by_columns else x_packed,
                                      y_packed)
                packed_row_tile = row_tile
                packed_col_tile = col_tile
            elif expansion:
                _expansion_tile(X, Y, out, d, m, symmetric, shift, x_norms, y_norms,
                                i0, ni, j0, nj, row_tile != packed_row_tile,
                                x_packed, y_packed, gram)
                packed_row_tile = row_tile
            elif blocked:
                _direct_tile_blocked(X, Y, out, d, m, symmetric, i0, ni, j0, nj, y_columns,
                                     stream)
            else:
                _direct_tile(X, Y, out, d, m, symmetric, i0, ni, j0, nj, y_columns, sums)
            if finish != FINISH_NONE:
                _finish_tile(out, m, symmetric, i0, ni, j0, nj, finish)
    fastgd_aligned_free(x_packed)
    fastgd_aligned_free(y_packed)
    fastgd_aligned_free(gram)
    fastgd_aligned_free(y_columns)
    fastgd_aligned_free(sums)
    return status


cdef void _column_shift(const floating* X, Py_ssize_t n, const floating* Y, Py_ssize_t m,
                        Py_ssize_t d, double* shift) noexcept nogil:
    """Mean of every column over the rows of X and Y; 0 where it is not finite."""
    cdef Py_ssize_t r, k
    memset(shift, 0, d * sizeof(double))
    for r in range(n):
        for k in range(d):
            shift[k] += X[r * d + k]
    for r in range(m):
        for k in range(d):
            shift[k] += Y[r * d + k]
    for k in range(d):
        shift[k] /= <double>(n + m)
        if not (-DBL_MAX <= shift[k] <= DBL_MAX):
            shift[k] = 0.0


def sqeuclidean(const floating[:, ::1] X, const floating[:, ::1] Y, floating[:, ::1] out,
                bint symmetric, bint expansion, int n_threads, bint stream=False,
                int finish=FINISH_NONE):
    """Fill out[i, j] = ||X[i] - Y[j]||^2 (see the module docstring).

    X (n, d), Y (m, d) and out (n, m) share one dtype. With ``symmetric`` Y must
    be X. The caller has checked shapes, n, m, d >= 1 and n_threads >= 1; the
    parallel region is opened only when n_threads > 1. With ``stream`` (for an output
    larger than the cache), the direct method's blocked loops write whole vectors of out
    by non-temporal stores, which do not read its cache lines first (not with
    ``symmetric``, whose tiles are read again to mirror them; not for the expansion, whose
    fused blocks were slower with them: see pairwise_loops.h); the values are the same.
    ``finish`` (a code of fastgd._codes.DISTANCE_FINISHES) turns each finished tile into
    cdist's metric in place: its square root, or half.
    """
    cdef Py_ssize_t n = X.shape[0], m = Y.shape[0], d = X.shape[1]
    cdef Py_ssize_t tile_cols = _tile_columns(
        m, d, symmetric, expansion, sizeof(floating),
        fastgd_fused_nr_f32() if floating is float else fastgd_fused_nr_f64())
    # Not for the expansion through BLAS, whose last bits depend on the GEMMs' shapes: the
    # result must not depend on where out lies. The other methods compute every entry
    # alike in any tile.
    cdef bint bitwise_tiles = not expansion or _blocked(d, expansion, sizeof(floating), False)
    cdef Py_ssize_t lead = (_lead_columns(&out[0, 0], m, sizeof(floating), symmetric)
                            if bitwise_tiles else 0)
    cdef Py_ssize_t n_row_tiles = (n + TILE - 1) // TILE
    cdef Py_ssize_t n_col_tiles = (lead > 0) + (m - lead + tile_cols - 1) // tile_cols
    # Column by column (see X_PANELS_MAX_BYTES): only the fused expansion without
    # symmetry, whose tiles are independent of one another.
    cdef bint by_columns = (expansion and not symmetric
                            and _blocked(d, expansion, sizeof(floating), False)
                            and n_row_tiles * TILE * d * sizeof(floating) <= X_PANELS_MAX_BYTES)
    cdef Py_ssize_t n_tasks, chunk, begin, end
    cdef int n_failed = 0, thread
    cdef double[::1] shift = np.zeros(d if expansion else 1)
    cdef double[::1] x_norms = np.empty(n if expansion else 1)
    cdef double[::1] y_norms = x_norms if symmetric else np.empty(m if expansion else 1)
    cdef const floating* x_data = &X[0, 0]
    cdef const floating* y_data = &Y[0, 0]
    cdef floating* out_data = &out[0, 0]
    cdef fastgd_interrupt interrupt
    stream = stream and not symmetric and not expansion
    fastgd_interrupt_init(&interrupt)

    if symmetric:
        n_tasks = n_row_tiles * (n_row_tiles + 1) // 2
    else:
        n_tasks = n_row_tiles * n_col_tiles
    n_threads = <int>min(<Py_ssize_t>n_threads, n_tasks)

    with nogil:
        if expansion:
            _column_shift(x_data, n, y_data, 0 if symmetric else m, d, &shift[0])
            _centred_sq_norms(x_data, n, d, &shift[0], &x_norms[0])
            if not symmetric:
                _centred_sq_norms(y_data, m, d, &shift[0], &y_norms[0])
        if n_threads <= 1:
            n_failed = -_run_tasks(x_data, y_data, out_data, n, m, d, symmetric, expansion,
                                   &shift[0], &x_norms[0], &y_norms[0], tile_cols, lead,
                                   n_row_tiles, n_col_tiles, by_columns, 0, n_tasks, stream,
                                   finish, &interrupt, True)
        else:
            # Contiguous blocks of tasks, one per thread: neighbouring tiles share rows of X
            # (of Y, column by column).
            chunk = (n_tasks + n_threads - 1) // n_threads
            for thread in prange(n_threads, num_threads=n_threads, schedule="static"):
                begin = thread * chunk
                end = min(begin + chunk, n_tasks)
                if begin < end:
                    n_failed += -_run_tasks(x_data, y_data, out_data, n, m, d, symmetric,
                                            expansion, &shift[0], &x_norms[0], &y_norms[0],
                                            tile_cols, lead, n_row_tiles, n_col_tiles,
                                            by_columns, begin, end, stream, finish,
                                            &interrupt, threadid() == 0)
    fastgd_interrupt_raise(&interrupt)
    if n_failed:
        raise MemoryError("fastgd.sqeuclidean: could not allocate per-thread tile buffers")


# ---------------------------------------------------------------------------------------
# argkmin: the tiles above reduced, while they are in cache, into every query row's best
# candidates.
#
# A row's candidates are `kept` (value, index) pairs; the order is that of (key, index),
# key the value with NaN as +inf; free places hold the sentinel (NaN, NO_INDEX), which every real
# candidate precedes. A tile row is scanned against the row's threshold (the key of its
# last candidate) a block at a time (pairwise_loops.h's first-below scans): a block none
# of whose entries can precede it costs one vectorised test, and after the first tiles
# nearly every block is such. The candidates of a row are a binary max-heap (its root, the
# last in the order, is the threshold), sorted once at the end: a candidate that enters
# costs O(log k) (insertion into a sorted row would cost O(k), 40x slower at k = 1000).
#
# Through BLAS (the expansion below the AVX-512 level) no tile of distances is formed:
# each gram entry is tested against the threshold in the input's precision, with a margin
# that covers the expansion's error, the direct recomputation's and the test's own
# roundings (GRAM_TEST_SLACK), and only an entry that passes gets its exact epilogue value
# (_expansion_entry): the same value sqeuclidean gives for the same tile.

cdef extern from "Python.h":
    const Py_ssize_t NO_INDEX "PY_SSIZE_T_MAX"

cdef enum:
    # The margin of the gram test: (GRAM_TEST_SLACK_PER_FEATURE d +
    # GRAM_TEST_SLACK_CONSTANT) u S, S the largest norms sum of the row in the tile, plus
    # 4 u (|threshold| + ||x||^2). The test's own roundings take at most about
    # 3 u S + u |bound|, the expansion is within (2d + 1) u S of the exact distance, and a
    # recomputed entry within 4 (d + 2) u D <= (8d + 16) u S of it (D <= 2 S for centred
    # rows): a rejected entry's value, either way, is above the threshold.
    GRAM_TEST_SLACK_PER_FEATURE = 12
    GRAM_TEST_SLACK_CONSTANT = 32
    # Through BLAS, each task's rows of X (ARGKMIN_GEMM_ROWS in float32, half as many in
    # float64) against tiles of ARGKMIN_GEMM_COLS rows of Y: larger GEMMs than
    # sqeuclidean's TILE x TILE (the gram tile, 1 MiB, is read once, by the scan), and Y
    # packed once per task's rows.
    ARGKMIN_GEMM_ROWS = 512
    ARGKMIN_GEMM_COLS = 512
    # A thread keeps the norms of its whole part of Y (computed once, not once per task)
    # when the part has at most this many rows (1.5 MiB of norms in float64).
    ARGKMIN_PART_NORMS_ROWS = 1 << 17
    # nan_euclidean_finish looks its scales d / count up in a table up to this many
    # features (divides above).
    NAN_EUCLIDEAN_SCALES = 1 << 16


cdef inline double _key(double value) noexcept nogil:
    return INFINITY if value != value else value


cdef inline bint _precedes(double value, Py_ssize_t index, double other,
                           Py_ssize_t other_index) noexcept nogil:
    """(value, index) comes before (other, other_index) in argkmin's order."""
    value = _key(value)
    other = _key(other)
    return value < other or (value == other and index < other_index)


cdef inline void _sift_down(floating* values, Py_ssize_t* indices, Py_ssize_t size,
                            Py_ssize_t place, floating value, Py_ssize_t index) noexcept nogil:
    """Put (value, index) at ``place`` of a max-heap of ``size`` candidates (every child
    precedes its parent) whose subtrees below ``place`` are heaps, moving it down."""
    cdef Py_ssize_t child
    while True:
        child = 2 * place + 1
        if child >= size:
            break
        if child + 1 < size and _precedes(values[child], indices[child], values[child + 1],
                                          indices[child + 1]):
            child += 1
        if not _precedes(value, index, values[child], indices[child]):
            break
        values[place] = values[child]
        indices[place] = indices[child]
        place = child
    values[place] = value
    indices[place] = index


cdef inline void _offer(floating* values, Py_ssize_t* indices, Py_ssize_t kept,
                        floating value, Py_ssize_t index) noexcept nogil:
    """Put (value, index) among a row's candidates (a max-heap: the root is the last in
    the order) if it precedes the root, which then drops out."""
    if _precedes(value, index, values[0], indices[0]):
        _sift_down(values, indices, kept, 0, value, index)


cdef void _sort_candidates(floating* values, Py_ssize_t* indices,
                           Py_ssize_t kept) noexcept nogil:
    """A row's heap of candidates in order, first to last (heapsort)."""
    cdef Py_ssize_t size
    cdef floating value
    cdef Py_ssize_t index
    for size in range(kept - 1, 0, -1):
        value = values[size]
        index = indices[size]
        values[size] = values[0]
        indices[size] = indices[0]
        _sift_down(values, indices, size, 0, value, index)


cdef inline Py_ssize_t _first_below(const floating* row, const floating* offsets,
                                    floating bound, Py_ssize_t start,
                                    Py_ssize_t n) noexcept nogil:
    """The first b >= start with not (row[b] (+ offsets[b]) > bound), or n (pairwise_loops.h:
    a block of entries per test); without offsets when they are NULL."""
    if floating is float:
        if offsets == NULL:
            return fastgd_first_below_f32(row, bound, start, n)
        return fastgd_first_sum_below_f32(row, offsets, bound, start, n)
    else:
        if offsets == NULL:
            return fastgd_first_below_f64(row, bound, start, n)
        return fastgd_first_sum_below_f64(row, offsets, bound, start, n)


cdef void _reduce_values_row(const floating* row, Py_ssize_t nj, Py_ssize_t j0,
                             Py_ssize_t own, floating* values, Py_ssize_t* indices,
                             Py_ssize_t kept) noexcept nogil:
    """Offer a tile row of distances (columns j0, j0 + 1, ...; column ``own`` left out).
    A NaN is offered too: it may precede a sentinel."""
    cdef floating threshold = <floating>_key(values[0])
    cdef Py_ssize_t b = _first_below(row, <floating*>NULL, threshold, 0, nj)
    while b < nj:
        if j0 + b != own:
            _offer(values, indices, kept, row[b], j0 + b)
            threshold = <floating>_key(values[0])
        b = _first_below(row, <floating*>NULL, threshold, b + 1, nj)


cdef inline double _gram_bound(double threshold, double x_norm, double norms_max,
                               double slack_units, double unit) noexcept nogil:
    """The bound of the gram test: an entry with gram + y_norm above it is above the
    threshold (GRAM_TEST_SLACK). +inf (nothing rejected) for an infinite threshold."""
    return ((threshold - x_norm)
            + unit * (slack_units * norms_max + 4 * (fabs(threshold) + x_norm)))


cdef void _reduce_gram_row(const floating* x_row, const floating* y_rows, Py_ssize_t d,
                           const floating* gram_row, const double* y_norms,
                           const floating* y_norms_low, double norms_max, Py_ssize_t nj,
                           Py_ssize_t j0, Py_ssize_t own, double x_norm, double slack_units,
                           double unit, floating* values, Py_ssize_t* indices,
                           Py_ssize_t kept) noexcept nogil:
    """Offer a row of a gram tile (the tile's rows of Y from y_rows, their norms, the
    low ones rounded to floating; columns j0, ...; ``norms_max`` at least x_norm + every
    y_norm, or +inf to test nothing): only entries that pass the gram test get their
    value.

    With two candidates (k = 1) and the row's own column outside the tile, the tile's
    second smallest gram + y_norm, plus twice the test's margin, bounds the threshold the
    row will have after the tile (two entries are at most that far above their sums), so
    the scan starts from it: it offers about two entries rather than every running
    minimum of the row."""
    cdef double threshold = _key(values[0])
    cdef double cap = INFINITY, second
    if kept == 2 and not (j0 <= own < j0 + nj):
        if floating is float:
            second = x_norm + fastgd_second_smallest_f32(gram_row, y_norms_low, nj)
        else:
            second = x_norm + fastgd_second_smallest_f64(gram_row, y_norms_low, nj)
        cap = second + 2 * unit * (slack_units * norms_max + 4 * (fabs(second) + x_norm))
        if cap < threshold:  # not for a NaN cap
            threshold = cap
    cdef floating bound = <floating>_gram_bound(threshold, x_norm, norms_max, slack_units,
                                                unit)
    cdef Py_ssize_t b = _first_below(gram_row, y_norms_low, bound, 0, nj)
    while b < nj:
        if j0 + b != own:
            _offer(values, indices, kept,
                   _expansion_entry(x_row, y_rows + b * d, d, x_norm, y_norms[b],
                                    gram_row[b]),
                   j0 + b)
            threshold = _key(values[0])
            if cap < threshold:
                threshold = cap
            bound = <floating>_gram_bound(threshold, x_norm, norms_max, slack_units, unit)
        b = _first_below(gram_row, y_norms_low, bound, b + 1, nj)


cdef void _reduce_gram_tile(const floating* x_rows, const floating* y_rows, Py_ssize_t d,
                            const floating* gram, const double* x_norms,
                            const double* y_norms, const floating* y_norms_low,
                            Py_ssize_t i0, Py_ssize_t ni, Py_ssize_t j0, Py_ssize_t nj,
                            bint self_search, floating* values, Py_ssize_t* indices,
                            Py_ssize_t kept) noexcept nogil:
    """Offer a gram tile (ni x nj: X's rows i0, ... from x_rows, Y's rows j0, ... from
    y_rows, and their norms) to its rows' candidates (values and indices from row i0)."""
    cdef double unit = (2.0 ** -24) if floating is float else (2.0 ** -53)
    cdef double slack_units = GRAM_TEST_SLACK_PER_FEATURE * d + GRAM_TEST_SLACK_CONSTANT
    cdef double float_max = FLT_MAX if floating is float else DBL_MAX
    cdef double y_norm_max = 0.0, norms_max
    cdef Py_ssize_t a, b
    for b in range(nj):
        if not (y_norms[b] <= y_norm_max):  # NaN too: then no entry is tested
            y_norm_max = y_norms[b]
    for a in range(ni):
        norms_max = x_norms[a] + y_norm_max
        # Norms the test cannot bound in floating (near overflow, NaN): every entry gets
        # its value.
        if not (norms_max <= float_max / 1024):
            norms_max = INFINITY
        _reduce_gram_row(x_rows + a * d, y_rows, d, gram + a * nj, y_norms, y_norms_low,
                         norms_max, nj, j0, i0 + a if self_search else -1, x_norms[a],
                         slack_units, unit, values + a * kept, indices + a * kept, kept)


cdef inline Py_ssize_t _argkmin_rows(Py_ssize_t d, bint expansion,
                                     Py_ssize_t itemsize) noexcept nogil:
    """Query rows per argkmin task: through BLAS, ARGKMIN_GEMM_ROWS in float32 and half
    as many in float64 (the gram tile keeps its bytes), else TILE."""
    if expansion and not _blocked(d, expansion, itemsize, True):
        return ARGKMIN_GEMM_ROWS * 4 // itemsize
    return TILE


def fused_expansion(Py_ssize_t d, Py_ssize_t itemsize):
    """Whether sqeuclidean's expansion runs fused (in register blocks, not through BLAS)
    for d features of itemsize bytes at the level chosen now: its results then do not
    depend on how the output is cut into tiles."""
    return _blocked(d, True, itemsize, False)


def argkmin_task_rows(Py_ssize_t d, bint expansion, Py_ssize_t itemsize):
    """The most query rows per task of argkmin for d features, the method and the dtype's
    itemsize (the caller may ask for fewer, so that every thread has a task)."""
    return _argkmin_rows(d, expansion, itemsize)


cdef struct ArgkminScratch:
    # One thread's buffers: the tile (gram or distances, rows x cols), the packed rows,
    # the direct method's columns and sums, and the norms of the task's rows of X and of
    # the tile's rows of Y (those also rounded to floating), computed where they are used
    # so that memory does not grow with n or m.
    void* tile
    void* x_packed
    void* y_packed
    double* y_columns
    double* sums
    double* x_norms
    double* y_norms
    void* y_norms_low
    # With y_norms_rows >= a part's rows, the norms of the whole part (of norms_part, -1
    # before the first), computed once; else those of the tile (cols).
    Py_ssize_t y_norms_rows
    Py_ssize_t norms_part


cdef int _argkmin_scratch(ArgkminScratch* scratch, Py_ssize_t rows, Py_ssize_t cols,
                          Py_ssize_t part_rows, Py_ssize_t depth, Py_ssize_t itemsize,
                          bint expansion, bint blocked) noexcept nogil:
    """Allocate a thread's scratch (what the method needs); -1 if that fails."""
    memset(scratch, 0, sizeof(ArgkminScratch))
    scratch.norms_part = -1
    scratch.y_norms_rows = part_rows if part_rows <= ARGKMIN_PART_NORMS_ROWS else cols
    scratch.tile = fastgd_aligned_malloc(rows * cols * itemsize)
    if expansion:
        scratch.x_packed = fastgd_aligned_malloc(rows * depth * itemsize)
        scratch.y_packed = fastgd_aligned_malloc(max(cols, <Py_ssize_t>PANEL_ROWS) * depth
                                                 * itemsize)
        scratch.x_norms = <double*>fastgd_aligned_malloc(rows * sizeof(double))
        scratch.y_norms = <double*>fastgd_aligned_malloc(scratch.y_norms_rows
                                                         * sizeof(double))
        scratch.y_norms_low = fastgd_aligned_malloc(scratch.y_norms_rows * itemsize)
        if (scratch.x_packed == NULL or scratch.y_packed == NULL or scratch.x_norms == NULL
                or scratch.y_norms == NULL or scratch.y_norms_low == NULL):
            return -1
    else:
        scratch.y_columns = <double*>fastgd_aligned_malloc(cols * depth * sizeof(double))
        if not blocked:
            scratch.sums = <double*>fastgd_aligned_malloc(rows * cols * sizeof(double))
        if scratch.y_columns == NULL or (scratch.sums == NULL and not blocked):
            return -1
    return 0 if scratch.tile != NULL else -1


cdef void _argkmin_scratch_free(ArgkminScratch* scratch) noexcept nogil:
    fastgd_aligned_free(scratch.tile)
    fastgd_aligned_free(scratch.x_packed)
    fastgd_aligned_free(scratch.y_packed)
    fastgd_aligned_free(scratch.y_columns)
    fastgd_aligned_free(scratch.sums)
    fastgd_aligned_free(scratch.x_norms)
    fastgd_aligned_free(scratch.y_norms)
    fastgd_aligned_free(scratch.y_norms_low)


cdef void _centred_norms_both(const floating* rows, Py_ssize_t nrows, Py_ssize_t d,
                              const double* shift, double* norms,
                              floating* norms_low) noexcept nogil:
    """The centred squared norms, and the same rounded to floating."""
    cdef Py_ssize_t r
    _centred_sq_norms(rows, nrows, d, shift, norms)
    for r in range(nrows):
        norms_low[r] = <floating>norms[r]


cdef void _argkmin_tile(const floating* X, const floating* Y, Py_ssize_t d,
                        bint self_search, bint expansion, bint blocked, const double* shift,
                        Py_ssize_t i0, Py_ssize_t ni, Py_ssize_t j0, Py_ssize_t nj,
                        bint first_of_task, const double* y_norms,
                        const floating* y_norms_low, ArgkminScratch* scratch,
                        floating* values, Py_ssize_t* indices, Py_ssize_t kept) noexcept nogil:
    """Offer the tile of X's rows i0, ... (ni) by Y's rows j0, ... (nj; their norms in
    y_norms and y_norms_low, with the expansion) to the rows' candidates (values and
    indices from row i0). The tile functions index rows from the tile's first: X, Y and
    the norms are passed from row i0 and column j0."""
    cdef const floating* x_rows = X + i0 * d
    cdef const floating* y_rows = Y + j0 * d
    cdef floating* tile = <floating*>scratch.tile
    cdef Py_ssize_t a
    if expansion and first_of_task:
        _centred_sq_norms(x_rows, ni, d, shift, scratch.x_norms)
    if expansion and not blocked:  # through BLAS: the gram tile, scanned
        _gram_tile(x_rows, y_rows, d, shift, 0, ni, 0, nj, first_of_task,
                   <floating*>scratch.x_packed, <floating*>scratch.y_packed, tile)
        _reduce_gram_tile(x_rows, y_rows, d, tile, scratch.x_norms, y_norms, y_norms_low,
                          i0, ni, j0, nj, self_search, values, indices, kept)
        return
    if expansion:
        _fused_expansion_tile(x_rows, y_rows, tile, d, nj, False, shift, scratch.x_norms,
                              y_norms, 0, ni, 0, nj, first_of_task, True,
                              <floating*>scratch.x_packed, <floating*>scratch.y_packed)
    elif blocked:
        _direct_tile_blocked(x_rows, y_rows, tile, d, nj, False, 0, ni, 0, nj,
                             scratch.y_columns, False)
    else:
        _direct_tile(x_rows, y_rows, tile, d, nj, False, 0, ni, 0, nj, scratch.y_columns,
                     scratch.sums)
    for a in range(ni):
        _reduce_values_row(tile + a * nj, nj, j0, i0 + a if self_search else -1,
                           values + a * kept, indices + a * kept, kept)


cdef int _argkmin_tasks(const floating* X, const floating* Y, Py_ssize_t n, Py_ssize_t m,
                        Py_ssize_t d, bint self_search, bint expansion, const double* shift,
                        floating* values, Py_ssize_t* indices, Py_ssize_t kept,
                        Py_ssize_t n_parts, Py_ssize_t part_cols, Py_ssize_t rows,
                        Py_ssize_t task_begin, Py_ssize_t task_end,
                        fastgd_interrupt* interrupt, bint is_caller) noexcept nogil:
    """argkmin's tasks [task_begin, task_end): task t is the t // n_parts-th block of
    ``rows`` query rows against the part t % n_parts of Y (columns part * part_cols, ...),
    whose candidates go to values[part] and indices[part] (each n x kept). Returns 0, or
    -1 when the scratch buffers could not be allocated."""
    cdef Py_ssize_t task, part, i0, ni, col_tile, j0, nj, j_begin, j_end, r
    cdef bint blocked = _blocked(d, expansion, sizeof(floating), True)
    cdef Py_ssize_t cols = ARGKMIN_GEMM_COLS if expansion and not blocked else TILE
    cdef floating* row_values
    cdef Py_ssize_t* row_indices
    cdef ArgkminScratch scratch
    cdef int status = _argkmin_scratch(&scratch, rows, cols, part_cols,
                                       min(<Py_ssize_t>DEPTH, d), sizeof(floating),
                                       expansion, blocked)
    cdef bint whole_part
    cdef double* y_norms = scratch.y_norms
    cdef floating* y_norms_low = <floating*>scratch.y_norms_low
    if status == 0:
        whole_part = scratch.y_norms_rows >= part_cols
        for task in range(task_begin, task_end):
            part = task % n_parts
            i0 = (task // n_parts) * rows
            ni = min(rows, n - i0)
            j_begin = part * part_cols
            j_end = min(m, j_begin + part_cols)
            row_values = values + (part * n + i0) * kept
            row_indices = indices + (part * n + i0) * kept
            for r in range(ni * kept):
                row_values[r] = <floating>NAN
                row_indices[r] = NO_INDEX
            if expansion and whole_part and scratch.norms_part != part:
                _centred_norms_both(Y + j_begin * d, j_end - j_begin, d, shift,
                                    scratch.y_norms, <floating*>scratch.y_norms_low)
                scratch.norms_part = part
            for col_tile in range((j_end - j_begin + cols - 1) // cols):
                if fastgd_should_stop(interrupt, is_caller):
                    break
                j0 = j_begin + col_tile * cols
                nj = min(cols, j_end - j0)
                if expansion and whole_part:
                    y_norms = scratch.y_norms + (j0 - j_begin)
                    y_norms_low = <floating*>scratch.y_norms_low + (j0 - j_begin)
                elif expansion:
                    _centred_norms_both(Y + j0 * d, nj, d, shift, y_norms, y_norms_low)
                _argkmin_tile(X, Y, d, self_search, expansion, blocked, shift, i0, ni, j0,
                              nj, col_tile == 0, y_norms, y_norms_low, &scratch,
                              row_values, row_indices, kept)
            for r in range(ni):
                _sort_candidates(row_values + r * kept, row_indices + r * kept, kept)
    _argkmin_scratch_free(&scratch)
    return status


def argkmin(const floating[:, ::1] X, const floating[:, ::1] Y, bint self_search,
            bint expansion, floating[:, :, ::1] values, Py_ssize_t[:, :, ::1] indices,
            Py_ssize_t part_cols, Py_ssize_t task_rows, int n_threads):
    """For every row of X, the ``kept`` nearest rows of each part of Y, in the order of
    (distance with NaN as +inf, index), without the n x m matrix.

    values and indices have shape (n_parts, n, kept): part p is Y's rows p * part_cols,
    ..., and a part with fewer than kept rows fills its last places with (NaN,
    PY_SSIZE_T_MAX). Each task takes ``task_rows`` query rows (at most
    argkmin_task_rows's). With ``self_search`` Y is X and each row leaves itself out. The
    distances are sqeuclidean's for the same method (``expansion``). The caller has
    checked shapes, n, m, d >= 1, kept >= 1 and n_threads >= 1, and merges the parts.
    Memory beyond values and indices: a few tiles per thread, whatever n and m.
    """
    cdef Py_ssize_t n = X.shape[0], m = Y.shape[0], d = X.shape[1]
    cdef Py_ssize_t kept = values.shape[2], n_parts = values.shape[0]
    cdef Py_ssize_t rows = max(1, min(task_rows, _argkmin_rows(d, expansion, sizeof(floating))))
    cdef Py_ssize_t n_tasks = (n + rows - 1) // rows * n_parts, chunk, begin, end
    cdef int n_failed = 0, thread
    cdef double[::1] shift = np.zeros(d)
    cdef const floating* x_data = &X[0, 0]
    cdef const floating* y_data = &Y[0, 0]
    cdef fastgd_interrupt interrupt
    fastgd_interrupt_init(&interrupt)
    n_threads = <int>min(<Py_ssize_t>n_threads, n_tasks)

    with nogil:
        if expansion:
            _column_shift(x_data, n, y_data, 0 if self_search else m, d, &shift[0])
        if n_threads <= 1:
            n_failed = -_argkmin_tasks(x_data, y_data, n, m, d, self_search, expansion,
                                       &shift[0], &values[0, 0, 0], &indices[0, 0, 0], kept,
                                       n_parts, part_cols, rows, 0, n_tasks, &interrupt,
                                       True)
        else:
            chunk = (n_tasks + n_threads - 1) // n_threads
            for thread in prange(n_threads, num_threads=n_threads, schedule="static"):
                begin = thread * chunk
                end = min(begin + chunk, n_tasks)
                if begin < end:
                    n_failed += -_argkmin_tasks(x_data, y_data, n, m, d, self_search,
                                                expansion, &shift[0], &values[0, 0, 0],
                                                &indices[0, 0, 0], kept, n_parts,
                                                part_cols, rows, begin, end, &interrupt,
                                                threadid() == 0)
    fastgd_interrupt_raise(&interrupt)
    if n_failed:
        raise MemoryError("fastgd.argkmin: could not allocate per-thread tile buffers")


ctypedef fused count_t:
    float
    double


def nan_euclidean_finish(const double[:, ::1] norms, const double[:, ::1] gram,
                         const count_t[:, ::1] count, Py_ssize_t d, floating[:, ::1] out,
                         Py_ssize_t[::1] suspects):
    """cdist's "nan_euclidean" from its expansion, one pass over a block of rows:
    D = norms - 2 gram (the centred rows with their missing coordinates as 0: norms the
    squared norms over the coordinates present in both, gram the products, count how
    many are present in both), then out = sqrt(D d / count), rounded to out's dtype.
    Where count is 0, out is NaN. Where the expansion may have cancelled
    (D - CANCELLATION_RATIO norms not positive and finite), out is NaN too and the entry's
    flat index (i * m + j) goes to suspects, in order, for the caller to recompute by
    direct differences. Returns the number of suspects (suspects holds n * m)."""
    cdef Py_ssize_t n = norms.shape[0], m = norms.shape[1], i, j, found = 0, c
    cdef double dist, margin, present
    # d / count for every count (whole numbers from 0 to d), so that an entry costs a load
    # instead of a division; the same values as the division. Above NAN_EUCLIDEAN_SCALES
    # features there is no table (scales has one unused entry) and the pass divides.
    cdef bint by_table = d <= NAN_EUCLIDEAN_SCALES
    cdef double[::1] scales = np.empty(d + 1 if by_table else 1)
    for c in range(1, scales.shape[0]):
        scales[c] = <double>d / <double>c
    with nogil:
        for i in range(n):
            for j in range(m):
                present = count[i, j]
                dist = norms[i, j] - 2.0 * gram[i, j]
                margin = dist - CANCELLATION_RATIO * norms[i, j]
                if present > 0 and margin > 0 and margin < INFINITY:
                    if by_table:
                        out[i, j] = <floating>sqrt(dist * scales[<Py_ssize_t>present])
                    else:
                        out[i, j] = <floating>sqrt(dist * (d / present))
                else:
                    out[i, j] = <floating>NAN
                    if present > 0:
                        suspects[found] = i * m + j
                        found += 1
    return found
