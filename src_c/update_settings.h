/* The settings of one fused update (update_loops.h), and the update loops' dispatch state
 * (the level and the division they run at) that fastgd._ext._updates holds and hands in a
 * capsule to the modules that step with them (_solvers), which follow it: the state exists
 * once, in _updates, and is chosen there.
 *
 * Where Adagrad's eps enters (fastgd/_codes.py's EPS_MODES, in fastgd_codes.h):
 *   FASTGD_EPS_OUTSIDE     G += g^2; p -= clr g / (sqrt(G) + eps)   (PyTorch, Duchi et al.)
 *   FASTGD_EPS_INSIDE      G += g^2; p -= clr g / sqrt(G + eps), 0 where G == 0   (optax)
 *   FASTGD_EPS_ACCUMULATE  G += g^2 + eps; p -= clr g / sqrt(G)   (the autograd tutorial) */
#ifndef FASTGD_UPDATE_SETTINGS_H
#define FASTGD_UPDATE_SETTINGS_H

#include <stddef.h>

#include "fastgd_codes.h"

typedef struct {
    double rate;         /* Adagrad: the decayed rate clr; SGD, RMSprop: lr; Adam: lr / (1 - beta1^t) */
    double eps;
    double weight_decay;
    double momentum;     /* SGD, RMSprop */
    double dampening;
    double lower_bound;  /* -inf when there is none */
    double beta1;        /* Adam: the first moment's decay */
    double beta2;        /* Adam: the second moment's decay; RMSprop: alpha */
    double bias_correction2_sqrt;  /* Adam: sqrt(1 - beta2^t) */
    double decay;        /* AdamW: 1 - lr * weight_decay, the decoupled weight decay */
    int eps_mode;
    int maximize;
    int nesterov;
    int has_state;       /* SGD: momentum buffers given */
    int amsgrad;         /* Adam: keep the running maximum of the second moment */
    int decoupled;       /* Adam: AdamW's weight decay */
    int centered;        /* RMSprop: subtract the squared mean gradient */
} fastgd_update_settings;

/* The level (FASTGD_LEVEL_*) and the division (FASTGD_DIVISION_*) the update loops run at. */
typedef struct {
    int level;
    int division;
} fastgd_update_dispatch;

#define FASTGD_UPDATE_DISPATCH_CAPSULE "fastgd._ext._updates.update_dispatch"

#endif
