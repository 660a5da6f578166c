/* The loops of the fused optimizer updates (fastgd.adagrad_update, fastgd.sgd_update),
 * compiled once per instruction-set level (cpu_dispatch.h) and chosen at import.
 *
 * Each loop updates n consecutive elements in place, in the arrays' own precision. Every
 * element is computed on its own with correctly rounded operations (+, *, /, sqrt; no FMA
 * contraction, the build passes -ffp-contract=off), so every level gives bitwise the same
 * results, and so does any split of the elements between threads. Each eps mode and
 * momentum variant has a branch-free loop of its own, so that the compiler vectorises it.
 */
#ifndef FASTGD_UPDATE_LOOPS_H
#define FASTGD_UPDATE_LOOPS_H

#include <math.h>
#include <stddef.h>

#include "cpu_dispatch.h"

enum {
    FASTGD_EPS_OUTSIDE = 0,    /* G += g^2; p -= clr g / (sqrt(G) + eps)     (PyTorch, Duchi et al.) */
    FASTGD_EPS_INSIDE = 1,     /* G += g^2; p -= clr g / sqrt(G + eps), 0 where G == 0     (optax) */
    FASTGD_EPS_ACCUMULATE = 2  /* G += g^2 + eps; p -= clr g / sqrt(G)  (the autograd tutorial) */
};

typedef struct {
    double rate;         /* Adagrad: the decayed rate clr; SGD: lr */
    double eps;
    double weight_decay;
    double momentum;
    double dampening;
    double lower_bound;  /* -inf when there is none */
    int eps_mode;
    int maximize;
    int nesterov;
    int has_state;       /* SGD: momentum buffers given */
} fastgd_update_settings;

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

/* One set of loops per level and precision. */
#define FASTGD_DEFINE_UPDATE_LEVEL(LEVEL, TARGET)                                       \
    FASTGD_DEFINE_ADAGRAD(fastgd_adagrad_f32_##LEVEL, TARGET, float, sqrtf)             \
    FASTGD_DEFINE_ADAGRAD(fastgd_adagrad_f64_##LEVEL, TARGET, double, sqrt)             \
    FASTGD_DEFINE_SGD(fastgd_sgd_f32_##LEVEL, TARGET, float)                            \
    FASTGD_DEFINE_SGD(fastgd_sgd_f64_##LEVEL, TARGET, double)

FASTGD_DEFINE_UPDATE_LEVEL(baseline, )
#if FASTGD_X86_DISPATCH
FASTGD_DEFINE_UPDATE_LEVEL(avx2, FASTGD_TARGET_AVX2)
FASTGD_DEFINE_UPDATE_LEVEL(avx512, FASTGD_TARGET_AVX512)
#define FASTGD_UPDATES_HIGHEST FASTGD_LEVEL_AVX512
#else
#define FASTGD_UPDATES_HIGHEST FASTGD_LEVEL_BASELINE
#endif

/* The level the update loops run at (set once at import by fastgd_updates_select_level). */
static int fastgd_updates_level = FASTGD_LEVEL_BASELINE;

/* Choose the loops for this CPU, at most level `asked`; returns the level chosen. */
static int fastgd_updates_select_level(int asked)
{
    fastgd_updates_level = fastgd_choose_vector_level(asked, FASTGD_UPDATES_HIGHEST);
    return fastgd_updates_level;
}

#define FASTGD_DEFINE_UPDATE_DISPATCH(NAME, REAL)                                       \
    static inline void NAME(REAL *param, const REAL *grad, REAL *state, ptrdiff_t n,    \
                            const fastgd_update_settings *s)                            \
    {                                                                                   \
        FASTGD_LEVEL_CALL(fastgd_updates_level, NAME, param, grad, state, n, s);        \
    }

FASTGD_DEFINE_UPDATE_DISPATCH(fastgd_adagrad_f32, float)
FASTGD_DEFINE_UPDATE_DISPATCH(fastgd_adagrad_f64, double)
FASTGD_DEFINE_UPDATE_DISPATCH(fastgd_sgd_f32, float)
FASTGD_DEFINE_UPDATE_DISPATCH(fastgd_sgd_f64, double)

#endif
