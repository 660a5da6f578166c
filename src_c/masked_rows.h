/* The inner loop of the plan path of fastgd.masked_loss_grad, compiled twice: for the
 * baseline instruction set of the build and, on x86 with GCC or Clang, for AVX2. The
 * variant is chosen once at import (fastgd_masked_select_simd), by what the CPU running
 * the code supports, never by the build machine's flags.
 *
 * Both variants perform the same floating-point operations in the same order (the dot
 * product keeps FASTGD_LANES independent sums, added in a fixed tree; no FMA contraction,
 * the build passes -ffp-contract=off), so they give bitwise the same results: only the
 * width of the vector registers differs.
 */
#ifndef FASTGD_MASKED_ROWS_H
#define FASTGD_MASKED_ROWS_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#define FASTGD_X86_DISPATCH 1
#define FASTGD_TARGET_AVX2 __attribute__((target("avx2")))
#else
#define FASTGD_X86_DISPATCH 0
#define FASTGD_TARGET_AVX2
#endif

#if defined(_MSC_VER)
#define restrict __restrict
#endif

#if defined(__GNUC__)
#define FASTGD_PREFETCH(address) __builtin_prefetch(address)
#else
#define FASTGD_PREFETCH(address) ((void)0)
#endif

#define FASTGD_LANES 8
/* Entries ahead whose rows of H.T and dH.T are prefetched. */
#define FASTGD_PREFETCH_DISTANCE 8

/* For the rows [row_begin, row_end) of the plan: dW[i] = sum_e r_e H.T[j_e] (written),
 * dHT[j_e] += r_e W[i] (added), r_e = W[i] . H.T[j_e] - values[e]; returns sum r_e^2. */
#define FASTGD_DEFINE_PLAN_ROWS(NAME, REAL, INDEX, ATTRIBUTE)                             \
    ATTRIBUTE static double NAME(const INDEX *indptr, const INDEX *indices,               \
                                 const REAL *values, const REAL *W, const REAL *HT,       \
                                 REAL *dW, REAL *dHT, ptrdiff_t k, ptrdiff_t row_begin,   \
                                 ptrdiff_t row_end)                                       \
    {                                                                                     \
        double total = 0.0;                                                               \
        const ptrdiff_t last = (ptrdiff_t)indptr[row_end];                                \
        for (ptrdiff_t i = row_begin; i < row_end; i++) {                                 \
            const REAL *restrict w = W + i * k;                                           \
            REAL *restrict dw = dW + i * k;                                               \
            memset(dw, 0, (size_t)k * sizeof(REAL));                                      \
            for (ptrdiff_t e = (ptrdiff_t)indptr[i]; e < (ptrdiff_t)indptr[i + 1]; e++) { \
                const ptrdiff_t j = (ptrdiff_t)indices[e];                                \
                const REAL *restrict h = HT + j * k;                                      \
                REAL *restrict dh = dHT + j * k;                                          \
                if (e + FASTGD_PREFETCH_DISTANCE < last) {                                \
                    const ptrdiff_t ahead =                                               \
                        (ptrdiff_t)indices[e + FASTGD_PREFETCH_DISTANCE] * k;             \
                    FASTGD_PREFETCH(HT + ahead);                                          \
                    FASTGD_PREFETCH(dHT + ahead);                                         \
                }                                                                         \
                REAL lanes[FASTGD_LANES] = {0};                                           \
                ptrdiff_t c = 0;                                                          \
                for (; c + FASTGD_LANES <= k; c += FASTGD_LANES)                          \
                    for (int l = 0; l < FASTGD_LANES; l++)                                \
                        lanes[l] += w[c + l] * h[c + l];                                  \
                REAL r = ((lanes[0] + lanes[1]) + (lanes[2] + lanes[3]))                  \
                         + ((lanes[4] + lanes[5]) + (lanes[6] + lanes[7]));               \
                for (; c < k; c++)                                                        \
                    r += w[c] * h[c];                                                     \
                r -= values[e];                                                           \
                total += (double)r * (double)r;                                           \
                for (c = 0; c < k; c++) {                                                 \
                    dw[c] += r * h[c];                                                    \
                    dh[c] += r * w[c];                                                    \
                }                                                                         \
            }                                                                             \
        }                                                                                 \
        return total;                                                                     \
    }

FASTGD_DEFINE_PLAN_ROWS(fastgd_plan_rows_f32_i32_base, float, int32_t, )
FASTGD_DEFINE_PLAN_ROWS(fastgd_plan_rows_f32_i64_base, float, int64_t, )
FASTGD_DEFINE_PLAN_ROWS(fastgd_plan_rows_f64_i32_base, double, int32_t, )
FASTGD_DEFINE_PLAN_ROWS(fastgd_plan_rows_f64_i64_base, double, int64_t, )
#if FASTGD_X86_DISPATCH
FASTGD_DEFINE_PLAN_ROWS(fastgd_plan_rows_f32_i32_avx2, float, int32_t, FASTGD_TARGET_AVX2)
FASTGD_DEFINE_PLAN_ROWS(fastgd_plan_rows_f32_i64_avx2, float, int64_t, FASTGD_TARGET_AVX2)
FASTGD_DEFINE_PLAN_ROWS(fastgd_plan_rows_f64_i32_avx2, double, int32_t, FASTGD_TARGET_AVX2)
FASTGD_DEFINE_PLAN_ROWS(fastgd_plan_rows_f64_i64_avx2, double, int64_t, FASTGD_TARGET_AVX2)
#endif

/* 1 when the AVX2 variants run, 0 for the baseline ones. */
static int fastgd_masked_use_avx2 = 0;

/* Pick the variants for this CPU; allow_avx2 = 0 keeps the baseline (for tests and for
 * FASTGD_SIMD=baseline). Returns the name of the chosen level. */
static const char *fastgd_masked_select_simd(int allow_avx2)
{
#if FASTGD_X86_DISPATCH
    __builtin_cpu_init();
    fastgd_masked_use_avx2 = allow_avx2 && __builtin_cpu_supports("avx2");
#else
    (void)allow_avx2;
    fastgd_masked_use_avx2 = 0;
#endif
    return fastgd_masked_use_avx2 ? "avx2" : "baseline";
}

#if FASTGD_X86_DISPATCH
#define FASTGD_DISPATCH(NAME, ...) \
    (fastgd_masked_use_avx2 ? NAME##_avx2(__VA_ARGS__) : NAME##_base(__VA_ARGS__))
#else
#define FASTGD_DISPATCH(NAME, ...) NAME##_base(__VA_ARGS__)
#endif

#define FASTGD_DEFINE_PLAN_ROWS_DISPATCH(NAME, REAL, INDEX)                                \
    static double NAME(const INDEX *indptr, const INDEX *indices, const REAL *values,       \
                       const REAL *W, const REAL *HT, REAL *dW, REAL *dHT, ptrdiff_t k,     \
                       ptrdiff_t row_begin, ptrdiff_t row_end)                              \
    {                                                                                       \
        return FASTGD_DISPATCH(NAME, indptr, indices, values, W, HT, dW, dHT, k, row_begin, \
                               row_end);                                                    \
    }

FASTGD_DEFINE_PLAN_ROWS_DISPATCH(fastgd_plan_rows_f32_i32, float, int32_t)
FASTGD_DEFINE_PLAN_ROWS_DISPATCH(fastgd_plan_rows_f32_i64, float, int64_t)
FASTGD_DEFINE_PLAN_ROWS_DISPATCH(fastgd_plan_rows_f64_i32, double, int32_t)
FASTGD_DEFINE_PLAN_ROWS_DISPATCH(fastgd_plan_rows_f64_i64, double, int64_t)

#endif
