# The GEMM the kernels call, taken at run time from a loaded BLAS (blas_gemm.h,
# fastgd/_blas.py).
from libc.stdint cimport uintptr_t


cdef extern from "blas_gemm.h":
    int fastgd_use_gemm(uintptr_t sgemm, uintptr_t dgemm, int integer_bytes) noexcept
    void fastgd_sgemm(const char* transa, const char* transb, int m, int n, int k,
                      float alpha, const float* a, int lda, const float* b, int ldb,
                      float beta, float* c, int ldc) noexcept nogil
    void fastgd_dgemm(const char* transa, const char* transb, int m, int n, int k,
                      double alpha, const double* a, int lda, const double* b, int ldb,
                      double beta, double* c, int ldc) noexcept nogil
