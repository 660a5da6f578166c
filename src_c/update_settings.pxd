# The settings of a fused update and the table of the update loops (update_settings.h),
# for _updates, which fills the table, and _solvers, which steps with it.

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
    ctypedef struct UpdateLoops "fastgd_update_loops":
        void (*adagrad_f32)(float* param, const float* grad, float* state, Py_ssize_t n,
                            const UpdateSettings* s) noexcept nogil
        void (*adagrad_f64)(double* param, const double* grad, double* state, Py_ssize_t n,
                            const UpdateSettings* s) noexcept nogil
        void (*sgd_f32)(float* param, const float* grad, float* state, Py_ssize_t n,
                        const UpdateSettings* s) noexcept nogil
        void (*sgd_f64)(double* param, const double* grad, double* state, Py_ssize_t n,
                        const UpdateSettings* s) noexcept nogil
    const char* UPDATE_LOOPS_CAPSULE "FASTGD_UPDATE_LOOPS_CAPSULE"
