/* The stochastic solver's loops (fastgd.factorize with solver="stochastic"): one pass over
 * a block of observed entries, each entry stepping only the row of W, the row of HT (H
 * transposed) and the two biases it touches, and the sum of the entry losses over a range
 * of entries (the training loss and the validation RMSE).
 *
 * The model of entry (u, i) is W[u] . HT[i], plus mu + row_bias[u] + col_bias[i] with
 * biases. Its step descends
 *     0.5 * loss(r) + 0.5 * reg_W[u] ||W[u]||^2 + 0.5 * reg_HT[i] ||HT[i]||^2
 *                   + 0.5 * reg_row_bias[u] row_bias[u]^2 + 0.5 * reg_col_bias[i] col_bias[i]^2
 * with r the entry's residual and loss its entry loss (losses.h: r^2, or Huber's twice,
 * times the entry's weight), so that the derivative of the data term is -g with g the
 * entry loss's gradient factor (r, clipped for Huber, times the weight): the update of
 * Surprise's and cornac's biased SGD. The per-row coefficients carry both forms of the
 * penalty (fastgd/_stochastic.py): a constant per rating, or l2 divided by the row's count
 * (the whole-factor penalty, spread over its entries).
 *
 * The steps (fastgd/_codes.py's STOCHASTIC_STEPS): "sgd", p -= lr * grad; "adagrad", one
 * accumulator per coordinate, G += grad^2, p -= lr * grad / (sqrt(G) + eps); and
 * "adagrad_vector", LIBMF's form, one accumulator per row vector that adds the mean of
 * grad^2 over its k coordinates (a bias keeps its own accumulator). Both vectors' gradients
 * are taken at the entry's starting point. With a lower bound (nonneg), W and HT are
 * clipped to it after every step.
 *
 * Bitwise the same at every level: the dot products and sums of squares over k add into
 * FASTGD_STOCHASTIC_LANES partial sums (coordinate f into lane f % LANES) reduced in a
 * fixed tree, so the register width changes the speed and not the order; everything else
 * is element by element. */
#ifndef FASTGD_STOCHASTIC_LOOPS_H
#define FASTGD_STOCHASTIC_LOOPS_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>

#include "cpu_dispatch.h"
#include "losses.h"

#define FASTGD_STOCHASTIC_LANES 8
/* A pass asks for the rows of the entry this many places ahead. */
#define FASTGD_STOCHASTIC_AHEAD 8

typedef struct {
    double lr, eps;
    double lower_bound; /* -inf: no projection */
    int step;           /* a STOCHASTIC_STEPS code */
    int entry_loss;     /* an ENTRY_LOSSES code */
    double delta;
    int biases;
    double mu;
} fastgd_stochastic_settings;

#define FASTGD_LANES_REDUCE(acc)                                                        \
    ((((acc)[0] + (acc)[4]) + ((acc)[2] + (acc)[6]))                                    \
     + (((acc)[1] + (acc)[5]) + ((acc)[3] + (acc)[7])))

/* NAME##_dot(a, b, k): sum of a[f] b[f] in the lanes' order. */
#define FASTGD_DEFINE_STOCHASTIC_DOT(NAME, TARGET, REAL)                                \
    TARGET static inline REAL NAME(const REAL *restrict a, const REAL *restrict b,      \
                                   ptrdiff_t k)                                         \
    {                                                                                   \
        REAL acc[FASTGD_STOCHASTIC_LANES] = {0};                                        \
        ptrdiff_t f = 0;                                                                \
        for (; f + FASTGD_STOCHASTIC_LANES <= k; f += FASTGD_STOCHASTIC_LANES)          \
            for (int j = 0; j < FASTGD_STOCHASTIC_LANES; j++)                           \
                acc[j] += a[f + j] * b[f + j];                                          \
        for (int j = 0; f + j < k; j++)                                                 \
            acc[j] += a[f + j] * b[f + j];                                              \
        return FASTGD_LANES_REDUCE(acc);                                                \
    }

/* One pass over entries [start, stop) in their order. */
#define FASTGD_DEFINE_STOCHASTIC_PASS(NAME, DOT, TARGET, REAL, SQRT)                     \
    TARGET static void NAME(                                                            \
        const int32_t *restrict rows, const int32_t *restrict cols,                     \
        const REAL *restrict values, const REAL *restrict weights, ptrdiff_t start,     \
        ptrdiff_t stop, REAL *restrict W, REAL *restrict HT, ptrdiff_t k,               \
        REAL *restrict row_bias, REAL *restrict col_bias, REAL *restrict state_W,       \
        REAL *restrict state_HT, REAL *restrict state_row_bias,                         \
        REAL *restrict state_col_bias, const REAL *restrict reg_W,                      \
        const REAL *restrict reg_HT, const REAL *restrict reg_row_bias,                 \
        const REAL *restrict reg_col_bias, const fastgd_stochastic_settings *s)         \
    {                                                                                   \
        const REAL lr = (REAL)s->lr, eps = (REAL)s->eps, lower = (REAL)s->lower_bound;  \
        const REAL mu = (REAL)s->mu, delta = (REAL)s->delta;                            \
        const int step = s->step, code = s->entry_loss, biases = s->biases;             \
        const int project = s->lower_bound > -INFINITY;                                 \
        const REAL inv_k = k > 0 ? (REAL)1 / (REAL)k : (REAL)0;                         \
        for (ptrdiff_t e = start; e < stop; e++) {                                      \
            if (e + FASTGD_STOCHASTIC_AHEAD < stop) {                                   \
                const REAL *next_w = W + rows[e + FASTGD_STOCHASTIC_AHEAD] * k;         \
                const REAL *next_h = HT + cols[e + FASTGD_STOCHASTIC_AHEAD] * k;        \
                for (ptrdiff_t f = 0; f < k; f += 64 / (ptrdiff_t)sizeof(REAL)) {       \
                    FASTGD_PREFETCH(next_w + f);                                        \
                    FASTGD_PREFETCH(next_h + f);                                        \
                }                                                                       \
            }                                                                           \
            const ptrdiff_t u = rows[e], i = cols[e];                                   \
            REAL *restrict w = W + u * k;                                               \
            REAL *restrict h = HT + i * k;                                              \
            REAL prediction = DOT(w, h, k);                                             \
            if (biases)                                                                 \
                prediction = ((mu + row_bias[u]) + col_bias[i]) + prediction;           \
            REAL g = values[e] - prediction;                                            \
            if (code == FASTGD_ENTRY_HUBER) {                                           \
                g = g > -delta ? g : -delta;                                            \
                g = g < delta ? g : delta;                                              \
            }                                                                           \
            if (weights != NULL)                                                        \
                g = g * weights[e];                                                     \
            const REAL lw = reg_W[u], lh = reg_HT[i];                                   \
            if (biases) {                                                               \
                const REAL gb = reg_row_bias[u] * row_bias[u] - g;                      \
                const REAL gc = reg_col_bias[i] * col_bias[i] - g;                      \
                if (step == FASTGD_STEP_SGD) {                                          \
                    row_bias[u] = row_bias[u] - lr * gb;                                \
                    col_bias[i] = col_bias[i] - lr * gc;                                \
                } else {                                                                \
                    state_row_bias[u] = state_row_bias[u] + gb * gb;                    \
                    state_col_bias[i] = state_col_bias[i] + gc * gc;                    \
                    row_bias[u] = row_bias[u] - lr * gb / (SQRT(state_row_bias[u]) + eps); \
                    col_bias[i] = col_bias[i] - lr * gc / (SQRT(state_col_bias[i]) + eps); \
                }                                                                       \
            }                                                                           \
            if (step == FASTGD_STEP_SGD) {                                              \
                for (ptrdiff_t f = 0; f < k; f++) {                                     \
                    const REAL wf = w[f], hf = h[f];                                    \
                    w[f] = wf - lr * (lw * wf - g * hf);                                \
                    h[f] = hf - lr * (lh * hf - g * wf);                                \
                }                                                                       \
            } else if (step == FASTGD_STEP_ADAGRAD) {                                   \
                REAL *restrict gw = state_W + u * k;                                    \
                REAL *restrict gh = state_HT + i * k;                                   \
                for (ptrdiff_t f = 0; f < k; f++) {                                     \
                    const REAL wf = w[f], hf = h[f];                                    \
                    const REAL dw = lw * wf - g * hf, dh = lh * hf - g * wf;            \
                    gw[f] = gw[f] + dw * dw;                                            \
                    gh[f] = gh[f] + dh * dh;                                            \
                    w[f] = wf - lr * dw / (SQRT(gw[f]) + eps);                          \
                    h[f] = hf - lr * dh / (SQRT(gh[f]) + eps);                          \
                }                                                                       \
            } else {                                                                    \
                REAL acc_w[FASTGD_STOCHASTIC_LANES] = {0};                              \
                REAL acc_h[FASTGD_STOCHASTIC_LANES] = {0};                              \
                ptrdiff_t f = 0;                                                        \
                for (; f + FASTGD_STOCHASTIC_LANES <= k; f += FASTGD_STOCHASTIC_LANES)  \
                    for (int j = 0; j < FASTGD_STOCHASTIC_LANES; j++) {                 \
                        const REAL dw = lw * w[f + j] - g * h[f + j];                   \
                        const REAL dh = lh * h[f + j] - g * w[f + j];                   \
                        acc_w[j] += dw * dw;                                            \
                        acc_h[j] += dh * dh;                                            \
                    }                                                                   \
                for (int j = 0; f + j < k; j++) {                                       \
                    const REAL dw = lw * w[f + j] - g * h[f + j];                       \
                    const REAL dh = lh * h[f + j] - g * w[f + j];                       \
                    acc_w[j] += dw * dw;                                                \
                    acc_h[j] += dh * dh;                                                \
                }                                                                       \
                state_W[u] = state_W[u] + FASTGD_LANES_REDUCE(acc_w) * inv_k;           \
                state_HT[i] = state_HT[i] + FASTGD_LANES_REDUCE(acc_h) * inv_k;         \
                const REAL rate_w = lr / (SQRT(state_W[u]) + eps);                      \
                const REAL rate_h = lr / (SQRT(state_HT[i]) + eps);                     \
                for (f = 0; f < k; f++) {                                               \
                    const REAL wf = w[f], hf = h[f];                                    \
                    w[f] = wf - rate_w * (lw * wf - g * hf);                            \
                    h[f] = hf - rate_h * (lh * hf - g * wf);                            \
                }                                                                       \
            }                                                                           \
            if (project)                                                                \
                for (ptrdiff_t f = 0; f < k; f++) {                                     \
                    w[f] = w[f] > lower ? w[f] : lower;                                 \
                    h[f] = h[f] > lower ? h[f] : lower;                                 \
                }                                                                       \
        }                                                                               \
    }

/* The sum of the entry losses (losses.h's values, in double) over entries [start, stop)
 * at the current model; NaN or inf as they come. */
#define FASTGD_DEFINE_STOCHASTIC_LOSS(NAME, DOT, TERM, TARGET, REAL)                     \
    TARGET static double NAME(                                                          \
        const int32_t *restrict rows, const int32_t *restrict cols,                     \
        const REAL *restrict values, const REAL *restrict weights, ptrdiff_t start,     \
        ptrdiff_t stop, const REAL *restrict W, const REAL *restrict HT, ptrdiff_t k,   \
        const REAL *restrict row_bias, const REAL *restrict col_bias,                   \
        const fastgd_stochastic_settings *s)                                            \
    {                                                                                   \
        const REAL mu = (REAL)s->mu, delta = (REAL)s->delta;                            \
        double total = 0;                                                               \
        for (ptrdiff_t e = start; e < stop; e++) {                                      \
            const ptrdiff_t u = rows[e], i = cols[e];                                   \
            REAL prediction = DOT(W + u * k, HT + i * k, k);                            \
            if (s->biases)                                                              \
                prediction = ((mu + row_bias[u]) + col_bias[i]) + prediction;           \
            total += TERM##_value(s->entry_loss, delta, weights, e,                     \
                                  values[e] - prediction);                              \
        }                                                                               \
        return total;                                                                   \
    }

#define FASTGD_DEFINE_STOCHASTIC_LEVEL(LEVEL, TARGET)                                   \
    FASTGD_DEFINE_STOCHASTIC_DOT(fastgd_stochastic_dot_f32_##LEVEL, TARGET, float)      \
    FASTGD_DEFINE_STOCHASTIC_DOT(fastgd_stochastic_dot_f64_##LEVEL, TARGET, double)     \
    FASTGD_DEFINE_STOCHASTIC_PASS(fastgd_stochastic_pass_f32_##LEVEL,                   \
                                  fastgd_stochastic_dot_f32_##LEVEL, TARGET, float, sqrtf) \
    FASTGD_DEFINE_STOCHASTIC_PASS(fastgd_stochastic_pass_f64_##LEVEL,                   \
                                  fastgd_stochastic_dot_f64_##LEVEL, TARGET, double, sqrt) \
    FASTGD_DEFINE_STOCHASTIC_LOSS(fastgd_stochastic_loss_f32_##LEVEL,                   \
                                  fastgd_stochastic_dot_f32_##LEVEL,                    \
                                  fastgd_entry_loss_term_f32, TARGET, float)            \
    FASTGD_DEFINE_STOCHASTIC_LOSS(fastgd_stochastic_loss_f64_##LEVEL,                   \
                                  fastgd_stochastic_dot_f64_##LEVEL,                    \
                                  fastgd_entry_loss_term_f64, TARGET, double)

FASTGD_DEFINE_STOCHASTIC_LEVEL(baseline, )
#if FASTGD_X86_DISPATCH
FASTGD_DEFINE_STOCHASTIC_LEVEL(avx2, FASTGD_TARGET_AVX2)
FASTGD_DEFINE_STOCHASTIC_LEVEL(avx512, FASTGD_TARGET_AVX512)
#define FASTGD_STOCHASTIC_HIGHEST FASTGD_LEVEL_AVX512
#else
#define FASTGD_STOCHASTIC_HIGHEST FASTGD_LEVEL_BASELINE
#endif

/* The family's level (a FASTGD_LEVEL code), chosen at import by select_level. */
static int fastgd_stochastic_level = FASTGD_LEVEL_BASELINE;

static inline int fastgd_stochastic_select_level(int asked)
{
    fastgd_stochastic_level = fastgd_choose_vector_level(asked, FASTGD_STOCHASTIC_HIGHEST);
    return fastgd_stochastic_level;
}

#define FASTGD_DEFINE_STOCHASTIC_ENTRY(REAL, SUFFIX)                                    \
    static inline void fastgd_stochastic_pass_##SUFFIX(                                 \
        const int32_t *rows, const int32_t *cols, const REAL *values,                   \
        const REAL *weights, ptrdiff_t start, ptrdiff_t stop, REAL *W, REAL *HT,        \
        ptrdiff_t k, REAL *row_bias, REAL *col_bias, REAL *state_W, REAL *state_HT,     \
        REAL *state_row_bias, REAL *state_col_bias, const REAL *reg_W,                  \
        const REAL *reg_HT, const REAL *reg_row_bias, const REAL *reg_col_bias,         \
        const fastgd_stochastic_settings *s)                                            \
    {                                                                                   \
        FASTGD_LEVEL_CALL(fastgd_stochastic_level, fastgd_stochastic_pass_##SUFFIX,     \
                          rows, cols, values, weights, start, stop, W, HT, k, row_bias, \
                          col_bias, state_W, state_HT, state_row_bias, state_col_bias,  \
                          reg_W, reg_HT, reg_row_bias, reg_col_bias, s);                \
    }                                                                                   \
    static inline double fastgd_stochastic_loss_##SUFFIX(                               \
        const int32_t *rows, const int32_t *cols, const REAL *values,                   \
        const REAL *weights, ptrdiff_t start, ptrdiff_t stop, const REAL *W,            \
        const REAL *HT, ptrdiff_t k, const REAL *row_bias, const REAL *col_bias,        \
        const fastgd_stochastic_settings *s)                                            \
    {                                                                                   \
        return FASTGD_LEVEL_CALL(fastgd_stochastic_level, fastgd_stochastic_loss_##SUFFIX, \
                                 rows, cols, values, weights, start, stop, W, HT, k,    \
                                 row_bias, col_bias, s);                                \
    }
FASTGD_DEFINE_STOCHASTIC_ENTRY(float, f32)
FASTGD_DEFINE_STOCHASTIC_ENTRY(double, f64)

#endif
