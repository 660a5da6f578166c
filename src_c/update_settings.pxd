# The settings of a fused update and the update loops' dispatch state (update_settings.h),
# for _updates, which holds the state, and _solvers, which follows it.

cdef extern from "update_settings.h" nogil:
    ctypedef struct UpdateSettings "fastgd_update_settings":
        double rate
        double eps
        double weight_decay
        double momentum
        double dampening
        double lower_bound
        double beta1
        double beta2
        double bias_correction2_sqrt
        double decay
        int eps_mode
        int maximize
        int nesterov
        int has_state
        int amsgrad
        int decoupled
        int centered
    ctypedef struct UpdateDispatch "fastgd_update_dispatch":
        int level
        int division
    const char* UPDATE_DISPATCH_CAPSULE "FASTGD_UPDATE_DISPATCH_CAPSULE"
