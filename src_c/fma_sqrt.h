/* Correctly rounded float64 square roots on the FMA units (AVX-512).
 *
 * On some CPUs (Intel's cores) one divide unit takes both square roots and divisions, and
 * Adagrad's update, one root and one quotient per element, waits on it: 8 float64 lanes of
 * vsqrtpd take about 24 of its cycles there and vdivpd about 16. This function computes
 * the root from a reciprocal estimate, Newton steps and fused multiply-adds, which run on
 * other ports; the update loops (update_loops.h) take two of every three vectors' roots
 * from it (their quotients from the divider) and the third vector's root from the
 * divider, so that the divider and the FMA units work at once.
 *
 * The results are the correctly rounded ones, bit for bit what sqrt() gives: a candidate
 * within one unit in the last place is corrected by residuals that fused multiply-adds
 * compute exactly, so the answer never rests on the Newton steps' accuracy alone. This
 * holds only where no step underflows or overflows, so the function says in a mask which
 * lanes it vouches for; the caller takes every other lane (subnormals, inf, NaN, negative
 * radicands) from the divider.
 *
 * Square root of a, a in [2^-960, 2^800] (and a = +0, whose root is itself). The
 * estimate 1/sqrt(a) (14 bits) takes two Goldschmidt steps and a Newton step on s ~
 * sqrt(a). Then s is the correctly rounded root if and only if
 *     a - s * prev(s) > 0   and   a - s * next(s) <= 0,
 * Tuckerman's test: the root lies between the midpoints (s + prev(s)) / 2 and
 * (s + next(s)) / 2, and since a and both products are integer multiples of ulp(s)^2 / 2
 * (a is not subnormal and 2^-960 keeps the multiples above the subnormal spacing), the
 * small terms of the squared midpoints drop out; a root is never a midpoint. An fma
 * rounds the exact difference once, keeping its sign. Where a test fails, the neighbour
 * on that side is the root.
 *
 * (Quotients can be had the same way, from a reciprocal estimate and an exact remainder,
 * but every mix of them with the divider's was slower than the mix of roots above
 * (docs/performance.md), so the divider takes them all.)
 */
#ifndef FASTGD_FMA_SQRT_H
#define FASTGD_FMA_SQRT_H

#include <immintrin.h>
#include <stdint.h>

#include "cpu_dispatch.h"

/* The bit pattern of the positive float64 2^exponent. */
#define FASTGD_POWER_OF_TWO_BITS(exponent) ((int64_t)(1023 + (exponent)) << 52)

/* The lanes of `bits` whose unsigned value lies in [low, high]. */
FASTGD_TARGET_AVX512 static inline __mmask8 fastgd_bits_in_range(__m512i bits, int64_t low,
                                                                  int64_t high)
{
    return _mm512_cmp_epu64_mask(_mm512_sub_epi64(bits, _mm512_set1_epi64(low)),
                                 _mm512_set1_epi64(high - low), _MM_CMPINT_LE);
}

/* The float64 next to each lane of a positive finite `value`, above (step +1) or below
 * (step -1): one step of its bit pattern. */
FASTGD_TARGET_AVX512 static inline __m512d fastgd_neighbour_f64x8(__m512d value, int64_t step)
{
    return _mm512_castsi512_pd(
        _mm512_add_epi64(_mm512_castpd_si512(value), _mm512_set1_epi64(step)));
}

/* The correctly rounded sqrt(a) from a candidate within one ulp of it: Tuckerman's
 * test against both of the candidate's neighbours. */
FASTGD_TARGET_AVX512 static inline __m512d fastgd_corrected_root_f64x8(__m512d a, __m512d root)
{
    const __m512d zero = _mm512_setzero_pd();
    const __m512d below = fastgd_neighbour_f64x8(root, -1), above = fastgd_neighbour_f64x8(root, 1);
    const __mmask8 take_below =
        _mm512_cmp_pd_mask(_mm512_fnmadd_pd(root, below, a), zero, _CMP_LE_OQ);
    const __mmask8 take_above =
        _mm512_cmp_pd_mask(_mm512_fnmadd_pd(root, above, a), zero, _CMP_GT_OQ);
    root = _mm512_mask_mov_pd(root, take_below, below);
    return _mm512_mask_mov_pd(root, take_above, above);
}

/* sqrt(a), correctly rounded, in the lanes set in *vouched (see above). */
FASTGD_TARGET_AVX512 static inline __m512d fastgd_fma_sqrt_f64x8(__m512d a, __mmask8 *vouched)
{
    const __m512d half = _mm512_set1_pd(0.5);
    const __m512i bits = _mm512_castpd_si512(a);
    const __mmask8 is_zero = _mm512_cmpeq_epi64_mask(bits, _mm512_setzero_si512());
    *vouched = is_zero | fastgd_bits_in_range(bits, FASTGD_POWER_OF_TWO_BITS(-960),
                                              FASTGD_POWER_OF_TWO_BITS(800));
    /* Goldschmidt: root ~ sqrt(a) and half_inverse ~ 1 / (2 sqrt(a)), refined together. */
    const __m512d estimate = _mm512_rsqrt14_pd(a);
    __m512d root = _mm512_mul_pd(a, estimate), half_inverse = _mm512_mul_pd(half, estimate);
    for (int step = 0; step < 2; step++) {
        const __m512d error = _mm512_fnmadd_pd(root, half_inverse, half);
        root = _mm512_fmadd_pd(root, error, root);
        half_inverse = _mm512_fmadd_pd(half_inverse, error, half_inverse);
    }
    root = _mm512_fmadd_pd(_mm512_fnmadd_pd(root, root, a), half_inverse, root);
    return _mm512_mask_mov_pd(fastgd_corrected_root_f64x8(a, root), is_zero, a);
}

#endif
