/* The metrics of the pairwise kernel, one small functor each (as SciPy's
 * scipy/spatial/src/distance_metrics.h has a struct per metric): the generic direct loops of
 * pairwise_loops.h and _pairwise.pyx take a metric's name and call
 *
 *   FASTGD_METRIC_TERM(METRIC, x, y)     one feature's term, x and y in double; an entry's
 *                                        accumulator adds the terms in feature order,
 *                                        from the first (0 + t = t);
 *   FASTGD_METRIC_TERM4(METRIC, x, y)    the same on AVX2 registers of 4 doubles, and
 *   FASTGD_METRIC_TERM8(METRIC, x, y)    on AVX-512 registers of 8 (the blocked loops);
 *   FASTGD_METRIC_FINISH(METRIC, sum)    the distance from the accumulated terms, before it
 *                                        is rounded to the output's dtype.
 *
 * sqeuclidean: (x - y)^2, the sum itself. It also has the expansion path
 * (||x||^2 + ||y||^2 - 2 x.y by GEMM), which only metrics of inner products can take.
 *
 * A new metric: its functions below, its instantiation of the direct loops
 * (pairwise_loops.h's FASTGD_DEFINE_PAIRWISE_LEVEL), its NumPy twin (METRICS in
 * fastgd/_numpy/_pairwise.py) and its entry in fastgd/distances.py's METRICS. */
#ifndef FASTGD_METRICS_H
#define FASTGD_METRICS_H

#include "cpu_dispatch.h"

#define FASTGD_METRIC_TERM(METRIC, x, y) fastgd_metric_term_##METRIC((x), (y))
#define FASTGD_METRIC_TERM4(METRIC, x, y) fastgd_metric_term4_##METRIC((x), (y))
#define FASTGD_METRIC_TERM8(METRIC, x, y) fastgd_metric_term8_##METRIC((x), (y))
#define FASTGD_METRIC_FINISH(METRIC, sum) fastgd_metric_finish_##METRIC(sum)

static inline double fastgd_metric_term_sqeuclidean(double x, double y)
{
    const double diff = x - y;
    return diff * diff;
}
static inline double fastgd_metric_finish_sqeuclidean(double sum)
{
    return sum;
}
#if FASTGD_X86_DISPATCH
#include <immintrin.h>
FASTGD_TARGET_AVX2 static inline __m256d fastgd_metric_term4_sqeuclidean(__m256d x, __m256d y)
{
    const __m256d diff = _mm256_sub_pd(x, y);
    return _mm256_mul_pd(diff, diff);
}
FASTGD_TARGET_AVX512 static inline __m512d fastgd_metric_term8_sqeuclidean(__m512d x,
                                                                          __m512d y)
{
    const __m512d diff = _mm512_sub_pd(x, y);
    return _mm512_mul_pd(diff, diff);
}
#endif

#endif
