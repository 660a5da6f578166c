# The C loops of the fused optimizer updates (update_loops.h), declared once for the
# modules that step with them: _updates (fastgd.adagrad_update, fastgd.sgd_update) and
# _solvers (factorize's compiled iteration loop).

cdef extern from "update_loops.h" nogil:
    ctypedef struct UpdateSettings "fastgd_update_settings":
        double rate
        double eps
        double weight_decay
        double momentum
        double dampening
        double lower_bound
        int eps_mode
        int maximize
        int nesterov
        int has_state
    void fastgd_adagrad_f32(float* param, const float* grad, float* accum, Py_ssize_t n,
                            const UpdateSettings* s)
    void fastgd_adagrad_f64(double* param, const double* grad, double* accum, Py_ssize_t n,
                            const UpdateSettings* s)
    void fastgd_sgd_f32(float* param, const float* grad, float* velocity, Py_ssize_t n,
                        const UpdateSettings* s)
    void fastgd_sgd_f64(double* param, const double* grad, double* velocity, Py_ssize_t n,
                        const UpdateSettings* s)
    void fastgd_bandwidth_floor_f32(float* param, const float* grad, float* accum,
                                    Py_ssize_t n)
    void fastgd_bandwidth_floor_f64(double* param, const double* grad, double* accum,
                                    Py_ssize_t n)
    int fastgd_updates_select_level(int asked)
    enum:
        DIVISION_AUTO "FASTGD_DIVISION_AUTO"
    int fastgd_updates_select_division(int asked)
    int fastgd_fma_sqrt_lanes(const double* a, const double* root_candidate, Py_ssize_t n,
                              double* root, unsigned char* root_vouched,
                              double* corrected_root)
