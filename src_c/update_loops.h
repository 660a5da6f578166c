/* The loops of the fused optimizer updates (fastgd.adagrad_update, fastgd.sgd_update),
 * compiled once per instruction-set level (cpu_dispatch.h) and chosen at import.
 *
 * Each loop updates n consecutive elements in place, in the arrays' own precision. Every
 * element is computed on its own with correctly rounded operations (+, *, /, sqrt; no FMA
 * contraction, the build passes -ffp-contract=off), so every level gives bitwise the same
 * results, and so does any split of the elements between threads. Each eps mode and
 * momentum variant has a branch-free loop of its own, so that the compiler vectorises it.
 * At the avx512 level, float64 Adagrad can also take two of every three vectors' square
 * roots from the FMA units (fma_sqrt.h), correctly rounded too: the same bits.
 */
#ifndef FASTGD_UPDATE_LOOPS_H
#define FASTGD_UPDATE_LOOPS_H

#include <math.h>
#include <stddef.h>

#include "cpu_dispatch.h"
#include "update_settings.h"

/* PyTorch's order: maximize negates the gradient, then weight decay adds wd * p. The test
 * of use_weight_decay is the same for the whole loop (the compiler unswitches it). */
#define FASTGD_EFFECTIVE_GRAD(g, p) (use_weight_decay ? sign * (g) + weight_decay * (p) : sign * (g))
/* max(value, lower_bound) that keeps NaN: a NaN parameter is not hidden. */
#define FASTGD_BOUNDED(value) ((value) < lower_bound ? lower_bound : (value))

#define FASTGD_UPDATE_PREAMBLE(REAL)                                                    \
    const REAL weight_decay = (REAL)s->weight_decay;                                    \
    const REAL lower_bound = (REAL)s->lower_bound;                                      \
    const REAL sign = s->maximize ? (REAL)-1 : (REAL)1;                                 \
    const int use_weight_decay = s->weight_decay != 0;

#define FASTGD_DEFINE_ADAGRAD(NAME, TARGET, REAL, SQRT)                                 \
    TARGET static void NAME(REAL *restrict param, const REAL *restrict grad,            \
                            REAL *restrict accum, ptrdiff_t n,                          \
                            const fastgd_update_settings *s)                            \
    {                                                                                   \
        FASTGD_UPDATE_PREAMBLE(REAL)                                                    \
        const REAL rate = (REAL)s->rate, eps = (REAL)s->eps;                            \
        if (s->eps_mode == FASTGD_EPS_OUTSIDE) {                                        \
            for (ptrdiff_t i = 0; i < n; i++) {                                         \
                REAL p = param[i], g = FASTGD_EFFECTIVE_GRAD(grad[i], p);               \
                REAL acc = accum[i] + g * g;                                            \
                accum[i] = acc;                                                         \
                p = p + (-rate * g) / (SQRT(acc) + eps);                                \
                param[i] = FASTGD_BOUNDED(p);                                           \
            }                                                                           \
        } else if (s->eps_mode == FASTGD_EPS_INSIDE) {                                  \
            for (ptrdiff_t i = 0; i < n; i++) {                                         \
                REAL p = param[i], g = FASTGD_EFFECTIVE_GRAD(grad[i], p);               \
                REAL acc = accum[i] + g * g;                                            \
                accum[i] = acc;                                                         \
                REAL stepped = p + (-rate * g) / SQRT(acc + eps);                       \
                p = acc > 0 ? stepped : p;                                              \
                param[i] = FASTGD_BOUNDED(p);                                           \
            }                                                                           \
        } else {                                                                        \
            for (ptrdiff_t i = 0; i < n; i++) {                                         \
                REAL p = param[i], g = FASTGD_EFFECTIVE_GRAD(grad[i], p);               \
                REAL acc = accum[i] + g * g + eps;                                      \
                accum[i] = acc;                                                         \
                p = p + (-rate * g) / SQRT(acc);                                        \
                param[i] = FASTGD_BOUNDED(p);                                           \
            }                                                                           \
        }                                                                               \
    }

#define FASTGD_DEFINE_SGD(NAME, TARGET, REAL)                                           \
    TARGET static void NAME(REAL *restrict param, const REAL *restrict grad,            \
                            REAL *restrict velocity, ptrdiff_t n,                       \
                            const fastgd_update_settings *s)                            \
    {                                                                                   \
        FASTGD_UPDATE_PREAMBLE(REAL)                                                    \
        const REAL lr = (REAL)s->rate, momentum = (REAL)s->momentum;                    \
        const REAL keep = (REAL)(1.0 - s->dampening);                                   \
        if (!s->has_state) {                                                            \
            for (ptrdiff_t i = 0; i < n; i++) {                                         \
                REAL p = param[i], g = FASTGD_EFFECTIVE_GRAD(grad[i], p);               \
                p = p + (-lr) * g;                                                      \
                param[i] = FASTGD_BOUNDED(p);                                           \
            }                                                                           \
        } else if (s->nesterov) {                                                       \
            for (ptrdiff_t i = 0; i < n; i++) {                                         \
                REAL p = param[i], g = FASTGD_EFFECTIVE_GRAD(grad[i], p);               \
                REAL buffer = velocity[i] * momentum + keep * g;                        \
                velocity[i] = buffer;                                                   \
                p = p + (-lr) * (g + momentum * buffer);                                \
                param[i] = FASTGD_BOUNDED(p);                                           \
            }                                                                           \
        } else {                                                                        \
            for (ptrdiff_t i = 0; i < n; i++) {                                         \
                REAL p = param[i], g = FASTGD_EFFECTIVE_GRAD(grad[i], p);               \
                REAL buffer = velocity[i] * momentum + keep * g;                        \
                velocity[i] = buffer;                                                   \
                p = p + (-lr) * buffer;                                                 \
                param[i] = FASTGD_BOUNDED(p);                                           \
            }                                                                           \
        }                                                                               \
    }

/* torch's lerp: start + weight * (end - start), or for weights of at least a half
 * end - (end - start) * complement (complement = 1 - weight), which is exact at weight 1. */
#define FASTGD_LERP(start, end, weight, complement, low_weight)                         \
    ((low_weight) ? (start) + (weight) * ((end) - (start))                              \
                  : (end) - ((end) - (start)) * (complement))
/* torch.maximum: NaN if either is NaN. */
#define FASTGD_MAXIMUM(a, b) ((a) != (a) ? (a) : ((a) >= (b) ? (a) : (b)))

/* Adam and AdamW (torch.optim.Adam, AdamW) in torch's order of operations: maximize negates
 * the gradient; Adam's weight decay adds wd * p to it, AdamW's scales p by 1 - lr wd first;
 * m = lerp(m, g, 1 - beta1); v = v beta2 + (1 - beta2) g g; with amsgrad the running
 * maximum of v stands for v; p += -(lr / (1 - beta1^t)) * (m / (sqrt(v) / sqrt(1 - beta2^t)
 * + eps)). exp_avg, exp_avg_sq and (amsgrad) max_exp_avg_sq are the states. Each choice of
 * amsgrad and decoupled has its own loop (AMSGRAD and DECOUPLED are constants in each), so
 * that the compiler vectorises it. */
#define FASTGD_ADAM_LOOP(REAL, SQRT, AMSGRAD, DECOUPLED)                                \
    for (ptrdiff_t i = 0; i < n; i++) {                                                 \
        REAL p = param[i], g = sign * grad[i];                                          \
        if (!(DECOUPLED))                                                               \
            g = use_weight_decay ? g + weight_decay * p : g;                            \
        if (DECOUPLED)                                                                  \
            p = p * decay;                                                              \
        REAL m = FASTGD_LERP(exp_avg[i], g, weight1, complement1, low_weight);          \
        REAL v = exp_avg_sq[i] * beta2 + weight2 * g * g;                               \
        exp_avg[i] = m;                                                                 \
        exp_avg_sq[i] = v;                                                              \
        if (AMSGRAD) {                                                                  \
            v = FASTGD_MAXIMUM(max_exp_avg_sq[i], v);                                   \
            max_exp_avg_sq[i] = v;                                                      \
        }                                                                               \
        REAL denominator = SQRT(v) / correction2 + eps;                                 \
        p = p + (-step_size) * (m / denominator);                                       \
        param[i] = FASTGD_BOUNDED(p);                                                   \
    }

#define FASTGD_DEFINE_ADAM(NAME, TARGET, REAL, SQRT)                                    \
    TARGET static void NAME(REAL *restrict param, const REAL *restrict grad,            \
                            REAL *restrict exp_avg, REAL *restrict exp_avg_sq,          \
                            REAL *restrict max_exp_avg_sq, ptrdiff_t n,                 \
                            const fastgd_update_settings *s)                            \
    {                                                                                   \
        FASTGD_UPDATE_PREAMBLE(REAL)                                                    \
        const REAL step_size = (REAL)s->rate, eps = (REAL)s->eps;                       \
        const REAL weight1 = (REAL)(1.0 - s->beta1), beta2 = (REAL)s->beta2;            \
        const REAL complement1 = (REAL)1 - weight1;                                     \
        const REAL weight2 = (REAL)(1.0 - s->beta2);                                    \
        const REAL correction2 = (REAL)s->bias_correction2_sqrt;                        \
        const REAL decay = (REAL)s->decay;                                              \
        const int low_weight = 1.0 - s->beta1 < 0.5;                                    \
        if (s->amsgrad && s->decoupled) {                                               \
            FASTGD_ADAM_LOOP(REAL, SQRT, 1, 1)                                          \
        } else if (s->amsgrad) {                                                        \
            FASTGD_ADAM_LOOP(REAL, SQRT, 1, 0)                                          \
        } else if (s->decoupled) {                                                      \
            FASTGD_ADAM_LOOP(REAL, SQRT, 0, 1)                                          \
        } else {                                                                        \
            FASTGD_ADAM_LOOP(REAL, SQRT, 0, 0)                                          \
        }                                                                               \
    }

/* RMSprop (torch.optim.RMSprop) in torch's order: maximize, then weight decay as Adam's;
 * v = v alpha + (1 - alpha) g g; centered: a = lerp(a, g, 1 - alpha), avg = sqrt(v - a a),
 * else avg = sqrt(v); avg += eps; with momentum b = b momentum + g / avg and p += -lr b,
 * else p += -lr (g / avg). square_avg, momentum_buffer (momentum > 0) and grad_avg
 * (centered) are the states; each choice of the two has its own loop, as Adam's. */
#define FASTGD_RMSPROP_LOOP(REAL, SQRT, CENTERED, MOMENTUM)                             \
    for (ptrdiff_t i = 0; i < n; i++) {                                                 \
        REAL p = param[i], g = FASTGD_EFFECTIVE_GRAD(grad[i], p);                       \
        REAL v = square_avg[i] * alpha + weight * g * g;                                \
        square_avg[i] = v;                                                              \
        REAL avg;                                                                       \
        if (CENTERED) {                                                                 \
            REAL a = FASTGD_LERP(grad_avg[i], g, weight, complement, low_weight);       \
            grad_avg[i] = a;                                                            \
            avg = SQRT(v + (REAL)-1 * a * a);                                           \
        } else {                                                                        \
            avg = SQRT(v);                                                              \
        }                                                                               \
        avg = avg + eps;                                                                \
        if (MOMENTUM) {                                                                 \
            REAL b = momentum_buffer[i] * momentum + g / avg;                           \
            momentum_buffer[i] = b;                                                     \
            p = p + (-lr) * b;                                                          \
        } else {                                                                        \
            p = p + (-lr) * (g / avg);                                                  \
        }                                                                               \
        param[i] = FASTGD_BOUNDED(p);                                                   \
    }

#define FASTGD_DEFINE_RMSPROP(NAME, TARGET, REAL, SQRT)                                 \
    TARGET static void NAME(REAL *restrict param, const REAL *restrict grad,            \
                            REAL *restrict square_avg, REAL *restrict momentum_buffer,  \
                            REAL *restrict grad_avg, ptrdiff_t n,                       \
                            const fastgd_update_settings *s)                            \
    {                                                                                   \
        FASTGD_UPDATE_PREAMBLE(REAL)                                                    \
        const REAL lr = (REAL)s->rate, eps = (REAL)s->eps;                              \
        const REAL alpha = (REAL)s->beta2, weight = (REAL)(1.0 - s->beta2);             \
        const REAL complement = (REAL)1 - weight;                                       \
        const REAL momentum = (REAL)s->momentum;                                        \
        const int low_weight = 1.0 - s->beta2 < 0.5;                                    \
        if (s->centered && s->momentum > 0) {                                           \
            FASTGD_RMSPROP_LOOP(REAL, SQRT, 1, 1)                                       \
        } else if (s->centered) {                                                       \
            FASTGD_RMSPROP_LOOP(REAL, SQRT, 1, 0)                                       \
        } else if (s->momentum > 0) {                                                   \
            FASTGD_RMSPROP_LOOP(REAL, SQRT, 0, 1)                                       \
        } else {                                                                        \
            FASTGD_RMSPROP_LOOP(REAL, SQRT, 0, 0)                                       \
        }                                                                               \
    }

/* How far ahead the loops that stream from memory prefetch: 2 KiB of each array. */
#define FASTGD_UPDATE_PREFETCH_BYTES 2048

/* The benchmarks' yardstick (_updates.bandwidth_floor): the least one pass of an update can
 * do, reading p, g and G and writing p and G (p += g; G += g), with the prefetching of the
 * float64 split loop (below) for each block of 512 bytes, then the block's plain loop,
 * which the compiler vectorises (a prefetch inside the loop would keep it from doing so);
 * compiled per level like the updates, so that an update at memory speed is measured
 * against a pass no slower than it needs. */
#define FASTGD_DEFINE_BANDWIDTH_FLOOR(NAME, TARGET, REAL)                               \
    TARGET static void NAME(REAL *restrict param, const REAL *restrict grad,            \
                            REAL *restrict accum, REAL *restrict accum2, ptrdiff_t n)   \
    {                                                                                   \
        enum { LINE = 64 / sizeof(REAL), BLOCK = 512 / sizeof(REAL) };                  \
        const ptrdiff_t ahead = FASTGD_UPDATE_PREFETCH_BYTES / sizeof(REAL);            \
        ptrdiff_t i = 0;                                                                \
        if (accum2 == NULL) {                                                           \
            for (; i + BLOCK <= n; i += BLOCK) {                                        \
                for (ptrdiff_t line = i + ahead; line < i + ahead + BLOCK; line += LINE) { \
                    FASTGD_PREFETCH(param + line);                                      \
                    FASTGD_PREFETCH(grad + line);                                       \
                    FASTGD_PREFETCH(accum + line);                                      \
                }                                                                       \
                for (ptrdiff_t j = i; j < i + BLOCK; j++) {                             \
                    param[j] = param[j] + grad[j];                                      \
                    accum[j] = accum[j] + grad[j];                                      \
                }                                                                       \
            }                                                                           \
            for (; i < n; i++) {                                                        \
                param[i] = param[i] + grad[i];                                          \
                accum[i] = accum[i] + grad[i];                                          \
            }                                                                           \
            return;                                                                     \
        }                                                                               \
        /* Two states (Adam's moments): read p, g, m, v; write p, m, v. */              \
        for (; i + BLOCK <= n; i += BLOCK) {                                            \
            for (ptrdiff_t line = i + ahead; line < i + ahead + BLOCK; line += LINE) {  \
                FASTGD_PREFETCH(param + line);                                          \
                FASTGD_PREFETCH(grad + line);                                           \
                FASTGD_PREFETCH(accum + line);                                          \
                FASTGD_PREFETCH(accum2 + line);                                         \
            }                                                                           \
            for (ptrdiff_t j = i; j < i + BLOCK; j++) {                                 \
                param[j] = param[j] + grad[j];                                          \
                accum[j] = accum[j] + grad[j];                                          \
                accum2[j] = accum2[j] + grad[j];                                        \
            }                                                                           \
        }                                                                               \
        for (; i < n; i++) {                                                            \
            param[i] = param[i] + grad[i];                                              \
            accum[i] = accum[i] + grad[i];                                              \
            accum2[i] = accum2[i] + grad[i];                                            \
        }                                                                               \
    }

/* One set of loops per level and precision. */
#define FASTGD_DEFINE_UPDATE_LEVEL(LEVEL, TARGET)                                       \
    FASTGD_DEFINE_ADAGRAD(fastgd_adagrad_f32_##LEVEL, TARGET, float, sqrtf)             \
    FASTGD_DEFINE_ADAGRAD(fastgd_adagrad_f64_##LEVEL, TARGET, double, sqrt)             \
    FASTGD_DEFINE_SGD(fastgd_sgd_f32_##LEVEL, TARGET, float)                            \
    FASTGD_DEFINE_SGD(fastgd_sgd_f64_##LEVEL, TARGET, double)                           \
    FASTGD_DEFINE_ADAM(fastgd_adam_f32_##LEVEL, TARGET, float, sqrtf)                   \
    FASTGD_DEFINE_ADAM(fastgd_adam_f64_##LEVEL, TARGET, double, sqrt)                   \
    FASTGD_DEFINE_RMSPROP(fastgd_rmsprop_f32_##LEVEL, TARGET, float, sqrtf)             \
    FASTGD_DEFINE_RMSPROP(fastgd_rmsprop_f64_##LEVEL, TARGET, double, sqrt)             \
    FASTGD_DEFINE_BANDWIDTH_FLOOR(fastgd_bandwidth_floor_f32_##LEVEL, TARGET, float)    \
    FASTGD_DEFINE_BANDWIDTH_FLOOR(fastgd_bandwidth_floor_f64_##LEVEL, TARGET, double)

FASTGD_DEFINE_UPDATE_LEVEL(baseline, )
#if FASTGD_X86_DISPATCH
FASTGD_DEFINE_UPDATE_LEVEL(avx2, FASTGD_TARGET_AVX2)
FASTGD_DEFINE_UPDATE_LEVEL(avx512, FASTGD_TARGET_AVX512)
#define FASTGD_UPDATES_HIGHEST FASTGD_LEVEL_AVX512

#include "fma_sqrt.h"

/* Eight float64 elements of Adagrad in every eps mode, the same operations as the loops
 * above, in two halves: fastgd_adagrad_start_f64 loads them, adds g^2 to G and stores it,
 * and takes the root; fastgd_adagrad_finish_f64 divides and stores the step. The root
 * comes from the divider, or with root_by_fma from the FMA units where fma_sqrt.h vouches
 * for every lane (from the divider otherwise): the same bits either way. root_by_fma is a
 * constant where it is inlined; the settings' tests take the same branch for every vector
 * of a call. */
typedef struct {
    __m512d param, grad, accum, denominator;
} fastgd_adagrad_started_f64;

FASTGD_TARGET_AVX512 static inline fastgd_adagrad_started_f64 fastgd_adagrad_start_f64(
    const double *param, const double *grad, double *accum, const fastgd_update_settings *s,
    int root_by_fma)
{
    fastgd_adagrad_started_f64 started;
    const __m512d eps = _mm512_set1_pd(s->eps);
    const __m512d p = _mm512_loadu_pd(param);
    __m512d g = _mm512_mul_pd(_mm512_set1_pd(s->maximize ? -1.0 : 1.0), _mm512_loadu_pd(grad));
    if (s->weight_decay != 0)
        g = _mm512_add_pd(g, _mm512_mul_pd(_mm512_set1_pd(s->weight_decay), p));
    __m512d acc = _mm512_add_pd(_mm512_loadu_pd(accum), _mm512_mul_pd(g, g));
    if (s->eps_mode == FASTGD_EPS_ACCUMULATE)
        acc = _mm512_add_pd(acc, eps);
    _mm512_storeu_pd(accum, acc);
    const __m512d radicand = s->eps_mode == FASTGD_EPS_INSIDE ? _mm512_add_pd(acc, eps) : acc;
    __m512d root;
    __mmask8 vouched = 0;
    if (root_by_fma)
        root = fastgd_fma_sqrt_f64x8(radicand, &vouched);
    if (vouched != 0xFF)
        root = _mm512_sqrt_pd(radicand);
    started.param = p;
    started.grad = g;
    started.accum = acc;
    started.denominator = s->eps_mode == FASTGD_EPS_OUTSIDE ? _mm512_add_pd(root, eps) : root;
    return started;
}

FASTGD_TARGET_AVX512 static inline void fastgd_adagrad_finish_f64(
    double *param, fastgd_adagrad_started_f64 started, const fastgd_update_settings *s)
{
    const __m512d lower_bound = _mm512_set1_pd(s->lower_bound);
    const __m512d quotient = _mm512_div_pd(
        _mm512_mul_pd(_mm512_set1_pd(-s->rate), started.grad), started.denominator);
    const __m512d stepped = _mm512_add_pd(started.param, quotient);
    __m512d p = stepped;
    if (s->eps_mode == FASTGD_EPS_INSIDE)  /* no step where G is 0 */
        p = _mm512_mask_mov_pd(started.param,
                               _mm512_cmp_pd_mask(started.accum, _mm512_setzero_pd(), _CMP_GT_OQ),
                               stepped);
    p = _mm512_mask_mov_pd(p, _mm512_cmp_pd_mask(p, lower_bound, _CMP_LT_OQ), lower_bound);
    _mm512_storeu_pd(param, p);
}

/* How far ahead the split loop prefetches, in elements: its FMA vectors fill the reorder
 * buffer, which leaves fewer loads in flight from memory. */
#define FASTGD_SPLIT_PREFETCH (FASTGD_UPDATE_PREFETCH_BYTES / (ptrdiff_t)sizeof(double))

/* float64 Adagrad with vectors taken in threes: the first two take their roots from the
 * FMA units, the third from the divider, and all three their quotients from the divider
 * (a root costs it about 1.5 quotients), so that both work at once; the rest by the avx512
 * loop. Of the mixes measured (roots, quotients or both on the FMA units, for one to four
 * vectors of every two to five), this took the least time (docs/performance.md).
 *
 * The loop is a software pipeline: each block of three vectors is started (loads, G, the
 * roots) while the block before it is finished (quotients, steps), so that the roots of
 * the next block are under way while the divider works on this one without the processor
 * having to look ahead for them. On a shared Xeon (Emerald Rapids) it took the time of
 * starting and finishing each block in turn in quiet minutes, and 0.87x to 0.9x of it in
 * cache in the slow minutes, as if the core's reordering window were smaller then (its
 * other hyperthread busy). */
FASTGD_TARGET_AVX512 static void fastgd_adagrad_f64_split_avx512(
    double *restrict param, const double *restrict grad, double *restrict accum, ptrdiff_t n,
    const fastgd_update_settings *s)
{
    /* Whole cache lines of param from here on (and of the others where they share its
     * offset, as NumPy's allocations do): a vector that straddles two lines costs two. */
    ptrdiff_t i = (ptrdiff_t)((64 - (uintptr_t)param % 64) % 64 / sizeof(double));
    if (i > n || (uintptr_t)param % sizeof(double) != 0)
        i = n;
    fastgd_adagrad_f64_avx512(param, grad, accum, i, s);
    if (n - i >= 24) {
        fastgd_adagrad_started_f64 first = fastgd_adagrad_start_f64(param + i, grad + i,
                                                                    accum + i, s, 1);
        fastgd_adagrad_started_f64 second = fastgd_adagrad_start_f64(
            param + i + 8, grad + i + 8, accum + i + 8, s, 1);
        fastgd_adagrad_started_f64 third = fastgd_adagrad_start_f64(
            param + i + 16, grad + i + 16, accum + i + 16, s, 0);
        for (; i + 48 <= n; i += 24) {
            const ptrdiff_t next = i + 24;
            for (int line = 0; line < 24; line += 8) {
                _mm_prefetch((const char *)(param + next + FASTGD_SPLIT_PREFETCH + line),
                             _MM_HINT_T0);
                _mm_prefetch((const char *)(grad + next + FASTGD_SPLIT_PREFETCH + line),
                             _MM_HINT_T0);
                _mm_prefetch((const char *)(accum + next + FASTGD_SPLIT_PREFETCH + line),
                             _MM_HINT_T0);
            }
            const fastgd_adagrad_started_f64 next_first = fastgd_adagrad_start_f64(
                param + next, grad + next, accum + next, s, 1);
            fastgd_adagrad_finish_f64(param + i, first, s);
            const fastgd_adagrad_started_f64 next_second = fastgd_adagrad_start_f64(
                param + next + 8, grad + next + 8, accum + next + 8, s, 1);
            fastgd_adagrad_finish_f64(param + i + 8, second, s);
            const fastgd_adagrad_started_f64 next_third = fastgd_adagrad_start_f64(
                param + next + 16, grad + next + 16, accum + next + 16, s, 0);
            fastgd_adagrad_finish_f64(param + i + 16, third, s);
            first = next_first;
            second = next_second;
            third = next_third;
        }
        fastgd_adagrad_finish_f64(param + i, first, s);
        fastgd_adagrad_finish_f64(param + i + 8, second, s);
        fastgd_adagrad_finish_f64(param + i + 16, third, s);
        i += 24;
    }
    fastgd_adagrad_f64_avx512(param + i, grad + i, accum + i, n - i, s);
}

/* For the tests: fma_sqrt.h's root of each a[i], whether it vouches for it (1 or 0), and
 * its correction of a candidate root within one ulp of sqrt(a[i]). */
FASTGD_TARGET_AVX512 static void fastgd_fma_sqrt_lanes_avx512(
    const double *a, const double *root_candidate, ptrdiff_t n, double *root,
    unsigned char *root_vouched, double *corrected_root)
{
    const __m512d ones = _mm512_set1_pd(1.0);
    for (ptrdiff_t i = 0; i < n; i += 8) {
        const __mmask8 lanes = (__mmask8)(n - i >= 8 ? 0xFF : (1u << (n - i)) - 1);
        const __m512d a_i = _mm512_mask_loadu_pd(ones, lanes, a + i);
        __mmask8 root_ok;
        _mm512_mask_storeu_pd(root + i, lanes, fastgd_fma_sqrt_f64x8(a_i, &root_ok));
        for (int k = 0; k < 8 && i + k < n; k++)
            root_vouched[i + k] = (root_ok >> k) & 1;
        const __m512d root_guess = _mm512_mask_loadu_pd(ones, lanes, root_candidate + i);
        _mm512_mask_storeu_pd(corrected_root + i, lanes,
                              fastgd_corrected_root_f64x8(a_i, root_guess));
    }
}
#else
#define FASTGD_UPDATES_HIGHEST FASTGD_LEVEL_BASELINE
#endif

/* The same where the CPU has AVX-512; returns 0, computing nothing, elsewhere. */
static inline int fastgd_fma_sqrt_lanes(const double *a, const double *root_candidate,
                                        ptrdiff_t n, double *root, unsigned char *root_vouched,
                                        double *corrected_root)
{
#if FASTGD_X86_DISPATCH
    if (fastgd_cpu_level() == FASTGD_LEVEL_AVX512) {
        fastgd_fma_sqrt_lanes_avx512(a, root_candidate, n, root, root_vouched, corrected_root);
        return 1;
    }
#endif
    (void)a, (void)root_candidate, (void)n, (void)root, (void)root_vouched;
    (void)corrected_root;
    return 0;
}

/* The level the update loops run at (set once at import by fastgd_updates_select_level). */
static int fastgd_updates_level = FASTGD_LEVEL_BASELINE;

/* How the float64 Adagrad loops at the avx512 level take their square roots: all from the
 * divider, or two of every three vectors' from the FMA units (fma_sqrt.h), which gives the
 * same bits. "auto" splits them where one divide unit takes both roots and quotients and
 * is slow at them (Intel's cores); AMD's Zen cores divide fast enough that the split does
 * not pay there. */
enum {
    FASTGD_DIVISION_AUTO = -1,
    FASTGD_DIVISION_DIVIDER = 0,
    FASTGD_DIVISION_DIVIDER_AND_FMA = 1
};
static int fastgd_updates_division_asked = FASTGD_DIVISION_AUTO;
static int fastgd_updates_division = FASTGD_DIVISION_DIVIDER;

static void fastgd_updates_apply_division(void)
{
    int split = 0;
#if FASTGD_X86_DISPATCH
    if (fastgd_updates_level == FASTGD_LEVEL_AVX512) {
        __builtin_cpu_init();
        split = fastgd_updates_division_asked == FASTGD_DIVISION_AUTO
                    ? __builtin_cpu_is("intel") != 0
                    : fastgd_updates_division_asked == FASTGD_DIVISION_DIVIDER_AND_FMA;
    }
#endif
    fastgd_updates_division = split ? FASTGD_DIVISION_DIVIDER_AND_FMA : FASTGD_DIVISION_DIVIDER;
}

/* Choose the loops for this CPU, at most level `asked`; returns the level chosen. */
static int fastgd_updates_select_level(int asked)
{
    fastgd_updates_level = fastgd_choose_vector_level(asked, FASTGD_UPDATES_HIGHEST);
    fastgd_updates_apply_division();
    return fastgd_updates_level;
}

/* Ask for a way of dividing (FASTGD_DIVISION_*); returns the one the loops now use (the
 * FMA units only ever help at the avx512 level). */
static int fastgd_updates_select_division(int asked)
{
    fastgd_updates_division_asked = asked;
    fastgd_updates_apply_division();
    return fastgd_updates_division;
}

#define FASTGD_DEFINE_UPDATE_DISPATCH(NAME, REAL)                                       \
    static inline void NAME(REAL *param, const REAL *grad, REAL *state, ptrdiff_t n,    \
                            const fastgd_update_settings *s)                            \
    {                                                                                   \
        FASTGD_LEVEL_CALL(fastgd_updates_level, NAME, param, grad, state, n, s);        \
    }

FASTGD_DEFINE_UPDATE_DISPATCH(fastgd_adagrad_f32, float)
/* float64 Adagrad: the avx512 loops, two of every three vectors' roots on the FMA units,
 * where the split is chosen. */
static inline void fastgd_adagrad_f64(double *param, const double *grad, double *state,
                                      ptrdiff_t n, const fastgd_update_settings *s)
{
#if FASTGD_X86_DISPATCH
    if (fastgd_updates_division == FASTGD_DIVISION_DIVIDER_AND_FMA
        && fastgd_updates_level == FASTGD_LEVEL_AVX512) {
        fastgd_adagrad_f64_split_avx512(param, grad, state, n, s);
        return;
    }
#endif
    FASTGD_LEVEL_CALL(fastgd_updates_level, fastgd_adagrad_f64, param, grad, state, n, s);
}
FASTGD_DEFINE_UPDATE_DISPATCH(fastgd_sgd_f32, float)
FASTGD_DEFINE_UPDATE_DISPATCH(fastgd_sgd_f64, double)

/* The dispatch state of these loops, for the module that holds it (_updates) to share, and
 * for a module that steps with its own copy of the loops (_solvers) to follow: a copy runs
 * at the level and division chosen in the holder, and its calls stay direct (inlined). */
static void fastgd_updates_share(fastgd_update_dispatch *state)
{
    state->level = fastgd_updates_level;
    state->division = fastgd_updates_division;
}

static void fastgd_updates_follow(const fastgd_update_dispatch *state)
{
    fastgd_updates_level = state->level;
    fastgd_updates_division = state->division;
}

#define FASTGD_DEFINE_THREE_STATE_DISPATCH(NAME, REAL)                                  \
    static inline void NAME(REAL *param, const REAL *grad, REAL *state0, REAL *state1,  \
                            REAL *state2, ptrdiff_t n, const fastgd_update_settings *s) \
    {                                                                                   \
        FASTGD_LEVEL_CALL(fastgd_updates_level, NAME, param, grad, state0, state1,      \
                          state2, n, s);                                                \
    }

FASTGD_DEFINE_THREE_STATE_DISPATCH(fastgd_adam_f32, float)
FASTGD_DEFINE_THREE_STATE_DISPATCH(fastgd_adam_f64, double)
FASTGD_DEFINE_THREE_STATE_DISPATCH(fastgd_rmsprop_f32, float)
FASTGD_DEFINE_THREE_STATE_DISPATCH(fastgd_rmsprop_f64, double)

#define FASTGD_DEFINE_FLOOR_DISPATCH(NAME, REAL)                                        \
    static inline void NAME(REAL *param, const REAL *grad, REAL *accum, REAL *accum2,   \
                            ptrdiff_t n)                                                \
    {                                                                                   \
        FASTGD_LEVEL_CALL(fastgd_updates_level, NAME, param, grad, accum, accum2, n);   \
    }

FASTGD_DEFINE_FLOOR_DISPATCH(fastgd_bandwidth_floor_f32, float)
FASTGD_DEFINE_FLOOR_DISPATCH(fastgd_bandwidth_floor_f64, double)

#endif
