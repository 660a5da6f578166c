/* The vector loops of fastgd.sqeuclidean, compiled once per instruction-set level
 * (cpu_dispatch.h) and chosen at import:
 *
 *   epilogue row   D = (||x||^2 + ||y||^2) + gram, rounded to the output dtype, with a
 *                  flag per block of FASTGD_SUSPECT_BLOCK entries where the expansion may
 *                  have cancelled (the block is then recomputed by direct differences);
 *   direct pair    sums[b] (+)= (x[k] - y[k, b])^2 in double for two rows of X;
 *   round row      direct sums rounded to the output dtype, with a flag if any is 0;
 *   first below    argkmin's scan of a tile row: the first entry from a start on that is
 *                  not above a row's bound (NaN included), a block of entries per test;
 *   finish block   a finished tile of squared distances turned into cdist's metric in
 *                  place while it is in cache (its root, or half);
 *
 * and register-blocked tiles (further below), for AVX-512 and for AVX2 CPUs: the fused
 * expansion and the blocked direct sums.
 *
 * Each entry of these loops is computed on its own by correctly rounded operations in a
 * fixed order (no FMA contraction: -ffp-contract=off), so every level gives bitwise the same
 * results; only the fused expansion sums its dot products in an order of its own.
 */
#ifndef FASTGD_PAIRWISE_LOOPS_H
#define FASTGD_PAIRWISE_LOOPS_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "cpu_dispatch.h"
#include "metrics.h"

/* The smallest positive subnormals: 2^-149 and 2^-1074. */
#define FASTGD_FLOAT_TRUE_MIN 0x1p-149f
#define FASTGD_DOUBLE_TRUE_MIN 0x1p-1074

/* What a distance that rounded to 0 stands for: 0 for rows equal coordinate by coordinate
 * (as ==, so -0 equals +0), else an underflow, stored as the smallest subnormal because 0
 * means equal rows. */
#define FASTGD_DEFINE_ZERO_DISTANCE(NAME, REAL, TRUE_MIN)                               \
    static inline REAL NAME(const REAL *x, const REAL *y, ptrdiff_t d)                  \
    {                                                                                   \
        for (ptrdiff_t k = 0; k < d; k++)                                               \
            if (x[k] != y[k])                                                           \
                return TRUE_MIN;                                                        \
        return 0;                                                                       \
    }
FASTGD_DEFINE_ZERO_DISTANCE(fastgd_zero_distance_f64, double, FASTGD_DOUBLE_TRUE_MIN)
FASTGD_DEFINE_ZERO_DISTANCE(fastgd_zero_distance_f32, float, FASTGD_FLOAT_TRUE_MIN)
/* The largest double that rounds to 0 in float32 (half the smallest subnormal: a tie,
 * rounded to even). */
#define FASTGD_FLOAT_ROUNDS_TO_ZERO 0x1p-150
/* Entries of an output row checked together for cancellation; only a flagged block is
 * scanned again, so a rare suspect entry costs a block, not a row. */
#define FASTGD_SUSPECT_BLOCK 32

/* Top bit set unless margin is positive and finite. bits + 2^52 carries into the top bit
 * for +inf and +NaN and keeps it for -0 and negative finite values; bits - 1 wraps for +0
 * and keeps it for -inf and -NaN. Integer add and OR only, so a loop that ORs these
 * together vectorises even on baseline SSE2, where a compare accumulated into a flag
 * does not. */
static inline uint64_t fastgd_margin_bits(double margin)
{
    uint64_t bits;
    memcpy(&bits, &margin, sizeof bits);
    return (bits + 0x0010000000000000ULL) | (bits - 1);
}

/* Top bit set where a stored value may be zero (also for negative or NaN values, which
 * only costs a closer look): vectorisable, like the above. */
static inline uint64_t fastgd_zero_bits_f64(double value)
{
    uint64_t bits;
    memcpy(&bits, &value, sizeof bits);
    return bits - 1;
}
static inline uint64_t fastgd_zero_bits_f32(float value)
{
    uint32_t bits;
    memcpy(&bits, &value, sizeof bits);
    return (uint64_t)bits - 1;
}

/* The cancellation threshold. A kept float32 entry also stays above the smallest float32
 * subnormal, so that it never rounds to 0 (0 means equal rows); float64 needs no floor. */
#define FASTGD_THRESHOLD_f32(t)                                                         \
    ((t) > (double)FASTGD_FLOAT_TRUE_MIN ? (t) : (double)FASTGD_FLOAT_TRUE_MIN)
#define FASTGD_THRESHOLD_f64(t) (t)
/* Top bit set where an entry of the expansion is not kept: unless D - threshold is
 * positive and finite (NaN and an overflowed norm sum make it NaN or inf). */
static inline uint64_t fastgd_suspect_bits_f32(double dist, double norms_sum, double ratio)
{
    return fastgd_margin_bits(dist - FASTGD_THRESHOLD_f32(ratio * norms_sum));
}
static inline uint64_t fastgd_suspect_bits_f64(double dist, double norms_sum, double ratio)
{
    return fastgd_margin_bits(dist - FASTGD_THRESHOLD_f64(ratio * norms_sum));
}

/* out_row[b] = (x_norm + y_norms[b]) + gram_row[b], rounded to REAL, for b < n; flags[q]
 * is 1 where block q (FASTGD_SUSPECT_BLOCK entries) holds an entry not kept (SUSPECT).
 * Returns whether any block is flagged. */
#define FASTGD_DEFINE_EPILOGUE_ROW(NAME, TARGET, REAL, SUSPECT)                            \
    TARGET static int NAME(const REAL *restrict gram_row, const double *restrict y_norms, \
                           double x_norm, double ratio, REAL *restrict out_row,         \
                           ptrdiff_t n, unsigned char *restrict flags)                  \
    {                                                                                   \
        int any = 0;                                                                    \
        for (ptrdiff_t start = 0; start < n; start += FASTGD_SUSPECT_BLOCK) {           \
            ptrdiff_t end = start + FASTGD_SUSPECT_BLOCK < n ? start + FASTGD_SUSPECT_BLOCK \
                                                             : n;                       \
            uint64_t suspect = 0;                                                       \
            for (ptrdiff_t b = start; b < end; b++) {                                   \
                double norms_sum = x_norm + y_norms[b];                                 \
                double dist = norms_sum + (double)gram_row[b];                          \
                out_row[b] = (REAL)dist;                                                \
                suspect |= SUSPECT(dist, norms_sum, ratio);                             \
            }                                                                           \
            flags[start / FASTGD_SUSPECT_BLOCK] = (unsigned char)(suspect >> 63);       \
            any |= (int)(suspect >> 63);                                                \
        }                                                                               \
        return any;                                                                     \
    }

/* sums0[b] (+)= METRIC's term of (x0[k], y_columns[k, b]) (metrics.h) for k < depth and
 * b_start <= b < n, and the same for x1 into sums1: two rows of X share every load of Y,
 * and the loop over b vectorises. With `resume` the sums continue from their stored
 * values, so chunks of features add up in the order of one sequential loop (the first
 * term is the term itself: 0 + t = t). */
#define FASTGD_DEFINE_DIRECT_PAIR(NAME, TARGET, REAL, METRIC)                           \
    TARGET static void NAME(const REAL *x0, const REAL *x1,                             \
                            const double *restrict y_columns, ptrdiff_t n,              \
                            ptrdiff_t b_start, ptrdiff_t depth, int resume,             \
                            double *restrict sums0, double *restrict sums1)             \
    {                                                                                   \
        for (ptrdiff_t k = 0; k < depth; k++) {                                         \
            const double x0k = (double)x0[k], x1k = (double)x1[k];                      \
            const double *restrict y_row = y_columns + k * n;                           \
            if (k == 0 && !resume) {                                                    \
                for (ptrdiff_t b = b_start; b < n; b++) {                               \
                    sums0[b] = FASTGD_METRIC_TERM(METRIC, x0k, y_row[b]);               \
                    sums1[b] = FASTGD_METRIC_TERM(METRIC, x1k, y_row[b]);               \
                }                                                                       \
            } else {                                                                    \
                for (ptrdiff_t b = b_start; b < n; b++) {                               \
                    sums0[b] += FASTGD_METRIC_TERM(METRIC, x0k, y_row[b]);              \
                    sums1[b] += FASTGD_METRIC_TERM(METRIC, x1k, y_row[b]);              \
                }                                                                       \
            }                                                                           \
        }                                                                               \
    }

/* out_row[b] = METRIC's distance from sums[b], rounded to REAL, for b < n; returns 1 if
 * any may be 0. */
#define FASTGD_DEFINE_ROUND_ROW(NAME, TARGET, REAL, ZERO_BITS, METRIC)                  \
    TARGET static int NAME(const double *restrict sums, REAL *restrict out_row,         \
                           ptrdiff_t n)                                                 \
    {                                                                                   \
        uint64_t zero = 0;                                                              \
        for (ptrdiff_t b = 0; b < n; b++) {                                             \
            REAL value = (REAL)FASTGD_METRIC_FINISH(METRIC, sums[b]);                   \
            out_row[b] = value;                                                         \
            zero |= ZERO_BITS(value);                                                   \
        }                                                                               \
        return (int)(zero >> 63);                                                       \
    }

/* Entries tested together by the first-below scans: one branch per block. */
#define FASTGD_SCAN_BLOCK 32

/* The first b in [start, n) where !(ENTRY(b) > bound), NaN included, or n; ENTRY(b) is
 * row[b] or row[b] + offsets[b] (in REAL). Blocks without such an entry cost one
 * vectorised test each; the block's flag is an integer as wide as REAL (FLAG), so that the
 * compares' lanes OR together without shuffles. */
#define FASTGD_DEFINE_FIRST_BELOW(NAME, TARGET, REAL, FLAG, ENTRY)                      \
    TARGET static ptrdiff_t NAME(const REAL *restrict row, const REAL *restrict offsets, \
                                 REAL bound, ptrdiff_t start, ptrdiff_t n)              \
    {                                                                                   \
        ptrdiff_t b = start;                                                            \
        for (; b + FASTGD_SCAN_BLOCK <= n; b += FASTGD_SCAN_BLOCK) {                    \
            FLAG hit = 0;                                                               \
            for (ptrdiff_t e = b; e < b + FASTGD_SCAN_BLOCK; e++)                       \
                hit |= (FLAG)!(ENTRY(e) > bound);                                       \
            if (hit)                                                                    \
                break;                                                                  \
        }                                                                               \
        for (; b < n; b++)                                                              \
            if (!(ENTRY(b) > bound))                                                    \
                return b;                                                               \
        return n;                                                                       \
    }
/* The second smallest of row[b] + offsets[b] (in REAL) over b < n, NaN left out; +inf if
 * fewer than two are not NaN: the nearest-neighbour search's first threshold for a row.
 * SCAN_BLOCK lanes of running smallest and second smallest, combined at the end. */
#define FASTGD_DEFINE_SECOND_SMALLEST(NAME, TARGET, REAL)                               \
    TARGET static REAL NAME(const REAL *restrict row, const REAL *restrict offsets,     \
                            ptrdiff_t n)                                                \
    {                                                                                   \
        REAL first[FASTGD_SCAN_BLOCK], second[FASTGD_SCAN_BLOCK];                       \
        for (int l = 0; l < FASTGD_SCAN_BLOCK; l++)                                     \
            first[l] = second[l] = (REAL)INFINITY;                                      \
        ptrdiff_t b = 0;                                                                \
        for (; b + FASTGD_SCAN_BLOCK <= n; b += FASTGD_SCAN_BLOCK)                      \
            for (int l = 0; l < FASTGD_SCAN_BLOCK; l++) {                               \
                REAL value = row[b + l] + offsets[b + l];                               \
                value = value == value ? value : (REAL)INFINITY;                        \
                const REAL above = value > first[l] ? value : first[l];                 \
                second[l] = above < second[l] ? above : second[l];                      \
                first[l] = value < first[l] ? value : first[l];                         \
            }                                                                           \
        REAL least = (REAL)INFINITY, next = (REAL)INFINITY;                             \
        for (int l = 0; l < 2 * FASTGD_SCAN_BLOCK + (int)(n - b); l++) {                \
            const REAL value = l < FASTGD_SCAN_BLOCK       ? first[l]                   \
                               : l < 2 * FASTGD_SCAN_BLOCK ? second[l - FASTGD_SCAN_BLOCK] \
                                                           : row[b + l - 2 * FASTGD_SCAN_BLOCK] \
                                                                 + offsets[b + l - 2 * FASTGD_SCAN_BLOCK]; \
            if (value < least) {                                                        \
                next = least;                                                           \
                least = value;                                                          \
            } else if (value < next) {                                                  \
                next = value;                                                           \
            }                                                                           \
        }                                                                               \
        return next;                                                                    \
    }

/* A block of the output (rows x cols, leading dimension ldo) in place: its square root
 * (FASTGD_FINISH_SQRT) or half (FASTGD_FINISH_HALF), in REAL: the correctly rounded
 * operations of NumPy's np.sqrt and `*= 0.5`, so bitwise the same. */
#define FASTGD_DEFINE_FINISH_BLOCK(NAME, TARGET, REAL, SQRT)                            \
    TARGET static void NAME(REAL *out, ptrdiff_t ldo, ptrdiff_t rows, ptrdiff_t cols,   \
                            int finish)                                                 \
    {                                                                                   \
        for (ptrdiff_t r = 0; r < rows; r++) {                                          \
            REAL *restrict row = out + r * ldo;                                         \
            if (finish == FASTGD_FINISH_SQRT)                                           \
                for (ptrdiff_t b = 0; b < cols; b++)                                    \
                    row[b] = SQRT(row[b]);                                              \
            else if (finish == FASTGD_FINISH_HALF)                                      \
                for (ptrdiff_t b = 0; b < cols; b++)                                    \
                    row[b] = row[b] * (REAL)0.5;                                        \
        }                                                                               \
    }

#define FASTGD_ROW_ENTRY(e) (row[e])
#define FASTGD_ROW_PLUS_OFFSET(e) (row[e] + offsets[e])

#define FASTGD_DEFINE_PAIRWISE_LEVEL(LEVEL, TARGET)                                     \
    FASTGD_DEFINE_EPILOGUE_ROW(fastgd_epilogue_row_f32_##LEVEL, TARGET, float,         \
                               fastgd_suspect_bits_f32)                                   \
    FASTGD_DEFINE_EPILOGUE_ROW(fastgd_epilogue_row_f64_##LEVEL, TARGET, double,        \
                               fastgd_suspect_bits_f64)                                   \
    FASTGD_DEFINE_DIRECT_PAIR(fastgd_direct_pair_f32_##LEVEL, TARGET, float,            \
                              sqeuclidean)                                              \
    FASTGD_DEFINE_DIRECT_PAIR(fastgd_direct_pair_f64_##LEVEL, TARGET, double,           \
                              sqeuclidean)                                              \
    FASTGD_DEFINE_ROUND_ROW(fastgd_round_row_f32_##LEVEL, TARGET, float,                \
                            fastgd_zero_bits_f32, sqeuclidean)                          \
    FASTGD_DEFINE_ROUND_ROW(fastgd_round_row_f64_##LEVEL, TARGET, double,               \
                            fastgd_zero_bits_f64, sqeuclidean)                          \
    FASTGD_DEFINE_FIRST_BELOW(fastgd_first_below_f32_##LEVEL, TARGET, float, int32_t,   \
                              FASTGD_ROW_ENTRY)                                         \
    FASTGD_DEFINE_FIRST_BELOW(fastgd_first_below_f64_##LEVEL, TARGET, double, int64_t,  \
                              FASTGD_ROW_ENTRY)                                         \
    FASTGD_DEFINE_FIRST_BELOW(fastgd_first_sum_below_f32_##LEVEL, TARGET, float,        \
                              int32_t, FASTGD_ROW_PLUS_OFFSET)                          \
    FASTGD_DEFINE_FIRST_BELOW(fastgd_first_sum_below_f64_##LEVEL, TARGET, double,       \
                              int64_t, FASTGD_ROW_PLUS_OFFSET)                          \
    FASTGD_DEFINE_FINISH_BLOCK(fastgd_finish_block_f32_##LEVEL, TARGET, float, sqrtf)   \
    FASTGD_DEFINE_FINISH_BLOCK(fastgd_finish_block_f64_##LEVEL, TARGET, double, sqrt)   \
    FASTGD_DEFINE_SECOND_SMALLEST(fastgd_second_smallest_f32_##LEVEL, TARGET, float)    \
    FASTGD_DEFINE_SECOND_SMALLEST(fastgd_second_smallest_f64_##LEVEL, TARGET, double)

FASTGD_DEFINE_PAIRWISE_LEVEL(baseline, )
#if FASTGD_X86_DISPATCH
FASTGD_DEFINE_PAIRWISE_LEVEL(avx2, FASTGD_TARGET_AVX2)
FASTGD_DEFINE_PAIRWISE_LEVEL(avx512, FASTGD_TARGET_AVX512)
#define FASTGD_PAIRWISE_HIGHEST FASTGD_LEVEL_AVX512
#else
#define FASTGD_PAIRWISE_HIGHEST FASTGD_LEVEL_BASELINE
#endif

/* The level the loops run at (set once at import by fastgd_pairwise_select_level). */
static int fastgd_pairwise_level = FASTGD_LEVEL_BASELINE;

/* Choose the loops for this CPU, at most level `asked`; returns the level chosen. */
static int fastgd_pairwise_select_level(int asked)
{
    fastgd_pairwise_level = fastgd_choose_vector_level(asked, FASTGD_PAIRWISE_HIGHEST);
    return fastgd_pairwise_level;
}

#define FASTGD_PAIRWISE_CALL(NAME, ...)                                                 \
    FASTGD_LEVEL_CALL(fastgd_pairwise_level, NAME, __VA_ARGS__)

#define FASTGD_DEFINE_PAIRWISE_DISPATCH(REALNAME, REAL)                                 \
    static inline int fastgd_epilogue_row_##REALNAME(                                   \
        const REAL *gram_row, const double *y_norms, double x_norm, double ratio,       \
        REAL *out_row, ptrdiff_t n, unsigned char *flags)                               \
    {                                                                                   \
        return FASTGD_PAIRWISE_CALL(fastgd_epilogue_row_##REALNAME, gram_row, y_norms,  \
                                    x_norm, ratio, out_row, n, flags);                  \
    }                                                                                   \
    static inline void fastgd_direct_pair_##REALNAME(                                   \
        const REAL *x0, const REAL *x1, const double *y_columns, ptrdiff_t n,           \
        ptrdiff_t b_start, ptrdiff_t depth, int resume, double *sums0, double *sums1)   \
    {                                                                                   \
        FASTGD_PAIRWISE_CALL(fastgd_direct_pair_##REALNAME, x0, x1, y_columns, n,       \
                             b_start, depth, resume, sums0, sums1);                     \
    }                                                                                   \
    static inline int fastgd_round_row_##REALNAME(const double *sums, REAL *out_row,    \
                                                  ptrdiff_t n)                          \
    {                                                                                   \
        return FASTGD_PAIRWISE_CALL(fastgd_round_row_##REALNAME, sums, out_row, n);     \
    }                                                                                   \
    static inline ptrdiff_t fastgd_first_below_##REALNAME(                              \
        const REAL *row, REAL bound, ptrdiff_t start, ptrdiff_t n)                      \
    {                                                                                   \
        return FASTGD_PAIRWISE_CALL(fastgd_first_below_##REALNAME, row, NULL, bound,    \
                                    start, n);                                          \
    }                                                                                   \
    static inline ptrdiff_t fastgd_first_sum_below_##REALNAME(                          \
        const REAL *row, const REAL *offsets, REAL bound, ptrdiff_t start, ptrdiff_t n) \
    {                                                                                   \
        return FASTGD_PAIRWISE_CALL(fastgd_first_sum_below_##REALNAME, row, offsets,    \
                                    bound, start, n);                                   \
    }                                                                                   \
    static inline REAL fastgd_second_smallest_##REALNAME(const REAL *row,               \
                                                         const REAL *offsets,           \
                                                         ptrdiff_t n)                   \
    {                                                                                   \
        return FASTGD_PAIRWISE_CALL(fastgd_second_smallest_##REALNAME, row, offsets, n); \
    }                                                                                   \
    static inline void fastgd_finish_block_##REALNAME(REAL *out, ptrdiff_t ldo,         \
                                                      ptrdiff_t rows, ptrdiff_t cols,   \
                                                      int finish)                       \
    {                                                                                   \
        FASTGD_PAIRWISE_CALL(fastgd_finish_block_##REALNAME, out, ldo, rows, cols,      \
                             finish);                                                   \
    }

FASTGD_DEFINE_PAIRWISE_DISPATCH(f32, float)
FASTGD_DEFINE_PAIRWISE_DISPATCH(f64, double)

/* ---------------------------------------------------------------------------------------
 * The fused expansion for AVX-512 CPUs: the Gram products and the epilogue in one pass,
 * without a Gram tile in memory. BLAS libraries often run their AVX2 kernels on AVX-512
 * CPUs (OpenBLAS picks Haswell kernels for CPUs it does not know), at half the width this
 * CPU has; this kernel uses it all.
 *
 * The centred rows are packed in panels, [panel][k][lane] with FASTGD_FUSED_MR rows of X or
 * FASTGD_FUSED_NR_<dtype> rows of Y per panel, zero-padded. A block of MR x NR dot products
 * stays in 24 registers over all d features (d <= DEPTH), one FMA per feature in order,
 * then goes through the same epilogue as the unfused path: D = (||x||^2 + ||y||^2) - 2 x.y
 * in double, rounded once, kept where D - threshold is positive and finite; the other
 * entries are recomputed at once by direct differences of the original rows. The dot products are summed in another order than BLAS's, inside the same
 * error bound: the result can differ from the unfused path's in the last bits, never
 * beyond the promised accuracy.
 */
#define FASTGD_FUSED_MR 8
#define FASTGD_FUSED_NR_f64 24
#define FASTGD_FUSED_NR_f32 48
#define FASTGD_FUSED_NR_MAX 48
/* The AVX2 level's blocks (further below). */
#define FASTGD_FUSED_MR_AVX2 4
#define FASTGD_FUSED_NR_AVX2_f64 12
#define FASTGD_FUSED_NR_AVX2_f32 24

#if FASTGD_X86_DISPATCH
#include <immintrin.h>

/* Lanes < count of an 8-lane mask. */
static inline __mmask8 fastgd_lanes8(ptrdiff_t count)
{
    return count >= 8 ? (__mmask8)0xFF : count <= 0 ? (__mmask8)0 : (__mmask8)((1u << count) - 1);
}

/* 8 vectors of 8 doubles transposed in place: rows[j][l] becomes rows[l][j]. */
FASTGD_TARGET_AVX512 static inline void fastgd_transpose_8x8_f64(__m512d *rows)
{
    __m512d pairs[8], quads[8];
    for (int r = 0; r < 8; r += 2) {
        pairs[r] = _mm512_unpacklo_pd(rows[r], rows[r + 1]);
        pairs[r + 1] = _mm512_unpackhi_pd(rows[r], rows[r + 1]);
    }
    for (int half = 0; half < 8; half += 4)
        for (int c = 0; c < 2; c++) {
            quads[half + c] = _mm512_shuffle_f64x2(pairs[half + c], pairs[half + 2 + c], 0x88);
            quads[half + 2 + c] = _mm512_shuffle_f64x2(pairs[half + c], pairs[half + 2 + c], 0xDD);
        }
    for (int c = 0; c < 4; c++) {
        rows[c] = _mm512_shuffle_f64x2(quads[c], quads[4 + c], 0x88);
        rows[4 + c] = _mm512_shuffle_f64x2(quads[c], quads[4 + c], 0xDD);
    }
}

/* packed[(p * d + k) * width + l] = rows[row0 + p * width + l, k] - shift[k], rounded to
 * REAL (exactly as the unfused path packs them), 0 past the last row: the fused
 * expansion's panels. A panel is filled 8 rows by 8 features at a time, transposed in
 * registers, so that its cache lines are written whole: row by row, a row wrote one
 * element into each of d lines (a panel of 24 rows and 256 features is the size of L1),
 * about 10% of the time at 4000 x 4000 x 256 float64. LOAD8 reads 8 elements as doubles,
 * STORE8 rounds 8 doubles to REAL and stores them. width is a multiple of 8. */
#define FASTGD_DEFINE_PACK_PANELS(NAME, REAL, LOAD8, STORE8)                            \
    FASTGD_TARGET_AVX512 static void NAME(const REAL *rows, ptrdiff_t d, ptrdiff_t row0, \
                                          ptrdiff_t nrows, ptrdiff_t width,             \
                                          const double *shift, REAL *packed)            \
    {                                                                                   \
        const ptrdiff_t n_groups = (nrows + width - 1) / width * width / 8;             \
        for (ptrdiff_t group = 0; group < n_groups; group++) {                          \
            const ptrdiff_t r0 = group * 8, in_rows = nrows - r0;                       \
            REAL *lines = packed + (r0 / width) * d * width + r0 % width;               \
            const REAL *src = rows + (row0 + (in_rows > 0 ? r0 : 0)) * d;               \
            ptrdiff_t k = 0;                                                            \
            if (in_rows >= 8) {                                                         \
                for (; k + 8 <= d; k += 8) {                                            \
                    const __m512d centre = _mm512_loadu_pd(shift + k);                  \
                    __m512d block[8];                                                   \
                    for (int l = 0; l < 8; l++)                                         \
                        block[l] = _mm512_sub_pd(LOAD8(src + l * d + k), centre);       \
                    fastgd_transpose_8x8_f64(block);                                    \
                    for (int c = 0; c < 8; c++)                                         \
                        STORE8(lines + (k + c) * width, block[c]);                      \
                }                                                                       \
            }                                                                           \
            for (; k < d; k++)                                                          \
                for (ptrdiff_t l = 0; l < 8; l++)                                       \
                    lines[k * width + l] = l < in_rows                                  \
                        ? (REAL)((double)src[l * d + k] - shift[k]) : (REAL)0;          \
        }                                                                               \
    }
#define FASTGD_LOAD8_F64(address) _mm512_loadu_pd(address)
#define FASTGD_STORE8_F64(address, values) _mm512_storeu_pd(address, values)
#define FASTGD_LOAD8_F32(address) _mm512_cvtps_pd(_mm256_loadu_ps(address))
#define FASTGD_STORE8_F32(address, values) _mm256_storeu_ps(address, _mm512_cvtpd_ps(values))
FASTGD_DEFINE_PACK_PANELS(fastgd_pack_panels_f32_avx512, float, FASTGD_LOAD8_F32,
                          FASTGD_STORE8_F32)
FASTGD_DEFINE_PACK_PANELS(fastgd_pack_panels_f64_avx512, double, FASTGD_LOAD8_F64,
                          FASTGD_STORE8_F64)

/* sum_k (x[k] - y[k])^2 (sqeuclidean's terms, metrics.h) in double over the original rows,
 * eight features at a time: the
 * direct recomputation of an entry the expansion may have cancelled (any order of the sum
 * is well inside the promised bound). 0 in the output dtype means equal rows: a positive
 * sum that rounds to 0 becomes the smallest subnormal. */
FASTGD_TARGET_AVX512 static inline double fastgd_direct_sum_f64_avx512(const double *x,
                                                                      const double *y,
                                                                      ptrdiff_t d)
{
    __m512d sums = _mm512_setzero_pd();
    for (ptrdiff_t k = 0; k < d; k += 8) {
        __mmask8 lanes = fastgd_lanes8(d - k);
        sums = _mm512_add_pd(sums, FASTGD_METRIC_TERM8(sqeuclidean,
                                                       _mm512_maskz_loadu_pd(lanes, x + k),
                                                       _mm512_maskz_loadu_pd(lanes, y + k)));
    }
    return _mm512_reduce_add_pd(sums);
}
FASTGD_TARGET_AVX512 static inline double fastgd_direct_sum_f32_avx512(const float *x,
                                                                      const float *y,
                                                                      ptrdiff_t d)
{
    __m512d sums = _mm512_setzero_pd();
    for (ptrdiff_t k = 0; k < d; k += 8) {
        __mmask8 lanes = fastgd_lanes8(d - k);
        sums = _mm512_add_pd(
            sums, FASTGD_METRIC_TERM8(sqeuclidean,
                                      _mm512_cvtps_pd(_mm256_maskz_loadu_ps(lanes, x + k)),
                                      _mm512_cvtps_pd(_mm256_maskz_loadu_ps(lanes, y + k))));
    }
    return _mm512_reduce_add_pd(sums);
}
#define FASTGD_DEFINE_RECOMPUTE(NAME, TARGET, REAL, SUM, ZERO_DISTANCE)                 \
    TARGET static void NAME(const REAL *x, const REAL *y_rows, ptrdiff_t d,             \
                            uint64_t columns, REAL *out_row)                            \
    {                                                                                   \
        for (; columns; columns &= columns - 1) {                                       \
            int c = __builtin_ctzll(columns);                                           \
            const REAL *y = y_rows + c * d;                                             \
            REAL value = (REAL)SUM(x, y, d);                                            \
            out_row[c] = value == 0 ? ZERO_DISTANCE(x, y, d) : value;                   \
        }                                                                               \
    }
FASTGD_DEFINE_RECOMPUTE(fastgd_recompute_f64, FASTGD_TARGET_AVX512, double,
                        fastgd_direct_sum_f64_avx512, fastgd_zero_distance_f64)
FASTGD_DEFINE_RECOMPUTE(fastgd_recompute_f32, FASTGD_TARGET_AVX512, float,
                        fastgd_direct_sum_f32_avx512, fastgd_zero_distance_f32)

/* Store one row of a block: the lanes of each vector that lie inside the output. With
 * `stream`, a whole vector that starts on its own size's boundary goes by a non-temporal
 * store, which writes the cache line without reading it first and without keeping it in
 * the caches: for an output larger than the cache, which a store would read from memory
 * only to overwrite and evict (the direct method at 1000 x 20000 x 3 into an existing
 * output: 0.83x the time). The tile's loops end with fastgd_stream_fence. */
FASTGD_TARGET_AVX512 static inline void fastgd_store_row_f64(double *row, const __m512d *values,
                                                            const __mmask8 *lanes, int stream)
{
    for (int v = 0; v < 3; v++) {
        if (stream && lanes[v] == 0xFF && ((uintptr_t)(row + 8 * v) & 63) == 0)
            _mm512_stream_pd(row + 8 * v, values[v]);
        else
            _mm512_mask_storeu_pd(row + 8 * v, lanes[v], values[v]);
    }
}
/* The same for `count` groups of 8 float32 values (count = 6 for a fused block, 3 for a
 * direct one). */
FASTGD_TARGET_AVX512 static inline void fastgd_store_row_f32(float *row, const __m256 *values,
                                                            const __mmask8 *lanes, int count,
                                                            int stream)
{
    for (int h = 0; h < count; h++) {
        if (stream && lanes[h] == 0xFF && ((uintptr_t)(row + 8 * h) & 31) == 0)
            _mm256_stream_ps(row + 8 * h, values[h]);
        else
            _mm256_mask_storeu_ps(row + 8 * h, lanes[h], values[h]);
    }
}
/* After a tile's non-temporal stores: they are ordered before every later store (and
 * before the caller's or another thread's reads of the tile). */
static inline void fastgd_stream_fence(int stream)
{
    if (stream)
        _mm_sfence();
}

/* The MR x NR dot products of a block in acc[r][v] (3 registers of VW elements a row),
 * one FMA per feature in order from 0. */
#define FASTGD_FUSED_PRODUCTS(acc, xp, yp, d, MR, REAL, VEC, VW, ZERO, LOAD, SET1, FMADD) \
    for (int r = 0; r < (MR); r++)                                                      \
        acc[r][0] = acc[r][1] = acc[r][2] = ZERO();                                     \
    for (ptrdiff_t k = 0; k < (d); k++) {                                               \
        const REAL *y = (yp) + k * 3 * (VW), *x = (xp) + k * (MR);                      \
        VEC y0 = LOAD(y), y1 = LOAD(y + (VW)), y2 = LOAD(y + 2 * (VW));                 \
        for (int r = 0; r < (MR); r++) {                                                \
            VEC xr = SET1(x[r]);                                                        \
            acc[r][0] = FMADD(xr, y0, acc[r][0]);                                       \
            acc[r][1] = FMADD(xr, y1, acc[r][1]);                                       \
            acc[r][2] = FMADD(xr, y2, acc[r][2]);                                       \
        }                                                                               \
    }
#define FASTGD_FUSED_PRODUCTS_F64(acc, xp, yp, d)                                       \
    FASTGD_FUSED_PRODUCTS(acc, xp, yp, d, FASTGD_FUSED_MR, double, __m512d, 8,          \
                          _mm512_setzero_pd,                                            \
                          _mm512_loadu_pd, _mm512_set1_pd, _mm512_fmadd_pd)
#define FASTGD_FUSED_PRODUCTS_F32(acc, xp, yp, d)                                       \
    FASTGD_FUSED_PRODUCTS(acc, xp, yp, d, FASTGD_FUSED_MR, float, __m512, 16,           \
                          _mm512_setzero_ps,                                            \
                          _mm512_loadu_ps, _mm512_set1_ps, _mm512_fmadd_ps)

/* Whether D is kept (D - threshold positive and finite), in the lanes of `lanes`. */
FASTGD_TARGET_AVX512 static inline __mmask8 fastgd_kept(__m512d dist, __m512d threshold)
{
    const __m512d margin = _mm512_sub_pd(dist, threshold);
    return _mm512_mask_cmp_pd_mask(_mm512_cmp_pd_mask(margin, _mm512_setzero_pd(), _CMP_GT_OQ),
                                   margin, _mm512_set1_pd(INFINITY), _CMP_LT_OQ);
}

/* Row r of a float64 block: D = (||x||^2 + ||y||^2) - 2 x.y from its products acc_r,
 * stored into out_row; returns the mask of the entries (lanes inside the output) to
 * recompute. yn: the block's norms of Y, 8 a register. */
FASTGD_TARGET_AVX512 static inline uint64_t fastgd_fused_row_f64(
    const __m512d *acc_r, double x_norm, const __m512d *yn, const __mmask8 *lanes,
    double ratio, double *out_row)
{
    const __m512d xn = _mm512_set1_pd(x_norm), ratio_v = _mm512_set1_pd(ratio);
    __m512d dist[3];
    uint64_t bad = 0;
    for (int v = 0; v < 3; v++) {
        __m512d norms_sum = _mm512_add_pd(xn, yn[v]);
        /* -2 x.y is exact: the fused multiply-add rounds like the separate add. */
        dist[v] = _mm512_fmadd_pd(acc_r[v], _mm512_set1_pd(-2.0), norms_sum);
        __mmask8 kept = fastgd_kept(dist[v], _mm512_mul_pd(ratio_v, norms_sum));
        bad |= (uint64_t)_kandn_mask8(kept, lanes[v]) << (8 * v);
    }
    fastgd_store_row_f64(out_row, dist, lanes, 0);
    return bad;
}

/* The same for a float32 block (products in float32, like sgemm; the epilogue in double),
 * its 48 columns in six groups of 8. */
FASTGD_TARGET_AVX512 static inline uint64_t fastgd_fused_row_f32(
    const __m512 *acc_r, double x_norm, const __m512d *yn, const __mmask8 *lanes,
    double ratio, float *out_row)
{
    const __m512d xn = _mm512_set1_pd(x_norm), ratio_v = _mm512_set1_pd(ratio);
    const __m512d least = _mm512_set1_pd((double)FASTGD_FLOAT_TRUE_MIN);
    __m256 rounded[6];
    uint64_t bad = 0;
    for (int h = 0; h < 6; h++) {
        __m512 vector = acc_r[h / 2];
        __m256 half = (h % 2) ? _mm512_extractf32x8_ps(vector, 1)
                              : _mm512_castps512_ps256(vector);
        __m512d norms_sum = _mm512_add_pd(xn, yn[h]);
        /* -2 x.y is exact in float32, then exactly widened: the unfused path's value. */
        __m512d dist = _mm512_fmadd_pd(_mm512_cvtps_pd(half), _mm512_set1_pd(-2.0), norms_sum);
        /* max(ratio S, least): the second operand where the first is NaN, as there. */
        __mmask8 kept =
            fastgd_kept(dist, _mm512_max_pd(_mm512_mul_pd(ratio_v, norms_sum), least));
        rounded[h] = _mm512_cvtpd_ps(dist);
        bad |= (uint64_t)_kandn_mask8(kept, lanes[h]) << (8 * h);
    }
    fastgd_store_row_f32(out_row, rounded, lanes, 6, 0);
    return bad;
}

/* NAME: one block of up to MR x NR entries (rows x cols) of the output; x_rows and y_rows
 * are the block's original rows (for the entries recomputed directly). A whole block goes
 * to NAME##_whole, which indexes its rows by constants only, so that the products stay in
 * registers up to their stores (a function of its own, as for the direct method), and
 * recomputes after all the stores: 0.83x the time at 500 x 20000 x 32 into an existing
 * float64 output, 0.90x at 2000 x 2000 x 64. N_GROUPS: groups of 8 columns in NR. */
#define FASTGD_DEFINE_FUSED_BLOCK(NAME, REAL, VEC, NR, N_GROUPS, PRODUCTS, ROW, RECOMPUTE) \
    FASTGD_TARGET_AVX512 static void NAME##_whole(                                      \
        const REAL *restrict xp, const REAL *restrict yp, ptrdiff_t d,                  \
        const double *restrict x_norms, const double *restrict y_norms, double ratio,   \
        const REAL *x_rows, const REAL *y_rows, REAL *restrict out, ptrdiff_t ldo)      \
    {                                                                                   \
        VEC acc[FASTGD_FUSED_MR][3];                                                    \
        PRODUCTS(acc, xp, yp, d)                                                        \
        __mmask8 lanes[N_GROUPS];                                                       \
        __m512d yn[N_GROUPS];                                                           \
        for (int g = 0; g < (N_GROUPS); g++) {                                          \
            lanes[g] = 0xFF;                                                            \
            yn[g] = _mm512_loadu_pd(y_norms + 8 * g);                                   \
        }                                                                               \
        uint64_t bad[FASTGD_FUSED_MR];                                                  \
        _Pragma("GCC unroll 8") for (int r = 0; r < FASTGD_FUSED_MR; r++)               \
            bad[r] = ROW(acc[r], x_norms[r], yn, lanes, ratio, out + r * ldo);          \
        for (int r = 0; r < FASTGD_FUSED_MR; r++)                                       \
            if (bad[r])                                                                 \
                RECOMPUTE(x_rows + r * d, y_rows, d, bad[r], out + r * ldo);            \
    }                                                                                   \
    FASTGD_TARGET_AVX512 static void NAME(                                              \
        const REAL *restrict xp, const REAL *restrict yp, ptrdiff_t d,                  \
        const double *restrict x_norms, const double *restrict y_norms, double ratio,   \
        const REAL *x_rows, const REAL *y_rows, REAL *restrict out, ptrdiff_t ldo,      \
        ptrdiff_t rows, ptrdiff_t cols)                                                 \
    {                                                                                   \
        if (rows == FASTGD_FUSED_MR && cols == (NR)) {                                  \
            NAME##_whole(xp, yp, d, x_norms, y_norms, ratio, x_rows, y_rows, out, ldo); \
            return;                                                                     \
        }                                                                               \
        VEC acc[FASTGD_FUSED_MR][3];                                                    \
        PRODUCTS(acc, xp, yp, d)                                                        \
        __mmask8 lanes[N_GROUPS];                                                       \
        __m512d yn[N_GROUPS];                                                           \
        for (int g = 0; g < (N_GROUPS); g++) {                                          \
            lanes[g] = fastgd_lanes8(cols - 8 * g);                                     \
            yn[g] = _mm512_maskz_loadu_pd(lanes[g], y_norms + 8 * g);                   \
        }                                                                               \
        for (int r = 0; r < rows; r++) {                                                \
            uint64_t bad = ROW(acc[r], x_norms[r], yn, lanes, ratio, out + r * ldo);    \
            if (bad)                                                                    \
                RECOMPUTE(x_rows + r * d, y_rows, d, bad, out + r * ldo);               \
        }                                                                               \
    }
FASTGD_DEFINE_FUSED_BLOCK(fastgd_fused_block_f64, double, __m512d, FASTGD_FUSED_NR_f64, 3,
                          FASTGD_FUSED_PRODUCTS_F64, fastgd_fused_row_f64,
                          fastgd_recompute_f64)
FASTGD_DEFINE_FUSED_BLOCK(fastgd_fused_block_f32, float, __m512, FASTGD_FUSED_NR_f32, 6,
                          FASTGD_FUSED_PRODUCTS_F32, fastgd_fused_row_f32,
                          fastgd_recompute_f32)

/* Store a row of 24 direct sums rounded to float32 (float64 rows: fastgd_store_row_f64). */
FASTGD_TARGET_AVX512 static inline void fastgd_store_sums_f32(float *row, const __m512d *sums,
                                                             const __mmask8 *lanes, int stream)
{
    __m256 rounded[3];
    for (int v = 0; v < 3; v++)
        rounded[v] = _mm512_cvtpd_ps(sums[v]);
    fastgd_store_row_f32(row, rounded, lanes, 3, stream);
}
/* In a stored block of up to MR x 24 entries, a 0 for rows that differ (the sum
 * underflowed) becomes the smallest subnormal: 0 means equal rows. ZEROS(row, v) is the
 * mask of zeros among the v-th 8 entries of the row. */
#define FASTGD_ZEROS_F64(row, v)                                                        \
    _mm512_mask_cmp_pd_mask(lanes[v], _mm512_maskz_loadu_pd(lanes[v], (row) + 8 * (v)), \
                            _mm512_setzero_pd(), _CMP_EQ_OQ)
#define FASTGD_ZEROS_F32(row, v)                                                        \
    _mm256_mask_cmp_ps_mask(lanes[v], _mm256_maskz_loadu_ps(lanes[v], (row) + 8 * (v)), \
                            _mm256_setzero_ps(), _CMP_EQ_OQ)
#define FASTGD_DEFINE_UNDERFLOW_FIX(NAME, REAL, ZEROS, ZERO_DISTANCE)                   \
    FASTGD_TARGET_AVX512 static void NAME(const REAL *x_rows, ptrdiff_t d,              \
                                          const REAL *y_rows, REAL *out, ptrdiff_t ldo, \
                                          ptrdiff_t rows, ptrdiff_t cols)               \
    {                                                                                   \
        __mmask8 lanes[3];                                                              \
        for (int v = 0; v < 3; v++)                                                     \
            lanes[v] = fastgd_lanes8(cols - 8 * v);                                     \
        for (ptrdiff_t r = 0; r < rows; r++) {                                          \
            REAL *out_row = out + r * ldo;                                              \
            uint64_t zero = 0;                                                          \
            for (int v = 0; v < 3; v++)                                                 \
                zero |= (uint64_t)ZEROS(out_row, v) << (8 * v);                         \
            for (; zero; zero &= zero - 1) {                                            \
                int c = __builtin_ctzll(zero);                                          \
                out_row[c] = ZERO_DISTANCE(x_rows + r * d, y_rows + c * d, d);          \
            }                                                                           \
        }                                                                               \
    }
FASTGD_DEFINE_UNDERFLOW_FIX(fastgd_underflow_fix_f64, double, FASTGD_ZEROS_F64,
                            fastgd_zero_distance_f64)
FASTGD_DEFINE_UNDERFLOW_FIX(fastgd_underflow_fix_f32, float, FASTGD_ZEROS_F32,
                            fastgd_zero_distance_f32)
/* The direct method for AVX-512 CPUs: a block of up to MR x 24 entries with its sums in
 * registers. sums[r, c] = sum_k (x_r[k] - y_columns[k, c])^2 in double (METRIC's terms,
 * stored as the distances: sqeuclidean's finish is the sum itself), one multiply and
 * one add per feature in order from 0 (0 + t^2 = t^2): the same operations as the
 * unblocked loops and the NumPy twin, so the same bits. Each sum is rounded once into out.
 * A sum that rounds to 0 is at most ZERO_BELOW: only when the smallest sum of the block
 * is, the block is looked through for zeros (UNDERFLOW_FIX).
 * x_rows: the block's rows of X (stride d); y_columns: the tile's Y stored column-wise in
 * double ([k, column], leading dimension ldy) from the block's first column; y_rows: the
 * block's rows of Y.
 *
 * FASTGD_DIRECT_BLOCK_SUMS: the sums; LOAD(v, address) loads the v-th 8 columns of Y,
 * ROW(r) is the row of x_rows that row r of the block reads. */
#define FASTGD_DIRECT_BLOCK_SUMS(sums, x_rows, d, y_columns, ldy, LOAD, ROW, METRIC)    \
    for (int r = 0; r < FASTGD_FUSED_MR; r++)                                           \
        sums[r][0] = sums[r][1] = sums[r][2] = _mm512_setzero_pd();                     \
    for (ptrdiff_t k = 0; k < d; k++) {                                                 \
        const double *y = y_columns + k * ldy;                                          \
        __m512d y0 = LOAD(0, y), y1 = LOAD(1, y + 8), y2 = LOAD(2, y + 16);             \
        for (int r = 0; r < FASTGD_FUSED_MR; r++) {                                     \
            __m512d x = _mm512_set1_pd((double)x_rows[ROW(r) * d + k]);                 \
            sums[r][0] = _mm512_add_pd(sums[r][0], FASTGD_METRIC_TERM8(METRIC, x, y0)); \
            sums[r][1] = _mm512_add_pd(sums[r][1], FASTGD_METRIC_TERM8(METRIC, x, y1)); \
            sums[r][2] = _mm512_add_pd(sums[r][2], FASTGD_METRIC_TERM8(METRIC, x, y2)); \
        }                                                                               \
    }
#define FASTGD_LOAD_LANES(v, address) _mm512_maskz_loadu_pd(lanes[v], address)
#define FASTGD_LOAD_WHOLE(v, address) _mm512_loadu_pd(address)
#define FASTGD_ROW_IN_BLOCK(r) ((r) < rows ? (r) : 0)
#define FASTGD_ROW_OF_WHOLE_BLOCK(r) (r)
/* NAME: a whole block of MR x 24 entries, nearly every one, stored straight from the
 * registers (in a function of its own, which indexes the sums by constants only: else the
 * compiler keeps every sum in memory too); NAME##_part: the blocks at the edges. */
#define FASTGD_DEFINE_DIRECT_BLOCK(NAME, REAL, STORE, ZERO_BELOW, UNDERFLOW_FIX)        \
    FASTGD_TARGET_AVX512 static void NAME##_part(                                       \
        const REAL *x_rows, ptrdiff_t d, const double *y_columns, ptrdiff_t ldy,        \
        const REAL *y_rows, REAL *out, ptrdiff_t ldo, ptrdiff_t rows, ptrdiff_t cols,   \
        int stream)                                                                     \
    {                                                                                   \
        __m512d sums[FASTGD_FUSED_MR][3];                                               \
        __mmask8 lanes[3];                                                              \
        for (int v = 0; v < 3; v++)                                                     \
            lanes[v] = fastgd_lanes8(cols - 8 * v);                                     \
        FASTGD_DIRECT_BLOCK_SUMS(sums, x_rows, d, y_columns, ldy, FASTGD_LOAD_LANES,    \
                                 FASTGD_ROW_IN_BLOCK, sqeuclidean)                      \
        /* Copied once here, for the same reason. */                                    \
        __m512d done[FASTGD_FUSED_MR][3];                                               \
        _Pragma("GCC unroll 8") for (int r = 0; r < FASTGD_FUSED_MR; r++)               \
            for (int v = 0; v < 3; v++)                                                 \
                done[r][v] = sums[r][v];                                                \
        /* The smallest sum: min(sum, low) keeps low where the sum is NaN. */           \
        __m512d low = _mm512_set1_pd(INFINITY);                                         \
        for (int r = 0; r < rows; r++) {                                                \
            for (int v = 0; v < 3; v++)                                                 \
                low = _mm512_mask_min_pd(low, lanes[v], done[r][v], low);               \
            STORE(out + r * ldo, done[r], lanes, stream);                               \
        }                                                                               \
        if (_mm512_cmp_pd_mask(low, _mm512_set1_pd(ZERO_BELOW), _CMP_LE_OQ))            \
            UNDERFLOW_FIX(x_rows, d, y_rows, out, ldo, rows, cols);                     \
    }                                                                                   \
    FASTGD_TARGET_AVX512 static void NAME(const REAL *x_rows, ptrdiff_t d,              \
                                          const double *y_columns, ptrdiff_t ldy,       \
                                          const REAL *y_rows, REAL *out, ptrdiff_t ldo, \
                                          ptrdiff_t rows, ptrdiff_t cols, int stream)   \
    {                                                                                   \
        if (rows != FASTGD_FUSED_MR || cols != FASTGD_FUSED_NR_f64) {                   \
            NAME##_part(x_rows, d, y_columns, ldy, y_rows, out, ldo, rows, cols,        \
                        stream);                                                        \
            return;                                                                     \
        }                                                                               \
        __m512d sums[FASTGD_FUSED_MR][3];                                               \
        const __mmask8 lanes[3] = {0xFF, 0xFF, 0xFF};                                   \
        FASTGD_DIRECT_BLOCK_SUMS(sums, x_rows, d, y_columns, ldy, FASTGD_LOAD_WHOLE,    \
                                 FASTGD_ROW_OF_WHOLE_BLOCK, sqeuclidean)                \
        __m512d low = _mm512_set1_pd(INFINITY);                                         \
        _Pragma("GCC unroll 8") for (int r = 0; r < FASTGD_FUSED_MR; r++) {             \
            for (int v = 0; v < 3; v++)                                                 \
                low = _mm512_min_pd(sums[r][v], low);                                   \
            STORE(out + r * ldo, sums[r], lanes, stream);                               \
        }                                                                               \
        if (_mm512_cmp_pd_mask(low, _mm512_set1_pd(ZERO_BELOW), _CMP_LE_OQ))            \
            UNDERFLOW_FIX(x_rows, d, y_rows, out, ldo, rows, cols);                     \
    }
FASTGD_DEFINE_DIRECT_BLOCK(fastgd_direct_block_f64, double, fastgd_store_row_f64, 0.0,
                           fastgd_underflow_fix_f64)
FASTGD_DEFINE_DIRECT_BLOCK(fastgd_direct_block_f32, float, fastgd_store_sums_f32,
                           FASTGD_FLOAT_ROUNDS_TO_ZERO, fastgd_underflow_fix_f32)
/* A whole tile (ni x nj entries) of blocks, along rows of the output (FASTGD_FUSED_MR rows
 * at a time), so that the stores stream through whole cache lines in order while the
 * packed panels of Y are read from L2. Plain stores: since a whole block leaves its
 * registers row after row, non-temporal ones were slower or no faster for every output
 * measured (docs/performance.md). */
#define FASTGD_DEFINE_FUSED_TILE(NAME, TARGET, BLOCK, REAL, MR, NR)                     \
    TARGET static void NAME(const REAL *x_packed, const REAL *y_packed, ptrdiff_t d,    \
                            const double *x_norms, const double *y_norms, double ratio, \
                            const REAL *x_rows, const REAL *y_rows, REAL *out,          \
                            ptrdiff_t ldo, ptrdiff_t ni, ptrdiff_t nj)                  \
    {                                                                                   \
        for (ptrdiff_t i = 0; i < ni; i += (MR))                                        \
            for (ptrdiff_t j = 0; j < nj; j += (NR))                                    \
                BLOCK(x_packed + i * d, y_packed + j * d, d, x_norms + i, y_norms + j,  \
                      ratio, x_rows + i * d, y_rows + j * d, out + i * ldo + j, ldo,    \
                      ni - i < (MR) ? ni - i : (MR), nj - j < (NR) ? nj - j : (NR));    \
    }
FASTGD_DEFINE_FUSED_TILE(fastgd_fused_tile_f64_avx512, FASTGD_TARGET_AVX512,
                         fastgd_fused_block_f64, double, FASTGD_FUSED_MR, FASTGD_FUSED_NR_f64)
FASTGD_DEFINE_FUSED_TILE(fastgd_fused_tile_f32_avx512, FASTGD_TARGET_AVX512,
                         fastgd_fused_block_f32, float, FASTGD_FUSED_MR, FASTGD_FUSED_NR_f32)

/* A whole tile of the direct method (ni x nj entries) in blocks of MR x NR entries, along
 * rows of the output. */
#define FASTGD_DEFINE_DIRECT_TILE(NAME, TARGET, BLOCK, REAL, MR, NR)                    \
    TARGET static void NAME(const REAL *x_rows, ptrdiff_t d, const double *y_columns,   \
                            const REAL *y_rows, REAL *out, ptrdiff_t ldo, ptrdiff_t ni, \
                            ptrdiff_t nj, int stream)                                   \
    {                                                                                   \
        for (ptrdiff_t i = 0; i < ni; i += (MR))                                        \
            for (ptrdiff_t j = 0; j < nj; j += (NR))                                    \
                BLOCK(x_rows + i * d, d, y_columns + j, nj, y_rows + j * d,             \
                      out + i * ldo + j, ldo, ni - i < (MR) ? ni - i : (MR),            \
                      nj - j < (NR) ? nj - j : (NR), stream);                           \
        fastgd_stream_fence(stream);                                                    \
    }
FASTGD_DEFINE_DIRECT_TILE(fastgd_direct_tile_f64_avx512, FASTGD_TARGET_AVX512,
                          fastgd_direct_block_f64, double, FASTGD_FUSED_MR,
                          FASTGD_FUSED_NR_f64)
FASTGD_DEFINE_DIRECT_TILE(fastgd_direct_tile_f32_avx512, FASTGD_TARGET_AVX512,
                          fastgd_direct_block_f32, float, FASTGD_FUSED_MR, FASTGD_FUSED_NR_f64)

/* ---------------------------------------------------------------------------------------
 * The direct method for AVX2 CPUs: blocks of up to MR_AVX2 x NR_AVX2 entries whose sums
 * stay in 12 of the 16 vector registers over all d features (the loads of Y are operands
 * of the subtractions), with the same operations in the same order as the unblocked loops
 * and the AVX-512 blocks: the same bits at every level. The unblocked loops keep the sums
 * of two rows in memory, a load and a store per sum and feature. */
#define FASTGD_DIRECT_MR_AVX2 4
#define FASTGD_DIRECT_NV_AVX2 3
#define FASTGD_DIRECT_NR_AVX2 (4 * FASTGD_DIRECT_NV_AVX2)

/* All ones in the 64-bit lanes < count. */
FASTGD_TARGET_AVX2 static inline __m256i fastgd_lanes4(ptrdiff_t count)
{
    return _mm256_cmpgt_epi64(_mm256_set1_epi64x((long long)count),
                              _mm256_set_epi64x(3, 2, 1, 0));
}
/* All ones in the 32-bit lanes < count (of four). */
FASTGD_TARGET_AVX2 static inline __m128i fastgd_lanes4_i32(ptrdiff_t count)
{
    return _mm_cmpgt_epi32(_mm_set1_epi32(count < 4 ? (int)count : 4), _mm_set_epi32(3, 2, 1, 0));
}

/* sums[r][v] = sum_k METRIC's term of (x_rows[ROW(r), k], y_columns[k, 4 v + lane]); LOAD(v,
 * address) loads the v-th 4 columns. */
#define FASTGD_DIRECT_SUMS_AVX2(sums, x_rows, d, y_columns, ldy, LOAD, ROW, METRIC)     \
    _Pragma("GCC unroll 12") for (int r = 0; r < FASTGD_DIRECT_MR_AVX2; r++)            \
        for (int v = 0; v < FASTGD_DIRECT_NV_AVX2; v++)                                 \
            sums[r][v] = _mm256_setzero_pd();                                           \
    for (ptrdiff_t k = 0; k < d; k++) {                                                 \
        const double *y = y_columns + k * ldy;                                          \
        __m256d y_v[FASTGD_DIRECT_NV_AVX2];                                             \
        for (int v = 0; v < FASTGD_DIRECT_NV_AVX2; v++)                                 \
            y_v[v] = LOAD(v, y + 4 * v);                                                \
        _Pragma("GCC unroll 4") for (int r = 0; r < FASTGD_DIRECT_MR_AVX2; r++) {       \
            const __m256d x = _mm256_set1_pd((double)x_rows[ROW(r) * d + k]);           \
            for (int v = 0; v < FASTGD_DIRECT_NV_AVX2; v++)                             \
                sums[r][v] =                                                            \
                    _mm256_add_pd(sums[r][v], FASTGD_METRIC_TERM4(METRIC, x, y_v[v]));  \
        }                                                                               \
    }
#define FASTGD_LOAD4_LANES(v, address) _mm256_maskload_pd(address, lanes[v])
#define FASTGD_LOAD4_WHOLE(v, address) _mm256_loadu_pd(address)

/* Store a row of a block's sums (rounded to float32 for a float32 output): the first
 * `cols` entries. Plain stores only: on an AVX2 AMD EPYC non-temporal ones were slower for
 * every output measured, from 4 to 150 MB (docs/performance.md). */
FASTGD_TARGET_AVX2 static inline void fastgd_store_sums4_f64(double *row, const __m256d *sums,
                                                            ptrdiff_t cols)
{
    for (int v = 0; v < FASTGD_DIRECT_NV_AVX2; v++) {
        if (cols - 4 * v >= 4)
            _mm256_storeu_pd(row + 4 * v, sums[v]);
        else if (cols > 4 * v)
            _mm256_maskstore_pd(row + 4 * v, fastgd_lanes4(cols - 4 * v), sums[v]);
    }
}
/* The same for `groups` groups of 4 float32 values. */
FASTGD_TARGET_AVX2 static inline void fastgd_store_floats4(float *row, const __m128 *values,
                                                          int groups, ptrdiff_t cols)
{
    for (int h = 0; h < groups; h++) {
        if (cols - 4 * h >= 4)
            _mm_storeu_ps(row + 4 * h, values[h]);
        else if (cols > 4 * h)
            _mm_maskstore_ps(row + 4 * h, fastgd_lanes4_i32(cols - 4 * h), values[h]);
    }
}
FASTGD_TARGET_AVX2 static inline void fastgd_store_sums4_f32(float *row, const __m256d *sums,
                                                            ptrdiff_t cols)
{
    __m128 values[FASTGD_DIRECT_NV_AVX2];
    for (int v = 0; v < FASTGD_DIRECT_NV_AVX2; v++)
        values[v] = _mm256_cvtpd_ps(sums[v]);
    fastgd_store_floats4(row, values, FASTGD_DIRECT_NV_AVX2, cols);
}

/* The entries of a block stored as 0: 0 for equal rows, else (an underflow) TRUE_MIN. */
#define FASTGD_DEFINE_ZERO_FIX(NAME, REAL, ZERO_DISTANCE)                               \
    static void NAME(const REAL *x_rows, ptrdiff_t d, const REAL *y_rows, REAL *out,    \
                     ptrdiff_t ldo, ptrdiff_t rows, ptrdiff_t cols)                     \
    {                                                                                   \
        for (ptrdiff_t r = 0; r < rows; r++)                                            \
            for (ptrdiff_t c = 0; c < cols; c++)                                        \
                if (out[r * ldo + c] == 0)                                              \
                    out[r * ldo + c] = ZERO_DISTANCE(x_rows + r * d, y_rows + c * d, d);\
    }
FASTGD_DEFINE_ZERO_FIX(fastgd_zero_fix_f64, double, fastgd_zero_distance_f64)
FASTGD_DEFINE_ZERO_FIX(fastgd_zero_fix_f32, float, fastgd_zero_distance_f32)

/* NAME: a whole block, its sums indexed by constants only (kept in registers, as for the
 * AVX-512 blocks); NAME##_part: the blocks at the edges. A sum that rounds to 0 is at most
 * ZERO_BELOW: only when the block's smallest sum is, its zeros are looked at (ZERO_FIX).
 * `stream` is not used (see fastgd_store_sums4_f64). */
#define FASTGD_DEFINE_DIRECT_BLOCK_AVX2(NAME, REAL, STORE, ZERO_BELOW, ZERO_FIX)        \
    FASTGD_TARGET_AVX2 static void NAME##_part(                                         \
        const REAL *x_rows, ptrdiff_t d, const double *y_columns, ptrdiff_t ldy,        \
        const REAL *y_rows, REAL *out, ptrdiff_t ldo, ptrdiff_t rows, ptrdiff_t cols,   \
        int stream)                                                                     \
    {                                                                                   \
        (void)stream;                                                                   \
        __m256d sums[FASTGD_DIRECT_MR_AVX2][FASTGD_DIRECT_NV_AVX2];                     \
        __m256i lanes[FASTGD_DIRECT_NV_AVX2];                                           \
        for (int v = 0; v < FASTGD_DIRECT_NV_AVX2; v++)                                 \
            lanes[v] = fastgd_lanes4(cols - 4 * v);                                     \
        FASTGD_DIRECT_SUMS_AVX2(sums, x_rows, d, y_columns, ldy, FASTGD_LOAD4_LANES,    \
                                FASTGD_ROW_IN_BLOCK, sqeuclidean)                       \
        /* The smallest sum: min(sum, low) keeps low where the sum is NaN. */           \
        __m256d low = _mm256_set1_pd(INFINITY);                                         \
        for (int r = 0; r < rows; r++) {                                                \
            for (int v = 0; v < FASTGD_DIRECT_NV_AVX2; v++)                             \
                low = _mm256_blendv_pd(low, _mm256_min_pd(sums[r][v], low),             \
                                       _mm256_castsi256_pd(lanes[v]));                  \
            STORE(out + r * ldo, sums[r], cols);                                        \
        }                                                                               \
        if (_mm256_movemask_pd(_mm256_cmp_pd(low, _mm256_set1_pd(ZERO_BELOW), _CMP_LE_OQ))) \
            ZERO_FIX(x_rows, d, y_rows, out, ldo, rows, cols);                          \
    }                                                                                   \
    FASTGD_TARGET_AVX2 static void NAME(const REAL *x_rows, ptrdiff_t d,                \
                                        const double *y_columns, ptrdiff_t ldy,         \
                                        const REAL *y_rows, REAL *out, ptrdiff_t ldo,   \
                                        ptrdiff_t rows, ptrdiff_t cols, int stream)     \
    {                                                                                   \
        if (rows != FASTGD_DIRECT_MR_AVX2 || cols != FASTGD_DIRECT_NR_AVX2) {           \
            NAME##_part(x_rows, d, y_columns, ldy, y_rows, out, ldo, rows, cols,        \
                        stream);                                                        \
            return;                                                                     \
        }                                                                               \
        __m256d sums[FASTGD_DIRECT_MR_AVX2][FASTGD_DIRECT_NV_AVX2];                     \
        FASTGD_DIRECT_SUMS_AVX2(sums, x_rows, d, y_columns, ldy, FASTGD_LOAD4_WHOLE,    \
                                FASTGD_ROW_OF_WHOLE_BLOCK, sqeuclidean)                 \
        __m256d low = _mm256_set1_pd(INFINITY);                                         \
        _Pragma("GCC unroll 4") for (int r = 0; r < FASTGD_DIRECT_MR_AVX2; r++) {       \
            for (int v = 0; v < FASTGD_DIRECT_NV_AVX2; v++)                             \
                low = _mm256_min_pd(sums[r][v], low);                                   \
            STORE(out + r * ldo, sums[r], FASTGD_DIRECT_NR_AVX2);                       \
        }                                                                               \
        if (_mm256_movemask_pd(_mm256_cmp_pd(low, _mm256_set1_pd(ZERO_BELOW), _CMP_LE_OQ))) \
            ZERO_FIX(x_rows, d, y_rows, out, ldo, rows, cols);                          \
    }
FASTGD_DEFINE_DIRECT_BLOCK_AVX2(fastgd_direct_block4_f64, double, fastgd_store_sums4_f64, 0.0,
                                fastgd_zero_fix_f64)
FASTGD_DEFINE_DIRECT_BLOCK_AVX2(fastgd_direct_block4_f32, float, fastgd_store_sums4_f32,
                                FASTGD_FLOAT_ROUNDS_TO_ZERO, fastgd_zero_fix_f32)
FASTGD_DEFINE_DIRECT_TILE(fastgd_direct_tile_f64_avx2, FASTGD_TARGET_AVX2,
                          fastgd_direct_block4_f64, double, FASTGD_DIRECT_MR_AVX2,
                          FASTGD_DIRECT_NR_AVX2)
FASTGD_DEFINE_DIRECT_TILE(fastgd_direct_tile_f32_avx2, FASTGD_TARGET_AVX2,
                          fastgd_direct_block4_f32, float, FASTGD_DIRECT_MR_AVX2,
                          FASTGD_DIRECT_NR_AVX2)

/* ---------------------------------------------------------------------------------------
 * The fused expansion for AVX2 CPUs, as the AVX-512 one above: blocks of MR_AVX2 rows of X
 * by NR_AVX2 rows of Y (12 in float64, 24 in float32: 3 registers a row), their products
 * in 12 registers over all d features, then the same epilogue in double, the entries that
 * may have cancelled recomputed at once by direct differences. Against BLAS and the
 * epilogue over a Gram tile in memory, the products never leave the registers unfinished.
 * The panels are packed by a plain loop (fastgd_pack_panels_plain_*). */

/* packed[(p * d + k) * width + l] = rows[row0 + p * width + l, k] - shift[k], rounded to
 * REAL as the other packers round it, 0 past the last row; feature by feature, so that
 * each panel is written in order while the width rows it reads stay in L1. */
#define FASTGD_DEFINE_PACK_PANELS_PLAIN(NAME, REAL)                                     \
    static void NAME(const REAL *rows, ptrdiff_t d, ptrdiff_t row0, ptrdiff_t nrows,    \
                     ptrdiff_t width, const double *shift, REAL *packed)                \
    {                                                                                   \
        for (ptrdiff_t p = 0; p * width < nrows; p++) {                                 \
            const ptrdiff_t first = p * width;                                          \
            const ptrdiff_t in_rows = nrows - first < width ? nrows - first : width;    \
            const REAL *src = rows + (row0 + first) * d;                                \
            REAL *panel = packed + first * d;                                           \
            for (ptrdiff_t k = 0; k < d; k++) {                                         \
                ptrdiff_t l = 0;                                                        \
                for (; l < in_rows; l++)                                                \
                    panel[k * width + l] = (REAL)((double)src[l * d + k] - shift[k]);   \
                for (; l < width; l++)                                                  \
                    panel[k * width + l] = (REAL)0;                                     \
            }                                                                           \
        }                                                                               \
    }
FASTGD_DEFINE_PACK_PANELS_PLAIN(fastgd_pack_panels_plain_f32, float)
FASTGD_DEFINE_PACK_PANELS_PLAIN(fastgd_pack_panels_plain_f64, double)

/* sum_k (x[k] - y[k])^2 in double, four features at a time: the recomputation of an
 * entry the expansion may have cancelled (any order of the sum is well inside the
 * promised bound). */
FASTGD_TARGET_AVX2 static inline double fastgd_sum4_total(__m256d sums)
{
    const __m128d pair = _mm_add_pd(_mm256_castpd256_pd128(sums), _mm256_extractf128_pd(sums, 1));
    return _mm_cvtsd_f64(_mm_add_sd(pair, _mm_unpackhi_pd(pair, pair)));
}
FASTGD_TARGET_AVX2 static inline double fastgd_direct_sum_f64_avx2(const double *x,
                                                                  const double *y, ptrdiff_t d)
{
    __m256d sums = _mm256_setzero_pd();
    ptrdiff_t k = 0;
    for (; k + 4 <= d; k += 4)
        sums = _mm256_add_pd(sums, FASTGD_METRIC_TERM4(sqeuclidean, _mm256_loadu_pd(x + k),
                                                       _mm256_loadu_pd(y + k)));
    double total = fastgd_sum4_total(sums);
    for (; k < d; k++)
        total += FASTGD_METRIC_TERM(sqeuclidean, x[k], y[k]);
    return total;
}
FASTGD_TARGET_AVX2 static inline double fastgd_direct_sum_f32_avx2(const float *x,
                                                                  const float *y, ptrdiff_t d)
{
    __m256d sums = _mm256_setzero_pd();
    ptrdiff_t k = 0;
    for (; k + 4 <= d; k += 4)
        sums = _mm256_add_pd(
            sums, FASTGD_METRIC_TERM4(sqeuclidean, _mm256_cvtps_pd(_mm_loadu_ps(x + k)),
                                      _mm256_cvtps_pd(_mm_loadu_ps(y + k))));
    double total = fastgd_sum4_total(sums);
    for (; k < d; k++)
        total += FASTGD_METRIC_TERM(sqeuclidean, (double)x[k], (double)y[k]);
    return total;
}
FASTGD_DEFINE_RECOMPUTE(fastgd_recompute4_f64, FASTGD_TARGET_AVX2, double,
                        fastgd_direct_sum_f64_avx2, fastgd_zero_distance_f64)
FASTGD_DEFINE_RECOMPUTE(fastgd_recompute4_f32, FASTGD_TARGET_AVX2, float,
                        fastgd_direct_sum_f32_avx2, fastgd_zero_distance_f32)

#define FASTGD_FUSED_PRODUCTS4_F64(acc, xp, yp, d)                                      \
    FASTGD_FUSED_PRODUCTS(acc, xp, yp, d, FASTGD_FUSED_MR_AVX2, double, __m256d, 4,     \
                          _mm256_setzero_pd, _mm256_loadu_pd, _mm256_set1_pd,           \
                          _mm256_fmadd_pd)
#define FASTGD_FUSED_PRODUCTS4_F32(acc, xp, yp, d)                                      \
    FASTGD_FUSED_PRODUCTS(acc, xp, yp, d, FASTGD_FUSED_MR_AVX2, float, __m256, 8,       \
                          _mm256_setzero_ps, _mm256_loadu_ps, _mm256_set1_ps,           \
                          _mm256_fmadd_ps)

/* D = (||x||^2 + ||y||^2) - 2 x.y for 4 entries from their products (in double) and norms
 * sums; the bits of the lanes not kept (D - max(ratio S, least) not positive and finite:
 * least is 0 in float64, the smallest float32 subnormal in float32). */
FASTGD_TARGET_AVX2 static inline unsigned fastgd_fused_dist4(__m256d products, __m256d norms_sum,
                                                            double ratio, double least,
                                                            __m256d *dist)
{
    /* -2 x.y is exact: the fused multiply-add rounds like the separate add. */
    *dist = _mm256_fmadd_pd(products, _mm256_set1_pd(-2.0), norms_sum);
    const __m256d threshold =
        _mm256_max_pd(_mm256_mul_pd(_mm256_set1_pd(ratio), norms_sum), _mm256_set1_pd(least));
    const __m256d margin = _mm256_sub_pd(*dist, threshold);
    const __m256d kept = _mm256_and_pd(_mm256_cmp_pd(margin, _mm256_setzero_pd(), _CMP_GT_OQ),
                                       _mm256_cmp_pd(margin, _mm256_set1_pd(INFINITY), _CMP_LT_OQ));
    return ~(unsigned)_mm256_movemask_pd(kept) & 0xFu;
}
/* The columns < cols of a block row, as bits. */
static inline uint64_t fastgd_columns_below(ptrdiff_t cols)
{
    return cols >= 64 ? ~0ULL : (1ULL << cols) - 1;
}

/* Row r of a float64 block from its products acc_r, stored into out_row (its first cols
 * entries); returns the columns to recompute. yn: the block's norms of Y, 4 a register. */
FASTGD_TARGET_AVX2 static inline uint64_t fastgd_fused_row4_f64(
    const __m256d *acc_r, double x_norm, const __m256d *yn, ptrdiff_t cols, double ratio,
    double *out_row)
{
    const __m256d xn = _mm256_set1_pd(x_norm);
    __m256d dist[3];
    uint64_t bad = 0;
    for (int v = 0; v < 3; v++)
        bad |= (uint64_t)fastgd_fused_dist4(acc_r[v], _mm256_add_pd(xn, yn[v]), ratio, 0.0,
                                            &dist[v]) << (4 * v);
    fastgd_store_sums4_f64(out_row, dist, cols);
    return bad & fastgd_columns_below(cols);
}
/* The same for a float32 block (products in float32, like sgemm, exactly widened: the
 * unfused path's values), its 24 columns in six groups of 4. */
FASTGD_TARGET_AVX2 static inline uint64_t fastgd_fused_row4_f32(
    const __m256 *acc_r, double x_norm, const __m256d *yn, ptrdiff_t cols, double ratio,
    float *out_row)
{
    const __m256d xn = _mm256_set1_pd(x_norm);
    __m128 rounded[6];
    uint64_t bad = 0;
    for (int h = 0; h < 6; h++) {
        const __m128 half = (h % 2) ? _mm256_extractf128_ps(acc_r[h / 2], 1)
                                    : _mm256_castps256_ps128(acc_r[h / 2]);
        __m256d dist;
        bad |= (uint64_t)fastgd_fused_dist4(_mm256_cvtps_pd(half), _mm256_add_pd(xn, yn[h]),
                                            ratio, (double)FASTGD_FLOAT_TRUE_MIN, &dist)
               << (4 * h);
        rounded[h] = _mm256_cvtpd_ps(dist);
    }
    fastgd_store_floats4(out_row, rounded, 6, cols);
    return bad & fastgd_columns_below(cols);
}

/* NAME: one block of up to MR_AVX2 x NR entries (rows x cols), as FASTGD_DEFINE_FUSED_BLOCK
 * (a whole block indexed by constants only in NAME##_whole). N_GROUPS: groups of 4
 * columns in NR. */
#define FASTGD_DEFINE_FUSED_BLOCK4(NAME, REAL, VEC, NR, N_GROUPS, PRODUCTS, ROW, RECOMPUTE) \
    FASTGD_TARGET_AVX2 static void NAME##_whole(                                        \
        const REAL *restrict xp, const REAL *restrict yp, ptrdiff_t d,                  \
        const double *restrict x_norms, const double *restrict y_norms, double ratio,   \
        const REAL *x_rows, const REAL *y_rows, REAL *restrict out, ptrdiff_t ldo)      \
    {                                                                                   \
        VEC acc[FASTGD_FUSED_MR_AVX2][3];                                               \
        PRODUCTS(acc, xp, yp, d)                                                        \
        __m256d yn[N_GROUPS];                                                           \
        for (int g = 0; g < (N_GROUPS); g++)                                            \
            yn[g] = _mm256_loadu_pd(y_norms + 4 * g);                                   \
        uint64_t bad[FASTGD_FUSED_MR_AVX2];                                             \
        _Pragma("GCC unroll 4") for (int r = 0; r < FASTGD_FUSED_MR_AVX2; r++)          \
            bad[r] = ROW(acc[r], x_norms[r], yn, (NR), ratio, out + r * ldo);           \
        for (int r = 0; r < FASTGD_FUSED_MR_AVX2; r++)                                  \
            if (bad[r])                                                                 \
                RECOMPUTE(x_rows + r * d, y_rows, d, bad[r], out + r * ldo);            \
    }                                                                                   \
    FASTGD_TARGET_AVX2 static void NAME(                                                \
        const REAL *restrict xp, const REAL *restrict yp, ptrdiff_t d,                  \
        const double *restrict x_norms, const double *restrict y_norms, double ratio,   \
        const REAL *x_rows, const REAL *y_rows, REAL *restrict out, ptrdiff_t ldo,      \
        ptrdiff_t rows, ptrdiff_t cols)                                                 \
    {                                                                                   \
        if (rows == FASTGD_FUSED_MR_AVX2 && cols == (NR)) {                             \
            NAME##_whole(xp, yp, d, x_norms, y_norms, ratio, x_rows, y_rows, out, ldo); \
            return;                                                                     \
        }                                                                               \
        VEC acc[FASTGD_FUSED_MR_AVX2][3];                                               \
        PRODUCTS(acc, xp, yp, d)                                                        \
        __m256d yn[N_GROUPS];                                                           \
        for (int g = 0; g < (N_GROUPS); g++)                                            \
            yn[g] = _mm256_maskload_pd(y_norms + 4 * g, fastgd_lanes4(cols - 4 * g));   \
        for (int r = 0; r < rows; r++) {                                                \
            uint64_t bad = ROW(acc[r], x_norms[r], yn, cols, ratio, out + r * ldo);     \
            if (bad)                                                                    \
                RECOMPUTE(x_rows + r * d, y_rows, d, bad, out + r * ldo);               \
        }                                                                               \
    }
FASTGD_DEFINE_FUSED_BLOCK4(fastgd_fused_block4_f64, double, __m256d, FASTGD_FUSED_NR_AVX2_f64,
                           3, FASTGD_FUSED_PRODUCTS4_F64, fastgd_fused_row4_f64,
                           fastgd_recompute4_f64)
FASTGD_DEFINE_FUSED_BLOCK4(fastgd_fused_block4_f32, float, __m256, FASTGD_FUSED_NR_AVX2_f32,
                           6, FASTGD_FUSED_PRODUCTS4_F32, fastgd_fused_row4_f32,
                           fastgd_recompute4_f32)
FASTGD_DEFINE_FUSED_TILE(fastgd_fused_tile_f64_avx2, FASTGD_TARGET_AVX2,
                         fastgd_fused_block4_f64, double, FASTGD_FUSED_MR_AVX2,
                         FASTGD_FUSED_NR_AVX2_f64)
FASTGD_DEFINE_FUSED_TILE(fastgd_fused_tile_f32_avx2, FASTGD_TARGET_AVX2,
                         fastgd_fused_block4_f32, float, FASTGD_FUSED_MR_AVX2,
                         FASTGD_FUSED_NR_AVX2_f32)

/* The fused expansion's packing and tiles at this CPU's level (AVX2 or AVX-512). */
#define FASTGD_DEFINE_FUSED_DISPATCH(REALNAME, REAL)                                    \
    static void fastgd_pack_panels_##REALNAME(const REAL *rows, ptrdiff_t d,            \
                                              ptrdiff_t row0, ptrdiff_t nrows,          \
                                              ptrdiff_t width, const double *shift,     \
                                              REAL *packed)                             \
    {                                                                                   \
        if (fastgd_pairwise_level == FASTGD_LEVEL_AVX512)                               \
            fastgd_pack_panels_##REALNAME##_avx512(rows, d, row0, nrows, width, shift,  \
                                                   packed);                             \
        else                                                                            \
            fastgd_pack_panels_plain_##REALNAME(rows, d, row0, nrows, width, shift,     \
                                                packed);                                \
    }                                                                                   \
    static void fastgd_fused_tile_##REALNAME(                                           \
        const REAL *x_packed, const REAL *y_packed, ptrdiff_t d, const double *x_norms, \
        const double *y_norms, double ratio, const REAL *x_rows, const REAL *y_rows,    \
        REAL *out, ptrdiff_t ldo, ptrdiff_t ni, ptrdiff_t nj)                           \
    {                                                                                   \
        if (fastgd_pairwise_level == FASTGD_LEVEL_AVX512)                               \
            fastgd_fused_tile_##REALNAME##_avx512(x_packed, y_packed, d, x_norms,       \
                                                  y_norms, ratio, x_rows, y_rows, out,  \
                                                  ldo, ni, nj);                         \
        else                                                                            \
            fastgd_fused_tile_##REALNAME##_avx2(x_packed, y_packed, d, x_norms, y_norms, \
                                                ratio, x_rows, y_rows, out, ldo, ni,    \
                                                nj);                                    \
    }
FASTGD_DEFINE_FUSED_DISPATCH(f64, double)
FASTGD_DEFINE_FUSED_DISPATCH(f32, float)

/* The blocked direct method's tile at this CPU's level (AVX2 or AVX-512). */
#define FASTGD_DEFINE_DIRECT_TILE_DISPATCH(REALNAME, REAL)                              \
    static void fastgd_direct_tile_##REALNAME(const REAL *x_rows, ptrdiff_t d,          \
                                              const double *y_columns, const REAL *y_rows, \
                                              REAL *out, ptrdiff_t ldo, ptrdiff_t ni,   \
                                              ptrdiff_t nj, int stream)                 \
    {                                                                                   \
        if (fastgd_pairwise_level == FASTGD_LEVEL_AVX512)                               \
            fastgd_direct_tile_##REALNAME##_avx512(x_rows, d, y_columns, y_rows, out,   \
                                                   ldo, ni, nj, stream);                \
        else                                                                            \
            fastgd_direct_tile_##REALNAME##_avx2(x_rows, d, y_columns, y_rows, out, ldo, \
                                                 ni, nj, stream);                       \
    }
FASTGD_DEFINE_DIRECT_TILE_DISPATCH(f64, double)
FASTGD_DEFINE_DIRECT_TILE_DISPATCH(f32, float)
#else
/* Never called: fastgd_pairwise_fused() and fastgd_pairwise_direct_blocked() are 0 where
 * these cannot be built. */
static void fastgd_pack_panels_f32(const float *rows, ptrdiff_t d, ptrdiff_t row0,
                                   ptrdiff_t nrows, ptrdiff_t width, const double *shift,
                                   float *packed)
{
}
static void fastgd_pack_panels_f64(const double *rows, ptrdiff_t d, ptrdiff_t row0,
                                   ptrdiff_t nrows, ptrdiff_t width, const double *shift,
                                   double *packed)
{
}
static void fastgd_fused_tile_f64(const double *x_packed, const double *y_packed, ptrdiff_t d,
                                  const double *x_norms, const double *y_norms, double ratio,
                                  const double *x_rows, const double *y_rows, double *out,
                                  ptrdiff_t ldo, ptrdiff_t ni, ptrdiff_t nj)
{
}
static void fastgd_fused_tile_f32(const float *x_packed, const float *y_packed, ptrdiff_t d,
                                  const double *x_norms, const double *y_norms, double ratio,
                                  const float *x_rows, const float *y_rows, float *out,
                                  ptrdiff_t ldo, ptrdiff_t ni, ptrdiff_t nj)
{
}
static void fastgd_direct_tile_f64(const double *x_rows, ptrdiff_t d, const double *y_columns,
                                   const double *y_rows, double *out, ptrdiff_t ldo,
                                   ptrdiff_t ni, ptrdiff_t nj, int stream)
{
}
static void fastgd_direct_tile_f32(const float *x_rows, ptrdiff_t d, const double *y_columns,
                                   const float *y_rows, float *out, ptrdiff_t ldo,
                                   ptrdiff_t ni, ptrdiff_t nj, int stream)
{
}
#endif

/* Whether the direct method runs in register blocks (the AVX2 and AVX-512 levels). */
static inline int fastgd_pairwise_blocked(void)
{
    return fastgd_pairwise_level == FASTGD_LEVEL_AVX512
           || fastgd_pairwise_level == FASTGD_LEVEL_AVX2;
}
/* Whether the fused expansion runs for d features (at most the caller's DEPTH) in a dtype
 * of itemsize bytes, rather than BLAS and the epilogue: at the AVX-512 level always; at
 * the AVX2 level for float32 and for float64 up to FASTGD_FUSED_AVX2_F64_MAX_DEPTH
 * features (OpenBLAS's dgemm was faster beyond: docs/performance.md), and not for
 * argkmin's reductions (`reduce`), which test the Gram entries from BLAS against their
 * thresholds without forming distances. */
#define FASTGD_FUSED_AVX2_F64_MAX_DEPTH 128
static inline int fastgd_pairwise_fused(ptrdiff_t d, ptrdiff_t itemsize, int reduce)
{
    if (fastgd_pairwise_level == FASTGD_LEVEL_AVX512)
        return 1;
    return fastgd_pairwise_level == FASTGD_LEVEL_AVX2 && !reduce
           && (itemsize == 4 || d <= FASTGD_FUSED_AVX2_F64_MAX_DEPTH);
}
/* The fused expansion's rows of X and of Y per block at this level (its panels' widths). */
static inline ptrdiff_t fastgd_fused_mr(void)
{
    return fastgd_pairwise_level == FASTGD_LEVEL_AVX512 ? FASTGD_FUSED_MR : FASTGD_FUSED_MR_AVX2;
}
static inline ptrdiff_t fastgd_fused_nr_f64(void)
{
    return fastgd_pairwise_level == FASTGD_LEVEL_AVX512 ? FASTGD_FUSED_NR_f64
                                                        : FASTGD_FUSED_NR_AVX2_f64;
}
static inline ptrdiff_t fastgd_fused_nr_f32(void)
{
    return fastgd_pairwise_level == FASTGD_LEVEL_AVX512 ? FASTGD_FUSED_NR_f32
                                                        : FASTGD_FUSED_NR_AVX2_f32;
}

#endif
