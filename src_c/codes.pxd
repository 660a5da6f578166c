# The codes shared with the Python layer (fastgd/_codes.py, written into fastgd_codes.h by
# setup.py), for the Cython modules: a code is the name's index in its Python tuple.

cdef extern from "fastgd_codes.h" nogil:
    enum:
        LEVEL_SCALAR "FASTGD_LEVEL_SCALAR"
        LEVEL_BASELINE "FASTGD_LEVEL_BASELINE"
        LEVEL_AVX2 "FASTGD_LEVEL_AVX2"
        LEVEL_AVX512 "FASTGD_LEVEL_AVX512"
        LOSS_SSE "FASTGD_LOSS_SSE"
        LOSS_MSE "FASTGD_LOSS_MSE"
        LOSS_RMSE "FASTGD_LOSS_RMSE"
        OPTIMIZER_ADAGRAD "FASTGD_OPTIMIZER_ADAGRAD"
        OPTIMIZER_GD "FASTGD_OPTIMIZER_GD"
        EPS_OUTSIDE "FASTGD_EPS_OUTSIDE"
        EPS_INSIDE "FASTGD_EPS_INSIDE"
        EPS_ACCUMULATE "FASTGD_EPS_ACCUMULATE"
        STATUS_MAX_ITER "FASTGD_STATUS_MAX_ITER"
        STATUS_CONVERGED "FASTGD_STATUS_CONVERGED"
        STATUS_NONFINITE "FASTGD_STATUS_NONFINITE"
