# The C loops of the fused optimizer updates (update_loops.h): _updates runs them for
# fastgd.adagrad_update, sgd_update, adam_update and rmsprop_update and holds their
# dispatch state; _solvers (factorize's compiled loop) steps with its own copy, which
# follows that state (update_settings.pxd).

from update_settings cimport UpdateDispatch, UpdateSettings


cdef extern from "update_loops.h" nogil:
    void fastgd_adagrad_f32(float* param, const float* grad, float* accum, Py_ssize_t n,
                            const UpdateSettings* s)
    void fastgd_adagrad_f64(double* param, const double* grad, double* accum, Py_ssize_t n,
                            const UpdateSettings* s)
    void fastgd_sgd_f32(float* param, const float* grad, float* velocity, Py_ssize_t n,
                        const UpdateSettings* s)
    void fastgd_sgd_f64(double* param, const double* grad, double* velocity, Py_ssize_t n,
                        const UpdateSettings* s)
    void fastgd_adam_f32(float* param, const float* grad, float* exp_avg, float* exp_avg_sq,
                         float* max_exp_avg_sq, Py_ssize_t n, const UpdateSettings* s)
    void fastgd_adam_f64(double* param, const double* grad, double* exp_avg,
                         double* exp_avg_sq, double* max_exp_avg_sq, Py_ssize_t n,
                         const UpdateSettings* s)
    void fastgd_rmsprop_f32(float* param, const float* grad, float* square_avg,
                            float* momentum_buffer, float* grad_avg, Py_ssize_t n,
                            const UpdateSettings* s)
    void fastgd_rmsprop_f64(double* param, const double* grad, double* square_avg,
                            double* momentum_buffer, double* grad_avg, Py_ssize_t n,
                            const UpdateSettings* s)
    void fastgd_bandwidth_floor_f32(float* param, const float* grad, float* accum,
                                    float* accum2, Py_ssize_t n)
    void fastgd_bandwidth_floor_f64(double* param, const double* grad, double* accum,
                                    double* accum2, Py_ssize_t n)
    int fastgd_updates_select_level(int asked)
    void fastgd_updates_share(UpdateDispatch* state)
    void fastgd_updates_follow(const UpdateDispatch* state)
    enum:
        DIVISION_AUTO "FASTGD_DIVISION_AUTO"
    int fastgd_updates_select_division(int asked)
    int fastgd_fma_sqrt_lanes(const double* a, const double* root_candidate, Py_ssize_t n,
                              double* root, unsigned char* root_vouched,
                              double* corrected_root)
