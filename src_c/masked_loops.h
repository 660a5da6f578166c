/* The inner loops of fastgd.masked_loss_grad: the plan path's loop over the segments of
 * rows in a tile of columns (_masked.pyx takes the tiles in turn) in four variants,
 *
 *   scalar    plain C, the lanes of the dot product in an array;
 *   baseline  the dot product in SSE2 registers (the x86-64 baseline; elsewhere = scalar);
 *   avx2      compiled for AVX2 by a target attribute, with loops for ranks 16, 32 and
 *             64 that keep a row of W and of dW in registers;
 *   avx512    the same fixed-rank loops in AVX-512 registers (float32 adds the two
 *             halves of a 16-wide product to its eight lanes in turn, and sums the
 *             lanes of two entries in one register);
 *
 * and the dense path's residual pass, compiled per level (cpu_dispatch.h).
 *
 * fastgd_masked_select_simd picks the best one the CPU running the code supports, once at
 * import, never by the build machine's flags. All of them perform the same floating-point
 * operations in the same order (the dot product keeps independent lane sums, 8 in float64
 * and 16 in float32, one AVX-512 register of either, added in a fixed tree; no FMA
 * contraction, the build passes -ffp-contract=off), so they give bitwise the same
 * results: only the width of the registers differs.
 */
#ifndef FASTGD_MASKED_ROWS_H
#define FASTGD_MASKED_ROWS_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "cpu_dispatch.h"
#include "losses.h"

/* Prefetch every 64-byte line of two rows of `count` elements (of H.T and dH.T, or of W
 * and dW). */
#define FASTGD_PREFETCH_ROWS(ROW, OTHER_ROW, count)                                     \
    for (size_t line = 0; line < (size_t)(count) * sizeof(*(ROW)); line += 64) {        \
        FASTGD_PREFETCH((const char *)(ROW) + line);                                    \
        FASTGD_PREFETCH((const char *)(OTHER_ROW) + line);                              \
    }

/* The lane sums of the dot products and the trees that add them up: float64's eight
 * lanes in adjacent pairs, then pairs of pairs, then the halves; float32's sixteen by
 * halves (lane l plus lane l + 8, then l + 4, l + 2, l + 1), which registers of any width
 * make with the fewest shuffles. Sixteen float32 lanes let an AVX-512 register of products
 * add to the lanes in one operation (docs/performance.md, "Tuning constants"). */
#define FASTGD_LANES_F64 8
#define FASTGD_LANES_F32 16
#define FASTGD_LANE_SUM_F64(lanes)                                                      \
    ((((lanes)[0] + (lanes)[1]) + ((lanes)[2] + (lanes)[3]))                            \
     + (((lanes)[4] + (lanes)[5]) + ((lanes)[6] + (lanes)[7])))
#define FASTGD_LANE_SUM_F32_QUARTER(lanes, l)                                           \
    (((lanes)[l] + (lanes)[(l) + 8]) + ((lanes)[(l) + 4] + (lanes)[(l) + 12]))
#define FASTGD_LANE_SUM_F32(lanes)                                                      \
    ((FASTGD_LANE_SUM_F32_QUARTER(lanes, 0) + FASTGD_LANE_SUM_F32_QUARTER(lanes, 2))    \
     + (FASTGD_LANE_SUM_F32_QUARTER(lanes, 1) + FASTGD_LANE_SUM_F32_QUARTER(lanes, 3)))
/* Entries ahead whose rows of H.T and dH.T are prefetched (every cache line of them): near
 * enough that the rows arrive in L1 close to their use (docs/performance.md). */
#define FASTGD_PREFETCH_DISTANCE 4

/* The dot product: for k of at least LANES, lane l holds the product of coordinate l and
 * adds those of the coordinates c = l mod LANES after it, in order, in whole chunks of
 * LANES; LANE_SUM adds the lanes (all 0 when k < LANES), then come the remaining
 * coordinates in order. */
#define FASTGD_DEFINE_DOT_ARRAY(NAME, REAL, LANES, LANE_SUM)                            \
    static inline REAL NAME(const REAL *w, const REAL *h, ptrdiff_t k)                  \
    {                                                                                   \
        REAL lanes[LANES] = {0};                                                        \
        ptrdiff_t c = 0;                                                                \
        if (k >= (LANES)) {                                                             \
            for (int l = 0; l < (LANES); l++)                                           \
                lanes[l] = w[l] * h[l];                                                 \
            c = (LANES);                                                                \
        }                                                                               \
        for (; c + (LANES) <= k; c += (LANES))                                          \
            for (int l = 0; l < (LANES); l++)                                           \
                lanes[l] += w[c + l] * h[c + l];                                        \
        REAL r = LANE_SUM(lanes);                                                       \
        for (; c < k; c++)                                                              \
            r += w[c] * h[c];                                                           \
        return r;                                                                       \
    }
FASTGD_DEFINE_DOT_ARRAY(fastgd_dot_f32_array, float, FASTGD_LANES_F32, FASTGD_LANE_SUM_F32)
FASTGD_DEFINE_DOT_ARRAY(fastgd_dot_f64_array, double, FASTGD_LANES_F64, FASTGD_LANE_SUM_F64)

/* The same operations with the lanes in registers of VW elements (NAME's LANES / VW of
 * them): fastgd_dot_f32_array and fastgd_dot_f64_array with wider registers. */
#define FASTGD_DEFINE_DOT_VECTORS(NAME, ATTRIBUTE, REAL, VEC, VW, LANES, LANE_SUM, ZERO,    \
                                  LOAD, STORE, ADD, MUL)                                    \
    ATTRIBUTE static inline REAL NAME(const REAL *w, const REAL *h, ptrdiff_t k)            \
    {                                                                                       \
        VEC acc[(LANES) / (VW)];                                                            \
        REAL lanes[LANES];                                                                  \
        ptrdiff_t c = 0;                                                                    \
        for (int v = 0; v < (LANES) / (VW); v++)                                            \
            acc[v] = k >= (LANES) ? MUL(LOAD(w + (VW) * v), LOAD(h + (VW) * v)) : ZERO();   \
        if (k >= (LANES))                                                                   \
            c = (LANES);                                                                    \
        for (; c + (LANES) <= k; c += (LANES))                                              \
            for (int v = 0; v < (LANES) / (VW); v++)                                        \
                acc[v] = ADD(acc[v], MUL(LOAD(w + c + (VW) * v), LOAD(h + c + (VW) * v)));  \
        for (int v = 0; v < (LANES) / (VW); v++)                                            \
            STORE(lanes + (VW) * v, acc[v]);                                                \
        REAL r = LANE_SUM(lanes);                                                           \
        for (; c < k; c++)                                                                  \
            r += w[c] * h[c];                                                               \
        return r;                                                                           \
    }

#if defined(__SSE2__) || defined(_M_X64)
#include <immintrin.h>
#define FASTGD_SSE2 1
/* The baseline's: SSE2 registers of 2 doubles or 4 floats. */
FASTGD_DEFINE_DOT_VECTORS(fastgd_dot_f64_sse2, , double, __m128d, 2, FASTGD_LANES_F64,
                          FASTGD_LANE_SUM_F64, _mm_setzero_pd, _mm_loadu_pd, _mm_storeu_pd,
                          _mm_add_pd, _mm_mul_pd)
FASTGD_DEFINE_DOT_VECTORS(fastgd_dot_f32_sse2, , float, __m128, 4, FASTGD_LANES_F32,
                          FASTGD_LANE_SUM_F32, _mm_setzero_ps, _mm_loadu_ps, _mm_storeu_ps,
                          _mm_add_ps, _mm_mul_ps)
#define fastgd_dot_f64_base fastgd_dot_f64_sse2
#define fastgd_dot_f32_base fastgd_dot_f32_sse2
#else
#define FASTGD_SSE2 0
#define fastgd_dot_f64_base fastgd_dot_f64_array
#define fastgd_dot_f32_base fastgd_dot_f32_array
#endif

#if FASTGD_X86_DISPATCH
/* AVX2 registers of 4 doubles or 8 floats. */
FASTGD_DEFINE_DOT_VECTORS(fastgd_dot_f64_avx2, FASTGD_TARGET_AVX2, double, __m256d, 4,
                          FASTGD_LANES_F64, FASTGD_LANE_SUM_F64, _mm256_setzero_pd,
                          _mm256_loadu_pd, _mm256_storeu_pd, _mm256_add_pd, _mm256_mul_pd)
FASTGD_DEFINE_DOT_VECTORS(fastgd_dot_f32_avx2, FASTGD_TARGET_AVX2, float, __m256, 8,
                          FASTGD_LANES_F32, FASTGD_LANE_SUM_F32, _mm256_setzero_ps,
                          _mm256_loadu_ps, _mm256_storeu_ps, _mm256_add_ps, _mm256_mul_ps)
#endif

#if FASTGD_X86_DISPATCH
#include <immintrin.h>
#endif

/* The plan path works on a segment of each row at a time: the row's entries from
 * cursor[i] on whose columns lie in the tile [col_begin, col_end) (all of the row's
 * entries in the tile when they are ascending by column, as fastgd.observed makes them;
 * the Python layer takes a plan whose rows are not in one tile). HT and dHT hold the
 * tile's rows of H.T and dH.T: column j's row starts at (j - col_begin) * k. */
#define FASTGD_IN_TILE(j, col_begin, col_end)                                           \
    ((size_t)((ptrdiff_t)(j) - (col_begin)) < (size_t)((col_end) - (col_begin)))
/* Whether column j belongs to the row's segment: only the plan's own layout taken in tiles
 * (separate_segments) holds entries of other tiles between cursor[i] and indptr[i + 1];
 * tile by tile, or in one tile, all of them are the segment's. */
#define FASTGD_IN_SEGMENT(separate_segments, j, col_begin, col_end)                     \
    (!(separate_segments) || FASTGD_IN_TILE(j, col_begin, col_end))
#define FASTGD_PLAN_SEGMENT_SIGNATURE(NAME, REAL, INDEX)                                \
    static void NAME(const INDEX *indptr, const INDEX *indices, const REAL *values,     \
                     const REAL *W, const REAL *HT, REAL *dW, REAL *dHT, ptrdiff_t k,   \
                     ptrdiff_t row_begin, ptrdiff_t row_end, ptrdiff_t col_begin,       \
                     ptrdiff_t col_end, int64_t *cursor, double *row_sums,              \
                     int separate_segments, const fastgd_entry_loss *entry_loss)

/* Column j's row of k elements of REAL from `origin`, the address (as an integer) where
 * column 0's row of the tile's HT or dHT would be: one multiply-add from the index, without
 * subtracting col_begin first (0.92x to 0.97x the time of the fixed-rank loops). */
#define FASTGD_ROW_AT(REAL, origin, j, k)                                               \
    ((REAL *)((origin) + (uintptr_t)(ptrdiff_t)(j) * ((k) * sizeof(REAL))))
#define FASTGD_ROW_ORIGIN(ROWS, col_begin, k)                                           \
    ((uintptr_t)(ROWS) - (uintptr_t)(col_begin) * (k) * sizeof(*(ROWS)))
/* Prefetch column j's rows of H.T and dH.T if j lies in the segment's tile. */
#define FASTGD_PREFETCH_COLUMN(separate_segments, j, REAL, ht_origin, dht_origin, k,      \
                               col_begin, col_end)                                      \
    {                                                                                   \
        const ptrdiff_t j_ahead = (ptrdiff_t)(j);                                       \
        if (FASTGD_IN_SEGMENT(separate_segments, j_ahead, col_begin, col_end)) {        \
            FASTGD_PREFETCH_ROWS(FASTGD_ROW_AT(const REAL, ht_origin, j_ahead, k),      \
                                 FASTGD_ROW_AT(const REAL, dht_origin, j_ahead, k), k)  \
        }                                                                               \
    }
/* Prefetch the rows of H.T and dH.T of the entry FASTGD_PREFETCH_DISTANCE ahead, if that
 * entry exists and its column lies in the tile being worked on (which every entry up to
 * `last` does unless separate_segments); ht_origin and dht_origin: see FASTGD_ROW_AT. */
#define FASTGD_PREFETCH_AHEAD(separate_segments, e, last, indices, REAL, ht_origin,       \
                              dht_origin, k, col_begin, col_end)                        \
    if ((e) + FASTGD_PREFETCH_DISTANCE < (last)) {                                      \
        FASTGD_PREFETCH_COLUMN(separate_segments, (indices)[(e) + FASTGD_PREFETCH_DISTANCE], \
                               REAL, ht_origin, dht_origin, k, col_begin, col_end)      \
    }

/* At the start of row i: prefetch the first entry (index and value), the row of W and
 * the row of dW of row i + FASTGD_ROW_PREFETCH_DISTANCE, and, if separate_segments, the
 * rows of H.T and dH.T of the first FASTGD_SEGMENT_PREFETCH_ENTRIES entries of the
 * segment of row i + FASTGD_SEGMENT_PREFETCH_DISTANCE. A segment holds few entries when
 * the columns are taken in tiles, and would otherwise wait for each of these in turn:
 * in the plan's own layout taken in tiles (separate_segments), the prefetch of the
 * entries ahead stays within a segment. Where the entries come tile by tile, or in one
 * tile, a row's segment follows the previous row's and the prefetch of the entries ahead
 * reaches it (prefetching it again cost 5% to 15% at 20000 x 20000, k = 32). */
#define FASTGD_ROW_PREFETCH_DISTANCE 4
#define FASTGD_SEGMENT_PREFETCH_DISTANCE 2
#define FASTGD_SEGMENT_PREFETCH_ENTRIES 4
#define FASTGD_PREFETCH_ROW_AHEAD(i, row_end, indptr, cursor, indices, values, W, dW, HT,  \
                                  dHT, k, col_begin, col_end, separate_segments)          \
    if ((i) + FASTGD_ROW_PREFETCH_DISTANCE < (row_end)) {                               \
        const ptrdiff_t ahead_ = (i) + FASTGD_ROW_PREFETCH_DISTANCE;                    \
        FASTGD_PREFETCH((indices) + (cursor)[ahead_]);                                  \
        FASTGD_PREFETCH((values) + (cursor)[ahead_]);                                   \
        FASTGD_PREFETCH_ROWS((W) + ahead_ * (k), (dW) + ahead_ * (k), (k))              \
    }                                                                                   \
    if ((separate_segments) && (i) + FASTGD_SEGMENT_PREFETCH_DISTANCE < (row_end)) {    \
        const ptrdiff_t next_ = (i) + FASTGD_SEGMENT_PREFETCH_DISTANCE;                 \
        ptrdiff_t e_ = (ptrdiff_t)(cursor)[next_];                                      \
        ptrdiff_t stop_ = (ptrdiff_t)(indptr)[next_ + 1];                               \
        if (stop_ > e_ + FASTGD_SEGMENT_PREFETCH_ENTRIES)                               \
            stop_ = e_ + FASTGD_SEGMENT_PREFETCH_ENTRIES;                               \
        for (; e_ < stop_; e_++) {                                                      \
            const ptrdiff_t j_ = (ptrdiff_t)(indices)[e_];                              \
            if (j_ >= (col_begin) && j_ < (col_end)) {                                  \
                const ptrdiff_t at_ = (j_ - (col_begin)) * (k);                         \
                FASTGD_PREFETCH_ROWS((HT) + at_, (dHT) + at_, (k))                      \
            }                                                                           \
        }                                                                               \
    }

/* The entry loss's fields as constants of a loop (loss_code, loss_delta, loss_weights),
 * read once: the loop's stores to REAL arrays could otherwise change them. */
#define FASTGD_ENTRY_LOSS_FIELDS(REAL, entry_loss)                                      \
    const int loss_code = (entry_loss) != NULL ? (entry_loss)->code : 0;                \
    const REAL loss_delta = (entry_loss) != NULL ? (REAL)(entry_loss)->delta : 0;       \
    const REAL *const loss_weights =                                                    \
        (entry_loss) != NULL ? (const REAL *)(entry_loss)->weights : NULL;

/* For each row i in [row_begin, row_end), the entries e of its segment (above):
 * dW[i] += g_e H.T[j_e], dHT[j_e] += g_e W[i] and row_sums[i] += the entry's loss, in
 * entry order, with r_e = W[i] . H.T[j_e] - values[e]: without entry_loss, g_e = r_e and
 * the loss r_e^2; with it, as TERM (fastgd_entry_loss_term, losses.h) gives them. The loop
 * is compiled once with entry_loss NULL and once with it; cursor[i] moves past the
 * segment. */
#define FASTGD_DEFINE_PLAN_SEGMENT(NAME, REAL, INDEX, ATTRIBUTE, DOT, TERM)               \
    ATTRIBUTE static inline __attribute__((always_inline)) void NAME##_rows(              \
        const INDEX *indptr, const INDEX *indices, const REAL *values, const REAL *W,     \
        const REAL *HT, REAL *dW, REAL *dHT, ptrdiff_t k, ptrdiff_t row_begin,            \
        ptrdiff_t row_end, ptrdiff_t col_begin, ptrdiff_t col_end, int64_t *cursor,       \
        double *row_sums, int separate_segments, const fastgd_entry_loss *entry_loss)     \
    {                                                                                     \
        const ptrdiff_t last = (ptrdiff_t)indptr[row_end];                                \
        const uintptr_t ht_origin = FASTGD_ROW_ORIGIN(HT, col_begin, k);                  \
        const uintptr_t dht_origin = FASTGD_ROW_ORIGIN(dHT, col_begin, k);                \
        FASTGD_ENTRY_LOSS_FIELDS(REAL, entry_loss)                                        \
        for (ptrdiff_t i = row_begin; i < row_end; i++) {                                 \
            FASTGD_PREFETCH_ROW_AHEAD(i, row_end, indptr, cursor, indices, values, W, dW, \
                                      HT, dHT, k, col_begin, col_end, separate_segments)  \
            const REAL *restrict w = W + i * k;                                           \
            REAL *restrict dw = dW + i * k;                                               \
            const ptrdiff_t end = (ptrdiff_t)indptr[i + 1];                               \
            double sum = row_sums[i];                                                     \
            ptrdiff_t e = (ptrdiff_t)cursor[i];                                           \
            for (; e < end && FASTGD_IN_TILE(indices[e], col_begin, col_end); e++) {      \
                const REAL *restrict h = FASTGD_ROW_AT(const REAL, ht_origin, indices[e], k); \
                REAL *restrict dh = FASTGD_ROW_AT(REAL, dht_origin, indices[e], k);       \
                FASTGD_PREFETCH_AHEAD(separate_segments, e, last, indices, REAL, ht_origin, \
                                      dht_origin, k, col_begin, col_end)                  \
                REAL r = DOT(w, h, k) - values[e];                                        \
                if (entry_loss != NULL)                                                   \
                    sum += TERM##_at(loss_code, loss_delta, loss_weights, e, r, &r);      \
                else                                                                      \
                sum += (double)r * (double)r;                                             \
                for (ptrdiff_t c = 0; c < k; c++) {                                       \
                    dw[c] += r * h[c];                                                    \
                    dh[c] += r * w[c];                                                    \
                }                                                                         \
            }                                                                             \
            cursor[i] = e;                                                                \
            row_sums[i] = sum;                                                            \
        }                                                                                 \
    }                                                                                     \
    ATTRIBUTE FASTGD_PLAN_SEGMENT_SIGNATURE(NAME, REAL, INDEX)                            \
    {                                                                                     \
        if (entry_loss != NULL)                                                           \
            NAME##_rows(indptr, indices, values, W, HT, dW, dHT, k, row_begin, row_end,   \
                        col_begin, col_end, cursor, row_sums, separate_segments,          \
                        entry_loss);                                                      \
        else                                                                              \
            NAME##_rows(indptr, indices, values, W, HT, dW, dHT, k, row_begin, row_end,   \
                        col_begin, col_end, cursor, row_sums, separate_segments, NULL);   \
    }

/* The four segment loops (float32/float64, int32/int64 indices) named ..._SUFFIX, with
 * the dot products fastgd_dot_f32_DOT and fastgd_dot_f64_DOT. */
#define FASTGD_DEFINE_PLAN_SEGMENTS(SUFFIX, ATTRIBUTE, DOT)                              \
    FASTGD_DEFINE_PLAN_SEGMENT(fastgd_plan_segment_f32_i32_##SUFFIX, float, int32_t,     \
                               ATTRIBUTE, fastgd_dot_f32_##DOT,                          \
                               fastgd_entry_loss_term_f32)                               \
    FASTGD_DEFINE_PLAN_SEGMENT(fastgd_plan_segment_f32_i64_##SUFFIX, float, int64_t,     \
                               ATTRIBUTE, fastgd_dot_f32_##DOT,                          \
                               fastgd_entry_loss_term_f32)                               \
    FASTGD_DEFINE_PLAN_SEGMENT(fastgd_plan_segment_f64_i32_##SUFFIX, double, int32_t,    \
                               ATTRIBUTE, fastgd_dot_f64_##DOT,                          \
                               fastgd_entry_loss_term_f64)                               \
    FASTGD_DEFINE_PLAN_SEGMENT(fastgd_plan_segment_f64_i64_##SUFFIX, double, int64_t,    \
                               ATTRIBUTE, fastgd_dot_f64_##DOT,                          \
                               fastgd_entry_loss_term_f64)
FASTGD_DEFINE_PLAN_SEGMENTS(array, , array)
FASTGD_DEFINE_PLAN_SEGMENTS(base, , base)
#if FASTGD_X86_DISPATCH
/* At the AVX2 level, for ranks without a fixed-rank loop below. */
FASTGD_DEFINE_PLAN_SEGMENTS(avx2_any, FASTGD_TARGET_AVX2, avx2)

/* dw += r h and dh += r w for one entry, VW elements at a time (rv holds r in every
 * element; w and dw are the row's registers). */
#define FASTGD_UPDATE_ROWS(VW, LOAD, STORE, ADD, MUL, BLOCKS, rv, w, dw, h, dh)                \
    _Pragma("GCC unroll 16") for (int b_ = 0; b_ < (BLOCKS); b_++) {                          \
        (dw)[b_] = ADD((dw)[b_], MUL(rv, LOAD((h) + b_ * (VW))));                             \
        STORE((dh) + b_ * (VW), ADD(LOAD((dh) + b_ * (VW)), MUL(rv, (w)[b_])));               \
    }

/* In the fixed-rank loops below, where end, indices, values, w, BLOCKS, ht_origin,
 * dht_origin, last, col_begin, col_end and separate_segments are the loop's: whether
 * entries at and at + 1 exist in row i's segment; and for those two entries, the rows of
 * H.T and dH.T, the prefetch of the pair FASTGD_PREFETCH_DISTANCE entries ahead (one test
 * for both: with the residuals made in registers, below, 0.93x to 0.95x the time at
 * 1000 x 1000, k = 16, and 0.98x in float32 at 5000 x 5000) and the residuals
 * r = w . h - value in every element of rv0 and rv1 (DOT_PAIR). */
#define FASTGD_PAIR_IN_SEGMENT(at)                                                            \
    ((at) + 1 < end && FASTGD_IN_SEGMENT(separate_segments, indices[at], col_begin, col_end)  \
     && FASTGD_IN_SEGMENT(separate_segments, indices[(at) + 1], col_begin, col_end))
#define FASTGD_PAIR_RESIDUALS(REAL, K, DOT_PAIR, at, h0, h1, dh0, dh1, rv0, rv1)              \
    do {                                                                                      \
        (h0) = FASTGD_ROW_AT(const REAL, ht_origin, indices[at], (K));                        \
        (h1) = FASTGD_ROW_AT(const REAL, ht_origin, indices[(at) + 1], (K));                  \
        (dh0) = FASTGD_ROW_AT(REAL, dht_origin, indices[at], (K));                            \
        (dh1) = FASTGD_ROW_AT(REAL, dht_origin, indices[(at) + 1], (K));                      \
        if ((at) + 1 + FASTGD_PREFETCH_DISTANCE < last) {                                     \
            const ptrdiff_t j0_ = (ptrdiff_t)indices[(at) + FASTGD_PREFETCH_DISTANCE];        \
            const ptrdiff_t j1_ = (ptrdiff_t)indices[(at) + 1 + FASTGD_PREFETCH_DISTANCE];    \
            FASTGD_PREFETCH_COLUMN(separate_segments, j0_, REAL, ht_origin, dht_origin, (K),  \
                                   col_begin, col_end)                                        \
            FASTGD_PREFETCH_COLUMN(separate_segments, j1_, REAL, ht_origin, dht_origin, (K),  \
                                   col_begin, col_end)                                        \
        }                                                                                     \
        DOT_PAIR(w, h0, h1, BLOCKS, values[at], values[(at) + 1], rv0, rv1);                  \
    } while (0)

/* Loops for a rank K fixed at compile time (a multiple of the lanes and of VW): W[i]
 * and the dW[i] being summed stay in registers of VW elements across the row's entries.
 * DOT(w, h, BLOCKS) computes the dot product with the operations, in the order, of the
 * loops above (FASTGD_DOT_BY_LANES); DOT_PAIR(w, h0, h1, BLOCKS, v0, v1, rv0, rv1) computes
 * two of them the same way, and the residuals (each dot product less its value v) in every
 * element of rv0 and rv1; FIRST(rv) is a register's first element. The entries are taken
 * two at a time (their dot products overlap, and at AVX-512 their lanes are added up in
 * one register); their r^2, dW and dH.T updates are still made in entry order, so the
 * results do not change. With an entry loss, TERM##_value (losses.h) gives each entry's
 * loss and the registers take its gradient factor, TERM##_factor's operations by MIN and
 * MAX (Huber's clip) and MUL (the weight): the same bits as the loops above. */
#define FASTGD_DEFINE_PLAN_SEGMENT_FIXED(NAME, TARGET, REAL, INDEX, K, VEC, VW, LOAD, STORE,  \
                                         ADD, MUL, BROADCAST, FIRST, DOT, DOT_PAIR, TERM,     \
                                         MIN, MAX)                                            \
    TARGET static inline __attribute__((always_inline)) void NAME##_rows(                     \
        const INDEX *indptr, const INDEX *indices, const REAL *values, const REAL *W,         \
        const REAL *HT, REAL *dW, REAL *dHT, ptrdiff_t row_begin, ptrdiff_t row_end,          \
        ptrdiff_t col_begin, ptrdiff_t col_end, int64_t *cursor, double *row_sums,            \
        const int separate_segments, const fastgd_entry_loss *entry_loss)                     \
    {                                                                                         \
        enum { BLOCKS = (K) / (VW) };                                                         \
        const ptrdiff_t last = (ptrdiff_t)indptr[row_end];                                    \
        const uintptr_t ht_origin = FASTGD_ROW_ORIGIN(HT, col_begin, (K));                    \
        const uintptr_t dht_origin = FASTGD_ROW_ORIGIN(dHT, col_begin, (K));                  \
        FASTGD_ENTRY_LOSS_FIELDS(REAL, entry_loss)                                            \
        for (ptrdiff_t i = row_begin; i < row_end; i++) {                                     \
            FASTGD_PREFETCH_ROW_AHEAD(i, row_end, indptr, cursor, indices, values, W, dW,     \
                                      HT, dHT, (K), col_begin, col_end, separate_segments)    \
            const ptrdiff_t end = (ptrdiff_t)indptr[i + 1];                                   \
            ptrdiff_t e = (ptrdiff_t)cursor[i];                                               \
            if (e == end || !FASTGD_IN_SEGMENT(separate_segments, indices[e], col_begin,      \
                                               col_end))                                      \
                continue;                                                                     \
            double sum = row_sums[i];                                                         \
            VEC w[BLOCKS], dw[BLOCKS];                                                        \
            _Pragma("GCC unroll 16") for (int b = 0; b < BLOCKS; b++) {                       \
                w[b] = LOAD(W + i * (K) + b * (VW));                                          \
                dw[b] = LOAD(dW + i * (K) + b * (VW));                                        \
            }                                                                                 \
            /* The entries two at a time, software-pipelined: the dot products of the next    \
             * pair are made before this pair's updates (they read H.T, never dH.T), which    \
             * took 0.88x the time in float32 at 5000 x 5000, 0.96x at 1000 x 1000. */        \
            if (FASTGD_PAIR_IN_SEGMENT(e)) {                                                  \
                const REAL *h0, *h1;                                                          \
                REAL *dh0, *dh1;                                                              \
                VEC rv0, rv1;                                                                 \
                FASTGD_PAIR_RESIDUALS(REAL, (K), DOT_PAIR, e, h0, h1, dh0, dh1, rv0, rv1);    \
                for (;;) {                                                                    \
                    const int next = FASTGD_PAIR_IN_SEGMENT(e + 2);                           \
                    const REAL *g0 = h0, *g1 = h1;                                            \
                    REAL *dg0 = dh0, *dg1 = dh1;                                              \
                    VEC sv0 = rv0, sv1 = rv1;                                                 \
                    if (next)                                                                 \
                        FASTGD_PAIR_RESIDUALS(REAL, (K), DOT_PAIR, e + 2, g0, g1, dg0, dg1,   \
                                              sv0, sv1);                                      \
                    if (entry_loss != NULL) {                                                 \
                        sum += TERM##_value(loss_code, loss_delta, loss_weights, e, FIRST(rv0)); \
                        sum += TERM##_value(loss_code, loss_delta, loss_weights, e + 1,       \
                                            FIRST(rv1));                                      \
                        /* TERM##_factor in registers: the same clip, the same product. */    \
                        if (loss_code == FASTGD_ENTRY_HUBER) {                                \
                            rv0 = MIN(MAX(rv0, BROADCAST(-loss_delta)), BROADCAST(loss_delta)); \
                            rv1 = MIN(MAX(rv1, BROADCAST(-loss_delta)), BROADCAST(loss_delta)); \
                        }                                                                     \
                        if (loss_weights != NULL) {                                           \
                            rv0 = MUL(rv0, BROADCAST(loss_weights[e]));                       \
                            rv1 = MUL(rv1, BROADCAST(loss_weights[e + 1]));                   \
                        }                                                                     \
                    } else {                                                                  \
                    const double r0 = (double)FIRST(rv0), r1 = (double)FIRST(rv1);            \
                    sum += r0 * r0;                                                           \
                    sum += r1 * r1;                                                           \
                    }                                                                         \
                    FASTGD_UPDATE_ROWS(VW, LOAD, STORE, ADD, MUL, BLOCKS, rv0, w, dw, h0,     \
                                       dh0)                                                   \
                    FASTGD_UPDATE_ROWS(VW, LOAD, STORE, ADD, MUL, BLOCKS, rv1, w, dw, h1,     \
                                       dh1)                                                   \
                    e += 2;                                                                   \
                    if (!next)                                                                \
                        break;                                                                \
                    h0 = g0, h1 = g1, dh0 = dg0, dh1 = dg1, rv0 = sv0, rv1 = sv1;             \
                }                                                                             \
            }                                                                                 \
            /* The row's last entry in the tile, if their number is odd. */                   \
            for (; e < end                                                                    \
                   && FASTGD_IN_SEGMENT(separate_segments, indices[e], col_begin, col_end);   \
                 e++) {                                                                       \
                const REAL *h = FASTGD_ROW_AT(const REAL, ht_origin, indices[e], (K));        \
                REAL *dh = FASTGD_ROW_AT(REAL, dht_origin, indices[e], (K));                  \
                FASTGD_PREFETCH_AHEAD(separate_segments, e, last, indices, REAL, ht_origin,   \
                                      dht_origin, (K), col_begin, col_end)                    \
                REAL r = DOT(w, h, BLOCKS) - values[e];                                       \
                if (entry_loss != NULL)                                                       \
                    sum += TERM##_at(loss_code, loss_delta, loss_weights, e, r, &r);          \
                else                                                                          \
                sum += (double)r * (double)r;                                                 \
                const VEC rv = BROADCAST(r);                                                  \
                FASTGD_UPDATE_ROWS(VW, LOAD, STORE, ADD, MUL, BLOCKS, rv, w, dw, h, dh)       \
            }                                                                                 \
            _Pragma("GCC unroll 16") for (int b = 0; b < BLOCKS; b++)                         \
                STORE(dW + i * (K) + b * (VW), dw[b]);                                        \
            cursor[i] = e;                                                                    \
            row_sums[i] = sum;                                                                \
        }                                                                                     \
    }                                                                                         \
    /* The loop compiled four times, for separate_segments 0 and 1, with and without an       \
     * entry loss: without separate segments, no entry's column needs checking against the    \
     * tile, and without an entry loss the residuals go unchanged into the updates. */        \
    TARGET static void NAME(const INDEX *indptr, const INDEX *indices, const REAL *values,    \
                            const REAL *W, const REAL *HT, REAL *dW, REAL *dHT,               \
                            ptrdiff_t row_begin, ptrdiff_t row_end, ptrdiff_t col_begin,      \
                            ptrdiff_t col_end, int64_t *cursor, double *row_sums,             \
                            int separate_segments, const fastgd_entry_loss *entry_loss)       \
    {                                                                                         \
        if (entry_loss != NULL && separate_segments)                                          \
            NAME##_rows(indptr, indices, values, W, HT, dW, dHT, row_begin, row_end,          \
                        col_begin, col_end, cursor, row_sums, 1, entry_loss);                 \
        else if (entry_loss != NULL)                                                          \
            NAME##_rows(indptr, indices, values, W, HT, dW, dHT, row_begin, row_end,          \
                        col_begin, col_end, cursor, row_sums, 0, entry_loss);                 \
        else if (separate_segments)                                                           \
            NAME##_rows(indptr, indices, values, W, HT, dW, dHT, row_begin, row_end,          \
                        col_begin, col_end, cursor, row_sums, 1, NULL);                       \
        else                                                                                  \
            NAME##_rows(indptr, indices, values, W, HT, dW, dHT, row_begin, row_end,          \
                        col_begin, col_end, cursor, row_sums, 0, NULL);                       \
    }

/* FASTGD_LANE_SUM_F64 of eight lanes in registers: ((l0 + l1) + (l2 + l3)) +
 * ((l4 + l5) + (l6 + l7)); adjacent pairs first, then pairs of pairs, then the halves. */
FASTGD_TARGET_AVX2 static inline double fastgd_lane_sum_f64x4x2(__m256d low, __m256d high)
{
    __m256d low_pairs = _mm256_add_pd(low, _mm256_permute_pd(low, 0x5));
    __m256d high_pairs = _mm256_add_pd(high, _mm256_permute_pd(high, 0x5));
    __m128d low_quad = _mm_add_sd(_mm256_castpd256_pd128(low_pairs),
                                  _mm256_extractf128_pd(low_pairs, 1));
    __m128d high_quad = _mm_add_sd(_mm256_castpd256_pd128(high_pairs),
                                   _mm256_extractf128_pd(high_pairs, 1));
    return _mm_cvtsd_f64(_mm_add_sd(low_quad, high_quad));
}
FASTGD_TARGET_AVX512 static inline double fastgd_lane_sum_f64x8(__m512d lanes)
{
    __m512d pairs = _mm512_add_pd(lanes, _mm512_permute_pd(lanes, 0x55));
    __m512d quads = _mm512_add_pd(pairs, _mm512_permutex_pd(pairs, 0x4E));
    __m128d low = _mm512_castpd512_pd128(quads);
    __m128d high = _mm512_extractf64x2_pd(quads, 2);
    return _mm_cvtsd_f64(_mm_add_sd(low, high));
}
/* FASTGD_LANE_SUM_F32 of sixteen lanes, lanes 0 to 7 in `low` and 8 to 15 in `high`: by
 * halves, l + 8, l + 4, l + 2, l + 1. */
FASTGD_TARGET_AVX2 static inline float fastgd_lane_sum_f32x8x2(__m256 low, __m256 high)
{
    __m256 eighths = _mm256_add_ps(low, high);
    __m128 fourths = _mm_add_ps(_mm256_castps256_ps128(eighths),
                                _mm256_extractf128_ps(eighths, 1));
    __m128 halves = _mm_add_ps(fourths, _mm_movehl_ps(fourths, fourths));
    return _mm_cvtss_f32(_mm_add_ss(halves, _mm_shuffle_ps(halves, halves, 0x1)));
}
FASTGD_TARGET_AVX512 static inline float fastgd_lane_sum_f32x16(__m512 lanes)
{
    return fastgd_lane_sum_f32x8x2(_mm512_castps512_ps256(lanes),
                                   _mm512_extractf32x8_ps(lanes, 1));
}
#define FASTGD_LANE_SUM_F64X4(acc) fastgd_lane_sum_f64x4x2((acc)[0], (acc)[1])
#define FASTGD_LANE_SUM_F64X8(acc) fastgd_lane_sum_f64x8((acc)[0])
#define FASTGD_LANE_SUM_F32X8(acc) fastgd_lane_sum_f32x8x2((acc)[0], (acc)[1])
#define FASTGD_LANE_SUM_F32X16(acc) fastgd_lane_sum_f32x16((acc)[0])

/* The dot product of a row held in BLOCKS registers w[] of VW elements with h, as the
 * loops of every level make it: lane l of the LANES starts with the product of coordinate
 * l and sums those of the coordinates c = l mod LANES after it in order, and LANE_SUM
 * adds the lanes. */
#define FASTGD_DOT_BY_LANES(VEC, VW, LANES, LOAD, ADD, MUL, LANE_SUM, w, h, BLOCKS)           \
    __extension__({                                                                           \
        VEC acc_[(LANES) / (VW)];                                                             \
        _Pragma("GCC unroll 16") for (int v_ = 0; v_ < (LANES) / (VW); v_++)                  \
            acc_[v_] = MUL((w)[v_], LOAD((h) + v_ * (VW)));                                   \
        _Pragma("GCC unroll 16") for (int b_ = (LANES) / (VW); b_ < (BLOCKS); b_++)           \
            acc_[b_ % ((LANES) / (VW))] = ADD(acc_[b_ % ((LANES) / (VW))],                    \
                                              MUL((w)[b_], LOAD((h) + b_ * (VW))));           \
        LANE_SUM(acc_);                                                                       \
    })
#define FASTGD_DOT_AVX2_F64(w, h, BLOCKS)                                                     \
    FASTGD_DOT_BY_LANES(__m256d, 4, FASTGD_LANES_F64, _mm256_loadu_pd, _mm256_add_pd,         \
                        _mm256_mul_pd, FASTGD_LANE_SUM_F64X4, w, h, BLOCKS)
#define FASTGD_DOT_AVX2_F32(w, h, BLOCKS)                                                     \
    FASTGD_DOT_BY_LANES(__m256, 8, FASTGD_LANES_F32, _mm256_loadu_ps, _mm256_add_ps,          \
                        _mm256_mul_ps, FASTGD_LANE_SUM_F32X8, w, h, BLOCKS)
#define FASTGD_DOT_AVX512_F64(w, h, BLOCKS)                                                   \
    FASTGD_DOT_BY_LANES(__m512d, 8, FASTGD_LANES_F64, _mm512_loadu_pd, _mm512_add_pd,         \
                        _mm512_mul_pd, FASTGD_LANE_SUM_F64X8, w, h, BLOCKS)
#define FASTGD_DOT_AVX512_F32(w, h, BLOCKS)                                                   \
    FASTGD_DOT_BY_LANES(__m512, 16, FASTGD_LANES_F32, _mm512_loadu_ps, _mm512_add_ps,         \
                        _mm512_mul_ps, FASTGD_LANE_SUM_F32X16, w, h, BLOCKS)

/* Two residuals, one after the other (their operations overlap in the CPU), each
 * broadcast to a register. */
#define FASTGD_RESIDUAL_PAIR_BY_ONE(DOT, BROADCAST, w, h0, h1, BLOCKS, v0, v1, rv0, rv1)      \
    do {                                                                                      \
        (rv0) = BROADCAST(DOT(w, h0, BLOCKS) - (v0));                                         \
        (rv1) = BROADCAST(DOT(w, h1, BLOCKS) - (v1));                                         \
    } while (0)
#define FASTGD_RESIDUAL_PAIR_AVX2_F64(w, h0, h1, BLOCKS, v0, v1, rv0, rv1)                    \
    FASTGD_RESIDUAL_PAIR_BY_ONE(FASTGD_DOT_AVX2_F64, _mm256_set1_pd, w, h0, h1, BLOCKS, v0,   \
                                v1, rv0, rv1)
#define FASTGD_RESIDUAL_PAIR_AVX2_F32(w, h0, h1, BLOCKS, v0, v1, rv0, rv1)                    \
    FASTGD_RESIDUAL_PAIR_BY_ONE(FASTGD_DOT_AVX2_F32, _mm256_set1_ps, w, h0, h1, BLOCKS, v0,   \
                                v1, rv0, rv1)
/* Two float64 residuals, their dot products as FASTGD_DOT_AVX512_F64 computes each and
 * their lane sums made in one register: interleaved, h0's sums in the even elements and
 * h1's in the odd ones, adjacent pairs are added first, then pairs of pairs, then the
 * halves, each step adding a swapped copy, so that every even element ends with h0's dot
 * product and every odd one with h1's (a + b and b + a are the same bits): 7 shuffles and
 * additions for both lane sums instead of 12. Two shuffles spread them to whole registers
 * and the values are subtracted there, where two scalars took an extraction, two
 * subtractions and two broadcasts. */
#define FASTGD_RESIDUAL_PAIR_AVX512_F64(w, h0, h1, BLOCKS, v0, v1, rv0, rv1)                  \
    do {                                                                                      \
        __m512d acc0_ = _mm512_mul_pd((w)[0], _mm512_loadu_pd(h0));                           \
        __m512d acc1_ = _mm512_mul_pd((w)[0], _mm512_loadu_pd(h1));                           \
        _Pragma("GCC unroll 16") for (int b_ = 1; b_ < (BLOCKS); b_++) {                      \
            acc0_ = _mm512_add_pd(acc0_, _mm512_mul_pd((w)[b_], _mm512_loadu_pd((h0) + 8 * b_))); \
            acc1_ = _mm512_add_pd(acc1_, _mm512_mul_pd((w)[b_], _mm512_loadu_pd((h1) + 8 * b_))); \
        }                                                                                     \
        const __m512d pairs_ = _mm512_add_pd(_mm512_unpacklo_pd(acc0_, acc1_),                \
                                             _mm512_unpackhi_pd(acc0_, acc1_));               \
        const __m512d quads_ = _mm512_add_pd(pairs_, _mm512_permutex_pd(pairs_, 0x4E));       \
        const __m512d sums_ =                                                                 \
            _mm512_add_pd(quads_, _mm512_shuffle_f64x2(quads_, quads_, 0x4E));                \
        (rv0) = _mm512_sub_pd(_mm512_movedup_pd(sums_), _mm512_set1_pd(v0));                  \
        (rv1) = _mm512_sub_pd(_mm512_unpackhi_pd(sums_, sums_), _mm512_set1_pd(v1));          \
    } while (0)
/* Two float32 residuals, their dot products as FASTGD_DOT_AVX512_F32 computes each and
 * their lane sums made in one register: h0's eighths (lane l plus lane l + 8) in its low
 * half, h1's in its high half, then fourths, halves and the sums, each step adding a
 * swapped copy, so that elements 0 to 7 end with h0's dot product and 8 to 15 with h1's;
 * those are spread to whole registers and the values subtracted. */
#define FASTGD_RESIDUAL_PAIR_AVX512_F32(w, h0, h1, BLOCKS, v0, v1, rv0, rv1)                  \
    do {                                                                                      \
        __m512 acc0_ = _mm512_mul_ps((w)[0], _mm512_loadu_ps(h0));                            \
        __m512 acc1_ = _mm512_mul_ps((w)[0], _mm512_loadu_ps(h1));                            \
        _Pragma("GCC unroll 16") for (int b_ = 1; b_ < (BLOCKS); b_++) {                      \
            acc0_ = _mm512_add_ps(acc0_, _mm512_mul_ps((w)[b_], _mm512_loadu_ps((h0) + 16 * b_))); \
            acc1_ = _mm512_add_ps(acc1_, _mm512_mul_ps((w)[b_], _mm512_loadu_ps((h1) + 16 * b_))); \
        }                                                                                     \
        __m512 sums_ = _mm512_add_ps(_mm512_shuffle_f32x4(acc0_, acc1_, 0x44),                \
                                     _mm512_shuffle_f32x4(acc0_, acc1_, 0xEE));               \
        sums_ = _mm512_add_ps(sums_, _mm512_shuffle_f32x4(sums_, sums_, 0xB1));               \
        sums_ = _mm512_add_ps(sums_, _mm512_permute_ps(sums_, 0x4E));                         \
        sums_ = _mm512_add_ps(sums_, _mm512_permute_ps(sums_, 0xB1));                         \
        (rv0) = _mm512_sub_ps(_mm512_shuffle_f32x4(sums_, sums_, 0x00), _mm512_set1_ps(v0));  \
        (rv1) = _mm512_sub_ps(_mm512_shuffle_f32x4(sums_, sums_, 0xAA), _mm512_set1_ps(v1));  \
    } while (0)

#define FASTGD_DEFINE_PLAN_SEGMENT_AVX2_F64(NAME, INDEX, K)                                   \
    FASTGD_DEFINE_PLAN_SEGMENT_FIXED(NAME, FASTGD_TARGET_AVX2, double, INDEX, K, __m256d, 4,  \
                                     _mm256_loadu_pd, _mm256_storeu_pd, _mm256_add_pd,        \
                                     _mm256_mul_pd, _mm256_set1_pd, _mm256_cvtsd_f64,         \
                                     FASTGD_DOT_AVX2_F64, FASTGD_RESIDUAL_PAIR_AVX2_F64,      \
                                     fastgd_entry_loss_term_f64, _mm256_min_pd,               \
                                     _mm256_max_pd)
#define FASTGD_DEFINE_PLAN_SEGMENT_AVX2_F32(NAME, INDEX, K)                                   \
    FASTGD_DEFINE_PLAN_SEGMENT_FIXED(NAME, FASTGD_TARGET_AVX2, float, INDEX, K, __m256, 8,    \
                                     _mm256_loadu_ps, _mm256_storeu_ps, _mm256_add_ps,        \
                                     _mm256_mul_ps, _mm256_set1_ps, _mm256_cvtss_f32,         \
                                     FASTGD_DOT_AVX2_F32, FASTGD_RESIDUAL_PAIR_AVX2_F32,      \
                                     fastgd_entry_loss_term_f32, _mm256_min_ps,               \
                                     _mm256_max_ps)
/* AVX-512: one register holds float64's eight lanes, or float32's sixteen. */
#define FASTGD_DEFINE_PLAN_SEGMENT_AVX512_F64(NAME, INDEX, K)                                 \
    FASTGD_DEFINE_PLAN_SEGMENT_FIXED(NAME, FASTGD_TARGET_AVX512, double, INDEX, K, __m512d,   \
                                     8, _mm512_loadu_pd, _mm512_storeu_pd, _mm512_add_pd,     \
                                     _mm512_mul_pd, _mm512_set1_pd, _mm512_cvtsd_f64,         \
                                     FASTGD_DOT_AVX512_F64, FASTGD_RESIDUAL_PAIR_AVX512_F64,  \
                                     fastgd_entry_loss_term_f64, _mm512_min_pd,               \
                                     _mm512_max_pd)
#define FASTGD_DEFINE_PLAN_SEGMENT_AVX512_F32(NAME, INDEX, K)                                 \
    FASTGD_DEFINE_PLAN_SEGMENT_FIXED(NAME, FASTGD_TARGET_AVX512, float, INDEX, K, __m512, 16, \
                                     _mm512_loadu_ps, _mm512_storeu_ps, _mm512_add_ps,        \
                                     _mm512_mul_ps, _mm512_set1_ps, _mm512_cvtss_f32,         \
                                     FASTGD_DOT_AVX512_F32, FASTGD_RESIDUAL_PAIR_AVX512_F32,  \
                                     fastgd_entry_loss_term_f32, _mm512_min_ps,               \
                                     _mm512_max_ps)

/* The segment loop for rank k: a fixed-rank one for 16, 32 and 64, the general AVX2 one
 * (ANY) otherwise. */
#define FASTGD_DEFINE_PLAN_SEGMENT_BY_RANK(NAME, REAL, INDEX, FIXED, ANY)                     \
    FIXED(NAME##_k16, INDEX, 16)                                                              \
    FIXED(NAME##_k32, INDEX, 32)                                                              \
    FIXED(NAME##_k64, INDEX, 64)                                                              \
    FASTGD_PLAN_SEGMENT_SIGNATURE(NAME, REAL, INDEX)                                          \
    {                                                                                         \
        switch (k) {                                                                          \
        case 16:                                                                              \
            NAME##_k16(indptr, indices, values, W, HT, dW, dHT, row_begin, row_end,           \
                       col_begin, col_end, cursor, row_sums, separate_segments, entry_loss);  \
            return;                                                                           \
        case 32:                                                                              \
            NAME##_k32(indptr, indices, values, W, HT, dW, dHT, row_begin, row_end,           \
                       col_begin, col_end, cursor, row_sums, separate_segments, entry_loss);  \
            return;                                                                           \
        case 64:                                                                              \
            NAME##_k64(indptr, indices, values, W, HT, dW, dHT, row_begin, row_end,           \
                       col_begin, col_end, cursor, row_sums, separate_segments, entry_loss);  \
            return;                                                                           \
        default:                                                                              \
            ANY(indptr, indices, values, W, HT, dW, dHT, k, row_begin, row_end, col_begin,    \
                col_end, cursor, row_sums, separate_segments, entry_loss);                    \
        }                                                                                     \
    }

/* The four fixed-rank segment loops (float32/float64, int32/int64 indices) of a level. */
#define FASTGD_DEFINE_PLAN_SEGMENTS_BY_RANK(LEVEL, FIXED_F32, FIXED_F64)                    \
    FASTGD_DEFINE_PLAN_SEGMENT_BY_RANK(fastgd_plan_segment_f32_i32_##LEVEL, float, int32_t, \
                                       FIXED_F32, fastgd_plan_segment_f32_i32_avx2_any)     \
    FASTGD_DEFINE_PLAN_SEGMENT_BY_RANK(fastgd_plan_segment_f32_i64_##LEVEL, float, int64_t, \
                                       FIXED_F32, fastgd_plan_segment_f32_i64_avx2_any)     \
    FASTGD_DEFINE_PLAN_SEGMENT_BY_RANK(fastgd_plan_segment_f64_i32_##LEVEL, double,         \
                                       int32_t, FIXED_F64,                                  \
                                       fastgd_plan_segment_f64_i32_avx2_any)                \
    FASTGD_DEFINE_PLAN_SEGMENT_BY_RANK(fastgd_plan_segment_f64_i64_##LEVEL, double,         \
                                       int64_t, FIXED_F64,                                  \
                                       fastgd_plan_segment_f64_i64_avx2_any)
FASTGD_DEFINE_PLAN_SEGMENTS_BY_RANK(avx2, FASTGD_DEFINE_PLAN_SEGMENT_AVX2_F32,
                                    FASTGD_DEFINE_PLAN_SEGMENT_AVX2_F64)
FASTGD_DEFINE_PLAN_SEGMENTS_BY_RANK(avx512, FASTGD_DEFINE_PLAN_SEGMENT_AVX512_F32,
                                    FASTGD_DEFINE_PLAN_SEGMENT_AVX512_F64)
#endif

/* Which loops run: FASTGD_LEVEL_SCALAR plain C lanes, FASTGD_LEVEL_BASELINE the
 * baseline's vectors (SSE2 on x86-64), FASTGD_LEVEL_AVX2 AVX2, FASTGD_LEVEL_AVX512 the
 * AVX-512 loops (plan rows of rank 16, 32 and 64, and the dense path's), AVX2
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

#define FASTGD_DEFINE_PLAN_SEGMENT_DISPATCH(NAME, REAL, INDEX)                             \
    FASTGD_PLAN_SEGMENT_SIGNATURE(NAME, REAL, INDEX)                                        \
    {                                                                                       \
        FASTGD_DISPATCH(NAME, indptr, indices, values, W, HT, dW, dHT, k, row_begin,        \
                        row_end, col_begin, col_end, cursor, row_sums, separate_segments,   \
                        entry_loss);                                                        \
    }

FASTGD_DEFINE_PLAN_SEGMENT_DISPATCH(fastgd_plan_segment_f32_i32, float, int32_t)
FASTGD_DEFINE_PLAN_SEGMENT_DISPATCH(fastgd_plan_segment_f32_i64, float, int64_t)
FASTGD_DEFINE_PLAN_SEGMENT_DISPATCH(fastgd_plan_segment_f64_i32, double, int32_t)
FASTGD_DEFINE_PLAN_SEGMENT_DISPATCH(fastgd_plan_segment_f64_i64, double, int64_t)

/* The plan path's transposes, for columns [j_begin, j_end) of a tile of `cols` columns
 * (the caller splits a tile into blocks of columns among its threads):
 *   to rows     HT[j * k + c] = H[c * n + col_begin + j] (a tile of H.T from H);
 *   to columns  dH[c * ld + j] = (parts[0][j * k + c] + parts[1][j * k + c] + ...)
 *               * scale, added in part order, then scaled (the tile's dH.T back into
 *               dH's columns).
 * At the AVX2 level and above, blocks of 8 x 8 (float32) or 4 x 4 (float64) elements go
 * through registers and the rest element by element; the same values either way (the
 * same additions in the same order). Element by element, they took 13% of the 20000 x
 * 20000 plan at k = 32. */
#define FASTGD_DEFINE_TRANSPOSES_SCALAR(SUFFIX, REAL)                                     \
    /* Element by element, for the features [c_begin, k) of columns [j_begin, j_end). */  \
    static void fastgd_tile_to_rows_##SUFFIX##_scalar(                                    \
        const REAL *H, ptrdiff_t n, ptrdiff_t k, ptrdiff_t col_begin, ptrdiff_t c_begin,  \
        ptrdiff_t j_begin, ptrdiff_t j_end, REAL *HT)                                     \
    {                                                                                     \
        for (ptrdiff_t c = c_begin; c < k; c++)                                           \
            for (ptrdiff_t j = j_begin; j < j_end; j++)                                   \
                HT[j * k + c] = H[c * n + col_begin + j];                                 \
    }                                                                                     \
    static void fastgd_parts_to_columns_##SUFFIX##_scalar(                                \
        REAL *dH, ptrdiff_t ld, REAL *const *parts, ptrdiff_t n_parts, ptrdiff_t k,       \
        ptrdiff_t c_begin, ptrdiff_t j_begin, ptrdiff_t j_end, REAL scale)                \
    {                                                                                     \
        for (ptrdiff_t j = j_begin; j < j_end; j++)                                       \
            for (ptrdiff_t c = c_begin; c < k; c++) {                                     \
                REAL value = parts[0][j * k + c];                                         \
                for (ptrdiff_t p = 1; p < n_parts; p++)                                   \
                    value = value + parts[p][j * k + c];                                  \
                dH[c * ld + j] = value * scale;                                           \
            }                                                                             \
    }
FASTGD_DEFINE_TRANSPOSES_SCALAR(f32, float)
FASTGD_DEFINE_TRANSPOSES_SCALAR(f64, double)

#if FASTGD_X86_DISPATCH
/* rows[i] <- column i of the square block held in rows (8 x 8 float32, 4 x 4 float64). */
FASTGD_TARGET_AVX2 static inline void fastgd_transpose_8x8_f32(__m256 *rows)
{
    __m256 pairs[8], quads[8];
    for (int i = 0; i < 8; i += 2) {
        pairs[i] = _mm256_unpacklo_ps(rows[i], rows[i + 1]);
        pairs[i + 1] = _mm256_unpackhi_ps(rows[i], rows[i + 1]);
    }
    for (int i = 0; i < 8; i += 4) {
        quads[i] = _mm256_shuffle_ps(pairs[i], pairs[i + 2], 0x44);
        quads[i + 1] = _mm256_shuffle_ps(pairs[i], pairs[i + 2], 0xEE);
        quads[i + 2] = _mm256_shuffle_ps(pairs[i + 1], pairs[i + 3], 0x44);
        quads[i + 3] = _mm256_shuffle_ps(pairs[i + 1], pairs[i + 3], 0xEE);
    }
    for (int i = 0; i < 4; i++) {
        rows[i] = _mm256_permute2f128_ps(quads[i], quads[i + 4], 0x20);
        rows[i + 4] = _mm256_permute2f128_ps(quads[i], quads[i + 4], 0x31);
    }
}
FASTGD_TARGET_AVX2 static inline void fastgd_transpose_4x4_f64(__m256d *rows)
{
    __m256d low01 = _mm256_unpacklo_pd(rows[0], rows[1]);
    __m256d high01 = _mm256_unpackhi_pd(rows[0], rows[1]);
    __m256d low23 = _mm256_unpacklo_pd(rows[2], rows[3]);
    __m256d high23 = _mm256_unpackhi_pd(rows[2], rows[3]);
    rows[0] = _mm256_permute2f128_pd(low01, low23, 0x20);
    rows[1] = _mm256_permute2f128_pd(high01, high23, 0x20);
    rows[2] = _mm256_permute2f128_pd(low01, low23, 0x31);
    rows[3] = _mm256_permute2f128_pd(high01, high23, 0x31);
}

/* SUFFIX's transposes at the AVX2 level: whole blocks of B x B (VEC of B elements)
 * through TRANSPOSE; the features (c) and then the columns (j) that fill no block by the
 * scalar loops. */
#define FASTGD_DEFINE_TRANSPOSES_AVX2(SUFFIX, REAL, VEC, B, LOAD, STORE, ADD, MUL, SET1,   \
                                      TRANSPOSE)                                          \
    FASTGD_TARGET_AVX2 static void fastgd_tile_to_rows_##SUFFIX##_avx2(                   \
        const REAL *H, ptrdiff_t n, ptrdiff_t k, ptrdiff_t col_begin, ptrdiff_t j_begin,  \
        ptrdiff_t j_end, REAL *HT)                                                        \
    {                                                                                     \
        const ptrdiff_t k_blocks = k - k % (B);                                           \
        const ptrdiff_t j_blocks = j_begin + (j_end - j_begin) / (B) * (B);               \
        for (ptrdiff_t j = j_begin; j < j_blocks; j += (B))                               \
            for (ptrdiff_t c = 0; c < k_blocks; c += (B)) {                               \
                VEC block[B];                                                             \
                for (int i = 0; i < (B); i++)                                             \
                    block[i] = LOAD(H + (c + i) * n + col_begin + j);                     \
                TRANSPOSE(block);                                                         \
                for (int i = 0; i < (B); i++)                                             \
                    STORE(HT + (j + i) * k + c, block[i]);                                \
            }                                                                             \
        fastgd_tile_to_rows_##SUFFIX##_scalar(H, n, k, col_begin, k_blocks, j_begin,      \
                                              j_blocks, HT);                              \
        fastgd_tile_to_rows_##SUFFIX##_scalar(H, n, k, col_begin, 0, j_blocks, j_end,     \
                                              HT);                                        \
    }                                                                                     \
    FASTGD_TARGET_AVX2 static void fastgd_parts_to_columns_##SUFFIX##_avx2(               \
        REAL *dH, ptrdiff_t ld, REAL *const *parts, ptrdiff_t n_parts, ptrdiff_t k,       \
        ptrdiff_t j_begin, ptrdiff_t j_end, REAL scale)                                   \
    {                                                                                     \
        const ptrdiff_t k_blocks = k - k % (B);                                           \
        const ptrdiff_t j_blocks = j_begin + (j_end - j_begin) / (B) * (B);               \
        const VEC scales = SET1(scale);                                                   \
        for (ptrdiff_t j = j_begin; j < j_blocks; j += (B))                               \
            for (ptrdiff_t c = 0; c < k_blocks; c += (B)) {                               \
                VEC block[B];                                                             \
                for (int i = 0; i < (B); i++) {                                           \
                    VEC value = LOAD(parts[0] + (j + i) * k + c);                         \
                    for (ptrdiff_t p = 1; p < n_parts; p++)                               \
                        value = ADD(value, LOAD(parts[p] + (j + i) * k + c));             \
                    block[i] = MUL(value, scales);                                        \
                }                                                                         \
                TRANSPOSE(block);                                                         \
                for (int i = 0; i < (B); i++)                                             \
                    STORE(dH + (c + i) * ld + j, block[i]);                               \
            }                                                                             \
        fastgd_parts_to_columns_##SUFFIX##_scalar(dH, ld, parts, n_parts, k, k_blocks,    \
                                                  j_begin, j_blocks, scale);              \
        fastgd_parts_to_columns_##SUFFIX##_scalar(dH, ld, parts, n_parts, k, 0, j_blocks, \
                                                  j_end, scale);                          \
    }
FASTGD_DEFINE_TRANSPOSES_AVX2(f32, float, __m256, 8, _mm256_loadu_ps, _mm256_storeu_ps,
                              _mm256_add_ps, _mm256_mul_ps, _mm256_set1_ps,
                              fastgd_transpose_8x8_f32)
FASTGD_DEFINE_TRANSPOSES_AVX2(f64, double, __m256d, 4, _mm256_loadu_pd, _mm256_storeu_pd,
                              _mm256_add_pd, _mm256_mul_pd, _mm256_set1_pd,
                              fastgd_transpose_4x4_f64)
/* AVX2_CALL at the AVX2 level and above, else SCALAR_CALL. */
#define FASTGD_TRANSPOSE_BY_LEVEL(AVX2_CALL, SCALAR_CALL)                                 \
    (fastgd_masked_simd >= FASTGD_LEVEL_AVX2 ? (AVX2_CALL) : (SCALAR_CALL))
#else
#define FASTGD_TRANSPOSE_BY_LEVEL(AVX2_CALL, SCALAR_CALL) (SCALAR_CALL)
#endif

#define FASTGD_DEFINE_TRANSPOSES(SUFFIX, REAL)                                            \
    static void fastgd_tile_to_rows_##SUFFIX(const REAL *H, ptrdiff_t n, ptrdiff_t k,     \
                                             ptrdiff_t col_begin, ptrdiff_t j_begin,      \
                                             ptrdiff_t j_end, REAL *HT)                   \
    {                                                                                     \
        FASTGD_TRANSPOSE_BY_LEVEL(                                                        \
            fastgd_tile_to_rows_##SUFFIX##_avx2(H, n, k, col_begin, j_begin, j_end, HT),  \
            fastgd_tile_to_rows_##SUFFIX##_scalar(H, n, k, col_begin, 0, j_begin, j_end,  \
                                                  HT));                                   \
    }                                                                                     \
    static void fastgd_parts_to_columns_##SUFFIX(REAL *dH, ptrdiff_t ld,                  \
                                                 REAL *const *parts, ptrdiff_t n_parts,   \
                                                 ptrdiff_t k, ptrdiff_t j_begin,          \
                                                 ptrdiff_t j_end, REAL scale)             \
    {                                                                                     \
        FASTGD_TRANSPOSE_BY_LEVEL(                                                        \
            fastgd_parts_to_columns_##SUFFIX##_avx2(dH, ld, parts, n_parts, k, j_begin,   \
                                                    j_end, scale),                        \
            fastgd_parts_to_columns_##SUFFIX##_scalar(dH, ld, parts, n_parts, k, 0,       \
                                                      j_begin, j_end, scale));            \
    }
FASTGD_DEFINE_TRANSPOSES(f32, float)
FASTGD_DEFINE_TRANSPOSES(f64, double)

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
/* The dense path's pass with an entry loss (losses.h; its weights, if any, are this row's,
 * element b for a_row[b]): t_row[b] = g, the entry loss's gradient factor at the residual
 * t_row[b] - a_row[b], where the entry is observed, +0 elsewhere; adds the observed
 * entries to *observed and returns the sum of their losses in double, in order. */
#define FASTGD_DEFINE_LOSS_ROW(NAME, TARGET, REAL, TERM)                                \
    TARGET static double NAME(REAL *restrict t_row, const REAL *restrict a_row,         \
                              const unsigned char *restrict m_row, ptrdiff_t cols,      \
                              const fastgd_entry_loss *entry_loss, int64_t *observed)   \
    {                                                                                   \
        int64_t count = 0;                                                              \
        double sum = 0;                                                                 \
        for (ptrdiff_t b = 0; b < cols; b++) {                                          \
            const REAL value = a_row[b];                                                \
            REAL g = 0;                                                                 \
            if (m_row != NULL ? m_row[b] != 0 : value == value) {                       \
                sum += TERM(entry_loss, b, t_row[b] - value, &g);                       \
                count++;                                                                \
            }                                                                           \
            t_row[b] = g;                                                               \
        }                                                                               \
        *observed += count;                                                             \
        return sum;                                                                     \
    }
FASTGD_DEFINE_LOSS_ROW(fastgd_loss_row_f32_baseline, , float, fastgd_entry_loss_term_f32)
FASTGD_DEFINE_LOSS_ROW(fastgd_loss_row_f64_baseline, , double, fastgd_entry_loss_term_f64)
#if FASTGD_X86_DISPATCH
FASTGD_DEFINE_LOSS_ROW(fastgd_loss_row_f32_avx2, FASTGD_TARGET_AVX2, float,
                       fastgd_entry_loss_term_f32)
FASTGD_DEFINE_LOSS_ROW(fastgd_loss_row_f64_avx2, FASTGD_TARGET_AVX2, double,
                       fastgd_entry_loss_term_f64)
FASTGD_DEFINE_LOSS_ROW(fastgd_loss_row_f32_avx512, FASTGD_TARGET_AVX512, float,
                       fastgd_entry_loss_term_f32)
FASTGD_DEFINE_LOSS_ROW(fastgd_loss_row_f64_avx512, FASTGD_TARGET_AVX512, double,
                       fastgd_entry_loss_term_f64)
#endif
#define FASTGD_DENSE_DISPATCH(NAME, ...)                                                \
    FASTGD_LEVEL_CALL(fastgd_masked_simd, NAME, __VA_ARGS__)

/* The dense path's row passes at the level chosen: fastgd_residual_row_SUFFIX and
 * fastgd_loss_row_SUFFIX. */
#define FASTGD_DEFINE_DENSE_ROWS(SUFFIX, REAL)                                          \
    static inline double fastgd_residual_row_##SUFFIX(REAL *t_row, const REAL *a_row,   \
                                                      const unsigned char *m_row,       \
                                                      ptrdiff_t cols, int64_t *observed) \
    {                                                                                   \
        return FASTGD_DENSE_DISPATCH(fastgd_residual_row_##SUFFIX, t_row, a_row, m_row, \
                                     cols, observed);                                   \
    }                                                                                   \
    static inline double fastgd_loss_row_##SUFFIX(REAL *t_row, const REAL *a_row,      \
                                                  const unsigned char *m_row,           \
                                                  ptrdiff_t cols,                       \
                                                  const fastgd_entry_loss *entry_loss,  \
                                                  int64_t *observed)                    \
    {                                                                                   \
        return FASTGD_DENSE_DISPATCH(fastgd_loss_row_##SUFFIX, t_row, a_row, m_row, cols, \
                                     entry_loss, observed);                             \
    }
FASTGD_DEFINE_DENSE_ROWS(f32, float)
FASTGD_DEFINE_DENSE_ROWS(f64, double)

#endif
