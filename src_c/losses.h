/* The losses of the masked kernels and of factorize's loop, in two parts:
 *
 * - the entry loss (codes: fastgd/_codes.py's ENTRY_LOSSES), a function of one residual r
 *   with its parameter: "squared" r^2, or "huber" 0.5 r^2 for |r| <= delta and
 *   delta (|r| - delta / 2) beyond; each times the entry's weight, if the entries have
 *   weights. The kernels sum its values and, in place of r, multiply the factors' rows
 *   by its gradient factor g (fastgd_entry_loss_term);
 * - the reduction (codes: LOSSES, each named by the squared loss that uses it: "sse" the
 *   sum, "mse" the mean, "rmse" the root of the mean), over the entries' total weight
 *   (their number without weights): fastgd_loss_value_and_scale gives the loss and the
 *   scale that turns the g-weighted sums into its gradient.
 *
 * A new entry loss is a code in fastgd/_codes.py, a case in fastgd_entry_loss_term and its
 * derivative factor in fastgd_loss_value_and_scale, and the same in their NumPy twins,
 * fastgd/_numpy/_masked.py's entry_loss_terms and loss_value_and_scale. */
#ifndef FASTGD_LOSSES_H
#define FASTGD_LOSSES_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>

#include "fastgd_codes.h"

/* An entry loss other than the plain squared one: its code, its parameter, and the
 * entries' weights (NULL: all 1) in the order the loop visits the entries, of the
 * kernel's float type. The loops take a NULL fastgd_entry_loss for unweighted squared
 * residuals, and then compile to the loops without it. */
typedef struct {
    int code;
    double delta;
    const void *weights;
} fastgd_entry_loss;

/* Entry e's loss at residual r, in double (NAME##_value), and its gradient factor
 * (NAME##_factor): d loss / d r divided by the entry loss's derivative factor (2 for
 * squared, 1 for Huber), so that squared residuals keep g = r; Huber's clips r to
 * [-delta, delta] as max-then-min instructions do (x > lo ? x : lo, then x < hi ? x : hi),
 * the form the vector loops of masked_loops.h use too. NAME##_at gives both from the
 * entry loss's fields, which a loop reads once; NAME from the entry loss. */
#define FASTGD_DEFINE_ENTRY_LOSS_TERM(NAME, REAL)                                       \
    static inline double NAME##_value(int code, REAL delta, const REAL *weights,        \
                                      ptrdiff_t e, REAL r)                              \
    {                                                                                   \
        double value = (double)r * (double)r;                                           \
        if (code == FASTGD_ENTRY_HUBER) {                                               \
            const double size = fabs((double)r);                                        \
            value = size <= (double)delta ? 0.5 * value                                 \
                                          : (double)delta * (size - 0.5 * (double)delta); \
        }                                                                               \
        return weights != NULL ? value * (double)weights[e] : value;                    \
    }                                                                                   \
    static inline REAL NAME##_factor(int code, REAL delta, const REAL *weights,         \
                                     ptrdiff_t e, REAL r)                               \
    {                                                                                   \
        REAL factor = r;                                                                \
        if (code == FASTGD_ENTRY_HUBER) {                                               \
            factor = factor > -delta ? factor : -delta;                                 \
            factor = factor < delta ? factor : delta;                                   \
        }                                                                               \
        return weights != NULL ? factor * weights[e] : factor;                          \
    }                                                                                   \
    static inline double NAME##_at(int code, REAL delta, const REAL *weights,           \
                                   ptrdiff_t e, REAL r, REAL *g)                        \
    {                                                                                   \
        *g = NAME##_factor(code, delta, weights, e, r);                                 \
        return NAME##_value(code, delta, weights, e, r);                                \
    }                                                                                   \
    static inline double NAME(const fastgd_entry_loss *loss, ptrdiff_t e, REAL r,       \
                              REAL *g)                                                  \
    {                                                                                   \
        return NAME##_at(loss->code, (REAL)loss->delta, (const REAL *)loss->weights, e, \
                         r, g);                                                         \
    }
FASTGD_DEFINE_ENTRY_LOSS_TERM(fastgd_entry_loss_term_f32, float)
FASTGD_DEFINE_ENTRY_LOSS_TERM(fastgd_entry_loss_term_f64, double)

/* The loss from the sum of the entry losses over entries of total weight `total_weight`
 * (reduction: a LOSSES code), and in *scale the factor that turns the g-weighted sums into
 * the loss's gradient. "mse" and "rmse" need total_weight > 0. */
static inline double fastgd_loss_value_and_scale(int reduction, int entry_loss, double sum,
                                                 double total_weight, double *scale)
{
    const double derivative = entry_loss == FASTGD_ENTRY_SQUARED ? 2.0 : 1.0;
    if (reduction == FASTGD_LOSS_SSE) {
        *scale = derivative;
        return sum;
    }
    if (reduction == FASTGD_LOSS_MSE) {
        *scale = derivative / total_weight;
        return sum / total_weight;
    }
    const double root = sqrt(sum / total_weight);
    *scale = root > 0 ? 1.0 / (total_weight * root) : 0.0;
    return root;
}

#endif
