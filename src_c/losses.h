/* The losses of the masked kernels and of factorize's loop, from the sum of squared
 * residuals over the `count` observed entries (codes: fastgd/_codes.py's LOSSES): the
 * value, and in *scale the factor that turns the residual-weighted sums into the loss's
 * gradient (d loss / d residual per unit residual). "mse" and "rmse" need count > 0.
 * Its Python counterpart, for the kernels' general paths and the NumPy twins, is
 * fastgd/masked.py's _loss_and_scale. */
#ifndef FASTGD_LOSSES_H
#define FASTGD_LOSSES_H

#include <math.h>
#include <stdint.h>

#include "fastgd_codes.h"

static inline double fastgd_loss_value_and_scale(int loss, double sse, int64_t count,
                                                 double *scale)
{
    if (loss == FASTGD_LOSS_SSE) {
        *scale = 2.0;
        return sse;
    }
    if (loss == FASTGD_LOSS_MSE) {
        *scale = 2.0 / count;
        return sse / count;
    }
    const double root = sqrt(sse / count);
    *scale = root > 0 ? 1.0 / (count * root) : 0.0;
    return root;
}

#endif
