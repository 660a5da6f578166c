/* The settings of one fused update (update_loops.h), and the table of the update loops
 * that fastgd._ext._updates hands to the modules that step with them (_solvers) in a
 * capsule: the loops, and the level and division they run at, exist once, in _updates.
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

/* One update loop: n elements of param stepped in place with grad and their state. */
typedef void (*fastgd_update_loop_f32)(float *param, const float *grad, float *state,
                                       ptrdiff_t n, const fastgd_update_settings *s);
typedef void (*fastgd_update_loop_f64)(double *param, const double *grad, double *state,
                                       ptrdiff_t n, const fastgd_update_settings *s);

typedef struct {
    fastgd_update_loop_f32 adagrad_f32;
    fastgd_update_loop_f64 adagrad_f64;
    fastgd_update_loop_f32 sgd_f32;
    fastgd_update_loop_f64 sgd_f64;
} fastgd_update_loops;

#define FASTGD_UPDATE_LOOPS_CAPSULE "fastgd._ext._updates.update_loops"

#endif
