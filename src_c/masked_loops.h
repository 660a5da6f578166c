/* The inner loops of fastgd.masked_loss_grad: the plan path's row loop in four variants,
 *
 *   scalar    plain C, the lanes of the dot product in an array;
 *   baseline  the dot product in SSE2 registers (the x86-64 baseline; elsewhere = scalar);
 *   avx2      compiled for AVX2 by a target attribute, with loops for ranks 16, 32 and
 *             64 that keep a row of W and of dW in registers;
 *   avx512    the same fixed-rank loops for float64 in AVX-512 registers;
 *
 * and the dense path's residual pass, compiled per level (cpu_dispatch.h).
 *
 * fastgd_masked_select_simd picks the best one the CPU running the code supports, once at
 * import, never by the build machine's flags. All of them perform the same floating-point
 * operations in the same order (the dot product keeps FASTGD_LANES independent sums added
 * in a fixed tree; no FMA contraction, the build passes -ffp-contract=off), so they give
 * bitwise the same results: only the width of the registers differs.
 */
#ifndef FASTGD_MASKED_ROWS_H
#define FASTGD_MASKED_ROWS_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "cpu_dispatch.h"

#if defined(__GNUC__)
#define FASTGD_PREFETCH(address) __builtin_prefetch(address)
#else
#define FASTGD_PREFETCH(address) ((void)0)
#endif

/* Prefetch every 64-byte line of a row of `count` elements of HT and of dHT. */
#define FASTGD_PREFETCH_ROWS(HT_ROW, DHT_ROW, count)                                    \
    for (size_t line = 0; line < (size_t)(count) * sizeof(*(HT_ROW)); line += 64) {     \
        FASTGD_PREFETCH((const char *)(HT_ROW) + line);                                 \
        FASTGD_PREFETCH((const char *)(DHT_ROW) + line);                                \
    }

#define FASTGD_LANES 8
#define FASTGD_LANE_SUM(lanes)                                                          \
    ((((lanes)[0] + (lanes)[1]) + ((lanes)[2] + (lanes)[3]))                            \
     + (((lanes)[4] + (lanes)[5]) + ((lanes)[6] + (lanes)[7])))
/* Entries ahead whose rows of H.T and dH.T are prefetched (every cache line of them). */
#define FASTGD_PREFETCH_DISTANCE 8

/* The dot product, lane l summing the coordinates c = l mod FASTGD_LANES, the lanes added
 * by FASTGD_LANE_SUM, then the remaining coordinates in order. */
#define FASTGD_DEFINE_DOT_ARRAY(NAME, REAL)                                             \
    static inline REAL NAME(const REAL *w, const REAL *h, ptrdiff_t k)                  \
    {                                                                                   \
        REAL lanes[FASTGD_LANES] = {0};                                                 \
        ptrdiff_t c = 0;                                                                \
        for (; c + FASTGD_LANES <= k; c += FASTGD_LANES)                                \
            for (int l = 0; l < FASTGD_LANES; l++)                                      \
                lanes[l] += w[c + l] * h[c + l];                                        \
        REAL r = FASTGD_LANE_SUM(lanes);                                                \
        for (; c < k; c++)                                                              \
            r += w[c] * h[c];                                                           \
        return r;                                                                       \
    }
FASTGD_DEFINE_DOT_ARRAY(fastgd_dot_f32_array, float)
FASTGD_DEFINE_DOT_ARRAY(fastgd_dot_f64_array, double)

#if defined(__SSE2__) || defined(_M_X64)
#include <immintrin.h>
#define FASTGD_SSE2 1
/* The same operations with the lanes in SSE2 registers (2 doubles or 4 floats each). */
static inline double fastgd_dot_f64_sse2(const double *w, const double *h, ptrdiff_t k)
{
    __m128d acc[4] = {_mm_setzero_pd(), _mm_setzero_pd(), _mm_setzero_pd(), _mm_setzero_pd()};
    double lanes[FASTGD_LANES];
    ptrdiff_t c = 0;
    for (; c + FASTGD_LANES <= k; c += FASTGD_LANES)
        for (int v = 0; v < 4; v++)
            acc[v] = _mm_add_pd(acc[v], _mm_mul_pd(_mm_loadu_pd(w + c + 2 * v),
                                                   _mm_loadu_pd(h + c + 2 * v)));
    for (int v = 0; v < 4; v++)
        _mm_storeu_pd(lanes + 2 * v, acc[v]);
    double r = FASTGD_LANE_SUM(lanes);
    for (; c < k; c++)
        r += w[c] * h[c];
    return r;
}
static inline float fastgd_dot_f32_sse2(const float *w, const float *h, ptrdiff_t k)
{
    __m128 acc[2] = {_mm_setzero_ps(), _mm_setzero_ps()};
    float lanes[FASTGD_LANES];
    ptrdiff_t c = 0;
    for (; c + FASTGD_LANES <= k; c += FASTGD_LANES)
        for (int v = 0; v < 2; v++)
            acc[v] = _mm_add_ps(acc[v], _mm_mul_ps(_mm_loadu_ps(w + c + 4 * v),
                                                   _mm_loadu_ps(h + c + 4 * v)));
    for (int v = 0; v < 2; v++)
        _mm_storeu_ps(lanes + 4 * v, acc[v]);
    float r = FASTGD_LANE_SUM(lanes);
    for (; c < k; c++)
        r += w[c] * h[c];
    return r;
}
#define fastgd_dot_f64_base fastgd_dot_f64_sse2
#define fastgd_dot_f32_base fastgd_dot_f32_sse2
#else
#define FASTGD_SSE2 0
#define fastgd_dot_f64_base fastgd_dot_f64_array
#define fastgd_dot_f32_base fastgd_dot_f32_array
#endif

#if FASTGD_X86_DISPATCH
/* The same operations with the lanes in AVX2 registers (4 doubles or 8 floats each). */
FASTGD_TARGET_AVX2 static inline double fastgd_dot_f64_avx2(const double *w, const double *h,
                                                            ptrdiff_t k)
{
    __m256d acc[2] = {_mm256_setzero_pd(), _mm256_setzero_pd()};
    double lanes[FASTGD_LANES];
    ptrdiff_t c = 0;
    for (; c + FASTGD_LANES <= k; c += FASTGD_LANES)
        for (int v = 0; v < 2; v++)
            acc[v] = _mm256_add_pd(acc[v], _mm256_mul_pd(_mm256_loadu_pd(w + c + 4 * v),
                                                         _mm256_loadu_pd(h + c + 4 * v)));
    for (int v = 0; v < 2; v++)
        _mm256_storeu_pd(lanes + 4 * v, acc[v]);
    double r = FASTGD_LANE_SUM(lanes);
    for (; c < k; c++)
        r += w[c] * h[c];
    return r;
}
FASTGD_TARGET_AVX2 static inline float fastgd_dot_f32_avx2(const float *w, const float *h,
                                                           ptrdiff_t k)
{
    __m256 acc = _mm256_setzero_ps();
    float lanes[FASTGD_LANES];
    ptrdiff_t c = 0;
    for (; c + FASTGD_LANES <= k; c += FASTGD_LANES)
        acc = _mm256_add_ps(acc, _mm256_mul_ps(_mm256_loadu_ps(w + c), _mm256_loadu_ps(h + c)));
    _mm256_storeu_ps(lanes, acc);
    float r = FASTGD_LANE_SUM(lanes);
    for (; c < k; c++)
        r += w[c] * h[c];
    return r;
}
#endif

#if FASTGD_X86_DISPATCH
#include <immintrin.h>
#endif

#define FASTGD_PLAN_ROWS_SIGNATURE(NAME, REAL, INDEX)                                   \
    static double NAME(const INDEX *indptr, const INDEX *indices, const REAL *values,   \
                       const REAL *W, const REAL *HT, REAL *dW, REAL *dHT, ptrdiff_t k, \
                       ptrdiff_t row_begin, ptrdiff_t row_end)

/* For the rows [row_begin, row_end) of the plan: dW[i] = sum_e r_e H.T[j_e] (written),
 * dHT[j_e] += r_e W[i] (added), r_e = W[i] . H.T[j_e] - values[e]; returns sum r_e^2. */
#define FASTGD_DEFINE_PLAN_ROWS(NAME, REAL, INDEX, ATTRIBUTE, DOT)                           \
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
                    FASTGD_PREFETCH_ROWS(HT + ahead, dHT + ahead, k)                      \
                }                                                                         \
                const REAL r = DOT(w, h, k) - values[e];                                  \
                total += (double)r * (double)r;                                           \
                for (ptrdiff_t c = 0; c < k; c++) {                                       \
                    dw[c] += r * h[c];                                                    \
                    dh[c] += r * w[c];                                                    \
                }                                                                         \
            }                                                                             \
        }                                                                                 \
        return total;                                                                     \
    }

FASTGD_DEFINE_PLAN_ROWS(fastgd_plan_rows_f32_i32_array, float, int32_t, , fastgd_dot_f32_array)
FASTGD_DEFINE_PLAN_ROWS(fastgd_plan_rows_f32_i64_array, float, int64_t, , fastgd_dot_f32_array)
FASTGD_DEFINE_PLAN_ROWS(fastgd_plan_rows_f64_i32_array, double, int32_t, , fastgd_dot_f64_array)
FASTGD_DEFINE_PLAN_ROWS(fastgd_plan_rows_f64_i64_array, double, int64_t, , fastgd_dot_f64_array)
FASTGD_DEFINE_PLAN_ROWS(fastgd_plan_rows_f32_i32_base, float, int32_t, , fastgd_dot_f32_base)
FASTGD_DEFINE_PLAN_ROWS(fastgd_plan_rows_f32_i64_base, float, int64_t, , fastgd_dot_f32_base)
FASTGD_DEFINE_PLAN_ROWS(fastgd_plan_rows_f64_i32_base, double, int32_t, , fastgd_dot_f64_base)
FASTGD_DEFINE_PLAN_ROWS(fastgd_plan_rows_f64_i64_base, double, int64_t, , fastgd_dot_f64_base)
#if FASTGD_X86_DISPATCH
FASTGD_DEFINE_PLAN_ROWS(fastgd_plan_rows_f32_i32_avx2_any, float, int32_t, FASTGD_TARGET_AVX2,
                        fastgd_dot_f32_avx2)
FASTGD_DEFINE_PLAN_ROWS(fastgd_plan_rows_f32_i64_avx2_any, float, int64_t, FASTGD_TARGET_AVX2,
                        fastgd_dot_f32_avx2)
FASTGD_DEFINE_PLAN_ROWS(fastgd_plan_rows_f64_i32_avx2_any, double, int32_t, FASTGD_TARGET_AVX2,
                        fastgd_dot_f64_avx2)
FASTGD_DEFINE_PLAN_ROWS(fastgd_plan_rows_f64_i64_avx2_any, double, int64_t, FASTGD_TARGET_AVX2,
                        fastgd_dot_f64_avx2)

/* Loops for a rank K fixed at compile time (a multiple of FASTGD_LANES): W[i] and the
 * dW[i] being summed stay in registers across the row's entries. VEC holds VW elements;
 * the lanes are the first FASTGD_LANES / VW products of each group of FASTGD_LANES
 * coordinates, so the operations and their order are those of the loops above. */
#define FASTGD_DEFINE_PLAN_ROWS_FIXED(NAME, TARGET, REAL, INDEX, K, VEC, VW, ZERO, LOAD,      \
                                      STORE, ADD, MUL, BROADCAST, LANE_SUM)                   \
    TARGET static double NAME(const INDEX *indptr, const INDEX *indices,          \
                                          const REAL *values, const REAL *W, const REAL *HT,  \
                                          REAL *dW, REAL *dHT, ptrdiff_t row_begin,           \
                                          ptrdiff_t row_end)                                  \
    {                                                                                         \
        enum { BLOCKS = (K) / (VW), NV = FASTGD_LANES / (VW) };                               \
        double total = 0.0;                                                                   \
        const ptrdiff_t last = (ptrdiff_t)indptr[row_end];                                    \
        for (ptrdiff_t i = row_begin; i < row_end; i++) {                                     \
            VEC w[BLOCKS], dw[BLOCKS];                                                        \
            _Pragma("GCC unroll 16") for (int b = 0; b < BLOCKS; b++) {                       \
                w[b] = LOAD(W + i * (K) + b * (VW));                                          \
                dw[b] = ZERO();                                                               \
            }                                                                                 \
            for (ptrdiff_t e = indptr[i]; e < (ptrdiff_t)indptr[i + 1]; e++) {                \
                const REAL *h = HT + (ptrdiff_t)indices[e] * (K);                             \
                REAL *dh = dHT + (ptrdiff_t)indices[e] * (K);                                 \
                if (e + FASTGD_PREFETCH_DISTANCE < last) {                                    \
                    const ptrdiff_t ahead =                                                   \
                        (ptrdiff_t)indices[e + FASTGD_PREFETCH_DISTANCE] * (K);               \
                    FASTGD_PREFETCH_ROWS(HT + ahead, dHT + ahead, (K))                        \
                }                                                                             \
                VEC acc[NV];                                                                  \
                _Pragma("GCC unroll 16") for (int v = 0; v < NV; v++) acc[v] = ZERO();        \
                _Pragma("GCC unroll 16") for (int b = 0; b < BLOCKS; b++)                     \
                    acc[b % NV] = ADD(acc[b % NV], MUL(w[b], LOAD(h + b * (VW))));            \
                const REAL r = LANE_SUM(acc) - values[e];                                     \
                const VEC rv = BROADCAST(r);                                                  \
                total += (double)r * (double)r;                                               \
                _Pragma("GCC unroll 16") for (int b = 0; b < BLOCKS; b++) {                   \
                    dw[b] = ADD(dw[b], MUL(rv, LOAD(h + b * (VW))));                          \
                    STORE(dh + b * (VW), ADD(LOAD(dh + b * (VW)), MUL(rv, w[b])));            \
                }                                                                             \
            }                                                                                 \
            _Pragma("GCC unroll 16") for (int b = 0; b < BLOCKS; b++)                         \
                STORE(dW + i * (K) + b * (VW), dw[b]);                                        \
        }                                                                                     \
        return total;                                                                         \
    }

/* FASTGD_LANE_SUM of the lanes in registers acc[0], acc[1], ...: through memory. */
#define FASTGD_LANE_SUM_STORED(REAL, VW, STORE, acc)                                          \
    __extension__({                                                                           \
        REAL lanes_[FASTGD_LANES];                                                            \
        for (int v_ = 0; v_ < FASTGD_LANES / (VW); v_++)                                      \
            STORE(lanes_ + v_ * (VW), (acc)[v_]);                                             \
        FASTGD_LANE_SUM(lanes_);                                                              \
    })
#define FASTGD_LANE_SUM_F64X4(acc) FASTGD_LANE_SUM_STORED(double, 4, _mm256_storeu_pd, acc)
#define FASTGD_LANE_SUM_F32X8(acc) FASTGD_LANE_SUM_STORED(float, 8, _mm256_storeu_ps, acc)
/* The same tree in one AVX-512 register: adjacent pairs, then pairs of pairs within each
 * half, then the two halves: ((l0 + l1) + (l2 + l3)) + ((l4 + l5) + (l6 + l7)). */
FASTGD_TARGET_AVX512 static inline double fastgd_lane_sum_f64x8(__m512d lanes)
{
    __m512d pairs = _mm512_add_pd(lanes, _mm512_permute_pd(lanes, 0x55));
    __m512d quads = _mm512_add_pd(pairs, _mm512_permutex_pd(pairs, 0x4E));
    __m128d low = _mm512_castpd512_pd128(quads);
    __m128d high = _mm512_extractf64x2_pd(quads, 2);
    return _mm_cvtsd_f64(_mm_add_sd(low, high));
}
#define FASTGD_LANE_SUM_F64X8(acc) fastgd_lane_sum_f64x8((acc)[0])

#define FASTGD_DEFINE_PLAN_ROWS_AVX2_F64(NAME, INDEX, K)                                      \
    FASTGD_DEFINE_PLAN_ROWS_FIXED(NAME, FASTGD_TARGET_AVX2, double, INDEX, K, __m256d, 4,     \
                                  _mm256_setzero_pd, _mm256_loadu_pd, _mm256_storeu_pd,       \
                                  _mm256_add_pd, _mm256_mul_pd, _mm256_set1_pd,               \
                                  FASTGD_LANE_SUM_F64X4)
#define FASTGD_DEFINE_PLAN_ROWS_AVX2_F32(NAME, INDEX, K)                                      \
    FASTGD_DEFINE_PLAN_ROWS_FIXED(NAME, FASTGD_TARGET_AVX2, float, INDEX, K, __m256, 8,       \
                                  _mm256_setzero_ps, _mm256_loadu_ps, _mm256_storeu_ps,       \
                                  _mm256_add_ps, _mm256_mul_ps, _mm256_set1_ps,               \
                                  FASTGD_LANE_SUM_F32X8)
/* AVX-512: the eight lanes of a float64 dot product fill one register. (float32's eight
 * lanes fill an AVX2 register already: float32 runs the AVX2 loops.) */
#define FASTGD_DEFINE_PLAN_ROWS_AVX512_F64(NAME, INDEX, K)                                    \
    FASTGD_DEFINE_PLAN_ROWS_FIXED(NAME, FASTGD_TARGET_AVX512, double, INDEX, K, __m512d, 8,   \
                                  _mm512_setzero_pd, _mm512_loadu_pd, _mm512_storeu_pd,       \
                                  _mm512_add_pd, _mm512_mul_pd, _mm512_set1_pd,               \
                                  FASTGD_LANE_SUM_F64X8)

/* The loop for rank k: a fixed-rank one for 16, 32 and 64, the general AVX2 one
 * (ANY) otherwise. */
#define FASTGD_DEFINE_PLAN_ROWS_AVX2(NAME, REAL, INDEX, FIXED, ANY)                           \
    FIXED(NAME##_k16, INDEX, 16)                                                              \
    FIXED(NAME##_k32, INDEX, 32)                                                              \
    FIXED(NAME##_k64, INDEX, 64)                                                              \
    FASTGD_PLAN_ROWS_SIGNATURE(NAME, REAL, INDEX)                                             \
    {                                                                                         \
        switch (k) {                                                                          \
        case 16:                                                                              \
            return NAME##_k16(indptr, indices, values, W, HT, dW, dHT, row_begin, row_end);   \
        case 32:                                                                              \
            return NAME##_k32(indptr, indices, values, W, HT, dW, dHT, row_begin, row_end);   \
        case 64:                                                                              \
            return NAME##_k64(indptr, indices, values, W, HT, dW, dHT, row_begin, row_end);   \
        default:                                                                              \
            return ANY(indptr, indices, values, W, HT, dW, dHT, k, row_begin, row_end);       \
        }                                                                                     \
    }

FASTGD_DEFINE_PLAN_ROWS_AVX2(fastgd_plan_rows_f32_i32_avx2, float, int32_t,
                             FASTGD_DEFINE_PLAN_ROWS_AVX2_F32, fastgd_plan_rows_f32_i32_avx2_any)
FASTGD_DEFINE_PLAN_ROWS_AVX2(fastgd_plan_rows_f32_i64_avx2, float, int64_t,
                             FASTGD_DEFINE_PLAN_ROWS_AVX2_F32, fastgd_plan_rows_f32_i64_avx2_any)
FASTGD_DEFINE_PLAN_ROWS_AVX2(fastgd_plan_rows_f64_i32_avx2, double, int32_t,
                             FASTGD_DEFINE_PLAN_ROWS_AVX2_F64, fastgd_plan_rows_f64_i32_avx2_any)
FASTGD_DEFINE_PLAN_ROWS_AVX2(fastgd_plan_rows_f64_i64_avx2, double, int64_t,
                             FASTGD_DEFINE_PLAN_ROWS_AVX2_F64, fastgd_plan_rows_f64_i64_avx2_any)
FASTGD_DEFINE_PLAN_ROWS_AVX2(fastgd_plan_rows_f64_i32_avx512, double, int32_t,
                             FASTGD_DEFINE_PLAN_ROWS_AVX512_F64,
                             fastgd_plan_rows_f64_i32_avx2_any)
FASTGD_DEFINE_PLAN_ROWS_AVX2(fastgd_plan_rows_f64_i64_avx512, double, int64_t,
                             FASTGD_DEFINE_PLAN_ROWS_AVX512_F64,
                             fastgd_plan_rows_f64_i64_avx2_any)
#define fastgd_plan_rows_f32_i32_avx512 fastgd_plan_rows_f32_i32_avx2
#define fastgd_plan_rows_f32_i64_avx512 fastgd_plan_rows_f32_i64_avx2
#endif

/* Which loops run: FASTGD_LEVEL_SCALAR plain C lanes, FASTGD_LEVEL_BASELINE the
 * baseline's vectors (SSE2 on x86-64), FASTGD_LEVEL_AVX2 AVX2, FASTGD_LEVEL_AVX512 the
 * AVX-512 loops (float64 plan rows of rank 16, 32 and 64, and the dense path's), AVX2
 * elsewhere. */
static int fastgd_masked_simd = FASTGD_LEVEL_SCALAR;

/* Choose the loops for this CPU, at most level `asked`; returns the level chosen. */
static int fastgd_masked_select_simd(int asked)
{
    int highest = FASTGD_X86_DISPATCH ? FASTGD_LEVEL_AVX512
                  : FASTGD_SSE2       ? FASTGD_LEVEL_BASELINE
                                      : FASTGD_LEVEL_SCALAR;
    fastgd_masked_simd = fastgd_choose_level(asked, highest);
    return fastgd_masked_simd;
}

#if FASTGD_X86_DISPATCH
#define FASTGD_DISPATCH(NAME, ...)                                                      \
    (fastgd_masked_simd == FASTGD_LEVEL_AVX512     ? NAME##_avx512(__VA_ARGS__)         \
     : fastgd_masked_simd == FASTGD_LEVEL_AVX2     ? NAME##_avx2(__VA_ARGS__)           \
     : fastgd_masked_simd == FASTGD_LEVEL_BASELINE ? NAME##_base(__VA_ARGS__)           \
                                                   : NAME##_array(__VA_ARGS__))
#else
#define FASTGD_DISPATCH(NAME, ...)                                                      \
    (fastgd_masked_simd == FASTGD_LEVEL_BASELINE ? NAME##_base(__VA_ARGS__)             \
                                                 : NAME##_array(__VA_ARGS__))
#endif

#define FASTGD_DEFINE_PLAN_ROWS_DISPATCH(NAME, REAL, INDEX)                                \
    FASTGD_PLAN_ROWS_SIGNATURE(NAME, REAL, INDEX)                                           \
    {                                                                                       \
        return FASTGD_DISPATCH(NAME, indptr, indices, values, W, HT, dW, dHT, k, row_begin, \
                               row_end);                                                    \
    }

FASTGD_DEFINE_PLAN_ROWS_DISPATCH(fastgd_plan_rows_f32_i32, float, int32_t)
FASTGD_DEFINE_PLAN_ROWS_DISPATCH(fastgd_plan_rows_f32_i64, float, int64_t)
FASTGD_DEFINE_PLAN_ROWS_DISPATCH(fastgd_plan_rows_f64_i32, double, int32_t)
FASTGD_DEFINE_PLAN_ROWS_DISPATCH(fastgd_plan_rows_f64_i64, double, int64_t)

/* The dense path's pass over a row of a tile of W @ H: t_row[b] = t_row[b] - a_row[b]
 * where the entry is observed (m_row[b] != 0, or a_row[b] is not NaN without a mask),
 * +0 elsewhere, without a branch; adds the observed entries to *observed and returns
 * the sum of the squared residuals in double, in four interleaved sums added as
 * (s0 + s1) + (s2 + s3). Element-wise operations and a fixed summation order: every
 * level gives bitwise the same results. */
#define FASTGD_DEFINE_RESIDUAL_ROW(NAME, TARGET, REAL, UINT)                            \
    TARGET static double NAME(REAL *restrict t_row, const REAL *restrict a_row,         \
                              const unsigned char *restrict m_row, ptrdiff_t cols,      \
                              int64_t *observed)                                        \
    {                                                                                   \
        int64_t count = 0;                                                              \
        if (m_row != NULL) {                                                            \
            for (ptrdiff_t b = 0; b < cols; b++) {                                      \
                REAL r = t_row[b] - a_row[b];                                           \
                UINT bits;                                                              \
                memcpy(&bits, &r, sizeof bits);                                         \
                bits &= (UINT)0 - (UINT)(m_row[b] != 0);                                \
                memcpy(&r, &bits, sizeof bits);                                         \
                t_row[b] = r;                                                           \
                count += m_row[b] != 0;                                                 \
            }                                                                           \
        } else {                                                                        \
            for (ptrdiff_t b = 0; b < cols; b++) {                                      \
                REAL value = a_row[b], r = t_row[b] - value;                            \
                UINT bits;                                                              \
                memcpy(&bits, &r, sizeof bits);                                         \
                bits &= (UINT)0 - (UINT)(value == value);                               \
                memcpy(&r, &bits, sizeof bits);                                         \
                t_row[b] = r;                                                           \
                count += value == value;                                                \
            }                                                                           \
        }                                                                               \
        *observed += count;                                                             \
        double s0 = 0, s1 = 0, s2 = 0, s3 = 0;                                          \
        ptrdiff_t c = 0;                                                                \
        for (; c + 4 <= cols; c += 4) {                                                 \
            s0 += (double)t_row[c] * t_row[c];                                          \
            s1 += (double)t_row[c + 1] * t_row[c + 1];                                  \
            s2 += (double)t_row[c + 2] * t_row[c + 2];                                  \
            s3 += (double)t_row[c + 3] * t_row[c + 3];                                  \
        }                                                                               \
        for (; c < cols; c++)                                                           \
            s0 += (double)t_row[c] * t_row[c];                                          \
        return (s0 + s1) + (s2 + s3);                                                   \
    }

FASTGD_DEFINE_RESIDUAL_ROW(fastgd_residual_row_f32_baseline, , float, uint32_t)
FASTGD_DEFINE_RESIDUAL_ROW(fastgd_residual_row_f64_baseline, , double, uint64_t)
#if FASTGD_X86_DISPATCH
FASTGD_DEFINE_RESIDUAL_ROW(fastgd_residual_row_f32_avx2, FASTGD_TARGET_AVX2, float, uint32_t)
FASTGD_DEFINE_RESIDUAL_ROW(fastgd_residual_row_f64_avx2, FASTGD_TARGET_AVX2, double, uint64_t)
FASTGD_DEFINE_RESIDUAL_ROW(fastgd_residual_row_f32_avx512, FASTGD_TARGET_AVX512, float,
                           uint32_t)
FASTGD_DEFINE_RESIDUAL_ROW(fastgd_residual_row_f64_avx512, FASTGD_TARGET_AVX512, double,
                           uint64_t)
#endif
#define FASTGD_DENSE_DISPATCH(NAME, ...)                                                \
    FASTGD_LEVEL_CALL(fastgd_masked_simd, NAME, __VA_ARGS__)

static inline double fastgd_residual_row_f32(float *t_row, const float *a_row,
                                             const unsigned char *m_row, ptrdiff_t cols,
                                             int64_t *observed)
{
    return FASTGD_DENSE_DISPATCH(fastgd_residual_row_f32, t_row, a_row, m_row, cols, observed);
}
static inline double fastgd_residual_row_f64(double *t_row, const double *a_row,
                                             const unsigned char *m_row, ptrdiff_t cols,
                                             int64_t *observed)
{
    return FASTGD_DENSE_DISPATCH(fastgd_residual_row_f64, t_row, a_row, m_row, cols, observed);
}

#endif
