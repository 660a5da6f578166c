/* The stochastic solver's loops (fastgd.factorize with solver="stochastic"): one pass over
 * a block of observed entries, each entry stepping only the row of W, the row of HT (H
 * transposed) and the two biases it touches, and the sum of the entry losses over a range
 * of entries (the training loss and the validation RMSE).
 *
 * The model of entry (u, i) is W[u] . HT[i], plus mu + row_bias[u] + col_bias[i] with
 * biases. Its step descends
 *     0.5 * loss(r) + 0.5 * reg_W[u] ||W[u]||^2 + 0.5 * reg_HT[i] ||HT[i]||^2
 *         + 0.5 * reg_row_bias[u] row_bias[u]^2 + 0.5 * reg_col_bias[i] col_bias[i]^2
 * with r the entry's residual and loss its entry loss (losses.h: r^2, or Huber's twice,
 * times the entry's weight), so that the derivative of the data term is -g with g the
 * entry loss's gradient factor (r, clipped for Huber, times the weight): the update of
 * Surprise's and cornac's biased SGD. The per-row coefficients carry both forms of the
 * penalty (fastgd/_stochastic.py): a constant per rating, or l2 divided by the row's count
 * (the whole-factor penalty, spread over its entries); NULL coefficient arrays stand for
 * one coefficient of every row (the settings' reg_factors and reg_biases).
 *
 * The steps (fastgd/_codes.py's STOCHASTIC_STEPS): "sgd", p -= lr * grad; "adagrad", one
 * accumulator per coordinate, G += grad^2, p -= lr * grad / (sqrt(G) + eps); and
 * "adagrad_vector", LIBMF's form: one accumulator per row vector (LIBMF starts them at 1),
 * p -= lr * grad / (sqrt(G) + eps) with G as it was before the entry, then G += the mean
 * of grad^2 over the k coordinates: the square root waits for the accumulator, not for
 * this entry's gradient (between two visits of one row it is still on the chain: what
 * biases cost on popular items); a bias has an accumulator of its own, stepped the same
 * way (from 1, before the entry's gradient). Both vectors' gradients are taken at the
 * entry's starting point. With a lower bound (nonneg), W and HT are clipped to it after
 * every step.
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

#if defined(__GNUC__)
#define FASTGD_ALWAYS_INLINE inline __attribute__((always_inline))
#elif defined(_MSC_VER)
#define FASTGD_ALWAYS_INLINE __forceinline
#else
#define FASTGD_ALWAYS_INLINE inline
#endif

/* LIBMF's per-vector step takes four rates, lr / (sqrt(G) + eps), from the accumulators
 * as they were before the entry: in one vector operation of each kind where the CPU has
 * them (x86-64's SSE2, a part of every level), one by one elsewhere; either way each is
 * the correctly rounded IEEE result, so the bits are the same. */
#if defined(__SSE2__) || defined(_M_X64)
#include <emmintrin.h>
static inline void fastgd_rates4_float(float lr, float eps, float g0, float g1, float g2,
                                       float g3, float *rates)
{
    const __m128 g = _mm_set_ps(g3, g2, g1, g0);
    _mm_storeu_ps(rates, _mm_div_ps(_mm_set1_ps(lr),
                                    _mm_add_ps(_mm_sqrt_ps(g), _mm_set1_ps(eps))));
}
static inline void fastgd_rates4_double(double lr, double eps, double g0, double g1,
                                        double g2, double g3, double *rates)
{
    const __m128d lrs = _mm_set1_pd(lr), epss = _mm_set1_pd(eps);
    _mm_storeu_pd(rates, _mm_div_pd(lrs, _mm_add_pd(_mm_sqrt_pd(_mm_set_pd(g1, g0)), epss)));
    _mm_storeu_pd(rates + 2,
                  _mm_div_pd(lrs, _mm_add_pd(_mm_sqrt_pd(_mm_set_pd(g3, g2)), epss)));
}
#else
#define FASTGD_DEFINE_RATES4(REAL, SQRT)                                                \
    static inline void fastgd_rates4_##REAL(REAL lr, REAL eps, REAL g0, REAL g1, REAL g2, \
                                            REAL g3, REAL *rates)                       \
    {                                                                                   \
        rates[0] = lr / (SQRT(g0) + eps);                                               \
        rates[1] = lr / (SQRT(g1) + eps);                                               \
        rates[2] = lr / (SQRT(g2) + eps);                                               \
        rates[3] = lr / (SQRT(g3) + eps);                                               \
    }
FASTGD_DEFINE_RATES4(float, sqrtf)
FASTGD_DEFINE_RATES4(double, sqrt)
#endif

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
    /* The penalty coefficients of every row, for reg_* arrays that are NULL. */
    double reg_factors, reg_biases;
} fastgd_stochastic_settings;

#define FASTGD_LANES_REDUCE(acc)                                                        \
    ((((acc)[0] + (acc)[4]) + ((acc)[2] + (acc)[6]))                                    \
     + (((acc)[1] + (acc)[5]) + ((acc)[3] + (acc)[7])))

/* NAME##_dot(a, b, k): sum of a[f] b[f] in the lanes' order. */
#if defined(__GNUC__)
/* The lanes in 32-byte vectors (GCC's and Clang's vector extension): one for float's 8
 * lanes, two for double's (4 lanes each), so that a level with 32-byte registers holds
 * each in one, and lower levels split them into halves; the same lane-wise operations
 * at every level. Lane j is element j % WIDTH of part j / WIDTH. */
typedef float fastgd_part_float __attribute__((vector_size(32)));
typedef double fastgd_part_double __attribute__((vector_size(32)));
#define FASTGD_PART(REAL) fastgd_part_##REAL
#define FASTGD_PART_WIDTH(REAL) ((int)(32 / sizeof(REAL)))
#define FASTGD_PARTS(REAL) (FASTGD_STOCHASTIC_LANES / FASTGD_PART_WIDTH(REAL))
#define FASTGD_PART_LOAD(part, address) __builtin_memcpy(&(part), (address), sizeof(part))
#define FASTGD_PART_STORE(address, part) __builtin_memcpy((address), &(part), sizeof(part))
#define FASTGD_LANE(parts, REAL, j)                                                     \
    (parts)[(j) / FASTGD_PART_WIDTH(REAL)][(j) % FASTGD_PART_WIDTH(REAL)]
#define FASTGD_PARTS_REDUCE(parts, REAL)                                                \
    (((FASTGD_LANE(parts, REAL, 0) + FASTGD_LANE(parts, REAL, 4))                       \
      + (FASTGD_LANE(parts, REAL, 2) + FASTGD_LANE(parts, REAL, 6)))                    \
     + ((FASTGD_LANE(parts, REAL, 1) + FASTGD_LANE(parts, REAL, 5))                     \
        + (FASTGD_LANE(parts, REAL, 3) + FASTGD_LANE(parts, REAL, 7))))

#define FASTGD_DEFINE_STOCHASTIC_DOT(NAME, TARGET, REAL)                                \
    TARGET static FASTGD_ALWAYS_INLINE REAL NAME(                                       \
        const REAL *restrict a, const REAL *restrict b, ptrdiff_t k)                    \
    {                                                                                   \
        FASTGD_PART(REAL) acc[FASTGD_PARTS(REAL)] = {{0}}, x, y;                        \
        ptrdiff_t f = 0;                                                                \
        for (; f + FASTGD_STOCHASTIC_LANES <= k; f += FASTGD_STOCHASTIC_LANES)          \
            for (int p = 0; p < FASTGD_PARTS(REAL); p++) {                              \
                FASTGD_PART_LOAD(x, a + f + p * FASTGD_PART_WIDTH(REAL));               \
                FASTGD_PART_LOAD(y, b + f + p * FASTGD_PART_WIDTH(REAL));               \
                acc[p] += x * y;                                                        \
            }                                                                           \
        for (int j = 0; f + j < k; j++)                                                 \
            FASTGD_LANE(acc, REAL, j) += a[f + j] * b[f + j];                           \
        return FASTGD_PARTS_REDUCE(acc, REAL);                                          \
    }
#else
#define FASTGD_DEFINE_STOCHASTIC_DOT(NAME, TARGET, REAL)                                \
    TARGET static FASTGD_ALWAYS_INLINE REAL NAME(                                       \
        const REAL *restrict a, const REAL *restrict b, ptrdiff_t k)                    \
    {                                                                                   \
        REAL acc[FASTGD_STOCHASTIC_LANES] = {0};                                        \
        for (ptrdiff_t f = 0; f < k; f++)                                               \
            acc[f % FASTGD_STOCHASTIC_LANES] += a[f] * b[f];                            \
        return FASTGD_LANES_REDUCE(acc);                                                \
    }
#endif

/* The arguments of a pass. */
#define FASTGD_STOCHASTIC_PASS_PARAMETERS(REAL)                                         \
    const int32_t *restrict rows, const int32_t *restrict cols,                         \
        const REAL *restrict values, const REAL *restrict weights, ptrdiff_t start,     \
        ptrdiff_t stop, REAL *restrict W, REAL *restrict HT, ptrdiff_t k,               \
        REAL *restrict row_bias, REAL *restrict col_bias, REAL *restrict state_W,       \
        REAL *restrict state_HT, REAL *restrict state_row_bias,                         \
        REAL *restrict state_col_bias, const REAL *restrict reg_W,                      \
        const REAL *restrict reg_HT, const REAL *restrict reg_row_bias,                 \
        const REAL *restrict reg_col_bias, const fastgd_stochastic_settings *s
/* In a loop over entries e of [start, stop): ask for the rows of W and HT of the entry
 * FASTGD_STOCHASTIC_AHEAD places ahead, a cache line at a time. */
#define FASTGD_STOCHASTIC_PREFETCH_AHEAD(REAL)                                          \
    if (e + FASTGD_STOCHASTIC_AHEAD < stop) {                                           \
        const REAL *next_w = W + rows[e + FASTGD_STOCHASTIC_AHEAD] * k;                 \
        const REAL *next_h = HT + cols[e + FASTGD_STOCHASTIC_AHEAD] * k;                \
        for (ptrdiff_t f = 0; f < k; f += 64 / (ptrdiff_t)sizeof(REAL)) {               \
            FASTGD_PREFETCH(next_w + f);                                                \
            FASTGD_PREFETCH(next_h + f);                                                \
        }                                                                               \
    }

/* One pass over entries [start, stop) in their order; returns the sum of their entry
 * losses (losses.h's values, in double), each at the model just before its step: the
 * pass's running loss, at no extra cost. NAME##_body is inlined with the step, whether
 * there are biases and, for the common ranks, k as constants (NAME picks the copy): the
 * compiler then unrolls the loops over k and drops the branches that do not apply. */
#define FASTGD_DEFINE_STOCHASTIC_PASS(NAME, DOT, TERM, TARGET, REAL, SQRT)               \
    FASTGD_DEFINE_STOCHASTIC_PASS_BODY(NAME##_body, DOT, TERM, TARGET, REAL, SQRT)      \
    TARGET static double NAME(FASTGD_STOCHASTIC_PASS_PARAMETERS(REAL))                  \
    {                                                                                   \
        const int step = s->step;                                                       \
        double total = 0;                                                               \
        switch (k) {                                                                    \
        case 8:                                                                         \
            FASTGD_STOCHASTIC_BY_STEP(NAME##_body, step, 8);                            \
            break;                                                                      \
        case 16:                                                                        \
            FASTGD_STOCHASTIC_BY_STEP(NAME##_body, step, 16);                           \
            break;                                                                      \
        case 32:                                                                        \
            FASTGD_STOCHASTIC_BY_STEP(NAME##_body, step, 32);                           \
            break;                                                                      \
        case 64:                                                                        \
            FASTGD_STOCHASTIC_BY_STEP(NAME##_body, step, 64);                           \
            break;                                                                      \
        default:                                                                        \
            FASTGD_STOCHASTIC_BY_STEP(NAME##_body, step, k);                            \
        }                                                                               \
        return total;                                                                   \
    }

#define FASTGD_STOCHASTIC_CALL_BODY(BODY, K, STEP, BIASES)                               \
    BODY(rows, cols, values, weights, start, stop, W, HT, K, row_bias, col_bias, state_W, \
         state_HT, state_row_bias, state_col_bias, reg_W, reg_HT, reg_row_bias,          \
         reg_col_bias, s, STEP, BIASES)
#define FASTGD_STOCHASTIC_BY_BIASES(BODY, K, STEP)                                      \
    (s->biases ? FASTGD_STOCHASTIC_CALL_BODY(BODY, K, STEP, 1)                          \
               : FASTGD_STOCHASTIC_CALL_BODY(BODY, K, STEP, 0))
#define FASTGD_STOCHASTIC_BY_STEP(BODY, STEP, K)                                        \
    do {                                                                                \
        if ((STEP) == FASTGD_STEP_SGD)                                                  \
            total = FASTGD_STOCHASTIC_BY_BIASES(BODY, K, FASTGD_STEP_SGD);              \
        else if ((STEP) == FASTGD_STEP_ADAGRAD)                                         \
            total = FASTGD_STOCHASTIC_BY_BIASES(BODY, K, FASTGD_STEP_ADAGRAD);          \
        else                                                                            \
            total = FASTGD_STOCHASTIC_BY_BIASES(BODY, K, FASTGD_STEP_ADAGRAD_VECTOR);   \
    } while (0)

/* The per-vector step's loop over k in a pass body (its names: w, h, lw, lh, g, rate_w,
 * rate_h, k): steps w and h, and leaves the sums of the squares of their gradients
 * (by lanes, reduced in the fixed tree) in sum_w and sum_h. */
#if defined(__GNUC__)
#define FASTGD_STOCHASTIC_VECTOR_STEP(REAL)                                             \
    FASTGD_PART(REAL) acc_w[FASTGD_PARTS(REAL)] = {{0}}, acc_h[FASTGD_PARTS(REAL)] = {{0}}; \
    FASTGD_PART(REAL) wv, hv, dw, dh;                                                   \
    ptrdiff_t f = 0;                                                                    \
    for (; f + FASTGD_STOCHASTIC_LANES <= k; f += FASTGD_STOCHASTIC_LANES)              \
        for (int p = 0; p < FASTGD_PARTS(REAL); p++) {                                  \
            REAL *wp = w + f + p * FASTGD_PART_WIDTH(REAL);                             \
            REAL *hp = h + f + p * FASTGD_PART_WIDTH(REAL);                             \
            FASTGD_PART_LOAD(wv, wp);                                                   \
            FASTGD_PART_LOAD(hv, hp);                                                   \
            dw = lw * wv - g * hv;                                                      \
            dh = lh * hv - g * wv;                                                      \
            acc_w[p] += dw * dw;                                                        \
            acc_h[p] += dh * dh;                                                        \
            wv = wv - rate_w * dw;                                                      \
            hv = hv - rate_h * dh;                                                      \
            FASTGD_PART_STORE(wp, wv);                                                  \
            FASTGD_PART_STORE(hp, hv);                                                  \
        }                                                                               \
    for (int j = 0; f + j < k; j++) {                                                   \
        const REAL wf = w[f + j], hf = h[f + j];                                        \
        const REAL dwf = lw * wf - g * hf, dhf = lh * hf - g * wf;                      \
        FASTGD_LANE(acc_w, REAL, j) += dwf * dwf;                                       \
        FASTGD_LANE(acc_h, REAL, j) += dhf * dhf;                                       \
        w[f + j] = wf - rate_w * dwf;                                                   \
        h[f + j] = hf - rate_h * dhf;                                                   \
    }                                                                                   \
    const REAL sum_w = FASTGD_PARTS_REDUCE(acc_w, REAL);                                \
    const REAL sum_h = FASTGD_PARTS_REDUCE(acc_h, REAL);
#else
#define FASTGD_STOCHASTIC_VECTOR_STEP(REAL)                                             \
    REAL acc_w[FASTGD_STOCHASTIC_LANES] = {0}, acc_h[FASTGD_STOCHASTIC_LANES] = {0};    \
    for (ptrdiff_t f = 0; f < k; f++) {                                                 \
        const REAL wf = w[f], hf = h[f];                                                \
        const REAL dwf = lw * wf - g * hf, dhf = lh * hf - g * wf;                      \
        acc_w[f % FASTGD_STOCHASTIC_LANES] += dwf * dwf;                                \
        acc_h[f % FASTGD_STOCHASTIC_LANES] += dhf * dhf;                                \
        w[f] = wf - rate_w * dwf;                                                       \
        h[f] = hf - rate_h * dhf;                                                       \
    }                                                                                   \
    const REAL sum_w = FASTGD_LANES_REDUCE(acc_w);                                      \
    const REAL sum_h = FASTGD_LANES_REDUCE(acc_h);
#endif

#define FASTGD_DEFINE_STOCHASTIC_PASS_BODY(NAME, DOT, TERM, TARGET, REAL, SQRT)          \
    TARGET static FASTGD_ALWAYS_INLINE double NAME(                                     \
        FASTGD_STOCHASTIC_PASS_PARAMETERS(REAL), const int step, const int biases)      \
    {                                                                                   \
        const REAL lr = (REAL)s->lr, eps = (REAL)s->eps, lower = (REAL)s->lower_bound;  \
        const REAL mu = (REAL)s->mu, delta = (REAL)s->delta;                            \
        const int code = s->entry_loss;                                                 \
        const REAL reg_factors = (REAL)s->reg_factors, reg_biases = (REAL)s->reg_biases;  \
        double total = 0;                                                               \
        const int project = s->lower_bound > -INFINITY;                                 \
        const REAL inv_k = k > 0 ? (REAL)1 / (REAL)k : (REAL)0;                         \
        for (ptrdiff_t e = start; e < stop; e++) {                                      \
            FASTGD_STOCHASTIC_PREFETCH_AHEAD(REAL);                                     \
            const ptrdiff_t u = rows[e], i = cols[e];                                   \
            REAL *restrict w = W + u * k;                                               \
            REAL *restrict h = HT + i * k;                                              \
            REAL rates[4];                                                              \
            if (step == FASTGD_STEP_ADAGRAD_VECTOR)                                     \
                fastgd_rates4_##REAL(lr, eps, state_W[u], state_HT[i],                  \
                                     biases ? state_row_bias[u] : (REAL)1,              \
                                     biases ? state_col_bias[i] : (REAL)1, rates);      \
            REAL prediction = DOT(w, h, k);                                             \
            if (biases)                                                                 \
                prediction = ((mu + row_bias[u]) + col_bias[i]) + prediction;           \
            REAL g = values[e] - prediction;                                            \
            total += TERM##_value(code, delta, weights, e, g);                          \
            if (code == FASTGD_ENTRY_HUBER) {                                           \
                g = g > -delta ? g : -delta;                                            \
                g = g < delta ? g : delta;                                              \
            }                                                                           \
            if (weights != NULL)                                                        \
                g = g * weights[e];                                                     \
            const REAL lw = reg_W != NULL ? reg_W[u] : reg_factors;                     \
            const REAL lh = reg_HT != NULL ? reg_HT[i] : reg_factors;                   \
            if (biases) {                                                               \
                const REAL lb = reg_row_bias != NULL ? reg_row_bias[u] : reg_biases;    \
                const REAL lc = reg_col_bias != NULL ? reg_col_bias[i] : reg_biases;    \
                const REAL gb = lb * row_bias[u] - g;                                   \
                const REAL gc = lc * col_bias[i] - g;                                   \
                if (step == FASTGD_STEP_SGD) {                                          \
                    row_bias[u] = row_bias[u] - lr * gb;                                \
                    col_bias[i] = col_bias[i] - lr * gc;                                \
                } else if (step == FASTGD_STEP_ADAGRAD) {                               \
                    state_row_bias[u] = state_row_bias[u] + gb * gb;                    \
                    state_col_bias[i] = state_col_bias[i] + gc * gc;                    \
                    row_bias[u] = row_bias[u] - lr * gb / (SQRT(state_row_bias[u]) + eps); \
                    col_bias[i] = col_bias[i] - lr * gc / (SQRT(state_col_bias[i]) + eps); \
                } else {                                                                \
                    row_bias[u] = row_bias[u] - rates[2] * gb;                          \
                    col_bias[i] = col_bias[i] - rates[3] * gc;                          \
                    state_row_bias[u] = state_row_bias[u] + gb * gb;                    \
                    state_col_bias[i] = state_col_bias[i] + gc * gc;                    \
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
                /* LIBMF's order: the rates come from the accumulators before this      \
                 * entry, which then add its gradients' mean square. */                 \
                const REAL rate_w = rates[0], rate_h = rates[1];                        \
                FASTGD_STOCHASTIC_VECTOR_STEP(REAL);                                    \
                state_W[u] = state_W[u] + sum_w * inv_k;                                \
                state_HT[i] = state_HT[i] + sum_h * inv_k;                              \
            }                                                                           \
            if (project)                                                                \
                for (ptrdiff_t f = 0; f < k; f++) {                                     \
                    w[f] = w[f] > lower ? w[f] : lower;                                 \
                    h[f] = h[f] > lower ? h[f] : lower;                                 \
                }                                                                       \
        }                                                                               \
        return total;                                                                   \
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
            FASTGD_STOCHASTIC_PREFETCH_AHEAD(REAL);                                     \
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
                                  fastgd_stochastic_dot_f32_##LEVEL,                    \
                                  fastgd_entry_loss_term_f32, TARGET, float, sqrtf)     \
    FASTGD_DEFINE_STOCHASTIC_PASS(fastgd_stochastic_pass_f64_##LEVEL,                   \
                                  fastgd_stochastic_dot_f64_##LEVEL,                    \
                                  fastgd_entry_loss_term_f64, TARGET, double, sqrt)     \
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
    static inline double fastgd_stochastic_pass_##SUFFIX(                               \
        const int32_t *rows, const int32_t *cols, const REAL *values,                   \
        const REAL *weights, ptrdiff_t start, ptrdiff_t stop, REAL *W, REAL *HT,        \
        ptrdiff_t k, REAL *row_bias, REAL *col_bias, REAL *state_W, REAL *state_HT,     \
        REAL *state_row_bias, REAL *state_col_bias, const REAL *reg_W,                  \
        const REAL *reg_HT, const REAL *reg_row_bias, const REAL *reg_col_bias,         \
        const fastgd_stochastic_settings *s)                                            \
    {                                                                                   \
        return FASTGD_LEVEL_CALL(fastgd_stochastic_level, fastgd_stochastic_pass_##SUFFIX, \
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
