/* The vector loops of fastgd.sqeuclidean, compiled once per instruction-set level
 * (cpu_dispatch.h) and chosen at import:
 *
 *   epilogue row   D = (||x||^2 + ||y||^2) + gram, rounded to the output dtype, with a
 *                  flag per block of FASTGD_SUSPECT_BLOCK entries where the expansion may
 *                  have cancelled (the block is then recomputed by direct differences);
 *   direct pair    sums[b] (+)= (x[k] - y[k, b])^2 in double for two rows of X;
 *   round row      direct sums rounded to the output dtype, with a flag if any is 0.
 *
 * Each entry is computed on its own by correctly rounded operations in a fixed order (no
 * FMA contraction: -ffp-contract=off), so every level gives bitwise the same results.
 */
#ifndef FASTGD_PAIRWISE_LOOPS_H
#define FASTGD_PAIRWISE_LOOPS_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "cpu_dispatch.h"

/* The smallest positive subnormals: 2^-149 and 2^-1074. */
#define FASTGD_FLOAT_TRUE_MIN 0x1p-149f
#define FASTGD_DOUBLE_TRUE_MIN 0x1p-1074
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

/* out_row[b] = (x_norm + y_norms[b]) + gram_row[b], rounded to REAL, for b < n; flags[q]
 * is 1 where block q (FASTGD_SUSPECT_BLOCK entries) holds an entry not kept: unless
 * D - THRESHOLD(ratio * (x_norm + y_norms[b])) is positive and finite. Returns whether
 * any block is flagged. */
#define FASTGD_DEFINE_EPILOGUE_ROW(NAME, TARGET, REAL, THRESHOLD)                          \
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
                double threshold = THRESHOLD(ratio * norms_sum);                        \
                out_row[b] = (REAL)dist;                                                \
                suspect |= fastgd_margin_bits(dist - threshold);                        \
            }                                                                           \
            flags[start / FASTGD_SUSPECT_BLOCK] = (unsigned char)(suspect >> 63);       \
            any |= (int)(suspect >> 63);                                                \
        }                                                                               \
        return any;                                                                     \
    }

/* sums0[b] (+)= (x0[k] - y_columns[k, b])^2 for k < depth and b_start <= b < n, and the
 * same for x1 into sums1: two rows of X share every load of Y, and the loop over b
 * vectorises. With `resume` the sums continue from their stored values, so chunks of
 * features add up in the order of one sequential loop (the first term is the square
 * itself: 0 + t^2 = t^2). */
#define FASTGD_DEFINE_DIRECT_PAIR(NAME, TARGET, REAL)                                   \
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
                    double diff0 = x0k - y_row[b], diff1 = x1k - y_row[b];              \
                    sums0[b] = diff0 * diff0;                                           \
                    sums1[b] = diff1 * diff1;                                           \
                }                                                                       \
            } else {                                                                    \
                for (ptrdiff_t b = b_start; b < n; b++) {                               \
                    double diff0 = x0k - y_row[b], diff1 = x1k - y_row[b];              \
                    sums0[b] += diff0 * diff0;                                          \
                    sums1[b] += diff1 * diff1;                                          \
                }                                                                       \
            }                                                                           \
        }                                                                               \
    }

/* out_row[b] = sums[b] rounded to REAL for b < n; returns 1 if any may be 0. */
#define FASTGD_DEFINE_ROUND_ROW(NAME, TARGET, REAL, ZERO_BITS)                          \
    TARGET static int NAME(const double *restrict sums, REAL *restrict out_row,         \
                           ptrdiff_t n)                                                 \
    {                                                                                   \
        uint64_t zero = 0;                                                              \
        for (ptrdiff_t b = 0; b < n; b++) {                                             \
            REAL value = (REAL)sums[b];                                                 \
            out_row[b] = value;                                                         \
            zero |= ZERO_BITS(value);                                                   \
        }                                                                               \
        return (int)(zero >> 63);                                                       \
    }

#define FASTGD_DEFINE_PAIRWISE_LEVEL(LEVEL, TARGET)                                     \
    FASTGD_DEFINE_EPILOGUE_ROW(fastgd_epilogue_row_f32_##LEVEL, TARGET, float,         \
                               FASTGD_THRESHOLD_f32)                                   \
    FASTGD_DEFINE_EPILOGUE_ROW(fastgd_epilogue_row_f64_##LEVEL, TARGET, double,        \
                               FASTGD_THRESHOLD_f64)                                   \
    FASTGD_DEFINE_DIRECT_PAIR(fastgd_direct_pair_f32_##LEVEL, TARGET, float)            \
    FASTGD_DEFINE_DIRECT_PAIR(fastgd_direct_pair_f64_##LEVEL, TARGET, double)           \
    FASTGD_DEFINE_ROUND_ROW(fastgd_round_row_f32_##LEVEL, TARGET, float,                \
                            fastgd_zero_bits_f32)                                       \
    FASTGD_DEFINE_ROUND_ROW(fastgd_round_row_f64_##LEVEL, TARGET, double,               \
                            fastgd_zero_bits_f64)

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

/* Choose the loops for this CPU, at most level `asked`; returns the level chosen. These
 * loops have no hand-written vectors, so "scalar" runs the baseline loops. */
static int fastgd_pairwise_select_level(int asked)
{
    int level = fastgd_choose_level(asked, FASTGD_PAIRWISE_HIGHEST);
    fastgd_pairwise_level = level < FASTGD_LEVEL_BASELINE ? FASTGD_LEVEL_BASELINE : level;
    return fastgd_pairwise_level;
}

#if FASTGD_X86_DISPATCH
#define FASTGD_PAIRWISE_CALL(NAME, ...)                                                 \
    (fastgd_pairwise_level == FASTGD_LEVEL_AVX512 ? NAME##_avx512(__VA_ARGS__)          \
     : fastgd_pairwise_level == FASTGD_LEVEL_AVX2 ? NAME##_avx2(__VA_ARGS__)            \
                                                  : NAME##_baseline(__VA_ARGS__))
#else
#define FASTGD_PAIRWISE_CALL(NAME, ...) NAME##_baseline(__VA_ARGS__)
#endif

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
    }

FASTGD_DEFINE_PAIRWISE_DISPATCH(f32, float)
FASTGD_DEFINE_PAIRWISE_DISPATCH(f64, double)

#endif
